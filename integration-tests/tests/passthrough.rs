//! With no faults the proxy is transparent (docs/architecture.md; it only ever adds
//! harm a profile asked for): same status, same end-to-end headers (multi-valued ones included), same
//! body bytes, hop-by-hop headers handled per RFC 9110 in both directions, the
//! upstream's own `Host`, query strings intact, and large bodies byte-identical over
//! HTTP/1.1 and h2c.

use brownout_integration_tests::*;
use bytes::Bytes;
use http::{Request, Version};

/// An upstream that records the request and answers with fixed end-to-end and
/// hop-by-hop headers and the request body echoed back.
async fn header_upstream() -> (Upstream, Captures) {
    let caps = Captures::default();
    let c = caps.clone();
    let up = Upstream::start(move |req| {
        let c = c.clone();
        async move {
            let cap = Captured::read(req).await;
            let body = cap.body.clone();
            c.record(cap);
            http::Response::builder()
                .status(201)
                .header("x-single", "one")
                .header("x-multi", "a")
                .header("x-multi", "b")
                .header("set-cookie", "k1=v1; Path=/")
                .header("set-cookie", "k2=v2; Path=/")
                .header("content-type", "application/octet-stream")
                // Hop-by-hop: none of these may reach the client.
                .header("connection", "x-resp-hop")
                .header("x-resp-hop", "secret")
                .header("keep-alive", "timeout=5")
                .header("proxy-authenticate", "Basic")
                .header("upgrade", "h2c")
                .body(full(body))
                .unwrap()
        }
    })
    .await;
    (up, caps)
}

