//! The `brownout` command line (README.md, "Commands").

#![forbid(unsafe_code)]
#![deny(clippy::unwrap_used, clippy::expect_used)]

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use brownout::config::{env_overrides, load, FileConfig, Overrides};
use brownout::{start, StartOptions};
use clap::{Parser, Subcommand};

mod capacity;
mod drill;

/// The demo's profile, built into the binary so `brownout demo` needs no files.
const DEMO_PROFILE: &str = include_str!("../../../profiles/demo.yaml");
/// The demo's drill: a RAG service on simulated upstreams.
const DEMO_SCENARIO: &str = include_str!("../../../scenarios/demo.yaml");

/// Built-in profiles: (file name, text).
const BUILTIN: &[(&str, &str)] = &[
    ("demo", DEMO_PROFILE),
    (
        "openai-429-storm",
        include_str!("../../../profiles/openai-429-storm.yaml"),
    ),
    (
        "slow-upstream",
        include_str!("../../../profiles/slow-upstream.yaml"),
    ),
    (
        "flaky-network",
        include_str!("../../../profiles/flaky-network.yaml"),
    ),
    ("overload", include_str!("../../../profiles/overload.yaml")),
    (
        "anthropic-overloaded",
        include_str!("../../../profiles/anthropic-overloaded.yaml"),
    ),
    (
        "openai-token-quota",
        include_str!("../../../profiles/openai-token-quota.yaml"),
    ),
    (
        "slow-first-token",
        include_str!("../../../profiles/slow-first-token.yaml"),
    ),
    (
        "stream-stalls",
        include_str!("../../../profiles/stream-stalls.yaml"),
    ),
    (
        "truncated-streams",
        include_str!("../../../profiles/truncated-streams.yaml"),
    ),
    (
        "midstream-errors",
        include_str!("../../../profiles/midstream-errors.yaml"),
    ),
    (
        "gpu-saturation-h100",
        include_str!("../../../profiles/gpu-saturation-h100.yaml"),
    ),
    (
        "gpu-noisy-neighbor",
        include_str!("../../../profiles/gpu-noisy-neighbor.yaml"),
    ),
    (
        "kv-cache-pressure",
        include_str!("../../../profiles/kv-cache-pressure.yaml"),
    ),
    (
        "cold-start",
        include_str!("../../../profiles/cold-start.yaml"),
    ),
    (
        "guidellm-mock-16-slots",
        include_str!("../../../profiles/guidellm-mock-16-slots.yaml"),
    ),
    (
        "vector-recall-loss",
        include_str!("../../../profiles/vector-recall-loss.yaml"),
    ),
    (
        "stale-replica",
        include_str!("../../../profiles/stale-replica.yaml"),
    ),
    (
        "vector-db-overload",
        include_str!("../../../profiles/vector-db-overload.yaml"),
    ),
    (
        "embedding-drift",
        include_str!("../../../profiles/embedding-drift.yaml"),
    ),
    (
        "rag-brownout",
        include_str!("../../../profiles/rag-brownout.yaml"),
    ),
];

