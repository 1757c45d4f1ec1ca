//! The HTTP vocabulary both data paths speak: which headers are hop-by-hop, how
//! HTTP/2's preface is told from HTTP/1, the headers brownout reads or writes
//! itself, and how a client's retry count is read.
//!
//! The fast path ([`crate::http1`]) reads raw header names out of its buffer and
//! the full path ([`crate::pipeline`]) reads them from hyper's `HeaderMap`. Each
//! name and rule is written once here, as text for the first and as a parsed
//! [`HeaderName`] for the second, so that an answer cannot depend on which path
//! happened to carry it. Nothing here allocates on the fast path's side.

pub(crate) mod date;
pub(crate) mod h1;

use http::header::{HeaderMap, HeaderName, CONNECTION};

/// Headers that describe one connection, not the message (RFC 9110 §7.6.1): a
/// proxy never forwards them.
pub(crate) const HOP_BY_HOP: [&str; 8] = [
    "connection",
    "keep-alive",
    "proxy-connection",
    "te",
    "transfer-encoding",
    "upgrade",
    "proxy-authenticate",
    "proxy-authorization",
];

/// [`HOP_BY_HOP`] as parsed names, so that removing them from a `HeaderMap` costs
/// no parsing per request.
static HOP_BY_HOP_NAMES: [HeaderName; 8] = [
    HeaderName::from_static(HOP_BY_HOP[0]),
    HeaderName::from_static(HOP_BY_HOP[1]),
    HeaderName::from_static(HOP_BY_HOP[2]),
    HeaderName::from_static(HOP_BY_HOP[3]),
    HeaderName::from_static(HOP_BY_HOP[4]),
    HeaderName::from_static(HOP_BY_HOP[5]),
    HeaderName::from_static(HOP_BY_HOP[6]),
    HeaderName::from_static(HOP_BY_HOP[7]),
];

/// Whether a raw header name (any case) is one of [`HOP_BY_HOP`]. Inlined: the
/// fast path asks it of every header line of every request and answer.
#[inline]
pub(crate) fn is_hop_by_hop(name: &str) -> bool {
    is_hop_by_hop_raw(name.as_bytes())
}

/// [`is_hop_by_hop`] of a name as the wire has it, not yet known to be text.
#[inline]
pub(crate) fn is_hop_by_hop_raw(name: &[u8]) -> bool {
    HOP_BY_HOP
        .iter()
        .any(|h| h.as_bytes().eq_ignore_ascii_case(name))
}

/// Whether a request's (first) `te` value accepts trailers: the one `te` both
/// paths pass on, as `te: trailers`, for peers (gRPC's among them) that read it as
/// the client's promise to take trailers.
#[inline]
pub(crate) fn te_trailers(value: &[u8]) -> bool {
    value
        .split(|b| *b == b',')
        .any(|t| t.trim_ascii().eq_ignore_ascii_case(b"trailers"))
}

/// Remove hop-by-hop headers and any header the `Connection` header names.
/// Keeps `te: trailers`, which is end-to-end in meaning for gRPC-style peers.
pub(crate) fn strip_hop_by_hop(h: &mut HeaderMap) {
    // Most messages carry none of these, or one (`connection`): one pass over the
    // map says which, and only those are looked up again.
    let mut found = [false; HOP_BY_HOP.len()];
    let mut any = false;
    for k in h.keys() {
        if let Some(i) = HOP_BY_HOP_NAMES.iter().position(|n| n == k) {
            found[i] = true;
            any = true;
        }
    }
    if !any {
        return;
    }
    if found[0] {
        let named: Vec<HeaderName> = h
            .get_all(CONNECTION)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .map(str::trim)
            // Hop-by-hop names go below, when present: the common
            // `keep-alive` token costs no name of its own.
            .filter(|t| !t.is_empty() && !is_hop_by_hop(t))
            // `from_bytes` lowers the case itself.
            .filter_map(|t| HeaderName::from_bytes(t.as_bytes()).ok())
            .collect();
        for n in named {
            h.remove(n);
        }
    }
    let keep_te_trailers = found[3]
        && h.get(http::header::TE)
            .is_some_and(|v| te_trailers(v.as_bytes()));
    for (n, _) in HOP_BY_HOP_NAMES.iter().zip(found).filter(|(_, f)| *f) {
        h.remove(n);
    }
    if keep_te_trailers {
        h.insert(http::header::TE, http::HeaderValue::from_static("trailers"));
    }
}

