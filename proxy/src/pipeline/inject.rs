//! The one place where a decision becomes behaviour (request side).
//!
//! [`RequestFaults`] is the layer of the full path's stack that carries out the
//! request-side decisions: the only layer that may answer a call without the
//! upstream (an injected error, a reset, a rejection of a limit, a gRPC deadline
//! the faults used up). [`request_side`] walks the decided rules in file order and, within each rule, its
//! faults in the order listed. Holding faults (delay, hang, queues) wait on the
//! shared release signal; the first terminal fault (error, reset, hang with a
//! duration, an overflowing limit) ends the exchange and the faults after it are
//! not applied. Body faults (bandwidth, reset after N bytes) are collected for the
//! response wrapper.

use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use brownout_faults::fault::{self, FaultState, SkipReason};
use brownout_faults::gpu::Admit;
use brownout_faults::limit::{Admission, Rejected};
use brownout_faults::matcher::CompiledRule;
use brownout_faults::presets;
use brownout_faults::profile::{ErrorBody, FaultSpec, GrpcStatusSpec, ResetCode, ResetScope};
use brownout_faults::ratelimit::{self, Decision, Limited};
use brownout_faults::release::Held;
use brownout_faults::{ApiKind, RequestFacts};
use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue, Response, StatusCode};
use rand::Rng;
use rand_chacha::ChaCha8Rng;

use crate::body::{BodyFaults, ProxyBody};
use crate::control::state::Shared;
use crate::exchange::Exchange;
use crate::pipeline::call::{BoxFuture, Call, Decided, ResetAbort};
use crate::pipeline::grpc::GrpcAnswer;
use crate::record::Outcome;
use crate::upstream::ReqBody;
use crate::wire::FAULT_NAME as X_BROWNOUT_FAULT;

/// [`tower::Layer`] of [`RequestFaults`].
#[derive(Debug, Clone, Copy, Default)]
pub struct RequestFaultsLayer;

impl<S> tower::Layer<S> for RequestFaultsLayer {
    type Service = RequestFaults<S>;

    fn layer(&self, inner: S) -> RequestFaults<S> {
        RequestFaults { inner }
    }
}

/// Carries out a call's request-side faults, then (unless they answered) hands
/// it to `inner`.
#[derive(Debug, Clone)]
pub struct RequestFaults<S> {
    inner: S,
}

impl<S> tower::Service<Call> for RequestFaults<S>
where
    S: tower::Service<Call, Response = Response<ProxyBody>, Error = ResetAbort>
        + Clone
        + Send
        + 'static,
    S::Future: Send,
{
    type Response = Response<ProxyBody>;
    type Error = ResetAbort;
    type Future = futures_util::future::Either<S::Future, BoxFuture<Response<ProxyBody>>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), ResetAbort>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, call: Call) -> Self::Future {
        use futures_util::future::Either;
        let mut inner = crate::pipeline::call::take_ready(&mut self.inner);
        if call.state.decided.is_empty() {
            // Nothing fired: no future of this layer's own.
            return Either::Left(inner.call(call));
        }
        Either::Right(Box::pin(async move {
            match inject(call).await? {
                Ok(call) => inner.call(call).await,
                Err(answer) => Ok(answer),
            }
        }))
    }
}

