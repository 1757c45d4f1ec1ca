//! Accepting connections: HTTP/1.1 and h2c on one port, graceful shutdown.

use std::future::Future;
use std::net::SocketAddr;

use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto::Builder;
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::{JoinHandle, JoinSet};

use crate::config::{SimApi, SimConfig};
use crate::llm::LlmSim;
use crate::vector::VectorSim;

/// Serve the simulated API on `listener` until `shutdown` completes, then stop
/// accepting and let in-flight exchanges finish (idle keep-alive connections close
/// at once).
///
/// This is the entry point for the `brownout sim` command, which owns the listener
/// and the signal handling; tests and the demo use [`spawn`].
pub async fn serve(listener: TcpListener, cfg: SimConfig, shutdown: impl Future<Output = ()>) {
    // One router serves every API by path; `cfg.api` only picks the 404 shape.
    let api = cfg.api;
    let sim = LlmSim::new(cfg);
    let vector =
        matches!(api, SimApi::Qdrant | SimApi::Chroma).then(|| VectorSim::new(api, sim.clone()));
    let builder = Builder::new(TokioExecutor::new());
    let graceful = GracefulShutdown::new();
    // Connection tasks live in a JoinSet so that aborting `serve` (SimHandle's drop)
    // aborts every connection too, leaving nothing behind in tests.
    let mut conns = JoinSet::new();
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            () = &mut shutdown => break,
            Some(_) = conns.join_next() => {}
            accepted = listener.accept() => {
                let (stream, peer) = match accepted {
                    Ok(a) => a,
                    Err(e) => {
                        // Out of file descriptors and similar: back off instead of spinning.
                        tracing::warn!(error = %e, "sim: accept failed");
                        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                        continue;
                    }
                };
                let _ = stream.set_nodelay(true);
                let sim = sim.clone();
                let vector = vector.clone();
                let svc = service_fn(move |req| {
                    let sim = sim.clone();
                    let vector = vector.clone();
                    async move {
                        match vector {
                            Some(v) => v.handle(req).await,
                            None => sim.handle(req).await,
                        }
                    }
                });
                let conn = builder.serve_connection(TokioIo::new(stream), svc).into_owned();
                let conn = graceful.watch(conn);
                conns.spawn(async move {
                    if let Err(e) = conn.await {
                        tracing::debug!(%peer, error = %e, "sim: connection ended with an error");
                    }
                });
            }
        }
    }
    drop(listener);
    graceful.shutdown().await;
    while conns.join_next().await.is_some() {}
}

/// A simulated upstream running on a background task.
///
/// Dropping the handle aborts the server and every connection, so a test that
/// panics leaves no server behind; [`SimHandle::shutdown`] stops it gracefully.
#[derive(Debug)]
pub struct SimHandle {
    /// The bound address (with the real port when bound to port 0).
    pub addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<()>,
}

impl SimHandle {
    /// The base URL to point a client or the proxy at, e.g. `http://127.0.0.1:41234`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Stop accepting, finish in-flight exchanges, and wait until the server is gone.
    pub async fn shutdown(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        let _ = (&mut self.task).await;
    }
}

impl Drop for SimHandle {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Bind `addr` (use port 0 for tests) and serve the simulated API on a background
/// task. Binding happens before this returns, so the server is ready for requests.
pub async fn spawn(addr: SocketAddr, cfg: SimConfig) -> std::io::Result<SimHandle> {
    let listener = TcpListener::bind(addr).await?;
    let addr = listener.local_addr()?;
    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(serve(listener, cfg, async move {
        // A dropped sender also stops the server.
        let _ = stopped.await;
    }));
    Ok(SimHandle {
        addr,
        stop: Some(stop),
        task,
    })
}
