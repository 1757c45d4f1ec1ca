//! WebSocket pass-through: an HTTP/1.1 `Upgrade: websocket` request goes upstream
//! with its upgrade headers, on a connection of its own, and the upstream's `101
//! Switching Protocols` turns the client's connection and that one into a tunnel.
//!
//! brownout is a tunnel here, not a WebSocket parser: the bytes pass unchanged in
//! both directions, whatever they hold (text, binary, ping and close frames,
//! `permessage-deflate`, or bytes that are no frames at all), so any WebSocket
//! version, subprotocol or extension the two peers agree on works.
//!
//! Faults. Everything that acts on a request (`delay`, `error`, `reset`, `hang`,
//! the limits) acts on the upgrade request in [`crate::pipeline`]'s stack before it is
//! forwarded, as on any request: an `error` is the answer the client's handshake
//! gets instead of `101`. Of the faults that act on an answer, `bandwidth` paces
//! each direction of the tunnel separately and `reset` with `after_bytes` resets the
//! client's connection once that many tunnel bytes went to it; the rest (stream,
//! content and vector faults) have no HTTP body to act on and are listed in the
//! record's `faults_skipped` with the reason `websocket`.
//!
//! How a tunnel ends. A side that stops sending (its FIN) is passed on as a
//! half-close, so a WebSocket close handshake ends as the peers intend; the tunnel
//! is over when both directions are, and the record says `ok`. A read or write that
//! fails ends it at once: `client_closed` or `upstream_error`, after the side that
//! failed. No byte either way for `limits.idle_timeout` (the same limit as a
//! keep-alive connection waiting for its next request) closes it as `timeout`:
//! `limits.upstream_idle_timeout` does not apply, since a WebSocket may carry nothing
//! for minutes between messages while pings keep it open. At shutdown a tunnel gets
//! `shutdown_grace` like any exchange, then is closed (`client_closed`, with the
//! error saying so).
//!
//! Why the tunnel runs on the connection's task: hyper hands the client's socket
//! over only once its HTTP/1.1 connection future has finished writing the `101`.
//! The exchange is parked on the connection (`ConnInfo::park_tunnel`) and the
//! connection's task runs it (`Slot::run`), so a tunnel keeps its place in
//! `max_connections`, and shutdown waits for it as for any connection.

use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use brownout_faults::fault::SkipReason;
use bytes::Bytes;
use http::header::{CONNECTION, UPGRADE};
use http::{HeaderMap, HeaderName, HeaderValue, Response, Version};
use hyper::upgrade::OnUpgrade;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::time::Instant;

use crate::body::{BodyFaults, ProxyBody};
use crate::conn::{ConnInfo, Tunnel};
use crate::control::shutdown::StopRx;
use crate::control::state::Shared;
use crate::error::ProxyError;
use crate::exchange::Exchange;
use crate::record::Outcome;
use crate::upstream::CLIENT_BODY_FAILED;
use crate::wire::strip_hop_by_hop;

/// Bytes read at once from either side.
const BUF: usize = 32 * 1024;
/// Longest single sleep while pacing, so that the kill switch is noticed promptly.
const MAX_NAP: Duration = Duration::from_millis(200);
/// The reason a fault that acts on an HTTP answer is skipped on a tunnel.
const SKIPPED: SkipReason = SkipReason::Websocket;

/// What forwarding must keep of a WebSocket upgrade request, whose upgrade
/// headers are hop-by-hop and would otherwise be stripped.
pub(crate) struct Upgrade {
    /// The client's connection, once hyper has written the `101`.
    client: OnUpgrade,
    /// The request's `Upgrade` value.
    protocol: HeaderValue,
}

/// The upgrade of an HTTP/1.1 request that asks for a WebSocket (`Connection:
/// upgrade` and `Upgrade: websocket`); `None` for any other request, which is
/// forwarded as before (its `Upgrade` stripped). HTTP/2's extended CONNECT is not
/// an upgrade: it is answered as any HTTP/2 request.
pub(crate) fn take(parts: &mut http::request::Parts) -> Option<Upgrade> {
    if parts.version != Version::HTTP_11 || !asks_for_websocket(&parts.headers) {
        return None;
    }
    let protocol = parts.headers.get(UPGRADE)?.clone();
    let client = parts.extensions.remove::<OnUpgrade>()?;
    Some(Upgrade { client, protocol })
}

