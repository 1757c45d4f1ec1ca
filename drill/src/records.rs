//! `brownout report RECORDS...`: per-phase statistics rebuilt from proxy record
//! files (DESIGN §7, one JSON object per line), merged across many sidecars.
//!
//! A record gives what the proxy saw of one exchange: its phase, outcome, status,
//! TTFT, e2e and tokens. Records are merged by timestamp; phases come in the order
//! they first appear, and each phase lasts from its first to its last record. The
//! report says it is incomplete, naming the file and why, when a file ends in a
//! torn line (a writer cut off mid-record), holds lines that are not records, or
//! carries the proxy's note that records were lost (`records_dropped`, with its
//! reason): such lines are never skipped silently.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Deserialize;

use brownout_faults::Profile;

use crate::chaos::{self, ChaosInput, ChaosSummary, FaultRecord, FaultRef, GrpcRef, PhaseSpan};
use crate::engine::{evaluate, is_good, EngineResult, PhaseExtra, Point};
use crate::gate::DrillReport;
use crate::sample::{Outcome, Sample, TokensSource};
use crate::scenario::Scenario;
use crate::stats::{DrillResult, PhaseAccumulator};

#[derive(Deserialize)]
struct Rec {
    ts: String,
    #[serde(default)]
    phase: Option<String>,
    #[serde(default)]
    listener: Option<String>,
    #[serde(default)]
    api: Option<String>,
    #[serde(default)]
    endpoint: Option<String>,
    #[serde(default)]
    method: Option<String>,
    #[serde(default)]
    matched: Option<Vec<String>>,
    #[serde(default)]
    rules: Vec<String>,
    #[serde(default)]
    faults: Vec<FaultRef>,
    #[serde(default)]
    faults_skipped: Vec<FaultRef>,
    #[serde(default)]
    grpc: Option<GrpcRef>,
    #[serde(default)]
    status: Option<u16>,
    outcome: String,
    #[serde(default)]
    ttft_ms: Option<f64>,
    #[serde(default)]
    e2e_ms: Option<f64>,
    #[serde(default)]
    output_tokens: Option<u64>,
    #[serde(default)]
    tokens_source: Option<String>,
    #[serde(default)]
    attempt: Option<u32>,
    #[serde(default)]
    path: Option<String>,
    #[serde(default)]
    model: Option<String>,
    #[serde(default)]
    stream: Option<bool>,
}

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

