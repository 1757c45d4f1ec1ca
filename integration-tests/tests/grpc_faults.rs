//! Faults on gRPC calls speak gRPC (docs/grpc.md): trailers-only errors,
//! Milvus's in-message errors, RST_STREAM codes, DEADLINE_EXCEEDED at the call's
//! own deadline, and a held call's deadline shortened upstream.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use brownout_integration_tests::*;
use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Request, Response};
use http_body::Frame;
use http_body_util::{BodyExt, StreamBody};

fn message(payload: &[u8]) -> Vec<u8> {
    let mut m = vec![0u8];
    m.extend_from_slice(&(payload.len() as u32).to_be_bytes());
    m.extend_from_slice(payload);
    m
}

fn call(url: String, timeout: Option<&str>) -> Request<Body> {
    let mut b = Request::post(url)
        .header("content-type", "application/grpc")
        .header("te", "trailers");
    if let Some(t) = timeout {
        b = b.header("grpc-timeout", t);
    }
    b.body(full(message(b"\x0a\x01x"))).expect("request")
}

/// An upstream answering OK with one message, remembering each call's headers.
async fn ok_upstream() -> (Upstream, Arc<Mutex<Vec<HeaderMap>>>) {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let s = seen.clone();
    let up = Upstream::start(move |req: Request<hyper::body::Incoming>| {
        let s = s.clone();
        async move {
            s.lock().unwrap().push(req.headers().clone());
            let _ = collect(req.into_body()).await;
            let mut t = HeaderMap::new();
            t.insert("grpc-status", HeaderValue::from_static("0"));
            let frames: Vec<Result<Frame<Bytes>, BoxError>> = vec![
                Ok(Frame::data(Bytes::from(message(b"ok")))),
                Ok(Frame::trailers(t)),
            ];
            Response::builder()
                .header("content-type", "application/grpc")
                .body(StreamBody::new(futures_util::stream::iter(frames)).boxed())
                .unwrap()
        }
    })
    .await;
    (up, seen)
}

async fn proxy_with(up: &Upstream, profile: &str, dir: &TempDir) -> TestProxy {
    ProxyBuilder::new(up.url())
        .api(ApiKind::Milvus)
        .profile(profile)
        .record(&dir.join("r.jsonl"))
        .start()
        .await
}

/// The RST_STREAM code somewhere in an error's sources.
fn h2_reason(e: &(dyn std::error::Error + 'static)) -> Option<h2::Reason> {
    let mut cur = Some(e);
    while let Some(err) = cur {
        if let Some(h) = err.downcast_ref::<h2::Error>() {
            return h.reason();
        }
        cur = err.source();
    }
    None
}

#[tokio::test]
async fn error_with_grpc_status_is_trailers_only() {
    let (up, seen) = ok_upstream().await;
    let dir = TempDir::new();
    let proxy = proxy_with(
        &up,
        r#"
version: 1
name: t
rules:
  - name: outage
    match: {grpc_method: "/milvus.proto.milvus.MilvusService/*"}
    faults: [{type: error, grpc_status: unavailable, body: "node is down"}]
"#,
        &dir,
    )
    .await;
    let resp = h2c_client()
        .request(call(
            proxy.url("/milvus.proto.milvus.MilvusService/Search"),
            None,
        ))
        .await
        .expect("answer");
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["grpc-status"], "14");
    assert_eq!(resp.headers()["grpc-message"], "node is down");
    assert_eq!(resp.headers()["content-type"], "application/grpc");
    let body = resp.into_body().collect().await.expect("body");
    assert!(
        body.trailers().is_none() && body.to_bytes().is_empty(),
        "trailers-only"
    );
    assert!(
        seen.lock().unwrap().is_empty(),
        "the upstream is not called"
    );
    let rec = proxy
        .record_for("/milvus.proto.milvus.MilvusService/Search")
        .await;
    assert_eq!(rec["grpc"]["status"], 14, "{rec}");
    assert_eq!(rec["outcome"], "injected_error", "{rec}");
    assert_eq!(rec["endpoint"], "search", "{rec}");
    proxy.shutdown().await;
}

