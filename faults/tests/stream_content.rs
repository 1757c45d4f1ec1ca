//! `rewrite_json`: content faults on non-streamed answers, edited in place.

use brownout_faults::fault;
use brownout_faults::profile::FaultSpec;
use brownout_faults::stream::{rewrite_json, Skip, StreamPlan};
use brownout_faults::{ApiKind, Endpoint};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde_json::Value;

const CHAT: &str = r#"{"id":"chatcmpl-1","object":"chat.completion","created":1,"model":"gpt-4o","choices":[{"index":0,"message":{"role":"assistant","content":"The quick brown fox jumps over the lazy dog","refusal":null},"logprobs":null,"finish_reason":"stop"}],"usage":{"prompt_tokens":9,"completion_tokens":9,"total_tokens":18}}"#;
const ANTHROPIC: &str = r#"{"id":"msg_1","type":"message","role":"assistant","model":"claude","content":[{"type":"text","text":"Hello there, friend."}],"stop_reason":"end_turn","stop_sequence":null,"usage":{"input_tokens":5,"output_tokens":4}}"#;
const RESPONSES: &str = r#"{"id":"resp_1","object":"response","status":"completed","output":[{"type":"message","id":"msg_1","role":"assistant","content":[{"type":"output_text","text":"One two three four","annotations":[]}]}],"text":{"format":{"type":"text"}},"usage":{"input_tokens":3,"output_tokens":4}}"#;

fn plan(faults: &[FaultSpec]) -> StreamPlan {
    let mut p = StreamPlan::new();
    for f in faults {
        p.push(0, f);
    }
    p
}

fn rng() -> ChaCha8Rng {
    ChaCha8Rng::seed_from_u64(1)
}

