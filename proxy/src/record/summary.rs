//! Per-phase aggregates (`GET /api/v1/summary`) and the dashboard's live series
//! (`GET /api/v1/live`), folded from finished records on the recorder thread.
//!
//! Like the Prometheus metrics, nothing here runs on the request path: the writer
//! thread calls [`Summary::observe`] once per record. Memory stays bounded however
//! long the proxy runs: latencies go into fixed log-linear histograms (no sample is
//! kept), phases are capped at [`MAX_PHASES`], and the live series is a ring of
//! [`LIVE_SECONDS`] one-second bins.
//!
//! The per-phase aggregates cover the exchanges that arrived since the profile in
//! force was applied ([`Summary::reset`] is called on every apply), so a game day's
//! table never mixes two profiles. The live series ignores profile changes: it is a
//! strip chart of the last few minutes.

use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::{json, Value};

use crate::record::{Outcome, Record};

/// At most this many phases are tracked separately; later ones share one entry.
pub const MAX_PHASES: usize = 256;
/// How far back the live series reaches.
pub const LIVE_SECONDS: u64 = 300;
/// (rule, fault) pairs kept per phase; more are counted under `other`.
const MAX_FAULT_KEYS: usize = 1024;
/// Histogram values are microseconds below 2^CAP_BITS (about 9.5 hours); longer
/// ones are clamped into the top bucket.
const CAP_BITS: u32 = 35;

/// A log-linear histogram of durations in microseconds, HDR style: `2^bits`
/// buckets per power of two, so the relative error is below `2^-bits`. The bucket
/// layout is fixed at construction, so memory never grows with the count.
#[derive(Debug, Clone)]
pub struct LogHist {
    bits: u32,
    counts: Box<[u64]>,
    n: u64,
    max_us: u64,
}

impl LogHist {
    /// A histogram with `2^bits` buckets per octave (5 → ~1.6% error, 3 → ~6%).
    pub fn new(bits: u32) -> Self {
        let per = 1usize << bits;
        let len = (CAP_BITS - bits + 1) as usize * per + per;
        LogHist {
            bits,
            counts: vec![0; len].into_boxed_slice(),
            n: 0,
            max_us: 0,
        }
    }

    fn index(&self, v: u64) -> usize {
        let b = self.bits;
        let v = v.min((1u64 << CAP_BITS) - 1);
        if v < (1u64 << b) {
            return v as usize;
        }
        let msb = 63 - v.leading_zeros();
        let shift = msb - b;
        let mantissa = (v >> shift) - (1u64 << b);
        (((shift + 1) as u64) << b) as usize + mantissa as usize
    }

    /// The middle of bucket `i`, in microseconds.
    fn value(&self, i: usize) -> f64 {
        let per = 1usize << self.bits;
        if i < per {
            return i as f64;
        }
        let shift = (i / per - 1) as u32;
        let mantissa = (i % per) as u64;
        let low = ((per as u64) + mantissa) << shift;
        low as f64 + ((1u64 << shift) as f64 - 1.0) / 2.0
    }

    /// Add one duration in milliseconds (negative or NaN values count as zero).
    pub fn record_ms(&mut self, ms: f64) {
        let us = if ms.is_finite() && ms > 0.0 {
            (ms * 1000.0).round() as u64
        } else {
            0
        };
        let i = self.index(us);
        self.counts[i] += 1;
        self.n += 1;
        self.max_us = self.max_us.max(us);
    }

    /// Add every count of `other` (same layout).
    pub fn merge(&mut self, other: &LogHist) {
        if other.bits != self.bits {
            return;
        }
        for (a, b) in self.counts.iter_mut().zip(other.counts.iter()) {
            *a += *b;
        }
        self.n += other.n;
        self.max_us = self.max_us.max(other.max_us);
    }

    pub fn count(&self) -> u64 {
        self.n
    }

    /// The value at quantile `q` in milliseconds (`None` when empty); never above
    /// the largest value seen.
    pub fn quantile_ms(&self, q: f64) -> Option<f64> {
        if self.n == 0 {
            return None;
        }
        let rank = ((q.clamp(0.0, 1.0) * self.n as f64).ceil() as u64).max(1);
        let mut seen = 0u64;
        for (i, c) in self.counts.iter().enumerate() {
            seen += *c;
            if seen >= rank {
                let v = self.value(i).min(self.max_us as f64);
                return Some(round3(v / 1000.0));
            }
        }
        Some(round3(self.max_us as f64 / 1000.0))
    }

