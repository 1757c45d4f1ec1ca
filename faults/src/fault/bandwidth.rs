//! `bandwidth`: throttle the response body to a byte rate.
//!
//! Decided with the request, applied by the body wrapper: the slowest of a
//! request's bandwidth faults wins.

use crate::validate::{join, Cx};
use crate::yaml::PathSeg::{self, Key as K};

use super::Side;

/// Acts on the response body's bytes.
pub const SIDE: Side = Side::Bytes;

/// A rate of zero would stop the body for ever: `hang` and `reset` say that.
pub(crate) fn validate(cx: &mut Cx<'_>, base: &[PathSeg<'_>], bytes_per_second: u64) {
    if bytes_per_second == 0 {
        cx.err(
            &join(base, &[K("bytes_per_second")]),
            "`bytes_per_second` must be at least 1",
            Some("to stop a body entirely, use `hang` or `reset` instead".to_string()),
        );
    }
}

pub(crate) fn explain(bytes_per_second: u64) -> String {
    format!(
        "throttle the response body to {}/s",
        crate::explain::bytes(bytes_per_second)
    )
}
