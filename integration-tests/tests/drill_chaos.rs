//! No chaos, no pass: `brownout drill` counts, per phase and rule, what the
//! proxy's records say each rule matched, decided and applied, and a drill whose
//! rules applied nothing (or improbably little) is **inconclusive** (exit 4), with
//! a JUnit error naming each idle rule and why it missed. Against simulated
//! upstreams (the in-process proxy writes the records) and against a running
//! proxy (the drill copies its records through the admin API).

use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::Duration;

use brownout_integration_tests::*;
use serde_json::Value;

/// A storm phase whose `throttle` rule fires on chat, and whose `embed-only` rule
/// matches an endpoint the workload never calls.
const PROFILE: &str = "\
version: 1
name: chaos-count
phases:
  - name: calm
    duration: 1s
  - name: storm
    duration: 2s
    rules:
      - name: throttle
        match: {endpoint: chat}
        probability: 0.5
        faults:
          - {type: error, preset: openai.rate_limit_requests}
      - name: embed-only
        match: {endpoint: embeddings}
        faults:
          - {type: delay, duration: 50ms}
";

fn scenario(target: &str, extra: &str) -> String {
    format!(
        "\
version: 1
name: chaos-count
target: {target}
profile: profile.yaml
seed: 5
workload:
  stream: true
  arrival: {{rate: 40/s}}
  client: {{retries: 0, timeout: 5s}}
baseline: calm
{extra}"
    )
}

fn setup(dir: &Path, profile: &str, scenario: &str) -> PathBuf {
    std::fs::write(dir.join("profile.yaml"), profile).unwrap();
    let path = dir.join("scenario.yaml");
    std::fs::write(&path, scenario).unwrap();
    path
}

async fn drill(scenario: &Path, report: &Path, env: &[(&str, &str)]) -> Output {
    run_drill(scenario, report, env, Duration::from_secs(60)).await
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn report(dir: &Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(dir.join("report.json")).unwrap()).unwrap()
}

/// The tally of `rule` in the report's fault accounting.
fn tally<'a>(r: &'a Value, rule: &str) -> &'a Value {
    r["chaos"]["rules"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["rule"] == rule)
        .unwrap_or_else(|| panic!("no tally for {rule}: {:#}", r["chaos"]))
}

