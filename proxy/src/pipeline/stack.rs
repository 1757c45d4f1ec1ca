//! The full path as a tower stack, assembled in one place ([`full_path`]).
//!
//! Each layer does one step of what happens to a request a rule could touch, and
//! hands a [`Call`] to the next; the innermost service is the upstream. The same
//! layers, around an application's own service instead of an upstream, are
//! brownout's faults in-process ([`crate::layer`]).
//!
//! Every service here is always ready (limits and pools wait inside the call,
//! where the faults that own them can record the wait), so a layer clones its
//! inner service for each call without losing a reservation.

use std::sync::Arc;

use brownout_faults::api::classify;
use brownout_faults::RequestFacts;
use http::{Request, Response, Version};
use http_body::Body;
use hyper::body::Incoming;
use tower::ServiceBuilder;

use crate::body::{BodyFaults, ProxyBody};
use crate::conn::ConnInfo;
use crate::exchange::{Exchange, Listener, Opening};
use crate::pipeline::call::{Call, CallState, ListenerCtx, ResetAbort};
use crate::pipeline::decide::{Decide, DecideLayer};
use crate::pipeline::forward::Forward;
use crate::pipeline::inject::{RequestFaults, RequestFaultsLayer};
use crate::pipeline::respond::{Respond, RespondLayer};
use crate::upstream::ReqBody;
use crate::wire::RETRY_COUNT_NAME as X_STAINLESS_RETRY_COUNT;

/// The layers between opening a call's record and its upstream, innermost last.
pub type Pipeline<S> = Decide<RequestFaults<Respond<S>>>;

/// The layers every call passes, around `inner` (the upstream, or an
/// application's service in-process). They hold no state of their own (what a
/// call needs travels in it), so a clone per call is free.
pub fn pipeline<S>(inner: S) -> Pipeline<S> {
    ServiceBuilder::new()
        // Which rules fire, read once from the profile in force; the body is read
        // only when a rule looks at it.
        .layer(DecideLayer)
        // The decisions that act before the upstream is called: the only layer
        // that may answer instead of it (errors, resets, limits, deadlines).
        .layer(RequestFaultsLayer)
        // The answer wrapped for the client: measured always, harmed when body
        // or stream faults were decided. Below the request faults so that their
        // holds are not counted in the upstream's time.
        .layer(RespondLayer)
        .service(inner)
}

/// The full path for requests on `conn`, a connection to `ctx`'s listener:
/// [`ProxyService`] opens each request's record in `call`, before the future is
/// first polled, so a request that hyper drops unpolled is still recorded; then
/// the [`pipeline`] with the upstream ([`Forward`]) innermost.
pub fn full_path(ctx: Arc<ListenerCtx>, conn: Arc<ConnInfo>) -> ProxyService {
    ProxyService {
        ctx,
        conn,
        pipeline: pipeline(Forward),
    }
}

/// A request's record opened, and the request made a [`Call`].
pub(crate) fn open<B: Into<ReqBody> + Body>(
    on: &Arc<Listener>,
    upstream: Option<&Arc<ListenerCtx>>,
    conn: &Arc<ConnInfo>,
    req: Request<B>,
) -> Call {
    let (parts, body) = req.into_parts();
    let endpoint = classify(on.api, &parts.method, parts.uri.path());
    let head = Opening {
        endpoint,
        method: parts.method.as_str(),
        path: parts.uri.path(),
        attempt: parts
            .headers
            .get(&X_STAINLESS_RETRY_COUNT)
            .and_then(|v| crate::wire::retry_count(v.as_bytes())),
        bytes_in: body.size_hint().exact().unwrap_or(0),
    };
    let mut ex = Exchange::open(on, head, Some(conn.clone()));
    let grpc = crate::pipeline::grpc::is_grpc(&parts.headers);
    if grpc {
        ex.rec().grpc = Some(Box::new(crate::pipeline::grpc::call_of(parts.uri.path())));
    }
    let http2 = parts.version == Version::HTTP_2;
    Call {
        head: parts,
        body: Some(body.into()),
        state: CallState {
            on: on.clone(),
            upstream: upstream.cloned(),
            conn: conn.clone(),
            ex,
            endpoint,
            grpc,
            http2,
            facts: RequestFacts::default(),
            ip: conn.peer.ip(),
            decided: Vec::new(),
            body_faults: BodyFaults::default(),
            mark: None,
        },
    }
}

/// The full path as hyper calls it, per connection ([`full_path`]).
#[derive(Debug, Clone)]
pub struct ProxyService {
    ctx: Arc<ListenerCtx>,
    conn: Arc<ConnInfo>,
    pipeline: Pipeline<Forward>,
}

impl hyper::service::Service<Request<Incoming>> for ProxyService {
    type Response = Response<ProxyBody>;
    type Error = ResetAbort;
    type Future = <Pipeline<Forward> as tower::Service<Call>>::Future;

    fn call(&self, req: Request<Incoming>) -> Self::Future {
        use std::sync::atomic::Ordering::Relaxed;
        if !self.conn.first_request.load(Relaxed) {
            self.conn.first_request.store(true, Relaxed);
        }
        let call = open(&self.ctx.listener, Some(&self.ctx), &self.conn, req);
        tower::Service::call(&mut self.pipeline.clone(), call)
    }
}
