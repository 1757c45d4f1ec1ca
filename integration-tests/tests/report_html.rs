//! `report.html` in a real browser: a short drill with two workloads (a streaming
//! chat and a vector search) against simulated upstreams, its report opened in
//! headless Chromium (`brownout_integration_tests::browser`, as the dashboard test
//! does). The uPlot charts must draw without a console error: one section per
//! workload, TTFT, ITL and TPOT for the streaming one only, and the faults
//! applied over time on the same time axis. A report rebuilt from the proxy's
//! records (no workloads known) must draw too. So must `capacity.html`: both its
//! charts, one line per phase searched.
//!
//! With `BROWNOUT_SCREENSHOT=1` the test also runs the shipped
//! `scenarios/demo.yaml` and saves its report as `docs/drill-report.png`.

use std::ffi::OsStr;
use std::path::Path;
use std::process::Output;
use std::time::Duration;

use brownout_integration_tests::browser::{launch, Browser, Cdp};
use brownout_integration_tests::*;
use serde_json::{json, Value};

const PROFILE: &str = "\
version: 1
name: html-storm
phases:
  - name: calm
    duration: 2s
  - name: storm
    duration: 2s
    rules:
      - name: throttle
        match: {listener: llm}
        probability: 0.3
        faults:
          - {type: error, preset: openai.rate_limit_requests}
      - name: slow-search
        match: {listener: vectors}
        faults:
          - {type: delay, duration: 40ms}
  - name: after
    duration: 1500ms
";

const SCENARIO: &str = "\
version: 1
name: html <report> & \"drill\"
target: {upstream: sim}
profile: profile.yaml
seed: 5
workloads:
  - name: chat
    stream: true
    max_tokens: 12
    arrival: {rate: 15/s}
    client: {retries: 0, timeout: 5s}
  - name: search
    api: qdrant
    endpoint: search
    arrival: {rate: 15/s}
    client: {retries: 0, timeout: 5s}
baseline: calm
slo:
  ttft_p95: 2s
";

