//! A client connection as every layer that serves it sees it: the facts its
//! requests share ([`ConnInfo`]), the watch on it while a fault holds a request
//! ([`HoldWatch`]), and the accepted socket, which can end in a real TCP RST
//! ([`ConnIo`]).
//!
//! Both data paths, the pipeline's layers and the response body read these, so
//! they sit below all of them. A connection holds its own HTTP/2 upstream
//! connection ([`crate::upstream::h2::H2Slot`]), and a WebSocket tunnel parked on
//! it, which it knows only as a `Tunnel` to run: the tunnel itself is the
//! pipeline's ([`crate::pipeline::tunnel`]).

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use futures_util::task::AtomicWaker;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

use crate::control::shutdown::StopRx;

/// Per-connection facts shared with every request on it.
#[derive(Debug)]
pub struct ConnInfo {
    pub peer: SocketAddr,
    /// Set by a `reset` fault: the socket closes with SO_LINGER 0 (an RST, not a FIN).
    pub rst: AtomicBool,
    /// Set once the first request's headers arrived (for `header_timeout`).
    pub first_request: AtomicBool,
    /// Exchanges in flight on this connection (for `idle_timeout`).
    pub inflight: AtomicU32,
    /// When the last exchange ended, in ms since `created` (for `idle_timeout`).
    pub last_done_ms: AtomicU64,
    /// The origin of the other times kept in ms (when the connection was accepted,
    /// or handed over by the fast path): only durations from it are read.
    pub created: tokio::time::Instant,
    /// A WebSocket tunnel whose `101` is on its way to the client: hyper hands the
    /// socket over only once its connection has finished, so the connection's task
    /// runs the tunnel then ([`crate::pipeline::tunnel`]).
    tunnel: Mutex<Option<Box<dyn Tunnel>>>,
    /// This connection's own HTTP/2 upstream connection, for gRPC (and every
    /// request under `upstream_protocol: h2c | h2`), dialled on first use.
    pub h2: crate::upstream::h2::H2Slot,
    /// Wakes the connection's task to end the connection now (a `reset` of scope
    /// `connection` or `goaway` on HTTP/2).
    pub kill: tokio::sync::Notify,
    /// With `kill`: send GOAWAY first, then close.
    pub goaway: AtomicBool,
    /// The client socket while the connection is served through a [`ConnIo`]. It
    /// lives here, not in the `ConnIo`, so that the connection's task can also peek
    /// at it for a FIN while a fault holds a request ([`HoldWatch`]): under
    /// `half_close: answer` hyper reads nothing then. Only that one task touches
    /// it, so the lock is never contended.
    sock: Mutex<Option<TcpStream>>,
    /// Request-side fault holds in progress on this connection, and how many have
    /// begun (which tells a [`HoldWatch`] one hold from the next).
    holds: AtomicU32,
    hold_starts: AtomicU32,
    /// When the latest hold began, in ms since `created`.
    hold_began_ms: AtomicU64,
    /// The connection task's [`HoldWatch`], woken when a hold begins.
    hold_waker: AtomicWaker,
}

impl ConnInfo {
    pub fn new(peer: SocketAddr) -> Arc<Self> {
        Self::resumed(peer, tokio::time::Instant::now(), false)
    }

    /// The facts of a connection served so far without them (the fast path, which
    /// hands a connection over only when it needs them): idle since `idle_since`
    /// (its last exchange's end, or when it was accepted), and whether its first
    /// request has come. Only durations are read from `created`, so it starts
    /// there, which keeps `idle_for` what it would have been.
    pub fn resumed(
        peer: SocketAddr,
        idle_since: tokio::time::Instant,
        first_request: bool,
    ) -> Arc<Self> {
        Arc::new(ConnInfo {
            peer,
            rst: AtomicBool::new(false),
            first_request: AtomicBool::new(first_request),
            inflight: AtomicU32::new(0),
            last_done_ms: AtomicU64::new(0),
            created: idle_since,
            tunnel: Mutex::new(None),
            h2: crate::upstream::h2::H2Slot::default(),
            kill: tokio::sync::Notify::new(),
            goaway: AtomicBool::new(false),
            sock: Mutex::new(None),
            holds: AtomicU32::new(0),
            hold_starts: AtomicU32::new(0),
            hold_began_ms: AtomicU64::new(0),
            hold_waker: AtomicWaker::new(),
        })
    }

