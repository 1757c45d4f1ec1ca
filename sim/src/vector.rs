//! A simulated vector database (`brownout sim --api qdrant|chroma`): in-memory
//! collections with exact k-nearest-neighbour search over the real REST shapes, so
//! a drill knows the true top-k and can measure the recall a fault costs.
//!
//! Qdrant ([`qdrant`]): what the official `qdrant-client` sends (the Query API,
//! retrieve, scroll, count, collection info and existence, the version check) and
//! the older Search API. Every Qdrant JSON answer is gzip-compressed, whatever the
//! client asked for (as Qdrant is reported to do; see
//! `reference/ai-wire-formats.md`), which is what the proxy's decode-and-rewrite
//! path must cope with; the plain-text health endpoints are not.
//!
//! Chroma (v2): heartbeat, version, identity, tenants and databases, collections
//! (create with `get_or_create`, get by name, delete), and per collection `add`,
//! `upsert`, `delete`, `get`, `count` and `query`, one inner list per query
//! embedding, distances as cosine distance (1 − similarity).
//!
//! Both start with a seeded collection, [`SEED_COLLECTION`], of [`SEED_DOCS`]
//! documents embedded with the sim's own deterministic embedding
//! ([`crate::embedding`] with model [`SEED_MODEL`]), so a drill can embed its
//! queries through the same sim's `/v1/embeddings` and know the truth. The OpenAI
//! routes stay available on the same port.

mod qdrant;

