//! The HTTP/1.1 fast path: plain-text client connections to a plain-HTTP upstream,
//! for requests no fault can touch.
//!
//! A general-purpose HTTP stack pays for what a pass-through never uses: a typed
//! request and header map built for every request, a body channel, a connection
//! task for the upstream leg, several timers per exchange. Here one loop per
//! client connection parses each request head in place (`httparse`, into the
//! connection's own buffer), writes the upstream's request head straight from it,
//! relays the body and the answer as raw bytes (chunked framing is followed, not
//! re-encoded), and keeps one timer per connection, set again for each wait (a
//! connection waits for one thing at a time). The record of each exchange is the
//! same one the full path writes: the same [`Exchange`] guard, the same
//! measurement taps.
//!
//! Whatever this loop does not handle is handed to the full (hyper) path with the
//! bytes already read, for the rest of the connection: the first request a rule
//! could match or the client's `x-brownout-fault` header asks to harm, HTTP/2's
//! preface, HTTP/1.0, `Expect`, `Upgrade`, a `Connection` header naming other
//! headers, ambiguous framing, a malformed or oversized head (hyper answers those
//! as it always has).

mod full;

use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use brownout_faults::api::classify;
use brownout_faults::matcher::MatchInput;
use brownout_faults::{Endpoint, RequestFacts};
use bytes::{Buf, Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt, ReadBuf};
use tokio::net::TcpStream;
use tokio::time::{Instant, Sleep};

use crate::body::llm::{passive_tap, Tap};
use crate::conn::{ConnInfo, ConnIo};
use crate::error::ProxyError;
use crate::exchange::{Exchange, Opening};
use crate::pipeline::call::ListenerCtx;
use crate::record::{Outcome, CLIENT_HEADERS};
use crate::upstream::{DirectPool, RawConn, Resend, MAX_RESPONSE_HEAD};
use crate::wire;
use crate::wire::h1::{
    connection_close, parse_length, parse_response, trim, write_response_headers,
    write_status_line, ChunkedScanner, Framing, Relay, RespHead, RespParse,
};

/// Request headers parsed in place; a request with more goes to the full path.
const MAX_REQ_HEADERS: usize = 64;
/// A request head longer than this goes to the full path (which has its own limit).
const MAX_HEAD: usize = 64 * 1024;
/// Room asked for before each read.
const READ_ROOM: usize = 4096;

/// How the fast loop left a connection.
enum Ended {
    /// Closed (by either side, a timeout, or shutdown).
    Closed,
    /// To be served by the full path from here on, with the bytes read so far.
    Handoff { h2: bool },
}

/// Serve one plain-text client connection, on the fast path while it can be,
/// holding `guard` (its slot among `max_connections`) until it ends.
///
/// Not an `async fn`: one keeps its arguments, and the copies its body moves them
/// into, side by side for the connection's whole life. The connection is built
/// first and the future only borrows it, so an idle connection's task holds each
/// part once.
pub(crate) fn serve<G: Send + 'static>(
    stream: TcpStream,
    peer: SocketAddr,
    ctx: Arc<ListenerCtx>,
    pool: Arc<DirectPool>,
    settings: Arc<crate::pipeline::serve::ConnSettings>,
    stop: crate::control::shutdown::StopRx,
    guard: G,
) -> impl std::future::Future<Output = ()> + Send + 'static {
    let _ = stream.set_nodelay(true);
    let mut conn = FastConn {
        io: stream,
        buf: BytesMut::new(),
        out: Vec::new(),
        peer,
        last_done: Instant::now(),
        ctx,
        pool,
        served: 0,
        abort_on_fin: settings.half_close == crate::config::HalfClose::Abort,
        fast: settings.fast_path,
        info: None,
    };
    async move {
        // Whether an exchange is in flight (read by the stop watcher on the same task).
        let busy = AtomicBool::new(false);
        let mut watcher = stop.clone();
        let ended = {
            let run = conn.run(&settings, &stop, &busy);
            tokio::select! {
                biased;
                e = run => e,
                _ = stop_signal(&mut watcher, &busy) => Ended::Closed,
            }
        };
        match ended {
            // A closed connection's buffers serve the next one.
            Ended::Closed => give_back(&mut conn.buf, &mut conn.out),
            Ended::Handoff { h2 } => {
                // The facts hyper's path shares with every request, made only now:
                // the fast path needs none of them.
                let info = match conn.info.take() {
                    Some(info) => {
                        info.idle_since(conn.last_done);
                        info
                    }
                    None => ConnInfo::resumed(conn.peer, conn.last_done, conn.served > 0),
                };
                let prefix = std::mem::take(&mut conn.buf).freeze();
                let FastConn { io, ctx, .. } = conn;
                let io = Rewind {
                    prefix,
                    inner: ConnIo::new(io, info.clone()),
                };
                // Boxed: a connection the fast path keeps carries no room for hyper's.
                let full = crate::pipeline::serve::serve_full(h2, io, ctx, info, &settings, stop);
                Box::pin(full).await;
            }
        }
        drop(guard);
    }
}

