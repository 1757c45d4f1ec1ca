//! Count schedules (docs/profiles.md, "Schedules") through the real proxy: "fail the first N,
//! then succeed", per rule and per call, and retries that draw afresh under
//! `x-brownout-seq`. `python_sdk_schedule.rs` drives the same with the openai SDK.

use brownout_faults::decide::{attempt_ordinal, decide, rule_id};
use brownout_integration_tests::*;
use http::Request;

const PROFILE: &str = r#"
version: 1
name: schedules
rules:
  - name: first-two
    match: {path: /first}
    schedule: {first: 2}
    faults: [{type: error, status: 503}]
  - name: every-third
    match: {path: /every}
    schedule: {every: 3, per: rule}
    faults: [{type: error, status: 503}]
  - name: per-call
    match: {path: /call}
    schedule: {first: 2, per: call}
    faults: [{type: error, status: 503}]
  - name: coin
    match: {path: /coin}
    probability: 0.5
    faults: [{type: error, status: 429}]
"#;

const SEED: u64 = 11;

async fn proxy() -> (Upstream, TestProxy) {
    let up = Upstream::start(|_req| async { reply(200, "ok") }).await;
    let proxy = ProxyBuilder::new(up.url())
        .seed(SEED)
        .profile(PROFILE)
        .start()
        .await;
    (up, proxy)
}

fn post(url: String, body: &str, headers: &[(&str, String)]) -> Request<Body> {
    let mut b = Request::post(url).header("content-type", "application/json");
    for (k, v) in headers {
        b = b.header(*k, v.as_str());
    }
    b.body(full(body.to_string())).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn per_rule_schedules_fail_exactly_the_requests_they_name() {
    let (_up, proxy) = proxy().await;
    let c = http1_client();
    let mut first = Vec::new();
    for _ in 0..6 {
        first.push(
            send(&c, get(proxy.url("/first")))
                .await
                .unwrap()
                .status
                .as_u16(),
        );
    }
    assert_eq!(first, [503, 503, 200, 200, 200, 200]);
    let mut failed = Vec::new();
    for i in 1..=30 {
        let r = send(&c, get(proxy.url("/every"))).await.unwrap();
        if r.status == 503 {
            failed.push(i);
        }
    }
    assert_eq!(
        failed,
        [3, 6, 9, 12, 15, 18, 21, 24, 27, 30],
        "exactly every third request fails"
    );
    let recs = proxy.wait_records(36).await;
    let every: Vec<bool> = recs
        .iter()
        .filter(|r| r["path"] == "/every")
        .map(|r| r["rules"].as_array().is_some_and(|a| !a.is_empty()))
        .collect();
    assert_eq!(every.len(), 30);
    assert_eq!(every.iter().filter(|f| **f).count(), 10, "records agree");
}

/// A client that retries with fresh calls and no retry count (curl in a loop,
/// LiteLLM, LangChain): the same request from the same client is the same call.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn per_call_counts_fresh_call_retries_by_fingerprint() {
    let (_up, proxy) = proxy().await;
    let c = http1_client();
    let key = |k: &str| vec![("authorization", format!("Bearer {k}"))];
    let mut got = Vec::new();
    // Two calls interleaved (different bodies), each tried until it gets through.
    for _ in 0..3 {
        for body in [r#"{"q":"a"}"#, r#"{"q":"b"}"#] {
            let r = send(&c, post(proxy.url("/call"), body, &key("one"))).await;
            got.push(r.unwrap().status.as_u16());
        }
    }
    assert_eq!(got, [503, 503, 503, 503, 200, 200]);
    // The same request again, after it got through, is a new call; another
    // client's identical request is another call.
    let mut again = Vec::new();
    for k in ["one", "two", "one", "two", "one", "two"] {
        let r = send(&c, post(proxy.url("/call"), r#"{"q":"a"}"#, &key(k))).await;
        again.push(r.unwrap().status.as_u16());
    }
    assert_eq!(again, [503, 503, 503, 503, 200, 200]);
}

/// The SDKs' and the drill's retry count numbers the attempts, so identical calls
/// sent one after another each fail twice and get through on the third attempt.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn per_call_follows_the_retry_count_and_the_seq() {
    let (_up, proxy) = proxy().await;
    let c = http1_client();
    for _ in 0..3 {
        let mut got = Vec::new();
        for retry in 0..3 {
            let h = [("x-stainless-retry-count", retry.to_string())];
            let r = send(&c, post(proxy.url("/call"), "{}", &h)).await.unwrap();
            got.push(r.status.as_u16());
        }
        assert_eq!(got, [503, 503, 200]);
    }
    // By seq alone: each seq is a call of its own, whatever the body.
    let mut got = Vec::new();
    for seq in [1, 2, 1, 2, 1, 2] {
        let h = [("x-brownout-seq", seq.to_string())];
        let r = send(&c, post(proxy.url("/call"), "{}", &h)).await.unwrap();
        got.push(r.status.as_u16());
    }
    assert_eq!(got, [503, 503, 503, 503, 200, 200]);
    let recs = proxy.wait_records(15).await;
    let attempts: Vec<Option<u64>> = recs.iter().take(9).map(|r| r["attempt"].as_u64()).collect();
    assert_eq!(
        attempts,
        [0, 1, 2, 0, 1, 2, 0, 1, 2].map(Some),
        "records carry the attempt"
    );
}

/// As the drill client does: `x-brownout-seq` per call and `x-stainless-retry-count`
/// per attempt, two retries. With the decision's ordinal (seq, retry count), a
/// retried call draws afresh, so at p = 0.5 a call fails all three attempts an
/// eighth of the time, as it would against a provider failing half its requests,
/// not half the time (which a retry repeating its first draw would give).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn seq_retries_recover_at_the_rate_the_probability_implies() {
    let (_up, proxy) = proxy().await;
    let c = http1_client();
    let calls = 400u64;
    let mut failed_calls = 0;
    let mut attempts = 0;
    let mut retried = 0;
    let mut retry_failed = 0;
    for seq in 0..calls {
        let mut ok = false;
        for retry in 0..3u32 {
            attempts += 1;
            let h = [
                ("x-brownout-seq", seq.to_string()),
                ("x-stainless-retry-count", retry.to_string()),
            ];
            let r = send(&c, post(proxy.url("/coin"), "{}", &h)).await.unwrap();
            let faulted = r.status == 429;
            // Each attempt decides exactly as the seeded stream says.
            let want = decide(SEED, rule_id("coin"), attempt_ordinal(seq, retry), 0.5).is_some();
            assert_eq!(faulted, want, "seq {seq} retry {retry}");
            if retry > 0 {
                retried += 1;
                retry_failed += usize::from(faulted);
            }
            if !faulted {
                ok = true;
                break;
            }
        }
        failed_calls += usize::from(!ok);
    }
    let fail_rate = failed_calls as f64 / calls as f64;
    assert!(
        (0.07..=0.19).contains(&fail_rate),
        "calls failing all 3 attempts: {fail_rate} (0.125 expected)"
    );
    let retry_rate = retry_failed as f64 / retried as f64;
    assert!(
        (0.4..=0.6).contains(&retry_rate),
        "retries faulted at {retry_rate} (0.5 expected, not 1)"
    );
    assert!(attempts > calls as usize);
}
