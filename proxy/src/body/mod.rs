//! Bodies, frame by frame, in both directions.
//!
//! [`ReqBody`] forwards the client's body to the upstream unchanged (after the
//! inspected prefix, if matching read one). [`ProxyBody`] carries every response to
//! the client: the upstream's body as it arrives, or an injected/gateway answer. It
//! measures as it goes (first byte, bytes, end), applies body faults (bandwidth,
//! reset after N bytes), enforces the upstream idle timeout, and owns the
//! [`Exchange`] guard so the record is written exactly when the client is done,
//! whether the body ended, failed, or the client went away.

pub mod decode;
pub mod llm;
mod request;

pub use request::{Hold, ReqBody, CLIENT_BODY_FAILED};

use std::pin::Pin;

use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};

use crate::upstream::UpBody;
use tokio::time::{Instant, Sleep};

use crate::body::llm::{JsonTap, LlmStream, Next};
use crate::pipeline::exchange::Exchange;
use crate::record::Outcome;
use crate::server::net::ConnInfo;

pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Faults that act on the response body.
#[derive(Debug, Default)]
pub struct BodyFaults {
    /// Throttle to this many bytes per second.
    pub bandwidth: Option<u64>,
    /// Reset the connection/stream after this many body bytes.
    pub reset_after: Option<u64>,
    /// The rule whose reset it is, recorded when the reset fires.
    pub reset_rule: Option<Arc<str>>,
    /// Stream and content faults, for the LLM layer.
    pub plan: brownout_faults::stream::StreamPlan,
    /// The decision stream of the first rule that planned one.
    pub plan_rng: Option<Box<rand_chacha::ChaCha8Rng>>,
    /// Names of the decided rules, by the index the plan uses.
    pub plan_rules: Vec<Arc<str>>,
    /// Each decided rule's `stale_results` cache, by the index the plan uses.
    pub plan_stale: Vec<Arc<brownout_faults::vector::StaleCache>>,
    /// This request's place in a simulated GPU: its tokens are released no sooner
    /// than the model produces them.
    pub gpu: Option<brownout_faults::gpu::Sequence>,
}

impl BodyFaults {
    /// Whether no byte-level fault applies (stream and content faults are separate).
    pub fn is_empty(&self) -> bool {
        self.bandwidth.is_none() && self.reset_after.is_none()
    }
}

#[derive(Debug)]
struct BodyFaultState {
    faults: BodyFaults,
    next_at: Option<Instant>,
    pending: Option<Bytes>,
    pace: Option<Pin<Box<Sleep>>>,
    reset_now: bool,
}

/// What a body carries.
#[derive(Debug)]
enum Kind {
    Upstream(UpBody),
    Full(Option<Bytes>),
    /// A complete body followed by trailers (a gRPC answer brownout makes).
    FullTrailers(Option<Bytes>, Option<http::HeaderMap>),
    /// A body that fails before its first byte (an in-process `reset`).
    Failed(Option<BoxError>),
}

/// Every response body brownout sends.
#[derive(Debug)]
pub struct ProxyBody {
    kind: Kind,
    ex: Option<Exchange>,
    faults: Option<Box<BodyFaultState>>,
    idle: Option<Pin<Box<Sleep>>>,
    idle_timeout: Duration,
    /// LLM streams: measurement, and stream faults when decided.
    llm: Option<Box<LlmStream>>,
    llm_wait: Option<Pin<Box<Sleep>>>,
    /// The client connection, for resets (HTTP/1.1: the whole connection).
    conn: Option<Arc<ConnInfo>>,
    http2: bool,
    /// Bytes already read from the upstream (to try a rewrite) that go out first.
    head: Option<Bytes>,
    /// A non-streaming LLM answer, copied for its token usage.
    json_tap: Option<Box<JsonTap>>,
    /// A gRPC response, read for in-message errors and broken framing.
    grpc_tap: Option<Box<crate::pipeline::grpc::GrpcTap>>,
    /// The upstream's trailers, held while a shaper still has messages to send:
    /// they go last, and only after the upstream's own end (a stream cut short by
    /// a fault ends without them, so the client cannot read it as complete).
    held_trailers: Option<http::HeaderMap>,
}

/// Longest single sleep while pacing, so the kill switch is noticed promptly.
const MAX_PACE_SLEEP: Duration = Duration::from_millis(200);

