//! The GPU model under a deep queue: CPU per model step and memory, in real time.
//!
//! Not a criterion bench (what matters is the steady-state cost of the scheduler
//! task at the model's real step rate, not the time of one call): a plain
//! `harness = false` binary that prints its figures.
//!
//! For each scenario it builds a `Replica` from the calibrated H100 / Llama-3.1-8B
//! preset, spawns one tokio task per request on a multi-thread runtime
//! (`GPU_THREADS`, default 2 workers, like `TOKIO_WORKER_THREADS` in the proxy
//! benches) that does what a proxied streamed request does: `Replica::admit`, then
//! waits for token 1, 2, 3, … with `Sequence::until_produced` (one wake-up per
//! token, as `LlmStream::poll_gpu` is). Requests ask for so many tokens that none
//! finishes during the run, so the batch stays full and the queue stays at its depth.
//! Once the batch is full and `GPU_SETTLE_S` (default 2) more seconds passed, it measures for `GPU_SECS` (default 10):
//!
//! - CPU: the process's CPU time (sum of `/proc/self/task/*/schedstat`, ns) over the
//!   window, as a share of one core, and per model step. Steps are counted from one
//!   running sequence's produced tokens (one per decode step).
//! - memory: live heap bytes (a counting global allocator) and VmRSS
//!   (`/proc/self/status`) before the requests were spawned and during the run.
//!
//! Scenarios (`GPU_QUEUED`, default 10000 waiting requests in each):
//! - `slots-1024`: the preset as shipped (1024 slots): 1024 running + 10,000 waiting;
//!   a step of ~140 ms (~7 steps/s).
//! - `slots-64`: 64 slots, so ~6 ms steps (~160 steps/s) with 10,000 waiting: the
//!   fastest real step rate with the same queue.
//! - `slots-64-no-queue`: the same batch with nobody waiting: the difference from
//!   `slots-64` is what the queue itself costs per step.
//!
//! Targets (issue 8): < 100 MB and < 5% of one core for 10,000 queued requests.
//! Run: `cargo bench -p brownout-faults --bench gpu` (GPU_SECS=3 for a quick look).

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use brownout_faults::gpu::{Admit, GpuConfig, Replica};
use brownout_faults::release::Release;

/// Counts live heap bytes.
struct Counting;

static LIVE: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            let now = LIVE.fetch_add(layout.size(), Ordering::Relaxed) + layout.size();
            PEAK.fetch_max(now, Ordering::Relaxed);
        }
        p
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) };
        LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let p = unsafe { System.realloc(ptr, layout, new_size) };
        if !p.is_null() {
            if new_size >= layout.size() {
                let now = LIVE.fetch_add(new_size - layout.size(), Ordering::Relaxed)
                    + (new_size - layout.size());
                PEAK.fetch_max(now, Ordering::Relaxed);
            } else {
                LIVE.fetch_sub(layout.size() - new_size, Ordering::Relaxed);
            }
        }
        p
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// CPU time of every thread of this process, in ns (schedstat's first field).
fn cpu_ns() -> u64 {
    let mut total = 0;
    if let Ok(dir) = std::fs::read_dir("/proc/self/task") {
        for t in dir.flatten() {
            if let Ok(s) = std::fs::read_to_string(t.path().join("schedstat")) {
                total += s
                    .split_whitespace()
                    .next()
                    .and_then(|v| v.parse::<u64>().ok())
                    .unwrap_or(0);
            }
        }
    }
    total
}

fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0)
}

struct Figures {
    name: String,
    running: usize,
    waiting: usize,
    steps_per_s: f64,
    cpu_core_pct: f64,
    cpu_us_per_step: f64,
    heap_mib: f64,
    heap_bytes_per_request: f64,
    rss_mib: f64,
}

