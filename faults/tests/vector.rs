//! Vector search and embedding faults: golden parses and validation positions, each
//! adapter against recorded real answer shapes, and property tests of the rewriters
//! (valid shape in → valid shape out; garbage never panics and passes through; no
//! fault → byte-identical).

use std::sync::Arc;

use brownout_faults::api::{ApiKind, Endpoint};
use brownout_faults::decide::rng_for;
use brownout_faults::fault;
use brownout_faults::profile::FaultSpec;
use brownout_faults::stream::StreamPlan;
use brownout_faults::validate::load_profile;
use brownout_faults::vector::{count_results, rewrite, Hit, Rewrite, Skip, StaleCache};
use rand::Rng;
use rand_chacha::ChaCha8Rng;
use serde_json::{json, Value};

mod common;
use common::{check_fault_error as check_error, one_fault, HEAD};

#[test]
fn every_vector_fault_parses() {
    let cases: Vec<(&str, FaultSpec)> = vec![
        (
            "{type: drop_results, fraction: 0.5}",
            FaultSpec::DropResults(fault::DropResults { fraction: 0.5 }),
        ),
        (
            "{type: shuffle_results}",
            FaultSpec::ShuffleResults(fault::ShuffleResults {}),
        ),
        (
            "{type: limit_results, max: 3}",
            FaultSpec::LimitResults(fault::LimitResults { max: 3 }),
        ),
        (
            "{type: stale_results}",
            FaultSpec::StaleResults(fault::StaleResults { depth: None }),
        ),
        (
            "{type: stale_results, depth: 4}",
            FaultSpec::StaleResults(fault::StaleResults { depth: Some(4) }),
        ),
        (
            "{type: score_noise, stddev: 0.05}",
            FaultSpec::ScoreNoise(fault::ScoreNoise { stddev: 0.05 }),
        ),
        (
            "{type: empty_results}",
            FaultSpec::EmptyResults(fault::EmptyResults {}),
        ),
        (
            "{type: embedding_noise, stddev: 0.02}",
            FaultSpec::EmbeddingNoise(fault::EmbeddingNoise { stddev: 0.02 }),
        ),
        (
            "{type: embedding_truncate, dims: 256}",
            FaultSpec::EmbeddingTruncate(fault::EmbeddingTruncate { dims: 256 }),
        ),
    ];
    for (yaml, want) in cases {
        let got = one_fault(yaml);
        assert_eq!(got, want, "{yaml}");
        assert!(got.is_vector_fault(), "{yaml}");
        assert!(!got.is_request_fault() && !got.is_stream_fault() && !got.is_content_fault());
        assert!(yaml.contains(got.kind()), "{yaml}: {}", got.kind());
    }
}

#[test]
fn vector_fault_constraints_point_at_the_field() {
    check_error(
        "{type: drop_results, fraction: 50}",
        "50",
        "`fraction` 50",
        "for 50% write 0.5",
    );
    check_error(
        "{type: drop_results, fraction: 0}",
        "0}",
        "`fraction` 0",
        "hits dropped",
    );
    check_error(
        "{type: score_noise, stddev: 0}",
        "0}",
        "`stddev` must be above zero",
        "stddev: 0.05",
    );
    check_error(
        "{type: embedding_noise, stddev: -1}",
        "-1",
        "`stddev` must be above zero",
        "stddev: 0.02",
    );
    check_error(
        "{type: embedding_truncate, dims: 0}",
        "0}",
        "`dims` must be at least 1",
        "dims: 256",
    );
    check_error(
        "{type: stale_results, depth: 40}",
        "40",
        "`depth` must be between 1 and 16",
        "previous query",
    );
    check_error("{type: limit_results}", "{type", "max", "");
    check_error("{type: shuffle_results, seed: 3}", "seed", "seed", "");
}

fn plan(faults: &[FaultSpec]) -> StreamPlan {
    let mut p = StreamPlan::new();
    for f in faults {
        assert!(p.push(0, f));
    }
    p
}

fn no_stale(_: usize) -> Option<Arc<StaleCache>> {
    None
}

fn run(api: ApiKind, ep: Endpoint, body: &Value, faults: &[FaultSpec]) -> (Value, Rewrite) {
    let bytes = serde_json::to_vec(body).expect("json");
    let mut rng = rng_for(7, 1, 1);
    let rw =
        rewrite(api, ep, &bytes, &plan(faults), &mut rng, &no_stale, "k").expect("known shape");
    let v: Value = serde_json::from_slice(&rw.body).expect("valid json out");
    (v, rw)
}

// --- Recorded real answer shapes ---

fn qdrant_search() -> Value {
    json!({"result":[
        {"id":1,"version":3,"score":0.95,"payload":{"t":"a"},"vector":null},
        {"id":2,"version":3,"score":0.90,"payload":{"t":"b"},"vector":null},
        {"id":3,"version":3,"score":0.80,"payload":{"t":"c"},"vector":null},
        {"id":4,"version":3,"score":0.70,"payload":{"t":"d"},"vector":null}
    ],"status":"ok","time":0.0012})
}

