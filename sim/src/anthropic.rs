//! The Anthropic Messages API: `POST /v1/messages`, whole or streamed.
//!
//! The stream is byte-for-byte the shape of the real API (and of the fixtures in
//! `reference/fixtures/anthropic-basic.sse`): named SSE events, each its own body
//! frame, `ping` included, `message_delta` carrying the cumulative output count.
//! The proxy's Anthropic transformers (TTFT on `text_delta`, token counting from
//! `message_delta.usage`, `event: error` injection) and the anthropic SDK are
//! tested against it, so field order follows the wire (structs, not `json!`).
//!
//! Answers come from the same deterministic text as the OpenAI endpoints. Unlike
//! OpenAI requests, every Anthropic request must give `max_tokens`, and clients
//! set it high (1024, 4096) as a cap rather than a length, so an answer here has
//! a natural length of `max_tokens_default` tokens and `max_tokens` only cuts it
//! short, with `stop_reason: "max_tokens"`, as on the real service.

use std::time::Duration;

use bytes::Bytes;
use http::header::{HeaderValue, CONTENT_TYPE};
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use serde::Serialize;
use serde_json::Value;
use tokio::time::Instant;

use crate::config::SimConfig;
use crate::openai::{chat_prompt_text, json_bytes, read_body, SimBody};
use crate::pacing::{token_offsets, PacedBody};
use crate::text::{answer_tokens, estimate_tokens, prompt_hash};

/// The prompt text of a Messages request: the `system` prompt (a string or an
/// array of text blocks), then every message's text, joined by newlines. Exposed
/// so that tests can predict the answer with [`crate::answer_text`].
pub fn messages_prompt_text(system: Option<&Value>, messages: &[Value]) -> String {
    let system = match system {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Array(blocks)) => blocks
            .iter()
            .filter_map(|b| b.get("text").and_then(Value::as_str))
            .collect::<Vec<_>>()
            .join("\n"),
        _ => String::new(),
    };
    let msgs = chat_prompt_text(messages);
    if system.is_empty() {
        msgs
    } else {
        format!("{system}\n{msgs}")
    }
}

/// The parts of a Messages request that shape the answer.
struct Parsed {
    model: String,
    prompt: String,
    stream: bool,
    max_tokens: u64,
}

/// An Anthropic error: `{"type":"error","error":{"type","message"},"request_id"}`.
#[derive(Serialize)]
struct ErrorEnvelope<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    error: ErrorBody,
    request_id: &'a str,
}

#[derive(Serialize)]
struct ErrorBody {
    #[serde(rename = "type")]
    kind: &'static str,
    message: String,
}

fn invalid(message: impl Into<String>) -> (StatusCode, &'static str, String) {
    (
        StatusCode::BAD_REQUEST,
        "invalid_request_error",
        message.into(),
    )
}

fn parse(body: &[u8]) -> Result<Parsed, (StatusCode, &'static str, String)> {
    let v: Value = serde_json::from_slice(body)
        .map_err(|e| invalid(format!("There was an error parsing the body: {e}")))?;
    let Some(obj) = v.as_object() else {
        return Err(invalid("Input should be a valid dictionary"));
    };
    let model = match obj.get("model") {
        Some(Value::String(m)) if !m.is_empty() => m.clone(),
        Some(Value::String(_)) => {
            return Err(invalid("model: String should have at least 1 character"))
        }
        None | Some(Value::Null) => return Err(invalid("model: Field required")),
        Some(_) => return Err(invalid("model: Input should be a valid string")),
    };
    let messages = match obj.get("messages") {
        Some(Value::Array(m)) if !m.is_empty() => m,
        Some(Value::Array(_)) => return Err(invalid("messages: at least one message is required")),
        None | Some(Value::Null) => return Err(invalid("messages: Field required")),
        Some(_) => return Err(invalid("messages: Input should be a valid list")),
    };
    let max_tokens = match obj.get("max_tokens") {
        None | Some(Value::Null) => return Err(invalid("max_tokens: Field required")),
        Some(v) => match v.as_u64() {
            Some(n) if n >= 1 => n,
            Some(_) => {
                return Err(invalid(
                    "max_tokens: Input should be greater than or equal to 1",
                ))
            }
            None => return Err(invalid("max_tokens: Input should be a valid integer")),
        },
    };
    let stream = match obj.get("stream") {
        None | Some(Value::Null) => false,
        Some(Value::Bool(b)) => *b,
        Some(_) => return Err(invalid("stream: Input should be a valid boolean")),
    };
    Ok(Parsed {
        prompt: messages_prompt_text(obj.get("system"), messages),
        model,
        stream,
        max_tokens,
    })
}

