//! When requests are sent: open-loop Poisson arrivals.
//!
//! Arrival times are fixed before anything is sent, independent of how fast the
//! server answers; this is what lets latency be measured from the scheduled send
//! time without coordinated omission.

use std::time::Duration;

use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, Exp};

/// An endless, seeded sequence of Poisson arrival offsets from the drill's start
/// (exponential gaps with mean `1 / rate`).
#[derive(Debug, Clone)]
pub struct PoissonArrivals {
    rng: ChaCha8Rng,
    gaps: Exp<f64>,
    at: f64,
}

impl PoissonArrivals {
    /// Arrivals at `rate_per_sec` on average, from `seed`. `None` when the rate is
    /// not positive and finite.
    pub fn new(rate_per_sec: f64, seed: u64) -> Option<Self> {
        if !(rate_per_sec.is_finite() && rate_per_sec > 0.0) {
            return None;
        }
        let gaps = Exp::new(rate_per_sec).ok()?;
        Some(Self {
            rng: ChaCha8Rng::seed_from_u64(seed),
            gaps,
            at: 0.0,
        })
    }
}

impl Iterator for PoissonArrivals {
    type Item = Duration;

    fn next(&mut self) -> Option<Duration> {
        self.at += self.gaps.sample(&mut self.rng);
        Some(Duration::from_secs_f64(self.at))
    }
}

/// Every arrival offset before `until`: the whole schedule of a drill, as a pure
/// function of (rate, seed, duration).
pub fn poisson_schedule(rate_per_sec: f64, seed: u64, until: Duration) -> Vec<Duration> {
    match PoissonArrivals::new(rate_per_sec, seed) {
        Some(arrivals) => arrivals.take_while(|t| *t < until).collect(),
        None => Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deterministic_under_a_seed() {
        let a = poisson_schedule(50.0, 42, Duration::from_secs(10));
        assert_eq!(a, poisson_schedule(50.0, 42, Duration::from_secs(10)));
        assert_ne!(a, poisson_schedule(50.0, 43, Duration::from_secs(10)));
        assert!(a.windows(2).all(|w| w[0] <= w[1]));
        assert!(a.iter().all(|t| *t < Duration::from_secs(10)));
    }

    #[test]
    fn mean_rate_within_five_percent() {
        for (rate, seed) in [(20.0, 1), (500.0, 2), (3.5, 3)] {
            let arrivals: Vec<Duration> = PoissonArrivals::new(rate, seed)
                .unwrap()
                .take(10_000)
                .collect();
            let observed = 10_000.0 / arrivals[9_999].as_secs_f64();
            let err = (observed - rate).abs() / rate;
            assert!(err < 0.05, "rate {rate}: observed {observed}");
        }
    }

    #[test]
    fn rejects_bad_rates() {
        assert!(PoissonArrivals::new(0.0, 1).is_none());
        assert!(PoissonArrivals::new(-1.0, 1).is_none());
        assert!(PoissonArrivals::new(f64::NAN, 1).is_none());
        assert!(PoissonArrivals::new(f64::INFINITY, 1).is_none());
    }
}
