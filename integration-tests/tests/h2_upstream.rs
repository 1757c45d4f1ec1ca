//! HTTP/2 upstream connections and gRPC pass-through (docs/configuration.md, "HTTP/2 upstream"
//! `upstream_protocol`, §4 "gRPC"), against hyper's own HTTP/2 server.
//!
//! The real gRPC stack (grpcio, pymilvus against Milvus Lite) is driven in
//! `grpc_real.rs`; these tests pin the wire rules with frames a test controls.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use brownout::config::UpstreamProtocol;
use brownout_integration_tests::*;
use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Request, Response, Version};
use http_body::Frame;
use http_body_util::{BodyExt, StreamBody};

/// A body of `data` frames followed by `trailers`.
fn with_trailers(data: &[&'static [u8]], trailers: HeaderMap) -> Body {
    let mut frames: Vec<Result<Frame<Bytes>, BoxError>> = data
        .iter()
        .map(|d| Ok(Frame::data(Bytes::from_static(d))))
        .collect();
    frames.push(Ok(Frame::trailers(trailers)));
    StreamBody::new(futures_util::stream::iter(frames)).boxed()
}

fn grpc_trailers(status: u32, extra: &[(&'static str, &'static str)]) -> HeaderMap {
    let mut t = HeaderMap::new();
    t.insert("grpc-status", HeaderValue::from(status));
    for (k, v) in extra {
        t.insert(*k, HeaderValue::from_static(v));
    }
    t
}

/// One length-prefixed gRPC message.
fn message(payload: &[u8]) -> Vec<u8> {
    let mut m = vec![0u8];
    m.extend_from_slice(&(payload.len() as u32).to_be_bytes());
    m.extend_from_slice(payload);
    m
}

fn grpc_request(url: String, payload: &[u8]) -> Request<Body> {
    Request::post(url)
        .header("content-type", "application/grpc")
        .header("te", "trailers")
        .header("grpc-timeout", "5S")
        .header("x-tenant", "acme")
        .body(full(message(payload)))
        .expect("request")
}

/// What the upstream saw of one request.
#[derive(Debug, Clone)]
struct Seen {
    version: Version,
    headers: HeaderMap,
    body: Bytes,
}

/// An upstream answering every call with two messages and trailers, remembering
/// what it saw.
async fn grpc_upstream(status: u32) -> (Upstream, Arc<Mutex<Vec<Seen>>>) {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let s = seen.clone();
    let up = Upstream::start(move |req: Request<hyper::body::Incoming>| {
        let s = s.clone();
        async move {
            let version = req.version();
            let headers = req.headers().clone();
            let body = collect(req.into_body()).await.unwrap_or_default();
            s.lock().unwrap().push(Seen {
                version,
                headers,
                body,
            });
            Response::builder()
                .header("content-type", "application/grpc")
                .header("x-initial", "meta")
                .body(with_trailers(
                    &[b"\x00\x00\x00\x00\x02hi", b"\x00\x00\x00\x00\x03you"],
                    grpc_trailers(status, &[("x-trailing", "bye")]),
                ))
                .unwrap()
        }
    })
    .await;
    (up, seen)
}

#[tokio::test]
async fn grpc_passes_through_over_h2c_with_trailers_and_metadata() {
    let (up, seen) = grpc_upstream(0).await;
    let dir = TempDir::new();
    let proxy = ProxyBuilder::new(up.url())
        .record(&dir.join("r.jsonl"))
        .start()
        .await;
    let resp = h2c_client()
        .request(grpc_request(proxy.url("/pkg.Echo/Unary"), b"\x0a\x03abc"))
        .await
        .expect("call");
    assert_eq!(resp.version(), Version::HTTP_2);
    assert_eq!(resp.headers()["x-initial"], "meta");
    let collected = resp.into_body().collect().await.expect("body");
    let trailers = collected
        .trailers()
        .cloned()
        .expect("trailers reach the client");
    assert_eq!(trailers["grpc-status"], "0");
    assert_eq!(trailers["x-trailing"], "bye");
    assert_eq!(
        collected.to_bytes().as_ref(),
        b"\x00\x00\x00\x00\x02hi\x00\x00\x00\x00\x03you"
    );

    let seen = seen.lock().unwrap()[0].clone();
    assert_eq!(
        seen.version,
        Version::HTTP_2,
        "gRPC must go upstream as HTTP/2"
    );
    assert_eq!(seen.headers["te"], "trailers");
    assert_eq!(seen.headers["grpc-timeout"], "5S");
    assert_eq!(seen.headers["x-tenant"], "acme");
    assert_eq!(seen.body.as_ref(), message(b"\x0a\x03abc").as_slice());

    let rec = proxy.record_for("/pkg.Echo/Unary").await;
    assert_eq!(rec["grpc"]["service"], "pkg.Echo", "{rec}");
    assert_eq!(rec["grpc"]["method"], "Unary", "{rec}");
    assert_eq!(rec["grpc"]["status"], 0, "{rec}");
    assert_eq!(rec["outcome"], "ok", "{rec}");
    proxy.shutdown().await;
}

#[tokio::test]
async fn a_failed_grpc_status_in_the_trailers_is_an_http_error() {
    let (up, _) = grpc_upstream(14).await;
    let dir = TempDir::new();
    let proxy = ProxyBuilder::new(up.url())
        .record(&dir.join("r.jsonl"))
        .start()
        .await;
    let resp = h2c_client()
        .request(grpc_request(proxy.url("/pkg.Echo/Unary"), b""))
        .await
        .expect("call");
    let collected = resp.into_body().collect().await.expect("body");
    assert_eq!(collected.trailers().expect("trailers")["grpc-status"], "14");
    let rec = proxy.record_for("/pkg.Echo/Unary").await;
    assert_eq!(rec["grpc"]["status"], 14, "{rec}");
    assert_eq!(rec["outcome"], "http_error", "{rec}");
    proxy.shutdown().await;
}

#[tokio::test]
async fn plain_http2_goes_upstream_as_http1_under_auto_and_as_h2_under_h2c() {
    let (up, seen) = grpc_upstream(0).await;
    let auto = ProxyBuilder::new(up.url()).start().await;
    let r = send(&h2c_client(), get(auto.url("/v1/models")))
        .await
        .expect("h2 client");
    assert_eq!(r.status, 200);
    assert_eq!(seen.lock().unwrap()[0].version, Version::HTTP_11);
    auto.shutdown().await;

    let h2c = ProxyBuilder::new(up.url())
        .config(|c| c.listeners[0].upstream_protocol = UpstreamProtocol::H2c)
        .start()
        .await;
    for client in [h2c_client(), http1_client()] {
        let r = send(&client, get(h2c.url("/v1/models")))
            .await
            .expect("through h2c");
        assert_eq!(r.status, 200);
    }
    let versions: Vec<Version> = seen.lock().unwrap().iter().map(|s| s.version).collect();
    assert_eq!(versions[1], Version::HTTP_2);
    assert_eq!(versions[2], Version::HTTP_2, "an HTTP/1.1 client too");
    h2c.shutdown().await;
}

#[tokio::test]
async fn each_client_connection_gets_its_own_upstream_connection() {
    let (up, _) = grpc_upstream(0).await;
    let proxy = ProxyBuilder::new(up.url()).start().await;
    let calls = Arc::new(AtomicUsize::new(0));
    // Two client connections, each with several concurrent streams.
    let mut clients = Vec::new();
    for _ in 0..2 {
        let client = h2c_client();
        let mut tasks = Vec::new();
        for _ in 0..5 {
            let (client, url, calls) =
                (client.clone(), proxy.url("/pkg.Echo/Unary"), calls.clone());
            tasks.push(tokio::spawn(async move {
                let resp = client.request(grpc_request(url, b"x")).await.expect("call");
                resp.into_body().collect().await.expect("body");
                calls.fetch_add(1, Ordering::SeqCst);
            }));
        }
        for t in tasks {
            t.await.unwrap();
        }
        clients.push(client);
    }
    assert_eq!(calls.load(Ordering::SeqCst), 10);
    assert_eq!(
        up.connections(),
        2,
        "one upstream connection per client connection, whatever the streams"
    );
    proxy.shutdown().await;
}

#[tokio::test]
async fn a_grpc_call_to_a_dead_upstream_gets_unavailable_not_a_502() {
    let dead = closed_port_addr().await;
    let dir = TempDir::new();
    let proxy = ProxyBuilder::new(format!("http://{dead}"))
        .record(&dir.join("r.jsonl"))
        .start()
        .await;
    let resp = h2c_client()
        .request(grpc_request(proxy.url("/pkg.Echo/Unary"), b""))
        .await
        .expect("an answer");
    assert_eq!(resp.status(), 200, "gRPC errors ride on :status 200");
    assert_eq!(resp.headers()["grpc-status"], "14");
    assert!(resp.headers().contains_key("grpc-message"));
    let collected = resp.into_body().collect().await.expect("body");
    assert!(collected.to_bytes().is_empty(), "trailers-only: no body");
    let rec = proxy.record_for("/pkg.Echo/Unary").await;
    assert_eq!(rec["grpc"]["status"], 14, "{rec}");
    assert_eq!(rec["outcome"], "upstream_error", "{rec}");
    proxy.shutdown().await;
}

#[tokio::test]
async fn h2_and_h2c_must_match_the_upstream_scheme() {
    let err = ProxyBuilder::new("http://127.0.0.1:9")
        .config(|c| c.listeners[0].upstream_protocol = UpstreamProtocol::H2)
        .try_start()
        .await
        .expect_err("h2 over http is refused");
    assert!(err.to_string().contains("use h2c"), "{err}");
    let err = ProxyBuilder::new("https://127.0.0.1:9")
        .config(|c| c.listeners[0].upstream_protocol = UpstreamProtocol::H2c)
        .try_start()
        .await
        .expect_err("h2c over https is refused");
    assert!(err.to_string().contains("use h2"), "{err}");
}

#[tokio::test]
async fn a_response_that_ends_without_grpc_status_is_an_upstream_error() {
    let up = Upstream::start(|_req| async {
        Response::builder()
            .header("content-type", "application/grpc")
            .body(full(&b"\x00\x00\x00\x00\x00"[..]))
            .unwrap()
    })
    .await;
    let dir = TempDir::new();
    let proxy = ProxyBuilder::new(up.url())
        .record(&dir.join("r.jsonl"))
        .start()
        .await;
    let resp = h2c_client()
        .request(grpc_request(proxy.url("/pkg.Echo/Unary"), b""))
        .await
        .expect("call");
    let _ = tokio::time::timeout(Duration::from_secs(5), resp.into_body().collect()).await;
    let rec = proxy.record_for("/pkg.Echo/Unary").await;
    assert_eq!(rec["outcome"], "upstream_error", "{rec}");
    assert!(rec["grpc"]["status"].is_null(), "{rec}");
    proxy.shutdown().await;
}

/// An h2 server (the codec itself, so a test can refuse streams) that refuses
/// the first `refuse` streams with REFUSED_STREAM and answers the rest OK.
async fn refusing_upstream(refuse: usize) -> (std::net::SocketAddr, Arc<AtomicUsize>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let streams = Arc::new(AtomicUsize::new(0));
    let seen = streams.clone();
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                return;
            };
            let seen = seen.clone();
            tokio::spawn(async move {
                let Ok(mut conn) = h2::server::handshake(tcp).await else {
                    return;
                };
                while let Some(Ok((req, mut respond))) = conn.accept().await {
                    let n = seen.fetch_add(1, Ordering::SeqCst);
                    // Each stream on a task of its own: the connection is driven
                    // only by `accept`, which must keep running meanwhile.
                    tokio::spawn(async move {
                        // The whole request arrives first (a server refusing
                        // streams it is shedding, or one going away).
                        let mut body = req.into_body();
                        while let Some(Ok(chunk)) = body.data().await {
                            let _ = body.flow_control().release_capacity(chunk.len());
                        }
                        if n < refuse {
                            respond.send_reset(h2::Reason::REFUSED_STREAM);
                            return;
                        }
                        let resp = Response::builder()
                            .header("content-type", "application/grpc")
                            .body(())
                            .unwrap();
                        let Ok(mut send) = respond.send_response(resp, false) else {
                            return;
                        };
                        let _ = send.send_data(Bytes::from(message(b"ok")), false);
                        let _ = send.send_trailers(grpc_trailers(0, &[]));
                    });
                }
            });
        }
    });
    (addr, streams)
}

