//! Error presets: shapes, statuses and headers per provider, and rendering.

use std::time::Duration;

use brownout_faults::fault;
use brownout_faults::presets::{
    all, default_overload_for, default_rate_limit_for, family, go_duration, lookup, names,
    RenderCtx,
};
use brownout_faults::ApiKind;
use http::header::{HeaderName, HeaderValue};
use serde_json::Value;

/// The presets docs/presets.md lists, each of which must exist.
const REQUIRED: &[&str] = &[
    "openai.rate_limit_requests",
    "openai.rate_limit_tokens",
    "openai.insufficient_quota",
    "openai.server_error",
    "openai.overloaded",
    "openai.context_length",
    "anthropic.rate_limit",
    "anthropic.overloaded",
    "anthropic.api_error",
    "vllm.queue_full",
    "tgi.overloaded",
    "ollama.busy",
    "triton.queue_full",
    "qdrant.timeout",
    "qdrant.rate_limit",
    "qdrant.unavailable",
    "chroma.unavailable",
    "milvus.rate_limit",
    "milvus.queue_full",
    "pinecone.rate_limit",
    "weaviate.rate_limit",
    "http.bad_gateway",
    "http.service_unavailable",
    "http.gateway_timeout",
    "http.too_many_requests",
];

/// (name, status) from `reference/ai-wire-formats.md`.
const STATUSES: &[(&str, u16)] = &[
    ("openai.rate_limit_requests", 429),
    ("openai.rate_limit_tokens", 429),
    ("openai.insufficient_quota", 429),
    ("openai.server_error", 500),
    ("openai.overloaded", 503),
    ("openai.context_length", 400),
    ("anthropic.rate_limit", 429),
    ("anthropic.overloaded", 529),
    ("anthropic.api_error", 500),
    ("vllm.queue_full", 503),
    ("tgi.overloaded", 429),
    ("ollama.busy", 503),
    ("triton.queue_full", 503),
    ("qdrant.timeout", 408),
    ("qdrant.rate_limit", 429),
    ("qdrant.unavailable", 503),
    ("chroma.unavailable", 503),
    ("chroma.rate_limit", 429),
    ("milvus.rate_limit", 200),
    ("milvus.queue_full", 200),
    ("pinecone.rate_limit", 429),
    ("weaviate.rate_limit", 429),
    ("http.bad_gateway", 502),
    ("http.service_unavailable", 503),
    ("http.gateway_timeout", 504),
    ("http.too_many_requests", 429),
    // gRPC-only presets ride on :status 200; their status is grpc-status.
    ("grpc.unavailable", 200),
    ("grpc.resource_exhausted", 200),
    ("grpc.deadline_exceeded", 200),
    ("grpc.internal", 200),
    ("grpc.unimplemented", 200),
];

fn ctx() -> RenderCtx<'static> {
    RenderCtx {
        retry_after: None,
        request_id: 7,
        model: Some("gpt-4o-mini"),
        now: None,
    }
}

fn body_json(name: &str, ctx: &RenderCtx<'_>) -> Value {
    let p = lookup(name).unwrap();
    serde_json::from_slice(&p.render(ctx).body).unwrap_or_else(|e| panic!("{name}: {e}"))
}

fn is_str(v: &Value, pointer: &str) -> bool {
    v.pointer(pointer).is_some_and(Value::is_string)
}

#[test]
fn names_lists_every_required_preset() {
    let names = names();
    for want in REQUIRED {
        assert!(names.contains(want), "{want} missing");
        assert!(lookup(want).is_some());
    }
    assert_eq!(names.len(), all().len());
    let mut sorted = names.clone();
    sorted.sort();
    sorted.dedup();
    assert_eq!(sorted.len(), names.len(), "duplicate names");
    assert!(lookup("openai.nope").is_none());
    assert!(lookup("").is_none());
}

