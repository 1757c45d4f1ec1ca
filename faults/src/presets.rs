//! Error presets: each provider's real status, body and headers.
//!
//! A drill only proves something if the injected failure looks exactly like the
//! real one: SDKs decide whether to retry from the status, the body's error type
//! and `retry-after`/`retry-after-ms`, and Milvus reports errors inside an HTTP
//! 200. So each preset copies the provider's shape (see
//! `reference/ai-wire-formats.md`), and `render` fills in the per-request parts
//! (request ids, retry hints, the model) deterministically from values the caller
//! passes, so a seeded run produces the same bytes every time.
//!
//! `docs/presets.md` lists every preset for users.

use std::time::Duration;

use bytes::Bytes;
use http::header::{HeaderName, HeaderValue, CONTENT_TYPE, RETRY_AFTER};
use http::{HeaderMap, StatusCode};
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

use crate::api::ApiKind;

/// A canned provider error, as a template `render` turns into a response.
///
/// Templates may contain `${model}` (the request's model, JSON-escaped),
/// `${retry_in}` (the retry hint as a Go-style duration, "644ms", "2s", as
/// OpenAI writes them) and `${request_id}` (a seeded request id in the
/// provider's format). Everything else is sent as written.
///
/// When the request's model is not known (a body over `inspect_limit`, not JSON,
/// or naming none), no model is invented: " for ${model}" is left out ("Rate limit
/// reached in organization ..."), and any other `${model}` reads "the model".
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Preset {
    /// `family.kind`, as written in profiles (`openai.rate_limit_requests`).
    pub name: &'static str,
    /// Whose error this is; decides the request-id header, `retry-after-ms`, and
    /// the mid-stream event framing.
    pub api: ApiKind,
    /// HTTP status (Milvus: 200, its errors are in the body).
    pub status: u16,
    /// JSON body template.
    pub body: &'static str,
    /// Extra headers (templates), besides `content-type`, request ids and
    /// retry hints, which `render` adds.
    pub headers: &'static [(&'static str, &'static str)],
    /// The `retry-after` the real service sends when the profile gives none
    /// (Anthropic and Qdrant 429s carry one; for OpenAI it is unconfirmed, so
    /// none).
    pub retry_after: Option<Duration>,
    /// One line for `brownout profiles --presets` and the docs.
    pub summary: &'static str,
}

/// The per-request inputs of `Preset::render`.
#[derive(Debug, Clone, Copy, Default)]
pub struct RenderCtx<'a> {
    /// The retry hint (`retry_after:` in the profile, or the rate limiter's
    /// exact wait); falls back to the preset's own.
    pub retry_after: Option<Duration>,
    /// Seed for the request id (from the decision's seeded RNG), so ids are
    /// reproducible under `--seed`.
    pub request_id: u64,
    /// The model named in the request, for messages that name it.
    pub model: Option<&'a str>,
    /// The current time, for headers that carry absolute reset times
    /// (`anthropic-ratelimit-*-reset`); omitted when `None`.
    pub now: Option<OffsetDateTime>,
}

/// A preset made concrete for one request.
#[derive(Debug, Clone)]
pub struct RenderedError {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl RenderedError {
    /// Replace (or add) a header, for callers that know better values than the
    /// preset's placeholders (a rate limiter's real `x-ratelimit-remaining-*`).
    pub fn set_header(&mut self, name: HeaderName, value: HeaderValue) {
        self.headers.insert(name, value);
    }
}

/// The retry hint used in message text when neither profile nor preset has one.
const DEFAULT_RETRY_HINT: Duration = Duration::from_secs(1);

impl Preset {
    /// The status as an `http` type (every preset's status is valid; tested).
    pub fn status_code(&self) -> StatusCode {
        StatusCode::from_u16(self.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
    }

    /// The family prefix of the name (`openai` for `openai.rate_limit_requests`).
    pub fn family(&self) -> &'static str {
        family(self.name)
    }

    /// Whether the rendered error names the request's model (`${model}` in its
    /// body or headers): then the request body is read for it, even when no rule
    /// matches on the body.
    pub fn names_model(&self) -> bool {
        self.body.contains("${model}") || self.headers.iter().any(|(_, v)| v.contains("${model}"))
    }

