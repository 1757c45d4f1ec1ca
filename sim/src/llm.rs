//! The simulated LLM server's router: one simulator serves every API, chosen by
//! path, as the real hosts do (`/v1/chat/completions` and `/v1/completions` in
//! [`crate::openai`], `/v1/messages` in [`crate::anthropic`], `/v1/embeddings` in
//! [`crate::embeddings`]). Apart from the API modules, so that they share the
//! answer helpers of `openai` without the router and the APIs importing each
//! other.

use std::convert::Infallible;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use http::{Method, Request, Response};
use hyper::body::Incoming;
use tokio::time::Instant;

use crate::config::{SimApi, SimConfig};
use crate::openai::{self, Kind, SimBody};

/// Shared state of one simulated server.
pub(crate) struct LlmSim {
    cfg: SimConfig,
    /// Request ordinal: names responses and selects each request's jitter stream.
    next_ordinal: AtomicU64,
}

impl LlmSim {
    pub(crate) fn new(cfg: SimConfig) -> Arc<Self> {
        Arc::new(Self {
            cfg,
            next_ordinal: AtomicU64::new(0),
        })
    }

    /// The next request's ordinal: it names responses and selects the request's
    /// jitter stream.
    fn next_ordinal(&self) -> u64 {
        self.next_ordinal.fetch_add(1, Ordering::Relaxed)
    }

    /// Route one request. Never fails: bad requests get errors in the shape of the
    /// API their path belongs to.
    pub(crate) async fn handle(
        self: Arc<Self>,
        req: Request<Incoming>,
    ) -> Result<Response<SimBody>, Infallible> {
        let start = Instant::now();
        let method = req.method().clone();
        let path = req.uri().path().to_owned();
        let resp = match (&method, path.as_str()) {
            (&Method::POST, "/v1/chat/completions") => {
                openai::completion(&self.cfg, self.next_ordinal(), req, start, Kind::Chat).await
            }
            (&Method::POST, "/v1/completions") => {
                openai::completion(&self.cfg, self.next_ordinal(), req, start, Kind::Legacy).await
            }
            (&Method::POST, "/v1/messages") => {
                crate::anthropic::messages(&self.cfg, self.next_ordinal(), req, start).await
            }
            (&Method::POST, "/v1/embeddings") => {
                crate::embeddings::embeddings(&self.cfg, self.next_ordinal(), req, start).await
            }
            (&Method::GET, "/health") => openai::health(),
            (&Method::GET, "/metrics") if self.cfg.gpu.is_some() => openai::gpu_metrics(&self.cfg),
            (&Method::GET, "/v1/models") => openai::list_models(),
            (&Method::GET, p) if p.starts_with("/v1/models/") => {
                openai::get_model(&p["/v1/models/".len()..])
            }
            _ if self.cfg.api == SimApi::Anthropic => crate::anthropic::not_found(),
            _ => openai::not_found(&method, &path),
        };
        Ok(resp)
    }
}
