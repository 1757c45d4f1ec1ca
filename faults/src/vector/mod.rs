//! Vector search and embedding faults on one whole JSON answer (docs/vector-faults.md):
//! `drop_results`, `shuffle_results`, `limit_results`, `stale_results`,
//! `score_noise`, `empty_results`, `embedding_noise` and `embedding_truncate`.
//!
//! Every database's answer is read into one neutral form, lists of hits (one list
//! per query in the request), so each fault is written once and means the same on
//! Qdrant, Chroma, Milvus, Weaviate and Pinecone. The adapters in [`results`] know
//! where each database keeps its hits and scores and write the lists back into the
//! same shape. Embeddings answers (OpenAI, float or base64, Ollama, TEI) are handled
//! in [`embeddings`].
//!
//! A body whose shape is not known is left alone and the reason returned for
//! `faults_skipped`: a drill must never believe it measured a fault that did not
//! apply. With nothing applied the input bytes come back untouched.
//!
//! Rewrites are exact: the body is read with [`span`], which keeps where each value
//! lies in the text, and written by splicing. Every value a fault does not change
//! (kept hits with their ids, scores and payloads, vector components, `usage`,
//! `time`, the keys' order and spelling) reaches the client byte for byte; only the
//! hit lists a fault changed, or the scores `score_noise` moved, are new text.

pub mod b64;
pub mod embeddings;
pub mod results;
pub(crate) mod span;

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;

use bytes::Bytes;
use rand_chacha::ChaCha8Rng;

use crate::api::{ApiKind, Endpoint};
use crate::fault::{BodyFault, ResultsFault};
use crate::stream::StreamPlan;

pub use results::{count_results, Hit, Hits};

/// The deepest `stale_results` may reach back, and so the entries kept per collection.
pub const MAX_STALE_DEPTH: u32 = 16;

/// Collections remembered per rule by [`StaleCache`]; the oldest is forgotten past it,
/// so a client cycling through many collections cannot grow the proxy's memory.
pub const MAX_STALE_COLLECTIONS: usize = 256;

/// Why a vector fault could not apply to a body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Skip {
    /// The body is not JSON.
    NotJson,
    /// JSON, but not a search/query or embeddings answer brownout knows.
    UnknownShape,
    /// The fault has nothing to act on (no hits, no scores, vectors already short).
    NothingToChange,
    /// `stale_results` with no earlier answer for this collection yet.
    NoEarlierResults,
    /// A result fault on an embeddings answer or the other way round, or on an
    /// endpoint that is neither (an upsert, a listing).
    WrongEndpoint,
}

impl Skip {
    /// The reason as written in `faults_skipped`.
    pub fn as_str(self) -> &'static str {
        match self {
            Skip::NotJson => "not_json",
            Skip::UnknownShape => "unknown_shape",
            Skip::NothingToChange => "nothing_to_change",
            Skip::NoEarlierResults => "no_earlier_results",
            Skip::WrongEndpoint => "wrong_endpoint",
        }
    }
}

