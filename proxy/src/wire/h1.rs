//! HTTP/1.1 framing as both data paths read it from an upstream: response heads
//! (status, framing, the hop-by-hop facts), chunked bodies, and the answer's head
//! as brownout writes it.
//!
//! One reader for both paths: the fast path relays the bytes it scans, the full
//! path's upstream leg ([`crate::upstream::h1`]) turns them into a typed head and
//! body frames, and an answer gets one verdict whichever path relays it.

/// Longest upstream response head accepted; a longer one is a broken upstream.
/// hyper's own default (8 KiB + 100 × 4 KiB), kept for the upgrade connections
/// hyper still reads, so that an answer gets one verdict whichever leg reads it.
pub(crate) const MAX_RESPONSE_HEAD: usize = 8192 + 4096 * 100;
/// Most header lines accepted in an upstream response (hyper's default).
pub(crate) const MAX_RESPONSE_HEADERS: usize = 100;

/// How a message's body is delimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Framing {
    None,
    Length(u64),
    Chunked,
    /// Until the upstream closes (responses only).
    Close,
}

pub(crate) fn trim(v: &[u8]) -> &[u8] {
    let s = v
        .iter()
        .position(|b| !b.is_ascii_whitespace())
        .unwrap_or(v.len());
    let e = v
        .iter()
        .rposition(|b| !b.is_ascii_whitespace())
        .map_or(s, |i| i + 1);
    &v[s..e]
}

pub(crate) fn parse_length(v: &[u8]) -> Option<u64> {
    let v = trim(v);
    if v.is_empty() || v.len() > 19 || !v.iter().all(u8::is_ascii_digit) {
        return None;
    }
    Some(v.iter().fold(0u64, |n, d| n * 10 + u64::from(d - b'0')))
}

/// `Some(close)` for a `Connection` header of `close`/`keep-alive` tokens only;
/// `None` when it names other headers (those must go too: left to the full path).
pub(crate) fn connection_close(v: &[u8]) -> Option<bool> {
    let mut close = false;
    for token in v.split(|&b| b == b',') {
        let t = trim(token);
        if t.eq_ignore_ascii_case(b"close") {
            close = true;
        } else if !t.eq_ignore_ascii_case(b"keep-alive") && !t.is_empty() {
            return None;
        }
    }
    Some(close)
}

/// `timeout=N` of a `Keep-Alive` header value (RFC 2068 §19.7.1.1), in seconds.
pub(crate) fn keep_alive_timeout(value: &[u8]) -> Option<u64> {
    let text = std::str::from_utf8(value).ok()?;
    text.split(',').find_map(|param| {
        let (k, v) = param.split_once('=')?;
        if !k.trim().eq_ignore_ascii_case("timeout") {
            return None;
        }
        v.trim().trim_matches('"').parse().ok()
    })
}

/// A parsed response head: where its parts are in the upstream buffer.
pub(crate) struct RespHead<T> {
    pub(crate) status: u16,
    pub(crate) head_len: usize,
    /// The reason phrase, in the buffer.
    pub(crate) reason: std::ops::Range<usize>,
    /// Where the header lines start (past the status line and its line end).
    pub(crate) headers_start: usize,
    /// Both `transfer-encoding` and `content-length` came: the first decides the
    /// framing and the second is not forwarded (RFC 9112 6.3).
    pub(crate) drop_length: bool,
    pub(crate) framing: Framing,
    /// The upstream will close (or asked to): not reused.
    pub(crate) upstream_close: bool,
    /// The upstream spoke HTTP/1.0.
    pub(crate) http10: bool,
    /// `Keep-Alive: timeout=N`: the upstream closes idle connections after N s.
    pub(crate) keep_alive: Option<u64>,
    /// `Connection` names headers besides `close` and `keep-alive`: those are
    /// hop-by-hop too (RFC 9110 §7.6.1) and are not forwarded.
    pub(crate) connection_names: bool,
    /// How the answer is measured (from its content type and coding).
    pub(crate) tap: Option<T>,
}

pub(crate) enum RespParse<T> {
    /// A 1xx answer of this many bytes, to skip (as the full path's client does).
    Interim(usize),
    Head(RespHead<T>),
}

