//! Hostile peers: upstreams and clients that break the rules. An upstream that
//! sends malformed SSE, invalid JSON, a body shorter than it promised, enormous
//! headers, or nothing at all; a client that trickles its request, hangs up
//! mid-stream, pipelines requests, or uploads a huge body. Whatever the peer does,
//! the proxy must not panic, must keep serving the next (normal) request, and must
//! write exactly one record per exchange with an outcome that says what happened
//! (docs/robustness.md, docs/records.md).
//!
//! A panic inside the proxy would only kill one connection task, which a test might
//! not notice: a panic hook counts panics on the runtime's worker threads (where the
//! proxy's tasks run) and every test checks that there were none.

use std::future::Future;
use std::sync::{Arc, Mutex, Once};
use std::time::Duration;

use brownout_faults::duration::DurationStr;
use brownout_faults::ApiKind;
use brownout_integration_tests::*;
use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::BodyExt;
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio::time::Instant;

const STEP: Duration = Duration::from_secs(10);
const CHAT: &str = "/v1/chat/completions";

fn ms(n: u64) -> DurationStr {
    DurationStr(Duration::from_millis(n))
}

// ---------------------------------------------------------------------------
// Panic watch
// ---------------------------------------------------------------------------

static WORKER_PANICS: Mutex<Vec<String>> = Mutex::new(Vec::new());

/// Count panics on tokio's runtime threads (the proxy's connection and body tasks).
/// Test threads are named after their test, so a failing assertion is not counted.
fn watch_panics() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let prev = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            // Runtime threads are `tokio-rt-worker` (or `tokio-runtime-worker` in
            // older tokio); test threads carry their test's name.
            let on_runtime = std::thread::current()
                .name()
                .is_some_and(|n| n.starts_with("tokio-") || n.starts_with("brownout-worker"));
            if on_runtime {
                WORKER_PANICS
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .push(info.to_string());
            }
            prev(info);
        }));
    });
}

fn assert_no_panics() {
    let p = WORKER_PANICS.lock().unwrap_or_else(|e| e.into_inner());
    assert!(p.is_empty(), "a task panicked inside the proxy: {p:#?}");
}

// ---------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------

/// Read a request head without panicking if the peer goes away.
async fn read_head(s: &mut TcpStream) -> Option<String> {
    let mut buf = Vec::new();
    let mut b = [0u8; 4096];
    while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = s.read(&mut b).await.ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&b[..n]);
    }
    Some(String::from_utf8_lossy(&buf).into_owned())
}

/// A raw upstream that answers `GET /healthy` properly (one request per connection)
/// and hands every other request to `hostile`, with the head already read.
async fn hostile_upstream<F, Fut>(hostile: F) -> RawUpstream
where
    F: Fn(TcpStream, String) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    let hostile = Arc::new(hostile);
    RawUpstream::start(move |mut s| {
        let hostile = hostile.clone();
        async move {
            let Some(head) = read_head(&mut s).await else {
                return;
            };
            if head.starts_with("GET /healthy ") {
                let _ = s
                    .write_all(
                        b"HTTP/1.1 200 OK\r\ncontent-length: 4\r\nconnection: close\r\n\r\nfine",
                    )
                    .await;
                let _ = s.flush().await;
                return;
            }
            hostile(s, head).await;
        }
    })
    .await
}

/// A normal request after the hostile one still works: nothing panicked, nothing hangs.
async fn still_serves(proxy: &TestProxy) {
    let r = within(
        STEP,
        "a normal request after the hostile one",
        send(&http1_client(), get(proxy.url("/healthy"))),
    )
    .await
    .expect("the proxy still answers a normal request");
    assert_eq!(r.status, 200, "{:?}", String::from_utf8_lossy(&r.body));
    assert_eq!(r.body, "fine");
    assert_no_panics();
}

/// A streamed OpenAI chat request.
fn chat_stream(url: String) -> Request<Body> {
    post_json(
        url,
        &json!({"model": "gpt-4o-mini", "stream": true,
                "messages": [{"role": "user", "content": "hi"}]}),
    )
}

/// A response whose body goes out in `piece`-byte chunks (so events are split at
/// odd places).
fn piecewise(status: u16, ctype: &str, payload: Bytes, piece: usize) -> Response<Body> {
    let (tx, body) = body_channel();
    tokio::spawn(async move {
        for c in payload.chunks(piece) {
            if !tx.try_send(Bytes::copy_from_slice(c)).await {
                return;
            }
        }
    });
    Response::builder()
        .status(status)
        .header("content-type", ctype)
        .body(body)
        .expect("a valid response")
}

/// An upstream answering `/healthy` with "fine" and anything else with `payload`.
async fn fixed_upstream(ctype: &'static str, payload: Bytes) -> Upstream {
    Upstream::start(move |req| {
        let payload = payload.clone();
        async move {
            if req.uri().path() == "/healthy" {
                return reply(200, "fine");
            }
            let _ = collect(req.into_body()).await;
            // Small payloads in 7-byte pieces (events split at odd places), big
            // ones in 8 KiB pieces.
            let piece = if payload.len() > 64 << 10 { 8 << 10 } else { 7 };
            piecewise(200, ctype, payload, piece)
        }
    })
    .await
}

/// Read a body to its end; `Err` with what arrived if it was aborted.
async fn read_body(resp: Response<hyper::body::Incoming>) -> Result<Vec<u8>, Vec<u8>> {
    let mut body = resp.into_body();
    let mut got = Vec::new();
    loop {
        match within(STEP, "the next body chunk", next_chunk(&mut body)).await {
            None => return Ok(got),
            Some(Ok(b)) => got.extend_from_slice(&b),
            Some(Err(_)) => return Err(got),
        }
    }
}

// ---------------------------------------------------------------------------
// (1) Malformed SSE
// ---------------------------------------------------------------------------

