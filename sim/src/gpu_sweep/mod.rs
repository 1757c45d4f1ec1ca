//! `brownout gpu-sweep`: closed-loop load against one modelled replica, in virtual
//! time, beside the published curves the presets were calibrated on.
//!
//! Each concurrency level gets `c` clients that start together and send the next
//! request as soon as the last one ends (as genai-perf and NVIDIA's NIM benchmarks
//! do), every request with the same prompt and output length. The run uses a
//! paused-clock tokio runtime, so a minute of simulated load takes a fraction of a
//! second and gives the same numbers on every machine. The results are the
//! calibration evidence in `docs/gpu-model.md`, and a test holds them to the
//! published values so the presets cannot drift silently.

pub mod chart;

use std::fmt::Write as _;
use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;
use tokio::time::{timeout_at, Instant};

use brownout_faults::gpu::{Admit, GpuConfig, Replica, DEFAULT_GPU, DEFAULT_MODEL};
use brownout_faults::release::Release;

/// What to sweep.
#[derive(Debug, Clone)]
pub struct SweepOptions {
    /// GPU preset (`brownout_faults::gpu::GPUS`).
    pub gpu: String,
    /// Model preset (`brownout_faults::gpu::MODELS`).
    pub model: String,
    /// Concurrency levels (closed-loop clients), each run separately.
    pub concurrency: Vec<u32>,
    /// Prompt length of every request.
    pub prompt_tokens: u64,
    /// Output length of every request.
    pub output_tokens: u64,
    /// Simulated time per concurrency level.
    pub duration: Duration,
    /// Sweeps this configuration instead of the `gpu` × `model` preset (for
    /// what-if runs with overrides); `gpu` and `model` still pick the published
    /// reference shown beside it.
    pub config: Option<GpuConfig>,
}

impl Default for SweepOptions {
    /// The H100 / Llama-3.1-8B calibration run: the NIM table's concurrency levels
    /// with 200-token prompts and answers.
    fn default() -> Self {
        SweepOptions {
            gpu: DEFAULT_GPU.to_string(),
            model: DEFAULT_MODEL.to_string(),
            concurrency: vec![1, 5, 25, 50, 100, 150, 200, 250],
            prompt_tokens: 200,
            output_tokens: 200,
            duration: Duration::from_secs(60),
            config: None,
        }
    }
}

impl SweepOptions {
    /// The calibration run for a preset pair: the published curve's concurrency
    /// levels and the prompt and output lengths assumed for it.
    pub fn calibration(gpu: &str, model: &str) -> SweepOptions {
        let mut o = SweepOptions {
            gpu: gpu.to_string(),
            model: model.to_string(),
            ..SweepOptions::default()
        };
        match (gpu, model) {
            ("2xh100-80gb", "llama-3.3-70b-fp8") => {
                o.concurrency = vec![1, 10, 25, 50, 75, 100, 150, 200, 250];
                o.prompt_tokens = 5000;
                o.output_tokens = 500;
                o.duration = Duration::from_secs(600);
            }
            ("a100-40gb", "llama-3.1-8b") => {
                o.concurrency = vec![1, 2, 4, 8, 16, 32, 64, 128];
            }
            _ => {}
        }
        o
    }
}

/// Published values at one concurrency, where the source gives them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct Published {
    /// Mean time to first token.
    pub ttft_ms: Option<f64>,
    /// Mean inter-token latency.
    pub itl_ms: Option<f64>,
    /// Output tokens per second over all clients.
    pub throughput_tok_s: Option<f64>,
}

/// The model's numbers at one concurrency level.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SweepPoint {
    /// Closed-loop clients.
    pub concurrency: u32,
    /// Requests completed within the duration.
    pub requests: u64,
    /// Time to first token, median.
    pub ttft_p50_ms: f64,
    /// Time to first token, 95th percentile.
    pub ttft_p95_ms: f64,
    /// Time to first token, mean.
    pub ttft_mean_ms: f64,
    /// Per request (end − first token) / (output tokens − 1), as genai-perf
    /// computes it, averaged over requests.
    pub itl_mean_ms: f64,
    /// The same, median over requests.
    pub itl_p50_ms: f64,
    /// Output tokens per second over the duration (partial answers included).
    pub throughput_tok_s: f64,
    /// Sequences preempted (KV cache full) during the run.
    pub preemptions: u64,
    /// Running sequences, averaged over the run (sampled every 10 ms).
    pub batch_mean: f64,
    /// Waiting requests, averaged over the run (sampled every 10 ms).
    pub queue_mean: f64,
    /// The published reference at this concurrency, if any.
    pub published: Option<Published>,
}

/// A whole sweep.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SweepResult {
    /// GPU preset swept.
    pub gpu: String,
    /// Model preset swept.
    pub model: String,
    /// Prompt length of every request.
    pub prompt_tokens: u64,
    /// Output length of every request.
    pub output_tokens: u64,
    /// Virtual seconds measured per level.
    pub duration_s: f64,
    /// Where the published values come from, if there are any for this pair.
    pub reference: Option<String>,
    /// One per concurrency level, in the order swept.
    pub points: Vec<SweepPoint>,
}

