//! Milvus gRPC: search results edited on the wire, checked hit by hit against the
//! original through an independent reader written here (every parallel array,
//! every column type of the fixtures), against the REST rewrite of the same hits
//! (same seed, same decisions), byte for byte against golden files that pymilvus
//! itself has read (`fixtures/grpc/verify_golden.py`, run when a venv with
//! pymilvus is found), and under truncated and garbled input.
//!
//! Fixtures come from pymilvus's generated classes (`fixtures/grpc/make_fixtures.py`).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;

use brownout_faults::api::{ApiKind, Endpoint};
use brownout_faults::decide::rng_for;
use brownout_faults::fault;
use brownout_faults::fault::BodyFault;
use brownout_faults::grpc::milvus::{
    self, count_search_results, edit_search_frame, edit_search_results, failed_response,
    in_message_status, in_message_status_for, Skip, Status,
};
use brownout_faults::grpc::{frame, wire};
use brownout_faults::profile::FaultSpec;
use brownout_faults::stream::StreamPlan;
use brownout_faults::vector::{rewrite, StaleCache};
use serde_json::Value;

/// The body faults among `faults`, with their indices, as a plan holds them.
fn planned(faults: &[FaultSpec]) -> Vec<(usize, BodyFault)> {
    faults
        .iter()
        .enumerate()
        .filter_map(|(i, f)| BodyFault::of(f).map(|b| (i, b)))
        .collect()
}

const NQ1: &[u8] = include_bytes!("fixtures/grpc/search_int64_nq1.bin");
const NQ3: &[u8] = include_bytes!("fixtures/grpc/search_varchar_nq3.bin");
const EMPTY: &[u8] = include_bytes!("fixtures/grpc/search_empty_nq2.bin");
const FAILED: &[u8] = include_bytes!("fixtures/grpc/search_failed.bin");

fn fixtures_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/grpc")
}

// ---------------------------------------------------------------------------
// An independent reader: hits as (query, id, score bits, one cell per column).
// ---------------------------------------------------------------------------

#[derive(Debug, Clone, PartialEq)]
struct Hit {
    id: String,
    score: u32,
    distance: Option<u32>,
    cells: Vec<Option<Vec<u8>>>,
    group: Option<Vec<u8>>,
}

#[derive(Debug, Clone, PartialEq)]
struct Decoded {
    lists: Vec<Vec<Hit>>,
    /// Top-level fields other than `results`, and result fields that are not per
    /// hit: must survive byte for byte.
    kept: Vec<(u32, Vec<u8>)>,
    /// Each column's non-data fields (type, name, id, dynamic flag, dim).
    column_heads: Vec<Vec<(u32, Vec<u8>)>>,
}

fn all(buf: &[u8], r: std::ops::Range<usize>) -> Vec<wire::Field> {
    wire::collect(buf, r).expect("valid protobuf")
}

fn field(fs: &[wire::Field], n: u32) -> Option<&wire::Field> {
    fs.iter().find(|f| f.number == n)
}

/// The elements of repeated field `n`: fixed-width numbers (`width`, packed or
/// not) or length-delimited values (`None`), each element's bytes.
fn elems(buf: &[u8], fs: &[wire::Field], n: u32, width: Option<usize>) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    for f in fs.iter().filter(|f| f.number == n) {
        match (f.wire_type, width) {
            (wire::WireType::Len, Some(w)) => {
                for r in wire::packed_fixed(f.value.clone(), w, buf.len()).unwrap() {
                    out.push(buf[r].to_vec());
                }
            }
            _ => out.push(f.bytes(buf).to_vec()),
        }
    }
    out
}

fn varints(buf: &[u8], fs: &[wire::Field], n: u32) -> Vec<u64> {
    let mut out = Vec::new();
    for f in fs.iter().filter(|f| f.number == n) {
        match f.wire_type {
            wire::WireType::Len => {
                for r in wire::packed_varints(buf, f.value.clone()).unwrap() {
                    out.push(wire::read_varint(buf, r.start).unwrap().0);
                }
            }
            _ => out.push(f.int),
        }
    }
    out
}

fn varint_cells(buf: &[u8], fs: &[wire::Field], n: u32) -> Vec<Vec<u8>> {
    varints(buf, fs, n)
        .into_iter()
        .map(|v| v.to_le_bytes().to_vec())
        .collect()
}

/// One cell per hit of a FieldData column (None where the hit is null).
fn column_cells(buf: &[u8], fd: &[wire::Field], n: usize) -> Vec<Option<Vec<u8>>> {
    let valid: Vec<bool> = varints(buf, fd, 7).into_iter().map(|v| v != 0).collect();
    let stored: Vec<Vec<u8>> = if let Some(s) = field(fd, 3) {
        let sf = all(buf, s.value.clone());
        let member = sf.iter().find(|f| f.number != 17).expect("scalar data");
        let inner = all(buf, member.value.clone());
        match member.number {
            1 | 2 | 3 | 11 | 15 | 16 => varint_cells(buf, &inner, 1),
            4 => elems(buf, &inner, 1, Some(4)),
            5 => elems(buf, &inner, 1, Some(8)),
            _ => elems(buf, &inner, 1, None),
        }
    } else if let Some(v) = field(fd, 4) {
        let vf = all(buf, v.value.clone());
        let dim = field(&vf, 1).map_or(0, |f| f.int as usize);
        let data = vf
            .iter()
            .find(|f| (2..=8).contains(&f.number))
            .expect("vector data");
        match data.number {
            2 => {
                let inner = all(buf, data.value.clone());
                let floats = elems(buf, &inner, 1, Some(4));
                floats.chunks(dim).map(|c| c.concat()).collect()
            }
            6 => elems(buf, &all(buf, data.value.clone()), 1, None),
            8 => elems(buf, &all(buf, data.value.clone()), 2, None),
            k => {
                let width = match k {
                    3 => dim / 8,
                    4 | 5 => dim * 2,
                    _ => dim,
                };
                data.bytes(buf).chunks(width).map(<[u8]>::to_vec).collect()
            }
        }
    } else {
        Vec::new()
    };
    if valid.is_empty() {
        assert_eq!(stored.len(), n, "aligned column");
        return stored.into_iter().map(Some).collect();
    }
    // Nullable columns store either a value per hit or only the valid ones.
    let compact = stored.len() != n;
    let mut it = stored.into_iter();
    let mut out = Vec::new();
    for &ok in &valid {
        if compact {
            out.push(if ok { it.next() } else { None });
        } else {
            let cell = it.next();
            out.push(if ok { cell } else { None });
        }
    }
    out
}

