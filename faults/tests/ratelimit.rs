//! The `rate_limit` token buckets under paused time: exact refill, charging,
//! waits and reported values, key independence, bounded memory, and many tasks.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use brownout_faults::api::RequestFacts;
use brownout_faults::ratelimit::{
    anthropic_error_body, anthropic_headers, openai_error_body, openai_headers, replace_headers,
    tokens_to_charge, BucketState, Decision, Limited, RateLimiter, Resource, Snapshot,
    ANTHROPIC_HEADER_NAMES, OPENAI_HEADER_NAMES,
};
use serde_json::Value;
use time::macros::datetime;
use tokio::time::{advance, Instant};

const MS: Duration = Duration::from_millis(1);
const SEC: Duration = Duration::from_secs(1);

fn allowed(d: Decision) -> Snapshot {
    match d {
        Decision::Allowed(s) => s,
        Decision::Limited(l) => panic!("expected allowed, got {l:?}"),
    }
}

fn limited(d: Decision) -> Limited {
    match d {
        Decision::Limited(l) => l,
        Decision::Allowed(s) => panic!("expected limited, got {s:?}"),
    }
}

#[tokio::test(start_paused = true)]
async fn sixty_rpm_frees_one_request_a_second() {
    let rl = RateLimiter::new(Some(60), None);
    let t0 = Instant::now();
    for i in 0..60 {
        let s = allowed(rl.check("k", 0, t0));
        let r = s.requests.unwrap();
        assert_eq!(r.limit, 60);
        assert_eq!(r.remaining, 59 - i);
        // i+1 requests spent: full again after i+1 seconds.
        assert_eq!(r.reset, SEC * (i as u32 + 1));
        assert_eq!(s.tokens, None);
    }
    let l = limited(rl.check("k", 0, t0));
    assert_eq!(l.which, Resource::Requests);
    assert_eq!(l.retry_after, SEC);
    assert!(!l.never_fits);
    assert_eq!(l.requested, 1);
    assert_eq!(
        l.snapshot.requests,
        Some(BucketState {
            limit: 60,
            remaining: 0,
            reset: SEC * 60
        })
    );

    // Continuous refill: 999ms later still short by exactly 1ms.
    advance(SEC - MS).await;
    let l = limited(rl.check("k", 0, Instant::now()));
    assert_eq!(l.retry_after, MS);
    advance(MS).await;
    let s = allowed(rl.check("k", 0, Instant::now()));
    assert_eq!(s.requests.unwrap().remaining, 0);
    assert!(matches!(
        rl.check("k", 0, Instant::now()),
        Decision::Limited(_)
    ));

    // Waiting what retry_after says is always enough.
    for _ in 0..20 {
        let l = limited(rl.check("k", 0, Instant::now()));
        advance(l.retry_after).await;
        allowed(rl.check("k", 0, Instant::now()));
    }

    // After a full window the bucket is full, not fuller.
    advance(Duration::from_secs(600)).await;
    let s = allowed(rl.check("k", 0, Instant::now()));
    assert_eq!(s.requests.unwrap().remaining, 59);
}

#[tokio::test(start_paused = true)]
async fn tokens_are_charged_up_front() {
    let rl = RateLimiter::new(None, Some(6000)); // 100 tokens a second
    let t0 = Instant::now();
    let s = allowed(rl.check("k", 4000, t0));
    let t = s.tokens.unwrap();
    assert_eq!((t.limit, t.remaining), (6000, 2000));
    assert_eq!(t.reset, Duration::from_secs(40));
    assert_eq!(s.requests, None);

    // 2500 needs 500 more: 5 s at 100/s.
    let l = limited(rl.check("k", 2500, t0));
    assert_eq!(l.which, Resource::Tokens);
    assert_eq!(l.requested, 2500);
    assert_eq!(l.retry_after, Duration::from_secs(5));
    assert_eq!(
        l.snapshot.tokens.unwrap().remaining,
        2000,
        "nothing charged"
    );
    // A smaller request still fits.
    let s = allowed(rl.check("k", 2000, t0));
    assert_eq!(s.tokens.unwrap().remaining, 0);

    // Partial refill: 1.5 s → 150 tokens.
    advance(Duration::from_millis(1500)).await;
    let l = limited(rl.check("k", 151, Instant::now()));
    assert_eq!(l.snapshot.tokens.unwrap().remaining, 150);
    assert_eq!(l.retry_after, Duration::from_millis(10));
    allowed(rl.check("k", 150, Instant::now()));
}

