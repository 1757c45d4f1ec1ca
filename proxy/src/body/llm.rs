//! The LLM layer of a response body: measurement on every stream, and stream
//! faults when a rule decided some.
//!
//! Without stream faults, frames pass through untouched and at once; a side tap
//! cuts a copy into events only to measure TTFT, inter-token gaps and tokens. With
//! stream faults, the body is re-framed event by event through the [`Shaper`],
//! whose actions (emit not before, stall, end, reset) this layer carries out in
//! order, waiting on timers that the kill switch cuts short.

use std::collections::VecDeque;
use std::sync::Arc;

use brownout_faults::fault::SkipReason;
use brownout_faults::gpu::Sequence;
use brownout_faults::stream::{
    framing_for, inspect, Action, EventInfo, Framing, Shaper, Splitter, StreamMeter,
};
use brownout_faults::{ApiKind, Endpoint};
use bytes::Bytes;
use tokio::time::Instant;

use crate::body::decode::TapDecoder;
use crate::exchange::Exchange;

/// Stream state carried by [`crate::body::ProxyBody`].
#[derive(Debug)]
pub struct LlmStream {
    api: ApiKind,
    endpoint: Endpoint,
    framing: Framing,
    splitter: Splitter,
    meter: StreamMeter,
    shaper: Option<Shaper>,
    /// Names of the decided rules, by the index the shaper reports.
    rules: Vec<Arc<str>>,
    queue: VecDeque<Action>,
    /// The upstream has ended (or the shaper ended the stream).
    pub upstream_done: bool,
    released: bool,
    decoder: Option<TapDecoder>,
    /// Measurement gave up (undecodable compressed stream).
    broken: bool,
    /// A simulated GPU: a token goes out no sooner than the model produced it.
    gpu: Option<Sequence>,
    /// Content events sent to the client so far (the model's token index).
    sent_tokens: u64,
    /// Content events received from the upstream so far (the answer's length).
    fed_tokens: u64,
}

/// What to do next, as decided by [`LlmStream::next`].
pub enum Next {
    /// Send these bytes now.
    Emit(Bytes),
    /// Nothing may go out before this instant (`None`: until released).
    Wait(Option<Instant>),
    /// Nothing may go out before the simulated GPU produced token `k`.
    Gpu(u64),
    /// Read more from the upstream.
    Read,
    /// End the body cleanly.
    End,
    /// Abort the body.
    Reset,
}

impl LlmStream {
    pub fn new(
        api: ApiKind,
        endpoint: Endpoint,
        framing: Framing,
        start: Instant,
        shaper: Option<Shaper>,
        rules: Vec<Arc<str>>,
    ) -> Self {
        LlmStream {
            api,
            endpoint,
            framing,
            splitter: Splitter::new(framing),
            meter: StreamMeter::new(start),
            shaper,
            rules,
            queue: VecDeque::new(),
            upstream_done: false,
            released: false,
            decoder: None,
            broken: false,
            gpu: None,
            sent_tokens: 0,
            fed_tokens: 0,
        }
    }

    /// The stream's own terminator (`[DONE]`, `message_stop`...) has gone to the
    /// client: it has the whole answer.
    pub fn terminated(&self) -> bool {
        self.meter.saw_terminator()
    }

    /// The shaped stream has ended: nothing queued and nothing more to read.
    pub fn finished(&self) -> bool {
        self.upstream_done && self.queue.is_empty()
    }

    /// Whether events are held and re-framed (stream faults or a simulated GPU), not
    /// just measured.
    pub fn shaping(&self) -> bool {
        self.shaper.is_some() || self.gpu.is_some()
    }

    /// Pace content events by a simulated GPU's token production.
    pub fn with_gpu(mut self, gpu: Option<Sequence>) -> Self {
        self.gpu = gpu;
        self
    }

    /// Wait for the model's `k`th token (ready at once without a GPU, or once released).
    pub fn poll_gpu(&mut self, k: u64, cx: &mut std::task::Context<'_>) -> std::task::Poll<()> {
        match self.gpu.as_mut() {
            Some(seq) => seq.poll_produced(k, cx),
            None => std::task::Poll::Ready(()),
        }
    }