fn decode(msg: &[u8]) -> Decoded {
    let top = all(msg, 0..msg.len());
    let mut kept: Vec<(u32, Vec<u8>)> = top
        .iter()
        .filter(|f| f.number != 2)
        .map(|f| (f.number, msg[f.span.clone()].to_vec()))
        .collect();
    let mut lists = Vec::new();
    let mut column_heads = Vec::new();
    if let Some(r) = field(&top, 2) {
        let rd = all(msg, r.value.clone());
        for f in &rd {
            if [1, 2, 7, 9, 11, 12, 13, 18, 19].contains(&f.number) {
                kept.push((f.number, msg[f.span.clone()].to_vec()));
            }
        }
        let topks: Vec<usize> = varints(msg, &rd, 6)
            .into_iter()
            .map(|v| v as usize)
            .collect();
        let n: usize = topks.iter().sum();
        let scores: Vec<u32> = elems(msg, &rd, 4, Some(4))
            .iter()
            .map(|b| u32::from_le_bytes(b[..].try_into().unwrap()))
            .collect();
        assert_eq!(scores.len(), n, "scores per hit");
        let distances: Vec<u32> = elems(msg, &rd, 10, Some(4))
            .iter()
            .map(|b| u32::from_le_bytes(b[..].try_into().unwrap()))
            .collect();
        let ids: Vec<String> = match field(&rd, 5) {
            None => Vec::new(),
            Some(f) => {
                let idf = all(msg, f.value.clone());
                match idf.first() {
                    None => Vec::new(),
                    Some(g) if g.number == 1 => varints(msg, &all(msg, g.value.clone()), 1)
                        .into_iter()
                        .map(|v| (v as i64).to_string())
                        .collect(),
                    Some(g) => elems(msg, &all(msg, g.value.clone()), 1, None)
                        .into_iter()
                        .map(|b| String::from_utf8(b).unwrap())
                        .collect(),
                }
            }
        };
        assert_eq!(ids.len(), n, "ids per hit");
        let mut cols = Vec::new();
        for f in rd.iter().filter(|f| f.number == 3) {
            let fd = all(msg, f.value.clone());
            column_heads.push(
                fd.iter()
                    .filter(|g| [1, 2, 5, 6].contains(&g.number))
                    .map(|g| (g.number, msg[g.span.clone()].to_vec()))
                    .chain(field(&fd, 4).into_iter().flat_map(|v| {
                        all(msg, v.value.clone())
                            .into_iter()
                            .filter(|h| h.number == 1)
                            .map(|h| (100, msg[h.span.clone()].to_vec()))
                            .collect::<Vec<_>>()
                    }))
                    .collect(),
            );
            cols.push(column_cells(msg, &fd, n));
        }
        let group = field(&rd, 8).map(|g| column_cells(msg, &all(msg, g.value.clone()), n));
        let mut row = 0;
        for &k in &topks {
            let mut list = Vec::new();
            for _ in 0..k {
                list.push(Hit {
                    id: ids[row].clone(),
                    score: scores[row],
                    distance: distances.get(row).copied(),
                    cells: cols.iter().map(|c| c[row].clone()).collect(),
                    group: group.as_ref().map(|g| g[row].clone().unwrap()),
                });
                row += 1;
            }
            lists.push(list);
        }
    }
    Decoded {
        lists,
        kept,
        column_heads,
    }
}

// ---------------------------------------------------------------------------
// The same hits as a Milvus REST answer, rewritten by the REST code.
// ---------------------------------------------------------------------------

fn rest_body(d: &Decoded) -> Vec<u8> {
    let lists: Vec<Value> = d
        .lists
        .iter()
        .map(|l| {
            Value::Array(
                l.iter()
                    .map(|h| serde_json::json!({"id": h.id, "distance": f32::from_bits(h.score) as f64}))
                    .collect(),
            )
        })
        .collect();
    let data = if lists.len() == 1 {
        lists.into_iter().next().unwrap()
    } else {
        Value::Array(lists)
    };
    serde_json::to_vec(&serde_json::json!({"code": 0, "data": data})).unwrap()
}

fn plan(faults: &[FaultSpec]) -> StreamPlan {
    let mut p = StreamPlan::new();
    for (i, f) in faults.iter().enumerate() {
        assert!(p.push(i, f));
    }
    p
}

fn no_stale(_: usize) -> Option<Arc<StaleCache>> {
    None
}

