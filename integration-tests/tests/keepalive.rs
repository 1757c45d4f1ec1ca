//! Upstream keep-alive never invents a failure: a pooled connection the upstream
//! closed is checked before reuse, retired before the upstream's keep-alive runs
//! out, and a request such a connection lost unanswered goes again, once, on a new
//! connection; a request the server may have processed is never sent twice.
//!
//! The upstreams here are raw HTTP/1.1 servers that count every request they
//! execute (by its `x-id`), so a duplicate shows. Each test runs on both data
//! paths: the HTTP/1.1 fast path and hyper's (`fast_path: false`). The real
//! uvicorn and llama-cpp-python servers are in `real_stack.rs`.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use brownout_integration_tests::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// What the test server does with the n-th request (from 0) on a connection.
#[derive(Clone, Copy, Debug)]
enum Act {
    /// Execute and answer, keeping the connection open.
    Answer,
    /// Close at once without reading it: the close raced the request, as when
    /// uvicorn's keep-alive timer fires while a request is on its way.
    DropUnread,
    /// Execute it, then go silent and close after this long (a crash mid-work).
    ExecuteThenClose(Duration),
    /// Execute and answer (without `Connection: close`), then close at once.
    AnswerThenClose,
    /// Execute and answer, then reset the connection (RST, zero linger).
    AnswerThenReset,
}

#[derive(Default)]
struct Seen {
    /// Executions per `x-id`.
    executed: Mutex<HashMap<String, usize>>,
}

impl Seen {
    fn executed(&self, id: &str) -> usize {
        self.executed.lock().unwrap().get(id).copied().unwrap_or(0)
    }
    fn total(&self) -> usize {
        self.executed.lock().unwrap().values().sum()
    }
    fn duplicates(&self) -> Vec<String> {
        let m = self.executed.lock().unwrap();
        m.iter()
            .filter(|(_, n)| **n > 1)
            .map(|(k, _)| k.clone())
            .collect()
    }
}

/// Read one request (head, and a `content-length` body) from `s`; `None` at EOF.
async fn read_request(s: &mut TcpStream, buf: &mut Vec<u8>) -> Option<(String, Vec<u8>)> {
    let mut b = [0u8; 4096];
    let head_end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        let n = s.read(&mut b).await.ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&b[..n]);
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
    let len: usize = head
        .lines()
        .find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case("content-length")
                .then(|| v.trim().parse().ok())
                .flatten()
        })
        .unwrap_or(0);
    while buf.len() < head_end + len {
        let n = s.read(&mut b).await.ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&b[..n]);
    }
    let body = buf[head_end..head_end + len].to_vec();
    buf.drain(..head_end + len);
    Some((head, body))
}

fn header<'a>(head: &'a str, name: &str) -> Option<&'a str> {
    head.lines().find_map(|l| {
        let (k, v) = l.split_once(':')?;
        k.eq_ignore_ascii_case(name).then(|| v.trim())
    })
}

/// A counting upstream: `act(n)` decides the n-th request of each connection;
/// idle connections are closed after `idle_close`; answers carry `extra` headers.
async fn counting_upstream(
    act: impl Fn(usize) -> Act + Send + Sync + 'static,
    idle_close: Option<Duration>,
    extra: &'static str,
) -> (RawUpstream, Arc<Seen>) {
    let seen = Arc::new(Seen::default());
    let s2 = seen.clone();
    let act = Arc::new(act);
    let up = RawUpstream::start(move |mut s| {
        let (seen, act) = (s2.clone(), act.clone());
        async move {
            let mut buf = Vec::new();
            let mut n = 0;
            loop {
                let next = match idle_close {
                    Some(d) if buf.is_empty() => {
                        // Wait for the first byte of the next request at most `d`.
                        match tokio::time::timeout(d, s.peek(&mut [0u8; 1])).await {
                            Ok(Ok(k)) if k > 0 => read_request(&mut s, &mut buf).await,
                            _ => return,
                        }
                    }
                    _ => read_request(&mut s, &mut buf).await,
                };
                let Some((head, body)) = next else { return };
                let act = act(n);
                match act {
                    Act::DropUnread => return,
                    _ => {
                        let id = header(&head, "x-id").unwrap_or("-").to_string();
                        *seen.executed.lock().unwrap().entry(id.clone()).or_default() += 1;
                        if let Act::ExecuteThenClose(d) = act {
                            tokio::time::sleep(d).await;
                            return;
                        }
                        let answer = format!("{id}:{}", body.len());
                        let resp = format!(
                            "HTTP/1.1 200 OK\r\ncontent-length: {}\r\n{extra}\r\n{answer}",
                            answer.len()
                        );
                        if s.write_all(resp.as_bytes()).await.is_err() {
                            return;
                        }
                        match act {
                            Act::AnswerThenClose => return,
                            Act::AnswerThenReset => {
                                let _ = socket2::SockRef::from(&s).set_linger(Some(Duration::ZERO));
                                return;
                            }
                            _ => {}
                        }
                    }
                }
                n += 1;
            }
        }
    })
    .await;
    (up, seen)
}

