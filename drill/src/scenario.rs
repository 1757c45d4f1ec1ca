//! Drill scenario files (docs/drills.md): what to run, against what, and what counts as
//! passing.
//!
//! Scenarios are loaded like profiles, through `brownout_faults::yaml`, so every
//! error carries `file:line:column` and a hint, and unknown keys are rejected.
//!
//! ```
//! use brownout_drill::scenario::load_scenario;
//! let src = "version: 1\nname: t\ntarget: {upstream: sim}\nprofile: p.yaml\n\
//!            workload: {name: chat, arival: {rate: 5/s}}\n";
//! let err = load_scenario(src, "s.yaml").unwrap_err();
//! assert_eq!((err[0].line, err[0].column), (5, 24));
//! ```

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use brownout_faults::duration::DurationStr;
use brownout_faults::yaml::{self, Diagnostic, Node, PathSeg};
use serde::{Deserialize, Deserializer, Serialize};

/// A whole scenario file.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Scenario {
    /// Format version; only `1` exists.
    pub version: u32,
    /// Names the drill in reports and JUnit.
    pub name: String,
    /// What the drill sends requests to.
    pub target: Target,
    /// The fault profile, relative to the scenario file.
    pub profile: PathBuf,
    /// One workload (or use `workloads`).
    #[serde(default)]
    pub workload: Option<WorkloadSpec>,
    /// Several workloads, run at once.
    #[serde(default)]
    pub workloads: Vec<WorkloadSpec>,
    /// The phase the others are compared with.
    #[serde(default)]
    pub baseline: Option<String>,
    /// Service-level objectives; broken ones fail the drill (exit 1).
    #[serde(default)]
    pub slo: Option<Slo>,
    /// Safety conditions that stop the drill (faults off, exit 3).
    #[serde(default)]
    pub stop_when: Option<StopWhen>,
    /// Where reports go.
    #[serde(default)]
    pub report: Option<ReportSpec>,
    /// Overrides the drill's length (otherwise the sum of the profile's phases).
    #[serde(default)]
    pub duration: Option<DurationStr>,
    /// Seed for arrivals, prompts and retry jitter.
    #[serde(default)]
    pub seed: Option<u64>,
    /// Pass even when a rule applied nothing or improbably little (otherwise the
    /// verdict is inconclusive, exit 4): for drills that test a rule which may
    /// rightly never fire.
    #[serde(default)]
    pub allow_idle_rules: bool,
    /// Prices: per GPU-hour and/or per token (`crate::cost`).
    #[serde(default)]
    pub cost: Option<crate::cost::CostSpec>,
    /// A power model and real power's source (`crate::cost`, `crate::energy`).
    #[serde(default)]
    pub energy: Option<crate::cost::EnergySpec>,
    /// `brownout capacity`: how to search for the highest load the objectives
    /// hold at (ignored by `brownout drill`).
    #[serde(default)]
    pub capacity: Option<CapacitySpec>,
}

/// What a capacity search varies.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Vary {
    /// Closed-loop users (each sends its next request when the last ends).
    #[default]
    Concurrency,
    /// Open-loop Poisson arrivals, in requests a second.
    Rate,
}

impl Vary {
    /// `concurrency` or `rate`, as the scenario spells it.
    pub fn name(self) -> &'static str {
        match self {
            Vary::Concurrency => "concurrency",
            Vary::Rate => "rate",
        }
    }
}

/// The `capacity:` block (docs/capacity.md): the search
/// doubles the first workload's load from `start` until a probe fails, then
/// bisects to `tolerance`, repeated under each phase of `under`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CapacitySpec {
    /// `concurrency` (closed loop, the default) or `rate` (open loop).
    #[serde(default)]
    pub vary: Vary,
    /// The first probe's load: users, or requests a second.
    pub start: f64,
    /// The highest load probed.
    pub max: f64,
    /// Bisect until the passing and failing loads are within this fraction.
    #[serde(default = "default_tolerance")]
    pub tolerance: f64,
    /// Each probe's measured time, after its warmup.
    #[serde(default = "default_probe")]
    pub probe: DurationStr,
    /// Load sent before a probe is measured (not judged).
    #[serde(default = "default_warmup")]
    pub warmup: DurationStr,
    /// How long an undecided probe may be extended (default 4 × `probe`).
    #[serde(default)]
    pub probe_max: Option<DurationStr>,
    /// Share of requests that must be good (the `slo.goodput` thresholds); the
    /// default is `slo.goodput.min`, else 0.99.
    #[serde(default)]
    pub attainment: Option<f64>,
    /// Phases of the profile whose faults are held on while probing; `baseline`
    /// (when the profile has no phase of that name) means no faults.
    #[serde(default = "default_under")]
    pub under: Vec<String>,
}

fn default_tolerance() -> f64 {
    0.1
}

fn default_probe() -> DurationStr {
    DurationStr(Duration::from_secs(20))
}

fn default_warmup() -> DurationStr {
    DurationStr(Duration::from_secs(5))
}

fn default_under() -> Vec<String> {
    vec!["baseline".to_owned()]
}

impl CapacitySpec {
    /// `probe_max`, or 4 × `probe`.
    pub fn probe_max(&self) -> Duration {
        self.probe_max.map_or(self.probe.0 * 4, |d| d.0)
    }

    /// `attainment`, else `goodput.min` of `slo`, else 0.99.
    pub fn attainment(&self, slo: Option<&Slo>) -> f64 {
        self.attainment
            .or_else(|| slo.and_then(|s| s.goodput.as_ref()).and_then(|g| g.min))
            .unwrap_or(0.99)
    }
}

/// The drill's target: a running proxy, or simulated upstreams plus an in-process proxy.
///
/// Written as `{url, admin, token_env}` or `{upstream: sim}`; the two forms are
/// checked to be exclusive after parsing.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Target {
    /// The proxy's data-plane URL, e.g. `http://127.0.0.1:8080`.
    #[serde(default)]
    pub url: Option<String>,
    /// The proxy's admin API URL, e.g. `http://127.0.0.1:9911`.
    #[serde(default)]
    pub admin: Option<String>,
    /// Environment variable holding the admin bearer token.
    #[serde(default)]
    pub token_env: Option<String>,
    /// `sim`: start simulated upstreams and a proxy in-process.
    #[serde(default)]
    pub upstream: Option<Upstream>,
    /// With `upstream: sim`: pace the simulated model with a GPU preset, as
    /// `brownout sim --gpu` does (`h100-80gb`, `a100-40gb`,
    /// `2xh100-80gb/llama-3.3-70b-fp8`, ...).
    #[serde(default)]
    pub gpu: Option<String>,
}

/// Simulated upstreams.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Upstream {
    /// brownout's own simulator (`brownout sim`).
    Sim,
}

/// The resolved target.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TargetKind {
    /// In-process simulator and proxy.
    Sim,
    /// A running proxy.
    Proxy {
        /// Data-plane URL.
        url: String,
        /// Admin API URL.
        admin: String,
        /// Environment variable with the admin token.
        token_env: Option<String>,
    },
}

impl Target {
    /// The target's form; valid only after [`load_scenario`] has accepted it.
    pub fn kind(&self) -> TargetKind {
        match (&self.upstream, &self.url, &self.admin) {
            (Some(Upstream::Sim), _, _) => TargetKind::Sim,
            (None, Some(url), Some(admin)) => TargetKind::Proxy {
                url: url.clone(),
                admin: admin.clone(),
                token_env: self.token_env.clone(),
            },
            _ => TargetKind::Sim,
        }
    }
}

