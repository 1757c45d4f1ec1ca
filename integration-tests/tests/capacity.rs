//! `brownout capacity`: the capacity it finds is where the model puts it, a
//! brownout phase lowers it, bad input gets a verdict and never a made-up figure,
//! a running proxy's phase is held (ramps at their end) and its state reset
//! through the admin API, and the real llama-cpp-python server's capacity on this
//! machine falls under a `token_delay` brownout.
//!
//! Probes are short (a second of warmup, two measured) and searches small, so the
//! file runs in about a minute and a half; bounds on capacities are generous
//! (a step either way) because the machine is shared.

use std::path::Path;
use std::process::Output;
use std::time::Duration;

use brownout_integration_tests::*;
use serde_json::Value;

/// `brownout capacity SCENARIO --report-dir REPORT` with `env`, within `limit`.
async fn capacity(
    scenario: &Path,
    report: impl AsRef<Path>,
    env: &[(&str, &str)],
    limit: Duration,
) -> Output {
    let mut cmd = tokio::process::Command::new(brownout_bin());
    cmd.arg("capacity")
        .arg(scenario)
        .arg("--report-dir")
        .arg(report.as_ref())
        .env("RUST_LOG", "warn");
    for (k, v) in env {
        cmd.env(k, v);
    }
    within(limit, "brownout capacity", cmd.output())
        .await
        .expect("run brownout capacity")
}

fn text(o: &Output) -> String {
    format!(
        "exit {:?}\nstdout:\n{}\nstderr:\n{}",
        o.status.code(),
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

fn report(dir: &Path) -> Value {
    let p = dir.join("capacity.json");
    serde_json::from_str(
        &std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display())),
    )
    .unwrap()
}

fn run<'a>(r: &'a Value, phase: &str) -> &'a Value {
    r["runs"]
        .as_array()
        .unwrap()
        .iter()
        .find(|x| x["phase"] == phase)
        .unwrap_or_else(|| panic!("no run for {phase}: {r:#}"))
}

/// A simulated replica with 4 slots, each step 10 ms (the sim's own 30 ms TTFT and
/// 10 ms per token stay below it, so a request with 8 tokens takes about 100 ms),
/// then the same replica with 2 phantom sequences holding 2 of its slots.
const SLOTS: &str = "\
version: 1
name: slots
phases:
  - name: busy
    duration: 1h
    rules:
      - name: replica
        match: {endpoint: chat}
        faults:
          - type: gpu_saturation
            slots: 4
            step: {fit: {a_ms: 10, b_ms: 0, c_ms: 0}}
  - name: crowded
    duration: 1h
    rules:
      - name: replica-crowded
        match: {endpoint: chat}
        faults:
          - type: gpu_saturation
            slots: 4
            noisy_neighbor: 2
            step: {fit: {a_ms: 10, b_ms: 0, c_ms: 0}}
";

