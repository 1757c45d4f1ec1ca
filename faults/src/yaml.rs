//! YAML loading that keeps `file:line:column` for every error.
//!
//! Profiles are edited by hand, often during an incident, so an error must say where
//! it is. Generic YAML→serde bridges either drop positions or lose them inside
//! internally tagged enums (serde buffers the content first), which also disables
//! `deny_unknown_fields`. So we parse with `yaml-rust2`'s event API into our own
//! [`Node`] tree that remembers where each node starts, and deserialize straight from
//! that tree: every error is raised while a specific node is being read and is stamped
//! with that node's position.
//!
//! Enums get special treatment so that `FaultSpec` can be tagged by `type` in files
//! while keeping positions: a mapping with a `type` key names the variant, and the
//! other keys are the variant's fields.
//!
//! ```
//! use brownout_faults::yaml::from_str;
//! #[derive(serde::Deserialize, Debug)]
//! #[serde(deny_unknown_fields)]
//! struct Limits { max: u32 }
//! let err = from_str::<Limits>("max: 3\nmxa: 4\n", "limits.yaml").unwrap_err();
//! assert_eq!((err.line, err.column), (2, 1));
//! assert_eq!(err.hint.as_deref(), Some("did you mean `max`?"));
//! ```

use std::collections::HashMap;
use std::fmt;

use serde::de::{self, DeserializeOwned, DeserializeSeed, Visitor};
use yaml_rust2::parser::{Event, MarkedEventReceiver, Parser};
use yaml_rust2::scanner::{Marker, TScalarStyle};

/// One problem found in a file, with where it is and how to fix it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostic {
    pub file: String,
    /// 1-based; 0 when the problem is with the file as a whole (cannot read it).
    pub line: usize,
    /// 1-based, counted in characters.
    pub column: usize,
    pub message: String,
    pub hint: Option<String>,
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}:{}:{}: {}",
            self.file, self.line, self.column, self.message
        )?;
        if let Some(h) = &self.hint {
            write!(f, "\n  hint: {h}")?;
        }
        Ok(())
    }
}

impl std::error::Error for Diagnostic {}

impl Diagnostic {
    /// A diagnostic at a node's position.
    pub fn at(file: &str, node: &Node, message: impl Into<String>, hint: Option<String>) -> Self {
        Diagnostic {
            file: file.to_string(),
            line: node.line,
            column: node.column,
            message: message.into(),
            hint,
        }
    }
}

/// Separates a message from its hint inside a serde custom error, so that
/// `Deserialize` impls (durations, distributions) can attach hints through serde's
/// string-only `Error::custom`.
pub const HINT_SEPARATOR: &str = "\nhint: ";

/// How a scalar was written: quoted (and block) scalars are always strings, plain
/// ones resolve to null, booleans and numbers like YAML 1.2's core schema.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ScalarStyle {
    Plain,
    Quoted,
}

/// The shape of a node.
#[derive(Debug, Clone, PartialEq)]
pub enum NodeKind {
    /// Entries in file order; keys are nodes so that their positions survive.
    Map(Vec<(Node, Node)>),
    Seq(Vec<Node>),
    Scalar {
        text: String,
        style: ScalarStyle,
    },
    /// An empty value, `~` or `null`.
    Null,
}

/// A YAML node with the 1-based line and column where it starts.
#[derive(Debug, Clone, PartialEq)]
pub struct Node {
    pub kind: NodeKind,
    pub line: usize,
    pub column: usize,
}

/// One step of a path into a [`Node`] tree: a mapping key or a list index.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PathSeg<'a> {
    Key(&'a str),
    Index(usize),
}

impl Node {
    /// The value under `key` in a mapping.
    pub fn get(&self, key: &str) -> Option<&Node> {
        self.entry(key).map(|(_, v)| v)
    }

    /// The key node itself, whose position is where a misplaced key should be reported.
    pub fn key(&self, key: &str) -> Option<&Node> {
        self.entry(key).map(|(k, _)| k)
    }

    fn entry(&self, key: &str) -> Option<(&Node, &Node)> {
        match &self.kind {
            NodeKind::Map(entries) => entries
                .iter()
                .find(|(k, _)| k.as_str() == Some(key))
                .map(|(k, v)| (k, v)),
            _ => None,
        }
    }

    /// The `index`th item of a list.
    pub fn index(&self, index: usize) -> Option<&Node> {
        match &self.kind {
            NodeKind::Seq(items) => items.get(index),
            _ => None,
        }
    }