#[derive(Parser, Debug)]
#[command(
    name = "brownout",
    version,
    about = "A chaos and fault-injection reverse proxy for AI services"
)]
struct Cli {
    /// Log format: `text` (default) or `json`.
    #[arg(long, global = true, default_value = "text")]
    log_format: String,
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand, Debug)]
enum Cmd {
    /// Run the proxy.
    Serve(ServeArgs),
    /// Run a simulated upstream.
    Sim {
        /// `openai`, `anthropic`, or a vector database with exact k-NN: `qdrant`, `chroma`.
        #[arg(long, default_value = "openai")]
        api: String,
        #[arg(long, default_value = "127.0.0.1:8000")]
        listen: String,
        /// Time to first token.
        #[arg(long, default_value = "30ms")]
        ttft: String,
        /// Time between tokens.
        #[arg(long, default_value = "10ms")]
        itl: String,
        #[arg(long)]
        gpu: Option<String>,
    },
    /// The built-in drill: a RAG service (simulated GPU-paced model and vector
    /// database) through baseline → brownout → recovery, with its reports.
    Demo {
        /// Total length; the profile's phases are scaled to fit (e.g. 15s).
        #[arg(long)]
        duration: Option<String>,
        /// Requests per second of each workload (default: the scenario's, 10/s).
        #[arg(long)]
        rate: Option<f64>,
        /// Seed (default: the scenario's, 42).
        #[arg(long)]
        seed: Option<u64>,
        /// Where the report goes.
        #[arg(long, default_value = "brownout-report")]
        report_dir: PathBuf,
    },
    /// Run a drill scenario (docs/drills.md): load, phases, SLO gates, reports.
    /// Exit 0 pass, 1 SLO broken, 2 invalid input, 3 stopped by `stop_when`.
    Drill {
        scenario: PathBuf,
        /// Write reports here instead of the scenario's `report.dir`.
        #[arg(long)]
        report_dir: Option<PathBuf>,
    },
    /// Find the highest load at which a scenario's objectives hold, at baseline and
    /// under each phase of its `capacity.under` (docs/drills.md, docs/capacity.md).
    ///
    /// The load (closed-loop users or an open-loop rate, `capacity.vary`) doubles
    /// from `start` until a probe fails, then is bisected to `tolerance`. Each
    /// probe warms up, then is judged on the share of good requests (the
    /// `slo.goodput` thresholds) with a 95% Wilson interval against
    /// `capacity.attainment`, and on the scenario's other objectives; it is
    /// extended while undecided, up to `probe_max`, and ended early when the
    /// target saturates. Works in-process (`target: {upstream: sim}`) or against a
    /// running proxy (`target: {url, admin}`) in front of any upstream; phases are
    /// held through its admin API. Writes capacity.json and capacity.html.
    ///
    /// Exit code: 0 a capacity was found for every phase (or `≥ max`); 1 a phase's
    /// first probe failed (below start: no capacity); 2 invalid input; 3 stopped
    /// (Ctrl-C) before the search ended.
    Capacity {
        scenario: PathBuf,
        /// Write capacity.json and capacity.html here instead of the scenario's
        /// `report.dir` (default `capacity-report/` beside the scenario).
        #[arg(long)]
        report_dir: Option<PathBuf>,
        /// Override `capacity.start`.
        #[arg(long)]
        start: Option<f64>,
        /// Override `capacity.max`.
        #[arg(long)]
        max: Option<f64>,
        /// Override `capacity.under` (comma-separated phases; `baseline` is no faults).
        #[arg(long, value_delimiter = ',')]
        under: Vec<String>,
        /// Override `capacity.probe` (e.g. 5s).
        #[arg(long)]
        probe: Option<String>,
        /// Override `capacity.warmup` (e.g. 2s).
        #[arg(long)]
        warmup: Option<String>,
    },
    /// Rebuild a drill report from proxy record files (JSON lines), merged.
    ///
    /// Exit code: the verdict's with --scenario (0 pass, 1 an objective broken,
    /// 4 inconclusive); 0 and no verdict without objectives; 2 for unreadable
    /// files or an invalid scenario.
    Report {
        #[arg(required = true)]
        records: Vec<PathBuf>,
        /// A scenario whose SLOs and baseline to apply. Without objectives there
        /// is no verdict (exit 0): records alone cannot pass.
        #[arg(long)]
        scenario: Option<PathBuf>,
        #[arg(long, default_value = "brownout-report")]
        report_dir: PathBuf,
    },
    /// Check profiles, configs or drill scenarios; errors give file:line:column and a hint.
    Validate {
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
    /// Say in plain words what a profile will do, phase by phase.
    Explain { profile: String },
    /// List the built-in profiles.
    Profiles {
        /// Print one built-in profile's text.
        #[arg(long)]
        show: Option<String>,
        /// List the error presets instead.
        #[arg(long)]
        presets: bool,
    },
    /// Print the JSON Schema of the profile format.
    Schema,
    /// Drive the simulated GPU model at several concurrencies (in virtual time) and
    /// print TTFT, ITL and throughput beside the published curve.
    GpuSweep {
        #[arg(long, default_value = "h100-80gb")]
        gpu: String,
        #[arg(long, default_value = "llama-3.1-8b")]
        model: String,
        /// Comma-separated closed-loop concurrencies (default: the calibration set).
        #[arg(long, value_delimiter = ',')]
        concurrency: Vec<u32>,
        #[arg(long)]
        prompt_tokens: Option<u64>,
        #[arg(long)]
        output_tokens: Option<u64>,
        /// Simulated time per concurrency level.
        #[arg(long)]
        duration: Option<String>,
        /// Write the chart here (SVG).
        #[arg(long)]
        chart: Option<PathBuf>,
        /// Print the results as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Talk to a running proxy's admin API (token from BROWNOUT_ADMIN_TOKEN).
    Ctl {
        /// The admin address.
        #[arg(long, env = "BROWNOUT_ADMIN", default_value = "127.0.0.1:9911")]
        admin: String,
        /// Print the API's JSON instead of readable text.
        #[arg(long)]
        json: bool,
        #[command(subcommand)]
        what: CtlWhat,
    },
}

#[derive(Subcommand, Debug)]
enum CtlWhat {
    /// Exit 0 when the admin API's /healthz answers 200 (container HEALTHCHECK).
    Health,
    /// Profile, phase, faults on/off, records.
    Status,
    /// Replace the running profile (YAML or JSON); an invalid one is refused.
    Apply { file: PathBuf },
    /// The kill switch: `off` releases every held request; `on` resumes.
    Faults {
        #[arg(value_parser = ["on", "off"])]
        state: String,
    },
    /// Jump to a phase by name, or `next`; `--hold` stops the clock there (ramps at
    /// their end) until another phase call; `--release` lets a held clock run.
    Phase {
        #[arg(required_unless_present = "release")]
        name: Option<String>,
        #[arg(long, conflicts_with = "release")]
        hold: bool,
        #[arg(long)]
        release: bool,
    },
}

#[derive(clap::Args, Debug)]
struct ServeArgs {
    /// Config file (YAML): listeners, admin, records, limits. Flags below override
    /// its values; without one, the flags describe a single listener.
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Address the proxy listens on [default: 127.0.0.1:8080].
    #[arg(long, value_name = "ADDR")]
    listen: Option<String>,
    /// Where requests go: the model server or vector database, `http://HOST:PORT`
    /// or `https://...` (h2c:// or h2:// for an HTTP/2 upstream such as gRPC).
    #[arg(long, value_name = "URL")]
    upstream: Option<String>,
    /// The upstream's API, for classifying endpoints and shaping errors: openai,
    /// anthropic, vllm, tgi, ollama, triton, qdrant, chroma, milvus, weaviate,
    /// pinecone [default: guessed from each request's path].
    #[arg(long, value_name = "KIND")]
    api: Option<String>,
    /// Fault profile (YAML) to apply at start; SIGHUP or the admin API reloads it.
    /// Without one the proxy is transparent.
    #[arg(long, value_name = "FILE")]
    profile: Option<PathBuf>,
    /// Admin API and dashboard address (e.g. 127.0.0.1:9911); a non-loopback
    /// address needs a token in BROWNOUT_ADMIN_TOKEN.
    #[arg(long, value_name = "ADDR")]
    admin: Option<String>,
    /// Append one JSON record per exchange to this file (SIGUSR1 reopens it
    /// after rotation).
    #[arg(long, value_name = "FILE")]
    record: Option<PathBuf>,
    /// Seed for every random choice the faults make, so a run can be repeated.
    #[arg(long, value_name = "N")]
    seed: Option<u64>,
    /// Write the process id to this file (for `logrotate`'s `postrotate kill -USR1`),
    /// removed on exit.
    #[arg(long)]
    pid_file: Option<PathBuf>,
}

fn init_logging(format: &str) {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if format == "json" {
        builder.json().init();
    } else {
        builder.with_ansi(std::io::stderr().is_terminal()).init();
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging(&cli.log_format);
    match cli.cmd {
        Cmd::Validate { files } => validate(&files),
        Cmd::Report {
            records,
            scenario,
            report_dir,
        } => report_cmd(&records, scenario.as_deref(), &report_dir),
        Cmd::Explain { profile } => explain(&profile),
        Cmd::Profiles { show, presets } => profiles(show.as_deref(), presets),
        Cmd::GpuSweep {
            gpu,
            model,
            concurrency,
            prompt_tokens,
            output_tokens,
            duration,
            chart,
            json,
        } => gpu_sweep(
            &gpu,
            &model,
            concurrency,
            prompt_tokens,
            output_tokens,
            duration.as_deref(),
            chart,
            json,
        ),
        Cmd::Schema => {
            println!("{}", brownout_faults::schema::profile_schema_json());
            ExitCode::SUCCESS
        }
        cmd => {
            // `serve` forwards on worker threads of its own (see `serve`); its main
            // runtime only runs the admin API and signals.
            let built = if matches!(cmd, Cmd::Serve(_)) {
                tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
            } else {
                tokio::runtime::Builder::new_multi_thread()
                    .enable_all()
                    .build()
            };
            let rt = match built {
                Ok(rt) => rt,
                Err(e) => {
                    eprintln!("error: cannot start the runtime: {e}");
                    return ExitCode::FAILURE;
                }
            };
            rt.block_on(async_main(cmd))
        }
    }
}

async fn async_main(cmd: Cmd) -> ExitCode {
    let r = match cmd {
        Cmd::Serve(a) => serve(a).await,
        Cmd::Sim {
            api,
            listen,
            ttft,
            itl,
            gpu,
        } => sim(&api, &listen, &ttft, &itl, gpu).await,
        Cmd::Demo {
            duration,
            rate,
            seed,
            report_dir,
        } => demo(duration.as_deref(), rate, seed, &report_dir).await,
        Cmd::Drill {
            scenario,
            report_dir,
        } => return drill::drill(&scenario, report_dir.as_deref()).await,
        Cmd::Capacity {
            scenario,
            report_dir,
            start,
            max,
            under,
            probe,
            warmup,
        } => {
            let dur = |flag: &str, v: Option<String>| -> Result<Option<Duration>, String> {
                v.map(|v| {
                    brownout_faults::duration::parse_duration(&v)
                        .map_err(|e| format!("{flag}: {e}"))
                })
                .transpose()
            };
            let (probe, warmup) = match (dur("--probe", probe), dur("--warmup", warmup)) {
                (Ok(p), Ok(w)) => (p, w),
                (Err(e), _) | (_, Err(e)) => {
                    eprintln!("error: {e}");
                    return ExitCode::from(2);
                }
            };
            let o = capacity::Overrides {
                report_dir,
                start,
                max,
                under,
                probe,
                warmup,
            };
            return capacity::capacity(&scenario, &o).await;
        }
        Cmd::Ctl { admin, json, what } => {
            let cmd = match what {
                CtlWhat::Health => brownout::control::ctl::CtlCommand::Health,
                CtlWhat::Status => brownout::control::ctl::CtlCommand::Status,
                CtlWhat::Apply { file } => brownout::control::ctl::CtlCommand::Apply(file),
                CtlWhat::Faults { state } => {
                    brownout::control::ctl::CtlCommand::Faults(state == "on")
                }
                CtlWhat::Phase {
                    name,
                    hold,
                    release,
                } => match (name, hold, release) {
                    (_, _, true) => brownout::control::ctl::CtlCommand::Hold {
                        name: None,
                        reset: false,
                    },
                    (Some(n), true, false) => brownout::control::ctl::CtlCommand::Hold {
                        name: Some(n),
                        reset: false,
                    },
                    (n, _, _) => brownout::control::ctl::CtlCommand::Phase(n.unwrap_or_default()),
                },
            };
            let token = std::env::var("BROWNOUT_ADMIN_TOKEN")
                .ok()
                .filter(|t| !t.is_empty());
            match brownout::control::ctl::run(&admin, token.as_deref(), &cmd, json).await {
                Ok(out) => {
                    println!("{}", out.trim_end());
                    Ok(ExitCode::SUCCESS)
                }
                Err(e) => {
                    eprintln!("error: {e}");
                    Ok(ExitCode::from(1))
                }
            }
        }
        // Handled before the runtime starts.
        Cmd::Validate { .. }
        | Cmd::Report { .. }
        | Cmd::Explain { .. }
        | Cmd::Profiles { .. }
        | Cmd::Schema
        | Cmd::GpuSweep { .. } => Ok(ExitCode::SUCCESS),
    };
    match r {
        Ok(c) => c,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(2)
        }
    }
}

async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = term.recv() => {},
                    _ = tokio::signal::ctrl_c() => {},
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

/// Wait for SIGTERM or SIGINT, meanwhile serving what log rotators and operators
/// send: SIGUSR1 reopens the record file (as nginx reopens its logs), SIGHUP
/// re-reads the profile file (an invalid one is refused; the last good one stays).
/// No other signal stops the proxy.
/// A record file that reaches the process's file-size limit (`ulimit -f`, a
/// container's) must fail its write with `EFBIG`, counted as a write error like a
/// full disk, rather than kill the sidecar with SIGXFSZ's default action: a handler
/// is installed (tokio keeps it for the life of the process) whose events nobody
/// waits for.
fn ignore_file_size_signal() {
    #[cfg(unix)]
    {
        /// SIGXFSZ on Linux, macOS and the BSDs.
        const SIGXFSZ: i32 = 25;
        use tokio::signal::unix::{signal, SignalKind};
        if let Err(e) = signal(SignalKind::from_raw(SIGXFSZ)) {
            tracing::warn!(
                "cannot handle SIGXFSZ ({e}): a record file past the file-size limit stops the process"
            );
        }
    }
}

async fn serve_signals(running: &brownout::Running) {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        let (Ok(mut usr1), Ok(mut hup)) = (
            signal(SignalKind::user_defined1()),
            signal(SignalKind::hangup()),
        ) else {
            tracing::error!("cannot listen for SIGUSR1/SIGHUP; only SIGTERM and SIGINT are served");
            shutdown_signal().await;
            return;
        };
        let stop = shutdown_signal();
        tokio::pin!(stop);
        loop {
            tokio::select! {
                _ = &mut stop => return,
                _ = usr1.recv() => {
                    tracing::info!("SIGUSR1: reopening the record file");
                    running.shared.recorder.reopen();
                }
                _ = hup.recv() => match &running.shared.profile_path {
                    Some(path) => {
                        tracing::info!(file = %path.display(), "SIGHUP: re-reading the profile");
                        let _ = brownout::control::reload::reload_from_file(path, &running.shared, true);
                    }
                    None => tracing::info!("SIGHUP: no profile file to re-read"),
                },
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = running;
        shutdown_signal().await;
    }
}

async fn serve(a: ServeArgs) -> Result<ExitCode, String> {
    ignore_file_size_signal();
    let flags = Overrides {
        config: a.config.clone(),
        listen: a.listen,
        upstream: a.upstream,
        api: a.api,
        profile: a.profile,
        admin: a.admin,
        record: a.record,
        seed: a.seed,
    };
    let env = env_overrides(|k| std::env::var(k).ok()).map_err(|e| e.to_string())?;
    let config = load(&flags, &env).map_err(|e| e.to_string())?;
    let admin_token = std::env::var(&config.admin.token_env)
        .ok()
        .filter(|t| !t.is_empty());
    let workers = config
        .workers
        .filter(|n| *n > 0)
        .unwrap_or_else(default_workers);
    let running = start(StartOptions {
        config,
        config_path: a.config,
        builtin_profile: None,
        admin_token,
        no_admin: false,
        workers,
    })
    .await
    .map_err(|e| e.to_string())?;
    if let Some(p) = &a.pid_file {
        std::fs::write(p, format!("{}\n", std::process::id()))
            .map_err(|e| format!("cannot write the pid file {}: {e}", p.display()))?;
    }
    serve_signals(&running).await;
    if let Some(p) = &a.pid_file {
        let _ = std::fs::remove_file(p);
    }
    tracing::info!("shutting down: finishing in-flight requests");
    running.shutdown().await;
    tracing::info!("stopped");
    Ok(ExitCode::SUCCESS)
}

/// One worker thread per CPU, or as many as `TOKIO_WORKER_THREADS` says (the
/// variable tokio's own runtimes read, kept working for `serve`).
fn default_workers() -> usize {
    std::env::var("TOKIO_WORKER_THREADS")
        .ok()
        .and_then(|v| v.trim().parse::<usize>().ok())
        .filter(|n| *n > 0)
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
}

fn parse_dur(what: &str, s: &str) -> Result<Duration, String> {
    brownout_faults::duration::parse_duration(s).map_err(|e| format!("{what} `{s}`: {e}"))
}

async fn sim(
    api: &str,
    listen: &str,
    ttft: &str,
    itl: &str,
    gpu: Option<String>,
) -> Result<ExitCode, String> {
    // `--gpu h100-80gb` or `--gpu h100-80gb/llama-3.1-8b`.
    let sim_gpu = gpu
        .as_deref()
        .map(|spec| brownout_sim::SimGpu::from_spec(spec).map_err(|e| format!("--gpu: {e}")))
        .transpose()?;
    let addr = brownout::config::parse_addr("listen", listen).map_err(|e| e.to_string())?;
    let cfg = brownout_sim::SimConfig {
        api: api.parse().map_err(|e| format!("{e}"))?,
        ttft: parse_dur("--ttft", ttft)?,
        itl: parse_dur("--itl", itl)?,
        gpu: sim_gpu,
        ..Default::default()
    };
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|e| format!("cannot listen on {addr}: {e}"))?;
    eprintln!(
        "simulated {api} upstream on http://{}",
        listener.local_addr().map_err(|e| e.to_string())?
    );
    brownout_sim::serve(listener, cfg, shutdown_signal()).await;
    Ok(ExitCode::SUCCESS)
}

async fn demo(
    duration: Option<&str>,
    rate: Option<f64>,
    seed: Option<u64>,
    report_dir: &std::path::Path,
) -> Result<ExitCode, String> {
    let mut loaded = drill::load_text(
        DEMO_SCENARIO,
        "scenarios/demo.yaml",
        DEMO_PROFILE,
        "profiles/demo.yaml",
    )
    .map_err(|d| {
        d.iter()
            .map(|d| d.to_string())
            .collect::<Vec<_>>()
            .join("\n")
    })?;
    if let Some(d) = duration {
        let total: Duration = loaded.profile.phases.iter().map(|p| p.duration.0).sum();
        let scale = parse_dur("--duration", d)?.as_secs_f64() / total.as_secs_f64().max(0.001);
        for p in &mut loaded.profile.phases {
            p.duration.0 = Duration::from_secs_f64(p.duration.0.as_secs_f64() * scale);
        }
    }
    if let Some(r) = rate {
        if !(r.is_finite() && r > 0.0) {
            return Err(format!("--rate must be positive, got {r}"));
        }
        for w in &mut loaded.scenario.workloads {
            w.arrival.rate = Some(brownout_drill::scenario::Rate(r));
        }
    }
    if let Some(s) = seed {
        loaded.scenario.seed = Some(s);
    }
    let code = drill::run_and_report(&loaded, Some(report_dir)).await;
    // A broken objective is the demo's point, not a failure of the demo.
    Ok(
        if code == ExitCode::from(brownout_drill::gate::EXIT_INVALID) {
            code
        } else {
            ExitCode::SUCCESS
        },
    )
}

fn report_cmd(
    records: &[PathBuf],
    scenario: Option<&std::path::Path>,
    dir: &std::path::Path,
) -> ExitCode {
    use brownout_drill::gate::EXIT_INVALID;
    // The drill's own pre-flight: the scenario's objectives and baseline, and its
    // profile, against which every rule is judged (an idle one: inconclusive).
    let loaded = match scenario.map(drill::load) {
        None => None,
        Some(Ok(l)) => Some(l),
        Some(Err(diags)) => {
            for d in diags {
                eprintln!("{d}");
            }
            return ExitCode::from(EXIT_INVALID);
        }
    };
    let mut files = Vec::new();
    for f in records {
        match brownout_drill::records::read_record_file(f) {
            Ok(t) => files.push((f.display().to_string(), t)),
            Err(e) => {
                eprintln!("{}: cannot read: {e}", f.display());
                return ExitCode::from(EXIT_INVALID);
            }
        }
    }
    let report = match brownout_drill::records::report_from_records_with(
        &files,
        loaded.as_ref().map(|l| &l.scenario),
        loaded.as_ref().map(|l| &l.profile),
    ) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("cannot build the report: {e}");
            return ExitCode::from(EXIT_INVALID);
        }
    };
    if let Some(why) = &report.incomplete {
        eprintln!("warning: the report is incomplete: {why}");
    }
    if let Err(e) = brownout_drill::gate::write_all(dir, &report) {
        eprintln!("cannot write the report to {}: {e}", dir.display());
        return ExitCode::from(EXIT_INVALID);
    }
    print!("{}", brownout_drill::gate::render_summary(&report));
    println!(
        "\nreport written to {}/ (report.json, junit.xml, summary.md, report.html)",
        dir.display().to_string().trim_end_matches('/')
    );
    ExitCode::from(report.exit_code)
}

