//! The presets stay calibrated: the sweep, in virtual time, against the published
//! serving curves (`reference/ai-wire-formats.md`, GPU section; `docs/gpu-model.md`).
//! A change to the model or a preset that drifts from the published numbers fails
//! here instead of silently changing every drill's timing.

use brownout_sim::gpu_sweep::{render_table, run, SweepOptions, SweepResult};

fn sweep(gpu: &str, model: &str) -> SweepResult {
    let r = run(&SweepOptions::calibration(gpu, model)).expect("the preset sweeps");
    println!("{}", render_table(&r));
    r
}

fn within(model: f64, published: f64, tolerance: f64) -> bool {
    (model - published).abs() <= tolerance * published
}

/// NIM, Llama-3.1-8B on H100, 200-token prompts and answers: ITL within ±25% and
/// TTFT within ±50% at c = 1, 25, 100, 250; throughput flat between 10k and 16k
/// tokens/s from c = 150.
#[test]
fn h100_llama_8b_matches_the_nim_table() {
    let r = sweep("h100-80gb", "llama-3.1-8b");
    assert_eq!((r.prompt_tokens, r.output_tokens), (200, 200));
    // `BROWNOUT_BLESS=1 cargo test -p brownout-sim --test gpu_calibration`
    // redraws the chart in docs/gpu-model.md from this very run.
    if std::env::var_os("BROWNOUT_BLESS").is_some() {
        let path =
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/gpu-calibration.svg");
        brownout_sim::gpu_sweep::write_chart_svg(&r, &path).expect("writes the chart");
    }
    for c in [1, 25, 100, 250] {
        let p = r
            .points
            .iter()
            .find(|p| p.concurrency == c)
            .expect("level swept");
        let pb = p.published.expect("published at this level");
        let (itl, ttft) = (
            pb.itl_ms.unwrap_or_default(),
            pb.ttft_ms.unwrap_or_default(),
        );
        assert!(
            within(p.itl_mean_ms, itl, 0.25),
            "c={c}: ITL {:.2} ms vs published {itl} ms",
            p.itl_mean_ms
        );
        assert!(
            within(p.ttft_p50_ms, ttft, 0.50),
            "c={c}: TTFT {:.1} ms vs published {ttft} ms",
            p.ttft_p50_ms
        );
    }
    let flat: Vec<f64> = r
        .points
        .iter()
        .filter(|p| p.concurrency >= 150)
        .map(|p| p.throughput_tok_s)
        .collect();
    assert!(flat.len() >= 3);
    for t in &flat {
        assert!(
            (10_000.0..=16_000.0).contains(t),
            "throughput {t:.0} tok/s past c=150"
        );
    }
    let (lo, hi) = flat
        .iter()
        .fold((f64::MAX, 0.0f64), |(lo, hi), t| (lo.min(*t), hi.max(*t)));
    assert!(
        hi / lo < 1.1,
        "throughput should flatten past c=150: {flat:?}"
    );
    // Below the knee, throughput still grows with load.
    let at = |c: u32| {
        r.points
            .iter()
            .find(|p| p.concurrency == c)
            .map(|p| p.throughput_tok_s)
    };
    assert!(at(50) < at(100) && at(100) < at(150));
}

/// Llama-3.3-70B FP8 on 2×H100 with 5000-token prompts: once the batch is full
/// (the KV cache holds about 88 such sequences), ITL plateaus near 93 ms and TTFT
/// grows in proportion to the queue.
#[test]
fn llama_70b_slots_full_regime() {
    let r = sweep("2xh100-80gb", "llama-3.3-70b-fp8");
    let full: Vec<_> = r.points.iter().filter(|p| p.concurrency >= 100).collect();
    assert!(full.len() >= 3);
    for p in &full {
        assert!(
            within(p.itl_mean_ms, 93.0, 0.15),
            "c={}: ITL {:.1} ms, published plateau ~93 ms",
            p.concurrency,
            p.itl_mean_ms
        );
        assert!(
            p.queue_mean > 1.0,
            "c={}: the batch should be full",
            p.concurrency
        );
    }
    let batch = full[0].batch_mean;
    for p in &full {
        assert!(
            within(p.batch_mean, batch, 0.1),
            "the batch stays full at the same size"
        );
    }
    // TTFT per queued request is about constant: pure queueing.
    let per_queued: Vec<f64> = full
        .iter()
        .filter(|p| p.concurrency >= 150)
        .map(|p| p.ttft_mean_ms / p.queue_mean)
        .collect();
    let mean = per_queued.iter().sum::<f64>() / per_queued.len() as f64;
    for v in &per_queued {
        assert!(
            within(*v, mean, 0.3),
            "TTFT should grow linearly with the queue: {per_queued:?}"
        );
    }
    for (c, published) in [(50, 800.0), (100, 8_000.0), (250, 89_000.0)] {
        let p = r
            .points
            .iter()
            .find(|p| p.concurrency == c)
            .expect("level swept");
        assert!(
            within(p.ttft_p50_ms, published, 0.5),
            "c={c}: TTFT {:.0} ms vs published {published} ms",
            p.ttft_p50_ms
        );
    }
}

/// A100-40GB, Llama-3.1-8B BF16: about 13 ms per token alone, 6.6× the throughput
/// at c = 8.
#[test]
fn a100_llama_8b_anchors() {
    let mut o = SweepOptions::calibration("a100-40gb", "llama-3.1-8b");
    o.concurrency = vec![1, 8];
    let r = run(&o).expect("the preset sweeps");
    let (one, eight) = (&r.points[0], &r.points[1]);
    assert!(within(one.itl_mean_ms, 13.0, 0.1), "{}", one.itl_mean_ms);
    let ratio = eight.throughput_tok_s / one.throughput_tok_s;
    assert!(within(ratio, 6.6, 0.1), "throughput ×{ratio:.2} at c=8");
}

/// The chart renders as SVG with its text, with no font files needed.
#[test]
fn chart_renders_text_without_fonts() {
    let o = SweepOptions {
        concurrency: vec![1, 50, 100],
        duration: std::time::Duration::from_secs(5),
        ..SweepOptions::default()
    };
    let r = run(&o).expect("sweeps");
    let svg = brownout_sim::gpu_sweep::chart::render_chart_svg(&r).expect("draws");
    assert!(svg.starts_with("<svg"), "{}", &svg[..80.min(svg.len())]);
    for text in [
        "Inter-token latency",
        "Time to first token",
        "Output throughput",
        "published",
        "h100-80gb",
    ] {
        assert!(svg.contains(text), "missing `{text}`");
    }
    let path = std::env::temp_dir().join(format!("brownout-gpu-chart-{}.svg", std::process::id()));
    brownout_sim::gpu_sweep::write_chart_svg(&r, &path).expect("writes");
    let written = std::fs::read_to_string(&path).expect("reads back");
    assert_eq!(written, svg);
    let _ = std::fs::remove_file(&path);
}
