//! `Shaper`: every stream and content fault on OpenAI, Anthropic and Ollama streams,
//! with exact timings under paused time (arrival instants are passed in, so the
//! `at` of each action is checked to the nanosecond).

mod common;

use std::time::Duration;

use brownout_faults::fault;
use brownout_faults::profile::{CorruptMode, FaultSpec, TruncateEnding};
use brownout_faults::stream::{inspect, Action, EventKind, Framing, Shaper, Splitter, StreamPlan};
use brownout_faults::{ApiKind, Dist, Endpoint};
use bytes::Bytes;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use tokio::time::Instant;

use common::*;

const GAP: Duration = Duration::from_millis(10);

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

struct Stream {
    api: ApiKind,
    endpoint: Endpoint,
    framing: Framing,
    events: Vec<Bytes>,
}

impl Stream {
    fn new(api: ApiKind, endpoint: Endpoint, framing: Framing, input: &[u8]) -> Self {
        let mut s = Splitter::new(framing);
        let mut events = s.push(&Bytes::copy_from_slice(input));
        events.extend(s.finish());
        Stream {
            api,
            endpoint,
            framing,
            events,
        }
    }
    fn openai(input: &[u8]) -> Self {
        Self::new(ApiKind::Openai, Endpoint::Chat, Framing::Sse, input)
    }
    fn anthropic(input: &[u8]) -> Self {
        Self::new(ApiKind::Anthropic, Endpoint::Messages, Framing::Sse, input)
    }
    fn kind(&self, raw: &[u8]) -> EventKind {
        inspect(self.api, self.endpoint, self.framing, raw).kind
    }
}

struct Run {
    t0: Instant,
    actions: Vec<Action>,
    shaper: Shaper,
}

impl Run {
    /// Emitted events with their offsets from the start.
    fn emitted(&self) -> Vec<(Bytes, Duration)> {
        self.actions
            .iter()
            .filter_map(|a| match a {
                Action::Emit { bytes, at } => Some((bytes.clone(), *at - self.t0)),
                _ => None,
            })
            .collect()
    }
    fn bytes(&self) -> Vec<u8> {
        self.emitted()
            .iter()
            .flat_map(|(b, _)| b.to_vec())
            .collect()
    }
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.bytes()).into_owned()
    }
    fn last(&self) -> &Action {
        self.actions.last().unwrap()
    }
    fn applied(&self) -> Vec<&'static str> {
        self.shaper.applied().iter().map(|(_, k)| *k).collect()
    }
}

/// Feed every event, the i-th arriving at t0 + i·GAP, then the end.
fn run(stream: &Stream, faults: &[FaultSpec], seed: u64) -> Run {
    let mut plan = StreamPlan::new().with_model(Some("m".into()));
    for f in faults {
        assert!(plan.push(0, f));
    }
    let mut shaper = Shaper::new(
        stream.api,
        stream.endpoint,
        stream.framing,
        plan,
        ChaCha8Rng::seed_from_u64(seed),
    );
    let t0 = Instant::now();
    let mut actions = Vec::new();
    let mut last = t0;
    for (i, raw) in stream.events.iter().enumerate() {
        last = t0 + GAP * i as u32;
        let info = inspect(stream.api, stream.endpoint, stream.framing, raw);
        actions.extend(shaper.on_event(raw.clone(), &info, last));
    }
    actions.extend(shaper.on_end(last));
    // Invariant: emission instants never go backwards.
    let ats: Vec<Instant> = actions
        .iter()
        .filter_map(|a| match a {
            Action::Emit { at, .. } => Some(*at),
            _ => None,
        })
        .collect();
    assert!(ats.windows(2).all(|w| w[0] <= w[1]), "{ats:?}");
    Run {
        t0,
        actions,
        shaper,
    }
}

fn content_times(stream: &Stream, r: &Run) -> Vec<Duration> {
    r.emitted()
        .iter()
        .filter(|(b, _)| stream.kind(b) == EventKind::Content)
        .map(|(_, t)| *t)
        .collect()
}

fn fixed(d: Duration) -> Dist {
    Dist::Fixed(d)
}