    pub fn max_ms(&self) -> Option<f64> {
        (self.n > 0).then(|| round3(self.max_us as f64 / 1000.0))
    }

    fn clear(&mut self) {
        self.counts.iter_mut().for_each(|c| *c = 0);
        self.n = 0;
        self.max_us = 0;
    }
}

fn round3(v: f64) -> f64 {
    (v * 1000.0).round() / 1000.0
}

/// What one phase saw.
#[derive(Debug, Clone)]
struct PhaseAgg {
    phase: Option<Arc<str>>,
    requests: u64,
    outcomes: Vec<(&'static str, u64)>,
    /// End-to-end latency of `ok` exchanges (as in drill reports: failures are
    /// counted in the error rate, not mixed into the latency).
    e2e: LogHist,
    ttft: LogHist,
    faults: Vec<(Arc<str>, &'static str, u64)>,
}

impl PhaseAgg {
    fn new(phase: Option<Arc<str>>) -> Self {
        PhaseAgg {
            phase,
            requests: 0,
            outcomes: Vec::new(),
            e2e: LogHist::new(5),
            ttft: LogHist::new(5),
            faults: Vec::new(),
        }
    }

    fn to_json(&self) -> Value {
        let ok = self
            .outcomes
            .iter()
            .find(|(o, _)| *o == Outcome::Ok.as_str())
            .map_or(0, |(_, n)| *n);
        let errors = self.requests - ok.min(self.requests);
        let pct = |h: &LogHist, qs: &[(&str, f64)], max: bool| -> Value {
            if h.count() == 0 {
                return Value::Null;
            }
            let mut m = serde_json::Map::new();
            for (k, q) in qs {
                m.insert((*k).into(), json!(h.quantile_ms(*q)));
            }
            if max {
                m.insert("max".into(), json!(h.max_ms()));
            }
            Value::Object(m)
        };
        json!({
            "phase": self.phase.as_deref(),
            "requests": self.requests,
            "ok": ok,
            "errors": errors,
            "error_rate": if self.requests == 0 { 0.0 } else { errors as f64 / self.requests as f64 },
            "outcomes": self.outcomes.iter().map(|(o, n)| ((*o).to_string(), json!(n))).collect::<serde_json::Map<_, _>>(),
            "e2e_ms": pct(&self.e2e, &[("p50", 0.5), ("p95", 0.95), ("p99", 0.99)], true),
            "ttft_ms": pct(&self.ttft, &[("p50", 0.5), ("p95", 0.95)], false),
            "faults_injected": self.faults.iter().map(|f| f.2).sum::<u64>(),
            "faults": self.faults.iter().map(|(r, f, n)| json!({"rule": r.as_ref(), "fault": f, "count": n})).collect::<Vec<_>>(),
        })
    }
}

/// One second of the live series.
#[derive(Debug)]
struct Bin {
    /// Unix second this bin holds (a ring slot is reused once it is too old).
    sec: u64,
    requests: u64,
    errors: u64,
    faults: u64,
    e2e: LogHist,
    ttft: LogHist,
}

impl Bin {
    fn new(sec: u64) -> Self {
        Bin {
            sec,
            requests: 0,
            errors: 0,
            faults: 0,
            e2e: LogHist::new(3),
            ttft: LogHist::new(3),
        }
    }

    fn reuse(&mut self, sec: u64) {
        self.sec = sec;
        self.requests = 0;
        self.errors = 0;
        self.faults = 0;
        self.e2e.clear();
        self.ttft.clear();
    }
}

#[derive(Debug)]
struct Inner {
    profile: String,
    since: SystemTime,
    phases: Vec<PhaseAgg>,
    ring: Vec<Option<Box<Bin>>>,
}

/// Per-phase aggregates since the profile was applied, and the live series.
#[derive(Debug)]
pub struct Summary {
    inner: Mutex<Inner>,
}

impl Default for Summary {
    fn default() -> Self {
        Summary {
            inner: Mutex::new(Inner {
                profile: "none".into(),
                since: SystemTime::now(),
                phases: Vec::new(),
                // Every bin up front (~4 KiB each, ~1.3 MiB in all): memory is flat
                // from the start instead of growing through the first five minutes
                // of traffic as the ring fills, which reads like a leak in a soak.
                ring: (0..LIVE_SECONDS)
                    .map(|_| Some(Box::new(Bin::new(0))))
                    .collect(),
            }),
        }
    }
}

fn unix_secs(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

impl Summary {
    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A profile was applied: start the per-phase aggregates afresh. Exchanges that
    /// arrived earlier belong to the previous profile and are left out.
    pub fn reset(&self, profile: &str) {
        let mut s = self.lock();
        s.profile = profile.to_string();
        s.since = SystemTime::now();
        s.phases.clear();
    }

    /// Fold one finished exchange in (recorder thread).
    pub fn observe(&self, r: &Record) {
        self.observe_at(r, SystemTime::now());
    }

    /// [`Self::observe`] with the time the exchange is seen finished (for tests).
    pub fn observe_at(&self, r: &Record, now: SystemTime) {
        let ok = r.outcome == Outcome::Ok;
        let mut guard = self.lock();
        let s = &mut *guard;
        // The live series: binned by when the exchange finished.
        let sec = unix_secs(now);
        let slot = &mut s.ring[(sec % LIVE_SECONDS) as usize];
        let bin = match slot {
            Some(b) => {
                if b.sec != sec {
                    b.reuse(sec);
                }
                b
            }
            None => slot.insert(Box::new(Bin::new(sec))),
        };
        bin.requests += 1;
        bin.faults += r.faults.len() as u64;
        if ok {
            bin.e2e.record_ms(r.e2e_ms);
            if let Some(t) = r.ttft_ms {
                bin.ttft.record_ms(t);
            }
        } else {
            bin.errors += 1;
        }
        // The per-phase aggregates: only exchanges that began under this profile.
        if r.ts.0 < s.since {
            return;
        }
        let idx = match s.phases.iter().position(|p| p.phase == r.phase) {
            Some(i) => i,
            None if s.phases.len() < MAX_PHASES => {
                s.phases.push(PhaseAgg::new(r.phase.clone()));
                s.phases.len() - 1
            }
            None => {
                let other: Option<Arc<str>> = Some(Arc::from("other"));
                match s.phases.iter().position(|p| p.phase == other) {
                    Some(i) => i,
                    None => {
                        s.phases.push(PhaseAgg::new(other));
                        s.phases.len() - 1
                    }
                }
            }
        };
        let p = &mut s.phases[idx];
        p.requests += 1;
        let o = r.outcome.as_str();
        match p.outcomes.iter_mut().find(|(k, _)| *k == o) {
            Some((_, n)) => *n += 1,
            None => p.outcomes.push((o, 1)),
        }
        if ok {
            p.e2e.record_ms(r.e2e_ms);
            if let Some(t) = r.ttft_ms {
                p.ttft.record_ms(t);
            }
        }
        for f in &r.faults {
            let found = p
                .faults
                .iter()
                .position(|(rule, fault, _)| *fault == f.fault && **rule == *f.rule);
            match found {
                Some(i) => p.faults[i].2 += 1,
                None if p.faults.len() < MAX_FAULT_KEYS => {
                    p.faults.push((f.rule.clone(), f.fault, 1))
                }
                None => match p.faults.iter_mut().find(|(rule, _, _)| &**rule == "other") {
                    Some((_, _, n)) => *n += 1,
                    None => p.faults.push((Arc::from("other"), "other", 1)),
                },
            }
        }
    }

    /// `GET /api/v1/summary`: phases in the order of `order` (the profile's
    /// timeline, listed even before any traffic), then any others as first seen.
    pub fn to_json(&self, order: &[Arc<str>]) -> Value {
        let s = self.lock();
        let mut phases = Vec::new();
        for name in order {
            match s
                .phases
                .iter()
                .find(|p| p.phase.as_deref() == Some(&**name))
            {
                Some(p) => phases.push(p.to_json()),
                None => phases.push(PhaseAgg::new(Some(name.clone())).to_json()),
            }
        }
        for p in &s.phases {
            let listed = p
                .phase
                .as_deref()
                .is_some_and(|n| order.iter().any(|o| **o == *n));
            if !listed {
                phases.push(p.to_json());
            }
        }
        let mut totals: Vec<(Arc<str>, &'static str, u64)> = Vec::new();
        for p in &s.phases {
            for (r, f, n) in &p.faults {
                match totals.iter_mut().find(|t| t.1 == *f && t.0 == *r) {
                    Some(t) => t.2 += n,
                    None => totals.push((r.clone(), f, *n)),
                }
            }
        }
        let since = time::OffsetDateTime::from(s.since)
            .format(&time::format_description::well_known::Rfc3339)
            .unwrap_or_default();
        json!({
            "profile": s.profile,
            "since": since,
            "elapsed_s": round3(SystemTime::now().duration_since(s.since).unwrap_or(Duration::ZERO).as_secs_f64()),
            "requests": s.phases.iter().map(|p| p.requests).sum::<u64>(),
            "faults": totals.iter().map(|(r, f, n)| json!({"rule": r.as_ref(), "fault": f, "count": n})).collect::<Vec<_>>(),
            "phases": phases,
        })
    }

    /// The live series: one point per finished second after `since` (unix
    /// seconds), each aggregating the `window` seconds up to it, so that
    /// percentiles stay readable at low request rates.
    pub fn live(&self, since: Option<u64>, window: u64, now: SystemTime) -> Value {
        let window = window.clamp(1, 60);
        let s = self.lock();
        let now_s = unix_secs(now);
        // The current second is still filling; the last finished one is final.
        let last = now_s.saturating_sub(1);
        let first = last
            .saturating_sub(LIVE_SECONDS - window)
            .max(since.map_or(0, |x| x + 1));
        let get = |sec: u64| -> Option<&Bin> {
            s.ring[(sec % LIVE_SECONDS) as usize]
                .as_deref()
                .filter(|b| b.sec == sec)
        };
        let mut points = Vec::new();
        let mut t = first;
        while t <= last {
            let (mut req, mut err, mut faults) = (0u64, 0u64, 0u64);
            let mut e2e = LogHist::new(3);
            let mut ttft = LogHist::new(3);
            for k in t.saturating_sub(window - 1)..=t {
                if let Some(b) = get(k) {
                    req += b.requests;
                    err += b.errors;
                    faults += b.faults;
                    e2e.merge(&b.e2e);
                    ttft.merge(&b.ttft);
                }
            }
            let w = window as f64;
            points.push(json!({
                "t": t,
                "rps": round3(req as f64 / w),
                "error_rate": if req == 0 { Value::Null } else { json!(round3(err as f64 / req as f64)) },
                "faults_per_s": round3(faults as f64 / w),
                "e2e_ms": {"p50": e2e.quantile_ms(0.5), "p95": e2e.quantile_ms(0.95), "p99": e2e.quantile_ms(0.99)},
                "ttft_ms": {"p50": ttft.quantile_ms(0.5), "p95": ttft.quantile_ms(0.95)},
            }));
            t += 1;
        }
        json!({"now": now_s, "window_s": window, "points": points})
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::FaultRef;

    #[test]
    fn histogram_quantiles_are_close() {
        let mut h = LogHist::new(5);
        for i in 1..=1000 {
            h.record_ms(i as f64);
        }
        for (q, want) in [(0.5, 500.0), (0.95, 950.0), (0.99, 990.0)] {
            let got = h.quantile_ms(q).unwrap();
            assert!((got - want).abs() / want < 0.02, "q{q}: {got} vs {want}");
        }
        assert_eq!(h.max_ms(), Some(1000.0));
        assert_eq!(LogHist::new(5).quantile_ms(0.5), None);
        // Tiny and huge values stay in range.
        h.record_ms(0.0);
        h.record_ms(-3.0);
        h.record_ms(f64::NAN);
        h.record_ms(1e12);
        assert!(h.quantile_ms(1.0).unwrap() > 1e6);
    }

    #[test]
    fn histogram_index_is_monotonic_and_in_bounds() {
        for bits in [3, 5] {
            let h = LogHist::new(bits);
            let mut last = 0;
            let mut v = 0u64;
            while v < (1u64 << 40) {
                let i = h.index(v);
                assert!(i >= last && i < h.counts.len(), "bits {bits} v {v}");
                let mid = h.value(i);
                if v > 64 && v < (1u64 << CAP_BITS) {
                    assert!((mid - v as f64).abs() / (v as f64) <= 1.0 / (1u64 << bits) as f64);
                }
                last = i;
                v = v * 9 / 8 + 1;
            }
        }
    }

    fn rec(phase: &str, outcome: Outcome, e2e: f64, fault: Option<&str>) -> Record {
        let mut r = Record::new(1, Arc::from("l"));
        r.phase = Some(Arc::from(phase));
        r.outcome = outcome;
        r.e2e_ms = e2e;
        r.ttft_ms = Some(e2e / 2.0);
        if let Some(f) = fault {
            r.faults.push(FaultRef {
                rule: Arc::from("r"),
                fault: match f {
                    "delay" => "delay",
                    _ => "error",
                },
                reason: None,
            });
        }
        r
    }

    #[test]
    fn phases_aggregate_and_reset() {
        let s = Summary::default();
        s.reset("p1");
        for _ in 0..9 {
            s.observe(&rec("base", Outcome::Ok, 10.0, None));
        }
        s.observe(&rec("storm", Outcome::InjectedError, 1.0, Some("error")));
        s.observe(&rec("storm", Outcome::Ok, 100.0, Some("delay")));
        let order = [Arc::from("base"), Arc::from("storm"), Arc::from("after")];
        let v = s.to_json(&order);
        assert_eq!(v["profile"], "p1");
        assert_eq!(v["requests"], 11);
        let p = &v["phases"];
        assert_eq!(p[0]["phase"], "base");
        assert_eq!(p[0]["requests"], 9);
        assert_eq!(p[0]["error_rate"], 0.0);
        assert!((p[0]["e2e_ms"]["p50"].as_f64().unwrap() - 10.0).abs() < 0.2);
        assert_eq!(p[1]["requests"], 2);
        assert_eq!(p[1]["error_rate"], 0.5);
        assert_eq!(p[1]["outcomes"]["injected_error"], 1);
        assert_eq!(p[1]["faults_injected"], 2);
        assert_eq!(p[2]["phase"], "after");
        assert_eq!(p[2]["requests"], 0);
        assert!(p[2]["e2e_ms"].is_null());
        // A new profile starts afresh; exchanges that began before it are left out.
        let old = rec("base", Outcome::Ok, 5.0, None);
        std::thread::sleep(Duration::from_millis(2));
        s.reset("p2");
        s.observe(&old);
        let v = s.to_json(&[]);
        assert_eq!(v["profile"], "p2");
        assert_eq!(v["requests"], 0);
        assert_eq!(v["phases"].as_array().unwrap().len(), 0);
    }

    #[test]
    fn live_series_bins_by_second() {
        let s = Summary::default();
        let t0 = UNIX_EPOCH + Duration::from_secs(1_000_000);
        for i in 0..4 {
            s.observe_at(&rec("x", Outcome::Ok, 20.0, None), t0);
            if i == 0 {
                s.observe_at(&rec("x", Outcome::Reset, 1.0, None), t0);
            }
        }
        s.observe_at(
            &rec("x", Outcome::Ok, 40.0, None),
            t0 + Duration::from_secs(1),
        );
        let v = s.live(Some(1_000_000 - 1), 1, t0 + Duration::from_millis(2500));
        let pts = v["points"].as_array().unwrap();
        assert_eq!(pts.len(), 2, "{v}");
        assert_eq!(pts[0]["t"], 1_000_000);
        assert_eq!(pts[0]["rps"], 5.0);
        assert_eq!(pts[0]["error_rate"], 0.2);
        assert_eq!(pts[1]["rps"], 1.0);
        assert!((pts[1]["e2e_ms"]["p50"].as_f64().unwrap() - 40.0).abs() < 3.0);
        // Past the ring, old bins are not reported.
        let later = t0 + Duration::from_secs(LIVE_SECONDS + 10);
        let v = s.live(None, 5, later);
        assert!(v["points"]
            .as_array()
            .unwrap()
            .iter()
            .all(|p| p["rps"] == 0.0));
    }
}
