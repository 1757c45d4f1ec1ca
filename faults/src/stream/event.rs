//! What one raw streamed event is: content (a "token"), bookkeeping, usage, the end,
//! or an error (docs/metrics-definitions.md).
//!
//! Classification is by the event's shape rather than trusting the listener's `api`
//! alone, because OpenAI-compatible routes exist on vLLM, TGI and Ollama and
//! gateways mix them. Parsing uses small borrowed structs that ignore unknown
//! fields and never keep the text itself, so inspecting an event allocates little;
//! anything that does not parse is [`EventKind::Other`], never a panic.
//!
//! A gRPC event is one length-prefixed message: each whole message is a token
//! (what a streaming RPC sends is its content), except a Triton stream message
//! whose `error_message` is set, which is an error. A compressed message is still
//! a token, flagged, since nothing inside it can be read or rewritten.

use std::borrow::Cow;
use std::fmt;
use std::ops::Range;

use serde::de::{self, Deserializer, IgnoredAny, MapAccess, Visitor};
use serde::Deserialize;

use super::framing::Framing;
use crate::api::{ApiKind, Endpoint};

/// The role of one event in the stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EventKind {
    /// Carries non-empty text, reasoning/thinking or tool-call argument deltas: a
    /// "token" for TTFT, ITL, counting and every `after_tokens`.
    Content,
    /// Bookkeeping: a role-only chunk, `ping`, `message_start`,
    /// `content_block_start`/`stop`, a finish-reason chunk, Responses lifecycle events.
    Meta,
    /// Mainly carries usage: OpenAI's `include_usage` chunk, Anthropic `message_delta`.
    Usage,
    /// The stream's proper end: `data: [DONE]`, `message_stop`,
    /// `response.completed|failed|incomplete`, Ollama `done: true`, TGI's final event.
    Terminator,
    /// A mid-stream error: a data event with an `error` key, Anthropic `event: error`,
    /// a Responses `error` event.
    Error,
    /// SSE comment lines only (`: keep-alive`).
    Comment,
    /// Anything else: blank lines, unparsable data, unknown shapes.
    Other,
}

/// What [`inspect`] learned from one event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventInfo {
    pub kind: EventKind,
    /// Prompt tokens reported by the provider (`prompt_tokens`, `input_tokens`,
    /// Ollama `prompt_eval_count`).
    pub usage_input: Option<u64>,
    /// Output tokens reported by the provider; cumulative where the provider is
    /// (Anthropic), so the latest value is the total.
    pub usage_output: Option<u64>,
    /// The finish/stop reason when this event carries one.
    pub finish_reason: Option<String>,
    /// gRPC: the message is compressed (`grpc-encoding`), so content faults must
    /// leave it alone and say so; timing faults still count it.
    pub compressed: bool,
    /// An OpenAI-shaped chunk (`choices`), whose stream is finished only once a
    /// choice gives a `finish_reason`.
    pub choices: bool,
}

impl EventInfo {
    /// An event of this kind with nothing else known.
    pub fn of(kind: EventKind) -> Self {
        EventInfo {
            kind,
            usage_input: None,
            usage_output: None,
            finish_reason: None,
            compressed: false,
            choices: false,
        }
    }

    /// Whether this event is a token.
    pub fn is_content(&self) -> bool {
        self.kind == EventKind::Content
    }
}

/// Classify one raw event, as cut by [`super::framing::Splitter`].
///
/// `api` and `endpoint` are hints for shapes that could be read two ways; the event's
/// own fields decide otherwise.
pub fn inspect(api: ApiKind, endpoint: Endpoint, framing: Framing, raw: &[u8]) -> EventInfo {
    let (event_name, data) = match framing {
        Framing::Sse => {
            let f = SseFields::parse(raw);
            if f.event.as_deref() == Some(b"error".as_slice()) {
                let mut info = EventInfo::of(EventKind::Error);
                if let Some(d) = f.data() {
                    if let Ok(ev) = serde_json::from_slice::<Ev<'_>>(&d) {
                        info.usage_input = ev.usage.as_ref().and_then(Usage::input);
                    }
                }
                return info;
            }
            match f.data() {
                Some(d) => (f.event.clone(), d),
                None => {
                    let kind = if f.comments > 0 {
                        EventKind::Comment
                    } else if f.event.is_some() {
                        EventKind::Meta
                    } else {
                        EventKind::Other
                    };
                    return EventInfo::of(kind);
                }
            }
        }
        Framing::Ndjson => {
            let line = trim_eol(raw);
            if line.iter().all(u8::is_ascii_whitespace) {
                return EventInfo::of(EventKind::Other);
            }
            (None, Cow::Borrowed(line))
        }
        Framing::Grpc => return grpc_event(api, raw),
    };
    if data.trim_ascii() == b"[DONE]" {
        return EventInfo::of(EventKind::Terminator);
    }
    let Ok(ev) = serde_json::from_slice::<Ev<'_>>(&data) else {
        return EventInfo::of(EventKind::Other);
    };
    classify(api, endpoint, event_name.as_deref(), &ev)
}

