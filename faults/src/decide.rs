//! Seeded, reproducible decisions (docs/profiles.md, "Determinism").
//!
//! Each decision draws from a ChaCha8 stream addressed by (seed, rule, ordinal): the
//! seed is the key, the rule's stable id selects the stream, and the request's ordinal
//! on that rule seeks to a fixed word position. So the decision for the Nth request
//! on a rule does not depend on what other rules or concurrent requests drew, and a
//! drill that sends `x-brownout-seq: N` gets the same decisions at any concurrency.
//! With `x-brownout-seq` the ordinal is (N, the attempt's retry count)
//! ([`attempt_ordinal`]), so that a retry of a faulted call gets a fresh draw, as it
//! would from a real provider, and a drill's retries recover at the rate the
//! probability implies.
//! ChaCha's output is specified, unlike `StdRng`'s, so [`DECISION_VERSION`] only
//! changes when this addressing scheme does.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::profile::Probability;

/// Bumped whenever the same (seed, rule, ordinal) could decide differently.
/// 2: a retried attempt with `x-brownout-seq` has an ordinal of its own.
pub const DECISION_VERSION: u32 = 2;

/// Words reserved per ordinal: room for the probability draw and every fault's samples.
const WORDS_PER_ORDINAL: u128 = 256;

/// Stable 64-bit id of a rule name (FNV-1a), the ChaCha stream selector.
pub fn rule_id(name: &str) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in name.as_bytes() {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

/// The ordinal of attempt `retry` (0: the first) of the request a drill numbered
/// `seq`: `seq` itself for the first attempt, so first attempts decide as before,
/// and a splitmix64 mix of both for a retry, kept below 2^60 so that its word
/// position (ordinal × 256) stays inside the 2^68 words of one ChaCha stream.
pub fn attempt_ordinal(seq: u64, retry: u32) -> u64 {
    if retry == 0 {
        return seq;
    }
    let mut z = seq ^ u64::from(retry).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    (z ^ (z >> 31)) >> 4
}

/// The random stream for one request on one rule.
pub fn rng_for(seed: u64, rule_id: u64, ordinal: u64) -> ChaCha8Rng {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    rng.set_stream(rule_id);
    rng.set_word_pos(u128::from(ordinal) * WORDS_PER_ORDINAL);
    rng
}

impl Probability {
    /// The probability in force at `fraction` of the phase (ramps are linear).
    pub fn at(&self, fraction: f64) -> f64 {
        match *self {
            Probability::Fixed(p) => p,
            Probability::Ramp { from, to } => from + (to - from) * fraction.clamp(0.0, 1.0),
        }
    }
}

/// Decide whether the rule fires for this request; on yes, returns the stream
/// positioned for sampling the rule's faults in order.
pub fn decide(seed: u64, rule_id: u64, ordinal: u64, probability: f64) -> Option<ChaCha8Rng> {
    if probability <= 0.0 {
        return None;
    }
    let mut rng = rng_for(seed, rule_id, ordinal);
    let draw: f64 = rng.random();
    (probability >= 1.0 || draw < probability).then_some(rng)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_inputs_same_decisions() {
        let a: Vec<bool> = (0..1000)
            .map(|i| decide(42, rule_id("r"), i, 0.3).is_some())
            .collect();
        let b: Vec<bool> = (0..1000)
            .map(|i| decide(42, rule_id("r"), i, 0.3).is_some())
            .collect();
        assert_eq!(a, b);
        let c: Vec<bool> = (0..1000)
            .map(|i| decide(43, rule_id("r"), i, 0.3).is_some())
            .collect();
        assert_ne!(a, c, "a different seed must change decisions");
        let d: Vec<bool> = (0..1000)
            .map(|i| decide(42, rule_id("other"), i, 0.3).is_some())
            .collect();
        assert_ne!(a, d, "rules draw from independent streams");
    }

    #[test]
    fn fires_at_the_configured_rate() {
        let n = 20_000;
        let hits = (0..n)
            .filter(|i| decide(7, rule_id("x"), *i, 0.25).is_some())
            .count();
        let rate = hits as f64 / n as f64;
        assert!((rate - 0.25).abs() < 0.015, "rate {rate}");
        assert_eq!(
            (0..100).filter(|i| decide(7, 1, *i, 0.0).is_some()).count(),
            0
        );
        assert_eq!(
            (0..100).filter(|i| decide(7, 1, *i, 1.0).is_some()).count(),
            100
        );
    }

    #[test]
    fn ramp_is_linear_over_the_phase() {
        let p = Probability::Ramp { from: 0.1, to: 0.5 };
        assert!((p.at(0.0) - 0.1).abs() < 1e-12);
        assert!((p.at(0.5) - 0.3).abs() < 1e-12);
        assert!((p.at(1.0) - 0.5).abs() < 1e-12);
        assert!((p.at(7.0) - 0.5).abs() < 1e-12);
        // Early in a ramp few fire, late many do.
        let early = (0..10_000)
            .filter(|i| decide(1, 9, *i, p.at(0.0)).is_some())
            .count();
        let late = (0..10_000)
            .filter(|i| decide(1, 9, *i, p.at(1.0)).is_some())
            .count();
        assert!((900..1100).contains(&early), "early {early}");
        assert!((4800..5200).contains(&late), "late {late}");
    }

    #[test]
    fn retries_draw_afresh_at_the_configured_rate() {
        // A call whose first attempt was faulted at p = 0.5 is faulted again on a
        // retry about half the time, not always.
        let p = 0.5;
        let faulted: Vec<u64> = (0..20_000)
            .filter(|s| decide(3, rule_id("r"), attempt_ordinal(*s, 0), p).is_some())
            .collect();
        let again = faulted
            .iter()
            .filter(|s| decide(3, rule_id("r"), attempt_ordinal(**s, 1), p).is_some())
            .count();
        let rate = again as f64 / faulted.len() as f64;
        assert!((rate - 0.5).abs() < 0.03, "retry faulted again at {rate}");
        assert_eq!(
            attempt_ordinal(12, 0),
            12,
            "first attempts keep their ordinal"
        );
        assert_ne!(attempt_ordinal(12, 1), attempt_ordinal(12, 2));
        assert_eq!(attempt_ordinal(12, 3), attempt_ordinal(12, 3));
    }

    #[test]
    fn rule_id_is_stable() {
        assert_eq!(rule_id(""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(rule_id("a"), 0xaf63_dc4c_8601_ec8c);
    }
}
