//! The scenario drill loop: several workloads at once, open or closed loop, an
//! SDK-like client with retries, goodput, SLO evaluation and `stop_when`.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};
use tokio::task::JoinSet;
use tokio::time::{interval_at, sleep_until, Instant, MissedTickBehavior};

use crate::arrival::PoissonArrivals;
use crate::client::{DrillClient, Slot};
use crate::correct::{Answer, Correctness, Expect, Scorer};
use crate::error::DrillError;
use crate::plan::{LoadPlan, PhasePlan};
use crate::progress::{Progress, ProgressSink};
use crate::retry::RetryPolicy;
use crate::sample::Sample;
use crate::scenario::{
    Api, ArrivalKind, ClientSpec, Endpoint, Goodput, PhaseSlo, Slo, StopWhen, WorkloadSpec,
};
use crate::stats::{finish_phases, DrillResult, LiveWindow, PhaseAccumulator, PhaseStats};
use crate::workload::Workload;

/// One workload, ready to run against a base URL.
#[derive(Debug, Clone)]
pub struct EngineWorkload {
    /// The workload as written in the scenario.
    pub spec: WorkloadSpec,
    /// Base URL of the proxy.
    pub target: http::Uri,
    /// Lines of the workload's prompt file; empty for the built-in prompts.
    pub prompts: Vec<serde_json::Value>,
}

/// Called as the drill enters each phase (index, name), the first at the start:
/// the target's fault profile follows the drill's schedule instead of a clock of
/// its own, so a loaded machine cannot skew the two apart.
#[derive(Clone)]
pub struct PhaseDriver(pub Arc<PhaseFn>);

/// What a [`PhaseDriver`] calls: phase index and name.
pub type PhaseFn = dyn Fn(usize, &str) + Send + Sync;

impl std::fmt::Debug for PhaseDriver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PhaseDriver")
    }
}

/// One workload as the reports describe it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct WorkloadInfo {
    /// The workload's name.
    pub name: String,
    /// `openai`, `anthropic`, `qdrant` or `chroma`.
    pub api: String,
    /// The request path.
    pub path: String,
    /// The model (empty for searches).
    pub model: String,
    /// Whether it asked for streams.
    pub stream: bool,
    /// `20/s Poisson` or `16 users`.
    pub arrival: String,
}

impl WorkloadInfo {
    fn of(w: &WorkloadSpec, path: &str) -> Self {
        Self {
            name: w.name.clone(),
            api: format!("{:?}", w.api).to_lowercase(),
            path: path.to_owned(),
            model: if w.endpoint == Endpoint::Search {
                String::new()
            } else {
                w.model.clone()
            },
            stream: w.stream,
            arrival: match w.arrival.kind() {
                ArrivalKind::Rate(r) => format!("{r}/s Poisson"),
                ArrivalKind::Concurrency(c) => format!("{c} closed-loop users"),
            },
        }
    }
}

/// Everything the engine needs.
#[derive(Debug, Clone)]
pub struct EnginePlan {
    /// Phases, back to back (from the profile).
    pub phases: Vec<PhasePlan>,
    /// Workloads run at once.
    pub workloads: Vec<EngineWorkload>,
    /// Seed for arrivals, prompts and retry jitter.
    pub seed: u64,
    /// Objectives, for goodput thresholds (evaluation is [`evaluate`]).
    pub slo: Slo,
    /// Safety stop.
    pub stop_when: Option<StopWhen>,
    /// The phase answers and embeddings are compared with (the first if `None`
    /// or unknown).
    pub baseline: Option<String>,
    /// Moves the target's profile from phase to phase with the drill.
    pub phase_driver: Option<PhaseDriver>,
    /// Sees every finished request and may end the run early (`brownout capacity`
    /// judges its probes with one); `None` for a drill.
    pub watch: Option<Watch>,
}

/// What a [`Watcher`] tells the engine at each tick.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WatchSays {
    /// Keep going.
    Go,
    /// Send nothing more; let the requests in flight finish, then end.
    Finish,
    /// End now, abandoning the requests in flight, for this reason.
    Abort(String),
}

/// Watches a run from inside the engine's loop, where the in-flight count (an
/// open loop's backlog) and each request's completion are known as they happen.
pub trait Watcher: Send {
    /// Request `s` finished; it was scheduled `scheduled` after the start, in
    /// phase `phase`, and ended `at` after the start.
    fn done(&mut self, at: Duration, scheduled: Duration, phase: usize, s: &Sample);
    /// Every 250 ms: `in_flight` requests sent and not finished, `sent` in all.
    fn tick(&mut self, at: Duration, in_flight: usize, sent: u64) -> WatchSays;
}

