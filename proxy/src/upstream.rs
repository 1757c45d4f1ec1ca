//! The pooled client each listener forwards through.
//!
//! One keep-alive pool per listener (its upstream, its CA). HTTP/2 is used when an
//! `https` upstream offers it through ALPN; plain `http` upstreams get HTTP/1.1 with
//! reused connections, which is what model servers expect, driven on each
//! request's own task ([`DirectPool`]).

use std::future::Future;
use std::path::Path;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use http::uri::{Authority, Scheme};
use http::{HeaderValue, Request, Response, Uri};
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;
use hyper::client::conn::http1;
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioIo;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use tokio::net::TcpStream;

use crate::body::ReqBody;
use crate::tls::{client_config, TlsError};

/// Where a listener forwards, parsed once at start-up.
#[derive(Debug, Clone)]
pub struct Upstream {
    pub scheme: Scheme,
    pub authority: Authority,
    /// Path prefix of the upstream URL (`http://h/prefix`), without trailing `/`.
    pub base_path: String,
    /// The `Host` header sent upstream: always the upstream's, never the client's.
    pub host: HeaderValue,
    pub display: String,
}

/// Why an upstream URL is unusable.
#[derive(Debug, thiserror::Error)]
pub enum UpstreamError {
    #[error("upstream `{0}`: expected http://HOST[:PORT] or https://HOST[:PORT]")]
    BadUrl(String),
    #[error(transparent)]
    Tls(#[from] TlsError),
}

impl Upstream {
    pub fn parse(url: &str) -> Result<Self, UpstreamError> {
        let bad = || UpstreamError::BadUrl(url.to_string());
        let uri: Uri = url.parse().map_err(|_| bad())?;
        let scheme = uri.scheme().cloned().ok_or_else(bad)?;
        if scheme != Scheme::HTTP && scheme != Scheme::HTTPS {
            return Err(bad());
        }
        let authority = uri.authority().cloned().ok_or_else(bad)?;
        let base_path = uri.path().trim_end_matches('/').to_string();
        let host = HeaderValue::from_str(authority.as_str()).map_err(|_| bad())?;
        Ok(Upstream {
            scheme,
            authority,
            base_path,
            host,
            display: url.trim_end_matches('/').to_string(),
        })
    }

    /// The upstream URI for a request: its base path, then the request's path and
    /// query; with the upstream's scheme and authority when `absolute` (the pooled
    /// client's form), alone otherwise (HTTP/1.1's origin form, what a direct
    /// connection sends). Without a base path the request's path is reused as is
    /// (no copy, no re-parse).
    pub fn uri_for(&self, request: &Uri, absolute: bool) -> Result<Uri, http::Error> {
        let mut parts = http::uri::Parts::default();
        if absolute {
            parts.scheme = Some(self.scheme.clone());
            parts.authority = Some(self.authority.clone());
        }
        let pq = request
            .path_and_query()
            .cloned()
            .unwrap_or_else(|| http::uri::PathAndQuery::from_static("/"));
        parts.path_and_query = Some(if self.base_path.is_empty() {
            pq
        } else {
            http::uri::PathAndQuery::try_from(format!("{}{}", self.base_path, pq.as_str()))?
        });
        Ok(Uri::from_parts(parts)?)
    }
}

/// hyper-util's pooled client, for `https` upstreams (TLS, HTTP/2 through ALPN).
type LegacyClient = Client<HttpsConnector<HttpConnector>, ReqBody>;

/// The client a listener forwards through. Plain `http` upstreams go through
/// [`DirectPool`]: HTTP/1.1 connections driven on the request's own task, so a
/// proxied exchange costs no hand-off to a connection task and back (the largest
/// per-request cost of a general-purpose pooled client). `https` upstreams use
/// hyper-util's pooled client, for TLS and HTTP/2.
#[derive(Clone)]
pub enum UpstreamClient {
    /// Plain HTTP/1.1, on the request's task.
    Direct(Arc<DirectPool>),
    /// TLS (HTTP/1.1 or HTTP/2).
    Pooled(Box<LegacyClient>),
}

impl std::fmt::Debug for UpstreamClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            UpstreamClient::Direct(_) => "UpstreamClient::Direct",
            UpstreamClient::Pooled(_) => "UpstreamClient::Pooled",
        })
    }
}

