//! Count schedules (docs/profiles.md, "Schedules"): "fail the first N, then succeed".
//!
//! A rule with a `schedule` fires by count instead of by a random draw. What is
//! counted is the rule's matching requests (`per: rule`) or one call's attempts
//! (`per: call`). Both counters are lock-free: `per: rule` is one packed atomic
//! (the count and a tag of the phase it counts in, so that entering the phase again
//! starts over), `per: call` a fixed table of packed atomic slots, one per call
//! being counted. They live in the compiled rule, so applying a profile (start-up,
//! reload, `PUT`) starts every schedule over, as it starts the phase clock over.
//!
//! A call's attempt number comes from
//! - `x-stainless-retry-count` when the request has one: the client's own count
//!   (the official OpenAI and Anthropic SDKs and the drill send it), exact under any
//!   concurrency and needing no state. `0` is a new call, even one that repeats a
//!   call given up on a moment ago;
//! - otherwise the table: attempts with the same call identity (`x-brownout-seq`
//!   when the request has one, else a fingerprint of method, path, body and client),
//!   the latest at most [`CALL_WINDOW`] ago, are one call's attempts, the way a
//!   report tells a retry made as a fresh call from a new call (docs/records.md
//!   `fingerprint`): curl in a loop, `requests`, clients without the header. For
//!   `first`, an attempt the schedule lets through ends the call, so a later
//!   identical request is a new call and starts at attempt 1 again.

use std::hash::{Hash, Hasher};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::time::Instant;

use crate::profile::{Schedule, SchedulePer};

/// How long after its latest attempt a call counted by identity is forgotten: a
/// request with the same identity after that is a new call (the window reports
/// use to count fresh-call retries, docs/records.md).
pub const CALL_WINDOW: Duration = Duration::from_secs(60);

/// Calls a `per: call` rule tracks at once by identity; a call whose slot is taken
/// by another starts its count over. 32 KiB per such rule.
const CALL_SLOTS: usize = 4096;

/// What tells one call's attempts apart from other calls', as far as the request says.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CallId {
    /// `x-brownout-seq`: the drill's number for the call, the same on each attempt.
    pub seq: Option<u64>,
    /// `x-stainless-retry-count`: 0 on a call's first attempt, 1 on its first retry.
    pub retry: Option<u32>,
    /// A hash of the request ([`fingerprint`]), when a `per: call` rule may need it
    /// and the request has neither `x-brownout-seq` nor a retry count.
    pub fingerprint: Option<u64>,
}

impl CallId {
    /// The decision ordinal `x-brownout-seq` pins: (seq, the attempt's retry count),
    /// so that a retry of a faulted call gets a fresh draw, as it would from a real
    /// provider ([`crate::decide::attempt_ordinal`]).
    pub fn ordinal(&self) -> Option<u64> {
        self.seq
            .map(|s| crate::decide::attempt_ordinal(s, self.retry.unwrap_or(0)))
    }

    /// The identity attempts are counted under when the retry count does not say.
    fn key(&self) -> Option<u64> {
        match (self.seq, self.fingerprint) {
            (Some(seq), _) => Some(mix(seq ^ 0x5345_515f_4b45_5900)),
            (None, Some(fp)) => Some(mix(fp)),
            (None, None) => None,
        }
    }
}

/// A hash of one request for telling calls apart: method, path (with the query),
/// the body as far as it was read, and the client (its API key or authorization
/// header, else its address). The same request sent again by the same client has
/// the same fingerprint. Kept in memory only, never recorded.
pub fn fingerprint(
    method: &str,
    path_and_query: &str,
    body: Option<&[u8]>,
    client: Option<&[u8]>,
) -> u64 {
    let mut h = std::hash::DefaultHasher::new();
    method.hash(&mut h);
    path_and_query.hash(&mut h);
    body.hash(&mut h);
    client.hash(&mut h);
    h.finish()
}

/// The splitmix64 finalizer: spreads a key over all 64 bits.
fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

// `per: rule`: the phase tag in the top 24 bits, the count below.
const COUNT_BITS: u32 = 40;
const COUNT_MAX: u64 = (1 << COUNT_BITS) - 1;

// `per: call` slots: tag (24 bits) | last attempt, seconds since the table was
// made (24 bits, wrapping) | attempts counted (16 bits, never 0 in a used slot).
const SLOT_TAG_SHIFT: u32 = 40;
const SLOT_TIME_SHIFT: u32 = 16;
const SLOT_TIME_MASK: u64 = (1 << 24) - 1;
const SLOT_COUNT_MAX: u64 = (1 << 16) - 1;

/// A rule's schedule with its counters.
#[derive(Debug)]
pub struct Scheduler {
    schedule: Schedule,
    /// `per: rule`: `phase tag << 40 | requests counted`.
    count: AtomicU64,
    /// `per: call`: one packed slot per call counted by identity.
    calls: Box<[AtomicU64]>,
    /// The origin of the slots' clock.
    born: Instant,
}