#[tokio::test]
async fn grpc_method_never_matches_a_plain_http_request() {
    let (up, _) = ok_upstream().await;
    let dir = TempDir::new();
    let proxy = proxy_with(
        &up,
        r#"
version: 1
name: t
rules:
  - name: outage
    match: {grpc_method: "/**"}
    faults: [{type: error, preset: grpc.unavailable}]
"#,
        &dir,
    )
    .await;
    let r = send(
        &h2c_client(),
        get(proxy.url("/milvus.proto.milvus.MilvusService/Search")),
    )
    .await
    .expect("plain request");
    assert_eq!(r.status, 200);
    assert!(r.headers.get("grpc-status").is_none());
    proxy.shutdown().await;
}

#[tokio::test]
async fn milvus_rate_limit_is_a_failed_response_message_under_grpc_status_0() {
    let (up, _) = ok_upstream().await;
    let dir = TempDir::new();
    let proxy = proxy_with(
        &up,
        r#"
version: 1
name: t
rules:
  - name: limited
    match: {endpoint: search}
    faults: [{type: error, preset: milvus.rate_limit}]
"#,
        &dir,
    )
    .await;
    let resp = h2c_client()
        .request(call(
            proxy.url("/milvus.proto.milvus.MilvusService/Search"),
            None,
        ))
        .await
        .expect("answer");
    assert!(
        resp.headers().get("grpc-status").is_none(),
        "not trailers-only"
    );
    let body = resp.into_body().collect().await.expect("body");
    assert_eq!(body.trailers().expect("trailers")["grpc-status"], "0");
    let bytes = body.to_bytes();
    assert_eq!(bytes[0], 0, "uncompressed");
    let len = u32::from_be_bytes([bytes[1], bytes[2], bytes[3], bytes[4]]) as usize;
    assert_eq!(len + 5, bytes.len(), "one whole message");
    let text = String::from_utf8_lossy(&bytes);
    assert!(text.contains("rate limit exceeded"), "{text}");
    let rec = proxy
        .record_for("/milvus.proto.milvus.MilvusService/Search")
        .await;
    assert_eq!(rec["grpc"]["status"], 0, "{rec}");
    assert!(rec["grpc"]["in_message"].as_str().is_some(), "{rec}");
    assert_eq!(rec["outcome"], "injected_error", "{rec}");
    proxy.shutdown().await;
}

#[tokio::test]
async fn an_http_only_preset_is_skipped_on_a_grpc_call() {
    let (up, seen) = ok_upstream().await;
    let dir = TempDir::new();
    let proxy = proxy_with(
        &up,
        r#"
version: 1
name: t
rules:
  - name: wrong-kind
    faults: [{type: error, preset: openai.rate_limit_requests}]
"#,
        &dir,
    )
    .await;
    let resp = h2c_client()
        .request(call(
            proxy.url("/milvus.proto.milvus.MilvusService/Query"),
            None,
        ))
        .await
        .expect("answer");
    let body = resp.into_body().collect().await.expect("body");
    assert_eq!(body.trailers().expect("trailers")["grpc-status"], "0");
    assert_eq!(seen.lock().unwrap().len(), 1, "forwarded");
    let rec = proxy
        .record_for("/milvus.proto.milvus.MilvusService/Query")
        .await;
    assert_eq!(
        rec["faults_skipped"][0]["reason"], "http_only_preset",
        "{rec}"
    );
    assert_eq!(rec["outcome"], "ok", "{rec}");
    proxy.shutdown().await;
}

