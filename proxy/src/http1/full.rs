//! The full path on the fast loop's own connection.
//!
//! A plain HTTP/1.1 request that a rule could touch (every request, under
//! `fast_path: false`) is served here rather than by handing the connection to
//! hyper: its head, already parsed in place by [`FastConn::prepare`], is typed
//! once into an `http::Request`, the same tower [`pipeline`] that serves hyper's
//! requests decides, harms and forwards it, and the answer (a
//! `Response<ProxyBody>`) is framed onto the connection frame by frame, as
//! hyper's server frames it. The connection then stays in the fast loop for the
//! next request. What needs a general HTTP stack (HTTP/2, upgrades, `Expect`,
//! HTTP/1.0, an upload not yet whole) is still handed to hyper.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::{Buf, Bytes};
use http::header::{self, HeaderName};
use http::{HeaderMap, Method, Request, StatusCode};
use http_body::Body;
use tokio::io::AsyncWriteExt;

use super::{FastConn, MAX_HEAD, READ_ROOM};
use crate::body::ProxyBody;
use crate::conn::{ConnInfo, HoldWatch};
use crate::pipeline::forward::Forward;
use crate::pipeline::stack::{open, pipeline};
use crate::upstream::ReqBody;
use crate::wire::h1::{
    connection_close, parse_length, span, write_chunk, write_field, write_last_chunk,
    write_status_line,
};

/// Answer bytes gathered before a write, when the body has more ready at once.
const FLUSH_AT: usize = 64 * 1024;

/// A request head accepted for the full path on this connection.
pub(super) struct FullReq {
    pub(super) parts: http::request::Parts,
    pub(super) head_len: usize,
    /// The body, all in the read buffer after the head.
    pub(super) body_len: usize,
    pub(super) client_close: bool,
}

/// The request's typed head, its values sharing one copy of the head's bytes
/// (`buf` is the read buffer, `fields` httparse's view of it). `None` for a head
/// `http` refuses, which hyper then answers.
pub(super) fn request_parts(
    buf: &[u8],
    head_len: usize,
    method: Method,
    target: &str,
    fields: &[httparse::Header<'_>],
) -> Option<http::request::Parts> {
    let head = Bytes::copy_from_slice(&buf[..head_len]);
    let uri = http::Uri::from_maybe_shared(head.slice(span(buf, target.as_bytes()))).ok()?;
    // Room for the fields the upstream leg sets (`host`; `accept-encoding` for a
    // body fault): `insert` grows a full map even to replace a field.
    let mut headers = crate::reuse::header_map(fields.len() + 2);
    for h in fields {
        let name = HeaderName::from_bytes(h.name.as_bytes()).ok()?;
        let value = http::HeaderValue::from_maybe_shared(head.slice(span(buf, h.value))).ok()?;
        headers.append(name, value);
    }
    let mut req = Request::new(());
    *req.method_mut() = method;
    *req.uri_mut() = uri;
    *req.headers_mut() = headers;
    Some(req.into_parts().0)
}

/// How an answer's body is framed on the client connection (hyper's rules).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Framer {
    /// `content-length` bytes; none at all for an answer that has no body.
    Length(u64),
    /// Chunked, with the trailer fields the `trailer` header announced.
    Chunked(Option<Vec<HeaderName>>),
    /// Delimited by the connection's close.
    Close,
}

/// Whether an answer to `method` with `status` carries a body.
fn can_have_body(head_method: bool, status: StatusCode) -> bool {
    !head_method && can_have_length(status)
}

/// Whether an answer with `status` may say `content-length`.
fn can_have_length(status: StatusCode) -> bool {
    !status.is_informational()
        && status != StatusCode::NO_CONTENT
        && status != StatusCode::NOT_MODIFIED
}

