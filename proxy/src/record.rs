//! One record per exchange (DESIGN §7), written off the hot path.
//!
//! The request path fills a [`Record`] and hands it to a bounded queue with a
//! non-blocking send: traffic is never held back for the recorder. A background
//! thread serializes records as JSON lines, updates the Prometheus metrics and keeps
//! the most recent ones for the admin API. Should the queue ever overflow, the loss
//! is counted in `brownout_records_dropped_total` and logged.

use std::collections::VecDeque;
use std::fs::{File, OpenOptions};
use std::io::{BufWriter, Write};
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use crossbeam_queue::ArrayQueue;
use serde::Serialize;

use crate::metrics::Metrics;

/// A wall-clock instant, formatted (off the hot path) as RFC 3339 with milliseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timestamp(pub std::time::SystemTime);

impl Serialize for Timestamp {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let t = time::OffsetDateTime::from(self.0);
        let fmt = time::macros::format_description!(
            "[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3]Z"
        );
        match t.format(&fmt) {
            Ok(v) => s.serialize_str(&v),
            Err(e) => Err(serde::ser::Error::custom(e)),
        }
    }
}

/// How an exchange ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    Ok,
    HttpError,
    InjectedError,
    Truncated,
    Reset,
    Timeout,
    ClientClosed,
    UpstreamError,
    Corrupt,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Ok => "ok",
            Outcome::HttpError => "http_error",
            Outcome::InjectedError => "injected_error",
            Outcome::Truncated => "truncated",
            Outcome::Reset => "reset",
            Outcome::Timeout => "timeout",
            Outcome::ClientClosed => "client_closed",
            Outcome::UpstreamError => "upstream_error",
            Outcome::Corrupt => "corrupt",
        }
    }
}

/// A fault named in a record: `rule/fault`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FaultRef {
    pub rule: Arc<str>,
    pub fault: &'static str,
    /// Why it was skipped (only in `faults_skipped`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<&'static str>,
}

/// Latency of the upstream leg.
#[derive(Debug, Clone, Default, Serialize)]
pub struct UpstreamTiming {
    pub status: Option<u16>,
    pub ttfb_ms: Option<f64>,
    pub e2e_ms: Option<f64>,
    /// The request went upstream a second time, on a new connection, because a
    /// reused one was closed by the upstream before it answered.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub retried: bool,
}

/// Inter-token latency summary (filled by the LLM adapters).
#[derive(Debug, Clone, Default, Serialize)]
pub struct ItlSummary {
    pub p50: f64,
    pub p95: f64,
    pub max: f64,
}

/// One exchange, however it ended.
#[derive(Debug, Clone, Serialize)]
pub struct Record {
    /// Wall-clock time the request arrived (RFC 3339 in files).
    pub ts: Timestamp,
    pub id: u64,
    pub listener: Arc<str>,
    pub api: &'static str,
    pub endpoint: &'static str,
    pub phase: Option<Arc<str>>,
    pub method: String,
    pub path: String,
    pub model: Option<String>,
    pub stream: Option<bool>,
    pub rules: Vec<Arc<str>>,
    pub faults: Vec<FaultRef>,
    pub faults_skipped: Vec<FaultRef>,
    pub attempt: Option<u32>,
    pub status: Option<u16>,
    pub outcome: Outcome,
    pub ttfb_ms: Option<f64>,
    pub ttft_ms: Option<f64>,
    pub e2e_ms: f64,
    pub itl_ms: Option<ItlSummary>,
    pub tpot_ms: Option<f64>,
    pub input_tokens: Option<u64>,
    pub output_tokens: Option<u64>,
    pub tokens_source: Option<&'static str>,
    pub bytes_in: u64,
    pub bytes_out: u64,
    pub upstream: Option<UpstreamTiming>,
    pub gpu: Option<serde_json::Value>,
    pub results: Option<serde_json::Value>,
    /// Why brownout itself failed the exchange (`x-brownout-error`), if it did.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl Record {
    /// A blank record for a new exchange.
    pub fn new(id: u64, listener: Arc<str>) -> Self {
        Record {
            ts: Timestamp(std::time::SystemTime::now()),
            id,
            listener,
            api: "generic",
            endpoint: "other",
            phase: None,
            method: String::new(),
            path: String::new(),
            model: None,
            stream: None,
            rules: Vec::new(),
            faults: Vec::new(),
            faults_skipped: Vec::new(),
            attempt: None,
            status: None,
            outcome: Outcome::ClientClosed,
            ttfb_ms: None,
            ttft_ms: None,
            e2e_ms: 0.0,
            itl_ms: None,
            tpot_ms: None,
            input_tokens: None,
            output_tokens: None,
            tokens_source: None,
            bytes_in: 0,
            bytes_out: 0,
            upstream: None,
            gpu: None,
            results: None,
            error: None,
        }
    }

