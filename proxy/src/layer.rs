//! brownout's faults in-process: a [`tower::Layer`] that puts a profile's faults in
//! front of an application's own service (an axum router, a hyper service).
//!
//! It is the full path's own stack ([`crate::pipeline::stack::pipeline`]) with the
//! application in the upstream's place: the same decisions under the same seed,
//! the same answers (provider-true errors, rate limits, resets, stream and content
//! faults on the application's answers) and the same records, kept in memory for
//! the test that drives it ([`ChaosLayer::records`]). `examples/axum_chaos.rs`
//! shows it on an axum app; docs/in-process.md is the user's guide.
//!
//! Two things differ from the proxy, because there is no socket of brownout's own:
//! a `reset` is an answer whose body fails before its first byte (hyper then closes
//! an HTTP/1.1 connection, or resets an HTTP/2 stream), and every call's client
//! address is the loopback address.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicI64};
use std::sync::Arc;
use std::task::{Context, Poll};

use brownout_faults::profile::Profile;
use brownout_faults::ApiKind;
use bytes::Bytes;
use http::{HeaderValue, Request, Response};
use http_body::Body;
use http_body_util::BodyExt;

use crate::body::ProxyBody;
use crate::conn::ConnInfo;
use crate::control::state::{ProfileSource, Shared};
use crate::error::{BoxError, ProxyError};
use crate::exchange::Listener;
use crate::pipeline::call::{gateway_error, take_ready, BoxFuture, Call, Reply};
use crate::pipeline::stack::{open, pipeline, Pipeline};
use crate::record::metrics::Metrics;
use crate::record::{Record, Recorder};
use crate::upstream::{ReqBody, UpBody};
use crate::wire::{FAULT_NAME as X_BROWNOUT_FAULT, SEQ_NAME as X_BROWNOUT_SEQ};

/// Records waiting for the recorder's thread at most (as a proxy's default
/// `record.queue`).
const QUEUE: usize = 10_000;
/// Records [`ChaosLayer::records`] gives at most: the recorder keeps the latest
/// 1,000.
const RING: usize = 1_000;

/// Why a [`ChaosLayer`] could not be made.
#[derive(Debug, thiserror::Error)]
pub enum LayerError {
    /// The profile does not validate (every problem, one per line).
    #[error("invalid profile:\n{0}")]
    Profile(String),
    /// The recorder could not start.
    #[error("cannot start the recorder: {0}")]
    Recorder(#[from] std::io::Error),
}

/// A profile's faults as a tower layer. Clones share one profile state (rate-limit
/// buckets, schedules, the phase clock) and one record ring.
#[derive(Debug, Clone)]
pub struct ChaosLayer {
    on: Arc<Listener>,
}

impl ChaosLayer {
    /// Faults from `profile` (YAML or JSON, as a profile file reads), for an
    /// application that speaks `api`'s wire format (classification of endpoints,
    /// error bodies and stream framing follow it).
    pub fn from_profile_text(api: ApiKind, text: &str) -> Result<Self, LayerError> {
        let profile = brownout_faults::validate::load_profile(text, "profile").map_err(|d| {
            LayerError::Profile(
                d.iter()
                    .map(|d| d.to_string())
                    .collect::<Vec<_>>()
                    .join("\n"),
            )
        })?;
        Self::new(api, &profile)
    }

    /// Faults from an already loaded profile.
    pub fn new(api: ApiKind, profile: &Profile) -> Result<Self, LayerError> {
        let metrics = Arc::new(Metrics::default());
        let recorder = Recorder::start(None, QUEUE, metrics.clone())?;
        // The proxy's defaults: the profile decides everything else.
        let mut shared = Shared::new(
            recorder,
            metrics,
            &crate::config::LimitsConfig::default(),
            None,
        );
        // Nothing to wait for in-process: the layer is ready once it is made.
        shared.ready = AtomicBool::new(true);
        let shared = Arc::new(shared);
        shared
            .apply(profile, None, ProfileSource::Api)
            .map_err(LayerError::Profile)?;
        let on = Arc::new(Listener {
            name: Arc::from("in-process"),
            api,
            shared,
            active: Arc::new(AtomicI64::new(0)),
        });
        Ok(ChaosLayer { on })
    }

    /// The records of the calls that have ended (the latest 1,000), oldest
    /// first; each is the line a proxy would write to its JSONL file. A record is
    /// submitted when its exchange ends (its body read or dropped) and reaches
    /// the ring a few milliseconds later: this waits for those (at most 500 ms).
    pub async fn records(&self) -> Vec<Record> {
        let recorder = &self.on.shared.recorder;
        recorder
            .caught_up(std::time::Duration::from_millis(500))
            .await;
        recorder.recent(RING)
    }