#[test]
fn statuses_match_the_reference() {
    for &(name, status) in STATUSES {
        let p = lookup(name).unwrap();
        assert_eq!(p.status, status, "{name}");
        assert_eq!(p.status_code().as_u16(), status, "{name}");
        assert_eq!(p.render(&ctx()).status.as_u16(), status, "{name}");
    }
    assert_eq!(
        STATUSES.len(),
        all().len(),
        "a preset is missing from STATUSES"
    );
}

#[test]
fn every_body_has_its_providers_shape() {
    // gRPC-only presets have no HTTP body: `grpc_presets_answer_trailers_only`.
    for p in all().iter().filter(|p| family(p.name) != "grpc") {
        let v = body_json(p.name, &ctx());
        let ok = match family(p.name) {
            "openai" => {
                is_str(&v, "/error/message")
                    && is_str(&v, "/error/type")
                    && v.pointer("/error/param").is_some()
                    && v.pointer("/error/code").is_some()
            }
            "vllm" => {
                is_str(&v, "/error/message")
                    && is_str(&v, "/error/type")
                    && v.pointer("/error/param").is_some()
                    && v.pointer("/error/code").and_then(Value::as_u64) == Some(p.status.into())
            }
            "anthropic" => {
                v["type"] == "error"
                    && is_str(&v, "/error/type")
                    && is_str(&v, "/error/message")
                    && is_str(&v, "/request_id")
            }
            "tgi" => is_str(&v, "/error") && is_str(&v, "/error_type"),
            "ollama" | "triton" => is_str(&v, "/error") && v.as_object().unwrap().len() == 1,
            "qdrant" => is_str(&v, "/status/error") && v["time"].is_number(),
            "chroma" => is_str(&v, "/error") && is_str(&v, "/message"),
            "milvus" => v["code"].as_u64().is_some_and(|c| c != 0) && is_str(&v, "/message"),
            "pinecone" => {
                v["code"].is_number() && is_str(&v, "/message") && v["details"].is_array()
            }
            "weaviate" => is_str(&v, "/error/0/message"),
            "http" => is_str(&v, "/error") && v["status"].as_u64() == Some(p.status.into()),
            other => panic!("unknown family {other}"),
        };
        assert!(ok, "{} has the wrong shape: {v}", p.name);
        assert!(!p.summary.is_empty());
        let rendered = p.render(&ctx());
        assert_eq!(
            rendered.headers["content-type"], "application/json",
            "{}",
            p.name
        );
        assert!(
            !String::from_utf8_lossy(&rendered.body).contains("${"),
            "{}",
            p.name
        );
    }
}

#[test]
fn openai_specifics() {
    let v = body_json("openai.rate_limit_requests", &ctx());
    assert_eq!(v["error"]["type"], "requests");
    assert_eq!(v["error"]["code"], "rate_limit_exceeded");
    assert!(v["error"]["message"]
        .as_str()
        .unwrap()
        .contains("gpt-4o-mini"));
    let v = body_json("openai.rate_limit_tokens", &ctx());
    assert_eq!(v["error"]["type"], "tokens");
    assert_eq!(v["error"]["code"], "rate_limit_exceeded");
    let v = body_json("openai.insufficient_quota", &ctx());
    assert_eq!(v["error"]["type"], "insufficient_quota");
    assert_eq!(v["error"]["code"], "insufficient_quota");
    let v = body_json("openai.context_length", &ctx());
    assert_eq!(v["error"]["type"], "invalid_request_error");
    assert_eq!(v["error"]["param"], "messages");
    assert_eq!(v["error"]["code"], "context_length_exceeded");

    for name in ["openai.rate_limit_requests", "openai.rate_limit_tokens"] {
        let r = lookup(name).unwrap().render(&ctx());
        for h in [
            "x-ratelimit-limit-requests",
            "x-ratelimit-limit-tokens",
            "x-ratelimit-remaining-requests",
            "x-ratelimit-remaining-tokens",
            "x-ratelimit-reset-requests",
            "x-ratelimit-reset-tokens",
        ] {
            assert!(r.headers.contains_key(h), "{name} lacks {h}");
        }
        let id = r.headers["x-request-id"].to_str().unwrap();
        assert!(id.starts_with("req_") && id.len() == 36);
    }
}