/// NVIDIA NIM, Llama-3.1-8B on H100: (c, TTFT ms, ITL ms, output tok/s).
const NIM_H100_8B: &[(u32, f64, f64, f64)] = &[
    (1, 10.3, 4.63, 215.0),
    (5, 16.8, 4.58, 1077.0),
    (25, 36.3, 5.19, 4679.0),
    (50, 67.4, 5.91, 8018.0),
    (100, 120.0, 7.57, 12215.0),
    (150, 347.0, 9.81, 12989.0),
    (200, 465.0, 12.65, 13348.0),
    (250, 606.0, 16.14, 12965.0),
];

/// The published value at concurrency `c` for a preset pair, and the source's name.
pub fn published(gpu: &str, model: &str, c: u32) -> Option<Published> {
    match (gpu, model) {
        ("h100-80gb", "llama-3.1-8b") => {
            NIM_H100_8B
                .iter()
                .find(|r| r.0 == c)
                .map(|&(_, ttft, itl, tput)| Published {
                    ttft_ms: Some(ttft),
                    itl_ms: Some(itl),
                    throughput_tok_s: Some(tput),
                })
        }
        ("a100-40gb", "llama-3.1-8b") => match c {
            1 => Some(Published {
                itl_ms: Some(13.0),
                throughput_tok_s: Some(1000.0 / 13.0),
                ..Published::default()
            }),
            // "Throughput rises about 6.6× up to c = 8".
            8 => Some(Published {
                throughput_tok_s: Some(6.6 * 1000.0 / 13.0),
                ..Published::default()
            }),
            _ => None,
        },
        ("2xh100-80gb", "llama-3.3-70b-fp8") => match c {
            50 => Some(Published {
                ttft_ms: Some(800.0),
                ..Published::default()
            }),
            100 => Some(Published {
                ttft_ms: Some(8_000.0),
                itl_ms: Some(93.0),
                ..Published::default()
            }),
            250 => Some(Published {
                ttft_ms: Some(89_000.0),
                itl_ms: Some(93.0),
                ..Published::default()
            }),
            _ => None,
        },
        _ => None,
    }
}

fn reference_name(gpu: &str, model: &str) -> Option<String> {
    match (gpu, model) {
        ("h100-80gb", "llama-3.1-8b") => {
            Some("NVIDIA NIM benchmark, Llama-3.1-8B on H100 (prompt/output lengths not published)".into())
        }
        ("a100-40gb", "llama-3.1-8b") => {
            Some("vLLM, Llama-3.1-8B BF16 on A100-40GB: ~13 ms/token at batch 1, 6.6x throughput at c=8".into())
        }
        ("2xh100-80gb", "llama-3.3-70b-fp8") => Some(
            "Llama-3.3-70B FP8 on 2xH100, 5000-token prompts: ITL plateau ~93 ms, TTFT 0.8 s / 8 s / 89 s at c=50/100/250"
                .into(),
        ),
        _ => None,
    }
}

/// Runs the sweep in virtual time. Fails on an unknown gpu/model pair or when the
/// runtime cannot be built.
pub fn run(opts: &SweepOptions) -> Result<SweepResult, String> {
    let cfg = match &opts.config {
        Some(c) => c.clone(),
        None => GpuConfig::preset(&opts.gpu, &opts.model).ok_or_else(|| {
            format!(
                "no preset for gpu `{}` with model `{}` (unknown name, or the weights do not fit)",
                opts.gpu, opts.model
            )
        })?,
    };
    cfg.check()?;
    if opts.output_tokens == 0 {
        return Err("--output-tokens must be at least 1".into());
    }
    let mut points = Vec::with_capacity(opts.concurrency.len());
    for &c in &opts.concurrency {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .start_paused(true)
            .build()
            .map_err(|e| format!("cannot start the simulation runtime: {e}"))?;
        let mut point = rt.block_on(level(cfg.clone(), c, opts));
        point.published = published(&opts.gpu, &opts.model, c);
        points.push(point);
    }
    Ok(SweepResult {
        gpu: opts.gpu.clone(),
        model: opts.model.clone(),
        prompt_tokens: opts.prompt_tokens,
        output_tokens: opts.output_tokens,
        duration_s: opts.duration.as_secs_f64(),
        reference: reference_name(&opts.gpu, &opts.model),
        points,
    })
}

#[derive(Default)]
struct ClientStats {
    ttft: Vec<f64>,
    itl: Vec<f64>,
    tokens: u64,
}

/// One closed-loop client: request after request until the duration is over.
async fn client(
    replica: Arc<Replica>,
    release: Arc<Release>,
    prompt: u64,
    output: u64,
    end: Instant,
) -> ClientStats {
    let mut stats = ClientStats::default();
    while Instant::now() < end {
        let t0 = Instant::now();
        let seq = match timeout_at(end, replica.admit(prompt, output, &release)).await {
            Ok(Admit::Admitted(seq)) => seq,
            _ => break,
        };
        seq.set_output_len(output);
        if timeout_at(end, seq.until_produced(1)).await.is_err() {
            stats.tokens += seq.produced();
            break;
        }
        let ttft = t0.elapsed();
        if timeout_at(end, seq.until_produced(output)).await.is_err() {
            stats.tokens += seq.produced();
            break;
        }
        let e2e = t0.elapsed();
        stats.tokens += output;
        stats.ttft.push(ms(ttft));
        if output > 1 {
            stats.itl.push(ms(e2e - ttft) / (output - 1) as f64);
        }
    }
    stats
}

