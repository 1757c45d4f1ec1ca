//! `empty_completion`: answer with an empty completion; the text is dropped, the
//! framing stays valid. Applied by [`crate::stream::content`].

use schemars::JsonSchema;
use serde::Deserialize;

use crate::check::Cx;
use crate::yaml::PathSeg;

use super::{Fault, Side};

/// Answer with an empty completion (the text is dropped; the framing stays valid).
#[derive(Debug, Clone, PartialEq, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct EmptyCompletion {}

impl Fault for EmptyCompletion {
    fn name(&self) -> &'static str {
        "empty_completion"
    }

    fn side(&self) -> Side {
        Side::Content
    }

    /// Every value serde accepts is a valid one.
    fn validate(&self, _: &mut Cx<'_>, _: &[PathSeg<'_>]) {}

    fn explain(&self) -> String {
        "answer with an empty completion (the model's text is dropped)".to_string()
    }
}
