//! Per-phase statistics: counts, error kinds, latency percentiles, throughput.
//!
//! Latency percentiles cover successful requests only: a fast 429 is not a fast
//! answer, and mixing the two would make an error storm look like a speed-up. The
//! error rate says how many failed. Histograms are HDR at three significant digits
//! over microseconds (1 µs to 1 h), so percentiles are within 0.1 %.

use std::collections::{BTreeMap, VecDeque};
use std::time::Duration;

use hdrhistogram::{CreationError, Histogram};
use serde::{Deserialize, Serialize};

use crate::sample::{Outcome, Sample, TokensSource};

/// Largest latency recorded exactly; longer ones saturate here.
const MAX_MICROS: u64 = 3_600_000_000;

fn histogram() -> Result<Histogram<u64>, CreationError> {
    Histogram::new_with_bounds(1, MAX_MICROS, 3)
}

fn micros(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX)
}

fn ms(us: u64) -> f64 {
    us as f64 / 1000.0
}

/// A latency distribution summary, in milliseconds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Percentiles {
    /// Number of values.
    pub count: u64,
    /// Arithmetic mean.
    pub mean_ms: f64,
    /// Median.
    pub p50_ms: f64,
    /// 90th percentile.
    pub p90_ms: f64,
    /// 95th percentile.
    pub p95_ms: f64,
    /// 99th percentile.
    pub p99_ms: f64,
    /// Largest value.
    pub max_ms: f64,
}

impl Percentiles {
    /// Summarise `h`; `None` when it is empty.
    pub fn from_histogram(h: &Histogram<u64>) -> Option<Self> {
        if h.is_empty() {
            return None;
        }
        Some(Self {
            count: h.len(),
            mean_ms: h.mean() / 1000.0,
            p50_ms: ms(h.value_at_quantile(0.50)),
            p90_ms: ms(h.value_at_quantile(0.90)),
            p95_ms: ms(h.value_at_quantile(0.95)),
            p99_ms: ms(h.value_at_quantile(0.99)),
            max_ms: ms(h.max()),
        })
    }
}

/// What one phase (or the whole drill) measured.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PhaseStats {
    /// The phase's name (`all` for the whole drill).
    pub name: String,
    /// The phase's planned duration, seconds; the denominator of the rates.
    pub duration_s: f64,
    /// Requests scheduled in the phase.
    pub requests: u64,
    /// Requests that got a complete answer.
    pub ok: u64,
    /// Requests that did not.
    pub errors: u64,
    /// `errors / requests` (0 with no requests).
    pub error_rate: f64,
    /// Errors by outcome kind (`http_error`, `timeout`, `truncated`, ...).
    pub errors_by_kind: BTreeMap<String, u64>,
    /// Non-2xx responses by status code.
    pub http_statuses: BTreeMap<u16, u64>,
    /// End-to-end latency of successful requests.
    pub e2e: Option<Percentiles>,
    /// Time to first content token of successful streams.
    pub ttft: Option<Percentiles>,
    /// Every gap between content events of successful streams, pooled.
    pub itl: Option<Percentiles>,
    /// Time per output token of successful streams with at least two tokens.
    pub tpot: Option<Percentiles>,
    /// Successful requests per second.
    pub throughput_rps: f64,
    /// Output tokens of successful requests.
    pub output_tokens: u64,
    /// Output tokens per second.
    pub tokens_per_sec: f64,
    /// Successful requests whose token count came from `usage`.
    pub tokens_from_usage: u64,
    /// Successful requests whose tokens were counted from content events.
    pub tokens_counted: u64,
    /// Largest lag between a request's scheduled and actual send, ms.
    pub max_send_lag_ms: f64,
}

/// Accumulates samples into one phase's statistics.
#[derive(Debug, Clone)]
pub struct PhaseAccumulator {
    requests: u64,
    ok: u64,
    errors_by_kind: BTreeMap<&'static str, u64>,
    http_statuses: BTreeMap<u16, u64>,
    e2e: Histogram<u64>,
    ttft: Histogram<u64>,
    itl: Histogram<u64>,
    tpot: Histogram<u64>,
    output_tokens: u64,
    tokens_from_usage: u64,
    tokens_counted: u64,
    max_send_lag: Duration,
}

/// Each phase's statistics, from its plan and its accumulator (in phase order).
pub fn finish_phases(
    plans: &[crate::plan::PhasePlan],
    accs: &[PhaseAccumulator],
) -> Vec<PhaseStats> {
    plans
        .iter()
        .zip(accs)
        .map(|(p, acc)| acc.finish(&p.name, p.duration))
        .collect()
}

impl PhaseAccumulator {
    /// An empty accumulator.
    pub fn new() -> Result<Self, CreationError> {
        Ok(Self {
            requests: 0,
            ok: 0,
            errors_by_kind: BTreeMap::new(),
            http_statuses: BTreeMap::new(),
            e2e: histogram()?,
            ttft: histogram()?,
            itl: histogram()?,
            tpot: histogram()?,
            output_tokens: 0,
            tokens_from_usage: 0,
            tokens_counted: 0,
            max_send_lag: Duration::ZERO,
        })
    }