/// The model's answer: with a TTFT threshold (60 ms) below one request's time in
/// the replica (~100 ms), a request is good only if it never waits for a slot, so
/// closed-loop users beyond the free slots each make some request wait: the
/// capacity is the free slots, 4, and 2 with two of them taken by phantoms.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slot_limited_replica_holds_its_slots_and_a_noisy_neighbour_halves_it() {
    let d = TempDir::new();
    std::fs::write(d.join("profile.yaml"), SLOTS).unwrap();
    let scenario = d.join("scenario.yaml");
    std::fs::write(
        &scenario,
        "\
version: 1
name: slots-capacity
target: {upstream: sim}
profile: profile.yaml
seed: 5
workload:
  name: chat
  stream: true
  max_tokens: 8
  arrival: {concurrency: 1}
  client: {retries: 0, timeout: 10s}
slo:
  goodput: {ttft: 60ms}
capacity:
  vary: concurrency
  start: 1
  max: 16
  probe: 2s
  warmup: 1s
  attainment: 0.9
  under: [busy, crowded]
",
    )
    .unwrap();
    let out = capacity(&scenario, &d.join("report"), &[], Duration::from_secs(150)).await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let r = report(&d.join("report"));
    let busy = run(&r, "busy");
    let crowded = run(&r, "crowded");
    let (b, c) = (
        busy["capacity"].as_f64().unwrap(),
        crowded["capacity"].as_f64().unwrap(),
    );
    assert!((3.0..=5.0).contains(&b), "busy {b}: {}", text(&out));
    assert!((1.0..=3.0).contains(&c), "crowded {c}: {}", text(&out));
    assert!(
        c < b,
        "the noisy neighbour must lower the capacity: {b} → {c}"
    );
    assert_eq!(busy["verdict"], "found");
    // The contract's fields, and the comparison with the first phase searched.
    for k in [
        "phase",
        "vary",
        "capacity",
        "rate_rps",
        "output_tokens_per_s",
        "inferences_per_hour",
        "cost_per_1k_requests",
        "cost_per_1m_output_tokens",
        "energy_wh_per_1k_tokens",
        "probes",
    ] {
        assert!(busy.get(k).is_some(), "{k}: {busy:#}");
    }
    let rps = busy["rate_rps"].as_f64().unwrap();
    assert!(rps > 5.0, "{busy:#}");
    // JSON keeps the shortest text that reads back as each number: compare to the
    // last bits, not exactly.
    let per_hour = busy["inferences_per_hour"].as_f64().unwrap();
    assert!(
        (per_hour - rps * 3600.0).abs() <= 1e-9 * per_hour,
        "{busy:#}"
    );
    assert!(
        crowded["lost_vs_baseline_pct"].as_f64().unwrap() > 20.0,
        "{crowded:#}"
    );
    // Doubling from 1, then bisecting: the first probes are 1, 2, 4.
    let loads: Vec<f64> = busy["probes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["load"].as_f64().unwrap())
        .collect();
    assert_eq!(&loads[..3], &[1.0, 2.0, 4.0], "{loads:?}");
    for p in busy["probes"].as_array().unwrap() {
        let ci = p["ci"].as_array().unwrap();
        let a = p["attainment"].as_f64().unwrap();
        assert!(
            ci[0].as_f64().unwrap() <= a && a <= ci[1].as_f64().unwrap(),
            "{p:#}"
        );
        assert_eq!(p["passed"], p["verdict"] == "pass", "{p:#}");
    }
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("inferences/h") && stdout.contains("crowded"),
        "{stdout}"
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("probe busy") && stderr.contains("PASS"),
        "{stderr}"
    );
    let html = std::fs::read_to_string(d.join("report/capacity.html")).unwrap();
    assert!(html.contains("uPlot") && html.contains("crowded"));
}

const EDGES: &str = "\
version: 1
name: edges
phases:
  - name: calm
    duration: 1h
  - name: down
    duration: 1h
    rules:
      - name: outage
        faults:
          - type: error
            status: 500
";

fn edge_scenario(d: &TempDir, name: &str, slo: &str, capacity: &str) -> std::path::PathBuf {
    std::fs::write(d.join("profile.yaml"), EDGES).unwrap();
    let p = d.join(&format!("{name}.yaml"));
    std::fs::write(
        &p,
        format!(
            "\
version: 1
name: {name}
target: {{upstream: sim}}
profile: profile.yaml
workload:
  name: chat
  stream: true
  max_tokens: 4
  arrival: {{concurrency: 1}}
  client: {{retries: 0, timeout: 5s}}
{slo}
capacity: {capacity}
"
        ),
    )
    .unwrap();
    p
}