#[tokio::test(start_paused = true)]
async fn both_buckets_must_have_room() {
    let rl = RateLimiter::new(Some(2), Some(1000));
    let t0 = Instant::now();
    allowed(rl.check("k", 900, t0));
    // Requests have room (1 left), tokens do not (100 left, 200 asked).
    let l = limited(rl.check("k", 200, t0));
    assert_eq!(l.which, Resource::Tokens);
    // 100 tokens at 1000/60 per second = 6 s.
    assert_eq!(l.retry_after, Duration::from_secs(6));
    let r = l.snapshot.requests.unwrap();
    assert_eq!(r.remaining, 1, "the request bucket was not charged");
    assert_eq!(r.reset, Duration::from_secs(30));
    // Fits in tokens: charged in both.
    let s = allowed(rl.check("k", 100, t0));
    assert_eq!(s.requests.unwrap().remaining, 0);
    assert_eq!(s.tokens.unwrap().remaining, 0);
    // Both short: the longer wait wins (requests: 30 s; tokens: 6 s for 100).
    let l = limited(rl.check("k", 100, t0));
    assert_eq!(l.which, Resource::Requests);
    assert_eq!(l.retry_after, Duration::from_secs(30));
    // ... and tokens when theirs is longer (600 tokens: 36 s).
    let l = limited(rl.check("k", 600, t0));
    assert_eq!(l.which, Resource::Tokens);
    assert_eq!(l.retry_after, Duration::from_secs(36));
    advance(Duration::from_secs(36)).await;
    allowed(rl.check("k", 600, Instant::now()));
}

#[tokio::test(start_paused = true)]
async fn fractional_waits_round_up_to_the_millisecond() {
    // 7 rpm: one request every 8.571428...s.
    let rl = RateLimiter::new(Some(7), None);
    let t0 = Instant::now();
    for _ in 0..7 {
        allowed(rl.check("k", 0, t0));
    }
    let l = limited(rl.check("k", 0, t0));
    assert_eq!(l.retry_after, Duration::from_millis(8572));
    assert_eq!(l.snapshot.requests.unwrap().reset, Duration::from_secs(60));
    advance(l.retry_after).await;
    allowed(rl.check("k", 0, Instant::now()));
}

#[tokio::test(start_paused = true)]
async fn keys_are_independent() {
    let rl = RateLimiter::new(Some(1), None);
    let t0 = Instant::now();
    allowed(rl.check("alice", 0, t0));
    limited(rl.check("alice", 0, t0));
    allowed(rl.check("bob", 0, t0));
    allowed(rl.check("", 0, t0));
    limited(rl.check("bob", 0, t0));
    assert_eq!(rl.key_count(), 3);
}

#[tokio::test(start_paused = true)]
async fn requests_larger_than_the_bucket_never_fit() {
    let rl = RateLimiter::new(Some(100), Some(1000));
    let t0 = Instant::now();
    let l = limited(rl.check("k", 1001, t0));
    assert!(l.never_fits);
    assert_eq!(l.which, Resource::Tokens);
    assert_eq!(l.requested, 1001);
    assert_eq!(l.retry_after, Duration::ZERO);
    assert_eq!(l.snapshot.tokens.unwrap().remaining, 1000);
    assert_eq!(l.snapshot.requests.unwrap().remaining, 100, "not charged");
    // Exactly the capacity fits.
    allowed(rl.check("k", 1000, t0));

    let zero = RateLimiter::new(Some(0), None);
    let l = limited(zero.check("k", 0, t0));
    assert!(l.never_fits);
    assert_eq!(l.which, Resource::Requests);
}

#[tokio::test(start_paused = true)]
async fn no_limits_allow_everything_and_track_nothing() {
    let rl = RateLimiter::new(None, None);
    for i in 0..100 {
        let s = allowed(rl.check(&i.to_string(), u64::MAX, Instant::now()));
        assert_eq!(s, Snapshot::default());
    }
    assert_eq!(rl.key_count(), 0);
    // Huge token counts do not overflow.
    let rl = RateLimiter::new(None, Some(u64::MAX));
    allowed(rl.check("k", u64::MAX, Instant::now()));
    limited(rl.check("k", 1, Instant::now()));
}

#[tokio::test(start_paused = true)]
async fn memory_is_bounded_under_many_keys() {
    let rl = RateLimiter::new(Some(10), None).with_max_keys(1000);
    for i in 0..10_000 {
        rl.check(&format!("client-{i}"), 0, Instant::now());
        assert!(rl.key_count() <= 1000);
    }
    // The most recent keys keep their state.
    limited_after_ten(&rl, "client-9999");

    // Keys idle for a full window are dropped by the periodic sweep: their
    // buckets would be full anyway.
    advance(Duration::from_secs(61)).await;
    rl.check("fresh", 0, Instant::now());
    assert_eq!(rl.key_count(), 1);
}

