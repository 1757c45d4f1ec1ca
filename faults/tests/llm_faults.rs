//! Golden tests for the LLM-aware fault types: each parses to the value it should,
//! and each constraint fails at the right `line:column` with a hint.

use std::time::Duration;

use brownout_faults::fault;
use brownout_faults::profile::{CorruptMode, FaultSpec, Profile, TruncateEnding};
use brownout_faults::validate::load_profile;
use brownout_faults::Dist;

mod common;
use common::{check_fault_error as check, fault_errors as errors, one_fault, HEAD};

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

#[test]
fn every_llm_fault_parses() {
    let cases: Vec<(&str, FaultSpec)> = vec![
        ("{type: first_token_delay, duration: 2s}", FaultSpec::FirstTokenDelay(fault::FirstTokenDelay { duration: Dist::Fixed(ms(2000)) })),
        ("{type: token_delay, duration: {uniform: [10ms, 50ms]}}", FaultSpec::TokenDelay(fault::TokenDelay { duration: Dist::Uniform(ms(10), ms(50)) })),
        ("{type: token_rate, tokens_per_second: 2.5}", FaultSpec::TokenRate(fault::TokenRate { tokens_per_second: 2.5 })),
        ("{type: token_rate, tokens_per_second: 5}", FaultSpec::TokenRate(fault::TokenRate { tokens_per_second: 5.0 })),
        ("{type: stall, after_tokens: 20, duration: 10s}", FaultSpec::Stall(fault::Stall { after_tokens: 20, duration: Some(Dist::Fixed(ms(10_000))), forever: false })),
        ("{type: stall, after_tokens: 0, forever: true}", FaultSpec::Stall(fault::Stall { after_tokens: 0, duration: None, forever: true })),
        ("{type: truncate, after_tokens: 5}", FaultSpec::Truncate(fault::Truncate { after_tokens: 5, ending: TruncateEnding::NoTerminator })),
        ("{type: truncate, after_tokens: 5, ending: clean}", FaultSpec::Truncate(fault::Truncate { after_tokens: 5, ending: TruncateEnding::Clean })),
        ("{type: truncate, after_tokens: 5, ending: reset}", FaultSpec::Truncate(fault::Truncate { after_tokens: 5, ending: TruncateEnding::Reset })),
        ("{type: stream_error, after_tokens: 3}", FaultSpec::StreamError(fault::StreamError { after_tokens: 3, preset: None })),
        ("{type: stream_error, after_tokens: 3, preset: anthropic.overloaded}", FaultSpec::StreamError(fault::StreamError { after_tokens: 3, preset: Some("anthropic.overloaded".into()) })),
        ("{type: corrupt, rate: 0.05, mode: invalid_json}", FaultSpec::Corrupt(fault::Corrupt { rate: 0.05, mode: CorruptMode::InvalidJson })),
        ("{type: corrupt, rate: 1, mode: drop_event}", FaultSpec::Corrupt(fault::Corrupt { rate: 1.0, mode: CorruptMode::DropEvent })),
        ("{type: corrupt, rate: 0.5, mode: duplicate_event}", FaultSpec::Corrupt(fault::Corrupt { rate: 0.5, mode: CorruptMode::DuplicateEvent })),
        ("{type: corrupt, rate: 0.5, mode: bad_utf8}", FaultSpec::Corrupt(fault::Corrupt { rate: 0.5, mode: CorruptMode::BadUtf8 })),
        ("{type: garble, fraction: 0.3}", FaultSpec::Garble(fault::Garble { fraction: 0.3 })),
        ("{type: empty_completion}", FaultSpec::EmptyCompletion(fault::EmptyCompletion {})),
        ("{type: finish_reason, value: length}", FaultSpec::FinishReason(fault::FinishReason { value: "length".into() })),
        ("{type: rate_limit, requests_per_minute: 60}", FaultSpec::RateLimit(fault::RateLimit { requests_per_minute: Some(60), tokens_per_minute: None, by: None, preset: None })),
        ("{type: rate_limit, tokens_per_minute: 30000, by: 'header:authorization', preset: openai.rate_limit_tokens}", FaultSpec::RateLimit(fault::RateLimit { requests_per_minute: None, tokens_per_minute: Some(30000), by: Some("header:authorization".into()), preset: Some("openai.rate_limit_tokens".into()) })),
    ];
    for (yaml, want) in cases {
        let got = one_fault(yaml);
        assert_eq!(got, want, "{yaml}");
        assert!(yaml.contains(got.kind()), "{yaml}");
    }
    // A bare name works for a fault without fields, as for `reset`.
    let src = format!("{HEAD}rules:\n  - faults: [empty_completion]\n");
    let p: Profile = load_profile(&src, "p.yaml").unwrap();
    assert_eq!(
        p.rules[0].faults[0],
        FaultSpec::EmptyCompletion(fault::EmptyCompletion {})
    );
}

