//! `cold_start`: the first request after an idle spell waits while the model
//! loads; requests arriving during the load wait for the same load.
//!
//! Its state (when the model was last used, the load in progress) is shared by
//! every request the rule matches, so it lives in [`FaultState::ColdStart`].

use std::sync::Arc;
use std::time::Duration;

use schemars::JsonSchema;
use serde::Deserialize;

use crate::check::{join, Cx};
use crate::dist::Dist;
use crate::duration::{format_duration, DurationStr};
use crate::yaml::PathSeg::{self, Key as K};

use super::{Fault, FaultState, Side};

/// The first request after an idle spell waits while the model loads (scale from
/// zero, a model swapped out); requests arriving during the load wait for the same
/// load.
#[derive(Debug, Clone, PartialEq, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ColdStart {
    /// How long without requests before the model counts as unloaded (default 5m).
    #[serde(default = "default_cold_idle")]
    pub idle: DurationStr,
    /// How long the load takes.
    pub duration: Dist,
}

/// Five minutes: scale-to-zero servers commonly unload after a few idle minutes.
fn default_cold_idle() -> DurationStr {
    DurationStr(Duration::from_secs(300))
}

impl Fault for ColdStart {
    fn name(&self) -> &'static str {
        "cold_start"
    }

    /// Runs before the upstream is called.
    fn side(&self) -> Side {
        Side::Request
    }

    /// An idle spell of zero would make every request a cold one.
    fn validate(&self, cx: &mut Cx<'_>, base: &[PathSeg<'_>]) {
        if self.idle.0.is_zero() {
            cx.err(
                &join(base, &[K("idle")]),
                "`idle` must be longer than zero",
                Some(
                    "it is how long without requests before the model counts as unloaded, e.g. `idle: 5m`"
                        .to_string(),
                ),
            );
        }
        cx.dist(&self.duration, &join(base, &[K("duration")]));
    }

    fn explain(&self) -> String {
        format!(
            "after {} without requests, hold the next one for a model load of {} (requests arriving during the load wait for the same load)",
            format_duration(self.idle.0),
            self.duration
        )
    }

    /// The model-load state the rule's requests share.
    fn state(&self) -> FaultState {
        FaultState::ColdStart(Arc::new(crate::gpu::ColdStart::new(
            self.idle.0,
            self.duration.clone(),
        )))
    }
}
