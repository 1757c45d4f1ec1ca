//! `brownout drill SCENARIO`: set up the target, run the engine, gate on SLOs and
//! write the reports.
//!
//! The engine and reports live in `brownout-drill`; this module owns what needs
//! the proxy itself: starting simulated upstreams plus an in-process proxy
//! (`target: {upstream: sim}`), or applying the profile to a running proxy through
//! its admin API and pulling its kill switch when `stop_when` fires.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use brownout::config::{FileConfig, ListenerConfig};
use brownout::ctl::CtlCommand;
use brownout::{start, StartOptions};
use brownout_drill::engine::{
    evaluate, run_engine_isolated, EnginePlan, EngineWorkload, PhaseDriver,
};
use brownout_drill::gate::{self, DrillReport, EXIT_INVALID};
use brownout_drill::scenario::{self, Api, Scenario, TargetKind};
use brownout_drill::PhasePlan;
use brownout_faults::yaml::Diagnostic;
use brownout_sim::SimApi;
use std::sync::Arc;

/// Simulated upstreams with an in-process proxy in front (no admin port), as the
/// demo and `target: {upstream: sim}` drills use: listener `llm` (OpenAI API, which
/// also carries Anthropic messages) before a model sim, and listener `vectors`
/// before a vector-database sim for each database API the drill searches (the
/// second, when both are used, is `vectors-chroma`). The caller applies the
/// profile.
pub(crate) struct SimTarget {
    sims: Vec<brownout_sim::SimHandle>,
    pub running: brownout::Running,
    /// Proxy base URL per workload API.
    urls: Vec<(Api, String)>,
}

impl SimTarget {
    pub(crate) async fn start(
        sim_cfg: brownout_sim::SimConfig,
        vector_apis: &[Api],
        seed: u64,
    ) -> Result<SimTarget, String> {
        use brownout_faults::ApiKind;
        let addr: std::net::SocketAddr = "127.0.0.1:0".parse().map_err(|e| format!("{e}"))?;
        let mut sims = Vec::new();
        let mut listeners = Vec::new();
        let mut apis = vec![(Api::Openai, SimApi::Openai, ApiKind::Openai, "llm")];
        for (i, api) in vector_apis.iter().enumerate() {
            let name = match (i, api) {
                (0, _) => "vectors",
                (_, Api::Chroma) => "vectors-chroma",
                _ => "vectors-qdrant",
            };
            match api {
                Api::Qdrant => apis.push((Api::Qdrant, SimApi::Qdrant, ApiKind::Qdrant, name)),
                Api::Chroma => apis.push((Api::Chroma, SimApi::Chroma, ApiKind::Chroma, name)),
                _ => {}
            }
        }
        for (_, sim_api, api_kind, name) in &apis {
            let sim = brownout_sim::spawn(
                addr,
                brownout_sim::SimConfig {
                    api: *sim_api,
                    ..sim_cfg.clone()
                },
            )
            .await
            .map_err(|e| format!("cannot start the simulated upstream: {e}"))?;
            listeners.push(ListenerConfig {
                name: Some((*name).into()),
                listen: "127.0.0.1:0".into(),
                upstream: format!("http://{}", sim.addr),
                api: Some(*api_kind),
                ..Default::default()
            });
            sims.push(sim);
        }
        let config = FileConfig {
            listeners,
            seed: Some(seed),
            mark_injected: true,
            ..Default::default()
        };
        let running = start(StartOptions {
            config,
            no_admin: true,
            ..Default::default()
        })
        .await
        .map_err(|e| e.to_string())?;
        let mut urls = Vec::new();
        for (api, _, _, name) in &apis {
            let a = running
                .addr(Some(name))
                .ok_or_else(|| format!("listener `{name}` did not start"))?;
            urls.push((*api, format!("http://{a}")));
            if *api == Api::Openai {
                urls.push((Api::Anthropic, format!("http://{a}")));
            }
        }
        Ok(SimTarget {
            sims,
            running,
            urls,
        })
    }

    /// The proxy URL a workload of `api` sends to.
    pub(crate) fn url(&self, api: Api) -> Option<&str> {
        self.urls
            .iter()
            .find(|(a, _)| *a == api)
            .map(|(_, u)| u.as_str())
    }