#[derive(Debug, Clone, Copy, Serialize)]
struct Usage {
    input_tokens: u32,
    output_tokens: u32,
}

#[derive(Serialize)]
struct TextBlock<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    text: &'a str,
}

/// A whole message, and the `message` of `message_start` (empty content, no
/// stop reason yet).
#[derive(Serialize)]
struct Message<'a> {
    id: &'a str,
    #[serde(rename = "type")]
    kind: &'static str,
    role: &'static str,
    model: &'a str,
    content: Vec<TextBlock<'a>>,
    stop_reason: Option<&'static str>,
    stop_sequence: Option<()>,
    usage: Usage,
}

#[derive(Serialize)]
struct MessageStart<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    message: Message<'a>,
}

#[derive(Serialize)]
struct BlockStart<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    index: u32,
    content_block: TextBlock<'a>,
}

#[derive(Serialize)]
struct TextDelta<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    text: &'a str,
}

#[derive(Serialize)]
struct BlockDelta<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    index: u32,
    delta: TextDelta<'a>,
}

#[derive(Serialize)]
struct BlockStop {
    #[serde(rename = "type")]
    kind: &'static str,
    index: u32,
}

#[derive(Serialize)]
struct StopDelta {
    stop_reason: &'static str,
    stop_sequence: Option<()>,
}

#[derive(Serialize)]
struct OutputUsage {
    output_tokens: u32,
}

#[derive(Serialize)]
struct MessageDelta {
    #[serde(rename = "type")]
    kind: &'static str,
    delta: StopDelta,
    usage: OutputUsage,
}

/// One named SSE event: `event: <name>\ndata: <json>\n\n`.
fn event(name: &str, json: Result<Vec<u8>, serde_json::Error>) -> Bytes {
    let data = json_bytes(json);
    let mut out = Vec::with_capacity(name.len() + data.len() + 16);
    out.extend_from_slice(b"event: ");
    out.extend_from_slice(name.as_bytes());
    out.extend_from_slice(b"\ndata: ");
    out.extend_from_slice(&data);
    out.extend_from_slice(b"\n\n");
    Bytes::from(out)
}

/// Response identity: a `msg_01...` id and a `req_011C...` request id, both pure
/// functions of the seed and the request ordinal.
struct Ids {
    id: String,
    request_id: String,
}

const BASE62: &[u8; 62] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

fn base62(mut state: u64, prefix: &str, n: usize) -> String {
    let mut out = String::with_capacity(prefix.len() + n);
    out.push_str(prefix);
    for _ in 0..n {
        // splitmix64: a well-mixed stream from one seed.
        state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = state;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^= z >> 31;
        out.push(char::from(BASE62[(z % 62) as usize]));
    }
    out
}

impl Ids {
    fn new(ordinal: u64, seed: u64) -> Self {
        let tag = prompt_hash(&seed.to_string(), &ordinal.to_string());
        Self {
            // Real ids: `msg_01` and 22 base62 characters; `req_011C` and 20.
            id: base62(tag, "msg_01", 22),
            request_id: base62(tag ^ 0x5eed, "req_011C", 20),
        }
    }
}