/// (id, score as f32 bits) per query after the REST rewrite.
fn rest_lists(orig: &Decoded, faults: &[FaultSpec], seed: u64) -> Vec<Vec<(String, u32)>> {
    let mut rng = rng_for(seed, 1, 0);
    let out = rewrite(
        ApiKind::Milvus,
        Endpoint::Search,
        &rest_body(orig),
        &plan(faults),
        &mut rng,
        &no_stale,
        "k",
    )
    .expect("rest rewrite");
    let v: Value = serde_json::from_slice(&out.body).unwrap();
    let data = &v["data"];
    let lists: Vec<&Value> = if orig.lists.len() == 1 {
        vec![data]
    } else {
        data.as_array().unwrap().iter().collect()
    };
    lists
        .into_iter()
        .map(|l| {
            l.as_array()
                .unwrap()
                .iter()
                .map(|h| {
                    let id = match &h["id"] {
                        Value::String(s) => s.clone(),
                        other => other.to_string(),
                    };
                    (id, (h["distance"].as_f64().unwrap() as f32).to_bits())
                })
                .collect()
        })
        .collect()
}

/// Apply `faults` to `msg` with `seed`; check the edit hit by hit and against
/// REST; return the edited bytes.
fn check(msg: &[u8], faults: &[FaultSpec], seed: u64) -> Vec<u8> {
    let orig = decode(msg);
    let mut rng = rng_for(seed, 1, 0);
    let edit = edit_search_results(msg, planned(faults).iter().map(|(i, f)| (*i, f)), &mut rng)
        .expect("editable");
    let Some(out) = edit.message.clone() else {
        panic!("nothing applied: {edit:?}");
    };
    let got = decode(&out);
    assert_eq!(
        got.kept, orig.kept,
        "fields that are not per hit are kept byte for byte"
    );
    assert_eq!(got.column_heads, orig.column_heads, "column heads kept");
    assert_eq!(got.lists.len(), orig.lists.len(), "one list per query");
    let noise = faults.iter().any(|f| matches!(f, FaultSpec::ScoreNoise(_)));
    for (q, list) in got.lists.iter().enumerate() {
        for h in list {
            let o = orig.lists[q]
                .iter()
                .find(|x| x.id == h.id)
                .unwrap_or_else(|| panic!("query {q}: hit {} was not in the answer", h.id));
            assert_eq!(
                h.cells, o.cells,
                "query {q} hit {}: every column moved with it",
                h.id
            );
            assert_eq!(h.distance, o.distance, "distances move with their hit");
            assert_eq!(h.group, o.group, "group-by value moves with its hit");
            if !noise {
                assert_eq!(h.score, o.score);
            }
        }
    }
    // The same decisions as the REST rewrite of the same hits.
    let rest = rest_lists(&orig, faults, seed);
    let ours: Vec<Vec<(String, u32)>> = got
        .lists
        .iter()
        .map(|l| l.iter().map(|h| (h.id.clone(), h.score)).collect())
        .collect();
    assert_eq!(ours, rest, "gRPC and REST make the same decisions");
    let before: usize = orig.lists.iter().map(Vec::len).sum();
    let after: usize = got.lists.iter().map(Vec::len).sum();
    assert_eq!(edit.returned, after as u64);
    assert_eq!(edit.dropped, (before - after) as u64);
    assert_eq!(count_search_results(&out), Some(after as u64));
    out.to_vec()
}

#[test]
fn fixtures_decode_as_pymilvus_reads_them() {
    let d = decode(NQ1);
    assert_eq!(d.lists.len(), 1);
    assert_eq!(d.lists[0].len(), 5);
    assert_eq!(d.lists[0][0].id, "1001");
    let d = decode(NQ3);
    assert_eq!(
        d.lists.iter().map(Vec::len).collect::<Vec<_>>(),
        vec![4, 1, 3]
    );
    assert_eq!(d.lists[2][0].id, "doc-c");
    // The nullable vector is stored for valid rows only.
    let maybe_vec = d
        .lists
        .iter()
        .flatten()
        .map(|h| h.cells[9].is_some())
        .collect::<Vec<_>>();
    assert_eq!(
        maybe_vec,
        vec![true, true, false, true, false, false, true, true]
    );
    assert_eq!(count_search_results(NQ3), Some(8));
}

fn drop(f: f64) -> FaultSpec {
    FaultSpec::DropResults(fault::DropResults { fraction: f })
}

#[test]
fn every_fault_keeps_the_arrays_consistent_and_matches_rest() {
    let cases: Vec<Vec<FaultSpec>> = vec![
        vec![drop(0.5)],
        vec![drop(0.01)],
        vec![drop(1.0)],
        vec![FaultSpec::LimitResults(fault::LimitResults { max: 2 })],
        vec![FaultSpec::LimitResults(fault::LimitResults { max: 0 })],
        vec![FaultSpec::ShuffleResults(fault::ShuffleResults {})],
        vec![FaultSpec::ScoreNoise(fault::ScoreNoise { stddev: 0.05 })],
        vec![
            drop(0.4),
            FaultSpec::ShuffleResults(fault::ShuffleResults {}),
            FaultSpec::ScoreNoise(fault::ScoreNoise { stddev: 0.01 }),
        ],
        vec![
            FaultSpec::ShuffleResults(fault::ShuffleResults {}),
            FaultSpec::LimitResults(fault::LimitResults { max: 1 }),
        ],
    ];
    for msg in [NQ1, NQ3] {
        for faults in &cases {
            for seed in [1u64, 7, 42, 9001] {
                check(msg, faults, seed);
            }
        }
    }
}

