//! A scenario drill's verdict and its report files: `report.json`, `junit.xml`,
//! `summary.md` and a self-contained `report.html` with SVG charts (plotters).

use std::fmt::Write as _;
use std::io;
use std::path::Path;

use plotters::prelude::*;
use serde::{Deserialize, Serialize};

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

/// Everything a drill's reports show.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DrillReport {
    /// The scenario's name (or `records` for `brownout report`).
    pub name: String,
    /// `pass`, `fail` or `stopped`.
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
}

impl DrillReport {
    /// Build the report and its verdict from measurements and SLO checks.
    pub fn new(
        name: &str,
        baseline: Option<String>,
        result: EngineResult,
        slo: Vec<SloCheck>,
    ) -> Self {
        let (verdict, exit_code) = if result.stopped.is_some() {
            ("stopped", EXIT_STOPPED)
        } else if slo.iter().any(|c| !c.passed) {
            ("fail", EXIT_SLO_BROKEN)
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
    let errors = usize::from(r.result.stopped.is_some());
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
    out.push_str("  </testsuite>\n</testsuites>\n");
    out
}

/// `summary.md`: verdict, SLO table, goodput and retries, then the per-phase table.
pub fn render_summary(r: &DrillReport) -> String {
    let mut out = String::new();
    let icon = match r.verdict.as_str() {
        "pass" => "✅",
        "fail" => "❌",
        _ => "⛔",
    };
    let _ = writeln!(
        out,
        "# {icon} brownout drill `{}`: {}\n",
        r.name,
        r.verdict.to_uppercase()
    );
    if let Some(why) = &r.result.stopped {
        let _ = writeln!(out, "Stopped early: {why}; faults were switched off.\n");
    }
    if let Some(why) = &r.incomplete {
        let _ = writeln!(out, "**Incomplete data**: {why}.\n");
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
    for e in r
        .result
        .phases
        .iter()
        .chain(std::iter::once(&r.result.total))
    {
        let _ = writeln!(
            out,
            "| {} | {:.1}% | {:.2}× |",
            e.name,
            e.goodput * 100.0,
            e.retry_amplification
        );
    }
    out.push('\n');
    let phases = || {
        r.result
            .phases
            .iter()
            .chain(std::iter::once(&r.result.total))
    };
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
    if r.result.workloads.is_empty() {
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

/// For the terminal: goodput, retry amplification and the correctness numbers per
/// phase (columns without data left out), aligned; `None` with no phases.
pub fn render_correctness_table(r: &DrillReport) -> Option<String> {
    type Col = (
        &'static str,
        fn(&crate::engine::PhaseExtra) -> Option<String>,
    );
    let cols: [Col; 7] = [
        ("goodput", |e| Some(format!("{:.1}%", e.goodput * 100.0))),
        ("retry ampl.", |e| {
            Some(format!("{:.2}x", e.retry_amplification))
        }),
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
    let rows: Vec<&crate::engine::PhaseExtra> = r
        .result
        .phases
        .iter()
        .chain(std::iter::once(&r.result.total))
        .collect();
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

fn draw_err<E: std::fmt::Debug>(e: E) -> io::Error {
    io::Error::other(format!("cannot draw the chart: {e:?}"))
}

const BAND: [RGBColor; 4] = [
    RGBColor(230, 240, 255),
    RGBColor(255, 235, 220),
    RGBColor(230, 250, 230),
    RGBColor(245, 230, 250),
];

/// Latency over time, one dot per request (red for failures), on phase bands.
fn latency_chart(r: &DrillReport) -> io::Result<String> {
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (960, 360)).into_drawing_area();
        root.fill(&WHITE).map_err(draw_err)?;
        let x_max = r
            .result
            .stats
            .phases
            .iter()
            .map(|p| p.duration_s)
            .sum::<f64>()
            .max(r.result.points.iter().map(|p| p.t_s).fold(0.0, f64::max))
            .max(1e-3);
        let y_max = r.result.points.iter().map(|p| p.e2e_ms).fold(1.0, f64::max) * 1.1;
        let mut chart = ChartBuilder::on(&root)
            .caption(
                "End-to-end latency over time (phases shaded)",
                ("sans-serif", 18),
            )
            .margin(12)
            .x_label_area_size(40)
            .y_label_area_size(60)
            .build_cartesian_2d(0.0..x_max, 0.0..y_max)
            .map_err(draw_err)?;
        let mut t = 0.0;
        for (i, p) in r.result.stats.phases.iter().enumerate() {
            let c = BAND[i % BAND.len()];
            chart
                .draw_series(std::iter::once(Rectangle::new(
                    [(t, 0.0), (t + p.duration_s, y_max)],
                    c.filled(),
                )))
                .map_err(draw_err)?
                .label(p.name.clone())
                .legend(move |(x, y)| Rectangle::new([(x, y - 5), (x + 15, y + 5)], c.filled()));
            t += p.duration_s;
        }
        chart
            .configure_mesh()
            .light_line_style(WHITE.mix(0.0))
            .x_desc("seconds since start (scheduled send)")
            .y_desc("ms")
            .draw()
            .map_err(draw_err)?;
        chart
            .draw_series(
                r.result
                    .points
                    .iter()
                    .filter(|p| p.ok)
                    .map(|p| Circle::new((p.t_s, p.e2e_ms), 2, BLUE.filled())),
            )
            .map_err(draw_err)?;
        chart
            .draw_series(
                r.result
                    .points
                    .iter()
                    .filter(|p| !p.ok)
                    .map(|p| Circle::new((p.t_s, p.e2e_ms), 2, RED.filled())),
            )
            .map_err(draw_err)?;
        chart
            .configure_series_labels()
            .background_style(WHITE.mix(0.8))
            .border_style(BLACK)
            .draw()
            .map_err(draw_err)?;
        root.present().map_err(draw_err)?;
    }
    Ok(svg)
}

/// Grouped values per phase as lines with dots (p50/p95/p99, or rates).
fn per_phase_chart(
    r: &DrillReport,
    title: &str,
    unit: &str,
    series: &[(&str, RGBColor, Vec<f64>)],
) -> io::Result<String> {
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (470, 320)).into_drawing_area();
        root.fill(&WHITE).map_err(draw_err)?;
        let names: Vec<String> = r
            .result
            .stats
            .phases
            .iter()
            .map(|p| p.name.clone())
            .collect();
        let n = names.len().max(1);
        let y_max = series
            .iter()
            .flat_map(|s| s.2.iter().copied())
            .fold(0.0, f64::max)
            .max(1e-6)
            * 1.15;
        let mut chart = ChartBuilder::on(&root)
            .caption(title, ("sans-serif", 16))
            .margin(12)
            .x_label_area_size(40)
            .y_label_area_size(60)
            .build_cartesian_2d(-0.5..(n as f64 - 0.5), 0.0..y_max)
            .map_err(draw_err)?;
        chart
            .configure_mesh()
            .x_labels(n)
            .x_label_formatter(&|v| {
                let i = v.round();
                if (v - i).abs() < 1e-6 && i >= 0.0 {
                    names.get(i as usize).cloned().unwrap_or_default()
                } else {
                    String::new()
                }
            })
            .y_desc(unit)
            .light_line_style(WHITE.mix(0.0))
            .draw()
            .map_err(draw_err)?;
        for (label, color, values) in series {
            let pts: Vec<(f64, f64)> = values
                .iter()
                .enumerate()
                .map(|(i, v)| (i as f64, *v))
                .collect();
            let c = *color;
            chart
                .draw_series(LineSeries::new(pts.clone(), c.stroke_width(2)))
                .map_err(draw_err)?
                .label(*label)
                .legend(move |(x, y)| {
                    PathElement::new(vec![(x, y), (x + 20, y)], c.stroke_width(2))
                });
            chart
                .draw_series(pts.into_iter().map(|p| Circle::new(p, 4, c.filled())))
                .map_err(draw_err)?;
        }
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::UpperLeft)
            .background_style(WHITE.mix(0.8))
            .border_style(BLACK)
            .draw()
            .map_err(draw_err)?;
        root.present().map_err(draw_err)?;
    }
    Ok(svg)
}

/// `report.html`: one file, no scripts or external resources, charts inline as SVG.
pub fn render_html(r: &DrillReport) -> io::Result<String> {
    let phases = &r.result.stats.phases;
    let pct = |f: fn(&crate::stats::Percentiles) -> f64| -> Vec<f64> {
        phases
            .iter()
            .map(|p| p.e2e.as_ref().map_or(0.0, f))
            .collect()
    };
    let latency = latency_chart(r)?;
    let percentiles = per_phase_chart(
        r,
        "End-to-end latency per phase",
        "ms",
        &[
            ("p50", RGBColor(31, 119, 180), pct(|p| p.p50_ms)),
            ("p95", RGBColor(255, 127, 14), pct(|p| p.p95_ms)),
            ("p99", RGBColor(214, 39, 40), pct(|p| p.p99_ms)),
        ],
    )?;
    let rates = per_phase_chart(
        r,
        "Error rate and goodput per phase",
        "%",
        &[
            (
                "error rate",
                RGBColor(214, 39, 40),
                phases.iter().map(|p| p.error_rate * 100.0).collect(),
            ),
            (
                "goodput",
                RGBColor(44, 160, 44),
                r.result.phases.iter().map(|e| e.goodput * 100.0).collect(),
            ),
        ],
    )?;
    let has = |f: fn(&crate::correct::Correctness) -> Option<f64>| {
        r.result.phases.iter().any(|e| f(&e.correctness).is_some())
    };
    let mut quality = Vec::new();
    let series = |f: fn(&crate::correct::Correctness) -> Option<f64>| -> Vec<f64> {
        r.result
            .phases
            .iter()
            .map(|e| f(&e.correctness).map_or(0.0, |v| v * 100.0))
            .collect()
    };
    type Metric = (
        &'static str,
        RGBColor,
        fn(&crate::correct::Correctness) -> Option<f64>,
    );
    let metrics: [Metric; 5] = [
        ("expect pass", RGBColor(148, 103, 189), |c| {
            c.expect_pass_rate
        }),
        ("answer match", RGBColor(31, 119, 180), |c| c.answer_match),
        ("cosine similarity", RGBColor(140, 86, 75), |c| {
            c.cosine_similarity
        }),
        ("recall@k", RGBColor(44, 160, 44), |c| c.recall_at_k),
        ("rank overlap", RGBColor(255, 127, 14), |c| c.rank_overlap),
    ];
    for (label, color, f) in metrics {
        if has(f) {
            quality.push((label, color, series(f)));
        }
    }
    let correctness = if quality.is_empty() {
        String::new()
    } else {
        per_phase_chart(r, "Correctness per phase", "%", &quality)?
    };
    let mut out = String::new();
    let _ = write!(
        out,
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>brownout drill {name}</title>\
         <style>body{{font-family:sans-serif;margin:2em;color:#222}}table{{border-collapse:collapse}}\
         td,th{{border:1px solid #ccc;padding:4px 8px;text-align:right}}td:first-child,th:first-child{{text-align:left}}\
         .pass{{color:#2a2}}.fail{{color:#c22}}.charts svg{{margin:4px}}</style></head><body>\n\
         <h1>brownout drill <code>{name}</code>: <span class=\"{cls}\">{verdict}</span></h1>\n",
        name = xml_escape(&r.name),
        cls = if r.verdict == "pass" { "pass" } else { "fail" },
        verdict = xml_escape(&r.verdict.to_uppercase()),
    );
    if let Some(why) = &r.result.stopped {
        let _ = writeln!(out, "<p><b>Stopped early:</b> {}</p>", xml_escape(why));
    }
    if let Some(why) = &r.incomplete {
        let _ = writeln!(out, "<p><b>Incomplete data:</b> {}</p>", xml_escape(why));
    }
    let _ = writeln!(
        out,
        "<div class=\"charts\">{latency}<br>{percentiles}{rates}{correctness}</div>"
    );
    out.push_str("<h2>Objectives</h2>\n<table><tr><th>scope</th><th>SLO</th><th>result</th><th>detail</th></tr>\n");
    for c in &r.slo {
        let _ = writeln!(
            out,
            "<tr><td>{}</td><td>{}</td><td class=\"{}\">{}</td><td>{}</td></tr>",
            xml_escape(&c.scope),
            xml_escape(&c.slo),
            if c.passed { "pass" } else { "fail" },
            if c.passed { "pass" } else { "FAIL" },
            xml_escape(&c.message)
        );
    }
    out.push_str("</table>\n<h2>Phases</h2>\n<table><tr><th>phase</th><th>requests</th><th>error rate</th><th>goodput</th><th>retry ampl.</th><th>e2e p50 ms</th><th>p95</th><th>p99</th><th>TTFT p95 ms</th><th>answer match</th><th>recall@k</th></tr>\n");
    for (p, e) in phases
        .iter()
        .zip(&r.result.phases)
        .chain(std::iter::once((&r.result.stats.total, &r.result.total)))
    {
        let f = |v: Option<f64>| v.map_or("–".to_owned(), |v| format!("{v:.1}"));
        let _ = writeln!(
            out,
            "<tr><td>{}</td><td>{}</td><td>{:.2}%</td><td>{:.1}%</td><td>{:.2}×</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            xml_escape(&p.name),
            p.requests,
            p.error_rate * 100.0,
            e.goodput * 100.0,
            e.retry_amplification,
            f(p.e2e.as_ref().map(|x| x.p50_ms)),
            f(p.e2e.as_ref().map(|x| x.p95_ms)),
            f(p.e2e.as_ref().map(|x| x.p99_ms)),
            f(p.ttft.as_ref().map(|x| x.p95_ms)),
            e.correctness
                .answer_match
                .map_or("–".to_owned(), |v| format!("{:.1}%", v * 100.0)),
            e.correctness
                .recall_at_k
                .map_or("–".to_owned(), |v| format!("{v:.3}")),
        );
    }
    out.push_str("</table>\n</body></html>\n");
    Ok(out)
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
        report_from_records(&[("r.jsonl".into(), text)], Some(&scenario))
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
        assert_eq!(html.matches("<svg").count(), 3);
        assert!(!html.contains("<script"));
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
