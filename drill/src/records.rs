//! `brownout report RECORDS...`: per-phase statistics rebuilt from proxy record
//! files (docs/records.md, one JSON object per line), merged across many sidecars.
//!
//! Lines are read as the proxy's own [`Record`] type, so every outcome counts as
//! the record names it (`injected_error` is not an `http_error`), and a line this
//! version cannot read as a record (an outcome it does not know, a missing `ts`)
//! is a foreign line, never guessed at. Records are merged by timestamp; phases
//! come in the order they first appear, and each phase lasts from its first to its
//! last record. The report says it is incomplete, naming the file and why, when a
//! file ends in a torn line (a writer cut off mid-record), holds lines that are
//! not records, or carries the proxy's note that records were lost
//! (`records_dropped`, with its reason): such lines are never skipped silently.
//!
//! Records know nothing of how the traffic was made (no arrival process, no seed),
//! so the report describes what they hold instead ([`RecordsSource`]), and without
//! objectives it gives no verdict: a pass would say nothing was checked.
//!
//! Retries are counted as the records allow: an `attempt` above 0 (the SDK's own
//! retry count) is a retry; so is an exchange with the same `fingerprint` and
//! `client` as a failed exchange that ended at most [`CALL_WINDOW`] before it
//! arrived, because LiteLLM and LangChain retry with fresh SDK calls, each of
//! which says attempt 0 or nothing at all. A success ends the call: the next
//! identical request is a new one.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap, HashMap};
use std::fmt::Write as _;
use std::time::Duration;

use serde::Deserialize;

use brownout_faults::record::{ClientId, Fingerprint, Outcome as RecOutcome, Record};
use brownout_faults::schedule::CALL_WINDOW;
use brownout_faults::Profile;

use crate::chaos::{self, ChaosInput, ChaosSummary, PhaseSpan, RecordView};
use crate::engine::{evaluate, is_good, EngineResult, PhaseExtra, Point};
use crate::error::DrillError;
pub use crate::gate::{Count, RecordsSource};
use crate::gate::{DrillReport, EXIT_PASS};
use crate::sample::{Outcome, Sample, TokensSource};
use crate::scenario::Scenario;
use crate::stats::{DrillResult, PhaseAccumulator};

/// Seconds since the Unix epoch of an RFC 3339 UTC time
/// (`2026-01-02T03:04:05.678Z`); `None` if it is not one.
pub fn parse_ts(s: &str) -> Option<f64> {
    let s = s.strip_suffix('Z')?;
    let (date, time) = s.split_once('T')?;
    let mut d = date.splitn(3, '-').map(|x| x.parse::<i64>().ok());
    let (y, m, day) = (d.next()??, d.next()??, d.next()??);
    let mut t = time.splitn(3, ':');
    let h: i64 = t.next()?.parse().ok()?;
    let mi: i64 = t.next()?.parse().ok()?;
    let sec: f64 = t.next()?.parse().ok()?;
    // Days from civil (Howard Hinnant's algorithm).
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    Some((days * 86_400 + h * 3600 + mi * 60) as f64 + sec)
}

/// One record as read, with what the line said beyond the type.
struct Read {
    /// Arrival, seconds since the Unix epoch.
    t: f64,
    rec: Record,
    /// The line had a `matched` list: older proxies did not say, and the chaos
    /// accounting must then tell "none matched" from "not recorded".
    matched_known: bool,
}

/// The drill's outcome for a record's, for goodput and the charts (the error
/// counts by kind use the record's own names).
fn sample_outcome(r: &Record) -> Outcome {
    match r.outcome {
        RecOutcome::Ok => Outcome::Ok,
        RecOutcome::HttpError | RecOutcome::InjectedError | RecOutcome::UpstreamError => {
            Outcome::HttpError(r.status.unwrap_or(502))
        }
        RecOutcome::Timeout => Outcome::Timeout,
        RecOutcome::Reset | RecOutcome::ClientClosed => Outcome::TransportError,
        RecOutcome::Truncated => Outcome::Truncated,
        RecOutcome::Corrupt => Outcome::Corrupt,
    }
}

/// A note line the proxy leaves in its file when records were lost
/// (`{"records_dropped": N, "reason": "write_error"}`): how many, and why. Some(0)
/// for a note that says nothing was lost; None for a line that is no note.
fn dropped_note(v: &serde_json::Value) -> Option<(Option<u64>, String)> {
    let o = v.as_object()?;
    let (_, n) = o.iter().find(|(k, _)| {
        *k == "records_dropped" || *k == "dropped_records" || *k == "records_dropped_total"
    })?;
    let reason = o
        .get("reason")
        .and_then(|r| r.as_str())
        .unwrap_or("unknown")
        .to_owned();
    Some((n.as_u64(), reason))
}

/// What a record file holds besides whole records: each makes the report
/// incomplete, and the report says which file and why.
#[derive(Debug, Default)]
struct FileFlaws {
    /// The file ends inside a line (a writer cut off mid-record).
    torn_last: bool,
    /// Lines that are not records, the first one's number, and why it is not one
    /// when it is JSON (an outcome this version does not know, say).
    foreign: usize,
    first_foreign: Option<(usize, Option<String>)>,
    /// Records the proxy noted it lost, by reason (None: a count it could not give).
    dropped: BTreeMap<String, Option<u64>>,
}

impl FileFlaws {
    fn describe(&self, name: &str) -> Vec<String> {
        let mut out = Vec::new();
        if self.torn_last {
            out.push(format!(
                "{name}: the last line is torn (cut off mid-record)"
            ));
        }
        if let Some((first, why)) = &self.first_foreign {
            out.push(format!(
                "{name}: {} line(s) are not records, the first at line {first}{}",
                self.foreign,
                why.as_ref().map_or(String::new(), |w| format!(" ({w})"))
            ));
        }
        if !self.dropped.is_empty() {
            let known: u64 = self.dropped.values().flatten().sum();
            let reasons: Vec<String> = self
                .dropped
                .iter()
                .map(|(r, n)| match n {
                    Some(n) => format!("{r}: {n}"),
                    None => format!("{r}: ?"),
                })
                .collect();
            out.push(format!(
                "{name}: the proxy noted {known} record(s) it could not write ({})",
                reasons.join(", ")
            ));
        }
        out
    }
}

