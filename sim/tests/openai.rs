//! The simulated OpenAI API over real sockets: wire format, determinism, pacing.

use std::time::Duration;

use brownout_sim::{answer_text, answer_tokens, spawn, SimConfig, SimHandle};
use bytes::Bytes;
use http::{Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use serde_json::{json, Value};
use tokio::time::Instant;

type HttpClient = Client<hyper_util::client::legacy::connect::HttpConnector, Full<Bytes>>;

async fn sim(cfg: SimConfig) -> (SimHandle, HttpClient) {
    let handle = spawn("127.0.0.1:0".parse().unwrap(), cfg).await.unwrap();
    let client = Client::builder(TokioExecutor::new()).build_http();
    (handle, client)
}

async fn post(
    client: &HttpClient,
    sim: &SimHandle,
    path: &str,
    body: Value,
) -> hyper::Response<Incoming> {
    let req = Request::post(format!("{}{path}", sim.url()))
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(body.to_string())))
        .unwrap();
    client.request(req).await.unwrap()
}

async fn body_json(resp: hyper::Response<Incoming>) -> Value {
    let bytes = resp.into_body().collect().await.unwrap().to_bytes();
    serde_json::from_slice(&bytes).unwrap()
}

/// Reads the body frame by frame, with each frame's arrival time.
async fn frames(resp: hyper::Response<Incoming>) -> Vec<(Instant, Bytes)> {
    let mut body = resp.into_body();
    let mut out = Vec::new();
    while let Some(frame) = body.frame().await {
        if let Ok(data) = frame.unwrap().into_data() {
            out.push((Instant::now(), data));
        }
    }
    out
}

/// Splits a complete SSE body into its `data:` payloads, checking the framing.
fn events(raw: &[u8]) -> Vec<String> {
    let text = std::str::from_utf8(raw).unwrap();
    assert!(text.ends_with("\n\n"), "stream must end with a blank line");
    text.split_terminator("\n\n")
        .map(|ev| {
            let data = ev
                .strip_prefix("data: ")
                .unwrap_or_else(|| panic!("bad event {ev:?}"));
            assert!(!data.contains('\n'), "one data line per event");
            data.to_owned()
        })
        .collect()
}

fn chat(prompt: &str, stream: bool, max_tokens: u32) -> Value {
    json!({
        "model": "gpt-4o-mini",
        "messages": [{"role": "user", "content": prompt}],
        "stream": stream,
        "stream_options": {"include_usage": true},
        "max_tokens": max_tokens,
    })
}

