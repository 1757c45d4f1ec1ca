//! `inspect`: which events are tokens, which carry usage, which end the stream.

mod common;

use brownout_faults::stream::{inspect, EventInfo, EventKind, Framing, Splitter};
use brownout_faults::{ApiKind, Endpoint};
use bytes::Bytes;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use common::*;
use EventKind::*;

fn events(framing: Framing, input: &[u8]) -> Vec<Bytes> {
    let mut s = Splitter::new(framing);
    let mut out = s.push(&Bytes::copy_from_slice(input));
    out.extend(s.finish());
    out
}

fn kinds(api: ApiKind, endpoint: Endpoint, framing: Framing, input: &[u8]) -> Vec<EventInfo> {
    events(framing, input)
        .iter()
        .map(|e| inspect(api, endpoint, framing, e))
        .collect()
}

fn sse(api: ApiKind, endpoint: Endpoint, raw: &str) -> EventInfo {
    inspect(api, endpoint, Framing::Sse, raw.as_bytes())
}

#[test]
fn anthropic_basic_fixture() {
    let infos = kinds(
        ApiKind::Anthropic,
        Endpoint::Messages,
        Framing::Sse,
        ANTHROPIC_BASIC,
    );
    let got: Vec<EventKind> = infos.iter().map(|i| i.kind).collect();
    assert_eq!(
        got,
        [Meta, Meta, Meta, Content, Content, Content, Meta, Usage, Terminator]
    );
    assert_eq!(infos[0].usage_input, Some(11));
    assert_eq!(
        infos[0].usage_output, None,
        "message_start's output_tokens is not the total"
    );
    assert_eq!(infos[7].usage_output, Some(6));
    assert_eq!(infos[7].finish_reason.as_deref(), Some("end_turn"));
}

#[test]
fn anthropic_tool_use_fixture() {
    let infos = kinds(
        ApiKind::Anthropic,
        Endpoint::Messages,
        Framing::Sse,
        ANTHROPIC_TOOL_USE,
    );
    let got: Vec<EventKind> = infos.iter().map(|i| i.kind).collect();
    assert_eq!(
        got,
        [
            Meta, Meta, Meta, Content, Content, Meta, Meta,
            Meta, // input_json_delta with an empty fragment carries nothing
            Content, Content, Content, Content, Meta, Usage, Terminator
        ]
    );
    assert_eq!(infos[0].usage_input, Some(377));
    assert_eq!(infos[13].usage_output, Some(65));
    assert_eq!(infos[13].finish_reason.as_deref(), Some("tool_use"));
}

#[test]
fn anthropic_thinking_signature_and_error() {
    let a = |s| sse(ApiKind::Anthropic, Endpoint::Messages, s);
    assert_eq!(a("event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"thinking_delta\",\"thinking\":\"Let me\"}}\n\n").kind, Content);
    assert_eq!(a("event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"signature_delta\",\"signature\":\"EqQB\"}}\n\n").kind, Meta);
    assert_eq!(a("event: error\ndata: {\"type\":\"error\",\"error\":{\"type\":\"overloaded_error\",\"message\":\"Overloaded\"}}\n\n").kind, Error);
}

#[test]
fn openai_chat_stream() {
    for eol in ["\n", "\r\n"] {
        let infos = kinds(
            ApiKind::Openai,
            Endpoint::Chat,
            Framing::Sse,
            &openai_chat(eol),
        );
        let got: Vec<EventKind> = infos.iter().map(|i| i.kind).collect();
        assert_eq!(
            got,
            [Meta, Content, Content, Content, Meta, Usage, Terminator],
            "{eol:?}"
        );
        assert_eq!(infos[4].finish_reason.as_deref(), Some("stop"));
        assert_eq!(
            (infos[5].usage_input, infos[5].usage_output),
            (Some(9), Some(7))
        );
    }
}

#[test]
fn openai_variants() {
    let o = |s| sse(ApiKind::Openai, Endpoint::Chat, s);
    // Reasoning and tool-call argument deltas are tokens; a tool call's name alone is not.
    assert_eq!(
        o("data: {\"choices\":[{\"index\":0,\"delta\":{\"reasoning_content\":\"hmm\"}}]}\n\n").kind,
        Content
    );
    assert_eq!(
        o("data: {\"choices\":[{\"index\":0,\"delta\":{\"reasoning\":\"hmm\"}}]}\n\n").kind,
        Content
    );
    assert_eq!(o("data: {\"choices\":[{\"index\":0,\"delta\":{\"tool_calls\":[{\"index\":0,\"id\":\"call_1\",\"type\":\"function\",\"function\":{\"name\":\"f\",\"arguments\":\"\"}}]}}]}\n\n").kind, Meta);
    assert_eq!(o("data: {\"choices\":[{\"index\":0,\"delta\":{\"tool_calls\":[{\"index\":0,\"function\":{\"arguments\":\"{\\\"a\\\"\"}}]}}]}\n\n").kind, Content);
    // Legacy completions.
    let c = sse(ApiKind::Openai, Endpoint::Completion, "data: {\"object\":\"text_completion\",\"choices\":[{\"text\":\"Hi\",\"index\":0,\"finish_reason\":null}]}\n\n");
    assert_eq!(c.kind, Content);
    // Errors mid-stream (OpenAI, vLLM, TGI shapes).
    assert_eq!(
        o("data: {\"error\":{\"message\":\"boom\",\"type\":\"server_error\"}}\n\n").kind,
        Error
    );
    assert_eq!(
        o("data: {\"error\":\"Model is overloaded\",\"error_type\":\"overloaded\"}\n\n").kind,
        Error
    );
    assert_eq!(o("data: [DONE]\n\n").kind, Terminator);
    assert_eq!(o(": keep-alive\n\n").kind, Comment);
    assert_eq!(o("\n").kind, Other);
    assert_eq!(o("data: {not json\n\n").kind, Other);
}