impl Scheduler {
    pub fn new(schedule: Schedule, now: Instant) -> Self {
        let calls = match schedule.per {
            SchedulePer::Rule => Box::default(),
            SchedulePer::Call => (0..CALL_SLOTS).map(|_| AtomicU64::new(0)).collect(),
        };
        Scheduler {
            schedule,
            count: AtomicU64::new(0),
            calls,
            born: now,
        }
    }

    pub fn schedule(&self) -> &Schedule {
        &self.schedule
    }

    /// Whether the rule fires for this matching request. `phase_epoch` names the
    /// current run of the rule's phase (0 for top-level rules): when it changes,
    /// `per: rule` counting starts over.
    pub fn turn(&self, call: &CallId, phase_epoch: u64, now: Instant) -> bool {
        match self.schedule.per {
            SchedulePer::Rule => self.rule_turn(phase_epoch),
            SchedulePer::Call => self.call_turn(call, phase_epoch, now),
        }
    }

    fn rule_turn(&self, phase_epoch: u64) -> bool {
        let tag = if phase_epoch == 0 {
            0
        } else {
            mix(phase_epoch) >> COUNT_BITS
        };
        let mut cur = self.count.load(Ordering::Acquire);
        loop {
            let k = if cur >> COUNT_BITS == tag {
                cur & COUNT_MAX
            } else {
                0
            };
            if self.schedule.first.is_some_and(|n| k >= n) {
                // `first: N` is spent in this run: nothing left to count.
                return false;
            }
            let next = (tag << COUNT_BITS) | (k + 1).min(COUNT_MAX);
            match self
                .count
                .compare_exchange_weak(cur, next, Ordering::AcqRel, Ordering::Acquire)
            {
                Ok(_) => return self.schedule.fires(k),
                Err(seen) => cur = seen,
            }
        }
    }

