//! TLS both ways, with certificates made at test time by rcgen: downstream
//! termination (`tls: {cert, key}`) speaking HTTP/1.1 or HTTP/2 as ALPN decides,
//! and `https` upstreams trusted through `upstream_ca`.

use std::time::Duration;

use brownout_integration_tests::*;
use http::{Request, Version};
use hyper_util::rt::{TokioExecutor, TokioIo};

const STEP: Duration = Duration::from_secs(10);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_termination_with_alpn_h2_and_http1() {
    let certs = TestCerts::new();
    let (up, caps) = Upstream::echo().await;
    let proxy = ProxyBuilder::new(up.url())
        .tls(&certs.cert_path, &certs.key_path)
        .start()
        .await;

    // ALPN h2 → HTTP/2.
    let (tls, alpn) = certs.connect(proxy.addr, &[b"h2", b"http/1.1"]).await;
    assert_eq!(alpn.as_deref(), Some(&b"h2"[..]), "the proxy offers h2");
    let (mut send, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tls))
            .await
            .expect("h2 over TLS");
    tokio::spawn(conn);
    let resp = within(
        STEP,
        "h2 response",
        send.send_request(
            Request::post("https://localhost/v1/tls?x=1")
                .body(full("over h2 and tls"))
                .unwrap(),
        ),
    )
    .await
    .expect("response");
    assert_eq!(resp.version(), Version::HTTP_2);
    let r = read_reply(resp).await.unwrap();
    assert_eq!(r.status, 200);
    assert_eq!(r.body, "over h2 and tls");
    assert_eq!(
        caps.last().uri.path_and_query().unwrap().as_str(),
        "/v1/tls?x=1"
    );
    assert_eq!(caps.last().header_all("host"), [up.addr.to_string()]);

    // ALPN http/1.1 → HTTP/1.1.
    let (tls, alpn) = certs.connect(proxy.addr, &[b"http/1.1"]).await;
    assert_eq!(alpn.as_deref(), Some(&b"http/1.1"[..]));
    let (mut send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
        .await
        .expect("h1 over TLS");
    tokio::spawn(conn);
    for i in 0..2 {
        let req = Request::post("/v1/tls")
            .header("host", "localhost")
            .body(full(format!("h1 #{i}")))
            .unwrap();
        send.ready().await.expect("the connection is reusable");
        let resp = within(STEP, "h1 response", send.send_request(req))
            .await
            .expect("response");
        assert_eq!(resp.version(), Version::HTTP_11);
        let r = read_reply(resp).await.unwrap();
        assert_eq!(r.status, 200);
        assert_eq!(r.body, format!("h1 #{i}"));
    }

    // No ALPN at all: HTTP/1.1.
    let (tls, alpn) = certs.connect(proxy.addr, &[]).await;
    assert_eq!(alpn, None);
    let (mut send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
        .await
        .expect("h1 over TLS");
    tokio::spawn(conn);
    let r = read_reply(
        send.send_request(
            Request::get("/plain")
                .header("host", "localhost")
                .body(empty())
                .unwrap(),
        )
        .await
        .unwrap(),
    )
    .await
    .unwrap();
    assert_eq!(r.status, 200);

    // Plain text to the TLS port gets no HTTP answer.
    let res = tokio::time::timeout(STEP, send_plain(proxy.addr))
        .await
        .expect("the proxy hangs on plain text");
    assert!(
        res.is_err(),
        "a cleartext request on a TLS listener must fail: {res:?}"
    );
    assert_eq!(caps.len(), 4);
}

async fn send_plain(addr: std::net::SocketAddr) -> Result<Reply, BoxError> {
    send(&http1_client(), get(format!("http://{addr}/x"))).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_upstream_through_upstream_ca() {
    let certs = TestCerts::new();
    let caps = Captures::default();
    let c = caps.clone();
    let up = Upstream::builder()
        .tls(certs.server_config(&[b"h2", b"http/1.1"]))
        .serve(move |req| {
            let c = c.clone();
            async move {
                let cap = Captured::read(req).await;
                let body = cap.body.clone();
                c.record(cap);
                reply(200, body)
            }
        })
        .await;
    assert!(up.url().starts_with("https://127.0.0.1:"));

    let proxy = ProxyBuilder::new(up.url())
        .upstream_ca(&certs.ca_path)
        .start()
        .await;
    for client in [http1_client(), h2c_client()] {
        let r = send(
            &client,
            Request::post(proxy.url("/secure?q=1"))
                .body(full("to a TLS upstream"))
                .unwrap(),
        )
        .await
        .expect("reply");
        assert_eq!(r.status, 200, "{:?}", String::from_utf8_lossy(&r.body));
        assert_eq!(r.body, "to a TLS upstream");
        assert_eq!(
            caps.last().uri.path_and_query().unwrap().as_str(),
            "/secure?q=1"
        );
        assert_eq!(caps.last().header_all("host"), [up.addr.to_string()]);
    }

    // Without the extra root the upstream's certificate is not trusted: a gateway error.
    let untrusting = ProxyBuilder::new(up.url()).start().await;
    let r = send(&http1_client(), get(untrusting.url("/secure")))
        .await
        .unwrap();
    assert_eq!(r.status, 502);
    assert_eq!(r.header("x-brownout-error"), Some("upstream_unreachable"));
    assert_eq!(
        caps.len(),
        2,
        "no request reached the upstream over an untrusted connection"
    );
}