    /// One line for people: which sim stands behind which listener.
    pub(crate) fn describe(&self) -> String {
        self.sims
            .iter()
            .zip(&self.running.listeners)
            .map(|(s, (name, a))| format!("{name} {a} → sim {}", s.addr))
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// A driver that moves the in-process proxy's profile to each phase as the
    /// drill enters it.
    pub(crate) fn phase_driver(&self) -> PhaseDriver {
        let shared = self.running.shared.clone();
        PhaseDriver(Arc::new(move |i, _name| {
            shared
                .profile
                .load()
                .clock
                .jump_to(i, tokio::time::Instant::now());
        }))
    }

    pub(crate) async fn shutdown(self) {
        self.running.shutdown().await;
        for s in self.sims {
            s.shutdown().await;
        }
    }
}

fn print_diags(diags: &[Diagnostic]) -> ExitCode {
    for d in diags {
        eprintln!("{d}");
    }
    ExitCode::from(EXIT_INVALID)
}

/// What was loaded and checked before any request goes out.
pub(crate) struct Loaded {
    pub scenario: Scenario,
    pub profile: brownout_faults::Profile,
    pub profile_path: PathBuf,
    pub scenario_path: Option<PathBuf>,
}

/// Load the scenario and its profile, checking both (exit 2 material on failure).
pub(crate) fn load(path: &Path) -> Result<Loaded, Vec<Diagnostic>> {
    let (src, file) = brownout_faults::yaml::read_file(path, "scenario").map_err(|d| vec![d])?;
    let scenario = scenario::load_scenario(&src, &file)?;
    let profile_path = scenario.resolve(path, &scenario.profile);
    let profile = brownout_faults::validate::load_profile_file(&profile_path)?;
    check_loaded(
        Loaded {
            scenario,
            profile,
            profile_path,
            scenario_path: Some(path.to_path_buf()),
        },
        &src,
        &file,
    )
}

/// Load a scenario and profile given as text (the built-in demo).
pub(crate) fn load_text(
    src: &str,
    file: &str,
    profile_src: &str,
    profile_file: &str,
) -> Result<Loaded, Vec<Diagnostic>> {
    let scenario = scenario::load_scenario(src, file)?;
    let profile = brownout_faults::validate::load_profile(profile_src, profile_file)?;
    check_loaded(
        Loaded {
            scenario,
            profile,
            profile_path: PathBuf::from(profile_file),
            scenario_path: None,
        },
        src,
        file,
    )
}

/// The checks that need both files: phase names, and the sim's GPU preset.
fn check_loaded(l: Loaded, src: &str, file: &str) -> Result<Loaded, Vec<Diagnostic>> {
    let names: Vec<String> = l.profile.phases.iter().map(|p| p.name.clone()).collect();
    let mut diags = scenario::check_against_profile(&l.scenario, src, file, &names);
    if let Some(Err(e)) = l
        .scenario
        .target
        .gpu
        .as_deref()
        .map(brownout_sim::SimGpu::from_spec)
    {
        let line = src
            .lines()
            .position(|x| x.contains("gpu:"))
            .map_or(0, |i| i + 1);
        diags.push(Diagnostic {
            file: file.to_owned(),
            line,
            column: 1,
            message: format!("target.gpu: {e}"),
            hint: None,
        });
    }
    if diags.is_empty() {
        Ok(l)
    } else {
        Err(diags)
    }
}

/// The drill's phases: the profile's, cut (or the last one stretched) to the
/// scenario's `duration` when it has one. A profile without phases is one phase
/// named `all`.
pub(crate) fn phases(l: &Loaded) -> Vec<PhasePlan> {
    let mut phases: Vec<PhasePlan> = l
        .profile
        .phases
        .iter()
        .map(|p| PhasePlan::new(p.name.clone(), p.duration.0))
        .collect();
    let Some(limit) = l.scenario.duration.map(|d| d.0) else {
        if phases.is_empty() {
            phases.push(PhasePlan::new("all", Duration::from_secs(60)));
        }
        return phases;
    };
    if phases.is_empty() {
        return vec![PhasePlan::new("all", limit)];
    }
    let mut out = Vec::new();
    let mut t = Duration::ZERO;
    for p in phases {
        if t >= limit {
            break;
        }
        let d = p.duration.min(limit - t);
        t += d;
        out.push(PhasePlan::new(p.name, d));
    }
    if let Some(last) = out.last_mut() {
        last.duration += limit.saturating_sub(t);
    }
    out
}

/// Run the drill and return its report (the caller writes it and exits with its
/// code); `Err` is a message for a drill that could not run.
pub(crate) async fn run_loaded(l: &Loaded) -> Result<DrillReport, String> {
    let s = &l.scenario;
    let seed = s.seed.or(l.profile.seed).unwrap_or(0);
    let phases = phases(l);
    let mut prompts = Vec::new();
    for w in s.all_workloads() {
        prompts.push(match &w.prompts {
            None => Vec::new(),
            Some(p) => {
                let path = l
                    .scenario_path
                    .as_deref()
                    .map_or(p.clone(), |f| s.resolve(f, p));
                let file = path.display().to_string();
                let text = std::fs::read_to_string(&path)
                    .map_err(|e| format!("{file}: cannot read the prompt file: {e}"))?;
                scenario::load_prompts(&text, &file).map_err(|d| d.to_string())?
            }
        });
    }
    let plan =
        |target: &dyn Fn(Api) -> String, driver: PhaseDriver| -> Result<EnginePlan, String> {
            let mut workloads = Vec::new();
            for (w, prompts) in s.all_workloads().into_iter().zip(&prompts) {
                let t = target(w.api);
                workloads.push(EngineWorkload {
                    spec: w.clone(),
                    target: t.parse().map_err(|e| format!("target `{t}`: {e}"))?,
                    prompts: prompts.clone(),
                });
            }
            Ok(EnginePlan {
                phases: phases.clone(),
                workloads,
                seed,
                slo: s.slo.clone().unwrap_or_default(),
                stop_when: s.stop_when.clone(),
                baseline: s.baseline.clone(),
                phase_driver: Some(driver),
            })
        };
    let progress = brownout_drill::StderrProgress::new();
    let result = match s.target.kind() {
        TargetKind::Sim => {
            let gpu = s
                .target
                .gpu
                .as_deref()
                .map(brownout_sim::SimGpu::from_spec)
                .transpose()?;
            let sim_cfg = brownout_sim::SimConfig {
                seed,
                gpu,
                ..Default::default()
            };
            let mut vector_apis = Vec::new();
            for w in s.all_workloads() {
                if w.api.is_vector() && !vector_apis.contains(&w.api) {
                    vector_apis.push(w.api);
                }
            }
            let sim = SimTarget::start(sim_cfg, &vector_apis, seed).await?;
            let text = std::fs::read_to_string(&l.profile_path).ok();
            sim.running
                .shared
                .apply(&l.profile, text, brownout::state::ProfileSource::File)?;
            eprintln!(
                "brownout drill `{}`: {}; profile `{}`",
                s.name,
                sim.describe(),
                l.profile.name
            );
            let target = |api: Api| sim.url(api).unwrap_or_default().to_owned();
            let r = run_engine_isolated(plan(&target, sim.phase_driver())?, progress).await;
            if r.as_ref().is_ok_and(|r| r.stopped.is_some()) {
                sim.running.shared.release.turn_off();
            }
            sim.shutdown().await;
            r.map_err(|e| e.to_string())?
        }
        TargetKind::Proxy {
            url,
            admin,
            token_env,
        } => {
            let token = token_env.as_deref().and_then(|v| std::env::var(v).ok());
            brownout::ctl::run(
                &admin,
                token.as_deref(),
                &CtlCommand::Apply(l.profile_path.clone()),
                true,
            )
            .await
            .map_err(|e| format!("cannot apply the profile: {e}"))?;
            eprintln!(
                "brownout drill `{}`: profile `{}` applied through {admin}; load to {url}",
                s.name, l.profile.name
            );
            // The proxy's phases follow the drill's schedule: each phase is set
            // through the admin API as the drill enters it.
            let (a, t) = (admin.clone(), token.clone());
            let driver = PhaseDriver(Arc::new(move |_, name: &str| {
                let (a, t, name) = (a.clone(), t.clone(), name.to_owned());
                tokio::spawn(async move {
                    let cmd = CtlCommand::Phase(name.clone());
                    if let Err(e) = brownout::ctl::run(&a, t.as_deref(), &cmd, true).await {
                        eprintln!("cannot move {a} to phase `{name}`: {e}");
                    }
                });
            }));
            let target = |_: Api| url.clone();
            let r = run_engine_isolated(plan(&target, driver)?, progress)
                .await
                .map_err(|e| e.to_string())?;
            if r.stopped.is_some() {
                match brownout::ctl::run(&admin, token.as_deref(), &CtlCommand::Faults(false), true)
                    .await
                {
                    Ok(_) => eprintln!("stop_when fired: faults switched off on {admin}"),
                    Err(e) => eprintln!("stop_when fired but the kill switch failed: {e}"),
                }
            }
            r
        }
    };
    let slo = s
        .slo
        .as_ref()
        .map(|slo| evaluate(slo, &result))
        .unwrap_or_default();
    let baseline = s
        .baseline
        .clone()
        .or_else(|| phases.first().map(|p| p.name.clone()));
    Ok(DrillReport::new(&s.name, baseline, result, slo))
}

/// `brownout drill SCENARIO`.
pub(crate) async fn drill(path: &Path, report_dir: Option<&Path>) -> ExitCode {
    match load(path) {
        Ok(l) => run_and_report(&l, report_dir).await,
        Err(d) => print_diags(&d),
    }
}

/// Run a loaded drill, print its table and verdict, and write its reports; the
/// exit code is the verdict's.
pub(crate) async fn run_and_report(loaded: &Loaded, report_dir: Option<&Path>) -> ExitCode {
    let report = match run_loaded(loaded).await {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(EXIT_INVALID);
        }
    };
    let dir = report_dir.map(Path::to_path_buf).unwrap_or_else(|| {
        loaded
            .scenario
            .report
            .as_ref()
            .map(|r| r.dir.clone())
            .unwrap_or_else(|| PathBuf::from("drill-report"))
    });
    println!(
        "\n{}",
        brownout_drill::render_table(&report.result.stats, report.baseline.as_deref())
    );
    for w in &report.result.by_workload {
        println!(
            "workload `{}` ({}):\n{}",
            w.name,
            w.stats.path,
            brownout_drill::render_table(&w.stats, report.baseline.as_deref())
        );
    }
    if let Some(t) = brownout_drill::gate::render_correctness_table(&report) {
        println!("{t}");
    }
    for c in &report.slo {
        println!("{} {}", if c.passed { "pass" } else { "FAIL" }, c.message);
    }
    if let Some(why) = &report.result.stopped {
        println!("STOPPED: {why}");
    }
    if let Err(e) = gate::write_all(&dir, &report) {
        eprintln!("cannot write the report to {}: {e}", dir.display());
        return ExitCode::from(EXIT_INVALID);
    }
    println!(
        "verdict: {} — report written to {}/ (report.json, junit.xml, summary.md, report.html)",
        report.verdict.to_uppercase(),
        dir.display().to_string().trim_end_matches('/')
    );
    ExitCode::from(report.exit_code)
}

