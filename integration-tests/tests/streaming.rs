//! Stream, never buffer (docs/architecture.md): each chunk reaches the other side before the
//! next one exists. The upstream (or the client) sends chunk 1 and then waits until
//! the test has seen chunk 1 arrive on the far side before it sends chunk 2; a
//! buffering proxy would deadlock here, which the timeouts turn into a failure.

use std::time::Duration;

use brownout_integration_tests::*;
use http::{Request, Version};
use tokio::sync::mpsc;

const STEP: Duration = Duration::from_secs(5);

/// An upstream whose response body is driven by the test: each request hands the
/// test a [`BodyTx`] through `bodies`.
async fn driven_upstream() -> (Upstream, mpsc::Receiver<BodyTx>) {
    let (tx, rx) = mpsc::channel::<BodyTx>(4);
    let up = Upstream::start(move |_req| {
        let tx = tx.clone();
        async move {
            let (btx, body) = body_channel();
            tx.send(btx).await.expect("test gone");
            http::Response::builder()
                .header("content-type", "text/event-stream")
                .body(body)
                .unwrap()
        }
    })
    .await;
    (up, rx)
}

async fn response_streams(version: Version) {
    let (up, mut bodies) = driven_upstream().await;
    let proxy = ProxyBuilder::new(up.url()).start().await;
    let client = if version == Version::HTTP_2 {
        h2c_client()
    } else {
        http1_client()
    };
    let resp = within(
        STEP,
        "response headers",
        client.request(get(proxy.url("/stream"))),
    )
    .await
    .expect("headers");
    assert_eq!(resp.version(), version);
    let mut body = resp.into_body();
    let tx = within(STEP, "upstream called", bodies.recv())
        .await
        .expect("upstream called");
    for i in 0..5 {
        let chunk = format!("data: chunk {i}\n\n");
        tx.send(chunk.clone()).await;
        // The upstream sends nothing more until the client has this chunk.
        let got = within(
            STEP,
            &format!("chunk {i} reaches the client"),
            next_chunk(&mut body),
        )
        .await
        .expect("a chunk")
        .expect("no error");
        assert_eq!(got, chunk.as_bytes(), "chunk {i} arrived whole and alone");
    }
    drop(tx);
    assert!(
        within(STEP, "end of stream", next_chunk(&mut body))
            .await
            .is_none(),
        "clean end"
    );
    let rec = proxy.wait_records(1).await;
    assert_eq!(rec[0]["outcome"], "ok");
    assert_eq!(rec[0]["bytes_out"], 5 * "data: chunk 0\n\n".len());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn response_body_streams_chunk_by_chunk_http1() {
    response_streams(Version::HTTP_11).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn response_body_streams_chunk_by_chunk_h2c() {
    response_streams(Version::HTTP_2).await;
}

/// The upstream reports each request-body chunk to the test as it arrives.
async fn request_streams(version: Version, with_profile: bool) {
    let (seen_tx, mut seen_rx) = mpsc::channel::<bytes::Bytes>(8);
    let up = Upstream::start(move |req| {
        let seen_tx = seen_tx.clone();
        async move {
            let mut body = req.into_body();
            let mut total = 0;
            while let Some(chunk) = next_chunk(&mut body).await {
                let chunk = chunk.expect("request body chunk");
                total += chunk.len();
                seen_tx.send(chunk).await.expect("test gone");
            }
            reply(200, format!("got {total}"))
        }
    })
    .await;
    let mut b = ProxyBuilder::new(up.url());
    if with_profile {
        // A rule that looks at bodies: the proxy reads a prefix (up to inspect_limit)
        // for matching. A body that does not end within it must still stream.
        b = b
            .profile(
                r#"
version: 1
name: body-rule
rules:
  - name: gpt-only
    match: {model: "gpt-*"}
    faults: [{type: delay, duration: 1ms}]
"#,
            )
            .api(ApiKind::Openai)
            .limits(|l| l.inspect_limit = brownout::config::ByteSize(16));
    }
    let proxy = b.start().await;
    let client = if version == Version::HTTP_2 {
        h2c_client()
    } else {
        http1_client()
    };
    let (tx, body) = body_channel();
    let req = Request::post(proxy.url("/v1/chat/completions"))
        .body(body)
        .unwrap();
    let pending = tokio::spawn(async move { send(&client, req).await });
    let mut sent = 0;
    for i in 0..4 {
        let chunk = format!("{{\"part\":{i},\"pad\":\"xxxxxxxxxxxxxxxxxxxx\"}}");
        sent += chunk.len();
        tx.send(chunk.clone()).await;
        let got = within(
            STEP,
            &format!("request chunk {i} reaches the upstream"),
            seen_rx.recv(),
        )
        .await
        .expect("a chunk");
        assert_eq!(got, chunk.as_bytes(), "chunk {i} arrived whole and alone");
    }
    drop(tx);
    let r = within(STEP, "response", pending)
        .await
        .unwrap()
        .expect("reply");
    assert_eq!(r.status, 200);
    assert_eq!(r.body, format!("got {sent}"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_body_streams_chunk_by_chunk_http1() {
    request_streams(Version::HTTP_11, false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_body_streams_chunk_by_chunk_h2c() {
    request_streams(Version::HTTP_2, false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_body_over_inspect_limit_still_streams() {
    request_streams(Version::HTTP_11, true).await;
}

/// `"created":<unix seconds>` is the only wall-clock field in the simulator's output.
fn normalize_created(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(i) = rest.find("\"created\":") {
        let (head, tail) = rest.split_at(i + "\"created\":".len());
        out.push_str(head);
        out.push('0');
        rest = tail.trim_start_matches(|c: char| c.is_ascii_digit());
    }
    out.push_str(rest);
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sse_from_the_simulator_is_byte_identical() {
    // Two identical simulators: answers are a pure function of (model, prompt,
    // ordinal), so the first request to each gives the same bytes.
    let cfg = brownout_sim::SimConfig {
        ttft: Duration::from_millis(5),
        itl: Duration::from_millis(2),
        ..Default::default()
    };
    let direct = brownout_sim::spawn("127.0.0.1:0".parse().unwrap(), cfg.clone())
        .await
        .unwrap();
    let behind = brownout_sim::spawn("127.0.0.1:0".parse().unwrap(), cfg)
        .await
        .unwrap();
    let proxy = ProxyBuilder::new(behind.url())
        .api(ApiKind::Openai)
        .start()
        .await;
    let body = serde_json::json!({
        "model": "gpt-4o-mini",
        "stream": true,
        "max_tokens": 40,
        "messages": [{"role": "user", "content": "Say something about brownouts."}]
    });
    for client in [http1_client(), h2c_client()] {
        let a = send(
            &client,
            post_json(format!("{}/v1/chat/completions", direct.url()), &body),
        )
        .await
        .unwrap();
        let b = send(&client, post_json(proxy.url("/v1/chat/completions"), &body))
            .await
            .unwrap();
        assert_eq!(a.status, 200);
        assert_eq!(b.status, 200);
        assert_eq!(a.header("content-type"), b.header("content-type"));
        let (a, b) = (
            String::from_utf8(a.body.to_vec()).unwrap(),
            String::from_utf8(b.body.to_vec()).unwrap(),
        );
        assert!(a.contains("data: [DONE]"), "a complete stream: {a}");
        assert_eq!(
            normalize_created(&a),
            normalize_created(&b),
            "SSE bytes differ through the proxy"
        );
    }
    let recs = proxy.exactly_records(2).await;
    for r in recs {
        assert_eq!(r["outcome"], "ok");
        assert_eq!(r["endpoint"], "chat");
    }
}
