//! The response body, frame by frame.
//!
//! (The request body, [`crate::upstream::ReqBody`], lives with the upstream legs
//! that send it.) [`ProxyBody`] carries every response to the client: the upstream's body as it arrives, or an injected/gateway answer.
//! It is a fixed stack of single-purpose stages, each a [`Body`] around the next,
//! none of which buffers:
//!
//! ```text
//! ProxyBody   the record: bytes and first byte, how the body ended (mod.rs)
//! └─ Paced    bandwidth and reset after N bytes (pace.rs)
//!    └─ Metered   measurement on the side, or a stream re-framed by its faults (meter.rs)
//!       └─ Idle   upstream_idle_timeout (idle.rs)
//!          └─ Source   the upstream's body, or one brownout made (source.rs)
//! ```
//!
//! A stage that ends a body on its own says why with a [`BodyEnd`]; the outermost
//! turns that into the record's outcome. `ProxyBody` owns the [`Exchange`] guard,
//! so the record is written exactly when the client is done, whether the body
//! ended, failed, or the client went away.

pub mod decode;
pub mod grpc;
mod idle;
pub mod llm;
mod meter;
mod pace;
mod source;

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};

use crate::body::idle::Idle;
use crate::body::llm::{JsonTap, LlmStream};
use crate::body::meter::{Meter, Metered};
use crate::body::pace::Paced;
use crate::body::source::{Kind, Source};
use crate::conn::ConnInfo;
use crate::error::BoxError;
use crate::exchange::Exchange;
use crate::record::Outcome;
use crate::upstream::UpBody;

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

/// Why a stage ended a body itself (an upstream's own failure passes as it is).
#[derive(Debug, thiserror::Error)]
pub(crate) enum BodyEnd {
    /// The upstream sent nothing for this long (`upstream_idle_timeout`).
    #[error("upstream sent nothing for {0:?} (upstream_idle_timeout)")]
    Idle(Duration),
    /// A `reset` after N bytes.
    #[error("reset by brownout fault")]
    Reset,
    /// A stream fault's reset, between events.
    #[error("stream reset by brownout fault")]
    StreamReset,
}

/// A stage of a response body: a body that also has its say in the record when
/// the exchange ends.
pub(crate) trait Stage: Body<Data = Bytes, Error = BoxError> + Unpin {
    /// Put what this stage (and those inside it) saw into the record, and settle
    /// `outcome` and `error` where they are still open.
    fn record(
        &mut self,
        ex: &mut Exchange,
        outcome: &mut Option<Outcome>,
        error: &mut Option<String>,
    );

    /// For a stream whose client leaves before its end: the outcome to record
    /// (`Some(None)`: none to add); `None` when the body is no stream.
    fn left_outcome(&self) -> Option<Option<Outcome>>;
}

impl Stage for Idle<Source> {
    fn record(&mut self, _: &mut Exchange, _: &mut Option<Outcome>, _: &mut Option<String>) {}

    fn left_outcome(&self) -> Option<Option<Outcome>> {
        None
    }
}

type Stack = Paced<Metered<Idle<Source>>>;

/// Every response body brownout sends.
#[derive(Debug)]
pub struct ProxyBody {
    inner: Stack,
    ex: Option<Exchange>,
    /// The client connection, for resets (HTTP/1.1: the whole connection).
    conn: Option<Arc<ConnInfo>>,
    http2: bool,
}

impl ProxyBody {
    fn of(kind: Kind, ex: Option<Exchange>, idle_timeout: Duration) -> Self {
        ProxyBody {
            inner: Paced::new(Metered::new(Idle::new(Source::new(kind), idle_timeout))),
            ex,
            conn: None,
            http2: false,
        }
    }

    fn source(&mut self) -> &mut Source {
        &mut self.inner.inner.inner.inner
    }

    fn meter(&mut self, meter: Meter) {
        let m = &mut self.inner.inner;
        m.meter = meter;
        m.shared = self.ex.as_ref().map(|e| e.shared().clone());
    }

    /// A complete body (injected errors, gateway errors, admin answers).
    pub fn full(bytes: Bytes, ex: Option<Exchange>) -> Self {
        // An empty body is ended from the start, so HTTP/2 sends the headers
        // with END_STREAM (what a gRPC trailers-only answer is).
        ProxyBody::of(
            Kind::Full((!bytes.is_empty()).then_some(bytes)),
            ex,
            Duration::MAX,
        )
    }

    /// A body that fails at once with `error`: how a service that owns no socket
    /// makes hyper break the exchange (an in-process `reset`, [`crate::layer`]).
    pub fn failing(error: impl Into<BoxError>) -> Self {
        ProxyBody::of(Kind::Failed(Some(error.into())), None, Duration::MAX)
    }