/// `Connection` names `upgrade` and `Upgrade` offers `websocket` (RFC 6455 §4.1;
/// tokens are case-insensitive, a protocol may carry a `/version`).
fn asks_for_websocket(h: &HeaderMap) -> bool {
    let tokens = |name: HeaderName| {
        h.get_all(name)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .map(str::trim)
    };
    // Most requests carry no `Upgrade`: one lookup says so.
    h.contains_key(UPGRADE)
        && tokens(CONNECTION).any(|t| t.eq_ignore_ascii_case("upgrade"))
        && tokens(UPGRADE).any(|t| {
            let name = t.split('/').next().unwrap_or("");
            name.trim().eq_ignore_ascii_case("websocket")
        })
}

impl Upgrade {
    /// Put back the upgrade headers after the hop-by-hop ones were stripped.
    pub(crate) fn restore(&self, headers: &mut HeaderMap) {
        restore(headers, self.protocol.clone());
    }
}

fn restore(headers: &mut HeaderMap, protocol: HeaderValue) {
    headers.insert(UPGRADE, protocol);
    headers.insert(CONNECTION, HeaderValue::from_static("upgrade"));
}

/// The upstream agreed (`101`): the client gets the upstream's `101` with its
/// headers (`Sec-WebSocket-Accept`, `-Protocol`, `-Extensions` as they are), and the
/// tunnel is parked on the client's connection, to run when hyper lets go of it.
pub(crate) fn switch(
    shared: &Arc<Shared>,
    conn: &Arc<ConnInfo>,
    up: Upgrade,
    mut ex: Exchange,
    mut rparts: http::response::Parts,
    mut body_faults: BodyFaults,
    mark: Option<HeaderValue>,
) -> Response<ProxyBody> {
    let Some(upstream) = rparts.extensions.remove::<OnUpgrade>() else {
        // hyper sets it on every 101 it reads: without it there is nothing to run.
        let e = ProxyError::unreachable("upstream upgrade", "101 without an upgradable connection");
        ex.gateway_failed(&e);
        let (parts, body) = e.to_response().into_parts();
        return Response::from_parts(parts, ProxyBody::full(body, Some(ex)));
    };
    let plan = std::mem::take(&mut body_faults.plan);
    for (i, f) in plan.faults() {
        if let Some(rule) = body_faults.plan_rules.get(i) {
            ex.skipped(rule, f.kind(), SKIPPED.as_str());
        }
    }
    // A simulated GPU has no tokens to release on a tunnel: its slot is freed now.
    drop(body_faults.gpu.take());
    let protocol = rparts
        .headers
        .get(UPGRADE)
        .cloned()
        .unwrap_or_else(|| up.protocol.clone());
    strip_hop_by_hop(&mut rparts.headers);
    restore(&mut rparts.headers, protocol);
    if let Some(m) = mark {
        rparts.headers.insert(&crate::wire::FAULT_NAME, m);
    }
    rparts.version = Version::HTTP_11;
    // The handshake is done when the 101 goes out: the tunnel's first byte.
    let handshake = ex.start().elapsed().as_secs_f64() * 1000.0;
    ex.rec().ttfb_ms = Some((handshake * 1000.0).round() / 1000.0);
    let reset = match (body_faults.reset_after, body_faults.reset_rule.take()) {
        (Some(n), Some(rule)) => Some((n, rule)),
        _ => None,
    };
    conn.park_tunnel(Box::new(Parked {
        ex,
        client: up.client,
        upstream,
        shared: shared.clone(),
        conn: conn.clone(),
        bandwidth: body_faults.bandwidth,
        reset,
    }));
    Response::from_parts(rparts, ProxyBody::full(Bytes::new(), None))
}

/// A tunnel whose `101` is on its way to the client, waiting for both sockets.
pub struct Parked {
    ex: Exchange,
    client: OnUpgrade,
    upstream: OnUpgrade,
    shared: Arc<Shared>,
    conn: Arc<ConnInfo>,
    /// Bytes per second, for each direction.
    bandwidth: Option<u64>,
    /// Reset the client's connection after this many tunnel bytes went to it.
    reset: Option<(u64, Arc<str>)>,
}