impl ProxyBody {
    /// A complete body (injected errors, gateway errors, admin answers).
    pub fn full(bytes: Bytes, ex: Option<Exchange>) -> Self {
        ProxyBody {
            // An empty body is ended from the start, so HTTP/2 sends the headers
            // with END_STREAM (what a gRPC trailers-only answer is).
            kind: Kind::Full((!bytes.is_empty()).then_some(bytes)),
            ex,
            faults: None,
            idle: None,
            idle_timeout: Duration::MAX,
            llm: None,
            llm_wait: None,
            conn: None,
            http2: false,
            head: None,
            json_tap: None,
            grpc_tap: None,
            held_trailers: None,
        }
    }

    /// A body that fails at once with `error`: how a service that owns no socket
    /// makes hyper break the exchange (an in-process `reset`, [`crate::layer`]).
    pub fn failing(error: impl Into<BoxError>) -> Self {
        let mut body = ProxyBody::full(Bytes::new(), None);
        body.kind = Kind::Failed(Some(error.into()));
        body
    }

    /// Send `trailers` after the body (none: as it is).
    pub fn with_trailers(mut self, trailers: Option<http::HeaderMap>) -> Self {
        if let (Some(t), Kind::Full(b)) = (trailers, &mut self.kind) {
            self.kind = Kind::FullTrailers(b.take(), Some(t));
        }
        self
    }

    /// The upstream's body, measured and possibly harmed.
    pub fn upstream(
        body: UpBody,
        ex: Exchange,
        faults: BodyFaults,
        conn: &Arc<ConnInfo>,
        http2: bool,
        idle_timeout: Duration,
    ) -> Self {
        let faults = (!faults.is_empty()).then(|| {
            Box::new(BodyFaultState {
                faults,
                next_at: None,
                pending: None,
                pace: None,
                reset_now: false,
            })
        });
        ProxyBody {
            kind: Kind::Upstream(body),
            ex: Some(ex),
            faults,
            idle: None,
            idle_timeout,
            llm: None,
            llm_wait: None,
            conn: Some(conn.clone()),
            http2,
            head: None,
            json_tap: None,
            grpc_tap: None,
            held_trailers: None,
        }
    }

    /// When the exchange began (for stream timings).
    pub fn start(&self) -> Option<Instant> {
        self.ex.as_ref().map(|e| e.start())
    }

    /// Send `head` (already read from the upstream) before the rest of the body.
    pub fn with_head(mut self, head: Bytes) -> Self {
        if !head.is_empty() {
            self.head = Some(head);
        }
        self
    }

    /// Copy this (non-streaming LLM) answer on the side to read its token usage.
    pub fn with_json_tap(mut self, tap: JsonTap) -> Self {
        self.json_tap = Some(Box::new(tap));
        self
    }

    /// Read this gRPC response's messages on the side (in-message errors, framing).
    pub fn with_grpc_tap(mut self, tap: crate::pipeline::grpc::GrpcTap) -> Self {
        self.grpc_tap = Some(Box::new(tap));
        self
    }

    /// Measure (and, with a shaper, harm) this body as an LLM event stream.
    pub fn with_llm(mut self, llm: LlmStream) -> Self {
        self.llm = Some(Box::new(llm));
        self
    }

    fn finish(&mut self, outcome: Option<Outcome>, error: Option<String>) {
        if let Some(mut ex) = self.ex.take() {
            let mut outcome = outcome;
            if let Some(tap) = self.json_tap.as_deref() {
                tap.record(&mut ex);
            }
            let mut error = error;
            if let Some(tap) = self.grpc_tap.as_deref_mut() {
                if let Some(why) = tap.record(&mut ex) {
                    if outcome.is_none() {
                        outcome = Some(Outcome::UpstreamError);
                        error = error.or(Some(why));
                    }
                }
            }
            if let Some(llm) = self.llm.as_deref() {
                llm.record(&mut ex, Instant::now());
                if outcome.is_none() {
                    outcome = llm.outcome();
                }
            }
            ex.finish_body(outcome, error);
        }
    }

