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
    /// The first structural problem (duplicate key, unknown alias); the receiver
    /// cannot fail, so it is kept and reported after parsing.
    error: Option<(usize, usize, String, Option<String>)>,
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
                    if self.error.is_none() {
                        if let Some(text) = k.as_str() {
                            if let Some((first, _)) =
                                entries.iter().find(|(e, _)| e.as_str() == Some(text))
                            {
                                self.error = Some((
                                    k.line,
                                    k.column,
                                    format!("duplicate key `{text}`"),
                                    Some(format!(
                                        "`{text}` is already set at line {}; keep one of them",
                                        first.line
                                    )),
                                ));
                            }
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
            Event::Alias(id) => match self.anchors.get(&id) {
                Some(node) => {
                    let node = node.clone();
                    self.push(node, 0);
                }
                None => {
                    if self.error.is_none() {
                        self.error = Some((line, column, "unknown alias".into(), None));
                    }
                    self.push(
                        Node {
                            kind: NodeKind::Null,
                            line,
                            column,
                        },
                        0,
                    );
                }
            },
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
/// read.
pub fn parse_tree(src: &str, file: &str) -> Result<Node, Diagnostic> {
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
    if let Some((line, column, message, hint)) = builder.error {
        return Err(Diagnostic {
            file: file.into(),
            line,
            column,
            message,
            hint,
        });
    }
    Ok(builder.root.unwrap_or(Node {
        kind: NodeKind::Null,
        line: 1,
        column: 1,
    }))
}

/// Deserialize `T` from YAML (or JSON) text, reporting the position of any error.
pub fn from_str<T: DeserializeOwned>(src: &str, file: &str) -> Result<T, Diagnostic> {
    let tree = parse_tree(src, file)?;
    from_node(&tree, file)
}

/// Deserialize `T` from an already parsed tree (for callers that also need the tree,
/// e.g. to position semantic errors).
pub fn from_node<T: DeserializeOwned>(node: &Node, file: &str) -> Result<T, Diagnostic> {
    T::deserialize(NodeDe(node)).map_err(|e| e.into_diagnostic(file, node))
}

// ---------------------------------------------------------------------------
// Errors.

/// A deserialization error, positioned at the innermost node being read when it
/// happened.
#[derive(Debug, Clone, PartialEq)]
pub struct Error {
    pos: Option<(usize, usize)>,
    message: String,
    hint: Option<String>,
    unknown_variant: Option<(String, &'static [&'static str])>,
    /// Set when the unknown variant was the enum's own tag, so only the enum being
    /// read (not an enclosing one) rewrites the message.
    from_tag: bool,
}

impl Error {
    fn new(message: String, hint: Option<String>) -> Self {
        Error {
            pos: None,
            message,
            hint,
            unknown_variant: None,
            from_tag: false,
        }
    }

    /// Stamp the node's position unless an inner node already did.
    fn locate(mut self, node: &Node) -> Self {
        if self.pos.is_none() {
            self.pos = Some((node.line, node.column));
        }
        self
    }

    fn into_diagnostic(self, file: &str, root: &Node) -> Diagnostic {
        let (line, column) = self.pos.unwrap_or((root.line, root.column));
        Diagnostic {
            file: file.into(),
            line,
            column,
            message: self.message,
            hint: self.hint,
        }
    }
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
        let (what, hint) = expected_text(&exp.to_string());
        Error::new(
            format!("expected {what}, found {}", unexpected_text(&unexp)),
            hint,
        )
    }

    fn invalid_value(unexp: de::Unexpected<'_>, exp: &dyn de::Expected) -> Self {
        let (what, hint) = expected_text(&exp.to_string());
        let hint = match exp.to_string().as_str() {
            "u8" => Some("must be between 0 and 255".into()),
            "u16" => Some("must be between 0 and 65535".into()),
            "u32" => Some("must be between 0 and 4294967295".into()),
            "u64" | "usize" => Some("must be 0 or more".into()),
            _ => hint,
        };
        Error::new(
            format!(
                "{} is not valid here: expected {what}",
                unexpected_text(&unexp)
            ),
            hint,
        )
    }

    fn invalid_length(len: usize, exp: &dyn de::Expected) -> Self {
        Error::new(
            format!("wrong number of items ({len}): expected {exp}"),
            None,
        )
    }

    fn unknown_variant(variant: &str, expected: &'static [&'static str]) -> Self {
        let mut e = Error::new(
            format!("unknown value `{variant}`"),
            suggestion(variant, expected, "expected one of"),
        );
        e.unknown_variant = Some((variant.to_string(), expected));
        e
    }

    fn unknown_field(field: &str, expected: &'static [&'static str]) -> Self {
        let hint = if expected.is_empty() {
            Some("this takes no fields".into())
        } else {
            suggestion(field, expected, "expected one of")
        };
        Error::new(format!("unknown field `{field}`"), hint)
    }

    fn missing_field(field: &'static str) -> Self {
        Error::new(
            format!("missing field `{field}`"),
            Some(format!("add `{field}:` to this mapping")),
        )
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

#[derive(Clone, Copy)]
struct NodeDe<'a>(&'a Node);