    /// Follow a path (`["phases", 1, "rules", 0, "probability"]`) to find where a
    /// value was written, so semantic checks after deserializing can still point at it.
    pub fn at_path(&self, path: &[PathSeg<'_>]) -> Option<&Node> {
        let mut node = self;
        for seg in path {
            node = match *seg {
                PathSeg::Key(k) => node.get(k)?,
                PathSeg::Index(i) => node.index(i)?,
            };
        }
        Some(node)
    }

    /// [`Node::at_path`] for a path a type error was found at.
    pub fn at_steps(&self, path: &[Step]) -> Option<&Node> {
        let mut node = self;
        for step in path {
            node = match step {
                Step::Key(k) => node.get(k)?,
                Step::Index(i) => node.index(*i)?,
            };
        }
        Some(node)
    }

    /// Like [`Node::at_path`], but falls back to the deepest node that exists, so a
    /// diagnostic always has a position near the problem.
    pub fn nearest(&self, path: &[PathSeg<'_>]) -> &Node {
        let mut node = self;
        for seg in path {
            let next = match *seg {
                PathSeg::Key(k) => node.get(k),
                PathSeg::Index(i) => node.index(i),
            };
            match next {
                Some(n) => node = n,
                None => break,
            }
        }
        node
    }

    /// The text of a scalar, quoted or not.
    pub fn as_str(&self) -> Option<&str> {
        match &self.kind {
            NodeKind::Scalar { text, .. } => Some(text),
            _ => None,
        }
    }

    fn describe(&self) -> String {
        match &self.kind {
            NodeKind::Map(_) => "a mapping".into(),
            NodeKind::Seq(_) => "a list".into(),
            NodeKind::Null => "null".into(),
            NodeKind::Scalar { text, .. } => format!("`{text}`"),
        }
    }
}

// ---------------------------------------------------------------------------
// Building the tree from parser events.

enum Frame {
    Map {
        entries: Vec<(Node, Node)>,
        key: Option<Node>,
        line: usize,
        column: usize,
        anchor: usize,
    },
    Seq {
        items: Vec<Node>,
        line: usize,
        column: usize,
        anchor: usize,
    },
}

#[derive(Default)]
struct Builder {
    stack: Vec<Frame>,
    root: Option<Node>,
    anchors: HashMap<usize, Node>,
    /// Structural problems (duplicate keys, unknown aliases); the receiver cannot
    /// fail, so they are kept and reported after parsing. A duplicate key is left
    /// out of the tree (the first one stays), so the rest can still be read.
    errors: Vec<(usize, usize, String, Option<String>)>,
}

fn pos(mark: &Marker) -> (usize, usize) {
    (mark.line(), mark.col() + 1)
}

impl Builder {
    fn push(&mut self, node: Node, anchor: usize) {
        if anchor > 0 {
            self.anchors.insert(anchor, node.clone());
        }
        match self.stack.last_mut() {
            None => {
                if self.root.is_none() {
                    self.root = Some(node);
                }
            }
            Some(Frame::Seq { items, .. }) => items.push(node),
            Some(Frame::Map {
                entries,
                key,
                line,
                column,
                ..
            }) => match key.take() {
                None => {
                    // A block mapping's start event is marked just after its first
                    // key; the mapping really starts where that key does.
                    if entries.is_empty() && (node.line, node.column) < (*line, *column) {
                        (*line, *column) = (node.line, node.column);
                    }
                    *key = Some(node)
                }
                Some(k) => {
                    if let Some(text) = k.as_str() {
                        if let Some((first, _)) =
                            entries.iter().find(|(e, _)| e.as_str() == Some(text))
                        {
                            self.errors.push((
                                k.line,
                                k.column,
                                format!("duplicate key `{text}`"),
                                Some(format!(
                                    "`{text}` is already set at line {}; keep one of them",
                                    first.line
                                )),
                            ));
                            return;
                        }
                    }
                    entries.push((k, node));
                }
            },
        }
    }
}

impl MarkedEventReceiver for Builder {
    fn on_event(&mut self, ev: Event, mark: Marker) {
        let (line, column) = pos(&mark);
        match ev {
            Event::Scalar(text, style, anchor, tag) => {
                let is_str_tag = tag.as_ref().is_some_and(|t| t.suffix == "str");
                let kind = match style {
                    TScalarStyle::Plain if !is_str_tag => {
                        if matches!(text.as_str(), "" | "~" | "null" | "Null" | "NULL") {
                            NodeKind::Null
                        } else {
                            NodeKind::Scalar {
                                text,
                                style: ScalarStyle::Plain,
                            }
                        }
                    }
                    _ => NodeKind::Scalar {
                        text,
                        style: ScalarStyle::Quoted,
                    },
                };
                self.push(Node { kind, line, column }, anchor);
            }
            Event::SequenceStart(anchor, _) => self.stack.push(Frame::Seq {
                items: Vec::new(),
                line,
                column,
                anchor,
            }),
            Event::MappingStart(anchor, _) => self.stack.push(Frame::Map {
                entries: Vec::new(),
                key: None,
                line,
                column,
                anchor,
            }),
            Event::SequenceEnd | Event::MappingEnd => match self.stack.pop() {
                Some(Frame::Seq {
                    items,
                    line,
                    column,
                    anchor,
                }) => self.push(
                    Node {
                        kind: NodeKind::Seq(items),
                        line,
                        column,
                    },
                    anchor,
                ),
                Some(Frame::Map {
                    entries,
                    line,
                    column,
                    anchor,
                    ..
                }) => self.push(
                    Node {
                        kind: NodeKind::Map(entries),
                        line,
                        column,
                    },
                    anchor,
                ),
                None => {}
            },
            Event::Alias(id) => {
                match self.anchors.get(&id) {
                    Some(node) => {
                        let node = node.clone();
                        self.push(node, 0);
                    }
                    None => {
                        self.errors.push((
                        line,
                        column,
                        "unknown alias".into(),
                        Some("define the anchor (`&name`) before the alias (`*name`) that uses it".into()),
                    ));
                        self.push(
                            Node {
                                kind: NodeKind::Null,
                                line,
                                column,
                            },
                            0,
                        );
                    }
                }
            }
            Event::Nothing
            | Event::StreamStart
            | Event::StreamEnd
            | Event::DocumentStart
            | Event::DocumentEnd => {}
        }
    }
}

fn syntax_hint(info: &str) -> Option<String> {
    let hint = if info.contains("tab") || info.contains("cannot start any token") {
        "YAML indentation must use spaces, not tabs; a value starting with `@`, `%` or a backtick needs quotes"
    } else if info.contains("mapping values are not allowed") {
        "a value containing `: ` must be quoted, or the indentation of this line is off"
    } else if info.contains("illegal placement of ':'") {
        "a `[` or `{` may be missing its closing bracket, or a value containing `:` needs quotes"
    } else if info.contains("block") || info.contains("expected key") || info.contains("'-'") {
        "check this line's indentation against the lines above: keys of one mapping must line up, and so must list items (`- `)"
    } else if info.contains("quoted scalar") {
        "a quoted string is not closed; add the closing quote"
    } else if info.contains("flow") || info.contains("',' or ']'") || info.contains("',' or '}'") {
        "check the brackets: every `[` and `{` needs a matching `]` or `}`, with `,` between items"
    } else {
        "check the indentation and quoting around this position"
    };
    Some(hint.to_string())
}

/// The parser reports some tab errors at the end of the previous line; point at the
/// tab itself instead.
fn tab_position(src: &str, from: usize) -> Option<(usize, usize)> {
    let from = src
        .char_indices()
        .map(|(i, _)| i)
        .find(|i| *i >= from)
        .unwrap_or(src.len());
    let start = src[..from].rfind('\n').map_or(0, |i| i + 1);
    let at = start + src.get(start..)?.find('\t')?;
    let before = &src[..at];
    let line = before.matches('\n').count() + 1;
    let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    Some((line, column))
}

/// Read a file to load: its text and its name for diagnostics, or one diagnostic
/// saying why `what` (`profile`, `scenario`) cannot be read.
pub fn read_file(path: &std::path::Path, what: &str) -> Result<(String, String), Diagnostic> {
    let file = path.display().to_string();
    match std::fs::read_to_string(path) {
        Ok(src) => Ok((src, file)),
        Err(e) => Err(Diagnostic {
            file,
            line: 0,
            column: 0,
            message: format!("cannot read the {what}: {e}"),
            hint: Some("check the path and that the file is readable".into()),
        }),
    }
}

/// Parse YAML (or JSON) text into a [`Node`] tree.
///
/// An empty document is a `Null` node at 1:1. Only the first document of a stream is
/// read. The first problem found is the error; [`parse_tree_lenient`] keeps going
/// past duplicate keys and unknown aliases.
pub fn parse_tree(src: &str, file: &str) -> Result<Node, Diagnostic> {
    let (tree, mut problems) = parse_tree_lenient(src, file)?;
    if problems.is_empty() {
        Ok(tree)
    } else {
        Err(problems.remove(0))
    }
}

/// Parse YAML (or JSON) text into a [`Node`] tree, with every structural problem
/// that does not stop the parser: duplicate keys (the first one is kept in the tree)
/// and unknown aliases (read as null). `Err` is a syntax error, where the parser
/// stopped; nothing after it can be read.
pub fn parse_tree_lenient(src: &str, file: &str) -> Result<(Node, Vec<Diagnostic>), Diagnostic> {
    let mut builder = Builder::default();
    let mut parser = Parser::new_from_str(src);
    if let Err(e) = parser.load(&mut builder, false) {
        let info = e.info().to_string();
        let (line, column) = if info.contains("tab") {
            tab_position(src, e.marker().index()).unwrap_or_else(|| pos(e.marker()))
        } else {
            pos(e.marker())
        };
        return Err(Diagnostic {
            file: file.into(),
            line,
            column,
            hint: syntax_hint(&info),
            message: format!("invalid YAML: {info}"),
        });
    }
    let problems = builder
        .errors
        .into_iter()
        .map(|(line, column, message, hint)| Diagnostic {
            file: file.into(),
            line,
            column,
            message,
            hint,
        })
        .collect();
    let root = builder.root.unwrap_or(Node {
        kind: NodeKind::Null,
        line: 1,
        column: 1,
    });
    Ok((root, problems))
}

/// Deserialize `T` from YAML (or JSON) text, reporting the position of any error.
pub fn from_str<T: DeserializeOwned>(src: &str, file: &str) -> Result<T, Diagnostic> {
    let tree = parse_tree(src, file)?;
    from_node(&tree, file)
}

/// Deserialize `T` from an already parsed tree (for callers that also need the tree,
/// e.g. to position semantic errors). Stops at the first error; [`recover`] finds
/// them all.
pub fn from_node<T: DeserializeOwned>(node: &Node, file: &str) -> Result<T, Diagnostic> {
    T::deserialize(NodeDe::root(node)).map_err(|e| e.finish(file, node, None).diagnostic)
}

// ---------------------------------------------------------------------------
// Every type error at once.

/// One step of a path into a [`Node`] tree, owned: where a type error was found.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Step {
    Key(String),
    Index(usize),
}

impl Step {
    /// The key, when this step is one.
    pub fn key(&self) -> Option<&str> {
        match self {
            Step::Key(k) => Some(k),
            Step::Index(_) => None,
        }
    }
}

/// The allowed range of a number field, in the words its semantic check uses, so
/// that a value of the wrong type (`max_active: -3`, `max_active: lots`) and a value
/// out of range (`max_active: 0`) are refused in the same terms.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FieldRange {
    /// "at least 1", "between 0 and 1", "above zero".
    pub phrase: &'static str,
    /// Whether the phrase bounds the value from above; if not, a value above what
    /// the field's type can hold is told that largest value too.
    pub bounded_above: bool,
    /// What the field is, for the hint (replacing the generic one).
    pub hint: Option<&'static str>,
    /// The name the field's check calls it by when that is not its key
    /// (`schedule.every`), so both messages name it alike.
    pub name: Option<&'static str>,
}