    /// The body while a shaper re-frames the stream event by event.
    fn poll_shaped(
        &mut self,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        loop {
            let enabled = self.ex.as_ref().is_none_or(|e| e.faults_enabled());
            let Some(llm) = self.llm.as_deref_mut() else {
                return Poll::Ready(None);
            };
            if !enabled {
                llm.release();
            }
            let now = Instant::now();
            match llm.next(now) {
                Next::Emit(bytes) => return self.shape(cx, bytes),
                Next::Wait(until) => {
                    // Nap at most MAX_PACE_SLEEP so the kill switch is noticed promptly.
                    let wake = until.map_or(now + MAX_PACE_SLEEP, |t| t.min(now + MAX_PACE_SLEEP));
                    match self.llm_wait.as_mut() {
                        Some(s) => s.as_mut().reset(wake),
                        None => self.llm_wait = Some(Box::pin(tokio::time::sleep_until(wake))),
                    }
                    if let Some(s) = self.llm_wait.as_mut() {
                        if s.as_mut().poll(cx).is_pending() {
                            return Poll::Pending;
                        }
                    }
                }
                Next::Gpu(k) => {
                    if llm.poll_gpu(k, cx).is_pending() {
                        // Also nap briefly, so the kill switch is noticed while the model works.
                        let wake = now + MAX_PACE_SLEEP;
                        match self.llm_wait.as_mut() {
                            Some(s) => s.as_mut().reset(wake),
                            None => self.llm_wait = Some(Box::pin(tokio::time::sleep_until(wake))),
                        }
                        if let Some(s) = self.llm_wait.as_mut() {
                            if s.as_mut().poll(cx).is_pending() {
                                return Poll::Pending;
                            }
                        }
                    }
                }
                Next::End => {
                    if let Some(t) = self.held_trailers.take() {
                        if llm.upstream_done && llm.harm() != Some(Outcome::Truncated) {
                            return Poll::Ready(Some(Ok(self.trailers(Frame::trailers(t)))));
                        }
                    }
                    self.finish(None, None);
                    return Poll::Ready(None);
                }
                Next::Reset => {
                    self.reset_connection();
                    self.finish(Some(Outcome::Reset), None);
                    return Poll::Ready(Some(Err("stream reset by brownout fault".into())));
                }
                Next::Read => {
                    let Kind::Upstream(inc) = &mut self.kind else {
                        llm.upstream_end();
                        continue;
                    };
                    match Pin::new(inc).poll_frame(cx) {
                        Poll::Pending => return self.idle_pending(cx),
                        Poll::Ready(None) => llm.upstream_end(),
                        Poll::Ready(Some(Err(e))) => {
                            let msg = format!("upstream body failed: {}", crate::error::chain(&*e));
                            self.finish(Some(Outcome::UpstreamError), Some(msg));
                            return Poll::Ready(Some(Err(e)));
                        }
                        Poll::Ready(Some(Ok(frame))) => {
                            if let Some(idle) = self.idle.as_mut() {
                                idle.as_mut().reset(Instant::now() + self.idle_timeout);
                            }
                            match frame.into_data() {
                                Ok(data) => llm.feed(&data),
                                // Trailers end the upstream's body: they wait until
                                // every queued message has gone.
                                Err(frame) => match frame.into_trailers() {
                                    Ok(t) => {
                                        self.held_trailers = Some(t);
                                        llm.upstream_end();
                                    }
                                    Err(frame) => return Poll::Ready(Some(Ok(frame))),
                                },
                            }
                        }
                    }
                }
            }
        }
    }

    /// The upstream has nothing yet: arm the idle timeout.
    fn idle_pending(
        &mut self,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let timeout = self.idle_timeout;
        if timeout == Duration::MAX {
            return Poll::Pending;
        }
        let idle = self
            .idle
            .get_or_insert_with(|| Box::pin(tokio::time::sleep(timeout)));
        if idle.as_mut().poll(cx).is_ready() {
            let msg = format!("upstream sent nothing for {timeout:?} (upstream_idle_timeout)");
            self.finish(Some(Outcome::Timeout), Some(msg.clone()));
            return Poll::Ready(Some(Err(msg.into())));
        }
        Poll::Pending
    }

    /// Trailers pass through untouched; a gRPC call's status is read from them.
    fn trailers(&mut self, frame: Frame<Bytes>) -> Frame<Bytes> {
        if let (Some(t), Some(ex)) = (frame.trailers_ref(), self.ex.as_mut()) {
            if let Some(code) = crate::pipeline::grpc::status_of(t) {
                ex.grpc_status(code);
            }
        }
        frame
    }

