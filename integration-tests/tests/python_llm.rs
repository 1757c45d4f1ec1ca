//! LLM faults proven with real clients: the official OpenAI and Anthropic Python
//! SDKs, through brownout, to the simulated upstream.
//!
//! Each test runs `integration-tests/python/llm_check.py` for some of its cases
//! against a fresh proxy (one listener per API, plus one in front of a capturing
//! upstream) whose profile has one rule per case, matched on an `x-case` header
//! and named like the case. The script reports what the SDK user saw (exception
//! class, tokens received before it, timings, parsed text); the test asserts on
//! that and on brownout's records of the same exchanges.
//!
//! The SDKs come from the cached `sdk` Python environment, pinned by
//! `integration-tests/python/requirements.txt` (`integration-tests/python/venv.sh`).
//! Timing bounds are generous on purpose: the machine running CI is shared.

use std::time::Duration;

use brownout::config::{FileConfig, ListenerConfig};
use brownout::{start, StartOptions};
use brownout_faults::ApiKind;
use brownout_integration_tests::{full, Captured, Captures, Upstream};
use serde_json::Value;

/// One rule per case; `x-case: NAME` selects it, and records name it.
const PROFILE: &str = r#"
version: 1
name: python-llm
rules:
  - name: preset_429
    match: {headers: {x-case: preset_429}}
    faults:
      - type: error
        preset: openai.rate_limit_requests
        retry_after: 200ms
  - name: should_not_retry
    match: {headers: {x-case: should_not_retry}}
    faults:
      - type: error
        preset: openai.rate_limit_requests
        retry_after: 200ms
        headers: {x-should-retry: "false"}
  - name: overloaded
    match: {headers: {x-case: overloaded}}
    faults:
      - type: error
        preset: anthropic.overloaded
  - name: rpm2
    match: {headers: {x-case: rpm2}}
    faults:
      - type: rate_limit
        requests_per_minute: 2
  - name: tpm
    match: {headers: {x-case: tpm}}
    faults:
      - type: rate_limit
        tokens_per_minute: 100
  - name: rpm60
    match: {headers: {x-case: rpm60}}
    faults:
      - type: rate_limit
        requests_per_minute: 60
  - name: anthropic_rpm1
    match: {headers: {x-case: anthropic_rpm1}}
    faults:
      - type: rate_limit
        requests_per_minute: 1
  - name: stream_error
    match: {headers: {x-case: stream_error}}
    faults:
      - type: stream_error
        after_tokens: 3
  - name: timing
    match: {headers: {x-case: timing}}
    faults:
      - type: first_token_delay
        duration: 400ms
      - type: token_delay
        duration: 50ms
  - name: truncate_nt
    match: {headers: {x-case: truncate_nt}}
    faults:
      - type: truncate
        after_tokens: 4
        ending: no_terminator
  - name: truncate_clean
    match: {headers: {x-case: truncate_clean}}
    faults:
      - type: truncate
        after_tokens: 4
        ending: clean
  - name: corrupt
    match: {headers: {x-case: corrupt}}
    faults:
      - type: corrupt
        mode: invalid_json
        rate: 1
  - name: garble
    match: {headers: {x-case: garble}}
    faults:
      - type: garble
        fraction: 0.5
  - name: empty
    match: {headers: {x-case: empty}}
    faults:
      - type: empty_completion
  - name: finish_length
    match: {headers: {x-case: finish_length}}
    faults:
      - type: finish_reason
        value: length
  - name: anthropic_finish
    match: {headers: {x-case: anthropic_finish}}
    faults:
      - type: finish_reason
        value: max_tokens
"#;

const PROMPT: &str = "Say something about brownouts.";
const MODEL: &str = "gpt-4o-mini";

fn listener(name: &str, upstream: String, api: ApiKind) -> ListenerConfig {
    ListenerConfig {
        name: Some(name.into()),
        listen: "127.0.0.1:0".into(),
        upstream,
        api: Some(api),
        ..Default::default()
    }
}

/// What one run of the script gave: its checks, brownout's records, and the
/// requests the capturing upstream saw.
struct Run {
    checks: Vec<Value>,
    records: Vec<Value>,
    captured: Vec<Captured>,
}

