//! The per-request pipeline: classify → match → decide → request-side faults →
//! upstream → response wrapper.
//!
//! With no profile rules (or faults off) the path is: classify by path, forward,
//! wrap the body for measurement. Nothing is buffered and nothing is locked; the
//! profile is read through an atomic pointer.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;

use brownout_faults::api::{classify, inspect_request};
use brownout_faults::decide::{decide, rng_for};
use brownout_faults::fault::SkipReason;
use brownout_faults::matcher::{parse_header_faults, CompiledRule, MatchInput, RuleDecision};
use brownout_faults::schedule::{fingerprint, CallId};
use brownout_faults::stream::{framing_for, rewrite_json, Shaper, StreamPlan};
use brownout_faults::{ApiKind, Endpoint, RequestFacts};
use bytes::{Bytes, BytesMut};
use http::{HeaderValue, Request, Response, StatusCode, Version};
use http_body::Body;
use http_body_util::BodyExt;
use hyper::body::Incoming;
use tokio::time::Instant;

use crate::body::decode::TapDecoder;
use crate::body::llm::{passive_tap, LlmStream, Tap};
use crate::body::{BodyFaults, ProxyBody, ReqBody, CLIENT_BODY_FAILED};
use crate::config::UpstreamProtocol;
use crate::control::state::Shared;
use crate::error::ProxyError;
use crate::pipeline::exchange::{Exchange, Opening};
use crate::pipeline::inject::{request_side, Decided, RequestView, Step};
use crate::record::Outcome;
use crate::server::net::{client_ip, ConnInfo};
use crate::upstream::h2::H2Dialer;
use crate::upstream::{UpBody, Upstream, UpstreamClient};
use crate::wire::{
    strip_hop_by_hop, FAULT_NAME as X_BROWNOUT_FAULT, RETRY_COUNT_NAME as X_STAINLESS_RETRY_COUNT,
    SEQ_NAME as X_BROWNOUT_SEQ,
};

/// One listener's forwarding context.
#[derive(Debug)]
pub struct ListenerCtx {
    pub name: Arc<str>,
    pub api: ApiKind,
    pub upstream: Upstream,
    pub client: UpstreamClient,
    /// Which requests go upstream over HTTP/2 (`upstream_protocol`).
    pub protocol: UpstreamProtocol,
    /// How HTTP/2 upstream connections are made (each client connection has its
    /// own); none when the listener never sends HTTP/2 upstream.
    pub h2: Option<H2Dialer>,
    pub shared: Arc<Shared>,
    pub active: Arc<AtomicI64>,
}

/// The service hyper calls for each request on one connection.
#[derive(Debug, Clone)]
pub struct ProxyService {
    pub ctx: Arc<ListenerCtx>,
    pub conn: Arc<ConnInfo>,
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

impl hyper::service::Service<Request<Incoming>> for ProxyService {
    type Response = Response<ProxyBody>;
    type Error = ResetAbort;
    type Future = Pin<Box<dyn Future<Output = Result<Response<ProxyBody>, ResetAbort>> + Send>>;

