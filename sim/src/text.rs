//! Deterministic answers: the same (model, prompt) always gives the same words.
//!
//! Tests and drills compare answers across runs and phases (a correctness fault
//! must show up as a changed answer), so the text must be a pure function of the
//! request. The hash is FNV-1a, written out here, because `std`'s hasher may change
//! between Rust versions, and the word choice uses ChaCha8, whose stream is stable.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// The fixed vocabulary answers are drawn from.
const WORDS: &[&str] = &[
    "the",
    "model",
    "answer",
    "is",
    "a",
    "latency",
    "token",
    "stream",
    "of",
    "and",
    "request",
    "queue",
    "batch",
    "slow",
    "fast",
    "replica",
    "cache",
    "vector",
    "search",
    "result",
    "phase",
    "fault",
    "brownout",
    "under",
    "load",
    "with",
    "gpu",
    "memory",
    "prompt",
    "reply",
    "server",
    "client",
    "retry",
    "timeout",
    "limit",
    "rate",
    "error",
    "recovery",
    "baseline",
    "storm",
    "signal",
    "noise",
    "steady",
    "burst",
    "window",
    "budget",
    "tail",
    "median",
    "percentile",
    "throughput",
    "context",
    "chunk",
    "event",
    "delta",
    "usage",
    "finish",
    "stop",
    "length",
    "choice",
    "message",
    "content",
    "role",
    "assistant",
    "system",
];

/// A stable 64-bit FNV-1a hash of the model and the prompt text.
pub fn prompt_hash(model: &str, prompt: &str) -> u64 {
    const OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
    const PRIME: u64 = 0x0000_0100_0000_01b3;
    let mut h = OFFSET;
    // A separator byte that cannot appear in UTF-8 keeps ("ab","c") apart from ("a","bc").
    for b in model
        .bytes()
        .chain(std::iter::once(0xff))
        .chain(prompt.bytes())
    {
        h ^= u64::from(b);
        h = h.wrapping_mul(PRIME);
    }
    h
}

/// The answer's tokens, as the stream sends them: the first word bare, every later
/// word with a leading space, so that concatenating the tokens gives the text.
///
/// `n` is clamped to at least one token: an empty answer would hide TTFT.
pub fn answer_tokens(model: &str, prompt: &str, n: u32) -> Vec<String> {
    let mut rng = ChaCha8Rng::seed_from_u64(prompt_hash(model, prompt));
    (0..n.max(1))
        .map(|i| {
            let word = WORDS[rng.random_range(0..WORDS.len())];
            if i == 0 {
                word.to_owned()
            } else {
                format!(" {word}")
            }
        })
        .collect()
}

/// The full answer text for (model, prompt) with `n` tokens: what a non-streaming
/// response carries and what a complete stream adds up to.
pub fn answer_text(model: &str, prompt: &str, n: u32) -> String {
    answer_tokens(model, prompt, n).concat()
}

/// The answer a request scripts with `x-brownout-sim-answer` (percent-encoded
/// UTF-8), as tokens the way [`answer_tokens`] gives them: a word each, spaces
/// leading, so that the tokens add up to the text. A drill's prompt file sets it
/// (`sim_answer`) so that `expect` checks hold at baseline, as a real model's
/// answers would, and a fault that corrupts or cuts an answer shows. At most
/// `max` tokens (the request's `max_tokens`), at least one.
pub fn scripted_tokens(headers: &http::HeaderMap, max: Option<u64>) -> Option<Vec<String>> {
    let raw = headers.get("x-brownout-sim-answer")?.as_bytes();
    let mut bytes = Vec::with_capacity(raw.len());
    let mut i = 0;
    while i < raw.len() {
        let hex = |b: u8| char::from(b).to_digit(16);
        match (
            raw[i],
            raw.get(i + 1).copied().and_then(hex),
            raw.get(i + 2).copied().and_then(hex),
        ) {
            (b'%', Some(h), Some(l)) => {
                bytes.push((h * 16 + l) as u8);
                i += 3;
            }
            (b, ..) => {
                bytes.push(b);
                i += 1;
            }
        }
    }
    let text = String::from_utf8(bytes).ok()?;
    // A token is a word with the spaces before it.
    let mut tokens: Vec<String> = Vec::new();
    let mut cur = String::new();
    for ch in text.chars() {
        if ch == ' ' && !cur.is_empty() && !cur.ends_with(' ') {
            tokens.push(std::mem::take(&mut cur));
        }
        cur.push(ch);
    }
    if !cur.is_empty() {
        tokens.push(cur);
    }
    let limit = max.map_or(usize::MAX, |m| {
        usize::try_from(m.max(1)).unwrap_or(usize::MAX)
    });
    tokens.truncate(limit);
    if tokens.is_empty() {
        tokens.push(String::new());
    }
    Some(tokens)
}

/// A rough prompt-token estimate (four characters a token, at least one), good
/// enough for `usage.prompt_tokens`.
pub fn estimate_tokens(text: &str) -> u32 {
    let chars = u32::try_from(text.chars().count()).unwrap_or(u32::MAX);
    chars.div_ceil(4).max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scripted_answers_add_up_to_their_text_and_respect_max_tokens() {
        let mut h = http::HeaderMap::new();
        h.insert(
            "x-brownout-sim-answer",
            http::HeaderValue::from_static("{\"status\": \"ok\"}  caf%C3%A9 100%25"),
        );
        let t = scripted_tokens(&h, None).unwrap();
        assert_eq!(t.concat(), "{\"status\": \"ok\"}  café 100%");
        assert_eq!(t[0], "{\"status\":");
        let cut = scripted_tokens(&h, Some(2)).unwrap();
        assert_eq!(cut.concat(), "{\"status\": \"ok\"}");
        assert!(scripted_tokens(&http::HeaderMap::new(), None).is_none());
    }

    #[test]
    fn same_prompt_same_answer() {
        let a = answer_text("m", "hello", 16);
        assert_eq!(a, answer_text("m", "hello", 16));
        assert_ne!(a, answer_text("m", "hello!", 16));
        assert_ne!(a, answer_text("m2", "hello", 16));
        assert_eq!(answer_tokens("m", "hello", 16).len(), 16);
        assert_eq!(answer_tokens("m", "hello", 0).len(), 1);
        // A shorter answer is a prefix of a longer one: max_tokens cuts, never reshuffles.
        assert!(a.starts_with(&answer_text("m", "hello", 4)));
    }

    #[test]
    fn hash_is_stable() {
        // Pinned: a change here would change every simulated answer.
        assert_eq!(prompt_hash("", ""), 0xaf64_724c_8602_eb6e);
    }
}
