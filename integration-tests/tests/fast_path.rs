//! The HTTP/1.1 fast path (proxy/src/http1/mod.rs), against raw peers that write and
//! read exact bytes: framing the fast path follows without re-encoding (chunked in
//! both directions, close-delimited answers, HEAD/204/304, interim 1xx), a pooled
//! upstream connection that died while idle, a client that leaves while the
//! upstream thinks, the full path on the same client connection when a rule could
//! match (and the hand-over to hyper when that request's upload is not whole yet),
//! and a HEAD answered with brownout's own error. Each checks the bytes a client gets, what the
//! upstream got, and the records.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use brownout_integration_tests::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::mpsc;

const STEP: Duration = Duration::from_secs(10);

/// Read from `s` until `buf` ends with `end` (or the peer closes).
async fn read_until_suffix(s: &mut TcpStream, buf: &mut Vec<u8>, end: &[u8]) {
    while !buf.ends_with(end) {
        let mut b = [0u8; 4096];
        match s.read(&mut b).await {
            Ok(0) | Err(_) => return,
            Ok(n) => buf.extend_from_slice(&b[..n]),
        }
    }
}

fn head_of(raw: &[u8]) -> String {
    let end = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map_or(raw.len(), |i| i + 4);
    String::from_utf8_lossy(&raw[..end]).to_ascii_lowercase()
}

