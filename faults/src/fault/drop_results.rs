//! `drop_results`: remove a share of the hits of a search/query answer, as an
//! index that lost segments would. Applied by [`crate::vector`].

use schemars::JsonSchema;
use serde::Deserialize;

use crate::check::{join, Cx};
use crate::yaml::PathSeg::{self, Key as K};

use super::{Fault, Side};

/// Remove a share of the hits of a search/query answer, as an index that lost
/// segments or an approximate search with too small a beam would.
#[derive(Debug, Clone, PartialEq, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct DropResults {
    /// Share of hits removed (rounded, at least one when there are hits), above 0
    /// and at most 1.
    pub fraction: f64,
}

impl Fault for DropResults {
    fn name(&self) -> &'static str {
        "drop_results"
    }

    fn side(&self) -> Side {
        Side::Results
    }

    fn validate(&self, cx: &mut Cx<'_>, base: &[PathSeg<'_>]) {
        cx.share(
            &join(base, &[K("fraction")]),
            "fraction",
            self.fraction,
            "hits dropped",
        );
    }

    fn explain(&self) -> String {
        format!(
            "drop {} of the hits of each search",
            super::words::percent(self.fraction)
        )
    }
}
