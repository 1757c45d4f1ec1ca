//! API adapters: what kind of request this is (docs/presets.md).
//!
//! Matching and records need the same facts about a request (endpoint, model,
//! stream, a prompt-size estimate, who the client is); computing them once here keeps
//! the proxy's hot path to one pass over the request.

use std::fmt;

use http::Method;
use schemars::JsonSchema;
use serde::de::{self, DeserializeSeed, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde::{Deserialize, Deserializer};

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

impl ApiKind {
    /// Every API family, in declaration order.
    pub const ALL: [ApiKind; 12] = [
        ApiKind::Openai,
        ApiKind::Anthropic,
        ApiKind::Vllm,
        ApiKind::Tgi,
        ApiKind::Ollama,
        ApiKind::Triton,
        ApiKind::Qdrant,
        ApiKind::Chroma,
        ApiKind::Milvus,
        ApiKind::Weaviate,
        ApiKind::Pinecone,
        ApiKind::Generic,
    ];

    /// The name as written in configs, and as records (`api`) and metrics labels
    /// carry it: part of the record format, so it never changes.
    pub fn as_str(self) -> &'static str {
        match self {
            ApiKind::Openai => "openai",
            ApiKind::Anthropic => "anthropic",
            ApiKind::Vllm => "vllm",
            ApiKind::Tgi => "tgi",
            ApiKind::Ollama => "ollama",
            ApiKind::Triton => "triton",
            ApiKind::Qdrant => "qdrant",
            ApiKind::Chroma => "chroma",
            ApiKind::Milvus => "milvus",
            ApiKind::Weaviate => "weaviate",
            ApiKind::Pinecone => "pinecone",
            ApiKind::Generic => "generic",
        }
    }
}

impl fmt::Display for ApiKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Endpoint {
    /// Every endpoint, in declaration order.
    pub const ALL: [Endpoint; 9] = [
        Endpoint::Chat,
        Endpoint::Completion,
        Endpoint::Responses,
        Endpoint::Messages,
        Endpoint::Embeddings,
        Endpoint::Search,
        Endpoint::Query,
        Endpoint::Upsert,
        Endpoint::Other,
    ];

    /// The name as written in `match.endpoint`, and as records (`endpoint`) and
    /// metrics labels carry it: part of the record format, so it never changes.
    pub fn as_str(self) -> &'static str {
        match self {
            Endpoint::Chat => "chat",
            Endpoint::Completion => "completion",
            Endpoint::Responses => "responses",
            Endpoint::Messages => "messages",
            Endpoint::Embeddings => "embeddings",
            Endpoint::Search => "search",
            Endpoint::Query => "query",
            Endpoint::Upsert => "upsert",
            Endpoint::Other => "other",
        }
    }

    /// Endpoints whose answers are model output (text, tokens, vectors): the ones
    /// whose bodies carry a model, a prompt and token usage.
    pub fn is_generative(self) -> bool {
        matches!(
            self,
            Endpoint::Chat
                | Endpoint::Completion
                | Endpoint::Responses
                | Endpoint::Messages
                | Endpoint::Embeddings
        )
    }
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
    /// Whether the request is a gRPC call (`content-type: application/grpc*`).
    pub grpc: bool,
}

// ---------------------------------------------------------------------------
// Endpoint classification
// ---------------------------------------------------------------------------

/// Which endpoint a request is for, from its method and path alone (`docs/presets.md` has the
/// full table).
///
/// Runs on every request before anything else, so it only compares path
/// suffixes and segments: no allocation, no regex. The query string and a
/// trailing `/` are ignored. Suffixes rather than whole paths are compared so
/// that gateways that mount an API under a prefix (`/openai/deployments/x/...`,
/// `/proxy/v1/...`) still classify. Only the methods that do the work count
/// (`POST`, and `PUT`/`PATCH` for the upsert routes that use them): `GET
/// /v1/chat/completions` lists stored completions and `POST
/// /collections/{c}/points` in Qdrant fetches points, so both are `other`.
pub fn classify(api: ApiKind, method: &Method, path: &str) -> Endpoint {
    let path = trim_path(path);
    if let Some(e) = grpc_route(path) {
        return e;
    }
    let m = MethodKind::of(method);
    let found = match api {
        ApiKind::Openai | ApiKind::Vllm => openai_route(m, path),
        ApiKind::Anthropic => anthropic_route(m, path),
        ApiKind::Tgi => tgi_route(m, path).or_else(|| openai_route(m, path)),
        ApiKind::Ollama => ollama_route(m, path).or_else(|| openai_route(m, path)),
        ApiKind::Triton => triton_route(m, path),
        ApiKind::Qdrant => qdrant_route(m, path),
        ApiKind::Chroma => chroma_route(m, path),
        ApiKind::Milvus => milvus_route(m, path),
        ApiKind::Weaviate => weaviate_route(m, path),
        ApiKind::Pinecone => pinecone_route(m, path),
        ApiKind::Generic => generic_route(m, path),
    };
    found.unwrap_or(Endpoint::Other)
}