    /// Produce the final status, headers and body for one request.
    ///
    /// Adds `content-type: application/json`; `retry-after` in whole seconds
    /// (rounded up, at least 1) when there is a retry hint, plus
    /// `retry-after-ms` for OpenAI presets (openai-python reads it first); the
    /// provider's request-id header (`x-request-id` for OpenAI, `request-id`
    /// for Anthropic, whose body repeats it); and Anthropic's rate-limit reset
    /// times when `ctx.now` is given.
    pub fn render(&self, ctx: &RenderCtx<'_>) -> RenderedError {
        let retry = ctx.retry_after.or(self.retry_after);
        let request_id = match self.api {
            ApiKind::Anthropic => anthropic_request_id(ctx.request_id),
            _ => openai_request_id(ctx.request_id),
        };
        let retry_in = go_duration(retry.unwrap_or(DEFAULT_RETRY_HINT));
        let model = ctx.model.map(json_escape);
        let fill = |t: &str| -> String {
            if !t.contains("${") {
                return t.to_string();
            }
            let t = match &model {
                Some(m) => t.replace("${model}", m),
                None => t
                    .replace(" for ${model}", "")
                    .replace("${model}", "the model"),
            };
            t.replace("${retry_in}", &retry_in)
                .replace("${request_id}", &request_id)
        };

        let mut headers = HeaderMap::new();
        headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        for (name, value) in self.headers {
            if let (Ok(n), Ok(v)) = (
                HeaderName::from_bytes(name.as_bytes()),
                HeaderValue::from_str(&fill(value)),
            ) {
                headers.insert(n, v);
            }
        }
        match self.api {
            ApiKind::Openai => insert(&mut headers, "x-request-id", &request_id),
            ApiKind::Anthropic => insert(&mut headers, "request-id", &request_id),
            _ => {}
        }
        if let Some(retry) = retry {
            let secs = retry.as_secs() + u64::from(retry.subsec_nanos() > 0);
            headers.insert(RETRY_AFTER, HeaderValue::from(secs.max(1)));
            if self.api == ApiKind::Openai {
                let ms = retry.as_millis().max(1);
                insert(&mut headers, "retry-after-ms", &ms.to_string());
            }
        }
        if let (ApiKind::Anthropic, 429, Some(now)) = (self.api, self.status, ctx.now) {
            let reset = now + retry.unwrap_or(DEFAULT_RETRY_HINT);
            if let Ok(reset) = reset.format(&Rfc3339) {
                for kind in ["requests", "tokens", "input-tokens", "output-tokens"] {
                    let name = format!("anthropic-ratelimit-{kind}-reset");
                    insert(&mut headers, &name, &reset);
                }
            }
        }

        RenderedError {
            status: self.status_code(),
            headers,
            body: Bytes::from(fill(self.body)),
        }
    }

