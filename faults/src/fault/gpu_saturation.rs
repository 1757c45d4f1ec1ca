//! `gpu_saturation`: simulated accelerator contention. Every request the rule
//! matches shares one modelled replica that runs continuous batching in steps, so
//! time to first token and time per token grow with load as on a real GPU server
//! (`docs/gpu-model.md`).
//!
//! The replica is the fault's state, [`FaultState::GpuSaturation`], built once
//! per rule from the presets and overrides.

use schemars::JsonSchema;
use serde::Deserialize;

use std::fmt::Write as _;
use std::time::Duration;

use super::words::{preset_words, trim_num};
use crate::check::{join, suggest, Cx};
use crate::yaml::PathSeg::{self, Key as K};

use super::{Fault, FaultState, Side};

/// Simulated accelerator contention (docs/gpu-model.md): every request the rule matches
/// shares one modelled replica that runs continuous batching in steps, so time to
/// first token and time per token grow with load as on a real GPU server. The
/// `gpu` and `model` presets give every default; any other field overrides the
/// preset's. See `docs/gpu-model.md`.
#[derive(Debug, Clone, PartialEq, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct GpuSaturation {
    /// Card preset: `h100-80gb` (default), `a100-40gb` or `2xh100-80gb`.
    #[serde(default)]
    pub gpu: Option<String>,
    /// Model preset: `llama-3.1-8b` (default) or `llama-3.3-70b-fp8`.
    #[serde(default)]
    pub model: Option<String>,
    /// Sequences decoded at once (vLLM `max_num_seqs`); the rest wait in the queue.
    #[serde(default)]
    #[schemars(range(min = 1))]
    pub slots: Option<u32>,
    /// How many may wait beyond the running batch: `unbounded` (default, as vLLM) or
    /// a number; past it, requests get the `overflow` error at once.
    #[serde(default)]
    pub queue: Option<QueueCap>,
    /// Error answered when the queue is full (default: the listener's api's
    /// overload error, e.g. `vllm.queue_full`).
    #[serde(default)]
    pub overflow: Option<String>,
    /// Per-step token budget shared by decodes and prefill chunks (vLLM
    /// `max_num_batched_tokens`).
    #[serde(default)]
    #[schemars(range(min = 1))]
    pub max_batched_tokens: Option<u64>,
    /// KV cache size in tokens (prompt plus generated, over running sequences);
    /// running out preempts the newest sequence, whose stream stalls while it is
    /// prefilled again.
    #[serde(default)]
    #[schemars(range(min = 1))]
    pub kv_cache_tokens: Option<u64>,
    /// Multiplies every step's time: 2 is a card running at half speed (thermal
    /// throttling, a slower part).
    #[serde(default)]
    #[schemars(range(min = 1))]
    pub slowdown: Option<f64>,
    /// Phantom sequences from another tenant: every step is as slow as with this
    /// many more running, and they take as many slots.
    #[serde(default)]
    pub noisy_neighbor: Option<u32>,
    /// Step time for n running sequences: an empirical fit or roofline parameters.
    #[serde(default)]
    pub step: Option<StepSpec>,
    /// Prefill cost, added to a step for each prompt token it prefills.
    #[serde(default)]
    pub prefill_ms_per_token: Option<f64>,
}

/// A `gpu_saturation` queue bound: `unbounded`, or how many may wait.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QueueCap {
    /// No bound: overload shows up as time to first token (vLLM's default).
    Unbounded,
    /// At most this many wait; more get the overflow error.
    Max(u32),
}

impl QueueCap {
    /// `None` for unbounded.
    pub fn limit(self) -> Option<u32> {
        match self {
            QueueCap::Unbounded => None,
            QueueCap::Max(n) => Some(n),
        }
    }
}

struct QueueCapVisitor;

impl serde::de::Visitor<'_> for QueueCapVisitor {
    type Value = QueueCap;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("`unbounded` or a number of queued requests")
    }

    fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<QueueCap, E> {
        u32::try_from(v).map(QueueCap::Max).map_err(|_| {
            E::custom(format!(
                "a queue of {v} is too long{}use `unbounded`, or a number up to 4294967295",
                crate::yaml::HINT_SEPARATOR
            ))
        })
    }

    fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<QueueCap, E> {
        match u64::try_from(v) {
            Ok(v) => self.visit_u64(v),
            Err(_) => Err(E::custom(format!(
                "a queue cannot hold {v} requests{}use `unbounded`, or a number of requests, 0 or more",
                crate::yaml::HINT_SEPARATOR
            ))),
        }
    }

    fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<QueueCap, E> {
        if v == "unbounded" {
            return Ok(QueueCap::Unbounded);
        }
        if let Ok(n) = v.trim().parse::<u32>() {
            return Ok(QueueCap::Max(n));
        }
        Err(E::custom(format!(
            "expected `unbounded` or a number, found the text \"{v}\"{}e.g. `queue: unbounded` or `queue: 100`",
            crate::yaml::HINT_SEPARATOR
        )))
    }
}