/// gRPC methods (`/package.Service/Method`) of the servers brownout fronts. A
/// gRPC path names its service in full, so it is read whatever the listener's
/// api: a `milvus` listener and a `generic` one classify a Milvus call alike.
fn grpc_route(path: &str) -> Option<Endpoint> {
    let (service, method) = path.strip_prefix('/')?.split_once('/')?;
    let e = match (service, method) {
        ("milvus.proto.milvus.MilvusService", "Search" | "HybridSearch") => Endpoint::Search,
        ("milvus.proto.milvus.MilvusService", "Query") => Endpoint::Query,
        ("milvus.proto.milvus.MilvusService", "Insert" | "Upsert") => Endpoint::Upsert,
        ("qdrant.Points", "Search" | "SearchBatch" | "SearchGroups") => Endpoint::Search,
        ("qdrant.Points", "Query" | "QueryBatch" | "QueryGroups") => Endpoint::Query,
        ("qdrant.Points", "Upsert") => Endpoint::Upsert,
        ("weaviate.v1.Weaviate", "Search") => Endpoint::Search,
        ("weaviate.v1.Weaviate", "BatchObjects") => Endpoint::Upsert,
        ("inference.GRPCInferenceService", "ModelInfer" | "ModelStreamInfer") => {
            Endpoint::Completion
        }
        (
            "milvus.proto.milvus.MilvusService"
            | "qdrant.Points"
            | "qdrant.Collections"
            | "weaviate.v1.Weaviate"
            | "inference.GRPCInferenceService",
            _,
        ) => Endpoint::Other,
        _ => return None,
    };
    Some(e)
}

/// The methods classification cares about.
#[derive(Clone, Copy, PartialEq, Eq)]
enum MethodKind {
    Post,
    Put,
    Patch,
    Else,
}

impl MethodKind {
    fn of(method: &Method) -> Self {
        if method == Method::POST {
            MethodKind::Post
        } else if method == Method::PUT {
            MethodKind::Put
        } else if method == Method::PATCH {
            MethodKind::Patch
        } else {
            MethodKind::Else
        }
    }
}

/// The path without query string, fragment or trailing slashes.
fn trim_path(path: &str) -> &str {
    let end = path.find(['?', '#']).unwrap_or(path.len());
    path[..end].trim_end_matches('/')
}

fn openai_route(m: MethodKind, path: &str) -> Option<Endpoint> {
    if m != MethodKind::Post {
        return None;
    }
    if path.ends_with("/chat/completions") {
        Some(Endpoint::Chat)
    } else if path.ends_with("/completions") {
        Some(Endpoint::Completion)
    } else if path.ends_with("/responses") {
        Some(Endpoint::Responses)
    } else if path.ends_with("/embeddings") {
        Some(Endpoint::Embeddings)
    } else if path.ends_with("/v1/messages") {
        // Anthropic's Messages API, which OpenAI-compatible servers (vLLM, LiteLLM,
        // gateways) serve beside their own routes: a `match: {endpoint: messages}`
        // rule must see it whatever the listener's `api`. Only `/v1/messages` itself:
        // the Assistants API's `/v1/threads/{id}/messages` stays `other`.
        Some(Endpoint::Messages)
    } else {
        None
    }
}

fn anthropic_route(m: MethodKind, path: &str) -> Option<Endpoint> {
    (m == MethodKind::Post && path.ends_with("/v1/messages")).then_some(Endpoint::Messages)
}

fn tgi_route(m: MethodKind, path: &str) -> Option<Endpoint> {
    if m != MethodKind::Post {
        return None;
    }
    // Text Embeddings Inference (TEI), served under the same `api: tgi`.
    if path == "/embed" {
        return Some(Endpoint::Embeddings);
    }
    // `POST /` is TGI's compatibility route: generate or generate_stream by body.
    (path.is_empty() || path == "/generate" || path == "/generate_stream")
        .then_some(Endpoint::Completion)
}

