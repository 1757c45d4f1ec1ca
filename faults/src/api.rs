//! API adapters: what kind of request this is (DESIGN "Endpoints by API").
//!
//! Matching and records need the same facts about a request (endpoint, model,
//! stream, a prompt-size estimate, who the client is); computing them once here keeps
//! the proxy's hot path to one pass over the request.

use schemars::JsonSchema;
use serde::Deserialize;

/// The upstream's API family, chosen per listener (`api:`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum ApiKind {
    Openai,
    Anthropic,
    Vllm,
    Tgi,
    Ollama,
    Triton,
    Qdrant,
    Chroma,
    Milvus,
    Weaviate,
    Pinecone,
    #[default]
    Generic,
}

/// What a request does, for `match.endpoint`, records and metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Endpoint {
    Chat,
    Completion,
    Responses,
    Messages,
    Embeddings,
    Search,
    Query,
    Upsert,
    #[default]
    Other,
}

/// Facts about one request, gathered once and shared by matching and recording.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RequestFacts {
    pub api: ApiKind,
    pub endpoint: Endpoint,
    /// The model named in the body, when the body was inspected and names one.
    pub model: Option<String>,
    /// Whether the body asked for a streamed response.
    pub stream: Option<bool>,
    /// Rough prompt size (characters / 4) from the body's text.
    pub prompt_tokens: Option<u64>,
    /// `max_tokens` (or equivalent) from the body, for token-bucket charging.
    pub max_tokens: Option<u64>,
    /// Whether the body was inspected (false: over `inspect_limit` or not JSON), so
    /// body conditions do not match it.
    pub body_inspected: bool,
}