/// Picks an answer's measurement from its content type and content coding.
pub(crate) type MakeTap<'a, T> = dyn Fn(Option<&str>, Option<&str>) -> Option<T> + 'a;

/// Parse a response head in `buf`; `make_tap` picks the answer's measurement from
/// its content type and content coding.
pub(crate) fn parse_response<T>(
    buf: &[u8],
    head_method: bool,
    make_tap: &MakeTap<'_, T>,
) -> Result<Option<RespParse<T>>, &'static str> {
    parse_response_with(buf, head_method, make_tap, |_, _| {})
}

/// [`parse_response`], handing each header line of a whole final head to
/// `field` as the ranges of its name and value in `buf`: the full path builds its
/// typed head from them without a second parse.
pub(crate) fn parse_response_with<T>(
    buf: &[u8],
    head_method: bool,
    make_tap: &MakeTap<'_, T>,
    mut field: impl FnMut(std::ops::Range<usize>, std::ops::Range<usize>),
) -> Result<Option<RespParse<T>>, &'static str> {
    let mut hdrs = [httparse::EMPTY_HEADER; MAX_RESPONSE_HEADERS];
    let mut resp = httparse::Response::new(&mut hdrs);
    let head_len = match resp.parse(buf) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(httparse::Error::TooManyHeaders) => return Err("too many headers"),
        Err(_) => return Err("malformed response head"),
    };
    let status = resp.code.ok_or("no status")?;
    if status == 101 {
        return Err("unexpected 101 Switching Protocols");
    }
    if (100..200).contains(&status) {
        return Ok(Some(RespParse::Interim(head_len)));
    }
    if resp.version != Some(1) && resp.version != Some(0) {
        return Err("unsupported HTTP version");
    }
    let mut length: Option<u64> = None;
    let mut te: Option<bool> = None;
    let mut upstream_close = resp.version == Some(0);
    let mut ctype = None;
    let mut coding = None;
    let mut keep_alive = None;
    let mut connection_names = false;
    for h in resp.headers.iter() {
        field(span(buf, h.name.as_bytes()), span(buf, h.value));
        let n = h.name;
        if n.eq_ignore_ascii_case("content-length") {
            let l = parse_length(h.value).ok_or("invalid content-length")?;
            if length.is_some_and(|x| x != l) {
                return Err("conflicting content-length");
            }
            length = Some(l);
        } else if n.eq_ignore_ascii_case("transfer-encoding") {
            // Chunked only when it is the last coding.
            let last = h
                .value
                .split(|&b| b == b',')
                .next_back()
                .map(trim)
                .unwrap_or(b"");
            te = Some(last.eq_ignore_ascii_case(b"chunked"));
        } else if n.eq_ignore_ascii_case("connection") {
            connection_names |= connection_close(h.value).is_none();
            for t in h.value.split(|&b| b == b',') {
                let t = trim(t);
                if t.eq_ignore_ascii_case(b"close") {
                    upstream_close = true;
                } else if t.eq_ignore_ascii_case(b"keep-alive") && resp.version == Some(0) {
                    upstream_close = false;
                }
            }
        } else if n.eq_ignore_ascii_case("content-type") {
            ctype = std::str::from_utf8(h.value).ok();
        } else if n.eq_ignore_ascii_case("content-encoding") {
            coding = std::str::from_utf8(h.value).ok();
        } else if n.eq_ignore_ascii_case("keep-alive") {
            keep_alive = keep_alive_timeout(h.value);
        }
    }
    let framing = if head_method || status == 204 || status == 304 {
        Framing::None
    } else {
        match (te, length) {
            (Some(true), _) => Framing::Chunked,
            (Some(false), _) => Framing::Close,
            (None, Some(0)) => Framing::None,
            (None, Some(n)) => Framing::Length(n),
            (None, None) => Framing::Close,
        }
    };
    // The status line, past any empty lines before it (httparse skips them, and
    // accepts a bare LF as a line end).
    let line_start = buf
        .iter()
        .position(|&b| b != b'\r' && b != b'\n')
        .unwrap_or(0);
    let headers_start = buf[line_start..head_len]
        .iter()
        .position(|&b| b == b'\n')
        .map_or(head_len, |i| line_start + i + 1);
    Ok(Some(RespParse::Head(RespHead {
        status,
        head_len,
        reason: reason_phrase(buf, line_start, headers_start),
        headers_start,
        drop_length: te.is_some() && length.is_some(),
        framing,
        upstream_close,
        http10: resp.version == Some(0),
        keep_alive,
        connection_names,
        tap: make_tap(ctype, coding),
    })))
}