fn ollama_route(m: MethodKind, path: &str) -> Option<Endpoint> {
    if m != MethodKind::Post {
        return None;
    }
    if path.ends_with("/api/chat") {
        Some(Endpoint::Chat)
    } else if path.ends_with("/api/generate") {
        Some(Endpoint::Completion)
    } else if path.ends_with("/api/embed") || path.ends_with("/api/embeddings") {
        Some(Endpoint::Embeddings)
    } else {
        None
    }
}

/// KServe v2: `/v2/models/{m}[/versions/{v}]/infer`, plus Triton's generate
/// extension (`generate`, `generate_stream`), which serves LLMs the same way.
fn triton_route(m: MethodKind, path: &str) -> Option<Endpoint> {
    if m != MethodKind::Post {
        return None;
    }
    let at = path.find("/v2/models/")?;
    let mut segs = path[at + "/v2/models/".len()..].split('/');
    let model = segs.next()?;
    if model.is_empty() {
        return None;
    }
    let mut action = segs.next()?;
    if action == "versions" {
        let version = segs.next()?;
        if version.is_empty() {
            return None;
        }
        action = segs.next()?;
    }
    let known = matches!(action, "infer" | "generate" | "generate_stream");
    (known && segs.next().is_none()).then_some(Endpoint::Completion)
}

fn qdrant_route(m: MethodKind, path: &str) -> Option<Endpoint> {
    if !path.contains("/collections/") {
        return None;
    }
    match m {
        MethodKind::Post => {
            if path.ends_with("/points/search")
                || path.ends_with("/points/search/batch")
                || path.ends_with("/points/search/groups")
            {
                Some(Endpoint::Search)
            } else if path.ends_with("/points/query")
                || path.ends_with("/points/query/batch")
                || path.ends_with("/points/query/groups")
            {
                Some(Endpoint::Query)
            } else {
                None
            }
        }
        MethodKind::Put if path.ends_with("/points") => Some(Endpoint::Upsert),
        _ => None,
    }
}

/// Chroma v1 and v2: `.../collections/{id}/{query|add|upsert}`.
fn chroma_route(m: MethodKind, path: &str) -> Option<Endpoint> {
    if m != MethodKind::Post {
        return None;
    }
    let mut segs = path.rsplit('/');
    let action = segs.next()?;
    let id = segs.next()?;
    if id.is_empty() || segs.next()? != "collections" {
        return None;
    }
    match action {
        "query" => Some(Endpoint::Query),
        "add" | "upsert" => Some(Endpoint::Upsert),
        _ => None,
    }
}

fn milvus_route(m: MethodKind, path: &str) -> Option<Endpoint> {
    if m != MethodKind::Post {
        return None;
    }
    let at = path.rfind("/vectordb/entities/")?;
    match &path[at + "/vectordb/entities/".len()..] {
        "search" | "hybrid_search" | "advanced_search" => Some(Endpoint::Search),
        "query" | "get" => Some(Endpoint::Query),
        "insert" | "upsert" => Some(Endpoint::Upsert),
        _ => None,
    }
}

fn weaviate_route(m: MethodKind, path: &str) -> Option<Endpoint> {
    if m == MethodKind::Post
        && (path.ends_with("/v1/graphql") || path.ends_with("/v1/graphql/batch"))
    {
        // Path alone for now; nearVector/nearText detection needs the body.
        return Some(Endpoint::Search);
    }
    if m == MethodKind::Post && path.ends_with("/v1/batch/objects") {
        return Some(Endpoint::Upsert);
    }
    let at = path.find("/v1/objects")?;
    let rest = &path[at + "/v1/objects".len()..];
    if !(rest.is_empty() || rest.starts_with('/')) {
        return None;
    }
    // POST creates; PUT replaces and PATCH merges `/v1/objects/{class}/{id}`.
    let write = match m {
        MethodKind::Post => rest.is_empty(),
        MethodKind::Put | MethodKind::Patch => !rest.is_empty(),
        MethodKind::Else => false,
    };
    write.then_some(Endpoint::Upsert)
}

fn pinecone_route(m: MethodKind, path: &str) -> Option<Endpoint> {
    if m != MethodKind::Post {
        return None;
    }
    if path.ends_with("/vectors/upsert") {
        Some(Endpoint::Upsert)
    } else if path == "/query" || path.ends_with("/query") {
        Some(Endpoint::Query)
    } else {
        None
    }
}

