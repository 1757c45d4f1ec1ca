//! `shuffle_results`: reorder the hits, each keeping its score, so rank no
//! longer follows score. Applied by [`crate::vector`].

use schemars::JsonSchema;
use serde::Deserialize;

use crate::check::Cx;
use crate::yaml::PathSeg;

use super::{Fault, Side};

/// Reorder the hits, keeping each hit's own score: rank no longer follows score.
#[derive(Debug, Clone, PartialEq, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ShuffleResults {}

impl Fault for ShuffleResults {
    fn name(&self) -> &'static str {
        "shuffle_results"
    }

    fn side(&self) -> Side {
        Side::Results
    }

    /// Every value serde accepts is a valid one.
    fn validate(&self, _: &mut Cx<'_>, _: &[PathSeg<'_>]) {}

    fn explain(&self) -> String {
        "shuffle the hits of each search, keeping their scores (rank no longer follows score)"
            .to_string()
    }
}
