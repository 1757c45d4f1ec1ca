//! Connection limits (docs/configuration.md, "Connections turned away"): a connection that never sends a request
//! is dropped after `header_timeout`, an idle keep-alive connection after
//! `idle_timeout`, over HTTP/1.1 and HTTP/2 alike; and each listener forwards only
//! to its own upstream, whatever `Host` says.

use std::time::Duration;

use brownout_faults::duration::DurationStr;
use brownout_integration_tests::*;
use http::Request;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::Instant;

fn ms(n: u64) -> DurationStr {
    DurationStr(Duration::from_millis(n))
}

/// Read until the proxy closes the socket; returns how long that took.
async fn time_to_close(s: &mut TcpStream) -> Duration {
    let t = Instant::now();
    let mut buf = [0u8; 4096];
    loop {
        match within(
            Duration::from_secs(5),
            "the proxy closes the connection",
            s.read(&mut buf),
        )
        .await
        {
            Ok(0) | Err(_) => return t.elapsed(),
            Ok(_) => {}
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silent_and_slowloris_connections_are_dropped_after_header_timeout() {
    let up = Upstream::start(|_req| async { reply(200, "ok") }).await;
    let proxy = ProxyBuilder::new(up.url())
        .limits(|l| {
            l.header_timeout = ms(300);
            l.idle_timeout = ms(10_000);
        })
        .start()
        .await;
    // Connects and says nothing.
    let mut s = TcpStream::connect(proxy.addr).await.unwrap();
    let took = time_to_close(&mut s).await;
    assert!(
        took >= Duration::from_millis(250),
        "closed too early: {took:?}"
    );
    // Sends half a request head, then stalls.
    let mut s = TcpStream::connect(proxy.addr).await.unwrap();
    s.write_all(b"GET / HTTP/1.1\r\nhost: x\r\n").await.unwrap();
    let took = time_to_close(&mut s).await;
    assert!(
        took >= Duration::from_millis(250),
        "closed too early: {took:?}"
    );
    assert_eq!(up.requests(), 0);
    // A prompt client is unaffected.
    assert_eq!(
        send(&http1_client(), get(proxy.url("/")))
            .await
            .unwrap()
            .status,
        200
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_keep_alive_http1_connection_is_closed_after_idle_timeout() {
    let up = Upstream::start(|_req| async { reply(200, "ok") }).await;
    let proxy = ProxyBuilder::new(up.url())
        .limits(|l| {
            l.header_timeout = ms(200);
            l.idle_timeout = ms(600);
        })
        .start()
        .await;
    let mut s = TcpStream::connect(proxy.addr).await.unwrap();
    s.write_all(b"GET / HTTP/1.1\r\nhost: x\r\n\r\n")
        .await
        .unwrap();
    let mut buf = vec![0u8; 4096];
    let n = s.read(&mut buf).await.unwrap();
    assert!(String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 200"));
    // Idle between requests: the keep-alive connection outlives header_timeout...
    tokio::time::sleep(Duration::from_millis(350)).await;
    s.write_all(b"GET /again HTTP/1.1\r\nhost: x\r\n\r\n")
        .await
        .unwrap();
    let n = s.read(&mut buf).await.unwrap();
    assert!(
        String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 200"),
        "a keep-alive pause shorter than idle_timeout"
    );
    // ...and is closed after idle_timeout.
    let took = time_to_close(&mut s).await;
    assert!(took >= Duration::from_millis(500), "{took:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_h2_connection_is_closed_after_idle_timeout() {
    let up = Upstream::start(|_req| async { reply(200, "ok") }).await;
    let proxy = ProxyBuilder::new(up.url())
        .limits(|l| {
            l.header_timeout = ms(200);
            l.idle_timeout = ms(600);
        })
        .start()
        .await;
    let (mut conn, task) = h2_conn(proxy.addr).await;
    let r = read_reply(conn.send_request(get("http://x/")).await.unwrap())
        .await
        .unwrap();
    assert_eq!(r.status, 200);
    let t = Instant::now();
    within(
        Duration::from_secs(5),
        "an idle h2 connection is closed after idle_timeout",
        task,
    )
    .await
    .unwrap();
    assert!(
        t.elapsed() >= Duration::from_millis(500),
        "{:?}",
        t.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_listener_forwards_only_to_its_own_upstream() {
    let (a, caps_a) = Upstream::echo().await;
    let (b, caps_b) = Upstream::echo().await;
    let proxy = ProxyBuilder::new(a.url())
        .profile(
            r#"
version: 1
name: per-listener
rules:
  - name: only-b
    match: {listener: second}
    faults: [{type: error, status: 418}]
"#,
        )
        .config(|c| {
            let mut l = c.listeners[0].clone();
            l.name = Some("second".into());
            l.upstream = b.url();
            c.listeners.push(l);
        })
        .start()
        .await;
    let second = proxy.running().addr(Some("second")).unwrap();
    // Host naming the other upstream (or any host) never selects it.
    let req = Request::get(proxy.url("/to-a"))
        .header("host", b.addr.to_string())
        .body(empty())
        .unwrap();
    let r = send(&http1_client(), req).await.unwrap();
    assert_eq!(r.status, 200);
    assert_eq!(caps_a.len(), 1);
    assert!(caps_b.is_empty());
    let req = Request::get(format!("http://{second}/to-b"))
        .header("host", a.addr.to_string())
        .body(empty())
        .unwrap();
    let r = send(&http1_client(), req).await.unwrap();
    assert_eq!(
        r.status, 418,
        "the `listener` condition picks the second listener"
    );
    // Absolute-form request targets cannot redirect either.
    let (mut conn, _t) = h1_conn(proxy.addr).await;
    let req = Request::get(format!("http://{}/absolute", b.addr))
        .body(empty())
        .unwrap();
    let r = read_reply(conn.send_request(req).await.unwrap())
        .await
        .unwrap();
    assert_eq!(r.status, 200);
    assert_eq!(caps_a.last().uri.path(), "/absolute");
    assert!(
        caps_b.is_empty(),
        "an absolute-form URI must not select an upstream (open proxy)"
    );
    assert_eq!(caps_a.last().header_all("host"), [a.addr.to_string()]);
}
