//! brownout in front of servers and clients nobody here wrote: a uvicorn app with a
//! 1 s keep-alive, llama-cpp-python's OpenAI server serving a real GGUF model
//! (Gemma 3 270M, shipped on PyPI), the official OpenAI SDK, and LiteLLM's Router.
//!
//! The servers and clients come from the cached Python environments of
//! `integration-tests/python/venv.sh` (`sdk`, `llama`), pinned by the requirements
//! files beside it; `.ci/run` builds them before the tests (building
//! llama-cpp-python compiles llama.cpp once per cache). Timing bounds are generous:
//! the machine running CI is shared.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use brownout_integration_tests::*;
use rand::{Rng, SeedableRng};
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// uvicorn serving `keepalive_app.py` with `--timeout-keep-alive 1`.
async fn uvicorn_1s() -> ChildServer {
    let py = tokio::task::spawn_blocking(sdk_python).await.unwrap();
    let port = free_port();
    let port_s = port.to_string();
    ChildServer::start(
        "uvicorn",
        &py,
        &[
            "-m",
            "uvicorn",
            "keepalive_app:app",
            "--app-dir",
            "integration-tests/python",
            "--host",
            "127.0.0.1",
            "--port",
            &port_s,
            "--timeout-keep-alive",
            "1",
            "--log-level",
            "warning",
        ],
        port,
        "/health",
        Duration::from_secs(60),
    )
    .await
}

/// Zero 502s in 500 requests at gaps straddling uvicorn's 1 s keep-alive, on each
/// data path, and no request executed twice (the app counts what it executes).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn uvicorn_closing_idle_connections_never_turns_into_a_502() {
    let server = uvicorn_1s().await;
    const CLIENTS: usize = 10;
    const EACH: usize = 50;
    let mut runs = Vec::new();
    let mut proxies = Vec::new();
    for fast_path in [true, false] {
        let p = Arc::new(
            ProxyBuilder::new(server.url())
                .config(move |c| c.fast_path = fast_path)
                .start()
                .await,
        );
        for client_no in 0..CLIENTS {
            let p = p.clone();
            runs.push(tokio::spawn(async move {
                // Each client keeps its own connection to brownout, as an SDK does.
                let client = http1_client();
                let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(client_no as u64);
                let mut failures = Vec::new();
                for i in 0..EACH {
                    let gap = rng.random_range(950..=1100);
                    tokio::time::sleep(Duration::from_millis(gap)).await;
                    let id = format!("{fast_path}-{client_no}-{i}");
                    let mut req = if i % 2 == 0 {
                        post_json(
                            p.url("/v1/chat/completions"),
                            &serde_json::json!({"model": "m", "messages": [{"role": "user", "content": id}]}),
                        )
                    } else {
                        get(p.url("/v1/models"))
                    };
                    req.headers_mut().insert("x-id", id.parse().unwrap());
                    match send(&client, req).await {
                        Ok(r) if r.status == 200 => {
                            let v = r.json();
                            assert_eq!(v["id"], id.as_str(), "the answer to another request");
                            assert_eq!(v["executions"], 1, "{id} executed twice");
                        }
                        Ok(r) => failures.push(format!("{id}: {} {:?}", r.status, r.body)),
                        Err(e) => failures.push(format!("{id}: {e}")),
                    }
                }
                (fast_path, failures)
            }));
        }
        proxies.push(p);
    }
    let mut failed = Vec::new();
    for r in runs {
        let (fast_path, f) = r.await.expect("a client task");
        failed.extend(f.into_iter().map(|f| format!("fast path {fast_path}: {f}")));
    }
    assert!(failed.is_empty(), "{} failures: {failed:#?}", failed.len());
    for p in &proxies {
        let recs = p.wait_records(CLIENTS * EACH).await;
        assert_eq!(recs.len(), CLIENTS * EACH);
        let bad: Vec<_> = recs.iter().filter(|r| r["outcome"] != "ok").collect();
        assert!(bad.is_empty(), "records not ok: {bad:#?}");
    }
    // The app's own count: every request executed exactly once.
    let r = send(&http1_client(), get(format!("{}/executed", server.url())))
        .await
        .unwrap();
    let executed = r.json();
    let counts = executed.as_object().unwrap();
    assert_eq!(
        counts.len(),
        2 * CLIENTS * EACH,
        "every request reached the app"
    );
    assert!(
        counts.values().all(|n| n == 1),
        "executed twice: {executed}"
    );
}

