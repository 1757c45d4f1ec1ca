//! Connections dropped before any exchange began (docs/records.md): they leave no record,
//! so `brownout_connections_rejected_total{reason}` counts them, and each is logged
//! at debug level. Every reason over real sockets, on the fast path and on hyper's.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use brownout::record::metrics::Rejection;
use brownout_faults::duration::DurationStr;
use brownout_integration_tests::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const STEP: Duration = Duration::from_secs(10);

/// Log lines written during this test binary's run.
fn logs() -> Arc<Mutex<Vec<u8>>> {
    static LOGS: OnceLock<Arc<Mutex<Vec<u8>>>> = OnceLock::new();
    LOGS.get_or_init(|| {
        let buf = Arc::new(Mutex::new(Vec::new()));
        #[derive(Clone)]
        struct W(Arc<Mutex<Vec<u8>>>);
        impl std::io::Write for W {
            fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
                self.0.lock().unwrap().extend_from_slice(b);
                Ok(b.len())
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
        let w = W(buf.clone());
        let _ = tracing_subscriber::fmt()
            .with_max_level(tracing::Level::DEBUG)
            .with_ansi(false)
            .with_writer(move || w.clone())
            .try_init();
        buf
    })
    .clone()
}

fn count(proxy: &TestProxy, r: Rejection) -> u64 {
    proxy.shared().metrics.rejected_count(r)
}

/// Wait until the proxy has counted `n` rejections for `r`.
async fn counted(proxy: &TestProxy, r: Rejection, n: u64) {
    within(STEP, &format!("{} counted {n} times", r.as_str()), async {
        while count(proxy, r) < n {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;
    assert_eq!(count(proxy, r), n, "{}", r.as_str());
}

/// Write `bytes` (possibly nothing), then read until the proxy closes.
async fn exchange(addr: SocketAddr, bytes: &[u8]) -> String {
    let mut c = TcpStream::connect(addr).await.unwrap();
    if !bytes.is_empty() {
        c.write_all(bytes).await.unwrap();
    }
    let mut out = Vec::new();
    let _ = within(STEP, "the proxy closes", c.read_to_end(&mut out)).await;
    String::from_utf8_lossy(&out).into_owned()
}

fn short_timeouts(b: ProxyBuilder) -> ProxyBuilder {
    b.limits(|l| {
        l.header_timeout = DurationStr(Duration::from_millis(200));
        l.idle_timeout = DurationStr(Duration::from_millis(300));
        l.tls_handshake_timeout = DurationStr(Duration::from_millis(200));
    })
}

fn on_path(b: ProxyBuilder, fast: bool) -> ProxyBuilder {
    b.config(|c| c.fast_path = fast)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_head_slower_than_header_timeout_is_counted_on_both_paths() {
    let logs = logs();
    let up = Upstream::start(|_req| async { reply(200, "ok") }).await;
    for fast in [true, false] {
        let proxy = on_path(short_timeouts(ProxyBuilder::new(up.url())), fast)
            .start()
            .await;
        // Silent, then half a head: both closed at header_timeout, unanswered.
        assert_eq!(exchange(proxy.addr, b"").await, "", "fast={fast}");
        counted(&proxy, Rejection::HeaderTimeout, 1).await;
        assert_eq!(
            exchange(proxy.addr, b"GET /slow HTTP/1.1\r\nHost: x\r\n").await,
            "",
            "fast={fast}"
        );
        counted(&proxy, Rejection::HeaderTimeout, 2).await;
        // A client that connects and leaves at once was not turned away.
        drop(TcpStream::connect(proxy.addr).await.unwrap());
        // Nor is a keep-alive connection closed when idle after its request.
        let mut c = TcpStream::connect(proxy.addr).await.unwrap();
        c.write_all(b"GET /one HTTP/1.1\r\nHost: x\r\n\r\n")
            .await
            .unwrap();
        let mut out = Vec::new();
        within(STEP, "the idle close", c.read_to_end(&mut out))
            .await
            .unwrap();
        assert!(out.starts_with(b"HTTP/1.1 200 "), "fast={fast}");
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert_eq!(count(&proxy, Rejection::HeaderTimeout), 2, "fast={fast}");
        // None of them is an exchange.
        assert_eq!(proxy.exactly_records(1).await[0]["path"], "/one");
        for r in [
            Rejection::BadRequest,
            Rejection::MaxConnections,
            Rejection::TlsHandshake,
        ] {
            assert_eq!(count(&proxy, r), 0, "fast={fast}: {}", r.as_str());
        }
    }
    let text = String::from_utf8_lossy(&logs.lock().unwrap()).into_owned();
    let line = text
        .lines()
        .find(|l| l.contains("connection rejected") && l.contains("header_timeout"))
        .unwrap_or_else(|| panic!("no debug line for the rejection in:\n{text}"));
    assert!(line.contains("DEBUG"), "{line}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_malformed_or_oversized_head_is_counted_on_both_paths() {
    let up = Upstream::start(|_req| async { reply(200, "ok") }).await;
    for fast in [true, false] {
        let proxy = on_path(ProxyBuilder::new(up.url()), fast).start().await;
        let forwarded = up.requests();
        let out = exchange(proxy.addr, b"NOT HTTP AT ALL\r\n\r\n").await;
        assert!(out.starts_with("HTTP/1.1 400 "), "fast={fast}: {out:?}");
        counted(&proxy, Rejection::BadRequest, 1).await;
        let out = exchange(
            proxy.addr,
            b"GET / HTTP/1.1\r\nHost: x\r\ncontent-length: 1\r\ncontent-length: 2\r\n\r\n",
        )
        .await;
        assert!(out.starts_with("HTTP/1.1 400 "), "fast={fast}: {out:?}");
        counted(&proxy, Rejection::BadRequest, 2).await;
        let mut big = b"GET / HTTP/1.1\r\nHost: x\r\nx-big: ".to_vec();
        big.extend(std::iter::repeat_n(b'a', 1 << 20));
        big.extend_from_slice(b"\r\n\r\n");
        let mut c = TcpStream::connect(proxy.addr).await.unwrap();
        // The proxy may stop reading (and reset) before all of it is written.
        let _ = c.write_all(&big).await;
        let mut out = Vec::new();
        let _ = within(STEP, "the oversized head's answer", c.read_to_end(&mut out)).await;
        counted(&proxy, Rejection::BadRequest, 3).await;
        assert_eq!(up.requests(), forwarded, "nothing was forwarded");
        assert!(proxy.records().is_empty());
        // The proxy still serves.
        let out = exchange(
            proxy.addr,
            b"GET /fine HTTP/1.1\r\nHost: x\r\nconnection: close\r\n\r\n",
        )
        .await;
        assert!(out.starts_with("HTTP/1.1 200 "), "fast={fast}: {out:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_over_max_connections_waits_then_is_counted() {
    let up = Upstream::start(|_req| async {
        tokio::time::sleep(Duration::from_millis(1500)).await;
        reply(200, "slow")
    })
    .await;
    for fast in [true, false] {
        let proxy = on_path(ProxyBuilder::new(up.url()), fast)
            .limits(|l| {
                l.max_connections = 1;
                l.header_timeout = DurationStr(Duration::from_millis(300));
            })
            .admin()
            .start()
            .await;
        // One connection holds the only slot while the upstream thinks.
        let addr = proxy.addr;
        let busy = tokio::spawn(async move {
            exchange(
                addr,
                b"GET /busy HTTP/1.1\r\nHost: x\r\nconnection: close\r\n\r\n",
            )
            .await
        });
        tokio::time::sleep(Duration::from_millis(200)).await;
        // The next one waits for a slot, gets none within header_timeout, is closed.
        let started = tokio::time::Instant::now();
        let out = exchange(proxy.addr, b"GET /turned-away HTTP/1.1\r\nHost: x\r\n\r\n").await;
        assert_eq!(out, "", "fast={fast}: not served");
        assert!(
            started.elapsed() < Duration::from_millis(1200),
            "fast={fast}: closed at header_timeout, not when the slot freed"
        );
        counted(&proxy, Rejection::MaxConnections, 1).await;
        let busy = within(STEP, "the busy one", busy).await.unwrap();
        assert!(busy.ends_with("slow"), "fast={fast}: {busy:?}");
        // With the slot free again, a new connection is served.
        let out = exchange(
            proxy.addr,
            b"GET /after HTTP/1.1\r\nHost: x\r\nconnection: close\r\n\r\n",
        )
        .await;
        assert!(out.ends_with("slow"), "fast={fast}: {out:?}");
        let (_, metrics) = proxy.admin_get("/metrics").await;
        assert!(
            metrics.contains("brownout_connections_rejected_total{reason=\"max_connections\"} 1\n"),
            "{metrics}"
        );
        for r in ["header_timeout", "bad_request", "tls_handshake"] {
            assert!(
                metrics.contains(&format!(
                    "brownout_connections_rejected_total{{reason=\"{r}\"}} 0\n"
                )),
                "{r}: {metrics}"
            );
        }
        let paths: Vec<String> = proxy
            .exactly_records(2)
            .await
            .iter()
            .map(|r| r["path"].as_str().unwrap_or("").to_string())
            .collect();
        assert!(!paths.contains(&"/turned-away".to_string()), "{paths:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_or_slow_tls_handshake_is_counted() {
    let certs = TestCerts::new();
    let up = Upstream::start(|_req| async { reply(200, "ok") }).await;
    let proxy = short_timeouts(ProxyBuilder::new(up.url()))
        .tls(&certs.cert_path, &certs.key_path)
        .start()
        .await;
    // Plain HTTP to the TLS port.
    let _ = exchange(proxy.addr, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").await;
    counted(&proxy, Rejection::TlsHandshake, 1).await;
    // Silent past tls_handshake_timeout.
    assert_eq!(exchange(proxy.addr, b"").await, "");
    counted(&proxy, Rejection::TlsHandshake, 2).await;
    // A TCP health check (connect, close) is not a failed handshake.
    drop(TcpStream::connect(proxy.addr).await.unwrap());
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(count(&proxy, Rejection::TlsHandshake), 2);
    // A good handshake, then no request: header_timeout, on hyper's path.
    let (mut tls, _) = certs.connect(proxy.addr, &[b"http/1.1"]).await;
    let mut out = Vec::new();
    let _ = within(STEP, "the proxy closes", tls.read_to_end(&mut out)).await;
    counted(&proxy, Rejection::HeaderTimeout, 1).await;
    // A bad request over TLS.
    let (mut tls, _) = certs.connect(proxy.addr, &[b"http/1.1"]).await;
    tls.write_all(b"NOT HTTP\r\n\r\n").await.unwrap();
    let mut out = Vec::new();
    let _ = within(STEP, "the 400", tls.read_to_end(&mut out)).await;
    assert!(
        out.starts_with(b"HTTP/1.1 400 "),
        "{:?}",
        String::from_utf8_lossy(&out)
    );
    counted(&proxy, Rejection::BadRequest, 1).await;
    assert!(proxy.records().is_empty());
}