    /// Mark a request-side fault hold (delay, hang, a queue, GPU admission, a cold
    /// start) for as long as the mark lives. A FIN that arrives meanwhile is a client
    /// giving up, not a half-close: the connection's task ends the exchange then
    /// (`client_closed`, the upstream not called), as `half_close: answer` says.
    pub fn holding(&self) -> HoldMark<'_> {
        let ms = self.created.elapsed().as_millis() as u64;
        self.hold_began_ms.store(ms, Ordering::Release);
        self.holds.fetch_add(1, Ordering::AcqRel);
        self.hold_starts.fetch_add(1, Ordering::AcqRel);
        self.hold_waker.wake();
        HoldMark(self)
    }

    fn sock(&self) -> std::sync::MutexGuard<'_, Option<TcpStream>> {
        self.sock.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// An exchange on this connection began.
    pub fn exchange_started(&self) {
        self.inflight.fetch_add(1, Ordering::AcqRel);
    }

    /// An exchange on this connection ended, `now`.
    pub fn exchange_ended(&self, now: tokio::time::Instant) {
        let ms = now.saturating_duration_since(self.created).as_millis() as u64;
        self.last_done_ms.store(ms, Ordering::Release);
        self.inflight.fetch_sub(1, Ordering::AcqRel);
    }

    /// The connection's last exchange ended at `at` (one this connection's
    /// `ConnInfo` did not see: the fast path's, before a handoff).
    pub fn idle_since(&self, at: tokio::time::Instant) {
        let ms = at.saturating_duration_since(self.created).as_millis() as u64;
        self.last_done_ms.fetch_max(ms, Ordering::AcqRel);
    }

    /// How long the connection has had nothing in flight (zero while busy).
    pub fn idle_for(&self) -> std::time::Duration {
        if self.inflight.load(Ordering::Acquire) > 0 {
            return std::time::Duration::ZERO;
        }
        let since = self.created.elapsed().as_millis() as u64;
        std::time::Duration::from_millis(
            since.saturating_sub(self.last_done_ms.load(Ordering::Acquire)),
        )
    }

    pub fn request_reset(&self) {
        self.rst.store(true, Ordering::Release);
    }

    /// Drop the whole connection now, with an RST (HTTP/2 `reset` scope
    /// `connection`: every stream on it fails).
    pub fn drop_connection(&self) {
        self.request_reset();
        self.kill.notify_one();
    }

    /// Send GOAWAY, then close the connection (HTTP/2 `reset` scope `goaway`).
    pub fn go_away(&self) {
        self.goaway.store(true, Ordering::Release);
        self.kill.notify_one();
    }

    /// Keep a tunnel for the connection's task to run once hyper lets go.
    pub(crate) fn park_tunnel(&self, t: Box<dyn Tunnel>) {
        *self.tunnel.lock().unwrap_or_else(|p| p.into_inner()) = Some(t);
    }

    /// The tunnel parked on this connection, if any.
    pub(crate) fn take_tunnel(&self) -> Option<Box<dyn Tunnel>> {
        self.tunnel.lock().unwrap_or_else(|p| p.into_inner()).take()
    }
}

/// A tunnel parked on a connection ([`ConnInfo::park_tunnel`]): a WebSocket whose
/// `101` is on its way to the client, for the connection's task to run once hyper
/// lets go of the socket.
pub(crate) trait Tunnel: Send + std::fmt::Debug {
    /// Relay bytes both ways until the tunnel ends, then write the record. Boxed:
    /// a connection without a tunnel carries no room for one.
    fn run(
        self: Box<Self>,
        idle: Duration,
        stop: StopRx,
    ) -> Pin<Box<dyn Future<Output = ()> + Send>>;

