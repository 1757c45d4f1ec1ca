//! Vector result faults on Milvus's gRPC search answers (`SearchResults` of
//! `/milvus.proto.milvus.MilvusService/Search`), edited on the wire.
//!
//! A `SearchResultData` keeps its hits as parallel arrays: `topks` (hits per
//! query), then one entry per hit, in query order, in `scores`, `ids`,
//! `distances`, every `fields_data` column, `group_by_field_value(s)`,
//! `element_indices` and each highlight's `datas`. Dropping or reordering hits
//! means selecting the same rows from every one of them and fixing `topks`; a
//! single array left out would hand pymilvus a hit with another hit's fields.
//!
//! Which hits go is decided by the very code the REST rewrites use: the hits are
//! handed to [`crate::vector::results`] as a Milvus REST answer of row numbers and
//! scores, the faults run there with the same RNG, and the rows it keeps are
//! selected here. So a seed drops the same hits, in the same order, whichever
//! protocol the client speaks, and the noise added to a score is the same draw.
//!
//! Columns are stored as Milvus writes them: scalars one value per hit (nullable
//! ones with `valid_data` beside them), vectors `dim` floats, `dim/8` bytes
//! (binary), `2·dim` bytes (float16, bfloat16) or `dim` bytes (int8) per hit,
//! sparse vectors one `contents` entry per hit, vector arrays one entry per hit,
//! and nullable vectors (or compacted scalars) only for the hits that are valid
//! (pymilvus reads those through a prefix sum of `valid_data`). Struct-array
//! columns hold one such column per sub-field.
//!
//! Every byte outside what changes is kept: the status, the collection name, each
//! column's name, type, id and dim, unknown fields of the top message, and each
//! kept element's own bytes (a kept string is copied, not re-encoded). Only the
//! arrays that lost or moved rows, and the lengths of the messages that hold them,
//! are new. `top_k` (the limit asked for) and `num_queries` stay as Milvus reports
//! them: a real Milvus that finds fewer hits than the limit still says the limit.
//! Anything whose layout is not one of these (an unknown field inside the results,
//! a column whose length matches no reading, a group) is left alone with a
//! reason: a drill must not believe it measured a fault that did not apply.

use std::fmt;
use std::ops::Range;

use bytes::Bytes;
use rand_chacha::ChaCha8Rng;
use serde::Deserialize;

use super::super::frame;
use super::super::wire::{self, Field, WireError, WireType};
use super::parse_status;
use crate::api::ApiKind;
use crate::fault::{BodyFault, ResultsFault};
use crate::vector::results;

/// Why a fault, or a whole message, was left alone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Skip {
    /// The message is compressed (`grpc-encoding`): its bytes cannot be read.
    Compressed,
    /// The bytes are not a protobuf message.
    Malformed(WireError),
    /// A protobuf message, but not laid out as a SearchResults brownout can edit
    /// consistently; the text says where.
    UnknownLayout(&'static str),
    /// The fault had nothing to act on (no hits, one hit to shuffle, fewer hits
    /// than the limit), or the upstream answered an error status.
    NothingToChange,
    /// A fault brownout applies on REST only (`stale_results`).
    NotSupportedOnGrpc,
    /// An embeddings fault on a search answer.
    WrongEndpoint,
}

impl Skip {
    /// The reason as written in `faults_skipped`.
    pub fn as_str(self) -> &'static str {
        match self {
            Skip::Compressed => "compressed",
            Skip::Malformed(_) => "malformed",
            Skip::UnknownLayout(_) => "unknown_shape",
            Skip::NothingToChange => "nothing_to_change",
            Skip::NotSupportedOnGrpc => "not_supported_on_grpc",
            Skip::WrongEndpoint => "wrong_endpoint",
        }
    }
}

impl fmt::Display for Skip {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Skip::Malformed(e) => write!(f, "malformed: {e}"),
            Skip::UnknownLayout(why) => write!(f, "unknown_shape: {why}"),
            other => f.write_str(other.as_str()),
        }
    }
}