#[test]
fn model_is_json_escaped_and_defaults() {
    let c = RenderCtx {
        model: Some("evil\"model\\"),
        ..ctx()
    };
    let v = body_json("openai.rate_limit_tokens", &c);
    assert!(v["error"]["message"]
        .as_str()
        .unwrap()
        .contains("evil\"model\\"));
    // No model known (a body over inspect_limit, not JSON): none is invented.
    let c = RenderCtx {
        model: None,
        ..ctx()
    };
    for name in ["openai.rate_limit_requests", "openai.rate_limit_tokens"] {
        let v = body_json(name, &c);
        let m = v["error"]["message"].as_str().unwrap();
        assert!(
            m.starts_with("Rate limit reached in organization org-brownout on "),
            "{name}: {m}"
        );
        assert!(!m.contains("gpt") && !m.contains("${"), "{name}: {m}");
    }
}

#[test]
fn only_the_openai_rate_limits_name_the_model() {
    // What the providers send: OpenAI's rate-limit messages name the model;
    // Anthropic's errors, the quota, server and overload errors name none.
    let naming: Vec<&str> = all()
        .iter()
        .filter(|p| p.names_model())
        .map(|p| p.name)
        .collect();
    assert_eq!(
        naming,
        ["openai.rate_limit_requests", "openai.rate_limit_tokens"]
    );
    assert!(brownout_faults::presets::names_model(
        "openai.rate_limit_requests"
    ));
    assert!(!brownout_faults::presets::names_model(
        "anthropic.rate_limit"
    ));
    assert!(!brownout_faults::presets::names_model("no.such"));
    let c = RenderCtx {
        model: Some("gpt-4.1-mini"),
        ..ctx()
    };
    let v = body_json("openai.rate_limit_requests", &c);
    assert!(v["error"]["message"]
        .as_str()
        .unwrap()
        .starts_with("Rate limit reached for gpt-4.1-mini in organization org-brownout"));
}

#[test]
fn anthropic_request_id_in_header_and_body() {
    for name in [
        "anthropic.rate_limit",
        "anthropic.overloaded",
        "anthropic.api_error",
    ] {
        let r = lookup(name).unwrap().render(&ctx());
        let header = r.headers["request-id"].to_str().unwrap().to_string();
        assert!(
            header.starts_with("req_011C") && header.len() == 28,
            "{header}"
        );
        let v: Value = serde_json::from_slice(&r.body).unwrap();
        assert_eq!(v["request_id"], header.as_str());
        // Reproducible under a seed, different across seeds.
        let again = lookup(name).unwrap().render(&ctx());
        assert_eq!(again.headers["request-id"], header.as_str());
        assert_eq!(again.body, r.body);
        let other = lookup(name).unwrap().render(&RenderCtx {
            request_id: 8,
            ..ctx()
        });
        assert_ne!(other.headers["request-id"], header.as_str());
    }
    let v = body_json("anthropic.overloaded", &ctx());
    assert_eq!(v["error"]["type"], "overloaded_error");
    let v = body_json("anthropic.rate_limit", &ctx());
    assert_eq!(v["error"]["type"], "rate_limit_error");
    let v = body_json("anthropic.api_error", &ctx());
    assert_eq!(v["error"]["type"], "api_error");
}