#[tokio::test(start_paused = true)]
async fn no_faults_passes_every_event_unchanged_and_on_time() {
    for stream in [
        Stream::openai(&openai_chat("\n")),
        Stream::openai(&openai_chat("\r\n")),
        Stream::anthropic(ANTHROPIC_BASIC),
        Stream::anthropic(ANTHROPIC_TOOL_USE),
        Stream::new(
            ApiKind::Ollama,
            Endpoint::Chat,
            Framing::Ndjson,
            &ollama_chat(),
        ),
    ] {
        let r = run(&stream, &[], 1);
        let out = r.emitted();
        assert_eq!(out.len(), stream.events.len());
        for (i, ((b, t), orig)) in out.iter().zip(&stream.events).enumerate() {
            assert_eq!(b.as_ptr(), orig.as_ptr(), "event {i} was copied");
            assert_eq!(b, orig);
            assert_eq!(*t, GAP * i as u32);
        }
        assert_eq!(r.last(), &Action::End);
        assert!(r.shaper.applied().is_empty());
    }
}

#[tokio::test(start_paused = true)]
async fn first_token_delay_holds_the_first_token_and_keeps_order() {
    let s = Stream::openai(&openai_chat("\n"));
    let r = run(
        &s,
        &[FaultSpec::FirstTokenDelay(fault::FirstTokenDelay {
            duration: fixed(ms(500)),
        })],
        1,
    );
    let out = r.emitted();
    assert_eq!(out[0].1, ms(0), "the role chunk is not held");
    // The first token arrived at 10ms and leaves at 510ms; tokens that arrived
    // meanwhile follow at once, in order.
    assert_eq!(content_times(&s, &r), [ms(510), ms(510), ms(510)]);
    assert_eq!(out.last().unwrap().1, ms(510));
    assert_eq!(r.applied(), ["first_token_delay"]);
    assert_eq!(r.bytes(), openai_chat("\n"));

    let a = Stream::anthropic(ANTHROPIC_BASIC);
    let r = run(
        &a,
        &[FaultSpec::FirstTokenDelay(fault::FirstTokenDelay {
            duration: fixed(ms(300)),
        })],
        1,
    );
    assert_eq!(content_times(&a, &r), [ms(330), ms(330), ms(330)]);
    assert_eq!(r.bytes(), ANTHROPIC_BASIC);
}

#[tokio::test(start_paused = true)]
async fn token_delay_adds_to_every_gap_after_the_first() {
    let s = Stream::openai(&openai_chat("\n"));
    let r = run(
        &s,
        &[FaultSpec::TokenDelay(fault::TokenDelay {
            duration: fixed(ms(50)),
        })],
        1,
    );
    // Tokens arrive at 10, 20, 30ms: 10; max(20, 10) + 50; max(30, 70) + 50.
    assert_eq!(content_times(&s, &r), [ms(10), ms(70), ms(120)]);
    assert_eq!(
        r.emitted().last().unwrap().1,
        ms(120),
        "later events keep order"
    );
    assert_eq!(r.applied(), ["token_delay"]);
}

#[tokio::test(start_paused = true)]
async fn token_rate_paces_tokens() {
    let a = Stream::anthropic(ANTHROPIC_TOOL_USE);
    let r = run(
        &a,
        &[FaultSpec::TokenRate(fault::TokenRate {
            tokens_per_second: 10.0,
        })],
        1,
    );
    // Six tokens arriving 10ms apart, at most one per 100ms.
    let first = content_times(&a, &r)[0];
    assert_eq!(first, ms(30));
    let want: Vec<Duration> = (0..6).map(|i| first + ms(100) * i).collect();
    assert_eq!(content_times(&a, &r), want);
    assert_eq!(r.applied(), ["token_rate"]);
    // A rate slower than the upstream never bites and is not reported.
    let r = run(
        &a,
        &[FaultSpec::TokenRate(fault::TokenRate {
            tokens_per_second: 1000.0,
        })],
        1,
    );
    assert!(r.applied().is_empty());
}

#[tokio::test(start_paused = true)]
async fn stall_for_a_while_then_resume() {
    let s = Stream::openai(&openai_chat("\n"));
    let stall = FaultSpec::Stall(fault::Stall {
        after_tokens: 2,
        duration: Some(fixed(ms(1000))),
        forever: false,
    });
    let r = run(&s, &[stall], 1);
    // The third token arrived at 30ms: a barrier until 1030ms, then it and the rest.
    let barrier = r.t0 + ms(1030);
    assert!(r.actions.contains(&Action::Stall {
        until: Some(barrier)
    }));
    assert_eq!(content_times(&s, &r), [ms(10), ms(20), ms(1030)]);
    assert_eq!(r.bytes(), openai_chat("\n"));
    assert_eq!(r.last(), &Action::End);
}