    /// Record a tunnel that never ran (its connection's task was dropped first).
    fn abandon(self: Box<Self>);
}

/// How long a connection given an injected GOAWAY stays open: long enough for
/// the GOAWAY to reach the client before the close.
pub(crate) const GOAWAY_CLOSE: Duration = Duration::from_millis(100);

/// A request-side fault hold in progress ([`ConnInfo::holding`]).
#[derive(Debug)]
pub struct HoldMark<'a>(&'a ConnInfo);

impl Drop for HoldMark<'_> {
    fn drop(&mut self) {
        self.0.holds.fetch_sub(1, Ordering::AcqRel);
    }
}

/// A FIN this soon after a hold began came with the request (`printf ... | nc -N`
/// sends it right after the last byte, and it may land just after the proxy read
/// the request): a half-close, to be answered. One later is a client giving up. A
/// FIN already there when the hold is first looked at came with the request too,
/// however long the connection's task took to get to it.
pub const FIN_WITH_REQUEST: std::time::Duration = std::time::Duration::from_millis(50);

/// Resolves when the client's FIN arrives while a fault holds its request (more
/// than [`FIN_WITH_REQUEST`] into the hold), or its connection breaks then.
///
/// HTTP/1.1 under `half_close: answer` only: hyper then reads nothing between a
/// request and its answer, so without this a client that gave up on a `hang`
/// would be held until the hang ends, which for `hang` without a duration is
/// never. A peek sees the FIN only behind no unread bytes: behind a request body
/// not read yet, a pipelined request, or (TLS) a `close_notify`, the exchange
/// ends when its answer cannot be written instead.
#[derive(Debug)]
pub struct HoldWatch<'a> {
    info: &'a ConnInfo,
    /// The client socket, where the connection's task keeps it itself (the
    /// fast loop's connection); else the one in `info`.
    sock: Option<&'a TcpStream>,
    /// The hold being watched (`hold_starts` when it began) and when it began.
    hold: Option<(u32, tokio::time::Instant)>,
    /// Unread bytes hide any FIN until this hold ends.
    blocked: bool,
    /// This hold's socket has been seen without a FIN.
    waited: bool,
    /// The client half-closed: nothing more can arrive on this connection.
    half_closed: bool,
}

impl<'a> HoldWatch<'a> {
    pub fn new(info: &'a ConnInfo) -> Self {
        Self::on(info, None)
    }

    /// A watch on `sock` (the connection's own socket) rather than `info`'s.
    pub fn on(info: &'a ConnInfo, sock: Option<&'a TcpStream>) -> Self {
        HoldWatch {
            info,
            sock,
            hold: None,
            blocked: false,
            waited: false,
            half_closed: false,
        }
    }
}

impl std::future::Future for HoldWatch<'_> {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let this = self.get_mut();
        if this.half_closed {
            return Poll::Pending;
        }
        this.info.hold_waker.register(cx.waker());
        if this.info.holds.load(Ordering::Acquire) == 0 {
            this.hold = None;
            return Poll::Pending;
        }
        let starts = this.info.hold_starts.load(Ordering::Acquire);
        let since = match this.hold {
            Some((n, since)) if n == starts => since,
            _ => {
                let began = this.info.created
                    + std::time::Duration::from_millis(
                        this.info.hold_began_ms.load(Ordering::Acquire),
                    );
                this.hold = Some((starts, began));
                this.blocked = false;
                this.waited = false;
                began
            }
        };
        if this.blocked {
            return Poll::Pending;
        }
        let mut byte = [0u8; 1];
        let mut buf = ReadBuf::new(&mut byte);
        let peeked = match this.sock {
            Some(s) => s.poll_peek(cx, &mut buf),
            None => match this.info.sock().as_ref() {
                Some(s) => s.poll_peek(cx, &mut buf),
                None => return Poll::Pending,
            },
        };
        match peeked {
            Poll::Pending => {
                this.waited = true;
                Poll::Pending
            }
            Poll::Ready(Ok(0)) if !this.waited || since.elapsed() <= FIN_WITH_REQUEST => {
                this.half_closed = true;
                Poll::Pending
            }
            Poll::Ready(Ok(0)) | Poll::Ready(Err(_)) => Poll::Ready(()),
            Poll::Ready(Ok(_)) => {
                this.blocked = true;
                Poll::Pending
            }
        }
    }
}