/// A shared [`Watcher`]: the caller keeps a clone to read its verdict afterwards.
#[derive(Clone)]
pub struct Watch(pub Arc<std::sync::Mutex<dyn Watcher>>);

impl std::fmt::Debug for Watch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Watch")
    }
}

/// Extra per-phase numbers the plain statistics lack.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct PhaseExtra {
    /// The phase's name (`all` for the whole drill).
    pub name: String,
    /// Requests that succeeded within every goodput threshold.
    pub good: u64,
    /// `good / requests` (1 with no requests).
    pub goodput: f64,
    /// HTTP attempts, retries included.
    pub attempts: u64,
    /// `attempts / requests`: how much the client's retries multiplied the load.
    pub retry_amplification: f64,
    /// `expect` pass rate, answer match, embedding similarity, recall@k.
    #[serde(default)]
    pub correctness: Correctness,
}

/// A point of the latency-over-time chart.
///
/// The fields after `ok` came later: `#[serde(default)]` keeps older
/// `report.json` files loading (their points read as workload 0, no stream data).
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Point {
    /// Scheduled send, seconds from the start.
    pub t_s: f64,
    /// End-to-end latency, ms.
    pub e2e_ms: f64,
    /// Whether it succeeded.
    pub ok: bool,
    /// Index into [`EngineResult::workloads`]: a search's latency charted with a
    /// chat's hides both.
    #[serde(default)]
    pub workload: usize,
    /// Time to first token, ms (streams only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ttft_ms: Option<f64>,
    /// Time per output token, ms ([`Sample::tpot`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tpot_ms: Option<f64>,
    /// The request's median gap between content events, ms.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub itl_p50_ms: Option<f64>,
    /// Its longest gap, ms: a stalled stream shows here, not in the median.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub itl_max_ms: Option<f64>,
}

impl Point {
    /// The chart point of `s`, scheduled `t_s` seconds from the start.
    pub fn of(t_s: f64, workload: usize, s: &Sample) -> Self {
        let ms = |d: Duration| d.as_secs_f64() * 1000.0;
        let mut gaps: Vec<Duration> = s.itl.clone();
        gaps.sort_unstable();
        Self {
            t_s,
            e2e_ms: ms(s.e2e),
            ok: s.outcome.is_ok(),
            workload,
            ttft_ms: s.ttft.map(ms),
            tpot_ms: s.tpot().map(ms),
            itl_p50_ms: gaps.get(gaps.len() / 2).copied().map(ms),
            itl_max_ms: gaps.last().copied().map(ms),
        }
    }
}

/// What a scenario drill measured.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EngineResult {
    /// Per-phase and overall statistics over all workloads.
    pub stats: DrillResult,
    /// Goodput and retry amplification per phase, in order.
    pub phases: Vec<PhaseExtra>,
    /// The same for the whole drill.
    pub total: PhaseExtra,
    /// Why the drill stopped early, if it did.
    pub stopped: Option<String>,
    /// Every request's latency (for charts).
    pub points: Vec<Point>,
    /// What each workload sent.
    #[serde(default)]
    pub workloads: Vec<WorkloadInfo>,
    /// Per-phase statistics of each workload on its own (when there are several:
    /// a search's latency says little about a chat's).
    #[serde(default)]
    pub by_workload: Vec<WorkloadResult>,
}

/// One workload's own statistics.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WorkloadResult {
    /// The workload's name.
    pub name: String,
    /// Its per-phase and overall statistics.
    pub stats: DrillResult,
}

struct Done {
    workload: usize,
    prompt: usize,
    sample: Sample,
    attempts: u32,
    scheduled_s: f64,
}

