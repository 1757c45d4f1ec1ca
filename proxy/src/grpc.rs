//! gRPC calls as brownout sees them: recognised by content type, named by path,
//! and answered in gRPC's own terms when brownout answers itself.
//!
//! A gRPC client reads a call's outcome from `grpc-status`, never from the HTTP
//! status (which is 200 for every call a gRPC server answers), so an error
//! brownout produces for a gRPC call is a *trailers-only* answer: one HEADERS
//! frame with END_STREAM carrying `:status 200`, `content-type: application/grpc`,
//! `grpc-status` and `grpc-message` (gRPC over HTTP/2, "Responses").

use bytes::Bytes;
use http::{HeaderMap, HeaderValue};

use crate::record::GrpcCall;

/// `grpc-status` codes brownout itself answers with.
pub mod code {
    pub const OK: u32 = 0;
    pub const CANCELLED: u32 = 1;
    pub const DEADLINE_EXCEEDED: u32 = 4;
    pub const RESOURCE_EXHAUSTED: u32 = 8;
    pub const INTERNAL: u32 = 13;
    pub const UNAVAILABLE: u32 = 14;
}

/// Whether a request is a gRPC call: `application/grpc`, alone or with a
/// `+format` suffix (`application/grpc+proto`), as the gRPC spec defines it.
pub fn is_grpc(headers: &HeaderMap) -> bool {
    headers
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|ct| {
            let media = ct.split(';').next().unwrap_or("").trim();
            media
                .get(..16)
                .is_some_and(|p| p.eq_ignore_ascii_case("application/grpc"))
                && matches!(media.as_bytes().get(16), None | Some(b'+'))
        })
}

/// The call a path names (`/package.Service/Method`), for the record.
pub fn call_of(path: &str) -> GrpcCall {
    let trimmed = path.strip_prefix('/').unwrap_or(path);
    let (service, method) = trimmed.rsplit_once('/').unwrap_or(("", trimmed));
    GrpcCall {
        service: service.to_string(),
        method: method.to_string(),
        status: None,
        in_message: None,
    }
}

/// The `grpc-status` in a header block (trailers, or a trailers-only answer's
/// headers).
pub fn status_of(headers: &HeaderMap) -> Option<u32> {
    headers
        .get("grpc-status")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse().ok())
}

/// The header block of a trailers-only answer.
pub fn trailers_only(code: u32, message: &str) -> HeaderMap {
    let mut h = HeaderMap::new();
    h.insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static("application/grpc"),
    );
    h.insert("grpc-status", HeaderValue::from(code));
    if !message.is_empty() {
        if let Ok(v) = HeaderValue::from_str(&encode_message(message)) {
            h.insert("grpc-message", v);
        }
    }
    h
}

/// An empty body: with it hyper sends the answer's headers with END_STREAM.
pub fn no_body() -> Bytes {
    Bytes::new()
}

/// `grpc-message` is percent-encoded UTF-8: bytes outside printable ASCII, and
/// `%` itself, become `%XX` (gRPC over HTTP/2, "Responses").
pub fn encode_message(message: &str) -> String {
    let mut out = String::with_capacity(message.len());
    for b in message.bytes() {
        if (0x20..=0x7e).contains(&b) && b != b'%' {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// A Milvus-style in-message error: a response message for `path` whose
/// `status` field carries the error, then `grpc-status: 0`, as Milvus's
/// interceptors answer a rate-limited call.
pub fn in_message_error(
    path: &str,
    code: i32,
    legacy: i32,
    reason: &str,
    retriable: bool,
) -> crate::inject::GrpcAnswer {
    let payload = milvus_failed_response(path, code, legacy, reason, retriable);
    let mut framed = Vec::with_capacity(payload.len() + 5);
    framed.push(0);
    framed.extend_from_slice(&(payload.len() as u32).to_be_bytes());
    framed.extend_from_slice(&payload);
    let mut headers = HeaderMap::new();
    headers.insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static("application/grpc"),
    );
    let mut trailers = HeaderMap::new();
    trailers.insert("grpc-status", HeaderValue::from(code::OK));
    crate::inject::GrpcAnswer {
        code: code::OK,
        headers,
        body: Bytes::from(framed),
        trailers: Some(trailers),
        in_message: Some(format!("code {code}: {reason}")),
    }
}

/// PROVISIONAL: the serialized failed response (to be replaced by the faults
/// crate's Milvus builder).
fn milvus_failed_response(
    path: &str,
    code: i32,
    legacy: i32,
    reason: &str,
    retriable: bool,
) -> Vec<u8> {
    fn varint(out: &mut Vec<u8>, mut v: u64) {
        while v >= 0x80 {
            out.push((v as u8) | 0x80);
            v >>= 7;
        }
        out.push(v as u8);
    }
    let mut status = Vec::new();
    status.push(0x08);
    varint(&mut status, legacy as i64 as u64);
    status.push(0x12);
    varint(&mut status, reason.len() as u64);
    status.extend_from_slice(reason.as_bytes());
    status.push(0x18);
    varint(&mut status, code as i64 as u64);
    if retriable {
        status.extend_from_slice(&[0x20, 0x01]);
    }
    let bare = path.rsplit('/').next().is_some_and(|m| {
        m.starts_with("Create") || m.starts_with("Drop") || m.starts_with("Load") || m.starts_with("Release")
    });
    if bare {
        return status;
    }
    let mut out = vec![0x0a];
    varint(&mut out, status.len() as u64);
    out.extend_from_slice(&status);
    out
}

/// A `grpc-timeout` value (`<at most 8 digits><H|M|S|m|u|n>`) as a duration.
pub fn parse_timeout(v: &[u8]) -> Option<std::time::Duration> {
    let (unit, digits) = v.split_last()?;
    if digits.is_empty() || digits.len() > 8 || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let n: u64 = std::str::from_utf8(digits).ok()?.parse().ok()?;
    use std::time::Duration as D;
    Some(match unit {
        b'H' => D::from_secs(n * 3600),
        b'M' => D::from_secs(n * 60),
        b'S' => D::from_secs(n),
        b'm' => D::from_millis(n),
        b'u' => D::from_micros(n),
        b'n' => D::from_nanos(n),
        _ => return None,
    })
}

/// A duration as a `grpc-timeout` value: the finest unit whose count fits in 8
/// digits, rounded up so the upstream never gets more time than is left.
pub fn format_timeout(d: std::time::Duration) -> String {
    const MAX: u128 = 99_999_999;
    let nanos = d.as_nanos();
    for (unit, per) in [
        ('n', 1u128),
        ('u', 1_000),
        ('m', 1_000_000),
        ('S', 1_000_000_000),
        ('M', 60_000_000_000),
        ('H', 3_600_000_000_000),
    ] {
        let n = nanos.div_ceil(per);
        if n <= MAX {
            return format!("{n}{unit}");
        }
    }
    format!("{MAX}H")
}