impl<'de> Deserialize<'de> for QueueCap {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(QueueCapVisitor)
    }
}

impl JsonSchema for QueueCap {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "QueueCap".into()
    }

    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "description": "How many requests may wait: `unbounded`, or a number.",
            "oneOf": [
                {"type": "string", "const": "unbounded"},
                {"type": "integer", "minimum": 0, "maximum": 4294967295u64}
            ]
        })
    }
}

/// How long one scheduler step takes for n running sequences.
#[derive(Debug, Clone, PartialEq, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum StepSpec {
    /// An empirical fit read off a published curve: `a + b·n + c·n²` milliseconds.
    Fit(StepFit),
    /// Derived from the card and the model: each decode step streams the weights and
    /// the KV cache through memory, or is bound by compute, whichever is slower.
    Roofline(StepRoofline),
}

/// `step(n) = a_ms + b_ms·n + c_ms·n²`.
#[derive(Debug, Clone, PartialEq, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct StepFit {
    /// Time of a step with one sequence (ms).
    pub a_ms: f64,
    /// Added per running sequence (ms).
    #[serde(default)]
    pub b_ms: f64,
    /// Added per running sequence squared (ms): attention over a growing batch.
    #[serde(default)]
    pub c_ms: f64,
}

/// Roofline parameters; any left out come from the `gpu` and `model` presets.
#[derive(Debug, Clone, PartialEq, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct StepRoofline {
    /// Memory bandwidth of the card(s), GB/s (H100 SXM: 3350).
    #[serde(default)]
    pub bandwidth_gbps: Option<f64>,
    /// Dense tensor throughput at the model's precision, TFLOPS (H100 BF16: 989).
    #[serde(default)]
    pub tflops: Option<f64>,
    /// Bytes of weights read per step; or give `weights_gb`.
    #[serde(default)]
    pub weight_bytes: Option<u64>,
    /// Weights in GB (10^9 bytes); or give `weight_bytes`.
    #[serde(default)]
    pub weights_gb: Option<f64>,
    /// Parameters in billions (compute per token is 2 FLOPs per parameter).
    #[serde(default)]
    pub params_b: Option<f64>,
    /// KV cache bytes per token (Llama-3.1-8B in BF16: 131072).
    #[serde(default)]
    pub kv_bytes_per_token: Option<u64>,
    /// Share of peak bandwidth reached, above 0 and at most 1.
    #[serde(default)]
    pub bandwidth_efficiency: Option<f64>,
    /// Share of peak FLOPs reached, above 0 and at most 1.
    #[serde(default)]
    pub flops_efficiency: Option<f64>,
}

impl Fault for GpuSaturation {
    fn name(&self) -> &'static str {
        "gpu_saturation"
    }

    /// Admission to the modelled batch happens before the upstream is called; the
    /// tokens it then releases are paced by the body.
    fn side(&self) -> Side {
        Side::Request
    }

    /// An overflow answers the `overflow` preset, which may name the model.
    fn names_model(&self) -> bool {
        super::preset_names_model(&self.overflow)
    }

    /// A sequence prefills its prompt and decodes up to `max_tokens`.
    fn reads_body(&self) -> bool {
        true
    }

    fn validate(&self, cx: &mut Cx<'_>, base: &[PathSeg<'_>]) {
        validate(cx, self, base);
    }

    fn explain(&self) -> String {
        explain(self)
    }

    /// The replica the rule's requests share. Validation has checked the
    /// parameters; a spec that still fails builds nothing, and the fault is
    /// recorded as skipped.
    fn state(&self) -> FaultState {
        match crate::gpu::GpuConfig::from_fault(self) {
            Ok(cfg) => FaultState::GpuSaturation(crate::gpu::Replica::new(cfg)),
            Err(_) => FaultState::Unbuilt,
        }
    }
}