fn validate(files: &[PathBuf]) -> ExitCode {
    let mut bad = 0;
    for f in files {
        let name = f.display().to_string();
        let text = match std::fs::read_to_string(f) {
            Ok(t) => t,
            Err(e) => {
                eprintln!("{name}: cannot read: {e}");
                bad += 1;
                continue;
            }
        };
        let is_config = text.lines().any(|l| l.starts_with("listeners:"));
        let is_scenario = !is_config && brownout_drill::scenario::looks_like_scenario(&text);
        let result = if is_scenario {
            // The drill's own pre-flight: what passes here, `brownout drill` starts.
            drill::load(f).map(|_| ())
        } else if is_config {
            brownout_faults::yaml::from_str::<FileConfig>(&text, &name)
                .map(|_| ())
                .map_err(|d| vec![d])
        } else {
            brownout_faults::validate::load_profile(&text, &name).map(|_| ())
        };
        match result {
            Ok(()) => println!(
                "{name}: ok ({})",
                if is_scenario {
                    "scenario"
                } else if is_config {
                    "config"
                } else {
                    "profile"
                }
            ),
            Err(diags) => {
                bad += 1;
                for d in diags {
                    eprintln!("{d}");
                }
            }
        }
    }
    if bad > 0 {
        ExitCode::from(2)
    } else {
        ExitCode::SUCCESS
    }
}

