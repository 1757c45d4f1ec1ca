//! The drill's load generator on its own, for `bench/drill_generator.sh`: one
//! open-loop workload (non-streamed chat completions) at a fixed rate against a
//! URL, with the same client, statistics and scoring as `brownout drill`.
//!
//! ```sh
//! cargo run --release -p brownout-drill --example generator -- http://127.0.0.1:8000 5000 10
//! ```
//! Prints one JSON line: the rate asked for, requests completed per second, errors,
//! latency percentiles and the largest send lag (how late the generator itself sent).

use std::time::Duration;

use brownout_drill::engine::{run_engine, EnginePlan, EngineWorkload};
use brownout_drill::scenario::load_scenario;
use brownout_drill::{NoProgress, PhasePlan};

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let (url, rate, secs) = match args.as_slice() {
        [_, url, rate, secs, ..] => (url.clone(), rate.parse::<f64>()?, secs.parse::<f64>()?),
        _ => {
            eprintln!("usage: generator URL RATE SECONDS [stream]");
            std::process::exit(2);
        }
    };
    let stream = args.get(4).is_some_and(|s| s == "stream");
    let conns: u32 = std::env::var("CONNS")
        .ok()
        .and_then(|c| c.parse().ok())
        .unwrap_or(64);
    let src = format!(
        "version: 1\nname: generator\ntarget: {{upstream: sim}}\nprofile: none.yaml\n\
         workload: {{name: chat, stream: {stream}, max_tokens: 16, arrival: {{rate: {rate}/s}}, \
         client: {{retries: 0, timeout: 10s, max_connections: {conns}}}}}\n"
    );
    let scenario = load_scenario(&src, "generator").map_err(|d| d[0].to_string())?;
    let spec = scenario.all_workloads()[0].clone();
    let plan = EnginePlan {
        phases: vec![PhasePlan::new("load", Duration::from_secs_f64(secs))],
        workloads: vec![EngineWorkload {
            spec,
            target: url.parse()?,
            prompts: Vec::new(),
        }],
        seed: 1,
        slo: Default::default(),
        stop_when: None,
        baseline: None,
        phase_driver: None,
        watch: None,
    };
    let cpu0 = cpu_seconds();
    let r = run_engine(plan, NoProgress).await?;
    let cpu = cpu_seconds() - cpu0;
    let t = &r.stats.total;
    let e2e = t.e2e.as_ref();
    println!(
        "{}",
        serde_json::json!({
            "rate_asked": rate,
            "seconds": r.stats.elapsed_s,
            "requests": t.requests,
            "completed_per_s": t.requests as f64 / r.stats.elapsed_s,
            "errors": t.errors,
            "p50_ms": e2e.map(|p| p.p50_ms),
            "p99_ms": e2e.map(|p| p.p99_ms),
            "max_send_lag_ms": t.max_send_lag_ms,
            "cpu_s": cpu,
            "cpu_us_per_request": cpu * 1e6 / (t.requests.max(1) as f64),
        })
    );
    Ok(())
}

/// User + system CPU time of this process, from /proc (0 elsewhere).
fn cpu_seconds() -> f64 {
    let Ok(stat) = std::fs::read_to_string("/proc/self/stat") else {
        return 0.0;
    };
    // Fields after the command name (which may hold spaces) start after ") ".
    let Some(rest) = stat.rsplit_once(") ").map(|(_, r)| r) else {
        return 0.0;
    };
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    // utime and stime are fields 14 and 15 of stat, 12 and 13 after the name.
    (ticks(11) + ticks(12)) / 100.0
}