    /// Add one request's measurements.
    pub fn record(&mut self, s: &Sample) {
        self.requests += 1;
        self.max_send_lag = self.max_send_lag.max(s.send_lag);
        if !s.outcome.is_ok() {
            *self.errors_by_kind.entry(s.outcome.kind()).or_default() += 1;
            if let Outcome::HttpError(status) = s.outcome {
                *self.http_statuses.entry(status).or_default() += 1;
            }
            return;
        }
        self.ok += 1;
        self.e2e.saturating_record(micros(s.e2e));
        if let Some(t) = s.ttft {
            self.ttft.saturating_record(micros(t));
        }
        for gap in &s.itl {
            self.itl.saturating_record(micros(*gap));
        }
        if let Some(t) = s.tpot() {
            self.tpot.saturating_record(micros(t));
        }
        if let Some(n) = s.output_tokens {
            self.output_tokens += n;
        }
        match s.tokens_source {
            Some(TokensSource::Usage) => self.tokens_from_usage += 1,
            Some(TokensSource::Counted) => self.tokens_counted += 1,
            None => {}
        }
    }

    /// Requests recorded so far.
    pub fn requests(&self) -> u64 {
        self.requests
    }

    /// The statistics of a phase called `name` that lasted `duration`.
    pub fn finish(&self, name: &str, duration: Duration) -> PhaseStats {
        let secs = duration.as_secs_f64();
        let per_sec = |n: u64| if secs > 0.0 { n as f64 / secs } else { 0.0 };
        let errors = self.requests - self.ok;
        PhaseStats {
            name: name.to_owned(),
            duration_s: secs,
            requests: self.requests,
            ok: self.ok,
            errors,
            error_rate: if self.requests == 0 {
                0.0
            } else {
                errors as f64 / self.requests as f64
            },
            errors_by_kind: self
                .errors_by_kind
                .iter()
                .map(|(k, v)| ((*k).to_owned(), *v))
                .collect(),
            http_statuses: self.http_statuses.clone(),
            e2e: Percentiles::from_histogram(&self.e2e),
            ttft: Percentiles::from_histogram(&self.ttft),
            itl: Percentiles::from_histogram(&self.itl),
            tpot: Percentiles::from_histogram(&self.tpot),
            throughput_rps: per_sec(self.ok),
            output_tokens: self.output_tokens,
            tokens_per_sec: per_sec(self.output_tokens),
            tokens_from_usage: self.tokens_from_usage,
            tokens_counted: self.tokens_counted,
            max_send_lag_ms: self.max_send_lag.as_secs_f64() * 1000.0,
        }
    }
}

/// The whole drill's outcome: its settings, per-phase and overall statistics.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DrillResult {
    /// Where requests went.
    pub target: String,
    /// Request path.
    pub path: String,
    /// Model requested.
    pub model: String,
    /// Whether requests streamed.
    pub stream: bool,
    /// Mean arrival rate, requests per second.
    pub rate_per_sec: f64,
    /// The seed that fixed arrivals, prompts and (through `x-brownout-seq`) faults.
    pub seed: u64,
    /// Wall time from the first scheduled request to the last answer, seconds.
    pub elapsed_s: f64,
    /// One entry per phase, in order.
    pub phases: Vec<PhaseStats>,
    /// The whole drill as one phase named `all`.
    pub total: PhaseStats,
}

impl DrillResult {
    /// The phase called `name`.
    pub fn phase(&self, name: &str) -> Option<&PhaseStats> {
        self.phases.iter().find(|p| p.name == name)
    }
}

/// Recent outcomes for live progress: one bucket per tick, the last few kept, so
/// the live p95 follows the current phase rather than the whole run.
#[derive(Debug)]
pub(crate) struct LiveWindow {
    buckets: VecDeque<(Histogram<u64>, u64, u64)>,
    keep: usize,
    empty: Histogram<u64>,
}

impl LiveWindow {
    pub(crate) fn new(keep: usize) -> Result<Self, CreationError> {
        let empty = histogram()?;
        let mut buckets = VecDeque::with_capacity(keep + 1);
        buckets.push_back((Histogram::new_from(&empty), 0, 0));
        Ok(Self {
            buckets,
            keep: keep.max(1),
            empty,
        })
    }

    pub(crate) fn record(&mut self, s: &Sample) {
        if let Some((h, ok, err)) = self.buckets.back_mut() {
            if s.outcome.is_ok() {
                *ok += 1;
                h.saturating_record(micros(s.e2e));
            } else {
                *err += 1;
            }
        }
    }

    /// Start a new bucket, dropping the oldest beyond `keep`.
    pub(crate) fn rotate(&mut self) {
        self.buckets
            .push_back((Histogram::new_from(&self.empty), 0, 0));
        while self.buckets.len() > self.keep {
            self.buckets.pop_front();
        }
    }

