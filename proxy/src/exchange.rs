//! The record guard: one [`Exchange`] per request, written when it is dropped.
//!
//! Whatever path an exchange takes (answered, injected, reset, timed out, or the
//! client vanished and hyper dropped our future), the guard's `Drop` writes exactly
//! one record. That is how "records equal exchanges" holds without every code path
//! having to remember to log.
//!
//! Both data paths open their exchanges here, and the response body and the
//! WebSocket tunnel carry them to their end, so the guard sits below all of them,
//! with the [`Listener`] facts a record is opened with.

use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::Arc;

use brownout_faults::matcher::RuleState;
use brownout_faults::{ApiKind, Endpoint};
use tokio::sync::OwnedSemaphorePermit;
use tokio::time::Instant;

use crate::conn::ConnInfo;
use crate::control::state::Shared;
use crate::record::{FaultRef, Outcome, Record, UpstreamTiming};

/// What the pipeline's layers know of the listener a request came to: enough to
/// open its record, match its rules and carry out their faults. Forwarding is
/// [`ListenerCtx`](crate::pipeline::call::ListenerCtx)'s; an in-process stack
/// ([`crate::layer`]) has a listener and no upstream.
#[derive(Debug)]
pub struct Listener {
    pub name: Arc<str>,
    pub api: ApiKind,
    pub shared: Arc<Shared>,
    /// Exchanges in flight on this listener (`/metrics`).
    pub active: Arc<AtomicI64>,
}

/// A request in flight and what will be recorded about it.
#[derive(Debug)]
pub struct Exchange {
    shared: Arc<Shared>,
    rec: Option<Box<Record>>,
    start: Instant,
    upstream_start: Option<Instant>,
    active: Arc<AtomicI64>,
    /// Rules whose `max_active` slot this exchange holds.
    activated: Vec<Arc<RuleState>>,
    /// Concurrency-limit slots held until the response body is done.
    pub permits: Vec<OwnedSemaphorePermit>,
    /// Request-body bytes forwarded, for bodies whose length was not known up front.
    pub bytes_in: Option<Arc<AtomicU64>>,
    done: bool,
    /// The client connection, told when the exchange ends (for `idle_timeout`).
    conn: Option<Arc<ConnInfo>>,
}

fn ms(d: std::time::Duration) -> f64 {
    (d.as_secs_f64() * 1000.0 * 1000.0).round() / 1000.0
}

/// What a record says of a request from its head alone: the part of the record
/// both data paths fill in the moment they have read a head, before either knows
/// anything else.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Opening<'a> {
    pub(crate) endpoint: Endpoint,
    pub(crate) method: &'a str,
    /// The target's path, without its query.
    pub(crate) path: &'a str,
    /// The client's own count of its retries (`wire::RETRY_COUNT`).
    pub(crate) attempt: Option<u32>,
    /// The body's length as the head declares it (0: none, or not known yet).
    pub(crate) bytes_in: u64,
}

impl Exchange {
    /// Open the exchange of a request whose head was just read on `ctx`'s
    /// listener. Both data paths open theirs here, so that a record begins the
    /// same whichever path serves the request. `conn`: the client connection to
    /// tell when the exchange ends (`idle_timeout`); the fast path keeps its own
    /// idle timer and passes none.
    pub(crate) fn open(ctx: &Listener, head: Opening<'_>, conn: Option<Arc<ConnInfo>>) -> Self {
        let shared = &ctx.shared;
        let mut rec = shared.recorder.blank(shared.next_id(), ctx.name.clone());
        rec.api = ctx.api.as_str();
        rec.endpoint = head.endpoint.as_str();
        rec.method.push_str(head.method);
        rec.path.push_str(head.path);
        rec.attempt = head.attempt;
        rec.bytes_in = head.bytes_in;
        Exchange::new(shared.clone(), ctx.active.clone(), rec, conn)
    }

    fn new(
        shared: Arc<Shared>,
        active: Arc<AtomicI64>,
        rec: Box<Record>,
        conn: Option<Arc<ConnInfo>>,
    ) -> Self {
        active.fetch_add(1, Ordering::Relaxed);
        if let Some(c) = &conn {
            c.exchange_started();
        }
        Exchange {
            shared,
            rec: Some(rec),
            start: Instant::now(),
            upstream_start: None,
            active,
            activated: Vec::new(),
            permits: Vec::new(),
            bytes_in: None,
            done: false,
            conn,
        }
    }

    /// The record being filled in (always present until the exchange is dropped).
    pub fn rec(&mut self) -> &mut Record {
        self.rec
            .get_or_insert_with(|| Box::new(Record::new(0, Arc::from(""))))
    }

    /// The state the exchange's listener shares (its kill switch, its recorder).
    pub fn shared(&self) -> &Arc<Shared> {
        &self.shared
    }

    /// When the request arrived.
    pub fn start(&self) -> Instant {
        self.start
    }

    pub fn faults_enabled(&self) -> bool {
        self.shared.release.faults_enabled()
    }

    /// Hold a `max_active` slot of `rule` until the exchange ends.
    pub fn hold_rule(&mut self, rule: Arc<RuleState>) {
        self.activated.push(rule);
    }

    pub fn applied(&mut self, rule: &Arc<str>, fault: &'static str) {
        self.rec().faults.push(FaultRef {
            rule: rule.clone(),
            fault,
            reason: None,
        });
    }

    pub fn skipped(&mut self, rule: &Arc<str>, fault: &'static str, reason: &'static str) {
        self.rec().faults_skipped.push(FaultRef {
            rule: rule.clone(),
            fault,
            reason: Some(reason),
        });
    }