    /// The provider's mid-stream error event for this preset (`stream_error`):
    /// Anthropic's `event: error` SSE pair, Ollama's NDJSON line, and a bare
    /// `data:` event for OpenAI-compatible servers (the SDK raises on a data
    /// event with an `error` key) and everything else.
    pub fn render_stream_event(&self, ctx: &RenderCtx<'_>) -> Bytes {
        let rendered = self.render(ctx);
        let body = String::from_utf8_lossy(&rendered.body);
        let event = match self.api {
            ApiKind::Anthropic => format!("event: error\ndata: {body}\n\n"),
            ApiKind::Ollama => format!("{body}\n"),
            _ => format!("data: {body}\n\n"),
        };
        Bytes::from(event)
    }
}

fn insert(headers: &mut HeaderMap, name: &str, value: &str) {
    if let (Ok(n), Ok(v)) = (
        HeaderName::from_bytes(name.as_bytes()),
        HeaderValue::from_str(value),
    ) {
        headers.insert(n, v);
    }
}

/// A string as JSON string content (no surrounding quotes).
fn json_escape(s: &str) -> String {
    let quoted = serde_json::Value::String(s.to_string()).to_string();
    quoted[1..quoted.len() - 1].to_string()
}

/// A duration as Go's `time.Duration.String` writes it for the values OpenAI
/// uses: "12ms", "1s", "1.5s", "6m0s", "1h2m3s" (whole milliseconds).
pub fn go_duration(d: Duration) -> String {
    let ms = d.as_millis();
    if ms == 0 {
        return "0s".to_string();
    }
    if ms < 1000 {
        return format!("{ms}ms");
    }
    let h = ms / 3_600_000;
    let m = (ms / 60_000) % 60;
    let s = (ms / 1000) % 60;
    let frac = ms % 1000;
    let secs = if frac == 0 {
        format!("{s}s")
    } else {
        let f = format!("{frac:03}");
        format!("{s}.{}s", f.trim_end_matches('0'))
    };
    if h > 0 {
        format!("{h}h{m}m{secs}")
    } else if m > 0 {
        format!("{m}m{secs}")
    } else {
        secs
    }
}

/// splitmix64: expands one seed into a stream of well-mixed words.
fn splitmix64(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

const BASE62: &[u8; 62] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

/// An Anthropic-style id: `req_011C` and 20 base62 characters (24 after
/// `req_`, like `req_011CSHoEeqs5C35K2UUqR7Fy`).
fn anthropic_request_id(seed: u64) -> String {
    let mut state = seed;
    let mut id = String::with_capacity(28);
    id.push_str("req_011C");
    for _ in 0..20 {
        let i = (splitmix64(&mut state) % 62) as usize;
        id.push(char::from(BASE62[i]));
    }
    id
}

/// An OpenAI-style id: `req_` and 32 hex digits.
fn openai_request_id(seed: u64) -> String {
    let mut state = seed;
    let a = splitmix64(&mut state);
    let b = splitmix64(&mut state);
    format!("req_{a:016x}{b:016x}")
}

/// The family prefix of a preset name (`openai` for `openai.rate_limit_requests`),
/// for grouping in docs and hints.
pub fn family(name: &str) -> &str {
    name.split_once('.').map_or(name, |(f, _)| f)
}

/// Look a preset up by name (`openai.rate_limit_requests`).
pub fn lookup(name: &str) -> Option<&'static Preset> {
    PRESETS.iter().find(|p| p.name == name)
}

/// Whether the preset of this name names the request's model in its message
/// (see [`Preset::names_model`]); `false` for an unknown name.
pub fn names_model(name: &str) -> bool {
    lookup(name).is_some_and(Preset::names_model)
}

/// Every preset name, for hints and docs.
pub fn names() -> Vec<&'static str> {
    PRESETS.iter().map(|p| p.name).collect()
}

/// Every preset, in documentation order.
pub fn all() -> &'static [Preset] {
    PRESETS
}

/// How a preset's error reaches a gRPC client, for the servers that answer
/// errors over gRPC.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GrpcForm {
    /// A trailers-only answer: `grpc-status` and `grpc-message` in one HEADERS
    /// frame. How gRPC servers (and Qdrant's tonic server, and Triton) fail a call.
    TrailersOnly { code: u32, message: &'static str },
    /// A typed response message whose own `status` field carries the error, under
    /// `grpc-status: 0`: how Milvus answers rate limits and a full queue (its
    /// interceptors return a failed response instead of a gRPC error); the status
    /// is [`crate::grpc::milvus::preset_status`].
    InMessage,
}

/// The gRPC form of a preset, or `None` for a preset that only exists over
/// HTTP (it is then skipped on a gRPC call, with reason `http_only_preset`).
pub fn grpc_form(name: &str) -> Option<GrpcForm> {
    use GrpcForm::TrailersOnly as T;
    Some(match name {
        "grpc.unavailable" => T {
            code: 14,
            message: "upstream connect error or disconnect/reset before headers. reset reason: connection failure",
        },
        "grpc.resource_exhausted" => T {
            code: 8,
            message: "rate limit exceeded, retry later",
        },
        "grpc.deadline_exceeded" => T {
            code: 4,
            message: "Deadline Exceeded",
        },
        "grpc.internal" => T {
            code: 13,
            message: "Internal error",
        },
        "grpc.unimplemented" => T {
            code: 12,
            message: "Method not found",
        },
        // Qdrant's gRPC API is tonic: its errors map onto gRPC codes with the same
        // text as the REST body's `status.error`.
        "qdrant.timeout" => T {
            code: 4,
            message: "Timeout error: Deadline Exceeded",
        },
        "qdrant.rate_limit" => T {
            code: 8,
            message: "Rate limiting exceeded: Read rate limit exceeded, retry later",
        },
        "qdrant.unavailable" => T {
            code: 14,
            message: "Service internal error: No active replica for shard 0 of collection, try again later",
        },
        // Triton's gRPC server fails calls with the status of its own error:
        // UNAVAILABLE for a full dynamic-batcher queue.
        "triton.queue_full" => T {
            code: 14,
            message: "Exceeds maximum queue size",
        },
        // Milvus: `merr.ErrServiceRateLimit` (code 8, legacy `RateLimit` = 49) and
        // `merr.ErrServiceTooManyRequests` (code 4), in the response's `status`.
        "milvus.rate_limit" | "milvus.queue_full" => GrpcForm::InMessage,
        _ => return None,
    })
}