/// Send request `seq` as the SDK named by `spec` would, retries and waits
/// included ([`crate::retry`]), from simulated user `seq % users`; every latency
/// is measured from `scheduled`. Returns the last attempt's sample and the number
/// of attempts.
pub async fn send_with_retries(
    client: &DrillClient,
    spec: &ClientSpec,
    seq: u64,
    phase: usize,
    scheduled: Instant,
    body: Bytes,
    mut rng: ChaCha8Rng,
) -> (Sample, u32) {
    let policy = RetryPolicy {
        sdk: spec.sdk,
        max_retries: spec.retries,
        honor_retry_after: spec.honor_retry_after,
    };
    // A request keeps its user across retries, as an SDK client keeps its key.
    let user = (seq % u64::from(spec.users.max(1))) as u32;
    policy
        .run(&mut rng, |attempt| {
            let body = body.clone();
            async move {
                let start = Instant::now();
                // Each retry gets its own fault decision (as a fresh request would),
                // still fixed by the seed: the attempt number goes in the high bits.
                let slot = Slot {
                    seq: seq | (u64::from(attempt) << 48),
                    phase,
                    scheduled: start,
                };
                let (mut s, ending) = client.exchange_with(slot, body, attempt, Some(user)).await;
                s.seq = seq;
                let offset = start.saturating_duration_since(scheduled);
                s.e2e += offset;
                s.ttft = s.ttft.map(|t| t + offset);
                s.send_lag = s
                    .send_lag
                    .max(if attempt == 0 { offset } else { s.send_lag });
                (s, ending)
            }
        })
        .await
}

/// Whether `s` is good under `g`: ok and within every threshold given.
pub fn is_good(s: &Sample, g: Option<&Goodput>) -> bool {
    if !s.outcome.is_ok() {
        return false;
    }
    let Some(g) = g else { return true };
    let within =
        |v: Option<Duration>, limit: Option<brownout_faults::duration::DurationStr>| match limit {
            None => true,
            Some(l) => v.is_some_and(|v| v <= l.0),
        };
    // Without a stream the first token arrives with the whole answer: TTFT is e2e.
    // TPOT is undefined for fewer than two streamed tokens, so it cannot break.
    within(Some(s.ttft.unwrap_or(s.e2e)), g.ttft)
        && (s.tpot().is_none() || within(s.tpot(), g.tpot))
        && within(Some(s.e2e), g.e2e)
}

impl PhaseExtra {
    /// Whether the phase measured anything: a phase cut off before its first
    /// request (by `stop_when`, or a `duration` shorter than the profile) has no
    /// goodput or amplification to show, and must not read as a healthy 100%.
    pub fn measured(&self) -> bool {
        self.attempts > 0
    }

    /// Goodput for people: `93.5%`, or `no data`.
    pub fn goodput_text(&self) -> String {
        if self.measured() {
            format!("{:.1}%", self.goodput * 100.0)
        } else {
            "no data".to_owned()
        }
    }

    /// Retry amplification for people: `1.07×`, or `no data`.
    pub fn amplification_text(&self) -> String {
        if self.measured() {
            format!("{:.2}×", self.retry_amplification)
        } else {
            "no data".to_owned()
        }
    }
}

struct Extra {
    requests: u64,
    good: u64,
    attempts: u64,
}

impl Extra {
    fn finish(&self, name: &str) -> PhaseExtra {
        PhaseExtra {
            name: name.to_owned(),
            good: self.good,
            goodput: if self.requests == 0 {
                1.0
            } else {
                self.good as f64 / self.requests as f64
            },
            attempts: self.attempts,
            retry_amplification: if self.requests == 0 {
                1.0
            } else {
                self.attempts as f64 / self.requests as f64
            },
            correctness: Correctness::default(),
        }
    }
}

/// [`run_engine`] on a runtime of its own, one thread: the load generator's
/// schedule is then not disturbed by other work in the process (an in-process
/// proxy and simulated upstreams), as if it ran apart, and its wake-ups stay on
/// one thread instead of bouncing between a work-stealing pool's workers.
pub async fn run_engine_isolated(
    plan: EnginePlan,
    progress: impl ProgressSink + 'static,
) -> Result<EngineResult, DrillError> {
    let (tx, rx) = tokio::sync::oneshot::channel();
    std::thread::Builder::new()
        .name("brownout-drill".into())
        .spawn(move || {
            let r = match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                Ok(rt) => rt.block_on(run_engine(plan, progress)),
                Err(e) => Err(DrillError::Runtime(e)),
            };
            let _ = tx.send(r);
        })
        .map_err(DrillError::Runtime)?;
    rx.await.map_err(|_| DrillError::EngineGone)?
}