/// Write the answer's head into `out` as hyper's HTTP/1.1 server does: lowercase
/// names in the map's order, the body's framing from its headers or else its size
/// (`body`: `None` for an empty body, `Some(None)` for one of unknown length),
/// `connection: close` when the connection ends after it (`keep` false on entry,
/// or made false by the answer's own `connection: close`), and a `date`.
pub(super) fn encode_head(
    out: &mut Vec<u8>,
    head: &http::response::Parts,
    body: Option<Option<u64>>,
    head_method: bool,
    keep: &mut bool,
) -> Framer {
    let status = head.status;
    match head.extensions.get::<hyper::ext::ReasonPhrase>() {
        Some(r) => write_status_line(out, status.as_u16(), r.as_bytes()),
        None => write_status_line(
            out,
            status.as_u16(),
            status.canonical_reason().unwrap_or("<none>").as_bytes(),
        ),
    }
    let body_ok = can_have_body(head_method, status);
    let mut framer = None;
    let mut wrote_date = false;
    let mut says_close = false;
    let mut trailer_names: Option<Vec<HeaderName>> = None;
    for (name, value) in head.headers.iter() {
        match *name {
            header::CONTENT_LENGTH => {
                if framer.is_some() {
                    // A second length (or a length after a coding): hyper keeps
                    // the first.
                    continue;
                }
                match body {
                    Some(Some(n)) => framer = Some(Framer::Length(n)),
                    Some(None) => match parse_length(value.as_bytes()) {
                        Some(n) => framer = Some(Framer::Length(n)),
                        None => continue,
                    },
                    // An empty body: a HEAD answer keeps the length of the GET's;
                    // any other says `content-length: 0` below.
                    None if head_method => framer = Some(Framer::Length(0)),
                    None => continue,
                }
                write_field(out, name, value);
            }
            header::TRANSFER_ENCODING => {
                if !body_ok || framer.is_some() {
                    continue;
                }
                framer = Some(Framer::Chunked(None));
                write_field(out, name, value);
            }
            header::CONNECTION => {
                says_close |= connection_close(value.as_bytes()).unwrap_or(false);
                write_field(out, name, value);
            }
            header::TRAILER => {
                if !body_ok {
                    continue;
                }
                if let Ok(v) = value.to_str() {
                    let names = v
                        .split(',')
                        .filter_map(|s| HeaderName::from_bytes(s.trim().as_bytes()).ok());
                    trailer_names.get_or_insert_with(Vec::new).extend(names);
                }
                write_field(out, name, value);
            }
            header::DATE => {
                wrote_date = true;
                write_field(out, name, value);
            }
            _ => write_field(out, name, value),
        }
    }
    if says_close {
        *keep = false;
    } else if !*keep {
        out.extend_from_slice(b"connection: close\r\n");
    }
    let framer = match framer {
        Some(f) => f,
        None => match body {
            Some(None) if body_ok => {
                out.extend_from_slice(b"transfer-encoding: chunked\r\n");
                Framer::Chunked(None)
            }
            Some(None) => Framer::Close,
            None | Some(Some(0)) => {
                if can_have_length(status) && !head_method {
                    out.extend_from_slice(b"content-length: 0\r\n");
                }
                Framer::Length(0)
            }
            Some(Some(n)) if can_have_length(status) => {
                out.extend_from_slice(format!("content-length: {n}\r\n").as_bytes());
                Framer::Length(n)
            }
            Some(Some(_)) => Framer::Length(0),
        },
    };
    let framer = match framer {
        _ if !body_ok => Framer::Length(0),
        Framer::Chunked(_) => Framer::Chunked(trailer_names),
        Framer::Close => {
            *keep = false;
            Framer::Close
        }
        f => f,
    };
    if !wrote_date {
        out.extend_from_slice(b"date: ");
        crate::wire::date::extend(out);
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"\r\n");
    framer
}

/// What one poll of the answer's body left.
enum Step {
    /// Bytes gathered in `out`, to be written; the body has more to come.
    More,
    /// The body ended, with these trailers, if any.
    End(Option<HeaderMap>),
    /// The body failed (an upstream that broke off, an injected reset): the
    /// connection must close before the answer's end.
    Failed,
}

