//! Search/query answers of each vector database, read into lists of hits and
//! written back in the same shape.
//!
//! Shapes (see `reference/ai-wire-formats.md`, "Vector databases"):
//! - Qdrant `points/search`: `{"result":[hit,...]}`; `points/query`:
//!   `{"result":{"points":[hit,...]}}`; `search/batch`: `{"result":[[hit,...],...]}`;
//!   `query/batch`: `{"result":[{"points":[...]},...]}`. Score: `score`.
//! - Chroma v2 `query`: parallel lists `ids`, `distances`, `documents`,
//!   `metadatas`, `embeddings`, `uris`, `data`, one inner list per query embedding.
//!   A hit is one position across every list, so every list is rewritten together.
//!   Score: `distances` (lower is closer).
//! - Milvus REST v2 `entities/search`: `{"code":0,"data":[hit,...]}` (or one list
//!   per query vector); score `distance`. A non-zero `code` is an error inside a 200.
//! - Weaviate GraphQL: `{"data":{"Get":{"Class":[hit,...]}}}`; score
//!   `_additional.distance`, `certainty` or `score`. `errors` can come inside a 200.
//! - Pinecone `query`: `{"matches":[hit,...]}`; score `score`.

use rand::Rng;
use rand_chacha::ChaCha8Rng;
use serde_json::{Map, Value};

use super::{gauss, Skip};
use crate::api::{ApiKind, Endpoint};

/// Hits per query: one inner list per query in the request, each hit as the
/// database wrote it (for Chroma, an object of one element from each parallel list).
pub type Hits = Vec<Vec<Value>>;

/// The parallel lists a Chroma query answer may hold, in the order Chroma writes them.
const CHROMA_COLUMNS: &[&str] = &[
    "ids",
    "embeddings",
    "documents",
    "uris",
    "data",
    "metadatas",
    "distances",
];