/// Which API a workload speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Api {
    /// OpenAI-compatible.
    #[default]
    Openai,
    /// Anthropic messages.
    Anthropic,
    /// Qdrant vector search (`endpoint: search`).
    Qdrant,
    /// Chroma (v2) vector query (`endpoint: search`).
    Chroma,
}

impl Api {
    /// Whether the API is a vector database's.
    pub fn is_vector(self) -> bool {
        matches!(self, Api::Qdrant | Api::Chroma)
    }
}

/// Which endpoint a workload calls.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Endpoint {
    /// `/v1/chat/completions`.
    #[default]
    Chat,
    /// `/v1/completions`.
    Completion,
    /// `/v1/messages` (Anthropic).
    Messages,
    /// `/v1/embeddings`.
    Embeddings,
    /// Vector search: Qdrant `POST /collections/{c}/points/search`, Chroma
    /// `POST /api/v2/tenants/default_tenant/databases/default_database/collections/{id}/query`.
    Search,
}

impl Endpoint {
    /// The name a scenario file spells it with, which is also the name of a
    /// workload that has none of its own.
    pub fn name(self) -> &'static str {
        match self {
            Endpoint::Chat => "chat",
            Endpoint::Completion => "completion",
            Endpoint::Messages => "messages",
            Endpoint::Embeddings => "embeddings",
            Endpoint::Search => "search",
        }
    }

    /// The request path of a model endpoint (search paths depend on the collection:
    /// see [`WorkloadSpec::path`]).
    pub fn path(self) -> &'static str {
        match self {
            Endpoint::Chat => "/v1/chat/completions",
            Endpoint::Completion => "/v1/completions",
            Endpoint::Messages => "/v1/messages",
            Endpoint::Embeddings => "/v1/embeddings",
            Endpoint::Search => "/collections/docs/points/search",
        }
    }
}

pub use crate::client::CHROMA_DATABASE_PATH;

/// One stream of requests.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WorkloadSpec {
    /// Names the workload in reports; without one, a workload is named after its
    /// endpoint (`chat`, `embeddings`, ...), filled in by [`load_scenario`].
    #[serde(default)]
    pub name: String,
    /// `openai` (default) or `anthropic`.
    #[serde(default)]
    pub api: Api,
    /// `chat` (default), `completion`, `messages` or `embeddings`.
    #[serde(default)]
    pub endpoint: Endpoint,
    /// Model name in each request.
    #[serde(default = "default_model")]
    pub model: String,
    /// Ask for SSE streams.
    #[serde(default)]
    pub stream: bool,
    /// JSONL prompt file, relative to the scenario file; built-in prompts otherwise.
    #[serde(default)]
    pub prompts: Option<PathBuf>,
    /// `max_tokens` for each request.
    #[serde(default = "default_max_tokens")]
    pub max_tokens: u32,
    /// How requests arrive.
    pub arrival: Arrival,
    /// How the client behaves.
    #[serde(default)]
    pub client: ClientSpec,
    /// Search workloads: the collection queried (the simulated databases start with
    /// `docs`). For Chroma a name is looked up once to find the collection's id.
    #[serde(default = "default_collection")]
    pub collection: String,
    /// Search workloads: how many results each query asks for (the `k` of recall@k).
    #[serde(default = "default_top_k")]
    pub top_k: u32,
    /// Search workloads without a prompt file: the dimension of the built-in query
    /// vectors (the simulated databases use 64).
    #[serde(default = "default_dims")]
    pub dims: u32,
}

fn default_collection() -> String {
    "docs".to_owned()
}

fn default_top_k() -> u32 {
    10
}

fn default_dims() -> u32 {
    64
}

impl WorkloadSpec {
    /// The request path: the endpoint's, or the collection's search path.
    pub fn path(&self) -> String {
        self.path_for(&self.collection)
    }

    /// The request path with `collection` (a Chroma collection id once resolved).
    pub fn path_for(&self, collection: &str) -> String {
        match (self.endpoint, self.api) {
            (Endpoint::Search, Api::Chroma) => {
                format!("{CHROMA_DATABASE_PATH}/collections/{collection}/query")
            }
            (Endpoint::Search, _) => format!("/collections/{collection}/points/search"),
            (e, _) => e.path().to_owned(),
        }
    }
}

fn default_model() -> String {
    "gpt-4o-mini".to_owned()
}

fn default_max_tokens() -> u32 {
    32
}

/// `{rate: 20/s}` (open loop, Poisson) or `{concurrency: 16}` (closed loop).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Arrival {
    /// Mean arrival rate.
    #[serde(default)]
    pub rate: Option<Rate>,
    /// Number of closed-loop users, each sending its next request when the last ends.
    #[serde(default)]
    pub concurrency: Option<u32>,
}

/// The resolved arrival process.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum ArrivalKind {
    /// Open-loop Poisson at this many requests a second.
    Rate(f64),
    /// Closed loop with this many users.
    Concurrency(u32),
}

impl ArrivalKind {
    /// The mean open-loop rate; 0 for closed loop, which sets no rate.
    pub fn rate_per_sec(self) -> f64 {
        match self {
            ArrivalKind::Rate(r) => r,
            ArrivalKind::Concurrency(_) => 0.0,
        }
    }
}

impl Arrival {
    /// The arrival's form; valid only after [`load_scenario`] has accepted it.
    pub fn kind(&self) -> ArrivalKind {
        match (self.rate, self.concurrency) {
            (Some(r), _) => ArrivalKind::Rate(r.0),
            (None, Some(c)) => ArrivalKind::Concurrency(c),
            (None, None) => ArrivalKind::Concurrency(1),
        }
    }
}

/// A request rate written `20/s`, `600/m` or `2.5/s`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Rate(pub f64);

const RATE_HINT: &str = "write a rate as requests per unit, e.g. 20/s, 600/m or 0.5/s";

/// Parse `20/s`, `600/m`, `3600/h` (a bare number means per second).
pub fn parse_rate(s: &str) -> Result<f64, String> {
    let s = s.trim();
    let (num, unit) = s.split_once('/').unwrap_or((s, "s"));
    let n: f64 = num
        .trim()
        .parse()
        .map_err(|_| format!("invalid rate `{s}`"))?;
    let per = match unit.trim() {
        "s" | "sec" => 1.0,
        "m" | "min" => 60.0,
        "h" => 3600.0,
        other => return Err(format!("invalid rate unit `{other}` in `{s}`")),
    };
    let r = n / per;
    if !(r.is_finite() && r > 0.0) {
        return Err(format!("the rate must be positive, got `{s}`"));
    }
    Ok(r)
}

impl<'de> Deserialize<'de> for Rate {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        parse_rate(&s).map(Rate).map_err(|m| {
            serde::de::Error::custom(format!("{m}{}{RATE_HINT}", yaml::HINT_SEPARATOR))
        })
    }
}

impl fmt::Display for Rate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/s", self.0)
    }
}

