//! The OpenAI-compatible API: chat completions, legacy completions and models, and
//! the helpers every simulated API's answers share (the router is
//! [`crate::llm`]).
//!
//! Bodies are byte-for-byte OpenAI's wire format (field order included, via
//! structs rather than `json!`, whose maps sort keys), because the proxy's SSE
//! transformers and the drill's parser are tested against this simulator and must
//! behave the same against the real service.

use std::convert::Infallible;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http::header::{HeaderValue, CONTENT_TYPE};
use http::{Request, Response, StatusCode};
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use serde::Serialize;
use serde_json::Value;
use tokio::time::Instant;

use crate::config::SimConfig;
use crate::pacing::{token_offsets, PacedBody};
use crate::text::{answer_tokens, estimate_tokens};

/// The response body type of every simulated endpoint.
pub(crate) type SimBody = UnsyncBoxBody<Bytes, Infallible>;

/// Requests larger than this are refused; the simulator never needs big prompts.
const MAX_REQUEST_BYTES: usize = 8 << 20;

/// The models `GET /v1/models` lists. Any model name is accepted in requests, so
/// drills can use whatever their profiles match on.
pub const MODELS: &[&str] = &[
    "gpt-4o-mini",
    "gpt-4o",
    "gpt-3.5-turbo-instruct",
    "sim-llm-1",
];

/// Created timestamp reported for the listed models (OpenAI's for gpt-4o-mini).
const MODEL_CREATED: u64 = 1_721_172_741;

const SYSTEM_FINGERPRINT: &str = "fp_brownout_sim";

/// A chat or legacy completion: the answer, paced by the simulated model.
pub(crate) async fn completion(
    cfg: &SimConfig,
    ordinal: u64,
    req: Request<Incoming>,
    start: Instant,
    kind: Kind,
) -> Response<SimBody> {
    let headers = req.headers().clone();
    let body = match read_body(req).await {
        Ok(b) => b,
        Err(e) => return error_response(StatusCode::BAD_REQUEST, ApiError::invalid(e, None)),
    };
    let parsed = match parse_request(&body, kind) {
        Ok(p) => p,
        Err(e) => return error_response(StatusCode::BAD_REQUEST, e),
    };
    let (n, tokens) = match crate::text::scripted_tokens(&headers, parsed.max_tokens) {
        Some(t) => (u32::try_from(t.len()).unwrap_or(u32::MAX), t),
        None => {
            let n = cfg.answer_len(parsed.max_tokens);
            (n, answer_tokens(&parsed.model, &parsed.prompt, n))
        }
    };
    if let Some(gpu) = &cfg.gpu {
        return completion_on_gpu(cfg, gpu, kind, ordinal, &parsed, &tokens, n).await;
    }
    let offsets = token_offsets(cfg, n, ordinal);
    let usage = Usage::new(estimate_tokens(&parsed.prompt), n);
    let ids = Ids::new(kind, ordinal, cfg.seed);
    if parsed.stream {
        let events = stream_events(&ids, kind, &parsed, &tokens, &offsets, usage);
        let mut resp = Response::new(PacedBody::new(start, events).boxed_unsync());
        set_headers(&mut resp, "text/event-stream; charset=utf-8", &ids);
        resp
    } else {
        let done_at = offsets.last().copied().unwrap_or_default();
        tokio::time::sleep_until(start + done_at).await;
        answer_response(kind, &ids, &parsed, &tokens.concat(), usage)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    Chat,
    Legacy,
}

/// The parts of a request that shape the answer.
struct Parsed {
    model: String,
    prompt: String,
    stream: bool,
    include_usage: bool,
    max_tokens: Option<u64>,
}

/// The prompt text of a chat request: every message's text, joined by newlines.
/// Content may be a string or an array of parts (`{"type":"text","text":...}`);
/// other parts (images) do not contribute. Exposed so that tests can predict the
/// answer to a request with [`crate::answer_text`].
pub fn chat_prompt_text(messages: &[Value]) -> String {
    let mut parts = Vec::new();
    for m in messages {
        match m.get("content") {
            Some(Value::String(s)) => parts.push(s.as_str()),
            Some(Value::Array(items)) => {
                for item in items {
                    if let Some(Value::String(t)) = item.get("text") {
                        parts.push(t.as_str());
                    }
                }
            }
            _ => {}
        }
    }
    parts.join("\n")
}

/// The prompt text of a legacy completions request: a string, or strings joined by
/// newlines. Token-array prompts contribute nothing.
pub fn legacy_prompt_text(prompt: Option<&Value>) -> String {
    match prompt {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Array(items)) => items
            .iter()
            .filter_map(Value::as_str)
            .collect::<Vec<_>>()
            .join("\n"),
        _ => String::new(),
    }
}