impl FieldRange {
    /// A range with a lower bound only.
    pub const fn at_least(phrase: &'static str) -> Self {
        FieldRange {
            phrase,
            bounded_above: false,
            hint: None,
            name: None,
        }
    }

    /// A range bounded on both sides.
    pub const fn between(phrase: &'static str) -> Self {
        FieldRange {
            phrase,
            bounded_above: true,
            hint: None,
            name: None,
        }
    }

    /// The same range with a hint.
    pub const fn hint(mut self, hint: &'static str) -> Self {
        self.hint = Some(hint);
        self
    }

    /// The same range for a field its check names `name`.
    pub const fn named(mut self, name: &'static str) -> Self {
        self.name = Some(name);
        self
    }
}

/// A number field's range, given where the field is (its path and the tree it is
/// in, e.g. to find the `type` of the fault it belongs to).
pub type RangeOf<'r> = &'r dyn Fn(&[Step], &Node) -> Option<FieldRange>;

/// A value that should have been a number and was not (or was out of its type's
/// range), for restating the error in the field's own terms.
#[derive(Debug, Clone, PartialEq)]
pub struct NumberProblem {
    /// What was written, in words: `-3`, `1.5`, `the text "abc"`, `a list`.
    pub found: String,
    /// The whole number written, when one was (too large, or negative).
    pub int: Option<i128>,
    /// Whether a whole number was expected.
    pub whole: bool,
    /// The largest value the field's type holds, for whole numbers.
    pub type_max: Option<u128>,
    /// The smallest value the field's type holds, for whole numbers.
    pub type_min: Option<i128>,
}

/// One type error: its diagnostic and where in the tree it is.
#[derive(Debug, Clone, PartialEq)]
pub struct TypeError {
    pub diagnostic: Diagnostic,
    pub path: Vec<Step>,
    pub number: Option<NumberProblem>,
}

/// What [`recover`] read: the value (when the errors could be worked around), the
/// tree it was read from after the workarounds, and every type error.
///
/// A workaround removes or replaces the value at fault (or fills in a missing
/// one) and reads the file again, so that the errors after it are found too. A
/// check that runs on the value afterwards may then see a stand-in: its complaints
/// about what was worked around are follow-ons of a type error already reported,
/// and [`Recovered::follows_from_repair`] says which they are.
#[derive(Debug, Clone)]
pub struct Recovered<T> {
    pub value: Option<T>,
    pub tree: Node,
    pub errors: Vec<TypeError>,
    repairs: Vec<RepairMark>,
}

#[derive(Debug, Clone)]
struct RepairMark {
    path: Vec<Step>,
    positions: Vec<(usize, usize)>,
}

impl<T> Recovered<T> {
    /// The type errors as diagnostics.
    pub fn diagnostics(&self) -> Vec<Diagnostic> {
        self.errors.iter().map(|e| e.diagnostic.clone()).collect()
    }

    /// Whether a diagnostic from a later check points at a value that was worked
    /// around (or at the mapping or list that lost it).
    pub fn follows_from_repair(&self, d: &Diagnostic) -> bool {
        self.repairs
            .iter()
            .any(|r| r.positions.contains(&(d.line, d.column)))
    }

    /// Whether the value at `path` (or anything inside it, or a mapping or list
    /// it is in) was worked around, so checks that read it should not trust it.
    pub fn touched(&self, path: &[PathSeg<'_>]) -> bool {
        let path: Vec<Step> = path
            .iter()
            .map(|s| match *s {
                PathSeg::Key(k) => Step::Key(k.to_string()),
                PathSeg::Index(i) => Step::Index(i),
            })
            .collect();
        self.repairs
            .iter()
            .any(|r| r.path.starts_with(&path) || path.starts_with(&r.path))
    }
}

/// Deserialize `T` from a tree, finding every type error rather than stopping at
/// the first: each error is recorded, the value at fault worked around (removed,
/// replaced by a stand-in, or filled in when missing), and the tree read again.
/// `ranges` restates errors on number fields in the field's own terms.
pub fn recover<T: DeserializeOwned>(
    tree: &Node,
    file: &str,
    ranges: Option<RangeOf<'_>>,
) -> Recovered<T> {
    /// Reads of the file allowed in all (each workaround tried is one).
    const BUDGET: usize = 2000;
    /// Errors reported at most; a file with more is probably not this format.
    const MAX_ERRORS: usize = 200;
    let mut tree = tree.clone();
    let mut errors: Vec<TypeError> = Vec::new();
    let mut repairs = Vec::new();
    let mut reads = 1;
    let mut result = T::deserialize(NodeDe::root(&tree));
    loop {
        let e = match result {
            Ok(v) => {
                return Recovered {
                    value: Some(v),
                    tree,
                    errors,
                    repairs,
                }
            }
            Err(e) => e,
        };
        let te = e.clone().finish(file, &tree, ranges);
        let (line, column) = (te.diagnostic.line, te.diagnostic.column);
        // An error where a workaround changed the tree (`missing field `to`` once
        // the misspelled `too` is gone) follows from one already reported: it is
        // worked around in turn, not reported.
        let follows = repairs
            .iter()
            .any(|r: &RepairMark| r.positions.contains(&(line, column)));
        if !follows && !errors.iter().any(|x| x.diagnostic == te.diagnostic) {
            errors.push(te);
        }
        let mut next = None;
        if errors.len() < MAX_ERRORS {
            for edit in candidates(&e) {
                if reads >= BUDGET {
                    break;
                }
                let mut t2 = tree.clone();
                let Some(mark) = apply_edit(&mut t2, &edit, &e) else {
                    continue;
                };
                reads += 1;
                let r = T::deserialize(NodeDe::root(&t2));
                let fixed = match &r {
                    Ok(_) => true,
                    Err(e2) => !same_site(&edit, e2),
                };
                if fixed {
                    next = Some((t2, mark, r));
                    break;
                }
            }
        }
        match next {
            Some((t2, mark, r)) => {
                tree = t2;
                repairs.extend(mark);
                result = r;
            }
            None => {
                return Recovered {
                    value: None,
                    tree,
                    errors,
                    repairs,
                };
            }
        }
    }
}

/// A change to the tree that works around one error.
#[derive(Debug, Clone)]
enum Edit {
    RemoveEntry(Vec<Step>, String),
    RemoveItem(Vec<Step>, usize),
    Replace(Vec<Step>, NodeKind),
    Insert(Vec<Step>, String, NodeKind),
}

/// Stand-ins that satisfy most field types: a number, a duration, a flag, a
/// name, then an enum's own variants, a list and a mapping.
fn fillers(variants: &[&str]) -> Vec<NodeKind> {
    let plain = |t: &str| NodeKind::Scalar {
        text: t.to_string(),
        style: ScalarStyle::Plain,
    };
    let mut out = vec![plain("1"), plain("1s"), plain("true"), plain("x")];
    out.extend(variants.iter().take(8).map(|v| plain(v)));
    out.push(NodeKind::Seq(Vec::new()));
    out.push(NodeKind::Map(Vec::new()));
    out
}

fn candidates(e: &Error) -> Vec<Edit> {
    let Some(site) = &e.site else {
        return Vec::new();
    };
    let mut out = Vec::new();
    if let (ErrKind::MissingField(f), false) = (e.kind, site.on_key) {
        // Fill the field in; failing that (or when the value is not a mapping at
        // all), work around the mapping as a whole.
        out.extend(
            fillers(&[])
                .into_iter()
                .map(|k| Edit::Insert(site.path.clone(), f.to_string(), k)),
        );
    }
    let (path, on_key) = match &e.repair {
        Some(p) => (p.clone(), false),
        None => (site.path.clone(), site.on_key),
    };
    let Some((last, parent)) = path.split_last() else {
        return out;
    };
    out.push(match last {
        Step::Key(k) => Edit::RemoveEntry(parent.to_vec(), k.clone()),
        Step::Index(i) => Edit::RemoveItem(parent.to_vec(), *i),
    });
    if !on_key {
        let variants = e.variants.unwrap_or(&[]);
        out.extend(
            fillers(variants)
                .into_iter()
                .map(|k| Edit::Replace(path.clone(), k)),
        );
    }
    out
}

fn node_mut<'t>(mut node: &'t mut Node, path: &[Step]) -> Option<&'t mut Node> {
    for step in path {
        node = match (&mut node.kind, step) {
            (NodeKind::Map(entries), Step::Key(k)) => entries
                .iter_mut()
                .find(|(key, _)| key.as_str() == Some(k.as_str()))
                .map(|(_, v)| v)?,
            (NodeKind::Seq(items), Step::Index(i)) => items.get_mut(*i)?,
            _ => return None,
        };
    }
    Some(node)
}

