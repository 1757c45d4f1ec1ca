//! A connection on the full path: hyper serves it, HTTP/1.1 (with upgrades) or
//! HTTP/2, and every request on it is a call down the stack
//! ([`crate::pipeline::stack::full_path`]). The connection ends at shutdown, after
//! `idle_timeout` with nothing in flight, without a first request within
//! `header_timeout`, at an injected connection reset or GOAWAY, or when the client
//! gives up while a fault holds its request; a WebSocket tunnel parked on it runs
//! here once hyper lets go (`tunnel::Slot`).
//!
//! The accept loop ([`crate::server`]) serves a connection here when the fast loop
//! does not take it, and the fast loop ([`crate::http1`]) hands one over here.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::sync::Semaphore;
use tokio_rustls::TlsAcceptor;

use crate::config::HalfClose;
use crate::conn::{ConnInfo, GOAWAY_CLOSE};
use crate::control::shutdown::{Shutdown, StopRx};
use crate::pipeline::call::ListenerCtx;
use crate::pipeline::stack::ProxyService;
use crate::record::metrics::Rejection;

/// How a listener serves each accepted connection: built for each listener at
/// start ([`crate::server`]), read by the accept loop, the fast loop and
/// [`serve_full`], which the fast loop hands its connections over to.
pub(crate) struct ConnSettings {
    pub(crate) tls: Option<TlsAcceptor>,
    /// hyper's HTTP/1.1 builder for this listener's `half_close`.
    pub(crate) h1: Arc<hyper::server::conn::http1::Builder>,
    pub(crate) half_close: HalfClose,
    /// Room for connections accepted over `max_connections` to wait for a slot,
    /// shared by every listener (`WAITING_ROOM` in [`crate::server`]).
    pub(crate) waiting: Arc<Semaphore>,
    pub(crate) h2: Arc<hyper::server::conn::http2::Builder<TokioExecutor>>,
    pub(crate) handshake_timeout: Duration,
    pub(crate) header_timeout: Duration,
    pub(crate) idle_timeout: Duration,
    /// Plain-text connections to a plain-HTTP upstream are served by
    /// [`crate::http1`]'s loop (HTTP/1.1 upstream only).
    pub(crate) own_h1: bool,
    /// On that loop, requests no rule could touch skip the pipeline.
    pub(crate) fast_path: bool,
}

/// Serve a connection on the full (hyper) path for the rest of its life: a TLS or
/// plain connection the fast path does not take, or one it hands over with the
/// bytes it read first.
pub(crate) async fn serve_full<I>(
    h2: bool,
    io: I,
    ctx: Arc<ListenerCtx>,
    info: Arc<ConnInfo>,
    settings: &ConnSettings,
    stop: StopRx,
) where
    I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let svc = crate::pipeline::stack::full_path(ctx.clone(), info.clone());
    // A WebSocket tunnel is parked on the connection while its 101 goes out, and
    // runs here, on the connection's task, once hyper has handed the socket over.
    let tunnel = crate::pipeline::tunnel::Slot::new(info.clone());
    let first = FirstRequest {
        info,
        timeout: settings.header_timeout,
        idle_timeout: settings.idle_timeout,
        // HTTP/2 has no half-close of the connection (a stream ends with END_STREAM,
        // which hyper handles), and under `abort` hyper sees every FIN itself.
        watch_holds: !h2 && settings.half_close == HalfClose::Answer,
        ctx,
    };
    serve_as(h2, io, svc, settings, stop.clone(), first).await;
    tunnel.run(settings.idle_timeout, stop).await
}

/// Serve a connection with one protocol's builder. Boxed: each protocol's (and
/// TLS's) connection state takes only the room it needs, instead of sizing the
/// task of every connection for the largest.
async fn serve_as<I>(
    h2: bool,
    io: I,
    svc: ProxyService,
    settings: &ConnSettings,
    stop: StopRx,
    first: FirstRequest,
) where
    I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    if h2 {
        Box::pin(drive(
            settings.h2.serve_connection(TokioIo::new(io), svc),
            stop,
            first,
        ))
        .await
    } else {
        Box::pin(drive(
            settings
                .h1
                .serve_connection(TokioIo::new(io), svc)
                .with_upgrades(),
            stop,
            first,
        ))
        .await
    }
}

/// A connection [`drive`] can stop gracefully. hyper-util's `GracefulConnection`
/// does not cover an HTTP/1.1 connection with upgrades (WebSocket) enabled.
trait Graceful: std::future::Future {
    fn graceful_shutdown(self: std::pin::Pin<&mut Self>);
}

