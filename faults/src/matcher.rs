//! Profiles compiled for the hot path: globs built, header names parsed, per-rule
//! state attached.
//!
//! The proxy holds one [`CompiledProfile`] behind an atomic pointer; a request reads
//! it without locking, walks the rules of the current phase in file order and asks
//! each [`CompiledMatch`] whether it holds. Rule state (ordinals, active counts,
//! limiters) lives in an `Arc` keyed by rule name so that a hot reload that leaves a
//! rule unchanged keeps its queues and counters (docs/profiles.md and docs/admin.md, "PUT /api/v1/profile").

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use http::{HeaderMap, HeaderName, Method};
use tokio::time::Instant;

use crate::api::{client_share, ApiKind, Endpoint, RequestFacts};
use crate::clock::PhaseClock;
use crate::fault::FaultState;
use crate::glob::Glob;
use crate::profile::{FaultSpec, Match, Probability, Profile, Rule, SchedulePer};
use crate::schedule::{CallId, Scheduler};

/// What a request offers to be matched against.
#[derive(Debug, Clone, Copy)]
pub struct MatchInput<'a> {
    pub listener: &'a str,
    pub method: &'a Method,
    pub path: &'a str,
    pub headers: &'a HeaderMap,
    pub facts: &'a RequestFacts,
    pub client_ip: Option<IpAddr>,
}

/// Whose share `clients.percent` picks.
#[derive(Debug, Clone, PartialEq)]
pub enum ClientBy {
    Ip,
    Header(HeaderName),
}

/// A `match` block ready to evaluate.
#[derive(Debug, Clone, Default)]
pub struct CompiledMatch {
    listener: Option<String>,
    api: Option<ApiKind>,
    endpoint: Option<Endpoint>,
    method: Option<Method>,
    path: Option<Glob>,
    grpc_method: Option<Glob>,
    headers: Vec<(HeaderName, Glob)>,
    model: Option<Glob>,
    stream: Option<bool>,
    prompt_tokens: Option<(Option<u64>, Option<u64>)>,
    clients: Option<(f64, ClientBy)>,
}

/// Why a profile could not be compiled (validation normally catches these first).
#[derive(Debug, thiserror::Error)]
pub enum CompileError {
    #[error("rule `{rule}`: {message}")]
    Rule { rule: String, message: String },
}

impl CompiledMatch {
    fn compile(m: &Match, rule: &str) -> Result<Self, CompileError> {
        let err = |message: String| CompileError::Rule {
            rule: rule.to_string(),
            message,
        };
        let glob = |p: &Option<String>| -> Result<Option<Glob>, CompileError> {
            p.as_deref()
                .map(|p| Glob::new(p).map_err(|e| err(format!("glob `{p}`: {e}"))))
                .transpose()
        };
        let mut headers = Vec::with_capacity(m.headers.len());
        for (name, pat) in &m.headers {
            let name = HeaderName::from_bytes(name.to_ascii_lowercase().as_bytes())
                .map_err(|e| err(format!("header name `{name}`: {e}")))?;
            headers.push((
                name,
                Glob::new(pat).map_err(|e| err(format!("glob `{pat}`: {e}")))?,
            ));
        }
        let method = m
            .method
            .as_deref()
            .map(|s| {
                Method::from_bytes(s.to_ascii_uppercase().as_bytes())
                    .map_err(|e| err(format!("method `{s}`: {e}")))
            })
            .transpose()?;
        let clients = match &m.clients {
            None => None,
            Some(c) => {
                let by = match c.by.as_deref() {
                    None | Some("client_ip") => ClientBy::Ip,
                    Some(other) => match other.strip_prefix("header:") {
                        Some(h) => ClientBy::Header(
                            HeaderName::from_bytes(h.to_ascii_lowercase().as_bytes())
                                .map_err(|e| err(format!("clients.by header `{h}`: {e}")))?,
                        ),
                        None => {
                            return Err(err(format!(
                                "clients.by `{other}`: use client_ip or header:NAME"
                            )))
                        }
                    },
                };
                Some((c.percent, by))
            }
        };
        Ok(CompiledMatch {
            listener: m.listener.clone(),
            api: m.api,
            endpoint: m.endpoint,
            method,
            path: glob(&m.path)?,
            grpc_method: glob(&m.grpc_method)?,
            headers,
            model: glob(&m.model)?,
            stream: m.stream,
            prompt_tokens: m.prompt_tokens.as_ref().map(|r| (r.min, r.max)),
            clients,
        })
    }

    /// Whether this condition needs facts from the request body.
    pub fn needs_body(&self) -> bool {
        self.model.is_some() || self.stream.is_some() || self.prompt_tokens.is_some()
    }

    /// The literal prefix of the path glob; `None` without a path condition.
    pub fn path_prefix(&self) -> Option<&str> {
        self.path.as_ref().map(Glob::literal_prefix)
    }

    /// Whether the path glob names `path` itself, not only a folder above it: its
    /// literal part reaches into the last segment (`/health`, `/health*`,
    /// `/v2/health/re*`, but not `/*`, `/**` or `/v2/health/*`).
    fn names_path(&self, path: &str) -> bool {
        let last = path.rfind('/').map_or(0, |i| i + 1);
        self.path
            .as_ref()
            .is_some_and(|g| g.literal_prefix().len() > last)
    }

    /// Whether this condition reads request headers (a header glob, or the client
    /// share, which may come from a header or from `x-forwarded-for`).
    pub fn needs_headers(&self) -> bool {
        !self.headers.is_empty() || self.clients.is_some()
    }

