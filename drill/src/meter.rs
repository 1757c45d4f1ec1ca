//! Reading an OpenAI-compatible SSE stream as it arrives: TTFT, ITL, tokens, end.
//!
//! TTFT is the first event that carries content (text, reasoning, or tool-call
//! arguments), never the first byte or the role-only first chunk: counting those
//! would report a fast TTFT for a server that has not produced a token yet.

use std::time::Duration;

use serde::Deserialize;
use tokio::time::Instant;

use crate::sample::{Outcome, TokensSource};
use crate::sse::{SseEvent, SseParser};

/// Measures one stream, fed frame by frame.
#[derive(Debug)]
pub struct StreamMeter {
    parser: SseParser,
    scratch: Vec<SseEvent>,
    scheduled: Instant,
    first_content: Option<Instant>,
    last_content: Option<Instant>,
    itl: Vec<Duration>,
    content_events: u64,
    usage_tokens: Option<u64>,
    input_tokens: Option<u64>,
    /// A choice said why it ended (`finish_reason`).
    finished: bool,
    done: bool,
    error_event: bool,
    malformed: bool,
    anthropic: bool,
    text: String,
}

/// What a finished stream measured.
#[derive(Debug, Clone, PartialEq)]
pub struct StreamSummary {
    /// Scheduled send → first content event.
    pub ttft: Option<Duration>,
    /// Gaps between content events.
    pub itl: Vec<Duration>,
    /// Output tokens and where the count came from.
    pub output_tokens: Option<(u64, TokensSource)>,
    /// Input (prompt) tokens, when the stream's usage said (OpenAI's final
    /// usage chunk, Anthropic's `message_start`); never estimated.
    pub input_tokens: Option<u64>,
    /// Whether `[DONE]` (Anthropic: `message_stop`) arrived.
    pub done: bool,
    /// The outcome, given how the body ended (`body_failed`).
    pub outcome: Outcome,
    /// The answer's text: content and legacy-completion text deltas (Anthropic:
    /// `text_delta`s), joined.
    pub text: String,
}

#[derive(Deserialize)]
struct Chunk {
    #[serde(default)]
    choices: Vec<Choice>,
    usage: Option<Usage>,
    error: Option<serde::de::IgnoredAny>,
}

#[derive(Deserialize)]
struct Choice {
    delta: Option<Delta>,
    text: Option<String>,
    finish_reason: Option<String>,
}

#[derive(Deserialize)]
struct Delta {
    content: Option<String>,
    reasoning_content: Option<String>,
    reasoning: Option<String>,
    #[serde(default)]
    tool_calls: Vec<ToolCall>,
}

#[derive(Deserialize)]
struct ToolCall {
    function: Option<Function>,
}

#[derive(Deserialize)]
struct Function {
    arguments: Option<String>,
}

#[derive(Deserialize)]
struct Usage {
    completion_tokens: Option<u64>,
    prompt_tokens: Option<u64>,
}

/// One Anthropic messages stream event (`data:` of `event: <type>`).
#[derive(Deserialize)]
struct AnthropicEvent {
    #[serde(rename = "type")]
    kind: String,
    delta: Option<AnthropicDelta>,
    usage: Option<AnthropicUsage>,
    /// `message_start`'s message, which carries the input token count.
    message: Option<AnthropicMessage>,
}

#[derive(Deserialize)]
struct AnthropicMessage {
    usage: Option<AnthropicUsage>,
}

#[derive(Deserialize)]
struct AnthropicDelta {
    text: Option<String>,
    partial_json: Option<String>,
    thinking: Option<String>,
}

#[derive(Deserialize)]
struct AnthropicUsage {
    output_tokens: Option<u64>,
    input_tokens: Option<u64>,
}

fn non_empty(s: &Option<String>) -> bool {
    s.as_deref().is_some_and(|s| !s.is_empty())
}

impl Chunk {
    fn has_content(&self) -> bool {
        self.choices.iter().any(|c| {
            non_empty(&c.text)
                || c.delta.as_ref().is_some_and(|d| {
                    non_empty(&d.content)
                        || non_empty(&d.reasoning_content)
                        || non_empty(&d.reasoning)
                        || d.tool_calls
                            .iter()
                            .any(|t| t.function.as_ref().is_some_and(|f| non_empty(&f.arguments)))
                })
        })
    }
}