fn explain(arg: &str) -> ExitCode {
    let (name, text) = match BUILTIN.iter().find(|(n, _)| *n == arg) {
        Some((n, t)) => (format!("<built-in {n}>"), t.to_string()),
        None => match std::fs::read_to_string(arg) {
            Ok(t) => (arg.to_string(), t),
            Err(e) => {
                eprintln!("{arg}: cannot read: {e} (and no built-in profile has that name; see `brownout profiles`)");
                return ExitCode::from(2);
            }
        },
    };
    match brownout_faults::validate::load_profile(&text, &name) {
        Ok(p) => {
            print!("{}", brownout_faults::explain::explain(&p));
            ExitCode::SUCCESS
        }
        Err(diags) => {
            for d in diags {
                eprintln!("{d}");
            }
            ExitCode::from(2)
        }
    }
}

fn profiles(show: Option<&str>, presets: bool) -> ExitCode {
    if presets {
        for p in brownout_faults::presets::all() {
            println!("{:<28} {}  {}", p.name, p.status, p.summary);
        }
        return ExitCode::SUCCESS;
    }
    if let Some(name) = show {
        return match BUILTIN.iter().find(|(n, _)| *n == name) {
            Some((_, t)) => {
                print!("{t}");
                ExitCode::SUCCESS
            }
            None => {
                eprintln!("no built-in profile `{name}`; see `brownout profiles`");
                ExitCode::from(2)
            }
        };
    }
    for (name, text) in BUILTIN {
        let desc = brownout_faults::validate::load_profile(text, name)
            .ok()
            .and_then(|p| p.description)
            .unwrap_or_default();
        let first = desc.lines().next().unwrap_or("");
        println!("{name:<20} {first}");
    }
    ExitCode::SUCCESS
}

