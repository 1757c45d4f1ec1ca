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
//!
//! Each hit is kept as the text the database wrote (see [`super::span`]): kept hits
//! go back byte for byte, ids, scores, payloads and vectors included, and so does
//! everything outside the hit lists. Only the lists a fault changed are rewritten,
//! in the upstream's own layout (its separators and indentation).

use std::collections::HashSet;
use std::ops::Range;

use rand::Rng;
use rand_chacha::ChaCha8Rng;

use super::span::{self, compact_array, ArrayFmt, Node};
use super::{gauss, Skip};
use crate::api::{ApiKind, Endpoint};

/// One hit exactly as the database wrote it: its JSON text, or for Chroma the text
/// of its element in each parallel list (in the answer's column order).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Hit(Box<[Box<str>]>);

impl Hit {
    /// A hit from its JSON text (`None` when the text is not one JSON value).
    pub fn new(json: &str) -> Option<Hit> {
        span::parse(json, 0)?;
        Some(Hit(vec![json.into()].into_boxed_slice()))
    }

    /// The hit's JSON text, one part per Chroma list (one part elsewhere).
    pub fn parts(&self) -> &[Box<str>] {
        &self.0
    }

    fn part(&self, i: usize) -> &str {
        self.0.get(i).map_or("null", |p| p)
    }
}

/// Hits per query: one inner list per query in the request.
pub type Hits = Vec<Vec<Hit>>;

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

/// Depth of the answer read into nodes: enough to reach the hits of every shape
/// (Weaviate's `data.Get.<Class>[hit]`, Qdrant's `result[{points:[hit]}]`) and
/// tell their kind; inside a hit only the text is kept.
const KEEP_DEPTH: usize = 4;

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

/// Where the hit lists lie in the answer's text.
#[derive(Debug, Clone)]
enum Layout {
    /// The hits are the elements of one array.
    One(ArrayFmt),
    /// One list per element of an outer array (Qdrant search/batch, Milvus nested).
    Nested(ArrayFmt, Vec<ArrayFmt>),
    /// Qdrant query/batch: the outer array and, per group, the group object's span
    /// and its `points` array.
    Groups(ArrayFmt, Vec<(Range<usize>, ArrayFmt)>),
    /// Chroma: per column, its outer array and one inner list per query.
    Columns(Vec<(ArrayFmt, Vec<ArrayFmt>)>),
    /// Weaviate: one array per class.
    Lists(Vec<ArrayFmt>),
    /// An error inside a 200: no lists.
    Empty,
}

/// One answer read into hit lists, ready to be rewritten.
#[derive(Debug, Clone)]
pub(crate) struct Doc<'a> {
    src: &'a str,
    shape: Shape,
    layout: Layout,
    pub(crate) hits: Hits,
    /// The hits as the upstream sent them: lists still equal to these are left as
    /// they were, byte for byte.
    orig: Hits,
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

/// The elements of an array whose elements are all arrays.
fn arrays<'n, 'a>(v: &'n Node<'a>) -> Option<&'n [Node<'a>]> {
    let a = v.elements()?;
    a.iter().all(Node::is_array).then_some(a)
}

/// The elements of an array whose elements are all objects.
fn objects<'n, 'a>(v: &'n Node<'a>) -> Option<&'n [Node<'a>]> {
    let a = v.elements()?;
    a.iter().all(Node::is_object).then_some(a)
}

fn hits_of(src: &str, elems: &[Node<'_>]) -> Vec<Hit> {
    elems
        .iter()
        .map(|e| Hit(vec![e.text(src).into()].into_boxed_slice()))
        .collect()
}

fn fmt(n: &Node<'_>) -> Result<ArrayFmt, Skip> {
    ArrayFmt::of(n).ok_or(Skip::UnknownShape)
}

type Parsed = (Shape, Layout, Hits);

/// Read an answer. The shapes are told apart by their keys, so a `generic`
/// listener works too; `api` is accepted for symmetry with the other adapters.
pub(crate) fn parse(_api: ApiKind, body: &[u8]) -> Result<Doc<'_>, Skip> {
    let src = std::str::from_utf8(body).map_err(|_| Skip::NotJson)?;
    let root = span::parse(src, KEEP_DEPTH).ok_or(Skip::NotJson)?;
    if !root.is_object() {
        return Err(Skip::UnknownShape);
    }
    let (shape, layout, hits) = if let Some(result) = root.get("result") {
        qdrant(src, result)?
    } else if root.get("ids").is_some_and(Node::is_array) {
        chroma(src, &root)?
    } else if let Some(m) = root.get("matches") {
        let list = objects(m).ok_or(Skip::UnknownShape)?;
        (
            Shape::Pinecone,
            Layout::One(fmt(m)?),
            vec![hits_of(src, list)],
        )
    } else if let Some(code) = root.get("code").filter(|c| c.is_number()) {
        milvus(src, &root, code)?
    } else if root.get("data").is_some() || root.get("errors").is_some() {
        weaviate(src, &root)?
    } else {
        return Err(Skip::UnknownShape);
    };
    Ok(Doc {
        src,
        shape,
        layout,
        orig: hits.clone(),
        hits,
        error_in_200: false,
    })
}