/// Whether a preset exists only for gRPC calls (`grpc.*`): on an HTTP request
/// it is skipped, with reason `grpc_only_preset`.
pub fn grpc_only(name: &str) -> bool {
    family(name) == "grpc"
}

/// The preset a `concurrency_limit` rejection uses when the profile names none:
/// what that kind of server answers when it is full.
pub fn default_overload_for(api: ApiKind) -> &'static str {
    match api {
        ApiKind::Openai => "openai.overloaded",
        ApiKind::Vllm => "vllm.queue_full",
        ApiKind::Anthropic => "anthropic.overloaded",
        ApiKind::Tgi => "tgi.overloaded",
        ApiKind::Ollama => "ollama.busy",
        ApiKind::Triton => "triton.queue_full",
        ApiKind::Qdrant => "qdrant.rate_limit",
        ApiKind::Chroma => "chroma.unavailable",
        ApiKind::Milvus => "milvus.queue_full",
        ApiKind::Pinecone => "pinecone.rate_limit",
        ApiKind::Weaviate => "weaviate.rate_limit",
        ApiKind::Generic => "http.service_unavailable",
    }
}

/// The preset a `rate_limit` fault uses when the profile names none.
pub fn default_rate_limit_for(api: ApiKind) -> &'static str {
    match api {
        ApiKind::Openai | ApiKind::Vllm => "openai.rate_limit_requests",
        ApiKind::Anthropic => "anthropic.rate_limit",
        ApiKind::Tgi => "tgi.overloaded",
        ApiKind::Ollama => "ollama.busy",
        ApiKind::Triton => "triton.queue_full",
        ApiKind::Qdrant => "qdrant.rate_limit",
        ApiKind::Chroma => "chroma.rate_limit",
        ApiKind::Milvus => "milvus.rate_limit",
        ApiKind::Pinecone => "pinecone.rate_limit",
        ApiKind::Weaviate => "weaviate.rate_limit",
        ApiKind::Generic => "http.too_many_requests",
    }
}

const OPENAI_RPM_HEADERS: &[(&str, &str)] = &[
    ("x-ratelimit-limit-requests", "500"),
    ("x-ratelimit-remaining-requests", "0"),
    ("x-ratelimit-reset-requests", "${retry_in}"),
    ("x-ratelimit-limit-tokens", "30000"),
    ("x-ratelimit-remaining-tokens", "29615"),
    ("x-ratelimit-reset-tokens", "770ms"),
];

const OPENAI_TPM_HEADERS: &[(&str, &str)] = &[
    ("x-ratelimit-limit-requests", "500"),
    ("x-ratelimit-remaining-requests", "499"),
    ("x-ratelimit-reset-requests", "120ms"),
    ("x-ratelimit-limit-tokens", "30000"),
    ("x-ratelimit-remaining-tokens", "63"),
    ("x-ratelimit-reset-tokens", "${retry_in}"),
];

const ANTHROPIC_RATE_HEADERS: &[(&str, &str)] = &[
    ("anthropic-ratelimit-requests-limit", "50"),
    ("anthropic-ratelimit-requests-remaining", "0"),
    ("anthropic-ratelimit-tokens-limit", "50000"),
    ("anthropic-ratelimit-tokens-remaining", "0"),
    ("anthropic-ratelimit-input-tokens-limit", "40000"),
    ("anthropic-ratelimit-input-tokens-remaining", "0"),
    ("anthropic-ratelimit-output-tokens-limit", "10000"),
    ("anthropic-ratelimit-output-tokens-remaining", "0"),
];