    fn call(&self, req: Request<Incoming>) -> Self::Future {
        if !self
            .conn
            .first_request
            .load(std::sync::atomic::Ordering::Relaxed)
        {
            self.conn
                .first_request
                .store(true, std::sync::atomic::Ordering::Relaxed);
        }
        Box::pin(handle(self.ctx.clone(), self.conn.clone(), req))
    }
}

/// Read up to `limit` bytes of a body for matching. Returns what was read and, if
/// the body was longer, the unread rest (then the body counts as not inspected).
async fn read_prefix<B>(mut body: B, limit: usize) -> Result<(Bytes, Option<B>), hyper::Error>
where
    B: Body<Data = Bytes, Error = hyper::Error> + Unpin,
{
    let mut buf = BytesMut::new();
    loop {
        if body.is_end_stream() {
            return Ok((buf.freeze(), None));
        }
        match body.frame().await {
            None => return Ok((buf.freeze(), None)),
            Some(Err(e)) => return Err(e),
            Some(Ok(frame)) => {
                if let Ok(data) = frame.into_data() {
                    buf.extend_from_slice(&data);
                    if buf.len() > limit {
                        return Ok((buf.freeze(), Some(body)));
                    }
                }
            }
        }
    }
}

/// Read the request body (up to `inspect_limit`) for its facts (model, stream,
/// prompt estimate) and note them in the record. What was read travels on in front
/// of the rest (`ReqBody::Prefixed`), so the upstream gets the body unchanged; a
/// body over the limit is not inspected (`None`) and streams on as it came. When
/// the client's body breaks while it is read, the exchange is finished here.
async fn inspect_body(
    ctx: &ListenerCtx,
    parts: &http::request::Parts,
    req_body: &mut Option<ReqBody>,
    ex: &mut Exchange,
) -> Result<Option<RequestFacts>, ResetAbort> {
    let mut facts = None;
    match req_body.take() {
        Some(ReqBody::Incoming(b)) => {
            let limit = ctx.shared.inspect_limit;
            if b.size_hint().lower() > limit as u64 {
                *req_body = Some(ReqBody::Incoming(b));
            } else {
                match read_prefix(b, limit).await {
                    Ok((prefix, rest)) => {
                        if rest.is_none() {
                            facts = Some(inspect_request(
                                ctx.api,
                                &parts.method,
                                parts.uri.path(),
                                Some(&prefix),
                            ));
                        }
                        ex.rec().bytes_in = prefix.len() as u64;
                        *req_body = Some(ReqBody::Prefixed {
                            prefix: Some(prefix),
                            rest,
                        });
                    }
                    Err(e) => {
                        // The client's body broke while we read it: nothing to forward.
                        ex.finish(Outcome::ClientClosed, Some(format!("request body: {e}")));
                        return Err(ResetAbort::PLAIN);
                    }
                }
            }
        }
        other => *req_body = other,
    }
    if let Some(f) = &facts {
        ex.rec().model = f.model.clone();
        ex.rec().stream = f.stream;
        ex.rec().input_tokens = f.prompt_tokens;
        if f.prompt_tokens.is_some() {
            ex.rec().tokens_source = Some("estimated");
        }
    }
    Ok(facts)
}

/// The request's fingerprint for telling calls apart (`schedule: {per: call}`):
/// method, path and query, the body as far as it was read for matching, and the
/// client, by the drill's `x-brownout-client` (simulated users sharing one real
/// key), else its API key or authorization header, else its address.
fn call_fingerprint(
    parts: &http::request::Parts,
    body: Option<&ReqBody>,
    ip: std::net::IpAddr,
) -> u64 {
    let body = match body {
        Some(ReqBody::Prefixed {
            prefix: Some(p), ..
        }) => Some(&p[..]),
        _ => None,
    };
    let ip = ip.to_string();
    let client = crate::record::credential(&parts.headers).unwrap_or(ip.as_bytes());
    let target = parts
        .uri
        .path_and_query()
        .map_or(parts.uri.path(), |p| p.as_str());
    fingerprint(parts.method.as_str(), target, body, Some(client))
}

/// Read and discard the request body (up to `limit`) so an injected answer leaves
/// the connection reusable, as a real server's would.
async fn drain(body: Option<ReqBody>, limit: usize) -> u64 {
    let Some(mut body) = body else { return 0 };
    let mut seen = 0usize;
    let read = async {
        while let Some(frame) = body.frame().await {
            match frame {
                Ok(f) => {
                    if let Some(d) = f.data_ref() {
                        seen += d.len();
                        if seen > limit {
                            break;
                        }
                    }
                }
                Err(_) => break,
            }
        }
    };
    let _ = tokio::time::timeout(std::time::Duration::from_secs(10), read).await;
    seen as u64
}

fn local_response(
    ex: Exchange,
    status: StatusCode,
    mut headers: http::HeaderMap,
    body: Bytes,
    mark: Option<&HeaderValue>,
) -> Response<ProxyBody> {
    if let Some(m) = mark {
        headers.insert(&X_BROWNOUT_FAULT, m.clone());
    }
    let mut resp = Response::new(ProxyBody::full(body, Some(ex)));
    *resp.status_mut() = status;
    *resp.headers_mut() = headers;
    resp
}

/// Open the exchange's record now, in `call`, and return the rest as a future: hyper
/// may drop that future without polling it (a connection whose request and FIN came
/// together), and the exchange's guard then still records the request, as
/// `client_closed`.
fn handle(
    ctx: Arc<ListenerCtx>,
    conn: Arc<ConnInfo>,
    req: Request<Incoming>,
) -> impl Future<Output = Result<Response<ProxyBody>, ResetAbort>> + Send {
    let (parts, incoming) = req.into_parts();
    let endpoint = classify(ctx.api, &parts.method, parts.uri.path());
    let head = Opening {
        endpoint,
        method: parts.method.as_str(),
        path: parts.uri.path(),
        attempt: parts
            .headers
            .get(&X_STAINLESS_RETRY_COUNT)
            .and_then(|v| crate::wire::retry_count(v.as_bytes())),
        bytes_in: incoming.size_hint().exact().unwrap_or(0),
    };
    let mut ex = Exchange::open(&ctx, head, Some(conn.clone()));
    if crate::pipeline::grpc::is_grpc(&parts.headers) {
        ex.rec().grpc = Some(Box::new(crate::pipeline::grpc::call_of(parts.uri.path())));
    }
    proxy_exchange(ctx, conn, parts, incoming, endpoint, ex)
}

/// Everything after the record is open: faults, the upstream, the answer.
async fn proxy_exchange(
    ctx: Arc<ListenerCtx>,
    conn: Arc<ConnInfo>,
    mut parts: http::request::Parts,
    incoming: Incoming,
    endpoint: Endpoint,
    mut ex: Exchange,
) -> Result<Response<ProxyBody>, ResetAbort> {
    let shared = &ctx.shared;
    let http2 = parts.version == Version::HTTP_2;

    let profile = shared.profile.load_full();
    let active = profile.active(Instant::now());
    ex.rec().phase = active.phase.map(|p| p.name.clone());
    let mut req_body = Some(ReqBody::Incoming(incoming));
    // Faults a client asked for on this request (only with allow_header_faults).
    let header_rule = if shared.allow_header_faults {
        header_faults(&parts.headers)
    } else {
        None
    };
    let mut decided: Vec<Decided<'_>> = Vec::new();
    let grpc = ex.rec().grpc.is_some();
    let mut facts = RequestFacts {
        api: ctx.api,
        endpoint,
        grpc,
        ..Default::default()
    };
    let mut ip = conn.peer.ip();
    let mut body_faults = BodyFaults::default();
    let mut mark: Option<HeaderValue> = None;

    if shared.release.faults_enabled() && (!profile.is_empty() || header_rule.is_some()) {
        // A gRPC body is protobuf, and a streaming call's may never end: neither
        // is read for JSON facts.
        if profile.needs_body && !parts.method.is_safe() && !grpc {
            if let Some(f) = inspect_body(&ctx, &parts, &mut req_body, &mut ex).await? {
                facts = f;
            }
        }
        ip = client_ip(conn.peer.ip(), &parts.headers, &shared.trusted_proxies);
        let seq: Option<u64> = parts
            .headers
            .get(&X_BROWNOUT_SEQ)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse().ok());
        // Which call this attempt belongs to, for `x-brownout-seq` ordinals and
        // `schedule: {per: call}`.
        let retry = ex.rec().attempt;
        let call = CallId {
            seq,
            retry,
            fingerprint: (profile.counts_calls && seq.is_none() && retry.is_none())
                .then(|| call_fingerprint(&parts, req_body.as_ref(), ip)),
        };
        let input = MatchInput {
            listener: &ctx.name,
            method: &parts.method,
            path: parts.uri.path(),
            headers: &parts.headers,
            facts: &facts,
            client_ip: Some(ip),
        };
        for rule in active.rules {
            let rng = match rule.decide(&input, profile.seed, active.at, &call) {
                RuleDecision::NoMatch => continue,
                RuleDecision::Skip => {
                    ex.rec().matched.push(rule.name.clone());
                    continue;
                }
                RuleDecision::Busy => {
                    ex.rec().matched.push(rule.name.clone());
                    for f in &rule.faults {
                        ex.skipped(&rule.name, f.kind(), SkipReason::MaxActive.as_str());
                    }
                    continue;
                }
                RuleDecision::Fire(rng) => rng,
            };
            ex.rec().matched.push(rule.name.clone());
            ex.hold_rule(rule.state.clone());
            ex.rec().rules.push(rule.name.clone());
            decided.push(Decided { rule, rng });
        }
        if let Some(rule) = header_rule.as_ref() {
            let ordinal = call.ordinal().unwrap_or_else(|| ex.rec().id);
            if let Some(rng) = decide(profile.seed, rule.id, ordinal, 1.0) {
                ex.rec().rules.push(rule.name.clone());
                decided.push(Decided { rule, rng });
            }
        }
        // An error that names the request's model ("Rate limit reached for
        // gpt-4.1-mini ...") needs the body even when no rule matches on it: read it
        // now, for the rules that fired (their decisions did not depend on it).
        if !profile.needs_body
            && !grpc
            && !parts.method.is_safe()
            && endpoint.is_generative()
            && decided.iter().any(|d| d.rule.names_model())
        {
            if let Some(f) = inspect_body(&ctx, &parts, &mut req_body, &mut ex).await? {
                facts = f;
            }
        }
    }
    // The record names the call and its client by keyed hashes (docs/records.md).
    // Only a body read for matching counts: one read for an error's model text is
    // read on faulted attempts alone, and the attempt that gets through must hash
    // as they did for a report to count it as their retry.
    let read = match req_body.as_ref() {
        Some(ReqBody::Prefixed {
            prefix: Some(p), ..
        }) if profile.needs_body => Some(&p[..]),
        _ => None,
    };
    let target = parts
        .uri
        .path_and_query()
        .map_or(parts.uri.path(), |p| p.as_str());
    let who = crate::record::credential(&parts.headers);
    let method = parts.method.as_str();
    shared
        .recorder
        .identify(ex.rec(), method, target, read, who, ip);