impl StreamMeter {
    /// A meter for a request scheduled at `scheduled`.
    pub fn new(scheduled: Instant) -> Self {
        Self {
            parser: SseParser::new(),
            scratch: Vec::new(),
            scheduled,
            first_content: None,
            last_content: None,
            itl: Vec::new(),
            content_events: 0,
            usage_tokens: None,
            input_tokens: None,
            finished: false,
            done: false,
            error_event: false,
            malformed: false,
            anthropic: false,
            text: String::new(),
        }
    }

    /// A meter for an Anthropic messages stream: content is a `content_block_delta`
    /// with text, `input_json` or thinking; tokens come from `message_delta.usage`;
    /// `message_stop` ends it and an `error` event is a stream error.
    pub fn anthropic(scheduled: Instant) -> Self {
        Self {
            anthropic: true,
            ..Self::new(scheduled)
        }
    }

    /// Feed one body frame that arrived at `now`.
    pub fn feed(&mut self, chunk: &[u8], now: Instant) {
        let mut events = std::mem::take(&mut self.scratch);
        self.parser.feed(chunk, &mut events);
        for ev in events.drain(..) {
            self.on_event(&ev, now);
        }
        self.scratch = events;
    }

    fn on_event(&mut self, ev: &SseEvent, now: Instant) {
        if self.done {
            return;
        }
        let data = ev.data.trim();
        if data == "[DONE]" {
            self.done = true;
            return;
        }
        if data.is_empty() {
            return;
        }
        if self.anthropic {
            self.on_anthropic(data, now);
            return;
        }
        let chunk: Chunk = match serde_json::from_str(data) {
            Ok(c) => c,
            Err(_) => {
                self.malformed = true;
                return;
            }
        };
        if chunk.error.is_some() {
            self.error_event = true;
        }
        if let Some(u) = chunk.usage.as_ref() {
            if let Some(n) = u.completion_tokens {
                self.usage_tokens = Some(n);
            }
            if let Some(n) = u.prompt_tokens {
                self.input_tokens = Some(n);
            }
        }
        if chunk.choices.iter().any(|c| c.finish_reason.is_some()) {
            self.finished = true;
        }
        if chunk.has_content() {
            self.on_content(now);
            for c in &chunk.choices {
                if let Some(t) = &c.text {
                    self.text.push_str(t);
                }
                if let Some(t) = c.delta.as_ref().and_then(|d| d.content.as_ref()) {
                    self.text.push_str(t);
                }
            }
        }
    }

    fn on_content(&mut self, now: Instant) {
        self.content_events += 1;
        if self.first_content.is_none() {
            self.first_content = Some(now);
        }
        if let Some(prev) = self.last_content {
            self.itl.push(now.saturating_duration_since(prev));
        }
        self.last_content = Some(now);
    }

    fn on_anthropic(&mut self, data: &str, now: Instant) {
        let ev: AnthropicEvent = match serde_json::from_str(data) {
            Ok(e) => e,
            Err(_) => {
                self.malformed = true;
                return;
            }
        };
        match ev.kind.as_str() {
            "content_block_delta" => {
                if let Some(d) = ev.delta {
                    if non_empty(&d.text) || non_empty(&d.partial_json) || non_empty(&d.thinking) {
                        self.on_content(now);
                    }
                    if let Some(t) = &d.text {
                        self.text.push_str(t);
                    }
                }
            }
            "message_start" => {
                let usage = ev.message.and_then(|m| m.usage);
                if let Some(n) = usage.and_then(|u| u.input_tokens) {
                    self.input_tokens = Some(n);
                }
            }
            "message_delta" => {
                if let Some(n) = ev.usage.and_then(|u| u.output_tokens) {
                    self.usage_tokens = Some(n);
                }
            }
            "message_stop" => self.done = true,
            "error" => self.error_event = true,
            _ => {}
        }
    }

