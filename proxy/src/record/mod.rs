//! One record per exchange (docs/records.md), written off the hot path.
//!
//! The request path fills a [`Record`] and hands it to a bounded queue with a
//! non-blocking send: traffic is never held back for the recorder. A background
//! thread serializes records as JSON lines, updates the Prometheus metrics and keeps
//! the most recent ones for the admin API.
//!
//! Every record is either a whole line in a record file or counted as lost in
//! `brownout_records_dropped_total{reason}`: `queue_full` when the queue overflowed,
//! `write_error` when the file could not take it (full disk, file-size limit, I/O
//! error, a removed directory). Each episode of loss is logged once when it starts and
//! once when it ends, and leaves a note line in the file (`{"records_dropped": N,
//! "reason": ...}`) so that a report made from that file says it is incomplete.
//!
//! # Whole lines on a full disk
//!
//! Lines are appended in batches, each batch one `write(2)` of whole lines on a file
//! opened `O_APPEND`. `O_APPEND` makes each write land at the end of the file in one
//! piece (no other appender's bytes inside it, and `copytruncate` just moves the end),
//! but it does not make a write all-or-nothing: a filesystem that runs out of space,
//! or a file-size limit, takes what fits and returns a short count. So after a short
//! write the writer cuts the file back to the end of the last whole line it wrote
//! (`ftruncate`; shrinking needs no space). Under `O_APPEND` the file offset after the
//! write is exactly the end of what it wrote, which says where to cut; the cut is made
//! only if the file still ends there (nobody appended or truncated in between). If it
//! cannot be made (an append-only file, or the file changed), the next write starts
//! with a newline, so the fragment stays a line of its own that readers reject and the
//! records after it stay whole. Lines the file did not take are counted as lost, and
//! writing is tried again with the next batch: it resumes by itself when space returns.

pub mod metrics;
pub mod summary;

use std::collections::VecDeque;
use std::fs::{File, OpenOptions};
use std::io::{self, Seek, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_queue::ArrayQueue;
use serde::Serialize;

use crate::config::RecordConfig;
use crate::record::metrics::Metrics;

/// The record itself is shared with the drill, which reads record files back
/// into the same type (`brownout report`); this module is what writes it.
pub use brownout_faults::record::*;

/// Records lost, by reason (`brownout_records_dropped_total{reason}`, and
/// `records.dropped_by_reason` in `/api/v1/status`), so an operator can tell a
/// recorder that cannot keep up from a disk that cannot take its records.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct DroppedRecords {
    /// The bounded queue between the request path and the writer was full.
    pub queue_full: u64,
    /// The record file could not take them: full disk, file-size limit, I/O error,
    /// or a file that was removed and could not be created again.
    pub write_error: u64,
}

impl DroppedRecords {
    /// All records lost, whatever the reason.
    pub fn total(&self) -> u64 {
        self.queue_full + self.write_error
    }
}

/// The counters behind [`DroppedRecords`], shared by the request path (queue
/// overflow) and the writer (write errors).
#[derive(Debug, Default)]
struct Drops {
    queue_full: AtomicU64,
    write_error: AtomicU64,
    /// A queue-overflow episode is under way (its first drop has been logged).
    queue_episode: AtomicBool,
}

/// Why records could not be written, with the file it was about (logged once per
/// episode and kept in the file's note line and in status).
#[derive(Debug, thiserror::Error)]
pub enum RecordError {
    #[error("cannot open record file {path}: {source}")]
    Open {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("cannot write records to {path}: {source}")]
    Write {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("record file {path} was removed and cannot be created again: {source}")]
    Removed {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("cannot rotate record file {from} to {to}: {source}")]
    Rotate {
        from: PathBuf,
        to: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("cannot serialize a record: {0}")]
    Serialize(#[from] serde_json::Error),
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
    drops: Arc<Drops>,
    sent: AtomicU64,
    written: Arc<AtomicU64>,
    closing: Arc<AtomicBool>,
    reopen: Arc<AtomicBool>,
    writer: Mutex<Option<JoinHandle<()>>>,
    recent: Arc<Mutex<VecDeque<Box<Record>>>>,
    /// Records ever put in `recent`, changed only under its lock: the cursor a
    /// poller (a drill against a running proxy) reads on from.
    recent_total: Arc<AtomicU64>,
    file_error: Arc<Mutex<Option<String>>>,
    /// Keys records' `fingerprint` and `client` (`record.fingerprint_key`, else
    /// drawn at start): one key for the process, so its records can be compared.
    key: FingerprintKey,
    /// This recorder among others in one process ([`LAST_IDS`]).
    id: u64,
}

/// Request headers that name a client, strongest first: the drill's simulated
/// user (many share one real key), then the credentials AI APIs take. Their
/// values are only ever hashed ([`Recorder::identify`]).
pub const CLIENT_HEADERS: [&str; 4] =
    ["x-brownout-client", "authorization", "x-api-key", "api-key"];

/// [`CLIENT_HEADERS`] as names, so that looking them up in a typed head parses
/// nothing per request.
static CLIENT_HEADER_NAMES: [http::HeaderName; 4] = [
    http::HeaderName::from_static(CLIENT_HEADERS[0]),
    http::HeaderName::from_static(CLIENT_HEADERS[1]),
    http::HeaderName::from_static(CLIENT_HEADERS[2]),
    http::HeaderName::from_static(CLIENT_HEADERS[3]),
];

/// The value of the first of [`CLIENT_HEADERS`] the request carries.
pub fn credential(headers: &http::HeaderMap) -> Option<&[u8]> {
    CLIENT_HEADER_NAMES
        .iter()
        .find_map(|h| headers.get(h))
        .map(|v| v.as_bytes())
}

/// Tells recorders apart in [`LAST_IDS`]: each has its own key.
static RECORDER_IDS: AtomicU64 = AtomicU64::new(1);

thread_local! {
    /// The identities this thread worked out last ([`Recorder::identify`]).
    static LAST_IDS: std::cell::RefCell<LastIds> = const {
        std::cell::RefCell::new(LastIds {
            fp_recorder: 0,
            method: String::new(),
            target: String::new(),
            fingerprint: None,
            client_recorder: 0,
            credential: None,
            ip: std::net::IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED),
            client: None,
        })
    };
}

/// The last fingerprint (of a request whose body was not read) and client id one
/// thread computed, with what they were computed from.
struct LastIds {
    fp_recorder: u64,
    method: String,
    target: String,
    fingerprint: Option<Fingerprint>,
    client_recorder: u64,
    /// `None`: the client was named by its address.
    credential: Option<Vec<u8>>,
    ip: std::net::IpAddr,
    client: Option<ClientId>,
}

impl LastIds {
    fn fingerprint(&mut self, r: &Recorder, method: &str, target: &str) -> Fingerprint {
        if let Some(f) = self.fingerprint {
            if self.fp_recorder == r.id && self.method == method && self.target == target {
                return f;
            }
        }
        let f = r.key.fingerprint(method, target, None);
        self.fp_recorder = r.id;
        self.method.clear();
        self.method.push_str(method);
        self.target.clear();
        self.target.push_str(target);
        self.fingerprint = Some(f);
        f
    }

    fn client(
        &mut self,
        r: &Recorder,
        credential: Option<&[u8]>,
        ip: std::net::IpAddr,
    ) -> ClientId {
        if let Some(c) = self.client {
            let same = match (credential, self.credential.as_deref()) {
                (Some(k), Some(last)) => k == last,
                (None, None) => ip == self.ip,
                _ => false,
            };
            if same && self.client_recorder == r.id {
                return c;
            }
        }
        let c = r.key.client(credential, ip);
        self.client_recorder = r.id;
        match (credential, self.credential.as_mut()) {
            (Some(k), Some(last)) => {
                last.clear();
                last.extend_from_slice(k);
            }
            (k, _) => self.credential = k.map(<[u8]>::to_vec),
        }
        self.ip = ip;
        self.client = Some(c);
        c
    }
}