fn proxy(upstream: &RawUpstream, fast_path: bool) -> ProxyBuilder {
    ProxyBuilder::new(upstream.url()).config(move |c| c.fast_path = fast_path)
}

/// One request with an id (and a body when `post`), over the client's pool.
async fn call(
    client: &hyper_util::client::legacy::Client<
        hyper_util::client::legacy::connect::HttpConnector,
        Body,
    >,
    url: &str,
    id: &str,
    post: bool,
) -> Reply {
    let mut req = if post {
        post_json(url, &serde_json::json!({"model": "m", "id": id}))
    } else {
        get(url)
    };
    req.headers_mut().insert("x-id", id.parse().unwrap());
    send(client, req).await.expect("an answer from the proxy")
}

#[tokio::test]
async fn a_request_lost_by_a_closing_connection_goes_again_once() {
    // Every connection answers one request, then closes when the next arrives,
    // unread: the reused connection loses every request after the first.
    for fast_path in [true, false] {
        let (up, seen) = counting_upstream(
            |n| if n == 0 { Act::Answer } else { Act::DropUnread },
            None,
            "",
        )
        .await;
        let p = proxy(&up, fast_path).start().await;
        let client = http1_client();
        for i in 0..20 {
            let id = format!("{fast_path}-{i}");
            let r = call(&client, &p.url("/v1/chat/completions"), &id, i % 2 == 0).await;
            assert_eq!(
                r.status, 200,
                "fast path {fast_path}, request {i}: {:?}",
                r.body
            );
            assert!(
                String::from_utf8_lossy(&r.body).starts_with(&id),
                "answer for the wrong request"
            );
            assert_eq!(seen.executed(&id), 1, "{id} executed once");
        }
        assert!(
            seen.duplicates().is_empty(),
            "executed twice: {:?}",
            seen.duplicates()
        );
        let records = p.wait_records(20).await;
        let retried = records
            .iter()
            .filter(|r| r["upstream"]["retried"] == true)
            .count();
        assert!(
            retried >= 1,
            "fast path {fast_path}: no record says upstream.retried: {records:?}"
        );
        assert!(records.iter().all(|r| r["outcome"] == "ok"), "{records:?}");
        p.shutdown().await;
    }
}

#[tokio::test]
async fn a_request_the_server_may_have_processed_is_never_sent_twice() {
    // The second request on a connection is executed, then the server dies
    // silently 1.5 s later: a direct client gets an error too, and sending it
    // again would execute it twice.
    for fast_path in [true, false] {
        let (up, seen) = counting_upstream(
            |n| {
                if n == 0 {
                    Act::Answer
                } else {
                    Act::ExecuteThenClose(Duration::from_millis(1500))
                }
            },
            None,
            "",
        )
        .await;
        let p = proxy(&up, fast_path).start().await;
        let client = http1_client();
        let first = call(&client, &p.url("/a"), "warm", false).await;
        assert_eq!(first.status, 200);
        let id = format!("once-{fast_path}");
        let r = call(&client, &p.url("/b"), &id, true).await;
        assert_eq!(r.status, 502, "fast path {fast_path}: the upstream died");
        assert_eq!(
            seen.executed(&id),
            1,
            "fast path {fast_path}: sent again after the server had it"
        );
        p.shutdown().await;
    }
}