    fn info(&self, raw: &[u8]) -> EventInfo {
        inspect(self.api, self.endpoint, self.framing, raw)
    }

    /// Decode a compressed stream on the side (the client still gets it compressed).
    pub fn with_decoder(mut self, decoder: Option<TapDecoder>) -> Self {
        self.decoder = decoder;
        self
    }

    /// Measure a frame that passes through unchanged (no stream faults).
    pub fn tap(&mut self, frame: &Bytes) {
        if self.broken {
            return;
        }
        let decoded;
        let frame = match self.decoder.as_mut() {
            None => frame,
            Some(d) => match d.push(frame) {
                Ok(b) => {
                    decoded = b;
                    &decoded
                }
                Err(e) => {
                    tracing::debug!(error = %e, "cannot decode the stream for measurement");
                    self.broken = true;
                    return;
                }
            },
        };
        let now = Instant::now();
        for ev in self.splitter.push(frame) {
            let info = self.info(&ev);
            self.meter.observe(&info, now);
        }
    }

    /// A frame arrived from the upstream while shaping.
    pub fn feed(&mut self, frame: &Bytes) {
        let now = Instant::now();
        for ev in self.splitter.push(frame) {
            self.shape_event(ev, now);
        }
    }

    fn shape_event(&mut self, ev: Bytes, now: Instant) {
        let info = self.info(&ev);
        if info.is_content() {
            self.fed_tokens += 1;
        }
        match self.shaper.as_mut() {
            Some(sh) => self.queue.extend(sh.on_event(ev, &info, now)),
            None => self.queue.push_back(Action::Emit { bytes: ev, at: now }),
        }
    }

    /// The upstream ended cleanly.
    pub fn upstream_end(&mut self) {
        let now = Instant::now();
        self.upstream_done = true;
        if self.broken {
            return;
        }
        if let Some(rest) = self.splitter.finish() {
            if self.shaper.is_some() {
                self.shape_event(rest, now);
            } else {
                let info = self.info(&rest);
                self.meter.observe(&info, now);
            }
        }
        if let Some(sh) = self.shaper.as_mut() {
            self.queue.extend(sh.on_end(now));
        }
        if let Some(seq) = &self.gpu {
            // Now the answer's length is known: the model stops there.
            seq.set_output_len(self.fed_tokens);
        }
    }

    /// The kill switch fired: every remaining event passes unchanged, at once.
    pub fn release(&mut self) {
        if !self.released {
            self.released = true;
            if let Some(sh) = self.shaper.as_mut() {
                sh.release();
            }
            if let Some(seq) = &self.gpu {
                seq.release();
            }
        }
    }

    /// The next step while shaping.
    pub fn next(&mut self, now: Instant) -> Next {
        loop {
            let Some(front) = self.queue.front() else {
                if !self.upstream_done {
                    return Next::Read;
                }
                if let Some(seq) = &self.gpu {
                    seq.finish();
                }
                return Next::End;
            };
            match front {
                Action::Emit { at, .. } if !self.released && *at > now => {
                    return Next::Wait(Some(*at))
                }
                Action::Stall { until } if !self.released => match until {
                    Some(t) if *t > now => return Next::Wait(Some(*t)),
                    Some(_) => {
                        self.queue.pop_front();
                    }
                    None => return Next::Wait(None),
                },
                Action::Stall { .. } => {
                    self.queue.pop_front();
                }
                Action::Emit { bytes, .. } => {
                    let info = self.info(bytes);
                    if info.is_content() {
                        let k = self.sent_tokens + 1;
                        let held = !self.released
                            && self
                                .gpu
                                .as_ref()
                                .is_some_and(|s| s.produced() < k && !s.is_released());
                        if held {
                            return Next::Gpu(k);
                        }
                        self.sent_tokens = k;
                    }
                    self.meter.observe(&info, now);
                    if let Some(Action::Emit { bytes, .. }) = self.queue.pop_front() {
                        return Next::Emit(bytes);
                    }
                }
                Action::End => {
                    self.upstream_done = true;
                    self.queue.clear();
                    if let Some(seq) = &self.gpu {
                        seq.finish();
                    }
                    return Next::End;
                }
                Action::Reset => {
                    self.queue.clear();
                    return Next::Reset;
                }
            }
        }
    }

