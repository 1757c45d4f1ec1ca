//! `garble`: replace a share of the words of the completion's text, streamed or
//! not. Applied by [`crate::stream::content`].

use schemars::JsonSchema;
use serde::Deserialize;

use crate::check::{join, Cx};
use crate::yaml::PathSeg::{self, Key as K};

use super::{Fault, Side};

/// Replace a share of the words of the completion's text with other words.
#[derive(Debug, Clone, PartialEq, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Garble {
    /// Share of words replaced, above 0 and at most 1.
    pub fraction: f64,
}

impl Fault for Garble {
    fn name(&self) -> &'static str {
        "garble"
    }

    fn side(&self) -> Side {
        Side::Content
    }

    fn validate(&self, cx: &mut Cx<'_>, base: &[PathSeg<'_>]) {
        cx.share(
            &join(base, &[K("fraction")]),
            "fraction",
            self.fraction,
            "words replaced",
        );
    }

    fn explain(&self) -> String {
        format!(
            "replace {} of the words of the answer with other words",
            super::words::percent(self.fraction)
        )
    }
}