    /// Send `trailers` after the body (none: as it is).
    pub fn with_trailers(mut self, trailers: Option<http::HeaderMap>) -> Self {
        let source = self.source();
        if let (Some(t), Kind::Full(b)) = (trailers, &mut source.kind) {
            source.kind = Kind::FullTrailers(b.take(), Some(t));
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
        let shared = Some(ex.shared().clone());
        let mut b = ProxyBody::of(Kind::Upstream(body), Some(ex), idle_timeout);
        b.inner.set_faults(faults, shared);
        b.conn = Some(conn.clone());
        b.http2 = http2;
        b
    }

    /// When the exchange began (for stream timings).
    pub fn start(&self) -> Option<tokio::time::Instant> {
        self.ex.as_ref().map(|e| e.start())
    }

    /// Send `head` (already read from the upstream) before the rest of the body.
    pub fn with_head(mut self, head: Bytes) -> Self {
        if !head.is_empty() {
            self.source().head = Some(head);
        }
        self
    }

    /// Copy this (non-streaming LLM) answer on the side to read its token usage.
    pub fn with_json_tap(mut self, tap: JsonTap) -> Self {
        self.meter(Meter::Json(Box::new(tap)));
        self
    }

    /// Read this gRPC response's messages on the side (in-message errors, framing).
    pub fn with_grpc_tap(mut self, tap: crate::body::grpc::GrpcTap) -> Self {
        self.meter(Meter::Grpc(Box::new(tap)));
        self
    }

    /// Measure (and, with a shaper, harm) this body as an LLM event stream.
    pub fn with_llm(mut self, llm: LlmStream) -> Self {
        self.meter(Meter::Llm(Box::new(llm)));
        self
    }

    /// Write the record: what every stage saw, and how the body ended.
    fn finish(&mut self, outcome: Option<Outcome>, error: Option<String>) {
        if let Some(mut ex) = self.ex.take() {
            let (mut outcome, mut error) = (outcome, error);
            self.inner.record(&mut ex, &mut outcome, &mut error);
            ex.finish_body(outcome, error);
        }
    }

    /// How a body that failed ended: a stage's own end, or the upstream's failure.
    fn failed(&mut self, e: BoxError) -> BoxError {
        let end = match e.downcast::<BodyEnd>() {
            Ok(end) => *end,
            Err(e) => {
                let msg = format!("upstream body failed: {}", crate::error::chain(&*e));
                self.finish(Some(Outcome::UpstreamError), Some(msg));
                return e;
            }
        };
        match end {
            BodyEnd::Idle(_) => {
                let msg = end.to_string();
                self.finish(Some(Outcome::Timeout), Some(msg.clone()));
                msg.into()
            }
            BodyEnd::Reset | BodyEnd::StreamReset => {
                // HTTP/1.1: the connection closes with an RST; HTTP/2: only the
                // stream is reset (by the body error alone).
                if let (Some(c), false) = (self.conn.as_ref(), self.http2) {
                    c.request_reset();
                }
                self.finish(Some(Outcome::Reset), None);
                end.to_string().into()
            }
        }
    }
}

impl Body for ProxyBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = self.get_mut();
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(None) => {
                this.finish(None, None);
                Poll::Ready(None)
            }
            Poll::Ready(Some(Err(e))) => Poll::Ready(Some(Err(this.failed(e)))),
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(ex) = this.ex.as_mut() {
                    if let Some(d) = frame.data_ref() {
                        ex.on_body_bytes(d.len());
                    } else if let Some(t) = frame.trailers_ref() {
                        // A gRPC call's status is read from its trailers.
                        if let Some(code) = crate::body::grpc::status_of(t) {
                            ex.grpc_status(code);
                        }
                    }
                }
                // The last frame: the record need not wait for a poll past it.
                if frame.is_data() && this.inner.is_end_stream() {
                    this.finish(None, None);
                }
                Poll::Ready(Some(Ok(frame)))
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

impl Drop for ProxyBody {
    fn drop(&mut self) {
        if self.ex.is_none() {
            return;
        }
        if self.inner.is_end_stream() {
            // A body with nothing left to send (HEAD, 204, 304, or fully sent) that
            // hyper dropped without polling to the end is complete, not abandoned.
            self.finish(None, None);
        } else if let Some(outcome) = self.inner.left_outcome() {
            // The client went away mid-stream (often because a fault broke it, as
            // an SDK raising on a damaged event does): still record what it got
            // and the faults applied so far; harm already done is the outcome.
            // A client that leaves after the stream's terminator (an SDK closes
            // the response at `[DONE]`) had the whole answer: not abandoned.
            self.finish(outcome, None);
        }
    }
}
