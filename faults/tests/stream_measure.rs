//! `StreamMeter` under paused time: TTFT, ITL, TPOT and token sources.

use std::time::Duration;

use brownout_faults::stream::{EventInfo, EventKind, StreamMeter, TokensSource};
use tokio::time::{advance, Instant};

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

#[tokio::test(start_paused = true)]
async fn ttft_itl_tpot_from_content_events() {
    let start = Instant::now();
    let mut m = StreamMeter::new(start);
    advance(ms(50)).await;
    m.observe(&EventInfo::of(EventKind::Meta), Instant::now()); // role chunk: not TTFT
    advance(ms(150)).await;
    m.observe(&EventInfo::of(EventKind::Content), Instant::now()); // 200ms
    for gap in [10, 20, 30, 40] {
        advance(ms(gap)).await;
        m.observe(&EventInfo::of(EventKind::Content), Instant::now());
    }
    advance(ms(5)).await;
    m.observe(&EventInfo::of(EventKind::Terminator), Instant::now());
    assert_eq!(m.ttft(), Some(ms(200)));
    let itl = m.itl().unwrap();
    assert_eq!((itl.p50, itl.p95, itl.max), (ms(20), ms(40), ms(40)));
    assert_eq!(m.output_tokens(), Some((5, TokensSource::Counted)));
    // e2e 305ms, ttft 200ms: 105ms over 4 gaps.
    let end = Instant::now();
    assert_eq!(end - start, ms(305));
    assert_eq!(m.tpot(end), Some(Duration::from_micros(26_250)));
    assert!(m.saw_terminator());
    assert!(!m.saw_error());
}

#[tokio::test(start_paused = true)]
async fn usage_wins_over_counting_and_is_cumulative() {
    let mut m = StreamMeter::new(Instant::now());
    let mut start = EventInfo::of(EventKind::Meta);
    start.usage_input = Some(11);
    m.observe(&start, Instant::now());
    for _ in 0..3 {
        advance(ms(10)).await;
        m.observe(&EventInfo::of(EventKind::Content), Instant::now());
    }
    let mut delta = EventInfo::of(EventKind::Usage);
    delta.usage_output = Some(6);
    delta.finish_reason = Some("end_turn".into());
    m.observe(&delta, Instant::now());
    assert_eq!(m.output_tokens(), Some((6, TokensSource::Usage)));
    assert_eq!(m.input_tokens(), Some(11));
    assert_eq!(m.content_events(), 3);
    assert_eq!(m.finish_reason(), Some("end_turn"));
    assert_eq!(TokensSource::Usage.as_str(), "usage");
}

#[tokio::test(start_paused = true)]
async fn short_streams_have_no_itl_or_tpot() {
    let mut m = StreamMeter::new(Instant::now());
    assert_eq!(m.ttft(), None);
    assert_eq!(m.output_tokens(), None);
    advance(ms(7)).await;
    m.observe(&EventInfo::of(EventKind::Content), Instant::now());
    m.observe(&EventInfo::of(EventKind::Error), Instant::now());
    assert_eq!(m.ttft(), Some(ms(7)));
    assert_eq!(m.itl(), None);
    assert_eq!(m.tpot(Instant::now()), None);
    assert!(m.saw_error());
}

/// What llama-cpp-python's server sends a stream a newer request interrupts: the
/// role chunk, then `[DONE]`, no choice ever giving a `finish_reason`. Cut short;
/// the same stream with its finish chunk is not, nor is an Anthropic stream.
#[tokio::test(start_paused = true)]
async fn done_without_a_finish_reason_ended_unfinished() {
    use brownout_faults::stream::{inspect, Framing};
    use brownout_faults::{ApiKind, Endpoint};
    let ev = |raw: &str| {
        inspect(
            ApiKind::Openai,
            Endpoint::Chat,
            Framing::Sse,
            raw.as_bytes(),
        )
    };
    let role = "data: {\"id\": \"chatcmpl-6\", \"object\": \"chat.completion.chunk\", \"choices\": [{\"index\": 0, \"delta\": {\"role\": \"assistant\"}, \"logprobs\": null, \"finish_reason\": null}]}\n\n";
    let finish = "data: {\"id\": \"chatcmpl-6\", \"object\": \"chat.completion.chunk\", \"choices\": [{\"index\": 0, \"delta\": {}, \"logprobs\": null, \"finish_reason\": \"length\"}]}\n\n";
    let done = "data: [DONE]\n\n";
    let mut cut = StreamMeter::new(Instant::now());
    for raw in [role, done] {
        cut.observe(&ev(raw), Instant::now());
    }
    assert!(cut.saw_terminator());
    assert!(cut.ended_unfinished());
    let mut whole = StreamMeter::new(Instant::now());
    for raw in [role, finish, done] {
        whole.observe(&ev(raw), Instant::now());
    }
    assert!(!whole.ended_unfinished());
    assert_eq!(whole.finish_reason(), Some("length"));
    // Still running: not ended, so not "ended unfinished" either.
    let mut open = StreamMeter::new(Instant::now());
    open.observe(&ev(role), Instant::now());
    assert!(!open.ended_unfinished());
    // Anthropic has no choices: its end is message_stop.
    let mut a = StreamMeter::new(Instant::now());
    a.observe(
        &inspect(
            ApiKind::Anthropic,
            Endpoint::Messages,
            Framing::Sse,
            b"event: message_stop\ndata: {\"type\":\"message_stop\"}\n\n",
        ),
        Instant::now(),
    );
    assert!(a.saw_terminator() && !a.ended_unfinished());
}