/// The request-side faults of a call with decided rules: the call to forward, or
/// the answer they made instead.
async fn inject(mut call: Call) -> Result<Result<Call, Response<ProxyBody>>, ResetAbort> {
    let on = call.state.on.clone();
    let shared = &on.shared;
    let st = &mut call.state;
    let parts = &call.head;
    let grpc_timeout = st
        .grpc
        .then(|| {
            parts
                .headers
                .get("grpc-timeout")
                .and_then(|v| v.to_str().ok())
                .and_then(|v| brownout_faults::grpc::status::parse_timeout(v).ok())
        })
        .flatten();
    let view = RequestView {
        api: on.api,
        facts: &st.facts,
        headers: &parts.headers,
        client_ip: st.ip,
        grpc: st.grpc.then(|| GrpcView {
            path: parts.uri.path(),
            deadline: grpc_timeout.map(|t| st.ex.start() + t),
        }),
    };
    // While the faults hold the request, a FIN is the client giving up, not a
    // half-close (`half_close: answer`; see `conn::HoldWatch`).
    let held = st.conn.holding();
    let step = request_side(
        shared,
        &view,
        &mut st.ex,
        &mut st.decided,
        &mut st.body_faults,
    )
    .await;
    drop(held);
    st.mark = mark_value(&st.decided, shared.mark_injected, &mut st.ex);
    match step {
        Step::Forward => {}
        Step::Respond {
            status,
            headers,
            body,
        } => {
            let drained = drain(call.body.take(), shared.inspect_limit).await;
            let mut st = call.state;
            let r = st.ex.rec();
            r.bytes_in = r.bytes_in.max(drained);
            st.ex.local_answer(status.as_u16(), Outcome::InjectedError);
            return Ok(Err(st.local_response(status, headers, body)));
        }
        Step::Grpc(a) => {
            drop(call.body.take());
            let mut st = call.state;
            st.ex.grpc_status(a.code);
            if let Some(m) = a.in_message {
                st.ex.grpc_in_message(m);
            }
            st.ex.local_answer(200, Outcome::InjectedError);
            let mut headers = a.headers;
            if let Some(m) = st.mark.as_ref() {
                headers.insert(&X_BROWNOUT_FAULT, m.clone());
            }
            let body = ProxyBody::full(a.body, Some(st.ex)).with_trailers(a.trailers);
            let mut resp = Response::new(body);
            *resp.headers_mut() = headers;
            return Ok(Err(resp));
        }
        Step::Reset(how) => {
            st.ex.finish(Outcome::Reset, None);
            if !st.http2 {
                st.conn.request_reset();
                return Err(ResetAbort::PLAIN);
            }
            let whole = match how.scope {
                Some(ResetScope::Connection) => {
                    st.conn.drop_connection();
                    true
                }
                Some(ResetScope::Goaway) => {
                    st.conn.go_away();
                    true
                }
                Some(ResetScope::Stream) | None => false,
            };
            if whole {
                // The stream dies with its connection (GOAWAY first, for
                // `goaway`): a reset of its own would reach the client first
                // and read as CANCELLED, not the UNAVAILABLE of a lost server.
                tokio::time::sleep(crate::conn::GOAWAY_CLOSE * 3).await;
            }
            return Err(ResetAbort::with_reason(how.reason()));
        }
    }
    if let Some(t) = grpc_timeout {
        // What a fault held counts against the call's deadline: the upstream gets
        // only the time the client has left, and none left is the client's
        // DEADLINE_EXCEEDED, answered here as a server past the deadline would.
        let left = t.saturating_sub(st.ex.start().elapsed());
        if left.is_zero() {
            let mut st = call.state;
            st.ex
                .grpc_status(crate::pipeline::grpc::code::DEADLINE_EXCEEDED);
            st.ex.local_answer(200, Outcome::InjectedError);
            let h = crate::pipeline::grpc::trailers_only(
                crate::pipeline::grpc::code::DEADLINE_EXCEEDED,
                "Deadline Exceeded",
            );
            return Ok(Err(st.local_response(StatusCode::OK, h, Bytes::new())));
        }
        if let Ok(v) = HeaderValue::from_str(&brownout_faults::grpc::status::format_timeout(left)) {
            call.head.headers.insert("grpc-timeout", v);
        }
    }
    Ok(Ok(call))
}