/// `POST /v1/messages`: validate, then answer whole (after the last token's
/// time) or as a paced stream.
pub(crate) async fn messages(
    cfg: &SimConfig,
    ordinal: u64,
    req: Request<Incoming>,
    start: Instant,
) -> Response<SimBody> {
    let ids = Ids::new(ordinal, cfg.seed);
    let headers = req.headers().clone();
    let body = match read_body(req).await {
        Ok(b) => b,
        Err(e) => return error(&ids, invalid(e)),
    };
    let parsed = match parse(&body) {
        Ok(p) => p,
        Err(e) => return error(&ids, e),
    };
    let scripted = crate::text::scripted_tokens(&headers, None);
    let natural = scripted.as_ref().map_or(cfg.answer_len(None), |t| {
        u32::try_from(t.len()).unwrap_or(u32::MAX)
    });
    let n = u32::try_from(parsed.max_tokens.min(u64::from(natural)).max(1)).unwrap_or(natural);
    let n = if scripted.is_some() {
        n
    } else {
        cfg.answer_len(Some(u64::from(n)))
    };
    let stop_reason = if parsed.max_tokens < u64::from(natural) {
        "max_tokens"
    } else {
        "end_turn"
    };
    let tokens = match scripted {
        Some(mut t) => {
            t.truncate(n as usize);
            t
        }
        None => answer_tokens(&parsed.model, &parsed.prompt, n),
    };
    let offsets = token_offsets(cfg, n, ordinal);
    let input_tokens = estimate_tokens(&parsed.prompt);
    let end = offsets.last().copied().unwrap_or_default();

    if parsed.stream {
        let events = stream_events(&ids, &parsed, &tokens, &offsets, input_tokens, stop_reason);
        let mut resp = Response::new(PacedBody::new(start, events).boxed_unsync());
        set_headers(&mut resp, "text/event-stream; charset=utf-8", &ids);
        return resp;
    }
    tokio::time::sleep_until(start + end).await;
    let text = tokens.concat();
    let msg = Message {
        id: &ids.id,
        kind: "message",
        role: "assistant",
        model: &parsed.model,
        content: vec![TextBlock {
            kind: "text",
            text: &text,
        }],
        stop_reason: Some(stop_reason),
        stop_sequence: None,
        usage: Usage {
            input_tokens,
            output_tokens: n,
        },
    };
    json(StatusCode::OK, serde_json::to_vec(&msg), &ids)
}

/// Every event of a streamed answer with the offset at which it is due: the
/// preamble (`message_start`, `content_block_start`, `ping`) at once, a
/// `content_block_delta` per token, and the closing events with the last token.
fn stream_events(
    ids: &Ids,
    req: &Parsed,
    tokens: &[String],
    offsets: &[Duration],
    input_tokens: u32,
    stop_reason: &'static str,
) -> Vec<(Duration, Bytes)> {
    let end = offsets.last().copied().unwrap_or_default();
    let mut events = Vec::with_capacity(tokens.len() + 6);
    let start = MessageStart {
        kind: "message_start",
        message: Message {
            id: &ids.id,
            kind: "message",
            role: "assistant",
            model: &req.model,
            content: Vec::new(),
            stop_reason: None,
            stop_sequence: None,
            usage: Usage {
                input_tokens,
                output_tokens: 1,
            },
        },
    };
    events.push((
        Duration::ZERO,
        event("message_start", serde_json::to_vec(&start)),
    ));
    let block = BlockStart {
        kind: "content_block_start",
        index: 0,
        content_block: TextBlock {
            kind: "text",
            text: "",
        },
    };
    events.push((
        Duration::ZERO,
        event("content_block_start", serde_json::to_vec(&block)),
    ));
    // Written as the real API writes it, space included.
    events.push((
        Duration::ZERO,
        Bytes::from_static(b"event: ping\ndata: {\"type\": \"ping\"}\n\n"),
    ));
    for (tok, at) in tokens.iter().zip(offsets) {
        let delta = BlockDelta {
            kind: "content_block_delta",
            index: 0,
            delta: TextDelta {
                kind: "text_delta",
                text: tok,
            },
        };
        events.push((
            *at,
            event("content_block_delta", serde_json::to_vec(&delta)),
        ));
    }
    let stop = BlockStop {
        kind: "content_block_stop",
        index: 0,
    };
    events.push((end, event("content_block_stop", serde_json::to_vec(&stop))));
    let delta = MessageDelta {
        kind: "message_delta",
        delta: StopDelta {
            stop_reason,
            stop_sequence: None,
        },
        usage: OutputUsage {
            output_tokens: u32::try_from(tokens.len()).unwrap_or(u32::MAX),
        },
    };
    events.push((end, event("message_delta", serde_json::to_vec(&delta))));
    events.push((
        end,
        Bytes::from_static(b"event: message_stop\ndata: {\"type\":\"message_stop\"}\n\n"),
    ));
    events
}

