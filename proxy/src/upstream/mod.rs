//! The pooled client each listener forwards through.
//!
//! One keep-alive pool per listener (its upstream, its CA). HTTP/2 is used when an
//! `https` upstream offers it through ALPN; plain `http` upstreams get HTTP/1.1 with
//! reused connections, which is what model servers expect, driven on each
//! request's own task ([`DirectPool`]).

pub mod h1;
pub mod h2;
mod request;

pub use request::{Hold, ReqBody, CLIENT_BODY_FAILED};

use std::path::Path;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
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

use crate::tls::{client_config, TlsError};
use crate::wire::h1::keep_alive_timeout;

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
        if !absolute
            && self.base_path.is_empty()
            && request.scheme().is_none()
            && request.path_and_query().is_some()
        {
            // Already the origin form the upstream gets (every request a client
            // sends a reverse proxy): the same target, shared, not rebuilt.
            return Ok(request.clone());
        }
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
pub(crate) type LegacyClient = Client<HttpsConnector<HttpConnector>, ReqBody>;

/// The client a listener forwards through. Plain `http` upstreams go through
/// [`DirectPool`]: HTTP/1.1 connections driven on the request's own task, so a
/// proxied exchange costs no hand-off to a connection task and back (the largest
/// per-request cost of a general-purpose pooled client). `https` upstreams use
/// hyper-util's pooled client, for TLS and HTTP/2.
#[derive(Clone)]
pub enum UpstreamClient {
    /// Plain HTTP/1.1, on the request's task.
    Direct(Arc<DirectPool>),
    /// TLS (HTTP/1.1 or HTTP/2); the second client is for WebSocket upgrades:
    /// HTTP/1.1 only (HTTP/2 has no `Upgrade`, and ALPN would pick it for any
    /// upstream that offers it) and keeping no idle connection, so each tunnel gets
    /// a connection of its own.
    Pooled(Box<LegacyClient>, Box<LegacyClient>),
}

impl std::fmt::Debug for UpstreamClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            UpstreamClient::Direct(_) => "UpstreamClient::Direct",
            UpstreamClient::Pooled(..) => "UpstreamClient::Pooled",
        })
    }
}

