//! Sending one request and measuring it.
//!
//! The client is hyper-util's pooled HTTP/1.1 client with keep-alive, like the
//! httpx pools behind the official SDKs, so a fault that closes connections shows up
//! as reconnects here too. Retries are the engine's (`engine::send`).

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::header::{HeaderValue, ACCEPT, CONTENT_TYPE, USER_AGENT};
use http::{Method, Request, Uri};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use serde::Deserialize;
use tokio::time::{timeout_at, Instant};

use crate::meter::StreamMeter;
use crate::pool::Pool;
use crate::sample::{Outcome, Sample, TokensSource};
use crate::workload::RequestShape;

const USER_AGENT_VALUE: &str = concat!("brownout-drill/", env!("CARGO_PKG_VERSION"));

/// Non-streaming bodies larger than this are not kept (the usage is then unknown);
/// a drill never needs to hold more.
const MAX_JSON_BODY: usize = 16 << 20;

/// A pooled HTTP/1.1 client bound to one request URI.
#[derive(Debug, Clone)]
pub struct DrillClient {
    pool: Arc<Pool>,
    /// The request target (path and query), sent in origin form.
    target: Uri,
    host: HeaderValue,
    stream: bool,
    timeout: Duration,
    shape: RequestShape,
}

/// Connections a drill client may open at once, as the openai SDK's default
/// (`httpx.Limits(max_connections=1000)`).
pub const DEFAULT_MAX_CONNECTIONS: usize = 1000;

/// Where and when a request goes: its sequence number, phase and scheduled time.
#[derive(Debug, Clone, Copy)]
pub struct Slot {
    /// Sequence number, sent as `x-brownout-seq`.
    pub seq: u64,
    /// The phase in which it was scheduled.
    pub phase: usize,
    /// The scheduled send time; every latency is measured from here.
    pub scheduled: Instant,
}

/// A non-streaming answer of any supported shape; which fields must be present
/// depends on the shape.
#[derive(Deserialize)]
struct Completion {
    choices: Option<Vec<ChoiceOut>>,
    content: Option<Vec<Block>>,
    data: Option<Vec<EmbeddingOut>>,
    usage: Option<Usage>,
    /// Qdrant search hits.
    result: Option<Vec<Hit>>,
    /// Chroma query ids, one list per query embedding.
    ids: Option<Vec<Vec<serde_json::Value>>>,
}

#[derive(Deserialize)]
struct Hit {
    id: serde_json::Value,
}

#[derive(Deserialize)]
struct ChoiceOut {
    message: Option<MessageOut>,
    text: Option<String>,
}

#[derive(Deserialize)]
struct MessageOut {
    content: Option<String>,
}

#[derive(Deserialize)]
struct Block {
    text: Option<String>,
}

#[derive(Deserialize)]
struct EmbeddingOut {
    embedding: Vec<f32>,
}

#[derive(Deserialize)]
struct Usage {
    completion_tokens: Option<u64>,
    output_tokens: Option<u64>,
}

/// A result id as text: strings as they are, numbers in decimal.
fn id_text(v: serde_json::Value) -> String {
    match v {
        serde_json::Value::String(s) => s,
        other => other.to_string(),
    }
}

/// What a non-streaming answer said: its text, output tokens, first embedding and
/// search result ids.
#[derive(Default)]
struct Read {
    answer: Option<String>,
    tokens: Option<u64>,
    embedding: Option<Vec<f32>>,
    ids: Option<Vec<String>>,
}

impl Completion {
    /// What the body says, or `None` when it lacks what `shape` needs.
    fn read(self, shape: RequestShape) -> Option<Read> {
        let usage = self.usage;
        let (answer, tokens, embedding) = match shape {
            RequestShape::Chat | RequestShape::Completion => {
                let choices = self.choices?;
                let text = choices
                    .into_iter()
                    .next()
                    .and_then(|c| c.message.and_then(|m| m.content).or(c.text))
                    .unwrap_or_default();
                (Some(text), usage.and_then(|u| u.completion_tokens), None)
            }
            RequestShape::Messages => {
                let text = self
                    .content?
                    .into_iter()
                    .filter_map(|b| b.text)
                    .collect::<String>();
                (Some(text), usage.and_then(|u| u.output_tokens), None)
            }
            RequestShape::Embeddings => {
                let first = self.data?.into_iter().next()?;
                (None, None, Some(first.embedding))
            }
            RequestShape::QdrantSearch => {
                let ids = self.result?.into_iter().map(|h| id_text(h.id)).collect();
                return Some(Read {
                    ids: Some(ids),
                    ..Read::default()
                });
            }
            RequestShape::ChromaQuery => {
                let ids = self
                    .ids?
                    .into_iter()
                    .next()
                    .unwrap_or_default()
                    .into_iter()
                    .map(id_text)
                    .collect();
                return Some(Read {
                    ids: Some(ids),
                    ..Read::default()
                });
            }
        };
        Some(Read {
            answer,
            tokens,
            embedding,
            ids: None,
        })
    }
}