/// The outcome of [`edit_search_results`].
#[derive(Debug, Clone, PartialEq)]
pub struct SearchEdit {
    /// The edited message (unframed), or `None` when no fault changed it: forward
    /// the upstream's bytes.
    pub message: Option<Bytes>,
    /// Faults that changed the answer, as (rule index, fault type).
    pub applied: Vec<(usize, &'static str)>,
    /// Vector faults that did not apply, and why.
    pub skipped: Vec<(usize, &'static str, Skip)>,
    /// Hits the client receives (for the record's `results.returned`).
    pub returned: u64,
    /// Hits the faults removed (`results.dropped`).
    pub dropped: u64,
}

impl SearchEdit {
    /// The edited message as one gRPC message (5-byte prefix), if it changed.
    pub fn frame(&self) -> Option<Bytes> {
        self.message.as_ref().map(|m| frame::encode(m, false))
    }
}

/// Hits in a SearchResults message (the sum of `topks`), for `results.returned`
/// when no fault applies; `None` when the bytes are not one.
pub fn count_search_results(msg: &[u8]) -> Option<u64> {
    let top = wire::collect(msg, 0..msg.len()).ok()?;
    let results: Vec<&Field> = top.iter().filter(|f| f.number == 2).collect();
    match results.as_slice() {
        [] => Some(0),
        [r] if r.wire_type == WireType::Len => {
            let fields = wire::collect(msg, r.value.clone()).ok()?;
            let topks = rep(msg, &fields, 6, Elem::Varint).ok()?;
            let mut n: u64 = 0;
            for e in &topks.elems {
                let (v, _) = wire::read_varint(msg, e.start).ok()?;
                n = n.checked_add(u64::try_from(v as i64).ok()?)?;
            }
            Some(n)
        }
        _ => None,
    }
}

/// [`edit_search_results`] on one gRPC message as the splitter cut it: a
/// compressed message is left alone ([`Skip::Compressed`]).
pub fn edit_search_frame<'a, I>(
    m: &frame::Message,
    faults: I,
    rng: &mut ChaCha8Rng,
) -> Result<SearchEdit, Skip>
where
    I: IntoIterator<Item = (usize, &'a BodyFault)>,
{
    if m.compressed() {
        return Err(Skip::Compressed);
    }
    edit_search_results(&m.payload(), faults, rng)
}

/// Apply the vector result faults among `faults` (`drop_results`,
/// `limit_results`, `shuffle_results`, `empty_results`, `score_noise`), in order,
/// to one serialized `milvus.proto.milvus.SearchResults`. Other faults are
/// ignored (the caller handles them); `stale_results` is skipped as not
/// supported on gRPC, embedding faults as the wrong endpoint.
///
/// `rng` is the decision's seeded stream: the same seed makes the same choices as
/// the REST rewrite of the same hits. An answer whose status is an error has no
/// hits to change. `Err` when the message cannot be edited safely; then nothing
/// applied and the upstream's bytes go to the client.
pub fn edit_search_results<'a, I>(
    msg: &[u8],
    faults: I,
    rng: &mut ChaCha8Rng,
) -> Result<SearchEdit, Skip>
where
    I: IntoIterator<Item = (usize, &'a BodyFault)>,
{
    let top = wire::collect(msg, 0..msg.len()).map_err(Skip::Malformed)?;
    let mut failed = false;
    for f in top.iter().filter(|f| f.number == 1) {
        if f.wire_type != WireType::Len {
            return Err(Skip::UnknownLayout("status is not a message"));
        }
        let st = parse_status(msg, f.value.clone(), true)
            .ok_or(Skip::UnknownLayout("status does not parse"))?;
        failed |= !st.is_success();
    }
    let results: Vec<&Field> = top.iter().filter(|f| f.number == 2).collect();
    let data = match results.as_slice() {
        [] => None,
        [r] if r.wire_type == WireType::Len => {
            Some((r.span.clone(), ResultData::read(msg, r.value.clone())?))
        }
        [_] => return Err(Skip::UnknownLayout("results is not a message")),
        _ => return Err(Skip::UnknownLayout("results sent more than once")),
    };
    let rows = match (&data, failed) {
        (Some((_, d)), false) => d.rows(msg)?,
        _ => Vec::new(),
    };

    // The decisions: the REST rewriter's own, on a Milvus REST answer whose hits
    // are row numbers and scores.
    let json = rows_json(&rows);
    let mut doc = results::parse(ApiKind::Milvus, json.as_bytes())
        .map_err(|_| Skip::UnknownLayout("hits could not be handed to the decision code"))?;
    let before = doc.count();
    let mut applied = Vec::new();
    let mut skipped = Vec::new();
    for (rule, fault) in faults {
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
                if doc.count() == 0 {
                    Err(crate::vector::Skip::NothingToChange)
                } else {
                    doc.empty();
                    Ok(())
                }
            }
            ResultsFault::StaleResults(_) => {
                skipped.push((rule, kind, Skip::NotSupportedOnGrpc));
                continue;
            }
        };
        match ok {
            Ok(()) => applied.push((rule, kind)),
            Err(_) => skipped.push((rule, kind, Skip::NothingToChange)),
        }
    }
    let after = doc.count();
    let returned = after as u64;
    let dropped = before.saturating_sub(after) as u64;
    let message = match (&data, applied.is_empty()) {
        (Some((span, d)), false) => {
            let lists = read_back(&doc.hits)?;
            let content = d.write(msg, &rows, &lists)?;
            let mut field = Vec::with_capacity(content.len() + 8);
            wire::put_len_field(&mut field, 2, &content);
            Some(Bytes::from(wire::splice(msg, &[(span.clone(), field)])))
        }
        _ => None,
    };
    Ok(SearchEdit {
        message,
        applied,
        skipped,
        returned,
        dropped,
    })
}

/// One hit as the decision code sees it: its row and its score.
#[derive(Debug, Clone, Copy)]
struct Row {
    row: usize,
    score: f32,
}

/// The hits per query, in the order Milvus sent them.
fn rows_json(lists: &[Vec<Row>]) -> String {
    let mut s = String::from("{\"code\":0,\"data\":[");
    for (q, list) in lists.iter().enumerate() {
        if q > 0 {
            s.push(',');
        }
        s.push('[');
        for (i, r) in list.iter().enumerate() {
            if i > 0 {
                s.push(',');
            }
            let score = serde_json::Number::from_f64(f64::from(r.score))
                .map_or_else(|| "null".to_string(), |n| n.to_string());
            s.push_str(&format!("{{\"r\":{},\"distance\":{score}}}", r.row));
        }
        s.push(']');
    }
    s.push_str("]}");
    s
}

