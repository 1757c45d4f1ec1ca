//! Reports: the terminal table, `summary.md` and `report.json`.
//!
//! The table's last column is the point of a drill: how much worse each phase is
//! than the baseline, as latency ratios and error-rate differences.

use std::fmt::Write as _;
use std::io;
use std::path::Path;

use crate::stats::{DrillResult, PhaseStats};

/// Milliseconds, shortened for a table cell: `850µs`, `4.2ms`, `123ms`, `1.23s`.
pub fn fmt_ms(ms: f64) -> String {
    if !ms.is_finite() {
        "-".to_owned()
    } else if ms < 1.0 {
        format!("{:.0}µs", ms * 1000.0)
    } else if ms < 10.0 {
        format!("{ms:.1}ms")
    } else if ms < 1000.0 {
        format!("{ms:.0}ms")
    } else if ms < 100_000.0 {
        format!("{:.2}s", ms / 1000.0)
    } else {
        format!("{:.0}s", ms / 1000.0)
    }
}

fn fmt_pct(rate: f64) -> String {
    format!("{:.1}%", rate * 100.0)
}

fn fmt_ratio(ratio: f64) -> String {
    if ratio >= 10.0 {
        format!("×{ratio:.0}")
    } else {
        format!("×{ratio:.1}")
    }
}

fn opt_ms(v: Option<f64>) -> String {
    v.map(fmt_ms).unwrap_or_else(|| "-".to_owned())
}

/// How `phase` compares with `base`: `p95 ×3.2, TTFT p95 ×2.1, errors +9.8pp`;
/// `no data` when either sent nothing (an error rate of an empty phase is no 0%).
pub fn degradation(phase: &PhaseStats, base: &PhaseStats) -> String {
    if phase.requests == 0 || base.requests == 0 {
        return "no data".to_owned();
    }
    let mut parts = Vec::new();
    let ratio = |a: Option<f64>, b: Option<f64>| match (a, b) {
        (Some(a), Some(b)) if b > 0.0 => Some(a / b),
        _ => None,
    };
    if let Some(r) = ratio(
        phase.e2e.as_ref().map(|p| p.p95_ms),
        base.e2e.as_ref().map(|p| p.p95_ms),
    ) {
        parts.push(format!("p95 {}", fmt_ratio(r)));
    }
    if let Some(r) = ratio(
        phase.ttft.as_ref().map(|p| p.p95_ms),
        base.ttft.as_ref().map(|p| p.p95_ms),
    ) {
        parts.push(format!("TTFT p95 {}", fmt_ratio(r)));
    }
    if let Some(r) = ratio(
        phase.tpot.as_ref().map(|p| p.p50_ms),
        base.tpot.as_ref().map(|p| p.p50_ms),
    ) {
        parts.push(format!("TPOT {}", fmt_ratio(r)));
    }
    let pp = (phase.error_rate - base.error_rate) * 100.0;
    parts.push(format!(
        "errors {}{:.1}pp",
        if pp < 0.0 { "−" } else { "+" },
        pp.abs()
    ));
    parts.join(", ")
}

/// One table row's cells.
fn row(p: &PhaseStats, base: Option<&PhaseStats>, base_name: &str) -> Vec<String> {
    let mut cells = vec![
        p.name.clone(),
        p.requests.to_string(),
        if p.requests == 0 {
            "no data".to_owned()
        } else {
            fmt_pct(p.error_rate)
        },
        opt_ms(p.e2e.as_ref().map(|e| e.p50_ms)),
        opt_ms(p.e2e.as_ref().map(|e| e.p95_ms)),
        opt_ms(p.e2e.as_ref().map(|e| e.p99_ms)),
        opt_ms(p.ttft.as_ref().map(|e| e.p50_ms)),
        opt_ms(p.ttft.as_ref().map(|e| e.p95_ms)),
        opt_ms(p.tpot.as_ref().map(|e| e.p50_ms)),
    ];
    if let Some(b) = base {
        cells.push(if p.name == base_name {
            "(baseline)".to_owned()
        } else {
            degradation(p, b)
        });
    }
    cells
}

fn headers(base: Option<&str>) -> Vec<String> {
    let mut h: Vec<String> = [
        "phase", "requests", "errors", "p50", "p95", "p99", "TTFT p50", "TTFT p95", "TPOT p50",
    ]
    .iter()
    .map(|s| (*s).to_owned())
    .collect();
    if let Some(b) = base {
        h.push(format!("vs {b}"));
    }
    h
}

/// Columns that hold numbers are right-aligned.
fn numeric(col: usize) -> bool {
    (1..=8).contains(&col)
}

