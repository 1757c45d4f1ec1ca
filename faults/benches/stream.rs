//! Throughput of the SSE transformer the proxy runs on every LLM stream.
//!
//! The pipeline is the one `proxy/src/body/llm.rs` (`LlmStream`) wires up:
//!
//! - `tap` (no stream fault, the common case): upstream frames → `Splitter::push` →
//!   `inspect` each event → `StreamMeter::observe`; at the end `Splitter::finish`.
//! - `shape/<faults>` (stream faults decided): frames → `Splitter::push` → `inspect`
//!   → `Shaper::on_event` → for every emitted event, `inspect` again (as
//!   `LlmStream::next` does) and `StreamMeter::observe`; at the end
//!   `Shaper::on_end`. Nothing sleeps: the timing faults only compute instants.
//!
//! Input: the reference fixtures in `shared/reference/fixtures/` (Anthropic Messages
//! streams recorded by the anthropic-sdk-python suite; the copies in
//! `faults/tests/fixtures/` when `shared/` is absent) and an OpenAI chat stream in
//! the shape the API sends today (`chat.completion.chunk` with
//! `system_fingerprint`, `logprobs`, `usage: null`, then the `include_usage` chunk
//! and `[DONE]`, as in `shared/reference/ai-wire-formats.md`). Each is stretched to
//! ~500 events by repeating its content events between its head and its tail, so a
//! stream keeps its real shape (start, tokens, usage, end).
//!
//! Chunking: `per_event` feeds one frame per event (how providers flush tokens);
//! `1k` cuts the byte stream into 1024-byte frames regardless of event boundaries
//! (a buffered upstream or a gateway), which exercises the splitter's carry-over.
//!
//! Criterion reports time per stream and MiB/s (`Throughput::Bytes`); at the end a
//! table gives events/s and MB/s side by side (means over every timed run). Quick run:
//! `cargo bench -p brownout-faults --bench stream -- --warm-up-time 1 --measurement-time 3`

use std::hint::black_box;
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::Duration;

use brownout_faults::decide::rng_for;
use brownout_faults::stream::{inspect, Framing, Shaper, Splitter, StreamMeter, StreamPlan};
use brownout_faults::validate::load_profile;
use brownout_faults::{ApiKind, Endpoint, FaultSpec};
use bytes::Bytes;
use criterion::{criterion_group, BenchmarkId, Criterion, Throughput};
use tokio::time::Instant;

/// Events per stretched stream.
const TARGET_EVENTS: usize = 500;

/// An OpenAI chat stream as the API sends it (`stream_options.include_usage`).
fn openai_fixture() -> String {
    let id = "chatcmpl-B9MBs8CjcvOU2jLn4n570S5qMJKcT";
    let head = format!(
        r#"{{"id":"{id}","object":"chat.completion.chunk","created":1741569952,"model":"gpt-4o-2024-08-06","service_tier":"default","system_fingerprint":"fp_eb9dce56a8","choices":[{{"index":0,"delta":{{"role":"assistant","content":"","refusal":null}},"logprobs":null,"finish_reason":null}}],"usage":null}}"#
    );
    let mut s = format!("data: {head}\n\n");
    for word in [
        "Hello", "!", " How", " can", " I", " assist", " you", " today", "?", " The", " crash",
        " of", " 1929", " began", " on", " October", " 24", ",",
    ] {
        let tok = format!(
            r#"{{"id":"{id}","object":"chat.completion.chunk","created":1741569952,"model":"gpt-4o-2024-08-06","service_tier":"default","system_fingerprint":"fp_eb9dce56a8","choices":[{{"index":0,"delta":{{"content":"{word}"}},"logprobs":null,"finish_reason":null}}],"usage":null}}"#
        );
        s.push_str(&format!("data: {tok}\n\n"));
    }
    let fin = format!(
        r#"{{"id":"{id}","object":"chat.completion.chunk","created":1741569952,"model":"gpt-4o-2024-08-06","service_tier":"default","system_fingerprint":"fp_eb9dce56a8","choices":[{{"index":0,"delta":{{}},"logprobs":null,"finish_reason":"stop"}}],"usage":null}}"#
    );
    let usage = format!(
        r#"{{"id":"{id}","object":"chat.completion.chunk","created":1741569952,"model":"gpt-4o-2024-08-06","service_tier":"default","system_fingerprint":"fp_eb9dce56a8","choices":[],"usage":{{"prompt_tokens":19,"completion_tokens":18,"total_tokens":37,"prompt_tokens_details":{{"cached_tokens":0,"audio_tokens":0}},"completion_tokens_details":{{"reasoning_tokens":0,"audio_tokens":0,"accepted_prediction_tokens":0,"rejected_prediction_tokens":0}}}}}}"#
    );
    s.push_str(&format!("data: {fin}\n\ndata: {usage}\n\ndata: [DONE]\n\n"));
    s
}

fn fixture_dir() -> Option<PathBuf> {
    let manifest = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    [
        manifest.join("../../shared/reference/fixtures"),
        manifest.join("../shared/reference/fixtures"),
        manifest.join("tests/fixtures"),
    ]
    .into_iter()
    .find(|d| d.join("anthropic-basic.sse").is_file())
}

