//! `limit_results`: keep only the first `max` hits of each result list (fewer
//! than k came back). Applied by [`crate::vector`].

use schemars::JsonSchema;
use serde::Deserialize;

use crate::check::Cx;
use crate::yaml::PathSeg;

use super::{Fault, Side};

/// Keep only the first `max` hits of each result list (fewer than k came back).
#[derive(Debug, Clone, PartialEq, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct LimitResults {
    /// Hits kept per result list; 0 keeps none.
    pub max: u64,
}

impl Fault for LimitResults {
    fn name(&self) -> &'static str {
        "limit_results"
    }

    fn side(&self) -> Side {
        Side::Results
    }

    /// Every value serde accepts is a valid one.
    fn validate(&self, _: &mut Cx<'_>, _: &[PathSeg<'_>]) {}

    fn explain(&self) -> String {
        format!("return at most {} hits per search", self.max)
    }
}
