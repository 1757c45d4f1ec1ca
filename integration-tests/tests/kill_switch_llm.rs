//! The kill switch against every fault that holds an LLM exchange (docs/admin.md,
//! "The kill switch"): a stall that never ends, token pacing
//! (`token_delay`, `token_rate`), `first_token_delay`, a `concurrency_limit`
//! queue and `cold_start`. Each held exchange is released within one second of
//! `POST /api/v1/faults/off` and completes normally from the upstream (the
//! simulated OpenAI server): status 200, the same answer text an unharmed
//! request gets, a proper `[DONE]`, and an `ok` record.
//!
//! And the switch's memory: faults stay off across profile reloads (API and
//! file) until `faults/on`, and `faults/on` resumes the profile where its clock
//! stands, not from its first phase. (`rate_limit` holds nothing: it answers
//! 429 at once, covered in kill_switch.rs's "while off, no fault" checks;
//! `hang`, `delay`, `bandwidth` are there too, and GPU admission in gpu.rs.)

use std::sync::atomic::Ordering;
use std::time::Duration;

use brownout_integration_tests::*;
use serde_json::{json, Value};
use tokio::time::Instant;

const PROFILE: &str = r#"
version: 1
name: llm-holds
rules:
  - name: stall
    match: {headers: {x-kind: stall}}
    faults: [{type: stall, after_tokens: 2, forever: true}]
  - name: token-delay
    match: {headers: {x-kind: token-delay}}
    faults: [{type: token_delay, duration: 30s}]
  - name: token-rate
    match: {headers: {x-kind: token-rate}}
    faults: [{type: token_rate, tokens_per_second: 0.1}]
  - name: first-token
    match: {headers: {x-kind: first-token}}
    faults: [{type: first_token_delay, duration: 60s}]
  - name: queue
    match: {headers: {x-kind: queue}}
    faults:
      - {type: concurrency_limit, max: 1, queue: 4, queue_timeout: 60s}
      - {type: first_token_delay, duration: 60s}
  - name: cold
    match: {headers: {x-kind: cold}}
    faults: [{type: cold_start, idle: 1m, duration: 60s}]
"#;

async fn setup() -> (brownout_sim::SimHandle, TestProxy) {
    sim_behind_proxy(Duration::from_millis(5), PROFILE).await
}

fn chat(proxy: &TestProxy, kind: &str, stream: bool) -> http::Request<Body> {
    let mut r = post_json(
        proxy.url("/v1/chat/completions"),
        &json!({
            "model": "gpt-4o-mini", "stream": stream, "max_tokens": 8,
            "messages": [{"role": "user", "content": "Say something calm."}],
        }),
    );
    r.headers_mut().insert("x-kind", kind.parse().unwrap());
    r
}

/// The answer's text: the concatenated deltas of a stream, or the message content.
fn answer_text(r: &Reply) -> String {
    let body = String::from_utf8_lossy(&r.body);
    if body.trim_start().starts_with('{') {
        return r.json()["choices"][0]["message"]["content"]
            .as_str()
            .unwrap_or_default()
            .to_string();
    }
    assert!(
        body.trim_end().ends_with("data: [DONE]"),
        "the stream ends properly: {body}"
    );
    body.lines()
        .filter_map(|l| l.strip_prefix("data: "))
        .filter(|d| *d != "[DONE]")
        .filter_map(|d| serde_json::from_str::<Value>(d).ok())
        .filter_map(|v| {
            v["choices"][0]["delta"]["content"]
                .as_str()
                .map(String::from)
        })
        .collect()
}

