//! The request body as it goes upstream: the client's, possibly with the part read
//! for matching in front, counted, and held for a resend.

use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;

use crate::error::BoxError;

/// The request body sent upstream.
#[derive(Debug)]
pub enum ReqBody {
    /// Untouched client body.
    Incoming(Incoming),
    /// An untouched client body that had all arrived with its head (the fast
    /// loop's connections, [`crate::http1`]): read as hyper's `Incoming` would be.
    Buffered(Option<Bytes>),
    /// An application's own request body, when brownout's faults run in-process
    /// ([`crate::layer`]).
    Boxed(http_body_util::combinators::UnsyncBoxBody<Bytes, BoxError>),
    /// The part read for matching, then whatever remains of the client's body.
    Prefixed {
        prefix: Option<Bytes>,
        rest: Option<Box<ReqBody>>,
    },
    Empty,
    /// A body of unknown length, counting the bytes that pass (the record's
    /// `bytes_in`; a known length is taken from the request's headers instead).
    Counted {
        inner: Box<ReqBody>,
        seen: Arc<AtomicU64>,
    },
    /// A body that keeps what it passes in a [`Hold`], so that a request lost by a
    /// connection the upstream closed can be sent again.
    Held {
        inner: Box<ReqBody>,
        hold: Hold,
    },
}

/// The bytes of a request body as they went upstream, kept while they fit in
/// `limit` (frames are shared, not copied), and when its last byte went.
#[derive(Debug, Clone)]
pub struct Hold(Kept);

#[derive(Debug, Clone)]
enum Kept {
    /// A body that ended with its head (most requests have none): nothing to
    /// keep and nobody else to tell, so nothing shared is allocated; only when
    /// the head went.
    Nothing { last: Option<std::time::Instant> },
    /// A body still to be sent: its frames, seen by the body as it is polled.
    Shared(Arc<Mutex<HoldState>>),
}

#[derive(Debug)]
struct HoldState {
    kept: Vec<Bytes>,
    size: usize,
    limit: usize,
    overflow: bool,
    ended: bool,
    last: Option<std::time::Instant>,
}

impl Hold {
    /// The shared state of a body still to be sent; none for one that ended with
    /// its head.
    fn lock(&self) -> Option<std::sync::MutexGuard<'_, HoldState>> {
        match &self.0 {
            Kept::Nothing { .. } => None,
            Kept::Shared(s) => Some(s.lock().unwrap_or_else(|p| p.into_inner())),
        }
    }

    fn frame(&self, data: &Bytes) {
        let Some(mut h) = self.lock() else { return };
        h.last = Some(std::time::Instant::now());
        if h.overflow {
            return;
        }
        if h.size + data.len() > h.limit {
            h.overflow = true;
            h.kept = Vec::new();
        } else {
            h.size += data.len();
            h.kept.push(data.clone());
        }
    }

    fn end(&self) {
        let Some(mut h) = self.lock() else { return };
        h.ended = true;
        h.last = Some(std::time::Instant::now());
    }

    /// The head goes out now (a body with nothing to send ends with it).
    pub fn sent(&mut self) {
        let now = Some(std::time::Instant::now());
        if let Kept::Nothing { last } = &mut self.0 {
            *last = now;
        } else if let Some(mut h) = self.lock() {
            h.last = now;
        }
    }

    /// When the body's last byte (or, with no body, the head) went.
    fn last(&self) -> Option<std::time::Instant> {
        match &self.0 {
            Kept::Nothing { last } => *last,
            Kept::Shared(_) => self.lock().and_then(|h| h.last),
        }
    }

    /// The whole body again, when every byte of it is held and its last byte went
    /// at most `upstream::RESEND_WINDOW` ago (the resend rule, `upstream::Resend`).
    pub fn replay(&self) -> Option<ReqBody> {
        let recent = self
            .last()
            .is_some_and(|t| crate::upstream::within_resend_window(t.elapsed()));
        if !recent {
            return None;
        }
        self.replay_unprocessed()
    }

    /// The whole body again, when every byte of it is held, however long ago it
    /// went: for a request the upstream said it never processed.
    pub fn replay_unprocessed(&self) -> Option<ReqBody> {
        let Some(h) = self.lock() else {
            return Some(ReqBody::Empty);
        };
        if !h.ended || h.overflow {
            return None;
        }
        Some(match h.kept.as_slice() {
            [] => ReqBody::Empty,
            [one] => ReqBody::Prefixed {
                prefix: Some(one.clone()),
                rest: None,
            },
            many => ReqBody::Prefixed {
                prefix: Some(many.concat().into()),
                rest: None,
            },
        })
    }
}

impl From<Incoming> for ReqBody {
    fn from(b: Incoming) -> Self {
        ReqBody::Incoming(b)
    }
}