/// How the drill's client behaves (like the official SDKs).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClientSpec {
    /// The SDK whose retry rules the client follows (`openai-python` by default,
    /// or `anthropic-python`): see [`crate::retry`].
    #[serde(default)]
    pub sdk: crate::retry::Sdk,
    /// Retries after the first attempt (the SDKs default to 2).
    #[serde(default = "default_retries")]
    pub retries: u32,
    /// Per-attempt timeout.
    #[serde(default = "default_timeout")]
    pub timeout: DurationStr,
    /// Read `retry-after-ms`/`retry-after` as the SDK does; `false` runs the SDK's
    /// rules as if the server had sent neither.
    #[serde(default = "default_true")]
    pub honor_retry_after: bool,
    /// Connections open at once (the openai SDK's default is 1000); requests
    /// beyond wait for a free one, and the wait counts in their latency.
    #[serde(default = "default_max_connections")]
    pub max_connections: u32,
    /// Simulated users the requests come from, each with a key of its own, so that
    /// `clients: {percent}` rules and per-key rate limits see a population rather
    /// than one client.
    #[serde(default = "default_users")]
    pub users: u32,
    /// The environment variable holding a real API key: every user then sends it,
    /// and users are told apart by `x-brownout-client` instead of fake keys.
    #[serde(default)]
    pub api_key_env: Option<String>,
}

fn default_max_connections() -> u32 {
    crate::client::DEFAULT_MAX_CONNECTIONS as u32
}

fn default_users() -> u32 {
    100
}

fn default_retries() -> u32 {
    2
}

fn default_timeout() -> DurationStr {
    DurationStr(Duration::from_secs(30))
}

fn default_true() -> bool {
    true
}

impl Default for ClientSpec {
    fn default() -> Self {
        Self {
            sdk: crate::retry::Sdk::default(),
            retries: default_retries(),
            timeout: default_timeout(),
            honor_retry_after: true,
            max_connections: default_max_connections(),
            users: default_users(),
            api_key_env: None,
        }
    }
}

/// Objectives, over the whole drill and per phase.
#[derive(Debug, Clone, PartialEq, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Slo {
    /// p95 time to first token.
    #[serde(default)]
    pub ttft_p95: Option<DurationStr>,
    /// p99 end-to-end latency.
    #[serde(default)]
    pub e2e_p99: Option<DurationStr>,
    /// Highest acceptable error rate (0..1).
    #[serde(default)]
    pub error_rate: Option<f64>,
    /// Lowest acceptable goodput and what counts as good.
    #[serde(default)]
    pub goodput: Option<Goodput>,
    /// Lowest acceptable answer match rate against the baseline (0..1).
    #[serde(default)]
    pub answer_match: Option<f64>,
    /// Lowest acceptable recall@k for search workloads (0..1).
    #[serde(default)]
    pub recall_at_k: Option<f64>,
    /// Per-phase overrides.
    #[serde(default)]
    pub phases: BTreeMap<String, PhaseSlo>,
}

/// A phase's objectives, overriding the drill-wide ones.
#[derive(Debug, Clone, PartialEq, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PhaseSlo {
    /// p95 time to first token.
    #[serde(default)]
    pub ttft_p95: Option<DurationStr>,
    /// p99 end-to-end latency.
    #[serde(default)]
    pub e2e_p99: Option<DurationStr>,
    /// Highest acceptable error rate (0..1).
    #[serde(default)]
    pub error_rate: Option<f64>,
    /// Lowest acceptable goodput and what counts as good.
    #[serde(default)]
    pub goodput: Option<Goodput>,
    /// Lowest acceptable answer match rate.
    #[serde(default)]
    pub answer_match: Option<f64>,
    /// Lowest acceptable recall@k.
    #[serde(default)]
    pub recall_at_k: Option<f64>,
}

impl Slo {
    /// The objectives for `phase`: the phase's overrides over the drill-wide ones.
    pub fn for_phase(&self, phase: &str) -> PhaseSlo {
        let base = self.overall();
        match self.phases.get(phase) {
            None => base,
            Some(p) => PhaseSlo {
                ttft_p95: p.ttft_p95.or(base.ttft_p95),
                e2e_p99: p.e2e_p99.or(base.e2e_p99),
                error_rate: p.error_rate.or(base.error_rate),
                goodput: p.goodput.clone().or(base.goodput),
                answer_match: p.answer_match.or(base.answer_match),
                recall_at_k: p.recall_at_k.or(base.recall_at_k),
            },
        }
    }

    /// The drill-wide objectives.
    pub fn overall(&self) -> PhaseSlo {
        PhaseSlo {
            ttft_p95: self.ttft_p95,
            e2e_p99: self.e2e_p99,
            error_rate: self.error_rate,
            goodput: self.goodput.clone(),
            answer_match: self.answer_match,
            recall_at_k: self.recall_at_k,
        }
    }
}

/// Goodput: the share of requests that succeeded within every threshold given.
#[derive(Debug, Clone, PartialEq, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Goodput {
    /// Lowest acceptable goodput (0..1).
    #[serde(default)]
    pub min: Option<f64>,
    /// Good requests have a TTFT at most this.
    #[serde(default)]
    pub ttft: Option<DurationStr>,
    /// Good requests have a TPOT at most this.
    #[serde(default)]
    pub tpot: Option<DurationStr>,
    /// Good requests finish within this.
    #[serde(default)]
    pub e2e: Option<DurationStr>,
}

/// Conditions that end a drill early.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StopWhen {
    /// Stop when the error rate stays above a level for a while.
    #[serde(default)]
    pub error_rate: Option<Sustained>,
}

/// A level held for a time.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Sustained {
    /// The level (0..1).
    pub above: f64,
    /// How long it must hold.
    #[serde(rename = "for")]
    pub for_: DurationStr,
}

/// Where reports go.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReportSpec {
    /// Output directory, relative to the current directory.
    pub dir: PathBuf,
}

impl Scenario {
    /// The workloads, whichever way they were written.
    pub fn all_workloads(&self) -> Vec<&WorkloadSpec> {
        self.workload.iter().chain(self.workloads.iter()).collect()
    }

    /// Paths in the scenario resolved against the scenario file's directory.
    pub fn resolve(&self, scenario_file: &Path, p: &Path) -> PathBuf {
        if p.is_absolute() {
            return p.to_path_buf();
        }
        scenario_file
            .parent()
            .map(|d| d.join(p))
            .unwrap_or_else(|| p.to_path_buf())
    }
}

/// Parse and check a scenario: syntax, types and unknown keys, then the rules that
/// span fields (one target form, one arrival form, workloads present and uniquely
/// named, rates between 0 and 1). Every problem comes with its position.
pub fn load_scenario(src: &str, file: &str) -> Result<Scenario, Vec<Diagnostic>> {
    let c = check_scenario(src, file);
    match c.read.and_then(|r| r.value) {
        Some(s) if c.diagnostics.is_empty() => Ok(s),
        _ => Err(c.diagnostics),
    }
}

/// What [`check_scenario`] found.
#[derive(Debug, Clone)]
pub struct ScenarioCheck {
    /// Every problem in the file, sorted by position.
    pub diagnostics: Vec<Diagnostic>,
    /// What could be read; `None` after a syntax error. A value that had the wrong
    /// type is a stand-in here, so checks beyond the file (the profile, prompt
    /// files) ask [`ScenarioCheck::trusted`] before following it.
    pub read: Option<yaml::Recovered<Scenario>>,
}

