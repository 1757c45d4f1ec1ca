//! The full path's HTTP/1.1 leg to a plain-HTTP upstream.
//!
//! It runs on the fast path's connections (the raw sockets of [`DirectPool`]),
//! reads answers with the fast path's parser and chunked scanner
//! ([`crate::wire::h1`]), and drives the socket on the request's own task. A
//! general-purpose client puts a channel between a request handle and its
//! connection, a second one under every response body, and a state machine over
//! both; on loopback that was more than half of the user-space time a proxied
//! exchange took on the full path. What this leg adds to the fast path's is the
//! typed side the pipeline works on: the answer's head as `http` parts and its
//! body as frames (chunked payload decoded, trailers as a trailers frame).
//!
//! The request is framed as hyper's client frames it (a declared length is kept,
//! a known size becomes `content-length`, an unknown one `chunked`, and a `GET`,
//! `HEAD` or `CONNECT` of unknown size goes without a body), so an upstream sees
//! the same bytes it saw before this leg existed.

use std::ops::Range;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::{Bytes, BytesMut};
use http::header::{CONTENT_LENGTH, TRAILER, TRANSFER_ENCODING};
use http::{HeaderMap, HeaderName, HeaderValue, Method, Request, Response, StatusCode, Version};
use http_body::{Body, Frame, SizeHint};
use tokio::net::TcpStream;

use crate::error::BoxError;
use crate::upstream::{has_input, DirectPool, RawConn, ReqBody, Resend, SendError, UpBody};
use crate::wire::h1::{
    parse_length, parse_response_with, span, trim, write_chunk, write_field, write_last_chunk,
    ChunkError, Framing, Relay, RespHead, RespParse, MAX_RESPONSE_HEAD, MAX_RESPONSE_HEADERS,
};
use crate::wire::{is_hop_by_hop_raw, strip_hop_by_hop};

/// Room asked for before each read from the upstream.
const READ_ROOM: usize = 8192;
/// Request body bytes gathered before the socket is written.
const WRITE_BATCH: usize = 64 * 1024;

/// How the request's body goes: `Length(0)` sends none.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Out {
    Length(u64),
    Chunked,
}

/// Send a request and wait for its answer's head, on a reused connection when
/// one is fit, else on a new one. A request that nothing of went out goes to the
/// next connection as it is; one that a reused connection lost unanswered goes
/// once more on a new connection when the server cannot have processed it (the
/// resend rule, [`Resend`]). The flag says whether it was sent again.
pub(crate) async fn send(
    pool: &Arc<DirectPool>,
    req: Request<ReqBody>,
    hold_limit: usize,
) -> Result<(Response<UpBody>, bool), SendError> {
    let (mut parts, body) = req.into_parts();
    let out = framing(&mut parts, &body);
    let trailers = allowed_trailers(&parts.headers, out);
    // Lent per thread, as the fast path's head buffers are (`crate::reuse`).
    let mut head = crate::reuse::head_buf();
    let head_method = parts.method == Method::HEAD;
    let (mut body, mut hold) = body.held(hold_limit);
    let mut resend = Resend::default();
    loop {
        let taken = if resend.happened() {
            None
        } else {
            pool.take_raw()
        };
        let (mut conn, reused) = match taken {
            Some(r) => (r.conn, Some(r.idle)),
            // Boxed: dialing is the largest state here, and a reused connection
            // never dials.
            None => (
                Box::pin(pool.connect_raw())
                    .await
                    .map_err(SendError::Connect)?,
                None,
            ),
        };
        if head.is_empty() {
            // Made again for a second attempt, rather than kept as a copy by
            // every first one.
            head.reserve(256);
            encode_head(&parts, &mut head);
        }
        hold.sent();
        let mut attempt = Attempt {
            conn: &mut conn,
            body: &mut body,
            out,
            left: match out {
                Out::Length(n) => n,
                Out::Chunked => 0,
            },
            trailers: &trailers,
            pending: std::mem::take(&mut head),
            at: 0,
            body_done: out == Out::Length(0),
            took_body: false,
            wrote: false,
            answered: false,
            head_method,
        };
        let result = std::future::poll_fn(|cx| attempt.poll(cx)).await;
        let (took_body, wrote) = (attempt.took_body, attempt.wrote);
        // Emptied, for another attempt's head or to go back.
        head = std::mem::take(&mut attempt.pending);
        head.clear();
        match result {
            Ok((resp, whole)) => {
                let resp = response(conn, resp, whole, pool)?;
                // Written, and never again: the buffer and the map go back for the
                // next request's head.
                crate::reuse::give_head_buf(head);
                crate::reuse::give_header_map(parts.headers);
                return Ok((resp, resend.happened()));
            }
            Err(Lost::Body(e)) => return Err(SendError::Body(e)),
            Err(Lost::Answer(e)) => return Err(e),
            Err(Lost::Silent(e)) => {
                let Some(idle) = reused else {
                    return Err(SendError::Io(e));
                };
                if !wrote && !took_body {
                    // Closed while idle, after the check: nothing went.
                    pool.retire.closed_after(idle);
                    continue;
                }
                match resend.again(&pool.retire, reused, true, || hold.replay(), &e) {
                    Some(again) => body = again,
                    None => return Err(SendError::Io(e)),
                }
            }
        }
    }
}

