//! Did the chaos happen? Per phase and per rule, what the proxy's records say each
//! rule matched, decided, applied and skipped, and whether that is what its
//! probability or schedule asks for (docs/drills.md).
//!
//! A drill that passes while none of its faults fired is worse than no drill: the
//! team comes away believing it is resilient. So every report counts the faults,
//! and a rule whose faults applied improbably rarely makes the verdict
//! **inconclusive** (exit 4), naming the rule and its nearest miss.
//!
//! # The test
//!
//! For each fault of a rule, over the exchanges of the phase the rule lives in (the
//! whole drill for top-level rules): `n` is the number of exchanges the rule
//! matched, and request `i` was drawn with the rule's probability `p_i` at its
//! arrival (a ramp is read at the request's place in its phase). Draws are
//! independent (a seeded ChaCha stream per rule and ordinal), so the number drawn is
//! Poisson-binomial. A drawn request whose rule was at `max_active`, or whose fault
//! an earlier terminal fault pre-empted, still counts as drawn: taking those out of
//! `n` instead would bias the test, since they are a selection of drawn requests.
//! The fault is idle when
//!
//! - `n = 0` (the rule never matched) and its probability is not zero, or
//! - `P(X <= applied + capped + preempted) < 0.001` under that Poisson-binomial.
//!
//! Few applications at a low probability are therefore not idle (P(X = 0) for ten
//! requests at 1% is 0.90), nor is a handful of matches: the bound only trips when
//! the count is implausible. Decided-but-skipped (`over_inspect_limit`,
//! `did_not_fire`, ...) counts as not applied. A `schedule` is checked exactly: the
//! count drawn must be what the schedule gives for the matched requests. Faults
//! whose effect depends on load or state (`rate_limit`, `concurrency_limit`,
//! `cold_start`, `stale_results`) apply only when their limit or state is reached,
//! so they are idle only when they never applied.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Arc;

use brownout_faults::glob::Glob;
use brownout_faults::profile::{Match, Probability, Profile, Rule};
use brownout_faults::record::{FaultRef, Outcome, Record};
use serde::{Deserialize, Serialize};

/// The bound below which a fault's applied count is implausible (docs/drills.md).
pub const IDLE_P_VALUE: f64 = 0.001;

/// Above this many steps (`n × (applied + 1)`), the exact Poisson-binomial gives
/// way to its normal approximation (with continuity correction), whose error at
/// such sizes is far below the 0.001 bound's margin.
const EXACT_STEPS: u64 = 4_000_000;

/// Faults that apply only when a limit or state is reached (a bucket runs dry, a
/// queue fills, a replica is cold, a cached answer exists): not applying on most
/// decided requests is what they do.
const CONDITIONAL: &[&str] = &[
    "rate_limit",
    "concurrency_limit",
    "cold_start",
    "stale_results",
];

/// Faults that end the exchange when they apply, so faults after them do not.
/// (A limit that rejects ends it too, as an `injected_error` outcome.)
const TERMINAL: &[&str] = &["error", "reset", "hang"];

/// One proxy record as the accounting reads it: the proxy's own [`Record`], so
/// the schema has one reading, plus the one fact the type cannot carry.
#[derive(Debug, Clone, Copy)]
pub struct RecordView<'a> {
    /// The record as read.
    pub record: &'a Record,
    /// Whether its line listed `matched`. Proxies older than the accounting leave
    /// the field out, which [`Record`] reads as an empty list; taken at its word,
    /// every rule would then look as if it matched nothing and be judged idle.
    pub matched_known: bool,
}

impl<'a> RecordView<'a> {
    /// Arrival, in seconds since the Unix epoch: ramps and the timeline place a
    /// request by it.
    pub fn t_s(&self) -> f64 {
        self.record.ts.unix_secs()
    }

    /// Rules whose `match` held; `None` where the proxy does not say.
    pub fn matched(&self) -> Option<&'a [Arc<str>]> {
        self.matched_known.then_some(self.record.matched.as_slice())
    }

    /// Whether rule `name` fired.
    fn fired(&self, name: &str) -> bool {
        self.record.rules.iter().any(|x| &**x == name)
    }

    /// Whether rule `name` was drawn at its `max_active` cap.
    fn capped(&self, name: &str) -> bool {
        self.record
            .faults_skipped
            .iter()
            .any(|f| &*f.rule == name && f.reason == Some("max_active"))
    }
}

/// A name a record left empty (the default for one it did not carry) reads as
/// none, so a report says "listener none" rather than naming an empty one.
fn named(s: &str) -> Option<&str> {
    (!s.is_empty()).then_some(s)
}

/// One phase as the drill ran it.
#[derive(Debug, Clone, PartialEq)]
pub struct PhaseSpan {
    /// Its name, as in the profile.
    pub name: String,
    /// How long it lasted (ramps are read over it); `None`: from the records.
    pub duration_s: Option<f64>,
}

/// One fault of a rule, counted.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct FaultTally {
    /// The fault's type.
    pub fault: String,
    /// Exchanges on which it applied.
    pub applied: u64,
    /// Exchanges on which it was decided but did not apply, by reason:
    /// `max_active` (the rule's cap), `preempted` (an earlier terminal fault ended
    /// the exchange), `not_recorded` (decided, but the record says neither), and
    /// the proxy's own reasons (`over_inspect_limit`, `did_not_fire`, ...).
    pub skipped: BTreeMap<String, u64>,
    /// `P(X <= applied + capped + preempted)` under the rule's probabilities;
    /// `None` when not judged that way.
    #[serde(default)]
    pub p_value: Option<f64>,
    /// Whether it applied improbably rarely (or never, where it should have).
    pub idle: bool,
}

impl FaultTally {
    /// Decided: applied or skipped for some reason.
    pub fn decided(&self) -> u64 {
        self.applied + self.skipped.values().sum::<u64>()
    }