impl ScenarioCheck {
    /// The scenario as read, stand-ins included.
    pub fn scenario(&self) -> Option<&Scenario> {
        self.read.as_ref()?.value.as_ref()
    }

    /// Whether the value at `path` is what the file says (no type error there).
    pub fn trusted(&self, path: &[PathSeg<'_>]) -> bool {
        self.read.as_ref().is_some_and(|r| !r.touched(path))
    }

    /// Whether a later check's complaint about the scenario is a follow-on of a
    /// type error already reported.
    pub fn follows_from_repair(&self, d: &Diagnostic) -> bool {
        self.read.as_ref().is_some_and(|r| r.follows_from_repair(d))
    }

    /// Where the value at `path` is written, for diagnostics about what it names.
    pub fn node(&self, path: &[PathSeg<'_>]) -> Option<&Node> {
        self.read.as_ref()?.tree.at_path(path)
    }
}

/// Check a scenario, finding every problem in it at once: syntax, duplicate keys,
/// every type error and unknown key (each worked around so the rest is still
/// read), then the rules of [`load_scenario`] on what was read.
pub fn check_scenario(src: &str, file: &str) -> ScenarioCheck {
    let (tree, mut diags) = match yaml::parse_tree_lenient(src, file) {
        Ok(t) => t,
        Err(d) => {
            return ScenarioCheck {
                diagnostics: vec![d],
                read: None,
            }
        }
    };
    let mut read = yaml::recover::<Scenario>(&tree, file, Some(&scenario_range));
    diags.extend(read.diagnostics());
    if let Some(s) = read.value.as_mut() {
        default_workload_names(s, &read.tree);
        let priced = crate::cost::check(s.cost.as_ref(), s.energy.as_ref(), &read.tree, file);
        diags.extend(
            check(s, &read.tree, file)
                .into_iter()
                .chain(priced)
                .filter(|d| !read.follows_from_repair(d)),
        );
    }
    diags.sort_by_key(|d| (d.line, d.column));
    ScenarioCheck {
        diagnostics: diags,
        read: Some(read),
    }
}

/// The allowed range of a scenario's number fields, in the words of [`check`], so
/// that `users: -1` and `users: 0` are refused alike.
fn scenario_range(path: &[yaml::Step], _tree: &Node) -> Option<yaml::FieldRange> {
    use yaml::FieldRange;
    let (last, parent) = path.split_last()?;
    let parent = parent.last().and_then(yaml::Step::key);
    Some(match (parent, last.key()?) {
        (Some("arrival"), "concurrency") => {
            FieldRange::at_least("at least 1").hint(CONCURRENCY_HINT)
        }
        (Some("client"), "max_connections") => {
            FieldRange::at_least("at least 1").hint(MAX_CONNECTIONS_HINT)
        }
        (Some("client"), "users") => FieldRange::at_least("at least 1").hint(USERS_HINT),
        (_, "top_k") => FieldRange::between("between 1 and 1000").hint(TOP_K_HINT),
        (_, "dims") => FieldRange::between("between 1 and 8192").hint(DIMS_HINT),
        (_, "error_rate" | "answer_match" | "recall_at_k") | (Some("goodput"), "min") => {
            FieldRange::between("between 0 and 1").hint(FRACTION_HINT)
        }
        (Some("error_rate"), "above") => FieldRange::between("between 0 and 1").hint(FRACTION_HINT),
        _ => return None,
    })
}

const USERS_HINT: &str = "the default is 100 simulated users";
const CONCURRENCY_HINT: &str =
    "it is how many closed-loop users send at once, e.g. `{concurrency: 16}`";
const MAX_CONNECTIONS_HINT: &str =
    "it caps the connections open at once (the openai SDK's default is 1000)";
const TOP_K_HINT: &str = "it is how many results each query asks for, e.g. `top_k: 10`";
const DIMS_HINT: &str = "the simulated databases use 64-dimensional vectors";
const FRACTION_HINT: &str = "write 2% as 0.02";

/// Where workload `i` of [`Scenario::all_workloads`] is in the file: `workload`,
/// or `workloads[i]`.
pub fn workload_path(s: &Scenario, i: usize) -> Vec<PathSeg<'static>> {
    match (s.workload.is_some(), i) {
        (true, 0) => vec![PathSeg::Key("workload")],
        // Both forms given (an error of its own): the list follows the single one.
        (true, i) => vec![PathSeg::Key("workloads"), PathSeg::Index(i - 1)],
        (false, i) => vec![PathSeg::Key("workloads"), PathSeg::Index(i)],
    }
}

/// Whether workload `i` was given a `name` in the file.
fn named_in_file(s: &Scenario, tree: &Node, i: usize) -> bool {
    let mut path = workload_path(s, i);
    path.push(PathSeg::Key("name"));
    tree.at_path(&path).is_some()
}

/// Name each workload that has no `name` after its endpoint: a scenario with one
/// workload rarely needs a name for it, and reports still need one. Two workloads
/// left to the same default are refused by [`check`] (which says why) rather than
/// numbered, so that a name never depends on the order of the list.
fn default_workload_names(s: &mut Scenario, tree: &Node) {
    let unnamed: Vec<bool> = (0..s.all_workloads().len())
        .map(|i| !named_in_file(s, tree, i))
        .collect();
    let list = s.workload.iter_mut().chain(s.workloads.iter_mut());
    for (w, unnamed) in list.zip(unnamed) {
        if unnamed {
            w.name = w.endpoint.name().to_owned();
        }
    }
}

/// Load a scenario file.
pub fn load_scenario_file(path: &Path) -> Result<Scenario, Vec<Diagnostic>> {
    let (src, file) = yaml::read_file(path, "scenario").map_err(|d| vec![d])?;
    load_scenario(&src, &file)
}

/// Read a prompt file: one JSON object per line with `messages` (a chat message
/// list) or `prompt` (a string), and optionally `expect` (checks on the answer,
/// see [`crate::correct::Expect`]);
/// blank lines are skipped. Errors name the file and line.
pub fn load_prompts(text: &str, file: &str) -> Result<Vec<serde_json::Value>, Diagnostic> {
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let diag = |column: usize, message: String| {
            Diagnostic {
            file: file.to_owned(),
            line: i + 1,
            column,
            message,
            hint: Some(
                "each line is a JSON object like {\"messages\": [{\"role\": \"user\", \"content\": \"...\"}]} or {\"prompt\": \"...\"}"
                    .into(),
            ),
        }
        };
        let v: serde_json::Value = serde_json::from_str(line)
            .map_err(|e| diag(e.column(), format!("invalid JSON: {e}")))?;
        let ok = v["prompt"].is_string()
            || v["messages"]
                .as_array()
                .is_some_and(|m| !m.is_empty() && m.iter().all(|m| m["content"].is_string()))
            || v["vector"]
                .as_array()
                .is_some_and(|x| !x.is_empty() && x.iter().all(serde_json::Value::is_number));
        if !ok {
            return Err(diag(
                1,
                "expected `messages` (a non-empty list of {role, content}), `prompt` (a string) \
                 or, for search workloads, `vector` (a non-empty list of numbers)"
                    .into(),
            ));
        }
        crate::correct::Expect::from_line(&v).map_err(|m| diag(1, m))?;
        if !v["sim_answer"].is_null() && !v["sim_answer"].is_string() {
            return Err(diag(
                1,
                "`sim_answer` must be a string: what the simulator answers this prompt with".into(),
            ));
        }
        out.push(v);
    }
    if out.is_empty() {
        return Err(Diagnostic {
            file: file.to_owned(),
            line: 0,
            column: 0,
            message: "the prompt file has no prompts".into(),
            hint: None,
        });
    }
    Ok(out)
}