async fn run(args: &[&OsStr]) -> Output {
    let out = tokio::process::Command::new(brownout_bin())
        .args(args)
        .env("RUST_LOG", "warn")
        .output();
    within(Duration::from_secs(90), "brownout", out)
        .await
        .expect("run brownout")
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// Headless Chromium and its page, with the console and page events on (the
/// browser is closed when the first is dropped).
async fn browser() -> (Browser, Cdp) {
    let browser = launch().await;
    let cdp = Cdp::connect(&browser.page_ws().await).await;
    cdp.call("Runtime.enable", json!({})).await;
    cdp.call("Log.enable", json!({})).await;
    cdp.call("Page.enable", json!({})).await;
    (browser, cdp)
}

/// Open `html` and wait until its script says it drew (or failed).
async fn open(cdp: &Cdp, html: &Path) {
    cdp.events.lock().unwrap().clear();
    cdp.call(
        "Page.navigate",
        json!({"url": format!("file://{}", html.display())}),
    )
    .await;
    cdp.wait_for(
        "document.readyState === 'complete' && !!document.body && document.body.dataset.rendered !== 'pending'",
        Duration::from_secs(20),
    )
    .await;
    assert_eq!(
        cdp.eval("document.body.dataset.rendered + ' ' + (document.body.dataset.error || '')")
            .await,
        "ok ",
        "the report's script failed"
    );
}

async fn count(cdp: &Cdp, selector: &str) -> u64 {
    cdp.eval(&format!(
        "document.querySelectorAll({}).length",
        Value::from(selector)
    ))
    .await
    .as_u64()
    .unwrap_or(0)
}

/// Whether the canvas of the chart matched by `selector` has drawn pixels.
async fn drawn(cdp: &Cdp, selector: &str) -> bool {
    cdp.eval(&format!(
        "(() => {{ const c = document.querySelector({}); if (!c) return false; \
         const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data; \
         let n = 0; for (let i = 3; i < d.length; i += 4) if (d[i] > 0) n++; return n > 500; }})()",
        Value::from(format!("{selector} canvas"))
    ))
    .await
        == Value::Bool(true)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn report_html_draws_per_workload_charts_in_chromium() {
    let dir = TempDir::new();
    std::fs::write(dir.path().join("profile.yaml"), PROFILE).unwrap();
    let scenario = dir.path().join("scenario.yaml");
    std::fs::write(&scenario, SCENARIO).unwrap();
    let report = dir.path().join("report");
    let out = run(&[
        "drill".as_ref(),
        scenario.as_os_str(),
        "--report-dir".as_ref(),
        report.as_os_str(),
    ])
    .await;
    assert!(
        matches!(out.status.code(), Some(0 | 1)),
        "{}",
        text(&out.stderr)
    );
    let html = report.join("report.html");
    let page = std::fs::read_to_string(&html).unwrap();
    // Self-contained: nothing to fetch, and the scenario's name escaped.
    assert!(!page.contains(" src=") && !page.contains("href=\"http"));
    assert!(page.contains("html &lt;report&gt; &amp; &quot;drill&quot;"));

    let (_browser, cdp) = browser().await;
    cdp.call(
        "Emulation.setDeviceMetricsOverride",
        json!({"width": 1400, "height": 1000, "deviceScaleFactor": 1, "mobile": false}),
    )
    .await;
    open(&cdp, &html).await;

    // One section per workload, in the scenario's order.
    assert_eq!(
        cdp.eval("Array.from(document.querySelectorAll('section.workload')).map(s => s.dataset.workload).join(',')")
            .await,
        "chat,search"
    );
    let chat = "section.workload[data-workload=chat]";
    let search = "section.workload[data-workload=search]";
    // The streaming workload: e2e, TTFT, ITL, TPOT and errors; the search: e2e
    // and errors; and the faults over time: 8 uPlot charts, each drawn.
    for kind in ["e2e", "ttft", "itl", "tpot", "errors"] {
        let sel = format!("{chat} figure[data-kind={kind}]");
        assert_eq!(count(&cdp, &format!("{sel} .uplot")).await, 1, "{sel}");
        assert!(drawn(&cdp, &sel).await, "{sel} drew nothing");
    }
    for kind in ["ttft", "itl", "tpot"] {
        assert_eq!(
            count(&cdp, &format!("{search} figure[data-kind={kind}]")).await,
            0,
            "a search has no {kind}"
        );
    }
    assert_eq!(count(&cdp, &format!("{search} .uplot")).await, 2);
    let faults = "#timeline figure[data-kind=faults]";
    assert_eq!(count(&cdp, &format!("{faults} .uplot")).await, 1);
    assert!(drawn(&cdp, faults).await, "the faults chart drew nothing");
    assert_eq!(count(&cdp, ".uplot").await, 8);
    assert_eq!(cdp.eval("document.body.dataset.charts").await, "8");
    // The faults chart has a series per rule and fault that applied.
    let legend = cdp
        .eval(&format!(
            "document.querySelector({}).textContent",
            Value::from(format!("{faults} .u-legend"))
        ))
        .await;
    let legend = legend.as_str().unwrap_or_default();
    assert!(
        legend.contains("throttle · error") && legend.contains("slow-search · delay"),
        "{legend}"
    );
    // The tables: TTFT columns for the chat only, deltas against the baseline.
    let chat_text = cdp
        .eval(&format!(
            "document.querySelector({}).innerText",
            Value::from(chat)
        ))
        .await;
    let chat_text = chat_text.as_str().unwrap_or_default();
    for want in [
        "TTFT p95",
        "TPOT p50",
        "calm (baseline)",
        "storm",
        "after",
        "×",
    ] {
        assert!(chat_text.contains(want), "{want} in {chat_text}");
    }
    assert!(!cdp
        .eval(&format!(
            "document.querySelector({}).innerText",
            Value::from(search)
        ))
        .await
        .as_str()
        .unwrap_or_default()
        .contains("TTFT"));
    // Nothing loaded from elsewhere, nothing wider than the window.
    assert_eq!(count(&cdp, "script[src], link[href], img[src]").await, 0);
    let width = cdp.eval("document.documentElement.scrollWidth").await;
    assert!(
        width.as_u64().unwrap_or(0) <= 1400,
        "horizontal overflow: {width}"
    );
    let problems = cdp.problems();
    assert!(problems.is_empty(), "console errors: {problems:#?}");

    // Rebuilt from the proxy's records: no workloads known, one section.
    let rebuilt = dir.path().join("rebuilt");
    let records = report.join("records.jsonl");
    let out = run(&[
        "report".as_ref(),
        records.as_os_str(),
        "--report-dir".as_ref(),
        rebuilt.as_os_str(),
    ])
    .await;
    assert!(
        matches!(out.status.code(), Some(0 | 1 | 4)),
        "{}",
        text(&out.stderr)
    );
    open(&cdp, &rebuilt.join("report.html")).await;
    assert_eq!(count(&cdp, "section.workload").await, 1);
    assert_eq!(
        count(&cdp, "#timeline figure[data-kind=faults] .uplot").await,
        1
    );
    let problems = cdp.problems();
    assert!(problems.is_empty(), "console errors: {problems:#?}");

    if std::env::var("BROWNOUT_SCREENSHOT").is_ok_and(|v| v == "1") {
        let demo = TempDir::new();
        let scenario = repo_root().join("scenarios/demo.yaml");
        let out = run(&[
            "drill".as_ref(),
            scenario.as_os_str(),
            "--report-dir".as_ref(),
            demo.path().as_os_str(),
        ])
        .await;
        assert!(
            matches!(out.status.code(), Some(0 | 1)),
            "{}",
            text(&out.stderr)
        );
        open(&cdp, &demo.path().join("report.html")).await;
        let png = cdp.screenshot().await;
        assert!(png.starts_with(b"\x89PNG"), "not a PNG");
        let path = repo_root().join("docs/drill-report.png");
        std::fs::write(&path, png).unwrap();
        eprintln!("wrote {}", path.display());
    }
}

/// `capacity.html` in a real browser: a short search on a slot-limited simulated
/// replica, at baseline and with a noisy neighbour, priced. Both charts must draw
/// (throughput and attainment against load, one line per phase) without a console
/// error, and the table must carry each phase with its prices.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn capacity_html_draws_both_charts_in_a_real_browser() {
    let dir = TempDir::new();
    std::fs::write(
        dir.path().join("profile.yaml"),
        "\
version: 1
name: slots
phases:
  - name: crowded
    duration: 1h
    rules:
      - name: replica
        match: {endpoint: chat}
        faults:
          - type: gpu_saturation
            slots: 4
            noisy_neighbor: 2
            step: {fit: {a_ms: 10, b_ms: 0, c_ms: 0}}
",
    )
    .unwrap();
    let scenario = dir.path().join("scenario.yaml");
    std::fs::write(
        &scenario,
        "\
version: 1
name: capacity <html> & \"chart\"
target: {upstream: sim}
profile: profile.yaml
seed: 3
workload:
  name: chat
  stream: true
  max_tokens: 8
  arrival: {concurrency: 1}
  client: {retries: 0, timeout: 10s}
slo:
  goodput: {ttft: 60ms}
capacity: {start: 1, max: 4, probe: 1s, probe_max: 2s, warmup: 300ms, attainment: 0.5, under: [baseline, crowded]}
cost: {gpu_hour: 2.5}
energy: {gpu: h100-80gb}
",
    )
    .unwrap();
    let report = dir.path().join("capacity");
    let out = run(&[
        "capacity".as_ref(),
        scenario.as_os_str(),
        "--report-dir".as_ref(),
        report.as_os_str(),
    ])
    .await;
    assert!(
        matches!(out.status.code(), Some(0 | 1)),
        "{}\n{}",
        text(&out.stdout),
        text(&out.stderr)
    );
    let html = report.join("capacity.html");
    let page = std::fs::read_to_string(&html).unwrap();
    assert!(!page.contains(" src=") && !page.contains("href=\"http"));
    assert!(page.contains("capacity &lt;html&gt; &amp; &quot;chart&quot;"));

    let (_browser, cdp) = browser().await;
    open(&cdp, &html).await;
    assert_eq!(count(&cdp, ".uplot").await, 2, "two charts");
    for id in ["#throughput", "#attainment"] {
        assert!(drawn(&cdp, id).await, "{id} drew nothing");
    }
    // One legend entry per phase on each chart.
    for phase in ["baseline", "crowded"] {
        let n = cdp
            .eval(&format!(
                "[...document.querySelectorAll('.u-legend th')].filter(e => e.textContent.trim() === {}).length",
                Value::from(phase)
            ))
            .await;
        assert_eq!(n.as_u64(), Some(2), "{phase} in both legends");
    }
    let table = cdp
        .eval("document.querySelector('table').innerText")
        .await
        .as_str()
        .unwrap_or_default()
        .to_owned();
    assert!(
        table.contains("cost / 1k requests") && table.contains("crowded"),
        "{table}"
    );
    assert_eq!(count(&cdp, "script[src], link[href], img[src]").await, 0);
    let problems = cdp.problems();
    assert!(problems.is_empty(), "console errors: {problems:#?}");
}
