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
use brownout::control::ctl::CtlCommand;
use brownout::{start, StartOptions};
use brownout_drill::chaos::{ChaosInput, PhaseSpan};
use brownout_drill::engine::{
    evaluate, run_engine_isolated, EnginePlan, EngineWorkload, PhaseDriver,
};
use brownout_drill::gate::{self, DrillReport, EXIT_INVALID};
use brownout_drill::scenario::{self, Api, Scenario, TargetKind};
use brownout_drill::PhasePlan;
use brownout_faults::yaml::{Diagnostic, PathSeg};
use brownout_sim::SimApi;
use std::sync::Arc;

/// Apply the scenario's profile to a running proxy through its admin API
/// (`target: {url, admin, token_env}`), saying so on stderr as `brownout <what>`;
/// the admin token read from `token_env`, for the calls that follow.
pub(crate) async fn apply_remote(
    l: &Loaded,
    what: &str,
    url: &str,
    admin: &str,
    token_env: Option<&str>,
) -> Result<Option<String>, String> {
    let token = token_env.and_then(|v| std::env::var(v).ok());
    brownout::control::ctl::run(
        admin,
        token.as_deref(),
        &CtlCommand::Apply(l.profile_path.clone()),
        true,
    )
    .await
    .map_err(|e| format!("cannot apply the profile: {e}"))?;
    eprintln!(
        "brownout {what} `{}`: profile `{}` applied through {admin}; load to {url}",
        l.scenario.name, l.profile.name
    );
    Ok(token)
}

/// Simulated upstreams with an in-process proxy in front (no admin port), as the
/// demo and `target: {upstream: sim}` drills use: one listener per API the
/// workloads speak, each classifying its traffic as that API and standing before
/// a sim of it, so every rule sees what a real deployment would show it. The
/// first model API's listener is `llm` (a second is `llm-anthropic` or
/// `llm-openai`), the first vector database's `vectors` (a second is
/// `vectors-chroma` or `vectors-qdrant`). The caller applies the profile.
pub(crate) struct SimTarget {
    sims: Vec<brownout_sim::SimHandle>,
    pub running: brownout::Running,
    /// Proxy base URL per workload API.
    urls: Vec<(Api, String)>,
}