/// One gRPC event: a whole message is a token (Triton's with an `error_message`
/// an error); a piece of an oversized or broken body is [`EventKind::Other`].
fn grpc_event(api: ApiKind, raw: &[u8]) -> EventInfo {
    use crate::grpc::frame::PREFIX_LEN;
    let whole = raw.len() >= PREFIX_LEN
        && raw[0] <= 1
        && u32::from_be_bytes([raw[1], raw[2], raw[3], raw[4]]) as usize == raw.len() - PREFIX_LEN;
    if !whole {
        return EventInfo::of(EventKind::Other);
    }
    let mut info = EventInfo::of(EventKind::Content);
    if raw[0] == 1 {
        info.compressed = true;
        return info;
    }
    if api == ApiKind::Triton && crate::grpc::triton::stream_error(&raw[PREFIX_LEN..]).is_some() {
        info.kind = EventKind::Error;
    }
    info
}

fn classify(api: ApiKind, endpoint: Endpoint, event_name: Option<&[u8]>, ev: &Ev<'_>) -> EventInfo {
    let mut info = EventInfo::of(EventKind::Other);
    if ev.error.is_some() || ev.ty.as_deref() == Some("error") {
        info.kind = EventKind::Error;
        return info;
    }
    let ty = ev.ty.as_deref().unwrap_or("");
    // Anthropic Messages.
    let anthropic_type = matches!(
        ty,
        "message_start"
            | "content_block_start"
            | "content_block_delta"
            | "content_block_stop"
            | "message_delta"
            | "message_stop"
            | "ping"
    );
    if anthropic_type || (api == ApiKind::Anthropic && event_name.is_some() && !ty.is_empty()) {
        return anthropic(ty, ev, info);
    }
    // OpenAI Responses API: typed events.
    if ty.starts_with("response.") || (endpoint == Endpoint::Responses && !ty.is_empty()) {
        return responses(ty, ev, info);
    }
    // OpenAI chat and legacy completions (and every OpenAI-compatible server).
    if let Some(choices) = &ev.choices {
        let mut content = false;
        info.choices = true;
        for c in choices {
            if let Some(d) = &c.delta {
                content |= d.content.is_some_and(Text::non_empty)
                    || d.reasoning_content.is_some_and(Text::non_empty)
                    || d.reasoning.is_some_and(Text::non_empty)
                    || d.tool_calls.as_ref().is_some_and(|calls| {
                        calls.iter().any(|t| {
                            t.function
                                .as_ref()
                                .is_some_and(|f| f.arguments.is_some_and(Text::non_empty))
                        })
                    });
            }
            content |= c.text.is_some_and(Text::non_empty);
            if info.finish_reason.is_none() {
                info.finish_reason = c.finish_reason.clone();
            }
        }
        if let Some(u) = &ev.usage {
            info.usage_input = u.input();
            info.usage_output = u.output();
        }
        info.kind = if content {
            EventKind::Content
        } else if choices.is_empty() && ev.usage.is_some() {
            EventKind::Usage
        } else {
            EventKind::Meta
        };
        return info;
    }
    // Ollama native (NDJSON).
    if let Some(done) = ev.done {
        info.usage_input = ev.prompt_eval_count;
        info.usage_output = ev.eval_count;
        if done {
            info.kind = EventKind::Terminator;
            info.finish_reason = ev.done_reason.clone();
            return info;
        }
        let message = ev.message.as_ref().is_some_and(|m| {
            m.content.is_some_and(Text::non_empty)
                || m.thinking.is_some_and(Text::non_empty)
                || m.tool_calls.as_ref().is_some_and(|t| !t.is_empty())
        });
        let generate = matches!(&ev.response, Some(Field::Str(t)) if t.non_empty());
        let thinking = ev.thinking.is_some_and(Text::non_empty);
        info.kind = if message || generate || thinking {
            EventKind::Content
        } else {
            EventKind::Meta
        };
        return info;
    }
    // TGI native `/generate_stream`.
    if ev.token.is_some() || ev.generated_text.is_some() {
        if let Some(d) = &ev.details {
            info.usage_output = d.generated_tokens;
            info.finish_reason = d.finish_reason.clone();
        }
        info.kind = if ev.generated_text.is_some() {
            EventKind::Terminator
        } else if ev
            .token
            .as_ref()
            .is_some_and(|t| t.special != Some(true) && t.text.is_some_and(Text::non_empty))
        {
            EventKind::Content
        } else {
            EventKind::Meta
        };
        return info;
    }
    if ev.usage.is_some() {
        let u = ev.usage.as_ref();
        info.usage_input = u.and_then(Usage::input);
        info.usage_output = u.and_then(Usage::output);
        info.kind = EventKind::Usage;
    }
    info
}

