//! `corrupt`: damage a share of a stream's content events (cut JSON, dropped or
//! doubled events, broken UTF-8). Applied by [`crate::stream::Shaper`].

use schemars::JsonSchema;
use serde::Deserialize;

use crate::check::{join, Cx};
use crate::yaml::PathSeg::{self, Key as K};

use super::{Fault, Side};

/// Damage individual content events.
#[derive(Debug, Clone, PartialEq, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Corrupt {
    /// Share of content events damaged, above 0 and at most 1.
    pub rate: f64,
    /// What the damage is.
    pub mode: CorruptMode,
}

/// The damage a `corrupt` fault does to one event.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum CorruptMode {
    /// The event's JSON is cut midway; the SSE/NDJSON framing stays intact.
    InvalidJson,
    /// The event is not sent.
    DropEvent,
    /// The event is sent twice.
    DuplicateEvent,
    /// A multi-byte UTF-8 character is split wrongly, as broken detokenisers do.
    BadUtf8,
}

impl CorruptMode {
    /// The name as written in files.
    pub fn as_str(self) -> &'static str {
        match self {
            CorruptMode::InvalidJson => "invalid_json",
            CorruptMode::DropEvent => "drop_event",
            CorruptMode::DuplicateEvent => "duplicate_event",
            CorruptMode::BadUtf8 => "bad_utf8",
        }
    }
}

impl Fault for Corrupt {
    fn name(&self) -> &'static str {
        "corrupt"
    }

    fn side(&self) -> Side {
        Side::Stream
    }

    fn validate(&self, cx: &mut Cx<'_>, base: &[PathSeg<'_>]) {
        cx.share(
            &join(base, &[K("rate")]),
            "rate",
            self.rate,
            "events damaged",
        );
    }

    fn explain(&self) -> String {
        let what = match self.mode {
            CorruptMode::InvalidJson => "cut its JSON in half",
            CorruptMode::DropEvent => "drop it",
            CorruptMode::DuplicateEvent => "send it twice",
            CorruptMode::BadUtf8 => "break a UTF-8 character in it",
        };
        format!(
            "for {} of streamed tokens, {what}",
            super::words::percent(self.rate)
        )
    }
}
