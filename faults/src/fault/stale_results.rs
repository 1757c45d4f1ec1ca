//! `stale_results`: serve the hits of an earlier query to the same collection,
//! as a lagging replica would. Applied by [`crate::vector`], from the rule's
//! [`crate::vector::StaleCache`].

use schemars::JsonSchema;
use serde::Deserialize;

use crate::check::{join, Cx};
use crate::yaml::PathSeg::{self, Key as K};

use super::{Fault, Side};

/// `stale_results.depth`'s range, spelled out for this check and for the range
/// the loader states when a depth is not a number (a test keeps it in step with
/// [`crate::vector::MAX_STALE_DEPTH`]).
pub(crate) const STALE_DEPTH_RANGE: &str = "between 1 and 16";

/// Serve the hits of an earlier query to the same collection, as a lagging
/// replica or an eventually consistent index would.
#[derive(Debug, Clone, PartialEq, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct StaleResults {
    /// How many queries back to serve (default 1: the previous one); up to 16.
    #[serde(default)]
    #[schemars(range(min = 1, max = 16))]
    pub depth: Option<u32>,
}

impl Fault for StaleResults {
    fn name(&self) -> &'static str {
        "stale_results"
    }

    fn side(&self) -> Side {
        Side::Results
    }

    fn validate(&self, cx: &mut Cx<'_>, base: &[PathSeg<'_>]) {
        if let Some(d) = self.depth {
            if !(1..=crate::vector::MAX_STALE_DEPTH).contains(&d) {
                cx.err(
                    &join(base, &[K("depth")]),
                    format!("`depth` must be {STALE_DEPTH_RANGE}, not {d}"),
                    Some(
                        "it is how many queries back the stale answer comes from; 1 is the previous query"
                            .to_string(),
                    ),
                );
            }
        }
    }

    fn explain(&self) -> String {
        match self.depth.unwrap_or(1) {
            1 => "answer with the previous query's hits for the same collection (a stale replica)"
                .to_string(),
            n => format!(
                "answer with the hits of the query {n} queries back for the same collection (a stale replica)"
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::STALE_DEPTH_RANGE;

    #[test]
    fn the_stale_depth_range_is_the_vector_limit() {
        assert_eq!(
            STALE_DEPTH_RANGE,
            format!("between 1 and {}", crate::vector::MAX_STALE_DEPTH)
        );
    }
}
