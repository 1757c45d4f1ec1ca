//! A scenario drill's verdict and its report files: `report.json`, `junit.xml`,
//! `summary.md` and a self-contained `report.html` (drawn by [`crate::html`]).

use std::fmt::Write as _;
use std::io;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::chaos::ChaosSummary;
use crate::engine::{EngineResult, SloCheck};
use crate::report::render_markdown;

/// Exit code: every objective held.
pub const EXIT_PASS: u8 = 0;
/// Exit code: an objective was broken.
pub const EXIT_SLO_BROKEN: u8 = 1;
/// Exit code: the scenario, profile or records were invalid.
pub const EXIT_INVALID: u8 = 2;
/// Exit code: a `stop_when` condition ended the drill.
pub const EXIT_STOPPED: u8 = 3;
/// Exit code: the objectives held, but the chaos did not happen as the profile
/// says (a rule applied nothing, or improbably little), so the pass proves
/// nothing. When several hold, the code is the first of 2, 3, 1, 4.
pub const EXIT_INCONCLUSIVE: u8 = 4;

/// Everything a drill's reports show.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DrillReport {
    /// The scenario's name (or `records` for `brownout report`).
    pub name: String,
    /// `pass`, `fail`, `stopped` or `inconclusive`.
    pub verdict: String,
    /// The process exit code that goes with the verdict.
    pub exit_code: u8,
    /// The phase the others are compared with.
    pub baseline: Option<String>,
    /// Set when the data is known to be partial (dropped records, unreadable lines).
    pub incomplete: Option<String>,
    /// Measurements.
    pub result: EngineResult,
    /// Every objective's verdict.
    pub slo: Vec<SloCheck>,
    /// Per phase and rule: requests matched, faults decided, applied and skipped,
    /// and the rules that were idle. `None` when no records could be read.
    #[serde(default)]
    pub chaos: Option<ChaosSummary>,
    /// What the records of a report rebuilt from them (`brownout report`) held,
    /// shown in place of the drill's settings (arrival process, seed), which
    /// records do not carry. `None` for a drill.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub records: Option<RecordsSource>,
    /// The cost of chaos per phase, when the scenario gives `cost` (absent
    /// otherwise: no made-up zero).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cost: Option<crate::cost::ChaosCost>,
}

impl DrillReport {
    /// Build the report and its verdict from measurements and SLO checks, without
    /// fault accounting.
    pub fn new(
        name: &str,
        baseline: Option<String>,
        result: EngineResult,
        slo: Vec<SloCheck>,
    ) -> Self {
        Self::judged(name, baseline, result, slo, None)
    }

    /// Build the report and its verdict from measurements, SLO checks and the
    /// fault accounting: stopped (3) before a broken objective (1) before idle
    /// rules (4, inconclusive) before a pass (0).
    pub fn judged(
        name: &str,
        baseline: Option<String>,
        result: EngineResult,
        slo: Vec<SloCheck>,
        chaos: Option<ChaosSummary>,
    ) -> Self {
        let (verdict, exit_code) = if result.stopped.is_some() {
            ("stopped", EXIT_STOPPED)
        } else if slo.iter().any(|c| !c.passed) {
            ("fail", EXIT_SLO_BROKEN)
        } else if chaos.as_ref().is_some_and(ChaosSummary::inconclusive) {
            ("inconclusive", EXIT_INCONCLUSIVE)
        } else {
            ("pass", EXIT_PASS)
        };
        Self {
            name: name.to_owned(),
            verdict: verdict.to_owned(),
            exit_code,
            baseline,
            incomplete: None,
            result,
            slo,
            chaos,
            records: None,
            cost: None,
        }
    }

    /// The idle rules that make the verdict inconclusive (none when they are
    /// allowed).
    pub fn idle_rules(&self) -> Vec<&crate::chaos::RuleTally> {
        match &self.chaos {
            Some(c) if c.inconclusive() => c.idle().collect(),
            _ => Vec::new(),
        }
    }
}

/// Write the four report files into `dir`, creating it.
pub fn write_all(dir: &Path, r: &DrillReport) -> io::Result<()> {
    std::fs::create_dir_all(dir)?;
    let json = serde_json::to_vec_pretty(r).map_err(io::Error::other)?;
    std::fs::write(dir.join("report.json"), json)?;
    std::fs::write(dir.join("junit.xml"), render_junit(r))?;
    std::fs::write(dir.join("summary.md"), render_summary(r))?;
    std::fs::write(dir.join("report.html"), render_html(r)?)?;
    Ok(())
}

