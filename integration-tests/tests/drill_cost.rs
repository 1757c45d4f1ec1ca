//! The cost of chaos in `brownout drill` reports: the real binary runs a short
//! drill against the simulator with an injected 429 and a mid-stream error, and
//! the priced figures in report.json, summary.md and report.html follow from the
//! records: only tokens the upstream billed count (an injected 429 costs nothing),
//! and a drill without `cost` shows no cost at all rather than a zero.

use std::path::Path;
use std::time::Duration;

use brownout_integration_tests::*;
use serde_json::Value;

const PROFILE: &str = "\
version: 1
name: costly-storm
phases:
  - name: calm
    duration: 1500ms
  - name: storm
    duration: 2s
    rules:
      - name: throttle
        probability: 0.4
        faults:
          - {type: error, preset: openai.rate_limit_requests}
      - name: cut
        probability: 0.5
        faults:
          - {type: stream_error, after_tokens: 3}
";

fn scenario(extra: &str) -> String {
    format!(
        "\
version: 1
name: cost-drill
target: {{upstream: sim}}
profile: profile.yaml
seed: 5
workloads:
  - name: chat
    stream: true
    max_tokens: 16
    arrival: {{rate: 25/s}}
    client: {{retries: 2, timeout: 5s, honor_retry_after: false}}
baseline: calm
allow_idle_rules: true
{extra}"
    )
}

async fn drill(dir: &Path, extra: &str) -> (Value, String) {
    std::fs::write(dir.join("profile.yaml"), PROFILE).unwrap();
    let path = dir.join("scenario.yaml");
    std::fs::write(&path, scenario(extra)).unwrap();
    let out = tokio::process::Command::new(brownout_bin())
        .arg("drill")
        .arg(&path)
        .arg("--report-dir")
        .arg(dir.join("report"))
        .env("RUST_LOG", "warn")
        .output();
    let out = within(Duration::from_secs(60), "brownout drill", out)
        .await
        .expect("run brownout drill");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.code().is_some_and(|c| c != 2),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report = std::fs::read_to_string(dir.join("report/report.json")).unwrap();
    (serde_json::from_str(&report).unwrap(), stdout)
}

/// Input and output tokens of `v`'s `{input, output}`.
fn io(v: &Value) -> (u64, u64) {
    (v["input"].as_u64().unwrap(), v["output"].as_u64().unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chaos_is_priced_from_the_tokens_the_upstream_billed() {
    let dir = TempDir::new();
    let (report, stdout) = drill(
        dir.path(),
        "cost: {gpu_hour: 3.6, tokens: {input_per_mtok: 1000, output_per_mtok: 2000}}\n",
    )
    .await;
    let recs: Vec<Value> = std::fs::read_to_string(dir.path().join("report/records.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    // The records, read independently: billed = the upstream answered 2xx.
    let billed = |r: &Value| {
        r["upstream"]["status"]
            .as_u64()
            .is_some_and(|s| (200..300).contains(&s))
    };
    let storm: Vec<&Value> = recs.iter().filter(|r| r["phase"] == "storm").collect();
    let sum = |f: &dyn Fn(&Value) -> bool| {
        storm
            .iter()
            .filter(|r| billed(r) && f(r))
            .fold((0, 0), |(i, o), r| {
                (
                    i + r["input_tokens"].as_u64().unwrap_or(0),
                    o + r["output_tokens"].as_u64().unwrap_or(0),
                )
            })
    };
    let all = sum(&|_| true);
    let failed = sum(&|r| r["outcome"] != "ok");
    let counted_retries = sum(&|r| r["attempt"].as_u64().is_some_and(|a| a > 0));
    // The storm did what the test needs: free 429s, billed cut-off streams.
    let injected: Vec<&&Value> = storm
        .iter()
        .filter(|r| {
            r["faults"]
                .as_array()
                .unwrap()
                .iter()
                .any(|f| f["fault"] == "error")
        })
        .collect();
    assert!(!injected.is_empty(), "no 429 was injected");
    assert!(injected.iter().all(|r| r["upstream"].is_null()));
    assert!(
        injected
            .iter()
            .any(|r| r["input_tokens"].as_u64().is_some_and(|n| n > 0)),
        "an injected 429's prompt has an estimated size, which must not be priced"
    );
    assert!(failed.1 > 0, "no cut-off stream was billed");
    assert!(counted_retries.0 > 0, "no retry was billed");

    let cost = &report["cost"];
    let phases = cost["phases"].as_array().unwrap();
    assert_eq!(phases[0]["name"], "calm");
    let calm = &phases[0];
    assert_eq!(
        io(&calm["wasted"]),
        (0, 0),
        "nothing was wasted in calm: {calm}"
    );
    assert_eq!(calm["tokens_price"]["wasted"], 0.0);
    let s = &phases[1];
    assert_eq!(s["name"], "storm");
    assert_eq!(io(&s["billed"]), all, "{s}");
    let unknown = storm
        .iter()
        .filter(|r| billed(r) && r["input_tokens"].is_null())
        .count() as u64;
    assert_eq!(s["input_unknown"].as_u64(), Some(unknown), "{s}");
    assert_eq!(io(&s["failed"]), failed, "{s}");
    let retries = io(&s["retries"]);
    // The report may also count fresh calls that repeat a failed one (same
    // fingerprint and client) as retries; never fewer than the SDK's count.
    assert!(retries.0 >= counted_retries.0 && retries.0 <= all.0, "{s}");
    let wasted = io(&s["wasted"]);
    assert!(
        wasted.0 >= retries.0.max(failed.0) && wasted.0 <= retries.0 + failed.0,
        "{s}"
    );
    let price = |(i, o): (u64, u64)| i as f64 * 1000.0 / 1e6 + o as f64 * 2000.0 / 1e6;
    let tp = &s["tokens_price"];
    for (key, t) in [("billed", all), ("failed", failed), ("wasted", wasted)] {
        let got = tp[key].as_f64().unwrap();
        assert!(
            (got - price(t)).abs() < 1e-9,
            "{key}: {got} vs {}",
            price(t)
        );
    }
    // GPU time: 2 s at $3.60/h is $0.002, shared out by output tokens.
    let gp = &s["gpu_price"];
    assert!(
        (gp["billed"].as_f64().unwrap() - 0.002).abs() < 1e-12,
        "{gp}"
    );
    let share = wasted.1 as f64 / all.1 as f64;
    assert!(
        (gp["wasted"].as_f64().unwrap() - 0.002 * share).abs() < 1e-12,
        "{gp}"
    );

    // Shown on the terminal, in summary.md and report.html.
    assert!(stdout.contains("cost of chaos"), "{stdout}");
    let summary = std::fs::read_to_string(dir.path().join("report/summary.md")).unwrap();
    assert!(summary.contains("### Cost of chaos"), "{summary}");
    let row = format!("| storm | {}/{} |", all.0, all.1);
    assert!(summary.contains(&row), "{row} in {summary}");
    let html = std::fs::read_to_string(dir.path().join("report/report.html")).unwrap();
    assert!(html.contains("<section id=\"cost\">"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_cost_there_is_no_cost_section() {
    let dir = TempDir::new();
    let (report, stdout) = drill(dir.path(), "").await;
    assert!(report.get("cost").is_none(), "{}", report["cost"]);
    assert!(!stdout.contains("cost of chaos"));
    let summary = std::fs::read_to_string(dir.path().join("report/summary.md")).unwrap();
    assert!(!summary.contains("Cost of chaos"));
    let html = std::fs::read_to_string(dir.path().join("report/report.html")).unwrap();
    assert!(!html.contains("id=\"cost\""));
}