/// Apply `edit`; returns where it changed the tree, or `None` when it does not
/// apply.
fn apply_edit(tree: &mut Node, edit: &Edit, e: &Error) -> Option<Vec<RepairMark>> {
    let mark = |path: Vec<Step>, positions: Vec<(usize, usize)>| RepairMark { path, positions };
    match edit {
        Edit::RemoveEntry(parent, k) => {
            let map = node_mut(tree, parent)?;
            let at = (map.line, map.column);
            let NodeKind::Map(entries) = &mut map.kind else {
                return None;
            };
            let i = entries
                .iter()
                .position(|(key, _)| key.as_str() == Some(k))?;
            let (_, v) = entries.remove(i);
            let mut path = parent.clone();
            path.push(Step::Key(k.clone()));
            Some(if e.kind == ErrKind::UnknownField {
                // No value changes, but the mapping lost what was probably a
                // misspelled field (`frist`): what its checks say it lacks follows.
                vec![mark(path, vec![at])]
            } else {
                vec![mark(path, vec![(v.line, v.column), at])]
            })
        }
        Edit::RemoveItem(parent, i) => {
            let seq = node_mut(tree, parent)?;
            let at = (seq.line, seq.column);
            let NodeKind::Seq(items) = &mut seq.kind else {
                return None;
            };
            if *i >= items.len() {
                return None;
            }
            let v = items.remove(*i);
            let mut path = parent.clone();
            path.push(Step::Index(*i));
            Some(vec![mark(path, vec![(v.line, v.column), at])])
        }
        Edit::Replace(path, kind) => {
            let node = node_mut(tree, path)?;
            node.kind = kind.clone();
            Some(vec![mark(path.clone(), vec![(node.line, node.column)])])
        }
        Edit::Insert(parent, k, kind) => {
            let map = node_mut(tree, parent)?;
            let (line, column) = (map.line, map.column);
            let NodeKind::Map(entries) = &mut map.kind else {
                return None;
            };
            let key = Node {
                kind: NodeKind::Scalar {
                    text: k.clone(),
                    style: ScalarStyle::Plain,
                },
                line,
                column,
            };
            let value = Node {
                kind: kind.clone(),
                line,
                column,
            };
            entries.push((key, value));
            let mut path = parent.clone();
            path.push(Step::Key(k.clone()));
            Some(vec![mark(path, vec![(line, column)])])
        }
    }
}

/// Whether `e2`, the first error after `edit`, is still the problem the edit was
/// meant to work around.
fn same_site(edit: &Edit, e2: &Error) -> bool {
    let Some(s2) = &e2.site else {
        return true;
    };
    let p2 = &s2.path;
    let missing = |parent: &Vec<Step>, k: &str| {
        p2 == parent && matches!(e2.kind, ErrKind::MissingField(f) if f == k)
    };
    let under = |parent: &Vec<Step>, k: &str| {
        p2.len() > parent.len() && p2.starts_with(parent) && p2[parent.len()].key() == Some(k)
    };
    match edit {
        Edit::Replace(p, _) => p2.starts_with(p),
        Edit::RemoveEntry(parent, k) => missing(parent, k) || under(parent, k),
        Edit::RemoveItem(parent, _) => p2 == parent && e2.kind == ErrKind::Length,
        Edit::Insert(parent, k, _) => missing(parent, k) || under(parent, k),
    }
}

// ---------------------------------------------------------------------------
// Errors.

/// A deserialization error, positioned at the innermost node being read when it
/// happened.
#[derive(Debug, Clone, PartialEq)]
pub struct Error {
    pos: Option<(usize, usize)>,
    /// Where in the tree `pos` is, for working around the error.
    site: Option<Site>,
    message: String,
    hint: Option<String>,
    kind: ErrKind,
    unknown_variant: Option<(String, &'static [&'static str])>,
    /// The variants of the enum whose tag was unknown, as stand-ins.
    variants: Option<&'static [&'static str]>,
    /// Set when the unknown variant was the enum's own tag, so only the enum being
    /// read (not an enclosing one) rewrites the message.
    from_tag: bool,
    /// The node to work around when it is not the one at `site`: an enum whose
    /// tag was wrong is removed or replaced as a whole.
    repair: Option<Vec<Step>>,
    number: Option<NumberProblem>,
}

