//! The shared harness for brownout's end-to-end tests.
//!
//! Everything runs over real sockets on `127.0.0.1:0`: purpose-made upstreams built
//! with hyper (or raw TCP, when a test needs to misbehave below HTTP), the proxy
//! started in-process through [`brownout::start`], and clients speaking HTTP/1.1 or
//! HTTP/2 (h2c prior knowledge, or TLS with ALPN). Panics inside test servers are
//! caught, answered with a 500, and re-raised in the test when the server handle is
//! checked or dropped, so a broken assertion in a handler never turns into a
//! confusing timeout.
//!
//! ```no_run
//! # async fn demo() {
//! use brownout_integration_tests::*;
//! let upstream = Upstream::start(|_req| async { reply(200, "hello") }).await;
//! let proxy = ProxyBuilder::new(upstream.url()).start().await;
//! let r = send(&http1_client(), get(proxy.url("/"))).await.unwrap();
//! assert_eq!(r.body, "hello");
//! # }
//! ```

pub mod browser;
pub mod grpc;

pub use grpc::{
    grpc_frame, grpc_messages, grpc_python, grpc_unary, GrpcEcho, GrpcReply, MilvusLite,
};

use std::any::Any;
use std::future::Future;
use std::net::SocketAddr;
use std::panic::AssertUnwindSafe;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use brownout::config::{FileConfig, LimitsConfig, ListenerConfig, RecordConfig, TlsConfig};
use brownout::{Running, StartOptions};
use bytes::Bytes;
use futures_util::FutureExt;
use http::{HeaderMap, Method, Request, Response, StatusCode, Uri, Version};
use http_body::{Body as HttpBody, Frame};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Empty, Full};
use hyper::body::Incoming;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

pub use brownout_faults::ApiKind;

/// Boxed error used by every body in the harness.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The one body type tests send and test upstreams answer with.
pub type Body = BoxBody<Bytes, BoxError>;

// ---------------------------------------------------------------------------
// Bodies
// ---------------------------------------------------------------------------

/// A complete body.
pub fn full(b: impl Into<Bytes>) -> Body {
    Full::new(b.into()).map_err(|never| match never {}).boxed()
}

/// An empty body.
pub fn empty() -> Body {
    Empty::<Bytes>::new()
        .map_err(|never| match never {})
        .boxed()
}

/// The sending half of a [`body_channel`]: the test decides when each chunk goes.
#[derive(Debug, Clone)]
pub struct BodyTx(mpsc::Sender<Result<Frame<Bytes>, BoxError>>);

impl BodyTx {
    /// Send one data chunk. Panics if the body was dropped.
    pub async fn send(&self, b: impl Into<Bytes>) {
        self.0
            .send(Ok(Frame::data(b.into())))
            .await
            .expect("the body's reader went away");
    }

    /// Send one data chunk; `false` if the body was dropped.
    pub async fn try_send(&self, b: impl Into<Bytes>) -> bool {
        self.0.send(Ok(Frame::data(b.into()))).await.is_ok()
    }

    /// End the body with an error (the peer sees an aborted body).
    pub async fn abort(&self) {
        let _ = self.0.send(Err("aborted by the test".into())).await;
    }
}

struct ChannelBody {
    rx: mpsc::Receiver<Result<Frame<Bytes>, BoxError>>,
}

impl HttpBody for ChannelBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        self.get_mut().rx.poll_recv(cx)
    }
}

/// A streaming body fed chunk by chunk; dropping every [`BodyTx`] ends it cleanly.
pub fn body_channel() -> (BodyTx, Body) {
    let (tx, rx) = mpsc::channel(16);
    (BodyTx(tx), ChannelBody { rx }.boxed())
}

/// Read a whole body.
pub async fn collect<B>(body: B) -> Result<Bytes, B::Error>
where
    B: HttpBody<Data = Bytes>,
{
    Ok(body.collect().await?.to_bytes())
}

/// Read the next data frame (skipping trailers); `None` at the end.
pub async fn next_chunk(body: &mut Incoming) -> Option<Result<Bytes, hyper::Error>> {
    loop {
        match body.frame().await? {
            Err(e) => return Some(Err(e)),
            Ok(f) => {
                if let Ok(d) = f.into_data() {
                    if !d.is_empty() {
                        return Some(Ok(d));
                    }
                }
            }
        }
    }
}

/// A response with a status and a complete body.
pub fn reply(status: u16, body: impl Into<Bytes>) -> Response<Body> {
    let mut r = Response::new(full(body));
    *r.status_mut() = StatusCode::from_u16(status).expect("valid status");
    r
}

// ---------------------------------------------------------------------------
// Panic capture for test servers
// ---------------------------------------------------------------------------

#[derive(Default)]
struct PanicSlot(Mutex<Option<Box<dyn Any + Send>>>);

