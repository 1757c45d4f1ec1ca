//! `rate_limit`: token buckets that behave like the providers' own limiters.
//!
//! A drill of a rate-limit storm only proves something if clients meet the limiter
//! they will meet in production: OpenAI and Anthropic both refill continuously
//! (a 60 RPM limit frees one request a second, not 60 at the top of each minute),
//! charge a request's tokens up front from the prompt size plus `max_tokens`, and
//! tell the client how long to wait. SDKs and hand-written backoff loops read
//! those hints (`retry-after`, `x-ratelimit-reset-*`), so every number this module
//! hands out is true to the bucket: a client that waits `retry_after` fits.
//!
//! The arithmetic is integer fixed point (one token is 60·10⁹ units, and a bucket
//! of limit L gains L units a nanosecond), so refill is exact, never drifts, and
//! tests under paused time can assert exact values.
//!
//! One [`RateLimiter`] is shared by every request that a rule matches; the caller
//! picks the bucket key from the fault's `by:` (`""` for `global`, the client IP,
//! or a header's value). This module opens no sockets and reads no clock: the
//! caller passes `now`.
//!
//! ```
//! use brownout_faults::ratelimit::{Decision, RateLimiter};
//! use tokio::time::Instant;
//!
//! let limiter = RateLimiter::new(Some(60), Some(10_000));
//! let now = Instant::now();
//! match limiter.check("", 500, now) {
//!     Decision::Allowed(snap) => assert_eq!(snap.requests.unwrap().remaining, 59),
//!     Decision::Limited(_) => unreachable!("a fresh bucket is full"),
//! }
//! ```

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use http::header::{HeaderName, HeaderValue};
use http::HeaderMap;
use serde::Serialize;
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;
use tokio::time::Instant;

use crate::api::RequestFacts;
use crate::presets::go_duration;

/// Nanoseconds in the refill window: a bucket goes from empty to full in a minute.
const WINDOW_NS: u128 = 60_000_000_000;

/// How many bucket keys a limiter keeps by default, so that `by: client_ip` under
/// a flood of distinct clients cannot grow memory without bound.
pub const DEFAULT_MAX_KEYS: usize = 100_000;

/// The organisation named in OpenAI-style messages.
const OPENAI_ORG: &str = "org-brownout";

/// Which bucket ran short.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Resource {
    /// Requests per minute (RPM).
    Requests,
    /// Tokens per minute (TPM).
    Tokens,
}

impl Resource {
    /// The OpenAI preset whose body and `type` match this bucket
    /// (`openai.rate_limit_requests` or `openai.rate_limit_tokens`), for callers
    /// rendering an OpenAI-family rejection.
    pub fn openai_preset(self) -> &'static str {
        match self {
            Resource::Requests => "openai.rate_limit_requests",
            Resource::Tokens => "openai.rate_limit_tokens",
        }
    }

    /// The error `type` OpenAI sends for this bucket (`requests` or `tokens`).
    pub fn as_str(self) -> &'static str {
        match self {
            Resource::Requests => "requests",
            Resource::Tokens => "tokens",
        }
    }
}

/// One bucket's state, as the rate-limit headers report it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BucketState {
    /// Capacity: the per-minute limit.
    pub limit: u64,
    /// Whole units left now (after this request's charge when it was allowed).
    pub remaining: u64,
    /// Time until the bucket is full again, rounded up to the millisecond (the
    /// headers' precision), so a client never sees a reset that comes too early.
    pub reset: Duration,
}

/// Both buckets of one key at the moment of a decision. A bucket whose limit
/// the fault does not set is `None`, and its headers are not sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Snapshot {
    pub requests: Option<BucketState>,
    pub tokens: Option<BucketState>,
}

