//! The innermost stage of a response body: what it carries.

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};

use crate::error::BoxError;
use crate::upstream::UpBody;

/// What a body carries.
#[derive(Debug)]
pub(crate) enum Kind {
    Upstream(UpBody),
    Full(Option<Bytes>),
    /// A complete body followed by trailers (a gRPC answer brownout makes).
    FullTrailers(Option<Bytes>, Option<http::HeaderMap>),
    /// A body that fails before its first byte (an in-process `reset`).
    Failed(Option<BoxError>),
}

/// The body's bytes: `head` (already read from the upstream, to try a rewrite)
/// first, then what `kind` holds.
#[derive(Debug)]
pub(crate) struct Source {
    pub(crate) head: Option<Bytes>,
    pub(crate) kind: Kind,
}

impl Source {
    pub(crate) fn new(kind: Kind) -> Self {
        Source { head: None, kind }
    }
}

impl Body for Source {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = self.get_mut();
        if let Some(head) = this.head.take() {
            return Poll::Ready(Some(Ok(Frame::data(head))));
        }
        match &mut this.kind {
            Kind::Upstream(b) => Pin::new(b).poll_frame(cx),
            Kind::Full(b) => Poll::Ready(b.take().map(|b| Ok(Frame::data(b)))),
            Kind::FullTrailers(b, t) => {
                if let Some(b) = b.take() {
                    return Poll::Ready(Some(Ok(Frame::data(b))));
                }
                Poll::Ready(t.take().map(|t| Ok(Frame::trailers(t))))
            }
            Kind::Failed(e) => Poll::Ready(e.take().map(Err)),
        }
    }

    fn is_end_stream(&self) -> bool {
        if self.head.is_some() {
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
        let inner = match &self.kind {
            Kind::Upstream(b) => b.size_hint(),
            Kind::Full(b) | Kind::FullTrailers(b, _) => {
                SizeHint::with_exact(b.as_ref().map_or(0, |b| b.len() as u64))
            }
            Kind::Failed(_) => SizeHint::default(),
        };
        let head = self.head.as_ref().map_or(0, |h| h.len() as u64);
        if head == 0 {
            return inner;
        }
        let mut h = SizeHint::new();
        h.set_lower(inner.lower() + head);
        if let Some(u) = inner.upper() {
            h.set_upper(u + head);
        }
        h
    }
}
