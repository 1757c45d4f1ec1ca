//! The fault catalog: one module per fault, each with the fault's spec (its
//! fields and their docs, which the loader, the JSON Schema and editors read), its
//! checks, its plain-words explanation, the state it keeps across requests and
//! which phase of an exchange it acts in, behind one trait, `Fault`.
//!
//! [`FaultSpec`], the `type`-tagged enum of files with one line per fault, is
//! defined here, beside `FaultSpec::as_fault`, the one exhaustive match that
//! turns a variant into its `Fault`; types that only one fault's fields use
//! live in that fault's file. So adding a fault touches this folder alone: a
//! new file and its lines here. [`crate::profile`] re-exports the enum and the
//! field types, so the file format is still named in one place.
//!
//! Nothing here has a `_ =>` arm over fault kinds: a variant added to
//! [`FaultSpec`] stops the build at every place that must say what the new
//! fault does (here, the proxy's request-side dispatch in
//! `proxy/src/pipeline/inject.rs`, and, through [`BodyFault`], every body-side
//! pass), instead of compiling into a fault that silently does nothing.
//! `docs/architecture.md` ("Adding a fault") walks through the steps.
//!
//! Imports run one way: these modules are at the bottom and check their fields
//! with the toolkit in [`crate::check`]; [`crate::profile`] builds rules out of
//! them; [`crate::validate`] checks whole profiles and calls each fault's
//! `validate`. Nothing here outside tests imports `profile` or `validate`:
//! that would close the chain into a circle.
//!
//! What a fault *does* to a live exchange needs sockets and clocks, so it stays
//! outside this pure crate: request-side faults in the proxy's `inject.rs`,
//! stream and content faults in [`crate::stream`], vector faults in
//! [`crate::vector`]; each reads the [`FaultState`] built here.

use std::sync::Arc;

use schemars::JsonSchema;
use serde::Deserialize;

use crate::check::Cx;
use crate::yaml::PathSeg;

pub mod bandwidth;
pub mod body;
pub mod cold_start;
pub mod concurrency_limit;
pub mod corrupt;
pub mod delay;
pub mod drop_results;
pub mod embedding_noise;
pub mod embedding_truncate;
pub mod empty_completion;
pub mod empty_results;
pub mod error;
pub mod finish_reason;
pub mod first_token_delay;
pub mod garble;
pub mod gpu_saturation;
pub mod hang;
pub mod limit_results;
pub mod rate_limit;
pub mod reset;
pub mod score_noise;
pub mod shuffle_results;
pub mod stale_results;
pub mod stall;
pub mod stream_error;
pub mod token_delay;
pub mod token_rate;
pub mod truncate;
pub(crate) mod words;

pub use bandwidth::Bandwidth;
pub use body::{BodyFault, ContentFault, EmbeddingsFault, ResultsFault, StreamFault};
pub use cold_start::ColdStart;
pub use concurrency_limit::ConcurrencyLimit;
pub use corrupt::{Corrupt, CorruptMode};
pub use delay::Delay;
pub use drop_results::DropResults;
pub use embedding_noise::EmbeddingNoise;
pub use embedding_truncate::EmbeddingTruncate;
pub use empty_completion::EmptyCompletion;
pub use empty_results::EmptyResults;
pub use error::{Error, ErrorBody, GrpcStatusSpec};
pub use finish_reason::FinishReason;
pub use first_token_delay::FirstTokenDelay;
pub use garble::Garble;
pub use gpu_saturation::{GpuSaturation, QueueCap, StepFit, StepRoofline, StepSpec};
pub use hang::Hang;
pub use limit_results::LimitResults;
pub use rate_limit::RateLimit;
pub use reset::{Reset, ResetCode, ResetScope};
pub use score_noise::ScoreNoise;
pub use shuffle_results::ShuffleResults;
pub use stale_results::StaleResults;
pub use stall::Stall;
pub use stream_error::StreamError;
pub use token_delay::TokenDelay;
pub use token_rate::TokenRate;
pub use truncate::{Truncate, TruncateEnding};

/// What every fault says about itself: everything about a fault except what it
/// does to a live exchange. Implemented once per fault, in the fault's own file.
pub(crate) trait Fault {
    /// The `type` name as written in files; also the name in `x-brownout-fault`,
    /// records and metrics labels, so it never changes for an existing fault.
    fn name(&self) -> &'static str;

    /// Where in the exchange this fault acts.
    fn side(&self) -> Side;

    /// Whether this fault, once it acts, ends the exchange before the upstream
    /// answers (`explain` warns that faults listed after it never apply).
    fn is_terminal(&self) -> bool {
        false
    }

