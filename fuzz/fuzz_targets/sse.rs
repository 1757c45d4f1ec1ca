//! LLM streams: splitter, classifier, meter, shaper and the JSON content rewrite.
//!
//! Properties checked on arbitrary bodies cut into arbitrary chunks:
//! - the splitter returns every byte exactly once, in order, whatever the chunking;
//! - while no event outgrows the cap, the events do not depend on the chunking;
//! - with no fault planned, the shaper's output is the input byte for byte, then `End`;
//! - with arbitrary stream/content faults, nothing panics, instants never go back,
//!   and nothing is emitted after `End`/`Reset`;
//! - `rewrite_json` leaves the body alone unless a fault applied, and an edited JSON
//!   body stays JSON.
#![no_main]

#[path = "../common/mod.rs"]
mod common;

use std::time::Duration;

use brownout_faults::stream::{
    framing_for, inspect, rewrite_json, Action, Framing, Shaper, Splitter, StreamMeter,
    StreamPlan, DEFAULT_MAX_EVENT,
};
use brownout_faults::stream::shape::sse_event_name;
use bytes::Bytes;
use libfuzzer_sys::arbitrary::Unstructured;
use libfuzzer_sys::fuzz_target;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use tokio::time::Instant;

use common::*;

fn split_all(framing: Framing, max_event: usize, body: &[u8], cuts: &[usize]) -> (Vec<Bytes>, u64) {
    let mut s = Splitter::with_max_event(framing, max_event);
    let mut events = Vec::new();
    let mut prev = 0;
    for &c in cuts.iter().chain(std::iter::once(&body.len())) {
        let chunk = Bytes::copy_from_slice(&body[prev..c]);
        for ev in s.push(&chunk) {
            assert!(!ev.is_empty(), "the splitter returned an empty event");
            events.push(ev);
        }
        prev = c;
    }
    if let Some(last) = s.finish() {
        assert!(!last.is_empty());
        events.push(last);
    }
    assert_eq!(s.pending(), 0, "bytes held after finish");
    (events, s.oversized())
}

fn concat(events: &[Bytes]) -> Vec<u8> {
    events.iter().flat_map(|e| e.iter().copied()).collect()
}

/// Run a shaper over the events; returns the emitted bytes and whether it ended.
fn shape(
    shaper: &mut Shaper,
    events: &[Bytes],
    infos: &[brownout_faults::stream::EventInfo],
    t0: Instant,
    step: Duration,
    api: brownout_faults::api::ApiKind,
    endpoint: brownout_faults::api::Endpoint,
    framing: Framing,
) -> (Vec<u8>, Vec<Action>) {
    let mut actions = Vec::new();
    let mut now = t0;
    for (ev, info) in events.iter().zip(infos) {
        actions.extend(shaper.on_event(ev.clone(), info, now));
        now += step;
    }
    actions.extend(shaper.on_end(now));
    let mut out = Vec::new();
    let mut last_at = t0;
    let mut ended = false;
    let mut meter = StreamMeter::new(t0);
    for a in &actions {
        assert!(!ended, "an action after End/Reset: {a:?}");
        match a {
            Action::Emit { bytes, at } => {
                assert!(*at >= last_at, "emit instants went backwards");
                last_at = *at;
                out.extend_from_slice(bytes);
                // The proxy re-inspects what it sends and meters it.
                let info = inspect(api, endpoint, framing, bytes);
                meter.observe(&info, *at);
            }
            Action::Stall { until } => {
                if let Some(u) = until {
                    assert!(*u >= t0);
                }
            }
            Action::End | Action::Reset => ended = true,
        }
    }
    let _ = (meter.ttft(), meter.itl(), meter.output_tokens(), meter.tpot(last_at));
    let _ = (shaper.applied(), shaper.not_applied(), shaper.is_done());
    (out, actions)
}

