//! Shared by the tests: the Anthropic fixtures and OpenAI-style streams built here,
//! and one-fault profiles with their position checks.
#![allow(dead_code)]

pub const ANTHROPIC_BASIC: &[u8] = include_bytes!("../fixtures/anthropic-basic.sse");
pub const ANTHROPIC_TOOL_USE: &[u8] = include_bytes!("../fixtures/anthropic-tool-use.sse");

/// An OpenAI chat stream with include_usage: role chunk, three content chunks
/// (one with a multi-byte character), a finish chunk, a usage chunk and `[DONE]`.
pub fn openai_chat(eol: &str) -> Vec<u8> {
    let events = [
        r#"{"id":"chatcmpl-1","object":"chat.completion.chunk","created":1,"model":"m","choices":[{"index":0,"delta":{"role":"assistant","content":""},"finish_reason":null}],"usage":null}"#,
        r#"{"id":"chatcmpl-1","object":"chat.completion.chunk","created":1,"model":"m","choices":[{"index":0,"delta":{"content":"Hello"},"finish_reason":null}],"usage":null}"#,
        r#"{"id":"chatcmpl-1","object":"chat.completion.chunk","created":1,"model":"m","choices":[{"index":0,"delta":{"content":" wörld, how"},"finish_reason":null}],"usage":null}"#,
        r#"{"id":"chatcmpl-1","object":"chat.completion.chunk","created":1,"model":"m","choices":[{"index":0,"delta":{"content":" are you today?"},"finish_reason":null}],"usage":null}"#,
        r#"{"id":"chatcmpl-1","object":"chat.completion.chunk","created":1,"model":"m","choices":[{"index":0,"delta":{},"finish_reason":"stop"}],"usage":null}"#,
        r#"{"id":"chatcmpl-1","object":"chat.completion.chunk","created":1,"model":"m","choices":[],"usage":{"prompt_tokens":9,"completion_tokens":7,"total_tokens":16}}"#,
        "[DONE]",
    ];
    let mut out = String::new();
    for e in events {
        out.push_str("data: ");
        out.push_str(e);
        out.push_str(eol);
        out.push_str(eol);
    }
    out.into_bytes()
}

/// A longer OpenAI chat stream: a role chunk, `n` content chunks `"tok{i} "`, a
/// finish chunk and `[DONE]`.
pub fn openai_long(n: usize) -> Vec<u8> {
    let mut out = String::new();
    out.push_str("data: {\"id\":\"c\",\"object\":\"chat.completion.chunk\",\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\"},\"finish_reason\":null}]}\n\n");
    for i in 0..n {
        out.push_str(&format!(
            "data: {{\"id\":\"c\",\"object\":\"chat.completion.chunk\",\"choices\":[{{\"index\":0,\"delta\":{{\"content\":\"tok{i} \"}},\"finish_reason\":null}}]}}\n\n"
        ));
    }
    out.push_str("data: {\"id\":\"c\",\"object\":\"chat.completion.chunk\",\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":\"stop\"}]}\n\n");
    out.push_str("data: [DONE]\n\n");
    out.into_bytes()
}

/// An Ollama native chat stream (NDJSON).
pub fn ollama_chat() -> Vec<u8> {
    let lines = [
        r#"{"model":"llama3","created_at":"2024-01-01T00:00:00Z","message":{"role":"assistant","content":"Hi"},"done":false}"#,
        r#"{"model":"llama3","created_at":"2024-01-01T00:00:00Z","message":{"role":"assistant","content":" there"},"done":false}"#,
        r#"{"model":"llama3","created_at":"2024-01-01T00:00:00Z","message":{"role":"assistant","content":""},"done":true,"done_reason":"stop","prompt_eval_count":12,"eval_count":2}"#,
    ];
    let mut out = String::new();
    for l in lines {
        out.push_str(l);
        out.push('\n');
    }
    out.into_bytes()
}

/// The start of every one-fault profile.
pub const HEAD: &str = "version: 1\nname: t\n";

fn one_fault_profile(fault_yaml: &str) -> String {
    format!("{HEAD}rules:\n  - faults:\n      - {fault_yaml}\n")
}

/// The fault a one-fault profile parses to.
pub fn one_fault(fault_yaml: &str) -> brownout_faults::profile::FaultSpec {
    match brownout_faults::validate::load_profile(&one_fault_profile(fault_yaml), "p.yaml") {
        Ok(mut p) => p.rules.remove(0).faults.remove(0),
        Err(e) => panic!("{e:?}"),
    }
}

/// Errors for a one-fault profile; the fault's mapping starts at line 5, column 9.
pub fn fault_errors(fault_yaml: &str) -> Vec<brownout_faults::yaml::Diagnostic> {
    match brownout_faults::validate::load_profile(&one_fault_profile(fault_yaml), "p.yaml") {
        Ok(p) => panic!("expected an error, loaded {p:?}"),
        Err(e) => e,
    }
}

/// The first error points at `at` (its first occurrence in `fault_yaml`), and its
/// message and hint contain `message` and `hint`.
#[track_caller]
pub fn check_fault_error(fault_yaml: &str, at: &str, message: &str, hint: &str) {
    let column = 9 + fault_yaml.find(at).expect("`at` is in the fault");
    let errs = fault_errors(fault_yaml);
    let d = &errs[0];
    assert_eq!((d.line, d.column), (5, column), "{d}");
    assert!(
        d.message.contains(message),
        "message `{}` lacks `{message}`",
        d.message
    );
    let h = d.hint.as_deref().unwrap_or_default();
    assert!(h.contains(hint), "hint `{h}` lacks `{hint}`");
}
