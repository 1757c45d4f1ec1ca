//! gRPC status codes, the `grpc-message` encoding and `grpc-timeout`, as the gRPC
//! over HTTP/2 specification (PROTOCOL-HTTP2.md) and `statuscodes.md` define them.
//!
//! Profiles name codes the way people write them (`unavailable`, `UNAVAILABLE`,
//! `resource-exhausted`, `14`), records and metrics use the canonical names, and
//! the wire uses numbers; one table keeps the three in step. Injected errors put
//! human text in `grpc-message`, which must be percent-encoded or a strict client
//! drops it; `grpc-timeout` is read so a fault's hold can be taken off the deadline
//! that travels upstream, and written back in the same units a stock client uses.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

/// A gRPC status code (0 ..= 16).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Code {
    Ok = 0,
    Cancelled = 1,
    Unknown = 2,
    InvalidArgument = 3,
    DeadlineExceeded = 4,
    NotFound = 5,
    AlreadyExists = 6,
    PermissionDenied = 7,
    ResourceExhausted = 8,
    FailedPrecondition = 9,
    Aborted = 10,
    OutOfRange = 11,
    Unimplemented = 12,
    Internal = 13,
    Unavailable = 14,
    DataLoss = 15,
    Unauthenticated = 16,
}

/// Every code, in number order.
pub const ALL: [Code; 17] = [
    Code::Ok,
    Code::Cancelled,
    Code::Unknown,
    Code::InvalidArgument,
    Code::DeadlineExceeded,
    Code::NotFound,
    Code::AlreadyExists,
    Code::PermissionDenied,
    Code::ResourceExhausted,
    Code::FailedPrecondition,
    Code::Aborted,
    Code::OutOfRange,
    Code::Unimplemented,
    Code::Internal,
    Code::Unavailable,
    Code::DataLoss,
    Code::Unauthenticated,
];

impl Code {
    /// The number sent in `grpc-status`.
    pub fn as_u32(self) -> u32 {
        self as u32
    }

    /// The code for a `grpc-status` number; `None` outside 0 ..= 16 (a client maps
    /// those to UNKNOWN, see [`Code::from_wire`]).
    pub fn from_u32(n: u32) -> Option<Code> {
        ALL.get(n as usize).copied()
    }

    /// The code a client reports for a `grpc-status` header value: unparsable or
    /// out-of-range values read as UNKNOWN, as grpc-go and grpc-core read them.
    pub fn from_wire(value: &[u8]) -> Code {
        std::str::from_utf8(value)
            .ok()
            .and_then(|s| s.trim().parse::<u32>().ok())
            .and_then(Code::from_u32)
            .unwrap_or(Code::Unknown)
    }

    /// The canonical name (`RESOURCE_EXHAUSTED`), as records and metrics write it.
    pub fn name(self) -> &'static str {
        match self {
            Code::Ok => "OK",
            Code::Cancelled => "CANCELLED",
            Code::Unknown => "UNKNOWN",
            Code::InvalidArgument => "INVALID_ARGUMENT",
            Code::DeadlineExceeded => "DEADLINE_EXCEEDED",
            Code::NotFound => "NOT_FOUND",
            Code::AlreadyExists => "ALREADY_EXISTS",
            Code::PermissionDenied => "PERMISSION_DENIED",
            Code::ResourceExhausted => "RESOURCE_EXHAUSTED",
            Code::FailedPrecondition => "FAILED_PRECONDITION",
            Code::Aborted => "ABORTED",
            Code::OutOfRange => "OUT_OF_RANGE",
            Code::Unimplemented => "UNIMPLEMENTED",
            Code::Internal => "INTERNAL",
            Code::Unavailable => "UNAVAILABLE",
            Code::DataLoss => "DATA_LOSS",
            Code::Unauthenticated => "UNAUTHENTICATED",
        }
    }

    /// A code from a profile: a name in any case, with `_`, `-` or nothing between
    /// words (`unavailable`, `RESOURCE_EXHAUSTED`, `deadline-exceeded`,
    /// `DeadlineExceeded`; grpc-go's `Canceled` and grpcio's `StatusCode.NAME`
    /// too), or a number 0 ..= 16.
    pub fn parse(s: &str) -> Option<Code> {
        let s = s.trim();
        // grpcio prints codes as `StatusCode.UNAVAILABLE`.
        let s = s.strip_prefix("StatusCode.").unwrap_or(s);
        if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) {
            return s.parse::<u32>().ok().and_then(Code::from_u32);
        }
        let squashed: String = s
            .chars()
            .filter(|c| *c != '_' && *c != '-' && *c != ' ')
            .map(|c| c.to_ascii_uppercase())
            .collect();
        if squashed == "CANCELED" {
            return Some(Code::Cancelled);
        }
        ALL.into_iter()
            .find(|c| c.name().replace('_', "") == squashed)
    }

    /// What a gRPC client reports when the answer was not gRPC at all, by HTTP
    /// status (PROTOCOL-HTTP2.md, "HTTP to gRPC status code mapping"). A proxy
    /// that answers 504 to a gRPC call makes the client see UNAVAILABLE, which is
    /// why `hang` ends with DEADLINE_EXCEEDED in trailers instead.
    pub fn from_http_status(status: u16) -> Code {
        match status {
            400 => Code::Internal,
            401 => Code::Unauthenticated,
            403 => Code::PermissionDenied,
            404 => Code::Unimplemented,
            429 | 502 | 503 | 504 => Code::Unavailable,
            _ => Code::Unknown,
        }
    }

    /// What a gRPC client reports when its stream is reset with this HTTP/2 error
    /// code (RST_STREAM or GOAWAY; PROTOCOL-HTTP2.md, "Errors"): what `reset`'s
    /// `code` makes the client see.
    pub fn from_h2_reason(reason: u32) -> Code {
        match reason {
            0x7 => Code::Unavailable,       // REFUSED_STREAM (clients retry it)
            0x8 => Code::Cancelled,         // CANCEL
            0xb => Code::ResourceExhausted, // ENHANCE_YOUR_CALM
            0xc => Code::PermissionDenied,  // INADEQUATE_SECURITY
            _ => Code::Internal,            // NO_ERROR .. CONNECT_ERROR and unknown
        }
    }
}