    /// Every condition given must hold. Body conditions never hold for a body that
    /// was not inspected (over `inspect_limit`, not JSON).
    pub fn matches(&self, input: &MatchInput<'_>, seed: u64) -> bool {
        if let Some(l) = &self.listener {
            if l != input.listener {
                return false;
            }
        }
        if let Some(a) = self.api {
            if a != input.facts.api {
                return false;
            }
        }
        if let Some(e) = self.endpoint {
            if e != input.facts.endpoint {
                return false;
            }
        }
        if let Some(m) = &self.method {
            if m != input.method {
                return false;
            }
        }
        if let Some(p) = &self.path {
            if !p.matches(input.path) {
                return false;
            }
        }
        if let Some(g) = &self.grpc_method {
            if !input.facts.grpc || !g.matches(input.path) {
                return false;
            }
        }
        if is_health_probe(input.method, input.path) && !self.names_path(input.path) {
            return false;
        }
        for (name, glob) in &self.headers {
            match input.headers.get(name).and_then(|v| v.to_str().ok()) {
                Some(v) if glob.matches(v) => {}
                _ => return false,
            }
        }
        if self.needs_body() && !input.facts.body_inspected {
            return false;
        }
        if let Some(g) = &self.model {
            match &input.facts.model {
                Some(m) if g.matches(m) => {}
                _ => return false,
            }
        }
        if let Some(s) = self.stream {
            if input.facts.stream.unwrap_or(false) != s {
                return false;
            }
        }
        if let Some((min, max)) = self.prompt_tokens {
            let Some(n) = input.facts.prompt_tokens else {
                return false;
            };
            if min.is_some_and(|m| n < m) || max.is_some_and(|m| n > m) {
                return false;
            }
        }
        if let Some((percent, by)) = &self.clients {
            let share = match by {
                ClientBy::Ip => match input.client_ip {
                    Some(ip) => client_share(seed, &ip.to_string()),
                    None => return false,
                },
                ClientBy::Header(h) => match input.headers.get(h).and_then(|v| v.to_str().ok()) {
                    Some(v) => client_share(seed, v),
                    None => return false,
                },
            };
            if share >= *percent {
                return false;
            }
        }
        true
    }
}

/// Runtime state of one rule; carried over hot reloads while the rule is unchanged.
#[derive(Debug, Default)]
pub struct RuleState {
    /// Requests this rule has matched so far: the ordinal for seeded decisions.
    pub ordinal: AtomicU64,
    /// Requests this rule is harming right now, for `max_active`.
    pub active: AtomicU32,
    /// What each of the rule's faults keeps between requests (limiters, token
    /// buckets, a simulated replica, a model-load state), one per fault, in the
    /// rule's fault order.
    faults: Vec<FaultState>,
    /// Earlier search answers per collection, for `stale_results`.
    pub stale: Arc<crate::vector::StaleCache>,
}

impl RuleState {
    fn for_rule(rule: &Rule) -> Self {
        RuleState {
            faults: rule.faults.iter().map(FaultState::build).collect(),
            ..Default::default()
        }
    }

    /// The state of the rule's fault at `index` (in the rule's fault order);
    /// [`FaultState::Unbuilt`] past the end, so a caller never indexes out of
    /// bounds.
    pub fn fault(&self, index: usize) -> &FaultState {
        self.faults.get(index).unwrap_or(&FaultState::Unbuilt)
    }

    /// Every simulated replica of the rule's `gpu_saturation` faults, for the
    /// GPU gauges and the capacity meter.
    pub fn replicas(&self) -> impl Iterator<Item = &Arc<crate::gpu::Replica>> {
        self.faults.iter().filter_map(|f| match f {
            FaultState::GpuSaturation(r) => Some(r),
            _ => None,
        })
    }

    /// Claim an active slot under `max_active`; `false` when the rule is at its cap.
    pub fn try_activate(&self, max_active: Option<u32>) -> bool {
        match max_active {
            None => {
                self.active.fetch_add(1, Ordering::AcqRel);
                true
            }
            Some(cap) => self
                .active
                .fetch_update(Ordering::AcqRel, Ordering::Acquire, |a| {
                    (a < cap).then_some(a + 1)
                })
                .is_ok(),
        }
    }

    pub fn deactivate(&self) {
        self.active.fetch_sub(1, Ordering::AcqRel);
    }
}

/// The last path segments of the health and readiness probes that orchestrators
/// send model servers and vector databases (vLLM's and TGI's `/health`, Qdrant's
/// `/healthz`, `/readyz`, `/livez`, Triton's `/v2/health/ready` and `/live`,
/// Weaviate's `/.well-known/ready` and `/live`, Chroma's `heartbeat`, `/ping`,
/// `/metrics`).
const PROBE_SEGMENTS: [&str; 9] = [
    "health",
    "healthz",
    "readyz",
    "livez",
    "ready",
    "live",
    "ping",
    "metrics",
    "heartbeat",
];

/// A `GET` or `HEAD` of a health probe. Probes are exempt from every rule that
/// does not name their path, so that a broad profile on a sidecar does not get
/// its model server restarted by the orchestrator that probes it.
pub fn is_health_probe(method: &http::Method, path: &str) -> bool {
    if method != http::Method::GET && method != http::Method::HEAD {
        return false;
    }
    let last = path.rsplit('/').next().unwrap_or(path);
    PROBE_SEGMENTS.iter().any(|s| last.eq_ignore_ascii_case(s))
}

/// A rule ready for the hot path.
#[derive(Debug)]
pub struct CompiledRule {
    pub name: Arc<str>,
    /// Stable id of the name: the decision stream.
    pub id: u64,
    pub cond: CompiledMatch,
    pub probability: Probability,
    pub max_active: Option<u32>,
    pub mark: Option<bool>,
    pub faults: Vec<FaultSpec>,
    /// Firing by count instead of by `probability`, with its counters. Made anew
    /// each time the profile is applied: schedules start over with the phase clock.
    pub schedule: Option<Scheduler>,
    /// Whether the rule belongs to a phase (its `per: rule` count starts over with
    /// each run of the phase) rather than to the top level.
    pub in_phase: bool,
    /// Identity of the rule's parameters, for carrying state over reloads.
    fingerprint: String,
    pub state: Arc<RuleState>,
}

