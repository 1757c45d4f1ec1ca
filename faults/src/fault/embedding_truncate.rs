//! `embedding_truncate`: cut every embedding to its first `dims` components (a
//! dimension mismatch after a model change). Applied by [`crate::vector`].

use schemars::JsonSchema;
use serde::Deserialize;

use crate::check::{join, Cx};
use crate::yaml::PathSeg::{self, Key as K};

use super::{Fault, Side};

/// Cut every embedding to its first `dims` components (a dimension mismatch
/// after a model or config change).
#[derive(Debug, Clone, PartialEq, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct EmbeddingTruncate {
    /// Components kept; at least 1.
    pub dims: u64,
}

impl Fault for EmbeddingTruncate {
    fn name(&self) -> &'static str {
        "embedding_truncate"
    }

    fn side(&self) -> Side {
        Side::Embeddings
    }

    fn validate(&self, cx: &mut Cx<'_>, base: &[PathSeg<'_>]) {
        if self.dims == 0 {
            cx.err(
                &join(base, &[K("dims")]),
                "`dims` must be at least 1",
                Some(
                    "it is how many components each embedding keeps, e.g. `dims: 256`".to_string(),
                ),
            );
        }
    }

    fn explain(&self) -> String {
        format!("cut every embedding to its first {} components", self.dims)
    }
}
