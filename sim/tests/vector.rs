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

/// Status, headers and the decoded body bytes.
async fn raw(
    c: &HttpClient,
    sim: &SimHandle,
    method: Method,
    path: &str,
) -> (u16, http::HeaderMap, Vec<u8>) {
    let req = Request::builder()
        .method(method)
        .uri(format!("{}{path}", sim.url()))
        .body(Full::new(Bytes::new()))
        .unwrap();
    let resp = c.request(req).await.unwrap();
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    let body = if headers.get("content-encoding").is_some_and(|v| v == "gzip") {
        let mut out = Vec::new();
        flate2::read::GzDecoder::new(&body[..])
            .read_to_end(&mut out)
            .unwrap();
        out
    } else {
        body.to_vec()
    };
    (status, headers, body)
}

fn hit_ids(v: &Value) -> Vec<Value> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|h| h["id"].clone())
        .collect()
}

#[tokio::test]
async fn qdrant_service_endpoints_answer_as_the_real_server() {
    let (sim, c) = start("qdrant").await;
    // `GET /`: bare version info (no `result`, no `time`), which qdrant-client's
    // compatibility check reads on construction.
    let (s, h, body) = raw(&c, &sim, Method::GET, "/").await;
    assert_eq!(s, 200);
    assert_eq!(h["content-encoding"], "gzip");
    let v: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(
        v,
        json!({"title": "qdrant - vector search engine", "version": "1.19.0",
               "commit": "74f3e85b9473c62560006c043e13737ce6b48412"})
    );
    // Health: plain text, uncompressed.
    for (path, text) in [
        ("/healthz", "healthz check passed"),
        ("/livez", "healthz check passed"),
        ("/readyz", "all shards are ready"),
    ] {
        let (s, h, body) = raw(&c, &sim, Method::GET, path).await;
        assert_eq!(s, 200, "{path}");
        assert_eq!(h["content-type"], "text/plain; charset=utf-8", "{path}");
        assert!(h.get("content-encoding").is_none(), "{path}");
        assert_eq!(body, text.as_bytes(), "{path}");
    }
    let (s, v) = call(&c, &sim, Method::GET, "/collections/docs/exists", None).await;
    assert_eq!(s, 200);
    assert_eq!(v["result"], json!({"exists": true}));
    assert_eq!(v["status"], "ok");
    assert!(v["time"].is_f64());
    let (_, v) = call(&c, &sim, Method::GET, "/collections/nope/exists", None).await;
    assert_eq!(v["result"], json!({"exists": false}));
    let (s, v) = call(&c, &sim, Method::GET, "/collections/docs", None).await;
    assert_eq!(s, 200);
    let info = &v["result"];
    assert_eq!(info["points_count"], 200);
    assert_eq!(
        info["config"]["params"]["vectors"],
        json!({"size": 64, "distance": "Cosine"})
    );
    assert_eq!(info["config"]["hnsw_config"]["m"], 16);
    assert_eq!(info["config"]["optimizer_config"]["flush_interval_sec"], 5);
    assert_eq!(info["config"]["wal_config"]["wal_capacity_mb"], 32);
    assert_eq!(info["payload_schema"], json!({}));
    let (s, v) = call(&c, &sim, Method::GET, "/collections/nope", None).await;
    assert_eq!(s, 404);
    assert_eq!(
        v["status"]["error"],
        "Not found: Collection `nope` doesn't exist!"
    );
}

#[tokio::test]
async fn qdrant_query_api_and_search_api_agree_on_the_seed() {
    let (sim, c) = start("qdrant").await;
    for text in ["document 7", "brownout", "retrieval under load"] {
        let q = seed_vector(text);
        let truth: Vec<Value> = seed_top_k(text, 10).into_iter().map(|i| json!(i)).collect();
        let (_, search) = call(
            &c,
            &sim,
            Method::POST,
            "/collections/docs/points/search",
            Some(json!({"vector": q, "limit": 10})),
        )
        .await;
        assert_eq!(hit_ids(&search["result"]), truth, "{text}");
        for body in [
            json!({"query": q, "limit": 10}),
            json!({"query": {"nearest": q}, "limit": 10}),
        ] {
            let (s, v) = call(
                &c,
                &sim,
                Method::POST,
                "/collections/docs/points/query",
                Some(body),
            )
            .await;
            assert_eq!(s, 200);
            assert_eq!(
                v["result"]["points"], search["result"],
                "{text}: ids and scores"
            );
        }
        // Pages by offset are slices of the full ranking.
        let mut paged = Vec::new();
        for offset in [0, 5] {
            let (_, v) = call(
                &c,
                &sim,
                Method::POST,
                "/collections/docs/points/query",
                Some(json!({"query": {"nearest": q}, "limit": 5, "offset": offset})),
            )
            .await;
            paged.extend(hit_ids(&v["result"]["points"]));
        }
        assert_eq!(paged, truth, "{text}");
    }
    // Batches answer in order, each with its own limit.
    let (a, b) = (seed_vector("a"), seed_vector("b"));
    let (_, v) = call(
        &c,
        &sim,
        Method::POST,
        "/collections/docs/points/query/batch",
        Some(
            json!({"searches": [{"query": a, "limit": 2}, {"query": {"nearest": b}, "limit": 3}]}),
        ),
    )
    .await;
    let got: Vec<Vec<Value>> = v["result"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| hit_ids(&r["points"]))
        .collect();
    let want: Vec<Vec<Value>> = [("a", 2), ("b", 3)]
        .iter()
        .map(|(t, k)| seed_top_k(t, *k).into_iter().map(|i| json!(i)).collect())
        .collect();
    assert_eq!(got, want);
    let (_, v) = call(
        &c,
        &sim,
        Method::POST,
        "/collections/docs/points/search/batch",
        Some(json!({"searches": [{"vector": a, "limit": 2}, {"vector": b, "limit": 3}]})),
    )
    .await;
    let got: Vec<Vec<Value>> = v["result"]
        .as_array()
        .unwrap()
        .iter()
        .map(hit_ids)
        .collect();
    assert_eq!(got, want);
    // Refused honestly: what the sim does not implement.
    let (s, v) = call(
        &c,
        &sim,
        Method::POST,
        "/collections/docs/points/query",
        Some(json!({"prefetch": [{"query": a}], "query": {"fusion": "rrf"}})),
    )
    .await;
    assert_eq!(s, 400);
    assert!(v["status"]["error"]
        .as_str()
        .unwrap()
        .contains("does not support prefetch"));
}

