//! The simulated Qdrant's REST API (`brownout sim --api qdrant`).
//!
//! It answers what the official `qdrant-client` (proven with 1.20.0, which speaks
//! only the Query API) sends, in the shapes of the real server (Qdrant 1.19:
//! `lib/api/src/rest/schema.rs`, `docs/redoc/master/openapi.json`), so that the
//! client's own pydantic models accept every answer:
//!
//! - service: `GET /` (version info, checked by the client on construction),
//!   `GET /healthz|livez|readyz` (plain text, served by [`super::VectorSim`]);
//! - collections: create (`vectors` as one unnamed or several named vector
//!   params), get (a complete `CollectionInfo`), `exists`, list, delete, aliases,
//!   payload indexes;
//! - points: upsert (`points` or `batch`), retrieve (`POST .../points`,
//!   `GET .../points/{id}`), delete (by ids or filter), scroll (id order,
//!   `next_page_offset`), count;
//! - search: `POST .../points/query` and `.../query/batch` (nearest to a vector or
//!   to a stored point, or no query: id order), and the older
//!   `.../points/search` and `.../search/batch`, which Qdrant 1.19 still serves
//!   (brownout's drills use them).
//!
//! Search is exact over every point with the collection's distance (`Cosine`,
//! `Dot`, `Euclid`, `Manhattan`, scored and ordered as Qdrant does: similarities
//! best-high, distances best-low, `score_threshold` strict), with payload filters
//! (`must`/`should`/`must_not`/`min_should`, `match`, `range`, `values_count`,
//! `is_empty`, `is_null`, `has_id`, `has_vector`) ported from Qdrant's condition
//! checker. What the sim does not do (sparse and multi-vectors, inference,
//! prefetch and fusion, recommend/discover, geo and datetime filters, nested
//! filters, `order_by`) is refused with a 400 that says so, never half-answered.

use std::cmp::Ordering;
use std::collections::{BTreeMap, HashSet};

use http::{Method, StatusCode};
use serde_json::{json, Map, Value};

use super::{floats, Answer, Collection, Point, VectorSim};

/// The server version `GET /` reports: the newest Qdrant release whose REST shapes
/// the sim follows. qdrant-client warns unless the major versions match and the
/// minors differ by at most one, so 1.19 serves clients 1.18 to 1.20 quietly.
pub(crate) const VERSION: &str = "1.19.0";
/// The commit of Qdrant's `v1.19.0` tag, which a release build reports.
const COMMIT: &str = "74f3e85b9473c62560006c043e13737ce6b48412";
/// `GET /`'s title, as the real server spells it.
const TITLE: &str = "qdrant - vector search engine";

/// What a Qdrant request can fail with, worded as Qdrant words it
/// (`{"status":{"error":"<this>"}}`) so that clients and brownout's error presets see
/// the real messages.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub(super) enum QdrantError {
    /// The body does not deserialize into the request type (real: 400).
    #[error("Format error in JSON body: {0}")]
    Format(String),
    /// The request is well formed but wrong for this collection (real: 400).
    #[error("Wrong input: {0}")]
    BadInput(String),
    /// A collection or point that does not exist (real: 404).
    #[error("Not found: {0}")]
    NotFound(String),
    /// Creating a collection that exists (real: 409).
    #[error("Wrong input: Collection `{0}` already exists!")]
    AlreadyExists(String),
    /// A real Qdrant feature the simulator does not implement: a 400 that says so,
    /// rather than an answer that looks right and is not.
    #[error("Wrong input: brownout's simulated Qdrant does not support {0}")]
    Unsupported(String),
}

impl QdrantError {
    /// The HTTP status the real server answers this error with.
    pub(super) fn status(&self) -> StatusCode {
        match self {
            QdrantError::NotFound(_) => StatusCode::NOT_FOUND,
            QdrantError::AlreadyExists(_) => StatusCode::CONFLICT,
            QdrantError::Format(_) | QdrantError::BadInput(_) | QdrantError::Unsupported(_) => {
                StatusCode::BAD_REQUEST
            }
        }
    }

    fn collection(name: &str) -> Self {
        QdrantError::NotFound(format!("Collection `{name}` doesn't exist!"))
    }

    fn dimension(expected: usize, got: usize) -> Self {
        QdrantError::BadInput(format!(
            "Vector dimension error: expected dim: {expected}, got {got}"
        ))
    }

    fn vector_name(name: &str) -> Self {
        QdrantError::BadInput(format!("Not existing vector name error: {name}"))
    }
}

type Result<T> = std::result::Result<T, QdrantError>;

// --- point ids ---

/// A Qdrant point id: an unsigned integer or a UUID (kept in its canonical
/// lowercase hyphenated form). The derived order is Qdrant's: every integer before
/// every UUID, which is the order `scroll` pages in.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(super) enum PointId {
    Num(u64),
    Uuid(String),
}

impl PointId {
    /// An id from a request body: a JSON integer or a UUID string (a numeric string
    /// is not an id in a body, as in Qdrant).
    pub(super) fn from_json(v: &Value) -> Result<Self> {
        if let Some(n) = v.as_u64() {
            return Ok(PointId::Num(n));
        }
        if let Some(u) = v.as_str().and_then(canonical_uuid) {
            return Ok(PointId::Uuid(u));
        }
        Err(QdrantError::Format(format!(
            "value {v} is not a valid point ID, valid values are either an unsigned integer or a UUID"
        )))
    }

    /// An id from a URL path segment, where numbers arrive as text.
    fn from_path(s: &str) -> Option<Self> {
        s.parse::<u64>()
            .ok()
            .map(PointId::Num)
            .or_else(|| canonical_uuid(s).map(PointId::Uuid))
    }

    pub(super) fn to_json(&self) -> Value {
        match self {
            PointId::Num(n) => json!(n),
            PointId::Uuid(u) => json!(u),
        }
    }

    /// The id of a stored point (stored ids are canonical, so this only fails for a
    /// point a Chroma request stored, which a Qdrant sim never has).
    fn of(p: &Point) -> Option<Self> {
        PointId::from_json(&p.id).ok()
    }
}

impl std::fmt::Display for PointId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PointId::Num(n) => write!(f, "{n}"),
            PointId::Uuid(u) => write!(f, "{u}"),
        }
    }
}

/// A UUID in any of the forms the `uuid` crate parses (hyphenated, simple, braced,
/// URN), as lowercase hyphenated text; `None` if it is not one.
fn canonical_uuid(s: &str) -> Option<String> {
    let s = s.strip_prefix("urn:uuid:").unwrap_or(s);
    let s = s
        .strip_prefix('{')
        .and_then(|s| s.strip_suffix('}'))
        .unwrap_or(s);
    if !s.is_ascii() {
        return None;
    }
    let hex: String = match s.len() {
        32 => s.to_string(),
        36 => {
            let b = s.as_bytes();
            if [8, 13, 18, 23].iter().any(|&i| b[i] != b'-') {
                return None;
            }
            s.chars().filter(|&c| c != '-').collect()
        }
        _ => return None,
    };
    if hex.len() != 32 || !hex.bytes().all(|c| c.is_ascii_hexdigit()) {
        return None;
    }
    let h = hex.to_ascii_lowercase();
    Some(format!(
        "{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    ))
}

// --- vector configuration and distances ---

/// A collection's distance function, with Qdrant's scoring: the score of Cosine
/// and Dot is a similarity (larger is better), of Euclid and Manhattan a distance
/// (smaller is better).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Distance {
    Cosine,
    Dot,
    Euclid,
    Manhattan,
}

impl Distance {
    fn parse(s: &str) -> Option<Self> {
        match s {
            "Cosine" => Some(Distance::Cosine),
            "Dot" => Some(Distance::Dot),
            "Euclid" => Some(Distance::Euclid),
            "Manhattan" => Some(Distance::Manhattan),
            _ => None,
        }
    }

    fn name(self) -> &'static str {
        match self {
            Distance::Cosine => "Cosine",
            Distance::Dot => "Dot",
            Distance::Euclid => "Euclid",
            Distance::Manhattan => "Manhattan",
        }
    }

    /// The score of stored vector `p` for query `q`.
    pub(super) fn score(self, q: &[f32], p: &[f32]) -> f64 {
        let pairs = q.iter().zip(p).map(|(a, b)| (f64::from(*a), f64::from(*b)));
        match self {
            Distance::Cosine => super::cosine(q, p),
            Distance::Dot => pairs.map(|(a, b)| a * b).sum(),
            Distance::Euclid => pairs.map(|(a, b)| (a - b) * (a - b)).sum::<f64>().sqrt(),
            Distance::Manhattan => pairs.map(|(a, b)| (a - b).abs()).sum(),
        }
    }

    fn larger_is_better(self) -> bool {
        matches!(self, Distance::Cosine | Distance::Dot)
    }

    /// Best first.
    fn rank(self, a: f64, b: f64) -> Ordering {
        if self.larger_is_better() {
            b.total_cmp(&a)
        } else {
            a.total_cmp(&b)
        }
    }

    /// Qdrant's `check_threshold`: strictly better than the threshold.
    fn passes(self, score: f64, threshold: f64) -> bool {
        if self.larger_is_better() {
            score > threshold
        } else {
            score < threshold
        }
    }
}

/// One vector's parameters. `size: None` only for a collection created without a
/// `vectors` config (a leniency of the sim): its size is the first vector's.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct VectorParams {
    size: Option<usize>,
    distance: Distance,
}

impl VectorParams {
    pub(super) fn cosine(size: usize) -> Self {
        VectorParams {
            size: Some(size),
            distance: Distance::Cosine,
        }
    }

    fn to_json(&self, inferred: usize) -> Value {
        json!({"size": self.size.unwrap_or(inferred), "distance": self.distance.name()})
    }
}