impl std::fmt::Debug for Parked {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Parked")
            .field("bandwidth", &self.bandwidth)
            .field("reset", &self.reset)
            .finish_non_exhaustive()
    }
}

/// The connection's hold on a tunnel parked on it: [`Slot::run`] runs it; should
/// the connection's task end first (dropped at shutdown), the drop writes its
/// record (and breaks the cycle of a connection that holds its own exchange).
pub(crate) struct Slot(Arc<ConnInfo>);

impl Slot {
    pub(crate) fn new(conn: Arc<ConnInfo>) -> Self {
        Slot(conn)
    }

    /// Run the tunnel parked on the connection, if any, until it ends.
    pub(crate) async fn run(self, idle: Duration, stop: StopRx) {
        if let Some(t) = self.0.take_tunnel() {
            // Boxed (by `Tunnel::run`): a connection without a tunnel carries no
            // room for one.
            t.run(idle, stop).await;
        }
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        if let Some(t) = self.0.take_tunnel() {
            t.abandon();
        }
    }
}

/// Why a tunnel ended.
#[derive(Debug, thiserror::Error)]
enum End {
    #[error("both sides closed")]
    Clean,
    #[error("client side: {0}")]
    Client(String),
    #[error("upstream side: {0}")]
    Upstream(String),
    #[error("reset by brownout fault")]
    Reset,
    #[error("no tunnel byte either way for {0:?} (idle_timeout)")]
    Idle(Duration),
    #[error("tunnel closed by brownout at shutdown (shutdown_grace)")]
    Shutdown,
}

impl End {
    fn outcome(&self) -> Outcome {
        match self {
            End::Clean => Outcome::Ok,
            End::Client(_) | End::Shutdown => Outcome::ClientClosed,
            End::Upstream(_) => Outcome::UpstreamError,
            End::Reset => Outcome::Reset,
            End::Idle(_) => Outcome::Timeout,
        }
    }
}

/// Which way bytes go.
#[derive(Debug, Clone, Copy)]
enum Way {
    ToUpstream,
    ToClient,
}

/// One direction of a tunnel: what it may send, and what it sent.
struct Dir<'a> {
    way: Way,
    bandwidth: Option<u64>,
    reset_after: Option<u64>,
    shared: &'a Shared,
    sent: &'a AtomicU64,
    /// Shared by both directions: the last byte either way, in ms since `started`.
    activity: &'a AtomicU64,
    started: Instant,
}

impl Dir<'_> {
    fn touch(&self) {
        let ms = u64::try_from(self.started.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.activity.fetch_max(ms, Ordering::Relaxed);
    }

    fn read_failed(&self, e: std::io::Error) -> End {
        match self.way {
            Way::ToUpstream => End::Client(format!("read: {e}")),
            Way::ToClient => End::Upstream(format!("read: {e}")),
        }
    }

    fn write_failed(&self, e: std::io::Error) -> End {
        match self.way {
            Way::ToUpstream => End::Upstream(format!("write: {e}")),
            Way::ToClient => End::Client(format!("write: {e}")),
        }
    }

    /// How many of `len` bytes may go now, after waiting for `bandwidth`.
    async fn pace(&self, next_at: &mut Option<Instant>, len: usize) -> usize {
        let Some(bps) = self.bandwidth else {
            return len;
        };
        loop {
            if !self.shared.release.faults_enabled() {
                return len;
            }
            let now = Instant::now();
            let at = *next_at.get_or_insert(now);
            if at > now {
                tokio::time::sleep_until(at.min(now + MAX_NAP)).await;
                continue;
            }
            let chunk = len.min((bps / 10).max(1) as usize);
            *next_at = Some(now + Duration::from_secs_f64(chunk as f64 / bps as f64));
            return chunk;
        }
    }
}