// ---------------------------------------------------------------------------
// llama-cpp-python's server, a real model
// ---------------------------------------------------------------------------

/// The model name the SDK sends (llama-cpp-python serves whatever it is asked).
const LLAMA_MODEL: &str = "gemma-3-270m-it";

/// What the server sent on one connection.
type Seen = Arc<Mutex<Vec<u8>>>;

/// A TCP relay in front of `target` that keeps every byte the server sent on each
/// connection, so a test can compare what the server sent with what the client got.
struct Capture {
    addr: std::net::SocketAddr,
    conns: Arc<Mutex<Vec<Seen>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Capture {
    async fn start(target: u16) -> Capture {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        let conns: Arc<Mutex<Vec<Seen>>> = Arc::default();
        let c2 = conns.clone();
        let task = tokio::spawn(async move {
            while let Ok((client, _)) = l.accept().await {
                let Ok(server) = TcpStream::connect(("127.0.0.1", target)).await else {
                    continue;
                };
                let seen = Arc::new(Mutex::new(Vec::new()));
                c2.lock().unwrap().push(seen.clone());
                let (mut cr, mut cw) = client.into_split();
                let (mut sr, mut sw) = server.into_split();
                tokio::spawn(async move {
                    let _ = tokio::io::copy(&mut cr, &mut sw).await;
                    let _ = sw.shutdown().await;
                });
                tokio::spawn(async move {
                    let mut b = vec![0u8; 16384];
                    loop {
                        match sr.read(&mut b).await {
                            Ok(0) | Err(_) => break,
                            Ok(n) => {
                                seen.lock().unwrap().extend_from_slice(&b[..n]);
                                if cw.write_all(&b[..n]).await.is_err() {
                                    break;
                                }
                            }
                        }
                    }
                    let _ = cw.shutdown().await;
                });
            }
        });
        Capture { addr, conns, task }
    }

    fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The one response the server sent on connection `i`: its header lines
    /// (lower-cased names, hop-by-hop ones left out) and its body, de-chunked.
    fn response(&self, i: usize) -> (Vec<(String, String)>, Vec<u8>) {
        let raw = self.conns.lock().unwrap()[i].lock().unwrap().clone();
        let end = raw
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .expect("a response head")
            + 4;
        let head = String::from_utf8_lossy(&raw[..end]).into_owned();
        let headers = end_to_end(head.lines().skip(1).filter_map(|l| {
            let (k, v) = l.split_once(':')?;
            Some((k.trim().to_ascii_lowercase(), v.trim().to_string()))
        }));
        let chunked = headers.is_empty()
            || head
                .to_ascii_lowercase()
                .contains("transfer-encoding: chunked");
        let body = if chunked {
            dechunk(&raw[end..])
        } else {
            raw[end..].to_vec()
        };
        (headers, body)
    }
}

impl Drop for Capture {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Header lines without the hop-by-hop ones (RFC 9110 §7.6.1), sorted.
fn end_to_end(h: impl Iterator<Item = (String, String)>) -> Vec<(String, String)> {
    let hop = [
        "connection",
        "keep-alive",
        "transfer-encoding",
        "te",
        "trailer",
        "upgrade",
        "proxy-connection",
    ];
    let mut v: Vec<_> = h.filter(|(k, _)| !hop.contains(&k.as_str())).collect();
    v.sort();
    v
}

fn dechunk(mut b: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let Some(i) = b.windows(2).position(|w| w == b"\r\n") else {
            return out;
        };
        let size = std::str::from_utf8(&b[..i])
            .ok()
            .and_then(|s| usize::from_str_radix(s.split(';').next().unwrap_or("").trim(), 16).ok())
            .unwrap_or(0);
        if size == 0 {
            return out;
        }
        out.extend_from_slice(&b[i + 2..i + 2 + size]);
        b = &b[i + 2 + size + 2..];
    }
}

/// With faults off, what llama-cpp-python sends is what the client gets: the same
/// end-to-end headers and the same body bytes, streamed or not, on both paths.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_real_model_server_passes_byte_for_byte() {
    let llama = start_llama_server().await;
    let capture = Capture::start(llama.port).await;
    let mut n = 0;
    for fast_path in [true, false] {
        // A new upstream connection per request, so each is captured alone.
        let p = ProxyBuilder::new(capture.url())
            .config(move |c| {
                c.fast_path = fast_path;
                c.pool.idle_timeout = brownout_faults::duration::DurationStr(Duration::ZERO);
            })
            .start()
            .await;
        let client = http1_client();
        for stream in [false, true] {
            let body = serde_json::json!({
                "model": LLAMA_MODEL, "max_tokens": 24, "temperature": 0, "stream": stream,
                "messages": [{"role": "user", "content": "Write three short sentences about the sea."}],
            });
            let r = send(&client, post_json(p.url("/v1/chat/completions"), &body))
                .await
                .unwrap();
            assert_eq!(r.status, 200);
            let (sent_headers, sent_body) = capture.response(n);
            n += 1;
            let got_headers = end_to_end(
                r.headers
                    .iter()
                    .map(|(k, v)| (k.as_str().to_string(), v.to_str().unwrap().to_string())),
            );
            assert_eq!(
                got_headers, sent_headers,
                "fast path {fast_path}, stream {stream}: headers changed"
            );
            assert_eq!(
                r.body.as_ref(),
                sent_body.as_slice(),
                "fast path {fast_path}, stream {stream}: body changed"
            );
            assert!(sent_body.len() > 100, "a real answer: {:?}", r.body);
        }
        let recs = p.wait_records(2).await;
        for r in &recs {
            assert_eq!(r["outcome"], "ok", "{r}");
            assert!(r["output_tokens"].as_u64().unwrap() > 0, "{r}");
        }
        p.shutdown().await;
    }
}

