//! `brownout explain`: a profile in plain words.
//!
//! A profile is a small program that will hurt real traffic; reading it back in
//! sentences ("for chat requests to models matching gpt-4o*, with probability ramping
//! from 5% to 40% …") is the cheapest review before a game day, and catches a `match`
//! that is broader or narrower than intended.

use std::fmt::Write as _;
use std::time::Duration;

use crate::duration::format_duration;
use crate::fault::words::{percent, trim_num};
use crate::profile::{FaultSpec, Match, Phase, Probability, Profile, Rule, Schedule, SchedulePer};

/// Describe what the profile will do, phase by phase.
pub fn explain(profile: &Profile) -> String {
    let mut out = String::new();
    let _ = write!(out, "Profile `{}`", profile.name);
    match &profile.description {
        Some(d) if !d.trim().is_empty() => {
            let _ = writeln!(out, ": {}", d.trim());
        }
        _ => out.push_str(".\n"),
    }
    match profile.seed {
        Some(seed) => {
            let _ = writeln!(
                out,
                "Seed {seed}: the same sequence of requests gets the same decisions on every run \
                 (`--seed`, BROWNOUT_SEED or the config's `seed` override it)."
            );
        }
        None => out.push_str(
            "No seed in the profile: decisions use the seed from `--seed`, BROWNOUT_SEED or the config.\n",
        ),
    }
    if let Some(start) = &profile.start_at {
        let _ = writeln!(
            out,
            "The phase clock starts at {start} (`start_at`), so every proxy using this profile changes phase at the same moment."
        );
    } else if !profile.phases.is_empty() {
        out.push_str("The phase clock starts when the profile is applied.\n");
    }
    if let Some(exp) = profile.expires_after {
        let _ = writeln!(
            out,
            "Faults turn off by themselves {} after the profile is applied (`expires_after`), as with the kill switch.",
            format_duration(exp.0)
        );
    }
    out.push_str(
        "Health probes (GET or HEAD of .../health, healthz, readyz, livez, ready, live, ping, metrics, heartbeat) \
         pass untouched by every rule whose `path` does not name them.\n",
    );
    out.push('\n');

    if profile.rules.is_empty() {
        if profile.phases.is_empty() {
            out.push_str("No rules: every request passes through untouched.\n");
        }
    } else {
        out.push_str(if profile.phases.is_empty() {
            "Always (no phases):\n"
        } else {
            "In every phase:\n"
        });
        for (i, rule) in profile.rules.iter().enumerate() {
            let _ = writeln!(
                out,
                "  - {}.",
                rule_sentence(rule, &rule_name(rule, i, None), false)
            );
        }
        out.push('\n');
    }

    let mut start = Duration::ZERO;
    let last = profile.phases.len().saturating_sub(1);
    for (pi, phase) in profile.phases.iter().enumerate() {
        let end = start + phase.duration.0;
        let when = if pi == last {
            format!(
                "{}, from {} on; being the last phase, it stays active after {}",
                format_duration(phase.duration.0),
                clock(start),
                clock(end)
            )
        } else {
            format!(
                "{}, from {} to {}",
                format_duration(phase.duration.0),
                clock(start),
                clock(end)
            )
        };
        let _ = write!(out, "Phase {} `{}` ({when}):", pi + 1, phase.name);
        phase_body(&mut out, phase, !profile.rules.is_empty());
        start = end;
    }
    out
}

fn phase_body(out: &mut String, phase: &Phase, has_global: bool) {
    let extra = if has_global {
        " beyond the rules for every phase"
    } else {
        ""
    };
    match phase.rules.as_slice() {
        [] => {
            let _ = writeln!(out, " no faults{extra}.");
        }
        [rule] => {
            let _ = writeln!(
                out,
                " {}.",
                rule_sentence(rule, &rule_name(rule, 0, Some(&phase.name)), true)
            );
        }
        rules => {
            out.push('\n');
            for (i, rule) in rules.iter().enumerate() {
                let _ = writeln!(
                    out,
                    "  - {}.",
                    rule_sentence(rule, &rule_name(rule, i, Some(&phase.name)), true)
                );
            }
        }
    }
}

fn rule_name(rule: &Rule, index: usize, phase: Option<&str>) -> String {
    match (&rule.name, phase) {
        (Some(n), _) => n.clone(),
        (None, None) => format!("rule-{}", index + 1),
        (None, Some(p)) => format!("{p}-{}", index + 1),
    }
}