    fn call_turn(&self, call: &CallId, phase_epoch: u64, now: Instant) -> bool {
        if let Some(retry) = call.retry {
            // The client numbers its attempts itself.
            return self.schedule.fires(u64::from(retry));
        }
        let Some(key) = call.key().map(|k| mix(k ^ phase_epoch)) else {
            // Nothing to count by: a first attempt.
            return self.schedule.fires(0);
        };
        let slot = &self.calls[(key as usize) % self.calls.len()];
        let tag = key >> SLOT_TAG_SHIFT;
        let secs = now.saturating_duration_since(self.born).as_secs() & SLOT_TIME_MASK;
        let mut cur = slot.load(Ordering::Acquire);
        loop {
            let counted = if cur != 0 && cur >> SLOT_TAG_SHIFT == tag {
                let last = (cur >> SLOT_TIME_SHIFT) & SLOT_TIME_MASK;
                let age = secs.wrapping_sub(last) & SLOT_TIME_MASK;
                if age <= CALL_WINDOW.as_secs() {
                    cur & SLOT_COUNT_MAX
                } else {
                    0
                }
            } else {
                0
            };
            let k = counted;
            let fires = self.schedule.fires(k);
            let next = if !fires && self.schedule.first.is_some() {
                // Let through: this call is done.
                0
            } else {
                (tag << SLOT_TAG_SHIFT) | (secs << SLOT_TIME_SHIFT) | (k + 1).min(SLOT_COUNT_MAX)
            };
            match slot.compare_exchange_weak(cur, next, Ordering::AcqRel, Ordering::Acquire) {
                Ok(_) => return fires,
                Err(seen) => cur = seen,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn first(n: u64, per: SchedulePer) -> Scheduler {
        Scheduler::new(
            Schedule {
                first: Some(n),
                every: None,
                per,
            },
            Instant::now(),
        )
    }

    fn every(n: u64, per: SchedulePer) -> Scheduler {
        Scheduler::new(
            Schedule {
                first: None,
                every: Some(n),
                per,
            },
            Instant::now(),
        )
    }

    fn fired(s: &Scheduler, calls: &[CallId], epoch: u64) -> Vec<bool> {
        calls
            .iter()
            .map(|c| s.turn(c, epoch, Instant::now()))
            .collect()
    }

    #[test]
    fn first_n_per_rule_fires_for_the_first_n_matching_requests_only() {
        let s = first(2, SchedulePer::Rule);
        let got = fired(&s, &[CallId::default(); 6], 0);
        assert_eq!(got, [true, true, false, false, false, false]);
    }

    #[test]
    fn every_n_per_rule_fires_for_each_nth() {
        let s = every(3, SchedulePer::Rule);
        let got = fired(&s, &[CallId::default(); 30], 0);
        let at: Vec<usize> = got
            .iter()
            .enumerate()
            .filter(|(_, f)| **f)
            .map(|(i, _)| i + 1)
            .collect();
        assert_eq!(at, [3, 6, 9, 12, 15, 18, 21, 24, 27, 30]);
        let one = every(1, SchedulePer::Rule);
        assert!(fired(&one, &[CallId::default(); 5], 0).iter().all(|f| *f));
    }

    #[test]
    fn per_rule_counting_starts_over_when_the_phase_is_entered_again() {
        let s = first(1, SchedulePer::Rule);
        assert_eq!(fired(&s, &[CallId::default(); 3], 17), [true, false, false]);
        // `ctl phase` jumped back into the phase: a new run of it.
        assert_eq!(fired(&s, &[CallId::default(); 2], 99), [true, false]);
        assert_eq!(fired(&s, &[CallId::default(); 1], 99), [false]);
    }

    #[test]
    fn concurrent_requests_share_the_count_exactly() {
        let s = std::sync::Arc::new(every(4, SchedulePer::Rule));
        let hits: usize = (0..8)
            .map(|_| {
                let s = s.clone();
                std::thread::spawn(move || {
                    (0..1000)
                        .filter(|_| s.turn(&CallId::default(), 0, Instant::now()))
                        .count()
                })
            })
            .collect::<Vec<_>>()
            .into_iter()
            .map(|t| t.join().unwrap())
            .sum();
        assert_eq!(hits, 2000, "every 4th of 8000 requests");
    }

    fn sdk(retry: u32) -> CallId {
        CallId {
            retry: Some(retry),
            fingerprint: Some(fingerprint(
                "POST",
                "/v1/chat/completions",
                Some(b"{}"),
                None,
            )),
            ..Default::default()
        }
    }

    #[test]
    fn per_call_follows_the_sdks_retry_count() {
        let s = first(2, SchedulePer::Call);
        // Five sequential calls with the same body, three attempts each: the
        // first two fail, the third gets through, every time.
        for _ in 0..5 {
            assert_eq!(fired(&s, &[sdk(0), sdk(1), sdk(2)], 0), [true, true, false]);
        }
        // A call that gives up after one retry, then the same call again: the
        // client says it is a new call, so it fails twice again.
        for _ in 0..3 {
            assert_eq!(fired(&s, &[sdk(0), sdk(1)], 0), [true, true]);
        }
        // Nothing to tell calls apart by: each is a first attempt.
        let bare = CallId::default();
        assert_eq!(fired(&s, &[bare, bare], 0), [true, true]);
    }

    #[test]
    fn per_call_counts_fresh_call_retries_by_fingerprint() {
        let s = first(2, SchedulePer::Call);
        let a = CallId {
            fingerprint: Some(fingerprint(
                "POST",
                "/v1/chat/completions",
                Some(b"a"),
                None,
            )),
            ..Default::default()
        };
        let b = CallId {
            fingerprint: Some(fingerprint(
                "POST",
                "/v1/chat/completions",
                Some(b"b"),
                None,
            )),
            ..Default::default()
        };
        // A client that retries with fresh requests and no retry count.
        assert_eq!(
            fired(&s, &[a, b, a, b, a, b], 0),
            [true, true, true, true, false, false]
        );
        // Let through: the next identical request is a new call.
        assert_eq!(fired(&s, &[a, a, a], 0), [true, true, false]);
    }

    #[test]
    fn per_call_counts_by_seq_before_the_fingerprint() {
        let s = first(1, SchedulePer::Call);
        let call = |seq| CallId {
            seq: Some(seq),
            fingerprint: None,
            retry: None,
        };
        assert_eq!(
            fired(&s, &[call(1), call(2), call(1), call(2), call(3)], 0),
            [true, true, false, false, true]
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_call_is_forgotten_after_the_window() {
        let s = first(2, SchedulePer::Call);
        let a = CallId {
            fingerprint: Some(7),
            ..Default::default()
        };
        assert!(s.turn(&a, 0, Instant::now()), "attempt 1");
        tokio::time::advance(CALL_WINDOW + Duration::from_secs(1)).await;
        assert!(
            s.turn(&a, 0, Instant::now()),
            "over a minute later it is a new call: attempt 1 again"
        );
        tokio::time::advance(CALL_WINDOW - Duration::from_secs(1)).await;
        assert!(
            s.turn(&a, 0, Instant::now()),
            "within the window: attempt 2"
        );
        tokio::time::advance(Duration::from_secs(30)).await;
        assert!(!s.turn(&a, 0, Instant::now()), "attempt 3 is let through");
        assert!(
            s.turn(&a, 0, Instant::now()),
            "which ended the call: the same request again is a new call"
        );
    }

    #[test]
    fn every_n_per_call_fires_on_each_calls_nth_attempt() {
        let s = every(2, SchedulePer::Call);
        assert_eq!(
            fired(&s, &[sdk(0), sdk(1), sdk(2), sdk(3)], 0),
            [false, true, false, true]
        );
    }

    #[test]
    fn retry_ordinals_are_fresh_and_first_attempts_unchanged() {
        let c = |retry| CallId {
            seq: Some(41),
            retry,
            fingerprint: None,
        };
        assert_eq!(c(None).ordinal(), Some(41));
        assert_eq!(c(Some(0)).ordinal(), Some(41));
        let r1 = c(Some(1)).ordinal().unwrap();
        let r2 = c(Some(2)).ordinal().unwrap();
        assert!(r1 != 41 && r2 != 41 && r1 != r2);
        assert!(r1 < 1 << 60 && r2 < 1 << 60);
        assert_eq!(CallId::default().ordinal(), None);
    }
}
