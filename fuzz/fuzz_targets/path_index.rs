//! The rule index against the rules themselves: for any set of path globs and any
//! request path, "could any rule match?" answered by the index (`PathIndex`, which
//! the HTTP/1.1 fast path trusts to skip the rules) is exactly what a scan of every
//! rule answers. A rule the index missed would be a fault silently never injected.
//!
//! Input: `arbitrary::Unstructured` picks up to 6 rules (a path glob from a small
//! alphabet rich in glob syntax, an optional method, top level or in a phase) and up
//! to 8 request paths; every glob with its wildcards taken out is tried as a path
//! too, so hits are common.
#![no_main]

use brownout_faults::api::RequestFacts;
use brownout_faults::matcher::{CompiledProfile, MatchInput};
use brownout_faults::validate::load_profile;
use http::{HeaderMap, Method};
use libfuzzer_sys::arbitrary::{Result, Unstructured};
use libfuzzer_sys::fuzz_target;

/// Glob syntax and a few literals; no `'`, so a pattern fits a single-quoted YAML
/// string as is.
const GLOB_BYTES: &[u8] = b"/ab*?[]!^-\\.x";
/// What request paths are made of.
const PATH_BYTES: &[u8] = b"/ab.-x*?[]\\";

fn text(u: &mut Unstructured<'_>, alphabet: &[u8], max: usize) -> Result<String> {
    let len = u.int_in_range(0..=max)?;
    (0..len)
        .map(|_| u.choose(alphabet).map(|&b| b as char))
        .collect()
}

struct RuleSpec {
    glob: String,
    method: Option<&'static str>,
    in_phase: bool,
}

fn yaml(rules: &[RuleSpec]) -> String {
    let line = |i: usize, r: &RuleSpec| {
        let method = r.method.map(|m| format!(", method: {m}")).unwrap_or_default();
        format!(
            "  - {{name: r{i}, match: {{path: '{}'{method}}}, faults: [{{type: delay, duration: 1ms}}]}}\n",
            r.glob
        )
    };
    let mut out = String::from("version: 1\nname: fuzz\nrules:\n");
    let mut phase = String::new();
    for (i, r) in rules.iter().enumerate() {
        if r.in_phase {
            phase.push_str(&line(i, r));
        } else {
            out.push_str(&line(i, r));
        }
    }
    if rules.iter().all(|r| r.in_phase) {
        out.truncate(out.len() - "rules:\n".len());
        out.push_str("rules: []\n");
    }
    if !phase.is_empty() {
        out.push_str("phases:\n  - name: one\n    duration: 1h\n    rules:\n");
        for l in phase.lines() {
            out.push_str("    ");
            out.push_str(l);
            out.push('\n');
        }
    }
    out
}

fn run(data: &[u8]) -> Result<()> {
    let mut u = Unstructured::new(data);
    let mut rules = Vec::new();
    for _ in 0..u.int_in_range(1..=6)? {
        rules.push(RuleSpec {
            glob: text(&mut u, GLOB_BYTES, 12)?,
            method: *u.choose(&[None, Some("GET"), Some("POST")])?,
            in_phase: u.arbitrary()?,
        });
    }
    let mut paths: Vec<String> = rules
        .iter()
        .map(|r| r.glob.chars().filter(|c| !"*?[]!^\\".contains(*c)).collect())
        .collect();
    for _ in 0..u.int_in_range(1..=8)? {
        paths.push(text(&mut u, PATH_BYTES, 16)?);
    }

    let src = yaml(&rules);
    // A glob the validator or the compiler refuses is a diagnostic, not a case.
    let Ok(profile) = load_profile(&src, "fuzz.yaml") else {
        return Ok(());
    };
    let now = tokio::time::Instant::now();
    let Ok(compiled) = CompiledProfile::compile(&profile, 1, None, now, 0) else {
        return Ok(());
    };
    let active = compiled.active(now);
    let headers = HeaderMap::new();
    let facts = RequestFacts::default();
    for method in [Method::GET, Method::POST, Method::DELETE] {
        for path in &paths {
            let input = MatchInput {
                listener: "l",
                method: &method,
                path,
                headers: &headers,
                facts: &facts,
                client_ip: None,
            };
            let scan = active
                .rules
                .clone()
                .any(|r| r.matches(&input, compiled.seed));
            assert_eq!(
                compiled.any_rule_matches(active.phase, &input),
                scan,
                "{method} {path:?} against\n{src}"
            );
        }
    }
    Ok(())
}

fuzz_target!(|data: &[u8]| {
    let _ = run(data);
});