use std::collections::{BTreeMap, HashMap};
use std::convert::Infallible;
use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use bytes::Bytes;
use http::header::{CONTENT_ENCODING, CONTENT_TYPE};
use http::{HeaderValue, Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use serde_json::{json, Value};

use crate::config::SimApi;
use crate::embeddings::EmbeddingInput;
use crate::llm::LlmSim;
use crate::openai::SimBody;

/// The collection every simulated vector database starts with.
pub const SEED_COLLECTION: &str = "docs";
/// How many documents it holds.
pub const SEED_DOCS: usize = 200;
/// Their dimension.
pub const SEED_DIMS: usize = 64;
/// The embedding model name the seeded vectors are computed with.
pub const SEED_MODEL: &str = "sim-embed";

const MAX_BODY: usize = 32 << 20;
const TENANT: &str = "default_tenant";
const DATABASE: &str = "default_database";

/// The text of seeded document `i`.
pub fn seed_text(i: usize) -> String {
    format!(
        "document {i}: {}",
        crate::answer_text(SEED_MODEL, &format!("doc {i}"), 12)
    )
}

/// The vector of a text under the sim's embedding, as the seeded collection uses.
pub fn seed_vector(text: &str) -> Vec<f32> {
    crate::embedding(SEED_MODEL, &EmbeddingInput::Text(text), SEED_DIMS)
}

#[derive(Debug, Clone)]
struct Point {
    id: Value,
    /// The unnamed vector (Chroma's only one); empty for a Qdrant point that has
    /// only named vectors.
    vector: Vec<f32>,
    /// Qdrant's named vectors.
    named: BTreeMap<String, Vec<f32>>,
    payload: Value,
    document: Value,
    /// The operation that last wrote it (Qdrant's `ScoredPoint.version`).
    version: u64,
}

#[derive(Debug, Clone)]
struct Collection {
    id: String,
    name: String,
    metadata: Value,
    points: Vec<Point>,
    version: u64,
    /// Qdrant's vector configuration (Chroma ignores it).
    vectors: qdrant::VectorsConfig,
    /// Qdrant payload indexes by field: recorded for `payload_schema` only.
    payload_index: BTreeMap<String, Value>,
}

impl Collection {
    fn new(name: &str, n: u64) -> Self {
        Collection {
            id: format!("00000000-0000-4000-8000-{n:012x}"),
            name: name.to_string(),
            metadata: Value::Null,
            points: Vec::new(),
            version: 0,
            vectors: qdrant::VectorsConfig::default(),
            payload_index: BTreeMap::new(),
        }
    }

    /// Write one point as its own operation.
    fn upsert(&mut self, p: Point) {
        self.version += 1;
        let op = self.version;
        self.put(p, op);
    }

    /// Write one point as part of operation `op`: a point with the same id is
    /// replaced where it stands, so insertion order (the tie-break) is kept.
    fn put(&mut self, mut p: Point, op: u64) {
        p.version = op;
        match self.points.iter_mut().find(|q| q.id == p.id) {
            Some(q) => *q = p,
            None => self.points.push(p),
        }
    }

    /// Exact cosine k-NN: (index, similarity), best first, ties by insertion order.
    fn knn(&self, q: &[f32], k: usize) -> Vec<(usize, f64)> {
        let mut scored: Vec<(usize, f64)> = self
            .points
            .iter()
            .enumerate()
            .map(|(i, p)| (i, cosine(q, &p.vector)))
            .collect();
        scored.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
        scored.truncate(k);
        scored
    }
}

fn cosine(a: &[f32], b: &[f32]) -> f64 {
    let n = a.len().min(b.len());
    let (mut dot, mut na, mut nb) = (0.0f64, 0.0f64, 0.0f64);
    for i in 0..n {
        let (x, y) = (f64::from(a[i]), f64::from(b[i]));
        dot += x * y;
        na += x * x;
        nb += y * y;
    }
    if na == 0.0 || nb == 0.0 {
        0.0
    } else {
        dot / (na.sqrt() * nb.sqrt())
    }
}

/// The seeded collection. Qdrant point ids are integers (or UUIDs); Chroma's are
/// always strings, so a Chroma sim numbers its documents `"0"`, `"1"`, ...
fn seeded(string_ids: bool) -> Collection {
    let mut c = Collection::new(SEED_COLLECTION, 0);
    c.vectors = qdrant::VectorsConfig::Unnamed(qdrant::VectorParams::cosine(SEED_DIMS));
    for i in 0..SEED_DOCS {
        let text = seed_text(i);
        c.upsert(Point {
            id: if string_ids {
                json!(i.to_string())
            } else {
                json!(i)
            },
            vector: seed_vector(&text),
            named: BTreeMap::new(),
            payload: json!({"text": text, "n": i}),
            document: json!(text),
            version: 0,
        });
    }
    c
}

/// The simulated database's state and router.
pub(crate) struct VectorSim {
    api: SimApi,
    collections: Mutex<HashMap<String, Collection>>,
    next_id: std::sync::atomic::AtomicU64,
    llm: Arc<LlmSim>,
}

type Answer = (StatusCode, Value);

fn floats(v: &Value) -> Option<Vec<f32>> {
    v.as_array()?
        .iter()
        .map(|x| x.as_f64().map(|f| f as f32))
        .collect()
}

impl VectorSim {
    pub(crate) fn new(api: SimApi, llm: Arc<LlmSim>) -> Arc<Self> {
        let mut map = HashMap::new();
        map.insert(SEED_COLLECTION.to_string(), seeded(api == SimApi::Chroma));
        Arc::new(VectorSim {
            api,
            collections: Mutex::new(map),
            next_id: std::sync::atomic::AtomicU64::new(1),
            llm,
        })
    }

    pub(crate) async fn handle(
        self: Arc<Self>,
        req: Request<Incoming>,
    ) -> Result<Response<SimBody>, Infallible> {
        let start = Instant::now();
        let path = req.uri().path().to_string();
        if path.starts_with("/v1/") {
            return self.llm.clone().handle(req).await;
        }
        let method = req.method().clone();
        if self.api == SimApi::Qdrant && method == Method::GET {
            if let Some(text) = qdrant::health(&path) {
                return Ok(plain_text(text));
            }
        }
        // `Accept-Encoding: identity` is not honoured, on purpose (see the module docs).
        let gzip = self.api == SimApi::Qdrant;
        let body = match Limited::new(req.into_body(), MAX_BODY).collect().await {
            Ok(b) => b.to_bytes(),
            Err(_) => Bytes::new(),
        };
        let input: Value = if body.is_empty() {
            Value::Null
        } else {
            match serde_json::from_slice(&body) {
                Ok(v) => v,
                Err(e) => {
                    return Ok(self.reply(
                        (
                            StatusCode::BAD_REQUEST,
                            self.error(&format!("invalid JSON: {e}")),
                        ),
                        start,
                        gzip,
                    ))
                }
            }
        };
        let segs: Vec<&str> = path.trim_matches('/').split('/').collect();
        let answer = match self.api {
            SimApi::Qdrant => self.qdrant(&method, &segs, &input),
            _ => self.chroma(&method, &segs, &input),
        };
        Ok(self.reply(answer, start, gzip))
    }

    fn error(&self, msg: &str) -> Value {
        match self.api {
            SimApi::Qdrant => json!({"status": {"error": msg}, "time": 0.0}),
            _ => json!({"error": "InvalidArgumentError", "message": msg}),
        }
    }

    fn not_found(&self, what: &str) -> Answer {
        let msg = match self.api {
            SimApi::Qdrant => format!("Not found: Collection `{what}` doesn't exist!"),
            _ => format!("Collection [{what}] does not exist"),
        };
        let mut v = self.error(&msg);
        if self.api != SimApi::Qdrant {
            v["error"] = json!("NotFoundError");
        }
        (StatusCode::NOT_FOUND, v)
    }

    fn reply(&self, (status, mut v): Answer, start: Instant, gzip: bool) -> Response<SimBody> {
        let qdrant = self.api == SimApi::Qdrant;
        if qdrant {
            // Every API answer (`{"result", "status"}` or an error) carries the
            // server time; `GET /`'s bare version info does not.
            if let Some(o) = v.as_object_mut().filter(|o| o.contains_key("status")) {
                o.insert("time".into(), json!(start.elapsed().as_secs_f64()));
            }
        }
        let bytes = serde_json::to_vec(&v).unwrap_or_default();
        let (bytes, encoded) = if qdrant && gzip {
            let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
            match enc.write_all(&bytes).and_then(|()| enc.finish()) {
                Ok(z) => (z, true),
                Err(_) => (bytes, false),
            }
        } else {
            (bytes, false)
        };
        let mut resp = Response::new(Full::new(Bytes::from(bytes)).boxed_unsync());
        *resp.status_mut() = status;
        let h = resp.headers_mut();
        h.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        if encoded {
            h.insert(CONTENT_ENCODING, HeaderValue::from_static("gzip"));
        }
        resp
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Collection>> {
        // A panic while holding the lock cannot leave a half-written collection that
        // matters to a simulator; keep serving.
        self.collections
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn fresh_id(&self) -> u64 {
        self.next_id
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed)
    }

    // --- Chroma v2 ---

    fn chroma(&self, method: &Method, segs: &[&str], input: &Value) -> Answer {
        let ok = |v: Value| (StatusCode::OK, v);
        let segs = match segs {
            ["api", "v2", rest @ ..] => rest,
            _ => {
                return (
                    StatusCode::NOT_FOUND,
                    json!({"error": "NotFound", "message": "not found"}),
                )
            }
        };
        match (method, segs) {
            (&Method::GET, ["heartbeat"]) => ok(
                json!({"nanosecond heartbeat": std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos() as u64)}),
            ),
            (&Method::GET, ["version"]) => ok(json!("1.0.0")),
            (&Method::GET, ["pre-flight-checks"]) => {
                ok(json!({"max_batch_size": 1000, "supports_base64_encoding": false}))
            }
            (&Method::GET, ["auth", "identity"]) => {
                ok(json!({"user_id": "", "tenant": TENANT, "databases": [DATABASE]}))
            }
            (&Method::GET, ["tenants", t]) => ok(json!({"name": t})),
            (&Method::POST, ["tenants"]) => ok(json!({})),
            (&Method::GET, ["tenants", t, "databases", d]) => {
                ok(json!({"id": "00000000-0000-4000-8000-00000000d000", "name": d, "tenant": t}))
            }
            (&Method::POST, ["tenants", _, "databases"]) => ok(json!({})),
            (&Method::GET, ["tenants", t, "databases", d, "collections"]) => {
                let cols = self.lock();
                ok(Value::Array(
                    cols.values().map(|c| chroma_collection(c, t, d)).collect(),
                ))
            }
            (&Method::GET, ["tenants", _, "databases", _, "collections_count"]) => {
                ok(json!(self.lock().len()))
            }
            (&Method::POST, ["tenants", t, "databases", d, "collections"]) => {
                let Some(name) = input.get("name").and_then(Value::as_str) else {
                    return (
                        StatusCode::BAD_REQUEST,
                        self.error("missing collection name"),
                    );
                };
                let get_or_create = input
                    .get("get_or_create")
                    .and_then(Value::as_bool)
                    .unwrap_or(false);
                let mut cols = self.lock();
                if let Some(c) = cols.get(name) {
                    if get_or_create {
                        return ok(chroma_collection(c, t, d));
                    }
                    return (
                        StatusCode::CONFLICT,
                        json!({"error": "UniqueConstraintError", "message": format!("Collection [{name}] already exists")}),
                    );
                }
                let mut c = Collection::new(name, self.fresh_id());
                c.metadata = input.get("metadata").cloned().unwrap_or(Value::Null);
                let v = chroma_collection(&c, t, d);
                cols.insert(name.to_string(), c);
                ok(v)
            }
            (&Method::GET, ["tenants", t, "databases", d, "collections", key]) => {
                let cols = self.lock();
                match find(&cols, key) {
                    Some(c) => ok(chroma_collection(c, t, d)),
                    None => self.not_found(key),
                }
            }
            (&Method::DELETE, ["tenants", _, "databases", _, "collections", key]) => {
                let mut cols = self.lock();
                let name = find(&cols, key).map(|c| c.name.clone());
                match name {
                    Some(n) => {
                        cols.remove(&n);
                        ok(json!({}))
                    }
                    None => self.not_found(key),
                }
            }
            (m, ["tenants", _, "databases", _, "collections", key, action]) => {
                let mut cols = self.lock();
                let name = find(&cols, key).map(|c| c.name.clone());
                let Some(c) = name.and_then(|n| cols.get_mut(&n)) else {
                    return self.not_found(key);
                };
                match (m, *action) {
                    (&Method::GET, "count") => ok(json!(c.points.len())),
                    (&Method::POST, "add" | "upsert") => {
                        match chroma_add(c, input, *action == "add") {
                            Ok(()) => ok(json!({})),
                            Err(e) => (StatusCode::BAD_REQUEST, self.error(&e)),
                        }
                    }
                    (&Method::POST, "delete") => {
                        let ids: Vec<Value> = input
                            .get("ids")
                            .and_then(Value::as_array)
                            .cloned()
                            .unwrap_or_default();
                        c.points.retain(|p| !ids.contains(&p.id));
                        c.version += 1;
                        ok(json!({}))
                    }
                    (&Method::POST, "get") => ok(chroma_get(c, input)),
                    (&Method::POST, "query") => match chroma_query(c, input) {
                        Ok(v) => ok(v),
                        Err(e) => (StatusCode::BAD_REQUEST, self.error(&e)),
                    },
                    _ => (
                        StatusCode::NOT_FOUND,
                        json!({"error": "NotFound", "message": format!("no route {action}")}),
                    ),
                }
            }
            _ => (
                StatusCode::NOT_FOUND,
                json!({"error": "NotFound", "message": format!("no route /api/v2/{}", segs.join("/"))}),
            ),
        }
    }
}

/// A plain-text 200 (Qdrant's health endpoints), never compressed: probes and
/// `curl` read it as is.
fn plain_text(text: &'static str) -> Response<SimBody> {
    let mut resp = Response::new(Full::new(Bytes::from_static(text.as_bytes())).boxed_unsync());
    resp.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    resp
}

fn find<'a>(cols: &'a HashMap<String, Collection>, key: &str) -> Option<&'a Collection> {
    cols.get(key)
        .or_else(|| cols.values().find(|c| c.id == key))
}