/// Where the phase clock stands, as far as a decision needs it.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Moment {
    /// Fraction of the phase elapsed (for ramps).
    pub fraction: f64,
    /// Names the current run of the current phase (see [`crate::clock::PhaseAt`]).
    pub phase_epoch: u64,
}

impl CompiledRule {
    /// A rule that matches everything, for faults asked for per request
    /// (`x-brownout-fault` headers) rather than written in the profile.
    pub fn adhoc(name: &str, faults: Vec<FaultSpec>) -> Self {
        let rule = Rule {
            name: Some(name.to_string()),
            matches: Match::default(),
            probability: Probability::Fixed(1.0),
            schedule: None,
            max_active: None,
            mark: None,
            faults: faults.clone(),
        };
        CompiledRule {
            name: Arc::from(name),
            id: crate::decide::rule_id(name),
            cond: CompiledMatch::default(),
            probability: Probability::Fixed(1.0),
            max_active: None,
            mark: None,
            state: Arc::new(RuleState::for_rule(&rule)),
            faults,
            schedule: None,
            in_phase: false,
            fingerprint: String::new(),
        }
    }

    /// Whether an error one of this rule's faults may answer names the request's
    /// model ([`FaultSpec::names_model`]): a rule that fired then has the request
    /// body read for it, even with no body condition.
    pub fn names_model(&self) -> bool {
        self.faults.iter().any(FaultSpec::names_model)
    }

    /// Whether this rule's conditions hold for `input`, with nothing counted or
    /// drawn: the HTTP/1.1 fast path asks this to know that no rule can fire, and
    /// leaves every request for which one might to [`CompiledRule::decide`].
    pub fn matches(&self, input: &MatchInput<'_>, seed: u64) -> bool {
        self.cond.matches(input, seed)
    }

    /// Whether this rule fires for one request: it matches `input`; its `schedule`
    /// says this is its turn, or else the seeded draw for the request's ordinal says
    /// yes at the phase's `at.fraction` (the ordinal is (`x-brownout-seq`, retry
    /// count) when the request has a seq, else the rule's own count); and a
    /// `max_active` slot is free. A scheduled turn that finds the rule at its cap is
    /// used up all the same (`Busy`), as a draw is. A firing rule holds its slot
    /// until [`RuleState::deactivate`].
    pub fn decide(
        &self,
        input: &MatchInput<'_>,
        seed: u64,
        at: Moment,
        call: &CallId,
    ) -> RuleDecision {
        if !self.cond.matches(input, seed) {
            return RuleDecision::NoMatch;
        }
        let ordinal = call
            .ordinal()
            .unwrap_or_else(|| self.state.ordinal.fetch_add(1, Ordering::Relaxed));
        let rng = match &self.schedule {
            Some(schedule) => {
                let epoch = if self.in_phase { at.phase_epoch } else { 0 };
                if !schedule.turn(call, epoch, Instant::now()) {
                    return RuleDecision::Skip;
                }
                // Past the decision word, where a drawn rule's faults sample from.
                let mut rng = crate::decide::rng_for(seed, self.id, ordinal);
                let _: f64 = rand::Rng::random(&mut rng);
                rng
            }
            None => match crate::decide::decide(
                seed,
                self.id,
                ordinal,
                self.probability.at(at.fraction),
            ) {
                Some(rng) => rng,
                None => return RuleDecision::Skip,
            },
        };
        if !self.state.try_activate(self.max_active) {
            return RuleDecision::Busy;
        }
        RuleDecision::Fire(rng)
    }
}

/// What [`CompiledRule::decide`] said.
// Returned and unpacked at once, per rule per request: boxing the stream would cost
// an allocation for every rule that fires.
#[allow(clippy::large_enum_variant)]
#[derive(Debug)]
pub enum RuleDecision {
    /// Its conditions do not hold for the request.
    NoMatch,
    /// Matched, but not drawn this time (its probability or schedule said no): a
    /// drill counts these to tell an idle rule from an unlucky one.
    Skip,
    /// Matched and drawn, but `max_active` requests already hold it.
    Busy,
    /// Fires, with the decision stream its faults draw from.
    Fire(rand_chacha::ChaCha8Rng),
}

