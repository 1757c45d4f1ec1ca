//! The continuous-batching replica under paused time: admission, steps, prefill
//! chunks, preemption, overflow, the kill switch, knobs, cold starts, and cost.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use brownout_faults::gpu::{Admit, ColdStart, GpuConfig, Replica, Sequence, StepModel};
use brownout_faults::release::Release;
use brownout_faults::Dist;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use tokio::time::Instant;

/// step(n) = 10 + n ms, no prefill cost unless asked: every time is a whole number
/// of milliseconds, so tests can assert exact instants.
fn cfg(slots: u32) -> GpuConfig {
    let mut c = GpuConfig::preset("h100-80gb", "llama-3.1-8b").expect("preset");
    c.slots = slots;
    c.max_batched_tokens = 8192;
    c.step = StepModel::Fit {
        a_ms: 10.0,
        b_ms: 1.0,
        c_ms: 0.0,
    };
    c.prefill_ms_per_token = 0.0;
    c
}

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

async fn admitted(r: &Arc<Replica>, prompt: u64, max: u64, rel: &Release) -> Sequence {
    match r.admit(prompt, max, rel).await {
        Admit::Admitted(s) => s,
        other => panic!("expected admission, got {other:?}"),
    }
}

#[tokio::test(start_paused = true)]
async fn step_timing_is_exact() {
    let r = Replica::new(cfg(4));
    let rel = Release::default();
    let t0 = Instant::now();
    let s = admitted(&r, 1, 5, &rel).await;
    assert_eq!(s.queue_time(), Duration::ZERO);
    assert_eq!(s.batch_at_admission(), 1);
    for k in 1..=5 {
        s.until_produced(k).await;
        assert_eq!(t0.elapsed(), ms(11 * k), "token {k}");
        assert_eq!(s.produced(), k);
    }
    // The model stops at max_tokens: asking for more resolves at once.
    s.until_produced(6).await;
    assert_eq!(t0.elapsed(), ms(55));
    assert_eq!(r.batch_size(), 0);
}

#[tokio::test(start_paused = true)]
async fn every_step_decodes_one_token_per_running_sequence() {
    let r = Replica::new(cfg(8));
    let rel = Release::default();
    let t0 = Instant::now();
    // Arriving together, they are admitted into the same first step.
    let (a, b, c) = tokio::join!(
        admitted(&r, 1, 100, &rel),
        admitted(&r, 1, 100, &rel),
        admitted(&r, 1, 100, &rel)
    );
    let mut seqs = vec![a, b, c];
    assert_eq!(r.batch_size(), 3);
    assert_eq!(seqs[2].batch_at_admission(), 3);
    // Three running: 13 ms per step; after each step every sequence has one more.
    for step in 1..=10u64 {
        seqs[0].until_produced(step).await;
        assert_eq!(t0.elapsed(), ms(13 * step));
        for s in &seqs {
            assert_eq!(s.produced(), step);
        }
    }
    // One leaves: the step already under way keeps its time, the next is faster.
    drop(seqs.pop());
    seqs[0].until_produced(12).await;
    assert_eq!(t0.elapsed(), ms(130 + 13 + 12));
    assert_eq!(seqs[1].produced(), 12);
}

#[tokio::test(start_paused = true)]
async fn admission_is_fifo_and_a_freed_slot_goes_to_the_oldest() {
    let r = Replica::new(cfg(1));
    let rel = Arc::new(Release::default());
    let order = Arc::new(Mutex::new(Vec::new()));
    let first = admitted(&r, 1, 1000, &rel).await;
    let mut tasks = Vec::new();
    for i in 0..5 {
        let (r, rel, order) = (r.clone(), rel.clone(), order.clone());
        tasks.push(tokio::spawn(async move {
            let s = admitted(&r, 1, 2, &rel).await;
            order.lock().unwrap().push(i);
            s.until_produced(2).await;
            s.queue_time()
        }));
        // Arrive in order.
        tokio::time::sleep(ms(1)).await;
    }
    assert_eq!(r.queue_depth(), 5);
    tokio::time::sleep(ms(100)).await;
    first.finish();
    let mut waited = Vec::new();
    for t in tasks {
        waited.push(t.await.unwrap());
    }
    assert_eq!(*order.lock().unwrap(), [0, 1, 2, 3, 4]);
    assert!(waited.windows(2).all(|w| w[0] < w[1]), "{waited:?}");
}