fn assert_response_headers(r: &Reply) {
    assert_eq!(r.status, 201);
    assert_eq!(r.header("x-single"), Some("one"));
    let multi: Vec<_> = r
        .headers
        .get_all("x-multi")
        .iter()
        .map(|v| v.to_str().unwrap())
        .collect();
    assert_eq!(
        multi,
        ["a", "b"],
        "multi-valued header order and values kept"
    );
    let cookies: Vec<_> = r
        .headers
        .get_all("set-cookie")
        .iter()
        .map(|v| v.to_str().unwrap())
        .collect();
    assert_eq!(cookies, ["k1=v1; Path=/", "k2=v2; Path=/"]);
    assert_eq!(r.header("content-type"), Some("application/octet-stream"));
    assert_eq!(r.header("x-upstream"), None);
    for hop in ["x-resp-hop", "keep-alive", "proxy-authenticate", "upgrade"] {
        assert!(
            r.headers.get(hop).is_none(),
            "hop-by-hop response header `{hop}` reached the client: {:?}",
            r.headers
        );
    }
    if let Some(c) = r.header("connection") {
        assert!(
            !c.contains("x-resp-hop"),
            "the upstream's Connection header was forwarded: {c}"
        );
    }
    assert!(r.headers.get("x-brownout-fault").is_none());
    assert!(r.headers.get("x-brownout-error").is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http1_pass_through_is_transparent() {
    let (up, caps) = header_upstream().await;
    let proxy = ProxyBuilder::new(up.url()).start().await;
    let (mut conn, _task) = h1_conn(proxy.addr).await;
    let req = Request::post("/v1/things/42?b=2&a=1&a=3&empty=&enc=%2F%20x")
        .header("host", "evil.example:1234")
        .header("x-req", "r1")
        .header("x-req-multi", "m1")
        .header("x-req-multi", "m2")
        .header("accept-encoding", "gzip")
        .header("authorization", "Bearer sk-test")
        // Hop-by-hop: stripped before the upstream.
        .header("connection", "keep-alive, x-hop-req")
        .header("x-hop-req", "secret")
        .header("keep-alive", "timeout=5")
        .header("te", "trailers, deflate")
        .header("upgrade", "foo/2")
        .header("proxy-authorization", "Basic c2VjcmV0")
        .body(full("hello upstream"))
        .unwrap();
    let resp = conn.send_request(req).await.expect("response");
    assert_eq!(resp.version(), Version::HTTP_11);
    let r = read_reply(resp).await.expect("body");
    assert_response_headers(&r);
    assert_eq!(r.body, "hello upstream");

    let seen = caps.last();
    assert_eq!(seen.method, "POST");
    assert_eq!(
        seen.uri.path_and_query().unwrap().as_str(),
        "/v1/things/42?b=2&a=1&a=3&empty=&enc=%2F%20x"
    );
    assert_eq!(
        seen.header_all("host"),
        [up.addr.to_string()],
        "upstream must see its own authority as Host"
    );
    assert_eq!(seen.header_all("x-req"), ["r1"]);
    assert_eq!(seen.header_all("x-req-multi"), ["m1", "m2"]);
    assert_eq!(seen.header_all("accept-encoding"), ["gzip"]);
    assert_eq!(
        seen.header_all("authorization"),
        ["Bearer sk-test"],
        "end-to-end credentials pass through"
    );
    for hop in ["x-hop-req", "keep-alive", "upgrade", "proxy-authorization"] {
        assert!(
            seen.headers.get(hop).is_none(),
            "hop-by-hop request header `{hop}` reached the upstream"
        );
    }
    assert_eq!(
        seen.header_all("te"),
        ["trailers"],
        "te keeps only `trailers`"
    );
    if let Some(c) = seen.headers.get("connection") {
        assert!(!c.to_str().unwrap().contains("x-hop-req"));
    }
    assert_eq!(seen.body, "hello upstream");

    // The same connection stays usable.
    conn.ready().await.expect("the connection is reusable");
    let req = Request::get("/again")
        .header("host", "whatever")
        .body(empty())
        .unwrap();
    let r = read_reply(conn.send_request(req).await.expect("second response"))
        .await
        .unwrap();
    assert_eq!(r.status, 201);
    assert_eq!(up.connections(), 1, "one upstream connection, reused");
}

/// The same answer through the fast path (a plain request: nothing hands it to the
/// full path): the headers the upstream's `Connection` names stay behind there too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_fast_path_drops_the_headers_the_upstreams_connection_names() {
    let (up, _caps) = header_upstream().await;
    let proxy = ProxyBuilder::new(up.url()).start().await;
    let (mut conn, _task) = h1_conn(proxy.addr).await;
    let req = Request::get("/v1/plain")
        .header("host", "example")
        .body(empty())
        .unwrap();
    let r = read_reply(conn.send_request(req).await.expect("response"))
        .await
        .expect("body");
    assert_response_headers(&r);
    let rec = proxy.record_for("/v1/plain").await;
    assert_eq!(rec["outcome"], "ok", "{rec:#}");
}

/// `te` on both paths: only `trailers` of it goes on (the fast path takes this
/// plain request; `fast_path: false` sends it through the full path).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn both_paths_pass_te_trailers_alone() {
    for fast_path in [true, false] {
        let (up, caps) = header_upstream().await;
        let proxy = ProxyBuilder::new(up.url())
            .config(move |c| c.fast_path = fast_path)
            .start()
            .await;
        let (mut conn, _task) = h1_conn(proxy.addr).await;
        for (te, want) in [
            ("trailers, deflate", &["trailers"][..]),
            ("deflate", &[][..]),
            ("gzip;q=0.5, TRAILERS", &["trailers"][..]),
        ] {
            let req = Request::get("/v1/te")
                .header("host", "example")
                .header("te", te)
                .body(empty())
                .unwrap();
            read_reply(conn.send_request(req).await.expect("response"))
                .await
                .expect("body");
            conn.ready().await.expect("reusable");
            assert_eq!(
                caps.last().header_all("te"),
                want,
                "te: {te} (fast_path {fast_path})"
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn h2c_pass_through_is_transparent() {
    let (up, caps) = header_upstream().await;
    let proxy = ProxyBuilder::new(up.url()).start().await;
    let (mut conn, _task) = h2_conn(proxy.addr).await;
    let req = Request::post("http://evil.example/v1/x?q=1&q=2")
        .header("x-req-multi", "m1")
        .header("x-req-multi", "m2")
        .header("te", "trailers")
        .body(full("over h2"))
        .unwrap();
    let resp = conn.send_request(req).await.expect("response");
    assert_eq!(resp.version(), Version::HTTP_2);
    let r = read_reply(resp).await.expect("body");
    assert_response_headers(&r);
    assert_eq!(r.body, "over h2");

    let seen = caps.last();
    assert_eq!(seen.uri.path_and_query().unwrap().as_str(), "/v1/x?q=1&q=2");
    assert_eq!(
        seen.header_all("host"),
        [up.addr.to_string()],
        ":authority never selects or reaches the upstream"
    );
    assert_eq!(seen.header_all("x-req-multi"), ["m1", "m2"]);
    assert_eq!(seen.body, "over h2");
}

fn pattern(n: usize, salt: u8) -> Bytes {
    // Not compressible into a repeating period that could hide an offset error.
    let mut v = Vec::with_capacity(n);
    let mut x: u32 = 0x9e37_79b9 ^ u32::from(salt);
    for _ in 0..n {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        v.push((x >> 24) as u8);
    }
    Bytes::from(v)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_bodies_are_byte_identical_http1() {
    large_bodies(http1_client(), Version::HTTP_11, 1).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_bodies_are_byte_identical_h2c() {
    large_bodies(h2c_client(), Version::HTTP_2, 2).await;
}

async fn large_bodies(
    client: hyper_util::client::legacy::Client<
        hyper_util::client::legacy::connect::HttpConnector,
        Body,
    >,
    version: Version,
    salt: u8,
) {
    let (up, caps) = Upstream::echo().await;
    let proxy = ProxyBuilder::new(up.url()).start().await;
    let payload = pattern(8 << 20, salt);
    // Streamed in uneven chunks so framing differs from the upstream's.
    let (tx, body) = body_channel();
    let p = payload.clone();
    tokio::spawn(async move {
        let mut off = 0;
        let mut step = 1000;
        while off < p.len() {
            let end = (off + step).min(p.len());
            if !tx.try_send(p.slice(off..end)).await {
                return;
            }
            off = end;
            step = step * 3 % 300_000 + 17;
        }
    });
    let req = Request::put(proxy.url("/blob?size=8MiB"))
        .body(body)
        .unwrap();
    let r = within(
        std::time::Duration::from_secs(30),
        "8 MiB round trip",
        send(&client, req),
    )
    .await
    .expect("reply");
    assert_eq!(r.version, version);
    assert_eq!(r.status, 200);
    assert_eq!(
        caps.last().body.len(),
        payload.len(),
        "request body length at the upstream"
    );
    assert!(
        caps.last().body == payload,
        "request body bytes changed on the way up"
    );
    assert_eq!(
        r.body.len(),
        payload.len(),
        "response body length at the client"
    );
    assert!(
        r.body == payload,
        "response body bytes changed on the way down"
    );
    assert_eq!(caps.last().uri.query(), Some("size=8MiB"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fixed_length_response_keeps_content_length_and_head_works() {
    let up = Upstream::start(|req| async move {
        let body = if req.method() == http::Method::HEAD {
            ""
        } else {
            "0123456789"
        };
        http::Response::builder()
            .header("content-length", "10")
            .header("etag", "\"abc\"")
            .body(full(body))
            .unwrap()
    })
    .await;
    let proxy = ProxyBuilder::new(up.url()).start().await;
    let c = http1_client();
    let r = send(&c, get(proxy.url("/f"))).await.unwrap();
    assert_eq!(r.header("content-length"), Some("10"));
    assert_eq!(r.header("etag"), Some("\"abc\""));
    assert_eq!(r.body, "0123456789");
    let r = send(&c, Request::head(proxy.url("/f")).body(empty()).unwrap())
        .await
        .unwrap();
    assert_eq!(r.status, 200);
    assert_eq!(r.header("content-length"), Some("10"));
    assert!(r.body.is_empty());
    // 204 and 304 pass through with no body.
    let up2 = Upstream::start(|req| async move {
        let st = if req.uri().path() == "/nc" { 204 } else { 304 };
        reply(st, "")
    })
    .await;
    let proxy2 = ProxyBuilder::new(up2.url()).start().await;
    assert_eq!(send(&c, get(proxy2.url("/nc"))).await.unwrap().status, 204);
    assert_eq!(send(&c, get(proxy2.url("/nm"))).await.unwrap().status, 304);
    let recs = proxy2.exactly_records(2).await;
    assert!(recs.iter().all(|r| r["outcome"] == "ok"), "{recs:#?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_base_path_is_prefixed_and_control_headers_are_not_forwarded() {
    let (up, caps) = Upstream::echo().await;
    let proxy = ProxyBuilder::new(format!("{}/base/", up.url()))
        .start()
        .await;
    let req = Request::get(proxy.url("/v1/models?limit=2"))
        .header("x-brownout-seq", "7")
        .body(empty())
        .unwrap();
    let r = send(&http1_client(), req).await.unwrap();
    assert_eq!(r.status, 200);
    let seen = caps.last();
    assert_eq!(
        seen.uri.path_and_query().unwrap().as_str(),
        "/base/v1/models?limit=2"
    );
    assert!(
        seen.headers.get("x-brownout-seq").is_none(),
        "brownout's own control header reached the upstream"
    );
}

/// CRC-32 (IEEE), for hand-made gzip members.
fn crc32(data: &[u8]) -> u32 {
    let mut crc = !0u32;
    for b in data {
        crc ^= u32::from(*b);
        for _ in 0..8 {
            crc = if crc & 1 != 0 {
                (crc >> 1) ^ 0xedb8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

/// A valid gzip member holding `data` in one stored (uncompressed) deflate block.
fn gzip_stored(data: &[u8]) -> Vec<u8> {
    assert!(data.len() < 65_536);
    let mut v = vec![0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 0xff];
    let len = data.len() as u16;
    v.push(1); // BFINAL, stored
    v.extend_from_slice(&len.to_le_bytes());
    v.extend_from_slice(&(!len).to_le_bytes());
    v.extend_from_slice(data);
    v.extend_from_slice(&crc32(data).to_le_bytes());
    v.extend_from_slice(&(data.len() as u32).to_le_bytes());
    v
}

/// docs/architecture.md, "The full path": measurement decodes a copy on a side tap; the client
/// gets the upstream's compressed bytes and headers untouched, valid or not.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compressed_streams_pass_through_untouched() {
    let events = concat!(
        "data: {\"id\":\"c1\",\"object\":\"chat.completion.chunk\",\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\"}}]}\n\n",
        "data: {\"id\":\"c1\",\"object\":\"chat.completion.chunk\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"Hel\"}}]}\n\n",
        "data: {\"id\":\"c1\",\"object\":\"chat.completion.chunk\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"lo\"}}]}\n\n",
        "data: {\"id\":\"c1\",\"object\":\"chat.completion.chunk\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"!\"}}]}\n\n",
        "data: {\"id\":\"c1\",\"object\":\"chat.completion.chunk\",\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":\"stop\"}]}\n\n",
        "data: [DONE]\n\n",
    );
    let gz = Bytes::from(gzip_stored(events.as_bytes()));
    let garbage = Bytes::from_static(b"\x1f\x8bthis is not really gzip at all");
    let (g1, g2) = (gz.clone(), garbage.clone());
    let up = Upstream::start(move |req| {
        let body = if req.uri().query() == Some("bad") {
            g2.clone()
        } else {
            g1.clone()
        };
        async move {
            // Sent in pieces, as a streaming server would.
            let (tx, b) = body_channel();
            tokio::spawn(async move {
                for piece in body.chunks(17) {
                    tx.send(Bytes::copy_from_slice(piece)).await;
                }
            });
            http::Response::builder()
                .header("content-type", "text/event-stream")
                .header("content-encoding", "gzip")
                .body(b)
                .unwrap()
        }
    })
    .await;
    let proxy = ProxyBuilder::new(up.url())
        .api(ApiKind::Openai)
        .start()
        .await;
    let body = serde_json::json!({"model": "gpt-4o-mini", "stream": true, "messages": []});
    for (q, want) in [("", &gz), ("?bad", &garbage)] {
        for client in [http1_client(), h2c_client()] {
            let req = Request::post(proxy.url(&format!("/v1/chat/completions{q}")))
                .header("accept-encoding", "gzip")
                .header("content-type", "application/json")
                .body(full(body.to_string()))
                .unwrap();
            let r = send(&client, req).await.expect("reply");
            assert_eq!(r.status, 200);
            assert_eq!(r.header("content-encoding"), Some("gzip"));
            assert!(r.body == *want, "compressed bytes changed on the way ({q})");
        }
    }
    let recs = proxy.exactly_records(4).await;
    for r in &recs {
        assert_eq!(r["outcome"], "ok", "{r:#}");
    }
    let good: Vec<_> = recs.iter().filter(|r| r["bytes_out"] == gz.len()).collect();
    assert_eq!(good.len(), 2);
    for r in good {
        assert_eq!(
            r["output_tokens"], 3,
            "content events counted through the gzip tap: {r:#}"
        );
        assert!(r["ttft_ms"].is_number(), "{r:#}");
    }
}