#[cfg(test)]
mod tests {
    use super::*;

    const PROFILE: &str = "\
version: 1
name: test-storm
phases:
  - name: calm
    duration: 1500ms
  - name: storm
    duration: 1500ms
    rules:
      - name: boom
        faults:
          - type: error
            preset: openai.rate_limit_requests
";

    fn scenario(name: &str, extra: &str) -> String {
        format!(
            "\
version: 1
name: {name}
target: {{upstream: sim}}
profile: profile.yaml
seed: 3
workloads:
  - name: chat
    stream: true
    prompts: prompts.jsonl
    arrival: {{rate: 30/s}}
    client: {{retries: 0, timeout: 5s}}
  - name: legacy
    endpoint: completion
    arrival: {{concurrency: 1}}
    client: {{retries: 1, timeout: 5s, honor_retry_after: false}}
baseline: calm
{extra}"
        )
    }

    fn dir_path(tag: &str) -> PathBuf {
        std::env::temp_dir().join(format!("brownout-drill-{tag}-{}", std::process::id()))
    }

    fn dir(tag: &str) -> PathBuf {
        let d = dir_path(tag);
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        std::fs::write(d.join("profile.yaml"), PROFILE).unwrap();
        std::fs::write(
            d.join("prompts.jsonl"),
            "{\"prompt\": \"Say hi.\"}\n{\"messages\": [{\"role\": \"user\", \"content\": \"Say bye.\"}]}\n",
        )
        .unwrap();
        d
    }

