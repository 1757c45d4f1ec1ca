//! Content faults on non-streamed answers: `garble`, `empty_completion` and
//! `finish_reason` on one JSON body.
//!
//! Edits are made in place on the body's bytes (see [`super::json`]), so everything
//! but the rewritten strings stays byte-identical. A body whose shape is not known
//! is left alone and the reason returned, for `faults_skipped`: a drill must never
//! believe a fault applied when it did not.

use bytes::Bytes;
use rand_chacha::ChaCha8Rng;
use serde::de::IgnoredAny;
use serde::Deserialize;

use super::json;
use super::shape::StreamPlan;
use super::words::map_words;
use crate::api::{ApiKind, Endpoint};
use crate::fault::{BodyFault, ContentFault};

/// Why a content fault could not apply to a body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Skip {
    /// The body is not JSON.
    NotJson,
    /// JSON, but not a chat/completions/responses/messages answer brownout knows.
    UnknownShape,
    /// The fault has nothing to act on in this body (no text to garble, no finish
    /// reason, or a Responses body, which reports `status` instead).
    NothingToChange,
}

impl Skip {
    /// The reason as written in `faults_skipped`.
    pub fn as_str(self) -> &'static str {
        match self {
            Skip::NotJson => "not_json",
            Skip::UnknownShape => "unknown_shape",
            Skip::NothingToChange => "nothing_to_change",
        }
    }
}

/// The result of [`rewrite_json`].
#[derive(Debug, Clone)]
pub struct Rewrite {
    /// The new body (the input's bytes when nothing changed).
    pub body: Bytes,
    /// Faults that changed the body, as (rule index, fault type).
    pub applied: Vec<(usize, &'static str)>,
    /// Content faults that could not apply, and why.
    pub skipped: Vec<(usize, &'static str, Skip)>,
}

/// Which answer format a body is in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Shape {
    /// OpenAI chat completions and legacy completions (and compatible servers).
    Choices,
    /// Anthropic Messages.
    AnthropicMessage,
    /// OpenAI Responses.
    Responses,
    /// Ollama native chat or generate.
    Ollama,
}

impl Shape {
    fn text_keys(self) -> &'static [&'static str] {
        match self {
            Shape::Choices => &["content", "reasoning_content", "reasoning", "text"],
            Shape::AnthropicMessage => &["text", "thinking"],
            Shape::Responses => &["text"],
            Shape::Ollama => &["content", "response", "thinking"],
        }
    }

    fn finish_keys(self) -> &'static [&'static str] {
        match self {
            Shape::Choices => &["finish_reason"],
            Shape::AnthropicMessage => &["stop_reason"],
            Shape::Responses => &[],
            Shape::Ollama => &["done_reason"],
        }
    }
}

#[derive(Deserialize)]
struct Probe<'a> {
    #[serde(borrow, default)]
    object: Option<std::borrow::Cow<'a, str>>,
    #[serde(borrow, rename = "type", default)]
    ty: Option<std::borrow::Cow<'a, str>>,
    #[serde(default)]
    choices: Option<IgnoredAny>,
    #[serde(default)]
    content: Option<IgnoredAny>,
    #[serde(default)]
    output: Option<IgnoredAny>,
    #[serde(default)]
    done: Option<bool>,
}

fn shape(api: ApiKind, endpoint: Endpoint, body: &[u8]) -> Result<Shape, Skip> {
    // serde_json skips a field the probe ignores without checking its UTF-8, so a
    // body that is not JSON could pass the probe and then be edited: check it whole.
    let text = std::str::from_utf8(body).map_err(|_| Skip::NotJson)?;
    let probe: Probe<'_> = match serde_json::from_str(text) {
        Ok(p) => p,
        Err(e) if e.is_data() => return Err(Skip::UnknownShape),
        Err(_) => return Err(Skip::NotJson),
    };
    if probe.choices.is_some() {
        return Ok(Shape::Choices);
    }
    if probe.ty.as_deref() == Some("message") && probe.content.is_some() {
        return Ok(Shape::AnthropicMessage);
    }
    if probe.object.as_deref() == Some("response")
        || (endpoint == Endpoint::Responses && probe.output.is_some())
    {
        return Ok(Shape::Responses);
    }
    if probe.done.is_some()
        && (api == ApiKind::Ollama || matches!(endpoint, Endpoint::Chat | Endpoint::Completion))
    {
        return Ok(Shape::Ollama);
    }
    Err(Skip::UnknownShape)
}