/// Why an upstream exchange got no response.
#[derive(Debug, thiserror::Error)]
pub enum SendError {
    /// No connection could be made.
    #[error("cannot connect: {0}")]
    Connect(#[source] std::io::Error),
    /// HTTP/1.1 on a direct connection failed.
    #[error(transparent)]
    Http(#[from] hyper::Error),
    /// The pooled (TLS) client failed.
    #[error(transparent)]
    Pooled(#[from] hyper_util::client::legacy::Error),
}

impl SendError {
    /// True when no connection was made, so nothing reached the upstream.
    pub fn is_connect(&self) -> bool {
        match self {
            SendError::Connect(_) => true,
            SendError::Http(_) => false,
            SendError::Pooled(e) => e.is_connect(),
        }
    }
}

impl UpstreamClient {
    /// The pool of a plain-HTTP upstream, which the HTTP/1.1 fast path also uses.
    pub fn direct_pool(&self) -> Option<Arc<DirectPool>> {
        match self {
            UpstreamClient::Direct(p) => Some(p.clone()),
            UpstreamClient::Pooled(_) => None,
        }
    }

    /// The request URI this client sends for `request` to `upstream`.
    pub fn uri_for(&self, upstream: &Upstream, request: &Uri) -> Result<Uri, http::Error> {
        upstream.uri_for(request, matches!(self, UpstreamClient::Pooled(_)))
    }

    /// Send `req` (its URI from [`UpstreamClient::uri_for`], `Host` set) and wait for
    /// the response head.
    pub async fn request(&self, req: Request<ReqBody>) -> Result<Response<UpBody>, SendError> {
        match self {
            UpstreamClient::Direct(pool) => pool.send(req).await,
            UpstreamClient::Pooled(c) => Ok(c.request(req).await?.map(UpBody::Pooled)),
        }
    }
}

/// Build the client for an upstream: direct HTTP/1.1 for `http`, TLS with webpki
/// roots (+ `upstream_ca`) and a keep-alive pool for `https`.
pub fn client(
    upstream: &Upstream,
    extra_ca: Option<&Path>,
) -> Result<UpstreamClient, UpstreamError> {
    if upstream.scheme == Scheme::HTTP {
        if extra_ca.is_some() {
            // Not used over plain HTTP, but a broken file is still a broken config.
            client_config(extra_ca)?;
        }
        let port = upstream.authority.port_u16().unwrap_or(80);
        let addr = format!("{}:{port}", upstream.authority.host());
        return Ok(UpstreamClient::Direct(Arc::new(DirectPool::new(addr))));
    }
    let tls = client_config(extra_ca)?;
    let mut http = HttpConnector::new();
    http.enforce_http(false);
    http.set_nodelay(true);
    http.set_keepalive(Some(Duration::from_secs(60)));
    http.set_connect_timeout(Some(CONNECT_TIMEOUT));
    let https = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(tls)
        .https_or_http()
        .enable_all_versions()
        .wrap_connector(http);
    Ok(UpstreamClient::Pooled(Box::new(
        Client::builder(TokioExecutor::new())
            .http1_max_buf_size(MAX_RESPONSE_HEAD)
            .http1_max_headers(MAX_RESPONSE_HEADERS)
            .pool_idle_timeout(IDLE_TIMEOUT)
            .pool_max_idle_per_host(usize::MAX)
            .pool_timer(TokioTimer::new())
            .timer(TokioTimer::new())
            .build(https),
    )))
}

const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Longest upstream response head accepted; a longer one is a broken upstream.
/// hyper's own default (8 KiB + 100 × 4 KiB), set here explicitly because the fast
/// path enforces the same limit, so an answer gets one verdict whichever path
/// relays it.
pub(crate) const MAX_RESPONSE_HEAD: usize = 8192 + 4096 * 100;
/// Most header lines accepted in an upstream response (hyper's default), shared
/// with the fast path for the same reason.
pub(crate) const MAX_RESPONSE_HEADERS: usize = 100;
/// Idle upstream connections older than this are not reused (and closed).
const IDLE_TIMEOUT: Duration = Duration::from_secs(90);
/// At most this many idle connections are kept per upstream.
const MAX_IDLE: usize = 4096;

type Conn = http1::Connection<TokioIo<TcpStream>, ReqBody>;

/// One HTTP/1.1 connection: the handle requests go through, and the connection
/// future that does the I/O, polled by whichever task uses the connection.
pub struct Lease {
    sender: http1::SendRequest<ReqBody>,
    /// `None` once the connection ended (closed, or failed). It is dropped at
    /// once: dropping it is what tells a request still waiting on it that no
    /// answer will come.
    conn: Option<Pin<Box<Conn>>>,
}

impl Lease {
    /// Drive the connection's I/O; true while it lives.
    fn drive(&mut self, cx: &mut Context<'_>) -> bool {
        if let Some(c) = self.conn.as_mut() {
            if let Poll::Ready(r) = c.as_mut().poll(cx) {
                if let Err(e) = r {
                    tracing::debug!(error = %e, "upstream connection ended");
                }
                self.conn = None;
            }
        }
        self.conn.is_some()
    }

    fn done(&self) -> bool {
        self.conn.is_none()
    }
}

/// A plain connection to the upstream as the HTTP/1.1 fast path uses it: the
/// socket and the bytes read from it and not yet used.
pub struct RawConn {
    pub stream: TcpStream,
    pub buf: BytesMut,
}

/// Idle HTTP/1.1 connections to one plain-HTTP upstream, lent to one exchange at
/// a time and driven on that exchange's task. The full path's connections (hyper's
/// client state) and the fast path's (raw sockets) are kept apart.
pub struct DirectPool {
    addr: String,
    idle: Mutex<Vec<(Lease, Instant)>>,
    raw: Mutex<Vec<(RawConn, Instant)>>,
}

impl DirectPool {
    fn new(addr: String) -> Self {
        Self {
            addr,
            idle: Mutex::new(Vec::new()),
            raw: Mutex::new(Vec::new()),
        }
    }

    /// An idle raw connection, most recently used first (its socket is warmest).
    pub fn take_raw(&self) -> Option<RawConn> {
        let mut idle = self.raw.lock().unwrap_or_else(|p| p.into_inner());
        while let Some((conn, since)) = idle.pop() {
            if since.elapsed() < IDLE_TIMEOUT {
                return Some(conn);
            }
        }
        None
    }

    /// Keep a raw connection whose last answer was read to its end.
    pub fn put_raw(&self, mut conn: RawConn) {
        conn.buf.clear();
        let mut idle = self.raw.lock().unwrap_or_else(|p| p.into_inner());
        if idle.len() < MAX_IDLE {
            idle.push((conn, Instant::now()));
        }
    }

    /// A new raw connection.
    pub async fn connect_raw(&self) -> std::io::Result<RawConn> {
        let stream = self.dial().await?;
        Ok(RawConn {
            stream,
            buf: BytesMut::new(),
        })
    }

    async fn dial(&self) -> std::io::Result<TcpStream> {
        let stream = tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(&self.addr))
            .await
            .map_err(|_| {
                std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    format!("no connection to {} within {CONNECT_TIMEOUT:?}", self.addr),
                )
            })??;
        let _ = stream.set_nodelay(true);
        Ok(stream)
    }

    fn take(&self) -> Option<Lease> {
        let mut idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
        while let Some((lease, since)) = idle.pop() {
            if !lease.done() && !lease.sender.is_closed() && since.elapsed() < IDLE_TIMEOUT {
                return Some(lease);
            }
        }
        None
    }

    fn put(&self, lease: Lease) {
        if lease.done() || lease.sender.is_closed() {
            return;
        }
        let mut idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
        if idle.len() < MAX_IDLE {
            idle.push((lease, Instant::now()));
        }
    }

    async fn connect(&self) -> Result<Lease, SendError> {
        let stream = self.dial().await.map_err(SendError::Connect)?;
        let (sender, conn) = http1::Builder::new()
            .max_buf_size(MAX_RESPONSE_HEAD)
            .max_headers(MAX_RESPONSE_HEADERS)
            .handshake(TokioIo::new(stream))
            .await?;
        Ok(Lease {
            sender,
            conn: Some(Box::pin(conn)),
        })
    }

    async fn send(self: &Arc<Self>, req: Request<ReqBody>) -> Result<Response<UpBody>, SendError> {
        let mut lease = match self.take() {
            Some(l) => l,
            None => self.connect().await?,
        };
        // Wait until the connection takes a request, driving its I/O meanwhile.
        std::future::poll_fn(|cx| {
            let alive = lease.drive(cx);
            match lease.sender.poll_ready(cx) {
                Poll::Pending if !alive => Poll::Ready(Err(None)),
                Poll::Pending => Poll::Pending,
                Poll::Ready(r) => Poll::Ready(r.map_err(Some)),
            }
        })
        .await
        .map_err(|e| match e {
            Some(e) => SendError::Http(e),
            None => SendError::Connect(std::io::Error::new(
                std::io::ErrorKind::ConnectionAborted,
                "the pooled connection closed before the request was sent",
            )),
        })?;
        let mut response = std::pin::pin!(lease.sender.send_request(req));
        let resp = std::future::poll_fn(|cx| {
            lease.drive(cx);
            response.as_mut().poll(cx)
        })
        .await?;
        Ok(resp.map(|body| UpBody::Direct {
            body,
            lease: Some(lease),
            pool: Arc::clone(self),
            failed: None,
        }))
    }
}

/// An upstream response body. A direct one drives its connection as it is read
/// and, read to the end, gives the connection back to the pool; dropped early, it
/// closes the connection (its remaining bytes are unread).
pub enum UpBody {
    /// Read over a direct HTTP/1.1 connection.
    Direct {
        body: Incoming,
        lease: Option<Lease>,
        pool: Arc<DirectPool>,
        /// A failure held back for one poll, so that bytes that arrived before it
        /// are flushed to the client before the abort.
        failed: Option<hyper::Error>,
    },
    /// From the pooled (TLS) client.
    Pooled(Incoming),
}

impl std::fmt::Debug for UpBody {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            UpBody::Direct { body, .. } => f.debug_tuple("UpBody::Direct").field(body).finish(),
            UpBody::Pooled(b) => f.debug_tuple("UpBody::Pooled").field(b).finish(),
        }
    }
}

