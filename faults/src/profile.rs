//! The profile format users write (DESIGN §4).
//!
//! These types are the single source of truth for the file format: the YAML loader in
//! [`crate::yaml`] deserializes them with positions, [`crate::schema`] derives the
//! JSON Schema editors use from them, and the proxy compiles them into matchers.
//! Every struct denies unknown fields, so a typo fails loudly instead of silently
//! turning a fault off.

use std::collections::BTreeMap;
use std::time::Duration;

use schemars::JsonSchema;
use serde::Deserialize;

use crate::api::{ApiKind, Endpoint};
use crate::dist::Dist;
use crate::duration::DurationStr;

/// A whole profile: what to break, when, and for whom.
#[derive(Debug, Clone, PartialEq, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Profile {
    /// Format version; only `1` exists.
    pub version: u32,
    /// Shown in status, metrics (`phase_info`) and records.
    pub name: String,
    #[serde(default)]
    pub description: Option<String>,
    /// Seed for every random decision; `--seed`, `BROWNOUT_SEED` and the config file
    /// take precedence.
    #[serde(default)]
    pub seed: Option<u64>,
    /// RFC 3339 origin of the phase clock, so many sidecars move through phases together.
    #[serde(default)]
    pub start_at: Option<String>,
    /// Dead-man switch: faults turn off by themselves this long after the profile applies.
    #[serde(default)]
    #[schemars(with = "Option<String>")]
    pub expires_after: Option<DurationStr>,
    /// Rules active in every phase, evaluated before the current phase's rules.
    #[serde(default)]
    pub rules: Vec<Rule>,
    /// Optional timeline; the last phase stays active once its duration has passed.
    #[serde(default)]
    pub phases: Vec<Phase>,
}

/// One step of the timeline.
#[derive(Debug, Clone, PartialEq, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Phase {
    pub name: String,
    #[schemars(with = "String")]
    pub duration: DurationStr,
    #[serde(default)]
    pub rules: Vec<Rule>,
}

/// Which requests to harm and how.
#[derive(Debug, Clone, PartialEq, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Rule {
    /// Names the rule in `x-brownout-fault`, records and metrics; also the key under
    /// which rule state survives a hot reload. Defaults to `rule-N` (top level) or
    /// `<phase>-N`.
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default, rename = "match")]
    pub matches: Match,
    #[serde(default)]
    pub probability: Probability,
    /// Blast-radius cap: at most this many requests harmed by this rule at once.
    #[serde(default)]
    pub max_active: Option<u32>,
    /// Whether injected responses carry `x-brownout-fault` (default: config's `mark_injected`).
    #[serde(default)]
    pub mark: Option<bool>,
    pub faults: Vec<FaultSpec>,
}

/// Conditions that must all hold for a rule to apply.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Match {
    #[serde(default)]
    pub listener: Option<String>,
    #[serde(default)]
    pub api: Option<ApiKind>,
    #[serde(default)]
    pub endpoint: Option<Endpoint>,
    #[serde(default)]
    pub method: Option<String>,
    /// Glob over the request path (`*` within a segment, `**` across segments, `?`).
    #[serde(default)]
    pub path: Option<String>,
    /// Header name → glob over its value.
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// Glob over the model named in the request body.
    #[serde(default)]
    pub model: Option<String>,
    #[serde(default)]
    pub stream: Option<bool>,
    #[serde(default)]
    pub prompt_tokens: Option<TokenRange>,
    #[serde(default)]
    pub clients: Option<ClientsMatch>,
}

#[derive(Debug, Clone, PartialEq, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TokenRange {
    #[serde(default)]
    pub min: Option<u64>,
    #[serde(default)]
    pub max: Option<u64>,
}

/// A sticky, hash-chosen share of clients.
#[derive(Debug, Clone, PartialEq, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ClientsMatch {
    pub percent: f64,
    /// `client_ip` (default) or `header:NAME`.
    #[serde(default)]
    pub by: Option<String>,
}

/// How often a matching rule fires.
#[derive(Debug, Clone, PartialEq, JsonSchema)]
#[schemars(untagged)]
pub enum Probability {
    Fixed(f64),
    /// Linear ramp from `from` at the phase's start to `to` at its end.
    Ramp { from: f64, to: f64 },
}

impl Default for Probability {
    fn default() -> Self {
        Probability::Fixed(1.0)
    }
}

/// The body of an injected error: literal text, or a JSON/YAML value sent as JSON.
#[derive(Debug, Clone, PartialEq, Deserialize, JsonSchema)]
#[serde(untagged)]
pub enum ErrorBody {
    Text(String),
    Json(serde_json::Value),
}

/// The fault catalog, tagged by `type` in files.
///
/// The loader in [`crate::yaml`] reads the `type` key as the variant name and the
/// remaining keys as the variant's fields, so positions and `deny_unknown_fields`
/// survive (serde's own internal tagging buffers and loses both).
#[derive(Debug, Clone, PartialEq, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
#[schemars(tag = "type")]
pub enum FaultSpec {
    /// Wait before forwarding the request.
    Delay { duration: Dist },
    /// Answer at once without calling the upstream.
    Error {
        #[serde(default)]
        status: Option<u16>,
        #[serde(default)]
        body: Option<ErrorBody>,
        #[serde(default)]
        headers: BTreeMap<String, String>,
        /// A provider's real error (status, body, headers); see `brownout profiles --presets`.
        #[serde(default)]
        preset: Option<String>,
        /// Sets `retry-after` (whole seconds, rounded up) and `retry-after-ms`.
        #[serde(default)]
        #[schemars(with = "Option<String>")]
        retry_after: Option<DurationStr>,
    },
    /// Close the connection abruptly: TCP RST on HTTP/1.1, RST_STREAM on HTTP/2.
    Reset {
        /// Reset after this many response body bytes instead of before the response.
        #[serde(default)]
        after_bytes: Option<u64>,
    },
    /// Hold the request; with `duration`, answer 504 afterwards, else hold until the
    /// client gives up or the kill switch releases it.
    Hang {
        #[serde(default)]
        duration: Option<Dist>,
    },
    /// Throttle the response body.
    Bandwidth { bytes_per_second: u64 },
    /// Cap in-flight requests matched by this rule; queue or reject the rest.
    ConcurrencyLimit {
        max: u32,
        /// How many may wait for a slot (default 0: reject at once).
        #[serde(default)]
        queue: Option<u32>,
        #[serde(default)]
        #[schemars(with = "Option<String>")]
        queue_timeout: Option<DurationStr>,
        /// Error answered on rejection (default `openai.overloaded`-style 429 from the listener's api).
        #[serde(default)]
        preset: Option<String>,
    },
}

impl FaultSpec {
    /// The `type` name as written in files, used in headers, records and metrics.
    pub fn kind(&self) -> &'static str {
        match self {
            FaultSpec::Delay { .. } => "delay",
            FaultSpec::Error { .. } => "error",
            FaultSpec::Reset { .. } => "reset",
            FaultSpec::Hang { .. } => "hang",
            FaultSpec::Bandwidth { .. } => "bandwidth",
            FaultSpec::ConcurrencyLimit { .. } => "concurrency_limit",
        }
    }
}

/// Convenience for code that needs a plain `Duration`.
pub fn dur(d: &DurationStr) -> Duration {
    d.0
}

impl<'de> Deserialize<'de> for Probability {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        f64::deserialize(d).map(Probability::Fixed)
    }
}