fn chroma_collection(c: &Collection, tenant: &str, database: &str) -> Value {
    json!({
        "id": c.id, "name": c.name, "metadata": c.metadata,
        "configuration_json": {"hnsw": {"space": "cosine"}, "embedding_function": null},
        "dimension": c.points.first().map(|p| p.vector.len()),
        "tenant": tenant, "database": database, "log_position": 0, "version": c.version
    })
}

fn chroma_add(c: &mut Collection, input: &Value, add_only: bool) -> Result<(), String> {
    let ids = input
        .get("ids")
        .and_then(Value::as_array)
        .ok_or("ids are required")?;
    let embeddings = input
        .get("embeddings")
        .and_then(Value::as_array)
        .ok_or("embeddings are required (the sim embeds nothing itself)")?;
    if embeddings.len() != ids.len() {
        return Err(format!(
            "{} ids but {} embeddings",
            ids.len(),
            embeddings.len()
        ));
    }
    let col = |k: &str, i: usize| {
        input
            .get(k)
            .and_then(|v| v.get(i))
            .cloned()
            .unwrap_or(Value::Null)
    };
    for (i, id) in ids.iter().enumerate() {
        if add_only && c.points.iter().any(|p| &p.id == id) {
            continue;
        }
        let vector = floats(&embeddings[i]).ok_or("an embedding is not a list of numbers")?;
        c.upsert(Point {
            id: id.clone(),
            vector,
            named: BTreeMap::new(),
            payload: col("metadatas", i),
            document: col("documents", i),
            version: 0,
        });
    }
    Ok(())
}