impl PanicSlot {
    fn store(&self, p: Box<dyn Any + Send>) {
        let mut g = self.0.lock().unwrap_or_else(|e| e.into_inner());
        if g.is_none() {
            *g = Some(p);
        }
    }

    /// Re-raise a stored panic in the calling (test) thread.
    fn check(&self) {
        let p = self.0.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(p) = p {
            std::panic::resume_unwind(p);
        }
    }
}

// ---------------------------------------------------------------------------
// Upstreams
// ---------------------------------------------------------------------------

#[derive(Default)]
struct Stats {
    connections: AtomicUsize,
    requests: AtomicUsize,
    panic: PanicSlot,
}

/// A test upstream: a hyper server (HTTP/1.1 and h2c on one port, optionally TLS)
/// answering every request with the handler the test gave.
pub struct Upstream {
    pub addr: SocketAddr,
    scheme: &'static str,
    stats: Arc<Stats>,
    task: JoinHandle<()>,
}

impl std::fmt::Debug for Upstream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Upstream")
            .field("addr", &self.addr)
            .finish()
    }
}

/// Builder for [`Upstream`].
#[derive(Default)]
pub struct UpstreamBuilder {
    tls: Option<Arc<rustls::ServerConfig>>,
}

impl UpstreamBuilder {
    /// Serve TLS with this config (ALPN decides h2 or http/1.1).
    pub fn tls(mut self, cfg: Arc<rustls::ServerConfig>) -> Self {
        self.tls = Some(cfg);
        self
    }

    /// Bind `127.0.0.1:0` and serve `handler` for every request.
    pub async fn serve<F, Fut>(self, handler: F) -> Upstream
    where
        F: Fn(Request<Incoming>) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Response<Body>> + Send + 'static,
    {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind a test upstream");
        let addr = listener.local_addr().expect("local addr");
        let stats = Arc::new(Stats::default());
        let handler = Arc::new(handler);
        let tls = self.tls.map(tokio_rustls::TlsAcceptor::from);
        let scheme = if tls.is_some() { "https" } else { "http" };
        let st = stats.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                st.connections.fetch_add(1, Ordering::SeqCst);
                let _ = stream.set_nodelay(true);
                let (handler, st, tls) = (handler.clone(), st.clone(), tls.clone());
                tokio::spawn(async move {
                    let st2 = st.clone();
                    let svc = hyper::service::service_fn(move |req: Request<Incoming>| {
                        let (handler, st) = (handler.clone(), st2.clone());
                        st.requests.fetch_add(1, Ordering::SeqCst);
                        async move {
                            let resp = match AssertUnwindSafe(async move { handler(req).await })
                                .catch_unwind()
                                .await
                            {
                                Ok(r) => r,
                                Err(p) => {
                                    st.panic.store(p);
                                    reply(500, "test upstream panicked")
                                }
                            };
                            Ok::<_, std::convert::Infallible>(resp)
                        }
                    });
                    let builder =
                        hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
                    match tls {
                        None => {
                            let _ = builder.serve_connection(TokioIo::new(stream), svc).await;
                        }
                        Some(acc) => {
                            if let Ok(s) = acc.accept(stream).await {
                                let _ = builder.serve_connection(TokioIo::new(s), svc).await;
                            }
                        }
                    }
                });
            }
        });
        Upstream {
            addr,
            scheme,
            stats,
            task,
        }
    }
}

impl Upstream {
    pub fn builder() -> UpstreamBuilder {
        UpstreamBuilder::default()
    }

    /// A plain HTTP upstream serving `handler`.
    pub async fn start<F, Fut>(handler: F) -> Upstream
    where
        F: Fn(Request<Incoming>) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Response<Body>> + Send + 'static,
    {
        Self::builder().serve(handler).await
    }

    /// An upstream that records every request ([`Captures`]) and answers 200 with
    /// the request body echoed back.
    pub async fn echo() -> (Upstream, Captures) {
        let caps = Captures::default();
        let c = caps.clone();
        let up = Self::start(move |req| {
            let c = c.clone();
            async move {
                let cap = Captured::read(req).await;
                let body = cap.body.clone();
                c.0.lock().unwrap().push(cap);
                let mut r = reply(200, body);
                r.headers_mut()
                    .insert("x-upstream", "echo".parse().unwrap());
                r
            }
        })
        .await;
        (up, caps)
    }

    /// `http://127.0.0.1:PORT` (or `https://`).
    pub fn url(&self) -> String {
        format!("{}://{}", self.scheme, self.addr)
    }

    /// TCP connections accepted so far.
    pub fn connections(&self) -> usize {
        self.stats.connections.load(Ordering::SeqCst)
    }

    /// Requests received so far.
    pub fn requests(&self) -> usize {
        self.stats.requests.load(Ordering::SeqCst)
    }

    /// Re-raise a panic from the handler, if any.
    pub fn check(&self) {
        self.stats.panic.check();
    }
}

impl Drop for Upstream {
    fn drop(&mut self) {
        self.task.abort();
        if !std::thread::panicking() {
            self.stats.panic.check();
        }
    }
}

