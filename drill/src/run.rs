//! The drill loop: schedule, send, collect, report progress.

use std::sync::Arc;
use std::time::Duration;

use tokio::task::JoinSet;
use tokio::time::{interval_at, sleep_until, Instant, MissedTickBehavior};

use crate::arrival::PoissonArrivals;
use crate::client::{DrillClient, Slot};
use crate::error::DrillError;
use crate::plan::LoadPlan;
use crate::progress::{Progress, ProgressSink};
use crate::sample::Sample;
use crate::stats::{DrillResult, LiveWindow, PhaseAccumulator};
use crate::workload::Workload;

/// Seconds of history behind the live p95 and error rate.
const LIVE_WINDOW_SECS: usize = 5;

/// Run `plan` to the end and return its per-phase statistics.
///
/// Requests are sent open loop at their Poisson-scheduled times, each on its own
/// task, whatever the server's speed; the drill ends when every scheduled request
/// has finished (at most `plan.timeout` after the last phase). Progress goes to
/// `progress` about once a second. Dropping the future cancels every request.
pub async fn run(
    plan: LoadPlan,
    mut progress: impl ProgressSink,
) -> Result<DrillResult, DrillError> {
    plan.validate()?;
    let client = Arc::new(DrillClient::new(
        plan.request_uri()?,
        plan.stream,
        plan.timeout,
    ));
    let mut workload = Workload::new(&plan);
    let mut arrivals = PoissonArrivals::new(plan.rate_per_sec, plan.seed)
        .ok_or(DrillError::InvalidRate(plan.rate_per_sec))?;
    let planned = plan.total_duration();
    let mut phases = plan
        .phases
        .iter()
        .map(|_| PhaseAccumulator::new())
        .collect::<Result<Vec<_>, _>>()?;
    let mut total = PhaseAccumulator::new()?;
    let mut live = LiveWindow::new(LIVE_WINDOW_SECS)?;

    let start = Instant::now();
    let mut next = arrivals.next().filter(|t| *t < planned);
    let wake = sleep_until(start + next.unwrap_or(planned));
    tokio::pin!(wake);
    let mut ticker = interval_at(start + Duration::from_secs(1), Duration::from_secs(1));
    ticker.set_missed_tick_behavior(MissedTickBehavior::Skip);
    let mut tasks: JoinSet<Sample> = JoinSet::new();
    let mut seq: u64 = 0;
    let mut completed: u64 = 0;

    loop {
        if next.is_none() && tasks.is_empty() {
            break;
        }
        tokio::select! {
            biased;
            () = &mut wake, if next.is_some() => {
                if let Some(offset) = next {
                    let phase = plan.phase_at(offset);
                    let slot = Slot { seq, phase, scheduled: start + offset };
                    let (_, body) = workload.next_body();
                    let client = Arc::clone(&client);
                    tasks.spawn(async move { client.exchange(slot, body).await });
                    seq += 1;
                }
                next = arrivals.next().filter(|t| *t < planned);
                if let Some(offset) = next {
                    wake.as_mut().reset(start + offset);
                }
            }
            Some(joined) = tasks.join_next() => {
                completed += 1;
                match joined {
                    Ok(sample) => {
                        if let Some(acc) = phases.get_mut(sample.phase) {
                            acc.record(&sample);
                        }
                        total.record(&sample);
                        live.record(&sample);
                    }
                    // The exchange does not panic; should it, the drill goes on and
                    // the request is missing from the counts, which the log says.
                    Err(e) => tracing::error!(error = %e, "drill: a request task failed"),
                }
            }
            _ = ticker.tick() => {
                let elapsed = start.elapsed();
                let (p95_e2e, error_rate) = live.summary();
                live.rotate();
                let phase = plan
                    .phases
                    .get(plan.phase_at(elapsed))
                    .map(|p| p.name.as_str())
                    .unwrap_or("");
                progress.update(&Progress {
                    elapsed,
                    planned,
                    phase,
                    sent: seq,
                    completed,
                    in_flight: tasks.len(),
                    p95_e2e,
                    error_rate,
                });
            }
        }
    }
    progress.finish();

    let elapsed = start.elapsed();
    Ok(DrillResult {
        target: plan.target.to_string().trim_end_matches('/').to_owned(),
        path: plan.path.clone(),
        model: plan.model.clone(),
        stream: plan.stream,
        rate_per_sec: plan.rate_per_sec,
        seed: plan.seed,
        elapsed_s: elapsed.as_secs_f64(),
        phases: crate::stats::finish_phases(&plan.phases, &phases),
        total: total.finish("all", planned),
    })
}
