//! `delay`: wait before forwarding the request.
//!
//! The plainest request-side fault: sample the duration, hold on the release
//! signal (so the kill switch frees it), then go on to the next fault.

use schemars::JsonSchema;
use serde::Deserialize;

use crate::dist::Dist;
use crate::validate::{join, Cx};
use crate::yaml::PathSeg::{self, Key as K};

use super::Side;

/// Wait before forwarding the request.
#[derive(Debug, Clone, PartialEq, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Delay {
    /// How long, as a fixed duration or a distribution.
    pub duration: Dist,
}

/// Runs before the upstream is called.
pub const SIDE: Side = Side::Request;

/// A distribution that can be sampled.
pub(crate) fn validate(cx: &mut Cx<'_>, base: &[PathSeg<'_>], duration: &Dist) {
    cx.dist(duration, &join(base, &[K("duration")]));
}

pub(crate) fn explain(duration: &Dist) -> String {
    format!("wait {duration} before forwarding")
}