    if !decided.is_empty() {
        let grpc_deadline = if grpc {
            parts
                .headers
                .get("grpc-timeout")
                .and_then(|v| v.to_str().ok())
                .and_then(|v| brownout_faults::grpc::status::parse_timeout(v).ok())
                .map(|t| ex.start() + t)
        } else {
            None
        };
        let view = RequestView {
            api: ctx.api,
            facts: &facts,
            headers: &parts.headers,
            client_ip: ip,
            grpc: grpc.then(|| crate::pipeline::inject::GrpcView {
                path: parts.uri.path(),
                deadline: grpc_deadline,
            }),
        };
        // While the faults hold the request, a FIN is the client giving up, not a
        // half-close (`half_close: answer`; see `net::HoldWatch`).
        let held = conn.holding();
        let step = request_side(shared, &view, &mut ex, &mut decided, &mut body_faults).await;
        drop(held);
        mark = mark_value(&decided, shared.mark_injected, &mut ex);
        match step {
            Step::Forward => {}
            Step::Respond {
                status,
                headers,
                body,
            } => {
                let drained = drain(req_body.take(), shared.inspect_limit).await;
                let r = ex.rec();
                r.bytes_in = r.bytes_in.max(drained);
                ex.local_answer(status.as_u16(), Outcome::InjectedError);
                return Ok(local_response(ex, status, headers, body, mark.as_ref()));
            }
            Step::Grpc(a) => {
                drop(req_body.take());
                ex.grpc_status(a.code);
                if let Some(m) = a.in_message {
                    ex.grpc_in_message(m);
                }
                ex.local_answer(200, Outcome::InjectedError);
                let mut headers = a.headers;
                if let Some(m) = mark.as_ref() {
                    headers.insert(&X_BROWNOUT_FAULT, m.clone());
                }
                let body = ProxyBody::full(a.body, Some(ex)).with_trailers(a.trailers);
                let mut resp = Response::new(body);
                *resp.headers_mut() = headers;
                return Ok(resp);
            }
            Step::Reset(how) => {
                ex.finish(Outcome::Reset, None);
                if !http2 {
                    conn.request_reset();
                    return Err(ResetAbort::PLAIN);
                }
                use brownout_faults::profile::ResetScope;
                let whole = match how.scope {
                    Some(ResetScope::Connection) => {
                        conn.drop_connection();
                        true
                    }
                    Some(ResetScope::Goaway) => {
                        conn.go_away();
                        true
                    }
                    Some(ResetScope::Stream) | None => false,
                };
                if whole {
                    // The stream dies with its connection (GOAWAY first, for
                    // `goaway`): a reset of its own would reach the client first
                    // and read as CANCELLED, not the UNAVAILABLE of a lost server.
                    tokio::time::sleep(crate::server::GOAWAY_CLOSE * 3).await;
                }
                return Err(ResetAbort::with_reason(how.reason()));
            }
        }
    }