/// Parse an `x-brownout-fault` request header (`error=openai.rate_limit_requests`,
/// `error=503`, `delay=500ms`, `hang=5s`, `reset`, `reset=2048`, `drop_results=0.5`,
/// `limit_results=3`, `shuffle_results`, `empty_results`, `score_noise=0.1`,
/// `embedding_noise=0.02`, `embedding_truncate=256`), comma-separated.
/// Returns the faults understood and the items that were not.
pub fn parse_header_faults(value: &str) -> (Vec<FaultSpec>, Vec<String>) {
    use crate::duration::parse_duration;
    let mut ok = Vec::new();
    let mut bad = Vec::new();
    for item in value.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        let (k, v) = match item.split_once('=') {
            Some((k, v)) => (k.trim(), Some(v.trim())),
            None => (item, None),
        };
        let f = match (k, v) {
            ("error", Some(v)) => match v.parse::<u16>() {
                Ok(status) => Some(FaultSpec::Error(crate::fault::Error {
                    status: Some(status),
                    body: None,
                    headers: Default::default(),
                    preset: None,
                    retry_after: None,
                    grpc_status: None,
                })),
                Err(_) if crate::presets::lookup(v).is_some() => {
                    Some(FaultSpec::Error(crate::fault::Error {
                        status: None,
                        body: None,
                        headers: Default::default(),
                        preset: Some(v.to_string()),
                        retry_after: None,
                        grpc_status: None,
                    }))
                }
                Err(_) => None,
            },
            ("delay", Some(v)) => parse_duration(v).ok().map(|d| {
                FaultSpec::Delay(crate::fault::Delay {
                    duration: crate::dist::Dist::Fixed(d),
                })
            }),
            ("hang", Some(v)) => parse_duration(v).ok().map(|d| {
                FaultSpec::Hang(crate::fault::Hang {
                    duration: Some(crate::dist::Dist::Fixed(d)),
                })
            }),
            ("hang", None) => Some(FaultSpec::Hang(crate::fault::Hang { duration: None })),
            ("reset", None) => Some(FaultSpec::Reset(crate::fault::Reset {
                after_bytes: None,
                scope: None,
                code: None,
            })),
            ("truncate", Some(v)) => v.parse().ok().map(|n| {
                FaultSpec::Truncate(crate::fault::Truncate {
                    after_tokens: n,
                    ending: crate::profile::TruncateEnding::NoTerminator,
                })
            }),
            ("stream_error", Some(v)) => v.parse().ok().map(|n| {
                FaultSpec::StreamError(crate::fault::StreamError {
                    after_tokens: n,
                    preset: None,
                })
            }),
            ("reset", Some(v)) => v.parse().ok().map(|n| {
                FaultSpec::Reset(crate::fault::Reset {
                    after_bytes: Some(n),
                    scope: None,
                    code: None,
                })
            }),
            // Vector faults (`stale_results` needs a rule's history, so it has no
            // header form: an ad-hoc rule lives for one request).
            ("drop_results", Some(v)) => v
                .parse::<f64>()
                .ok()
                .filter(|f| *f > 0.0 && *f <= 1.0)
                .map(|fraction| FaultSpec::DropResults(crate::fault::DropResults { fraction })),
            ("limit_results", Some(v)) => v
                .parse()
                .ok()
                .map(|max| FaultSpec::LimitResults(crate::fault::LimitResults { max })),
            ("shuffle_results", None) => {
                Some(FaultSpec::ShuffleResults(crate::fault::ShuffleResults {}))
            }
            ("empty_results", None) => Some(FaultSpec::EmptyResults(crate::fault::EmptyResults {})),
            ("score_noise", Some(v)) => v
                .parse::<f64>()
                .ok()
                .filter(|s| s.is_finite() && *s > 0.0)
                .map(|stddev| FaultSpec::ScoreNoise(crate::fault::ScoreNoise { stddev })),
            ("embedding_noise", Some(v)) => v
                .parse::<f64>()
                .ok()
                .filter(|s| s.is_finite() && *s > 0.0)
                .map(|stddev| FaultSpec::EmbeddingNoise(crate::fault::EmbeddingNoise { stddev })),
            ("embedding_truncate", Some(v)) => {
                v.parse::<u64>().ok().filter(|d| *d > 0).map(|dims| {
                    FaultSpec::EmbeddingTruncate(crate::fault::EmbeddingTruncate { dims })
                })
            }
            _ => None,
        };
        match f {
            Some(f) => ok.push(f),
            None => bad.push(item.to_string()),
        }
    }
    (ok, bad)
}

/// One phase of the timeline.
#[derive(Debug)]
pub struct CompiledPhase {
    pub name: Arc<str>,
    pub duration: Duration,
    pub rules: Vec<CompiledRule>,
    pub index: PathIndex,
}

/// The rules of one list filed by the literal prefix of their path glob, so that
/// "could any rule match this request?" looks only at the rules whose prefix
/// starts the request's path (and those without a path condition), not at all of
/// them: a profile of many path rules costs a few hash lookups per request.
#[derive(Debug, Default)]
pub struct PathIndex {
    /// Rules without a path condition, or whose glob opens with a wildcard.
    always: Vec<usize>,
    by_prefix: HashMap<Box<str>, Vec<usize>>,
    /// The distinct prefix lengths, ascending.
    lengths: Vec<usize>,
}

impl PathIndex {
    pub fn build(rules: &[CompiledRule]) -> Self {
        let mut index = PathIndex::default();
        for (i, r) in rules.iter().enumerate() {
            match r.cond.path_prefix() {
                Some(p) if !p.is_empty() => {
                    index.by_prefix.entry(Box::from(p)).or_default().push(i);
                    if !index.lengths.contains(&p.len()) {
                        index.lengths.push(p.len());
                    }
                }
                _ => index.always.push(i),
            }
        }
        index.lengths.sort_unstable();
        index
    }

    /// Whether any of `rules` (the list this index was built from) matches `input`;
    /// nothing is counted or drawn.
    pub fn any_matches(&self, rules: &[CompiledRule], input: &MatchInput<'_>, seed: u64) -> bool {
        let check = |i: &usize| rules.get(*i).is_some_and(|r| r.matches(input, seed));
        if self.always.iter().any(check) {
            return true;
        }
        let path = input.path;
        self.lengths
            .iter()
            .take_while(|&&l| l <= path.len())
            .any(|&l| {
                path.get(..l)
                    .and_then(|p| self.by_prefix.get(p))
                    .is_some_and(|v| v.iter().any(check))
            })
    }
}