/// Checks what every run below must show: `throttle` applied about half the time
/// on every matched chat request of the storm, `embed-only` matched nothing.
fn check_counts(r: &Value) {
    let t = tally(r, "throttle");
    assert_eq!(t["scope"], "storm");
    let (requests, matched) = (
        t["requests"].as_u64().unwrap(),
        t["matched"].as_u64().unwrap(),
    );
    assert!(requests >= 30, "{t:#}");
    assert_eq!(matched, requests, "every storm request is chat: {t:#}");
    let applied = t["faults"][0]["applied"].as_u64().unwrap();
    let share = applied as f64 / matched as f64;
    assert!(
        (0.25..0.75).contains(&share),
        "applied {applied} of {matched}: {t:#}"
    );
    assert_eq!(t["idle"], false, "{t:#}");
    let e = tally(r, "embed-only");
    assert_eq!(e["matched"], 0, "{e:#}");
    assert_eq!(e["idle"], true, "{e:#}");
    let miss = e["nearest_miss"].as_str().unwrap();
    assert!(
        miss.contains("endpoint `embeddings`") && miss.contains("chat"),
        "the nearest miss names the condition and what the requests were: {miss}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_rule_makes_a_sim_drill_inconclusive_unless_allowed() {
    let (idle, allowed) = (TempDir::new(), TempDir::new());
    let sim = "{upstream: sim}";
    let a = setup(idle.path(), PROFILE, &scenario(sim, ""));
    let b = setup(
        allowed.path(),
        PROFILE,
        &scenario(sim, "allow_idle_rules: true\n"),
    );
    let (ra, rb) = (idle.join("report"), allowed.join("report"));
    let (oa, ob) = tokio::join!(drill(&a, &ra, &[]), drill(&b, &rb, &[]));

    assert_eq!(
        oa.status.code(),
        Some(4),
        "{}{}",
        text(&oa.stdout),
        text(&oa.stderr)
    );
    let out = text(&oa.stdout);
    assert!(out.contains("verdict: INCONCLUSIVE"), "{out}");
    assert!(out.contains("IDLE rule `embed-only`"), "{out}");
    let r = report(&ra);
    assert_eq!(r["verdict"], "inconclusive");
    assert_eq!(r["exit_code"], 4);
    check_counts(&r);
    // The JUnit file has an error (not a failure) naming the idle rule.
    let junit = std::fs::read_to_string(ra.join("junit.xml")).unwrap();
    assert!(junit.contains("type=\"Inconclusive\""), "{junit}");
    assert!(junit.contains("rule `embed-only`"), "{junit}");
    assert!(!junit.contains("rule `throttle`"), "{junit}");
    let summary = std::fs::read_to_string(ra.join("summary.md")).unwrap();
    assert!(summary.contains("**Inconclusive**"), "{summary}");
    // The proxy's records are kept beside the reports, one line per exchange.
    let lines = std::fs::read_to_string(ra.join("records.jsonl")).unwrap();
    assert_eq!(
        lines.lines().count() as u64,
        r["chaos"]["exchanges"].as_u64().unwrap()
    );

    // The same records through `brownout report --scenario`: the same judgement.
    let out = within(
        Duration::from_secs(60),
        "brownout report",
        tokio::process::Command::new(brownout_bin())
            .arg("report")
            .arg(ra.join("records.jsonl"))
            .arg("--scenario")
            .arg(&a)
            .arg("--report-dir")
            .arg(idle.join("again"))
            .output(),
    )
    .await
    .unwrap();
    assert_eq!(
        out.status.code(),
        Some(4),
        "{}{}",
        text(&out.stdout),
        text(&out.stderr)
    );
    let again = report(&idle.join("again"));
    assert_eq!(again["verdict"], "inconclusive");
    assert_eq!(tally(&again, "embed-only")["idle"], true);
    assert_eq!(
        tally(&again, "throttle")["faults"][0]["applied"],
        tally(&r, "throttle")["faults"][0]["applied"]
    );

    // Allowed: the same counts, and a pass.
    assert_eq!(
        ob.status.code(),
        Some(0),
        "{}{}",
        text(&ob.stdout),
        text(&ob.stderr)
    );
    let r = report(&rb);
    assert_eq!(r["verdict"], "pass");
    check_counts(&r);
    assert!(text(&ob.stdout).contains("idle (allowed)"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_drill_against_a_running_proxy_counts_the_faults_it_applied() {
    let (sim, proxy, target) = proxied_sim("drill-token", "DRILL_ADMIN_TOKEN").await;
    let dir = TempDir::new();
    let path = setup(dir.path(), PROFILE, &scenario(&target, ""));
    // Traffic before the drill is not the drill's: it must not be counted.
    let client = http1_client();
    for _ in 0..5 {
        let _ = send(&client, get(proxy.url("/v1/models"))).await;
    }
    let rd = dir.join("report");
    let out = drill(&path, &rd, &[("DRILL_ADMIN_TOKEN", "drill-token")]).await;
    assert_eq!(
        out.status.code(),
        Some(4),
        "{}{}",
        text(&out.stdout),
        text(&out.stderr)
    );
    let r = report(&rd);
    check_counts(&r);
    let source = r["chaos"]["source"].as_str().unwrap();
    assert!(source.contains("the proxy's records"), "{source}");
    let lines = std::fs::read_to_string(rd.join("records.jsonl")).unwrap();
    assert!(
        !lines.contains("/v1/models"),
        "records from before the drill were copied"
    );
    assert!(r["incomplete"].is_null(), "{:#}", r["incomplete"]);
    proxy.shutdown().await;
    sim.shutdown().await;
}
