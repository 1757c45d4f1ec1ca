//! What travels down the full path's stack ([`crate::pipeline::stack`]): a
//! [`Call`] on the way in, a [`Reply`] on the way out of the upstream service, and
//! the proxy listener a call came to ([`ListenerCtx`]: its [`Listener`] facts and
//! where it forwards to). Also what every layer's call is made of: its future
//! ([`BoxFuture`], failing with [`ResetAbort`]) and the next service, taken ready
//! (`take_ready`). The layers import these from here, not from the stack that
//! assembles them.

use std::future::Future;
use std::net::IpAddr;
use std::ops::Deref;
use std::sync::Arc;

use brownout_faults::matcher::{CompiledProfile, CompiledRule};
use brownout_faults::{Endpoint, RequestFacts};
use bytes::Bytes;
use http::{HeaderValue, Response, StatusCode};
use rand_chacha::ChaCha8Rng;

use crate::body::{BodyFaults, ProxyBody};
use crate::config::UpstreamProtocol;
use crate::conn::ConnInfo;
use crate::error::ProxyError;
use crate::exchange::{Exchange, Listener};
use crate::upstream::h2::H2Dialer;
use crate::upstream::{ReqBody, UpBody, Upstream, UpstreamClient};
use crate::wire::FAULT_NAME as X_BROWNOUT_FAULT;

/// One proxy listener: its [`Listener`] and where it forwards to.
#[derive(Debug)]
pub struct ListenerCtx {
    pub listener: Arc<Listener>,
    pub upstream: Upstream,
    pub client: UpstreamClient,
    /// Which requests go upstream over HTTP/2 (`upstream_protocol`).
    pub protocol: UpstreamProtocol,
    /// How HTTP/2 upstream connections are made (each client connection has its
    /// own); none when the listener never sends HTTP/2 upstream.
    pub h2: Option<H2Dialer>,
}