static PRESETS: &[Preset] = &[
    // ---- OpenAI ------------------------------------------------------------
    Preset {
        name: "openai.rate_limit_requests",
        api: ApiKind::Openai,
        status: 429,
        body: r#"{"error":{"message":"Rate limit reached for ${model} in organization org-brownout on requests per min (RPM): Limit 500, Used 500, Requested 1. Please try again in ${retry_in}. Visit https://platform.openai.com/account/rate-limits to learn more.","type":"requests","param":null,"code":"rate_limit_exceeded"}}"#,
        headers: OPENAI_RPM_HEADERS,
        retry_after: None,
        summary: "429 over the requests-per-minute limit (RPM), with x-ratelimit-* headers",
    },
    Preset {
        name: "openai.rate_limit_tokens",
        api: ApiKind::Openai,
        status: 429,
        body: r#"{"error":{"message":"Rate limit reached for ${model} in organization org-brownout on tokens per min (TPM): Limit 30000, Used 29937, Requested 385. Please try again in ${retry_in}. Visit https://platform.openai.com/account/rate-limits to learn more.","type":"tokens","param":null,"code":"rate_limit_exceeded"}}"#,
        headers: OPENAI_TPM_HEADERS,
        retry_after: None,
        summary: "429 over the tokens-per-minute limit (TPM), with x-ratelimit-* headers",
    },
    Preset {
        name: "openai.insufficient_quota",
        api: ApiKind::Openai,
        status: 429,
        body: r#"{"error":{"message":"You exceeded your current quota, please check your plan and billing details. For more information on this error, read the docs: https://platform.openai.com/docs/guides/error-codes/api-errors.","type":"insufficient_quota","param":null,"code":"insufficient_quota"}}"#,
        headers: &[],
        retry_after: None,
        summary: "429 out of credit: retrying cannot help (the SDK retries anyway)",
    },
    Preset {
        name: "openai.server_error",
        api: ApiKind::Openai,
        status: 500,
        body: r#"{"error":{"message":"The server had an error while processing your request. Sorry about that!","type":"server_error","param":null,"code":null}}"#,
        headers: &[],
        retry_after: None,
        summary: "500 internal error (exact production body unconfirmed)",
    },
    Preset {
        name: "openai.overloaded",
        api: ApiKind::Openai,
        status: 503,
        body: r#"{"error":{"message":"That model is currently overloaded with other requests. You can retry your request, or contact us through our help center at help.openai.com if the error persists.","type":"server_error","param":null,"code":null}}"#,
        headers: &[],
        retry_after: None,
        summary: "503 model overloaded (exact production body unconfirmed)",
    },
    Preset {
        name: "openai.context_length",
        api: ApiKind::Openai,
        status: 400,
        body: r#"{"error":{"message":"This model's maximum context length is 8192 tokens. However, your messages resulted in 8227 tokens. Please reduce the length of the messages.","type":"invalid_request_error","param":"messages","code":"context_length_exceeded"}}"#,
        headers: &[],
        retry_after: None,
        summary: "400 prompt longer than the context window: not retryable",
    },
    // ---- Anthropic ---------------------------------------------------------
    Preset {
        name: "anthropic.rate_limit",
        api: ApiKind::Anthropic,
        status: 429,
        body: r#"{"type":"error","error":{"type":"rate_limit_error","message":"This request would exceed the rate limit for your organization of 50 requests per minute. For details, refer to: https://docs.anthropic.com/en/api/rate-limits. You can see the response headers for current usage. Please reduce the prompt length or the maximum tokens requested, or try again later."},"request_id":"${request_id}"}"#,
        headers: ANTHROPIC_RATE_HEADERS,
        retry_after: Some(Duration::from_secs(10)),
        summary: "429 rate_limit_error with retry-after and anthropic-ratelimit-* headers",
    },
    Preset {
        name: "anthropic.overloaded",
        api: ApiKind::Anthropic,
        status: 529,
        body: r#"{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"},"request_id":"${request_id}"}"#,
        headers: &[],
        retry_after: None,
        summary: "529 overloaded_error: the API as a whole is overloaded (SDK: OverloadedError)",
    },
    Preset {
        name: "anthropic.api_error",
        api: ApiKind::Anthropic,
        status: 500,
        body: r#"{"type":"error","error":{"type":"api_error","message":"Internal server error"},"request_id":"${request_id}"}"#,
        headers: &[],
        retry_after: None,
        summary: "500 api_error: an unexpected internal error",
    },
    // ---- Self-hosted model servers ----------------------------------------
    Preset {
        name: "vllm.queue_full",
        api: ApiKind::Vllm,
        status: 503,
        body: r#"{"error":{"message":"The server is overloaded: the waiting queue is full (max_num_queued_reqs reached). Please try again later.","type":"ServiceUnavailableError","param":null,"code":503}}"#,
        headers: &[],
        retry_after: None,
        summary: "503 from vLLM with a capped waiting queue (--max-num-queued-reqs)",
    },
    Preset {
        name: "tgi.overloaded",
        api: ApiKind::Tgi,
        status: 429,
        body: r#"{"error":"Model is overloaded","error_type":"overloaded"}"#,
        headers: &[],
        retry_after: None,
        summary: "429 from TGI past max_concurrent_requests",
    },
    Preset {
        name: "ollama.busy",
        api: ApiKind::Ollama,
        status: 503,
        body: r#"{"error":"server busy, please try again.  maximum pending requests exceeded"}"#,
        headers: &[],
        retry_after: None,
        summary: "503 from Ollama past OLLAMA_MAX_QUEUE (the message has two spaces)",
    },
    Preset {
        name: "triton.queue_full",
        api: ApiKind::Triton,
        status: 503,
        body: r#"{"error":"Exceeds maximum queue size"}"#,
        headers: &[],
        retry_after: None,
        summary: "503 from Triton when the dynamic batcher's queue is full",
    },
    // ---- Vector databases --------------------------------------------------
    Preset {
        name: "qdrant.timeout",
        api: ApiKind::Qdrant,
        status: 408,
        body: r#"{"status":{"error":"Timeout error: Deadline Exceeded"},"time":30.000731}"#,
        headers: &[],
        retry_after: None,
        summary: "408 from Qdrant when a search passes its ?timeout=",
    },
    Preset {
        name: "qdrant.rate_limit",
        api: ApiKind::Qdrant,
        status: 429,
        body: r#"{"status":{"error":"Rate limiting exceeded: Read rate limit exceeded, retry later"},"time":0.000042}"#,
        headers: &[],
        retry_after: Some(Duration::from_secs(1)),
        summary: "429 from Qdrant's request rate limiter, with retry-after",
    },
    Preset {
        name: "qdrant.unavailable",
        api: ApiKind::Qdrant,
        status: 503,
        body: r#"{"status":{"error":"Service internal error: No active replica for shard 0 of collection, try again later"},"time":0.000318}"#,
        headers: &[],
        retry_after: None,
        summary: "503 from Qdrant when a shard has no active replica",
    },
    Preset {
        name: "chroma.unavailable",
        api: ApiKind::Chroma,
        status: 503,
        body: r#"{"error":"ChromaError","message":"Service unavailable: the query service is not ready, please retry"}"#,
        headers: &[],
        retry_after: None,
        summary: "503 from Chroma (Unavailable) while a node is down or starting",
    },
    Preset {
        name: "chroma.rate_limit",
        api: ApiKind::Chroma,
        status: 429,
        body: r#"{"error":"ChromaError","message":"Resource exhausted: too many requests, please retry"}"#,
        headers: &[],
        retry_after: None,
        summary: "429 from Chroma (ResourceExhausted)",
    },
    Preset {
        name: "milvus.rate_limit",
        api: ApiKind::Milvus,
        status: 200,
        body: r#"{"code":8,"message":"request is rejected by limiter: rate limit exceeded, please retry later"}"#,
        headers: &[],
        retry_after: None,
        summary: "HTTP 200 with code 8: Milvus reports rate limiting inside a success status",
    },
    Preset {
        name: "milvus.queue_full",
        api: ApiKind::Milvus,
        status: 200,
        body: r#"{"code":4,"message":"too many concurrent requests, queue is full"}"#,
        headers: &[],
        retry_after: None,
        summary: "HTTP 200 with code 4: Milvus's request queue is full",
    },
    Preset {
        name: "pinecone.rate_limit",
        api: ApiKind::Pinecone,
        status: 429,
        body: r#"{"code":8,"message":"Request failed. You've reached the request rate limit for this index. Please retry with exponential backoff.","details":[]}"#,
        headers: &[],
        retry_after: None,
        summary: "429 from Pinecone (RESOURCE_EXHAUSTED) over the index's rate limit",
    },
    Preset {
        name: "weaviate.rate_limit",
        api: ApiKind::Weaviate,
        status: 429,
        body: r#"{"error":[{"message":"too many requests: the server is over its concurrency limit, please retry later"}]}"#,
        headers: &[],
        retry_after: None,
        summary: "429 from Weaviate over its concurrency limit (from design docs)",
    },
    // ---- gRPC (any gRPC server; see `grpc_form`) ---------------------------
    Preset {
        name: "grpc.unavailable",
        api: ApiKind::Generic,
        status: 200,
        body: "",
        headers: &[],
        retry_after: None,
        summary: "gRPC UNAVAILABLE (14), trailers-only, as a mesh sidecar answers when the server is unreachable",
    },
    Preset {
        name: "grpc.resource_exhausted",
        api: ApiKind::Generic,
        status: 200,
        body: "",
        headers: &[],
        retry_after: None,
        summary: "gRPC RESOURCE_EXHAUSTED (8), trailers-only: a server's rate or quota limit",
    },
    Preset {
        name: "grpc.deadline_exceeded",
        api: ApiKind::Generic,
        status: 200,
        body: "",
        headers: &[],
        retry_after: None,
        summary: "gRPC DEADLINE_EXCEEDED (4), trailers-only: the server gave up on the call's deadline",
    },
    Preset {
        name: "grpc.internal",
        api: ApiKind::Generic,
        status: 200,
        body: "",
        headers: &[],
        retry_after: None,
        summary: "gRPC INTERNAL (13), trailers-only: the server failed",
    },
    Preset {
        name: "grpc.unimplemented",
        api: ApiKind::Generic,
        status: 200,
        body: "",
        headers: &[],
        retry_after: None,
        summary: "gRPC UNIMPLEMENTED (12), trailers-only: the server has no such method",
    },
    // ---- Generic HTTP ------------------------------------------------------
    Preset {
        name: "http.bad_gateway",
        api: ApiKind::Generic,
        status: 502,
        body: r#"{"error":"Bad Gateway","status":502}"#,
        headers: &[],
        retry_after: None,
        summary: "502 from a load balancer or gateway whose upstream failed",
    },
    Preset {
        name: "http.service_unavailable",
        api: ApiKind::Generic,
        status: 503,
        body: r#"{"error":"Service Unavailable","status":503}"#,
        headers: &[],
        retry_after: None,
        summary: "503 from a load balancer with no healthy backend",
    },
    Preset {
        name: "http.gateway_timeout",
        api: ApiKind::Generic,
        status: 504,
        body: r#"{"error":"Gateway Timeout","status":504}"#,
        headers: &[],
        retry_after: None,
        summary: "504 from a gateway whose upstream did not answer in time",
    },
    Preset {
        name: "http.too_many_requests",
        api: ApiKind::Generic,
        status: 429,
        body: r#"{"error":"Too Many Requests","status":429}"#,
        headers: &[],
        retry_after: Some(Duration::from_secs(1)),
        summary: "429 from an API gateway's rate limiter, with retry-after",
    },
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_durations() {
        assert_eq!(go_duration(Duration::from_millis(12)), "12ms");
        assert_eq!(go_duration(Duration::from_millis(644)), "644ms");
        assert_eq!(go_duration(Duration::from_secs(1)), "1s");
        assert_eq!(go_duration(Duration::from_millis(1500)), "1.5s");
        assert_eq!(go_duration(Duration::from_secs(360)), "6m0s");
        assert_eq!(go_duration(Duration::from_secs(3723)), "1h2m3s");
        assert_eq!(go_duration(Duration::ZERO), "0s");
    }

    #[test]
    fn request_ids_have_provider_shapes() {
        let a = anthropic_request_id(7);
        assert_eq!(a.len(), 28);
        assert!(a.starts_with("req_011C"));
        assert!(a[4..].bytes().all(|b| b.is_ascii_alphanumeric()));
        assert_eq!(a, anthropic_request_id(7));
        assert_ne!(a, anthropic_request_id(8));
        let o = openai_request_id(7);
        assert_eq!(o.len(), 36);
        assert!(o[4..].bytes().all(|b| b.is_ascii_hexdigit()));
    }

    #[test]
    fn json_escape_escapes() {
        assert_eq!(json_escape(r#"a"b\c"#), r#"a\"b\\c"#);
    }
}