/// `gpu_saturation`: known presets, a pair that fits in memory, and numbers the
/// replica can run with.
fn validate(cx: &mut Cx<'_>, f: &GpuSaturation, base: &[PathSeg<'_>]) {
    let GpuSaturation {
        gpu,
        model,
        slots,
        overflow,
        max_batched_tokens,
        kv_cache_tokens,
        slowdown,
        step,
        prefill_ms_per_token,
        ..
    } = f;
    use crate::gpu::{gpu_spec, model_spec, GpuConfig, GPUS, MODELS};
    let gpu_names: Vec<&str> = GPUS.iter().map(|g| g.name).collect();
    let model_names: Vec<&str> = MODELS.iter().map(|m| m.name).collect();
    let list = |v: &[&str]| {
        v.iter()
            .map(|n| format!("`{n}`"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let mut known = true;
    if let Some(m) = model {
        if model_spec(m).is_none() {
            known = false;
            let hint = match suggest(m, &model_names) {
                Some(c) => format!("did you mean `{c}`? known models: {}", list(&model_names)),
                None => format!("known models: {}", list(&model_names)),
            };
            cx.err(
                &join(base, &[K("model")]),
                format!("unknown model `{m}`"),
                Some(hint),
            );
        }
    }
    if let Some(g) = gpu {
        if gpu_spec(g).is_none() {
            known = false;
            let hint = match suggest(g, &gpu_names) {
                Some(c) => format!("did you mean `{c}`? known gpus: {}", list(&gpu_names)),
                None => format!("known gpus: {}", list(&gpu_names)),
            };
            cx.err(
                &join(base, &[K("gpu")]),
                format!("unknown gpu `{g}`"),
                Some(hint),
            );
        }
    }
    let preset = if known {
        let m = model_spec(model.as_deref().unwrap_or(crate::gpu::DEFAULT_MODEL));
        let g = match gpu {
            Some(g) => gpu_spec(g),
            None => m.and_then(|m| gpu_spec(m.default_gpu)),
        };
        match (g, m) {
            (Some(g), Some(m)) => {
                let p = GpuConfig::preset(g.name, m.name);
                if p.is_none() {
                    let at = if gpu.is_some() { K("gpu") } else { K("model") };
                    cx.err(
                        &join(base, &[at]),
                        format!(
                            "{} ({:.0} GB of weights) does not fit on {} ({} GiB)",
                            m.name,
                            m.weight_bytes / 1e9,
                            g.name,
                            g.memory_gib
                        ),
                        Some(format!("pick a bigger card, e.g. `gpu: {}`", m.default_gpu)),
                    );
                }
                p
            }
            _ => None,
        }
    } else {
        None
    };
    if *slots == Some(0) {
        cx.err(
            &join(base, &[K("slots")]),
            "`slots` must be at least 1",
            Some(
                "it is how many sequences run at once (vLLM `max_num_seqs`), e.g. `slots: 64`"
                    .to_string(),
            ),
        );
    }
    if *max_batched_tokens == Some(0) {
        cx.err(
            &join(base, &[K("max_batched_tokens")]),
            "`max_batched_tokens` must be at least 1",
            Some(
                "it is the per-step token budget (vLLM `max_num_batched_tokens`), e.g. 8192"
                    .to_string(),
            ),
        );
    } else if let Some(p) = &preset {
        let s = slots.unwrap_or(p.slots);
        let b = max_batched_tokens.unwrap_or(p.max_batched_tokens);
        if s > 0 && b < u64::from(s) {
            let at = if max_batched_tokens.is_some() {
                K("max_batched_tokens")
            } else {
                K("slots")
            };
            cx.err(
                &join(base, &[at]),
                format!("`max_batched_tokens` ({b}) is below `slots` ({s})"),
                Some(
                    "every running sequence needs one token of each step's budget; raise `max_batched_tokens` or lower `slots`"
                        .to_string(),
                ),
            );
        }
    }
    if *kv_cache_tokens == Some(0) {
        cx.err(
            &join(base, &[K("kv_cache_tokens")]),
            "`kv_cache_tokens` must be at least 1",
            Some("it is the KV cache size in tokens, e.g. `kv_cache_tokens: 20000` for memory pressure".to_string()),
        );
    }
    if let Some(s) = slowdown {
        if !(s.is_finite() && *s >= 1.0) {
            cx.err(
                &join(base, &[K("slowdown")]),
                format!("`slowdown` must be 1 or more, not {s}"),
                Some("it multiplies step time: 2 is a card at half speed (the model can only add time)".to_string()),
            );
        }
    }
    if let Some(p) = prefill_ms_per_token {
        if !(p.is_finite() && *p >= 0.0) {
            cx.err(
                &join(base, &[K("prefill_ms_per_token")]),
                format!("`prefill_ms_per_token` must be 0 or more, not {p}"),
                Some("H100 prefills about 0.025 ms per prompt token for an 8B model".to_string()),
            );
        }
    }
    if let Some(o) = overflow {
        cx.preset(&join(base, &[K("overflow")]), o);
    }
    match step {
        Some(StepSpec::Fit(fit)) => {
            let p = join(base, &[K("step"), K("fit")]);
            if !(fit.a_ms.is_finite() && fit.a_ms > 0.0) {
                cx.err(
                    &join(&p, &[K("a_ms")]),
                    format!("`a_ms` must be above zero, not {}", fit.a_ms),
                    Some(
                        "it is the step time with one sequence, e.g. `a_ms: 4.6` (H100, 8B)"
                            .to_string(),
                    ),
                );
            }
            for (key, v) in [("b_ms", fit.b_ms), ("c_ms", fit.c_ms)] {
                if !(v.is_finite() && v >= 0.0) {
                    cx.err(
                        &join(&p, &[K(key)]),
                        format!("`{key}` must be 0 or more, not {v}"),
                        Some("step time must not shrink as the batch grows".to_string()),
                    );
                }
            }
        }
        Some(StepSpec::Roofline(r)) => {
            let p = join(base, &[K("step"), K("roofline")]);
            if r.weight_bytes.is_some() && r.weights_gb.is_some() {
                cx.err(
                    &join(&p, &[K("weights_gb")]),
                    "give `weight_bytes` or `weights_gb`, not both",
                    Some("drop one of them".to_string()),
                );
            }
            for (key, v) in [
                ("bandwidth_gbps", r.bandwidth_gbps),
                ("tflops", r.tflops),
                ("weights_gb", r.weights_gb),
                ("params_b", r.params_b),
                ("weight_bytes", r.weight_bytes.map(|b| b as f64)),
                ("kv_bytes_per_token", r.kv_bytes_per_token.map(|b| b as f64)),
            ] {
                if let Some(v) = v {
                    if !(v.is_finite() && v > 0.0) {
                        cx.err(
                            &join(&p, &[K(key)]),
                            format!("`{key}` must be above zero, not {v}"),
                            Some(
                                "leave it out to take the gpu and model presets' value".to_string(),
                            ),
                        );
                    }
                }
            }
            for (key, v) in [
                ("bandwidth_efficiency", r.bandwidth_efficiency),
                ("flops_efficiency", r.flops_efficiency),
            ] {
                if let Some(v) = v {
                    if !(v > 0.0 && v <= 1.0) {
                        let hint = if (1.0..=100.0).contains(&v) {
                            format!("`{key}` is a fraction: for {v}% write {}", v / 100.0)
                        } else {
                            "the share of the peak reached, above 0 and at most 1, e.g. 0.8"
                                .to_string()
                        };
                        cx.err(
                            &join(&p, &[K(key)]),
                            format!("`{key}` {v} is not above 0 and at most 1"),
                            Some(hint),
                        );
                    }
                }
            }
        }
        None => {}
    }
}

/// A `gpu_saturation` fault in words, with the numbers its presets resolve to, so a
/// reviewer sees the batch size and step times the drill will really use.
fn explain(f: &GpuSaturation) -> String {
    let cfg = match crate::gpu::GpuConfig::from_fault(f) {
        Ok(c) => c,
        Err(e) => return format!("simulate GPU saturation (invalid: {e})"),
    };
    let ms = |d: Duration| {
        let v = d.as_secs_f64() * 1e3;
        if v >= 100.0 {
            format!("{v:.0} ms")
        } else {
            format!("{v:.1} ms")
        }
    };
    // Step times as the card runs them; slowdown and phantoms are named after.
    let base = crate::gpu::GpuConfig {
        slowdown: 1.0,
        noisy_neighbor: 0,
        ..cfg.clone()
    };
    let big = cfg.usable_slots().min(256);
    let mut s = format!(
        "queue every request for one simulated {} replica serving {} (continuous batching: at most {} sequences at once, {} tokens per step, a KV cache of {} tokens; a step takes {} with 1 sequence and {} with {}",
        cfg.gpu,
        cfg.model,
        cfg.usable_slots(),
        cfg.max_batched_tokens,
        cfg.kv_cache_tokens,
        ms(base.step_time(1, 0)),
        ms(base.step_time(big, 0)),
        big
    );
    let _ = write!(s, ", plus {} ms per prompt token prefilled)", {
        let v = format!("{:.4}", cfg.prefill_ms_per_token);
        v.trim_end_matches('0').trim_end_matches('.').to_string()
    });
    if cfg.slowdown > 1.0 {
        let _ = write!(s, ", every step {}× slower", trim_num(cfg.slowdown));
    }
    if cfg.noisy_neighbor > 0 {
        let _ = write!(
            s,
            ", with {} phantom sequences from a noisy neighbour in the batch",
            cfg.noisy_neighbor
        );
    }
    match cfg.queue {
        None => s.push_str("; the queue is unbounded, so overload shows as time to first token"),
        Some(q) => {
            let _ = write!(s, "; at most {q} wait, the rest are refused with ");
            match &cfg.overflow {
                Some(p) => s.push_str(&preset_words(p)),
                None => s.push_str("the API's overload error"),
            }
        }
    }
    s
}