    fn count(&mut self, n: usize) {
        if let Some(ex) = self.ex.as_mut() {
            ex.on_body_bytes(n);
        }
    }

    /// Emit (part of) `data`, applying reset and bandwidth faults. `None`: must wait.
    fn shape(
        &mut self,
        cx: &mut Context<'_>,
        mut data: Bytes,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let enabled = self.ex.as_ref().is_none_or(|e| e.faults_enabled());
        let Some(st) = self.faults.as_deref_mut() else {
            self.count(data.len());
            return Poll::Ready(Some(Ok(Frame::data(data))));
        };
        if enabled {
            if let Some(limit) = st.faults.reset_after {
                let sent = self.ex.as_ref().map_or(0, |e| e.bytes_out());
                let room = limit.saturating_sub(sent);
                if (data.len() as u64) >= room {
                    data.truncate(room as usize);
                    st.reset_now = true;
                    st.pending = None;
                    if data.is_empty() {
                        return self.do_reset();
                    }
                }
            }
            if let Some(bps) = st.faults.bandwidth {
                let now = Instant::now();
                let at = *st.next_at.get_or_insert(now);
                if at > now {
                    // Not yet: keep the bytes and wait (in short naps, to notice the kill switch).
                    st.pending = Some(data);
                    let wake = at.min(now + MAX_PACE_SLEEP);
                    match st.pace.as_mut() {
                        Some(s) => s.as_mut().reset(wake),
                        None => st.pace = Some(Box::pin(tokio::time::sleep_until(wake))),
                    }
                    if let Some(s) = st.pace.as_mut() {
                        if s.as_mut().poll(cx).is_ready() {
                            cx.waker().wake_by_ref();
                        }
                    }
                    return Poll::Pending;
                }
                let chunk = (bps / 10).max(1) as usize;
                if data.len() > chunk {
                    st.pending = Some(data.split_off(chunk));
                }
                st.next_at =
                    Some(at.max(now) + Duration::from_secs_f64(data.len() as f64 / bps as f64));
            }
        }
        self.count(data.len());
        Poll::Ready(Some(Ok(Frame::data(data))))
    }

    /// HTTP/1.1: the connection closes with an RST; HTTP/2: only the stream is reset
    /// (by the body error alone).
    fn reset_connection(&self) {
        if let (Some(c), false) = (self.conn.as_ref(), self.http2) {
            c.request_reset();
        }
    }

    fn do_reset(&mut self) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        self.reset_connection();
        if let Some(st) = self.faults.as_deref() {
            if let (Some(rule), Some(ex)) = (st.faults.reset_rule.as_ref(), self.ex.as_mut()) {
                ex.applied(rule, "reset");
            }
        }
        self.finish(Some(Outcome::Reset), None);
        Poll::Ready(Some(Err("reset by brownout fault".into())))
    }
}

use std::future::Future as _;

