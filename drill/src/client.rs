//! Sending one request and measuring it.
//!
//! The client is hyper-util's pooled HTTP/1.1 client with keep-alive, like the
//! httpx pools behind the official SDKs, so a fault that closes connections shows up
//! as reconnects here too. Retries are the engine's
//! ([`crate::engine::send_with_retries`]), by the SDKs' rules ([`crate::retry`]).

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::header::{HeaderName, HeaderValue, ACCEPT, CONTENT_TYPE, USER_AGENT};
use http::{Method, Request, Uri};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use serde::Deserialize;
use tokio::time::{timeout_at, Instant};

use crate::meter::StreamMeter;
use crate::pool::Pool;
use crate::retry::{Ending, RetryHeaders};
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
    keys: Keys,
    /// `x-brownout-sim-answer` values, by the request body they go with: the
    /// answers a prompt file scripts for the simulator (`sim_answer`).
    sim_answers: Arc<std::collections::HashMap<Bytes, HeaderValue>>,
}

/// The header that tells the simulator what to answer (a prompt line's
/// `sim_answer`, percent-encoded); real servers ignore it.
pub const SIM_ANSWER_HEADER: &str = "x-brownout-sim-answer";

/// How a request says which simulated user sent it.
#[derive(Debug, Clone, Default)]
enum Keys {
    /// No credentials at all (the plain drill).
    #[default]
    None,
    /// A fake key of the user's own.
    Fake,
    /// One real key for everybody (the credential header's whole value), and
    /// `x-brownout-client: user-N`: a real provider refuses fake keys.
    Real(HeaderValue),
}

/// Names the simulated user when every user sends the same real key.
pub const CLIENT_HEADER: &str = "x-brownout-client";

/// Chroma's default tenant and database, where a drill's collections live.
pub const CHROMA_DATABASE_PATH: &str = "/api/v2/tenants/default_tenant/databases/default_database";

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
    prompt_tokens: Option<u64>,
    input_tokens: Option<u64>,
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
    input_tokens: Option<u64>,
    embedding: Option<Vec<f32>>,
    ids: Option<Vec<String>>,
}

