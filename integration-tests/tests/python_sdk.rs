//! The official Python SDKs as clients: what users actually run against brownout.
//!
//! The OpenAI SDK must get byte-correct answers through the proxy (plain and
//! streamed), must recognise an injected `openai.rate_limit_requests` as a
//! `RateLimitError` and retry it as it would a real one (each attempt recorded with
//! its `x-stainless-retry-count`), and the Anthropic SDK must raise its own
//! `OverloadedError` for `anthropic.overloaded`. The API keys never reach a record.
//!
//! The SDKs come from the cached `sdk` Python environment (`integration-tests/python/venv.sh`).

use std::time::Duration;

use brownout::config::{FileConfig, ListenerConfig};
use brownout::{start, StartOptions};

const PROFILE: &str = r#"
version: 1
name: sdk-check
rules:
  - name: drill-429
    match: {headers: {x-drill: rate-limit}}
    faults:
      - type: error
        preset: openai.rate_limit_requests
        retry_after: 100ms
  - name: anthropic-overload
    match: {path: "/anthropic/**"}
    faults:
      - type: error
        preset: anthropic.overloaded
"#;

fn listener(name: &str, upstream: String) -> ListenerConfig {
    ListenerConfig {
        name: Some(name.into()),
        listen: "127.0.0.1:0".into(),
        upstream,
        api: None,
        ..Default::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn official_sdks_through_the_proxy() {
    let py = tokio::task::spawn_blocking(brownout_integration_tests::sdk_python)
        .await
        .unwrap();
    let sim = brownout_sim::spawn(
        "127.0.0.1:0".parse().unwrap(),
        brownout_sim::SimConfig::default(),
    )
    .await
    .unwrap();
    let dir = std::env::temp_dir().join(format!("brownout-sdk-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let records = dir.join("records.jsonl");
    let _ = std::fs::remove_file(&records);
    let mut config = FileConfig {
        listeners: vec![listener("llm", format!("http://{}", sim.addr))],
        ..Default::default()
    };
    config.listeners[0].api = Some(brownout_faults::ApiKind::Openai);
    config.record.jsonl = Some(records.clone());
    let running = start(StartOptions {
        config,
        no_admin: true,
        builtin_profile: Some(PROFILE.into()),
        ..Default::default()
    })
    .await
    .unwrap();
    let addr = running.addr(None).unwrap();

    let script =
        brownout_integration_tests::repo_root().join("integration-tests/python/sdk_check.py");
    let out = tokio::time::timeout(
        Duration::from_secs(120),
        tokio::process::Command::new(&py)
            .arg(&script)
            .arg(format!("http://{addr}/v1"))
            .arg(format!("http://{addr}/anthropic"))
            .output(),
    )
    .await
    .expect("SDK script timed out")
    .expect("run SDK script");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "SDK script failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let checks: Vec<serde_json::Value> = stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let check = |name: &str| {
        checks
            .iter()
            .find(|c| c["check"] == name)
            .cloned()
            .unwrap_or_default()
    };

    let expected = brownout_sim::answer_text("gpt-4o-mini", "Say something about brownouts.", 8);
    let chat = check("openai_chat");
    assert_eq!(chat["content"], expected.as_str());
    assert_eq!(chat["finish"], "stop");
    assert_eq!(chat["completion_tokens"], 8);
    let streamed = check("openai_stream");
    assert_eq!(
        streamed["content"],
        expected.as_str(),
        "streamed deltas must join to the same text"
    );
    assert_eq!(streamed["completion_tokens"], 8);

    let rl = check("openai_429");
    assert_eq!(rl["raised"], "RateLimitError");
    assert_eq!(rl["status"], 429);
    assert_eq!(rl["code"], "rate_limit_exceeded");
    assert!(
        rl["request_id"]
            .as_str()
            .is_some_and(|s| s.starts_with("req_")),
        "{rl}"
    );

    let ov = check("anthropic_overloaded");
    assert_eq!(ov["raised"], "OverloadedError");
    assert_eq!(ov["status"], 529);
    assert!(
        ov["request_id"]
            .as_str()
            .is_some_and(|s| s.starts_with("req_")),
        "{ov}"
    );

    running.shared.recorder.settle(Duration::from_secs(5));
    let shared = running.shared.clone();
    running.shutdown().await;
    drop(shared);
    let text = std::fs::read_to_string(&records).unwrap();
    assert!(
        !text.contains("secret-test-key"),
        "API keys must never reach records"
    );
    let recs: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    // 2 good calls + 3 attempts at the 429 (the SDK retries twice) + 2 at the 529.
    assert_eq!(recs.len(), 7, "{text}");
    let mut attempts: Vec<i64> = recs
        .iter()
        .filter(|r| {
            r["rules"]
                .as_array()
                .is_some_and(|a| a.iter().any(|x| x == "drill-429"))
        })
        .map(|r| r["attempt"].as_i64().unwrap_or(-1))
        .collect();
    attempts.sort();
    assert_eq!(
        attempts,
        vec![0, 1, 2],
        "each SDK retry is one recorded exchange with its retry count"
    );
    assert!(
        recs.iter()
            .filter(|r| r["outcome"] == "injected_error")
            .count()
            == 5
    );
    sim.shutdown().await;
}
