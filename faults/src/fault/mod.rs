//! The fault catalog's second half: what each fault *is* beyond its fields.
//!
//! [`FaultSpec`] is the file format (one variant per fault, its fields and their
//! docs, which the loader, the JSON Schema and editors read). Everything else a
//! fault needs — its checks, its plain-words explanation, the state it keeps across
//! requests and which phase of an exchange it acts in — lives in one file per fault
//! under this module, reached through the exhaustive matches below. None of them
//! has a `_ =>` arm: a variant added to [`FaultSpec`] (and [`FaultKind`]) stops the
//! build at every place that must say what the new fault does, instead of
//! compiling into a fault that silently does nothing. `docs/architecture.md`
//! ("Adding a fault") walks through the steps.
//!
//! The proxy's behaviour for a fault (holding, answering, resetting) needs sockets
//! and clocks, so it stays in `proxy/src/pipeline/inject.rs`, in one exhaustive
//! match over [`FaultSpec`] whose arms read the [`FaultState`] compiled here.

use std::sync::Arc;

use crate::profile::FaultSpec;

pub mod bandwidth;
pub mod cold_start;
pub mod concurrency_limit;
pub mod delay;
pub mod error;
pub mod gpu_saturation;
pub mod hang;
pub mod rate_limit;
pub mod reset;

pub use delay::Delay;

/// Every fault type, without its fields: the names records, metrics, headers and
/// `explain` use for it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FaultKind {
    Delay,
    Error,
    Reset,
    Hang,
    Bandwidth,
    GpuSaturation,
    ColdStart,
    ConcurrencyLimit,
    RateLimit,
    FirstTokenDelay,
    TokenDelay,
    TokenRate,
    Stall,
    Truncate,
    StreamError,
    Corrupt,
    Garble,
    EmptyCompletion,
    FinishReason,
    DropResults,
    ShuffleResults,
    LimitResults,
    StaleResults,
    ScoreNoise,
    EmptyResults,
    EmbeddingNoise,
    EmbeddingTruncate,
}

impl FaultKind {
    /// Every kind, in catalog order.
    pub const ALL: [FaultKind; 27] = [
        FaultKind::Delay,
        FaultKind::Error,
        FaultKind::Reset,
        FaultKind::Hang,
        FaultKind::Bandwidth,
        FaultKind::GpuSaturation,
        FaultKind::ColdStart,
        FaultKind::ConcurrencyLimit,
        FaultKind::RateLimit,
        FaultKind::FirstTokenDelay,
        FaultKind::TokenDelay,
        FaultKind::TokenRate,
        FaultKind::Stall,
        FaultKind::Truncate,
        FaultKind::StreamError,
        FaultKind::Corrupt,
        FaultKind::Garble,
        FaultKind::EmptyCompletion,
        FaultKind::FinishReason,
        FaultKind::DropResults,
        FaultKind::ShuffleResults,
        FaultKind::LimitResults,
        FaultKind::StaleResults,
        FaultKind::ScoreNoise,
        FaultKind::EmptyResults,
        FaultKind::EmbeddingNoise,
        FaultKind::EmbeddingTruncate,
    ];

    /// The `type` name as written in files; also the name in `x-brownout-fault`,
    /// records and metrics labels, so it must never change for an existing fault.
    pub fn as_str(self) -> &'static str {
        match self {
            FaultKind::Delay => "delay",
            FaultKind::Error => "error",
            FaultKind::Reset => "reset",
            FaultKind::Hang => "hang",
            FaultKind::Bandwidth => "bandwidth",
            FaultKind::GpuSaturation => "gpu_saturation",
            FaultKind::ColdStart => "cold_start",
            FaultKind::ConcurrencyLimit => "concurrency_limit",
            FaultKind::RateLimit => "rate_limit",
            FaultKind::FirstTokenDelay => "first_token_delay",
            FaultKind::TokenDelay => "token_delay",
            FaultKind::TokenRate => "token_rate",
            FaultKind::Stall => "stall",
            FaultKind::Truncate => "truncate",
            FaultKind::StreamError => "stream_error",
            FaultKind::Corrupt => "corrupt",
            FaultKind::Garble => "garble",
            FaultKind::EmptyCompletion => "empty_completion",
            FaultKind::FinishReason => "finish_reason",
            FaultKind::DropResults => "drop_results",
            FaultKind::ShuffleResults => "shuffle_results",
            FaultKind::LimitResults => "limit_results",
            FaultKind::StaleResults => "stale_results",
            FaultKind::ScoreNoise => "score_noise",
            FaultKind::EmptyResults => "empty_results",
            FaultKind::EmbeddingNoise => "embedding_noise",
            FaultKind::EmbeddingTruncate => "embedding_truncate",
        }
    }
}