fn qdrant(src: &str, result: &Node<'_>) -> Result<Parsed, Skip> {
    if let Some(points) = result.get("points") {
        let list = objects(points).ok_or(Skip::UnknownShape)?;
        return Ok((
            Shape::QdrantPoints,
            Layout::One(fmt(points)?),
            vec![hits_of(src, list)],
        ));
    }
    let arr = result.elements().ok_or(Skip::UnknownShape)?;
    if !arr.is_empty() {
        if let Some(lists) = arrays(result) {
            let mut hits = Vec::with_capacity(lists.len());
            let mut inner = Vec::with_capacity(lists.len());
            for l in lists {
                hits.push(hits_of(src, objects(l).ok_or(Skip::UnknownShape)?));
                inner.push(fmt(l)?);
            }
            return Ok((
                Shape::QdrantBatch,
                Layout::Nested(fmt(result)?, inner),
                hits,
            ));
        }
        let groups: Option<Vec<(&Node<'_>, &[Node<'_>])>> = arr
            .iter()
            .map(|r| {
                let p = r.get("points")?;
                objects(p).map(|_| (r, p.elements().unwrap_or_default()))
            })
            .collect();
        if let Some(groups) = groups {
            let mut hits = Vec::with_capacity(groups.len());
            let mut layout = Vec::with_capacity(groups.len());
            for (group, points) in groups {
                hits.push(hits_of(src, points));
                let p = group.get("points").ok_or(Skip::UnknownShape)?;
                layout.push((group.span.clone(), fmt(p)?));
            }
            return Ok((
                Shape::QdrantQueryBatch,
                Layout::Groups(fmt(result)?, layout),
                hits,
            ));
        }
    }
    let list = objects(result).ok_or(Skip::UnknownShape)?;
    Ok((
        Shape::QdrantList,
        Layout::One(fmt(result)?),
        vec![hits_of(src, list)],
    ))
}