#[tokio::test]
async fn connections_closed_while_idle_are_never_reused() {
    // The upstream closes connections idle for 300 ms; requests 400 ms apart
    // find every pooled connection closed, and none of them fails.
    for fast_path in [true, false] {
        let (up, seen) =
            counting_upstream(|_| Act::Answer, Some(Duration::from_millis(300)), "").await;
        let p = proxy(&up, fast_path).start().await;
        let client = http1_client();
        for i in 0..6 {
            let id = format!("idle-{fast_path}-{i}");
            let r = call(&client, &p.url("/"), &id, false).await;
            assert_eq!(
                r.status, 200,
                "fast path {fast_path}, request {i}: {:?}",
                r.body
            );
            tokio::time::sleep(Duration::from_millis(400)).await;
        }
        assert_eq!(seen.total(), 6);
        assert!(seen.duplicates().is_empty());
        p.shutdown().await;
    }
}

#[tokio::test]
async fn an_announced_keep_alive_retires_connections_before_it_ends() {
    // `Keep-Alive: timeout=1`: a connection idle for 0.85 s (over 0.8 s) is not
    // reused, one idle for 0.1 s is.
    for fast_path in [true, false] {
        let (up, _seen) =
            counting_upstream(|_| Act::Answer, None, "keep-alive: timeout=1\r\n").await;
        let p = proxy(&up, fast_path).start().await;
        let client = http1_client();
        for i in 0..3 {
            let r = call(&client, &p.url("/"), &format!("k{i}"), false).await;
            assert_eq!(r.status, 200);
            tokio::time::sleep(Duration::from_millis(850)).await;
        }
        assert_eq!(
            up.connections(),
            3,
            "fast path {fast_path}: reused past 0.8 s"
        );
        for i in 0..3 {
            let r = call(&client, &p.url("/"), &format!("q{i}"), false).await;
            assert_eq!(r.status, 200);
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert_eq!(
            up.connections(),
            4,
            "fast path {fast_path}: not reused within 0.8 s"
        );
        p.shutdown().await;
    }
}

#[tokio::test]
async fn keep_alive_timeout_zero_and_pool_idle_timeout_are_obeyed() {
    for fast_path in [true, false] {
        // `Keep-Alive: timeout=0`: nothing is kept.
        let (up, _) = counting_upstream(|_| Act::Answer, None, "keep-alive: timeout=0\r\n").await;
        let p = proxy(&up, fast_path).start().await;
        let client = http1_client();
        for i in 0..3 {
            assert_eq!(
                call(&client, &p.url("/"), &format!("z{i}"), false)
                    .await
                    .status,
                200
            );
        }
        assert_eq!(
            up.connections(),
            3,
            "fast path {fast_path}: pooled despite timeout=0"
        );
        p.shutdown().await;

        // `pool.idle_timeout: 200ms`: a connection idle for 400 ms is not reused.
        let (up, _) = counting_upstream(|_| Act::Answer, None, "").await;
        let p = proxy(&up, fast_path)
            .config(|c| {
                c.pool.idle_timeout =
                    brownout_faults::duration::DurationStr(Duration::from_millis(200))
            })
            .start()
            .await;
        for i in 0..3 {
            assert_eq!(
                call(&client, &p.url("/"), &format!("t{i}"), false)
                    .await
                    .status,
                200
            );
            tokio::time::sleep(Duration::from_millis(400)).await;
        }
        assert_eq!(
            up.connections(),
            3,
            "fast path {fast_path}: reused past idle_timeout"
        );
        p.shutdown().await;
    }
}

#[tokio::test]
async fn upstreams_that_close_or_reset_after_each_answer_cause_no_failure() {
    for act in [Act::AnswerThenClose, Act::AnswerThenReset] {
        for fast_path in [true, false] {
            let (up, seen) = counting_upstream(move |_| act, None, "").await;
            let p = proxy(&up, fast_path).start().await;
            let client = http1_client();
            for i in 0..10 {
                let id = format!("{act:?}-{fast_path}-{i}");
                let r = call(&client, &p.url("/"), &id, i % 2 == 1).await;
                assert_eq!(
                    r.status, 200,
                    "{act:?}, fast path {fast_path}, request {i}: {:?}",
                    r.body
                );
                // Some requests come right after the close: give it no time to land.
                if i % 3 == 0 {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            }
            assert_eq!(seen.total(), 10, "{act:?}, fast path {fast_path}");
            assert!(
                seen.duplicates().is_empty(),
                "{act:?}: {:?}",
                seen.duplicates()
            );
            p.shutdown().await;
        }
    }
}
