//! `brownout capacity`: the highest load at which a scenario's objectives still
//! hold (docs/capacity.md).
//!
//! The pure parts live here, apart from anything that sends a request, so each can
//! be tested on its own: the [`wilson`] interval a probe is judged with, the
//! [`Search`] that picks the next load (double, then bisect), the saturation
//! checks that end a hopeless probe early ([`backlog_rising`],
//! [`ttft_rising_at_flat_throughput`]), the [`knee`] of the throughput curve, and
//! the [`ProbeWatcher`] that the engine feeds with each finished request. The
//! proxy crate drives them against a target (in-process or a running proxy).

use std::fmt::Write as _;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::engine::{is_good, WatchSays, Watcher};
use crate::sample::Sample;
use crate::scenario::{Goodput, Vary};

/// The normal quantile of a two-sided 95% interval.
pub const Z95: f64 = 1.959_963_984_540_054;

/// The Wilson score interval of `good` successes in `n` trials at `z`: unlike the
/// normal approximation it stays inside [0, 1] and is honest at 0 or `n`
/// successes, where a probe of a healthy server lands (100% good, yet not proof
/// of 99%). `(0, 1)` with no trials: nothing is known.
pub fn wilson(good: u64, n: u64, z: f64) -> (f64, f64) {
    if n == 0 {
        return (0.0, 1.0);
    }
    let n_f = n as f64;
    let p = good.min(n) as f64 / n_f;
    let z2 = z * z;
    let denom = 1.0 + z2 / n_f;
    let centre = (p + z2 / (2.0 * n_f)) / denom;
    let half = z * (p * (1.0 - p) / n_f + z2 / (4.0 * n_f * n_f)).sqrt() / denom;
    // At 0 or n successes the bounds are exactly 0 or 1 (rounding aside).
    let lo = if good == 0 {
        0.0
    } else {
        (centre - half).max(0.0)
    };
    let hi = if good >= n {
        1.0
    } else {
        (centre + half).min(1.0)
    };
    (lo, hi)
}

/// What a probe's attainment says about its target share.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Judgement {
    /// The interval's lower bound is at or above the target.
    Pass,
    /// Its upper bound is below the target.
    Fail,
    /// The interval straddles the target: more requests are needed.
    Undecided,
}

/// Judge `good` of `n` against `attainment` with a 95% Wilson interval. An
/// attainment of 1 can never be proven by a finite sample, so a probe with every
/// request good passes it once the lower bound reaches `1 - 1/n`.
pub fn judge(good: u64, n: u64, attainment: f64) -> Judgement {
    let (lo, hi) = wilson(good, n, Z95);
    if n > 0 && (lo >= attainment || (attainment >= 1.0 && good == n && n >= 30)) {
        Judgement::Pass
    } else if n > 0 && hi < attainment {
        Judgement::Fail
    } else {
        Judgement::Undecided
    }
}

/// How the search ended.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "verdict", content = "load")]
pub enum SearchEnd {
    /// The highest passing load, within `tolerance` of the lowest failing one.
    Found(f64),
    /// `max` itself passed: the capacity is at least `max`.
    AtLeastMax(f64),
    /// The first probe, at `start`, failed.
    BelowStart,
}

/// The load search: double from `start` until a probe fails (or `max` passes),
/// then bisect between the highest pass and the lowest failure until they are
/// within `tolerance` of each other. Concurrency is searched in whole users.
#[derive(Debug, Clone, PartialEq)]
pub struct Search {
    start: f64,
    max: f64,
    tolerance: f64,
    whole: bool,
    best_pass: Option<f64>,
    lowest_fail: Option<f64>,
    next: Option<f64>,
    end: Option<SearchEnd>,
}

impl Search {
    /// A search from `start` to `max`; `whole` rounds every load to whole users.
    pub fn new(start: f64, max: f64, tolerance: f64, whole: bool) -> Self {
        let start = if whole { start.round().max(1.0) } else { start };
        Search {
            start,
            max: max.max(start),
            tolerance,
            whole,
            best_pass: None,
            lowest_fail: None,
            next: Some(start),
            end: None,
        }
    }

    /// The load to probe next; `None` once the search has ended.
    pub fn next_load(&self) -> Option<f64> {
        self.next
    }

    /// How the search ended, once it has.
    pub fn end(&self) -> Option<SearchEnd> {
        self.end
    }

    /// The highest load that passed so far.
    pub fn best_pass(&self) -> Option<f64> {
        self.best_pass
    }

    /// Stop where the search stands (the run was stopped, or the load generator
    /// reached its own ceiling): what passed is all that is known.
    pub fn stop(&mut self) -> Option<SearchEnd> {
        self.next = None;
        self.end = Some(match self.best_pass {
            Some(b) => SearchEnd::Found(b),
            None => SearchEnd::BelowStart,
        });
        self.end
    }

    /// Record the probe of `load`: it passed or not. Returns the next load.
    pub fn record(&mut self, load: f64, passed: bool) -> Option<f64> {
        if passed {
            self.best_pass = Some(self.best_pass.map_or(load, |b| b.max(load)));
        } else {
            self.lowest_fail = Some(self.lowest_fail.map_or(load, |f| f.min(load)));
        }
        self.next = match (self.best_pass, self.lowest_fail) {
            (None, Some(_)) => {
                self.end = Some(SearchEnd::BelowStart);
                None
            }
            (Some(b), None) if b >= self.max => {
                self.end = Some(SearchEnd::AtLeastMax(self.max));
                None
            }
            (Some(b), None) => Some(self.round((b * 2.0).min(self.max))),
            (Some(b), Some(f)) => {
                let mid = self.round((b + f) / 2.0);
                let close = f - b <= self.tolerance * b || mid <= b || mid >= f;
                if close {
                    self.end = Some(SearchEnd::Found(b));
                    None
                } else {
                    Some(mid)
                }
            }
            (None, None) => Some(self.start),
        };
        self.next
    }

    fn round(&self, v: f64) -> f64 {
        if self.whole {
            v.floor().max(1.0)
        } else {
            // Rates to three significant digits, so reports read 37.5/s, not 37.4999.
            let mag = 10f64.powi(v.abs().log10().floor() as i32 - 2);
            (v / mag).round() * mag
        }
    }
}

/// Whether an open loop's backlog (requests sent and not finished, sampled over
/// the measured window) is growing: the last third's mean at least twice the
/// first third's and above `floor`. A server that keeps up holds its backlog
/// steady (Little's law: rate × latency); one that cannot lets it grow without
/// bound, and waiting for the probe's end only lengthens the queue.
pub fn backlog_rising(in_flight: &[f64], floor: f64) -> bool {
    if in_flight.len() < 6 {
        return false;
    }
    let third = in_flight.len() / 3;
    let mean = |s: &[f64]| s.iter().sum::<f64>() / s.len() as f64;
    let first = mean(&in_flight[..third]);
    let last = mean(&in_flight[in_flight.len() - third..]);
    last > floor && last >= 2.0 * first.max(1.0)
}

/// Whether a closed loop's TTFT rises while its throughput stays flat, over
/// per-second bins of (completions, median TTFT in ms): the last third's TTFT at
/// least 1.5× the first third's while throughput grew by under 10%. More waiting
/// for no more work done is a queue building in front of a saturated server.
pub fn ttft_rising_at_flat_throughput(bins: &[(f64, f64)]) -> bool {
    if bins.len() < 6 {
        return false;
    }
    let third = bins.len() / 3;
    let mean =
        |s: &[(f64, f64)], f: fn(&(f64, f64)) -> f64| s.iter().map(f).sum::<f64>() / s.len() as f64;
    let (first, last) = (&bins[..third], &bins[bins.len() - third..]);
    let (tp0, tp1) = (mean(first, |b| b.0), mean(last, |b| b.0));
    let (tt0, tt1) = (mean(first, |b| b.1), mean(last, |b| b.1));
    tt0 > 0.0 && tt1 >= 1.5 * tt0 && tp1 < 1.1 * tp0.max(f64::MIN_POSITIVE)
}