/// An accepted TCP stream that, once its connection asked for a reset, fails all
/// further I/O and closes with zero linger so the peer sees ECONNRESET.
///
/// The socket itself is kept in the connection's [`ConnInfo`] (see its `sock`).
#[derive(Debug)]
pub struct ConnIo {
    info: Arc<ConnInfo>,
}

impl ConnIo {
    pub fn new(inner: TcpStream, info: Arc<ConnInfo>) -> Self {
        *info.sock() = Some(inner);
        ConnIo { info }
    }

    fn reset_requested(&self) -> bool {
        self.info.rst.load(Ordering::Acquire)
    }

    /// Run one poll on the socket (gone only after this `ConnIo` was dropped).
    fn with<R>(
        &self,
        f: impl FnOnce(Pin<&mut TcpStream>) -> Poll<io::Result<R>>,
    ) -> Poll<io::Result<R>> {
        match self.info.sock().as_mut() {
            Some(s) => f(Pin::new(s)),
            None => Poll::Ready(Err(io::ErrorKind::NotConnected.into())),
        }
    }
}

fn reset_err() -> io::Error {
    io::Error::new(
        io::ErrorKind::ConnectionReset,
        "connection reset by brownout fault",
    )
}

impl Drop for ConnIo {
    fn drop(&mut self) {
        // The socket closes with its ConnIo, whoever else holds the ConnInfo.
        let Some(sock) = self.info.sock().take() else {
            return;
        };
        if self.reset_requested() {
            // Zero linger turns the close into an RST; it never blocks.
            let _ = sock.set_zero_linger();
        }
    }
}

impl AsyncRead for ConnIo {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if self.reset_requested() {
            return Poll::Ready(Err(reset_err()));
        }
        self.with(|s| s.poll_read(cx, buf))
    }
}

impl AsyncWrite for ConnIo {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        if self.reset_requested() {
            return Poll::Ready(Err(reset_err()));
        }
        self.with(|s| s.poll_write(cx, buf))
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        if self.reset_requested() {
            return Poll::Ready(Err(reset_err()));
        }
        self.with(|s| s.poll_write_vectored(cx, bufs))
    }

    fn is_write_vectored(&self) -> bool {
        // As tokio's TcpStream, which writes vectored on every platform.
        true
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.with(|s| s.poll_flush(cx))
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if self.reset_requested() {
            // No FIN: the drop will send the RST.
            return Poll::Ready(Err(reset_err()));
        }
        self.with(|s| s.poll_shutdown(cx))
    }
}