/// `0:30`, `1:30`, `1:02:03`; sub-second offsets fall back to `1.5s`.
fn clock(d: Duration) -> String {
    if d.subsec_nanos() != 0 {
        return format_duration(d);
    }
    let s = d.as_secs();
    if s >= 3600 {
        format!("{}:{:02}:{:02}", s / 3600, (s % 3600) / 60, s % 60)
    } else {
        format!("{}:{:02}", s / 60, s % 60)
    }
}

/// `1st`, `2nd`, `3rd`, `4th`, `11th`, `22nd`.
fn nth(n: u64) -> String {
    let suffix = match (n % 10, n % 100) {
        (_, 11..=13) => "th",
        (1, _) => "st",
        (2, _) => "nd",
        (3, _) => "rd",
        _ => "th",
    };
    format!("{n}{suffix}")
}

/// What a `schedule` fires for, and what it counts from.
fn schedule_words(schedule: &Schedule, in_phase: bool) -> String {
    let since = if in_phase {
        "counted from the start of the phase"
    } else {
        "counted from when the profile is applied"
    };
    let plural = |n: u64, one: &str, many: &str| {
        if n == 1 {
            one.to_string()
        } else {
            format!("{n} {many}")
        }
    };
    const CALL: &str = "a call's attempts are numbered by its x-stainless-retry-count; \
                        without one, requests with the same x-brownout-seq, or the same request \
                        from the same client within a minute, are one call's attempts";
    match (schedule.per, schedule.first, schedule.every) {
        (SchedulePer::Rule, Some(n), _) => format!(
            ", for the first {} only, then never ({since})",
            plural(n, "matching request", "matching requests")
        ),
        (SchedulePer::Rule, None, Some(1)) => ", every time (every matching request)".to_string(),
        (SchedulePer::Rule, None, Some(n)) => {
            format!(", for every {} matching request ({since})", nth(n))
        }
        (SchedulePer::Call, Some(n), _) => format!(
            ", for the first {} of every call, so a call that retries gets through on its {} attempt ({CALL})",
            plural(n, "attempt", "attempts"),
            nth(n + 1)
        ),
        (SchedulePer::Call, None, Some(1)) => {
            ", every time (every attempt of every call)".to_string()
        }
        (SchedulePer::Call, None, Some(n)) => {
            format!(", for every {} attempt of each call ({CALL})", nth(n))
        }
        (_, None, None) => ", never (a schedule without `first` or `every`)".to_string(),
    }
}

fn rule_sentence(rule: &Rule, name: &str, in_phase: bool) -> String {
    let mut s = format!("rule `{name}` — {}", match_words(&rule.matches));
    if let Some(schedule) = &rule.schedule {
        s.push_str(&schedule_words(schedule, in_phase));
    } else {
        probability_words(&mut s, &rule.probability);
    }
    if let Some(max) = rule.max_active {
        let _ = write!(s, ", at most {max} at once");
        if rule.schedule.is_some() {
            s.push_str(" (a turn that finds it at its cap is skipped, not passed on)");
        }
    }
    rule_tail(s, rule)
}

fn probability_words(s: &mut String, probability: &Probability) {
    match *probability {
        Probability::Fixed(p) if p >= 1.0 => s.push_str(", every time"),
        Probability::Fixed(p) if p <= 0.0 => s.push_str(", never (probability 0)"),
        Probability::Fixed(p) => {
            let _ = write!(s, ", with probability {}", percent(p));
        }
        Probability::Ramp { from, to } => {
            let _ = write!(
                s,
                ", with probability ramping from {} to {}",
                percent(from),
                percent(to)
            );
        }
    }
}

fn rule_tail(mut s: String, rule: &Rule) -> String {
    if rule.mark == Some(false) {
        s.push_str(", without the x-brownout-fault header");
    }
    s.push_str(": ");
    let faults: Vec<String> = rule.faults.iter().map(fault_words).collect();
    s.push_str(&faults.join(", then "));
    let terminal = rule.faults.iter().position(FaultSpec::is_terminal);
    if let Some(t) = terminal {
        if t + 1 < rule.faults.len() {
            let _ = write!(
                s,
                " (`{}` ends the exchange, so the faults listed after it never apply)",
                rule.faults[t].kind()
            );
        }
    }
    s
}

