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