#[test]
fn responses_api() {
    let r = |s| sse(ApiKind::Openai, Endpoint::Responses, s);
    assert_eq!(r("event: response.created\ndata: {\"type\":\"response.created\",\"sequence_number\":0,\"response\":{\"id\":\"resp_1\",\"object\":\"response\",\"status\":\"in_progress\",\"usage\":null}}\n\n").kind, Meta);
    assert_eq!(r("event: response.output_text.delta\ndata: {\"type\":\"response.output_text.delta\",\"sequence_number\":4,\"item_id\":\"msg_1\",\"output_index\":0,\"content_index\":0,\"delta\":\"Hi\"}\n\n").kind, Content);
    assert_eq!(r("event: response.reasoning_summary_text.delta\ndata: {\"type\":\"response.reasoning_summary_text.delta\",\"delta\":\"think\"}\n\n").kind, Content);
    assert_eq!(r("event: response.function_call_arguments.delta\ndata: {\"type\":\"response.function_call_arguments.delta\",\"delta\":\"{\\\"x\"}\n\n").kind, Content);
    assert_eq!(r("event: response.output_text.done\ndata: {\"type\":\"response.output_text.done\",\"text\":\"Hi\"}\n\n").kind, Meta);
    let done = r("event: response.completed\ndata: {\"type\":\"response.completed\",\"response\":{\"id\":\"resp_1\",\"status\":\"completed\",\"usage\":{\"input_tokens\":5,\"output_tokens\":2,\"total_tokens\":7}}}\n\n");
    assert_eq!(done.kind, Terminator);
    assert_eq!((done.usage_input, done.usage_output), (Some(5), Some(2)));
    assert_eq!(r("event: response.incomplete\ndata: {\"type\":\"response.incomplete\",\"response\":{}}\n\n").kind, Terminator);
    assert_eq!(r("event: error\ndata: {\"type\":\"error\",\"code\":\"server_error\",\"message\":\"x\",\"param\":null}\n\n").kind, Error);
}

#[test]
fn ollama_native() {
    let infos = kinds(
        ApiKind::Ollama,
        Endpoint::Chat,
        Framing::Ndjson,
        &ollama_chat(),
    );
    let got: Vec<EventKind> = infos.iter().map(|i| i.kind).collect();
    assert_eq!(got, [Content, Content, Terminator]);
    assert_eq!(
        (infos[2].usage_input, infos[2].usage_output),
        (Some(12), Some(2))
    );
    assert_eq!(infos[2].finish_reason.as_deref(), Some("stop"));
    let g = inspect(
        ApiKind::Ollama,
        Endpoint::Completion,
        Framing::Ndjson,
        b"{\"model\":\"m\",\"response\":\"Hi\",\"done\":false}\n",
    );
    assert_eq!(g.kind, Content);
    let e = inspect(
        ApiKind::Ollama,
        Endpoint::Chat,
        Framing::Ndjson,
        b"{\"error\":\"server busy\"}\n",
    );
    assert_eq!(e.kind, Error);
}

#[test]
fn tgi_native() {
    let t = |s| sse(ApiKind::Tgi, Endpoint::Completion, s);
    assert_eq!(t("data:{\"index\":1,\"token\":{\"id\":1,\"text\":\" Hi\",\"logprob\":-0.1,\"special\":false},\"generated_text\":null,\"details\":null}\n\n").kind, Content);
    assert_eq!(t("data:{\"index\":2,\"token\":{\"id\":2,\"text\":\"</s>\",\"logprob\":-0.1,\"special\":true},\"generated_text\":null,\"details\":null}\n\n").kind, Meta);
    let end = t("data:{\"index\":3,\"token\":{\"id\":2,\"text\":\"\",\"logprob\":0.0,\"special\":true},\"generated_text\":\" Hi\",\"details\":{\"finish_reason\":\"eos_token\",\"generated_tokens\":3}}\n\n");
    assert_eq!(end.kind, Terminator);
    assert_eq!(end.usage_output, Some(3));
    assert_eq!(end.finish_reason.as_deref(), Some("eos_token"));
}

#[test]
fn garbage_is_other_never_a_panic() {
    let mut rng = ChaCha8Rng::seed_from_u64(5);
    let pieces: [&[u8]; 12] = [
        b"data: ",
        b"event: ",
        b"{",
        b"}",
        b"\"choices\":",
        b"[",
        b"]",
        b"\"delta\":",
        b"\n",
        b"\r\n",
        b"\"type\":\"content_block_delta\"",
        b"\xff\xfe",
    ];
    for _ in 0..5000 {
        let mut raw = Vec::new();
        for _ in 0..rng.random_range(0..12) {
            if rng.random_bool(0.3) {
                raw.push(rng.random());
            } else {
                raw.extend_from_slice(pieces[rng.random_range(0..pieces.len())]);
            }
        }
        for api in [
            ApiKind::Openai,
            ApiKind::Anthropic,
            ApiKind::Ollama,
            ApiKind::Tgi,
        ] {
            for framing in [Framing::Sse, Framing::Ndjson] {
                let _ = inspect(api, Endpoint::Chat, framing, &raw);
            }
        }
    }
}