#[derive(Debug, Clone, PartialEq)]
struct Site {
    path: Vec<Step>,
    /// The error is about the key at `path`, not its value.
    on_key: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ErrKind {
    Other,
    UnknownField,
    MissingField(&'static str),
    Length,
}

impl Error {
    fn new(message: String, hint: Option<String>) -> Self {
        Error {
            pos: None,
            site: None,
            message,
            hint,
            kind: ErrKind::Other,
            unknown_variant: None,
            variants: None,
            from_tag: false,
            repair: None,
            number: None,
        }
    }

    /// Stamp the node's position (and path) unless an inner node already did.
    fn locate(self, node: &Node, trail: &Trail<'_>) -> Self {
        self.stamp(node, trail, false)
    }

    /// Like [`Error::locate`], for an error about a mapping's key.
    fn locate_key(self, node: &Node, trail: &Trail<'_>) -> Self {
        self.stamp(node, trail, true)
    }

    fn stamp(mut self, node: &Node, trail: &Trail<'_>, on_key: bool) -> Self {
        if self.pos.is_none() {
            self.pos = Some((node.line, node.column));
            self.site = Some(Site {
                path: trail.steps(),
                on_key,
            });
        }
        self
    }

    /// The error as users see it, restated in the field's terms where `ranges`
    /// (or the field's type) knows its range.
    fn finish(self, file: &str, root: &Node, ranges: Option<RangeOf<'_>>) -> TypeError {
        let (line, column) = self.pos.unwrap_or((root.line, root.column));
        let (path, on_key) = match &self.site {
            Some(s) => (s.path.clone(), s.on_key),
            None => (Vec::new(), false),
        };
        let (mut message, mut hint) = (self.message, self.hint);
        if let (Some(n), Some(key), false) = (&self.number, path.last().and_then(Step::key), on_key)
        {
            // Without a range of its own, a number out of its type's range is told
            // that range; text where a number goes needs no range to be fixed.
            let range = ranges.and_then(|f| f(&path, root)).or_else(|| {
                (n.int.is_some() && n.type_min == Some(0))
                    .then(|| FieldRange::at_least("0 or more"))
            });
            if let Some(r) = range {
                (message, hint) = restate(r.name.unwrap_or(key), n, &r, message, hint);
            }
        }
        TypeError {
            diagnostic: Diagnostic {
                file: file.into(),
                line,
                column,
                message,
                hint,
            },
            path,
            number: self.number,
        }
    }
}

/// "`max_active` must be at least 1, not -3": the range as the field's own check
/// states it. Text or a fraction where a whole number goes keeps its message (what
/// was expected and found), and its hint gains the range.
fn restate(
    key: &str,
    n: &NumberProblem,
    r: &FieldRange,
    message: String,
    hint: Option<String>,
) -> (String, Option<String>) {
    let phrase = r.phrase;
    match n.int {
        Some(v) => {
            let over = n.type_max.filter(|m| v > *m as i128);
            let message = match over {
                Some(max) if !r.bounded_above => {
                    format!("`{key}` must be {phrase} and at most {max}, not {v}")
                }
                _ => format!("`{key}` must be {phrase}, not {v}"),
            };
            let hint = r
                .hint
                .map(str::to_string)
                .unwrap_or_else(|| format!("write a whole number {phrase}, without quotes"));
            (message, Some(hint))
        }
        None => {
            let rule = format!("`{key}` must be {phrase}");
            let hint = match hint {
                Some(h) => format!("{h}; {rule}"),
                None => rule,
            };
            (message, Some(hint))
        }
    }
}

/// How a field's number type was named in serde's "expected" text, and its range.
fn number_type(exp: &str) -> Option<(bool, Option<i128>, Option<u128>)> {
    Some(match exp {
        "u8" => (true, Some(0), Some(u8::MAX.into())),
        "u16" => (true, Some(0), Some(u16::MAX.into())),
        "u32" => (true, Some(0), Some(u32::MAX.into())),
        "u64" | "usize" => (true, Some(0), Some(u64::MAX.into())),
        "i8" => (true, Some(i8::MIN.into()), Some(i8::MAX as u128)),
        "i16" => (true, Some(i16::MIN.into()), Some(i16::MAX as u128)),
        "i32" => (true, Some(i32::MIN.into()), Some(i32::MAX as u128)),
        "i64" | "isize" => (true, Some(i64::MIN.into()), Some(i64::MAX as u128)),
        "f32" | "f64" => (false, None, None),
        _ => return None,
    })
}

fn number_problem(unexp: &de::Unexpected<'_>, exp: &str) -> Option<NumberProblem> {
    use de::Unexpected as U;
    let (whole, type_min, type_max) = number_type(exp)?;
    let (found, int) = match *unexp {
        U::Signed(v) => (v.to_string(), Some(i128::from(v))),
        U::Unsigned(v) => (v.to_string(), Some(i128::from(v))),
        U::Float(v) => (v.to_string(), None),
        ref other => (unexpected_text(other), None),
    };
    Some(NumberProblem {
        found,
        int,
        whole,
        type_max,
        type_min,
    })
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some((l, c)) = self.pos {
            write!(f, "{l}:{c}: ")?;
        }
        f.write_str(&self.message)
    }
}

impl std::error::Error for Error {}

/// Edit distance counting a swap of two neighbours as one edit (optimal string
/// alignment), for "did you mean" hints: `dealy` is one slip away from `delay`.
pub fn edit_distance(a: &str, b: &str) -> usize {
    let a: Vec<char> = a.chars().collect();
    let b: Vec<char> = b.chars().collect();
    let mut d = vec![vec![0usize; b.len() + 1]; a.len() + 1];
    for (i, row) in d.iter_mut().enumerate() {
        row[0] = i;
    }
    for (j, cell) in d[0].iter_mut().enumerate() {
        *cell = j;
    }
    for i in 1..=a.len() {
        for j in 1..=b.len() {
            let cost = usize::from(a[i - 1] != b[j - 1]);
            let mut v = (d[i - 1][j] + 1)
                .min(d[i][j - 1] + 1)
                .min(d[i - 1][j - 1] + cost);
            if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                v = v.min(d[i - 2][j - 2] + 1);
            }
            d[i][j] = v;
        }
    }
    d[a.len()][b.len()]
}

/// The candidate closest to `word`, if it is close enough to be a plausible typo.
pub fn closest<'a>(word: &str, candidates: &[&'a str]) -> Option<&'a str> {
    let lower = word.to_ascii_lowercase();
    candidates
        .iter()
        .map(|c| (edit_distance(&lower, &c.to_ascii_lowercase()), *c))
        .filter(|(d, c)| *d <= c.chars().count().max(word.chars().count()).div_ceil(3))
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c)
}

fn backticked(list: &[&str]) -> String {
    list.iter()
        .map(|s| format!("`{s}`"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// "did you mean `x`?" or the list of what is allowed.
fn suggestion(word: &str, expected: &[&str], what: &str) -> Option<String> {
    if let Some(c) = closest(word, expected) {
        return Some(format!("did you mean `{c}`?"));
    }
    if expected.is_empty() {
        None
    } else {
        Some(format!("{what}: {}", backticked(expected)))
    }
}

fn unexpected_text(unexp: &de::Unexpected<'_>) -> String {
    use de::Unexpected as U;
    match unexp {
        U::Unit => "null".into(),
        U::Map => "a mapping".into(),
        U::Seq => "a list".into(),
        U::Str(s) => format!("the text \"{s}\""),
        U::Bool(b) => format!("`{b}`"),
        U::Unsigned(n) => format!("the number {n}"),
        U::Signed(n) => format!("the number {n}"),
        U::Float(n) => format!("the number {n}"),
        other => other.to_string(),
    }
}

/// Turn serde's "expected" phrase into words for users, plus an example.
fn expected_text(exp: &str) -> (String, Option<String>) {
    let (what, hint): (&str, &str) = match exp {
        e if e.starts_with("struct variant") || e.starts_with("struct ") || e == "a map" => (
            "a mapping",
            "write `key: value` lines indented below this key, or `{key: value}`",
        ),
        "a sequence" | "a tuple of size 2" => {
            ("a list", "write `[a, b]`, or one `- item` per line")
        }
        "u8" | "u16" | "u32" | "u64" | "usize" => (
            "a whole number",
            "write a number without quotes or units, e.g. 100",
        ),
        "i8" | "i16" | "i32" | "i64" | "isize" => (
            "a whole number",
            "write a number without quotes or units, e.g. -1 or 100",
        ),
        "f32" | "f64" => ("a number", "write a number without quotes, e.g. 0.25"),
        "a boolean" => ("true or false", "write true or false, without quotes"),
        "path string" => (
            "a file path",
            "write the path as text, e.g. `../profiles/storm.yaml`",
        ),
        "a string" | "a borrowed string" | "string or map" => (
            "text",
            "write a value like `name: my-rule`; quote it if it contains `: ` or starts with `*`",
        ),
        _ => return (exp.to_string(), None),
    };
    (what.to_string(), Some(hint.to_string()))
}

impl de::Error for Error {
    fn custom<T: fmt::Display>(msg: T) -> Self {
        let msg = msg.to_string();
        match msg.split_once(HINT_SEPARATOR) {
            Some((m, h)) => Error::new(m.to_string(), Some(h.to_string())),
            None => Error::new(msg, None),
        }
    }

    fn invalid_type(unexp: de::Unexpected<'_>, exp: &dyn de::Expected) -> Self {
        let exp = exp.to_string();
        let (what, hint) = expected_text(&exp);
        let mut e = Error::new(
            format!("expected {what}, found {}", unexpected_text(&unexp)),
            hint,
        );
        e.number = number_problem(&unexp, &exp);
        e
    }

    fn invalid_value(unexp: de::Unexpected<'_>, exp: &dyn de::Expected) -> Self {
        let (what, hint) = expected_text(&exp.to_string());
        let hint = match exp.to_string().as_str() {
            "u8" => Some("must be 0 or more and at most 255".into()),
            "u16" => Some("must be 0 or more and at most 65535".into()),
            "u32" => Some("must be 0 or more and at most 4294967295".into()),
            "u64" | "usize" => Some("must be 0 or more".into()),
            _ => hint,
        };
        let mut e = Error::new(
            format!(
                "{} is not valid here: expected {what}",
                unexpected_text(&unexp)
            ),
            hint,
        );
        e.number = number_problem(&unexp, &exp.to_string());
        e
    }

    fn invalid_length(len: usize, exp: &dyn de::Expected) -> Self {
        let mut e = Error::new(
            format!("wrong number of items ({len}): expected {exp}"),
            None,
        );
        e.kind = ErrKind::Length;
        e
    }

    fn unknown_variant(variant: &str, expected: &'static [&'static str]) -> Self {
        let mut e = Error::new(
            format!("unknown value `{variant}`"),
            suggestion(variant, expected, "expected one of"),
        );
        e.unknown_variant = Some((variant.to_string(), expected));
        e.variants = Some(expected);
        e
    }

    fn unknown_field(field: &str, expected: &'static [&'static str]) -> Self {
        let hint = if expected.is_empty() {
            Some("this takes no fields".into())
        } else {
            suggestion(field, expected, "expected one of")
        };
        let mut e = Error::new(format!("unknown field `{field}`"), hint);
        e.kind = ErrKind::UnknownField;
        e
    }

    fn missing_field(field: &'static str) -> Self {
        let mut e = Error::new(
            format!("missing field `{field}`"),
            Some(format!("add `{field}:` to this mapping")),
        );
        e.kind = ErrKind::MissingField(field);
        e
    }

    fn duplicate_field(field: &'static str) -> Self {
        Error::new(
            format!("`{field}` is given twice"),
            Some("keep one of them".into()),
        )
    }
}

// ---------------------------------------------------------------------------
// The deserializer.

/// A plain scalar resolved like YAML 1.2's core schema.
enum Plain<'a> {
    Bool(bool),
    U64(u64),
    I64(i64),
    F64(f64),
    Str(&'a str),
}

fn resolve_plain(text: &str) -> Plain<'_> {
    match text {
        "true" | "True" | "TRUE" => return Plain::Bool(true),
        "false" | "False" | "FALSE" => return Plain::Bool(false),
        ".inf" | ".Inf" | ".INF" | "+.inf" | "+.Inf" | "+.INF" => return Plain::F64(f64::INFINITY),
        "-.inf" | "-.Inf" | "-.INF" => return Plain::F64(f64::NEG_INFINITY),
        ".nan" | ".NaN" | ".NAN" => return Plain::F64(f64::NAN),
        _ => {}
    }
    if let Some(hex) = text.strip_prefix("0x") {
        if let Ok(v) = u64::from_str_radix(hex, 16) {
            return Plain::U64(v);
        }
    }
    if let Some(oct) = text.strip_prefix("0o") {
        if let Ok(v) = u64::from_str_radix(oct, 8) {
            return Plain::U64(v);
        }
    }
    let digits = text.strip_prefix(['-', '+']).unwrap_or(text);
    if !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()) {
        if let Ok(v) = text.strip_prefix('+').unwrap_or(text).parse::<u64>() {
            return Plain::U64(v);
        }
        if let Ok(v) = text.parse::<i64>() {
            return Plain::I64(v);
        }
    }
    if is_core_float(digits) {
        if let Ok(v) = text.parse::<f64>() {
            return Plain::F64(v);
        }
    }
    Plain::Str(text)
}