/// The knee of a throughput curve, `(load, throughput)` sorted by load: the
/// first load after which throughput grows by less than half as fast as it did
/// from zero to the first point (the curve bends from linear to flat). `None`
/// with fewer than three points or a curve that never bends.
pub fn knee(points: &[(f64, f64)]) -> Option<f64> {
    if points.len() < 3 {
        return None;
    }
    let (l0, t0) = points[0];
    if l0 <= 0.0 {
        return None;
    }
    let initial = t0 / l0;
    if initial <= 0.0 {
        return None;
    }
    points.windows(2).find_map(|w| {
        let ((la, ta), (lb, tb)) = (w[0], w[1]);
        let slope = if lb > la { (tb - ta) / (lb - la) } else { 0.0 };
        (slope < 0.5 * initial).then_some(la)
    })
}

/// What a probe was told to do.
#[derive(Debug, Clone)]
pub struct ProbeConfig {
    /// Closed or open loop.
    pub vary: Vary,
    /// The load: users, or requests a second.
    pub load: f64,
    /// Not judged: the time the load takes to settle.
    pub warmup: Duration,
    /// The first decision point, after warmup.
    pub probe: Duration,
    /// The last: an undecided probe fails there.
    pub probe_max: Duration,
    /// The share that must be good.
    pub attainment: f64,
    /// What counts as good.
    pub goodput: Option<Goodput>,
    /// The engine phase index measured (after the warmup phase, if any).
    pub measured_phase: usize,
    /// Set from outside (Ctrl-C) to stop the probe and the search.
    pub stop: Option<std::sync::Arc<std::sync::atomic::AtomicBool>>,
}

/// Why a probe ended as it did, before the other objectives are checked.
#[derive(Debug, Clone, PartialEq)]
pub enum ProbeEnd {
    /// Judged at a decision point.
    Judged(Judgement),
    /// Over-saturated: ended early, failed.
    Saturated(String),
    /// Still undecided at `probe_max`.
    Undecided,
    /// Stopped from outside (the operator).
    Stopped,
}

/// Feeds on the engine's finished requests and ticks to decide a probe: at
/// `probe`, then every `probe` more up to `probe_max`, the Wilson interval of the
/// good share is judged; the probe finishes (sends no more, lets in-flight
/// requests end, which count too) once decided. Saturation aborts it sooner.
#[derive(Debug)]
pub struct ProbeWatcher {
    cfg: ProbeConfig,
    /// Finished requests scheduled in the measured phase.
    pub requests: u64,
    /// Of those, the good ones.
    pub good: u64,
    /// Of those, the failed ones (not ok).
    pub errors: u64,
    /// Output tokens of the successful ones.
    pub output_tokens: u64,
    /// Input tokens of the successful ones whose usage said.
    pub input_tokens: u64,
    /// Successful ones whose usage gave no input count: any makes the input
    /// rate unknown rather than understated.
    pub input_unknown: u64,
    /// Their end-to-end latencies summed (every outcome), seconds: a closed
    /// loop's throughput is users / mean latency (Little's law).
    pub e2e_sum_s: f64,
    /// TTFTs (or e2e without a stream) of the successful ones, ms.
    pub ttft_ms: Vec<f64>,
    /// Successful requests that finished inside the measured window: its
    /// throughput (requests drained after it do not inflate it).
    pub window_ok: u64,
    /// Their output tokens.
    pub window_tokens: u64,
    /// When sending stopped (the measured window's end), from the engine's start.
    pub cutoff: Option<Duration>,
    /// How the watcher ended the probe.
    pub end: Option<ProbeEnd>,
    /// In-flight counts sampled during the measured window.
    in_flight: Vec<f64>,
    /// Per-second bins of the measured window by completion: (count, TTFTs).
    bins: Vec<(u64, Vec<f64>)>,
    /// The longest and the total lateness of the engine's 250 ms ticks: a
    /// generator whose one thread is busy wakes late.
    last_tick: Option<Duration>,
    late_total: Duration,
    ticks: u32,
    /// The generator thread's CPU time at the first measured tick, and the last,
    /// with when they were read: its busy share of one core.
    cpu_first: Option<(Duration, f64)>,
    cpu_last: Option<(Duration, f64)>,
    next_check: Duration,
}

/// The calling thread's CPU time (user + system), in seconds, from Linux's
/// `/proc/thread-self/stat`; `None` elsewhere. The engine runs on one thread of
/// its own, so this is the load generator's own work.
pub fn thread_cpu_seconds() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/thread-self/stat").ok()?;
    // Fields after the command name (which may hold spaces) in parentheses.
    let rest = stat.rsplit_once(')')?.1;
    let f: Vec<&str> = rest.split_whitespace().collect();
    let utime: f64 = f.get(11)?.parse().ok()?;
    let stime: f64 = f.get(12)?.parse().ok()?;
    // Linux reports in clock ticks of USER_HZ, 100 on every mainstream platform.
    Some((utime + stime) / 100.0)
}

/// Above this share of one core, the load generator's thread is the bottleneck.
pub const GENERATOR_BUSY_SHARE: f64 = 0.9;

/// A tick later than this on average means the load generator itself is the
/// bottleneck (its single thread cannot keep up with the events it must handle).
pub const GENERATOR_LATE_TICK: Duration = Duration::from_millis(25);

impl ProbeWatcher {
    /// A watcher for one probe.
    pub fn new(cfg: ProbeConfig) -> Self {
        let next_check = cfg.warmup + cfg.probe;
        ProbeWatcher {
            cfg,
            requests: 0,
            good: 0,
            errors: 0,
            output_tokens: 0,
            input_tokens: 0,
            input_unknown: 0,
            e2e_sum_s: 0.0,
            ttft_ms: Vec::new(),
            window_ok: 0,
            window_tokens: 0,
            cutoff: None,
            end: None,
            in_flight: Vec::new(),
            bins: Vec::new(),
            last_tick: None,
            late_total: Duration::ZERO,
            ticks: 0,
            cpu_first: None,
            cpu_last: None,
            next_check,
        }
    }

    /// The mean lateness of the engine's ticks during the measured window.
    pub fn mean_tick_lateness(&self) -> Duration {
        if self.ticks == 0 {
            Duration::ZERO
        } else {
            self.late_total / self.ticks
        }
    }

    /// The generator thread's busy share of one core over the measured window
    /// (`None` where it cannot be read or nothing was measured).
    pub fn generator_cpu_share(&self) -> Option<f64> {
        let ((t0, c0), (t1, c1)) = (self.cpu_first?, self.cpu_last?);
        let wall = t1.saturating_sub(t0).as_secs_f64();
        (wall >= 1.0).then(|| ((c1 - c0) / wall).max(0.0))
    }

