//! Glob semantics, checked by example and against a slow reference matcher.

use brownout_faults::glob::Glob;
use std::time::{Duration, Instant};

fn m(pattern: &str, text: &str) -> bool {
    Glob::new(pattern).unwrap().matches(text)
}

#[test]
fn model_names() {
    assert!(m("gpt-4o*", "gpt-4o-mini"));
    assert!(m("gpt-4o*", "gpt-4o"));
    assert!(!m("gpt-4o*", "gpt-4"));
    assert!(m("claude-*-sonnet*", "claude-3-5-sonnet-20241022"));
    assert!(m("*llama*", "meta-llama-3.1-8b"));
    assert!(m("llama-3.?-8b", "llama-3.1-8b"));
    assert!(!m("llama-3.?-8b", "llama-3.10-8b"));
    assert!(m("*", ""));
    assert!(m("", ""));
    assert!(!m("", "a"));
    // Hugging Face-style model ids contain a slash: `*` stops there, `**` does not.
    assert!(!m("meta-llama*", "meta-llama/Llama-3.1-8B"));
    assert!(m("meta-llama/*", "meta-llama/Llama-3.1-8B"));
    assert!(m("meta-llama**", "meta-llama/Llama-3.1-8B"));
}

#[test]
fn paths() {
    assert!(m("/v1/chat/*", "/v1/chat/completions"));
    assert!(!m("/v1/*", "/v1/chat/completions"));
    assert!(m("/v1/**", "/v1/chat/completions"));
    assert!(m(
        "/collections/*/points/search",
        "/collections/docs/points/search"
    ));
    assert!(!m(
        "/collections/*/points/search",
        "/collections/a/b/points/search"
    ));
    assert!(m(
        "/v2/models/*/versions/*/infer",
        "/v2/models/m/versions/3/infer"
    ));
    // `**/` also matches zero segments.
    assert!(m("/a/**/b", "/a/b"));
    assert!(m("/a/**/b", "/a/x/b"));
    assert!(m("/a/**/b", "/a/x/y/z/b"));
    assert!(!m("/a/**/b", "/a/xb"));
    assert!(m("**/infer", "/v2/models/m/infer"));
    assert!(m("**/infer", "infer"));
    assert!(m("**", "/anything/at/all"));
    // `**` inside a segment is a plain any-run.
    assert!(m("/v1/a**z", "/v1/a/b/z"));
    assert!(m("/x/**.json", "/x/a/b.json"));
    assert!(!m("/x/*.json", "/x/a/b.json"));
}

#[test]
fn question_mark_and_classes() {
    assert!(m("a?c", "abc"));
    assert!(!m("a?c", "a/c"));
    assert!(!m("a?c", "ac"));
    assert!(m("v[0-9]", "v7"));
    assert!(!m("v[0-9]", "vx"));
    assert!(m("[abc]x", "bx"));
    assert!(!m("[abc]x", "dx"));
    assert!(m("[!abc]x", "dx"));
    assert!(m("[^abc]x", "dx"));
    assert!(!m("[!abc]x", "ax"));
    assert!(!m("[!abc]", "/"));
    assert!(m("[]]", "]"));
    assert!(m("[a-]", "-"));
    assert!(m(r"[\]]", "]"));
    assert!(m("[a-cx-z]", "y"));
    assert!(m("é?", "éü"));
    assert!(m("*ü", "grün-ü"));
}

#[test]
fn escapes() {
    assert!(m(r"\*", "*"));
    assert!(!m(r"\*", "a"));
    assert!(m(r"\?\[x\]", "?[x]"));
    assert!(m(r"a\\b", r"a\b"));
}

#[test]
fn bad_patterns_are_errors() {
    for p in ["[abc", "abc\\", "[z-a]", "[", "[!"] {
        assert!(Glob::new(p).is_err(), "{p:?} should not compile");
    }
}

#[test]
fn as_str_and_display_keep_the_pattern() {
    let g = Glob::new("gpt-4o*").unwrap();
    assert_eq!(g.as_str(), "gpt-4o*");
    assert_eq!(g.to_string(), "gpt-4o*");
}

#[test]
fn pathological_patterns_stay_fast() {
    let text = "a".repeat(5000);
    let start = Instant::now();
    assert!(!m(&format!("{}b", "*a".repeat(50)), &text));
    assert!(!m(&format!("{}b", "**a".repeat(50)), &text));
    assert!(!m(&format!("{}b", "a*".repeat(50)), &text));
    assert!(m(&"*a".repeat(50), &text));
    let slashes = "a/".repeat(2000);
    assert!(!m(&format!("{}b", "**/a*".repeat(20)), &slashes));
    assert!(!m(&format!("{}x", "*?".repeat(40)), &text));
    // Generous bound: even an unoptimised debug build does this in milliseconds.
    assert!(
        start.elapsed() < Duration::from_secs(5),
        "took {:?}",
        start.elapsed()
    );
}

/// An obviously-correct (and exponential) matcher for the same syntax, restricted
/// to the alphabet the random test uses; `seg_start` says whether `t` begins a
/// segment, where `**/` means "zero or more whole segments".
fn reference_at(p: &[u8], t: &[u8], seg_start: bool) -> bool {
    if p.is_empty() {
        return t.is_empty();
    }
    if p.starts_with(b"**") {
        let mut n = 2;
        while p.get(n) == Some(&b'*') {
            n += 1;
        }
        if seg_start && p.get(n) == Some(&b'/') {
            let rest = &p[n + 1..];
            if reference_at(rest, t, true) {
                return true;
            }
            return (1..=t.len()).any(|k| t[k - 1] == b'/' && reference_at(rest, &t[k..], true));
        }
        let rest = &p[n..];
        return (0..=t.len()).any(|k| reference_at(rest, &t[k..], false));
    }
    match p[0] {
        b'*' => (0..=t.len())
            .take_while(|&k| k == 0 || t[k - 1] != b'/')
            .any(|k| reference_at(&p[1..], &t[k..], false)),
        b'?' => !t.is_empty() && t[0] != b'/' && reference_at(&p[1..], &t[1..], false),
        c => !t.is_empty() && t[0] == c && reference_at(&p[1..], &t[1..], c == b'/'),
    }
}

#[test]
fn agrees_with_reference_on_random_inputs() {
    // xorshift64*: a fixed stream so failures reproduce.
    let mut state = 0x9E37_79B9_7F4A_7C15u64;
    let mut next = move |n: u64| {
        state ^= state >> 12;
        state ^= state << 25;
        state ^= state >> 27;
        (state.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 33) % n
    };
    let pat_alpha: &[&str] = &["a", "b", "/", "*", "**", "?", "**/"];
    let text_alpha = [b'a', b'b', b'/'];
    for _ in 0..30_000 {
        let plen = next(7) as usize;
        let pattern: String = (0..plen).map(|_| pat_alpha[next(7) as usize]).collect();
        let tlen = next(9) as usize;
        let text: Vec<u8> = (0..tlen).map(|_| text_alpha[next(3) as usize]).collect();
        let text = String::from_utf8(text).unwrap();
        let want = reference_at(pattern.as_bytes(), text.as_bytes(), true);
        assert_eq!(
            m(&pattern, &text),
            want,
            "pattern {pattern:?} text {text:?}"
        );
    }
}