    /// Whether an error this fault may answer names the request's model, so the
    /// proxy reads the request body for it even when no rule matches on the body.
    fn names_model(&self) -> bool {
        false
    }

    /// Whether the fault's own work reads the request body (a prompt estimate,
    /// `max_tokens`), so a profile holding it reads bodies as a body match does.
    fn reads_body(&self) -> bool {
        false
    }

    /// What serde cannot check: ranges, known presets, fields that need each
    /// other. Problems go to `cx`, positioned under `base`.
    fn validate(&self, cx: &mut Cx<'_>, base: &[PathSeg<'_>]);

    /// What the fault does, in words for `brownout explain`.
    fn explain(&self) -> String;

    /// The state the fault keeps across requests, built once per rule.
    fn state(&self) -> FaultState {
        FaultState::Stateless
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
/// (`faults_skipped[].reason`), for the reasons the proxy decides itself: the kill
/// switch, `max_active`, request-side faults that could not act, body faults that
/// never fired or met a tunnel, and body faults the response's kind, encoding or
/// size leaves nothing to act on. Reasons found inside a response body have their
/// own types beside the code that finds them ([`crate::vector::Skip`],
/// [`crate::stream::content::Skip`], [`crate::grpc::milvus::Skip`]). The strings are a contract with every reader
/// of records (reports, the drill, dashboards): never change one.
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
    /// A vector fault on an endpoint that is neither a search, a query nor
    /// embeddings (an upsert, a listing, a chat).
    WrongEndpoint,
    /// The response body is compressed: brownout does not decode it to rewrite it.
    Compressed,
    /// The whole answer to rewrite is larger than `inspect_limit`.
    OverInspectLimit,
    /// A content fault on a gRPC answer: protobuf has no text brownout rewrites.
    GrpcProtobuf,
    /// A vector fault on a gRPC stream that also carries stream faults: the
    /// answer is not held whole while its messages are shaped.
    WithStreamFaults,
    /// A gRPC answer to rewrite that was not exactly one message.
    NotOneMessage,
    /// A stream fault on a response that is not a stream.
    NotAStream,
    /// A vector fault on an answer with an error status: it holds no results.
    ErrorStatus,
    /// A vector fault on a gRPC call brownout cannot rewrite (anything but a
    /// Milvus `Search`).
    NotSupportedOnGrpc,
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
            SkipReason::WrongEndpoint => "wrong_endpoint",
            SkipReason::Compressed => "compressed",
            SkipReason::OverInspectLimit => "over_inspect_limit",
            SkipReason::GrpcProtobuf => "grpc_protobuf",
            SkipReason::WithStreamFaults => "with_stream_faults",
            SkipReason::NotOneMessage => "not_one_message",
            SkipReason::NotAStream => "not_a_stream",
            SkipReason::ErrorStatus => "error_status",
            SkipReason::NotSupportedOnGrpc => "not_supported_on_grpc",
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
        spec.as_fault().state()
    }
}

/// The fault catalog, tagged by `type` in files.
///
/// The loader in [`crate::yaml`] reads the `type` key as the variant name and the
/// remaining keys as the variant's fields, so positions and `deny_unknown_fields`
/// survive (serde's own internal tagging buffers and loses both).
#[derive(Debug, Clone, PartialEq, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
#[schemars(tag = "type")]
pub enum FaultSpec {
    Delay(Delay),
    Error(Error),
    Reset(Reset),
    Hang(Hang),
    Bandwidth(Bandwidth),
    GpuSaturation(GpuSaturation),
    ColdStart(ColdStart),
    ConcurrencyLimit(ConcurrencyLimit),
    RateLimit(RateLimit),

    // --- Response side, streams: act on content-bearing events ("tokens") ---
    FirstTokenDelay(FirstTokenDelay),
    TokenDelay(TokenDelay),
    TokenRate(TokenRate),
    Stall(Stall),
    Truncate(Truncate),
    StreamError(StreamError),
    Corrupt(Corrupt),

    // --- Response side, content (streaming and non-streaming) ---
    Garble(Garble),
    EmptyCompletion(EmptyCompletion),
    FinishReason(FinishReason),

    // --- Response side, vector search and embeddings (see docs/vector-faults.md) ---
    DropResults(DropResults),
    ShuffleResults(ShuffleResults),
    LimitResults(LimitResults),
    StaleResults(StaleResults),
    ScoreNoise(ScoreNoise),
    EmptyResults(EmptyResults),
    EmbeddingNoise(EmbeddingNoise),
    EmbeddingTruncate(EmbeddingTruncate),
}