/// Per query, the rows kept in their new order, each with its score as the
/// decision code left it (`None`: not a number).
type Decided = Vec<Vec<(usize, Option<f64>)>>;

#[derive(Deserialize)]
struct RowBack {
    r: usize,
    #[serde(default)]
    distance: Option<f64>,
}

/// The decision code's hits back as (row, new score) per query.
fn read_back(hits: &[Vec<crate::vector::Hit>]) -> Result<Decided, Skip> {
    hits.iter()
        .map(|list| {
            list.iter()
                .map(|h| {
                    let text = h.parts().first().map_or("", |p| p);
                    serde_json::from_str::<RowBack>(text)
                        .map(|b| (b.r, b.distance))
                        .map_err(|_| Skip::UnknownLayout("decision code returned an unknown hit"))
                })
                .collect()
        })
        .collect()
}

// ---------------------------------------------------------------------------
// Repeated fields
// ---------------------------------------------------------------------------

/// How one element of a repeated field is encoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Elem {
    Varint,
    Fixed32,
    Fixed64,
    /// Strings, bytes and messages: one field occurrence per element.
    Len,
}

/// A repeated field gathered from all its occurrences.
#[derive(Debug, Clone)]
struct Rep {
    number: u32,
    kind: Elem,
    /// Per element: its value bytes (numbers), or its whole occurrence (`Len`).
    elems: Vec<Range<usize>>,
    /// Numbers: whether any occurrence was packed (the rewrite stays packed).
    packed: bool,
    present: bool,
}

fn rep(buf: &[u8], fields: &[Field], number: u32, kind: Elem) -> Result<Rep, Skip> {
    let mut r = Rep {
        number,
        kind,
        elems: Vec::new(),
        packed: false,
        present: false,
    };
    for f in fields.iter().filter(|f| f.number == number) {
        r.present = true;
        match (kind, f.wire_type) {
            (Elem::Len, WireType::Len) => r.elems.push(f.span.clone()),
            (Elem::Varint, WireType::Varint)
            | (Elem::Fixed32, WireType::I32)
            | (Elem::Fixed64, WireType::I64) => r.elems.push(f.value.clone()),
            (Elem::Varint, WireType::Len) => {
                r.packed = true;
                r.elems
                    .extend(wire::packed_varints(buf, f.value.clone()).map_err(Skip::Malformed)?);
            }
            (Elem::Fixed32 | Elem::Fixed64, WireType::Len) => {
                r.packed = true;
                let w = if kind == Elem::Fixed32 { 4 } else { 8 };
                r.elems.extend(
                    wire::packed_fixed(f.value.clone(), w, buf.len()).map_err(Skip::Malformed)?,
                );
            }
            _ => {
                return Err(Skip::UnknownLayout(
                    "a repeated field has an unexpected wire type",
                ))
            }
        }
    }
    Ok(r)
}

impl Rep {
    fn len(&self) -> usize {
        self.elems.len()
    }

    /// The field with only the elements at `idx`, in that order; `patch` may give
    /// an element new value bytes. Empty when no element is left (proto3 omits an
    /// empty repeated field).
    fn write(
        &self,
        buf: &[u8],
        idx: &[usize],
        patch: &dyn Fn(usize) -> Option<Vec<u8>>,
    ) -> Vec<u8> {
        let mut out = Vec::new();
        let value = |i: usize| -> Vec<u8> {
            patch(i).unwrap_or_else(|| buf.get(self.elems[i].clone()).unwrap_or(&[]).to_vec())
        };
        match self.kind {
            Elem::Len => {
                for &i in idx {
                    out.extend_from_slice(buf.get(self.elems[i].clone()).unwrap_or(&[]));
                }
            }
            _ if self.packed => {
                let mut payload = Vec::new();
                for &i in idx {
                    payload.extend_from_slice(&value(i));
                }
                if !payload.is_empty() {
                    wire::put_len_field(&mut out, self.number, &payload);
                }
            }
            kind => {
                let wt = match kind {
                    Elem::Fixed32 => WireType::I32,
                    Elem::Fixed64 => WireType::I64,
                    _ => WireType::Varint,
                };
                for &i in idx {
                    wire::put_tag(&mut out, self.number, wt);
                    out.extend_from_slice(&value(i));
                }
            }
        }
        out
    }

    /// The elements read as bools (validity masks).
    fn bools(&self, buf: &[u8]) -> Result<Vec<bool>, Skip> {
        self.elems
            .iter()
            .map(|e| {
                wire::read_varint(buf, e.start)
                    .map(|(v, _)| v != 0)
                    .map_err(Skip::Malformed)
            })
            .collect()
    }
}

fn no_patch(_: usize) -> Option<Vec<u8>> {
    None
}

