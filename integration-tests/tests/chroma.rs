//! Vector faults proven against a real Chroma server: `chroma run` from the repo
//! venv (the `chromadb` package), brownout in front of it with `api: chroma`, and
//! the official `chromadb` Python client with explicit embeddings driving both
//! (`integration-tests/python/chroma_check.py`). Each test starts its own server in
//! a temporary directory and kills it when done, even on failure.

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use brownout_integration_tests::*;
use serde_json::Value;

/// A running `chroma run`; killed and reaped on drop.
struct Chroma {
    child: Child,
    port: u16,
    _dir: TempDir,
}

impl Drop for Chroma {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Chroma {
    async fn start() -> Chroma {
        let py = sdk_python();
        let chroma: PathBuf = py.with_file_name("chroma");
        assert!(
            chroma.exists(),
            "{} missing: pip install chromadb",
            chroma.display()
        );
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let dir = TempDir::new();
        let child = Command::new(&chroma)
            .args(["run", "--path"])
            .arg(dir.join("data"))
            .args(["--host", "127.0.0.1", "--port", &port.to_string()])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start chroma");
        let c = Chroma {
            child,
            port,
            _dir: dir,
        };
        // Wait for the heartbeat (about a second on a warm machine).
        let client = http1_client();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
        loop {
            if let Ok(r) = send(&client, get(format!("{}/api/v2/heartbeat", c.url()))).await {
                if r.status == 200 {
                    break;
                }
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "chroma did not answer its heartbeat"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        c
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }
}

async fn script(mode: &str, direct: &str, proxied: &str) -> Value {
    let py = sdk_python();
    let script = repo_root().join("integration-tests/python/chroma_check.py");
    let out = tokio::time::timeout(
        Duration::from_secs(120),
        tokio::process::Command::new(&py)
            .arg(&script)
            .args([mode, direct, proxied])
            .output(),
    )
    .await
    .expect("chroma script timed out")
    .expect("run chroma script");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "chroma script ({mode}) failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_str(stdout.lines().last().unwrap_or_default()).unwrap()
}

/// A seeded Chroma with brownout in front, faults as given on the query path.
async fn setup(faults: &str) -> (Chroma, TestProxy, TempDir) {
    let chroma = Chroma::start().await;
    let seeded = script("seed", &chroma.url(), &chroma.url()).await;
    assert_eq!(seeded["count"], 40);
    let yaml = format!(
        "version: 1\nname: chroma\nrules:\n  - name: q\n    match: {{endpoint: query}}\n    faults:\n{faults}"
    );
    let dir = TempDir::new();
    let mut b = ProxyBuilder::new(chroma.url())
        .api(ApiKind::Chroma)
        .record(&dir.join("r.jsonl"));
    if !faults.is_empty() {
        b = b.profile(&yaml);
    }
    let proxy = b.start().await;
    (chroma, proxy, dir)
}

fn queries(v: &Value) -> Vec<(Value, Value)> {
    v["queries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|q| (q["direct"].clone(), q["proxied"].clone()))
        .collect()
}

fn ids(v: &Value) -> Vec<String> {
    v["ids"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i.as_str().unwrap().to_string())
        .collect()
}

fn query_records(proxy: &TestProxy) -> Vec<Value> {
    proxy
        .records()
        .into_iter()
        .filter(|r| r["endpoint"] == "query")
        .collect()
}

#[tokio::test]
async fn no_fault_gives_identical_results() {
    let (chroma, proxy, _d) = setup("").await;
    let out = script("query", &chroma.url(), &proxy.url("")).await;
    for (direct, proxied) in queries(&out) {
        assert_eq!(direct, proxied);
        assert_eq!(ids(&direct).len(), 10);
    }
    proxy.wait_records(1).await;
    let recs = query_records(&proxy);
    assert_eq!(recs.len(), 4, "{recs:#?}");
    for r in recs {
        assert_eq!(
            r["results"],
            serde_json::json!({"returned": 10, "dropped": 0})
        );
    }
}

#[tokio::test]
async fn drop_results_half_the_hits() {
    let (chroma, proxy, _d) = setup("      - {type: drop_results, fraction: 0.5}\n").await;
    let out = script("query", &chroma.url(), &proxy.url("")).await;
    for (direct, proxied) in queries(&out) {
        let (d, p) = (ids(&direct), ids(&proxied));
        assert_eq!(p.len(), 5);
        assert!(p.iter().all(|i| d.contains(i)), "a subset: {p:?} of {d:?}");
        // Every parallel list was cut the same way.
        for (k, i) in p.iter().enumerate() {
            let at = d.iter().position(|x| x == i).unwrap();
            assert_eq!(proxied["documents"][k], direct["documents"][at]);
            assert_eq!(proxied["distances"][k], direct["distances"][at]);
        }
    }
    let recs = query_records(&proxy);
    assert!(recs
        .iter()
        .all(|r| r["results"] == serde_json::json!({"returned": 5, "dropped": 5})));
}

#[tokio::test]
async fn limit_results_caps_the_hits() {
    let (chroma, proxy, _d) = setup("      - {type: limit_results, max: 3}\n").await;
    let out = script("query", &chroma.url(), &proxy.url("")).await;
    for (direct, proxied) in queries(&out) {
        assert_eq!(ids(&proxied), ids(&direct)[..3].to_vec());
    }
}

#[tokio::test]
async fn shuffle_keeps_the_set_and_changes_the_order() {
    let (chroma, proxy, _d) = setup("      - {type: shuffle_results}\n").await;
    let out = script("query", &chroma.url(), &proxy.url("")).await;
    for (direct, proxied) in queries(&out) {
        let (d, p) = (ids(&direct), ids(&proxied));
        assert_ne!(d, p);
        let (mut ds, mut ps) = (d.clone(), p.clone());
        ds.sort();
        ps.sort();
        assert_eq!(ds, ps);
    }
}

#[tokio::test]
async fn stale_results_returns_an_earlier_querys_ids() {
    let (chroma, proxy, _d) = setup("      - {type: stale_results}\n").await;
    let out = script("query", &chroma.url(), &proxy.url("")).await;
    let qs = queries(&out);
    // The first query has nothing earlier and is answered fresh.
    assert_eq!(qs[0].0, qs[0].1);
    for w in qs.windows(2) {
        let earlier_direct = ids(&w[0].0);
        let now_direct = ids(&w[1].0);
        assert_ne!(earlier_direct, now_direct, "the queries differ");
        assert_eq!(
            ids(&w[1].1),
            earlier_direct,
            "served the previous query's hits"
        );
    }
}

#[tokio::test]
async fn score_noise_breaks_distance_order() {
    let (chroma, proxy, _d) = setup("      - {type: score_noise, stddev: 0.3}\n").await;
    let out = script("query", &chroma.url(), &proxy.url("")).await;
    let mut broken = 0;
    for (direct, proxied) in queries(&out) {
        assert_eq!(ids(&direct), ids(&proxied), "order kept");
        let d: Vec<f64> = proxied["distances"]
            .as_array()
            .unwrap()
            .iter()
            .map(|x| x.as_f64().unwrap())
            .collect();
        if !d.windows(2).all(|w| w[0] <= w[1]) {
            broken += 1;
        }
    }
    assert_eq!(broken, 4, "every query's distances out of rank order");
}

#[tokio::test]
async fn chroma_unavailable_raises_and_writes_lose_nothing() {
    let (chroma, proxy, _d) = setup("      - {type: error, preset: chroma.unavailable}\n").await;
    let out = script("unavailable", &chroma.url(), &proxy.url("")).await;
    println!("chroma client raised: {}", out["raised"]);
    assert!(out["raised"].is_object(), "the client raised: {out}");
    assert!(
        out["raised"]["message"]
            .as_str()
            .unwrap()
            .contains("unavailable"),
        "{out}"
    );
    // 40 seeded + 10 added + 2 new by upsert − 3 deleted.
    assert_eq!(out["count"], 49, "{out}");
    assert_eq!(out["docs"]["id0"], "upserted 0");
    assert_eq!(out["docs"]["id4"], "upserted 4");
    assert_eq!(out["docs"]["up1"], "u1");
    assert_eq!(out["deleted_left"], 0);
    let recs = proxy.records();
    let upserts = recs.iter().filter(|r| r["endpoint"] == "upsert").count();
    assert_eq!(upserts, 3, "add, upsert, upsert classified as upsert");
    assert!(recs
        .iter()
        .filter(|r| r["endpoint"] == "query")
        .all(|r| r["outcome"] == "injected_error"));
}

/// The simulated Chroma (`brownout sim --api chroma`) serves the same client and
/// script, so drills can run without a Chroma install.
#[tokio::test]
async fn the_simulated_chroma_serves_the_chromadb_client() {
    let cfg = brownout_sim::SimConfig {
        api: "chroma".parse().unwrap(),
        ..Default::default()
    };
    let sim = brownout_sim::spawn("127.0.0.1:0".parse().unwrap(), cfg)
        .await
        .unwrap();
    let seeded = script("seed", &sim.url(), &sim.url()).await;
    assert_eq!(seeded["count"], 40);
    let proxy = ProxyBuilder::new(sim.url())
        .api(ApiKind::Chroma)
        .profile("version: 1\nname: c\nrules:\n  - match: {endpoint: query}\n    faults:\n      - {type: limit_results, max: 4}\n")
        .start()
        .await;
    let out = script("query", &sim.url(), &proxy.url("")).await;
    for (direct, proxied) in queries(&out) {
        assert_eq!(ids(&direct).len(), 10);
        assert_eq!(ids(&proxied), ids(&direct)[..4].to_vec());
    }
}
