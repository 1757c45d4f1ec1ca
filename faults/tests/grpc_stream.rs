//! gRPC streams through the stream machinery: `Framing::Grpc` cuts exactly at
//! message boundaries whatever the chunking, `inspect` makes each message a token
//! (a Triton `error_message` an error, a compressed message flagged), and the
//! shaper's timing, stall and truncate faults act between whole messages without
//! ever writing SSE text into a gRPC body.

use std::time::Duration;

use brownout_faults::fault;
use brownout_faults::grpc::{frame, triton};
use brownout_faults::profile::{CorruptMode, FaultSpec, TruncateEnding};
use brownout_faults::stream::{
    framing_for, inspect, Action, EventKind, Framing, Shaper, Splitter, StreamPlan,
};
use brownout_faults::{ApiKind, Dist, Endpoint};
use bytes::Bytes;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use tokio::time::Instant;

fn body(payloads: &[&[u8]]) -> Vec<u8> {
    payloads
        .iter()
        .flat_map(|p| frame::encode(p, false).to_vec())
        .collect()
}

fn split(input: &[u8], cuts: &[usize], max: usize) -> (Vec<Bytes>, Splitter) {
    let mut s = Splitter::with_max_event(Framing::Grpc, max);
    let mut out = Vec::new();
    let mut last = 0;
    for &c in cuts.iter().chain(std::iter::once(&input.len())) {
        out.extend(s.push(&Bytes::copy_from_slice(&input[last..c])));
        last = c;
    }
    out.extend(s.finish());
    (out, s)
}

#[test]
fn grpc_content_types_pick_grpc_framing() {
    for ct in [
        "application/grpc",
        "application/grpc+proto",
        "application/grpc+json; x=1",
    ] {
        assert_eq!(
            framing_for(ApiKind::Triton, Endpoint::Completion, Some(ct)),
            Some(Framing::Grpc),
            "{ct}"
        );
        assert_eq!(
            framing_for(ApiKind::Generic, Endpoint::Other, Some(ct)),
            Some(Framing::Grpc)
        );
    }
    assert_eq!(
        framing_for(
            ApiKind::Generic,
            Endpoint::Other,
            Some("application/grpc-web")
        ),
        None
    );
}

#[test]
fn messages_are_cut_exactly_at_every_split_point() {
    let msgs: Vec<Vec<u8>> = vec![
        vec![],
        b"one".to_vec(),
        vec![0xab; 200],
        b"\x0a\x01x".to_vec(),
    ];
    let refs: Vec<&[u8]> = msgs.iter().map(Vec::as_slice).collect();
    let input = body(&refs);
    for a in 0..=input.len() {
        for b in [a, (a + 3).min(input.len()), (a + 100).min(input.len())] {
            let (events, s) = split(&input, &[a, b], 1024);
            assert_eq!(events.len(), 4, "cuts {a} {b}");
            for (e, m) in events.iter().zip(&msgs) {
                assert_eq!(&e[5..], &m[..]);
            }
            assert_eq!(events.concat(), input);
            assert_eq!(s.pending(), 0);
            assert!(!s.broken());
        }
    }
}

#[test]
fn whole_messages_inside_a_chunk_are_zero_copy() {
    let input = Bytes::from(body(&[b"abc", b"defgh"]));
    let mut s = Splitter::new(Framing::Grpc);
    let events = s.push(&input);
    assert_eq!(events.len(), 2);
    assert_eq!(events[1].as_ptr(), input[8..].as_ptr());
}

#[test]
fn oversized_messages_pass_in_pieces_and_framing_resumes_after_them() {
    let big = vec![7u8; 300];
    let input = body(&[b"a", &big, b"b"]);
    let (events, s) = split(&input, &[10, 100, 200], 64);
    assert_eq!(events.concat(), input);
    assert_eq!(s.oversized(), 1);
    assert!(s.pending() <= 64);
    // The small messages either side are still whole events.
    assert_eq!(&events[0][5..], b"a");
    assert_eq!(&events.last().unwrap()[5..], b"b");
    let kinds: Vec<EventKind> = events
        .iter()
        .map(|e| inspect(ApiKind::Generic, Endpoint::Other, Framing::Grpc, e).kind)
        .collect();
    assert_eq!(kinds.first(), Some(&EventKind::Content));
    assert_eq!(kinds.last(), Some(&EventKind::Content));
    assert!(kinds[1..kinds.len() - 1]
        .iter()
        .all(|k| *k == EventKind::Other));
}