impl DrillClient {
    /// A client for `uri` with the SDKs' default connection limits; `timeout`
    /// bounds each request from its scheduled time.
    pub fn new(uri: Uri, stream: bool, timeout: Duration) -> Self {
        Self::with_limits(uri, stream, timeout, DEFAULT_MAX_CONNECTIONS)
    }

    /// Like [`DrillClient::new`], with at most `max_connections` open at once.
    pub fn with_limits(uri: Uri, stream: bool, timeout: Duration, max_connections: usize) -> Self {
        let shape = RequestShape::from_path(uri.path());
        let authority = uri.authority().map_or("", |a| a.as_str()).to_owned();
        let addr = match uri.host() {
            Some(h) => format!("{h}:{}", uri.port_u16().unwrap_or(80)),
            None => authority.clone(),
        };
        let target = uri
            .path_and_query()
            .map_or("/", |p| p.as_str())
            .parse()
            .unwrap_or_else(|_| Uri::from_static("/"));
        Self {
            pool: Arc::new(Pool::new(addr, max_connections)),
            target,
            host: HeaderValue::from_str(&authority)
                .unwrap_or(HeaderValue::from_static("localhost")),
            stream: stream && shape != RequestShape::Embeddings && !shape.is_search(),
            timeout,
            shape,
        }
    }

    /// Send `body` as request `slot.seq` and measure it. Never fails: every way a
    /// request can end is an [`Outcome`].
    pub async fn exchange(&self, slot: Slot, body: Bytes) -> Sample {
        self.exchange_with(slot, body, 0).await.0
    }

    /// Like [`DrillClient::exchange`], for attempt number `retry_count` (0 for the
    /// first), sent as `x-stainless-retry-count` like the official SDKs do; also
    /// returns the server's requested wait (`retry-after-ms`, else `retry-after` in
    /// seconds) on an error response.
    pub async fn exchange_with(
        &self,
        slot: Slot,
        body: Bytes,
        retry_count: u32,
    ) -> (Sample, Option<Duration>) {
        let mut retry_after = None;
        let send_lag = Instant::now().saturating_duration_since(slot.scheduled);
        let deadline = slot.scheduled + self.timeout;
        let mut sample = Sample {
            seq: slot.seq,
            phase: slot.phase,
            outcome: Outcome::Ok,
            e2e: Duration::ZERO,
            ttft: None,
            itl: Vec::new(),
            output_tokens: None,
            tokens_source: None,
            send_lag,
            answer: None,
            embedding: None,
            ids: None,
        };
        let outcome = self
            .attempt(
                &mut sample,
                slot,
                body,
                deadline,
                retry_count,
                &mut retry_after,
            )
            .await;
        sample.outcome = outcome;
        sample.e2e = Instant::now().saturating_duration_since(slot.scheduled);
        (sample, retry_after)
    }

