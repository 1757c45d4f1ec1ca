//! `brownout capacity SCENARIO`: search for the highest load at which the
//! scenario's objectives hold, at baseline and under each phase of
//! `capacity.under` (docs/capacity.md).
//!
//! The search logic, the probe's judge and the reports live in
//! `brownout_drill::capacity`; this module owns the target: simulated upstreams
//! with an in-process proxy, or a running proxy driven through its admin API.
//! Before each probe the target's rule state is reset (schedules, limiters, GPU
//! queues) and the phase is held with its ramps at their end; after it, the load
//! drains before the next one starts, so no probe inherits another's queue.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use brownout::control::ctl::CtlCommand;
use brownout_drill::capacity::{
    self, compare_with_baseline, judge, probe_line, wilson, CapacityReport, Judgement, ProbeConfig,
    ProbeEnd, ProbeReport, ProbeWatcher, RunReport, Search, SearchEnd, Z95,
};
use brownout_drill::cost::EnergySpec;
use brownout_drill::energy::EnergyMeter;
use brownout_drill::engine::{evaluate, run_engine_isolated, EnginePlan, EngineWorkload, Watch};
use brownout_drill::gate::EXIT_INVALID;
use brownout_drill::scenario::{Api, Arrival, CapacitySpec, Rate, TargetKind, Vary};
use brownout_drill::PhasePlan;
use brownout_faults::gpu::Replica;

use crate::drill::{load, Loaded, SimTarget};

/// Exit codes, consistent with `brownout drill`.
const EXIT_OK: u8 = 0;
/// A search found no passing load (below `start`): no capacity to report.
const EXIT_BELOW: u8 = 1;
/// Stopped by the operator (Ctrl-C) before the search ended.
const EXIT_STOPPED: u8 = 3;

/// How long the load may take to drain after a probe before the next starts.
const DRAIN_LIMIT: Duration = Duration::from_secs(30);

/// Flags that override the scenario's `capacity:` block.
#[derive(Debug, Default, Clone)]
pub(crate) struct Overrides {
    pub report_dir: Option<PathBuf>,
    pub start: Option<f64>,
    pub max: Option<f64>,
    pub under: Vec<String>,
    pub probe: Option<Duration>,
    pub warmup: Option<Duration>,
}

/// How the search reaches the target's fault state.
enum Control {
    /// The in-process proxy in front of simulated upstreams.
    InProcess(SimTarget),
    /// A running proxy's admin API.
    Remote {
        admin: String,
        token: Option<String>,
    },
}

impl Control {
    /// Make the target ready for a probe under `phase`: every rule's state fresh,
    /// the phase held with its ramps at their end, faults on; or, for `baseline`
    /// where the profile has no phase of that name, faults off.
    async fn prepare(&self, phase: &str, phases: &[String]) -> Result<(), String> {
        let index = phases.iter().position(|p| p == phase);
        match self {
            Control::InProcess(sim) => {
                let shared = &sim.running.shared;
                shared.reset_state()?;
                let profile = shared.profile.load();
                match index {
                    Some(i) => {
                        profile.clock.hold(i, tokio::time::Instant::now());
                        shared.release.turn_on();
                    }
                    None => shared.release.turn_off(),
                }
                Ok(())
            }
            Control::Remote { admin, token } => {
                let t = token.as_deref();
                match index {
                    Some(_) => {
                        let hold = CtlCommand::Hold {
                            name: Some(phase.to_owned()),
                            reset: true,
                        };
                        brownout::control::ctl::run(admin, t, &hold, true)
                            .await
                            .map_err(|e| format!("cannot hold phase `{phase}` on {admin}: {e}"))?;
                        brownout::control::ctl::run(admin, t, &CtlCommand::Faults(true), true)
                            .await
                            .map_err(|e| format!("cannot turn faults on at {admin}: {e}"))?;
                    }
                    None => {
                        brownout::control::ctl::run(admin, t, &CtlCommand::Faults(false), true)
                            .await
                            .map_err(|e| format!("cannot turn faults off at {admin}: {e}"))?;
                    }
                }
                Ok(())
            }
        }
    }