/// The whole request body (capped at [`MAX_REQUEST_BYTES`]), or why it could not
/// be read, as a sentence for an error message.
pub(crate) async fn read_body(req: Request<Incoming>) -> Result<Bytes, String> {
    match Limited::new(req.into_body(), MAX_REQUEST_BYTES)
        .collect()
        .await
    {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(e) => Err(format!("Could not read the request body: {e}")),
    }
}

fn parse_request(body: &[u8], kind: Kind) -> Result<Parsed, ApiError> {
    let v: Value = serde_json::from_slice(body).map_err(|_| {
        ApiError::invalid(
            "We could not parse the JSON body of your request. The OpenAI API expects a \
             JSON payload, but what was sent was not valid JSON."
                .to_owned(),
            None,
        )
    })?;
    let Some(obj) = v.as_object() else {
        return Err(ApiError::invalid(
            "Invalid type for request body: expected an object.".to_owned(),
            None,
        ));
    };
    let model = match obj.get("model") {
        Some(Value::String(m)) if !m.is_empty() => m.clone(),
        Some(Value::String(_)) | None | Some(Value::Null) => {
            return Err(ApiError::missing("model"))
        }
        Some(_) => return Err(ApiError::bad_type("model", "a string")),
    };
    let prompt = match kind {
        Kind::Chat => match obj.get("messages") {
            Some(Value::Array(msgs)) if !msgs.is_empty() => chat_prompt_text(msgs),
            Some(Value::Array(_)) => {
                return Err(ApiError::invalid(
                    "Invalid 'messages': empty array. Expected an array with minimum length 1."
                        .to_owned(),
                    Some("messages"),
                ))
            }
            None | Some(Value::Null) => return Err(ApiError::missing("messages")),
            Some(_) => return Err(ApiError::bad_type("messages", "an array")),
        },
        Kind::Legacy => legacy_prompt_text(obj.get("prompt")),
    };
    let stream = match obj.get("stream") {
        None | Some(Value::Null) => false,
        Some(Value::Bool(b)) => *b,
        Some(_) => return Err(ApiError::bad_type("stream", "a boolean")),
    };
    let include_usage = obj
        .get("stream_options")
        .and_then(|o| o.get("include_usage"))
        .and_then(Value::as_bool)
        .unwrap_or(false);
    let mut max_tokens = None;
    for key in ["max_completion_tokens", "max_tokens"] {
        match obj.get(key) {
            None | Some(Value::Null) => {}
            Some(v) => match v.as_u64() {
                Some(n) => {
                    max_tokens = Some(n);
                    break;
                }
                None => return Err(ApiError::bad_type(key, "a non-negative integer")),
            },
        }
    }
    Ok(Parsed {
        model,
        prompt,
        stream,
        include_usage,
        max_tokens,
    })
}

/// Response identity: id, creation time and request id.
struct Ids {
    id: String,
    request_id: String,
    created: u64,
}

impl Ids {
    fn new(kind: Kind, ordinal: u64, seed: u64) -> Self {
        let tag = crate::text::prompt_hash(&seed.to_string(), &ordinal.to_string());
        let prefix = match kind {
            Kind::Chat => "chatcmpl",
            Kind::Legacy => "cmpl",
        };
        let created = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        Self {
            id: format!("{prefix}-sim{tag:016x}"),
            request_id: request_id(ordinal, seed),
            created,
        }
    }
}

