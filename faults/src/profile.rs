//! The profile format users write (docs/profiles.md).
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
use crate::duration::DurationStr;

// The fault catalog and each fault's own field types live with the faults
// (`crate::fault`); they are part of the format, so they are named here too.
pub use crate::fault::{
    CorruptMode, ErrorBody, FaultSpec, GrpcStatusSpec, QueueCap, ResetCode, ResetScope, StepFit,
    StepRoofline, StepSpec, TruncateEnding,
};

/// A whole profile: what to break, when, and for whom.
#[derive(Debug, Clone, PartialEq, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Profile {
    /// Format version; only `1` exists.
    #[schemars(range(min = 1, max = 1))]
    pub version: u32,
    /// Shown in status, metrics (`phase_info`) and records.
    pub name: String,
    /// One or two sentences for people: what this profile simulates.
    #[serde(default)]
    pub description: Option<String>,
    /// Seed for every random decision; `--seed`, `BROWNOUT_SEED` and the config file
    /// take precedence.
    #[serde(default)]
    pub seed: Option<u64>,
    /// RFC 3339 origin of the phase clock, so many sidecars move through phases together.
    #[serde(default)]
    #[schemars(example = "2026-12-01T10:00:00Z")]
    pub start_at: Option<String>,
    /// Dead-man switch: faults turn off by themselves this long after the profile applies.
    #[serde(default)]
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
    /// Unique within the profile; shown in status, records and `phase_info`, and used
    /// by `brownout ctl phase NAME`.
    pub name: String,
    /// How long the phase lasts; must be positive.
    pub duration: DurationStr,
    /// Rules active only during this phase, evaluated after the top-level rules.
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
    /// Which requests this rule applies to; every condition given must hold. Empty
    /// or absent: every request.
    #[serde(default, rename = "match")]
    pub matches: Match,
    /// How often the rule fires for a matching request (default 1: always).
    #[serde(default)]
    pub probability: Probability,
    /// Fire by count instead of by chance: `{first: N}` (the first N, then none) or
    /// `{every: N}` (every Nth), counted per rule or per call. Replaces the random
    /// draw, so it cannot be given with `probability`.
    #[serde(default)]
    pub schedule: Option<Schedule>,
    /// Blast-radius cap: at most this many requests harmed by this rule at once.
    #[serde(default)]
    #[schemars(range(min = 1))]
    pub max_active: Option<u32>,
    /// Whether injected responses carry `x-brownout-fault` (default: config's `mark_injected`).
    #[serde(default)]
    pub mark: Option<bool>,
    /// Applied in order; the first terminal fault (error, reset, hang, an overflowing
    /// limit) ends the exchange.
    #[schemars(length(min = 1))]
    pub faults: Vec<FaultSpec>,
}

/// Conditions that must all hold for a rule to apply.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Match {
    /// The listener's `name` from the runtime config.
    #[serde(default)]
    pub listener: Option<String>,
    /// The listener's API family.
    #[serde(default)]
    pub api: Option<ApiKind>,
    /// What the request does, as the listener's API adapter classifies it.
    #[serde(default)]
    pub endpoint: Option<Endpoint>,
    /// HTTP method, e.g. `POST`.
    #[serde(default)]
    pub method: Option<String>,
    /// Glob over the request path (`*` within a segment, `**` across segments, `?`).
    #[serde(default)]
    pub path: Option<String>,
    /// Glob over a gRPC call's method, `/package.Service/Method`
    /// (`/milvus.proto.milvus.MilvusService/Search`, `/qdrant.Points/*`); a
    /// request that is not a gRPC call never matches.
    #[serde(default)]
    pub grpc_method: Option<String>,
    /// Header name → glob over its value.
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// Glob over the model named in the request body.
    #[serde(default)]
    pub model: Option<String>,
    /// Whether the request asked for a streamed response.
    #[serde(default)]
    pub stream: Option<bool>,
    /// Estimated prompt size (characters / 4), inclusive bounds.
    #[serde(default)]
    pub prompt_tokens: Option<TokenRange>,
    /// A sticky, hash-chosen share of clients.
    #[serde(default)]
    pub clients: Option<ClientsMatch>,
}

/// Inclusive bounds on the estimated prompt size; either may be left out.
#[derive(Debug, Clone, PartialEq, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TokenRange {
    /// At least this many tokens.
    #[serde(default)]
    pub min: Option<u64>,
    /// At most this many tokens.
    #[serde(default)]
    pub max: Option<u64>,
}

/// A sticky, hash-chosen share of clients.
#[derive(Debug, Clone, PartialEq, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ClientsMatch {
    /// Share of clients picked, 0 to 100.
    #[schemars(range(min = 0, max = 100))]
    pub percent: f64,
    /// `client_ip` (default) or `header:NAME`.
    #[serde(default)]
    #[schemars(regex(pattern = r"^(client_ip|header:[!#$%&'*+.^_`|~0-9A-Za-z-]+)$"))]
    pub by: Option<String>,
}