/// True when a YAML text looks like a scenario rather than a profile or config.
pub fn looks_like_scenario(text: &str) -> bool {
    text.lines().any(|l| {
        l.starts_with("target:") || l.starts_with("workload:") || l.starts_with("workloads:")
    })
}

fn check(s: &Scenario, tree: &Node, file: &str) -> Vec<Diagnostic> {
    let mut out = Vec::new();
    let mut at = |path: &[PathSeg<'_>], msg: String, hint: Option<&str>| {
        out.push(Diagnostic::at(
            file,
            tree.nearest(path),
            msg,
            hint.map(str::to_owned),
        ));
    };
    use PathSeg::{Index, Key};
    if s.version != 1 {
        at(
            &[Key("version")],
            format!("unsupported scenario version {}", s.version),
            Some("the only version is 1"),
        );
    }
    let t = &s.target;
    let proxy_keys = t.url.is_some() || t.admin.is_some() || t.token_env.is_some();
    if t.gpu.is_some() && t.upstream.is_none() {
        at(
            &[Key("target"), Key("gpu")],
            "`gpu` paces the simulated upstream; it needs `upstream: sim`".into(),
            Some("a running proxy's GPU model is set by the profile's `gpu_saturation` fault"),
        );
    }
    if t.upstream.is_some() && proxy_keys {
        at(
            &[Key("target")],
            "`target` is either `{upstream: sim}` or `{url, admin, token_env}`, not both".into(),
            Some("remove `upstream` to drive a running proxy"),
        );
    } else if t.upstream.is_none() {
        if t.url.is_none() || t.admin.is_none() {
            at(
                &[Key("target")],
                "a running-proxy target needs both `url` and `admin`".into(),
                Some("e.g. {url: http://127.0.0.1:8080, admin: http://127.0.0.1:9911}, or {upstream: sim}"),
            );
        }
        for (k, v) in [("url", &t.url), ("admin", &t.admin)] {
            if let Some(v) = v {
                if !v.starts_with("http://") {
                    at(
                        &[Key("target"), Key(k)],
                        format!("`{k}` must be an http:// URL, got `{v}`"),
                        Some("e.g. http://127.0.0.1:8080 (the proxy does not serve TLS to drills)"),
                    );
                }
            }
        }
    }
    let (key, list): (&str, Vec<&WorkloadSpec>) = if s.workload.is_some() {
        ("workload", s.workload.iter().collect())
    } else {
        ("workloads", s.workloads.iter().collect())
    };
    if s.workload.is_some() && !s.workloads.is_empty() {
        at(
            &[Key("workloads")],
            "use either `workload` or `workloads`, not both".into(),
            Some("move the single workload into the `workloads` list"),
        );
    }
    if list.is_empty() {
        at(
            &[],
            "the scenario has no workload".into(),
            Some("add `workload: {name: chat, arrival: {rate: 10/s}}`"),
        );
    }
    for (i, w) in list.iter().enumerate() {
        let base: Vec<PathSeg<'_>> = if key == "workload" {
            vec![Key("workload")]
        } else {
            vec![Key("workloads"), Index(i)]
        };
        let p = |extra: &[PathSeg<'static>]| {
            let mut v = base.clone();
            v.extend_from_slice(extra);
            v
        };
        if let Some(j) = list[..i].iter().position(|o| o.name == w.name) {
            let (first, this) = (named_in_file(s, tree, j), named_in_file(s, tree, i));
            if first && this {
                at(
                    &p(&[Key("name")]),
                    format!("workload name `{}` is used twice", w.name),
                    Some("reports and SLOs tell workloads apart by name; give each its own"),
                );
            } else {
                // At least one of them took its endpoint's name.
                at(
                    &p(&[if this { Key("name") } else { Key("endpoint") }]),
                    format!(
                        "two workloads are named `{}`: a workload without a `name` is named after its endpoint",
                        w.name
                    ),
                    Some("give each workload its own `name`, e.g. `name: chat-fast`"),
                );
            }
        }
        match (w.arrival.rate, w.arrival.concurrency) {
            (Some(_), Some(_)) | (None, None) => at(
                &p(&[Key("arrival")]),
                "`arrival` needs exactly one of `rate` and `concurrency`".into(),
                Some("e.g. {rate: 20/s} (open loop) or {concurrency: 16} (closed loop)"),
            ),
            (None, Some(0)) => at(
                &p(&[Key("arrival"), Key("concurrency")]),
                "`concurrency` must be at least 1".into(),
                Some(CONCURRENCY_HINT),
            ),
            _ => {}
        }
        if w.client.max_connections == 0 {
            at(
                &p(&[Key("client"), Key("max_connections")]),
                "`max_connections` must be at least 1".into(),
                Some(MAX_CONNECTIONS_HINT),
            );
        }
        if w.client.users == 0 {
            at(
                &p(&[Key("client"), Key("users")]),
                "`users` must be at least 1, not 0".into(),
                Some(USERS_HINT),
            );
        }
        if w.client.api_key_env.as_deref().is_some_and(str::is_empty) {
            at(
                &p(&[Key("client"), Key("api_key_env")]),
                "`api_key_env` names an environment variable and cannot be empty".into(),
                Some("e.g. `api_key_env: OPENAI_API_KEY`, or remove it to send fake keys"),
            );
        }
        if w.client.timeout.0.is_zero() {
            at(
                &p(&[Key("client"), Key("timeout")]),
                "the client timeout must be positive".into(),
                Some("a per-attempt timeout such as `timeout: 30s` (the SDKs' default is 600s)"),
            );
        }
        let fits = match w.api {
            Api::Anthropic => w.endpoint == Endpoint::Messages,
            Api::Qdrant | Api::Chroma => w.endpoint == Endpoint::Search,
            Api::Openai => !matches!(w.endpoint, Endpoint::Messages | Endpoint::Search),
        };
        if !fits {
            at(
                &p(&[Key("endpoint")]),
                format!(
                    "endpoint `{:?}` does not belong to api `{:?}`",
                    w.endpoint, w.api
                )
                .to_lowercase(),
                Some("anthropic uses `messages`; qdrant and chroma use `search`; openai uses chat, completion or embeddings"),
            );
        }
        if w.stream && matches!(w.endpoint, Endpoint::Embeddings | Endpoint::Search) {
            at(
                &p(&[Key("stream")]),
                format!("{:?} requests cannot stream", w.endpoint).to_lowercase(),
                Some("remove `stream: true` from this workload"),
            );
        }
        if w.endpoint == Endpoint::Search && !(1..=1000).contains(&w.top_k) {
            at(
                &p(&[Key("top_k")]),
                format!("`top_k` must be between 1 and 1000, not {}", w.top_k),
                Some(TOP_K_HINT),
            );
        }
        if w.endpoint == Endpoint::Search && !(1..=8192).contains(&w.dims) {
            at(
                &p(&[Key("dims")]),
                format!("`dims` must be between 1 and 8192, not {}", w.dims),
                Some(DIMS_HINT),
            );
        }
        if w.collection.is_empty() || w.collection.contains(['/', '?', '#', ' ']) {
            at(
                &p(&[Key("collection")]),
                format!("`collection` `{}` is not a usable name", w.collection),
                Some("a collection name without slashes, spaces, `?` or `#`"),
            );
        }
    }
    let mut fraction = |path: &[PathSeg<'_>], v: Option<f64>| {
        if let Some(v) = v {
            if !(0.0..=1.0).contains(&v) {
                let key = match path.last() {
                    Some(Key(k)) => *k,
                    _ => "the fraction",
                };
                at(
                    path,
                    format!("`{key}` must be between 0 and 1, not {v}"),
                    Some(FRACTION_HINT),
                );
            }
        }
    };
    if let Some(slo) = &s.slo {
        fraction(&[Key("slo"), Key("error_rate")], slo.error_rate);
        fraction(&[Key("slo"), Key("answer_match")], slo.answer_match);
        fraction(&[Key("slo"), Key("recall_at_k")], slo.recall_at_k);
        if let Some(g) = &slo.goodput {
            fraction(&[Key("slo"), Key("goodput"), Key("min")], g.min);
        }
        for (name, p) in &slo.phases {
            for (k, v) in [
                ("error_rate", p.error_rate),
                ("answer_match", p.answer_match),
                ("recall_at_k", p.recall_at_k),
            ] {
                fraction(&[Key("slo"), Key("phases"), Key(name), Key(k)], v);
            }
            if let Some(g) = &p.goodput {
                fraction(
                    &[
                        Key("slo"),
                        Key("phases"),
                        Key(name),
                        Key("goodput"),
                        Key("min"),
                    ],
                    g.min,
                );
            }
        }
    }
    if let Some(sw) = &s.stop_when {
        if let Some(e) = &sw.error_rate {
            fraction(
                &[Key("stop_when"), Key("error_rate"), Key("above")],
                Some(e.above),
            );
        }
    }
    if let Some(c) = &s.capacity {
        check_capacity(c, &mut at);
    }
    if let Some(d) = s.duration {
        if d.0.is_zero() {
            at(
                &[Key("duration")],
                "`duration` must be positive".into(),
                Some("e.g. `duration: 2m`, or remove it to run the profile's phases in full"),
            );
        }
    }
    out.sort_by_key(|d| (d.line, d.column));
    out
}