/// Objectives no load meets, an upstream failing every request (with a
/// `stop_when` that fires: it fails the probe, not the run), `max` passing, and
/// scenarios that make no sense: each gets its verdict and exit code, and no
/// capacity is ever made up.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_and_edge_cases_get_verdicts_never_a_made_up_capacity() {
    let d = TempDir::new();
    let probe = "probe: 1s, warmup: 300ms, probe_max: 2s";
    let unmeetable = edge_scenario(
        &d,
        "unmeetable",
        "slo:\n  goodput: {ttft: 1ms}",
        &format!("{{start: 1, max: 4, {probe}, attainment: 0.9, under: [calm]}}"),
    );
    let failing = edge_scenario(
        &d,
        "failing",
        "stop_when:\n  error_rate: {above: 0.5, for: 300ms}",
        &format!("{{start: 1, max: 4, {probe}, attainment: 0.9, under: [down]}}"),
    );
    let easy = edge_scenario(
        &d,
        "easy",
        "slo:\n  goodput: {ttft: 2s}",
        &format!("{{start: 1, max: 2, {probe}, attainment: 0.8, under: [baseline]}}"),
    );
    let limit = Duration::from_secs(60);
    let (u, f, e) = tokio::join!(
        capacity(&unmeetable, d.join("r-unmeetable"), &[], limit),
        capacity(&failing, d.join("r-failing"), &[], limit),
        capacity(&easy, d.join("r-easy"), &[], limit),
    );

    assert_eq!(u.status.code(), Some(1), "{}", text(&u));
    let r = report(&d.join("r-unmeetable"));
    let calm = run(&r, "calm");
    assert!(calm["capacity"].is_null(), "{calm:#}");
    assert_eq!(calm["verdict"], "below start");
    assert!(
        calm["reason"].as_str().unwrap().contains("out of reach"),
        "{calm:#}"
    );
    assert_eq!(calm["probes"].as_array().unwrap().len(), 1);
    assert_eq!(r["verdict"], "below start");

    assert_eq!(f.status.code(), Some(1), "{}", text(&f));
    let r = report(&d.join("r-failing"));
    let down = run(&r, "down");
    assert!(down["capacity"].is_null(), "{down:#}");
    assert!(
        down["reason"]
            .as_str()
            .unwrap()
            .contains("fails at every load"),
        "{down:#}"
    );
    assert_eq!(down["probes"][0]["verdict"], "stopped", "{down:#}");
    assert!(down["probes"][0]["reason"]
        .as_str()
        .unwrap()
        .contains("stop_when"));

    assert_eq!(e.status.code(), Some(0), "{}", text(&e));
    let r = report(&d.join("r-easy"));
    let base = run(&r, "baseline");
    assert_eq!(base["capacity"], 2.0);
    assert_eq!(base["at_least"], true);
    assert_eq!(base["verdict"], "not found up to max");
    assert!(
        String::from_utf8_lossy(&e.stdout).contains("≥ 2 users"),
        "{}",
        text(&e)
    );

    // Invalid input: exit 2, before any request, with the position and a hint.
    let backwards = edge_scenario(&d, "backwards", "", "{start: 8, max: 2}");
    let unknown = edge_scenario(&d, "unknown", "", "{start: 1, max: 2, under: [calm, dwon]}");
    let none = edge_scenario(&d, "none", "", "{start: 1, max: 2}");
    let text_none = std::fs::read_to_string(&none)
        .unwrap()
        .replace("capacity: {start: 1, max: 2}\n", "");
    std::fs::write(&none, text_none).unwrap();
    let limit = Duration::from_secs(20);
    let (b, u, n) = tokio::join!(
        capacity(&backwards, d.join("r-b"), &[], limit),
        capacity(&unknown, d.join("r-u"), &[], limit),
        capacity(&none, d.join("r-n"), &[], limit),
    );
    assert_eq!(b.status.code(), Some(2), "{}", text(&b));
    let err = String::from_utf8_lossy(&b.stderr);
    assert!(
        err.contains("backwards.yaml:12:") && err.contains("below `capacity.start`"),
        "{err}"
    );
    assert_eq!(u.status.code(), Some(2), "{}", text(&u));
    let err = String::from_utf8_lossy(&u.stderr);
    assert!(
        err.contains("`dwon`")
            && err.contains("calm, down")
            && err.contains("did you mean `down`?"),
        "{err}"
    );
    assert_eq!(n.status.code(), Some(2), "{}", text(&n));
    assert!(
        String::from_utf8_lossy(&n.stderr).contains("no `capacity:` block"),
        "{}",
        text(&n)
    );
    assert!(!d.join("r-b/capacity.json").exists());
}

