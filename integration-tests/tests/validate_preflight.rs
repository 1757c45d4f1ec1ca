//! `brownout validate SCENARIO` is the drill's pre-flight: the real binary, on
//! files with many mistakes at once, reports every one of them (each at
//! `file:line:column`, each with a hint) and exits 2; `brownout drill` on the
//! same file prints the same and exits 2 without sending a request; and every
//! scenario shipped in `scenarios/` passes both.

use std::path::Path;
use std::process::{Command, Output};
use std::time::Duration;

use brownout_integration_tests::*;

const PROFILE: &str = "\
version: 1
name: preflight
phases:
  - name: calm
    duration: 1s
  - name: storm
    duration: 1s
    rules:
      - name: boom
        faults: [{type: error, preset: openai.rate_limit_requests}]
";

/// One of each kind of mistake: a wrong GPU preset, a missing profile (when
/// `profile` is not `profile.yaml`), an unknown key, a bad duration, a missing
/// prompt file, text where a number goes, a negative count, a wrong enum value, a
/// prompt file with a bad line, a range error, a baseline and an SLO phase that
/// name no phase, and a fraction out of range.
fn broken_scenario(profile: &str) -> String {
    format!(
        "\
version: 1
name: broken
target: {{upstream: sim, gpu: h900-80gb}}
profile: {profile}
seed: 3
colour: blue
duration: 10 minutes
workloads:
  - name: chat
    prompts: missing.jsonl
    max_tokens: lots
    arrival: {{rate: 5/s}}
    client: {{retries: 0, timeout: 5s, users: -4}}
  - name: legacy
    endpoint: completions
    prompts: bad.jsonl
    arrival: {{concurrency: 0}}
baseline: clam
slo:
  error_rate: 0.1
  phases:
    strom: {{error_rate: 1.5}}
"
    )
}

/// The mistakes of [`broken_scenario`] that need no profile, as `file:line:column`
/// and a piece of the message.
const WITHOUT_PROFILE: &[(&str, &str)] = &[
    ("scenario.yaml:3:30", "unknown GPU preset `h900-80gb`"),
    ("scenario.yaml:6:1", "unknown field `colour`"),
    ("scenario.yaml:7:11", "`10 minutes` has an unknown unit"),
    ("scenario.yaml:10:14", "cannot read the prompt file"),
    (
        "scenario.yaml:11:17",
        "expected a whole number, found the text \"lots\"",
    ),
    ("scenario.yaml:13:46", "`users` must be at least 1, not -4"),
    ("scenario.yaml:15:15", "unknown endpoint `completions`"),
    ("scenario.yaml:17:28", "`concurrency` must be at least 1"),
    (
        "scenario.yaml:22:25",
        "`error_rate` must be between 0 and 1, not 1.5",
    ),
    ("bad.jsonl:2:1", "expected `messages`"),
];

/// The mistakes that need the profile's phase names.
const AGAINST_PROFILE: &[(&str, &str)] = &[
    (
        "scenario.yaml:18:11",
        "baseline `clam` is not a phase of the profile",
    ),
    (
        "scenario.yaml:22:5",
        "`slo.phases.strom` names no phase of the profile",
    ),
];

fn setup(dir: &Path, profile: &str) {
    std::fs::write(dir.join("profile.yaml"), PROFILE).unwrap();
    std::fs::write(
        dir.join("bad.jsonl"),
        "{\"prompt\": \"hi\"}\n{\"prompt\": 3}\n",
    )
    .unwrap();
    std::fs::write(dir.join("scenario.yaml"), broken_scenario(profile)).unwrap();
}