/// A collection's vectors: one unnamed vector (`"vectors": {"size", "distance"}`)
/// or named ones (`"vectors": {"<name>": {"size", "distance"}}`), selected by
/// `using` in queries.
#[derive(Debug, Clone, PartialEq)]
pub(super) enum VectorsConfig {
    Unnamed(VectorParams),
    Named(BTreeMap<String, VectorParams>),
}

impl Default for VectorsConfig {
    /// What a collection created without a `vectors` config gets: one Cosine vector
    /// of the first upserted vector's size.
    fn default() -> Self {
        VectorsConfig::Unnamed(VectorParams {
            size: None,
            distance: Distance::Cosine,
        })
    }
}

impl VectorsConfig {
    fn parse(v: Option<&Value>) -> Result<Self> {
        let Some(v) = v.filter(|v| !v.is_null()) else {
            return Ok(VectorsConfig::default());
        };
        let Some(obj) = v.as_object() else {
            return Err(QdrantError::Format(
                "`vectors` must be an object of vector params or of named vector params".into(),
            ));
        };
        if obj.contains_key("size") || obj.contains_key("distance") {
            return Ok(VectorsConfig::Unnamed(parse_params(v, "vectors")?));
        }
        let mut named = BTreeMap::new();
        for (name, p) in obj {
            named.insert(name.clone(), parse_params(p, &format!("vectors.{name}"))?);
        }
        Ok(VectorsConfig::Named(named))
    }

    /// The parameters `using` selects: `""` is the unnamed vector.
    fn params(&self, using: &str) -> Result<&VectorParams> {
        match self {
            VectorsConfig::Unnamed(p) if using.is_empty() => Ok(p),
            VectorsConfig::Named(m) => m.get(using).ok_or_else(|| QdrantError::vector_name(using)),
            VectorsConfig::Unnamed(_) => Err(QdrantError::vector_name(using)),
        }
    }

    fn to_json(&self, c: &Collection) -> Value {
        match self {
            VectorsConfig::Unnamed(p) => p.to_json(c.points.first().map_or(0, |p| p.vector.len())),
            VectorsConfig::Named(m) => Value::Object(
                m.iter()
                    .map(|(name, p)| {
                        let inferred = c
                            .points
                            .iter()
                            .find_map(|q| q.named.get(name))
                            .map_or(0, Vec::len);
                        (name.clone(), p.to_json(inferred))
                    })
                    .collect(),
            ),
        }
    }
}

fn parse_params(v: &Value, field: &str) -> Result<VectorParams> {
    if v.get("multivector_config").is_some_and(|m| !m.is_null()) {
        return Err(QdrantError::Unsupported("multivectors".into()));
    }
    let size = match v.get("size") {
        Some(s) => s.as_u64().ok_or_else(|| {
            QdrantError::Format(format!("{field}.size: invalid type, expected usize"))
        })?,
        None => {
            return Err(QdrantError::Format(format!(
                "{field}: missing field `size`"
            )))
        }
    };
    if size == 0 || size > 65536 {
        return Err(QdrantError::BadInput(format!(
            "{field}.size: value {size} invalid, must be from 1 to 65536"
        )));
    }
    let distance = v
        .get("distance")
        .and_then(Value::as_str)
        .and_then(Distance::parse)
        .ok_or_else(|| {
            QdrantError::Format(format!(
                "{field}.distance: unknown variant {}, expected one of `Cosine`, `Euclid`, `Dot`, `Manhattan`",
                v.get("distance").unwrap_or(&Value::Null)
            ))
        })?;
    Ok(VectorParams {
        size: Some(size as usize),
        distance,
    })
}

/// A dense vector from a request, checked against `params`; Cosine vectors are
/// normalised as Qdrant stores them.
fn dense(v: &Value, params: &VectorParams) -> Result<Vec<f32>> {
    let Some(arr) = v.as_array() else {
        if v.get("indices").is_some() {
            return Err(QdrantError::Unsupported("sparse vectors".into()));
        }
        if v.get("model").is_some() {
            return Err(QdrantError::Unsupported(
                "inference (documents, images, objects)".into(),
            ));
        }
        return Err(QdrantError::Format(format!("{v} is not a vector")));
    };
    if arr.first().is_some_and(Value::is_array) {
        return Err(QdrantError::Unsupported("multivectors".into()));
    }
    let mut out = floats(v)
        .ok_or_else(|| QdrantError::Format("a vector must be a list of numbers".into()))?;
    if let Some(size) = params.size {
        if out.len() != size {
            return Err(QdrantError::dimension(size, out.len()));
        }
    }
    if params.distance == Distance::Cosine {
        let norm = out
            .iter()
            .map(|x| f64::from(*x) * f64::from(*x))
            .sum::<f64>()
            .sqrt();
        if norm > 0.0 {
            for x in &mut out {
                *x = (f64::from(*x) / norm) as f32;
            }
        }
    }
    Ok(out)
}

/// A point's vector (or vectors) from an upsert, as (unnamed, named).
type Vectors = (Vec<f32>, BTreeMap<String, Vec<f32>>);

fn point_vectors(cfg: &VectorsConfig, v: Option<&Value>) -> Result<Vectors> {
    let Some(v) = v.filter(|v| !v.is_null()) else {
        return Err(QdrantError::Format("missing field `vector`".into()));
    };
    match (cfg, v) {
        (VectorsConfig::Unnamed(p), Value::Object(m)) => {
            // `{"": [...]}` is the unnamed vector spelled as a named one.
            let mut unnamed = Vec::new();
            for (name, x) in m {
                if !name.is_empty() {
                    return Err(QdrantError::vector_name(name));
                }
                unnamed = dense(x, p)?;
            }
            Ok((unnamed, BTreeMap::new()))
        }
        (VectorsConfig::Unnamed(p), _) => Ok((dense(v, p)?, BTreeMap::new())),
        (VectorsConfig::Named(params), Value::Object(m)) => {
            let mut named = BTreeMap::new();
            for (name, x) in m {
                let p = params
                    .get(name)
                    .ok_or_else(|| QdrantError::vector_name(name))?;
                named.insert(name.clone(), dense(x, p)?);
            }
            Ok((Vec::new(), named))
        }
        (VectorsConfig::Named(_), _) => Err(QdrantError::vector_name("")),
    }
}

/// A stored point's vector under `using` (`""`: the unnamed one), if it has one.
fn vector_of<'a>(p: &'a Point, using: &str) -> Option<&'a [f32]> {
    if using.is_empty() {
        (!p.vector.is_empty()).then_some(p.vector.as_slice())
    } else {
        p.named.get(using).map(Vec::as_slice)
    }
}

// --- payload filters (a port of Qdrant's condition checker) ---

#[derive(Debug, Clone, PartialEq)]
enum PathItem {
    Key(String),
    Index(usize),
    All,
}

/// A payload key path: `a.b`, `a[].b`, `a[0]`.
fn parse_path(key: &str) -> Result<Vec<PathItem>> {
    let bad = || QdrantError::BadInput(format!("Invalid payload key path `{key}`"));
    let mut out = Vec::new();
    for seg in key.split('.') {
        let (name, mut rest) = match seg.find('[') {
            Some(i) => (&seg[..i], &seg[i..]),
            None => (seg, ""),
        };
        if name.is_empty() {
            return Err(bad());
        }
        out.push(PathItem::Key(name.to_string()));
        while !rest.is_empty() {
            let close = rest.find(']').ok_or_else(bad)?;
            let inner = &rest[1..close];
            out.push(if inner.is_empty() {
                PathItem::All
            } else {
                PathItem::Index(inner.parse().map_err(|_| bad())?)
            });
            rest = &rest[close + 1..];
            if !rest.is_empty() && !rest.starts_with('[') {
                return Err(bad());
            }
        }
    }
    Ok(out)
}

/// Every value at `path` in `payload` (Qdrant's `value_get`: keys index objects,
/// `[]` flattens an array, `[n]` picks one element).
fn values_at<'a>(payload: &'a Value, path: &[PathItem], out: &mut Vec<&'a Value>) {
    let Some((head, tail)) = path.split_first() else {
        out.push(payload);
        return;
    };
    match (head, payload) {
        (PathItem::Key(k), Value::Object(m)) => {
            if let Some(v) = m.get(k) {
                values_at(v, tail, out);
            }
        }
        (PathItem::Index(i), Value::Array(a)) => {
            if let Some(v) = a.get(*i) {
                values_at(v, tail, out);
            }
        }
        (PathItem::All, Value::Array(a)) => a.iter().for_each(|v| values_at(v, tail, out)),
        _ => {}
    }
}

#[derive(Debug, Clone, PartialEq)]
enum Match {
    Value(Value),
    Text(String),
    TextAny(String),
    Prefix(String),
    Any(Vec<Value>),
    Except(Vec<Value>),
}

impl Match {
    fn parse(v: &Value) -> Result<Self> {
        let text = |k: &str| v.get(k).and_then(Value::as_str).map(str::to_string);
        let list = |k: &str| v.get(k).and_then(Value::as_array).cloned();
        if let Some(x) = v.get("value") {
            return match x {
                Value::Bool(_) | Value::String(_) => Ok(Match::Value(x.clone())),
                Value::Number(n) if n.as_i64().is_some() => Ok(Match::Value(x.clone())),
                _ => Err(QdrantError::Format(format!(
                    "match.value {x} is not a bool, an integer or a string"
                ))),
            };
        }
        if let Some(t) = text("text")
            .or_else(|| text("phrase"))
            .or_else(|| text("substring"))
        {
            return Ok(Match::Text(t));
        }
        if let Some(t) = text("text_any") {
            return Ok(Match::TextAny(t));
        }
        if let Some(t) = text("prefix") {
            return Ok(Match::Prefix(t));
        }
        if let Some(l) = list("any") {
            return Ok(Match::Any(l));
        }
        if let Some(l) = list("except") {
            return Ok(Match::Except(l));
        }
        Err(QdrantError::Format(format!(
            "match {v} did not match any variant of untagged enum Match"
        )))
    }