/// How an attempt on one connection failed.
enum Lost {
    /// Nothing of an answer came back: the connection may have been closed by the
    /// upstream while idle.
    Silent(std::io::Error),
    /// The upstream answered, or began to, and the answer is broken.
    Answer(SendError),
    /// The client's own body failed.
    Body(BoxError),
}

/// One request on one connection: writes what the body has ready, reads what the
/// upstream sends, until the answer's head is whole.
struct Attempt<'a> {
    conn: &'a mut RawConn,
    body: &'a mut ReqBody,
    out: Out,
    /// Body bytes still owed under a declared length.
    left: u64,
    trailers: &'a [HeaderName],
    /// Bytes to write, from `at` on.
    pending: Vec<u8>,
    at: usize,
    body_done: bool,
    took_body: bool,
    wrote: bool,
    answered: bool,
    head_method: bool,
}

impl Attempt<'_> {
    /// The answer's head and whether the whole request went out before it.
    fn poll(&mut self, cx: &mut Context<'_>) -> Poll<Result<(RespHead<()>, bool), Lost>> {
        loop {
            // Gather what the body has ready, so that a small body leaves with
            // the head in one write.
            while !self.body_done && self.pending.len() - self.at < WRITE_BATCH {
                match Pin::new(&mut *self.body).poll_frame(cx) {
                    Poll::Ready(Some(Ok(frame))) => {
                        self.took_body = true;
                        self.encode(frame).map_err(Lost::Body)?;
                    }
                    Poll::Ready(None) => {
                        self.body_done = true;
                        self.end().map_err(Lost::Body)?;
                    }
                    Poll::Ready(Some(Err(e))) => return Poll::Ready(Err(Lost::Body(e))),
                    Poll::Pending => break,
                }
            }
            if self.at < self.pending.len() {
                match poll_write(&self.conn.stream, &self.pending[self.at..], cx) {
                    Poll::Ready(Ok(n)) => {
                        self.wrote = true;
                        self.at += n;
                        if self.at == self.pending.len() {
                            self.pending.clear();
                            self.at = 0;
                        }
                        continue;
                    }
                    Poll::Ready(Err(e)) => {
                        // An upstream that answered early (a 413, say) and closed
                        // has its answer waiting: read it.
                        if !has_input(&self.conn.stream) {
                            return Poll::Ready(Err(if self.answered {
                                Lost::Answer(SendError::Io(e))
                            } else {
                                Lost::Silent(e)
                            }));
                        }
                        self.body_done = true;
                        self.pending.clear();
                        self.at = 0;
                    }
                    Poll::Pending => {}
                }
            }
            match poll_fill(&self.conn.stream, &mut self.conn.buf, cx) {
                Poll::Ready(Ok(0)) if !self.answered => {
                    return Poll::Ready(Err(Lost::Silent(std::io::Error::new(
                        std::io::ErrorKind::UnexpectedEof,
                        "connection closed before message completed",
                    ))))
                }
                Poll::Ready(Ok(0)) => {
                    return Poll::Ready(Err(Lost::Answer(invalid(
                        "connection closed in the middle of the response head",
                    ))))
                }
                Poll::Ready(Ok(_)) => {
                    self.answered = true;
                    if let Some(head) = self.parse().map_err(Lost::Answer)? {
                        let whole = self.body_done && self.pending.is_empty();
                        return Poll::Ready(Ok((head, whole)));
                    }
                }
                Poll::Ready(Err(e)) if !self.answered => return Poll::Ready(Err(Lost::Silent(e))),
                Poll::Ready(Err(e)) => return Poll::Ready(Err(Lost::Answer(SendError::Io(e)))),
                Poll::Pending => return Poll::Pending,
            }
        }
    }

    /// The answer's head, once whole (interim 1xx answers skipped).
    fn parse(&mut self) -> Result<Option<RespHead<()>>, SendError> {
        loop {
            let RawConn { buf, fields, .. } = &mut *self.conn;
            fields.clear();
            let found = parse_response_with(buf, self.head_method, &|_, _| None, |n, v| {
                fields.push((n, v))
            });
            match found {
                Ok(Some(RespParse::Interim(n))) => {
                    let _ = buf.split_to(n);
                }
                Ok(Some(RespParse::Head(h))) => return Ok(Some(h)),
                Ok(None) if buf.len() <= MAX_RESPONSE_HEAD => return Ok(None),
                Ok(None) => return Err(invalid("response head too large")),
                Err(why) => return Err(invalid(why)),
            }
        }
    }

    fn encode(&mut self, frame: Frame<Bytes>) -> Result<(), BoxError> {
        match frame.into_data() {
            Ok(data) => {
                if data.is_empty() {
                    return Ok(());
                }
                match self.out {
                    Out::Length(_) => {
                        if data.len() as u64 > self.left {
                            return Err("request body longer than its content-length".into());
                        }
                        self.left -= data.len() as u64;
                        self.pending.extend_from_slice(&data);
                    }
                    Out::Chunked => write_chunk(&mut self.pending, &data),
                }
                Ok(())
            }
            Err(frame) => {
                let Ok(map) = frame.into_trailers() else {
                    return Ok(());
                };
                if self.out == Out::Chunked {
                    // Only the fields the `Trailer` header announced go, as hyper sends them.
                    write_last_chunk(&mut self.pending, self.trailers, Some(&map));
                    self.body_done = true;
                }
                Ok(())
            }
        }
    }

    /// The body ended.
    fn end(&mut self) -> Result<(), BoxError> {
        match self.out {
            Out::Length(_) if self.left > 0 => {
                Err("request body shorter than its content-length".into())
            }
            Out::Length(_) => Ok(()),
            Out::Chunked => {
                write_last_chunk(&mut self.pending, &[], None);
                Ok(())
            }
        }
    }
}

