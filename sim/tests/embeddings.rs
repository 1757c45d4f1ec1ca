//! The simulated embeddings API over real sockets: shape, determinism, input
//! forms, base64 round trip, errors and latency.

use std::time::Duration;

use brownout_sim::{embedding, spawn, EmbeddingInput, SimConfig, SimHandle, DEFAULT_DIMENSIONS};
use bytes::Bytes;
use http::{Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use serde_json::{json, Value};
use tokio::time::Instant;

type HttpClient = Client<hyper_util::client::legacy::connect::HttpConnector, Full<Bytes>>;

const MODEL: &str = "text-embedding-3-small";

async fn sim(cfg: SimConfig) -> (SimHandle, HttpClient) {
    let handle = spawn("127.0.0.1:0".parse().unwrap(), cfg).await.unwrap();
    let client = Client::builder(TokioExecutor::new()).build_http();
    (handle, client)
}

fn instant() -> SimConfig {
    SimConfig {
        ttft: Duration::ZERO,
        itl: Duration::ZERO,
        ..SimConfig::default()
    }
}

async fn post(client: &HttpClient, sim: &SimHandle, body: Value) -> (StatusCode, Value) {
    let req = Request::post(format!("{}/v1/embeddings", sim.url()))
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(body.to_string())))
        .unwrap();
    let resp = client.request(req).await.unwrap();
    let status = resp.status();
    assert_eq!(resp.headers()["content-type"], "application/json");
    let bytes = resp.into_body().collect().await.unwrap().to_bytes();
    (status, serde_json::from_slice(&bytes).unwrap())
}

fn floats(v: &Value) -> Vec<f32> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap() as f32)
        .collect()
}

/// Decodes standard padded base64 (the test's own decoder, independent of the sim's
/// encoder).
fn unbase64(s: &str) -> Vec<u8> {
    let val = |c: u8| -> u32 {
        match c {
            b'A'..=b'Z' => u32::from(c - b'A'),
            b'a'..=b'z' => u32::from(c - b'a') + 26,
            b'0'..=b'9' => u32::from(c - b'0') + 52,
            b'+' => 62,
            b'/' => 63,
            _ => panic!("bad base64 byte {c}"),
        }
    };
    assert_eq!(s.len() % 4, 0);
    let mut out = Vec::new();
    for chunk in s.as_bytes().chunks(4) {
        let pad = chunk.iter().filter(|&&c| c == b'=').count();
        let n = chunk
            .iter()
            .take(4 - pad)
            .fold(0u32, |acc, &c| (acc << 6) | val(c))
            << (6 * pad);
        let bytes = [(n >> 16) as u8, (n >> 8) as u8, n as u8];
        out.extend_from_slice(&bytes[..3 - pad]);
    }
    out
}