/// `generic`: try every API's routes, most specific first, so that a listener
/// in front of an unknown mix still gets useful endpoints.
fn generic_route(m: MethodKind, path: &str) -> Option<Endpoint> {
    triton_route(m, path)
        .or_else(|| milvus_route(m, path))
        .or_else(|| qdrant_route(m, path))
        .or_else(|| chroma_route(m, path))
        .or_else(|| ollama_route(m, path))
        .or_else(|| anthropic_route(m, path))
        .or_else(|| openai_route(m, path))
        .or_else(|| weaviate_route(m, path))
        .or_else(|| pinecone_route(m, path))
        .or_else(|| tgi_route(m, path).filter(|_| !path.is_empty()))
}

/// Whether the path alone says the response streams, for APIs that choose by
/// route rather than by a body field: TGI's `/generate_stream` (and `/generate`,
/// which never streams) and Triton's `generate_stream`.
pub fn stream_from_path(api: ApiKind, path: &str) -> Option<bool> {
    let path = trim_path(path);
    match api {
        ApiKind::Tgi | ApiKind::Triton | ApiKind::Generic => {
            if path.ends_with("/generate_stream") {
                Some(true)
            } else if path.ends_with("/generate") && !path.ends_with("/api/generate") {
                Some(false)
            } else {
                None
            }
        }
        _ => None,
    }
}

// ---------------------------------------------------------------------------
// Body inspection
// ---------------------------------------------------------------------------

/// What the request body says about the request (`RequestFacts`' body half).
///
/// Kept separate from `RequestFacts` so the body can be looked at later than
/// the head (after it has been read up to `inspect_limit`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BodyFacts {
    /// `model`, when the body names one as a string.
    pub model: Option<String>,
    /// Whether a streamed response was asked for, with the API's default applied
    /// when the field is absent (true for Ollama's native routes, false elsewhere).
    pub stream: Option<bool>,
    /// ceil(characters of prompt text / 4), plus one per token id for prompts
    /// given as token arrays.
    pub prompt_tokens: Option<u64>,
    /// The output cap: `max_tokens`, `max_completion_tokens`,
    /// `max_output_tokens`, Ollama's `options.num_predict` or TGI's
    /// `parameters.max_new_tokens`.
    pub max_tokens: Option<u64>,
}

/// The request shapes `inspect_body` knows.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Dialect {
    /// OpenAI-shaped (OpenAI, vLLM, and the `/v1` routes of TGI and Ollama).
    Openai,
    Anthropic,
    /// Ollama's native `/api/*` routes.
    Ollama,
    /// TGI's native `/generate`, `/generate_stream` and `/`.
    Tgi,
}

/// Read model, stream, prompt size and output cap from a JSON request body.
///
/// Never fails and never panics: a body that is not a JSON object of the
/// expected shape gives all `None`, and a field of an unexpected type is
/// ignored rather than spoiling the rest. It deserialises into small borrowed
/// structs, counting text as it goes, so no JSON tree or prompt copy is built.
/// For Ollama and TGI it assumes the native routes; `inspect_request` tells
/// them apart from their OpenAI-compatible `/v1` routes by path.
pub fn inspect_body(api: ApiKind, endpoint: Endpoint, body: &[u8]) -> BodyFacts {
    let dialect = match api {
        ApiKind::Anthropic => Dialect::Anthropic,
        ApiKind::Ollama => Dialect::Ollama,
        ApiKind::Tgi => Dialect::Tgi,
        _ if endpoint == Endpoint::Messages => Dialect::Anthropic,
        _ => Dialect::Openai,
    };
    inspect_dialect(dialect, endpoint, body)
}

/// Classify a request and read its body in one call: what the proxy needs per
/// request. `body` is `None` when it was not read (over `inspect_limit`, not
/// JSON), which leaves the body facts unset and `body_inspected` false so body
/// conditions do not match.
pub fn inspect_request(
    api: ApiKind,
    method: &Method,
    path: &str,
    body: Option<&[u8]>,
) -> RequestFacts {
    let endpoint = classify(api, method, path);
    let mut facts = RequestFacts {
        api,
        endpoint,
        ..RequestFacts::default()
    };
    let Some(body) = body else {
        return facts;
    };
    let trimmed = trim_path(path);
    let native_ollama = trimmed.contains("/api/");
    let dialect = match api {
        ApiKind::Ollama if native_ollama => Dialect::Ollama,
        ApiKind::Tgi if stream_from_path(api, path).is_some() || trimmed.is_empty() => Dialect::Tgi,
        ApiKind::Generic if native_ollama && trimmed.ends_with("/api/chat") => Dialect::Ollama,
        ApiKind::Generic if native_ollama && trimmed.ends_with("/api/generate") => Dialect::Ollama,
        ApiKind::Generic if stream_from_path(api, path).is_some() => Dialect::Tgi,
        _ if endpoint == Endpoint::Messages => Dialect::Anthropic,
        _ => Dialect::Openai,
    };
    let mut found = inspect_dialect(dialect, endpoint, body);
    if let (Dialect::Tgi, Some(by_path)) = (dialect, stream_from_path(api, path)) {
        found.stream = Some(by_path);
    }
    facts.body_inspected = found != BodyFacts::default();
    facts.model = found.model;
    facts.stream = found.stream;
    facts.prompt_tokens = found.prompt_tokens;
    facts.max_tokens = found.max_tokens;
    facts
}

