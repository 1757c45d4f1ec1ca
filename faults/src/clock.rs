//! The phase clock (docs/profiles.md, "Phases and the phase clock").
//!
//! Phases are a timeline measured from an origin: the moment the profile was applied,
//! or `start_at` so that many sidecars agree. The origin is an atomic offset so the
//! hot path reads the current phase without a lock, and the admin API can jump
//! phases by moving the origin.

use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use tokio::time::Instant;

/// Where the clock stands at some instant.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PhaseAt {
    /// Index of the current phase; `None` before `start_at` or when there are no phases.
    pub index: Option<usize>,
    /// Time since the current phase began.
    pub in_phase: Duration,
    /// Fraction of the current phase elapsed, clamped to [0, 1] (1 for the last phase
    /// once its duration has passed: it stays active).
    pub fraction: f64,
    /// When the current phase began, in nanoseconds from the clock's base: it names
    /// this run of the phase (a jump back into it starts another run).
    pub start_ns: i128,
}

/// A timeline of phase durations with a movable origin.
#[derive(Debug)]
pub struct PhaseClock {
    base: Instant,
    /// Origin as signed nanoseconds from `base` (negative when `start_at` is in the past).
    origin_ns: AtomicI64,
    durations: Vec<Duration>,
    /// The phase held (index + 1; 0 when the clock runs): `brownout capacity` probes
    /// one phase's faults for as long as a search takes, at their final ramp value.
    held: AtomicI64,
    /// When the held run of the phase began (nanoseconds from `base`): it names the
    /// run, so schedules count afresh from each hold.
    held_start_ns: AtomicI64,
}

impl PhaseClock {
    /// A clock whose first phase begins `offset` from `now` (negative: already running).
    pub fn new(durations: Vec<Duration>, now: Instant, offset_ns: i64) -> Self {
        PhaseClock {
            base: now,
            origin_ns: AtomicI64::new(offset_ns),
            durations,
            held: AtomicI64::new(0),
            held_start_ns: AtomicI64::new(0),
        }
    }

    pub fn phase_count(&self) -> usize {
        self.durations.len()
    }

    /// Start of phase `index` relative to the origin.
    pub fn phase_start(&self, index: usize) -> Duration {
        self.durations.iter().take(index).sum()
    }

    /// Where the clock stands at `now`.
    pub fn at(&self, now: Instant) -> PhaseAt {
        let none = PhaseAt {
            index: None,
            in_phase: Duration::ZERO,
            fraction: 0.0,
            start_ns: 0,
        };
        if self.durations.is_empty() {
            return none;
        }
        if let Some(i) = self.held() {
            // A held phase stands at its end: every ramp at its `to` value.
            return PhaseAt {
                index: Some(i),
                in_phase: self.durations[i],
                fraction: 1.0,
                start_ns: i128::from(self.held_start_ns.load(Ordering::Acquire)),
            };
        }
        let since_base = now.saturating_duration_since(self.base).as_nanos() as i128;
        let origin = i128::from(self.origin_ns.load(Ordering::Relaxed));
        let t = since_base - origin;
        if t < 0 {
            return none;
        }
        let mut t = Duration::from_nanos(t.min(u64::MAX as i128) as u64);
        let mut start_ns = origin;
        let last = self.durations.len() - 1;
        for (i, d) in self.durations.iter().enumerate() {
            if t < *d || i == last {
                let fraction = if d.is_zero() {
                    1.0
                } else {
                    (t.as_secs_f64() / d.as_secs_f64()).min(1.0)
                };
                return PhaseAt {
                    index: Some(i),
                    in_phase: t,
                    fraction,
                    start_ns,
                };
            }
            t -= *d;
            start_ns += d.as_nanos() as i128;
        }
        none
    }

    /// The phase held by [`PhaseClock::hold`], if any.
    pub fn held(&self) -> Option<usize> {
        let h = self.held.load(Ordering::Acquire);
        (h > 0)
            .then(|| (h - 1) as usize)
            .filter(|i| *i < self.durations.len())
    }

    /// Stop the clock in phase `index` from `now` on, with its ramps at their `to`
    /// value, until [`PhaseClock::release`] or [`PhaseClock::jump_to`]. Each hold is a
    /// new run of the phase (its schedules start over).
    pub fn hold(&self, index: usize, now: Instant) {
        if self.durations.is_empty() {
            return;
        }
        let index = index.min(self.durations.len() - 1);
        let since_base = now.saturating_duration_since(self.base).as_nanos();
        self.held_start_ns
            .store(since_base.min(i64::MAX as u128) as i64, Ordering::Release);
        self.held.store(index as i64 + 1, Ordering::Release);
    }