#[tokio::test]
async fn chat_stream_is_openai_wire_format() {
    let (sim, client) = sim(SimConfig {
        ttft: Duration::from_millis(1),
        itl: Duration::from_millis(1),
        ..SimConfig::default()
    })
    .await;
    let resp = post(
        &client,
        &sim,
        "/v1/chat/completions",
        chat("hello there", true, 5),
    )
    .await;
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(
        resp.headers()["content-type"],
        "text/event-stream; charset=utf-8"
    );
    assert!(resp.headers().contains_key("x-request-id"));
    let raw: Vec<u8> = frames(resp)
        .await
        .into_iter()
        .flat_map(|(_, b)| b)
        .collect();
    let evs = events(&raw);
    assert_eq!(
        evs.len(),
        1 + 5 + 1 + 1 + 1,
        "role, 5 tokens, finish, usage, DONE"
    );
    assert_eq!(evs.last().unwrap(), "[DONE]");

    let chunks: Vec<Value> = evs[..evs.len() - 1]
        .iter()
        .map(|e| serde_json::from_str(e).unwrap())
        .collect();
    let id = chunks[0]["id"].as_str().unwrap();
    assert!(id.starts_with("chatcmpl-"));
    for c in &chunks {
        assert_eq!(c["id"], id);
        assert_eq!(c["object"], "chat.completion.chunk");
        assert_eq!(c["model"], "gpt-4o-mini");
        assert!(c["created"].is_u64());
    }
    // Role-only first chunk, exactly as OpenAI sends it.
    assert_eq!(
        chunks[0]["choices"][0]["delta"],
        json!({"role": "assistant", "content": ""})
    );
    assert_eq!(chunks[0]["choices"][0]["finish_reason"], Value::Null);
    assert_eq!(chunks[0]["usage"], Value::Null);
    assert!(chunks[0].as_object().unwrap().contains_key("usage"));
    // One chunk per token, in order.
    let want = answer_tokens("gpt-4o-mini", "hello there", 5);
    for (c, tok) in chunks[1..6].iter().zip(&want) {
        assert_eq!(c["choices"][0]["delta"], json!({"content": tok}));
        assert_eq!(c["choices"][0]["index"], 0);
        assert_eq!(c["choices"][0]["finish_reason"], Value::Null);
    }
    // Finish chunk: empty delta.
    assert_eq!(chunks[6]["choices"][0]["delta"], json!({}));
    assert_eq!(chunks[6]["choices"][0]["finish_reason"], "stop");
    // Usage chunk: no choices.
    assert_eq!(chunks[7]["choices"], json!([]));
    assert_eq!(chunks[7]["usage"]["completion_tokens"], 5);
    assert_eq!(
        chunks[7]["usage"]["total_tokens"].as_u64().unwrap(),
        5 + chunks[7]["usage"]["prompt_tokens"].as_u64().unwrap()
    );
    // Field order as on the wire (serde_json::Value would sort; check the text).
    assert!(evs[1].starts_with(r#"{"id":"chatcmpl-"#));
    assert!(evs[0].contains(r#""delta":{"role":"assistant","content":""}"#));
}

#[tokio::test]
async fn chat_stream_without_include_usage_has_no_usage_key() {
    let (sim, client) = sim(SimConfig {
        ttft: Duration::ZERO,
        itl: Duration::ZERO,
        ..SimConfig::default()
    })
    .await;
    let body = json!({"model": "m", "messages": [{"role": "user", "content": "x"}], "stream": true, "max_tokens": 3});
    let resp = post(&client, &sim, "/v1/chat/completions", body).await;
    let raw: Vec<u8> = frames(resp)
        .await
        .into_iter()
        .flat_map(|(_, b)| b)
        .collect();
    let evs = events(&raw);
    assert_eq!(evs.len(), 1 + 3 + 1 + 1);
    assert!(evs.iter().all(|e| !e.contains("usage")));
}

#[tokio::test]
async fn chat_non_stream_matches_stream_text() {
    let (sim, client) = sim(SimConfig {
        ttft: Duration::ZERO,
        itl: Duration::ZERO,
        ..SimConfig::default()
    })
    .await;
    let resp = post(&client, &sim, "/v1/chat/completions", chat("why", false, 7)).await;
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(resp.headers()["content-type"], "application/json");
    assert!(resp.headers().contains_key("x-request-id"));
    let v = body_json(resp).await;
    assert_eq!(v["object"], "chat.completion");
    assert_eq!(v["choices"][0]["message"]["role"], "assistant");
    assert_eq!(
        v["choices"][0]["message"]["content"],
        answer_text("gpt-4o-mini", "why", 7)
    );
    assert_eq!(v["choices"][0]["finish_reason"], "stop");
    assert_eq!(v["usage"]["completion_tokens"], 7);
}

#[tokio::test]
async fn answers_are_deterministic_per_prompt() {
    let (sim, client) = sim(SimConfig {
        ttft: Duration::ZERO,
        itl: Duration::ZERO,
        ..SimConfig::default()
    })
    .await;
    let mut texts = Vec::new();
    for prompt in ["a", "a", "b"] {
        let body = json!({"model": "m", "messages": [{"role": "user", "content": prompt}]});
        let v = body_json(post(&client, &sim, "/v1/chat/completions", body).await).await;
        texts.push(
            v["choices"][0]["message"]["content"]
                .as_str()
                .unwrap()
                .to_owned(),
        );
    }
    assert_eq!(texts[0], texts[1]);
    assert_ne!(texts[0], texts[2]);
    // Default length when max_tokens is absent.
    assert_eq!(
        texts[0],
        answer_text("m", "a", SimConfig::default().max_tokens_default)
    );
}

#[tokio::test]
async fn legacy_completions_stream_and_not() {
    let (sim, client) = sim(SimConfig {
        ttft: Duration::ZERO,
        itl: Duration::ZERO,
        ..SimConfig::default()
    })
    .await;
    let body = json!({"model": "gpt-3.5-turbo-instruct", "prompt": "once", "max_tokens": 4});
    let v = body_json(post(&client, &sim, "/v1/completions", body.clone()).await).await;
    assert_eq!(v["object"], "text_completion");
    let want = answer_text("gpt-3.5-turbo-instruct", "once", 4);
    assert_eq!(v["choices"][0]["text"], want);

    let mut body = body;
    body["stream"] = json!(true);
    let resp = post(&client, &sim, "/v1/completions", body).await;
    let raw: Vec<u8> = frames(resp)
        .await
        .into_iter()
        .flat_map(|(_, b)| b)
        .collect();
    let evs = events(&raw);
    assert_eq!(evs.last().unwrap(), "[DONE]");
    let text: String = evs[..evs.len() - 1]
        .iter()
        .map(|e| serde_json::from_str::<Value>(e).unwrap())
        .map(|c| c["choices"][0]["text"].as_str().unwrap_or("").to_owned())
        .collect();
    assert_eq!(text, want);
}

#[tokio::test]
async fn legacy_stream_include_usage_ends_with_a_usage_chunk() {
    let (sim, client) = sim(SimConfig {
        ttft: Duration::ZERO,
        itl: Duration::ZERO,
        ..SimConfig::default()
    })
    .await;
    let body = json!({
        "model": "gpt-3.5-turbo-instruct",
        "prompt": "once",
        "max_tokens": 4,
        "stream": true,
        "stream_options": {"include_usage": true},
    });
    let resp = post(&client, &sim, "/v1/completions", body).await;
    let raw: Vec<u8> = frames(resp)
        .await
        .into_iter()
        .flat_map(|(_, b)| b)
        .collect();
    let evs = events(&raw);
    assert_eq!(evs.len(), 4 + 1 + 1 + 1, "4 tokens, finish, usage, DONE");
    let chunks: Vec<Value> = evs[..evs.len() - 1]
        .iter()
        .map(|e| serde_json::from_str(e).unwrap())
        .collect();
    let (usage, rest) = chunks.split_last().unwrap();
    assert_eq!(usage["choices"], json!([]));
    assert_eq!(usage["usage"]["completion_tokens"], 4);
    assert_eq!(usage["usage"]["prompt_tokens"], 1);
    for c in rest {
        assert_eq!(c["usage"], Value::Null);
        assert!(c.as_object().unwrap().contains_key("usage"));
    }
}

#[tokio::test]
async fn models_and_errors_are_openai_shaped() {
    let (sim, client) = sim(SimConfig::default()).await;
    let req = Request::get(format!("{}/v1/models", sim.url()))
        .body(Full::default())
        .unwrap();
    let v = body_json(client.request(req).await.unwrap()).await;
    assert_eq!(v["object"], "list");
    assert!(v["data"]
        .as_array()
        .unwrap()
        .iter()
        .any(|m| m["id"] == "gpt-4o-mini"));

    let req = Request::post(format!("{}/v1/chat/completions", sim.url()))
        .body(Full::new(Bytes::from_static(b"{not json")))
        .unwrap();
    let resp = client.request(req).await.unwrap();
    assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
    let v = body_json(resp).await;
    assert_eq!(v["error"]["type"], "invalid_request_error");
    assert!(v["error"]["message"].is_string());
    assert!(v["error"].as_object().unwrap().contains_key("code"));

    let resp = post(&client, &sim, "/v1/chat/completions", json!({"model": "m"})).await;
    assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
    let v = body_json(resp).await;
    assert_eq!(v["error"]["param"], "messages");

    let resp = post(&client, &sim, "/v1/nope", json!({})).await;
    assert_eq!(resp.status(), StatusCode::NOT_FOUND);
    let v = body_json(resp).await;
    assert_eq!(v["error"]["message"], "Invalid URL (POST /v1/nope)");
}

#[tokio::test]
async fn health_answers_as_vllm_does() {
    // guidellm and orchestrators probe `GET /health` before sending traffic; vLLM
    // answers 200 with an empty body. Only GET is routed.
    let (sim, client) = sim(SimConfig::default()).await;
    let req = Request::get(format!("{}/health", sim.url()))
        .body(Full::default())
        .unwrap();
    let resp = client.request(req).await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(
        resp.headers()
            .get("content-length")
            .and_then(|v| v.to_str().ok()),
        Some("0")
    );
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    assert!(body.is_empty());
    let resp = post(&client, &sim, "/health", json!({})).await;
    assert_eq!(resp.status(), StatusCode::NOT_FOUND);
}

#[tokio::test(start_paused = true)]
async fn stream_pacing_under_paused_time() {
    let (sim, client) = sim(SimConfig::default()).await; // ttft 30ms, itl 10ms
    let t0 = Instant::now();
    let resp = post(
        &client,
        &sim,
        "/v1/chat/completions",
        chat("pace", true, 10),
    )
    .await;
    let frames = frames(resp).await;
    let content: Vec<Duration> = frames
        .iter()
        .filter(|(_, b)| {
            b.windows(10).any(|w| w == br#""content":"#) && !b.windows(4).any(|w| w == b"role")
        })
        .map(|(t, _)| *t - t0)
        .collect();
    assert_eq!(content.len(), 10, "each token its own frame");
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    assert!(
        (30.0..32.0).contains(&ms(content[0])),
        "ttft {:?}",
        content[0]
    );
    for w in content.windows(2) {
        assert!(
            (9.0..11.0).contains(&ms(w[1] - w[0])),
            "itl {:?}",
            w[1] - w[0]
        );
    }
    let e2e = frames.last().unwrap().0 - t0;
    assert!((120.0..122.0).contains(&ms(e2e)), "e2e {e2e:?}");
    assert!(frames.len() >= 10);
}

#[tokio::test(start_paused = true)]
async fn non_stream_waits_for_the_whole_answer() {
    let (sim, client) = sim(SimConfig::default()).await;
    let t0 = Instant::now();
    let resp = post(
        &client,
        &sim,
        "/v1/chat/completions",
        chat("pace", false, 10),
    )
    .await;
    let _ = body_json(resp).await;
    let e2e = t0.elapsed().as_secs_f64() * 1000.0;
    assert!((120.0..122.0).contains(&e2e), "e2e {e2e}ms");
}

#[tokio::test]
async fn serves_h2c_too() {
    let handle = spawn("127.0.0.1:0".parse().unwrap(), SimConfig::default())
        .await
        .unwrap();
    let client: HttpClient = Client::builder(TokioExecutor::new())
        .http2_only(true)
        .build_http();
    let resp = post(
        &client,
        &handle,
        "/v1/chat/completions",
        chat("h2", true, 3),
    )
    .await;
    assert_eq!(resp.version(), http::Version::HTTP_2);
    let raw: Vec<u8> = frames(resp)
        .await
        .into_iter()
        .flat_map(|(_, b)| b)
        .collect();
    assert_eq!(events(&raw).last().unwrap(), "[DONE]");
}

#[tokio::test]
async fn shutdown_stops_the_server() {
    let handle = spawn("127.0.0.1:0".parse().unwrap(), SimConfig::default())
        .await
        .unwrap();
    let addr = handle.addr;
    tokio::time::timeout(Duration::from_secs(5), handle.shutdown())
        .await
        .unwrap();
    assert!(tokio::net::TcpStream::connect(addr).await.is_err());
}
