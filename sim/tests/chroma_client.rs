//! The official chromadb client (1.5.9, pinned in
//! `integration-tests/python/requirements.txt`) against `brownout sim --api
//! chroma`: the client's own handshake (heartbeat, identity, tenant and database
//! checks), collections and queries with explicit embeddings, checked against the
//! sim's ground truth. Uses the python of the cached `sdk` environment
//! (`integration-tests/python/venv.sh sdk`).

use std::time::Duration;

use brownout_sim::{seed_top_k, seed_vector, spawn, SimConfig};
use serde_json::json;

mod common;

const SCRIPT: &str = r#"
import json, sys
from urllib.parse import urlparse
import chromadb

u = urlparse(sys.argv[1])
c = chromadb.HttpClient(host=u.hostname, port=u.port)
out = {"heartbeat": c.heartbeat() > 0}
q = json.loads(sys.argv[2])
docs = c.get_collection("docs", embedding_function=None)
out["docs_count"] = docs.count()
r = docs.query(query_embeddings=[q], n_results=5, include=["distances", "documents"])
out["docs_ids"] = r["ids"][0]
out["docs_distances"] = r["distances"][0]
col = c.get_or_create_collection("t", embedding_function=None)
col.add(ids=["a", "b", "c"], embeddings=[[1.0, 0.0], [0.0, 1.0], [0.6, 0.8]],
        documents=["da", "db", "dc"], metadatas=[{"n": 1}, {"n": 2}, {"n": 3}])
col.upsert(ids=["c"], embeddings=[[0.8, 0.6]], documents=["dc2"], metadatas=[{"n": 4}])
r = col.query(query_embeddings=[[1.0, 0.0], [0.0, 1.0]], n_results=2)
out["t_ids"] = r["ids"]
out["t_docs"] = r["documents"]
g = col.get(ids=["c", "a"])
out["t_get"] = sorted(zip(g["ids"], g["documents"]))
col.delete(ids=["a"])
out["t_count"] = col.count()
out["same_id"] = c.get_or_create_collection("t", embedding_function=None).id == col.id
c.delete_collection("t")
out["names"] = sorted(x.name for x in c.list_collections())
print("RESULT " + json.dumps(out))
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chromadb_client_reads_and_writes_the_sim() {
    let sim = spawn(
        "127.0.0.1:0".parse().unwrap(),
        SimConfig {
            api: "chroma".parse().unwrap(),
            ttft: Duration::ZERO,
            ..SimConfig::default()
        },
    )
    .await
    .unwrap();
    let url = sim.url();
    let query = serde_json::to_string(&seed_vector("document 3")).unwrap();
    let (out, _) =
        common::run_result(vec!["-c".into(), SCRIPT.into(), url, query], Vec::new()).await;

    assert_eq!(out["heartbeat"], true);
    assert_eq!(out["docs_count"], 200);
    let truth: Vec<String> = seed_top_k("document 3", 5)
        .into_iter()
        .map(|i| i.to_string())
        .collect();
    assert_eq!(out["docs_ids"], json!(truth));
    let d: Vec<f64> = out["docs_distances"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap())
        .collect();
    assert!(
        d.windows(2).all(|w| w[0] <= w[1]),
        "cosine distance, nearest first: {d:?}"
    );
    // The upsert replaced c: [0.8, 0.6] is now second nearest to [1, 0].
    assert_eq!(out["t_ids"], json!([["a", "c"], ["b", "c"]]));
    assert_eq!(out["t_docs"], json!([["da", "dc2"], ["db", "dc2"]]));
    assert_eq!(out["t_get"], json!([["a", "da"], ["c", "dc2"]]));
    assert_eq!(out["t_count"], 2);
    assert_eq!(out["same_id"], true);
    assert_eq!(out["names"], json!(["docs"]));
    sim.shutdown().await;
}
