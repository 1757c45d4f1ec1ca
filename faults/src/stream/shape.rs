//! Stream faults, event by event: timing, stalls, endings, mid-stream errors,
//! corruption, and content rewrites (docs/stream-faults.md).
//!
//! The [`Shaper`] is pure: it never sleeps or touches a socket. Fed one raw event at
//! a time with the instant it arrived, it answers with [`Action`]s: bytes to send
//! *not before* an instant, a stall barrier, a clean end or a reset. The proxy's
//! body wrapper carries them out in order. Keeping time in the actions (rather than
//! sleeping here) makes every timing rule exact and testable under paused time,
//! and lets the proxy's release signal cut every wait short in one place.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use rand::Rng;
use rand_chacha::ChaCha8Rng;
use serde::Deserialize;
use tokio::time::Instant;

use super::event::{line_ending, payload_range, EventInfo, EventKind, SseFields};
use super::framing::Framing;
use super::json;
use super::words::map_words;
use crate::api::{ApiKind, Endpoint};
use crate::fault::{BodyFault, ContentFault, StreamFault};
use crate::fault::{CorruptMode, FaultSpec, TruncateEnding};
use crate::presets::{self, RenderCtx};

/// What the proxy does next with the client's body, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Send these bytes, not before `at` (and after every earlier action).
    Emit { bytes: Bytes, at: Instant },
    /// A barrier: send nothing more until `until`; `None` means until the release
    /// signal fires or the client gives up. Later actions queue behind it.
    Stall { until: Option<Instant> },
    /// End the body cleanly now (after the actions before it) and stop reading the
    /// upstream.
    End,
    /// Abort the body: RST on HTTP/1.1, RST_STREAM on HTTP/2.
    Reset,
}

/// The stream and content faults decided for one exchange, in the order they
/// apply (rules in file order, faults in rule order). Each fault is typed by its
/// side ([`BodyFault`]) once, here, so every pass over the plan matches it
/// exhaustively.
#[derive(Debug, Clone, Default)]
pub struct StreamPlan {
    faults: Vec<(usize, BodyFault)>,
    model: Option<String>,
}

impl StreamPlan {
    /// An empty plan.
    pub fn new() -> Self {
        StreamPlan::default()
    }

    /// The request's model, named in injected error messages and Ollama endings.
    pub fn with_model(mut self, model: Option<String>) -> Self {
        self.model = model;
        self
    }

    /// Add a fault decided by the rule at index `rule` (the caller's index, reported
    /// back by [`Shaper::applied`]). Returns false, adding nothing, for a fault that
    /// is neither a stream, a content nor a vector fault.
    pub fn push(&mut self, rule: usize, fault: &FaultSpec) -> bool {
        match BodyFault::of(fault) {
            Some(f) => {
                self.faults.push((rule, f));
                true
            }
            None => false,
        }
    }

    /// Add a fault taken from another plan (a plan split by what the response
    /// allows), keeping its rule index.
    pub fn push_body(&mut self, rule: usize, fault: &BodyFault) {
        self.faults.push((rule, fault.clone()));
    }

    /// Whether no fault was added: the body can pass through untouched.
    pub fn is_empty(&self) -> bool {
        self.faults.is_empty()
    }

    /// Whether any fault needs a stream (the rest also work on plain JSON bodies).
    pub fn has_stream_faults(&self) -> bool {
        self.faults.iter().any(|(_, f)| f.is_stream_fault())
    }

    /// Every planned fault as (rule index, fault), in order.
    pub fn faults(&self) -> impl Iterator<Item = (usize, &BodyFault)> {
        self.faults.iter().map(|(r, f)| (*r, f))
    }

    /// Whether any fault rewrites vector results or embeddings.
    pub fn has_vector_faults(&self) -> bool {
        self.faults.iter().any(|(_, f)| f.is_vector_fault())
    }

    /// The model given with [`StreamPlan::with_model`].
    pub fn model(&self) -> Option<&str> {
        self.model.as_deref()
    }
}