/// Resolves when the connection must end now: at once on abort, and on a graceful
/// stop while no exchange is in flight (the loop itself stops after the one that is).
///
/// This and the loop's other futures are written as functions returning a block:
/// an `async fn` keeps a second copy of its arguments, for every connection.
#[expect(
    clippy::manual_async_fn,
    reason = "an async fn keeps a second copy of its arguments in every idle connection"
)]
fn stop_signal<'a>(
    stop: &'a mut crate::control::shutdown::StopRx,
    busy: &'a AtomicBool,
) -> impl std::future::Future<Output = ()> + 'a {
    async move {
        loop {
            let v = *stop.borrow_and_update();
            if v == crate::control::shutdown::Shutdown::Abort
                || (v == crate::control::shutdown::Shutdown::Draining
                    && !busy.load(Ordering::Relaxed))
            {
                return;
            }
            if stop.changed().await.is_err() {
                return std::future::pending().await;
            }
        }
    }
}

/// Read into `buf`, which holds no request bytes yet or part of a head. While
/// the client has sent nothing, no buffer is held: `buf` and `out` go back to
/// the thread's spares as the connection waits ([`crate::reuse`]), and a buffer
/// is taken again once the socket is readable. The same system calls as
/// `read_buf` ([`crate::conn::poll_fill`]).
fn poll_fill(
    io: &TcpStream,
    buf: &mut BytesMut,
    out: &mut Vec<u8>,
    cx: &mut Context<'_>,
) -> Poll<std::io::Result<usize>> {
    if io.poll_read_ready(cx)?.is_pending() {
        if buf.is_empty() {
            give_back(buf, out);
        }
        return Poll::Pending;
    }
    if buf.capacity() == 0 {
        *buf = crate::reuse::read_buf(READ_ROOM);
    }
    let r = crate::conn::poll_fill(io, buf, READ_ROOM, cx);
    if r.is_pending() && buf.is_empty() {
        give_back(buf, out);
    }
    r
}

/// Give the connection's buffers to the thread's spares.
fn give_back(buf: &mut BytesMut, out: &mut Vec<u8>) {
    if buf.capacity() > 0 {
        crate::reuse::give_read_buf(std::mem::take(buf));
    }
    if out.capacity() > 0 {
        crate::reuse::give_head_buf(std::mem::take(out));
    }
}

/// One client connection on the fast path.
///
/// Kept small, since idle keep-alive connections may be many: the buffers are
/// lent only while a request is read and answered, the exchange's own state is
/// boxed for its duration, and no [`ConnInfo`] is made unless the connection is
/// handed over.
struct FastConn {
    io: TcpStream,
    /// Bytes read from the client and not yet used; lent by the thread
    /// ([`crate::reuse`]), none while the connection idles.
    buf: BytesMut,
    /// Heads being written (upstream request, client response); lent as `buf` is.
    out: Vec<u8>,
    peer: SocketAddr,
    /// When the last exchange ended (when the connection was accepted, before the
    /// first): the start of the wait for the next request.
    last_done: Instant,
    ctx: Arc<ListenerCtx>,
    pool: Arc<DirectPool>,
    served: u32,
    /// `half_close: abort`: a FIN while the answer is awaited ends the exchange
    /// (`client_closed`); under `answer` (the default) the answer is still sent.
    abort_on_fin: bool,
    /// Requests no rule could touch skip the pipeline (`fast_path: true`); when
    /// false, every request goes through it ([`full`]).
    fast: bool,
    /// The facts the pipeline shares with every request of the connection, made
    /// at its first request that goes through the pipeline.
    info: Option<Arc<ConnInfo>>,
}

/// A request head accepted for the fast path; the upstream's head is in `out`.
struct Forward {
    head_len: usize,
    body: Framing,
    head_method: bool,
    client_close: bool,
    endpoint: Endpoint,
    ex: Exchange,
}

enum Prep {
    /// More bytes are needed for a whole head (or a short upload's whole body).
    Partial,
    Handoff,
    Forward(Forward),
    /// Through the pipeline, on this connection. The typed head moves at once
    /// into the exchange's boxed future, so an idle connection's task keeps no
    /// room for one (a test holds that future's size).
    Full(full::FullReq),
}

/// The timer of one connection, reused by every exchange on it.
///
/// One, not one per kind of wait: a connection waits for a request head, or for
/// the upstream's answer head, or between upstream body reads, never for two of
/// them at once, and every wait sets the deadline it needs before it begins. An
/// idle connection then holds a single timer; moving a deadline back costs tokio
/// a re-filing, twice per exchange, where extending one is nearly free.
struct Timers(Pin<Box<Sleep>>);

impl Timers {
    fn new() -> Self {
        let far = Instant::now() + Duration::from_secs(86_400 * 365);
        Timers(Box::pin(tokio::time::sleep_until(far)))
    }

    /// Waiting for a request head: `header_timeout`, then `idle_timeout`.
    fn head(&mut self) -> Pin<&mut Sleep> {
        self.0.as_mut()
    }

