//! `report.html`: the drill as a postmortem reads it. One file that needs no
//! network: tables are plain HTML (readable without scripts, escaped here), and
//! the charts are drawn in the browser by the vendored uPlot from a JSON block,
//! both inlined.
//!
//! Each workload gets its own section: pooling a chat's seconds with a search's
//! milliseconds makes both unreadable. Streaming workloads add TTFT, ITL and TPOT
//! beside end-to-end latency, every chart shares one time axis with the faults
//! applied, and phases are bands with gaps between them, never joined by a line,
//! because a phase change is a discontinuity, not a trend.

use std::fmt::Write as _;
use std::io;

use serde::Serialize;

use crate::chaos::ChaosSummary;
use crate::engine::{Point, WorkloadInfo};
use crate::gate::{xml_escape, DrillReport};
use crate::stats::{DrillResult, Percentiles, PhaseStats};

/// uPlot's minified script, shared with the live dashboard so both pages draw
/// with the same library.
pub const UPLOT_JS: &str = include_str!("../assets/uplot/uPlot.iife.min.js");
/// uPlot's stylesheet.
pub const UPLOT_CSS: &str = include_str!("../assets/uplot/uPlot.min.css");
/// The vendored uPlot version (see `drill/assets/uplot/README.md`).
pub const UPLOT_VERSION: &str = "1.6.32";

const REPORT_JS: &str = include_str!("../assets/report.js");
const REPORT_CSS: &str = include_str!("../assets/report.css");

/// Workload colours: none red or orange, which mean errors and faults.
const WORKLOAD_COLORS: [&str; 6] = [
    "#1f77b4", "#2ca02c", "#9467bd", "#17becf", "#8c564b", "#e377c2",
];
/// Failed requests, on every chart and in every table.
const ERROR_COLOR: &str = "#d62728";
/// Fault rules: warm colours, apart from the workloads'.
const FAULT_COLORS: [&str; 6] = [
    "#ff7f0e", "#bcbd22", "#7f7f7f", "#e7969c", "#8c6d31", "#ad494a",
];

/// A window of a per-window percentile line should hold about this many requests,
/// or its p95 is one request's latency.
const REQUESTS_PER_WINDOW: f64 = 20.0;
/// At most this many windows across a drill.
const MAX_WINDOWS: f64 = 60.0;

/// One workload's colour.
pub fn workload_color(i: usize) -> &'static str {
    WORKLOAD_COLORS[i % WORKLOAD_COLORS.len()]
}

/// `report.html`.
pub fn render_html(r: &DrillReport) -> io::Result<String> {
    let tl = Timeline::of(r);
    let groups = groups(r);
    let mut charts = Vec::new();
    let mut out = String::new();
    head(&mut out, r);
    header(&mut out, r, &tl, &groups);
    objectives(&mut out, r);

    // The chaos first: what was done, then what it did to each workload.
    out.push_str("<section class=\"timeline\" id=\"timeline\">\n<h2>Timeline</h2>\n");
    phase_strip(&mut out, &tl, r.baseline.as_deref());
    match r.chaos.as_ref().filter(|c| !c.timeline.is_empty()) {
        Some(c) => {
            let spec = faults_chart(c, &tl);
            figure(&mut out, &spec, "Faults applied over time, per rule and fault");
            charts.push(spec);
        }
        None => out.push_str(
            "<p class=\"muted\">No faults were applied (or no proxy records were read), so there is no faults-over-time chart.</p>\n",
        ),
    }
    out.push_str("</section>\n");

    for g in &groups {
        workload_section(&mut out, &mut charts, r, &tl, g);
    }
    phases_table(&mut out, r);
    if let Some(c) = &r.chaos {
        out.push_str(&chaos_html(c));
    }
    if let Some(c) = &r.cost {
        out.push_str(&cost_html(c));
    }
    let _ = writeln!(
        out,
        "<footer class=\"muted\">Written by brownout. Charts drawn with uPlot {UPLOT_VERSION} (MIT licence), inlined with the data: this file needs no network. Latencies are of successful requests unless marked as errors; times are seconds from the drill's start, by scheduled send.</footer>"
    );

    let data = PageData {
        x_max: tl.x_max,
        baseline: r.baseline.clone(),
        phases: tl
            .phases
            .iter()
            .map(|p| PhaseBand {
                name: p.name.clone(),
                start_s: round(p.start_s, 3),
                end_s: round(p.end_s, 3),
            })
            .collect(),
        error_color: ERROR_COLOR,
        charts,
    };
    let json = serde_json::to_string(&data).map_err(io::Error::other)?;
    let _ = write!(
        out,
        "<script type=\"application/json\" id=\"report-data\">{}</script>\n<script>{}</script>\n<script>{}</script>\n</body></html>\n",
        script_safe(&json),
        UPLOT_JS,
        REPORT_JS
    );
    Ok(out)
}

/// JSON that cannot end the `<script>` element holding it: `<`, `>` and `&` as
/// JSON escapes, which `JSON.parse` reads back unchanged.
fn script_safe(json: &str) -> String {
    json.replace('<', "\\u003c")
        .replace('>', "\\u003e")
        .replace('&', "\\u0026")
}

fn head(out: &mut String, r: &DrillReport) {
    let _ = write!(
        out,
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>brownout drill {name}: {verdict}</title>\n<style>{UPLOT_CSS}\n{REPORT_CSS}</style></head>\n\
         <body data-rendered=\"pending\">\n",
        name = xml_escape(&r.name),
        verdict = xml_escape(&r.verdict.to_uppercase()),
    );
}

fn verdict_class(v: &str) -> &'static str {
    match v {
        "pass" => "pass",
        "inconclusive" => "idle",
        // Records without objectives: nothing was judged, nothing failed.
        "no verdict" => "none",
        _ => "fail",
    }
}