    /// The skip reasons, most common first: `max_active 3, preempted 1`.
    pub fn skipped_text(&self) -> String {
        let mut v: Vec<(&String, &u64)> = self.skipped.iter().filter(|(_, n)| **n > 0).collect();
        v.sort_by(|a, b| b.1.cmp(a.1).then(a.0.cmp(b.0)));
        v.iter()
            .map(|(r, n)| format!("{r} {n}"))
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// One rule in one scope, counted and judged.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct RuleTally {
    /// The phase the rule lives in, or `all` for a top-level rule (judged over the
    /// whole drill).
    pub scope: String,
    /// The rule's name.
    pub rule: String,
    /// Exchanges in the scope: what the rule could have matched.
    pub requests: u64,
    /// Exchanges whose conditions the rule matched.
    pub matched: u64,
    /// Matched exchanges the rule drew (fired, or drawn at its `max_active` cap).
    pub decided: u64,
    /// What the profile asks: `probability 0.1`, `probability 0.05→0.4`,
    /// `schedule first 3`; `None` without a profile.
    #[serde(default)]
    pub asks: Option<String>,
    /// How many draws that asks for over the matched exchanges (exact for a
    /// schedule, the mean for a probability).
    #[serde(default)]
    pub expected: Option<f64>,
    /// Its faults, in the profile's order.
    pub faults: Vec<FaultTally>,
    /// Whether a fault of it applied improbably rarely.
    pub idle: bool,
    /// For an idle rule: why, as near as the records tell (the condition that
    /// excluded the most requests, or the most common skip reason).
    #[serde(default)]
    pub nearest_miss: Option<String>,
}

/// Every rule's counts, and whether the chaos happened.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ChaosSummary {
    /// Where the counts come from (`the in-process proxy's records`, `2 record
    /// file(s)`, ...).
    pub source: String,
    /// Exchanges read.
    pub exchanges: u64,
    /// Whether the records say which rules matched (older proxies do not; then
    /// matches are inferred from what records show).
    pub matches_recorded: bool,
    /// Whether rules were judged against a profile (not without one).
    pub judged: bool,
    /// `allow_idle_rules: true`: idle rules are shown but do not change the verdict.
    pub allow_idle_rules: bool,
    /// One entry per rule and scope.
    pub rules: Vec<RuleTally>,
    /// Why the counts are partial, when they are.
    #[serde(default)]
    pub note: Option<String>,
    /// Faults applied over time, one series per rule and fault, for the report's
    /// chart: when the chaos happened, beside when latency moved.
    #[serde(default)]
    pub timeline: Vec<FaultSeries>,
}

/// How often one rule's fault applied, bucket by bucket from the first record.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct FaultSeries {
    /// The rule's name.
    pub rule: String,
    /// The fault's type.
    pub fault: String,
    /// Bucket width, seconds (1 s, wider for long runs so a chart stays readable).
    pub bucket_s: f64,
    /// Applications per bucket; bucket `i` starts `i * bucket_s` after the first
    /// record the accounting read.
    pub applied: Vec<u64>,
}

/// At most this many buckets per series.
const MAX_BUCKETS: f64 = 600.0;

/// The faults applied over time, per rule and fault, in order of first application.
fn timeline(records: &[RecordView<'_>]) -> Vec<FaultSeries> {
    let Some(t0) = records.iter().map(RecordView::t_s).reduce(f64::min) else {
        return Vec::new();
    };
    let t1 = records.iter().map(RecordView::t_s).fold(t0, f64::max);
    let bucket_s = ((t1 - t0) / MAX_BUCKETS).ceil().max(1.0);
    let buckets = ((t1 - t0) / bucket_s).floor() as usize + 1;
    let mut out: Vec<FaultSeries> = Vec::new();
    for r in records {
        let i = (((r.t_s() - t0) / bucket_s).floor() as usize).min(buckets - 1);
        for f in &r.record.faults {
            let at = match out
                .iter()
                .position(|s| s.rule == *f.rule && s.fault == f.fault)
            {
                Some(at) => at,
                None => {
                    out.push(FaultSeries {
                        rule: f.rule.to_string(),
                        fault: f.fault.to_owned(),
                        bucket_s,
                        applied: vec![0; buckets],
                    });
                    out.len() - 1
                }
            };
            out[at].applied[i] += 1;
        }
    }
    out
}

impl ChaosSummary {
    /// The idle rules.
    pub fn idle(&self) -> impl Iterator<Item = &RuleTally> {
        self.rules.iter().filter(|r| r.idle)
    }

    /// Whether the drill is inconclusive: some rule was idle and that was not
    /// allowed.
    pub fn inconclusive(&self) -> bool {
        self.judged && !self.allow_idle_rules && self.idle().next().is_some()
    }

    /// One line per idle rule: `rule `shed` (phase overloaded): nearest miss`.
    pub fn idle_lines(&self) -> Vec<String> {
        self.idle()
            .map(|r| {
                format!(
                    "rule `{}` ({}) is idle: {}",
                    r.rule,
                    scope_words(&r.scope),
                    r.nearest_miss
                        .as_deref()
                        .unwrap_or("it applied improbably rarely")
                )
            })
            .collect()
    }

    /// The per-rule table for a terminal (`align`ed) or Markdown: phase, rule,
    /// matched, decided, fault, applied, skipped, asks, judgement.
    pub fn rows(&self) -> (Vec<String>, Vec<Vec<String>>) {
        let head = [
            "phase", "rule", "requests", "matched", "decided", "fault", "applied", "skipped",
            "asks", "",
        ]
        .iter()
        .map(|s| (*s).to_owned())
        .collect();
        let mut rows = Vec::new();
        for r in &self.rules {
            let asks = match (&r.asks, r.expected) {
                (Some(a), Some(e)) => format!("{a} (≈{:.0})", e.max(0.0) + 0.0),
                (Some(a), None) => a.clone(),
                _ => String::new(),
            };
            for (i, f) in r.faults.iter().enumerate() {
                let first = i == 0;
                let cell = |s: String| if first { s } else { String::new() };
                rows.push(vec![
                    cell(r.scope.clone()),
                    cell(r.rule.clone()),
                    cell(r.requests.to_string()),
                    cell(r.matched.to_string()),
                    cell(r.decided.to_string()),
                    f.fault.clone(),
                    f.applied.to_string(),
                    f.skipped_text(),
                    cell(asks.clone()),
                    if !self.judged {
                        String::new()
                    } else if f.idle {
                        "IDLE".to_owned()
                    } else {
                        "ok".to_owned()
                    },
                ]);
            }
        }
        (head, rows)
    }

    /// The table as Markdown (for `summary.md`).
    pub fn markdown(&self) -> String {
        let (head, rows) = self.rows();
        let mut out = String::new();
        let _ = writeln!(out, "| {} |", head.join(" | "));
        let align: Vec<&str> = (0..head.len())
            .map(|i| {
                if (2..=4).contains(&i) || i == 6 {
                    "---:"
                } else {
                    "---"
                }
            })
            .collect();
        let _ = writeln!(out, "|{}|", align.join("|"));
        for r in rows {
            let cells: Vec<String> = r.iter().map(|c| c.replace('|', "\\|")).collect();
            let _ = writeln!(out, "| {} |", cells.join(" | "));
        }
        out
    }
}

fn scope_words(scope: &str) -> String {
    if scope == "all" {
        "top level, over the drill".to_owned()
    } else {
        format!("phase `{scope}`")
    }
}

/// What the accounting knows besides the records.
#[derive(Debug, Clone, Copy)]
pub struct ChaosInput<'a> {
    /// The profile the drill applied; without one, rules are counted as the
    /// records name them and not judged.
    pub profile: Option<&'a Profile>,
    /// The phases the drill ran, in order; rules of phases not listed are not
    /// judged (a `duration` that cut the profile short). Empty: the phases records
    /// show.
    pub phases: &'a [PhaseSpan],
    /// `allow_idle_rules` from the scenario.
    pub allow_idle_rules: bool,
}

