//! An incremental Server-Sent Events parser.
//!
//! Events arrive split across body frames, several to a frame, with LF, CRLF or CR
//! line ends and `:` comment lines (keep-alive pings); the parser takes bytes as
//! they come and yields whole events, so TTFT is taken when the event completes,
//! not when the stream does. It follows the WHATWG event-stream rules that matter
//! for AI APIs: `data` lines joined by `\n`, one leading space stripped from
//! values, a blank line dispatching, and an unfinished event at EOF dropped.

/// One dispatched event.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SseEvent {
    /// The `event:` field (Anthropic uses it; OpenAI does not).
    pub event: Option<String>,
    /// The `data:` lines, joined by `\n`.
    pub data: String,
    /// The `id:` field, if any.
    pub id: Option<String>,
}

/// Feeds on byte chunks, yields complete events.
#[derive(Debug, Default)]
pub struct SseParser {
    line: Vec<u8>,
    /// The last chunk ended in CR: a LF at the start of the next is part of it.
    after_cr: bool,
    event: Option<String>,
    data: String,
    has_data: bool,
    id: Option<String>,
    /// Comment lines seen (`: ping`), for diagnostics.
    comments: u64,
}

impl SseParser {
    /// A parser at the start of a stream.
    pub fn new() -> Self {
        Self::default()
    }

    /// How many comment lines have been seen.
    pub fn comments(&self) -> u64 {
        self.comments
    }

    /// True when bytes of an unfinished line or event are buffered: a stream that
    /// ends now ends mid-event.
    pub fn has_partial(&self) -> bool {
        !self.line.is_empty() || self.has_data || self.event.is_some()
    }

    /// Parse `chunk`, appending every event it completes to `out`.
    pub fn feed(&mut self, chunk: &[u8], out: &mut Vec<SseEvent>) {
        let mut rest = chunk;
        if self.after_cr {
            self.after_cr = false;
            if let Some(stripped) = rest.strip_prefix(b"\n") {
                rest = stripped;
            }
        }
        while let Some(pos) = rest.iter().position(|b| *b == b'\n' || *b == b'\r') {
            self.line.extend_from_slice(&rest[..pos]);
            let term = rest[pos];
            rest = &rest[pos + 1..];
            if term == b'\r' {
                match rest.first() {
                    Some(b'\n') => rest = &rest[1..],
                    Some(_) => {}
                    None => self.after_cr = true,
                }
            }
            let line = std::mem::take(&mut self.line);
            self.process_line(&line, out);
        }
        self.line.extend_from_slice(rest);
    }

    fn process_line(&mut self, line: &[u8], out: &mut Vec<SseEvent>) {
        if line.is_empty() {
            if self.has_data {
                out.push(SseEvent {
                    event: self.event.take(),
                    data: std::mem::take(&mut self.data),
                    id: self.id.clone(),
                });
            }
            self.event = None;
            self.data.clear();
            self.has_data = false;
            return;
        }
        if line[0] == b':' {
            self.comments += 1;
            return;
        }
        let (field, value) = match line.iter().position(|b| *b == b':') {
            Some(i) => {
                let v = &line[i + 1..];
                (&line[..i], v.strip_prefix(b" ").unwrap_or(v))
            }
            None => (line, &b""[..]),
        };
        let value = String::from_utf8_lossy(value);
        match field {
            b"data" => {
                if self.has_data {
                    self.data.push('\n');
                }
                self.data.push_str(&value);
                self.has_data = true;
            }
            b"event" => self.event = Some(value.into_owned()),
            b"id" => self.id = Some(value.into_owned()),
            _ => {} // `retry` and unknown fields do not matter to a client measuring.
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_chunks(chunks: &[&[u8]]) -> Vec<SseEvent> {
        let mut p = SseParser::new();
        let mut out = Vec::new();
        for c in chunks {
            p.feed(c, &mut out);
        }
        out
    }

    fn datas(evs: &[SseEvent]) -> Vec<&str> {
        evs.iter().map(|e| e.data.as_str()).collect()
    }

    #[test]
    fn event_split_across_frames() {
        let evs = parse_chunks(&[b"da", b"ta: {\"a\"", b":1}\n", b"\n"]);
        assert_eq!(datas(&evs), [r#"{"a":1}"#]);
    }

    #[test]
    fn several_events_per_frame() {
        let evs = parse_chunks(&[b"data: 1\n\ndata: 2\n\ndata: [DONE]\n\n"]);
        assert_eq!(datas(&evs), ["1", "2", "[DONE]"]);
    }

    #[test]
    fn crlf_and_cr_line_ends() {
        let evs = parse_chunks(&[b"data: 1\r\n\r\ndata: 2\r\r", b"data: 3\r", b"\n\r\n"]);
        assert_eq!(datas(&evs), ["1", "2", "3"]);
    }

    #[test]
    fn comments_event_names_and_multiline_data() {
        let mut p = SseParser::new();
        let mut out = Vec::new();
        p.feed(
            b": ping\n\nevent: message_start\ndata: a\ndata:b\n\n",
            &mut out,
        );
        assert_eq!(p.comments(), 1);
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].event.as_deref(), Some("message_start"));
        assert_eq!(out[0].data, "a\nb");
    }

    #[test]
    fn unfinished_event_is_not_dispatched() {
        let mut p = SseParser::new();
        let mut out = Vec::new();
        p.feed(b"data: 1\n\ndata: {\"trunc", &mut out);
        assert_eq!(datas(&out), ["1"]);
        assert!(p.has_partial());
    }

    #[test]
    fn byte_by_byte() {
        let src = b"data: x\r\n\r\n: c\n\ndata: y\n\n";
        let chunks: Vec<&[u8]> = src.chunks(1).collect();
        assert_eq!(datas(&parse_chunks(&chunks)), ["x", "y"]);
    }
}