/// The listener name, sim and classification for each API, in the order given.
fn sim_listeners(apis: &[Api]) -> Vec<(Api, SimApi, brownout_faults::ApiKind, &'static str)> {
    use brownout_faults::ApiKind;
    let mut out: Vec<(Api, SimApi, brownout_faults::ApiKind, &'static str)> = Vec::new();
    let (mut models, mut vectors) = (0, 0);
    for api in apis {
        if out.iter().any(|(a, ..)| a == api) {
            continue;
        }
        let (sim, kind) = match api {
            Api::Openai => (SimApi::Openai, ApiKind::Openai),
            Api::Anthropic => (SimApi::Anthropic, ApiKind::Anthropic),
            Api::Qdrant => (SimApi::Qdrant, ApiKind::Qdrant),
            Api::Chroma => (SimApi::Chroma, ApiKind::Chroma),
        };
        let name = match (api.is_vector(), api) {
            (false, _) if models == 0 => "llm",
            (false, Api::Anthropic) => "llm-anthropic",
            (false, _) => "llm-openai",
            (true, _) if vectors == 0 => "vectors",
            (true, Api::Chroma) => "vectors-chroma",
            (true, _) => "vectors-qdrant",
        };
        if api.is_vector() {
            vectors += 1;
        } else {
            models += 1;
        }
        out.push((*api, sim, kind, name));
    }
    out
}

impl SimTarget {
    /// Start a sim and a listener for each of `apis` (an OpenAI one when none is
    /// given), recording every exchange to `record` when given.
    pub(crate) async fn start(
        sim_cfg: brownout_sim::SimConfig,
        apis: &[Api],
        seed: u64,
        record: Option<PathBuf>,
    ) -> Result<SimTarget, String> {
        let addr: std::net::SocketAddr = "127.0.0.1:0".parse().map_err(|e| format!("{e}"))?;
        let mut sims = Vec::new();
        let mut listeners = Vec::new();
        let apis = sim_listeners(if apis.is_empty() {
            &[Api::Openai]
        } else {
            apis
        });
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
        let mut config = FileConfig {
            listeners,
            seed: Some(seed),
            mark_injected: true,
            ..Default::default()
        };
        config.record.jsonl = record;
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
    /// Each workload's prompt file (in [`Scenario::all_workloads`] order; empty for
    /// the built-in prompts), read by the pre-flight so that a bad one is reported
    /// with everything else wrong rather than once the drill has started.
    pub prompts: Vec<Vec<serde_json::Value>>,
}

/// `brownout drill`'s pre-flight on a scenario file, which is also what
/// `brownout validate` runs on one (exit 2 material on failure).
pub(crate) fn load(path: &Path) -> Result<Loaded, Vec<Diagnostic>> {
    let (src, file) = brownout_faults::yaml::read_file(path, "scenario").map_err(|d| vec![d])?;
    preflight(&src, &file, Some(path), None)
}

/// The pre-flight on a scenario and profile given as text (the built-in demo).
pub(crate) fn load_text(
    src: &str,
    file: &str,
    profile_src: &str,
    profile_file: &str,
) -> Result<Loaded, Vec<Diagnostic>> {
    preflight(src, file, None, Some((profile_src, profile_file)))
}

/// Every check the drill makes before it sends a request: the scenario, its
/// profile, the names the scenario takes from the profile, the files it names
/// (profile, prompts), the sim's GPU preset and the target's URLs. `validate` runs
/// exactly this, so a scenario that validates is one the drill starts; and every
/// problem is reported at once, each at the value at fault, so one run is enough
/// to fix a file.
///
/// `scenario_path` resolves the scenario's relative paths (none: the working
/// directory); `profile` replaces the scenario's profile file with text.
fn preflight(
    src: &str,
    file: &str,
    scenario_path: Option<&Path>,
    profile: Option<(&str, &str)>,
) -> Result<Loaded, Vec<Diagnostic>> {
    use brownout_faults::yaml::PathSeg::Key;
    let checked = scenario::check_scenario(src, file);
    // Problems in the scenario file, sorted by position; then those in the files
    // it names, in the order they are read.
    let mut here = checked.diagnostics.clone();
    let mut elsewhere = Vec::new();
    let Some(s) = checked.scenario() else {
        return Err(here);
    };
    let at = |path: &[PathSeg<'_>], message: String, hint: &str| {
        let (line, column) = checked.node(path).map_or((0, 0), |n| (n.line, n.column));
        Diagnostic {
            file: file.to_owned(),
            line,
            column,
            message,
            hint: Some(hint.to_owned()),
        }
    };
    let resolve = |p: &Path| scenario_path.map_or_else(|| p.to_path_buf(), |f| s.resolve(f, p));
    const RELATIVE: &str =
        "paths are relative to the scenario file; check the name and that the file is readable";

    let profile_path = match profile {
        Some((_, name)) => PathBuf::from(name),
        None => resolve(&s.profile),
    };
    let profile_text = match profile {
        Some((text, _)) => Some(text.to_owned()),
        None if !checked.trusted(&[Key("profile")]) => None,
        None => match std::fs::read_to_string(&profile_path) {
            Ok(t) => Some(t),
            Err(e) => {
                here.push(at(
                    &[Key("profile")],
                    format!("cannot read the profile {}: {e}", profile_path.display()),
                    RELATIVE,
                ));
                None
            }
        },
    };
    let mut loaded_profile = None;
    if let Some(text) = profile_text {
        let c =
            brownout_faults::validate::check_profile(&text, &profile_path.display().to_string());
        elsewhere.extend(c.diagnostics);
        if let Some(names) = c.phase_names {
            here.extend(
                scenario::check_against_profile(s, src, file, &names)
                    .into_iter()
                    .filter(|d| !checked.follows_from_repair(d)),
            );
        }
        loaded_profile = c.profile;
    }

    let gpu_at = [Key("target"), Key("gpu")];
    if let (Some(g), true) = (s.target.gpu.as_deref(), checked.trusted(&gpu_at)) {
        if let Err(e) = brownout_sim::SimGpu::from_spec(g) {
            let (message, hint) = e.split_once("; ").unwrap_or((&e, "e.g. `gpu: h100-80gb`"));
            here.push(at(&gpu_at, format!("target.gpu: {message}"), hint));
        }
    }

    if let TargetKind::Proxy { url, admin, .. } = s.target.kind() {
        for (key, v) in [("url", url), ("admin", admin)] {
            let path = [Key("target"), Key(key)];
            if checked.trusted(&path) {
                if let Err(e) = v.parse::<http::Uri>() {
                    here.push(at(
                        &path,
                        format!("`{key}` `{v}` is not a usable URL: {e}"),
                        "e.g. http://127.0.0.1:8080",
                    ));
                }
            }
        }
    }

    let mut prompts = Vec::new();
    for (i, w) in s.all_workloads().into_iter().enumerate() {
        let mut path = scenario::workload_path(s, i);
        path.push(Key("prompts"));
        let lines = match &w.prompts {
            Some(p) if checked.trusted(&path) => {
                let p = resolve(p);
                match std::fs::read_to_string(&p) {
                    Ok(text) => match scenario::load_prompts(&text, &p.display().to_string()) {
                        Ok(lines) => lines,
                        Err(d) => {
                            elsewhere.push(d);
                            Vec::new()
                        }
                    },
                    Err(e) => {
                        here.push(at(
                            &path,
                            format!("cannot read the prompt file {}: {e}", p.display()),
                            RELATIVE,
                        ));
                        Vec::new()
                    }
                }
            }
            _ => Vec::new(),
        };
        prompts.push(lines);
    }

    here.sort_by_key(|d| (d.line, d.column));
    let mut diags: Vec<Diagnostic> = Vec::new();
    for d in here.into_iter().chain(elsewhere) {
        // Two workloads on one bad prompt file: its problem once.
        if !diags.contains(&d) {
            diags.push(d);
        }
    }
    match loaded_profile {
        Some(profile) if diags.is_empty() => Ok(Loaded {
            scenario: s.clone(),
            profile,
            profile_path,
            scenario_path: scenario_path.map(Path::to_path_buf),
            prompts,
        }),
        _ => Err(diags),
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
///
/// The proxy's records of the drill go to `report_dir/records.jsonl` (an
/// in-process proxy writes them; a running proxy's are copied from its admin API
/// as the drill goes), and every rule is counted and judged from them: a drill
/// whose chaos did not happen is inconclusive, never a pass.
pub(crate) async fn run_loaded(l: &Loaded, report_dir: &Path) -> Result<DrillReport, String> {
    let s = &l.scenario;
    let seed = s.seed.or(l.profile.seed).unwrap_or(0);
    let phases = phases(l);
    // Read and checked by the pre-flight; a workload added since has none.
    let mut prompts = l.prompts.clone();
    prompts.resize(s.all_workloads().len(), Vec::new());
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
                watch: None,
            })
        };
    let progress = brownout_drill::StderrProgress::new();
    let records = fresh_records_file(report_dir)?;
    let mut copied = None;
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
            let apis: Vec<Api> = s.all_workloads().iter().map(|w| w.api).collect();
            let sim = SimTarget::start(sim_cfg, &apis, seed, Some(records.clone())).await?;
            let text = std::fs::read_to_string(&l.profile_path).ok();
            sim.running.shared.apply(
                &l.profile,
                text,
                brownout::control::state::ProfileSource::File,
            )?;
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
            let token = apply_remote(l, "drill", &url, &admin, token_env.as_deref()).await?;
            // The proxy's phases follow the drill's schedule: each phase is set
            // through the admin API as the drill enters it.
            let (a, t) = (admin.clone(), token.clone());
            let driver = PhaseDriver(Arc::new(move |_, name: &str| {
                let (a, t, name) = (a.clone(), t.clone(), name.to_owned());
                tokio::spawn(async move {
                    let cmd = CtlCommand::Phase(name.clone());
                    if let Err(e) = brownout::control::ctl::run(&a, t.as_deref(), &cmd, true).await
                    {
                        eprintln!("cannot move {a} to phase `{name}`: {e}");
                    }
                });
            }));
            let target = |_: Api| url.clone();
            let copy = RecordCopy::start(admin.clone(), token.clone(), records.clone()).await;
            let r = run_engine_isolated(plan(&target, driver)?, progress)
                .await
                .map_err(|e| e.to_string());
            copied = Some(copy.finish().await);
            let r = r?;
            if r.stopped.is_some() {
                match brownout::control::ctl::run(
                    &admin,
                    token.as_deref(),
                    &CtlCommand::Faults(false),
                    true,
                )
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
    let spans: Vec<PhaseSpan> = phases
        .iter()
        .map(|p| PhaseSpan {
            name: p.name.clone(),
            duration_s: Some(p.duration.as_secs_f64()),
        })
        .collect();
    let (source, text) = match (&copied, std::fs::read_to_string(&records)) {
        (Some(Err(e)), _) => (format!("no records: {e}"), String::new()),
        (_, Err(e)) => (
            format!("no records: cannot read {}: {e}", records.display()),
            String::new(),
        ),
        (Some(Ok(_)), Ok(t)) => (format!("the proxy's records ({})", records.display()), t),
        (None, Ok(t)) => (
            format!("the in-process proxy's records ({})", records.display()),
            t,
        ),
    };
    let (chaos, incomplete) = brownout_drill::records::chaos_from_records(
        &[(records.display().to_string(), text.clone())],
        &ChaosInput {
            profile: Some(&l.profile),
            phases: &spans,
            allow_idle_rules: s.allow_idle_rules,
        },
        &source,
    );
    let mut report = DrillReport::judged(&s.name, baseline, result, slo, Some(chaos));
    report.cost = s.cost.as_ref().map(|c| {
        brownout_drill::records::chaos_cost_from_records(
            &[(records.display().to_string(), text)],
            &spans,
            c,
        )
    });
    let missed = match &copied {
        Some(Ok(n)) if *n > 0 => Some(format!(
            "{n} record(s) left the proxy's admin API before the drill could copy them, so the fault counts are partial"
        )),
        _ => None,
    };
    report.incomplete = [incomplete, missed]
        .into_iter()
        .flatten()
        .reduce(|a, b| format!("{a}; {b}"));
    Ok(report)
}

/// `report_dir/records.jsonl`, created empty (records of an earlier drill in the
/// same directory would be counted otherwise).
fn fresh_records_file(report_dir: &Path) -> Result<PathBuf, String> {
    std::fs::create_dir_all(report_dir).map_err(|e| {
        format!(
            "cannot create the report directory {}: {e}",
            report_dir.display()
        )
    })?;
    let path = report_dir.join("records.jsonl");
    std::fs::write(&path, b"").map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    Ok(path)
}

/// Copies a running proxy's records into a file while a drill runs, through its
/// admin API (`GET /api/v1/records?after=CURSOR`), so its faults can be counted
/// as an in-process proxy's are.
struct RecordCopy {
    stop: tokio::sync::watch::Sender<bool>,
    task: tokio::task::JoinHandle<Result<u64, String>>,
}

/// How often the copy asks for new records: the admin API keeps the last 1000,
/// so this copies up to 2000 requests a second without a loss.
const COPY_EVERY: Duration = Duration::from_millis(500);

impl RecordCopy {
    async fn start(admin: String, token: Option<String>, path: PathBuf) -> RecordCopy {
        let (stop, mut stopped) = tokio::sync::watch::channel(false);
        let start = brownout::control::ctl::records_after(&admin, token.as_deref(), None).await;
        let task = tokio::spawn(async move {
            let (_, mut cursor, _) = start.map_err(|e| e.to_string())?;
            let mut missed = 0u64;
            let mut out = std::fs::OpenOptions::new()
                .append(true)
                .open(&path)
                .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
            loop {
                let last = *stopped.borrow();
                if last {
                    // What the proxy is still writing for the drill's last requests.
                    tokio::time::sleep(COPY_EVERY).await;
                }
                loop {
                    let (recs, next, lost) = brownout::control::ctl::records_after(
                        &admin,
                        token.as_deref(),
                        Some(cursor),
                    )
                    .await
                    .map_err(|e| e.to_string())?;
                    missed += lost;
                    cursor = next;
                    let mut buf = Vec::new();
                    for r in &recs {
                        buf.extend_from_slice(r.to_string().as_bytes());
                        buf.push(b'\n');
                    }
                    std::io::Write::write_all(&mut out, &buf)
                        .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
                    if recs.len() < 1000 {
                        break;
                    }
                }
                if last {
                    return Ok(missed);
                }
                let _ = tokio::time::timeout(COPY_EVERY, stopped.changed()).await;
            }
        });
        RecordCopy { stop, task }
    }

    /// Copy what is left and stop; the records missed, or why none could be copied.
    async fn finish(self) -> Result<u64, String> {
        let _ = self.stop.send(true);
        self.task
            .await
            .unwrap_or_else(|e| Err(format!("the record copy failed: {e}")))
    }
}

/// `brownout drill SCENARIO`.
pub(crate) async fn drill(path: &Path, report_dir: Option<&Path>) -> ExitCode {
    match load(path) {
        Ok(l) => run_and_report(&l, report_dir).await,
        Err(d) => print_diags(&d),
    }
}

/// Where the reports go without `--report-dir`: the scenario's `report.dir`,
/// relative to the scenario file as `profile:` and `prompts:` are, else
/// `drill-report/` beside it (in the working directory for the built-in demo).
fn default_report_dir(loaded: &Loaded) -> PathBuf {
    let dir = loaded
        .scenario
        .report
        .as_ref()
        .map(|r| r.dir.clone())
        .unwrap_or_else(|| PathBuf::from("drill-report"));
    match &loaded.scenario_path {
        Some(file) => loaded.scenario.resolve(file, &dir),
        None => dir,
    }
}

/// Run a loaded drill, print its table and verdict, and write its reports; the
/// exit code is the verdict's.
pub(crate) async fn run_and_report(loaded: &Loaded, report_dir: Option<&Path>) -> ExitCode {
    let dir = report_dir
        .map(Path::to_path_buf)
        .unwrap_or_else(|| default_report_dir(loaded));
    let report = match run_loaded(loaded, &dir).await {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(EXIT_INVALID);
        }
    };
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
    if let Some(c) = &report.chaos {
        println!("\n{}", gate::render_chaos_table(c));
    }
    if let Some(c) = &report.cost {
        println!("\n{}", c.table());
    }
    if let Some(why) = &report.incomplete {
        println!("incomplete: {why}");
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
        let report = run_loaded(&loaded, &d.join("report")).await.unwrap();
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
        let r = run_loaded(&loaded, &d.join("report")).await.unwrap();
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
        let r = run_loaded(&loaded, &d.join("report")).await.unwrap();
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