/// How many recent records the admin API can show.
const RECENT: usize = 1000;
/// Records kept for reuse.
const FREE: usize = 4096;
/// How long the writer sleeps when the queue is empty.
const DRAIN_EVERY: Duration = Duration::from_millis(10);
/// Lines are written in batches of about this many bytes (one `write(2)` each).
const BATCH: usize = 64 * 1024;
/// How often a record file that cannot be opened is tried again.
const RETRY_OPEN: Duration = Duration::from_millis(100);
/// How often a rotation that failed is tried again.
const RETRY_ROTATE: Duration = Duration::from_secs(1);

impl Recorder {
    /// Start the writer thread without size rotation. `path`: where JSON lines go
    /// (none: metrics only).
    pub fn start(
        path: Option<&Path>,
        queue: usize,
        metrics: Arc<Metrics>,
    ) -> io::Result<Arc<Recorder>> {
        let cfg = RecordConfig {
            queue,
            ..RecordConfig::default()
        };
        Recorder::start_with(path, &cfg, metrics)
    }

    /// Start the writer thread with the whole `record` section (queue size, size
    /// rotation). `path`: where JSON lines go, already resolved against the config
    /// file's directory (none: metrics only). Fails only if the file cannot be
    /// opened now: a proxy told to record must not start without recording.
    pub fn start_with(
        path: Option<&Path>,
        cfg: &RecordConfig,
        metrics: Arc<Metrics>,
    ) -> io::Result<Arc<Recorder>> {
        let key = match &cfg.fingerprint_key {
            Some(k) => k.clone(),
            None => FingerprintKey::random().map_err(io::Error::other)?,
        };
        let drops = Arc::new(Drops::default());
        let file_error = Arc::new(Mutex::new(None));
        let sink = match path {
            Some(p) => Some(
                Sink::<File>::open(
                    p,
                    cfg.max_size.map(|b| b.0),
                    cfg.keep.max(1),
                    drops.clone(),
                    file_error.clone(),
                )
                .map_err(|e| {
                    let kind = match &e {
                        RecordError::Open { source, .. } => source.kind(),
                        _ => io::ErrorKind::Other,
                    };
                    io::Error::new(kind, e)
                })?,
            ),
            None => None,
        };
        let q = Arc::new(ArrayQueue::new(cfg.queue.max(1)));
        let free = Arc::new(ArrayQueue::new(FREE));
        let recent = Arc::new(Mutex::new(VecDeque::with_capacity(RECENT)));
        let recent_total = Arc::new(AtomicU64::new(0));
        let written = Arc::new(AtomicU64::new(0));
        let closing = Arc::new(AtomicBool::new(false));
        let reopen = Arc::new(AtomicBool::new(false));
        let w = Writer {
            reopen: reopen.clone(),
            queue: q.clone(),
            free: free.clone(),
            sink,
            metrics,
            recent: recent.clone(),
            recent_total: recent_total.clone(),
            written: written.clone(),
            closing: closing.clone(),
            drops: drops.clone(),
            buf: Vec::with_capacity(BATCH + 4096),
            ends: Vec::with_capacity(256),
            pending: 0,
            queue_last: 0,
            queue_noted: 0,
        };
        let handle = std::thread::Builder::new()
            .name("brownout-recorder".into())
            .spawn(move || w.run())?;
        Ok(Arc::new(Recorder {
            queue: q,
            free,
            drops,
            sent: AtomicU64::new(0),
            written,
            closing,
            reopen,
            writer: Mutex::new(Some(handle)),
            recent,
            recent_total,
            file_error,
            key,
            id: RECORDER_IDS.fetch_add(1, Ordering::Relaxed),
        }))
    }