/// The request's body framing, with its headers set to say so (as hyper's
/// client sets them).
fn framing(parts: &mut http::request::Parts, body: &ReqBody) -> Out {
    if body.is_end_stream() {
        parts.headers.remove(TRANSFER_ENCODING);
        return Out::Length(0);
    }
    if let Some(te) = parts.headers.get(TRANSFER_ENCODING) {
        let last = te
            .as_bytes()
            .split(|&b| b == b',')
            .next_back()
            .map(trim)
            .unwrap_or(b"");
        if !last.eq_ignore_ascii_case(b"chunked") {
            let mut v = te.as_bytes().to_vec();
            v.extend_from_slice(b", chunked");
            if let Ok(v) = HeaderValue::from_bytes(&v) {
                parts.headers.insert(TRANSFER_ENCODING, v);
            }
        }
        parts.headers.remove(CONTENT_LENGTH);
        return Out::Chunked;
    }
    if let Some(n) = declared_length(&parts.headers) {
        return Out::Length(n);
    }
    match body.size_hint().exact() {
        Some(n) => {
            parts.headers.insert(CONTENT_LENGTH, HeaderValue::from(n));
            Out::Length(n)
        }
        None if matches!(parts.method, Method::GET | Method::HEAD | Method::CONNECT) => {
            Out::Length(0)
        }
        None => {
            parts.headers.remove(CONTENT_LENGTH);
            parts
                .headers
                .insert(TRANSFER_ENCODING, HeaderValue::from_static("chunked"));
            Out::Chunked
        }
    }
}

/// The `content-length` every value of the header agrees on, if any.
fn declared_length(headers: &HeaderMap) -> Option<u64> {
    let mut found = None;
    for v in headers.get_all(CONTENT_LENGTH) {
        for part in v.as_bytes().split(|&b| b == b',') {
            let n = parse_length(part)?;
            if found.is_some_and(|f| f != n) {
                return None;
            }
            found = Some(n);
        }
    }
    found
}