/// `AsyncWrite` for a wrapper that changes only how its socket is read (the fast
/// path's `Rewind`): every write goes straight to
/// the wrapped field, vectored when it is.
macro_rules! write_through {
    ($ty:ty, $field:ident) => {
        impl tokio::io::AsyncWrite for $ty {
            fn poll_write(
                self: std::pin::Pin<&mut Self>,
                cx: &mut std::task::Context<'_>,
                buf: &[u8],
            ) -> std::task::Poll<std::io::Result<usize>> {
                tokio::io::AsyncWrite::poll_write(
                    std::pin::Pin::new(&mut self.get_mut().$field),
                    cx,
                    buf,
                )
            }

            fn poll_write_vectored(
                self: std::pin::Pin<&mut Self>,
                cx: &mut std::task::Context<'_>,
                bufs: &[std::io::IoSlice<'_>],
            ) -> std::task::Poll<std::io::Result<usize>> {
                tokio::io::AsyncWrite::poll_write_vectored(
                    std::pin::Pin::new(&mut self.get_mut().$field),
                    cx,
                    bufs,
                )
            }

            fn is_write_vectored(&self) -> bool {
                tokio::io::AsyncWrite::is_write_vectored(&self.$field)
            }

            fn poll_flush(
                self: std::pin::Pin<&mut Self>,
                cx: &mut std::task::Context<'_>,
            ) -> std::task::Poll<std::io::Result<()>> {
                tokio::io::AsyncWrite::poll_flush(
                    std::pin::Pin::new(&mut self.get_mut().$field),
                    cx,
                )
            }

            fn poll_shutdown(
                self: std::pin::Pin<&mut Self>,
                cx: &mut std::task::Context<'_>,
            ) -> std::task::Poll<std::io::Result<()>> {
                tokio::io::AsyncWrite::poll_shutdown(
                    std::pin::Pin::new(&mut self.get_mut().$field),
                    cx,
                )
            }
        }
    };
}
pub(crate) use write_through;

/// Read what `io` has into `buf` (with at least `room` spare), on a socket more
/// than one future polls and so reads through `&TcpStream`.
///
/// The same system calls as tokio's own `AsyncRead`: a read that leaves part of
/// the buffer unfilled has drained the socket (epoll is edge-triggered), so its
/// readiness is cleared there and the next wait parks at once. `try_read_buf`
/// alone keeps the readiness, and the next wait on that socket (for the client's
/// next request, for the upstream's next answer) would begin with a read that
/// can only say `EAGAIN`: one wasted system call per request on each such socket
/// of a keep-alive connection. Readiness that a newer event set is left alone
/// (tokio compares the event's tick), so a byte that arrives meanwhile still wakes
/// the reader.
pub(crate) fn poll_fill(
    io: &TcpStream,
    buf: &mut bytes::BytesMut,
    room: usize,
    cx: &mut Context<'_>,
) -> Poll<io::Result<usize>> {
    loop {
        std::task::ready!(io.poll_read_ready(cx))?;
        buf.reserve(room);
        let spare = buf.capacity() - buf.len();
        let mut got = 0;
        let read = io.try_io(tokio::io::Interest::READABLE, || {
            got = io.try_read_buf(buf)?;
            if 0 < got && got < spare {
                // Drained: the error only tells tokio to clear the readiness.
                return Err(io::ErrorKind::WouldBlock.into());
            }
            Ok(got)
        });
        match read {
            Ok(n) => return Poll::Ready(Ok(n)),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock && got > 0 => {
                return Poll::Ready(Ok(got))
            }
            // Readiness was stale: tokio cleared it, and the next poll waits.
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
            Err(e) => return Poll::Ready(Err(e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A connected pair: the client's socket, and the proxy side in a ConnIo.
    async fn pair() -> (TcpStream, Arc<ConnInfo>, ConnIo) {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let client = TcpStream::connect(l.local_addr().unwrap()).await.unwrap();
        let (server, peer) = l.accept().await.unwrap();
        let info = ConnInfo::new(peer);
        let io = ConnIo::new(server, info.clone());
        (client, info, io)
    }

    /// Whether `w` resolves within `d`.
    async fn fires(w: &mut std::pin::Pin<&mut HoldWatch<'_>>, d: std::time::Duration) -> bool {
        tokio::time::timeout(d, w.as_mut()).await.is_ok()
    }

    /// One `poll_fill`, awaited.
    async fn fill(io: &TcpStream, buf: &mut bytes::BytesMut) -> io::Result<usize> {
        std::future::poll_fn(|cx| poll_fill(io, buf, 4096, cx)).await
    }

    #[tokio::test]
    async fn a_drained_socket_still_wakes_its_reader_for_the_next_bytes() {
        use tokio::io::AsyncWriteExt;
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let mut client = TcpStream::connect(l.local_addr().unwrap()).await.unwrap();
        let (server, _) = l.accept().await.unwrap();
        let mut buf = bytes::BytesMut::new();
        for round in 0..50u8 {
            // A short read clears the readiness; the next bytes must set it again,
            // whether they come before the next wait begins or after.
            client.write_all(&[round; 10]).await.unwrap();
            let mut got = 0;
            while got < 10 {
                let n = tokio::time::timeout(
                    std::time::Duration::from_secs(5),
                    fill(&server, &mut buf),
                )
                .await
                .expect("the reader was woken for bytes that came")
                .unwrap();
                got += n;
            }
            assert_eq!(&buf[..], &[round; 10][..]);
            buf.clear();
            if round % 2 == 0 {
                tokio::task::yield_now().await;
            }
        }
        // A buffer filled to the brim is not taken as drained: what is left is
        // read at once.
        client.write_all(&[7u8; 10_000]).await.unwrap();
        let mut total = 0;
        while total < 10_000 {
            total += fill(&server, &mut buf).await.unwrap();
        }
        assert_eq!(total, 10_000);
        drop(client);
        assert_eq!(
            fill(&server, &mut buf).await.unwrap(),
            0,
            "the close is seen"
        );
    }

    #[tokio::test]
    async fn a_fin_during_a_hold_is_a_client_giving_up() {
        use tokio::io::AsyncWriteExt;
        let (mut client, info, _io) = pair().await;
        let watch = HoldWatch::new(&info);
        tokio::pin!(watch);
        let short = std::time::Duration::from_millis(30);
        // No hold: nothing to watch, whatever the client does.
        assert!(!fires(&mut watch, short).await);
        let held = info.holding();
        tokio::time::sleep(FIN_WITH_REQUEST * 2).await;
        assert!(!fires(&mut watch, short).await, "no FIN yet");
        client.shutdown().await.unwrap();
        assert!(fires(&mut watch, std::time::Duration::from_secs(5)).await);
        drop(held);
    }

    #[tokio::test]
    async fn a_fin_that_came_with_the_request_is_a_half_close() {
        use tokio::io::AsyncWriteExt;
        let (mut client, info, _io) = pair().await;
        client.shutdown().await.unwrap();
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        let watch = HoldWatch::new(&info);
        tokio::pin!(watch);
        let _held = info.holding();
        // However late the connection's task first looks.
        tokio::time::sleep(FIN_WITH_REQUEST * 2).await;
        assert!(
            !fires(&mut watch, FIN_WITH_REQUEST * 3).await,
            "a FIN already there when the hold began is a half-close"
        );
    }

    #[tokio::test]
    async fn unread_bytes_hide_a_fin_without_a_busy_loop() {
        use tokio::io::AsyncWriteExt;
        let (mut client, info, _io) = pair().await;
        let watch = HoldWatch::new(&info);
        tokio::pin!(watch);
        let _held = info.holding();
        tokio::time::sleep(FIN_WITH_REQUEST * 2).await;
        client.write_all(b"next request").await.unwrap();
        client.shutdown().await.unwrap();
        assert!(!fires(&mut watch, std::time::Duration::from_millis(100)).await);
        assert!(watch.blocked, "stops peeking at bytes it cannot read past");
    }

    #[tokio::test]
    async fn the_socket_closes_with_its_conn_io_not_its_conn_info() {
        use tokio::io::AsyncReadExt;
        let (mut client, info, io) = pair().await;
        drop(io);
        let mut b = [0u8; 1];
        let n = tokio::time::timeout(std::time::Duration::from_secs(5), client.read(&mut b))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(n, 0, "closed while the ConnInfo lives on");
        assert!(info.sock().is_none());
    }
}