impl<'a> NodeDe<'a> {
    fn visit_seq_items<'de, V: Visitor<'de>>(
        self,
        items: &'a [Node],
        visitor: V,
    ) -> Result<V::Value, Error> {
        let mut access = SeqAcc {
            iter: items.iter(),
            count: 0,
        };
        let value = visitor.visit_seq(&mut access)?;
        let rest = access.iter.len();
        if rest > 0 {
            let extra = &items[items.len() - rest];
            return Err(Error::new(
                format!("too many items: only {} expected", access.count),
                Some("remove the extra items".into()),
            )
            .locate(extra));
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
        let node = self.0;
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
        result.map_err(|e| e.locate(node))
    }

    forward_to_any! {
        deserialize_bool deserialize_i8 deserialize_i16 deserialize_i32 deserialize_i64
        deserialize_i128 deserialize_u8 deserialize_u16 deserialize_u32 deserialize_u64
        deserialize_u128 deserialize_f32 deserialize_f64 deserialize_char deserialize_bytes
        deserialize_byte_buf
    }

    fn deserialize_str<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        match &self.0.kind {
            // A plain scalar asked for as text is text: `version: 1.0` as a string is "1.0".
            NodeKind::Scalar { text, .. } => {
                visitor.visit_str(text).map_err(|e: Error| e.locate(self.0))
            }
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
        match self.0.kind {
            NodeKind::Null => visitor.visit_none(),
            _ => visitor.visit_some(self),
        }
        .map_err(|e| e.locate(self.0))
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
        visitor
            .visit_newtype_struct(self)
            .map_err(|e| e.locate(self.0))
    }

    fn deserialize_seq<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        match &self.0.kind {
            // `rules:` with nothing after it means no rules.
            NodeKind::Null => self.visit_seq_items(&[], visitor),
            _ => self.deserialize_any(visitor),
        }
        .map_err(|e| e.locate(self.0))
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
        match &self.0.kind {
            // `match:` with nothing after it means no conditions.
            NodeKind::Null => self.visit_map_entries(&[], visitor),
            _ => self.deserialize_any(visitor),
        }
        .map_err(|e| e.locate(self.0))
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
        let node = self.0;
        let access = match &node.kind {
            NodeKind::Scalar { .. } => EnumAcc {
                tag: node,
                body: Body::None,
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
                        body: Body::Owned(body),
                    }
                } else if let [(key, value)] = entries.as_slice() {
                    if key.as_str().is_some_and(|k| variants.contains(&k)) {
                        EnumAcc {
                            tag: key,
                            body: Body::Node(value),
                        }
                    } else {
                        return Err(missing_type(name, variants, node));
                    }
                } else {
                    return Err(missing_type(name, variants, node));
                }
            }
            _ => {
                let what = if name == "FaultSpec" {
                    "a fault"
                } else {
                    "one of the allowed values"
                };
                let (_, example) = enum_words(name, variants);
                return Err(Error::new(
                    format!("expected {what}, found {}", node.describe()),
                    Some(example),
                )
                .locate(node));
            }
        };
        let tag = access.tag;
        visitor.visit_enum(access).map_err(|mut e| {
            if !e.from_tag {
                return e.locate(node);
            }
            e.from_tag = false;
            if let Some((variant, expected)) = e.unknown_variant.take() {
                let noun = enum_noun(name);
                e.message = format!("unknown {noun} `{variant}`");
                let list = backticked(expected);
                e.hint = Some(match closest(&variant, expected) {
                    Some(c) => format!("did you mean `{c}`? {noun}s: {list}"),
                    None => format!("{noun}s: {list}"),
                });
            }
            e.locate(tag)
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

fn missing_type(name: &str, variants: &[&str], node: &Node) -> Error {
    let (what, example) = enum_words(name, variants);
    Error::new(format!("missing `type` (the {what})"), Some(example)).locate(node)
}

struct SeqAcc<'a> {
    iter: std::slice::Iter<'a, Node>,
    count: usize,
}

impl<'de> de::SeqAccess<'de> for SeqAcc<'_> {
    type Error = Error;

    fn next_element_seed<T: DeserializeSeed<'de>>(
        &mut self,
        seed: T,
    ) -> Result<Option<T::Value>, Error> {
        match self.iter.next() {
            Some(node) => {
                self.count += 1;
                seed.deserialize(NodeDe(node)).map(Some)
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
    value: Option<&'a Node>,
}

impl<'de> de::MapAccess<'de> for MapAcc<'_> {
    type Error = Error;

    fn next_key_seed<K: DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, Error> {
        match self.iter.next() {
            Some((k, v)) => {
                self.value = Some(v);
                seed.deserialize(NodeDe(k))
                    .map(Some)
                    .map_err(|e| e.locate(k))
            }
            None => Ok(None),
        }
    }

    fn next_value_seed<V: DeserializeSeed<'de>>(&mut self, seed: V) -> Result<V::Value, Error> {
        match self.value.take() {
            Some(v) => seed.deserialize(NodeDe(v)).map_err(|e| e.locate(v)),
            None => Err(Error::new("a value was read before its key".into(), None)),
        }
    }

    fn size_hint(&self) -> Option<usize> {
        Some(self.iter.len())
    }
}

