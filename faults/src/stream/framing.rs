//! Where one streamed event ends and the next begins.
//!
//! Stream faults act per event (a token is a content-bearing event), but the
//! upstream's body arrives in chunks that split events anywhere, even inside a
//! multi-byte character. [`Splitter`] turns chunks back into whole events without
//! changing a byte, so an event no fault touches reaches the client exactly as the
//! upstream sent it, and it bounds what it buffers so a hostile upstream cannot grow
//! memory without end.

use bytes::{Bytes, BytesMut};

use crate::api::{ApiKind, Endpoint};

/// How a streamed body is cut into events.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Framing {
    /// Server-sent events: fields on lines, an event ends at a blank line (`\n\n`,
    /// `\r\n\r\n` or `\r\r`). OpenAI, Anthropic, vLLM, TGI, Ollama's OpenAI routes.
    Sse,
    /// One JSON document per line. Ollama's native `/api/chat` and `/api/generate`.
    Ndjson,
    /// gRPC length-prefixed messages (a flag byte, a 4-byte big-endian length, the
    /// message): every streaming RPC, Triton's `ModelStreamInfer` among them. An
    /// event is one whole message, so stream faults act between messages and never
    /// inside one.
    Grpc,
}

/// The framing of a response, or `None` when it is not a stream brownout can cut
/// into events (a plain JSON answer, an embedding, an error page).
///
/// The `Content-Type` decides when present (`text/event-stream` → SSE,
/// `application/x-ndjson` → NDJSON, `application/grpc` with or without a `+proto`
/// or other suffix → gRPC messages); without one, the API decides: Ollama's native
/// chat and generate routes stream NDJSON, the other LLM APIs SSE.
pub fn framing_for(
    api: ApiKind,
    endpoint: Endpoint,
    content_type: Option<&str>,
) -> Option<Framing> {
    if let Some(ct) = content_type {
        let media = ct.split(';').next().unwrap_or("").trim();
        if media.eq_ignore_ascii_case("text/event-stream") {
            return Some(Framing::Sse);
        }
        if crate::grpc::is_grpc_content_type(media) {
            return Some(Framing::Grpc);
        }
        if [
            "application/x-ndjson",
            "application/ndjson",
            "application/jsonl",
        ]
        .iter()
        .any(|m| media.eq_ignore_ascii_case(m))
        {
            return Some(Framing::Ndjson);
        }
        return None;
    }
    let llm_endpoint = matches!(
        endpoint,
        Endpoint::Chat | Endpoint::Completion | Endpoint::Responses | Endpoint::Messages
    );
    if !llm_endpoint {
        return None;
    }
    match api {
        ApiKind::Ollama => Some(Framing::Ndjson),
        ApiKind::Openai | ApiKind::Anthropic | ApiKind::Vllm | ApiKind::Tgi | ApiKind::Generic => {
            Some(Framing::Sse)
        }
        _ => None,
    }
}

/// The largest event kept whole by default: beyond this, what has arrived is passed
/// on as one opaque piece (no real token event comes near it).
pub const DEFAULT_MAX_EVENT: usize = 1 << 20;

/// Cuts a chunked body into whole raw events, incrementally.
///
/// Every byte pushed comes out exactly once, in order: concatenating everything
/// [`push`](Splitter::push) and [`finish`](Splitter::finish) return reproduces the
/// input, whatever the chunking, and the events themselves do not depend on where
/// the chunks were split. Complete events inside one chunk are zero-copy slices of
/// it; only a partial event at a chunk's end is copied, to be completed by the next.
///
/// gRPC bodies are cut at the message boundaries their prefixes give. A message
/// that declares more than the cap passes on piece by piece as its bytes arrive
/// (never held whole), and after a flag byte that is neither 0 nor 1 nothing can
/// be cut any more: the rest passes on as it comes ([`Splitter::broken`]).
#[derive(Debug)]
pub struct Splitter {
    framing: Framing,
    max_event: usize,
    /// The start of an event that has not ended yet.
    buf: BytesMut,
    /// How far into `buf` has been scanned (resumes there on the next push).
    scanned: usize,
    /// SSE: whether the scan position is at the start of a line (so a line
    /// terminator there is a blank line, which ends the event).
    line_start: bool,
    oversized: u64,
    /// gRPC: bytes still to pass on of an oversized message (`u64::MAX` once the
    /// body stopped parsing).
    grpc_skip: u64,
    grpc_broken: bool,
}

