//! brownout's faults in-process: `brownout::layer::ChaosLayer` on an axum app,
//! driven over real sockets by hyper and by the official OpenAI Python SDK.
//!
//! The layer is the proxy's own stack with the app in the upstream's place, so
//! the same profile and seed must decide the same faults for the same requests
//! in-process as through the proxy: one test holds them side by side.

use std::net::SocketAddr;

use axum::body::Body as AxumBody;
use axum::http::header;
use axum::routing::post;
use axum::Router;
use brownout::layer::ChaosLayer;
use brownout_faults::ApiKind;
use brownout_integration_tests::*;
use http::Request;
use http_body_util::BodyExt;

const ANSWER: &str = r#"{"id":"chatcmpl-1","object":"chat.completion","created":0,"model":"toy","choices":[{"index":0,"message":{"role":"assistant","content":"Hello from the toy model."},"finish_reason":"stop"}],"usage":{"prompt_tokens":5,"completion_tokens":6,"total_tokens":11}}"#;

/// The toy model's stream: six content chunks, a finish chunk, `[DONE]`.
fn sse() -> String {
    let mut s = String::new();
    for word in ["Hello", " from", " the", " toy", " model", "."] {
        s.push_str(&format!(
            "data: {{\"id\":\"chatcmpl-1\",\"object\":\"chat.completion.chunk\",\"created\":0,\"model\":\"toy\",\"choices\":[{{\"index\":0,\"delta\":{{\"content\":\"{word}\"}},\"finish_reason\":null}}]}}\n\n"
        ));
    }
    s.push_str("data: {\"id\":\"chatcmpl-1\",\"object\":\"chat.completion.chunk\",\"created\":0,\"model\":\"toy\",\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":\"stop\"}]}\n\ndata: [DONE]\n\n");
    s
}

fn answer(stream: bool) -> http::Response<AxumBody> {
    let (ctype, body) = if stream {
        ("text/event-stream", sse())
    } else {
        ("application/json", ANSWER.to_string())
    };
    http::Response::builder()
        .header(header::CONTENT_TYPE, ctype)
        .body(AxumBody::from(body))
        .unwrap()
}

fn wants_stream(body: &[u8]) -> bool {
    serde_json::from_slice::<serde_json::Value>(body)
        .map(|v| v["stream"] == true)
        .unwrap_or(false)
}

/// The app: an OpenAI-compatible chat endpoint that knows nothing of brownout.
fn toy_app() -> Router {
    Router::new().route(
        "/v1/chat/completions",
        post(|body: axum::body::Bytes| async move { answer(wants_stream(&body)) }),
    )
}

/// The layer's records as the JSON lines a proxy writes.
async fn records_of(chaos: &ChaosLayer) -> Vec<serde_json::Value> {
    let records = chaos.records().await;
    records
        .iter()
        .map(|r| serde_json::to_value(r).unwrap())
        .collect()
}

async fn serve(app: Router) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    addr
}