/// One request as an upstream saw it.
#[derive(Debug, Clone)]
pub struct Captured {
    pub method: Method,
    pub uri: Uri,
    pub version: Version,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Captured {
    /// Read a request completely.
    pub async fn read(req: Request<Incoming>) -> Captured {
        let (parts, body) = req.into_parts();
        let body = collect(body)
            .await
            .expect("read the request body at the upstream");
        Captured {
            method: parts.method,
            uri: parts.uri,
            version: parts.version,
            headers: parts.headers,
            body,
        }
    }

    /// All values of a header, as strings.
    pub fn header_all(&self, name: &str) -> Vec<String> {
        self.headers
            .get_all(name)
            .iter()
            .map(|v| v.to_str().unwrap_or("<bin>").to_string())
            .collect()
    }
}

/// Requests an echo upstream received, in order.
#[derive(Debug, Clone, Default)]
pub struct Captures(Arc<Mutex<Vec<Captured>>>);

impl Captures {
    pub fn all(&self) -> Vec<Captured> {
        self.0.lock().unwrap().clone()
    }

    /// Add a request (for custom upstreams that capture too).
    pub fn record(&self, c: Captured) {
        self.0.lock().unwrap().push(c);
    }

    pub fn len(&self) -> usize {
        self.0.lock().unwrap().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn last(&self) -> Captured {
        self.0
            .lock()
            .unwrap()
            .last()
            .cloned()
            .expect("the upstream saw no request")
    }
}

/// A raw TCP upstream: each accepted connection goes to the handler, which may
/// write anything (half a response, nothing at all) and drop the socket.
pub struct RawUpstream {
    pub addr: SocketAddr,
    stats: Arc<Stats>,
    task: JoinHandle<()>,
}

impl RawUpstream {
    pub async fn start<F, Fut>(handler: F) -> RawUpstream
    where
        F: Fn(TcpStream) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind a raw upstream");
        let addr = listener.local_addr().expect("local addr");
        let stats = Arc::new(Stats::default());
        let st = stats.clone();
        let handler = Arc::new(handler);
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                st.connections.fetch_add(1, Ordering::SeqCst);
                let (handler, st) = (handler.clone(), st.clone());
                tokio::spawn(async move {
                    if let Err(p) = AssertUnwindSafe(async move { handler(stream).await })
                        .catch_unwind()
                        .await
                    {
                        st.panic.store(p);
                    }
                });
            }
        });
        RawUpstream { addr, stats, task }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn connections(&self) -> usize {
        self.stats.connections.load(Ordering::SeqCst)
    }

    pub fn check(&self) {
        self.stats.panic.check();
    }
}

impl Drop for RawUpstream {
    fn drop(&mut self) {
        self.task.abort();
        if !std::thread::panicking() {
            self.stats.panic.check();
        }
    }
}

/// Read an HTTP/1.1 request head (up to the blank line) from a raw socket.
pub async fn read_request_head(s: &mut TcpStream) -> String {
    use tokio::io::AsyncReadExt;
    let mut buf = Vec::new();
    let mut b = [0u8; 1024];
    while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = s.read(&mut b).await.expect("read the request head");
        assert!(n > 0, "the proxy closed before sending a request head");
        buf.extend_from_slice(&b[..n]);
    }
    String::from_utf8_lossy(&buf).into_owned()
}

/// An address nothing listens on (bound, then released).
pub async fn closed_port_addr() -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let a = l.local_addr().expect("addr");
    drop(l);
    a
}

// ---------------------------------------------------------------------------
// The proxy
// ---------------------------------------------------------------------------

/// Builder for an in-process proxy with one listener on `127.0.0.1:0`.
#[derive(Debug, Clone)]
pub struct ProxyBuilder {
    config: FileConfig,
    profile: Option<String>,
    admin: bool,
    admin_token: Option<String>,
    config_path: Option<PathBuf>,
}

impl ProxyBuilder {
    /// One listener forwarding to `upstream` (`http://…` or `https://…`).
    pub fn new(upstream: impl Into<String>) -> Self {
        let mut config = FileConfig {
            listeners: vec![ListenerConfig {
                name: Some("test".into()),
                listen: "127.0.0.1:0".into(),
                upstream: upstream.into(),
                api: None,
                ..Default::default()
            }],
            mark_injected: true,
            ..Default::default()
        };
        config.admin.listen = "127.0.0.1:0".into();
        ProxyBuilder {
            config,
            profile: None,
            admin: false,
            admin_token: None,
            config_path: None,
        }
    }

    /// A profile as YAML text, applied at start-up (its phase clock starts then).
    pub fn profile(mut self, yaml: &str) -> Self {
        self.profile = Some(yaml.to_string());
        self
    }

    /// A profile file (`profile:` in the config): watched and hot-reloaded.
    pub fn profile_file(mut self, path: &Path) -> Self {
        self.config.profile = Some(path.to_path_buf());
        self
    }