#[test]
fn retry_after_headers() {
    let p = lookup("openai.rate_limit_requests").unwrap();
    // None given, none by default for OpenAI (unconfirmed in production).
    let r = p.render(&ctx());
    assert!(!r.headers.contains_key("retry-after"));
    assert!(!r.headers.contains_key("retry-after-ms"));

    let r = p.render(&RenderCtx {
        retry_after: Some(Duration::from_millis(1500)),
        ..ctx()
    });
    assert_eq!(r.headers["retry-after"], "2");
    assert_eq!(r.headers["retry-after-ms"], "1500");
    assert_eq!(r.headers["x-ratelimit-reset-requests"], "1.5s");
    let v: Value = serde_json::from_slice(&r.body).unwrap();
    assert!(v["error"]["message"]
        .as_str()
        .unwrap()
        .contains("try again in 1.5s."));

    // Sub-second waits round up to 1 s; exact seconds stay.
    let r = p.render(&RenderCtx {
        retry_after: Some(Duration::from_millis(30)),
        ..ctx()
    });
    assert_eq!(r.headers["retry-after"], "1");
    assert_eq!(r.headers["retry-after-ms"], "30");
    let r = p.render(&RenderCtx {
        retry_after: Some(Duration::from_secs(2)),
        ..ctx()
    });
    assert_eq!(r.headers["retry-after"], "2");
    let r = p.render(&RenderCtx {
        retry_after: Some(Duration::ZERO),
        ..ctx()
    });
    assert_eq!(r.headers["retry-after"], "1");

    // Non-OpenAI presets get retry-after only.
    let r = lookup("tgi.overloaded").unwrap().render(&RenderCtx {
        retry_after: Some(Duration::from_millis(2100)),
        ..ctx()
    });
    assert_eq!(r.headers["retry-after"], "3");
    assert!(!r.headers.contains_key("retry-after-ms"));

    // Anthropic and Qdrant 429s carry retry-after by default.
    let r = lookup("anthropic.rate_limit").unwrap().render(&ctx());
    assert_eq!(r.headers["retry-after"], "10");
    let r = lookup("qdrant.rate_limit").unwrap().render(&ctx());
    assert_eq!(r.headers["retry-after"], "1");
}

#[test]
fn anthropic_reset_headers_need_a_clock() {
    let p = lookup("anthropic.rate_limit").unwrap();
    let r = p.render(&ctx());
    assert!(!r.headers.contains_key("anthropic-ratelimit-requests-reset"));
    assert_eq!(r.headers["anthropic-ratelimit-requests-remaining"], "0");
    let now = time::macros::datetime!(2026-12-01 10:00:00 UTC);
    let r = p.render(&RenderCtx {
        now: Some(now),
        retry_after: Some(Duration::from_secs(5)),
        ..ctx()
    });
    assert_eq!(
        r.headers["anthropic-ratelimit-requests-reset"],
        "2026-12-01T10:00:05Z"
    );
    assert_eq!(
        r.headers["anthropic-ratelimit-tokens-reset"],
        "2026-12-01T10:00:05Z"
    );
}

#[test]
fn milvus_errors_are_http_200() {
    for (name, code) in [("milvus.rate_limit", 8), ("milvus.queue_full", 4)] {
        let r = lookup(name).unwrap().render(&ctx());
        assert_eq!(r.status.as_u16(), 200);
        let v: Value = serde_json::from_slice(&r.body).unwrap();
        assert_eq!(v["code"], code);
    }
}

#[test]
fn exact_bodies_for_self_hosted_servers() {
    let body =
        |n: &str| String::from_utf8(lookup(n).unwrap().render(&ctx()).body.to_vec()).unwrap();
    assert_eq!(
        body("tgi.overloaded"),
        r#"{"error":"Model is overloaded","error_type":"overloaded"}"#
    );
    assert_eq!(
        body("ollama.busy"),
        r#"{"error":"server busy, please try again.  maximum pending requests exceeded"}"#
    );
    assert!(body("triton.queue_full").contains("maximum queue size"));
}

#[test]
fn stream_events_use_the_providers_framing() {
    let ev = lookup("anthropic.overloaded")
        .unwrap()
        .render_stream_event(&ctx());
    let ev = std::str::from_utf8(&ev).unwrap();
    assert!(ev.starts_with("event: error\ndata: {\"type\":\"error\""));
    assert!(ev.ends_with("\n\n"));
    let ev = lookup("openai.server_error")
        .unwrap()
        .render_stream_event(&ctx());
    assert!(ev.starts_with(b"data: {\"error\":"));
    let ev = lookup("ollama.busy").unwrap().render_stream_event(&ctx());
    assert!(ev.starts_with(b"{\"error\":") && ev.ends_with(b"}\n"));
}

