//! A JSON reader that keeps where every value lies in the text, so that a rewrite
//! can copy the values it does not change byte for byte.
//!
//! Parsing into `serde_json::Value` and writing it out again is not exact: without
//! serde_json's `float_roundtrip` feature a number like `0.21234214144787922`
//! comes back as `0.2123421414478792`; keys are sorted, `"\u00e9"` becomes `"é"`,
//! whitespace is lost. A client comparing the hits it was sent with the database's
//! own (an id, a score threshold, a payload hash) would see damage no fault made.
//! So the vector rewriters read the body into [`Node`]s, which record byte ranges,
//! and build their output by splicing the original text of the hits they keep.
//!
//! The grammar is RFC 8259 as `serde_json` accepts it when it parses a `Value`
//! (strings are valid UTF-8 without raw control characters, `\u` escapes pair their
//! surrogates, numbers are finite, at most 127 nested containers), so a body this
//! reader accepts is one serde_json accepts, and so is every splice of its values.

use std::borrow::Cow;
use std::ops::Range;

/// serde_json's recursion limit: containers nested deeper than this are an error.
const MAX_NESTING: usize = 127;

/// One JSON value and where it lies in the text.
#[derive(Debug, Clone)]
pub(crate) struct Node<'a> {
    /// The value's bytes, from its first to its last character.
    pub(crate) span: Range<usize>,
    pub(crate) kind: Kind<'a>,
}

#[derive(Debug, Clone)]
pub(crate) enum Kind<'a> {
    /// Members in document order, keys decoded; empty past the kept depth.
    Object(Vec<(Cow<'a, str>, Node<'a>)>),
    /// Elements in order; empty past the kept depth.
    Array(Vec<Node<'a>>),
    String,
    Number,
    Bool,
    Null,
}

impl<'a> Node<'a> {
    pub(crate) fn is_object(&self) -> bool {
        matches!(self.kind, Kind::Object(_))
    }

    pub(crate) fn is_array(&self) -> bool {
        matches!(self.kind, Kind::Array(_))
    }

    pub(crate) fn is_number(&self) -> bool {
        matches!(self.kind, Kind::Number)
    }

    pub(crate) fn is_string(&self) -> bool {
        matches!(self.kind, Kind::String)
    }

    pub(crate) fn is_null(&self) -> bool {
        matches!(self.kind, Kind::Null)
    }

    /// The members of an object (document order, duplicates included).
    pub(crate) fn members(&self) -> Option<&[(Cow<'a, str>, Node<'a>)]> {
        match &self.kind {
            Kind::Object(m) => Some(m),
            _ => None,
        }
    }

    /// The elements of an array.
    pub(crate) fn elements(&self) -> Option<&[Node<'a>]> {
        match &self.kind {
            Kind::Array(a) => Some(a),
            _ => None,
        }
    }

    /// The value of `key` in an object; with duplicate keys the last, as serde_json
    /// (and most clients) read it.
    pub(crate) fn get(&self, key: &str) -> Option<&Node<'a>> {
        self.members()?
            .iter()
            .rev()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v)
    }

    /// The value's text.
    pub(crate) fn text<'s>(&self, src: &'s str) -> &'s str {
        &src[self.span.clone()]
    }

    /// A number's value as serde_json's `as_i64` gives it (an integer in range;
    /// `-0` and anything with a fraction or exponent are floats).
    pub(crate) fn as_i64(&self, src: &str) -> Option<i64> {
        if !self.is_number() {
            return None;
        }
        let t = self.text(src);
        if t == "-0" || t.bytes().any(|b| matches!(b, b'.' | b'e' | b'E')) {
            return None;
        }
        t.parse().ok()
    }

    /// A number's value, correctly rounded (Rust's parser is exact).
    pub(crate) fn as_f64(&self, src: &str) -> Option<f64> {
        if !self.is_number() {
            return None;
        }
        self.text(src).parse().ok()
    }

    /// A string's decoded content.
    pub(crate) fn as_str(&self, src: &str) -> Option<String> {
        if !self.is_string() {
            return None;
        }
        serde_json::from_str(self.text(src)).ok()
    }
}