#[derive(Debug, Clone, PartialEq)]
enum Shape {
    QdrantList,
    QdrantPoints,
    QdrantBatch,
    QdrantQueryBatch,
    /// The parallel lists present (as lists of lists) in this answer.
    Chroma(Vec<&'static str>),
    MilvusFlat,
    MilvusNested,
    /// `code` is not 0: an error inside a 200, read as no hits.
    MilvusError,
    /// The classes under `data.Get` that hold a list of hits.
    Weaviate(Vec<String>),
    /// `errors` and no hits inside a 200.
    WeaviateError,
    Pinecone,
}

/// One answer read into hit lists, ready to be rewritten.
#[derive(Debug, Clone)]
pub(crate) struct Doc {
    shape: Shape,
    root: Value,
    pub(crate) hits: Hits,
    /// `empty_results` on a database that reports trouble inside a 200: write the
    /// error form rather than an empty list.
    error_in_200: bool,
}

/// Hits in a search/query answer, for the record's `results.returned`; `None` when
/// the endpoint is not a search or the body is not an answer brownout knows.
pub fn count_results(api: ApiKind, endpoint: Endpoint, body: &[u8]) -> Option<u64> {
    if !matches!(endpoint, Endpoint::Search | Endpoint::Query) {
        return None;
    }
    parse(api, body).ok().map(|d| d.count() as u64)
}

fn array_of_arrays(v: &Value) -> Option<&Vec<Value>> {
    let a = v.as_array()?;
    a.iter().all(Value::is_array).then_some(a)
}

fn array_of_objects(v: &Value) -> Option<&Vec<Value>> {
    let a = v.as_array()?;
    a.iter().all(Value::is_object).then_some(a)
}

/// Read an answer. The shapes are told apart by their keys, so a `generic`
/// listener works too; `api` is accepted for symmetry with the other adapters.
pub(crate) fn parse(_api: ApiKind, body: &[u8]) -> Result<Doc, Skip> {
    let root: Value = match serde_json::from_slice(body) {
        Ok(v) => v,
        Err(e) if e.is_data() || e.is_eof() => return Err(Skip::NotJson),
        Err(_) => return Err(Skip::NotJson),
    };
    let obj = root.as_object().ok_or(Skip::UnknownShape)?;
    let (shape, hits) = if let Some(result) = obj.get("result") {
        qdrant(result)?
    } else if obj.get("ids").is_some_and(|v| v.is_array()) {
        chroma(obj)?
    } else if let Some(m) = obj.get("matches") {
        (
            Shape::Pinecone,
            vec![array_of_objects(m).ok_or(Skip::UnknownShape)?.clone()],
        )
    } else if let Some(code) = obj.get("code").filter(|c| c.is_number()) {
        milvus(obj, code)?
    } else if obj.contains_key("data") || obj.contains_key("errors") {
        weaviate(obj)?
    } else {
        return Err(Skip::UnknownShape);
    };
    Ok(Doc {
        shape,
        root,
        hits,
        error_in_200: false,
    })
}

fn qdrant(result: &Value) -> Result<(Shape, Hits), Skip> {
    if let Some(points) = result.get("points") {
        let list = array_of_objects(points).ok_or(Skip::UnknownShape)?;
        return Ok((Shape::QdrantPoints, vec![list.clone()]));
    }
    let arr = result.as_array().ok_or(Skip::UnknownShape)?;
    if !arr.is_empty() {
        if let Some(lists) = array_of_arrays(result) {
            let mut hits = Vec::with_capacity(lists.len());
            for l in lists {
                hits.push(array_of_objects(l).ok_or(Skip::UnknownShape)?.clone());
            }
            return Ok((Shape::QdrantBatch, hits));
        }
        if arr.iter().all(|r| {
            r.get("points")
                .is_some_and(|p| array_of_objects(p).is_some())
        }) {
            let hits = arr
                .iter()
                .filter_map(|r| r.get("points").and_then(Value::as_array).cloned())
                .collect();
            return Ok((Shape::QdrantQueryBatch, hits));
        }
    }
    let list = array_of_objects(result).ok_or(Skip::UnknownShape)?;
    Ok((Shape::QdrantList, vec![list.clone()]))
}

fn chroma(obj: &Map<String, Value>) -> Result<(Shape, Hits), Skip> {
    let ids = obj
        .get("ids")
        .and_then(array_of_arrays)
        .ok_or(Skip::UnknownShape)?;
    let lens: Vec<usize> = ids
        .iter()
        .map(|l| l.as_array().map_or(0, Vec::len))
        .collect();
    let mut columns = Vec::new();
    for &col in CHROMA_COLUMNS {
        match obj.get(col) {
            None | Some(Value::Null) => {}
            Some(v) => {
                let lists = array_of_arrays(v).ok_or(Skip::UnknownShape)?;
                let fits = lists.len() == lens.len()
                    && lists
                        .iter()
                        .zip(&lens)
                        .all(|(l, n)| l.as_array().map_or(0, Vec::len) == *n);
                if !fits {
                    return Err(Skip::UnknownShape);
                }
                columns.push(col);
            }
        }
    }
    let mut hits = Vec::with_capacity(lens.len());
    for (q, n) in lens.iter().enumerate() {
        let mut list = Vec::with_capacity(*n);
        for i in 0..*n {
            let mut hit = Map::new();
            for &col in &columns {
                let v = obj
                    .get(col)
                    .and_then(|c| c.get(q))
                    .and_then(|l| l.get(i))
                    .cloned()
                    .unwrap_or(Value::Null);
                hit.insert(col.to_string(), v);
            }
            list.push(Value::Object(hit));
        }
        hits.push(list);
    }
    Ok((Shape::Chroma(columns), hits))
}

fn milvus(obj: &Map<String, Value>, code: &Value) -> Result<(Shape, Hits), Skip> {
    if code.as_i64() != Some(0) {
        return Ok((Shape::MilvusError, Vec::new()));
    }
    let data = obj.get("data").ok_or(Skip::UnknownShape)?;
    let arr = data.as_array().ok_or(Skip::UnknownShape)?;
    if !arr.is_empty() {
        if let Some(lists) = array_of_arrays(data) {
            let mut hits = Vec::with_capacity(lists.len());
            for l in lists {
                hits.push(array_of_objects(l).ok_or(Skip::UnknownShape)?.clone());
            }
            return Ok((Shape::MilvusNested, hits));
        }
    }
    let list = array_of_objects(data).ok_or(Skip::UnknownShape)?;
    Ok((Shape::MilvusFlat, vec![list.clone()]))
}

fn weaviate(obj: &Map<String, Value>) -> Result<(Shape, Hits), Skip> {
    let get = obj.get("data").and_then(|d| d.get("Get"));
    let has_errors = obj.get("errors").is_some_and(|e| !e.is_null());
    let Some(get) = get.and_then(Value::as_object) else {
        return if has_errors {
            Ok((Shape::WeaviateError, Vec::new()))
        } else {
            Err(Skip::UnknownShape)
        };
    };
    let mut classes = Vec::new();
    let mut hits = Vec::new();
    for (class, v) in get {
        match v {
            Value::Null => {}
            v => {
                hits.push(array_of_objects(v).ok_or(Skip::UnknownShape)?.clone());
                classes.push(class.clone());
            }
        }
    }
    if classes.is_empty() && has_errors {
        return Ok((Shape::WeaviateError, Vec::new()));
    }
    Ok((Shape::Weaviate(classes), hits))
}

impl Doc {
    /// The shape, as a key part: earlier answers are reused only within one shape.
    pub(crate) fn tag(&self) -> String {
        match &self.shape {
            Shape::Chroma(cols) => format!("chroma:{}", cols.join(",")),
            Shape::Weaviate(classes) => format!("weaviate:{}", classes.join(",")),
            s => format!("{s:?}"),
        }
    }