    async fn run(tag: &str, extra: &str) -> (PathBuf, DrillReport) {
        let d = dir(tag);
        let path = d.join("scenario.yaml");
        std::fs::write(&path, scenario(tag, extra)).unwrap();
        let loaded = load(&path).unwrap_or_else(|e| panic!("{}", e[0]));
        let report = run_loaded(&loaded).await.unwrap();
        gate::write_all(&d.join("report"), &report).unwrap();
        (d, report)
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn sim_drills_pass_fail_and_stop() {
        let pass = "slo:\n  error_rate: 0.7\n  e2e_p99: 5s\n  phases:\n    calm: {error_rate: 0.05, goodput: {min: 0.9, e2e: 2s}}\n    storm: {error_rate: 1.0}\n";
        let fail = "slo:\n  phases:\n    storm: {error_rate: 0.2}\n";
        let stop = "stop_when:\n  error_rate: {above: 0.5, for: 300ms}\n";
        let ((_, p), (fd, f), (_, s)) =
            tokio::join!(run("pass", pass), run("fail", fail), run("stop", stop));

        // Pass: calm has (almost: the proxy's phase clock starts a moment before the
        // drill's) no errors; every storm request got the injected 429.
        assert_eq!(p.exit_code, 0, "{:#?}", p.slo);
        assert_eq!(p.verdict, "pass");
        let calm = &p.result.stats.phases[0];
        let storm = &p.result.stats.phases[1];
        assert_eq!((calm.name.as_str(), storm.name.as_str()), ("calm", "storm"));
        assert!(calm.requests >= 30, "{calm:?}");
        assert!(calm.errors <= 1, "{calm:?}");
        assert!(storm.requests >= 30, "{storm:?}");
        assert_eq!(storm.errors, storm.requests, "{storm:?}");
        assert_eq!(storm.http_statuses.get(&429), Some(&storm.requests));
        assert!(storm.ttft.is_none() && calm.ttft.is_some());
        assert!(p.result.phases[0].goodput > 0.9);
        assert_eq!(p.result.phases[1].goodput, 0.0);
        // The closed-loop workload retried its failures once.
        assert!(p.result.phases[1].retry_amplification > 1.0);
        assert!(p.result.stopped.is_none());
        let names: Vec<_> = p
            .slo
            .iter()
            .map(|c| format!("{}.{}", c.scope, c.slo))
            .collect();
        assert_eq!(
            names,
            [
                "all.e2e_p99",
                "all.error_rate",
                "calm.e2e_p99",
                "calm.error_rate",
                "calm.goodput",
                "storm.e2e_p99",
                "storm.error_rate"
            ]
        );

        // Fail: the storm breaks its error-rate objective; exit 1, and the JUnit
        // file says so.
        assert_eq!(f.exit_code, 1);
        let broken: Vec<_> = f.slo.iter().filter(|c| !c.passed).collect();
        assert_eq!(broken.len(), 1, "{:#?}", f.slo);
        assert_eq!(
            (broken[0].scope.as_str(), broken[0].slo.as_str()),
            ("storm", "error_rate")
        );
        assert_eq!(broken[0].actual, Some(1.0));
        let junit = std::fs::read_to_string(fd.join("report/junit.xml")).unwrap();
        assert!(
            junit.contains("<failure message=\"storm: error_rate 100.00% breaks limit 20.00%\""),
            "{junit}"
        );
        for file in ["report.json", "summary.md", "report.html"] {
            assert!(fd.join("report").join(file).exists(), "{file}");
        }

        // Stop: the storm's error rate trips stop_when well before the end.
        assert_eq!(s.exit_code, 3);
        assert!(s.result.stopped.as_deref().unwrap().contains("above 50.0%"));
        assert!(
            s.result.stats.elapsed_s < 2.9,
            "{}",
            s.result.stats.elapsed_s
        );
        for tag in ["pass", "fail", "stop"] {
            let _ = std::fs::remove_dir_all(dir_path(tag));
        }
    }

    const GARBLE_PROFILE: &str = "\
version: 1
name: test-garble
phases:
  - name: calm
    duration: 1200ms
  - name: bad
    duration: 1200ms
    rules:
      - name: rot
        faults:
          - {type: garble, fraction: 0.5}
          - {type: embedding_noise, stddev: 0.05}
";

    /// Anthropic messages (streamed and not) and embeddings against the sim; the
    /// second phase garbles answers and adds noise to embeddings, so answer match
    /// and cosine similarity fall there and the answer-match SLO breaks.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn sim_drill_scores_correctness() {
        let d = dir("correct");
        std::fs::write(d.join("profile.yaml"), GARBLE_PROFILE).unwrap();
        std::fs::write(
            d.join("prompts.jsonl"),
            "{\"prompt\": \"Say hi.\", \"expect\": {\"contains\": \"\"}}\n\
             {\"messages\": [{\"role\": \"user\", \"content\": \"Say bye.\"}], \"expect\": {\"json_valid\": true}}\n",
        )
        .unwrap();
        let path = d.join("scenario.yaml");
        std::fs::write(
            &path,
            "\
version: 1
name: correct
target: {upstream: sim}
profile: profile.yaml
seed: 5
workloads:
  - name: claude
    api: anthropic
    endpoint: messages
    model: claude-3-5-haiku-latest
    stream: true
    prompts: prompts.jsonl
    arrival: {rate: 25/s}
    client: {retries: 2, timeout: 5s}
  - name: claude-json
    api: anthropic
    endpoint: messages
    model: claude-3-5-haiku-latest
    arrival: {concurrency: 1}
    client: {retries: 0, timeout: 5s}
  - name: embed
    endpoint: embeddings
    model: text-embedding-3-small
    arrival: {concurrency: 1}
    client: {retries: 0, timeout: 5s}
baseline: calm
slo:
  error_rate: 0.05
  phases:
    bad: {answer_match: 0.9}
",
        )
        .unwrap();
        let loaded = load(&path).unwrap_or_else(|e| panic!("{}", e[0]));
        let r = run_loaded(&loaded).await.unwrap();
        gate::write_all(&d.join("report"), &r).unwrap();
        let calm = &r.result.phases[0];
        let bad = &r.result.phases[1];
        let (cs, bs) = (&r.result.stats.phases[0], &r.result.stats.phases[1]);
        assert_eq!(cs.errors + bs.errors, 0, "{cs:?}\n{bs:?}");
        // Streamed Anthropic answers measured TTFT and usage tokens.
        assert!(
            cs.ttft.is_some() && cs.tokens_from_usage > 0 && cs.tokens_counted == 0,
            "{cs:?}"
        );
        let (cc, bc) = (&calm.correctness, &bad.correctness);
        // Calm answers match themselves, except a stream still running when the
        // garble phase starts (faults apply token by token).
        assert!(cc.answer_match.unwrap() > 0.8, "{cc:?}");
        assert!(bc.answer_match.unwrap() < 0.5, "{bc:?}");
        assert!(cc.cosine_similarity.unwrap() > 0.999, "{cc:?}");
        assert!(bc.cosine_similarity.unwrap() < 0.99, "{bc:?}");
        assert!(cc.embeddings_compared > 0 && bc.embeddings_compared > 0);
        assert!(
            cc.expect_checked > 0 && cc.expect_pass_rate.is_some(),
            "{cc:?}"
        );
        // The answer-match objective breaks in the bad phase only: exit 1.
        let broken: Vec<_> = r.slo.iter().filter(|c| !c.passed).collect();
        assert_eq!(broken.len(), 1, "{:#?}", r.slo);
        assert_eq!(
            (broken[0].scope.as_str(), broken[0].slo.as_str()),
            ("bad", "answer_match")
        );
        assert_eq!(r.exit_code, 1);
        let summary = std::fs::read_to_string(d.join("report/summary.md")).unwrap();
        assert!(
            summary.contains("| phase | expect pass | answer match | cosine similarity |"),
            "{summary}"
        );
        let junit = std::fs::read_to_string(d.join("report/junit.xml")).unwrap();
        assert!(junit.contains("answer_match"), "{junit}");
        let json = std::fs::read_to_string(d.join("report/report.json")).unwrap();
        assert!(json.contains("\"cosine_similarity\""));
        let _ = std::fs::remove_dir_all(d);
    }

