//! Headless Chromium (Debian's `chromium` package) driven over the Chrome DevTools
//! Protocol, for the tests that open brownout's pages in a real browser (the live
//! dashboard, drill reports).
//!
//! The DevTools WebSocket client is written here by hand (a few dozen lines of
//! RFC 6455 framing) rather than pulled in as a dependency: the tests need text
//! frames, masking and ping/pong, nothing more.

use std::collections::HashMap;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::TcpStream;
use tokio::sync::oneshot;
use tokio::time::Instant;

use crate::{get, http1_client, send, within, TempDir};

// ---------------------------------------------------------------------------
// A minimal WebSocket client (RFC 6455) and CDP session
// ---------------------------------------------------------------------------

pub async fn ws_connect(url: &str) -> (OwnedReadHalf, OwnedWriteHalf) {
    let rest = url.strip_prefix("ws://").expect("a ws:// DevTools URL");
    let (hostport, path) = rest.split_once('/').expect("a path in the DevTools URL");
    let stream = TcpStream::connect(hostport)
        .await
        .expect("connect to DevTools");
    let _ = stream.set_nodelay(true);
    let (mut rd, mut wr) = stream.into_split();
    let req = format!(
        "GET /{path} HTTP/1.1\r\nHost: {hostport}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
    );
    wr.write_all(req.as_bytes()).await.expect("handshake");
    // Read the answer byte by byte up to the blank line, so no frame byte is lost.
    let mut head = Vec::new();
    let mut b = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        rd.read_exact(&mut b).await.expect("handshake answer");
        head.push(b[0]);
    }
    let head = String::from_utf8_lossy(&head);
    assert!(
        head.starts_with("HTTP/1.1 101"),
        "DevTools refused the WebSocket: {head}"
    );
    (rd, wr)
}

pub async fn ws_send(wr: &mut OwnedWriteHalf, opcode: u8, payload: &[u8]) {
    let mut frame = vec![0x80 | opcode];
    let n = payload.len();
    if n < 126 {
        frame.push(0x80 | n as u8);
    } else if n < 65536 {
        frame.push(0x80 | 126);
        frame.extend_from_slice(&(n as u16).to_be_bytes());
    } else {
        frame.push(0x80 | 127);
        frame.extend_from_slice(&(n as u64).to_be_bytes());
    }
    // Clients must mask; the key need not be secret for a test.
    let key = [0x12u8, 0x34, 0x56, 0x78];
    frame.extend_from_slice(&key);
    frame.extend(payload.iter().enumerate().map(|(i, b)| b ^ key[i % 4]));
    wr.write_all(&frame).await.expect("send a frame");
}

/// One whole message: (opcode, payload), continuation frames joined.
pub async fn ws_read(rd: &mut OwnedReadHalf) -> Option<(u8, Vec<u8>)> {
    let mut msg = Vec::new();
    let mut first_op = None;
    loop {
        let mut h = [0u8; 2];
        rd.read_exact(&mut h).await.ok()?;
        let (fin, op) = (h[0] & 0x80 != 0, h[0] & 0x0f);
        let masked = h[1] & 0x80 != 0;
        let mut len = (h[1] & 0x7f) as u64;
        if len == 126 {
            let mut b = [0u8; 2];
            rd.read_exact(&mut b).await.ok()?;
            len = u16::from_be_bytes(b) as u64;
        } else if len == 127 {
            let mut b = [0u8; 8];
            rd.read_exact(&mut b).await.ok()?;
            len = u64::from_be_bytes(b);
        }
        let mut key = [0u8; 4];
        if masked {
            rd.read_exact(&mut key).await.ok()?;
        }
        let mut payload = vec![0u8; len as usize];
        rd.read_exact(&mut payload).await.ok()?;
        if masked {
            for (i, b) in payload.iter_mut().enumerate() {
                *b ^= key[i % 4];
            }
        }
        if op >= 8 {
            // Control frames may come between fragments; hand them up alone.
            return Some((op, payload));
        }
        if first_op.is_none() {
            first_op = Some(op);
        }
        msg.extend_from_slice(&payload);
        if fin {
            return Some((first_op.unwrap_or(op), msg));
        }
    }
}

