//! Prometheus metrics (docs/records.md), in the text exposition format.
//!
//! Counters and histograms are updated by the recorder thread from finished
//! records, so the request path pays nothing for them; only `active_requests` is
//! updated inline, with one atomic. Label sets and bucket bounds are fixed (see
//! `docs/metrics.md`): dashboards depend on them.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use crate::record::{DroppedRecords, Record};

/// Bucket upper bounds in seconds, shared by every latency histogram.
pub const BUCKETS: [f64; 16] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0,
];

#[derive(Debug, Clone, Default)]
struct Histogram {
    counts: [u64; BUCKETS.len()],
    count: u64,
    sum: f64,
}

impl Histogram {
    fn observe(&mut self, secs: f64) {
        for (i, b) in BUCKETS.iter().enumerate() {
            if secs <= *b {
                self.counts[i] += 1;
            }
        }
        self.count += 1;
        self.sum += secs;
    }

    fn render(&self, out: &mut String, name: &str, labels: &str) {
        let sep = if labels.is_empty() { "" } else { "," };
        for (i, b) in BUCKETS.iter().enumerate() {
            let _ = writeln!(
                out,
                "{name}_bucket{{{labels}{sep}le=\"{b}\"}} {}",
                self.counts[i]
            );
        }
        let _ = writeln!(
            out,
            "{name}_bucket{{{labels}{sep}le=\"+Inf\"}} {}",
            self.count
        );
        let braces = if labels.is_empty() {
            String::new()
        } else {
            format!("{{{labels}}}")
        };
        let _ = writeln!(out, "{name}_sum{braces} {}", self.sum);
        let _ = writeln!(out, "{name}_count{braces} {}", self.count);
    }
}

/// A tiny map for label sets: there are few of them, and looking one up must not
/// allocate (the recorder thread does it for every exchange).
#[derive(Debug)]
struct Series<K, V> {
    entries: Vec<(K, V)>,
}

impl<K, V> Default for Series<K, V> {
    fn default() -> Self {
        Series {
            entries: Vec::new(),
        }
    }
}

impl<K: Ord + Clone, V: Default> Series<K, V> {
    /// The value for the first key `eq` accepts, inserting `make()` if none does.
    fn entry(&mut self, eq: impl Fn(&K) -> bool, make: impl FnOnce() -> K) -> &mut V {
        let i = match self.entries.iter().position(|(k, _)| eq(k)) {
            Some(i) => i,
            None => {
                self.entries.push((make(), V::default()));
                self.entries.len() - 1
            }
        };
        &mut self.entries[i].1
    }

    /// Entries in label order, for stable output.
    fn sorted(&self) -> BTreeMap<K, &V> {
        self.entries.iter().map(|(k, v)| (k.clone(), v)).collect()
    }
}

type ListenerEndpoint = (String, &'static str);

#[derive(Debug, Default)]
struct State {
    requests: Series<(String, &'static str, String, &'static str), u64>,
    injected: Series<(String, &'static str), u64>,
    skipped: Series<(String, &'static str), u64>,
    duration: Series<ListenerEndpoint, Histogram>,
    ttft: Series<ListenerEndpoint, Histogram>,
    itl: Series<ListenerEndpoint, Histogram>,
    tpot: Series<ListenerEndpoint, Histogram>,
    upstream: Series<String, Histogram>,
    output_tokens: Series<ListenerEndpoint, u64>,
}

fn le<'a>(l: &'a str, e: &'static str) -> impl Fn(&ListenerEndpoint) -> bool + 'a {
    move |k| k.1 == e && k.0 == l
}

/// Everything `/metrics` shows.
#[derive(Debug, Default)]
pub struct Metrics {
    state: Mutex<State>,
    active: Mutex<Vec<(String, Arc<AtomicI64>)>>,
    /// Per-phase aggregates and the dashboard's live series (`/api/v1/summary`,
    /// `/api/v1/live`), fed by the same recorder thread.
    pub summary: crate::record::summary::Summary,
    /// Connections dropped before any exchange on them began, by [`Rejection`]:
    /// they leave no record, so this is all an operator sees of them. Counted
    /// inline (one atomic): there is no record to count them from.
    rejected: [AtomicU64; Rejection::ALL.len()],
}

/// Why a connection was dropped before it carried an exchange
/// (`brownout_connections_rejected_total{reason}`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rejection {
    /// No complete request head within `limits.header_timeout`.
    HeaderTimeout,
    /// A request head that is not HTTP (answered 400, or 431 when too large).
    BadRequest,
    /// `limits.max_connections` were open and none freed within `header_timeout`
    /// (or too many connections were already waiting for one).
    MaxConnections,
    /// The TLS handshake failed or took longer than `limits.tls_handshake_timeout`.
    TlsHandshake,
}

impl Rejection {
    pub const ALL: [Rejection; 4] = [
        Rejection::HeaderTimeout,
        Rejection::BadRequest,
        Rejection::MaxConnections,
        Rejection::TlsHandshake,
    ];

    /// The `reason` label.
    pub fn as_str(self) -> &'static str {
        match self {
            Rejection::HeaderTimeout => "header_timeout",
            Rejection::BadRequest => "bad_request",
            Rejection::MaxConnections => "max_connections",
            Rejection::TlsHandshake => "tls_handshake",
        }
    }
}

/// Escape a label value per the text format.
fn esc(v: &str) -> String {
    let mut s = String::with_capacity(v.len());
    for c in v.chars() {
        match c {
            '\\' => s.push_str("\\\\"),
            '"' => s.push_str("\\\""),
            '\n' => s.push_str("\\n"),
            c => s.push(c),
        }
    }
    s
}

/// Live values the recorder does not see.
pub struct Gauges<'a> {
    pub faults_enabled: bool,
    pub profile: &'a str,
    pub phase: Option<&'a str>,
    /// Records lost, by reason (`brownout_records_dropped_total{reason}`).
    pub records_dropped: DroppedRecords,
    /// Simulated GPU replicas of the active profile, by rule.
    pub gpu: Vec<GpuGauge>,
}

