//! `empty_results`: answer with no hits and a success status (for Milvus and
//! GraphQL, the error inside the 200). Applied by [`crate::vector`].

use schemars::JsonSchema;
use serde::Deserialize;

use crate::check::Cx;
use crate::yaml::PathSeg;

use super::{Fault, Side};

/// Answer with no hits and a success status; for Milvus and GraphQL the error
/// arrives inside the 200, as those servers report overload.
#[derive(Debug, Clone, PartialEq, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct EmptyResults {}

impl Fault for EmptyResults {
    fn name(&self) -> &'static str {
        "empty_results"
    }

    fn side(&self) -> Side {
        Side::Results
    }

    /// Every value serde accepts is a valid one.
    fn validate(&self, _: &mut Cx<'_>, _: &[PathSeg<'_>]) {}

    fn explain(&self) -> String {
        "answer searches with no hits and a success status".to_string()
    }
}