/// The result of [`rewrite`].
#[derive(Debug, Clone)]
pub struct Rewrite {
    /// The new body (the input's bytes when nothing changed).
    pub body: Bytes,
    /// Faults that changed the body, as (rule index, fault type).
    pub applied: Vec<(usize, &'static str)>,
    /// Vector faults that could not apply, and why.
    pub skipped: Vec<(usize, &'static str, Skip)>,
    /// For a search/query answer: (hits returned to the client, hits the faults
    /// removed compared with the upstream's answer).
    pub results: Option<(u64, u64)>,
}

/// Earlier answers per collection, for `stale_results`: what a lagging replica
/// would still be serving. One cache per rule, kept across hot reloads with the
/// rule's other state, bounded in collections and in depth.
#[derive(Debug, Default)]
pub struct StaleCache {
    inner: Mutex<StaleInner>,
}

#[derive(Debug, Default)]
struct StaleInner {
    /// Collection key → the upstream's hit lists, oldest first.
    by_key: HashMap<String, VecDeque<Hits>>,
    /// Keys in first-seen order, to forget the oldest collection first.
    order: VecDeque<String>,
}

impl StaleCache {
    /// The answer `depth` queries back for `key` (1: the previous one), if seen.
    pub fn earlier(&self, key: &str, depth: u32) -> Option<Hits> {
        let inner = self.inner.lock().ok()?;
        let q = inner.by_key.get(key)?;
        let d = depth.max(1) as usize;
        q.len().checked_sub(d).and_then(|i| q.get(i)).cloned()
    }

    /// Remember the upstream's own answer for `key`.
    pub fn remember(&self, key: &str, hits: Hits) {
        let Ok(mut inner) = self.inner.lock() else {
            return;
        };
        if !inner.by_key.contains_key(key) {
            if inner.order.len() >= MAX_STALE_COLLECTIONS {
                if let Some(old) = inner.order.pop_front() {
                    inner.by_key.remove(&old);
                }
            }
            inner.order.push_back(key.to_string());
        }
        let q = inner.by_key.entry(key.to_string()).or_default();
        q.push_back(hits);
        while q.len() > MAX_STALE_DEPTH as usize {
            q.pop_front();
        }
    }

    /// Collections remembered (for tests and status).
    pub fn collections(&self) -> usize {
        self.inner.lock().map(|i| i.by_key.len()).unwrap_or(0)
    }
}

/// Apply the plan's vector faults to one whole search/query or embeddings answer,
/// in plan order; other faults in the plan are ignored (the caller handles them).
///
/// `stale` gives the cache of the rule at a plan index (`None`: that rule keeps no
/// cache, and `stale_results` is skipped). `collection_key` names the collection
/// the request searched (the request path is enough: it holds the collection for
/// every database but Milvus and Pinecone, whose whole index is then one key).
///
/// `Err` when the body is not an answer brownout knows, or the endpoint is neither
/// a search nor embeddings; then nothing applied.
pub fn rewrite(
    api: ApiKind,
    endpoint: Endpoint,
    body: &[u8],
    plan: &StreamPlan,
    rng: &mut ChaCha8Rng,
    stale: &dyn Fn(usize) -> Option<std::sync::Arc<StaleCache>>,
    collection_key: &str,
) -> Result<Rewrite, Skip> {
    match endpoint {
        Endpoint::Search | Endpoint::Query => {
            rewrite_results(api, body, plan, rng, stale, collection_key)
        }
        Endpoint::Embeddings => embeddings::rewrite(body, plan, rng),
        _ => Err(Skip::WrongEndpoint),
    }
}

fn rewrite_results(
    api: ApiKind,
    body: &[u8],
    plan: &StreamPlan,
    rng: &mut ChaCha8Rng,
    stale: &dyn Fn(usize) -> Option<std::sync::Arc<StaleCache>>,
    collection_key: &str,
) -> Result<Rewrite, Skip> {
    let mut doc = results::parse(api, body)?;
    // An earlier answer is only served in place of one of the same shape (same
    // Chroma lists, same GraphQL classes), so the rewritten body stays consistent.
    let collection_key = format!("{}|{collection_key}", doc.tag());
    let collection_key = collection_key.as_str();
    let before = doc.count();
    let mut applied = Vec::new();
    let mut skipped = Vec::new();
    let mut remembered = false;
    let mut changed = false;
    for (rule, fault) in plan.faults() {
        let kind = fault.kind();
        let fault = match fault {
            BodyFault::Results(f) => f,
            BodyFault::Embeddings(_) => {
                skipped.push((rule, kind, Skip::WrongEndpoint));
                continue;
            }
            // Not vector faults: the caller handles them.
            BodyFault::Stream(_) | BodyFault::Content(_) => continue,
        };
        let ok = match fault {
            ResultsFault::DropResults(crate::fault::DropResults { fraction }) => {
                doc.drop_fraction(*fraction, rng)
            }
            ResultsFault::ShuffleResults(_) => doc.shuffle(rng),
            ResultsFault::LimitResults(crate::fault::LimitResults { max }) => doc.limit(*max),
            ResultsFault::ScoreNoise(crate::fault::ScoreNoise { stddev }) => {
                doc.score_noise(*stddev, rng)
            }
            ResultsFault::EmptyResults(_) => {
                doc.empty();
                Ok(())
            }
            ResultsFault::StaleResults(crate::fault::StaleResults { depth }) => match stale(rule) {
                None => Err(Skip::NoEarlierResults),
                Some(cache) => {
                    let earlier = cache.earlier(collection_key, depth.unwrap_or(1));
                    if !remembered {
                        cache.remember(collection_key, doc.original().clone());
                        remembered = true;
                    }
                    match earlier {
                        Some(h) if h != doc.hits => {
                            doc.replace(h);
                            Ok(())
                        }
                        Some(_) => Err(Skip::NothingToChange),
                        None => Err(Skip::NoEarlierResults),
                    }
                }
            },
        };
        match ok {
            Ok(()) => {
                changed = true;
                applied.push((rule, kind));
            }
            Err(why) => skipped.push((rule, kind, why)),
        }
    }
    let after = doc.count();
    let body = if changed {
        Bytes::from(doc.write())
    } else {
        Bytes::copy_from_slice(body)
    };
    Ok(Rewrite {
        body,
        applied,
        skipped,
        results: Some((after as u64, before.saturating_sub(after) as u64)),
    })
}

/// A standard normal sample (Box–Muller), so the crate needs no extra dependency.
pub(crate) fn gauss(rng: &mut ChaCha8Rng) -> f64 {
    use rand::Rng;
    let u1: f64 = rng.random::<f64>().max(f64::MIN_POSITIVE);
    let u2: f64 = rng.random::<f64>();
    (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
}
