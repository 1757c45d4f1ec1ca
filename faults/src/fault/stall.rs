//! `stall`: stop a stream after some content events, for a while or for good.
//! Applied by [`crate::stream::Shaper`].
//!
//! People write "stall for ever" as `duration: forever` at least as often as
//! `forever: true`; both spell the same fault, so this file reads both into one
//! form (`duration: None, forever: true`).

use schemars::JsonSchema;
use serde::Deserialize;

use crate::check::{join, Cx};
use crate::dist::Dist;
use crate::yaml::PathSeg::{self, Key as K};

use super::{Fault, Side};

/// Stop the stream after some content events, for a while or for good.
#[derive(Debug, Clone, PartialEq, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Stall {
    /// Content events let through before the stall.
    pub after_tokens: u64,
    /// How long the stall lasts; give this or `forever: true` (`duration:
    /// forever` is the same as `forever: true`).
    #[serde(default)]
    #[schemars(with = "Option<StallDuration>")]
    pub duration: Option<Dist>,
    /// Never resume (until the client gives up or faults are turned off).
    #[serde(default)]
    pub forever: bool,
}

impl Fault for Stall {
    fn name(&self) -> &'static str {
        "stall"
    }

    fn side(&self) -> Side {
        Side::Stream
    }

    /// One of `duration` and `forever`, not both.
    fn validate(&self, cx: &mut Cx<'_>, base: &[PathSeg<'_>]) {
        match (&self.duration, self.forever) {
            (Some(_), true) => cx.err(
                &join(base, &[K("forever")]),
                "a `stall` takes `duration` or `forever: true`, not both",
                Some("drop `forever` to resume after the duration, or drop `duration`".to_string()),
            ),
            (None, false) => cx.err(
                base,
                "a `stall` needs `duration` or `forever: true`",
                Some(
                    "e.g. `duration: 10s` to resume afterwards, or `forever: true` (or `duration: forever`) to never resume"
                        .to_string(),
                ),
            ),
            (Some(d), false) => cx.dist(d, &join(base, &[K("duration")])),
            (None, true) => {}
        }
    }

    fn explain(&self) -> String {
        let tokens = super::words::tokens(self.after_tokens);
        match (&self.duration, self.forever) {
            (Some(d), false) => format!("stall the stream for {d} after {tokens}, then resume"),
            _ => format!(
                "stall the stream for good after {tokens} (until the client gives up or faults are turned off)"
            ),
        }
    }
}

/// The fields of a `stall` as written: `duration` may also be `forever`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct StallFields {
    after_tokens: u64,
    #[serde(default)]
    duration: Option<StallDuration>,
    #[serde(default)]
    forever: Option<bool>,
}

/// What `stall`'s `duration` accepts: a [`Dist`], or `forever`.
///
/// People write "stall for ever" as `duration: forever` at least as often as
/// `forever: true`; both spell the same fault, so neither is refused. The profile
/// keeps one form (`duration: None, forever: true`) so nothing downstream sees two.
enum StallDuration {
    Forever,
    For(Dist),
}

/// A `stall` is read through `StallFields`, turning `duration: forever` into
/// `forever: true`, so nothing downstream sees two spellings of one fault.
impl<'de> Deserialize<'de> for Stall {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let f = StallFields::deserialize(d)?;
        let (duration, forever) = match f.duration {
            Some(StallDuration::Forever) if f.forever == Some(false) => {
                return Err(serde::de::Error::custom(format!(
                    "`duration: forever` and `forever: false` contradict each other{}drop `forever: false`, or give `duration` a length such as 10s",
                    crate::yaml::HINT_SEPARATOR
                )))
            }
            Some(StallDuration::Forever) => (None, true),
            Some(StallDuration::For(dist)) => (Some(dist), f.forever.unwrap_or(false)),
            None => (None, f.forever.unwrap_or(false)),
        };
        Ok(Stall {
            after_tokens: f.after_tokens,
            duration,
            forever,
        })
    }
}

/// A stall's duration hint: the usual one, plus the way to never resume.
fn stall_hint(message: &str) -> String {
    let message = message
        .split_once(crate::yaml::HINT_SEPARATOR)
        .map_or(message, |(m, _)| m);
    format!(
        "{message}{}{}; or `forever` (the same as `forever: true`) to never resume",
        crate::yaml::HINT_SEPARATOR,
        crate::duration::DURATION_HINT
    )
}

struct StallDurationVisitor;

impl<'de> serde::de::Visitor<'de> for StallDurationVisitor {
    type Value = StallDuration;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a duration like \"10s\", a distribution, or `forever`")
    }

    fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<StallDuration, E> {
        if v.trim().eq_ignore_ascii_case("forever") {
            return Ok(StallDuration::Forever);
        }
        crate::duration::parse_duration(v)
            .map(|d| StallDuration::For(Dist::Fixed(d)))
            .map_err(|e| E::custom(stall_hint(&e)))
    }

    fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<StallDuration, E> {
        Err(E::custom(stall_hint(&format!("`{v}` has no unit"))))
    }

    fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<StallDuration, E> {
        Err(E::custom(stall_hint(&format!("`{v}` has no unit"))))
    }

    fn visit_f64<E: serde::de::Error>(self, v: f64) -> Result<StallDuration, E> {
        Err(E::custom(stall_hint(&format!("`{v}` has no unit"))))
    }

    fn visit_bool<E: serde::de::Error>(self, v: bool) -> Result<StallDuration, E> {
        Err(E::custom(format!(
            "`duration` is a length of time or `forever`, not `{v}`{}to never resume, write `forever: true` (or `duration: forever`); to resume, a length such as `duration: 10s`",
            crate::yaml::HINT_SEPARATOR
        )))
    }

    fn visit_map<A: serde::de::MapAccess<'de>>(self, map: A) -> Result<StallDuration, A::Error> {
        Dist::deserialize(serde::de::value::MapAccessDeserializer::new(map)).map(StallDuration::For)
    }
}

impl<'de> Deserialize<'de> for StallDuration {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(StallDurationVisitor)
    }
}

impl JsonSchema for StallDuration {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "StallDuration".into()
    }

    fn json_schema(generator: &mut schemars::SchemaGenerator) -> schemars::Schema {
        let dist = generator.subschema_for::<Dist>();
        schemars::json_schema!({
            "description": "How long a stall lasts: a duration or distribution, or `forever` (the same as `forever: true`).",
            "oneOf": [
                dist,
                {"type": "string", "const": "forever"}
            ]
        })
    }
}