    /// Turn every fault off (true) or on again: the kill switch, as
    /// `brownout ctl off` is for a proxy.
    pub fn set_faults_off(&self, off: bool) {
        let release = &self.on.shared.release;
        if off {
            release.turn_off();
        } else {
            release.turn_on();
        }
    }
}

impl<S> tower::Layer<S> for ChaosLayer {
    type Service = Chaos<S>;

    fn layer(&self, inner: S) -> Chaos<S> {
        Chaos {
            on: self.on.clone(),
            stack: pipeline(InProcess { inner }),
        }
    }
}

/// An application's service behind brownout's faults.
#[derive(Debug, Clone)]
pub struct Chaos<S> {
    on: Arc<Listener>,
    stack: Pipeline<InProcess<S>>,
}

/// Where in-process calls come from (there is no socket of brownout's own).
const LOOPBACK: SocketAddr =
    SocketAddr::new(std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST), 0);

impl<S, B, RB> tower::Service<Request<B>> for Chaos<S>
where
    B: Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
    S: tower::Service<Request<ReqBody>, Response = Response<RB>> + Clone + Send + 'static,
    S::Error: Into<BoxError>,
    S::Future: Send,
    RB: Body<Data = Bytes> + Send + 'static,
    RB::Error: Into<BoxError>,
{
    type Response = Response<ProxyBody>;
    type Error = Infallible;
    type Future = std::pin::Pin<
        Box<dyn std::future::Future<Output = Result<Response<ProxyBody>, Infallible>> + Send>,
    >;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        // The application's readiness is waited for inside the call (InProcess).
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        let req = req.map(|b| ReqBody::Boxed(b.map_err(Into::into).boxed_unsync()));
        let conn = ConnInfo::new(LOOPBACK);
        let call = open(&self.on, None, &conn, req);
        let answer = tower::Service::call(&mut take_ready(&mut self.stack), call);
        Box::pin(async move {
            Ok(answer.await.unwrap_or_else(|reset| {
                // No socket to drop: an answer whose body fails before its first
                // byte is how a server's service makes hyper break the exchange.
                let mut r = Response::new(ProxyBody::failing(reset));
                r.headers_mut()
                    .insert(&X_BROWNOUT_FAULT, HeaderValue::from_static("reset"));
                r
            }))
        })
    }
}

/// The application in the upstream's place.
#[derive(Debug, Clone)]
pub struct InProcess<S> {
    inner: S,
}

impl<S, RB> tower::Service<Call> for InProcess<S>
where
    S: tower::Service<Request<ReqBody>, Response = Response<RB>> + Clone + Send + 'static,
    S::Error: Into<BoxError>,
    S::Future: Send,
    RB: Body<Data = Bytes> + Send + 'static,
    RB::Error: Into<BoxError>,
{
    type Response = Reply;
    type Error = crate::pipeline::call::ResetAbort;
    type Future = BoxFuture<Reply>;

    fn poll_ready(
        &mut self,
        _: &mut Context<'_>,
    ) -> Poll<Result<(), crate::pipeline::call::ResetAbort>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, call: Call) -> Self::Future {
        let mut inner = self.inner.clone();
        Box::pin(async move {
            let Call {
                mut head,
                body,
                mut state,
            } = call;
            // brownout's own request headers are brownout's, not the application's.
            head.headers.remove(&X_BROWNOUT_SEQ);
            if !state.body_faults.plan.is_empty() {
                // A body that must be rewritten is asked for without compression.
                head.headers.insert(
                    http::header::ACCEPT_ENCODING,
                    HeaderValue::from_static("identity"),
                );
            }
            let req = Request::from_parts(head, body.unwrap_or(ReqBody::Empty));
            state.ex.upstream_called();
            let ready: Result<(), BoxError> = std::future::poll_fn(|cx| inner.poll_ready(cx))
                .await
                .map_err(Into::into);
            let answered: Result<_, BoxError> = match ready {
                Ok(()) => inner.call(req).await.map_err(Into::into),
                Err(e) => Err(e),
            };
            match answered {
                Ok(resp) => {
                    let (mut parts, body) = resp.into_parts();
                    state.ex.upstream_headers(parts.status.as_u16());
                    if let Some(m) = state.mark.take() {
                        parts.headers.insert(&X_BROWNOUT_FAULT, m);
                    }
                    Ok(Reply::Upstream {
                        state,
                        head: parts,
                        body: UpBody::Boxed(body.map_err(Into::into).boxed_unsync()),
                    })
                }
                Err(e) => {
                    let e = ProxyError::unreachable("the in-process service", e);
                    Ok(Reply::Done(gateway_error(state.ex, e)))
                }
            }
        })
    }
}
