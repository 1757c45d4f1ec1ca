//! Triton's gRPC streaming inference (`inference.GRPCInferenceService/
//! ModelStreamInfer`, KServe v2 plus Triton's extension).
//!
//! On a stream Triton does not end the RPC when one request fails: it sends a
//! `ModelStreamInferResponse` whose `error_message` (field 1) says why, with an
//! `infer_response` holding only the failed request's `id`, and the stream goes on
//! with grpc-status 0 at its end (`ModelStreamInferHandler` in Triton's
//! `src/grpc/stream_infer_handler.cc`). So such a message is an error the record
//! must count, and `triton.queue_full` on a stream is one of them.

use bytes::Bytes;

use super::frame;
use super::wire::{self, WireType};

/// The streaming inference method's path.
pub const STREAM_INFER: &str = "/inference.GRPCInferenceService/ModelStreamInfer";

/// What Triton's dynamic batcher says when its queue is full.
pub const QUEUE_FULL_MESSAGE: &str = "Exceeds maximum queue size";

/// The non-empty `error_message` of a serialized `ModelStreamInferResponse`, or
/// `None` when it is empty or absent (a successful response) or the bytes are
/// not such a message.
pub fn stream_error(msg: &[u8]) -> Option<String> {
    let mut error = None;
    for f in wire::fields(msg) {
        let f = f.ok()?;
        if f.number == 1 {
            if f.wire_type != WireType::Len {
                return None;
            }
            error = Some(String::from_utf8_lossy(f.bytes(msg)).into_owned());
        }
    }
    error.filter(|e| !e.is_empty())
}

/// A `ModelStreamInferResponse` reporting `error` for the request `request_id`,
/// as Triton writes it: the message, then an `infer_response` with only the id
/// (present even when the id is empty). Unframed.
pub fn stream_error_response(error: &str, request_id: &str) -> Vec<u8> {
    let mut infer = Vec::new();
    if !request_id.is_empty() {
        wire::put_len_field(&mut infer, 3, request_id.as_bytes());
    }
    let mut out = Vec::new();
    if !error.is_empty() {
        wire::put_len_field(&mut out, 1, error.as_bytes());
    }
    wire::put_len_field(&mut out, 2, &infer);
    out
}

/// [`stream_error_response`] as one gRPC message (5-byte prefix).
pub fn stream_error_frame(error: &str, request_id: &str) -> Bytes {
    frame::encode(&stream_error_response(error, request_id), false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_back_what_it_writes() {
        let m = stream_error_response(QUEUE_FULL_MESSAGE, "req-7");
        assert_eq!(stream_error(&m).as_deref(), Some(QUEUE_FULL_MESSAGE));
        // A success: no error_message, an infer_response.
        let mut ok = Vec::new();
        wire::put_len_field(&mut ok, 2, b"\x0a\x03abc");
        assert_eq!(stream_error(&ok), None);
        assert_eq!(stream_error(&[]), None);
        assert_eq!(stream_error(&[0x0a, 0x09]), None);
        assert_eq!(stream_error(&[0x08, 0x01]), None);
    }
}
