//! `first_token_delay`: hold a stream's first content event, so time to first
//! token grows; later events keep their order behind it. Applied by
//! [`crate::stream::Shaper`].

use schemars::JsonSchema;
use serde::Deserialize;

use crate::check::{join, Cx};
use crate::dist::Dist;
use crate::yaml::PathSeg::{self, Key as K};

use super::{Fault, Side};

/// Hold the first content event (time to first token grows); later events keep
/// their order behind it.
#[derive(Debug, Clone, PartialEq, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct FirstTokenDelay {
    /// How long to hold it.
    pub duration: Dist,
}

impl Fault for FirstTokenDelay {
    fn name(&self) -> &'static str {
        "first_token_delay"
    }

    fn side(&self) -> Side {
        Side::Stream
    }

    fn validate(&self, cx: &mut Cx<'_>, base: &[PathSeg<'_>]) {
        cx.dist(&self.duration, &join(base, &[K("duration")]));
    }

    fn explain(&self) -> String {
        format!("hold the stream's first token for {}", self.duration)
    }
}