/// The trailer fields a chunked request announced in `Trailer`.
fn allowed_trailers(headers: &HeaderMap, out: Out) -> Vec<HeaderName> {
    if out != Out::Chunked {
        return Vec::new();
    }
    headers
        .get_all(TRAILER)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|s| s.split(','))
        .filter_map(|s| HeaderName::from_bytes(s.trim().as_bytes()).ok())
        .collect()
}

/// The request head in origin form (a plain-HTTP upstream's pool is asked for
/// paths only).
fn encode_head(parts: &http::request::Parts, out: &mut Vec<u8>) {
    out.extend_from_slice(parts.method.as_str().as_bytes());
    out.push(b' ');
    let target = parts.uri.path_and_query().map_or("/", |p| p.as_str());
    out.extend_from_slice(if target.is_empty() {
        b"/"
    } else {
        target.as_bytes()
    });
    out.extend_from_slice(b" HTTP/1.1\r\n");
    for (name, value) in &parts.headers {
        write_field(out, name, value);
    }
    out.extend_from_slice(b"\r\n");
}

/// The answer as the pipeline takes it: the head typed, the body to be read from
/// the connection, which goes back to the pool once the body is read to its end
/// (when the whole request went out and the upstream keeps the connection).
fn response(
    mut conn: RawConn,
    h: RespHead<()>,
    whole: bool,
    pool: &Arc<DirectPool>,
) -> Result<Response<UpBody>, SendError> {
    let head = conn.buf.split_to(h.head_len).freeze();
    let fields = std::mem::take(&mut conn.fields);
    let status = StatusCode::from_u16(h.status).map_err(|_| invalid("invalid status code"))?;
    let mut resp = Response::new(());
    *resp.status_mut() = status;
    *resp.version_mut() = if h.http10 {
        Version::HTTP_10
    } else {
        Version::HTTP_11
    };
    *resp.headers_mut() = answer_fields(&head, &fields, &h)?;
    conn.fields = fields;
    let reason = &head[h.reason.clone()];
    if status.canonical_reason().map(str::as_bytes) != Some(reason) {
        // Kept as the upstream said it, as on the fast path.
        if let Ok(r) = hyper::ext::ReasonPhrase::try_from(head.slice(h.reason.clone())) {
            resp.extensions_mut().insert(r);
        }
    }
    if let Some(secs) = h.keep_alive {
        // As the fast path does with the same parse: idle connections are retired
        // before the upstream's announced keep-alive ends.
        pool.retire.announce(secs);
    }
    let reusable = whole && !h.upstream_close && h.framing != Framing::Close;
    let mut body = RawBody {
        conn: Some(conn),
        pool: Arc::clone(pool),
        relay: Relay::keeping_trailers(h.framing),
        reusable,
        failed: None,
        trailers: None,
        done: false,
    };
    if h.framing == Framing::None {
        body.finish();
    }
    Ok(resp.map(|()| UpBody::Raw(body)))
}

/// The answer's header fields as they go on to the client: [`typed_fields`] less
/// the hop-by-hop ones, which no proxy forwards (RFC 9110 7.6.1). The common ones
/// are skipped by their raw names as the map is made, rather than typed, hashed
/// and then looked up again to be removed; the rare answer whose `Connection`
/// names fields of its own, or that carries a `te`, is typed whole and stripped
/// by the rule every leg shares ([`strip_hop_by_hop`]).
fn answer_fields(
    head: &Bytes,
    fields: &[(Range<usize>, Range<usize>)],
    h: &RespHead<()>,
) -> Result<HeaderMap, SendError> {
    let rare = h.connection_names
        || fields
            .iter()
            .any(|(n, _)| head[n.clone()].eq_ignore_ascii_case(b"te"));
    if rare {
        let mut map = typed_fields(head, fields, h.drop_length, |_| true)?;
        strip_hop_by_hop(&mut map);
        return Ok(map);
    }
    typed_fields(head, fields, h.drop_length, |n| !is_hop_by_hop_raw(n))
}

/// The header fields `parse_response_with` found in `head` whose raw names `keep`
/// accepts, as a map whose values share the head's bytes.
fn typed_fields(
    head: &Bytes,
    fields: &[(Range<usize>, Range<usize>)],
    drop_length: bool,
    keep: impl Fn(&[u8]) -> bool,
) -> Result<HeaderMap, SendError> {
    // Room for the one field the proxy may add (`x-brownout-fault`): `insert`
    // grows a full map.
    let mut map = crate::reuse::header_map(fields.len() + 1);
    for (n, v) in fields {
        let raw = &head[n.clone()];
        if !keep(raw) {
            continue;
        }
        let name = HeaderName::from_bytes(raw).map_err(|_| invalid("invalid header name"))?;
        if drop_length && name == CONTENT_LENGTH {
            // Transfer-Encoding decides the framing (RFC 9112 §6.3).
            continue;
        }
        let value = HeaderValue::from_maybe_shared(head.slice(v.clone()))
            .map_err(|_| invalid("invalid header value"))?;
        map.append(name, value);
    }
    Ok(map)
}