/// A rejected request: which bucket, how long to wait, and the state to report.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limited {
    /// The bucket with the longer wait (requests when the waits tie); with
    /// `never_fits`, the bucket that is too small.
    pub which: Resource,
    /// Time until this request would fit in both buckets, rounded up to the
    /// millisecond so a client waiting exactly this long fits. Zero with
    /// `never_fits`: no wait helps, so send no retry hint.
    pub retry_after: Duration,
    /// The request asks for more than the bucket's capacity (tokens above the
    /// TPM limit, or a limit of 0): it can never fit. OpenAI answers this with a
    /// 429 "Request too large ... on tokens per min (TPM)" that its SDK retries
    /// anyway; [`openai_error_body`] writes that message, and brownout keeps the
    /// 429 rather than a 400 so that clients see what the real service sends.
    pub never_fits: bool,
    /// How much of `which` the request asked for (1 for requests).
    pub requested: u64,
    /// Neither bucket was charged; these are the values to report.
    pub snapshot: Snapshot,
}

/// The outcome of [`RateLimiter::check`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// Both buckets had room and were charged; the snapshot is after the charge.
    Allowed(Snapshot),
    /// At least one bucket was short; nothing was charged.
    Limited(Limited),
}

impl Decision {
    /// The bucket state to report in headers, whichever way the decision went.
    pub fn snapshot(&self) -> &Snapshot {
        match self {
            Decision::Allowed(s) => s,
            Decision::Limited(l) => &l.snapshot,
        }
    }
}

/// Both buckets of one key. Levels are in units of 1/`WINDOW_NS` token (see the
/// module docs), refilled together from `last`.
#[derive(Debug, Clone, Copy)]
struct Buckets {
    last: Instant,
    requests: u128,
    tokens: u128,
}

/// Token buckets shared by every request a rule matches.
///
/// Holds one pair of buckets per key. A key idle for a full window has full
/// buckets, exactly like a key never seen, so such keys are dropped at no cost
/// to accuracy: once a minute, and whenever the map reaches `max_keys`. Should
/// the map be full of keys active within the last minute, the least recently
/// seen eighth is dropped (those clients get full buckets again: the limiter errs
/// towards letting requests through rather than growing without bound).
#[derive(Debug)]
pub struct RateLimiter {
    requests_per_minute: Option<u64>,
    tokens_per_minute: Option<u64>,
    max_keys: usize,
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    keys: HashMap<String, Buckets>,
    last_sweep: Option<Instant>,
}

impl RateLimiter {
    /// A limiter with the given per-minute limits; `None` leaves that dimension
    /// unlimited. A limit of 0 rejects everything (`never_fits`).
    pub fn new(requests_per_minute: Option<u64>, tokens_per_minute: Option<u64>) -> Self {
        Self {
            requests_per_minute,
            tokens_per_minute,
            max_keys: DEFAULT_MAX_KEYS,
            state: Mutex::new(State::default()),
        }
    }

    /// Bound the number of tracked keys (default [`DEFAULT_MAX_KEYS`]; at least 1).
    pub fn with_max_keys(mut self, max_keys: usize) -> Self {
        self.max_keys = max_keys.max(1);
        self
    }

    pub fn requests_per_minute(&self) -> Option<u64> {
        self.requests_per_minute
    }

    pub fn tokens_per_minute(&self) -> Option<u64> {
        self.tokens_per_minute
    }