impl Run {
    /// The script's report for `name` (panics when it did not report it).
    fn check(&self, name: &str) -> &Value {
        self.checks
            .iter()
            .find(|c| c["check"] == name)
            .unwrap_or_else(|| panic!("no check `{name}` in {:#?}", self.checks))
    }

    /// Records of exchanges where `rule` fired, oldest first.
    fn records_of(&self, rule: &str) -> Vec<&Value> {
        self.records
            .iter()
            .filter(|r| {
                r["rules"]
                    .as_array()
                    .is_some_and(|a| a.iter().any(|x| x == rule))
            })
            .collect()
    }

    /// The one record where `rule` fired.
    fn record_of(&self, rule: &str) -> &Value {
        let recs = self.records_of(rule);
        assert_eq!(recs.len(), 1, "one record for `{rule}`: {recs:#?}");
        recs[0]
    }
}

/// A chat completion the capturing upstream answers with.
const CAPTURE_ANSWER: &str = r#"{"id":"chatcmpl-cap","object":"chat.completion","created":1,"model":"gpt-4o-mini","choices":[{"index":0,"message":{"role":"assistant","content":"captured"},"finish_reason":"stop"}],"usage":{"prompt_tokens":8,"completion_tokens":1,"total_tokens":9}}"#;

/// Start a sim, a capturing upstream and the proxy; run the script's `cases`;
/// return what came back.
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
    let caps = Captures::default();
    let c = caps.clone();
    let capture = Upstream::start(move |req| {
        let c = c.clone();
        async move {
            c.record(Captured::read(req).await);
            let mut r = http::Response::new(full(CAPTURE_ANSWER));
            r.headers_mut()
                .insert("content-type", "application/json".parse().unwrap());
            r
        }
    })
    .await;
    let config = FileConfig {
        listeners: vec![
            listener("openai", format!("http://{}", sim.addr), ApiKind::Openai),
            listener(
                "anthropic",
                format!("http://{}", sim.addr),
                ApiKind::Anthropic,
            ),
            listener("capture", capture.url(), ApiKind::Openai),
        ],
        allow_header_faults: true,
        // As in a config file (`FileConfig::default()` has it off).
        mark_injected: true,
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
    let addr = |n: &str| running.addr(Some(n)).unwrap();

    let script =
        brownout_integration_tests::repo_root().join("integration-tests/python/llm_check.py");
    let out = tokio::time::timeout(
        Duration::from_secs(60),
        tokio::process::Command::new(&py)
            .arg(&script)
            .arg(format!("http://{}/v1", addr("openai")))
            .arg(format!("http://{}", addr("anthropic")))
            .arg(format!("http://{}/v1", addr("capture")))
            .args(cases)
            .kill_on_drop(true)
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
    let checks: Vec<Value> = stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    if let Some(e) = checks.iter().find(|c| c["check"] == "script_error") {
        panic!(
            "the SDK script broke in case {}:\n{}",
            e["case"],
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
    let captured = caps.all();
    drop(capture);
    Run {
        checks,
        records,
        captured,
    }
}

fn f(v: &Value) -> f64 {
    v.as_f64().unwrap_or_else(|| panic!("not a number: {v}"))
}

/// OpenAI's `x-ratelimit-reset-*` format: a Go duration such as `644ms`, `1.5s`,
/// `59.984s` or `6m0s`.
fn is_go_duration(s: &str) -> bool {
    fn num(s: &str) -> bool {
        let mut parts = s.splitn(2, '.');
        let int = parts.next().unwrap_or("");
        let frac = parts.next();
        !int.is_empty()
            && int.bytes().all(|b| b.is_ascii_digit())
            && frac.is_none_or(|f| !f.is_empty() && f.bytes().all(|b| b.is_ascii_digit()))
    }
    if let Some(ms) = s.strip_suffix("ms") {
        return !ms.is_empty() && ms.bytes().all(|b| b.is_ascii_digit());
    }
    let Some(rest) = s.strip_suffix('s') else {
        return false;
    };
    let (hm, secs) = match rest.rfind(['m', 'h']) {
        Some(i) => (&rest[..=i], &rest[i + 1..]),
        None => ("", rest),
    };
    let hm_ok = hm.is_empty() || {
        let h_ok = |x: &str| !x.is_empty() && x.bytes().all(|b| b.is_ascii_digit());
        match hm.strip_suffix('m') {
            Some(m) => match m.split_once('h') {
                Some((h, m)) => h_ok(h) && h_ok(m),
                None => h_ok(m),
            },
            None => false,
        }
    };
    hm_ok && num(secs)
}

#[test]
fn go_duration_shape() {
    for ok in ["644ms", "1s", "1.5s", "59.984s", "6m0s", "1h2m3.5s"] {
        assert!(is_go_duration(ok), "{ok}");
    }
    for bad in ["", "s", "1.s", "60", "1m", "2025-01-01T00:00:00Z", "1.5ms"] {
        assert!(!is_go_duration(bad), "{bad}");
    }
}

/// An injected 429 is retried by openai-python exactly as a real one: twice, each
/// after the `retry-after-ms` the preset sends, then `RateLimitError`. The same
/// 429 with `x-should-retry: false` is not retried at all.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openai_sdk_retries_an_injected_429_as_designed() {
    let run = run(&["preset_429", "should_not_retry"]).await;

    let c = run.check("preset_429");
    assert_eq!(c["raised"], "RateLimitError", "{c}");
    assert_eq!(c["status"], 429);
    assert_eq!(c["headers"]["retry-after-ms"], "200", "{c}");
    assert!(
        f(&c["elapsed"]) >= 0.38,
        "two waits of retry-after-ms 200 each: {c}"
    );
    assert!(f(&c["elapsed"]) < 5.0, "{c}");
    let recs = run.records_of("preset_429");
    let attempts: Vec<i64> = recs
        .iter()
        .map(|r| r["attempt"].as_i64().unwrap())
        .collect();
    assert_eq!(attempts, vec![0, 1, 2], "{recs:#?}");
    for r in &recs {
        assert_eq!(r["status"], 429);
        assert_eq!(r["outcome"], "injected_error");
        assert!(r["upstream"].is_null(), "the upstream is not called: {r}");
    }

    let c = run.check("should_not_retry");
    assert_eq!(c["raised"], "RateLimitError", "{c}");
    assert_eq!(c["headers"]["x-should-retry"], "false", "{c}");
    let recs = run.records_of("should_not_retry");
    assert_eq!(
        recs.len(),
        1,
        "x-should-retry: false stops retries: {recs:#?}"
    );
    assert_eq!(recs[0]["attempt"], 0);
    assert_eq!(recs[0]["outcome"], "injected_error");
}

/// `anthropic.overloaded` ends in `OverloadedError` (529) after the SDK's two
/// retries.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn anthropic_sdk_raises_overloaded_after_retries() {
    let run = run(&["overloaded"]).await;
    let c = run.check("overloaded");
    assert_eq!(c["raised"], "OverloadedError", "{c}");
    assert_eq!(c["module"], "anthropic");
    assert_eq!(c["status"], 529);
    assert!(
        c["headers"]["request-id"]
            .as_str()
            .is_some_and(|s| s.starts_with("req_011C")),
        "{c}"
    );
    let recs = run.records_of("overloaded");
    let attempts: Vec<i64> = recs
        .iter()
        .map(|r| r["attempt"].as_i64().unwrap())
        .collect();
    assert_eq!(attempts, vec![0, 1, 2], "{recs:#?}");
    assert!(recs
        .iter()
        .all(|r| r["status"] == 529 && r["outcome"] == "injected_error"));
}

/// `rate_limit` answers the request over the limit with OpenAI's own 429 and
/// headers true to the bucket; a `tokens_per_minute` bucket charges the prompt
/// estimate plus `max_tokens`; Anthropic's listener answers with
/// `anthropic-ratelimit-*` headers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rate_limit_429s_carry_true_headers() {
    let run = run(&["rpm2", "tpm", "anthropic_rpm1"]).await;

    let c = run.check("rpm2");
    let res = c["results"].as_array().unwrap();
    assert_eq!(res.len(), 3);
    assert_eq!(res[0]["raised"], Value::Null, "{c}");
    assert_eq!(res[1]["raised"], Value::Null, "{c}");
    let third = &res[2];
    assert_eq!(third["raised"], "RateLimitError", "{c}");
    assert_eq!(third["status"], 429);
    let h = &third["headers"];
    assert_eq!(h["x-ratelimit-limit-requests"], "2", "{h}");
    assert_eq!(h["x-ratelimit-remaining-requests"], "0", "{h}");
    let reset = h["x-ratelimit-reset-requests"].as_str().unwrap();
    assert!(is_go_duration(reset), "reset {reset:?} in {h}");
    // The next request fits in ~30 s (2/min refills one every 30 s).
    let retry_ms: f64 = h["retry-after-ms"].as_str().unwrap().parse().unwrap();
    assert!((25_000.0..=30_000.0).contains(&retry_ms), "{h}");
    assert_eq!(h["retry-after"], "30", "{h}");
    assert_eq!(third["body"]["type"], "requests", "{c}");
    assert_eq!(third["body"]["code"], "rate_limit_exceeded", "{c}");
    let msg = third["body"]["message"].as_str().unwrap();
    assert!(
        msg.starts_with(&format!(
            "Rate limit reached for {MODEL} in organization org-brownout on requests per min (RPM): Limit 2, Used 2, Requested 1."
        )),
        "{msg}"
    );
    // Every request the rule matched names it; only the third had the fault
    // applied, and that one never reached the upstream.
    let recs = run.records_of("rpm2");
    assert_eq!(recs.len(), 3, "{recs:#?}");
    for r in &recs[..2] {
        assert_eq!(r["status"], 200, "{r}");
        assert_eq!(r["outcome"], "ok", "{r}");
        assert_eq!(r["faults"], serde_json::json!([]), "{r}");
    }
    assert_eq!(recs[2]["status"], 429);
    assert_eq!(recs[2]["outcome"], "injected_error");
    assert_eq!(recs[2]["faults"][0]["fault"], "rate_limit", "{}", recs[2]);
    assert!(recs[2]["upstream"].is_null(), "{}", recs[2]);
    assert_eq!(
        recs[2]["model"], MODEL,
        "the body was read for the 429's message"
    );
    let all: Vec<&Value> = run
        .records
        .iter()
        .filter(|r| r["path"] == "/v1/chat/completions" && r["listener"] == "openai")
        .collect();
    assert_eq!(all.len(), 5, "3 rpm2 + 2 tpm requests: {all:#?}");

    // tpm: 100 tokens a minute; each request is charged ceil(30 chars / 4) = 8
    // prompt tokens + max_tokens 60 = 68, so the second does not fit.
    let c = run.check("tpm");
    let res = c["results"].as_array().unwrap();
    assert_eq!(res[0]["raised"], Value::Null, "{c}");
    let second = &res[1];
    assert_eq!(second["raised"], "RateLimitError", "{c}");
    let h = &second["headers"];
    assert_eq!(h["x-ratelimit-limit-tokens"], "100", "{h}");
    // 100 - 68 = 32 left, plus what refilled (100/min) while the first answer
    // streamed its 60 tokens.
    let remaining: u64 = h["x-ratelimit-remaining-tokens"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((32..=35).contains(&remaining), "{h}");
    assert!(
        is_go_duration(h["x-ratelimit-reset-tokens"].as_str().unwrap()),
        "{h}"
    );
    assert!(
        h.get("x-ratelimit-limit-requests").is_none(),
        "no RPM bucket, no RPM headers: {h}"
    );
    assert_eq!(second["body"]["type"], "tokens", "{c}");
    let msg = second["body"]["message"].as_str().unwrap();
    assert!(
        msg.contains(&format!(
            "on tokens per min (TPM): Limit 100, Used {}, Requested 68.",
            100 - remaining
        )),
        "{msg}"
    );
    // 68 - remaining tokens short at 100/min: 0.6 s a token.
    let retry_ms: f64 = h["retry-after-ms"].as_str().unwrap().parse().unwrap();
    let short = (68 - remaining) as f64;
    assert!(
        retry_ms <= short * 600.0 && retry_ms > (short - 1.0) * 600.0,
        "{h}"
    );
    let recs = run.records_of("tpm");
    assert_eq!(recs.len(), 2, "{recs:#?}");
    assert_eq!(
        recs[1]["input_tokens"], 8,
        "the prompt estimate: {}",
        recs[1]
    );

    let c = run.check("anthropic_rpm1");
    let res = c["results"].as_array().unwrap();
    assert_eq!(res[0]["raised"], Value::Null, "{c}");
    let second = &res[1];
    assert_eq!(second["raised"], "RateLimitError", "{c}");
    assert_eq!(second["module"], "anthropic");
    assert_eq!(second["status"], 429);
    let h = &second["headers"];
    assert_eq!(h["anthropic-ratelimit-requests-limit"], "1", "{h}");
    assert_eq!(h["anthropic-ratelimit-requests-remaining"], "0", "{h}");
    let reset = h["anthropic-ratelimit-requests-reset"].as_str().unwrap();
    assert!(
        reset.len() == 20 && reset.ends_with('Z') && reset.as_bytes()[10] == b'T',
        "RFC 3339 reset: {reset}"
    );
    let retry: u64 = h["retry-after"].as_str().unwrap().parse().unwrap();
    assert!((55..=60).contains(&retry), "{h}");
    assert_eq!(second["body"]["error"]["type"], "rate_limit_error", "{c}");
    assert_eq!(
        second["body"]["request_id"], h["request-id"],
        "the body repeats the request-id header"
    );
    let recs = run.records_of("anthropic_rpm1");
    assert_eq!(recs.len(), 2, "{recs:#?}");
    assert_eq!(recs[0]["status"], 200);
    assert_eq!(recs[1]["status"], 429);
    assert_eq!(recs[1]["outcome"], "injected_error");
    assert_eq!(recs[1]["listener"], "anthropic");
}

/// With retries allowed, the SDK waits what the 429 says and then fits: the
/// retry hint is true to the bucket.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sdk_retry_after_a_rate_limit_succeeds() {
    let run = run(&["rpm60"]).await;
    let c = run.check("rpm60");
    assert_eq!(c["raised"], Value::Null, "the SDK's retry must fit: {c}");
    let expected = brownout_sim::answer_text(MODEL, PROMPT, 4);
    assert_eq!(c["content"], expected.as_str());
    assert!(f(&c["elapsed"]) >= 0.25, "it waited for the bucket: {c}");
    let sdk: Vec<&Value> = run.records.iter().filter(|r| r["model"] == MODEL).collect();
    let seen: Vec<(i64, i64)> = sdk
        .iter()
        .map(|r| {
            (
                r["attempt"].as_i64().unwrap(),
                r["status"].as_i64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        seen,
        vec![(0, 429), (1, 200)],
        "one 429, then the retry after retry-after-ms fits: {sdk:#?}"
    );
}

/// `stream_error` raises from inside the iteration, after the tokens before it
/// arrived; neither SDK retries it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stream_error_raises_mid_stream() {
    let run = run(&["stream_error"]).await;
    let expected = brownout_sim::answer_text(MODEL, PROMPT, 16);

    let c = run.check("openai_stream_error");
    assert_eq!(c["raised"], "APIError", "{c}");
    assert_eq!(
        c["exact"], true,
        "exactly openai.APIError, no subclass: {c}"
    );
    assert_eq!(c["status"], Value::Null, "{c}");
    assert!(
        c["message"]
            .as_str()
            .unwrap()
            .contains("The server had an error while processing your request"),
        "{c}"
    );
    assert_eq!(c["tokens"], 3, "{c}");
    assert!(
        expected.starts_with(c["content"].as_str().unwrap()),
        "the three tokens are the answer's start: {c} vs {expected:?}"
    );

    for name in ["anthropic_stream_error", "anthropic_stream_error_helper"] {
        let c = run.check(name);
        assert_eq!(c["raised"], "APIStatusError", "{name}: {c}");
        assert_eq!(c["module"], "anthropic");
        assert_eq!(c["status"], 200, "the stream's own status: {c}");
        assert!(c["message"].as_str().unwrap().contains("Overloaded"), "{c}");
        assert_eq!(c["tokens"], 3, "{name}: {c}");
    }

    let recs = run.records_of("stream_error");
    assert_eq!(recs.len(), 3, "one per stream, no retries: {recs:#?}");
    for r in recs {
        assert_eq!(r["status"], 200);
        assert_eq!(r["outcome"], "injected_error", "{r}");
        assert_eq!(r["attempt"], 0);
        assert_eq!(r["faults"][0]["fault"], "stream_error", "{r}");
    }
}

/// `first_token_delay` and `token_delay` show in what the SDK consumer measures
/// and in the record.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stream_timing_faults_are_what_the_client_measures() {
    let run = run(&["timing"]).await;
    let c = run.check("timing");
    assert_eq!(c["raised"], Value::Null, "{c}");
    assert_eq!(c["tokens"], 8, "{c}");
    assert_eq!(
        c["content"],
        brownout_sim::answer_text(MODEL, PROMPT, 8).as_str(),
        "timing faults leave the text alone"
    );
    assert!(f(&c["ttft"]) >= 0.4, "TTFT as the client saw it: {c}");
    let gaps: Vec<f64> = c["gaps"].as_array().unwrap().iter().map(f).collect();
    assert_eq!(gaps.len(), 7);
    let mean = gaps.iter().sum::<f64>() / gaps.len() as f64;
    assert!(mean >= 0.04, "mean gap {mean} s: {gaps:?}");

    let r = run.record_of("timing");
    assert_eq!(r["outcome"], "ok", "{r}");
    assert!(f(&r["ttft_ms"]) >= 400.0, "{r}");
    assert!(f(&r["itl_ms"]["p50"]) >= 45.0, "{r}");
    assert!(f(&r["tpot_ms"]) >= 45.0, "{r}");
    assert_eq!(r["output_tokens"], 8, "{r}");
    let kinds: Vec<&str> = r["faults"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x["fault"].as_str().unwrap())
        .collect();
    assert_eq!(kinds, ["first_token_delay", "token_delay"], "{r}");
}