#[test]
fn set_header_overrides() {
    let mut r = lookup("openai.rate_limit_requests").unwrap().render(&ctx());
    r.set_header(
        HeaderName::from_static("x-ratelimit-remaining-tokens"),
        HeaderValue::from_static("12"),
    );
    assert_eq!(r.headers["x-ratelimit-remaining-tokens"], "12");
    assert_eq!(
        r.headers
            .get_all("x-ratelimit-remaining-tokens")
            .iter()
            .count(),
        1
    );
}

#[test]
fn defaults_per_api_exist() {
    let apis = ApiKind::ALL;
    for api in apis {
        assert!(lookup(default_overload_for(api)).is_some(), "{api:?}");
        assert!(lookup(default_rate_limit_for(api)).is_some(), "{api:?}");
    }
    assert_eq!(
        default_overload_for(ApiKind::Anthropic),
        "anthropic.overloaded"
    );
    assert_eq!(default_overload_for(ApiKind::Vllm), "vllm.queue_full");
    assert_eq!(
        default_overload_for(ApiKind::Generic),
        "http.service_unavailable"
    );
}

#[test]
fn family_and_go_duration() {
    assert_eq!(family("openai.rate_limit_requests"), "openai");
    assert_eq!(family("nodot"), "nodot");
    assert_eq!(lookup("qdrant.timeout").unwrap().family(), "qdrant");
    assert_eq!(go_duration(Duration::from_millis(644)), "644ms");
    assert_eq!(go_duration(Duration::from_secs(360)), "6m0s");
}

#[test]
fn docs_list_every_preset() {
    let docs = include_str!("../../docs/presets.md");
    for name in names() {
        assert!(
            docs.contains(&format!("`{name}`")),
            "docs/presets.md lacks {name}"
        );
    }
}

#[test]
fn faults_whose_errors_name_the_model() {
    use brownout_faults::profile::FaultSpec;
    let error = |preset: &str, body: bool| {
        FaultSpec::Error(fault::Error {
            status: None,
            body: body.then(|| brownout_faults::profile::ErrorBody::Text("x".into())),
            headers: Default::default(),
            preset: Some(preset.into()),
            retry_after: None,
            grpc_status: None,
        })
    };
    assert!(error("openai.rate_limit_requests", false).names_model());
    assert!(
        !error("openai.rate_limit_requests", true).names_model(),
        "a body of the profile's own replaces the preset's message"
    );
    assert!(!error("anthropic.rate_limit", false).names_model());
    assert!(!error("openai.server_error", false).names_model());
    assert!(FaultSpec::StreamError(fault::StreamError {
        after_tokens: 1,
        preset: Some("openai.rate_limit_tokens".into()),
    })
    .names_model());
    assert!(!FaultSpec::StreamError(fault::StreamError {
        after_tokens: 1,
        preset: None,
    })
    .names_model());
}

#[test]
fn grpc_presets_answer_trailers_only_with_their_code() {
    use brownout_faults::presets::{grpc_form, grpc_only, GrpcForm};
    for (name, want) in [
        ("grpc.unavailable", 14),
        ("grpc.resource_exhausted", 8),
        ("grpc.deadline_exceeded", 4),
        ("grpc.internal", 13),
        ("grpc.unimplemented", 12),
        ("qdrant.timeout", 4),
        ("qdrant.rate_limit", 8),
        ("qdrant.unavailable", 14),
        ("triton.queue_full", 14),
    ] {
        match grpc_form(name) {
            Some(GrpcForm::TrailersOnly { code, message }) => {
                assert_eq!(code, want, "{name}");
                assert!(!message.is_empty(), "{name}");
            }
            other => panic!("{name}: {other:?}"),
        }
        assert_eq!(grpc_only(name), name.starts_with("grpc."), "{name}");
    }
    assert_eq!(grpc_form("milvus.rate_limit"), Some(GrpcForm::InMessage));
    assert_eq!(grpc_form("milvus.queue_full"), Some(GrpcForm::InMessage));
    assert_eq!(grpc_form("openai.rate_limit_requests"), None);
    assert_eq!(grpc_form("anthropic.overloaded"), None);
}
