//! `truncate`: cut a stream after some content events, cleanly, without its
//! terminator, or with a reset. Applied by [`crate::stream::Shaper`].

use schemars::JsonSchema;
use serde::Deserialize;

use crate::check::Cx;
use crate::yaml::PathSeg;

use super::{Fault, Side};

/// Cut the stream after some content events.
#[derive(Debug, Clone, PartialEq, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Truncate {
    /// Content events let through before the cut.
    pub after_tokens: u64,
    /// How the stream ends: `clean` (a proper terminator), `no_terminator`
    /// (default: the body just ends) or `reset`.
    #[serde(default)]
    pub ending: TruncateEnding,
}

/// How a `truncate` fault ends the stream.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum TruncateEnding {
    /// The API's proper terminator (`data: [DONE]`, `message_stop`, `done: true`): a
    /// short answer that looks complete.
    Clean,
    /// The body ends without a terminator, as when a server dies mid-answer.
    #[default]
    NoTerminator,
    /// The connection (or HTTP/2 stream) is reset.
    Reset,
}

impl TruncateEnding {
    /// The name as written in files.
    pub fn as_str(self) -> &'static str {
        match self {
            TruncateEnding::Clean => "clean",
            TruncateEnding::NoTerminator => "no_terminator",
            TruncateEnding::Reset => "reset",
        }
    }
}

impl Fault for Truncate {
    fn name(&self) -> &'static str {
        "truncate"
    }

    fn side(&self) -> Side {
        Side::Stream
    }

    /// Every value serde accepts is a valid one.
    fn validate(&self, _: &mut Cx<'_>, _: &[PathSeg<'_>]) {}

    fn explain(&self) -> String {
        let how = match self.ending {
            TruncateEnding::Clean => "with a proper ending, so it looks complete",
            TruncateEnding::NoTerminator => {
                "without its terminator ([DONE], message_stop or done: true)"
            }
            TruncateEnding::Reset => "by resetting the connection",
        };
        format!(
            "cut the stream after {} {how}",
            super::words::tokens(self.after_tokens)
        )
    }
}
