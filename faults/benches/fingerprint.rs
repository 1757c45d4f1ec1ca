//! Cost per request of naming the call and the client in a record
//! (`FingerprintKey::fingerprint` and `client`, two HMAC-SHA256s), which the
//! HTTP/1.1 fast path pays on every request it relays.
//!
//! - `fingerprint/fast_path`: what the fast path hashes: the method and target
//!   (no body), and an `authorization` header.
//! - `fingerprint/full_path_body`: the full path with a 300-byte chat body read for
//!   matching.
//!
//! Quick run: `cargo bench -p brownout-faults --bench fingerprint -- --warm-up-time 1 --measurement-time 3`

use std::hint::black_box;
use std::net::{IpAddr, Ipv4Addr};

use brownout_faults::record::FingerprintKey;
use criterion::{criterion_group, criterion_main, Criterion};

fn bench(c: &mut Criterion) {
    let key = FingerprintKey::new(b"bench-key");
    let ip = IpAddr::V4(Ipv4Addr::LOCALHOST);
    let auth: &[u8] = b"Bearer sk-proj-0123456789abcdefghijklmnopqrstuvwxyz";
    let body = format!(
        r#"{{"model":"gpt-4o-mini","stream":true,"messages":[{{"role":"user","content":"{}"}}]}}"#,
        "x".repeat(220)
    );
    let mut g = c.benchmark_group("fingerprint");
    g.bench_function("fast_path", |b| {
        b.iter(|| {
            let f = key.fingerprint(black_box("GET"), black_box("/v1/models?limit=10"), None);
            let who = key.client(black_box(Some(auth)), ip);
            black_box((f, who))
        })
    });
    g.bench_function("full_path_body", |b| {
        b.iter(|| {
            let f = key.fingerprint(
                black_box("POST"),
                black_box("/v1/chat/completions"),
                Some(black_box(body.as_bytes())),
            );
            let who = key.client(black_box(Some(auth)), ip);
            black_box((f, who))
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
