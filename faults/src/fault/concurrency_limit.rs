//! `concurrency_limit`: cap the requests in flight that a rule matched; queue or
//! reject the rest with the preset's (or the API's) overload error.
//!
//! The count and the queue are shared by every request the rule matches, so they
//! live in [`FaultState::ConcurrencyLimit`], built once per rule.

use std::fmt::Write as _;
use std::sync::Arc;

use crate::duration::{format_duration, DurationStr};
use crate::limit::ConcurrencyLimiter;
use crate::validate::{join, Cx};
use crate::yaml::PathSeg::{self, Key as K};

use super::{FaultState, Side};

/// Admission happens before the upstream is called.
pub const SIDE: Side = Side::Request;

/// A cap of zero refuses everything, which `error` says plainly; the preset must
/// exist.
pub(crate) fn validate(cx: &mut Cx<'_>, base: &[PathSeg<'_>], max: u32, preset: Option<&str>) {
    if max == 0 {
        cx.err(
            &join(base, &[K("max")]),
            "`max` must be at least 1",
            Some("to refuse every request, use an `error` fault instead".to_string()),
        );
    }
    if let Some(p) = preset {
        cx.preset(&join(base, &[K("preset")]), p);
    }
}

pub(crate) fn explain(
    max: u32,
    queue: Option<u32>,
    queue_timeout: Option<DurationStr>,
    preset: Option<&str>,
) -> String {
    let mut s = format!("let at most {max} run at once");
    match queue {
        Some(q) if q > 0 => {
            let _ = write!(s, ", queue up to {q} more");
            if let Some(t) = queue_timeout {
                let _ = write!(s, " for at most {} each", format_duration(t.0));
            }
            s.push_str(" and reject the rest");
        }
        _ => s.push_str(" and reject the rest at once"),
    }
    match preset {
        Some(p) => {
            let _ = write!(s, " with {}", crate::explain::preset_words(p));
        }
        None => s.push_str(" with the API's overload error"),
    }
    s
}

/// The limiter the rule's requests share.
pub(crate) fn state(
    max: u32,
    queue: Option<u32>,
    queue_timeout: Option<DurationStr>,
) -> FaultState {
    FaultState::ConcurrencyLimit(Arc::new(ConcurrencyLimiter::new(
        max,
        queue.unwrap_or(0),
        queue_timeout.map(|d| d.0),
    )))
}

/// A rejection answers the preset, which may name the model.
pub(crate) fn names_model(preset: &Option<String>) -> bool {
    super::preset_names_model(preset)
}