/// Whose event shapes the stream uses, for the bytes the shaper writes itself
/// (terminators, error events).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Dialect {
    OpenAi,
    Responses,
    Anthropic,
    OllamaChat,
    OllamaGenerate,
    TgiNative,
    /// TGI's `/generate_stream` and `/v1/completions` are both "completion": the
    /// first event tells.
    TgiUnsure,
    /// gRPC messages: no terminator event (a call ends with its trailers, which
    /// the proxy writes); Triton's streams report errors in a message.
    Grpc {
        triton: bool,
    },
}

fn dialect(api: ApiKind, endpoint: Endpoint, framing: Framing) -> Dialect {
    match (api, endpoint, framing) {
        (_, _, Framing::Grpc) => Dialect::Grpc {
            triton: api == ApiKind::Triton,
        },
        (ApiKind::Anthropic, _, _) | (_, Endpoint::Messages, _) => Dialect::Anthropic,
        (_, Endpoint::Responses, _) => Dialect::Responses,
        (_, Endpoint::Chat, Framing::Ndjson) => Dialect::OllamaChat,
        (_, _, Framing::Ndjson) => Dialect::OllamaGenerate,
        (ApiKind::Tgi, Endpoint::Completion, Framing::Sse) => Dialect::TgiUnsure,
        _ => Dialect::OpenAi,
    }
}

/// String keys whose values are the model's text (what `garble` rewrites).
const TEXT_KEYS: &[&str] = &[
    "content",
    "text",
    "reasoning_content",
    "reasoning",
    "thinking",
    "delta",
    "response",
];

/// Text keys plus tool-call argument fragments (what corruption may hit).
const ANY_CONTENT_KEYS: &[&str] = &[
    "content",
    "text",
    "reasoning_content",
    "reasoning",
    "thinking",
    "delta",
    "response",
    "arguments",
    "partial_json",
];

/// Keys that carry a finish reason.
const FINISH_KEYS: &[&str] = &["finish_reason", "stop_reason", "done_reason"];

/// Applies a [`StreamPlan`] to one stream, one event at a time.
///
/// "Token" below means a content event ([`EventKind::Content`]); `after_tokens: N`
/// faults fire just before the (N+1)th token would go out, so the client receives
/// exactly N tokens first, and a stream with N tokens or fewer never triggers them.
#[derive(Debug)]
pub struct Shaper {
    /// The plan's faults, shared so a loop over them can borrow `self` mutably.
    faults: Arc<[(usize, BodyFault)]>,
    model: Option<String>,
    framing: Framing,
    dialect: Dialect,
    rng: ChaCha8Rng,
    /// Line terminator of the stream, learned from its first event.
    eol: Option<&'static str>,
    /// Upstream tokens seen (dropped ones included): what `after_tokens` counts.
    tokens_seen: u64,
    /// Tokens sent so far.
    tokens_sent: u64,
    fired: Vec<bool>,
    last_at: Option<Instant>,
    last_token_at: Option<Instant>,
    /// Anthropic: the content block that is open, closed by a clean truncation.
    open_block: Option<u64>,
    /// Stalled for good: later events pass unchanged behind the barrier.
    stalled_forever: bool,
    released: bool,
    done: bool,
    applied: Vec<(usize, &'static str)>,
}

impl Shaper {
    /// A shaper for one stream. `rng` is the decision's seeded stream, so every
    /// sample (delays, which events are corrupted, replacement words) is
    /// reproducible under `--seed`.
    pub fn new(
        api: ApiKind,
        endpoint: Endpoint,
        framing: Framing,
        plan: StreamPlan,
        rng: ChaCha8Rng,
    ) -> Self {
        let fired = vec![false; plan.faults.len()];
        Shaper {
            dialect: dialect(api, endpoint, framing),
            faults: plan.faults.into(),
            model: plan.model,
            framing,
            rng,
            eol: None,
            tokens_seen: 0,
            tokens_sent: 0,
            fired,
            last_at: None,
            last_token_at: None,
            open_block: None,
            stalled_forever: false,
            released: false,
            done: false,
            applied: Vec::new(),
        }
    }

