//! `truncate`: cut a stream after some content events, cleanly, without its
//! terminator, or with a reset. Applied by [`crate::stream::Shaper`].

use schemars::JsonSchema;
use serde::Deserialize;

use crate::profile::TruncateEnding;
use crate::validate::Cx;
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
            crate::explain::tokens(self.after_tokens)
        )
    }
}