fn invalid(why: &str) -> SendError {
    SendError::Invalid(format!("invalid HTTP response: {why}"))
}

/// An answer's body as it comes over a raw connection, framed as its head said.
pub struct RawBody {
    /// `None` once the body ended or failed.
    conn: Option<RawConn>,
    pool: Arc<DirectPool>,
    /// The body's framing, followed over the bytes as they come (as the fast
    /// path follows it).
    relay: Relay,
    /// The connection may serve another request once this body is read.
    reusable: bool,
    /// A failure held back for one poll, so that the bytes that came before it
    /// reach the client first.
    failed: Option<BoxError>,
    /// Trailers that came with the last chunk, for the next poll.
    trailers: Option<HeaderMap>,
    done: bool,
}

impl std::fmt::Debug for RawBody {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RawBody")
            .field("framing", &self.relay.framing())
            .field("left", &self.relay.left())
            .field("done", &self.done)
            .finish()
    }
}

impl RawBody {
    /// The body ended where its framing said: the connection goes back when clean.
    fn finish(&mut self) {
        self.done = true;
        if let Some(c) = self.conn.take() {
            if self.reusable && c.buf.is_empty() {
                self.pool.put_raw(c);
            }
        }
    }

    fn fail(&mut self, e: impl Into<BoxError>) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        self.conn = None;
        self.done = true;
        Poll::Ready(Some(Err(e.into())))
    }

    /// A frame from the bytes already read, if they hold one.
    fn buffered_frame(&mut self) -> Option<Result<Frame<Bytes>, BoxError>> {
        let conn = self.conn.as_mut()?;
        if conn.buf.is_empty() {
            return None;
        }
        let buf = &conn.buf;
        let mut got = Payload::Nothing;
        let taken = self.relay.take(buf, |r| {
            got = match std::mem::replace(&mut got, Payload::Nothing) {
                Payload::Nothing => Payload::One(r),
                Payload::One(f) => {
                    let mut v = buf[f].to_vec();
                    v.extend_from_slice(&buf[r]);
                    Payload::Many(v)
                }
                Payload::Many(mut v) => {
                    v.extend_from_slice(&buf[r]);
                    Payload::Many(v)
                }
            }
        });
        match taken {
            Err(e) => {
                let e = chunk_failure(e);
                let data = match got {
                    Payload::Nothing => None,
                    Payload::One(r) => Some(Bytes::copy_from_slice(&conn.buf[r])),
                    Payload::Many(v) => Some(Bytes::from(v)),
                };
                self.conn = None;
                match data {
                    Some(d) => {
                        self.failed = Some(e);
                        Some(Ok(Frame::data(d)))
                    }
                    None => {
                        self.done = true;
                        Some(Err(e))
                    }
                }
            }
            Ok((used, done)) => {
                let framed = conn.buf.split_to(used).freeze();
                let data = match got {
                    Payload::Nothing => None,
                    Payload::One(r) => Some(framed.slice(r)),
                    Payload::Many(v) => Some(Bytes::from(v)),
                };
                if done {
                    self.trailers = trailer_map(&self.relay.take_trailers());
                    self.finish();
                }
                match data {
                    Some(d) => Some(Ok(Frame::data(d))),
                    None => self.trailers.take().map(|t| Ok(Frame::trailers(t))),
                }
            }
        }
    }
}

/// The payload a scan of buffered bytes found: most often one range of them.
enum Payload {
    Nothing,
    One(Range<usize>),
    Many(Vec<u8>),
}