/// Poll `body` for every frame it has ready, framing them into `out`.
fn gather(
    body: &mut ProxyBody,
    out: &mut Vec<u8>,
    framer: &Framer,
    sent: &mut u64,
    cx: &mut Context<'_>,
) -> Poll<Step> {
    loop {
        let frame = match Pin::new(&mut *body).poll_frame(cx) {
            Poll::Pending if out.is_empty() => return Poll::Pending,
            Poll::Pending => return Poll::Ready(Step::More),
            Poll::Ready(None) => return Poll::Ready(Step::End(None)),
            Poll::Ready(Some(Err(_))) => return Poll::Ready(Step::Failed),
            Poll::Ready(Some(Ok(f))) => f,
        };
        let data = match frame.into_data() {
            Ok(d) => d,
            Err(frame) => match frame.into_trailers() {
                Ok(t) => return Poll::Ready(Step::End(Some(t))),
                Err(_) => continue,
            },
        };
        if data.is_empty() {
            continue;
        }
        match framer {
            Framer::Length(0) => continue,
            Framer::Length(_) | Framer::Close => out.extend_from_slice(&data),
            Framer::Chunked(_) => write_chunk(out, &data),
        }
        *sent += data.len() as u64;
        if out.len() >= FLUSH_AT {
            return Poll::Ready(Step::More);
        }
    }
}

/// How a full exchange left the connection.
pub(super) enum After {
    /// Ready for the next request.
    Keep,
    /// To be closed (after the answer, or because the client left).
    Close,
    /// Dropped without a clean end: an injected reset (sent as an RST), or an
    /// answer broken mid-body.
    Abort,
}

impl FastConn {
    /// The connection's facts for the pipeline, made at its first full exchange.
    fn info(&mut self) -> Arc<ConnInfo> {
        let (peer, last_done, served) = (self.peer, self.last_done, self.served);
        self.info
            .get_or_insert_with(|| ConnInfo::resumed(peer, last_done, served > 0))
            .clone()
    }

    /// Serve one request through the pipeline on this connection.
    pub(super) async fn full_exchange(
        &mut self,
        req: FullReq,
        stop: &crate::control::shutdown::StopRx,
    ) -> After {
        let FullReq {
            parts,
            head_len,
            body_len,
            client_close,
        } = req;
        self.buf.advance(head_len);
        let body = ReqBody::Buffered((body_len > 0).then(|| {
            let b = Bytes::copy_from_slice(&self.buf[..body_len]);
            self.buf.advance(body_len);
            b
        }));
        let head_method = parts.method == Method::HEAD;
        let info = self.info();
        info.first_request.store(true, Ordering::Relaxed);
        let call = open(
            &self.ctx.listener,
            Some(&self.ctx),
            &info,
            Request::from_parts(parts, body),
        );
        let answer = tower::Service::call(&mut pipeline(Forward), call);
        let Some(answer) = self.await_answer(&info, answer).await else {
            return After::Close;
        };
        let resp = match answer {
            Ok(r) => r,
            Err(_) => return self.abort(&info),
        };

        // The head, then the body frame by frame.
        let (head, mut body) = resp.into_parts();
        let mut keep =
            !client_close && *stop.borrow() == crate::control::shutdown::Shutdown::Running;
        let size = if body.is_end_stream() {
            None
        } else {
            Some(body.size_hint().exact())
        };
        if self.out.capacity() == 0 {
            self.out = crate::reuse::head_buf();
        }
        self.out.clear();
        let framer = encode_head(&mut self.out, &head, size, head_method, &mut keep);
        crate::reuse::give_header_map(head.headers);
        let mut sent = 0u64;
        let mut ended = matches!(framer, Framer::Length(0));
        while !ended {
            let step =
                std::future::poll_fn(|cx| gather(&mut body, &mut self.out, &framer, &mut sent, cx))
                    .await;
            match step {
                Step::More => {}
                Step::End(trailers) => {
                    if let Framer::Chunked(allowed) = &framer {
                        let allowed = allowed.as_deref().unwrap_or_default();
                        write_last_chunk(&mut self.out, allowed, trailers.as_ref());
                    }
                    ended = true;
                }
                Step::Failed => {
                    // What came goes out; the close says the rest never will.
                    let _ = self.io.write_all(&self.out).await;
                    drop(body);
                    return self.abort(&info);
                }
            }
            if self.io.write_all(&self.out).await.is_err() {
                // The client left: the body's record says what it got.
                return After::Close;
            }
            self.out.clear();
        }
        if !self.out.is_empty() && self.io.write_all(&self.out).await.is_err() {
            return After::Close;
        }
        // Finished (or, for an answer without a body, ended unpolled).
        drop(body);
        if let Framer::Length(n) = framer {
            if n > 0 && sent != n {
                // Not the length the head promised: the connection cannot go on.
                return After::Abort;
            }
        }
        if info.rst.load(Ordering::Acquire) {
            return self.abort(&info);
        }
        if keep {
            After::Keep
        } else {
            After::Close
        }
    }