    /// Make a written record blank again, keeping its buffers' capacity.
    pub fn reset(&mut self, id: u64, listener: Arc<str>) {
        let mut method = std::mem::take(&mut self.method);
        let mut path = std::mem::take(&mut self.path);
        let mut rules = std::mem::take(&mut self.rules);
        let mut faults = std::mem::take(&mut self.faults);
        let mut skipped = std::mem::take(&mut self.faults_skipped);
        method.clear();
        path.clear();
        rules.clear();
        faults.clear();
        skipped.clear();
        *self = Record::new(id, listener);
        self.method = method;
        self.path = path;
        self.rules = rules;
        self.faults = faults;
        self.faults_skipped = skipped;
    }
}

/// The hot path's handle to the recorder.
///
/// Submitting is one lock-free push: no syscall, no wake-up. The writer thread
/// drains the queue every few milliseconds, so a busy proxy pays nothing per
/// record for the hand-off, and records are recycled (allocated once, reused)
/// instead of being freed on another thread.
#[derive(Debug)]
pub struct Recorder {
    queue: Arc<ArrayQueue<Box<Record>>>,
    free: Arc<ArrayQueue<Box<Record>>>,
    dropped: AtomicU64,
    sent: AtomicU64,
    written: Arc<AtomicU64>,
    closing: Arc<AtomicBool>,
    reopen: Arc<AtomicBool>,
    writer: Mutex<Option<JoinHandle<()>>>,
    recent: Arc<Mutex<VecDeque<Box<Record>>>>,
}

/// How many recent records the admin API can show.
const RECENT: usize = 1000;
/// Records kept for reuse.
const FREE: usize = 4096;
/// How long the writer sleeps when the queue is empty.
const DRAIN_EVERY: Duration = Duration::from_millis(10);

impl Recorder {
    /// Start the writer thread. `path`: where JSON lines go (none: metrics only).
    pub fn start(
        path: Option<&Path>,
        queue: usize,
        metrics: Arc<Metrics>,
    ) -> std::io::Result<Arc<Recorder>> {
        let file = match path {
            Some(p) => Some(open_records(p)?),
            None => None,
        };
        let q = Arc::new(ArrayQueue::new(queue.max(1)));
        let free = Arc::new(ArrayQueue::new(FREE));
        let recent = Arc::new(Mutex::new(VecDeque::with_capacity(RECENT)));
        let written = Arc::new(AtomicU64::new(0));
        let closing = Arc::new(AtomicBool::new(false));
        let reopen = Arc::new(AtomicBool::new(false));
        let w = Writer {
            path: path.map(Path::to_path_buf),
            reopen: reopen.clone(),
            queue: q.clone(),
            free: free.clone(),
            file,
            metrics,
            recent: recent.clone(),
            written: written.clone(),
            closing: closing.clone(),
        };
        let handle = std::thread::Builder::new()
            .name("brownout-recorder".into())
            .spawn(move || w.run())?;
        Ok(Arc::new(Recorder {
            queue: q,
            free,
            dropped: AtomicU64::new(0),
            sent: AtomicU64::new(0),
            written,
            closing,
            reopen,
            writer: Mutex::new(Some(handle)),
            recent,
        }))
    }

    /// A blank record for a new exchange, reusing a written one when possible.
    pub fn blank(&self, id: u64, listener: Arc<str>) -> Box<Record> {
        match self.free.pop() {
            Some(mut r) => {
                r.reset(id, listener);
                r
            }
            None => Box::new(Record::new(id, listener)),
        }
    }

    /// Queue a record; never blocks and never wakes anyone.
    pub fn submit(&self, record: Box<Record>) {
        match self.queue.push(record) {
            Ok(()) => {
                self.sent.fetch_add(1, Ordering::Relaxed);
            }
            Err(_) => {
                let n = self.dropped.fetch_add(1, Ordering::Relaxed) + 1;
                if n.is_power_of_two() {
                    tracing::error!(dropped = n, "record queue overflowed; records were dropped");
                }
            }
        }
    }