    if grpc && !decided.is_empty() {
        // What a fault held counts against the call's deadline: the upstream gets
        // only the time the client has left, and none left is the client's
        // DEADLINE_EXCEEDED, answered here as a server past the deadline would.
        let left = parts
            .headers
            .get("grpc-timeout")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| brownout_faults::grpc::status::parse_timeout(v).ok())
            .map(|t| t.saturating_sub(ex.start().elapsed()));
        match left {
            Some(l) if l.is_zero() => {
                ex.grpc_status(crate::pipeline::grpc::code::DEADLINE_EXCEEDED);
                ex.local_answer(200, Outcome::InjectedError);
                let h = crate::pipeline::grpc::trailers_only(
                    crate::pipeline::grpc::code::DEADLINE_EXCEEDED,
                    "Deadline Exceeded",
                );
                return Ok(local_response(
                    ex,
                    StatusCode::OK,
                    h,
                    Bytes::new(),
                    mark.as_ref(),
                ));
            }
            Some(l) => {
                if let Ok(v) =
                    HeaderValue::from_str(&brownout_faults::grpc::status::format_timeout(l))
                {
                    parts.headers.insert("grpc-timeout", v);
                }
            }
            None => {}
        }
    }

    // Forward upstream: over this connection's own HTTP/2 upstream connection
    // for gRPC (and for everything under `upstream_protocol: h2c | h2`), else
    // through the listener's HTTP/1.1 pool.
    let h2 = match (ctx.protocol, ctx.h2.as_ref()) {
        (UpstreamProtocol::H2c | UpstreamProtocol::H2, Some(d)) => Some(d),
        (UpstreamProtocol::Auto, Some(d)) if grpc => Some(d),
        _ => None,
    };
    if grpc && h2.is_none() {
        let e = ProxyError::unreachable(
            &ctx.upstream.display,
            "gRPC needs HTTP/2 upstream, and this listener's upstream_protocol is http1",
        );
        return Ok(gateway_error(ex, e));
    }
    let uri = match h2 {
        Some(_) => ctx.upstream.uri_for(&parts.uri, true),
        None => ctx.client.uri_for(&ctx.upstream, &parts.uri),
    };
    parts.uri = match uri {
        Ok(u) => u,
        Err(e) => return Ok(gateway_error(ex, ProxyError::BadRequest(e.to_string()))),
    };
    // A WebSocket upgrade keeps its upgrade headers and becomes a tunnel (tunnel.rs).
    let upgrade = match h2 {
        Some(_) => None,
        None => crate::server::tunnel::take(&mut parts),
    };
    strip_hop_by_hop(&mut parts.headers);
    if let Some(up) = &upgrade {
        up.restore(&mut parts.headers);
    }
    if h2.is_some() {
        // HTTP/2 names the upstream in `:authority`, taken from the URI.
        parts.version = Version::HTTP_2;
        parts.headers.remove(http::header::HOST);
    } else {
        parts.version = Version::HTTP_11;
        parts
            .headers
            .insert(http::header::HOST, ctx.upstream.host.clone());
    }
    parts.headers.remove(&X_BROWNOUT_SEQ);
    if !body_faults.plan.is_empty() {
        // A body that must be rewritten is asked for without compression.
        parts.headers.insert(
            http::header::ACCEPT_ENCODING,
            HeaderValue::from_static("identity"),
        );
    }
    if shared.allow_header_faults {
        parts.headers.remove(&X_BROWNOUT_FAULT);
    }
    let body = req_body.take().unwrap_or(ReqBody::Empty);
    let (body, seen) = body.counted();
    ex.bytes_in = seen.clone();
    let up_req = Request::from_parts(parts, body);
    ex.upstream_called();
    let deadline = tokio::time::Instant::now() + shared.upstream_timeout;
    let attempt = if let Some(dialer) = h2 {
        let send = conn.h2.send(dialer, up_req, shared.inspect_limit);
        tokio::time::timeout_at(deadline, send).await
    } else if upgrade.is_some() {
        // On a connection of its own: a tunnel never goes back to a pool.
        let send = async { ctx.client.upgrade(up_req).await.map(|r| (r, false)) };
        tokio::time::timeout_at(deadline, send).await
    } else {
        tokio::time::timeout_at(deadline, ctx.client.request(up_req, shared.inspect_limit)).await
    };
    let resp = match attempt {
        Err(_) => {
            let e = ProxyError::timeout(&ctx.upstream.display, shared.upstream_timeout);
            return Ok(gateway_error(ex, e));
        }
        Ok(Err(e)) => {
            let client_failed = seen
                .as_ref()
                .is_some_and(|n| n.load(Ordering::Relaxed) & CLIENT_BODY_FAILED != 0);
            if client_failed {
                // The client broke its own upload (hung up, reset the stream): not
                // the upstream's failure, and nobody is left to answer.
                ex.finish(
                    Outcome::ClientClosed,
                    Some(format!("request body: {}", crate::error::chain(&e))),
                );
                return Err(ResetAbort::PLAIN);
            }
            let e = ProxyError::unreachable(&ctx.upstream.display, e);
            return Ok(gateway_error(ex, e));
        }
        Ok(Ok((r, resent))) => {
            if resent {
                ex.upstream_retried();
            }
            r
        }
    };
    let (mut rparts, rbody) = resp.into_parts();
    // A proxy answers in its own HTTP version (RFC 9110 6.2): an HTTP/1.0 upstream's
    // answer goes out as HTTP/1.1 to the HTTP/1.1 client, as on the fast path.
    if rparts.version == Version::HTTP_10 || (rparts.version == Version::HTTP_2 && !http2) {
        rparts.version = Version::HTTP_11;
    }
    ex.upstream_headers(rparts.status.as_u16());
    if grpc {
        // A trailers-only answer carries the call's status in its headers.
        if let Some(code) = crate::pipeline::grpc::status_of(&rparts.headers) {
            ex.grpc_status(code);
        }
    }
    if let Some(up) = upgrade {
        if rparts.status == StatusCode::SWITCHING_PROTOCOLS {
            return Ok(crate::server::tunnel::switch(
                shared,
                &conn,
                up,
                ex,
                rparts,
                body_faults,
                mark,
            ));
        }
        // Any other answer to an upgrade request is an ordinary answer.
    }
    if let Some(v) = rparts.headers.get("keep-alive") {
        ctx.client.announced_keep_alive(v.as_bytes());
    }
    strip_hop_by_hop(&mut rparts.headers);
    if let Some(m) = mark {
        rparts.headers.insert(&X_BROWNOUT_FAULT, m);
    }
    let llm = LlmCtx {
        api: ctx.api,
        endpoint,
        model: facts.model.clone(),
        path: ex.rec().path.clone(),
    };
    Ok(respond(shared, &conn, http2, llm, ex, rparts, rbody, body_faults).await)
}