#[test]
fn empty_results_leaves_no_hit_and_a_success_status() {
    for msg in [NQ1, NQ3] {
        let mut rng = rng_for(3, 1, 0);
        let faults = [FaultSpec::EmptyResults(fault::EmptyResults {})];
        let edit =
            edit_search_results(msg, planned(&faults).iter().map(|(i, f)| (*i, f)), &mut rng)
                .unwrap();
        let out = edit.message.expect("changed");
        let d = decode(&out);
        assert!(d.lists.iter().all(Vec::is_empty));
        assert_eq!(
            d.lists.len(),
            decode(msg).lists.len(),
            "topks keep one entry per query"
        );
        assert_eq!(edit.returned, 0);
        assert!(in_message_status_for("Search", &out).is_some_and(|s| s.is_success()));
        assert_eq!(edit.applied, vec![(0, "empty_results")]);
    }
}

#[test]
fn nothing_to_change_and_unsupported_faults_are_skipped_with_reasons() {
    let faults = [
        drop(0.5),
        FaultSpec::ShuffleResults(fault::ShuffleResults {}),
        FaultSpec::LimitResults(fault::LimitResults { max: 3 }),
        FaultSpec::ScoreNoise(fault::ScoreNoise { stddev: 0.1 }),
        FaultSpec::EmptyResults(fault::EmptyResults {}),
        FaultSpec::StaleResults(fault::StaleResults { depth: None }),
        FaultSpec::EmbeddingNoise(fault::EmbeddingNoise { stddev: 0.1 }),
    ];
    for msg in [EMPTY, FAILED] {
        let mut rng = rng_for(3, 1, 0);
        let edit =
            edit_search_results(msg, planned(&faults).iter().map(|(i, f)| (*i, f)), &mut rng)
                .unwrap();
        assert_eq!(edit.message, None);
        assert!(edit.applied.is_empty());
        let reasons: Vec<&str> = edit.skipped.iter().map(|(_, _, s)| s.as_str()).collect();
        assert_eq!(
            reasons,
            vec![
                "nothing_to_change",
                "nothing_to_change",
                "nothing_to_change",
                "nothing_to_change",
                "nothing_to_change",
                "not_supported_on_grpc",
                "wrong_endpoint"
            ]
        );
        assert_eq!((edit.returned, edit.dropped), (0, 0));
    }
    // A limit above every list is nothing to change; the answer passes untouched.
    let mut rng = rng_for(3, 1, 0);
    let faults = [FaultSpec::LimitResults(fault::LimitResults { max: 10 })];
    let edit =
        edit_search_results(NQ1, planned(&faults).iter().map(|(i, f)| (*i, f)), &mut rng).unwrap();
    assert_eq!(edit.message, None);
    assert_eq!(edit.returned, 5);
}

#[test]
fn compressed_and_unknown_layouts_are_not_edited() {
    let faults = [drop(0.5)];
    let m = frame::Message::from_frame(frame::encode(NQ1, true)).unwrap();
    let mut rng = rng_for(3, 1, 0);
    assert_eq!(
        edit_search_frame(&m, planned(&faults).iter().map(|(i, f)| (*i, f)), &mut rng).unwrap_err(),
        Skip::Compressed
    );
    // A framed plain message works and comes back framed.
    let m = frame::Message::from_frame(frame::encode(NQ1, false)).unwrap();
    let edit =
        edit_search_frame(&m, planned(&faults).iter().map(|(i, f)| (*i, f)), &mut rng).unwrap();
    let framed = edit.frame().unwrap();
    assert_eq!(&framed[5..], &edit.message.unwrap()[..]);
    // An unknown field inside the results could be another per-hit array.
    let mut extra = NQ1.to_vec();
    let top = wire::collect(&extra, 0..extra.len()).unwrap();
    let r = top.iter().find(|f| f.number == 2).unwrap().clone();
    let mut content = extra[r.value.clone()].to_vec();
    wire::put_varint_field(&mut content, 16, 1);
    let mut field = Vec::new();
    wire::put_len_field(&mut field, 2, &content);
    extra = wire::splice(&extra, &[(r.span.clone(), field)]);
    let err = edit_search_results(
        &extra,
        planned(&faults).iter().map(|(i, f)| (*i, f)),
        &mut rng,
    )
    .unwrap_err();
    assert!(matches!(err, Skip::UnknownLayout(_)), "{err}");
    assert_eq!(err.as_str(), "unknown_shape");
    // Not protobuf at all.
    let err = edit_search_results(
        b"{\"code\":0}",
        planned(&faults).iter().map(|(i, f)| (*i, f)),
        &mut rng,
    )
    .unwrap_err();
    assert!(
        matches!(err, Skip::Malformed(_) | Skip::UnknownLayout(_)),
        "{err}"
    );
}

