//! Live progress of a running drill: where it is, live p95 and error rate.
//!
//! Long drills must show that they are alive and whether the system is degrading,
//! on a terminal as one updating line, and as plain lines in CI logs where `\r`
//! would garble the output.

use std::io::{IsTerminal, Write};
use std::time::Duration;

use crate::report::fmt_ms;

/// A snapshot handed to a [`ProgressSink`] about once a second.
#[derive(Debug, Clone, Copy)]
pub struct Progress<'a> {
    /// Time since the drill started.
    pub elapsed: Duration,
    /// The drill's planned duration (the sum of its phases).
    pub planned: Duration,
    /// The phase being scheduled now (the last one while draining).
    pub phase: &'a str,
    /// Requests sent so far.
    pub sent: u64,
    /// Requests finished so far.
    pub completed: u64,
    /// Requests in flight.
    pub in_flight: usize,
    /// p95 end-to-end latency of successful requests over the last few seconds.
    pub p95_e2e: Option<Duration>,
    /// Share of failed requests over the last few seconds.
    pub error_rate: f64,
}

/// Receives progress while a drill runs. `Send` so that the drill future can run
/// on any runtime thread.
pub trait ProgressSink: Send {
    /// Called about once a second.
    fn update(&mut self, progress: &Progress<'_>);

    /// Called once when the drill ends, e.g. to end an updating line.
    fn finish(&mut self) {}
}

/// Reports nothing: for tests and embedding.
#[derive(Debug, Default, Clone, Copy)]
pub struct NoProgress;

impl ProgressSink for NoProgress {
    fn update(&mut self, _: &Progress<'_>) {}
}

/// Writes progress to stderr: one line rewritten in place on a terminal, one plain
/// line per update otherwise.
#[derive(Debug)]
pub struct StderrProgress {
    terminal: bool,
    dirty: bool,
}

impl StderrProgress {
    /// Detects whether stderr is a terminal.
    pub fn new() -> Self {
        Self {
            terminal: std::io::stderr().is_terminal(),
            dirty: false,
        }
    }
}

impl Default for StderrProgress {
    fn default() -> Self {
        Self::new()
    }
}

/// The text of one progress line.
pub fn progress_line(p: &Progress<'_>) -> String {
    format!(
        "[{:>6.1}s/{:.0}s] {:<12} sent {:>6}  done {:>6}  in flight {:>4}  p95 {:>8}  errors {:>5.1}%",
        p.elapsed.as_secs_f64(),
        p.planned.as_secs_f64(),
        p.phase,
        p.sent,
        p.completed,
        p.in_flight,
        p.p95_e2e
            .map(|d| fmt_ms(d.as_secs_f64() * 1000.0))
            .unwrap_or_else(|| "-".to_owned()),
        p.error_rate * 100.0,
    )
}

impl ProgressSink for StderrProgress {
    fn update(&mut self, p: &Progress<'_>) {
        let line = progress_line(p);
        let mut err = std::io::stderr().lock();
        // Progress is best effort: a closed stderr must not stop the drill.
        let _ = if self.terminal {
            self.dirty = true;
            write!(err, "\r\x1b[2K{line}").and_then(|()| err.flush())
        } else {
            writeln!(err, "{line}")
        };
    }

    fn finish(&mut self) {
        if self.terminal && self.dirty {
            let _ = writeln!(std::io::stderr());
            self.dirty = false;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_has_phase_p95_and_errors() {
        let line = progress_line(&Progress {
            elapsed: Duration::from_millis(12_300),
            planned: Duration::from_secs(30),
            phase: "storm",
            sent: 600,
            completed: 590,
            in_flight: 10,
            p95_e2e: Some(Duration::from_millis(123)),
            error_rate: 0.098,
        });
        assert!(line.starts_with("[  12.3s/30s] storm"), "{line}");
        assert!(line.contains("p95    123ms"), "{line}");
        assert!(line.contains("errors   9.8%"), "{line}");
        assert!(!line.contains('\r'));
    }
}