/// What the response side needs to know about the request.
struct LlmCtx {
    api: ApiKind,
    endpoint: Endpoint,
    model: Option<String>,
    /// The request path, naming the collection for `stale_results`.
    path: String,
}

/// Build the client's response from the upstream's: plain pass-through, an
/// LLM stream (measured, and shaped when stream faults were decided), or a
/// rewritten JSON body (content faults on a non-streaming answer).
#[allow(clippy::too_many_arguments)]
async fn respond(
    shared: &Arc<Shared>,
    conn: &Arc<ConnInfo>,
    http2: bool,
    llm: LlmCtx,
    mut ex: Exchange,
    mut rparts: http::response::Parts,
    rbody: UpBody,
    mut body_faults: BodyFaults,
) -> Response<ProxyBody> {
    let ctype = rparts
        .headers
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok());
    let framing = framing_for(llm.api, llm.endpoint, ctype);
    let coding = rparts
        .headers
        .get(http::header::CONTENT_ENCODING)
        .and_then(|v| v.to_str().ok());
    let encoded = coding.is_some_and(|v| !v.eq_ignore_ascii_case("identity"));
    let decoder = coding.and_then(TapDecoder::for_encoding);
    let plan = std::mem::take(&mut body_faults.plan).with_model(llm.model);
    let rules = std::mem::take(&mut body_faults.plan_rules);
    let rng = body_faults.plan_rng.take().map(|r| *r);
    let gpu = body_faults.gpu.take();
    let vector_endpoint = matches!(
        llm.endpoint,
        Endpoint::Search | Endpoint::Query | Endpoint::Embeddings
    );
    // Vector faults on an upsert, a listing or a chat have nothing to act on: say so
    // once, and leave the rest of the plan to the paths below.
    let plan = if plan.has_vector_faults() && !vector_endpoint {
        let mut kept = StreamPlan::new().with_model(plan.model().map(str::to_string));
        for (i, f) in plan.faults() {
            if !f.is_vector_fault() {
                kept.push_body(i, f);
            } else if let Some(r) = rules.get(i) {
                ex.skipped(r, f.kind(), SkipReason::WrongEndpoint.as_str());
            }
        }
        kept
    } else {
        plan
    };
    let idle = shared.upstream_idle_timeout;
    if ex.rec().grpc.is_some() {
        if let Some(seq) = gpu {
            // The simulated GPU paces tokens of LLM streams, not gRPC messages.
            seq.release();
            seq.finish();
        }
        let call = GrpcResponse {
            conn,
            http2,
            idle,
            inspect_limit: shared.inspect_limit,
            path: &llm.path,
            api: llm.api,
            endpoint: llm.endpoint,
        };
        return call
            .respond(ex, rparts, rbody, body_faults, plan, rules, rng)
            .await;
    }
    let skip_all =
        |ex: &mut Exchange, plan: &StreamPlan, reason: &'static str, only_stream: bool| {
            for (i, f) in plan.faults() {
                if (!only_stream || f.is_stream_fault()) && i < rules.len() {
                    ex.skipped(&rules[i], f.kind(), reason);
                }
            }
        };
    let passthrough =
        |ex: Exchange, rparts: http::response::Parts, rbody: UpBody, bf: BodyFaults| {
            Response::from_parts(
                rparts,
                ProxyBody::upstream(rbody, ex, bf, conn, http2, idle),
            )
        };
    if plan.is_empty() && gpu.is_none() {
        // Measurement only: the bytes pass untouched; compressed ones are decoded on the side.
        let body = ProxyBody::upstream(rbody, ex, body_faults, conn, http2, idle);
        let start = body.start().unwrap_or_else(Instant::now);
        let body = match passive_tap(llm.api, llm.endpoint, ctype, coding, start) {
            Some(Tap::Llm(stream)) => body.with_llm(*stream),
            Some(Tap::Json(tap)) => body.with_json_tap(*tap),
            None => body,
        };
        return Response::from_parts(rparts, body);
    }
    let has_vector = plan.has_vector_faults();
    // Vector databases (Qdrant) compress whatever the client asks for: a whole JSON
    // answer is decoded to rewrite it and sent on as identity.
    let decode_whole =
        encoded && decoder.is_some() && has_vector && vector_endpoint && framing.is_none();
    if encoded && !decode_whole {
        // Asked for identity and still compressed: nothing can be re-framed or rewritten.
        skip_all(&mut ex, &plan, SkipReason::Compressed.as_str(), false);
        return passthrough(ex, rparts, rbody, body_faults);
    }
    if let Some(fr) = framing {
        // Re-framed event by event: the length is no longer known in advance.
        rparts.headers.remove(http::header::CONTENT_LENGTH);
        let shaper = (!plan.is_empty()).then(|| {
            Shaper::new(
                llm.api,
                llm.endpoint,
                fr,
                plan,
                rng.unwrap_or_else(|| rng_for(0, 0, 0)),
            )
        });
        let start = ex.start();
        let stream = LlmStream::new(llm.api, llm.endpoint, fr, start, shaper, rules).with_gpu(gpu);
        let body = ProxyBody::upstream(rbody, ex, body_faults, conn, http2, idle).with_llm(stream);
        return Response::from_parts(rparts, body);
    }
    // A non-streaming answer: stream faults cannot apply; content faults rewrite the
    // JSON, and a simulated GPU holds it until the model would have finished it.
    skip_all(&mut ex, &plan, SkipReason::NotAStream.as_str(), true);
    let has_content = plan.faults().any(|(_, f)| f.is_content_fault());
    if !has_content && !has_vector && gpu.is_none() {
        return passthrough(ex, rparts, rbody, body_faults);
    }
    let declared = rparts
        .headers
        .get(http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > shared.inspect_limit as u64) {
        skip_all(&mut ex, &plan, SkipReason::OverInspectLimit.as_str(), false);
        return passthrough(ex, rparts, rbody, body_faults);
    }
    let (head, rest) = match read_prefix(rbody, shared.inspect_limit).await {
        Ok(x) => x,
        Err(e) => {
            let e = ProxyError::unreachable("upstream body", e);
            return gateway_error(ex, e);
        }
    };
    if let Some(rest) = rest {
        skip_all(&mut ex, &plan, SkipReason::OverInspectLimit.as_str(), false);
        let body = ProxyBody::upstream(rest, ex, body_faults, conn, http2, idle).with_head(head);
        return Response::from_parts(rparts, body);
    }
    // The upstream leg is over: its body has been read whole.
    ex.upstream_body_done();
    let head = if decode_whole {
        match decoder.map(|d| d.decode_whole(&head, shared.inspect_limit)) {
            Some(Ok(plain)) => {
                // Sent on decoded: the client gets identity whatever it asked for.
                rparts.headers.remove(http::header::CONTENT_ENCODING);
                plain
            }
            _ => {
                skip_all(&mut ex, &plan, SkipReason::Compressed.as_str(), false);
                rparts
                    .headers
                    .insert(http::header::CONTENT_LENGTH, HeaderValue::from(head.len()));
                return Response::from_parts(rparts, ProxyBody::full(head, Some(ex)));
            }
        }
    } else {
        head
    };
    let (input, output) = brownout_faults::api::usage_from_json(&head);
    if output.is_some() {
        ex.rec().output_tokens = output;
        ex.rec().input_tokens = input.or(ex.rec().input_tokens);
        ex.rec().tokens_source = Some("usage");
    }
    if let Some(seq) = gpu {
        // Hold the answer until the model has produced as many tokens as it has.
        let n = output.unwrap_or_else(|| (head.len() as u64 / 4).max(1));
        seq.set_output_len(n);
        if shared
            .release
            .or_released(seq.until_produced(n))
            .await
            .is_none()
        {
            seq.release();
        }
        seq.finish();
    }
    // One decision stream for every body rewrite of this exchange, in plan order.
    let mut rng = rng.unwrap_or_else(|| rng_for(0, 0, 0));
    let out = if has_content {
        match rewrite_json(llm.api, llm.endpoint, &head, &plan, &mut rng) {
            Ok(rw) => {
                for (i, kind) in &rw.applied {
                    if let Some(r) = rules.get(*i) {
                        ex.applied(r, kind);
                    }
                }
                for (i, kind, why) in &rw.skipped {
                    if let Some(r) = rules.get(*i) {
                        ex.skipped(r, kind, why.as_str());
                    }
                }
                rw.body
            }
            Err(why) => {
                for (i, f) in plan.faults() {
                    if f.is_content_fault() && i < rules.len() {
                        ex.skipped(&rules[i], f.kind(), why.as_str());
                    }
                }
                head
            }
        }
    } else {
        head
    };
    let out = if has_vector {
        let ok = rparts.status.is_success();
        let plain_json = ctype_is_json(&rparts.headers);
        let stale = &body_faults.plan_stale;
        let lookup = |i: usize| stale.get(i).cloned();
        let result = if !ok {
            Err(SkipReason::ErrorStatus.as_str())
        } else if !plain_json {
            Err(brownout_faults::vector::Skip::NotJson.as_str())
        } else {
            brownout_faults::vector::rewrite(
                llm.api,
                llm.endpoint,
                &out,
                &plan,
                &mut rng,
                &lookup,
                collection_key(&llm.path),
            )
            .map_err(|why| why.as_str())
        };
        match result {
            Ok(rw) => {
                for (i, kind) in &rw.applied {
                    if let Some(r) = rules.get(*i) {
                        ex.applied(r, kind);
                    }
                }
                for (i, kind, why) in &rw.skipped {
                    if let Some(r) = rules.get(*i) {
                        ex.skipped(r, kind, why.as_str());
                    }
                }
                if let Some((returned, dropped)) = rw.results {
                    ex.rec().results =
                        Some(serde_json::json!({"returned": returned, "dropped": dropped}));
                }
                if !rw.applied.is_empty() {
                    // A validator for bytes the upstream never sent would be a lie.
                    rparts.headers.remove(http::header::ETAG);
                }
                rw.body
            }
            Err(why) => {
                for (i, f) in plan.faults() {
                    if f.is_vector_fault() && i < rules.len() {
                        ex.skipped(&rules[i], f.kind(), why);
                    }
                }
                if let Some(n) = brownout_faults::vector::count_results(llm.api, llm.endpoint, &out)
                {
                    ex.rec().results = Some(serde_json::json!({"returned": n, "dropped": 0}));
                }
                out
            }
        }
    } else {
        out
    };
    rparts
        .headers
        .insert(http::header::CONTENT_LENGTH, HeaderValue::from(out.len()));
    Response::from_parts(rparts, ProxyBody::full(out, Some(ex)))
}