fn chroma_query() -> Value {
    json!({
        "ids":[["a","b","c","d"],["x","y"]],
        "embeddings":null,
        "documents":[["da","db","dc","dd"],["dx","dy"]],
        "uris":null,"data":null,
        "metadatas":[[{"n":1},{"n":2},null,{"n":4}],[{"n":9},{"n":8}]],
        "distances":[[0.1,0.2,0.3,0.4],[0.5,0.6]],
        "included":["documents","metadatas","distances"]
    })
}

fn milvus_search() -> Value {
    json!({"code":0,"cost":6,"data":[
        {"id":448985,"distance":0.91,"title":"a"},
        {"id":448986,"distance":0.85,"title":"b"},
        {"id":448987,"distance":0.72,"title":"c"},
        {"id":448988,"distance":0.70,"title":"d"}
    ]})
}

fn weaviate_search() -> Value {
    json!({"data":{"Get":{"Article":[
        {"title":"a","_additional":{"distance":0.10,"id":"00000000-0000-0000-0000-000000000001"}},
        {"title":"b","_additional":{"distance":0.15,"id":"00000000-0000-0000-0000-000000000002"}},
        {"title":"c","_additional":{"distance":0.30,"id":"00000000-0000-0000-0000-000000000003"}},
        {"title":"d","_additional":{"distance":0.45,"id":"00000000-0000-0000-0000-000000000004"}}
    ]}}})
}

fn pinecone_query() -> Value {
    json!({"results":[],"matches":[
        {"id":"v1","score":0.98,"values":[],"metadata":{"g":"x"}},
        {"id":"v2","score":0.91,"values":[]},
        {"id":"v3","score":0.88,"values":[]},
        {"id":"v4","score":0.52,"values":[]}
    ],"namespace":"ns","usage":{"readUnits":5}})
}

fn ids(api: ApiKind, v: &Value) -> Vec<Vec<Value>> {
    match api {
        ApiKind::Qdrant => {
            let r = v["result"].get("points").unwrap_or(&v["result"]);
            vec![r
                .as_array()
                .expect("list")
                .iter()
                .map(|h| h["id"].clone())
                .collect()]
        }
        ApiKind::Chroma => v["ids"]
            .as_array()
            .expect("ids")
            .iter()
            .map(|l| l.as_array().expect("l").clone())
            .collect(),
        ApiKind::Milvus => vec![v["data"]
            .as_array()
            .expect("data")
            .iter()
            .map(|h| h["id"].clone())
            .collect()],
        ApiKind::Weaviate => vec![v["data"]["Get"]["Article"]
            .as_array()
            .expect("hits")
            .iter()
            .map(|h| h["title"].clone())
            .collect()],
        ApiKind::Pinecone => vec![v["matches"]
            .as_array()
            .expect("m")
            .iter()
            .map(|h| h["id"].clone())
            .collect()],
        _ => unreachable!(),
    }
}

fn scores(api: ApiKind, v: &Value) -> Vec<f64> {
    let f = |h: &Value, k: &str| h[k].as_f64().expect("score");
    match api {
        ApiKind::Qdrant => v["result"]
            .as_array()
            .expect("l")
            .iter()
            .map(|h| f(h, "score"))
            .collect(),
        ApiKind::Chroma => v["distances"][0]
            .as_array()
            .expect("d")
            .iter()
            .map(|d| d.as_f64().expect("f"))
            .collect(),
        ApiKind::Milvus => v["data"]
            .as_array()
            .expect("l")
            .iter()
            .map(|h| f(h, "distance"))
            .collect(),
        ApiKind::Weaviate => v["data"]["Get"]["Article"]
            .as_array()
            .expect("l")
            .iter()
            .map(|h| f(&h["_additional"], "distance"))
            .collect(),
        ApiKind::Pinecone => v["matches"]
            .as_array()
            .expect("l")
            .iter()
            .map(|h| f(h, "score"))
            .collect(),
        _ => unreachable!(),
    }
}

fn all_dbs() -> Vec<(ApiKind, Endpoint, Value)> {
    vec![
        (ApiKind::Qdrant, Endpoint::Search, qdrant_search()),
        (ApiKind::Chroma, Endpoint::Query, chroma_query()),
        (ApiKind::Milvus, Endpoint::Search, milvus_search()),
        (ApiKind::Weaviate, Endpoint::Search, weaviate_search()),
        (ApiKind::Pinecone, Endpoint::Query, pinecone_query()),
    ]
}