/// Escape text for XML attributes and content.
pub fn xml_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            c if (c as u32) < 0x20 && c != '\n' && c != '\t' && c != '\r' => {}
            c => out.push(c),
        }
    }
    out
}

/// `junit.xml`: one test suite, one test case per objective and scope; broken
/// objectives are failures, and a stopped drill adds an `stop_when` error case.
pub fn render_junit(r: &DrillReport) -> String {
    let failures = r.slo.iter().filter(|c| !c.passed).count();
    let idle = r.idle_rules();
    let errors = usize::from(r.result.stopped.is_some()) + idle.len();
    let tests = r.slo.len() + errors;
    let mut out = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
    let _ = writeln!(
        out,
        "<testsuites name=\"brownout\" tests=\"{tests}\" failures=\"{failures}\" errors=\"{errors}\" time=\"{:.3}\">",
        r.result.stats.elapsed_s
    );
    let _ = writeln!(
        out,
        "  <testsuite name=\"{}\" tests=\"{tests}\" failures=\"{failures}\" errors=\"{errors}\" skipped=\"0\" time=\"{:.3}\">",
        xml_escape(&r.name),
        r.result.stats.elapsed_s
    );
    for c in &r.slo {
        let _ = write!(
            out,
            "    <testcase classname=\"{}.{}\" name=\"{}\" time=\"0\"",
            xml_escape(&r.name),
            xml_escape(&c.scope),
            xml_escape(&c.slo)
        );
        if c.passed {
            out.push_str("/>\n");
        } else {
            let _ = writeln!(
                out,
                ">\n      <failure message=\"{m}\" type=\"SloBroken\">{m}</failure>\n    </testcase>",
                m = xml_escape(&c.message)
            );
        }
    }
    if let Some(why) = &r.result.stopped {
        let _ = writeln!(
            out,
            "    <testcase classname=\"{}\" name=\"stop_when\" time=\"0\">\n      <error message=\"{m}\" type=\"Stopped\">{m}</error>\n    </testcase>",
            xml_escape(&r.name),
            m = xml_escape(&format!("drill stopped: {why}"))
        );
    }
    // An idle rule is an error, not a failure: the service was not shown to fail,
    // the drill failed to test it.
    for t in idle {
        let _ = writeln!(
            out,
            "    <testcase classname=\"{}.{}\" name=\"rule {}\" time=\"0\">\n      <error message=\"{m}\" type=\"Inconclusive\">{m}</error>\n    </testcase>",
            xml_escape(&r.name),
            xml_escape(&t.scope),
            xml_escape(&t.rule),
            m = xml_escape(&format!(
                "inconclusive: rule `{}` ({}) applied {} on {} matched requests; nearest miss: {}",
                t.rule,
                if t.scope == "all" { "top level".to_owned() } else { format!("phase {}", t.scope) },
                t.faults
                    .iter()
                    .map(|f| format!("{} {}×", f.fault, f.applied))
                    .collect::<Vec<_>>()
                    .join(", "),
                t.matched,
                t.nearest_miss.as_deref().unwrap_or("none recorded")
            ))
        );
    }
    out.push_str("  </testsuite>\n</testsuites>\n");
    out
}