/// A message re-encoded from its fields: each field number in `once` gets its bytes
/// at its first occurrence (later occurrences dropped), each in `per` has its
/// occurrences replaced one by one, and every other field is copied as it was.
fn rebuild(
    buf: &[u8],
    fields: &[Field],
    once: &[(u32, Vec<u8>)],
    per: &[(u32, Vec<Vec<u8>>)],
) -> Vec<u8> {
    let mut out = Vec::with_capacity(fields.last().map_or(0, |f| f.span.end) + 16);
    let mut done: Vec<u32> = Vec::new();
    let mut seen: Vec<(u32, usize)> = Vec::new();
    for f in fields {
        if let Some((_, bytes)) = once.iter().find(|(n, _)| *n == f.number) {
            if !done.contains(&f.number) {
                out.extend_from_slice(bytes);
                done.push(f.number);
            }
            continue;
        }
        if let Some((_, all)) = per.iter().find(|(n, _)| *n == f.number) {
            let i = match seen.iter_mut().find(|(n, _)| *n == f.number) {
                Some((_, c)) => {
                    *c += 1;
                    *c - 1
                }
                None => {
                    seen.push((f.number, 1));
                    0
                }
            };
            if let Some(b) = all.get(i) {
                out.extend_from_slice(b);
            }
            continue;
        }
        out.extend_from_slice(buf.get(f.span.clone()).unwrap_or(&[]));
    }
    out
}

fn len_field(number: u32, content: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(content.len() + 6);
    wire::put_len_field(&mut out, number, content);
    out
}

/// The one occurrence of a singular field, if any; twice is not a layout brownout
/// edits (protobuf would merge them).
fn single<'f>(
    fields: &'f [Field],
    number: u32,
    what: &'static str,
) -> Result<Option<&'f Field>, Skip> {
    let mut it = fields.iter().filter(|f| f.number == number);
    let first = it.next();
    if it.next().is_some() {
        return Err(Skip::UnknownLayout(what));
    }
    match first {
        Some(f) if f.wire_type != WireType::Len => Err(Skip::UnknownLayout(what)),
        other => Ok(other),
    }
}

fn only_known(fields: &[Field], known: &[u32], what: &'static str) -> Result<(), Skip> {
    if fields.iter().all(|f| known.contains(&f.number)) {
        Ok(())
    } else {
        Err(Skip::UnknownLayout(what))
    }
}

// ---------------------------------------------------------------------------
// Arrays (LongArray, StringArray, FloatArray, ...): a message whose field 1 (or
// another) is the repeated data.
// ---------------------------------------------------------------------------

#[derive(Debug, Clone)]
struct Arr {
    /// The field holding the array message in its parent.
    number: u32,
    inner: Vec<Field>,
    data: Rep,
}

fn arr(
    buf: &[u8],
    field: &Field,
    data_number: u32,
    kind: Elem,
    known: &[u32],
    what: &'static str,
) -> Result<Arr, Skip> {
    let inner = wire::collect(buf, field.value.clone()).map_err(Skip::Malformed)?;
    only_known(&inner, known, what)?;
    let data = rep(buf, &inner, data_number, kind)?;
    Ok(Arr {
        number: field.number,
        inner,
        data,
    })
}

impl Arr {
    /// The array field with only the data elements at `idx` (the message is kept,
    /// even empty, so a oneof stays set).
    fn write(
        &self,
        buf: &[u8],
        idx: &[usize],
        patch: &dyn Fn(usize) -> Option<Vec<u8>>,
    ) -> Vec<u8> {
        let data = self.data.write(buf, idx, patch);
        let content = if self.data.present {
            rebuild(buf, &self.inner, &[(self.data.number, data)], &[])
        } else {
            rebuild(buf, &self.inner, &[], &[])
        };
        len_field(self.number, &content)
    }
}

// ---------------------------------------------------------------------------
// Physical rows: aligned with the hits, or only for the valid ones.
// ---------------------------------------------------------------------------

#[derive(Debug, Clone)]
enum Phys {
    Aligned,
    /// Only valid rows are stored; the prefix sum maps a hit to its stored row.
    Compact(Vec<bool>),
}

fn phys(count: usize, per_row: usize, n: usize, mask: Option<&[bool]>) -> Result<Phys, Skip> {
    if Some(count) == n.checked_mul(per_row) {
        return Ok(Phys::Aligned);
    }
    if let Some(m) = mask {
        let valid = m.iter().filter(|v| **v).count();
        if Some(count) == valid.checked_mul(per_row) {
            return Ok(Phys::Compact(m.to_vec()));
        }
    }
    Err(Skip::UnknownLayout(
        "a column's length matches neither the hits nor its valid rows",
    ))
}

impl Phys {
    /// Stored rows for the hits `rows`, in that order.
    fn rows(&self, rows: &[usize]) -> Vec<usize> {
        match self {
            Phys::Aligned => rows.to_vec(),
            Phys::Compact(mask) => {
                let mut prefix = Vec::with_capacity(mask.len());
                let mut n = 0;
                for v in mask {
                    prefix.push(n);
                    n += usize::from(*v);
                }
                rows.iter()
                    .filter(|&&r| mask.get(r).copied().unwrap_or(false))
                    .filter_map(|&r| prefix.get(r).copied())
                    .collect()
            }
        }
    }
}

/// Element indices of `rows` when each row is `width` consecutive elements.
fn widen(rows: &[usize], width: usize) -> Vec<usize> {
    rows.iter()
        .flat_map(|&r| r * width..(r + 1) * width)
        .collect()
}

