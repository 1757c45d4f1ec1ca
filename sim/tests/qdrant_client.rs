//! The official qdrant-client (1.20, Query API only) against `brownout sim --api
//! qdrant`: the client's request building and pydantic models are the judges of
//! the wire format, and the sim's own ground truth (`seed_top_k`, the distances
//! computed here) the judge of the answers.
//!
//! Runs `integration-tests/python/qdrant_sim_check.py` with the python of the
//! cached `sdk` environment, which `integration-tests/python/venv.sh sdk` prints
//! (and builds on first use from the pinned requirements).

use std::time::Duration;

use brownout_sim::{seed_text, seed_top_k, spawn, SimConfig};
use serde_json::{json, Value};

mod common;

fn ids(v: &Value) -> Vec<Value> {
    v["ids"].as_array().cloned().unwrap_or_default()
}

fn scores(v: &Value) -> Vec<f64> {
    v["scores"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s.as_f64().unwrap())
        .collect()
}

fn descending(s: &[f64]) -> bool {
    s.windows(2).all(|w| w[0] >= w[1])
}

fn cosine(a: &[f64], b: &[f64]) -> f64 {
    let dot: f64 = a.iter().zip(b).map(|(x, y)| x * y).sum();
    let na: f64 = a.iter().map(|x| x * x).sum::<f64>().sqrt();
    let nb: f64 = b.iter().map(|x| x * x).sum::<f64>().sqrt();
    dot / (na * nb)
}

/// The script's vector for point `i`.
fn vec_of(i: u64) -> Vec<f64> {
    vec![1.0, i as f64 / 10.0, (i % 3) as f64 / 3.0, 0.5]
}

