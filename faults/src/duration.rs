//! Durations and byte sizes as users write them ("250ms", "2s", "5m", "1MiB").
//!
//! Profiles and configs are read by people under pressure (a game day, a failing CI
//! stage), so every duration carries its unit: a bare `250` could be milliseconds or
//! seconds, and guessing wrong turns a gentle delay into a 4-minute hang.

use std::borrow::Cow;
use std::fmt;
use std::time::Duration;

use schemars::{json_schema, JsonSchema, Schema, SchemaGenerator};

use crate::yaml::HINT_SEPARATOR;

/// A `Duration` written with a unit in files ("250ms", "2s", "1m30s").
///
/// A newtype rather than a bare `Duration` so that serde reads the human form and the
/// JSON Schema describes a string with a unit, not serde's `{secs, nanos}` struct.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct DurationStr(pub Duration);

impl fmt::Display for DurationStr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&format_duration(self.0))
    }
}

/// The hint attached to every duration error, because the usual mistake is a missing unit.
pub const DURATION_HINT: &str = "durations need a unit, e.g. 250ms, 2s, 1.5s, 5m, 1h or 1m30s";

/// The regular expression the JSON Schema uses for a duration string.
pub const DURATION_PATTERN: &str = r"^\s*([0-9]+(\.[0-9]+)?\s*(ns|us|µs|ms|s|m|h)\s*)+$";

const UNITS: &[(&str, f64)] = &[
    ("ns", 1e-9),
    ("us", 1e-6),
    ("µs", 1e-6),
    ("ms", 1e-3),
    ("s", 1.0),
    ("m", 60.0),
    ("h", 3600.0),
];

/// Parse "250ms", "2s", "1.5s", "5m", "1h", "100us", or compounds like "1m30s".
///
/// The error message is a full sentence and already names the accepted units, so
/// callers can show it as is.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let text = s.trim();
    if text.is_empty() {
        return Err(format!("empty duration{HINT_SEPARATOR}{DURATION_HINT}"));
    }
    if text.parse::<f64>().is_ok() {
        return Err(format!(
            "`{text}` has no unit{HINT_SEPARATOR}{DURATION_HINT}"
        ));
    }
    let mut rest = text;
    let mut total = 0f64;
    while !rest.is_empty() {
        let num_len = rest
            .char_indices()
            .find(|(_, c)| !(c.is_ascii_digit() || *c == '.'))
            .map(|(i, _)| i)
            .unwrap_or(rest.len());
        if num_len == 0 {
            return Err(format!(
                "`{text}` is not a duration{HINT_SEPARATOR}{DURATION_HINT}"
            ));
        }
        let number: f64 = rest[..num_len]
            .parse()
            .map_err(|_| format!("`{text}` is not a duration{HINT_SEPARATOR}{DURATION_HINT}"))?;
        rest = rest[num_len..].trim_start();
        let unit_len = rest
            .char_indices()
            .find(|(_, c)| c.is_ascii_digit() || *c == '.' || c.is_whitespace())
            .map(|(i, _)| i)
            .unwrap_or(rest.len());
        let unit = &rest[..unit_len];
        let Some((_, factor)) = UNITS.iter().find(|(u, _)| *u == unit) else {
            return Err(if unit.is_empty() {
                format!("`{text}` has a number without a unit{HINT_SEPARATOR}{DURATION_HINT}")
            } else {
                format!("`{text}` has an unknown unit `{unit}`{HINT_SEPARATOR}{DURATION_HINT}")
            });
        };
        total += number * factor;
        rest = rest[unit_len..].trim_start();
    }
    if !total.is_finite() || total > 1e12 {
        return Err(format!("`{text}` is too long a duration"));
    }
    Ok(Duration::from_secs_f64(total))
}

