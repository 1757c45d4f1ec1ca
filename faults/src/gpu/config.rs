//! What one modelled replica is: its card, its model, its batch limits, and how
//! long a step takes.
//!
//! Every number here comes from a published curve or a datasheet (see
//! `docs/gpu-model.md` and `reference/ai-wire-formats.md`, GPU section), so a drill
//! that says "this is what an H100 running Llama-3.1-8B does at 200 concurrent
//! streams" can be checked against the source. Pairs with a published curve get an
//! empirical step fit; every other pair that fits in memory gets a roofline, so
//! "what if this ran on another card" has an answer too.

use std::time::Duration;

use crate::fault::{FaultSpec, StepSpec};

/// A card (or a tensor-parallel group of cards) as the roofline sees it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct GpuSpec {
    /// As written in profiles.
    pub name: &'static str,
    /// Device memory, GiB (all cards together).
    pub memory_gib: f64,
    /// Peak memory bandwidth, GB/s (all cards together).
    pub bandwidth_gbps: f64,
    /// Peak dense BF16 tensor throughput, TFLOPS.
    pub tflops_bf16: f64,
    /// Peak dense FP8 tensor throughput, TFLOPS (the BF16 figure where there is no FP8).
    pub tflops_fp8: f64,
    /// vLLM's default `max_num_seqs` for this card.
    pub default_slots: u32,
    /// vLLM's default `max_num_batched_tokens` for this card.
    pub default_batched_tokens: u64,
}

/// A model as the roofline sees it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ModelSpec {
    /// As written in profiles.
    pub name: &'static str,
    /// Parameters (compute per token is 2 FLOPs per parameter).
    pub params: f64,
    /// Bytes of weights read every step.
    pub weight_bytes: f64,
    /// KV cache bytes per token (2 × layers × KV heads × head dim × bytes per value).
    pub kv_bytes_per_token: f64,
    /// Weights and math in FP8 (uses the card's FP8 throughput).
    pub fp8: bool,
    /// The card this model is usually served on, the default when only `model` is given.
    pub default_gpu: &'static str,
    /// Memory per card kept for activations, CUDA graphs and the sampler (GiB); it
    /// grows with the hidden size.
    pub activation_reserve_gib: f64,
}

/// Cards with presets. Datasheet figures (SXM parts; dense, no sparsity).
pub const GPUS: &[GpuSpec] = &[
    GpuSpec {
        name: "h100-80gb",
        memory_gib: 80.0,
        bandwidth_gbps: 3350.0,
        tflops_bf16: 989.0,
        tflops_fp8: 1979.0,
        default_slots: 1024,
        default_batched_tokens: 8192,
    },
    GpuSpec {
        name: "a100-40gb",
        memory_gib: 40.0,
        bandwidth_gbps: 1555.0,
        tflops_bf16: 312.0,
        tflops_fp8: 312.0,
        default_slots: 256,
        default_batched_tokens: 2048,
    },
    GpuSpec {
        name: "2xh100-80gb",
        memory_gib: 160.0,
        bandwidth_gbps: 6700.0,
        tflops_bf16: 1978.0,
        tflops_fp8: 3958.0,
        default_slots: 1024,
        default_batched_tokens: 8192,
    },
];

/// Models with presets.
pub const MODELS: &[ModelSpec] = &[
    ModelSpec {
        name: "llama-3.1-8b",
        params: 8.03e9,
        // BF16.
        weight_bytes: 16.06e9,
        // 2 × 32 layers × 8 KV heads × 128 dims × 2 bytes.
        kv_bytes_per_token: 131_072.0,
        fp8: false,
        default_gpu: "h100-80gb",
        // Hidden size 4096.
        activation_reserve_gib: 2.0,
    },
    ModelSpec {
        name: "llama-3.3-70b-fp8",
        params: 70.6e9,
        weight_bytes: 70.6e9,
        // 2 × 80 layers × 8 KV heads × 128 dims × 1 byte (FP8 KV cache).
        kv_bytes_per_token: 163_840.0,
        fp8: true,
        default_gpu: "2xh100-80gb",
        // Hidden size 8192.
        activation_reserve_gib: 4.0,
    },
];

