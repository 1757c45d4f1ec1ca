//! When each token leaves the simulator, and a body that sends frames on time.
//!
//! The schedule is a pure function so that its arithmetic can be tested without
//! sockets; [`PacedBody`] then waits on `tokio::time`, so tests under paused time
//! run instantly and still see exact timings.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use tokio::time::{Instant, Sleep};

use crate::config::SimConfig;

/// Offsets from the request's arrival at which each of `n` tokens is produced:
/// token 0 at `ttft`, token i at `ttft + i·itl`, each wait scaled by jitter.
///
/// `request_ordinal` picks the jitter stream: with the same seed, the k-th request
/// gets the same timings on every run.
pub fn token_offsets(cfg: &SimConfig, n: u32, request_ordinal: u64) -> Vec<Duration> {
    let mut rng = ChaCha8Rng::seed_from_u64(cfg.seed);
    rng.set_stream(request_ordinal);
    let jitter = if cfg.jitter.is_finite() {
        cfg.jitter.max(0.0)
    } else {
        0.0
    };
    let mut scale = |d: Duration| {
        if jitter == 0.0 {
            d
        } else {
            let f: f64 = rng.random_range(-1.0..=1.0);
            d.mul_f64((1.0 + jitter * f).max(0.0))
        }
    };
    let mut at = scale(cfg.ttft);
    let mut out = Vec::with_capacity(n as usize);
    for i in 0..n {
        if i > 0 {
            at += scale(cfg.itl);
        }
        out.push(at);
    }
    out
}

/// A response body that yields each event as its own frame at its scheduled time.
///
/// Sending frames one by one (rather than a buffered body) is the point: the proxy
/// and the drill measure TTFT and ITL from frame arrival, and stream faults act per
/// frame. Dropping the body (client gone) stops the stream.
pub struct PacedBody {
    start: Instant,
    events: VecDeque<(Duration, Bytes)>,
    sleep: Option<Pin<Box<Sleep>>>,
}

impl PacedBody {
    /// A body whose events are due at the given offsets from `start`, in order.
    pub fn new(start: Instant, events: Vec<(Duration, Bytes)>) -> Self {
        Self {
            start,
            events: events.into(),
            sleep: None,
        }
    }
}

impl Body for PacedBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        let this = &mut *self;
        let Some((offset, _)) = this.events.front() else {
            return Poll::Ready(None);
        };
        let deadline = this.start + *offset;
        if Instant::now() < deadline {
            let sleep = this
                .sleep
                .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(deadline)));
            if sleep.deadline() != deadline {
                sleep.as_mut().reset(deadline);
            }
            if sleep.as_mut().poll(cx).is_pending() {
                return Poll::Pending;
            }
        }
        match this.events.pop_front() {
            Some((_, bytes)) => Poll::Ready(Some(Ok(Frame::data(bytes)))),
            None => Poll::Ready(None),
        }
    }

    fn is_end_stream(&self) -> bool {
        self.events.is_empty()
    }

    fn size_hint(&self) -> SizeHint {
        let len: usize = self.events.iter().map(|(_, b)| b.len()).sum();
        SizeHint::with_exact(len as u64)
    }
}

/// A stream whose content events go out as a simulated GPU produces them: events
/// `first_token..first_token+n` are tokens 1..=n of the model's sequence; the rest
/// go out as soon as the events before them have.
pub(crate) struct GpuPacedBody {
    events: VecDeque<Bytes>,
    next_index: usize,
    first_token: usize,
    tokens: usize,
    seq: brownout_faults::gpu::Sequence,
}

impl GpuPacedBody {
    pub(crate) fn new(
        events: Vec<Bytes>,
        first_token: usize,
        tokens: usize,
        seq: brownout_faults::gpu::Sequence,
    ) -> Self {
        Self {
            events: events.into(),
            next_index: 0,
            first_token,
            tokens,
            seq,
        }
    }
}

impl Body for GpuPacedBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        let this = &mut *self;
        if this.events.is_empty() {
            this.seq.finish();
            return Poll::Ready(None);
        }
        let i = this.next_index;
        if i >= this.first_token && i < this.first_token + this.tokens {
            let k = (i - this.first_token + 1) as u64;
            if this.seq.poll_produced(k, cx).is_pending() {
                return Poll::Pending;
            }
        }
        this.next_index += 1;
        match this.events.pop_front() {
            Some(b) => Poll::Ready(Some(Ok(Frame::data(b)))),
            None => Poll::Ready(None),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schedule_without_jitter_is_exact() {
        let cfg = SimConfig::default();
        let offs = token_offsets(&cfg, 10, 0);
        assert_eq!(offs.len(), 10);
        assert_eq!(offs[0], Duration::from_millis(30));
        assert_eq!(offs[9], Duration::from_millis(120));
        assert!(offs
            .windows(2)
            .all(|w| w[1] - w[0] == Duration::from_millis(10)));
    }

    #[test]
    fn jitter_is_seeded_and_bounded() {
        let cfg = SimConfig {
            jitter: 0.5,
            seed: 7,
            ..SimConfig::default()
        };
        let a = token_offsets(&cfg, 50, 3);
        assert_eq!(a, token_offsets(&cfg, 50, 3));
        assert_ne!(a, token_offsets(&cfg, 50, 4));
        assert!(a[0] >= Duration::from_millis(15) && a[0] <= Duration::from_millis(45));
        for w in a.windows(2) {
            let gap = w[1] - w[0];
            assert!(gap >= Duration::from_millis(5) && gap <= Duration::from_millis(15));
        }
    }
}
