//! Endpoint classification (every row of docs/presets.md), body inspection and client shares.

use brownout_faults::api::{
    classify, client_share, inspect_body, inspect_request, stream_from_path, BodyFacts,
};
use brownout_faults::{ApiKind, Endpoint};
use http::Method;

use ApiKind::*;
use Endpoint::*;

const ALL_APIS: [ApiKind; 12] = [
    Openai, Anthropic, Vllm, Tgi, Ollama, Triton, Qdrant, Chroma, Milvus, Weaviate, Pinecone,
    Generic,
];

/// (api, method, path, endpoint). Every row of docs/presets.md, with the
/// near misses that must stay `other`.
#[rustfmt::skip]
const TABLE: &[(ApiKind, &str, &str, Endpoint)] = &[
    // openai / vllm
    (Openai, "POST", "/v1/chat/completions", Chat),
    (Openai, "POST", "/v1/completions", Completion),
    (Openai, "POST", "/v1/responses", Responses),
    (Openai, "POST", "/v1/embeddings", Embeddings),
    (Openai, "POST", "/v1/chat/completions?api-version=2024-10-21", Chat),
    (Openai, "POST", "/v1/chat/completions/", Chat),
    (Openai, "POST", "/openai/deployments/gpt4o/chat/completions?api-version=1", Chat),
    (Openai, "GET", "/v1/chat/completions", Other),
    (Openai, "GET", "/v1/models", Other),
    (Openai, "GET", "/v1/responses/resp_123", Other),
    (Openai, "POST", "/v1/responses/resp_123/cancel", Other),
    // Anthropic messages served by an OpenAI-compatible server; the Assistants
    // API's thread messages are not them.
    (Openai, "POST", "/v1/messages", Messages),
    (Openai, "POST", "/v1/messages?beta=true", Messages),
    (Openai, "POST", "/v1/messages/count_tokens", Other),
    (Openai, "POST", "/v1/threads/thread_abc/messages", Other),
    (Openai, "GET", "/v1/messages", Other),
    (Vllm, "POST", "/v1/messages", Messages),
    (Openai, "POST", "/v1/chat/completionsx", Other),
    (Vllm, "POST", "/v1/chat/completions", Chat),
    (Vllm, "POST", "/v1/completions", Completion),
    (Vllm, "POST", "/v1/responses", Responses),
    (Vllm, "POST", "/v1/embeddings", Embeddings),
    (Vllm, "GET", "/metrics", Other),
    (Vllm, "GET", "/health", Other),
    // anthropic
    (Anthropic, "POST", "/v1/messages", Messages),
    (Anthropic, "POST", "/v1/messages?beta=true", Messages),
    (Anthropic, "POST", "/v1/messages/count_tokens", Other),
    (Anthropic, "POST", "/v1/messages/batches", Other),
    (Anthropic, "GET", "/v1/messages", Other),
    (Anthropic, "POST", "/v1/chat/completions", Other),
    // tgi
    (Tgi, "POST", "/generate", Completion),
    (Tgi, "POST", "/generate_stream", Completion),
    (Tgi, "POST", "/", Completion),
    (Tgi, "POST", "/embed", Embeddings),
    (Tgi, "POST", "/v1/chat/completions", Chat),
    (Tgi, "POST", "/v1/completions", Completion),
    (Tgi, "GET", "/generate", Other),
    (Tgi, "GET", "/info", Other),
    (Tgi, "POST", "/tokenize", Other),
    // ollama
    (Ollama, "POST", "/api/chat", Chat),
    (Ollama, "POST", "/api/generate", Completion),
    (Ollama, "POST", "/api/embed", Embeddings),
    (Ollama, "POST", "/api/embeddings", Embeddings),
    (Ollama, "POST", "/v1/chat/completions", Chat),
    (Ollama, "POST", "/v1/completions", Completion),
    (Ollama, "POST", "/v1/embeddings", Embeddings),
    (Ollama, "GET", "/api/tags", Other),
    (Ollama, "POST", "/api/pull", Other),
    (Ollama, "POST", "/api/show", Other),
    // triton
    (Triton, "POST", "/v2/models/resnet/infer", Completion),
    (Triton, "POST", "/v2/models/resnet/versions/3/infer", Completion),
    (Triton, "POST", "/v2/models/llama/generate", Completion),
    (Triton, "POST", "/v2/models/llama/generate_stream", Completion),
    (Triton, "POST", "/v2/models/llama/versions/1/generate_stream", Completion),
    (Triton, "GET", "/v2/models/resnet", Other),
    (Triton, "GET", "/v2/models/resnet/ready", Other),
    (Triton, "POST", "/v2/models//infer", Other),
    (Triton, "POST", "/v2/models/resnet/versions/infer", Other),
    (Triton, "POST", "/v2/models/resnet/infer/extra", Other),
    (Triton, "POST", "/v2/repository/index", Other),
    // qdrant
    (Qdrant, "POST", "/collections/docs/points/search", Search),
    (Qdrant, "POST", "/collections/docs/points/search/batch", Search),
    (Qdrant, "POST", "/collections/docs/points/search/groups", Search),
    (Qdrant, "POST", "/collections/docs/points/query", Query),
    (Qdrant, "POST", "/collections/docs/points/query?timeout=5", Query),
    (Qdrant, "POST", "/collections/docs/points/query/batch", Query),
    (Qdrant, "POST", "/collections/docs/points/query/groups", Query),
    (Qdrant, "PUT", "/collections/docs/points", Upsert),
    (Qdrant, "PUT", "/collections/docs/points?wait=true", Upsert),
    (Qdrant, "POST", "/collections/docs/points", Other),
    (Qdrant, "POST", "/collections/docs/points/scroll", Other),
    (Qdrant, "GET", "/collections/docs", Other),
    (Qdrant, "PUT", "/collections/docs", Other),
    // chroma
    (Chroma, "POST", "/api/v2/tenants/t/databases/d/collections/0b9f/query", Query),
    (Chroma, "POST", "/api/v2/tenants/t/databases/d/collections/0b9f/add", Upsert),
    (Chroma, "POST", "/api/v2/tenants/t/databases/d/collections/0b9f/upsert", Upsert),
    (Chroma, "POST", "/api/v1/collections/0b9f/query", Query),
    (Chroma, "POST", "/api/v2/tenants/t/databases/d/collections/0b9f/get", Other),
    (Chroma, "POST", "/api/v2/tenants/t/databases/d/collections/0b9f/delete", Other),
    (Chroma, "POST", "/api/v2/tenants/t/databases/d/collections", Other),
    (Chroma, "GET", "/api/v2/heartbeat", Other),
    (Chroma, "GET", "/api/v2/tenants/t/databases/d/collections/0b9f/query", Other),
    // milvus
    (Milvus, "POST", "/v2/vectordb/entities/search", Search),
    (Milvus, "POST", "/v2/vectordb/entities/hybrid_search", Search),
    (Milvus, "POST", "/v2/vectordb/entities/query", Query),
    (Milvus, "POST", "/v2/vectordb/entities/insert", Upsert),
    (Milvus, "POST", "/v2/vectordb/entities/upsert", Upsert),
    (Milvus, "POST", "/v2/vectordb/entities/delete", Other),
    (Milvus, "POST", "/v2/vectordb/collections/list", Other),
    // weaviate
    (Weaviate, "POST", "/v1/graphql", Search),
    (Weaviate, "POST", "/v1/objects", Upsert),
    (Weaviate, "PUT", "/v1/objects/Article/36ddd591-2dee-4e7e-a3cc-eb86d30a4303", Upsert),
    (Weaviate, "PATCH", "/v1/objects/Article/36ddd591-2dee-4e7e-a3cc-eb86d30a4303", Upsert),
    (Weaviate, "POST", "/v1/batch/objects", Upsert),
    (Weaviate, "GET", "/v1/objects", Other),
    (Weaviate, "GET", "/v1/graphql", Other),
    (Weaviate, "GET", "/v1/schema", Other),
    (Weaviate, "POST", "/v1/objectsx", Other),
    // pinecone
    (Pinecone, "POST", "/query", Query),
    (Pinecone, "POST", "/vectors/upsert", Upsert),
    (Pinecone, "GET", "/describe_index_stats", Other),
    (Pinecone, "POST", "/vectors/delete", Other),
    (Pinecone, "GET", "/vectors/fetch?ids=a", Other),
    // generic: every row above, detected by path
    (Generic, "POST", "/v1/chat/completions", Chat),
    (Generic, "POST", "/v1/completions", Completion),
    (Generic, "POST", "/v1/responses", Responses),
    (Generic, "POST", "/v1/embeddings", Embeddings),
    (Generic, "POST", "/v1/messages", Messages),
    (Generic, "POST", "/generate", Completion),
    (Generic, "POST", "/generate_stream", Completion),
    (Generic, "POST", "/api/chat", Chat),
    (Generic, "POST", "/api/generate", Completion),
    (Generic, "POST", "/api/embed", Embeddings),
    (Generic, "POST", "/api/embeddings", Embeddings),
    (Generic, "POST", "/v2/models/m/infer", Completion),
    (Generic, "POST", "/v2/models/m/versions/2/infer", Completion),
    (Generic, "POST", "/collections/c/points/search", Search),
    (Generic, "POST", "/collections/c/points/search/batch", Search),
    (Generic, "POST", "/collections/c/points/query", Query),
    (Generic, "PUT", "/collections/c/points", Upsert),
    (Generic, "POST", "/api/v2/tenants/t/databases/d/collections/id/query", Query),
    (Generic, "POST", "/api/v2/tenants/t/databases/d/collections/id/add", Upsert),
    (Generic, "POST", "/api/v2/tenants/t/databases/d/collections/id/upsert", Upsert),
    (Generic, "POST", "/v2/vectordb/entities/search", Search),
    (Generic, "POST", "/v2/vectordb/entities/insert", Upsert),
    (Generic, "POST", "/v2/vectordb/entities/upsert", Upsert),
    (Generic, "POST", "/v1/graphql", Search),
    (Generic, "POST", "/v1/objects", Upsert),
    (Generic, "POST", "/v1/batch/objects", Upsert),
    (Generic, "POST", "/query", Query),
    (Generic, "POST", "/vectors/upsert", Upsert),
    (Generic, "POST", "/", Other),
    (Generic, "GET", "/", Other),
    (Generic, "GET", "/healthz", Other),
    (Generic, "POST", "/something/else", Other),
];

