//! A gRPC answer read on the side as it passes to the client: its status, from
//! the trailers or a trailers-only answer's headers ([`status_of`]), and what its
//! messages say ([`GrpcTap`]). The answers brownout makes itself are the
//! pipeline's ([`crate::pipeline::grpc`]).

use bytes::Bytes;
use http::HeaderMap;

use crate::exchange::Exchange;

/// The `grpc-status` in a header block (trailers, or a trailers-only answer's
/// headers).
pub fn status_of(headers: &HeaderMap) -> Option<u32> {
    headers
        .get("grpc-status")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse().ok())
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
    pub fn record(&mut self, ex: &mut Exchange) -> Option<String> {
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