/// `truncate`: without a terminator openai-python ends quietly and
/// anthropic-python gives `stop_reason=None`; with a clean ending neither can
/// tell (Anthropic says `end_turn`). Records say `truncated` with 4 tokens.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn truncated_streams_as_the_sdks_see_them() {
    let run = run(&["truncate"]).await;
    let full_answer = brownout_sim::answer_text(MODEL, PROMPT, 16);

    let c = run.check("openai_truncate_no_terminator");
    assert_eq!(c["raised"], Value::Null, "iteration ends quietly: {c}");
    assert_eq!(c["tokens"], 4, "{c}");
    assert_eq!(c["finish"], Value::Null, "no finish_reason arrives: {c}");
    assert!(
        full_answer.starts_with(c["content"].as_str().unwrap()),
        "{c}"
    );

    let c = run.check("anthropic_truncate_no_terminator");
    assert_eq!(c["raised"], Value::Null, "raw iteration ends quietly: {c}");
    assert_eq!(c["tokens"], 4, "{c}");
    assert_eq!(c["stop_reason"], Value::Null, "{c}");
    let c = run.check("anthropic_truncate_no_terminator_helper");
    assert_eq!(c["raised"], Value::Null, "{c}");
    assert_eq!(c["tokens"], 4, "{c}");
    assert_eq!(c["final_text"], c["content"], "{c}");
    assert_eq!(c["stop_reason"], Value::Null, "only stop_reason tells: {c}");

    let c = run.check("openai_truncate_clean");
    assert_eq!(c["raised"], Value::Null, "{c}");
    assert_eq!(c["tokens"], 4, "{c}");
    assert_eq!(
        c["finish"],
        Value::Null,
        "[DONE] right after the 4th token: {c}"
    );
    let c = run.check("anthropic_truncate_clean_helper");
    assert_eq!(c["raised"], Value::Null, "{c}");
    assert_eq!(c["tokens"], 4, "{c}");
    assert_eq!(c["stop_reason"], "end_turn", "a silently short answer: {c}");
    assert_eq!(c["output_tokens"], 4, "{c}");

    let nt = run.records_of("truncate_nt");
    assert_eq!(nt.len(), 3, "{nt:#?}");
    let clean = run.records_of("truncate_clean");
    assert_eq!(clean.len(), 2, "{clean:#?}");
    for r in nt.iter().chain(clean.iter()) {
        assert_eq!(r["status"], 200);
        assert_eq!(r["outcome"], "truncated", "{r}");
        assert_eq!(r["output_tokens"], 4, "{r}");
        assert_eq!(r["faults"][0]["fault"], "truncate", "{r}");
    }
}

