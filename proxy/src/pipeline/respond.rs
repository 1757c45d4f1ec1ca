//! The respond layer: the upstream's answer wrapped for the client.
//!
//! Every answer is measured (an LLM stream's tokens, a JSON answer's usage, a gRPC
//! call's status); when body, stream, content or vector faults were decided it
//! also harms the answer: re-framed event by event, rewritten whole, or edited in
//! its protobuf. Nothing here buffers a stream: only a non-streaming answer that a
//! fault must rewrite is read whole, up to `inspect_limit`.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use brownout_faults::decide::rng_for;
use brownout_faults::fault::SkipReason;
use brownout_faults::stream::{framing_for, rewrite_json, Shaper, StreamPlan};
use brownout_faults::{ApiKind, Endpoint};
use bytes::BytesMut;
use http::{HeaderValue, Response};
use http_body_util::BodyExt;
use tokio::time::Instant;

use crate::body::decode::TapDecoder;
use crate::body::llm::{passive_tap, LlmStream, Tap};
use crate::body::{BodyFaults, ProxyBody};
use crate::conn::ConnInfo;
use crate::control::state::Shared;
use crate::error::ProxyError;
use crate::exchange::Exchange;
use crate::pipeline::call::{gateway_error, Call, CallState, Reply, ResetAbort};
use crate::pipeline::decide::read_prefix;
use crate::upstream::UpBody;

/// [`tower::Layer`] of [`Respond`].
#[derive(Debug, Clone, Copy, Default)]
pub struct RespondLayer;

impl<S> tower::Layer<S> for RespondLayer {
    type Service = Respond<S>;

    fn layer(&self, inner: S) -> Respond<S> {
        Respond { inner }
    }
}

/// Calls `inner` (the upstream) and wraps what it answers.
#[derive(Debug, Clone)]
pub struct Respond<S> {
    inner: S,
}

impl<S> tower::Service<Call> for Respond<S>
where
    S: tower::Service<Call, Response = Reply, Error = ResetAbort> + Clone + Send + 'static,
    S::Future: Send + Unpin,
{
    type Response = Response<ProxyBody>;
    type Error = ResetAbort;
    type Future = Responding<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), ResetAbort>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, call: Call) -> Self::Future {
        let mut inner = crate::pipeline::call::take_ready(&mut self.inner);
        Responding::Upstream(inner.call(call))
    }
}

/// [`Respond`]'s future: the upstream's, then (only when the answer must be read
/// or harmed) the wrapping's own. A plain answer is wrapped as it arrives, with no
/// future of its own.
pub enum Responding<F> {
    Upstream(F),
    Wrapping(Pin<Box<dyn Future<Output = Response<ProxyBody>> + Send>>),
    Gone,
}

impl<F> Future for Responding<F>
where
    F: Future<Output = Result<Reply, ResetAbort>> + Unpin,
{
    type Output = Result<Response<ProxyBody>, ResetAbort>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.get_mut();
        loop {
            match this {
                Responding::Upstream(f) => {
                    let reply = match Pin::new(f).poll(cx) {
                        Poll::Pending => return Poll::Pending,
                        Poll::Ready(r) => r,
                    };
                    match reply {
                        Err(e) => {
                            *this = Responding::Gone;
                            return Poll::Ready(Err(e));
                        }
                        Ok(Reply::Done(answer)) => {
                            *this = Responding::Gone;
                            return Poll::Ready(Ok(answer));
                        }
                        Ok(Reply::Upstream { state, head, body }) => {
                            match plain(state, head, body) {
                                Ok(answer) => {
                                    *this = Responding::Gone;
                                    return Poll::Ready(Ok(answer));
                                }
                                Err((state, head, body)) => {
                                    *this = Responding::Wrapping(Box::pin(wrap(state, head, body)));
                                }
                            }
                        }
                    }
                }
                Responding::Wrapping(f) => {
                    let done = std::task::ready!(f.as_mut().poll(cx));
                    *this = Responding::Gone;
                    return Poll::Ready(Ok(done));
                }
                // Polled after it was ready: a caller's bug, answered as a reset
                // rather than a panic.
                Responding::Gone => return Poll::Ready(Err(ResetAbort::PLAIN)),
            }
        }
    }
}

/// An answer no fault reads or harms (no body plan, no simulated GPU, not gRPC):
/// measured only, the bytes pass untouched (compressed ones decoded on the side).
/// Anything else comes back, for [`wrap`].
#[allow(clippy::result_large_err)]
fn plain(
    st: CallState,
    rparts: http::response::Parts,
    rbody: UpBody,
) -> Result<Response<ProxyBody>, (CallState, http::response::Parts, UpBody)> {
    let bf = &st.body_faults;
    if !bf.plan.is_empty() || bf.gpu.is_some() || st.grpc {
        return Err((st, rparts, rbody));
    }
    let CallState {
        on,
        conn,
        ex,
        endpoint,
        http2,
        body_faults,
        ..
    } = st;
    Ok(passive(
        on.api,
        endpoint,
        ProxyBody::upstream(
            rbody,
            ex,
            body_faults,
            &conn,
            http2,
            on.shared.upstream_idle_timeout,
        ),
        rparts,
    ))
}

/// The answer measured on the side by the tap its kind calls for.
fn passive(
    api: ApiKind,
    endpoint: Endpoint,
    body: ProxyBody,
    rparts: http::response::Parts,
) -> Response<ProxyBody> {
    let header = |h| {
        rparts
            .headers
            .get(h)
            .and_then(|v: &HeaderValue| v.to_str().ok())
    };
    let ctype = header(http::header::CONTENT_TYPE);
    let coding = header(http::header::CONTENT_ENCODING);
    let start = body.start().unwrap_or_else(Instant::now);
    let body = match passive_tap(api, endpoint, ctype, coding, start) {
        Some(Tap::Llm(stream)) => body.with_llm(*stream),
        Some(Tap::Json(tap)) => body.with_json_tap(*tap),
        None => body,
    };
    Response::from_parts(rparts, body)
}

/// Wrap an upstream answer: everything [`respond`] needs from the call.
async fn wrap(st: CallState, rparts: http::response::Parts, rbody: UpBody) -> Response<ProxyBody> {
    let CallState {
        on,
        conn,
        mut ex,
        endpoint,
        http2,
        facts,
        body_faults,
        ..
    } = st;
    let llm = LlmCtx {
        api: on.api,
        endpoint,
        model: facts.model,
        path: ex.rec().path.clone(),
    };
    respond(
        &on.shared,
        &conn,
        http2,
        llm,
        ex,
        rparts,
        rbody,
        body_faults,
    )
    .await
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
        // What vector faults the plan had were skipped above: measurement only.
        let body = ProxyBody::upstream(rbody, ex, body_faults, conn, http2, idle);
        return passive(llm.api, llm.endpoint, body, rparts);
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
        let tap = crate::body::grpc::GrpcTap::new(self.path);
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