#[test]
fn garble_replaces_the_fraction_of_words() {
    let r = rewrite_json(
        ApiKind::Openai,
        Endpoint::Chat,
        CHAT.as_bytes(),
        &plan(&[FaultSpec::Garble(fault::Garble { fraction: 0.5 })]),
        &mut rng(),
    )
    .unwrap();
    let v: Value = serde_json::from_slice(&r.body).unwrap();
    let text = v["choices"][0]["message"]["content"].as_str().unwrap();
    let orig: Vec<&str> = "The quick brown fox jumps over the lazy dog"
        .split(' ')
        .collect();
    let new: Vec<&str> = text.split(' ').collect();
    assert_eq!(new.len(), orig.len());
    let changed = orig.iter().zip(&new).filter(|(a, b)| a != b).count();
    assert!((4..=5).contains(&changed), "{text}");
    assert_eq!(r.applied, [(0, "garble")]);
    // Everything else is byte-identical.
    let prefix = CHAT.find("The quick").unwrap();
    assert_eq!(&r.body[..prefix], &CHAT.as_bytes()[..prefix]);
    assert!(r.body.ends_with(br#"","refusal":null},"logprobs":null,"finish_reason":"stop"}],"usage":{"prompt_tokens":9,"completion_tokens":9,"total_tokens":18}}"#));
}

#[test]
fn empty_completion_and_finish_reason() {
    let faults = [
        FaultSpec::EmptyCompletion(fault::EmptyCompletion {}),
        FaultSpec::FinishReason(fault::FinishReason {
            value: "content_filter".into(),
        }),
    ];
    let r = rewrite_json(
        ApiKind::Openai,
        Endpoint::Chat,
        CHAT.as_bytes(),
        &plan(&faults),
        &mut rng(),
    )
    .unwrap();
    let v: Value = serde_json::from_slice(&r.body).unwrap();
    assert_eq!(v["choices"][0]["message"]["content"], "");
    assert_eq!(v["choices"][0]["finish_reason"], "content_filter");
    assert_eq!(r.applied, [(0, "empty_completion"), (0, "finish_reason")]);

    let faults = [
        FaultSpec::Garble(fault::Garble { fraction: 1.0 }),
        FaultSpec::FinishReason(fault::FinishReason {
            value: "max_tokens".into(),
        }),
    ];
    let r = rewrite_json(
        ApiKind::Anthropic,
        Endpoint::Messages,
        ANTHROPIC.as_bytes(),
        &plan(&faults),
        &mut rng(),
    )
    .unwrap();
    let v: Value = serde_json::from_slice(&r.body).unwrap();
    assert_eq!(v["stop_reason"], "max_tokens");
    let text = v["content"][0]["text"].as_str().unwrap();
    assert!(
        !text.contains("Hello") && !text.contains("friend"),
        "{text}"
    );
    assert_eq!(v["content"][0]["type"], "text");
}

#[test]
fn responses_text_but_no_finish_reason() {
    let faults = [
        FaultSpec::Garble(fault::Garble { fraction: 1.0 }),
        FaultSpec::FinishReason(fault::FinishReason {
            value: "length".into(),
        }),
    ];
    let r = rewrite_json(
        ApiKind::Openai,
        Endpoint::Responses,
        RESPONSES.as_bytes(),
        &plan(&faults),
        &mut rng(),
    )
    .unwrap();
    let v: Value = serde_json::from_slice(&r.body).unwrap();
    assert_ne!(v["output"][0]["content"][0]["text"], "One two three four");
    assert_eq!(
        v["text"]["format"]["type"], "text",
        "objects named text are left alone"
    );
    assert_eq!(r.applied, [(0, "garble")]);
    assert_eq!(r.skipped, [(0, "finish_reason", Skip::NothingToChange)]);
}

#[test]
fn unknown_bodies_are_skipped_with_a_reason() {
    let p = plan(&[FaultSpec::Garble(fault::Garble { fraction: 1.0 })]);
    let e = rewrite_json(ApiKind::Openai, Endpoint::Chat, b"not json", &p, &mut rng()).unwrap_err();
    assert_eq!(e, Skip::NotJson);
    assert_eq!(e.as_str(), "not_json");
    let e = rewrite_json(
        ApiKind::Openai,
        Endpoint::Embeddings,
        br#"{"object":"list","data":[]}"#,
        &p,
        &mut rng(),
    )
    .unwrap_err();
    assert_eq!(e, Skip::UnknownShape);
    let ollama = br#"{"model":"m","message":{"role":"assistant","content":"hi there"},"done":true,"done_reason":"stop"}"#;
    let r = rewrite_json(
        ApiKind::Ollama,
        Endpoint::Chat,
        ollama,
        &plan(&[FaultSpec::EmptyCompletion(fault::EmptyCompletion {})]),
        &mut rng(),
    )
    .unwrap();
    assert!(r.body.windows(13).any(|w| w == br#""content":""}"#));
}

/// A body with bytes that are not UTF-8 is not JSON, even where they sit in a field
/// the shape probe skips (found by the `sse` fuzz target: the probe let it through,
/// and garble edited it). It passes unchanged, the fault skipped as `not_json`.
#[test]
fn a_body_that_is_not_utf8_is_not_json() {
    let mut body = CHAT.as_bytes().to_vec();
    let at = CHAT.find("chatcmpl-1").unwrap();
    body[at] = 0xff;
    assert!(serde_json::from_slice::<Value>(&body).is_err());
    for fault in [
        FaultSpec::Garble(fault::Garble { fraction: 1.0 }),
        FaultSpec::EmptyCompletion(fault::EmptyCompletion {}),
        FaultSpec::FinishReason(fault::FinishReason {
            value: "length".into(),
        }),
    ] {
        let e = rewrite_json(
            ApiKind::Openai,
            Endpoint::Chat,
            &body,
            &plan(&[fault]),
            &mut rng(),
        )
        .unwrap_err();
        assert_eq!(e, Skip::NotJson);
    }
}

/// Only the strings a content fault rewrites change: ids, `usage`, logprobs, key
/// order, escapes and whitespace come back byte for byte (a client comparing
/// `usage` or `system_fingerprint` with the unfaulted answer sees no other damage).
#[test]
fn everything_but_the_rewritten_strings_is_byte_identical() {
    const TEXT: &str = r#"The caf\u00e9 is open \"late\" tonight"#;
    let chat = format!(
        concat!(
            r#"{{ "id" : "chatcmpl-B9MHDbslfkBeAs8l4bebGdFOJ6PeG", "object":"chat.completion","created":1741569952,"#,
            r#""model":"gpt-4.1-mini-2025-04-14","choices":[{{"index":0,"message":{{"role":"assistant","content":"{}","#,
            r#""refusal":null,"annotations":[]}},"logprobs":{{"content":[{{"token":"The","logprob":-0.21234214144787922,"bytes":[84,104,101]}}]}},"#,
            r#""finish_reason":"stop"}}],"usage":{{"prompt_tokens":19,"completion_tokens":10,"total_tokens":29,"#,
            r#""prompt_tokens_details":{{"cached_tokens":0,"audio_tokens":0}}}},"service_tier":"default","system_fingerprint":"fp_\u00e9b9dce56a8","x":1E+2,"y":0.30000000000000004}}"#
        ),
        TEXT
    );
    let text_at = chat.find(TEXT).unwrap();
    let text_end = text_at + TEXT.len();
    let stop_at = chat.find(r#""finish_reason":"stop""#).unwrap() + r#""finish_reason":""#.len();
    for (fault, changes_text) in [
        (FaultSpec::Garble(fault::Garble { fraction: 0.5 }), true),
        (FaultSpec::EmptyCompletion(fault::EmptyCompletion {}), true),
        (
            FaultSpec::FinishReason(fault::FinishReason {
                value: "length".into(),
            }),
            false,
        ),
    ] {
        let r = rewrite_json(
            ApiKind::Openai,
            Endpoint::Chat,
            chat.as_bytes(),
            &plan(std::slice::from_ref(&fault)),
            &mut rng(),
        )
        .unwrap();
        assert_eq!(r.applied.len(), 1, "{fault:?}");
        let out = std::str::from_utf8(&r.body).unwrap();
        serde_json::from_str::<Value>(out).unwrap();
        if changes_text {
            // Before the text, and after it, exactly as sent.
            assert!(out.starts_with(&chat[..text_at]), "{fault:?}: {out}");
            assert!(out.ends_with(&chat[text_end..]), "{fault:?}: {out}");
        } else {
            assert_eq!(
                out,
                format!("{}length{}", &chat[..stop_at], &chat[stop_at + 4..]),
                "{fault:?}"
            );
        }
    }

    let msg = r#"{"id":"msg_01XFDUDYJgAACzvnptvVoYEL","type":"message","role":"assistant","model":"claude-sonnet-4-20250514","content":[{"type":"text","text":"Hello there, friend."}],"stop_reason":"end_turn","stop_sequence":null,"usage":{"input_tokens":2095,"cache_creation_input_tokens":0,"cache_read_input_tokens":0,"output_tokens":503,"service_tier":"standard"}}"#;
    let r = rewrite_json(
        ApiKind::Anthropic,
        Endpoint::Messages,
        msg.as_bytes(),
        &plan(&[FaultSpec::Garble(fault::Garble { fraction: 1.0 })]),
        &mut rng(),
    )
    .unwrap();
    let out = std::str::from_utf8(&r.body).unwrap();
    let at = msg.find("Hello there").unwrap();
    assert!(out.starts_with(&msg[..at]));
    assert!(out.ends_with(&msg[at + "Hello there, friend.".len()..]));
}