/// Where `part`, a slice httparse took out of `outer`, lies in it.
pub(crate) fn span(outer: &[u8], part: &[u8]) -> std::ops::Range<usize> {
    let start = (part.as_ptr() as usize).saturating_sub(outer.as_ptr() as usize);
    start..start + part.len()
}

/// Where the reason phrase is in a status line that httparse accepted
/// (`HTTP/1.x`, spaces, three digits, a space, the phrase, the line end).
pub(crate) fn reason_phrase(buf: &[u8], start: usize, end: usize) -> std::ops::Range<usize> {
    let line = &buf[start..end];
    let text_end = line.len()
        - line
            .iter()
            .rev()
            .take_while(|&&b| b == b'\r' || b == b'\n')
            .count();
    let mut i = "HTTP/1.x".len().min(text_end);
    while i < text_end && line[i] == b' ' {
        i += 1;
    }
    i = (i + 3).min(text_end);
    if i < text_end && line[i] == b' ' {
        i += 1;
    }
    start + i..start + text_end
}

/// One chunk of a chunked body: its size line (hex, as hyper writes it), the
/// data, the line end.
pub(crate) fn write_chunk(out: &mut Vec<u8>, data: &[u8]) {
    let mut digits = [0u8; 16];
    let mut n = data.len();
    let mut i = digits.len();
    loop {
        i -= 1;
        digits[i] = b"0123456789ABCDEF"[n & 0xf];
        n >>= 4;
        if n == 0 {
            break;
        }
    }
    out.extend_from_slice(&digits[i..]);
    out.extend_from_slice(b"\r\n");
    out.extend_from_slice(data);
    out.extend_from_slice(b"\r\n");
}

/// The end of a chunked body, with those of `trailers` that its `Trailer` header
/// announced (`allowed`) and that may be trailers at all (hyper's rules, on both
/// of its sides: the rest are dropped).
pub(crate) fn write_last_chunk(
    out: &mut Vec<u8>,
    allowed: &[http::HeaderName],
    trailers: Option<&http::HeaderMap>,
) {
    use http::header::*;
    out.extend_from_slice(b"0\r\n");
    for (name, value) in trailers.into_iter().flatten() {
        let forbidden = matches!(
            *name,
            AUTHORIZATION
                | CACHE_CONTROL
                | CONTENT_ENCODING
                | CONTENT_LENGTH
                | CONTENT_RANGE
                | CONTENT_TYPE
                | HOST
                | MAX_FORWARDS
                | SET_COOKIE
                | TRAILER
                | TRANSFER_ENCODING
                | TE
        );
        if !forbidden && allowed.contains(name) {
            write_field(out, name, value);
        }
    }
    out.extend_from_slice(b"\r\n");
}

/// One header line, the name as the map holds it (lowercase).
pub(crate) fn write_field(out: &mut Vec<u8>, name: &http::HeaderName, value: &http::HeaderValue) {
    out.extend_from_slice(name.as_str().as_bytes());
    out.extend_from_slice(b": ");
    out.extend_from_slice(value.as_bytes());
    out.extend_from_slice(b"\r\n");
}

/// Write a status line as brownout's own: a proxy sends its own HTTP version
/// (RFC 9110 §6.2), whatever the upstream spoke, with the upstream's code and reason.
pub(crate) fn write_status_line(out: &mut Vec<u8>, status: u16, reason: &[u8]) {
    let digits = [
        b'0' + (status / 100 % 10) as u8,
        b'0' + (status / 10 % 10) as u8,
        b'0' + (status % 10) as u8,
    ];
    out.extend_from_slice(b"HTTP/1.1 ");
    out.extend_from_slice(&digits);
    out.push(b' ');
    out.extend_from_slice(reason);
    out.extend_from_slice(b"\r\n");
}

/// A header line's name and value, split at its first colon (the name trimmed).
pub(crate) fn header_field(l: &[u8]) -> (&[u8], &[u8]) {
    let mut parts = l.splitn(2, |&b| b == b':');
    let name = trim(parts.next().unwrap_or(b""));
    (name, parts.next().unwrap_or(b""))
}