#[tokio::test]
async fn qdrant_points_are_retrieved_scrolled_counted_and_deleted() {
    let (sim, c) = start("qdrant").await;
    let (s, _) = call(
        &c,
        &sim,
        Method::PUT,
        "/collections/p",
        Some(json!({"vectors": {"size": 2, "distance": "Dot"}})),
    )
    .await;
    assert_eq!(s, 200);
    let uuid = "936da01f-9abd-4d9d-80c7-02af85c822a8";
    let pts: Vec<Value> = (1..=6)
        .map(|i| json!({"id": i, "vector": [i as f64, 1.0], "payload": {"n": i}}))
        .chain([json!({"id": uuid.to_uppercase(), "vector": [0.5, 0.5], "payload": {"n": 0}})])
        .collect();
    let (s, v) = call(
        &c,
        &sim,
        Method::PUT,
        "/collections/p/points?wait=true",
        Some(json!({"points": pts})),
    )
    .await;
    assert_eq!(s, 200);
    assert_eq!(
        v["result"],
        json!({"operation_id": 1, "status": "completed"})
    );
    // Dot: raw products, best first.
    let (_, v) = call(
        &c,
        &sim,
        Method::POST,
        "/collections/p/points/query",
        Some(json!({"query": [1.0, 0.0], "limit": 3, "with_payload": true})),
    )
    .await;
    let hits = &v["result"]["points"];
    assert_eq!(hit_ids(hits), [json!(6), json!(5), json!(4)]);
    assert_eq!(hits[0]["score"], 6.0);
    assert_eq!(hits[0]["payload"], json!({"n": 6}));
    assert_eq!(hits[0]["version"], 1);
    // Retrieve and get by id.
    let (_, v) = call(
        &c,
        &sim,
        Method::POST,
        "/collections/p/points",
        Some(json!({"ids": [uuid, 2, 99]})),
    )
    .await;
    assert_eq!(
        v["result"],
        json!([{"id": uuid, "payload": {"n": 0}}, {"id": 2, "payload": {"n": 2}}])
    );
    let (s, v) = call(&c, &sim, Method::GET, "/collections/p/points/3", None).await;
    assert_eq!(s, 200);
    assert_eq!(
        v["result"],
        json!({"id": 3, "payload": {"n": 3}, "vector": [3.0, 1.0]})
    );
    let (s, v) = call(&c, &sim, Method::GET, "/collections/p/points/42", None).await;
    assert_eq!(s, 404);
    assert_eq!(
        v["status"]["error"],
        "Not found: Point with id 42 does not exists!"
    );
    // Scroll in pages of 3: integers, then the UUID.
    let mut offset = Value::Null;
    let mut pages = Vec::new();
    loop {
        let (_, v) = call(
            &c,
            &sim,
            Method::POST,
            "/collections/p/points/scroll",
            Some(json!({"limit": 3, "offset": offset, "with_payload": false})),
        )
        .await;
        pages.push(hit_ids(&v["result"]["points"]));
        offset = v["result"]["next_page_offset"].clone();
        if offset.is_null() {
            break;
        }
        assert!(pages.len() < 5, "scroll never ends");
    }
    assert_eq!(
        pages,
        [
            vec![json!(1), json!(2), json!(3)],
            vec![json!(4), json!(5), json!(6)],
            vec![json!(uuid)]
        ]
    );
    // Count and delete by filter.
    let range = json!({"must": [{"key": "n", "range": {"gte": 4}}]});
    let (_, v) = call(
        &c,
        &sim,
        Method::POST,
        "/collections/p/points/count",
        Some(json!({"filter": range, "exact": true})),
    )
    .await;
    assert_eq!(v["result"]["count"], 3);
    let (_, v) = call(
        &c,
        &sim,
        Method::POST,
        "/collections/p/points/delete?wait=true",
        Some(json!({"filter": range})),
    )
    .await;
    assert_eq!(v["result"]["status"], "completed");
    let (_, v) = call(
        &c,
        &sim,
        Method::POST,
        "/collections/p/points/count",
        Some(json!({})),
    )
    .await;
    assert_eq!(v["result"]["count"], 4);
    // Errors in Qdrant's words.
    for (body, want) in [
        (
            json!({"points": [{"id": 9, "vector": [1.0]}]}),
            "Wrong input: Vector dimension error: expected dim: 2, got 1",
        ),
        (
            json!({"points": [{"id": "nine", "vector": [1.0, 2.0]}]}),
            "Format error in JSON body: value \"nine\" is not a valid point ID, valid values are either an unsigned integer or a UUID",
        ),
    ] {
        let (s, v) = call(&c, &sim, Method::PUT, "/collections/p/points", Some(body)).await;
        assert_eq!(s, 400);
        assert_eq!(v["status"]["error"], want);
    }
}