/// `(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)?` — stricter than Rust's parser,
/// which would also take "inf" and "NaN" as numbers.
fn is_core_float(s: &str) -> bool {
    let (mantissa, exp) = match s.find(['e', 'E']) {
        Some(i) => (&s[..i], Some(&s[i + 1..])),
        None => (s, None),
    };
    let (int, frac) = match mantissa.split_once('.') {
        Some((i, f)) => (i, Some(f)),
        None => (mantissa, None),
    };
    let all_digits = |x: &str| x.bytes().all(|b| b.is_ascii_digit());
    let mantissa_ok = match frac {
        Some(f) => all_digits(int) && all_digits(f) && !(int.is_empty() && f.is_empty()),
        None => !int.is_empty() && all_digits(int),
    };
    let exp_ok = match exp {
        None => true,
        Some(e) => {
            let e = e.strip_prefix(['-', '+']).unwrap_or(e);
            !e.is_empty() && all_digits(e)
        }
    };
    mantissa_ok && exp_ok
}

/// The path to the node being read, as a chain through the reader's stack frames.
#[derive(Clone, Copy)]
struct Trail<'a> {
    parent: Option<&'a Trail<'a>>,
    step: TrailStep<'a>,
}

#[derive(Clone, Copy)]
enum TrailStep<'a> {
    Root,
    Key(&'a str),
    Index(usize),
}

const ROOT_TRAIL: Trail<'static> = Trail {
    parent: None,
    step: TrailStep::Root,
};

impl<'a> Trail<'a> {
    fn key(&'a self, key: &'a Node) -> Trail<'a> {
        Trail {
            parent: Some(self),
            step: TrailStep::Key(key.as_str().unwrap_or("")),
        }
    }

    fn key_str(&'a self, key: &'a str) -> Trail<'a> {
        Trail {
            parent: Some(self),
            step: TrailStep::Key(key),
        }
    }

    fn index(&'a self, i: usize) -> Trail<'a> {
        Trail {
            parent: Some(self),
            step: TrailStep::Index(i),
        }
    }

    fn steps(self) -> Vec<Step> {
        let mut out = Vec::new();
        let mut t = Some(&self);
        while let Some(x) = t {
            match x.step {
                TrailStep::Root => {}
                TrailStep::Key(k) => out.push(Step::Key(k.to_string())),
                TrailStep::Index(i) => out.push(Step::Index(i)),
            }
            t = x.parent;
        }
        out.reverse();
        out
    }
}

#[derive(Clone, Copy)]
struct NodeDe<'a> {
    node: &'a Node,
    trail: &'a Trail<'a>,
}

// The helpers return what the serde trait methods around them return; the error
// carries where it happened and how to work around it, and a file is read once.
#[allow(clippy::result_large_err)]
impl<'a> NodeDe<'a> {
    fn root(node: &'a Node) -> Self {
        NodeDe {
            node,
            trail: &ROOT_TRAIL,
        }
    }

    fn at(&self, e: Error) -> Error {
        e.locate(self.node, self.trail)
    }

    fn visit_seq_items<'de, V: Visitor<'de>>(
        self,
        items: &'a [Node],
        visitor: V,
    ) -> Result<V::Value, Error> {
        let mut access = SeqAcc {
            iter: items.iter(),
            count: 0,
            trail: self.trail,
        };
        let value = visitor.visit_seq(&mut access)?;
        let rest = access.iter.len();
        if rest > 0 {
            let i = items.len() - rest;
            let extra = &items[i];
            let t = self.trail.index(i);
            return Err(Error::new(
                format!("too many items: only {} expected", access.count),
                Some("remove the extra items".into()),
            )
            .locate(extra, &t));
        }
        Ok(value)
    }

    fn visit_map_entries<'de, V: Visitor<'de>>(
        self,
        entries: &'a [(Node, Node)],
        visitor: V,
    ) -> Result<V::Value, Error> {
        visitor.visit_map(MapAcc {
            iter: entries.iter(),
            value: None,
            trail: self.trail,
        })
    }
}

macro_rules! forward_to_any {
    ($($method:ident)*) => {
        $(fn $method<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
            self.deserialize_any(visitor)
        })*
    };
}