    /// Wait for the pipeline's answer, ending the exchange (`None`, the call
    /// dropped: recorded `client_closed`) when the client leaves meanwhile: at its
    /// FIN under `half_close: abort`; under `answer`, at a FIN while a fault holds
    /// the request ([`HoldWatch`]), as on hyper's connections.
    async fn await_answer<F: Future>(&mut self, info: &ConnInfo, answer: F) -> Option<F::Output> {
        let mut answer = std::pin::pin!(answer);
        let abort_on_fin = self.abort_on_fin;
        let io = &self.io;
        let buf = &mut self.buf;
        let mut holds = std::pin::pin!(HoldWatch::on(info, Some(io)));
        let mut watch_client = abort_on_fin && buf.len() < MAX_HEAD;
        std::future::poll_fn(|cx| {
            if let Poll::Ready(r) = answer.as_mut().poll(cx) {
                return Poll::Ready(Some(r));
            }
            if !abort_on_fin {
                return holds.as_mut().poll(cx).map(|()| None);
            }
            while watch_client {
                match crate::conn::poll_fill(io, buf, READ_ROOM, cx) {
                    Poll::Pending => break,
                    Poll::Ready(Ok(0) | Err(_)) => return Poll::Ready(None),
                    // A pipelined request, kept for after this one.
                    Poll::Ready(Ok(_)) => watch_client = buf.len() < MAX_HEAD,
                }
            }
            Poll::Pending
        })
        .await
    }