fn inspect_dialect(dialect: Dialect, endpoint: Endpoint, body: &[u8]) -> BodyFacts {
    let generative = endpoint.is_generative();
    if !generative {
        return BodyFacts::default();
    }
    // Only a JSON object is a request body (serde would also read a struct from
    // an array, positionally).
    if body.iter().find(|b| !b.is_ascii_whitespace()) != Some(&b'{') {
        return BodyFacts::default();
    }
    let Ok(raw) = serde_json::from_slice::<RawBody>(body) else {
        return BodyFacts::default();
    };
    let mut text = raw.messages;
    for part in [
        raw.prompt,
        raw.input,
        raw.system,
        raw.instructions,
        raw.inputs,
    ] {
        text.add(part);
    }
    let stream_default = dialect == Dialect::Ollama && endpoint != Endpoint::Embeddings;
    let max_tokens = match dialect {
        Dialect::Ollama => raw.options.0,
        Dialect::Tgi => raw.parameters.0,
        Dialect::Openai | Dialect::Anthropic => raw
            .max_tokens
            .0
            .or(raw.max_completion_tokens.0)
            .or(raw.max_output_tokens.0),
    };
    BodyFacts {
        model: raw.model.0,
        stream: Some(raw.stream.0.unwrap_or(stream_default)),
        prompt_tokens: Some(text.tokens()),
        max_tokens,
    }
}

/// The fields of every known request shape that inspection reads; the rest are
/// skipped without being built.
#[derive(Deserialize)]
struct RawBody {
    #[serde(default)]
    model: LenientString,
    #[serde(default)]
    stream: LenientBool,
    #[serde(default)]
    max_tokens: LenientU64,
    #[serde(default)]
    max_completion_tokens: LenientU64,
    #[serde(default)]
    max_output_tokens: LenientU64,
    #[serde(default)]
    messages: TextSize,
    #[serde(default)]
    prompt: TextSize,
    #[serde(default)]
    input: TextSize,
    #[serde(default)]
    system: TextSize,
    #[serde(default)]
    instructions: TextSize,
    #[serde(default)]
    inputs: TextSize,
    #[serde(default)]
    options: OllamaOptions,
    #[serde(default)]
    parameters: TgiParameters,
}

/// Ollama's `options.num_predict`.
#[derive(Default)]
struct OllamaOptions(Option<u64>);

/// TGI's `parameters.max_new_tokens`.
#[derive(Default)]
struct TgiParameters(Option<u64>);

impl<'de> Deserialize<'de> for OllamaOptions {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(NestedCount("num_predict"))
            .map(OllamaOptions)
    }
}

impl<'de> Deserialize<'de> for TgiParameters {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(NestedCount("max_new_tokens"))
            .map(TgiParameters)
    }
}