/// A trailer section's lines as a map (none when empty or unreadable).
fn trailer_map(lines: &[u8]) -> Option<HeaderMap> {
    if lines.is_empty() {
        return None;
    }
    let mut section = lines.to_vec();
    section.extend_from_slice(b"\r\n");
    let section = Bytes::from(section);
    let mut parsed = [httparse::EMPTY_HEADER; MAX_RESPONSE_HEADERS];
    let Ok(httparse::Status::Complete((_, parsed))) =
        httparse::parse_headers(&section, &mut parsed)
    else {
        return None;
    };
    let fields: Vec<_> = parsed
        .iter()
        .map(|f| (span(&section, f.name.as_bytes()), span(&section, f.value)))
        .collect();
    typed_fields(&section, &fields, false, |_| true)
        .ok()
        .filter(|m| !m.is_empty())
}

fn chunk_failure(e: ChunkError) -> BoxError {
    Box::new(std::io::Error::new(std::io::ErrorKind::InvalidData, e))
}

impl Body for RawBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = self.get_mut();
        loop {
            if let Some(e) = this.failed.take() {
                this.done = true;
                return Poll::Ready(Some(Err(e)));
            }
            if let Some(t) = this.trailers.take() {
                return Poll::Ready(Some(Ok(Frame::trailers(t))));
            }
            if this.done {
                return Poll::Ready(None);
            }
            if let Some(frame) = this.buffered_frame() {
                return Poll::Ready(Some(frame));
            }
            if this.done {
                continue;
            }
            let Some(conn) = this.conn.as_mut() else {
                return Poll::Ready(None);
            };
            match poll_fill(&conn.stream, &mut conn.buf, cx) {
                Poll::Ready(Ok(0)) if this.relay.framing() == Framing::Close => {
                    this.reusable = false;
                    this.finish();
                    return Poll::Ready(None);
                }
                Poll::Ready(Ok(0)) => {
                    return this.fail(std::io::Error::new(
                        std::io::ErrorKind::UnexpectedEof,
                        "connection closed before the message completed",
                    ))
                }
                Poll::Ready(Ok(_)) => {}
                Poll::Ready(Err(e)) => return this.fail(e),
                Poll::Pending => return Poll::Pending,
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.done && self.failed.is_none() && self.trailers.is_none()
    }

    fn size_hint(&self) -> SizeHint {
        match (self.relay.framing(), self.relay.left()) {
            (Framing::None, _) => SizeHint::with_exact(0),
            (_, Some(left)) if self.failed.is_none() => SizeHint::with_exact(left),
            _ => SizeHint::default(),
        }
    }
}

/// Read into `buf`, on the socket the request's writer shares.
fn poll_fill(
    io: &TcpStream,
    buf: &mut BytesMut,
    cx: &mut Context<'_>,
) -> Poll<std::io::Result<usize>> {
    crate::conn::poll_fill(io, buf, READ_ROOM, cx)
}