fn header(out: &mut String, r: &DrillReport, tl: &Timeline, groups: &[Group]) {
    let cls = verdict_class(&r.verdict);
    let _ = writeln!(
        out,
        "<header class=\"verdict {cls}\">\n<h1>brownout drill <code>{}</code> <span class=\"badge {cls}\">{}</span></h1>",
        xml_escape(&r.name),
        xml_escape(&r.verdict.to_uppercase()),
    );
    let broken: Vec<_> = r.slo.iter().filter(|c| !c.passed).collect();
    let why = match r.verdict.as_str() {
        "pass" => format!(
            "All {} objectives held{}.",
            r.slo.len(),
            if r.chaos.as_ref().is_some_and(|c| c.judged) {
                ", and every fault rule applied"
            } else {
                ""
            }
        ),
        "fail" => format!(
            "{} of {} objectives broken.",
            broken.len(),
            r.slo.len()
        ),
        "stopped" => "Stopped early by stop_when; faults were switched off.".to_owned(),
        "inconclusive" => {
            "The objectives held, but the chaos did not happen as the profile says, so the pass proves nothing.".to_owned()
        }
        "no verdict" => r
            .records
            .as_ref()
            .and_then(|s| s.no_verdict.clone())
            .map_or("No verdict: no objectives were given.".to_owned(), |w| {
                format!("No verdict: {w}.")
            }),
        other => format!("Verdict {other}."),
    };
    let _ = writeln!(
        out,
        "<p class=\"why\">{} <span class=\"muted\">(exit code {})</span></p>",
        xml_escape(&why),
        r.exit_code
    );
    let mut items: Vec<String> = broken
        .iter()
        .map(|c| {
            format!(
                "<li class=\"fail\"><b>Broken:</b> {}</li>",
                xml_escape(&c.message)
            )
        })
        .collect();
    if let Some(why) = &r.result.stopped {
        items.push(format!(
            "<li class=\"fail\"><b>Stopped early:</b> {}</li>",
            xml_escape(why)
        ));
    }
    for t in r.idle_rules() {
        items.push(format!(
            "<li class=\"idle\"><b>Idle rule</b> <code>{}</code> ({}): {}</li>",
            xml_escape(&t.rule),
            xml_escape(&t.scope),
            xml_escape(
                t.nearest_miss
                    .as_deref()
                    .unwrap_or("it applied improbably rarely")
            )
        ));
    }
    if let Some(why) = &r.incomplete {
        items.push(format!(
            "<li class=\"idle\"><b>Incomplete data:</b> {}</li>",
            xml_escape(why)
        ));
    }
    if !items.is_empty() {
        let _ = writeln!(out, "<ul class=\"findings\">{}</ul>", items.join(""));
    }
    let s = &r.result.stats;
    if let Some(src) = &r.records {
        // Rebuilt from records: what they hold, not a drill's settings they do not carry.
        let _ = writeln!(
            out,
            "<p class=\"meta\">{}</p>\n</header>",
            xml_escape(&src.describe())
        );
        out.push_str("<div id=\"render-error\" class=\"render-error\" hidden></div>\n");
        out.push_str(NOSCRIPT);
        return;
    }
    let phase_names: Vec<String> = tl.phases.iter().map(|p| xml_escape(&p.name)).collect();
    let workloads: Vec<String> = groups
        .iter()
        .map(|g| {
            format!(
                "<span class=\"swatch\" style=\"background:{}\"></span>{}",
                g.color,
                xml_escape(&g.name)
            )
        })
        .collect();
    let _ = writeln!(
        out,
        "<p class=\"meta\">{} · phases {} · baseline {} · {:.1} s · seed {} · target <code>{}</code></p>\n</header>",
        workloads.join(" "),
        phase_names.join(" → "),
        r.baseline
            .as_deref()
            .map_or("none".to_owned(), |b| format!("<code>{}</code>", xml_escape(b))),
        s.elapsed_s,
        s.seed,
        xml_escape(&s.target),
    );
    out.push_str("<div id=\"render-error\" class=\"render-error\" hidden></div>\n");
    out.push_str(NOSCRIPT);
}

const NOSCRIPT: &str = "<noscript><p class=\"muted\">Scripts are off: the tables below are complete, the charts need JavaScript.</p></noscript>\n";

fn objectives(out: &mut String, r: &DrillReport) {
    out.push_str("<section id=\"objectives\"><h2>Objectives</h2>\n");
    if r.slo.is_empty() {
        out.push_str("<p class=\"muted\">The scenario sets no objectives.</p></section>\n");
        return;
    }
    out.push_str("<table class=\"text-table\"><tr><th>scope</th><th>SLO</th><th>result</th><th>detail</th></tr>\n");
    for c in &r.slo {
        let _ = writeln!(
            out,
            "<tr class=\"{}\"><td>{}</td><td>{}</td><td class=\"{}\">{}</td><td class=\"text\">{}</td></tr>",
            if c.passed { "" } else { "broken" },
            xml_escape(&c.scope),
            xml_escape(&c.slo),
            if c.passed { "pass" } else { "fail" },
            if c.passed { "pass" } else { "FAIL" },
            xml_escape(&c.message)
        );
    }
    out.push_str("</table></section>\n");
}

// ---------------------------------------------------------------------------
// Time axis
// ---------------------------------------------------------------------------

struct Span {
    name: String,
    start_s: f64,
    end_s: f64,
}

/// Phases on the drill's clock, and how far the charts' time axis reaches.
struct Timeline {
    phases: Vec<Span>,
    x_max: f64,
    /// When the first request was sent: the fault accounting counts from the
    /// first proxy record, which is that request.
    t_first: f64,
}

impl Timeline {
    fn of(r: &DrillReport) -> Self {
        let mut t = 0.0;
        let phases: Vec<Span> = r
            .result
            .stats
            .phases
            .iter()
            .map(|p| {
                let s = Span {
                    name: p.name.clone(),
                    start_s: t,
                    end_s: t + p.duration_s.max(0.0),
                };
                t = s.end_s;
                s
            })
            .collect();
        let planned = t;
        let pts = &r.result.points;
        let t_first = pts.iter().map(|p| p.t_s).reduce(f64::min).unwrap_or(0.0);
        let t_last = pts.iter().map(|p| p.t_s).fold(0.0, f64::max);
        let faults_end = r.chaos.as_ref().map_or(0.0, |c| {
            c.timeline
                .iter()
                .map(|s| t_first + s.bucket_s * s.applied.len() as f64)
                .fold(0.0, f64::max)
        });
        let elapsed = r.result.stats.elapsed_s;
        // A stopped drill ran less than its plan; faults applied to the last
        // retries may land a little after the plan's end.
        let ran = if r.result.stopped.is_some() || planned <= 0.0 {
            elapsed
        } else {
            planned
        };
        let x_max = round(ran.max(t_last).max(faults_end.min(elapsed)), 3);
        Self {
            phases,
            x_max: if x_max > 0.0 { x_max } else { 1.0 },
            t_first,
        }
    }

    /// The phase `t` falls in (the last for times past the plan).
    fn phase_of(&self, t: f64) -> usize {
        self.phases
            .iter()
            .position(|p| t < p.end_s)
            .unwrap_or(self.phases.len().saturating_sub(1))
    }