    /// Serve other hits (an earlier answer): a success again, whatever came before.
    pub(crate) fn replace(&mut self, hits: Hits) {
        self.hits = hits;
        self.error_in_200 = false;
    }

    /// Hits over every list.
    pub(crate) fn count(&self) -> usize {
        self.hits.iter().map(Vec::len).sum()
    }

    /// Remove round(fraction × n) hits of each list (at least one of a non-empty
    /// list), chosen at random; the rest keep their order.
    pub(crate) fn drop_fraction(
        &mut self,
        fraction: f64,
        rng: &mut ChaCha8Rng,
    ) -> Result<(), Skip> {
        if self.count() == 0 {
            return Err(Skip::NothingToChange);
        }
        let fraction = fraction.clamp(0.0, 1.0);
        for list in &mut self.hits {
            let n = list.len();
            if n == 0 {
                continue;
            }
            let k = ((fraction * n as f64).round() as usize).clamp(1, n);
            let mut keep = vec![true; n];
            let mut idx: Vec<usize> = (0..n).collect();
            for i in 0..k {
                let j = rng.random_range(i..n);
                idx.swap(i, j);
                keep[idx[i]] = false;
            }
            let mut i = 0;
            list.retain(|_| {
                let k = keep[i];
                i += 1;
                k
            });
        }
        Ok(())
    }

    /// Reorder each list of two or more hits so that the order really changes.
    pub(crate) fn shuffle(&mut self, rng: &mut ChaCha8Rng) -> Result<(), Skip> {
        let mut any = false;
        for list in &mut self.hits {
            let n = list.len();
            if n < 2 {
                continue;
            }
            let before = list.clone();
            for i in (1..n).rev() {
                let j = rng.random_range(0..=i);
                list.swap(i, j);
            }
            if *list == before {
                list.rotate_left(1);
            }
            any |= *list != before;
        }
        if any {
            Ok(())
        } else {
            Err(Skip::NothingToChange)
        }
    }

    /// Keep at most `max` hits per list.
    pub(crate) fn limit(&mut self, max: u64) -> Result<(), Skip> {
        let max = usize::try_from(max).unwrap_or(usize::MAX);
        if self.hits.iter().all(|l| l.len() <= max) {
            return Err(Skip::NothingToChange);
        }
        for list in &mut self.hits {
            list.truncate(max);
        }
        Ok(())
    }

    /// No hits; Milvus and Weaviate say so the way they do under load, with an
    /// error inside a 200 that naive clients read as zero hits.
    pub(crate) fn empty(&mut self) {
        for list in &mut self.hits {
            list.clear();
        }
        self.error_in_200 = matches!(
            self.shape,
            Shape::MilvusFlat | Shape::MilvusNested | Shape::Weaviate(_)
        );
    }