/// One simulated replica's live state.
pub struct GpuGauge {
    pub rule: String,
    pub queue_depth: usize,
    pub batch_size: usize,
    pub preemptions: u64,
    /// Modelled utilisation, 0 to 1 ([`brownout_faults::gpu::Replica::utilization`]).
    pub utilization: f64,
    /// Watts the power model draws at that utilisation; `None` for a card
    /// without a power preset.
    pub power_w: Option<f64>,
    /// Joules drawn since the replica was made: idle draw over its uptime plus
    /// the span between idle and maximum over its busy time.
    pub energy_j: Option<f64>,
    /// Seconds spent running steps.
    pub busy_s: f64,
}

impl GpuGauge {
    /// The gauges of one replica under `rule`.
    pub fn of(rule: &str, rep: &brownout_faults::gpu::Replica) -> GpuGauge {
        let power = brownout_faults::gpu::power_spec(&rep.config().gpu);
        let utilization = rep.utilization();
        let busy_s = rep.busy_time().as_secs_f64();
        GpuGauge {
            rule: rule.to_string(),
            queue_depth: rep.queue_depth(),
            batch_size: rep.batch_size(),
            preemptions: rep.preemptions(),
            utilization,
            power_w: power.map(|p| p.watts(utilization)),
            energy_j: power.map(|p| {
                p.watts(0.0) * rep.uptime().as_secs_f64() + (p.watts(1.0) - p.watts(0.0)) * busy_s
            }),
            busy_s,
        }
    }
}

impl Metrics {
    /// Count a connection dropped before any exchange began, and say so at debug
    /// level (`why` says what happened, e.g. the TLS error).
    pub fn rejected(
        &self,
        reason: Rejection,
        listener: &str,
        peer: std::net::SocketAddr,
        why: &dyn std::fmt::Display,
    ) {
        self.rejected[reason as usize].fetch_add(1, Ordering::Relaxed);
        tracing::debug!(listener, %peer, reason = reason.as_str(), "connection rejected: {why}");
    }

    /// Connections rejected so far for `reason`.
    pub fn rejected_count(&self, reason: Rejection) -> u64 {
        self.rejected[reason as usize].load(Ordering::Relaxed)
    }

    /// The in-flight gauge for one listener (updated inline by the request path).
    pub fn active_gauge(&self, listener: &str) -> Arc<AtomicI64> {
        let mut a = self.active.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((_, g)) = a.iter().find(|(l, _)| l == listener) {
            return g.clone();
        }
        let g = Arc::new(AtomicI64::new(0));
        a.push((listener.to_string(), g.clone()));
        g
    }

    /// Exchanges in flight per listener, in the order listeners were bound.
    pub fn active_by_listener(&self) -> Vec<(String, i64)> {
        self.active
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .map(|(l, g)| (l.clone(), g.load(Ordering::Relaxed)))
            .collect()
    }