type Pending = Arc<Mutex<HashMap<u64, oneshot::Sender<Value>>>>;

/// A DevTools session on one page.
pub struct Cdp {
    wr: tokio::sync::Mutex<OwnedWriteHalf>,
    pending: Pending,
    /// Every event the page sent (console calls, exceptions, log entries, ...).
    pub events: Arc<Mutex<Vec<Value>>>,
    next: std::sync::atomic::AtomicU64,
}

impl Cdp {
    pub async fn connect(url: &str) -> Cdp {
        let (mut rd, wr) = ws_connect(url).await;
        let pending: Pending = Arc::default();
        let events: Arc<Mutex<Vec<Value>>> = Arc::default();
        let wr = tokio::sync::Mutex::new(wr);
        let (p, e) = (pending.clone(), events.clone());
        tokio::spawn(async move {
            while let Some((op, payload)) = ws_read(&mut rd).await {
                match op {
                    1 | 2 => {
                        let Ok(v) = serde_json::from_slice::<Value>(&payload) else {
                            continue;
                        };
                        match v["id"].as_u64() {
                            Some(id) => {
                                if let Some(tx) = p.lock().unwrap().remove(&id) {
                                    let _ = tx.send(v);
                                }
                            }
                            None => e.lock().unwrap().push(v),
                        }
                    }
                    // DevTools does not ping its clients; a close ends the session.
                    8 => break,
                    _ => {}
                }
            }
        });
        Cdp {
            wr,
            pending,
            events,
            next: std::sync::atomic::AtomicU64::new(1),
        }
    }

    pub async fn call(&self, method: &str, params: Value) -> Value {
        let id = self.next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let (tx, rx) = oneshot::channel();
        self.pending.lock().unwrap().insert(id, tx);
        let msg = json!({"id": id, "method": method, "params": params}).to_string();
        ws_send(&mut *self.wr.lock().await, 1, msg.as_bytes()).await;
        let v = within(Duration::from_secs(30), method, rx)
            .await
            .expect("DevTools closed the session");
        assert!(v.get("error").is_none(), "{method} failed: {v}");
        v["result"].clone()
    }

    /// Evaluate an expression in the page and return its value.
    pub async fn eval(&self, expr: &str) -> Value {
        let r = self
            .call(
                "Runtime.evaluate",
                json!({"expression": expr, "returnByValue": true, "awaitPromise": true}),
            )
            .await;
        assert!(
            r.get("exceptionDetails").is_none(),
            "`{expr}` threw: {}",
            r["exceptionDetails"]
        );
        r["result"]["value"].clone()
    }

