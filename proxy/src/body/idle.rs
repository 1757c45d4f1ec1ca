//! `limits.upstream_idle_timeout`: an upstream that sends nothing for that long
//! ends the body with [`BodyEnd::Idle`].

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use tokio::time::{Instant, Sleep};

use crate::body::BodyEnd;
use crate::error::BoxError;

/// A body whose frames must come no more than `timeout` apart.
#[derive(Debug)]
pub(crate) struct Idle<B> {
    pub(crate) inner: B,
    timeout: Duration,
    /// Armed the first time the inner body has nothing, pushed back by each frame.
    timer: Option<Pin<Box<Sleep>>>,
}

impl<B> Idle<B> {
    /// `Duration::MAX`: no timeout (answers brownout makes itself).
    pub(crate) fn new(inner: B, timeout: Duration) -> Self {
        Idle {
            inner,
            timeout,
            timer: None,
        }
    }
}

impl<B> Body for Idle<B>
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
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Pending => {
                let timeout = this.timeout;
                if timeout == Duration::MAX {
                    return Poll::Pending;
                }
                let timer = this
                    .timer
                    .get_or_insert_with(|| Box::pin(tokio::time::sleep(timeout)));
                if timer.as_mut().poll(cx).is_ready() {
                    return Poll::Ready(Some(Err(Box::new(BodyEnd::Idle(timeout)))));
                }
                Poll::Pending
            }
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(t) = this.timer.as_mut() {
                    t.as_mut().reset(Instant::now() + this.timeout);
                }
                Poll::Ready(Some(Ok(frame)))
            }
            other => other,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