    /// Requests the proxy still has in flight.
    async fn in_flight(&self) -> Option<i64> {
        match self {
            Control::InProcess(sim) => Some(
                sim.running
                    .shared
                    .metrics
                    .active_by_listener()
                    .iter()
                    .map(|(_, n)| n)
                    .sum(),
            ),
            Control::Remote { admin, token } => {
                let out =
                    brownout::control::ctl::run(admin, token.as_deref(), &CtlCommand::Status, true)
                        .await
                        .ok()?;
                let v: serde_json::Value = serde_json::from_str(&out).ok()?;
                Some(
                    v["listeners"]
                        .as_array()?
                        .iter()
                        .filter_map(|l| l["active_requests"].as_i64())
                        .sum(),
                )
            }
        }
    }

    /// Wait until the proxy holds no request (a probe's leftovers drained), or
    /// [`DRAIN_LIMIT`].
    async fn drain(&self) {
        let deadline = tokio::time::Instant::now() + DRAIN_LIMIT;
        while tokio::time::Instant::now() < deadline {
            match self.in_flight().await {
                Some(n) if n > 0 => tokio::time::sleep(Duration::from_millis(100)).await,
                _ => break,
            }
        }
    }

    /// Leave the target as the search found it: no hold, faults on.
    async fn finish(self) {
        match self {
            Control::InProcess(sim) => sim.shutdown().await,
            Control::Remote { admin, token } => {
                let t = token.as_deref();
                let release = CtlCommand::Hold {
                    name: None,
                    reset: false,
                };
                if let Err(e) = brownout::control::ctl::run(&admin, t, &release, true).await {
                    eprintln!("cannot release the held phase on {admin}: {e}");
                }
                let _ =
                    brownout::control::ctl::run(&admin, t, &CtlCommand::Faults(true), true).await;
            }
        }
    }
}

/// Say once that power cannot be metered, and what the report does instead.
fn unmetered(warned: &AtomicBool, e: &brownout_drill::energy::EnergyError) {
    if !warned.swap(true, Ordering::Relaxed) {
        eprintln!("power is not metered ({e}); energy is priced at full power at capacity instead");
    }
}

/// What a probe meters its power with.
#[derive(Clone, Copy)]
struct Power<'a> {
    control: &'a Control,
    sim_gpu: Option<&'a Arc<Replica>>,
    /// Set once an unreadable source has been reported.
    warned: &'a AtomicBool,
}

impl Control {
    /// Start metering power for a probe under `phase`, per the scenario's
    /// `energy` block: DCGM when it names a Prometheus endpoint; in process, the
    /// `gpu_saturation` replicas of the held phase's rules, else the simulated
    /// GPU's replica; through a running proxy, its `/metrics`. `None`
    /// without an `energy` block or a source; a source that cannot be read is
    /// said once, and the run is then priced by load over capacity.
    async fn meter(
        &self,
        energy: Option<&EnergySpec>,
        sim_gpu: Option<&Arc<Replica>>,
        phase: &str,
        warned: &AtomicBool,
    ) -> Option<EnergyMeter> {
        let energy = energy?;
        let started = if energy.prometheus.is_some() {
            EnergyMeter::start(energy, None).await
        } else {
            match self {
                Control::InProcess(sim) => {
                    // A `gpu_saturation` rule under the held phase (the top level
                    // or that phase's; none at baseline, where faults are off)
                    // models the card the load runs on, so it is metered in the
                    // simulated GPU's place rather than as a second card.
                    let mut replicas: Vec<Arc<Replica>> = Vec::new();
                    let profile = sim.running.shared.profile.load();
                    if let Some(p) = profile.phases.iter().find(|p| &*p.name == phase) {
                        for r in profile.top.iter().chain(&p.rules) {
                            replicas.extend(r.state.replicas().cloned());
                        }
                    }
                    if replicas.is_empty() {
                        replicas.extend(sim_gpu.cloned());
                    }
                    if replicas.is_empty() {
                        return None;
                    }
                    EnergyMeter::start_replicas(energy, replicas)
                }
                Control::Remote { admin, .. } => {
                    let url = format!("{}/metrics", brownout::control::ctl::base_url(admin));
                    EnergyMeter::start(energy, Some(&url)).await
                }
            }
        };
        match started {
            Ok(m) => Some(m),
            Err(e) => {
                unmetered(warned, &e);
                None
            }
        }
    }
}