/// A profile ready for the hot path, with its running phase clock.
#[derive(Debug)]
pub struct CompiledProfile {
    pub name: Arc<str>,
    pub seed: u64,
    pub top: Vec<CompiledRule>,
    pub phases: Vec<CompiledPhase>,
    pub clock: PhaseClock,
    /// The top-level rules filed by path prefix.
    pub top_index: PathIndex,
    /// Whether any rule looks at the request body (then bodies are inspected).
    pub needs_body: bool,
    /// Whether any rule's conditions read request headers.
    pub needs_headers: bool,
    /// Whether any rule counts calls (`schedule: {per: call}`): requests without
    /// `x-brownout-seq` then need a [`crate::schedule::fingerprint`].
    pub counts_calls: bool,
    pub expires_after: Option<Duration>,
    /// When the profile was applied.
    pub applied_at: Instant,
    pub source: Profile,
}

/// The rules in force right now and the phase they belong to.
pub struct Active<'a> {
    pub phase: Option<&'a CompiledPhase>,
    /// Which of the profile's phases `phase` is.
    pub phase_index: Option<usize>,
    /// Fraction of the phase elapsed (for ramps).
    pub fraction: f64,
    /// The fraction and the run of the phase, for [`CompiledRule::decide`].
    pub at: Moment,
    pub rules:
        std::iter::Chain<std::slice::Iter<'a, CompiledRule>, std::slice::Iter<'a, CompiledRule>>,
}

impl CompiledProfile {
    /// A profile with no rules: pure pass-through.
    pub fn empty(seed: u64) -> Self {
        let now = Instant::now();
        CompiledProfile {
            name: Arc::from("none"),
            seed,
            top: Vec::new(),
            phases: Vec::new(),
            clock: PhaseClock::new(Vec::new(), now, 0),
            top_index: PathIndex::default(),
            needs_body: false,
            needs_headers: false,
            counts_calls: false,
            expires_after: None,
            applied_at: now,
            source: Profile {
                version: 1,
                name: "none".into(),
                description: None,
                seed: None,
                start_at: None,
                expires_after: None,
                rules: Vec::new(),
                phases: Vec::new(),
            },
        }
    }

    /// Whether no rule exists at all (the proxy then skips matching entirely).
    pub fn is_empty(&self) -> bool {
        self.top.is_empty() && self.phases.iter().all(|p| p.rules.is_empty())
    }