    /// Faults that took effect so far, as (rule index, fault type), each once, in
    /// the order they first acted. Faults planned but absent here did not apply
    /// (an `after_tokens` beyond the stream's length, a `corrupt` that drew no
    /// event, a finish reason the stream never reported): record them as skipped.
    pub fn applied(&self) -> &[(usize, &'static str)] {
        &self.applied
    }

    /// Planned faults that have not applied (yet), as (rule index, fault type).
    pub fn not_applied(&self) -> Vec<(usize, &'static str)> {
        self.faults
            .iter()
            .map(|(r, f)| (*r, f.kind()))
            .filter(|a| !self.applied.contains(a))
            .collect()
    }

    /// Whether a `Reset` or `End` was returned: the proxy stops reading upstream.
    pub fn is_done(&self) -> bool {
        self.done
    }

    /// The release signal fired (kill switch, `stop_when`, `expires_after`): from
    /// now on every event passes unchanged. The proxy also stops honouring the
    /// `at` and `Stall` waits of actions it still holds.
    pub fn release(&mut self) {
        self.released = true;
    }

    /// Shape one raw event (as cut by the splitter) that arrived at `now`; `info`
    /// is [`super::event::inspect`]'s verdict on it.
    pub fn on_event(&mut self, raw: Bytes, info: &EventInfo, now: Instant) -> Vec<Action> {
        let mut out = Vec::new();
        if self.done {
            return out;
        }
        if self.eol.is_none() {
            self.eol = Some(line_ending(&raw));
        }
        let mut base = self.last_at.map_or(now, |t| t.max(now));
        if self.released || self.stalled_forever {
            self.emit(&mut out, raw, base);
            return out;
        }
        self.learn(&raw, info);

        if !info.is_content() {
            let raw = self.finish_reason(raw, info);
            self.emit(&mut out, raw, base);
            return out;
        }

        let index = self.tokens_seen;
        self.tokens_seen += 1;

        let faults = Arc::clone(&self.faults);
        // Faults that act at a position in the stream, in plan order.
        for (i, (rule, fault)) in faults.iter().enumerate() {
            let rule = *rule;
            if self.fired[i] {
                continue;
            }
            match fault {
                BodyFault::Stream(StreamFault::Stall(crate::fault::Stall {
                    after_tokens,
                    duration,
                    forever,
                })) if *after_tokens == index => {
                    self.fired[i] = true;
                    self.mark(rule, "stall");
                    match (duration, forever) {
                        (Some(d), false) => {
                            let until = later(base, d.sample(&mut self.rng));
                            out.push(Action::Stall { until: Some(until) });
                            base = until;
                            self.last_at = Some(until);
                        }
                        _ => {
                            out.push(Action::Stall { until: None });
                            self.stalled_forever = true;
                            self.emit(&mut out, raw, base);
                            return out;
                        }
                    }
                }
                BodyFault::Stream(StreamFault::Truncate(crate::fault::Truncate {
                    after_tokens,
                    ending,
                })) if *after_tokens == index => {
                    self.fired[i] = true;
                    self.mark(rule, "truncate");
                    self.done = true;
                    match ending {
                        TruncateEnding::Clean => {
                            let bytes = self.clean_ending();
                            if !bytes.is_empty() {
                                self.emit(&mut out, bytes, base);
                            }
                            out.push(Action::End);
                        }
                        TruncateEnding::NoTerminator => out.push(Action::End),
                        TruncateEnding::Reset => out.push(Action::Reset),
                    }
                    return out;
                }
                BodyFault::Stream(StreamFault::StreamError(crate::fault::StreamError {
                    after_tokens,
                    preset,
                })) if *after_tokens == index => {
                    self.fired[i] = true;
                    self.mark(rule, "stream_error");
                    self.done = true;
                    if self.dialect == (Dialect::Grpc { triton: false }) {
                        // A gRPC stream fails in its trailers, which the shaper
                        // cannot write: abort it (RST_STREAM) instead.
                        out.push(Action::Reset);
                        return out;
                    }
                    let bytes = self.error_event(preset.as_deref());
                    self.emit(&mut out, bytes, base);
                    out.push(Action::End);
                    return out;
                }
                // Not yet at their position.
                BodyFault::Stream(
                    StreamFault::Stall(_) | StreamFault::Truncate(_) | StreamFault::StreamError(_),
                ) => {}
                // Acting on the token itself, or on its timing: the passes below.
                BodyFault::Stream(
                    StreamFault::FirstTokenDelay(_)
                    | StreamFault::TokenDelay(_)
                    | StreamFault::TokenRate(_)
                    | StreamFault::Corrupt(_),
                )
                | BodyFault::Content(
                    ContentFault::Garble(_)
                    | ContentFault::EmptyCompletion(_)
                    | ContentFault::FinishReason(_),
                ) => {}
                // Vector faults: never in a stream.
                BodyFault::Results(_) | BodyFault::Embeddings(_) => {}
            }
        }

        // Faults that change or drop the token itself.
        let mut raw = raw;
        let mut copies = 1;
        for (rule, fault) in faults.iter() {
            let rule = *rule;
            match fault {
                BodyFault::Content(ContentFault::EmptyCompletion(_)) => {
                    self.mark(rule, "empty_completion");
                    return out;
                }
                BodyFault::Stream(StreamFault::Corrupt(crate::fault::Corrupt { rate, mode })) => {
                    let draw: f64 = self.rng.random();
                    if draw >= *rate {
                        continue;
                    }
                    let damaged = match mode {
                        CorruptMode::DropEvent => {
                            self.mark(rule, "corrupt");
                            return out;
                        }
                        CorruptMode::DuplicateEvent => {
                            copies += 1;
                            true
                        }
                        CorruptMode::InvalidJson => match self.cut_json(&raw) {
                            Some(b) => {
                                raw = b;
                                true
                            }
                            None => false,
                        },
                        CorruptMode::BadUtf8 => match self.bad_utf8(&raw) {
                            Some(b) => {
                                raw = b;
                                true
                            }
                            None => false,
                        },
                    };
                    if damaged {
                        self.mark(rule, "corrupt");
                    }
                }
                BodyFault::Content(ContentFault::Garble(crate::fault::Garble { fraction })) => {
                    if let Some(b) = self.garble(&raw, *fraction) {
                        raw = b;
                        self.mark(rule, "garble");
                    }
                }
                // Position and timing faults: the passes before and after this one;
                // a finish reason is rewritten where the stream reports it.
                BodyFault::Stream(
                    StreamFault::Stall(_)
                    | StreamFault::Truncate(_)
                    | StreamFault::StreamError(_)
                    | StreamFault::FirstTokenDelay(_)
                    | StreamFault::TokenDelay(_)
                    | StreamFault::TokenRate(_),
                )
                | BodyFault::Content(ContentFault::FinishReason(_)) => {}
                // Vector faults: never in a stream.
                BodyFault::Results(_) | BodyFault::Embeddings(_) => {}
            }
        }
        let raw = self.finish_reason(raw, info);

        // Timing.
        let mut at = base;
        for (rule, fault) in faults.iter() {
            let rule = *rule;
            match fault {
                BodyFault::Stream(StreamFault::FirstTokenDelay(
                    crate::fault::FirstTokenDelay { duration },
                )) if self.tokens_sent == 0 => {
                    at = later(at, duration.sample(&mut self.rng));
                    self.mark(rule, "first_token_delay");
                }
                BodyFault::Stream(StreamFault::TokenDelay(crate::fault::TokenDelay {
                    duration,
                })) if self.tokens_sent > 0 => {
                    at = later(at, duration.sample(&mut self.rng));
                    self.mark(rule, "token_delay");
                }
                BodyFault::Stream(StreamFault::TokenRate(crate::fault::TokenRate {
                    tokens_per_second,
                })) => {
                    if let (Some(prev), true) = (self.last_token_at, *tokens_per_second > 0.0) {
                        let gap = Duration::try_from_secs_f64(1.0 / tokens_per_second)
                            .unwrap_or(Duration::MAX);
                        let earliest = later(prev, gap);
                        if earliest > at {
                            at = earliest;
                            self.mark(rule, "token_rate");
                        }
                    }
                }
                // The first token's delay on later tokens, the others' on the first.
                BodyFault::Stream(StreamFault::FirstTokenDelay(_) | StreamFault::TokenDelay(_)) => {
                }
                // Faults on the stream's position or the token itself: the passes
                // before this one.
                BodyFault::Stream(
                    StreamFault::Stall(_)
                    | StreamFault::Truncate(_)
                    | StreamFault::StreamError(_)
                    | StreamFault::Corrupt(_),
                )
                | BodyFault::Content(
                    ContentFault::Garble(_)
                    | ContentFault::EmptyCompletion(_)
                    | ContentFault::FinishReason(_),
                ) => {}
                // Vector faults: never in a stream.
                BodyFault::Results(_) | BodyFault::Embeddings(_) => {}
            }
        }
        self.tokens_sent += 1;
        self.last_token_at = Some(at);
        for _ in 1..copies {
            self.emit(&mut out, raw.clone(), at);
        }
        self.emit(&mut out, raw, at);
        out
    }

    /// The upstream's body ended. Returns `[End]` (queued behind everything already
    /// returned, a forever stall's barrier included), or nothing when the shaper
    /// already ended the stream.
    pub fn on_end(&mut self, _now: Instant) -> Vec<Action> {
        if self.done {
            return Vec::new();
        }
        self.done = true;
        vec![Action::End]
    }

    fn emit(&mut self, out: &mut Vec<Action>, bytes: Bytes, at: Instant) {
        let at = self.last_at.map_or(at, |t| t.max(at));
        self.last_at = Some(at);
        out.push(Action::Emit { bytes, at });
    }

    fn mark(&mut self, rule: usize, kind: &'static str) {
        if !self.applied.contains(&(rule, kind)) {
            self.applied.push((rule, kind));
        }
    }

    fn eol(&self) -> &'static str {
        self.eol.unwrap_or("\n")
    }