    /// Keys tracked now (for tests and status pages).
    pub fn key_count(&self) -> usize {
        self.lock().keys.len()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // The critical sections never panic mid-update, so a poisoned lock
        // still guards consistent state.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Charge one request and `tokens` tokens to `key`'s buckets if both have
    /// room, otherwise charge nothing and say how long to wait.
    ///
    /// `tokens` is what providers charge up front: the prompt estimate plus
    /// `max_tokens` (see [`tokens_to_charge`]). It is ignored without a
    /// `tokens_per_minute`. `now` should be taken as late as possible; an
    /// earlier `now` than a previous call's (a race between tasks) counts as no
    /// time passed.
    pub fn check(&self, key: &str, tokens: u64, now: Instant) -> Decision {
        let rpm = self.requests_per_minute;
        let tpm = self.tokens_per_minute;
        if rpm.is_none() && tpm.is_none() {
            return Decision::Allowed(Snapshot::default());
        }
        let mut state = self.lock();
        self.sweep(&mut state, now);
        let max_keys = self.max_keys;
        if !state.keys.contains_key(key) && state.keys.len() >= max_keys {
            evict_oldest(&mut state.keys, now, max_keys);
        }
        if !state.keys.contains_key(key) {
            let fresh = Buckets {
                last: now,
                requests: full(rpm),
                tokens: full(tpm),
            };
            state.keys.insert(key.to_owned(), fresh);
        }
        let Some(b) = state.keys.get_mut(key) else {
            // Just inserted under the same lock; cannot happen.
            return Decision::Allowed(Snapshot::default());
        };
        let elapsed = now.saturating_duration_since(b.last).as_nanos();
        if elapsed > 0 {
            b.requests = refill(b.requests, rpm, elapsed);
            b.tokens = refill(b.tokens, tpm, elapsed);
            b.last = now;
        }

        let snapshot = |b: &Buckets| Snapshot {
            requests: rpm.map(|l| state_of(b.requests, l)),
            tokens: tpm.map(|l| state_of(b.tokens, l)),
        };
        // Too big for the bucket: no wait helps.
        let never = match (rpm, tpm) {
            (Some(0), _) => Some((Resource::Requests, 1)),
            (_, Some(l)) if tokens > l => Some((Resource::Tokens, tokens)),
            _ => None,
        };
        if let Some((which, requested)) = never {
            return Decision::Limited(Limited {
                which,
                retry_after: Duration::ZERO,
                never_fits: true,
                requested,
                snapshot: snapshot(b),
            });
        }
        let wait_requests = rpm.map_or(0, |l| wait_ns(b.requests, l, 1));
        let wait_tokens = tpm.map_or(0, |l| wait_ns(b.tokens, l, tokens));
        if wait_requests == 0 && wait_tokens == 0 {
            if rpm.is_some() {
                b.requests -= WINDOW_NS;
            }
            if tpm.is_some() {
                b.tokens -= u128::from(tokens) * WINDOW_NS;
            }
            return Decision::Allowed(snapshot(b));
        }
        let (which, wait, requested) = if wait_requests >= wait_tokens {
            (Resource::Requests, wait_requests, 1)
        } else {
            (Resource::Tokens, wait_tokens, tokens)
        };
        Decision::Limited(Limited {
            which,
            retry_after: ceil_ms(wait),
            never_fits: false,
            requested,
            snapshot: snapshot(b),
        })
    }

    /// Drop keys idle for a full window, at most once a window: their buckets
    /// are full, so forgetting them changes nothing.
    fn sweep(&self, state: &mut State, now: Instant) {
        let due = match state.last_sweep {
            None => {
                state.last_sweep = Some(now);
                false
            }
            Some(t) => now.saturating_duration_since(t).as_nanos() >= WINDOW_NS,
        };
        if due {
            state.last_sweep = Some(now);
            state.keys.retain(|_, b| !idle(b, now));
        }
    }
}

/// Make room for one more key in a full map: drop idle keys, and if none were
/// idle, the least recently seen eighth (so the O(n) pass is paid once per
/// n/8 new keys, not on every request).
fn evict_oldest(keys: &mut HashMap<String, Buckets>, now: Instant, max_keys: usize) {
    keys.retain(|_, b| !idle(b, now));
    if keys.len() < max_keys {
        return;
    }
    let mut seen: Vec<Instant> = keys.values().map(|b| b.last).collect();
    let drop = (keys.len() / 8).max(1);
    let (_, cutoff, _) = seen.select_nth_unstable(drop - 1);
    let cutoff = *cutoff;
    let mut dropped = 0;
    keys.retain(|_, b| {
        if dropped < drop && b.last <= cutoff {
            dropped += 1;
            false
        } else {
            true
        }
    });
}

fn idle(b: &Buckets, now: Instant) -> bool {
    now.saturating_duration_since(b.last).as_nanos() >= WINDOW_NS
}

fn full(limit: Option<u64>) -> u128 {
    limit.map_or(0, |l| u128::from(l) * WINDOW_NS)
}

fn refill(level: u128, limit: Option<u64>, elapsed_ns: u128) -> u128 {
    match limit {
        None => 0,
        Some(l) => {
            let cap = u128::from(l) * WINDOW_NS;
            // Past one window the bucket is full whatever its level: cap the
            // product so it cannot overflow.
            (level + elapsed_ns.min(WINDOW_NS) * u128::from(l)).min(cap)
        }
    }
}

/// Nanoseconds until `cost` whole units fit (0: they fit now). `limit` > 0 and
/// `cost` ≤ `limit` (checked by the caller).
fn wait_ns(level: u128, limit: u64, cost: u64) -> u128 {
    let need = u128::from(cost) * WINDOW_NS;
    if level >= need || limit == 0 {
        return 0;
    }
    (need - level).div_ceil(u128::from(limit))
}

fn state_of(level: u128, limit: u64) -> BucketState {
    let cap = u128::from(limit) * WINDOW_NS;
    let reset = if limit == 0 {
        0
    } else {
        (cap - level.min(cap)).div_ceil(u128::from(limit))
    };
    BucketState {
        limit,
        remaining: u64::try_from(level / WINDOW_NS).unwrap_or(u64::MAX),
        reset: ceil_ms(reset),
    }
}

fn ceil_ms(ns: u128) -> Duration {
    let ms = ns.div_ceil(1_000_000);
    Duration::from_millis(u64::try_from(ms).unwrap_or(u64::MAX))
}

/// What a request costs the token bucket, the way providers charge before any
/// output exists: the prompt estimate plus `max_tokens` (0 when the request sets
/// none, since the output cannot be known in advance).
pub fn tokens_to_charge(facts: &RequestFacts) -> u64 {
    facts
        .prompt_tokens
        .unwrap_or(0)
        .saturating_add(facts.max_tokens.unwrap_or(0))
}

// ---------------------------------------------------------------------------
// Headers
// ---------------------------------------------------------------------------

/// Every OpenAI rate-limit header name, so a caller can drop a preset's
/// placeholder values before adding the bucket's true ones.
pub const OPENAI_HEADER_NAMES: [&str; 6] = [
    "x-ratelimit-limit-requests",
    "x-ratelimit-limit-tokens",
    "x-ratelimit-remaining-requests",
    "x-ratelimit-remaining-tokens",
    "x-ratelimit-reset-requests",
    "x-ratelimit-reset-tokens",
];

/// Every Anthropic rate-limit header name (limit, remaining and reset for
/// requests, tokens, input tokens and output tokens).
pub const ANTHROPIC_HEADER_NAMES: [&str; 12] = [
    "anthropic-ratelimit-requests-limit",
    "anthropic-ratelimit-requests-remaining",
    "anthropic-ratelimit-requests-reset",
    "anthropic-ratelimit-tokens-limit",
    "anthropic-ratelimit-tokens-remaining",
    "anthropic-ratelimit-tokens-reset",
    "anthropic-ratelimit-input-tokens-limit",
    "anthropic-ratelimit-input-tokens-remaining",
    "anthropic-ratelimit-input-tokens-reset",
    "anthropic-ratelimit-output-tokens-limit",
    "anthropic-ratelimit-output-tokens-remaining",
    "anthropic-ratelimit-output-tokens-reset",
];

/// OpenAI's `x-ratelimit-*` headers for a snapshot; resets as Go durations
/// ("1s", "6m0s", "12ms"), as OpenAI writes them. Only configured buckets appear.
pub fn openai_headers(s: &Snapshot) -> Vec<(&'static str, String)> {
    let mut out = Vec::with_capacity(6);
    if let Some(r) = s.requests {
        out.push(("x-ratelimit-limit-requests", r.limit.to_string()));
        out.push(("x-ratelimit-remaining-requests", r.remaining.to_string()));
        out.push(("x-ratelimit-reset-requests", go_duration(r.reset)));
    }
    if let Some(t) = s.tokens {
        out.push(("x-ratelimit-limit-tokens", t.limit.to_string()));
        out.push(("x-ratelimit-remaining-tokens", t.remaining.to_string()));
        out.push(("x-ratelimit-reset-tokens", go_duration(t.reset)));
    }
    out
}

/// Anthropic's `anthropic-ratelimit-*` headers for a snapshot, resets as RFC
/// 3339 times (`now_utc` + reset, rounded up to the second, the precision
/// Anthropic sends).
///
/// brownout has one token bucket for input and output together, so the
/// `input-tokens-*` and `output-tokens-*` headers repeat the `tokens-*` values:
/// that bucket is the binding limit for both, which is what a client reading
/// either header needs to know. Only configured buckets appear.
pub fn anthropic_headers(s: &Snapshot, now_utc: OffsetDateTime) -> Vec<(&'static str, String)> {
    let reset_at = |d: Duration| -> String {
        let t = now_utc + d;
        let whole = t.replace_nanosecond(0).unwrap_or(t);
        let t = if whole < t {
            whole + Duration::from_secs(1)
        } else {
            whole
        };
        t.format(&Rfc3339).unwrap_or_default()
    };
    let mut out = Vec::with_capacity(12);
    if let Some(r) = s.requests {
        out.push(("anthropic-ratelimit-requests-limit", r.limit.to_string()));
        out.push((
            "anthropic-ratelimit-requests-remaining",
            r.remaining.to_string(),
        ));
        out.push(("anthropic-ratelimit-requests-reset", reset_at(r.reset)));
    }
    if let Some(t) = s.tokens {
        let reset = reset_at(t.reset);
        for [limit, remaining, reset_name] in [
            [
                "anthropic-ratelimit-tokens-limit",
                "anthropic-ratelimit-tokens-remaining",
                "anthropic-ratelimit-tokens-reset",
            ],
            [
                "anthropic-ratelimit-input-tokens-limit",
                "anthropic-ratelimit-input-tokens-remaining",
                "anthropic-ratelimit-input-tokens-reset",
            ],
            [
                "anthropic-ratelimit-output-tokens-limit",
                "anthropic-ratelimit-output-tokens-remaining",
                "anthropic-ratelimit-output-tokens-reset",
            ],
        ] {
            out.push((limit, t.limit.to_string()));
            out.push((remaining, t.remaining.to_string()));
            out.push((reset_name, reset.clone()));
        }
    }
    out
}

/// Replace a family's rate-limit headers in `map`: remove every name in
/// `family` (a preset's placeholder values, or the upstream's own), then insert
/// `fresh`. With [`OPENAI_HEADER_NAMES`] and [`openai_headers`], or the
/// Anthropic pair.
pub fn replace_headers(map: &mut HeaderMap, family: &[&str], fresh: &[(&'static str, String)]) {
    for name in family {
        map.remove(*name);
    }
    for (name, value) in fresh {
        if let (Ok(n), Ok(v)) = (
            HeaderName::from_bytes(name.as_bytes()),
            HeaderValue::from_str(value),
        ) {
            map.insert(n, v);
        }
    }
}

// ---------------------------------------------------------------------------
// Bodies
// ---------------------------------------------------------------------------

#[derive(Serialize)]
struct OpenaiError<'a> {
    message: String,
    #[serde(rename = "type")]
    kind: &'a str,
    param: Option<()>,
    code: &'a str,
}

#[derive(Serialize)]
struct OpenaiEnvelope<'a> {
    error: OpenaiError<'a>,
}

/// OpenAI's 429 body for this rejection, with the bucket's true numbers (the
/// presets' bodies carry fixed example numbers): "Rate limit reached for
/// gpt-4o in organization org-brownout on tokens per min (TPM): Limit 30000,
/// Used 29937, Requested 385. Please try again in 644ms. ...", or for
/// `never_fits`, "Request too large for gpt-4o ... Limit 30000, Requested
/// 50000. The input or output tokens must be reduced in order to run
/// successfully. ...". `type` is `requests` or `tokens`, `code`
/// `rate_limit_exceeded`, as OpenAI sends. With no model known (a request body
/// over `inspect_limit` or not JSON) the message names none: "Rate limit reached
/// in organization ...".
pub fn openai_error_body(l: &Limited, model: Option<&str>) -> String {
    let model = model.map_or_else(String::new, |m| format!(" for {m}"));
    let (unit, state) = match l.which {
        Resource::Requests => ("requests per min (RPM)", l.snapshot.requests),
        Resource::Tokens => ("tokens per min (TPM)", l.snapshot.tokens),
    };
    let limit = state.map_or(0, |s| s.limit);
    let used = state.map_or(0, |s| s.limit.saturating_sub(s.remaining));
    let message = if l.never_fits {
        format!(
            "Request too large{model} in organization {OPENAI_ORG} on {unit}: Limit {limit}, \
             Requested {}. The input or output tokens must be reduced in order to run \
             successfully. Visit https://platform.openai.com/account/rate-limits to learn more.",
            l.requested
        )
    } else {
        format!(
            "Rate limit reached{model} in organization {OPENAI_ORG} on {unit}: Limit {limit}, \
             Used {used}, Requested {}. Please try again in {}. Visit \
             https://platform.openai.com/account/rate-limits to learn more.",
            l.requested,
            go_duration(l.retry_after)
        )
    };
    let body = OpenaiEnvelope {
        error: OpenaiError {
            message,
            kind: l.which.as_str(),
            param: None,
            code: "rate_limit_exceeded",
        },
    };
    serde_json::to_string(&body).unwrap_or_default()
}

#[derive(Serialize)]
struct AnthropicError {
    #[serde(rename = "type")]
    kind: &'static str,
    message: String,
}

#[derive(Serialize)]
struct AnthropicEnvelope<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    error: AnthropicError,
    request_id: &'a str,
}