    /// The request goes upstream now: the instant, which the caller's upstream
    /// deadline counts from too (one clock read for both).
    pub fn upstream_called(&mut self) -> Instant {
        let now = Instant::now();
        self.upstream_start = Some(now);
        now
    }

    /// The request was sent upstream again on a new connection.
    pub fn upstream_retried(&mut self) {
        self.rec()
            .upstream
            .get_or_insert_with(Default::default)
            .retried = true;
    }

    /// Upstream response headers arrived.
    pub fn upstream_headers(&mut self, status: u16) {
        let ttfb = self.upstream_start.map(|t| ms(t.elapsed()));
        let retried = self.rec().upstream.as_ref().is_some_and(|u| u.retried);
        self.rec().upstream = Some(UpstreamTiming {
            status: Some(status),
            ttfb_ms: ttfb,
            e2e_ms: None,
            retried,
        });
        self.rec().status = Some(status);
    }

    /// The answer the client gets does not come from the upstream.
    pub fn local_answer(&mut self, status: u16, outcome: Outcome) {
        self.rec().status = Some(status);
        self.rec().outcome = outcome;
    }

    /// A gRPC call's `grpc-status` (from the trailers, or a trailers-only answer).
    pub fn grpc_status(&mut self, code: u32) {
        if let Some(g) = self.rec().grpc.as_mut() {
            g.status = Some(code);
        }
    }

    /// A response message reported an error in its own status field.
    pub fn grpc_in_message(&mut self, error: String) {
        if let Some(g) = self.rec().grpc.as_mut() {
            if g.in_message.is_none() {
                g.in_message = Some(error);
            }
        }
    }

    /// The upstream's body has been read to its end (before the client's answer).
    pub fn upstream_body_done(&mut self) {
        let upstream_start = self.upstream_start;
        if let (Some(up), Some(t)) = (self.rec().upstream.as_mut(), upstream_start) {
            up.e2e_ms = Some(ms(t.elapsed()));
        }
        self.upstream_start = None;
    }

    pub fn bytes_out(&self) -> u64 {
        self.rec.as_ref().map_or(0, |r| r.bytes_out)
    }

    pub fn on_body_bytes(&mut self, n: usize) {
        let start = self.start;
        let r = self.rec();
        if r.ttfb_ms.is_none() {
            r.ttfb_ms = Some(ms(start.elapsed()));
        }
        r.bytes_out += n as u64;
    }

    /// The response body ended (`outcome` None: cleanly, judged by status).
    pub fn finish_body(&mut self, outcome: Option<Outcome>, error: Option<String>) {
        if self.done {
            return;
        }
        let outcome = outcome.unwrap_or_else(|| {
            let r = self.rec();
            if r.outcome == Outcome::InjectedError {
                Outcome::InjectedError
            } else {
                match (r.status, r.grpc.as_deref()) {
                    (Some(s), _) if s >= 400 => Outcome::HttpError,
                    // A gRPC call failed however it was answered: a non-zero
                    // `grpc-status`, or an error inside an OK response message.
                    (_, Some(g)) if g.status.is_some_and(|c| c != 0) || g.in_message.is_some() => {
                        Outcome::HttpError
                    }
                    _ => Outcome::Ok,
                }
            }
        });
        let unfinished_call = outcome == Outcome::Ok
            && self
                .rec()
                .grpc
                .as_deref()
                .is_some_and(|g| g.status.is_none());
        let (outcome, error) = if unfinished_call {
            // The client sees INTERNAL: "server closed the stream without trailers".
            let why = "the upstream's gRPC response ended without a grpc-status".to_string();
            (Outcome::UpstreamError, error.or(Some(why)))
        } else {
            (outcome, error)
        };
        let upstream_start = self.upstream_start;
        if let (Some(up), Some(t)) = (self.rec().upstream.as_mut(), upstream_start) {
            up.e2e_ms = Some(ms(t.elapsed()));
        }
        self.rec().outcome = outcome;
        if error.is_some() {
            self.rec().error = error;
        }
        self.done = true;
    }

    /// Log and record a failure brownout answers itself (502, 504, 400 and their
    /// gRPC form), on either data path. The answer is complete once sent: the
    /// outcome is the failure, not a client disconnect.
    pub(crate) fn gateway_failed(&mut self, e: &crate::error::ProxyError) {
        tracing::warn!(error = %crate::error::chain(e), "forwarding failed");
        self.local_answer(e.status().as_u16(), e.outcome());
        self.rec().error = Some(crate::error::chain(e));
        self.finish_body(Some(e.outcome()), None);
    }

    /// Ended without a body to send (reset before the response).
    pub fn finish(&mut self, outcome: Outcome, error: Option<String>) {
        self.rec().outcome = outcome;
        self.rec().error = error;
        self.done = true;
    }
}

impl Drop for Exchange {
    fn drop(&mut self) {
        for r in self.activated.drain(..) {
            r.deactivate();
        }
        self.active.fetch_sub(1, Ordering::Relaxed);
        let now = Instant::now();
        if let Some(c) = &self.conn {
            c.exchange_ended(now);
        }
        let Some(mut rec) = self.rec.take() else {
            return;
        };
        if let Some(n) = &self.bytes_in {
            // What really passed, not what `content-length` promised.
            rec.bytes_in = n.load(Ordering::Relaxed) & !crate::upstream::CLIENT_BODY_FAILED;
        }
        if !self.done {
            // hyper dropped the exchange before it ended: the client went away.
            rec.outcome = Outcome::ClientClosed;
        }
        rec.e2e_ms = ms(now.saturating_duration_since(self.start));
        if rec.ttfb_ms.is_none() && rec.bytes_out > 0 {
            rec.ttfb_ms = Some(rec.e2e_ms);
        }
        self.shared.recorder.submit(rec);
    }
}
