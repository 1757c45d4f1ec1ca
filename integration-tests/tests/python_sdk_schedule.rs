//! Count schedules proven with the real openai SDK (from the cached `sdk` Python
//! environment), through brownout, to the simulated OpenAI upstream:
//! `{first: 2, per: call}` lets every call through on its third attempt with the
//! SDK's default two retries and fails it with one; `{every: 3}` fails exactly every
//! third request; and with `x-brownout-seq` a retried call draws afresh, so calls
//! recover at the rate the probability implies.

use std::time::Duration;

use brownout::config::{FileConfig, ListenerConfig};
use brownout::{start, StartOptions};
use brownout_faults::ApiKind;
use serde_json::Value;

const PROFILE: &str = r#"
version: 1
name: schedules-sdk
seed: 5
rules:
  - name: first_two
    match: {headers: {x-case: first_two}}
    schedule: {first: 2, per: call}
    faults:
      - {type: error, preset: openai.rate_limit_requests, retry_after: 10ms}
  - name: first_two_one_retry
    match: {headers: {x-case: first_two_one_retry}}
    schedule: {first: 2, per: call}
    faults:
      - {type: error, preset: openai.rate_limit_requests, retry_after: 10ms}
  - name: every_third
    match: {headers: {x-case: every_third}}
    schedule: {every: 3}
    faults:
      - {type: error, preset: openai.server_error}
  - name: seq_coin
    match: {headers: {x-case: seq_coin}}
    probability: 0.5
    faults:
      - {type: error, preset: openai.rate_limit_requests, retry_after: 1ms}
"#;

struct Run {
    calls: Vec<Value>,
    records: Vec<Value>,
}

impl Run {
    fn of(&self, case: &str) -> Vec<&Value> {
        self.calls.iter().filter(|c| c["case"] == case).collect()
    }

    /// The attempt numbers of the requests where `rule` fired, oldest first.
    fn fired(&self, rule: &str) -> Vec<Option<u64>> {
        self.records
            .iter()
            .filter(|r| {
                r["rules"]
                    .as_array()
                    .is_some_and(|a| a.iter().any(|x| x == rule))
            })
            .map(|r| r["attempt"].as_u64())
            .collect()
    }
}

async fn run(cases: &[&str]) -> Run {
    let py = tokio::task::spawn_blocking(brownout_integration_tests::sdk_python)
        .await
        .unwrap();
    let sim = brownout_sim::spawn(
        "127.0.0.1:0".parse().unwrap(),
        brownout_sim::SimConfig::default(),
    )
    .await
    .unwrap();
    let config = FileConfig {
        listeners: vec![ListenerConfig {
            name: Some("openai".into()),
            listen: "127.0.0.1:0".into(),
            upstream: format!("http://{}", sim.addr),
            api: Some(ApiKind::Openai),
            ..Default::default()
        }],
        ..Default::default()
    };
    let running = start(StartOptions {
        config,
        no_admin: true,
        builtin_profile: Some(PROFILE.into()),
        ..Default::default()
    })
    .await
    .unwrap();
    let base = format!("http://{}/v1", running.addr(Some("openai")).unwrap());
    let mut args = vec![base];
    args.extend(cases.iter().map(|c| c.to_string()));
    let calls = tokio::time::timeout(
        Duration::from_secs(120),
        brownout_integration_tests::run_python_json(&py, "schedule_check.py", &args),
    )
    .await
    .expect("SDK script timed out");
    if let Some(e) = calls.iter().find(|c| c["case"] == "script_error") {
        panic!(
            "the SDK script broke in case {}:\n{}",
            e["name"],
            e["traceback"].as_str().unwrap_or("")
        );
    }
    let recorder = &running.shared.recorder;
    recorder.settle(Duration::from_secs(5));
    let records = recorder
        .recent(usize::MAX)
        .iter()
        .map(|r| serde_json::to_value(r).unwrap())
        .collect();
    running.shutdown().await;
    sim.shutdown().await;
    Run { calls, records }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openai_sdk_gets_through_on_the_third_attempt_every_time() {
    let run = run(&["first_two", "first_two_one_retry"]).await;

    let two = run.of("first_two");
    assert_eq!(two.len(), 5, "{two:#?}");
    for c in &two {
        assert_eq!(c["ok"], true, "{c}");
        assert_eq!(c["retries_taken"], 2, "succeeded on the third attempt: {c}");
        assert!(c["content"].as_str().is_some_and(|t| !t.is_empty()), "{c}");
    }
    // brownout saw attempts 0 and 1 of each call fail, attempt 2 pass.
    assert_eq!(
        run.fired("first_two"),
        [0, 1, 0, 1, 0, 1, 0, 1, 0, 1].map(Some)
    );
    let passed: Vec<&Value> = run.records.iter().filter(|r| r["status"] == 200).collect();
    assert_eq!(passed.len(), 5, "one passing attempt per call: {passed:#?}");
    assert!(passed.iter().all(|r| r["attempt"] == 2), "{passed:#?}");

    let one = run.of("first_two_one_retry");
    assert_eq!(one.len(), 3);
    for c in &one {
        assert_eq!(c["ok"], false, "{c}");
        assert_eq!(c["raised"], "RateLimitError", "{c}");
    }
    assert_eq!(
        run.fired("first_two_one_retry"),
        [0, 1, 0, 1, 0, 1].map(Some)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openai_sdk_sees_exactly_every_third_request_fail() {
    let run = run(&["every_third"]).await;
    let calls = run.of("every_third");
    assert_eq!(calls.len(), 30);
    let failed: Vec<u64> = calls
        .iter()
        .filter(|c| c["ok"] == false)
        .map(|c| c["i"].as_u64().unwrap() + 1)
        .collect();
    assert_eq!(failed, [3, 6, 9, 12, 15, 18, 21, 24, 27, 30]);
    assert!(calls
        .iter()
        .filter(|c| c["ok"] == false)
        .all(|c| c["raised"] == "InternalServerError" && c["status"] == 500));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openai_sdk_retries_under_seq_recover_at_the_rate_the_probability_implies() {
    let run = run(&["seq_coin"]).await;
    let calls = run.of("seq_coin");
    assert_eq!(calls.len(), 200);
    let failed = calls.iter().filter(|c| c["ok"] == false).count();
    let rate = failed as f64 / 200.0;
    // p = 0.5 per attempt, three attempts: 1/8 of calls fail. Were a retry to
    // repeat its call's first draw, half would.
    assert!(
        (0.05..=0.21).contains(&rate),
        "{failed}/200 calls failed all three attempts (25 expected)"
    );
    let first_faulted = calls
        .iter()
        .filter(|c| c["ok"] == false || c["retries_taken"].as_u64() > Some(0))
        .count();
    let recovered = calls
        .iter()
        .filter(|c| c["ok"] == true && c["retries_taken"].as_u64() > Some(0))
        .count();
    let recovery = recovered as f64 / first_faulted as f64;
    assert!(
        (0.6..=0.9).contains(&recovery),
        "{recovered} of {first_faulted} calls faulted at first recovered on a retry (3/4 expected)"
    );
    // Records agree: retries were faulted about half the time.
    let retries: Vec<&Value> = run
        .records
        .iter()
        .filter(|r| r["attempt"].as_u64().is_some_and(|a| a > 0))
        .collect();
    let faulted = retries
        .iter()
        .filter(|r| r["rules"].as_array().is_some_and(|a| !a.is_empty()))
        .count();
    let retry_rate = faulted as f64 / retries.len() as f64;
    assert!(
        (0.35..=0.65).contains(&retry_rate),
        "{faulted} of {} retries faulted",
        retries.len()
    );
}