const LLAMA_PROFILE: &str = r#"
version: 1
name: real-llama
rules:
  - name: preset_429
    match: {headers: {x-case: preset_429}}
    faults: [{type: error, preset: openai.rate_limit_requests, retry_after: 100ms}]
  - name: stream_error
    match: {headers: {x-case: stream_error}}
    faults: [{type: stream_error, after_tokens: 3}]
  - name: reset
    match: {headers: {x-case: reset}}
    faults: [{type: reset}]
  - name: first_token
    match: {headers: {x-case: first_token}}
    faults: [{type: first_token_delay, duration: 400ms}]
"#;

/// The official SDK against the real server through brownout: the records agree
/// with the SDK's own clock and the server's usage, and each fault reaches the
/// SDK as the provider's own would.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_openai_sdk_sees_a_real_server_and_real_faults_through_brownout() {
    let llama = start_llama_server().await;
    let p = ProxyBuilder::new(llama.url())
        .api(ApiKind::Openai)
        .profile(LLAMA_PROFILE)
        .start()
        .await;
    let py = tokio::task::spawn_blocking(sdk_python).await.unwrap();
    let cases = [
        "stream",
        "plain",
        "preset_429",
        "stream_error",
        "reset",
        "first_token",
    ];
    let mut args = vec![p.url("/v1"), LLAMA_MODEL.to_string()];
    args.extend(cases.iter().map(|c| c.to_string()));
    let out = run_python_json(&py, "real_llama_check.py", &args).await;
    let check = |name: &str| -> Value {
        out.iter()
            .find(|c| c["check"] == name)
            .cloned()
            .unwrap_or_else(|| panic!("no {name} in {out:#?}"))
    };
    // Two warm-up calls, then the cases; preset_429 is tried 3 times (max_retries
    // 2): 8 records for the cases.
    let all = p.wait_records(10).await;
    assert!(
        all[..2].iter().all(|r| r["path"] == "/v1/models"),
        "{all:#?}"
    );
    let recs = &all[2..];
    // The record's clock starts after the SDK's (the request must reach brownout)
    // and stops before it (the answer must reach the SDK): never later than the
    // SDK's, and close to it (generously: the SDK's Python overhead on a loaded
    // 2-core machine reaches tens of ms).
    let near = |sdk: &Value, rec: &Value, what: &str| {
        let (sdk, rec) = (sdk.as_f64().unwrap(), rec.as_f64().unwrap());
        assert!(
            rec <= sdk + 5.0 && sdk - rec < 25.0 + 0.15 * sdk,
            "{what}: record {rec:.1} ms vs the SDK's {sdk:.1} ms"
        );
    };

    let s = check("stream");
    assert_eq!(s["raised"], Value::Null, "{s}");
    assert_eq!(recs[0]["outcome"], "ok", "{}", recs[0]);
    // llama-cpp-python sends no usage in streams (it ignores `include_usage`) and
    // one token per chunk: the SDK's count of content chunks is the server's.
    let streamed = if s["usage_output_tokens"].is_null() {
        &s["tokens"]
    } else {
        &s["usage_output_tokens"]
    };
    assert_eq!(&recs[0]["output_tokens"], streamed, "{}", recs[0]);
    near(&s["ttft_ms"], &recs[0]["ttft_ms"], "TTFT");
    near(&s["e2e_ms"], &recs[0]["e2e_ms"], "stream e2e");

    let c = check("plain");
    assert_eq!(c["raised"], Value::Null, "{c}");
    assert_eq!(
        recs[1]["output_tokens"], c["usage_output_tokens"],
        "{}",
        recs[1]
    );
    near(&c["e2e_ms"], &recs[1]["e2e_ms"], "e2e");

    let c = check("preset_429");
    assert_eq!(c["raised"], "RateLimitError", "{c}");
    assert_eq!(c["status"], 429);
    let msg = c["message"].as_str().unwrap();
    assert!(
        msg.contains(LLAMA_MODEL) && !msg.contains("gpt-4o"),
        "the 429 names the request's model: {msg}"
    );
    for r in &recs[2..5] {
        assert_eq!(r["status"], 429, "{r}");
        assert_eq!(r["outcome"], "injected_error", "{r}");
    }
    assert_eq!(recs[4]["attempt"], 2, "the SDK retried twice: {}", recs[4]);

    let c = check("stream_error");
    assert_eq!(c["raised"], "APIError", "{c}");
    assert_eq!(c["tokens"], 3, "three tokens, then the error: {c}");
    assert_eq!(recs[5]["outcome"], "injected_error", "{}", recs[5]);

    let c = check("reset");
    assert_eq!(c["raised"], "APIConnectionError", "{c}");
    assert_eq!(recs[6]["outcome"], "reset", "{}", recs[6]);

    let c = check("first_token");
    assert_eq!(c["raised"], Value::Null, "{c}");
    assert!(c["ttft_ms"].as_f64().unwrap() >= 400.0, "{c}");
    assert!(recs[7]["ttft_ms"].as_f64().unwrap() >= 400.0, "{}", recs[7]);
    near(&c["ttft_ms"], &recs[7]["ttft_ms"], "delayed TTFT");
    p.shutdown().await;
}