    /// Records lost to a full queue (`brownout_records_dropped_total`).
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }

    /// Records accepted into the queue.
    pub fn submitted(&self) -> u64 {
        self.sent.load(Ordering::Relaxed)
    }

    /// Records the writer has finished with.
    pub fn written(&self) -> u64 {
        self.written.load(Ordering::Acquire)
    }

    /// The most recent records, newest last.
    pub fn recent(&self, limit: usize) -> Vec<Record> {
        let r = self.recent.lock().unwrap_or_else(|p| p.into_inner());
        let skip = r.len().saturating_sub(limit);
        r.iter().skip(skip).map(|b| (**b).clone()).collect()
    }

    /// Wait (up to `timeout`) until every record submitted so far has been handled.
    pub fn settle(&self, timeout: Duration) {
        let deadline = std::time::Instant::now() + timeout;
        while self.written() < self.submitted() && std::time::Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(2));
        }
    }

    /// Close the record file and open its path again (SIGUSR1), so a log rotator
    /// that moved the file gets the next records in a new one. Records queued
    /// before the call go to the old file, the rest to the new one: none is lost
    /// or written twice.
    pub fn reopen(&self) {
        self.reopen.store(true, Ordering::Release);
        if let Some(h) = self
            .writer
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .as_ref()
        {
            h.thread().unpark();
        }
    }

    /// Stop the writer after it has written and synced everything queued so far.
    pub fn close(&self) {
        self.closing.store(true, Ordering::Release);
        if let Some(h) = self.writer.lock().unwrap_or_else(|p| p.into_inner()).take() {
            h.thread().unpark();
            let _ = h.join();
        }
    }
}

/// The background writer: drains the queue, updates metrics, writes JSON lines.
struct Writer {
    path: Option<std::path::PathBuf>,
    reopen: Arc<AtomicBool>,
    queue: Arc<ArrayQueue<Box<Record>>>,
    free: Arc<ArrayQueue<Box<Record>>>,
    file: Option<BufWriter<File>>,
    metrics: Arc<Metrics>,
    recent: Arc<Mutex<VecDeque<Box<Record>>>>,
    written: Arc<AtomicU64>,
    closing: Arc<AtomicBool>,
}

/// The record file, opened for appending (so `copytruncate` rotation works too).
fn open_records(p: &Path) -> std::io::Result<BufWriter<File>> {
    let f = OpenOptions::new()
        .create(true)
        .append(true)
        .open(p)
        .map_err(|e| {
            std::io::Error::new(
                e.kind(),
                format!("cannot open record file {}: {e}", p.display()),
            )
        })?;
    Ok(BufWriter::with_capacity(64 * 1024, f))
}

impl Writer {
    /// Flush the current file and open the path again; on failure the old file
    /// stays in use and the operator is told.
    fn reopen_file(&mut self) {
        let Some(path) = self.path.as_deref() else {
            return;
        };
        if let Some(f) = self.file.as_mut() {
            let _ = f.flush();
        }
        match open_records(path) {
            Ok(f) => {
                self.file = Some(f);
                tracing::info!(file = %path.display(), "record file reopened");
            }
            Err(e) => {
                tracing::error!(error = %e, "cannot reopen the record file; records keep going to the old one")
            }
        }
    }

    fn run(mut self) {
        let mut line = Vec::with_capacity(1024);
        let mut write_failed = false;
        loop {
            if self.reopen.swap(false, Ordering::AcqRel) {
                self.reopen_file();
            }
            // Read the flag first: everything queued before close() is then drained below.
            let closing = self.closing.load(Ordering::Acquire);
            let mut n = 0u64;
            while let Some(rec) = self.queue.pop() {
                n += 1;
                self.metrics.observe(&rec);
                self.metrics.summary.observe(&rec);
                if let Some(f) = self.file.as_mut() {
                    line.clear();
                    if serde_json::to_writer(&mut line, &*rec).is_ok() {
                        line.push(b'\n');
                        if let Err(e) = f.write_all(&line) {
                            if !write_failed {
                                tracing::error!(error = %e, "cannot write records");
                                write_failed = true;
                            }
                        }
                    }
                }
                let evicted = {
                    let mut r = self.recent.lock().unwrap_or_else(|p| p.into_inner());
                    let old = if r.len() == RECENT {
                        r.pop_front()
                    } else {
                        None
                    };
                    r.push_back(rec);
                    old
                };
                if let Some(old) = evicted {
                    let _ = self.free.push(old);
                }
                self.written.fetch_add(1, Ordering::AcqRel);
            }
            if n == 0 {
                // Idle: make what was written visible to readers of the file.
                if let Some(f) = self.file.as_mut() {
                    let _ = f.flush();
                }
                if closing {
                    break;
                }
                std::thread::park_timeout(DRAIN_EVERY);
            }
        }
        if let Some(f) = self.file.as_mut() {
            let _ = f.flush();
            let _ = f.get_ref().sync_data();
        }
    }
}