#[test]
fn unchanged_bytes_stay_byte_for_byte() {
    // Dropping only from the last query leaves everything before its rows alone:
    // the edit is a splice, so the untouched prefix of the message is identical.
    let faults = [FaultSpec::LimitResults(fault::LimitResults { max: 3 })];
    let mut rng = rng_for(3, 1, 0);
    let edit =
        edit_search_results(NQ1, planned(&faults).iter().map(|(i, f)| (*i, f)), &mut rng).unwrap();
    let out = edit.message.unwrap();
    // Status (field 1) precedes results and is copied as it was.
    let top_in = wire::collect(NQ1, 0..NQ1.len()).unwrap();
    let top_out = wire::collect(&out, 0..out.len()).unwrap();
    assert_eq!(&NQ1[top_in[0].span.clone()], &out[top_out[0].span.clone()]);
    // Collection name and session_ts after it as well.
    let tail_in = &NQ1[top_in[1].span.end..];
    let tail_out = &out[top_out[1].span.end..];
    assert_eq!(tail_in, tail_out);
    // Unpacked repeated fields stay unpacked, packed ones packed.
    let mut unpacked = Vec::new();
    wire::put_len_field(&mut unpacked, 1, &[]);
    let mut rd = Vec::new();
    wire::put_varint_field(&mut rd, 6, 2);
    for s in [0.5f32, 0.25] {
        wire::put_fixed32_field(&mut rd, 4, s.to_bits());
    }
    let mut ids = Vec::new();
    let mut long = Vec::new();
    wire::put_varint_field(&mut long, 1, 10);
    wire::put_varint_field(&mut long, 1, 11);
    wire::put_len_field(&mut ids, 1, &long);
    wire::put_len_field(&mut rd, 5, &ids);
    wire::put_len_field(&mut unpacked, 2, &rd);
    let faults = [FaultSpec::LimitResults(fault::LimitResults { max: 1 })];
    let edit = edit_search_results(
        &unpacked,
        planned(&faults).iter().map(|(i, f)| (*i, f)),
        &mut rng,
    )
    .unwrap();
    let out = edit.message.unwrap();
    let mut want_rd = Vec::new();
    wire::put_varint_field(&mut want_rd, 6, 1);
    wire::put_fixed32_field(&mut want_rd, 4, 0.5f32.to_bits());
    let mut ids = Vec::new();
    let mut long = Vec::new();
    wire::put_varint_field(&mut long, 1, 10);
    wire::put_len_field(&mut ids, 1, &long);
    wire::put_len_field(&mut want_rd, 5, &ids);
    let mut want = Vec::new();
    wire::put_len_field(&mut want, 1, &[]);
    wire::put_len_field(&mut want, 2, &want_rd);
    assert_eq!(&out[..], &want[..]);
}

#[test]
fn hostile_bytes_never_panic() {
    let faults = [
        drop(0.5),
        FaultSpec::ShuffleResults(fault::ShuffleResults {}),
        FaultSpec::ScoreNoise(fault::ScoreNoise { stddev: 0.1 }),
        FaultSpec::LimitResults(fault::LimitResults { max: 1 }),
    ];
    let mut x: u64 = 0x2545_f491_4f6c_dd1d;
    let mut next = || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    for msg in [NQ1, NQ3, EMPTY, FAILED] {
        // Every truncation.
        for cut in 0..msg.len() {
            let mut rng = rng_for(1, 1, 0);
            let r = edit_search_results(
                &msg[..cut],
                planned(&faults).iter().map(|(i, f)| (*i, f)),
                &mut rng,
            );
            if let Ok(Some(out)) = r.map(|e| e.message) {
                assert!(wire::collect(&out, 0..out.len()).is_ok());
            }
            let _ = in_message_status(&msg[..cut]);
            let _ = count_search_results(&msg[..cut]);
        }
        // Random byte flips.
        for _ in 0..3000 {
            let mut m = msg.to_vec();
            for _ in 0..(1 + next() % 4) {
                let i = (next() as usize) % m.len();
                m[i] = next() as u8;
            }
            let mut rng = rng_for(next(), 1, 0);
            if let Ok(e) =
                edit_search_results(&m, planned(&faults).iter().map(|(i, f)| (*i, f)), &mut rng)
            {
                if let Some(out) = e.message {
                    assert!(wire::collect(&out, 0..out.len()).is_ok());
                }
            }
            let _ = in_message_status(&m);
        }
    }
    // A lying topks: claims 2^40 hits in a tiny message.
    let mut rd = Vec::new();
    let mut topks = Vec::new();
    wire::put_varint(&mut topks, 1 << 40);
    wire::put_len_field(&mut rd, 6, &topks);
    let mut m = Vec::new();
    wire::put_len_field(&mut m, 2, &rd);
    let mut rng = rng_for(1, 1, 0);
    assert!(
        edit_search_results(&m, planned(&faults).iter().map(|(i, f)| (*i, f)), &mut rng).is_err()
    );
    // A vector column whose dim overflows any row width.
    for (member, dim) in [(4u32, u64::MAX >> 1), (2, u64::MAX >> 2), (3, 12)] {
        let mut rd = Vec::new();
        wire::put_fixed32_field(&mut rd, 4, 0.5f32.to_bits());
        let mut ids = Vec::new();
        ids.extend(long_array(1, [1]));
        len(&mut rd, 5, &ids);
        rd.extend(packed_varints(6, [1]));
        let mut vf = Vec::new();
        wire::put_varint_field(&mut vf, 1, dim);
        let data = if member == 2 {
            packed_floats(1, [1.0])
        } else {
            vec![1, 2]
        };
        len(&mut vf, member, &data);
        len(&mut rd, 3, &column("v", 4, &vf, None));
        let mut m = Vec::new();
        len(&mut m, 2, &rd);
        let r = edit_search_results(&m, planned(&faults).iter().map(|(i, f)| (*i, f)), &mut rng);
        assert!(
            matches!(r, Err(Skip::UnknownLayout(_))),
            "{member} {dim}: {r:?}"
        );
    }
}

// ---------------------------------------------------------------------------
// Golden files, read by pymilvus.
// ---------------------------------------------------------------------------