/// Print a duration the way users write it ("250ms", "2s", "1m30s"), so `explain`,
/// logs and error messages echo the profile's own notation back.
pub fn format_duration(d: Duration) -> String {
    if d.is_zero() {
        return "0s".into();
    }
    let nanos = d.as_nanos();
    if nanos < 1_000 {
        return format!("{nanos}ns");
    }
    if nanos < 1_000_000 {
        return trim_float(nanos as f64 / 1e3, "us");
    }
    if nanos < 1_000_000_000 {
        return trim_float(nanos as f64 / 1e6, "ms");
    }
    // Whole seconds (and larger) print as h/m/s parts; sub-second rests as a decimal.
    let secs = d.as_secs();
    let sub = d.subsec_nanos();
    if secs < 60 {
        return if sub == 0 {
            format!("{secs}s")
        } else {
            trim_float(d.as_secs_f64(), "s")
        };
    }
    let h = secs / 3600;
    let m = (secs % 3600) / 60;
    let s = secs % 60;
    let mut out = String::new();
    if h > 0 {
        out.push_str(&format!("{h}h"));
    }
    if m > 0 {
        out.push_str(&format!("{m}m"));
    }
    if sub > 0 {
        out.push_str(&trim_float(s as f64 + f64::from(sub) / 1e9, "s"));
    } else if s > 0 {
        out.push_str(&format!("{s}s"));
    }
    out
}

fn trim_float(v: f64, unit: &str) -> String {
    let s = format!("{v:.3}");
    let s = s.trim_end_matches('0').trim_end_matches('.');
    format!("{s}{unit}")
}

/// Parse a byte size: "1000", "64KiB", "1MiB", "10MB", "1.5GB".
///
/// Both binary (KiB, MiB, GiB) and decimal (KB, MB, GB) units are accepted because
/// users copy sizes from docs that use either; a bare number means bytes.
pub fn parse_bytes(s: &str) -> Result<u64, String> {
    let text = s.trim();
    let split = text
        .char_indices()
        .find(|(_, c)| !(c.is_ascii_digit() || *c == '.'))
        .map(|(i, _)| i)
        .unwrap_or(text.len());
    let (num, unit) = (&text[..split], text[split..].trim());
    let hint = "sizes are a number of bytes or a number with a unit, e.g. 1000, 64KiB, 1MiB, 10MB";
    let number: f64 = num
        .parse()
        .map_err(|_| format!("`{text}` is not a size{HINT_SEPARATOR}{hint}"))?;
    let factor: f64 = match unit.to_ascii_lowercase().as_str() {
        "" | "b" => 1.0,
        "k" | "kb" => 1e3,
        "kib" => 1024.0,
        "m" | "mb" => 1e6,
        "mib" => 1024.0 * 1024.0,
        "g" | "gb" => 1e9,
        "gib" => 1024.0 * 1024.0 * 1024.0,
        "t" | "tb" => 1e12,
        "tib" => 1024f64.powi(4),
        _ => {
            return Err(format!(
                "`{text}` has an unknown unit `{unit}`{HINT_SEPARATOR}{hint}"
            ))
        }
    };
    let bytes = number * factor;
    if !bytes.is_finite() || bytes > u64::MAX as f64 {
        return Err(format!("`{text}` is too large"));
    }
    Ok(bytes.round() as u64)
}

impl<'de> serde::Deserialize<'de> for DurationStr {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_str(DurationVisitor)
    }
}

struct DurationVisitor;

impl serde::de::Visitor<'_> for DurationVisitor {
    type Value = DurationStr;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a duration with a unit, like \"250ms\" or \"2s\"")
    }

    fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Self::Value, E> {
        parse_duration(v).map(DurationStr).map_err(E::custom)
    }

    fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<Self::Value, E> {
        Err(E::custom(format!(
            "`{v}` has no unit{HINT_SEPARATOR}{DURATION_HINT}"
        )))
    }

    fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<Self::Value, E> {
        Err(E::custom(format!(
            "`{v}` has no unit{HINT_SEPARATOR}{DURATION_HINT}"
        )))
    }

    fn visit_f64<E: serde::de::Error>(self, v: f64) -> Result<Self::Value, E> {
        Err(E::custom(format!(
            "`{v}` has no unit{HINT_SEPARATOR}{DURATION_HINT}"
        )))
    }
}

