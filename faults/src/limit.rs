//! `concurrency_limit`: cap in-flight requests, queue up to N, reject the rest.
//!
//! Waiting in the queue is a hold like any other, so the kill switch lets queued
//! requests through at once (they proceed without a slot).

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::release::Release;

/// Why a request did not get a slot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rejected {
    /// All slots busy and the queue full (or no queue).
    QueueFull,
    /// Waited `queue_timeout` without a slot.
    QueueTimeout,
}

/// The outcome of asking for a slot.
#[derive(Debug)]
pub enum Admission {
    /// Holds a slot until dropped.
    Admitted(OwnedSemaphorePermit),
    /// Released by the kill switch while queued (or faults already off): go on unharmed.
    Released,
    Rejected(Rejected),
}

/// Shared by every request a rule matches; survives hot reloads while the rule is unchanged.
#[derive(Debug)]
pub struct ConcurrencyLimiter {
    slots: Arc<Semaphore>,
    queue: u32,
    queued: AtomicU32,
    queue_timeout: Option<Duration>,
}

struct QueueSlot<'a>(&'a AtomicU32);
impl Drop for QueueSlot<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

impl ConcurrencyLimiter {
    pub fn new(max: u32, queue: u32, queue_timeout: Option<Duration>) -> Self {
        ConcurrencyLimiter {
            slots: Arc::new(Semaphore::new(max.max(1) as usize)),
            queue,
            queued: AtomicU32::new(0),
            queue_timeout,
        }
    }

    /// Requests waiting for a slot now.
    pub fn queued(&self) -> u32 {
        self.queued.load(Ordering::Acquire)
    }

    /// Take a slot, wait in the queue, or be rejected.
    pub async fn acquire(&self, release: &Release) -> Admission {
        if let Ok(p) = self.slots.clone().try_acquire_owned() {
            return Admission::Admitted(p);
        }
        // Join the queue if there is room.
        let joined = self
            .queued
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |q| {
                (q < self.queue).then_some(q + 1)
            })
            .is_ok();
        if !joined {
            return Admission::Rejected(Rejected::QueueFull);
        }
        let _slot = QueueSlot(&self.queued);
        let wait = async {
            match self.queue_timeout {
                Some(t) => tokio::time::timeout(t, self.slots.clone().acquire_owned())
                    .await
                    .ok(),
                None => Some(self.slots.clone().acquire_owned().await),
            }
        };
        match release.or_released(wait).await {
            None => Admission::Released,
            Some(None) => Admission::Rejected(Rejected::QueueTimeout),
            Some(Some(Ok(p))) => Admission::Admitted(p),
            // The semaphore is never closed; treat it as released rather than fail.
            Some(Some(Err(_))) => Admission::Released,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use tokio::time::Instant;

    #[tokio::test(start_paused = true)]
    async fn caps_queues_and_rejects() {
        let l = Arc::new(ConcurrencyLimiter::new(2, 1, None));
        let r = Arc::new(Release::default());
        let a = l.acquire(&r).await;
        let b = l.acquire(&r).await;
        assert!(matches!(a, Admission::Admitted(_)));
        assert!(matches!(b, Admission::Admitted(_)));
        // Third waits in the queue; fourth is rejected.
        let (l2, r2) = (l.clone(), r.clone());
        let waiter = tokio::spawn(async move {
            let t0 = Instant::now();
            let adm = l2.acquire(&r2).await;
            (matches!(adm, Admission::Admitted(_)), t0.elapsed())
        });
        tokio::time::sleep(Duration::from_millis(5)).await;
        assert_eq!(l.queued(), 1);
        assert!(matches!(
            l.acquire(&r).await,
            Admission::Rejected(Rejected::QueueFull)
        ));
        tokio::time::sleep(Duration::from_millis(95)).await;
        drop(a);
        let (admitted, waited) = waiter.await.unwrap();
        assert!(admitted);
        assert_eq!(waited, Duration::from_millis(100));
        assert_eq!(l.queued(), 0);
        drop(b);
    }

    #[tokio::test(start_paused = true)]
    async fn queue_timeout_rejects() {
        let l = ConcurrencyLimiter::new(1, 5, Some(Duration::from_millis(300)));
        let r = Release::default();
        let _held = l.acquire(&r).await;
        let t0 = Instant::now();
        assert!(matches!(
            l.acquire(&r).await,
            Admission::Rejected(Rejected::QueueTimeout)
        ));
        assert_eq!(t0.elapsed(), Duration::from_millis(300));
        assert_eq!(l.queued(), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn kill_switch_lets_the_queue_through() {
        let l = Arc::new(ConcurrencyLimiter::new(1, 10, None));
        let r = Arc::new(Release::default());
        let _held = l.acquire(&r).await;
        let mut waiters = Vec::new();
        for _ in 0..5 {
            let (l, r) = (l.clone(), r.clone());
            waiters.push(tokio::spawn(async move {
                matches!(l.acquire(&r).await, Admission::Released)
            }));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert_eq!(l.queued(), 5);
        r.turn_off();
        for w in waiters {
            assert!(w.await.unwrap());
        }
        assert_eq!(l.queued(), 0);
    }
}