fn golden_faults() -> Vec<FaultSpec> {
    vec![
        drop(0.4),
        FaultSpec::ShuffleResults(fault::ShuffleResults {}),
        FaultSpec::ScoreNoise(fault::ScoreNoise { stddev: 0.01 }),
    ]
}

fn python() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("BROWNOUT_PYMILVUS_PYTHON") {
        return Some(PathBuf::from(p));
    }
    let p = PathBuf::from("/tmp/pymilvus-venv/bin/python");
    p.exists().then_some(p)
}

#[test]
fn golden_edits_match_and_pymilvus_reads_them() {
    let dir = fixtures_dir();
    for name in ["search_int64_nq1", "search_varchar_nq3"] {
        let input = std::fs::read(dir.join(format!("{name}.bin"))).unwrap();
        let out = check(&input, &golden_faults(), 7);
        let golden = dir.join(format!("{name}.golden.bin"));
        if std::env::var_os("BROWNOUT_UPDATE_GOLDEN").is_some() {
            std::fs::write(&golden, &out).unwrap();
            let lists: Vec<Vec<String>> = decode(&out)
                .lists
                .iter()
                .map(|l| l.iter().map(|h| h.id.clone()).collect())
                .collect();
            let meta = serde_json::json!({
                "faults": ["drop_results 0.4", "shuffle_results", "score_noise 0.01"],
                "seed": 7,
                "ids": lists,
            });
            std::fs::write(
                dir.join(format!("{name}.golden.json")),
                serde_json::to_vec_pretty(&meta).unwrap(),
            )
            .unwrap();
        }
        let want =
            std::fs::read(&golden).expect("golden file (BROWNOUT_UPDATE_GOLDEN=1 writes it)");
        assert_eq!(out, want, "{name}: edit differs from the golden file");
    }
    if let Some(py) = python() {
        let status = Command::new(py)
            .arg(dir.join("verify_golden.py"))
            .status()
            .expect("run verify_golden.py");
        assert!(status.success(), "pymilvus rejected a golden file");
    }
}

// ---------------------------------------------------------------------------
// In-message statuses and Milvus's failed answers.
// ---------------------------------------------------------------------------

#[test]
fn failed_answers_are_byte_for_byte_what_pymilvus_classes_write() {
    let dir = fixtures_dir();
    let rate = Status::rate_limited(milvus::DEFAULT_RATE);
    for (method, file) in [
        (
            "/milvus.proto.milvus.MilvusService/Search",
            "status_rate_limit_search.bin",
        ),
        ("DropCollection", "status_rate_limit_drop_collection.bin"),
        ("Insert", "status_rate_limit_insert.bin"),
    ] {
        let want = std::fs::read(dir.join(file)).unwrap();
        assert_eq!(failed_response(method, &rate).unwrap(), want, "{method}");
        let st = in_message_status(&want).unwrap();
        assert_eq!(st, rate);
        assert_eq!((st.code, st.error_code, st.retriable), (8, 49, true));
        assert_eq!(in_message_status_for(method, &want), Some(rate.clone()));
    }
    let want = std::fs::read(dir.join("status_queue_full_search.bin")).unwrap();
    let q = milvus::preset_status("milvus.queue_full").unwrap();
    assert_eq!(failed_response("Search", &q).unwrap(), want);
    assert_eq!((q.code, q.error_code), (4, 1));
    let framed = milvus::failed_response_frame("Search", &q).unwrap();
    assert_eq!(&framed[..5], &[0, 0, 0, 0, want.len() as u8]);
    assert!(milvus::preset_status("milvus.nope").is_none());
    assert!(failed_response("Dummy", &q).is_none());
}

#[test]
fn statuses_of_real_answers() {
    // Successful search answers carry an empty status.
    for msg in [NQ1, NQ3, EMPTY] {
        assert!(in_message_status(msg).is_some_and(|s| s.is_success()));
        assert!(in_message_status_for("Search", msg).is_some_and(|s| s.is_success()));
    }
    assert!(in_message_status(FAILED).is_some_and(|s| !s.is_success()));
    // A non-success by code alone, or by legacy error code alone.
    let only_code = Status {
        code: 65535,
        ..Status::default()
    };
    assert!(!in_message_status(&only_code.encode()).unwrap().is_success());
    let only_legacy = Status {
        error_code: 4,
        reason: "collection not found".into(),
        ..Status::default()
    };
    assert!(!in_message_status(&only_legacy.encode())
        .unwrap()
        .is_success());
    // Neither a status nor a wrapper: None rather than a guess.
    assert_eq!(in_message_status(&[0x1a, 0x01, 0x41]), None);
    assert_eq!(in_message_status_for("/qdrant.Points/Search", NQ1), None);
}

// ---------------------------------------------------------------------------
// Layouts newer than the pymilvus classes used for the fixtures, built by hand:
// uuid ids, ScalarField/VectorField valid_data with compacted storage, struct
// arrays, vector arrays, highlights, element indices, group_by_field_values.
// ---------------------------------------------------------------------------

fn len(out: &mut Vec<u8>, n: u32, content: &[u8]) {
    wire::put_len_field(out, n, content);
}

fn packed_varints(n: u32, vals: impl IntoIterator<Item = u64>) -> Vec<u8> {
    let mut p = Vec::new();
    for v in vals {
        wire::put_varint(&mut p, v);
    }
    let mut out = Vec::new();
    len(&mut out, n, &p);
    out
}