/// Copy a response's header lines (the head after its status line) into `out`, less
/// hop-by-hop headers other than `transfer-encoding` (the body keeps the framing
/// it came with), the headers `Connection` names when `connection_names` (as the
/// full path drops them), and `content-length` when `drop_length`, then
/// `connection: close` when the client connection ends. Lines end in CRLF whatever
/// the upstream used.
pub(crate) fn write_response_headers(
    out: &mut Vec<u8>,
    headers: &[u8],
    close: bool,
    drop_length: bool,
    connection_names: bool,
) {
    let lines = || {
        headers
            .split(|&b| b == b'\n')
            .map(|line| line.strip_suffix(b"\r").unwrap_or(line))
            .take_while(|l| !l.is_empty())
    };
    // Rare (an upstream naming its own hop-by-hop headers), so only then a second
    // pass and a list.
    let named: Vec<&[u8]> = if connection_names {
        lines()
            .map(header_field)
            .filter(|(n, _)| n.eq_ignore_ascii_case(b"connection"))
            .flat_map(|(_, v)| v.split(|&b| b == b','))
            .map(trim)
            .filter(|t| !t.is_empty())
            .collect()
    } else {
        Vec::new()
    };
    for l in lines() {
        let (raw, _) = header_field(l);
        let name = std::str::from_utf8(raw).unwrap_or("");
        if (super::is_hop_by_hop(name) && !name.eq_ignore_ascii_case("transfer-encoding"))
            || (drop_length && name.eq_ignore_ascii_case("content-length"))
            || named.iter().any(|n| n.eq_ignore_ascii_case(raw))
        {
            continue;
        }
        out.extend_from_slice(l);
        out.extend_from_slice(b"\r\n");
    }
    if close {
        out.extend_from_slice(b"connection: close\r\n");
    }
    out.extend_from_slice(b"\r\n");
}

/// Follows a response body's framing over the bytes as they come.
pub(crate) struct Relay {
    framing: Framing,
    left: u64,
    chunks: ChunkedScanner,
}

impl Relay {
    pub(crate) fn new(framing: Framing) -> Self {
        Self::with_scanner(framing, ChunkedScanner::default())
    }

    /// A relay that keeps a chunked body's trailer lines ([`Relay::take_trailers`]).
    pub(crate) fn keeping_trailers(framing: Framing) -> Self {
        Self::with_scanner(framing, ChunkedScanner::keeping_trailers())
    }

    fn with_scanner(framing: Framing, chunks: ChunkedScanner) -> Self {
        let left = match framing {
            Framing::Length(n) => n,
            _ => 0,
        };
        Relay {
            framing,
            left,
            chunks,
        }
    }

    pub(crate) fn framing(&self) -> Framing {
        self.framing
    }

    /// Body bytes still to come under a declared length (`None` for any other
    /// framing).
    pub(crate) fn left(&self) -> Option<u64> {
        matches!(self.framing, Framing::Length(_)).then_some(self.left)
    }

    /// The trailer section's lines, when kept.
    pub(crate) fn take_trailers(&mut self) -> Vec<u8> {
        self.chunks.take_trailers()
    }

    /// How many of `buf`'s bytes belong to the body, and whether it ended there;
    /// `data` gets the ranges of `buf` that are payload (de-chunked).
    pub(crate) fn take(
        &mut self,
        buf: &[u8],
        mut data: impl FnMut(std::ops::Range<usize>),
    ) -> Result<(usize, bool), ChunkError> {
        match self.framing {
            Framing::None => Ok((0, true)),
            Framing::Length(_) => {
                let k = (self.left as usize).min(buf.len());
                if k > 0 {
                    data(0..k);
                }
                self.left -= k as u64;
                Ok((k, self.left == 0))
            }
            Framing::Close => {
                if !buf.is_empty() {
                    data(0..buf.len());
                }
                Ok((buf.len(), false))
            }
            Framing::Chunked => self.chunks.scan(buf, data),
        }
    }
}

