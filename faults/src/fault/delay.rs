//! `delay`: wait before forwarding the request.
//!
//! The plainest request-side fault: the proxy samples the duration, holds on the
//! release signal (so the kill switch frees it), then goes on to the next fault.

use schemars::JsonSchema;
use serde::Deserialize;

use crate::check::{join, Cx};
use crate::dist::Dist;
use crate::yaml::PathSeg::{self, Key as K};

use super::{Fault, Side};

/// Wait before forwarding the request.
#[derive(Debug, Clone, PartialEq, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Delay {
    /// How long, as a fixed duration or a distribution.
    pub duration: Dist,
}

impl Fault for Delay {
    fn name(&self) -> &'static str {
        "delay"
    }

    /// Runs before the upstream is called.
    fn side(&self) -> Side {
        Side::Request
    }

    /// A distribution that can be sampled.
    fn validate(&self, cx: &mut Cx<'_>, base: &[PathSeg<'_>]) {
        cx.dist(&self.duration, &join(base, &[K("duration")]));
    }

    fn explain(&self) -> String {
        format!("wait {} before forwarding", self.duration)
    }
}