fn anthropic(ty: &str, ev: &Ev<'_>, mut info: EventInfo) -> EventInfo {
    match ty {
        "content_block_delta" => {
            let content = match &ev.delta {
                Some(Field::Obj(d)) => match d.ty.as_deref() {
                    Some("text_delta") => d.text.is_some_and(Text::non_empty),
                    Some("input_json_delta") => d.partial_json.is_some_and(Text::non_empty),
                    Some("thinking_delta") => d.thinking.is_some_and(Text::non_empty),
                    _ => false,
                },
                _ => false,
            };
            info.kind = if content {
                EventKind::Content
            } else {
                EventKind::Meta
            };
        }
        "message_start" => {
            info.kind = EventKind::Meta;
            info.usage_input = ev
                .message
                .as_ref()
                .and_then(|m| m.usage.as_ref())
                .and_then(|u| u.input_tokens);
        }
        "message_delta" => {
            info.kind = EventKind::Usage;
            if let Some(u) = &ev.usage {
                info.usage_output = u.output_tokens;
                info.usage_input = u.input_tokens;
            }
            if let Some(Field::Obj(d)) = &ev.delta {
                info.finish_reason = d.stop_reason.clone();
            }
        }
        "message_stop" => info.kind = EventKind::Terminator,
        _ => info.kind = EventKind::Meta,
    }
    info
}

fn responses(ty: &str, ev: &Ev<'_>, mut info: EventInfo) -> EventInfo {
    let delta_event = ty == "response.output_text.delta"
        || ty == "response.refusal.delta"
        || ty == "response.function_call_arguments.delta"
        || (ty.starts_with("response.reasoning") && ty.ends_with(".delta"));
    if delta_event {
        let non_empty = matches!(&ev.delta, Some(Field::Str(t)) if t.non_empty());
        info.kind = if non_empty {
            EventKind::Content
        } else {
            EventKind::Meta
        };
        return info;
    }
    match ty {
        "response.completed" | "response.failed" | "response.incomplete" => {
            info.kind = EventKind::Terminator;
            if let Some(Field::Obj(r)) = &ev.response {
                if let Some(u) = &r.usage {
                    info.usage_input = u.input();
                    info.usage_output = u.output();
                }
            }
        }
        _ => info.kind = EventKind::Meta,
    }
    info
}

// ---------------------------------------------------------------------------
// SSE fields
// ---------------------------------------------------------------------------

/// The fields of one SSE event that matter here.
#[derive(Debug, Default)]
pub(crate) struct SseFields<'a> {
    /// The `event:` value.
    pub event: Option<Cow<'a, [u8]>>,
    /// Each `data:` line's value range in the raw event (the optional space after
    /// the colon excluded, the line terminator excluded).
    pub data_lines: Vec<Range<usize>>,
    pub comments: usize,
    raw: &'a [u8],
}

impl<'a> SseFields<'a> {
    pub(crate) fn parse(raw: &'a [u8]) -> Self {
        let mut f = SseFields {
            raw,
            ..SseFields::default()
        };
        let mut i = 0;
        while i < raw.len() {
            let end = raw[i..]
                .iter()
                .position(|&b| b == b'\n' || b == b'\r')
                .map_or(raw.len(), |p| i + p);
            let line = &raw[i..end];
            if line.first() == Some(&b':') {
                f.comments += 1;
            } else if !line.is_empty() {
                let (name, value_start) = match line.iter().position(|&b| b == b':') {
                    Some(c) => {
                        let vs = if line.get(c + 1) == Some(&b' ') {
                            c + 2
                        } else {
                            c + 1
                        };
                        (&line[..c], i + vs)
                    }
                    None => (line, end),
                };
                match name {
                    b"data" => f.data_lines.push(value_start..end),
                    b"event" => f.event = Some(Cow::Borrowed(&raw[value_start..end])),
                    _ => {}
                }
            }
            // Step over the terminator (`\r\n` counts as one).
            i = end;
            if raw.get(i) == Some(&b'\r') {
                i += 1;
            }
            if raw.get(i) == Some(&b'\n') {
                i += 1;
            }
        }
        f
    }