#[tokio::test(start_paused = true)]
async fn stall_forever_is_a_barrier_with_everything_queued_behind_it() {
    let s = Stream::openai(&openai_chat("\n"));
    let stall = FaultSpec::Stall(fault::Stall {
        after_tokens: 1,
        duration: None,
        forever: true,
    });
    let r = run(&s, &[stall], 1);
    let pos = r
        .actions
        .iter()
        .position(|a| a == &Action::Stall { until: None })
        .unwrap();
    let before: usize = r.actions[..pos]
        .iter()
        .filter(|a| matches!(a, Action::Emit { bytes, .. } if s.kind(bytes) == EventKind::Content))
        .count();
    assert_eq!(before, 1, "exactly one token goes out before the stall");
    // Behind the barrier: the rest, unchanged, then End (for when it is released).
    assert_eq!(r.bytes(), openai_chat("\n"));
    assert_eq!(r.last(), &Action::End);
    assert_eq!(r.applied(), ["stall"]);
}

#[tokio::test(start_paused = true)]
async fn truncate_endings_openai() {
    for eol in ["\n", "\r\n"] {
        let s = Stream::openai(&openai_chat(eol));
        let clean = run(
            &s,
            &[FaultSpec::Truncate(fault::Truncate {
                after_tokens: 2,
                ending: TruncateEnding::Clean,
            })],
            1,
        );
        let text = clean.text();
        assert_eq!(content_times(&s, &clean).len(), 2);
        assert!(text.ends_with(&format!("data: [DONE]{eol}{eol}")), "{text}");
        assert!(!text.contains("are you today"));
        assert_eq!(clean.last(), &Action::End);
        assert_eq!(
            clean.emitted().last().unwrap().1,
            ms(30),
            "cut when the third token arrives"
        );

        let bare = run(
            &s,
            &[FaultSpec::Truncate(fault::Truncate {
                after_tokens: 2,
                ending: TruncateEnding::NoTerminator,
            })],
            1,
        );
        assert!(!bare.text().contains("[DONE]"));
        assert_eq!(content_times(&s, &bare).len(), 2);
        assert_eq!(bare.last(), &Action::End);
        assert!(bare.shaper.is_done());

        let reset = run(
            &s,
            &[FaultSpec::Truncate(fault::Truncate {
                after_tokens: 0,
                ending: TruncateEnding::Reset,
            })],
            1,
        );
        assert_eq!(content_times(&s, &reset).len(), 0);
        assert_eq!(reset.last(), &Action::Reset);
        assert_eq!(reset.applied(), ["truncate"]);
    }
}

#[tokio::test(start_paused = true)]
async fn truncate_clean_anthropic_closes_the_block_and_message() {
    let a = Stream::anthropic(ANTHROPIC_BASIC);
    let r = run(
        &a,
        &[FaultSpec::Truncate(fault::Truncate {
            after_tokens: 1,
            ending: TruncateEnding::Clean,
        })],
        1,
    );
    let text = r.text();
    assert!(text.ends_with(
        "event: content_block_stop\ndata: {\"type\":\"content_block_stop\",\"index\":0}\n\n\
         event: message_delta\ndata: {\"type\":\"message_delta\",\"delta\":{\"stop_reason\":\"end_turn\",\"stop_sequence\":null},\"usage\":{\"output_tokens\":1}}\n\n\
         event: message_stop\ndata: {\"type\":\"message_stop\"}\n\n"
    ), "{text}");
    // What the client got is a well-formed stream: re-split, every event parses.
    let again = Stream::anthropic(text.as_bytes());
    let kinds: Vec<EventKind> = again.events.iter().map(|e| again.kind(e)).collect();
    assert!(!kinds.contains(&EventKind::Other), "{kinds:?}");
    assert_eq!(kinds.last(), Some(&EventKind::Terminator));
}

#[tokio::test(start_paused = true)]
async fn truncate_beyond_the_stream_never_applies() {
    let s = Stream::openai(&openai_chat("\n"));
    let r = run(
        &s,
        &[FaultSpec::Truncate(fault::Truncate {
            after_tokens: 3,
            ending: TruncateEnding::Reset,
        })],
        1,
    );
    assert_eq!(r.bytes(), openai_chat("\n"));
    assert!(r.applied().is_empty());
    assert_eq!(r.shaper.not_applied(), [(0, "truncate")]);
}