/// llama-cpp-python's server at its default keep-alive (uvicorn's 5 s), with
/// requests at gaps straddling it: no 502 on either path, with brownout's default
/// pool and with one told to keep connections for 10 s (so it meets the closes).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_real_model_server_closing_idle_connections_never_turns_into_a_502() {
    let llama = start_llama_server().await;
    let mut runs = Vec::new();
    for fast_path in [true, false] {
        for keep in [None, Some(Duration::from_secs(10))] {
            let url = llama.url();
            runs.push(tokio::spawn(async move {
                let p = ProxyBuilder::new(url)
                    .config(move |c| {
                        c.fast_path = fast_path;
                        if let Some(k) = keep {
                            c.pool.idle_timeout = brownout_faults::duration::DurationStr(k);
                        }
                    })
                    .start()
                    .await;
                let client = http1_client();
                let mut failures = Vec::new();
                for gap_ms in [4900, 5000, 5050, 4950, 5100, 5000, 4980, 5020] {
                    tokio::time::sleep(Duration::from_millis(gap_ms)).await;
                    match send(&client, get(p.url("/v1/models"))).await {
                        Ok(r) if r.status == 200 => {}
                        Ok(r) => failures.push(format!("{} {:?}", r.status, r.body)),
                        Err(e) => failures.push(e.to_string()),
                    }
                }
                p.shutdown().await;
                (fast_path, keep, failures)
            }));
        }
    }
    for r in runs {
        let (fast_path, keep, failures) = r.await.unwrap();
        assert!(
            failures.is_empty(),
            "fast path {fast_path}, pool.idle_timeout {keep:?}: {failures:?}"
        );
    }
}

// ---------------------------------------------------------------------------
// LiteLLM
// ---------------------------------------------------------------------------

