//! `brownout drill` as CI runs it: the real binary on scenario files against
//! simulated upstreams, its exit codes (0 pass, 1 SLO broken, 2 invalid, 3
//! stopped), its `junit.xml` read by a real JUnit consumer (Python's
//! `junitparser`, as CI plugins do), and its `report.html` opened in headless
//! Chromium without a console error (report_html.rs checks its charts closely).
//!
//! With `BROWNOUT_SCREENSHOT=1` the report test also runs `brownout demo` and saves
//! its report as `docs/drill-report.png` (the picture in the README).

use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::Duration;

use brownout_integration_tests::browser::{launch, Cdp};
use brownout_integration_tests::*;
use serde_json::{json, Value};

const PROFILE: &str = "\
version: 1
name: ci-storm
phases:
  - name: calm
    duration: 1500ms
  - name: storm
    duration: 1500ms
    rules:
      - name: throttle
        match: {listener: llm}
        faults:
          - {type: error, preset: openai.rate_limit_requests}
      - name: thin
        match: {listener: vectors}
        faults:
          - {type: drop_results, fraction: 0.3}
";

fn scenario(extra: &str) -> String {
    format!(
        "\
version: 1
name: ci-drill
target: {{upstream: sim}}
profile: profile.yaml
seed: 11
workloads:
  - name: chat
    stream: true
    arrival: {{rate: 20/s}}
    client: {{retries: 0, timeout: 5s}}
  - name: search
    api: qdrant
    endpoint: search
    arrival: {{rate: 20/s}}
    client: {{retries: 0, timeout: 5s}}
baseline: calm
{extra}"
    )
}

/// Write the profile and a scenario into `dir`; returns the scenario's path.
fn setup(dir: &Path, extra: &str) -> PathBuf {
    std::fs::write(dir.join("profile.yaml"), PROFILE).unwrap();
    let path = dir.join("scenario.yaml");
    std::fs::write(&path, scenario(extra)).unwrap();
    path
}