/// `corrupt {mode: invalid_json}` breaks the stream's JSON: both SDKs raise
/// `json.JSONDecodeError` (not an SDK error class) from inside the iteration.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn corrupt_events_raise_in_the_sdks() {
    let run = run(&["corrupt"]).await;
    for name in ["openai_corrupt", "anthropic_corrupt"] {
        let c = run.check(name);
        assert_eq!(c["raised"], "JSONDecodeError", "{name}: {c}");
        assert_eq!(c["module"], "json", "{c}");
        assert_eq!(c["tokens"], 0, "the first token is already broken: {c}");
    }
    let recs = run.records_of("corrupt");
    assert_eq!(recs.len(), 2, "{recs:#?}");
    for r in recs {
        assert_eq!(r["outcome"], "corrupt", "{r}");
        assert_eq!(r["faults"][0]["fault"], "corrupt", "{r}");
    }
}

/// Content faults on whole answers: the SDK parses them and sees the changed
/// text or finish reason.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn content_faults_reach_the_parsed_answer() {
    let run = run(&["content"]).await;
    let expected = brownout_sim::answer_text(MODEL, PROMPT, 8);

    let c = run.check("garble");
    assert_eq!(c["raised"], Value::Null, "{c}");
    let got = c["content"].as_str().unwrap();
    assert_ne!(got, expected, "{c}");
    assert_eq!(
        got.split_whitespace().count(),
        expected.split_whitespace().count(),
        "words replaced, whitespace kept: {got:?} vs {expected:?}"
    );
    let changed = got
        .split_whitespace()
        .zip(expected.split_whitespace())
        .filter(|(a, b)| a != b)
        .count();
    let words = expected.split_whitespace().count();
    assert!(
        changed >= 1 && changed <= words.div_ceil(2),
        "{got:?} vs {expected:?}"
    );
    assert_eq!(c["finish"], "stop");

    let c = run.check("empty");
    assert_eq!(c["raised"], Value::Null, "{c}");
    assert_eq!(c["content"], "", "{c}");
    assert_eq!(c["finish"], "stop");

    let c = run.check("finish_length");
    assert_eq!(c["raised"], Value::Null, "{c}");
    assert_eq!(c["content"], expected.as_str());
    assert_eq!(c["finish"], "length");

    let c = run.check("anthropic_finish");
    assert_eq!(c["raised"], Value::Null, "{c}");
    assert_eq!(c["stop_reason"], "max_tokens", "{c}");
    assert!(!c["text"].as_str().unwrap().is_empty(), "{c}");

    for (rule, fault) in [
        ("garble", "garble"),
        ("empty", "empty_completion"),
        ("finish_length", "finish_reason"),
        ("anthropic_finish", "finish_reason"),
    ] {
        let r = run.record_of(rule);
        assert_eq!(r["status"], 200, "{r}");
        assert_eq!(r["outcome"], "ok", "{r}");
        assert_eq!(r["faults"][0]["fault"], fault, "{r}");
    }
}