/// A gRPC call's answer on its way to the client.
struct GrpcResponse<'a> {
    conn: &'a Arc<ConnInfo>,
    http2: bool,
    idle: std::time::Duration,
    inspect_limit: usize,
    path: &'a str,
    api: ApiKind,
    endpoint: Endpoint,
}

impl GrpcResponse<'_> {
    /// Pass the answer through (its messages read on the side), or, with vector
    /// result faults on a Milvus search, edit the search results in the protobuf
    /// itself. Content faults never apply to protobuf; stream faults act per
    /// message.
    #[allow(clippy::too_many_arguments)]
    async fn respond(
        self,
        mut ex: Exchange,
        mut rparts: http::response::Parts,
        rbody: UpBody,
        body_faults: BodyFaults,
        plan: StreamPlan,
        rules: Vec<Arc<str>>,
        rng: Option<rand_chacha::ChaCha8Rng>,
    ) -> Response<ProxyBody> {
        let compressed = rparts
            .headers
            .get("grpc-encoding")
            .is_some_and(|v| !v.as_bytes().eq_ignore_ascii_case(b"identity"));
        let rule = |i: usize| rules.get(i);
        let mut vector = Vec::new();
        // Stream faults act on the messages of a streamed answer, as on SSE events.
        let mut stream = StreamPlan::new();
        for (i, f) in plan.faults() {
            let Some(r) = rule(i) else { continue };
            if f.is_content_fault() {
                ex.skipped(r, f.kind(), SkipReason::GrpcProtobuf.as_str());
            } else if f.is_stream_fault() {
                if compressed {
                    ex.skipped(r, f.kind(), SkipReason::Compressed.as_str());
                } else {
                    stream.push_body(i, f);
                }
            } else if f.is_vector_fault() {
                vector.push((i, f));
            }
        }
        if !stream.is_empty() {
            for (i, f) in &vector {
                if let Some(r) = rule(*i) {
                    ex.skipped(r, f.kind(), SkipReason::WithStreamFaults.as_str());
                }
            }
            rparts.headers.remove(http::header::CONTENT_LENGTH);
            let framing = brownout_faults::stream::Framing::Grpc;
            let shaper = Shaper::new(
                self.api,
                self.endpoint,
                framing,
                stream,
                rng.unwrap_or_else(|| rng_for(0, 0, 0)),
            );
            let llm = LlmStream::new(
                self.api,
                self.endpoint,
                framing,
                ex.start(),
                Some(shaper),
                rules,
            );
            let body =
                ProxyBody::upstream(rbody, ex, body_faults, self.conn, self.http2, self.idle)
                    .with_llm(llm);
            return Response::from_parts(rparts, body);
        }
        let search = self.endpoint == Endpoint::Search
            && brownout_faults::grpc::milvus::method_name(self.path) == Some("Search");
        if !vector.is_empty() && (compressed || !search) {
            let why = if compressed {
                SkipReason::Compressed.as_str()
            } else {
                SkipReason::NotSupportedOnGrpc.as_str()
            };
            for (i, f) in &vector {
                if let Some(r) = rule(*i) {
                    ex.skipped(r, f.kind(), why);
                }
            }
            vector.clear();
        }
        let tap = crate::pipeline::grpc::GrpcTap::new(self.path);
        if vector.is_empty() || !rparts.status.is_success() {
            let body =
                ProxyBody::upstream(rbody, ex, body_faults, self.conn, self.http2, self.idle)
                    .with_grpc_tap(tap);
            return Response::from_parts(rparts, body);
        }
        // A unary search answer: its message and trailers, read whole (at most
        // `inspect_limit`), then edited.
        let mut rbody = rbody;
        let mut data = BytesMut::new();
        let mut trailers = None;
        loop {
            match rbody.frame().await {
                None => break,
                Some(Err(e)) => {
                    let e = ProxyError::unreachable("upstream body", e);
                    return gateway_error(ex, e);
                }
                Some(Ok(frame)) => match frame.into_data() {
                    Ok(d) => {
                        data.extend_from_slice(&d);
                        if data.len() > self.inspect_limit {
                            for (i, f) in &vector {
                                if let Some(r) = rule(*i) {
                                    ex.skipped(r, f.kind(), SkipReason::OverInspectLimit.as_str());
                                }
                            }
                            let body = ProxyBody::upstream(
                                rbody,
                                ex,
                                body_faults,
                                self.conn,
                                self.http2,
                                self.idle,
                            )
                            .with_head(data.freeze())
                            .with_grpc_tap(tap);
                            return Response::from_parts(rparts, body);
                        }
                    }
                    Err(frame) => {
                        if let Ok(t) = frame.into_trailers() {
                            trailers = Some(t);
                        }
                    }
                },
            }
        }
        ex.upstream_body_done();
        let data = data.freeze();
        let mut rng = rng.unwrap_or_else(|| rng_for(0, 0, 0));
        let edited = match brownout_faults::grpc::frame::split_all(&data, self.inspect_limit) {
            Ok(messages) if messages.len() == 1 => {
                let m = &messages[0];
                match brownout_faults::grpc::milvus::edit_search_frame(
                    m,
                    vector.iter().copied(),
                    &mut rng,
                ) {
                    Ok(edit) => {
                        for (i, kind) in &edit.applied {
                            if let Some(r) = rule(*i) {
                                ex.applied(r, kind);
                            }
                        }
                        for (i, kind, why) in &edit.skipped {
                            if let Some(r) = rule(*i) {
                                ex.skipped(r, kind, why.as_str());
                            }
                        }
                        ex.rec().results = Some(
                            serde_json::json!({"returned": edit.returned, "dropped": edit.dropped}),
                        );
                        edit.frame()
                    }
                    Err(why) => {
                        for (i, f) in &vector {
                            if let Some(r) = rule(*i) {
                                ex.skipped(r, f.kind(), why.as_str());
                            }
                        }
                        None
                    }
                }
            }
            _ => {
                for (i, f) in &vector {
                    if let Some(r) = rule(*i) {
                        ex.skipped(r, f.kind(), SkipReason::NotOneMessage.as_str());
                    }
                }
                None
            }
        };
        let out = edited.unwrap_or(data);
        rparts.headers.remove(http::header::CONTENT_LENGTH);
        let mut tap = tap;
        tap.tap(&out);
        let body = ProxyBody::full(out, Some(ex))
            .with_trailers(trailers)
            .with_grpc_tap(tap);
        Response::from_parts(rparts, body)
    }
}

