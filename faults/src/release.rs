//! The one release signal every holding fault waits on (docs/admin.md, "The kill switch").
//!
//! Delays, hangs, queues and pacing all park on [`Release::hold`]; the kill switch,
//! `stop_when` and `expires_after` call [`Release::turn_off`], which wakes every
//! parked request at once so it continues unharmed from the upstream. One signal
//! means no fault can forget to honour the kill switch.

use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use tokio::sync::Notify;
use tokio::time::Instant;

/// How a hold ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Held {
    /// The full duration passed: the fault took effect.
    Elapsed,
    /// Faults were turned off while holding (or before): continue unharmed.
    Released,
}

/// Faults on/off plus a wake-everyone signal.
#[derive(Debug)]
pub struct Release {
    enabled: AtomicBool,
    notify: Notify,
}

impl Default for Release {
    fn default() -> Self {
        Self::new(true)
    }
}

impl Release {
    pub fn new(enabled: bool) -> Self {
        Release {
            enabled: AtomicBool::new(enabled),
            notify: Notify::new(),
        }
    }

    /// Whether new faults may be decided at all.
    #[inline]
    pub fn faults_enabled(&self) -> bool {
        self.enabled.load(Ordering::Acquire)
    }

    /// The kill switch: no new faults, and every held request is woken now.
    pub fn turn_off(&self) {
        self.enabled.store(false, Ordering::Release);
        self.notify.notify_waiters();
    }

    /// Resume injecting faults (held requests already released stay released).
    pub fn turn_on(&self) {
        self.enabled.store(true, Ordering::Release);
    }

    /// Hold for `dur` (or until released when `None`).
    pub async fn hold(&self, dur: Option<Duration>) -> Held {
        match dur {
            Some(d) => self.hold_until(Some(Instant::now() + d)).await,
            None => self.hold_until(None).await,
        }
    }

    /// Hold until `deadline` (or until released when `None`).
    pub async fn hold_until(&self, deadline: Option<Instant>) -> Held {
        let notified = self.notify.notified();
        tokio::pin!(notified);
        // Register before checking the flag so a turn_off in between is not missed.
        notified.as_mut().enable();
        if !self.faults_enabled() {
            return Held::Released;
        }
        match deadline {
            Some(deadline) => {
                tokio::select! {
                    _ = tokio::time::sleep_until(deadline) => Held::Elapsed,
                    _ = &mut notified => Held::Released,
                }
            }
            None => {
                notified.await;
                Held::Released
            }
        }
    }

    /// Run `fut` unless released first; `None` when released.
    pub async fn or_released<F: Future>(&self, fut: F) -> Option<F::Output> {
        let notified = self.notify.notified();
        tokio::pin!(notified);
        notified.as_mut().enable();
        if !self.faults_enabled() {
            return None;
        }
        tokio::select! {
            out = fut => Some(out),
            _ = &mut notified => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[tokio::test(start_paused = true)]
    async fn hold_elapses_exactly() {
        let r = Release::default();
        let t0 = Instant::now();
        assert_eq!(
            r.hold(Some(Duration::from_millis(250))).await,
            Held::Elapsed
        );
        assert_eq!(t0.elapsed(), Duration::from_millis(250));
    }

    #[tokio::test(start_paused = true)]
    async fn turn_off_releases_every_holder_at_once() {
        let r = Arc::new(Release::default());
        let mut tasks = Vec::new();
        for i in 0..10 {
            let r = r.clone();
            tasks.push(tokio::spawn(async move {
                let d = if i % 2 == 0 {
                    Some(Duration::from_secs(3600))
                } else {
                    None
                };
                r.hold(d).await
            }));
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
        let t0 = Instant::now();
        r.turn_off();
        for t in tasks {
            assert_eq!(t.await.unwrap(), Held::Released);
        }
        assert!(t0.elapsed() < Duration::from_millis(1));
        // While off, holds return at once.
        assert_eq!(r.hold(Some(Duration::from_secs(5))).await, Held::Released);
        r.turn_on();
        assert!(r.faults_enabled());
    }
}