    /// Fold one finished exchange into the counters (recorder thread).
    pub fn observe(&self, r: &Record) {
        let mut s = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let (l, e) = (&*r.listener, r.endpoint);
        let phase = r.phase.as_deref().unwrap_or("");
        let o = r.outcome.as_str();
        *s.requests.entry(
            |k| k.1 == e && k.3 == o && k.0 == l && k.2 == phase,
            || (l.to_string(), e, phase.to_string(), o),
        ) += 1;
        for f in &r.faults {
            *s.injected.entry(
                |k| k.1 == f.fault && *k.0 == *f.rule,
                || (f.rule.to_string(), f.fault),
            ) += 1;
        }
        for f in &r.faults_skipped {
            *s.skipped.entry(
                |k| k.1 == f.fault && *k.0 == *f.rule,
                || (f.rule.to_string(), f.fault),
            ) += 1;
        }
        let key = || (l.to_string(), e);
        s.duration.entry(le(l, e), key).observe(r.e2e_ms / 1000.0);
        if let Some(t) = r.ttft_ms {
            s.ttft.entry(le(l, e), key).observe(t / 1000.0);
        }
        if let Some(t) = &r.itl_ms {
            s.itl.entry(le(l, e), key).observe(t.p50 / 1000.0);
        }
        if let Some(t) = r.tpot_ms {
            s.tpot.entry(le(l, e), key).observe(t / 1000.0);
        }
        if let Some(n) = r.output_tokens {
            *s.output_tokens.entry(le(l, e), key) += n;
        }
        if let Some(up) = &r.upstream {
            if let Some(e2e) = up.e2e_ms.or(up.ttfb_ms) {
                s.upstream
                    .entry(|k| k == l, || l.to_string())
                    .observe(e2e / 1000.0);
            }
        }
    }