/// How an array is written: its opening (`[` and the whitespace after it), the
/// separator between its first two elements, and its closing, so a rewritten list
/// keeps the upstream's layout (compact or pretty-printed).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ArrayFmt {
    pub(crate) span: Range<usize>,
    open: Range<usize>,
    sep: Option<Range<usize>>,
    close: Range<usize>,
}

impl ArrayFmt {
    /// The layout of an array node (`None` for anything else).
    pub(crate) fn of(node: &Node<'_>) -> Option<ArrayFmt> {
        let elems = node.elements()?;
        let s = node.span.clone();
        let (open, close) = match (elems.first(), elems.last()) {
            (Some(first), Some(last)) => (s.start..first.span.start, last.span.end..s.end),
            _ => (s.start..s.start + 1, s.end - 1..s.end),
        };
        let sep = match elems {
            [a, b, ..] => Some(a.span.end..b.span.start),
            _ => None,
        };
        Some(ArrayFmt {
            span: s,
            open,
            sep,
            close,
        })
    }

    /// `items` as an array in this layout (`[]` when there are none).
    pub(crate) fn write<S: AsRef<str>>(&self, src: &str, items: &[S]) -> String {
        let sep = self.sep.clone().map_or(",", |r| &src[r]);
        write_array(
            &src[self.open.clone()],
            sep,
            &src[self.close.clone()],
            items,
        )
    }
}

/// `items` as a compact array.
pub(crate) fn compact_array<S: AsRef<str>>(items: &[S]) -> String {
    write_array("[", ",", "]", items)
}

fn write_array<S: AsRef<str>>(open: &str, sep: &str, close: &str, items: &[S]) -> String {
    if items.is_empty() {
        return "[]".to_string();
    }
    let len: usize = items.iter().map(|i| i.as_ref().len() + sep.len()).sum();
    let mut out = String::with_capacity(open.len() + len + close.len());
    out.push_str(open);
    for (i, item) in items.iter().enumerate() {
        if i > 0 {
            out.push_str(sep);
        }
        out.push_str(item.as_ref());
    }
    out.push_str(close);
    out
}

/// `src` with each range replaced by its text; ranges must not overlap (they are
/// applied in start order).
pub(crate) fn splice(src: &str, mut edits: Vec<(Range<usize>, String)>) -> String {
    edits.sort_by_key(|(r, _)| r.start);
    let grow: usize = edits.iter().map(|(_, t)| t.len()).sum();
    let mut out = String::with_capacity(src.len() + grow);
    let mut at = 0;
    for (r, text) in &edits {
        out.push_str(&src[at..r.start]);
        out.push_str(text);
        at = r.end;
    }
    out.push_str(&src[at..]);
    out
}

/// Read a whole JSON text. Containers nested deeper than `keep` (the root is at
/// depth 0) are checked but their members and elements are not kept, which bounds
/// the work on large answers to the levels the caller looks at. `None` when the
/// text is not JSON.
pub(crate) fn parse(src: &str, keep: usize) -> Option<Node<'_>> {
    let mut p = Parser {
        src,
        s: src.as_bytes(),
        i: 0,
        keep,
    };
    p.ws();
    let root = p.value(0)?;
    p.ws();
    (p.i == p.s.len()).then_some(root)
}

struct Parser<'a> {
    src: &'a str,
    s: &'a [u8],
    i: usize,
    keep: usize,
}

impl<'a> Parser<'a> {
    fn ws(&mut self) {
        while let Some(b' ' | b'\t' | b'\n' | b'\r') = self.s.get(self.i) {
            self.i += 1;
        }
    }

    fn eat(&mut self, b: u8) -> Option<()> {
        (self.s.get(self.i) == Some(&b)).then(|| self.i += 1)
    }