    /// Successful requests a second and their output tokens a second. A closed
    /// loop's users move in step (they start together and a batching server
    /// finishes them together), so counting completions in a short window
    /// counts rounds; Little's law gives the rate from the users and their mean
    /// latency instead. An open loop's is what finished in the window.
    pub fn throughput(&self, measured: Duration) -> (f64, f64) {
        let ok = self.requests.saturating_sub(self.errors);
        match self.cfg.vary {
            Vary::Concurrency if self.requests > 0 && self.e2e_sum_s > 0.0 => {
                let mean_e2e = self.e2e_sum_s / self.requests as f64;
                let rate = self.cfg.load / mean_e2e * ok as f64 / self.requests as f64;
                let per = if ok == 0 {
                    0.0
                } else {
                    self.output_tokens as f64 / ok as f64
                };
                (rate, rate * per)
            }
            _ => {
                let secs = measured.as_secs_f64().max(1e-3);
                (
                    self.window_ok as f64 / secs,
                    self.window_tokens as f64 / secs,
                )
            }
        }
    }

    /// Input tokens a second at `rate` successful requests a second, from the
    /// successful requests' mean input; `None` when any of them lacked a count.
    pub fn input_rate(&self, rate: f64) -> Option<f64> {
        let ok = self.requests.saturating_sub(self.errors);
        (ok > 0 && self.input_unknown == 0).then(|| rate * self.input_tokens as f64 / ok as f64)
    }

    /// Whether the load generator itself was the bottleneck during the probe: its
    /// ticks came late (its thread starved or overloaded), or its thread was busy
    /// nearly all the time. Such a probe measures the generator, not the server.
    pub fn generator_bound(&self) -> bool {
        self.mean_tick_lateness() > GENERATOR_LATE_TICK
            || self
                .generator_cpu_share()
                .is_some_and(|s| s > GENERATOR_BUSY_SHARE)
    }

    /// The measured window's length, from the end of warmup to when sending
    /// stopped (or `at`, if it has not).
    pub fn measured(&self, at: Duration) -> Duration {
        self.cutoff
            .unwrap_or(at)
            .saturating_sub(self.cfg.warmup)
            .max(Duration::from_millis(1))
    }

    fn saturation(&self) -> Option<String> {
        match self.cfg.vary {
            Vary::Rate => {
                // A backlog worth worrying about: more than a second of arrivals.
                let floor = self.cfg.load.max(4.0);
                backlog_rising(&self.in_flight, floor).then(|| {
                    format!(
                        "saturated: the backlog grew from {:.0} to {:.0} requests in flight",
                        self.in_flight.first().copied().unwrap_or(0.0),
                        self.in_flight.last().copied().unwrap_or(0.0)
                    )
                })
            }
            Vary::Concurrency => {
                let bins: Vec<(f64, f64)> = self
                    .bins
                    .iter()
                    .filter(|(n, t)| *n > 0 && !t.is_empty())
                    .map(|(n, t)| {
                        let mut t = t.clone();
                        t.sort_by(f64::total_cmp);
                        (*n as f64, t[t.len() / 2])
                    })
                    .collect();
                ttft_rising_at_flat_throughput(&bins).then(|| {
                    format!(
                        "saturated: TTFT rose from {:.0} ms to {:.0} ms at flat throughput",
                        bins.first().map_or(0.0, |b| b.1),
                        bins.last().map_or(0.0, |b| b.1)
                    )
                })
            }
        }
    }
}

impl Watcher for ProbeWatcher {
    fn done(&mut self, at: Duration, _scheduled: Duration, phase: usize, s: &Sample) {
        if phase != self.cfg.measured_phase {
            return;
        }
        self.requests += 1;
        self.e2e_sum_s += s.e2e.as_secs_f64();
        self.good += u64::from(is_good(s, self.cfg.goodput.as_ref()));
        if s.outcome.is_ok() {
            self.output_tokens += s.output_tokens.unwrap_or(0);
            match s.input_tokens {
                Some(n) => self.input_tokens += n,
                None => self.input_unknown += 1,
            }
            if self.cutoff.is_none_or(|c| at <= c) {
                self.window_ok += 1;
                self.window_tokens += s.output_tokens.unwrap_or(0);
            }
            let ttft = s.ttft.unwrap_or(s.e2e).as_secs_f64() * 1000.0;
            self.ttft_ms.push(ttft);
            let bin = at.saturating_sub(self.cfg.warmup).as_secs() as usize;
            if self.bins.len() <= bin {
                self.bins.resize_with(bin + 1, Default::default);
            }
            self.bins[bin].0 += 1;
            self.bins[bin].1.push(ttft);
        } else {
            self.errors += 1;
        }
    }

    fn tick(&mut self, at: Duration, in_flight: usize, _sent: u64) -> WatchSays {
        if let Some(prev) = self.last_tick.replace(at) {
            if at > self.cfg.warmup {
                let late = at.saturating_sub(prev + Duration::from_millis(250));
                self.late_total += late;
                self.ticks += 1;
            }
        }
        if self.cutoff.is_some() {
            return WatchSays::Go;
        }
        if self
            .cfg
            .stop
            .as_ref()
            .is_some_and(|s| s.load(std::sync::atomic::Ordering::Relaxed))
        {
            self.cutoff = Some(at);
            self.end = Some(ProbeEnd::Stopped);
            return WatchSays::Abort("stopped by the operator".to_owned());
        }
        if at < self.cfg.warmup {
            return WatchSays::Go;
        }
        self.in_flight.push(in_flight as f64);
        if let Some(cpu) = thread_cpu_seconds() {
            self.cpu_first.get_or_insert((at, cpu));
            self.cpu_last = Some((at, cpu));
        }
        let measured = at - self.cfg.warmup;
        // Early saturation checks need a few seconds of signal.
        if measured >= Duration::from_secs(3).min(self.cfg.probe) {
            if let Some(why) = self.saturation() {
                // Closed-loop users cannot queue without bound: rising TTFT that
                // still meets the objectives (the attainment already passes) is
                // the load the probe is there to judge, not a hopeless probe. A
                // busy machine's hiccup once failed a probe at 100% attainment.
                let passing = self.cfg.vary == Vary::Concurrency
                    && judge(self.good, self.requests, self.cfg.attainment) == Judgement::Pass;
                if !passing {
                    self.cutoff = Some(at);
                    self.end = Some(ProbeEnd::Saturated(why.clone()));
                    return WatchSays::Abort(why);
                }
            }
        }
        if at < self.next_check {
            return WatchSays::Go;
        }
        let j = judge(self.good, self.requests, self.cfg.attainment);
        let last = measured >= self.cfg.probe_max;
        if j != Judgement::Undecided || last {
            self.cutoff = Some(at);
            self.end = Some(if j == Judgement::Undecided {
                ProbeEnd::Undecided
            } else {
                ProbeEnd::Judged(j)
            });
            return WatchSays::Finish;
        }
        self.next_check += self.cfg.probe;
        WatchSays::Go
    }
}

/// One probe as `capacity.json` reports it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProbeReport {
    /// Users or requests a second.
    pub load: f64,
    /// Requests measured (scheduled after warmup and finished).
    pub requests: u64,
    /// Of them, good (ok and within the goodput thresholds).
    pub good: u64,
    /// `good / requests` (`null` with none).
    pub attainment: Option<f64>,
    /// 95% Wilson interval of the attainment.
    pub ci: [f64; 2],
    /// Whether the probe passed.
    pub passed: bool,
    /// `pass`, `fail`, `undecided`, `saturated`, `slo`, `stopped` or
    /// `generator_bound`.
    pub verdict: String,
    /// One sentence for people.
    pub reason: String,
    /// Completed requests a second over the measured window.
    pub rate_rps: f64,
    /// Output tokens a second of the successful ones.
    pub output_tokens_per_s: f64,
    /// p95 TTFT of the successful ones, ms (e2e without a stream).
    pub ttft_p95_ms: Option<f64>,
    /// Failed requests' share.
    pub error_rate: Option<f64>,
    /// Seconds measured.
    pub measured_s: f64,
    /// The load generator fell behind: the probe measured it, not the server.
    pub generator_bound: bool,
    /// The generator thread's busy share of one core during the probe.
    #[serde(default)]
    pub generator_cpu: Option<f64>,
    /// Input tokens a second of the successful ones (`null` when an answer's
    /// usage gave no input count).
    #[serde(default)]
    pub input_tokens_per_s: Option<f64>,
    /// Mean power over the probe, watts, every replica together (`null`
    /// without an `energy` block or a source to read).
    #[serde(default)]
    pub power_w: Option<f64>,
    /// Where `power_w` came from: `dcgm`, `gpu_model` or `load`.
    #[serde(default)]
    pub power_source: Option<crate::energy::PowerSource>,
}