/// The default card and model when a `gpu_saturation` fault names neither.
pub const DEFAULT_GPU: &str = "h100-80gb";
/// See [`DEFAULT_GPU`].
pub const DEFAULT_MODEL: &str = "llama-3.1-8b";

/// vLLM's `gpu_memory_utilization` default: the share of memory it plans with.
const MEMORY_UTILIZATION: f64 = 0.9;

/// Looks a card up by its profile name.
pub fn gpu_spec(name: &str) -> Option<&'static GpuSpec> {
    GPUS.iter().find(|g| g.name == name)
}

/// Looks a model up by its profile name.
pub fn model_spec(name: &str) -> Option<&'static ModelSpec> {
    MODELS.iter().find(|m| m.name == name)
}

/// Roofline parameters, fully resolved.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Roofline {
    pub bandwidth_gbps: f64,
    pub tflops: f64,
    pub weight_bytes: f64,
    pub params: f64,
    pub kv_bytes_per_token: f64,
    pub bandwidth_efficiency: f64,
    pub flops_efficiency: f64,
}

impl Roofline {
    /// One decode step in ms: streaming weights plus the KV cache read by attention,
    /// or the matrix math for `n` tokens, whichever is slower.
    pub fn decode_ms(&self, n: u32, kv_tokens: u64) -> f64 {
        let bytes = self.weight_bytes + self.kv_bytes_per_token * kv_tokens as f64;
        let memory = bytes / (self.bandwidth_gbps * 1e9 * self.bandwidth_efficiency);
        let compute =
            2.0 * self.params * f64::from(n) / (self.tflops * 1e12 * self.flops_efficiency);
        memory.max(compute) * 1e3
    }

    /// Prefill cost per prompt token in ms: prefill is compute-bound.
    pub fn prefill_ms_per_token(&self) -> f64 {
        2.0 * self.params / (self.tflops * 1e12 * self.flops_efficiency) * 1e3
    }
}

/// How long one decode step takes for n running sequences.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum StepModel {
    /// `a + b·n + c·n²` ms, read off a published curve.
    Fit { a_ms: f64, b_ms: f64, c_ms: f64 },
    /// From the card and the model.
    Roofline(Roofline),
}

impl StepModel {
    /// Decode time in ms for `n` sequences holding `kv_tokens` of KV cache.
    pub fn decode_ms(&self, n: u32, kv_tokens: u64) -> f64 {
        match self {
            StepModel::Fit { a_ms, b_ms, c_ms } => {
                let n = f64::from(n);
                a_ms + b_ms * n + c_ms * n * n
            }
            StepModel::Roofline(r) => r.decode_ms(n, kv_tokens),
        }
    }
}

/// One replica's parameters, after presets and overrides.
#[derive(Debug, Clone, PartialEq)]
pub struct GpuConfig {
    /// Sequences decoded at once.
    pub slots: u32,
    /// How many may wait beyond those the batch can take; `None` = unbounded.
    pub queue: Option<u32>,
    /// Per-step token budget: one per decoding sequence, the rest for prefill chunks.
    pub max_batched_tokens: u64,
    /// KV cache, in tokens, over running sequences (prompt plus generated).
    pub kv_cache_tokens: u64,
    /// Multiplies every step's time.
    pub slowdown: f64,
    /// Phantom sequences: they make every step as slow as with this many more
    /// running, and take as many slots (one slot always stays free for real work).
    pub noisy_neighbor: u32,
    /// Error preset for a full queue; `None` lets the proxy pick the api's.
    pub overflow: Option<String>,
    /// Decode step time.
    pub step: StepModel,
    /// Added to a step per prompt token it prefills.
    pub prefill_ms_per_token: f64,
    /// Card name (a preset's, or as given).
    pub gpu: String,
    /// Model name (a preset's, or as given).
    pub model: String,
    /// The context each sequence is assumed to hold when [`GpuConfig::step_time`] is
    /// asked without the replica's real KV use (roofline only).
    pub assumed_context_tokens: u64,
}

