//! `embedding_noise`: add Gaussian noise to every embedding component, as an
//! upgraded model or a quantisation change would. Applied by [`crate::vector`].

use schemars::JsonSchema;
use serde::Deserialize;

use crate::check::{join, Cx};
use crate::yaml::PathSeg::{self, Key as K};

use super::{Fault, Side};

/// Add Gaussian noise to every embedding component (an upgraded model, a
/// quantisation change: vectors drift away from the index's).
#[derive(Debug, Clone, PartialEq, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct EmbeddingNoise {
    /// Standard deviation of the noise added to each component; above zero.
    pub stddev: f64,
}

impl Fault for EmbeddingNoise {
    fn name(&self) -> &'static str {
        "embedding_noise"
    }

    fn side(&self) -> Side {
        Side::Embeddings
    }

    fn validate(&self, cx: &mut Cx<'_>, base: &[PathSeg<'_>]) {
        check_stddev(
            cx,
            base,
            self.stddev,
            "embedding components are usually small; e.g. `stddev: 0.02`",
        );
    }

    fn explain(&self) -> String {
        format!(
            "add noise (stddev {}) to every embedding component",
            self.stddev
        )
    }
}

/// A noise `stddev` above zero (zero would be a no-op that still shows as
/// decided), shared with `score_noise`, with the hint for what is noised.
pub(crate) fn check_stddev(cx: &mut Cx<'_>, base: &[PathSeg<'_>], stddev: f64, hint: &str) {
    if !(stddev.is_finite() && stddev > 0.0) {
        cx.err(
            &join(base, &[K("stddev")]),
            format!("`stddev` must be above zero, not {stddev}"),
            Some(hint.to_string()),
        );
    }
}
