//! Errors brownout itself produces (docs/robustness.md): an
//! unreachable upstream is a 502 and a silent one a 504, both marked with
//! `x-brownout-error` and a JSON body; an upstream that fails after its headers
//! aborts the client's body, never a clean end that would look like a complete
//! answer. Each is recorded with its outcome.

use std::time::Duration;

use brownout_integration_tests::*;
use http::Version;
use tokio::io::AsyncWriteExt;
use tokio::time::Instant;

const STEP: Duration = Duration::from_secs(10);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_upstream_is_a_marked_502() {
    let dead = closed_port_addr().await;
    let proxy = ProxyBuilder::new(format!("http://{dead}")).start().await;
    for client in [http1_client(), h2c_client()] {
        let r = within(
            STEP,
            "502",
            send(&client, get(proxy.url("/v1/chat/completions"))),
        )
        .await
        .unwrap();
        assert_eq!(r.status, 502);
        assert_eq!(r.header("x-brownout-error"), Some("upstream_unreachable"));
        assert_eq!(r.header("content-type"), Some("application/json"));
        let j = r.json();
        assert_eq!(j["error"]["type"], "upstream_unreachable", "{j}");
        assert!(
            j["error"]["message"]
                .as_str()
                .unwrap()
                .contains(&dead.to_string()),
            "{j}"
        );
        assert!(
            r.header("x-brownout-fault").is_none(),
            "not an injected fault"
        );
    }
    let recs = proxy.exactly_records(2).await;
    for r in recs {
        assert_eq!(r["outcome"], "upstream_error", "{r:#}");
        assert_eq!(r["status"], 502);
        assert!(r["error"].as_str().is_some_and(|e| !e.is_empty()), "{r:#}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silent_upstream_is_a_marked_504() {
    // Accepts, reads the request, never answers.
    let up = RawUpstream::start(|mut s| async move {
        let _ = read_request_head(&mut s).await;
        tokio::time::sleep(Duration::from_secs(60)).await;
        drop(s);
    })
    .await;
    let proxy = ProxyBuilder::new(up.url())
        .limits(|l| {
            l.upstream_timeout = brownout_faults::duration::DurationStr(Duration::from_millis(300))
        })
        .start()
        .await;
    let t = Instant::now();
    let r = within(STEP, "504", send(&http1_client(), get(proxy.url("/slow"))))
        .await
        .unwrap();
    let took = t.elapsed();
    assert_eq!(r.status, 504);
    assert!(took >= Duration::from_millis(300), "{took:?}");
    assert!(took < Duration::from_secs(5), "{took:?}");
    assert_eq!(r.header("x-brownout-error"), Some("upstream_timeout"));
    assert_eq!(r.json()["error"]["type"], "upstream_timeout");
    let rec = proxy.record_for("/slow").await;
    assert_eq!(rec["outcome"], "timeout");
    assert_eq!(rec["status"], 504);
}

/// An upstream that sends the head and part of the body, then drops the socket.
async fn dying_upstream(head: &'static str, partial: &'static str) -> RawUpstream {
    RawUpstream::start(move |mut s| async move {
        let _ = read_request_head(&mut s).await;
        s.write_all(head.as_bytes()).await.unwrap();
        s.write_all(partial.as_bytes()).await.unwrap();
        s.flush().await.unwrap();
        tokio::time::sleep(Duration::from_millis(50)).await;
        drop(s);
    })
    .await
}

async fn assert_aborted(proxy: &TestProxy, version: Version, path: &str, expect_prefix: &str) {
    let client = if version == Version::HTTP_2 {
        h2c_client()
    } else {
        http1_client()
    };
    let resp = within(STEP, "headers", client.request(get(proxy.url(path))))
        .await
        .expect("headers arrive");
    assert_eq!(resp.status(), 200);
    let mut body = resp.into_body();
    let mut got = Vec::new();
    let err = loop {
        match within(STEP, "body", next_chunk(&mut body)).await {
            None => panic!(
                "{version:?}: clean end of body after {:?}; expected an abort",
                String::from_utf8_lossy(&got)
            ),
            Some(Ok(b)) => got.extend_from_slice(&b),
            Some(Err(e)) => break e,
        }
    };
    assert!(
        expect_prefix.as_bytes().starts_with(&got),
        "{version:?}: unexpected bytes before the abort: {:?} ({err})",
        String::from_utf8_lossy(&got)
    );
    let rec = proxy.record_for(path).await;
    assert_eq!(rec["outcome"], "upstream_error", "{rec:#}");
    assert_eq!(rec["status"], 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_dying_mid_chunked_body_aborts_the_client() {
    let up = dying_upstream(
        "HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n",
        "6\r\ndata: \r\n5\r\nhello\r\n",
    )
    .await;
    let proxy = ProxyBuilder::new(up.url()).start().await;
    assert_aborted(&proxy, Version::HTTP_11, "/h1", "data: hello").await;
    assert_aborted(&proxy, Version::HTTP_2, "/h2", "data: hello").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_dying_mid_content_length_body_aborts_the_client() {
    let up = dying_upstream(
        "HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\n",
        "only twenty bytes...",
    )
    .await;
    let proxy = ProxyBuilder::new(up.url()).start().await;
    assert_aborted(&proxy, Version::HTTP_11, "/h1", "only twenty bytes...").await;
    assert_aborted(&proxy, Version::HTTP_2, "/h2", "only twenty bytes...").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_going_quiet_mid_body_hits_the_idle_timeout() {
    let up = RawUpstream::start(|mut s| async move {
        let _ = read_request_head(&mut s).await;
        s.write_all(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n5\r\nhello\r\n")
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_secs(60)).await;
        drop(s);
    })
    .await;
    let proxy = ProxyBuilder::new(up.url())
        .limits(|l| {
            l.upstream_idle_timeout =
                brownout_faults::duration::DurationStr(Duration::from_millis(300))
        })
        .start()
        .await;
    let resp = send(&http1_client(), get(proxy.url("/quiet"))).await;
    assert!(
        resp.is_err(),
        "a body cut by the idle timeout must not end cleanly: {resp:?}"
    );
    let rec = proxy.record_for("/quiet").await;
    assert_eq!(rec["outcome"], "timeout", "{rec:#}");
    assert!(rec["e2e_ms"].as_f64().unwrap() >= 300.0);
}

/// An upstream that closes a keep-alive connection just after answering (as servers
/// do when a handler did not read the request body, or at their keep-alive timeout)
/// races the proxy's pool: the next request can be written into the dying
/// connection. Without the proxy a client would retry an idempotent request on a
/// fresh connection; through the proxy it must not become a 502 that no fault caused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stale_pooled_upstream_connection_is_not_a_502() {
    let up = RawUpstream::start(|mut s| async move {
        let _ = read_request_head(&mut s).await;
        s.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok")
            .await
            .unwrap();
        // Keep-alive was not refused, but the server closes a moment later.
        tokio::time::sleep(Duration::from_millis(100)).await;
    })
    .await;
    let proxy = ProxyBuilder::new(up.url()).start().await;
    let c = http1_client();
    for i in 0..3 {
        assert_eq!(
            send(&c, get(proxy.url("/first"))).await.unwrap().status,
            200
        );
        // Right away: the proxy's pool still holds the connection the upstream is about to close.
        tokio::time::sleep(Duration::from_millis(20)).await;
        let r = send(&c, get(proxy.url("/second"))).await.unwrap();
        assert_eq!(
            r.status,
            200,
            "round {i}: {}",
            String::from_utf8_lossy(&r.body)
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