/// Why a JSON line is not a record, in a few words.
fn not_a_record(v: &serde_json::Value, e: &serde_json::Error) -> String {
    match v.get("outcome") {
        Some(serde_json::Value::String(o))
            if RecOutcome::deserialize(&serde_json::Value::String(o.clone())).is_err() =>
        {
            format!("unknown outcome `{o}`")
        }
        _ => {
            let mut s = e.to_string();
            if s.len() > 160 {
                let cut = (0..=160)
                    .rev()
                    .find(|i| s.is_char_boundary(*i))
                    .unwrap_or(0);
                s.truncate(cut);
                s.push('…');
            }
            s
        }
    }
}

/// Read a record file for [`report_from_records`]. Bytes that are not UTF-8 (a
/// record cut inside a character) become U+FFFD, so the line reads as torn rather
/// than the whole file being refused.
pub fn read_record_file(path: &std::path::Path) -> std::io::Result<String> {
    let bytes = std::fs::read(path)?;
    Ok(match String::from_utf8(bytes) {
        Ok(s) => s,
        Err(e) => String::from_utf8_lossy(e.as_bytes()).into_owned(),
    })
}

impl Read {
    /// The record as the chaos accounting reads it.
    fn view(&self) -> RecordView<'_> {
        RecordView {
            record: &self.rec,
            matched_known: self.matched_known,
        }
    }
}

/// The records of `(file name, text)` pairs in arrival order, with what makes
/// them incomplete (per file, as [`report_from_records`] names it).
fn read_all(files: &[(String, String)]) -> (Vec<Read>, Vec<String>) {
    let mut recs: Vec<Read> = Vec::new();
    let mut why = Vec::new();
    for (name, text) in files {
        let mut flaws = FileFlaws::default();
        let unterminated = !text.is_empty() && !text.ends_with('\n');
        let count = text.lines().count();
        for (i, line) in text.lines().enumerate() {
            if line.trim().is_empty() {
                continue;
            }
            // Err(None): not JSON; Err(Some(why)): JSON, but no record.
            let rec = match serde_json::from_str::<serde_json::Value>(line) {
                Err(_) => Err(None),
                Ok(v) => match dropped_note(&v) {
                    Some(note) => Ok(Err(note)),
                    None => match Record::deserialize(&v) {
                        Ok(rec) => Ok(Ok(Read {
                            t: rec.ts.unix_secs(),
                            matched_known: v.get("matched").is_some(),
                            rec,
                        })),
                        Err(e) => Err(Some(not_a_record(&v, &e))),
                    },
                },
            };
            match rec {
                Ok(Ok(r)) => recs.push(r),
                Ok(Err((n, reason))) => {
                    if n != Some(0) {
                        let e = flaws.dropped.entry(reason).or_insert(Some(0));
                        *e = match (*e, n) {
                            (Some(a), Some(b)) => Some(a + b),
                            _ => None,
                        };
                    }
                }
                Err(_) if unterminated && i + 1 == count => flaws.torn_last = true,
                Err(w) => {
                    flaws.foreign += 1;
                    flaws.first_foreign.get_or_insert((i + 1, w));
                }
            }
        }
        why.extend(flaws.describe(name));
    }
    recs.sort_by(|a, b| a.t.total_cmp(&b.t));
    (recs, why)
}

/// The chaos accounting of record files (the in-process drill's proxy writes one):
/// every rule of `profile` counted and judged over the records, in arrival order.
/// The second value says why the records are incomplete, when they are.
pub fn chaos_from_records(
    files: &[(String, String)],
    input: &ChaosInput<'_>,
    source: &str,
) -> (ChaosSummary, Option<String>) {
    let (recs, why) = read_all(files);
    let views: Vec<RecordView<'_>> = recs.iter().map(Read::view).collect();
    let mut summary = chaos::account(&views, input, source);
    let why = (!why.is_empty()).then(|| why.join("; "));
    if let Some(w) = &why {
        summary.note = Some(match summary.note.take() {
            Some(n) => format!("{n}; records incomplete: {w}"),
            None => format!("records incomplete: {w}"),
        });
    }
    (summary, why)
}

/// The cost of chaos in record files (`crate::cost::chaos_cost`): per phase of
/// `phases` (names and lengths, in order), the tokens the upstream billed on
/// retries (as [`retries`] infers them) and on answers that failed, priced.
pub fn chaos_cost_from_records(
    files: &[(String, String)],
    phases: &[PhaseSpan],
    cost: &crate::cost::CostSpec,
) -> crate::cost::ChaosCost {
    let (recs, _) = read_all(files);
    cost_of(&recs, phases, cost)
}

fn cost_of(
    recs: &[Read],
    phases: &[PhaseSpan],
    cost: &crate::cost::CostSpec,
) -> crate::cost::ChaosCost {
    let retry = retries(recs);
    let exchanges: Vec<crate::cost::Exchange<'_>> = recs
        .iter()
        .zip(retry)
        .map(|(r, retry)| crate::cost::exchange_of(&r.rec, retry))
        .collect();
    let spans: Vec<(String, Option<f64>)> = phases
        .iter()
        .map(|p| (p.name.clone(), p.duration_s))
        .collect();
    crate::cost::chaos_cost(&exchanges, &spans, cost)
}

/// How far a failure's end may seem to come after its retry's arrival: record
/// times are cut to milliseconds, so a retry sent at once can read as arriving a
/// moment before the failure it follows ended.
const CLOCK_SLACK_US: i64 = 2_000;