// ---------------------------------------------------------------------------
// Columns (FieldData)
// ---------------------------------------------------------------------------

/// Deepest column nesting read: a struct-array column's sub-columns.
const MAX_COLUMN_DEPTH: usize = 1;

#[derive(Debug, Clone)]
struct Column {
    number: u32,
    inner: Vec<Field>,
    valid: Option<Rep>,
    body: Body,
}

#[derive(Debug, Clone)]
enum Body {
    Empty,
    Scalars {
        number: u32,
        inner: Vec<Field>,
        data: Option<(Arr, Phys)>,
        valid: Option<Rep>,
    },
    Vectors {
        number: u32,
        inner: Vec<Field>,
        data: VecData,
        valid: Option<Rep>,
    },
    Structs {
        number: u32,
        inner: Vec<Field>,
        columns: Vec<Column>,
    },
}

#[derive(Debug, Clone)]
enum VecData {
    None,
    /// Dense vectors stored as numbers: `width` elements per row.
    Numbers {
        arr: Arr,
        width: usize,
        phys: Phys,
    },
    /// Dense vectors stored as one bytes field: `width` bytes per row.
    Bytes {
        number: u32,
        value: Range<usize>,
        width: usize,
        phys: Phys,
    },
    /// One element per row (sparse `contents`, vector arrays' `data`).
    PerRow {
        arr: Arr,
        phys: Phys,
    },
}

/// A validity mask: present and one entry per hit, or absent.
fn mask(buf: &[u8], fields: &[Field], number: u32, n: usize) -> Result<Option<Rep>, Skip> {
    let r = rep(buf, fields, number, Elem::Varint)?;
    if r.len() == 0 {
        return Ok(None);
    }
    if r.len() != n {
        return Err(Skip::UnknownLayout(
            "valid_data does not have one entry per hit",
        ));
    }
    let _ = r.bools(buf)?;
    Ok(Some(r))
}

/// Scalar oneof members of ScalarField: (field, element encoding).
fn scalar_kind(number: u32) -> Option<Elem> {
    match number {
        // bool, int, long, timestamptz, date, time
        1 | 2 | 3 | 11 | 15 | 16 => Some(Elem::Varint),
        4 => Some(Elem::Fixed32),
        5 => Some(Elem::Fixed64),
        // string, bytes, array (ScalarField per row), json, geometry, wkt, mol, smiles
        6..=10 | 12..=14 => Some(Elem::Len),
        _ => None,
    }
}

impl Column {
    fn read(buf: &[u8], field: &Field, n: usize, depth: usize) -> Result<Column, Skip> {
        if field.wire_type != WireType::Len {
            return Err(Skip::UnknownLayout("a column is not a message"));
        }
        let inner = wire::collect(buf, field.value.clone()).map_err(Skip::Malformed)?;
        only_known(
            &inner,
            &[1, 2, 3, 4, 5, 6, 7, 8],
            "unknown field in a column",
        )?;
        let valid = mask(buf, &inner, 7, n)?;
        let outer_mask = match &valid {
            Some(r) => Some(r.bools(buf)?),
            None => None,
        };
        let scalars = single(&inner, 3, "column scalars")?;
        let vectors = single(&inner, 4, "column vectors")?;
        let structs = single(&inner, 8, "column struct arrays")?;
        let body = match (scalars, vectors, structs) {
            (None, None, None) => {
                if n > 0 {
                    return Err(Skip::UnknownLayout("a column holds no data"));
                }
                Body::Empty
            }
            (Some(s), None, None) => read_scalars(buf, s, n, outer_mask.as_deref())?,
            (None, Some(v), None) => read_vectors(buf, v, n, outer_mask.as_deref())?,
            (None, None, Some(s)) => {
                if depth >= MAX_COLUMN_DEPTH {
                    return Err(Skip::UnknownLayout("struct arrays nested too deep"));
                }
                let sinner = wire::collect(buf, s.value.clone()).map_err(Skip::Malformed)?;
                only_known(&sinner, &[1], "unknown field in struct arrays")?;
                let columns = sinner
                    .iter()
                    .filter(|f| f.number == 1)
                    .map(|f| Column::read(buf, f, n, depth + 1))
                    .collect::<Result<Vec<_>, _>>()?;
                Body::Structs {
                    number: s.number,
                    inner: sinner,
                    columns,
                }
            }
            _ => return Err(Skip::UnknownLayout("a column holds two kinds of data")),
        };
        Ok(Column {
            number: field.number,
            inner,
            valid,
            body,
        })
    }