/// Reads one count-valued key from an object; any other value (or a missing
/// key) gives `None` instead of an error.
struct NestedCount(&'static str);

impl<'de> Visitor<'de> for NestedCount {
    type Value = Option<u64>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Option<u64>, A::Error> {
        let mut found = None;
        while let Some(is_it) = map.next_key_seed(KeyEq(self.0))? {
            if is_it {
                found = map.next_value::<LenientU64>()?.0;
            } else {
                map.next_value::<IgnoredAny>()?;
            }
        }
        Ok(found)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Option<u64>, A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(None)
    }

    fn visit_str<E: de::Error>(self, _: &str) -> Result<Option<u64>, E> {
        Ok(None)
    }

    fn visit_bool<E: de::Error>(self, _: bool) -> Result<Option<u64>, E> {
        Ok(None)
    }

    fn visit_u64<E: de::Error>(self, _: u64) -> Result<Option<u64>, E> {
        Ok(None)
    }

    fn visit_i64<E: de::Error>(self, _: i64) -> Result<Option<u64>, E> {
        Ok(None)
    }

    fn visit_f64<E: de::Error>(self, _: f64) -> Result<Option<u64>, E> {
        Ok(None)
    }

    fn visit_unit<E: de::Error>(self) -> Result<Option<u64>, E> {
        Ok(None)
    }
}

/// Deserialises an object key to "is it this one", without allocating it.
struct KeyEq(&'static str);

impl<'de> DeserializeSeed<'de> for KeyEq {
    type Value = bool;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<bool, D::Error> {
        d.deserialize_str(self)
    }
}

impl Visitor<'_> for KeyEq {
    type Value = bool;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a key")
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<bool, E> {
        Ok(v == self.0)
    }
}

/// A string field that tolerates any other JSON type (as absent).
#[derive(Default)]
struct LenientString(Option<String>);

/// A bool field that tolerates any other JSON type (as absent).
#[derive(Default)]
struct LenientBool(Option<bool>);

/// A count that tolerates other types and negatives (Ollama's `-1`, "no limit")
/// as absent.
#[derive(Default)]
struct LenientU64(Option<u64>);

/// Prompt text found under a field: characters of text, and token ids given as
/// integers (`prompt: [1, 2, 3]`).
#[derive(Default, Clone, Copy)]
struct TextSize {
    chars: u64,
    token_ids: u64,
}

impl TextSize {
    fn add(&mut self, other: TextSize) {
        self.chars = self.chars.saturating_add(other.chars);
        self.token_ids = self.token_ids.saturating_add(other.token_ids);
    }

    /// ceil(chars / 4) + token ids.
    fn tokens(&self) -> u64 {
        self.chars.div_ceil(4).saturating_add(self.token_ids)
    }
}

/// Implements `Deserialize` for a lenient field type: the listed visit methods
/// keep what they can, and every other JSON value (null, arrays, objects) reads
/// as the type's default instead of failing the whole body.
macro_rules! lenient_visitor {
    ($ty:ident, $expect:literal, { $($body:tt)* }) => {
        impl<'de> Deserialize<'de> for $ty {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                struct V;
                impl<'de> Visitor<'de> for V {
                    type Value = $ty;
                    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                        f.write_str($expect)
                    }
                    $($body)*
                    fn visit_unit<E: de::Error>(self) -> Result<$ty, E> {
                        Ok($ty::default())
                    }
                    fn visit_none<E: de::Error>(self) -> Result<$ty, E> {
                        Ok($ty::default())
                    }
                    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<$ty, A::Error> {
                        while seq.next_element::<IgnoredAny>()?.is_some() {}
                        Ok($ty::default())
                    }
                    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<$ty, A::Error> {
                        while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
                        Ok($ty::default())
                    }
                }
                d.deserialize_any(V)
            }
        }
    };
}

lenient_visitor!(LenientString, "a string", {
    fn visit_str<E: de::Error>(self, v: &str) -> Result<LenientString, E> {
        Ok(LenientString(Some(v.to_string())))
    }
    fn visit_bool<E: de::Error>(self, _: bool) -> Result<LenientString, E> {
        Ok(LenientString(None))
    }
    fn visit_u64<E: de::Error>(self, _: u64) -> Result<LenientString, E> {
        Ok(LenientString(None))
    }
    fn visit_i64<E: de::Error>(self, _: i64) -> Result<LenientString, E> {
        Ok(LenientString(None))
    }
    fn visit_f64<E: de::Error>(self, _: f64) -> Result<LenientString, E> {
        Ok(LenientString(None))
    }
});

lenient_visitor!(LenientBool, "a bool", {
    fn visit_bool<E: de::Error>(self, v: bool) -> Result<LenientBool, E> {
        Ok(LenientBool(Some(v)))
    }
    fn visit_str<E: de::Error>(self, _: &str) -> Result<LenientBool, E> {
        Ok(LenientBool(None))
    }
    fn visit_u64<E: de::Error>(self, _: u64) -> Result<LenientBool, E> {
        Ok(LenientBool(None))
    }
    fn visit_i64<E: de::Error>(self, _: i64) -> Result<LenientBool, E> {
        Ok(LenientBool(None))
    }
    fn visit_f64<E: de::Error>(self, _: f64) -> Result<LenientBool, E> {
        Ok(LenientBool(None))
    }
});