    /// Windows of about `width` seconds inside each phase, none crossing a phase
    /// boundary: `(phase, start, end)`.
    fn windows(&self, width: f64) -> Vec<(usize, f64, f64)> {
        let mut out = Vec::new();
        let spans: Vec<(f64, f64)> = if self.phases.is_empty() {
            vec![(0.0, self.x_max)]
        } else {
            self.phases
                .iter()
                .map(|p| (p.start_s, p.end_s.min(self.x_max.max(p.start_s))))
                .collect()
        };
        for (i, (a, b)) in spans.into_iter().enumerate() {
            let len = b - a;
            if len <= 0.0 {
                continue;
            }
            let n = (len / width).round().max(1.0);
            let w = len / n;
            for k in 0..n as usize {
                out.push((i, a + w * k as f64, a + w * (k + 1) as f64));
            }
        }
        out
    }
}

fn phase_strip(out: &mut String, tl: &Timeline, baseline: Option<&str>) {
    if tl.phases.is_empty() {
        return;
    }
    out.push_str("<div class=\"phases\">");
    for (i, p) in tl.phases.iter().enumerate() {
        let len = (p.end_s - p.start_s).max(0.0);
        let _ = write!(
            out,
            "<div class=\"band b{}{}\" style=\"flex-grow:{:.3}\" title=\"{}\"><b>{}</b> <span>{:.0}–{:.0} s{}</span></div>",
            i % 4,
            if Some(p.name.as_str()) == baseline { " base" } else { "" },
            len.max(tl.x_max * 0.04),
            xml_escape(&p.name),
            xml_escape(&p.name),
            p.start_s,
            p.end_s,
            if Some(p.name.as_str()) == baseline { " · baseline" } else { "" },
        );
    }
    out.push_str("</div>\n");
}

// ---------------------------------------------------------------------------
// Workloads
// ---------------------------------------------------------------------------

/// One section of the report: a workload, or all requests when the report does
/// not know its workloads (rebuilt from records).
struct Group<'a> {
    index: usize,
    name: String,
    color: &'static str,
    info: Option<&'a WorkloadInfo>,
    stats: &'a DrillResult,
    stream: bool,
    points: Vec<&'a Point>,
}

fn groups(r: &DrillReport) -> Vec<Group<'_>> {
    let res = &r.result;
    if res.workloads.is_empty() {
        let stream = res.stats.stream || res.points.iter().any(|p| p.ttft_ms.is_some());
        return vec![Group {
            index: 0,
            name: "all requests".to_owned(),
            color: workload_color(0),
            info: None,
            stats: &res.stats,
            stream,
            points: res.points.iter().collect(),
        }];
    }
    let single = res.workloads.len() == 1;
    res.workloads
        .iter()
        .enumerate()
        .map(|(i, w)| {
            let stats = res
                .by_workload
                .iter()
                .find(|b| b.name == w.name)
                .or_else(|| res.by_workload.get(i))
                .map(|b| &b.stats)
                .unwrap_or(&res.stats);
            let points: Vec<&Point> = res
                .points
                .iter()
                .filter(|p| p.workload == i || (single && p.workload >= res.workloads.len()))
                .collect();
            Group {
                index: i,
                name: w.name.clone(),
                color: workload_color(i),
                info: Some(w),
                stats,
                stream: w.stream || points.iter().any(|p| p.ttft_ms.is_some()),
                points,
            }
        })
        .collect()
}

fn workload_section(
    out: &mut String,
    charts: &mut Vec<ChartSpec>,
    r: &DrillReport,
    tl: &Timeline,
    g: &Group<'_>,
) {
    let _ = writeln!(
        out,
        "<section class=\"workload\" id=\"workload-{i}\" data-workload=\"{name}\" style=\"--wl:{color}\">\n\
         <h2><span class=\"swatch\" style=\"background:{color}\"></span>Workload <code>{name}</code></h2>",
        i = g.index,
        name = xml_escape(&g.name),
        color = g.color,
    );
    if let Some(w) = g.info {
        let _ = writeln!(
            out,
            "<p class=\"muted\">{} <code>POST {}</code>{}{} · {}</p>",
            xml_escape(&w.api),
            xml_escape(&w.path),
            if w.model.is_empty() {
                String::new()
            } else {
                format!(" · model <code>{}</code>", xml_escape(&w.model))
            },
            if w.stream { " · streaming" } else { "" },
            xml_escape(&w.arrival),
        );
    } else {
        let _ = writeln!(
            out,
            "<p class=\"muted\">Rebuilt from proxy records, which do not say which workload sent a request: every request is charted here.</p>"
        );
    }
    workload_table(out, g.stats, r.baseline.as_deref(), g.stream);

    let id = format!("w{}", g.index);
    out.push_str("<div class=\"grid\">\n");
    let rate = g.points.len() as f64 / tl.x_max.max(1e-3);
    let width = (tl.x_max / MAX_WINDOWS)
        .max(REQUESTS_PER_WINDOW / rate.max(1e-3))
        .max(0.5);
    let windows = tl.windows(width);
    let mut add = |spec: ChartSpec, caption: &str| {
        figure(out, &spec, caption);
        charts.push(spec);
    };
    let e2e: Vec<(f64, f64, bool)> = g.points.iter().map(|p| (p.t_s, p.e2e_ms, p.ok)).collect();
    add(
        latency_chart(
            &id,
            ("e2e", "e2e latency"),
            g.color,
            &e2e,
            &windows,
            (0.95, "p95"),
        ),
        "End-to-end latency (each dot a request, line: p95 per window)",
    );
    if g.stream {
        let pick = |f: fn(&Point) -> Option<f64>| -> Vec<(f64, f64, bool)> {
            g.points
                .iter()
                .filter_map(|p| f(p).map(|v| (p.t_s, v, p.ok)))
                .collect()
        };
        add(
            latency_chart(
                &id,
                ("ttft", "TTFT"),
                g.color,
                &pick(|p| p.ttft_ms),
                &windows,
                (0.95, "p95"),
            ),
            "Time to first token, TTFT (line: p95 per window)",
        );
        add(
            itl_chart(&id, g),
            "Inter-token latency, ITL: each request's median and longest gap",
        );
        add(
            latency_chart(
                &id,
                ("tpot", "TPOT"),
                g.color,
                &pick(|p| p.tpot_ms),
                &windows,
                (0.5, "p50"),
            ),
            "Time per output token, TPOT (line: p50 per window)",
        );
    }
    add(
        error_chart(&id, g, &windows, tl),
        "Error rate per window and per phase (axis scaled to the data)",
    );
    out.push_str("</div>\n</section>\n");
}