    /// The rules in force at `now`.
    pub fn active(&self, now: Instant) -> Active<'_> {
        let at = self.clock.at(now);
        let phase = at.index.and_then(|i| self.phases.get(i));
        let phase_rules: &[CompiledRule] = phase.map(|p| p.rules.as_slice()).unwrap_or(&[]);
        Active {
            phase,
            phase_index: phase.and(at.index),
            fraction: at.fraction,
            at: Moment {
                fraction: at.fraction,
                phase_epoch: at.start_ns as u64,
            },
            rules: self.top.iter().chain(phase_rules.iter()),
        }
    }

    /// Whether any rule in force (top level, then `phase`'s) matches `input`, with
    /// nothing counted or drawn: when none does, no fault can touch the request.
    pub fn any_rule_matches(&self, phase: Option<&CompiledPhase>, input: &MatchInput<'_>) -> bool {
        self.top_index.any_matches(&self.top, input, self.seed)
            || phase.is_some_and(|p| p.index.any_matches(&p.rules, input, self.seed))
    }

    /// Every rule, top level first, for reports and carry-over.
    pub fn all_rules(&self) -> impl Iterator<Item = &CompiledRule> {
        self.top
            .iter()
            .chain(self.phases.iter().flat_map(|p| p.rules.iter()))
    }

    /// Compile `profile`. `seed` is the effective seed (flag > env > config > profile).
    /// State of rules unchanged since `previous` carries over. `start_offset_ns` is
    /// where the phase clock's origin lies relative to `now` (from `start_at`).
    pub fn compile(
        profile: &Profile,
        seed: u64,
        previous: Option<&CompiledProfile>,
        now: Instant,
        start_offset_ns: i64,
    ) -> Result<Self, CompileError> {
        let mut carry: HashMap<&str, (&str, &Arc<RuleState>)> = HashMap::new();
        if let Some(prev) = previous {
            for r in prev.all_rules() {
                carry.insert(&r.name, (&r.fingerprint, &r.state));
            }
        }
        let build = |rule: &Rule,
                     default_name: String,
                     in_phase: bool|
         -> Result<CompiledRule, CompileError> {
            let name = rule.name.clone().unwrap_or(default_name);
            let fingerprint = format!(
                "{:?}|{:?}|{:?}|{:?}|{:?}|{:?}",
                rule.matches,
                rule.probability,
                rule.schedule,
                rule.max_active,
                rule.mark,
                rule.faults
            );
            let state = match carry.get(name.as_str()) {
                Some((fp, st)) if *fp == fingerprint => Arc::clone(st),
                _ => Arc::new(RuleState::for_rule(rule)),
            };
            Ok(CompiledRule {
                id: crate::decide::rule_id(&name),
                cond: CompiledMatch::compile(&rule.matches, &name)?,
                name: Arc::from(name),
                probability: rule.probability.clone(),
                max_active: rule.max_active,
                mark: rule.mark,
                faults: rule.faults.clone(),
                schedule: rule.schedule.map(|s| Scheduler::new(s, now)),
                in_phase,
                fingerprint,
                state,
            })
        };
        let top = profile
            .rules
            .iter()
            .enumerate()
            .map(|(i, r)| build(r, format!("rule-{}", i + 1), false))
            .collect::<Result<Vec<_>, _>>()?;
        let phases = profile
            .phases
            .iter()
            .map(|p| {
                let rules = p
                    .rules
                    .iter()
                    .enumerate()
                    .map(|(i, r)| build(r, format!("{}-{}", p.name, i + 1), true))
                    .collect::<Result<Vec<_>, _>>()?;
                Ok(CompiledPhase {
                    name: Arc::from(p.name.as_str()),
                    duration: p.duration.0,
                    index: PathIndex::build(&rules),
                    rules,
                })
            })
            .collect::<Result<Vec<_>, CompileError>>()?;
        // Faults whose work reads the body (`rate_limit`, `gpu_saturation`) need it
        // read like a match does.
        let needs_body = top
            .iter()
            .chain(phases.iter().flat_map(|p| p.rules.iter()))
            .any(|r| r.cond.needs_body() || r.faults.iter().any(FaultSpec::reads_body));
        let needs_headers = top
            .iter()
            .chain(phases.iter().flat_map(|p| p.rules.iter()))
            .any(|r| r.cond.needs_headers());
        // A call is told apart by a fingerprint that includes the body.
        let counts_calls = top
            .iter()
            .chain(phases.iter().flat_map(|p| p.rules.iter()))
            .any(|r| {
                r.schedule
                    .as_ref()
                    .is_some_and(|s| s.schedule().per == SchedulePer::Call)
            });
        let needs_body = needs_body || counts_calls;
        Ok(CompiledProfile {
            name: Arc::from(profile.name.as_str()),
            seed,
            clock: PhaseClock::new(
                phases.iter().map(|p| p.duration).collect(),
                now,
                start_offset_ns,
            ),
            top_index: PathIndex::build(&top),
            top,
            phases,
            needs_body,
            needs_headers,
            counts_calls,
            expires_after: profile.expires_after.map(|d| d.0),
            applied_at: now,
            source: profile.clone(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn compile(yaml: &str) -> CompiledProfile {
        let p = crate::validate::load_profile(yaml, "t.yaml").unwrap();
        CompiledProfile::compile(&p, 1, None, Instant::now(), 0).unwrap()
    }

    #[test]
    fn the_path_index_finds_exactly_the_rules_a_scan_would() {
        let p = compile(
            r#"
version: 1
name: t
rules:
  - {name: a, match: {path: "/v1/chat/*"}, faults: [{type: delay, duration: 1ms}]}
  - {name: b, match: {path: "/v1/embeddings"}, faults: [{type: delay, duration: 1ms}]}
  - {name: c, match: {path: "*/search"}, faults: [{type: delay, duration: 1ms}]}
  - {name: d, match: {path: "/v1/chat/completions", method: POST}, faults: [{type: delay, duration: 1ms}]}
phases:
  - name: one
    duration: 1h
    rules:
      - {name: e, match: {method: DELETE}, faults: [{type: delay, duration: 1ms}]}
      - {name: f, match: {path: "/collections/*/points"}, faults: [{type: delay, duration: 1ms}]}
"#,
        );
        assert_eq!(
            p.top_index.always,
            [2],
            "a glob opening with `*` is always checked"
        );
        let active = p.active(Instant::now());
        let headers = HeaderMap::new();
        let facts = RequestFacts::default();
        for method in [Method::GET, Method::POST, Method::DELETE] {
            for path in [
                "/",
                "/v1",
                "/v1/chat/",
                "/v1/chat/completions",
                "/v1/embeddings",
                "/v1/embeddingsX",
                "/x/search",
                "/collections/c/points",
                "/collections/c",
                "/v2/chat/completions",
            ] {
                let input = MatchInput {
                    listener: "l",
                    method: &method,
                    path,
                    headers: &headers,
                    facts: &facts,
                    client_ip: None,
                };
                let scan = active.rules.clone().any(|r| r.matches(&input, p.seed));
                assert_eq!(
                    p.any_rule_matches(active.phase, &input),
                    scan,
                    "{method} {path}"
                );
            }
        }
    }

    #[test]
    fn max_active_caps_concurrent_harm() {
        let st = RuleState::default();
        assert!(st.try_activate(Some(2)));
        assert!(st.try_activate(Some(2)));
        assert!(
            !st.try_activate(Some(2)),
            "third concurrent request is over the cap"
        );
        st.deactivate();
        assert!(
            st.try_activate(Some(2)),
            "a slot frees when an exchange ends"
        );
        assert!(st.try_activate(None));
    }

    #[test]
    fn health_probes_are_exempt_unless_a_rule_names_their_path() {
        let p = compile(
            r#"
version: 1
name: t
rules:
  - {name: broad, faults: [{type: error, status: 503}]}
  - {name: folder, match: {path: "/v2/health/*"}, faults: [{type: error, status: 503}]}
  - {name: named, match: {path: "/health*"}, faults: [{type: error, status: 503}]}
  - {name: ready, match: {path: "/v2/health/re*"}, faults: [{type: error, status: 503}]}
"#,
        );
        let headers = HeaderMap::new();
        let facts = RequestFacts::default();
        let hits = |method: &Method, path: &str| -> Vec<String> {
            let input = MatchInput {
                listener: "l",
                method,
                path,
                headers: &headers,
                facts: &facts,
                client_ip: None,
            };
            p.top
                .iter()
                .filter(|r| r.cond.matches(&input, 1))
                .map(|r| r.name.to_string())
                .collect()
        };
        // Traffic is faulted by the broad rule.
        assert_eq!(hits(&Method::POST, "/v1/chat/completions"), ["broad"]);
        assert_eq!(hits(&Method::GET, "/v1/models"), ["broad"]);
        // Probes only by a rule whose glob names them.
        for probe in [
            "/readyz",
            "/livez",
            "/ping",
            "/metrics",
            "/api/v2/heartbeat",
        ] {
            assert!(hits(&Method::GET, probe).is_empty(), "{probe}");
        }
        assert_eq!(hits(&Method::GET, "/health"), ["named"]);
        assert_eq!(hits(&Method::GET, "/healthz"), ["named"]);
        assert_eq!(hits(&Method::HEAD, "/health"), ["named"]);
        assert_eq!(hits(&Method::GET, "/v2/health/ready"), ["ready"]);
        assert!(hits(&Method::GET, "/v2/health/live").is_empty());
        // A POST to such a path is not a probe.
        assert_eq!(hits(&Method::POST, "/metrics"), ["broad"]);
        assert!(is_health_probe(&Method::GET, "/HEALTH"));
        assert!(!is_health_probe(&Method::GET, "/v1/chat/completions"));
    }

    #[test]
    fn matches_every_given_condition() {
        let p = compile(
            r#"
version: 1
name: t
rules:
  - name: r
    match:
      method: post
      path: "/v1/*/completions"
      headers: {x-team: "blue*"}
      model: "gpt-4o*"
      stream: true
    faults: [{type: delay, duration: 1ms}]
"#,
        );
        let rule = &p.top[0];
        assert!(p.needs_body);
        let mut headers = HeaderMap::new();
        headers.insert("x-team", "blue-7".parse().unwrap());
        let facts = RequestFacts {
            model: Some("gpt-4o-mini".into()),
            stream: Some(true),
            body_inspected: true,
            ..Default::default()
        };
        let input = MatchInput {
            listener: "l",
            method: &Method::POST,
            path: "/v1/chat/completions",
            headers: &headers,
            facts: &facts,
            client_ip: None,
        };
        assert!(rule.cond.matches(&input, 1));
        assert!(!rule.cond.matches(
            &MatchInput {
                method: &Method::GET,
                ..input
            },
            1
        ));
        assert!(!rule.cond.matches(
            &MatchInput {
                path: "/v1/embeddings",
                ..input
            },
            1
        ));
        let uninspected = RequestFacts {
            body_inspected: false,
            ..facts.clone()
        };
        assert!(
            !rule.cond.matches(
                &MatchInput {
                    facts: &uninspected,
                    ..input
                },
                1
            ),
            "body conditions need an inspected body"
        );
        let other_model = RequestFacts {
            model: Some("claude-3".into()),
            ..facts.clone()
        };
        assert!(!rule.cond.matches(
            &MatchInput {
                facts: &other_model,
                ..input
            },
            1
        ));
        let no_header = HeaderMap::new();
        assert!(!rule.cond.matches(
            &MatchInput {
                headers: &no_header,
                ..input
            },
            1
        ));
    }

    #[test]
    fn clients_percent_is_sticky_and_proportional() {
        let p = compile(
            r#"
version: 1
name: t
rules:
  - name: r
    match: {clients: {percent: 25, by: "header:authorization"}}
    faults: [{type: delay, duration: 1ms}]
"#,
        );
        let rule = &p.top[0];
        let facts = RequestFacts::default();
        let mut hit = 0;
        for i in 0..4000 {
            let mut h = HeaderMap::new();
            h.insert("authorization", format!("Bearer key-{i}").parse().unwrap());
            let input = MatchInput {
                listener: "l",
                method: &Method::POST,
                path: "/",
                headers: &h,
                facts: &facts,
                client_ip: None,
            };
            let first = rule.cond.matches(&input, 7);
            assert_eq!(
                first,
                rule.cond.matches(&input, 7),
                "the same client is always chosen the same way"
            );
            hit += usize::from(first);
        }
        assert!((850..1150).contains(&hit), "about 25% of clients: {hit}");
    }

    #[test]
    fn unchanged_rules_keep_state_across_recompiles() {
        let y1 = "version: 1\nname: t\nrules:\n  - name: a\n    faults: [{type: delay, duration: 1ms}]\n  - name: b\n    faults: [{type: delay, duration: 1ms}]\n";
        let y2 = "version: 1\nname: t\nrules:\n  - name: a\n    faults: [{type: delay, duration: 1ms}]\n  - name: b\n    faults: [{type: delay, duration: 2ms}]\n";
        let p1 = compile(y1);
        p1.top[0].state.ordinal.store(41, Ordering::Relaxed);
        p1.top[1].state.ordinal.store(7, Ordering::Relaxed);
        let prof2 = crate::validate::load_profile(y2, "t.yaml").unwrap();
        let p2 = CompiledProfile::compile(&prof2, 1, Some(&p1), Instant::now(), 0).unwrap();
        assert!(
            Arc::ptr_eq(&p1.top[0].state, &p2.top[0].state),
            "rule a unchanged: state carried over"
        );
        assert_eq!(p2.top[0].state.ordinal.load(Ordering::Relaxed), 41);
        assert!(
            !Arc::ptr_eq(&p1.top[1].state, &p2.top[1].state),
            "rule b changed: fresh state"
        );
        assert_eq!(p2.top[1].state.ordinal.load(Ordering::Relaxed), 0);
    }

    #[test]
    fn rate_limit_rules_get_buckets_and_read_the_body() {
        let p = compile(
            r#"
version: 1
name: t
rules:
  - name: quota
    faults:
      - {type: delay, duration: 1ms}
      - {type: rate_limit, requests_per_minute: 2, tokens_per_minute: 100}
"#,
        );
        assert!(p.needs_body, "tokens are charged from the body");
        let st = &p.top[0].state;
        assert!(matches!(st.fault(0), FaultState::Stateless));
        let FaultState::RateLimit(rl) = st.fault(1) else {
            panic!("a limiter")
        };
        assert_eq!(rl.requests_per_minute(), Some(2));
        assert_eq!(rl.tokens_per_minute(), Some(100));
    }

    #[test]
    fn header_faults_parse() {
        let (ok, bad) =
            parse_header_faults("error=openai.rate_limit_requests, delay=500ms, reset, nonsense=1");
        assert_eq!(ok.len(), 3);
        assert_eq!(ok[0].kind(), "error");
        assert_eq!(ok[1].kind(), "delay");
        assert_eq!(ok[2].kind(), "reset");
        assert_eq!(bad, vec!["nonsense=1".to_string()]);
        let (ok, _) = parse_header_faults("error=503");
        assert!(matches!(
            ok[0],
            FaultSpec::Error(crate::fault::Error {
                status: Some(503),
                ..
            })
        ));
    }

    #[test]
    fn vector_header_faults_parse_and_reject_bad_values() {
        let (ok, bad) = parse_header_faults(
            "drop_results=0.5, limit_results=3, shuffle_results, empty_results, score_noise=0.1, embedding_noise=0.02, embedding_truncate=256, drop_results=5, score_noise=-1, embedding_truncate=0, stale_results",
        );
        let kinds: Vec<&str> = ok.iter().map(FaultSpec::kind).collect();
        assert_eq!(
            kinds,
            [
                "drop_results",
                "limit_results",
                "shuffle_results",
                "empty_results",
                "score_noise",
                "embedding_noise",
                "embedding_truncate"
            ]
        );
        assert_eq!(
            bad,
            [
                "drop_results=5",
                "score_noise=-1",
                "embedding_truncate=0",
                "stale_results"
            ]
        );
    }

    fn decide_all(p: &CompiledProfile, call: &CallId, n: usize) -> Vec<&'static str> {
        let headers = HeaderMap::new();
        let facts = RequestFacts::default();
        let input = MatchInput {
            listener: "l",
            method: &Method::POST,
            path: "/v1/chat/completions",
            headers: &headers,
            facts: &facts,
            client_ip: None,
        };
        (0..n)
            .map(|_| {
                let active = p.active(Instant::now());
                let mut out = "skip";
                for rule in active.rules {
                    match rule.decide(&input, p.seed, active.at, call) {
                        RuleDecision::NoMatch | RuleDecision::Skip => {}
                        RuleDecision::Busy => out = "busy",
                        RuleDecision::Fire(_) => out = "fire",
                    }
                }
                out
            })
            .collect()
    }

    #[tokio::test(start_paused = true)]
    async fn scheduled_phase_rules_count_per_run_of_their_phase() {
        let p = compile(
            r#"
version: 1
name: t
rules:
  - {name: top, match: {path: /never}, schedule: {first: 1}, faults: [{type: reset}]}
phases:
  - name: one
    duration: 10s
    rules:
      - {name: once, schedule: {first: 1}, faults: [{type: reset}]}
  - name: two
    duration: 10s
"#,
        );
        let call = CallId::default();
        assert_eq!(decide_all(&p, &call, 3), ["fire", "skip", "skip"]);
        tokio::time::advance(Duration::from_secs(11)).await;
        assert_eq!(decide_all(&p, &call, 1), ["skip"], "phase two has no rule");
        // `ctl phase one`: a new run of the phase, a new count.
        p.clock.jump_to(0, Instant::now());
        assert_eq!(decide_all(&p, &call, 2), ["fire", "skip"]);
        // Applying the profile again (a reload, even unchanged) starts over too.
        let again = CompiledProfile::compile(&p.source, 1, Some(&p), Instant::now(), 0).unwrap();
        assert_eq!(decide_all(&again, &call, 2), ["fire", "skip"]);
    }

    #[test]
    fn a_scheduled_turn_at_the_cap_is_busy_and_used_up() {
        let p = compile(
            r#"
version: 1
name: t
rules:
  - {name: r, schedule: {first: 3}, max_active: 1, faults: [{type: reset}]}
"#,
        );
        let call = CallId::default();
        // Nothing ends, so the one slot stays taken.
        assert_eq!(
            decide_all(&p, &call, 5),
            ["fire", "busy", "busy", "skip", "skip"]
        );
        assert!(!p.counts_calls && !p.needs_body);
    }

    #[test]
    fn per_call_schedules_read_the_body_and_follow_the_retry_count() {
        let p = compile(
            r#"
version: 1
name: t
rules:
  - {name: r, schedule: {first: 2, per: call}, faults: [{type: reset}]}
"#,
        );
        assert!(
            p.counts_calls && p.needs_body,
            "the fingerprint needs the body"
        );
        for _ in 0..3 {
            let got: Vec<&str> = (0..3)
                .flat_map(|retry| {
                    let call = CallId {
                        retry: Some(retry),
                        fingerprint: Some(9),
                        ..Default::default()
                    };
                    decide_all(&p, &call, 1)
                })
                .collect();
            assert_eq!(got, ["fire", "fire", "skip"]);
            for _ in 0..2 {
                p.top[0].state.deactivate();
            }
        }
    }

    #[test]
    fn a_seq_retry_gets_its_own_draw() {
        let p = compile(
            r#"
version: 1
name: t
rules:
  - {name: coin, probability: 0.5, faults: [{type: reset}]}
"#,
        );
        let at = |seq, retry| CallId {
            seq: Some(seq),
            retry: Some(retry),
            fingerprint: None,
        };
        let first: Vec<&str> = (0..200)
            .flat_map(|s| decide_all(&p, &at(s, 0), 1))
            .collect();
        let pinned: Vec<&str> = (0..200)
            .flat_map(|s| {
                decide_all(
                    &p,
                    &CallId {
                        retry: None,
                        ..at(s, 0)
                    },
                    1,
                )
            })
            .collect();
        assert_eq!(
            first, pinned,
            "a first attempt decides as without the header"
        );
        let retry: Vec<&str> = (0..200)
            .flat_map(|s| decide_all(&p, &at(s, 1), 1))
            .collect();
        assert_ne!(first, retry, "retries draw afresh");
        let again = first
            .iter()
            .zip(&retry)
            .filter(|(a, b)| **a == "fire" && **b == "fire");
        let fired = first.iter().filter(|a| **a == "fire").count();
        let rate = again.count() as f64 / fired as f64;
        assert!((0.35..0.65).contains(&rate), "faulted again at {rate}");
    }
}