#[tokio::test(start_paused = true)]
async fn stream_error_uses_the_providers_event_shape() {
    let s = Stream::openai(&openai_chat("\n"));
    let r = run(
        &s,
        &[FaultSpec::StreamError(fault::StreamError {
            after_tokens: 1,
            preset: None,
        })],
        1,
    );
    let (last, _) = r.emitted().last().unwrap().clone();
    let text = String::from_utf8(last.to_vec()).unwrap();
    assert!(text.starts_with("data: {\"error\":{"), "{text}");
    assert!(text.contains("server_error"), "{text}");
    assert!(text.ends_with("\n\n"));
    assert_eq!(s.kind(&last), EventKind::Error);
    assert_eq!(content_times(&s, &r).len(), 1);
    assert_eq!(r.last(), &Action::End);

    let a = Stream::anthropic(ANTHROPIC_BASIC);
    let r = run(
        &a,
        &[FaultSpec::StreamError(fault::StreamError {
            after_tokens: 2,
            preset: None,
        })],
        1,
    );
    let (last, _) = r.emitted().last().unwrap().clone();
    let text = String::from_utf8(last.to_vec()).unwrap();
    assert!(
        text.starts_with(
            "event: error\ndata: {\"type\":\"error\",\"error\":{\"type\":\"overloaded_error\""
        ),
        "{text}"
    );
    assert_eq!(a.kind(&last), EventKind::Error);
    assert_eq!(content_times(&a, &r).len(), 2);

    // An explicit preset, framed like the stream it lands in (CRLF kept).
    let s = Stream::openai(&openai_chat("\r\n"));
    let r = run(
        &s,
        &[FaultSpec::StreamError(fault::StreamError {
            after_tokens: 0,
            preset: Some("openai.rate_limit_tokens".into()),
        })],
        1,
    );
    let text = r.text();
    assert!(
        text.contains("data: {\"error\":") && text.ends_with("\r\n\r\n"),
        "{text}"
    );
    assert!(text.contains("rate_limit_exceeded"), "{text}");
}

#[tokio::test(start_paused = true)]
async fn ollama_endings() {
    let o = Stream::new(
        ApiKind::Ollama,
        Endpoint::Chat,
        Framing::Ndjson,
        &ollama_chat(),
    );
    let r = run(
        &o,
        &[FaultSpec::Truncate(fault::Truncate {
            after_tokens: 1,
            ending: TruncateEnding::Clean,
        })],
        1,
    );
    let text = r.text();
    let last = text.lines().last().unwrap();
    let v: serde_json::Value = serde_json::from_str(last).unwrap();
    assert_eq!(v["done"], true);
    assert_eq!(v["model"], "m");
    assert_eq!(v["message"]["content"], "");
    let r = run(
        &o,
        &[FaultSpec::StreamError(fault::StreamError {
            after_tokens: 1,
            preset: None,
        })],
        1,
    );
    let last = r.text().lines().last().unwrap().to_string();
    assert!(last.contains("server busy"), "{last}");
}

/// Tokens, Other (unparsable) events and non-UTF-8 events in what the client got.
fn damage(stream: &Stream, r: &Run) -> (usize, usize, usize) {
    let out = r.emitted();
    let tokens = out
        .iter()
        .filter(|(b, _)| stream.kind(b) == EventKind::Content)
        .count();
    let other = out
        .iter()
        .filter(|(b, _)| stream.kind(b) == EventKind::Other)
        .count();
    let bad = out
        .iter()
        .filter(|(b, _)| std::str::from_utf8(b).is_err())
        .count();
    (tokens, other, bad)
}