    /// Poll `expr` until it is true.
    pub async fn wait_for(&self, expr: &str, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        loop {
            if self.eval(expr).await == Value::Bool(true) {
                return;
            }
            if Instant::now() >= deadline {
                let page = self
                    .eval("location.href + '\\n' + document.title + '\\n' + (document.body ? document.body.innerText.slice(0, 400) : '')")
                    .await;
                let events = self.events.lock().unwrap().clone();
                panic!("timed out waiting for `{expr}`\npage: {page}\nevents: {events:#?}");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// The whole page (beyond the viewport) as PNG bytes, for the pictures in
    /// `docs/`.
    pub async fn screenshot(&self) -> Vec<u8> {
        let shot = self
            .call(
                "Page.captureScreenshot",
                serde_json::json!({"format": "png", "captureBeyondViewport": true}),
            )
            .await;
        let png = base64_decode(shot["data"].as_str().expect("screenshot data"));
        assert!(png.starts_with(b"\x89PNG"), "not a PNG");
        png
    }

    /// Console errors, uncaught exceptions and error log entries so far.
    pub fn problems(&self) -> Vec<Value> {
        self.events
            .lock()
            .unwrap()
            .iter()
            .filter(|e| match e["method"].as_str() {
                Some("Runtime.exceptionThrown") => true,
                Some("Runtime.consoleAPICalled") => {
                    matches!(e["params"]["type"].as_str(), Some("error" | "assert"))
                }
                Some("Log.entryAdded") => e["params"]["entry"]["level"] == "error",
                _ => false,
            })
            .cloned()
            .collect()
    }
}

// ---------------------------------------------------------------------------
// Chromium
// ---------------------------------------------------------------------------

pub struct Browser {
    _child: tokio::process::Child,
    _profile: TempDir,
    devtools: String,
}

pub fn find_chromium() -> Option<std::path::PathBuf> {
    ["chromium", "chromium-browser", "google-chrome"]
        .iter()
        .find_map(|name| {
            std::env::var_os("PATH").and_then(|paths| {
                std::env::split_paths(&paths)
                    .map(|d| d.join(name))
                    .find(|p| p.is_file())
            })
        })
}

/// Debian's Chromium; installed on first use where the test runs as root (as on a
/// fresh machine of this project's kind), so `cargo test --workspace` needs no
/// set-up step of its own. The page tests run as separate processes at once, so
/// the install is taken under one file lock (the first installs, the others wait
/// and find it installed) and waits for apt's own locks rather than failing on
/// them.
pub fn chromium_path() -> std::path::PathBuf {
    if let Some(p) = find_chromium() {
        return p;
    }
    let lock = std::env::temp_dir().join("brownout-chromium-install.lock");
    let installed = std::process::Command::new("flock")
        .arg(&lock)
        .args([
            "sh",
            "-c",
            "command -v chromium >/dev/null || { apt-get -o DPkg::Lock::Timeout=600 update -qq \
             && DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 install -y -qq chromium; }",
        ])
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    match find_chromium() {
        Some(p) if installed => p,
        _ => panic!(
            "headless Chromium is needed for the dashboard test and was not found, and \
             installing it failed: run `apt-get install -y chromium` (.ci/run does this)"
        ),
    }
}

pub async fn launch() -> Browser {
    let dir = TempDir::new();
    let mut child = tokio::process::Command::new(chromium_path())
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--no-default-browser-check",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--disable-extensions",
            "--disable-dev-shm-usage",
            "--hide-scrollbars",
            "--window-size=1440,1200",
            "--remote-debugging-address=127.0.0.1",
            "--remote-debugging-port=0",
        ])
        .arg(format!("--user-data-dir={}", dir.path().display()))
        .arg("about:blank")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("start chromium");
    let stderr = child.stderr.take().expect("chromium's stderr");
    let mut lines = BufReader::new(stderr).lines();
    let devtools = within(Duration::from_secs(30), "chromium's DevTools URL", async {
        let mut seen = String::new();
        loop {
            match lines.next_line().await {
                Ok(Some(l)) => {
                    if let Some(i) = l.find("ws://") {
                        if l.contains("DevTools listening on") {
                            return l[i..].trim().to_string();
                        }
                    }
                    seen.push_str(&l);
                    seen.push('\n');
                }
                _ => panic!("chromium exited before DevTools listened:\n{seen}"),
            }
        }
    })
    .await;
    // Keep draining stderr so chromium never blocks on a full pipe.
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    Browser {
        _child: child,
        _profile: dir,
        devtools,
    }
}

impl Browser {
    /// The DevTools WebSocket URL of the first page.
    pub async fn page_ws(&self) -> String {
        let hostport = self
            .devtools
            .strip_prefix("ws://")
            .and_then(|r| r.split('/').next())
            .expect("host:port in the DevTools URL")
            .to_string();
        let c = http1_client();
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let r = send(&c, get(format!("http://{hostport}/json/list")))
                .await
                .expect("DevTools /json/list");
            if let Some(p) = r
                .json()
                .as_array()
                .and_then(|a| a.iter().find(|t| t["type"] == "page").cloned())
            {
                return p["webSocketDebuggerUrl"]
                    .as_str()
                    .expect("a page WebSocket URL")
                    .to_string();
            }
            assert!(Instant::now() < deadline, "chromium opened no page");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

pub fn base64_decode(s: &str) -> Vec<u8> {
    let val = |c: u8| -> Option<u32> {
        Some(match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            _ => return None,
        } as u32)
    };
    let mut out = Vec::with_capacity(s.len() * 3 / 4);
    let (mut acc, mut bits) = (0u32, 0);
    for v in s.bytes().filter_map(val) {
        acc = (acc << 6) | v;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
        }
    }
    out
}