    /// The event's data: the `data:` lines joined with `\n`, borrowed when there is
    /// only one. `None` when the event has no `data:` line.
    pub(crate) fn data(&self) -> Option<Cow<'a, [u8]>> {
        match self.data_lines.as_slice() {
            [] => None,
            [one] => Some(Cow::Borrowed(&self.raw[one.clone()])),
            many => {
                let mut out = Vec::new();
                for (n, r) in many.iter().enumerate() {
                    if n > 0 {
                        out.push(b'\n');
                    }
                    out.extend_from_slice(&self.raw[r.clone()]);
                }
                Some(Cow::Owned(out))
            }
        }
    }
}

/// The event's JSON payload range in `raw`, for rewriting in place: the single
/// `data:` line's value (SSE) or the line without its terminator (NDJSON). `None`
/// for SSE events with no or several `data:` lines.
pub(crate) fn payload_range(framing: Framing, raw: &[u8]) -> Option<Range<usize>> {
    match framing {
        Framing::Sse => {
            let f = SseFields::parse(raw);
            match f.data_lines.as_slice() {
                [one] => Some(one.clone()),
                _ => None,
            }
        }
        Framing::Ndjson => Some(0..trim_eol(raw).len()),
        // Protobuf, not JSON: nothing to rewrite as text.
        Framing::Grpc => None,
    }
}

/// The line terminator the event uses (`\r\n`, `\r` or `\n`), so rewritten and
/// injected events match the stream's own style.
pub(crate) fn line_ending(raw: &[u8]) -> &'static str {
    match raw.iter().position(|&b| b == b'\n' || b == b'\r') {
        Some(i) if raw[i] == b'\r' && raw.get(i + 1) == Some(&b'\n') => "\r\n",
        Some(i) if raw[i] == b'\r' => "\r",
        _ => "\n",
    }
}

fn trim_eol(raw: &[u8]) -> &[u8] {
    let mut end = raw.len();
    while end > 0 && matches!(raw[end - 1], b'\n' | b'\r') {
        end -= 1;
    }
    &raw[..end]
}

// ---------------------------------------------------------------------------
// Minimal borrowed shapes
// ---------------------------------------------------------------------------

/// A JSON string reduced to whether it is empty: the text itself is never needed
/// to classify, so it is never copied.
#[derive(Debug, Clone, Copy)]
struct Text(bool);

impl Text {
    fn non_empty(self) -> bool {
        self.0
    }
}

impl<'de> Deserialize<'de> for Text {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Text;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Text, E> {
                Ok(Text(!v.is_empty()))
            }
            // Anything else (Anthropic's `message.content` is a list) is not text.
            fn visit_unit<E: de::Error>(self) -> Result<Text, E> {
                Ok(Text(false))
            }
            fn visit_bool<E: de::Error>(self, _: bool) -> Result<Text, E> {
                Ok(Text(false))
            }
            fn visit_i64<E: de::Error>(self, _: i64) -> Result<Text, E> {
                Ok(Text(false))
            }
            fn visit_u64<E: de::Error>(self, _: u64) -> Result<Text, E> {
                Ok(Text(false))
            }
            fn visit_f64<E: de::Error>(self, _: f64) -> Result<Text, E> {
                Ok(Text(false))
            }
            fn visit_seq<A: de::SeqAccess<'de>>(self, mut seq: A) -> Result<Text, A::Error> {
                while seq.next_element::<IgnoredAny>()?.is_some() {}
                Ok(Text(false))
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Text, A::Error> {
                while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
                Ok(Text(false))
            }
        }
        d.deserialize_any(V)
    }
}

/// A field that is a string in one API and an object in another (`delta` is text in
/// the Responses API and an object in Anthropic's; `response` is text in Ollama's
/// generate and an object in the Responses API).
#[derive(Debug)]
enum Field<T> {
    Str(Text),
    Obj(T),
    Other,
}