/// `summary.md`: verdict, SLO table, goodput and retries, then the per-phase table.
pub fn render_summary(r: &DrillReport) -> String {
    let mut out = String::new();
    let icon = match r.verdict.as_str() {
        "pass" => "✅",
        "fail" => "❌",
        "inconclusive" => "❔",
        "no verdict" => "➖",
        _ => "⛔",
    };
    let _ = writeln!(
        out,
        "# {icon} brownout {} `{}`: {}\n",
        if r.records.is_some() {
            "report"
        } else {
            "drill"
        },
        r.name,
        r.verdict.to_uppercase()
    );
    if let Some(src) = &r.records {
        let _ = writeln!(out, "{}\n", src.describe());
        if let Some(why) = &src.no_verdict {
            let _ = writeln!(out, "No verdict: {why}.\n");
        }
    }
    if let Some(why) = &r.result.stopped {
        let _ = writeln!(out, "Stopped early: {why}; faults were switched off.\n");
    }
    if let Some(why) = &r.incomplete {
        let _ = writeln!(out, "**Incomplete data**: {why}.\n");
    }
    if let Some(c) = &r.chaos {
        let _ = writeln!(out, "{}", chaos_markdown(c));
    }
    if let Some(c) = &r.cost {
        let _ = writeln!(out, "{}", c.markdown());
    }
    if !r.slo.is_empty() {
        let _ = writeln!(out, "| scope | SLO | result | |\n|---|---|---|---|");
        for c in &r.slo {
            let _ = writeln!(
                out,
                "| {} | {} | {} | {} |",
                c.scope,
                c.slo,
                if c.passed { "pass" } else { "**FAIL**" },
                c.message.replace('|', "\\|")
            );
        }
        out.push('\n');
    }
    let _ = writeln!(
        out,
        "| phase | goodput | retry amplification |\n|---|---:|---:|"
    );
    for e in phase_rows(r) {
        let _ = writeln!(
            out,
            "| {} | {} | {} |",
            e.name,
            e.goodput_text(),
            e.amplification_text()
        );
    }
    out.push('\n');
    let phases = || phase_rows(r).into_iter();
    let c = &r.result.total.correctness;
    if c.expect_checked + c.answer_compared + c.embeddings_compared + c.searches_compared > 0 {
        let pct = |v: Option<f64>| v.map_or("–".to_owned(), |v| format!("{:.1}%", v * 100.0));
        let num = |v: Option<f64>| v.map_or("–".to_owned(), |v| format!("{v:.4}"));
        let _ = writeln!(
            out,
            "| phase | expect pass | answer match | cosine similarity | recall@k | rank overlap |\n|---|---:|---:|---:|---:|---:|"
        );
        for e in phases() {
            let c = &e.correctness;
            let _ = writeln!(
                out,
                "| {} | {} | {} | {} | {} | {} |",
                e.name,
                pct(c.expect_pass_rate),
                pct(c.answer_match),
                num(c.cosine_similarity),
                num(c.recall_at_k),
                num(c.rank_overlap),
            );
        }
        out.push('\n');
    }
    let table = render_markdown(&r.result.stats, r.baseline.as_deref());
    let table = table.trim_start_matches("## brownout drill\n\n");
    if r.records.is_some() {
        // The settings line describes a drill's load; the header above says what
        // the records hold, and the proxy measured from arrival, not a schedule.
        let body = table.split_once("\n\n").map_or(table, |(_, rest)| rest);
        out.push_str(&body.replace(
            crate::report::LATENCY_NOTE,
            "Latencies are of successful exchanges, as the proxy measured them: from the request's arrival to the end of the response.",
        ));
    } else if r.result.workloads.is_empty() {
        out.push_str(table);
    } else {
        // The plain table's heading describes one target; a scenario has several
        // workloads, so list them instead.
        let _ = writeln!(out, "Workloads (seed {}):\n", r.result.stats.seed);
        for w in &r.result.workloads {
            let _ = writeln!(
                out,
                "- `{}`: {} `POST {}`{}{} · {}",
                w.name,
                w.api,
                w.path,
                if w.model.is_empty() {
                    String::new()
                } else {
                    format!(" · model `{}`", w.model)
                },
                if w.stream { " · streaming" } else { "" },
                w.arrival
            );
        }
        out.push('\n');
        out.push_str(table.split_once("\n\n").map_or(table, |(_, rest)| rest));
        for w in &r.result.by_workload {
            let t = render_markdown(&w.stats, r.baseline.as_deref());
            let t = t.trim_start_matches("## brownout drill\n\n");
            let body = t.split_once("\n\n").map_or(t, |(_, rest)| rest);
            // Only the table: the footnotes are said once above.
            let body = body.split("\n\n").next().unwrap_or(body);
            let _ = write!(out, "\n### Workload `{}`\n\n{body}\n", w.name);
        }
    }
    out
}

/// The fault accounting for `summary.md`: idle rules first (why the verdict is
/// inconclusive), then the per-phase, per-rule table.
pub fn chaos_markdown(c: &ChaosSummary) -> String {
    let mut out = String::from("## Faults\n\n");
    let idle = c.idle_lines();
    if !idle.is_empty() {
        let _ = writeln!(
            out,
            "{}:\n",
            if c.inconclusive() {
                "**Inconclusive**: the chaos did not happen as the profile says"
            } else {
                "Idle rules (allowed by `allow_idle_rules`)"
            }
        );
        for l in &idle {
            let _ = writeln!(out, "- {}", l.replace('|', "\\|"));
        }
        out.push('\n');
    }
    if c.rules.is_empty() {
        let _ = writeln!(
            out,
            "No fault rules ({} exchanges read from {}).",
            c.exchanges, c.source
        );
    } else {
        out.push_str(&c.markdown());
        let _ = writeln!(
            out,
            "\nCounted from {} ({} exchanges): matched = the rule's conditions held; decided = drawn by its probability or schedule; skipped = decided but not applied, by reason.",
            c.source, c.exchanges
        );
    }
    if let Some(n) = &c.note {
        let _ = writeln!(out, "\nNote: {n}.");
    }
    out
}