enum Body<'a> {
    /// `endpoint: chat`: a bare name.
    None,
    /// `{delay: {duration: 1s}}`: the value under the variant's key.
    Node(&'a Node),
    /// `{type: delay, duration: 1s}`: the mapping without its `type` key.
    Owned(Node),
}

struct EnumAcc<'a> {
    tag: &'a Node,
    body: Body<'a>,
}

impl<'de, 'a> de::EnumAccess<'de> for EnumAcc<'a> {
    type Error = Error;
    type Variant = Body<'a>;

    fn variant_seed<V: DeserializeSeed<'de>>(self, seed: V) -> Result<(V::Value, Body<'a>), Error> {
        let tag = self.tag;
        let value = match &tag.kind {
            NodeKind::Scalar { .. } => seed.deserialize(NodeDe(tag)),
            _ => Err(Error::new(
                format!("expected a name, found {}", tag.describe()),
                Some("write the name as plain text, e.g. `type: delay`".into()),
            )),
        }
        .map_err(|mut e| {
            e.from_tag = e.unknown_variant.is_some();
            e.locate(tag)
        })?;
        Ok((value, self.body))
    }
}

impl<'de> de::VariantAccess<'de> for Body<'_> {
    type Error = Error;

    fn unit_variant(self) -> Result<(), Error> {
        match self {
            Body::None => Ok(()),
            Body::Node(n) if n.kind == NodeKind::Null => Ok(()),
            Body::Owned(n) => match &n.kind {
                NodeKind::Map(entries) if !entries.is_empty() => {
                    let (k, _) = &entries[0];
                    Err(Error::new(
                        format!("unknown field `{}`", k.as_str().unwrap_or("?")),
                        Some("this takes no fields".into()),
                    )
                    .locate(k))
                }
                _ => Ok(()),
            },
            Body::Node(n) => Err(Error::new(
                format!("expected nothing here, found {}", n.describe()),
                Some("this takes no fields".into()),
            )
            .locate(n)),
        }
    }

    fn newtype_variant_seed<T: DeserializeSeed<'de>>(self, seed: T) -> Result<T::Value, Error> {
        match self {
            Body::Node(n) => seed.deserialize(NodeDe(n)),
            Body::Owned(n) => seed.deserialize(NodeDe(&n)),
            Body::None => Err(Error::new("a value is needed here".into(), None)),
        }
    }

    fn tuple_variant<V: Visitor<'de>>(self, _len: usize, visitor: V) -> Result<V::Value, Error> {
        match self {
            Body::Node(n) => de::Deserializer::deserialize_seq(NodeDe(n), visitor),
            Body::Owned(n) => de::Deserializer::deserialize_seq(NodeDe(&n), visitor),
            Body::None => Err(Error::new("a list is needed here".into(), None)),
        }
    }

    fn struct_variant<V: Visitor<'de>>(
        self,
        _fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, Error> {
        match self {
            Body::Node(n) => de::Deserializer::deserialize_map(NodeDe(n), visitor),
            Body::Owned(n) => de::Deserializer::deserialize_map(NodeDe(&n), visitor),
            // `- reset` alone: a fault with no fields.
            Body::None => visitor.visit_map(MapAcc {
                iter: [].iter(),
                value: None,
            }),
        }
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