    fn value(&mut self, depth: usize) -> Option<Node<'a>> {
        let start = self.i;
        let kind = match *self.s.get(self.i)? {
            b'{' => {
                if depth >= MAX_NESTING {
                    return None;
                }
                self.i += 1;
                let mut members = Vec::new();
                self.ws();
                if self.eat(b'}').is_none() {
                    loop {
                        self.ws();
                        let key = self.key(depth < self.keep)?;
                        self.ws();
                        self.eat(b':')?;
                        self.ws();
                        let v = self.value(depth + 1)?;
                        if let Some(k) = key {
                            members.push((k, v));
                        }
                        self.ws();
                        match *self.s.get(self.i)? {
                            b',' => self.i += 1,
                            b'}' => {
                                self.i += 1;
                                break;
                            }
                            _ => return None,
                        }
                    }
                }
                Kind::Object(members)
            }
            b'[' => {
                if depth >= MAX_NESTING {
                    return None;
                }
                self.i += 1;
                let mut elems = Vec::new();
                self.ws();
                if self.eat(b']').is_none() {
                    loop {
                        self.ws();
                        let v = self.value(depth + 1)?;
                        if depth < self.keep {
                            elems.push(v);
                        }
                        self.ws();
                        match *self.s.get(self.i)? {
                            b',' => self.i += 1,
                            b']' => {
                                self.i += 1;
                                break;
                            }
                            _ => return None,
                        }
                    }
                }
                Kind::Array(elems)
            }
            b'"' => {
                self.string()?;
                Kind::String
            }
            b't' => self.word(b"true", Kind::Bool)?,
            b'f' => self.word(b"false", Kind::Bool)?,
            b'n' => self.word(b"null", Kind::Null)?,
            b'-' | b'0'..=b'9' => {
                self.number()?;
                Kind::Number
            }
            _ => return None,
        };
        Some(Node {
            span: start..self.i,
            kind,
        })
    }

    fn word(&mut self, w: &[u8], kind: Kind<'a>) -> Option<Kind<'a>> {
        if self.s[self.i..].starts_with(w) {
            self.i += w.len();
            Some(kind)
        } else {
            None
        }
    }

    /// A key, decoded when `decode` (`Some(None)` when not asked to).
    fn key(&mut self, decode: bool) -> Option<Option<Cow<'a, str>>> {
        if self.s.get(self.i) != Some(&b'"') {
            return None;
        }
        let start = self.i;
        let escaped = self.string()?;
        if !decode {
            return Some(None);
        }
        let raw = &self.src[start..self.i];
        if escaped {
            serde_json::from_str::<String>(raw)
                .ok()
                .map(|k| Some(Cow::Owned(k)))
        } else {
            Some(Some(Cow::Borrowed(&raw[1..raw.len() - 1])))
        }
    }

    /// A string starting at the quote; whether it holds escapes.
    fn string(&mut self) -> Option<bool> {
        self.i += 1;
        let mut escaped = false;
        loop {
            match *self.s.get(self.i)? {
                b'"' => {
                    self.i += 1;
                    return Some(escaped);
                }
                b'\\' => {
                    escaped = true;
                    self.i += 1;
                    match *self.s.get(self.i)? {
                        b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't' => self.i += 1,
                        b'u' => {
                            self.i += 1;
                            let n = self.hex4()?;
                            if (0xDC00..=0xDFFF).contains(&n) {
                                return None;
                            }
                            if (0xD800..=0xDBFF).contains(&n) {
                                // A leading surrogate must be followed by a trailing one.
                                if !self.s[self.i..].starts_with(b"\\u") {
                                    return None;
                                }
                                self.i += 2;
                                let m = self.hex4()?;
                                if !(0xDC00..=0xDFFF).contains(&m) {
                                    return None;
                                }
                            }
                        }
                        _ => return None,
                    }
                }
                0x00..=0x1f => return None,
                _ => self.i += 1,
            }
        }
    }

    fn hex4(&mut self) -> Option<u16> {
        let h = self.s.get(self.i..self.i + 4)?;
        let h = std::str::from_utf8(h).ok()?;
        if !h.bytes().all(|b| b.is_ascii_hexdigit()) {
            return None;
        }
        self.i += 4;
        u16::from_str_radix(h, 16).ok()
    }

    fn digits(&mut self) -> usize {
        let start = self.i;
        while self.s.get(self.i).is_some_and(u8::is_ascii_digit) {
            self.i += 1;
        }
        self.i - start
    }

    fn number(&mut self) -> Option<()> {
        let start = self.i;
        let _ = self.eat(b'-');
        match *self.s.get(self.i)? {
            b'0' => self.i += 1,
            b'1'..=b'9' => {
                self.digits();
            }
            _ => return None,
        }
        let mut float = false;
        if self.eat(b'.').is_some() {
            float = true;
            if self.digits() == 0 {
                return None;
            }
        }
        if let Some(b'e' | b'E') = self.s.get(self.i) {
            float = true;
            self.i += 1;
            if let Some(b'+' | b'-') = self.s.get(self.i) {
                self.i += 1;
            }
            if self.digits() == 0 {
                return None;
            }
        }
        // serde_json reads integers beyond 64 bits, and every float, as f64, and
        // refuses one that overflows.
        let text = &self.src[start..self.i];
        let big_int = !float && text.parse::<i64>().is_err() && text.parse::<u64>().is_err();
        if (float || big_int) && !text.parse::<f64>().is_ok_and(f64::is_finite) {
            return None;
        }
        Some(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn accepts(s: &str) -> bool {
        parse(s, usize::MAX).is_some()
    }

    #[test]
    fn agrees_with_serde_json_on_what_is_json() {
        let deep_ok = format!("{}{}", "[".repeat(127), "]".repeat(127));
        let deep_bad = format!("{}{}", "[".repeat(128), "]".repeat(128));
        let cases = [
            "{}",
            "[]",
            " {\"a\" : [1, -0, 0.5, 1e-7, 1E+2, -12.5e3, true, false, null] } ",
            "\"\\u00e9\\ud83d\\ude00\\/\\b\\f\\n\\r\\t\"",
            "\"\\ud83d\"",
            "\"\\ude00\"",
            "\"\\ud83d\\u0041\"",
            "\"\\ud83dx\"",
            "\"\\x\"",
            "\"a\u{1}b\"",
            "\"\\u12\"",
            "01",
            "1.",
            ".5",
            "-",
            "1e",
            "1e400",
            "-1e400",
            "1e-400",
            "123456789012345678901234567890",
            "18446744073709551615",
            "18446744073709551616",
            "-9223372036854775809",
            "[1,]",
            "{\"a\":1,}",
            "{\"a\"}",
            "{1:2}",
            "[1 2]",
            "tru",
            "nul",
            "[] x",
            "",
            "  ",
            "{\"a\":1}{",
            &deep_ok,
            &deep_bad,
            "[\"\u{e9}\"]",
        ];
        for c in cases {
            let serde = serde_json::from_str::<serde_json::Value>(c).is_ok();
            assert_eq!(accepts(c), serde, "{c:?}");
        }
    }

    #[test]
    fn spans_and_keys() {
        let src = r#"{"a\u0062":[1, {"x":2}],"c":"d","c":3}"#;
        let root = parse(src, usize::MAX).expect("json");
        let ab = root.get("ab").expect("decoded key");
        assert_eq!(ab.text(src), r#"[1, {"x":2}]"#);
        assert_eq!(root.get("c").expect("last").text(src), "3");
        let fmt = ArrayFmt::of(ab).expect("array");
        assert_eq!(fmt.write(src, &["7", "8", "9"]), "[7, 8, 9]");
        assert_eq!(fmt.write::<&str>(src, &[]), "[]");
    }

    #[test]
    fn keep_bounds_the_tree() {
        let src = r#"{"a":[[1,2],[3]]}"#;
        let root = parse(src, 1).expect("json");
        let a = root.get("a").expect("a");
        assert!(a.is_array());
        assert!(a.elements().expect("arr").is_empty());
        let root = parse(src, 2).expect("json");
        let a = root.get("a").expect("a");
        assert_eq!(a.elements().map(<[Node<'_>]>::len), Some(2));
        assert_eq!(
            a.elements().expect("a")[0].elements().map(<[_]>::len),
            Some(0)
        );
    }
}