    /// End the connection without a clean end: with an RST when a fault asked
    /// for one (as `ConnIo` does on hyper's connections).
    fn abort(&mut self, info: &ConnInfo) -> After {
        if info.rst.load(Ordering::Acquire) {
            let _ = self.io.set_zero_linger();
        }
        After::Abort
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn head(status: u16, headers: &[(&str, &str)]) -> http::response::Parts {
        let mut r = http::Response::new(());
        *r.status_mut() = StatusCode::from_u16(status).unwrap();
        for (k, v) in headers {
            r.headers_mut().append(
                HeaderName::from_bytes(k.as_bytes()).unwrap(),
                v.parse().unwrap(),
            );
        }
        r.into_parts().0
    }

    fn encode(
        h: &http::response::Parts,
        body: Option<Option<u64>>,
        head_method: bool,
        keep: bool,
    ) -> (String, Framer, bool) {
        let mut out = Vec::new();
        let mut keep = keep;
        let f = encode_head(&mut out, h, body, head_method, &mut keep);
        (String::from_utf8(out).unwrap(), f, keep)
    }

    #[test]
    fn an_answer_is_framed_as_hyper_frames_it() {
        let h = head(200, &[("content-type", "application/json"), ("date", "x")]);
        let (s, f, keep) = encode(&h, Some(Some(12)), false, true);
        assert_eq!(
            s,
            "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ndate: x\r\ncontent-length: 12\r\n\r\n"
        );
        assert_eq!(f, Framer::Length(12));
        assert!(keep);

        // Unknown length: chunked, with the announced trailers allowed.
        let h = head(200, &[("trailer", "grpc-status, x-t"), ("date", "x")]);
        let (s, f, _) = encode(&h, Some(None), false, true);
        assert!(s.ends_with(
            "trailer: grpc-status, x-t\r\ndate: x\r\ntransfer-encoding: chunked\r\n\r\n"
        ));
        assert_eq!(
            f,
            Framer::Chunked(Some(vec![
                HeaderName::from_static("grpc-status"),
                HeaderName::from_static("x-t")
            ]))
        );

        // An empty body says so; HEAD keeps the GET's length; 204 has neither.
        let h = head(503, &[("date", "x")]);
        let (s, f, _) = encode(&h, None, false, true);
        assert!(s.starts_with("HTTP/1.1 503 Service Unavailable\r\n"));
        assert!(s.contains("content-length: 0\r\n"));
        assert_eq!(f, Framer::Length(0));
        let h = head(200, &[("content-length", "42"), ("date", "x")]);
        let (s, f, _) = encode(&h, None, true, true);
        assert!(s.contains("content-length: 42\r\n"));
        assert_eq!(f, Framer::Length(0));
        let h = head(204, &[("date", "x")]);
        let (s, _, _) = encode(&h, Some(None), false, true);
        assert!(
            !s.contains("content-length") && !s.contains("transfer-encoding"),
            "{s}"
        );
    }

    #[test]
    fn a_closing_connection_says_so_and_a_date_is_added() {
        let h = head(200, &[]);
        let (s, _, keep) = encode(&h, Some(Some(2)), false, false);
        assert!(s.contains("connection: close\r\n"), "{s}");
        assert!(!keep);
        assert!(s.contains("\r\ndate: "), "{s}");
        // The answer's own close ends the connection too, said once.
        let h = head(200, &[("connection", "close"), ("date", "x")]);
        let (s, _, keep) = encode(&h, Some(Some(2)), false, true);
        assert_eq!(s.matches("connection").count(), 1, "{s}");
        assert!(!keep);
    }

    #[test]
    fn a_non_canonical_reason_goes_out_as_the_upstream_wrote_it() {
        let mut h = head(200, &[("date", "x")]);
        h.extensions
            .insert(hyper::ext::ReasonPhrase::from_static(b"Fine"));
        let (s, _, _) = encode(&h, None, false, true);
        assert!(s.starts_with("HTTP/1.1 200 Fine\r\n"), "{s}");
    }

    #[test]
    fn trailers_go_out_only_when_announced() {
        let mut t = HeaderMap::new();
        t.insert("x-t", "1".parse().unwrap());
        t.insert("x-other", "2".parse().unwrap());
        t.insert("content-type", "text/plain".parse().unwrap());
        let mut out = Vec::new();
        let allowed = [
            HeaderName::from_static("x-t"),
            HeaderName::from_static("content-type"),
        ];
        write_last_chunk(&mut out, &allowed, Some(&t));
        assert_eq!(out, b"0\r\nx-t: 1\r\n\r\n");
        out.clear();
        write_last_chunk(&mut out, &[], Some(&t));
        assert_eq!(out, b"0\r\n\r\n");
        out.clear();
        write_chunk(&mut out, &[b'x'; 26]);
        assert!(out.starts_with(b"1A\r\nxx"));
    }

    #[test]
    fn a_request_head_is_typed_from_one_copy() {
        let raw = b"POST /v1/chat?x=1 HTTP/1.1\r\nHost: a\r\nX-Custom: v\r\n\r\n";
        let mut hdrs = [httparse::EMPTY_HEADER; 8];
        let mut req = httparse::Request::new(&mut hdrs);
        let n = match req.parse(raw).unwrap() {
            httparse::Status::Complete(n) => n,
            httparse::Status::Partial => panic!("partial"),
        };
        let p = request_parts(raw, n, Method::POST, req.path.unwrap(), req.headers).unwrap();
        assert_eq!(p.uri.path(), "/v1/chat");
        assert_eq!(p.uri.query(), Some("x=1"));
        assert_eq!(p.headers["x-custom"], "v");
        assert_eq!(p.headers["host"], "a");
    }
}