#[test]
fn broken_and_truncated_bodies_still_pass_every_byte() {
    let mut input = body(&[b"ok"]);
    input.extend_from_slice(&[9, 0, 0, 0, 1, 0xff, 0xee]);
    let (events, s) = split(&input, &[3, 9], 1024);
    assert!(s.broken());
    assert_eq!(events.concat(), input);
    assert_eq!(&events[0][5..], b"ok");
    // A body that ends inside a message hands the partial bytes on at the end.
    let mut input = body(&[b"ok", b"cut short"]);
    input.truncate(input.len() - 3);
    let (events, _) = split(&input, &[8], 1024);
    assert_eq!(events.concat(), input);
    let last = events.last().unwrap();
    assert_eq!(
        inspect(ApiKind::Generic, Endpoint::Other, Framing::Grpc, last).kind,
        EventKind::Other
    );
    // Garbage never panics.
    let mut x: u32 = 99;
    for n in 0..400usize {
        let junk: Vec<u8> = (0..n)
            .map(|_| {
                x = x.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
                let b = (x >> 24) as u8;
                if n % 2 == 0 {
                    b & 1
                } else {
                    b
                }
            })
            .collect();
        let (events, _) = split(&junk, &[n / 3, n / 2], 48);
        assert_eq!(events.concat(), junk);
        for e in &events {
            let _ = inspect(ApiKind::Triton, Endpoint::Completion, Framing::Grpc, e);
        }
    }
}

#[test]
fn inspect_reads_tokens_errors_and_compression() {
    let ok = frame::encode(b"\x12\x03\x0a\x01x", false);
    let info = inspect(ApiKind::Triton, Endpoint::Completion, Framing::Grpc, &ok);
    assert_eq!(info.kind, EventKind::Content);
    assert!(!info.compressed);
    let err = triton::stream_error_frame(triton::QUEUE_FULL_MESSAGE, "r1");
    assert_eq!(
        inspect(ApiKind::Triton, Endpoint::Completion, Framing::Grpc, &err).kind,
        EventKind::Error
    );
    // Only Triton's streams carry that error field; elsewhere field 1 is data.
    assert_eq!(
        inspect(ApiKind::Generic, Endpoint::Other, Framing::Grpc, &err).kind,
        EventKind::Content
    );
    let z = frame::encode(b"\x1f\x8b\x08", true);
    let info = inspect(ApiKind::Triton, Endpoint::Completion, Framing::Grpc, &z);
    assert_eq!(info.kind, EventKind::Content);
    assert!(info.compressed);
}

// ---------------------------------------------------------------------------
// Shaping
// ---------------------------------------------------------------------------

const GAP: Duration = Duration::from_millis(10);

fn tokens(n: usize) -> Vec<Bytes> {
    (0..n)
        .map(|i| {
            frame::encode(
                format!("\x12\x02\x0a{}", (b'a' + i as u8) as char).as_bytes(),
                false,
            )
        })
        .collect()
}

fn shape(events: &[Bytes], faults: &[FaultSpec]) -> (Instant, Vec<Action>, Shaper) {
    let mut plan = StreamPlan::new();
    for f in faults {
        assert!(plan.push(0, f));
    }
    let mut shaper = Shaper::new(
        ApiKind::Triton,
        Endpoint::Completion,
        Framing::Grpc,
        plan,
        ChaCha8Rng::seed_from_u64(1),
    );
    let t0 = Instant::now();
    let mut actions = Vec::new();
    let mut last = t0;
    for (i, raw) in events.iter().enumerate() {
        last = t0 + GAP * i as u32;
        let info = inspect(ApiKind::Triton, Endpoint::Completion, Framing::Grpc, raw);
        actions.extend(shaper.on_event(raw.clone(), &info, last));
    }
    actions.extend(shaper.on_end(last));
    (t0, actions, shaper)
}

fn emitted(t0: Instant, actions: &[Action]) -> Vec<(Bytes, Duration)> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::Emit { bytes, at } => Some((bytes.clone(), *at - t0)),
            _ => None,
        })
        .collect()
}