const UUID: &str = "936da01f-9abd-4d9d-80c7-02af85c822a8";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn qdrant_client_1_20_reads_and_writes_the_sim() {
    let sim = spawn(
        "127.0.0.1:0".parse().unwrap(),
        SimConfig {
            api: "qdrant".parse().unwrap(),
            ttft: Duration::ZERO,
            itl: Duration::ZERO,
            ..SimConfig::default()
        },
    )
    .await
    .unwrap();
    let url = sim.url();
    let script = common::repo_root().join("integration-tests/python/qdrant_sim_check.py");
    let (out, stderr) =
        common::run_result(vec![script.to_string_lossy().into_owned(), url], Vec::new()).await;

    // Construction: the version check found a compatible server, no warning.
    assert_eq!(out["warnings"], json!([]), "{stderr}");
    assert_eq!(out["version"], "1.19.0");
    assert_eq!(
        out["health"],
        json!({"/healthz": [200, "healthz check passed"], "/livez": [200, "healthz check passed"],
               "/readyz": [200, "all shards are ready"]})
    );

    // The seeded collection: info, existence, and exact k-NN through the Query API.
    assert_eq!(out["collections"], json!(["docs"]));
    assert_eq!(out["exists"], json!([true, false]));
    assert_eq!(
        out["info"],
        json!({"status": "green", "points_count": 200, "size": 64, "distance": "Cosine", "hnsw_m": 16})
    );
    let truth: Vec<Value> = seed_top_k("document 42", 5)
        .into_iter()
        .map(|i| json!(i))
        .collect();
    assert_eq!(ids(&out["docs_top5"]), truth, "the true top 5");
    let s = scores(&out["docs_top5"]);
    assert!(descending(&s), "{s:?}");
    assert!(s[0] < 1.0 && s[4] > -1.0, "{s:?}");
    let texts: Vec<Value> = truth
        .iter()
        .map(|i| json!(seed_text(i.as_u64().unwrap() as usize)))
        .collect();
    assert_eq!(out["docs_top5_texts"], json!(texts));
    // The old Search API and the Query API agree, ids and scores.
    assert_eq!(out["docs_search_top5"], out["docs_top5"]);
    // Batches: one answer per query, in order, of each query's own limit.
    assert_eq!(ids(&out["docs_batch"][0]), {
        let t: Vec<Value> = seed_top_k("alpha", 3)
            .into_iter()
            .map(|i| json!(i))
            .collect();
        t
    });
    assert_eq!(ids(&out["docs_batch"][1]), {
        let t: Vec<Value> = seed_top_k("beta", 4)
            .into_iter()
            .map(|i| json!(i))
            .collect();
        t
    });
    // Filtered: the true top 5 among documents 100 and up.
    let filtered: Vec<Value> = seed_top_k("document 42", 200)
        .into_iter()
        .filter(|i| *i >= 100)
        .take(5)
        .map(|i| json!(i))
        .collect();
    assert_eq!(ids(&out["docs_filtered"]), filtered);
    // By id: document 42's own vector (its nearest is itself), the point itself
    // excluded.
    let own = seed_top_k(&seed_text(42), 4);
    assert_eq!(own[0], 42);
    let by_id: Vec<Value> = own
        .into_iter()
        .filter(|i| *i != 42)
        .take(3)
        .map(|i| json!(i))
        .collect();
    assert_eq!(ids(&out["docs_by_id"]), by_id);
    assert_eq!(out["docs_count"], 200);

    // A collection of the script's own.
    assert_eq!(
        out["create_twice"],
        json!([409, "Wrong input: Collection `sdk_check` already exists!"])
    );
    assert_eq!(out["upsert"], json!([1, "completed"]));
    assert_eq!(out["upsert_batch"], json!([2, "completed"]));
    assert_eq!(out["count"], json!([27, 13]), "27 points, 13 even");
    assert_eq!(
        out["own_info"],
        json!({"points_count": 27, "size": 4, "distance": "Cosine"})
    );
    // Every point, ranked by the cosine computed here.
    let q = [1.0, 1.2, 0.0, 0.5];
    let id_num = |v: &Value| -> u64 {
        match v.as_u64() {
            Some(n) => n,
            None => {
                assert_eq!(v, UUID);
                25
            }
        }
    };
    let all = &out["own_all"];
    assert_eq!(ids(all).len(), 27);
    let s = scores(all);
    assert!(descending(&s), "{s:?}");
    for (id, score) in ids(all).iter().zip(&s) {
        let want = cosine(&q, &vec_of(id_num(id)));
        assert!((score - want).abs() < 1e-6, "{id}: {score} vs {want}");
    }
    let even = ids(&out["own_even"]);
    let want_even: Vec<Value> = ids(all)
        .into_iter()
        .filter(|i| i.as_u64().is_some_and(|n| n % 2 == 0))
        .take(5)
        .collect();
    assert_eq!(even, want_even);
    assert_eq!(out["own_even_parities"], json!(vec!["even"; 5]));
    assert_eq!(ids(&out["own_offset5"]), ids(all)[5..10].to_vec());
    // score_threshold is strict: the fourth score itself is left out.
    let at = out["own_threshold_at"].as_f64().unwrap();
    let above = s.iter().filter(|x| **x > at).count();
    assert_eq!(ids(&out["own_threshold"]), ids(all)[..above].to_vec());
    assert!(above < 4);
    // with_vectors: the stored vector, normalised as Qdrant stores Cosine vectors;
    // with_payload as a key list.
    let first = id_num(&ids(all)[0]);
    let v: Vec<f64> = out["own_with"]["vector"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap())
        .collect();
    let raw = vec_of(first);
    let norm = raw.iter().map(|x| x * x).sum::<f64>().sqrt();
    for (got, want) in v.iter().zip(raw.iter().map(|x| x / norm)) {
        assert!((got - want).abs() < 1e-6, "{v:?}");
    }
    assert_eq!(out["own_with"]["payload"], json!({"n": first}));
    assert_eq!(
        out["wrong_dim"],
        json!([
            400,
            "Wrong input: Vector dimension error: expected dim: 4, got 2"
        ])
    );

    // Retrieve: asked order, once each, missing ids left out; payload by default.
    assert_eq!(
        out["retrieve"],
        json!([
            {"id": 3, "payload": {"n": 3, "parity": "odd"}, "has_vector": true},
            {"id": UUID, "payload": {"n": 25, "parity": "odd"}, "has_vector": true}
        ])
    );
    assert_eq!(
        out["get_point"],
        json!({"id": 7, "payload": {"n": 7, "parity": "odd"}, "vector_len": 4})
    );
    assert_eq!(out["get_missing"], 404);

    // Scroll: id order (integers, then the UUID), pages of 10, each next offset
    // the first id of the next page, null after the last.
    let mut order: Vec<Value> = (1..=24).chain([30, 31]).map(|i| json!(i)).collect();
    order.push(json!(UUID));
    let pages: Vec<Value> = order.chunks(10).map(|c| json!(c)).collect();
    assert_eq!(out["scroll_pages"], json!(pages));
    assert_eq!(out["scroll_offsets"], json!([11, 21, null]));
    assert_eq!(
        out["scroll_filtered"],
        json!([[21, 22, 23, 24, 30, 31, UUID], null])
    );

    // Deletes by ids and by filter.
    assert_eq!(out["delete"], "completed");
    assert_eq!(
        out["count_after_delete"], 22,
        "27 - 3 by id - 30, 31 by filter"
    );

    // Other distances, scored and ordered as Qdrant does, query [1, 1] against
    // points 1: [0,0], 2: [1,1], 3: [3,4], 4: [-1,0.5].
    assert_eq!(
        ids(&out["dist_Euclid"]),
        json!([2, 1, 4, 3]).as_array().unwrap().clone()
    );
    let e = scores(&out["dist_Euclid"]);
    let sqrt = f64::sqrt;
    for (got, want) in e.iter().zip([0.0, sqrt(2.0), sqrt(4.25), sqrt(13.0)]) {
        assert!((got - want).abs() < 1e-6, "{e:?}");
    }
    assert_eq!(
        ids(&out["dist_Dot"]),
        json!([3, 2, 1, 4]).as_array().unwrap().clone()
    );
    assert_eq!(scores(&out["dist_Dot"]), [7.0, 2.0, 0.0, -0.5]);
    assert_eq!(
        ids(&out["dist_Manhattan"]),
        json!([2, 1, 4, 3]).as_array().unwrap().clone()
    );
    assert_eq!(scores(&out["dist_Manhattan"]), [0.0, 2.0, 2.5, 5.0]);

    // Named vectors, chosen by `using`, each with its own distance.
    assert_eq!(ids(&out["named_text"]), [json!(2), json!(1)]);
    assert_eq!(ids(&out["named_image"]), [json!(1), json!(2)]);
    let img = scores(&out["named_image"]);
    assert!((img[0] - 0.1).abs() < 1e-6, "{img:?}");
    assert_eq!(
        out["named_info"],
        json!({"text": [2, "Cosine"], "image": [3, "Euclid"]})
    );

    assert_eq!(out["delete_collection"], true);
    assert_eq!(out["exists_after_delete"], false);
    sim.shutdown().await;
}