/// Read and discard the request body (up to `limit`) so an injected answer leaves
/// the connection reusable, as a real server's would.
async fn drain(body: Option<ReqBody>, limit: usize) -> u64 {
    use http_body_util::BodyExt;
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

/// `x-brownout-fault`: the faults decided for this exchange, as `rule/fault`. A limit
/// (`rate_limit`, `concurrency_limit`) that let the request through untouched did
/// not harm it and is not named.
fn mark_value(decided: &[Decided], default_mark: bool, ex: &mut Exchange) -> Option<HeaderValue> {
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

/// What to do after the request-side faults.
pub enum Step {
    /// Forward upstream (body faults may still apply).
    Forward,
    /// Answer with this (an injected error); the upstream is not called.
    Respond {
        status: StatusCode,
        headers: HeaderMap,
        body: Bytes,
    },
    /// Answer a gRPC call with this: trailers-only (`body` empty, `grpc-status` in
    /// `headers`), or a response message followed by `trailers`.
    Grpc(GrpcAnswer),
    /// Reset the connection (HTTP/1.1) or stream (HTTP/2) before any response.
    Reset(ResetHow),
}

/// How a `reset` breaks an HTTP/2 exchange (HTTP/1.1 always drops the connection).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ResetHow {
    pub scope: Option<ResetScope>,
    pub code: Option<ResetCode>,
}

impl ResetHow {
    /// The RST_STREAM code of a stream reset.
    pub fn reason(&self) -> h2::Reason {
        match self.code.unwrap_or(ResetCode::Cancel) {
            ResetCode::Cancel => h2::Reason::CANCEL,
            ResetCode::InternalError => h2::Reason::INTERNAL_ERROR,
            ResetCode::RefusedStream => h2::Reason::REFUSED_STREAM,
            ResetCode::EnhanceYourCalm => h2::Reason::ENHANCE_YOUR_CALM,
        }
    }
}

/// What request-side faults know of a gRPC call.
#[derive(Debug, Clone, Copy)]
pub struct GrpcView<'a> {
    /// `/package.Service/Method`.
    pub path: &'a str,
    /// When the call's `grpc-timeout` runs out, counted from its arrival.
    pub deadline: Option<tokio::time::Instant>,
}

/// The gRPC answer for an `error` fault on a gRPC call, or `None` when the fault
/// names a preset that exists only over HTTP (skipped: nothing honest to send).
/// Explicit `grpc_status` wins; a preset answers in its server's own gRPC form; a
/// bare `error` is INTERNAL. An explicit HTTP `status` without either is sent as
/// the HTTP answer it is (a gateway's 503 to a gRPC client), by the caller.
fn grpc_error(
    grpc: &GrpcView<'_>,
    preset: Option<&str>,
    grpc_status: Option<&GrpcStatusSpec>,
    body: Option<&ErrorBody>,
) -> Option<GrpcAnswer> {
    let text = match body {
        Some(ErrorBody::Text(t)) => Some(t.as_str()),
        _ => None,
    };
    let form = preset.map(presets::grpc_form);
    if let Some(code) = grpc_status.and_then(GrpcStatusSpec::code) {
        let preset_text = match form {
            Some(Some(presets::GrpcForm::TrailersOnly { message, .. })) => Some(message),
            _ => None,
        };
        let message = text.or(preset_text).unwrap_or("error injected by brownout");
        return Some(GrpcAnswer::status(code, message));
    }
    match form {
        Some(None) => None,
        Some(Some(presets::GrpcForm::TrailersOnly { code, message })) => {
            Some(GrpcAnswer::status(code, text.unwrap_or(message)))
        }
        Some(Some(presets::GrpcForm::InMessage)) => {
            crate::pipeline::grpc::in_message_error(grpc.path, preset.unwrap_or_default(), text)
        }
        None => Some(GrpcAnswer::status(
            crate::pipeline::grpc::code::INTERNAL,
            text.unwrap_or("error injected by brownout"),
        )),
    }
}

/// A limit's rejection (`rate_limit`, a full queue) as a gRPC call sees it: the
/// preset's gRPC form when it has one, else RESOURCE_EXHAUSTED for a 429 and
/// UNAVAILABLE for an overload, with the preset's text.
fn grpc_rejection(grpc: &GrpcView<'_>, preset: &str, status: StatusCode) -> GrpcAnswer {
    match grpc_error(grpc, Some(preset), None, None) {
        Some(a) => a,
        None => {
            let code = if status == StatusCode::TOO_MANY_REQUESTS {
                crate::pipeline::grpc::code::RESOURCE_EXHAUSTED
            } else {
                crate::pipeline::grpc::code::UNAVAILABLE
            };
            GrpcAnswer::status(code, preset)
        }
    }
}