/// Run `plan` until its phases end or `stop_when` fires.
pub async fn run_engine(
    plan: EnginePlan,
    mut progress: impl ProgressSink,
) -> Result<EngineResult, DrillError> {
    // Reuse the plain plan's checks and phase lookup.
    let mut lp = LoadPlan::new(
        plan.workloads
            .first()
            .map(|w| w.target.clone())
            .ok_or(DrillError::NoPhases)?,
    );
    lp.phases = plan.phases.clone();
    lp.seed = plan.seed;
    let planned = lp.total_duration();
    let mut clients = Vec::new();
    let mut infos = Vec::new();
    let mut bodies = Vec::new();
    let mut arrivals: Vec<Option<PoissonArrivals>> = Vec::new();
    for (i, w) in plan.workloads.iter().enumerate() {
        let mut p = lp.clone();
        p.target = w.target.clone();
        p.path = if w.spec.api == Api::Chroma && w.spec.endpoint == Endpoint::Search {
            let id =
                crate::client::resolve_chroma_collection(&w.target, &w.spec.collection).await?;
            w.spec.path_for(&id)
        } else {
            w.spec.path()
        };
        infos.push(WorkloadInfo::of(&w.spec, &p.path));
        p.model = w.spec.model.clone();
        p.stream = w.spec.stream;
        p.max_tokens = w.spec.max_tokens;
        p.top_k = w.spec.top_k;
        p.dims = w.spec.dims;
        p.seed = plan.seed.wrapping_add(i as u64);
        p.timeout = w.spec.client.timeout.0;
        if let ArrivalKind::Rate(r) = w.spec.arrival.kind() {
            p.rate_per_sec = r;
        }
        p.validate()?;
        let real_key = match &w.spec.client.api_key_env {
            None => None,
            Some(var) => match std::env::var(var) {
                Ok(k) if !k.trim().is_empty() => Some(k),
                _ => {
                    tracing::warn!(
                        workload = %w.spec.name,
                        "drill: `{var}` holds no API key; sending fake keys"
                    );
                    None
                }
            },
        };
        clients.push(Arc::new(
            DrillClient::with_limits(
                p.request_uri()?,
                p.stream,
                p.timeout,
                w.spec.client.max_connections as usize,
            )
            .with_users(real_key.as_deref())
            .with_sim_answers(Workload::with_prompts(&p, &w.prompts).sim_answers(&w.prompts)),
        ));
        bodies.push(Workload::with_prompts(&p, &w.prompts));
        arrivals.push(match w.spec.arrival.kind() {
            ArrivalKind::Rate(r) => {
                Some(PoissonArrivals::new(r, p.seed).ok_or(DrillError::InvalidRate(r))?)
            }
            ArrivalKind::Concurrency(_) => None,
        });
    }
    let expects: Vec<Vec<Option<Expect>>> = plan
        .workloads
        .iter()
        .map(|w| {
            w.prompts
                .iter()
                .map(|l| Expect::from_line(l).ok().flatten())
                .collect()
        })
        .collect();
    let baseline = plan
        .baseline
        .as_ref()
        .and_then(|b| plan.phases.iter().position(|p| &p.name == b))
        .unwrap_or(0);
    let mut scorer = Scorer::new(plan.phases.len(), baseline);
    let goodput_for: Vec<Option<Goodput>> = plan
        .phases
        .iter()
        .map(|p| plan.slo.for_phase(&p.name).goodput)
        .collect();
    let mut phases = plan
        .phases
        .iter()
        .map(|_| PhaseAccumulator::new())
        .collect::<Result<Vec<_>, _>>()?;
    let mut extras: Vec<Extra> = plan
        .phases
        .iter()
        .map(|_| Extra {
            requests: 0,
            good: 0,
            attempts: 0,
        })
        .collect();
    let mut total_extra = Extra {
        requests: 0,
        good: 0,
        attempts: 0,
    };
    let mut total = PhaseAccumulator::new()?;
    // Per workload, per phase, and per workload overall (only with several).
    let several = plan.workloads.len() > 1;
    let mut per_workload: Vec<(Vec<PhaseAccumulator>, PhaseAccumulator)> = Vec::new();
    if several {
        for _ in &plan.workloads {
            per_workload.push((
                plan.phases
                    .iter()
                    .map(|_| PhaseAccumulator::new())
                    .collect::<Result<Vec<_>, _>>()?,
                PhaseAccumulator::new()?,
            ));
        }
    }
    let mut live = LiveWindow::new(5)?;
    let mut points = Vec::new();
    let mut jitter = ChaCha8Rng::seed_from_u64(plan.seed);
    jitter.set_stream(7);

    if let (Some(d), Some(p)) = (&plan.phase_driver, plan.phases.first()) {
        (d.0)(0, &p.name);
    }
    let start = Instant::now();
    // When the drill enters each later phase (the driver moves the target along).
    let mut boundaries: VecDeque<(usize, Duration)> = plan
        .phases
        .iter()
        .enumerate()
        .skip(1)
        .map(|(i, _)| (i, plan.phases[..i].iter().map(|p| p.duration).sum()))
        .collect();
    let boundary = sleep_until(start + boundaries.front().map_or(planned, |b| b.1));
    tokio::pin!(boundary);
    let mut next: Vec<Option<Duration>> = arrivals
        .iter_mut()
        .map(|a| a.as_mut().and_then(|a| a.next()).filter(|t| *t < planned))
        .collect();
    let earliest = |next: &[Option<Duration>]| {
        next.iter()
            .enumerate()
            .filter_map(|(i, t)| t.map(|t| (t, i)))
            .min()
    };
    let wake = sleep_until(start + earliest(&next).map_or(planned, |(t, _)| t));
    tokio::pin!(wake);
    let mut ticker = interval_at(
        start + Duration::from_millis(250),
        Duration::from_millis(250),
    );
    ticker.set_missed_tick_behavior(MissedTickBehavior::Skip);
    let mut tasks: JoinSet<Done> = JoinSet::new();
    let mut seq: u64 = 0;
    let mut completed: u64 = 0;
    let mut stopped = None;
    let mut recent: VecDeque<(Instant, bool)> = VecDeque::new();
    let mut above_since: Option<Instant> = None;
    let mut last_progress = start;
    // When sending stops: the planned end, or earlier when the watcher says so.
    let mut cutoff = planned;

    let mut spawn = |tasks: &mut JoinSet<Done>, i: usize, offset: Duration, seq: &mut u64| {
        let phase = lp.phase_at(offset);
        let (prompt, body) = bodies[i].next_body();
        let client = Arc::clone(&clients[i]);
        let spec = plan.workloads[i].spec.client.clone();
        let s = *seq;
        *seq += 1;
        let rng = ChaCha8Rng::seed_from_u64(jitter.random());
        let scheduled = start + offset;
        let fut = async move {
            let (sample, attempts) =
                send_with_retries(&client, &spec, s, phase, scheduled, body, rng).await;
            Done {
                workload: i,
                prompt,
                sample,
                attempts,
                scheduled_s: offset.as_secs_f64(),
            }
        };
        tasks.spawn(fut);
    };
    // Closed-loop users start together.
    for (i, w) in plan.workloads.iter().enumerate() {
        if let ArrivalKind::Concurrency(c) = w.spec.arrival.kind() {
            for _ in 0..c {
                spawn(&mut tasks, i, Duration::ZERO, &mut seq);
            }
        }
    }

    loop {
        let open_pending = next.iter().any(Option::is_some);
        if !open_pending && tasks.is_empty() {
            break;
        }
        tokio::select! {
            biased;
            () = &mut boundary, if plan.phase_driver.is_some() && !boundaries.is_empty() => {
                if let (Some(d), Some((i, _))) = (&plan.phase_driver, boundaries.pop_front()) {
                    (d.0)(i, &plan.phases[i].name);
                }
                if let Some((_, t)) = boundaries.front() {
                    boundary.as_mut().reset(start + *t);
                }
            }
            () = &mut wake, if open_pending => {
                if let Some((offset, i)) = earliest(&next) {
                    spawn(&mut tasks, i, offset, &mut seq);
                    next[i] = arrivals[i].as_mut().and_then(|a| a.next()).filter(|t| *t < planned);
                }
                if let Some((t, _)) = earliest(&next) {
                    wake.as_mut().reset(start + t);
                }
            }
            Some(joined) = tasks.join_next() => {
                completed += 1;
                let Ok(mut done) = joined else { continue };
                if done.sample.outcome.is_ok() {
                    let expect = expects[done.workload].get(done.prompt).and_then(Option::as_ref);
                    scorer.record(
                        done.sample.phase,
                        (done.workload, done.prompt),
                        expect,
                        Answer {
                            text: done.sample.answer.as_deref(),
                            embedding: done.sample.embedding.take(),
                            ids: done.sample.ids.take(),
                        },
                    );
                }
                let s = &done.sample;
                let good = is_good(s, goodput_for.get(s.phase).and_then(Option::as_ref));
                let good_all = is_good(s, plan.slo.goodput.as_ref());
                if let Some(acc) = phases.get_mut(s.phase) {
                    acc.record(s);
                    let e = &mut extras[s.phase];
                    e.requests += 1;
                    e.good += u64::from(good);
                    e.attempts += u64::from(done.attempts);
                }
                total.record(s);
                if let Some((ph, all)) = per_workload.get_mut(done.workload) {
                    if let Some(acc) = ph.get_mut(s.phase) {
                        acc.record(s);
                    }
                    all.record(s);
                }
                total_extra.requests += 1;
                total_extra.good += u64::from(good_all);
                total_extra.attempts += u64::from(done.attempts);
                live.record(s);
                recent.push_back((Instant::now(), s.outcome.is_ok()));
                points.push(Point::of(done.scheduled_s, done.workload, s));
                if let Some(w) = &plan.watch {
                    if let Ok(mut w) = w.0.lock() {
                        w.done(start.elapsed(), Duration::from_secs_f64(done.scheduled_s), s.phase, s);
                    }
                }
                // A closed-loop user sends its next request at once.
                if matches!(plan.workloads[done.workload].spec.arrival.kind(), ArrivalKind::Concurrency(_)) {
                    let now = start.elapsed();
                    if now < cutoff {
                        spawn(&mut tasks, done.workload, now, &mut seq);
                    }
                }
            }
            _ = ticker.tick() => {
                let now = Instant::now();
                let says = plan.watch.as_ref().and_then(|w| {
                    w.0.lock().ok().map(|mut w| w.tick(start.elapsed(), tasks.len(), seq))
                });
                match says {
                    Some(WatchSays::Abort(why)) => {
                        stopped = Some(why);
                        break;
                    }
                    Some(WatchSays::Finish) if cutoff == planned => {
                        cutoff = start.elapsed();
                        next.iter_mut().for_each(|n| *n = None);
                    }
                    _ => {}
                }
                // stop_when: the error rate over the last second, held long enough.
                while recent.front().is_some_and(|(t, _)| now.duration_since(*t) > Duration::from_secs(1)) {
                    recent.pop_front();
                }
                if let Some(rule) = plan.stop_when.as_ref().and_then(|s| s.error_rate.as_ref()) {
                    let errs = recent.iter().filter(|(_, ok)| !ok).count();
                    let rate = if recent.is_empty() { 0.0 } else { errs as f64 / recent.len() as f64 };
                    if rate > rule.above {
                        let since = *above_since.get_or_insert(now);
                        if now.duration_since(since) >= rule.for_.0 {
                            stopped = Some(format!(
                                "error rate {:.1}% above {:.1}% for {}",
                                rate * 100.0,
                                rule.above * 100.0,
                                rule.for_
                            ));
                            break;
                        }
                    } else {
                        above_since = None;
                    }
                }
                if now.duration_since(last_progress) >= Duration::from_secs(1) {
                    last_progress = now;
                    let elapsed = start.elapsed();
                    let (p95_e2e, error_rate) = live.summary();
                    live.rotate();
                    progress.update(&Progress {
                        elapsed,
                        planned,
                        phase: lp.phases.get(lp.phase_at(elapsed)).map_or("", |p| p.name.as_str()),
                        sent: seq,
                        completed,
                        in_flight: tasks.len(),
                        p95_e2e,
                        error_rate,
                    });
                }
            }
        }
    }
    tasks.abort_all();
    progress.finish();
    let first = &plan.workloads[0].spec;
    let stats = DrillResult {
        target: plan.workloads[0]
            .target
            .to_string()
            .trim_end_matches('/')
            .to_owned(),
        path: infos.first().map(|w| w.path.clone()).unwrap_or_default(),
        model: first.model.clone(),
        stream: first.stream,
        rate_per_sec: plan
            .workloads
            .iter()
            .map(|w| w.spec.arrival.kind().rate_per_sec())
            .sum(),
        seed: plan.seed,
        elapsed_s: start.elapsed().as_secs_f64(),
        phases: finish_phases(&plan.phases, &phases),
        total: total.finish("all", planned),
    };
    let elapsed_s = stats.elapsed_s;
    let by_workload = per_workload
        .iter()
        .zip(&plan.workloads)
        .zip(&infos)
        .map(|(((ph, all), w), info)| WorkloadResult {
            name: w.spec.name.clone(),
            stats: DrillResult {
                target: w.target.to_string().trim_end_matches('/').to_owned(),
                path: info.path.clone(),
                model: info.model.clone(),
                stream: w.spec.stream,
                rate_per_sec: w.spec.arrival.kind().rate_per_sec(),
                seed: plan.seed,
                elapsed_s,
                phases: finish_phases(&plan.phases, ph),
                total: all.finish("all", planned),
            },
        })
        .collect();
    let (scores, score_all) = scorer.finish();
    let mut total_extra = total_extra.finish("all");
    total_extra.correctness = score_all;
    Ok(EngineResult {
        stats,
        phases: plan
            .phases
            .iter()
            .zip(&extras)
            .zip(scores)
            .map(|((p, e), c)| PhaseExtra {
                correctness: c,
                ..e.finish(&p.name)
            })
            .collect(),
        total: total_extra,
        stopped,
        points,
        workloads: infos,
        by_workload,
    })
}