/// One phase's search as `capacity.json` reports it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunReport {
    /// The phase held (or `baseline`: no faults).
    pub phase: String,
    /// `concurrency` or `rate`.
    pub vary: String,
    /// The highest passing load (`null` when none passed: never made up).
    pub capacity: Option<f64>,
    /// `true` when `max` passed: the capacity is at least `capacity`.
    pub at_least: bool,
    /// Requests a second at capacity.
    pub rate_rps: Option<f64>,
    /// Output tokens a second at capacity.
    pub output_tokens_per_s: Option<f64>,
    /// `rate_rps × 3600`.
    pub inferences_per_hour: Option<f64>,
    /// Priced by the scenario's `cost` block.
    pub cost_per_1k_requests: Option<f64>,
    /// Priced by the scenario's `cost` block.
    pub cost_per_1m_output_tokens: Option<f64>,
    /// From the scenario's `energy` block.
    pub energy_wh_per_1k_tokens: Option<f64>,
    /// Mean power at capacity, watts.
    #[serde(default)]
    pub power_w: Option<f64>,
    /// Where `power_w` came from: `dcgm`, `gpu_model` or `load` (the last
    /// resort: load over capacity, so full power at capacity).
    #[serde(default)]
    pub power_source: Option<crate::energy::PowerSource>,
    /// `found`, `not found up to max`, `below start`, `stopped` or
    /// `generator ceiling`.
    pub verdict: String,
    /// Why, in a sentence.
    pub reason: String,
    /// The knee of throughput against load, where it bends.
    pub knee: Option<f64>,
    /// p95 TTFT at capacity, ms.
    pub ttft_p95_ms: Option<f64>,
    /// Capacity lost against the baseline's, percent (`null` for the baseline or
    /// without both capacities).
    pub lost_vs_baseline_pct: Option<f64>,
    /// Every probe, in the order run.
    pub probes: Vec<ProbeReport>,
}

/// `capacity.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CapacityReport {
    /// The scenario's name.
    pub name: String,
    /// The share of good requests each probe had to show.
    pub attainment: f64,
    /// One search per phase of `under`.
    pub runs: Vec<RunReport>,
    /// `ok`, `below start` or `stopped`: the exit code's reason.
    pub verdict: String,
    /// The exit code.
    pub exit_code: u8,
}

impl RunReport {
    /// The run's verdict and capacity from a finished search over `probes`.
    pub fn finish(phase: &str, vary: Vary, end: SearchEnd, probes: Vec<ProbeReport>) -> Self {
        let (capacity, at_least, verdict) = match end {
            SearchEnd::Found(c) => (Some(c), false, "found"),
            SearchEnd::AtLeastMax(m) => (Some(m), true, "not found up to max"),
            SearchEnd::BelowStart => (None, false, "below start"),
        };
        let at = capacity.and_then(|c| probes.iter().rfind(|p| p.passed && p.load == c));
        let reason = match end {
            SearchEnd::Found(c) => {
                let fail = probes
                    .iter()
                    .filter(|p| !p.passed && p.load > c)
                    .map(|p| p.load)
                    .fold(f64::INFINITY, f64::min);
                format!(
                    "{} passed; {} failed",
                    fmt_load(vary, c),
                    fmt_load(vary, fail)
                )
            }
            SearchEnd::AtLeastMax(m) => format!(
                "{} (max) passed: the capacity is at least that; raise `max` to find it",
                fmt_load(vary, m)
            ),
            SearchEnd::BelowStart => below_start_reason(&probes),
        };
        let mut curve: Vec<(f64, f64)> = probes.iter().map(|p| (p.load, p.rate_rps)).collect();
        curve.sort_by(|a, b| a.0.total_cmp(&b.0));
        curve.dedup_by(|a, b| a.0 == b.0);
        RunReport {
            phase: phase.to_owned(),
            vary: vary.name().to_owned(),
            capacity,
            at_least,
            rate_rps: at.map(|p| p.rate_rps),
            output_tokens_per_s: at.map(|p| p.output_tokens_per_s),
            inferences_per_hour: at.map(|p| p.rate_rps * 3600.0),
            cost_per_1k_requests: None,
            cost_per_1m_output_tokens: None,
            energy_wh_per_1k_tokens: None,
            power_w: at.and_then(|p| p.power_w),
            power_source: at.and_then(|p| p.power_source),
            verdict: verdict.to_owned(),
            reason,
            knee: knee(&curve),
            ttft_p95_ms: at.and_then(|p| p.ttft_p95_ms),
            lost_vs_baseline_pct: None,
            probes,
        }
    }
}

impl RunReport {
    /// Price the run at its capacity: an hour at the capacity probe's rates
    /// (requests, billed input and output tokens) and mean power, through
    /// [`crate::cost::price`]. Per-token prices need the input rate: where an
    /// answer gave no input count they are left out, not priced as free input.
    /// Without a metered power, `energy` with a power model prices the capacity
    /// at full power (load over capacity is 1 there), marked `load`.
    pub fn price(
        &mut self,
        cost: Option<&crate::cost::CostSpec>,
        energy: Option<&crate::cost::EnergySpec>,
    ) {
        let Some(rate) = self.rate_rps.filter(|r| r.is_finite() && *r > 0.0) else {
            return;
        };
        let at = self
            .capacity
            .and_then(|c| self.probes.iter().rfind(|p| p.passed && p.load == c));
        let input = at.and_then(|p| p.input_tokens_per_s);
        let hour = 3600.0;
        if self.power_w.is_none() {
            if let (Some(e), Some(c)) = (energy, self.capacity) {
                let replicas = cost.and_then(|c| c.replicas).unwrap_or(1);
                if let Some(r) = crate::energy::power_from_load(e, c, c, replicas, hour) {
                    self.power_w = Some(r.mean_w);
                    self.power_source = Some(r.source);
                }
            }
        }
        let window = crate::cost::Window {
            duration_s: hour,
            requests: (rate * hour).round() as u64,
            billed: crate::cost::Tokens {
                input: (input.unwrap_or(0.0) * hour).round() as u64,
                output: (self.output_tokens_per_s.unwrap_or(0.0) * hour).round() as u64,
            },
            gpu_busy: None,
            power_w: self.power_w,
        };
        let mut priced = crate::cost::price(cost, energy, &window);
        if input.is_none() {
            priced.tokens = None;
        }
        self.cost_per_1k_requests = priced.cost_per_1k_requests();
        self.cost_per_1m_output_tokens = priced.cost_per_1m_output_tokens();
        self.energy_wh_per_1k_tokens = priced.energy_wh_per_1k_tokens;
    }
}