fn match_words(m: &Match) -> String {
    let mut adjectives = Vec::new();
    match m.stream {
        Some(true) => adjectives.push("streaming".to_string()),
        Some(false) => adjectives.push("non-streaming".to_string()),
        None => {}
    }
    if let Some(method) = &m.method {
        adjectives.push(method.to_ascii_uppercase());
    }
    let noun = match m.endpoint {
        Some(e) => format!("{} requests", enum_name(&e)),
        None => "requests".to_string(),
    };
    let mut words = if adjectives.is_empty() && m == &Match::default() {
        "for every request".to_string()
    } else {
        format!("for {}", [adjectives, vec![noun]].concat().join(" "))
    };
    if let Some(l) = &m.listener {
        let _ = write!(words, " on listener `{l}`");
    }
    if let Some(api) = &m.api {
        let _ = write!(words, " to the {} API", enum_name(api));
    }
    if let Some(p) = &m.path {
        let _ = write!(words, " to paths matching {p}");
    }
    if let Some(model) = &m.model {
        let _ = write!(words, " to models matching {model}");
    }
    for (h, v) in &m.headers {
        let _ = write!(words, " with header {h} matching {v}");
    }
    if let Some(r) = &m.prompt_tokens {
        match (r.min, r.max) {
            (Some(a), Some(b)) => {
                let _ = write!(words, " with prompts of {a} to {b} tokens (estimated)");
            }
            (Some(a), None) => {
                let _ = write!(words, " with prompts of at least {a} tokens (estimated)");
            }
            (None, Some(b)) => {
                let _ = write!(words, " with prompts of at most {b} tokens (estimated)");
            }
            (None, None) => {}
        }
    }
    if let Some(c) = &m.clients {
        let by = match c.by.as_deref() {
            Some(b) => match b.strip_prefix("header:") {
                Some(h) => format!("by the {h} header"),
                None => "by client IP".to_string(),
            },
            None => "by client IP".to_string(),
        };
        let _ = write!(
            words,
            " from a sticky {}% of clients (chosen {by})",
            trim_num(c.percent)
        );
    }
    words
}

/// The snake_case name of a unit enum (`Endpoint::Chat` → "chat"), via its Debug form.
fn enum_name<T: std::fmt::Debug>(v: &T) -> String {
    let debug = format!("{v:?}");
    let mut out = String::new();
    for (i, c) in debug.chars().enumerate() {
        if c.is_ascii_uppercase() {
            if i > 0 {
                out.push('_');
            }
            out.push(c.to_ascii_lowercase());
        } else {
            out.push(c);
        }
    }
    out
}

