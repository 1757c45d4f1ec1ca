//! What a simulated upstream is and how fast it answers.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

/// Which provider API the simulator is started as (`brownout sim --api`).
///
/// Every LLM endpoint is served whatever the choice, selected by path
/// (`/v1/chat/completions`, `/v1/completions`, `/v1/embeddings`, `/v1/models`,
/// `/v1/messages`), so one sim can stand behind both an OpenAI and an Anthropic
/// listener. The choice only sets the error shape for unknown paths, except for
/// `qdrant` and `chroma`, which serve a simulated vector database (the OpenAI routes
/// under `/v1/` stay available, for embedding queries the same way).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SimApi {
    /// OpenAI-compatible: chat completions, legacy completions, embeddings, models.
    #[default]
    Openai,
    /// Anthropic Messages (the OpenAI routes stay available).
    Anthropic,
    /// A Qdrant-shaped vector database with exact k-NN (gzip like Qdrant).
    Qdrant,
    /// A Chroma (v2 API) vector database with exact k-NN.
    Chroma,
}

impl SimApi {
    /// The name used on the command line and in configs.
    pub fn as_str(self) -> &'static str {
        match self {
            SimApi::Openai => "openai",
            SimApi::Anthropic => "anthropic",
            SimApi::Qdrant => "qdrant",
            SimApi::Chroma => "chroma",
        }
    }
}

impl fmt::Display for SimApi {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A `--api` value the simulator does not (yet) speak.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown simulated api `{0}`; expected one of: openai, anthropic, qdrant, chroma")]
pub struct UnknownApi(pub String);

impl FromStr for SimApi {
    type Err = UnknownApi;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "openai" => Ok(SimApi::Openai),
            "anthropic" => Ok(SimApi::Anthropic),
            "qdrant" => Ok(SimApi::Qdrant),
            "chroma" => Ok(SimApi::Chroma),
            _ => Err(UnknownApi(s.to_owned())),
        }
    }
}

/// Pacing and sizing of simulated answers.
///
/// The timing is that of a model server decoding one token at a time: the first
/// token after `ttft`, then one every `itl`. A non-streaming answer is sent when the
/// last token would have been, so streaming and non-streaming e2e agree.
#[derive(Debug, Clone, PartialEq)]
pub struct SimConfig {
    /// Which API to serve.
    pub api: SimApi,
    /// Time from the request to the first content token.
    pub ttft: Duration,
    /// Gap between consecutive content tokens.
    pub itl: Duration,
    /// Relative jitter on every wait: each is multiplied by a factor drawn uniformly
    /// from `[1 - jitter, 1 + jitter]` (clamped at zero). 0 gives exact timing.
    pub jitter: f64,
    /// Answer length when the request gives no `max_tokens` (OpenAI), and the
    /// natural length of every Anthropic answer, which `max_tokens` can only cut.
    pub max_tokens_default: u32,
    /// Upper bound on any answer's length, so a huge `max_tokens` cannot hold a
    /// connection for minutes.
    pub max_tokens_limit: u32,
    /// Seed for the jitter; with the same seed and request order, timings repeat.
    pub seed: u64,
    /// Time tokens with the simulated GPU model instead of `ttft`/`itl`
    /// (`brownout sim --gpu PRESET`): queueing, batching and prefill then shape the
    /// sim's own answers, so the demo and benchmarks show saturation without a GPU.
    pub gpu: Option<SimGpu>,
}

/// The replica the sim's answers share (compared by identity).
#[derive(Clone)]
pub struct SimGpu(pub std::sync::Arc<brownout_faults::gpu::Replica>);

impl PartialEq for SimGpu {
    fn eq(&self, other: &Self) -> bool {
        std::sync::Arc::ptr_eq(&self.0, &other.0)
    }
}

impl std::fmt::Debug for SimGpu {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let c = self.0.config();
        write!(f, "SimGpu({} / {})", c.gpu, c.model)
    }
}

impl SimGpu {
    /// A replica from presets (`h100-80gb`, `llama-3.1-8b`).
    pub fn preset(gpu: &str, model: &str) -> Option<SimGpu> {
        brownout_faults::gpu::GpuConfig::preset(gpu, model)
            .map(|c| SimGpu(brownout_faults::gpu::Replica::new(c)))
    }

    /// A replica from `GPU` or `GPU/MODEL` (the model defaults to `llama-3.1-8b`),
    /// as `brownout sim --gpu` and drill scenarios write it.
    pub fn from_spec(spec: &str) -> Result<SimGpu, String> {
        let (g, m) = spec.split_once('/').unwrap_or((spec, "llama-3.1-8b"));
        Self::preset(g, m).ok_or_else(|| {
            format!("unknown GPU preset `{spec}`; try h100-80gb, a100-40gb or 2xh100-80gb/llama-3.3-70b-fp8")
        })
    }
}

impl Default for SimConfig {
    fn default() -> Self {
        Self {
            api: SimApi::Openai,
            ttft: Duration::from_millis(30),
            itl: Duration::from_millis(10),
            jitter: 0.0,
            max_tokens_default: 32,
            max_tokens_limit: 4096,
            seed: 0,
            gpu: None,
        }
    }
}

impl SimConfig {
    /// The number of tokens to generate for a request that asked for `requested`.
    pub fn answer_len(&self, requested: Option<u64>) -> u32 {
        let n = match requested {
            Some(r) => u32::try_from(r).unwrap_or(u32::MAX),
            None => self.max_tokens_default,
        };
        n.clamp(1, self.max_tokens_limit.max(1))
    }
}
