//! `reset`: close the connection abruptly (TCP RST on HTTP/1.1, RST_STREAM, a
//! connection drop or GOAWAY on HTTP/2), before the response or after
//! `after_bytes` of its body.

use crate::profile::{ResetCode, ResetScope};

use super::Side;

/// Before any response without `after_bytes`; on the body's bytes with it.
pub fn side(after_bytes: Option<u64>) -> Side {
    match after_bytes {
        None => Side::Request,
        Some(_) => Side::Bytes,
    }
}

/// A reset before the response ends the exchange; one after N bytes lets the
/// faults after it apply to the response first.
pub fn terminal(after_bytes: Option<u64>) -> bool {
    after_bytes.is_none()
}

pub(crate) fn explain(
    after_bytes: Option<u64>,
    scope: Option<ResetScope>,
    code: Option<ResetCode>,
) -> String {
    let mut s = match after_bytes {
        None => "reset the connection before any response".to_string(),
        Some(n) => format!(
            "reset the connection after {} of the response body",
            crate::explain::bytes(n)
        ),
    };
    s.push_str(&crate::explain::reset_h2_words(scope, code));
    s
}