    /// Name the call and the client in `rec` (docs/records.md `fingerprint`,
    /// `client`): `target` is the path with its query, `body` what was read of it
    /// for matching (`None`: not read, and then only the method and target count),
    /// `credential` what [`credential`] found, else the client's address counts.
    pub fn identify(
        &self,
        rec: &mut Record,
        method: &str,
        target: &str,
        body: Option<&[u8]>,
        credential: Option<&[u8]>,
        ip: std::net::IpAddr,
    ) {
        // Keyed hashes are deterministic: a request that names the same call or the
        // same client as this thread's previous one (a keep-alive client repeating
        // its endpoint and credential) gets the hash already computed, which saves
        // up to two HMAC-SHA256 runs per request on the hot path.
        LAST_IDS.with(|cell| {
            let mut last = cell.borrow_mut();
            rec.fingerprint = Some(match body {
                Some(_) => self.key.fingerprint(method, target, body),
                None => last.fingerprint(self, method, target),
            });
            rec.client = Some(last.client(self, credential, ip));
        });
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

    /// Queue a record; never blocks and never wakes anyone. A full queue drops it,
    /// counts it (`queue_full`) and logs the first drop of an episode; the writer
    /// logs the episode's end with its count.
    pub fn submit(&self, record: Box<Record>) {
        match self.queue.push(record) {
            Ok(()) => {
                self.sent.fetch_add(1, Ordering::Relaxed);
            }
            Err(_) => {
                self.drops.queue_full.fetch_add(1, Ordering::Relaxed);
                if !self.drops.queue_episode.swap(true, Ordering::AcqRel) {
                    tracing::error!(
                        "the record queue is full: records are being dropped and counted in brownout_records_dropped_total{{reason=\"queue_full\"}}"
                    );
                }
            }
        }
    }

    /// All records lost (`brownout_records_dropped_total`, summed over reasons).
    pub fn dropped(&self) -> u64 {
        self.dropped_by_reason().total()
    }

    /// Records lost, by reason.
    pub fn dropped_by_reason(&self) -> DroppedRecords {
        DroppedRecords {
            queue_full: self.drops.queue_full.load(Ordering::Relaxed),
            write_error: self.drops.write_error.load(Ordering::Relaxed),
        }
    }

    /// Why the record file cannot be written right now (None: it can, or there is
    /// none), so status shows an ongoing episode and not only its count.
    pub fn file_error(&self) -> Option<String> {
        self.file_error
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Wait (at most `max`) until the writer has taken every record submitted so
    /// far: records of exchanges that already ended are then in the ring, and
    /// in the file when there is one.
    pub async fn caught_up(&self, max: std::time::Duration) {
        let deadline = tokio::time::Instant::now() + max;
        while self.written() < self.submitted() && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(std::time::Duration::from_millis(2)).await;
        }
    }

    /// Records accepted into the queue.
    pub fn submitted(&self) -> u64 {
        self.sent.load(Ordering::Relaxed)
    }

    /// Records the writer has finished with: written to the file, or counted lost.
    pub fn written(&self) -> u64 {
        self.written.load(Ordering::Acquire)
    }

    /// The most recent records, newest last.
    pub fn recent(&self, limit: usize) -> Vec<Record> {
        let r = self.recent.lock().unwrap_or_else(|p| p.into_inner());
        let skip = r.len().saturating_sub(limit);
        r.iter().skip(skip).map(|b| (**b).clone()).collect()
    }

    /// The records after cursor `after` (oldest first, at most `limit`), the cursor
    /// to ask with next, and how many records after `after` have already left the
    /// ring (so a poller knows its copy is incomplete). Cursor 0 is the start;
    /// `after: None` starts at the newest record, for a poller that only wants
    /// what comes next.
    pub fn recent_after(&self, after: Option<u64>, limit: usize) -> (Vec<Record>, u64, u64) {
        let r = self.recent.lock().unwrap_or_else(|p| p.into_inner());
        let total = self.recent_total.load(Ordering::Relaxed);
        let Some(after) = after else {
            return (Vec::new(), total, 0);
        };
        let oldest = total - r.len() as u64;
        let missed = oldest.saturating_sub(after);
        let from = after.max(oldest).min(total);
        let skip = (from - oldest) as usize;
        let out: Vec<Record> = r
            .iter()
            .skip(skip)
            .take(limit)
            .map(|b| (**b).clone())
            .collect();
        let next = from + out.len() as u64;
        (out, next, missed)
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

/// The background writer: drains the queue, updates metrics, batches JSON lines.
struct Writer {
    reopen: Arc<AtomicBool>,
    queue: Arc<ArrayQueue<Box<Record>>>,
    free: Arc<ArrayQueue<Box<Record>>>,
    sink: Option<Sink<File>>,
    metrics: Arc<Metrics>,
    recent: Arc<Mutex<VecDeque<Box<Record>>>>,
    recent_total: Arc<AtomicU64>,
    written: Arc<AtomicU64>,
    closing: Arc<AtomicBool>,
    drops: Arc<Drops>,
    /// Lines not yet written, and where each ends in `buf`.
    buf: Vec<u8>,
    ends: Vec<usize>,
    /// Records taken from the queue since the last flush.
    pending: u64,
    /// Queue overflows counted at the end of the last pass, and those already noted
    /// in the file and the log.
    queue_last: u64,
    queue_noted: u64,
}

impl Writer {
    fn run(mut self) {
        loop {
            if self.reopen.swap(false, Ordering::AcqRel) {
                // Records queued before the signal go to the old file.
                self.flush();
                if let Some(s) = self.sink.as_mut() {
                    s.reopen();
                }
            }
            // Read the flag first: everything queued before close() is then drained below.
            let closing = self.closing.load(Ordering::Acquire);
            let n = self.drain();
            self.flush();
            self.watch_queue(false);
            if n == 0 {
                if closing {
                    break;
                }
                std::thread::park_timeout(DRAIN_EVERY);
            }
        }
        self.watch_queue(true);
        self.flush();
        if let Some(s) = self.sink.as_mut() {
            s.close();
        }
    }

    /// Take every queued record: metrics, recent ring, a line in the batch.
    fn drain(&mut self) -> u64 {
        let mut n = 0u64;
        while let Some(rec) = self.queue.pop() {
            n += 1;
            self.metrics.observe(&rec);
            self.metrics.summary.observe(&rec);
            if let Some(sink) = self.sink.as_mut() {
                let start = self.buf.len();
                match serde_json::to_writer(&mut self.buf, &*rec) {
                    Ok(()) => {
                        self.buf.push(b'\n');
                        self.ends.push(self.buf.len());
                    }
                    Err(e) => {
                        self.buf.truncate(start);
                        sink.lost(1, &RecordError::Serialize(e));
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
                self.recent_total.fetch_add(1, Ordering::Relaxed);
                old
            };
            if let Some(old) = evicted {
                let _ = self.free.push(old);
            }
            self.pending += 1;
            if self.buf.len() >= BATCH {
                self.flush();
            }
        }
        n
    }

    /// Write the batch (or count it lost) and publish how many records are done.
    fn flush(&mut self) {
        if let Some(s) = self.sink.as_mut() {
            s.write(&self.buf, &self.ends);
        }
        self.buf.clear();
        self.ends.clear();
        if self.pending > 0 {
            self.written.fetch_add(self.pending, Ordering::AcqRel);
            self.pending = 0;
        }
    }

    /// End a queue-overflow episode once a whole pass saw no new drop (or at exit):
    /// log it with its count and leave a note in the file.
    fn watch_queue(&mut self, last: bool) {
        let now = self.drops.queue_full.load(Ordering::Relaxed);
        if now != self.queue_last && !last {
            self.queue_last = now;
            return;
        }
        if now <= self.queue_noted {
            return;
        }
        // Clear the flag before the final count: a drop after this starts (and
        // logs) a new episode.
        self.drops.queue_episode.store(false, Ordering::Release);
        let now = self.drops.queue_full.load(Ordering::Relaxed);
        let n = now - self.queue_noted;
        self.queue_noted = now;
        self.queue_last = now;
        tracing::warn!(
            dropped = n,
            "the record queue keeps up again; {n} record(s) were dropped while it was full"
        );
        if let Some(s) = self.sink.as_mut() {
            s.pending_queue_full += n;
        }
    }
}

/// What the writer needs of a record file. A trait so that the handling of short
/// writes, failures and recovery can be tested against a disk that fills and
/// empties on cue; the real one is [`File`].
trait RecordFile: Sized {
    /// Open for appending, creating it if needed.
    fn open(path: &Path) -> io::Result<Self>;
    /// One `write(2)` at the end of the file; may take fewer bytes than given.
    fn append(&mut self, buf: &[u8]) -> io::Result<usize>;
    /// The file offset after the last append (its end, under `O_APPEND`) and the
    /// file's length now.
    fn end_and_len(&mut self) -> io::Result<(u64, u64)>;
    /// Cut the file to `len` bytes.
    fn cut(&mut self, len: u64) -> io::Result<()>;
    /// The file's length, and whether it was removed from its directory (so the
    /// records written to it would be lost unseen).
    fn state(&self) -> io::Result<(u64, bool)>;
    /// Make what was written durable (at exit).
    fn sync(&self) -> io::Result<()>;
    /// The file at `path` ends inside a line (a writer killed mid-write, or
    /// another program's bytes): the first write into it must start a new line,
    /// or its first record would be glued to the fragment.
    fn torn_end(path: &Path) -> bool;
}

impl RecordFile for File {
    fn open(path: &Path) -> io::Result<File> {
        // O_APPEND: every write goes to the end of the file as it is then, so
        // `copytruncate` works and a torn tail can be found and cut (module docs).
        OpenOptions::new().create(true).append(true).open(path)
    }

    fn append(&mut self, buf: &[u8]) -> io::Result<usize> {
        Write::write(self, buf)
    }

    fn end_and_len(&mut self) -> io::Result<(u64, u64)> {
        let end = self.stream_position()?;
        Ok((end, self.metadata()?.len()))
    }

    fn cut(&mut self, len: u64) -> io::Result<()> {
        self.set_len(len)
    }

    fn state(&self) -> io::Result<(u64, bool)> {
        let m = self.metadata()?;
        #[cfg(unix)]
        let removed = {
            use std::os::unix::fs::MetadataExt;
            m.nlink() == 0
        };
        #[cfg(not(unix))]
        let removed = false;
        Ok((m.len(), removed))
    }

    fn sync(&self) -> io::Result<()> {
        self.sync_data()
    }

    fn torn_end(path: &Path) -> bool {
        use std::io::{Read, SeekFrom};
        let Ok(mut f) = File::open(path) else {
            return false;
        };
        let mut last = [0u8; 1];
        f.seek(SeekFrom::End(-1)).is_ok() && f.read_exact(&mut last).is_ok() && last[0] != b'\n'
    }
}

/// How one call of [`append_lines`] fared.
#[derive(Debug, Default)]
struct Appended {
    /// Whole lines now in the file.
    lines: usize,
    /// Their bytes.
    bytes: u64,
    /// Why the remaining lines were not written.
    error: Option<io::Error>,
    /// A torn fragment is left at the end of the file (it could not be cut).
    torn_left: bool,
}

/// Append the lines `buf[from..ends[last]]` (`ends`: where each line ends in
/// `buf`) in as few writes as the file allows, leaving only whole lines: after a
/// short write, the fragment of the line it stopped in is cut off again, and the
/// rest is tried once more if the write made progress (a disk that took part of a
/// batch may take no more, or may have had space freed meanwhile).
fn append_lines<F: RecordFile>(f: &mut F, buf: &[u8], from: usize, ends: &[usize]) -> Appended {
    let mut out = Appended::default();
    let Some(&last) = ends.last() else {
        return out;
    };
    let mut off = from;
    while off < last {
        let n = match f.append(&buf[off..last]) {
            Ok(0) => {
                out.error = Some(io::Error::new(
                    io::ErrorKind::WriteZero,
                    "the file took no bytes",
                ));
                return out;
            }
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => {
                out.error = Some(e);
                return out;
            }
        };
        let reached = off + n;
        let before = out.lines;
        while out.lines < ends.len() && ends[out.lines] <= reached {
            out.lines += 1;
        }
        let whole = if out.lines == 0 {
            from
        } else {
            ends[out.lines - 1]
        };
        out.bytes += (whole - off) as u64;
        let torn = reached - whole;
        if torn > 0 {
            if let Err(e) = cut_torn(f, torn as u64) {
                out.torn_left = true;
                out.error = Some(e);
                return out;
            }
        }
        if reached < last && out.lines == before {
            // Not even one more line fitted: the file is full for now.
            out.error = Some(io::Error::new(
                io::ErrorKind::StorageFull,
                format!(
                    "no room for a whole record: the file took {n} of {} bytes (a full disk, or a file-size limit)",
                    last - off
                ),
            ));
            return out;
        }
        off = whole;
    }
    out
}

/// Cut the `torn` bytes a short write left at the end of the file, if the file
/// still ends where that write ended (under `O_APPEND` the offset after a write is
/// the end of what it wrote); otherwise someone else changed the file since, and
/// cutting would destroy their bytes or pad ours with zeros.
fn cut_torn<F: RecordFile>(f: &mut F, torn: u64) -> io::Result<()> {
    let (end, len) = f.end_and_len()?;
    if end != len || end < torn {
        return Err(io::Error::other(format!(
            "a short write left {torn} bytes of a record, and the file changed before they could be cut off (offset {end}, length {len})"
        )));
    }
    f.cut(end - torn)
}

/// A write-failure episode: records are being lost since `error`. It ends when a
/// whole batch of records is written again, not when a note alone fits (a disk
/// with a few hundred bytes free would otherwise end and begin an episode, and log
/// twice, for every batch).
#[derive(Debug)]
struct Episode {
    lost: u64,
    error: String,
}

/// The record file: whole lines in, size rotation, reopening, and the accounting
/// of what could not be written.
struct Sink<F: RecordFile> {
    path: PathBuf,
    /// None while the path cannot be opened (tried again every [`RETRY_OPEN`]).
    file: Option<F>,
    /// When to try opening again, and why the last try failed.
    retry_open_at: Option<(Instant, String)>,
    /// Bytes in the file, as of the last check plus what was written since.
    size: u64,
    max_size: Option<u64>,
    keep: usize,
    /// The current file was renamed to `.1` but no new one could be opened yet.
    rotated_away: bool,
    rotate_failing: bool,
    retry_rotate_at: Option<Instant>,
    /// A torn fragment could not be cut off: the next write starts with a newline.
    torn_tail: bool,
    failing: Option<Episode>,
    /// Write errors not yet noted in the file, and the error to note with them.
    unnoted: u64,
    unnoted_error: String,
    /// Queue overflows to note in the file.
    pending_queue_full: u64,
    drops: Arc<Drops>,
    file_error: Arc<Mutex<Option<String>>>,
}

impl<F: RecordFile> Sink<F> {
    fn open(
        path: &Path,
        max_size: Option<u64>,
        keep: usize,
        drops: Arc<Drops>,
        file_error: Arc<Mutex<Option<String>>>,
    ) -> Result<Self, RecordError> {
        let file = F::open(path).map_err(|source| RecordError::Open {
            path: path.to_path_buf(),
            source,
        })?;
        let size = file.state().map_or(0, |s| s.0);
        let torn_tail = F::torn_end(path);
        Ok(Sink {
            path: path.to_path_buf(),
            file: Some(file),
            retry_open_at: None,
            size,
            max_size,
            keep,
            rotated_away: false,
            rotate_failing: false,
            retry_rotate_at: None,
            torn_tail,
            failing: None,
            unnoted: 0,
            unnoted_error: String::new(),
            pending_queue_full: 0,
            drops,
            file_error,
        })
    }

    /// `path.N`, the name of the N-th rotated file.
    fn numbered(&self, n: usize) -> PathBuf {
        let mut s = self.path.clone().into_os_string();
        s.push(format!(".{n}"));
        PathBuf::from(s)
    }

    /// Count `n` records as lost; the first loss of an episode is logged.
    fn lost(&mut self, n: usize, why: &dyn std::fmt::Display) {
        if n == 0 {
            return;
        }
        self.drops
            .write_error
            .fetch_add(n as u64, Ordering::Relaxed);
        if self.unnoted == 0 {
            self.unnoted_error = why.to_string();
        }
        self.unnoted += n as u64;
        match self.failing.as_mut() {
            Some(ep) => ep.lost += n as u64,
            None => {
                let error = why.to_string();
                tracing::error!(
                    file = %self.path.display(),
                    error = %error,
                    "records cannot be written; they are counted in brownout_records_dropped_total{{reason=\"write_error\"}} until writing works again"
                );
                *self.file_error.lock().unwrap_or_else(|p| p.into_inner()) = Some(error.clone());
                self.failing = Some(Episode {
                    lost: n as u64,
                    error,
                });
            }
        }
    }

    /// Make sure there is a file at the path to write to: the one open, unless it
    /// was removed (then a new one), or a new try at opening one.
    fn ready(&mut self) -> Result<(), RecordError> {
        let mut removed = false;
        if let Some(f) = &self.file {
            match f.state() {
                Ok((len, false)) => {
                    self.size = len;
                    return Ok(());
                }
                Ok((_, true)) => removed = true,
                // Cannot even stat it: let the write say what is wrong.
                Err(_) => return Ok(()),
            }
        }
        if !removed {
            if let Some((t, why)) = &self.retry_open_at {
                if Instant::now() < *t {
                    return Err(RecordError::Open {
                        path: self.path.clone(),
                        source: io::Error::other(why.clone()),
                    });
                }
            }
        }
        self.file = None;
        match F::open(&self.path) {
            Ok(f) => {
                self.use_file(f);
                if removed {
                    tracing::warn!(file = %self.path.display(), "the record file was removed; records go to a new one");
                }
                Ok(())
            }
            Err(source) => {
                self.retry_open_at = Some((Instant::now() + RETRY_OPEN, source.to_string()));
                let path = self.path.clone();
                Err(if removed {
                    RecordError::Removed { path, source }
                } else {
                    RecordError::Open { path, source }
                })
            }
        }
    }

    /// One note line: what was lost, why, when.
    fn note(&self, n: u64, reason: &str, error: Option<&str>) -> Vec<u8> {
        let mut v = serde_json::json!({
            "ts": Timestamp(std::time::SystemTime::now()),
            "records_dropped": n,
            "reason": reason,
        });
        if let (Some(e), Some(o)) = (error, v.as_object_mut()) {
            o.insert("error".into(), e.into());
        }
        let mut line = v.to_string().into_bytes();
        line.push(b'\n');
        line
    }

    /// Write what the file owes its readers before the next records: a newline
    /// after a torn fragment, and the notes of records lost.
    fn write_notes(&mut self) -> Result<(), RecordError> {
        let mut notes: Vec<(Vec<u8>, u8)> = Vec::new();
        if self.torn_tail {
            notes.push((b"\n".to_vec(), 0));
        }
        if self.unnoted > 0 {
            notes.push((
                self.note(self.unnoted, "write_error", Some(&self.unnoted_error)),
                1,
            ));
        }
        if self.pending_queue_full > 0 {
            notes.push((self.note(self.pending_queue_full, "queue_full", None), 2));
        }
        for (line, kind) in notes {
            let Some(f) = self.file.as_mut() else {
                return Ok(());
            };
            let w = append_lines(f, &line, 0, &[line.len()]);
            self.size += w.bytes;
            if w.torn_left {
                self.torn_tail = true;
            }
            if let Some(source) = w.error {
                return Err(RecordError::Write {
                    path: self.path.clone(),
                    source,
                });
            }
            match kind {
                0 => self.torn_tail = false,
                1 => self.unnoted = 0,
                _ => self.pending_queue_full = 0,
            }
        }
        Ok(())
    }

    /// Write a batch of whole lines (`ends`: where each ends in `buf`), rotating
    /// by size between lines; what the file does not take is counted lost.
    fn write(&mut self, buf: &[u8], ends: &[usize]) {
        if ends.is_empty() && !self.torn_tail && self.unnoted == 0 && self.pending_queue_full == 0 {
            return;
        }
        if let Err(e) = self.ready() {
            self.lost(ends.len(), &e);
            return;
        }
        // A failed note is tried again with the next batch; the records may still
        // fit. But not after a fragment that could not be ended: they would be
        // glued to it.
        if let Err(e) = self.write_notes() {
            if self.torn_tail {
                self.lost(ends.len(), &e);
                return;
            }
        }
        let mut i = 0;
        while i < ends.len() {
            let from = if i == 0 { 0 } else { ends[i - 1] };
            let mut j = ends.len();
            if let Some(max) = self.max_size {
                let room = max.saturating_sub(self.size);
                j = i;
                while j < ends.len() && (ends[j] - from) as u64 <= room {
                    j += 1;
                }
                if j == i {
                    if self.size > 0 && self.rotate() {
                        continue;
                    }
                    // An empty file takes a line longer than max_size alone; a
                    // failed rotation leaves the rest in the current file.
                    j = if self.size == 0 { i + 1 } else { ends.len() };
                }
            }
            let Some(f) = self.file.as_mut() else {
                let e = RecordError::Open {
                    path: self.path.clone(),
                    source: io::Error::new(io::ErrorKind::NotFound, "no record file is open"),
                };
                self.lost(ends.len() - i, &e);
                return;
            };
            let w = append_lines(f, buf, from, &ends[i..j]);
            self.size += w.bytes;
            i += w.lines;
            if w.torn_left {
                self.torn_tail = true;
            }
            if let Some(source) = w.error {
                let e = RecordError::Write {
                    path: self.path.clone(),
                    source,
                };
                self.lost(ends.len() - i, &e);
                return;
            }
        }
        // A whole batch is in the file: the episode (if any) is over.
        if !ends.is_empty() {
            if let Some(ep) = self.failing.take() {
                tracing::warn!(
                    file = %self.path.display(),
                    lost = ep.lost,
                    "records are written again; {} record(s) could not be written and are counted as lost",
                    ep.lost
                );
                *self.file_error.lock().unwrap_or_else(|p| p.into_inner()) = None;
            }
        }
    }

    /// Rotate by size: `.keep-1` → `.keep` (the oldest is replaced) … `.1` → `.2`,
    /// the file → `.1`, then a new file. False if it could not be done now (logged
    /// once; records go on into the current file, and it is tried again later).
    fn rotate(&mut self) -> bool {
        if self.retry_rotate_at.is_some_and(|t| Instant::now() < t) {
            return false;
        }
        match self.try_rotate() {
            Ok(()) => {
                if self.rotate_failing {
                    tracing::info!(file = %self.path.display(), "the record file rotates again");
                }
                self.rotate_failing = false;
                self.retry_rotate_at = None;
                true
            }
            Err(e) => {
                if !self.rotate_failing {
                    tracing::error!(error = %e, "cannot rotate the record file; records go on into the current one");
                }
                self.rotate_failing = true;
                self.retry_rotate_at = Some(Instant::now() + RETRY_ROTATE);
                false
            }
        }
    }

    fn try_rotate(&mut self) -> Result<(), RecordError> {
        if !self.rotated_away {
            for n in (1..self.keep).rev() {
                let (from, to) = (self.numbered(n), self.numbered(n + 1));
                match std::fs::rename(&from, &to) {
                    Ok(()) => {}
                    Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                    Err(source) => return Err(RecordError::Rotate { from, to, source }),
                }
            }
            let to = self.numbered(1);
            match std::fs::rename(&self.path, &to) {
                Ok(()) => {}
                // Moved or removed by someone else: just open a new one.
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(source) => {
                    return Err(RecordError::Rotate {
                        from: self.path.clone(),
                        to,
                        source,
                    })
                }
            }
            self.rotated_away = true;
        }
        let f = F::open(&self.path).map_err(|source| RecordError::Open {
            path: self.path.clone(),
            source,
        })?;
        self.use_file(f);
        Ok(())
    }

    /// Write to `f`, just opened at the path, from now on.
    fn use_file(&mut self, f: F) {
        self.size = f.state().map_or(0, |s| s.0);
        self.file = Some(f);
        self.retry_open_at = None;
        self.rotated_away = false;
        self.torn_tail = F::torn_end(&self.path);
    }

    /// SIGUSR1: open the path again; on failure the old file stays in use.
    fn reopen(&mut self) {
        match F::open(&self.path) {
            Ok(f) => {
                self.use_file(f);
                tracing::info!(file = %self.path.display(), "record file reopened");
            }
            Err(source) => {
                let e = RecordError::Open {
                    path: self.path.clone(),
                    source,
                };
                if self.file.is_some() {
                    tracing::error!(error = %e, "cannot reopen the record file; records keep going to the old one");
                } else {
                    tracing::error!(error = %e, "cannot reopen the record file; it is tried again with the next records");
                }
            }
        }
    }

    /// At exit: sync, and say what an episode still open has lost.
    fn close(&mut self) {
        if let Some(f) = self.file.as_ref() {
            let _ = f.sync();
        }
        if let Some(ep) = &self.failing {
            tracing::error!(
                file = %self.path.display(),
                error = %ep.error,
                lost = ep.lost,
                "exiting while records cannot be written; {} record(s) were lost",
                ep.lost
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::RefCell;
    use std::collections::HashMap;
    use std::rc::Rc;

    /// A disk with `room` bytes free, for the writer to fill: writes take what
    /// fits and return a short count, then ENOSPC, as a real filesystem does.
    #[derive(Default)]
    struct Disk {
        files: HashMap<PathBuf, Rc<RefCell<Vec<u8>>>>,
        room: usize,
        /// ftruncate fails (an append-only file).
        cut_fails: bool,
        /// Opening fails (the directory is gone).
        open_fails: bool,
        writes: usize,
    }

    thread_local! {
        static DISK: RefCell<Disk> = RefCell::new(Disk::default());
    }

    fn disk<R>(f: impl FnOnce(&mut Disk) -> R) -> R {
        DISK.with(|d| f(&mut d.borrow_mut()))
    }

    fn content(p: &str) -> String {
        disk(|d| {
            d.files
                .get(Path::new(p))
                .map(|f| String::from_utf8_lossy(&f.borrow()).into_owned())
                .unwrap_or_default()
        })
    }

    struct FakeFile {
        path: PathBuf,
        data: Rc<RefCell<Vec<u8>>>,
        pos: u64,
    }

    impl RecordFile for FakeFile {
        fn open(path: &Path) -> io::Result<Self> {
            disk(|d| {
                if d.open_fails {
                    return Err(io::Error::from(io::ErrorKind::NotFound));
                }
                let data = d.files.entry(path.to_path_buf()).or_default().clone();
                Ok(FakeFile {
                    path: path.to_path_buf(),
                    data,
                    pos: 0,
                })
            })
        }
        fn append(&mut self, buf: &[u8]) -> io::Result<usize> {
            disk(|d| {
                d.writes += 1;
                let n = buf.len().min(d.room);
                if n == 0 {
                    return Err(io::Error::from_raw_os_error(28));
                }
                d.room -= n;
                let mut data = self.data.borrow_mut();
                data.extend_from_slice(&buf[..n]);
                self.pos = data.len() as u64;
                Ok(n)
            })
        }
        fn end_and_len(&mut self) -> io::Result<(u64, u64)> {
            Ok((self.pos, self.data.borrow().len() as u64))
        }
        fn cut(&mut self, len: u64) -> io::Result<()> {
            disk(|d| {
                if d.cut_fails {
                    return Err(io::Error::from(io::ErrorKind::PermissionDenied));
                }
                let mut data = self.data.borrow_mut();
                d.room += data.len() - len as usize;
                data.truncate(len as usize);
                Ok(())
            })
        }
        fn state(&self) -> io::Result<(u64, bool)> {
            let here = disk(|d| {
                d.files
                    .get(&self.path)
                    .is_some_and(|f| Rc::ptr_eq(f, &self.data))
            });
            Ok((self.data.borrow().len() as u64, !here))
        }
        fn sync(&self) -> io::Result<()> {
            Ok(())
        }
        fn torn_end(path: &Path) -> bool {
            disk(|d| {
                d.files
                    .get(path)
                    .is_some_and(|f| f.borrow().last().is_some_and(|b| *b != b'\n'))
            })
        }
    }

    /// `n` record-like lines of `len` bytes each (newline included), ids from `first`.
    fn batch(first: u64, n: usize, len: usize) -> (Vec<u8>, Vec<usize>) {
        let mut buf = Vec::new();
        let mut ends = Vec::new();
        for i in 0..n as u64 {
            let mut l = format!("{{\"id\":{},\"pad\":\"", first + i);
            while l.len() < len - 3 {
                l.push('x');
            }
            l.push_str("\"}\n");
            assert_eq!(l.len(), len);
            buf.extend_from_slice(l.as_bytes());
            ends.push(buf.len());
        }
        (buf, ends)
    }

    /// Every line is whole JSON: the ids of records, and the notes' counts by reason.
    fn parse(text: &str) -> (Vec<u64>, Vec<(u64, String)>) {
        let mut ids = Vec::new();
        let mut notes = Vec::new();
        for l in text.lines() {
            let v: serde_json::Value =
                serde_json::from_str(l).unwrap_or_else(|e| panic!("not a whole line: {l:?}: {e}"));
            if let Some(id) = v["id"].as_u64() {
                ids.push(id);
            } else {
                notes.push((
                    v["records_dropped"].as_u64().unwrap(),
                    v["reason"].as_str().unwrap().to_string(),
                ));
            }
        }
        (ids, notes)
    }

    fn fake_sink(path: &str) -> Sink<FakeFile> {
        Sink::open(
            Path::new(path),
            None,
            5,
            Arc::new(Drops::default()),
            Arc::new(Mutex::new(None)),
        )
        .unwrap()
    }

    /// Logs written while `f` runs, one string per line.
    fn logged<R>(f: impl FnOnce() -> R) -> (R, Vec<String>) {
        #[derive(Clone, Default)]
        struct Buf(Arc<Mutex<Vec<u8>>>);
        impl Write for Buf {
            fn write(&mut self, b: &[u8]) -> io::Result<usize> {
                self.0.lock().unwrap().extend_from_slice(b);
                Ok(b.len())
            }
            fn flush(&mut self) -> io::Result<()> {
                Ok(())
            }
        }
        impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for Buf {
            type Writer = Buf;
            fn make_writer(&'a self) -> Buf {
                self.clone()
            }
        }
        let buf = Buf::default();
        let sub = tracing_subscriber::fmt()
            .with_writer(buf.clone())
            .with_ansi(false)
            .finish();
        let r = tracing::subscriber::with_default(sub, f);
        let text = String::from_utf8(buf.0.lock().unwrap().clone()).unwrap();
        (r, text.lines().map(str::to_string).collect())
    }

    #[test]
    fn a_short_write_is_cut_back_to_the_last_whole_line() {
        disk(|d| d.room = 250);
        let mut f = FakeFile::open(Path::new("short")).unwrap();
        let (buf, ends) = batch(0, 5, 100);
        let w = append_lines(&mut f, &buf, 0, &ends);
        assert_eq!(w.lines, 2);
        assert_eq!(w.bytes, 200);
        assert!(!w.torn_left);
        assert_eq!(
            w.error.map(|e| e.kind()),
            Some(io::ErrorKind::StorageFull),
            "no progress on the retry: full"
        );
        let text = content("short");
        assert_eq!(text.len(), 200, "the torn third line is cut off: {text:?}");
        assert_eq!(parse(&text).0, vec![0, 1]);
        // The first write took 250 bytes, the retry of the rest took the 50 left.
        assert_eq!(disk(|d| (d.writes, d.room)), (2, 50));
    }

    #[test]
    fn space_freed_between_writes_is_used_and_nothing_is_doubled() {
        let mut f = FakeFile::open(Path::new("freed")).unwrap();
        let (buf, ends) = batch(0, 4, 100);
        // Room for one and a half lines, then space comes back (another file removed).
        disk(|d| d.room = 150);
        let w = append_lines(&mut f, &buf, 0, &ends);
        assert_eq!(w.lines, 1);
        disk(|d| d.room = 1000);
        let w2 = append_lines(&mut f, &buf, ends[0], &ends[1..]);
        assert_eq!((w2.lines, w2.error.is_none()), (3, true));
        assert_eq!(parse(&content("freed")).0, vec![0, 1, 2, 3]);
    }

    #[test]
    fn a_fragment_that_cannot_be_cut_stays_a_line_of_its_own() {
        disk(|d| {
            d.room = 150;
            d.cut_fails = true;
        });
        let mut s = fake_sink("appendonly");
        let (buf, ends) = batch(0, 3, 100);
        s.write(&buf, &ends);
        assert!(s.torn_tail);
        assert_eq!(s.drops.write_error.load(Ordering::Relaxed), 2);
        disk(|d| {
            d.room = 10_000;
            d.cut_fails = false;
        });
        let (buf, ends) = batch(3, 2, 100);
        s.write(&buf, &ends);
        let text = content("appendonly");
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 5, "{text}");
        assert_eq!(lines[1].len(), 50, "the fragment alone on its line: {text}");
        let rest: String = [lines[0], lines[2], lines[3], lines[4]]
            .iter()
            .map(|l| format!("{l}\n"))
            .collect();
        let (ids, notes) = parse(&rest);
        assert_eq!(ids, vec![0, 3, 4]);
        assert_eq!(notes, vec![(2, "write_error".to_string())]);
    }

    #[test]
    fn a_full_disk_counts_every_lost_record_logs_once_per_episode_and_resumes() {
        let ((), logs) = logged(|| {
            disk(|d| d.room = 350);
            let mut s = fake_sink("full");
            let mut next = 0;
            let mut send = |s: &mut Sink<FakeFile>, n: usize| {
                let (buf, ends) = batch(next, n, 100);
                next += n as u64;
                s.write(&buf, &ends);
            };
            send(&mut s, 10); // 3 fit
            send(&mut s, 5); // none
            send(&mut s, 5);
            assert_eq!(s.drops.write_error.load(Ordering::Relaxed), 17);
            assert!(s.file_error.lock().unwrap().is_some());
            disk(|d| d.room = 1000);
            send(&mut s, 2); // episode 1 ends: note, then 20 and 21
            assert!(s.failing.is_none());
            assert!(s.file_error.lock().unwrap().is_none());
            disk(|d| d.room = 0);
            send(&mut s, 4); // episode 2
            disk(|d| d.room = 1000);
            send(&mut s, 1);
            assert_eq!(s.drops.write_error.load(Ordering::Relaxed), 21);
            let (ids, notes) = parse(&content("full"));
            assert_eq!(ids, vec![0, 1, 2, 20, 21, 26]);
            assert_eq!(
                notes,
                vec![(17, "write_error".into()), (4, "write_error".into())]
            );
            // lines + lost == records
            assert_eq!(ids.len() as u64 + 21, 27);
        });
        let starts = logs
            .iter()
            .filter(|l| l.contains("records cannot be written"))
            .count();
        let ends = logs
            .iter()
            .filter(|l| l.contains("records are written again"))
            .count();
        assert_eq!((starts, ends), (2, 2), "{logs:#?}");
        assert!(
            logs.iter()
                .any(|l| l.contains("17 record(s) could not be written")),
            "{logs:#?}"
        );
    }

    #[test]
    fn a_removed_file_is_made_again_and_a_missing_directory_is_waited_for() {
        let mut s = fake_sink("gone");
        disk(|d| d.room = 100_000);
        let (buf, ends) = batch(0, 2, 100);
        s.write(&buf, &ends);
        // The file is removed: the next batch goes to a new file, nothing lost.
        disk(|d| d.files.remove(Path::new("gone")));
        let (buf, ends) = batch(2, 2, 100);
        s.write(&buf, &ends);
        assert_eq!(parse(&content("gone")).0, vec![2, 3]);
        assert_eq!(s.drops.write_error.load(Ordering::Relaxed), 0);
        // Removed with its directory: lost and counted until it can be made again.
        disk(|d| {
            d.files.remove(Path::new("gone"));
            d.open_fails = true;
        });
        let (buf, ends) = batch(4, 3, 100);
        s.write(&buf, &ends);
        let (buf, ends) = batch(7, 1, 100);
        s.write(&buf, &ends); // within RETRY_OPEN: not even tried
        assert_eq!(s.drops.write_error.load(Ordering::Relaxed), 4);
        disk(|d| d.open_fails = false);
        s.retry_open_at = None;
        let (buf, ends) = batch(8, 1, 100);
        s.write(&buf, &ends);
        let (ids, notes) = parse(&content("gone"));
        assert_eq!(ids, vec![8]);
        assert_eq!(notes, vec![(4, "write_error".into())]);
    }

    /// A fresh directory under the system's temp dir, removed when dropped.
    struct Dir(PathBuf);
    impl Dir {
        fn new(name: &str) -> Dir {
            let p = std::env::temp_dir().join(format!(
                "brownout-record-{name}-{}-{:?}",
                std::process::id(),
                std::time::SystemTime::now()
            ));
            std::fs::create_dir_all(&p).unwrap();
            Dir(p)
        }
    }
    impl Drop for Dir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    fn file_sink(path: &Path, max: Option<u64>, keep: usize) -> Sink<File> {
        Sink::open(
            path,
            max,
            keep,
            Arc::new(Drops::default()),
            Arc::new(Mutex::new(None)),
        )
        .unwrap()
    }

    fn read(p: &Path) -> String {
        std::fs::read_to_string(p).unwrap_or_default()
    }

    #[test]
    fn size_rotation_keeps_every_record_once_and_the_newest_files() {
        let dir = Dir::new("rotate");
        let path = dir.0.join("r.jsonl");
        let mut s = file_sink(&path, Some(350), 50);
        let mut next = 0;
        for n in [1, 7, 2, 10, 3, 1, 6] {
            let (buf, ends) = batch(next, n, 100);
            next += n as u64;
            s.write(&buf, &ends);
        }
        let mut ids = Vec::new();
        for k in (1..=50).rev() {
            let p = s.numbered(k);
            if p.exists() {
                let len = std::fs::metadata(&p).unwrap().len();
                assert!(len <= 350, "{} is {len} bytes", p.display());
                ids.extend(parse(&read(&p)).0);
            }
        }
        ids.extend(parse(&read(&path)).0);
        assert_eq!(ids, (0..next).collect::<Vec<_>>(), "in order, once each");
        assert!(s.numbered(9).exists() && !s.numbered(10).exists());

        // keep 2: only .1 and .2 stay, the newest ones.
        let dir = Dir::new("rotate-keep");
        let path = dir.0.join("r.jsonl");
        let mut s = file_sink(&path, Some(300), 2);
        let (buf, ends) = batch(0, 20, 100);
        s.write(&buf, &ends);
        assert!(!s.numbered(3).exists());
        let mut ids = parse(&read(&s.numbered(2))).0;
        ids.extend(parse(&read(&s.numbered(1))).0);
        ids.extend(parse(&read(&path)).0);
        assert_eq!(ids, (12..20).collect::<Vec<_>>());

        // A line longer than max_size goes alone into a file of its own.
        let dir = Dir::new("rotate-long");
        let path = dir.0.join("r.jsonl");
        let mut s = file_sink(&path, Some(150), 5);
        let (buf, ends) = batch(0, 1, 100);
        s.write(&buf, &ends);
        let (buf, ends) = batch(1, 1, 400);
        s.write(&buf, &ends);
        let (buf, ends) = batch(2, 1, 100);
        s.write(&buf, &ends);
        assert_eq!(parse(&read(&s.numbered(2))).0, vec![0]);
        assert_eq!(parse(&read(&s.numbered(1))).0, vec![1]);
        assert_eq!(parse(&read(&path)).0, vec![2]);
    }

    #[test]
    fn a_rotation_that_fails_loses_nothing_and_is_tried_again() {
        let dir = Dir::new("rotate-fail");
        let path = dir.0.join("r.jsonl");
        let mut s = file_sink(&path, Some(250), 1);
        // A non-empty directory where `.1` should go: rename refuses.
        std::fs::create_dir_all(s.numbered(1).join("x")).unwrap();
        let ((), logs) = logged(|| {
            for i in 0..3 {
                let (buf, ends) = batch(i * 2, 2, 100);
                s.write(&buf, &ends);
            }
        });
        assert_eq!(parse(&read(&path)).0, vec![0, 1, 2, 3, 4, 5]);
        assert_eq!(
            logs.iter().filter(|l| l.contains("cannot rotate")).count(),
            1,
            "{logs:#?}"
        );
        std::fs::remove_dir_all(s.numbered(1)).unwrap();
        s.retry_rotate_at = None;
        let (buf, ends) = batch(6, 1, 100);
        s.write(&buf, &ends);
        assert_eq!(parse(&read(&s.numbered(1))).0, vec![0, 1, 2, 3, 4, 5]);
        assert_eq!(parse(&read(&path)).0, vec![6]);
        assert_eq!(s.drops.write_error.load(Ordering::Relaxed), 0);
    }

    #[test]
    fn records_are_appended_so_copytruncate_works() {
        let dir = Dir::new("copytruncate");
        let path = dir.0.join("r.jsonl");
        let mut s = file_sink(&path, Some(1000), 5);
        let (buf, ends) = batch(0, 8, 100);
        s.write(&buf, &ends);
        // copytruncate: copy, then truncate the file under the writer.
        std::fs::copy(&path, dir.0.join("r.jsonl.copy")).unwrap();
        OpenOptions::new()
            .write(true)
            .open(&path)
            .unwrap()
            .set_len(0)
            .unwrap();
        let (buf, ends) = batch(8, 3, 100);
        s.write(&buf, &ends);
        let text = read(&path);
        assert!(!text.starts_with('\0'), "no hole before the new records");
        assert_eq!(parse(&text).0, vec![8, 9, 10]);
        // The size is read from the file, so the truncation does not rotate early.
        assert!(!s.numbered(1).exists());
    }

    #[test]
    fn a_file_left_torn_by_an_earlier_process_gets_its_own_line_ended_first() {
        let dir = Dir::new("torn-at-open");
        let path = dir.0.join("r.jsonl");
        // A proxy killed in the middle of a write left half a record.
        std::fs::write(&path, "{\"id\":0}\n{\"id\":1,\"pa").unwrap();
        let mut s = file_sink(&path, None, 5);
        let (buf, ends) = batch(2, 2, 100);
        s.write(&buf, &ends);
        let text = read(&path);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(
            lines[1], "{\"id\":1,\"pa",
            "the fragment stays alone: {text}"
        );
        let rest: String = [lines[0], lines[2], lines[3]]
            .iter()
            .map(|l| format!("{l}\n"))
            .collect();
        assert_eq!(parse(&rest).0, vec![0, 2, 3]);
        // A whole file needs no newline.
        let path = dir.0.join("whole.jsonl");
        std::fs::write(&path, "{\"id\":0}\n").unwrap();
        let mut s = file_sink(&path, None, 5);
        let (buf, ends) = batch(1, 1, 100);
        s.write(&buf, &ends);
        assert_eq!(parse(&read(&path)).0, vec![0, 1]);
    }

    #[test]
    fn a_directory_that_disappears_and_returns() {
        let dir = Dir::new("dir-gone");
        let sub = dir.0.join("sub");
        std::fs::create_dir(&sub).unwrap();
        let path = sub.join("r.jsonl");
        let mut s = file_sink(&path, None, 5);
        let (buf, ends) = batch(0, 2, 100);
        s.write(&buf, &ends);
        std::fs::remove_dir_all(&sub).unwrap();
        let (buf, ends) = batch(2, 3, 100);
        s.write(&buf, &ends);
        assert_eq!(s.drops.write_error.load(Ordering::Relaxed), 3);
        std::fs::create_dir(&sub).unwrap();
        s.retry_open_at = None;
        let (buf, ends) = batch(5, 2, 100);
        s.write(&buf, &ends);
        let (ids, notes) = parse(&read(&path));
        assert_eq!(ids, vec![5, 6]);
        assert_eq!(notes, vec![(3, "write_error".into())]);
    }

    fn rec(id: u64) -> Box<Record> {
        let mut r = Box::new(Record::new(id, Arc::from("l")));
        r.outcome = Outcome::Ok;
        r
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn a_device_that_is_always_full_loses_records_counted_not_traffic() {
        let r = Recorder::start(Some(Path::new("/dev/full")), 1000, Arc::default()).unwrap();
        for i in 0..50 {
            r.submit(rec(i));
        }
        r.settle(Duration::from_secs(5));
        assert_eq!(r.written(), 50);
        assert_eq!(
            r.dropped_by_reason(),
            DroppedRecords {
                queue_full: 0,
                write_error: 50
            }
        );
        assert!(r
            .file_error()
            .is_some_and(|e| e.contains("/dev/full") && e.contains("No space left")));
        r.close();
    }

    #[test]
    fn a_full_queue_is_counted_and_noted_in_the_file() {
        let dir = Dir::new("queue");
        let path = dir.0.join("r.jsonl");
        let r = Recorder::start(Some(&path), 1, Arc::default()).unwrap();
        let total = 20_000u64;
        for i in 0..total {
            r.submit(rec(i));
        }
        r.close();
        let d = r.dropped_by_reason();
        assert_eq!(d.write_error, 0);
        assert!(d.queue_full > 0, "a queue of one overflows");
        assert_eq!(r.submitted() + d.queue_full, total);
        let (ids, notes) = parse(&read(&path));
        assert_eq!(ids.len() as u64, r.submitted());
        let noted: u64 = notes
            .iter()
            .map(|(n, why)| {
                assert_eq!(why, "queue_full");
                *n
            })
            .sum();
        assert_eq!(noted, d.queue_full, "every drop is noted in the file");
    }

    /// A record with every field the proxy can fill, ending as `outcome`.
    fn filled(id: u64, outcome: Outcome, r: &Recorder) -> Box<Record> {
        let mut rec = r.blank(id, Arc::from("llm"));
        // Files hold milliseconds: a time on a millisecond reads back equal.
        rec.ts = Timestamp(std::time::UNIX_EPOCH + Duration::from_millis(1_767_225_600_000 + id));
        rec.api = "openai";
        rec.endpoint = "chat";
        rec.phase = Some(Arc::from("storm"));
        rec.method.push_str("POST");
        rec.path.push_str("/v1/chat/completions");
        rec.model = Some("gpt-4o-mini".into());
        rec.stream = Some(id < 4);
        rec.matched.push(Arc::from("throttle"));
        rec.rules.push(Arc::from("throttle"));
        rec.faults.push(FaultRef {
            rule: Arc::from("throttle"),
            fault: "error",
            reason: None,
        });
        rec.faults_skipped.push(FaultRef {
            rule: Arc::from("slow"),
            fault: "delay",
            reason: Some("max_active"),
        });
        rec.attempt = Some(1);
        let mut headers = http::HeaderMap::new();
        headers.insert(
            "authorization",
            http::HeaderValue::from_static("Bearer sk-SECRET"),
        );
        r.identify(
            &mut rec,
            "POST",
            "/v1/chat/completions?x=1",
            Some(b"{\"model\":\"gpt-4o-mini\"}"),
            credential(&headers),
            std::net::IpAddr::from([127, 0, 0, 1]),
        );
        rec.status = Some(429);
        rec.outcome = outcome;
        rec.ttfb_ms = Some(0.25);
        rec.ttft_ms = Some(12.5);
        rec.e2e_ms = 40.125;
        rec.itl_ms = Some(ItlSummary {
            p50: 2.5,
            p95: 4.0,
            max: 8.0,
        });
        rec.tpot_ms = Some(3.0);
        rec.input_tokens = Some(3);
        rec.output_tokens = Some(5);
        rec.tokens_source = Some("usage");
        rec.bytes_in = 96;
        rec.bytes_out = 310;
        rec.upstream = Some(UpstreamTiming {
            status: Some(200),
            ttfb_ms: Some(1.0),
            e2e_ms: Some(30.5),
            retried: id > 5,
        });
        rec.gpu = Some(serde_json::json!({"queue_ms": 4.5, "batch": 3}));
        rec.results = Some(serde_json::json!({"returned": 3, "dropped": 1}));
        rec.grpc = Some(Box::new(GrpcCall {
            service: "milvus.proto.milvus.MilvusService".into(),
            method: "Search".into(),
            status: Some(14),
            in_message: Some("busy".into()),
        }));
        rec.error = Some("upstream: connection refused".into());
        rec
    }

    #[test]
    fn what_the_proxy_writes_reads_back_as_the_same_record_for_every_outcome() {
        let dir = Dir::new("roundtrip");
        let path = dir.0.join("r.jsonl");
        let r = Recorder::start(Some(&path), 1000, Arc::default()).unwrap();
        let mut sent = Vec::new();
        for (i, o) in Outcome::ALL.iter().enumerate() {
            let full = filled(i as u64, *o, &r);
            // And a blank one: nulls, empty lists, fields left out.
            let mut blank = r.blank(100 + i as u64, Arc::from("llm"));
            blank.ts = full.ts;
            blank.outcome = *o;
            sent.push((*full).clone());
            sent.push((*blank).clone());
            r.submit(full);
            r.submit(blank);
        }
        r.close();
        let text = read(&path);
        assert!(!text.contains("SECRET"), "{text}");
        let back: Vec<Record> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
            .collect();
        assert_eq!(back.len(), sent.len());
        for (b, s) in back.iter().zip(&sent) {
            assert_eq!(b, s);
        }
        let outcomes: Vec<Outcome> = back.iter().map(|b| b.outcome).step_by(2).collect();
        assert_eq!(outcomes, Outcome::ALL);
        // One key per recorder: the same call and client hash alike.
        assert!(back[0].fingerprint.is_some() && back[0].fingerprint == back[2].fingerprint);
        assert_eq!(back[0].client, back[2].client);
    }

    #[test]
    fn identities_reused_from_the_last_request_equal_fresh_ones() {
        let r = Recorder::start(None, 10, Arc::default()).unwrap();
        let a: std::net::IpAddr = [10, 0, 0, 1].into();
        let b: std::net::IpAddr = [10, 0, 0, 2].into();
        type Case<'a> = (
            &'a str,
            &'a str,
            Option<&'a [u8]>,
            Option<&'a [u8]>,
            std::net::IpAddr,
        );
        let cases: [Case<'_>; 8] = [
            ("GET", "/x", None, None, a),
            ("GET", "/x", None, None, a),
            ("GET", "/x", None, None, b),
            ("POST", "/x", Some(b"{}"), Some(b"k1"), a),
            ("POST", "/x", None, Some(b"k1"), b),
            ("POST", "/x", None, Some(b"k2"), b),
            ("GET", "/x?q", None, None, b),
            ("GET", "/x", None, Some(b"k2"), a),
        ];
        for (method, target, body, cred, ip) in cases {
            let mut rec = Record::new(0, Arc::from("l"));
            r.identify(&mut rec, method, target, body, cred, ip);
            assert_eq!(
                rec.fingerprint,
                Some(r.key.fingerprint(method, target, body))
            );
            assert_eq!(rec.client, Some(r.key.client(cred, ip)));
        }
        r.close();
    }

    #[test]
    fn a_configured_fingerprint_key_is_shared_and_never_shown() {
        let c: RecordConfig =
            brownout_faults::yaml::from_str("{fingerprint_key: s3cret-shared}", "t").unwrap();
        assert!(!format!("{c:?}").contains("s3cret"));
        let (a, b) = (
            Recorder::start_with(None, &c, Arc::default()).unwrap(),
            Recorder::start_with(None, &c, Arc::default()).unwrap(),
        );
        let (own, other) = (
            Recorder::start(None, 10, Arc::default()).unwrap(),
            Recorder::start(None, 10, Arc::default()).unwrap(),
        );
        let id = |r: &Recorder| {
            let mut rec = Record::new(0, Arc::from("l"));
            r.identify(&mut rec, "GET", "/x", None, None, [10, 0, 0, 1].into());
            (rec.fingerprint, rec.client)
        };
        assert_eq!(id(&a), id(&b), "sidecars sharing a key");
        assert_ne!(id(&own), id(&other), "a key of each process");
        assert_ne!(id(&a), id(&own));
        for r in [a, b, own, other] {
            r.close();
        }
        let e = brownout_faults::yaml::from_str::<RecordConfig>("{fingerprint_key: ''}", "t")
            .err()
            .map(|d| d.to_string())
            .unwrap_or_default();
        assert!(e.contains("must not be empty"), "{e}");
    }

    #[test]
    fn record_config_reads_sizes_and_refuses_keep_zero() {
        let c: RecordConfig =
            brownout_faults::yaml::from_str("{jsonl: r.jsonl, max_size: 256MiB}", "t").unwrap();
        assert_eq!(c.max_size.map(|b| b.0), Some(256 << 20));
        assert_eq!(c.keep, 5);
        let c: RecordConfig =
            brownout_faults::yaml::from_str("{max_size: 1000, keep: 2}", "t").unwrap();
        assert_eq!((c.max_size.map(|b| b.0), c.keep), (Some(1000), 2));
        let e = brownout_faults::yaml::from_str::<RecordConfig>("{keep: 0}", "t")
            .err()
            .map(|d| d.to_string())
            .unwrap_or_default();
        assert!(e.contains("at least 1"), "{e}");
    }
}