/// One objective's verdict.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SloCheck {
    /// `all` or a phase name.
    pub scope: String,
    /// `ttft_p95`, `e2e_p99`, `error_rate`, `goodput`, `answer_match`, `recall_at_k`.
    pub slo: String,
    /// The limit, in the unit of `actual`.
    pub limit: f64,
    /// What was measured (ms for latencies, fractions for rates); `None` when
    /// nothing was measured.
    pub actual: Option<f64>,
    /// Whether it held.
    pub passed: bool,
    /// One sentence for people.
    pub message: String,
}

fn check_scope(
    scope: &str,
    slo: &PhaseSlo,
    stats: &PhaseStats,
    extra: &PhaseExtra,
    out: &mut Vec<SloCheck>,
) {
    let mut push = |name: &str, limit: f64, actual: Option<f64>, max: bool, unit: &str| {
        // An empty measurement cannot break a latency objective.
        let passed = actual.is_none_or(|a| if max { a <= limit } else { a >= limit });
        let fmt = |v: f64| {
            if unit == "ms" {
                format!("{v:.1} ms")
            } else {
                format!("{:.2}%", v * 100.0)
            }
        };
        let message = match actual {
            None => format!("{scope}: {name}: nothing measured"),
            Some(a) => format!(
                "{scope}: {name} {} {} {}",
                fmt(a),
                if passed { "within" } else { "breaks" },
                if max {
                    format!("limit {}", fmt(limit))
                } else {
                    format!("minimum {}", fmt(limit))
                }
            ),
        };
        out.push(SloCheck {
            scope: scope.to_owned(),
            slo: name.to_owned(),
            limit,
            actual,
            passed,
            message,
        });
    };
    let ms = |d: brownout_faults::duration::DurationStr| d.0.as_secs_f64() * 1000.0;
    if let Some(l) = slo.ttft_p95 {
        push(
            "ttft_p95",
            ms(l),
            stats.ttft.as_ref().map(|p| p.p95_ms),
            true,
            "ms",
        );
    }
    if let Some(l) = slo.e2e_p99 {
        push(
            "e2e_p99",
            ms(l),
            stats.e2e.as_ref().map(|p| p.p99_ms),
            true,
            "ms",
        );
    }
    if let Some(l) = slo.error_rate {
        let a = (stats.requests > 0).then_some(stats.error_rate);
        push("error_rate", l, a, true, "");
    }
    if let Some(min) = slo.answer_match {
        push(
            "answer_match",
            min,
            extra.correctness.answer_match,
            false,
            "",
        );
    }
    if let Some(min) = slo.recall_at_k {
        push("recall_at_k", min, extra.correctness.recall_at_k, false, "");
    }
    if let Some(min) = slo.goodput.as_ref().and_then(|g| g.min) {
        let a = (stats.requests > 0).then_some(extra.goodput);
        push("goodput", min, a, false, "");
    }
}

