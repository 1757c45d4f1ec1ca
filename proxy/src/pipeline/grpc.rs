//! gRPC calls as brownout sees them: recognised by content type, named by path,
//! and answered in gRPC's own terms when brownout answers itself.
//!
//! A gRPC client reads a call's outcome from `grpc-status`, never from the HTTP
//! status (which is 200 for every call a gRPC server answers), so an error
//! brownout produces for a gRPC call is a *trailers-only* answer: one HEADERS
//! frame with END_STREAM carrying `:status 200`, `content-type: application/grpc`,
//! `grpc-status` and `grpc-message` (gRPC over HTTP/2, "Responses").
//!
//! What an upstream's gRPC answer says (its status, errors inside its messages)
//! is read as it passes, by the response body ([`crate::body::grpc`]).

use bytes::Bytes;
use http::{HeaderMap, HeaderValue};

use crate::record::GrpcCall;

/// `grpc-status` codes brownout itself answers with.
pub mod code {
    pub const OK: u32 = 0;
    pub const DEADLINE_EXCEEDED: u32 = 4;
    pub const RESOURCE_EXHAUSTED: u32 = 8;
    pub const INTERNAL: u32 = 13;
    pub const UNAVAILABLE: u32 = 14;
}

/// Whether a request is a gRPC call (`application/grpc`, alone or with a
/// `+format` suffix).
pub fn is_grpc(headers: &HeaderMap) -> bool {
    headers
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(brownout_faults::grpc::is_grpc_content_type)
}

/// The call a path names (`/package.Service/Method`), for the record.
pub fn call_of(path: &str) -> GrpcCall {
    let (service, method) = brownout_faults::grpc::split_path(path).unwrap_or(("", path));
    GrpcCall {
        service: service.to_string(),
        method: method.to_string(),
        status: None,
        in_message: None,
    }
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
        if let Ok(v) =
            HeaderValue::from_str(&brownout_faults::grpc::status::encode_message(message))
        {
            h.insert("grpc-message", v);
        }
    }
    h
}

/// An empty body: with it hyper sends the answer's headers with END_STREAM.
pub fn no_body() -> Bytes {
    Bytes::new()
}

/// An answer to a gRPC call that brownout makes itself.
#[derive(Debug)]
pub struct GrpcAnswer {
    /// The call's status, as recorded (0 for an in-message error).
    pub code: u32,
    pub headers: HeaderMap,
    /// One length-prefixed response message (in-message errors), else empty.
    pub body: Bytes,
    pub trailers: Option<HeaderMap>,
    /// The error a response message carries under `grpc-status: 0`.
    pub in_message: Option<String>,
}

impl GrpcAnswer {
    /// A trailers-only answer.
    pub fn status(code: u32, message: &str) -> Self {
        GrpcAnswer {
            code,
            headers: trailers_only(code, message),
            body: Bytes::new(),
            trailers: None,
            in_message: None,
        }
    }
}

/// Milvus's in-message error for `preset` on the call at `path`: the method's own
/// response type whose `status` carries the error, then `grpc-status: 0`, as
/// Milvus's interceptors answer a rate-limited call (`text` replaces the reason).
/// A method whose response has no status gets UNAVAILABLE, trailers-only; `None`
/// for a preset with no Milvus status.
pub fn in_message_error(path: &str, preset: &str, text: Option<&str>) -> Option<GrpcAnswer> {
    use brownout_faults::grpc::milvus;
    let mut status = milvus::preset_status(preset)?;
    if let Some(t) = text {
        status.reason = t.to_string();
        status.detail = t.to_string();
    }
    let Some(frame) = milvus::failed_response_frame(path, &status) else {
        return Some(GrpcAnswer::status(code::UNAVAILABLE, &status.reason));
    };
    let mut headers = HeaderMap::new();
    headers.insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static("application/grpc"),
    );
    let mut trailers = HeaderMap::new();
    trailers.insert("grpc-status", HeaderValue::from(code::OK));
    Some(GrpcAnswer {
        code: code::OK,
        headers,
        body: frame,
        trailers: Some(trailers),
        in_message: Some(format!("code {}: {}", status.code, status.reason)),
    })
}