    fn write(&self, buf: &[u8], rows: &[usize]) -> Vec<u8> {
        let mut once = Vec::new();
        if let Some(v) = &self.valid {
            once.push((7, v.write(buf, rows, &no_patch)));
        }
        match &self.body {
            Body::Empty => {}
            Body::Scalars {
                number,
                inner,
                data,
                valid,
            } => {
                let mut s_once = Vec::new();
                if let Some((a, p)) = data {
                    s_once.push((a.number, a.write(buf, &p.rows(rows), &no_patch)));
                }
                if let Some(v) = valid {
                    s_once.push((17, v.write(buf, rows, &no_patch)));
                }
                once.push((
                    *number,
                    len_field(*number, &rebuild(buf, inner, &s_once, &[])),
                ));
            }
            Body::Vectors {
                number,
                inner,
                data,
                valid,
            } => {
                let mut v_once = Vec::new();
                match data {
                    VecData::None => {}
                    VecData::Numbers { arr, width, phys } => {
                        let idx = widen(&phys.rows(rows), *width);
                        v_once.push((arr.number, arr.write(buf, &idx, &no_patch)));
                    }
                    VecData::Bytes {
                        number,
                        value,
                        width,
                        phys,
                    } => {
                        let mut payload = Vec::new();
                        for r in phys.rows(rows) {
                            let start = value.start + r * width;
                            payload.extend_from_slice(buf.get(start..start + width).unwrap_or(&[]));
                        }
                        v_once.push((*number, len_field(*number, &payload)));
                    }
                    VecData::PerRow { arr, phys } => {
                        v_once.push((arr.number, arr.write(buf, &phys.rows(rows), &no_patch)));
                    }
                }
                if let Some(v) = valid {
                    v_once.push((9, v.write(buf, rows, &no_patch)));
                }
                once.push((
                    *number,
                    len_field(*number, &rebuild(buf, inner, &v_once, &[])),
                ));
            }
            Body::Structs {
                number,
                inner,
                columns,
            } => {
                let cols = columns.iter().map(|c| c.write(buf, rows)).collect();
                let content = rebuild(buf, inner, &[], &[(1, cols)]);
                once.push((*number, len_field(*number, &content)));
            }
        }
        len_field(self.number, &rebuild(buf, &self.inner, &once, &[]))
    }
}

fn read_scalars(buf: &[u8], s: &Field, n: usize, outer: Option<&[bool]>) -> Result<Body, Skip> {
    let inner = wire::collect(buf, s.value.clone()).map_err(Skip::Malformed)?;
    let valid = mask(buf, &inner, 17, n)?;
    let own = match &valid {
        Some(r) => Some(r.bools(buf)?),
        None => None,
    };
    let m = own.as_deref().or(outer);
    let mut data = None;
    for f in &inner {
        if f.number == 17 {
            continue;
        }
        let Some(kind) = scalar_kind(f.number) else {
            return Err(Skip::UnknownLayout("unknown scalar type"));
        };
        if data.is_some() || f.wire_type != WireType::Len {
            return Err(Skip::UnknownLayout(
                "scalar data sent twice or not as a message",
            ));
        }
        // ArrayArray keeps its element type in field 2.
        let known: &[u32] = if f.number == 8 { &[1, 2] } else { &[1] };
        let a = arr(buf, f, 1, kind, known, "unknown field in a scalar array")?;
        let p = phys(a.data.len(), 1, n, m)?;
        data = Some((a, p));
    }
    if data.is_none() && n > 0 {
        return Err(Skip::UnknownLayout("a scalar column holds no data"));
    }
    Ok(Body::Scalars {
        number: s.number,
        inner,
        data,
        valid,
    })
}

fn read_vectors(buf: &[u8], v: &Field, n: usize, outer: Option<&[bool]>) -> Result<Body, Skip> {
    let inner = wire::collect(buf, v.value.clone()).map_err(Skip::Malformed)?;
    only_known(
        &inner,
        &[1, 2, 3, 4, 5, 6, 7, 8, 9],
        "unknown field in a vector column",
    )?;
    let valid = mask(buf, &inner, 9, n)?;
    let own = match &valid {
        Some(r) => Some(r.bools(buf)?),
        None => None,
    };
    let m = own.as_deref().or(outer);
    let dim = inner
        .iter()
        .rev()
        .find(|f| f.number == 1 && f.wire_type == WireType::Varint)
        .map_or(0, Field::as_i64);
    let dim = usize::try_from(dim).map_err(|_| Skip::UnknownLayout("negative vector dim"))?;
    let mut data = VecData::None;
    for f in inner.iter().filter(|f| (2..=8).contains(&f.number)) {
        if !matches!(data, VecData::None) || f.wire_type != WireType::Len {
            return Err(Skip::UnknownLayout(
                "vector data sent twice or not as bytes",
            ));
        }
        data = match f.number {
            2 => {
                let a = arr(
                    buf,
                    f,
                    1,
                    Elem::Fixed32,
                    &[1],
                    "unknown field in a float vector",
                )?;
                let p = phys(a.data.len(), dim, n, m)?;
                VecData::Numbers {
                    arr: a,
                    width: dim,
                    phys: p,
                }
            }
            3 | 4 | 5 | 7 => {
                let width = match f.number {
                    3 => {
                        if dim % 8 != 0 {
                            return Err(Skip::UnknownLayout(
                                "binary vector dim is not a multiple of 8",
                            ));
                        }
                        dim / 8
                    }
                    4 | 5 => dim
                        .checked_mul(2)
                        .ok_or(Skip::UnknownLayout("vector dim out of range"))?,
                    _ => dim,
                };
                let p = phys(f.value.len(), width, n, m)?;
                VecData::Bytes {
                    number: f.number,
                    value: f.value.clone(),
                    width,
                    phys: p,
                }
            }
            6 => {
                let a = arr(
                    buf,
                    f,
                    1,
                    Elem::Len,
                    &[1, 2],
                    "unknown field in a sparse vector",
                )?;
                let p = phys(a.data.len(), 1, n, m)?;
                VecData::PerRow { arr: a, phys: p }
            }
            _ => {
                let a = arr(
                    buf,
                    f,
                    2,
                    Elem::Len,
                    &[1, 2, 3],
                    "unknown field in a vector array",
                )?;
                let p = phys(a.data.len(), 1, n, m)?;
                VecData::PerRow { arr: a, phys: p }
            }
        };
    }
    if matches!(data, VecData::None) && n > 0 {
        return Err(Skip::UnknownLayout("a vector column holds no data"));
    }
    Ok(Body::Vectors {
        number: v.number,
        inner,
        data,
        valid,
    })
}

