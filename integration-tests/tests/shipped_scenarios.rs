//! Every shipped scenario, run as written (only its phases shortened so that the
//! suite stays quick), injects what its profile says: each rule of each phase
//! applies in that phase, and no drill is inconclusive. The game-day scenario,
//! written for a running proxy, runs against one started here.

use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::Duration;

use brownout_integration_tests::*;
use serde_json::Value;

/// How long each phase runs here (the shipped files say 12 s to 2 min).
const PHASE: &str = "4s";

/// The profile's text with every phase's `duration` set to [`PHASE`]. Phase
/// durations are the four-space-indented `duration:` lines under `  - name:`.
fn shorten(profile: &str) -> String {
    let mut out = String::new();
    for line in profile.lines() {
        match line.strip_prefix("    duration: ") {
            Some(_) => out.push_str(&format!("    duration: {PHASE}")),
            None => out.push_str(line),
        }
        out.push('\n');
    }
    out
}

/// Copy a shipped scenario into `dir` with its profile shortened, its prompts
/// beside it, and `target` replaced when given; returns the scenario's path.
fn stage(name: &str, dir: &Path, target: Option<&str>) -> PathBuf {
    let root = repo_root();
    let text = std::fs::read_to_string(root.join("scenarios").join(name)).unwrap();
    let mut out = String::new();
    let mut skip_target = false;
    for line in text.lines() {
        if skip_target {
            if line.starts_with("  ") {
                continue;
            }
            skip_target = false;
        }
        if let Some(p) = line.strip_prefix("profile: ") {
            let file = p.split('#').next().unwrap().trim();
            let profile = std::fs::read_to_string(root.join("scenarios").join(file)).unwrap();
            std::fs::write(dir.join("profile.yaml"), shorten(&profile)).unwrap();
            out.push_str("profile: profile.yaml\n");
            continue;
        }
        if let (Some(t), true) = (target, line.starts_with("target:")) {
            out.push_str(&format!("target: {t}\n"));
            skip_target = !line.contains('{');
            continue;
        }
        out.push_str(line);
        out.push('\n');
    }
    for prompts in [
        "prompts.jsonl",
        "prompts-expect.jsonl",
        "prompts-mock-lengths.jsonl",
    ] {
        std::fs::copy(root.join("scenarios").join(prompts), dir.join(prompts)).unwrap();
    }
    let path = dir.join(name);
    std::fs::write(&path, out).unwrap();
    path
}

async fn drill(scenario: &Path, report: &Path, env: &[(&str, &str)]) -> Output {
    run_drill(scenario, report, env, Duration::from_secs(120)).await
}

/// The drill ran to the end (pass or a broken objective, never inconclusive or
/// stopped), and every rule applied each of its faults in its scope.
fn every_rule_fired(name: &str, out: &Output, report: &Path) {
    let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
    let r: Value = serde_json::from_str(
        &std::fs::read_to_string(report.join("report.json"))
            .unwrap_or_else(|e| panic!("{name}: no report ({e}): {}", text(&out.stderr))),
    )
    .unwrap();
    let chaos = &r["chaos"];
    let rules = chaos["rules"].as_array().unwrap();
    assert!(!rules.is_empty(), "{name}: no rules counted: {chaos:#}");
    for t in rules {
        for f in t["faults"].as_array().unwrap() {
            assert!(
                f["applied"].as_u64().unwrap() > 0 && f["idle"] == false,
                "{name}: rule `{}` ({}) fault {} did not apply: {t:#}\n{}",
                t["rule"],
                t["scope"],
                f["fault"],
                text(&out.stdout)
            );
        }
    }
    assert_ne!(
        r["verdict"],
        "inconclusive",
        "{name}: {}",
        text(&out.stdout)
    );
    // Prompts with `expect` checks pass them at baseline (the prompt file scripts
    // the simulator's answers), so a drop under faults means the faults.
    let baseline = r["baseline"].as_str().unwrap_or_default();
    for p in r["result"]["phases"].as_array().unwrap() {
        if p["name"] == baseline {
            let c = &p["correctness"];
            if c["expect_checked"].as_u64().unwrap_or(0) > 0 {
                assert_eq!(c["expect_pass_rate"], 1.0, "{name}: {c:#}");
            }
        }
    }
    assert!(
        matches!(out.status.code(), Some(0 | 1)),
        "{name}: exit {:?}: {}{}",
        out.status.code(),
        text(&out.stdout),
        text(&out.stderr)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_shipped_sim_scenario_injects_what_its_profile_says() {
    let names: Vec<String> = std::fs::read_dir(repo_root().join("scenarios"))
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|n| n.ends_with(".yaml") && n != "gameday-proxy.yaml")
        .collect();
    assert!(names.len() >= 4, "{names:?}");
    let dirs: Vec<TempDir> = names.iter().map(|_| TempDir::new()).collect();
    let runs = names.iter().zip(&dirs).map(|(n, d)| async move {
        let path = stage(n, d.path(), None);
        let report = d.join("report");
        let out = drill(&path, &report, &[]).await;
        (n.clone(), out, report)
    });
    for (name, out, report) in futures_util::future::join_all(runs).await {
        every_rule_fired(&name, &out, &report);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_game_day_scenario_injects_what_its_profile_says_on_a_running_proxy() {
    let (sim, proxy, target) = proxied_sim("gameday-token", "BROWNOUT_ADMIN_TOKEN").await;
    let dir = TempDir::new();
    let path = stage("gameday-proxy.yaml", dir.path(), Some(&target));
    let report = dir.join("report");
    let out = drill(&path, &report, &[("BROWNOUT_ADMIN_TOKEN", "gameday-token")]).await;
    every_rule_fired("gameday-proxy.yaml", &out, &report);
    proxy.shutdown().await;
    sim.shutdown().await;
}
