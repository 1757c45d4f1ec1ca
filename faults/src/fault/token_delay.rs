//! `token_delay`: hold every content event after the first, so inter-token
//! latency grows. Applied by [`crate::stream::Shaper`].

use schemars::JsonSchema;
use serde::Deserialize;

use crate::check::{join, Cx};
use crate::dist::Dist;
use crate::yaml::PathSeg::{self, Key as K};

use super::{Fault, Side};

/// Hold every content event after the first, so inter-token latency grows.
#[derive(Debug, Clone, PartialEq, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TokenDelay {
    /// Added before each content event after the first.
    pub duration: Dist,
}

impl Fault for TokenDelay {
    fn name(&self) -> &'static str {
        "token_delay"
    }

    fn side(&self) -> Side {
        Side::Stream
    }

    fn validate(&self, cx: &mut Cx<'_>, base: &[PathSeg<'_>]) {
        cx.dist(&self.duration, &join(base, &[K("duration")]));
    }

    fn explain(&self) -> String {
        format!(
            "add {} before every streamed token after the first",
            self.duration
        )
    }
}