// ---------------------------------------------------------------------------
// SearchResultData
// ---------------------------------------------------------------------------

/// Fields of SearchResultData brownout knows: 1 num_queries, 2 top_k, 3
/// fields_data, 4 scores, 5 ids, 6 topks, 7 output_fields, 8
/// group_by_field_value, 9 all_search_count, 10 distances, 11 iterator results,
/// 12 recalls, 13 primary_field_name, 14 highlight_results, 15 element_indices,
/// 17 group_by_field_values, 18 agg_buckets, 19 agg_topks. Anything else could be
/// another per-hit array, so it stops the edit.
const RESULT_FIELDS: &[u32] = &[
    1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 17, 18, 19,
];

#[derive(Debug)]
struct ResultData {
    fields: Vec<Field>,
    topks: Rep,
    topk_values: Vec<usize>,
    scores: Rep,
    /// Present with one entry per hit (left alone when empty).
    distances: Option<Rep>,
    ids: Option<Arr>,
    ids_field: Option<(u32, Vec<Field>)>,
    columns: Vec<Column>,
    group_by: Option<Column>,
    group_bys: Vec<Column>,
    element_indices: Option<Arr>,
    highlights: Vec<(Vec<Field>, Rep)>,
}

impl ResultData {
    fn read(buf: &[u8], range: Range<usize>) -> Result<ResultData, Skip> {
        let fields = wire::collect(buf, range).map_err(Skip::Malformed)?;
        only_known(&fields, RESULT_FIELDS, "unknown field in search results")?;
        let topks = rep(buf, &fields, 6, Elem::Varint)?;
        let mut topk_values = Vec::with_capacity(topks.len());
        let mut n: usize = 0;
        for e in &topks.elems {
            let (v, _) = wire::read_varint(buf, e.start).map_err(Skip::Malformed)?;
            let k = usize::try_from(v as i64).map_err(|_| Skip::UnknownLayout("negative topk"))?;
            n = n
                .checked_add(k)
                .ok_or(Skip::UnknownLayout("topks overflow"))?;
            topk_values.push(k);
        }
        // A hit takes at least 4 bytes (its score): more hits than that is a lie.
        if n > buf.len() / 4 + 1 {
            return Err(Skip::UnknownLayout(
                "topks claim more hits than the message holds",
            ));
        }
        let scores = rep(buf, &fields, 4, Elem::Fixed32)?;
        if scores.len() != n {
            return Err(Skip::UnknownLayout("scores do not match topks"));
        }
        let distances = rep(buf, &fields, 10, Elem::Fixed32)?;
        let distances = match distances.len() {
            0 => None,
            d if d == n => Some(distances),
            _ => return Err(Skip::UnknownLayout("distances do not match topks")),
        };
        let (ids, ids_field) = match single(&fields, 5, "ids")? {
            None if n == 0 => (None, None),
            None => return Err(Skip::UnknownLayout("hits without ids")),
            Some(f) => {
                let inner = wire::collect(buf, f.value.clone()).map_err(Skip::Malformed)?;
                only_known(&inner, &[1, 2, 3], "unknown id type")?;
                let mut found = None;
                for g in &inner {
                    if found.is_some() || g.wire_type != WireType::Len {
                        return Err(Skip::UnknownLayout("ids sent twice"));
                    }
                    let kind = if g.number == 1 {
                        Elem::Varint
                    } else {
                        Elem::Len
                    };
                    found = Some(arr(buf, g, 1, kind, &[1], "unknown field in ids")?);
                }
                match found {
                    Some(a) if a.data.len() == n => (Some(a), Some((f.number, inner))),
                    None if n == 0 => (None, None),
                    _ => return Err(Skip::UnknownLayout("ids do not match topks")),
                }
            }
        };
        let columns = fields
            .iter()
            .filter(|f| f.number == 3)
            .map(|f| Column::read(buf, f, n, 0))
            .collect::<Result<Vec<_>, _>>()?;
        let group_by = single(&fields, 8, "group_by_field_value")?
            .map(|f| Column::read(buf, f, n, 0))
            .transpose()?;
        let group_bys = fields
            .iter()
            .filter(|f| f.number == 17)
            .map(|f| Column::read(buf, f, n, 0))
            .collect::<Result<Vec<_>, _>>()?;
        let element_indices = match single(&fields, 15, "element_indices")? {
            None => None,
            Some(f) => {
                let a = arr(
                    buf,
                    f,
                    1,
                    Elem::Varint,
                    &[1],
                    "unknown field in element_indices",
                )?;
                match a.data.len() {
                    0 => None,
                    l if l == n => Some(a),
                    _ => return Err(Skip::UnknownLayout("element_indices do not match topks")),
                }
            }
        };
        let highlights = fields
            .iter()
            .filter(|f| f.number == 14)
            .map(|f| {
                if f.wire_type != WireType::Len {
                    return Err(Skip::UnknownLayout("highlight is not a message"));
                }
                let inner = wire::collect(buf, f.value.clone()).map_err(Skip::Malformed)?;
                only_known(&inner, &[1, 2], "unknown field in a highlight")?;
                let datas = rep(buf, &inner, 2, Elem::Len)?;
                if datas.len() != n {
                    return Err(Skip::UnknownLayout("highlights do not match topks"));
                }
                Ok((inner, datas))
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(ResultData {
            fields,
            topks,
            topk_values,
            scores,
            distances,
            ids,
            ids_field,
            columns,
            group_by,
            group_bys,
            element_indices,
            highlights,
        })
    }

    /// The hits per query as rows with their scores.
    fn rows(&self, buf: &[u8]) -> Result<Vec<Vec<Row>>, Skip> {
        let mut out = Vec::with_capacity(self.topk_values.len());
        let mut row = 0;
        for &k in &self.topk_values {
            let mut list = Vec::with_capacity(k);
            for _ in 0..k {
                let e = &self.scores.elems[row];
                let b: [u8; 4] = buf
                    .get(e.clone())
                    .and_then(|s| s.try_into().ok())
                    .ok_or(Skip::UnknownLayout("score is not 4 bytes"))?;
                list.push(Row {
                    row,
                    score: f32::from_le_bytes(b),
                });
                row += 1;
            }
            out.push(list);
        }
        Ok(out)
    }

    /// The results message with the hits `lists` (rows and new scores per query).
    fn write(&self, buf: &[u8], orig: &[Vec<Row>], lists: &Decided) -> Result<Vec<u8>, Skip> {
        let n = self.scores.len();
        let rows: Vec<usize> = lists.iter().flatten().map(|(r, _)| *r).collect();
        if rows.iter().any(|&r| r >= n) {
            return Err(Skip::UnknownLayout("decision code returned an unknown row"));
        }
        // New scores where the noise moved them; the original bytes elsewhere.
        // `orig` lists every row once, in row order.
        let old: Vec<f32> = orig.iter().flatten().map(|x| x.score).collect();
        let mut new_scores: Vec<Option<[u8; 4]>> = vec![None; n];
        for (r, d) in lists.iter().flatten() {
            let Some(d) = d else { continue };
            let v = *d as f32;
            if v.is_finite() && old.get(*r).is_none_or(|o| o.to_bits() != v.to_bits()) {
                new_scores[*r] = Some(v.to_le_bytes());
            }
        }
        let score_patch = |i: usize| -> Option<Vec<u8>> {
            // `i` indexes scores' elements, which are the rows themselves.
            new_scores.get(i).copied().flatten().map(|b| b.to_vec())
        };
        let mut once: Vec<(u32, Vec<u8>)> = Vec::new();
        // topks: the new count per query, as Milvus writes them (packed int64s).
        {
            let mut payload = Vec::new();
            for l in lists {
                wire::put_varint(&mut payload, l.len() as u64);
            }
            let mut out = Vec::new();
            if self.topks.packed || !self.topks.present {
                if !payload.is_empty() {
                    wire::put_len_field(&mut out, 6, &payload);
                }
            } else {
                for l in lists {
                    wire::put_varint_field(&mut out, 6, l.len() as u64);
                }
            }
            if !self.topks.present && lists.is_empty() {
                out.clear();
            }
            once.push((6, out));
        }
        once.push((4, self.scores.write(buf, &rows, &score_patch)));
        if let Some(d) = &self.distances {
            once.push((10, d.write(buf, &rows, &no_patch)));
        }
        if let (Some(a), Some((number, inner))) = (&self.ids, &self.ids_field) {
            let content = rebuild(
                buf,
                inner,
                &[(a.number, a.write(buf, &rows, &no_patch))],
                &[],
            );
            once.push((*number, len_field(*number, &content)));
        }
        if let Some(c) = &self.group_by {
            once.push((8, c.write(buf, &rows)));
        }
        if let Some(a) = &self.element_indices {
            once.push((15, a.write(buf, &rows, &no_patch)));
        }
        let mut per: Vec<(u32, Vec<Vec<u8>>)> = Vec::new();
        per.push((
            3,
            self.columns.iter().map(|c| c.write(buf, &rows)).collect(),
        ));
        per.push((
            17,
            self.group_bys.iter().map(|c| c.write(buf, &rows)).collect(),
        ));
        per.push((
            14,
            self.highlights
                .iter()
                .map(|(inner, datas)| {
                    let content =
                        rebuild(buf, inner, &[(2, datas.write(buf, &rows, &no_patch))], &[]);
                    len_field(14, &content)
                })
                .collect(),
        ));
        Ok(rebuild(buf, &self.fields, &once, &per))
    }
}