    async fn attempt(
        &self,
        sample: &mut Sample,
        slot: Slot,
        body: Bytes,
        deadline: Instant,
        retry_count: u32,
        retry_after: &mut Option<Duration>,
    ) -> Outcome {
        let make = || {
            let mut req = Request::new(Full::new(body.clone()));
            *req.method_mut() = Method::POST;
            *req.uri_mut() = self.target.clone();
            let h = req.headers_mut();
            h.insert(http::header::HOST, self.host.clone());
            h.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
            h.insert(ACCEPT, HeaderValue::from_static("application/json"));
            h.insert(
                http::header::ACCEPT_ENCODING,
                HeaderValue::from_static("gzip, deflate"),
            );
            h.insert(USER_AGENT, HeaderValue::from_static(USER_AGENT_VALUE));
            h.insert("x-brownout-seq", HeaderValue::from(slot.seq));
            h.insert("x-stainless-retry-count", HeaderValue::from(retry_count));
            if self.shape == RequestShape::Messages {
                h.insert("anthropic-version", HeaderValue::from_static("2023-06-01"));
            }
            req
        };
        let (resp, lease) = match timeout_at(deadline, self.pool.send(make)).await {
            Err(_) => return Outcome::Timeout,
            Ok(Err(e)) => {
                tracing::debug!(seq = slot.seq, error = %e, "drill: request failed");
                return Outcome::TransportError;
            }
            Ok(Ok(r)) => r,
        };
        // The connection goes back to the pool only when its answer was read to the
        // end; any early return drops it, which closes it.
        let release = |lease| self.pool.release(lease);
        let status = resp.status();
        *retry_after = parse_retry_after(resp.headers());
        let encoding = resp
            .headers()
            .get(http::header::CONTENT_ENCODING)
            .and_then(|v| v.to_str().ok())
            .map(|v| v.trim().to_ascii_lowercase());
        let mut body = resp.into_body();

        if !status.is_success() {
            // Read the error body to the end so the connection can be reused, as an
            // SDK does; its content does not matter here.
            loop {
                match timeout_at(deadline, body.frame()).await {
                    Err(_) | Ok(Some(Err(_))) => break,
                    Ok(None) => {
                        release(lease);
                        break;
                    }
                    Ok(Some(Ok(_))) => {}
                }
            }
            return Outcome::HttpError(status.as_u16());
        }

        if self.stream {
            let mut meter = if self.shape == RequestShape::Messages {
                StreamMeter::anthropic(slot.scheduled)
            } else {
                StreamMeter::new(slot.scheduled)
            };
            let mut lease = Some(lease);
            let (timed_out, failed) = loop {
                match timeout_at(deadline, body.frame()).await {
                    Err(_) => break (true, false),
                    Ok(None) => {
                        if let Some(l) = lease.take() {
                            release(l);
                        }
                        break (false, false);
                    }
                    Ok(Some(Err(e))) => {
                        tracing::debug!(seq = slot.seq, error = %e, "drill: stream body failed");
                        break (false, true);
                    }
                    Ok(Some(Ok(frame))) => {
                        if let Some(data) = frame.data_ref() {
                            meter.feed(data, Instant::now());
                        }
                    }
                }
            };
            let summary = meter.finish(failed);
            if summary.outcome.is_ok() && !timed_out {
                sample.answer = Some(summary.text);
            }
            sample.ttft = summary.ttft;
            sample.itl = summary.itl;
            if let Some((n, src)) = summary.output_tokens {
                sample.output_tokens = Some(n);
                sample.tokens_source = Some(src);
            }
            if timed_out {
                Outcome::Timeout
            } else {
                summary.outcome
            }
        } else {
            let mut buf = Vec::new();
            let mut overflow = false;
            loop {
                match timeout_at(deadline, body.frame()).await {
                    Err(_) => return Outcome::Timeout,
                    Ok(None) => {
                        release(lease);
                        break;
                    }
                    Ok(Some(Err(_))) => return Outcome::Truncated,
                    Ok(Some(Ok(frame))) => {
                        if let Some(data) = frame.data_ref() {
                            if buf.len() + data.len() <= MAX_JSON_BODY {
                                buf.extend_from_slice(data);
                            } else {
                                overflow = true;
                            }
                        }
                    }
                }
            }
            if overflow {
                return Outcome::Ok;
            }
            // Like the SDKs' HTTP clients, read compressed answers (Qdrant gzips
            // its answers whatever the client asked for).
            match encoding.as_deref() {
                None | Some("identity") => {}
                Some(enc @ ("gzip" | "x-gzip" | "deflate")) => match inflate(enc, &buf) {
                    Some(b) => buf = b,
                    None => return Outcome::Corrupt,
                },
                Some(_) => return Outcome::Corrupt,
            }
            match serde_json::from_slice::<Completion>(&buf)
                .ok()
                .and_then(|c| c.read(self.shape))
            {
                Some(read) => {
                    if let Some(n) = read.tokens {
                        sample.output_tokens = Some(n);
                        sample.tokens_source = Some(TokensSource::Usage);
                    }
                    sample.answer = read.answer;
                    sample.embedding = read.embedding;
                    sample.ids = read.ids;
                    Outcome::Ok
                }
                None => Outcome::Corrupt,
            }
        }
    }
}