impl std::fmt::Display for FaultKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Where in an exchange a fault acts. The proxy plans a fault by its side: request
/// faults run before (or instead of) the upstream call, the rest wrap the response
/// body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    /// Before or instead of the upstream call: holds, answers, resets, admissions.
    Request,
    /// On the response body's bytes: throttling, a reset after N bytes.
    Bytes,
    /// On the events of a streamed response (SSE or NDJSON); skipped on a
    /// non-streaming one.
    Stream,
    /// On what the model said, streamed or not.
    Content,
    /// On the hits of a search/query answer.
    Results,
    /// On the vectors of an embeddings answer.
    Embeddings,
}

/// Why a fault of a rule that fired did not act, as records write it
/// (`faults_skipped[].reason`). The strings are a contract with every reader of
/// records (reports, the drill, dashboards): never change one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SkipReason {
    /// The kill switch had turned faults off.
    FaultsOff,
    /// The rule was at its `max_active` cap.
    MaxActive,
    /// An `error` preset that exists only over HTTP, on a gRPC call.
    HttpOnlyPreset,
    /// An `error` preset that exists only over gRPC, on an HTTP request.
    GrpcOnlyPreset,
    /// A limit fault whose limiter was not built.
    NoLimiter,
    /// A `gpu_saturation` whose parameters did not build a replica.
    NoReplica,
    /// A stateful fault whose state was not built.
    NoState,
    /// A planned body fault whose moment never came (the stream ended first).
    DidNotFire,
    /// The exchange became a WebSocket tunnel: there is no body to fault.
    Websocket,
}

impl SkipReason {
    /// The reason as records write it.
    pub fn as_str(self) -> &'static str {
        match self {
            SkipReason::FaultsOff => "faults_off",
            SkipReason::MaxActive => "max_active",
            SkipReason::HttpOnlyPreset => "http_only_preset",
            SkipReason::GrpcOnlyPreset => "grpc_only_preset",
            SkipReason::NoLimiter => "no_limiter",
            SkipReason::NoReplica => "no_replica",
            SkipReason::NoState => "no_state",
            SkipReason::DidNotFire => "did_not_fire",
            SkipReason::Websocket => "websocket",
        }
    }
}

/// What one fault of a rule keeps across requests, built once per rule (and kept
/// over hot reloads that leave the rule unchanged).
#[derive(Debug)]
pub enum FaultState {
    /// The fault needs nothing between requests.
    Stateless,
    /// `concurrency_limit`: the in-flight count and its queue.
    ConcurrencyLimit(Arc<crate::limit::ConcurrencyLimiter>),
    /// `rate_limit`: the token buckets.
    RateLimit(Arc<crate::ratelimit::RateLimiter>),
    /// `gpu_saturation`: the simulated replica every matching request shares.
    GpuSaturation(Arc<crate::gpu::Replica>),
    /// `cold_start`: whether the model is loaded, and the load in progress.
    ColdStart(Arc<crate::gpu::ColdStart>),
    /// A stateful fault whose state could not be built (validation refuses such
    /// a spec; one that slips through is recorded as skipped, not a panic).
    Unbuilt,
}