/// Why an upstream exchange got no response.
#[derive(Debug, thiserror::Error)]
pub enum SendError {
    /// No connection could be made.
    #[error("cannot connect: {0}")]
    Connect(#[source] std::io::Error),
    /// HTTP/2, or an upgrade's HTTP/1.1 connection, failed.
    #[error(transparent)]
    Http(#[from] hyper::Error),
    /// The connection failed under the exchange.
    #[error(transparent)]
    Io(std::io::Error),
    /// The upstream's answer is not HTTP/1.1 as RFC 9112 frames it.
    #[error("{0}")]
    Invalid(String),
    /// The client's request body failed on its way.
    #[error("request body: {0}")]
    Body(#[source] crate::error::BoxError),
    /// The pooled (TLS) client failed.
    #[error(transparent)]
    Pooled(#[from] hyper_util::client::legacy::Error),
    /// An HTTP/2-only request, and the upstream's TLS picked another protocol.
    #[error("upstream {0} does not offer HTTP/2 in TLS ALPN")]
    NoH2(String),
}

impl UpstreamClient {
    /// The pool of a plain-HTTP upstream, which the HTTP/1.1 fast path also uses.
    pub fn direct_pool(&self) -> Option<Arc<DirectPool>> {
        match self {
            UpstreamClient::Direct(p) => Some(p.clone()),
            UpstreamClient::Pooled(..) => None,
        }
    }

    /// The upstream announced its keep-alive (`Keep-Alive: timeout=N`): idle
    /// connections are retired before it.
    pub fn announced_keep_alive(&self, value: &[u8]) {
        if let (UpstreamClient::Direct(p), Some(secs)) = (self, keep_alive_timeout(value)) {
            p.retire.announce(secs);
        }
    }

    /// The request URI this client sends for `request` to `upstream`.
    pub fn uri_for(&self, upstream: &Upstream, request: &Uri) -> Result<Uri, http::Error> {
        upstream.uri_for(request, matches!(self, UpstreamClient::Pooled(..)))
    }

    /// Send `req` (its URI from [`UpstreamClient::uri_for`], `Host` set) and wait for
    /// the response head; true when it had to be sent again because a reused
    /// connection lost it (up to `hold_limit` body bytes are kept for that).
    pub async fn request(
        &self,
        req: Request<ReqBody>,
        hold_limit: usize,
    ) -> Result<(Response<UpBody>, bool), SendError> {
        match self {
            UpstreamClient::Direct(pool) => h1::send(pool, req, hold_limit).await,
            // hyper-util's pool sends again by itself what a closing connection
            // never took, and retires idle connections at `pool.idle_timeout`.
            UpstreamClient::Pooled(c, _) => Ok((c.request(req).await?.map(UpBody::Pooled), false)),
        }
    }

    /// Send a WebSocket upgrade request (its URI from [`UpstreamClient::uri_for`],
    /// `Host`, `Upgrade` and `Connection: upgrade` set) on a new connection that no
    /// other request has used or will use, and wait for the answer's head. A `101`
    /// answer carries the connection in its `hyper::upgrade::OnUpgrade` extension;
    /// any other answer's body is read from that connection, which then closes.
    pub async fn upgrade(&self, req: Request<ReqBody>) -> Result<Response<UpBody>, SendError> {
        match self {
            UpstreamClient::Direct(pool) => {
                let stream = pool.dial().await.map_err(SendError::Connect)?;
                let (mut sender, conn) = http1::Builder::new()
                    .max_buf_size(MAX_RESPONSE_HEAD)
                    .max_headers(MAX_RESPONSE_HEADERS)
                    .handshake(TokioIo::new(stream))
                    .await?;
                // The connection's own task: it ends when the upgrade hands the
                // socket over (or with the connection), and is no pooled lease.
                tokio::spawn(async move {
                    if let Err(e) = conn.with_upgrades().await {
                        tracing::debug!(error = %e, "upstream upgrade connection ended");
                    }
                });
                Ok(sender.send_request(req).await?.map(UpBody::Pooled))
            }
            UpstreamClient::Pooled(_, tunnels) => {
                Ok(tunnels.request(req).await?.map(UpBody::Pooled))
            }
        }
    }
}

/// Build the client for an upstream: direct HTTP/1.1 for `http`, TLS with webpki
/// roots (+ `upstream_ca`) and a keep-alive pool for `https`.
pub fn client(
    upstream: &Upstream,
    extra_ca: Option<&Path>,
    idle_timeout: Duration,
) -> Result<UpstreamClient, UpstreamError> {
    if upstream.scheme == Scheme::HTTP {
        if extra_ca.is_some() {
            // Not used over plain HTTP, but a broken file is still a broken config.
            client_config(extra_ca)?;
        }
        let port = upstream.authority.port_u16().unwrap_or(80);
        let addr = format!("{}:{port}", upstream.authority.host());
        return Ok(UpstreamClient::Direct(Arc::new(DirectPool::new(
            addr,
            idle_timeout,
        ))));
    }
    let tls = client_config(extra_ca)?;
    let tunnel_tls = tls.clone();
    let mut http = HttpConnector::new();
    http.enforce_http(false);
    http.set_nodelay(true);
    http.set_keepalive(Some(Duration::from_secs(60)));
    http.set_connect_timeout(Some(CONNECT_TIMEOUT));
    let tunnel_https = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(tunnel_tls)
        .https_or_http()
        .enable_http1()
        .wrap_connector(http.clone());
    let https = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(tls)
        .https_or_http()
        .enable_all_versions()
        .wrap_connector(http);
    Ok(UpstreamClient::Pooled(
        Box::new(
            Client::builder(TokioExecutor::new())
                .http1_max_buf_size(MAX_RESPONSE_HEAD)
                .http1_max_headers(MAX_RESPONSE_HEADERS)
                .pool_idle_timeout(idle_timeout)
                .pool_max_idle_per_host(usize::MAX)
                .pool_timer(TokioTimer::new())
                .timer(TokioTimer::new())
                .build(https),
        ),
        Box::new(
            Client::builder(TokioExecutor::new())
                .http1_max_buf_size(MAX_RESPONSE_HEAD)
                .http1_max_headers(MAX_RESPONSE_HEADERS)
                .pool_max_idle_per_host(0)
                .retry_canceled_requests(false)
                .timer(TokioTimer::new())
                .build(tunnel_https),
        ),
    ))
}

const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
pub(crate) use crate::wire::h1::{MAX_RESPONSE_HEAD, MAX_RESPONSE_HEADERS};
/// At most this many idle connections are kept per upstream.
const MAX_IDLE: usize = 4096;

/// A request goes out again on a fresh connection only when its reused one gave
/// nothing back within this long of the request's last byte: a server that took
/// longer may have been working on it (RFC 9110 §9.2.2).
const RESEND_WINDOW: Duration = Duration::from_secs(1);

/// Whether a request whose last byte went `since` ago may still be sent again
/// ([`RESEND_WINDOW`]).
#[inline]
pub(crate) fn within_resend_window(since: Duration) -> bool {
    since <= RESEND_WINDOW
}

/// The resend rule both data paths apply to one request on a plain-HTTP
/// upstream's pool: a request that a *reused* connection lost goes again once,
/// on a new connection, and only when the server cannot have processed it.
///
/// An idle keep-alive connection can be closed by the upstream at the moment a
/// request is written to it; the request then never reached the application, and
/// failing it would invent an outage. A new connection's loss is the upstream's
/// own failure, and a second loss is not a race: both are answered as errors.
#[derive(Debug, Default)]
pub(crate) struct Resend {
    done: bool,
}

impl Resend {
    /// Whether the request goes again on a new connection, given that the
    /// connection it went on (`reused`: idle that long before it was taken, `None`
    /// if new) failed and nothing of an answer came back (`unanswered`). `replay`
    /// is asked only then: the request again, if every byte of it is still held
    /// and its last went within [`RESEND_WINDOW`]. A yes teaches `retire` that the
    /// upstream closes connections idle that long.
    #[inline]
    pub(crate) fn again<T>(
        &mut self,
        retire: &Retire,
        reused: Option<Duration>,
        unanswered: bool,
        replay: impl FnOnce() -> Option<T>,
        error: &dyn std::fmt::Display,
    ) -> Option<T> {
        let idle = reused.filter(|_| !self.done && unanswered)?;
        let again = replay()?;
        tracing::debug!(error = %error, "a reused upstream connection lost the request unanswered; sending it again on a new one");
        retire.closed_after(idle);
        self.done = true;
        Some(again)
    }

    /// Whether the request went again already: it goes on a new connection then.
    #[inline]
    pub(crate) fn happened(&self) -> bool {
        self.done
    }
}

/// A connection idle at least this long is peeked at before reuse. One reused
/// sooner (under load: microseconds after its last answer) is not: no server closes
/// a keep-alive connection that fast on a timer, and one that closes after every
/// answer is caught by the resend rule, which then ends reuse (`Retire`). This
/// keeps a system call off every request at saturation.
const PEEK_AFTER: Duration = Duration::from_millis(50);

/// A seen close older than this is forgotten, so that one restart of the upstream
/// (which closes every idle connection, however young) does not end reuse for good.
const SEEN_CLOSE_MEMORY: Duration = Duration::from_secs(60);

/// When an idle upstream connection is too old to reuse: before the configured
/// `pool.idle_timeout`, before any `Keep-Alive: timeout=N` the upstream announced,
/// and at 0.8·t once the upstream was seen to close connections idle for t.
/// Shared by both data paths' connections to one upstream.
#[derive(Debug)]
pub struct Retire {
    configured: Duration,
    born: Instant,
    /// The shortest announced keep-alive, in ms (`u64::MAX`: none announced).
    announced_ms: AtomicU64,
    /// The shortest idle time after which a connection was found closed, in ms.
    seen_ms: AtomicU64,
    /// When that was seen, in ms since `born`.
    seen_at_ms: AtomicU64,
}

impl Retire {
    pub fn new(configured: Duration) -> Self {
        Retire {
            configured,
            born: Instant::now(),
            announced_ms: AtomicU64::new(u64::MAX),
            seen_ms: AtomicU64::new(u64::MAX),
            seen_at_ms: AtomicU64::new(0),
        }
    }

    fn since_born_ms(&self) -> u64 {
        u64::try_from(self.born.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    /// How long a connection may have been idle and still be reused.
    pub fn limit(&self) -> Duration {
        let four_fifths = |ms: u64| Duration::from_millis(ms.saturating_mul(4) / 5);
        let mut limit = self.configured;
        let announced = self.announced_ms.load(Ordering::Relaxed);
        if announced != u64::MAX {
            limit = limit.min(four_fifths(announced));
        }
        let seen = self.seen_ms.load(Ordering::Relaxed);
        if seen != u64::MAX {
            let at = self.seen_at_ms.load(Ordering::Relaxed);
            if self.since_born_ms().saturating_sub(at) <= SEEN_CLOSE_MEMORY.as_millis() as u64 {
                limit = limit.min(four_fifths(seen));
            } else {
                self.seen_ms.store(u64::MAX, Ordering::Relaxed);
            }
        }
        limit
    }

    /// The upstream announced `Keep-Alive: timeout=secs`.
    pub fn announce(&self, secs: u64) {
        self.announced_ms
            .fetch_min(secs.saturating_mul(1000), Ordering::Relaxed);
    }

    /// A connection idle for `idle` was found closed by the upstream.
    pub fn closed_after(&self, idle: Duration) {
        let ms = u64::try_from(idle.as_millis()).unwrap_or(u64::MAX);
        self.seen_at_ms
            .store(self.since_born_ms(), Ordering::Relaxed);
        self.seen_ms.fetch_min(ms, Ordering::Relaxed);
    }
}

/// True while an idle connection is open and silent: no EOF, no reset, no
/// unasked-for bytes (a server's 408 before it closes). A real, non-blocking
/// `recv(MSG_PEEK)`, not the runtime's cached readiness, which may not have seen
/// the upstream's FIN yet.
fn quiet(sock: socket2::SockRef<'_>) -> bool {
    let mut byte = [std::mem::MaybeUninit::<u8>::uninit(); 1];
    matches!(sock.peek(&mut byte), Err(e) if e.kind() == std::io::ErrorKind::WouldBlock)
}

/// True when the upstream has sent something (an early answer, a close) on a
/// connection: whether a failed write left a response to read.
pub(crate) fn has_input(stream: &TcpStream) -> bool {
    let mut byte = [std::mem::MaybeUninit::<u8>::uninit(); 1];
    matches!(socket2::SockRef::from(stream).peek(&mut byte), Ok(n) if n > 0)
}

/// A plain connection to the upstream as the HTTP/1.1 fast path uses it: the
/// socket and the bytes read from it and not yet used.
pub struct RawConn {
    pub stream: TcpStream,
    pub buf: BytesMut,
    /// Where the last answer's header names and values lie in `buf` (the full
    /// path's leg, [`h1`]): kept with the connection, so that an exchange on it
    /// allocates no list of its own.
    pub fields: Vec<(std::ops::Range<usize>, std::ops::Range<usize>)>,
}

/// A connection taken from the pool, with how long it had been idle (what a
/// failure on it teaches about the upstream's keep-alive).
pub struct Reused<C> {
    pub conn: C,
    pub idle: Duration,
}

/// Idle HTTP/1.1 connections to one plain-HTTP upstream, lent to one exchange at
/// a time and driven on that exchange's task, by either data path (the fast
/// path's loop, or the full path's leg in [`h1`]): checked before reuse and
/// retired by one [`Retire`].
pub struct DirectPool {
    addr: String,
    pub retire: Retire,
    raw: Mutex<Vec<(RawConn, Instant)>>,
}

/// Take the most recently used fit connection: anything idle past `limit` is
/// closed (all below it are older still), anything unfit is closed and teaches
/// `retire` the idle time after which the upstream closed it.
fn take_fit<C>(
    idle: &Mutex<Vec<(C, Instant)>>,
    retire: &Retire,
    fit: impl Fn(&C, bool) -> bool,
) -> Option<Reused<C>> {
    let limit = retire.limit();
    let mut idle = idle.lock().unwrap_or_else(|p| p.into_inner());
    while let Some((conn, since)) = idle.pop() {
        let age = since.elapsed();
        if age >= limit {
            idle.clear();
            return None;
        }
        if fit(&conn, age >= PEEK_AFTER) {
            return Some(Reused { conn, idle: age });
        }
        retire.closed_after(age);
    }
    None
}

impl DirectPool {
    fn new(addr: String, idle_timeout: Duration) -> Self {
        Self {
            addr,
            retire: Retire::new(idle_timeout),
            raw: Mutex::new(Vec::new()),
        }
    }

    /// An idle raw connection fit to reuse, most recently used first (its socket
    /// is warmest).
    pub fn take_raw(&self) -> Option<Reused<RawConn>> {
        take_fit(&self.raw, &self.retire, |c, peek| {
            !peek || quiet((&c.stream).into())
        })
    }

    /// Keep a raw connection whose last answer was read to its end.
    pub fn put_raw(&self, mut conn: RawConn) {
        if self.retire.limit().is_zero() {
            return;
        }
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
            fields: Vec::new(),
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
}

/// An upstream response body. A raw one reads its connection as it is read
/// and, read to the end, gives the connection back to the pool; dropped early, it
/// closes the connection (its remaining bytes are unread).
#[expect(
    clippy::large_enum_variant,
    reason = "the raw body is the common one (every answer from a plain-HTTP upstream): boxing it would add an allocation per request for the rarer variants' sake"
)]
pub enum UpBody {
    /// Read over a plain-HTTP upstream's raw connection ([`h1`]).
    Raw(h1::RawBody),
    /// From the pooled (TLS) client, or from a WebSocket upgrade's connection of
    /// its own (driven by its own task).
    Pooled(Incoming),
    /// An application's own response body, when brownout's faults run in-process
    /// ([`crate::layer`]).
    Boxed(http_body_util::combinators::UnsyncBoxBody<Bytes, crate::error::BoxError>),
}

impl std::fmt::Debug for UpBody {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            UpBody::Raw(b) => f.debug_tuple("UpBody::Raw").field(b).finish(),
            UpBody::Pooled(b) => f.debug_tuple("UpBody::Pooled").field(b).finish(),
            UpBody::Boxed(_) => f.write_str("UpBody::Boxed"),
        }
    }
}

impl Body for UpBody {
    type Data = Bytes;
    type Error = crate::error::BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, crate::error::BoxError>>> {
        match self.get_mut() {
            UpBody::Pooled(b) => Pin::new(b).poll_frame(cx).map_err(Into::into),
            UpBody::Boxed(b) => Pin::new(b).poll_frame(cx),
            UpBody::Raw(b) => Pin::new(b).poll_frame(cx),
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            UpBody::Pooled(b) => b.is_end_stream(),
            UpBody::Raw(b) => b.is_end_stream(),
            UpBody::Boxed(b) => b.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            UpBody::Pooled(b) => b.size_hint(),
            UpBody::Raw(b) => b.size_hint(),
            UpBody::Boxed(b) => b.size_hint(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_upstreams_target_keeps_the_path_and_query_under_any_base_path() {
        let plain = Upstream::parse("http://up:8000").unwrap();
        let based = Upstream::parse("http://up:8000/v2/").unwrap();
        let req: Uri = "/v1/chat?x=1".parse().unwrap();
        assert_eq!(plain.uri_for(&req, false).unwrap(), "/v1/chat?x=1");
        assert_eq!(
            plain.uri_for(&req, true).unwrap(),
            "http://up:8000/v1/chat?x=1"
        );
        assert_eq!(
            based.uri_for(&req, false).unwrap().path(),
            format!("{}/v1/chat", based.base_path)
        );
        assert_eq!(based.uri_for(&req, false).unwrap().query(), Some("x=1"));
        // A client's absolute form still goes out in origin form.
        let abs: Uri = "http://elsewhere/p?q".parse().unwrap();
        assert_eq!(plain.uri_for(&abs, false).unwrap(), "/p?q");
    }

    #[test]
    fn a_lost_request_goes_again_once_and_only_from_a_reused_connection() {
        let retire = Retire::new(Duration::from_secs(4));
        let idle = Some(Duration::from_secs(2));
        let mut r = Resend::default();
        let again = |r: &mut Resend, reused, unanswered, held: bool| {
            r.again(&retire, reused, unanswered, || held.then_some(()), &"lost")
        };
        assert_eq!(
            again(&mut r, None, true, true),
            None,
            "a new connection's loss"
        );
        assert_eq!(
            again(&mut r, idle, false, true),
            None,
            "an answer had begun"
        );
        assert_eq!(again(&mut r, idle, true, false), None, "not held whole");
        assert!(!r.happened());
        assert_eq!(retire.limit(), Duration::from_secs(4));
        assert_eq!(again(&mut r, idle, true, true), Some(()));
        assert!(r.happened());
        assert_eq!(
            retire.limit(),
            Duration::from_millis(1600),
            "taught 0.8 x 2 s"
        );
        assert_eq!(again(&mut r, idle, true, true), None, "never twice");
    }

    #[test]
    fn the_resend_window_is_a_second() {
        assert!(within_resend_window(Duration::ZERO));
        assert!(within_resend_window(RESEND_WINDOW));
        assert!(!within_resend_window(
            RESEND_WINDOW + Duration::from_millis(1)
        ));
    }
}