/// `brownout capacity SCENARIO`.
pub(crate) async fn capacity(path: &Path, o: &Overrides) -> ExitCode {
    let loaded = match load(path) {
        Ok(l) => l,
        Err(d) => {
            for d in d {
                eprintln!("{d}");
            }
            return ExitCode::from(EXIT_INVALID);
        }
    };
    let spec = match spec_of(&loaded, o) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("{}: {e}", path.display());
            return ExitCode::from(EXIT_INVALID);
        }
    };
    let dir = o.report_dir.clone().unwrap_or_else(|| {
        let d = loaded
            .scenario
            .report
            .as_ref()
            .map(|r| r.dir.clone())
            .unwrap_or_else(|| PathBuf::from("capacity-report"));
        loaded.scenario.resolve(path, &d)
    });
    let stop = Arc::new(AtomicBool::new(false));
    let flag = Arc::clone(&stop);
    let ctrl_c = tokio::spawn(async move {
        if tokio::signal::ctrl_c().await.is_ok() {
            eprintln!(
                "stopping: the probe under way ends now; the report covers what was measured"
            );
            flag.store(true, Ordering::Relaxed);
        }
    });
    let r = run(&loaded, &spec, stop).await;
    ctrl_c.abort();
    let report = match r {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(EXIT_INVALID);
        }
    };
    println!("\n{}", capacity::render_table(&report));
    for run in &report.runs {
        println!("{}: {} — {}", run.phase, run.verdict, run.reason);
    }
    if let Err(e) = write(&dir, &report) {
        eprintln!("cannot write the report to {}: {e}", dir.display());
        return ExitCode::from(EXIT_INVALID);
    }
    println!(
        "verdict: {} — capacity.json and capacity.html written to {}/",
        report.verdict.to_uppercase(),
        dir.display().to_string().trim_end_matches('/')
    );
    ExitCode::from(report.exit_code)
}

/// The scenario's `capacity:` block with the command line's overrides, checked
/// again (an override may break what the file's checks passed).
fn spec_of(l: &Loaded, o: &Overrides) -> Result<CapacitySpec, String> {
    let mut c = l.scenario.capacity.clone().ok_or_else(|| {
        "the scenario has no `capacity:` block; add one, e.g. `capacity: {vary: concurrency, start: 8, max: 256, probe: 20s, warmup: 5s, attainment: 0.99, under: [baseline]}`".to_owned()
    })?;
    if let Some(v) = o.start {
        c.start = v;
    }
    if let Some(v) = o.max {
        c.max = v;
    }
    if !o.under.is_empty() {
        c.under = o.under.clone();
    }
    if let Some(v) = o.probe {
        c.probe = brownout_faults::duration::DurationStr(v);
    }
    if let Some(v) = o.warmup {
        c.warmup = brownout_faults::duration::DurationStr(v);
    }
    if !(c.start > 0.0 && c.start.is_finite()) {
        return Err(format!("--start must be positive, not {}", c.start));
    }
    if c.max < c.start {
        return Err(format!(
            "`max` ({}) is below `start` ({}): there is nothing to search",
            c.max, c.start
        ));
    }
    if c.vary == Vary::Concurrency && (c.start.fract() != 0.0 || c.max.fract() != 0.0) {
        return Err(
            "with `vary: concurrency`, `start` and `max` count users and must be whole".into(),
        );
    }
    let phases: Vec<String> = l.profile.phases.iter().map(|p| p.name.clone()).collect();
    for u in &c.under {
        if u != "baseline" && !phases.contains(u) {
            return Err(format!(
                "`{u}` (--under) is not a phase of the profile; its phases: {}",
                if phases.is_empty() {
                    "none".to_owned()
                } else {
                    phases.join(", ")
                }
            ));
        }
    }
    if c.probe.0.is_zero() {
        return Err("the probe time must be positive".into());
    }
    Ok(c)
}

fn write(dir: &Path, r: &CapacityReport) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    let json = serde_json::to_string_pretty(r).map_err(std::io::Error::other)?;
    std::fs::write(dir.join("capacity.json"), json + "\n")?;
    let html = capacity::render_html(r).map_err(std::io::Error::other)?;
    std::fs::write(dir.join("capacity.html"), html)
}