async fn drill(scenario: &Path, report: &Path) -> Output {
    let out = tokio::process::Command::new(brownout_bin())
        .arg("drill")
        .arg(scenario)
        .arg("--report-dir")
        .arg(report)
        .env("RUST_LOG", "warn")
        .output();
    within(Duration::from_secs(60), "brownout drill", out)
        .await
        .expect("run brownout drill")
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drill_exit_codes_and_junit_read_by_junitparser() {
    let (pass, fail, stop, bad) = (
        TempDir::new(),
        TempDir::new(),
        TempDir::new(),
        TempDir::new(),
    );
    let p = setup(pass.path(), "slo:\n  error_rate: 1.0\n  recall_at_k: 0.5\n");
    let f = setup(
        fail.path(),
        "slo:\n  phases:\n    storm: {error_rate: 0.2, recall_at_k: 0.9}\n    calm: {error_rate: 0.05}\n",
    );
    let s = setup(
        stop.path(),
        "stop_when:\n  error_rate: {above: 0.3, for: 300ms}\n",
    );
    let b = setup(bad.path(), "slo:\n  error_rat: 0.1\n");
    let r = |d: &TempDir| d.path().join("report");
    let (rp, rf, rs, rb) = (r(&pass), r(&fail), r(&stop), r(&bad));
    let (po, fo, so, bo) = tokio::join!(
        drill(&p, &rp),
        drill(&f, &rf),
        drill(&s, &rs),
        drill(&b, &rb),
    );
    assert_eq!(po.status.code(), Some(0), "{}", text(&po.stderr));
    assert!(
        text(&po.stdout).contains("verdict: PASS"),
        "{}",
        text(&po.stdout)
    );
    assert_eq!(fo.status.code(), Some(1), "{}", text(&fo.stderr));
    assert!(
        text(&fo.stdout).contains("FAIL storm: error_rate"),
        "{}",
        text(&fo.stdout)
    );
    assert_eq!(so.status.code(), Some(3), "{}", text(&so.stderr));
    assert!(
        text(&so.stdout).contains("STOPPED: error rate"),
        "{}",
        text(&so.stdout)
    );
    // Invalid: no drill runs, the error names the file, line and column.
    assert_eq!(bo.status.code(), Some(2));
    let err = text(&bo.stderr);
    assert!(
        err.contains("scenario.yaml:18:3: unknown field `error_rat`"),
        "{err}"
    );
    assert!(err.contains("did you mean `error_rate`?"), "{err}");
    assert!(!bad.path().join("report").exists());

    // The failing drill's JUnit file, read by junitparser.
    let report: Value = serde_json::from_str(
        &std::fs::read_to_string(fail.path().join("report/report.json")).unwrap(),
    )
    .unwrap();
    let checks = report["slo"].as_array().unwrap();
    let broken: Vec<String> = checks
        .iter()
        .filter(|c| c["passed"] == false)
        .map(|c| {
            format!(
                "{}.{}",
                c["scope"].as_str().unwrap(),
                c["slo"].as_str().unwrap()
            )
        })
        .collect();
    assert_eq!(
        broken,
        ["storm.error_rate", "storm.recall_at_k"],
        "{checks:#?}"
    );
    let script = r#"
import json, sys
from junitparser import JUnitXml, Failure
xml = JUnitXml.fromfile(sys.argv[1])
out = {"suites": [], "cases": []}
for suite in xml:
    out["suites"].append({"name": suite.name, "tests": suite.tests, "failures": suite.failures, "errors": suite.errors})
    for case in suite:
        failed = [r.message for r in case.result if isinstance(r, Failure)]
        out["cases"].append({"classname": case.classname, "name": case.name, "failures": failed})
print(json.dumps(out))
"#;
    let out = std::process::Command::new(sdk_python())
        .args(["-c", script])
        .arg(fail.path().join("report/junit.xml"))
        .output()
        .expect("run junitparser");
    assert!(out.status.success(), "{}", text(&out.stderr));
    let parsed: Value = serde_json::from_slice(&out.stdout).unwrap();
    let suite = &parsed["suites"][0];
    assert_eq!(suite["name"], "ci-drill");
    assert_eq!(suite["tests"], json!(checks.len()));
    assert_eq!(suite["failures"], 2);
    assert_eq!(suite["errors"], 0);
    let failed: Vec<String> = parsed["cases"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| !c["failures"].as_array().unwrap().is_empty())
        .map(|c| {
            format!(
                "{}/{}",
                c["classname"].as_str().unwrap(),
                c["name"].as_str().unwrap()
            )
        })
        .collect();
    assert_eq!(
        failed,
        ["ci-drill.storm/error_rate", "ci-drill.storm/recall_at_k"]
    );

    // The stopped drill's JUnit file carries the stop as an error.
    let out = std::process::Command::new(sdk_python())
        .args(["-c", script])
        .arg(stop.path().join("report/junit.xml"))
        .output()
        .expect("run junitparser");
    let parsed: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(parsed["suites"][0]["errors"], 1, "{parsed}");
}

async fn open_report(cdp: &Cdp, html: &Path) {
    cdp.call("Runtime.enable", json!({})).await;
    cdp.call("Log.enable", json!({})).await;
    cdp.call("Page.enable", json!({})).await;
    cdp.call(
        "Emulation.setDeviceMetricsOverride",
        json!({"width": 1440, "height": 1000, "deviceScaleFactor": 1, "mobile": false}),
    )
    .await;
    cdp.call(
        "Page.navigate",
        json!({"url": format!("file://{}", html.display())}),
    )
    .await;
    cdp.wait_for(
        "document.readyState === 'complete'",
        Duration::from_secs(15),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn html_report_renders_in_chromium() {
    let dir = TempDir::new();
    let s = setup(
        dir.path(),
        "slo:\n  phases:\n    storm: {error_rate: 0.2}\n",
    );
    let out = drill(&s, &dir.path().join("report")).await;
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    let html = dir.path().join("report/report.html");

    let browser = launch().await;
    let cdp = Cdp::connect(&browser.page_ws().await).await;
    open_report(&cdp, &html).await;
    // Self-contained: uPlot and the data are inlined, nothing is loaded from
    // elsewhere; the page's script says whether its charts drew.
    cdp.wait_for(
        "document.body.dataset.rendered !== 'pending'",
        Duration::from_secs(15),
    )
    .await;
    assert_eq!(cdp.eval("document.body.dataset.rendered").await, "ok");
    let n_ext = cdp
        .eval("document.querySelectorAll('script[src], link[href], img[src]').length")
        .await;
    assert_eq!(n_ext, 0);
    // chat: e2e, TTFT, ITL, TPOT, errors; search: e2e, errors; faults over time.
    let n_charts = cdp.eval("document.querySelectorAll('.uplot').length").await;
    assert_eq!(n_charts, 8, "{n_charts}");
    let body = cdp.eval("document.body.innerText").await;
    let body = body.as_str().unwrap();
    for want in ["FAIL", "calm", "storm", "Correctness per phase", "recall@k"] {
        assert!(body.contains(want), "{want}");
    }
    let width = cdp.eval("document.documentElement.scrollWidth").await;
    assert!(
        width.as_u64().unwrap() <= 1440,
        "no horizontal overflow: {width}"
    );
    let png = cdp.screenshot().await;
    assert!(
        png.starts_with(b"\x89PNG") && png.len() > 10_000,
        "{}",
        png.len()
    );
    assert!(cdp.problems().is_empty(), "{:#?}", cdp.problems());

    if std::env::var_os("BROWNOUT_SCREENSHOT").is_some() {
        let demo = TempDir::new();
        let out = tokio::process::Command::new(brownout_bin())
            .args(["demo", "--report-dir"])
            .arg(demo.path())
            .env("RUST_LOG", "warn")
            .output()
            .await
            .unwrap();
        assert!(out.status.success(), "{}", text(&out.stderr));
        eprintln!("{}", text(&out.stdout));
        open_report(&cdp, &demo.path().join("report.html")).await;
        let path = repo_root().join("docs/drill-report.png");
        std::fs::write(&path, cdp.screenshot().await).unwrap();
        eprintln!("wrote {}", path.display());
    }
}
