//! `error`: answer at once without calling the upstream — a preset (a provider's
//! real error), an explicit status, body and headers, or on a gRPC call a
//! `grpc_status`.

use schemars::JsonSchema;
use serde::Deserialize;

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::Duration;

use crate::check::{join, Cx};
use crate::duration::{format_duration, DurationStr};
use crate::yaml::PathSeg::{self, Key as K};

use super::{Fault, Side};

/// Answer at once without calling the upstream.
#[derive(Debug, Clone, PartialEq, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Error {
    /// HTTP status; overrides the preset's.
    #[serde(default)]
    #[schemars(range(min = 100, max = 599))]
    pub status: Option<u16>,
    /// Response body; overrides the preset's.
    #[serde(default)]
    pub body: Option<ErrorBody>,
    /// Extra response headers, added to (and overriding) the preset's.
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// A provider's real error (status, body, headers); see `brownout profiles --presets`.
    #[serde(default)]
    pub preset: Option<String>,
    /// Sets `retry-after` (whole seconds, rounded up) and `retry-after-ms`.
    #[serde(default)]
    pub retry_after: Option<DurationStr>,
    /// On a gRPC call: answer trailers-only with this `grpc-status` (a code name
    /// such as `unavailable` or `RESOURCE_EXHAUSTED`, or its number 0-16);
    /// `body`, when text, becomes the `grpc-message`.
    #[serde(default)]
    pub grpc_status: Option<GrpcStatusSpec>,
}

/// A gRPC status code as written in a profile: its name, any case
/// (`unavailable`, `RESOURCE_EXHAUSTED`), or its number.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(untagged)]
pub enum GrpcStatusSpec {
    Code(u32),
    Name(String),
}

impl GrpcStatusSpec {
    /// The code, when the name is one of gRPC's 17 (validation reports the rest).
    pub fn code(&self) -> Option<u32> {
        match self {
            GrpcStatusSpec::Code(c) => crate::grpc::status::Code::from_u32(*c).map(|c| c.as_u32()),
            GrpcStatusSpec::Name(n) => crate::grpc::status::Code::parse(n).map(|c| c.as_u32()),
        }
    }
}

/// The body of an injected error: literal text, or a JSON/YAML value sent as JSON.
#[derive(Debug, Clone, PartialEq, Deserialize, JsonSchema)]
#[serde(untagged)]
pub enum ErrorBody {
    Text(String),
    Json(serde_json::Value),
}

impl Fault for Error {
    fn name(&self) -> &'static str {
        "error"
    }

    /// Answers instead of calling the upstream.
    fn side(&self) -> Side {
        Side::Request
    }

    /// Nothing after an answer can apply.
    fn is_terminal(&self) -> bool {
        true
    }

    /// A preset's own body may name the model; an explicit body replaces it.
    fn names_model(&self) -> bool {
        self.body.is_none() && super::preset_names_model(&self.preset)
    }

    /// Something to answer with, a real gRPC code, an HTTP status, a known preset,
    /// headers HTTP can carry and a `retry_after` a client would wait for.
    fn validate(&self, cx: &mut Cx<'_>, base: &[PathSeg<'_>]) {
        let f = self;
        if f.status.is_none() && f.preset.is_none() && f.grpc_status.is_none() {
            cx.err(
            base,
            "an `error` fault needs a `status`, a `preset` or a `grpc_status`",
            Some(
                "e.g. `preset: openai.rate_limit_requests`, `status: 503`, or `grpc_status: unavailable`"
                    .to_string(),
            ),
        );
        }
        if let Some(g) = &f.grpc_status {
            if g.code().is_none() {
                let given = match g {
                    GrpcStatusSpec::Code(c) => c.to_string(),
                    GrpcStatusSpec::Name(n) => format!("`{n}`"),
                };
                cx.err(
                    &join(base, &[K("grpc_status")]),
                    format!("{given} is not a gRPC status code"),
                    Some(format!(
                        "use a number from 0 to 16 or a name: {}",
                        crate::grpc::status::ALL
                            .iter()
                            .map(|c| c.name().to_ascii_lowercase())
                            .collect::<Vec<_>>()
                            .join(", ")
                    )),
                );
            }
        }
        if let Some(s) = f.status {
            if !(100..=599).contains(&s) {
                cx.err(
                    &join(base, &[K("status")]),
                    format!("{s} is not an HTTP status"),
                    Some("use a status from 100 to 599, e.g. 429 or 503".to_string()),
                );
            }
        }
        if let Some(p) = &f.preset {
            cx.preset(&join(base, &[K("preset")]), p);
        }
        for (name, value) in &f.headers {
            let p = join(base, &[K("headers"), K(name.as_str())]);
            if http::HeaderName::from_bytes(name.as_bytes()).is_err() {
                cx.err(
                    &p,
                    format!("`{name}` is not a valid header name"),
                    Some("header names are letters, digits and `-`".to_string()),
                );
            } else if http::HeaderValue::from_str(value).is_err() {
                cx.err(
                    &p,
                    format!("the value of header `{name}` is not valid"),
                    Some("header values are visible ASCII text on one line".to_string()),
                );
            }
        }
        if let Some(r) = f.retry_after {
            if r.0 > Duration::from_secs(86_400) {
                cx.err(
                    &join(base, &[K("retry_after")]),
                    format!(
                        "`retry_after` of {} is longer than a day",
                        format_duration(r.0)
                    ),
                    Some("clients would give up long before; use seconds or minutes".to_string()),
                );
            }
        }
    }

    fn explain(&self) -> String {
        let f = self;
        let preset_words = super::words::preset_words;
        let mut s = match (f.preset.as_deref(), f.status) {
            (Some(p), None) => format!("answer with {}", preset_words(p)),
            (Some(p), Some(st)) => format!("answer with {} but status {st}", preset_words(p)),
            (None, Some(st)) => format!("answer {st}"),
            (None, None) => "answer with an error".to_string(),
        };
        match &f.body {
            Some(ErrorBody::Text(_)) => s.push_str(" with a custom text body"),
            Some(ErrorBody::Json(_)) => s.push_str(" with a custom JSON body"),
            None => {}
        }
        if !f.headers.is_empty() {
            let names: Vec<&str> = f.headers.keys().map(String::as_str).collect();
            let _ = write!(s, " plus header(s) {}", names.join(", "));
        }
        if let Some(r) = f.retry_after {
            let _ = write!(s, " and retry-after {}", format_duration(r.0));
        }
        if let Some(g) = f.grpc_status.as_ref().and_then(GrpcStatusSpec::code) {
            let _ = write!(
                s,
                " (a gRPC call gets grpc-status {g} {}, trailers-only)",
                crate::grpc::status::Code::from_u32(g).map_or("UNKNOWN", |c| c.name())
            );
        }
        s.push_str(" without calling the upstream");
        s
    }
}