impl FaultState {
    /// The state `spec` needs, built from its fields.
    pub fn build(spec: &FaultSpec) -> FaultState {
        match spec {
            FaultSpec::ConcurrencyLimit {
                max,
                queue,
                queue_timeout,
                ..
            } => concurrency_limit::state(*max, *queue, *queue_timeout),
            FaultSpec::RateLimit {
                requests_per_minute,
                tokens_per_minute,
                ..
            } => rate_limit::state(*requests_per_minute, *tokens_per_minute),
            FaultSpec::GpuSaturation { .. } => gpu_saturation::state(spec),
            FaultSpec::ColdStart { idle, duration } => cold_start::state(*idle, duration),
            FaultSpec::Delay(_)
            | FaultSpec::Error { .. }
            | FaultSpec::Reset { .. }
            | FaultSpec::Hang { .. }
            | FaultSpec::Bandwidth { .. }
            | FaultSpec::FirstTokenDelay { .. }
            | FaultSpec::TokenDelay { .. }
            | FaultSpec::TokenRate { .. }
            | FaultSpec::Stall { .. }
            | FaultSpec::Truncate { .. }
            | FaultSpec::StreamError { .. }
            | FaultSpec::Corrupt { .. }
            | FaultSpec::Garble { .. }
            | FaultSpec::EmptyCompletion {}
            | FaultSpec::FinishReason { .. }
            | FaultSpec::DropResults { .. }
            | FaultSpec::ShuffleResults {}
            | FaultSpec::LimitResults { .. }
            | FaultSpec::StaleResults { .. }
            | FaultSpec::ScoreNoise { .. }
            | FaultSpec::EmptyResults {}
            | FaultSpec::EmbeddingNoise { .. }
            | FaultSpec::EmbeddingTruncate { .. } => FaultState::Stateless,
        }
    }
}

impl FaultSpec {
    /// Which fault this is.
    pub fn fault_kind(&self) -> FaultKind {
        match self {
            FaultSpec::Delay(_) => FaultKind::Delay,
            FaultSpec::Error { .. } => FaultKind::Error,
            FaultSpec::Reset { .. } => FaultKind::Reset,
            FaultSpec::Hang { .. } => FaultKind::Hang,
            FaultSpec::Bandwidth { .. } => FaultKind::Bandwidth,
            FaultSpec::GpuSaturation { .. } => FaultKind::GpuSaturation,
            FaultSpec::ColdStart { .. } => FaultKind::ColdStart,
            FaultSpec::ConcurrencyLimit { .. } => FaultKind::ConcurrencyLimit,
            FaultSpec::RateLimit { .. } => FaultKind::RateLimit,
            FaultSpec::FirstTokenDelay { .. } => FaultKind::FirstTokenDelay,
            FaultSpec::TokenDelay { .. } => FaultKind::TokenDelay,
            FaultSpec::TokenRate { .. } => FaultKind::TokenRate,
            FaultSpec::Stall { .. } => FaultKind::Stall,
            FaultSpec::Truncate { .. } => FaultKind::Truncate,
            FaultSpec::StreamError { .. } => FaultKind::StreamError,
            FaultSpec::Corrupt { .. } => FaultKind::Corrupt,
            FaultSpec::Garble { .. } => FaultKind::Garble,
            FaultSpec::EmptyCompletion {} => FaultKind::EmptyCompletion,
            FaultSpec::FinishReason { .. } => FaultKind::FinishReason,
            FaultSpec::DropResults { .. } => FaultKind::DropResults,
            FaultSpec::ShuffleResults {} => FaultKind::ShuffleResults,
            FaultSpec::LimitResults { .. } => FaultKind::LimitResults,
            FaultSpec::StaleResults { .. } => FaultKind::StaleResults,
            FaultSpec::ScoreNoise { .. } => FaultKind::ScoreNoise,
            FaultSpec::EmptyResults {} => FaultKind::EmptyResults,
            FaultSpec::EmbeddingNoise { .. } => FaultKind::EmbeddingNoise,
            FaultSpec::EmbeddingTruncate { .. } => FaultKind::EmbeddingTruncate,
        }
    }