    pub fn api(mut self, api: ApiKind) -> Self {
        self.config.listeners[0].api = Some(api);
        self
    }

    pub fn seed(mut self, seed: u64) -> Self {
        self.config.seed = Some(seed);
        self
    }

    /// Also serve the admin API on `127.0.0.1:0`.
    pub fn admin(mut self) -> Self {
        self.admin = true;
        self
    }

    /// Serve the admin API with this bearer token required on `/api/v1`.
    pub fn admin_token(mut self, token: &str) -> Self {
        self.admin = true;
        self.admin_token = Some(token.to_string());
        self
    }

    /// Write records as JSON lines to `path`.
    pub fn record(mut self, path: &Path) -> Self {
        self.config.record = RecordConfig {
            jsonl: Some(path.to_path_buf()),
            ..RecordConfig::default()
        };
        self
    }

    pub fn limits(mut self, f: impl FnOnce(&mut LimitsConfig)) -> Self {
        f(&mut self.config.limits);
        self
    }

    pub fn mark_injected(mut self, on: bool) -> Self {
        self.config.mark_injected = on;
        self
    }

    /// Terminate TLS for clients.
    pub fn tls(mut self, cert: &Path, key: &Path) -> Self {
        self.config.listeners[0].tls = Some(TlsConfig {
            cert: cert.to_path_buf(),
            key: key.to_path_buf(),
        });
        self
    }

    /// An extra root for an `https` upstream.
    pub fn upstream_ca(mut self, ca: &Path) -> Self {
        self.config.listeners[0].upstream_ca = Some(ca.to_path_buf());
        self
    }

    /// Change anything else in the config.
    pub fn config(mut self, f: impl FnOnce(&mut FileConfig)) -> Self {
        f(&mut self.config);
        self
    }

    pub async fn try_start(self) -> Result<TestProxy, brownout::server::StartError> {
        let running = brownout::start(StartOptions {
            config: self.config,
            config_path: self.config_path,
            builtin_profile: self.profile,
            admin_token: self.admin_token,
            no_admin: !self.admin,
            // Served as `brownout serve` serves: by worker threads of their own.
            workers: 2,
        })
        .await?;
        let addr = running.addr(None).expect("the proxy has a listener");
        let admin = running.admin;
        Ok(TestProxy {
            running: Some(running),
            addr,
            admin_addr: admin,
        })
    }

    pub async fn start(self) -> TestProxy {
        match self.try_start().await {
            Ok(p) => p,
            Err(e) => panic!("the proxy did not start: {e}"),
        }
    }
}

/// A running in-process proxy.
#[derive(Debug)]
pub struct TestProxy {
    running: Option<Running>,
    pub addr: SocketAddr,
    pub admin_addr: Option<SocketAddr>,
}

impl TestProxy {
    pub fn running(&self) -> &Running {
        self.running.as_ref().expect("the proxy is running")
    }

    pub fn shared(&self) -> &Arc<brownout::control::state::Shared> {
        &self.running().shared
    }

    /// `http://127.0.0.1:PORT{path}`.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// The admin API's base URL.
    pub fn admin_url(&self, path: &str) -> String {
        format!(
            "http://{}{path}",
            self.admin_addr.expect("start the proxy with .admin()")
        )
    }

    /// Records written so far (up to the last 1000), as JSON, oldest first.
    pub fn records(&self) -> Vec<serde_json::Value> {
        let rec = &self.shared().recorder;
        rec.settle(Duration::from_secs(5));
        rec.recent(usize::MAX)
            .iter()
            .map(|r| serde_json::to_value(r).expect("record serializes"))
            .collect()
    }