#[tokio::test]
async fn a_stream_the_upstream_refused_is_sent_again_once() {
    let (addr, streams) = refusing_upstream(1).await;
    let dir = TempDir::new();
    let proxy = ProxyBuilder::new(format!("http://{addr}"))
        .record(&dir.join("r.jsonl"))
        .start()
        .await;
    let resp = h2c_client()
        .request(grpc_request(proxy.url("/pkg.Echo/Unary"), b"hello"))
        .await
        .expect("answered after one refusal");
    let collected = resp.into_body().collect().await.expect("body");
    assert_eq!(collected.trailers().expect("trailers")["grpc-status"], "0");
    assert_eq!(collected.to_bytes().as_ref(), message(b"ok").as_slice());
    assert_eq!(streams.load(Ordering::SeqCst), 2);
    let rec = proxy.record_for("/pkg.Echo/Unary").await;
    assert_eq!(rec["upstream"]["retried"], true, "{rec}");
    assert_eq!(rec["outcome"], "ok", "{rec}");
    proxy.shutdown().await;
}

#[tokio::test]
async fn a_stream_refused_twice_fails_as_unavailable_without_a_third_try() {
    let (addr, streams) = refusing_upstream(usize::MAX).await;
    let dir = TempDir::new();
    let proxy = ProxyBuilder::new(format!("http://{addr}"))
        .record(&dir.join("r.jsonl"))
        .start()
        .await;
    let resp = h2c_client()
        .request(grpc_request(proxy.url("/pkg.Echo/Unary"), b"hello"))
        .await
        .expect("an answer");
    assert_eq!(resp.headers()["grpc-status"], "14");
    assert_eq!(
        streams.load(Ordering::SeqCst),
        2,
        "sent again once, not more"
    );
    let rec = proxy.record_for("/pkg.Echo/Unary").await;
    assert_eq!(rec["outcome"], "upstream_error", "{rec}");
    proxy.shutdown().await;
}