#[tokio::test(start_paused = true)]
async fn a_burst_of_long_prompts_delays_everyones_first_token() {
    let mut c = cfg(8);
    c.max_batched_tokens = 101;
    c.prefill_ms_per_token = 0.1;
    let r = Replica::new(c);
    let rel = Arc::new(Release::default());
    let t0 = Instant::now();
    // A short request decoding alone: its 10-token prompt takes one step of
    // 10 + 1 + 1 ms, then 11 ms per token.
    let a = admitted(&r, 10, 1000, &rel).await;
    a.until_produced(1).await;
    assert_eq!(t0.elapsed(), ms(12));
    // A burst of three 300-token prompts: 100 prompt tokens per step (the budget
    // less A's decode), first come first served.
    let mut burst = Vec::new();
    for _ in 0..3 {
        let (r, rel) = (r.clone(), rel.clone());
        burst.push(tokio::spawn(async move {
            let t = Instant::now();
            let s = admitted(&r, 300, 10, &rel).await;
            s.until_produced(1).await;
            t.elapsed()
        }));
    }
    tokio::task::yield_now().await;
    let (r2, rel2) = (r.clone(), rel.clone());
    let late = tokio::spawn(async move {
        let t = Instant::now();
        let s = admitted(&r2, 10, 10, &rel2).await;
        s.until_produced(1).await;
        t.elapsed()
    });
    let mut firsts = Vec::new();
    for b in burst {
        firsts.push(b.await.unwrap());
    }
    let late = late.await.unwrap();
    // 900 prompt tokens at 100 per step: the first long prompt needs 3 steps, the
    // last 9; each step costs 10 ms + n ms + 10 ms of prefill.
    assert!(firsts[0] >= ms(3 * 22), "{firsts:?}");
    assert!(firsts[2] >= ms(9 * 22), "{firsts:?}");
    assert!(firsts[0] < firsts[1] && firsts[1] < firsts[2], "{firsts:?}");
    // A short prompt that arrived after the burst waits behind it (at best it
    // shares the burst's last step, taking the budget the last chunk left).
    assert!(late >= firsts[2], "late {late:?} vs {firsts:?}");
    // Meanwhile A kept decoding, one token per (slower) step.
    let at = a.produced();
    assert!(at >= 10, "A produced {at}");
}

#[tokio::test(start_paused = true)]
async fn running_out_of_kv_preempts_the_newest_which_stalls() {
    let mut c = cfg(4);
    // Two sequences of 10-token prompts fit; together they outgrow 40 tokens after
    // about 10 steps.
    c.kv_cache_tokens = 40;
    c.prefill_ms_per_token = 0.1;
    let r = Replica::new(c);
    let rel = Arc::new(Release::default());
    let old = admitted(&r, 10, 30, &rel).await;
    let new = admitted(&r, 10, 30, &rel).await;
    let stamps = Arc::new(Mutex::new(Vec::new()));
    let watcher = {
        let stamps = stamps.clone();
        tokio::spawn(async move {
            for k in 1..=30 {
                new.until_produced(k).await;
                stamps.lock().unwrap().push(Instant::now());
            }
        })
    };
    old.until_produced(30).await;
    assert!(r.preemptions() >= 1, "preemptions {}", r.preemptions());
    watcher.await.unwrap();
    let stamps = stamps.lock().unwrap();
    let gaps: Vec<Duration> = stamps.windows(2).map(|w| w[1] - w[0]).collect();
    let longest = gaps.iter().max().copied().unwrap_or_default();
    // Its stream stalled for longer than a normal step (it waited for the old one to
    // finish, then was prefilled again).
    assert!(longest > ms(50), "gaps {gaps:?}");
}

#[tokio::test(start_paused = true)]
async fn a_full_queue_overflows_at_once() {
    let mut c = cfg(1);
    c.queue = Some(1);
    let r = Replica::new(c);
    let rel = Arc::new(Release::default());
    let _running = admitted(&r, 1, 1000, &rel).await;
    let (r2, rel2) = (r.clone(), rel.clone());
    let queued =
        tokio::spawn(async move { matches!(r2.admit(1, 10, &rel2).await, Admit::Admitted(_)) });
    tokio::task::yield_now().await;
    assert_eq!(r.queue_depth(), 1);
    let t = Instant::now();
    assert!(matches!(r.admit(1, 10, &rel).await, Admit::Overflow));
    assert_eq!(t.elapsed(), Duration::ZERO);
    drop(_running);
    assert!(queued.await.unwrap());
}