/// The `x-request-id` of the `ordinal`-th response: a pure function of the seed
/// and the ordinal, so reruns name responses the same.
pub(crate) fn request_id(ordinal: u64, seed: u64) -> String {
    let tag = crate::text::prompt_hash(&seed.to_string(), &ordinal.to_string());
    format!("req_sim{tag:016x}")
}

#[derive(Debug, Clone, Copy, Serialize)]
struct Usage {
    prompt_tokens: u32,
    completion_tokens: u32,
    total_tokens: u32,
}

impl Usage {
    fn new(prompt_tokens: u32, completion_tokens: u32) -> Self {
        Self {
            prompt_tokens,
            completion_tokens,
            total_tokens: prompt_tokens.saturating_add(completion_tokens),
        }
    }
}

#[derive(Serialize)]
struct ChatCompletion<'a> {
    id: &'a str,
    object: &'static str,
    created: u64,
    model: &'a str,
    choices: [ChatChoice<'a>; 1],
    usage: Usage,
    system_fingerprint: &'static str,
}

#[derive(Serialize)]
struct ChatChoice<'a> {
    index: u32,
    message: Message<'a>,
    logprobs: Option<()>,
    finish_reason: &'static str,
}

#[derive(Serialize)]
struct Message<'a> {
    role: &'static str,
    content: &'a str,
    refusal: Option<()>,
}

/// One `chat.completion.chunk`. `usage` is omitted without `include_usage`, and is
/// `null` on every chunk but the last with it, as OpenAI sends.
#[derive(Serialize)]
struct ChatChunk<'a> {
    id: &'a str,
    object: &'static str,
    created: u64,
    model: &'a str,
    system_fingerprint: &'static str,
    choices: Vec<ChunkChoice<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    usage: Option<Option<Usage>>,
}

#[derive(Serialize)]
struct ChunkChoice<'a> {
    index: u32,
    delta: Delta<'a>,
    logprobs: Option<()>,
    finish_reason: Option<&'static str>,
}

#[derive(Serialize)]
struct Delta<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    role: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    content: Option<&'a str>,
}

/// A legacy `text_completion`, whole or as a stream chunk.
#[derive(Serialize)]
struct TextCompletion<'a, C: Serialize> {
    id: &'a str,
    object: &'static str,
    created: u64,
    model: &'a str,
    choices: C,
    #[serde(skip_serializing_if = "Option::is_none")]
    usage: Option<Option<Usage>>,
    system_fingerprint: &'static str,
}

#[derive(Serialize)]
struct TextChoice<'a> {
    text: &'a str,
    index: u32,
    logprobs: Option<()>,
    finish_reason: Option<&'static str>,
}

fn sse(json: Result<Vec<u8>, serde_json::Error>) -> Bytes {
    let mut out = Vec::with_capacity(256);
    out.extend_from_slice(b"data: ");
    // Serializing these plain structs cannot fail; an empty object keeps the event
    // well-formed should it ever.
    match json {
        Ok(j) => out.extend_from_slice(&j),
        Err(_) => out.extend_from_slice(b"{}"),
    }
    out.extend_from_slice(b"\n\n");
    Bytes::from(out)
}