fn error(
    ids: &Ids,
    (status, kind, message): (StatusCode, &'static str, String),
) -> Response<SimBody> {
    let body = ErrorEnvelope {
        kind: "error",
        error: ErrorBody { kind, message },
        request_id: &ids.request_id,
    };
    json(status, serde_json::to_vec(&body), ids)
}

/// Anthropic's 404 for a path it does not serve (when the sim runs as
/// `--api anthropic`).
pub(crate) fn not_found() -> Response<SimBody> {
    let ids = Ids::new(u64::MAX, 0);
    error(
        &ids,
        (
            StatusCode::NOT_FOUND,
            "not_found_error",
            "Not Found".to_owned(),
        ),
    )
}

fn json(
    status: StatusCode,
    json: Result<Vec<u8>, serde_json::Error>,
    ids: &Ids,
) -> Response<SimBody> {
    let mut resp = Response::new(Full::new(Bytes::from(json_bytes(json))).boxed_unsync());
    *resp.status_mut() = status;
    set_headers(&mut resp, "application/json", ids);
    resp
}

fn set_headers(resp: &mut Response<SimBody>, content_type: &'static str, ids: &Ids) {
    let h = resp.headers_mut();
    h.insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    if let Ok(v) = HeaderValue::from_str(&ids.request_id) {
        h.insert("request-id", v);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_have_anthropic_shapes() {
        let ids = Ids::new(3, 7);
        assert_eq!(ids.id.len(), "msg_01".len() + 22);
        assert!(ids.id.starts_with("msg_01"));
        assert_eq!(ids.request_id.len(), 28);
        assert!(ids.request_id.starts_with("req_011C"));
        assert_eq!(ids.id, Ids::new(3, 7).id);
        assert_ne!(ids.id, Ids::new(4, 7).id);
    }

    #[test]
    fn validation_messages_name_the_field() {
        let e = |b: &str| parse(b.as_bytes()).err().map(|e| e.2).unwrap_or_default();
        assert_eq!(
            e(r#"{"model":"m","messages":[{"role":"user","content":"x"}]}"#),
            "max_tokens: Field required"
        );
        assert_eq!(
            e(r#"{"max_tokens":5,"messages":[{"role":"user","content":"x"}]}"#),
            "model: Field required"
        );
        assert_eq!(
            e(r#"{"model":"m","max_tokens":5}"#),
            "messages: Field required"
        );
        assert!(e("{nope").starts_with("There was an error parsing the body"));
    }

    #[test]
    fn each_event_is_its_own_frame() {
        let parsed = Parsed {
            model: "m".into(),
            prompt: "p".into(),
            stream: true,
            max_tokens: 3,
        };
        let tokens = answer_tokens("m", "p", 3);
        let offsets = [1, 2, 3].map(Duration::from_millis);
        let evs = stream_events(&Ids::new(0, 0), &parsed, &tokens, &offsets, 1, "end_turn");
        assert_eq!(evs.len(), 3 + 3 + 3);
        for (_, frame) in &evs {
            let text = std::str::from_utf8(frame).unwrap_or_default();
            assert!(text.starts_with("event: "), "{text:?}");
            assert_eq!(text.matches("\n\n").count(), 1, "{text:?}");
            assert!(text.ends_with("\n\n"));
        }
        let at: Vec<u64> = evs.iter().map(|(d, _)| d.as_millis() as u64).collect();
        assert_eq!(at, [0, 0, 0, 1, 2, 3, 3, 3, 3]);
    }

    #[test]
    fn system_prompt_comes_first() {
        let msgs = [serde_json::json!({"role":"user","content":[{"type":"text","text":"hi"}]})];
        assert_eq!(messages_prompt_text(None, &msgs), "hi");
        let sys = Value::String("be brief".into());
        assert_eq!(messages_prompt_text(Some(&sys), &msgs), "be brief\nhi");
        let blocks = serde_json::json!([{"type":"text","text":"a"},{"type":"text","text":"b"}]);
        assert_eq!(messages_prompt_text(Some(&blocks), &msgs), "a\nb\nhi");
    }
}