/// Returned to hyper to make it abort the connection (HTTP/1.1) or reset the stream
/// (HTTP/2): that is how an injected `reset` reaches the client.
#[derive(Debug, thiserror::Error)]
#[error("reset by brownout fault")]
pub struct ResetAbort(#[source] Option<h2::Error>);

impl ResetAbort {
    /// Drop the connection (HTTP/1.1) or reset the stream with INTERNAL_ERROR.
    pub const PLAIN: ResetAbort = ResetAbort(None);

    /// Reset an HTTP/2 stream with this RST_STREAM code (hyper reads it from the
    /// error's sources).
    pub fn with_reason(reason: h2::Reason) -> Self {
        ResetAbort(Some(h2::Error::from(reason)))
    }
}

/// The future of a layer that awaits: boxed, one allocation per layer and call.
pub type BoxFuture<T> = std::pin::Pin<Box<dyn Future<Output = Result<T, ResetAbort>> + Send>>;

/// The service to call next, leaving a clone in its place: every service of the
/// stack is always ready, so the clone is as ready as the original.
pub(crate) fn take_ready<S: Clone>(inner: &mut S) -> S {
    let clone = inner.clone();
    std::mem::replace(inner, clone)
}

/// A rule that fired for a request. It owns its way to the rule (the profile it
/// came from, or the ad-hoc rule of an `x-brownout-fault` header), so that a call
/// can cross layers and awaits while the profile in force is replaced: the
/// request keeps the rules it was decided under.
#[derive(Debug, Clone)]
pub enum RuleRef {
    /// The `index`-th of the profile's top-level rules (`phase` none) or of
    /// its `phase`-th phase's.
    Profile {
        profile: Arc<CompiledProfile>,
        phase: Option<usize>,
        index: usize,
    },
    /// The rule an `x-brownout-fault` request header asked for.
    Adhoc(Arc<CompiledRule>),
}

impl Deref for RuleRef {
    type Target = CompiledRule;

    fn deref(&self) -> &CompiledRule {
        match self {
            RuleRef::Profile {
                profile,
                phase,
                index,
            } => {
                // Made by enumerating these same lists of this same (immutable)
                // profile ([`RuleRef::of`]), so the lookups are in range.
                match phase {
                    None => &profile.top[*index],
                    Some(p) => &profile.phases[*p].rules[*index],
                }
            }
            RuleRef::Adhoc(rule) => rule,
        }
    }
}

impl RuleRef {
    /// The `i`-th rule that `profile.active(..)` listed, with `phase` the active
    /// phase's index.
    pub fn of(profile: &Arc<CompiledProfile>, phase: Option<usize>, i: usize) -> Self {
        let top = profile.top.len();
        let (phase, index) = if i < top { (None, i) } else { (phase, i - top) };
        RuleRef::Profile {
            profile: profile.clone(),
            phase,
            index,
        }
    }
}

/// A rule that fired for this request, with its decision stream.
#[derive(Debug)]
pub struct Decided {
    pub rule: RuleRef,
    pub rng: ChaCha8Rng,
}

/// A request on its way down the stack: its head and body, and what the layers
/// above have learnt and decided about it.
#[derive(Debug)]
pub struct Call {
    pub head: http::request::Parts,
    pub body: Option<ReqBody>,
    pub state: CallState,
}

/// Everything about a call but its request, which the upstream service consumes:
/// this comes back with the upstream's answer ([`Reply::Upstream`]) for the
/// response layer.
#[derive(Debug)]
pub struct CallState {
    pub on: Arc<Listener>,
    /// Where the call goes: the proxy listener's upstream, taken by the upstream
    /// service; none in-process, where the application answers. It travels with
    /// the call so that the stack's services hold nothing and cost nothing to
    /// clone per call.
    pub upstream: Option<Arc<ListenerCtx>>,
    pub conn: Arc<ConnInfo>,
    /// The record guard: one record however the call ends.
    pub ex: Exchange,
    pub endpoint: Endpoint,
    pub grpc: bool,
    /// The client speaks HTTP/2 (resets are per stream, not per connection).
    pub http2: bool,
    /// What the body said (model, stream, prompt), when it was read.
    pub facts: RequestFacts,
    /// The client, after `trusted_proxies`.
    pub ip: IpAddr,
    pub decided: Vec<Decided>,
    pub body_faults: BodyFaults,
    /// `x-brownout-fault` for the answer, when injected faults are marked.
    pub mark: Option<HeaderValue>,
}

/// What the upstream service gives back.
#[derive(Debug)]
pub enum Reply {
    /// The upstream's answer head and body, still to be wrapped for the client.
    Upstream {
        state: CallState,
        head: http::response::Parts,
        body: UpBody,
    },
    /// An answer already made (a gateway error, a WebSocket switch).
    Done(Response<ProxyBody>),
}

impl CallState {
    /// An answer made by brownout (an injected error), marked when marking is on.
    pub fn local_response(
        self,
        status: StatusCode,
        mut headers: http::HeaderMap,
        body: Bytes,
    ) -> Response<ProxyBody> {
        if let Some(m) = self.mark {
            headers.insert(&X_BROWNOUT_FAULT, m);
        }
        let mut resp = Response::new(ProxyBody::full(body, Some(self.ex)));
        *resp.status_mut() = status;
        *resp.headers_mut() = headers;
        resp
    }
}

/// The one place a failure of brownout's own (no upstream answer, a bad target)
/// becomes the client's answer: a JSON 502/504 for HTTP, a trailers-only
/// UNAVAILABLE for gRPC (as a gateway's 502/503/504 maps to it).
pub fn gateway_error(mut ex: Exchange, e: ProxyError) -> Response<ProxyBody> {
    ex.gateway_failed(&e);
    if ex.rec().grpc.is_some() {
        let msg = crate::error::chain(&e);
        ex.grpc_status(crate::pipeline::grpc::code::UNAVAILABLE);
        ex.rec().status = Some(200);
        let mut h =
            crate::pipeline::grpc::trailers_only(crate::pipeline::grpc::code::UNAVAILABLE, &msg);
        h.insert("x-brownout-error", HeaderValue::from_static(e.code()));
        let mut resp = Response::new(ProxyBody::full(crate::pipeline::grpc::no_body(), Some(ex)));
        *resp.headers_mut() = h;
        return resp;
    }
    let (parts, body) = e.to_response().into_parts();
    Response::from_parts(parts, ProxyBody::full(body, Some(ex)))
}