fn scenario(
    name: &str,
    slots: u32,
    waiting: usize,
    threads: usize,
    settle: f64,
    secs: f64,
) -> Figures {
    let mut cfg = GpuConfig::preset("h100-80gb", "llama-3.1-8b").expect("preset");
    cfg.slots = slots;
    cfg.queue = None;
    let running = slots as usize;
    let total = running + waiting;

    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(threads)
        .enable_all()
        .build()
        .expect("runtime");
    // Let the runtime's threads and their buffers settle before the baseline.
    rt.block_on(async { tokio::time::sleep(Duration::from_millis(50)).await });
    let heap0 = LIVE.load(Ordering::Relaxed);
    let rss0 = rss_kib();

    let replica = Replica::new(cfg);
    let release = Arc::new(Release::new(true));
    let probe = Arc::new(AtomicU64::new(0));
    let admitted = Arc::new(AtomicUsize::new(0));
    rt.block_on(async {
        for i in 0..total {
            let replica = replica.clone();
            let release = release.clone();
            let probe = probe.clone();
            let admitted = admitted.clone();
            tokio::spawn(async move {
                // 200-token prompts; answers too long to finish during the run.
                match replica.admit(200, 1_000_000_000, &release).await {
                    Admit::Admitted(seq) => {
                        admitted.fetch_add(1, Ordering::Relaxed);
                        let mut k = 1;
                        loop {
                            seq.until_produced(k).await;
                            // Released, or (never here) done: stop waiting.
                            if seq.is_released() || seq.produced() < k {
                                break;
                            }
                            if i == 0 {
                                probe.store(seq.produced(), Ordering::Relaxed);
                            }
                            k = seq.produced() + 1;
                        }
                    }
                    Admit::Overflow | Admit::Released => {}
                }
            });
            if i % 1024 == 1023 {
                tokio::task::yield_now().await;
            }
        }
        // Until the batch is full (prefill waves take a few steps), then settle.
        let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
        while admitted.load(Ordering::Relaxed) < running.min(total)
            && tokio::time::Instant::now() < deadline
        {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        tokio::time::sleep(Duration::from_secs_f64(settle)).await;
    });
    let got = admitted.load(Ordering::Relaxed);
    let depth = replica.queue_depth();
    assert_eq!(
        got,
        running.min(total),
        "{name}: admitted {got}, expected {running}"
    );
    assert_eq!(depth, waiting, "{name}: queue depth");

    let c0 = cpu_ns();
    let s0 = probe.load(Ordering::Relaxed);
    let t0 = Instant::now();
    rt.block_on(async { tokio::time::sleep(Duration::from_secs_f64(secs)).await });
    let wall = t0.elapsed().as_secs_f64();
    let c1 = cpu_ns();
    let s1 = probe.load(Ordering::Relaxed);
    let heap1 = LIVE.load(Ordering::Relaxed);
    let rss1 = rss_kib();
    assert_eq!(
        replica.queue_depth(),
        waiting,
        "{name}: queue drained during the run"
    );

    // Let every task go.
    replica.release_all();
    release.turn_off();
    rt.shutdown_timeout(Duration::from_secs(5));

    let steps = (s1 - s0).max(1) as f64;
    let cpu_s = (c1 - c0) as f64 / 1e9;
    let heap = heap1.saturating_sub(heap0) as f64;
    Figures {
        name: name.to_string(),
        running,
        waiting,
        steps_per_s: steps / wall,
        cpu_core_pct: 100.0 * cpu_s / wall,
        cpu_us_per_step: cpu_s * 1e6 / steps,
        heap_mib: heap / (1 << 20) as f64,
        heap_bytes_per_request: heap / total as f64,
        rss_mib: rss1.saturating_sub(rss0) as f64 / 1024.0,
    }
}

impl Figures {
    fn encode(&self) -> String {
        format!(
            "GPUROW {} {} {} {} {} {} {} {} {}",
            self.name,
            self.running,
            self.waiting,
            self.steps_per_s,
            self.cpu_core_pct,
            self.cpu_us_per_step,
            self.heap_mib,
            self.heap_bytes_per_request,
            self.rss_mib
        )
    }

    fn decode(line: &str) -> Option<Figures> {
        let f: Vec<&str> = line.strip_prefix("GPUROW ")?.split(' ').collect();
        Some(Figures {
            name: f.first()?.to_string(),
            running: f.get(1)?.parse().ok()?,
            waiting: f.get(2)?.parse().ok()?,
            steps_per_s: f.get(3)?.parse().ok()?,
            cpu_core_pct: f.get(4)?.parse().ok()?,
            cpu_us_per_step: f.get(5)?.parse().ok()?,
            heap_mib: f.get(6)?.parse().ok()?,
            heap_bytes_per_request: f.get(7)?.parse().ok()?,
            rss_mib: f.get(8)?.parse().ok()?,
        })
    }
}

fn main() {
    // `cargo bench` passes `--bench` and any filter: a filter picks scenarios.
    let filter: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with('-'))
        .collect();
    let queued: usize = env_or("GPU_QUEUED", 10_000);
    let threads: usize = env_or("GPU_THREADS", 2);
    let settle: f64 = env_or("GPU_SETTLE_S", 2.0);
    let secs: f64 = env_or("GPU_SECS", 10.0);
    let all = [
        ("slots-1024", 1024u32, queued),
        ("slots-64", 64, queued),
        ("slots-64-no-queue", 64, 0),
    ];
    // Each scenario runs in a child process of its own, so that memory freed by one
    // (and kept by the allocator) does not hide the next one's RSS growth.
    if std::env::var_os("GPU_CHILD").is_some() {
        for (name, slots, waiting) in all {
            if filter.iter().any(|f| f == name) {
                println!(
                    "{}",
                    scenario(name, slots, waiting, threads, settle, secs).encode()
                );
            }
        }
        return;
    }
    println!(
        "gpu model bench: h100-80gb / llama-3.1-8b preset, {threads} tokio workers, \
         batch full + {settle}s settle, then {secs}s measured per scenario (one process each); {} CPUs",
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
    let exe = std::env::current_exe().expect("current_exe");
    let mut rows = Vec::new();
    for (name, _, _) in all {
        if !filter.is_empty() && !filter.iter().any(|f| name.contains(f.as_str())) {
            continue;
        }
        let out = std::process::Command::new(&exe)
            .arg(name)
            .env("GPU_CHILD", "1")
            .stderr(std::process::Stdio::inherit())
            .output()
            .expect("run scenario");
        let text = String::from_utf8_lossy(&out.stdout);
        let Some(f) = text.lines().find_map(Figures::decode) else {
            eprintln!("scenario {name} failed ({}):\n{text}", out.status);
            std::process::exit(1);
        };
        println!(
            "  {:<18} running {:>5} waiting {:>6}: {:>7.1} steps/s  CPU {:>6.2}% of a core  \
             {:>8.1} us/step  heap +{:>7.2} MiB ({:>6.0} B/request)  RSS +{:>7.2} MiB",
            f.name,
            f.running,
            f.waiting,
            f.steps_per_s,
            f.cpu_core_pct,
            f.cpu_us_per_step,
            f.heap_mib,
            f.heap_bytes_per_request,
            f.rss_mib
        );
        rows.push(f);
    }
    println!();
    println!("| scenario | running | waiting | steps/s | CPU % of one core | CPU µs/step | heap MiB | heap B/request | RSS MiB |");
    println!("|---|---:|---:|---:|---:|---:|---:|---:|---:|");
    for f in &rows {
        println!(
            "| {} | {} | {} | {:.1} | {:.2} | {:.1} | {:.2} | {:.0} | {:.2} |",
            f.name,
            f.running,
            f.waiting,
            f.steps_per_s,
            f.cpu_core_pct,
            f.cpu_us_per_step,
            f.heap_mib,
            f.heap_bytes_per_request,
            f.rss_mib
        );
    }
    let q = rows.iter().find(|r| r.name == "slots-64");
    let nq = rows.iter().find(|r| r.name == "slots-64-no-queue");
    if let (Some(q), Some(nq)) = (q, nq) {
        println!(
            "\nqueue of {} alone: {:+.2}% of a core, {:+.1} us/step, {:+.2} MiB heap \
             (targets: < 5% of a core, < 100 MB)",
            q.waiting,
            q.cpu_core_pct - nq.cpu_core_pct,
            q.cpu_us_per_step - nq.cpu_us_per_step,
            q.heap_mib - nq.heap_mib
        );
    }
    for f in rows.iter().filter(|f| f.waiting > 0) {
        let mb = f.heap_mib.max(f.rss_mib) * 1.048_576;
        println!(
            "{}: {} queued + {} running: CPU {:.2}% of a core (target < 5%: {}), \
             memory {:.1} MB (worst of heap and RSS growth; target < 100 MB: {})",
            f.name,
            f.waiting,
            f.running,
            f.cpu_core_pct,
            if f.cpu_core_pct < 5.0 { "PASS" } else { "FAIL" },
            mb,
            if mb < 100.0 { "PASS" } else { "FAIL" }
        );
    }
}