/// The `capacity:` block's own rules: loads positive and ordered, whole users for
/// `vary: concurrency`, fractions in range, times positive.
fn check_capacity(c: &CapacitySpec, at: &mut impl FnMut(&[PathSeg<'_>], String, Option<&str>)) {
    use PathSeg::Key;
    let key = |k: &'static str| [Key("capacity"), Key(k)];
    let unit = match c.vary {
        Vary::Concurrency => "users",
        Vary::Rate => "requests a second",
    };
    for (k, v) in [("start", c.start), ("max", c.max)] {
        if !(v.is_finite() && v > 0.0) {
            at(
                &key(k),
                format!("`capacity.{k}` must be a positive number of {unit}, not {v}"),
                Some("e.g. `start: 8` and `max: 1024`"),
            );
        } else if c.vary == Vary::Concurrency && v.fract() != 0.0 {
            at(
                &key(k),
                format!("`capacity.{k}` counts closed-loop users and must be whole, not {v}"),
                Some("use `vary: rate` to search over requests a second"),
            );
        }
    }
    if c.max < c.start {
        at(
            &key("max"),
            format!(
                "`capacity.max` ({}) is below `capacity.start` ({}): there is nothing to search",
                c.max, c.start
            ),
            Some("raise `max`, or lower `start`; with `max` equal to `start` one load is probed"),
        );
    }
    if !(c.tolerance > 0.0 && c.tolerance < 1.0) {
        at(
            &key("tolerance"),
            format!(
                "`capacity.tolerance` must be between 0 and 1 (exclusive), not {}",
                c.tolerance
            ),
            Some("0.1 bisects until the passing and failing loads are within 10%"),
        );
    }
    if let Some(a) = c.attainment {
        if !(a > 0.0 && a <= 1.0) {
            at(
                &key("attainment"),
                format!("`capacity.attainment` must be above 0 and at most 1, not {a}"),
                Some("the share of requests that must be good, e.g. 0.99"),
            );
        }
    }
    if c.probe.0.is_zero() {
        at(
            &key("probe"),
            "`capacity.probe` must be positive".into(),
            Some("each probe's measured time, e.g. `probe: 20s`"),
        );
    }
    if c.probe_max.is_some_and(|m| m.0 < c.probe.0) {
        at(
            &key("probe_max"),
            "`capacity.probe_max` is shorter than `capacity.probe`".into(),
            Some("an undecided probe is extended up to `probe_max`; it defaults to 4 × `probe`"),
        );
    }
    if c.under.is_empty() {
        at(
            &key("under"),
            "`capacity.under` names no phase".into(),
            Some("e.g. `under: [baseline, brownout]`"),
        );
    }
    for (i, name) in c.under.iter().enumerate() {
        if c.under[..i].contains(name) {
            at(
                &[Key("capacity"), Key("under"), PathSeg::Index(i)],
                format!("`capacity.under` names `{name}` twice"),
                Some("each phase is searched once"),
            );
        }
    }
}

/// Check names that need the profile: the baseline and per-phase SLOs must name
/// phases of the profile.
pub fn check_against_profile(
    s: &Scenario,
    src: &str,
    file: &str,
    phases: &[String],
) -> Vec<Diagnostic> {
    let Ok((tree, _)) = yaml::parse_tree_lenient(src, file) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    let known = phases.iter().map(String::as_str).collect::<Vec<_>>();
    let hint = |n: &str| {
        yaml::closest(n, &known)
            .map(|c| format!("did you mean `{c}`?"))
            .or_else(|| Some(format!("the profile's phases are: {}", known.join(", "))))
    };
    if let Some(b) = &s.baseline {
        if !phases.contains(b) {
            out.push(Diagnostic::at(
                file,
                tree.nearest(&[PathSeg::Key("baseline")]),
                format!("baseline `{b}` is not a phase of the profile"),
                hint(b),
            ));
        }
    }
    if let Some(c) = &s.capacity {
        for (i, name) in c.under.iter().enumerate() {
            // `baseline` without a phase of that name means "no faults".
            if !phases.contains(name) && name != "baseline" {
                let path = [
                    PathSeg::Key("capacity"),
                    PathSeg::Key("under"),
                    PathSeg::Index(i),
                ];
                out.push(Diagnostic::at(
                    file,
                    tree.nearest(&path),
                    format!(
                        "`capacity.under` names `{name}`, which is not a phase of the profile (its phases: {})",
                        if known.is_empty() { "none".to_owned() } else { known.join(", ") }
                    ),
                    yaml::closest(name, &known)
                        .map(|c| format!("did you mean `{c}`? (`baseline` means no faults)"))
                        .or_else(|| Some("name phases of the profile, or `baseline` for no faults".to_owned())),
                ));
            }
        }
    }
    if let Some(slo) = &s.slo {
        for name in slo.phases.keys() {
            if !phases.contains(name) {
                let node = tree
                    .at_path(&[PathSeg::Key("slo"), PathSeg::Key("phases")])
                    .and_then(|n| n.key(name))
                    .unwrap_or(&tree);
                out.push(Diagnostic::at(
                    file,
                    node,
                    format!("`slo.phases.{name}` names no phase of the profile"),
                    hint(name),
                ));
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const OK: &str = "\
version: 1
name: chat-gameday
target:
  url: http://127.0.0.1:8080
  admin: http://127.0.0.1:9911
  token_env: BROWNOUT_ADMIN_TOKEN
profile: ../profiles/openai-429-storm.yaml
workload:
  name: chat
  api: openai
  endpoint: chat
  model: gpt-4o-mini
  stream: true
  prompts: prompts.jsonl
  arrival: {rate: 20/s}
  client: {retries: 2, timeout: 30s, honor_retry_after: true}
baseline: baseline
slo:
  ttft_p95: 1s
  e2e_p99: 10s
  error_rate: 0.02
  goodput: {min: 0.95, ttft: 1s, tpot: 100ms}
  answer_match: 0.9
  recall_at_k: 0.8
  phases:
    storm: {error_rate: 0.2, ttft_p95: 3s}
stop_when:
  error_rate: {above: 0.5, for: 10s}
report: {dir: drill-report/}
";

    #[test]
    fn design_example_loads() {
        let s = load_scenario(OK, "s.yaml").unwrap();
        assert_eq!(s.name, "chat-gameday");
        assert!(matches!(s.target.kind(), TargetKind::Proxy { .. }));
        let w = &s.all_workloads()[0];
        assert_eq!(w.arrival.kind(), ArrivalKind::Rate(20.0));
        assert_eq!(w.client.timeout.0, Duration::from_secs(30));
        let slo = s.slo.unwrap();
        let storm = slo.for_phase("storm");
        assert_eq!(storm.error_rate, Some(0.2));
        assert_eq!(storm.e2e_p99, Some(DurationStr(Duration::from_secs(10))));
        assert_eq!(slo.for_phase("baseline").error_rate, Some(0.02));
        assert!(looks_like_scenario(OK));
    }

    fn err(src: &str) -> Diagnostic {
        load_scenario(src, "s.yaml").unwrap_err().remove(0)
    }

    #[test]
    fn errors_have_positions() {
        let e = err(&OK.replace("  stream: true", "  steam: true"));
        assert_eq!((e.line, e.column), (13, 3), "{e}");
        assert_eq!(e.hint.as_deref(), Some("did you mean `stream`?"));
        assert!(e.to_string().starts_with("s.yaml:13:3:"), "{e}");

        let e = err(&OK.replace("rate: 20/s", "rate: 20/x"));
        assert_eq!(e.line, 15, "{e}");
        assert!(e.message.contains("invalid rate unit"), "{e}");

        let e = err(&OK.replace("timeout: 30s", "timeout: 30"));
        assert_eq!(e.line, 16, "{e}");
        assert!(e.hint.unwrap().contains("unit"));

        let e = err(&OK.replace("rate: 20/s", "rate: 20/s, concurrency: 4"));
        assert_eq!((e.line, e.column), (15, 12), "{e}");

        let e = err(&OK.replace("error_rate: 0.02", "error_rate: 2"));
        assert_eq!((e.line, e.column), (21, 15), "{e}");

        let e = err(&OK.replace("  admin: http://127.0.0.1:9911\n", ""));
        assert_eq!((e.line, e.column), (4, 3), "{e}");
        assert!(e.message.contains("admin"));

        let e = err(&OK.replace("endpoint: chat", "endpoint: chats"));
        assert_eq!(e.line, 11, "{e}");
    }

    #[test]
    fn a_workload_without_a_name_is_named_after_its_endpoint() {
        let head = "version: 1\nname: x\ntarget: {upstream: sim}\nprofile: p.yaml\n";
        let s = load_scenario(
            &format!("{head}workload: {{endpoint: embeddings, arrival: {{rate: 5/s}}}}\n"),
            "s.yaml",
        )
        .unwrap();
        assert_eq!(s.all_workloads()[0].name, "embeddings");
        // The endpoint's default counts too.
        let s = load_scenario(
            &format!("{head}workload: {{arrival: {{rate: 5/s}}}}\n"),
            "s.yaml",
        )
        .unwrap();
        assert_eq!(s.all_workloads()[0].name, "chat");
        // In a list as well; a name given is kept.
        let s = load_scenario(
            &format!(
                "{head}workloads:\n  - {{arrival: {{rate: 5/s}}}}\n  - {{name: chat-2, arrival: {{rate: 5/s}}}}\n  - {{endpoint: embeddings, arrival: {{rate: 1/s}}}}\n"
            ),
            "s.yaml",
        )
        .unwrap();
        let names: Vec<&str> = s.all_workloads().iter().map(|w| w.name.as_str()).collect();
        assert_eq!(names, ["chat", "chat-2", "embeddings"]);
    }

    #[test]
    fn unnamed_workloads_on_one_endpoint_are_refused_not_numbered() {
        let head = "version: 1\nname: x\ntarget: {upstream: sim}\nprofile: p.yaml\n";
        let e = load_scenario(
            &format!(
                "{head}workloads:\n  - {{endpoint: chat, arrival: {{rate: 5/s}}}}\n  - {{endpoint: chat, arrival: {{concurrency: 2}}}}\n"
            ),
            "s.yaml",
        )
        .unwrap_err();
        assert_eq!(e.len(), 1, "{e:?}");
        assert!(
            e[0].message.contains("named after its endpoint"),
            "{}",
            e[0]
        );
        assert!(
            e[0].hint.as_deref().unwrap_or("").contains("name"),
            "{}",
            e[0]
        );
        // At the second workload's endpoint.
        assert_eq!((e[0].line, e[0].column), (7, 16), "{}", e[0]);
        // A named workload taking the name an unnamed one defaults to: refused too,
        // at the one that has the name.
        let e = load_scenario(
            &format!(
                "{head}workloads:\n  - {{arrival: {{rate: 5/s}}}}\n  - {{name: chat, arrival: {{concurrency: 2}}}}\n"
            ),
            "s.yaml",
        )
        .unwrap_err();
        assert!(
            e[0].message.contains("named after its endpoint"),
            "{}",
            e[0]
        );
        assert_eq!(e[0].line, 7, "{}", e[0]);
    }

    #[test]
    fn client_sdk_users_and_api_key() {
        let s = load_scenario(OK, "s.yaml").unwrap();
        let c = &s.all_workloads()[0].client;
        assert_eq!(c.sdk, crate::retry::Sdk::OpenaiPython);
        assert_eq!((c.users, c.api_key_env.as_deref()), (100, None));
        assert_eq!(*c, ClientSpec::default());

        let with = |client: &str| OK.replace("honor_retry_after: true}", client);
        let s = load_scenario(
            &with("sdk: anthropic-python, users: 7, api_key_env: KEY}"),
            "s.yaml",
        )
        .unwrap();
        let c = &s.all_workloads()[0].client;
        assert_eq!(c.sdk, crate::retry::Sdk::AnthropicPython);
        assert_eq!((c.users, c.api_key_env.as_deref()), (7, Some("KEY")));

        let e = err(&with("users: 0}"));
        assert_eq!(e.line, 16, "{e}");
        assert!(e.message.contains("`users` must be at least 1"), "{e}");
        let e = err(&with("api_key_env: ''}"));
        assert!(e.message.contains("api_key_env"), "{e}");
        let e = err(&with("sdk: openai-node}"));
        assert_eq!(e.line, 16, "{e}");
        assert!(e.message.contains("openai-node"), "{e}");
        assert!(e.hint.unwrap_or_default().contains("anthropic-python"));
    }

    #[test]
    fn sim_target_and_workloads_list() {
        let src = "version: 1\nname: x\ntarget: {upstream: sim}\nprofile: p.yaml\n\
                   workloads:\n  - {name: a, arrival: {rate: 5/s}}\n  - {name: a, arrival: {concurrency: 2}}\n";
        let e = load_scenario(src, "s.yaml").unwrap_err();
        assert_eq!((e[0].line, e[0].column), (7, 12), "{}", e[0]);
        let ok = src.replace("name: a, arrival: {c", "name: b, arrival: {c");
        let s = load_scenario(&ok, "s.yaml").unwrap();
        assert_eq!(s.target.kind(), TargetKind::Sim);
        assert_eq!(
            s.all_workloads()[1].arrival.kind(),
            ArrivalKind::Concurrency(2)
        );
    }

    #[test]
    fn prompt_files() {
        let p = load_prompts(
            "{\"prompt\": \"hi\"}\n\n{\"messages\": [{\"role\": \"user\", \"content\": \"yo\"}], \"expect\": {\"contains\": \"x\"}}\n",
            "p.jsonl",
        )
        .unwrap();
        assert_eq!(p.len(), 2);
        let e = load_prompts("{\"prompt\": \"hi\"}\n{\"prompt\": 3}\n", "p.jsonl").unwrap_err();
        assert_eq!((e.line, e.column), (2, 1));
        let e = load_prompts("{\"prompt\": \"hi\"}\n{oops\n", "p.jsonl").unwrap_err();
        assert_eq!(e.line, 2);
        assert!(e.to_string().starts_with("p.jsonl:2:"), "{e}");
    }

    #[test]
    fn rates() {
        assert_eq!(parse_rate("20/s"), Ok(20.0));
        assert_eq!(parse_rate("600/m"), Ok(10.0));
        assert_eq!(parse_rate("5"), Ok(5.0));
        assert!(parse_rate("0/s").is_err());
    }

    /// Type errors do not stop the reading: each is reported, and the checks on
    /// the rest of the file still run, without follow-ons of what was set aside.
    #[test]
    fn every_type_error_is_reported_at_once() {
        let src = OK
            .replace("  stream: true", "  steam: true")
            .replace("rate: 20/s", "concurrency: -2")
            .replace("timeout: 30s", "timeout: 30")
            .replace("endpoint: chat", "endpoint: chats")
            .replace("error_rate: 0.02", "error_rate: 2")
            .replace("  answer_match: 0.9", "  answer_match: lots");
        let errs = load_scenario(&src, "s.yaml").unwrap_err();
        let got: Vec<String> = errs
            .iter()
            .map(|d| format!("{}:{} {}", d.line, d.column, d.message))
            .collect();
        assert_eq!(
            got,
            [
                "11:13 unknown endpoint `chats`",
                "13:3 unknown field `steam`",
                "15:26 `concurrency` must be at least 1, not -2",
                "16:33 `30` has no unit",
                "21:15 `error_rate` must be between 0 and 1, not 2",
                "23:17 expected a number, found the text \"lots\"",
            ],
            "{errs:#?}"
        );
        assert!(errs.iter().all(|d| d.hint.is_some()), "{errs:#?}");
        // A count below its range is told the same range as one of the wrong sign.
        let zero = err(&OK.replace("rate: 20/s", "concurrency: 0"));
        assert_eq!(zero.message, "`concurrency` must be at least 1");
        assert_eq!(Some(zero.hint), errs.get(2).map(|e| e.hint.clone()));
    }

    #[test]
    fn profile_names_are_checked() {
        let s = load_scenario(OK, "s.yaml").unwrap();
        let d = check_against_profile(&s, OK, "s.yaml", &["baseline".into(), "storms".into()]);
        assert_eq!(d.len(), 1);
        assert_eq!(d[0].line, 26);
        assert_eq!(d[0].hint.as_deref(), Some("did you mean `storms`?"));
    }

    #[test]
    fn the_capacity_block_loads_with_defaults_and_is_checked() {
        let src = format!("{OK}capacity: {{start: 8, max: 1024, under: [baseline, storm]}}\n");
        let s = load_scenario(&src, "s.yaml").unwrap();
        let c = s.capacity.clone().unwrap();
        assert_eq!(c.vary, Vary::Concurrency);
        assert_eq!((c.start, c.max, c.tolerance), (8.0, 1024.0, 0.1));
        assert_eq!(c.probe_max(), Duration::from_secs(80));
        // The attainment defaults to the goodput minimum.
        assert_eq!(c.attainment(s.slo.as_ref()), 0.95);
        assert!(
            check_against_profile(&s, &src, "s.yaml", &["baseline".into(), "storm".into()])
                .is_empty()
        );
        // `baseline` means no faults even where the profile has no such phase; other
        // names must be phases, and the error lists them.
        let d: Vec<_> =
            check_against_profile(&s, &src, "s.yaml", &["calm".into(), "storms".into()])
                .into_iter()
                .filter(|d| d.message.contains("capacity"))
                .collect();
        assert_eq!(d.len(), 1, "{d:#?}");
        assert!(
            d[0].message.contains("`storm`") && d[0].message.contains("calm, storms"),
            "{}",
            d[0]
        );
        assert_eq!(d[0].line, 30);
        assert!(d[0]
            .hint
            .as_deref()
            .unwrap()
            .contains("did you mean `storms`?"));

        let e = err(&format!("{OK}capacity: {{start: 64, max: 8}}\n"));
        assert!(e.message.contains("below `capacity.start`"), "{e}");
        assert_eq!(e.line, 30);
        assert!(e.hint.is_some());
        let e = err(&format!("{OK}capacity: {{start: 1.5, max: 8}}\n"));
        assert!(e.message.contains("whole"), "{e}");
        let e = err(&format!(
            "{OK}capacity: {{vary: rate, start: 1.5, max: 8, tolerance: 2}}\n"
        ));
        assert!(e.message.contains("tolerance"), "{e}");
        let e = err(&format!(
            "{OK}capacity: {{start: 1, max: 8, probe: 10s, probe_max: 5s}}\n"
        ));
        assert!(e.message.contains("probe_max"), "{e}");
        let e = err(&format!(
            "{OK}capacity: {{start: 1, max: 8, under: [a, a]}}\n"
        ));
        assert!(e.message.contains("twice"), "{e}");
        let e = err(&format!("{OK}capacity: {{start: 1, max: 8, vary: load}}\n"));
        assert_eq!(e.line, 30, "{e}");
        let e = err(&format!(
            "{OK}capacity: {{start: 1, max: 8, attainment: 0}}\n"
        ));
        assert!(e.message.contains("attainment"), "{e}");
        let e = err(&format!("{OK}capacity: {{start: 1, max: 8, probes: 2s}}\n"));
        assert!(e.hint.as_deref().unwrap_or("").contains("probe"), "{e}");
    }
}