    const VECTOR_PROFILE: &str = "\
version: 1
name: test-recall
phases:
  - name: calm
    duration: 1200ms
  - name: thin
    duration: 1200ms
    rules:
      - name: half
        match: {listener: vectors}
        faults:
          - {type: drop_results, fraction: 0.5}
      - name: mixed
        match: {listener: vectors-chroma}
        faults:
          - {type: shuffle_results}
";

    /// Qdrant and Chroma searches against the simulated databases: dropping half of
    /// every top-10 halves recall@10 exactly; shuffling keeps recall but lowers the
    /// rank overlap. The phases follow the drill (the driver), so the split is clean.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn sim_drill_measures_recall() {
        let d = dir("recall");
        std::fs::write(d.join("profile.yaml"), VECTOR_PROFILE).unwrap();
        let path = d.join("scenario.yaml");
        std::fs::write(
            &path,
            "\
version: 1
name: recall
target: {upstream: sim}
profile: profile.yaml
seed: 9
workloads:
  - name: qdrant
    api: qdrant
    endpoint: search
    top_k: 10
    arrival: {rate: 30/s}
    client: {retries: 0, timeout: 5s}
  - name: chroma
    api: chroma
    endpoint: search
    collection: docs
    top_k: 10
    arrival: {rate: 30/s}
    client: {retries: 0, timeout: 5s}
baseline: calm
slo:
  recall_at_k: 0.5
  phases:
    thin: {recall_at_k: 0.8}
",
        )
        .unwrap();
        let loaded = load(&path).unwrap_or_else(|e| panic!("{}", e[0]));
        let r = run_loaded(&loaded).await.unwrap();
        let by = |name: &str| {
            r.result
                .by_workload
                .iter()
                .find(|w| w.name == name)
                .unwrap()
        };
        for w in ["qdrant", "chroma"] {
            let s = &by(w).stats;
            assert_eq!(s.total.errors, 0, "{w}: {:?}", s.total);
            assert!(s.phases[0].requests >= 15, "{w}: {:?}", s.phases[0]);
        }
        let calm = &r.result.phases[0].correctness;
        let thin = &r.result.phases[1].correctness;
        assert_eq!(calm.recall_at_k, Some(1.0), "{calm:?}");
        assert_eq!(calm.rank_overlap, Some(1.0), "{calm:?}");
        // Qdrant: recall 0.5 on every search; Chroma: recall 1 but shuffled. The
        // mean over both lies between, weighted by how many each sent.
        let recall = thin.recall_at_k.unwrap();
        assert!(recall > 0.55 && recall < 0.95, "{thin:?}");
        assert!(thin.rank_overlap.unwrap() < recall, "{thin:?}");
        let broken: Vec<_> = r.slo.iter().filter(|c| !c.passed).collect();
        assert_eq!(broken.len(), 1, "{:#?}", r.slo);
        assert_eq!(
            (broken[0].scope.as_str(), broken[0].slo.as_str()),
            ("thin", "recall_at_k")
        );
        assert_eq!(r.exit_code, 1);
        gate::write_all(&d.join("report"), &r).unwrap();
        let summary = std::fs::read_to_string(d.join("report/summary.md")).unwrap();
        assert!(summary.contains("| recall@k | rank overlap |"), "{summary}");
        assert!(summary.contains("### Workload `chroma`"), "{summary}");
        let html = std::fs::read_to_string(d.join("report/report.html")).unwrap();
        assert!(html.contains("Correctness per phase"));
        let _ = std::fs::remove_dir_all(d);
    }

    #[test]
    fn bad_scenarios_are_exit_2_material() {
        let d = dir("bad");
        let path = d.join("scenario.yaml");
        std::fs::write(
            &path,
            scenario("bad", "baseline: clam\n").replace("baseline: calm\n", ""),
        )
        .unwrap();
        let e = load(&path).err().unwrap();
        assert_eq!(e[0].line, 16, "{}", e[0]);
        assert_eq!(e[0].hint.as_deref(), Some("did you mean `calm`?"));
        let _ = std::fs::remove_dir_all(d);
    }

    #[test]
    fn example_scenarios_validate() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scenarios");
        let mut n = 0;
        for e in std::fs::read_dir(&dir).unwrap() {
            let path = e.unwrap().path();
            if path.extension().is_some_and(|x| x == "yaml") {
                let l = load(&path).unwrap_or_else(|d| panic!("{}", d[0]));
                assert!(!phases(&l).is_empty());
                for w in l.scenario.all_workloads() {
                    if let Some(p) = &w.prompts {
                        let p = l.scenario.resolve(&path, p);
                        let text = std::fs::read_to_string(&p).unwrap();
                        scenario::load_prompts(&text, &p.display().to_string()).unwrap();
                    }
                }
                n += 1;
            }
        }
        assert!(n >= 2, "{n} scenarios");
    }
}