fn rows(result: &DrillResult, baseline: Option<&str>) -> (Vec<String>, Vec<Vec<String>>) {
    let base = baseline.and_then(|b| result.phase(b));
    let base_name = baseline.filter(|_| base.is_some());
    let mut rows: Vec<Vec<String>> = result
        .phases
        .iter()
        .map(|p| row(p, base, base_name.unwrap_or("")))
        .collect();
    if result.phases.len() > 1 {
        let mut total = row(&result.total, None, "");
        if base.is_some() {
            total.push(String::new());
        }
        rows.push(total);
    }
    (headers(base_name), rows)
}

/// The per-phase table for a terminal: phase, requests, error rate, e2e p50/p95/p99,
/// TTFT p50/p95, and, when `baseline` names a phase, each phase's degradation
/// against it. Columns are aligned by character count.
pub fn render_table(result: &DrillResult, baseline: Option<&str>) -> String {
    let (head, rows) = rows(result, baseline);
    align(&head, &rows, numeric, true)
}

/// A table for a terminal: columns aligned by character count, two spaces apart,
/// `numeric` ones right-aligned, with a rule under the header when `rule`.
pub(crate) fn align(
    head: &[String],
    rows: &[Vec<String>],
    numeric: impl Fn(usize) -> bool,
    rule: bool,
) -> String {
    let width = |col: usize| {
        rows.iter()
            .map(|r| r[col].chars().count())
            .chain(std::iter::once(head[col].chars().count()))
            .max()
            .unwrap_or(0)
    };
    let widths: Vec<usize> = (0..head.len()).map(width).collect();
    let line = |cells: &[String]| {
        let mut out = String::new();
        for (i, c) in cells.iter().enumerate() {
            if i > 0 {
                out.push_str("  ");
            }
            let pad = widths[i].saturating_sub(c.chars().count());
            let last = i + 1 == cells.len();
            if numeric(i) {
                out.push_str(&" ".repeat(pad));
                out.push_str(c);
            } else {
                out.push_str(c);
                if !last {
                    out.push_str(&" ".repeat(pad));
                }
            }
        }
        out.trim_end().to_owned()
    };
    let mut out = String::new();
    out.push_str(&line(head));
    out.push('\n');
    if rule {
        let total_w = widths.iter().sum::<usize>() + 2 * widths.len().saturating_sub(1);
        out.push_str(&"─".repeat(total_w));
        out.push('\n');
    }
    for r in rows {
        out.push_str(&line(r));
        out.push('\n');
    }
    out
}

/// `summary.md`: a heading, the drill's settings, and the per-phase table in
/// Markdown, short enough for a pull-request comment.
pub fn render_markdown(result: &DrillResult, baseline: Option<&str>) -> String {
    let (head, rows) = rows(result, baseline);
    let mut out = String::new();
    let _ = writeln!(out, "## brownout drill\n");
    let _ = writeln!(
        out,
        "`{}{}` · model `{}` · {} · {} req/s Poisson · seed {} · {:.1}s\n",
        result.target,
        result.path,
        result.model,
        if result.stream {
            "streaming"
        } else {
            "non-streaming"
        },
        result.rate_per_sec,
        result.seed,
        result.elapsed_s,
    );
    let _ = writeln!(out, "| {} |", head.join(" | "));
    let align: Vec<&str> = (0..head.len())
        .map(|i| if numeric(i) { "---:" } else { "---" })
        .collect();
    let _ = writeln!(out, "|{}|", align.join("|"));
    for r in rows {
        let cells: Vec<String> = r.iter().map(|c| c.replace('|', "\\|")).collect();
        let _ = writeln!(out, "| {} |", cells.join(" | "));
    }
    let kinds: Vec<String> = result
        .total
        .errors_by_kind
        .iter()
        .map(|(k, v)| format!("{k}: {v}"))
        .collect();
    if !kinds.is_empty() {
        let _ = writeln!(out, "\nErrors by kind: {}.", kinds.join(", "));
    }
    let _ = writeln!(out, "\n{LATENCY_NOTE}");
    out
}

/// The footnote of [`render_markdown`] on what its latencies measure (a report
/// from records, timed by the proxy, says otherwise).
pub(crate) const LATENCY_NOTE: &str =
    "Latencies are of successful requests, measured from each request's scheduled send time.";

/// Write `report.json` (the full [`DrillResult`]) and `summary.md` into `dir`,
/// creating it. The first phase is the baseline of the summary; callers wanting
/// another use [`write_report_with_baseline`].
pub fn write_report(dir: &Path, result: &DrillResult) -> io::Result<()> {
    let baseline = result.phases.first().map(|p| p.name.clone());
    write_report_with_baseline(dir, result, baseline.as_deref())
}