/// Against a running proxy (its admin API behind a token): the phase is held, so
/// a ramp `{from: 0, to: 1}` that would start at 0 stands at 1 for every probe:
/// every streamed token is delayed, TPOT breaks its threshold, and no load passes
/// under `slow` while the baseline (faults off) holds every load tried.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_running_proxy_is_held_at_the_end_of_its_ramps() {
    let (sim, proxy, target) = proxied_sim("cap-token", "CAP_TOKEN").await;
    let d = TempDir::new();
    std::fs::write(
        d.join("profile.yaml"),
        "\
version: 1
name: ramped
phases:
  - name: calm
    duration: 1h
  - name: slow
    duration: 1h
    rules:
      - name: drip
        probability: {from: 0, to: 1}
        faults:
          - type: token_delay
            duration: 60ms
",
    )
    .unwrap();
    let scenario = d.join("scenario.yaml");
    std::fs::write(
        &scenario,
        format!(
            "\
version: 1
name: held
target: {target}
profile: profile.yaml
workload:
  name: chat
  stream: true
  max_tokens: 6
  arrival: {{concurrency: 1}}
  client: {{retries: 0, timeout: 10s}}
slo:
  goodput: {{tpot: 40ms}}
capacity: {{start: 1, max: 2, probe: 1500ms, warmup: 300ms, attainment: 0.8, under: [baseline, slow]}}
"
        ),
    )
    .unwrap();
    let out = capacity(
        &scenario,
        &d.join("report"),
        &[("CAP_TOKEN", "cap-token")],
        Duration::from_secs(60),
    )
    .await;
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let r = report(&d.join("report"));
    assert_eq!(run(&r, "baseline")["capacity"], 2.0, "{r:#}");
    let slow = run(&r, "slow");
    assert!(slow["capacity"].is_null(), "{slow:#}");
    assert_eq!(slow["lost_vs_baseline_pct"], 100.0);
    assert_eq!(slow["probes"][0]["attainment"], 0.0, "{slow:#}");
    // The search leaves the proxy as it found it: no hold, faults on.
    let client = http1_client();
    let mut req = get(proxy.admin_url("/api/v1/status"));
    req.headers_mut()
        .insert("authorization", "Bearer cap-token".parse().unwrap());
    let st = send(&client, req).await.unwrap().json();
    assert_eq!(st["held"], false, "{st:#}");
    assert_eq!(st["faults_enabled"], true, "{st:#}");
    proxy.shutdown().await;
    sim.shutdown().await;
}