#[tokio::test]
async fn reset_codes_reach_the_client_as_rst_stream_codes() {
    let (up, _) = ok_upstream().await;
    for (code, want) in [
        ("cancel", h2::Reason::CANCEL),
        ("internal_error", h2::Reason::INTERNAL_ERROR),
        ("refused_stream", h2::Reason::REFUSED_STREAM),
        ("enhance_your_calm", h2::Reason::ENHANCE_YOUR_CALM),
    ] {
        let dir = TempDir::new();
        let proxy = proxy_with(
            &up,
            &format!(
                "version: 1\nname: t\nrules:\n  - name: r\n    faults: [{{type: reset, scope: stream, code: {code}}}]\n"
            ),
            &dir,
        )
        .await;
        let client = h2c_client();
        let err = client
            .request(call(proxy.url("/pkg.S/M"), None))
            .await
            .expect_err("reset");
        assert_eq!(h2_reason(&err), Some(want), "{code}: {err:?}");
        // Stream scope: the connection stays usable for the next call.
        let again = client.request(call(proxy.url("/pkg.S/M"), None)).await;
        assert!(again.is_err(), "the rule fires every time");
        for rec in proxy.wait_records(2).await {
            assert_eq!(rec["outcome"], "reset", "{rec}");
        }
        proxy.shutdown().await;
    }
}

#[tokio::test]
async fn connection_and_goaway_resets_end_the_connection() {
    let (up, _) = ok_upstream().await;
    for scope in ["connection", "goaway"] {
        let dir = TempDir::new();
        let proxy = proxy_with(
            &up,
            &format!("version: 1\nname: t\nrules:\n  - name: r\n    faults: [{{type: reset, scope: {scope}}}]\n"),
            &dir,
        )
        .await;
        let (mut sender, conn) = h2_conn(proxy.running().addr(None).unwrap()).await;
        let err = sender
            .send_request(call(proxy.url("/pkg.S/M"), None))
            .await
            .expect_err("reset");
        let _ = err;
        let ended = tokio::time::timeout(Duration::from_secs(5), conn).await;
        assert!(ended.is_ok(), "{scope}: the client connection ends");
        proxy.shutdown().await;
    }
}

#[tokio::test]
async fn hang_ends_with_deadline_exceeded_at_the_calls_grpc_timeout() {
    let (up, seen) = ok_upstream().await;
    let dir = TempDir::new();
    let proxy = proxy_with(
        &up,
        "version: 1\nname: t\nrules:\n  - name: stuck\n    faults: [{type: hang, duration: 30s}]\n",
        &dir,
    )
    .await;
    let t0 = Instant::now();
    let resp = h2c_client()
        .request(call(proxy.url("/pkg.S/M"), Some("300m")))
        .await
        .expect("answer");
    let waited = t0.elapsed();
    assert_eq!(resp.headers()["grpc-status"], "4");
    assert!(
        waited >= Duration::from_millis(250) && waited < Duration::from_secs(10),
        "{waited:?}"
    );
    assert!(seen.lock().unwrap().is_empty());
    proxy.shutdown().await;
}

#[tokio::test]
async fn a_delay_is_taken_off_the_deadline_forwarded_upstream() {
    let (up, seen) = ok_upstream().await;
    let dir = TempDir::new();
    let proxy = proxy_with(
        &up,
        "version: 1\nname: t\nrules:\n  - name: slow\n    faults: [{type: delay, duration: 200ms}]\n",
        &dir,
    )
    .await;
    let resp = h2c_client()
        .request(call(proxy.url("/pkg.S/M"), Some("5S")))
        .await
        .expect("answer");
    let _ = resp.into_body().collect().await;
    let t = seen.lock().unwrap()[0]["grpc-timeout"]
        .to_str()
        .unwrap()
        .to_string();
    let (n, unit) = t.split_at(t.len() - 1);
    let n: f64 = n.parse().unwrap();
    let secs = match unit {
        "n" => n / 1e9,
        "u" => n / 1e6,
        "m" => n / 1e3,
        "S" => n,
        other => panic!("unit {other}"),
    };
    assert!(secs < 4.81 && secs > 3.0, "forwarded grpc-timeout {t}");

    // A delay past the whole deadline: DEADLINE_EXCEEDED, and no upstream call.
    let resp = h2c_client()
        .request(call(proxy.url("/pkg.S/M"), Some("100m")))
        .await
        .expect("answer");
    assert_eq!(resp.headers()["grpc-status"], "4");
    assert_eq!(seen.lock().unwrap().len(), 1);
    proxy.shutdown().await;
}