/// Anthropic's 429 `rate_limit_error` body for this rejection, naming the
/// bucket's true limit; `request_id` should equal the `request-id` header
/// (`Preset::render` puts one there).
pub fn anthropic_error_body(l: &Limited, request_id: &str) -> String {
    let (limit, unit) = match l.which {
        Resource::Requests => (l.snapshot.requests.map_or(0, |s| s.limit), "requests"),
        Resource::Tokens => (l.snapshot.tokens.map_or(0, |s| s.limit), "tokens"),
    };
    let message = format!(
        "This request would exceed the rate limit for your organization of {limit} {unit} per \
         minute. For details, refer to: https://docs.anthropic.com/en/api/rate-limits. You can \
         see the response headers for current usage. Please reduce the prompt length or the \
         maximum tokens requested, or try again later."
    );
    let body = AnthropicEnvelope {
        kind: "error",
        error: AnthropicError {
            kind: "rate_limit_error",
            message,
        },
        request_id,
    };
    serde_json::to_string(&body).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fixed_point_arithmetic() {
        // 60/min: one unit a second.
        assert_eq!(wait_ns(0, 60, 1), 1_000_000_000);
        assert_eq!(wait_ns(WINDOW_NS, 60, 1), 0);
        // A third of a unit short at 90/min: 1/3 unit = 20e9 units / 90 per ns.
        assert_eq!(wait_ns(WINDOW_NS * 2 / 3, 90, 1), 222_222_223);
        assert_eq!(refill(0, Some(60), 500_000_000), WINDOW_NS / 2);
        assert_eq!(refill(0, Some(60), u128::MAX / 2), 60 * WINDOW_NS);
        assert_eq!(ceil_ms(1), Duration::from_millis(1));
        assert_eq!(ceil_ms(1_000_000), Duration::from_millis(1));
        let s = state_of(WINDOW_NS * 59 + 1, 60);
        assert_eq!(s.remaining, 59);
        assert_eq!(s.reset, Duration::from_secs(1));
    }
}
