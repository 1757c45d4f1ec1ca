//! `reset`: close the connection abruptly (TCP RST on HTTP/1.1, RST_STREAM, a
//! connection drop or GOAWAY on HTTP/2), before the response or after
//! `after_bytes` of its body.

use schemars::JsonSchema;
use serde::Deserialize;

use crate::check::Cx;
use crate::yaml::PathSeg;

use super::{Fault, Side};

/// Close the connection abruptly: TCP RST on HTTP/1.1, RST_STREAM on HTTP/2.
#[derive(Debug, Clone, PartialEq, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Reset {
    /// Reset after this many response body bytes instead of before the response.
    #[serde(default)]
    pub after_bytes: Option<u64>,
    /// HTTP/2: reset the stream (default), drop the whole connection, or send
    /// GOAWAY first. HTTP/1.1 always drops the connection with an RST.
    #[serde(default)]
    pub scope: Option<ResetScope>,
    /// HTTP/2 stream resets: the RST_STREAM code, which decides the gRPC status
    /// the client sees (`cancel` → CANCELLED, the default).
    #[serde(default)]
    pub code: Option<ResetCode>,
}

/// What an HTTP/2 `reset` breaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum ResetScope {
    /// RST_STREAM on this stream only; other calls on the connection go on.
    Stream,
    /// The TCP connection, with an RST: every call on it fails UNAVAILABLE.
    Connection,
    /// GOAWAY, then the connection closes: the client reconnects.
    Goaway,
}

/// The RST_STREAM error code of an HTTP/2 stream reset, named as in RFC 9113 §7.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum ResetCode {
    /// CANCEL: the client sees CANCELLED.
    Cancel,
    /// INTERNAL_ERROR: the client sees INTERNAL.
    InternalError,
    /// REFUSED_STREAM: the client sees UNAVAILABLE (the server says it never
    /// processed the stream, so it is safe to send again).
    RefusedStream,
    /// ENHANCE_YOUR_CALM: the client sees RESOURCE_EXHAUSTED.
    EnhanceYourCalm,
}

impl Fault for Reset {
    fn name(&self) -> &'static str {
        "reset"
    }

    /// Before any response without `after_bytes`; on the body's bytes with it.
    fn side(&self) -> Side {
        match self.after_bytes {
            None => Side::Request,
            Some(_) => Side::Bytes,
        }
    }

    /// A reset before the response ends the exchange; one after N bytes lets the
    /// faults after it apply to the response first.
    fn is_terminal(&self) -> bool {
        self.after_bytes.is_none()
    }

    /// Every value serde accepts is a valid one.
    fn validate(&self, _: &mut Cx<'_>, _: &[PathSeg<'_>]) {}

    fn explain(&self) -> String {
        let mut s = match self.after_bytes {
            None => "reset the connection before any response".to_string(),
            Some(n) => format!(
                "reset the connection after {} of the response body",
                super::words::bytes(n)
            ),
        };
        s.push_str(&reset_h2_words(self.scope, self.code));
        s
    }
}

/// What an HTTP/2 client sees of a `reset`.
fn reset_h2_words(scope: Option<ResetScope>, code: Option<ResetCode>) -> String {
    use ResetCode as C;
    use ResetScope as S;
    match scope.unwrap_or(S::Stream) {
        S::Connection => {
            " (HTTP/2: the whole connection drops; gRPC calls on it get UNAVAILABLE)".to_string()
        }
        S::Goaway => {
            " (HTTP/2: GOAWAY, then the connection closes; gRPC gets UNAVAILABLE)".to_string()
        }
        S::Stream => {
            let (frame, status) = match code.unwrap_or(C::Cancel) {
                C::Cancel => ("CANCEL", "CANCELLED"),
                C::InternalError => ("INTERNAL_ERROR", "INTERNAL"),
                C::RefusedStream => ("REFUSED_STREAM", "UNAVAILABLE"),
                C::EnhanceYourCalm => ("ENHANCE_YOUR_CALM", "RESOURCE_EXHAUSTED"),
            };
            format!(" (HTTP/2: RST_STREAM {frame} on this stream only; gRPC gets {status})")
        }
    }
}