/// Why a chunked body cannot be followed.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub(crate) enum ChunkError {
    #[error("invalid chunk size line")]
    Size,
    #[error("chunk size too large")]
    TooLarge,
    #[error("missing CRLF after chunk data")]
    DataEnd,
    #[error("invalid trailer section")]
    Trailer,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) enum ChunkState {
    /// Reading the hex size (`digits` so far).
    #[default]
    SizeStart,
    Size,
    /// Whitespace or an extension after the size, up to CR.
    Ext,
    SizeLf,
    Data,
    DataCr,
    DataLf,
    /// At the start of a trailer line (or the final CRLF).
    TrailerStart,
    TrailerLine,
    TrailerLf,
    FinalLf,
    Done,
}

/// Follows chunked framing (RFC 9112 §7.1) without changing a byte: where the
/// message ends, and which bytes are payload.
#[derive(Debug, Default)]
pub(crate) struct ChunkedScanner {
    state: ChunkState,
    size: u64,
    digits: u8,
    /// Payload bytes seen so far.
    pub(crate) data: u64,
    /// The trailer section's bytes (its lines, without the final empty one),
    /// when asked for ([`ChunkedScanner::keeping_trailers`]).
    trailers: Option<Vec<u8>>,
}

impl ChunkedScanner {
    /// A scanner that keeps the trailer section for [`ChunkedScanner::take_trailers`]
    /// (the full path hands trailers on as a frame; the fast path relays the bytes).
    pub(crate) fn keeping_trailers() -> Self {
        ChunkedScanner {
            trailers: Some(Vec::new()),
            ..Default::default()
        }
    }

    fn keep(&mut self, b: u8) {
        if let Some(t) = self.trailers.as_mut() {
            // A byte of the final CRLF's CR is not a trailer line's.
            if self.state != ChunkState::FinalLf {
                t.push(b);
            }
        }
    }

    /// The trailer section's lines seen so far (each ending in CRLF).
    pub(crate) fn take_trailers(&mut self) -> Vec<u8> {
        self.trailers
            .as_mut()
            .map(std::mem::take)
            .unwrap_or_default()
    }

