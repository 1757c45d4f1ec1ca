//! Cost per request of rule matching, as the proxy pays it on every request.
//!
//! Profiles are built as YAML and loaded through the same loader as `brownout
//! validate` and `serve` (`validate::load_profile`), then compiled
//! (`CompiledProfile::compile`). Each iteration is what `proxy/src/pipeline/service.rs`
//! (`handle`) does for one request once a profile is loaded: take the active rules
//! at `now`, build the `MatchInput` from the request's method, path, headers and
//! body facts, and walk the rules in file order through `CompiledRule::decide` (the
//! same call the proxy makes: match, ordinal, seeded draw, `max_active` slot).
//!
//! Benchmarks (`cargo bench -p brownout-faults --bench matcher`):
//!
//! - `matcher/none_match/mixed/{0,10,100}`: rules of four kinds (path glob, header
//!   glob, model glob + `stream`, endpoint + method), none of which holds for the
//!   request. 0 rules is the cost of the walk itself (the proxy skips matching
//!   entirely for an empty profile).
//! - `matcher/none_match/path/{10,100}`: the profile `bench/passthrough.sh` uses
//!   (`match: {path: "/never/N/*"}`), so the figure compares with its `-rules` rows.
//! - `matcher/first_matches/{1,10,100}`: the first rule matches (`endpoint: chat`,
//!   probability 1), the rest are the mixed non-matching ones: adds the ordinal, the
//!   ChaCha seek of `decide` and the `max_active` bookkeeping.
//! - `matcher/fast_path_index/path/{10,100}`: the same path profiles, asked what the
//!   HTTP/1.1 fast path asks ("could any rule match?") through the path-prefix
//!   index (`CompiledProfile::any_rule_matches`).
//! - `matcher/inspect_request/chat`: reading the chat body's facts (model, stream,
//!   prompt estimate), which a profile with body conditions adds per request.
//!
//! Quick run: `cargo bench -p brownout-faults --bench matcher -- --warm-up-time 1 --measurement-time 3`

use std::hint::black_box;
use std::net::{IpAddr, Ipv4Addr};

use brownout_faults::api::inspect_request;
use brownout_faults::matcher::{CompiledProfile, CompiledRule, MatchInput, RuleDecision};
use brownout_faults::schedule::CallId;
use brownout_faults::validate::load_profile;
use brownout_faults::{ApiKind, RequestFacts};
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use http::{HeaderMap, HeaderName, HeaderValue, Method};
use rand_chacha::ChaCha8Rng;
use tokio::time::Instant;

/// A streamed chat request as an OpenAI SDK sends it.
const CHAT_BODY: &str = r#"{"model":"gpt-4o-mini","messages":[{"role":"system","content":"You are a helpful assistant that answers in one paragraph."},{"role":"user","content":"Summarise the causes of the 1929 stock market crash for a high-school student."}],"stream":true,"stream_options":{"include_usage":true},"max_tokens":512,"temperature":0.7}"#;

const PATH: &str = "/v1/chat/completions";

fn headers() -> HeaderMap {
    let mut h = HeaderMap::new();
    for (k, v) in [
        ("host", "api.internal.example:8080"),
        ("accept", "application/json"),
        ("accept-encoding", "gzip, deflate"),
        (
            "authorization",
            "Bearer sk-proj-0123456789abcdefghijklmnopqrstuvwxyz",
        ),
        ("content-type", "application/json"),
        ("content-length", "311"),
        ("user-agent", "OpenAI/Python 1.55.0"),
        ("x-stainless-lang", "python"),
        ("x-stainless-package-version", "1.55.0"),
        ("x-stainless-os", "Linux"),
        ("x-stainless-arch", "x64"),
        ("x-stainless-runtime", "CPython"),
        ("x-stainless-runtime-version", "3.11.7"),
        ("x-stainless-retry-count", "0"),
        ("x-stainless-read-timeout", "600"),
        ("x-tenant", "acme-prod"),
        (
            "traceparent",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        ),
    ] {
        h.insert(HeaderName::from_static(k), HeaderValue::from_static(v));
    }
    h
}

/// One non-matching rule of kind `i % 4`.
fn non_matching_rule(i: usize, only_path: bool) -> String {
    let m = if only_path {
        format!("{{path: \"/never/{i}/*\"}}")
    } else {
        match i % 4 {
            0 => format!("{{path: \"/never/{i}/**\"}}"),
            1 => format!("{{headers: {{x-tenant: \"never-{i}-*\"}}}}"),
            2 => format!("{{model: \"never-model-{i}-*\", stream: true}}"),
            _ => "{endpoint: embeddings, method: POST}".to_string(),
        }
    };
    format!(
        "  - name: never-{i}\n    match: {m}\n    faults:\n      - type: delay\n        duration: 100ms\n"
    )
}