/// Which records (in arrival order) are retries of an earlier call: an `attempt`
/// above 0, or the same fingerprint and client as a failed exchange that ended at
/// most [`CALL_WINDOW`] before this one arrived (module docs).
fn retries(recs: &[Read]) -> Vec<bool> {
    let us = |s: f64| (s * 1e6).round() as i64;
    let key = |r: &Record| -> Option<(Fingerprint, ClientId)> { Some((r.fingerprint?, r.client?)) };
    let window = i64::try_from(CALL_WINDOW.as_micros()).unwrap_or(i64::MAX);
    // Exchanges that have arrived but not yet ended, by end; an exchange's own end
    // goes in after it is judged, so it is never its own retry.
    let mut ending: BinaryHeap<Reverse<(i64, usize)>> = BinaryHeap::new();
    // Per call identity, when its latest failure ended (a success removes it).
    let mut failed: HashMap<(Fingerprint, ClientId), i64> = HashMap::new();
    let mut out = Vec::with_capacity(recs.len());
    for (i, r) in recs.iter().enumerate() {
        let at = us(r.t);
        while let Some(&Reverse((end, j))) = ending.peek() {
            if end > at + CLOCK_SLACK_US {
                break;
            }
            ending.pop();
            if let Some(k) = key(&recs[j].rec) {
                if recs[j].rec.outcome == RecOutcome::Ok {
                    failed.remove(&k);
                } else {
                    failed.insert(k, end);
                }
            }
        }
        let explicit = r.rec.attempt.is_some_and(|a| a > 0);
        let k = key(&r.rec);
        let inferred = k
            .and_then(|k| failed.get(&k))
            .is_some_and(|end| at - end <= window);
        out.push(explicit || inferred);
        if k.is_some() {
            ending.push(Reverse((at + us(r.rec.e2e_ms.max(0.0) / 1000.0), i)));
        }
    }
    out
}

fn counted(m: HashMap<String, u64>) -> Vec<Count> {
    let mut v: Vec<Count> = m
        .into_iter()
        .map(|(name, records)| Count { name, records })
        .collect();
    v.sort_by(|a, b| b.records.cmp(&a.records).then_with(|| a.name.cmp(&b.name)));
    v
}

/// A rate for people: `1.12 req/s`, `42.0 req/s`, `3.5 req/min`.
pub fn fmt_rate(per_sec: f64) -> String {
    if per_sec >= 100.0 {
        format!("{per_sec:.0} req/s")
    } else if per_sec >= 10.0 {
        format!("{per_sec:.1} req/s")
    } else if per_sec >= 0.1 {
        format!("{per_sec:.2} req/s")
    } else if per_sec * 60.0 >= 1.0 {
        format!("{:.1} req/min", per_sec * 60.0)
    } else {
        format!("{:.1} req/h", per_sec * 3600.0)
    }
}

/// A span for people: `850 ms`, `12.3 s`, `4m 05s`, `2h 03m`.
fn fmt_span(s: f64) -> String {
    if s < 1.0 {
        format!("{:.0} ms", s * 1000.0)
    } else if s < 60.0 {
        format!("{s:.1} s")
    } else if s < 3600.0 {
        let t = s.round() as u64;
        format!("{}m {:02}s", t / 60, t % 60)
    } else {
        let t = (s / 60.0).round() as u64;
        format!("{}h {:02}m", t / 60, t % 60)
    }
}

impl RecordsSource {
    fn of(recs: &[Read], files: usize) -> Self {
        let mut listeners: HashMap<String, u64> = HashMap::new();
        let mut endpoints: HashMap<String, u64> = HashMap::new();
        let mut models: HashMap<String, u64> = HashMap::new();
        let (mut streaming, mut stream_known) = (0, 0);
        for r in recs {
            let r = &r.rec;
            let name = |s: &str| {
                if s.is_empty() {
                    "?".to_owned()
                } else {
                    s.to_owned()
                }
            };
            *listeners.entry(name(&r.listener)).or_default() += 1;
            let ep = format!("{} {}", name(r.api), name(r.endpoint));
            *endpoints.entry(ep).or_default() += 1;
            if let Some(m) = &r.model {
                *models.entry(m.clone()).or_default() += 1;
            }
            if let Some(s) = r.stream {
                stream_known += 1;
                streaming += u64::from(s);
            }
        }
        let span_s = match (recs.first(), recs.last()) {
            (Some(a), Some(b)) => (b.t - a.t).max(0.0),
            _ => 0.0,
        };
        let ts = |r: Option<&Read>| {
            r.and_then(|r| {
                serde_json::to_value(r.rec.ts)
                    .ok()?
                    .as_str()
                    .map(str::to_owned)
            })
        };
        RecordsSource {
            files,
            records: recs.len() as u64,
            first: ts(recs.first()),
            last: ts(recs.last()),
            span_s,
            // One record, or all in one millisecond: no rate to speak of.
            rate_per_sec: (span_s >= 0.001 && recs.len() > 1)
                .then(|| (recs.len() - 1) as f64 / span_s),
            listeners: counted(listeners),
            endpoints: counted(endpoints),
            models: counted(models),
            streaming,
            stream_known,
            no_verdict: None,
        }
    }

    /// The report's header line: what the records hold and over what time.
    pub fn describe(&self) -> String {
        let list = |v: &[Count], code: bool| {
            let shown: Vec<String> = v
                .iter()
                .take(4)
                .map(|c| {
                    let n = if code {
                        format!("`{}`", c.name)
                    } else {
                        c.name.clone()
                    };
                    if v.len() > 1 {
                        format!("{n} ({})", c.records)
                    } else {
                        n
                    }
                })
                .collect();
            let more = v.len().saturating_sub(4);
            if more > 0 {
                format!("{} and {more} more", shown.join(", "))
            } else {
                shown.join(", ")
            }
        };
        let mut out = format!("{} record(s) from {} file(s)", self.records, self.files);
        if let (Some(a), Some(b)) = (&self.first, &self.last) {
            let _ = write!(out, " · {a} → {b} ({})", fmt_span(self.span_s));
        }
        match self.rate_per_sec {
            Some(r) => {
                let _ = write!(out, " · {} observed", fmt_rate(r));
            }
            None if self.records > 0 => out.push_str(" · no rate (a single instant)"),
            None => {}
        }
        if !self.listeners.is_empty() {
            let _ = write!(out, " · listener {}", list(&self.listeners, true));
        }
        if !self.endpoints.is_empty() {
            let _ = write!(out, " · {}", list(&self.endpoints, false));
        }
        if self.models.is_empty() {
            if self.records > 0 {
                out.push_str(" · no model recorded");
            }
        } else {
            let _ = write!(out, " · model {}", list(&self.models, true));
        }
        if self.stream_known > 0 {
            let pct = (self.streaming as f64 * 100.0 / self.stream_known as f64).round();
            let _ = write!(out, " · {pct:.0}% streaming");
            if self.stream_known < self.records {
                let _ = write!(out, " (of {} with a body read)", self.stream_known);
            }
        } else if self.records > 0 {
            out.push_str(" · streaming not recorded");
        }
        out
    }
}