/// The calibrated Llama-3.1-8B-on-H100 decode step: the NVIDIA NIM table's fit
/// `ITL(c) ≈ 4.60 + 0.0187·c + 1.09e-4·c²` ms (see `docs/gpu-model.md`). The table
/// was measured with clients that start together and ask for equal lengths, so
/// prefills arrive in waves and decode steps carry none: its ITL is the pure decode
/// step.
pub(crate) const H100_8B_FIT: StepModel = StepModel::Fit {
    a_ms: 4.60,
    b_ms: 0.0187,
    c_ms: 1.09e-4,
};

/// Effective prefill cost of the calibrated H100 / 8B preset, fitted to the NIM
/// table's TTFT column. It is lower than the 0.02–0.03 ms per token an isolated
/// prefill takes: with that, a wave of 25 synchronized 200-token prompts would take
/// 125 ms against the published 36 ms.
pub(crate) const H100_8B_PREFILL_MS_PER_TOKEN: f64 = 0.0075;

/// Per-step budget of the calibrated H100 / 8B preset: large enough for a wave of
/// 250 prompts of 200 tokens to prefill in one step, which the NIM table's TTFT
/// (growing in proportion to concurrency) shows its engine doing. vLLM's default
/// for this card is 8192.
pub(crate) const H100_8B_BATCHED_TOKENS: u64 = 65_536;

impl GpuConfig {
    /// The defaults for a card and a model, or `None` when either is unknown or the
    /// weights do not fit in the card's memory.
    ///
    /// `h100-80gb` + `llama-3.1-8b`, `a100-40gb` + `llama-3.1-8b` and
    /// `2xh100-80gb` + `llama-3.3-70b-fp8` are calibrated against published curves;
    /// other pairs use the roofline.
    pub fn preset(gpu: &str, model: &str) -> Option<GpuConfig> {
        let g = gpu_spec(gpu)?;
        let m = model_spec(model)?;
        let kv_cache_tokens = kv_budget(g, m)?;
        let roofline = default_roofline(g, m);
        let mut cfg = GpuConfig {
            slots: g.default_slots,
            queue: None,
            max_batched_tokens: g.default_batched_tokens,
            kv_cache_tokens,
            slowdown: 1.0,
            noisy_neighbor: 0,
            overflow: None,
            step: StepModel::Roofline(roofline),
            prefill_ms_per_token: roofline.prefill_ms_per_token(),
            gpu: g.name.to_string(),
            model: m.name.to_string(),
            assumed_context_tokens: 512,
        };
        match (g.name, m.name) {
            ("h100-80gb", "llama-3.1-8b") => {
                cfg.step = H100_8B_FIT;
                cfg.prefill_ms_per_token = H100_8B_PREFILL_MS_PER_TOKEN;
                cfg.max_batched_tokens = H100_8B_BATCHED_TOKENS;
            }
            ("a100-40gb", "llama-3.1-8b") => {
                // 13 ms per token at batch 1; 6.6× the throughput at c = 8.
                cfg.step = StepModel::Fit {
                    a_ms: 13.0,
                    b_ms: 0.33,
                    c_ms: 0.0,
                };
                cfg.prefill_ms_per_token = 0.1;
            }
            ("2xh100-80gb", "llama-3.3-70b-fp8") => {
                // The slots-full regime: the KV cache (FP8, from memory) holds
                // about 88 sequences of 5,500 tokens, the batch is full from there
                // on, and extra load waits in the queue.
                cfg.step = StepModel::Fit {
                    a_ms: 25.0,
                    b_ms: 0.2,
                    c_ms: 0.0,
                };
                cfg.prefill_ms_per_token = 0.05;
            }
            _ => {}
        }
        Some(cfg)
    }