impl<I> Graceful for hyper::server::conn::http1::UpgradeableConnection<TokioIo<I>, ProxyService>
where
    I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    fn graceful_shutdown(self: std::pin::Pin<&mut Self>) {
        hyper::server::conn::http1::UpgradeableConnection::graceful_shutdown(self);
    }
}

impl<I> Graceful for hyper::server::conn::http2::Connection<TokioIo<I>, ProxyService, TokioExecutor>
where
    I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    fn graceful_shutdown(self: std::pin::Pin<&mut Self>) {
        hyper::server::conn::http2::Connection::graceful_shutdown(self);
    }
}

/// `header_timeout` for a connection's first request.
struct FirstRequest {
    info: Arc<ConnInfo>,
    timeout: Duration,
    /// A connection with nothing in flight this long is closed (GOAWAY on HTTP/2).
    idle_timeout: Duration,
    /// End the connection when the client's FIN arrives while a fault holds its
    /// request ([`crate::conn::HoldWatch`]).
    watch_holds: bool,
    /// The listener, for the rejection counter.
    ctx: Arc<ListenerCtx>,
}

/// Poll a connection until it ends, shutting it down gracefully on stop, dropping
/// it on abort, and dropping it when no first request arrives within `header_timeout`.
async fn drive<C>(conn: C, mut stop: StopRx, first: FirstRequest)
where
    C: Graceful + std::future::Future<Output = Result<(), hyper::Error>>,
{
    let mut conn = std::pin::pin!(conn);
    let mut graceful = false;
    let first_deadline = tokio::time::sleep(first.timeout);
    tokio::pin!(first_deadline);
    let mut waiting_first = true;
    // Idle checks a few times per idle_timeout (HTTP/1.1 also has hyper's own timer).
    let mut idle_tick =
        tokio::time::interval((first.idle_timeout / 4).max(Duration::from_millis(250)));
    idle_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // After an injected GOAWAY, the connection closes this soon (in-flight calls
    // fail as on a server going away).
    let going = tokio::time::sleep(Duration::MAX);
    tokio::pin!(going);
    let mut going_away = false;
    let hold_watch = crate::conn::HoldWatch::new(&first.info);
    tokio::pin!(hold_watch);
    let reject = |reason, why: &dyn std::fmt::Display| {
        let (ctx, peer) = (&first.ctx, first.info.peer);
        ctx.listener
            .shared
            .metrics
            .rejected(reason, &ctx.listener.name, peer, why)
    };
    loop {
        if *stop.borrow() == Shutdown::Abort {
            return;
        }
        if *stop.borrow() == Shutdown::Draining && !graceful {
            conn.as_mut().graceful_shutdown();
            graceful = true;
        }
        tokio::select! {
            r = conn.as_mut() => {
                if let Err(e) = r {
                    if e.is_parse() {
                        // hyper answered 400 (431 for an oversized head) and closed.
                        reject(Rejection::BadRequest, &e);
                    } else if e.is_timeout() && !first.info.first_request.load(Ordering::Relaxed) {
                        reject(Rejection::HeaderTimeout, &e);
                    }
                }
                return;
            }
            _ = &mut hold_watch, if first.watch_holds => {
                tracing::debug!(peer = %first.info.peer, "the client closed while a fault held its request");
                return;
            }
            r = stop.changed() => if r.is_err() { return },
            _ = idle_tick.tick(), if !graceful => {
                if first.info.idle_for() >= first.idle_timeout {
                    tracing::debug!(peer = %first.info.peer, "closing idle connection (idle_timeout)");
                    conn.as_mut().graceful_shutdown();
                    graceful = true;
                }
            }
            _ = first.info.kill.notified() => {
                if !first.info.goaway.load(Ordering::Acquire) {
                    return;
                }
                if !graceful {
                    conn.as_mut().graceful_shutdown();
                    graceful = true;
                }
                going.as_mut().reset(tokio::time::Instant::now() + GOAWAY_CLOSE);
                going_away = true;
            }
            _ = &mut going, if going_away => return,
            _ = &mut first_deadline, if waiting_first => {
                if !first.info.first_request.load(Ordering::Relaxed) {
                    let t = first.timeout;
                    reject(
                        Rejection::HeaderTimeout,
                        &format_args!("no request headers within header_timeout ({t:?})"),
                    );
                    return;
                }
                waiting_first = false;
            }
        }
    }
}