    /// p95 of successful e2e and the error rate over the window.
    pub(crate) fn summary(&self) -> (Option<Duration>, f64) {
        let mut merged = Histogram::new_from(&self.empty);
        let (mut ok, mut err) = (0u64, 0u64);
        for (h, o, e) in &self.buckets {
            // Same bounds on both sides: adding cannot fail.
            let _ = merged.add(h);
            ok += o;
            err += e;
        }
        let p95 =
            (!merged.is_empty()).then(|| Duration::from_micros(merged.value_at_quantile(0.95)));
        let total = ok + err;
        let rate = if total == 0 {
            0.0
        } else {
            err as f64 / total as f64
        };
        (p95, rate)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(outcome: Outcome, e2e_us: u64) -> Sample {
        Sample {
            seq: 0,
            phase: 0,
            outcome,
            e2e: Duration::from_micros(e2e_us),
            ttft: None,
            itl: Vec::new(),
            output_tokens: None,
            tokens_source: None,
            input_tokens: None,
            send_lag: Duration::ZERO,
            answer: None,
            embedding: None,
            ids: None,
        }
    }

    #[test]
    fn exact_percentiles_from_known_inputs() {
        let mut acc = PhaseAccumulator::new().unwrap();
        // 1..=1000 µs: exact in HDR at 3 digits (values below 2048 keep unit resolution).
        for us in 1..=1000 {
            let mut s = sample(Outcome::Ok, us);
            s.ttft = Some(Duration::from_micros(us / 2));
            s.output_tokens = Some(11);
            s.tokens_source = Some(TokensSource::Usage);
            acc.record(&s);
        }
        let st = acc.finish("baseline", Duration::from_secs(10));
        let e2e = st.e2e.unwrap();
        assert_eq!(e2e.count, 1000);
        assert_eq!(e2e.p50_ms, 0.5);
        assert_eq!(e2e.p90_ms, 0.9);
        assert_eq!(e2e.p95_ms, 0.95);
        assert_eq!(e2e.p99_ms, 0.99);
        assert_eq!(e2e.max_ms, 1.0);
        assert!((e2e.mean_ms - 0.5005).abs() < 1e-9);
        let ttft = st.ttft.unwrap();
        assert_eq!(ttft.p50_ms, 0.25);
        // TPOT = (e2e − ttft) / 10; for e2e = 1000 µs, ttft = 500 µs → 50 µs.
        assert_eq!(st.tpot.unwrap().max_ms, 0.05);
        assert_eq!(st.output_tokens, 11_000);
        assert_eq!(st.tokens_per_sec, 1100.0);
        assert_eq!(st.throughput_rps, 100.0);
        assert_eq!(st.tokens_from_usage, 1000);
        assert_eq!(st.error_rate, 0.0);
    }

    #[test]
    fn errors_by_kind_and_excluded_from_latency() {
        let mut acc = PhaseAccumulator::new().unwrap();
        for _ in 0..90 {
            acc.record(&sample(Outcome::Ok, 100_000));
        }
        for _ in 0..6 {
            acc.record(&sample(Outcome::HttpError(429), 50));
        }
        acc.record(&sample(Outcome::HttpError(503), 50));
        acc.record(&sample(Outcome::Timeout, 30_000_000));
        acc.record(&sample(Outcome::Truncated, 10));
        acc.record(&sample(Outcome::TransportError, 10));
        let st = acc.finish("storm", Duration::from_secs(2));
        assert_eq!(st.requests, 100);
        assert_eq!(st.ok, 90);
        assert_eq!(st.errors, 10);
        assert!((st.error_rate - 0.1).abs() < 1e-12);
        assert_eq!(st.errors_by_kind["http_error"], 7);
        assert_eq!(st.errors_by_kind["timeout"], 1);
        assert_eq!(st.errors_by_kind["truncated"], 1);
        assert_eq!(st.errors_by_kind["transport_error"], 1);
        assert_eq!(st.http_statuses[&429], 6);
        assert_eq!(st.http_statuses[&503], 1);
        let e2e = st.e2e.unwrap();
        assert_eq!(e2e.count, 90);
        // 100 ms within HDR's 0.1 %.
        assert!((e2e.p50_ms - 100.0).abs() / 100.0 < 0.001);
        assert!((e2e.max_ms - 100.0).abs() / 100.0 < 0.001);
        assert!(st.ttft.is_none());
        assert_eq!(st.throughput_rps, 45.0);
    }

    #[test]
    fn tpot_is_undefined_for_one_token() {
        let mut s = sample(Outcome::Ok, 1000);
        s.ttft = Some(Duration::from_micros(400));
        s.output_tokens = Some(1);
        assert_eq!(s.tpot(), None);
        s.output_tokens = Some(4);
        assert_eq!(s.tpot(), Some(Duration::from_micros(200)));
    }

    #[test]
    fn live_window_forgets_old_buckets() {
        let mut w = LiveWindow::new(2).unwrap();
        w.record(&sample(Outcome::Ok, 900_000));
        w.record(&sample(Outcome::Timeout, 1));
        w.rotate();
        w.rotate();
        w.record(&sample(Outcome::Ok, 1_000));
        let (p95, err) = w.summary();
        assert_eq!(p95, Some(Duration::from_micros(1_000)));
        assert_eq!(err, 0.0);
    }
}