fn chat(url: &str, stream: bool, drill: Option<&str>) -> Request<Body> {
    let mut b = Request::post(url).header("content-type", "application/json");
    if let Some(d) = drill {
        b = b.header("x-drill", d);
    }
    let body = format!(r#"{{"model":"toy","messages":[],"stream":{stream}}}"#);
    b.body(full(body)).unwrap()
}

const PROFILE: &str = r#"
version: 1
name: in-process
seed: 11
rules:
  - name: throttle
    match: {headers: {x-drill: throttle}}
    faults:
      - type: error
        preset: openai.rate_limit_requests
  - name: cut
    match: {headers: {x-drill: cut}, stream: true}
    faults:
      - type: truncate
        after_tokens: 3
  - name: reset
    match: {headers: {x-drill: reset}}
    faults:
      - type: reset
  - name: coin
    match: {headers: {x-drill: coin}}
    probability: 0.5
    faults:
      - type: error
        status: 503
"#;

#[tokio::test]
async fn faults_act_in_process_and_every_call_is_recorded() {
    let chaos = ChaosLayer::from_profile_text(ApiKind::Openai, PROFILE).unwrap();
    let addr = serve(toy_app().layer(chaos.clone())).await;
    let url = format!("http://{addr}/v1/chat/completions");
    let client = http1_client();

    // Untouched: the app's own answer, byte for byte.
    let r = client.request(chat(&url, false, None)).await.unwrap();
    assert_eq!(r.status(), 200);
    assert!(r.headers().get("x-brownout-fault").is_none());
    assert_eq!(collect(r.into_body()).await.unwrap(), ANSWER.as_bytes());

    // OpenAI's own 429, marked.
    let r = client
        .request(chat(&url, false, Some("throttle")))
        .await
        .unwrap();
    assert_eq!(r.status(), 429);
    assert_eq!(r.headers()["x-brownout-fault"], "throttle/error");
    let body: serde_json::Value =
        serde_json::from_slice(&collect(r.into_body()).await.unwrap()).unwrap();
    assert_eq!(body["error"]["code"], "rate_limit_exceeded", "{body}");

    // A stream cut after 3 tokens: no finish chunk, no [DONE].
    let r = client.request(chat(&url, true, Some("cut"))).await.unwrap();
    assert_eq!(r.status(), 200);
    let text = String::from_utf8(collect(r.into_body()).await.unwrap().to_vec()).unwrap();
    assert_eq!(text.matches("\"content\"").count(), 3, "{text}");
    assert!(
        !text.contains("[DONE]") && !text.contains("\"stop\""),
        "{text}"
    );

    // A reset: the client gets no complete answer.
    let r = client.request(chat(&url, false, Some("reset"))).await;
    let broken = match r {
        Err(_) => true,
        Ok(resp) => resp.into_body().collect().await.is_err(),
    };
    assert!(broken, "a reset must break the exchange");

    // The kill switch turns everything off at once.
    chaos.set_faults_off(true);
    let r = client
        .request(chat(&url, false, Some("throttle")))
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    chaos.set_faults_off(false);

    let records = records_of(&chaos).await;
    let outcomes: Vec<_> = records.iter().map(|r| r["outcome"].clone()).collect();
    assert_eq!(
        outcomes,
        ["ok", "injected_error", "truncated", "reset", "ok"],
        "{records:#?}"
    );
    assert_eq!(records[1]["faults"][0]["rule"], "throttle");
    assert_eq!(records[2]["output_tokens"], 3);
    assert!(records
        .iter()
        .all(|r| r["endpoint"] == "chat" && r["api"] == "openai"));
}

/// The same profile and seed decide the same faults for the same requests
/// in-process and through the proxy: 40 coin flips at probability 0.5, and the
/// records of both say the same.
#[tokio::test]
async fn in_process_and_proxy_decide_alike_under_one_seed() {
    let chaos = ChaosLayer::from_profile_text(ApiKind::Openai, PROFILE).unwrap();
    let app = serve(toy_app().layer(chaos.clone())).await;
    let up = Upstream::start(|req| async move {
        let body = collect(req.into_body()).await.unwrap();
        let mut r = reply(
            200,
            if wants_stream(&body) {
                sse()
            } else {
                ANSWER.into()
            },
        );
        r.headers_mut()
            .insert("content-type", "application/json".parse().unwrap());
        r
    })
    .await;
    let proxy = ProxyBuilder::new(up.url())
        .api(ApiKind::Openai)
        .profile(PROFILE)
        .config(|c| c.fast_path = false)
        .start()
        .await;
    let client = http1_client();
    let mut flips = (Vec::new(), Vec::new());
    for _ in 0..40 {
        let a = client
            .request(chat(
                &format!("http://{app}/v1/chat/completions"),
                false,
                Some("coin"),
            ))
            .await
            .unwrap();
        flips.0.push(a.status().as_u16());
        collect(a.into_body()).await.unwrap();
        let b = client
            .request(chat(
                &proxy.url("/v1/chat/completions"),
                false,
                Some("coin"),
            ))
            .await
            .unwrap();
        flips.1.push(b.status().as_u16());
        collect(b.into_body()).await.unwrap();
    }
    let faulted = flips.0.iter().filter(|s| **s == 503).count();
    assert!(
        (8..=32).contains(&faulted),
        "probability 0.5 over 40 calls: {faulted} faulted"
    );
    assert_eq!(flips.0, flips.1, "in-process and proxy must flip alike");

    let here = records_of(&chaos).await;
    let there = proxy.wait_records(40).await;
    assert_eq!(here.len(), 40);
    for (a, b) in here.iter().zip(&there) {
        for field in ["outcome", "status", "rules", "faults", "output_tokens"] {
            assert_eq!(a[field], b[field], "{field}: {a} vs {b}");
        }
    }
}

/// The official OpenAI SDK against the app with in-process faults: its retries
/// meet the 429 three times and give up with `RateLimitError`, and a stream cut
/// short reaches it as three tokens and no finish reason.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_openai_sdk_meets_in_process_faults() {
    let py = tokio::task::spawn_blocking(sdk_python).await.unwrap();
    let chaos = ChaosLayer::from_profile_text(ApiKind::Openai, PROFILE).unwrap();
    let addr = serve(toy_app().layer(chaos.clone())).await;
    let out = run_python_json(&py, "layer_check.py", &[format!("http://{addr}/v1")]).await;
    let by = |name: &str| {
        out.iter()
            .find(|o| o["check"] == name)
            .unwrap_or_else(|| panic!("no {name} in {out:?}"))
            .clone()
    };
    assert_eq!(by("chat")["content"], "Hello from the toy model.");
    let t = by("throttled");
    assert_eq!(t["raised"], "RateLimitError", "{t}");
    assert_eq!(t["status"], 429);
    assert_eq!(t["code"], "rate_limit_exceeded");
    let cut = by("truncated");
    assert_eq!(cut["content"], "Hello from the", "{cut}");
    assert!(cut["finish"].is_null(), "{cut}");

    let records = records_of(&chaos).await;
    let throttled: Vec<_> = records
        .iter()
        .filter(|r| r["rules"] == serde_json::json!(["throttle"]))
        .collect();
    // max_retries=2: the first try and two retries, each counted by the SDK's
    // own x-stainless-retry-count.
    assert_eq!(throttled.len(), 3, "{records:#?}");
    let attempts: Vec<_> = throttled.iter().map(|r| r["attempt"].clone()).collect();
    assert_eq!(attempts, [0, 1, 2]);
    assert!(throttled.iter().all(|r| r["outcome"] == "injected_error"));
}