/// [`write_report`] with an explicit baseline phase for `summary.md`.
pub fn write_report_with_baseline(
    dir: &Path,
    result: &DrillResult,
    baseline: Option<&str>,
) -> io::Result<()> {
    std::fs::create_dir_all(dir)?;
    let json = serde_json::to_vec_pretty(result).map_err(io::Error::other)?;
    std::fs::write(dir.join("report.json"), json)?;
    std::fs::write(dir.join("summary.md"), render_markdown(result, baseline))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stats::Percentiles;
    use std::collections::BTreeMap;

    fn pct(p50: f64, p95: f64) -> Percentiles {
        Percentiles {
            count: 10,
            mean_ms: p50,
            p50_ms: p50,
            p90_ms: p95,
            p95_ms: p95,
            p99_ms: p95 * 1.5,
            max_ms: p95 * 2.0,
        }
    }

    fn phase(name: &str, err: f64, p95: f64) -> PhaseStats {
        PhaseStats {
            name: name.into(),
            duration_s: 10.0,
            requests: 500,
            ok: 500 - (500.0 * err) as u64,
            errors: (500.0 * err) as u64,
            error_rate: err,
            errors_by_kind: BTreeMap::new(),
            http_statuses: BTreeMap::new(),
            e2e: Some(pct(p95 / 2.0, p95)),
            ttft: Some(pct(p95 / 8.0, p95 / 4.0)),
            itl: None,
            tpot: None,
            throughput_rps: 50.0,
            output_tokens: 0,
            tokens_per_sec: 0.0,
            tokens_from_usage: 0,
            tokens_counted: 0,
            max_send_lag_ms: 0.0,
        }
    }

    pub(crate) fn result() -> DrillResult {
        DrillResult {
            target: "http://127.0.0.1:8080".into(),
            path: "/v1/chat/completions".into(),
            model: "gpt-4o-mini".into(),
            stream: true,
            rate_per_sec: 50.0,
            seed: 7,
            elapsed_s: 30.2,
            phases: vec![
                phase("baseline", 0.002, 350.0),
                phase("storm", 0.1, 1120.0),
                phase("recovery", 0.0, 360.0),
            ],
            total: phase("all", 0.034, 800.0),
        }
    }

    #[test]
    fn degradation_strings() {
        let r = result();
        assert_eq!(
            degradation(&r.phases[1], &r.phases[0]),
            "p95 ×3.2, TTFT p95 ×3.2, errors +9.8pp"
        );
        assert_eq!(
            degradation(&r.phases[2], &r.phases[0]),
            "p95 ×1.0, TTFT p95 ×1.0, errors −0.2pp"
        );
    }

    #[test]
    fn table_is_aligned() {
        let t = render_table(&result(), Some("baseline"));
        let lines: Vec<&str> = t.lines().collect();
        assert_eq!(lines.len(), 2 + 3 + 1);
        assert!(lines[0].starts_with("phase"));
        assert!(lines[0].contains("vs baseline"));
        assert!(lines[2].contains("(baseline)"));
        assert!(lines[3].contains("p95 ×3.2"));
        // Right-aligned numeric columns end at the same character position.
        let col_end = |l: &str, needle: &str| {
            l.find(needle)
                .map(|i| l[..i].chars().count() + needle.chars().count())
        };
        assert_eq!(col_end(lines[0], "requests"), col_end(lines[2], "500"));
        assert_eq!(col_end(lines[2], "175ms"), col_end(lines[3], "560ms"));
        // Without a (known) baseline there is no comparison column.
        assert!(!render_table(&result(), None).contains("vs "));
        assert!(!render_table(&result(), Some("nope")).contains("vs "));
    }

    #[test]
    fn markdown_and_files() {
        let md = render_markdown(&result(), Some("baseline"));
        assert!(md.contains("| phase | requests |"));
        assert!(md.contains("|---|---:|"));
        assert!(md.contains("| storm | 500 | 10.0% |"));
        let dir =
            std::env::temp_dir().join(format!("brownout-drill-report-{}", std::process::id()));
        write_report(&dir, &result()).unwrap();
        let back: DrillResult =
            serde_json::from_slice(&std::fs::read(dir.join("report.json")).unwrap()).unwrap();
        assert_eq!(back, result());
        assert!(std::fs::read_to_string(dir.join("summary.md"))
            .unwrap()
            .contains("storm"));
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn an_empty_phase_says_no_data() {
        let mut r = result();
        r.phases[2] = PhaseStats {
            requests: 0,
            ok: 0,
            errors: 0,
            error_rate: 0.0,
            e2e: None,
            ttft: None,
            ..phase("recovery", 0.0, 1.0)
        };
        let t = render_table(&r, Some("baseline"));
        let line = t.lines().find(|l| l.starts_with("recovery")).unwrap();
        assert!(line.contains("no data"), "{t}");
        assert!(!line.contains("0.0%") && !line.contains("errors"), "{t}");
        let md = render_markdown(&r, Some("baseline"));
        assert!(md.contains("| recovery | 0 | no data |"), "{md}");
    }

    #[test]
    fn short_durations() {
        assert_eq!(fmt_ms(0.85), "850µs");
        assert_eq!(fmt_ms(4.24), "4.2ms");
        assert_eq!(fmt_ms(123.4), "123ms");
        assert_eq!(fmt_ms(1234.0), "1.23s");
    }
}