impl<'de, T: Deserialize<'de>> Deserialize<'de> for Field<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V<T>(std::marker::PhantomData<T>);
        impl<'de, T: Deserialize<'de>> Visitor<'de> for V<T> {
            type Value = Field<T>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string or an object")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Field<T>, E> {
                Ok(Field::Str(Text(!v.is_empty())))
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Field<T>, A::Error> {
                T::deserialize(de::value::MapAccessDeserializer::new(map)).map(Field::Obj)
            }
            fn visit_unit<E: de::Error>(self) -> Result<Field<T>, E> {
                Ok(Field::Other)
            }
            fn visit_bool<E: de::Error>(self, _: bool) -> Result<Field<T>, E> {
                Ok(Field::Other)
            }
            fn visit_i64<E: de::Error>(self, _: i64) -> Result<Field<T>, E> {
                Ok(Field::Other)
            }
            fn visit_u64<E: de::Error>(self, _: u64) -> Result<Field<T>, E> {
                Ok(Field::Other)
            }
            fn visit_f64<E: de::Error>(self, _: f64) -> Result<Field<T>, E> {
                Ok(Field::Other)
            }
            fn visit_seq<A: de::SeqAccess<'de>>(self, mut seq: A) -> Result<Field<T>, A::Error> {
                while seq.next_element::<IgnoredAny>()?.is_some() {}
                Ok(Field::Other)
            }
        }
        d.deserialize_any(V(std::marker::PhantomData))
    }
}

#[derive(Debug, Deserialize)]
struct Ev<'a> {
    #[serde(borrow, rename = "type", default)]
    ty: Option<Cow<'a, str>>,
    #[serde(default)]
    error: Option<IgnoredAny>,
    #[serde(default)]
    choices: Option<Vec<Choice>>,
    #[serde(default)]
    usage: Option<Usage>,
    #[serde(borrow, default)]
    delta: Option<Field<Delta<'a>>>,
    #[serde(default)]
    message: Option<Message>,
    #[serde(default)]
    response: Option<Field<ResponseObj>>,
    #[serde(default)]
    thinking: Option<Text>,
    #[serde(default)]
    done: Option<bool>,
    #[serde(default)]
    done_reason: Option<String>,
    #[serde(default)]
    prompt_eval_count: Option<u64>,
    #[serde(default)]
    eval_count: Option<u64>,
    #[serde(default)]
    token: Option<TgiToken>,
    #[serde(default)]
    generated_text: Option<IgnoredAny>,
    #[serde(default)]
    details: Option<TgiDetails>,
}

#[derive(Debug, Deserialize)]
struct Choice {
    #[serde(default)]
    delta: Option<ChatDelta>,
    #[serde(default)]
    text: Option<Text>,
    #[serde(default)]
    finish_reason: Option<String>,
}

#[derive(Debug, Deserialize)]
struct ChatDelta {
    #[serde(default)]
    content: Option<Text>,
    #[serde(default)]
    reasoning_content: Option<Text>,
    #[serde(default)]
    reasoning: Option<Text>,
    #[serde(default)]
    tool_calls: Option<Vec<ToolCall>>,
}

#[derive(Debug, Deserialize)]
struct ToolCall {
    #[serde(default)]
    function: Option<Function>,
}

#[derive(Debug, Deserialize)]
struct Function {
    #[serde(default)]
    arguments: Option<Text>,
}

#[derive(Debug, Deserialize)]
struct Usage {
    #[serde(default)]
    prompt_tokens: Option<u64>,
    #[serde(default)]
    completion_tokens: Option<u64>,
    #[serde(default)]
    input_tokens: Option<u64>,
    #[serde(default)]
    output_tokens: Option<u64>,
}

impl Usage {
    fn input(&self) -> Option<u64> {
        self.prompt_tokens.or(self.input_tokens)
    }
    fn output(&self) -> Option<u64> {
        self.completion_tokens.or(self.output_tokens)
    }
}

#[derive(Debug, Deserialize)]
struct Delta<'a> {
    #[serde(borrow, rename = "type", default)]
    ty: Option<Cow<'a, str>>,
    #[serde(default)]
    text: Option<Text>,
    #[serde(default)]
    partial_json: Option<Text>,
    #[serde(default)]
    thinking: Option<Text>,
    #[serde(default)]
    stop_reason: Option<String>,
}

#[derive(Debug, Deserialize)]
struct Message {
    #[serde(default)]
    usage: Option<Usage>,
    #[serde(default)]
    content: Option<Text>,
    #[serde(default)]
    thinking: Option<Text>,
    #[serde(default)]
    tool_calls: Option<Vec<IgnoredAny>>,
}

#[derive(Debug, Deserialize)]
struct ResponseObj {
    #[serde(default)]
    usage: Option<Usage>,
}

#[derive(Debug, Deserialize)]
struct TgiToken {
    #[serde(default)]
    text: Option<Text>,
    #[serde(default)]
    special: Option<bool>,
}

#[derive(Debug, Deserialize)]
struct TgiDetails {
    #[serde(default)]
    generated_tokens: Option<u64>,
    #[serde(default)]
    finish_reason: Option<String>,
}