impl<'de> de::Deserializer<'de> for NodeDe<'_> {
    type Error = Error;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        let node = self.node;
        let result = match &node.kind {
            NodeKind::Null => visitor.visit_unit(),
            NodeKind::Map(entries) => self.visit_map_entries(entries, visitor),
            NodeKind::Seq(items) => self.visit_seq_items(items, visitor),
            NodeKind::Scalar {
                text,
                style: ScalarStyle::Quoted,
            } => visitor.visit_str(text),
            NodeKind::Scalar {
                text,
                style: ScalarStyle::Plain,
            } => match resolve_plain(text) {
                Plain::Bool(b) => visitor.visit_bool(b),
                Plain::U64(v) => visitor.visit_u64(v),
                Plain::I64(v) => visitor.visit_i64(v),
                Plain::F64(v) => visitor.visit_f64(v),
                Plain::Str(s) => visitor.visit_str(s),
            },
        };
        result.map_err(|e| self.at(e))
    }

    forward_to_any! {
        deserialize_bool deserialize_i8 deserialize_i16 deserialize_i32 deserialize_i64
        deserialize_i128 deserialize_u8 deserialize_u16 deserialize_u32 deserialize_u64
        deserialize_u128 deserialize_f32 deserialize_f64 deserialize_char deserialize_bytes
        deserialize_byte_buf
    }

    fn deserialize_str<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        match &self.node.kind {
            // A plain scalar asked for as text is text: `version: 1.0` as a string is "1.0".
            NodeKind::Scalar { text, .. } => visitor.visit_str(text).map_err(|e| self.at(e)),
            _ => self.deserialize_any(visitor),
        }
    }

    fn deserialize_string<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        self.deserialize_str(visitor)
    }

    fn deserialize_identifier<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        self.deserialize_str(visitor)
    }

    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        match self.node.kind {
            NodeKind::Null => visitor.visit_none(),
            _ => visitor.visit_some(self),
        }
        .map_err(|e| self.at(e))
    }

    fn deserialize_unit<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        self.deserialize_any(visitor)
    }

    fn deserialize_unit_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        visitor: V,
    ) -> Result<V::Value, Error> {
        self.deserialize_any(visitor)
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        visitor: V,
    ) -> Result<V::Value, Error> {
        visitor.visit_newtype_struct(self).map_err(|e| self.at(e))
    }

    fn deserialize_seq<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        match &self.node.kind {
            // `rules:` with nothing after it means no rules.
            NodeKind::Null => self.visit_seq_items(&[], visitor),
            _ => self.deserialize_any(visitor),
        }
        .map_err(|e| self.at(e))
    }

    fn deserialize_tuple<V: Visitor<'de>>(
        self,
        _len: usize,
        visitor: V,
    ) -> Result<V::Value, Error> {
        self.deserialize_seq(visitor)
    }

    fn deserialize_tuple_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _len: usize,
        visitor: V,
    ) -> Result<V::Value, Error> {
        self.deserialize_seq(visitor)
    }

    fn deserialize_map<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        match &self.node.kind {
            // `match:` with nothing after it means no conditions.
            NodeKind::Null => self.visit_map_entries(&[], visitor),
            _ => self.deserialize_any(visitor),
        }
        .map_err(|e| self.at(e))
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, Error> {
        self.deserialize_map(visitor)
    }

    fn deserialize_enum<V: Visitor<'de>>(
        self,
        name: &'static str,
        variants: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, Error> {
        let node = self.node;
        let trail = self.trail;
        let access = match &node.kind {
            NodeKind::Scalar { .. } => EnumAcc {
                tag: node,
                tag_trail: TagAt::Same,
                body: Body {
                    kind: BodyKind::None,
                    trail,
                },
            },
            NodeKind::Map(entries) => {
                if let Some((_, tag)) = entries.iter().find(|(k, _)| k.as_str() == Some("type")) {
                    let rest: Vec<(Node, Node)> = entries
                        .iter()
                        .filter(|(k, _)| k.as_str() != Some("type"))
                        .cloned()
                        .collect();
                    let body = Node {
                        kind: NodeKind::Map(rest),
                        line: node.line,
                        column: node.column,
                    };
                    EnumAcc {
                        tag,
                        tag_trail: TagAt::TypeKey,
                        body: Body {
                            kind: BodyKind::Owned(body),
                            trail,
                        },
                    }
                } else if let [(key, value)] = entries.as_slice() {
                    if key.as_str().is_some_and(|k| variants.contains(&k)) {
                        EnumAcc {
                            tag: key,
                            tag_trail: TagAt::OnlyKey,
                            body: Body {
                                kind: BodyKind::Node(value, key),
                                trail,
                            },
                        }
                    } else {
                        return Err(self.at(missing_type(name, variants)));
                    }
                } else {
                    return Err(self.at(missing_type(name, variants)));
                }
            }
            _ => {
                let what = if name == "FaultSpec" {
                    "a fault"
                } else {
                    "one of the allowed values"
                };
                let (_, example) = enum_words(name, variants);
                return Err(self.at(Error::new(
                    format!("expected {what}, found {}", node.describe()),
                    Some(example),
                )));
            }
        };
        visitor.visit_enum(access).map_err(|mut e| {
            if !e.from_tag {
                return self.at(e);
            }
            e.from_tag = false;
            // A wrong variant name makes the whole value unreadable: work around
            // the enum, not only its tag.
            e.repair = Some(trail.steps());
            if let Some((variant, expected)) = e.unknown_variant.take() {
                let noun = enum_noun(name);
                e.message = format!("unknown {noun} `{variant}`");
                let list = backticked(expected);
                e.hint = Some(match closest(&variant, expected) {
                    Some(c) => format!("did you mean `{c}`? {noun}s: {list}"),
                    None => format!("{noun}s: {list}"),
                });
            }
            self.at(e)
        })
    }

    fn deserialize_ignored_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        visitor.visit_unit()
    }
}

/// What users call the values of an enum, for messages.
fn enum_noun(name: &str) -> &'static str {
    match name {
        "FaultSpec" => "fault type",
        "DistForm" => "distribution",
        "Endpoint" => "endpoint",
        "ApiKind" => "api",
        _ => "value",
    }
}

fn enum_words(name: &str, variants: &[&str]) -> (&'static str, String) {
    if name == "FaultSpec" {
        (
            "fault type",
            format!(
                "write a fault like `- type: delay` followed by its fields; fault types: {}",
                backticked(variants)
            ),
        )
    } else {
        (
            "value",
            format!("expected one of: {}", backticked(variants)),
        )
    }
}

fn missing_type(name: &str, variants: &[&str]) -> Error {
    let (what, example) = enum_words(name, variants);
    Error::new(format!("missing `type` (the {what})"), Some(example))
}

struct SeqAcc<'a> {
    iter: std::slice::Iter<'a, Node>,
    count: usize,
    trail: &'a Trail<'a>,
}

impl<'de> de::SeqAccess<'de> for SeqAcc<'_> {
    type Error = Error;

    fn next_element_seed<T: DeserializeSeed<'de>>(
        &mut self,
        seed: T,
    ) -> Result<Option<T::Value>, Error> {
        match self.iter.next() {
            Some(node) => {
                let t = self.trail.index(self.count);
                self.count += 1;
                seed.deserialize(NodeDe { node, trail: &t }).map(Some)
            }
            None => Ok(None),
        }
    }

    fn size_hint(&self) -> Option<usize> {
        Some(self.iter.len())
    }
}

struct MapAcc<'a> {
    iter: std::slice::Iter<'a, (Node, Node)>,
    value: Option<(&'a Node, &'a Node)>,
    trail: &'a Trail<'a>,
}

impl<'de> de::MapAccess<'de> for MapAcc<'_> {
    type Error = Error;

    fn next_key_seed<K: DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, Error> {
        match self.iter.next() {
            Some((k, v)) => {
                self.value = Some((k, v));
                let t = self.trail.key(k);
                seed.deserialize(NodeDe { node: k, trail: &t })
                    .map(Some)
                    .map_err(|e| e.locate_key(k, &t))
            }
            None => Ok(None),
        }
    }

    fn next_value_seed<V: DeserializeSeed<'de>>(&mut self, seed: V) -> Result<V::Value, Error> {
        match self.value.take() {
            Some((k, v)) => {
                let t = self.trail.key(k);
                seed.deserialize(NodeDe { node: v, trail: &t })
                    .map_err(|e| e.locate(v, &t))
            }
            None => Err(Error::new("a value was read before its key".into(), None)),
        }
    }

    fn size_hint(&self) -> Option<usize> {
        Some(self.iter.len())
    }
}

/// Where an enum's tag is, relative to the enum's node.
#[derive(Clone, Copy)]
enum TagAt {
    /// `endpoint: chat`: the node is the tag.
    Same,
    /// `{type: delay, ...}`: under the `type` key.
    TypeKey,
    /// `{delay: {...}}`: the only key.
    OnlyKey,
}

enum BodyKind<'a> {
    /// `endpoint: chat`: a bare name.
    None,
    /// `{delay: {duration: 1s}}`: the value under the variant's key (and that key).
    Node(&'a Node, &'a Node),
    /// `{type: delay, duration: 1s}`: the mapping without its `type` key.
    Owned(Node),
}

/// A variant's fields, and where the enum is.
struct Body<'a> {
    kind: BodyKind<'a>,
    trail: &'a Trail<'a>,
}