    /// Wait (up to 10 s) until at least `n` records exist, and return them all.
    pub async fn wait_records(&self, n: usize) -> Vec<serde_json::Value> {
        let rec = &self.shared().recorder;
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while (rec.submitted() as usize) + (rec.dropped() as usize) < n
            && tokio::time::Instant::now() < deadline
        {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let r = self.records();
        assert!(
            r.len() >= n,
            "expected at least {n} records, found {}: {r:#?}",
            r.len()
        );
        r
    }

    /// Wait for exactly `n` records: at least `n`, and no more after a pause.
    pub async fn exactly_records(&self, n: usize) -> Vec<serde_json::Value> {
        self.wait_records(n).await;
        tokio::time::sleep(Duration::from_millis(300)).await;
        let r = self.records();
        assert_eq!(r.len(), n, "expected exactly {n} records: {r:#?}");
        r
    }

    /// The one record with this request path (panics unless exactly one).
    pub async fn record_for(&self, path: &str) -> serde_json::Value {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        loop {
            let found: Vec<_> = self
                .records()
                .into_iter()
                .filter(|r| r["path"] == path)
                .collect();
            if found.len() == 1 {
                return found.into_iter().next().unwrap();
            }
            assert!(
                found.len() < 2,
                "more than one record for {path}: {found:#?}"
            );
            assert!(
                tokio::time::Instant::now() < deadline,
                "no record for {path}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// `POST` to the admin API; returns status and body.
    pub async fn admin_post(&self, path: &str) -> (StatusCode, String) {
        let r = send(
            &http1_client(),
            Request::post(self.admin_url(path)).body(empty()).unwrap(),
        )
        .await
        .expect("admin call");
        (r.status, String::from_utf8_lossy(&r.body).into_owned())
    }

    /// `GET` from the admin API; returns status and body.
    pub async fn admin_get(&self, path: &str) -> (StatusCode, String) {
        let r = send(&http1_client(), get(self.admin_url(path)))
            .await
            .expect("admin call");
        (r.status, String::from_utf8_lossy(&r.body).into_owned())
    }

    /// Graceful shutdown (records flushed).
    pub async fn shutdown(mut self) {
        if let Some(r) = self.running.take() {
            r.shutdown().await;
        }
    }
}

// ---------------------------------------------------------------------------
// Clients
// ---------------------------------------------------------------------------

/// A pooled HTTP/1.1 client (no automatic retries, so tests see what happened).
pub fn http1_client() -> Client<HttpConnector, Body> {
    Client::builder(TokioExecutor::new())
        .retry_canceled_requests(false)
        .build_http()
}

/// A pooled h2c (prior knowledge) client.
pub fn h2c_client() -> Client<HttpConnector, Body> {
    Client::builder(TokioExecutor::new())
        .retry_canceled_requests(false)
        .http2_only(true)
        .build_http()
}

/// A `GET` request with an empty body.
pub fn get(url: impl AsRef<str>) -> Request<Body> {
    Request::get(url.as_ref())
        .body(empty())
        .expect("valid request")
}

/// A `POST` request with a JSON body.
pub fn post_json(url: impl AsRef<str>, json: &serde_json::Value) -> Request<Body> {
    Request::post(url.as_ref())
        .header("content-type", "application/json")
        .body(full(json.to_string()))
        .expect("valid request")
}

/// A response read to the end.
#[derive(Debug, Clone)]
pub struct Reply {
    pub status: StatusCode,
    pub version: Version,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Reply {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!(
                "body is not JSON ({e}): {}",
                String::from_utf8_lossy(&self.body)
            )
        })
    }
}

/// Send and read the whole answer; any failure (headers or body) is an `Err`.
pub async fn send(
    client: &Client<HttpConnector, Body>,
    req: Request<Body>,
) -> Result<Reply, BoxError> {
    let resp = client.request(req).await?;
    read_reply(resp).await
}

/// Read a response to the end.
pub async fn read_reply(resp: Response<Incoming>) -> Result<Reply, BoxError> {
    let (parts, body) = resp.into_parts();
    let body = collect(body).await?;
    Ok(Reply {
        status: parts.status,
        version: parts.version,
        headers: parts.headers,
        body,
    })
}

/// A single HTTP/1.1 connection to `addr` (requests use origin-form URIs and need a
/// `host` header). The connection task is returned so a test can see it end.
pub async fn h1_conn(
    addr: SocketAddr,
) -> (
    hyper::client::conn::http1::SendRequest<Body>,
    JoinHandle<()>,
) {
    let tcp = TcpStream::connect(addr).await.expect("connect");
    let _ = tcp.set_nodelay(true);
    let (send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tcp))
        .await
        .expect("http1 handshake");
    let task = tokio::spawn(async move {
        let _ = conn.await;
    });
    (send, task)
}

/// A single h2c connection to `addr` (requests need absolute URIs).
pub async fn h2_conn(
    addr: SocketAddr,
) -> (
    hyper::client::conn::http2::SendRequest<Body>,
    JoinHandle<()>,
) {
    let tcp = TcpStream::connect(addr).await.expect("connect");
    let _ = tcp.set_nodelay(true);
    let (send, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tcp))
            .await
            .expect("h2 handshake");
    let task = tokio::spawn(async move {
        let _ = conn.await;
    });
    (send, task)
}

/// Write `request` (one or more raw, pipelined HTTP/1.1 requests, the last asking
/// for `connection: close`) on a new connection to `addr` and read everything until
/// the peer closes, within 10 s: for tests that must see the exact bytes on the wire.
pub async fn raw_exchange(addr: SocketAddr, request: &[u8], what: &str) -> Vec<u8> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut c = TcpStream::connect(addr).await.expect("connect");
    c.write_all(request).await.expect("write the request");
    let mut raw = Vec::new();
    within(Duration::from_secs(10), what, c.read_to_end(&mut raw))
        .await
        .expect("read until close");
    raw
}