/// A profile of `n` rules, loaded and validated by the YAML loader, then compiled.
fn profile(n: usize, first_matches: bool, only_path: bool) -> CompiledProfile {
    let mut y =
        String::from("version: 1\nname: bench\ndescription: matcher benchmark\nseed: 7\nrules:\n");
    if n == 0 {
        y = String::from("version: 1\nname: bench\nseed: 7\nrules: []\n");
    }
    for i in 0..n {
        if i == 0 && first_matches {
            y.push_str(
                "  - name: chat-slow\n    match: {endpoint: chat, method: POST}\n    faults:\n      - type: delay\n        duration: 100ms\n",
            );
        } else {
            y.push_str(&non_matching_rule(i, only_path));
        }
    }
    let p = load_profile(&y, "bench.yaml").unwrap_or_else(|d| {
        panic!("generated profile does not validate: {d:?}\n{y}");
    });
    CompiledProfile::compile(&p, 7, None, Instant::now(), 0).expect("compile")
}

/// What `service::handle` does per request with a loaded profile; returns how many
/// rules were decided.
#[inline(never)]
fn match_request<'p>(
    profile: &'p CompiledProfile,
    method: &Method,
    path: &str,
    headers: &HeaderMap,
    facts: &RequestFacts,
    ip: IpAddr,
    decided: &mut Vec<(&'p CompiledRule, ChaCha8Rng)>,
) -> usize {
    let active = profile.active(Instant::now());
    let input = MatchInput {
        listener: "default",
        method,
        path,
        headers,
        facts,
        client_ip: Some(ip),
    };
    for rule in active.rules {
        if let RuleDecision::Fire(rng) =
            rule.decide(&input, profile.seed, active.at, &CallId::default())
        {
            decided.push((rule, rng));
        }
    }
    let n = decided.len();
    // The exchange ends: its rules give their `max_active` slots back.
    for (rule, _) in decided.drain(..) {
        rule.state.deactivate();
    }
    n
}

fn bench_matcher(c: &mut Criterion) {
    let method = Method::POST;
    let headers = headers();
    let ip = IpAddr::V4(Ipv4Addr::new(10, 1, 2, 3));
    let facts = inspect_request(ApiKind::Openai, &method, PATH, Some(CHAT_BODY.as_bytes()));
    assert!(facts.body_inspected && facts.model.as_deref() == Some("gpt-4o-mini"));

    let mut g = c.benchmark_group("matcher");
    let run = |g: &mut criterion::BenchmarkGroup<'_, _>,
               name: &str,
               n: usize,
               p: CompiledProfile,
               want: usize| {
        let mut decided = Vec::new();
        assert_eq!(
            match_request(&p, &method, PATH, &headers, &facts, ip, &mut decided),
            want,
            "{name}/{n}"
        );
        let id = BenchmarkId::new(name, n);
        g.bench_function(id, |b| {
            b.iter(|| {
                black_box(match_request(
                    black_box(&p),
                    &method,
                    black_box(PATH),
                    &headers,
                    &facts,
                    ip,
                    &mut decided,
                ))
            })
        });
    };
    for n in [0usize, 10, 100] {
        run(&mut g, "none_match/mixed", n, profile(n, false, false), 0);
    }
    for n in [10usize, 100] {
        run(&mut g, "none_match/path", n, profile(n, false, true), 0);
    }
    for n in [1usize, 10, 100] {
        run(&mut g, "first_matches", n, profile(n, true, false), 1);
    }
    // What the HTTP/1.1 fast path asks (could any rule match?), through the
    // path-prefix index: the cost `brownout-N-rules` pays on the fast path.
    for n in [10usize, 100] {
        let p = profile(n, false, true);
        let input = MatchInput {
            listener: "default",
            method: &method,
            path: PATH,
            headers: &headers,
            facts: &facts,
            client_ip: Some(ip),
        };
        assert!(!p.any_rule_matches(p.active(Instant::now()).phase, &input));
        g.bench_function(BenchmarkId::new("fast_path_index/path", n), |b| {
            b.iter(|| {
                let active = p.active(Instant::now());
                black_box(p.any_rule_matches(active.phase, black_box(&input)))
            })
        });
    }
    g.bench_function("inspect_request/chat", |b| {
        b.iter(|| {
            black_box(inspect_request(
                ApiKind::Openai,
                &method,
                black_box(PATH),
                Some(black_box(CHAT_BODY.as_bytes())),
            ))
        })
    });
    g.finish();
}

criterion_group!(benches, bench_matcher);
criterion_main!(benches);