impl Body for UpBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        match self.get_mut() {
            UpBody::Pooled(b) => Pin::new(b).poll_frame(cx),
            UpBody::Direct {
                body,
                lease,
                pool,
                failed,
            } => {
                if let Some(e) = failed.take() {
                    return Poll::Ready(Some(Err(e)));
                }
                if let Some(l) = lease.as_mut() {
                    l.drive(cx);
                }
                match Pin::new(&mut *body).poll_frame(cx) {
                    Poll::Ready(None) => {
                        if let Some(l) = lease.take() {
                            pool.put(l);
                        }
                        Poll::Ready(None)
                    }
                    Poll::Ready(Some(Err(e))) => {
                        // The connection failed in the same read that brought the
                        // last bytes: let the client have them first.
                        *lease = None;
                        *failed = Some(e);
                        cx.waker().wake_by_ref();
                        Poll::Pending
                    }
                    Poll::Ready(Some(Ok(frame))) => {
                        // Readers stop at the end the body announces: the last
                        // frame already frees the connection.
                        if body.is_end_stream() {
                            if let Some(l) = lease.take() {
                                pool.put(l);
                            }
                        }
                        Poll::Ready(Some(Ok(frame)))
                    }
                    Poll::Pending => Poll::Pending,
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            UpBody::Pooled(b) | UpBody::Direct { body: b, .. } => b.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            UpBody::Pooled(b) | UpBody::Direct { body: b, .. } => b.size_hint(),
        }
    }
}