/// What scanning a slice found.
enum Scan {
    /// An event ends just before this offset.
    Cut(usize),
    /// No end yet; scanning stopped at this offset (to resume there).
    More(usize),
}

impl Splitter {
    /// A splitter with the default cap on one event ([`DEFAULT_MAX_EVENT`]).
    pub fn new(framing: Framing) -> Self {
        Self::with_max_event(framing, DEFAULT_MAX_EVENT)
    }

    /// A splitter that passes on a pending event as an opaque piece once it grows
    /// past `max_event` bytes without ending.
    pub fn with_max_event(framing: Framing, max_event: usize) -> Self {
        Splitter {
            framing,
            max_event: max_event.max(1),
            buf: BytesMut::new(),
            scanned: 0,
            line_start: true,
            oversized: 0,
            grpc_skip: 0,
            grpc_broken: false,
        }
    }

    /// The framing this splitter cuts by.
    pub fn framing(&self) -> Framing {
        self.framing
    }

    /// How many opaque pieces were passed on because an event outgrew the cap.
    pub fn oversized(&self) -> u64 {
        self.oversized
    }

    /// Bytes held back, waiting for the rest of their event.
    pub fn pending(&self) -> usize {
        self.buf.len()
    }

    /// gRPC: whether the body stopped parsing (a flag byte other than 0 or 1), so
    /// that everything after it passed on uncut. Always false for other framings.
    pub fn broken(&self) -> bool {
        self.grpc_broken
    }

    /// Feed one chunk; returns every event it completed, in order.
    pub fn push(&mut self, chunk: &Bytes) -> Vec<Bytes> {
        let mut out = Vec::new();
        if chunk.is_empty() {
            return out;
        }
        if self.framing == Framing::Grpc {
            self.push_grpc(chunk, &mut out);
            return out;
        }
        let mut start = 0;
        if self.buf.is_empty() {
            // Fast path: cut whole events straight out of the chunk, no copy.
            loop {
                match self.scan(&chunk[start..], 0) {
                    Scan::Cut(n) => {
                        out.push(chunk.slice(start..start + n));
                        start += n;
                        self.reset_event();
                        if start == chunk.len() {
                            return out;
                        }
                    }
                    Scan::More(at) => {
                        if at >= self.max_event {
                            // An event without end: pass on what was scanned, keep
                            // only the unscanned tail (at most a trailing `\r`).
                            out.push(chunk.slice(start..start + at));
                            self.oversized += 1;
                            start += at;
                            self.scanned = 0;
                        } else {
                            self.scanned = at;
                        }
                        if start < chunk.len() {
                            self.buf.extend_from_slice(&chunk[start..]);
                        }
                        return out;
                    }
                }
            }
        }
        self.buf.extend_from_slice(chunk);
        loop {
            let from = self.scanned;
            let buf = std::mem::take(&mut self.buf);
            let found = self.scan(&buf, from);
            self.buf = buf;
            match found {
                Scan::Cut(n) => {
                    out.push(self.buf.split_to(n).freeze());
                    self.reset_event();
                    if self.buf.is_empty() {
                        return out;
                    }
                }
                Scan::More(at) => {
                    if at >= self.max_event {
                        out.push(self.buf.split_to(at).freeze());
                        self.oversized += 1;
                        self.scanned = 0;
                    } else {
                        self.scanned = at;
                    }
                    return out;
                }
            }
        }
    }

    /// The body ended: returns a last event that had no terminator (Anthropic's own
    /// fixtures end that way, and SDKs accept it), or `None`.
    pub fn finish(&mut self) -> Option<Bytes> {
        self.reset_event();
        if self.buf.is_empty() {
            None
        } else {
            Some(self.buf.split().freeze())
        }
    }