/// An upstream answering every call with these body bytes and trailers.
async fn answering(body: &'static [u8], trailers: HeaderMap) -> Upstream {
    Upstream::start(move |req: Request<hyper::body::Incoming>| {
        let trailers = trailers.clone();
        async move {
            let _ = collect(req.into_body()).await;
            Response::builder()
                .header("content-type", "application/grpc")
                .body(with_trailers(&[body], trailers))
                .unwrap()
        }
    })
    .await
}

#[tokio::test]
async fn a_body_that_ends_inside_a_message_is_recorded_as_an_upstream_error() {
    // The prefix declares 10 bytes; 3 come, then an OK status.
    let up = answering(b"\x00\x00\x00\x00\x0aabc", grpc_trailers(0, &[])).await;
    let dir = TempDir::new();
    let proxy = ProxyBuilder::new(up.url())
        .record(&dir.join("r.jsonl"))
        .start()
        .await;
    let resp = h2c_client()
        .request(grpc_request(proxy.url("/pkg.Echo/Unary"), b""))
        .await
        .expect("call");
    let collected = resp.into_body().collect().await.expect("body");
    assert_eq!(
        collected.to_bytes().as_ref(),
        b"\x00\x00\x00\x00\x0aabc",
        "passed on as it came: the client's own parser rejects it"
    );
    let rec = proxy.record_for("/pkg.Echo/Unary").await;
    assert_eq!(rec["outcome"], "upstream_error", "{rec}");
    assert!(
        rec["error"]
            .as_str()
            .unwrap_or("")
            .contains("malformed gRPC response"),
        "{rec}"
    );
    proxy.shutdown().await;
}