#[test]
fn families() {
    let f = one_fault("{type: truncate, after_tokens: 1}");
    assert!(f.is_stream_fault() && !f.is_content_fault() && !f.is_request_fault());
    let f = one_fault("{type: garble, fraction: 0.1}");
    assert!(!f.is_stream_fault() && f.is_content_fault() && !f.is_request_fault());
    let f = one_fault("{type: rate_limit, requests_per_minute: 1}");
    assert!(f.is_request_fault() && !f.is_stream_fault());
    let f = one_fault("{type: bandwidth, bytes_per_second: 1}");
    assert!(!f.is_request_fault() && !f.is_stream_fault() && !f.is_content_fault());
}

#[test]
fn constraint_errors_have_positions_and_hints() {
    check(
        "{type: token_rate, tokens_per_second: 0}",
        "0}",
        "`tokens_per_second` must be above zero",
        "stall",
    );
    check(
        "{type: stall, after_tokens: 3}",
        "{",
        "needs `duration` or `forever: true`",
        "forever: true",
    );
    check(
        "{type: stall, after_tokens: 3, duration: 1s, forever: true}",
        "true",
        "not both",
        "drop",
    );
    check(
        "{type: corrupt, rate: 0, mode: drop_event}",
        "0,",
        "`rate` 0 is not above 0",
        "at most 1",
    );
    check(
        "{type: corrupt, rate: 5, mode: drop_event}",
        "5,",
        "`rate` 5",
        "for 5% write 0.05",
    );
    check(
        "{type: garble, fraction: 1.5}",
        "1.5",
        "`fraction` 1.5",
        "fraction",
    );
    check(
        "{type: finish_reason, value: ''}",
        "''",
        "the finish reason is empty",
        "length",
    );
    check(
        "{type: stream_error, after_tokens: 1, preset: anthropic.overload}",
        "anthropic",
        "unknown error preset `anthropic.overload`",
        "anthropic.overloaded",
    );
    check(
        "{type: rate_limit, by: global}",
        "{",
        "needs `requests_per_minute` or `tokens_per_minute`",
        "requests_per_minute: 60",
    );
    check(
        "{type: rate_limit, requests_per_minute: 0}",
        "0}",
        "`requests_per_minute` must be at least 1",
        "error",
    );
    check(
        "{type: rate_limit, requests_per_minute: 5, by: cookie}",
        "cookie",
        "`by: cookie`",
        "header:NAME",
    );
    check(
        "{type: rate_limit, requests_per_minute: 5, preset: openai.nope}",
        "openai",
        "unknown error preset",
        "openai.",
    );
    check(
        "{type: token_delay, duration: {uniform: [2s, 1s]}}",
        "[2s",
        "uniform bounds are reversed",
        "low bound first",
    );
}

#[test]
fn serde_level_errors() {
    let errs = errors("{type: truncate, after_tokens: 1, ending: abrupt}");
    assert!(errs[0].message.contains("abrupt"), "{}", errs[0]);
    assert!(
        errs[0]
            .hint
            .as_deref()
            .unwrap_or("")
            .contains("no_terminator"),
        "{:?}",
        errs[0].hint
    );
    let errs = errors("{type: corrupt, rate: 0.1}");
    assert!(errs[0].message.contains("mode"), "{}", errs[0]);
    let errs = errors("{type: stall, after: 3, forever: true}");
    assert!(
        errs[0].message.contains("unknown field `after`"),
        "{}",
        errs[0]
    );
    assert!(
        errs[0]
            .hint
            .as_deref()
            .unwrap_or("")
            .contains("after_tokens"),
        "{:?}",
        errs[0].hint
    );
    let errs = errors("{type: tokens_delay, duration: 1s}");
    assert!(
        errs[0]
            .hint
            .as_deref()
            .unwrap_or("")
            .contains("did you mean `token_delay`"),
        "{:?}",
        errs[0].hint
    );
}