/// Everything a broken server can put in an event stream: lines without a field
/// name, comments, CRLF and LF mixed, invalid JSON in `data:`, bytes that are not
/// UTF-8, an event after `[DONE]`, and a last event that never ends (no blank line).
const MALFORMED_SSE: &[u8] = b"garbage line without any field\n\
: a comment\r\n\
data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"Hel\"}}]}\n\n\
data: {not json at all\n\n\
data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"lo\"}}]}\r\n\r\n\
\n\n\n\
event: \xff\xfe\ndata: \xc3\x28 not utf-8 \x80\n\n\
data: {\"choices\": [{\"delta\": {\"content\": 42}}]}\n\n\
data: {\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":\"stop\"}]}\n\n\
data: [DONE]\n\n\
data: {\"after\": \"done\"}\n\n\
data: a last event that never ends";

/// One event that never ends: 3 MiB of `data:` without a single newline (larger
/// than the event cap of the stream parser).
fn endless_event() -> Bytes {
    let mut v = b"data: ".to_vec();
    v.resize(3 << 20, b'x');
    Bytes::from(v)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_sse_passes_through_byte_identical() {
    watch_panics();
    for (name, payload) in [
        ("garbage", Bytes::from_static(MALFORMED_SSE)),
        ("endless", endless_event()),
    ] {
        let up = fixed_upstream("text/event-stream", payload.clone()).await;
        let proxy = ProxyBuilder::new(up.url())
            .api(ApiKind::Openai)
            .start()
            .await;
        let r = within(
            STEP,
            "a malformed stream",
            send(&http1_client(), chat_stream(proxy.url(CHAT))),
        )
        .await
        .expect("the whole malformed stream arrives");
        assert_eq!(r.status, 200, "{name}");
        assert_eq!(r.header("content-type"), Some("text/event-stream"));
        assert!(
            r.body == payload,
            "{name}: the bytes must pass through unchanged ({} sent, {} received)",
            payload.len(),
            r.body.len()
        );
        still_serves(&proxy).await;
        let recs = proxy.exactly_records(2).await;
        let rec = proxy.record_for(CHAT).await;
        assert_eq!(rec["status"], 200, "{name}: {rec:#}");
        assert_eq!(rec["stream"], true, "{name}: {rec:#}");
        assert_eq!(rec["bytes_out"], payload.len(), "{name}: {rec:#}");
        // A finish_reason and [DONE] came in the garbage one; no content event at
        // all in the endless one: neither is truncated.
        assert_eq!(rec["outcome"], "ok", "{name}: {rec:#}");
        if name == "garbage" {
            // Only the two well-formed content events count as tokens.
            assert_eq!(rec["output_tokens"], 2, "{name}: {rec:#}");
            assert_eq!(rec["tokens_source"], "counted", "{name}: {rec:#}");
            assert!(rec["ttft_ms"].is_number(), "{name}: {rec:#}");
        } else {
            assert!(rec["ttft_ms"].is_null(), "{name}: {rec:#}");
            assert!(rec["output_tokens"].is_null(), "{name}: {rec:#}");
        }
        assert!(recs.iter().any(|r| r["path"] == "/healthy"));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_sse_through_stream_faults_is_recorded() {
    watch_panics();
    let profiles = [
        (
            "token_delay",
            "version: 1\nname: td\nrules:\n  - name: slow\n    match: {path: /v1/**}\n    faults: [{type: token_delay, duration: 1ms}]\n",
        ),
        (
            "truncate",
            "version: 1\nname: tr\nrules:\n  - name: cut\n    match: {path: /v1/**}\n    faults: [{type: truncate, after_tokens: 1, ending: no_terminator}]\n",
        ),
        (
            "corrupt",
            "version: 1\nname: co\nrules:\n  - name: bad\n    match: {path: /v1/**}\n    faults: [{type: corrupt, rate: 1, mode: invalid_json}]\n",
        ),
    ];
    for (fault, profile) in profiles {
        for (name, payload) in [
            ("garbage", Bytes::from_static(MALFORMED_SSE)),
            ("endless", endless_event()),
        ] {
            let up = fixed_upstream("text/event-stream", payload.clone()).await;
            let proxy = ProxyBuilder::new(up.url())
                .api(ApiKind::Openai)
                .profile(profile)
                .start()
                .await;
            let resp = within(
                STEP,
                "response headers",
                http1_client().request(chat_stream(proxy.url(CHAT))),
            )
            .await
            .expect("response headers");
            assert_eq!(resp.status(), 200, "{fault}/{name}");
            let got = read_body(resp).await;
            let rec = proxy.record_for(CHAT).await;
            let ctx = format!("{fault}/{name}: {rec:#}");
            assert_eq!(rec["status"], 200, "{ctx}");
            assert_eq!(rec["stream"], true, "{ctx}");
            match (fault, name) {
                ("token_delay", _) => {
                    // Pacing only: the same bytes, however broken, end cleanly.
                    let got =
                        got.unwrap_or_else(|g| panic!("aborted after {} bytes: {ctx}", g.len()));
                    assert!(got == payload, "token_delay changed the bytes: {ctx}");
                    assert_eq!(rec["outcome"], "ok", "{ctx}");
                }
                ("truncate", "garbage") => {
                    assert_eq!(rec["outcome"], "truncated", "{ctx}");
                    assert_eq!(fault_names(&rec, "faults"), ["cut/truncate"], "{ctx}");
                    let got = got.unwrap_or_else(|g| g);
                    assert!(got.len() < payload.len(), "{ctx}");
                }
                ("corrupt", "garbage") => {
                    assert_eq!(rec["outcome"], "corrupt", "{ctx}");
                    assert!(got.is_ok(), "{ctx}");
                }
                (_, _) => {
                    // No content event in the endless one: the fault never fires and
                    // the bytes pass unchanged.
                    let got =
                        got.unwrap_or_else(|g| panic!("aborted after {} bytes: {ctx}", g.len()));
                    assert!(got == payload, "{ctx}");
                    assert_eq!(rec["outcome"], "ok", "{ctx}");
                    assert!(rec["faults"].as_array().unwrap().is_empty(), "{ctx}");
                }
            }
            still_serves(&proxy).await;
            proxy.exactly_records(2).await;
        }
    }
}

// ---------------------------------------------------------------------------
// (2) Invalid JSON under a content fault
// ---------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_json_answer_under_garble_passes_unchanged() {
    watch_panics();
    let bodies: [&'static [u8]; 4] = [
        b"{\"id\":\"chatcmpl-1\",\"choices\":[{\"message\":{\"content\":\"cut in the mid",
        b"<html><body>502 Bad Gateway</body></html>",
        b"{\"choices\": \"not a list\", \"usage\": [1, 2]}",
        b"\xff\xfe{\"choices\":[]}\x00",
    ];
    for payload in bodies {
        let up = fixed_upstream("application/json", Bytes::from_static(payload)).await;
        let proxy = ProxyBuilder::new(up.url())
            .api(ApiKind::Openai)
            .profile(
                "version: 1\nname: g\nrules:\n  - name: garbler\n    match: {path: /v1/**}\n    faults: [{type: garble, fraction: 1.0}]\n",
            )
            .start()
            .await;
        let req = post_json(
            proxy.url(CHAT),
            &json!({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}),
        );
        let r = within(STEP, "an invalid JSON answer", send(&http1_client(), req))
            .await
            .expect("the answer arrives");
        let shown = String::from_utf8_lossy(payload);
        assert_eq!(r.status, 200, "{shown}");
        assert_eq!(r.body, payload, "passed through unchanged: {shown}");
        let rec = proxy.record_for(CHAT).await;
        let ctx = format!("{shown}: {rec:#}");
        assert_eq!(rec["outcome"], "ok", "{ctx}");
        assert_eq!(rec["status"], 200, "{ctx}");
        assert!(rec["faults"].as_array().unwrap().is_empty(), "{ctx}");
        assert_eq!(
            fault_names(&rec, "faults_skipped"),
            ["garbler/garble"],
            "{ctx}"
        );
        assert!(
            rec["faults_skipped"][0]["reason"].is_string(),
            "the skip says why: {ctx}"
        );
        still_serves(&proxy).await;
        proxy.exactly_records(2).await;
    }
}

// ---------------------------------------------------------------------------
// (3) Premature close mid-body
// ---------------------------------------------------------------------------

/// Answers with `head` and `partial`, then closes the socket mid-body.
async fn cutting_upstream(head: &'static str, partial: &'static str) -> RawUpstream {
    hostile_upstream(move |mut s, _head| async move {
        let _ = s.write_all(head.as_bytes()).await;
        let _ = s.write_all(partial.as_bytes()).await;
        let _ = s.flush().await;
        tokio::time::sleep(Duration::from_millis(50)).await;
    })
    .await
}

const SSE_EVENT: &str = "data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"Hi\"}}]}\n\n";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_closing_mid_body_aborts_the_client() {
    watch_panics();
    let cases: [(&str, &str, &'static str, &'static str, Option<&str>); 4] = [
        (
            "content-length",
            "/v1/embeddings",
            "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 1000\r\n\r\n",
            "{\"data\": [{\"embedding\": [0.1, 0.2",
            None,
        ),
        (
            "chunked SSE",
            CHAT,
            "HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n",
            "3a\r\ndata: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"Hi\"}}]}\n\n\r\n",
            None,
        ),
        (
            "chunked SSE, token_delay",
            CHAT,
            "HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n",
            "3a\r\ndata: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"Hi\"}}]}\n\n\r\n",
            Some("version: 1\nname: td\nrules:\n  - name: slow\n    match: {path: /v1/**}\n    faults: [{type: token_delay, duration: 1ms}]\n"),
        ),
        (
            "content-length JSON, garble",
            CHAT,
            "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 500\r\n\r\n",
            "{\"choices\":[{\"message\":{\"content\":\"hello",
            Some("version: 1\nname: g\nrules:\n  - name: garbler\n    match: {path: /v1/**}\n    faults: [{type: garble, fraction: 1.0}]\n"),
        ),
    ];
    assert_eq!(SSE_EVENT.len(), 0x3a);
    for (name, path, head, partial, profile) in cases {
        let up = cutting_upstream(head, partial).await;
        let mut b = ProxyBuilder::new(up.url()).api(ApiKind::Openai);
        if let Some(p) = profile {
            b = b.profile(p);
        }
        let proxy = b.start().await;
        let resp = within(
            STEP,
            "response headers",
            http1_client().request(chat_stream(proxy.url(path))),
        )
        .await
        .expect("response headers");
        let status = resp.status();
        let marked = resp.headers().get("x-brownout-error").cloned();
        let got = read_body(resp).await;
        let rec = proxy.record_for(path).await;
        let ctx = format!("{name}: {rec:#}");
        if name.contains("garble") {
            // The rewrite reads the whole answer first: the cut comes before any
            // header went out, so the client gets a marked 502.
            assert_eq!(status, StatusCode::BAD_GATEWAY, "{ctx}");
            assert_eq!(
                marked.as_ref().and_then(|v| v.to_str().ok()),
                Some("upstream_unreachable"),
                "{ctx}"
            );
            assert_eq!(rec["status"], 502, "{ctx}");
        } else {
            assert_eq!(status, 200, "{ctx}");
            let got = match got {
                Ok(g) => panic!(
                    "a clean end after {:?}: the client would take a cut body for a whole one ({ctx})",
                    String::from_utf8_lossy(&g)
                ),
                Err(g) => g,
            };
            let sent = if name.starts_with("chunked") {
                SSE_EVENT
            } else {
                partial
            };
            assert!(
                sent.as_bytes().starts_with(&got),
                "{name}: {:?}",
                String::from_utf8_lossy(&got)
            );
            assert_eq!(rec["status"], 200, "{ctx}");
        }
        assert_eq!(rec["outcome"], "upstream_error", "{ctx}");
        assert!(rec["error"].is_string(), "the record says why: {ctx}");
        still_serves(&proxy).await;
        proxy.exactly_records(2).await;
    }
}

// ---------------------------------------------------------------------------
// (4) Enormous response headers
// ---------------------------------------------------------------------------

/// Answers with `extra` as header lines, then a tiny body.
async fn big_header_upstream(extra: String) -> RawUpstream {
    let extra = Arc::new(extra);
    hostile_upstream(move |mut s, _head| {
        let extra = extra.clone();
        async move {
            let head = format!(
                "HTTP/1.1 200 OK\r\n{extra}content-length: 2\r\nconnection: close\r\n\r\nok"
            );
            let _ = s.write_all(head.as_bytes()).await;
            let _ = s.flush().await;
            // Let the proxy read (or give up) before the socket goes.
            let mut sink = [0u8; 1024];
            let _ = tokio::time::timeout(Duration::from_secs(2), s.read(&mut sink)).await;
        }
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn enormous_upstream_headers() {
    watch_panics();
    // Both paths take the same verdict: the fast path and hyper read response heads
    // up to ~400 KiB.
    for fast_path in [true, false] {
        enormous_upstream_headers_on(fast_path).await;
    }
}

async fn enormous_upstream_headers_on(fast_path: bool) {
    // 300 KiB in one header: within what the upstream client accepts, so it passes
    // through whole.
    let value = "v".repeat(300 << 10);
    let up = big_header_upstream(format!("x-huge: {value}\r\n")).await;
    let proxy = ProxyBuilder::new(up.url())
        .config(|c| c.fast_path = fast_path)
        .start()
        .await;
    let r = within(
        STEP,
        "300 KiB header",
        send(&http1_client(), get(proxy.url("/big"))),
    )
    .await
    .expect("an answer");
    assert_eq!(r.status, 200, "fast path {fast_path}");
    assert_eq!(r.header("x-huge").map(str::len), Some(value.len()));
    assert_eq!(r.body, "ok");
    let rec = proxy.record_for("/big").await;
    assert_eq!(rec["outcome"], "ok", "fast path {fast_path}: {rec:#}");
    still_serves(&proxy).await;
    proxy.exactly_records(2).await;

    // Beyond that: 1 MiB of header, or more header lines than hyper parses (100).
    let many: String = (0..500).map(|i| format!("x-h{i}: {i}\r\n")).collect();
    for (name, extra) in [
        (
            "1 MiB header",
            format!("x-huge: {}\r\n", "v".repeat(1 << 20)),
        ),
        ("500 headers", many),
    ] {
        let ctx = format!("{name}, fast path {fast_path}");
        let up = big_header_upstream(extra).await;
        let proxy = ProxyBuilder::new(up.url())
            .config(|c| c.fast_path = fast_path)
            .start()
            .await;
        let r = within(STEP, name, send(&http1_client(), get(proxy.url("/big"))))
            .await
            .expect("an answer");
        assert_eq!(r.status, 502, "{ctx}");
        assert_eq!(
            r.header("x-brownout-error"),
            Some("upstream_unreachable"),
            "{ctx}"
        );
        assert_eq!(r.json()["error"]["source"], "brownout", "{ctx}");
        let rec = proxy.record_for("/big").await;
        assert_eq!(rec["outcome"], "upstream_error", "{ctx}: {rec:#}");
        assert_eq!(rec["status"], 502, "{ctx}: {rec:#}");
        assert!(rec["error"].is_string(), "{ctx}: {rec:#}");
        still_serves(&proxy).await;
        proxy.exactly_records(2).await;
    }
}

// ---------------------------------------------------------------------------
// (5) An upstream that never answers
// ---------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_that_never_answers_is_a_504() {
    watch_panics();
    // Reads the request, says nothing, holds the socket open.
    let up = hostile_upstream(|s, _head| async move {
        tokio::time::sleep(Duration::from_secs(30)).await;
        drop(s);
    })
    .await;
    let proxy = ProxyBuilder::new(up.url())
        .api(ApiKind::Openai)
        .limits(|l| l.upstream_timeout = ms(500))
        .start()
        .await;
    let t = Instant::now();
    for (i, req) in [get(proxy.url("/silent")), chat_stream(proxy.url(CHAT))]
        .into_iter()
        .enumerate()
    {
        let r = within(STEP, "504", send(&http1_client(), req))
            .await
            .expect("an answer");
        assert_eq!(r.status, 504, "request {i}");
        assert_eq!(r.header("x-brownout-error"), Some("upstream_timeout"));
        assert_eq!(r.json()["error"]["type"], "upstream_timeout");
    }
    assert!(
        t.elapsed() >= Duration::from_millis(1000),
        "{:?}",
        t.elapsed()
    );
    for path in ["/silent", CHAT] {
        let rec = proxy.record_for(path).await;
        assert_eq!(rec["outcome"], "timeout", "{rec:#}");
        assert_eq!(rec["status"], 504, "{rec:#}");
        assert!(rec["e2e_ms"].as_f64().unwrap() >= 500.0, "{rec:#}");
    }
    still_serves(&proxy).await;
    proxy.exactly_records(3).await;
}

// ---------------------------------------------------------------------------
// (6) A client that sends its request slowly
// ---------------------------------------------------------------------------

/// Write `bytes` one at a time with `pause` between; stops at the first error.
async fn trickle(mut w: tokio::net::tcp::OwnedWriteHalf, bytes: &'static [u8], pause: Duration) {
    for b in bytes {
        if w.write_all(&[*b]).await.is_err() {
            return;
        }
        tokio::time::sleep(pause).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_client_within_header_timeout_is_served_and_slower_is_cut() {
    watch_panics();
    let up = Upstream::start(|req| async move {
        if req.uri().path() == "/healthy" {
            reply(200, "fine")
        } else {
            reply(200, "trickled")
        }
    })
    .await;
    const REQ: &[u8] = b"GET /trickle HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n";

    // Byte by byte, 10 ms apart (about 0.5 s in all), well within 5 s.
    let proxy = ProxyBuilder::new(up.url())
        .limits(|l| {
            l.header_timeout = ms(5_000);
            l.idle_timeout = ms(10_000);
        })
        .start()
        .await;
    let (mut r, w) = TcpStream::connect(proxy.addr).await.unwrap().into_split();
    let writer = tokio::spawn(trickle(w, REQ, Duration::from_millis(10)));
    let mut got = Vec::new();
    within(
        STEP,
        "the trickled request's answer",
        r.read_to_end(&mut got),
    )
    .await
    .unwrap();
    writer.abort();
    let text = String::from_utf8_lossy(&got);
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    assert!(text.ends_with("trickled"), "{text}");
    let rec = proxy.record_for("/trickle").await;
    assert_eq!(rec["outcome"], "ok", "{rec:#}");
    still_serves(&proxy).await;
    proxy.exactly_records(2).await;

    // One byte every 100 ms against a 400 ms header_timeout: the head would take
    // 5 s; the proxy drops the connection without an answer after header_timeout.
    let proxy = ProxyBuilder::new(up.url())
        .limits(|l| {
            l.header_timeout = ms(400);
            l.idle_timeout = ms(10_000);
        })
        .start()
        .await;
    let before = up.requests();
    let t = Instant::now();
    let (mut r, w) = TcpStream::connect(proxy.addr).await.unwrap().into_split();
    let writer = tokio::spawn(trickle(w, REQ, Duration::from_millis(100)));
    let mut got = Vec::new();
    let _ = within(
        Duration::from_secs(4),
        "the proxy cuts the slow client off",
        r.read_to_end(&mut got),
    )
    .await;
    let took = t.elapsed();
    writer.abort();
    assert!(
        got.is_empty(),
        "no answer: {:?}",
        String::from_utf8_lossy(&got)
    );
    assert!(
        took >= Duration::from_millis(350),
        "cut too early: {took:?}"
    );
    assert_eq!(up.requests(), before, "nothing reached the upstream");
    still_serves(&proxy).await;
    // No request, no exchange: only the follow-up is recorded.
    let recs = proxy.exactly_records(1).await;
    assert_eq!(recs[0]["path"], "/healthy");
}

// ---------------------------------------------------------------------------
// (7) A client that disconnects mid-stream
// ---------------------------------------------------------------------------

/// An upstream whose SSE answers the test drives: each request hands the test a
/// [`BodyTx`]; `/hold` is kept waiting 30 s without an answer.
async fn driven_sse_upstream() -> (Upstream, mpsc::Receiver<BodyTx>) {
    let (tx, rx) = mpsc::channel::<BodyTx>(4);
    let up = Upstream::start(move |req| {
        let tx = tx.clone();
        async move {
            match req.uri().path() {
                "/healthy" => reply(200, "fine"),
                "/hold" => {
                    tokio::time::sleep(Duration::from_secs(30)).await;
                    reply(200, "too late")
                }
                _ => {
                    let (btx, body) = body_channel();
                    let _ = tx.send(btx).await;
                    Response::builder()
                        .header("content-type", "text/event-stream")
                        .body(body)
                        .unwrap()
                }
            }
        }
    })
    .await;
    (up, rx)
}

/// Keep sending events until the upstream's answer is dropped: the proxy has let
/// go of the upstream after the client left.
async fn upstream_sees_the_hangup(tx: &BodyTx) {
    within(STEP, "the proxy lets go of the upstream", async {
        while tx.try_send(SSE_EVENT).await {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_closing_mid_stream_is_recorded_client_closed() {
    watch_panics();
    for profile in [
        None,
        Some("version: 1\nname: td\nrules:\n  - name: slow\n    match: {path: /v1/**}\n    faults: [{type: token_delay, duration: 1ms}]\n"),
    ] {
        let (up, mut bodies) = driven_sse_upstream().await;
        let mut b = ProxyBuilder::new(up.url()).api(ApiKind::Openai);
        if let Some(p) = profile {
            b = b.profile(p);
        }
        let proxy = b.start().await;

        // HTTP/1.1: the client closes the connection after the first event.
        let (mut conn, task) = h1_conn(proxy.addr).await;
        let mut req = chat_stream(CHAT.into());
        req.headers_mut().insert("host", "x".parse().unwrap());
        let resp = within(STEP, "headers", conn.send_request(req)).await.unwrap();
        let tx = within(STEP, "upstream called", bodies.recv()).await.unwrap();
        tx.send(SSE_EVENT).await;
        let mut body = resp.into_body();
        let first = within(STEP, "first event", next_chunk(&mut body))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(first, SSE_EVENT);
        drop(body);
        drop(conn);
        task.abort();
        upstream_sees_the_hangup(&tx).await;
        let recs = proxy.wait_records(1).await;
        let rec = &recs[0];
        assert_eq!(rec["outcome"], "client_closed", "{profile:?}: {rec:#}");
        assert_eq!(rec["status"], 200, "{rec:#}");
        // What went out before the proxy noticed the hang-up (at least the event
        // the client read).
        let out = rec["bytes_out"].as_u64().unwrap();
        assert!(out >= SSE_EVENT.len() as u64, "{rec:#}");
        assert_eq!(out % SSE_EVENT.len() as u64, 0, "whole events only: {rec:#}");
        assert!(rec["ttft_ms"].is_number(), "measured what it got: {rec:#}");

        // HTTP/2: the client cancels the stream; the connection lives on.
        let (mut h2, _task) = h2_conn(proxy.addr).await;
        let resp = within(
            STEP,
            "h2 headers",
            h2.send_request(chat_stream(format!("http://x{CHAT}"))),
        )
        .await
        .unwrap();
        let tx = within(STEP, "upstream called", bodies.recv()).await.unwrap();
        tx.send(SSE_EVENT).await;
        let mut body = resp.into_body();
        within(STEP, "first h2 event", next_chunk(&mut body))
            .await
            .unwrap()
            .unwrap();
        drop(body);
        upstream_sees_the_hangup(&tx).await;
        let recs = proxy.wait_records(2).await;
        assert_eq!(recs[1]["outcome"], "client_closed", "{:#}", recs[1]);
        // The same h2 connection still carries a normal request.
        let r = within(
            STEP,
            "h2 follow-up",
            h2.send_request(get("http://x/healthy")),
        )
        .await
        .unwrap();
        assert_eq!(read_reply(r).await.unwrap().body, "fine");
        still_serves(&proxy).await;
        proxy.exactly_records(4).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_closing_before_the_answer_is_recorded_client_closed() {
    watch_panics();
    let (up, _bodies) = driven_sse_upstream().await;
    // HTTP/1.1 under `half_close: abort`: under `answer` (the default) the FIN of a
    // client that hangs up may be a half-close, and its answer is still sent
    // (tests/half_close.rs). HTTP/2 stream cancellation is the same either way.
    let proxy = ProxyBuilder::new(up.url())
        .config(|c| c.listeners[0].half_close = brownout::config::HalfClose::Abort)
        .start()
        .await;
    // HTTP/1.1: the client hangs up while the upstream thinks.
    let (mut conn, task) = h1_conn(proxy.addr).await;
    let req = Request::get("/hold")
        .header("host", "x")
        .body(empty())
        .unwrap();
    let pending = tokio::spawn(async move {
        let _ = conn.send_request(req).await;
    });
    within(STEP, "the upstream has the request", async {
        while up.requests() < 1 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;
    pending.abort();
    task.abort();
    // HTTP/2: the client cancels the stream.
    let (mut h2, _h2task) = h2_conn(proxy.addr).await;
    let pending = tokio::spawn(async move {
        let _ = h2.send_request(get("http://x/hold")).await;
    });
    within(STEP, "the upstream has the second request", async {
        while up.requests() < 2 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;
    pending.abort();
    // Recorded now, not when the upstream would have answered (30 s).
    let recs = proxy.wait_records(2).await;
    for rec in &recs {
        assert_eq!(rec["outcome"], "client_closed", "{rec:#}");
        assert!(rec["status"].is_null(), "no answer was sent: {rec:#}");
    }
    still_serves(&proxy).await;
    proxy.exactly_records(3).await;
}

// ---------------------------------------------------------------------------
// (8) Pipelined HTTP/1.1 requests
// ---------------------------------------------------------------------------

/// Parse consecutive HTTP/1.1 responses (content-length or chunked bodies).
fn parse_responses(raw: &[u8]) -> Vec<(u16, Vec<u8>)> {
    let mut out = Vec::new();
    let mut pos = 0;
    while pos < raw.len() {
        let Some(end) = raw[pos..].windows(4).position(|w| w == b"\r\n\r\n") else {
            panic!(
                "an incomplete head: {:?}",
                String::from_utf8_lossy(&raw[pos..])
            );
        };
        let head = String::from_utf8_lossy(&raw[pos..pos + end]).to_ascii_lowercase();
        pos += end + 4;
        let status: u16 = head[9..12].parse().expect("a status code");
        let header = |name: &str| {
            head.lines().find_map(|l| {
                l.strip_prefix(&format!("{name}:"))
                    .map(|v| v.trim().to_string())
            })
        };
        let mut body = Vec::new();
        if let Some(n) = header("content-length") {
            let n: usize = n.parse().expect("a length");
            body.extend_from_slice(&raw[pos..pos + n]);
            pos += n;
        } else if header("transfer-encoding").is_some_and(|v| v.contains("chunked")) {
            loop {
                let eol = raw[pos..]
                    .windows(2)
                    .position(|w| w == b"\r\n")
                    .expect("a chunk size line");
                let size =
                    usize::from_str_radix(String::from_utf8_lossy(&raw[pos..pos + eol]).trim(), 16)
                        .expect("a hex chunk size");
                pos += eol + 2;
                if size == 0 {
                    pos += 2; // no trailers
                    break;
                }
                body.extend_from_slice(&raw[pos..pos + size]);
                pos += size + 2;
            }
        }
        out.push((status, body));
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pipelined_requests_get_answers_in_order() {
    watch_panics();
    let up = Upstream::start(|req| async move {
        let path = req.uri().path().to_string();
        if path == "/healthy" {
            return reply(200, "fine");
        }
        if path == "/one" {
            // The first answer is the slowest: order must still hold.
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        let body = collect(req.into_body()).await.unwrap_or_default();
        reply(200, format!("{path}:{}", String::from_utf8_lossy(&body)))
    })
    .await;
    let proxy = ProxyBuilder::new(up.url()).start().await;
    let raw = raw_exchange(
        proxy.addr,
        b"GET /one HTTP/1.1\r\nhost: x\r\n\r\n\
POST /two HTTP/1.1\r\nhost: x\r\ncontent-length: 5\r\n\r\nhello\
GET /three HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n",
        "three pipelined answers",
    )
    .await;
    let answers = parse_responses(&raw);
    let bodies: Vec<(u16, String)> = answers
        .into_iter()
        .map(|(st, b)| (st, String::from_utf8_lossy(&b).into_owned()))
        .collect();
    assert_eq!(
        bodies,
        [
            (200, "/one:".to_string()),
            (200, "/two:hello".to_string()),
            (200, "/three:".to_string())
        ]
    );
    for path in ["/one", "/two", "/three"] {
        let rec = proxy.record_for(path).await;
        assert_eq!(rec["outcome"], "ok", "{rec:#}");
        assert_eq!(rec["status"], 200, "{rec:#}");
    }
    let two = proxy.record_for("/two").await;
    assert_eq!(two["bytes_in"], 5, "{two:#}");
    still_serves(&proxy).await;
    proxy.exactly_records(4).await;
}

// ---------------------------------------------------------------------------
// (9) A huge request body
// ---------------------------------------------------------------------------

const MIB: usize = 1 << 20;

async fn huge_upload(with_body_rule: bool) {
    // The upstream counts what arrives and tells the test when the first bytes came.
    let (seen_tx, mut seen_rx) = mpsc::channel::<usize>(1);
    let up = Upstream::start(move |req| {
        let seen_tx = seen_tx.clone();
        async move {
            if req.uri().path() == "/healthy" {
                return reply(200, "fine");
            }
            let mut body = req.into_body();
            let mut total = 0usize;
            let mut told = false;
            while let Some(f) = body.frame().await {
                let Ok(f) = f else {
                    return reply(400, "the body broke");
                };
                if let Some(d) = f.data_ref() {
                    total += d.len();
                    if !told && total >= MIB {
                        told = true;
                        let _ = seen_tx.try_send(total);
                    }
                }
            }
            reply(200, format!("got {total}"))
        }
    })
    .await;
    let mut b = ProxyBuilder::new(up.url()).api(ApiKind::Openai);
    if with_body_rule {
        // A rule that looks into bodies makes the proxy read a prefix (up to
        // inspect_limit, 1 MiB here): the rest must still stream.
        b = b
            .profile("version: 1\nname: m\nrules:\n  - name: gpt\n    match: {model: \"gpt-*\"}\n    faults: [{type: delay, duration: 1ms}]\n")
            .limits(|l| l.inspect_limit = brownout::config::ByteSize(MIB as u64));
    }
    let proxy = b.start().await;
    let (tx, body) = body_channel();
    let req = Request::post(proxy.url("/v1/files"))
        .header("content-type", "application/octet-stream")
        .body(body)
        .unwrap();
    let client = http1_client();
    let pending = tokio::spawn(async move { send(&client, req).await });
    let chunk = Bytes::from(vec![b'z'; MIB]);
    // 2 MiB first: then the upstream must see bytes before the client sends more.
    tx.send(chunk.clone()).await;
    tx.send(chunk.clone()).await;
    let first = within(
        STEP,
        "the upstream sees the first MiB before the client sends the rest",
        seen_rx.recv(),
    )
    .await
    .expect("the upstream got bytes");
    assert!(first >= MIB);
    let t = Instant::now();
    for _ in 2..64 {
        within(STEP, "the body keeps flowing", tx.send(chunk.clone())).await;
    }
    drop(tx);
    let r = within(Duration::from_secs(30), "the upload's answer", pending)
        .await
        .unwrap()
        .expect("the answer arrives");
    assert_eq!(r.status, 200);
    assert_eq!(
        r.body,
        format!("got {}", 64 * MIB),
        "took {:?}",
        t.elapsed()
    );
    let rec = proxy.record_for("/v1/files").await;
    assert_eq!(rec["outcome"], "ok", "{rec:#}");
    assert_eq!(rec["bytes_in"], 64 * MIB, "{rec:#}");
    still_serves(&proxy).await;
    proxy.exactly_records(2).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn huge_request_body_streams_through() {
    watch_panics();
    huge_upload(false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn huge_request_body_streams_through_with_a_body_rule() {
    watch_panics();
    huge_upload(true).await;
}

// ---------------------------------------------------------------------------
// More nonsense from either side
// ---------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_speaking_nonsense_is_a_marked_502() {
    watch_panics();
    let cases: [(&str, &'static [u8]); 4] = [
        ("not HTTP at all", b"SSH-2.0-OpenSSH_9.6\r\n\r\n"),
        ("closes without a word", b""),
        (
            "conflicting lengths",
            b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\ncontent-length: 3\r\n\r\nok!",
        ),
        (
            "a status line that is not one",
            b"HTTP/1.1 abc Nope\r\n\r\n",
        ),
    ];
    for (name, answer) in cases {
        let up = hostile_upstream(move |mut s, _head| async move {
            let _ = s.write_all(answer).await;
            let _ = s.flush().await;
            tokio::time::sleep(Duration::from_millis(50)).await;
        })
        .await;
        let proxy = ProxyBuilder::new(up.url()).start().await;
        let r = within(
            STEP,
            name,
            send(&http1_client(), get(proxy.url("/nonsense"))),
        )
        .await
        .expect("an answer");
        assert_eq!(
            r.status,
            502,
            "{name}: {:?}",
            String::from_utf8_lossy(&r.body)
        );
        assert_eq!(
            r.header("x-brownout-error"),
            Some("upstream_unreachable"),
            "{name}"
        );
        let rec = proxy.record_for("/nonsense").await;
        assert_eq!(rec["outcome"], "upstream_error", "{name}: {rec:#}");
        assert_eq!(rec["status"], 502, "{name}: {rec:#}");
        still_serves(&proxy).await;
        proxy.exactly_records(2).await;
    }

    // A broken chunk size after good headers: the client's body is aborted.
    let up = hostile_upstream(|mut s, _head| async move {
        let _ = s
            .write_all(
                b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n\
5\r\nhello\r\nzz-not-hex\r\nmore\r\n",
            )
            .await;
        let _ = s.flush().await;
        tokio::time::sleep(Duration::from_millis(200)).await;
    })
    .await;
    let proxy = ProxyBuilder::new(up.url())
        .api(ApiKind::Openai)
        .start()
        .await;
    let resp = within(
        STEP,
        "headers",
        http1_client().request(chat_stream(proxy.url(CHAT))),
    )
    .await
    .expect("headers");
    assert_eq!(resp.status(), 200);
    let got = read_body(resp).await;
    let got = got.expect_err("a broken chunk must abort the client's body");
    assert!(
        b"hello".starts_with(&got),
        "{:?}",
        String::from_utf8_lossy(&got)
    );
    let rec = proxy.record_for(CHAT).await;
    assert_eq!(rec["outcome"], "upstream_error", "{rec:#}");
    still_serves(&proxy).await;
    proxy.exactly_records(2).await;
}

/// An upstream that reads each upload to its end (or until it breaks) and tells
/// the test how many bytes came.
async fn counting_upstream() -> (Upstream, mpsc::Receiver<usize>) {
    let (got_tx, got_rx) = mpsc::channel::<usize>(4);
    let up = Upstream::start(move |req| {
        let got_tx = got_tx.clone();
        async move {
            if req.uri().path() == "/healthy" {
                return reply(200, "fine");
            }
            let mut body = req.into_body();
            let mut total = 0usize;
            while let Some(f) = body.frame().await {
                match f {
                    Ok(f) => total += f.data_ref().map_or(0, |d| d.len()),
                    Err(_) => break,
                }
            }
            let _ = got_tx.send(total).await;
            reply(200, format!("got {total}"))
        }
    })
    .await;
    (up, got_rx)
}

/// A client that gives up on its upload (closes the connection, or resets its
/// HTTP/2 stream) mid-body: `client_closed`, not an upstream error, and `bytes_in`
/// is what arrived, not the promised `content-length`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_abandoning_its_upload_is_recorded_client_closed() {
    watch_panics();
    let (up, mut got_rx) = counting_upstream().await;
    let proxy = ProxyBuilder::new(up.url()).start().await;

    // HTTP/1.1: promises 10 MiB, sends 1 MiB, hangs up.
    let mut s = TcpStream::connect(proxy.addr).await.unwrap();
    s.write_all(b"POST /upload-h1 HTTP/1.1\r\nhost: x\r\ncontent-length: 10485760\r\n\r\n")
        .await
        .unwrap();
    s.write_all(&vec![b'u'; MIB]).await.unwrap();
    drop(s);
    let seen = within(STEP, "the upstream sees the cut upload", got_rx.recv())
        .await
        .expect("the upstream handler ran");
    assert!(seen <= MIB, "{seen}");

    // HTTP/2: the client's body fails after 1 MiB (the stream is reset).
    let (mut h2, _task) = h2_conn(proxy.addr).await;
    let (tx, body) = body_channel();
    let req = Request::post("http://x/upload-h2").body(body).unwrap();
    let pending = tokio::spawn(async move { h2.send_request(req).await.map(|_| ()) });
    tx.send(vec![b'u'; 16 << 10]).await;
    // Once the upload has reached the upstream, the client gives up.
    within(STEP, "the h2 upload reaches the upstream", async {
        while up.requests() < 2 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;
    tx.abort().await;
    let seen = within(STEP, "the upstream sees the cut h2 upload", got_rx.recv())
        .await
        .expect("the upstream handler ran");
    assert!(seen <= MIB, "{seen}");
    let _ = within(STEP, "the h2 request ends", pending).await;

    for path in ["/upload-h1", "/upload-h2"] {
        let rec = proxy.record_for(path).await;
        assert_eq!(
            rec["outcome"], "client_closed",
            "the client went away; the upstream did nothing wrong: {rec:#}"
        );
        assert!(
            rec["bytes_in"].as_u64().unwrap() <= MIB as u64,
            "bytes_in counts what arrived, not what was promised: {rec:#}"
        );
    }
    still_serves(&proxy).await;
    proxy.exactly_records(3).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_request_is_refused_and_nothing_is_forwarded() {
    watch_panics();
    let up = Upstream::start(|_req| async { reply(200, "fine") }).await;
    let proxy = ProxyBuilder::new(up.url()).start().await;
    let huge_head = format!(
        "GET / HTTP/1.1\r\nhost: x\r\nx-big: {}\r\n\r\n",
        "b".repeat(1 << 20)
    );
    for (garbage, status) in [
        (
            &b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03 TLS to a plain port\r\n\r\n"[..],
            "400",
        ),
        (
            b"GET / HTTP/1.1\r\nhost: x\r\nbad header line without colon\r\n\r\n",
            "400",
        ),
        (
            b"GET / HTTP/1.1\r\nhost: x\r\ncontent-length: 5\r\ncontent-length: 7\r\n\r\nhello",
            "400",
        ),
        (huge_head.as_bytes(), "431"),
    ] {
        let mut s = TcpStream::connect(proxy.addr).await.unwrap();
        let _ = s.write_all(garbage).await;
        let mut got = Vec::new();
        let read = within(STEP, "the proxy refuses garbage", s.read_to_end(&mut got)).await;
        let text = String::from_utf8_lossy(&got);
        let shown = String::from_utf8_lossy(&garbage[..garbage.len().min(80)]);
        // A head larger than the proxy reads is cut with unread bytes in the
        // socket: the kernel may then reset it before the 431 is read.
        let lost_to_reset = status == "431" && read.is_err() && got.is_empty();
        assert!(
            lost_to_reset || text.starts_with(&format!("HTTP/1.1 {status} ")),
            "{shown:?}: {read:?} {text}"
        );
    }
    assert_eq!(up.requests(), 0, "nothing reached the upstream");
    still_serves(&proxy).await;
    // Not one exchange reached the proxy's service: only the follow-up is recorded.
    let recs = proxy.exactly_records(1).await;
    assert_eq!(recs[0]["path"], "/healthy");
}
