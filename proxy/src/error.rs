//! The one place where failures become HTTP responses.
//!
//! Errors that brownout itself produces (the upstream is down, too slow, or sent
//! garbage) are answered like a real gateway would (502/504) and marked with
//! `x-brownout-error` and a JSON body, so nobody mistakes them for the upstream's own
//! errors or for injected faults.

use bytes::Bytes;
use http::{HeaderValue, Response, StatusCode};

use crate::record::Outcome;

/// An error of any kind, boxed: the error of every body brownout passes on
/// (request and response alike), whichever stage or leg it came from.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Why forwarding failed.
#[derive(Debug, thiserror::Error)]
pub enum ProxyError {
    #[error("upstream {upstream} unreachable: {source}")]
    Unreachable {
        upstream: String,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    #[error("upstream {upstream} sent no response headers within {timeout:?}")]
    Timeout {
        upstream: String,
        timeout: std::time::Duration,
    },
    #[error("cannot build the upstream request: {0}")]
    BadRequest(String),
}

impl ProxyError {
    /// `upstream` could not be reached, or failed before its answer began. Both
    /// data paths build their gateway failures here.
    pub(crate) fn unreachable(
        upstream: &str,
        source: impl Into<Box<dyn std::error::Error + Send + Sync>>,
    ) -> Self {
        ProxyError::Unreachable {
            upstream: upstream.to_string(),
            source: source.into(),
        }
    }

    /// `upstream` sent no response head within `timeout` (`upstream_timeout`).
    pub(crate) fn timeout(upstream: &str, timeout: std::time::Duration) -> Self {
        ProxyError::Timeout {
            upstream: upstream.to_string(),
            timeout,
        }
    }

    /// The `x-brownout-error` value.
    pub fn code(&self) -> &'static str {
        match self {
            ProxyError::Unreachable { .. } => "upstream_unreachable",
            ProxyError::Timeout { .. } => "upstream_timeout",
            ProxyError::BadRequest(_) => "bad_request",
        }
    }

    pub fn status(&self) -> StatusCode {
        match self {
            ProxyError::Unreachable { .. } => StatusCode::BAD_GATEWAY,
            ProxyError::Timeout { .. } => StatusCode::GATEWAY_TIMEOUT,
            ProxyError::BadRequest(_) => StatusCode::BAD_REQUEST,
        }
    }

    /// The outcome recorded for this failure.
    pub fn outcome(&self) -> Outcome {
        match self {
            ProxyError::Unreachable { .. } => Outcome::UpstreamError,
            ProxyError::Timeout { .. } => Outcome::Timeout,
            ProxyError::BadRequest(_) => Outcome::HttpError,
        }
    }

    /// The response the client gets.
    pub fn to_response(&self) -> Response<Bytes> {
        let body = serde_json::json!({
            "error": {"type": self.code(), "message": self.to_string(), "source": "brownout"}
        });
        let mut resp = Response::new(Bytes::from(body.to_string()));
        *resp.status_mut() = self.status();
        let h = resp.headers_mut();
        h.insert(
            http::header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        h.insert("x-brownout-error", HeaderValue::from_static(self.code()));
        resp
    }
}

/// Full error text with its causes, for logs and records.
pub fn chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        let t = c.to_string();
        if !s.contains(&t) {
            s.push_str(": ");
            s.push_str(&t);
        }
        cur = c.source();
    }
    s
}