#[tokio::test(start_paused = true)]
async fn corrupt_modes_at_about_their_rate() {
    let s = Stream::openai(&openai_long(2000));
    let corrupt = |mode| [FaultSpec::Corrupt(fault::Corrupt { rate: 0.1, mode })];
    let near = |n: usize, want: usize| n.abs_diff(want) <= 60;

    let r = run(&s, &corrupt(CorruptMode::DropEvent), 3);
    let (tokens, _, _) = damage(&s, &r);
    assert!(near(tokens, 1800), "{tokens}");
    assert_eq!(r.applied(), ["corrupt"]);

    let r = run(&s, &corrupt(CorruptMode::DuplicateEvent), 3);
    let (tokens, _, _) = damage(&s, &r);
    assert!(near(tokens, 2200), "{tokens}");

    let r = run(&s, &corrupt(CorruptMode::InvalidJson), 3);
    let (tokens, other, _) = damage(&s, &r);
    assert!(near(other, 200), "{other}");
    assert_eq!(tokens + other, 2000);
    // The framing survives: every event is still `data: ...\n\n`.
    assert!(r
        .emitted()
        .iter()
        .all(|(b, _)| b.starts_with(b"data: ") && b.ends_with(b"\n\n")));

    let r = run(&s, &corrupt(CorruptMode::BadUtf8), 3);
    let (_, _, bad) = damage(&s, &r);
    assert!(near(bad, 200), "{bad}");

    // Same seed, same damage.
    assert_eq!(
        run(&s, &corrupt(CorruptMode::BadUtf8), 3).bytes(),
        r.bytes()
    );
    assert_ne!(
        run(&s, &corrupt(CorruptMode::BadUtf8), 4).bytes(),
        r.bytes()
    );
}

#[tokio::test(start_paused = true)]
async fn bad_utf8_splits_a_multibyte_character() {
    let s = Stream::openai(&openai_chat("\n"));
    let r = run(
        &s,
        &[FaultSpec::Corrupt(fault::Corrupt {
            rate: 1.0,
            mode: CorruptMode::BadUtf8,
        })],
        1,
    );
    let out = r.emitted();
    // " wörld, how": the ö (C3 B6) loses its continuation byte.
    let w = &out[2].0;
    assert!(std::str::from_utf8(w).is_err());
    assert!(w.windows(3).any(|x| x == b"w\xC3r"), "{w:?}");
    // ASCII-only text gets a lone continuation byte.
    assert!(
        out[1].0.windows(2).any(|x| x == b"\"\x80"),
        "{:?}",
        out[1].0
    );
    // Non-token events are never touched.
    assert_eq!(out[0].0, s.events[0]);
}

#[tokio::test(start_paused = true)]
async fn garble_keeps_json_valid_and_whitespace() {
    let s = Stream::openai(&openai_chat("\n"));
    let r = run(&s, &[FaultSpec::Garble(fault::Garble { fraction: 1.0 })], 1);
    let out = r.emitted();
    for (b, _) in &out[1..4] {
        assert_eq!(s.kind(b), EventKind::Content);
        let json: serde_json::Value = serde_json::from_slice(&b[6..b.len() - 2]).unwrap();
        let text = json["choices"][0]["delta"]["content"]
            .as_str()
            .unwrap()
            .to_string();
        assert!(!text.contains("Hello") && !text.contains("today"), "{text}");
        assert_eq!(
            text.chars().filter(|c| c.is_whitespace()).count(),
            text.split_whitespace().count() - usize::from(!text.starts_with(' ')),
            "{text}"
        );
    }
    assert_eq!(r.applied(), ["garble"]);
    // About half the words at 0.5.
    let long = Stream::openai(&openai_long(1000));
    let r = run(
        &long,
        &[FaultSpec::Garble(fault::Garble { fraction: 0.5 })],
        9,
    );
    let kept = r.text().matches("\"tok").count();
    assert!(kept.abs_diff(500) < 60, "{kept}");
    // Anthropic text deltas too.
    let a = Stream::anthropic(ANTHROPIC_BASIC);
    let r = run(&a, &[FaultSpec::Garble(fault::Garble { fraction: 1.0 })], 1);
    assert!(!r.text().contains("\"Hello\""));
    assert_eq!(damage(&a, &r).0, 3);
}

#[tokio::test(start_paused = true)]
async fn empty_completion_drops_tokens_keeps_the_rest() {
    for s in [
        Stream::openai(&openai_chat("\n")),
        Stream::anthropic(ANTHROPIC_TOOL_USE),
    ] {
        let r = run(
            &s,
            &[FaultSpec::EmptyCompletion(fault::EmptyCompletion {})],
            1,
        );
        let (tokens, other, _) = damage(&s, &r);
        assert_eq!((tokens, other), (0, 0));
        let n_content = s
            .events
            .iter()
            .filter(|e| s.kind(e) == EventKind::Content)
            .count();
        assert_eq!(r.emitted().len(), s.events.len() - n_content);
        assert_eq!(r.applied(), ["empty_completion"]);
    }
}