fn chroma(src: &str, root: &Node<'_>) -> Result<Parsed, Skip> {
    let ids = root.get("ids").and_then(arrays).ok_or(Skip::UnknownShape)?;
    let lens: Vec<usize> = ids
        .iter()
        .map(|l| l.elements().map_or(0, <[_]>::len))
        .collect();
    let mut columns = Vec::new();
    let mut nodes: Vec<&[Node<'_>]> = Vec::new();
    let mut layout = Vec::new();
    for &col in CHROMA_COLUMNS {
        match root.get(col) {
            None => {}
            Some(v) if v.is_null() => {}
            Some(v) => {
                let lists = arrays(v).ok_or(Skip::UnknownShape)?;
                let fits = lists.len() == lens.len()
                    && lists
                        .iter()
                        .zip(&lens)
                        .all(|(l, n)| l.elements().map_or(0, <[_]>::len) == *n);
                if !fits {
                    return Err(Skip::UnknownShape);
                }
                columns.push(col);
                nodes.push(lists);
                let inner = lists.iter().map(fmt).collect::<Result<Vec<_>, _>>()?;
                layout.push((fmt(v)?, inner));
            }
        }
    }
    let mut hits = Vec::with_capacity(lens.len());
    for (q, n) in lens.iter().enumerate() {
        let mut list = Vec::with_capacity(*n);
        for i in 0..*n {
            let parts: Vec<Box<str>> = nodes
                .iter()
                .map(|lists| {
                    lists[q]
                        .elements()
                        .and_then(|l| l.get(i))
                        .map_or("null", |e| e.text(src))
                        .into()
                })
                .collect();
            list.push(Hit(parts.into_boxed_slice()));
        }
        hits.push(list);
    }
    Ok((Shape::Chroma(columns), Layout::Columns(layout), hits))
}

fn milvus(src: &str, root: &Node<'_>, code: &Node<'_>) -> Result<Parsed, Skip> {
    if code.as_i64(src) != Some(0) {
        return Ok((Shape::MilvusError, Layout::Empty, Vec::new()));
    }
    let data = root.get("data").ok_or(Skip::UnknownShape)?;
    let arr = data.elements().ok_or(Skip::UnknownShape)?;
    if !arr.is_empty() {
        if let Some(lists) = arrays(data) {
            let mut hits = Vec::with_capacity(lists.len());
            let mut inner = Vec::with_capacity(lists.len());
            for l in lists {
                hits.push(hits_of(src, objects(l).ok_or(Skip::UnknownShape)?));
                inner.push(fmt(l)?);
            }
            return Ok((Shape::MilvusNested, Layout::Nested(fmt(data)?, inner), hits));
        }
    }
    let list = objects(data).ok_or(Skip::UnknownShape)?;
    Ok((
        Shape::MilvusFlat,
        Layout::One(fmt(data)?),
        vec![hits_of(src, list)],
    ))
}

fn weaviate(src: &str, root: &Node<'_>) -> Result<Parsed, Skip> {
    let get = root.get("data").and_then(|d| d.get("Get"));
    let has_errors = root.get("errors").is_some_and(|e| !e.is_null());
    let Some(members) = get.and_then(Node::members) else {
        return if has_errors {
            Ok((Shape::WeaviateError, Layout::Empty, Vec::new()))
        } else {
            Err(Skip::UnknownShape)
        };
    };
    // A class named twice counts once, by its last value, as clients read it.
    let mut seen = HashSet::new();
    let mut last: Vec<&(std::borrow::Cow<'_, str>, Node<'_>)> = members
        .iter()
        .rev()
        .filter(|(k, _)| seen.insert(k.as_ref()))
        .collect();
    last.reverse();
    let mut classes = Vec::new();
    let mut hits = Vec::new();
    let mut lists = Vec::new();
    for (class, v) in last {
        if v.is_null() {
            continue;
        }
        hits.push(hits_of(src, objects(v).ok_or(Skip::UnknownShape)?));
        classes.push(class.to_string());
        lists.push(fmt(v)?);
    }
    if classes.is_empty() && has_errors {
        return Ok((Shape::WeaviateError, Layout::Empty, Vec::new()));
    }
    Ok((Shape::Weaviate(classes), Layout::Lists(lists), hits))
}

impl Doc<'_> {
    /// The shape, as a key part: earlier answers are reused only within one shape.
    pub(crate) fn tag(&self) -> String {
        match &self.shape {
            Shape::Chroma(cols) => format!("chroma:{}", cols.join(",")),
            Shape::Weaviate(classes) => format!("weaviate:{}", classes.join(",")),
            s => format!("{s:?}"),
        }
    }

    /// The hits as the upstream sent them.
    pub(crate) fn original(&self) -> &Hits {
        &self.orig
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
    /// longer follows score. Distances stay non-negative. Only the score's own text
    /// changes; the rest of each hit stays as it was.
    pub(crate) fn score_noise(&mut self, stddev: f64, rng: &mut ChaCha8Rng) -> Result<(), Skip> {
        let mut any = false;
        let distances = match &self.shape {
            Shape::Chroma(cols) => Some(cols.iter().position(|c| *c == "distances")),
            _ => None,
        };
        for list in &mut self.hits {
            for hit in list {
                let changed = match distances {
                    Some(None) => false,
                    Some(Some(col)) => {
                        let part = &mut hit.0[col];
                        match noisy_number(part, stddev, true, rng) {
                            Some(new) => {
                                *part = new.into();
                                true
                            }
                            None => false,
                        }
                    }
                    None => {
                        let part = &mut hit.0[0];
                        match noisy_score(&self.shape, part, stddev, rng) {
                            Some(new) => {
                                *part = new.into();
                                true
                            }
                            None => false,
                        }
                    }
                };
                any |= changed;
            }
        }
        if any {
            Ok(())
        } else {
            Err(Skip::NothingToChange)
        }
    }

    /// The answer in its original shape, with the current hits.
    pub(crate) fn write(self) -> Vec<u8> {
        if self.error_in_200 {
            let root = match &self.shape {
                Shape::Weaviate(classes) => {
                    let mut get = serde_json::Map::new();
                    for c in classes {
                        get.insert(c.clone(), serde_json::Value::Null);
                    }
                    let path: Vec<serde_json::Value> =
                        std::iter::once(serde_json::Value::from("Get"))
                            .chain(classes.first().cloned().map(serde_json::Value::from))
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
            return serde_json::to_vec(&root).unwrap_or_default();
        }
        let src = self.src;
        if self.hits == self.orig {
            return src.as_bytes().to_vec();
        }
        let mut edits: Vec<(Range<usize>, String)> = Vec::new();
        // The new text of list `q`, or `None` when it is still the upstream's.
        let changed = |q: usize, part: usize, fmt: Option<&ArrayFmt>| -> Option<String> {
            let list = &self.hits[q];
            if self.orig.get(q) == Some(list) {
                return None;
            }
            let items: Vec<&str> = list.iter().map(|h| h.part(part)).collect();
            Some(match fmt {
                Some(f) => f.write(src, &items),
                None => compact_array(&items),
            })
        };
        match &self.layout {
            Layout::One(f) => {
                let items: Vec<&str> = self.hits.iter().flatten().map(|h| h.part(0)).collect();
                edits.push((f.span.clone(), f.write(src, &items)));
            }
            Layout::Nested(outer, inner) => {
                nested(src, outer, inner, self.hits.len(), 0, &changed, &mut edits);
            }
            Layout::Columns(cols) => {
                for (c, (outer, inner)) in cols.iter().enumerate() {
                    nested(src, outer, inner, self.hits.len(), c, &changed, &mut edits);
                }
            }
            Layout::Groups(outer, groups) => {
                if groups.len() == self.hits.len() {
                    for (q, (_, points)) in groups.iter().enumerate() {
                        if let Some(t) = changed(q, 0, Some(points)) {
                            edits.push((points.span.clone(), t));
                        }
                    }
                } else {
                    let items: Vec<String> = (0..self.hits.len())
                        .map(|q| match groups.get(q) {
                            Some((group, points)) => {
                                let t = changed(q, 0, Some(points))
                                    .unwrap_or_else(|| src[points.span.clone()].to_string());
                                format!(
                                    "{}{t}{}",
                                    &src[group.start..points.span.start],
                                    &src[points.span.end..group.end]
                                )
                            }
                            None => format!(
                                "{{\"points\":{}}}",
                                changed(q, 0, None).unwrap_or_else(|| "[]".into())
                            ),
                        })
                        .collect();
                    edits.push((outer.span.clone(), outer.write(src, &items)));
                }
            }
            Layout::Lists(lists) => {
                for (q, f) in lists.iter().enumerate().take(self.hits.len()) {
                    if let Some(t) = changed(q, 0, Some(f)) {
                        edits.push((f.span.clone(), t));
                    }
                }
            }
            Layout::Empty => {}
        }
        span::splice(src, edits).into_bytes()
    }
}

/// The new text of hit list `q` (taking each hit's part `part`, in the layout
/// given), or `None` when the list is still the upstream's.
type ListText<'a> = dyn Fn(usize, usize, Option<&ArrayFmt>) -> Option<String> + 'a;

/// Edits for one list of lists: each changed inner list in place when there are as
/// many lists as before, else the outer array rebuilt (an earlier answer to a batch
/// of another size).
fn nested(
    src: &str,
    outer: &ArrayFmt,
    inner: &[ArrayFmt],
    lists: usize,
    part: usize,
    changed: &ListText<'_>,
    edits: &mut Vec<(Range<usize>, String)>,
) {
    if inner.len() == lists {
        for (q, f) in inner.iter().enumerate() {
            if let Some(t) = changed(q, part, Some(f)) {
                edits.push((f.span.clone(), t));
            }
        }
        return;
    }
    let items: Vec<String> = (0..lists)
        .map(|q| {
            let f = inner.get(q);
            changed(q, part, f)
                .or_else(|| f.map(|f| src[f.span.clone()].to_string()))
                .unwrap_or_else(|| "[]".into())
        })
        .collect();
    edits.push((outer.span.clone(), outer.write(src, &items)));
}

/// A number's text with N(0, stddev) added (kept non-negative for a distance);
/// `None` when the text is not a number.
fn noisy_number(
    text: &str,
    stddev: f64,
    is_distance: bool,
    rng: &mut ChaCha8Rng,
) -> Option<String> {
    let node = span::parse(text, 0)?;
    let v = node.as_f64(text)?;
    number_text(v, stddev, is_distance, rng)
}

fn number_text(v: f64, stddev: f64, is_distance: bool, rng: &mut ChaCha8Rng) -> Option<String> {
    let mut nv = v + stddev * gauss(rng);
    if is_distance {
        nv = nv.max(0.0);
    }
    serde_json::Number::from_f64(nv).map(|n| n.to_string())
}

/// A hit's text with noise on its score (Milvus `distance`, Weaviate
/// `_additional.distance|certainty|score`, elsewhere `score`); `None` when it has
/// no numeric score.
fn noisy_score(shape: &Shape, hit: &str, stddev: f64, rng: &mut ChaCha8Rng) -> Option<String> {
    let root = span::parse(hit, 2)?;
    let (slot, is_distance) = match shape {
        Shape::MilvusFlat | Shape::MilvusNested => (root.get("distance")?, false),
        Shape::Weaviate(_) => {
            let add = root.get("_additional")?;
            let key = ["distance", "certainty", "score"]
                .into_iter()
                .find(|k| add.get(k).is_some_and(Node::is_number))?;
            (add.get(key)?, key == "distance")
        }
        _ => (root.get("score")?, false),
    };
    let v = slot.as_f64(hit)?;
    let new = number_text(v, stddev, is_distance, rng)?;
    Some(span::splice(hit, vec![(slot.span.clone(), new)]))
}