fn poll_write(io: &TcpStream, data: &[u8], cx: &mut Context<'_>) -> Poll<std::io::Result<usize>> {
    loop {
        if io.poll_write_ready(cx)?.is_pending() {
            return Poll::Pending;
        }
        match io.try_write(data) {
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => continue,
            Ok(0) => return Poll::Ready(Err(std::io::ErrorKind::WriteZero.into())),
            r => return Poll::Ready(r),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parts(method: Method, headers: &[(&str, &str)]) -> http::request::Parts {
        let mut req = Request::builder().method(method).uri("/v1/x?y=1");
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        req.body(())
            .map(|r| r.into_parts().0)
            .unwrap_or_else(|_| unreachable!())
    }

    /// A body of unknown size that never sends.
    struct Unknown;

    impl Body for Unknown {
        type Data = Bytes;
        type Error = BoxError;

        fn poll_frame(
            self: Pin<&mut Self>,
            _: &mut Context<'_>,
        ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
            Poll::Pending
        }
    }

    fn body(len: Option<u64>) -> ReqBody {
        match len {
            Some(n) => ReqBody::Prefixed {
                prefix: Some(Bytes::from(vec![b'x'; n as usize])),
                rest: None,
            },
            None => ReqBody::Boxed(http_body_util::BodyExt::boxed_unsync(Unknown)),
        }
    }

    #[test]
    fn requests_are_framed_as_hyper_frames_them() {
        // No body: nothing added.
        let mut p = parts(Method::GET, &[]);
        assert_eq!(framing(&mut p, &ReqBody::Empty), Out::Length(0));
        assert!(p.headers.get(CONTENT_LENGTH).is_none());
        // A declared length is kept.
        let mut p = parts(Method::POST, &[("content-length", "3")]);
        assert_eq!(framing(&mut p, &body(Some(3))), Out::Length(3));
        // A known size becomes a content-length.
        let mut p = parts(Method::POST, &[]);
        assert_eq!(framing(&mut p, &body(Some(5))), Out::Length(5));
        assert_eq!(p.headers[CONTENT_LENGTH], "5");
        // An unknown size is chunked, except on GET, which goes without a body.
        let mut p = parts(Method::POST, &[]);
        assert_eq!(framing(&mut p, &body(None)), Out::Chunked);
        assert_eq!(p.headers[TRANSFER_ENCODING], "chunked");
        let mut p = parts(Method::GET, &[]);
        assert_eq!(framing(&mut p, &body(None)), Out::Length(0));
        assert!(p.headers.get(TRANSFER_ENCODING).is_none());
        // Disagreeing lengths are no length.
        let mut h = HeaderMap::new();
        h.append(CONTENT_LENGTH, HeaderValue::from_static("3"));
        h.append(CONTENT_LENGTH, HeaderValue::from_static("4"));
        assert_eq!(declared_length(&h), None);
    }

    #[test]
    fn the_head_goes_in_origin_form_with_its_fields() {
        let p = parts(
            Method::POST,
            &[("host", "up:8000"), ("content-length", "2")],
        );
        let mut out = Vec::new();
        encode_head(&p, &mut out);
        assert_eq!(
            out,
            b"POST /v1/x?y=1 HTTP/1.1\r\nhost: up:8000\r\ncontent-length: 2\r\n\r\n"
        );
    }

    /// The answer's fields as the h1 leg types them for the client.
    fn answer_map(raw: &'static [u8]) -> HeaderMap {
        let head = Bytes::from_static(raw);
        let mut fields = Vec::new();
        let found =
            parse_response_with(&head, false, &|_, _| None::<()>, |n, v| fields.push((n, v)));
        let Ok(Some(RespParse::Head(h))) = found else {
            panic!("a whole head: {:?}", found.err());
        };
        answer_fields(&head, &fields, &h).unwrap_or_default()
    }

    #[test]
    fn an_answers_hop_by_hop_fields_never_reach_its_typed_head() {
        // The common case, skipped as the map is made.
        let map = answer_map(
            b"HTTP/1.1 200 OK\r\nServer: up\r\nConnection: keep-alive\r\nKeep-Alive: timeout=5\r\nTransfer-Encoding: chunked\r\nX-A: 1\r\n\r\n",
        );
        let names: Vec<&str> = map.keys().map(|k| k.as_str()).collect();
        assert_eq!(names, ["server", "x-a"]);
        // A `Connection` that names a field of its own, and a `te`: the rule
        // every leg shares, which keeps only `te: trailers`.
        let map = answer_map(
            b"HTTP/1.1 200 OK\r\nConnection: x-private, keep-alive\r\nX-Private: s\r\nTE: gzip, trailers\r\nContent-Length: 0\r\nX-B: 2\r\n\r\n",
        );
        assert!(map.get("x-private").is_none() && map.get("connection").is_none());
        assert_eq!(map["te"], "trailers");
        assert_eq!(map["x-b"], "2");
        assert_eq!(map[CONTENT_LENGTH], "0");
    }

    #[test]
    fn answer_headers_share_the_head_and_lose_a_length_chunked_overrides() {
        let head = Bytes::from_static(
            b"HTTP/1.1 200 OK\r\ncontent-length: 9\r\ntransfer-encoding: chunked\r\nx-a: 1\r\nx-a: 2\r\n\r\n",
        );
        let mut fields = Vec::new();
        let found =
            parse_response_with(&head, false, &|_, _| None::<()>, |n, v| fields.push((n, v)));
        let Ok(Some(RespParse::Head(h))) = found else {
            panic!("a whole head: {:?}", found.err());
        };
        assert!(h.drop_length);
        let map = typed_fields(&head, &fields, h.drop_length, |_| true).unwrap_or_default();
        assert!(map.get(CONTENT_LENGTH).is_none());
        assert_eq!(map.get_all("x-a").iter().count(), 2);
        assert_eq!(map[TRANSFER_ENCODING], "chunked");
        assert_eq!(
            trailer_map(b"grpc-status: 0\r\nx-t: a\r\n")
                .map(|m| m.len())
                .unwrap_or(0),
            2
        );
        assert!(trailer_map(b"").is_none());
    }

    /// One upstream connection that reads a request head and answers with
    /// `answer`, written in pieces; the request as it came back through `seen`.
    async fn upstream(
        answer: Vec<&'static [u8]>,
        hold_open: bool,
    ) -> (String, tokio::sync::oneshot::Receiver<Vec<u8>>) {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .unwrap_or_else(|e| panic!("bind: {e}"));
        let addr = listener
            .local_addr()
            .unwrap_or_else(|e| panic!("addr: {e}"))
            .to_string();
        let (tx, rx) = tokio::sync::oneshot::channel();
        tokio::spawn(async move {
            let Ok((mut s, _)) = listener.accept().await else {
                return;
            };
            let mut got = Vec::new();
            let mut buf = [0u8; 1024];
            while !got.windows(4).any(|w| w == b"\r\n\r\n") {
                match s.read(&mut buf).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => got.extend_from_slice(&buf[..n]),
                }
            }
            let _ = tx.send(got);
            for piece in answer {
                let _ = s.write_all(piece).await;
                tokio::time::sleep(std::time::Duration::from_millis(5)).await;
            }
            if hold_open {
                tokio::time::sleep(std::time::Duration::from_secs(5)).await;
            }
        });
        (addr, rx)
    }

    async fn get(pool: &Arc<DirectPool>) -> Result<(Response<UpBody>, bool), SendError> {
        let req = Request::builder()
            .uri("/x")
            .header("host", "up")
            .body(ReqBody::Empty)
            .unwrap_or_else(|_| unreachable!());
        send(pool, req, 1024).await
    }

    #[tokio::test]
    async fn a_chunked_answer_comes_as_frames_with_its_trailers_and_the_connection_goes_back() {
        let (addr, seen) = upstream(
            vec![
                b"HTTP/1.1 200 Fine\r\ntransfer-encoding: chunked\r\ntrailer: x-t\r\n\r\n5\r\nhel",
                b"lo\r\n6\r\n world\r\n0\r\nx-t: do",
                b"ne\r\n\r\n",
            ],
            true,
        )
        .await;
        let pool = Arc::new(DirectPool::new(addr, std::time::Duration::from_secs(30)));
        let (resp, resent) = get(&pool).await.unwrap_or_else(|e| panic!("send: {e}"));
        assert!(!resent);
        assert_eq!(
            seen.await.unwrap_or_default(),
            b"GET /x HTTP/1.1\r\nhost: up\r\n\r\n"
        );
        assert_eq!(resp.status(), StatusCode::OK);
        let reason = resp.extensions().get::<hyper::ext::ReasonPhrase>();
        assert_eq!(reason.map(|r| r.as_bytes()), Some(&b"Fine"[..]));
        let mut body = resp.into_body();
        let mut data = Vec::new();
        let mut trailers = None;
        while let Some(frame) = http_body_util::BodyExt::frame(&mut body).await {
            let frame = frame.unwrap_or_else(|e| panic!("frame: {e}"));
            match frame.into_data() {
                Ok(d) => data.extend_from_slice(&d),
                Err(f) => trailers = f.into_trailers().ok(),
            }
        }
        assert_eq!(data, b"hello world");
        assert_eq!(
            trailers.map(|t| t["x-t"].clone()),
            Some(HeaderValue::from_static("done"))
        );
        assert!(
            pool.take_raw().is_some(),
            "read to its end, the connection is kept"
        );
    }

    #[tokio::test]
    async fn a_body_cut_short_gives_its_bytes_then_fails_and_the_connection_is_dropped() {
        let (addr, _seen) = upstream(
            vec![b"HTTP/1.1 200 OK\r\ncontent-length: 10\r\n\r\nabcd"],
            false,
        )
        .await;
        let pool = Arc::new(DirectPool::new(addr, std::time::Duration::from_secs(30)));
        let (resp, _) = get(&pool).await.unwrap_or_else(|e| panic!("send: {e}"));
        assert_eq!(resp.body().size_hint().exact(), Some(10));
        let mut body = resp.into_body();
        let first = http_body_util::BodyExt::frame(&mut body).await;
        let first = first.and_then(|f| f.ok()).and_then(|f| f.into_data().ok());
        assert_eq!(first.as_deref(), Some(&b"abcd"[..]));
        let next = http_body_util::BodyExt::frame(&mut body).await;
        let why = next.and_then(|f| f.err()).map(|e| e.to_string());
        assert_eq!(
            why.as_deref(),
            Some("connection closed before the message completed")
        );
        assert!(pool.take_raw().is_none());
    }
}