    fn check_match(&self, payload: &Value) -> bool {
        let int_in = |list: &[Value], n: i64| list.iter().any(|i| i.as_i64() == Some(n));
        match self {
            Match::Value(want) => match (payload, want) {
                (Value::Bool(a), Value::Bool(b)) => a == b,
                (Value::String(a), Value::String(b)) => a == b,
                (Value::Number(a), Value::Number(b)) => {
                    a.as_i64().is_some_and(|a| Some(a) == b.as_i64())
                }
                _ => false,
            },
            Match::Text(t) => payload.as_str().is_some_and(|s| s.contains(t.as_str())),
            Match::TextAny(t) => payload
                .as_str()
                .is_some_and(|s| t.split_whitespace().any(|tok| s.contains(tok))),
            Match::Prefix(t) => payload.as_str().is_some_and(|s| s.starts_with(t.as_str())),
            Match::Any(list) => match payload {
                Value::String(s) => list.iter().any(|i| i.as_str() == Some(s)),
                Value::Number(n) => n.as_i64().is_some_and(|n| int_in(list, n)),
                _ => false,
            },
            Match::Except(list) => {
                // An empty or all-string list deserializes as strings in Qdrant.
                let strings = list.iter().all(Value::is_string);
                match payload {
                    Value::String(s) if strings => !list.iter().any(|i| i.as_str() == Some(s)),
                    Value::Number(n) if !strings => n.as_i64().is_none_or(|n| !int_in(list, n)),
                    Value::Null => false,
                    _ => true,
                }
            }
        }
    }
}

/// `lt`/`gt`/`gte`/`lte` over numbers (a payload range, or `values_count`).
#[derive(Debug, Clone, Copy, PartialEq, Default)]
struct Bounds {
    lt: Option<f64>,
    gt: Option<f64>,
    gte: Option<f64>,
    lte: Option<f64>,
}

impl Bounds {
    fn parse(v: &Value, what: &str) -> Result<Self> {
        let mut b = Bounds::default();
        for (k, slot) in [
            ("lt", &mut b.lt),
            ("gt", &mut b.gt),
            ("gte", &mut b.gte),
            ("lte", &mut b.lte),
        ] {
            match v.get(k) {
                None | Some(Value::Null) => {}
                Some(Value::String(_)) => {
                    return Err(QdrantError::Unsupported("datetime ranges".into()))
                }
                Some(x) => {
                    *slot = Some(x.as_f64().ok_or_else(|| {
                        QdrantError::Format(format!("{what}.{k}: {x} is not a number"))
                    })?)
                }
            }
        }
        Ok(b)
    }

    fn check(&self, x: f64) -> bool {
        self.lt.is_none_or(|b| x < b)
            && self.gt.is_none_or(|b| x > b)
            && self.lte.is_none_or(|b| x <= b)
            && self.gte.is_none_or(|b| x >= b)
    }
}

fn count_of(v: &Value) -> f64 {
    match v {
        Value::Null => 0.0,
        Value::Array(a) => a.len() as f64,
        _ => 1.0,
    }
}

/// A `{"key": ..., "match"|"range"|...}` condition.
#[derive(Debug, Clone, PartialEq)]
struct FieldCondition {
    key: Vec<PathItem>,
    matcher: Option<Match>,
    range: Option<Bounds>,
    values_count: Option<Bounds>,
    is_empty: Option<bool>,
    is_null: Option<bool>,
}

impl FieldCondition {
    fn parse(v: &Value, key: &str) -> Result<Self> {
        for geo in ["geo_bounding_box", "geo_radius", "geo_polygon"] {
            if v.get(geo).is_some_and(|g| !g.is_null()) {
                return Err(QdrantError::Unsupported("geo conditions".into()));
            }
        }
        let present = |k: &str| v.get(k).filter(|x| !x.is_null());
        let c = FieldCondition {
            key: parse_path(key)?,
            matcher: present("match").map(Match::parse).transpose()?,
            range: present("range")
                .map(|r| Bounds::parse(r, "range"))
                .transpose()?,
            values_count: present("values_count")
                .map(|r| Bounds::parse(r, "values_count"))
                .transpose()?,
            is_empty: present("is_empty").and_then(Value::as_bool),
            is_null: present("is_null").and_then(Value::as_bool),
        };
        if c.matcher.is_none()
            && c.range.is_none()
            && c.values_count.is_none()
            && c.is_empty.is_none()
            && c.is_null.is_none()
        {
            return Err(QdrantError::BadInput(
                "At least one field condition must be specified".into(),
            ));
        }
        Ok(c)
    }

    fn check_match(&self, v: &Value) -> bool {
        self.matcher.as_ref().is_some_and(|m| m.check_match(v))
            || self
                .range
                .is_some_and(|r| v.as_f64().is_some_and(|x| r.check(x)))
            || self.values_count.is_some_and(|c| c.check(count_of(v)))
            || self.is_empty.is_some_and(|e| is_empty_value(e, v))
            || self.is_null.is_some_and(|n| is_null_value(n, v))
    }

    fn check(&self, v: &Value) -> bool {
        if let Some(c) = self.values_count {
            c.check(count_of(v))
        } else if let Some(e) = self.is_empty {
            is_empty_value(e, v)
        } else if let Some(n) = self.is_null {
            is_null_value(n, v)
        } else if let Value::Array(a) = v {
            a.iter().any(|x| self.check_match(x))
        } else {
            self.check_match(v)
        }
    }

    /// The answer for a point without the field.
    fn check_empty(&self) -> bool {
        if let Some(c) = self.values_count {
            return c.check(0.0);
        }
        if let Some(e) = self.is_empty {
            return e;
        }
        if let Some(n) = self.is_null {
            return !n;
        }
        false
    }
}

fn is_empty_value(is_empty: bool, v: &Value) -> bool {
    match v {
        Value::Null => is_empty,
        Value::Array(a) => a.is_empty() == is_empty,
        _ => !is_empty,
    }
}

fn is_null_value(is_null: bool, v: &Value) -> bool {
    match v {
        Value::Null => is_null,
        Value::Array(a) => a.iter().any(Value::is_null) == is_null,
        _ => !is_null,
    }
}

#[derive(Debug, Clone, PartialEq)]
enum Condition {
    Field(FieldCondition),
    IsEmpty(Vec<PathItem>),
    IsNull(Vec<PathItem>),
    HasId(HashSet<PointId>),
    HasVector(String),
    Filter(Filter),
}

impl Condition {
    fn parse(v: &Value) -> Result<Self> {
        if let Some(key) = v.get("key").and_then(Value::as_str) {
            return Ok(Condition::Field(FieldCondition::parse(v, key)?));
        }
        let key_of = |x: &Value| -> Result<Vec<PathItem>> {
            let k = x.get("key").and_then(Value::as_str).ok_or_else(|| {
                QdrantError::Format("missing field `key` in is_empty/is_null".into())
            })?;
            parse_path(k)
        };
        if let Some(x) = v.get("is_empty") {
            return Ok(Condition::IsEmpty(key_of(x)?));
        }
        if let Some(x) = v.get("is_null") {
            return Ok(Condition::IsNull(key_of(x)?));
        }
        if let Some(ids) = v.get("has_id") {
            let ids = ids
                .as_array()
                .ok_or_else(|| QdrantError::Format("has_id must be a list of point ids".into()))?
                .iter()
                .map(PointId::from_json)
                .collect::<Result<HashSet<_>>>()?;
            return Ok(Condition::HasId(ids));
        }
        if let Some(name) = v.get("has_vector").and_then(Value::as_str) {
            return Ok(Condition::HasVector(name.to_string()));
        }
        if v.get("nested").is_some() {
            return Err(QdrantError::Unsupported("nested filters".into()));
        }
        if ["must", "should", "must_not", "min_should"]
            .iter()
            .any(|k| v.get(k).is_some())
        {
            return Ok(Condition::Filter(Filter::parse(v)?));
        }
        Err(QdrantError::Format(format!(
            "{v} did not match any variant of untagged enum Condition"
        )))
    }

    fn check(&self, p: &Point) -> bool {
        let values = |key: &[PathItem]| {
            let mut out = Vec::new();
            values_at(&p.payload, key, &mut out);
            out
        };
        match self {
            Condition::Field(f) => {
                let vals = values(&f.key);
                if vals.is_empty() {
                    f.check_empty()
                } else {
                    vals.iter().any(|v| f.check(v))
                }
            }
            Condition::IsEmpty(key) => values(key).iter().all(|v| match v {
                Value::Null => true,
                Value::Array(a) => a.is_empty(),
                _ => false,
            }),
            Condition::IsNull(key) => values(key).iter().any(|v| v.is_null()),
            Condition::HasId(ids) => PointId::of(p).is_some_and(|id| ids.contains(&id)),
            Condition::HasVector(name) => vector_of(p, name).is_some(),
            Condition::Filter(f) => f.check(p),
        }
    }
}

/// A Qdrant filter: every `must`, at least one `should`, at least `min_count` of
/// `min_should`, no `must_not`. Each clause takes one condition or a list.
#[derive(Debug, Clone, PartialEq, Default)]
pub(super) struct Filter {
    must: Option<Vec<Condition>>,
    should: Option<Vec<Condition>>,
    must_not: Option<Vec<Condition>>,
    min_should: Option<(Vec<Condition>, usize)>,
}