impl Body for ProxyBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = self.get_mut();
        // Body faults first: a pending reset or paced remainder.
        let shaped = this.llm.as_deref().is_some_and(|l| l.shaping());
        if let Some(st) = this.faults.as_deref_mut() {
            if st.reset_now && st.pending.is_none() {
                return this.do_reset();
            }
            if let Some(p) = st.pending.take() {
                return this.shape(cx, p);
            }
        }
        if let Some(head) = this.head.take() {
            return this.shape(cx, head);
        }
        if shaped {
            return this.poll_shaped(cx);
        }
        let polled = match &mut this.kind {
            Kind::Full(b) => match b.take() {
                Some(b) => {
                    this.count(b.len());
                    return Poll::Ready(Some(Ok(Frame::data(b))));
                }
                None => Poll::Ready(None),
            },
            Kind::FullTrailers(b, t) => {
                if let Some(b) = b.take() {
                    this.count(b.len());
                    return Poll::Ready(Some(Ok(Frame::data(b))));
                }
                match t.take() {
                    Some(t) => return Poll::Ready(Some(Ok(this.trailers(Frame::trailers(t))))),
                    None => Poll::Ready(None),
                }
            }
            Kind::Upstream(inc) => Pin::new(inc).poll_frame(cx),
            Kind::Failed(e) => return Poll::Ready(e.take().map(Err)),
        };
        match polled {
            Poll::Pending => this.idle_pending(cx),
            Poll::Ready(None) => {
                if let Some(llm) = this.llm.as_deref_mut() {
                    llm.upstream_end();
                }
                this.finish(None, None);
                Poll::Ready(None)
            }
            Poll::Ready(Some(Err(e))) => {
                let msg = format!("upstream body failed: {}", crate::error::chain(&*e));
                this.finish(Some(Outcome::UpstreamError), Some(msg));
                Poll::Ready(Some(Err(e)))
            }
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(idle) = this.idle.as_mut() {
                    idle.as_mut().reset(Instant::now() + this.idle_timeout);
                }
                match frame.into_data() {
                    Ok(data) => {
                        if let Some(llm) = this.llm.as_deref_mut() {
                            llm.tap(&data);
                        } else if let Some(tap) = this.json_tap.as_deref_mut() {
                            tap.tap(&data);
                        } else if let Some(tap) = this.grpc_tap.as_deref_mut() {
                            tap.tap(&data);
                        }
                        let out = this.shape(cx, data);
                        if let Kind::Upstream(inc) = &this.kind {
                            if inc.is_end_stream()
                                && this
                                    .faults
                                    .as_ref()
                                    .is_none_or(|s| s.pending.is_none() && !s.reset_now)
                            {
                                if let Some(llm) = this.llm.as_deref_mut() {
                                    llm.upstream_end();
                                }
                                this.finish(None, None);
                            }
                        }
                        out
                    }
                    // Trailers pass through untouched.
                    Err(frame) => Poll::Ready(Some(Ok(this.trailers(frame)))),
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        // Queued stream events, a head or held trailers still to send: not done,
        // whatever the upstream says.
        if self.head.is_some()
            || self.held_trailers.is_some()
            || self
                .llm
                .as_deref()
                .is_some_and(|l| l.shaping() && !l.finished())
        {
            return false;
        }
        if self
            .faults
            .as_ref()
            .is_some_and(|s| s.pending.is_some() || s.reset_now)
        {
            return false;
        }
        match &self.kind {
            Kind::Upstream(b) => b.is_end_stream(),
            Kind::Full(b) => b.is_none(),
            Kind::FullTrailers(b, t) => b.is_none() && t.is_none(),
            Kind::Failed(e) => e.is_none(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        // A re-framed stream's length is unknown in advance.
        if self.llm.as_deref().is_some_and(|l| l.shaping()) {
            return SizeHint::default();
        }
        let head = self.head.as_ref().map_or(0, |h| h.len() as u64);
        if head > 0 {
            let inner = match &self.kind {
                Kind::Upstream(b) => b.size_hint(),
                Kind::Full(b) | Kind::FullTrailers(b, _) => {
                    SizeHint::with_exact(b.as_ref().map_or(0, |b| b.len() as u64))
                }
                Kind::Failed(_) => SizeHint::default(),
            };
            let mut h = SizeHint::new();
            h.set_lower(inner.lower() + head);
            if let Some(u) = inner.upper() {
                h.set_upper(u + head);
            }
            return h;
        }
        match &self.kind {
            Kind::Upstream(b) => b.size_hint(),
            Kind::Full(Some(b)) | Kind::FullTrailers(Some(b), _) => {
                SizeHint::with_exact(b.len() as u64)
            }
            Kind::Full(None) | Kind::FullTrailers(None, _) => SizeHint::with_exact(0),
            Kind::Failed(_) => SizeHint::default(),
        }
    }
}

impl Drop for ProxyBody {
    fn drop(&mut self) {
        // A body with nothing left to send (HEAD, 204, 304, or fully sent) that hyper
        // dropped without polling to the end is complete, not abandoned.
        if self.ex.is_some() && self.is_end_stream() {
            self.finish(None, None);
        } else if self.ex.is_some() && self.llm.is_some() {
            // The client went away mid-stream (often because a fault broke it, as
            // an SDK raising on a damaged event does): still record what it got
            // and the faults applied so far; harm already done is the outcome.
            // A client that leaves after the stream's terminator (an SDK closes
            // the response at `[DONE]`) had the whole answer: not abandoned.
            let outcome = self
                .llm
                .as_deref()
                .and_then(|llm| llm.left_outcome(llm.terminated()));
            self.finish(outcome, None);
        }
    }
}