#[allow(clippy::too_many_arguments)]
fn gpu_sweep(
    gpu: &str,
    model: &str,
    concurrency: Vec<u32>,
    prompt_tokens: Option<u64>,
    output_tokens: Option<u64>,
    duration: Option<&str>,
    chart: Option<PathBuf>,
    json: bool,
) -> ExitCode {
    use brownout_sim::gpu_sweep as sweep;
    let mut opts = sweep::SweepOptions::calibration(gpu, model);
    if !concurrency.is_empty() {
        opts.concurrency = concurrency;
    }
    if let Some(p) = prompt_tokens {
        opts.prompt_tokens = p;
    }
    if let Some(o) = output_tokens {
        opts.output_tokens = o;
    }
    if let Some(d) = duration {
        match parse_dur("--duration", d) {
            Ok(d) => opts.duration = d,
            Err(e) => {
                eprintln!("error: {e}");
                return ExitCode::from(2);
            }
        }
    }
    let result = match sweep::run(&opts) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    if json {
        match serde_json::to_string_pretty(&result) {
            Ok(s) => println!("{s}"),
            Err(e) => {
                eprintln!("error: {e}");
                return ExitCode::FAILURE;
            }
        }
    } else {
        print!("{}", sweep::render_table(&result));
    }
    if let Some(path) = chart {
        if let Err(e) = sweep::write_chart_svg(&result, &path) {
            eprintln!("error: cannot write the chart to {}: {e}", path.display());
            return ExitCode::FAILURE;
        }
        eprintln!("chart written to {}", path.display());
    }
    ExitCode::SUCCESS
}