#[tokio::test(start_paused = true)]
async fn token_delay_spaces_whole_messages() {
    let ev = tokens(4);
    let (t0, actions, _) = shape(
        &ev,
        &[FaultSpec::TokenDelay(fault::TokenDelay {
            duration: Dist::Fixed(Duration::from_millis(100)),
        })],
    );
    let out = emitted(t0, &actions);
    assert_eq!(out.iter().map(|(b, _)| b.clone()).collect::<Vec<_>>(), ev);
    let times: Vec<u64> = out.iter().map(|(_, t)| t.as_millis() as u64).collect();
    // Each delay counts from the later of its arrival and the previous send.
    assert_eq!(times, vec![0, 110, 210, 310]);
    assert_eq!(actions.last(), Some(&Action::End));
}

#[tokio::test(start_paused = true)]
async fn stall_holds_the_next_message() {
    let ev = tokens(3);
    let (_, actions, _) = shape(
        &ev,
        &[FaultSpec::Stall(fault::Stall {
            after_tokens: 2,
            duration: None,
            forever: true,
        })],
    );
    let pos = actions
        .iter()
        .position(|a| matches!(a, Action::Stall { until: None }))
        .expect("a stall");
    assert_eq!(
        actions[..pos]
            .iter()
            .filter(|a| matches!(a, Action::Emit { .. }))
            .count(),
        2
    );
}

#[tokio::test(start_paused = true)]
async fn truncate_never_writes_sse_into_grpc() {
    let ev = tokens(5);
    for (ending, last) in [
        (TruncateEnding::Clean, Action::End),
        (TruncateEnding::NoTerminator, Action::End),
        (TruncateEnding::Reset, Action::Reset),
    ] {
        let (t0, actions, shaper) = shape(
            &ev,
            &[FaultSpec::Truncate(fault::Truncate {
                after_tokens: 2,
                ending,
            })],
        );
        let out = emitted(t0, &actions);
        assert_eq!(
            out.iter().map(|(b, _)| b.clone()).collect::<Vec<_>>(),
            ev[..2].to_vec()
        );
        assert_eq!(actions.last(), Some(&last), "{ending:?}");
        assert!(shaper.is_done());
    }
}

#[tokio::test(start_paused = true)]
async fn stream_error_on_triton_is_an_in_message_error() {
    let ev = tokens(3);
    let (t0, actions, _) = shape(
        &ev,
        &[FaultSpec::StreamError(fault::StreamError {
            after_tokens: 1,
            preset: None,
        })],
    );
    let out = emitted(t0, &actions);
    assert_eq!(out.len(), 2);
    let m = frame::Message::from_frame(out[1].0.clone()).unwrap();
    assert_eq!(
        triton::stream_error(&m.payload()).as_deref(),
        Some(triton::QUEUE_FULL_MESSAGE)
    );
    assert_eq!(actions.last(), Some(&Action::End));
}

#[tokio::test(start_paused = true)]
async fn drop_and_duplicate_keep_whole_messages() {
    let ev = tokens(6);
    for mode in [CorruptMode::DropEvent, CorruptMode::DuplicateEvent] {
        let (t0, actions, _) = shape(
            &ev,
            &[FaultSpec::Corrupt(fault::Corrupt { rate: 0.5, mode })],
        );
        let joined: Vec<u8> = emitted(t0, &actions)
            .iter()
            .flat_map(|(b, _)| b.to_vec())
            .collect();
        let (again, s) = split(&joined, &[], 1024);
        assert!(!s.broken());
        assert!(again.iter().all(|e| ev.contains(e)), "{mode:?}");
    }
    // Text rewrites have nothing to act on in protobuf: the bytes pass as they were.
    for mode in [CorruptMode::InvalidJson, CorruptMode::BadUtf8] {
        let (t0, actions, _) = shape(
            &ev,
            &[FaultSpec::Corrupt(fault::Corrupt { rate: 1.0, mode })],
        );
        let out: Vec<Bytes> = emitted(t0, &actions).into_iter().map(|(b, _)| b).collect();
        assert_eq!(out, ev, "{mode:?}");
    }
}
