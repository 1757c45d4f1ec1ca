//! In-place edits of JSON text: find string values by key and splice new ones in.
//!
//! Content faults rewrite one string (a delta's text, a finish reason) and must
//! leave every other byte alone: re-serializing through `serde_json::Value` would
//! reorder keys and change number formatting, which a client comparing against the
//! unfaulted stream would see as damage brownout did not intend.

use std::ops::Range;

/// The content ranges (inside the quotes, still JSON-escaped) of every string value
/// whose key is one of `keys`, at any depth, in document order.
///
/// A tolerant scanner, not a validator: it tracks strings (so a key-like text inside
/// a value never matches) and stops quietly at anything unterminated.
pub(crate) fn string_values(json: &[u8], keys: &[&str]) -> Vec<Range<usize>> {
    let mut out = Vec::new();
    let mut i = 0;
    while i < json.len() {
        if json[i] != b'"' {
            i += 1;
            continue;
        }
        let Some(end) = string_end(json, i) else {
            break;
        };
        let name = &json[i + 1..end];
        i = end + 1;
        let j = skip_ws(json, i);
        if json.get(j) != Some(&b':') {
            continue;
        }
        let v = skip_ws(json, j + 1);
        i = v;
        if json.get(v) == Some(&b'"') && keys.iter().any(|k| k.as_bytes() == name) {
            let Some(vend) = string_end(json, v) else {
                break;
            };
            out.push(v + 1..vend);
            i = vend + 1;
        }
    }
    out
}

/// The index of the quote closing the string that opens at `open`.
fn string_end(json: &[u8], open: usize) -> Option<usize> {
    let mut k = open + 1;
    while k < json.len() {
        match json[k] {
            b'\\' => k += 2,
            b'"' => return Some(k),
            _ => k += 1,
        }
    }
    None
}

fn skip_ws(json: &[u8], mut i: usize) -> usize {
    while i < json.len() && matches!(json[i], b' ' | b'\t' | b'\n' | b'\r') {
        i += 1;
    }
    i
}

/// Decode the escaped content of a JSON string (a range from [`string_values`]).
pub(crate) fn decode(json: &[u8], content: Range<usize>) -> Option<String> {
    if content.start == 0 || content.end >= json.len() {
        return None;
    }
    serde_json::from_slice(&json[content.start - 1..content.end + 1]).ok()
}

/// `s` escaped as JSON string content (no surrounding quotes).
pub(crate) fn encode(s: &str) -> String {
    let quoted = serde_json::Value::String(s.to_string()).to_string();
    quoted[1..quoted.len() - 1].to_string()
}

/// `src` with each range replaced by its new bytes; ranges must be in order and
/// must not overlap.
pub(crate) fn splice(src: &[u8], edits: &[(Range<usize>, Vec<u8>)]) -> Vec<u8> {
    let grow: usize = edits.iter().map(|(_, b)| b.len()).sum();
    let mut out = Vec::with_capacity(src.len() + grow);
    let mut at = 0;
    for (r, bytes) in edits {
        out.extend_from_slice(&src[at..r.start]);
        out.extend_from_slice(bytes);
        at = r.end;
    }
    out.extend_from_slice(&src[at..]);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_values_not_lookalikes() {
        let j = br#"{"type":"text","text":"say \"text\": \"x\"","n":{"text" : "b"},"text":1}"#;
        let r = string_values(j, &["text"]);
        let got: Vec<String> = r.iter().map(|r| decode(j, r.clone()).unwrap()).collect();
        assert_eq!(got, [r#"say "text": "x""#, "b"]);
    }

    #[test]
    fn unterminated_is_quiet() {
        assert!(string_values(br#"{"text":"abc"#, &["text"]).is_empty());
        assert!(string_values(br#"{"te"#, &["text"]).is_empty());
    }

    #[test]
    fn splices_in_order() {
        let j = br#"{"a":"xx","b":"yy"}"#;
        let r = string_values(j, &["a", "b"]);
        let out = splice(
            j,
            &[
                (r[0].clone(), b"1".to_vec()),
                (r[1].clone(), b"22\\n".to_vec()),
            ],
        );
        assert_eq!(out, br#"{"a":"1","b":"22\n"}"#);
    }
}