/// Apply the plan's content faults (`garble`, `empty_completion`, `finish_reason`)
/// to a whole non-streamed answer, in plan order. Stream-only faults in the plan are
/// ignored here (the caller records them as skipped: the response is not a stream).
///
/// `garble` replaces round(fraction × words) of the answer's words (at least one),
/// chosen at random; `empty_completion` empties every text value (the structure,
/// tool calls included, stays); `finish_reason` rewrites `finish_reason`,
/// `stop_reason` or `done_reason`. `Err` when the body is not an answer brownout
/// knows; then nothing applied.
pub fn rewrite_json(
    api: ApiKind,
    endpoint: Endpoint,
    body: &[u8],
    plan: &StreamPlan,
    rng: &mut ChaCha8Rng,
) -> Result<Rewrite, Skip> {
    let shape = shape(api, endpoint, body)?;
    let mut cur: Option<Vec<u8>> = None;
    let mut applied = Vec::new();
    let mut skipped = Vec::new();
    for (rule, fault) in plan.faults() {
        let src: &[u8] = cur.as_deref().unwrap_or(body);
        let result = match fault {
            BodyFault::Content(ContentFault::Garble(crate::fault::Garble { fraction })) => {
                garble_body(src, shape, *fraction, rng)
            }
            BodyFault::Content(ContentFault::EmptyCompletion(_)) => {
                let edits: Vec<_> = json::string_values(src, shape.text_keys())
                    .into_iter()
                    .filter(|r| !r.is_empty())
                    .map(|r| (r, Vec::new()))
                    .collect();
                (!edits.is_empty()).then(|| json::splice(src, &edits))
            }
            BodyFault::Content(ContentFault::FinishReason(crate::fault::FinishReason {
                value,
            })) => {
                let value = json::encode(value).into_bytes();
                let edits: Vec<_> = json::string_values(src, shape.finish_keys())
                    .into_iter()
                    .map(|r| (r, value.clone()))
                    .collect();
                (!edits.is_empty()).then(|| json::splice(src, &edits))
            }
            // Stream faults need a stream (the caller records them as skipped);
            // vector faults are not about what the model said.
            BodyFault::Stream(_) | BodyFault::Results(_) | BodyFault::Embeddings(_) => continue,
        };
        match result {
            Some(new) => {
                cur = Some(new);
                applied.push((rule, fault.kind()));
            }
            None => skipped.push((rule, fault.kind(), Skip::NothingToChange)),
        }
    }
    let body = match cur {
        Some(v) => Bytes::from(v),
        None => Bytes::copy_from_slice(body),
    };
    Ok(Rewrite {
        body,
        applied,
        skipped,
    })
}

/// Replace round(fraction × words) words, at least one, across every text value.
fn garble_body(src: &[u8], shape: Shape, fraction: f64, rng: &mut ChaCha8Rng) -> Option<Vec<u8>> {
    let values: Vec<(std::ops::Range<usize>, String)> = json::string_values(src, shape.text_keys())
        .into_iter()
        .filter_map(|r| json::decode(src, r.clone()).map(|t| (r, t)))
        .collect();
    let total: usize = values
        .iter()
        .map(|(_, t)| t.split_whitespace().count())
        .sum();
    if total == 0 {
        return None;
    }
    let k = ((fraction * total as f64).round() as usize).clamp(1, total);
    let mut chosen = vec![false; total];
    for i in rand::seq::index::sample(rng, total, k) {
        chosen[i] = true;
    }
    let mut n = 0;
    let mut edits = Vec::new();
    for (r, text) in values {
        let (new, changed) = map_words(
            &text,
            |_| {
                let pick = chosen[n];
                n += 1;
                pick
            },
            rng,
        );
        if changed {
            edits.push((r, json::encode(&new).into_bytes()));
        }
    }
    Some(json::splice(src, &edits))
}