impl Body for ReqBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        match self.get_mut() {
            ReqBody::Incoming(b) => Pin::new(b).poll_frame(cx).map_err(BoxError::from),
            ReqBody::Boxed(b) => Pin::new(b).poll_frame(cx),
            ReqBody::Buffered(b) => Poll::Ready(
                b.take()
                    .filter(|b| !b.is_empty())
                    .map(|b| Ok(Frame::data(b))),
            ),
            ReqBody::Prefixed { prefix, rest } => {
                if let Some(p) = prefix.take() {
                    return Poll::Ready(Some(Ok(Frame::data(p))));
                }
                match rest {
                    Some(r) => Pin::new(r.as_mut()).poll_frame(cx),
                    None => Poll::Ready(None),
                }
            }
            ReqBody::Empty => Poll::Ready(None),
            ReqBody::Counted { inner, seen } => {
                let p = Pin::new(inner.as_mut()).poll_frame(cx);
                match &p {
                    Poll::Ready(Some(Ok(f))) => {
                        if let Some(d) = f.data_ref() {
                            seen.fetch_add(d.len() as u64, Ordering::Relaxed);
                        }
                    }
                    Poll::Ready(Some(Err(_))) => {
                        seen.fetch_or(CLIENT_BODY_FAILED, Ordering::Relaxed);
                    }
                    _ => {}
                }
                p
            }
            ReqBody::Held { inner, hold } => {
                let p = Pin::new(inner.as_mut()).poll_frame(cx);
                match &p {
                    Poll::Ready(Some(Ok(f))) => {
                        if let Some(d) = f.data_ref() {
                            hold.frame(d);
                        }
                        // HTTP/2 ends the stream with the last frame and never
                        // polls past it.
                        if inner.is_end_stream() {
                            hold.end();
                        }
                    }
                    Poll::Ready(None) => hold.end(),
                    _ => {}
                }
                p
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            ReqBody::Incoming(b) => b.is_end_stream(),
            ReqBody::Boxed(b) => b.is_end_stream(),
            ReqBody::Buffered(b) => b.as_ref().is_none_or(|b| b.is_empty()),
            ReqBody::Prefixed { prefix, rest } => {
                prefix.is_none() && rest.as_ref().is_none_or(|r| r.is_end_stream())
            }
            ReqBody::Empty => true,
            ReqBody::Counted { inner, .. } | ReqBody::Held { inner, .. } => inner.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            ReqBody::Incoming(b) => b.size_hint(),
            ReqBody::Boxed(b) => b.size_hint(),
            ReqBody::Buffered(b) => SizeHint::with_exact(b.as_ref().map_or(0, |b| b.len() as u64)),
            ReqBody::Prefixed { prefix, rest } => {
                let p = prefix.as_ref().map_or(0, |p| p.len() as u64);
                match rest {
                    None => SizeHint::with_exact(p),
                    Some(r) => {
                        let h = r.size_hint();
                        let mut s = SizeHint::new();
                        s.set_lower(h.lower() + p);
                        if let Some(u) = h.upper() {
                            s.set_upper(u + p);
                        }
                        s
                    }
                }
            }
            ReqBody::Empty => SizeHint::with_exact(0),
            ReqBody::Counted { inner, .. } | ReqBody::Held { inner, .. } => inner.size_hint(),
        }
    }
}

/// Set in a counted body's byte count when the client's body failed (a hang-up
/// mid-upload, an HTTP/2 stream reset); the other bits are the bytes that passed.
pub const CLIENT_BODY_FAILED: u64 = 1 << 63;

impl ReqBody {
    /// Keep what passes, up to `limit` bytes, for sending again.
    pub fn held(self, limit: usize) -> (ReqBody, Hold) {
        if self.is_end_stream() {
            // Nothing will be polled: the head is the whole request.
            return (self, Hold(Kept::Nothing { last: None }));
        }
        let hold = Hold(Kept::Shared(Arc::new(Mutex::new(HoldState {
            kept: Vec::new(),
            size: 0,
            limit,
            overflow: false,
            ended: false,
            last: None,
        }))));
        let body = ReqBody::Held {
            inner: Box::new(self),
            hold: hold.clone(),
        };
        (body, hold)
    }

    /// Count the bytes that really pass (a declared `content-length` is a promise
    /// a client can break by hanging up), with a flag set when the client's body
    /// fails, so that a broken upload is told apart from an upstream failure.
    pub fn counted(self) -> (ReqBody, Option<Arc<AtomicU64>>) {
        if self.is_end_stream() {
            return (self, None);
        }
        let seen = Arc::new(AtomicU64::new(0));
        let body = ReqBody::Counted {
            inner: Box::new(self),
            seen: seen.clone(),
        };
        (body, Some(seen))
    }
}