/// Copy `from` to `to` until `from` ends, then half-close `to`.
async fn pump<R, W>(mut from: R, mut to: W, dir: Dir<'_>) -> Result<(), End>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let mut buf = vec![0u8; BUF];
    let mut next_at = None;
    loop {
        let n = match from.read(&mut buf).await {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) => return Err(dir.read_failed(e)),
        };
        dir.touch();
        let mut data = &buf[..n];
        let mut reset_now = false;
        if let Some(limit) = dir.reset_after {
            if dir.shared.release.faults_enabled() {
                let room = limit.saturating_sub(dir.sent.load(Ordering::Relaxed));
                if n as u64 >= room {
                    data = &data[..room as usize];
                    reset_now = true;
                }
            }
        }
        while !data.is_empty() {
            let take = dir.pace(&mut next_at, data.len()).await;
            let (now, rest) = data.split_at(take);
            to.write_all(now).await.map_err(|e| dir.write_failed(e))?;
            dir.sent.fetch_add(take as u64, Ordering::Relaxed);
            dir.touch();
            data = rest;
        }
        to.flush().await.map_err(|e| dir.write_failed(e))?;
        if reset_now {
            return Err(End::Reset);
        }
    }
    // This side sent its last byte: the other learns it as a half-close. A failure
    // here means the other side is gone, which its own direction reports.
    let _ = to.shutdown().await;
    Ok(())
}

/// Resolves when no byte went either way for `idle` (never, for a zero `idle`).
async fn idle_for(idle: Duration, activity: &AtomicU64, started: Instant) {
    if idle.is_zero() {
        return std::future::pending().await;
    }
    loop {
        let last = started + Duration::from_millis(activity.load(Ordering::Relaxed));
        let deadline = last + idle;
        if Instant::now() >= deadline {
            return;
        }
        tokio::time::sleep_until(deadline).await;
    }
}

impl Tunnel for Parked {
    fn run(
        self: Box<Self>,
        idle: Duration,
        stop: StopRx,
    ) -> Pin<Box<dyn std::future::Future<Output = ()> + Send>> {
        Box::pin(self.relay(idle, stop))
    }

    fn abandon(self: Box<Self>) {
        Tally::new(self.ex).finish(End::Shutdown);
    }
}

impl Parked {
    /// Relay bytes both ways until the tunnel ends, then write the record.
    async fn relay(self, idle: Duration, mut stop: StopRx) {
        let Parked {
            ex,
            client,
            upstream,
            shared,
            conn,
            bandwidth,
            reset,
        } = self;
        let mut tally = Tally::new(ex);
        let abort = async move {
            if stop
                .wait_for(|v| *v == crate::control::shutdown::Shutdown::Abort)
                .await
                .is_err()
            {
                // The proxy went away without a shutdown: nothing will stop us.
                std::future::pending::<()>().await;
            }
        };
        tokio::pin!(abort);
        let (client, upstream) = tokio::select! {
            both = async { tokio::join!(client, upstream) } => both,
            _ = &mut abort => return tally.finish(End::Shutdown),
        };
        let client = match client {
            Ok(c) => c,
            Err(e) => return tally.finish(End::Client(format!("before the tunnel: {e}"))),
        };
        let upstream = match upstream {
            Ok(u) => u,
            Err(e) => return tally.finish(End::Upstream(format!("before the tunnel: {e}"))),
        };
        let (cr, cw) = tokio::io::split(TokioIo::new(client));
        let (ur, uw) = tokio::io::split(TokioIo::new(upstream));
        let started = Instant::now();
        let activity = AtomicU64::new(0);
        let (sent_up, sent_down) = (tally.up.clone(), tally.down.clone());
        let dir = |way, sent| Dir {
            way,
            bandwidth,
            reset_after: match way {
                Way::ToClient => reset.as_ref().map(|(n, _)| *n),
                Way::ToUpstream => None,
            },
            shared: &shared,
            sent,
            activity: &activity,
            started,
        };
        let to_upstream = pump(cr, uw, dir(Way::ToUpstream, &sent_up));
        let to_client = pump(ur, cw, dir(Way::ToClient, &sent_down));
        let quiet = idle_for(idle, &activity, started);
        tokio::pin!(to_upstream, to_client, quiet);
        let (mut up_done, mut down_done) = (false, false);
        let end = loop {
            tokio::select! {
                r = &mut to_upstream, if !up_done => match r {
                    Ok(()) if down_done => break End::Clean,
                    Ok(()) => up_done = true,
                    Err(e) => break e,
                },
                r = &mut to_client, if !down_done => match r {
                    Ok(()) if up_done => break End::Clean,
                    Ok(()) => down_done = true,
                    Err(e) => break e,
                },
                _ = &mut quiet => break End::Idle(idle),
                _ = &mut abort => break End::Shutdown,
            }
        };
        if matches!(end, End::Reset) {
            // Before the sockets drop: the client's closes with an RST.
            conn.request_reset();
            if let (Some((_, rule)), Some(ex)) = (&reset, tally.ex.as_mut()) {
                ex.applied(rule, "reset");
            }
        }
        tally.finish(end);
    }
}