/// An error answer built from a preset and/or explicit fields.
pub fn error_answer(
    preset: Option<&str>,
    status: Option<u16>,
    body: Option<&ErrorBody>,
    headers: &std::collections::BTreeMap<String, String>,
    retry_after: Option<Duration>,
    model: Option<&str>,
    rng: &mut ChaCha8Rng,
) -> (StatusCode, HeaderMap, Bytes) {
    let mut h = HeaderMap::new();
    let mut st = StatusCode::INTERNAL_SERVER_ERROR;
    let mut b;
    let preset = preset.and_then(brownout_faults::presets::lookup);
    if let Some(p) = preset {
        let ctx = brownout_faults::presets::RenderCtx {
            retry_after,
            request_id: rng.random(),
            model,
            now: Some(time::OffsetDateTime::now_utc()),
        };
        let r = p.render(&ctx);
        st = r.status;
        h = r.headers;
        b = r.body;
    } else {
        b = Bytes::from_static(
            br#"{"error":{"message":"error injected by brownout","type":"brownout_injected"}}"#,
        );
        h.insert(
            http::header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        if let Some(ra) = retry_after {
            let secs = ra.as_secs() + u64::from(ra.subsec_nanos() > 0);
            h.insert(http::header::RETRY_AFTER, HeaderValue::from(secs.max(1)));
            h.insert("retry-after-ms", HeaderValue::from(ra.as_millis() as u64));
        }
    }
    if let Some(s) = status.and_then(|s| StatusCode::from_u16(s).ok()) {
        st = s;
    }
    match body {
        Some(ErrorBody::Text(t)) => {
            b = Bytes::from(t.clone());
            let ct = if serde_json::from_str::<serde::de::IgnoredAny>(t).is_ok() {
                "application/json"
            } else {
                "text/plain; charset=utf-8"
            };
            h.insert(http::header::CONTENT_TYPE, HeaderValue::from_static(ct));
        }
        Some(ErrorBody::Json(v)) => {
            b = Bytes::from(v.to_string());
            h.insert(
                http::header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            );
        }
        None => {}
    }
    for (k, v) in headers {
        if let (Ok(k), Ok(v)) = (
            HeaderName::from_bytes(k.to_ascii_lowercase().as_bytes()),
            HeaderValue::from_str(v),
        ) {
            h.insert(k, v);
        }
    }
    (st, h, b)
}

/// What the simulated GPU decodes at most when the request names no `max_tokens`.
const DEFAULT_MAX_TOKENS: u64 = 256;

/// What request-side faults may look at.
pub struct RequestView<'a> {
    pub api: ApiKind,
    pub facts: &'a RequestFacts,
    pub headers: &'a HeaderMap,
    pub client_ip: std::net::IpAddr,
    /// The call, when the request is a gRPC call.
    pub grpc: Option<GrpcView<'a>>,
}

/// The bucket key of a `rate_limit` fault's `by:`.
fn bucket_key(by: Option<&str>, req: &RequestView<'_>) -> String {
    match by {
        None | Some("global") => String::new(),
        Some("client_ip") => req.client_ip.to_string(),
        Some(other) => {
            let name = other.strip_prefix("header:").unwrap_or(other);
            req.headers
                .get(name)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("")
                .to_string()
        }
    }
}

/// The 429 for a request over a `rate_limit`: the preset's status and headers, with
/// every number (remaining, reset, retry-after, the message) true to the bucket.
fn rate_limited(
    l: &Limited,
    preset: Option<&str>,
    req: &RequestView<'_>,
    rng: &mut ChaCha8Rng,
) -> (StatusCode, HeaderMap, Bytes) {
    let name = match preset {
        Some(p) => p.to_string(),
        None => match presets::default_rate_limit_for(req.api) {
            d if d.starts_with("openai.") => l.which.openai_preset().to_string(),
            d => d.to_string(),
        },
    };
    let Some(p) = presets::lookup(&name) else {
        return error_answer(
            None,
            Some(429),
            None,
            &Default::default(),
            Some(l.retry_after),
            req.facts.model.as_deref(),
            rng,
        );
    };
    let ctx = presets::RenderCtx {
        retry_after: (!l.never_fits).then_some(l.retry_after),
        request_id: rng.random(),
        model: req.facts.model.as_deref(),
        now: Some(time::OffsetDateTime::now_utc()),
    };
    let mut r = p.render(&ctx);
    match p.family() {
        "openai" => {
            ratelimit::replace_headers(
                &mut r.headers,
                &ratelimit::OPENAI_HEADER_NAMES,
                &ratelimit::openai_headers(&l.snapshot),
            );
            r.body = Bytes::from(ratelimit::openai_error_body(l, req.facts.model.as_deref()));
        }
        "anthropic" => {
            let now = time::OffsetDateTime::now_utc();
            ratelimit::replace_headers(
                &mut r.headers,
                &ratelimit::ANTHROPIC_HEADER_NAMES,
                &ratelimit::anthropic_headers(&l.snapshot, now),
            );
            let id = r
                .headers
                .get("request-id")
                .and_then(|v| v.to_str().ok())
                .unwrap_or("")
                .to_string();
            r.body = Bytes::from(ratelimit::anthropic_error_body(l, &id));
        }
        _ => {}
    }
    (r.status, r.headers, r.body)
}