    /// Builds the config of a `gpu_saturation` fault: its presets, then its
    /// overrides. Errors say which value is wrong; `validate` reports the same
    /// problems with positions first, so in practice this only fails on hand-built
    /// specs.
    pub fn from_spec(spec: &FaultSpec) -> Result<GpuConfig, String> {
        match spec {
            FaultSpec::GpuSaturation(f) => GpuConfig::from_fault(f),
            other => Err(format!("`{}` is not a gpu_saturation fault", other.kind())),
        }
    }

    /// The configuration of a `gpu_saturation` fault: its presets, then its
    /// overrides.
    pub fn from_fault(f: &crate::fault::GpuSaturation) -> Result<GpuConfig, String> {
        let crate::fault::GpuSaturation {
            gpu,
            model,
            slots,
            queue,
            overflow,
            max_batched_tokens,
            kv_cache_tokens,
            slowdown,
            noisy_neighbor,
            step,
            prefill_ms_per_token,
        } = f;
        let model_name = model.as_deref().unwrap_or(DEFAULT_MODEL);
        let m = model_spec(model_name).ok_or_else(|| {
            format!(
                "unknown model `{model_name}`; known: {}",
                MODELS.iter().map(|m| m.name).collect::<Vec<_>>().join(", ")
            )
        })?;
        let gpu_name = gpu.as_deref().unwrap_or(m.default_gpu);
        let g = gpu_spec(gpu_name).ok_or_else(|| {
            format!(
                "unknown gpu `{gpu_name}`; known: {}",
                GPUS.iter().map(|g| g.name).collect::<Vec<_>>().join(", ")
            )
        })?;
        let mut cfg = GpuConfig::preset(g.name, m.name).ok_or_else(|| {
            format!(
                "{} ({:.0} GB of weights) does not fit on {} ({} GiB)",
                m.name,
                m.weight_bytes / 1e9,
                g.name,
                g.memory_gib
            )
        })?;
        if let Some(s) = slots {
            cfg.slots = *s;
        }
        if let Some(q) = queue {
            cfg.queue = q.limit();
        }
        if let Some(o) = overflow {
            cfg.overflow = Some(o.clone());
        }
        if let Some(b) = max_batched_tokens {
            cfg.max_batched_tokens = *b;
        }
        if let Some(k) = kv_cache_tokens {
            cfg.kv_cache_tokens = *k;
        }
        if let Some(s) = slowdown {
            cfg.slowdown = *s;
        }
        if let Some(n) = noisy_neighbor {
            cfg.noisy_neighbor = *n;
        }
        match step {
            Some(StepSpec::Fit(f)) => {
                cfg.step = StepModel::Fit {
                    a_ms: f.a_ms,
                    b_ms: f.b_ms,
                    c_ms: f.c_ms,
                }
            }
            Some(StepSpec::Roofline(r)) => {
                let mut base = default_roofline(g, m);
                if let Some(v) = r.bandwidth_gbps {
                    base.bandwidth_gbps = v;
                }
                if let Some(v) = r.tflops {
                    base.tflops = v;
                }
                if let Some(v) = r.weight_bytes {
                    base.weight_bytes = v as f64;
                }
                if let Some(v) = r.weights_gb {
                    base.weight_bytes = v * 1e9;
                }
                if let Some(v) = r.params_b {
                    base.params = v * 1e9;
                }
                if let Some(v) = r.kv_bytes_per_token {
                    base.kv_bytes_per_token = v as f64;
                }
                if let Some(v) = r.bandwidth_efficiency {
                    base.bandwidth_efficiency = v;
                }
                if let Some(v) = r.flops_efficiency {
                    base.flops_efficiency = v;
                }
                cfg.step = StepModel::Roofline(base);
                if prefill_ms_per_token.is_none() {
                    cfg.prefill_ms_per_token = base.prefill_ms_per_token();
                }
            }
            None => {}
        }
        if let Some(p) = prefill_ms_per_token {
            cfg.prefill_ms_per_token = *p;
        }
        cfg.check()?;
        Ok(cfg)
    }