impl JsonSchema for DurationStr {
    fn schema_name() -> Cow<'static, str> {
        "Duration".into()
    }

    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "type": "string",
            "pattern": DURATION_PATTERN,
            "description": "A duration with a unit: ns, us, ms, s, m, h (\"250ms\", \"2s\", \"1m30s\").",
            "examples": ["250ms", "2s", "1m30s"]
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_units() {
        assert_eq!(parse_duration("250ms").unwrap(), Duration::from_millis(250));
        assert_eq!(parse_duration("2s").unwrap(), Duration::from_secs(2));
        assert_eq!(parse_duration("1.5s").unwrap(), Duration::from_millis(1500));
        assert_eq!(parse_duration("5m").unwrap(), Duration::from_secs(300));
        assert_eq!(parse_duration("1h").unwrap(), Duration::from_secs(3600));
        assert_eq!(parse_duration("100us").unwrap(), Duration::from_micros(100));
        assert_eq!(parse_duration("100µs").unwrap(), Duration::from_micros(100));
        assert_eq!(parse_duration("7ns").unwrap(), Duration::from_nanos(7));
        assert_eq!(parse_duration("1m30s").unwrap(), Duration::from_secs(90));
        assert_eq!(
            parse_duration("1h 2m 3s").unwrap(),
            Duration::from_secs(3723)
        );
        assert_eq!(parse_duration(" 0s ").unwrap(), Duration::ZERO);
    }

    #[test]
    fn rejects_bare_numbers_with_a_hint() {
        let e = parse_duration("250").unwrap_err();
        assert!(e.contains("durations need a unit, e.g. 250ms"), "{e}");
        assert!(parse_duration("").is_err());
        assert!(parse_duration("2 seconds")
            .unwrap_err()
            .contains("unknown unit `seconds`"));
        assert!(parse_duration("ms").is_err());
        assert!(parse_duration("1.2.3s").is_err());
        assert!(parse_duration("-1s").is_err());
        assert!(parse_duration("1m30").is_err());
    }

    #[test]
    fn formats_like_users_write() {
        assert_eq!(format_duration(Duration::from_millis(250)), "250ms");
        assert_eq!(format_duration(Duration::from_secs(2)), "2s");
        assert_eq!(format_duration(Duration::from_millis(1500)), "1.5s");
        assert_eq!(format_duration(Duration::from_secs(90)), "1m30s");
        assert_eq!(format_duration(Duration::from_secs(300)), "5m");
        assert_eq!(format_duration(Duration::from_secs(3600)), "1h");
        assert_eq!(format_duration(Duration::from_secs(3723)), "1h2m3s");
        assert_eq!(format_duration(Duration::from_micros(100)), "100us");
        assert_eq!(format_duration(Duration::from_nanos(7)), "7ns");
        assert_eq!(format_duration(Duration::ZERO), "0s");
        assert_eq!(format_duration(Duration::from_micros(2500)), "2.5ms");
    }

    #[test]
    fn format_round_trips() {
        for ms in [
            1u64, 10, 250, 999, 1000, 1500, 59_000, 60_000, 90_000, 3_600_000, 3_723_500,
        ] {
            let d = Duration::from_millis(ms);
            assert_eq!(parse_duration(&format_duration(d)).unwrap(), d, "{ms}ms");
        }
    }

    #[test]
    fn parses_bytes() {
        assert_eq!(parse_bytes("1000").unwrap(), 1000);
        assert_eq!(parse_bytes("64KiB").unwrap(), 64 * 1024);
        assert_eq!(parse_bytes("1MiB").unwrap(), 1024 * 1024);
        assert_eq!(parse_bytes("10MB").unwrap(), 10_000_000);
        assert_eq!(parse_bytes("1.5 KB").unwrap(), 1500);
        assert_eq!(parse_bytes("2GiB").unwrap(), 2 * 1024 * 1024 * 1024);
        assert!(parse_bytes("ten").is_err());
        assert!(parse_bytes("10 parsecs")
            .unwrap_err()
            .contains("unknown unit"));
    }
}