/// Why no load passed, from the first probe: an upstream that failed every
/// request, objectives no request met, or plain overload.
fn below_start_reason(probes: &[ProbeReport]) -> String {
    let Some(p) = probes.first() else {
        return "no probe ran".to_owned();
    };
    let load = p.load;
    if p.requests > 0 && p.error_rate == Some(1.0) {
        format!("every request failed at the first load ({load}): the upstream fails at every load tried; no capacity")
    } else if p.requests > 0 && p.good == 0 {
        format!("no request met the goodput thresholds at the first load ({load}): the objectives may be out of reach at any load; no capacity")
    } else if p.verdict == "undecided" {
        format!(
            "the first probe, at `start` ({load}), stayed undecided: {}; lengthen `probe` or `probe_max` for more evidence, or lower `start`",
            p.reason
        )
    } else {
        format!(
            "the first probe, at `start` ({load}), failed: {}; lower `start`",
            p.reason
        )
    }
}

/// `64 users` or `37.5/s`.
pub fn fmt_load(vary: Vary, v: f64) -> String {
    if !v.is_finite() {
        return "–".to_owned();
    }
    match vary {
        Vary::Concurrency => format!("{v} users"),
        Vary::Rate => format!("{v}/s"),
    }
}

/// Fill each run's `lost_vs_baseline_pct` against the run of `baseline`.
pub fn compare_with_baseline(runs: &mut [RunReport], baseline: &str) {
    let base = runs.iter().find(|r| r.phase == baseline);
    let base_at_least = base.is_some_and(|r| r.at_least);
    let base = base.and_then(|r| r.capacity);
    for r in runs.iter_mut() {
        r.lost_vs_baseline_pct = match (base, r.capacity) {
            // Both only bounded below (each passed `max`): nothing is known of
            // the loss, which a 0% would claim.
            (Some(_), Some(_)) if base_at_least && r.at_least => None,
            (Some(b), Some(c)) if r.phase != baseline && b > 0.0 => Some((b - c) / b * 100.0),
            (Some(_), None) if r.phase != baseline => Some(100.0),
            _ => None,
        };
    }
}

/// One terminal line for a probe.
pub fn probe_line(phase: &str, vary: Vary, p: &ProbeReport) -> String {
    format!(
        "probe {phase:<12} {:>12}  {:>6} req {:>8.1}/s  gen {:>4}  attainment {}  [{:.3}, {:.3}]  {:<15} {}",
        fmt_load(vary, p.load),
        p.requests,
        p.rate_rps,
        p.generator_cpu
            .map_or("–".to_owned(), |c| format!("{:.0}%", c * 100.0)),
        p.attainment
            .map_or("  no data".to_owned(), |a| format!("{:>7.2}%", a * 100.0)),
        p.ci[0],
        p.ci[1],
        p.verdict.to_uppercase(),
        p.reason
    )
}

/// The final table: phase, capacity, req/s, output tokens/s, inferences an
/// hour, and capacity lost against the baseline.
pub fn render_table(r: &CapacityReport) -> String {
    let priced = r
        .runs
        .iter()
        .any(|run| run.cost_per_1k_requests.is_some() || run.energy_wh_per_1k_tokens.is_some());
    let mut out = String::new();
    let _ = write!(
        out,
        "{:<14} {:>14} {:>9} {:>13} {:>16} {:>10}",
        "phase", "capacity", "req/s", "out tok/s", "inferences/h", "lost"
    );
    if priced {
        let _ = write!(
            out,
            " {:>10} {:>10} {:>10}",
            "$/1k req", "$/1M out", "Wh/1k tok"
        );
    }
    let _ = writeln!(out, "  verdict");
    for run in &r.runs {
        let vary = if run.vary == "rate" {
            Vary::Rate
        } else {
            Vary::Concurrency
        };
        let cap = match run.capacity {
            Some(c) if run.at_least => format!("≥ {}", fmt_load(vary, c)),
            Some(c) => fmt_load(vary, c),
            None => "none".to_owned(),
        };
        let num = |v: Option<f64>, d: usize| v.map_or("–".to_owned(), |v| format!("{v:.d$}"));
        let _ = write!(
            out,
            "{:<14} {:>14} {:>9} {:>13} {:>16} {:>10}",
            run.phase,
            cap,
            num(run.rate_rps, 1),
            num(run.output_tokens_per_s, 0),
            num(run.inferences_per_hour, 0),
            run.lost_vs_baseline_pct
                .map_or("–".to_owned(), |l| format!("{:+.1}%", -l)),
        );
        if priced {
            let _ = write!(
                out,
                " {:>10} {:>10} {:>10}",
                num(run.cost_per_1k_requests, 4),
                num(run.cost_per_1m_output_tokens, 3),
                num(run.energy_wh_per_1k_tokens, 3)
            );
        }
        let _ = writeln!(out, "  {}", run.verdict);
    }
    out
}

