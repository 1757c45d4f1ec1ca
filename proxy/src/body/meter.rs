//! The measuring stage: what the answer says (an LLM stream's tokens and timings,
//! a JSON answer's usage, a gRPC call's in-message errors), and, when stream
//! faults were decided, the stream re-framed event by event ([`LlmStream`]).

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use tokio::time::{Instant, Sleep};

use crate::body::grpc::GrpcTap;
use crate::body::llm::{JsonTap, LlmStream, Next};
use crate::body::{BodyEnd, Stage};
use crate::control::state::Shared;
use crate::error::BoxError;
use crate::exchange::Exchange;
use crate::record::Outcome;

/// Longest single sleep while shaping, so the kill switch is noticed promptly.
pub(crate) const MAX_PACE_SLEEP: Duration = Duration::from_millis(200);

/// What reads the answer on the side (one at most: each answer is one kind).
#[derive(Debug)]
pub(crate) enum Meter {
    None,
    /// A non-streaming LLM answer, copied for its token usage.
    Json(Box<JsonTap>),
    /// A gRPC response, read for in-message errors and broken framing.
    Grpc(Box<GrpcTap>),
    /// An LLM event stream: measured, and shaped when stream faults were decided.
    Llm(Box<LlmStream>),
}

/// A body measured (and, for a shaped stream, re-framed) as it passes.
#[derive(Debug)]
pub(crate) struct Metered<B> {
    pub(crate) inner: B,
    pub(crate) meter: Meter,
    /// Whose kill switch a shaped stream obeys.
    pub(crate) shared: Option<Arc<Shared>>,
    wait: Option<Pin<Box<Sleep>>>,
    /// The upstream's trailers, held while a shaper still has messages to send:
    /// they go last, and only after the upstream's own end (a stream cut short by
    /// a fault ends without them, so the client cannot read it as complete).
    held_trailers: Option<http::HeaderMap>,
}

impl<B> Metered<B> {
    pub(crate) fn new(inner: B) -> Self {
        Metered {
            inner,
            meter: Meter::None,
            shared: None,
            wait: None,
            held_trailers: None,
        }
    }

    fn shaping(&self) -> bool {
        matches!(&self.meter, Meter::Llm(l) if l.shaping())
    }

    /// Sleep until `wake` (at most [`MAX_PACE_SLEEP`] from now); ready when it passed.
    fn nap(&mut self, cx: &mut Context<'_>, wake: Instant) -> Poll<()> {
        match self.wait.as_mut() {
            Some(s) => s.as_mut().reset(wake),
            None => self.wait = Some(Box::pin(tokio::time::sleep_until(wake))),
        }
        match self.wait.as_mut() {
            Some(s) => s.as_mut().poll(cx),
            None => Poll::Ready(()),
        }
    }
}

impl<B> Metered<B>
where
    B: Body<Data = Bytes, Error = BoxError> + Unpin,
{
    /// The body while a shaper re-frames the stream event by event.
    fn poll_shaped(
        &mut self,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        loop {
            let enabled = self
                .shared
                .as_ref()
                .is_none_or(|s| s.release.faults_enabled());
            let Meter::Llm(llm) = &mut self.meter else {
                return Poll::Ready(None);
            };
            if !enabled {
                llm.release();
            }
            let now = Instant::now();
            match llm.next(now) {
                Next::Emit(bytes) => return Poll::Ready(Some(Ok(Frame::data(bytes)))),
                Next::Wait(until) => {
                    let wake = until.map_or(now + MAX_PACE_SLEEP, |t| t.min(now + MAX_PACE_SLEEP));
                    if self.nap(cx, wake).is_pending() {
                        return Poll::Pending;
                    }
                }
                Next::Gpu(k) => {
                    // Also nap briefly, so the kill switch is noticed while the model works.
                    if llm.poll_gpu(k, cx).is_pending()
                        && self.nap(cx, now + MAX_PACE_SLEEP).is_pending()
                    {
                        return Poll::Pending;
                    }
                }
                Next::End => {
                    if let Some(t) = self.held_trailers.take() {
                        if llm.upstream_done && llm.harm() != Some(Outcome::Truncated) {
                            return Poll::Ready(Some(Ok(Frame::trailers(t))));
                        }
                    }
                    return Poll::Ready(None);
                }
                Next::Reset => return Poll::Ready(Some(Err(Box::new(BodyEnd::StreamReset)))),
                Next::Read => match Pin::new(&mut self.inner).poll_frame(cx) {
                    Poll::Pending => return Poll::Pending,
                    Poll::Ready(None) => llm.upstream_end(),
                    Poll::Ready(Some(Err(e))) => return Poll::Ready(Some(Err(e))),
                    Poll::Ready(Some(Ok(frame))) => match frame.into_data() {
                        Ok(data) => llm.feed(&data),
                        // Trailers end the upstream's body: they wait until every
                        // queued message has gone.
                        Err(frame) => match frame.into_trailers() {
                            Ok(t) => {
                                self.held_trailers = Some(t);
                                llm.upstream_end();
                            }
                            Err(frame) => return Poll::Ready(Some(Ok(frame))),
                        },
                    },
                },
            }
        }
    }
}

impl<B> Body for Metered<B>
where
    B: Body<Data = Bytes, Error = BoxError> + Unpin,
{
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = self.get_mut();
        if this.shaping() {
            return this.poll_shaped(cx);
        }
        let polled = Pin::new(&mut this.inner).poll_frame(cx);
        match &polled {
            Poll::Ready(None) => {
                if let Meter::Llm(llm) = &mut this.meter {
                    llm.upstream_end();
                }
            }
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    match &mut this.meter {
                        Meter::Llm(llm) => llm.tap(data),
                        Meter::Json(tap) => tap.tap(data),
                        Meter::Grpc(tap) => tap.tap(data),
                        Meter::None => {}
                    }
                    if this.inner.is_end_stream() {
                        if let Meter::Llm(llm) = &mut this.meter {
                            llm.upstream_end();
                        }
                    }
                }
            }
            _ => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        // Queued stream events or held trailers still to send: not done, whatever
        // the upstream says.
        if self.held_trailers.is_some() {
            return false;
        }
        if let Meter::Llm(l) = &self.meter {
            if l.shaping() && !l.finished() {
                return false;
            }
        }
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        // A re-framed stream's length is unknown in advance.
        if self.shaping() {
            return SizeHint::default();
        }
        self.inner.size_hint()
    }
}

impl<B> Stage for Metered<B>
where
    B: Body<Data = Bytes, Error = BoxError> + Unpin,
{
    fn record(
        &mut self,
        ex: &mut Exchange,
        outcome: &mut Option<Outcome>,
        error: &mut Option<String>,
    ) {
        match &mut self.meter {
            Meter::None => {}
            Meter::Json(tap) => tap.record(ex),
            Meter::Grpc(tap) => {
                if let Some(why) = tap.record(ex) {
                    if outcome.is_none() {
                        *outcome = Some(Outcome::UpstreamError);
                        *error = error.take().or(Some(why));
                    }
                }
            }
            Meter::Llm(llm) => {
                llm.record(ex, Instant::now());
                if outcome.is_none() {
                    *outcome = llm.outcome();
                }
            }
        }
    }

    fn left_outcome(&self) -> Option<Option<Outcome>> {
        match &self.meter {
            Meter::Llm(llm) => Some(llm.left_outcome(llm.terminated())),
            _ => None,
        }
    }
}
