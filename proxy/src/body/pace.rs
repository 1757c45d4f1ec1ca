//! Byte faults on the way out: `bandwidth` (bytes per second) and `reset` after N
//! body bytes.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use tokio::time::{Instant, Sleep};

use crate::body::meter::MAX_PACE_SLEEP;
use crate::body::{BodyEnd, BodyFaults, Stage};
use crate::control::state::Shared;
use crate::error::BoxError;
use crate::exchange::Exchange;
use crate::record::Outcome;

/// The state of a body's byte faults.
#[derive(Debug)]
struct Pace {
    faults: BodyFaults,
    /// Whose kill switch the faults obey.
    shared: Option<Arc<Shared>>,
    /// Body bytes let out so far.
    sent: u64,
    next_at: Option<Instant>,
    /// Bytes held back by `bandwidth`, to go out next.
    pending: Option<Bytes>,
    sleep: Option<Pin<Box<Sleep>>>,
    /// The reset is due once `pending` has gone.
    reset_now: bool,
    /// The reset fired (recorded with its rule).
    reset_done: bool,
}

/// A body paced and cut by its byte faults; with none, frames pass as they come.
#[derive(Debug)]
pub(crate) struct Paced<B> {
    pub(crate) inner: B,
    pace: Option<Box<Pace>>,
}

impl<B> Paced<B> {
    pub(crate) fn new(inner: B) -> Self {
        Paced { inner, pace: None }
    }

    /// Apply `faults` (when it has any byte fault) under `shared`'s kill switch.
    pub(crate) fn set_faults(&mut self, faults: BodyFaults, shared: Option<Arc<Shared>>) {
        if !faults.is_empty() {
            self.pace = Some(Box::new(Pace {
                faults,
                shared,
                sent: 0,
                next_at: None,
                pending: None,
                sleep: None,
                reset_now: false,
                reset_done: false,
            }));
        }
    }
}

impl Pace {
    fn reset(&mut self) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        self.reset_done = true;
        Poll::Ready(Some(Err(Box::new(BodyEnd::Reset))))
    }

    /// Let (part of) `data` out, or hold it back. Pending: must wait.
    fn emit(
        &mut self,
        cx: &mut Context<'_>,
        mut data: Bytes,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let enabled = self
            .shared
            .as_ref()
            .is_none_or(|s| s.release.faults_enabled());
        if enabled {
            if let Some(limit) = self.faults.reset_after {
                let room = limit.saturating_sub(self.sent);
                if (data.len() as u64) >= room {
                    data.truncate(room as usize);
                    self.reset_now = true;
                    self.pending = None;
                    if data.is_empty() {
                        return self.reset();
                    }
                }
            }
            if let Some(bps) = self.faults.bandwidth {
                let now = Instant::now();
                let at = *self.next_at.get_or_insert(now);
                if at > now {
                    // Not yet: keep the bytes and wait (in short naps, to notice the kill switch).
                    self.pending = Some(data);
                    let wake = at.min(now + MAX_PACE_SLEEP);
                    match self.sleep.as_mut() {
                        Some(s) => s.as_mut().reset(wake),
                        None => self.sleep = Some(Box::pin(tokio::time::sleep_until(wake))),
                    }
                    if let Some(s) = self.sleep.as_mut() {
                        if s.as_mut().poll(cx).is_ready() {
                            cx.waker().wake_by_ref();
                        }
                    }
                    return Poll::Pending;
                }
                let chunk = (bps / 10).max(1) as usize;
                if data.len() > chunk {
                    self.pending = Some(data.split_off(chunk));
                }
                self.next_at =
                    Some(at.max(now) + Duration::from_secs_f64(data.len() as f64 / bps as f64));
            }
        }
        self.sent += data.len() as u64;
        Poll::Ready(Some(Ok(Frame::data(data))))
    }
}

impl<B> Body for Paced<B>
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
        let Some(pace) = this.pace.as_deref_mut() else {
            return Pin::new(&mut this.inner).poll_frame(cx);
        };
        // A due reset, or bytes held back, come before anything new.
        if pace.reset_now && pace.pending.is_none() {
            return pace.reset();
        }
        if let Some(p) = pace.pending.take() {
            return pace.emit(cx, p);
        }
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => match frame.into_data() {
                Ok(data) => pace.emit(cx, data),
                Err(frame) => Poll::Ready(Some(Ok(frame))),
            },
            other => other,
        }
    }

    fn is_end_stream(&self) -> bool {
        if self
            .pace
            .as_ref()
            .is_some_and(|p| p.pending.is_some() || p.reset_now)
        {
            return false;
        }
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

impl<B: Stage> Stage for Paced<B> {
    fn record(
        &mut self,
        ex: &mut Exchange,
        outcome: &mut Option<Outcome>,
        error: &mut Option<String>,
    ) {
        if let Some(p) = self.pace.as_deref() {
            if let (true, Some(rule)) = (p.reset_done, p.faults.reset_rule.as_ref()) {
                ex.applied(rule, "reset");
            }
        }
        self.inner.record(ex, outcome, error);
    }

    fn left_outcome(&self) -> Option<Option<Outcome>> {
        self.inner.left_outcome()
    }
}