fn figure(out: &mut String, spec: &ChartSpec, caption: &str) {
    let _ = writeln!(
        out,
        "<figure class=\"chart{}\" data-kind=\"{}\"><figcaption>{}</figcaption><div class=\"plot\" id=\"chart-{}\"></div></figure>",
        if spec.kind == "faults" { " wide" } else { "" },
        spec.kind,
        xml_escape(caption),
        xml_escape(&spec.id),
    );
}

// ---------------------------------------------------------------------------
// Tables
// ---------------------------------------------------------------------------

/// Milliseconds for people: `850 µs`, `4.2 ms`, `123 ms`, `1.23 s`.
fn fmt_ms(ms: f64) -> String {
    let a = ms.abs();
    if !ms.is_finite() {
        "–".to_owned()
    } else if a < 1.0 {
        format!("{:.0} µs", ms * 1000.0)
    } else if a < 10.0 {
        format!("{ms:.1} ms")
    } else if a < 1000.0 {
        format!("{ms:.0} ms")
    } else if a < 100_000.0 {
        format!("{:.2} s", ms / 1000.0)
    } else {
        format!("{:.0} s", ms / 1000.0)
    }
}

/// A rate as a percentage with the precision small rates need: `0.24%`, `12.5%`.
fn fmt_rate(rate: f64) -> String {
    let pct = rate * 100.0;
    if pct == 0.0 {
        "0%".to_owned()
    } else if pct < 1.0 {
        format!("{pct:.2}%")
    } else {
        format!("{pct:.1}%")
    }
}

/// How much worse a latency is than the baseline's, coloured by direction:
/// `+230 ms ×3.1`.
fn latency_delta(v: f64, base: f64) -> String {
    let d = v - base;
    let ratio = if base > 0.0 { v / base } else { f64::NAN };
    // Under a millisecond is noise for a drill, whatever the ratio.
    let class = if d.abs() < 1.0 {
        "same"
    } else if ratio > 1.1 {
        "worse"
    } else if ratio < 0.9 {
        "better"
    } else {
        "same"
    };
    let ratio = if !ratio.is_finite() {
        String::new()
    } else if ratio >= 10.0 {
        format!(" ×{ratio:.0}")
    } else {
        format!(" ×{ratio:.1}")
    };
    format!(
        "<span class=\"delta {class}\">{}{}{ratio}</span>",
        if d < 0.0 { "−" } else { "+" },
        fmt_ms(d.abs())
    )
}

fn rate_delta(v: f64, base: f64) -> String {
    let pp = (v - base) * 100.0;
    let class = if pp > 0.05 {
        "worse"
    } else if pp < -0.05 {
        "better"
    } else {
        "same"
    };
    let digits = if pp.abs() < 1.0 { 2 } else { 1 };
    format!(
        "<span class=\"delta {class}\">{}{:.*} pp</span>",
        if pp < 0.0 { "−" } else { "+" },
        digits,
        pp.abs()
    )
}