#[test]
fn drop_results_removes_half_the_hits_of_every_db() {
    for (api, ep, body) in all_dbs() {
        let before = ids(api, &body);
        let (out, rw) = run(
            api,
            ep,
            &body,
            &[FaultSpec::DropResults(fault::DropResults { fraction: 0.5 })],
        );
        let after = ids(api, &out);
        for (b, a) in before.iter().zip(&after) {
            assert_eq!(a.len(), b.len() / 2, "{api:?}");
            // The survivors keep their relative order.
            let pos: Vec<usize> = a
                .iter()
                .map(|x| b.iter().position(|y| y == x).expect("kept"))
                .collect();
            assert!(pos.windows(2).all(|w| w[0] < w[1]), "{api:?}");
        }
        assert_eq!(rw.applied, vec![(0, "drop_results")]);
        let total: usize = before.iter().map(Vec::len).sum();
        let (ret, dropped) = rw.results.expect("counted");
        assert_eq!((ret + dropped) as usize, total, "{api:?}");
    }
}

#[test]
fn chroma_rewrites_every_parallel_list_together() {
    let (out, _) = run(
        ApiKind::Chroma,
        Endpoint::Query,
        &chroma_query(),
        &[FaultSpec::ShuffleResults(fault::ShuffleResults {})],
    );
    let docs = |id: &str| format!("d{id}");
    for q in 0..2 {
        let ids = out["ids"][q].as_array().expect("ids");
        let dd = out["documents"][q].as_array().expect("docs");
        assert_eq!(ids.len(), dd.len());
        for (i, d) in ids.iter().zip(dd) {
            assert_eq!(d.as_str(), Some(docs(i.as_str().expect("s")).as_str()));
        }
        assert_eq!(
            out["metadatas"][q].as_array().map(Vec::len),
            Some(ids.len())
        );
        assert_eq!(
            out["distances"][q].as_array().map(Vec::len),
            Some(ids.len())
        );
    }
    assert!(out["embeddings"].is_null() && out["uris"].is_null());
    assert_eq!(out["included"], chroma_query()["included"]);
}

#[test]
fn shuffle_keeps_the_set_and_scores_but_changes_the_order() {
    for (api, ep, body) in all_dbs() {
        let before = ids(api, &body);
        let (out, _) = run(
            api,
            ep,
            &body,
            &[FaultSpec::ShuffleResults(fault::ShuffleResults {})],
        );
        let after = ids(api, &out);
        assert_ne!(before[0], after[0], "{api:?}");
        let mut b = before[0].clone();
        let mut a = after[0].clone();
        b.sort_by_key(|v| v.to_string());
        a.sort_by_key(|v| v.to_string());
        assert_eq!(a, b, "{api:?}");
        let mut sb = scores(api, &body);
        let mut sa = scores(api, &out);
        sb.sort_by(f64::total_cmp);
        sa.sort_by(f64::total_cmp);
        assert_eq!(sa, sb, "{api:?}: scores travel with their hits");
    }
}

#[test]
fn limit_results_caps_every_list() {
    for (api, ep, body) in all_dbs() {
        let (out, rw) = run(
            api,
            ep,
            &body,
            &[FaultSpec::LimitResults(fault::LimitResults { max: 1 })],
        );
        for l in ids(api, &out) {
            assert!(l.len() <= 1, "{api:?}");
        }
        assert_eq!(rw.applied.len(), 1);
        let (_, rw) = run(
            api,
            ep,
            &body,
            &[FaultSpec::LimitResults(fault::LimitResults { max: 100 })],
        );
        assert_eq!(
            rw.skipped,
            vec![(0, "limit_results", Skip::NothingToChange)]
        );
        assert_eq!(&rw.body[..], &serde_json::to_vec(&body).expect("j")[..]);
    }
}

#[test]
fn score_noise_keeps_the_order_and_breaks_score_order() {
    for (api, ep, body) in all_dbs() {
        let (out, _) = run(
            api,
            ep,
            &body,
            &[FaultSpec::ScoreNoise(fault::ScoreNoise { stddev: 0.5 })],
        );
        assert_eq!(ids(api, &out), ids(api, &body), "{api:?}: order kept");
        let s = scores(api, &out);
        assert_ne!(s, scores(api, &body), "{api:?}");
        let sorted_desc = s.windows(2).all(|w| w[0] >= w[1]);
        let sorted_asc = s.windows(2).all(|w| w[0] <= w[1]);
        assert!(
            !(sorted_desc || sorted_asc),
            "{api:?}: {s:?} still in score order"
        );
        if matches!(api, ApiKind::Chroma | ApiKind::Weaviate) {
            assert!(s.iter().all(|d| *d >= 0.0), "distances stay non-negative");
        }
    }
}