impl fmt::Display for Code {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A status name or number that is not a gRPC code.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{0}` is not a gRPC status: use a name such as `unavailable` or a number 0-16")]
pub struct UnknownCode(pub String);

impl FromStr for Code {
    type Err = UnknownCode;
    fn from_str(s: &str) -> Result<Code, UnknownCode> {
        Code::parse(s).ok_or_else(|| UnknownCode(s.to_string()))
    }
}

// ---------------------------------------------------------------------------
// grpc-message
// ---------------------------------------------------------------------------

/// Percent-encode a status message for `grpc-message`: UTF-8 bytes outside
/// `%x20-%x24 / %x26-%x7E` (and `%` itself) become `%XX`.
pub fn encode_message(msg: &str) -> String {
    let mut out = String::with_capacity(msg.len());
    for &b in msg.as_bytes() {
        if (0x20..=0x7e).contains(&b) && b != b'%' {
            out.push(b as char);
        } else {
            out.push('%');
            out.push(HEX[(b >> 4) as usize] as char);
            out.push(HEX[(b & 0xf) as usize] as char);
        }
    }
    out
}

const HEX: &[u8; 16] = b"0123456789ABCDEF";

/// Decode a `grpc-message` value. As the spec requires, a malformed escape is not
/// an error: it is kept as it stands, and invalid UTF-8 is replaced, so no message
/// is ever lost.
pub fn decode_message(value: &[u8]) -> String {
    let mut out = Vec::with_capacity(value.len());
    let mut i = 0;
    while i < value.len() {
        if value[i] == b'%' && i + 2 < value.len() {
            if let (Some(h), Some(l)) = (hex_val(value[i + 1]), hex_val(value[i + 2])) {
                out.push(h << 4 | l);
                i += 3;
                continue;
            }
        }
        out.push(value[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn hex_val(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

// ---------------------------------------------------------------------------
// grpc-timeout
// ---------------------------------------------------------------------------

/// The largest value `grpc-timeout` may carry: eight digits.
pub const MAX_TIMEOUT_VALUE: u64 = 99_999_999;

/// A `grpc-timeout` value that does not follow `<1-8 digits><H|M|S|m|u|n>`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("malformed grpc-timeout `{0}`: want 1 to 8 digits and a unit H, M, S, m, u or n")]
pub struct BadTimeout(pub String);

/// Parse `grpc-timeout` (`<digits><unit>`, at most 8 digits; H hours, M minutes,
/// S seconds, m milliseconds, u microseconds, n nanoseconds).
pub fn parse_timeout(value: &str) -> Result<Duration, BadTimeout> {
    let bad = || BadTimeout(value.to_string());
    let v = value.trim();
    let (digits, unit) = v.split_at(v.len().saturating_sub(1));
    if digits.is_empty() || digits.len() > 8 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(bad());
    }
    let n: u64 = digits.parse().map_err(|_| bad())?;
    Ok(match unit {
        "H" => Duration::from_secs(n * 3600),
        "M" => Duration::from_secs(n * 60),
        "S" => Duration::from_secs(n),
        "m" => Duration::from_millis(n),
        "u" => Duration::from_micros(n),
        "n" => Duration::from_nanos(n),
        _ => return Err(bad()),
    })
}

/// Write a duration as `grpc-timeout` in the finest unit whose value fits eight
/// digits, rounding up (as grpc-go does, so a deadline is never made shorter than
/// asked). Zero is `0n`; anything beyond 99,999,999 hours is capped there.
pub fn format_timeout(d: Duration) -> String {
    const UNITS: [(u128, char); 6] = [
        (1, 'n'),
        (1_000, 'u'),
        (1_000_000, 'm'),
        (1_000_000_000, 'S'),
        (60_000_000_000, 'M'),
        (3_600_000_000_000, 'H'),
    ];
    let nanos = d.as_nanos();
    for (per, unit) in UNITS {
        let v = nanos.div_ceil(per);
        if v <= u128::from(MAX_TIMEOUT_VALUE) {
            return format!("{v}{unit}");
        }
    }
    format!("{MAX_TIMEOUT_VALUE}H")
}

/// The `grpc-timeout` to send upstream after a fault held the call for `held`:
/// `Ok(None)` when nothing is left (the call has already passed its deadline and
/// should end with DEADLINE_EXCEEDED instead of going upstream).
pub fn reduce_timeout(value: &str, held: Duration) -> Result<Option<String>, BadTimeout> {
    let t = parse_timeout(value)?;
    Ok(t.checked_sub(held)
        .filter(|left| !left.is_zero())
        .map(format_timeout))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_numbers_round_trip() {
        for (n, c) in ALL.iter().enumerate() {
            assert_eq!(c.as_u32() as usize, n);
            assert_eq!(Code::parse(c.name()), Some(*c));
            assert_eq!(Code::parse(&c.name().to_lowercase()), Some(*c));
            assert_eq!(Code::parse(&n.to_string()), Some(*c));
            assert_eq!(Code::from_wire(n.to_string().as_bytes()), *c);
        }
        assert_eq!(
            Code::parse("resource-exhausted"),
            Some(Code::ResourceExhausted)
        );
        assert_eq!(
            Code::parse("DeadlineExceeded"),
            Some(Code::DeadlineExceeded)
        );
        assert_eq!(Code::parse("canceled"), Some(Code::Cancelled));
        assert_eq!(
            Code::parse("StatusCode.UNAVAILABLE"),
            Some(Code::Unavailable)
        );
        assert_eq!(Code::parse("17"), None);
        assert_eq!(Code::parse("nope"), None);
        assert_eq!(Code::parse(""), None);
        assert_eq!(Code::from_wire(b"99"), Code::Unknown);
        assert_eq!(Code::from_wire(b"x"), Code::Unknown);
        assert!("bogus".parse::<Code>().is_err());
    }

    #[test]
    fn message_encoding_follows_the_spec() {
        assert_eq!(encode_message("rate limit: 100%"), "rate limit: 100%25");
        assert_eq!(encode_message("é\n"), "%C3%A9%0A");
        assert_eq!(decode_message(b"%C3%A9%0A ok%25"), "é\n ok%");
        // Malformed escapes stay as they were.
        assert_eq!(decode_message(b"50%"), "50%");
        assert_eq!(decode_message(b"%zz%4"), "%zz%4");
        for s in ["", "plain", "tab\there", "100% ✓ done", "%%%"] {
            assert_eq!(decode_message(encode_message(s).as_bytes()), s);
        }
    }

    #[test]
    fn timeouts_parse_and_format() {
        assert_eq!(parse_timeout("1S"), Ok(Duration::from_secs(1)));
        assert_eq!(parse_timeout("250m"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_timeout("2H"), Ok(Duration::from_secs(7200)));
        assert_eq!(
            parse_timeout("99999999n"),
            Ok(Duration::from_nanos(99_999_999))
        );
        for bad in ["", "S", "123456789S", "10s", "-1S", "1.5S", "10 S"] {
            assert!(parse_timeout(bad).is_err(), "{bad}");
        }
        assert_eq!(format_timeout(Duration::ZERO), "0n");
        assert_eq!(format_timeout(Duration::from_millis(50)), "50000000n");
        assert_eq!(format_timeout(Duration::from_secs(1)), "1000000u");
        assert_eq!(format_timeout(Duration::from_secs(100)), "100000m");
        assert_eq!(format_timeout(Duration::from_secs(100_000)), "100000S");
        assert_eq!(format_timeout(Duration::from_nanos(100_000_001)), "100001u");
        assert_eq!(format_timeout(Duration::MAX), "99999999H");
        for d in [1u64, 999, 123_456_789, 5_000_000_000, 86_400_000_000_000] {
            let d = Duration::from_nanos(d);
            let back = parse_timeout(&format_timeout(d)).unwrap();
            assert!(back >= d && back - d < d / 10_000_000 + Duration::from_nanos(1_000));
        }
        assert_eq!(
            reduce_timeout("1S", Duration::from_millis(300)),
            Ok(Some("700000u".to_string()))
        );
        assert_eq!(reduce_timeout("1S", Duration::from_secs(2)), Ok(None));
    }

    #[test]
    fn client_side_mappings() {
        assert_eq!(Code::from_http_status(504), Code::Unavailable);
        assert_eq!(Code::from_http_status(404), Code::Unimplemented);
        assert_eq!(Code::from_http_status(500), Code::Unknown);
        assert_eq!(Code::from_h2_reason(0x8), Code::Cancelled);
        assert_eq!(Code::from_h2_reason(0x7), Code::Unavailable);
        assert_eq!(Code::from_h2_reason(0x2), Code::Internal);
        assert_eq!(Code::from_h2_reason(0xb), Code::ResourceExhausted);
    }
}