    /// Add N(0, stddev) to every hit's score, keeping the hits' order, so rank no
    /// longer follows score. Distances stay non-negative.
    pub(crate) fn score_noise(&mut self, stddev: f64, rng: &mut ChaCha8Rng) -> Result<(), Skip> {
        let mut any = false;
        let shape = self.shape.clone();
        for list in &mut self.hits {
            for hit in list {
                let Some((slot, is_distance)) = score_slot(&shape, hit) else {
                    continue;
                };
                let Some(v) = slot.as_f64() else { continue };
                let mut nv = v + stddev * gauss(rng);
                if is_distance {
                    nv = nv.max(0.0);
                }
                if let Some(n) = serde_json::Number::from_f64(nv) {
                    *slot = Value::Number(n);
                    any = true;
                }
            }
        }
        if any {
            Ok(())
        } else {
            Err(Skip::NothingToChange)
        }
    }

    /// The answer in its original shape, with the current hits.
    pub(crate) fn write(mut self) -> Vec<u8> {
        if self.error_in_200 {
            self.root = match &self.shape {
                Shape::Weaviate(classes) => {
                    let mut get = Map::new();
                    for c in classes {
                        get.insert(c.clone(), Value::Null);
                    }
                    let path: Vec<Value> = std::iter::once(Value::from("Get"))
                        .chain(classes.first().cloned().map(Value::from))
                        .collect();
                    serde_json::json!({
                        "data": {"Get": get},
                        "errors": [{
                            "locations": [{"column": 6, "line": 1}],
                            "message": "explorer: get class: vector search: context deadline exceeded",
                            "path": path
                        }]
                    })
                }
                _ => serde_json::json!({
                    "code": 2,
                    "message": "service unavailable: the query node is not ready, retry later"
                }),
            };
            return serde_json::to_vec(&self.root).unwrap_or_default();
        }
        let hits = std::mem::take(&mut self.hits);
        let root = &mut self.root;
        match &self.shape {
            Shape::QdrantList | Shape::Pinecone | Shape::MilvusFlat => {
                let key = match self.shape {
                    Shape::QdrantList => "result",
                    Shape::Pinecone => "matches",
                    _ => "data",
                };
                let flat: Vec<Value> = hits.into_iter().flatten().collect();
                root[key] = Value::Array(flat);
            }
            Shape::QdrantPoints => {
                let flat: Vec<Value> = hits.into_iter().flatten().collect();
                root["result"]["points"] = Value::Array(flat);
            }
            Shape::QdrantBatch | Shape::MilvusNested => {
                let key = if self.shape == Shape::QdrantBatch {
                    "result"
                } else {
                    "data"
                };
                root[key] = Value::Array(hits.into_iter().map(Value::Array).collect());
            }
            Shape::QdrantQueryBatch => {
                root["result"] = Value::Array(
                    hits.into_iter()
                        .map(|l| serde_json::json!({ "points": l }))
                        .collect(),
                );
            }
            Shape::Chroma(columns) => {
                for &col in columns {
                    let lists: Vec<Value> = hits
                        .iter()
                        .map(|l| {
                            Value::Array(
                                l.iter()
                                    .map(|h| h.get(col).cloned().unwrap_or(Value::Null))
                                    .collect(),
                            )
                        })
                        .collect();
                    root[col] = Value::Array(lists);
                }
            }
            Shape::Weaviate(classes) => {
                for (class, list) in classes.iter().zip(hits) {
                    root["data"]["Get"][class.as_str()] = Value::Array(list);
                }
            }
            Shape::MilvusError | Shape::WeaviateError => {}
        }
        serde_json::to_vec(&self.root).unwrap_or_default()
    }
}

/// Where a hit keeps its score, and whether it is a distance (never negative).
fn score_slot<'a>(shape: &Shape, hit: &'a mut Value) -> Option<(&'a mut Value, bool)> {
    match shape {
        Shape::Chroma(_) => hit.get_mut("distances").map(|v| (v, true)),
        Shape::MilvusFlat | Shape::MilvusNested => hit.get_mut("distance").map(|v| (v, false)),
        Shape::Weaviate(_) => {
            let add = hit.get_mut("_additional")?.as_object_mut()?;
            let key = ["distance", "certainty", "score"]
                .into_iter()
                .find(|k| add.get(*k).is_some_and(Value::is_number))?;
            add.get_mut(key).map(|v| (v, key == "distance"))
        }
        _ => hit.get_mut("score").map(|v| (v, false)),
    }
}