/// Every SSE event of a streamed answer with the offset at which it is due: the
/// role chunk at once (chat only), a chunk per token, the finish chunk and the
/// usage chunk with the last token, then `[DONE]`.
fn stream_events(
    ids: &Ids,
    kind: Kind,
    req: &Parsed,
    tokens: &[String],
    offsets: &[Duration],
    usage: Usage,
) -> Vec<(Duration, Bytes)> {
    let usage_field = |last: bool| match (req.include_usage, last) {
        (false, _) => None,
        (true, false) => Some(None),
        (true, true) => Some(Some(usage)),
    };
    let chat = |role: Option<&'static str>, content: Option<&str>, finish, last: bool| {
        let choices = if last {
            Vec::new()
        } else {
            vec![ChunkChoice {
                index: 0,
                delta: Delta { role, content },
                logprobs: None,
                finish_reason: finish,
            }]
        };
        sse(serde_json::to_vec(&ChatChunk {
            id: &ids.id,
            object: "chat.completion.chunk",
            created: ids.created,
            model: &req.model,
            system_fingerprint: SYSTEM_FINGERPRINT,
            choices,
            usage: usage_field(last),
        }))
    };
    let legacy = |text: &str, finish, last: bool| {
        let choices: Vec<TextChoice<'_>> = if last {
            Vec::new()
        } else {
            vec![TextChoice {
                text,
                index: 0,
                logprobs: None,
                finish_reason: finish,
            }]
        };
        sse(serde_json::to_vec(&TextCompletion {
            id: &ids.id,
            object: "text_completion",
            created: ids.created,
            model: &req.model,
            choices,
            usage: usage_field(last),
            system_fingerprint: SYSTEM_FINGERPRINT,
        }))
    };

    let end = offsets.last().copied().unwrap_or_default();
    let mut events = Vec::with_capacity(tokens.len() + 4);
    if kind == Kind::Chat {
        events.push((
            Duration::ZERO,
            chat(Some("assistant"), Some(""), None, false),
        ));
    }
    for (tok, at) in tokens.iter().zip(offsets) {
        let ev = match kind {
            Kind::Chat => chat(None, Some(tok), None, false),
            Kind::Legacy => legacy(tok, None, false),
        };
        events.push((*at, ev));
    }
    let finish = match kind {
        Kind::Chat => chat(None, None, Some("stop"), false),
        Kind::Legacy => legacy("", Some("stop"), false),
    };
    events.push((end, finish));
    if req.include_usage {
        let ev = match kind {
            Kind::Chat => chat(None, None, None, true),
            Kind::Legacy => legacy("", None, true),
        };
        events.push((end, ev));
    }
    events.push((end, Bytes::from_static(b"data: [DONE]\n\n")));
    events
}

/// An OpenAI error body: `{"error":{"message","type","param","code"}}`.
#[derive(Debug, Serialize)]
pub(crate) struct ApiError {
    message: String,
    #[serde(rename = "type")]
    kind: &'static str,
    param: Option<&'static str>,
    code: Option<&'static str>,
}

impl ApiError {
    pub(crate) fn invalid(message: String, param: Option<&'static str>) -> Self {
        Self {
            message,
            kind: "invalid_request_error",
            param,
            code: None,
        }
    }

    pub(crate) fn missing(param: &'static str) -> Self {
        Self {
            message: format!("Missing required parameter: '{param}'."),
            kind: "invalid_request_error",
            param: Some(param),
            code: Some("missing_required_parameter"),
        }
    }

    pub(crate) fn bad_type(param: &'static str, expected: &str) -> Self {
        Self {
            message: format!("Invalid type for '{param}': expected {expected}."),
            kind: "invalid_request_error",
            param: Some(param),
            code: Some("invalid_type"),
        }
    }
}

#[derive(Serialize)]
struct ErrorEnvelope {
    error: ApiError,
}

pub(crate) fn error_response(status: StatusCode, error: ApiError) -> Response<SimBody> {
    json_response(status, serde_json::to_vec(&ErrorEnvelope { error }), None)
}

fn json_response(
    status: StatusCode,
    json: Result<Vec<u8>, serde_json::Error>,
    ids: Option<&Ids>,
) -> Response<SimBody> {
    openai_json(status, json, ids.map(|i| i.request_id.as_str()))
}

/// A JSON response with OpenAI's headers (`x-request-id` when given).
pub(crate) fn openai_json(
    status: StatusCode,
    json: Result<Vec<u8>, serde_json::Error>,
    request_id: Option<&str>,
) -> Response<SimBody> {
    let mut resp = Response::new(Full::new(Bytes::from(json_bytes(json))).boxed_unsync());
    *resp.status_mut() = status;
    match request_id {
        Some(id) => set_openai_headers(&mut resp, "application/json", id),
        None => {
            resp.headers_mut()
                .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        }
    }
    resp
}

/// Serialized JSON, or `{}` should serializing ever fail (these plain structs
/// cannot), so a response is always well-formed.
pub(crate) fn json_bytes(json: Result<Vec<u8>, serde_json::Error>) -> Vec<u8> {
    json.unwrap_or_else(|_| b"{}".to_vec())
}