/// Each fault says itself in words ([`crate::fault::Fault::explain`]).
fn fault_words(f: &FaultSpec) -> String {
    f.explain()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn design_example_reads_well() {
        let src = "\
version: 1
name: openai-429-storm
description: A rate-limit storm on chat completions, then recovery.
seed: 7
start_at: 2026-12-01T10:00:00Z
expires_after: 30m
phases:
  - name: baseline
    duration: 30s
  - name: storm
    duration: 60s
    rules:
      - name: throttle-chat
        match: {endpoint: chat, model: \"gpt-4o*\"}
        probability: {from: 0.05, to: 0.4}
        max_active: 100
        faults:
          - type: error
            preset: openai.rate_limit_requests
            retry_after: 2s
  - name: recovery
    duration: 30s
";
        let p: Profile = crate::yaml::from_str(src, "t").unwrap();
        let text = explain(&p);
        assert!(text.contains("Seed 7"), "{text}");
        assert!(text.contains("2026-12-01T10:00:00Z"), "{text}");
        assert!(text.contains("30m after the profile is applied"), "{text}");
        assert!(
            text.contains("Health probes (GET or HEAD of .../health"),
            "the exemption is said: {text}"
        );
        assert!(
            text.contains("Phase 1 `baseline` (30s, from 0:00 to 0:30): no faults."),
            "{text}"
        );
        assert!(
            text.contains(
                "Phase 2 `storm` (1m, from 0:30 to 1:30): rule `throttle-chat` — for chat requests to models \
                 matching gpt-4o*, with probability ramping from 5% to 40%, at most 100 at once: answer with \
                 preset openai.rate_limit_requests"
            ),
            "{text}"
        );
        assert!(text.contains("and retry-after 2s"), "{text}");
        assert!(text.contains("Phase 3 `recovery` (30s, from 1:30 on; being the last phase, it stays active after 2:00)"), "{text}");
    }

    #[test]
    fn every_fault_has_words() {
        let src = "\
version: 1
name: all
rules:
  - match: {stream: true, method: post, clients: {percent: 20, by: 'header:authorization'}, prompt_tokens: {min: 1000}}
    probability: 0.125
    faults:
      - {type: delay, duration: {lognormal: {median: 200ms, p99: 2s}}}
      - {type: reset, after_bytes: 65536}
      - {type: hang}
      - {type: hang, duration: 5s}
      - {type: bandwidth, bytes_per_second: 1024}
      - {type: concurrency_limit, max: 4, queue: 8, queue_timeout: 2s}
      - {type: error, status: 503, body: oops}
";
        let p: Profile = crate::yaml::from_str(src, "t").unwrap();
        let text = explain(&p);
        for want in [
            "Always (no phases):",
            "rule `rule-1` — for streaming POST requests with prompts of at least 1000 tokens (estimated) from a sticky 20% of clients (chosen by the authorization header)",
            "with probability 12.5%",
            "wait median 200ms, p99 2s (lognormal) before forwarding",
            "reset the connection after 64 KiB of the response body",
            "hold the request until the client gives up",
            "hold the request for 5s, then answer 504",
            "throttle the response body to 1 KiB/s",
            "let at most 4 run at once, queue up to 8 more for at most 2s each and reject the rest",
            "answer 503 with a custom text body",
            "(`hang` ends the exchange, so the faults listed after it never apply).",
        ] {
            assert!(text.contains(want), "missing `{want}` in:\n{text}");
        }
    }

    #[test]
    fn llm_faults_have_words() {
        let src = "\
version: 1
name: llm
rules:
  - faults:
      - {type: rate_limit, requests_per_minute: 60, tokens_per_minute: 30000, by: 'header:authorization'}
      - {type: first_token_delay, duration: 2s}
      - {type: token_delay, duration: {uniform: [10ms, 50ms]}}
      - {type: token_rate, tokens_per_second: 2.5}
      - {type: stall, after_tokens: 20, duration: 10s}
      - {type: stall, after_tokens: 1, forever: true}
      - {type: truncate, after_tokens: 0, ending: clean}
      - {type: truncate, after_tokens: 5}
      - {type: stream_error, after_tokens: 3, preset: anthropic.overloaded}
      - {type: corrupt, rate: 0.05, mode: bad_utf8}
      - {type: garble, fraction: 0.3}
      - {type: empty_completion}
      - {type: finish_reason, value: length}
";
        let p: Profile = crate::yaml::from_str(src, "t").unwrap();
        let text = explain(&p);
        for want in [
            "allow at most 60 requests and 30000 tokens per minute per value of the authorization header, answering the rest with the API's rate-limit error",
            "hold the stream's first token for 2s",
            "before every streamed token after the first",
            "pace the stream to at most 2.5 tokens per second",
            "stall the stream for 10s after 20 tokens, then resume",
            "stall the stream for good after 1 token",
            "cut the stream after 0 tokens (before the first) with a proper ending",
            "cut the stream after 5 tokens without its terminator",
            "send preset anthropic.overloaded (529)'s mid-stream error event after 3 tokens, then end the stream",
            "for 5% of streamed tokens, break a UTF-8 character in it",
            "replace 30% of the words",
            "answer with an empty completion",
            "report the finish reason as `length`",
        ] {
            assert!(text.contains(want), "missing `{want}` in:\n{text}");
        }
    }

    #[test]
    fn schedules_are_said() {
        let src = "\
version: 1
name: retries
rules:
  - name: fail-twice
    match: {endpoint: chat}
    schedule: {first: 2, per: call}
    faults: [{type: error, preset: openai.server_error}]
  - name: every-third
    schedule: {every: 3}
    max_active: 4
    faults: [{type: error, status: 503}]
phases:
  - name: storm
    duration: 1m
    rules:
      - name: once
        schedule: {first: 1}
        faults: [{type: reset}]
";
        let p = crate::validate::load_profile(src, "t.yaml").unwrap();
        let text = explain(&p);
        assert!(
            text.contains(
                "rule `fail-twice` — for chat requests, for the first 2 attempts of every call, \
                 so a call that retries gets through on its 3rd attempt (a call's attempts are \
                 numbered by its x-stainless-retry-count"
            ),
            "{text}"
        );
        assert!(
            text.contains(
                "rule `every-third` — for every request, for every 3rd matching request \
                 (counted from when the profile is applied), at most 4 at once (a turn that \
                 finds it at its cap is skipped, not passed on): answer 503"
            ),
            "{text}"
        );
        assert!(
            text.contains(
                "rule `once` — for every request, for the first matching request only, then \
                 never (counted from the start of the phase)"
            ),
            "{text}"
        );
        assert!(!text.contains("probability"), "{text}");
        assert_eq!(
            [1, 2, 3, 4, 11, 12, 13, 21, 22, 23, 101].map(nth),
            ["1st", "2nd", "3rd", "4th", "11th", "12th", "13th", "21st", "22nd", "23rd", "101st"]
        );
    }
}
