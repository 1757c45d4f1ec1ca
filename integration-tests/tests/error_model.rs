//! Injected provider errors name the request's model, as the provider's own do:
//! OpenAI's 429 says "Rate limit reached for gpt-4.1-mini in organization ..." for
//! a request naming gpt-4.1-mini, whether or not a rule matches on `model` (the
//! openai SDK and LiteLLM show that message to the user). The body is read for it
//! only up to `inspect_limit` and then travels on to the upstream unchanged; when
//! the model cannot be known (a body over the limit, not JSON) the message names
//! none rather than a wrong one.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use brownout_integration_tests::*;
use http::Request;

const STEP: Duration = Duration::from_secs(10);

const PROFILE: &str = r#"
version: 1
name: model-in-errors
rules:
  - name: rpm
    match: {path: /v1/chat/completions}
    faults: [{type: error, preset: openai.rate_limit_requests}]
  - name: tpm
    match: {path: /v1/responses}
    faults: [{type: error, preset: openai.rate_limit_tokens, retry_after: 2s}]
"#;

fn message(r: &Reply) -> String {
    let j = r.json();
    j["error"]["message"]
        .as_str()
        .unwrap_or_else(|| panic!("no message: {j}"))
        .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openai_rate_limit_presets_name_the_requests_model() {
    let (up, _caps) = Upstream::echo().await;
    let proxy = ProxyBuilder::new(up.url())
        .api(ApiKind::Openai)
        .limits(|l| l.inspect_limit = brownout::config::ByteSize(1024))
        .profile(PROFILE)
        .start()
        .await;
    let c = http1_client();
    let chat = proxy.url("/v1/chat/completions");
    let body = serde_json::json!({"model": "gpt-4.1-mini", "messages": [{"role": "user", "content": "hi"}]});
    let r = within(STEP, "429", send(&c, post_json(&chat, &body)))
        .await
        .unwrap();
    assert_eq!(r.status, 429);
    let m = message(&r);
    assert!(
        m.starts_with(
            "Rate limit reached for gpt-4.1-mini in organization org-brownout on requests per min (RPM)"
        ),
        "{m}"
    );
    assert!(!m.contains("gpt-4o"), "{m}");
    assert_eq!(r.json()["error"]["code"], "rate_limit_exceeded");

    // The tokens preset, another endpoint, over HTTP/2.
    let body = serde_json::json!({"model": "o4-mini", "input": "hello"});
    let r = within(
        STEP,
        "429",
        send(&h2c_client(), post_json(proxy.url("/v1/responses"), &body)),
    )
    .await
    .unwrap();
    assert_eq!(r.status, 429);
    let m = message(&r);
    assert!(
        m.starts_with(
            "Rate limit reached for o4-mini in organization org-brownout on tokens per min (TPM)"
        ),
        "{m}"
    );
    assert!(m.contains("Please try again in 2s."), "{m}");

    // A body sent in pieces (chunked) is read the same way.
    let (tx, chunked) = body_channel();
    let send_chunks = tokio::spawn(async move {
        tx.send(r#"{"messages":[{"role":"user","content":"hi"}],"model":"gpt-4.1-"#)
            .await;
        tokio::time::sleep(Duration::from_millis(20)).await;
        tx.send(r#"mini","stream":true}"#).await;
    });
    let req = Request::post(&chat)
        .header("content-type", "application/json")
        .body(chunked)
        .unwrap();
    let r = within(STEP, "429", send(&c, req)).await.unwrap();
    send_chunks.await.unwrap();
    assert!(
        message(&r).starts_with("Rate limit reached for gpt-4.1-mini in"),
        "{}",
        message(&r)
    );

    // Over inspect_limit, or not JSON: the model cannot be known, and no model is
    // invented.
    let big = serde_json::json!({"model": "gpt-4.1-mini", "messages": [{"role": "user", "content": "x".repeat(4000)}]});
    let not_json = Request::post(&chat)
        .header("content-type", "application/json")
        .body(full("model=gpt-4.1-mini"))
        .unwrap();
    for req in [post_json(&chat, &big), not_json] {
        let r = within(STEP, "429", send(&c, req)).await.unwrap();
        assert_eq!(r.status, 429);
        let m = message(&r);
        assert!(
            m.starts_with(
                "Rate limit reached in organization org-brownout on requests per min (RPM)"
            ),
            "{m}"
        );
        assert!(!m.contains(" for ") && !m.contains("gpt-"), "{m}");
    }
    assert_eq!(up.requests(), 0, "injected errors never reach the upstream");

    let recs = proxy.exactly_records(5).await;
    assert_eq!(recs[0]["model"], "gpt-4.1-mini", "{:#}", recs[0]);
    assert_eq!(recs[1]["model"], "o4-mini");
    assert!(recs[3]["model"].is_null());
}

/// A `stream_error` whose preset names the model reads it from the body too, and the
/// request (read up to `inspect_limit`) still reaches the upstream byte for byte.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mid_stream_error_names_the_model_and_the_body_reaches_the_upstream_whole() {
    let seen: Arc<Mutex<Vec<String>>> = Arc::default();
    let s = seen.clone();
    let up = Upstream::start(move |req| {
        let s = s.clone();
        async move {
            let cap = Captured::read(req).await;
            s.lock().unwrap().push(String::from_utf8_lossy(&cap.body).into_owned());
            let mut sse = String::new();
            for w in ["Hello", " there", " friend"] {
                sse.push_str(&format!(
                    "data: {{\"id\":\"c1\",\"object\":\"chat.completion.chunk\",\"created\":1,\"model\":\"gpt-4.1-mini\",\"choices\":[{{\"index\":0,\"delta\":{{\"content\":\"{w}\"}},\"finish_reason\":null}}]}}\n\n"
                ));
            }
            sse.push_str("data: [DONE]\n\n");
            let mut r = reply(200, sse);
            r.headers_mut()
                .insert("content-type", "text/event-stream".parse().unwrap());
            r
        }
    })
    .await;
    let proxy = ProxyBuilder::new(up.url())
        .api(ApiKind::Openai)
        .limits(|l| l.inspect_limit = brownout::config::ByteSize(1024))
        .profile(
            r#"
version: 1
name: mid-stream
rules:
  - name: cut
    match: {endpoint: chat}
    faults: [{type: stream_error, after_tokens: 1, preset: openai.rate_limit_tokens}]
"#,
        )
        .start()
        .await;
    let body = serde_json::json!({"model": "gpt-4.1-mini", "stream": true, "messages": [{"role": "user", "content": "caf\u{e9} \"quoted\""}]});
    let sent = body.to_string();
    let r = within(
        STEP,
        "stream",
        send(
            &http1_client(),
            post_json(proxy.url("/v1/chat/completions"), &body),
        ),
    )
    .await
    .unwrap();
    assert_eq!(r.status, 200);
    let text = String::from_utf8_lossy(&r.body).to_string();
    assert!(
        text.contains("Rate limit reached for gpt-4.1-mini in organization"),
        "{text}"
    );
    assert!(!text.contains("gpt-4o"), "{text}");
    assert_eq!(
        seen.lock().unwrap().as_slice(),
        [sent],
        "the upstream got the body as sent"
    );
}

/// Anthropic's errors do not name the model (neither do its presets), whatever the
/// request asked for.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn anthropic_presets_name_no_model() {
    let (up, _caps) = Upstream::echo().await;
    let proxy = ProxyBuilder::new(up.url())
        .api(ApiKind::Anthropic)
        .profile(
            r#"
version: 1
name: anthropic
rules:
  - name: limited
    match: {endpoint: messages}
    faults: [{type: error, preset: anthropic.rate_limit}]
"#,
        )
        .start()
        .await;
    let body = serde_json::json!({"model": "claude-sonnet-4-20250514", "max_tokens": 16, "messages": [{"role": "user", "content": "hi"}]});
    let r = within(
        STEP,
        "429",
        send(&http1_client(), post_json(proxy.url("/v1/messages"), &body)),
    )
    .await
    .unwrap();
    assert_eq!(r.status, 429);
    let j = r.json();
    assert_eq!(j["error"]["type"], "rate_limit_error");
    let m = j["error"]["message"].as_str().unwrap();
    assert!(
        m.starts_with("This request would exceed the rate limit"),
        "{m}"
    );
    assert!(!m.contains("claude") && !m.contains("gpt"), "{m}");
}