/// Whether the answer says it is JSON (or says nothing: some servers omit it).
fn ctype_is_json(headers: &http::HeaderMap) -> bool {
    match headers
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
    {
        None => true,
        Some(c) => c.starts_with("application/json") || c.contains("+json"),
    }
}

/// Which collection a search went to, for `stale_results`: the path without its
/// query string names it for Qdrant, Chroma and Weaviate's classes live in the
/// body (one key per endpoint then), as do Milvus's and Pinecone's.
fn collection_key(path: &str) -> &str {
    path.split(['?', '#']).next().unwrap_or(path)
}

/// `x-brownout-fault`: the faults decided for this exchange, as `rule/fault`. A limit
/// (`rate_limit`, `concurrency_limit`) that let the request through untouched did
/// not harm it and is not named.
fn mark_value(
    decided: &[Decided<'_>],
    default_mark: bool,
    ex: &mut Exchange,
) -> Option<HeaderValue> {
    let mut names: Vec<String> = Vec::new();
    for d in decided {
        if !d.rule.mark.unwrap_or(default_mark) {
            continue;
        }
        for f in &d.rule.faults {
            let kind = f.kind();
            let is_limit = matches!(kind, "rate_limit" | "concurrency_limit");
            if is_limit
                && !ex
                    .rec()
                    .faults
                    .iter()
                    .any(|a| a.fault == kind && a.rule == d.rule.name)
            {
                continue;
            }
            names.push(format!("{}/{}", d.rule.name, kind));
        }
    }
    if names.is_empty() {
        return None;
    }
    HeaderValue::from_str(&names.join(", ")).ok()
}

/// The ad-hoc rule for an `x-brownout-fault` request header.
fn header_faults(headers: &http::HeaderMap) -> Option<CompiledRule> {
    let v = headers.get(&X_BROWNOUT_FAULT)?.to_str().ok()?;
    let (faults, bad) = parse_header_faults(v);
    if !bad.is_empty() {
        tracing::warn!(items = ?bad, "ignoring x-brownout-fault items that are not understood");
    }
    (!faults.is_empty()).then(|| CompiledRule::adhoc("header", faults))
}

fn gateway_error(mut ex: Exchange, e: ProxyError) -> Response<ProxyBody> {
    ex.gateway_failed(&e);
    if ex.rec().grpc.is_some() {
        // A gRPC client reads `grpc-status`: brownout's own failure is UNAVAILABLE
        // (as a gateway's 502/503/504 maps to it), with the reason as the message.
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