fn limited_after_ten(rl: &RateLimiter, key: &str) {
    let now = Instant::now();
    // One already spent by the loop: nine left.
    for _ in 0..9 {
        allowed(rl.check(key, 0, now));
    }
    limited(rl.check(key, 0, now));
}

#[tokio::test(start_paused = true)]
async fn idle_keys_make_room() {
    let rl = RateLimiter::new(Some(1), None).with_max_keys(3);
    let t0 = Instant::now();
    allowed(rl.check("old", 0, t0));
    advance(Duration::from_secs(30)).await;
    allowed(rl.check("a", 0, Instant::now()));
    allowed(rl.check("b", 0, Instant::now()));
    advance(Duration::from_secs(31)).await;
    // "old" is idle (61 s), "a" and "b" are not (31 s): "old" goes.
    allowed(rl.check("c", 0, Instant::now()));
    assert_eq!(rl.key_count(), 3);
    limited(rl.check("a", 0, Instant::now()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_checks_never_overspend() {
    let rl = Arc::new(RateLimiter::new(Some(500), Some(50_000)));
    let now = Instant::now();
    let granted = Arc::new(AtomicU64::new(0));
    let tokens = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::new();
    for t in 0..64u64 {
        let (rl, granted, tokens) = (rl.clone(), granted.clone(), tokens.clone());
        tasks.push(tokio::spawn(async move {
            for i in 0..20u64 {
                let cost = 10 + (t * 7 + i) % 90;
                if let Decision::Allowed(_) = rl.check("shared", cost, now) {
                    granted.fetch_add(1, Ordering::Relaxed);
                    tokens.fetch_add(cost, Ordering::Relaxed);
                }
                tokio::task::yield_now().await;
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let g = granted.load(Ordering::Relaxed);
    let tk = tokens.load(Ordering::Relaxed);
    assert!(
        g <= 500 && tk <= 50_000,
        "granted {g} requests, {tk} tokens"
    );
    // 1280 requests asked ~70k tokens: one bucket must have run dry.
    assert!(g == 500 || tk > 50_000 - 100, "granted {g}, {tk} tokens");
    let s = rl.check("shared", 0, now);
    let snap = s.snapshot();
    assert_eq!(snap.requests.unwrap().remaining, 500 - g);
    assert_eq!(snap.tokens.unwrap().remaining, 50_000 - tk);

    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<RateLimiter>();
}

#[test]
fn charge_is_prompt_plus_max_tokens() {
    let facts = RequestFacts {
        prompt_tokens: Some(120),
        max_tokens: Some(256),
        ..RequestFacts::default()
    };
    assert_eq!(tokens_to_charge(&facts), 376);
    assert_eq!(tokens_to_charge(&RequestFacts::default()), 0);
}

fn snap() -> Snapshot {
    Snapshot {
        requests: Some(BucketState {
            limit: 500,
            remaining: 0,
            reset: Duration::from_millis(120),
        }),
        tokens: Some(BucketState {
            limit: 30_000,
            remaining: 29_615,
            reset: Duration::from_secs(360),
        }),
    }
}

#[test]
fn openai_headers_use_go_durations() {
    let h = openai_headers(&snap());
    let get = |n: &str| h.iter().find(|(k, _)| *k == n).unwrap().1.as_str();
    assert_eq!(h.len(), 6);
    assert_eq!(get("x-ratelimit-limit-requests"), "500");
    assert_eq!(get("x-ratelimit-remaining-requests"), "0");
    assert_eq!(get("x-ratelimit-reset-requests"), "120ms");
    assert_eq!(get("x-ratelimit-limit-tokens"), "30000");
    assert_eq!(get("x-ratelimit-remaining-tokens"), "29615");
    assert_eq!(get("x-ratelimit-reset-tokens"), "6m0s");
    for (k, _) in &h {
        assert!(OPENAI_HEADER_NAMES.contains(k));
    }
    // Unconfigured buckets send no headers.
    let only_rpm = Snapshot {
        tokens: None,
        ..snap()
    };
    assert_eq!(openai_headers(&only_rpm).len(), 3);
}

#[test]
fn anthropic_headers_use_rfc3339_reset_times() {
    let now = datetime!(2026-12-01 10:00:00.250 UTC);
    let h = anthropic_headers(&snap(), now);
    let get = |n: &str| h.iter().find(|(k, _)| *k == n).unwrap().1.as_str();
    assert_eq!(h.len(), 12);
    assert_eq!(get("anthropic-ratelimit-requests-limit"), "500");
    assert_eq!(get("anthropic-ratelimit-requests-remaining"), "0");
    // 10:00:00.370, rounded up to the second.
    assert_eq!(
        get("anthropic-ratelimit-requests-reset"),
        "2026-12-01T10:00:01Z"
    );
    assert_eq!(get("anthropic-ratelimit-tokens-limit"), "30000");
    assert_eq!(get("anthropic-ratelimit-tokens-remaining"), "29615");
    assert_eq!(
        get("anthropic-ratelimit-tokens-reset"),
        "2026-12-01T10:06:01Z"
    );
    assert_eq!(get("anthropic-ratelimit-input-tokens-remaining"), "29615");
    assert_eq!(
        get("anthropic-ratelimit-output-tokens-reset"),
        "2026-12-01T10:06:01Z"
    );
    for (k, _) in &h {
        assert!(ANTHROPIC_HEADER_NAMES.contains(k));
    }
    // A whole-second reset is not rounded further.
    let whole = anthropic_headers(&snap(), datetime!(2026-12-01 10:00:00 UTC));
    assert!(whole.contains(&(
        "anthropic-ratelimit-tokens-reset",
        "2026-12-01T10:06:00Z".to_owned()
    )));
}

#[test]
fn replace_headers_drops_placeholders() {
    let preset = brownout_faults::presets::lookup("openai.rate_limit_tokens").unwrap();
    let mut rendered = preset.render(&Default::default());
    assert_eq!(
        rendered.headers["x-ratelimit-remaining-tokens"], "63",
        "preset placeholder"
    );
    let only_tokens = Snapshot {
        requests: None,
        ..snap()
    };
    replace_headers(
        &mut rendered.headers,
        &OPENAI_HEADER_NAMES,
        &openai_headers(&only_tokens),
    );
    assert_eq!(rendered.headers["x-ratelimit-remaining-tokens"], "29615");
    assert!(!rendered.headers.contains_key("x-ratelimit-limit-requests"));
    assert!(rendered.headers.contains_key("content-type"));
}

#[test]
fn error_bodies_name_the_true_numbers() {
    let l = Limited {
        which: Resource::Tokens,
        retry_after: Duration::from_millis(644),
        never_fits: false,
        requested: 385,
        snapshot: Snapshot {
            requests: None,
            tokens: Some(BucketState {
                limit: 30_000,
                remaining: 63,
                reset: SEC,
            }),
        },
    };
    let v: Value = serde_json::from_str(&openai_error_body(&l, Some("gpt-4o"))).unwrap();
    assert_eq!(v["error"]["type"], "tokens");
    assert_eq!(v["error"]["code"], "rate_limit_exceeded");
    assert_eq!(v["error"]["param"], Value::Null);
    assert_eq!(
        v["error"]["message"],
        "Rate limit reached for gpt-4o in organization org-brownout on tokens per min (TPM): \
         Limit 30000, Used 29937, Requested 385. Please try again in 644ms. Visit \
         https://platform.openai.com/account/rate-limits to learn more."
    );

    let big = Limited {
        never_fits: true,
        requested: 50_000,
        retry_after: Duration::ZERO,
        ..l
    };
    let v: Value = serde_json::from_str(&openai_error_body(&big, Some("a\"b"))).unwrap();
    let msg = v["error"]["message"].as_str().unwrap();
    assert!(
        msg.starts_with("Request too large for a\"b in organization"),
        "{msg}"
    );
    assert!(msg.contains("Limit 30000, Requested 50000."), "{msg}");

    // With no model known, the message names none (never a made-up one).
    let v: Value = serde_json::from_str(&openai_error_body(&l, None)).unwrap();
    assert!(v["error"]["message"].as_str().unwrap().starts_with(
        "Rate limit reached in organization org-brownout on tokens per min (TPM): Limit 30000,"
    ));
    let v: Value = serde_json::from_str(&openai_error_body(&big, None)).unwrap();
    assert!(v["error"]["message"]
        .as_str()
        .unwrap()
        .starts_with("Request too large in organization org-brownout on tokens per min (TPM)"));

    let v: Value = serde_json::from_str(&anthropic_error_body(&l, "req_011Cabc")).unwrap();
    assert_eq!(v["type"], "error");
    assert_eq!(v["error"]["type"], "rate_limit_error");
    assert_eq!(v["request_id"], "req_011Cabc");
    assert!(v["error"]["message"]
        .as_str()
        .unwrap()
        .contains("of 30000 tokens per minute"));
    assert_eq!(
        Resource::Requests.openai_preset(),
        "openai.rate_limit_requests"
    );
    assert!(brownout_faults::presets::lookup(Resource::Tokens.openai_preset()).is_some());
}