    /// Waiting for the upstream's response head: `upstream_timeout`, set when the
    /// exchange is sent.
    fn upstream(&mut self) -> Pin<&mut Sleep> {
        self.0.as_mut()
    }

    /// Between upstream body reads: `upstream_idle_timeout`.
    fn body(&mut self) -> Pin<&mut Sleep> {
        self.0.as_mut()
    }
}

/// A request on its way upstream: its body's framing and what is left of it, the
/// client's body bytes so far, whether every byte sent is still in `out` (at most
/// `limit` bytes of it), and when the last one went.
struct Sending {
    body: Framing,
    left: u64,
    chunks: ChunkedScanner,
    bytes_in: u64,
    held: bool,
    limit: usize,
    last: Instant,
}

impl Sending {
    /// Whether the request can go again as it went: every byte of it is still in
    /// `out`, and its last went recently enough that a silent close means the
    /// server never took it ([`crate::upstream::Resend`]).
    fn replayable(&self) -> Option<()> {
        (self.held && crate::upstream::within_resend_window(self.last.elapsed())).then_some(())
    }
}

/// A write to the upstream failed: the connection was closed under the request,
/// unless the upstream answered first (an early 413, say), which is its answer.
fn write_failed(up: &RawConn, e: std::io::Error, upstream: &str) -> UpFail {
    if crate::upstream::has_input(&up.stream) {
        UpFail::Error(ProxyError::unreachable(upstream, e))
    } else {
        UpFail::Stale(e)
    }
}

/// Why an upstream exchange failed before any of its answer reached the client.
enum UpFail {
    /// Nothing came back from a reused connection: it may have been closed by the
    /// upstream while idle, and a request held whole can be sent again.
    Stale(std::io::Error),
    Error(ProxyError),
    /// The client went away: its upload broke (why, when it is known), or it
    /// closed while the answer was awaited. Recorded as `client_closed`.
    ClientGone(Option<String>),
}

