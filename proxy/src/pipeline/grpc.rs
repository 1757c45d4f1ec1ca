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

/// Milvus's in-message error for `preset` on the call at `path`: the method's own
/// response type whose `status` carries the error, then `grpc-status: 0`, as
/// Milvus's interceptors answer a rate-limited call (`text` replaces the reason).
/// A method whose response has no status gets UNAVAILABLE, trailers-only; `None`
/// for a preset with no Milvus status.
pub fn in_message_error(
    path: &str,
    preset: &str,
    text: Option<&str>,
) -> Option<crate::pipeline::inject::GrpcAnswer> {
    use brownout_faults::grpc::milvus;
    let mut status = milvus::preset_status(preset)?;
    if let Some(t) = text {
        status.reason = t.to_string();
        status.detail = t.to_string();
    }
    let Some(frame) = milvus::failed_response_frame(path, &status) else {
        return Some(crate::pipeline::inject::GrpcAnswer::status(
            code::UNAVAILABLE,
            &status.reason,
        ));
    };
    let mut headers = HeaderMap::new();
    headers.insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static("application/grpc"),
    );
    let mut trailers = HeaderMap::new();
    trailers.insert("grpc-status", HeaderValue::from(code::OK));
    Some(crate::pipeline::inject::GrpcAnswer {
        code: code::OK,
        headers,
        body: frame,
        trailers: Some(trailers),
        in_message: Some(format!("code {}: {}", status.code, status.reason)),
    })
}

/// What a gRPC response's messages say, read on the side as they pass: errors a
/// response message carries in its own status field (Milvus `status`, Triton's
/// `error_message`), and a body that breaks gRPC's framing. Nothing is changed or
/// held back: complete messages are zero-copy slices of the frames.
#[derive(Debug)]
pub struct GrpcTap {
    splitter: brownout_faults::grpc::MessageSplitter,
    reader: InMessage,
    /// The first in-message error seen.
    in_message: Option<String>,
    broken: Option<String>,
}

/// Whose in-message errors a call's responses carry.
#[derive(Debug)]
enum InMessage {
    /// A MilvusService method, by path.
    Milvus(String),
    /// Triton's streaming inference.
    TritonStream,
    /// Any other service: framing only.
    None,
}

impl GrpcTap {
    /// A tap for the responses of the call at `path`.
    pub fn new(path: &str) -> Self {
        let reader = if brownout_faults::grpc::milvus::method_name(path).is_some()
            && path.starts_with("/milvus.")
        {
            InMessage::Milvus(path.to_string())
        } else if path == brownout_faults::grpc::triton::STREAM_INFER {
            InMessage::TritonStream
        } else {
            InMessage::None
        };
        GrpcTap {
            splitter: brownout_faults::grpc::MessageSplitter::default(),
            reader,
            in_message: None,
            broken: None,
        }
    }

    /// One DATA frame on its way to the client.
    pub fn tap(&mut self, data: &Bytes) {
        use brownout_faults::grpc::Piece;
        for piece in self.splitter.push(data) {
            match piece {
                Ok(Piece::Message(m)) => {
                    if self.in_message.is_some() || m.compressed() {
                        continue;
                    }
                    let payload = m.payload();
                    self.in_message = match &self.reader {
                        InMessage::Milvus(path) => {
                            brownout_faults::grpc::milvus::in_message_status_for(path, &payload)
                                .filter(|s| !s.is_success())
                                .map(|s| format!("code {}: {}", s.code, s.reason))
                        }
                        InMessage::TritonStream => {
                            brownout_faults::grpc::triton::stream_error(&payload)
                        }
                        InMessage::None => None,
                    };
                }
                Ok(Piece::Oversized { .. }) => {}
                Err(e) => self.broken = Some(e.to_string()),
            }
        }
    }

    /// Put what the messages said into the record; returns why the body broke
    /// gRPC's framing, if it did (a body that ends inside a message: the client
    /// sees an error, whatever the trailers say).
    pub fn record(&mut self, ex: &mut crate::exchange::Exchange) -> Option<String> {
        if let Some(m) = self.in_message.take() {
            ex.grpc_in_message(m);
        }
        if self.broken.is_none() {
            if let Err(e) = self.splitter.finish() {
                self.broken = Some(e.to_string());
            }
        }
        self.broken
            .take()
            .map(|why| format!("malformed gRPC response: {why}"))
    }
}