/// Read from `s` until `buf` holds a whole HTTP/1.1 head; returns the head's length,
/// or `None` when the peer closes (or fails) first. For raw peers that answer by hand.
pub async fn read_until_head(s: &mut TcpStream, buf: &mut Vec<u8>) -> Option<usize> {
    use tokio::io::AsyncReadExt;
    loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            return Some(i + 4);
        }
        let mut b = [0u8; 4096];
        let n = s.read(&mut b).await.ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&b[..n]);
    }
}

/// Fail the test if `fut` takes longer than `d`.
pub async fn within<T>(d: Duration, what: &str, fut: impl Future<Output = T>) -> T {
    match tokio::time::timeout(d, fut).await {
        Ok(v) => v,
        Err(_) => panic!("{what}: did not finish within {d:?}"),
    }
}

// ---------------------------------------------------------------------------
// Temporary files and certificates
// ---------------------------------------------------------------------------

/// A temporary directory removed on drop.
#[derive(Debug)]
pub struct TempDir(PathBuf);

impl TempDir {
    pub fn new() -> TempDir {
        static N: AtomicUsize = AtomicUsize::new(0);
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        let p = std::env::temp_dir().join(format!(
            "brownout-it-{}-{}-{nanos}",
            std::process::id(),
            N.fetch_add(1, Ordering::SeqCst)
        ));
        std::fs::create_dir_all(&p).expect("create a temp dir");
        TempDir(p)
    }

    pub fn path(&self) -> &Path {
        &self.0
    }

    pub fn join(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }
}

impl Default for TempDir {
    fn default() -> Self {
        Self::new()
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A CA and a server certificate for `localhost` and `127.0.0.1`, made at test time,
/// as DER and as PEM files in a temp dir.
#[derive(Debug)]
pub struct TestCerts {
    pub dir: TempDir,
    pub ca_der: CertificateDer<'static>,
    pub cert_der: CertificateDer<'static>,
    pub key_der: Vec<u8>,
    pub ca_path: PathBuf,
    pub cert_path: PathBuf,
    pub key_path: PathBuf,
}

impl TestCerts {
    pub fn new() -> TestCerts {
        use rcgen::{
            BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer,
            KeyPair, KeyUsagePurpose,
        };
        let mut ca = CertificateParams::new(Vec::<String>::new()).expect("CA params");
        ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca.distinguished_name
            .push(DnType::CommonName, "brownout test CA");
        ca.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let ca_key = KeyPair::generate().expect("CA key");
        let ca_cert = ca.self_signed(&ca_key).expect("CA cert");
        let issuer = Issuer::new(ca, ca_key);

        let mut leaf =
            CertificateParams::new(vec!["localhost".to_string(), "127.0.0.1".to_string()])
                .expect("leaf params");
        leaf.distinguished_name
            .push(DnType::CommonName, "localhost");
        leaf.use_authority_key_identifier_extension = true;
        leaf.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        leaf.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        let leaf_key = KeyPair::generate().expect("leaf key");
        let leaf_cert = leaf.signed_by(&leaf_key, &issuer).expect("leaf cert");

        let dir = TempDir::new();
        let (ca_path, cert_path, key_path) = (
            dir.join("ca.pem"),
            dir.join("server.pem"),
            dir.join("server-key.pem"),
        );
        std::fs::write(&ca_path, ca_cert.pem()).expect("write ca.pem");
        std::fs::write(&cert_path, leaf_cert.pem()).expect("write server.pem");
        std::fs::write(&key_path, leaf_key.serialize_pem()).expect("write server-key.pem");
        TestCerts {
            dir,
            ca_der: ca_cert.der().clone(),
            cert_der: leaf_cert.der().clone(),
            key_der: leaf_key.serialize_der(),
            ca_path,
            cert_path,
            key_path,
        }
    }

    fn provider() -> Arc<rustls::crypto::CryptoProvider> {
        Arc::new(rustls::crypto::ring::default_provider())
    }

    /// A server config for the leaf certificate, offering these ALPN protocols.
    pub fn server_config(&self, alpn: &[&[u8]]) -> Arc<rustls::ServerConfig> {
        let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(self.key_der.clone()));
        let mut cfg = rustls::ServerConfig::builder_with_provider(Self::provider())
            .with_safe_default_protocol_versions()
            .expect("protocol versions")
            .with_no_client_auth()
            .with_single_cert(vec![self.cert_der.clone(), self.ca_der.clone()], key)
            .expect("server cert");
        cfg.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
        Arc::new(cfg)
    }

    /// A client config trusting only the test CA, offering these ALPN protocols.
    pub fn client_config(&self, alpn: &[&[u8]]) -> Arc<rustls::ClientConfig> {
        let mut roots = rustls::RootCertStore::empty();
        roots.add(self.ca_der.clone()).expect("add CA");
        let mut cfg = rustls::ClientConfig::builder_with_provider(Self::provider())
            .with_safe_default_protocol_versions()
            .expect("protocol versions")
            .with_root_certificates(roots)
            .with_no_client_auth();
        cfg.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
        Arc::new(cfg)
    }

    /// Connect with TLS to `addr` as `localhost`; returns the stream and the
    /// negotiated ALPN protocol.
    pub async fn connect(
        &self,
        addr: SocketAddr,
        alpn: &[&[u8]],
    ) -> (tokio_rustls::client::TlsStream<TcpStream>, Option<Vec<u8>>) {
        let tcp = TcpStream::connect(addr).await.expect("connect");
        let conn = tokio_rustls::TlsConnector::from(self.client_config(alpn));
        let name = ServerName::try_from("localhost").expect("server name");
        let tls = conn
            .connect(name, tcp)
            .await
            .expect("TLS handshake with the proxy");
        let proto = tls.get_ref().1.alpn_protocol().map(|p| p.to_vec());
        (tls, proto)
    }
}

impl Default for TestCerts {
    fn default() -> Self {
        Self::new()
    }
}

/// The repository root (the venv and the Python scripts live there).
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_default()
}

