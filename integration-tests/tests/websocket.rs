//! WebSocket pass-through (proxy/src/pipeline/tunnel.rs) with real WebSocket peers: the
//! Python `websockets` package (17.4, from the cached `sdk` environment that
//! `integration-tests/python/venv.sh` prints) as the echo server behind brownout
//! and as the client in front of it (`integration-tests/python/ws_check.py`).
//!
//! Text and binary messages, a 1 MiB one, pipelined ones, ping/pong, a close code
//! and reason, subprotocol and permessage-deflate negotiation, on both data paths
//! (the fast path hands an `Upgrade` to hyper) and over TLS on both sides; the
//! request-side faults on the handshake (`error`, `delay`, `reset`), `bandwidth` on
//! the tunnel, other faults listed as skipped; a non-101 answer relayed as an
//! answer; raw peers for what a parser would reject (garbage after the `101`),
//! `reset` after N tunnel bytes, the idle limits, and a tunnel still open at
//! shutdown. Every case checks its one record.

use std::path::PathBuf;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use brownout_integration_tests::*;
use serde_json::Value;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::process::{Child, Command};

const STEP: Duration = Duration::from_secs(30);

// ---------------------------------------------------------------------------
// Helpers: the Python peers
// ---------------------------------------------------------------------------

/// The cached `sdk` environment's python (it holds `websockets`), built by
/// `venv.sh` when missing.
fn python() -> PathBuf {
    static PY: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    PY.get_or_init(|| {
        let root = repo_root();
        let out = std::process::Command::new("bash")
            .arg(root.join("integration-tests/python/venv.sh"))
            .arg("sdk")
            .current_dir(&root)
            .stderr(Stdio::inherit())
            .output()
            .expect("run integration-tests/python/venv.sh");
        assert!(out.status.success(), "venv.sh sdk failed");
        let dir = String::from_utf8_lossy(&out.stdout).trim().to_string();
        PathBuf::from(dir).join("bin/python")
    })
    .clone()
}

fn script() -> PathBuf {
    repo_root().join("integration-tests/python/ws_check.py")
}

async fn py_command() -> Command {
    let py = tokio::task::spawn_blocking(python).await.unwrap();
    let mut c = Command::new(py);
    c.arg(script()).kill_on_drop(true);
    c
}

/// The Python echo server, and what it printed since it started.
struct WsServer {
    port: u16,
    events: Arc<Mutex<Vec<Value>>>,
    _child: Child,
}

impl WsServer {
    async fn start() -> WsServer {
        Self::start_with(&[]).await
    }