/// `POST /api/v1/phase` with `hold` keeps a rate limiter's spent budget; with
/// `reset` it starts afresh, as each capacity probe needs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn holding_with_reset_starts_limiters_afresh() {
    let up = Upstream::start(|_req| async { reply(200, "{}") }).await;
    let proxy = ProxyBuilder::new(up.url())
        .api(ApiKind::Openai)
        .admin()
        .profile(
            "\
version: 1
name: limited
phases:
  - name: calm
    duration: 1h
  - name: tight
    duration: 1h
    rules:
      - name: budget
        faults:
          - {type: rate_limit, requests_per_minute: 2}
",
        )
        .start()
        .await;
    let client = http1_client();
    let phase = |body: &str| {
        let mut r = post_json(
            proxy.admin_url("/api/v1/phase"),
            &serde_json::from_str(body).unwrap(),
        );
        r.headers_mut().remove("origin");
        r
    };
    let statuses = |n: usize| {
        let client = client.clone();
        let url = proxy.url("/v1/chat/completions");
        async move {
            let mut out = Vec::new();
            for _ in 0..n {
                let r = send(
                    &client,
                    post_json(&url, &serde_json::json!({"model": "m", "messages": []})),
                )
                .await
                .unwrap();
                out.push(r.status);
            }
            out
        }
    };
    let r = send(&client, phase(r#"{"name": "tight", "hold": true}"#))
        .await
        .unwrap();
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert_eq!(r.json()["held"], true);
    assert_eq!(statuses(3).await, [200, 200, 429]);
    // Held again without a reset: the budget stays spent.
    send(&client, phase(r#"{"name": "tight", "hold": true}"#))
        .await
        .unwrap();
    assert_eq!(statuses(1).await, [429]);
    // With a reset: a fresh budget.
    let r = send(
        &client,
        phase(r#"{"name": "tight", "hold": true, "reset": true}"#),
    )
    .await
    .unwrap();
    assert_eq!(r.json()["phase"], "tight");
    assert_eq!(statuses(3).await, [200, 200, 429]);
    // Released: the clock runs again from the phase's start.
    let r = send(&client, phase(r#"{"hold": false}"#)).await.unwrap();
    assert_eq!(r.json()["held"], false);
    assert_eq!(r.json()["phase"], "tight");
    let r = send(&client, phase(r#"{"name": "nope", "hold": true}"#))
        .await
        .unwrap();
    assert_eq!(r.status, 400);
}

/// The real llama-cpp-python server (Gemma 3 270M on this machine's CPUs), through
/// a running proxy: its capacity at an end-to-end objective of 5 s for 8 tokens
/// (one answer takes 0.3 s on an idle machine, a few seconds on a busy one), then
/// under a `token_delay` brownout of 1 s a token, which alone puts 7 s on every
/// answer: no load passes.
///
/// The server runs one generation at a time, and a newer request interrupts the
/// one running: that stream gets its role chunk and `[DONE]` with no
/// `finish_reason`, which the drill counts as truncated. So two closed-loop users
/// keep interrupting each other and the capacity is exactly one user. (Counting
/// those interrupted streams as answers once made it 4 users at 220 answers a
/// second, of 3 tokens a second.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_real_llama_server_loses_capacity_under_a_token_delay_brownout() {
    let Some(llama) = real_llama().await else {
        return;
    };
    // The server's first answer is slow (it sets up its caches): not the search's.
    let warm = post_json(
        format!("{}/v1/chat/completions", llama.url()),
        &serde_json::json!({"model": "gemma-3-270m-it", "max_tokens": 4,
            "messages": [{"role": "user", "content": "Say hi."}]}),
    );
    let _ = within(
        Duration::from_secs(60),
        "warm llama",
        send(&http1_client(), warm),
    )
    .await;
    let proxy = ProxyBuilder::new(llama.url())
        .api(ApiKind::Openai)
        .admin()
        .start()
        .await;
    let d = TempDir::new();
    std::fs::write(
        d.join("prompts.jsonl"),
        "{\"messages\": [{\"role\": \"user\", \"content\": \"Count from 1 to 30, separated by spaces.\"}]}\n",
    )
    .unwrap();
    std::fs::write(
        d.join("profile.yaml"),
        "\
version: 1
name: llama-brownout
phases:
  - name: calm
    duration: 1h
  - name: drip
    duration: 1h
    rules:
      - name: slow-tokens
        faults:
          - type: token_delay
            duration: 1s
",
    )
    .unwrap();
    let scenario = d.join("scenario.yaml");
    std::fs::write(
        &scenario,
        format!(
            "\
version: 1
name: llama-capacity
target: {{url: \"{}\", admin: \"{}\"}}
profile: profile.yaml
workload:
  name: chat
  model: gemma-3-270m-it
  stream: true
  prompts: prompts.jsonl
  max_tokens: 8
  arrival: {{concurrency: 1}}
  client: {{retries: 0, timeout: 60s}}
slo:
  goodput: {{e2e: 5s}}
capacity: {{start: 1, max: 4, probe: 4s, warmup: 1s, probe_max: 16s, attainment: 0.5, under: [baseline, drip]}}
",
            proxy.url(""),
            proxy.admin_url("")
        ),
    )
    .unwrap();
    let out = capacity(&scenario, &d.join("report"), &[], Duration::from_secs(240)).await;
    let r = report(&d.join("report"));
    let base = run(&r, "baseline");
    let drip = run(&r, "drip");
    eprintln!("llama capacity: {}", text(&out));
    let b = base["capacity"].as_f64();
    assert_eq!(
        b,
        Some(1.0),
        "one user, as the server interrupts all but the newest stream: {}",
        text(&out)
    );
    let at2 = base["probes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["load"] == 2.0)
        .unwrap_or_else(|| panic!("no probe at 2 users: {base:#}"));
    assert_eq!(at2["passed"], false, "{at2:#}");
    let lowered = match drip["capacity"].as_f64() {
        None => true,
        Some(c) => c < b.unwrap_or(0.0),
    };
    assert!(
        lowered,
        "token_delay did not lower the capacity: {}",
        text(&out)
    );
    assert!(drip["lost_vs_baseline_pct"].as_f64().unwrap() > 0.0);
    proxy.shutdown().await;
}

/// llama-cpp-python's server from the cached `llama` environment, or `None` with a
/// loud message when the environment is not built on this machine (building it
/// compiles llama.cpp: `integration-tests/python/venv.sh llama`).
async fn real_llama() -> Option<ChildServer> {
    let built = std::process::Command::new("bash")
        .arg("-c")
        .arg("ls -d ${XDG_CACHE_HOME:-$HOME/.cache}/brownout/venv-llama-*/.complete")
        .output()
        .is_ok_and(|o| o.status.success());
    if !built {
        eprintln!(
            "\n\n*** SKIPPED: the `llama` Python environment is not built here; run \
             integration-tests/python/venv.sh llama to test capacity against the real \
             llama-cpp-python server ***\n\n"
        );
        return None;
    }
    Some(start_llama_server().await)
}

/// The shipped example runs as written, its search cut short by the flags.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_shipped_capacity_scenario_runs_with_its_flags() {
    let d = TempDir::new();
    let mut cmd = tokio::process::Command::new(brownout_bin());
    cmd.arg("capacity")
        .arg(repo_root().join("scenarios/capacity-h100.yaml"))
        .args(["--report-dir"])
        .arg(d.join("report"))
        .args([
            "--start", "16", "--max", "16", "--probe", "3s", "--warmup", "500ms",
        ])
        .args(["--under", "baseline,neighbour"])
        .env("RUST_LOG", "warn");
    let out = within(Duration::from_secs(90), "brownout capacity", cmd.output())
        .await
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let r = report(&d.join("report"));
    let phases: Vec<&str> = r["runs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["phase"].as_str().unwrap())
        .collect();
    assert_eq!(phases, ["baseline", "neighbour"]);
    for run in r["runs"].as_array().unwrap() {
        assert!(run["capacity"].as_f64().is_some(), "{run:#}");
        assert!(run["probes"][0]["generator_bound"] == false, "{run:#}");
        // Priced at capacity: $2.50 a GPU-hour over an hour of its requests and
        // tokens, and power metered from the GPU model within the h100-80gb
        // preset's range (70 W idle to 700 W busy).
        let f = |k: &str| {
            run[k]
                .as_f64()
                .unwrap_or_else(|| panic!("{k} missing: {run:#}"))
        };
        let (rps, tok) = (f("rate_rps"), f("output_tokens_per_s"));
        // An hour of requests and tokens is rounded to whole ones.
        let close = |a: f64, b: f64| (a - b).abs() <= 1e-4 * b.abs().max(1e-9);
        assert!(
            close(f("cost_per_1k_requests"), 2.5 / (rps * 3600.0) * 1e3),
            "{run:#}"
        );
        assert!(
            close(f("cost_per_1m_output_tokens"), 2.5 / (tok * 3600.0) * 1e6),
            "{run:#}"
        );
        assert_eq!(run["power_source"], "gpu_model", "{run:#}");
        let w = f("power_w");
        assert!((70.0..=700.0).contains(&w), "{w} W: {run:#}");
        assert!(
            close(f("energy_wh_per_1k_tokens"), w / (tok * 3600.0) * 1e3),
            "{run:#}"
        );
        // The sim's answers carry usage, so the input rate is known.
        assert!(
            run["probes"][0]["input_tokens_per_s"]
                .as_f64()
                .is_some_and(|v| v > 0.0),
            "{run:#}"
        );
    }
    assert!(text(&out).contains("$/1k req"), "{}", text(&out));
    // A flag that makes no sense is invalid input.
    let out = tokio::process::Command::new(brownout_bin())
        .arg("capacity")
        .arg(repo_root().join("scenarios/capacity-h100.yaml"))
        .args(["--start", "64", "--max", "8"])
        .output()
        .await
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(String::from_utf8_lossy(&out.stderr).contains("below `start`"));
}
