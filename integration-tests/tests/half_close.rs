//! Half-closed clients (docs/configuration.md, "Half-closed clients"), over real sockets.
//!
//! A client that sends its whole request and then shuts down its sending side, as
//! `printf 'GET / HTTP/1.1\r\nHost: x\r\n\r\n' | nc -N host port` does, gets its
//! whole answer under `half_close: answer` (the default), on the fast path and on
//! hyper's path, for GETs and POSTs with bodies, plain and streamed answers, and
//! the connection is closed after it (`nc` exits). A FIN that arrives while a fault
//! holds the request is a client giving up (`client_closed`, the upstream never
//! called). Under `half_close: abort` every FIN is a client giving up.
//!
//! The upstreams here answer after a pause, so the FIN is always at the proxy
//! before the answer is.

use std::time::Duration;

use brownout::config::HalfClose;
use brownout_integration_tests::*;
use http::Response;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const STEP: Duration = Duration::from_secs(10);

/// How long the test upstreams think before answering.
const THINK: Duration = Duration::from_millis(150);

/// Which way a plain HTTP/1.1 request goes through the proxy.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Route {
    /// The fast path (no profile).
    Fast,
    /// hyper's path for every request (`fast_path: false`).
    Hyper,
    /// hyper's path because a rule matches, with a 1 ms `delay`: a fault holds the
    /// request while its FIN arrives.
    Held,
}

const ROUTES: [Route; 3] = [Route::Fast, Route::Hyper, Route::Held];

const DELAY_EVERYTHING: &str = "version: 1\nname: held\nrules:\n  - name: wait\n    match: {path: /v1/**}\n    faults: [{type: delay, duration: 1ms}]\n";

fn proxy(up: &str, route: Route) -> ProxyBuilder {
    let b = ProxyBuilder::new(up);
    match route {
        Route::Fast => b,
        Route::Hyper => b.config(|c| c.fast_path = false),
        Route::Held => b.profile(DELAY_EVERYTHING),
    }
}

fn abort(b: ProxyBuilder) -> ProxyBuilder {
    b.config(|c| c.listeners[0].half_close = HalfClose::Abort)
}

/// Send `request`, shut down the sending side (a FIN), and read until the proxy
/// closes the connection.
async fn half_closed(addr: std::net::SocketAddr, request: &[u8]) -> String {
    let mut c = TcpStream::connect(addr).await.unwrap();
    c.write_all(request).await.unwrap();
    c.shutdown().await.unwrap();
    let mut out = Vec::new();
    within(
        STEP,
        "the answer, then the proxy's close",
        c.read_to_end(&mut out),
    )
    .await
    .unwrap();
    String::from_utf8_lossy(&out).into_owned()
}