fuzz_target!(|data: &[u8]| {
    let (header, body) = split_input(data);
    let mut u = Unstructured::new(header);
    let Ok(framing) = u.arbitrary::<bool>().map(|b| if b { Framing::Ndjson } else { Framing::Sse })
    else {
        return;
    };
    let api = pick(&mut u, &APIS).unwrap_or(APIS[0]);
    let endpoint = pick(&mut u, &ENDPOINTS).unwrap_or(ENDPOINTS[0]);
    let max_event = match u.int_in_range(0u8..=3).unwrap_or(0) {
        0 | 1 => DEFAULT_MAX_EVENT,
        _ => usize::from(u.int_in_range(1u8..=64).unwrap_or(1)),
    };
    let cuts = cuts(&mut u, body.len()).unwrap_or_default();
    let seed: u64 = u.arbitrary().unwrap_or(0);
    let step = Duration::from_millis(u64::from(u.arbitrary::<u8>().unwrap_or(10)));
    let mut plan = StreamPlan::new().with_model(Some("m".into()));
    let n_faults = u.int_in_range(0u8..=4).unwrap_or(0);
    for i in 0..n_faults {
        match stream_fault(&mut u) {
            Ok(f) => {
                plan.push(usize::from(i), &f);
            }
            Err(_) => break,
        }
    }

    let _ = framing_for(api, endpoint, std::str::from_utf8(header).ok());

    // 1. Splitting: every byte once, in order.
    let (events, oversized) = split_all(framing, max_event, body, &cuts);
    assert_eq!(concat(&events), body, "the splitter changed the bytes");
    // 2. Events independent of the chunking (while the cap never fired).
    let (whole, whole_oversized) = split_all(framing, max_event, body, &[]);
    if oversized == 0 && whole_oversized == 0 {
        assert_eq!(events, whole, "events depend on where the chunks were cut");
    }

    // 3. Classify and measure every event.
    let t0 = Instant::now();
    let mut meter = StreamMeter::new(t0);
    let mut now = t0;
    let infos: Vec<_> = events
        .iter()
        .map(|ev| {
            let info = inspect(api, endpoint, framing, ev);
            meter.observe(&info, now);
            now += step;
            let _ = sse_event_name(ev);
            info
        })
        .collect();
    let _ = (
        meter.ttft(),
        meter.itl(),
        meter.output_tokens(),
        meter.content_events(),
        meter.input_tokens(),
        meter.finish_reason(),
        meter.tpot(now),
        meter.saw_terminator(),
        meter.saw_error(),
    );

    // 4. Pass-through: no fault, the output is the input, then End.
    let mut idle = Shaper::new(api, endpoint, framing, StreamPlan::new(), ChaCha8Rng::seed_from_u64(seed));
    let (out, actions) = shape(&mut idle, &events, &infos, t0, step, api, endpoint, framing);
    assert_eq!(out, body, "an empty plan changed the stream");
    assert_eq!(actions.last(), Some(&Action::End));
    assert!(idle.applied().is_empty());

    // 5. Faults: no panic, ordered instants, nothing after the end.
    if !plan.is_empty() {
        let mut shaper = Shaper::new(api, endpoint, framing, plan.clone(), ChaCha8Rng::seed_from_u64(seed));
        let _ = shape(&mut shaper, &events, &infos, t0, step, api, endpoint, framing);
    }

    // 6. The same body as one non-streamed JSON answer.
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    if let Ok(r) = rewrite_json(api, endpoint, body, &StreamPlan::new(), &mut rng) {
        assert_eq!(&r.body[..], body, "rewrite_json with no fault changed the body");
    }
    if let Ok(r) = rewrite_json(api, endpoint, body, &plan, &mut rng) {
        if r.applied.is_empty() {
            assert_eq!(&r.body[..], body, "rewrite_json changed the body but reports nothing applied");
        } else {
            assert!(
                serde_json::from_slice::<serde_json::Value>(&r.body).is_ok(),
                "rewrite_json made invalid JSON: {:?}",
                String::from_utf8_lossy(&r.body)
            );
        }
    }
});
