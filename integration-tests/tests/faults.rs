//! Every generic fault through the proxy in front of a real HTTP server, and how
//! rules combine (docs/profiles.md, "Faults" and "How rules and faults combine").
//! Timing bounds are generous: lower bounds are what the fault promises, upper
//! bounds only catch a fault that never ends.

use std::time::Duration;

use brownout_integration_tests::*;
use http::{Request, StatusCode, Version};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::Instant;

const STEP: Duration = Duration::from_secs(10);

async fn ok_upstream() -> Upstream {
    Upstream::start(|_req| async { reply(200, "from upstream") }).await
}

fn get_with(url: String, headers: &[(&str, &str)]) -> Request<Body> {
    let mut b = Request::get(url);
    for (k, v) in headers {
        b = b.header(*k, *v);
    }
    b.body(empty()).unwrap()
}

// ---------------------------------------------------------------------------
// delay
// ---------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delay_fixed_then_forwards() {
    let up = ok_upstream().await;
    let proxy = ProxyBuilder::new(up.url())
        .profile(
            r#"
version: 1
name: delay
rules:
  - name: slow
    faults: [{type: delay, duration: 400ms}]
"#,
        )
        .start()
        .await;
    let t = Instant::now();
    let r = send(&http1_client(), get(proxy.url("/d"))).await.unwrap();
    let took = t.elapsed();
    assert!(
        took >= Duration::from_millis(400),
        "delay not applied: {took:?}"
    );
    assert!(
        took < Duration::from_secs(5),
        "delay far too long: {took:?}"
    );
    assert_eq!(r.status, 200);
    assert_eq!(r.body, "from upstream");
    assert_eq!(r.header("x-brownout-fault"), Some("slow/delay"));
    let rec = proxy.record_for("/d").await;
    assert_eq!(rec["outcome"], "ok");
    assert_eq!(fault_names(&rec, "faults"), ["slow/delay"]);
    assert_eq!(rec["rules"], serde_json::json!(["slow"]));
    assert!(rec["upstream"]["status"] == 200, "{rec:#}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delay_from_a_distribution() {
    let up = ok_upstream().await;
    let proxy = ProxyBuilder::new(up.url())
        .profile(
            r#"
version: 1
name: delay-dist
seed: 3
rules:
  - name: jitter
    faults: [{type: delay, duration: {uniform: [150ms, 350ms]}}]
"#,
        )
        .start()
        .await;
    let c = http1_client();
    let mut took = Vec::new();
    for _ in 0..6 {
        let t = Instant::now();
        let r = send(&c, get(proxy.url("/u"))).await.unwrap();
        took.push(t.elapsed());
        assert_eq!(r.status, 200);
    }
    for d in &took {
        assert!(
            *d >= Duration::from_millis(150),
            "below the distribution's minimum: {took:?}"
        );
        assert!(
            *d < Duration::from_secs(3),
            "far above the distribution's maximum: {took:?}"
        );
    }
    let spread = took
        .iter()
        .max()
        .unwrap()
        .saturating_sub(*took.iter().min().unwrap());
    assert!(
        spread >= Duration::from_millis(10),
        "six samples from uniform(150ms, 350ms) all alike: {took:?}"
    );
}