impl FastConn {
    #[expect(
        clippy::manual_async_fn,
        reason = "an async fn keeps a second copy of its arguments in every idle connection"
    )]
    fn run<'a>(
        &'a mut self,
        settings: &'a crate::pipeline::serve::ConnSettings,
        stop: &'a crate::control::shutdown::StopRx,
        busy: &'a AtomicBool,
    ) -> impl std::future::Future<Output = Ended> + 'a {
        async move {
            let mut timers = Timers::new();
            loop {
                // A whole request head, and its exchange: boxed for as long as it
                // runs (an idle connection carries no room for an exchange's state).
                let exchange: Pin<Box<dyn std::future::Future<Output = full::After> + Send + '_>> = loop {
                    if !self.buf.is_empty() {
                        if self.served == 0 {
                            match wire::h2_preface(&self.buf) {
                                Some(true) => return Ended::Handoff { h2: true },
                                Some(false) => {}
                                None => {
                                    if let Some(e) =
                                        self.read_head_bytes(&mut timers, settings).await
                                    {
                                        return e;
                                    }
                                    continue;
                                }
                            }
                        }
                        match self.prepare() {
                            Prep::Forward(f) => {
                                let fast = self.exchange(f, &mut timers, stop);
                                break Box::pin(async move {
                                    match fast.await {
                                        true => full::After::Keep,
                                        false => full::After::Close,
                                    }
                                });
                            }
                            Prep::Full(req) => break Box::pin(self.full_exchange(req, stop)),
                            Prep::Handoff => return Ended::Handoff { h2: false },
                            Prep::Partial => {}
                        }
                    }
                    if let Some(e) = self.read_head_bytes(&mut timers, settings).await {
                        return e;
                    }
                };
                busy.store(true, Ordering::Relaxed);
                let keep = exchange.await;
                self.served = self.served.saturating_add(1);
                busy.store(false, Ordering::Relaxed);
                self.last_done = Instant::now();
                match keep {
                    full::After::Keep
                        if *stop.borrow() == crate::control::shutdown::Shutdown::Running => {}
                    full::After::Abort => return Ended::Closed,
                    _ => {
                        let _ = self.io.shutdown().await;
                        return Ended::Closed;
                    }
                }
            }
        }
    }

    /// Read more of a request head, within `header_timeout` for the first request
    /// and `idle_timeout` (at least `header_timeout`) for later ones. `Some`: the
    /// connection ended.
    fn read_head_bytes<'a>(
        &'a mut self,
        timers: &'a mut Timers,
        settings: &crate::pipeline::serve::ConnSettings,
    ) -> impl std::future::Future<Output = Option<Ended>> + 'a {
        let too_long = self.buf.len() > MAX_HEAD;
        let limit = if self.served == 0 {
            settings.header_timeout
        } else {
            settings.idle_timeout.max(settings.header_timeout)
        };
        if !too_long {
            timers.head().reset(self.last_done + limit);
        }
        let mut timer = timers.head();
        std::future::poll_fn(move |cx| {
            if too_long {
                return Poll::Ready(Some(Ended::Handoff { h2: false }));
            }
            // The client first, as a biased select would.
            if let Poll::Ready(r) = poll_fill(&self.io, &mut self.buf, &mut self.out, cx) {
                return Poll::Ready(match r {
                    Ok(0) | Err(_) => Some(Ended::Closed),
                    Ok(_) => None,
                });
            }
            std::task::ready!(std::future::Future::poll(timer.as_mut(), cx));
            if self.served == 0 {
                self.ctx.listener.shared.metrics.rejected(
                    crate::record::metrics::Rejection::HeaderTimeout,
                    &self.ctx.listener.name,
                    self.peer,
                    &format_args!("no request head within header_timeout ({limit:?})"),
                );
            } else {
                tracing::debug!(peer = %self.peer, served = self.served, "closing idle connection (idle_timeout)");
            }
            Poll::Ready(Some(Ended::Closed))
        })
    }

    /// Parse the buffered request head and, when no fault can apply to it, write
    /// the upstream's request head into `out` and open its record.
    fn prepare(&mut self) -> Prep {
        let ctx = &*self.ctx;
        let shared = &ctx.listener.shared;
        let mut hdrs = [httparse::EMPTY_HEADER; MAX_REQ_HEADERS];
        let mut req = httparse::Request::new(&mut hdrs);
        let head_len = match req.parse(&self.buf) {
            Ok(httparse::Status::Complete(n)) => n,
            Ok(httparse::Status::Partial) if self.buf.len() <= MAX_HEAD => return Prep::Partial,
            _ => return Prep::Handoff,
        };
        let (Some(method), Some(target), Some(1)) = (req.method, req.path, req.version) else {
            return Prep::Handoff;
        };
        if !target.starts_with('/') || !plain_target(target.as_bytes()) {
            return Prep::Handoff;
        }
        let Ok(method_t) = http::Method::from_bytes(method.as_bytes()) else {
            return Prep::Handoff;
        };
        if method_t == http::Method::CONNECT {
            return Prep::Handoff;
        }
        let path = target.split(['?', '#']).next().unwrap_or(target);

        let mut length: Option<u64> = None;
        let mut chunked = false;
        let mut client_close = false;
        let mut attempt = None;
        // Through the pipeline: every request under `fast_path: false`, and one a
        // rule could touch.
        let mut full = !self.fast;
        // The strongest of `CLIENT_HEADERS` seen, for the record's `client`.
        let mut who: Option<(usize, &[u8])> = None;
        for h in req.headers.iter() {
            let name = h.name;
            if name.eq_ignore_ascii_case("content-length") {
                let Some(n) = parse_length(h.value) else {
                    return Prep::Handoff;
                };
                if length.is_some_and(|l| l != n) {
                    return Prep::Handoff;
                }
                length = Some(n);
            } else if name.eq_ignore_ascii_case("transfer-encoding") {
                if chunked || !trim(h.value).eq_ignore_ascii_case(b"chunked") {
                    return Prep::Handoff;
                }
                chunked = true;
            } else if name.eq_ignore_ascii_case("connection") {
                match connection_close(h.value) {
                    Some(c) => client_close |= c,
                    None => return Prep::Handoff,
                }
            } else if name.eq_ignore_ascii_case("expect") || name.eq_ignore_ascii_case("upgrade") {
                return Prep::Handoff;
            } else if shared.allow_header_faults && name.eq_ignore_ascii_case(wire::FAULT) {
                full = true;
            } else if name.eq_ignore_ascii_case(wire::RETRY_COUNT) {
                attempt = wire::retry_count(h.value);
            } else if let Some(rank) = CLIENT_HEADERS
                .iter()
                .position(|c| name.eq_ignore_ascii_case(c))
            {
                if who.is_none_or(|(r, _)| rank < r) {
                    who = Some((rank, h.value));
                }
            }
        }
        if chunked && length.is_some() {
            return Prep::Handoff;
        }
        let body = match (chunked, length) {
            (true, _) => Framing::Chunked,
            (false, Some(0)) | (false, None) => Framing::None,
            (false, Some(n)) => Framing::Length(n),
        };

        // What the fast path needs when no rule could touch the request: its
        // endpoint and phase. A request already bound for the full path (every
        // one under `fast_path: false`) skips this: the pipeline finds both.
        let fast = if full {
            None
        } else {
            let endpoint = classify(ctx.listener.api, &method_t, path);
            let profile = shared.profile.load();
            let active = profile.active(Instant::now());
            // A request some rule in force could match goes to the full path, which
            // decides it; so does one whose match needs headers or a body read.
            if shared.release.faults_enabled()
                && !profile.is_empty()
                && active.rules.clone().next().is_some()
            {
                full = profile.needs_headers || (profile.needs_body && !method_t.is_safe());
                let facts = RequestFacts {
                    api: ctx.listener.api,
                    endpoint,
                    ..Default::default()
                };
                let no_headers = http::HeaderMap::new();
                let input = MatchInput {
                    listener: &ctx.listener.name,
                    method: &method_t,
                    path,
                    headers: &no_headers,
                    facts: &facts,
                    client_ip: Some(self.peer.ip()),
                };
                full = full || profile.any_rule_matches(active.phase, &input);
            }
            (!full).then(|| (endpoint, active.phase.map(|p| p.name.clone())))
        };
        let Some((endpoint, phase)) = fast else {
            // Served on this connection when its upload is already here whole;
            // hyper streams any other.
            let body_len = match body {
                Framing::None => 0,
                Framing::Length(n) if (self.buf.len() - head_len) as u64 >= n => n as usize,
                _ => return Prep::Handoff,
            };
            return match full::request_parts(&self.buf, head_len, method_t, target, req.headers) {
                Some(parts) => Prep::Full(full::FullReq {
                    parts,
                    head_len,
                    body_len,
                    client_close,
                }),
                None => Prep::Handoff,
            };
        };

        let head = Opening {
            endpoint,
            method,
            path,
            attempt,
            bytes_in: length.unwrap_or(0),
        };
        let mut ex = Exchange::open(&ctx.listener, head, None);
        let rec = ex.rec();
        rec.phase = phase;
        // The body is not read here: the fingerprint is of the method and target.
        let fp_target = target.split('#').next().unwrap_or(target);
        let peer = self.peer.ip();
        let cred = who.map(|(_, v)| v);
        shared
            .recorder
            .identify(rec, method, fp_target, None, cred, peer);

        // The upstream's request head: the client's, less hop-by-hop headers, with
        // the upstream's `Host`.
        if self.out.capacity() == 0 {
            self.out = crate::reuse::head_buf();
        }
        let out = &mut self.out;
        out.clear();
        out.extend_from_slice(method.as_bytes());
        out.push(b' ');
        out.extend_from_slice(ctx.upstream.base_path.as_bytes());
        out.extend_from_slice(target.as_bytes());
        out.extend_from_slice(b" HTTP/1.1\r\n");
        let mut te_seen = false;
        for h in req.headers.iter() {
            if h.name.eq_ignore_ascii_case("te") {
                // Only `trailers` of the first `te` goes on, as on the full path.
                if !te_seen && wire::te_trailers(h.value) {
                    out.extend_from_slice(b"te: trailers\r\n");
                }
                te_seen = true;
                continue;
            }
            // `transfer-encoding` is written back below when the body stays chunked.
            if wire::is_hop_by_hop(h.name)
                || h.name.eq_ignore_ascii_case("host")
                || h.name.eq_ignore_ascii_case(wire::SEQ)
            {
                continue;
            }
            out.extend_from_slice(h.name.as_bytes());
            out.extend_from_slice(b": ");
            out.extend_from_slice(h.value);
            out.extend_from_slice(b"\r\n");
        }
        if chunked {
            out.extend_from_slice(b"transfer-encoding: chunked\r\n");
        }
        out.extend_from_slice(b"host: ");
        out.extend_from_slice(ctx.upstream.host.as_bytes());
        out.extend_from_slice(b"\r\n\r\n");
        Prep::Forward(Forward {
            head_len,
            body,
            head_method: method_t == http::Method::HEAD,
            client_close,
            endpoint,
            ex,
        })
    }

    /// One exchange; true when the client connection stays open for the next.
    async fn exchange(
        &mut self,
        fwd: Forward,
        timers: &mut Timers,
        stop: &crate::control::shutdown::StopRx,
    ) -> bool {
        let Forward {
            head_len,
            body,
            head_method,
            client_close,
            endpoint,
            mut ex,
        } = fwd;
        self.buf.advance(head_len);
        // The body bytes already here go out with the head.
        let mut chunks = ChunkedScanner::default();
        let left = match body {
            Framing::Length(n) => {
                let k = (n as usize).min(self.buf.len());
                self.out.extend_from_slice(&self.buf[..k]);
                self.buf.advance(k);
                n - k as u64
            }
            Framing::Chunked => match chunks.scan(&self.buf, |_| {}) {
                Ok((used, done)) => {
                    self.out.extend_from_slice(&self.buf[..used]);
                    self.buf.advance(used);
                    u64::from(!done)
                }
                Err(e) => {
                    // A broken chunked upload: nothing sensible to forward.
                    ex.finish(Outcome::ClientClosed, Some(format!("request body: {e}")));
                    return false;
                }
            },
            _ => 0,
        };
        let deadline = ex.upstream_called() + self.ctx.listener.shared.upstream_timeout;
        timers.upstream().reset(deadline);

        // Send, and wait for the answer's head. A reused connection that the
        // upstream closed under the request gets it again, once, on a new one,
        // when the server cannot have processed it: nothing came back within
        // RESEND_WINDOW of its last byte, and every byte sent is still in `out`.
        let mut sending = Sending {
            body,
            bytes_in: chunks.data,
            left,
            chunks,
            held: true,
            limit: self.out.len() + self.ctx.listener.shared.inspect_limit,
            last: Instant::now(),
        };
        let mut up = self.pool.take_raw();
        let mut resend = Resend::default();
        let (mut up, mut resp) = loop {
            let (mut conn, reused) = match up.take() {
                Some(r) => (r.conn, Some(r.idle)),
                None => {
                    let connect = tokio::select! {
                        biased;
                        c = self.pool.connect_raw() => c,
                        _ = timers.upstream() => Err(std::io::Error::new(
                            std::io::ErrorKind::TimedOut,
                            "connect timed out",
                        )),
                    };
                    match connect {
                        Ok(c) => (c, None),
                        Err(e) => {
                            let e = ProxyError::unreachable(&self.ctx.upstream.display, e);
                            let keep = sending.left == 0 && !client_close;
                            return self.answer_error(ex, &e, head_method, keep).await;
                        }
                    }
                }
            };
            let sent = self.send(&mut conn, timers, &mut sending).await;
            let r = match sent {
                Ok(()) => {
                    self.read_response_head(&mut conn, head_method, endpoint, ex.start(), timers)
                        .await
                }
                Err(f) => Err(f),
            };
            match r {
                Ok(head) => break (conn, head),
                Err(UpFail::Stale(e)) => {
                    // A stale failure is one with nothing of an answer back.
                    let replay = || sending.replayable();
                    if resend
                        .again(&self.pool.retire, reused, true, replay, &e)
                        .is_some()
                    {
                        ex.upstream_retried();
                        continue;
                    }
                    let e = ProxyError::unreachable(&self.ctx.upstream.display, e);
                    let r = ex.rec();
                    r.bytes_in = r.bytes_in.max(sending.bytes_in);
                    return self
                        .answer_error(ex, &e, head_method, sending.left == 0 && !client_close)
                        .await;
                }
                Err(UpFail::Error(e)) => {
                    let r = ex.rec();
                    r.bytes_in = r.bytes_in.max(sending.bytes_in);
                    return self
                        .answer_error(ex, &e, head_method, sending.left == 0 && !client_close)
                        .await;
                }
                Err(UpFail::ClientGone(msg)) => {
                    if body != Framing::None {
                        ex.rec().bytes_in = sending.bytes_in;
                    }
                    ex.finish(Outcome::ClientClosed, msg);
                    return false;
                }
            }
        };
        if let Some(secs) = resp.keep_alive {
            self.pool.retire.announce(secs);
        }
        if body == Framing::Chunked {
            ex.rec().bytes_in = sending.bytes_in;
        }
        ex.upstream_headers(resp.status);

        // The answer: head, then the body as it comes.
        let stopping = *stop.borrow() != crate::control::shutdown::Shutdown::Running;
        let close = client_close || resp.framing == Framing::Close || stopping;
        self.out.clear();
        write_status_line(&mut self.out, resp.status, &up.buf[resp.reason.clone()]);
        write_response_headers(
            &mut self.out,
            &up.buf[resp.headers_start..resp.head_len],
            close,
            resp.drop_length,
            resp.connection_names,
        );
        up.buf.advance(resp.head_len);
        let mut tap = resp.tap.take();
        let mut relay = Relay::new(resp.framing);
        let mut upstream_done = false;
        let mut first = true;
        let mut delivered = false;
        loop {
            // Relay what is buffered from the upstream.
            let buf = &up.buf;
            let (used, done) = match relay.take(buf, |r| {
                ex.on_body_bytes(r.len());
                feed(&mut tap, &buf[r]);
            }) {
                Ok(x) => x,
                Err(e) => {
                    let msg = format!("upstream body failed: {e}");
                    return self
                        .broken_body(ex, tap, Outcome::UpstreamError, msg, first)
                        .await;
                }
            };
            let sent = if first {
                self.out.extend_from_slice(&up.buf[..used]);
                first = false;
                self.io.write_all(&self.out).await
            } else if used > 0 {
                self.io.write_all(&up.buf[..used]).await
            } else {
                Ok(())
            };
            up.buf.advance(used);
            if sent.is_err() {
                client_gone(ex, tap, delivered);
                return false;
            }
            // Written: if the stream's terminator was in it, the client has the
            // whole answer, whatever happens to the rest of the body.
            delivered = delivered || matches!(&tap, Some(Tap::Llm(s)) if s.terminated());
            if done || upstream_done {
                break;
            }
            // More from the upstream, within upstream_idle_timeout.
            let idle = self.ctx.listener.shared.upstream_idle_timeout;
            timers.body().reset(Instant::now() + idle);
            up.buf.reserve(READ_ROOM);
            let read = tokio::select! {
                biased;
                r = up.stream.read_buf(&mut up.buf) => r,
                _ = timers.body() => {
                    let msg = format!("upstream sent nothing for {idle:?} (upstream_idle_timeout)");
                    return self.broken_body(ex, tap, Outcome::Timeout, msg, false).await;
                }
            };
            match read {
                Ok(0) if resp.framing == Framing::Close => upstream_done = true,
                Ok(0) => {
                    let msg =
                        "upstream body failed: connection closed before the message completed"
                            .to_string();
                    return self
                        .broken_body(ex, tap, Outcome::UpstreamError, msg, false)
                        .await;
                }
                Ok(_) => {}
                Err(e) => {
                    let msg = format!("upstream body failed: {e}");
                    return self
                        .broken_body(ex, tap, Outcome::UpstreamError, msg, false)
                        .await;
                }
            }
        }
        // Done: record, and give the upstream connection back when it is clean.
        let mut outcome = None;
        match tap.as_mut() {
            Some(Tap::Llm(s)) => {
                s.upstream_end();
                s.record(&mut ex, Instant::now());
                outcome = s.outcome();
            }
            Some(Tap::Json(t)) => t.record(&mut ex),
            None => {}
        }
        ex.finish_body(outcome, None);
        drop(ex);
        if !resp.upstream_close && resp.framing != Framing::Close && up.buf.is_empty() {
            self.pool.put_raw(up);
        }
        !close
    }

    /// Write the request (head, buffered body, then the rest of the body as the
    /// client sends it) to the upstream.
    async fn send(
        &mut self,
        up: &mut RawConn,
        timers: &mut Timers,
        sending: &mut Sending,
    ) -> Result<(), UpFail> {
        let timeout = self.ctx.listener.shared.upstream_timeout;
        let upstream = &self.ctx.upstream.display;
        let written = tokio::select! {
            biased;
            r = up.stream.write_all(&self.out) => r,
            _ = timers.upstream() => return Err(UpFail::Error(ProxyError::timeout(upstream, timeout))),
        };
        sending.last = Instant::now();
        if let Err(e) = written {
            return Err(write_failed(up, e, upstream));
        }
        while sending.left > 0 {
            self.buf.reserve(READ_ROOM);
            let r = tokio::select! {
                biased;
                r = self.io.read_buf(&mut self.buf) => r,
                _ = timers.upstream() => return Err(UpFail::Error(ProxyError::timeout(upstream, timeout))),
            };
            match r {
                Ok(0) => {
                    return Err(UpFail::ClientGone(Some(
                        "request body: the client closed before sending all of it".into(),
                    )))
                }
                Err(e) => return Err(UpFail::ClientGone(Some(format!("request body: {e}")))),
                Ok(_) => {}
            }
            let used = match sending.body {
                Framing::Length(_) => {
                    let k = (sending.left as usize).min(self.buf.len());
                    sending.left -= k as u64;
                    sending.bytes_in += k as u64;
                    k
                }
                _ => match sending.chunks.scan(&self.buf, |_| {}) {
                    Ok((used, done)) => {
                        sending.bytes_in = sending.chunks.data;
                        if done {
                            sending.left = 0;
                        }
                        used
                    }
                    Err(e) => return Err(UpFail::ClientGone(Some(format!("request body: {e}")))),
                },
            };
            let w = tokio::select! {
                biased;
                r = up.stream.write_all(&self.buf[..used]) => r,
                _ = timers.upstream() => return Err(UpFail::Error(ProxyError::timeout(upstream, timeout))),
            };
            sending.last = Instant::now();
            // Kept to send again: it went after the head and the first bytes.
            if sending.held && self.out.len() + used <= sending.limit {
                self.out.extend_from_slice(&self.buf[..used]);
            } else {
                sending.held = false;
            }
            self.buf.advance(used);
            if let Err(e) = w {
                return Err(write_failed(up, e, upstream));
            }
        }
        Ok(())
    }

    /// Read the upstream's response head (skipping interim 1xx answers).
    async fn read_response_head(
        &mut self,
        up: &mut RawConn,
        head_method: bool,
        endpoint: Endpoint,
        start: Instant,
        timers: &mut Timers,
    ) -> Result<RespHead<Tap>, UpFail> {
        let api = self.ctx.listener.api;
        let make_tap = move |ctype: Option<&str>, coding: Option<&str>| {
            passive_tap(api, endpoint, ctype, coding, start)
        };
        let timeout = self.ctx.listener.shared.upstream_timeout;
        let upstream = &self.ctx.upstream.display;
        let mut got_any = !up.buf.is_empty();
        // Meanwhile the client is watched, so one that gives up waiting is recorded
        // when it leaves (its next pipelined requests, if any, are kept). Its FIN
        // alone is a half-close under `half_close: answer`: the answer still goes to
        // it, and only a failed write says it is gone.
        let mut watch_client = self.buf.len() < MAX_HEAD;
        loop {
            if !up.buf.is_empty() {
                match parse_response(&up.buf, head_method, &make_tap) {
                    Ok(Some(RespParse::Interim(n))) => {
                        up.buf.advance(n);
                        continue;
                    }
                    Ok(Some(RespParse::Head(h))) => return Ok(h),
                    Ok(None) if up.buf.len() <= MAX_RESPONSE_HEAD => {}
                    Ok(None) => {
                        return Err(UpFail::Error(bad_upstream(
                            upstream,
                            "response head too large",
                        )))
                    }
                    Err(why) => return Err(UpFail::Error(bad_upstream(upstream, why))),
                }
            }
            up.buf.reserve(READ_ROOM);
            if watch_client {
                self.buf.reserve(READ_ROOM);
            }
            let r = tokio::select! {
                biased;
                r = up.stream.read_buf(&mut up.buf) => r,
                c = self.io.read_buf(&mut self.buf), if watch_client => {
                    match c {
                        Ok(0) if !self.abort_on_fin => watch_client = false,
                        Ok(0) | Err(_) => return Err(UpFail::ClientGone(None)),
                        Ok(_) => watch_client = self.buf.len() < MAX_HEAD,
                    }
                    continue;
                }
                _ = timers.upstream() => return Err(UpFail::Error(ProxyError::timeout(upstream, timeout))),
            };
            match r {
                Ok(0) if !got_any => {
                    return Err(UpFail::Stale(std::io::Error::new(
                        std::io::ErrorKind::UnexpectedEof,
                        "connection closed before message completed",
                    )))
                }
                Ok(0) => {
                    return Err(UpFail::Error(bad_upstream(
                        upstream,
                        "connection closed in the middle of the response head",
                    )))
                }
                Err(e) if !got_any => return Err(UpFail::Stale(e)),
                Err(e) => return Err(UpFail::Error(ProxyError::unreachable(upstream, e))),
                Ok(_) => got_any = true,
            }
        }
    }

    /// Answer a failure brownout produced itself (502/504), and record it.
    async fn answer_error(
        &mut self,
        mut ex: Exchange,
        e: &ProxyError,
        head_method: bool,
        keep: bool,
    ) -> bool {
        ex.gateway_failed(e);
        let (head, body) = e.to_response().into_parts();
        self.out.clear();
        let mut keep = keep;
        let size = Some(Some(body.len() as u64));
        if full::encode_head(&mut self.out, &head, size, head_method, &mut keep)
            != full::Framer::Length(0)
        {
            self.out.extend_from_slice(&body);
            ex.on_body_bytes(body.len());
        }
        drop(ex);
        self.io.write_all(&self.out).await.is_ok() && keep
    }

    /// The upstream failed mid-answer: record it, let the client have the bytes
    /// that came, and close (HTTP/1.1 has no other way to say the body broke).
    async fn broken_body(
        &mut self,
        mut ex: Exchange,
        mut tap: Option<Tap>,
        outcome: Outcome,
        msg: String,
        head_unsent: bool,
    ) -> bool {
        if head_unsent {
            let _ = self.io.write_all(&self.out).await;
        }
        tracing::debug!(error = %msg, "upstream body ended early");
        match tap.as_mut() {
            Some(Tap::Llm(s)) => s.record(&mut ex, Instant::now()),
            Some(Tap::Json(t)) => t.record(&mut ex),
            None => {}
        }
        ex.finish_body(Some(outcome), Some(msg));
        false
    }
}