    /// Close the meter. `body_failed` says the body ended with an error rather than
    /// a clean end of stream.
    pub fn finish(self, body_failed: bool) -> StreamSummary {
        let outcome = if self.error_event {
            Outcome::StreamError
        } else if self.malformed {
            Outcome::Corrupt
        } else if body_failed || !self.done || !(self.anthropic || self.finished) {
            // An OpenAI stream whose choices never said why they ended was cut
            // short, even when `[DONE]` closed it: llama-cpp-python ends a stream
            // that way when a newer request interrupts it.
            Outcome::Truncated
        } else {
            Outcome::Ok
        };
        let output_tokens = match (self.usage_tokens, self.content_events) {
            (Some(n), _) => Some((n, TokensSource::Usage)),
            (None, 0) => None,
            (None, n) => Some((n, TokensSource::Counted)),
        };
        StreamSummary {
            ttft: self
                .first_content
                .map(|t| t.saturating_duration_since(self.scheduled)),
            itl: self.itl,
            output_tokens,
            input_tokens: self.input_tokens,
            done: self.done,
            outcome,
            text: self.text,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ROLE: &str = r#"data: {"id":"c","object":"chat.completion.chunk","created":1,"model":"m","choices":[{"index":0,"delta":{"role":"assistant","content":""},"finish_reason":null}]}"#;

    fn content(t: &str) -> String {
        format!(
            r#"data: {{"id":"c","object":"chat.completion.chunk","created":1,"model":"m","choices":[{{"index":0,"delta":{{"content":"{t}"}},"finish_reason":null}}]}}"#
        )
    }

    const FINISH: &str = r#"data: {"id":"c","object":"chat.completion.chunk","created":1,"model":"m","choices":[{"index":0,"delta":{},"finish_reason":"stop"}]}"#;
    const USAGE: &str = r#"data: {"id":"c","choices":[],"usage":{"prompt_tokens":9,"completion_tokens":7,"total_tokens":16}}"#;

    #[tokio::test(start_paused = true)]
    async fn role_chunk_is_not_ttft() {
        let t0 = Instant::now();
        let mut m = StreamMeter::new(t0);
        tokio::time::advance(Duration::from_millis(5)).await;
        m.feed(format!("{ROLE}\n\n").as_bytes(), Instant::now());
        tokio::time::advance(Duration::from_millis(25)).await;
        m.feed(format!("{}\n\n", content("Hi")).as_bytes(), Instant::now());
        tokio::time::advance(Duration::from_millis(10)).await;
        // The second token split across two frames, with the finish chunk.
        let second = format!("{}\n\n{FINISH}\n\n", content(" there"));
        let (a, b) = second.as_bytes().split_at(17);
        m.feed(a, Instant::now());
        tokio::time::advance(Duration::from_millis(2)).await;
        m.feed(b, Instant::now());
        m.feed(b"data: [DONE]\n\n", Instant::now());
        let s = m.finish(false);
        assert_eq!(s.ttft, Some(Duration::from_millis(30)));
        assert_eq!(s.itl, vec![Duration::from_millis(12)]);
        assert_eq!(s.output_tokens, Some((2, TokensSource::Counted)));
        assert_eq!(s.outcome, Outcome::Ok);
        assert_eq!(s.text, "Hi there");
    }

    #[tokio::test(start_paused = true)]
    async fn usage_wins_over_counting_and_missing_done_truncates() {
        let t0 = Instant::now();
        let mut m = StreamMeter::new(t0);
        let body = format!(
            "{ROLE}\r\n\r\n: ping\r\n\r\n{}\r\n\r\n{FINISH}\r\n\r\n{USAGE}\r\n\r\n",
            content("x")
        );
        m.feed(body.as_bytes(), Instant::now());
        let s = m.finish(false);
        assert_eq!(s.output_tokens, Some((7, TokensSource::Usage)));
        assert_eq!(s.outcome, Outcome::Truncated);
        assert!(!s.done);
    }

    /// What llama-cpp-python's server sends a stream that a newer request
    /// interrupts: the role chunk, then `[DONE]`, with no choice ever saying why it
    /// ended. That answer was cut short, not delivered.
    #[tokio::test(start_paused = true)]
    async fn done_without_a_finish_reason_is_truncated() {
        let mut m = StreamMeter::new(Instant::now());
        m.feed(
            b"data: {\"id\": \"chatcmpl-6\", \"model\": \"m\", \"created\": 1, \"object\": \"chat.completion.chunk\", \"choices\": [{\"index\": 0, \"delta\": {\"role\": \"assistant\"}, \"logprobs\": null, \"finish_reason\": null}]}\n\ndata: [DONE]\n\n",
            Instant::now(),
        );
        let s = m.finish(false);
        assert!(s.done);
        assert_eq!(s.outcome, Outcome::Truncated);
        // The same stream finished, with its usage: ok, both counts read.
        let mut m = StreamMeter::new(Instant::now());
        let body = format!(
            "{ROLE}\n\n{}\n\n{FINISH}\n\n{USAGE}\n\ndata: [DONE]\n\n",
            content("x")
        );
        m.feed(body.as_bytes(), Instant::now());
        let s = m.finish(false);
        assert_eq!(s.outcome, Outcome::Ok);
        assert_eq!(s.input_tokens, Some(9));
        assert_eq!(s.output_tokens, Some((7, TokensSource::Usage)));
    }

    #[tokio::test(start_paused = true)]
    async fn error_event_and_bad_json() {
        let mut m = StreamMeter::new(Instant::now());
        m.feed(
            b"data: {\"error\":{\"message\":\"overloaded\"}}\n\ndata: [DONE]\n\n",
            Instant::now(),
        );
        assert_eq!(m.finish(false).outcome, Outcome::StreamError);

        let mut m = StreamMeter::new(Instant::now());
        m.feed(
            b"data: {\"choices\":[{\"delta\":{\"content\":\"a\"}\n\ndata: [DONE]\n\n",
            Instant::now(),
        );
        assert_eq!(m.finish(false).outcome, Outcome::Corrupt);

        let mut m = StreamMeter::new(Instant::now());
        m.feed(b"data: [DONE]\n\n", Instant::now());
        assert_eq!(m.finish(true).outcome, Outcome::Truncated);
    }

    #[tokio::test(start_paused = true)]
    async fn legacy_text_and_tool_calls_count_as_content() {
        let mut m = StreamMeter::new(Instant::now());
        m.feed(b"data: {\"choices\":[{\"text\":\"\"}]}\n\n", Instant::now());
        m.feed(
            b"data: {\"choices\":[{\"text\":\"a\"}]}\n\n",
            Instant::now(),
        );
        m.feed(
            b"data: {\"choices\":[{\"delta\":{\"tool_calls\":[{\"index\":0,\"function\":{\"arguments\":\"{\"}}]}}]}\n\n",
            Instant::now(),
        );
        m.feed(b"data: [DONE]\n\n", Instant::now());
        let s = m.finish(false);
        assert_eq!(s.output_tokens, Some((2, TokensSource::Counted)));
        assert!(s.ttft.is_some());
    }

    #[tokio::test(start_paused = true)]
    async fn anthropic_stream() {
        let t0 = Instant::now();
        let mut m = StreamMeter::anthropic(t0);
        tokio::time::advance(Duration::from_millis(3)).await;
        m.feed(
            b"event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"usage\":{\"input_tokens\":5,\"output_tokens\":1}}}\n\n\
event: content_block_start\ndata: {\"type\":\"content_block_start\",\"index\":0,\"content_block\":{\"type\":\"text\",\"text\":\"\"}}\n\n\
event: ping\ndata: {\"type\": \"ping\"}\n\n",
            Instant::now(),
        );
        tokio::time::advance(Duration::from_millis(20)).await;
        m.feed(
            b"event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"thinking_delta\",\"thinking\":\"hm\"}}\n\n",
            Instant::now(),
        );
        tokio::time::advance(Duration::from_millis(5)).await;
        m.feed(
            b"event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"text_delta\",\"text\":\"Hi\"}}\n\n\
event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":1,\"delta\":{\"type\":\"input_json_delta\",\"partial_json\":\"{\"}}\n\n\
event: message_delta\ndata: {\"type\":\"message_delta\",\"delta\":{\"stop_reason\":\"end_turn\"},\"usage\":{\"output_tokens\":9}}\n\n",
            Instant::now(),
        );
        let mut done = StreamMeter::anthropic(t0);
        done.feed(
            b"event: message_stop\ndata: {\"type\":\"message_stop\"}\n\n",
            Instant::now(),
        );
        assert_eq!(done.finish(false).outcome, Outcome::Ok);
        m.feed(
            b"event: message_stop\ndata: {\"type\":\"message_stop\"}\n\n",
            Instant::now(),
        );
        let s = m.finish(false);
        assert_eq!(s.ttft, Some(Duration::from_millis(23)));
        assert_eq!(s.text, "Hi");
        assert_eq!(s.itl.len(), 2);
        assert_eq!(s.output_tokens, Some((9, TokensSource::Usage)));
        assert_eq!(s.outcome, Outcome::Ok);

        let mut e = StreamMeter::anthropic(t0);
        e.feed(
            b"event: error\ndata: {\"type\":\"error\",\"error\":{\"type\":\"overloaded_error\",\"message\":\"Overloaded\"}}\n\n",
            Instant::now(),
        );
        assert_eq!(e.finish(false).outcome, Outcome::StreamError);
    }
}