    /// The text exposition format, version 0.0.4.
    pub fn render(&self, g: &Gauges<'_>) -> String {
        let s = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let mut out = String::with_capacity(8192);
        let head = |out: &mut String, name: &str, kind: &str, help: &str| {
            let _ = writeln!(
                out,
                "# HELP brownout_{name} {help}\n# TYPE brownout_{name} {kind}"
            );
        };
        head(
            &mut out,
            "requests_total",
            "counter",
            "Exchanges finished, by listener, endpoint, phase and outcome.",
        );
        for ((l, e, p, o), n) in s.requests.sorted() {
            let _ = writeln!(
                out,
                "brownout_requests_total{{listener=\"{}\",endpoint=\"{e}\",phase=\"{}\",outcome=\"{o}\"}} {n}",
                esc(&l),
                esc(&p)
            );
        }
        head(
            &mut out,
            "faults_injected_total",
            "counter",
            "Faults applied, by rule and fault type.",
        );
        for ((r, f), n) in s.injected.sorted() {
            let _ = writeln!(
                out,
                "brownout_faults_injected_total{{rule=\"{}\",fault=\"{f}\"}} {n}",
                esc(&r)
            );
        }
        head(
            &mut out,
            "faults_skipped_total",
            "counter",
            "Faults decided but not applied, by rule and fault type.",
        );
        for ((r, f), n) in s.skipped.sorted() {
            let _ = writeln!(
                out,
                "brownout_faults_skipped_total{{rule=\"{}\",fault=\"{f}\"}} {n}",
                esc(&r)
            );
        }
        let hist =
            |out: &mut String, name: &str, help: &str, m: &Series<ListenerEndpoint, Histogram>| {
                head(out, name, "histogram", help);
                for ((l, e), h) in m.sorted() {
                    h.render(
                        out,
                        &format!("brownout_{name}"),
                        &format!("listener=\"{}\",endpoint=\"{e}\"", esc(&l)),
                    );
                }
            };
        hist(
            &mut out,
            "request_duration_seconds",
            "End-to-end time as the client saw it.",
            &s.duration,
        );
        hist(
            &mut out,
            "time_to_first_token_seconds",
            "Time to the first content event.",
            &s.ttft,
        );
        hist(
            &mut out,
            "inter_token_latency_seconds",
            "Median gap between content events, per stream.",
            &s.itl,
        );
        hist(
            &mut out,
            "time_per_output_token_seconds",
            "(e2e - ttft) / (output tokens - 1), per stream.",
            &s.tpot,
        );
        head(
            &mut out,
            "upstream_duration_seconds",
            "histogram",
            "Time the upstream took, per listener.",
        );
        for (l, h) in s.upstream.sorted() {
            h.render(
                &mut out,
                "brownout_upstream_duration_seconds",
                &format!("listener=\"{}\"", esc(&l)),
            );
        }
        head(
            &mut out,
            "output_tokens_total",
            "counter",
            "Output tokens seen in responses.",
        );
        for ((l, e), n) in s.output_tokens.sorted() {
            let _ = writeln!(
                out,
                "brownout_output_tokens_total{{listener=\"{}\",endpoint=\"{e}\"}} {n}",
                esc(&l)
            );
        }
        drop(s);
        head(
            &mut out,
            "active_requests",
            "gauge",
            "Exchanges in flight, per listener.",
        );
        for (l, g) in self.active.lock().unwrap_or_else(|p| p.into_inner()).iter() {
            let _ = writeln!(
                out,
                "brownout_active_requests{{listener=\"{}\"}} {}",
                esc(l),
                g.load(Ordering::Relaxed)
            );
        }
        head(
            &mut out,
            "connections_rejected_total",
            "counter",
            "Connections dropped before any exchange began, by reason: header_timeout, bad_request, max_connections, tls_handshake.",
        );
        for r in Rejection::ALL {
            let _ = writeln!(
                out,
                "brownout_connections_rejected_total{{reason=\"{}\"}} {}",
                r.as_str(),
                self.rejected_count(r)
            );
        }
        head(
            &mut out,
            "gpu_queue_depth",
            "gauge",
            "Requests waiting for a simulated GPU slot, per rule.",
        );
        for gg in &g.gpu {
            let _ = writeln!(
                out,
                "brownout_gpu_queue_depth{{rule=\"{}\"}} {}",
                esc(&gg.rule),
                gg.queue_depth
            );
        }
        head(
            &mut out,
            "gpu_batch_size",
            "gauge",
            "Sequences running on a simulated GPU, per rule.",
        );
        for gg in &g.gpu {
            let _ = writeln!(
                out,
                "brownout_gpu_batch_size{{rule=\"{}\"}} {}",
                esc(&gg.rule),
                gg.batch_size
            );
        }
        head(
            &mut out,
            "gpu_preemptions_total",
            "counter",
            "Sequences preempted when the simulated KV cache ran out, per rule.",
        );
        for gg in &g.gpu {
            let _ = writeln!(
                out,
                "brownout_gpu_preemptions_total{{rule=\"{}\"}} {}",
                esc(&gg.rule),
                gg.preemptions
            );
        }
        let gpu_float = |out: &mut String, name: &str, value: &dyn Fn(&GpuGauge) -> Option<f64>| {
            for gg in &g.gpu {
                if let Some(v) = value(gg) {
                    let _ = writeln!(out, "brownout_{name}{{rule=\"{}\"}} {v}", esc(&gg.rule));
                }
            }
        };
        head(
            &mut out,
            "gpu_utilization",
            "gauge",
            "Modelled utilisation of a simulated GPU (share of time running steps, about the last second), per rule.",
        );
        gpu_float(&mut out, "gpu_utilization", &|gg| Some(gg.utilization));
        head(
            &mut out,
            "gpu_busy_seconds_total",
            "counter",
            "Seconds a simulated GPU spent running steps, per rule.",
        );
        gpu_float(&mut out, "gpu_busy_seconds_total", &|gg| Some(gg.busy_s));
        head(
            &mut out,
            "gpu_power_watts",
            "gauge",
            "Modelled board power of a simulated GPU: idle + (max - idle) x utilisation, per rule.",
        );
        gpu_float(&mut out, "gpu_power_watts", &|gg| gg.power_w);
        head(
            &mut out,
            "gpu_energy_joules_total",
            "counter",
            "Modelled energy a simulated GPU drew since it was made, per rule.",
        );
        gpu_float(&mut out, "gpu_energy_joules_total", &|gg| gg.energy_j);
        head(
            &mut out,
            "records_dropped_total",
            "counter",
            "Records lost, by reason: queue_full (the queue to the writer overflowed), write_error (the record file could not take them).",
        );
        for (reason, n) in [
            ("queue_full", g.records_dropped.queue_full),
            ("write_error", g.records_dropped.write_error),
        ] {
            let _ = writeln!(
                out,
                "brownout_records_dropped_total{{reason=\"{reason}\"}} {n}"
            );
        }
        head(
            &mut out,
            "faults_enabled",
            "gauge",
            "1 while faults may be injected, 0 after the kill switch.",
        );
        let _ = writeln!(
            out,
            "brownout_faults_enabled {}",
            u8::from(g.faults_enabled)
        );
        head(
            &mut out,
            "phase_info",
            "gauge",
            "The active profile and phase (value always 1).",
        );
        let _ = writeln!(
            out,
            "brownout_phase_info{{profile=\"{}\",phase=\"{}\"}} 1",
            esc(g.profile),
            esc(g.phase.unwrap_or(""))
        );
        out
    }
}