#[tokio::test]
async fn trailers_without_a_status_are_an_upstream_error() {
    let mut t = HeaderMap::new();
    t.insert("x-other", HeaderValue::from_static("1"));
    let up = answering(b"\x00\x00\x00\x00\x02hi", t).await;
    let dir = TempDir::new();
    let proxy = ProxyBuilder::new(up.url())
        .record(&dir.join("r.jsonl"))
        .start()
        .await;
    let resp = h2c_client()
        .request(grpc_request(proxy.url("/pkg.Echo/Unary"), b""))
        .await
        .expect("call");
    let collected = resp.into_body().collect().await.expect("body");
    assert_eq!(collected.trailers().expect("trailers")["x-other"], "1");
    let rec = proxy.record_for("/pkg.Echo/Unary").await;
    assert_eq!(rec["outcome"], "upstream_error", "{rec}");
    assert!(rec["grpc"]["status"].is_null(), "{rec}");
    proxy.shutdown().await;
}

#[tokio::test]
async fn an_upstream_that_goes_away_mid_call_fails_the_call_not_cleanly() {
    // An h2 server that answers one message, then drops the connection.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            tokio::spawn(async move {
                let Ok(mut conn) = h2::server::handshake(tcp).await else {
                    return;
                };
                if let Some(Ok((_req, mut respond))) = conn.accept().await {
                    let resp = Response::builder()
                        .header("content-type", "application/grpc")
                        .body(())
                        .unwrap();
                    if let Ok(mut send) = respond.send_response(resp, false) {
                        let _ = send.send_data(Bytes::from(message(b"one")), false);
                    }
                    conn.abrupt_shutdown(h2::Reason::NO_ERROR);
                    let _ = std::future::poll_fn(|cx| conn.poll_closed(cx)).await;
                }
            });
        }
    });
    let dir = TempDir::new();
    let proxy = ProxyBuilder::new(format!("http://{addr}"))
        .record(&dir.join("r.jsonl"))
        .start()
        .await;
    let resp = h2c_client()
        .request(grpc_request(proxy.url("/pkg.Echo/Stream"), b""))
        .await
        .expect("headers came");
    let got = tokio::time::timeout(Duration::from_secs(10), resp.into_body().collect())
        .await
        .expect("the call ends");
    if let Ok(body) = got {
        assert!(
            body.trailers().and_then(|t| t.get("grpc-status")).is_none(),
            "never a clean OK end"
        );
    }
    let rec = proxy.record_for("/pkg.Echo/Stream").await;
    assert_eq!(rec["outcome"], "upstream_error", "{rec}");
    proxy.shutdown().await;
}