#[test]
fn empty_results_uses_each_dbs_form() {
    let (out, rw) = run(
        ApiKind::Qdrant,
        Endpoint::Search,
        &qdrant_search(),
        &[FaultSpec::EmptyResults(fault::EmptyResults {})],
    );
    assert_eq!(out["result"], json!([]));
    assert_eq!(out["status"], "ok");
    assert_eq!(rw.results, Some((0, 4)));
    let (out, _) = run(
        ApiKind::Chroma,
        Endpoint::Query,
        &chroma_query(),
        &[FaultSpec::EmptyResults(fault::EmptyResults {})],
    );
    assert_eq!(out["ids"], json!([[], []]));
    assert_eq!(out["distances"], json!([[], []]));
    let (out, _) = run(
        ApiKind::Pinecone,
        Endpoint::Query,
        &pinecone_query(),
        &[FaultSpec::EmptyResults(fault::EmptyResults {})],
    );
    assert_eq!(out["matches"], json!([]));
    // Milvus and GraphQL: the error inside a 200.
    let (out, rw) = run(
        ApiKind::Milvus,
        Endpoint::Search,
        &milvus_search(),
        &[FaultSpec::EmptyResults(fault::EmptyResults {})],
    );
    assert_ne!(out["code"], 0);
    assert!(out["message"].is_string() && out.get("data").is_none());
    assert_eq!(rw.results, Some((0, 4)));
    let (out, _) = run(
        ApiKind::Weaviate,
        Endpoint::Search,
        &weaviate_search(),
        &[FaultSpec::EmptyResults(fault::EmptyResults {})],
    );
    assert!(out["data"]["Get"]["Article"].is_null());
    assert!(out["errors"][0]["message"].is_string());
    // Both error forms count as zero hits when they come from the upstream.
    for v in [
        &out,
        &json!({"code":4,"message":"too many concurrent requests, queue is full"}),
    ] {
        let api = if v.get("code").is_some() {
            ApiKind::Milvus
        } else {
            ApiKind::Weaviate
        };
        assert_eq!(
            count_results(api, Endpoint::Search, &serde_json::to_vec(v).expect("j")),
            Some(0)
        );
    }
}

#[test]
fn qdrant_query_and_batch_shapes() {
    let query = json!({"result":{"points":[{"id":1,"score":0.9},{"id":2,"score":0.8},{"id":3,"score":0.7}]},"status":"ok","time":0.001});
    let (out, rw) = run(
        ApiKind::Qdrant,
        Endpoint::Query,
        &query,
        &[FaultSpec::LimitResults(fault::LimitResults { max: 2 })],
    );
    assert_eq!(out["result"]["points"].as_array().map(Vec::len), Some(2));
    assert_eq!(rw.results, Some((2, 1)));
    let batch = json!({"result":[[{"id":1,"score":0.9},{"id":2,"score":0.8}],[{"id":3,"score":0.7},{"id":4,"score":0.6}]],"status":"ok","time":0.001});
    let (out, rw) = run(
        ApiKind::Qdrant,
        Endpoint::Search,
        &batch,
        &[FaultSpec::DropResults(fault::DropResults { fraction: 0.5 })],
    );
    assert_eq!(
        out["result"].as_array().map(|l| l
            .iter()
            .map(|x| x.as_array().map(Vec::len))
            .collect::<Vec<_>>()),
        Some(vec![Some(1), Some(1)])
    );
    assert_eq!(rw.results, Some((2, 2)));
    let qbatch = json!({"result":[{"points":[{"id":1,"score":0.9},{"id":2,"score":0.8}]},{"points":[]}],"status":"ok","time":0.0});
    let (out, _) = run(
        ApiKind::Qdrant,
        Endpoint::Query,
        &qbatch,
        &[FaultSpec::LimitResults(fault::LimitResults { max: 1 })],
    );
    assert_eq!(out["result"][0]["points"].as_array().map(Vec::len), Some(1));
    assert_eq!(out["result"][1]["points"], json!([]));
}

