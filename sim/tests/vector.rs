//! The simulated vector databases: exact k-NN over the real shapes, the seeded
//! collection's truth, and the embeddings endpoint agreeing with it.

use std::io::Read;

use brownout_sim::{seed_top_k, seed_vector, spawn, SimConfig, SimHandle};
use bytes::Bytes;
use http::{Method, Request};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use serde_json::{json, Value};

type HttpClient = Client<hyper_util::client::legacy::connect::HttpConnector, Full<Bytes>>;

async fn start(api: &str) -> (SimHandle, HttpClient) {
    let cfg = SimConfig {
        api: api.parse().unwrap(),
        ttft: std::time::Duration::ZERO,
        ..Default::default()
    };
    let sim = spawn("127.0.0.1:0".parse().unwrap(), cfg).await.unwrap();
    (sim, Client::builder(TokioExecutor::new()).build_http())
}

async fn call(
    c: &HttpClient,
    sim: &SimHandle,
    method: Method,
    path: &str,
    body: Option<Value>,
) -> (u16, Value) {
    let req = Request::builder()
        .method(method)
        .uri(format!("{}{path}", sim.url()))
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(
            body.map(|b| b.to_string()).unwrap_or_default(),
        )))
        .unwrap();
    let resp = c.request(req).await.unwrap();
    let status = resp.status().as_u16();
    let gz = resp
        .headers()
        .get("content-encoding")
        .is_some_and(|v| v == "gzip");
    let raw = resp.into_body().collect().await.unwrap().to_bytes();
    let raw = if gz {
        let mut out = Vec::new();
        flate2::read::GzDecoder::new(&raw[..])
            .read_to_end(&mut out)
            .unwrap();
        out
    } else {
        raw.to_vec()
    };
    (status, serde_json::from_slice(&raw).unwrap_or(Value::Null))
}

#[tokio::test]
async fn qdrant_search_is_exact_knn_over_the_seeded_collection() {
    let (sim, c) = start("qdrant").await;
    let q = seed_vector("document 42");
    let (s, v) = call(
        &c,
        &sim,
        Method::POST,
        "/collections/docs/points/search",
        Some(json!({"vector": q, "limit": 5})),
    )
    .await;
    assert_eq!(s, 200);
    let ids: Vec<usize> = v["result"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["id"].as_u64().unwrap() as usize)
        .collect();
    assert_eq!(ids, seed_top_k("document 42", 5));
    let scores: Vec<f64> = v["result"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["score"].as_f64().unwrap())
        .collect();
    assert!(scores.windows(2).all(|w| w[0] >= w[1]));
    // A new collection, upsert, query, count.
    let (s, _) = call(
        &c,
        &sim,
        Method::PUT,
        "/collections/mine",
        Some(json!({"vectors": {"size": 2, "distance": "Cosine"}})),
    )
    .await;
    assert_eq!(s, 200);
    let pts = json!({"points": [{"id": 1, "vector": [1.0, 0.0]}, {"id": 2, "vector": [0.0, 1.0]}, {"id": 3, "vector": [0.7, 0.7]}]});
    assert_eq!(
        call(&c, &sim, Method::PUT, "/collections/mine/points", Some(pts))
            .await
            .0,
        200
    );
    let (_, v) = call(
        &c,
        &sim,
        Method::POST,
        "/collections/mine/points/query",
        Some(json!({"query": [1.0, 0.1], "limit": 2})),
    )
    .await;
    let ids: Vec<u64> = v["result"]["points"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["id"].as_u64().unwrap())
        .collect();
    assert_eq!(ids, [1, 3]);
    let (_, v) = call(
        &c,
        &sim,
        Method::POST,
        "/collections/mine/points/count",
        Some(json!({})),
    )
    .await;
    assert_eq!(v["result"]["count"], 3);
    let (s, v) = call(
        &c,
        &sim,
        Method::POST,
        "/collections/nope/points/search",
        Some(json!({"vector": [1.0]})),
    )
    .await;
    assert_eq!(s, 404);
    assert!(v["status"]["error"]
        .as_str()
        .unwrap()
        .contains("doesn't exist"));
}

#[tokio::test]
async fn sim_embeddings_match_the_seeded_vectors() {
    let (sim, c) = start("chroma").await;
    let (s, v) = call(
        &c,
        &sim,
        Method::POST,
        "/v1/embeddings",
        Some(json!({"model": "sim-embed", "input": "hello", "dimensions": 64})),
    )
    .await;
    assert_eq!(s, 200);
    let e: Vec<f32> = v["data"][0]["embedding"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap() as f32)
        .collect();
    let want = seed_vector("hello");
    assert_eq!(e.len(), want.len());
    assert!(e.iter().zip(&want).all(|(a, b)| (a - b).abs() < 1e-6));
}

#[tokio::test]
async fn chroma_v2_collections_add_query_count() {
    let (sim, c) = start("chroma").await;
    let base = "/api/v2/tenants/default_tenant/databases/default_database/collections";
    assert_eq!(
        call(&c, &sim, Method::GET, "/api/v2/heartbeat", None)
            .await
            .0,
        200
    );
    let (_, col) = call(
        &c,
        &sim,
        Method::POST,
        base,
        Some(json!({"name": "t1", "get_or_create": true})),
    )
    .await;
    let id = col["id"].as_str().unwrap().to_string();
    let add = json!({"ids": ["a", "b", "c"], "embeddings": [[1.0, 0.0], [0.0, 1.0], [0.6, 0.8]], "documents": ["da", "db", "dc"], "metadatas": [{"n": 1}, null, {"n": 3}]});
    assert_eq!(
        call(
            &c,
            &sim,
            Method::POST,
            &format!("{base}/{id}/add"),
            Some(add)
        )
        .await
        .0,
        200
    );
    let (_, v) = call(
        &c,
        &sim,
        Method::POST,
        &format!("{base}/{id}/query"),
        Some(json!({"query_embeddings": [[1.0, 0.0], [0.0, 1.0]], "n_results": 2})),
    )
    .await;
    assert_eq!(v["ids"], json!([["a", "c"], ["b", "c"]]));
    assert_eq!(v["documents"], json!([["da", "dc"], ["db", "dc"]]));
    let d0 = v["distances"][0][0].as_f64().unwrap();
    assert!(d0.abs() < 1e-9, "distance 0 to itself");
    assert_eq!(
        call(
            &c,
            &sim,
            Method::POST,
            &format!("{base}/{id}/delete"),
            Some(json!({"ids": ["a"]}))
        )
        .await
        .0,
        200
    );
    assert_eq!(
        call(&c, &sim, Method::GET, &format!("{base}/{id}/count"), None)
            .await
            .1,
        json!(2)
    );
    let (_, again) = call(&c, &sim, Method::GET, &format!("{base}/t1"), None).await;
    assert_eq!(again["id"], id.as_str());
    let (s, _) = call(&c, &sim, Method::POST, base, Some(json!({"name": "t1"}))).await;
    assert_eq!(s, 409);
}
