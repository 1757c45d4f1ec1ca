//! `token_rate`: pace a stream's content events to at most N per second.
//! Applied by [`crate::stream::Shaper`].

use schemars::JsonSchema;
use serde::Deserialize;

use crate::check::{join, Cx};
use crate::yaml::PathSeg::{self, Key as K};

use super::{Fault, Side};

/// Pace content events to at most this many per second.
#[derive(Debug, Clone, PartialEq, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TokenRate {
    /// Content events per second; must be above zero.
    pub tokens_per_second: f64,
}

impl Fault for TokenRate {
    fn name(&self) -> &'static str {
        "token_rate"
    }

    fn side(&self) -> Side {
        Side::Stream
    }

    fn validate(&self, cx: &mut Cx<'_>, base: &[PathSeg<'_>]) {
        let tokens_per_second = self.tokens_per_second;
        if !(tokens_per_second.is_finite() && tokens_per_second > 0.0) {
            cx.err(
                &join(base, &[K("tokens_per_second")]),
                format!("`tokens_per_second` must be above zero, not {tokens_per_second}"),
                Some(
                    "e.g. `tokens_per_second: 5`; to stop the stream, use `stall` instead"
                        .to_string(),
                ),
            );
        }
    }

    fn explain(&self) -> String {
        format!(
            "pace the stream to at most {} tokens per second",
            super::words::trim_num(self.tokens_per_second)
        )
    }
}
