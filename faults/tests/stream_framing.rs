//! `Splitter`: whatever the chunking, events come out whole and byte-identical.

mod common;

use brownout_faults::stream::{framing_for, Framing, Splitter};
use brownout_faults::{ApiKind, Endpoint};
use bytes::Bytes;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use common::*;

/// Split `input` at the given cut points and run it through a splitter.
fn run(framing: Framing, input: &[u8], cuts: &[usize], max: usize) -> (Vec<Bytes>, Splitter) {
    let mut s = Splitter::with_max_event(framing, max);
    let mut out = Vec::new();
    let mut at = 0;
    for &c in cuts.iter().chain(std::iter::once(&input.len())) {
        let chunk = Bytes::copy_from_slice(&input[at..c]);
        out.extend(s.push(&chunk));
        at = c;
    }
    out.extend(s.finish());
    (out, s)
}

fn whole(framing: Framing, input: &[u8]) -> Vec<Bytes> {
    run(framing, input, &[], usize::MAX).0
}

fn concat(events: &[Bytes]) -> Vec<u8> {
    events.iter().flat_map(|e| e.iter().copied()).collect()
}

/// Every single cut point and every pair of cut points (a sample for long inputs)
/// yields the same events as the unsplit input.
fn every_boundary(framing: Framing, input: &[u8]) {
    let reference = whole(framing, input);
    assert_eq!(concat(&reference), input);
    for c in 0..=input.len() {
        let (got, _) = run(framing, input, &[c], usize::MAX);
        assert_eq!(got, reference, "cut at {c}");
    }
    // One byte at a time.
    let all: Vec<usize> = (1..input.len()).collect();
    let (got, _) = run(framing, input, &all, usize::MAX);
    assert_eq!(got, reference, "byte by byte");
}

fn random_splits(framing: Framing, input: &[u8], cases: usize, seed: u64) {
    let reference = whole(framing, input);
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    for case in 0..cases {
        let n = rng.random_range(0..input.len().min(40));
        let mut cuts: Vec<usize> = (0..n).map(|_| rng.random_range(0..=input.len())).collect();
        cuts.sort_unstable();
        let (got, _) = run(framing, input, &cuts, usize::MAX);
        assert_eq!(got, reference, "case {case}: cuts {cuts:?}");
    }
}

#[test]
fn anthropic_fixtures_split_anywhere() {
    for fx in [ANTHROPIC_BASIC, ANTHROPIC_TOOL_USE] {
        let events = whole(Framing::Sse, fx);
        // Events end at blank lines; the last has no terminator (fixture style).
        assert!(events[..events.len() - 1]
            .iter()
            .all(|e| e.ends_with(b"\n\n")));
        assert_eq!(
            events.last().unwrap().as_ref(),
            b"event: message_stop\ndata: {\"type\":\"message_stop\"}"
        );
        every_boundary(Framing::Sse, fx);
        random_splits(Framing::Sse, fx, 2000, 7);
    }
    assert_eq!(whole(Framing::Sse, ANTHROPIC_BASIC).len(), 9);
    assert_eq!(whole(Framing::Sse, ANTHROPIC_TOOL_USE).len(), 15);
}

#[test]
fn openai_streams_split_anywhere_lf_crlf_cr() {
    for eol in ["\n", "\r\n", "\r"] {
        let input = openai_chat(eol);
        let events = whole(Framing::Sse, &input);
        assert_eq!(events.len(), 7, "{eol:?}");
        let term = format!("{eol}{eol}");
        assert!(
            events.iter().all(|e| e.ends_with(term.as_bytes())),
            "{eol:?}"
        );
        every_boundary(Framing::Sse, &input);
        random_splits(Framing::Sse, &input, 2000, 11);
    }
}

#[test]
fn ndjson_split_anywhere() {
    let input = ollama_chat();
    let events = whole(Framing::Ndjson, &input);
    assert_eq!(events.len(), 3);
    every_boundary(Framing::Ndjson, &input);
    random_splits(Framing::Ndjson, &input, 2000, 13);
    // A last line without `\n` comes out of finish().
    let cut = &input[..input.len() - 1];
    let events = whole(Framing::Ndjson, cut);
    assert_eq!(events.len(), 3);
    assert_eq!(concat(&events), cut);
}

