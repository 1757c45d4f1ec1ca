//! `score_noise`: add Gaussian noise to every hit's score, keeping the order, so
//! rank no longer follows score. Applied by [`crate::vector`].

use schemars::JsonSchema;
use serde::Deserialize;

use crate::check::Cx;
use crate::yaml::PathSeg;

use super::{Fault, Side};

/// Add Gaussian noise to every hit's score or distance, keeping the order, so
/// rank no longer follows score.
#[derive(Debug, Clone, PartialEq, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ScoreNoise {
    /// Standard deviation of the noise added to each score; above zero.
    pub stddev: f64,
}

impl Fault for ScoreNoise {
    fn name(&self) -> &'static str {
        "score_noise"
    }

    fn side(&self) -> Side {
        Side::Results
    }

    fn validate(&self, cx: &mut Cx<'_>, base: &[PathSeg<'_>]) {
        super::embedding_noise::check_stddev(
            cx,
            base,
            self.stddev,
            "scores usually lie in 0..1; `stddev: 0.05` already reorders close hits",
        );
    }

    fn explain(&self) -> String {
        format!(
            "add noise (stddev {}) to every hit's score, keeping the order",
            self.stddev
        )
    }
}