impl Filter {
    pub(super) fn parse(v: &Value) -> Result<Self> {
        if !v.is_object() {
            return Err(QdrantError::Format(format!("filter {v} is not an object")));
        }
        let clause = |k: &str| -> Result<Option<Vec<Condition>>> {
            match v.get(k) {
                None | Some(Value::Null) => Ok(None),
                Some(Value::Array(a)) => a
                    .iter()
                    .map(Condition::parse)
                    .collect::<Result<_>>()
                    .map(Some),
                Some(c) => Ok(Some(vec![Condition::parse(c)?])),
            }
        };
        let min_should = match v.get("min_should").filter(|m| !m.is_null()) {
            None => None,
            Some(m) => {
                let conds = m
                    .get("conditions")
                    .and_then(Value::as_array)
                    .ok_or_else(|| {
                        QdrantError::Format("min_should: missing field `conditions`".into())
                    })?
                    .iter()
                    .map(Condition::parse)
                    .collect::<Result<Vec<_>>>()?;
                let n = m.get("min_count").and_then(Value::as_u64).ok_or_else(|| {
                    QdrantError::Format("min_should: missing field `min_count`".into())
                })?;
                Some((conds, n as usize))
            }
        };
        Ok(Filter {
            must: clause("must")?,
            should: clause("should")?,
            must_not: clause("must_not")?,
            min_should,
        })
    }

    /// An optional `filter` field of a request.
    fn field(input: &Value) -> Result<Option<Self>> {
        input
            .get("filter")
            .filter(|f| !f.is_null())
            .map(Filter::parse)
            .transpose()
    }

    pub(super) fn check(&self, p: &Point) -> bool {
        self.should
            .as_ref()
            .is_none_or(|c| c.iter().any(|c| c.check(p)))
            && self
                .min_should
                .as_ref()
                .is_none_or(|(c, n)| c.iter().filter(|c| c.check(p)).take(*n).count() == *n)
            && self
                .must
                .as_ref()
                .is_none_or(|c| c.iter().all(|c| c.check(p)))
            && self
                .must_not
                .as_ref()
                .is_none_or(|c| c.iter().all(|c| !c.check(p)))
    }
}

// --- what to return with each point ---

#[derive(Debug, Clone, PartialEq)]
enum PayloadSel {
    All,
    Nothing,
    Include(Vec<String>),
    Exclude(Vec<String>),
}

impl PayloadSel {
    fn parse(v: Option<&Value>, default: PayloadSel) -> Result<Self> {
        let strings = |a: &Value| -> Result<Vec<String>> {
            a.as_array()
                .and_then(|a| a.iter().map(|s| s.as_str().map(str::to_string)).collect())
                .ok_or_else(|| QdrantError::Format("with_payload: expected a list of keys".into()))
        };
        match v {
            None | Some(Value::Null) => Ok(default),
            Some(Value::Bool(true)) => Ok(PayloadSel::All),
            Some(Value::Bool(false)) => Ok(PayloadSel::Nothing),
            Some(a @ Value::Array(_)) => Ok(PayloadSel::Include(strings(a)?)),
            Some(o) => {
                if let Some(i) = o.get("include") {
                    Ok(PayloadSel::Include(strings(i)?))
                } else if let Some(e) = o.get("exclude") {
                    Ok(PayloadSel::Exclude(strings(e)?))
                } else {
                    Err(QdrantError::Format(format!(
                        "with_payload {o} did not match any variant of untagged enum WithPayloadInterface"
                    )))
                }
            }
        }
    }