fn outcome(r: &Rec) -> Outcome {
    match r.outcome.as_str() {
        "ok" => Outcome::Ok,
        "http_error" | "injected_error" | "upstream_error" => {
            Outcome::HttpError(r.status.unwrap_or(502))
        }
        "timeout" => Outcome::Timeout,
        "reset" | "client_closed" => Outcome::TransportError,
        "truncated" => Outcome::Truncated,
        "corrupt" => Outcome::Corrupt,
        _ => Outcome::StreamError,
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
    /// Lines that are not records, and the first one's number.
    foreign: usize,
    first_foreign: Option<usize>,
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
        if let Some(first) = self.first_foreign {
            out.push(format!(
                "{name}: {} line(s) are not records, the first at line {first}",
                self.foreign
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

impl Rec {
    /// What the chaos accounting reads of it.
    fn fault_record(&self, t_s: f64) -> FaultRecord {
        FaultRecord {
            t_s,
            phase: self.phase.clone(),
            listener: self.listener.clone(),
            api: self.api.clone(),
            endpoint: self.endpoint.clone(),
            method: self.method.clone(),
            path: self.path.clone(),
            model: self.model.clone(),
            stream: self.stream,
            matched: self.matched.clone(),
            rules: self.rules.clone(),
            faults: self.faults.clone(),
            faults_skipped: self.faults_skipped.clone(),
            attempt: self.attempt,
            outcome: self.outcome.clone(),
            grpc: self.grpc.clone(),
        }
    }
}

/// The records of `(file name, text)` pairs in arrival order, with what makes
/// them incomplete (per file, as [`report_from_records`] names it).
fn read_all(files: &[(String, String)]) -> (Vec<(f64, Rec)>, Vec<String>) {
    let mut recs: Vec<(f64, Rec)> = Vec::new();
    let mut why = Vec::new();
    for (name, text) in files {
        let mut flaws = FileFlaws::default();
        let unterminated = !text.is_empty() && !text.ends_with('\n');
        let count = text.lines().count();
        for (i, line) in text.lines().enumerate() {
            if line.trim().is_empty() {
                continue;
            }
            let rec = serde_json::from_str::<serde_json::Value>(line)
                .ok()
                .map(|v| match dropped_note(&v) {
                    Some(note) => Err(note),
                    None => Ok(serde_json::from_value::<Rec>(v)
                        .ok()
                        .and_then(|r| parse_ts(&r.ts).map(|t| (t, r)))),
                });
            match rec {
                Some(Ok(Some(r))) => recs.push(r),
                Some(Err((n, reason))) => {
                    if n != Some(0) {
                        let e = flaws.dropped.entry(reason).or_insert(Some(0));
                        *e = match (*e, n) {
                            (Some(a), Some(b)) => Some(a + b),
                            _ => None,
                        };
                    }
                }
                _ if unterminated && i + 1 == count => flaws.torn_last = true,
                _ => {
                    flaws.foreign += 1;
                    flaws.first_foreign.get_or_insert(i + 1);
                }
            }
        }
        why.extend(flaws.describe(name));
    }
    recs.sort_by(|a, b| a.0.total_cmp(&b.0));
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
    let faults: Vec<FaultRecord> = recs.iter().map(|(t, r)| r.fault_record(*t)).collect();
    let mut summary = chaos::account(&faults, input, source);
    let why = (!why.is_empty()).then(|| why.join("; "));
    if let Some(w) = &why {
        summary.note = Some(match summary.note.take() {
            Some(n) => format!("{n}; records incomplete: {w}"),
            None => format!("records incomplete: {w}"),
        });
    }
    (summary, why)
}

/// Build the report from `(file name, text)` pairs, applying the scenario's SLOs
/// and baseline when one is given. Faults are counted per phase and rule as the
/// records name them, not judged: [`report_from_records_with`] judges them
/// against the scenario's profile.
pub fn report_from_records(files: &[(String, String)], scenario: Option<&Scenario>) -> DrillReport {
    report_from_records_with(files, scenario, None)
}

/// [`report_from_records`], with the profile the records were made under: each of
/// its rules is judged (DESIGN §6), and an idle one makes the verdict
/// inconclusive (exit 4) unless the scenario says `allow_idle_rules: true`.
pub fn report_from_records_with(
    files: &[(String, String)],
    scenario: Option<&Scenario>,
    profile: Option<&Profile>,
) -> DrillReport {
    let (recs, why) = read_all(files);
    let t0 = recs.first().map_or(0.0, |r| r.0);
    // Phases in order of first appearance, with their time spans.
    let mut order: Vec<String> = Vec::new();
    let mut span: BTreeMap<String, (f64, f64)> = BTreeMap::new();
    for (t, r) in &recs {
        let p = r.phase.clone().unwrap_or_else(|| "all".to_owned());
        if !order.contains(&p) {
            order.push(p.clone());
        }
        let e = span.entry(p).or_insert((*t, *t));
        e.0 = e.0.min(*t);
        e.1 = e.1.max(*t);
    }
    let slo = scenario.and_then(|s| s.slo.clone()).unwrap_or_default();
    let mut accs: Vec<PhaseAccumulator> = order
        .iter()
        .map(|_| PhaseAccumulator::new().expect("constant histogram bounds"))
        .collect();
    let mut total = PhaseAccumulator::new().expect("constant histogram bounds");
    let mut extras: Vec<(u64, u64, u64)> = vec![(0, 0, 0); order.len()];
    let mut all = (0u64, 0u64, 0u64);
    let mut points = Vec::new();
    let ms = |v: f64| Duration::from_secs_f64(v.max(0.0) / 1000.0);
    for (seq, (t, r)) in recs.iter().enumerate() {
        let name = r.phase.as_deref().unwrap_or("all");
        let i = order.iter().position(|p| p == name).unwrap_or(0);
        let s = Sample {
            seq: seq as u64,
            phase: i,
            outcome: outcome(r),
            e2e: ms(r.e2e_ms.unwrap_or(0.0)),
            ttft: r.ttft_ms.map(ms),
            itl: Vec::new(),
            output_tokens: r.output_tokens,
            tokens_source: match r.tokens_source.as_deref() {
                Some("usage") => Some(TokensSource::Usage),
                Some(_) => Some(TokensSource::Counted),
                None => None,
            },
            send_lag: Duration::ZERO,
            answer: None,
            embedding: None,
            ids: None,
        };
        accs[i].record(&s);
        total.record(&s);
        let first = u64::from(r.attempt.unwrap_or(0) == 0);
        let good = is_good(&s, slo.for_phase(name).goodput.as_ref());
        let good_all = is_good(&s, slo.goodput.as_ref());
        extras[i].0 += first;
        extras[i].1 += u64::from(good);
        extras[i].2 += 1;
        all.0 += first;
        all.1 += u64::from(good_all);
        all.2 += 1;
        points.push(Point::of(t - t0, 0, &s));
    }
    let dur = |name: &str| span.get(name).map_or(0.001, |(a, b)| (b - a).max(0.001));
    let extra = |name: &str, (firsts, good, n): (u64, u64, u64)| PhaseExtra {
        name: name.to_owned(),
        good,
        goodput: if n == 0 { 1.0 } else { good as f64 / n as f64 },
        attempts: n,
        retry_amplification: if firsts == 0 {
            1.0
        } else {
            n as f64 / firsts as f64
        },
        correctness: Default::default(),
    };
    let total_s = recs.last().map_or(0.001, |r| (r.0 - t0).max(0.001));
    let first = recs.first().map(|r| &r.1);
    let stats = DrillResult {
        target: format!("{} record file(s)", files.len()),
        path: first.and_then(|r| r.path.clone()).unwrap_or_default(),
        model: first.and_then(|r| r.model.clone()).unwrap_or_default(),
        stream: first.and_then(|r| r.stream).unwrap_or(false),
        rate_per_sec: recs.len() as f64 / total_s,
        seed: 0,
        elapsed_s: total_s,
        phases: order
            .iter()
            .zip(&accs)
            .map(|(n, a)| a.finish(n, Duration::from_secs_f64(dur(n))))
            .collect(),
        total: total.finish("all", Duration::from_secs_f64(total_s)),
    };
    let result = EngineResult {
        stats,
        phases: order
            .iter()
            .zip(&extras)
            .map(|(n, e)| extra(n, *e))
            .collect(),
        total: extra("all", all),
        stopped: None,
        points,
        workloads: Vec::new(),
        by_workload: Vec::new(),
    };
    let checks = scenario
        .and_then(|s| s.slo.as_ref())
        .map(|slo| evaluate(slo, &result))
        .unwrap_or_default();
    let baseline = scenario
        .and_then(|s| s.baseline.clone())
        .or_else(|| order.first().cloned());
    let name = scenario.map_or("records".to_owned(), |s| s.name.clone());
    let faults: Vec<FaultRecord> = recs.iter().map(|(t, r)| r.fault_record(*t)).collect();
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
        &faults,
        &ChaosInput {
            profile,
            phases: &phases,
            allow_idle_rules: scenario.is_some_and(|s| s.allow_idle_rules),
        },
        &format!("{} record file(s)", files.len()),
    );
    let mut report = DrillReport::judged(&name, baseline, result, checks, Some(chaos));
    if !why.is_empty() {
        report.incomplete = Some(why.join("; "));
    }
    report
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
        let r = report_from_records(&[("a".into(), a.clone()), ("b".into(), b.clone())], None);
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
        );
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
        let r = report_from_records(&[("a".into(), a), ("b".into(), b), ("c".into(), c)], None);
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
        );
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
        let r = report_from_records(&[("r".into(), text)], None);
        assert_eq!(r.result.stats.total.requests, 1);
        assert!(r.incomplete.unwrap().contains("r: the last line is torn"));
        let _ = std::fs::remove_dir_all(&dir);
    }
}
