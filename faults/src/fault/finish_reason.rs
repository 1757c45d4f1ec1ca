//! `finish_reason`: rewrite the finish reason (OpenAI `finish_reason`,
//! Anthropic `stop_reason`). Applied by [`crate::stream::content`].

use schemars::JsonSchema;
use serde::Deserialize;

use crate::check::{join, Cx};
use crate::yaml::PathSeg::{self, Key as K};

use super::{Fault, Side};

/// Rewrite the finish reason (OpenAI `finish_reason`, Anthropic `stop_reason`).
#[derive(Debug, Clone, PartialEq, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct FinishReason {
    /// The value to report, e.g. `length`, `content_filter`, `max_tokens`.
    pub value: String,
}

impl Fault for FinishReason {
    fn name(&self) -> &'static str {
        "finish_reason"
    }

    fn side(&self) -> Side {
        Side::Content
    }

    fn validate(&self, cx: &mut Cx<'_>, base: &[PathSeg<'_>]) {
        if self.value.trim().is_empty() {
            cx.err(
                &join(base, &[K("value")]),
                "the finish reason is empty",
                Some(
                    "e.g. `value: length` (OpenAI) or `value: max_tokens` (Anthropic)".to_string(),
                ),
            );
        }
    }

    fn explain(&self) -> String {
        format!("report the finish reason as `{}`", self.value)
    }
}