/// For the terminal: the fault accounting table, then one line per idle rule.
pub fn render_chaos_table(c: &ChaosSummary) -> String {
    let mut out = String::new();
    if c.rules.is_empty() {
        let _ = writeln!(
            out,
            "faults: no rules ({} exchanges from {})",
            c.exchanges, c.source
        );
    } else {
        let (head, rows) = c.rows();
        out.push_str(&crate::report::align(
            &head,
            &rows,
            |i| (2..=4).contains(&i) || i == 6,
            true,
        ));
    }
    for l in c.idle_lines() {
        let _ = writeln!(
            out,
            "{} {l}",
            if c.inconclusive() {
                "IDLE"
            } else {
                "idle (allowed)"
            }
        );
    }
    if let Some(n) = &c.note {
        let _ = writeln!(out, "note: {n}");
    }
    out
}

/// The phases' rows, then the total's, unless the only phase is the total (records
/// without phases): one row saying the same twice reads as two measurements.
pub(crate) fn phase_rows(r: &DrillReport) -> Vec<&crate::engine::PhaseExtra> {
    let res = &r.result;
    let dup = matches!(res.phases.as_slice(), [one] if one.name == res.total.name);
    let total = (!dup).then_some(&res.total);
    res.phases.iter().chain(total).collect()
}

/// For the terminal: goodput, retry amplification and the correctness numbers per
/// phase (columns without data left out), aligned; `None` with no phases. An
/// unmeasured phase says `no data`, never a healthy 100%.
pub fn render_correctness_table(r: &DrillReport) -> Option<String> {
    type Col = (
        &'static str,
        fn(&crate::engine::PhaseExtra) -> Option<String>,
    );
    let cols: [Col; 7] = [
        ("goodput", |e| Some(e.goodput_text())),
        ("retry ampl.", |e| Some(e.amplification_text())),
        ("expect pass", |e| {
            e.correctness
                .expect_pass_rate
                .map(|v| format!("{:.1}%", v * 100.0))
        }),
        ("answer match", |e| {
            e.correctness
                .answer_match
                .map(|v| format!("{:.1}%", v * 100.0))
        }),
        ("cosine sim.", |e| {
            e.correctness.cosine_similarity.map(|v| format!("{v:.4}"))
        }),
        ("recall@k", |e| {
            e.correctness.recall_at_k.map(|v| format!("{v:.3}"))
        }),
        ("rank overlap", |e| {
            e.correctness.rank_overlap.map(|v| format!("{v:.3}"))
        }),
    ];
    let rows = phase_rows(r);
    if r.result.phases.is_empty() {
        return None;
    }
    let used: Vec<&Col> = cols
        .iter()
        .filter(|(_, f)| rows.iter().any(|e| f(e).is_some()))
        .collect();
    let head: Vec<String> = std::iter::once("phase".to_owned())
        .chain(used.iter().map(|(h, _)| (*h).to_owned()))
        .collect();
    let table: Vec<Vec<String>> = rows
        .iter()
        .map(|e| {
            std::iter::once(e.name.clone())
                .chain(used.iter().map(|(_, f)| f(e).unwrap_or_else(|| "–".into())))
                .collect()
        })
        .collect();
    Some(crate::report::align(&head, &table, |c| c > 0, false))
}

/// `report.html` lives in [`crate::html`]; callers name it here too.
pub use crate::html::{chaos_html, render_html};

/// A name and how many records carry it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Count {
    /// The listener, `api endpoint` or model.
    pub name: String,
    /// Records that name it.
    pub records: u64,
}