    /// Rejects values the replica cannot run with (the same rules `validate` applies).
    pub fn check(&self) -> Result<(), String> {
        if self.slots == 0 {
            return Err("`slots` must be at least 1".into());
        }
        if self.max_batched_tokens < u64::from(self.slots) {
            return Err(format!(
                "`max_batched_tokens` ({}) must be at least `slots` ({}): every running sequence needs one token of each step",
                self.max_batched_tokens, self.slots
            ));
        }
        if self.kv_cache_tokens == 0 {
            return Err("`kv_cache_tokens` must be at least 1".into());
        }
        if !(self.slowdown.is_finite() && self.slowdown >= 1.0) {
            return Err(format!(
                "`slowdown` must be 1 or more, not {}",
                self.slowdown
            ));
        }
        if !(self.prefill_ms_per_token.is_finite() && self.prefill_ms_per_token >= 0.0) {
            return Err("`prefill_ms_per_token` must be 0 or more".into());
        }
        match self.step {
            StepModel::Fit { a_ms, b_ms, c_ms } => {
                if !(a_ms.is_finite() && a_ms > 0.0) {
                    return Err("`a_ms` must be above zero".into());
                }
                if !(b_ms.is_finite() && b_ms >= 0.0 && c_ms.is_finite() && c_ms >= 0.0) {
                    return Err("`b_ms` and `c_ms` must be 0 or more".into());
                }
            }
            StepModel::Roofline(r) => {
                for (name, v) in [
                    ("bandwidth_gbps", r.bandwidth_gbps),
                    ("tflops", r.tflops),
                    ("weight bytes", r.weight_bytes),
                    ("params_b", r.params),
                ] {
                    if !(v.is_finite() && v > 0.0) {
                        return Err(format!("`{name}` must be above zero"));
                    }
                }
                for (name, v) in [
                    ("bandwidth_efficiency", r.bandwidth_efficiency),
                    ("flops_efficiency", r.flops_efficiency),
                ] {
                    if !(v > 0.0 && v <= 1.0) {
                        return Err(format!("`{name}` must be above 0 and at most 1"));
                    }
                }
            }
        }
        Ok(())
    }

    /// How long one step takes with `running` sequences of ours in the batch (the
    /// noisy neighbour's phantoms are added here) and `prefill_tokens` prompt tokens
    /// prefilled in it, slowdown included. A roofline assumes each sequence holds
    /// [`GpuConfig::assumed_context_tokens`] of KV cache.
    pub fn step_time(&self, running: u32, prefill_tokens: u64) -> Duration {
        let kv = u64::from(running) * self.assumed_context_tokens;
        self.step_time_kv(running, prefill_tokens, kv)
    }

    /// [`GpuConfig::step_time`] with the KV cache the replica really holds.
    pub fn step_time_kv(&self, running: u32, prefill_tokens: u64, kv_tokens: u64) -> Duration {
        let n = running.saturating_add(self.noisy_neighbor);
        let phantom_kv = u64::from(self.noisy_neighbor) * self.assumed_context_tokens;
        let ms = self.step.decode_ms(n, kv_tokens.saturating_add(phantom_kv))
            + self.prefill_ms_per_token * prefill_tokens as f64;
        let ms = ms * self.slowdown;
        // Finite and non-negative by `check`; saturate rather than panic regardless.
        Duration::try_from_secs_f64((ms / 1e3).max(0.0)).unwrap_or(Duration::MAX)
    }

    /// Slots real sequences may use: the noisy neighbour's phantoms hold some, but
    /// one always stays free so that the replica makes progress.
    pub fn usable_slots(&self) -> u32 {
        self.slots.saturating_sub(self.noisy_neighbor).max(1)
    }
}

