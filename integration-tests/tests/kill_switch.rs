//! The kill switch (docs/admin.md, "The kill switch"): `POST
//! /api/v1/faults/off` releases every held request within one second, and each
//! continues unharmed from the upstream; `faults/on` resumes. And injected errors
//! keep the client's connection alive, as real providers do.

use std::sync::atomic::Ordering;
use std::time::Duration;

use brownout_integration_tests::*;
use http::Request;
use tokio::time::Instant;

const PROFILE: &str = r#"
version: 1
name: holds
rules:
  - name: hang
    match: {headers: {x-kind: hang}}
    faults: [{type: hang}]
  - name: long-delay
    match: {headers: {x-kind: delay}}
    faults: [{type: delay, duration: 60s}]
  - name: trickle
    match: {headers: {x-kind: trickle}}
    faults: [{type: bandwidth, bytes_per_second: 100}]
  - name: fail
    match: {headers: {x-kind: error}}
    faults: [{type: error, preset: openai.rate_limit_requests}]
"#;

fn req(proxy: &TestProxy, kind: &str) -> Request<Body> {
    Request::get(proxy.url(&format!("/{kind}")))
        .header("x-kind", kind)
        .body(empty())
        .unwrap()
}

async fn wait_active(proxy: &TestProxy, n: i64) {
    let g = proxy.shared().metrics.active_gauge("test");
    let deadline = Instant::now() + Duration::from_secs(10);
    while g.load(Ordering::Relaxed) < n {
        assert!(Instant::now() < deadline, "requests never became active");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn faults_off_releases_held_requests_within_a_second() {
    let body = vec![b'z'; 5000];
    let b2 = body.clone();
    let up = Upstream::start(move |_req| {
        let b = b2.clone();
        async move { reply(200, b) }
    })
    .await;
    let proxy = ProxyBuilder::new(up.url())
        .admin()
        .profile(PROFILE)
        .start()
        .await;
    let c = http1_client();
    let mut held = Vec::new();
    for kind in ["hang", "delay", "trickle"] {
        let (c, r) = (c.clone(), req(&proxy, kind));
        held.push((kind, tokio::spawn(async move { send(&c, r).await })));
    }
    wait_active(&proxy, 3).await;
    // Give the trickle a moment to start sending its body.
    tokio::time::sleep(Duration::from_millis(300)).await;
    for (kind, h) in &held {
        assert!(!h.is_finished(), "{kind} finished before the kill switch");
    }
    let t = Instant::now();
    let (st, body_text) = proxy.admin_post("/api/v1/faults/off").await;
    assert_eq!(st, 200, "{body_text}");
    for (kind, h) in held {
        let r = within(Duration::from_secs(3), kind, h)
            .await
            .unwrap()
            .expect("released request completes");
        let after = t.elapsed();
        assert!(
            after < Duration::from_secs(1),
            "{kind} released only after {after:?}"
        );
        assert_eq!(r.status, 200, "{kind}: continues from the upstream");
        assert!(r.body == body, "{kind}: the upstream's whole body");
    }
    assert_eq!(up.requests(), 3, "released requests went to the upstream");
    let (_, status) = proxy.admin_get("/api/v1/status").await;
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&status).unwrap()["faults_enabled"],
        false
    );

    // While off, no fault is injected.
    let r = send(&c, req(&proxy, "error")).await.unwrap();
    assert_eq!(r.status, 200);
    assert_eq!(r.header("x-brownout-fault"), None);

    // On again: faults resume.
    let (st, _) = proxy.admin_post("/api/v1/faults/on").await;
    assert_eq!(st, 200);
    let r = send(&c, req(&proxy, "error")).await.unwrap();
    assert_eq!(r.status, 429);
    let h = {
        let (c, r) = (c.clone(), req(&proxy, "hang"));
        tokio::spawn(async move { send(&c, r).await })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!h.is_finished(), "hang holds again after faults/on");
    proxy.admin_post("/api/v1/faults/off").await;
    assert_eq!(
        within(Duration::from_secs(2), "second release", h)
            .await
            .unwrap()
            .unwrap()
            .status,
        200
    );

    // hang, delay, trickle, error (off), error (on), hang again.
    let recs = proxy.exactly_records(6).await;
    let hang = recs.iter().find(|r| r["path"] == "/hang").unwrap();
    assert_eq!(hang["outcome"], "ok");
    assert_eq!(hang["status"], 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keep_alive_survives_an_injected_error() {
    let (up, caps) = Upstream::echo().await;
    let proxy = ProxyBuilder::new(up.url()).profile(PROFILE).start().await;
    // One TCP connection for both requests.
    let (mut conn, task) = h1_conn(proxy.addr).await;
    // The first carries a streamed body and gets an injected 429 before the body ends.
    let (tx, body) = body_channel();
    let first = Request::post("/v1/chat/completions")
        .header("host", "proxy")
        .header("x-kind", "error")
        .header("content-type", "application/json")
        .body(body)
        .unwrap();
    let sender = tokio::spawn(async move {
        tx.send(vec![b'a'; 32 * 1024]).await;
        tokio::time::sleep(Duration::from_millis(100)).await;
        tx.send(vec![b'b'; 32 * 1024]).await;
    });
    let r = within(Duration::from_secs(5), "the injected answer", async {
        read_reply(conn.send_request(first).await.expect("first response")).await
    })
    .await
    .expect("first body");
    assert_eq!(r.status, 429);
    assert_eq!(r.json()["error"]["code"], "rate_limit_exceeded");
    assert_ne!(
        r.header("connection"),
        Some("close"),
        "an injected error must not close the connection"
    );
    sender.await.unwrap();

    conn.ready().await.expect("the connection is still usable");
    let second = Request::post("/v1/chat/completions")
        .header("host", "proxy")
        .body(full("second"))
        .unwrap();
    let r = within(Duration::from_secs(5), "the second answer", async {
        read_reply(
            conn.send_request(second)
                .await
                .expect("second response on the same connection"),
        )
        .await
    })
    .await
    .expect("second body");
    assert_eq!(r.status, 200);
    assert_eq!(r.body, "second");
    assert!(!task.is_finished(), "the client connection was closed");
    assert_eq!(
        caps.len(),
        1,
        "the injected request never reached the upstream"
    );
}

/// docs/admin.md, "Security": a browser page must not be able to flip the kill
/// switch of a loopback admin, neither cross-site (CSRF) nor by DNS rebinding (a
/// page on evil.example whose name now resolves to 127.0.0.1: its requests are
/// same-origin for the browser, so only the `Host` header gives them away).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_refuses_cross_site_and_rebinding_requests() {
    let up = Upstream::start(|_req| async { reply(200, "ok") }).await;
    let proxy = ProxyBuilder::new(up.url())
        .admin()
        .profile(PROFILE)
        .start()
        .await;
    let admin = proxy.admin_addr.unwrap();
    let c = http1_client();
    let post = |host: String, origin: Option<String>| {
        let mut b = Request::post(proxy.admin_url("/api/v1/faults/off")).header("host", host);
        if let Some(o) = origin {
            b = b.header("origin", o);
        }
        b.body(empty()).unwrap()
    };
    let enabled = || proxy.shared().release.faults_enabled();
    let port = admin.port();

    // CSRF: a page elsewhere posts to the loopback admin.
    let r = send(
        &c,
        post(
            format!("127.0.0.1:{port}"),
            Some("http://evil.example".into()),
        ),
    )
    .await
    .unwrap();
    assert_eq!(r.status, 403, "cross-site Origin");
    assert!(enabled());
    // DNS rebinding: Host and Origin agree, but name a foreign host.
    let evil = format!("evil.example:{port}");
    let r = send(&c, post(evil.clone(), Some(format!("http://{evil}"))))
        .await
        .unwrap();
    assert_eq!(
        r.status, 403,
        "a rebinding page's request (Host {evil}) must be refused"
    );
    assert!(
        enabled(),
        "the kill switch was flipped through DNS rebinding"
    );
    let r = send(&c, post(evil.clone(), None)).await.unwrap();
    assert_eq!(r.status, 403, "a foreign Host without Origin");
    assert!(enabled());

    // The dashboard itself and local tools are fine.
    for host in [format!("127.0.0.1:{port}"), format!("localhost:{port}")] {
        let r = send(&c, post(host.clone(), Some(format!("http://{host}"))))
            .await
            .unwrap();
        assert_eq!(r.status, 200, "same-origin call via {host}");
        proxy.shared().release.turn_on();
    }
    let r = send(&c, post(format!("127.0.0.1:{port}"), None))
        .await
        .unwrap();
    assert_eq!(r.status, 200, "curl-style call");
    assert!(!enabled());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_token_guards_the_api_but_not_health_or_metrics() {
    let up = Upstream::start(|_req| async { reply(200, "ok") }).await;
    let proxy = ProxyBuilder::new(up.url())
        .admin_token("s3cret-token")
        .profile(PROFILE)
        .start()
        .await;
    let c = http1_client();
    for path in ["/healthz", "/readyz", "/metrics"] {
        assert_eq!(
            send(&c, get(proxy.admin_url(path))).await.unwrap().status,
            200,
            "{path} stays open"
        );
    }
    let call = |token: Option<&str>, host: Option<&str>| {
        let mut b = Request::post(proxy.admin_url("/api/v1/faults/off"));
        if let Some(t) = token {
            b = b.header("authorization", format!("Bearer {t}"));
        }
        if let Some(h) = host {
            b = b.header("host", h);
        }
        b.body(empty()).unwrap()
    };
    let r = send(&c, call(None, None)).await.unwrap();
    assert_eq!(r.status, 401);
    assert_eq!(r.header("www-authenticate"), Some("Bearer"));
    assert_eq!(
        send(&c, call(Some("wrong"), None)).await.unwrap().status,
        401
    );
    assert_eq!(
        send(&c, call(Some("s3cret-token-longer"), None))
            .await
            .unwrap()
            .status,
        401
    );
    assert_eq!(
        send(&c, get(proxy.admin_url("/api/v1/status")))
            .await
            .unwrap()
            .status,
        401
    );
    assert!(proxy.shared().release.faults_enabled());
    // With the token, a sidecar's admin is reachable under any name (pod IP, service).
    let r = send(
        &c,
        call(Some("s3cret-token"), Some("brownout-admin.svc:9911")),
    )
    .await
    .unwrap();
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    assert!(!proxy.shared().release.faults_enabled());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expires_after_turns_faults_off_and_releases_holds() {
    let up = Upstream::start(|_req| async { reply(200, "ok") }).await;
    let profile = PROFILE.replace("name: holds\n", "name: expiring\nexpires_after: 600ms\n");
    let proxy = ProxyBuilder::new(up.url()).profile(&profile).start().await;
    let c = http1_client();
    assert_eq!(
        send(&c, req(&proxy, "error")).await.unwrap().status,
        429,
        "faults on before expiry"
    );
    let t = Instant::now();
    let r = within(
        Duration::from_secs(5),
        "the hang is released at expiry",
        send(&c, req(&proxy, "hang")),
    )
    .await
    .unwrap();
    assert_eq!(r.status, 200);
    let took = t.elapsed();
    assert!(
        took >= Duration::from_millis(300) && took < Duration::from_millis(2000),
        "{took:?}"
    );
    assert!(!proxy.shared().release.faults_enabled());
    assert_eq!(
        send(&c, req(&proxy, "error")).await.unwrap().status,
        200,
        "no faults after expiry"
    );
}