/// The first bytes an HTTP/2 client with prior knowledge sends (RFC 9113 §3.4).
const H2_PREFACE: &[u8; 24] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// Whether `first` (the first bytes of a plain connection) opens HTTP/2's
/// preface: `Some(true)` once all of it came, `Some(false)` at the first byte
/// that differs, `None` while too few bytes came to tell.
#[inline]
pub(crate) fn h2_preface(first: &[u8]) -> Option<bool> {
    let n = first.len().min(H2_PREFACE.len());
    if first[..n] != H2_PREFACE[..n] {
        Some(false)
    } else if n == H2_PREFACE.len() {
        Some(true)
    } else {
        None
    }
}

/// `x-brownout-fault`: the faults a client asks for (with `allow_header_faults`),
/// and on an answer the faults brownout applied (`mark_injected`).
pub(crate) const FAULT: &str = "x-brownout-fault";
/// [`FAULT`], parsed.
pub(crate) static FAULT_NAME: HeaderName = HeaderName::from_static(FAULT);

/// `x-brownout-seq`: the drill's call ordinal, read for matching and never
/// forwarded.
pub(crate) const SEQ: &str = "x-brownout-seq";
/// [`SEQ`], parsed.
pub(crate) static SEQ_NAME: HeaderName = HeaderName::from_static(SEQ);

/// `x-stainless-retry-count`: which attempt of a call the OpenAI and Anthropic
/// SDKs are making (0 first), the record's `attempt`.
pub(crate) const RETRY_COUNT: &str = "x-stainless-retry-count";
/// [`RETRY_COUNT`], parsed.
pub(crate) static RETRY_COUNT_NAME: HeaderName = HeaderName::from_static(RETRY_COUNT);

/// The attempt a [`RETRY_COUNT`] value names: a plain decimal number, else none.
/// Both parsers have already cut the spaces around a value.
#[inline]
pub(crate) fn retry_count(value: &[u8]) -> Option<u32> {
    std::str::from_utf8(value).ok()?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hop_by_hop_removed() {
        let mut h = HeaderMap::new();
        h.insert("connection", "keep-alive, x-custom".parse().unwrap());
        h.insert("keep-alive", "timeout=5".parse().unwrap());
        h.insert("x-custom", "1".parse().unwrap());
        h.insert("te", "trailers, deflate".parse().unwrap());
        h.insert("x-end-to-end", "yes".parse().unwrap());
        strip_hop_by_hop(&mut h);
        assert!(h.get("connection").is_none());
        assert!(h.get("keep-alive").is_none());
        assert!(h.get("x-custom").is_none());
        assert_eq!(h.get("te").unwrap(), "trailers");
        assert_eq!(h.get("x-end-to-end").unwrap(), "yes");
    }

    #[test]
    fn one_hop_by_hop_list_whatever_the_form() {
        for (text, parsed) in HOP_BY_HOP.iter().zip(&HOP_BY_HOP_NAMES) {
            assert_eq!(parsed.as_str(), *text);
            assert!(is_hop_by_hop(&text.to_ascii_uppercase()));
        }
        assert!(!is_hop_by_hop("host"));
        assert!(!is_hop_by_hop("trailer"));
    }

    #[test]
    fn the_h2_preface_is_told_from_http_1() {
        assert_eq!(h2_preface(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"), Some(true));
        assert_eq!(
            h2_preface(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\0\0"),
            Some(true)
        );
        assert_eq!(h2_preface(b"PRI * HT"), None);
        assert_eq!(h2_preface(b""), None);
        assert_eq!(h2_preface(b"GET / HTTP/1.1\r\n"), Some(false));
    }

    #[test]
    fn retry_counts_are_plain_numbers() {
        assert_eq!(retry_count(b"0"), Some(0));
        assert_eq!(retry_count(b"3"), Some(3));
        assert_eq!(retry_count(b"-1"), None);
        assert_eq!(retry_count(b"two"), None);
        assert_eq!(retry_count(b""), None);
        assert_eq!(retry_count(b"3\xc2\xa0"), None);
    }
}
