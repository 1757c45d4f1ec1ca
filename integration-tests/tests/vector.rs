//! Vector faults end to end against the simulated vector databases (`brownout sim
//! --api qdrant|chroma`): the simulated Qdrant gzips every answer, so these prove
//! the decode-rewrite-send-identity path, the records' `results`, and recall lost
//! against the sim's exact k-NN truth. The real Chroma server is in `chroma.rs`.

use std::io::Read;
use std::time::Duration;

use brownout_integration_tests::*;
use serde_json::{json, Value};

async fn sim(api: &str) -> brownout_sim::SimHandle {
    let cfg = brownout_sim::SimConfig {
        api: api.parse().unwrap(),
        ttft: Duration::ZERO,
        itl: Duration::ZERO,
        ..Default::default()
    };
    brownout_sim::spawn("127.0.0.1:0".parse().unwrap(), cfg)
        .await
        .unwrap()
}

fn gunzip_if(r: &Reply) -> Value {
    let raw = if r.header("content-encoding") == Some("gzip") {
        let mut out = Vec::new();
        flate2::read::GzDecoder::new(&r.body[..])
            .read_to_end(&mut out)
            .unwrap();
        out
    } else {
        r.body.to_vec()
    };
    serde_json::from_slice(&raw).unwrap_or_else(|e| panic!("{e}: {:?}", r.body))
}

fn query_vec(text: &str) -> Vec<f32> {
    brownout_sim::seed_vector(text)
}

fn ids(v: &Value) -> Vec<u64> {
    let list = v["result"].get("points").unwrap_or(&v["result"]);
    list.as_array()
        .unwrap()
        .iter()
        .map(|h| h["id"].as_u64().unwrap())
        .collect()
}

fn profile(faults: &str) -> String {
    format!(
        "version: 1\nname: v\nrules:\n  - name: r\n    match: {{endpoint: search}}\n    faults:\n{faults}"
    )
}

async fn search(proxy: &TestProxy, q: &str, k: usize) -> Reply {
    let body = json!({"vector": query_vec(q), "limit": k, "with_payload": true});
    send(
        &http1_client(),
        post_json(proxy.url("/collections/docs/points/search"), &body),
    )
    .await
    .unwrap()
}

#[tokio::test]
async fn unfaulted_search_passes_compressed_and_records_results() {
    let sim = sim("qdrant").await;
    let dir = TempDir::new();
    let proxy = ProxyBuilder::new(sim.url())
        .api(ApiKind::Qdrant)
        .record(&dir.join("r.jsonl"))
        .start()
        .await;
    let r = search(&proxy, "what is document 7", 10).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.header("content-encoding"), Some("gzip"), "untouched");
    let v = gunzip_if(&r);
    let got = ids(&v);
    let truth: Vec<u64> = brownout_sim::seed_top_k("what is document 7", 10)
        .into_iter()
        .map(|i| i as u64)
        .collect();
    assert_eq!(got, truth, "the sim's exact k-NN");
    let rec = proxy.record_for("/collections/docs/points/search").await;
    assert_eq!(rec["endpoint"], "search");
    assert_eq!(rec["results"], json!({"returned": 10, "dropped": 0}));
}

#[tokio::test]
async fn drop_results_on_gzip_answers_costs_recall_and_fixes_headers() {
    let sim = sim("qdrant").await;
    let dir = TempDir::new();
    let proxy = ProxyBuilder::new(sim.url())
        .api(ApiKind::Qdrant)
        .profile(&profile("      - {type: drop_results, fraction: 0.5}\n"))
        .record(&dir.join("r.jsonl"))
        .start()
        .await;
    let r = search(&proxy, "document 3", 10).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.header("content-encoding"), None, "sent decoded");
    assert_eq!(
        r.header("content-length")
            .map(|l| l.parse::<usize>().unwrap()),
        Some(r.body.len())
    );
    let v: Value = serde_json::from_slice(&r.body).unwrap();
    let got = ids(&v);
    assert_eq!(got.len(), 5);
    let truth: Vec<u64> = brownout_sim::seed_top_k("document 3", 10)
        .into_iter()
        .map(|i| i as u64)
        .collect();
    let recall = got.iter().filter(|i| truth.contains(i)).count() as f64 / 10.0;
    assert_eq!(recall, 0.5);
    let rec = proxy.record_for("/collections/docs/points/search").await;
    assert_eq!(rec["results"], json!({"returned": 5, "dropped": 5}));
    assert_eq!(rec["faults"][0]["fault"], "drop_results");
}

#[tokio::test]
async fn stale_results_serves_the_previous_query_of_the_collection() {
    let sim = sim("qdrant").await;
    let proxy = ProxyBuilder::new(sim.url())
        .api(ApiKind::Qdrant)
        .profile(&profile("      - {type: stale_results}\n"))
        .start()
        .await;
    let first = ids(&gunzip_if(&search(&proxy, "alpha", 5).await));
    let second = ids(&gunzip_if(&search(&proxy, "omega", 5).await));
    assert_eq!(second, first, "the previous query's hits");
    let truth: Vec<u64> = brownout_sim::seed_top_k("omega", 5)
        .into_iter()
        .map(|i| i as u64)
        .collect();
    assert_ne!(second, truth);
}