    /// Scan `buf`: how many bytes belong to the message (all of `buf` unless it
    /// ended inside), and whether it ended. `on_data` gets payload ranges.
    pub(crate) fn scan(
        &mut self,
        buf: &[u8],
        mut on_data: impl FnMut(std::ops::Range<usize>),
    ) -> Result<(usize, bool), ChunkError> {
        use ChunkState::*;
        let mut i = 0;
        while i < buf.len() {
            let b = buf[i];
            match self.state {
                SizeStart | Size => match b {
                    b'0'..=b'9' | b'a'..=b'f' | b'A'..=b'F' => {
                        if self.digits >= 15 {
                            return Err(ChunkError::TooLarge);
                        }
                        let d = (b as char).to_digit(16).unwrap_or(0) as u64;
                        self.size = self.size * 16 + d;
                        self.digits += 1;
                        self.state = Size;
                    }
                    b';' | b' ' | b'\t' if self.state == Size => self.state = Ext,
                    b'\r' if self.state == Size => self.state = SizeLf,
                    _ => return Err(ChunkError::Size),
                },
                Ext => match b {
                    b'\r' => self.state = SizeLf,
                    b'\n' => return Err(ChunkError::Size),
                    _ => {}
                },
                SizeLf => {
                    if b != b'\n' {
                        return Err(ChunkError::Size);
                    }
                    self.state = if self.size == 0 { TrailerStart } else { Data };
                    self.digits = 0;
                }
                Data => {
                    let k = (self.size as usize).min(buf.len() - i);
                    on_data(i..i + k);
                    self.data += k as u64;
                    self.size -= k as u64;
                    i += k;
                    if self.size == 0 {
                        self.state = DataCr;
                    }
                    continue;
                }
                DataCr => {
                    if b != b'\r' {
                        return Err(ChunkError::DataEnd);
                    }
                    self.state = DataLf;
                }
                DataLf => {
                    if b != b'\n' {
                        return Err(ChunkError::DataEnd);
                    }
                    self.state = SizeStart;
                }
                TrailerStart => {
                    self.state = if b == b'\r' { FinalLf } else { TrailerLine };
                    self.keep(b);
                }
                TrailerLine => {
                    if b == b'\r' {
                        self.state = TrailerLf;
                    }
                    self.keep(b);
                }
                TrailerLf => {
                    if b != b'\n' {
                        return Err(ChunkError::Trailer);
                    }
                    self.state = TrailerStart;
                    self.keep(b);
                }
                FinalLf => {
                    if b != b'\n' {
                        return Err(ChunkError::Trailer);
                    }
                    self.state = Done;
                    return Ok((i + 1, true));
                }
                Done => return Ok((i, true)),
            }
            i += 1;
        }
        Ok((buf.len(), self.state == Done))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scan_all(parts: &[&[u8]]) -> Result<(Vec<u8>, usize, bool), ChunkError> {
        let mut s = ChunkedScanner::default();
        let mut data = Vec::new();
        let mut used_total = 0;
        for p in parts {
            let (used, done) = s.scan(p, |r| data.extend_from_slice(&p[r]))?;
            used_total += used;
            if done {
                return Ok((data, used_total, true));
            }
        }
        Ok((data, used_total, false))
    }

    #[test]
    fn chunked_scanner_finds_the_end_and_the_payload_in_any_split() {
        let msg: &[u8] = b"5;ext=1\r\nhello\r\n1A\r\nabcdefghijklmnopqrstuvwxyz\r\n0\r\nx-trailer: 1\r\n\r\nNEXT";
        let end = msg.len() - 4;
        for cut in 0..msg.len() {
            let (data, used, done) = scan_all(&[&msg[..cut], &msg[cut..]]).unwrap();
            assert!(done, "split at {cut}");
            assert_eq!(
                used, end,
                "split at {cut}: the next message's bytes are not taken"
            );
            assert_eq!(data, b"helloabcdefghijklmnopqrstuvwxyz");
        }
        // Byte by byte.
        let parts: Vec<&[u8]> = msg.chunks(1).collect();
        let (data, used, done) = scan_all(&parts).unwrap();
        assert!(done);
        assert_eq!(used, end);
        assert_eq!(data.len(), 31);
    }

    #[test]
    fn chunked_scanner_decodes_any_valid_encoding_in_any_split() {
        use rand::{Rng, SeedableRng};
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(7);
        for case in 0..2000 {
            let mut wire = Vec::new();
            let mut payload = Vec::new();
            for _ in 0..rng.random_range(0..6) {
                let n = rng.random_range(1..300usize);
                let data: Vec<u8> = (0..n).map(|_| rng.random()).collect();
                let size = if rng.random_bool(0.5) {
                    format!("{n:x}")
                } else {
                    format!("{n:X}")
                };
                wire.extend_from_slice(size.as_bytes());
                if rng.random_bool(0.3) {
                    wire.extend_from_slice(b";name=\"v\"");
                }
                wire.extend_from_slice(b"\r\n");
                wire.extend_from_slice(&data);
                wire.extend_from_slice(b"\r\n");
                payload.extend_from_slice(&data);
            }
            wire.extend_from_slice(b"0\r\n");
            for t in 0..rng.random_range(0..3) {
                wire.extend_from_slice(format!("x-t{t}: {t}\r\n").as_bytes());
            }
            wire.extend_from_slice(b"\r\n");
            let end = wire.len();
            wire.extend_from_slice(b"HTTP/1.1 200 OK\r\n");
            // Cut into random pieces, as reads deliver it.
            let mut cuts: Vec<usize> = (0..rng.random_range(0..8))
                .map(|_| rng.random_range(0..=wire.len()))
                .collect();
            cuts.sort_unstable();
            let mut parts = Vec::new();
            let mut from = 0;
            for c in cuts.into_iter().chain([wire.len()]) {
                parts.push(&wire[from..c]);
                from = c;
            }
            let (data, used, done) = scan_all(&parts).unwrap();
            assert!(done, "case {case}");
            assert_eq!(used, end, "case {case}: stops at the end of the body");
            assert_eq!(data, payload, "case {case}");
        }
    }

    #[test]
    fn random_bytes_never_panic_the_scanner_or_the_response_parser() {
        use rand::{Rng, SeedableRng};
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(11);
        let alphabet = b"0123456789abcdefABCDEF;=\r\n \t:HTP/1.xyz\x00\xff";
        for _ in 0..20_000 {
            let n = rng.random_range(0..120);
            let bytes: Vec<u8> = (0..n)
                .map(|_| {
                    if rng.random_bool(0.9) {
                        alphabet[rng.random_range(0..alphabet.len())]
                    } else {
                        rng.random()
                    }
                })
                .collect();
            let split = rng.random_range(0..=bytes.len());
            if let Ok((_, used, _)) = scan_all(&[&bytes[..split], &bytes[split..]]) {
                assert!(used <= bytes.len());
            }
            let mut head = b"HTTP/1.1 200 OK\r\n".to_vec();
            head.extend_from_slice(&bytes);
            let _ = parse_response(&head, rng.random_bool(0.2), &|_, _| None::<()>);
            let _ = parse_response(&bytes, false, &|_, _| None::<()>);
            if let Ok(Some(RespParse::Head(h))) = parse_response(&head, false, &|_, _| None::<()>) {
                let mut out = Vec::new();
                write_status_line(&mut out, h.status, &head[h.reason.clone()]);
                write_response_headers(
                    &mut out,
                    &head[h.headers_start..h.head_len],
                    rng.random_bool(0.5),
                    h.drop_length,
                    h.connection_names,
                );
                assert!(out.starts_with(b"HTTP/1.1 ") && out.ends_with(b"\r\n\r\n"));
            }
        }
    }

    #[test]
    fn chunked_scanner_refuses_broken_framing() {
        assert_eq!(scan_all(&[b"zz\r\n"]).unwrap_err(), ChunkError::Size);
        assert_eq!(scan_all(&[b"\r\n"]).unwrap_err(), ChunkError::Size);
        assert_eq!(scan_all(&[b"3\r\nabcX"]).unwrap_err(), ChunkError::DataEnd);
        assert_eq!(
            scan_all(&[b"ffffffffffffffffff\r\n"]).unwrap_err(),
            ChunkError::TooLarge
        );
        // Not finished yet is not an error.
        let (_, _, done) = scan_all(&[b"3\r\nab"]).unwrap();
        assert!(!done);
    }

    #[test]
    fn response_heads_are_framed_as_http_1_1_says() {
        let p = |s: &[u8], head: bool| match parse_response(s, head, &|_, _| None::<()>) {
            Ok(Some(RespParse::Head(h))) => h.framing,
            _ => panic!("no head"),
        };
        assert_eq!(
            p(b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\n", false),
            Framing::Length(5)
        );
        assert_eq!(
            p(b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\n", true),
            Framing::None
        );
        assert_eq!(p(b"HTTP/1.1 204 No Content\r\n\r\n", false), Framing::None);
        assert_eq!(
            p(
                b"HTTP/1.1 304 Not Modified\r\ncontent-length: 9\r\n\r\n",
                false
            ),
            Framing::None
        );
        assert_eq!(
            p(
                b"HTTP/1.1 200 OK\r\ntransfer-encoding: gzip, chunked\r\n\r\n",
                false
            ),
            Framing::Chunked
        );
        assert_eq!(
            p(b"HTTP/1.1 200 OK\r\ntransfer-encoding: gzip\r\n\r\n", false),
            Framing::Close
        );
        assert_eq!(p(b"HTTP/1.1 200 OK\r\n\r\n", false), Framing::Close);
        assert!(matches!(
            parse_response(b"HTTP/1.1 103 Early Hints\r\nlink: </a>\r\n\r\nHTTP/1.1 200", false, &|_, _| None::<()>),
            Ok(Some(RespParse::Interim(n))) if n == 40
        ));
        assert!(parse_response(
            b"HTTP/1.1 200 OK\r\ncontent-length: 1\r\ncontent-length: 2\r\n\r\n",
            false,
            &|_, _| None::<()>
        )
        .is_err());
        assert!(matches!(
            parse_response(b"HTTP/1.1 200 OK\r\ncontent-le", false, &|_, _| None::<()>),
            Ok(None)
        ));
    }

    /// The head the fast path sends a client for this upstream head.
    fn relayed(head: &[u8], close: bool) -> (Vec<u8>, bool) {
        let Ok(Some(RespParse::Head(h))) = parse_response(head, false, &|_, _| None::<()>) else {
            panic!("no head in {head:?}");
        };
        let mut out = Vec::new();
        write_status_line(&mut out, h.status, &head[h.reason.clone()]);
        write_response_headers(
            &mut out,
            &head[h.headers_start..h.head_len],
            close,
            h.drop_length,
            h.connection_names,
        );
        (out, h.upstream_close)
    }

    #[test]
    fn response_headers_lose_hop_by_hop_ones_only() {
        let head = b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nConnection: keep-alive\r\nKeep-Alive: timeout=5\r\nTransfer-Encoding: chunked\r\nX-A: b\r\n\r\n";
        let (out, _) = relayed(head, false);
        assert_eq!(
            out,
            b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nTransfer-Encoding: chunked\r\nX-A: b\r\n\r\n"
        );
        let (out, _) = relayed(head, true);
        assert!(out.ends_with(b"X-A: b\r\nconnection: close\r\n\r\n"));
        // Headers the upstream's `Connection` names are its own hop-by-hop ones,
        // before or after it, in any case, over more than one Connection line.
        let head = b"HTTP/1.1 200 OK\r\nX-Secret: 1\r\nConnection: keep-alive, x-secret\r\nX-A: b\r\nconnection: X-Other\r\nx-other: 2\r\nContent-Length: 0\r\n\r\n";
        let (out, _) = relayed(head, false);
        assert_eq!(
            out,
            b"HTTP/1.1 200 OK\r\nX-A: b\r\nContent-Length: 0\r\n\r\n"
        );
    }

    #[test]
    fn answers_go_out_as_http_1_1_with_crlf_lines_whatever_the_upstream_spoke() {
        // An HTTP/1.0 upstream: our own version goes out (RFC 9110 6.2), and its
        // connection is not reused unless it asked for keep-alive.
        let (out, close) = relayed(b"HTTP/1.0 200 OK\r\ncontent-length: 2\r\n\r\n", false);
        assert_eq!(out, b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n");
        assert!(close);
        let (_, close) = relayed(
            b"HTTP/1.0 200 OK\r\nconnection: keep-alive\r\ncontent-length: 2\r\n\r\n",
            false,
        );
        assert!(!close);
        // Bare LF line ends, which httparse accepts.
        let (out, _) = relayed(
            b"HTTP/1.1 404 Not Found\nx-a: 1\ncontent-length: 0\n\n",
            false,
        );
        assert_eq!(
            out,
            b"HTTP/1.1 404 Not Found\r\nx-a: 1\r\ncontent-length: 0\r\n\r\n"
        );
        // Chunked and a length: the length is not forwarded.
        let (out, _) = relayed(
            b"HTTP/1.1 200 OK\r\ncontent-length: 9\r\ntransfer-encoding: chunked\r\n\r\n",
            false,
        );
        assert_eq!(
            out,
            b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n"
        );
        // An empty reason phrase stays empty; the code is kept.
        let (out, _) = relayed(b"HTTP/1.1 299 \r\ncontent-length: 0\r\n\r\n", false);
        assert_eq!(out, b"HTTP/1.1 299 \r\ncontent-length: 0\r\n\r\n");
    }

    #[test]
    fn connection_tokens_and_lengths() {
        assert_eq!(connection_close(b"keep-alive"), Some(false));
        assert_eq!(connection_close(b"Keep-Alive, close"), Some(true));
        assert_eq!(connection_close(b"close, x-secret"), None);
        assert_eq!(parse_length(b" 42 "), Some(42));
        assert_eq!(parse_length(b"4 2"), None);
        assert_eq!(parse_length(b"-1"), None);
        assert_eq!(parse_length(b"99999999999999999999"), None);
    }

    #[test]
    fn a_scanner_asked_to_keeps_the_trailer_lines_in_any_split() {
        let msg = b"3\r\nabc\r\n0\r\nx-a: 1\r\nx-b: two\r\n\r\n";
        for cut in 0..msg.len() {
            let mut s = ChunkedScanner::keeping_trailers();
            let (a, done_a) = s.scan(&msg[..cut], |_| {}).unwrap_or((0, false));
            assert_eq!(a, cut);
            let (_, done) = s.scan(&msg[cut..], |_| {}).unwrap_or((0, false));
            assert!(done || done_a);
            assert_eq!(s.take_trailers(), b"x-a: 1\r\nx-b: two\r\n", "cut at {cut}");
        }
        let mut plain = ChunkedScanner::default();
        let _ = plain.scan(msg, |_| {});
        assert!(plain.take_trailers().is_empty());
    }
}