struct EnumAcc<'a> {
    tag: &'a Node,
    tag_trail: TagAt,
    body: Body<'a>,
}

impl<'de, 'a> de::EnumAccess<'de> for EnumAcc<'a> {
    type Error = Error;
    type Variant = Body<'a>;

    fn variant_seed<V: DeserializeSeed<'de>>(self, seed: V) -> Result<(V::Value, Body<'a>), Error> {
        let tag = self.tag;
        let trail = self.body.trail;
        let type_trail = trail.key_str("type");
        let key_trail = trail.key(tag);
        let (tag_trail, on_key) = match self.tag_trail {
            TagAt::Same => (trail, false),
            TagAt::TypeKey => (&type_trail, false),
            TagAt::OnlyKey => (&key_trail, true),
        };
        let value = match &tag.kind {
            NodeKind::Scalar { .. } => seed.deserialize(NodeDe {
                node: tag,
                trail: tag_trail,
            }),
            _ => Err(Error::new(
                format!("expected a name, found {}", tag.describe()),
                Some("write the name as plain text, e.g. `type: delay`".into()),
            )),
        }
        .map_err(|mut e| {
            e.from_tag = e.unknown_variant.is_some();
            if on_key {
                e.locate_key(tag, tag_trail)
            } else {
                e.locate(tag, tag_trail)
            }
        })?;
        Ok((value, self.body))
    }
}

impl<'de> de::VariantAccess<'de> for Body<'_> {
    type Error = Error;

    fn unit_variant(self) -> Result<(), Error> {
        let trail = self.trail;
        match self.kind {
            BodyKind::None => Ok(()),
            BodyKind::Node(n, _) if n.kind == NodeKind::Null => Ok(()),
            BodyKind::Owned(n) => match &n.kind {
                NodeKind::Map(entries) if !entries.is_empty() => {
                    let (k, _) = &entries[0];
                    let t = trail.key(k);
                    Err(Error::new(
                        format!("unknown field `{}`", k.as_str().unwrap_or("?")),
                        Some("this takes no fields".into()),
                    )
                    .locate_key(k, &t))
                }
                _ => Ok(()),
            },
            BodyKind::Node(n, key) => {
                let t = trail.key(key);
                Err(Error::new(
                    format!("expected nothing here, found {}", n.describe()),
                    Some("this takes no fields".into()),
                )
                .locate(n, &t))
            }
        }
    }

    fn newtype_variant_seed<T: DeserializeSeed<'de>>(self, seed: T) -> Result<T::Value, Error> {
        let trail = self.trail;
        match self.kind {
            BodyKind::Node(n, key) => {
                let t = trail.key(key);
                seed.deserialize(NodeDe { node: n, trail: &t })
            }
            BodyKind::Owned(n) => seed.deserialize(NodeDe { node: &n, trail }),
            // `- reset` alone: a fault (a struct) with no fields given.
            BodyKind::None => seed.deserialize(NoFields { trail }),
        }
    }

    fn tuple_variant<V: Visitor<'de>>(self, _len: usize, visitor: V) -> Result<V::Value, Error> {
        let trail = self.trail;
        match self.kind {
            BodyKind::Node(n, key) => {
                let t = trail.key(key);
                de::Deserializer::deserialize_seq(NodeDe { node: n, trail: &t }, visitor)
            }
            BodyKind::Owned(n) => {
                de::Deserializer::deserialize_seq(NodeDe { node: &n, trail }, visitor)
            }
            BodyKind::None => Err(Error::new("a list is needed here".into(), None)),
        }
    }

    fn struct_variant<V: Visitor<'de>>(
        self,
        _fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, Error> {
        let trail = self.trail;
        match self.kind {
            BodyKind::Node(n, key) => {
                let t = trail.key(key);
                de::Deserializer::deserialize_map(NodeDe { node: n, trail: &t }, visitor)
            }
            BodyKind::Owned(n) => {
                de::Deserializer::deserialize_map(NodeDe { node: &n, trail }, visitor)
            }
            // `- reset` alone: a fault with no fields.
            BodyKind::None => visitor.visit_map(MapAcc {
                iter: [].iter(),
                value: None,
                trail,
            }),
        }
    }
}

/// The body of a variant named alone (`- reset`): a struct with no fields given,
/// so each field takes its default or is reported missing. Anything but a struct
/// needs a value.
struct NoFields<'a> {
    trail: &'a Trail<'a>,
}

impl<'de> de::Deserializer<'de> for NoFields<'_> {
    type Error = Error;

    fn deserialize_any<V: Visitor<'de>>(self, _visitor: V) -> Result<V::Value, Error> {
        Err(Error::new("a value is needed here".into(), None))
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, Error> {
        visitor.visit_map(MapAcc {
            iter: [].iter(),
            value: None,
            trail: self.trail,
        })
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string
        bytes byte_buf option unit unit_struct newtype_struct seq tuple
        tuple_struct map enum identifier ignored_any
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;
    use std::collections::BTreeMap;

    #[test]
    fn positions_are_one_based() {
        let t = parse_tree("a:\n  b: [1, 'x']\n", "f").unwrap();
        assert_eq!((t.line, t.column), (1, 1));
        let b = t.at_path(&[PathSeg::Key("a"), PathSeg::Key("b")]).unwrap();
        assert_eq!((b.line, b.column), (2, 6));
        let x = t
            .at_path(&[PathSeg::Key("a"), PathSeg::Key("b"), PathSeg::Index(1)])
            .unwrap();
        assert_eq!((x.line, x.column), (2, 10));
        assert_eq!(
            x.kind,
            NodeKind::Scalar {
                text: "x".into(),
                style: ScalarStyle::Quoted
            }
        );
        let k = t.get("a").unwrap().key("b").unwrap();
        assert_eq!((k.line, k.column), (2, 3));
    }

    #[test]
    fn core_schema_resolution() {
        let v: serde_json::Value = from_str(
            "[~, null, true, False, 12, -3, 0x1f, 1.5, 1e3, .inf, '12', abc, 1.2.3, '']",
            "f",
        )
        .unwrap();
        let text = v.to_string();
        assert_eq!(
            text,
            r#"[null,null,true,false,12,-3,31,1.5,1000.0,null,"12","abc","1.2.3",""]"#
        );
    }

    #[test]
    fn plain_scalar_as_string() {
        #[derive(Deserialize)]
        struct S {
            a: String,
            b: String,
        }
        let s: S = from_str("a: 1.0\nb: true\n", "f").unwrap();
        assert_eq!((s.a.as_str(), s.b.as_str()), ("1.0", "true"));
    }

    #[test]
    fn quoted_number_is_not_a_number() {
        let e = from_str::<BTreeMap<String, u32>>("a: '5'\n", "f").unwrap_err();
        assert_eq!((e.line, e.column), (1, 4));
        assert!(
            e.message.contains("expected a whole number"),
            "{}",
            e.message
        );
        assert!(
            e.hint.as_deref().unwrap_or("").contains("without quotes"),
            "{e}"
        );
    }

    #[test]
    fn json_loads() {
        let v: BTreeMap<String, Vec<u32>> = from_str(r#"{"a": [1, 2], "b": []}"#, "f").unwrap();
        assert_eq!(v["a"], vec![1, 2]);
    }

    #[test]
    fn anchors_and_aliases() {
        let v: BTreeMap<String, Vec<u32>> = from_str("a: &x [1, 2]\nb: *x\n", "f").unwrap();
        assert_eq!(v["b"], vec![1, 2]);
    }

    #[test]
    fn tuple_length_checked() {
        let e = from_str::<(u8, u8)>("[1, 2, 3]", "f").unwrap_err();
        assert_eq!((e.line, e.column), (1, 8));
    }

    #[test]
    fn empty_document_is_null() {
        let t = parse_tree("# just a comment\n", "f").unwrap();
        assert_eq!(t.kind, NodeKind::Null);
    }

    #[test]
    fn suggestions() {
        assert_eq!(closest("duraton", &["duration", "type"]), Some("duration"));
        assert_eq!(closest("zzz", &["duration", "type"]), None);
        assert_eq!(edit_distance("kitten", "sitting"), 3);
    }
}