/// Set up the target, search under each phase, and put the report together.
pub(crate) async fn run(
    l: &Loaded,
    spec: &CapacitySpec,
    stop: Arc<AtomicBool>,
) -> Result<CapacityReport, String> {
    let s = &l.scenario;
    let seed = s.seed.or(l.profile.seed).unwrap_or(0);
    // The simulated GPU's replica, whose busy time meters a probe's power.
    let mut sim_gpu: Option<Arc<Replica>> = None;
    let (control, target): (Control, Box<dyn Fn(Api) -> String + Send + Sync>) =
        match s.target.kind() {
            TargetKind::Sim => {
                let gpu = s
                    .target
                    .gpu
                    .as_deref()
                    .map(brownout_sim::SimGpu::from_spec)
                    .transpose()?;
                sim_gpu = gpu.as_ref().map(|g| Arc::clone(&g.0));
                let sim_cfg = brownout_sim::SimConfig {
                    seed,
                    gpu,
                    ..Default::default()
                };
                let apis: Vec<Api> = s.all_workloads().iter().map(|w| w.api).collect();
                let sim = SimTarget::start(sim_cfg, &apis, seed, None).await?;
                let text = std::fs::read_to_string(&l.profile_path).ok();
                sim.running.shared.apply(
                    &l.profile,
                    text,
                    brownout::control::state::ProfileSource::File,
                )?;
                eprintln!(
                    "brownout capacity `{}`: {}; profile `{}`",
                    s.name,
                    sim.describe(),
                    l.profile.name
                );
                let urls: Vec<(Api, String)> = apis
                    .iter()
                    .map(|a| (*a, sim.url(*a).unwrap_or_default().to_owned()))
                    .collect();
                let target = move |api: Api| {
                    urls.iter()
                        .find(|(a, _)| *a == api)
                        .map(|(_, u)| u.clone())
                        .unwrap_or_default()
                };
                (Control::InProcess(sim), Box::new(target))
            }
            TargetKind::Proxy {
                url,
                admin,
                token_env,
            } => {
                let token =
                    crate::drill::apply_remote(l, "capacity", &url, &admin, token_env.as_deref())
                        .await?;
                (
                    Control::Remote { admin, token },
                    Box::new(move |_| url.clone()),
                )
            }
        };
    let phases: Vec<String> = l.profile.phases.iter().map(|p| p.name.clone()).collect();
    let attainment = spec.attainment(s.slo.as_ref());
    let mut runs = Vec::new();
    let mut stopped = false;
    let warned = AtomicBool::new(false);
    for phase in &spec.under {
        if stopped {
            break;
        }
        let mut search = Search::new(
            spec.start,
            spec.max,
            spec.tolerance,
            spec.vary == Vary::Concurrency,
        );
        let mut probes = Vec::new();
        let mut ceiling = false;
        while let Some(load) = search.next_load() {
            if let Err(e) = control.prepare(phase, &phases).await {
                control.finish().await;
                return Err(e);
            }
            let power = Power {
                control: &control,
                sim_gpu: sim_gpu.as_ref(),
                warned: &warned,
            };
            let p = match probe(
                l, spec, attainment, phase, load, seed, &*target, &stop, power,
            )
            .await
            {
                Ok(p) => p,
                Err(e) => {
                    control.finish().await;
                    return Err(e);
                }
            };
            control.drain().await;
            eprintln!("{}", probe_line(phase, spec.vary, &p));
            let verdict = p.verdict.clone();
            let passed = p.passed;
            probes.push(p);
            if verdict == "stopped_by_operator" {
                stopped = true;
                search.stop();
                break;
            }
            if verdict == "generator_bound" {
                ceiling = true;
                search.stop();
                break;
            }
            search.record(load, passed);
        }
        let end = search.end().unwrap_or(SearchEnd::BelowStart);
        let mut run = RunReport::finish(phase, spec.vary, end, probes);
        if ceiling {
            run.verdict = "generator ceiling".to_owned();
            run.at_least = run.capacity.is_some();
            run.reason = format!(
                "the load generator reached its own ceiling (its event loop fell behind by more than {} ms a tick, or its thread was over {:.0}% busy); what passed before is a lower bound, not the server's capacity",
                capacity::GENERATOR_LATE_TICK.as_millis(),
                capacity::GENERATOR_BUSY_SHARE * 100.0
            );
        } else if stopped {
            run.verdict = "stopped".to_owned();
            run.at_least = run.capacity.is_some();
            run.reason = "stopped by the operator before the search ended".to_owned();
        }
        run.price(s.cost.as_ref(), s.energy.as_ref());
        runs.push(run);
    }
    control.finish().await;
    let baseline = s
        .baseline
        .clone()
        .filter(|b| spec.under.contains(b))
        .or_else(|| {
            spec.under
                .iter()
                .find(|u| *u == "baseline")
                .or(spec.under.first())
                .cloned()
        })
        .unwrap_or_default();
    compare_with_baseline(&mut runs, &baseline);
    let (verdict, exit_code) = if stopped {
        ("stopped", EXIT_STOPPED)
    } else if runs.iter().any(|r| r.capacity.is_none()) {
        ("below start", EXIT_BELOW)
    } else {
        ("ok", EXIT_OK)
    };
    Ok(CapacityReport {
        name: s.name.clone(),
        attainment,
        runs,
        verdict: verdict.to_owned(),
        exit_code,
    })
}