lenient_visitor!(LenientU64, "a count", {
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<LenientU64, E> {
        Ok(LenientU64(Some(v)))
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<LenientU64, E> {
        Ok(LenientU64(u64::try_from(v).ok()))
    }
    fn visit_f64<E: de::Error>(self, _: f64) -> Result<LenientU64, E> {
        Ok(LenientU64(None))
    }
    fn visit_str<E: de::Error>(self, _: &str) -> Result<LenientU64, E> {
        Ok(LenientU64(None))
    }
    fn visit_bool<E: de::Error>(self, _: bool) -> Result<LenientU64, E> {
        Ok(LenientU64(None))
    }
});

/// Walks any JSON value and sizes the prompt text in it: strings count their
/// characters, integers in arrays count as token ids, and objects are entered
/// only through `text` and `content` keys (message content, content parts,
/// Anthropic blocks, Responses input items), so roles, ids, image data and tool
/// schemas do not count. serde_json's recursion limit bounds the nesting.
impl<'de> Deserialize<'de> for TextSize {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(TextVisitor)
    }
}

struct TextVisitor;

impl<'de> Visitor<'de> for TextVisitor {
    type Value = TextSize;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("prompt text")
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<TextSize, E> {
        Ok(TextSize {
            chars: v.chars().count() as u64,
            token_ids: 0,
        })
    }

    fn visit_u64<E: de::Error>(self, _: u64) -> Result<TextSize, E> {
        Ok(TextSize {
            chars: 0,
            token_ids: 1,
        })
    }

    fn visit_i64<E: de::Error>(self, _: i64) -> Result<TextSize, E> {
        Ok(TextSize {
            chars: 0,
            token_ids: 1,
        })
    }

    fn visit_f64<E: de::Error>(self, _: f64) -> Result<TextSize, E> {
        Ok(TextSize::default())
    }

    fn visit_bool<E: de::Error>(self, _: bool) -> Result<TextSize, E> {
        Ok(TextSize::default())
    }

    fn visit_unit<E: de::Error>(self) -> Result<TextSize, E> {
        Ok(TextSize::default())
    }

    fn visit_none<E: de::Error>(self) -> Result<TextSize, E> {
        Ok(TextSize::default())
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<TextSize, A::Error> {
        let mut total = TextSize::default();
        while let Some(part) = seq.next_element::<TextSize>()? {
            total.add(part);
        }
        Ok(total)
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<TextSize, A::Error> {
        let mut total = TextSize::default();
        while let Some(key) = map.next_key::<TextKey>()? {
            if key.0 {
                total.add(map.next_value::<TextSize>()?);
            } else {
                map.next_value::<IgnoredAny>()?;
            }
        }
        Ok(total)
    }
}

/// An object key, reduced to "does it hold prompt text" without allocating.
struct TextKey(bool);

impl<'de> Deserialize<'de> for TextKey {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = TextKey;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a key")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<TextKey, E> {
                Ok(TextKey(matches!(v, "text" | "content")))
            }
        }
        d.deserialize_str(V)
    }
}

// ---------------------------------------------------------------------------
// Client shares
// ---------------------------------------------------------------------------