    async fn start_with(env: &[(&str, &std::path::Path)]) -> WsServer {
        let mut cmd = py_command().await;
        cmd.arg("server")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().expect("start the websockets server");
        let stdout = child.stdout.take().expect("piped stdout");
        let mut lines = BufReader::new(stdout).lines();
        let first = within(STEP, "the websockets server's port", lines.next_line())
            .await
            .expect("read the server's output")
            .expect("the server printed its port");
        let port = serde_json::from_str::<Value>(&first).expect("JSON")["port"]
            .as_u64()
            .expect("a port") as u16;
        let events = Arc::new(Mutex::new(Vec::new()));
        let ev = events.clone();
        tokio::spawn(async move {
            while let Ok(Some(line)) = lines.next_line().await {
                if let Ok(v) = serde_json::from_str::<Value>(&line) {
                    ev.lock().unwrap().push(v);
                }
            }
        });
        WsServer {
            port,
            events,
            _child: child,
        }
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    fn events(&self, kind: &str) -> Vec<Value> {
        self.events
            .lock()
            .unwrap()
            .iter()
            .filter(|e| e["event"] == kind)
            .cloned()
            .collect()
    }

    /// Wait until the server printed `n` events of `kind`.
    async fn wait(&self, kind: &str, n: usize) -> Vec<Value> {
        let deadline = Instant::now() + STEP;
        loop {
            let found = self.events(kind);
            if found.len() >= n {
                return found;
            }
            assert!(
                Instant::now() < deadline,
                "the websockets server printed {} `{kind}` events, not {n}: {:?}",
                found.len(),
                self.events.lock().unwrap()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

/// Run a `ws_check.py` client mode to its end; its JSON lines.
async fn client(args: &[&str], env: &[(&str, &std::path::Path)]) -> Vec<Value> {
    let mut cmd = py_command().await;
    cmd.args(args).stdout(Stdio::piped()).stderr(Stdio::piped());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = within(
        Duration::from_secs(60),
        &format!("ws_check.py {args:?}"),
        cmd.output(),
    )
    .await
    .expect("run ws_check.py");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "ws_check.py {args:?} failed\nstdout:\n{stdout}\nstderr:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect()
}

fn ws_url(proxy: &TestProxy, path: &str) -> String {
    format!("ws://{}{path}", proxy.addr)
}

/// The record of a tunnel that ended cleanly.
fn assert_tunnel_record(rec: &Value, ctx: &str) {
    assert_eq!(rec["status"], 101, "{ctx}: {rec:#}");
    assert_eq!(rec["upstream"]["status"], 101, "{ctx}: {rec:#}");
    assert_eq!(rec["outcome"], "ok", "{ctx}: {rec:#}");
    assert_eq!(rec["method"], "GET", "{ctx}: {rec:#}");
    assert!(rec["error"].is_null(), "{ctx}: {rec:#}");
    assert!(rec["bytes_in"].as_u64().unwrap() > 0, "{ctx}: {rec:#}");
    assert!(rec["bytes_out"].as_u64().unwrap() > 0, "{ctx}: {rec:#}");
}

// ---------------------------------------------------------------------------
// Real peers, no faults
// ---------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn websocket_echo_through_both_paths() {
    for fast_path in [true, false] {
        let ctx = format!("fast path {fast_path}");
        let server = WsServer::start().await;
        let proxy = ProxyBuilder::new(server.url())
            .api(ApiKind::Openai)
            .admin()
            .config(|c| c.fast_path = fast_path)
            .start()
            .await;
        let steps = client(
            &["suite", &ws_url(&proxy, "/v1/realtime?model=gpt-realtime")],
            &[],
        )
        .await;
        let step = |name: &str| {
            steps
                .iter()
                .find(|s| s["step"] == name)
                .unwrap_or_else(|| panic!("{ctx}: no step {name}: {steps:?}"))
                .clone()
        };
        assert_eq!(step("open")["subprotocol"], "brownout.v2", "{ctx}");
        assert_eq!(
            step("open")["extensions"],
            serde_json::json!(["PerMessageDeflate"]),
            "{ctx}: the extension was negotiated through the proxy"
        );
        for s in ["text", "binary", "big", "pipelined", "ping", "done"] {
            step(s);
        }
        assert_eq!(step("close")["code"], 4001, "{ctx}");

        // The server got the upgrade as the client sent it, and the close code.
        let connect = server.wait("connect", 1).await.remove(0);
        assert_eq!(connect["path"], "/v1/realtime?model=gpt-realtime", "{ctx}");
        assert_eq!(connect["subprotocol"], "brownout.v2", "{ctx}");
        let h = &connect["headers"];
        assert_eq!(h["upgrade"], "websocket", "{ctx}: {h}");
        assert_eq!(h["connection"], "upgrade", "{ctx}: {h}");
        assert_eq!(h["sec-websocket-version"], "13", "{ctx}: {h}");
        assert_eq!(
            h["sec-websocket-protocol"], "brownout.v1, brownout.v2",
            "{ctx}: {h}"
        );
        assert!(h["sec-websocket-key"].is_string(), "{ctx}: {h}");
        assert_eq!(
            h["host"],
            format!("127.0.0.1:{}", server.port),
            "{ctx}: {h}"
        );
        let close = server.wait("close", 1).await.remove(0);
        assert_eq!(close["code"], 4001, "{ctx}: {close}");
        assert_eq!(close["reason"], "bye", "{ctx}: {close}");

        let recs = proxy.exactly_records(1).await;
        let rec = &recs[0];
        assert_tunnel_record(rec, &ctx);
        assert_eq!(rec["path"], "/v1/realtime", "{ctx}");
        // 1 MiB of random bytes each way does not compress.
        assert!(
            rec["bytes_in"].as_u64().unwrap() > 1 << 20,
            "{ctx}: {rec:#}"
        );
        assert!(
            rec["bytes_out"].as_u64().unwrap() > 1 << 20,
            "{ctx}: {rec:#}"
        );
        assert!(rec["ttfb_ms"].as_f64().unwrap() <= rec["e2e_ms"].as_f64().unwrap());
        let (_, metrics) = proxy.admin_get("/metrics").await;
        assert!(
            metrics.contains(
                "brownout_requests_total{listener=\"test\",endpoint=\"other\",phase=\"\",outcome=\"ok\"} 1"
            ),
            "{ctx}: {metrics}"
        );
        assert!(
            metrics.contains("brownout_active_requests{listener=\"test\"} 0"),
            "{ctx}: {metrics}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn websocket_over_tls_on_both_sides() {
    // The upstream offers h2 through ALPN, as api.openai.com does: the tunnel's
    // connection must still speak HTTP/1.1.
    let certs = TestCerts::new();
    let server = WsServer::start_with(&[
        ("WS_CERT", certs.cert_path.as_path()),
        ("WS_KEY", certs.key_path.as_path()),
    ])
    .await;
    let proxy = ProxyBuilder::new(format!("https://127.0.0.1:{}", server.port))
        .upstream_ca(&certs.ca_path)
        .tls(&certs.cert_path, &certs.key_path)
        .start()
        .await;
    let url = format!("wss://localhost:{}/v1/realtime", proxy.addr.port());
    let steps = client(&["suite", &url], &[("WS_CA", certs.ca_path.as_path())]).await;
    assert!(steps.iter().any(|s| s["step"] == "done"), "{steps:?}");
    let close = server.wait("close", 1).await.remove(0);
    assert_eq!(close["code"], 4001, "{close}");
    let recs = proxy.exactly_records(1).await;
    assert_tunnel_record(&recs[0], "tls");
    assert!(recs[0]["bytes_out"].as_u64().unwrap() > 1 << 20);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_upgrade_is_relayed_as_an_answer() {
    let caps = Captures::default();
    let c = caps.clone();
    let up = Upstream::start(move |req| {
        let c = c.clone();
        async move {
            c.record(Captured::read(req).await);
            let mut r = reply(426, "websocket not here");
            r.headers_mut()
                .insert("x-why", "no websockets".parse().unwrap());
            r
        }
    })
    .await;
    for fast_path in [true, false] {
        let ctx = format!("fast path {fast_path}");
        let proxy = ProxyBuilder::new(up.url())
            .config(|c| c.fast_path = fast_path)
            .start()
            .await;
        let out = client(&["handshake", &ws_url(&proxy, "/ws")], &[]).await;
        assert_eq!(out[0]["ok"], false, "{ctx}: {out:?}");
        assert_eq!(out[0]["status"], 426, "{ctx}: {out:?}");
        assert_eq!(out[0]["body"], "websocket not here", "{ctx}: {out:?}");
        assert_eq!(
            out[0]["headers"]["x-why"], "no websockets",
            "{ctx}: {out:?}"
        );
        let seen = caps.last();
        assert_eq!(seen.header_all("upgrade"), ["websocket"], "{ctx}");
        assert_eq!(seen.header_all("connection"), ["upgrade"], "{ctx}");
        let recs = proxy.exactly_records(1).await;
        assert_eq!(recs[0]["status"], 426, "{ctx}: {:#}", recs[0]);
        assert_eq!(recs[0]["outcome"], "http_error", "{ctx}: {:#}", recs[0]);
    }
    assert_eq!(caps.len(), 2);
}

// ---------------------------------------------------------------------------
// Faults
// ---------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn error_and_reset_faults_fail_the_handshake() {
    let server = WsServer::start().await;
    let profile = r#"
version: 1
name: ws-faults
rules:
  - name: down
    match: {path: /v1/realtime/down}
    faults: [{type: error, status: 503, body: "realtime is down"}]
  - name: limited
    match: {path: /v1/realtime/limited}
    faults: [{type: error, preset: openai.rate_limit_requests, retry_after: 2s}]
  - name: cut
    match: {path: /v1/realtime/cut}
    faults: [{type: reset}]
"#;
    for fast_path in [true, false] {
        let ctx = format!("fast path {fast_path}");
        let proxy = ProxyBuilder::new(server.url())
            .api(ApiKind::Openai)
            .profile(profile)
            .config(|c| c.fast_path = fast_path)
            .start()
            .await;

        let out = client(&["handshake", &ws_url(&proxy, "/v1/realtime/down")], &[]).await;
        assert_eq!(out[0]["ok"], false, "{ctx}: {out:?}");
        assert_eq!(out[0]["status"], 503, "{ctx}: {out:?}");
        assert_eq!(out[0]["body"], "realtime is down", "{ctx}: {out:?}");
        assert_eq!(out[0]["headers"]["x-brownout-fault"], "down/error", "{ctx}");
        let rec = proxy.record_for("/v1/realtime/down").await;
        assert_eq!(rec["status"], 503, "{ctx}: {rec:#}");
        assert_eq!(rec["outcome"], "injected_error", "{ctx}: {rec:#}");
        assert_eq!(fault_names(&rec, "faults"), ["down/error"], "{ctx}");

        let out = client(&["handshake", &ws_url(&proxy, "/v1/realtime/limited")], &[]).await;
        assert_eq!(out[0]["status"], 429, "{ctx}: {out:?}");
        assert_eq!(out[0]["headers"]["retry-after"], "2", "{ctx}: {out:?}");

        let out = client(&["handshake", &ws_url(&proxy, "/v1/realtime/cut")], &[]).await;
        assert_eq!(out[0]["ok"], false, "{ctx}: {out:?}");
        assert!(
            out[0]["status"].is_null(),
            "{ctx}: no answer at all: {out:?}"
        );
        assert!(out[0]["error"].is_string(), "{ctx}: {out:?}");
        let rec = proxy.record_for("/v1/realtime/cut").await;
        assert_eq!(rec["outcome"], "reset", "{ctx}: {rec:#}");
        assert_eq!(fault_names(&rec, "faults"), ["cut/reset"], "{ctx}");

        // None of them reached the server; the proxy still tunnels.
        let out = client(&["handshake", &ws_url(&proxy, "/v1/realtime")], &[]).await;
        assert_eq!(out[0]["ok"], true, "{ctx}: {out:?}");
        proxy.exactly_records(4).await;
    }
    assert_eq!(
        server.events("connect").len(),
        2,
        "only the clean handshakes"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delay_holds_the_handshake() {
    let server = WsServer::start().await;
    let proxy = ProxyBuilder::new(server.url())
        .profile(
            r#"
version: 1
name: ws-delay
rules:
  - name: slow
    faults: [{type: delay, duration: 700ms}]
"#,
        )
        .start()
        .await;
    let out = client(&["handshake", &ws_url(&proxy, "/ws")], &[]).await;
    assert_eq!(out[0]["ok"], true, "{out:?}");
    let ms = out[0]["ms"].as_f64().unwrap();
    assert!((700.0..10_000.0).contains(&ms), "handshake took {ms} ms");
    assert_eq!(
        out[0]["headers"]["x-brownout-fault"], "slow/delay",
        "{out:?}"
    );
    let recs = proxy.exactly_records(1).await;
    assert_tunnel_record(&recs[0], "delay");
    assert_eq!(fault_names(&recs[0], "faults"), ["slow/delay"]);
    assert!(
        recs[0]["ttfb_ms"].as_f64().unwrap() >= 700.0,
        "{:#}",
        recs[0]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bandwidth_paces_the_tunnel_and_other_faults_are_skipped() {
    const SIZE: &str = "262144";
    let server = WsServer::start().await;
    let plain = ProxyBuilder::new(server.url()).start().await;
    let out = client(&["echo-timed", &ws_url(&plain, "/ws"), SIZE], &[]).await;
    let fast_ms = out[0]["ms"].as_f64().unwrap();

    let proxy = ProxyBuilder::new(server.url())
        .api(ApiKind::Openai)
        .profile(
            r#"
version: 1
name: ws-bandwidth
rules:
  - name: thin
    faults: [{type: bandwidth, bytes_per_second: 262144}]
  - name: tokens
    faults: [{type: token_delay, duration: 50ms}]
"#,
        )
        .start()
        .await;
    let out = client(&["echo-timed", &ws_url(&proxy, "/v1/realtime"), SIZE], &[]).await;
    let slow_ms = out[0]["ms"].as_f64().unwrap();
    // 256 KiB each way at 256 KiB/s: about two seconds.
    assert!(
        slow_ms > 1_400.0 && slow_ms < 20_000.0,
        "paced echo took {slow_ms} ms (unpaced: {fast_ms} ms)"
    );
    assert!(
        fast_ms < slow_ms / 2.0,
        "unpaced {fast_ms} ms, paced {slow_ms} ms"
    );
    let recs = proxy.exactly_records(1).await;
    let rec = &recs[0];
    assert_tunnel_record(rec, "bandwidth");
    assert!(rec["bytes_in"].as_u64().unwrap() >= 262_144, "{rec:#}");
    assert!(rec["bytes_out"].as_u64().unwrap() >= 262_144, "{rec:#}");
    assert_eq!(fault_names(rec, "faults"), ["thin/bandwidth"], "{rec:#}");
    assert_eq!(
        fault_names(rec, "faults_skipped"),
        ["tokens/token_delay"],
        "{rec:#}"
    );
    assert_eq!(rec["faults_skipped"][0]["reason"], "websocket", "{rec:#}");
}

// ---------------------------------------------------------------------------
// Raw peers: what a WebSocket parser would not let through
// ---------------------------------------------------------------------------

const UPGRADE_REQUEST: &[u8] = b"GET /raw HTTP/1.1\r\nHost: client.example\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n";
const SWITCH: &[u8] = b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n";

fn garbage(n: usize, seed: u8) -> Vec<u8> {
    (0..n)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed) ^ 0xA5)
        .collect()
}

/// Open a tunnel by hand: write the upgrade request, read the answer's head.
async fn raw_upgrade(proxy: &TestProxy) -> (TcpStream, String, Vec<u8>) {
    let mut c = TcpStream::connect(proxy.addr).await.unwrap();
    c.write_all(UPGRADE_REQUEST).await.unwrap();
    let mut buf = Vec::new();
    let n = within(STEP, "the 101", read_until_head(&mut c, &mut buf))
        .await
        .expect("an answer head");
    let head = String::from_utf8_lossy(&buf[..n]).to_ascii_lowercase();
    let rest = buf[n..].to_vec();
    (c, head, rest)
}

async fn read_exact_within(c: &mut TcpStream, have: &mut Vec<u8>, n: usize, what: &str) {
    within(STEP, what, async {
        while have.len() < n {
            let mut b = [0u8; 8192];
            let k = c.read(&mut b).await.expect("read");
            assert!(k > 0, "{what}: closed after {} of {n} bytes", have.len());
            have.extend_from_slice(&b[..k]);
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_after_the_101_passes_as_it_is() {
    let first = garbage(3000, 1);
    let second = garbage(70_000, 7);
    let (f, s) = (first.clone(), second.clone());
    let (after_tx, mut after_rx) = tokio::sync::mpsc::channel::<Vec<u8>>(2);
    let up = RawUpstream::start(move |mut sock| {
        let (first, second, after_tx) = (f.clone(), s.clone(), after_tx.clone());
        async move {
            let mut buf = Vec::new();
            let Some(n) = read_until_head(&mut sock, &mut buf).await else {
                return;
            };
            let head = String::from_utf8_lossy(&buf[..n]).to_ascii_lowercase();
            assert!(head.contains("upgrade: websocket"), "{head}");
            assert!(head.contains("connection: upgrade"), "{head}");
            sock.write_all(SWITCH).await.unwrap();
            sock.write_all(&first).await.unwrap();
            // The client's bytes arrive as it wrote them, then its half-close.
            let mut got = buf[n..].to_vec();
            let mut b = [0u8; 1024];
            while got.len() < 5 {
                let k = sock.read(&mut b).await.unwrap();
                assert!(k > 0, "the client's bytes never came");
                got.extend_from_slice(&b[..k]);
            }
            assert_eq!(got, b"ping!");
            sock.write_all(&second).await.unwrap();
            sock.shutdown().await.unwrap();
            let mut rest = Vec::new();
            // Half-closed: the other direction still carries bytes.
            let _ = sock.read_to_end(&mut rest).await;
            let _ = after_tx.send(rest).await;
        }
    })
    .await;
    for fast_path in [true, false] {
        let ctx = format!("fast path {fast_path}");
        let proxy = ProxyBuilder::new(up.url())
            .config(|c| c.fast_path = fast_path)
            .start()
            .await;
        let (mut c, head, mut got) = raw_upgrade(&proxy).await;
        assert!(
            head.starts_with("http/1.1 101 switching protocols"),
            "{ctx}: {head}"
        );
        assert!(
            head.contains("sec-websocket-accept: s3pplmbitxaq9kygzzhzrbk+xoo="),
            "{head}"
        );
        assert!(head.contains("upgrade: websocket"), "{ctx}: {head}");
        assert!(head.contains("connection: upgrade"), "{ctx}: {head}");
        read_exact_within(&mut c, &mut got, first.len(), "the first garbage").await;
        assert_eq!(got, first, "{ctx}");
        c.write_all(b"ping!").await.unwrap();
        let mut rest = Vec::new();
        within(
            STEP,
            "the rest until the upstream's close",
            c.read_to_end(&mut rest),
        )
        .await
        .unwrap();
        assert_eq!(rest.len(), second.len(), "{ctx}");
        assert!(rest == second, "{ctx}: the bytes changed on the way");
        c.write_all(b"after the upstream's fin").await.unwrap();
        c.shutdown().await.unwrap();
        let recs = proxy.exactly_records(1).await;
        let rec = &recs[0];
        assert_tunnel_record(rec, &ctx);
        assert_eq!(rec["bytes_in"], 5 + 24, "{ctx}: {rec:#}");
        let after = within(STEP, "the bytes after the fin", after_rx.recv())
            .await
            .unwrap();
        assert_eq!(after, b"after the upstream's fin", "{ctx}");
        assert_eq!(
            rec["bytes_out"],
            (first.len() + second.len()) as u64,
            "{ctx}"
        );
    }
    up.check();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reset_after_bytes_cuts_the_tunnel() {
    let up = RawUpstream::start(|mut sock| async move {
        let mut buf = Vec::new();
        if read_until_head(&mut sock, &mut buf).await.is_none() {
            return;
        }
        let _ = sock.write_all(SWITCH).await;
        let _ = sock.write_all(&garbage(50_000, 3)).await;
        let mut rest = Vec::new();
        let _ = sock.read_to_end(&mut rest).await;
    })
    .await;
    let proxy = ProxyBuilder::new(up.url())
        .profile(
            r#"
version: 1
name: ws-cut
rules:
  - name: cut
    faults: [{type: reset, after_bytes: 1000}]
"#,
        )
        .start()
        .await;
    let (mut c, head, mut got) = raw_upgrade(&proxy).await;
    assert!(head.starts_with("http/1.1 101"), "{head}");
    let ended = within(STEP, "the reset", async {
        loop {
            let mut b = [0u8; 8192];
            match c.read(&mut b).await {
                Ok(0) => return "eof",
                Ok(k) => got.extend_from_slice(&b[..k]),
                Err(e) => {
                    assert_eq!(e.kind(), std::io::ErrorKind::ConnectionReset, "{e}");
                    return "reset";
                }
            }
        }
    })
    .await;
    assert_eq!(ended, "reset", "an RST, not a clean close");
    assert!(got.len() <= 1000, "{} bytes passed", got.len());
    assert_eq!(
        got,
        garbage(50_000, 3)[..got.len()],
        "the bytes that came are the upstream's"
    );
    let recs = proxy.exactly_records(1).await;
    let rec = &recs[0];
    assert_eq!(rec["status"], 101, "{rec:#}");
    assert_eq!(rec["outcome"], "reset", "{rec:#}");
    assert_eq!(rec["bytes_out"], 1000, "{rec:#}");
    assert_eq!(fault_names(rec, "faults"), ["cut/reset"], "{rec:#}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_quiet_tunnel_outlives_upstream_idle_timeout_until_idle_timeout() {
    // Answers the upgrade, then echoes whatever comes, however late.
    let up = RawUpstream::start(|mut sock| async move {
        let mut buf = Vec::new();
        let Some(n) = read_until_head(&mut sock, &mut buf).await else {
            return;
        };
        let _ = sock.write_all(SWITCH).await;
        if buf.len() > n {
            let _ = sock.write_all(&buf[n..]).await;
        }
        let mut b = [0u8; 1024];
        loop {
            match sock.read(&mut b).await {
                Ok(0) | Err(_) => return,
                Ok(k) => {
                    if sock.write_all(&b[..k]).await.is_err() {
                        return;
                    }
                }
            }
        }
    })
    .await;

    // Silent for 1.5 s, longer than upstream_idle_timeout: still open.
    let proxy = ProxyBuilder::new(up.url())
        .limits(|l| {
            l.upstream_idle_timeout =
                brownout_faults::duration::DurationStr(Duration::from_millis(300));
            l.idle_timeout = brownout_faults::duration::DurationStr(Duration::from_secs(5));
        })
        .start()
        .await;
    let (mut c, head, _) = raw_upgrade(&proxy).await;
    assert!(head.starts_with("http/1.1 101"), "{head}");
    tokio::time::sleep(Duration::from_millis(1500)).await;
    c.write_all(b"still there?").await.unwrap();
    let mut got = Vec::new();
    read_exact_within(&mut c, &mut got, 12, "the echo after a quiet while").await;
    assert_eq!(got, b"still there?");
    c.shutdown().await.unwrap();
    let mut rest = Vec::new();
    within(STEP, "the close", c.read_to_end(&mut rest))
        .await
        .unwrap();
    let recs = proxy.exactly_records(1).await;
    assert_tunnel_record(&recs[0], "quiet");

    // Nothing either way for idle_timeout: closed, recorded as a timeout.
    let proxy = ProxyBuilder::new(up.url())
        .limits(|l| l.idle_timeout = brownout_faults::duration::DurationStr(Duration::from_secs(1)))
        .start()
        .await;
    let (mut c, _, _) = raw_upgrade(&proxy).await;
    let t = Instant::now();
    let mut rest = Vec::new();
    let _ = within(STEP, "the idle close", c.read_to_end(&mut rest)).await;
    let took = t.elapsed();
    assert!(
        took >= Duration::from_millis(900) && took < Duration::from_secs(8),
        "closed after {took:?}"
    );
    let recs = proxy.exactly_records(1).await;
    assert_eq!(recs[0]["status"], 101, "{:#}", recs[0]);
    assert_eq!(recs[0]["outcome"], "timeout", "{:#}", recs[0]);
    assert!(
        recs[0]["error"].as_str().unwrap().contains("idle_timeout"),
        "{:#}",
        recs[0]
    );
}

// ---------------------------------------------------------------------------
// Shutdown
// ---------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_open_tunnel_is_closed_at_shutdown() {
    let server = WsServer::start().await;
    let dir = TempDir::new();
    let file = dir.join("records.jsonl");
    let proxy = ProxyBuilder::new(server.url())
        .admin()
        .record(&file)
        .limits(|l| {
            l.shutdown_grace = brownout_faults::duration::DurationStr(Duration::from_millis(500))
        })
        .start()
        .await;
    // A client that never closes, to a server that never closes.
    let mut cmd = py_command().await;
    cmd.args(["hold", &ws_url(&proxy, "/v1/realtime")])
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit());
    let mut child = cmd.spawn().expect("start the holding client");
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let open = within(STEP, "the tunnel opens", lines.next_line())
        .await
        .unwrap()
        .unwrap();
    assert!(open.contains("\"open\""), "{open}");
    server.wait("connect", 1).await;
    let (_, metrics) = proxy.admin_get("/metrics").await;
    assert!(
        metrics.contains("brownout_active_requests{listener=\"test\"} 1"),
        "an open tunnel is an exchange in flight: {metrics}"
    );

    let t = Instant::now();
    within(
        Duration::from_secs(15),
        "shutdown with an open tunnel",
        proxy.shutdown(),
    )
    .await;
    let took = t.elapsed();
    assert!(
        took >= Duration::from_millis(450),
        "the tunnel got its grace: {took:?}"
    );
    assert!(took < Duration::from_secs(8), "shutdown took {took:?}");

    let closed = within(STEP, "the client learns", lines.next_line())
        .await
        .unwrap()
        .expect("the client printed how it closed");
    let closed: Value = serde_json::from_str(&closed).unwrap();
    assert_eq!(closed["event"], "closed", "{closed}");
    assert_eq!(
        closed["code"], 1006,
        "no close frame: the connection was cut"
    );
    within(STEP, "the client exits", child.wait())
        .await
        .unwrap();
    server.wait("close", 1).await;

    let text = std::fs::read_to_string(&file).unwrap();
    let recs: Vec<Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(recs.len(), 1, "{text}");
    let rec = &recs[0];
    assert_eq!(rec["status"], 101, "{rec:#}");
    assert_eq!(rec["outcome"], "client_closed", "{rec:#}");
    assert!(
        rec["error"].as_str().unwrap().contains("shutdown"),
        "{rec:#}"
    );
    assert!(rec["e2e_ms"].as_f64().unwrap() >= 450.0, "{rec:#}");
    // The bytes that passed before the cut are counted.
    assert!(rec["bytes_in"].as_u64().unwrap() > 0, "{rec:#}");
    assert!(rec["bytes_out"].as_u64().unwrap() > 0, "{rec:#}");
}