#[tokio::test]
async fn string_input_has_the_openai_shape() {
    let (sim, client) = sim(instant()).await;
    let (status, v) = post(
        &client,
        &sim,
        json!({"model": MODEL, "input": "hello world"}),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(v["object"], "list");
    assert_eq!(v["model"], MODEL);
    assert_eq!(
        v["usage"],
        json!({"prompt_tokens": 3, "total_tokens": 3}),
        "11 chars: 3 tokens"
    );
    let data = v["data"].as_array().unwrap();
    assert_eq!(data.len(), 1);
    assert_eq!(data[0]["object"], "embedding");
    assert_eq!(data[0]["index"], 0);
    let e = floats(&data[0]["embedding"]);
    assert_eq!(e.len(), DEFAULT_DIMENSIONS);
    let norm: f64 = e.iter().map(|x| f64::from(*x).powi(2)).sum::<f64>().sqrt();
    assert!((norm - 1.0).abs() < 1e-5, "unit norm, got {norm}");
    // The JSON floats are the f32 values exactly.
    assert_eq!(
        e,
        embedding(
            MODEL,
            &EmbeddingInput::Text("hello world"),
            DEFAULT_DIMENSIONS
        )
    );
}

#[tokio::test]
async fn identical_text_gets_identical_vectors() {
    let (sim, client) = sim(instant()).await;
    let (_, v) = post(
        &client,
        &sim,
        json!({"model": MODEL, "input": ["a", "b", "a"], "dimensions": 64}),
    )
    .await;
    let data = v["data"].as_array().unwrap();
    assert_eq!(data.len(), 3);
    for (i, d) in data.iter().enumerate() {
        assert_eq!(d["index"], i);
        assert_eq!(d["embedding"].as_array().unwrap().len(), 64);
    }
    assert_eq!(data[0]["embedding"], data[2]["embedding"]);
    assert_ne!(data[0]["embedding"], data[1]["embedding"]);
    assert_eq!(v["usage"]["prompt_tokens"], 3);
    // ... across requests too.
    let (_, again) = post(
        &client,
        &sim,
        json!({"model": MODEL, "input": "a", "dimensions": 64}),
    )
    .await;
    assert_eq!(again["data"][0]["embedding"], data[0]["embedding"]);
}

#[tokio::test]
async fn token_array_inputs() {
    let (sim, client) = sim(instant()).await;
    let (status, one) = post(&client, &sim, json!({"model": MODEL, "input": [1, 2, 3]})).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(one["data"].as_array().unwrap().len(), 1);
    assert_eq!(one["usage"]["prompt_tokens"], 3);
    let (_, many) = post(
        &client,
        &sim,
        json!({"model": MODEL, "input": [[1, 2, 3], [4, 5]]}),
    )
    .await;
    assert_eq!(many["data"].as_array().unwrap().len(), 2);
    assert_eq!(many["usage"]["prompt_tokens"], 5);
    assert_eq!(many["data"][0]["embedding"], one["data"][0]["embedding"]);
}

#[tokio::test]
async fn base64_round_trips_to_the_float_vector() {
    let (sim, client) = sim(instant()).await;
    let body = |fmt: &str| json!({"model": MODEL, "input": ["x", "y"], "encoding_format": fmt, "dimensions": 32});
    let (_, float) = post(&client, &sim, body("float")).await;
    let (status, b64) = post(&client, &sim, body("base64")).await;
    assert_eq!(status, StatusCode::OK);
    for i in 0..2 {
        let s = b64["data"][i]["embedding"].as_str().unwrap();
        let bytes = unbase64(s);
        assert_eq!(bytes.len(), 32 * 4);
        let decoded: Vec<f32> = bytes
            .chunks(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect();
        assert_eq!(decoded, floats(&float["data"][i]["embedding"]));
    }
}

#[tokio::test]
async fn bad_requests_get_openai_errors() {
    let (sim, client) = sim(instant()).await;
    for (body, param) in [
        (json!({"model": MODEL}), "input"),
        (json!({"input": "x"}), "model"),
        (json!({"model": MODEL, "input": []}), "input"),
        (json!({"model": MODEL, "input": [1, "a"]}), "input"),
        (json!({"model": MODEL, "input": ""}), "input"),
        (
            json!({"model": MODEL, "input": "x", "dimensions": 0}),
            "dimensions",
        ),
        (
            json!({"model": MODEL, "input": "x", "encoding_format": "int8"}),
            "encoding_format",
        ),
    ] {
        let (status, v) = post(&client, &sim, body.clone()).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
        assert_eq!(v["error"]["type"], "invalid_request_error", "{body}");
        assert_eq!(v["error"]["param"], param, "{body}");
    }
}

#[tokio::test(start_paused = true)]
async fn answers_after_one_forward_pass() {
    let (sim, client) = sim(SimConfig::default()).await; // ttft 30ms
    let t0 = Instant::now();
    let (status, _) = post(&client, &sim, json!({"model": MODEL, "input": "x"})).await;
    assert_eq!(status, StatusCode::OK);
    let ms = t0.elapsed().as_secs_f64() * 1000.0;
    assert!((30.0..32.0).contains(&ms), "latency {ms}ms");
}