/// The client went away mid-answer. `delivered`: the stream's terminator had
/// already been written to it, so it left with a whole answer.
fn client_gone(mut ex: Exchange, tap: Option<Tap>, delivered: bool) {
    match tap {
        Some(Tap::Llm(s)) => {
            // As on the full path: what it got is recorded; harm done is the outcome.
            s.record(&mut ex, Instant::now());
            ex.finish_body(s.left_outcome(delivered), None);
        }
        Some(Tap::Json(t)) => {
            t.record(&mut ex);
            ex.finish_body(Some(Outcome::ClientClosed), None);
        }
        None => ex.finish_body(Some(Outcome::ClientClosed), None),
    }
}

fn feed(tap: &mut Option<Tap>, data: &[u8]) {
    match tap {
        Some(Tap::Llm(s)) => s.tap(&Bytes::copy_from_slice(data)),
        Some(Tap::Json(t)) => t.tap(&Bytes::copy_from_slice(data)),
        None => {}
    }
}

fn bad_upstream(upstream: &str, why: &str) -> ProxyError {
    let why = format!("invalid HTTP response: {why}");
    ProxyError::unreachable(
        upstream,
        std::io::Error::new(std::io::ErrorKind::InvalidData, why),
    )
}

/// A request target the full path would accept as is (an origin-form path and
/// query of visible ASCII, without the characters `http::Uri` refuses).
fn plain_target(t: &[u8]) -> bool {
    t.iter().all(|&b| {
        (0x21..=0x7e).contains(&b)
            && !matches!(
                b,
                b'"' | b'<' | b'>' | b'\\' | b'^' | b'`' | b'{' | b'|' | b'}'
            )
    })
}

/// A client connection handed to the full path: the bytes the fast path already
/// read come first.
pub(crate) struct Rewind {
    prefix: Bytes,
    inner: ConnIo,
}

impl AsyncRead for Rewind {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let this = self.get_mut();
        if !this.prefix.is_empty() {
            let n = this.prefix.len().min(buf.remaining());
            buf.put_slice(&this.prefix[..n]);
            this.prefix.advance(n);
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut this.inner).poll_read(cx, buf)
    }
}

crate::conn::write_through!(Rewind, inner);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_targets_the_full_path_takes_as_they_are_stay() {
        assert!(plain_target(b"/v1/chat/completions?x=1&y=%20"));
        assert!(!plain_target(b"/a b"));
        assert!(!plain_target(b"/{x}"));
    }
}