/// The answer of a limit that turned a request away: the preset (default: the
/// listener api's overload error) plus `x-brownout-limit: <reason>`.
fn overload_answer(
    preset: Option<&str>,
    reason: &'static str,
    req: &RequestView<'_>,
    rng: &mut ChaCha8Rng,
) -> Step {
    let name = preset.map_or_else(
        || presets::default_overload_for(req.api).to_string(),
        str::to_string,
    );
    if let Some(g) = &req.grpc {
        let mut a = grpc_rejection(g, &name, StatusCode::SERVICE_UNAVAILABLE);
        a.headers
            .insert("x-brownout-limit", HeaderValue::from_static(reason));
        return Step::Grpc(a);
    }
    let (status, mut headers, body) = error_answer(
        Some(&name),
        None,
        None,
        &Default::default(),
        None,
        req.facts.model.as_deref(),
        rng,
    );
    headers.insert("x-brownout-limit", HeaderValue::from_static(reason));
    Step::Respond {
        status,
        headers,
        body,
    }
}

/// Apply the request-side faults of every decided rule, in order.
pub async fn request_side(
    shared: &Arc<Shared>,
    req: &RequestView<'_>,
    ex: &mut Exchange,
    decided: &mut [Decided],
    body_faults: &mut BodyFaults,
) -> Step {
    for (di, d) in decided.iter_mut().enumerate() {
        let rule: &CompiledRule = &d.rule;
        body_faults.plan_rules.push(rule.name.clone());
        body_faults.plan_stale.push(rule.state.stale.clone());
        for (i, fault) in rule.faults.iter().enumerate() {
            let kind = fault.kind();
            if !shared.release.faults_enabled() {
                ex.skipped(&rule.name, kind, SkipReason::FaultsOff.as_str());
                continue;
            }
            let state = rule.state.fault(i);
            // One arm per fault, no wildcard: a fault added to the catalog does not
            // compile until it says here what it does.
            match fault {
                FaultSpec::Delay(fault::Delay { duration }) => {
                    let wait = duration.sample(&mut d.rng);
                    ex.applied(&rule.name, kind);
                    let _ = shared.release.hold(Some(wait)).await;
                }
                FaultSpec::Error(fault::Error {
                    status,
                    body,
                    headers,
                    preset,
                    retry_after,
                    grpc_status,
                }) => {
                    if let Some(g) = &req.grpc {
                        let as_http = status.is_some() && preset.is_none() && grpc_status.is_none();
                        if !as_http {
                            match grpc_error(
                                g,
                                preset.as_deref(),
                                grpc_status.as_ref(),
                                body.as_ref(),
                            ) {
                                Some(mut a) => {
                                    ex.applied(&rule.name, kind);
                                    for (k, v) in headers {
                                        if let (Ok(k), Ok(v)) = (
                                            HeaderName::from_bytes(
                                                k.to_ascii_lowercase().as_bytes(),
                                            ),
                                            HeaderValue::from_str(v),
                                        ) {
                                            a.headers.insert(k, v);
                                        }
                                    }
                                    return Step::Grpc(a);
                                }
                                None => {
                                    ex.skipped(
                                        &rule.name,
                                        kind,
                                        SkipReason::HttpOnlyPreset.as_str(),
                                    );
                                    continue;
                                }
                            }
                        }
                    } else if preset.as_deref().is_some_and(presets::grpc_only) {
                        ex.skipped(&rule.name, kind, SkipReason::GrpcOnlyPreset.as_str());
                        continue;
                    }
                    ex.applied(&rule.name, kind);
                    let (status, headers, body) = error_answer(
                        preset.as_deref(),
                        *status,
                        body.as_ref(),
                        headers,
                        retry_after.map(|d| d.0),
                        req.facts.model.as_deref(),
                        &mut d.rng,
                    );
                    return Step::Respond {
                        status,
                        headers,
                        body,
                    };
                }
                FaultSpec::Reset(fault::Reset {
                    after_bytes: None,
                    scope,
                    code,
                }) => {
                    ex.applied(&rule.name, kind);
                    return Step::Reset(ResetHow {
                        scope: *scope,
                        code: *code,
                    });
                }
                FaultSpec::Reset(fault::Reset {
                    after_bytes: Some(n),
                    ..
                }) => {
                    body_faults.reset_after =
                        Some(body_faults.reset_after.map_or(*n, |m| m.min(*n)));
                    body_faults.reset_rule = Some(rule.name.clone());
                }
                FaultSpec::Hang(fault::Hang { duration }) => {
                    let mut wait = duration.as_ref().map(|dist| dist.sample(&mut d.rng));
                    ex.applied(&rule.name, kind);
                    if let Some(g) = &req.grpc {
                        // A gRPC call hangs until the sooner of the fault's duration
                        // and its own deadline, then fails as a server past the
                        // deadline fails it: DEADLINE_EXCEEDED (a 504 would read as
                        // UNAVAILABLE).
                        let left = g
                            .deadline
                            .map(|t| t.saturating_duration_since(tokio::time::Instant::now()));
                        wait = match (wait, left) {
                            (Some(w), Some(l)) => Some(w.min(l)),
                            (w, l) => w.or(l),
                        };
                        if shared.release.hold(wait).await == Held::Elapsed && wait.is_some() {
                            return Step::Grpc(GrpcAnswer::status(
                                crate::pipeline::grpc::code::DEADLINE_EXCEEDED,
                                "Deadline Exceeded",
                            ));
                        }
                        continue;
                    }
                    if shared.release.hold(wait).await == Held::Elapsed && wait.is_some() {
                        let body = Bytes::from_static(
                            br#"{"error":{"message":"upstream did not answer in time (hang injected by brownout)","type":"timeout"}}"#,
                        );
                        let mut h = HeaderMap::new();
                        h.insert(
                            http::header::CONTENT_TYPE,
                            HeaderValue::from_static("application/json"),
                        );
                        return Step::Respond {
                            status: StatusCode::GATEWAY_TIMEOUT,
                            headers: h,
                            body,
                        };
                    }
                }
                FaultSpec::Bandwidth(fault::Bandwidth { bytes_per_second }) => {
                    ex.applied(&rule.name, kind);
                    let bps = (*bytes_per_second).max(1);
                    body_faults.bandwidth = Some(body_faults.bandwidth.map_or(bps, |b| b.min(bps)));
                }
                FaultSpec::ConcurrencyLimit(fault::ConcurrencyLimit { preset, .. }) => {
                    let FaultState::ConcurrencyLimit(limiter) = state else {
                        ex.skipped(&rule.name, kind, SkipReason::NoLimiter.as_str());
                        continue;
                    };
                    // The fault harmed this request iff it had to wait in the queue:
                    // the acquire did not complete on its first poll.
                    let mut waited = false;
                    let mut acquire = std::pin::pin!(limiter.acquire(&shared.release));
                    let admission = std::future::poll_fn(|cx| {
                        let p = std::future::Future::poll(acquire.as_mut(), cx);
                        waited |= p.is_pending();
                        p
                    })
                    .await;
                    match admission {
                        Admission::Admitted(permit) => {
                            if waited {
                                ex.applied(&rule.name, kind);
                            }
                            ex.permits.push(permit);
                        }
                        Admission::Released => {
                            if waited {
                                ex.applied(&rule.name, kind);
                            }
                        }
                        Admission::Rejected(why) => {
                            ex.applied(&rule.name, kind);
                            let reason = match why {
                                Rejected::QueueFull => "queue_full",
                                Rejected::QueueTimeout => "queue_timeout",
                            };
                            return overload_answer(preset.as_deref(), reason, req, &mut d.rng);
                        }
                    }
                }
                FaultSpec::RateLimit(fault::RateLimit { by, preset, .. }) => {
                    let FaultState::RateLimit(limiter) = state else {
                        ex.skipped(&rule.name, kind, SkipReason::NoLimiter.as_str());
                        continue;
                    };
                    let key = bucket_key(by.as_deref(), req);
                    let tokens = ratelimit::tokens_to_charge(req.facts);
                    if let Decision::Limited(l) =
                        limiter.check(&key, tokens, tokio::time::Instant::now())
                    {
                        ex.applied(&rule.name, kind);
                        if let Some(g) = &req.grpc {
                            let name = preset.as_deref().map_or_else(
                                || presets::default_rate_limit_for(req.api).to_string(),
                                str::to_string,
                            );
                            return Step::Grpc(grpc_rejection(
                                g,
                                &name,
                                StatusCode::TOO_MANY_REQUESTS,
                            ));
                        }
                        let (status, headers, body) =
                            rate_limited(&l, preset.as_deref(), req, &mut d.rng);
                        return Step::Respond {
                            status,
                            headers,
                            body,
                        };
                    }
                }
                FaultSpec::GpuSaturation(_) => {
                    let FaultState::GpuSaturation(replica) = state else {
                        ex.skipped(&rule.name, kind, SkipReason::NoReplica.as_str());
                        continue;
                    };
                    let prompt = req.facts.prompt_tokens.unwrap_or(0);
                    let max = req.facts.max_tokens.unwrap_or(DEFAULT_MAX_TOKENS);
                    match replica.admit(prompt, max, &shared.release).await {
                        Admit::Admitted(seq) => {
                            ex.applied(&rule.name, kind);
                            ex.rec().gpu = Some(serde_json::json!({
                                "queue_ms": (seq.queue_time().as_secs_f64() * 1e6).round() / 1e3,
                                "batch": seq.batch_at_admission(),
                            }));
                            body_faults.gpu = Some(seq);
                        }
                        Admit::Released => {}
                        Admit::Overflow => {
                            ex.applied(&rule.name, kind);
                            let preset = replica.config().overflow.clone();
                            return overload_answer(
                                preset.as_deref(),
                                "gpu_queue_full",
                                req,
                                &mut d.rng,
                            );
                        }
                    }
                }
                FaultSpec::ColdStart(_) => {
                    let FaultState::ColdStart(cold) = state else {
                        ex.skipped(&rule.name, kind, SkipReason::NoState.as_str());
                        continue;
                    };
                    if cold.wait(&mut d.rng, &shared.release).await.is_some() {
                        ex.applied(&rule.name, kind);
                    }
                }
                // Stream, content and vector faults act on the response: plan them
                // for the body.
                FaultSpec::FirstTokenDelay(_)
                | FaultSpec::TokenDelay(_)
                | FaultSpec::TokenRate(_)
                | FaultSpec::Stall(_)
                | FaultSpec::Truncate(_)
                | FaultSpec::StreamError(_)
                | FaultSpec::Corrupt(_)
                | FaultSpec::Garble(_)
                | FaultSpec::EmptyCompletion(_)
                | FaultSpec::FinishReason(_)
                | FaultSpec::DropResults(_)
                | FaultSpec::ShuffleResults(_)
                | FaultSpec::LimitResults(_)
                | FaultSpec::StaleResults(_)
                | FaultSpec::ScoreNoise(_)
                | FaultSpec::EmptyResults(_)
                | FaultSpec::EmbeddingNoise(_)
                | FaultSpec::EmbeddingTruncate(_) => {
                    if body_faults.plan.push(di, fault) && body_faults.plan_rng.is_none() {
                        body_faults.plan_rng = Some(Box::new(d.rng.clone()));
                    }
                }
            }
        }
    }
    Step::Forward
}