#[tokio::test]
async fn query_endpoint_and_score_noise() {
    let sim = sim("qdrant").await;
    let yaml = "version: 1\nname: v\nrules:\n  - match: {endpoint: query}\n    faults:\n      - {type: score_noise, stddev: 0.5}\n";
    let proxy = ProxyBuilder::new(sim.url())
        .api(ApiKind::Qdrant)
        .profile(yaml)
        .start()
        .await;
    let body = json!({"query": query_vec("x"), "limit": 8});
    let r = send(
        &http1_client(),
        post_json(proxy.url("/collections/docs/points/query"), &body),
    )
    .await
    .unwrap();
    let v = gunzip_if(&r);
    let pts = v["result"]["points"].as_array().unwrap();
    assert_eq!(pts.len(), 8);
    let s: Vec<f64> = pts.iter().map(|p| p["score"].as_f64().unwrap()).collect();
    assert!(
        !s.windows(2).all(|w| w[0] >= w[1]),
        "rank no longer follows score: {s:?}"
    );
}

#[tokio::test]
async fn upserts_pass_and_search_faults_do_not_touch_them() {
    let sim = sim("qdrant").await;
    let dir = TempDir::new();
    let yaml =
        "version: 1\nname: v\nrules:\n  - name: all\n    faults:\n      - {type: empty_results}\n";
    let proxy = ProxyBuilder::new(sim.url())
        .api(ApiKind::Qdrant)
        .profile(yaml)
        .record(&dir.join("r.jsonl"))
        .start()
        .await;
    let c = http1_client();
    let up = json!({"points": [{"id": 1000, "vector": query_vec("new"), "payload": {"k": 1}}]});
    let mut req = post_json(proxy.url("/collections/docs/points"), &up);
    *req.method_mut() = http::Method::PUT;
    let r = send(&c, req).await.unwrap();
    assert_eq!(r.status, 200);
    let rec = proxy.record_for("/collections/docs/points").await;
    assert_eq!(rec["endpoint"], "upsert");
    assert_eq!(rec["faults_skipped"][0]["reason"], "wrong_endpoint");
    let r = search(&proxy, "new", 3).await;
    let v: Value = serde_json::from_slice(&r.body).unwrap();
    assert_eq!(v["result"], json!([]));
    assert_eq!(v["status"], "ok");
}

#[tokio::test]
async fn embeddings_truncate_base64_as_the_openai_sdk_asks() {
    let sim = sim("openai").await;
    let yaml = "version: 1\nname: v\nrules:\n  - match: {endpoint: embeddings}\n    faults:\n      - {type: embedding_truncate, dims: 8}\n";
    let proxy = ProxyBuilder::new(sim.url())
        .api(ApiKind::Openai)
        .profile(yaml)
        .start()
        .await;
    for fmt in ["float", "base64"] {
        let body =
            json!({"model": "text-embedding-3-small", "input": "hello", "encoding_format": fmt});
        let r = send(
            &http1_client(),
            post_json(proxy.url("/v1/embeddings"), &body),
        )
        .await
        .unwrap();
        assert_eq!(r.status, 200);
        let v: Value = serde_json::from_slice(&r.body).unwrap();
        let e = &v["data"][0]["embedding"];
        let n = match fmt {
            "float" => e.as_array().unwrap().len(),
            // 8 f32 = 32 bytes = 44 base64 characters with padding.
            _ => e.as_str().unwrap().len() / 4 * 3 / 4,
        };
        assert_eq!(n, 8, "{fmt}: {e}");
    }
}

#[tokio::test]
async fn sim_chroma_query_through_the_proxy() {
    let sim = sim("chroma").await;
    let dir = TempDir::new();
    let yaml = "version: 1\nname: v\nrules:\n  - match: {endpoint: query}\n    faults:\n      - {type: limit_results, max: 2}\n";
    let proxy = ProxyBuilder::new(sim.url())
        .api(ApiKind::Chroma)
        .profile(yaml)
        .record(&dir.join("r.jsonl"))
        .start()
        .await;
    let c = http1_client();
    let base = "/api/v2/tenants/default_tenant/databases/default_database/collections";
    let r = send(&c, get(proxy.url(&format!("{base}/docs"))))
        .await
        .unwrap();
    let id = r.json()["id"].as_str().unwrap().to_string();
    let q = json!({"query_embeddings": [query_vec("a"), query_vec("b")], "n_results": 5, "include": ["documents", "distances"]});
    let path = format!("{base}/{id}/query");
    let r = send(&c, post_json(proxy.url(&path), &q)).await.unwrap();
    let v = r.json();
    assert_eq!(v["ids"].as_array().unwrap().len(), 2);
    for qi in 0..2 {
        assert_eq!(v["ids"][qi].as_array().unwrap().len(), 2);
        assert_eq!(v["documents"][qi].as_array().unwrap().len(), 2);
        assert_eq!(v["distances"][qi].as_array().unwrap().len(), 2);
    }
    let rec = proxy.record_for(&path).await;
    assert_eq!(rec["results"], json!({"returned": 4, "dropped": 6}));
}

#[tokio::test]
async fn header_faults_reach_vector_answers() {
    let sim = sim("qdrant").await;
    let dir = TempDir::new();
    let proxy = ProxyBuilder::new(sim.url())
        .api(ApiKind::Qdrant)
        .config(|c| c.allow_header_faults = true)
        .record(&dir.join("r.jsonl"))
        .start()
        .await;
    let body = json!({"vector": query_vec("h"), "limit": 10});
    let mut req = post_json(proxy.url("/collections/docs/points/search"), &body);
    req.headers_mut()
        .insert("x-brownout-fault", "limit_results=3".parse().unwrap());
    let r = send(&http1_client(), req).await.unwrap();
    let v: Value = serde_json::from_slice(&r.body).unwrap();
    assert_eq!(ids(&v).len(), 3);
    let rec = proxy.record_for("/collections/docs/points/search").await;
    assert_eq!(rec["results"], json!({"returned": 3, "dropped": 7}));
    assert_eq!(rec["faults"][0]["rule"], "header");
}
