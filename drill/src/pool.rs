//! The drill client's HTTP/1.1 connection pool, shaped like the SDKs' (httpx's
//! `Limits`): at most `max_connections` open at once, requests beyond that wait
//! for a free one (and that wait counts in their latency, as it does for an SDK
//! user). Every connection stays open between requests (the permits keep the idle
//! ones within `max_connections` too).
//!
//! A bound matters for an open-loop generator: without one, a server that falls
//! behind makes the generator open ever more connections, whose handshakes slow
//! the server further, until the run collapses into connection errors that say
//! more about the generator than about the service.

use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::client::conn::http1::{self, SendRequest};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// Why a request got no response.
#[derive(Debug, thiserror::Error)]
pub enum PoolError {
    /// The TCP connection could not be made.
    #[error("cannot connect to {addr}: {source}")]
    Connect {
        /// host:port.
        addr: String,
        /// The socket error.
        #[source]
        source: std::io::Error,
    },
    /// HTTP failed (handshake, a connection closed mid-request, a broken answer).
    #[error("HTTP: {0}")]
    Http(#[from] hyper::Error),
    /// The pool was shut down.
    #[error("the connection pool is closed")]
    Closed,
}

/// A pool of HTTP/1.1 connections to one host.
#[derive(Debug)]
pub struct Pool {
    addr: String,
    permits: Arc<Semaphore>,
    idle: Mutex<Vec<SendRequest<Full<Bytes>>>>,
}

/// A connection lent for one exchange: give it back with [`Lease::release`] once
/// the response body has been read to the end; dropping it closes the connection
/// (the right thing after an error or a body left unread).
#[derive(Debug)]
pub struct Lease {
    sender: Option<SendRequest<Full<Bytes>>>,
    _permit: OwnedSemaphorePermit,
}

impl Pool {
    /// A pool for `addr` (`host:port`).
    pub fn new(addr: String, max_connections: usize) -> Self {
        Self {
            addr,
            permits: Arc::new(Semaphore::new(max_connections.max(1))),
            idle: Mutex::new(Vec::new()),
        }
    }

    /// Send the request `make` builds on a pooled (or new) connection; waits while
    /// every connection is busy. A pooled connection the server closed meanwhile is
    /// replaced once (`make` is called again for that).
    pub async fn send(
        &self,
        make: impl Fn() -> Request<Full<Bytes>>,
    ) -> Result<(Response<Incoming>, Lease), PoolError> {
        let Ok(permit) = Arc::clone(&self.permits).acquire_owned().await else {
            return Err(PoolError::Closed);
        };
        let (mut sender, reused) = match self.take_idle() {
            Some(s) => (s, true),
            None => (self.connect().await?, false),
        };
        let resp = match send_on(&mut sender, make()).await {
            Ok(r) => r,
            Err(e) if reused && (e.is_closed() || e.is_canceled() || e.is_incomplete_message()) => {
                // The idle connection had been closed by the server: once more on a
                // fresh one, as HTTP clients do for requests that never got a byte back.
                sender = self.connect().await?;
                send_on(&mut sender, make()).await?
            }
            Err(e) => return Err(e.into()),
        };
        Ok((
            resp,
            Lease {
                sender: Some(sender),
                _permit: permit,
            },
        ))
    }

    fn take_idle(&self) -> Option<SendRequest<Full<Bytes>>> {
        let mut idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
        while let Some(s) = idle.pop() {
            if !s.is_closed() {
                return Some(s);
            }
        }
        None
    }

    async fn connect(&self) -> Result<SendRequest<Full<Bytes>>, PoolError> {
        let stream = TcpStream::connect(&self.addr)
            .await
            .map_err(|source| PoolError::Connect {
                addr: self.addr.clone(),
                source,
            })?;
        let _ = stream.set_nodelay(true);
        let (sender, conn) = http1::handshake(TokioIo::new(stream)).await?;
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                tracing::debug!(error = %e, "drill: connection ended");
            }
        });
        Ok(sender)
    }

    /// Return a connection whose response was read to the end.
    pub fn release(&self, mut lease: Lease) {
        if let Some(s) = lease.sender.take() {
            if s.is_closed() {
                return;
            }
            self.idle.lock().unwrap_or_else(|p| p.into_inner()).push(s);
        }
    }
}

async fn send_on(
    sender: &mut SendRequest<Full<Bytes>>,
    req: Request<Full<Bytes>>,
) -> Result<Response<Incoming>, hyper::Error> {
    sender.ready().await?;
    sender.send_request(req).await
}