type Pick = fn(&PhaseStats) -> Option<&Percentiles>;
/// A latency column: heading, which distribution, which percentile.
type Col = (&'static str, Pick, fn(&Percentiles) -> f64);

fn workload_table(out: &mut String, stats: &DrillResult, baseline: Option<&str>, stream: bool) {
    let base = baseline.and_then(|b| stats.phase(b));
    let all: [Col; 8] = [
        ("e2e p50", |p| p.e2e.as_ref(), |x| x.p50_ms),
        ("e2e p95", |p| p.e2e.as_ref(), |x| x.p95_ms),
        ("e2e p99", |p| p.e2e.as_ref(), |x| x.p99_ms),
        ("TTFT p50", |p| p.ttft.as_ref(), |x| x.p50_ms),
        ("TTFT p95", |p| p.ttft.as_ref(), |x| x.p95_ms),
        ("TPOT p50", |p| p.tpot.as_ref(), |x| x.p50_ms),
        ("TPOT p95", |p| p.tpot.as_ref(), |x| x.p95_ms),
        ("ITL p95", |p| p.itl.as_ref(), |x| x.p95_ms),
    ];
    let cols = &all[..if stream { all.len() } else { 3 }];
    out.push_str("<table class=\"phases-table\"><tr><th>phase</th><th>requests</th><th>errors</th><th>error rate</th>");
    for (h, _, _) in cols {
        let _ = write!(out, "<th>{h}</th>");
    }
    out.push_str("<th>ok/s</th><th>error kinds</th></tr>\n");
    let rows: Vec<&PhaseStats> = if stats.phases.len() > 1 {
        stats
            .phases
            .iter()
            .chain(std::iter::once(&stats.total))
            .collect()
    } else {
        stats.phases.iter().collect()
    };
    let rows = if rows.is_empty() {
        vec![&stats.total]
    } else {
        rows
    };
    for p in rows {
        let is_base = base.is_some_and(|b| std::ptr::eq(b, p));
        let is_total = std::ptr::eq(p, &stats.total);
        let cmp = base.filter(|_| !is_base && !is_total);
        let _ = write!(
            out,
            "<tr class=\"{}\"><td>{}{}</td><td>{}</td><td>{}</td><td>{}{}</td>",
            if is_total {
                "total"
            } else if is_base {
                "base"
            } else {
                ""
            },
            xml_escape(&p.name),
            if is_base {
                " <span class=\"muted\">(baseline)</span>"
            } else {
                ""
            },
            p.requests,
            p.errors,
            fmt_rate(p.error_rate),
            cmp.map_or(String::new(), |b| format!(
                "<br>{}",
                rate_delta(p.error_rate, b.error_rate)
            )),
        );
        for (_, pick, f) in cols {
            let v = pick(p).map(f);
            let d = match (v, cmp.and_then(|b| pick(b).map(f))) {
                (Some(v), Some(b)) => format!("<br>{}", latency_delta(v, b)),
                _ => String::new(),
            };
            let _ = write!(out, "<td>{}{d}</td>", v.map_or("–".to_owned(), fmt_ms));
        }
        let kinds: Vec<String> = p
            .errors_by_kind
            .iter()
            .filter(|(_, n)| **n > 0)
            .map(|(k, n)| {
                if k == "http_error" && !p.http_statuses.is_empty() {
                    let codes: Vec<String> = p
                        .http_statuses
                        .iter()
                        .map(|(c, n)| format!("{c}×{n}"))
                        .collect();
                    format!("{k} {n} ({})", codes.join(", "))
                } else {
                    format!("{k} {n}")
                }
            })
            .collect();
        let _ = writeln!(
            out,
            "<td>{:.1}</td><td class=\"text\">{}</td></tr>",
            p.throughput_rps,
            if kinds.is_empty() {
                "–".to_owned()
            } else {
                xml_escape(&kinds.join(", "))
            }
        );
    }
    out.push_str("</table>\n");
    if base.is_some() {
        out.push_str("<p class=\"note muted\">Below each number: the difference from the baseline phase (latency: added time and ratio; error rate: percentage points).</p>\n");
    }
}

/// Goodput, retries and correctness per phase, over all workloads (the engine
/// counts them so); correctness only where something was scored.
fn phases_table(out: &mut String, r: &DrillReport) {
    let res = &r.result;
    type Metric = (
        &'static str,
        fn(&crate::correct::Correctness) -> Option<f64>,
        bool,
    );
    let cols: [Metric; 5] = [
        ("expect pass", |c| c.expect_pass_rate, true),
        ("answer match", |c| c.answer_match, true),
        ("cosine similarity", |c| c.cosine_similarity, false),
        ("recall@k", |c| c.recall_at_k, false),
        ("rank overlap", |c| c.rank_overlap, false),
    ];
    let shown: Vec<&Metric> = cols
        .iter()
        .filter(|(_, f, _)| {
            res.phases
                .iter()
                .chain([&res.total])
                .any(|e| f(&e.correctness).is_some())
        })
        .collect();
    out.push_str("<section id=\"goodput\"><h2>Goodput and retries per phase <small class=\"muted\">(all workloads)</small></h2>\n<table><tr><th>phase</th><th>requests</th><th>goodput</th><th>HTTP attempts</th><th>retry amplification</th></tr>\n");
    let requests = |name: &str| {
        res.stats
            .phases
            .iter()
            .chain([&res.stats.total])
            .find(|p| p.name == name)
            .map_or(0, |p| p.requests)
    };
    for e in crate::gate::phase_rows(r) {
        let _ = writeln!(
            out,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            xml_escape(&e.name),
            requests(&e.name),
            e.goodput_text(),
            e.attempts,
            e.amplification_text()
        );
    }
    out.push_str("</table>\n");
    if !shown.is_empty() {
        out.push_str("<h2>Correctness per phase <small class=\"muted\">(all workloads, against the baseline's answers)</small></h2>\n<table><tr><th>phase</th>");
        for (h, _, _) in &shown {
            let _ = write!(out, "<th>{h}</th>");
        }
        out.push_str("</tr>\n");
        for e in crate::gate::phase_rows(r) {
            let _ = write!(out, "<tr><td>{}</td>", xml_escape(&e.name));
            for (_, f, pct) in &shown {
                let cell = match f(&e.correctness) {
                    None => "–".to_owned(),
                    Some(v) if *pct => format!("{:.1}%", v * 100.0),
                    Some(v) => format!("{v:.3}"),
                };
                let _ = write!(out, "<td>{cell}</td>");
            }
            out.push_str("</tr>\n");
        }
        out.push_str("</table>\n");
    }
    out.push_str("</section>\n");
}

/// The fault accounting as an HTML section: idle rules, then the table.
pub fn chaos_html(c: &ChaosSummary) -> String {
    let mut out = String::from("<section id=\"faults\"><h2>Faults per phase and rule</h2>\n");
    let idle = c.idle_lines();
    if !idle.is_empty() {
        let _ = writeln!(
            out,
            "<p class=\"idle\"><b>{}</b></p>\n<ul>",
            if c.inconclusive() {
                "Inconclusive: the chaos did not happen as the profile says"
            } else {
                "Idle rules (allowed by allow_idle_rules)"
            }
        );
        for l in &idle {
            let _ = writeln!(out, "<li>{}</li>", xml_escape(l));
        }
        out.push_str("</ul>\n");
    }
    let (head, rows) = c.rows();
    // Counts right-aligned, as in `summary.md`; names and reasons read left.
    let numeric = |i: usize| (2..=4).contains(&i) || i == 6;
    out.push_str("<table><tr>");
    for (i, h) in head.iter().enumerate() {
        let class = if numeric(i) { "" } else { " class=\"text\"" };
        let _ = write!(out, "<th{class}>{}</th>", xml_escape(h));
    }
    out.push_str("</tr>\n");
    for row in rows {
        out.push_str("<tr>");
        for (i, cell) in row.iter().enumerate() {
            let class = if i + 1 == row.len() && cell == "IDLE" {
                " class=\"idle text\""
            } else if numeric(i) {
                ""
            } else {
                " class=\"text\""
            };
            let _ = write!(out, "<td{class}>{}</td>", xml_escape(cell));
        }
        out.push_str("</tr>\n");
    }
    out.push_str("</table>\n");
    let _ = writeln!(
        out,
        "<p>Counted from {} ({} exchanges): matched = the rule's conditions held; decided = drawn by its probability or schedule; skipped = decided but not applied, by reason.{}</p>\n</section>",
        xml_escape(&c.source),
        c.exchanges,
        c.note
            .as_ref()
            .map_or(String::new(), |n| format!(" Note: {}.", xml_escape(n)))
    );
    out
}

/// The cost of chaos per phase (present only when the scenario gives `cost`).
pub fn cost_html(c: &crate::cost::ChaosCost) -> String {
    let mut out = String::from("<section id=\"cost\"><h2>Cost of chaos</h2>\n<table><tr>");
    let (head, rows) = c.rows();
    for (i, h) in head.iter().enumerate() {
        let class = if i == 0 { " class=\"text\"" } else { "" };
        let _ = write!(out, "<th{class}>{}</th>", xml_escape(h));
    }
    out.push_str("</tr>\n");
    for row in rows {
        out.push_str("<tr>");
        for (i, cell) in row.iter().enumerate() {
            let class = if i == 0 { " class=\"text\"" } else { "" };
            let _ = write!(out, "<td{class}>{}</td>", xml_escape(cell));
        }
        out.push_str("</tr>\n");
    }
    out.push_str("</table>\n<p>Tokens the upstream billed (input/output): an injected error or a refused request costs nothing. <i>Wasted</i> = billed on retries or on answers that failed or were cut off, each exchange once; GPU time is shared out by output tokens.");
    if let Some(n) = c.note() {
        let _ = write!(out, " Note: {}.", xml_escape(&n));
    }
    out.push_str("</p>\n</section>\n");
    out
}

// ---------------------------------------------------------------------------
// Chart data
// ---------------------------------------------------------------------------

#[derive(Serialize)]
struct PageData {
    x_max: f64,
    baseline: Option<String>,
    phases: Vec<PhaseBand>,
    error_color: &'static str,
    charts: Vec<ChartSpec>,
}

#[derive(Serialize)]
struct PhaseBand {
    name: String,
    start_s: f64,
    end_s: f64,
}

/// One uPlot chart: the page script aligns the series on one time axis
/// (`uPlot.join`), where `null` is a gap (a phase boundary) and a time missing
/// from a series is skipped over.
#[derive(Serialize)]
struct ChartSpec {
    id: String,
    kind: &'static str,
    y_label: String,
    /// `ms`, `%` or `/s`: how values and ticks are written.
    unit: &'static str,
    log: bool,
    /// A fixed y range; `None` lets uPlot fit the data from zero.
    y_range: Option<[f64; 2]>,
    series: Vec<SeriesSpec>,
}

#[derive(Serialize)]
struct SeriesSpec {
    label: String,
    /// `points` (a scatter: no line, so nothing joins phases), `line` or `step`.
    style: &'static str,
    color: String,
    fill: Option<String>,
    dash: bool,
    x: Vec<f64>,
    y: Vec<Option<f64>>,
}

fn round(v: f64, digits: i32) -> f64 {
    let m = 10f64.powi(digits);
    (v * m).round() / m
}

/// `c` mixed with black (`k` < 0) or white (`k` > 0), as `#rrggbb`.
fn shade(c: &str, k: f64) -> String {
    let n = u32::from_str_radix(c.trim_start_matches('#'), 16).unwrap_or(0);
    let ch = |s: u32| -> u32 {
        let v = f64::from((n >> s) & 0xff);
        let v = if k < 0.0 {
            v * (1.0 + k)
        } else {
            v + (255.0 - v) * k
        };
        v.round().clamp(0.0, 255.0) as u32
    };
    format!("#{:02x}{:02x}{:02x}", ch(16), ch(8), ch(0))
}

/// `c` at opacity `a`, as `rgba(...)`.
fn alpha(c: &str, a: f64) -> String {
    let n = u32::from_str_radix(c.trim_start_matches('#'), 16).unwrap_or(0);
    format!(
        "rgba({},{},{},{a})",
        (n >> 16) & 0xff,
        (n >> 8) & 0xff,
        n & 0xff
    )
}

/// Nearest-rank quantile of sorted values.
fn quantile(sorted: &[f64], q: f64) -> Option<f64> {
    if sorted.is_empty() {
        return None;
    }
    let i = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len()) - 1;
    sorted.get(i).copied()
}