/// The `brownout` binary of this build (next to the test executables'
/// `deps/` folder), built first when a test run did not build it (`cargo test -p
/// brownout-integration-tests` alone).
pub fn brownout_bin() -> PathBuf {
    static BIN: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    BIN.get_or_init(|| {
        let exe = std::env::current_exe().expect("the test executable's path");
        let profile_dir = exe
            .parent()
            .and_then(Path::parent)
            .expect("target/<profile>/deps")
            .to_path_buf();
        let bin = profile_dir.join("brownout");
        if !bin.exists() {
            let mut cmd = std::process::Command::new(env!("CARGO"));
            cmd.args(["build", "-p", "brownout", "--bin", "brownout"]);
            if profile_dir.ends_with("release") {
                cmd.arg("--release");
            }
            let st = cmd.current_dir(repo_root()).status().expect("cargo build");
            assert!(st.success(), "cannot build the brownout binary");
        }
        bin
    })
    .clone()
}

/// The `rule/fault` names of a record's `faults` or `faults_skipped` list.
pub fn fault_names(rec: &serde_json::Value, field: &str) -> Vec<String> {
    rec[field]
        .as_array()
        .unwrap_or_else(|| panic!("{field} is not a list: {rec:#}"))
        .iter()
        .map(|f| {
            format!(
                "{}/{}",
                f["rule"].as_str().unwrap_or("?"),
                f["fault"].as_str().unwrap_or("?")
            )
        })
        .collect()
}

/// A cached Python environment (`sdk`: the official SDKs, `chromadb`, LiteLLM,
/// qdrant-client, websockets, uvicorn; `llama`: llama-cpp-python's server and its
/// model), built on first use by `integration-tests/python/venv.sh` from the pinned
/// requirements into `${XDG_CACHE_HOME:-~/.cache}/brownout/`, outside the clone, so
/// every checkout and CI run on the machine shares it. Once per test binary.
pub fn cached_venv(name: &str) -> PathBuf {
    static VENVS: Mutex<Vec<(String, PathBuf)>> = Mutex::new(Vec::new());
    let mut known = VENVS.lock().unwrap_or_else(|p| p.into_inner());
    if let Some((_, dir)) = known.iter().find(|(n, _)| n == name) {
        return dir.clone();
    }
    let out = std::process::Command::new("bash")
        .arg(repo_root().join("integration-tests/python/venv.sh"))
        .arg(name)
        .stderr(std::process::Stdio::inherit())
        .output()
        .expect("run integration-tests/python/venv.sh");
    assert!(
        out.status.success(),
        "cannot build the `{name}` Python environment (integration-tests/python/venv.sh {name})"
    );
    let dir = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
    known.push((name.to_string(), dir.clone()));
    dir
}

/// The python of the `sdk` environment ([`cached_venv`]): the official SDKs, and
/// `chromadb`, whose package also brings the `chroma` server.
pub fn sdk_python() -> PathBuf {
    cached_venv("sdk").join("bin/python")
}

/// A free port on 127.0.0.1 (bound, then released) for a server started as a
/// separate process.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// llama-cpp-python's OpenAI server with its defaults (uvicorn, 5 s keep-alive),
/// serving the Gemma 3 270M GGUF of the `llama` environment ([`cached_venv`]) on 2
/// threads, seeded; it answers one request at a time.
pub async fn start_llama_server() -> ChildServer {
    let venv = tokio::task::spawn_blocking(|| cached_venv("llama"))
        .await
        .unwrap();
    let model = venv.join("model.gguf");
    let port = free_port();
    let port_s = port.to_string();
    ChildServer::start(
        "llama-cpp-python",
        &venv.join("bin/python"),
        &[
            "-m",
            "llama_cpp.server",
            "--model",
            model.to_str().unwrap(),
            "--chat_format",
            "gemma",
            "--n_ctx",
            "1024",
            "--n_threads",
            "2",
            "--seed",
            "7",
            "--host",
            "127.0.0.1",
            "--port",
            &port_s,
        ],
        port,
        "/v1/models",
        Duration::from_secs(120),
    )
    .await
}