// ---------------------------------------------------------------------------
// error
// ---------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn error_with_explicit_fields() {
    let up = ok_upstream().await;
    let proxy = ProxyBuilder::new(up.url())
        .profile(
            r#"
version: 1
name: err
rules:
  - name: boom
    faults:
      - type: error
        status: 503
        body: "down for maintenance"
        headers: {x-custom: "yes", X-Other: "two"}
        retry_after: 2500ms
"#,
        )
        .start()
        .await;
    let r = send(&http1_client(), get(proxy.url("/e"))).await.unwrap();
    assert_eq!(r.status, 503);
    assert_eq!(r.body, "down for maintenance");
    assert_eq!(r.header("x-custom"), Some("yes"));
    assert_eq!(r.header("x-other"), Some("two"));
    assert_eq!(
        r.header("retry-after"),
        Some("3"),
        "whole seconds, rounded up"
    );
    assert_eq!(r.header("retry-after-ms"), Some("2500"));
    assert_eq!(r.header("x-brownout-fault"), Some("boom/error"));
    assert_eq!(
        up.requests(),
        0,
        "an injected error never calls the upstream"
    );
    let rec = proxy.record_for("/e").await;
    assert_eq!(rec["outcome"], "injected_error");
    assert_eq!(rec["status"], 503);
    assert_eq!(fault_names(&rec, "faults"), ["boom/error"]);
    assert!(rec["upstream"].is_null(), "upstream not called: {rec:#}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn error_presets_look_like_the_provider() {
    let up = ok_upstream().await;
    let proxy = ProxyBuilder::new(up.url())
        .api(ApiKind::Openai)
        .profile(
            r#"
version: 1
name: presets
rules:
  - name: rpm
    match: {path: /openai/**}
    faults: [{type: error, preset: openai.rate_limit_requests, retry_after: 2s}]
  - name: overloaded
    match: {path: /anthropic/**}
    faults: [{type: error, preset: anthropic.overloaded}]
"#,
        )
        .start()
        .await;
    let c = http1_client();
    let r = send(&c, get(proxy.url("/openai/v1/chat/completions")))
        .await
        .unwrap();
    assert_eq!(r.status, 429);
    assert_eq!(r.header("content-type"), Some("application/json"));
    let j = r.json();
    assert_eq!(j["error"]["code"], "rate_limit_exceeded", "{j}");
    assert_eq!(j["error"]["type"], "requests");
    assert!(j["error"]["message"]
        .as_str()
        .unwrap()
        .contains("Rate limit reached"));
    assert_eq!(r.header("x-ratelimit-limit-requests"), Some("500"));
    assert_eq!(r.header("x-ratelimit-remaining-requests"), Some("0"));
    assert!(r.header("x-ratelimit-reset-requests").is_some());
    assert_eq!(r.header("retry-after"), Some("2"));
    assert_eq!(r.header("retry-after-ms"), Some("2000"));
    assert!(r.header("x-request-id").is_some());
    assert_eq!(r.header("x-brownout-fault"), Some("rpm/error"));

    let r = send(&c, get(proxy.url("/anthropic/v1/messages")))
        .await
        .unwrap();
    assert_eq!(r.status.as_u16(), 529);
    let j = r.json();
    assert_eq!(j["type"], "error");
    assert_eq!(j["error"]["type"], "overloaded_error");
    assert!(r.header("request-id").is_some());
    assert_eq!(r.header("x-brownout-fault"), Some("overloaded/error"));
    assert_eq!(up.requests(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn marking_follows_rule_and_config() {
    let up = ok_upstream().await;
    let profile = r#"
version: 1
name: marks
rules:
  - name: marked
    match: {path: /marked}
    faults: [{type: error, status: 500}]
  - name: quiet
    match: {path: /quiet}
    mark: false
    faults: [{type: error, status: 500}]
  - name: loud
    match: {path: /loud}
    mark: true
    faults: [{type: delay, duration: 1ms}, {type: error, status: 502}]
"#;
    let c = http1_client();
    let proxy = ProxyBuilder::new(up.url()).profile(profile).start().await;
    let r = send(&c, get(proxy.url("/marked"))).await.unwrap();
    assert_eq!(r.header("x-brownout-fault"), Some("marked/error"));
    let r = send(&c, get(proxy.url("/quiet"))).await.unwrap();
    assert_eq!(r.status, 500);
    assert_eq!(r.header("x-brownout-fault"), None, "mark: false");
    let r = send(&c, get(proxy.url("/loud"))).await.unwrap();
    assert_eq!(r.status, 502);
    assert_eq!(r.header("x-brownout-fault"), Some("loud/delay, loud/error"));

    // mark_injected: false in the config turns marks off, except where a rule says mark: true.
    let proxy = ProxyBuilder::new(up.url())
        .profile(profile)
        .mark_injected(false)
        .start()
        .await;
    let r = send(&c, get(proxy.url("/marked"))).await.unwrap();
    assert_eq!(r.status, 500);
    assert_eq!(r.header("x-brownout-fault"), None);
    let r = send(&c, get(proxy.url("/loud"))).await.unwrap();
    assert_eq!(r.header("x-brownout-fault"), Some("loud/delay, loud/error"));
}

// ---------------------------------------------------------------------------
// reset
// ---------------------------------------------------------------------------

const RESET_PROFILE: &str = r#"
version: 1
name: resets
rules:
  - name: cut
    match: {headers: {x-reset: "now"}}
    faults: [{type: reset}]
  - name: cut-late
    match: {headers: {x-reset: "late"}}
    faults: [{type: reset, after_bytes: 1000}]
"#;

async fn big_upstream() -> Upstream {
    Upstream::start(|req| async move {
        if req.uri().path() == "/slow" {
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
        // 20 chunks of 500 bytes, so the cut falls inside the body.
        let (tx, body) = body_channel();
        tokio::spawn(async move {
            for i in 0..20u8 {
                if !tx.try_send(vec![b'a' + i; 500]).await {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
        });
        http::Response::new(body)
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reset_http1_is_a_tcp_rst_before_any_response() {
    let up = big_upstream().await;
    let proxy = ProxyBuilder::new(up.url())
        .profile(RESET_PROFILE)
        .start()
        .await;
    // Raw socket: the proxy must answer with an RST, not a response and not a FIN.
    let mut s = TcpStream::connect(proxy.addr).await.unwrap();
    s.write_all(b"GET /r HTTP/1.1\r\nhost: x\r\nx-reset: now\r\n\r\n")
        .await
        .unwrap();
    let mut buf = vec![0u8; 4096];
    match within(STEP, "the reset", s.read(&mut buf)).await {
        Err(e) => assert_eq!(e.kind(), std::io::ErrorKind::ConnectionReset, "{e}"),
        Ok(0) => panic!("clean close (FIN) where a reset (RST) was expected"),
        Ok(n) => panic!(
            "got a response where a reset was expected: {}",
            String::from_utf8_lossy(&buf[..n])
        ),
    }
    // Through an HTTP client: an error, never a response.
    let err = send(
        &http1_client(),
        get_with(proxy.url("/r2"), &[("x-reset", "now")]),
    )
    .await;
    assert!(err.is_err(), "expected a failed request, got {err:?}");
    assert_eq!(up.requests(), 0);
    // Other connections are unaffected.
    let r = send(&http1_client(), get(proxy.url("/fine")))
        .await
        .unwrap();
    assert_eq!(r.status, 200);
    let rec = proxy.record_for("/r").await;
    assert_eq!(rec["outcome"], "reset");
    assert_eq!(fault_names(&rec, "faults"), ["cut/reset"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reset_h2_fails_only_that_stream() {
    let up = big_upstream().await;
    let proxy = ProxyBuilder::new(up.url())
        .profile(RESET_PROFILE)
        .start()
        .await;
    let (conn, task) = h2_conn(proxy.addr).await;
    // A slow, healthy stream is in flight on the same connection while another resets.
    let mut c1 = conn.clone();
    let slow = tokio::spawn(async move {
        let resp = c1.send_request(get("http://x/slow")).await?;
        read_reply(resp).await
    });
    tokio::time::sleep(Duration::from_millis(50)).await;
    let mut c2 = conn.clone();
    let res = within(
        STEP,
        "reset stream",
        c2.send_request(get_with("http://x/r".into(), &[("x-reset", "now")])),
    )
    .await;
    let err = res.expect_err("the reset stream must fail");
    assert!(
        err.to_string().contains("stream") || format!("{err:?}").contains("Reset"),
        "{err:?}"
    );
    let healthy = within(STEP, "healthy stream", slow)
        .await
        .unwrap()
        .expect("the other stream succeeds");
    assert_eq!(healthy.status, 200);
    assert_eq!(healthy.body.len(), 10_000);
    // And the connection is still good for new streams.
    let mut c3 = conn.clone();
    let r = read_reply(
        c3.send_request(get("http://x/after"))
            .await
            .expect("new stream"),
    )
    .await
    .unwrap();
    assert_eq!(r.status, 200);
    assert_eq!(r.version, Version::HTTP_2);
    assert!(
        !task.is_finished(),
        "the HTTP/2 connection must survive a stream reset"
    );
    let rec = proxy.record_for("/r").await;
    assert_eq!(rec["outcome"], "reset");
}

async fn read_until_error(mut body: hyper::body::Incoming) -> (usize, Option<hyper::Error>) {
    let mut n = 0;
    loop {
        match within(STEP, "body", next_chunk(&mut body)).await {
            None => return (n, None),
            Some(Ok(b)) => n += b.len(),
            Some(Err(e)) => return (n, Some(e)),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reset_after_bytes_http1_and_h2() {
    let up = big_upstream().await;
    let proxy = ProxyBuilder::new(up.url())
        .profile(RESET_PROFILE)
        .start()
        .await;
    // Sanity: without the fault the body is 10,000 bytes.
    let r = send(&http1_client(), get(proxy.url("/whole")))
        .await
        .unwrap();
    assert_eq!(r.body.len(), 10_000);

    for (i, client) in [http1_client(), h2c_client()].into_iter().enumerate() {
        let path = format!("/late{i}");
        let resp = within(
            STEP,
            "headers",
            client.request(get_with(proxy.url(&path), &[("x-reset", "late")])),
        )
        .await
        .expect("the headers come before the cut");
        assert_eq!(resp.status(), 200);
        let (n, err) = read_until_error(resp.into_body()).await;
        assert!(
            err.is_some(),
            "{path}: the body ended cleanly after {n} bytes; expected an abort"
        );
        assert!(n <= 1000, "{path}: got {n} bytes, more than after_bytes");
        let rec = proxy.record_for(&path).await;
        assert_eq!(rec["outcome"], "reset", "{rec:#}");
        assert!(rec["bytes_out"].as_u64().unwrap() <= 1000);
        assert_eq!(fault_names(&rec, "faults"), ["cut-late/reset"]);
    }
}

// ---------------------------------------------------------------------------
// hang
// ---------------------------------------------------------------------------

const HANG_PROFILE: &str = r#"
version: 1
name: hangs
rules:
  - name: timed
    match: {path: /timed}
    faults: [{type: hang, duration: 300ms}]
  - name: forever
    match: {path: /forever}
    faults: [{type: hang}]
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hang_with_duration_answers_504() {
    let up = ok_upstream().await;
    let proxy = ProxyBuilder::new(up.url())
        .profile(HANG_PROFILE)
        .start()
        .await;
    let t = Instant::now();
    let r = send(&http1_client(), get(proxy.url("/timed")))
        .await
        .unwrap();
    let took = t.elapsed();
    assert_eq!(r.status, 504);
    assert!(took >= Duration::from_millis(300), "{took:?}");
    assert!(took < Duration::from_secs(5), "{took:?}");
    assert_eq!(r.header("x-brownout-fault"), Some("timed/hang"));
    assert_eq!(up.requests(), 0);
    let rec = proxy.record_for("/timed").await;
    assert_eq!(rec["outcome"], "injected_error");
    assert_eq!(rec["status"], 504);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hang_forever_until_the_client_gives_up() {
    let up = ok_upstream().await;
    let proxy = ProxyBuilder::new(up.url())
        .profile(HANG_PROFILE)
        .start()
        .await;
    for version in [Version::HTTP_11, Version::HTTP_2] {
        let path = format!("/forever?{version:?}");
        let res = if version == Version::HTTP_2 {
            let (mut conn, task) = h2_conn(proxy.addr).await;
            let r = tokio::time::timeout(
                Duration::from_millis(400),
                conn.send_request(get(proxy.url(&path))),
            )
            .await;
            task.abort();
            r.is_err()
        } else {
            let (mut conn, task) = h1_conn(proxy.addr).await;
            let req = Request::get(&path)
                .header("host", "x")
                .body(empty())
                .unwrap();
            let r = tokio::time::timeout(Duration::from_millis(400), conn.send_request(req)).await;
            // The client gives up: its connection goes away.
            task.abort();
            r.is_err()
        };
        assert!(
            res,
            "{version:?}: the hang answered before the client gave up"
        );
    }
    // Each exchange is recorded once, as client_closed, when the client left.
    let recs = proxy.exactly_records(2).await;
    for r in &recs {
        assert_eq!(r["outcome"], "client_closed", "{r:#}");
        assert_eq!(fault_names(r, "faults"), ["forever/hang"]);
        assert!(r["status"].is_null(), "{r:#}");
    }
    assert_eq!(up.requests(), 0);
}

// ---------------------------------------------------------------------------
// bandwidth
// ---------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bandwidth_throttles_the_body() {
    let payload: Vec<u8> = (0..20 * 1024).map(|i| (i % 251) as u8).collect();
    let p = payload.clone();
    let up = Upstream::start(move |_req| {
        let p = p.clone();
        async move { reply(200, p) }
    })
    .await;
    let proxy = ProxyBuilder::new(up.url())
        .profile(
            r#"
version: 1
name: bw
rules:
  - name: thin-pipe
    faults: [{type: bandwidth, bytes_per_second: 10240}]
"#,
        )
        .start()
        .await;
    for client in [http1_client(), h2c_client()] {
        let t = Instant::now();
        let r = send(&client, get(proxy.url("/bw"))).await.unwrap();
        let took = t.elapsed();
        assert_eq!(r.status, 200);
        assert!(r.body == payload, "throttled body changed");
        assert!(
            took >= Duration::from_millis(1500),
            "20 KiB at 10 KiB/s took only {took:?}"
        );
        assert!(took < Duration::from_secs(8), "{took:?}");
        assert_eq!(r.header("x-brownout-fault"), Some("thin-pipe/bandwidth"));
    }
    let recs = proxy.exactly_records(2).await;
    for r in recs {
        assert_eq!(r["outcome"], "ok");
        assert_eq!(r["bytes_out"], 20 * 1024);
        assert!(r["e2e_ms"].as_f64().unwrap() >= 1500.0);
    }
}

// ---------------------------------------------------------------------------
// concurrency_limit
// ---------------------------------------------------------------------------

/// An upstream whose `/slow` requests wait until the test opens the gate.
async fn gated_upstream() -> (Upstream, tokio::sync::watch::Sender<bool>) {
    let (gate, rx) = tokio::sync::watch::channel(false);
    let up = Upstream::start(move |req| {
        let mut rx = rx.clone();
        async move {
            if req.uri().path().starts_with("/slow") {
                let _ = rx.wait_for(|open| *open).await;
            }
            reply(200, "done")
        }
    })
    .await;
    (up, gate)
}

async fn wait_until(what: &str, f: impl Fn() -> bool) {
    let deadline = Instant::now() + STEP;
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrency_limit_queues_then_rejects() {
    let (up, gate) = gated_upstream().await;
    let proxy = ProxyBuilder::new(up.url())
        .profile(
            r#"
version: 1
name: cl
rules:
  - name: one-at-a-time
    faults: [{type: concurrency_limit, max: 1, queue: 1}]
"#,
        )
        .start()
        .await;
    let c = http1_client();
    let (ca, cb) = (c.clone(), c.clone());
    let url_a = proxy.url("/slow-a");
    let a = tokio::spawn(async move { send(&ca, get(url_a)).await });
    wait_until("A reaches the upstream", || up.requests() == 1).await;
    let url_b = proxy.url("/slow-b");
    let b = tokio::spawn(async move { send(&cb, get(url_b)).await });
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        up.requests(),
        1,
        "B must wait in the queue, not reach the upstream"
    );
    assert!(!b.is_finished(), "B is queued");
    // C: the slot and the queue are full.
    let r = within(STEP, "C rejected at once", send(&c, get(proxy.url("/c"))))
        .await
        .unwrap();
    assert_eq!(
        r.status,
        StatusCode::SERVICE_UNAVAILABLE,
        "generic api: the http.service_unavailable preset"
    );
    assert_eq!(r.header("x-brownout-limit"), Some("queue_full"));
    assert_eq!(
        r.header("x-brownout-fault"),
        Some("one-at-a-time/concurrency_limit")
    );
    gate.send(true).unwrap();
    let ra = within(STEP, "A", a).await.unwrap().unwrap();
    let rb = within(STEP, "B", b).await.unwrap().unwrap();
    assert_eq!((ra.status, rb.status), (StatusCode::OK, StatusCode::OK));
    assert_eq!(up.requests(), 2);
    let rec_b = proxy.record_for("/slow-b").await;
    assert_eq!(
        fault_names(&rec_b, "faults"),
        ["one-at-a-time/concurrency_limit"],
        "B was held: {rec_b:#}"
    );
    assert!(rec_b["e2e_ms"].as_f64().unwrap() >= 250.0);
    let rec_a = proxy.record_for("/slow-a").await;
    assert!(
        fault_names(&rec_a, "faults").is_empty(),
        "A got a slot at once: not harmed: {rec_a:#}"
    );
    let rec_c = proxy.record_for("/c").await;
    assert_eq!(rec_c["outcome"], "injected_error");
    assert_eq!(
        fault_names(&rec_c, "faults"),
        ["one-at-a-time/concurrency_limit"]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrency_limit_queue_timeout() {
    let (up, gate) = gated_upstream().await;
    let proxy = ProxyBuilder::new(up.url())
        .api(ApiKind::Openai)
        .profile(
            r#"
version: 1
name: cl-timeout
rules:
  - name: narrow
    faults:
      - type: concurrency_limit
        max: 1
        queue: 5
        queue_timeout: 300ms
        preset: openai.rate_limit_requests
"#,
        )
        .start()
        .await;
    let c = http1_client();
    let ca = c.clone();
    let url_a = proxy.url("/slow-a");
    let a = tokio::spawn(async move { send(&ca, get(url_a)).await });
    wait_until("A reaches the upstream", || up.requests() == 1).await;
    let t = Instant::now();
    let r = within(
        STEP,
        "B times out in the queue",
        send(&c, get(proxy.url("/b"))),
    )
    .await
    .unwrap();
    let took = t.elapsed();
    assert_eq!(r.status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(r.header("x-brownout-limit"), Some("queue_timeout"));
    assert_eq!(r.json()["error"]["code"], "rate_limit_exceeded");
    assert!(
        took >= Duration::from_millis(300),
        "rejected before queue_timeout: {took:?}"
    );
    assert!(took < Duration::from_secs(5), "{took:?}");
    gate.send(true).unwrap();
    assert_eq!(within(STEP, "A", a).await.unwrap().unwrap().status, 200);
    // The slot is free again: the next request goes straight through.
    let r = send(&c, get(proxy.url("/c"))).await.unwrap();
    assert_eq!(r.status, 200);
}

// ---------------------------------------------------------------------------
// probability and max_active
// ---------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn probability_fires_about_half_the_time() {
    let up = ok_upstream().await;
    let proxy = ProxyBuilder::new(up.url())
        .seed(1234)
        .profile(
            r#"
version: 1
name: coin
rules:
  - name: coin
    probability: 0.5
    faults: [{type: error, status: 500}]
"#,
        )
        .start()
        .await;
    let c = http1_client();
    let mut fired = 0;
    for _ in 0..200 {
        let r = send(&c, get(proxy.url("/p"))).await.unwrap();
        match r.status.as_u16() {
            500 => {
                assert_eq!(r.header("x-brownout-fault"), Some("coin/error"));
                fired += 1;
            }
            200 => assert_eq!(r.header("x-brownout-fault"), None),
            s => panic!("unexpected status {s}"),
        }
    }
    assert!(
        (60..=140).contains(&fired),
        "p=0.5 fired {fired} times in 200"
    );
    assert_eq!(up.requests(), 200 - fired);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_active_caps_the_blast_radius() {
    let up = ok_upstream().await;
    let proxy = ProxyBuilder::new(up.url())
        .profile(
            r#"
version: 1
name: capped
rules:
  - name: capped
    max_active: 1
    faults: [{type: delay, duration: 800ms}]
"#,
        )
        .start()
        .await;
    let c = http1_client();
    let ca = c.clone();
    let url_a = proxy.url("/a");
    let a = tokio::spawn(async move {
        let t = Instant::now();
        (send(&ca, get(url_a)).await, t.elapsed())
    });
    wait_until("A is held", || {
        proxy
            .shared()
            .metrics
            .active_gauge("test")
            .load(std::sync::atomic::Ordering::Relaxed)
            == 1
    })
    .await;
    let t = Instant::now();
    let rb = send(&c, get(proxy.url("/b"))).await.unwrap();
    let took_b = t.elapsed();
    assert_eq!(rb.status, 200);
    assert!(
        took_b < Duration::from_millis(600),
        "B was harmed beyond the cap: {took_b:?}"
    );
    assert_eq!(
        rb.header("x-brownout-fault"),
        None,
        "B is not harmed, so not marked"
    );
    let (ra, took_a) = within(STEP, "A", a).await.unwrap();
    assert_eq!(ra.unwrap().status, 200);
    assert!(took_a >= Duration::from_millis(800), "{took_a:?}");

    let rec_b = proxy.record_for("/b").await;
    assert!(fault_names(&rec_b, "faults").is_empty(), "{rec_b:#}");
    assert_eq!(fault_names(&rec_b, "faults_skipped"), ["capped/delay"]);
    assert_eq!(rec_b["faults_skipped"][0]["reason"], "max_active");
    let rec_a = proxy.record_for("/a").await;
    assert_eq!(fault_names(&rec_a, "faults"), ["capped/delay"]);
    assert!(fault_names(&rec_a, "faults_skipped").is_empty());

    // The slot is free again once A ended.
    let t = Instant::now();
    send(&c, get(proxy.url("/c"))).await.unwrap();
    assert!(t.elapsed() >= Duration::from_millis(800));
}

// ---------------------------------------------------------------------------
// How rules and faults combine
// ---------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rules_apply_in_file_order_and_the_first_terminal_fault_ends_it() {
    let up = ok_upstream().await;
    let proxy = ProxyBuilder::new(up.url())
        .profile(
            r#"
version: 1
name: order
rules:
  # Case a: a delay rule before an error rule: both apply.
  - name: a-delay
    match: {path: /a}
    faults: [{type: delay, duration: 300ms}]
  - name: a-error
    match: {path: /a}
    faults: [{type: error, status: 409}]
  # Case b: an error rule before a delay rule: the delay never happens.
  - name: b-error
    match: {path: /b}
    faults: [{type: error, status: 409}]
  - name: b-delay
    match: {path: /b}
    faults: [{type: delay, duration: 2s}]
  # Case c and d: the same within one rule.
  - name: c
    match: {path: /c}
    faults: [{type: delay, duration: 300ms}, {type: error, status: 410}]
  - name: d
    match: {path: /d}
    faults: [{type: error, status: 410}, {type: delay, duration: 2s}]
"#,
        )
        .start()
        .await;
    let c = http1_client();
    for (path, status, min, max, applied) in [
        ("/a", 409, 300, 1500, vec!["a-delay/delay", "a-error/error"]),
        ("/b", 409, 0, 1500, vec!["b-error/error"]),
        ("/c", 410, 300, 1500, vec!["c/delay", "c/error"]),
        ("/d", 410, 0, 1500, vec!["d/error"]),
    ] {
        let t = Instant::now();
        let r = send(&c, get(proxy.url(path))).await.unwrap();
        let took = t.elapsed();
        assert_eq!(r.status, status, "{path}");
        assert!(took >= Duration::from_millis(min), "{path}: {took:?}");
        assert!(
            took < Duration::from_millis(max),
            "{path}: a fault after the terminal one applied: {took:?}"
        );
        let rec = proxy.record_for(path).await;
        assert_eq!(fault_names(&rec, "faults"), applied, "{path}");
    }
    // The header names every fault decided for the exchange.
    let r = send(&c, get(proxy.url("/b"))).await.unwrap();
    assert_eq!(
        r.header("x-brownout-fault"),
        Some("b-error/error, b-delay/delay")
    );
    assert_eq!(up.requests(), 0);
}

// ---------------------------------------------------------------------------
// match
// ---------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn match_on_path_method_and_headers() {
    let up = ok_upstream().await;
    let proxy = ProxyBuilder::new(up.url())
        .profile(
            r#"
version: 1
name: matches
rules:
  - name: by-path
    match: {path: "/v1/**/secret-*"}
    faults: [{type: error, status: 451}]
  - name: by-method
    match: {method: DELETE}
    faults: [{type: error, status: 405}]
  - name: by-header
    match: {headers: {x-tenant: "acme-*"}}
    faults: [{type: error, status: 402}]
  - name: all-of
    match: {method: PUT, path: "/both/*", headers: {x-flag: "on"}}
    faults: [{type: error, status: 418}]
"#,
        )
        .start()
        .await;
    let c = http1_client();
    type Case<'a> = (&'a str, &'a str, &'a [(&'a str, &'a str)], u16);
    let cases: &[Case] = &[
        ("GET", "/v1/a/b/secret-x", &[], 451),
        ("GET", "/v1/secret-y", &[], 451),
        ("GET", "/v1/a/public", &[], 200),
        ("GET", "/v2/a/secret-x", &[], 200),
        ("DELETE", "/anything", &[], 405),
        ("GET", "/anything", &[], 200),
        ("GET", "/h", &[("x-tenant", "acme-prod")], 402),
        ("GET", "/h", &[("x-tenant", "other")], 200),
        ("GET", "/h", &[], 200),
        ("PUT", "/both/x", &[("x-flag", "on")], 418),
        ("PUT", "/both/x", &[("x-flag", "off")], 200),
        ("PUT", "/both/x/y", &[("x-flag", "on")], 200),
        ("POST", "/both/x", &[("x-flag", "on")], 200),
    ];
    for (method, path, headers, want) in cases {
        let mut b = Request::builder().method(*method).uri(proxy.url(path));
        for (k, v) in *headers {
            b = b.header(*k, *v);
        }
        let r = send(&c, b.body(empty()).unwrap()).await.unwrap();
        assert_eq!(r.status.as_u16(), *want, "{method} {path} {headers:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn match_on_model_and_stream_in_json_bodies() {
    let (up, caps) = Upstream::echo().await;
    let proxy = ProxyBuilder::new(up.url())
        .api(ApiKind::Openai)
        .limits(|l| l.inspect_limit = brownout::config::ByteSize(1024))
        .profile(
            r#"
version: 1
name: models
rules:
  - name: gpt4o-streams
    match: {endpoint: chat, model: "gpt-4o*", stream: true}
    faults: [{type: error, preset: openai.rate_limit_requests}]
  - name: claude
    match: {model: "claude-*"}
    faults: [{type: error, status: 418}]
"#,
        )
        .start()
        .await;
    let c = http1_client();
    let chat = proxy.url("/v1/chat/completions");
    let msg = |model: &str, stream: bool, content: &str| serde_json::json!({"model": model, "stream": stream, "messages": [{"role": "user", "content": content}]});
    let cases = [
        (msg("gpt-4o-mini", true, "hi"), 429),
        (msg("gpt-4o-mini", false, "hi"), 200),
        (msg("gpt-3.5-turbo", true, "hi"), 200),
        (msg("claude-3-haiku", false, "hi"), 418),
        // Over inspect_limit: body conditions cannot hold, and the body streams through whole.
        (msg("gpt-4o", true, &"x".repeat(4000)), 200),
        (msg("claude-3-haiku", false, &"y".repeat(4000)), 200),
    ];
    for (body, want) in cases {
        let r = send(&c, post_json(&chat, &body)).await.unwrap();
        assert_eq!(
            r.status.as_u16(),
            want,
            "{}",
            &body.to_string()[..80.min(body.to_string().len())]
        );
        if want == 200 {
            assert_eq!(
                caps.last().body,
                body.to_string(),
                "an inspected or oversized body reaches the upstream whole"
            );
            assert_eq!(r.body, body.to_string());
        }
    }
    // A body that is not JSON never matches body conditions and passes intact.
    let r = send(&c, Request::post(&chat).body(full("not json {")).unwrap())
        .await
        .unwrap();
    assert_eq!(r.status, 200);
    assert_eq!(caps.last().body, "not json {");
    let recs = proxy.exactly_records(7).await;
    assert_eq!(recs[0]["model"], "gpt-4o-mini");
    assert_eq!(recs[0]["stream"], true);
    assert_eq!(recs[0]["endpoint"], "chat");
}

// ---------------------------------------------------------------------------
// phases
// ---------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn phases_change_behaviour_over_time() {
    let up = ok_upstream().await;
    let started = Instant::now();
    let proxy = ProxyBuilder::new(up.url())
        .profile(
            r#"
version: 1
name: phased
phases:
  - name: baseline
    duration: 1s
  - name: broken
    duration: 1s
    rules:
      - name: broken-all
        faults: [{type: error, status: 500}]
  - name: recovered
    duration: 1m
"#,
        )
        .start()
        .await;
    let c = http1_client();
    let r = send(&c, get(proxy.url("/p1"))).await.unwrap();
    assert!(
        started.elapsed() < Duration::from_millis(900),
        "the machine is too slow for this test's timing"
    );
    assert_eq!(r.status, 200, "baseline: no faults");
    tokio::time::sleep_until(started + Duration::from_millis(1300)).await;
    let r = send(&c, get(proxy.url("/p2"))).await.unwrap();
    assert_eq!(r.status, 500, "broken phase");
    assert_eq!(r.header("x-brownout-fault"), Some("broken-all/error"));
    tokio::time::sleep_until(started + Duration::from_millis(2400)).await;
    let r = send(&c, get(proxy.url("/p3"))).await.unwrap();
    assert_eq!(r.status, 200, "recovered");
    assert_eq!(proxy.record_for("/p1").await["phase"], "baseline");
    assert_eq!(proxy.record_for("/p2").await["phase"], "broken");
    assert_eq!(proxy.record_for("/p3").await["phase"], "recovered");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn h2_stream_cancelled_during_a_hang_is_client_closed() {
    let up = ok_upstream().await;
    let proxy = ProxyBuilder::new(up.url())
        .profile(HANG_PROFILE)
        .start()
        .await;
    let (conn, task) = h2_conn(proxy.addr).await;
    let mut c1 = conn.clone();
    // The client gives up on one stream only (RST_STREAM CANCEL).
    let r = tokio::time::timeout(
        Duration::from_millis(300),
        c1.send_request(get("http://x/forever")),
    )
    .await;
    assert!(r.is_err(), "the hang answered");
    let rec = proxy.record_for("/forever").await;
    assert_eq!(rec["outcome"], "client_closed", "{rec:#}");
    // The connection carries on.
    let mut c2 = conn.clone();
    let r = read_reply(c2.send_request(get("http://x/fine")).await.unwrap())
        .await
        .unwrap();
    assert_eq!(r.status, 200);
    assert!(!task.is_finished());
    assert_eq!(
        proxy
            .shared()
            .metrics
            .active_gauge("test")
            .load(std::sync::atomic::Ordering::Relaxed),
        0,
        "the cancelled exchange is no longer active"
    );
}