async fn level(cfg: GpuConfig, c: u32, opts: &SweepOptions) -> SweepPoint {
    let replica = Replica::new(cfg);
    let release = Arc::new(Release::default());
    let end = Instant::now() + opts.duration;
    let tasks: Vec<_> = (0..c)
        .map(|_| {
            tokio::spawn(client(
                replica.clone(),
                release.clone(),
                opts.prompt_tokens,
                opts.output_tokens,
                end,
            ))
        })
        .collect();
    // Sample the batch and the queue while the clients run.
    let sampler = {
        let replica = replica.clone();
        tokio::spawn(async move {
            let (mut batch, mut queue, mut n) = (0.0, 0.0, 0u64);
            let mut tick = tokio::time::interval(Duration::from_millis(10));
            while Instant::now() < end {
                tick.tick().await;
                batch += replica.batch_size() as f64;
                queue += replica.queue_depth() as f64;
                n += 1;
            }
            let n = n.max(1) as f64;
            (batch / n, queue / n)
        })
    };
    let mut all = ClientStats::default();
    for t in tasks {
        // A client task only ends by returning; a panic would be a bug in the model.
        if let Ok(s) = t.await {
            all.ttft.extend(s.ttft);
            all.itl.extend(s.itl);
            all.tokens += s.tokens;
        }
    }
    let (batch_mean, queue_mean) = sampler.await.unwrap_or((0.0, 0.0));
    let requests = all.ttft.len() as u64;
    let mean = |v: &[f64]| {
        if v.is_empty() {
            0.0
        } else {
            v.iter().sum::<f64>() / v.len() as f64
        }
    };
    all.ttft.sort_by(f64::total_cmp);
    all.itl.sort_by(f64::total_cmp);
    SweepPoint {
        concurrency: c,
        requests,
        ttft_p50_ms: percentile(&all.ttft, 0.50),
        ttft_p95_ms: percentile(&all.ttft, 0.95),
        ttft_mean_ms: mean(&all.ttft),
        itl_mean_ms: mean(&all.itl),
        itl_p50_ms: percentile(&all.itl, 0.50),
        throughput_tok_s: all.tokens as f64 / opts.duration.as_secs_f64().max(1e-9),
        preemptions: replica.preemptions(),
        batch_mean,
        queue_mean,
        published: None,
    }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// Nearest-rank percentile of sorted values; 0 when empty.
fn percentile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = (q * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

fn num(v: f64) -> String {
    if v >= 1000.0 {
        format!("{v:.0}")
    } else if v >= 100.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.2}")
    }
}

fn with_ref(model: f64, published: Option<f64>) -> String {
    match published {
        Some(p) => format!("{} ({})", num(model), num(p)),
        None => num(model),
    }
}

/// The sweep as a text table, published values in parentheses.
pub fn render_table(r: &SweepResult) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "gpu {} · model {} · prompt {} tokens · output {} tokens · {}s simulated per level",
        r.gpu, r.model, r.prompt_tokens, r.output_tokens, r.duration_s
    );
    if let Some(src) = &r.reference {
        let _ = writeln!(out, "published values in parentheses: {src}");
    }
    let header = [
        "c",
        "TTFT p50 ms",
        "TTFT p95 ms",
        "TTFT mean ms",
        "ITL mean ms",
        "ITL p50 ms",
        "output tok/s",
        "batch",
        "queued",
        "requests",
        "preempted",
    ];
    let rows: Vec<[String; 11]> = r
        .points
        .iter()
        .map(|p| {
            let pb = p.published.unwrap_or_default();
            [
                p.concurrency.to_string(),
                with_ref(p.ttft_p50_ms, pb.ttft_ms),
                num(p.ttft_p95_ms),
                num(p.ttft_mean_ms),
                with_ref(p.itl_mean_ms, pb.itl_ms),
                num(p.itl_p50_ms),
                with_ref(p.throughput_tok_s, pb.throughput_tok_s),
                format!("{:.1}", p.batch_mean),
                format!("{:.1}", p.queue_mean),
                p.requests.to_string(),
                p.preemptions.to_string(),
            ]
        })
        .collect();
    let mut widths: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for row in &rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let line = |cells: Vec<&str>, out: &mut String| {
        let parts: Vec<String> = cells
            .iter()
            .zip(&widths)
            .map(|(c, w)| format!("{c:>w$}", w = *w))
            .collect();
        let _ = writeln!(out, "{}", parts.join("  ").trim_end());
    };
    line(header.to_vec(), &mut out);
    for row in &rows {
        line(row.iter().map(String::as_str).collect(), &mut out);
    }
    out
}

pub use chart::write_chart_svg;
