//! LLM stream measurements for records and metrics (docs/records.md): TTFT, inter-token
//! gaps, TPOT and token counts.
//!
//! Fed the events the *client* receives, at the instants it receives them, so that
//! the numbers describe what the faults did to the client's experience, not what
//! the upstream did. Pure and clock-agnostic: tests drive it under paused time.

use std::time::Duration;

use tokio::time::Instant;

use super::event::{EventInfo, EventKind};

/// Where `output_tokens` came from (`tokens_source` in records).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokensSource {
    /// The provider's usage data.
    Usage,
    /// One per content event.
    Counted,
}

impl TokensSource {
    /// As written in records.
    pub fn as_str(self) -> &'static str {
        match self {
            TokensSource::Usage => "usage",
            TokensSource::Counted => "counted",
        }
    }
}

/// p50, p95 and max of the inter-token gaps (`itl_ms` in records).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GapSummary {
    pub p50: Duration,
    pub p95: Duration,
    pub max: Duration,
}

/// Gaps kept for percentiles; beyond this only the max is tracked, so a stream of
/// millions of events costs bounded memory.
const MAX_GAPS: usize = 65_536;

/// Measures one stream as the client sees it.
#[derive(Debug, Clone)]
pub struct StreamMeter {
    start: Instant,
    first_token: Option<Instant>,
    last_token: Option<Instant>,
    last_event: Option<Instant>,
    gaps: Vec<Duration>,
    max_gap: Duration,
    tokens_counted: u64,
    usage_input: Option<u64>,
    usage_output: Option<u64>,
    finish_reason: Option<String>,
    saw_terminator: bool,
    saw_error: bool,
    saw_choices: bool,
}

impl StreamMeter {
    /// A meter whose TTFT counts from `start` (when the request was received).
    pub fn new(start: Instant) -> Self {
        StreamMeter {
            start,
            first_token: None,
            last_token: None,
            last_event: None,
            gaps: Vec::new(),
            max_gap: Duration::ZERO,
            tokens_counted: 0,
            usage_input: None,
            usage_output: None,
            finish_reason: None,
            saw_terminator: false,
            saw_error: false,
            saw_choices: false,
        }
    }

    /// One event, sent to the client at `now`.
    pub fn observe(&mut self, info: &EventInfo, now: Instant) {
        self.last_event = Some(now);
        match info.kind {
            EventKind::Content => {
                if self.first_token.is_none() {
                    self.first_token = Some(now);
                }
                if let Some(prev) = self.last_token {
                    let gap = now.saturating_duration_since(prev);
                    self.max_gap = self.max_gap.max(gap);
                    if self.gaps.len() < MAX_GAPS {
                        self.gaps.push(gap);
                    }
                }
                self.last_token = Some(now);
                self.tokens_counted += 1;
            }
            EventKind::Terminator => self.saw_terminator = true,
            EventKind::Error => self.saw_error = true,
            _ => {}
        }
        if info.usage_input.is_some() {
            self.usage_input = info.usage_input;
        }
        // Cumulative where the provider reports it so (Anthropic): keep the largest.
        if let Some(out) = info.usage_output {
            self.usage_output = Some(self.usage_output.map_or(out, |o| o.max(out)));
        }
        if info.finish_reason.is_some() {
            self.finish_reason.clone_from(&info.finish_reason);
        }
        self.saw_choices |= info.choices;
    }

    /// An OpenAI stream that ended (`[DONE]`) with no choice ever saying why:
    /// cut short upstream. llama-cpp-python's server ends a stream it interrupts
    /// for a newer request this way, role chunk then `[DONE]`.
    pub fn ended_unfinished(&self) -> bool {
        self.saw_terminator && self.saw_choices && self.finish_reason.is_none()
    }

    /// Time to first token: from the start to the first content event.
    pub fn ttft(&self) -> Option<Duration> {
        self.first_token
            .map(|t| t.saturating_duration_since(self.start))
    }

    /// When the first content event went out.
    pub fn first_token_at(&self) -> Option<Instant> {
        self.first_token
    }

    /// When the last event of any kind went out.
    pub fn last_event_at(&self) -> Option<Instant> {
        self.last_event
    }

    /// Every gap between consecutive content events, summarised; `None` with fewer
    /// than two tokens.
    pub fn itl(&self) -> Option<GapSummary> {
        if self.gaps.is_empty() {
            return None;
        }
        let mut sorted = self.gaps.clone();
        sorted.sort_unstable();
        Some(GapSummary {
            p50: percentile(&sorted, 0.50),
            p95: percentile(&sorted, 0.95),
            max: self.max_gap,
        })
    }

    /// Output tokens and where the number came from: the provider's usage when it
    /// reported any, else the count of content events; `None` when neither exists.
    pub fn output_tokens(&self) -> Option<(u64, TokensSource)> {
        match self.usage_output {
            Some(n) => Some((n, TokensSource::Usage)),
            None if self.tokens_counted > 0 => Some((self.tokens_counted, TokensSource::Counted)),
            None => None,
        }
    }

    /// Content events seen, whatever usage says.
    pub fn content_events(&self) -> u64 {
        self.tokens_counted
    }

    /// Prompt tokens from the provider's usage data.
    pub fn input_tokens(&self) -> Option<u64> {
        self.usage_input
    }

    /// The last finish/stop reason seen.
    pub fn finish_reason(&self) -> Option<&str> {
        self.finish_reason.as_deref()
    }

    /// Time per output token: (e2e − ttft) / (output tokens − 1), with e2e running
    /// from the start to `end`; undefined (`None`) for fewer than two tokens or no
    /// token at all.
    pub fn tpot(&self, end: Instant) -> Option<Duration> {
        let first = self.first_token?;
        let (tokens, _) = self.output_tokens()?;
        if tokens < 2 {
            return None;
        }
        let span = end.saturating_duration_since(first);
        let per = span.as_secs_f64() / (tokens - 1) as f64;
        Duration::try_from_secs_f64(per).ok()
    }

    /// Whether the stream's proper terminator was seen.
    pub fn saw_terminator(&self) -> bool {
        self.saw_terminator
    }

    /// Whether a mid-stream error event was seen.
    pub fn saw_error(&self) -> bool {
        self.saw_error
    }
}

/// Nearest-rank percentile of a sorted, non-empty list.
fn percentile(sorted: &[Duration], q: f64) -> Duration {
    let rank = (q * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}
