//! `concurrency_limit`: cap the requests in flight that a rule matched; queue or
//! reject the rest with the preset's (or the API's) overload error.
//!
//! The count and the queue are shared by every request the rule matches, so they
//! live in [`FaultState::ConcurrencyLimit`], built once per rule.

use std::fmt::Write as _;
use std::sync::Arc;

use schemars::JsonSchema;
use serde::Deserialize;

use crate::check::{join, Cx};
use crate::duration::{format_duration, DurationStr};
use crate::limit::ConcurrencyLimiter;
use crate::yaml::PathSeg::{self, Key as K};

use super::{Fault, FaultState, Side};

/// Cap in-flight requests matched by this rule; queue or reject the rest.
#[derive(Debug, Clone, PartialEq, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ConcurrencyLimit {
    /// Requests allowed in flight at once.
    #[schemars(range(min = 1))]
    pub max: u32,
    /// How many may wait for a slot (default 0: reject at once).
    #[serde(default)]
    pub queue: Option<u32>,
    /// How long a queued request waits before it is rejected (default: as long
    /// as it takes).
    #[serde(default)]
    pub queue_timeout: Option<DurationStr>,
    /// Error answered on rejection (default `openai.overloaded`-style 429 from the listener's api).
    #[serde(default)]
    pub preset: Option<String>,
}

impl Fault for ConcurrencyLimit {
    fn name(&self) -> &'static str {
        "concurrency_limit"
    }

    /// Admission happens before the upstream is called.
    fn side(&self) -> Side {
        Side::Request
    }

    /// A rejection answers the preset, which may name the model.
    fn names_model(&self) -> bool {
        super::preset_names_model(&self.preset)
    }

    /// A cap of zero refuses everything, which `error` says plainly; the preset
    /// must exist.
    fn validate(&self, cx: &mut Cx<'_>, base: &[PathSeg<'_>]) {
        if self.max == 0 {
            cx.err(
                &join(base, &[K("max")]),
                "`max` must be at least 1",
                Some("to refuse every request, use an `error` fault instead".to_string()),
            );
        }
        if let Some(p) = &self.preset {
            cx.preset(&join(base, &[K("preset")]), p);
        }
    }

    fn explain(&self) -> String {
        let mut s = format!("let at most {} run at once", self.max);
        match self.queue {
            Some(q) if q > 0 => {
                let _ = write!(s, ", queue up to {q} more");
                if let Some(t) = self.queue_timeout {
                    let _ = write!(s, " for at most {} each", format_duration(t.0));
                }
                s.push_str(" and reject the rest");
            }
            _ => s.push_str(" and reject the rest at once"),
        }
        match &self.preset {
            Some(p) => {
                let _ = write!(s, " with {}", super::words::preset_words(p));
            }
            None => s.push_str(" with the API's overload error"),
        }
        s
    }

    /// The limiter the rule's requests share.
    fn state(&self) -> FaultState {
        FaultState::ConcurrencyLimit(Arc::new(ConcurrencyLimiter::new(
            self.max,
            self.queue.unwrap_or(0),
            self.queue_timeout.map(|d| d.0),
        )))
    }
}