    /// The `type` name as written in files, used in headers, records and metrics.
    pub fn kind(&self) -> &'static str {
        self.fault_kind().as_str()
    }

    /// Where in the exchange this fault acts.
    pub fn side(&self) -> Side {
        match self {
            FaultSpec::Delay(_) => delay::SIDE,
            FaultSpec::Error { .. } => error::SIDE,
            FaultSpec::Reset { after_bytes, .. } => reset::side(*after_bytes),
            FaultSpec::Hang { .. } => hang::SIDE,
            FaultSpec::Bandwidth { .. } => bandwidth::SIDE,
            FaultSpec::GpuSaturation { .. } => gpu_saturation::SIDE,
            FaultSpec::ColdStart { .. } => cold_start::SIDE,
            FaultSpec::ConcurrencyLimit { .. } => concurrency_limit::SIDE,
            FaultSpec::RateLimit { .. } => rate_limit::SIDE,
            FaultSpec::FirstTokenDelay { .. }
            | FaultSpec::TokenDelay { .. }
            | FaultSpec::TokenRate { .. }
            | FaultSpec::Stall { .. }
            | FaultSpec::Truncate { .. }
            | FaultSpec::StreamError { .. }
            | FaultSpec::Corrupt { .. } => Side::Stream,
            FaultSpec::Garble { .. }
            | FaultSpec::EmptyCompletion {}
            | FaultSpec::FinishReason { .. } => Side::Content,
            FaultSpec::DropResults { .. }
            | FaultSpec::ShuffleResults {}
            | FaultSpec::LimitResults { .. }
            | FaultSpec::StaleResults { .. }
            | FaultSpec::ScoreNoise { .. }
            | FaultSpec::EmptyResults {} => Side::Results,
            FaultSpec::EmbeddingNoise { .. } | FaultSpec::EmbeddingTruncate { .. } => {
                Side::Embeddings
            }
        }
    }

    /// Whether this fault, once it acts, ends the exchange before the upstream
    /// answers (`explain` warns that faults listed after it never apply).
    pub fn is_terminal(&self) -> bool {
        match self {
            FaultSpec::Error { .. } => error::TERMINAL,
            FaultSpec::Reset { after_bytes, .. } => reset::terminal(*after_bytes),
            FaultSpec::Hang { .. } => hang::TERMINAL,
            FaultSpec::Delay(_)
            | FaultSpec::Bandwidth { .. }
            | FaultSpec::GpuSaturation { .. }
            | FaultSpec::ColdStart { .. }
            | FaultSpec::ConcurrencyLimit { .. }
            | FaultSpec::RateLimit { .. }
            | FaultSpec::FirstTokenDelay { .. }
            | FaultSpec::TokenDelay { .. }
            | FaultSpec::TokenRate { .. }
            | FaultSpec::Stall { .. }
            | FaultSpec::Truncate { .. }
            | FaultSpec::StreamError { .. }
            | FaultSpec::Corrupt { .. }
            | FaultSpec::Garble { .. }
            | FaultSpec::EmptyCompletion {}
            | FaultSpec::FinishReason { .. }
            | FaultSpec::DropResults { .. }
            | FaultSpec::ShuffleResults {}
            | FaultSpec::LimitResults { .. }
            | FaultSpec::StaleResults { .. }
            | FaultSpec::ScoreNoise { .. }
            | FaultSpec::EmptyResults {}
            | FaultSpec::EmbeddingNoise { .. }
            | FaultSpec::EmbeddingTruncate { .. } => false,
        }
    }

    /// Whether an error this fault may answer names the request's model: an
    /// `error`, `concurrency_limit`, `stream_error` or `gpu_saturation` overflow
    /// whose preset says "Rate limit reached for <model>" (see
    /// [`crate::presets::Preset::names_model`]), and `rate_limit`, whose OpenAI
    /// message names it. The proxy then reads the request body for the model (up
    /// to `inspect_limit`) even when no rule matches on the body.
    pub fn names_model(&self) -> bool {
        match self {
            FaultSpec::Error { preset, body, .. } => error::names_model(preset, body),
            FaultSpec::ConcurrencyLimit { preset, .. } => concurrency_limit::names_model(preset),
            FaultSpec::StreamError { preset, .. } => preset_names_model(preset),
            FaultSpec::GpuSaturation { overflow, .. } => gpu_saturation::names_model(overflow),
            FaultSpec::RateLimit { .. } => rate_limit::NAMES_MODEL,
            FaultSpec::Delay(_)
            | FaultSpec::Reset { .. }
            | FaultSpec::Hang { .. }
            | FaultSpec::Bandwidth { .. }
            | FaultSpec::ColdStart { .. }
            | FaultSpec::FirstTokenDelay { .. }
            | FaultSpec::TokenDelay { .. }
            | FaultSpec::TokenRate { .. }
            | FaultSpec::Stall { .. }
            | FaultSpec::Truncate { .. }
            | FaultSpec::Corrupt { .. }
            | FaultSpec::Garble { .. }
            | FaultSpec::EmptyCompletion {}
            | FaultSpec::FinishReason { .. }
            | FaultSpec::DropResults { .. }
            | FaultSpec::ShuffleResults {}
            | FaultSpec::LimitResults { .. }
            | FaultSpec::StaleResults { .. }
            | FaultSpec::ScoreNoise { .. }
            | FaultSpec::EmptyResults {}
            | FaultSpec::EmbeddingNoise { .. }
            | FaultSpec::EmbeddingTruncate { .. } => false,
        }
    }

    /// Acts before (or instead of) calling the upstream: `delay`, `error`, `hang`,
    /// `reset` without `after_bytes`, `concurrency_limit`, `rate_limit`,
    /// `gpu_saturation` (admission to the modelled batch) and `cold_start`.
    ///
    /// The proxy runs these in its request phase; everything else acts on the
    /// response body.
    pub fn is_request_fault(&self) -> bool {
        self.side() == Side::Request
    }

    /// Acts on the events of a streamed response (SSE or NDJSON): timing, endings,
    /// mid-stream errors and corruption. Recorded as skipped on a non-streaming
    /// response.
    pub fn is_stream_fault(&self) -> bool {
        self.side() == Side::Stream
    }

    /// Rewrites what the model said, in streamed and non-streamed responses alike.
    pub fn is_content_fault(&self) -> bool {
        self.side() == Side::Content
    }

    /// Rewrites a vector search/query answer or an embeddings answer (one whole JSON
    /// body; see [`crate::vector`]). Planned for the body like content faults.
    pub fn is_vector_fault(&self) -> bool {
        self.is_result_fault() || self.is_embedding_fault()
    }

    /// Acts on the hits of a search/query answer.
    pub fn is_result_fault(&self) -> bool {
        self.side() == Side::Results
    }

    /// Acts on the vectors of an embeddings answer.
    pub fn is_embedding_fault(&self) -> bool {
        self.side() == Side::Embeddings
    }
}

/// Whether a preset named by a fault says "Rate limit reached for <model>".
pub(crate) fn preset_names_model(preset: &Option<String>) -> bool {
    preset.as_deref().is_some_and(crate::presets::names_model)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kind_names_are_unique_and_snake_case() {
        let mut seen = std::collections::HashSet::new();
        for k in FaultKind::ALL {
            let name = k.as_str();
            assert!(seen.insert(name), "{name} twice");
            assert!(name.bytes().all(|b| b.is_ascii_lowercase() || b == b'_'));
        }
    }

    #[test]
    fn the_schema_names_every_kind() {
        let schema = crate::schema::profile_schema_json();
        for k in FaultKind::ALL {
            assert!(
                schema.contains(&format!("\"{}\"", k.as_str())),
                "{} missing from the schema",
                k.as_str()
            );
        }
    }
}