impl Completion {
    /// What the body says, or `None` when it lacks what `shape` needs.
    fn read(self, shape: RequestShape) -> Option<Read> {
        let usage = self.usage;
        let input_tokens = usage
            .as_ref()
            .and_then(|u| u.prompt_tokens.or(u.input_tokens));
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
            input_tokens,
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
            keys: Keys::None,
            sim_answers: Arc::default(),
        }
    }

    /// Send the scripted simulator answer of each request body that has one.
    pub fn with_sim_answers(
        mut self,
        answers: std::collections::HashMap<Bytes, HeaderValue>,
    ) -> Self {
        self.sim_answers = Arc::new(answers);
        self
    }

    /// Send each request (of [`DrillClient::exchange_with`]) as the simulated
    /// user it names, with the credential header the API's SDK sends: fake keys
    /// (`authorization: Bearer sk-brownout-user-N`, or for Anthropic `x-api-key:
    /// sk-ant-brownout-user-N`), or, given a real key, that key for every user and
    /// `x-brownout-client: user-N`. A key that cannot be a header value (a control
    /// character) is not sent: fake keys are, and a warning says so.
    pub fn with_users(mut self, real_key: Option<&str>) -> Self {
        self.keys = match real_key.map(str::trim) {
            None => Keys::Fake,
            Some(key) => {
                let value = if self.credential_header() == http::header::AUTHORIZATION {
                    format!("Bearer {key}")
                } else {
                    key.to_owned()
                };
                match HeaderValue::from_str(&value) {
                    Ok(mut v) => {
                        v.set_sensitive(true);
                        Keys::Real(v)
                    }
                    Err(_) => {
                        tracing::warn!(
                            "drill: the API key is not a valid header value; sending fake keys"
                        );
                        Keys::Fake
                    }
                }
            }
        };
        self
    }

    /// The header the API's clients carry their key in.
    fn credential_header(&self) -> HeaderName {
        match self.shape {
            RequestShape::Messages => HeaderName::from_static("x-api-key"),
            RequestShape::QdrantSearch => HeaderName::from_static("api-key"),
            RequestShape::ChromaQuery => HeaderName::from_static("x-chroma-token"),
            RequestShape::Chat | RequestShape::Completion | RequestShape::Embeddings => {
                http::header::AUTHORIZATION
            }
        }
    }

    /// The credential headers of simulated user `user`.
    fn user_headers(&self, user: u32) -> Vec<(HeaderName, HeaderValue)> {
        let fake = |prefix: &str| {
            let key = match self.shape {
                RequestShape::Messages => format!("sk-ant-brownout-user-{user}"),
                _ => format!("sk-brownout-user-{user}"),
            };
            HeaderValue::from_str(&format!("{prefix}{key}")).ok()
        };
        let name = self.credential_header();
        let bearer = if name == http::header::AUTHORIZATION {
            "Bearer "
        } else {
            ""
        };
        match &self.keys {
            Keys::None => Vec::new(),
            Keys::Fake => fake(bearer).map(|v| vec![(name, v)]).unwrap_or_default(),
            Keys::Real(v) => {
                let mut out = vec![(name, v.clone())];
                if let Ok(id) = HeaderValue::from_str(&format!("user-{user}")) {
                    out.push((HeaderName::from_static(CLIENT_HEADER), id));
                }
                out
            }
        }
    }

    /// Send `body` as request `slot.seq` and measure it. Never fails: every way a
    /// request can end is an [`Outcome`].
    pub async fn exchange(&self, slot: Slot, body: Bytes) -> Sample {
        self.exchange_with(slot, body, 0, None).await.0
    }

    /// Like [`DrillClient::exchange`], for attempt number `retry_count` (0 for the
    /// first), sent as `x-stainless-retry-count` like the official SDKs do, from
    /// simulated user `user` (see [`DrillClient::with_users`]); also returns how
    /// the attempt ended for the SDK's retry rules.
    pub async fn exchange_with(
        &self,
        slot: Slot,
        body: Bytes,
        retry_count: u32,
        user: Option<u32>,
    ) -> (Sample, Ending) {
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
            input_tokens: None,
            send_lag,
            answer: None,
            embedding: None,
            ids: None,
        };
        let user = user.map(|u| self.user_headers(u)).unwrap_or_default();
        let (outcome, ending) = self
            .attempt(&mut sample, slot, body, deadline, retry_count, &user)
            .await;
        sample.outcome = outcome;
        sample.e2e = Instant::now().saturating_duration_since(slot.scheduled);
        (sample, ending)
    }

    async fn attempt(
        &self,
        sample: &mut Sample,
        slot: Slot,
        body: Bytes,
        deadline: Instant,
        retry_count: u32,
        user: &[(HeaderName, HeaderValue)],
    ) -> (Outcome, Ending) {
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
            for (name, value) in user {
                h.insert(name.clone(), value.clone());
            }
            if let Some(v) = self.sim_answers.get(&body) {
                h.insert(SIM_ANSWER_HEADER, v.clone());
            }
            req
        };
        // Before the response head, and while reading a body that is not streamed,
        // httpx raises connection errors and timeouts, which the SDKs retry; a
        // stream's body is read after their retry loop, so its failures are final.
        let (resp, lease) = match timeout_at(deadline, self.pool.send(make)).await {
            Err(_) => return (Outcome::Timeout, Ending::Connection),
            Ok(Err(e)) => {
                tracing::debug!(seq = slot.seq, error = %e, "drill: request failed");
                return (Outcome::TransportError, Ending::Connection);
            }
            Ok(Ok(r)) => r,
        };
        // The connection goes back to the pool only when its answer was read to the
        // end; any early return drops it, which closes it.
        let release = |lease| self.pool.release(lease);
        let status = resp.status();
        let retry_headers =
            (!status.is_success()).then(|| RetryHeaders::from_headers(resp.headers()));
        let encoding = resp
            .headers()
            .get(http::header::CONTENT_ENCODING)
            .and_then(|v| v.to_str().ok())
            .map(|v| v.trim().to_ascii_lowercase());
        let mut body = resp.into_body();

        if !status.is_success() {
            // Read the error body to the end so the connection can be reused, as an
            // SDK does; its content does not matter here. Without a stream httpx
            // reads it before the SDK sees the status, so a failure there is a
            // connection error to the SDK.
            let broken = loop {
                match timeout_at(deadline, body.frame()).await {
                    Err(_) => break Some(Outcome::Timeout),
                    Ok(Some(Err(_))) => break Some(Outcome::TransportError),
                    Ok(None) => {
                        release(lease);
                        break None;
                    }
                    Ok(Some(Ok(_))) => {}
                }
            };
            return match broken {
                Some(o) if !self.stream => (o, Ending::Connection),
                _ => (
                    Outcome::HttpError(status.as_u16()),
                    Ending::Status(status.as_u16(), retry_headers.unwrap_or_default()),
                ),
            };
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
            sample.input_tokens = summary.input_tokens;
            let outcome = if timed_out {
                Outcome::Timeout
            } else {
                summary.outcome
            };
            (outcome, Ending::Delivered)
        } else {
            let mut buf = Vec::new();
            let mut overflow = false;
            loop {
                match timeout_at(deadline, body.frame()).await {
                    Err(_) => return (Outcome::Timeout, Ending::Connection),
                    Ok(None) => {
                        release(lease);
                        break;
                    }
                    Ok(Some(Err(_))) => return (Outcome::Truncated, Ending::Connection),
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
                return (Outcome::Ok, Ending::Delivered);
            }
            // Like the SDKs' HTTP clients, read compressed answers (Qdrant gzips
            // its answers whatever the client asked for).
            match encoding.as_deref() {
                None | Some("identity") => {}
                Some(enc @ ("gzip" | "x-gzip" | "deflate")) => match inflate(enc, &buf) {
                    Some(b) => buf = b,
                    None => return (Outcome::Corrupt, Ending::Delivered),
                },
                Some(_) => return (Outcome::Corrupt, Ending::Delivered),
            }
            let outcome = match serde_json::from_slice::<Completion>(&buf)
                .ok()
                .and_then(|c| c.read(self.shape))
            {
                Some(read) => {
                    if let Some(n) = read.tokens {
                        sample.output_tokens = Some(n);
                        sample.tokens_source = Some(TokensSource::Usage);
                    }
                    sample.input_tokens = read.input_tokens;
                    sample.answer = read.answer;
                    sample.embedding = read.embedding;
                    sample.ids = read.ids;
                    Outcome::Ok
                }
                None => Outcome::Corrupt,
            };
            (outcome, Ending::Delivered)
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
        CHROMA_DATABASE_PATH
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

#[cfg(test)]
mod user_tests {
    use super::*;

    fn client(path: &str) -> DrillClient {
        let uri = format!("http://127.0.0.1:9{path}").parse().unwrap();
        DrillClient::new(uri, false, Duration::from_secs(1))
    }

    fn shown(h: Vec<(HeaderName, HeaderValue)>) -> Vec<(String, String)> {
        h.into_iter()
            .map(|(n, v)| (n.to_string(), v.to_str().unwrap().to_owned()))
            .collect()
    }

    #[test]
    fn each_user_has_its_own_fake_key() {
        let chat = client("/v1/chat/completions").with_users(None);
        assert_eq!(
            shown(chat.user_headers(7)),
            [("authorization".into(), "Bearer sk-brownout-user-7".into())]
        );
        let messages = client("/v1/messages").with_users(None);
        assert_eq!(
            shown(messages.user_headers(0)),
            [("x-api-key".into(), "sk-ant-brownout-user-0".into())]
        );
        let qdrant = client("/collections/docs/points/search").with_users(None);
        assert_eq!(shown(qdrant.user_headers(3))[0].0, "api-key");
        // The plain drill sends no credentials.
        assert!(client("/v1/chat/completions").user_headers(1).is_empty());
    }

    #[test]
    fn a_real_key_is_shared_and_users_are_named() {
        let chat = client("/v1/embeddings").with_users(Some(" sk-real\n"));
        let h = chat.user_headers(42);
        assert!(h[0].1.is_sensitive());
        assert_eq!(
            shown(h),
            [
                ("authorization".into(), "Bearer sk-real".into()),
                ("x-brownout-client".into(), "user-42".into())
            ]
        );
        let messages = client("/v1/messages").with_users(Some("sk-ant-real"));
        assert_eq!(
            shown(messages.user_headers(1)),
            [
                ("x-api-key".into(), "sk-ant-real".into()),
                ("x-brownout-client".into(), "user-1".into())
            ]
        );
        // A key that cannot be sent falls back to fake keys.
        let bad = client("/v1/chat/completions").with_users(Some("a\u{7}b"));
        assert_eq!(
            shown(bad.user_headers(2)),
            [("authorization".into(), "Bearer sk-brownout-user-2".into())]
        );
    }
}