/// Where a client falls in [0, 100), for `clients: {percent: N}` (the client is
/// chosen when the share is below N).
///
/// Every sidecar must choose the same clients, across restarts, versions and
/// platforms, so this cannot use std's `RandomState` or `DefaultHasher` (random
/// per process, unspecified across releases). The algorithm is fixed and part
/// of the contract: FNV-1a 64 (offset basis 0xcbf29ce484222325, prime
/// 0x100000001b3) over the seed's 8 little-endian bytes followed by the key's
/// UTF-8 bytes, then the splitmix64 finaliser (FNV's low bits mix poorly); the
/// top 53 bits, as a fraction of 2^53, times 100.
pub fn client_share(seed: u64, key: &str) -> f64 {
    const OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
    const PRIME: u64 = 0x0000_0100_0000_01b3;
    let mut h = OFFSET;
    for &b in seed.to_le_bytes().iter().chain(key.as_bytes()) {
        h ^= u64::from(b);
        h = h.wrapping_mul(PRIME);
    }
    // splitmix64 finaliser.
    h = (h ^ (h >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    h = (h ^ (h >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    h ^= h >> 31;
    (h >> 11) as f64 / (1u64 << 53) as f64 * 100.0
}

/// Token usage from a non-streaming answer: (input, output). Reads OpenAI
/// (`usage.prompt_tokens` / `completion_tokens`, or `input_tokens` / `output_tokens`
/// for the Responses API), Anthropic (`usage.input_tokens` / `output_tokens`),
/// Ollama (`prompt_eval_count` / `eval_count`) and TGI (`details.generated_tokens`).
/// Anything else, garbage included, gives `(None, None)`.
pub fn usage_from_json(body: &[u8]) -> (Option<u64>, Option<u64>) {
    #[derive(Deserialize, Default)]
    struct Usage {
        prompt_tokens: Option<u64>,
        completion_tokens: Option<u64>,
        input_tokens: Option<u64>,
        output_tokens: Option<u64>,
    }
    #[derive(Deserialize, Default)]
    struct Details {
        generated_tokens: Option<u64>,
    }
    #[derive(Deserialize)]
    struct Answer {
        #[serde(default)]
        usage: Option<Usage>,
        #[serde(default)]
        prompt_eval_count: Option<u64>,
        #[serde(default)]
        eval_count: Option<u64>,
        #[serde(default)]
        details: Option<Details>,
    }
    let Ok(a) = serde_json::from_slice::<Answer>(body) else {
        return (None, None);
    };
    let u = a.usage.unwrap_or_default();
    let input = u.prompt_tokens.or(u.input_tokens).or(a.prompt_eval_count);
    let output = u
        .completion_tokens
        .or(u.output_tokens)
        .or(a.eval_count)
        .or(a.details.and_then(|d| d.generated_tokens));
    (input, output)
}

#[cfg(test)]
mod usage_tests {
    use super::usage_from_json;

    #[test]
    fn reads_each_provider() {
        assert_eq!(
            usage_from_json(br#"{"choices":[],"usage":{"prompt_tokens":9,"completion_tokens":12,"total_tokens":21}}"#),
            (Some(9), Some(12))
        );
        assert_eq!(
            usage_from_json(br#"{"type":"message","usage":{"input_tokens":5,"output_tokens":7}}"#),
            (Some(5), Some(7))
        );
        assert_eq!(
            usage_from_json(br#"{"done":true,"prompt_eval_count":3,"eval_count":4}"#),
            (Some(3), Some(4))
        );
        assert_eq!(
            usage_from_json(br#"[{"generated_text":"x","details":{"generated_tokens":6}}]"#),
            (None, None)
        );
        assert_eq!(
            usage_from_json(br#"{"generated_text":"x","details":{"generated_tokens":6}}"#),
            (None, Some(6))
        );
        assert_eq!(usage_from_json(b"not json"), (None, None));
        assert_eq!(usage_from_json(br#"{"usage":null}"#), (None, None));
    }
}

#[cfg(test)]
mod grpc_tests {
    use super::{classify, ApiKind, Endpoint};
    use http::Method;

    #[test]
    fn grpc_methods_classify_whatever_the_listener_api() {
        let post = Method::POST;
        for api in [ApiKind::Milvus, ApiKind::Generic, ApiKind::Openai] {
            let c = |p| classify(api, &post, p);
            assert_eq!(
                c("/milvus.proto.milvus.MilvusService/Search"),
                Endpoint::Search
            );
            assert_eq!(
                c("/milvus.proto.milvus.MilvusService/Query"),
                Endpoint::Query
            );
            assert_eq!(
                c("/milvus.proto.milvus.MilvusService/Insert"),
                Endpoint::Upsert
            );
            assert_eq!(
                c("/milvus.proto.milvus.MilvusService/Upsert"),
                Endpoint::Upsert
            );
            assert_eq!(
                c("/milvus.proto.milvus.MilvusService/Connect"),
                Endpoint::Other
            );
            assert_eq!(c("/qdrant.Points/Search"), Endpoint::Search);
            assert_eq!(c("/qdrant.Points/Query"), Endpoint::Query);
            assert_eq!(c("/qdrant.Points/Upsert"), Endpoint::Upsert);
            assert_eq!(c("/weaviate.v1.Weaviate/Search"), Endpoint::Search);
            assert_eq!(c("/weaviate.v1.Weaviate/BatchObjects"), Endpoint::Upsert);
            assert_eq!(
                c("/inference.GRPCInferenceService/ModelInfer"),
                Endpoint::Completion
            );
            assert_eq!(
                c("/inference.GRPCInferenceService/ModelStreamInfer"),
                Endpoint::Completion
            );
            assert_eq!(
                c("/inference.GRPCInferenceService/ServerLive"),
                Endpoint::Other
            );
        }
    }
}

#[cfg(test)]
mod name_tests {
    use super::{ApiKind, Endpoint};

    /// The names records and metrics carry are the names configs and profiles are
    /// read with, for every variant.
    #[test]
    fn as_str_is_the_serde_name() {
        for a in ApiKind::ALL {
            let read: ApiKind = serde_json::from_value(a.as_str().into()).unwrap();
            assert_eq!(read, a);
        }
        for e in Endpoint::ALL {
            let read: Endpoint = serde_json::from_value(e.as_str().into()).unwrap();
            assert_eq!(read, e);
        }
    }
}