/// Build the report from `(file name, text)` pairs, applying the scenario's SLOs
/// and baseline when one is given. Faults are counted per phase and rule as the
/// records name them, not judged: [`report_from_records_with`] judges them
/// against the scenario's profile.
///
/// Fails only if a latency histogram cannot be made (a bug: the bounds are
/// constant).
pub fn report_from_records(
    files: &[(String, String)],
    scenario: Option<&Scenario>,
) -> Result<DrillReport, DrillError> {
    report_from_records_with(files, scenario, None)
}

/// Per phase: records, successes within the goodput thresholds, first attempts
/// of calls, errors by the records' outcome names and non-2xx statuses.
#[derive(Default)]
struct Tally {
    attempts: u64,
    good: u64,
    calls: u64,
    kinds: BTreeMap<String, u64>,
    statuses: BTreeMap<u16, u64>,
}

impl Tally {
    fn add(&mut self, r: &Record, good: bool, retry: bool) {
        self.attempts += 1;
        self.good += u64::from(good);
        self.calls += u64::from(!retry);
        if r.outcome != RecOutcome::Ok {
            *self.kinds.entry(r.outcome.as_str().to_owned()).or_default() += 1;
            if let Some(s) = r.status.filter(|s| !(200..300).contains(s)) {
                *self.statuses.entry(s).or_default() += 1;
            }
        }
    }

    fn extra(&self, name: &str) -> PhaseExtra {
        let n = self.attempts;
        PhaseExtra {
            name: name.to_owned(),
            good: self.good,
            goodput: if n == 0 {
                1.0
            } else {
                self.good as f64 / n as f64
            },
            attempts: n,
            // Retries of calls made in an earlier phase, alone: count them as
            // one call rather than divide by none.
            retry_amplification: if n == 0 {
                1.0
            } else {
                n as f64 / self.calls.max(1) as f64
            },
            correctness: Default::default(),
        }
    }
}