    /// Write what was measured and which faults acted into the record.
    pub fn record(&self, ex: &mut Exchange, end: Instant) {
        let ms = |d: std::time::Duration| (d.as_secs_f64() * 1e6).round() / 1e3;
        let r = ex.rec();
        r.stream = Some(true);
        r.ttft_ms = self.meter.ttft().map(ms);
        r.itl_ms = self.meter.itl().map(|g| crate::record::ItlSummary {
            p50: ms(g.p50),
            p95: ms(g.p95),
            max: ms(g.max),
        });
        r.tpot_ms = self.meter.tpot(end).map(ms);
        if let Some((n, src)) = self.meter.output_tokens() {
            r.output_tokens = Some(n);
            r.tokens_source = Some(src.as_str());
        }
        if let Some(n) = self.meter.input_tokens() {
            r.input_tokens = Some(n);
            r.tokens_source.get_or_insert("usage");
        }
        if let Some(sh) = &self.shaper {
            for (i, kind) in sh.applied() {
                if let Some(rule) = self.rules.get(*i) {
                    ex.applied(rule, kind);
                }
            }
            for (i, kind) in sh.not_applied() {
                if let Some(rule) = self.rules.get(i) {
                    ex.skipped(rule, kind, SkipReason::DidNotFire.as_str());
                }
            }
        }
    }

    /// The harm a stream fault has done so far (an error event, a damaged event,
    /// a cut), if any: the outcome even when the client hangs up afterwards.
    pub fn harm(&self) -> Option<crate::record::Outcome> {
        use crate::record::Outcome;
        let applied = self.shaper.as_ref()?.applied();
        if applied.iter().any(|(_, k)| *k == "stream_error") {
            return Some(Outcome::InjectedError);
        }
        if applied.iter().any(|(_, k)| *k == "corrupt") {
            return Some(Outcome::Corrupt);
        }
        if applied.iter().any(|(_, k)| *k == "truncate") {
            return Some(Outcome::Truncated);
        }
        None
    }

    /// The outcome of a stream whose client went away before its end: the harm a
    /// fault did, if any; else, when `had_terminator` (the stream's own terminator
    /// reached the client: an SDK closes the response at `[DONE]`, before the
    /// upstream's end of body), the stream's [`outcome`](Self::outcome), as if it
    /// had ended; else `client_closed`. Both data paths judge a departed client by
    /// this, so a record does not depend on which path served the stream.
    pub fn left_outcome(&self, had_terminator: bool) -> Option<crate::record::Outcome> {
        match self.harm() {
            Some(harm) => Some(harm),
            None if had_terminator => self.outcome(),
            None => Some(crate::record::Outcome::ClientClosed),
        }
    }

    /// How the stream ended, judged from what the client got.
    pub fn outcome(&self) -> Option<crate::record::Outcome> {
        use crate::record::Outcome;
        if self.broken {
            return None;
        }
        if let Some(o) = self.harm() {
            return Some(o);
        }
        if self.meter.saw_error() {
            return Some(Outcome::UpstreamError);
        }
        // A gRPC stream has no terminator event: its end is the trailers, and the
        // call's status is judged from them (a missing one is an upstream error).
        let grpc = self.framing == brownout_faults::stream::Framing::Grpc;
        if !grpc && !self.meter.saw_terminator() && self.meter.content_events() > 0 {
            return Some(Outcome::Truncated);
        }
        if !grpc && self.meter.ended_unfinished() {
            return Some(Outcome::Truncated);
        }
        None
    }
}

/// A copy of a non-streaming LLM answer (bounded), read for its `usage` at the end.
#[derive(Debug)]
pub struct JsonTap {
    buf: Vec<u8>,
    limit: usize,
    decoder: Option<TapDecoder>,
    overflow: bool,
    /// A vector search/query answer: count its hits for the record's `results`.
    results: Option<(brownout_faults::ApiKind, brownout_faults::Endpoint)>,
}