/// Decode a gzip or zlib (`deflate`) body, up to [`MAX_JSON_BODY`] bytes;
/// `None` for a broken or oversized one.
fn inflate(encoding: &str, body: &[u8]) -> Option<Vec<u8>> {
    use std::io::Read;
    let mut out = Vec::new();
    let limit = MAX_JSON_BODY as u64 + 1;
    let n = if encoding == "deflate" {
        flate2::read::ZlibDecoder::new(body)
            .take(limit)
            .read_to_end(&mut out)
    } else {
        flate2::read::MultiGzDecoder::new(body)
            .take(limit)
            .read_to_end(&mut out)
    }
    .ok()?;
    (n <= MAX_JSON_BODY).then_some(out)
}

/// Chroma addresses collections by id: look `name` up once before the drill (an
/// id, 36 characters with dashes, is used as given).
pub async fn resolve_chroma_collection(
    target: &Uri,
    name: &str,
) -> Result<String, crate::DrillError> {
    if name.len() == 36 && name.chars().filter(|c| *c == '-').count() == 4 {
        return Ok(name.to_owned());
    }
    let base = target.to_string();
    let fail = |reason: String| crate::DrillError::Collection {
        collection: name.to_owned(),
        target: base.trim_end_matches('/').to_owned(),
        reason,
    };
    let uri: Uri = format!(
        "{}{}/collections/{name}",
        base.trim_end_matches('/'),
        crate::scenario::CHROMA_DATABASE_PATH
    )
    .parse()
    .map_err(|e| fail(format!("{e}")))?;
    let client: Client<HttpConnector, Full<Bytes>> =
        Client::builder(TokioExecutor::new()).build(HttpConnector::new());
    let req = Request::get(uri)
        .header(USER_AGENT, USER_AGENT_VALUE)
        .body(Full::new(Bytes::new()))
        .map_err(|e| fail(format!("{e}")))?;
    let resp = tokio::time::timeout(Duration::from_secs(10), client.request(req))
        .await
        .map_err(|_| fail("no answer within 10 s".into()))?
        .map_err(|e| fail(format!("{e}")))?;
    let status = resp.status();
    let body = resp
        .into_body()
        .collect()
        .await
        .map_err(|e| fail(format!("{e}")))?
        .to_bytes();
    if !status.is_success() {
        return Err(fail(format!(
            "HTTP {status}: {}",
            String::from_utf8_lossy(&body[..body.len().min(200)])
        )));
    }
    serde_json::from_slice::<serde_json::Value>(&body)
        .ok()
        .and_then(|v| v["id"].as_str().map(str::to_owned))
        .ok_or_else(|| fail("the answer has no `id`".into()))
}

/// The wait a response asks for: `retry-after-ms` (milliseconds), else
/// `retry-after` in seconds (fractions allowed); HTTP dates are not followed.
pub fn parse_retry_after(h: &http::HeaderMap) -> Option<Duration> {
    let get = |k: &str| h.get(k).and_then(|v| v.to_str().ok()).map(str::trim);
    if let Some(ms) = get("retry-after-ms").and_then(|v| v.parse::<f64>().ok()) {
        if ms.is_finite() && ms >= 0.0 {
            return Some(Duration::from_secs_f64(ms / 1000.0));
        }
    }
    let s = get("retry-after")?.parse::<f64>().ok()?;
    (s.is_finite() && s >= 0.0).then(|| Duration::from_secs_f64(s))
}

#[cfg(test)]
mod retry_after_tests {
    use super::*;

    #[test]
    fn retry_after_headers() {
        let mut h = http::HeaderMap::new();
        assert_eq!(parse_retry_after(&h), None);
        h.insert("retry-after", HeaderValue::from_static("2"));
        assert_eq!(parse_retry_after(&h), Some(Duration::from_secs(2)));
        h.insert("retry-after-ms", HeaderValue::from_static("250"));
        assert_eq!(parse_retry_after(&h), Some(Duration::from_millis(250)));
        h.remove("retry-after-ms");
        h.insert(
            "retry-after",
            HeaderValue::from_static("Wed, 21 Oct 2015 07:28:00 GMT"),
        );
        assert_eq!(parse_retry_after(&h), None);
    }
}