#[tokio::test(start_paused = true)]
async fn the_kill_switch_releases_queued_and_running_requests() {
    let r = Replica::new(cfg(1));
    let rel = Arc::new(Release::default());
    let running = admitted(&r, 1, 1_000_000, &rel).await;
    let mut waiters = Vec::new();
    for _ in 0..20 {
        let (r, rel) = (r.clone(), rel.clone());
        waiters.push(tokio::spawn(async move {
            matches!(r.admit(1, 10, &rel).await, Admit::Released)
        }));
    }
    tokio::time::sleep(ms(100)).await;
    assert_eq!(r.queue_depth(), 20);
    let (rel2, r2) = (rel.clone(), r.clone());
    let reader = tokio::spawn(async move {
        let Admit::Admitted(s) = r2.admit(1, 10, &Release::default()).await else {
            return false;
        };
        // Held behind the long-running sequence until released.
        rel2.or_released(s.until_produced(5)).await.is_none()
    });
    tokio::time::sleep(ms(10)).await;
    let t = Instant::now();
    rel.turn_off();
    for w in waiters {
        assert!(w.await.unwrap());
    }
    assert!(t.elapsed() < Duration::from_secs(1));
    assert_eq!(
        r.queue_depth(),
        1,
        "only the reader (on its own release) still waits"
    );
    // The reader's own release signal is still on; `release_all` lets it go.
    r.release_all();
    assert!(!reader.await.unwrap());
    // A released sequence never holds its client again.
    running.release();
    assert!(running.is_released());
    let t = Instant::now();
    running.until_produced(1_000).await;
    assert_eq!(t.elapsed(), Duration::ZERO);
    assert_eq!(r.batch_size(), 0);
    // With faults off, admission does not wait at all.
    assert!(matches!(r.admit(1, 10, &rel).await, Admit::Released));
}

#[tokio::test(start_paused = true)]
async fn release_all_frees_a_poll_loop() {
    let r = Replica::new(cfg(1));
    let rel = Release::default();
    let mut s = admitted(&r, 1, 1_000_000, &rel).await;
    let r2 = r.clone();
    tokio::spawn(async move {
        tokio::time::sleep(ms(500)).await;
        r2.release_all();
    });
    let t = Instant::now();
    std::future::poll_fn(|cx| s.poll_produced(u64::MAX, cx)).await;
    assert_eq!(t.elapsed(), ms(500));
    assert!(s.is_released());
}

#[tokio::test(start_paused = true)]
async fn output_len_and_finish_free_the_slot() {
    let r = Replica::new(cfg(1));
    let rel = Arc::new(Release::default());
    let s = admitted(&r, 1, 1000, &rel).await;
    s.set_output_len(3);
    s.until_produced(3).await;
    // Done at 3 of max 1000: the slot is free for the next request.
    assert_eq!(r.batch_size(), 0);
    s.until_produced(4).await;
    let t = Instant::now();
    let next = admitted(&r, 1, 1000, &rel).await;
    assert_eq!(t.elapsed(), Duration::ZERO);
    next.finish();
    assert_eq!(r.batch_size(), 0);
    next.until_produced(10).await;
}

#[tokio::test(start_paused = true)]
async fn slowdown_and_noisy_neighbours_stretch_steps() {
    let step_of = |c: GpuConfig| async move {
        let r = Replica::new(c);
        let rel = Release::default();
        let t = Instant::now();
        let s = admitted(&r, 1, 10, &rel).await;
        s.until_produced(10).await;
        t.elapsed() / 10
    };
    assert_eq!(step_of(cfg(4)).await, ms(11));
    let mut slow = cfg(4);
    slow.slowdown = 2.0;
    assert_eq!(step_of(slow).await, ms(22));
    let mut noisy = cfg(4);
    noisy.noisy_neighbor = 9;
    // One real sequence and nine phantoms: step(10) = 20 ms.
    assert_eq!(step_of(noisy.clone()).await, ms(20));
    // The phantoms also hold slots (one always stays free).
    assert_eq!(noisy.usable_slots(), 1);
    let r = Replica::new(noisy);
    let rel = Release::default();
    let _a = admitted(&r, 1, 1000, &rel).await;
    let r2 = r.clone();
    let b = tokio::spawn(async move { r2.admit(1, 10, &Release::default()).await });
    tokio::time::sleep(ms(100)).await;
    assert_eq!(r.queue_depth(), 1);
    b.abort();
}

#[tokio::test(start_paused = true)]
async fn dropping_a_queued_admission_leaves_the_queue() {
    let r = Replica::new(cfg(1));
    let rel = Arc::new(Release::default());
    let _a = admitted(&r, 1, 1000, &rel).await;
    let (r2, rel2) = (r.clone(), rel.clone());
    let waiter = tokio::spawn(async move {
        let _ = r2.admit(1, 10, &rel2).await;
    });
    tokio::time::sleep(ms(50)).await;
    assert_eq!(r.queue_depth(), 1);
    waiter.abort();
    let _ = waiter.await;
    assert_eq!(r.queue_depth(), 0);
}