#[test]
fn stale_results_serves_an_earlier_query_per_collection() {
    let cache = Arc::new(StaleCache::default());
    let c2 = cache.clone();
    let lookup = move |_: usize| Some(c2.clone());
    let p = plan(&[FaultSpec::StaleResults(fault::StaleResults { depth: None })]);
    let mut rng = rng_for(1, 1, 1);
    let q = |ids: [&str; 2]| {
        serde_json::to_vec(&json!({"ids":[ids],"distances":[[0.1,0.2]]})).expect("j")
    };
    let first = rewrite(
        ApiKind::Chroma,
        Endpoint::Query,
        &q(["a", "b"]),
        &p,
        &mut rng,
        &lookup,
        "/c1/query",
    )
    .expect("ok");
    assert_eq!(
        first.skipped,
        vec![(0, "stale_results", Skip::NoEarlierResults)]
    );
    assert_eq!(&first.body[..], &q(["a", "b"])[..]);
    let second = rewrite(
        ApiKind::Chroma,
        Endpoint::Query,
        &q(["c", "d"]),
        &p,
        &mut rng,
        &lookup,
        "/c1/query",
    )
    .expect("ok");
    assert_eq!(second.applied, vec![(0, "stale_results")]);
    let v: Value = serde_json::from_slice(&second.body).expect("j");
    assert_eq!(v["ids"], json!([["a", "b"]]));
    // Another collection has its own history.
    let other = rewrite(
        ApiKind::Chroma,
        Endpoint::Query,
        &q(["e", "f"]),
        &p,
        &mut rng,
        &lookup,
        "/c2/query",
    )
    .expect("ok");
    assert!(other.applied.is_empty());
    // The cache remembers what the upstream said, not what the client was served.
    let third = rewrite(
        ApiKind::Chroma,
        Endpoint::Query,
        &q(["g", "h"]),
        &p,
        &mut rng,
        &lookup,
        "/c1/query",
    )
    .expect("ok");
    let v: Value = serde_json::from_slice(&third.body).expect("j");
    assert_eq!(v["ids"], json!([["c", "d"]]));
    assert_eq!(cache.collections(), 2);
    // Depth reaches further back.
    let p3 = plan(&[FaultSpec::StaleResults(fault::StaleResults {
        depth: Some(3),
    })]);
    let deep = rewrite(
        ApiKind::Chroma,
        Endpoint::Query,
        &q(["i", "j"]),
        &p3,
        &mut rng,
        &lookup,
        "/c1/query",
    )
    .expect("ok");
    let v: Value = serde_json::from_slice(&deep.body).expect("j");
    assert_eq!(v["ids"], json!([["a", "b"]]));
}

#[test]
fn stale_cache_is_bounded() {
    let cache = StaleCache::default();
    let hit = |i: i32| Hit::new(&i.to_string()).expect("json");
    for i in 0..1000 {
        cache.remember(&format!("k{i}"), vec![vec![hit(i)]]);
    }
    assert_eq!(
        cache.collections(),
        brownout_faults::vector::MAX_STALE_COLLECTIONS
    );
    for i in 0..100 {
        cache.remember("deep", vec![vec![hit(i)]]);
    }
    assert_eq!(cache.earlier("deep", 1), Some(vec![vec![hit(99)]]));
    assert_eq!(cache.earlier("deep", 16), Some(vec![vec![hit(84)]]));
    assert_eq!(cache.earlier("deep", 17), None);
}

// --- Embeddings ---

fn floats(v: &Value) -> Vec<f64> {
    v.as_array()
        .expect("floats")
        .iter()
        .map(|x| x.as_f64().expect("f"))
        .collect()
}

#[test]
fn embeddings_float_shapes() {
    let openai = json!({"object":"list","data":[{"object":"embedding","index":0,"embedding":[0.1,0.2,0.3,0.4]}],"model":"text-embedding-3-small","usage":{"prompt_tokens":2,"total_tokens":2}});
    let (out, rw) = run(
        ApiKind::Openai,
        Endpoint::Embeddings,
        &openai,
        &[FaultSpec::EmbeddingTruncate(fault::EmbeddingTruncate {
            dims: 2,
        })],
    );
    assert_eq!(floats(&out["data"][0]["embedding"]), vec![0.1, 0.2]);
    assert_eq!(out["usage"], openai["usage"]);
    assert_eq!(rw.results, None);
    let ollama =
        json!({"model":"all-minilm","embeddings":[[0.1,0.2,0.3],[0.4,0.5,0.6]],"total_duration":1});
    let (out, _) = run(
        ApiKind::Ollama,
        Endpoint::Embeddings,
        &ollama,
        &[FaultSpec::EmbeddingNoise(fault::EmbeddingNoise {
            stddev: 0.1,
        })],
    );
    let a = floats(&out["embeddings"][1]);
    assert_eq!(a.len(), 3);
    assert_ne!(a, vec![0.4, 0.5, 0.6]);
    let tei = json!([[1.0, 0.0, 0.5, 0.25], [0.0, 1.0, 0.5, 0.25]]);
    let (out, _) = run(
        ApiKind::Tgi,
        Endpoint::Embeddings,
        &tei,
        &[FaultSpec::EmbeddingTruncate(fault::EmbeddingTruncate {
            dims: 3,
        })],
    );
    assert_eq!(floats(&out[1]), vec![0.0, 1.0, 0.5]);
    let legacy = json!({"embedding":[0.5,0.5]});
    let (out, _) = run(
        ApiKind::Ollama,
        Endpoint::Embeddings,
        &legacy,
        &[FaultSpec::EmbeddingTruncate(fault::EmbeddingTruncate {
            dims: 1,
        })],
    );
    assert_eq!(floats(&out["embedding"]), vec![0.5]);
}