    /// Track what the shaper's own endings depend on.
    fn learn(&mut self, raw: &[u8], info: &EventInfo) {
        match self.dialect {
            Dialect::TgiUnsure if info.kind != EventKind::Other => {
                let is_openai = payload_range(self.framing, raw)
                    .is_some_and(|r| !json::string_values(&raw[r], &["object", "id"]).is_empty());
                self.dialect = if is_openai {
                    Dialect::OpenAi
                } else {
                    Dialect::TgiNative
                };
            }
            Dialect::Anthropic if info.kind == EventKind::Meta => {
                #[derive(Deserialize)]
                struct Block<'a> {
                    #[serde(borrow, rename = "type")]
                    ty: std::borrow::Cow<'a, str>,
                    #[serde(default)]
                    index: Option<u64>,
                }
                let Some(r) = payload_range(self.framing, raw) else {
                    return;
                };
                if let Ok(b) = serde_json::from_slice::<Block<'_>>(&raw[r]) {
                    match &*b.ty {
                        "content_block_start" => self.open_block = b.index,
                        "content_block_stop" => self.open_block = None,
                        _ => {}
                    }
                }
            }
            _ => {}
        }
    }

    /// The finish reason a `finish_reason` fault wants, if the plan has one.
    fn wanted_finish(&self) -> Option<(usize, &str)> {
        self.faults.iter().rev().find_map(|(r, f)| match f {
            BodyFault::Content(ContentFault::FinishReason(crate::fault::FinishReason {
                value,
            })) => Some((*r, value.as_str())),
            BodyFault::Content(ContentFault::Garble(_) | ContentFault::EmptyCompletion(_))
            | BodyFault::Stream(
                StreamFault::FirstTokenDelay(_)
                | StreamFault::TokenDelay(_)
                | StreamFault::TokenRate(_)
                | StreamFault::Stall(_)
                | StreamFault::Truncate(_)
                | StreamFault::StreamError(_)
                | StreamFault::Corrupt(_),
            )
            | BodyFault::Results(_)
            | BodyFault::Embeddings(_) => None,
        })
    }

    fn finish_reason(&mut self, raw: Bytes, info: &EventInfo) -> Bytes {
        if info.finish_reason.is_none() {
            return raw;
        }
        let Some((rule, value)) = self.wanted_finish() else {
            return raw;
        };
        let value = json::encode(value);
        let Some(p) = payload_range(self.framing, &raw) else {
            return raw;
        };
        let ranges = json::string_values(&raw[p.clone()], FINISH_KEYS);
        if ranges.is_empty() {
            return raw;
        }
        let edits: Vec<_> = ranges
            .into_iter()
            .map(|r| {
                (
                    p.start + r.start..p.start + r.end,
                    value.as_bytes().to_vec(),
                )
            })
            .collect();
        self.mark(rule, "finish_reason");
        Bytes::from(json::splice(&raw, &edits))
    }

    /// `invalid_json`: cut the payload in half, keeping the framing after it.
    fn cut_json(&self, raw: &Bytes) -> Option<Bytes> {
        let p = payload_range(self.framing, raw)?;
        if p.len() < 2 {
            return None;
        }
        let mut cut = p.start + p.len() / 2;
        while cut > p.start && (raw[cut] & 0xC0) == 0x80 {
            cut -= 1;
        }
        Some(Bytes::from(json::splice(raw, &[(cut..p.end, Vec::new())])))
    }

    /// `bad_utf8`: in the token's text, drop the last byte of the first multi-byte
    /// character (a truncated sequence); in all-ASCII text, insert a lone
    /// continuation byte mid-text.
    fn bad_utf8(&self, raw: &Bytes) -> Option<Bytes> {
        let p = payload_range(self.framing, raw)?;
        let ranges = json::string_values(&raw[p.clone()], ANY_CONTENT_KEYS);
        let ranges: Vec<_> = ranges
            .into_iter()
            .filter(|r| !r.is_empty())
            .map(|r| p.start + r.start..p.start + r.end)
            .collect();
        for r in &ranges {
            if let Some(lead) = raw[r.clone()].iter().position(|&b| b >= 0xC0) {
                let lead = r.start + lead;
                let len = match raw[lead] {
                    b if b >= 0xF0 => 4,
                    b if b >= 0xE0 => 3,
                    _ => 2,
                };
                let last = lead + len - 1;
                if last < r.end {
                    return Some(Bytes::from(json::splice(
                        raw,
                        &[(last..last + 1, Vec::new())],
                    )));
                }
            }
        }
        // All-ASCII text: a lone continuation byte right after the opening quote
        // (always a character boundary, never inside an escape).
        let at = ranges.first()?.start;
        Some(Bytes::from(json::splice(raw, &[(at..at, vec![0x80])])))
    }

    /// `garble`: replace each word of the token's text with another word with
    /// probability `fraction`; `None` when nothing changed.
    fn garble(&mut self, raw: &Bytes, fraction: f64) -> Option<Bytes> {
        let p = payload_range(self.framing, raw)?;
        let ranges = json::string_values(&raw[p.clone()], TEXT_KEYS);
        let mut edits = Vec::new();
        for r in ranges {
            let r = p.start + r.start..p.start + r.end;
            let Some(text) = json::decode(raw, r.clone()) else {
                continue;
            };
            let (new, changed) =
                map_words(&text, |rng| rng.random::<f64>() < fraction, &mut self.rng);
            if changed {
                edits.push((r, json::encode(&new).into_bytes()));
            }
        }
        if edits.is_empty() {
            return None;
        }
        Some(Bytes::from(json::splice(raw, &edits)))
    }

    /// The API's proper end, in the stream's own line style.
    fn clean_ending(&mut self) -> Bytes {
        let eol = self.eol();
        let finish = self.wanted_finish().map(|(r, v)| (r, json::encode(v)));
        if let Some((rule, _)) = &finish {
            self.mark(*rule, "finish_reason");
        }
        let text = match self.dialect {
            Dialect::OpenAi | Dialect::TgiUnsure => format!("data: [DONE]{eol}{eol}"),
            Dialect::Anthropic => {
                let stop = finish.map_or_else(|| "end_turn".to_string(), |(_, v)| v);
                let mut s = String::new();
                if let Some(index) = self.open_block {
                    s.push_str(&format!(
                        "event: content_block_stop{eol}data: {{\"type\":\"content_block_stop\",\"index\":{index}}}{eol}{eol}"
                    ));
                }
                s.push_str(&format!(
                    "event: message_delta{eol}data: {{\"type\":\"message_delta\",\"delta\":{{\"stop_reason\":\"{stop}\",\"stop_sequence\":null}},\"usage\":{{\"output_tokens\":{}}}}}{eol}{eol}",
                    self.tokens_sent
                ));
                s.push_str(&format!(
                    "event: message_stop{eol}data: {{\"type\":\"message_stop\"}}{eol}{eol}"
                ));
                s
            }
            Dialect::Responses => format!(
                "event: response.completed{eol}data: {{\"type\":\"response.completed\",\"response\":{{\"object\":\"response\",\"status\":\"completed\",\"output\":[]}}}}{eol}{eol}"
            ),
            Dialect::OllamaChat | Dialect::OllamaGenerate => {
                let model = json::encode(self.model.as_deref().unwrap_or(""));
                let stop = finish.map_or_else(|| "stop".to_string(), |(_, v)| v);
                let body = if self.dialect == Dialect::OllamaChat {
                    "\"message\":{\"role\":\"assistant\",\"content\":\"\"}"
                } else {
                    "\"response\":\"\""
                };
                format!(
                    "{{\"model\":\"{model}\",\"created_at\":\"1970-01-01T00:00:00Z\",{body},\"done\":true,\"done_reason\":\"{stop}\"}}{eol}"
                )
            }
            Dialect::TgiNative => format!(
                "data: {{\"index\":{},\"token\":{{\"id\":0,\"text\":\"\",\"logprob\":0.0,\"special\":true}},\"generated_text\":\"\",\"details\":null}}{eol}{eol}",
                self.tokens_sent
            ),
            // gRPC has no terminator message: the proxy's trailers end the call.
            Dialect::Grpc { .. } => String::new(),
        };
        Bytes::from(text)
    }

    /// The preset's error as a mid-stream event, framed like the stream.
    fn error_event(&mut self, preset: Option<&str>) -> Bytes {
        let name = preset.unwrap_or(match (self.dialect, self.framing) {
            (Dialect::Anthropic, _) => "anthropic.overloaded",
            (Dialect::OllamaChat | Dialect::OllamaGenerate, Framing::Ndjson) => "ollama.busy",
            (Dialect::TgiNative, _) => "tgi.overloaded",
            (Dialect::Grpc { .. }, _) => "triton.queue_full",
            _ => "openai.server_error",
        });
        let ctx = RenderCtx {
            retry_after: None,
            request_id: self.rng.random(),
            model: self.model.as_deref(),
            now: None,
        };
        let body = match presets::lookup(name) {
            Some(p) => p.render(&ctx).body,
            // Validation rejects unknown presets; stay sensible regardless.
            None => Bytes::from_static(
                br#"{"error":{"message":"The server had an error while processing your request.","type":"server_error","param":null,"code":null}}"#,
            ),
        };
        if self.framing == Framing::Grpc {
            // Triton: a ModelStreamInferResponse carrying the preset's message.
            let message = serde_json::from_slice::<serde_json::Value>(&body)
                .ok()
                .and_then(|v| {
                    let e = v.get("error")?;
                    e.as_str()
                        .or_else(|| e.get("message").and_then(|m| m.as_str()))
                        .map(str::to_string)
                })
                .unwrap_or_else(|| crate::grpc::triton::QUEUE_FULL_MESSAGE.to_string());
            return crate::grpc::triton::stream_error_frame(&message, "");
        }
        let body = String::from_utf8_lossy(&body).replace(['\r', '\n'], " ");
        let eol = self.eol();
        let text = match (self.framing, self.dialect) {
            (Framing::Ndjson, _) => format!("{body}{eol}"),
            (Framing::Sse, Dialect::Anthropic) => {
                format!("event: error{eol}data: {body}{eol}{eol}")
            }
            (Framing::Sse, _) => format!("data: {body}{eol}{eol}"),
            (Framing::Grpc, _) => String::new(),
        };
        Bytes::from(text)
    }
}

/// `t + d`, saturating far in the future instead of panicking on overflow.
fn later(t: Instant, d: Duration) -> Instant {
    t.checked_add(d)
        .or_else(|| t.checked_add(Duration::from_secs(100 * 365 * 86_400)))
        .unwrap_or(t)
}

/// Whether the raw SSE event is `event: NAME` (for tests and the proxy's logs).
pub fn sse_event_name(raw: &[u8]) -> Option<String> {
    SseFields::parse(raw)
        .event
        .map(|e| String::from_utf8_lossy(&e).into_owned())
}