#[tokio::test]
async fn a_compressed_search_answer_is_not_edited_and_says_why() {
    let up = Upstream::start(|req: Request<hyper::body::Incoming>| async move {
        let _ = collect(req.into_body()).await;
        Response::builder()
            .header("content-type", "application/grpc")
            .header("grpc-encoding", "gzip")
            .body(with_trailers(
                &[b"\x01\x00\x00\x00\x03zzz"],
                grpc_trailers(0, &[]),
            ))
            .unwrap()
    })
    .await;
    let dir = TempDir::new();
    let proxy = ProxyBuilder::new(up.url())
        .api(ApiKind::Milvus)
        .profile(
            "version: 1\nname: t\nrules:\n  - name: lose\n    faults: [{type: drop_results, fraction: 0.5}]\n",
        )
        .record(&dir.join("r.jsonl"))
        .start()
        .await;
    let resp = h2c_client()
        .request(grpc_request(
            proxy.url("/milvus.proto.milvus.MilvusService/Search"),
            b"",
        ))
        .await
        .expect("call");
    let collected = resp.into_body().collect().await.expect("body");
    assert_eq!(collected.trailers().expect("trailers")["grpc-status"], "0");
    assert_eq!(collected.to_bytes().as_ref(), b"\x01\x00\x00\x00\x03zzz");
    let rec = proxy
        .record_for("/milvus.proto.milvus.MilvusService/Search")
        .await;
    assert_eq!(rec["faults_skipped"][0]["reason"], "compressed", "{rec}");
    assert_eq!(rec["outcome"], "ok", "{rec}");
    proxy.shutdown().await;
}