fn includes(input: &Value, default: &[&str]) -> Vec<String> {
    match input.get("include").and_then(Value::as_array) {
        Some(a) => a
            .iter()
            .filter_map(|v| v.as_str().map(str::to_string))
            .collect(),
        None => default.iter().map(|s| s.to_string()).collect(),
    }
}

fn chroma_get(c: &Collection, input: &Value) -> Value {
    let ids = input.get("ids").and_then(Value::as_array);
    let inc = includes(input, &["documents", "metadatas"]);
    let pts: Vec<&Point> = c
        .points
        .iter()
        .filter(|p| ids.is_none_or(|ids| ids.contains(&p.id)))
        .collect();
    let pick = |k: &str, f: &dyn Fn(&Point) -> Value| -> Value {
        if inc.iter().any(|i| i == k) {
            Value::Array(pts.iter().map(|p| f(p)).collect())
        } else {
            Value::Null
        }
    };
    json!({
        "ids": pts.iter().map(|p| p.id.clone()).collect::<Vec<_>>(),
        "embeddings": pick("embeddings", &|p| json!(p.vector)),
        "documents": pick("documents", &|p| p.document.clone()),
        "uris": null, "data": null,
        "metadatas": pick("metadatas", &|p| p.payload.clone()),
        "include": inc,
    })
}