fn scatter(label: &str, color: &str, pts: &[(f64, f64)]) -> SeriesSpec {
    let mut pts: Vec<(f64, f64)> = pts.to_vec();
    pts.sort_by(|a, b| a.0.total_cmp(&b.0));
    SeriesSpec {
        label: label.to_owned(),
        style: "points",
        color: color.to_owned(),
        fill: None,
        dash: false,
        x: pts.iter().map(|p| round(p.0, 4)).collect(),
        y: pts.iter().map(|p| Some(round(p.1, 3))).collect(),
    }
}

/// A line through per-window values, broken (`null`) at every phase boundary and
/// wherever a window has too few values to say anything.
fn windowed(
    label: &str,
    color: String,
    style: &'static str,
    windows: &[(usize, f64, f64)],
    value: impl Fn(f64, f64) -> Option<f64>,
) -> SeriesSpec {
    let mut x = Vec::new();
    let mut y = Vec::new();
    let mut last_phase = None;
    for &(phase, a, b) in windows {
        if last_phase.is_some_and(|p| p != phase) {
            // A gap exactly at the boundary, so the next phase starts fresh.
            x.push(round(a - 1e-3, 4));
            y.push(None);
        }
        last_phase = Some(phase);
        let v = value(a, b).map(|v| round(v, 3));
        if style == "step" {
            x.push(round(a, 4));
            y.push(v);
            // Close the step at the window's end (just before the next window).
            x.push(round(b - 2e-3, 4));
            y.push(v);
        } else {
            x.push(round((a + b) / 2.0, 4));
            y.push(v);
        }
    }
    SeriesSpec {
        label: label.to_owned(),
        style,
        color,
        fill: None,
        dash: false,
        x,
        y,
    }
}