/// An upstream streaming `n` messages (`0..n` as one-byte payloads), then OK.
async fn streaming_upstream(n: u8) -> Upstream {
    Upstream::start(move |req: Request<hyper::body::Incoming>| async move {
        let _ = collect(req.into_body()).await;
        let mut t = HeaderMap::new();
        t.insert("grpc-status", HeaderValue::from_static("0"));
        t.insert("x-trailing", HeaderValue::from_static("end"));
        let mut frames: Vec<Result<Frame<Bytes>, BoxError>> = (0..n)
            .map(|i| Ok(Frame::data(Bytes::from(message(&[i])))))
            .collect();
        frames.push(Ok(Frame::trailers(t)));
        Response::builder()
            .header("content-type", "application/grpc")
            .body(StreamBody::new(futures_util::stream::iter(frames)).boxed())
            .unwrap()
    })
    .await
}

#[tokio::test]
async fn token_delay_paces_each_streamed_message_and_the_trailers_come_last() {
    let up = streaming_upstream(5).await;
    let dir = TempDir::new();
    let proxy = proxy_with(
        &up,
        "version: 1\nname: t\nrules:\n  - name: slow\n    faults: [{type: token_delay, duration: 100ms}]\n",
        &dir,
    )
    .await;
    let t0 = Instant::now();
    let resp = h2c_client()
        .request(call(proxy.url("/pkg.S/Stream"), None))
        .await
        .expect("answer");
    let body = resp.into_body().collect().await.expect("body");
    let waited = t0.elapsed();
    let trailers = body
        .trailers()
        .cloned()
        .expect("trailers after the messages");
    assert_eq!(trailers["grpc-status"], "0");
    assert_eq!(trailers["x-trailing"], "end");
    let want: Vec<u8> = (0..5u8).flat_map(|i| message(&[i])).collect();
    assert_eq!(
        body.to_bytes().as_ref(),
        want.as_slice(),
        "every message, unchanged"
    );
    assert!(
        waited >= Duration::from_millis(380),
        "4 gaps of 100 ms: {waited:?}"
    );
    let rec = proxy.record_for("/pkg.S/Stream").await;
    assert_eq!(rec["outcome"], "ok", "{rec}");
    assert_eq!(rec["grpc"]["status"], 0, "{rec}");
    proxy.shutdown().await;
}

#[tokio::test]
async fn truncate_cuts_a_streamed_call_without_its_trailers() {
    let up = streaming_upstream(5).await;
    let dir = TempDir::new();
    let proxy = proxy_with(
        &up,
        "version: 1\nname: t\nrules:\n  - name: cut\n    faults: [{type: truncate, after_tokens: 2}]\n",
        &dir,
    )
    .await;
    let resp = h2c_client()
        .request(call(proxy.url("/pkg.S/Stream"), None))
        .await
        .expect("answer");
    let got = resp.into_body().collect().await;
    // Two whole messages, then an end with no grpc-status: no gRPC client reads
    // that as a complete call.
    if let Ok(body) = got {
        assert!(body.trailers().is_none(), "no trailers after a cut");
        let want: Vec<u8> = (0..2u8).flat_map(|i| message(&[i])).collect();
        assert_eq!(body.to_bytes().as_ref(), want.as_slice());
    }
    let rec = proxy.record_for("/pkg.S/Stream").await;
    assert_eq!(rec["outcome"], "truncated", "{rec}");
    proxy.shutdown().await;
}