/// Cut a whole stream into raw events with the splitter itself (so a fixture's
/// missing final blank line is handled as the proxy handles it).
fn events_of(src: &[u8]) -> Vec<Bytes> {
    let mut sp = Splitter::new(Framing::Sse);
    let mut evs = sp.push(&Bytes::copy_from_slice(src));
    evs.extend(sp.finish());
    evs
}

/// Stretch a stream to about `TARGET_EVENTS` events: its events before the first
/// content event, its content events repeated in order, its events after the last.
fn stretch(api: ApiKind, endpoint: Endpoint, src: &[u8]) -> (Bytes, usize) {
    let evs = events_of(src);
    let content: Vec<bool> = evs
        .iter()
        .map(|e| inspect(api, endpoint, Framing::Sse, e).is_content())
        .collect();
    let first = content
        .iter()
        .position(|c| *c)
        .expect("fixture has content events");
    let last = content.iter().rposition(|c| *c).unwrap();
    let head = &evs[..first];
    let body: Vec<&Bytes> = evs[first..=last]
        .iter()
        .zip(&content[first..=last])
        .filter(|(_, c)| **c)
        .map(|(e, _)| e)
        .collect();
    let tail = &evs[last + 1..];
    let n_body = TARGET_EVENTS.saturating_sub(head.len() + tail.len()).max(1);
    let mut out = Vec::new();
    let end_with_blank = |out: &mut Vec<u8>, e: &Bytes| {
        out.extend_from_slice(e);
        // The fixtures' last event has no blank line after it; events in the middle
        // of the stretched stream need one.
        if !e.ends_with(b"\n\n") && !e.ends_with(b"\r\n\r\n") {
            if e.ends_with(b"\n") {
                out.push(b'\n');
            } else {
                out.extend_from_slice(b"\n\n");
            }
        }
    };
    for e in head {
        end_with_blank(&mut out, e);
    }
    for i in 0..n_body {
        end_with_blank(&mut out, body[i % body.len()]);
    }
    for e in tail {
        end_with_blank(&mut out, e);
    }
    let bytes = Bytes::from(out);
    let n = events_of(&bytes).len();
    (bytes, n)
}

fn chunks(stream: &Bytes, per_event: bool) -> Vec<Bytes> {
    if per_event {
        events_of(stream)
    } else {
        (0..stream.len())
            .step_by(1024)
            .map(|i| stream.slice(i..(i + 1024).min(stream.len())))
            .collect()
    }
}

/// The no-fault path: split, classify, measure. Returns the content events seen.
fn tap(api: ApiKind, endpoint: Endpoint, frames: &[Bytes], t0: Instant) -> u64 {
    let mut sp = Splitter::new(Framing::Sse);
    let mut meter = StreamMeter::new(t0);
    let mut now = t0;
    for f in frames {
        now += Duration::from_millis(2);
        for ev in sp.push(f) {
            let info = inspect(api, endpoint, Framing::Sse, &ev);
            meter.observe(&info, now);
        }
    }
    if let Some(rest) = sp.finish() {
        let info = inspect(api, endpoint, Framing::Sse, &rest);
        meter.observe(&info, now);
    }
    assert!(meter.saw_terminator());
    meter.content_events()
}

/// The shaping path. Returns the bytes that would go to the client.
fn shape(
    api: ApiKind,
    endpoint: Endpoint,
    frames: &[Bytes],
    faults: &[FaultSpec],
    t0: Instant,
) -> usize {
    let mut plan = StreamPlan::new().with_model(Some("gpt-4o-mini".into()));
    for f in faults {
        assert!(plan.push(0, f));
    }
    let mut shaper = Shaper::new(api, endpoint, Framing::Sse, plan, rng_for(7, 1, 0));
    let mut sp = Splitter::new(Framing::Sse);
    let mut meter = StreamMeter::new(t0);
    let mut now = t0;
    let mut sent = 0usize;
    let mut carry_out = |actions: Vec<brownout_faults::stream::Action>, meter: &mut StreamMeter| {
        for a in actions {
            if let brownout_faults::stream::Action::Emit { bytes, at } = a {
                let info = inspect(api, endpoint, Framing::Sse, &bytes);
                meter.observe(&info, at);
                sent += bytes.len();
            }
        }
    };
    for f in frames {
        now += Duration::from_millis(2);
        for ev in sp.push(f) {
            let info = inspect(api, endpoint, Framing::Sse, &ev);
            carry_out(shaper.on_event(ev, &info, now), &mut meter);
        }
    }
    if let Some(rest) = sp.finish() {
        let info = inspect(api, endpoint, Framing::Sse, &rest);
        carry_out(shaper.on_event(rest, &info, now), &mut meter);
    }
    carry_out(shaper.on_end(now), &mut meter);
    sent
}