/// 10,000 queued requests cost little memory and no work per step.
#[tokio::test(start_paused = true)]
async fn ten_thousand_queued_requests_are_cheap() {
    fn rss_bytes() -> Option<u64> {
        let statm = std::fs::read_to_string("/proc/self/statm").ok()?;
        let pages: u64 = statm.split_whitespace().nth(1)?.parse().ok()?;
        Some(pages * 4096)
    }
    let r = Replica::new(cfg(1));
    let rel = Arc::new(Release::default());
    let running = admitted(&r, 1, u64::MAX, &rel).await;
    let before = rss_bytes();
    let wall = std::time::Instant::now();
    let mut tasks = Vec::with_capacity(10_000);
    for _ in 0..10_000 {
        let (r, rel) = (r.clone(), rel.clone());
        tasks.push(tokio::spawn(async move {
            matches!(r.admit(200, 200, &rel).await, Admit::Released)
        }));
    }
    tokio::time::sleep(ms(10)).await;
    assert_eq!(r.queue_depth(), 10_000);
    // Ten virtual seconds of steps with the queue full.
    running.until_produced(900).await;
    let spent = wall.elapsed();
    if let (Some(b), Some(a)) = (before, rss_bytes()) {
        let grew = a.saturating_sub(b);
        assert!(
            grew < 100 << 20,
            "10k queued requests took {} MB",
            grew >> 20
        );
    }
    assert!(
        spent < Duration::from_secs(5),
        "took {spent:?} of CPU-bound wall time"
    );
    rel.turn_off();
    for t in tasks {
        assert!(t.await.unwrap());
    }
    assert_eq!(r.queue_depth(), 0);
}

#[tokio::test(start_paused = true)]
async fn cold_start_first_pays_concurrent_share_idle_pays_again() {
    let cold = Arc::new(ColdStart::new(
        Duration::from_secs(300),
        Dist::Fixed(Duration::from_secs(20)),
    ));
    let rel = Arc::new(Release::default());
    let mut rng = ChaCha8Rng::seed_from_u64(1);
    // The first request ever loads the model.
    let first = {
        let (cold, rel) = (cold.clone(), rel.clone());
        tokio::spawn(async move {
            let mut rng = ChaCha8Rng::seed_from_u64(2);
            cold.wait(&mut rng, &rel).await
        })
    };
    tokio::time::sleep(Duration::from_secs(5)).await;
    // One arriving during the load waits for the same load: 15 s, not 20.
    let t = Instant::now();
    assert_eq!(
        cold.wait(&mut rng, &rel).await,
        Some(Duration::from_secs(15))
    );
    assert_eq!(t.elapsed(), Duration::from_secs(15));
    assert_eq!(first.await.unwrap(), Some(Duration::from_secs(20)));
    // Warm: no wait.
    tokio::time::sleep(Duration::from_secs(299)).await;
    assert_eq!(cold.wait(&mut rng, &rel).await, None);
    // After the idle spell it pays again.
    tokio::time::sleep(Duration::from_secs(300)).await;
    assert_eq!(
        cold.wait(&mut rng, &rel).await,
        Some(Duration::from_secs(20))
    );
}

#[tokio::test(start_paused = true)]
async fn cold_start_is_released_by_the_kill_switch() {
    let cold = Arc::new(ColdStart::new(
        Duration::from_secs(300),
        Dist::Fixed(Duration::from_secs(600)),
    ));
    let rel = Arc::new(Release::default());
    let waiter = {
        let (cold, rel) = (cold.clone(), rel.clone());
        tokio::spawn(async move {
            let mut rng = ChaCha8Rng::seed_from_u64(3);
            cold.wait(&mut rng, &rel).await
        })
    };
    tokio::time::sleep(Duration::from_secs(2)).await;
    rel.turn_off();
    assert_eq!(waiter.await.unwrap(), Some(Duration::from_secs(2)));
    let mut rng = ChaCha8Rng::seed_from_u64(4);
    assert_eq!(cold.wait(&mut rng, &rel).await, None);
}

#[tokio::test(start_paused = true)]
async fn busy_time_counts_steps_and_utilisation_follows_it() {
    let r = Replica::new(cfg(4));
    let rel = Release::default();
    assert_eq!(r.busy_time(), Duration::ZERO);
    assert_eq!(r.utilization(), 0.0);
    let s = admitted(&r, 1, 100, &rel).await;
    // One running sequence: 11 ms per step, 100 steps, busy all along.
    s.until_produced(100).await;
    drop(s);
    assert_eq!(r.busy_time(), ms(1100));
    // 1.1 s busy with a 1 s time constant: 1 − e^(−1.1).
    let busy = r.utilization();
    assert!((busy - (1.0 - (-1.1f64).exp())).abs() < 1e-3, "{busy}");
    // Idle from now on: busy time stays, utilisation decays.
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(r.busy_time(), ms(1100));
    let idle = r.utilization();
    assert!((idle - busy * (-3.0f64).exp()).abs() < 1e-3, "{idle}");
    assert!(r.uptime() >= Duration::from_millis(4100));
}
