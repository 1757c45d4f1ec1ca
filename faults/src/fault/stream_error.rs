//! `stream_error`: send the provider's mid-stream error event after some
//! content events, then end the stream. Applied by [`crate::stream::Shaper`].

use schemars::JsonSchema;
use serde::Deserialize;

use crate::check::{join, Cx};
use crate::yaml::PathSeg::{self, Key as K};

use super::{Fault, Side};

/// Emit the provider's mid-stream error event after some content events, then end.
#[derive(Debug, Clone, PartialEq, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct StreamError {
    /// Content events let through before the error.
    pub after_tokens: u64,
    /// Whose error (default: the api's overload/server error, e.g.
    /// `anthropic.overloaded` or `openai.server_error`).
    #[serde(default)]
    pub preset: Option<String>,
}

impl Fault for StreamError {
    fn name(&self) -> &'static str {
        "stream_error"
    }

    fn side(&self) -> Side {
        Side::Stream
    }

    /// The preset's error event may name the model.
    fn names_model(&self) -> bool {
        super::preset_names_model(&self.preset)
    }

    fn validate(&self, cx: &mut Cx<'_>, base: &[PathSeg<'_>]) {
        if let Some(p) = &self.preset {
            cx.preset(&join(base, &[K("preset")]), p);
        }
    }

    fn explain(&self) -> String {
        let which = match &self.preset {
            Some(p) => format!("{}'s mid-stream error event", super::words::preset_words(p)),
            None => "the API's mid-stream error event".to_string(),
        };
        format!(
            "send {which} after {}, then end the stream",
            super::words::tokens(self.after_tokens)
        )
    }
}