fn set_headers(resp: &mut Response<SimBody>, content_type: &'static str, ids: &Ids) {
    set_openai_headers(resp, content_type, &ids.request_id);
}

fn set_openai_headers(resp: &mut Response<SimBody>, content_type: &'static str, request_id: &str) {
    let h = resp.headers_mut();
    h.insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    if let Ok(v) = HeaderValue::from_str(request_id) {
        h.insert("x-request-id", v);
    }
    h.insert("openai-version", HeaderValue::from_static("2020-10-01"));
}

#[derive(Serialize)]
struct Model<'a> {
    id: &'a str,
    object: &'static str,
    created: u64,
    owned_by: &'static str,
}

impl<'a> Model<'a> {
    fn new(id: &'a str) -> Self {
        Self {
            id,
            object: "model",
            created: MODEL_CREATED,
            owned_by: "brownout-sim",
        }
    }
}

#[derive(Serialize)]
struct ModelList<'a> {
    object: &'static str,
    data: Vec<Model<'a>>,
}

/// `GET /health`, as vLLM answers it: 200 with an empty body. Load generators
/// (guidellm) and orchestrators probe it before sending traffic.
/// `GET /metrics` of `brownout sim --gpu`: the simulated GPU's gauges under the
/// same names and types as the proxy's `/metrics` (rule `sim`), so an energy meter
/// or a dashboard reads a simulated server as it reads a `gpu_saturation` fault.
pub(crate) fn gpu_metrics(cfg: &SimConfig) -> Response<SimBody> {
    use std::fmt::Write as _;
    let mut out = String::new();
    if let Some(gpu) = &cfg.gpu {
        let r = &gpu.0;
        let power = brownout_faults::gpu::power_spec(&r.config().gpu);
        let util = r.utilization();
        let busy = r.busy_time().as_secs_f64();
        let mut family = |name: &str, kind: &str, help: &str, v: Option<f64>| {
            let _ = writeln!(
                out,
                "# HELP brownout_{name} {help}\n# TYPE brownout_{name} {kind}"
            );
            if let Some(v) = v {
                let _ = writeln!(out, "brownout_{name}{{rule=\"sim\"}} {v}");
            }
        };
        family(
            "gpu_queue_depth",
            "gauge",
            "Requests waiting for a simulated GPU slot.",
            Some(r.queue_depth() as f64),
        );
        family(
            "gpu_batch_size",
            "gauge",
            "Sequences running on the simulated GPU.",
            Some(r.batch_size() as f64),
        );
        family(
            "gpu_preemptions_total",
            "counter",
            "Sequences preempted when the simulated KV cache ran out.",
            Some(r.preemptions() as f64),
        );
        family(
            "gpu_utilization",
            "gauge",
            "Modelled utilisation (share of time running steps, about the last second).",
            Some(util),
        );
        family(
            "gpu_busy_seconds_total",
            "counter",
            "Seconds the simulated GPU spent running steps.",
            Some(busy),
        );
        family(
            "gpu_power_watts",
            "gauge",
            "Modelled board power: idle + (max - idle) x utilisation.",
            power.map(|p| p.watts(util)),
        );
        family(
            "gpu_energy_joules_total",
            "counter",
            "Modelled energy drawn since the simulated GPU was made.",
            power.map(|p| {
                p.watts(0.0) * r.uptime().as_secs_f64() + (p.watts(1.0) - p.watts(0.0)) * busy
            }),
        );
    }
    let mut resp = Response::new(Full::new(Bytes::from(out)).boxed_unsync());
    resp.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
    );
    resp
}

/// The answer to a path no simulated API serves, as OpenAI words it.
pub(crate) fn not_found(method: &http::Method, path: &str) -> Response<SimBody> {
    error_response(
        StatusCode::NOT_FOUND,
        ApiError {
            message: format!("Invalid URL ({method} {path})"),
            kind: "invalid_request_error",
            param: None,
            code: None,
        },
    )
}

pub(crate) fn health() -> Response<SimBody> {
    Response::new(Full::new(Bytes::new()).boxed_unsync())
}