fn packed_floats(n: u32, vals: impl IntoIterator<Item = f32>) -> Vec<u8> {
    let p: Vec<u8> = vals.into_iter().flat_map(f32::to_le_bytes).collect();
    let mut out = Vec::new();
    len(&mut out, n, &p);
    out
}

/// A LongArray holding `vals`, as field `n`.
fn long_array(n: u32, vals: impl IntoIterator<Item = u64>) -> Vec<u8> {
    let mut out = Vec::new();
    len(&mut out, n, &packed_varints(1, vals));
    out
}

fn column(name: &str, body_field: u32, body: &[u8], valid: Option<&[bool]>) -> Vec<u8> {
    let mut fd = Vec::new();
    wire::put_varint_field(&mut fd, 1, 5);
    len(&mut fd, 2, name.as_bytes());
    len(&mut fd, body_field, body);
    if let Some(v) = valid {
        fd.extend(packed_varints(7, v.iter().map(|b| u64::from(*b))));
    }
    fd
}

fn rare_message(n: usize) -> Vec<u8> {
    let rows = 0..n as u64;
    let valid: Vec<bool> = (0..n).map(|r| r % 3 != 1).collect();
    let mut rd = Vec::new();
    wire::put_varint_field(&mut rd, 1, 2);
    wire::put_varint_field(&mut rd, 2, 4);
    // Scalars compacted under ScalarField.valid_data (17).
    let mut sf = long_array(3, (0..n).filter(|r| valid[*r]).map(|r| 400 + r as u64));
    sf.extend(packed_varints(17, valid.iter().map(|b| u64::from(*b))));
    let mut c = Vec::new();
    len(&mut c, 3, &column("compact_scalar", 3, &sf, None));
    rd.extend(c);
    // Scalars compacted under the column's own valid_data (7).
    let sf = long_array(3, (0..n).filter(|r| valid[*r]).map(|r| 450 + r as u64));
    len(&mut rd, 3, &column("compact_outer", 3, &sf, Some(&valid)));
    // A float vector (dim 1) compacted under VectorField.valid_data (9).
    let mut vf = Vec::new();
    wire::put_varint_field(&mut vf, 1, 1);
    let mut fa = Vec::new();
    fa.extend(packed_floats(
        1,
        (0..n).filter(|r| valid[*r]).map(|r| 500.0 + r as f32),
    ));
    len(&mut vf, 2, &fa);
    vf.extend(packed_varints(9, valid.iter().map(|b| u64::from(*b))));
    len(&mut rd, 3, &column("compact_vec", 4, &vf, None));
    // A vector array: one VectorField per hit.
    let mut vf = Vec::new();
    wire::put_varint_field(&mut vf, 1, 1);
    let mut va = Vec::new();
    wire::put_varint_field(&mut va, 1, 1);
    for r in rows.clone() {
        let mut one = Vec::new();
        wire::put_varint_field(&mut one, 1, 1);
        let mut fa = Vec::new();
        fa.extend(packed_floats(1, [600.0 + r as f32]));
        len(&mut one, 2, &fa);
        len(&mut va, 2, &one);
    }
    wire::put_varint_field(&mut va, 3, 101);
    len(&mut vf, 8, &va);
    len(&mut rd, 3, &column("vec_array", 4, &vf, None));
    // A struct array with one Array<Int64> sub-column.
    let mut arr = Vec::new();
    for r in rows.clone() {
        let mut cell = Vec::new();
        cell.extend(long_array(3, [700 + r, 700 + r]));
        len(&mut arr, 1, &cell);
    }
    wire::put_varint_field(&mut arr, 2, 5);
    let mut sub_sf = Vec::new();
    len(&mut sub_sf, 8, &arr);
    let mut sa = Vec::new();
    len(&mut sa, 1, &column("sub", 3, &sub_sf, None));
    len(&mut rd, 3, &column("structs", 8, &sa, None));
    // Per-hit arrays beside the columns.
    rd.extend(packed_floats(4, (0..n).map(|r| 1.0 - r as f32 / 100.0)));
    let mut ids = Vec::new();
    let mut uu = Vec::new();
    for r in rows.clone() {
        len(&mut uu, 1, &[r as u8; 16]);
    }
    len(&mut ids, 3, &uu);
    len(&mut rd, 5, &ids);
    let half = n as u64 / 2;
    rd.extend(packed_varints(6, [half, n as u64 - half]));
    let mut hl = Vec::new();
    len(&mut hl, 1, b"text");
    for r in rows.clone() {
        let mut d = Vec::new();
        len(&mut d, 1, format!("h{r}").as_bytes());
        len(&mut hl, 2, &d);
    }
    len(&mut rd, 14, &hl);
    rd.extend(long_array(15, rows.clone().map(|r| 800 + r)));
    let sf = long_array(3, rows.map(|r| 900 + r));
    len(&mut rd, 17, &column("gb", 3, &sf, None));
    let mut msg = Vec::new();
    len(&mut msg, 1, &[]);
    len(&mut msg, 2, &rd);
    msg
}

/// Every varint found under field path `path` (packed or not at the leaf): the
/// row markers of a `rare_message`.
fn markers(buf: &[u8], range: std::ops::Range<usize>, path: &[u32], out: &mut Vec<u64>) {
    let fs = all(buf, range);
    let Some((&first, rest)) = path.split_first() else {
        return;
    };
    for f in fs.iter().filter(|f| f.number == first) {
        match (rest.is_empty(), f.wire_type) {
            (true, wire::WireType::Len) => {
                for r in wire::packed_varints(buf, f.value.clone()).unwrap() {
                    out.push(wire::read_varint(buf, r.start).unwrap().0);
                }
            }
            (true, _) => out.push(f.int),
            (false, wire::WireType::Len) => markers(buf, f.value.clone(), rest, out),
            (false, _) => {}
        }
    }
}