/// A rule's name: the profile's, or the default `rule-N` / `<phase>-N` the proxy
/// gives an unnamed one.
fn rule_name(rule: &Rule, phase: Option<&str>, index: usize) -> String {
    match (&rule.name, phase) {
        (Some(n), _) => n.clone(),
        (None, Some(p)) => format!("{p}-{}", index + 1),
        (None, None) => format!("rule-{}", index + 1),
    }
}

/// Count and judge every rule over `records`.
pub fn account(records: &[RecordView<'_>], input: &ChaosInput<'_>, source: &str) -> ChaosSummary {
    let matches_recorded = !records.is_empty() && records.iter().all(|r| r.matched_known);
    let mut summary = ChaosSummary {
        source: source.to_owned(),
        exchanges: records.len() as u64,
        matches_recorded,
        judged: input.profile.is_some(),
        allow_idle_rules: input.allow_idle_rules,
        rules: Vec::new(),
        note: None,
        timeline: timeline(records),
    };
    match input.profile {
        Some(profile) => {
            let ran: Vec<PhaseSpan> = if input.phases.is_empty() {
                seen_phases(records)
            } else {
                input.phases.to_vec()
            };
            for (i, rule) in profile.rules.iter().enumerate() {
                let name = rule_name(rule, None, i);
                let scope: Vec<&RecordView<'_>> = records.iter().collect();
                summary.rules.push(judge_rule(
                    rule,
                    &name,
                    "all",
                    &scope,
                    None,
                    matches_recorded,
                ));
            }
            for phase in &profile.phases {
                let Some(span) = ran.iter().find(|p| p.name == phase.name) else {
                    continue;
                };
                let scope: Vec<&RecordView<'_>> = records
                    .iter()
                    .filter(|r| r.record.phase.as_deref() == Some(phase.name.as_str()))
                    .collect();
                for (i, rule) in phase.rules.iter().enumerate() {
                    let name = rule_name(rule, Some(&phase.name), i);
                    summary.rules.push(judge_rule(
                        rule,
                        &name,
                        &phase.name,
                        &scope,
                        Some(span),
                        matches_recorded,
                    ));
                }
            }
        }
        None => summary.rules = count_named(records),
    }
    if records.is_empty() {
        summary.note = Some("no proxy records were read".to_owned());
    } else if !matches_recorded && input.profile.is_some() {
        summary.note = Some(
            "the records do not say which rules matched (a proxy older than this drill): matches are inferred from the conditions records show"
                .to_owned(),
        );
    }
    summary
}

/// Phases in order of first appearance, with the span of their records.
fn seen_phases(records: &[RecordView<'_>]) -> Vec<PhaseSpan> {
    let mut out: Vec<PhaseSpan> = Vec::new();
    for r in records {
        if let Some(p) = &r.record.phase {
            if !out.iter().any(|s| s.name == **p) {
                out.push(PhaseSpan {
                    name: p.to_string(),
                    duration_s: None,
                });
            }
        }
    }
    out
}

/// Without a profile: each rule the records name, per phase, counted.
fn count_named(records: &[RecordView<'_>]) -> Vec<RuleTally> {
    let mut out: Vec<RuleTally> = Vec::new();
    let mut requests: BTreeMap<String, u64> = BTreeMap::new();
    for r in records {
        let rec = r.record;
        let scope = rec.phase.as_deref().unwrap_or("all").to_owned();
        *requests.entry(scope.clone()).or_default() += 1;
        let mut names: Vec<&str> = r.matched().into_iter().flatten().map(|n| &**n).collect();
        names.extend(rec.rules.iter().map(|n| &**n));
        names.extend(rec.faults.iter().map(|f| &*f.rule));
        names.extend(rec.faults_skipped.iter().map(|f| &*f.rule));
        names.sort_unstable();
        names.dedup();
        for name in names {
            let i = match out.iter().position(|t| t.scope == scope && t.rule == name) {
                Some(i) => i,
                None => {
                    out.push(RuleTally {
                        scope: scope.clone(),
                        rule: name.to_owned(),
                        ..RuleTally::default()
                    });
                    out.len() - 1
                }
            };
            let t = &mut out[i];
            let capped = r.capped(name);
            let fired = r.fired(name);
            let matched = r
                .matched()
                .map_or(fired || capped, |m| m.iter().any(|x| &**x == name));
            t.matched += u64::from(matched);
            t.decided += u64::from(fired || capped);
            let mut kinds: Vec<&str> = rec
                .faults
                .iter()
                .chain(&rec.faults_skipped)
                .filter(|f| &*f.rule == name)
                .map(|f| f.fault)
                .collect();
            kinds.dedup();
            for kind in kinds {
                let f = match t.faults.iter().position(|f| f.fault == kind) {
                    Some(i) => &mut t.faults[i],
                    None => {
                        t.faults.push(FaultTally {
                            fault: kind.to_owned(),
                            ..FaultTally::default()
                        });
                        let last = t.faults.len() - 1;
                        &mut t.faults[last]
                    }
                };
                tally_fault(f, rec, name, kind, fired, capped);
            }
        }
    }
    for t in &mut out {
        t.requests = requests.get(&t.scope).copied().unwrap_or(0);
    }
    out
}

/// Count one exchange for fault `kind` of rule `name` (fired or capped there).
fn tally_fault(f: &mut FaultTally, r: &Record, name: &str, kind: &str, fired: bool, capped: bool) {
    let is = |x: &FaultRef| &*x.rule == name && x.fault == kind;
    if r.faults.iter().any(is) {
        f.applied += 1;
    } else if capped {
        *f.skipped.entry("max_active".to_owned()).or_default() += 1;
    } else if let Some(why) = r.faults_skipped.iter().find(|x| is(x)) {
        let reason = why.reason.unwrap_or("unknown").to_owned();
        *f.skipped.entry(reason).or_default() += 1;
    } else if fired {
        let preempted = r
            .faults
            .iter()
            .any(|x| TERMINAL.contains(&x.fault) && !is(x))
            || r.outcome == Outcome::InjectedError
            || r.outcome == Outcome::Reset;
        let reason = if preempted {
            "preempted"
        } else if CONDITIONAL.contains(&kind) {
            // The limit or state it waits for was not reached this time.
            "not_reached"
        } else {
            "not_recorded"
        };
        *f.skipped.entry(reason.to_owned()).or_default() += 1;
    }
}

/// The probability a rule asks for at `fraction` of its phase.
fn probability_at(p: &Probability, fraction: f64) -> f64 {
    match p {
        Probability::Fixed(p) => *p,
        Probability::Ramp { from, to } => from + (to - from) * fraction.clamp(0.0, 1.0),
    }
    .clamp(0.0, 1.0)
}

/// How a rule decides: by chance, or by count.
fn asks_text(rule: &Rule) -> String {
    if let Some(s) = &rule.schedule {
        let per = match s.per {
            brownout_faults::profile::SchedulePer::Rule => "",
            brownout_faults::profile::SchedulePer::Call => " per call",
        };
        return match (s.first, s.every) {
            (Some(n), _) => format!("schedule first {n}{per}"),
            (None, Some(n)) => format!("schedule every {n}{per}"),
            _ => "schedule".to_owned(),
        };
    }
    match rule.probability {
        Probability::Fixed(p) => format!("probability {p}"),
        Probability::Ramp { from, to } => format!("probability {from}→{to}"),
    }
}

fn judge_rule(
    rule: &Rule,
    name: &str,
    scope_name: &str,
    scope: &[&RecordView<'_>],
    span: Option<&PhaseSpan>,
    matches_recorded: bool,
) -> RuleTally {
    // Where each record falls in its phase, for ramps.
    let (t0, t1) = scope
        .iter()
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), r| {
            (a.min(r.t_s()), b.max(r.t_s()))
        });
    let length = span
        .and_then(|s| s.duration_s)
        .unwrap_or((t1 - t0).max(1e-3))
        .max(1e-3);
    let mut t = RuleTally {
        scope: scope_name.to_owned(),
        rule: name.to_owned(),
        requests: scope.len() as u64,
        asks: Some(asks_text(rule)),
        ..RuleTally::default()
    };
    let kinds: Vec<&'static str> = {
        let mut k: Vec<&'static str> = rule.faults.iter().map(|f| f.kind()).collect();
        k.dedup();
        k
    };
    t.faults = kinds
        .iter()
        .map(|k| FaultTally {
            fault: (*k).to_owned(),
            ..FaultTally::default()
        })
        .collect();
    let mut ps: Vec<f64> = Vec::new();
    let mut scheduled: Option<u64> = rule.schedule.map(|_| 0);
    let mut k_rule: u64 = 0;
    for r in scope {
        let fired = r.fired(name);
        let capped = r.capped(name);
        let matched = match r.matched() {
            Some(m) => m.iter().any(|x| &**x == name),
            None => {
                fired
                    || capped
                    || (visible_only(&rule.matches) && visible_match(&rule.matches, r.record))
            }
        };
        if !matched {
            continue;
        }
        t.matched += 1;
        t.decided += u64::from(fired || capped);
        ps.push(probability_at(&rule.probability, (r.t_s() - t0) / length));
        if let (Some(s), Some(n)) = (&rule.schedule, scheduled.as_mut()) {
            let k = match s.per {
                brownout_faults::profile::SchedulePer::Rule => Some(k_rule),
                brownout_faults::profile::SchedulePer::Call => r.record.attempt.map(u64::from),
            };
            match k {
                Some(k) => *n += u64::from(s.fires(k)),
                // A call's position is unknown without its retry count: no exact
                // count to hold the rule to.
                None => scheduled = None,
            }
        }
        k_rule += 1;
        if fired || capped {
            for (f, kind) in t.faults.iter_mut().zip(&kinds) {
                tally_fault(f, r.record, name, kind, fired, capped);
            }
        }
    }
    let asks_nothing = rule.schedule.is_none()
        && match rule.probability {
            Probability::Fixed(p) => p <= 0.0,
            Probability::Ramp { from, to } => from <= 0.0 && to <= 0.0,
        };
    t.expected = Some(match (&rule.schedule, scheduled) {
        (Some(_), Some(n)) => n as f64,
        (Some(_), None) => f64::NAN,
        (None, _) => ps.iter().sum(),
    })
    .filter(|e| e.is_finite());
    for (f, kind) in t.faults.iter_mut().zip(&kinds) {
        let drawn = f.applied
            + f.skipped.get("max_active").copied().unwrap_or(0)
            + f.skipped.get("preempted").copied().unwrap_or(0);
        f.idle = if asks_nothing {
            false
        } else if t.matched == 0 {
            true
        } else if CONDITIONAL.contains(kind) {
            // Applied only when the limit or state is reached: idle only if it never
            // was, though the rule was drawn (or should have been).
            drawn == 0
                && (t.decided > 0
                    || rule.schedule.is_some()
                    || poisson_binomial_cdf(&ps, 0) < IDLE_P_VALUE)
        } else if rule.schedule.is_some() {
            match scheduled {
                Some(n) => drawn < n,
                None => drawn == 0,
            }
        } else {
            let p = poisson_binomial_cdf(&ps, drawn);
            f.p_value = Some(p);
            p < IDLE_P_VALUE
        };
    }
    t.idle = t.faults.iter().any(|f| f.idle);
    if t.idle {
        t.nearest_miss = Some(nearest_miss(rule, &t, scope, scope_name, matches_recorded));
    }
    t
}

/// Whether every condition of `m` can be checked from a record (no headers,
/// client share or prompt size, which records do not keep).
fn visible_only(m: &Match) -> bool {
    m.headers.is_empty() && m.clients.is_none() && m.prompt_tokens.is_none()
}

/// Whether `r` passes every record-visible condition of `m`.
fn visible_match(m: &Match, r: &Record) -> bool {
    visible_conditions(m).iter().all(|c| c.holds(r))
}

/// One condition of a `match` that a record can be checked against.
enum Cond {
    Listener(String),
    Api(String),
    Endpoint(String),
    Method(String),
    Path(String, Option<Glob>),
    GrpcMethod(String, Option<Glob>),
    Model(String, Option<Glob>),
    Stream(bool),
}

fn visible_conditions(m: &Match) -> Vec<Cond> {
    let glob = |p: &str| Glob::new(p).ok();
    let mut out = Vec::new();
    if let Some(l) = &m.listener {
        out.push(Cond::Listener(l.clone()));
    }
    if let Some(a) = m.api {
        out.push(Cond::Api(format!("{a:?}").to_lowercase()));
    }
    if let Some(e) = m.endpoint {
        out.push(Cond::Endpoint(format!("{e:?}").to_lowercase()));
    }
    if let Some(x) = &m.method {
        out.push(Cond::Method(x.to_ascii_uppercase()));
    }
    if let Some(p) = &m.path {
        out.push(Cond::Path(p.clone(), glob(p)));
    }
    if let Some(p) = &m.grpc_method {
        out.push(Cond::GrpcMethod(p.clone(), glob(p)));
    }
    if let Some(p) = &m.model {
        out.push(Cond::Model(p.clone(), glob(p)));
    }
    if let Some(s) = m.stream {
        out.push(Cond::Stream(s));
    }
    out
}

impl Cond {
    fn holds(&self, r: &Record) -> bool {
        let globbed = |g: &Option<Glob>, v: Option<&str>| match (g, v) {
            (Some(g), Some(v)) => g.matches(v),
            _ => false,
        };
        match self {
            Cond::Listener(l) => named(&r.listener) == Some(l.as_str()),
            Cond::Api(a) => named(r.api) == Some(a.as_str()),
            Cond::Endpoint(e) => named(r.endpoint) == Some(e.as_str()),
            Cond::Method(m) => named(&r.method).is_some_and(|x| x.eq_ignore_ascii_case(m)),
            Cond::Path(_, g) => globbed(g, named(&r.path)),
            Cond::GrpcMethod(_, g) => globbed(g, grpc_path(r).as_deref()),
            Cond::Model(_, g) => globbed(g, r.model.as_deref()),
            Cond::Stream(s) => r.stream.unwrap_or(false) == *s,
        }
    }

    fn describe(&self) -> String {
        match self {
            Cond::Listener(l) => format!("listener `{l}`"),
            Cond::Api(a) => format!("api `{a}`"),
            Cond::Endpoint(e) => format!("endpoint `{e}`"),
            Cond::Method(m) => format!("method `{m}`"),
            Cond::Path(p, _) => format!("path `{p}`"),
            Cond::GrpcMethod(p, _) => format!("grpc_method `{p}`"),
            Cond::Model(p, _) => format!("model `{p}`"),
            Cond::Stream(s) => format!("stream `{s}`"),
        }
    }

    /// What the record holds for this condition, as a report shows it.
    fn value(&self, r: &Record) -> String {
        let or_none = |v: Option<&str>| v.map_or("none".to_owned(), |v| format!("`{v}`"));
        match self {
            Cond::Listener(_) => format!("listener {}", or_none(named(&r.listener))),
            Cond::Api(_) => format!(
                "api {} (listener {})",
                or_none(named(r.api)),
                or_none(named(&r.listener))
            ),
            Cond::Endpoint(_) => format!(
                "classified {} on listener {}",
                or_none(named(r.endpoint)),
                or_none(named(&r.listener))
            ),
            Cond::Method(_) => format!("method {}", or_none(named(&r.method))),
            Cond::Path(..) => format!("path {}", or_none(named(&r.path))),
            Cond::GrpcMethod(..) => match grpc_path(r) {
                Some(p) => format!("gRPC method `{p}`"),
                None => "not gRPC".to_owned(),
            },
            Cond::Model(..) => match r.model.as_deref() {
                Some(m) => format!("model `{m}`"),
                None => "no model read from the body".to_owned(),
            },
            Cond::Stream(_) => match r.stream {
                Some(s) => format!("stream `{s}`"),
                None => "stream not read from the body".to_owned(),
            },
        }
    }
}

fn grpc_path(r: &Record) -> Option<String> {
    r.grpc
        .as_ref()
        .map(|g| format!("/{}/{}", g.service, g.method))
}

/// Why an idle rule is idle, as near as the records tell.
fn nearest_miss(
    rule: &Rule,
    t: &RuleTally,
    scope: &[&RecordView<'_>],
    scope_name: &str,
    matches_recorded: bool,
) -> String {
    let name = &t.rule;
    let where_ = if scope_name == "all" {
        "during the drill".to_owned()
    } else {
        format!("in phase `{scope_name}`")
    };
    if scope.is_empty() {
        return format!("no request reached the proxy {where_}");
    }
    if t.matched == 0 {
        // Which record-visible condition excluded the most requests, and what those
        // requests were instead.
        // Requests that held every other condition say most about why the rule
        // missed, so the condition most of them failed comes first; when some
        // request held every condition a record shows, a hidden one (a client
        // share, a header) excluded it.
        let conds = visible_conditions(&rule.matches);
        let passed_all = scope
            .iter()
            .any(|r| conds.iter().all(|c| c.holds(r.record)));
        let mut best: Option<((usize, usize), &Cond)> = None;
        for (i, c) in conds.iter().enumerate() {
            let failed = scope.iter().filter(|r| !c.holds(r.record));
            let near = failed
                .clone()
                .filter(|r| {
                    conds
                        .iter()
                        .enumerate()
                        .all(|(j, o)| j == i || o.holds(r.record))
                })
                .count();
            let key = (near, failed.count());
            if key.1 > 0 && best.is_none_or(|(k, _)| key > k) {
                best = Some((key, c));
            }
        }
        if let Some(((_, failed), c)) = best.filter(|_| !passed_all) {
            let mut values: BTreeMap<String, usize> = BTreeMap::new();
            for r in scope.iter().filter(|r| !c.holds(r.record)) {
                *values.entry(c.value(r.record)).or_default() += 1;
            }
            let mut v: Vec<(String, usize)> = values.into_iter().collect();
            v.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
            let shown: Vec<String> = v
                .iter()
                .take(3)
                .map(|(k, n)| format!("{k} ({n})"))
                .collect();
            let all = failed == scope.len();
            return format!(
                "rule `{name}` matches {}; {} {where_} failed it: {}",
                c.describe(),
                if all {
                    format!("every one of the {failed} requests")
                } else {
                    format!("{failed} of {} requests", scope.len())
                },
                shown.join(", ")
            );
        }
        // The conditions records show all held somewhere: one they do not show
        // excluded the rest.
        let mut hidden = Vec::new();
        if let Some(c) = &rule.matches.clients {
            let by = c.by.as_deref().unwrap_or("client_ip");
            hidden.push(match by.strip_prefix("header:") {
                Some(h) => format!(
                    "`clients: {{percent: {}, by: {by}}}` (do the clients send `{h}`? a request without it never matches)",
                    c.percent
                ),
                None => format!("`clients: {{percent: {}, by: client_ip}}`", c.percent),
            });
        }
        for (h, g) in &rule.matches.headers {
            hidden.push(format!("header `{h}: {g}`"));
        }
        if let Some(p) = &rule.matches.prompt_tokens {
            hidden.push(format!(
                "`prompt_tokens` {}..{}",
                p.min.map_or(String::new(), |v| v.to_string()),
                p.max.map_or(String::new(), |v| v.to_string())
            ));
        }
        if !matches_recorded && !hidden.is_empty() {
            return format!(
                "it never fired {where_}; records keep no header values, so {} cannot be checked, and these records do not say what matched",
                hidden.join(" and ")
            );
        }
        if hidden.is_empty() {
            return format!(
                "rule `{name}` matched none of the {} requests {where_}",
                scope.len()
            );
        }
        let passed = scope
            .iter()
            .filter(|r| conds.iter().all(|c| c.holds(r.record)))
            .count();
        return format!(
            "{} {where_} passed the conditions records show, and {} excluded {}",
            if passed == scope.len() {
                format!("every one of the {passed} requests")
            } else {
                format!("{passed} of the {} requests", scope.len())
            },
            hidden.join(" and "),
            if passed == 1 { "it" } else { "them all" }
        );
    }
    // It matched: the most common reason a decided fault did not apply, or a draw
    // count far below what was asked.
    let mut parts = Vec::new();
    for f in t.faults.iter().filter(|f| f.idle) {
        let reason = f
            .skipped
            .iter()
            .filter(|(r, _)| r.as_str() != "max_active" && r.as_str() != "preempted")
            .max_by_key(|(_, n)| **n);
        let text = match reason {
            Some((r, n)) if *n > 0 => format!(
                "`{}` was decided {} times and applied {}; most often skipped: {r} ({n})",
                f.fault,
                f.decided(),
                f.applied
            ),
            _ => format!(
                "`{}` applied {} times on {} matched requests, where {} asks for about {:.0}",
                f.fault,
                f.applied,
                t.matched,
                t.asks.as_deref().unwrap_or("the rule"),
                t.expected.unwrap_or(0.0)
            ),
        };
        parts.push(text);
    }
    format!(
        "rule `{name}` matched {} requests {where_}: {}",
        t.matched,
        parts.join("; ")
    )
}

/// `P(X <= k)` for `X` the number of successes of independent Bernoulli trials
/// with probabilities `ps` (a Poisson-binomial). Exact (dynamic programming over
/// the counts up to `k`) while that is cheap, else the normal approximation with
/// continuity correction.
pub fn poisson_binomial_cdf(ps: &[f64], k: u64) -> f64 {
    let n = ps.len() as u64;
    if k >= n {
        return 1.0;
    }
    if n.saturating_mul(k + 1) <= EXACT_STEPS {
        let k = k as usize;
        // dist[j] = P(j successes so far), for j <= k; mass beyond k is dropped,
        // which is all the CDF at k needs.
        let mut dist = vec![0.0f64; k + 1];
        dist[0] = 1.0;
        for p in ps {
            let p = p.clamp(0.0, 1.0);
            for j in (0..=k).rev() {
                let stay = dist[j] * (1.0 - p);
                let from_below = if j > 0 { dist[j - 1] * p } else { 0.0 };
                dist[j] = stay + from_below;
            }
        }
        return dist.iter().sum::<f64>().clamp(0.0, 1.0);
    }
    let mean: f64 = ps.iter().sum();
    let var: f64 = ps.iter().map(|p| p * (1.0 - p)).sum();
    if var <= 0.0 {
        return if (k as f64) + 1e-9 >= mean { 1.0 } else { 0.0 };
    }
    let z = (k as f64 + 0.5 - mean) / var.sqrt();
    normal_cdf(z)
}

/// The standard normal CDF, through `erfc` (Numerical Recipes' Chebyshev fit,
/// relative error under 1.2e-7 everywhere).
fn normal_cdf(z: f64) -> f64 {
    0.5 * erfc(-z / std::f64::consts::SQRT_2)
}

fn erfc(x: f64) -> f64 {
    let z = x.abs();
    let t = 1.0 / (1.0 + 0.5 * z);
    let r = t
        * (-z * z - 1.265_512_23
            + t * (1.000_023_68
                + t * (0.374_091_96
                    + t * (0.096_784_18
                        + t * (-0.186_288_06
                            + t * (0.278_868_07
                                + t * (-1.135_203_98
                                    + t * (1.488_515_87
                                        + t * (-0.822_152_23 + t * 0.170_872_77)))))))))
            .exp();
    if x >= 0.0 {
        r
    } else {
        2.0 - r
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use brownout_faults::record::Timestamp;
    use std::time::UNIX_EPOCH;

    fn binom_cdf(n: u64, p: f64, k: u64) -> f64 {
        // Direct sum, for checking.
        let mut total = 0.0;
        for j in 0..=k.min(n) {
            let mut c = 1.0f64;
            for i in 0..j {
                c *= (n - i) as f64 / (i + 1) as f64;
            }
            total += c * p.powi(j as i32) * (1.0 - p).powi((n - j) as i32);
        }
        total
    }

    #[test]
    fn poisson_binomial_matches_the_binomial_and_its_tails() {
        for (n, p, k) in [
            (10, 0.5, 3),
            (40, 0.1, 0),
            (200, 0.3, 45),
            (7, 1.0, 6),
            (12, 0.0, 0),
        ] {
            let ps = vec![p; n as usize];
            let got = poisson_binomial_cdf(&ps, k);
            let want = binom_cdf(n, p, k);
            assert!(
                (got - want).abs() < 1e-9,
                "n={n} p={p} k={k}: {got} vs {want}"
            );
        }
        // Ten requests at 1%: nothing applied is the likely outcome, not a miss.
        assert!(poisson_binomial_cdf(&[0.01; 10], 0) > 0.9);
        // A certain fault that never applied is impossible.
        assert_eq!(poisson_binomial_cdf(&[1.0; 3], 0), 0.0);
        // The normal approximation agrees with the exact sum where both apply.
        let ps: Vec<f64> = (0..20_000)
            .map(|i| 0.1 + 0.3 * (i as f64 / 20_000.0))
            .collect();
        let approx = poisson_binomial_cdf(&ps, 4_700);
        let exact = {
            let mut d = vec![0.0f64; 4_701];
            d[0] = 1.0;
            for p in &ps {
                for j in (0..=4_700).rev() {
                    d[j] = d[j] * (1.0 - p) + if j > 0 { d[j - 1] * p } else { 0.0 };
                }
            }
            d.iter().sum::<f64>()
        };
        assert!((approx - exact).abs() < 0.01, "{approx} vs {exact}");
        assert!(exact < 0.01, "{exact}");
    }

    fn profile(src: &str) -> Profile {
        brownout_faults::validate::load_profile(src, "p.yaml")
            .unwrap_or_else(|d| panic!("{}", d[0]))
    }

    const PROFILE: &str = "\
version: 1
name: t
phases:
  - name: calm
    duration: 10s
  - name: storm
    duration: 10s
    rules:
      - name: shed
        match: {endpoint: messages, clients: {percent: 50, by: \"header:x-api-key\"}}
        probability: 0.5
        faults: [{type: error, preset: anthropic.overloaded}]
      - name: slow
        match: {listener: llm}
        faults: [{type: delay, duration: 1s}]
";

    fn rec(
        phase: &str,
        endpoint: &'static str,
        matched: &[&str],
        fired: &[&str],
        applied: &[(&str, &'static str)],
    ) -> Record {
        let mut r = Record::new(0, Arc::from("llm"));
        r.ts = Timestamp(UNIX_EPOCH);
        r.phase = Some(Arc::from(phase));
        r.api = "openai";
        r.endpoint = endpoint;
        r.method = "POST".into();
        r.path = "/v1/messages".into();
        r.matched = matched.iter().map(|s| Arc::from(*s)).collect();
        r.rules = fired.iter().map(|s| Arc::from(*s)).collect();
        r.faults = applied
            .iter()
            .map(|(r, f)| FaultRef {
                rule: Arc::from(*r),
                fault: f,
                reason: None,
            })
            .collect();
        r.outcome = Outcome::Ok;
        r
    }

    /// Records as a proxy that lists `matched` writes them.
    fn seen(records: &[Record]) -> Vec<RecordView<'_>> {
        records
            .iter()
            .map(|record| RecordView {
                record,
                matched_known: true,
            })
            .collect()
    }

    fn phases() -> Vec<PhaseSpan> {
        ["calm", "storm"]
            .iter()
            .map(|n| PhaseSpan {
                name: (*n).to_owned(),
                duration_s: Some(10.0),
            })
            .collect()
    }

    #[test]
    fn a_rule_that_never_matched_is_idle_with_its_nearest_miss() {
        let p = profile(PROFILE);
        let mut records: Vec<Record> = (0..40)
            .map(|_| rec("storm", "other", &["slow"], &["slow"], &[("slow", "delay")]))
            .collect();
        records.push(rec("calm", "other", &[], &[], &[]));
        let ph = phases();
        let input = ChaosInput {
            profile: Some(&p),
            phases: &ph,
            allow_idle_rules: false,
        };
        let s = account(&seen(&records), &input, "test");
        assert!(s.inconclusive());
        let shed = &s.rules[0];
        assert_eq!((shed.rule.as_str(), shed.scope.as_str()), ("shed", "storm"));
        assert_eq!((shed.requests, shed.matched, shed.decided), (40, 0, 0));
        assert!(shed.idle);
        let miss = shed.nearest_miss.as_deref().unwrap();
        assert_eq!(
            miss,
            "rule `shed` matches endpoint `messages`; every one of the 40 requests in phase `storm` failed it: classified `other` on listener `llm` (40)"
        );
        let slow = &s.rules[1];
        assert!(!slow.idle, "{slow:?}");
        assert_eq!(slow.faults[0].applied, 40);
        assert_eq!(slow.faults[0].p_value, Some(1.0));
        // Opting out keeps the counts, not the verdict.
        let s = account(
            &seen(&records),
            &ChaosInput {
                allow_idle_rules: true,
                ..input
            },
            "test",
        );
        assert!(s.rules[0].idle && !s.inconclusive());
    }

    #[test]
    fn hidden_conditions_are_named_when_records_pass_the_visible_ones() {
        let p = profile(PROFILE);
        let records: Vec<Record> = (0..30)
            .map(|_| {
                rec(
                    "storm",
                    "messages",
                    &["slow"],
                    &["slow"],
                    &[("slow", "delay")],
                )
            })
            .collect();
        let ph = phases();
        let s = account(
            &seen(&records),
            &ChaosInput {
                profile: Some(&p),
                phases: &ph,
                allow_idle_rules: false,
            },
            "t",
        );
        let miss = s.rules[0].nearest_miss.clone().unwrap();
        assert!(
            miss.contains("passed the conditions records show"),
            "{miss}"
        );
        assert!(miss.contains("do the clients send `x-api-key`?"), "{miss}");
    }

    #[test]
    fn too_few_applications_are_idle_but_an_unlucky_few_are_not() {
        let p = profile(PROFILE);
        let ph = phases();
        let input = ChaosInput {
            profile: Some(&p),
            phases: &ph,
            allow_idle_rules: false,
        };
        // 100 matched at 0.5, 20 applied: P(X <= 20) ≈ 1e-9.
        let mut records = Vec::new();
        for i in 0..100 {
            if i < 20 {
                records.push(rec(
                    "storm",
                    "messages",
                    &["shed", "slow"],
                    &["shed", "slow"],
                    &[("shed", "error")],
                ));
            } else if i < 30 {
                // Decided, but skipped by the proxy.
                let mut r = rec(
                    "storm",
                    "messages",
                    &["shed", "slow"],
                    &["shed", "slow"],
                    &[("slow", "delay")],
                );
                r.faults_skipped.push(FaultRef {
                    rule: "shed".into(),
                    fault: "error",
                    reason: Some("http_only_preset"),
                });
                records.push(r);
            } else {
                records.push(rec(
                    "storm",
                    "messages",
                    &["shed", "slow"],
                    &["slow"],
                    &[("slow", "delay")],
                ));
            }
        }
        let s = account(&seen(&records), &input, "t");
        let shed = &s.rules[0];
        assert_eq!((shed.matched, shed.decided), (100, 30));
        assert_eq!(shed.faults[0].applied, 20);
        assert_eq!(shed.faults[0].skipped.get("http_only_preset"), Some(&10));
        assert!(shed.idle, "{shed:?}");
        let miss = shed.nearest_miss.clone().unwrap();
        assert!(
            miss.contains("most often skipped: http_only_preset (10)"),
            "{miss}"
        );
        // `slow` (probability 1) was pre-empted by shed's error on 20 of them: those
        // still count as drawn, so it is not idle.
        let slow = &s.rules[1];
        assert_eq!(slow.faults[0].applied, 80);
        assert_eq!(slow.faults[0].skipped.get("preempted"), Some(&20));
        assert!(!slow.idle, "{slow:?}");
        // 40 applied of 100 at 0.5 is unlucky, not idle (P ≈ 0.028).
        let records: Vec<Record> = (0..100)
            .map(|i| {
                if i < 40 {
                    rec(
                        "storm",
                        "messages",
                        &["shed"],
                        &["shed"],
                        &[("shed", "error")],
                    )
                } else {
                    rec("storm", "messages", &["shed"], &[], &[])
                }
            })
            .collect();
        let s = account(&seen(&records), &input, "t");
        assert!(!s.rules[0].idle, "{:?}", s.rules[0]);
        let pv = s.rules[0].faults[0].p_value.unwrap();
        assert!(pv > 0.01 && pv < 0.05, "{pv}");
    }

    #[test]
    fn without_a_profile_rules_are_counted_not_judged() {
        let mut r = rec("storm", "chat", &["a"], &["a"], &[("a", "error")]);
        r.faults_skipped.push(FaultRef {
            rule: "b".into(),
            fault: "delay",
            reason: Some("max_active"),
        });
        let s = account(
            &seen(&[r]),
            &ChaosInput {
                profile: None,
                phases: &[],
                allow_idle_rules: false,
            },
            "t",
        );
        assert!(!s.judged && !s.inconclusive());
        assert_eq!(s.rules.len(), 2);
        let b = s.rules.iter().find(|t| t.rule == "b").unwrap();
        assert_eq!(b.faults[0].skipped.get("max_active"), Some(&1));
        assert_eq!(b.decided, 1);
    }
}