/// Largest answer copied for token counts; larger ones go unmeasured.
const JSON_TAP_LIMIT: usize = 1 << 20;

impl JsonTap {
    pub fn new(decoder: Option<TapDecoder>) -> Self {
        JsonTap {
            buf: Vec::new(),
            limit: JSON_TAP_LIMIT,
            decoder,
            overflow: false,
            results: None,
        }
    }

    /// Also count the hits of a vector search/query answer (`results.returned`).
    pub fn with_results(
        mut self,
        api: brownout_faults::ApiKind,
        endpoint: brownout_faults::Endpoint,
    ) -> Self {
        self.results = Some((api, endpoint));
        self
    }

    pub fn tap(&mut self, frame: &Bytes) {
        if self.overflow {
            return;
        }
        let decoded = match self.decoder.as_mut() {
            None => None,
            Some(d) => match d.push(frame) {
                Ok(b) => Some(b),
                Err(_) => {
                    self.overflow = true;
                    return;
                }
            },
        };
        let data: &[u8] = decoded.as_deref().unwrap_or(frame);
        if self.buf.len() + data.len() > self.limit {
            self.overflow = true;
            self.buf = Vec::new();
            return;
        }
        self.buf.extend_from_slice(data);
    }

    /// Put the answer's token usage into the record.
    pub fn record(&self, ex: &mut Exchange) {
        if self.overflow {
            return;
        }
        if let Some((api, endpoint)) = self.results {
            if let Some(n) = brownout_faults::vector::count_results(api, endpoint, &self.buf) {
                ex.rec().results = Some(serde_json::json!({"returned": n, "dropped": 0}));
            }
            return;
        }
        let (input, output) = brownout_faults::api::usage_from_json(&self.buf);
        let r = ex.rec();
        if output.is_some() || input.is_some() {
            r.tokens_source = Some("usage");
        }
        if let Some(n) = output {
            r.output_tokens = Some(n);
        }
        if let Some(n) = input {
            r.input_tokens = Some(n);
        }
    }
}

/// How an answer no fault touches is measured on its way through.
pub(crate) enum Tap {
    /// An event stream: time to first token, inter-token latency, usage.
    Llm(Box<LlmStream>),
    /// A whole JSON answer: its token usage, or a search's hits.
    Json(Box<JsonTap>),
}

/// The measurement an untouched answer gets, from its content type and coding
/// (compressed answers are decoded on the side; an unknown coding is not measured).
/// Shared by both HTTP paths, so a record says the same whichever path served it.
pub(crate) fn passive_tap(
    api: ApiKind,
    endpoint: Endpoint,
    ctype: Option<&str>,
    coding: Option<&str>,
    start: Instant,
) -> Option<Tap> {
    let encoded = coding.is_some_and(|v| !v.eq_ignore_ascii_case("identity"));
    let decoder = coding.and_then(TapDecoder::for_encoding);
    if encoded && decoder.is_none() {
        return None;
    }
    match framing_for(api, endpoint, ctype) {
        Some(fr) => Some(Tap::Llm(Box::new(
            LlmStream::new(api, endpoint, fr, start, None, Vec::new()).with_decoder(decoder),
        ))),
        None if is_llm_answer(endpoint, ctype) => Some(Tap::Json(Box::new(JsonTap::new(decoder)))),
        None if is_vector_search(endpoint, ctype) => Some(Tap::Json(Box::new(
            JsonTap::new(decoder).with_results(api, endpoint),
        ))),
        None => None,
    }
}

/// A JSON answer of a vector search/query endpoint, whose hits the record counts.
fn is_vector_search(endpoint: Endpoint, ctype: Option<&str>) -> bool {
    matches!(endpoint, Endpoint::Search | Endpoint::Query)
        && ctype.is_some_and(|c| c.starts_with("application/json"))
}

/// A JSON answer from an LLM endpoint, whose `usage` the record wants.
fn is_llm_answer(endpoint: Endpoint, ctype: Option<&str>) -> bool {
    endpoint.is_generative() && ctype.is_some_and(|c| c.starts_with("application/json"))
}
