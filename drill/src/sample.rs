//! One request's measurements, and how it ended.

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// How a request ended, from the client's side.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind", content = "status")]
pub enum Outcome {
    /// A complete answer: 2xx status, and for streams a `[DONE]` terminator.
    Ok,
    /// A non-2xx status (an injected 429, an upstream 500...).
    HttpError(u16),
    /// No complete answer within the plan's timeout.
    Timeout,
    /// No response at all: refused or reset connection, broken HTTP.
    TransportError,
    /// The response started but ended early: the body failed, or a stream ended
    /// without `[DONE]`.
    Truncated,
    /// A stream carried an error event (`data: {"error": ...}`), which the SDKs
    /// raise as an exception.
    StreamError,
    /// The body did not parse: invalid JSON in a 2xx body or a stream event.
    Corrupt,
}

impl Outcome {
    /// The outcome's name in reports (`ok`, `http_error`, ...).
    pub fn kind(self) -> &'static str {
        match self {
            Outcome::Ok => "ok",
            Outcome::HttpError(_) => "http_error",
            Outcome::Timeout => "timeout",
            Outcome::TransportError => "transport_error",
            Outcome::Truncated => "truncated",
            Outcome::StreamError => "stream_error",
            Outcome::Corrupt => "corrupt",
        }
    }

    /// True for a complete, successful answer.
    pub fn is_ok(self) -> bool {
        self == Outcome::Ok
    }
}

/// Where an output token count came from (docs/records.md, `tokens_source`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TokensSource {
    /// The response's `usage.completion_tokens`.
    Usage,
    /// Content events counted, one per event.
    Counted,
}

/// The measurements of one request. Every time is measured from the request's
/// *scheduled* send time, so a slow server cannot hide its queueing by delaying
/// the load generator (no coordinated omission).
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    /// The request's index in the drill (`x-brownout-seq`).
    pub seq: u64,
    /// Index of the phase in which the request was scheduled.
    pub phase: usize,
    /// How it ended.
    pub outcome: Outcome,
    /// Scheduled send → end of the response (or of the attempt, for failures).
    pub e2e: Duration,
    /// Scheduled send → first content event (streams only).
    pub ttft: Option<Duration>,
    /// Gaps between consecutive content events (streams only).
    pub itl: Vec<Duration>,
    /// Output tokens, when known.
    pub output_tokens: Option<u64>,
    /// Where `output_tokens` came from.
    pub tokens_source: Option<TokensSource>,
    /// Input (prompt) tokens, when the answer's usage said; never estimated, so
    /// per-token pricing of input is left out rather than guessed without it.
    pub input_tokens: Option<u64>,
    /// How late the request actually left compared with its schedule: large values
    /// mean the load generator itself was the bottleneck.
    pub send_lag: Duration,
    /// The answer's text (content deltas or blocks joined), for correctness
    /// checks; `None` when not read (errors, embeddings, oversized bodies).
    pub answer: Option<String>,
    /// The first embedding of an embeddings response, for cosine similarity.
    pub embedding: Option<Vec<f32>>,
    /// A search's result ids, best first, for recall@k and rank overlap.
    pub ids: Option<Vec<String>>,
}

impl Sample {
    /// Time per output token, `(e2e − ttft) / (tokens − 1)`; `None` for fewer than
    /// two tokens or without a TTFT, where it is undefined.
    pub fn tpot(&self) -> Option<Duration> {
        let ttft = self.ttft?;
        let tokens = self.output_tokens?;
        if tokens < 2 {
            return None;
        }
        let decode = self.e2e.checked_sub(ttft)?;
        let n = u32::try_from(tokens - 1).ok()?;
        Some(decode / n)
    }
}