/// What a report rebuilt from records read: its header in place of the drill
/// settings (arrival process, seed) that records do not carry.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct RecordsSource {
    /// Record files read.
    pub files: usize,
    /// Records read from them.
    pub records: u64,
    /// The first arrival (RFC 3339), none without records.
    pub first: Option<String>,
    /// The last arrival.
    pub last: Option<String>,
    /// From the first arrival to the last, seconds.
    pub span_s: f64,
    /// Records per second over the span; none when they all arrived at once.
    pub rate_per_sec: Option<f64>,
    /// Records by listener, most first.
    pub listeners: Vec<Count>,
    /// Records by API kind and endpoint class (`openai chat`), most first.
    pub endpoints: Vec<Count>,
    /// Records by model, most first (a model is known only where the body was read).
    pub models: Vec<Count>,
    /// Records that asked for a stream.
    pub streaming: u64,
    /// Records whose body said whether to stream (the proxy reads a body only
    /// when a rule needs it).
    pub stream_known: u64,
    /// Why the report has no verdict, when it has none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub no_verdict: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::records::report_from_records;
    use crate::scenario::load_scenario;

    pub(super) fn report() -> DrillReport {
        let line = |ts: &str, phase: &str, outcome: &str, status: u16| {
            serde_json::json!({"ts": ts, "phase": phase, "outcome": outcome, "status": status,
                "ttft_ms": 20.0, "e2e_ms": 120.0, "output_tokens": 8})
            .to_string()
        };
        let text = [
            line("2026-01-01T00:00:00.000Z", "base", "ok", 200),
            line("2026-01-01T00:00:01.000Z", "base", "ok", 200),
            line("2026-01-01T00:00:02.000Z", "storm", "injected_error", 429),
            line("2026-01-01T00:00:03.000Z", "storm", "ok", 200),
        ]
        .join("\n");
        let scenario = load_scenario(
            "version: 1\nname: a<b & \"c\"\ntarget: {upstream: sim}\nprofile: p.yaml\n\
             workload: {name: w, arrival: {rate: 1/s}}\nbaseline: base\n\
             slo:\n  e2e_p99: 1s\n  error_rate: 0.3\n  phases:\n    storm: {error_rate: 0.1}\n",
            "s.yaml",
        )
        .unwrap();
        report_from_records(&[("r.jsonl".into(), text)], Some(&scenario)).unwrap()
    }

    #[test]
    fn junit_parses_back() {
        let r = report();
        assert_eq!(r.exit_code, EXIT_SLO_BROKEN);
        let xml = render_junit(&r);
        let doc = roxmltree::Document::parse(&xml).unwrap();
        let root = doc.root_element();
        assert_eq!(root.tag_name().name(), "testsuites");
        let suite = root
            .children()
            .find(|n| n.has_tag_name("testsuite"))
            .unwrap();
        assert_eq!(suite.attribute("name"), Some("a<b & \"c\""));
        let cases: Vec<_> = suite
            .children()
            .filter(|n| n.has_tag_name("testcase"))
            .collect();
        // all: e2e_p99, error_rate; base: the same; storm: e2e_p99, error_rate.
        assert_eq!(cases.len(), 6);
        assert_eq!(suite.attribute("tests"), Some("6"));
        assert_eq!(suite.attribute("failures"), Some("1"));
        let failed: Vec<_> = cases
            .iter()
            .filter_map(|c| c.children().find(|n| n.has_tag_name("failure")))
            .collect();
        assert_eq!(failed.len(), 1);
        assert_eq!(
            failed[0].attribute("message"),
            Some("storm: error_rate 50.00% breaks limit 10.00%")
        );
    }

    #[test]
    fn html_and_summary() {
        let r = report();
        let html = render_html(&r).unwrap();
        assert!(html.starts_with("<!DOCTYPE html>"));
        // Rebuilt from records: no workloads known, so one section of all requests.
        assert_eq!(html.matches("<section class=\"workload\"").count(), 1);
        assert!(html.contains("a&lt;b &amp; &quot;c&quot;"));
        let md = render_summary(&r);
        assert!(md.contains("FAIL"), "{md}");
        assert!(md.contains("| storm | error_rate | **FAIL** |"), "{md}");
    }
}

#[cfg(test)]
mod correctness_table_tests {
    use super::render_correctness_table;

    #[test]
    fn only_measured_columns_aligned() {
        let mut r = super::tests::report();
        r.result.phases[1].correctness.recall_at_k = Some(0.5);
        let t = render_correctness_table(&r).unwrap();
        let lines: Vec<&str> = t.lines().collect();
        assert_eq!(lines[0], "phase  goodput  retry ampl.  recall@k");
        assert!(
            lines[2].starts_with("storm ") && lines[2].ends_with("   0.500"),
            "{t}"
        );
        assert!(lines[1].ends_with("       –"), "{t}");
        // Every line ends where the header does: right-aligned numbers.
        assert!(
            lines
                .iter()
                .all(|l| l.chars().count() == lines[0].chars().count()),
            "{t}"
        );
        assert!(!t.contains("answer match"));
    }
}