/// Each request as a dot (ok in the workload's colour, errors red), and a
/// quantile per window as a line that stops at every phase boundary.
fn latency_chart(
    id: &str,
    (kind, what): (&'static str, &str),
    color: &str,
    pts: &[(f64, f64, bool)],
    windows: &[(usize, f64, f64)],
    (q, qname): (f64, &str),
) -> ChartSpec {
    let ok: Vec<(f64, f64)> = pts.iter().filter(|p| p.2).map(|p| (p.0, p.1)).collect();
    let err: Vec<(f64, f64)> = pts.iter().filter(|p| !p.2).map(|p| (p.0, p.1)).collect();
    let mut sorted_ok: Vec<(f64, f64)> = ok.clone();
    sorted_ok.sort_by(|a, b| a.0.total_cmp(&b.0));
    let line = windowed(
        &format!("{qname} per window"),
        shade(color, -0.45),
        "line",
        windows,
        |a, b| {
            let lo = sorted_ok.partition_point(|p| p.0 < a);
            let hi = sorted_ok.partition_point(|p| p.0 < b);
            let mut v: Vec<f64> = sorted_ok[lo..hi].iter().map(|p| p.1).collect();
            if v.len() < 3 {
                return None;
            }
            v.sort_by(f64::total_cmp);
            quantile(&v, q)
        },
    );
    // A log axis when a few slow outliers (timeouts) would flatten everything else.
    let mut all: Vec<f64> = pts.iter().map(|p| p.1).filter(|v| *v > 0.0).collect();
    all.sort_by(f64::total_cmp);
    let log = match (quantile(&all, 0.5), all.last()) {
        (Some(m), Some(max)) => m > 0.0 && *max / m > 50.0,
        _ => false,
    };
    ChartSpec {
        id: format!("{id}-{kind}"),
        kind,
        y_label: format!("{what}, ms{}", if log { " (log)" } else { "" }),
        unit: "ms",
        log,
        y_range: None,
        series: vec![
            scatter("ok", color, &ok),
            scatter("error", ERROR_COLOR, &err),
            line,
        ],
    }
}

/// Medians say whether decoding slowed; the longest gap says whether a stream
/// stalled, which a median hides.
fn itl_chart(id: &str, g: &Group<'_>) -> ChartSpec {
    let med: Vec<(f64, f64)> = g
        .points
        .iter()
        .filter(|p| p.ok)
        .filter_map(|p| p.itl_p50_ms.map(|v| (p.t_s, v)))
        .collect();
    let max: Vec<(f64, f64)> = g
        .points
        .iter()
        .filter(|p| p.ok)
        .filter_map(|p| p.itl_max_ms.map(|v| (p.t_s, v)))
        .collect();
    let err: Vec<(f64, f64)> = g
        .points
        .iter()
        .filter(|p| !p.ok)
        .filter_map(|p| p.itl_max_ms.map(|v| (p.t_s, v)))
        .collect();
    let mut all: Vec<f64> = max
        .iter()
        .chain(&err)
        .map(|p| p.1)
        .filter(|v| *v > 0.0)
        .collect();
    all.sort_by(f64::total_cmp);
    let log = match (quantile(&all, 0.5), all.last()) {
        (Some(m), Some(top)) => m > 0.0 && *top / m > 50.0,
        _ => false,
    };
    ChartSpec {
        id: format!("{id}-itl"),
        kind: "itl",
        y_label: format!("gap, ms{}", if log { " (log)" } else { "" }),
        unit: "ms",
        log,
        y_range: None,
        series: vec![
            scatter("median gap", g.color, &med),
            scatter("longest gap", &shade(g.color, 0.55), &max),
            scatter("longest gap (error)", ERROR_COLOR, &err),
        ],
    }
}

/// The y axis top for rates in %: the data's largest value with headroom,
/// rounded to 1, 2 or 5 × 10^k, and never under 0.5% so a lone 0.24% still
/// reads as small, not as a full-height bar.
fn rate_axis_max(max_pct: f64) -> f64 {
    let v = (max_pct * 1.15).max(0.5);
    let e = 10f64.powf(v.log10().floor());
    let step = [1.0, 2.0, 2.5, 5.0, 10.0]
        .iter()
        .map(|m| m * e)
        .find(|s| *s >= v)
        .unwrap_or(10.0 * e);
    step.min(100.0)
}

fn error_chart(id: &str, g: &Group<'_>, windows: &[(usize, f64, f64)], tl: &Timeline) -> ChartSpec {
    let mut pts: Vec<(f64, bool)> = g.points.iter().map(|p| (p.t_s, p.ok)).collect();
    pts.sort_by(|a, b| a.0.total_cmp(&b.0));
    let rate_in = |a: f64, b: f64| -> Option<f64> {
        let lo = pts.partition_point(|p| p.0 < a);
        let hi = pts.partition_point(|p| p.0 < b);
        let n = hi - lo;
        if n == 0 {
            return None;
        }
        let e = pts[lo..hi].iter().filter(|p| !p.1).count();
        Some(100.0 * e as f64 / n as f64)
    };
    let mut per_window = windowed(
        "per window",
        ERROR_COLOR.to_owned(),
        "step",
        windows,
        rate_in,
    );
    per_window.fill = Some(alpha(ERROR_COLOR, 0.18));
    // The phase's own rate, from its statistics, as a flat dashed line.
    let phase_windows: Vec<(usize, f64, f64)> = tl
        .phases
        .iter()
        .enumerate()
        .map(|(i, p)| (i, p.start_s, p.end_s.min(tl.x_max.max(p.start_s))))
        .filter(|w| w.2 > w.1)
        .collect();
    let phase_rate = |a: f64, _b: f64| -> Option<f64> {
        let i = tl.phase_of(a);
        let p = g.stats.phases.get(i)?;
        (p.requests > 0).then_some(p.error_rate * 100.0)
    };
    let mut per_phase = windowed(
        "phase mean",
        shade(ERROR_COLOR, -0.4),
        "step",
        &phase_windows,
        phase_rate,
    );
    per_phase.dash = true;
    let top = per_window
        .y
        .iter()
        .chain(&per_phase.y)
        .flatten()
        .fold(0.0, |a: f64, b| a.max(*b));
    ChartSpec {
        id: format!("{id}-errors"),
        kind: "errors",
        y_label: "failed, %".to_owned(),
        unit: "%",
        log: false,
        y_range: Some([0.0, rate_axis_max(top)]),
        series: vec![per_window, per_phase],
    }
}

fn faults_chart(c: &ChaosSummary, tl: &Timeline) -> ChartSpec {
    let series = c
        .timeline
        .iter()
        .enumerate()
        .map(|(i, s)| {
            let color = FAULT_COLORS[i % FAULT_COLORS.len()];
            let w = s.bucket_s.max(1e-3);
            let mut x = Vec::with_capacity(s.applied.len() * 2);
            let mut y = Vec::with_capacity(s.applied.len() * 2);
            for (k, n) in s.applied.iter().enumerate() {
                let a = tl.t_first + w * k as f64;
                let v = Some(round(*n as f64 / w, 3));
                x.push(round(a, 4));
                y.push(v);
                x.push(round(a + w - 2e-3, 4));
                y.push(v);
            }
            SeriesSpec {
                label: format!("{} · {}", s.rule, s.fault),
                style: "step",
                color: color.to_owned(),
                fill: Some(alpha(color, 0.22)),
                dash: false,
                x,
                y,
            }
        })
        .collect();
    ChartSpec {
        id: "faults".to_owned(),
        kind: "faults",
        y_label: "faults/s".to_owned(),
        unit: "/s",
        log: false,
        y_range: None,
        series,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::chaos::FaultSeries;
    use crate::engine::{EngineResult, PhaseExtra, WorkloadResult};
    use crate::sample::{Outcome, Sample};
    use crate::stats::PhaseAccumulator;
    use std::time::Duration;

    /// Two workloads (a streaming chat, a search) over two phases, the chat's
    /// TTFT tripled in the storm, and a fault timeline.
    pub(crate) fn two_workloads() -> DrillReport {
        let phases = [("calm", 0.0), ("storm <b>", 5.0)];
        let mut accs: Vec<Vec<PhaseAccumulator>> = (0..2)
            .map(|_| (0..2).map(|_| PhaseAccumulator::new().unwrap()).collect())
            .collect();
        let mut all_ph: Vec<PhaseAccumulator> =
            (0..2).map(|_| PhaseAccumulator::new().unwrap()).collect();
        let mut totals: Vec<PhaseAccumulator> =
            (0..3).map(|_| PhaseAccumulator::new().unwrap()).collect();
        let mut points = Vec::new();
        for i in 0..200u64 {
            let w = (i % 2) as usize;
            let t = i as f64 * 0.05;
            let phase = usize::from(t >= 5.0);
            let slow = if phase == 1 { 3 } else { 1 };
            let ok = !(phase == 1 && i % 20 == 1);
            let s = Sample {
                seq: i,
                phase,
                outcome: if ok {
                    Outcome::Ok
                } else {
                    Outcome::HttpError(429)
                },
                e2e: Duration::from_millis(if w == 0 { 400 * slow } else { 3 }),
                ttft: (w == 0).then(|| Duration::from_millis(100 * slow)),
                itl: if w == 0 {
                    vec![Duration::from_millis(10), Duration::from_millis(12 * slow)]
                } else {
                    Vec::new()
                },
                output_tokens: Some(if w == 0 { 16 } else { 1 }),
                tokens_source: None,
                input_tokens: None,
                send_lag: Duration::ZERO,
                answer: None,
                embedding: None,
                ids: None,
            };
            accs[w][phase].record(&s);
            all_ph[phase].record(&s);
            totals[w].record(&s);
            totals[2].record(&s);
            points.push(Point::of(t, w, &s));
        }
        let d = Duration::from_secs(5);
        let stats = |ph: &[PhaseAccumulator], total: &PhaseAccumulator| DrillResult {
            target: "http://127.0.0.1:1".into(),
            path: "/v1/chat/completions".into(),
            model: "m".into(),
            stream: true,
            rate_per_sec: 20.0,
            seed: 1,
            elapsed_s: 10.0,
            phases: phases
                .iter()
                .zip(ph)
                .map(|((n, _), a)| a.finish(n, d))
                .collect(),
            total: total.finish("all", Duration::from_secs(10)),
        };
        let extra = |n: &str| PhaseExtra {
            name: n.into(),
            goodput: 0.9,
            retry_amplification: 1.0,
            ..Default::default()
        };
        let result = EngineResult {
            stats: stats(&all_ph, &totals[2]),
            phases: phases.iter().map(|(n, _)| extra(n)).collect(),
            total: extra("all"),
            stopped: None,
            points,
            workloads: vec![
                WorkloadInfo {
                    name: "chat".into(),
                    api: "openai".into(),
                    path: "/v1/chat/completions".into(),
                    model: "m".into(),
                    stream: true,
                    arrival: "10/s Poisson".into(),
                },
                WorkloadInfo {
                    name: "search</script>".into(),
                    api: "qdrant".into(),
                    path: "/collections/docs/points/search".into(),
                    model: String::new(),
                    stream: false,
                    arrival: "10/s Poisson".into(),
                },
            ],
            by_workload: vec![
                WorkloadResult {
                    name: "chat".into(),
                    stats: stats(&accs[0], &totals[0]),
                },
                WorkloadResult {
                    name: "search</script>".into(),
                    stats: stats(&accs[1], &totals[1]),
                },
            ],
        };
        let chaos = ChaosSummary {
            source: "test".into(),
            exchanges: 200,
            timeline: vec![FaultSeries {
                rule: "throttle".into(),
                fault: "error".into(),
                bucket_s: 1.0,
                applied: vec![0, 0, 0, 0, 0, 2, 2, 2, 2, 2],
            }],
            ..Default::default()
        };
        DrillReport::judged(
            "demo <&>",
            Some("calm".into()),
            result,
            Vec::new(),
            Some(chaos),
        )
    }

    #[test]
    fn sections_charts_and_escaping() {
        let r = two_workloads();
        let html = render_html(&r).unwrap();
        assert!(html.starts_with("<!DOCTYPE html>"));
        assert_eq!(html.matches("<section class=\"workload\"").count(), 2);
        // chat: e2e, ttft, itl, tpot, errors; search: e2e, errors; the faults.
        assert_eq!(html.matches("<figure class=\"chart").count(), 8);
        assert_eq!(html.matches("data-kind=\"ttft\"").count(), 1);
        assert_eq!(html.matches("data-kind=\"faults\"").count(), 1);
        assert!(html.contains("demo &lt;&amp;&gt;"));
        assert!(html.contains("storm &lt;b&gt;"));
        // The user's `</script>` cannot close the data block.
        assert_eq!(html.matches("</script>").count(), 3);
        assert!(!html.contains("search</script>"));
        // Self-contained: nothing loaded from elsewhere.
        assert!(!html.contains("src="));
        assert!(!html.contains("href=\"http"));
        assert!(!UPLOT_JS.contains("</script"));
        assert!(!REPORT_JS.contains("</script"));
    }

    #[test]
    fn deltas_against_the_baseline() {
        let html = render_html(&two_workloads()).unwrap();
        // The chat's TTFT p95: 100 ms → 300 ms.
        assert!(html.contains("+200 ms ×3.0"), "{html}");
        // 429s: 1 in 10 search requests of the storm.
        assert!(html.contains("+10.0 pp") || html.contains("+9.8 pp"));
        assert!(html.contains("(baseline)"));
        assert!(html.contains("http_error 5 (429×5)"));
    }

    #[test]
    fn chart_data_splits_workloads_and_phases() {
        let r = two_workloads();
        let tl = Timeline::of(&r);
        let gs = groups(&r);
        assert_eq!(gs.len(), 2);
        assert_eq!(gs[0].points.len(), 100);
        assert!(gs[0].stream && !gs[1].stream);
        let w = tl.windows(1.0);
        assert_eq!(w.len(), 10);
        assert!(w
            .iter()
            .all(|(p, a, b)| (*p == 0) == (*b <= 5.0 + 1e-9) && a < b));
        let c = latency_chart(
            "w0",
            ("e2e", "x"),
            "#1f77b4",
            &[(1.0, 5.0, true)],
            &w,
            (0.95, "p95"),
        );
        // A gap between the phases: a null in the line, and no window across them.
        let line = &c.series[2];
        assert!(line.y.contains(&None));
        let e = error_chart("w1", &gs[1], &w, &tl);
        let [lo, hi] = e.y_range.unwrap();
        assert_eq!(lo, 0.0);
        assert!((10.0..=25.0).contains(&hi), "{hi}");
    }

    #[test]
    fn small_error_rates_get_a_small_axis() {
        assert_eq!(rate_axis_max(0.24), 0.5);
        assert_eq!(rate_axis_max(0.0), 0.5);
        assert_eq!(rate_axis_max(3.0), 5.0);
        assert_eq!(rate_axis_max(90.0), 100.0);
    }

    #[test]
    fn old_points_load() {
        let p: Point = serde_json::from_str(r#"{"t_s": 1.5, "e2e_ms": 20.0, "ok": true}"#).unwrap();
        assert_eq!(p.workload, 0);
        assert_eq!(p.ttft_ms, None);
        // And records-built reports (no workloads) get one section.
        let mut r = two_workloads();
        r.result.workloads.clear();
        r.result.by_workload.clear();
        let html = render_html(&r).unwrap();
        assert_eq!(html.matches("<section class=\"workload\"").count(), 1);
        assert!(html.contains("all requests"));
    }

    #[test]
    fn shades() {
        assert_eq!(shade("#ffffff", -0.5), "#808080");
        assert_eq!(shade("#000000", 0.5), "#808080");
        assert_eq!(alpha("#ff0000", 0.5), "rgba(255,0,0,0.5)");
    }
}