/// `x-brownout-fault` (with `allow_header_faults: true`) gives a per-request
/// fault, and the upstream never sees the header.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn header_faults_from_the_sdk() {
    let run = run(&["header"]).await;
    let c = run.check("header_429");
    assert_eq!(c["raised"], "RateLimitError", "{c}");
    assert_eq!(c["status"], 429);
    assert_eq!(c["headers"]["x-brownout-fault"], "header/error", "{c}");

    let c = run.check("header_delay");
    assert_eq!(c["raised"], Value::Null, "{c}");
    assert_eq!(c["content"], "captured");
    assert!(f(&c["elapsed"]) >= 0.3, "{c}");

    assert_eq!(
        run.captured.len(),
        1,
        "the 429 never reached the upstream; the delayed request did"
    );
    let seen = &run.captured[0];
    assert!(
        seen.headers.get("x-brownout-fault").is_none(),
        "the upstream must not see x-brownout-fault: {:?}",
        seen.headers
    );
    assert!(seen.headers.get("authorization").is_some());

    let recs = run.records_of("header");
    assert_eq!(recs.len(), 2, "{recs:#?}");
    assert_eq!(recs[0]["status"], 429);
    assert_eq!(recs[0]["outcome"], "injected_error");
    assert_eq!(recs[1]["status"], 200);
    assert_eq!(recs[1]["faults"][0]["fault"], "delay");
}
