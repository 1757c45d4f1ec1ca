//! The simulated Anthropic Messages API over real sockets: byte-level stream
//! shape, usage, determinism, errors and pacing.

use std::time::Duration;

use brownout_sim::{answer_text, answer_tokens, spawn, SimApi, SimConfig, SimHandle};
use bytes::Bytes;
use http::{Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use serde_json::{json, Value};
use tokio::time::Instant;

type HttpClient = Client<hyper_util::client::legacy::connect::HttpConnector, Full<Bytes>>;

const MODEL: &str = "claude-sonnet-4-20250514";

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

async fn post(client: &HttpClient, sim: &SimHandle, body: Value) -> hyper::Response<Incoming> {
    let req = Request::post(format!("{}/v1/messages", sim.url()))
        .header("content-type", "application/json")
        .header("anthropic-version", "2023-06-01")
        .body(Full::new(Bytes::from(body.to_string())))
        .unwrap();
    client.request(req).await.unwrap()
}

async fn body_json(resp: hyper::Response<Incoming>) -> Value {
    let bytes = resp.into_body().collect().await.unwrap().to_bytes();
    serde_json::from_slice(&bytes).unwrap()
}

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

/// Splits received frames into `(arrival, event name, data)` triples, checking
/// that every event is exactly `event: <name>\ndata: <json>\n\n`. (The client
/// may receive several server frames in one read, so frames are not events.)
fn events(frames: &[(Instant, Bytes)]) -> Vec<(Instant, String, String)> {
    let mut out = Vec::new();
    for (at, frame) in frames {
        let text = std::str::from_utf8(frame).unwrap();
        assert!(
            text.ends_with("\n\n"),
            "frames end on event boundaries: {text:?}"
        );
        for ev in text.split_terminator("\n\n") {
            let (name_line, data_line) = ev
                .split_once('\n')
                .unwrap_or_else(|| panic!("event and data lines: {ev:?}"));
            let name = name_line.strip_prefix("event: ").unwrap();
            let data = data_line.strip_prefix("data: ").unwrap();
            assert!(!data.contains('\n'), "one data line: {ev:?}");
            out.push((*at, name.to_owned(), data.to_owned()));
        }
    }
    out
}

/// Events without their arrival times.
async fn named(resp: hyper::Response<Incoming>) -> Vec<(String, String)> {
    events(&frames(resp).await)
        .into_iter()
        .map(|(_, n, d)| (n, d))
        .collect()
}

fn request(prompt: &str, stream: bool, max_tokens: u64) -> Value {
    json!({
        "model": MODEL,
        "max_tokens": max_tokens,
        "messages": [{"role": "user", "content": prompt}],
        "stream": stream,
    })
}

#[tokio::test]
async fn stream_has_the_real_event_sequence() {
    let (sim, client) = sim(instant()).await;
    let resp = post(&client, &sim, request("hello there", true, 1024)).await;
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(
        resp.headers()["content-type"],
        "text/event-stream; charset=utf-8"
    );
    let rid = resp.headers()["request-id"].to_str().unwrap().to_owned();
    assert!(rid.starts_with("req_011C") && rid.len() == 28, "{rid}");

    let n = SimConfig::default().max_tokens_default as usize;
    let evs = named(resp).await;
    let names: Vec<&str> = evs.iter().map(|(n, _)| n.as_str()).collect();
    let mut want = vec!["message_start", "content_block_start", "ping"];
    want.extend(std::iter::repeat_n("content_block_delta", n));
    want.extend(["content_block_stop", "message_delta", "message_stop"]);
    assert_eq!(names, want, "events in order");

    let data: Vec<Value> = evs
        .iter()
        .map(|(_, d)| serde_json::from_str(d).unwrap())
        .collect();
    for ((name, _), d) in evs.iter().zip(&data) {
        assert_eq!(d["type"], name.as_str(), "data type matches the event name");
    }
    let msg = &data[0]["message"];
    assert!(msg["id"].as_str().unwrap().starts_with("msg_01"));
    assert_eq!(msg["type"], "message");
    assert_eq!(msg["role"], "assistant");
    assert_eq!(msg["model"], MODEL);
    assert_eq!(msg["content"], json!([]));
    assert_eq!(msg["stop_reason"], Value::Null);
    assert_eq!(msg["stop_sequence"], Value::Null);
    assert_eq!(msg["usage"]["output_tokens"], 1);
    let input = msg["usage"]["input_tokens"].as_u64().unwrap();
    assert_eq!(input, 3, "\"hello there\" is 11 chars, 3 tokens");
    assert_eq!(
        data[1],
        json!({"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}})
    );
    // The ping as the real API writes it (the fixture has the space).
    assert_eq!(evs[2].1, r#"{"type": "ping"}"#);

    let want_tokens = answer_tokens(MODEL, "hello there", n as u32);
    for (d, tok) in data[3..3 + n].iter().zip(&want_tokens) {
        assert_eq!(d["index"], 0);
        assert_eq!(d["delta"], json!({"type": "text_delta", "text": tok}));
    }
    assert_eq!(
        data[3 + n],
        json!({"type": "content_block_stop", "index": 0})
    );
    let delta = &data[4 + n];
    assert_eq!(delta["delta"]["stop_reason"], "end_turn");
    assert_eq!(delta["delta"]["stop_sequence"], Value::Null);
    assert_eq!(delta["usage"]["output_tokens"], n as u64, "cumulative");
    assert_eq!(evs[5 + n].1, r#"{"type":"message_stop"}"#);

    // Field order as on the wire (compare the text, not a sorted Value).
    assert!(evs[0]
        .1
        .starts_with(r#"{"type":"message_start","message":{"id":"msg_01"#));
    assert!(evs[0].1.contains(
        r#""type":"message","role":"assistant","model":"claude-sonnet-4-20250514","content":[],"stop_reason":null,"stop_sequence":null,"usage":{"input_tokens":3,"output_tokens":1}}}"#
    ));
    assert_eq!(
        evs[3].1,
        format!(
            r#"{{"type":"content_block_delta","index":0,"delta":{{"type":"text_delta","text":"{}"}}}}"#,
            want_tokens[0]
        )
    );
    assert_eq!(
        evs[4 + n].1,
        format!(
            r#"{{"type":"message_delta","delta":{{"stop_reason":"end_turn","stop_sequence":null}},"usage":{{"output_tokens":{n}}}}}"#
        )
    );
}

#[tokio::test]
async fn max_tokens_cuts_the_answer() {
    let (sim, client) = sim(instant()).await;
    let evs: Vec<(String, Value)> = named(post(&client, &sim, request("cut", true, 4)).await)
        .await
        .into_iter()
        .map(|(n, d)| (n, serde_json::from_str(&d).unwrap()))
        .collect();
    let text: String = evs
        .iter()
        .filter(|(n, _)| n == "content_block_delta")
        .map(|(_, d)| d["delta"]["text"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(text, answer_text(MODEL, "cut", 4));
    let delta = &evs.iter().find(|(n, _)| n == "message_delta").unwrap().1;
    assert_eq!(delta["delta"]["stop_reason"], "max_tokens");
    assert_eq!(delta["usage"]["output_tokens"], 4);

    let v = body_json(post(&client, &sim, request("cut", false, 4)).await).await;
    assert_eq!(v["stop_reason"], "max_tokens");
    assert_eq!(v["content"][0]["text"], answer_text(MODEL, "cut", 4));
}

#[tokio::test]
async fn non_stream_matches_stream_and_is_deterministic() {
    let (sim, client) = sim(instant()).await;
    let n = SimConfig::default().max_tokens_default;
    let resp = post(&client, &sim, request("why", false, 1024)).await;
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(resp.headers()["content-type"], "application/json");
    assert!(resp.headers().contains_key("request-id"));
    let raw = resp.into_body().collect().await.unwrap().to_bytes();
    let text = std::str::from_utf8(&raw).unwrap();
    assert!(text.starts_with(r#"{"id":"msg_01"#), "{text}");
    assert!(
        text.contains(r#""type":"message","role":"assistant","model":"claude-sonnet-4-20250514","content":[{"type":"text","text":""#),
        "{text}"
    );
    let v: Value = serde_json::from_slice(&raw).unwrap();
    assert_eq!(v["content"].as_array().unwrap().len(), 1);
    assert_eq!(v["content"][0]["text"], answer_text(MODEL, "why", n));
    assert_eq!(v["stop_reason"], "end_turn");
    assert_eq!(v["stop_sequence"], Value::Null);
    assert_eq!(v["usage"], json!({"input_tokens": 1, "output_tokens": n}));

    let again = body_json(post(&client, &sim, request("why", false, 1024)).await).await;
    assert_eq!(again["content"], v["content"]);
    assert_ne!(again["id"], v["id"], "each response has its own id");
    let other = body_json(post(&client, &sim, request("why not", false, 1024)).await).await;
    assert_ne!(other["content"], v["content"]);
}

#[tokio::test]
async fn system_prompt_and_blocks_count() {
    let (sim, client) = sim(instant()).await;
    let body = json!({
        "model": MODEL,
        "max_tokens": 3,
        "system": "be brief",
        "messages": [{"role": "user", "content": [{"type": "text", "text": "hi"}]}],
    });
    let v = body_json(post(&client, &sim, body).await).await;
    assert_eq!(
        v["content"][0]["text"],
        answer_text(MODEL, "be brief\nhi", 3)
    );
}

#[tokio::test]
async fn bad_requests_get_anthropic_errors() {
    let (sim, client) = sim(instant()).await;
    for (body, message) in [
        (
            json!({"model": MODEL, "messages": [{"role": "user", "content": "x"}]}),
            "max_tokens: Field required",
        ),
        (
            json!({"max_tokens": 5, "messages": [{"role": "user", "content": "x"}]}),
            "model: Field required",
        ),
        (
            json!({"model": MODEL, "max_tokens": 5}),
            "messages: Field required",
        ),
    ] {
        let resp = post(&client, &sim, body).await;
        assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
        let rid = resp.headers()["request-id"].to_str().unwrap().to_owned();
        let v = body_json(resp).await;
        assert_eq!(v["type"], "error");
        assert_eq!(v["error"]["type"], "invalid_request_error");
        assert_eq!(v["error"]["message"], message);
        assert_eq!(v["request_id"], rid.as_str());
    }
}

#[tokio::test]
async fn api_anthropic_is_accepted_and_shapes_404s() {
    assert_eq!("anthropic".parse::<SimApi>().unwrap(), SimApi::Anthropic);
    assert_eq!("openai".parse::<SimApi>().unwrap(), SimApi::Openai);
    assert_eq!(SimApi::Anthropic.to_string(), "anthropic");
    assert!("qdrantx".parse::<SimApi>().is_err());

    let (sim, client) = sim(SimConfig {
        api: SimApi::Anthropic,
        ..instant()
    })
    .await;
    let req = Request::post(format!("{}/v1/nope", sim.url()))
        .body(Full::default())
        .unwrap();
    let resp = client.request(req).await.unwrap();
    assert_eq!(resp.status(), StatusCode::NOT_FOUND);
    let v = body_json(resp).await;
    assert_eq!(v["type"], "error");
    assert_eq!(v["error"]["type"], "not_found_error");
    // The OpenAI routes still work on an Anthropic sim.
    let req = Request::get(format!("{}/v1/models", sim.url()))
        .body(Full::default())
        .unwrap();
    assert_eq!(client.request(req).await.unwrap().status(), StatusCode::OK);
}

#[tokio::test(start_paused = true)]
async fn stream_pacing_under_paused_time() {
    let (sim, client) = sim(SimConfig::default()).await; // ttft 30ms, itl 10ms
    let t0 = Instant::now();
    let resp = post(&client, &sim, request("pace", true, 10)).await;
    let evs = events(&frames(resp).await);
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    let at = |name: &str| -> Vec<f64> {
        evs.iter()
            .filter(|(_, n, _)| n == name)
            .map(|(t, _, _)| ms(*t - t0))
            .collect()
    };
    // The preamble goes out at once; content follows the decode schedule.
    assert!(at("message_start")[0] < 2.0);
    assert!(at("ping")[0] < 2.0);
    let deltas = at("content_block_delta");
    assert_eq!(deltas.len(), 10);
    assert!((30.0..32.0).contains(&deltas[0]), "ttft {}", deltas[0]);
    for w in deltas.windows(2) {
        assert!((9.0..11.0).contains(&(w[1] - w[0])), "itl {}", w[1] - w[0]);
    }
    let stop = at("message_stop")[0];
    assert!((120.0..122.0).contains(&stop), "e2e {stop}");
}

#[tokio::test(start_paused = true)]
async fn non_stream_waits_for_the_whole_answer() {
    let (sim, client) = sim(SimConfig::default()).await;
    let t0 = Instant::now();
    let _ = body_json(post(&client, &sim, request("pace", false, 10)).await).await;
    let e2e = t0.elapsed().as_secs_f64() * 1000.0;
    assert!((120.0..122.0).contains(&e2e), "e2e {e2e}ms");
}