#[tokio::test]
async fn chunked_bodies_pass_byte_for_byte_in_both_directions() {
    // Chunk extensions and a trailer, in pieces that split the framing anywhere.
    const REQ_BODY: &[u8] = b"4;note=x\r\nabcd\r\n3\r\nefg\r\n0\r\n\r\n";
    const RESP_BODY: &[u8] = b"5\r\nhello\r\n6;ext\r\n world\r\n0\r\nx-checksum: 42\r\n\r\n";
    let (got_tx, mut got_rx) = mpsc::channel::<Vec<u8>>(1);
    let up = RawUpstream::start(move |mut s| {
        let got_tx = got_tx.clone();
        async move {
            let mut buf = Vec::new();
            let Some(h) = read_until_head(&mut s, &mut buf).await else {
                return;
            };
            read_until_suffix(&mut s, &mut buf, b"0\r\n\r\n").await;
            let _ = got_tx.send(buf.clone()).await;
            let _ = h;
            let _ = s
                .write_all(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nTransfer-Encoding: chunked\r\n\r\n")
                .await;
            for piece in RESP_BODY.chunks(3) {
                let _ = s.write_all(piece).await;
                let _ = s.flush().await;
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
            // Keep the connection open: the answer's end is its framing.
            tokio::time::sleep(Duration::from_secs(5)).await;
        }
    })
    .await;
    let proxy = ProxyBuilder::new(up.url()).start().await;
    let mut c = TcpStream::connect(proxy.addr).await.unwrap();
    c.write_all(b"POST /upload?x=1 HTTP/1.1\r\nHost: client.example\r\nTransfer-Encoding: chunked\r\nX-Brownout-Seq: 7\r\nProxy-Authorization: secret\r\n\r\n")
        .await
        .unwrap();
    for piece in REQ_BODY.chunks(5) {
        c.write_all(piece).await.unwrap();
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let mut raw = Vec::new();
    within(
        STEP,
        "the chunked answer",
        read_until_suffix(&mut c, &mut raw, b"x-checksum: 42\r\n\r\n"),
    )
    .await;
    let head = head_of(&raw);
    assert!(head.starts_with("http/1.1 200 ok\r\n"), "{head}");
    assert!(head.contains("transfer-encoding: chunked\r\n"), "{head}");
    assert!(!head.contains("connection: close"), "{head}");
    assert_eq!(
        &raw[head.len()..],
        RESP_BODY,
        "the body is relayed as it came"
    );

    let sent = within(STEP, "what the upstream got", got_rx.recv())
        .await
        .unwrap();
    let up_head = head_of(&sent);
    assert!(
        up_head.starts_with("post /upload?x=1 http/1.1\r\n"),
        "{up_head}"
    );
    assert!(
        up_head.contains("transfer-encoding: chunked\r\n"),
        "{up_head}"
    );
    assert!(
        up_head.contains(&format!("host: {}\r\n", up.addr)),
        "the upstream's host: {up_head}"
    );
    for gone in ["client.example", "x-brownout-seq", "proxy-authorization"] {
        assert!(
            !up_head.contains(gone),
            "{gone} is not forwarded: {up_head}"
        );
    }
    assert_eq!(&sent[up_head.len()..], REQ_BODY);

    let rec = proxy.record_for("/upload").await;
    assert_eq!(rec["outcome"], "ok", "{rec:#}");
    assert_eq!(rec["status"], 200);
    assert_eq!(rec["bytes_in"], 7, "payload bytes, not framing: {rec:#}");
    assert_eq!(rec["bytes_out"], 11, "payload bytes, not framing: {rec:#}");
    // The same client connection serves the next request.
    drop(c);
    proxy.exactly_records(1).await;
}

#[tokio::test]
async fn heads_without_bodies_and_interim_answers_keep_the_connection_in_step() {
    let up = RawUpstream::start(|mut s| async move {
        let mut buf = Vec::new();
        while let Some(n) = read_until_head(&mut s, &mut buf).await {
            let head = String::from_utf8_lossy(&buf[..n]).into_owned();
            buf.drain(..n);
            let answer: &[u8] = if head.starts_with("HEAD ") {
                // A HEAD answer announces a length but carries no body.
                b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\n"
            } else if head.starts_with("GET /none ") {
                b"HTTP/1.1 204 No Content\r\n\r\n"
            } else if head.starts_with("GET /same ") {
                b"HTTP/1.1 304 Not Modified\r\netag: \"v1\"\r\n\r\n"
            } else {
                b"HTTP/1.1 103 Early Hints\r\nlink: </style.css>\r\n\r\nHTTP/1.1 200 OK\r\ncontent-length: 4\r\n\r\nbody"
            };
            if s.write_all(answer).await.is_err() {
                return;
            }
        }
    })
    .await;
    let proxy = ProxyBuilder::new(up.url()).start().await;
    let raw = raw_exchange(
        proxy.addr,
        b"HEAD /h HTTP/1.1\r\nhost: x\r\n\r\n\
GET /none HTTP/1.1\r\nhost: x\r\n\r\n\
GET /same HTTP/1.1\r\nhost: x\r\n\r\n\
GET /hints HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n",
        "four answers, then close",
    )
    .await;
    let text = String::from_utf8_lossy(&raw).to_ascii_lowercase();
    let starts: Vec<&str> = text
        .match_indices("http/1.1 ")
        .map(|(i, _)| &text[i..i + 12])
        .collect();
    assert_eq!(
        starts,
        [
            "http/1.1 200",
            "http/1.1 204",
            "http/1.1 304",
            "http/1.1 200"
        ],
        "interim answers are not relayed, bodyless ones take no body: {text}"
    );
    assert!(text.ends_with("connection: close\r\n\r\nbody"), "{text}");
    assert_eq!(
        up.connections(),
        1,
        "one upstream connection served all four"
    );
    let recs = proxy.exactly_records(4).await;
    for r in &recs {
        assert_eq!(r["outcome"], "ok", "{r:#}");
    }
    let head = recs.iter().find(|r| r["path"] == "/h").unwrap();
    assert_eq!(head["method"], "HEAD");
    assert_eq!(head["bytes_out"], 0);
}

#[tokio::test]
async fn a_close_delimited_answer_is_relayed_and_ends_the_client_connection() {
    let up = RawUpstream::start(|mut s| async move {
        let mut buf = Vec::new();
        if read_until_head(&mut s, &mut buf).await.is_none() {
            return;
        }
        let _ = s
            .write_all(b"HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\n\r\nuntil ")
            .await;
        tokio::time::sleep(Duration::from_millis(20)).await;
        let _ = s.write_all(b"the end").await;
        // Closing is the end of this body.
    })
    .await;
    let proxy = ProxyBuilder::new(up.url()).start().await;
    let raw = raw_exchange(
        proxy.addr,
        b"GET /close HTTP/1.1\r\nhost: x\r\n\r\n",
        "the answer and the close",
    )
    .await;
    let head = head_of(&raw);
    assert!(head.contains("connection: close\r\n"), "{head}");
    assert_eq!(&raw[head.len()..], b"until the end");
    let rec = proxy.record_for("/close").await;
    assert_eq!(rec["outcome"], "ok", "{rec:#}");
    assert_eq!(rec["bytes_out"], 13);
}

#[tokio::test]
async fn a_pooled_connection_the_upstream_closed_is_replaced_without_an_error() {
    // Answers one request per connection, promising keep-alive, then hangs up.
    let up = RawUpstream::start(|mut s| async move {
        let mut buf = Vec::new();
        if read_until_head(&mut s, &mut buf).await.is_none() {
            return;
        }
        let _ = s
            .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok")
            .await;
        let _ = s.shutdown().await;
    })
    .await;
    let proxy = ProxyBuilder::new(up.url()).start().await;
    let client = http1_client();
    for i in 0..3 {
        let r = within(
            STEP,
            "an answer",
            send(&client, get(proxy.url(&format!("/n{i}")))),
        )
        .await
        .unwrap();
        assert_eq!(
            r.status,
            200,
            "request {i}: {:?}",
            String::from_utf8_lossy(&r.body)
        );
        assert_eq!(r.body, "ok");
        // Let the upstream's close arrive before the connection is reused.
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(up.connections() >= 3, "a fresh connection each time");
    for r in proxy.exactly_records(3).await {
        assert_eq!(r["outcome"], "ok", "{r:#}");
    }
}

#[tokio::test]
async fn a_client_that_leaves_while_the_upstream_thinks_is_recorded_when_it_leaves() {
    let up = RawUpstream::start(|mut s| async move {
        let mut buf = Vec::new();
        if read_until_head(&mut s, &mut buf).await.is_none() {
            return;
        }
        tokio::time::sleep(Duration::from_secs(30)).await;
        let _ = s
            .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n")
            .await;
    })
    .await;
    // Under `half_close: abort`. Under `answer` (the default) its FIN may be a
    // half-close, so the answer is still sent (tests/half_close.rs).
    let proxy = ProxyBuilder::new(up.url())
        .config(|c| c.listeners[0].half_close = brownout::config::HalfClose::Abort)
        .start()
        .await;
    let mut c = TcpStream::connect(proxy.addr).await.unwrap();
    c.write_all(b"GET /slow HTTP/1.1\r\nhost: x\r\n\r\n")
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    drop(c);
    let rec = within(
        STEP,
        "the record of the client that left",
        proxy.record_for("/slow"),
    )
    .await;
    assert_eq!(rec["outcome"], "client_closed", "{rec:#}");
    assert!(
        rec["e2e_ms"].as_f64().unwrap() < 10_000.0,
        "recorded when the client left, not when the upstream answered: {rec:#}"
    );
}

#[tokio::test]
async fn a_request_a_rule_could_match_takes_the_full_path_on_the_same_connection() {
    let served = Arc::new(AtomicUsize::new(0));
    let n = served.clone();
    let up = Upstream::start(move |req| {
        let n = n.clone();
        async move {
            n.fetch_add(1, Ordering::SeqCst);
            reply(200, format!("up:{}", req.uri().path()))
        }
    })
    .await;
    let proxy = ProxyBuilder::new(up.url())
        .profile(
            r#"
version: 1
name: harm-one-path
rules:
  - name: harm
    match: {path: "/harm"}
    faults:
      - type: error
        status: 503
"#,
        )
        .start()
        .await;
    // Fast, then a request the rule matches (the pipeline answers it), then one
    // more on the same connection; pipelined.
    let raw = raw_exchange(
        proxy.addr,
        b"GET /ok1 HTTP/1.1\r\nhost: x\r\n\r\n\
GET /harm HTTP/1.1\r\nhost: x\r\n\r\n\
GET /ok2 HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n",
        "three answers",
    )
    .await;
    let text = String::from_utf8_lossy(&raw).to_ascii_lowercase();
    let statuses: Vec<&str> = text
        .match_indices("http/1.1 ")
        .map(|(i, _)| &text[i + 9..i + 12])
        .collect();
    assert_eq!(statuses, ["200", "503", "200"], "{text}");
    assert!(
        text.contains("up:/ok1") && text.contains("up:/ok2"),
        "{text}"
    );
    assert!(text.contains("x-brownout-fault: harm/error"), "{text}");
    assert_eq!(
        served.load(Ordering::SeqCst),
        2,
        "the harmed request never reached the upstream"
    );
    let harm = proxy.record_for("/harm").await;
    assert_eq!(harm["outcome"], "injected_error", "{harm:#}");
    for p in ["/ok1", "/ok2"] {
        assert_eq!(proxy.record_for(p).await["outcome"], "ok");
    }
    proxy.exactly_records(3).await;
}

/// A client that leaves once a stream's terminator reached it had the whole
/// answer, and the answer is judged as if the stream had ended: an error event
/// before the terminator is the upstream's error, on either path.
#[tokio::test]
async fn a_client_that_leaves_after_the_terminator_is_judged_alike_on_both_paths() {
    for fast_path in [true, false] {
        let up = RawUpstream::start(|mut s| async move {
            let mut buf = Vec::new();
            if read_until_head(&mut s, &mut buf).await.is_none() {
                return;
            }
            let events: [&[u8]; 3] = [
                b"data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"hi\"}}]}\n\n",
                b"data: {\"error\":{\"message\":\"overloaded\"}}\n\n",
                b"data: [DONE]\n\n",
            ];
            let _ = s
                .write_all(b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n")
                .await;
            for e in events {
                let _ = s.write_all(format!("{:x}\r\n", e.len()).as_bytes()).await;
                let _ = s.write_all(e).await;
                let _ = s.write_all(b"\r\n").await;
            }
            // The upstream's body goes on (comments) until the proxy stops reading.
            for _ in 0..100 {
                tokio::time::sleep(Duration::from_millis(50)).await;
                if s.write_all(b"4\r\n: \n\n\r\n").await.is_err() {
                    return;
                }
            }
        })
        .await;
        let proxy = ProxyBuilder::new(up.url())
            .config(move |c| c.fast_path = fast_path)
            .start()
            .await;
        let mut c = TcpStream::connect(proxy.addr).await.unwrap();
        let body = br#"{"model":"m","stream":true,"messages":[]}"#;
        let head = format!(
            "POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n",
            body.len()
        );
        c.write_all(head.as_bytes()).await.unwrap();
        c.write_all(body).await.unwrap();
        let mut got = Vec::new();
        within(STEP, "the stream's terminator", async {
            while !got.windows(6).any(|w| w == b"[DONE]") {
                let mut b = [0u8; 4096];
                match c.read(&mut b).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => got.extend_from_slice(&b[..n]),
                }
            }
        })
        .await;
        assert!(
            got.windows(6).any(|w| w == b"[DONE]"),
            "fast_path {fast_path}"
        );
        drop(c);
        let rec = within(
            STEP,
            "the record of the client that left",
            proxy.record_for("/v1/chat/completions"),
        )
        .await;
        assert_eq!(
            rec["outcome"], "upstream_error",
            "fast_path {fast_path}: {rec:#}"
        );
        proxy.shutdown().await;
    }
}

/// A raw upstream that answers every request on a connection, in order: a
/// chunked answer with an announced trailer for `/harm*`, `ok` for anything
/// else. Each request's head (as the upstream got it) goes to `heads`.
async fn keep_alive_upstream(heads: mpsc::Sender<String>) -> RawUpstream {
    RawUpstream::start(move |mut s| {
        let heads = heads.clone();
        async move {
            let mut buf = Vec::new();
            while let Some(n) = read_until_head(&mut s, &mut buf).await {
                let head = String::from_utf8_lossy(&buf[..n]).to_string();
                let lower = head.to_ascii_lowercase();
                let len = lower
                    .lines()
                    .find_map(|l| l.strip_prefix("content-length: "))
                    .and_then(|v| v.trim().parse::<usize>().ok())
                    .unwrap_or(0);
                while buf.len() < n + len {
                    let mut b = [0u8; 4096];
                    match s.read(&mut b).await {
                        Ok(0) | Err(_) => return,
                        Ok(k) => buf.extend_from_slice(&b[..k]),
                    }
                }
                buf.drain(..n + len);
                let answer: &[u8] = if lower.contains(" /harm") {
                    b"HTTP/1.1 200 OK\r\nTrailer: x-checksum\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\nx-checksum: 42\r\n\r\n"
                } else {
                    b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"
                };
                let _ = heads.send(head).await;
                if s.write_all(answer).await.is_err() {
                    return;
                }
            }
        }
    })
    .await
}

const SLOW_HARM: &str = r#"
version: 1
name: slow-harm
rules:
  - name: slow
    match: {path: "/harm*"}
    faults:
      - type: delay
        duration: 5ms
"#;

#[tokio::test]
async fn a_request_a_rule_touches_goes_through_the_pipeline_and_the_connection_stays_fast() {
    let (tx, mut heads) = mpsc::channel(8);
    let up = keep_alive_upstream(tx).await;
    let proxy = ProxyBuilder::new(up.url()).profile(SLOW_HARM).start().await;
    // Pipelined: one the rule touches, then one it does not, on one connection.
    let raw = raw_exchange(
        proxy.addr,
        b"GET /harm HTTP/1.1\r\nhost: x\r\nTE: trailers\r\nX-Mixed-Case: a\r\n\r\n\
GET /ok HTTP/1.1\r\nhost: x\r\nX-Mixed-Case: b\r\nconnection: close\r\n\r\n",
        "two answers",
    )
    .await;
    let text = String::from_utf8_lossy(&raw).to_string();
    let lower = text.to_ascii_lowercase();
    assert_eq!(lower.matches("http/1.1 200 ok\r\n").count(), 2, "{text}");
    // The pipeline's answer: framed chunked again, the announced trailer kept.
    assert!(lower.contains("transfer-encoding: chunked\r\n"), "{text}");
    assert!(
        text.contains("5\r\nhello\r\n0\r\nx-checksum: 42\r\n\r\n"),
        "{text}"
    );
    assert!(lower.contains("\r\ndate: "), "{text}");
    assert!(text.ends_with("\r\n\r\nok"), "{text}");

    // The upstream got the harmed request typed (names lowercased) and the next
    // one as the client wrote it: the fast path served it, on the same connection.
    let first = within(STEP, "the first head", heads.recv()).await.unwrap();
    let second = within(STEP, "the second head", heads.recv()).await.unwrap();
    assert!(first.starts_with("GET /harm HTTP/1.1\r\n"), "{first}");
    assert!(first.contains("\r\nx-mixed-case: a\r\n"), "{first}");
    assert!(first.contains("\r\nte: trailers\r\n"), "{first}");
    assert!(second.contains("\r\nX-Mixed-Case: b\r\n"), "{second}");
    assert_eq!(
        up.connections(),
        1,
        "one upstream connection serves both paths"
    );

    let harm = proxy.record_for("/harm").await;
    assert_eq!(harm["outcome"], "ok", "{harm:#}");
    assert_eq!(harm["bytes_out"], 5, "{harm:#}");
    assert!(
        harm["faults"].to_string().contains("delay"),
        "the rule's fault is recorded: {harm:#}"
    );
    assert_eq!(proxy.record_for("/ok").await["outcome"], "ok");
    proxy.exactly_records(2).await;
}

#[tokio::test]
async fn an_upload_not_yet_whole_goes_to_hyper_with_the_bytes_read() {
    let (tx, mut heads) = mpsc::channel(8);
    let up = keep_alive_upstream(tx).await;
    let proxy = ProxyBuilder::new(up.url()).profile(SLOW_HARM).start().await;
    let mut c = TcpStream::connect(proxy.addr).await.unwrap();
    c.write_all(
        b"POST /harm HTTP/1.1\r\nhost: x\r\ncontent-length: 5\r\nX-Mixed-Case: a\r\n\r\nhe",
    )
    .await
    .unwrap();
    tokio::time::sleep(Duration::from_millis(50)).await;
    c.write_all(b"llo").await.unwrap();
    c.write_all(b"GET /ok HTTP/1.1\r\nhost: x\r\nX-Mixed-Case: b\r\nconnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut raw = Vec::new();
    within(STEP, "two answers", c.read_to_end(&mut raw))
        .await
        .unwrap();
    let text = String::from_utf8_lossy(&raw).to_string();
    assert_eq!(text.matches("HTTP/1.1 200 OK\r\n").count(), 2, "{text}");
    assert!(text.ends_with("\r\n\r\nok"), "{text}");
    let first = within(STEP, "the first head", heads.recv()).await.unwrap();
    let second = within(STEP, "the second head", heads.recv()).await.unwrap();
    // hyper serves the rest of the connection: both heads typed.
    assert!(first.contains("\r\nx-mixed-case: a\r\n"), "{first}");
    assert!(second.contains("\r\nx-mixed-case: b\r\n"), "{second}");
    let harm = proxy.record_for("/harm").await;
    assert_eq!(harm["outcome"], "ok", "{harm:#}");
    assert_eq!(harm["bytes_in"], 5, "{harm:#}");
    proxy.exactly_records(2).await;
}

#[tokio::test]
async fn a_head_request_the_upstream_cannot_answer_gets_a_head_alone() {
    // Nothing listens there: each request gets brownout's own 502.
    let port = free_port();
    let proxy = ProxyBuilder::new(format!("http://127.0.0.1:{port}"))
        .start()
        .await;
    let raw = raw_exchange(
        proxy.addr,
        b"HEAD /a HTTP/1.1\r\nhost: x\r\n\r\nGET /b HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n",
        "two answers",
    )
    .await;
    let text = String::from_utf8_lossy(&raw).to_string();
    let second = text.find("\r\n\r\nHTTP/1.1 502").map(|i| i + 4);
    let Some(second) = second else {
        panic!("the HEAD answer is a head alone, then the GET's answer: {text}");
    };
    let (head, get) = text.split_at(second);
    assert!(head.starts_with("HTTP/1.1 502 Bad Gateway\r\n"), "{text}");
    assert!(
        !head.contains("content-length: 0\r\n"),
        "the GET's length: {head}"
    );
    assert!(get.contains("upstream_unreachable"), "{get}");
    proxy.exactly_records(2).await;
}