fn b64_f32(v: &[f32]) -> String {
    // Test-local encoder, independent of the crate's.
    const A: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let bytes: Vec<u8> = v.iter().flat_map(|x| x.to_le_bytes()).collect();
    let mut s = String::new();
    for c in bytes.chunks(3) {
        let n = (c[0] as u32) << 16
            | (*c.get(1).unwrap_or(&0) as u32) << 8
            | *c.get(2).unwrap_or(&0) as u32;
        for i in 0..4 {
            s.push(if i <= c.len() {
                A[((n >> (18 - 6 * i)) & 63) as usize] as char
            } else {
                '='
            });
        }
    }
    s
}

fn unb64_f32(s: &str) -> Vec<f32> {
    let val = |c: u8| match c {
        b'A'..=b'Z' => c - b'A',
        b'a'..=b'z' => c - b'a' + 26,
        b'0'..=b'9' => c - b'0' + 52,
        b'+' => 62,
        _ => 63,
    } as u32;
    let s = s.trim_end_matches('=').as_bytes();
    let mut out = Vec::new();
    for c in s.chunks(4) {
        let mut n = 0;
        for (i, &ch) in c.iter().enumerate() {
            n |= val(ch) << (18 - 6 * i);
        }
        out.extend_from_slice(&[(n >> 16) as u8, (n >> 8) as u8, n as u8][..c.len() - 1]);
    }
    out.chunks(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect()
}

#[test]
fn embeddings_base64_as_the_openai_sdk_asks() {
    let v = [0.25f32, -0.5, 0.75, 1.0, 0.125, 0.0];
    let body = json!({"object":"list","data":[{"object":"embedding","index":0,"embedding":b64_f32(&v)}],"model":"m","usage":{"prompt_tokens":1,"total_tokens":1}});
    let (out, rw) = run(
        ApiKind::Openai,
        Endpoint::Embeddings,
        &body,
        &[FaultSpec::EmbeddingTruncate(fault::EmbeddingTruncate {
            dims: 4,
        })],
    );
    assert_eq!(rw.applied, vec![(0, "embedding_truncate")]);
    assert_eq!(
        unb64_f32(out["data"][0]["embedding"].as_str().expect("b64")),
        vec![0.25, -0.5, 0.75, 1.0]
    );
    let (out, _) = run(
        ApiKind::Openai,
        Endpoint::Embeddings,
        &body,
        &[FaultSpec::EmbeddingNoise(fault::EmbeddingNoise {
            stddev: 0.01,
        })],
    );
    let noisy = unb64_f32(out["data"][0]["embedding"].as_str().expect("b64"));
    assert_eq!(noisy.len(), 6);
    assert!(noisy.iter().zip(v).all(|(a, b)| (a - b).abs() < 0.1));
    assert_ne!(noisy, v.to_vec());
}

#[test]
fn wrong_endpoint_and_cross_kind_faults_are_skipped() {
    let (_, rw) = run(
        ApiKind::Qdrant,
        Endpoint::Search,
        &qdrant_search(),
        &[FaultSpec::EmbeddingNoise(fault::EmbeddingNoise {
            stddev: 0.1,
        })],
    );
    assert_eq!(
        rw.skipped,
        vec![(0, "embedding_noise", Skip::WrongEndpoint)]
    );
    let body = serde_json::to_vec(&qdrant_search()).expect("j");
    let mut rng = rng_for(1, 1, 1);
    let p = plan(&[FaultSpec::DropResults(fault::DropResults { fraction: 0.5 })]);
    assert_eq!(
        rewrite(
            ApiKind::Qdrant,
            Endpoint::Upsert,
            &body,
            &p,
            &mut rng,
            &no_stale,
            "k"
        )
        .err(),
        Some(Skip::WrongEndpoint)
    );
}

// --- Property tests (seeded generators; no extra dependency) ---

fn random_hit(rng: &mut ChaCha8Rng, api: ApiKind, i: usize) -> Value {
    let s: f64 = rng.random();
    match api {
        ApiKind::Qdrant | ApiKind::Pinecone => json!({"id": i, "score": s, "payload": {"n": i}}),
        ApiKind::Milvus => json!({"id": i, "distance": s, "f": "x"}),
        _ => json!({"name": format!("h{i}"), "_additional": {"distance": s}}),
    }
}

fn random_body(rng: &mut ChaCha8Rng) -> (ApiKind, Endpoint, Value) {
    let n = rng.random_range(0..8usize);
    let queries = rng.random_range(1..4usize);
    match rng.random_range(0..8) {
        0 => (
            ApiKind::Qdrant,
            Endpoint::Search,
            json!({"result": (0..n).map(|i| random_hit(rng, ApiKind::Qdrant, i)).collect::<Vec<_>>(), "status":"ok","time":0.1}),
        ),
        1 => (
            ApiKind::Qdrant,
            Endpoint::Query,
            json!({"result": {"points": (0..n).map(|i| random_hit(rng, ApiKind::Qdrant, i)).collect::<Vec<_>>()}, "status":"ok"}),
        ),
        2 => (
            ApiKind::Qdrant,
            Endpoint::Search,
            json!({"result": (0..queries).map(|_| (0..n).map(|i| random_hit(rng, ApiKind::Qdrant, i)).collect::<Vec<_>>()).collect::<Vec<_>>()}),
        ),
        3 => {
            let lens: Vec<usize> = (0..queries).map(|_| rng.random_range(0..6)).collect();
            let ids: Vec<Vec<String>> = lens
                .iter()
                .map(|&l| (0..l).map(|i| format!("id{i}")).collect())
                .collect();
            let d: Vec<Vec<f64>> = lens
                .iter()
                .map(|&l| (0..l).map(|_| rng.random()).collect())
                .collect();
            let docs: Value = if rng.random() {
                json!(lens.iter().map(|&l| vec!["doc"; l]).collect::<Vec<_>>())
            } else {
                Value::Null
            };
            (
                ApiKind::Chroma,
                Endpoint::Query,
                json!({"ids": ids, "distances": d, "documents": docs, "metadatas": null, "embeddings": null}),
            )
        }
        4 => (
            ApiKind::Milvus,
            Endpoint::Search,
            json!({"code":0, "cost": 1, "data": (0..n).map(|i| random_hit(rng, ApiKind::Milvus, i)).collect::<Vec<_>>()}),
        ),
        5 => (
            ApiKind::Weaviate,
            Endpoint::Search,
            json!({"data":{"Get":{"Thing": (0..n).map(|i| random_hit(rng, ApiKind::Weaviate, i)).collect::<Vec<_>>()}}}),
        ),
        6 => (
            ApiKind::Pinecone,
            Endpoint::Query,
            json!({"matches": (0..n).map(|i| random_hit(rng, ApiKind::Pinecone, i)).collect::<Vec<_>>(), "namespace": ""}),
        ),
        _ => (
            ApiKind::Openai,
            Endpoint::Embeddings,
            json!({"data": (0..queries).map(|i| json!({"index": i, "embedding": (0..n).map(|_| rng.random::<f64>()).collect::<Vec<_>>()})).collect::<Vec<_>>()}),
        ),
    }
}

fn random_fault(rng: &mut ChaCha8Rng) -> FaultSpec {
    match rng.random_range(0..8) {
        0 => FaultSpec::DropResults(fault::DropResults {
            fraction: rng.random_range(0.01..=1.0),
        }),
        1 => FaultSpec::ShuffleResults(fault::ShuffleResults {}),
        2 => FaultSpec::LimitResults(fault::LimitResults {
            max: rng.random_range(0..5),
        }),
        3 => FaultSpec::StaleResults(fault::StaleResults {
            depth: Some(rng.random_range(1..3)),
        }),
        4 => FaultSpec::ScoreNoise(fault::ScoreNoise {
            stddev: rng.random_range(0.01..1.0),
        }),
        5 => FaultSpec::EmptyResults(fault::EmptyResults {}),
        6 => FaultSpec::EmbeddingNoise(fault::EmbeddingNoise { stddev: 0.1 }),
        _ => FaultSpec::EmbeddingTruncate(fault::EmbeddingTruncate {
            dims: rng.random_range(1..6),
        }),
    }
}

#[test]
fn property_valid_in_valid_out_and_reparses_to_the_same_shape() {
    let mut rng = rng_for(42, 0, 0);
    let cache = Arc::new(StaleCache::default());
    let lookup = move |_: usize| Some(cache.clone());
    for case in 0..3000 {
        let (api, ep, body) = random_body(&mut rng);
        let bytes = serde_json::to_vec(&body).expect("j");
        let faults: Vec<FaultSpec> = (0..rng.random_range(1..4))
            .map(|_| random_fault(&mut rng))
            .collect();
        let p = plan(&faults);
        let mut frng = rng_for(case, 0, 0);
        let rw = rewrite(api, ep, &bytes, &p, &mut frng, &lookup, "k")
            .unwrap_or_else(|e| panic!("case {case}: {e:?} on {body}"));
        assert_eq!(
            rw.applied.len() + rw.skipped.len(),
            faults.len(),
            "case {case}: every fault accounted for"
        );
        let out: Value = serde_json::from_slice(&rw.body).expect("valid JSON out");
        if rw.applied.is_empty() {
            assert_eq!(
                &rw.body[..],
                &bytes[..],
                "case {case}: untouched when nothing applied"
            );
        }
        if ep != Endpoint::Embeddings {
            // The output is an answer of the same database, and counts what it holds.
            let n =
                count_results(api, ep, &rw.body).unwrap_or_else(|| panic!("case {case}: {out}"));
            assert_eq!(
                Some(n),
                rw.results.map(|r| r.0),
                "case {case}: {body} {faults:?} -> {out}"
            );
            if api == ApiKind::Chroma {
                let ids = out["ids"].as_array().expect("ids");
                for (q, l) in ids.iter().enumerate() {
                    let len = l.as_array().map(Vec::len);
                    assert_eq!(
                        out["distances"][q].as_array().map(Vec::len),
                        len,
                        "case {case}"
                    );
                    if !out["documents"].is_null() {
                        assert_eq!(
                            out["documents"][q].as_array().map(Vec::len),
                            len,
                            "case {case}"
                        );
                    }
                }
            }
        }
    }
}

#[test]
fn property_no_fault_is_byte_identical() {
    let mut rng = rng_for(43, 0, 0);
    for _ in 0..500 {
        let (api, ep, body) = random_body(&mut rng);
        let bytes = serde_json::to_vec_pretty(&body).expect("j");
        let mut frng = rng_for(1, 0, 0);
        // A plan holding only non-vector faults changes nothing here.
        let p = plan(&[FaultSpec::Garble(fault::Garble { fraction: 0.5 })]);
        let rw = rewrite(api, ep, &bytes, &p, &mut frng, &no_stale, "k").expect("known");
        assert_eq!(&rw.body[..], &bytes[..]);
        assert!(rw.applied.is_empty() && rw.skipped.is_empty());
    }
}

#[test]
fn property_garbage_never_panics_and_passes_through() {
    let mut rng = rng_for(44, 0, 0);
    let all: Vec<FaultSpec> = vec![
        FaultSpec::DropResults(fault::DropResults { fraction: 0.5 }),
        FaultSpec::ShuffleResults(fault::ShuffleResults {}),
        FaultSpec::LimitResults(fault::LimitResults { max: 1 }),
        FaultSpec::StaleResults(fault::StaleResults { depth: None }),
        FaultSpec::ScoreNoise(fault::ScoreNoise { stddev: 0.2 }),
        FaultSpec::EmptyResults(fault::EmptyResults {}),
        FaultSpec::EmbeddingNoise(fault::EmbeddingNoise { stddev: 0.2 }),
        FaultSpec::EmbeddingTruncate(fault::EmbeddingTruncate { dims: 1 }),
    ];
    let p = plan(&all);
    let cache = Arc::new(StaleCache::default());
    let lookup = move |_: usize| Some(cache.clone());
    let samples: Vec<Vec<u8>> = vec![
        b"".to_vec(),
        b"not json".to_vec(),
        b"{\"result\":".to_vec(),
        br#"{"result":"x"}"#.to_vec(),
        br#"{"result":[1,2,3]}"#.to_vec(),
        br#"{"ids":[["a"]],"distances":[[0.1,0.2]]}"#.to_vec(),
        br#"{"ids":"a"}"#.to_vec(),
        br#"{"matches":{"a":1}}"#.to_vec(),
        br#"{"data":{"Get":{"A":5}}}"#.to_vec(),
        br#"{"data":[{"embedding":"@@@"}]}"#.to_vec(),
        br#"{"data":[{"embedding":"AAA"}]}"#.to_vec(),
        br#"[1,2,3]"#.to_vec(),
        br#"{"status":{"error":"Not found: Collection `x` doesn't exist!"},"time":0.0}"#.to_vec(),
    ];
    let mut bodies = samples;
    for _ in 0..2000 {
        // Random cuts and byte flips of valid answers.
        let (_, _, body) = random_body(&mut rng);
        let mut b = serde_json::to_vec(&body).expect("j");
        if !b.is_empty() {
            let cut = rng.random_range(0..b.len());
            if rng.random() {
                b.truncate(cut);
            } else {
                b[cut] = rng.random();
            }
        }
        bodies.push(b);
    }
    for b in bodies {
        for ep in [Endpoint::Search, Endpoint::Query, Endpoint::Embeddings] {
            for api in [ApiKind::Qdrant, ApiKind::Chroma, ApiKind::Generic] {
                let mut frng = rng_for(2, 0, 0);
                match rewrite(api, ep, &b, &p, &mut frng, &lookup, "k") {
                    Err(_) => {}
                    Ok(rw) => {
                        if rw.applied.is_empty() {
                            assert_eq!(&rw.body[..], &b[..]);
                        } else {
                            serde_json::from_slice::<Value>(&rw.body).expect("valid out");
                        }
                    }
                }
            }
        }
    }
}

#[test]
fn explain_says_what_each_vector_fault_does() {
    let src = format!(
        "{HEAD}rules:\n  - match: {{endpoint: search}}\n    faults:\n      - {{type: drop_results, fraction: 0.25}}\n      - {{type: limit_results, max: 4}}\n      - {{type: stale_results, depth: 2}}\n      - {{type: embedding_truncate, dims: 128}}\n"
    );
    let p = load_profile(&src, "p.yaml").expect("valid");
    let text = brownout_faults::explain::explain(&p);
    for want in [
        "drop 25% of the hits",
        "at most 4 hits",
        "2 queries back",
        "first 128 components",
    ] {
        assert!(text.contains(want), "{want} missing from:\n{text}");
    }
}