/// A server run as a child process (uvicorn, llama-cpp-python, Milvus Lite...),
/// killed when dropped.
pub struct ChildServer {
    child: tokio::process::Child,
    pub port: u16,
    what: String,
}

impl ChildServer {
    /// Start `program args` and wait (up to `ready_within`) until `GET ready_path`
    /// on `port` answers 2xx; a child that exits first fails the test with its
    /// status.
    pub async fn start(
        what: &str,
        program: &Path,
        args: &[&str],
        port: u16,
        ready_path: &str,
        ready_within: Duration,
    ) -> ChildServer {
        let child = tokio::process::Command::new(program)
            .args(args)
            .current_dir(repo_root())
            .stdin(std::process::Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {what} ({}): {e}", program.display()));
        let mut server = ChildServer {
            child,
            port,
            what: what.to_string(),
        };
        let client = http1_client();
        let url = format!("http://127.0.0.1:{port}{ready_path}");
        let deadline = tokio::time::Instant::now() + ready_within;
        loop {
            if let Ok(Some(st)) = server.child.try_wait() {
                panic!("{what} exited before it was ready: {st}");
            }
            if let Ok(r) = send(&client, get(&url)).await {
                if r.status.is_success() {
                    return server;
                }
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "{what} not ready on {url} within {ready_within:?}"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }
}

impl Drop for ChildServer {
    fn drop(&mut self) {
        if let Err(e) = self.child.start_kill() {
            eprintln!("cannot stop {}: {e}", self.what);
        }
    }
}

/// Run a Python script of `integration-tests/python/` with `python` and return
/// the JSON objects it printed, one per line; a failing script fails the test
/// with its output.
pub async fn run_python_json(
    python: &Path,
    script: &str,
    args: &[String],
) -> Vec<serde_json::Value> {
    let out = tokio::process::Command::new(python)
        .arg(repo_root().join("integration-tests/python").join(script))
        .args(args)
        .current_dir(repo_root())
        .stdin(std::process::Stdio::null())
        .kill_on_drop(true)
        .output()
        .await
        .unwrap_or_else(|e| panic!("cannot run {script}: {e}"));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{script} failed ({}):\n{stdout}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
        .lines()
        .filter(|l| l.starts_with('{'))
        .map(|l| {
            serde_json::from_str(l).unwrap_or_else(|e| panic!("{script} printed bad JSON {l}: {e}"))
        })
        .collect()
}

/// A simulated OpenAI upstream whose tokens come `step` apart (first token after
/// `step` too), with a proxy in front of it: OpenAI API, admin port, `profile`.
pub async fn sim_behind_proxy(
    step: Duration,
    profile: &str,
) -> (brownout_sim::SimHandle, TestProxy) {
    let sim = brownout_sim::spawn(
        "127.0.0.1:0".parse().expect("a socket address"),
        brownout_sim::SimConfig {
            ttft: step,
            itl: step,
            ..Default::default()
        },
    )
    .await
    .expect("start the simulated upstream");
    let proxy = ProxyBuilder::new(format!("http://{}", sim.addr))
        .api(brownout_faults::ApiKind::Openai)
        .admin()
        .profile(profile)
        .start()
        .await;
    (sim, proxy)
}

// ---------------------------------------------------------------------------
// Drills
// ---------------------------------------------------------------------------

/// A simulated OpenAI server behind an in-process proxy whose admin API wants
/// `token`, and the scenario `target:` that drives that proxy as a running one,
/// the token read from the environment variable `token_env`.
pub async fn proxied_sim(
    token: &str,
    token_env: &str,
) -> (brownout_sim::SimHandle, TestProxy, String) {
    let sim = brownout_sim::spawn(
        "127.0.0.1:0".parse().expect("an address"),
        brownout_sim::SimConfig::default(),
    )
    .await
    .expect("start the sim");
    let proxy = ProxyBuilder::new(format!("http://{}", sim.addr))
        .api(brownout_faults::ApiKind::Openai)
        .admin_token(token)
        .start()
        .await;
    let target = format!(
        "{{url: \"{}\", admin: \"{}\", token_env: {token_env}}}",
        proxy.url(""),
        proxy.admin_url("")
    );
    (sim, proxy, target)
}

/// `brownout drill SCENARIO --report-dir REPORT` with `env` set, within `limit`.
pub async fn run_drill(
    scenario: &Path,
    report: &Path,
    env: &[(&str, &str)],
    limit: Duration,
) -> std::process::Output {
    let mut cmd = tokio::process::Command::new(brownout_bin());
    cmd.arg("drill")
        .arg(scenario)
        .arg("--report-dir")
        .arg(report)
        .env("RUST_LOG", "warn");
    for (k, v) in env {
        cmd.env(k, v);
    }
    within(limit, "brownout drill", cmd.output())
        .await
        .expect("run brownout drill")
}
