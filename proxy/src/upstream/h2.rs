//! HTTP/2 upstream connections: one per client connection (docs/architecture.md).
//!
//! gRPC needs HTTP/2 end to end, and so does any listener set to
//! `upstream_protocol: h2c | h2`. Each client connection gets an upstream
//! connection of its own, dialled on its first request that needs one and closed
//! when the client's connection ends (the last handle is dropped). Sharing one
//! upstream connection between clients would let one held stream starve the
//! others' flow-control credit, and would pin every client to one pod behind a
//! load balancer.
//!
//! No PINGs are sent (grpc-go answers unexpected ones with GOAWAY
//! `too_many_pings`), and header limits are no tighter than grpc-go's. A stream
//! the upstream refused without processing it (REFUSED_STREAM, or cut by a
//! GOAWAY) is sent again once, on a fresh connection when the old one is going
//! away, if its whole body is still held.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use http::uri::Scheme;
use http::{Request, Response};
use hyper::client::conn::http2;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use rustls::pki_types::ServerName;
use tokio::net::TcpStream;

use crate::upstream::{ReqBody, SendError, UpBody, Upstream, UpstreamError};

/// The largest header list accepted from the upstream and announced to it:
/// grpc-go's default (16 MiB), so no header set a gRPC server sends is refused
/// here first.
pub(crate) const MAX_HEADER_LIST: u32 = 16 << 20;

const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// How to reach one upstream over HTTP/2.
#[derive(Clone)]
pub struct H2Dialer {
    addr: String,
    /// TLS offering only `h2` in ALPN, and the name to verify; none for h2c.
    tls: Option<(tokio_rustls::TlsConnector, ServerName<'static>)>,
}

impl std::fmt::Debug for H2Dialer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("H2Dialer")
            .field("addr", &self.addr)
            .field("tls", &self.tls.is_some())
            .finish()
    }
}

impl H2Dialer {
    /// h2c (prior knowledge) for `http://`, TLS with ALPN `h2` for `https://`.
    pub fn new(upstream: &Upstream, extra_ca: Option<&Path>) -> Result<Self, UpstreamError> {
        let https = upstream.scheme == Scheme::HTTPS;
        let port = upstream
            .authority
            .port_u16()
            .unwrap_or(if https { 443 } else { 80 });
        let host = upstream.authority.host();
        let addr = format!("{host}:{port}");
        let tls = if https {
            let mut cfg = crate::tls::client_config(extra_ca)?;
            cfg.alpn_protocols = vec![b"h2".to_vec()];
            let name = ServerName::try_from(host.trim_start_matches('[').trim_end_matches(']'))
                .map_err(|_| UpstreamError::BadUrl(upstream.display.clone()))?
                .to_owned();
            Some((tokio_rustls::TlsConnector::from(Arc::new(cfg)), name))
        } else {
            None
        };
        Ok(H2Dialer { addr, tls })
    }

    async fn connect(&self) -> Result<http2::SendRequest<ReqBody>, SendError> {
        let tcp = tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(&self.addr))
            .await
            .map_err(|_| {
                SendError::Connect(std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    format!("no connection to {} within {CONNECT_TIMEOUT:?}", self.addr),
                ))
            })?
            .map_err(SendError::Connect)?;
        let _ = tcp.set_nodelay(true);
        let Some((connector, name)) = &self.tls else {
            return handshake(TokioIo::new(tcp)).await;
        };
        let tls = connector
            .connect(name.clone(), tcp)
            .await
            .map_err(SendError::Connect)?;
        if tls.get_ref().1.alpn_protocol() != Some(b"h2".as_slice()) {
            return Err(SendError::NoH2(self.addr.clone()));
        }
        handshake(TokioIo::new(tls)).await
    }
}

async fn handshake<I>(io: I) -> Result<http2::SendRequest<ReqBody>, SendError>
where
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let (sender, conn) = http2::Builder::new(TokioExecutor::new())
        .timer(TokioTimer::new())
        .max_header_list_size(MAX_HEADER_LIST)
        .handshake(io)
        .await?;
    // The connection's own task; it ends when the upstream closes it or once the
    // client connection's handles are gone and its last stream is done.
    tokio::spawn(async move {
        if let Err(e) = conn.await {
            tracing::debug!(error = %e, "upstream HTTP/2 connection ended");
        }
    });
    Ok(sender)
}

/// A client connection's HTTP/2 upstream connection, dialled on first use and
/// again when the upstream closed it.
#[derive(Default)]
pub struct H2Slot(tokio::sync::Mutex<Option<http2::SendRequest<ReqBody>>>);

impl std::fmt::Debug for H2Slot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("H2Slot")
    }
}

impl H2Slot {
    /// A handle on the live connection, dialling one if there is none. Streams
    /// that arrive while it is dialled wait for that one connection.
    async fn sender(
        &self,
        dialer: &H2Dialer,
        fresh: bool,
    ) -> Result<http2::SendRequest<ReqBody>, SendError> {
        let mut slot = self.0.lock().await;
        if let Some(s) = slot.as_ref() {
            if !fresh && !s.is_closed() {
                return Ok(s.clone());
            }
        }
        let s = dialer.connect().await?;
        *slot = Some(s.clone());
        Ok(s)
    }

    /// Send `req` (absolute URI, HTTP/2) and wait for the answer's head. True when
    /// it had to be sent again because the upstream refused its first stream.
    pub async fn send(
        &self,
        dialer: &H2Dialer,
        req: Request<ReqBody>,
        hold_limit: usize,
    ) -> Result<(Response<UpBody>, bool), SendError> {
        let (parts, body) = req.into_parts();
        let (body, mut hold) = body.held(hold_limit);
        let mut req = Request::from_parts(parts, body);
        let mut resent = false;
        loop {
            let mut sender = self.sender(dialer, resent).await?;
            if let Err(e) = sender.ready().await {
                if resent {
                    return Err(SendError::Http(e));
                }
                // Closed between the check and now: nothing was sent.
                resent = true;
                continue;
            }
            let head = {
                let mut again = Request::new(());
                *again.method_mut() = req.method().clone();
                *again.uri_mut() = req.uri().clone();
                *again.version_mut() = req.version();
                *again.headers_mut() = req.headers().clone();
                again
            };
            hold.sent();
            match sender.send_request(req).await {
                Ok(resp) => return Ok((resp.map(UpBody::Pooled), resent)),
                Err(e) if !resent && refused(&e) => match hold.replay_unprocessed() {
                    Some(body) => {
                        tracing::debug!(error = %e, "the upstream refused a stream unprocessed; sending it again");
                        req = head.map(|()| body);
                        resent = true;
                    }
                    None => return Err(SendError::Http(e)),
                },
                Err(e) => return Err(SendError::Http(e)),
            }
        }
    }
}

/// Whether the upstream told us it did not process the stream: REFUSED_STREAM
/// (RFC 9113 §8.7), or a GOAWAY whose last-stream-id is below it (a stream the
/// GOAWAY covers would keep going, not fail).
fn refused(e: &hyper::Error) -> bool {
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = cur {
        if let Some(h2) = err.downcast_ref::<h2::Error>() {
            return h2.reason() == Some(h2::Reason::REFUSED_STREAM)
                || (h2.is_go_away() && h2.is_remote());
        }
        cur = err.source();
    }
    false
}