/// Fault lists, loaded through the profile loader like a real profile's.
fn faults(yaml_faults: &str) -> Vec<FaultSpec> {
    let y = format!(
        "version: 1\nname: bench\nrules:\n  - name: r\n    match: {{stream: true}}\n    faults:\n{yaml_faults}"
    );
    let p = load_profile(&y, "bench.yaml").unwrap_or_else(|d| panic!("{d:?}\n{y}"));
    p.rules[0].faults.clone()
}

fn bench_stream(c: &mut Criterion) {
    let dir = fixture_dir();
    let mut inputs: Vec<(&str, ApiKind, Endpoint, Vec<u8>)> = vec![(
        "openai-chat",
        ApiKind::Openai,
        Endpoint::Chat,
        openai_fixture().into_bytes(),
    )];
    match &dir {
        Some(d) => {
            for (name, file) in [
                ("anthropic-basic", "anthropic-basic.sse"),
                ("anthropic-tool-use", "anthropic-tool-use.sse"),
            ] {
                let src = std::fs::read(d.join(file)).expect("read fixture");
                inputs.push((name, ApiKind::Anthropic, Endpoint::Messages, src));
            }
        }
        None => eprintln!("stream bench: no Anthropic fixtures found; OpenAI only"),
    }
    let timing = faults("      - type: token_delay\n        duration: 5ms\n");
    let content = faults(
        "      - type: garble\n        fraction: 0.2\n      - type: token_delay\n        duration: 5ms\n",
    );
    let t0 = Instant::now();
    let mut g = c.benchmark_group("stream");
    for (name, api, endpoint, src) in &inputs {
        let (stream, n_events) = stretch(*api, *endpoint, src);
        let per_event = chunks(&stream, true);
        let k1 = chunks(&stream, false);
        let tokens = tap(*api, *endpoint, &per_event, t0);
        assert_eq!(tap(*api, *endpoint, &k1, t0), tokens);
        assert_eq!(
            shape(*api, *endpoint, &per_event, &timing, t0),
            stream.len()
        );
        eprintln!(
            "stream bench input {name}: {n_events} events ({tokens} content), {} bytes",
            stream.len()
        );
        g.throughput(Throughput::Bytes(stream.len() as u64));
        let size = (n_events, stream.len());
        for (chunking, frames) in [("per_event", &per_event), ("1k", &k1)] {
            let id = BenchmarkId::new(format!("tap/{chunking}"), format!("{name}-{n_events}ev"));
            let key = format!("tap/{chunking}/{name}");
            g.bench_with_input(id, frames, |b, frames| {
                b.iter_custom(|iters| {
                    timed(&key, size, iters, || {
                        black_box(tap(*api, *endpoint, black_box(frames), t0));
                    })
                })
            });
        }
        for (label, fs) in [("token_delay", &timing), ("garble+token_delay", &content)] {
            let id = BenchmarkId::new(
                format!("shape/{label}/per_event"),
                format!("{name}-{n_events}ev"),
            );
            let key = format!("shape/{label}/per_event/{name}");
            g.bench_with_input(id, &per_event, |b, frames| {
                b.iter_custom(|iters| {
                    timed(&key, size, iters, || {
                        black_box(shape(*api, *endpoint, black_box(frames), fs, t0));
                    })
                })
            });
        }
    }
    g.finish();
}

/// Every timed run per benchmark: (events, bytes) per stream, iterations, time.
type Tally = Vec<(String, (usize, usize), u64, Duration)>;
static TALLY: Mutex<Tally> = Mutex::new(Vec::new());

/// Runs `f` `iters` times and adds the run to the tally (criterion's samples and
/// warm-up alike), so the summary can give events/s and MB/s side by side.
fn timed(key: &str, size: (usize, usize), iters: u64, mut f: impl FnMut()) -> Duration {
    let t = std::time::Instant::now();
    for _ in 0..iters {
        f();
    }
    let d = t.elapsed();
    TALLY
        .lock()
        .unwrap()
        .push((key.to_string(), size, iters, d));
    d
}

fn summary() {
    let tally = TALLY.lock().unwrap();
    let mut keys: Vec<&String> = Vec::new();
    for (k, ..) in tally.iter() {
        if !keys.contains(&k) {
            keys.push(k);
        }
    }
    if keys.is_empty() {
        return;
    }
    println!("\n| benchmark | events/stream | bytes/stream | µs/stream | events/s | MB/s |");
    println!("|---|---:|---:|---:|---:|---:|");
    for k in keys {
        let rows: Vec<_> = tally.iter().filter(|r| &r.0 == k).collect();
        let (events, bytes) = rows[0].1;
        let iters: u64 = rows.iter().map(|r| r.2).sum();
        let secs: f64 = rows.iter().map(|r| r.3.as_secs_f64()).sum();
        let per = secs / iters.max(1) as f64;
        println!(
            "| {k} | {events} | {bytes} | {:.1} | {:.0} | {:.1} |",
            per * 1e6,
            events as f64 / per,
            bytes as f64 / per / 1e6
        );
    }
    println!("(means over criterion's warm-up and samples; MB = 10^6 bytes)");
}

criterion_group!(benches, bench_stream);

fn main() {
    benches();
    Criterion::default().configure_from_args().final_summary();
    summary();
}