/// Evaluate every objective, overall (`all`) and for each phase.
pub fn evaluate(slo: &Slo, r: &EngineResult) -> Vec<SloCheck> {
    let mut out = Vec::new();
    check_scope("all", &slo.overall(), &r.stats.total, &r.total, &mut out);
    for (stats, extra) in r.stats.phases.iter().zip(&r.phases) {
        check_scope(
            &stats.name,
            &slo.for_phase(&stats.name),
            stats,
            extra,
            &mut out,
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sample::Outcome;

    #[test]
    fn an_unmeasured_phase_says_no_data_not_a_healthy_pass() {
        let empty = Extra {
            requests: 0,
            good: 0,
            attempts: 0,
        }
        .finish("storm");
        assert_eq!(empty.goodput_text(), "no data");
        assert_eq!(empty.amplification_text(), "no data");
        let busy = Extra {
            requests: 4,
            good: 3,
            attempts: 5,
        }
        .finish("calm");
        assert_eq!(busy.goodput_text(), "75.0%");
        assert_eq!(busy.amplification_text(), "1.25×");
    }

    fn sample(outcome: Outcome, e2e_ms: u64, ttft_ms: Option<u64>) -> Sample {
        Sample {
            seq: 0,
            phase: 0,
            outcome,
            e2e: Duration::from_millis(e2e_ms),
            ttft: ttft_ms.map(Duration::from_millis),
            itl: Vec::new(),
            output_tokens: Some(11),
            tokens_source: None,
            input_tokens: None,
            send_lag: Duration::ZERO,
            answer: None,
            embedding: None,
            ids: None,
        }
    }

    /// The open-loop schedule under paused time: the phase driver fires exactly at
    /// each boundary, and each phase counts exactly the Poisson arrivals the seed
    /// puts in it, whatever the target does (here it refuses every connection).
    #[tokio::test(start_paused = true)]
    async fn open_loop_schedule_and_phase_driver_are_exact() {
        use std::sync::Mutex;
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let src = "version: 1\nname: t\ntarget: {upstream: sim}\nprofile: p.yaml\n\
                   workload: {name: w, arrival: {rate: 40/s}, client: {retries: 0, timeout: 1s}}\n";
        let spec = crate::scenario::load_scenario(src, "t")
            .unwrap()
            .all_workloads()[0]
            .clone();
        let phases = vec![
            PhasePlan::new("calm", Duration::from_millis(1500)),
            PhasePlan::new("storm", Duration::from_millis(2500)),
            PhasePlan::new("after", Duration::from_millis(1000)),
        ];
        let calls: Arc<Mutex<Vec<(usize, String, Instant)>>> = Arc::default();
        let seen = Arc::clone(&calls);
        let plan = EnginePlan {
            phases: phases.clone(),
            workloads: vec![EngineWorkload {
                spec,
                target: format!("http://127.0.0.1:{port}").parse().unwrap(),
                prompts: Vec::new(),
            }],
            seed: 21,
            slo: Slo::default(),
            stop_when: None,
            baseline: None,
            phase_driver: Some(PhaseDriver(Arc::new(move |i, name| {
                seen.lock()
                    .unwrap()
                    .push((i, name.to_owned(), Instant::now()));
            }))),
            watch: None,
        };
        let r = run_engine(plan, crate::NoProgress).await.unwrap();
        let calls = calls.lock().unwrap();
        let names: Vec<_> = calls.iter().map(|c| (c.0, c.1.as_str())).collect();
        assert_eq!(names, [(0, "calm"), (1, "storm"), (2, "after")]);
        let t0 = calls[0].2;
        assert_eq!(calls[1].2 - t0, Duration::from_millis(1500));
        assert_eq!(calls[2].2 - t0, Duration::from_millis(4000));
        // The workload's arrivals come from the plan's seed (+ its index, 0).
        let mut expected = [0u64; 3];
        for t in PoissonArrivals::new(40.0, 21)
            .unwrap()
            .take_while(|t| *t < Duration::from_secs(5))
        {
            let i = if t < Duration::from_millis(1500) {
                0
            } else if t < Duration::from_millis(4000) {
                1
            } else {
                2
            };
            expected[i] += 1;
        }
        let got: Vec<u64> = r.stats.phases.iter().map(|p| p.requests).collect();
        assert_eq!(got, expected);
        assert!(expected.iter().all(|n| *n > 10), "{expected:?}");
        // Every request failed to connect: errors, not latencies.
        assert_eq!(r.stats.total.errors, r.stats.total.requests);
        assert!(r.stats.total.e2e.is_none());
    }

    #[test]
    fn goodput_needs_every_threshold() {
        let d = |ms| {
            Some(brownout_faults::duration::DurationStr(
                Duration::from_millis(ms),
            ))
        };
        let g = Goodput {
            min: Some(0.9),
            ttft: d(100),
            tpot: d(10),
            e2e: None,
        };
        assert!(is_good(&sample(Outcome::Ok, 150, Some(50)), Some(&g)));
        // tpot = (250 - 50) / 10 = 20 ms > 10 ms
        assert!(!is_good(&sample(Outcome::Ok, 250, Some(50)), Some(&g)));
        assert!(!is_good(&sample(Outcome::Ok, 100, Some(150)), Some(&g)));
        assert!(!is_good(&sample(Outcome::HttpError(429), 10, None), None));
        assert!(is_good(&sample(Outcome::Ok, 10_000, None), None));
        // Non-streaming: TTFT is the e2e; no TPOT.
        assert!(is_good(&sample(Outcome::Ok, 90, None), Some(&g)));
        assert!(!is_good(&sample(Outcome::Ok, 110, None), Some(&g)));
    }
}