/// The roofline for a card and a model with typical efficiencies: decode reaches
/// about 80% of peak bandwidth (A100: 13 ms per token at batch 1 for 16 GB of BF16
/// weights), matrix math about half of peak.
fn default_roofline(g: &GpuSpec, m: &ModelSpec) -> Roofline {
    Roofline {
        bandwidth_gbps: g.bandwidth_gbps,
        tflops: if m.fp8 { g.tflops_fp8 } else { g.tflops_bf16 },
        weight_bytes: m.weight_bytes,
        params: m.params,
        kv_bytes_per_token: m.kv_bytes_per_token,
        bandwidth_efficiency: 0.8,
        flops_efficiency: 0.5,
    }
}

/// KV cache tokens left once vLLM's 90% of memory holds the weights and the
/// activations; `None` when the weights alone do not fit.
fn kv_budget(g: &GpuSpec, m: &ModelSpec) -> Option<u64> {
    let cards = (g.memory_gib / 80.0).ceil().max(1.0);
    let usable = g.memory_gib * MEMORY_UTILIZATION * f64::from(1u32 << 30);
    let free = usable - m.weight_bytes - cards * m.activation_reserve_gib * f64::from(1u32 << 30);
    if free <= 0.0 {
        return None;
    }
    Some((free / m.kv_bytes_per_token) as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn presets_exist_for_calibrated_pairs() {
        for (g, m) in [
            ("h100-80gb", "llama-3.1-8b"),
            ("a100-40gb", "llama-3.1-8b"),
            ("2xh100-80gb", "llama-3.3-70b-fp8"),
            ("2xh100-80gb", "llama-3.1-8b"),
            ("h100-80gb", "llama-3.3-70b-fp8"),
        ] {
            let c = GpuConfig::preset(g, m).unwrap();
            c.check().unwrap();
        }
        assert!(GpuConfig::preset("a100-40gb", "llama-3.3-70b-fp8").is_none());
        assert!(GpuConfig::preset("tpu", "llama-3.1-8b").is_none());
    }

    #[test]
    fn h100_step_follows_the_fit() {
        let c = GpuConfig::preset("h100-80gb", "llama-3.1-8b").unwrap();
        let ms = |n| c.step_time(n, 0).as_secs_f64() * 1e3;
        assert!((ms(1) - 4.618809).abs() < 1e-6, "{}", ms(1));
        assert!((ms(100) - (4.60 + 1.87 + 1.09)).abs() < 1e-6);
        let with_prefill = c.step_time(1, 200).as_secs_f64() * 1e3;
        assert!((with_prefill - (ms(1) + 200.0 * c.prefill_ms_per_token)).abs() < 1e-6);
    }

    #[test]
    fn kv_budget_from_memory() {
        let c = GpuConfig::preset("h100-80gb", "llama-3.1-8b").unwrap();
        // (72 GiB − 16.06 GB − 2 GiB) / 128 KiB ≈ 451k tokens.
        assert!(
            (440_000..460_000).contains(&c.kv_cache_tokens),
            "{}",
            c.kv_cache_tokens
        );
    }

    #[test]
    fn roofline_is_memory_bound_at_small_batches() {
        let c = GpuConfig::preset("a100-40gb", "llama-3.1-8b").unwrap();
        let StepModel::Fit { .. } = c.step else {
            panic!("A100 is calibrated")
        };
        let r = default_roofline(
            gpu_spec("a100-40gb").unwrap(),
            model_spec("llama-3.1-8b").unwrap(),
        );
        // 16.06 GB at 80% of 1555 GB/s ≈ 12.9 ms, close to the published 13 ms.
        assert!(
            (r.decode_ms(1, 0) - 12.9).abs() < 0.1,
            "{}",
            r.decode_ms(1, 0)
        );
        assert!(r.decode_ms(256, 0) > r.decode_ms(1, 0));
    }
}