/// Which of a rule's matching requests it fires for, by count: "fail the first N,
/// then succeed", the retry test.
///
/// Exactly one of `first` and `every` is given (validation says so otherwise).
/// Counting is per rule (`per: rule`, the default: the rule's matching requests in
/// arrival order since the profile was applied, or since its phase began) or per
/// call (`per: call`: one call's attempts, numbered by `x-stainless-retry-count`,
/// or without it counted by `x-brownout-seq` or the request's fingerprint).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Schedule {
    /// Fire for the first N, then never again.
    #[serde(default)]
    pub first: Option<u64>,
    /// Fire for every Nth: the Nth, the 2Nth, ...
    #[serde(default)]
    pub every: Option<u64>,
    /// What is counted: the rule's requests (`rule`) or each call's attempts (`call`).
    #[serde(default)]
    pub per: SchedulePer,
}

/// What a [`Schedule`] counts.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum SchedulePer {
    /// The rule's matching requests, in arrival order.
    #[default]
    Rule,
    /// One call's attempts: its first try is attempt 1, its first retry attempt 2.
    Call,
}

impl Schedule {
    /// Whether the schedule fires for the request or attempt at 0-based position
    /// `k` of what it counts. A schedule without `first` or `every` (which
    /// validation refuses) never fires.
    pub fn fires(&self, k: u64) -> bool {
        match (self.first, self.every) {
            (Some(n), _) => k < n,
            (None, Some(n)) if n > 0 => (k + 1).is_multiple_of(n),
            _ => false,
        }
    }
}

impl JsonSchema for Schedule {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "Schedule".into()
    }

    fn json_schema(generator: &mut schemars::SchemaGenerator) -> schemars::Schema {
        let per = generator.subschema_for::<SchedulePer>();
        schemars::json_schema!({
            "description": "Fire by count instead of by chance: `{first: N}` fires for the first N and then never, `{every: N}` for every Nth. `per: rule` (default) counts the rule's matching requests in arrival order (from when the profile is applied, or from the start of the rule's phase); `per: call` counts each call's attempts (its `x-stainless-retry-count`; without one, requests with the same `x-brownout-seq`, or the same request from the same client within a minute), so `{first: 2, per: call}` fails every call's first two attempts and lets the third through. Not allowed together with `probability`.",
            "type": "object",
            "properties": {
                "first": {"type": "integer", "minimum": 1, "description": "Fire for the first N, then never again."},
                "every": {"type": "integer", "minimum": 1, "description": "Fire for every Nth: the Nth, the 2Nth, ..."},
                "per": per
            },
            "oneOf": [
                {"required": ["first"], "not": {"required": ["every"]}},
                {"required": ["every"], "not": {"required": ["first"]}}
            ],
            "additionalProperties": false
        })
    }
}

/// How often a matching rule fires.
///
/// Written as a number in `[0, 1]`, or inside a phase as `{from, to}` to ramp a fault
/// up (or down) over the phase, which is how real incidents build.
#[derive(Debug, Clone, PartialEq)]
pub enum Probability {
    Fixed(f64),
    /// Linear ramp from `from` at the phase's start to `to` at its end.
    Ramp {
        from: f64,
        to: f64,
    },
}

impl Default for Probability {
    fn default() -> Self {
        Probability::Fixed(1.0)
    }
}

/// Convenience for code that needs a plain `Duration`.
pub fn dur(d: &DurationStr) -> Duration {
    d.0
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RampFields {
    from: f64,
    to: f64,
}

struct ProbabilityVisitor;

impl<'de> serde::de::Visitor<'de> for ProbabilityVisitor {
    type Value = Probability;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a probability between 0 and 1, or a ramp {from: 0.05, to: 0.4}")
    }

    fn visit_f64<E: serde::de::Error>(self, v: f64) -> Result<Probability, E> {
        Ok(Probability::Fixed(v))
    }

    fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<Probability, E> {
        Ok(Probability::Fixed(v as f64))
    }

    fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<Probability, E> {
        Ok(Probability::Fixed(v as f64))
    }

    fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Probability, E> {
        Err(E::custom(format!(
            "expected a probability, found the text \"{v}\"{}write a number between 0 and 1 without quotes or `%`, e.g. 0.25, or a ramp {{from: 0.05, to: 0.4}}",
            crate::yaml::HINT_SEPARATOR
        )))
    }

    fn visit_map<A: serde::de::MapAccess<'de>>(self, map: A) -> Result<Probability, A::Error> {
        let r = RampFields::deserialize(serde::de::value::MapAccessDeserializer::new(map))?;
        Ok(Probability::Ramp {
            from: r.from,
            to: r.to,
        })
    }
}

impl<'de> Deserialize<'de> for Probability {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(ProbabilityVisitor)
    }
}

impl JsonSchema for Probability {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "Probability".into()
    }

    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "description": "How often a matching rule fires: a number in [0, 1], or (inside a phase only) a linear ramp over the phase.",
            "oneOf": [
                {"type": "number", "minimum": 0, "maximum": 1},
                {
                    "type": "object",
                    "properties": {
                        "from": {"type": "number", "minimum": 0, "maximum": 1},
                        "to": {"type": "number", "minimum": 0, "maximum": 1}
                    },
                    "required": ["from", "to"],
                    "additionalProperties": false
                }
            ]
        })
    }
}