    /// Let a held clock run again, from the start of the phase it held.
    pub fn release(&self, now: Instant) {
        if let Some(i) = self.held() {
            self.jump_to(i, now);
        }
    }

    /// Move the origin so that phase `index` begins at `now` (releasing any hold).
    pub fn jump_to(&self, index: usize, now: Instant) {
        self.held.store(0, Ordering::Release);
        let start = self.phase_start(index.min(self.durations.len().saturating_sub(1)));
        let since_base = now.saturating_duration_since(self.base).as_nanos() as i128;
        let origin = since_base - start.as_nanos() as i128;
        self.origin_ns.store(
            origin.clamp(i64::MIN as i128, i64::MAX as i128) as i64,
            Ordering::Relaxed,
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[tokio::test(start_paused = true)]
    async fn phases_advance_and_last_stays() {
        let now = Instant::now();
        let c = PhaseClock::new(vec![ms(100), ms(200), ms(50)], now, 0);
        assert_eq!(c.at(now).index, Some(0));
        tokio::time::advance(ms(150)).await;
        let at = c.at(Instant::now());
        assert_eq!(at.index, Some(1));
        assert_eq!(at.in_phase, ms(50));
        assert!((at.fraction - 0.25).abs() < 1e-9);
        assert_eq!(at.start_ns, ms(100).as_nanos() as i128);
        tokio::time::advance(ms(10_000)).await;
        let at = c.at(Instant::now());
        assert_eq!(at.index, Some(2));
        assert_eq!(at.fraction, 1.0);
    }

    #[tokio::test(start_paused = true)]
    async fn start_in_future_and_jump() {
        let now = Instant::now();
        let c = PhaseClock::new(vec![ms(100), ms(100)], now, ms(500).as_nanos() as i64);
        assert_eq!(c.at(now).index, None);
        tokio::time::advance(ms(550)).await;
        assert_eq!(c.at(Instant::now()).index, Some(0));
        c.jump_to(1, Instant::now());
        let at = c.at(Instant::now());
        assert_eq!(at.index, Some(1));
        assert_eq!(at.in_phase, Duration::ZERO);
        // Each run of a phase has its own start: schedules count per run.
        tokio::time::advance(ms(20)).await;
        assert_eq!(c.at(Instant::now()).start_ns, at.start_ns);
        c.jump_to(1, Instant::now());
        let again = c.at(Instant::now());
        assert_eq!(again.index, Some(1));
        assert_eq!(again.start_ns - at.start_ns, ms(20).as_nanos() as i128);
    }

    #[tokio::test(start_paused = true)]
    async fn a_held_phase_stays_at_its_end_until_released() {
        let now = Instant::now();
        let c = PhaseClock::new(vec![ms(100), ms(200), ms(50)], now, 0);
        tokio::time::advance(ms(20)).await;
        c.hold(1, Instant::now());
        let first = c.at(Instant::now());
        assert_eq!((first.index, first.fraction), (Some(1), 1.0));
        assert_eq!(c.held(), Some(1));
        // Time passes; the phase does not.
        tokio::time::advance(ms(10_000)).await;
        let later = c.at(Instant::now());
        assert_eq!((later.index, later.fraction), (Some(1), 1.0));
        assert_eq!(later.start_ns, first.start_ns);
        // A second hold is a new run (schedules count afresh).
        c.hold(1, Instant::now());
        assert_ne!(c.at(Instant::now()).start_ns, first.start_ns);
        // Released, the phase runs again from its start.
        c.release(Instant::now());
        assert_eq!(c.held(), None);
        let run = c.at(Instant::now());
        assert_eq!((run.index, run.in_phase), (Some(1), Duration::ZERO));
        tokio::time::advance(ms(200)).await;
        assert_eq!(c.at(Instant::now()).index, Some(2));
        // A jump releases too; out-of-range holds clamp to the last phase.
        c.hold(9, Instant::now());
        assert_eq!(c.held(), Some(2));
        c.jump_to(0, Instant::now());
        assert_eq!(c.held(), None);
        assert_eq!(c.at(Instant::now()).index, Some(0));
    }

    #[tokio::test(start_paused = true)]
    async fn past_start_is_already_running() {
        let now = Instant::now();
        let c = PhaseClock::new(vec![ms(100), ms(100)], now, -(ms(150).as_nanos() as i64));
        let at = c.at(now);
        assert_eq!(at.index, Some(1));
        assert_eq!(at.in_phase, ms(50));
    }
}