/// LiteLLM's Router, set up for fallbacks, falls back to the second deployment
/// when brownout storms the first with 429s: every call succeeds from the backup,
/// and brownout's records show the storm the Router met.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn litellm_router_falls_back_when_brownout_storms_a_deployment() {
    let sim = brownout_sim::spawn("127.0.0.1:0".parse().unwrap(), Default::default())
        .await
        .unwrap();
    let sim_url = format!("http://{}", sim.addr);
    let stormed = ProxyBuilder::new(sim_url.clone())
        .api(ApiKind::Openai)
        .profile(
            r#"
version: 1
name: storm
rules:
  - name: storm
    match: {endpoint: chat}
    faults: [{type: error, preset: openai.rate_limit_requests, retry_after: 100ms}]
"#,
        )
        .start()
        .await;
    let backup = ProxyBuilder::new(sim_url)
        .api(ApiKind::Openai)
        .start()
        .await;
    let py = tokio::task::spawn_blocking(sdk_python).await.unwrap();
    let calls = 4;
    let out = run_python_json(
        &py,
        "litellm_check.py",
        &[stormed.url("/v1"), backup.url("/v1"), calls.to_string()],
    )
    .await;
    assert_eq!(out.len(), calls, "{out:#?}");
    for c in &out {
        assert_eq!(c["ok"], true, "the Router fell back: {c}");
    }
    let storm = stormed.records();
    assert!(
        storm.len() >= calls,
        "every call met the storm first: {storm:#?}"
    );
    assert!(storm
        .iter()
        .all(|r| r["status"] == 429 && r["outcome"] == "injected_error"));
    let served = backup.wait_records(calls).await;
    assert!(served.iter().all(|r| r["status"] == 200), "{served:#?}");
}

// ---------------------------------------------------------------------------
// qdrant-client
// ---------------------------------------------------------------------------

/// The current qdrant-client (1.20, Query API only) through brownout to the Qdrant
/// sim, with `drop_results` on queries: it sees fewer hits and nothing else
/// changes; every kept hit's JSON text is byte-identical to the upstream's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn qdrant_client_through_brownout_sees_dropped_hits_and_exact_scores() {
    let sim = brownout_sim::spawn(
        "127.0.0.1:0".parse().unwrap(),
        brownout_sim::SimConfig {
            api: brownout_sim::SimApi::Qdrant,
            ..Default::default()
        },
    )
    .await
    .unwrap();
    let direct = format!("http://{}", sim.addr);
    let p = ProxyBuilder::new(direct.clone())
        .api(ApiKind::Qdrant)
        .profile(
            r#"
version: 1
name: drop
rules:
  - name: drop
    match: {endpoint: query}
    faults: [{type: drop_results, fraction: 0.3}]
"#,
        )
        .start()
        .await;
    let py = tokio::task::spawn_blocking(sdk_python).await.unwrap();
    let out = run_python_json(&py, "qdrant_proxy_check.py", &[direct, p.url("")]).await;
    let setup = out.iter().find(|c| c["check"] == "setup").expect("setup");
    assert_eq!(setup["exists"], true, "{setup}");
    assert_eq!(setup["count"], 200, "{setup}");
    assert_eq!(setup["points_count"], 200, "{setup}");
    assert_eq!(setup["retrieved"], serde_json::json!([3, 5, 8]), "{setup}");
    assert_eq!(setup["scrolled"], 50, "{setup}");
    let mut dropped = 0;
    let queries: Vec<_> = out.iter().filter(|c| c["check"] == "query").collect();
    assert_eq!(queries.len(), 12);
    for q in queries {
        let want = q["direct"].as_array().unwrap();
        let got = q["proxied"].as_array().unwrap();
        assert_eq!(want.len(), 25, "{q}");
        dropped += want.len() - got.len();
        // Kept hits keep their order, ids and scores.
        let mut it = want.iter();
        for hit in got {
            assert!(
                it.any(|w| w == hit),
                "a kept hit changed or moved: {hit} in {q}"
            );
        }
        assert_eq!(q["payloads_equal"], true, "{q}");
        let raw_direct: Vec<&str> = q["raw_direct_hits"]
            .as_array()
            .unwrap()
            .iter()
            .map(|h| h.as_str().unwrap())
            .collect();
        for raw in q["raw_proxied_hits"].as_array().unwrap() {
            let raw = raw.as_str().unwrap();
            assert!(
                raw_direct.contains(&raw),
                "a kept hit's text changed: {raw}"
            );
        }
    }
    // 30% of 300 hits: well away from 0 and from all of them.
    assert!(
        (40..=140).contains(&dropped),
        "dropped {dropped} of 300 hits"
    );
    let batch = out.iter().find(|c| c["check"] == "batch").expect("batch");
    assert_eq!(batch["hits"].as_array().unwrap().len(), 3, "{batch}");
}
