//! `bandwidth`: throttle the response body to a byte rate.
//!
//! Decided with the request, applied by the body wrapper: the slowest of a
//! request's bandwidth faults wins.

use schemars::JsonSchema;
use serde::Deserialize;

use crate::check::{join, Cx};
use crate::yaml::PathSeg::{self, Key as K};

use super::{Fault, Side};

/// Throttle the response body.
#[derive(Debug, Clone, PartialEq, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Bandwidth {
    #[schemars(range(min = 1))]
    pub bytes_per_second: u64,
}

impl Fault for Bandwidth {
    fn name(&self) -> &'static str {
        "bandwidth"
    }

    /// Acts on the response body's bytes.
    fn side(&self) -> Side {
        Side::Bytes
    }

    /// A rate of zero would stop the body for ever: `hang` and `reset` say that.
    fn validate(&self, cx: &mut Cx<'_>, base: &[PathSeg<'_>]) {
        if self.bytes_per_second == 0 {
            cx.err(
                &join(base, &[K("bytes_per_second")]),
                "`bytes_per_second` must be at least 1",
                Some("to stop a body entirely, use `hang` or `reset` instead".to_string()),
            );
        }
    }

    fn explain(&self) -> String {
        format!(
            "throttle the response body to {}/s",
            super::words::bytes(self.bytes_per_second)
        )
    }
}