    /// gRPC: cut whole messages (zero-copy when inside the chunk), pass oversized
    /// ones and a broken tail on as they arrive.
    fn push_grpc(&mut self, chunk: &Bytes, out: &mut Vec<Bytes>) {
        use crate::grpc::frame::PREFIX_LEN;
        let mut data = chunk.clone();
        while !data.is_empty() {
            if self.grpc_skip > 0 {
                let n = usize::try_from(self.grpc_skip)
                    .unwrap_or(usize::MAX)
                    .min(data.len());
                out.push(data.split_to(n));
                if !self.grpc_broken {
                    self.grpc_skip -= n as u64;
                }
                continue;
            }
            // The prefix is read straight from the chunk when a message starts in
            // it whole; otherwise it is completed in the buffer first.
            let in_buffer = !self.buf.is_empty() || data.len() < PREFIX_LEN;
            if in_buffer && self.buf.len() < PREFIX_LEN {
                let take = (PREFIX_LEN - self.buf.len()).min(data.len());
                self.buf.extend_from_slice(&data.split_to(take));
                if self.buf.len() < PREFIX_LEN {
                    return;
                }
            }
            let head: &[u8] = if self.buf.is_empty() {
                &data
            } else {
                &self.buf
            };
            if head[0] > 1 {
                // Not gRPC framing any more: pass everything on uncut.
                self.grpc_broken = true;
                self.grpc_skip = u64::MAX;
                if !self.buf.is_empty() {
                    out.push(self.buf.split().freeze());
                }
                continue;
            }
            let declared = u32::from_be_bytes([head[1], head[2], head[3], head[4]]);
            let total = PREFIX_LEN as u64 + u64::from(declared);
            if total > self.max_event as u64 {
                self.oversized += 1;
                let held = self.buf.len() as u64;
                if held > 0 {
                    out.push(self.buf.split().freeze());
                }
                self.grpc_skip = total - held;
                continue;
            }
            let total = total as usize;
            if self.buf.is_empty() {
                if data.len() >= total {
                    out.push(data.split_to(total));
                    continue;
                }
                // A declared length is not trusted for an allocation beyond 1 MiB.
                self.buf.reserve(total.min(1 << 20));
                self.buf.extend_from_slice(&data);
                return;
            }
            let take = (total - self.buf.len()).min(data.len());
            self.buf.extend_from_slice(&data.split_to(take));
            if self.buf.len() == total {
                out.push(self.buf.split().freeze());
            }
        }
    }

    fn reset_event(&mut self) {
        self.scanned = 0;
        self.line_start = true;
    }

    /// Look for the end of the event that starts at `data[0]`, resuming at `from`.
    fn scan(&mut self, data: &[u8], from: usize) -> Scan {
        match self.framing {
            // Cut by `push_grpc`, never scanned.
            Framing::Grpc => Scan::More(data.len()),
            Framing::Ndjson => match data[from..].iter().position(|&b| b == b'\n') {
                Some(i) => Scan::Cut(from + i + 1),
                None => Scan::More(data.len()),
            },
            Framing::Sse => {
                let mut i = from;
                while i < data.len() {
                    match data[i] {
                        b'\n' => {
                            if self.line_start {
                                return Scan::Cut(i + 1);
                            }
                            self.line_start = true;
                            i += 1;
                        }
                        b'\r' => {
                            // Whether `\r` is alone or the start of `\r\n` decides
                            // where the line (and maybe the event) ends: wait for
                            // the next byte rather than guess.
                            let Some(&next) = data.get(i + 1) else {
                                return Scan::More(i);
                            };
                            let end = if next == b'\n' { i + 2 } else { i + 1 };
                            if self.line_start {
                                return Scan::Cut(end);
                            }
                            self.line_start = true;
                            i = end;
                        }
                        _ => {
                            self.line_start = false;
                            // Skip to the next line terminator quickly.
                            match data[i..].iter().position(|&b| b == b'\n' || b == b'\r') {
                                Some(p) => i += p,
                                None => i = data.len(),
                            }
                        }
                    }
                }
                Scan::More(data.len())
            }
        }
    }
}