    /// The payload to send, or `None` to leave the field out (as Qdrant does).
    fn apply(&self, payload: &Value) -> Option<Value> {
        let obj = payload.as_object().cloned().unwrap_or_default();
        let keep = |f: &dyn Fn(&str) -> bool| -> Value {
            Value::Object(
                obj.iter()
                    .filter(|(k, _)| f(k))
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect(),
            )
        };
        match self {
            PayloadSel::Nothing => None,
            PayloadSel::All => Some(Value::Object(obj.clone())),
            PayloadSel::Include(keys) => Some(keep(&|k| keys.iter().any(|i| i == k))),
            PayloadSel::Exclude(keys) => Some(keep(&|k| !keys.iter().any(|i| i == k))),
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
enum VectorSel {
    All,
    Nothing,
    Names(Vec<String>),
}

impl VectorSel {
    fn parse(v: Option<&Value>) -> Result<Self> {
        match v {
            None | Some(Value::Null) | Some(Value::Bool(false)) => Ok(VectorSel::Nothing),
            Some(Value::Bool(true)) => Ok(VectorSel::All),
            Some(Value::Array(a)) => a
                .iter()
                .map(|s| s.as_str().map(str::to_string))
                .collect::<Option<Vec<_>>>()
                .map(VectorSel::Names)
                .ok_or_else(|| QdrantError::Format("with_vector: expected a list of names".into())),
            Some(x) => Err(QdrantError::Format(format!(
                "with_vector {x} is not a bool or a list of vector names"
            ))),
        }
    }

    fn wants(&self, name: &str) -> bool {
        match self {
            VectorSel::All => true,
            VectorSel::Nothing => false,
            VectorSel::Names(n) => n.iter().any(|x| x == name),
        }
    }

    /// The vector field to send, or `None` to leave it out.
    fn apply(&self, cfg: &VectorsConfig, p: &Point) -> Option<Value> {
        if *self == VectorSel::Nothing {
            return None;
        }
        match cfg {
            VectorsConfig::Unnamed(_) => self.wants("").then(|| json!(p.vector)),
            VectorsConfig::Named(_) => Some(Value::Object(
                p.named
                    .iter()
                    .filter(|(n, _)| self.wants(n))
                    .map(|(n, v)| (n.clone(), json!(v)))
                    .collect(),
            )),
        }
    }
}

/// The "with" options every read shares.
struct Selection {
    payload: PayloadSel,
    vector: VectorSel,
}

impl Selection {
    fn parse(input: &Value, payload_default: PayloadSel) -> Result<Self> {
        Ok(Selection {
            payload: PayloadSel::parse(input.get("with_payload"), payload_default)?,
            // `with_vectors` is the older spelling, still accepted by the server.
            vector: VectorSel::parse(
                input
                    .get("with_vector")
                    .or_else(|| input.get("with_vectors")),
            )?,
        })
    }

    /// A `Record` (retrieve, scroll) or, with a score, a `ScoredPoint`.
    fn render(&self, c: &Collection, p: &Point, score: Option<f64>) -> Value {
        let mut o = Map::new();
        o.insert("id".into(), p.id.clone());
        if let Some(s) = score {
            o.insert("version".into(), json!(p.version));
            o.insert("score".into(), json!(s));
        }
        if let Some(pl) = self.payload.apply(&p.payload) {
            o.insert("payload".into(), pl);
        }
        if let Some(v) = self.vector.apply(&c.vectors, p) {
            o.insert("vector".into(), v);
        }
        Value::Object(o)
    }
}

// --- search ---

/// What to rank by.
#[derive(Debug, Clone, PartialEq)]
enum Target {
    /// Nearest to this vector.
    Vector(Vec<f32>),
    /// Nearest to a stored point's vector; the point itself is excluded, as Qdrant
    /// excludes every point a query references.
    Point(PointId),
    /// No query: points in id order, score 0.
    IdOrder,
}

/// One search, parsed from a Query API or a Search API request.
struct Search {
    target: Target,
    using: String,
    filter: Option<Filter>,
    limit: usize,
    offset: usize,
    threshold: Option<f64>,
    with: Selection,
}

fn usize_field(input: &Value, key: &str, default: usize) -> Result<usize> {
    match input.get(key) {
        None | Some(Value::Null) => Ok(default),
        Some(v) => v.as_u64().map(|n| n as usize).ok_or_else(|| {
            QdrantError::Format(format!("{key}: invalid value {v}, expected usize"))
        }),
    }
}

fn threshold_field(input: &Value) -> Result<Option<f64>> {
    match input.get("score_threshold") {
        None | Some(Value::Null) => Ok(None),
        Some(v) => v
            .as_f64()
            .map(Some)
            .ok_or_else(|| QdrantError::Format(format!("score_threshold: {v} is not a number"))),
    }
}

/// The query kinds of the Query API the sim does not run, by their JSON key.
const OTHER_QUERIES: &[&str] = &[
    "recommend",
    "discover",
    "context",
    "order_by",
    "fusion",
    "rrf",
    "formula",
    "sample",
    "relevance_feedback",
    "text",
];

impl Search {
    /// A Query API request (`POST .../points/query`, one of `.../query/batch`).
    fn from_query(input: &Value) -> Result<Self> {
        for (key, what) in [
            ("prefetch", "prefetch (hybrid and multi-stage queries)"),
            ("lookup_from", "lookup_from"),
        ] {
            if input.get(key).is_some_and(|v| !v.is_null()) {
                return Err(QdrantError::Unsupported(what.into()));
            }
        }
        let target = match input.get("query") {
            None | Some(Value::Null) => Target::IdOrder,
            Some(q) => query_target(q)?,
        };
        Ok(Search {
            target,
            using: input
                .get("using")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_string(),
            filter: Filter::field(input)?,
            limit: usize_field(input, "limit", 10)?,
            offset: usize_field(input, "offset", 0)?,
            threshold: threshold_field(input)?,
            with: Selection::parse(input, PayloadSel::Nothing)?,
        })
    }

    /// A Search API request (`POST .../points/search`): `vector` is a list of
    /// numbers or a named vector `{"name", "vector"}`.
    fn from_search(input: &Value) -> Result<Self> {
        let v = input
            .get("vector")
            .ok_or_else(|| QdrantError::Format("missing field `vector`".into()))?;
        let (using, v) = match v.get("vector") {
            Some(inner) => (
                v.get("name")
                    .and_then(Value::as_str)
                    .unwrap_or("")
                    .to_string(),
                inner,
            ),
            None => (String::new(), v),
        };
        if v.get("indices").is_some() {
            return Err(QdrantError::Unsupported("sparse vectors".into()));
        }
        let q = floats(v)
            .ok_or_else(|| QdrantError::Format("`vector` must be a list of numbers".into()))?;
        Ok(Search {
            target: Target::Vector(q),
            using,
            filter: Filter::field(input)?,
            // `limit` is required by Qdrant; the sim keeps its old leniency (and `top`).
            limit: match input.get("limit").filter(|l| !l.is_null()) {
                Some(_) => usize_field(input, "limit", 10)?,
                None => usize_field(input, "top", 10)?,
            },
            offset: usize_field(input, "offset", 0)?,
            threshold: threshold_field(input)?,
            with: Selection::parse(input, PayloadSel::Nothing)?,
        })
    }

    /// Run against `c`: scored points, best first.
    fn run(&self, c: &Collection) -> Result<Vec<Value>> {
        let params = c.vectors.params(&self.using)?;
        let (query, exclude) = match &self.target {
            Target::Vector(v) => {
                let expected = params.size.or_else(|| {
                    c.points
                        .iter()
                        .find_map(|p| vector_of(p, &self.using))
                        .map(<[f32]>::len)
                });
                if let Some(size) = expected {
                    if v.len() != size {
                        return Err(QdrantError::dimension(size, v.len()));
                    }
                }
                (Some(v.clone()), None)
            }
            Target::Point(id) => {
                let p = c
                    .points
                    .iter()
                    .find(|p| PointId::of(p).as_ref() == Some(id))
                    .ok_or_else(|| QdrantError::NotFound(format!("No point with id {id} found")))?;
                let v = vector_of(p, &self.using).ok_or_else(|| {
                    QdrantError::BadInput(format!(
                        "Point {id} has no vector `{}` to search with",
                        self.using
                    ))
                })?;
                (Some(v.to_vec()), Some(id.clone()))
            }
            Target::IdOrder => (None, None),
        };
        let eligible = |p: &Point| {
            (exclude.is_none() || PointId::of(p) != exclude)
                && self.filter.as_ref().is_none_or(|f| f.check(p))
        };
        let mut hits: Vec<(usize, f64)> = match &query {
            Some(q) => {
                let d = params.distance;
                let mut scored: Vec<(usize, f64)> = c
                    .points
                    .iter()
                    .enumerate()
                    .filter(|(_, p)| eligible(p))
                    .filter_map(|(i, p)| vector_of(p, &self.using).map(|v| (i, d.score(q, v))))
                    .filter(|(_, s)| self.threshold.is_none_or(|t| d.passes(*s, t)))
                    .collect();
                scored.sort_by(|a, b| d.rank(a.1, b.1).then(a.0.cmp(&b.0)));
                scored
            }
            None => id_order(c, eligible)
                .into_iter()
                .map(|i| (i, 0.0))
                .collect(),
        };
        hits = hits
            .into_iter()
            .skip(self.offset)
            .take(self.limit)
            .collect();
        Ok(hits
            .into_iter()
            .map(|(i, s)| self.with.render(c, &c.points[i], Some(s)))
            .collect())
    }
}

fn query_target(q: &Value) -> Result<Target> {
    match q {
        Value::Object(m) if m.contains_key("nearest") => {
            if m.get("mmr").is_some_and(|x| !x.is_null()) {
                return Err(QdrantError::Unsupported(
                    "MMR re-ranking (`nearest.mmr`)".into(),
                ));
            }
            vector_input(&m["nearest"])
        }
        Value::Object(m) => {
            if let Some(k) = OTHER_QUERIES.iter().find(|k| m.contains_key(**k)) {
                return Err(QdrantError::Unsupported(format!("`{k}` queries")));
            }
            vector_input(q)
        }
        _ => vector_input(q),
    }
}

/// A `VectorInput`: a dense vector, a point id, or (refused) a sparse vector, a
/// multivector or an inference object.
fn vector_input(v: &Value) -> Result<Target> {
    match v {
        Value::Array(a) if a.first().is_some_and(Value::is_array) => {
            Err(QdrantError::Unsupported("multivectors".into()))
        }
        Value::Array(_) => floats(v)
            .map(Target::Vector)
            .ok_or_else(|| QdrantError::Format("a query vector must be a list of numbers".into())),
        Value::Number(_) | Value::String(_) => PointId::from_json(v).map(Target::Point),
        Value::Object(m) if m.contains_key("indices") => {
            Err(QdrantError::Unsupported("sparse vectors".into()))
        }
        Value::Object(m) if m.contains_key("model") => Err(QdrantError::Unsupported(
            "inference (documents, images, objects)".into(),
        )),
        _ => Err(QdrantError::Format(format!(
            "{v} did not match any variant of untagged enum QueryInterface"
        ))),
    }
}

/// Indices of the eligible points, in Qdrant's id order.
fn id_order(c: &Collection, eligible: impl Fn(&Point) -> bool) -> Vec<usize> {
    let mut ids: Vec<(PointId, usize)> = c
        .points
        .iter()
        .enumerate()
        .filter(|(_, p)| eligible(p))
        .filter_map(|(i, p)| PointId::of(p).map(|id| (id, i)))
        .collect();
    ids.sort();
    ids.into_iter().map(|(_, i)| i).collect()
}

// --- the other reads and the writes ---

/// `POST .../points/scroll`: a page of points in id order from `offset`
/// (inclusive), and the id the next page starts at (`null` after the last).
fn scroll(c: &Collection, input: &Value) -> Result<Value> {
    if input.get("order_by").is_some_and(|v| !v.is_null()) {
        return Err(QdrantError::Unsupported("`order_by` in scroll".into()));
    }
    let filter = Filter::field(input)?;
    let limit = usize_field(input, "limit", 10)?;
    let start = match input.get("offset") {
        None | Some(Value::Null) => None,
        Some(o) => Some(PointId::from_json(o)?),
    };
    let with = Selection::parse(input, PayloadSel::All)?;
    let order = id_order(c, |p| {
        filter.as_ref().is_none_or(|f| f.check(p))
            && start
                .as_ref()
                .is_none_or(|s| PointId::of(p).is_some_and(|id| id >= *s))
    });
    let points: Vec<Value> = order
        .iter()
        .take(limit)
        .map(|&i| with.render(c, &c.points[i], None))
        .collect();
    let next = order
        .get(limit)
        .map_or(Value::Null, |&i| c.points[i].id.clone());
    Ok(json!({"points": points, "next_page_offset": next}))
}

/// `POST .../points` (retrieve): the points with these ids, in the order asked,
/// each once; ids that do not exist are left out.
fn retrieve(c: &Collection, input: &Value) -> Result<Value> {
    let ids = input
        .get("ids")
        .and_then(Value::as_array)
        .ok_or_else(|| QdrantError::Format("missing field `ids`".into()))?;
    let with = Selection::parse(input, PayloadSel::All)?;
    let mut seen = HashSet::new();
    let mut out = Vec::new();
    for id in ids {
        let id = PointId::from_json(id)?;
        if !seen.insert(id.clone()) {
            continue;
        }
        if let Some(p) = c
            .points
            .iter()
            .find(|p| PointId::of(p).as_ref() == Some(&id))
        {
            out.push(with.render(c, p, None));
        }
    }
    Ok(Value::Array(out))
}

/// `PUT .../points`: every point is checked before any is written, so a bad point
/// leaves the collection as it was.
fn upsert(c: &mut Collection, input: &Value) -> Result<Value> {
    let points: Vec<Value> = if let Some(p) = input.get("points") {
        p.as_array()
            .cloned()
            .ok_or_else(|| QdrantError::Format("`points` must be a list".into()))?
    } else if let Some(b) = input.get("batch") {
        batch_points(b)?
    } else {
        return Err(QdrantError::Format(
            "data did not match any variant of untagged enum PointInsertOperations: expected `points` or `batch`".into(),
        ));
    };
    let mut parsed = Vec::with_capacity(points.len());
    let mut cfg = c.vectors.clone();
    for p in &points {
        let id = PointId::from_json(p.get("id").unwrap_or(&Value::Null))?;
        let (vector, named) = point_vectors(&cfg, p.get("vector"))?;
        // A collection created without a vector config takes its size from the
        // first vector it is given.
        if let VectorsConfig::Unnamed(params) = &mut cfg {
            if params.size.is_none() && !vector.is_empty() {
                params.size = Some(vector.len());
            }
        }
        let payload = match p.get("payload") {
            None | Some(Value::Null) => json!({}),
            Some(o @ Value::Object(_)) => o.clone(),
            Some(x) => return Err(QdrantError::Format(format!("payload {x} is not an object"))),
        };
        parsed.push(Point {
            id: id.to_json(),
            vector,
            named,
            payload,
            document: Value::Null,
            version: 0,
        });
    }
    // Keeps the size a collection without a vector config just learned.
    c.vectors = cfg;
    c.version += 1;
    let op = c.version;
    for p in parsed {
        c.put(p, op);
    }
    Ok(update_result(op))
}

/// `{"batch": {"ids", "vectors", "payloads"}}` as a list of points.
fn batch_points(b: &Value) -> Result<Vec<Value>> {
    let ids = b
        .get("ids")
        .and_then(Value::as_array)
        .ok_or_else(|| QdrantError::Format("batch: missing field `ids`".into()))?;
    let vectors = b
        .get("vectors")
        .ok_or_else(|| QdrantError::Format("batch: missing field `vectors`".into()))?;
    let vector_at = |i: usize| -> Result<Value> {
        match vectors {
            Value::Array(a) => a.get(i).cloned(),
            Value::Object(m) => Some(Value::Object(
                m.iter()
                    .filter_map(|(n, vs)| vs.get(i).map(|v| (n.clone(), v.clone())))
                    .collect(),
            )),
            _ => None,
        }
        .ok_or_else(|| QdrantError::BadInput(format!("batch: no vector for point {i}")))
    };
    let payloads = b.get("payloads").and_then(Value::as_array);
    ids.iter()
        .enumerate()
        .map(|(i, id)| {
            Ok(json!({
                "id": id,
                "vector": vector_at(i)?,
                "payload": payloads.and_then(|p| p.get(i)).cloned().unwrap_or(Value::Null),
            }))
        })
        .collect()
}

/// `POST .../points/delete`: by `points` (ids) or by `filter`.
fn delete_points(c: &mut Collection, input: &Value) -> Result<Value> {
    if let Some(ids) = input.get("points") {
        let ids = ids
            .as_array()
            .ok_or_else(|| QdrantError::Format("`points` must be a list of ids".into()))?
            .iter()
            .map(PointId::from_json)
            .collect::<Result<HashSet<_>>>()?;
        c.points
            .retain(|p| PointId::of(p).is_none_or(|id| !ids.contains(&id)));
    } else if let Some(f) = input.get("filter") {
        let f = Filter::parse(f)?;
        c.points.retain(|p| !f.check(p));
    } else {
        return Err(QdrantError::Format(
            "data did not match any variant of untagged enum PointsSelector: expected `points` or `filter`".into(),
        ));
    }
    c.version += 1;
    Ok(update_result(c.version))
}

fn update_result(op: u64) -> Value {
    json!({"operation_id": op, "status": "completed"})
}

/// `PUT .../index`: the sim searches exhaustively either way; the index is only
/// recorded so that `payload_schema` reports it.
fn create_index(c: &mut Collection, input: &Value) -> Result<Value> {
    let field = input
        .get("field_name")
        .and_then(Value::as_str)
        .ok_or_else(|| QdrantError::Format("missing field `field_name`".into()))?;
    parse_path(field)?;
    let schema = match input.get("field_schema") {
        Some(Value::String(s)) => json!({"data_type": s}),
        Some(o @ Value::Object(_)) => {
            let t = o
                .get("type")
                .and_then(Value::as_str)
                .ok_or_else(|| QdrantError::Format("field_schema: missing field `type`".into()))?;
            json!({"data_type": t, "params": o})
        }
        _ => {
            return Err(QdrantError::BadInput(
                "Payload index creation requires a field_schema".into(),
            ))
        }
    };
    c.payload_index.insert(field.to_string(), schema);
    c.version += 1;
    Ok(update_result(c.version))
}

/// A complete `CollectionInfo`, every field qdrant-client's pydantic model
/// requires, with the real server's defaults for what the sim does not model.
pub(super) fn collection_info(c: &Collection) -> Value {
    let payload_schema: Map<String, Value> = c
        .payload_index
        .iter()
        .map(|(field, schema)| {
            let path = parse_path(field).unwrap_or_default();
            let points = c
                .points
                .iter()
                .filter(|p| {
                    let mut v = Vec::new();
                    values_at(&p.payload, &path, &mut v);
                    !v.is_empty()
                })
                .count();
            let mut s = schema.clone();
            s["points"] = json!(points);
            (field.clone(), s)
        })
        .collect();
    let mut config = json!({
        "params": {
            "vectors": c.vectors.to_json(c),
            "shard_number": 1,
            "replication_factor": 1,
            "write_consistency_factor": 1,
            "on_disk_payload": true
        },
        "hnsw_config": {
            "m": 16, "ef_construct": 100, "full_scan_threshold": 10000,
            "max_indexing_threads": 0, "on_disk": false
        },
        "optimizer_config": {
            "deleted_threshold": 0.2, "vacuum_min_vector_number": 1000,
            "default_segment_number": 0, "max_segment_size": null,
            "memmap_threshold": null, "indexing_threshold": 10000,
            "flush_interval_sec": 5, "max_optimization_threads": null
        },
        "wal_config": {"wal_capacity_mb": 32, "wal_segments_ahead": 0, "wal_retain_closed": 1},
        "quantization_config": null,
        "strict_mode_config": {"enabled": false}
    });
    if c.metadata.is_object() {
        config["metadata"] = c.metadata.clone();
    }
    json!({
        "status": "green",
        "optimizer_status": "ok",
        // Every vector is searchable the moment it is written.
        "indexed_vectors_count": c.points.len(),
        "points_count": c.points.len(),
        "segments_count": 1,
        "config": config,
        "payload_schema": payload_schema,
        "update_queue": {"length": 0}
    })
}

/// `GET /`: what qdrant-client's version check reads.
pub(super) fn version_info() -> Value {
    json!({"title": TITLE, "version": VERSION, "commit": COMMIT})
}

/// The plain-text health endpoints, as the real server answers them (Kubernetes
/// probes read the status; `readyz` means every shard is ready, which a sim's
/// always are).
pub(super) fn health(path: &str) -> Option<&'static str> {
    match path {
        "/healthz" | "/livez" => Some("healthz check passed"),
        "/readyz" => Some("all shards are ready"),
        _ => None,
    }
}

// --- the router ---

impl VectorSim {
    /// Route one Qdrant JSON request. `segs` is the path split on `/`.
    pub(super) fn qdrant(&self, method: &Method, segs: &[&str], input: &Value) -> Answer {
        if let (&Method::GET, [""]) = (method, segs) {
            // Not wrapped in `{"result", "status"}`: the real root answers bare.
            return (StatusCode::OK, version_info());
        }
        match self.qdrant_result(method, segs, input) {
            Ok(result) => (StatusCode::OK, json!({"result": result, "status": "ok"})),
            Err(e) => (e.status(), self.error(&e.to_string())),
        }
    }

    fn qdrant_result(&self, method: &Method, segs: &[&str], input: &Value) -> Result<Value> {
        let read = |name: &str, f: &dyn Fn(&Collection) -> Result<Value>| -> Result<Value> {
            let cols = self.lock();
            let c = cols
                .get(name)
                .ok_or_else(|| QdrantError::collection(name))?;
            f(c)
        };
        let write = |name: &str, f: &dyn Fn(&mut Collection) -> Result<Value>| -> Result<Value> {
            let mut cols = self.lock();
            let c = cols
                .get_mut(name)
                .ok_or_else(|| QdrantError::collection(name))?;
            f(c)
        };
        match (method, segs) {
            (&Method::GET, ["collections"]) => {
                let cols = self.lock();
                let mut names: Vec<&String> = cols.keys().collect();
                names.sort();
                let names: Vec<Value> = names.into_iter().map(|n| json!({"name": n})).collect();
                Ok(json!({"collections": names}))
            }
            (&Method::GET, ["aliases"] | ["collections", _, "aliases"]) => {
                Ok(json!({"aliases": []}))
            }
            (&Method::PUT, ["collections", name]) => {
                let vectors = VectorsConfig::parse(input.get("vectors"))?;
                let mut cols = self.lock();
                if cols.contains_key(*name) {
                    return Err(QdrantError::AlreadyExists(name.to_string()));
                }
                let mut c = Collection::new(name, self.fresh_id());
                c.vectors = vectors;
                c.metadata = input.get("metadata").cloned().unwrap_or(Value::Null);
                cols.insert(name.to_string(), c);
                Ok(json!(true))
            }
            (&Method::DELETE, ["collections", name]) => {
                Ok(json!(self.lock().remove(*name).is_some()))
            }
            (&Method::GET, ["collections", name]) => read(name, &|c| Ok(collection_info(c))),
            (&Method::GET, ["collections", name, "exists"]) => {
                Ok(json!({"exists": self.lock().contains_key(*name)}))
            }
            (&Method::PUT, ["collections", name, "index"]) => {
                write(name, &|c| create_index(c, input))
            }
            (&Method::DELETE, ["collections", name, "index", field]) => write(name, &|c| {
                c.payload_index.remove(*field);
                c.version += 1;
                Ok(update_result(c.version))
            }),
            (&Method::PUT, ["collections", name, "points"]) => write(name, &|c| upsert(c, input)),
            (&Method::POST, ["collections", name, "points"]) => read(name, &|c| retrieve(c, input)),
            (&Method::POST, ["collections", name, "points", "delete"]) => {
                write(name, &|c| delete_points(c, input))
            }
            (&Method::POST, ["collections", name, "points", "count"]) => read(name, &|c| {
                let filter = Filter::field(input)?;
                let n = c
                    .points
                    .iter()
                    .filter(|p| filter.as_ref().is_none_or(|f| f.check(p)))
                    .count();
                Ok(json!({"count": n}))
            }),
            (&Method::POST, ["collections", name, "points", "scroll"]) => {
                read(name, &|c| scroll(c, input))
            }
            (&Method::POST, ["collections", name, "points", "search"]) => read(name, &|c| {
                Search::from_search(input)?.run(c).map(Value::Array)
            }),
            (&Method::POST, ["collections", name, "points", "search", "batch"]) => {
                read(name, &|c| {
                    batch(input)?
                        .iter()
                        .map(|s| Search::from_search(s)?.run(c).map(Value::Array))
                        .collect::<Result<Vec<_>>>()
                        .map(Value::Array)
                })
            }
            (&Method::POST, ["collections", name, "points", "query"]) => read(name, &|c| {
                Ok(json!({"points": Search::from_query(input)?.run(c)?}))
            }),
            (&Method::POST, ["collections", name, "points", "query", "batch"]) => {
                read(name, &|c| {
                    batch(input)?
                        .iter()
                        .map(|s| Ok(json!({"points": Search::from_query(s)?.run(c)?})))
                        .collect::<Result<Vec<_>>>()
                        .map(Value::Array)
                })
            }
            (&Method::POST, ["collections", _, "points", "query", "groups"]) => Err(
                QdrantError::Unsupported("grouped queries (`points/query/groups`)".into()),
            ),
            (&Method::GET, ["collections", name, "points", id]) => read(name, &|c| {
                let pid = PointId::from_path(id).ok_or_else(|| {
                    QdrantError::BadInput(format!("Can not recognize \"{id}\" as point id"))
                })?;
                let with = Selection {
                    payload: PayloadSel::All,
                    vector: VectorSel::All,
                };
                c.points
                    .iter()
                    .find(|p| PointId::of(p).as_ref() == Some(&pid))
                    .map(|p| with.render(c, p, None))
                    .ok_or_else(|| {
                        QdrantError::NotFound(format!("Point with id {pid} does not exists!"))
                    })
            }),
            _ => Err(QdrantError::NotFound(segs.join("/"))),
        }
    }
}

/// The `searches` of a batch request.
fn batch(input: &Value) -> Result<&Vec<Value>> {
    input
        .get("searches")
        .and_then(Value::as_array)
        .ok_or_else(|| QdrantError::Format("missing field `searches`".into()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn point(id: Value, vector: Vec<f32>, payload: Value) -> Point {
        Point {
            id,
            vector,
            named: BTreeMap::new(),
            payload,
            document: Value::Null,
            version: 0,
        }
    }

    fn collection(points: Vec<Point>) -> Collection {
        let mut c = Collection::new("t", 1);
        c.vectors = VectorsConfig::Unnamed(VectorParams::cosine(2));
        for p in points {
            c.upsert(p);
        }
        c
    }

    fn ids(hits: &[Value]) -> Vec<Value> {
        hits.iter().map(|h| h["id"].clone()).collect()
    }

    #[test]
    fn uuids_parse_in_every_form_and_print_canonically() {
        let want = "936da01f-9abd-4d9d-80c7-02af85c822a8";
        for s in [
            want,
            "936DA01F9ABD4D9D80C702AF85C822A8",
            "{936da01f-9abd-4d9d-80c7-02af85c822a8}",
            "urn:uuid:936da01f-9abd-4d9d-80c7-02af85c822a8",
        ] {
            assert_eq!(canonical_uuid(s).as_deref(), Some(want), "{s}");
        }
        for s in [
            "",
            "abc",
            "936da01f-9abd-4d9d-80c7-02af85c822a",
            "936da01f_9abd_4d9d_80c7_02af85c822a8",
            "ü36da01f-9abd-4d9d-80c7-02af85c822a8",
        ] {
            assert_eq!(canonical_uuid(s), None, "{s}");
        }
        assert_eq!(PointId::from_json(&json!(7)), Ok(PointId::Num(7)));
        assert!(
            PointId::from_json(&json!("7")).is_err(),
            "a numeric string is not an id in a body"
        );
        assert!(PointId::from_json(&json!(-1)).is_err());
        assert_eq!(PointId::from_path("7"), Some(PointId::Num(7)));
        // Qdrant's order: integers, then UUIDs.
        assert!(PointId::Num(u64::MAX) < PointId::Uuid(want.into()));
    }

    #[test]
    fn distances_score_and_rank_as_qdrant_does() {
        let (q, p) = ([1.0f32, 0.0], [0.0f32, 2.0]);
        assert!((Distance::Cosine.score(&q, &p)).abs() < 1e-12);
        assert_eq!(Distance::Dot.score(&[1.0, 2.0], &[3.0, 4.0]), 11.0);
        assert!((Distance::Euclid.score(&q, &p) - 5f64.sqrt()).abs() < 1e-12);
        assert_eq!(Distance::Manhattan.score(&q, &p), 3.0);
        assert_eq!(Distance::Dot.rank(2.0, 1.0), Ordering::Less, "larger first");
        assert_eq!(
            Distance::Euclid.rank(2.0, 1.0),
            Ordering::Greater,
            "smaller first"
        );
        assert!(Distance::Cosine.passes(0.6, 0.5) && !Distance::Cosine.passes(0.5, 0.5));
        assert!(Distance::Euclid.passes(0.4, 0.5) && !Distance::Euclid.passes(0.5, 0.5));
    }

    #[test]
    fn filters_follow_qdrants_condition_checker() {
        let p = point(
            json!(1),
            vec![1.0, 0.0],
            json!({"city": "Berlin", "tags": ["a", "b"], "n": 3, "f": 3.0, "nil": null,
                   "empty": [], "rooms": [{"beds": 1}, {"beds": 3}]}),
        );
        let check = |f: Value| Filter::parse(&f).map(|f| f.check(&p));
        assert_eq!(
            check(json!({"must": [{"key": "city", "match": {"value": "Berlin"}}]})),
            Ok(true)
        );
        assert_eq!(
            check(json!({"must": {"key": "city", "match": {"value": "Bonn"}}})),
            Ok(false)
        );
        assert_eq!(
            check(json!({"must": [{"key": "tags", "match": {"value": "b"}}]})),
            Ok(true),
            "arrays match any element"
        );
        assert_eq!(
            check(json!({"must": [{"key": "n", "match": {"value": 3}}]})),
            Ok(true)
        );
        assert_eq!(
            check(json!({"must": [{"key": "f", "match": {"value": 3}}]})),
            Ok(false),
            "a float payload is not an integer"
        );
        assert_eq!(
            check(json!({"must": [{"key": "n", "range": {"gt": 2, "lte": 3}}]})),
            Ok(true)
        );
        assert_eq!(
            check(json!({"must": [{"key": "n", "range": {"gt": 3}}]})),
            Ok(false)
        );
        assert_eq!(
            check(json!({"must": [{"key": "tags", "match": {"any": ["x", "a"]}}]})),
            Ok(true)
        );
        assert_eq!(
            check(json!({"must": [{"key": "city", "match": {"except": ["Berlin"]}}]})),
            Ok(false)
        );
        assert_eq!(
            check(json!({"must": [{"key": "missing", "match": {"except": ["x"]}}]})),
            Ok(false),
            "a missing field matches nothing"
        );
        assert_eq!(
            check(json!({"must": [{"key": "rooms[].beds", "range": {"gte": 3}}]})),
            Ok(true)
        );
        assert_eq!(
            check(json!({"must": [{"key": "rooms[0].beds", "range": {"gte": 3}}]})),
            Ok(false)
        );
        assert_eq!(
            check(json!({"must": [{"key": "tags", "values_count": {"gte": 2}}]})),
            Ok(true)
        );
        assert_eq!(
            check(
                json!({"must": [{"is_empty": {"key": "empty"}}, {"is_empty": {"key": "missing"}}, {"is_null": {"key": "nil"}}]})
            ),
            Ok(true)
        );
        assert_eq!(
            check(json!({"must": [{"is_empty": {"key": "tags"}}]})),
            Ok(false)
        );
        assert_eq!(
            check(json!({"should": [{"has_id": [2]}, {"key": "city", "match": {"text": "erl"}}]})),
            Ok(true)
        );
        assert_eq!(check(json!({"must_not": [{"has_id": [1]}]})), Ok(false));
        assert_eq!(
            check(
                json!({"min_should": {"conditions": [{"has_id": [1]}, {"has_id": [2]}], "min_count": 2}})
            ),
            Ok(false)
        );
        assert_eq!(
            check(json!({"must": [{"must_not": [{"key": "n", "match": {"value": 4}}]}]})),
            Ok(true),
            "nested filters as conditions"
        );
        assert_eq!(check(json!({"must": [{"has_vector": ""}]})), Ok(true));
        assert!(matches!(
            check(
                json!({"must": [{"key": "g", "geo_radius": {"center": {"lon": 0, "lat": 0}, "radius": 1}}]})
            ),
            Err(QdrantError::Unsupported(_))
        ));
        assert!(matches!(
            check(json!({"must": [{"key": "n"}]})),
            Err(QdrantError::BadInput(_))
        ));
    }

    #[test]
    fn query_ranks_filters_pages_and_excludes_the_referenced_point() {
        let c = collection(vec![
            point(json!(3), vec![1.0, 0.0], json!({"k": "a"})),
            point(json!(1), vec![0.0, 1.0], json!({"k": "b"})),
            point(json!(2), vec![0.8, 0.6], json!({"k": "a"})),
        ]);
        let run = |q: Value| Search::from_query(&q).and_then(|s| s.run(&c));
        let hits = run(json!({"query": {"nearest": [1.0, 0.1]}, "limit": 2})).unwrap();
        assert_eq!(ids(&hits), [json!(3), json!(2)]);
        assert!(hits[0]["score"].as_f64() > hits[1]["score"].as_f64());
        assert!(
            hits[0].get("payload").is_none() && hits[0].get("vector").is_none(),
            "left out unless asked for"
        );
        assert_eq!(hits[0]["version"], 1);
        let hits = run(json!({"query": [1.0, 0.1], "offset": 1, "with_payload": true})).unwrap();
        assert_eq!(ids(&hits), [json!(2), json!(1)]);
        assert_eq!(hits[0]["payload"], json!({"k": "a"}));
        let hits = run(json!({"query": [0.0, 1.0], "filter": {"must": [{"key": "k", "match": {"value": "a"}}]}})).unwrap();
        assert_eq!(ids(&hits), [json!(2), json!(3)]);
        let hits = run(json!({"query": [1.0, 0.0], "score_threshold": 0.5})).unwrap();
        assert_eq!(
            ids(&hits),
            [json!(3), json!(2)],
            "cosine 0 to point 1 is below the threshold"
        );
        let hits = run(json!({"query": {"nearest": 3}})).unwrap();
        assert_eq!(
            ids(&hits),
            [json!(2), json!(1)],
            "the query point is excluded"
        );
        let hits = run(json!({"limit": 2, "with_vector": true})).unwrap();
        assert_eq!(ids(&hits), [json!(1), json!(2)], "no query: id order");
        assert_eq!(hits[0]["score"], 0.0);
        assert_eq!(hits[0]["vector"], json!([0.0, 1.0]));
        assert_eq!(
            run(json!({"query": [1.0]})).unwrap_err().to_string(),
            "Wrong input: Vector dimension error: expected dim: 2, got 1"
        );
        assert!(matches!(
            run(json!({"query": {"nearest": 99}})),
            Err(QdrantError::NotFound(_))
        ));
        assert!(matches!(
            run(json!({"query": {"fusion": "rrf"}})),
            Err(QdrantError::Unsupported(_))
        ));
        assert!(matches!(
            run(json!({"query": {"nearest": {"indices": [1], "values": [1.0]}}})),
            Err(QdrantError::Unsupported(_))
        ));
        assert!(matches!(
            run(json!({"prefetch": [{"query": [1.0, 0.0]}], "query": {"fusion": "rrf"}})),
            Err(QdrantError::Unsupported(_))
        ));
        assert_eq!(
            run(json!({"query": [1.0, 0.0], "using": "dense"}))
                .unwrap_err()
                .to_string(),
            "Wrong input: Not existing vector name error: dense"
        );
    }

    #[test]
    fn search_and_query_agree() {
        let c = collection(vec![
            point(json!(1), vec![1.0, 0.0], json!({})),
            point(json!(2), vec![0.6, 0.8], json!({})),
            point(json!(3), vec![0.0, 1.0], json!({})),
        ]);
        let s = Search::from_search(&json!({"vector": [0.7, 0.7], "limit": 3}))
            .unwrap()
            .run(&c)
            .unwrap();
        let q = Search::from_query(&json!({"query": {"nearest": [0.7, 0.7]}, "limit": 3}))
            .unwrap()
            .run(&c)
            .unwrap();
        assert_eq!(s, q);
        let named =
            Search::from_search(&json!({"vector": {"name": "", "vector": [0.7, 0.7]}, "limit": 3}))
                .unwrap()
                .run(&c)
                .unwrap();
        assert_eq!(named, q);
    }

    #[test]
    fn scroll_pages_in_id_order_with_next_page_offset() {
        let u = "936da01f-9abd-4d9d-80c7-02af85c822a8";
        let c = collection(vec![
            point(json!(u), vec![1.0, 0.0], json!({"n": 0})),
            point(json!(5), vec![1.0, 0.0], json!({"n": 5})),
            point(json!(2), vec![1.0, 0.0], json!({"n": 2})),
            point(json!(9), vec![1.0, 0.0], json!({"n": 9})),
        ]);
        let page = scroll(&c, &json!({"limit": 2})).unwrap();
        assert_eq!(
            ids(page["points"].as_array().unwrap()),
            [json!(2), json!(5)]
        );
        assert_eq!(
            page["points"][0]["payload"],
            json!({"n": 2}),
            "scroll sends payloads by default"
        );
        assert_eq!(page["next_page_offset"], 9);
        let page = scroll(&c, &json!({"limit": 2, "offset": 9})).unwrap();
        assert_eq!(
            ids(page["points"].as_array().unwrap()),
            [json!(9), json!(u)]
        );
        assert_eq!(page["next_page_offset"], Value::Null);
        let page = scroll(&c, &json!({"filter": {"must": [{"key": "n", "range": {"gte": 5}}]}, "with_payload": false})).unwrap();
        assert_eq!(
            ids(page["points"].as_array().unwrap()),
            [json!(5), json!(9)]
        );
        assert!(page["points"][0].get("payload").is_none());
    }

    #[test]
    fn upsert_checks_every_point_first_and_normalises_cosine_vectors() {
        let mut c = collection(vec![]);
        let err = upsert(
            &mut c,
            &json!({"points": [{"id": 1, "vector": [3.0, 4.0]}, {"id": 2, "vector": [1.0]}]}),
        );
        assert_eq!(
            err.unwrap_err().to_string(),
            "Wrong input: Vector dimension error: expected dim: 2, got 1"
        );
        assert!(c.points.is_empty(), "nothing written");
        let r = upsert(&mut c, &json!({"batch": {"ids": [1, "936DA01F9ABD4D9D80C702AF85C822A8"], "vectors": [[3.0, 4.0], [1.0, 0.0]], "payloads": [{"a": 1}, null]}})).unwrap();
        assert_eq!(r, json!({"operation_id": 1, "status": "completed"}));
        assert_eq!(c.points[0].vector, [0.6, 0.8]);
        assert_eq!(c.points[1].id, "936da01f-9abd-4d9d-80c7-02af85c822a8");
        assert_eq!(c.points[1].payload, json!({}));
        let got = retrieve(
            &c,
            &json!({"ids": ["936da01f-9abd-4d9d-80c7-02af85c822a8", 1, 1, 7], "with_vector": true}),
        )
        .unwrap();
        assert_eq!(
            ids(got.as_array().unwrap()),
            [json!("936da01f-9abd-4d9d-80c7-02af85c822a8"), json!(1)],
            "asked order, once each, missing left out"
        );
        assert_eq!(got[1]["payload"], json!({"a": 1}));
        assert_eq!(got[1]["vector"], json!([0.6f32, 0.8f32]));
        assert!(matches!(
            upsert(
                &mut c,
                &json!({"points": [{"id": "x", "vector": [1.0, 0.0]}]})
            ),
            Err(QdrantError::Format(_))
        ));
    }

    #[test]
    fn named_vectors_are_stored_queried_and_returned_by_name() {
        let mut c = Collection::new("n", 1);
        c.vectors = VectorsConfig::parse(Some(&json!({"img": {"size": 2, "distance": "Euclid"}, "txt": {"size": 3, "distance": "Dot"}}))).unwrap();
        upsert(
            &mut c,
            &json!({"points": [
                {"id": 1, "vector": {"img": [0.0, 0.0], "txt": [1.0, 0.0, 0.0]}},
                {"id": 2, "vector": {"img": [3.0, 4.0]}}
            ]}),
        )
        .unwrap();
        let hits = Search::from_query(
            &json!({"query": [3.0, 3.0], "using": "img", "with_vector": ["img"]}),
        )
        .unwrap()
        .run(&c)
        .unwrap();
        assert_eq!(
            ids(&hits),
            [json!(2), json!(1)],
            "Euclid: smaller is better"
        );
        assert!((hits[0]["score"].as_f64().unwrap() - 1.0).abs() < 1e-9);
        assert_eq!(hits[0]["vector"], json!({"img": [3.0, 4.0]}));
        let hits = Search::from_query(&json!({"query": [1.0, 1.0, 1.0], "using": "txt"}))
            .unwrap()
            .run(&c)
            .unwrap();
        assert_eq!(ids(&hits), [json!(1)], "only points with that vector");
        assert!(
            Search::from_query(&json!({"query": [3.0, 3.0]}))
                .unwrap()
                .run(&c)
                .is_err(),
            "no unnamed vector"
        );
        assert!(upsert(
            &mut c,
            &json!({"points": [{"id": 3, "vector": {"nope": [1.0]}}]})
        )
        .is_err());
        assert_eq!(
            collection_info(&c)["config"]["params"]["vectors"]["txt"],
            json!({"size": 3, "distance": "Dot"})
        );
    }

    #[test]
    fn collection_info_has_every_field_qdrant_client_requires() {
        let mut c = collection(vec![point(json!(1), vec![1.0, 0.0], json!({"city": "x"}))]);
        create_index(
            &mut c,
            &json!({"field_name": "city", "field_schema": "keyword"}),
        )
        .unwrap();
        let info = collection_info(&c);
        // CollectionInfo, CollectionConfig, HnswConfig, OptimizersConfig, WalConfig:
        // the `required` lists of Qdrant 1.19's OpenAPI schema.
        for k in [
            "status",
            "optimizer_status",
            "segments_count",
            "config",
            "payload_schema",
        ] {
            assert!(info.get(k).is_some(), "CollectionInfo.{k}");
        }
        for k in ["params", "hnsw_config", "optimizer_config"] {
            assert!(info["config"].get(k).is_some(), "CollectionConfig.{k}");
        }
        for k in ["m", "ef_construct", "full_scan_threshold"] {
            assert!(info["config"]["hnsw_config"][k].is_u64(), "HnswConfig.{k}");
        }
        for k in ["default_segment_number", "flush_interval_sec"] {
            assert!(
                info["config"]["optimizer_config"][k].is_u64(),
                "OptimizersConfig.{k}"
            );
        }
        for k in ["wal_capacity_mb", "wal_segments_ahead"] {
            assert!(info["config"]["wal_config"][k].is_u64(), "WalConfig.{k}");
        }
        assert_eq!(
            info["config"]["params"]["vectors"],
            json!({"size": 2, "distance": "Cosine"})
        );
        assert_eq!(info["points_count"], 1);
        assert_eq!(
            info["payload_schema"],
            json!({"city": {"data_type": "keyword", "points": 1}})
        );
        assert_eq!(info["status"], "green");
        assert_eq!(info["optimizer_status"], "ok");
    }

    #[test]
    fn service_answers_match_the_real_server() {
        let v = version_info();
        assert_eq!(v["title"], "qdrant - vector search engine");
        let parts: Vec<u64> = v["version"]
            .as_str()
            .unwrap()
            .split('.')
            .map(|p| p.parse().unwrap())
            .collect();
        assert_eq!(parts.len(), 3);
        // qdrant-client 1.20 accepts servers 1.19 to 1.21 without a warning.
        assert!(parts[0] == 1 && parts[1].abs_diff(20) <= 1, "{v}");
        assert_eq!(health("/healthz"), Some("healthz check passed"));
        assert_eq!(health("/livez"), Some("healthz check passed"));
        assert_eq!(health("/readyz"), Some("all shards are ready"));
        assert_eq!(health("/health"), None);
        assert_eq!(QdrantError::collection("x").status(), StatusCode::NOT_FOUND);
        assert_eq!(
            QdrantError::AlreadyExists("x".into()).to_string(),
            "Wrong input: Collection `x` already exists!"
        );
    }
}