#[tokio::test(start_paused = true)]
async fn finish_reason_is_rewritten() {
    let s = Stream::openai(&openai_chat("\n"));
    let r = run(
        &s,
        &[FaultSpec::FinishReason(fault::FinishReason {
            value: "length".into(),
        })],
        1,
    );
    let text = r.text();
    assert!(text.contains("\"finish_reason\":\"length\""), "{text}");
    assert!(!text.contains("\"finish_reason\":\"stop\""));
    assert_eq!(
        text.matches("\"finish_reason\":null").count(),
        4,
        "nulls untouched"
    );
    assert_eq!(r.applied(), ["finish_reason"]);

    let a = Stream::anthropic(ANTHROPIC_BASIC);
    let r = run(
        &a,
        &[FaultSpec::FinishReason(fault::FinishReason {
            value: "max_tokens".into(),
        })],
        1,
    );
    assert!(r.text().contains("\"stop_reason\":\"max_tokens\""));
    // A clean truncation reports the wanted reason too.
    let r = run(
        &a,
        &[
            FaultSpec::FinishReason(fault::FinishReason {
                value: "max_tokens".into(),
            }),
            FaultSpec::Truncate(fault::Truncate {
                after_tokens: 1,
                ending: TruncateEnding::Clean,
            }),
        ],
        1,
    );
    assert!(r.text().contains("\"stop_reason\":\"max_tokens\""));
}

#[tokio::test(start_paused = true)]
async fn faults_combine_in_order_and_release_turns_them_off() {
    let s = Stream::openai(&openai_long(50));
    let faults = [
        FaultSpec::FirstTokenDelay(fault::FirstTokenDelay {
            duration: fixed(ms(100)),
        }),
        FaultSpec::Stall(fault::Stall {
            after_tokens: 5,
            duration: Some(fixed(ms(200))),
            forever: false,
        }),
        FaultSpec::Truncate(fault::Truncate {
            after_tokens: 10,
            ending: TruncateEnding::Clean,
        }),
    ];
    let r = run(&s, &faults, 1);
    let times = content_times(&s, &r);
    assert_eq!(times.len(), 10);
    assert_eq!(times[0], ms(110));
    // Tokens 2-5 queued behind the held first one (110ms); the stall starts from
    // there, not from the sixth token's arrival at 60ms.
    assert_eq!(times[..5], [ms(110); 5]);
    assert_eq!(times[5], ms(110) + ms(200));
    assert_eq!(r.applied(), ["first_token_delay", "stall", "truncate"]);

    // Released before the stream: everything passes unchanged.
    let mut plan = StreamPlan::new();
    for f in &faults {
        plan.push(1, f);
    }
    let mut sh = Shaper::new(
        ApiKind::Openai,
        Endpoint::Chat,
        Framing::Sse,
        plan,
        ChaCha8Rng::seed_from_u64(1),
    );
    sh.release();
    let t0 = Instant::now();
    let mut out = Vec::new();
    for raw in &s.events {
        let info = inspect(ApiKind::Openai, Endpoint::Chat, Framing::Sse, raw);
        for a in sh.on_event(raw.clone(), &info, t0) {
            match a {
                Action::Emit { bytes, at } => {
                    assert_eq!(at, t0);
                    out.extend_from_slice(&bytes);
                }
                other => panic!("{other:?}"),
            }
        }
    }
    assert_eq!(out, openai_long(50));
    assert!(sh.applied().is_empty());
}

#[test]
fn plan_takes_only_stream_and_content_faults() {
    let mut plan = StreamPlan::new();
    assert!(!plan.push(
        0,
        &FaultSpec::Delay(fault::Delay {
            duration: fixed(ms(1))
        })
    ));
    assert!(plan.is_empty());
    assert!(plan.push(0, &FaultSpec::Garble(fault::Garble { fraction: 0.5 })));
    assert!(!plan.has_stream_faults());
    assert!(plan.push(
        2,
        &FaultSpec::TokenRate(fault::TokenRate {
            tokens_per_second: 1.0
        })
    ));
    assert!(plan.has_stream_faults());
    let kinds: Vec<(usize, &str)> = plan.faults().map(|(r, f)| (r, f.kind())).collect();
    assert_eq!(kinds, [(0, "garble"), (2, "token_rate")]);
}