async fn wait_active(proxy: &TestProxy, n: i64) {
    let g = proxy.shared().metrics.active_gauge("test");
    let deadline = Instant::now() + Duration::from_secs(10);
    while g.load(Ordering::Relaxed) < n {
        assert!(Instant::now() < deadline, "requests never became active");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Send `n` requests of `kind`, check they are held, flip the kill switch, and
/// check each is released within a second with the unharmed answer.
async fn held_then_released(kind: &str, stream: bool, n: usize) {
    let (_sim, proxy) = setup().await;
    let c = http1_client();
    // The unharmed answer, for comparison.
    let reference = send(&c, chat(&proxy, "none", stream)).await.unwrap();
    assert_eq!(reference.status, 200);
    let want = answer_text(&reference);
    assert!(!want.is_empty());

    let mut held = Vec::new();
    for _ in 0..n {
        let (c, r) = (c.clone(), chat(&proxy, kind, stream));
        held.push(tokio::spawn(async move { send(&c, r).await }));
        // Keep arrival order (the queue test needs the first to hold the slot).
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    wait_active(&proxy, n as i64).await;
    tokio::time::sleep(Duration::from_millis(400)).await;
    for h in &held {
        assert!(!h.is_finished(), "{kind}: finished before the kill switch");
    }

    let t = Instant::now();
    let (st, body) = proxy.admin_post("/api/v1/faults/off").await;
    assert_eq!(st, 200, "{body}");
    for h in held {
        let r = within(Duration::from_secs(3), kind, h)
            .await
            .unwrap()
            .expect("the released request completes");
        let after = t.elapsed();
        assert!(
            after < Duration::from_secs(1),
            "{kind}: released only after {after:?}"
        );
        assert_eq!(
            r.status,
            200,
            "{kind}: {}",
            String::from_utf8_lossy(&r.body)
        );
        assert_eq!(answer_text(&r), want, "{kind}: the upstream's whole answer");
    }
    let recs = proxy.exactly_records(1 + n).await;
    for r in recs.iter().skip(1) {
        assert_eq!(r["outcome"], "ok", "{kind}: {r:#}");
        assert_eq!(r["status"], 200);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_switch_releases_a_stall_forever() {
    held_then_released("stall", true, 1).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_switch_releases_token_delay() {
    held_then_released("token-delay", true, 1).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_switch_releases_token_rate() {
    held_then_released("token-rate", true, 1).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_switch_releases_first_token_delay() {
    held_then_released("first-token", true, 1).await;
}

/// One request holds the only slot (its first token held for a minute); two more
/// wait in the queue. The switch releases the holder and empties the queue.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_switch_releases_a_concurrency_queue() {
    held_then_released("queue", true, 3).await;
}

/// The first request after an idle spell waits for a one-minute "model load";
/// a second one arriving during the load waits with it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_switch_releases_a_cold_start() {
    held_then_released("cold", false, 2).await;
}

// ---------------------------------------------------------------------------
// Faults stay off across reloads; `faults/on` resumes where the clock stands
// ---------------------------------------------------------------------------

fn phased(name: &str) -> String {
    format!(
        r#"
version: 1
name: {name}
phases:
  - name: warmup
    duration: 700ms
  - name: storm
    duration: 60s
    rules:
      - name: fail
        faults: [{{type: error, preset: openai.rate_limit_requests}}]
"#
    )
}

async fn put_profile(proxy: &TestProxy, yaml: &str) -> (http::StatusCode, Value) {
    let r = send(
        &http1_client(),
        http::Request::put(proxy.admin_url("/api/v1/profile"))
            .header("content-type", "application/yaml")
            .body(full(yaml.to_string()))
            .unwrap(),
    )
    .await
    .unwrap();
    (r.status, r.json())
}

async fn status(proxy: &TestProxy) -> Value {
    let (st, body) = proxy.admin_get("/api/v1/status").await;
    assert_eq!(st, 200);
    serde_json::from_str(&body).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn faults_stay_off_across_reloads_and_resume_where_the_clock_stands() {
    let up = Upstream::start(|_req| async { reply(200, "fine") }).await;
    let dir = TempDir::new();
    let file = dir.join("profile.yaml");
    std::fs::write(&file, phased("from-file")).unwrap();
    let proxy = ProxyBuilder::new(up.url())
        .admin()
        .profile_file(&file)
        .start()
        .await;
    let c = http1_client();
    let hit = || async {
        let r = send(&c, get(proxy.url("/v1/models"))).await.unwrap();
        (r.status, r.header("x-brownout-fault").map(String::from))
    };

    assert_eq!(proxy.admin_post("/api/v1/faults/off").await.0, 200);

    // Replace the profile through the API: still off.
    let (st, v) = put_profile(&proxy, &phased("from-api")).await;
    assert_eq!(st, 200, "{v}");
    assert_eq!(v["profile"], "from-api");
    assert_eq!(v["faults_enabled"], false, "a PUT must not turn faults on");
    // Re-read the file: still off.
    let (st, body) = proxy.admin_post("/api/v1/profile/reload").await;
    assert_eq!(st, 200, "{body}");
    let v = status(&proxy).await;
    assert_eq!(v["profile"], "from-file");
    assert_eq!(v["source"], "file");
    assert_eq!(
        v["faults_enabled"], false,
        "a reload must not turn faults on"
    );
    // A hot reload of the file (the watcher): still off.
    std::fs::write(&file, phased("edited")).unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while status(&proxy).await["profile"] != "edited" {
        assert!(Instant::now() < deadline, "the edit was not hot-reloaded");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let applied = Instant::now();
    assert_eq!(status(&proxy).await["faults_enabled"], false);

    // The clock runs while faults are off: the storm phase begins, harmlessly.
    tokio::time::sleep(Duration::from_millis(1000)).await;
    let v = status(&proxy).await;
    assert_eq!(v["phase"], "storm", "the clock keeps running while off");
    assert_eq!(hit().await, (http::StatusCode::OK, None));

    // On again: the profile resumes in the storm, where its clock stands.
    assert_eq!(proxy.admin_post("/api/v1/faults/on").await.0, 200);
    let v = status(&proxy).await;
    assert_eq!(v["phase"], "storm", "faults/on does not restart the clock");
    assert!(
        v["time_in_phase_s"].as_f64().unwrap() >= 0.25,
        "the storm began ~{:?} ago: {v}",
        applied.elapsed().saturating_sub(Duration::from_millis(700))
    );
    let (st, mark) = hit().await;
    assert_eq!(st, 429);
    assert_eq!(mark.as_deref(), Some("fail/error"));
}
