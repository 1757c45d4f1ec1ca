//! brownout's drill engine: open-loop load, per-phase statistics, reports.
//!
//! A drill sends requests at Poisson-scheduled times through the proxy while its
//! profile moves through phases (baseline → fault → recovery), measures what a
//! user would see (e2e, TTFT, ITL, TPOT, errors by kind) from each request's
//! scheduled send time, and compares every phase with the baseline.
//!
//! The pieces are separate so that the full drill (docs/drills.md: scenario files, many
//! workloads, retries, SLOs, correctness) can grow around them:
//! [`arrival`] schedules, [`workload`] builds requests, [`client`] sends and
//! measures one, [`sse`] and [`meter`] read streams, [`stats`] aggregates,
//! [`progress`] and [`report`] show the results, and [`run`] ties them together.
//!
//! Scenario drills (docs/drills.md) build on them: [`scenario`] loads and checks
//! scenario files, [`engine`] runs several workloads (open or closed loop) with an
//! SDK-like retrying client, goodput, SLO evaluation and `stop_when`, [`gate`]
//! turns the result into a verdict and writes `report.json`, `junit.xml`,
//! `summary.md` and `report.html`, and [`records`] rebuilds the same report from
//! proxy record files.
//!
//! ```no_run
//! # async fn demo() -> Result<(), brownout_drill::DrillError> {
//! use std::time::Duration;
//! use brownout_drill::{run, render_table, LoadPlan, PhasePlan, StderrProgress};
//!
//! let mut plan = LoadPlan::new("http://127.0.0.1:8080".parse().unwrap());
//! plan.rate_per_sec = 20.0;
//! plan.phases = vec![
//!     PhasePlan::new("baseline", Duration::from_secs(10)),
//!     PhasePlan::new("storm", Duration::from_secs(10)),
//! ];
//! let result = run(plan, StderrProgress::new()).await?;
//! println!("{}", render_table(&result, Some("baseline")));
//! # Ok(())
//! # }
//! ```

#![forbid(unsafe_code)]
#![deny(clippy::unwrap_used, clippy::expect_used)]
#![warn(unreachable_pub, missing_docs)]

pub mod arrival;
pub mod capacity;
pub mod chaos;
pub mod client;
pub mod correct;
pub mod cost;
pub mod energy;
pub mod engine;
pub mod error;
pub mod gate;
pub mod html;
pub mod meter;
pub mod plan;
pub mod pool;
pub mod progress;
pub mod records;
pub mod report;
pub mod retry;
mod run;
pub mod sample;
pub mod scenario;
pub mod sse;
pub mod stats;
pub mod workload;

pub use error::DrillError;
pub use plan::{LoadPlan, PhasePlan};
pub use progress::{NoProgress, Progress, ProgressSink, StderrProgress};
pub use report::{render_markdown, render_table, write_report, write_report_with_baseline};
pub use run::run;
pub use sample::{Outcome, Sample, TokensSource};
pub use stats::{DrillResult, Percentiles, PhaseAccumulator, PhaseStats};
