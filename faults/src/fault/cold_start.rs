//! `cold_start`: the first request after an idle spell waits while the model
//! loads; requests arriving during the load wait for the same load.
//!
//! Its state (when the model was last used, the load in progress) is shared by
//! every request the rule matches, so it lives in [`FaultState::ColdStart`].

use std::sync::Arc;

use crate::dist::Dist;
use crate::duration::{format_duration, DurationStr};
use crate::validate::{join, Cx};
use crate::yaml::PathSeg::{self, Key as K};

use super::{FaultState, Side};

/// Runs before the upstream is called.
pub const SIDE: Side = Side::Request;

/// An idle spell of zero would make every request a cold one.
pub(crate) fn validate(cx: &mut Cx<'_>, base: &[PathSeg<'_>], idle: DurationStr, duration: &Dist) {
    if idle.0.is_zero() {
        cx.err(
            &join(base, &[K("idle")]),
            "`idle` must be longer than zero",
            Some(
                "it is how long without requests before the model counts as unloaded, e.g. `idle: 5m`"
                    .to_string(),
            ),
        );
    }
    cx.dist(duration, &join(base, &[K("duration")]));
}

pub(crate) fn explain(idle: DurationStr, duration: &Dist) -> String {
    format!(
        "after {} without requests, hold the next one for a model load of {duration} (requests arriving during the load wait for the same load)",
        format_duration(idle.0)
    )
}

/// The model-load state the rule's requests share.
pub(crate) fn state(idle: DurationStr, duration: &Dist) -> FaultState {
    FaultState::ColdStart(Arc::new(crate::gpu::ColdStart::new(
        idle.0,
        duration.clone(),
    )))
}
