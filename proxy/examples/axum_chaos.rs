//! brownout's faults in-process, in front of an axum app.
//!
//! A toy OpenAI-compatible chat endpoint (JSON and SSE streaming) behind
//! `brownout::layer::ChaosLayer`: one request in four gets OpenAI's own 429, every
//! answer waits 100-300 ms first, and streams lose their ending after 3 tokens.
//! Point any OpenAI client at it:
//!
//! ```text
//! cargo run -p brownout --example axum_chaos -- 127.0.0.1:8099
//! curl -s localhost:8099/v1/chat/completions -d '{"model":"m","messages":[],"stream":true}'
//! ```
//!
//! Each exchange's record (the JSON line a proxy would write) is printed when the
//! server stops (Ctrl-C).

use axum::body::Body;
use axum::http::{header, Response};
use axum::routing::post;
use axum::Router;
use brownout::layer::ChaosLayer;
use brownout_faults::ApiKind;

/// The profile, exactly as a profile file would say it.
const PROFILE: &str = r#"
version: 1
name: in-process-example
seed: 7
rules:
  - name: slow
    match: {endpoint: chat}
    faults:
      - type: delay
        duration: {uniform: [100ms, 300ms]}
  - name: throttled
    match: {endpoint: chat}
    probability: 0.25
    faults:
      - type: error
        preset: openai.rate_limit_requests
  - name: cut-short
    match: {endpoint: chat, stream: true}
    faults:
      - type: truncate
        after_tokens: 3
"#;

/// The app's own handler: it knows nothing of brownout.
async fn chat(body: String) -> Response<Body> {
    let stream = body.contains("\"stream\":true") || body.contains("\"stream\": true");
    if !stream {
        let answer = r#"{"id":"chatcmpl-1","object":"chat.completion","created":0,"model":"toy","choices":[{"index":0,"message":{"role":"assistant","content":"Hello from the toy model."},"finish_reason":"stop"}],"usage":{"prompt_tokens":5,"completion_tokens":6,"total_tokens":11}}"#;
        return Response::builder()
            .header(header::CONTENT_TYPE, "application/json")
            .body(Body::from(answer))
            .unwrap_or_default();
    }
    let mut sse = String::new();
    for word in ["Hello", " from", " the", " toy", " model", "."] {
        sse.push_str(&format!(
            "data: {{\"id\":\"chatcmpl-1\",\"object\":\"chat.completion.chunk\",\"created\":0,\"model\":\"toy\",\"choices\":[{{\"index\":0,\"delta\":{{\"content\":\"{word}\"}},\"finish_reason\":null}}]}}\n\n"
        ));
    }
    sse.push_str("data: {\"id\":\"chatcmpl-1\",\"object\":\"chat.completion.chunk\",\"created\":0,\"model\":\"toy\",\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":\"stop\"}]}\n\ndata: [DONE]\n\n");
    Response::builder()
        .header(header::CONTENT_TYPE, "text/event-stream")
        .body(Body::from(sse))
        .unwrap_or_default()
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let addr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:8099".to_string());
    let chaos = ChaosLayer::from_profile_text(ApiKind::Openai, PROFILE)?;
    let app = Router::new()
        .route("/v1/chat/completions", post(chat))
        .layer(chaos.clone());
    let listener = tokio::net::TcpListener::bind(&addr).await?;
    eprintln!("toy OpenAI app with brownout's faults in-process on http://{addr}");
    axum::serve(listener, app)
        .with_graceful_shutdown(async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await?;
    for r in chaos.records().await {
        println!("{}", serde_json::to_string(&r)?);
    }
    Ok(())
}