/// Run the binary in `dir` (so that diagnostics name files as the tests do).
fn brownout(dir: &Path, args: &[&str]) -> Output {
    Command::new(brownout_bin())
        .args(args)
        .current_dir(dir)
        .env("RUST_LOG", "warn")
        .output()
        .expect("run brownout")
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// The diagnostics in a command's stderr: each `file:line:column: message` line
/// with the hint line under it.
fn diagnostics(err: &str) -> Vec<(String, Option<String>)> {
    let mut out: Vec<(String, Option<String>)> = Vec::new();
    for line in err.lines() {
        match line.strip_prefix("  hint: ") {
            Some(h) => {
                let last = out
                    .last_mut()
                    .unwrap_or_else(|| panic!("a hint first:\n{err}"));
                last.1 = Some(h.to_owned());
            }
            None => out.push((line.to_owned(), None)),
        }
    }
    out
}

#[track_caller]
fn assert_reported(err: &str, want: &[(&str, &str)]) {
    let diags = diagnostics(err);
    for (at, message) in want {
        let hit = diags
            .iter()
            .find(|(l, _)| l.starts_with(&format!("{at}: ")) && l.contains(message));
        let Some((line, hint)) = hit else {
            panic!("no `{at}: …{message}…` in:\n{err}");
        };
        assert!(hint.is_some(), "`{line}` has no hint:\n{err}");
    }
}

#[test]
fn validate_reports_every_scenario_mistake_at_once_and_drill_refuses_alike() {
    let dir = TempDir::new();
    setup(dir.path(), "profile.yaml");

    let v = brownout(dir.path(), &["validate", "scenario.yaml"]);
    let err = stderr(&v);
    assert_eq!(v.status.code(), Some(2), "{err}");
    assert_reported(&err, WITHOUT_PROFILE);
    assert_reported(&err, AGAINST_PROFILE);
    assert_eq!(
        diagnostics(&err).len(),
        WITHOUT_PROFILE.len() + AGAINST_PROFILE.len(),
        "{err}"
    );

    let d = brownout(
        dir.path(),
        &["drill", "scenario.yaml", "--report-dir", "report"],
    );
    assert_eq!(d.status.code(), Some(2), "{}", stderr(&d));
    assert_eq!(stderr(&d), err, "drill and validate disagree");
    // Nothing started: no report directory, no records, no start line.
    assert!(!dir.join("report").exists());
    assert!(String::from_utf8_lossy(&d.stdout).trim().is_empty());
}

#[test]
fn a_missing_profile_is_reported_with_every_other_mistake() {
    let dir = TempDir::new();
    setup(dir.path(), "nowhere.yaml");
    let v = brownout(dir.path(), &["validate", "scenario.yaml"]);
    let err = stderr(&v);
    assert_eq!(v.status.code(), Some(2), "{err}");
    assert_reported(&err, &[("scenario.yaml:4:10", "cannot read the profile")]);
    assert_reported(&err, WITHOUT_PROFILE);
    let d = brownout(
        dir.path(),
        &["drill", "scenario.yaml", "--report-dir", "report"],
    );
    assert_eq!(d.status.code(), Some(2));
    assert_eq!(stderr(&d), err);
    assert!(!dir.join("report").exists());
}

const BAD_PROFILE: &str = "\
version: 1
name: bad
phases:
  - name: calm
    duration: 1s
    rules:
      - name: minus
        max_active: -3
        faults: [{type: reset}]
      - name: zero
        max_active: 0
        faults: [{type: reset}]
      - name: words
        probability: often
        max_active: lots
        faults:
          - {type: bandwidth, bytes_per_second: -1}
          - {type: concurrency_limit, max: 0}
          - {type: delay, duraton: 1s}
          - {type: dealy, duration: 1s}
";

#[test]
fn a_profile_gets_all_its_type_and_range_errors_in_one_wording() {
    let dir = TempDir::new();
    std::fs::write(dir.join("profile.yaml"), BAD_PROFILE).unwrap();
    let v = brownout(dir.path(), &["validate", "profile.yaml"]);
    let err = stderr(&v);
    assert_eq!(v.status.code(), Some(2), "{err}");
    let want: &[(&str, &str)] = &[
        (
            "profile.yaml:8:21",
            "`max_active` must be at least 1, not -3",
        ),
        ("profile.yaml:11:21", "`max_active` must be at least 1"),
        ("profile.yaml:14:22", "often"),
        (
            "profile.yaml:15:21",
            "expected a whole number, found the text \"lots\"",
        ),
        (
            "profile.yaml:17:49",
            "`bytes_per_second` must be at least 1, not -1",
        ),
        ("profile.yaml:18:44", "`max` must be at least 1"),
        ("profile.yaml:19:27", "unknown field `duraton`"),
        ("profile.yaml:20:20", "unknown fault type `dealy`"),
    ];
    assert_reported(&err, want);
    assert_eq!(diagnostics(&err).len(), want.len(), "{err}");
    // `-3` and `0` are told the same range (and neither a type's limits).
    assert!(
        !err.contains("4294967295") && !err.contains("0 or more"),
        "{err}"
    );

    // Through a scenario, the drill reports the profile's mistakes too.
    let good = broken_scenario("profile.yaml")
        .lines()
        .take(5)
        .collect::<Vec<_>>()
        .join("\n")
        .replace(", gpu: h900-80gb", "")
        + "\nworkload: {arrival: {rate: 5/s}}\n";
    std::fs::write(dir.join("scenario.yaml"), good).unwrap();
    let d = brownout(
        dir.path(),
        &["drill", "scenario.yaml", "--report-dir", "report"],
    );
    assert_eq!(d.status.code(), Some(2), "{}", stderr(&d));
    assert_reported(&stderr(&d), want);
    assert!(!dir.join("report").exists());
}

/// A running-proxy target: a scenario the pre-flight refuses never reaches the
/// proxy's admin API (nor its data plane).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_drill_sends_nothing_to_a_running_proxy() {
    let upstream = Upstream::start(|_req| async { reply(200, "{}") }).await;
    let dir = TempDir::new();
    std::fs::write(dir.join("profile.yaml"), PROFILE).unwrap();
    std::fs::write(
        dir.join("scenario.yaml"),
        format!(
            "version: 1\nname: proxy\ntarget: {{url: {u}, admin: {u}}}\nprofile: profile.yaml\n\
             workload: {{prompts: gone.jsonl, arrival: {{rate: 5/s}}}}\n",
            u = upstream.url()
        ),
    )
    .unwrap();
    let path = dir.join("scenario.yaml");
    let out = tokio::process::Command::new(brownout_bin())
        .arg("drill")
        .arg(&path)
        .arg("--report-dir")
        .arg(dir.join("report"))
        .env("RUST_LOG", "warn")
        .output();
    let out = within(Duration::from_secs(60), "brownout drill", out)
        .await
        .expect("run brownout drill");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains("scenario.yaml:5:21: cannot read the prompt file"),
        "{err}"
    );
    assert_eq!(upstream.requests(), 0);
    assert_eq!(upstream.connections(), 0);
}

#[test]
fn every_shipped_scenario_validates() {
    let dir = repo_root().join("scenarios");
    let mut n = 0;
    for e in std::fs::read_dir(&dir).unwrap() {
        let path = e.unwrap().path();
        if path.extension().is_some_and(|x| x == "yaml") {
            let name = path.display().to_string();
            let v = brownout(&dir, &["validate", &name]);
            assert_eq!(v.status.code(), Some(0), "{name}: {}", stderr(&v));
            assert!(
                String::from_utf8_lossy(&v.stdout).contains("ok (scenario)"),
                "{name}"
            );
            n += 1;
        }
    }
    assert!(n >= 4, "{n} scenarios");
}