/// [`report_from_records`], with the profile the records were made under: each of
/// its rules is judged (docs/drills.md), and an idle one makes the verdict
/// inconclusive (exit 4) unless the scenario says `allow_idle_rules: true`.
///
/// Without objectives (no scenario, or one without `slo`) there is no verdict
/// (`no verdict`, exit 0): records alone cannot pass.
pub fn report_from_records_with(
    files: &[(String, String)],
    scenario: Option<&Scenario>,
    profile: Option<&Profile>,
) -> Result<DrillReport, DrillError> {
    let (recs, why) = read_all(files);
    let t0 = recs.first().map_or(0.0, |r| r.t);
    // Records without a phase are all the records when none has one (one row,
    // the total's), else a row of their own.
    let phased = recs.iter().any(|r| r.rec.phase.is_some());
    let unphased = if phased { "(no phase)" } else { "all" };
    let phase_of = |r: &Read| -> String { r.rec.phase.as_deref().unwrap_or(unphased).to_owned() };
    // Phases in order of first appearance, with their time spans.
    let mut order: Vec<String> = Vec::new();
    let mut span: BTreeMap<String, (f64, f64)> = BTreeMap::new();
    for r in &recs {
        let p = phase_of(r);
        if !order.contains(&p) {
            order.push(p.clone());
        }
        let e = span.entry(p).or_insert((r.t, r.t));
        e.0 = e.0.min(r.t);
        e.1 = e.1.max(r.t);
    }
    let slo = scenario.and_then(|s| s.slo.clone()).unwrap_or_default();
    let mut accs = order
        .iter()
        .map(|_| PhaseAccumulator::new())
        .collect::<Result<Vec<_>, _>>()?;
    let mut total = PhaseAccumulator::new()?;
    let mut tallies: Vec<Tally> = order.iter().map(|_| Tally::default()).collect();
    let mut all = Tally::default();
    let mut points = Vec::new();
    let retried = retries(&recs);
    let ms = |v: f64| Duration::from_secs_f64(v.max(0.0) / 1000.0);
    for (seq, r) in recs.iter().enumerate() {
        let name = phase_of(r);
        let i = order.iter().position(|p| *p == name).unwrap_or(0);
        let rec = &r.rec;
        let s = Sample {
            seq: seq as u64,
            phase: i,
            outcome: sample_outcome(rec),
            e2e: ms(rec.e2e_ms),
            ttft: rec.ttft_ms.map(ms),
            itl: Vec::new(),
            output_tokens: rec.output_tokens,
            tokens_source: match rec.tokens_source {
                Some("usage") => Some(TokensSource::Usage),
                Some(_) => Some(TokensSource::Counted),
                None => None,
            },
            input_tokens: rec.input_tokens,
            send_lag: Duration::ZERO,
            answer: None,
            embedding: None,
            ids: None,
        };
        accs[i].record(&s);
        total.record(&s);
        let good = is_good(&s, slo.for_phase(&name).goodput.as_ref());
        let good_all = is_good(&s, slo.goodput.as_ref());
        tallies[i].add(rec, good, retried[seq]);
        all.add(rec, good_all, retried[seq]);
        points.push(Point::of(r.t - t0, 0, &s));
    }
    let dur = |name: &str| span.get(name).map_or(0.001, |(a, b)| (b - a).max(0.001));
    let source = RecordsSource::of(&recs, files.len());
    let total_s = source.span_s.max(0.001);
    let finish = |acc: &PhaseAccumulator, t: &Tally, name: &str, secs: f64| {
        let mut p = acc.finish(name, Duration::from_secs_f64(secs));
        p.errors_by_kind = t.kinds.clone();
        p.http_statuses = t.statuses.clone();
        p
    };
    let single = |v: &[Count]| match v {
        [one] => one.name.clone(),
        _ => String::new(),
    };
    let paths: std::collections::BTreeSet<&str> =
        recs.iter().map(|r| r.rec.path.as_str()).collect();
    let stats = DrillResult {
        target: format!("{} record file(s)", files.len()),
        path: match paths.len() {
            1 => paths
                .iter()
                .next()
                .map_or(String::new(), |p| (*p).to_owned()),
            _ => String::new(),
        },
        model: single(&source.models),
        stream: source.stream_known > 0 && source.streaming == source.stream_known,
        rate_per_sec: source.rate_per_sec.unwrap_or(0.0),
        seed: 0,
        elapsed_s: total_s,
        phases: order
            .iter()
            .zip(accs.iter().zip(&tallies))
            .map(|(n, (a, t))| finish(a, t, n, dur(n)))
            .collect(),
        total: finish(&total, &all, "all", total_s),
    };
    let result = EngineResult {
        stats,
        phases: order
            .iter()
            .zip(&tallies)
            .map(|(n, t)| t.extra(n))
            .collect(),
        total: all.extra("all"),
        stopped: None,
        points,
        workloads: Vec::new(),
        by_workload: Vec::new(),
    };
    let mut checks = scenario
        .and_then(|s| s.slo.as_ref())
        .map(|slo| evaluate(slo, &result))
        .unwrap_or_default();
    // The phase-less row is the total: its objectives are checked once.
    let mut seen = std::collections::HashSet::new();
    checks.retain(|c| seen.insert((c.scope.clone(), c.slo.clone())));
    // Without phases there is nothing to compare: the one row is the total.
    let baseline = scenario
        .and_then(|s| s.baseline.clone())
        .or_else(|| order.first().filter(|_| phased).cloned());
    let name = scenario.map_or("records".to_owned(), |s| s.name.clone());
    let views: Vec<RecordView<'_>> = recs.iter().map(Read::view).collect();
    let phases: Vec<PhaseSpan> = order
        .iter()
        .map(|n| PhaseSpan {
            name: n.clone(),
            duration_s: profile
                .and_then(|p| p.phases.iter().find(|q| &q.name == n))
                .map(|q| q.duration.0.as_secs_f64()),
        })
        .collect();
    let chaos = chaos::account(
        &views,
        &ChaosInput {
            profile,
            phases: &phases,
            allow_idle_rules: scenario.is_some_and(|s| s.allow_idle_rules),
        },
        &format!("{} record file(s)", files.len()),
    );
    let no_objectives = checks.is_empty();
    let mut report = DrillReport::judged(&name, baseline, result, checks, Some(chaos));
    let mut source = source;
    if report.verdict == "pass" && (no_objectives || recs.is_empty()) {
        let why = if recs.is_empty() {
            "no records"
        } else if scenario.is_none() {
            "no objectives (pass --scenario)"
        } else {
            "the scenario sets no objectives (slo)"
        };
        report.verdict = "no verdict".to_owned();
        report.exit_code = EXIT_PASS;
        source.no_verdict = Some(why.to_owned());
    }
    report.cost = scenario
        .and_then(|s| s.cost.as_ref())
        .map(|c| cost_of(&recs, &phases, c));
    report.records = Some(source);
    if !why.is_empty() {
        report.incomplete = Some(why.join("; "));
    }
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(ts: &str, phase: &str, outcome: &str, status: u16, e2e: f64, attempt: u32) -> String {
        serde_json::json!({
            "ts": ts, "id": 1, "listener": "llm", "api": "openai", "endpoint": "chat",
            "phase": phase, "method": "POST", "path": "/v1/chat/completions",
            "model": "m", "stream": true, "rules": [], "faults": [], "faults_skipped": [],
            "attempt": attempt, "status": status, "outcome": outcome, "ttfb_ms": 1.0,
            "ttft_ms": 10.0, "e2e_ms": e2e, "output_tokens": 5, "tokens_source": "usage",
            "bytes_in": 1, "bytes_out": 1, "upstream": null
        })
        .to_string()
    }

    use brownout_faults::record::{FingerprintKey, Outcome as O, Timestamp};
    use std::net::IpAddr;
    use std::sync::Arc;

    /// A record as the proxy writes it: arrival `at_ms` after a fixed start, the
    /// call named by `body` and the client by `key` (the API key), as a line.
    fn rec_line(at_ms: u64, outcome: O, status: u16, body: &str, key: &str) -> String {
        let k = FingerprintKey::new(b"sidecars");
        let mut r = Record::new(at_ms, Arc::from("llm"));
        r.ts = Timestamp(std::time::UNIX_EPOCH + Duration::from_millis(1_767_225_600_000 + at_ms));
        r.api = "openai";
        r.endpoint = "chat";
        r.method = "POST".into();
        r.path = "/v1/chat/completions".into();
        r.model = Some("gpt-4o-mini".into());
        r.stream = Some(false);
        r.fingerprint = Some(k.fingerprint("POST", "/v1/chat/completions", Some(body.as_bytes())));
        r.client = Some(k.client(Some(key.as_bytes()), IpAddr::from([10, 0, 0, 1])));
        // LiteLLM's fresh SDK calls each say they are a first attempt.
        r.attempt = Some(0);
        r.status = Some(status);
        r.outcome = outcome;
        r.e2e_ms = if outcome == O::Ok { 300.0 } else { 2.0 };
        serde_json::to_string(&r).unwrap()
    }

    fn amplification(lines: &[String]) -> (f64, u64) {
        let r = report_from_records(&[("r".into(), lines.join("\n"))], None).unwrap();
        (r.result.total.retry_amplification, r.result.total.attempts)
    }

    #[test]
    fn a_scenario_with_cost_prices_the_records_retries() {
        use brownout_faults::record::UpstreamTiming;
        // LiteLLM again: two free injected 429s, then the fresh call that the
        // upstream answered and billed: a retry by fingerprint, so its tokens
        // are the chaos's.
        let fail = |t| rec_line(t, O::InjectedError, 429, "{\"q\":1}", "Bearer sk-a");
        let mut ok: Record =
            serde_json::from_str(&rec_line(2_000, O::Ok, 200, "{\"q\":1}", "Bearer sk-a")).unwrap();
        ok.input_tokens = Some(1_000);
        ok.output_tokens = Some(500);
        ok.upstream = Some(UpstreamTiming {
            status: Some(200),
            ttfb_ms: Some(5.0),
            e2e_ms: Some(290.0),
            retried: false,
        });
        let ok = serde_json::to_string(&ok).unwrap();
        let src = "version: 1\nname: t\ntarget: {upstream: sim}\nprofile: p.yaml\nworkload: {name: chat, arrival: {rate: 5/s}}\ncost: {tokens: {input_per_mtok: 1, output_per_mtok: 4}}\n";
        let scenario = crate::scenario::load_scenario(src, "s.yaml").unwrap();
        let lines = [fail(0), fail(1_000), ok].join("\n");
        let r = report_from_records(&[("r".into(), lines.clone())], Some(&scenario)).unwrap();
        let c = r.cost.clone().expect("a cost section");
        let t = crate::cost::Tokens {
            input: 1_000,
            output: 500,
        };
        assert_eq!((c.total.billed, c.total.retries, c.total.wasted), (t, t, t));
        assert_eq!(c.total.billed_exchanges, 1);
        let p = c.total.tokens_price.unwrap();
        assert!((p.wasted - (0.001 + 0.002)).abs() < 1e-12, "{p:?}");
        assert_eq!(c.total.gpu_price, None, "no gpu_hour, no GPU figure");
        assert!(crate::gate::render_summary(&r).contains("### Cost of chaos"));
        // Without a scenario's prices, no cost at all.
        let none = report_from_records(&[("r".into(), lines)], None).unwrap();
        assert!(none.cost.is_none());
    }

    #[test]
    fn fresh_call_retries_are_counted_by_fingerprint_and_client() {
        let fail = |t| rec_line(t, O::InjectedError, 429, "{\"q\":1}", "Bearer sk-a");
        let ok = |t| rec_line(t, O::Ok, 200, "{\"q\":1}", "Bearer sk-a");
        // LiteLLM: three 429s and a success, all fresh calls, within 60 s.
        let litellm = [fail(0), fail(1_000), fail(21_000), ok(59_000)];
        assert_eq!(amplification(&litellm), (4.0, 4));
        let r = report_from_records(&[("r".into(), litellm.join("\n"))], None).unwrap();
        let md = crate::gate::render_summary(&r);
        assert!(md.contains("| all | 25.0% | 4.00× |"), "{md}");
        // The window is from the failure's end: 60 s after it is a new call.
        assert_eq!(amplification(&[fail(0), ok(60_100)]).0, 1.0);
        assert_eq!(amplification(&[fail(0), ok(59_900)]).0, 2.0);
        // Another client, or another body, is another call.
        let other_client = rec_line(1_000, O::Ok, 200, "{\"q\":1}", "Bearer sk-b");
        let other_body = rec_line(1_000, O::Ok, 200, "{\"q\":2}", "Bearer sk-a");
        assert_eq!(amplification(&[fail(0), other_client]).0, 1.0);
        assert_eq!(amplification(&[fail(0), other_body]).0, 1.0);
        // A success ends the call: the same request after it is a new one.
        assert_eq!(
            amplification(&[fail(0), ok(1_000), ok(2_000), fail(3_000)]),
            (4.0 / 3.0, 4)
        );
        // Two identical calls at once: the second arrived before the first failed.
        let slow_fail = {
            let mut v: serde_json::Value = serde_json::from_str(&fail(0)).unwrap();
            v["e2e_ms"] = 5_000.0.into();
            v.to_string()
        };
        assert_eq!(amplification(&[slow_fail, ok(1_000)]).0, 1.0);
        // The SDK's own retry count still counts, with or without a fingerprint.
        let mut v: serde_json::Value = serde_json::from_str(&ok(1_000)).unwrap();
        v["attempt"] = 1.into();
        v["fingerprint"] = serde_json::Value::Null;
        assert_eq!(amplification(&[ok(0), v.to_string()]).0, 2.0);
    }

    #[test]
    fn outcomes_count_as_the_records_name_them() {
        let lines: Vec<String> = [
            (O::Ok, 200),
            (O::InjectedError, 429),
            (O::InjectedError, 429),
            (O::HttpError, 500),
            (O::Reset, 200),
            (O::ClientClosed, 200),
            (O::UpstreamError, 502),
            (O::Timeout, 504),
            (O::Truncated, 200),
            (O::Corrupt, 200),
        ]
        .iter()
        .enumerate()
        .map(|(i, (o, st))| rec_line(i as u64 * 100, *o, *st, &format!("{i}"), "k"))
        .collect();
        let r = report_from_records(&[("r".into(), lines.join("\n"))], None).unwrap();
        let t = &r.result.stats.total;
        let kinds: Vec<(&str, u64)> = t
            .errors_by_kind
            .iter()
            .map(|(k, v)| (k.as_str(), *v))
            .collect();
        assert_eq!(
            kinds,
            [
                ("client_closed", 1),
                ("corrupt", 1),
                ("http_error", 1),
                ("injected_error", 2),
                ("reset", 1),
                ("timeout", 1),
                ("truncated", 1),
                ("upstream_error", 1),
            ]
        );
        assert_eq!((t.requests, t.ok, t.errors), (10, 1, 9));
        let statuses: Vec<(u16, u64)> = t.http_statuses.iter().map(|(k, v)| (*k, *v)).collect();
        assert_eq!(statuses, [(429, 2), (500, 1), (502, 1), (504, 1)]);
        let md = crate::gate::render_summary(&r);
        assert!(md.contains("injected_error: 2"), "{md}");
    }

    #[test]
    fn an_unknown_outcome_is_a_foreign_line_not_a_guess() {
        let good = rec_line(0, O::Ok, 200, "a", "k");
        let alien = good.replace("\"outcome\":\"ok\"", "\"outcome\":\"exploded\"");
        let r =
            report_from_records(&[("r.jsonl".into(), format!("{good}\n{alien}\n"))], None).unwrap();
        assert_eq!(r.result.stats.total.requests, 1);
        let why = r.incomplete.unwrap_or_default();
        assert!(
            why.contains("r.jsonl: 1 line(s) are not records, the first at line 2 (unknown outcome `exploded`)"),
            "{why}"
        );
    }

    #[test]
    fn records_without_objectives_have_no_verdict_and_an_honest_header() {
        // 40% errors, no phases, no scenario.
        let lines: Vec<String> = (0..10u64)
            .map(|i| {
                let o = if i % 5 < 2 { O::InjectedError } else { O::Ok };
                let mut v: serde_json::Value = serde_json::from_str(&rec_line(
                    i * 893,
                    o,
                    if o == O::Ok { 200 } else { 429 },
                    &format!("{i}"),
                    "k",
                ))
                .unwrap();
                v["stream"] = (i < 6).into();
                if i == 9 {
                    v["stream"] = serde_json::Value::Null;
                    v["model"] = "gpt-4.1".into();
                }
                v.to_string()
            })
            .collect();
        let r = report_from_records(&[("a".into(), lines.join("\n"))], None).unwrap();
        assert_eq!((r.verdict.as_str(), r.exit_code), ("no verdict", 0));
        let md = crate::gate::render_summary(&r);
        assert!(md.contains("NO VERDICT"), "{md}");
        assert!(
            md.contains("No verdict: no objectives (pass --scenario)."),
            "{md}"
        );
        assert!(
            !md.contains("PASS") && !md.contains("Poisson") && !md.contains("seed"),
            "{md}"
        );
        assert!(!md.contains("scheduled send time"), "{md}");
        let head = r.records.as_ref().unwrap().describe();
        assert_eq!(
            head,
            "10 record(s) from 1 file(s) · 2026-01-01T00:00:00.000Z → 2026-01-01T00:00:08.037Z (8.0 s) \
             · 1.12 req/s observed · listener `llm` · openai chat · model `gpt-4o-mini` (9), `gpt-4.1` (1) \
             · 67% streaming (of 9 with a body read)"
        );
        // Phase-less records: one row, the total's, not a copy of it.
        assert_eq!(r.result.stats.phases.len(), 1);
        assert_eq!(
            md.matches("| all |").count(),
            2,
            "the goodput row and the table's: {md}"
        );
        let t = crate::gate::render_correctness_table(&r).unwrap();
        assert_eq!(t.lines().filter(|l| l.starts_with("all")).count(), 1, "{t}");
        // A scenario with objectives gives one; checks of the one row are not doubled.
        let scenario = crate::scenario::load_scenario(
            "version: 1\nname: s\ntarget: {upstream: sim}\nprofile: p.yaml\n\
             workload: {name: w, arrival: {rate: 1/s}}\nslo:\n  error_rate: 0.3\n",
            "s.yaml",
        )
        .unwrap();
        let r = report_from_records(&[("a".into(), lines.join("\n"))], Some(&scenario)).unwrap();
        assert_eq!(
            (r.verdict.as_str(), r.exit_code),
            ("fail", crate::gate::EXIT_SLO_BROKEN)
        );
        assert_eq!(r.slo.len(), 1, "{:?}", r.slo);
        // Nothing read: no verdict, and no made-up 100% goodput.
        let r = report_from_records(&[("empty".into(), String::new())], Some(&scenario)).unwrap();
        assert_eq!((r.verdict.as_str(), r.exit_code), ("no verdict", 0));
        assert_eq!(r.result.total.goodput_text(), "no data");
        assert!(crate::gate::render_summary(&r).contains("No verdict: no records."));
    }

    #[test]
    fn rates_read_sanely() {
        assert_eq!(fmt_rate(1.124145561206549), "1.12 req/s");
        assert_eq!(fmt_rate(42.04), "42.0 req/s");
        assert_eq!(fmt_rate(1234.5), "1234 req/s");
        assert_eq!(fmt_rate(0.05), "3.0 req/min");
        assert_eq!(fmt_rate(0.0002), "0.7 req/h");
        assert_eq!(fmt_span(107.0), "1m 47s");
        assert_eq!(fmt_span(7530.0), "2h 06m");
    }

    #[test]
    fn a_proxy_that_does_not_list_matches_has_them_inferred() {
        let profile = brownout_faults::validate::load_profile(
            "version: 1\nname: t\nrules:\n  - name: slow\n    match: {listener: llm}\n    faults: [{type: delay, duration: 1s}]\n",
            "p.yaml",
        )
        .unwrap_or_else(|d| panic!("{}", d[0]));
        let input = ChaosInput {
            profile: Some(&profile),
            phases: &[],
            allow_idle_rules: false,
        };
        let fired = |matched: Option<&[&str]>| {
            let mut v: serde_json::Value = serde_json::from_str(&line(
                "2026-01-01T00:00:01.000Z",
                "storm",
                "ok",
                200,
                5.0,
                0,
            ))
            .unwrap();
            v["rules"] = serde_json::json!(["slow"]);
            v["faults"] = serde_json::json!([{"rule": "slow", "fault": "delay"}]);
            if let Some(m) = matched {
                v["matched"] = serde_json::json!(m);
            }
            v.to_string()
        };
        let file = |lines: Vec<String>| vec![("r".to_owned(), lines.join("\n"))];
        // Older proxies leave `matched` out: a rule that fired matched.
        let (s, _) = chaos_from_records(&file(vec![fired(None); 10]), &input, "t");
        assert!(!s.matches_recorded);
        assert!(s
            .note
            .as_deref()
            .unwrap()
            .contains("do not say which rules matched"));
        let slow = &s.rules[0];
        assert_eq!((slow.matched, slow.decided, slow.idle), (10, 10, false));
        // A proxy that lists them is taken at its word, an empty list included.
        let (s, _) = chaos_from_records(&file(vec![fired(Some(&[])); 10]), &input, "t");
        assert!(s.matches_recorded);
        assert_eq!((s.rules[0].matched, s.rules[0].idle), (0, true));
        let (s, _) = chaos_from_records(&file(vec![fired(Some(&["slow"])); 10]), &input, "t");
        assert_eq!((s.rules[0].matched, s.rules[0].faults[0].applied), (10, 10));
    }

    #[test]
    fn timestamps() {
        assert_eq!(parse_ts("1970-01-01T00:00:01.500Z"), Some(1.5));
        assert_eq!(parse_ts("2000-03-01T00:00:00.000Z"), Some(951_868_800.0));
        assert_eq!(parse_ts("nope"), None);
    }

    #[test]
    fn merges_files_by_phase() {
        let a = [
            line("2026-01-01T00:00:00.000Z", "base", "ok", 200, 50.0, 0),
            line("2026-01-01T00:00:01.000Z", "base", "ok", 200, 70.0, 0),
            line(
                "2026-01-01T00:00:02.000Z",
                "storm",
                "injected_error",
                429,
                1.0,
                0,
            ),
        ]
        .join("\n");
        let b = [
            line(
                "2026-01-01T00:00:02.500Z",
                "storm",
                "injected_error",
                429,
                1.0,
                1,
            ),
            line("2026-01-01T00:00:03.000Z", "storm", "ok", 200, 90.0, 0),
            line("2026-01-01T00:00:00.500Z", "base", "ok", 200, 60.0, 0),
        ]
        .join("\n");
        let r =
            report_from_records(&[("a".into(), a.clone()), ("b".into(), b.clone())], None).unwrap();
        assert_eq!(r.incomplete, None);
        let p = &r.result.stats.phases;
        assert_eq!(p.len(), 2);
        assert_eq!(
            (p[0].name.as_str(), p[0].requests, p[0].errors),
            ("base", 3, 0)
        );
        assert_eq!(
            (p[1].name.as_str(), p[1].requests, p[1].errors),
            ("storm", 3, 2)
        );
        assert_eq!(p[1].http_statuses.get(&429), Some(&2));
        assert!((r.result.phases[1].retry_amplification - 1.5).abs() < 1e-9);
        assert_eq!(r.result.stats.total.requests, 6);

        let r = report_from_records(
            &[
                ("a".into(), format!("{a}\nnot json")),
                ("b".into(), format!("{b}\n{{\"records_dropped\": 3}}")),
            ],
            None,
        )
        .unwrap();
        let why = r.incomplete.unwrap();
        assert!(
            why.contains("b: the proxy noted 3 record(s) it could not write (unknown: 3)"),
            "{why}"
        );
        assert!(
            why.contains("a: the last line is torn (cut off mid-record)"),
            "{why}"
        );
        assert_eq!(r.result.stats.total.requests, 6);
    }

    #[test]
    fn torn_and_foreign_lines_and_loss_notes_are_named_per_file() {
        let whole = line("2026-01-01T00:00:00.000Z", "base", "ok", 200, 50.0, 0);
        let torn = &whole[..whole.len() / 2];
        // A torn line followed by more records (an old writer) is foreign, not torn.
        let a = format!("{whole}\n{torn}{whole}\n{whole}\nhello\n");
        let b = format!(
            "{whole}\n{{\"ts\":\"2026-01-01T00:00:01.000Z\",\"records_dropped\":7,\"reason\":\"write_error\",\"error\":\"No space left on device\"}}\n{{\"records_dropped\":2,\"reason\":\"queue_full\"}}\n{{\"records_dropped\":1,\"reason\":\"write_error\"}}\n{whole}\n{torn}"
        );
        let c = format!("{whole}\n{whole}");
        let r = report_from_records(&[("a".into(), a), ("b".into(), b), ("c".into(), c)], None)
            .unwrap();
        let why = r.incomplete.clone().unwrap_or_default();
        assert!(
            why.contains("a: 2 line(s) are not records, the first at line 2"),
            "{why}"
        );
        assert!(!why.contains("a: the last line is torn"), "{why}");
        assert!(why.contains("b: the last line is torn"), "{why}");
        assert!(
            why.contains("b: the proxy noted 10 record(s) it could not write (queue_full: 2, write_error: 8)"),
            "{why}"
        );
        assert!(
            !why.contains("c:"),
            "an unterminated whole record is fine: {why}"
        );
        assert_eq!(r.result.stats.total.requests, 2 + 2 + 2);

        // A clean file is complete; a note of zero losses changes nothing.
        let r = report_from_records(
            &[(
                "d".into(),
                format!("{whole}\n{{\"records_dropped\":0,\"reason\":\"queue_full\"}}\n"),
            )],
            None,
        )
        .unwrap();
        assert_eq!(r.incomplete, None);
    }

    #[test]
    fn a_record_cut_inside_a_character_reads_as_torn() {
        let dir =
            std::env::temp_dir().join(format!("brownout-records-utf8-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join("r.jsonl");
        let whole = line("2026-01-01T00:00:00.000Z", "base", "ok", 200, 50.0, 0);
        let mut bytes = format!("{whole}\n").into_bytes();
        bytes.extend_from_slice(b"{\"ts\":\"2026-01-01T00:00:01.000Z\",\"path\":\"/caf\xc3");
        std::fs::write(&p, bytes).unwrap();
        let text = read_record_file(&p).unwrap();
        let r = report_from_records(&[("r".into(), text)], None).unwrap();
        assert_eq!(r.result.stats.total.requests, 1);
        assert!(r.incomplete.unwrap().contains("r: the last line is torn"));
        let _ = std::fs::remove_dir_all(&dir);
    }
}