/// A tunnel's exchange and its byte counts: `finish` writes them into the record;
/// dropped unfinished (a worker's runtime ends at shutdown's abort, dropping the
/// tasks it still runs), it records the tunnel as closed at shutdown, bytes and all.
struct Tally {
    ex: Option<Exchange>,
    /// Tunnel bytes written to the upstream, and to the client.
    up: Arc<AtomicU64>,
    down: Arc<AtomicU64>,
}

impl Tally {
    fn new(ex: Exchange) -> Self {
        Tally {
            ex: Some(ex),
            up: Arc::new(AtomicU64::new(0)),
            down: Arc::new(AtomicU64::new(0)),
        }
    }

    /// Write what the tunnel did into the record: `bytes_in` and `bytes_out` count
    /// the tunnel's bytes each way (after the upgrade request's own body, if any).
    fn finish(&mut self, end: End) {
        let Some(mut ex) = self.ex.take() else {
            return;
        };
        let (up, down) = (
            self.up.load(Ordering::Relaxed),
            self.down.load(Ordering::Relaxed),
        );
        if let Some(n) = ex.bytes_in.take() {
            ex.rec().bytes_in = n.load(Ordering::Relaxed) & !CLIENT_BODY_FAILED;
        }
        ex.rec().bytes_in += up;
        ex.rec().bytes_out += down;
        let error = (!matches!(end, End::Clean)).then(|| end.to_string());
        tracing::debug!(
            outcome = end.outcome().as_str(),
            up,
            down,
            "websocket tunnel ended"
        );
        ex.finish_body(Some(end.outcome()), error);
    }
}

impl Drop for Tally {
    fn drop(&mut self) {
        self.finish(End::Shutdown);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(
                HeaderName::from_bytes(k.as_bytes()).unwrap(),
                HeaderValue::from_str(v).unwrap(),
            );
        }
        h
    }

    #[test]
    fn websocket_upgrades_are_recognised() {
        let yes = [
            headers(&[("connection", "Upgrade"), ("upgrade", "websocket")]),
            // Firefox's form.
            headers(&[
                ("connection", "keep-alive, Upgrade"),
                ("upgrade", "WebSocket"),
            ]),
            headers(&[
                ("connection", "keep-alive"),
                ("connection", "upgrade"),
                ("upgrade", "foo, websocket/13"),
            ]),
        ];
        for h in &yes {
            assert!(asks_for_websocket(h), "{h:?}");
        }
        let no = [
            headers(&[("upgrade", "websocket")]),
            headers(&[("connection", "upgrade")]),
            headers(&[("connection", "upgrade"), ("upgrade", "h2c")]),
            headers(&[("connection", "upgraded"), ("upgrade", "websocket")]),
            headers(&[("connection", "upgrade"), ("upgrade", "websockets")]),
        ];
        for h in &no {
            assert!(!asks_for_websocket(h), "{h:?}");
        }
    }

    #[test]
    fn upgrade_headers_survive_the_strip() {
        let mut h = headers(&[
            ("connection", "keep-alive, Upgrade"),
            ("upgrade", "websocket"),
            ("keep-alive", "timeout=5"),
            ("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ=="),
            ("sec-websocket-protocol", "chat"),
        ]);
        strip_hop_by_hop(&mut h);
        restore(&mut h, HeaderValue::from_static("websocket"));
        assert_eq!(h.get("upgrade").unwrap(), "websocket");
        assert_eq!(h.get("connection").unwrap(), "upgrade");
        assert!(h.get("keep-alive").is_none());
        assert_eq!(
            h.get("sec-websocket-key").unwrap(),
            "dGhlIHNhbXBsZSBub25jZQ=="
        );
        assert_eq!(h.get("sec-websocket-protocol").unwrap(), "chat");
    }
}