#[test]
fn comments_and_extra_blank_lines_pass_through() {
    let input = b": keep-alive\n\n\n\ndata: {\"a\":1}\r\n\r\n\ndata: x\n\n";
    let events = whole(Framing::Sse, input);
    assert_eq!(concat(&events), input);
    assert_eq!(events[0].as_ref(), b": keep-alive\n\n");
    every_boundary(Framing::Sse, input);
}

#[test]
fn complete_events_in_one_chunk_are_not_copied() {
    let input = Bytes::from(openai_chat("\n"));
    let mut s = Splitter::new(Framing::Sse);
    let events = s.push(&input);
    assert_eq!(events.len(), 7);
    let base = input.as_ptr() as usize;
    let range = base..base + input.len();
    assert!(events
        .iter()
        .all(|e| range.contains(&(e.as_ptr() as usize))));
}

#[test]
fn a_huge_event_is_passed_on_in_pieces() {
    let mut input = b"data: ".to_vec();
    input.extend(std::iter::repeat_n(b'a', 10_000));
    input.extend_from_slice(b"\n\ndata: [DONE]\n\n");
    let mut rng = ChaCha8Rng::seed_from_u64(3);
    for _ in 0..200 {
        let mut cuts: Vec<usize> = (0..rng.random_range(0..30))
            .map(|_| rng.random_range(0..=input.len()))
            .collect();
        cuts.sort_unstable();
        let (got, s) = run(Framing::Sse, &input, &cuts, 1000);
        assert_eq!(concat(&got), input);
        assert!(s.pending() == 0);
        assert_eq!(got.last().unwrap().as_ref(), b"data: [DONE]\n\n");
    }
    // Small chunks: the event is passed on in pieces of about the cap.
    let cuts: Vec<usize> = (100..input.len()).step_by(100).collect();
    let (got, s) = run(Framing::Sse, &input, &cuts, 1000);
    assert_eq!(concat(&got), input);
    assert!(s.oversized() >= 9, "{}", s.oversized());
    assert!(got.iter().all(|e| e.len() <= 1100));
    // The pending buffer never grows far past the cap.
    let mut s = Splitter::with_max_event(Framing::Sse, 1000);
    for _ in 0..100 {
        let _ = s.push(&Bytes::from_static(&[b'x'; 700]));
        assert!(s.pending() < 1000);
    }
}

#[test]
fn garbage_never_panics_and_round_trips() {
    let mut rng = ChaCha8Rng::seed_from_u64(99);
    for case in 0..3000 {
        let len = rng.random_range(0..300);
        let input: Vec<u8> = (0..len)
            .map(|_| match rng.random_range(0..6) {
                0 => b'\n',
                1 => b'\r',
                2 => b':',
                _ => rng.random(),
            })
            .collect();
        for framing in [Framing::Sse, Framing::Ndjson] {
            let mut cuts: Vec<usize> = (0..rng.random_range(0..10))
                .map(|_| rng.random_range(0..=input.len()))
                .collect();
            cuts.sort_unstable();
            let max = rng.random_range(1..64);
            let (got, _) = run(framing, &input, &cuts, max);
            assert_eq!(concat(&got), input, "case {case}");
            let reference = whole(framing, &input);
            if max == usize::MAX {
                assert_eq!(got, reference);
            }
            let (unbounded, _) = run(framing, &input, &cuts, usize::MAX);
            assert_eq!(
                unbounded, reference,
                "case {case}: events independent of chunking"
            );
        }
    }
}

#[test]
fn framing_from_content_type_then_api() {
    use ApiKind::*;
    use Endpoint::*;
    assert_eq!(
        framing_for(Openai, Chat, Some("text/event-stream; charset=utf-8")),
        Some(Framing::Sse)
    );
    assert_eq!(
        framing_for(Ollama, Chat, Some("application/x-ndjson")),
        Some(Framing::Ndjson)
    );
    assert_eq!(
        framing_for(Ollama, Chat, Some("text/event-stream")),
        Some(Framing::Sse)
    );
    assert_eq!(
        framing_for(Tgi, Completion, Some("text/event-stream")),
        Some(Framing::Sse)
    );
    assert_eq!(framing_for(Openai, Chat, Some("application/json")), None);
    assert_eq!(framing_for(Ollama, Completion, None), Some(Framing::Ndjson));
    assert_eq!(framing_for(Tgi, Completion, None), Some(Framing::Sse));
    assert_eq!(framing_for(Anthropic, Messages, None), Some(Framing::Sse));
    assert_eq!(framing_for(Openai, Embeddings, None), None);
    assert_eq!(framing_for(Qdrant, Search, None), None);
}