#[test]
fn classify_table() {
    let mut failures = Vec::new();
    for &(api, method, path, want) in TABLE {
        let method = Method::from_bytes(method.as_bytes()).unwrap();
        let got = classify(api, &method, path);
        if got != want {
            failures.push(format!(
                "{api:?} {method} {path}: got {got:?}, want {want:?}"
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn classify_never_panics_on_odd_paths() {
    let odd = [
        "",
        "/",
        "//",
        "?",
        "?a=b",
        "#frag",
        "/v2/models/",
        "/v2/models",
        "/v2/models/a/versions",
        "/v2/models/a/versions/",
        "collections",
        "/collections/",
        "/query?",
        "/ü/ß/v1/chat/completions",
        "/v1/objects/",
        "\u{0}",
        "/a//b//c",
    ];
    for api in ALL_APIS {
        for method in [
            Method::GET,
            Method::POST,
            Method::PUT,
            Method::PATCH,
            Method::DELETE,
        ] {
            for path in odd {
                let _ = classify(api, &method, path);
                let _ = stream_from_path(api, path);
            }
        }
    }
    assert_eq!(
        classify(Generic, &Method::POST, "/ü/ß/v1/chat/completions"),
        Chat
    );
}

#[test]
fn stream_by_path() {
    assert_eq!(stream_from_path(Tgi, "/generate_stream"), Some(true));
    assert_eq!(stream_from_path(Tgi, "/generate"), Some(false));
    assert_eq!(stream_from_path(Tgi, "/v1/chat/completions"), None);
    assert_eq!(
        stream_from_path(Triton, "/v2/models/m/generate_stream"),
        Some(true)
    );
    assert_eq!(stream_from_path(Generic, "/api/generate"), None);
    assert_eq!(stream_from_path(Openai, "/generate_stream"), None);
}

fn facts(api: ApiKind, endpoint: Endpoint, body: &str) -> BodyFacts {
    inspect_body(api, endpoint, body.as_bytes())
}

#[test]
fn openai_chat_with_strings_and_parts() {
    let body = r#"{
        "model": "gpt-4o-mini",
        "messages": [
            {"role": "system", "content": "You are terse."},
            {"role": "user", "content": [
                {"type": "text", "text": "Describe this image"},
                {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"}}
            ]},
            {"role": "assistant", "content": null, "tool_calls": [{"id": "c1", "type": "function", "function": {"name": "f", "arguments": "{}"}}]},
            {"role": "tool", "tool_call_id": "c1", "content": "42"}
        ],
        "stream": true,
        "stream_options": {"include_usage": true},
        "max_completion_tokens": 256,
        "temperature": 0.2,
        "tools": [{"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}]
    }"#;
    // "You are terse." 14 + "Describe this image" 19 + "42" 2 = 35 chars → 9 tokens.
    assert_eq!(
        facts(Openai, Chat, body),
        BodyFacts {
            model: Some("gpt-4o-mini".into()),
            stream: Some(true),
            prompt_tokens: Some(9),
            max_tokens: Some(256),
        }
    );
}

#[test]
fn openai_defaults_and_max_tokens_precedence() {
    let f = facts(
        Openai,
        Chat,
        r#"{"model":"m","messages":[{"role":"user","content":"abcd"}],"max_tokens":10,"max_completion_tokens":20}"#,
    );
    assert_eq!(f.stream, Some(false));
    assert_eq!(f.max_tokens, Some(10));
    assert_eq!(f.prompt_tokens, Some(1));
    let f = facts(Openai, Chat, r#"{"messages":[]}"#);
    assert_eq!(f.model, None);
    assert_eq!(f.prompt_tokens, Some(0));
    assert_eq!(f.max_tokens, None);
}

#[test]
fn completions_prompt_forms() {
    assert_eq!(
        facts(Openai, Completion, r#"{"prompt":"hello world!"}"#).prompt_tokens,
        Some(3)
    );
    assert_eq!(
        facts(Openai, Completion, r#"{"prompt":["abcd","efgh"]}"#).prompt_tokens,
        Some(2)
    );
    // Token ids count one each.
    assert_eq!(
        facts(Openai, Completion, r#"{"prompt":[1,2,3,4,5]}"#).prompt_tokens,
        Some(5)
    );
    assert_eq!(
        facts(Openai, Completion, r#"{"prompt":[[1,2],[3]]}"#).prompt_tokens,
        Some(3)
    );
    // Escapes count as the characters they stand for.
    assert_eq!(
        facts(Openai, Completion, r#"{"prompt":"\u00e9\n\"x"}"#).prompt_tokens,
        Some(1)
    );
}

#[test]
fn embeddings_and_responses() {
    let f = facts(
        Openai,
        Embeddings,
        r#"{"model":"text-embedding-3-small","input":["abcdefgh","ij"],"encoding_format":"float","dimensions":256}"#,
    );
    assert_eq!(f.model.as_deref(), Some("text-embedding-3-small"));
    assert_eq!(f.prompt_tokens, Some(3));
    assert_eq!(f.stream, Some(false));

    let f = facts(
        Openai,
        Responses,
        r#"{"model":"o4-mini","input":"What is 2+2?","max_output_tokens":64,"stream":true}"#,
    );
    assert_eq!(
        (f.prompt_tokens, f.max_tokens, f.stream),
        (Some(3), Some(64), Some(true))
    );

    let f = facts(
        Openai,
        Responses,
        r#"{"model":"gpt-4.1","instructions":"Be brief.","input":[
        {"role":"user","content":[{"type":"input_text","text":"abcdefgh"},{"type":"input_image","image_url":"https://x/y.png"}]},
        {"type":"message","role":"assistant","content":"ok"}
    ]}"#,
    );
    // "Be brief." 9 + "abcdefgh" 8 + "ok" 2 = 19 → 5.
    assert_eq!(f.prompt_tokens, Some(5));
}

#[test]
fn anthropic_messages() {
    let body = r#"{
        "model": "claude-sonnet-4-5",
        "max_tokens": 1024,
        "system": [{"type": "text", "text": "You are a poet.", "cache_control": {"type": "ephemeral"}}],
        "messages": [
            {"role": "user", "content": "Write a haiku"},
            {"role": "assistant", "content": [{"type": "text", "text": "Sure"}, {"type": "tool_use", "id": "t", "name": "n", "input": {"q": "long long long"}}]},
            {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t", "content": [{"type": "text", "text": "result"}]},
                                          {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "QUFBQUFBQUFBQUFB"}}]}
        ],
        "stream": true,
        "thinking": {"type": "enabled", "budget_tokens": 2000}
    }"#;
    // 15 + 13 + 4 + 6 = 38 chars → 10 tokens.
    assert_eq!(
        facts(Anthropic, Messages, body),
        BodyFacts {
            model: Some("claude-sonnet-4-5".into()),
            stream: Some(true),
            prompt_tokens: Some(10),
            max_tokens: Some(1024),
        }
    );
    let f = facts(
        Anthropic,
        Messages,
        r#"{"model":"claude-haiku-4-5","max_tokens":5,"system":"abcd","messages":[{"role":"user","content":"efgh"}]}"#,
    );
    assert_eq!((f.stream, f.prompt_tokens), (Some(false), Some(2)));
}

#[test]
fn ollama_native_defaults_to_streaming() {
    let f = facts(
        Ollama,
        Chat,
        r#"{"model":"llama3.1:8b","messages":[{"role":"user","content":"abcdefgh","images":["AAAA"]}],"options":{"num_predict":128,"temperature":0}}"#,
    );
    assert_eq!(
        f,
        BodyFacts {
            model: Some("llama3.1:8b".into()),
            stream: Some(true),
            prompt_tokens: Some(2),
            max_tokens: Some(128),
        }
    );
    let f = facts(
        Ollama,
        Completion,
        r#"{"model":"llama3.1","prompt":"abcd","system":"efgh","stream":false,"options":{"num_predict":-1}}"#,
    );
    assert_eq!(
        (f.stream, f.prompt_tokens, f.max_tokens),
        (Some(false), Some(2), None)
    );
    let f = facts(
        Ollama,
        Embeddings,
        r#"{"model":"nomic-embed-text","input":"abcd"}"#,
    );
    assert_eq!((f.stream, f.prompt_tokens), (Some(false), Some(1)));
}

#[test]
fn tgi_native() {
    let f = facts(
        Tgi,
        Completion,
        r#"{"inputs":"What is deep learning?","parameters":{"max_new_tokens":20,"details":true}}"#,
    );
    assert_eq!(
        (f.model, f.prompt_tokens, f.max_tokens, f.stream),
        (None, Some(6), Some(20), Some(false))
    );
}

#[test]
fn inspect_request_combines_path_and_body() {
    let f = inspect_request(
        Tgi,
        &Method::POST,
        "/generate_stream",
        Some(br#"{"inputs":"abcd","parameters":{"max_new_tokens":7}}"#),
    );
    assert_eq!(
        (f.endpoint, f.stream, f.max_tokens, f.body_inspected),
        (Completion, Some(true), Some(7), true)
    );
    let f = inspect_request(
        Tgi,
        &Method::POST,
        "/generate",
        Some(br#"{"inputs":"abcd"}"#),
    );
    assert_eq!(f.stream, Some(false));

    // Ollama's OpenAI route follows OpenAI's default (no stream), its native route its own.
    let body = br#"{"model":"llama3","messages":[{"role":"user","content":"hi"}],"max_tokens":9}"#;
    let f = inspect_request(Ollama, &Method::POST, "/v1/chat/completions", Some(body));
    assert_eq!(
        (f.endpoint, f.stream, f.max_tokens),
        (Chat, Some(false), Some(9))
    );
    let f = inspect_request(Ollama, &Method::POST, "/api/chat", Some(body));
    assert_eq!(
        (f.endpoint, f.stream, f.max_tokens),
        (Chat, Some(true), None)
    );
    let f = inspect_request(Generic, &Method::POST, "/api/chat", Some(body));
    assert_eq!(f.stream, Some(true));

    let f = inspect_request(Openai, &Method::POST, "/v1/chat/completions", None);
    assert_eq!(
        (f.api, f.endpoint, f.body_inspected, f.model),
        (Openai, Chat, false, None)
    );

    let f = inspect_request(
        Openai,
        &Method::POST,
        "/v1/chat/completions",
        Some(b"not json"),
    );
    assert!(!f.body_inspected);
    let f = inspect_request(
        Qdrant,
        &Method::POST,
        "/collections/c/points/search",
        Some(b"{}"),
    );
    assert_eq!((f.endpoint, f.body_inspected), (Search, false));
}

#[test]
fn wrong_field_types_do_not_spoil_the_rest() {
    let f = facts(
        Openai,
        Chat,
        r#"{"model":42,"stream":"yes","max_tokens":-3,"messages":[{"role":"user","content":"abcd"}],"options":"x","parameters":[1]}"#,
    );
    assert_eq!(
        f,
        BodyFacts {
            model: None,
            stream: Some(false),
            prompt_tokens: Some(1),
            max_tokens: None
        }
    );
    let f = facts(
        Openai,
        Chat,
        r#"{"model":["a"],"stream":{"x":1},"max_tokens":1.5,"messages":"abcdefgh"}"#,
    );
    assert_eq!(
        f,
        BodyFacts {
            model: None,
            stream: Some(false),
            prompt_tokens: Some(2),
            max_tokens: None
        }
    );
    let f = facts(
        Ollama,
        Chat,
        r#"{"options":{"num_predict":"many"},"messages":[]}"#,
    );
    assert_eq!(f.max_tokens, None);
}

#[test]
fn non_generative_endpoints_are_not_read() {
    assert_eq!(
        facts(Qdrant, Search, r#"{"model":"x","vector":[1,2]}"#),
        BodyFacts::default()
    );
    assert_eq!(
        facts(Openai, Other, r#"{"model":"x"}"#),
        BodyFacts::default()
    );
}

#[test]
fn garbage_truncated_and_huge_bodies() {
    let garbage: &[&[u8]] = &[
        b"",
        b"null",
        b"[]",
        b"42",
        b"\"str\"",
        b"{",
        b"{\"model\":\"gpt",
        b"{\"messages\":[{\"content\":\"abc",
        b"{\"model\":\"a\"} trailing",
        b"\xff\xfe\x00garbage",
        b"{\"model\":\"\xff\"}",
        b"{\"model\":\"a\",\"model\":\"b\"}",
    ];
    for body in garbage {
        for api in ALL_APIS {
            for ep in [Chat, Completion, Responses, Messages, Embeddings] {
                assert_eq!(
                    inspect_body(api, ep, body),
                    BodyFacts::default(),
                    "{body:?}"
                );
            }
        }
    }

    // Deep nesting hits serde_json's recursion limit instead of the stack.
    let deep = format!(
        "{{\"messages\":{}{}}}",
        "[".repeat(100_000),
        "]".repeat(100_000)
    );
    assert_eq!(facts(Openai, Chat, &deep), BodyFacts::default());
    let deep_obj = format!(
        "{{\"messages\":{}1{}}}",
        "{\"content\":".repeat(50_000),
        "}".repeat(50_000)
    );
    assert_eq!(facts(Openai, Chat, &deep_obj), BodyFacts::default());

    // A large, valid prompt is counted in full.
    let text = "x".repeat(4_000_000);
    let big = format!(r#"{{"model":"m","messages":[{{"role":"user","content":"{text}"}}]}}"#);
    assert_eq!(facts(Openai, Chat, &big).prompt_tokens, Some(1_000_000));

    // Pseudo-random bytes never panic.
    const ALPHABET: &[u8] = b"{}[]\":,abc0123 \\u-\xff";
    let mut state = 0x1234_5678_9abc_def0u64;
    for len in 0..2000usize {
        let bytes: Vec<u8> = (0..len % 97)
            .map(|_| {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                ALPHABET[(state % ALPHABET.len() as u64) as usize]
            })
            .collect();
        let _ = inspect_body(Openai, Chat, &bytes);
        let _ = inspect_body(Anthropic, Messages, &bytes);
    }
}

#[test]
fn client_share_is_stable() {
    // Golden values: these must never change (sidecars across versions agree).
    assert_eq!(client_share(0, ""), GOLDEN[0]);
    assert_eq!(client_share(7, "Bearer sk-test"), GOLDEN[1]);
    assert_eq!(client_share(7, "10.0.0.1"), GOLDEN[2]);
    assert_ne!(client_share(7, "10.0.0.1"), client_share(8, "10.0.0.1"));
}

const GOLDEN: [f64; 3] = [50.486764047146856, 8.396654445754216, 63.181594880243054];

#[test]
fn client_share_spreads_evenly() {
    let mut state = 42u64;
    let mut under = 0;
    let n = 10_000;
    for i in 0..n {
        state = state
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        let key = format!("client-{i}-{:x}", state >> 20);
        let s = client_share(99, &key);
        assert!((0.0..100.0).contains(&s));
        if s < 20.0 {
            under += 1;
        }
    }
    // 20% ± 1.5 percentage points (about 3.75 standard deviations).
    assert!((1850..=2150).contains(&under), "{under} of {n} under 20");
    // Sequential keys (IPs) spread too.
    let under = (0..n)
        .filter(|i| client_share(1, &format!("10.0.{}.{}", i / 256, i % 256)) < 20.0)
        .count();
    assert!(
        (1850..=2150).contains(&under),
        "{under} of {n} sequential under 20"
    );
}