fn chroma_query(c: &Collection, input: &Value) -> Result<Value, String> {
    let qs = input
        .get("query_embeddings")
        .and_then(Value::as_array)
        .ok_or("query_embeddings are required")?;
    let n = input.get("n_results").and_then(Value::as_u64).unwrap_or(10) as usize;
    let inc = includes(input, &["documents", "metadatas", "distances"]);
    let has = |k: &str| inc.iter().any(|i| i == k);
    let (mut ids, mut dists, mut docs, mut metas, mut embs) =
        (vec![], vec![], vec![], vec![], vec![]);
    for q in qs {
        let q = floats(q).ok_or("a query embedding is not a list of numbers")?;
        let hits = c.knn(&q, n);
        ids.push(
            hits.iter()
                .map(|(i, _)| c.points[*i].id.clone())
                .collect::<Vec<_>>(),
        );
        dists.push(hits.iter().map(|(_, s)| json!(1.0 - s)).collect::<Vec<_>>());
        docs.push(
            hits.iter()
                .map(|(i, _)| c.points[*i].document.clone())
                .collect::<Vec<_>>(),
        );
        metas.push(
            hits.iter()
                .map(|(i, _)| c.points[*i].payload.clone())
                .collect::<Vec<_>>(),
        );
        embs.push(
            hits.iter()
                .map(|(i, _)| json!(c.points[*i].vector))
                .collect::<Vec<_>>(),
        );
    }
    let opt = |k: &str, v: Vec<Vec<Value>>| if has(k) { json!(v) } else { Value::Null };
    Ok(json!({
        "ids": ids,
        "embeddings": opt("embeddings", embs),
        "documents": opt("documents", docs),
        "uris": null, "data": null,
        "metadatas": opt("metadatas", metas),
        "distances": opt("distances", dists),
        "include": inc,
    }))
}

/// The true top-`k` of the seeded collection for a query text: what recall@k is
/// measured against.
pub fn seed_top_k(query: &str, k: usize) -> Vec<usize> {
    let c = seeded(false);
    c.knn(&seed_vector(query), k)
        .into_iter()
        .map(|(i, _)| i)
        .collect()
}