/// Answers a GET with a fixed text and anything else with its body, after [`THINK`].
async fn thinking_upstream() -> Upstream {
    Upstream::start(|req| async move {
        let get = req.method() == http::Method::GET;
        let body = collect(req.into_body()).await.unwrap_or_default();
        tokio::time::sleep(THINK).await;
        if get {
            reply(200, "the answer to a GET")
        } else {
            reply(200, body)
        }
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_half_closed_get_or_post_is_answered_on_every_path() {
    let up = thinking_upstream().await;
    for route in ROUTES {
        let proxy = proxy(&up.url(), route).start().await;
        let get = half_closed(proxy.addr, b"GET /v1/get HTTP/1.1\r\nHost: x\r\n\r\n").await;
        assert!(get.starts_with("HTTP/1.1 200 "), "{route:?}: {get:?}");
        assert!(
            get.ends_with("\r\n\r\nthe answer to a GET"),
            "{route:?}: {get:?}"
        );

        let post = half_closed(
            proxy.addr,
            b"POST /v1/post HTTP/1.1\r\nHost: x\r\ncontent-type: application/json\r\ncontent-length: 16\r\n\r\n{\"prompt\": \"hi\"}",
        )
        .await;
        assert!(post.starts_with("HTTP/1.1 200 "), "{route:?}: {post:?}");
        assert!(
            post.ends_with("\r\n\r\n{\"prompt\": \"hi\"}"),
            "{route:?}: {post:?}"
        );

        // A chunked upload, its last chunk and the FIN in one write.
        let chunked = half_closed(
            proxy.addr,
            b"POST /v1/chunked HTTP/1.1\r\nHost: x\r\ntransfer-encoding: chunked\r\n\r\n5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n",
        )
        .await;
        assert!(
            chunked.starts_with("HTTP/1.1 200 "),
            "{route:?}: {chunked:?}"
        );
        assert!(
            chunked.ends_with("\r\n\r\nhello world"),
            "{route:?}: {chunked:?}"
        );

        for path in ["/v1/get", "/v1/post", "/v1/chunked"] {
            let rec = proxy.record_for(path).await;
            assert_eq!(rec["outcome"], "ok", "{route:?}: {rec:#}");
            assert_eq!(rec["status"], 200, "{route:?}: {rec:#}");
            if route == Route::Held {
                assert_eq!(fault_names(&rec, "faults"), ["wait/delay"], "{rec:#}");
            }
        }
        let rec = proxy.record_for("/v1/post").await;
        assert_eq!(rec["bytes_in"], 16, "{rec:#}");
        proxy.exactly_records(3).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_streamed_answer_reaches_a_half_closed_client_whole() {
    let up = Upstream::start(|_req| async move {
        let (tx, body) = body_channel();
        tokio::spawn(async move {
            for i in 0..5 {
                tokio::time::sleep(Duration::from_millis(40)).await;
                tx.send(format!("data: {{\"n\": {i}}}\n\n")).await;
            }
            tx.send("data: [DONE]\n\n").await;
        });
        let mut r = Response::new(body);
        r.headers_mut()
            .insert("content-type", "text/event-stream".parse().unwrap());
        r
    })
    .await;
    for route in ROUTES {
        let proxy = proxy(&up.url(), route).start().await;
        let out = half_closed(
            proxy.addr,
            b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\ncontent-type: application/json\r\ncontent-length: 15\r\n\r\n{\"stream\":true}",
        )
        .await;
        assert!(out.starts_with("HTTP/1.1 200 "), "{route:?}: {out:?}");
        for i in 0..5 {
            assert!(
                out.contains(&format!("data: {{\"n\": {i}}}")),
                "{route:?}: event {i} is missing: {out:?}"
            );
        }
        assert!(out.contains("data: [DONE]"), "{route:?}: {out:?}");
        // The chunked body ends properly: the client knows it has all of it.
        assert!(out.ends_with("0\r\n\r\n"), "{route:?}: {out:?}");
        let rec = proxy.record_for("/v1/chat/completions").await;
        assert_eq!(rec["outcome"], "ok", "{route:?}: {rec:#}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_half_closed_client_is_answered_over_tls() {
    let certs = TestCerts::new();
    let up = thinking_upstream().await;
    let proxy = ProxyBuilder::new(up.url())
        .tls(&certs.cert_path, &certs.key_path)
        .start()
        .await;
    let (mut tls, _) = certs.connect(proxy.addr, &[b"http/1.1"]).await;
    tls.write_all(b"GET /v1/tls HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .await
        .unwrap();
    // close_notify, then the FIN.
    tls.shutdown().await.unwrap();
    let mut out = Vec::new();
    // The proxy may end TLS without its own close_notify once it has answered.
    let _ = within(STEP, "the answer over TLS", tls.read_to_end(&mut out)).await;
    let out = String::from_utf8_lossy(&out);
    assert!(out.starts_with("HTTP/1.1 200 "), "{out:?}");
    assert!(out.ends_with("the answer to a GET"), "{out:?}");
    assert_eq!(proxy.record_for("/v1/tls").await["outcome"], "ok");
}

const HANG_EVERYTHING: &str = "version: 1\nname: hang\nrules:\n  - name: stuck\n    match: {path: /v1/**}\n    faults: [{type: hang}]\n";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fin_while_a_fault_holds_the_request_is_a_client_giving_up() {
    let up = thinking_upstream().await;
    let proxy = ProxyBuilder::new(up.url())
        .profile(HANG_EVERYTHING)
        .start()
        .await;
    let mut c = TcpStream::connect(proxy.addr).await.unwrap();
    c.write_all(b"GET /v1/hung HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    // Well into the hang, the client gives up (its FIN).
    tokio::time::sleep(Duration::from_millis(300)).await;
    c.shutdown().await.unwrap();
    let mut out = Vec::new();
    within(
        STEP,
        "the proxy closes the connection",
        c.read_to_end(&mut out),
    )
    .await
    .unwrap();
    assert!(
        out.is_empty(),
        "no answer: {:?}",
        String::from_utf8_lossy(&out)
    );
    let rec = within(STEP, "the record", proxy.record_for("/v1/hung")).await;
    assert_eq!(rec["outcome"], "client_closed", "{rec:#}");
    assert!(rec["status"].is_null(), "{rec:#}");
    assert!(
        rec["upstream"].is_null(),
        "the upstream was not called: {rec:#}"
    );
    assert_eq!(up.requests(), 0);
    // The proxy still serves.
    drop(proxy);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fin_sent_with_the_request_is_answered_after_the_hold() {
    // The FIN comes right behind the request, as `nc -N` sends it: a half-close,
    // not a client giving up, even though a fault holds the request when it lands.
    let up = thinking_upstream().await;
    let proxy = ProxyBuilder::new(up.url())
        .profile("version: 1\nname: hang\nrules:\n  - name: slow\n    match: {path: /v1/**}\n    faults: [{type: hang, duration: 300ms}]\n")
        .start()
        .await;
    let out = half_closed(proxy.addr, b"GET /v1/hung HTTP/1.1\r\nHost: x\r\n\r\n").await;
    // The hang's own answer, after its 300 ms.
    assert!(out.starts_with("HTTP/1.1 504 "), "{out:?}");
    let rec = proxy.record_for("/v1/hung").await;
    assert_eq!(rec["status"], 504, "{rec:#}");
    assert_ne!(rec["outcome"], "client_closed", "{rec:#}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn half_close_abort_takes_a_fin_as_the_client_giving_up() {
    let up = thinking_upstream().await;
    for route in [Route::Fast, Route::Hyper] {
        let proxy = abort(proxy(&up.url(), route)).start().await;
        let out = half_closed(proxy.addr, b"GET /v1/get HTTP/1.1\r\nHost: x\r\n\r\n").await;
        assert!(out.is_empty(), "{route:?}: no answer: {out:?}");
        let rec = proxy.record_for("/v1/get").await;
        assert_eq!(rec["outcome"], "client_closed", "{route:?}: {rec:#}");
        assert!(rec["status"].is_null(), "{route:?}: {rec:#}");
        assert!(
            rec["e2e_ms"].as_f64().unwrap() < THINK.as_millis() as f64,
            "{route:?}: recorded when the FIN came, not when the upstream answered: {rec:#}"
        );
    }
    // A fault holding the request: the upstream is never called.
    let calls = up.requests();
    let proxy = abort(ProxyBuilder::new(up.url()))
        .profile("version: 1\nname: held\nrules:\n  - name: wait\n    match: {path: /v1/**}\n    faults: [{type: delay, duration: 2s}]\n")
        .start()
        .await;
    let out = half_closed(proxy.addr, b"GET /v1/held HTTP/1.1\r\nHost: x\r\n\r\n").await;
    assert!(out.is_empty(), "no answer: {out:?}");
    let rec = proxy.record_for("/v1/held").await;
    assert_eq!(rec["outcome"], "client_closed", "{rec:#}");
    assert!(rec["upstream"].is_null(), "{rec:#}");
    assert!(rec["e2e_ms"].as_f64().unwrap() < 1000.0, "{rec:#}");
    assert_eq!(up.requests(), calls, "the upstream was not called");
}