impl FaultSpec {
    /// The fault's own description of itself. The one match over every fault in
    /// this crate: a new variant does not compile until it is added here.
    pub(crate) fn as_fault(&self) -> &dyn Fault {
        match self {
            FaultSpec::Delay(f) => f,
            FaultSpec::Error(f) => f,
            FaultSpec::Reset(f) => f,
            FaultSpec::Hang(f) => f,
            FaultSpec::Bandwidth(f) => f,
            FaultSpec::GpuSaturation(f) => f,
            FaultSpec::ColdStart(f) => f,
            FaultSpec::ConcurrencyLimit(f) => f,
            FaultSpec::RateLimit(f) => f,
            FaultSpec::FirstTokenDelay(f) => f,
            FaultSpec::TokenDelay(f) => f,
            FaultSpec::TokenRate(f) => f,
            FaultSpec::Stall(f) => f,
            FaultSpec::Truncate(f) => f,
            FaultSpec::StreamError(f) => f,
            FaultSpec::Corrupt(f) => f,
            FaultSpec::Garble(f) => f,
            FaultSpec::EmptyCompletion(f) => f,
            FaultSpec::FinishReason(f) => f,
            FaultSpec::DropResults(f) => f,
            FaultSpec::ShuffleResults(f) => f,
            FaultSpec::LimitResults(f) => f,
            FaultSpec::StaleResults(f) => f,
            FaultSpec::ScoreNoise(f) => f,
            FaultSpec::EmptyResults(f) => f,
            FaultSpec::EmbeddingNoise(f) => f,
            FaultSpec::EmbeddingTruncate(f) => f,
        }
    }

    /// The `type` name as written in files, used in headers, records and metrics.
    pub fn kind(&self) -> &'static str {
        self.as_fault().name()
    }

    /// Where in the exchange this fault acts.
    pub fn side(&self) -> Side {
        self.as_fault().side()
    }

    /// Whether this fault, once it acts, ends the exchange before the upstream
    /// answers (`explain` warns that faults listed after it never apply).
    pub fn is_terminal(&self) -> bool {
        self.as_fault().is_terminal()
    }

    /// Whether an error this fault may answer names the request's model: an
    /// `error`, `concurrency_limit`, `stream_error` or `gpu_saturation` overflow
    /// whose preset says "Rate limit reached for <model>" (see
    /// [`crate::presets::Preset::names_model`]), and `rate_limit`, whose OpenAI
    /// message names it. The proxy then reads the request body for the model (up
    /// to `inspect_limit`) even when no rule matches on the body.
    pub fn names_model(&self) -> bool {
        self.as_fault().names_model()
    }

    /// Whether the fault's work reads the request body: `rate_limit` charges the
    /// prompt estimate and `max_tokens`, `gpu_saturation` prefills the prompt and
    /// decodes up to `max_tokens`.
    pub fn reads_body(&self) -> bool {
        self.as_fault().reads_body()
    }

    /// The fault in words, for `brownout explain`.
    pub fn explain(&self) -> String {
        self.as_fault().explain()
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
    use super::FaultSpec;

    #[test]
    fn the_schema_names_every_fault_by_its_kind() {
        let schema = crate::schema::profile_schema();
        let kinds: Vec<&str> = schema["definitions"]["FaultSpec"]["oneOf"]
            .as_array()
            .map(|v| {
                v.iter()
                    .filter_map(|f| f["properties"]["type"]["const"].as_str())
                    .collect()
            })
            .unwrap_or_default();
        assert_eq!(kinds.len(), 27, "{kinds:?}");
        let mut seen = std::collections::HashSet::new();
        for k in &kinds {
            assert!(seen.insert(*k), "{k} twice");
        }
    }

    /// A fault named alone takes its defaults, as it did when faults were struct
    /// variants; one with a required field says which.
    #[test]
    fn a_fault_named_alone_takes_its_defaults() {
        let src =
            "version: 1\nname: t\nrules:\n  - faults:\n      - reset\n      - shuffle_results\n";
        let p = crate::validate::load_profile(src, "t.yaml").expect("loads");
        let kinds: Vec<&str> = p.rules[0].faults.iter().map(FaultSpec::kind).collect();
        assert_eq!(kinds, ["reset", "shuffle_results"]);
        assert!(matches!(
            &p.rules[0].faults[0],
            FaultSpec::Reset(super::Reset {
                after_bytes: None,
                scope: None,
                code: None
            })
        ));
        let src = "version: 1\nname: t\nrules:\n  - faults:\n      - delay\n";
        let e = crate::validate::load_profile(src, "t.yaml").expect_err("needs a duration");
        assert!(e.iter().any(|d| d.message.contains("duration")), "{e:?}");
    }
}