/// One probe of `load` under `phase`: warmup, then measured until the Wilson
/// interval decides (or `probe_max`), and judged on the other objectives too.
#[allow(clippy::too_many_arguments)]
async fn probe(
    l: &Loaded,
    spec: &CapacitySpec,
    attainment: f64,
    phase: &str,
    load: f64,
    seed: u64,
    target: &(dyn Fn(Api) -> String + Send + Sync),
    stop: &Arc<AtomicBool>,
    power: Power<'_>,
) -> Result<ProbeReport, String> {
    let s = &l.scenario;
    let warmup = spec.warmup.0;
    let mut phases = Vec::new();
    if !warmup.is_zero() {
        phases.push(PhasePlan::new("warmup", warmup));
    }
    // The engine's plan outlasts `probe_max` a little: the watcher ends it.
    phases.push(PhasePlan::new(
        phase,
        spec.probe_max() + Duration::from_secs(1),
    ));
    let measured_phase = phases.len() - 1;
    let mut prompts = l.prompts.clone();
    prompts.resize(s.all_workloads().len(), Vec::new());
    let mut workloads = Vec::new();
    for (i, (w, prompts)) in s.all_workloads().into_iter().zip(&prompts).enumerate() {
        let mut spec_w = w.clone();
        // The first workload's load is searched; any others keep theirs.
        if i == 0 {
            spec_w.arrival = match spec.vary {
                Vary::Concurrency => Arrival {
                    rate: None,
                    concurrency: Some(load.round().max(1.0) as u32),
                },
                Vary::Rate => Arrival {
                    rate: Some(Rate(load)),
                    concurrency: None,
                },
            };
            // Closed-loop users each need a connection of their own.
            if spec.vary == Vary::Concurrency {
                spec_w.client.max_connections = spec_w.client.max_connections.max(load as u32);
            }
        }
        let t = target(w.api);
        workloads.push(EngineWorkload {
            spec: spec_w,
            target: t.parse().map_err(|e| format!("target `{t}`: {e}"))?,
            prompts: prompts.clone(),
        });
    }
    let goodput = s.slo.as_ref().and_then(|slo| slo.for_phase(phase).goodput);
    let watcher = Arc::new(Mutex::new(ProbeWatcher::new(ProbeConfig {
        vary: spec.vary,
        load,
        warmup,
        probe: spec.probe.0,
        probe_max: spec.probe_max(),
        attainment,
        goodput,
        measured_phase,
        stop: Some(Arc::clone(stop)),
    })));
    let plan = EnginePlan {
        phases,
        workloads,
        seed,
        slo: s.slo.clone().unwrap_or_default(),
        stop_when: s.stop_when.clone(),
        baseline: None,
        phase_driver: None,
        watch: Some(Watch(watcher.clone())),
    };
    // Power is metered from the end of warmup to the probe's end.
    let meter = async {
        tokio::time::sleep(warmup).await;
        power
            .control
            .meter(s.energy.as_ref(), power.sim_gpu, phase, power.warned)
            .await
    };
    let (result, meter) =
        tokio::join!(run_engine_isolated(plan, brownout_drill::NoProgress), meter);
    let result = result.map_err(|e| e.to_string())?;
    let reading = match meter {
        Some(m) => match m.finish().await {
            Ok(r) => Some(r),
            Err(e) => {
                unmetered(power.warned, &e);
                None
            }
        },
        None => None,
    };
    let w = watcher
        .lock()
        .map_err(|_| "the probe's watcher failed".to_owned())?;
    let measured = w.measured(Duration::from_secs_f64(result.stats.elapsed_s));
    let secs = measured.as_secs_f64();
    let (rate_rps, output_tokens_per_s) = w.throughput(measured);
    let input_tokens_per_s = w.input_rate(rate_rps);
    let (lo, hi) = wilson(w.good, w.requests, Z95);
    let mut ttft = w.ttft_ms.clone();
    ttft.sort_by(f64::total_cmp);
    let ttft_p95 = (!ttft.is_empty())
        .then(|| ttft[((ttft.len() as f64 * 0.95).ceil() as usize).clamp(1, ttft.len()) - 1]);
    // The other objectives of the phase (latency percentiles, error rate), as the
    // drill judges them; goodput is the attainment's, and answer comparisons need
    // a baseline phase a probe does not have.
    let broken: Vec<String> = s
        .slo
        .as_ref()
        .map(|slo| evaluate(slo, &result))
        .unwrap_or_default()
        .into_iter()
        .filter(|c| {
            c.scope == phase
                && !c.passed
                && !matches!(c.slo.as_str(), "goodput" | "answer_match" | "recall_at_k")
        })
        .map(|c| c.message)
        .collect();
    let attainment_judged = judge(w.good, w.requests, attainment);
    let (passed, verdict, reason) = match (&w.end, &result.stopped) {
        (Some(ProbeEnd::Stopped), _) => (
            false,
            "stopped_by_operator",
            "stopped by the operator".to_owned(),
        ),
        _ if w.generator_bound() => (
            false,
            "generator_bound",
            format!(
                "the load generator fell behind ({:.0} ms late a tick, its thread {:.0}% busy): this probe measured the generator, not the server",
                w.mean_tick_lateness().as_secs_f64() * 1000.0,
                w.generator_cpu_share().unwrap_or(0.0) * 100.0
            ),
        ),
        (Some(ProbeEnd::Saturated(why)), _) => (false, "saturated", why.clone()),
        (_, Some(why)) => (false, "stopped", format!("stop_when fired: {why}")),
        _ if w.requests == 0 => (false, "fail", "no request finished in the measured window".to_owned()),
        _ => match attainment_judged {
            Judgement::Pass if broken.is_empty() => (
                true,
                "pass",
                format!("lower bound {lo:.3} ≥ {attainment}"),
            ),
            Judgement::Pass => (false, "slo", broken.join("; ")),
            Judgement::Fail => (
                false,
                "fail",
                format!("upper bound {hi:.3} < {attainment}"),
            ),
            Judgement::Undecided => (
                false,
                "undecided",
                format!(
                    "[{lo:.3}, {hi:.3}] still straddles {attainment} after {secs:.1} s"
                ),
            ),
        },
    };
    Ok(ProbeReport {
        load,
        requests: w.requests,
        good: w.good,
        attainment: (w.requests > 0).then(|| w.good as f64 / w.requests as f64),
        ci: [lo, hi],
        passed,
        verdict: verdict.to_owned(),
        reason,
        rate_rps,
        output_tokens_per_s,
        ttft_p95_ms: ttft_p95,
        error_rate: (w.requests > 0).then(|| w.errors as f64 / w.requests as f64),
        measured_s: secs,
        generator_bound: w.generator_bound(),
        generator_cpu: w.generator_cpu_share(),
        input_tokens_per_s,
        power_w: reading.map(|r| r.mean_w),
        power_source: reading.map(|r| r.source),
    })
}
