//! `rate_limit`: token buckets like the providers'; over the limit, answer the
//! preset's 429 with true `retry-after` and rate-limit headers.
//!
//! The buckets are shared by every request the rule matches, so they live in
//! [`FaultState::RateLimit`], built once per rule.

use std::fmt::Write as _;
use std::sync::Arc;

use schemars::JsonSchema;
use serde::Deserialize;

use crate::check::{join, Cx};
use crate::ratelimit::RateLimiter;
use crate::yaml::PathSeg::{self, Key as K};

use super::{Fault, FaultState, Side};

/// Token buckets like the providers': over the limit, answer the preset's 429 with
/// accurate `retry-after` and rate-limit headers. Give at least one of the limits.
#[derive(Debug, Clone, PartialEq, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RateLimit {
    /// Requests allowed per minute (bucket refills continuously).
    #[serde(default)]
    #[schemars(range(min = 1))]
    pub requests_per_minute: Option<u64>,
    /// Tokens (prompt estimate plus `max_tokens`) allowed per minute.
    #[serde(default)]
    #[schemars(range(min = 1))]
    pub tokens_per_minute: Option<u64>,
    /// Whose bucket a request draws from: `global` (default), `client_ip` or
    /// `header:NAME`.
    #[serde(default)]
    #[schemars(regex(pattern = r"^(global|client_ip|header:[!#$%&'*+.^_`|~0-9A-Za-z-]+)$"))]
    pub by: Option<String>,
    /// Error answered over the limit (default: the listener's api's rate-limit error).
    #[serde(default)]
    pub preset: Option<String>,
}

impl Fault for RateLimit {
    fn name(&self) -> &'static str {
        "rate_limit"
    }

    /// Admission happens before the upstream is called.
    fn side(&self) -> Side {
        Side::Request
    }

    /// OpenAI's rate-limit message names the model, so the body is read for it.
    fn names_model(&self) -> bool {
        true
    }

    /// A request is charged its prompt estimate and `max_tokens`.
    fn reads_body(&self) -> bool {
        true
    }

    /// At least one limit, none of them zero, a known `by` and preset.
    fn validate(&self, cx: &mut Cx<'_>, base: &[PathSeg<'_>]) {
        if self.requests_per_minute.is_none() && self.tokens_per_minute.is_none() {
            cx.err(
                base,
                "a `rate_limit` fault needs `requests_per_minute` or `tokens_per_minute`",
                Some(
                    "give one or both, e.g. `requests_per_minute: 60` or `tokens_per_minute: 30000`"
                        .to_string(),
                ),
            );
        }
        for (key, v) in [
            ("requests_per_minute", self.requests_per_minute),
            ("tokens_per_minute", self.tokens_per_minute),
        ] {
            if v == Some(0) {
                cx.err(
                    &join(base, &[K(key)]),
                    format!("`{key}` must be at least 1"),
                    Some(
                        "to refuse every request, use an `error` fault with a 429 preset instead"
                            .to_string(),
                    ),
                );
            }
        }
        if let Some(by) = &self.by {
            let ok = match by.strip_prefix("header:") {
                Some(name) => {
                    !name.is_empty() && http::HeaderName::from_bytes(name.as_bytes()).is_ok()
                }
                None => by == "global" || by == "client_ip",
            };
            if !ok {
                cx.err(
                    &join(base, &[K("by")]),
                    format!("`by: {by}` is not a way to share out the limit"),
                    Some(
                        "use `global` (one bucket), `client_ip` or `header:NAME`, e.g. `by: header:authorization`"
                            .to_string(),
                    ),
                );
            }
        }
        if let Some(p) = &self.preset {
            cx.preset(&join(base, &[K("preset")]), p);
        }
    }

    fn explain(&self) -> String {
        let limits: Vec<String> = [
            self.requests_per_minute.map(|n| format!("{n} requests")),
            self.tokens_per_minute.map(|n| format!("{n} tokens")),
        ]
        .into_iter()
        .flatten()
        .collect();
        let mut s = format!("allow at most {} per minute", limits.join(" and "));
        match self.by.as_deref() {
            Some("client_ip") => s.push_str(" per client IP"),
            Some(b) if b.starts_with("header:") => {
                let _ = write!(s, " per value of the {} header", &b["header:".len()..]);
            }
            _ => s.push_str(" across all matching requests"),
        }
        match &self.preset {
            Some(p) => {
                let _ = write!(
                    s,
                    ", answering the rest with {}",
                    super::words::preset_words(p)
                );
            }
            None => s.push_str(", answering the rest with the API's rate-limit error"),
        }
        s
    }

    /// The buckets the rule's requests share.
    fn state(&self) -> FaultState {
        FaultState::RateLimit(Arc::new(RateLimiter::new(
            self.requests_per_minute,
            self.tokens_per_minute,
        )))
    }
}