/// `capacity.html`: throughput and attainment against load, per phase, with
/// each phase's knee and capacity marked; the vendored uPlot, inlined, so the
/// page needs no network.
pub fn render_html(r: &CapacityReport) -> Result<String, serde_json::Error> {
    use crate::gate::xml_escape;
    let json = serde_json::to_string(r)?
        .replace('<', "\\u003c")
        .replace('>', "\\u003e")
        .replace('&', "\\u0026");
    let mut rows = String::new();
    for run in &r.runs {
        let _ = write!(
            rows,
            "<tr><td>{}</td><td>{}{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            xml_escape(&run.phase),
            if run.at_least { "≥ " } else { "" },
            run.capacity.map_or("none".to_owned(), |c| c.to_string()),
            run.rate_rps.map_or("–".to_owned(), |v| format!("{v:.1}")),
            run.output_tokens_per_s
                .map_or("–".to_owned(), |v| format!("{v:.0}")),
            run.inferences_per_hour
                .map_or("–".to_owned(), |v| format!("{v:.0}")),
            run.cost_per_1k_requests
                .map_or("–".to_owned(), |v| format!("{v:.4}")),
            run.cost_per_1m_output_tokens
                .map_or("–".to_owned(), |v| format!("{v:.2}")),
            run.energy_wh_per_1k_tokens
                .map_or("–".to_owned(), |v| format!("{v:.2}")),
            run.knee.map_or("–".to_owned(), |v| v.to_string()),
            xml_escape(&format!("{}: {}", run.verdict, run.reason)),
        );
    }
    Ok(format!(
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>brownout capacity {name}</title>\n\
<style>{css}\nbody{{font-family:system-ui,sans-serif;margin:2em;max-width:1100px}}table{{border-collapse:collapse}}td,th{{border:1px solid #ccc;padding:4px 8px;text-align:left}}.plot{{margin:1em 0}}</style></head>\n\
<body data-rendered=\"pending\">\n<h1>Capacity: {name}</h1>\n<p>Each probe is judged on the share of good requests (attainment {att}) with a 95% Wilson interval. The dashed line marks each phase's knee, the solid one its capacity.</p>\n\
<table><tr><th>phase</th><th>capacity</th><th>req/s</th><th>output tokens/s</th><th>inferences/h</th><th>cost / 1k requests</th><th>cost / 1M output tokens</th><th>Wh / 1k tokens</th><th>knee</th><th>verdict</th></tr>{rows}</table>\n\
<h2>Throughput against load</h2><div class=\"plot\" id=\"throughput\"></div>\n<h2>Attainment against load</h2><div class=\"plot\" id=\"attainment\"></div>\n\
<script type=\"application/json\" id=\"capacity-data\">{json}</script>\n<script>{uplot}</script>\n<script>{js}</script>\n</body></html>\n",
        name = xml_escape(&r.name),
        css = crate::html::UPLOT_CSS,
        att = r.attainment,
        uplot = crate::html::UPLOT_JS,
        js = CAPACITY_JS,
    ))
}

/// Draws the two charts of `capacity.html` from its JSON block.
const CAPACITY_JS: &str = r#"'use strict';
(function () {
  try {
    var data = JSON.parse(document.getElementById('capacity-data').textContent);
    var colors = ['#1f77b4', '#ff7f0e', '#2ca02c', '#9467bd', '#8c564b', '#17becf'];
    var loads = [];
    data.runs.forEach(function (r) { r.probes.forEach(function (p) { if (loads.indexOf(p.load) < 0) loads.push(p.load); }); });
    loads.sort(function (a, b) { return a - b; });
    function series(field) {
      return data.runs.map(function (r) {
        return loads.map(function (l) {
          var ps = r.probes.filter(function (p) { return p.load === l; });
          if (!ps.length) return null;
          var v = ps[ps.length - 1][field];
          return v === null || v === undefined ? null : (field === 'attainment' ? v * 100 : v);
        });
      });
    }
    function marks(u) {
      var ctx = u.ctx;
      data.runs.forEach(function (r, i) {
        [[r.knee, [6, 4]], [r.capacity, []]].forEach(function (m) {
          if (m[0] === null || m[0] === undefined) return;
          var x = u.valToPos(m[0], 'x', true);
          ctx.save(); ctx.strokeStyle = colors[i % colors.length]; ctx.setLineDash(m[1]);
          ctx.beginPath(); ctx.moveTo(x, u.bbox.top); ctx.lineTo(x, u.bbox.top + u.bbox.height); ctx.stroke(); ctx.restore();
        });
      });
    }
    function chart(id, field, label) {
      var ys = series(field);
      var opts = {
        width: 900, height: 320,
        scales: { x: { time: false } },
        axes: [{ label: data.runs.length ? data.runs[0].vary : 'load' }, { label: label }],
        series: [{ label: 'load' }].concat(data.runs.map(function (r, i) {
          return { label: r.phase, stroke: colors[i % colors.length], width: 2, spanGaps: true, points: { show: true, size: 7 } };
        })),
        hooks: { draw: [marks] }
      };
      new uPlot(opts, [loads].concat(ys), document.getElementById(id));
    }
    chart('throughput', 'rate_rps', 'requests/s');
    chart('attainment', 'attainment', 'good requests (%)');
    document.body.dataset.rendered = 'ok';
  } catch (e) {
    document.body.dataset.rendered = 'error';
    document.body.dataset.error = String(e && e.message || e);
  }
})();
"#;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wilson_matches_known_values() {
        // Wilson's interval for 95 of 100 at 95%: [0.8882, 0.9785].
        let (lo, hi) = wilson(95, 100, Z95);
        assert!((lo - 0.8882).abs() < 1e-3, "{lo}");
        assert!((hi - 0.9785).abs() < 1e-3, "{hi}");
        // All good: the upper bound is 1, the lower below it.
        let (lo, hi) = wilson(50, 50, Z95);
        assert_eq!(hi, 1.0);
        assert!((lo - 0.9287).abs() < 1e-3, "{lo}");
        // None good.
        let (lo, hi) = wilson(0, 50, Z95);
        assert_eq!(lo, 0.0);
        assert!(hi < 0.08, "{hi}");
        assert_eq!(wilson(0, 0, Z95), (0.0, 1.0));
    }

    #[test]
    fn judging_needs_the_interval_clear_of_the_target() {
        assert_eq!(judge(0, 0, 0.9), Judgement::Undecided);
        assert_eq!(judge(100, 100, 0.95), Judgement::Pass);
        assert_eq!(judge(10, 10, 0.95), Judgement::Undecided);
        assert_eq!(judge(50, 100, 0.95), Judgement::Fail);
        // 96 of 100 at 0.95: the interval straddles it.
        assert_eq!(judge(96, 100, 0.95), Judgement::Undecided);
        // Attainment 1 passes only with every request good, and enough of them.
        assert_eq!(judge(40, 40, 1.0), Judgement::Pass);
        assert_eq!(judge(399, 400, 1.0), Judgement::Fail);
    }

    fn run_search(mut s: Search, capacity: f64) -> (SearchEnd, Vec<f64>) {
        let mut probed = Vec::new();
        while let Some(l) = s.next_load() {
            probed.push(l);
            s.record(l, l <= capacity);
            assert!(probed.len() < 50, "{probed:?}");
        }
        (s.end().unwrap(), probed)
    }

    #[test]
    fn the_search_doubles_then_bisects_to_tolerance() {
        let (end, probed) = run_search(Search::new(8.0, 1024.0, 0.1, true), 100.0);
        assert_eq!(&probed[..5], &[8.0, 16.0, 32.0, 64.0, 128.0]);
        let SearchEnd::Found(c) = end else {
            panic!("{end:?}")
        };
        assert!((100.0 / 1.1..=100.0).contains(&c), "{c} {probed:?}");
        // Whole users: bisecting ends at adjacent users at worst.
        let (end, _) = run_search(Search::new(1.0, 16.0, 0.01, true), 3.0);
        assert_eq!(end, SearchEnd::Found(3.0));
        // Rates are searched in fractions.
        let (end, _) = run_search(Search::new(1.0, 1000.0, 0.05, false), 37.3);
        let SearchEnd::Found(c) = end else {
            panic!("{end:?}")
        };
        assert!((37.3 / 1.05..=37.3).contains(&c), "{c}");
    }

    #[test]
    fn the_search_says_below_start_and_at_least_max() {
        assert_eq!(
            run_search(Search::new(8.0, 64.0, 0.1, true), 4.0),
            (SearchEnd::BelowStart, vec![8.0])
        );
        let (end, probed) = run_search(Search::new(8.0, 50.0, 0.1, true), 1000.0);
        assert_eq!(end, SearchEnd::AtLeastMax(50.0));
        assert_eq!(probed, [8.0, 16.0, 32.0, 50.0]);
        // max == start: one probe.
        let (end, probed) = run_search(Search::new(8.0, 8.0, 0.1, true), 1000.0);
        assert_eq!((end, probed), (SearchEnd::AtLeastMax(8.0), vec![8.0]));
        let mut s = Search::new(8.0, 64.0, 0.1, true);
        s.record(8.0, true);
        assert_eq!(s.stop(), Some(SearchEnd::Found(8.0)));
        assert_eq!(s.next_load(), None);
    }

    #[test]
    fn saturation_signals() {
        let steady = [10.0, 11.0, 9.0, 10.0, 12.0, 10.0, 11.0, 9.0, 10.0];
        assert!(!backlog_rising(&steady, 4.0));
        let growing = [10.0, 14.0, 18.0, 25.0, 30.0, 38.0, 45.0, 52.0, 60.0];
        assert!(backlog_rising(&growing, 4.0));
        // Growing but tiny (under the floor): not yet a backlog.
        assert!(!backlog_rising(&[0.0, 0.0, 1.0, 1.0, 2.0, 3.0], 4.0));
        assert!(!backlog_rising(&[1.0, 100.0], 4.0));

        let flat_rising = [
            (20.0, 100.0),
            (20.0, 110.0),
            (21.0, 130.0),
            (20.0, 160.0),
            (20.0, 190.0),
            (20.0, 220.0),
        ];
        assert!(ttft_rising_at_flat_throughput(&flat_rising));
        // TTFT rising with throughput rising too: ramping up, not saturated.
        let ramping: Vec<(f64, f64)> = flat_rising
            .iter()
            .enumerate()
            .map(|(i, (t, l))| (t * (1.0 + i as f64), *l))
            .collect();
        assert!(!ttft_rising_at_flat_throughput(&ramping));
        let steady: Vec<(f64, f64)> = (0..9).map(|_| (20.0, 100.0)).collect();
        assert!(!ttft_rising_at_flat_throughput(&steady));
    }

    #[test]
    fn the_knee_is_where_throughput_bends() {
        let curve = [
            (8.0, 80.0),
            (16.0, 160.0),
            (32.0, 300.0),
            (64.0, 330.0),
            (128.0, 335.0),
        ];
        assert_eq!(knee(&curve), Some(32.0));
        let linear = [(1.0, 10.0), (2.0, 20.0), (4.0, 40.0)];
        assert_eq!(knee(&linear), None);
        assert_eq!(knee(&curve[..2]), None);
    }

    fn probe(load: f64, passed: bool, requests: u64, good: u64, errors: u64) -> ProbeReport {
        ProbeReport {
            load,
            requests,
            good,
            attainment: (requests > 0).then(|| good as f64 / requests as f64),
            ci: [0.0, 1.0],
            passed,
            verdict: if passed { "pass" } else { "fail" }.into(),
            reason: "r".into(),
            rate_rps: load * 2.0,
            output_tokens_per_s: load * 20.0,
            ttft_p95_ms: Some(10.0),
            error_rate: (requests > 0).then(|| errors as f64 / requests as f64),
            measured_s: 1.0,
            generator_bound: false,
            generator_cpu: None,
            input_tokens_per_s: Some(load * 100.0),
            power_w: None,
            power_source: None,
        }
    }

    #[test]
    fn capacity_is_priced_at_the_capacity_probes_rates() {
        use crate::cost::{CostSpec, EnergySpec, TokenPrices};
        use crate::energy::PowerSource;
        let found = |p16: ProbeReport| {
            RunReport::finish(
                "baseline",
                Vary::Concurrency,
                SearchEnd::Found(16.0),
                vec![
                    probe(8.0, true, 10, 10, 0),
                    p16,
                    probe(32.0, false, 10, 1, 0),
                ],
            )
        };
        // 16 users: 32 req/s, 320 output tokens/s, 1,600 input tokens/s, 500 W metered.
        let mut p16 = probe(16.0, true, 10, 10, 0);
        p16.power_w = Some(500.0);
        p16.power_source = Some(PowerSource::GpuModel);
        let mut run = found(p16.clone());
        let gpu = CostSpec {
            gpu_hour: Some(3.6),
            replicas: Some(2),
            ..CostSpec::default()
        };
        let energy = EnergySpec {
            gpu: Some("h100-80gb".into()),
            ..EnergySpec::default()
        };
        run.price(Some(&gpu), Some(&energy));
        // $7.20 an hour over 32 × 3600 requests and 320 × 3600 output tokens.
        let close = |a: Option<f64>, b: f64| a.is_some_and(|a| (a - b).abs() < 1e-9 * b.max(1.0));
        assert!(
            close(run.cost_per_1k_requests, 7.2 / (32.0 * 3600.0) * 1e3),
            "{run:?}"
        );
        assert!(
            close(run.cost_per_1m_output_tokens, 7.2 / (320.0 * 3600.0) * 1e6),
            "{run:?}"
        );
        // 500 W for an hour over 320 × 3600 tokens.
        assert!(
            close(run.energy_wh_per_1k_tokens, 500.0 / (320.0 * 3600.0) * 1e3),
            "{run:?}"
        );
        assert_eq!(run.power_source, Some(PowerSource::GpuModel));

        // Per-token prices: input and output at the provider's rates.
        let tokens = CostSpec {
            tokens: Some(TokenPrices {
                input_per_mtok: 1.0,
                output_per_mtok: 4.0,
            }),
            ..CostSpec::default()
        };
        let mut run = found(p16.clone());
        run.price(Some(&tokens), None);
        let per_req = (1_600.0 * 1.0 + 320.0 * 4.0) / 1e6 / 32.0;
        assert!(close(run.cost_per_1k_requests, per_req * 1e3), "{run:?}");

        // An answer without an input count: per-token figures are unknown, not
        // priced as if the prompts were free.
        let mut blind = p16.clone();
        blind.input_tokens_per_s = None;
        let mut run = found(blind);
        run.price(Some(&tokens), None);
        assert_eq!(run.cost_per_1k_requests, None);
        assert_eq!(run.cost_per_1m_output_tokens, None);

        // No meter: full power at capacity from the model, marked as such.
        let mut unmetered = p16;
        unmetered.power_w = None;
        unmetered.power_source = None;
        let mut run = found(unmetered);
        run.price(None, Some(&energy));
        assert_eq!(run.power_source, Some(PowerSource::Load));
        assert_eq!(run.power_w, Some(700.0));
        assert!(
            close(run.energy_wh_per_1k_tokens, 700.0 / (320.0 * 3600.0) * 1e3),
            "{run:?}"
        );
        assert_eq!(run.cost_per_1k_requests, None);

        // No capacity: nothing priced.
        let mut none = RunReport::finish(
            "baseline",
            Vary::Concurrency,
            SearchEnd::BelowStart,
            vec![probe(8.0, false, 10, 0, 10)],
        );
        none.price(Some(&gpu), Some(&energy));
        assert_eq!(none.cost_per_1k_requests, None);
        assert_eq!(none.energy_wh_per_1k_tokens, None);
    }

    #[test]
    fn runs_never_make_up_a_capacity() {
        let r = RunReport::finish(
            "baseline",
            Vary::Concurrency,
            SearchEnd::BelowStart,
            vec![probe(8.0, false, 100, 0, 100)],
        );
        assert_eq!(r.capacity, None);
        assert_eq!(r.verdict, "below start");
        assert!(
            r.reason.contains("upstream fails at every load"),
            "{}",
            r.reason
        );
        let r = RunReport::finish(
            "baseline",
            Vary::Concurrency,
            SearchEnd::BelowStart,
            vec![probe(8.0, false, 100, 0, 0)],
        );
        assert!(r.reason.contains("out of reach"), "{}", r.reason);
        let mut runs = vec![
            RunReport::finish(
                "baseline",
                Vary::Concurrency,
                SearchEnd::Found(16.0),
                vec![
                    probe(8.0, true, 10, 10, 0),
                    probe(16.0, true, 10, 10, 0),
                    probe(32.0, false, 10, 1, 0),
                ],
            ),
            RunReport::finish(
                "brownout",
                Vary::Concurrency,
                SearchEnd::Found(8.0),
                vec![probe(8.0, true, 10, 10, 0), probe(16.0, false, 10, 1, 0)],
            ),
            RunReport::finish(
                "storm",
                Vary::Concurrency,
                SearchEnd::AtLeastMax(64.0),
                vec![probe(64.0, true, 10, 10, 0)],
            ),
        ];
        assert_eq!(runs[0].rate_rps, Some(32.0));
        assert_eq!(runs[0].inferences_per_hour, Some(32.0 * 3600.0));
        assert!(runs[2].at_least);
        compare_with_baseline(&mut runs, "baseline");
        assert_eq!(runs[0].lost_vs_baseline_pct, None);
        assert_eq!(runs[1].lost_vs_baseline_pct, Some(50.0));
        // Both past `max`: the loss is unknown, not 0%.
        let mut both = vec![runs[2].clone(), runs[2].clone()];
        both[0].phase = "baseline".into();
        compare_with_baseline(&mut both, "baseline");
        assert_eq!(both[1].lost_vs_baseline_pct, None);
        let report = CapacityReport {
            name: "t".into(),
            attainment: 0.9,
            runs,
            verdict: "ok".into(),
            exit_code: 0,
        };
        let table = render_table(&report);
        assert!(table.contains("-50.0%"), "{table}");
        assert!(table.contains("≥ 64 users"), "{table}");
        let html = render_html(&report).unwrap();
        assert!(html.contains("capacity-data"));
        // Self-contained: nothing is loaded from elsewhere.
        assert!(!html.contains("src=\"http") && !html.contains("href=\"http"));
        let v: serde_json::Value = serde_json::to_value(&report).unwrap();
        for k in [
            "phase",
            "vary",
            "capacity",
            "rate_rps",
            "output_tokens_per_s",
            "inferences_per_hour",
            "cost_per_1k_requests",
            "cost_per_1m_output_tokens",
            "energy_wh_per_1k_tokens",
            "probes",
        ] {
            assert!(v["runs"][0].get(k).is_some(), "{k}");
        }
        for k in ["load", "requests", "attainment", "ci", "passed"] {
            assert!(v["runs"][0]["probes"][0].get(k).is_some(), "{k}");
        }
    }

    fn sample(ok: bool, ttft_ms: u64) -> Sample {
        Sample {
            seq: 0,
            phase: 1,
            outcome: if ok {
                crate::sample::Outcome::Ok
            } else {
                crate::sample::Outcome::HttpError(500)
            },
            e2e: Duration::from_millis(ttft_ms + 100),
            ttft: Some(Duration::from_millis(ttft_ms)),
            itl: Vec::new(),
            output_tokens: Some(10),
            tokens_source: None,
            input_tokens: None,
            send_lag: Duration::ZERO,
            answer: None,
            embedding: None,
            ids: None,
        }
    }

    fn cfg(vary: Vary) -> ProbeConfig {
        ProbeConfig {
            vary,
            load: 10.0,
            warmup: Duration::from_secs(1),
            probe: Duration::from_secs(2),
            probe_max: Duration::from_secs(8),
            attainment: 0.9,
            goodput: Some(Goodput {
                min: None,
                ttft: Some(brownout_faults::duration::DurationStr(
                    Duration::from_millis(50),
                )),
                tpot: None,
                e2e: None,
            }),
            measured_phase: 1,
            stop: None,
        }
    }

    /// Feed a watcher 250 ms ticks with `per_tick` requests each from `f`.
    fn drive(
        w: &mut ProbeWatcher,
        until: Duration,
        in_flight: impl Fn(Duration) -> usize,
        f: impl Fn(Duration, usize) -> Sample,
    ) -> Option<(Duration, WatchSays)> {
        let mut t = Duration::ZERO;
        while t <= until {
            let phase = usize::from(t >= Duration::from_secs(1));
            for i in 0..10 {
                w.done(t, t, phase, &f(t, i));
            }
            t += Duration::from_millis(250);
            let says = w.tick(t, in_flight(t), 0);
            if says != WatchSays::Go {
                return Some((t, says));
            }
        }
        None
    }

    #[test]
    fn a_clear_probe_is_decided_at_its_first_check() {
        let mut w = ProbeWatcher::new(cfg(Vary::Concurrency));
        let (t, says) = drive(
            &mut w,
            Duration::from_secs(20),
            |_| 10,
            |_, _| sample(true, 10),
        )
        .unwrap();
        assert_eq!(says, WatchSays::Finish);
        assert_eq!(t, Duration::from_secs(3));
        assert_eq!(w.end, Some(ProbeEnd::Judged(Judgement::Pass)));
        // Warmup requests are not counted.
        assert_eq!(w.requests, 80);
        let mut w = ProbeWatcher::new(cfg(Vary::Concurrency));
        drive(
            &mut w,
            Duration::from_secs(20),
            |_| 10,
            |_, i| sample(i < 5, 10),
        )
        .unwrap();
        assert_eq!(w.end, Some(ProbeEnd::Judged(Judgement::Fail)));
    }

    #[test]
    fn closed_loop_throughput_follows_littles_law() {
        let mut w = ProbeWatcher::new(cfg(Vary::Concurrency));
        // 10 users, every request 110 ms end to end (sample()): 90.9 per second.
        drive(
            &mut w,
            Duration::from_secs(20),
            |_| 10,
            |_, _| sample(true, 10),
        )
        .unwrap();
        let (rate, tokens) = w.throughput(Duration::from_secs(2));
        assert!((rate - 10.0 / 0.11).abs() < 1e-6, "{rate}");
        assert!((tokens - rate * 10.0).abs() < 1e-6, "{tokens}");
        // Open loop: what finished in the window.
        let mut w = ProbeWatcher::new(cfg(Vary::Rate));
        drive(
            &mut w,
            Duration::from_secs(20),
            |_| 10,
            |_, _| sample(true, 10),
        )
        .unwrap();
        let (rate, _) = w.throughput(Duration::from_secs(2));
        assert_eq!(rate, w.window_ok as f64 / 2.0);
    }

    #[test]
    fn an_undecided_probe_is_extended_then_fails_at_probe_max() {
        let mut w = ProbeWatcher::new(cfg(Vary::Concurrency));
        // 9 of 10 good at a 0.9 target: never decided.
        let (t, says) = drive(
            &mut w,
            Duration::from_secs(60),
            |_| 10,
            |_, i| sample(true, if i == 0 { 500 } else { 10 }),
        )
        .unwrap();
        assert_eq!(says, WatchSays::Finish);
        assert_eq!(t, Duration::from_secs(9));
        assert_eq!(w.end, Some(ProbeEnd::Undecided));
    }

    #[test]
    fn a_growing_backlog_aborts_an_open_loop_probe() {
        let mut w = ProbeWatcher::new(cfg(Vary::Rate));
        let (t, says) = drive(
            &mut w,
            Duration::from_secs(20),
            |t| (t.as_millis() / 50) as usize,
            |_, _| sample(true, 10),
        )
        .unwrap();
        assert!(
            matches!(says, WatchSays::Abort(ref m) if m.contains("backlog")),
            "{says:?}"
        );
        assert!(
            t <= Duration::from_secs(3) + Duration::from_millis(250),
            "{t:?}"
        );
        assert!(matches!(w.end, Some(ProbeEnd::Saturated(_))));
    }

    /// TTFT that rises at flat throughput but stays within the goodput threshold
    /// (10 ms to 40 ms, under 50 ms): every request is good, so the probe is judged
    /// on its attainment, a pass, rather than cut short as saturated.
    #[test]
    fn rising_ttft_within_the_objectives_is_judged_not_saturated() {
        let mut w = ProbeWatcher::new(cfg(Vary::Concurrency));
        let mut c = cfg(Vary::Concurrency);
        c.probe = Duration::from_secs(20);
        c.probe_max = Duration::from_secs(20);
        w.cfg = c;
        w.next_check = Duration::from_secs(21);
        let (_, says) = drive(
            &mut w,
            Duration::from_secs(25),
            |_| 10,
            |t, _| sample(true, 10 + t.as_millis() as u64 / 700),
        )
        .unwrap();
        assert_eq!(says, WatchSays::Finish);
        assert_eq!(w.end, Some(ProbeEnd::Judged(Judgement::Pass)));
    }

    #[test]
    fn rising_ttft_at_flat_throughput_aborts_a_closed_loop_probe() {
        let mut w = ProbeWatcher::new(cfg(Vary::Concurrency));
        let mut c = cfg(Vary::Concurrency);
        c.probe = Duration::from_secs(20);
        c.probe_max = Duration::from_secs(20);
        w.cfg = c;
        w.next_check = Duration::from_secs(21);
        let (_, says) = drive(
            &mut w,
            Duration::from_secs(20),
            |_| 10,
            |t, _| sample(true, 10 + t.as_millis() as u64 / 10),
        )
        .unwrap();
        assert!(
            matches!(says, WatchSays::Abort(ref m) if m.contains("TTFT")),
            "{says:?}"
        );
    }
}