pub(crate) fn list_models() -> Response<SimBody> {
    let list = ModelList {
        object: "list",
        data: MODELS.iter().map(|m| Model::new(m)).collect(),
    };
    json_response(StatusCode::OK, serde_json::to_vec(&list), None)
}

pub(crate) fn get_model(id: &str) -> Response<SimBody> {
    match MODELS.iter().find(|m| **m == id) {
        Some(m) => json_response(StatusCode::OK, serde_json::to_vec(&Model::new(m)), None),
        None => error_response(
            StatusCode::NOT_FOUND,
            ApiError {
                message: format!("The model '{id}' does not exist"),
                kind: "invalid_request_error",
                param: Some("model"),
                code: Some("model_not_found"),
            },
        ),
    }
}

/// An answer timed by the simulated GPU: admission (queueing) before the
/// headers, then each token when the model produces it.
async fn completion_on_gpu(
    cfg: &SimConfig,
    gpu: &crate::config::SimGpu,
    kind: Kind,
    ordinal: u64,
    parsed: &Parsed,
    tokens: &[String],
    n: u32,
) -> Response<SimBody> {
    use brownout_faults::gpu::Admit;
    static NEVER_RELEASED: std::sync::OnceLock<brownout_faults::release::Release> =
        std::sync::OnceLock::new();
    let release = NEVER_RELEASED.get_or_init(|| brownout_faults::release::Release::new(true));
    let prompt = u64::from(estimate_tokens(&parsed.prompt));
    let seq = match gpu.0.admit(prompt, u64::from(n), release).await {
        Admit::Admitted(seq) => seq,
        Admit::Overflow | Admit::Released => {
            return error_response(
                StatusCode::SERVICE_UNAVAILABLE,
                ApiError {
                    message: "The server is overloaded: the request queue is full.".into(),
                    kind: "server_error",
                    param: None,
                    code: None,
                },
            )
        }
    };
    seq.set_output_len(u64::from(n));
    let usage = Usage::new(estimate_tokens(&parsed.prompt), n);
    let ids = Ids::new(kind, ordinal, cfg.seed);
    let zero = vec![Duration::ZERO; tokens.len()];
    if parsed.stream {
        let events: Vec<Bytes> = stream_events(&ids, kind, parsed, tokens, &zero, usage)
            .into_iter()
            .map(|(_, b)| b)
            .collect();
        // The role chunk comes first for chat; legacy completions start with tokens.
        let first = usize::from(kind == Kind::Chat);
        let body = crate::pacing::GpuPacedBody::new(events, first, tokens.len(), seq);
        let mut resp = Response::new(body.boxed_unsync());
        set_headers(&mut resp, "text/event-stream; charset=utf-8", &ids);
        return resp;
    }
    seq.until_produced(u64::from(n)).await;
    seq.finish();
    answer_response(kind, &ids, parsed, &tokens.concat(), usage)
}

/// A whole (non-streaming) answer in the shape of its endpoint.
fn answer_response(
    kind: Kind,
    ids: &Ids,
    parsed: &Parsed,
    text: &str,
    usage: Usage,
) -> Response<SimBody> {
    let json = match kind {
        Kind::Chat => serde_json::to_vec(&ChatCompletion {
            id: &ids.id,
            object: "chat.completion",
            created: ids.created,
            model: &parsed.model,
            choices: [ChatChoice {
                index: 0,
                message: Message {
                    role: "assistant",
                    content: text,
                    refusal: None,
                },
                logprobs: None,
                finish_reason: "stop",
            }],
            usage,
            system_fingerprint: SYSTEM_FINGERPRINT,
        }),
        Kind::Legacy => serde_json::to_vec(&TextCompletion {
            id: &ids.id,
            object: "text_completion",
            created: ids.created,
            model: &parsed.model,
            choices: [TextChoice {
                text,
                index: 0,
                logprobs: None,
                finish_reason: Some("stop"),
            }],
            usage: Some(Some(usage)),
            system_fingerprint: SYSTEM_FINGERPRINT,
        }),
    };
    json_response(StatusCode::OK, json, Some(ids))
}