/// The markers of every per-hit array of a `rare_message`, in hit order.
fn rare_markers(msg: &[u8]) -> Vec<(String, Vec<u64>)> {
    let top = all(msg, 0..msg.len());
    let rd = field(&top, 2).unwrap().value.clone();
    let fs = all(msg, rd.clone());
    let mut out = Vec::new();
    let ids: Vec<u64> = field(&all(msg, field(&fs, 5).unwrap().value.clone()), 3)
        .map(|u| {
            all(msg, u.value.clone())
                .iter()
                .map(|f| u64::from(msg[f.value.start]))
                .collect()
        })
        .unwrap_or_default();
    out.push(("ids".to_string(), ids));
    let cols: Vec<&wire::Field> = fs.iter().filter(|f| f.number == 3).collect();
    let mut m = Vec::new();
    markers(msg, cols[0].value.clone(), &[3, 3, 1], &mut m);
    out.push(("compact_scalar".into(), std::mem::take(&mut m)));
    markers(msg, cols[1].value.clone(), &[3, 3, 1], &mut m);
    out.push(("compact_outer".into(), std::mem::take(&mut m)));
    let vf = field(&all(msg, cols[2].value.clone()), 4)
        .unwrap()
        .value
        .clone();
    let fa = field(&all(msg, vf), 2).unwrap().value.clone();
    let data = field(&all(msg, fa), 1).unwrap().clone();
    out.push((
        "compact_vec".into(),
        wire::packed_fixed(data.value.clone(), 4, msg.len())
            .unwrap()
            .iter()
            .map(|r| f32::from_le_bytes(msg[r.clone()].try_into().unwrap()) as u64)
            .collect(),
    ));
    let vf = field(&all(msg, cols[3].value.clone()), 4)
        .unwrap()
        .value
        .clone();
    let va = field(&all(msg, vf), 8).unwrap().value.clone();
    let per: Vec<u64> = all(msg, va)
        .iter()
        .filter(|f| f.number == 2)
        .map(|one| {
            let fa = field(&all(msg, one.value.clone()), 2)
                .unwrap()
                .value
                .clone();
            let d = field(&all(msg, fa), 1).unwrap().value.clone();
            f32::from_le_bytes(msg[d.start..d.start + 4].try_into().unwrap()) as u64
        })
        .collect();
    out.push(("vec_array".into(), per));
    markers(msg, cols[4].value.clone(), &[8, 1, 3, 8, 1, 3, 1], &mut m);
    out.push(("structs".into(), std::mem::take(&mut m)));
    let hl = field(&fs, 14).unwrap().value.clone();
    let h: Vec<u64> = all(msg, hl)
        .iter()
        .filter(|f| f.number == 2)
        .map(|d| {
            let frag = field(&all(msg, d.value.clone()), 1).unwrap().clone();
            std::str::from_utf8(&msg[frag.value.start + 1..frag.value.end])
                .unwrap()
                .parse()
                .unwrap()
        })
        .collect();
    out.push(("highlights".into(), h));
    markers(msg, rd.clone(), &[15, 1], &mut m);
    out.push(("element_indices".into(), std::mem::take(&mut m)));
    markers(msg, rd, &[17, 3, 3, 1], &mut m);
    out.push(("group_bys".into(), std::mem::take(&mut m)));
    out
}

#[test]
fn rarer_layouts_follow_their_hits() {
    let n = 9;
    let msg = rare_message(n);
    let valid = |r: u64| r % 3 != 1;
    let before = rare_markers(&msg);
    assert_eq!(before[0].1, (0..n as u64).collect::<Vec<_>>());
    for faults in [
        vec![drop(0.5)],
        vec![FaultSpec::ShuffleResults(fault::ShuffleResults {})],
        vec![FaultSpec::LimitResults(fault::LimitResults { max: 2 })],
        vec![
            drop(0.3),
            FaultSpec::ShuffleResults(fault::ShuffleResults {}),
        ],
    ] {
        for seed in [1u64, 2, 3, 99] {
            let mut rng = rng_for(seed, 1, 0);
            let edit = edit_search_results(
                &msg,
                planned(&faults).iter().map(|(i, f)| (*i, f)),
                &mut rng,
            )
            .unwrap();
            let out = edit.message.expect("changed");
            let after = rare_markers(&out);
            let kept = &after[0].1;
            let expect = |base: u64, only_valid: bool| -> Vec<u64> {
                kept.iter()
                    .filter(|r| !only_valid || valid(**r))
                    .map(|r| base + r)
                    .collect()
            };
            let want: Vec<(&str, Vec<u64>)> = vec![
                ("compact_scalar", expect(400, true)),
                ("compact_outer", expect(450, true)),
                ("compact_vec", expect(500, true)),
                ("vec_array", expect(600, false)),
                (
                    "structs",
                    kept.iter().flat_map(|r| [700 + r, 700 + r]).collect(),
                ),
                ("highlights", expect(0, false)),
                ("element_indices", expect(800, false)),
                ("group_bys", expect(900, false)),
            ];
            for (name, w) in want {
                let got = &after.iter().find(|(k, _)| k == name).unwrap().1;
                assert_eq!(got, &w, "{name} with {faults:?} seed {seed}");
            }
            assert_eq!(edit.returned as usize, kept.len());
        }
    }
}
