//! Durations and byte sizes as users write them ("250ms", "2s", "5m", "1MiB").
//! (stub: to be implemented)

use std::time::Duration;

/// A `Duration` written with a unit in files.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct DurationStr(pub Duration);

/// Parse "250ms", "2s", "1.5s", "5m", "1h", "100us".
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let _ = s;
    Err("unimplemented".into())
}

/// Print a duration the way users write it ("250ms", "2s", "1m30s").
pub fn format_duration(d: Duration) -> String {
    format!("{}ms", d.as_millis())
}

/// Parse "1MiB", "64KiB", "1000", "10MB".
pub fn parse_bytes(s: &str) -> Result<u64, String> {
    s.parse::<u64>().map_err(|e| e.to_string())
}

impl<'de> serde::Deserialize<'de> for DurationStr {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        parse_duration(&s).map(DurationStr).map_err(serde::de::Error::custom)
    }
}
