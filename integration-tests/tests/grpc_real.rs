//! brownout in front of real gRPC servers, driven by real gRPC clients: Milvus Lite's
//! own gRPC server (milvus-lite 3.2.2, `milvus-lite server`) with pymilvus 3.0.2's
//! `MilvusClient`, and grpcio 1.85.4's own server and client (`grpc_echo_server.py`,
//! `grpc_echo_check.py`, service `brownout.test.Echo` of `grpc_echo.proto`).
//!
//! Every script first runs directly against its server, which proves the script and
//! the server right; then the same runs through brownout with no profile, and must
//! give the same results: status codes, messages, metadata both ways, deadlines, and
//! for pymilvus the same ids, distances and rows. The peers come from the cached
//! `grpc` Python environment of `integration-tests/python/venv.sh` (pinned by
//! `requirements-grpc.txt`), which `.ci/run` builds before the tests.

use std::time::Duration;

use brownout_integration_tests::*;
use serde_json::{json, Value};

/// Longest a script may run: its calls have their own deadlines well inside this.
const SCRIPT_LIMIT: Duration = Duration::from_secs(120);

async fn run_script(script: &str, args: Vec<String>) -> Value {
    let py = tokio::task::spawn_blocking(grpc_python)
        .await
        .expect("build the grpc environment");
    let mut out = within(SCRIPT_LIMIT, script, run_python_json(&py, script, &args)).await;
    assert_eq!(out.len(), 1, "{script} prints one JSON document: {out:#?}");
    out.remove(0)
}

// ---------------------------------------------------------------------------
// grpcio's own server and client
// ---------------------------------------------------------------------------

/// Every case of `grpc_echo_check.py`, once each.
const ECHO_CASES: &[&str] = &[
    "unary",
    "unary_big",
    "server_stream",
    "client_stream",
    "bidi",
    "deadline",
    "metadata",
    "fail:UNAVAILABLE",
    "fail:INVALID_ARGUMENT",
    "fail:RESOURCE_EXHAUSTED",
    "fail:INTERNAL",
    "fail_only:UNAVAILABLE",
    "fail_only:NOT_FOUND",
];

async fn echo_check(target: &str, cases: &[&str], options: &[&str]) -> Value {
    let mut args = vec![target.to_string()];
    args.extend(cases.iter().map(|c| c.to_string()));
    args.extend(options.iter().map(|o| o.to_string()));
    run_script("grpc_echo_check.py", args).await
}

fn calls(doc: &Value) -> &Vec<Value> {
    doc["calls"]
        .as_array()
        .unwrap_or_else(|| panic!("no calls in {doc:#}"))
}

/// The metadata pairs of a call, as `(key, value)` strings.
fn metadata(call: &Value, field: &str) -> Vec<(String, String)> {
    call[field]
        .as_array()
        .unwrap_or_else(|| panic!("no {field} in {call:#}"))
        .iter()
        .map(|kv| {
            (
                kv[0].as_str().unwrap().to_string(),
                kv[1].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

fn has(md: &[(String, String)], k: &str, v: &str) -> bool {
    md.iter().any(|(a, b)| a == k && b == v)
}

/// What a right run of each case looks like, whoever is in the middle.
fn check_echo_call(c: &Value, via: &str) {
    let case = c["case"].as_str().unwrap();
    let call_no = c["call"].as_u64().unwrap();
    let what = format!("{via}, {case}: {c:#}");
    let initial = metadata(c, "initial_metadata");
    let trailing = metadata(c, "trailing_metadata");
    let msgs = c["messages"].as_array().unwrap();
    let method = match case {
        "server_stream" => "ServerStream",
        "client_stream" => "ClientStream",
        "bidi" => "Bidi",
        c if c.starts_with("fail") => "Fail",
        _ => "Unary",
    };
    if let Some(code) = case
        .strip_prefix("fail:")
        .or_else(|| case.strip_prefix("fail_only:"))
    {
        assert_eq!(c["ok"], false, "{what}");
        assert_eq!(c["code"], code, "{what}");
        assert_eq!(c["details"], format!("brownout test {code}"), "{what}");
        assert!(msgs.is_empty(), "{what}");
        if case.starts_with("fail_only:") {
            assert!(initial.is_empty(), "a trailers-only answer: {what}");
        } else {
            assert!(has(&initial, "echo-x-case", case), "{what}");
        }
        assert!(has(&trailing, "x-echo-trailer", "Fail"), "{what}");
        assert!(
            has(&trailing, "x-echo-trailer-bin", "base64:AAH+/w=="),
            "{what}"
        );
        return;
    }
    // Metadata went to the server (echoed back as initial metadata) on every call.
    assert!(has(&initial, "echo-x-case", case), "{what}");
    assert!(has(&initial, "echo-x-call", &call_no.to_string()), "{what}");
    let elapsed = c["elapsed_ms"].as_f64().unwrap();
    if case == "deadline" {
        assert_eq!(c["ok"], false, "{what}");
        assert_eq!(c["code"], "DEADLINE_EXCEEDED", "{what}");
        assert!(
            c["details"].as_str().unwrap().contains("Deadline Exceeded"),
            "{what}"
        );
        assert!(
            (290.0..1500.0).contains(&elapsed),
            "the 300 ms deadline, not the 2 s sleep: {what}"
        );
        assert!(msgs.is_empty(), "{what}");
        return;
    }
    assert_eq!(c["ok"], true, "{what}");
    assert_eq!(c["code"], "OK", "{what}");
    assert!(has(&trailing, "x-echo-trailer", method), "{what}");
    assert!(
        has(&trailing, "x-echo-trailer-bin", "base64:AAH+/w=="),
        "binary trailers: {what}"
    );
    let field = |m: &Value, k: &str| m[k].as_u64().unwrap_or_else(|| panic!("{k}: {what}"));
    match case {
        "unary" | "metadata" | "unary_big" => {
            assert_eq!(msgs.len(), 1, "{what}");
            let size = if case == "unary_big" { 1 << 20 } else { 16 };
            assert_eq!(field(&msgs[0], "payload_len"), size, "{what}");
            assert_eq!(msgs[0]["text"], case, "{what}");
            assert_eq!(field(&msgs[0], "index"), call_no, "{what}");
            // The call's 10 s deadline reached the server as grpc-timeout.
            let left = msgs[0]["deadline_remaining_ms"].as_f64().unwrap();
            assert!((8000.0..10500.0).contains(&left), "{what}");
        }
        "server_stream" => {
            assert_eq!(msgs.len(), 5, "{what}");
            for (i, m) in msgs.iter().enumerate() {
                assert_eq!(field(m, "index"), i as u64, "{what}");
                assert_eq!(m["text"], format!("message {i}"), "{what}");
                assert_eq!(field(m, "payload_len"), 64, "{what}");
            }
            assert!(elapsed >= 195.0, "4 gaps of 50 ms: {what}");
        }
        "client_stream" => {
            // 10 messages of 0, 1, ... 9 KiB.
            assert_eq!(
                msgs,
                &vec![json!({"count": 10, "total_bytes": 45 * 1024})],
                "{what}"
            );
        }
        "bidi" => {
            assert_eq!(msgs.len(), 5, "{what}");
            for (i, m) in msgs.iter().enumerate() {
                assert_eq!(field(m, "index"), i as u64, "{what}");
                assert_eq!(m["text"], format!("ping {i}"), "{what}");
                assert_eq!(field(m, "payload_len"), 100 + i as u64, "{what}");
            }
        }
        other => panic!("no expectation for case {other}"),
    }
    if case == "metadata" {
        assert!(has(&initial, "echo-x-test-repeated", "one"), "{what}");
        assert!(has(&initial, "echo-x-test-repeated", "two"), "{what}");
        assert!(
            has(&initial, "echo-x-test-long", &"v".repeat(4000)),
            "{what}"
        );
        assert!(
            has(&initial, "echo-x-test-text", "spaces and: colons, commas"),
            "{what}"
        );
        // Bytes 0..=255 as a `-bin` value: base64 "AAECAwQF...".
        assert!(
            initial
                .iter()
                .any(|(k, v)| k == "echo-x-test-bin" && v.starts_with("base64:AAECAwQFBgcICQoL")),
            "{what}"
        );
    }
}

fn check_echo_run(doc: &Value, cases: &[&str], via: &str) {
    let cs = calls(doc);
    let got: Vec<&str> = cs.iter().map(|c| c["case"].as_str().unwrap()).collect();
    assert_eq!(got, cases, "{via}: every case ran, in order");
    for c in cs {
        check_echo_call(c, via);
    }
}

/// A call with what may differ between two right runs taken out: timings, the
/// deadline the server saw (it shrinks by the time spent on the way), and the
/// wording of a deadline's details (grpcio's own races give either "Deadline
/// Exceeded" or "Stream removed (Deadline Exceeded)", directly too).
fn comparable(call: &Value) -> Value {
    let mut c = call.clone();
    let o = c.as_object_mut().unwrap();
    o.remove("elapsed_ms");
    if o["case"] == "deadline" {
        o.remove("details");
    }
    for m in o["messages"].as_array_mut().unwrap() {
        m.as_object_mut().unwrap().remove("deadline_remaining_ms");
    }
    c
}

/// The script and grpcio's server agree with each other, directly: every case gives
/// the result it should (this is what the through-brownout test compares against).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_echo_cases_pass_directly_between_grpcio_client_and_server() {
    let server = GrpcEcho::start().await;
    let doc = echo_check(&server.target(), ECHO_CASES, &[]).await;
    check_echo_run(&doc, ECHO_CASES, "direct");
    // Many calls on one channel, some at once: all answered.
    let many = echo_check(
        &server.target(),
        &["unary", "server_stream", "bidi"],
        &["--repeat", "10", "--parallel", "6", "--summary-only"],
    )
    .await;
    assert_eq!(
        many["summary"],
        json!({"unary": {"OK": 10}, "server_stream": {"OK": 10}, "bidi": {"OK": 10}}),
        "{many:#}"
    );
}

/// Through brownout with no profile, grpcio's client sees exactly what it sees
/// directly: the same codes and details, the same messages, the same metadata both
/// ways (the server echoes what reached it, and its trailers reach the client), the
/// deadline kept (forwarded as grpc-timeout, ending the call at 300 ms); and many
/// calls at once on one connection, or a connection per call, all succeed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_echo_through_brownout_matches_direct() {
    let server = GrpcEcho::start().await;
    let p = server.proxy().start().await;
    let proxied_target = p.addr.to_string();
    let direct = echo_check(&server.target(), ECHO_CASES, &[]).await;
    check_echo_run(&direct, ECHO_CASES, "direct");
    let proxied = echo_check(&proxied_target, ECHO_CASES, &[]).await;
    check_echo_run(&proxied, ECHO_CASES, "through brownout");
    for (d, t) in calls(&direct).iter().zip(calls(&proxied)) {
        assert_eq!(
            comparable(t),
            comparable(d),
            "{}: through brownout (left) differs from direct (right)",
            d["case"]
        );
        // The deadline the server saw: the client's, less the time on the way.
        for (dm, tm) in d["messages"]
            .as_array()
            .unwrap()
            .iter()
            .zip(t["messages"].as_array().unwrap())
        {
            let (dl, tl) = (
                dm["deadline_remaining_ms"].as_f64(),
                tm["deadline_remaining_ms"].as_f64(),
            );
            if let (Some(dl), Some(tl)) = (dl, tl) {
                assert!(
                    tl > 0.0 && (dl - tl).abs() < 2000.0,
                    "{}: the server saw {tl} ms left through brownout, {dl} ms directly",
                    d["case"]
                );
            }
        }
    }
    let many = echo_check(
        &proxied_target,
        &[
            "unary",
            "unary_big",
            "server_stream",
            "client_stream",
            "bidi",
        ],
        &["--repeat", "8", "--parallel", "6", "--summary-only"],
    )
    .await;
    assert_eq!(
        many["summary"],
        json!({"unary": {"OK": 8}, "unary_big": {"OK": 8}, "server_stream": {"OK": 8},
               "client_stream": {"OK": 8}, "bidi": {"OK": 8}}),
        "{many:#}"
    );
    let fresh = echo_check(
        &proxied_target,
        &["unary", "fail_only:UNAVAILABLE"],
        &["--repeat", "5", "--fresh-channel", "--summary-only"],
    )
    .await;
    assert_eq!(
        fresh["summary"],
        json!({"unary": {"OK": 5}, "fail_only:UNAVAILABLE": {"UNAVAILABLE": 5}}),
        "{fresh:#}"
    );
    p.shutdown().await;
}

/// The records of a proxy's JSONL file, in the order the exchanges began.
fn read_records(path: &std::path::Path) -> Vec<Value> {
    let text = std::fs::read_to_string(path).expect("the record file");
    let mut recs: Vec<Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("a bad record {l}: {e}")))
        .collect();
    // `id` counts exchanges as they begin; the file is in the order they ended.
    recs.sort_by_key(|r| r["id"].as_u64());
    recs
}

/// DEPENDS ON the proxy's HTTP/2 upstream forwarding (issue 17): brownout's record
/// file has one record per gRPC call, naming its service and method and carrying its
/// final grpc-status; a failing status from the server is `http_error` (docs/grpc.md). For pymilvus, the records name exactly the RPCs pymilvus made, with
/// Milvus's endpoints (Search → search, Query → query, Insert → upsert).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn brownout_writes_one_record_per_grpc_call_with_its_method_and_status() {
    let dir = TempDir::new();
    // grpcio's own server.
    let server = GrpcEcho::start().await;
    let rec_path = dir.join("echo.jsonl");
    let p = server.proxy().record(&rec_path).start().await;
    let cases = [
        "unary",
        "server_stream",
        "client_stream",
        "bidi",
        "fail:UNAVAILABLE",
        "fail_only:NOT_FOUND",
    ];
    let doc = echo_check(&p.addr.to_string(), &cases, &[]).await;
    check_echo_run(&doc, &cases, "through brownout");
    p.shutdown().await;
    let recs = read_records(&rec_path);
    assert_eq!(recs.len(), cases.len(), "one record per call: {recs:#?}");
    for (r, c) in recs.iter().zip(calls(&doc)) {
        let case = c["case"].as_str().unwrap();
        let method = match case {
            "server_stream" => "ServerStream",
            "client_stream" => "ClientStream",
            "bidi" => "Bidi",
            "unary" => "Unary",
            _ => "Fail",
        };
        let code = c["code"].as_str().unwrap();
        assert_eq!(r["grpc"]["service"], "brownout.test.Echo", "{case}: {r:#}");
        assert_eq!(r["grpc"]["method"], method, "{case}: {r:#}");
        assert_eq!(
            r["grpc"]["status"],
            brownout_integration_tests::grpc::grpc_code_number(code),
            "{case}: {r:#}"
        );
        assert_eq!(r["method"], "POST", "{case}: {r:#}");
        assert_eq!(
            r["path"],
            format!("/brownout.test.Echo/{method}"),
            "{case}: {r:#}"
        );
        let outcome = if code == "OK" { "ok" } else { "http_error" };
        assert_eq!(r["outcome"], outcome, "{case}: {r:#}");
    }

    // Milvus Lite and pymilvus: one record per RPC pymilvus made, in order.
    let milvus = MilvusLite::start().await;
    let rec_path = dir.join("milvus.jsonl");
    let p = milvus.proxy().record(&rec_path).start().await;
    let wf = milvus_check("workflow", &p.url(""), "recorded", &[]).await;
    check_workflow(&wf, "through brownout");
    p.shutdown().await;
    let recs = read_records(&rec_path);
    let made = grpc_calls(&wf);
    let recorded: Vec<(String, String)> = recs
        .iter()
        .map(|r| {
            (
                format!(
                    "/{}/{}",
                    r["grpc"]["service"].as_str().unwrap_or("?"),
                    r["grpc"]["method"].as_str().unwrap_or("?")
                ),
                r["grpc"]["status"].to_string(),
            )
        })
        .collect();
    let expected: Vec<(String, String)> = made
        .iter()
        .map(|(m, code)| {
            (
                m.clone(),
                brownout_integration_tests::grpc::grpc_code_number(code).to_string(),
            )
        })
        .collect();
    assert_eq!(recorded, expected, "records vs pymilvus's calls: {recs:#?}");
    for r in &recs {
        let m = r["grpc"]["method"].as_str().unwrap();
        let endpoint = match m {
            "Search" => "search",
            "Query" => "query",
            "Insert" | "Upsert" => "upsert",
            _ => "other",
        };
        assert_eq!(r["endpoint"], endpoint, "{m}: {r:#}");
        assert_eq!(r["api"], "milvus", "{r:#}");
    }
}

// ---------------------------------------------------------------------------
// Milvus Lite and pymilvus
// ---------------------------------------------------------------------------

async fn milvus_check(mode: &str, uri: &str, collection: &str, options: &[&str]) -> Value {
    let mut args = vec![
        mode.to_string(),
        uri.to_string(),
        "--collection".to_string(),
        collection.to_string(),
    ];
    args.extend(options.iter().map(|o| o.to_string()));
    run_script("milvus_check.py", args).await
}

/// The `(method path, status code)` of each gRPC call pymilvus made.
fn grpc_calls(doc: &Value) -> Vec<(String, String)> {
    doc["grpc_calls"]
        .as_array()
        .unwrap_or_else(|| panic!("no grpc_calls in {doc:#}"))
        .iter()
        .map(|c| {
            (
                c["method"].as_str().unwrap().to_string(),
                c["code"].as_str().unwrap_or("none").to_string(),
            )
        })
        .collect()
}

fn step<'a>(doc: &'a Value, name: &str) -> &'a Value {
    doc["steps"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["step"] == name)
        .unwrap_or_else(|| panic!("no step {name} in {doc:#}"))
}

/// What a right pymilvus workflow against Milvus Lite gives.
fn check_workflow(doc: &Value, via: &str) {
    let steps: Vec<&str> = doc["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["step"].as_str().unwrap())
        .collect();
    assert_eq!(
        steps,
        [
            "connect",
            "create",
            "insert",
            "load",
            "search",
            "query",
            "get",
            "drop",
            "has_after_drop"
        ],
        "{via}"
    );
    let insert = &step(doc, "insert")["result"];
    assert_eq!(insert["insert_count"], 200, "{via}: {insert}");
    let ids: Vec<u64> = (0..200).collect();
    assert_eq!(insert["ids"], json!(ids), "{via}");
    let search = step(doc, "search")["result"].as_array().unwrap();
    assert_eq!(search.len(), 5, "{via}: five queries");
    for q in search {
        assert_eq!(q["hits"], 10, "{via}: top-10: {q}");
        let d: Vec<f64> = q["distances"]
            .as_array()
            .unwrap()
            .iter()
            .map(|x| x.as_f64().unwrap())
            .collect();
        assert!(
            d.windows(2).all(|w| w[0] >= w[1]),
            "{via}: COSINE, closest first: {q}"
        );
        for e in q["entities"].as_array().unwrap() {
            assert!(
                e["tag"].is_string() && e["score"].is_number(),
                "{via}: output_fields: {q}"
            );
        }
    }
    assert_eq!(
        step(doc, "query")["result"],
        json!([
            {"id": 3, "tag": "tag-3", "score": 0.75},
            {"id": 10, "tag": "tag-3", "score": 2.5},
            {"id": 17, "tag": "tag-3", "score": 4.25},
        ]),
        "{via}"
    );
    let got: Vec<&Value> = step(doc, "get")["result"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| &r["id"])
        .collect();
    assert_eq!(got, [&json!(3), &json!(5), &json!(8), &json!(199)], "{via}");
    assert_eq!(step(doc, "has_after_drop")["result"], false, "{via}");
    let made = grpc_calls(doc);
    let methods: Vec<&str> = made
        .iter()
        .map(|(m, _)| m.rsplit('/').next().unwrap())
        .collect();
    for m in [
        "Connect",
        "CreateCollection",
        "CreateIndex",
        "LoadCollection",
        "Insert",
        "Search",
        "Query",
        "DropCollection",
    ] {
        assert!(methods.contains(&m), "{via}: pymilvus called {m}: {made:?}");
    }
    for (m, code) in &made {
        assert!(
            m.starts_with("/milvus.proto.milvus.MilvusService/"),
            "{via}: {m}"
        );
        // Milvus Lite implements no AllocTimestamp; pymilvus goes on without it.
        let want = if m.ends_with("/AllocTimestamp") {
            "UNIMPLEMENTED"
        } else {
            "OK"
        };
        assert_eq!(code, want, "{via}: {m}: {made:?}");
    }
}

/// A workflow document with its timings taken out.
fn comparable_workflow(doc: &Value) -> Vec<Value> {
    doc["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            let calls: Vec<Value> = s["grpc_calls"]
                .as_array()
                .unwrap()
                .iter()
                .map(|c| json!([c["method"], c["code"]]))
                .collect();
            json!({"step": s["step"], "result": s["result"], "grpc_calls": calls})
        })
        .collect()
}

/// pymilvus and Milvus Lite agree with each other, directly: the whole workflow
/// (create, insert, index and load, search with output fields, query, get, drop)
/// gives what it should.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pymilvus_workflow_passes_directly_against_milvus_lite() {
    let milvus = MilvusLite::start().await;
    let doc = milvus_check("workflow", &milvus.url(), "direct", &[]).await;
    check_workflow(&doc, "direct");
    // A missing collection: Milvus's in-message error, no retry.
    let err = milvus_check("error", &milvus.url(), "missing", &["--timeout", "3"]).await;
    let e = &err["error"];
    assert_eq!(e["raised"], "MilvusException", "{e:#}");
    assert_eq!(e["code"], 100, "{e:#}");
    assert_eq!(e["attempts"], 1, "{e:#}");
}

/// Through brownout with no profile, pymilvus sees exactly what it sees directly:
/// the same gRPC calls with the same codes, the same rows, ids and distances, and a
/// search that finds the same hits (recall@10 of 1 against the direct search).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pymilvus_through_brownout_matches_direct() {
    let milvus = MilvusLite::start().await;
    let p = milvus.proxy().start().await;
    let (direct_uri, proxied) = (milvus.url(), p.url(""));
    let direct_wf = milvus_check("workflow", &direct_uri, "wf", &[]).await;
    check_workflow(&direct_wf, "direct");
    let proxied_wf = milvus_check("workflow", &proxied, "wf", &[]).await;
    check_workflow(&proxied_wf, "through brownout");
    for (d, t) in comparable_workflow(&direct_wf)
        .iter()
        .zip(comparable_workflow(&proxied_wf).iter())
    {
        assert_eq!(
            t, d,
            "{}: through brownout (left) differs from direct (right)",
            d["step"]
        );
    }

    // One collection, searched both ways, three times each.
    milvus_check("setup", &milvus.url(), "kept", &[]).await;
    // Searches only read: both at once.
    let (direct, through) = tokio::join!(
        milvus_check("search", &direct_uri, "kept", &["--repeat", "3"]),
        milvus_check("search", &proxied, "kept", &["--repeat", "3"]),
    );
    let baseline = &direct["searches"][0];
    for s in direct["searches"].as_array().unwrap() {
        assert_eq!(
            s, baseline,
            "Milvus Lite's searches are exact and repeatable"
        );
    }
    for s in through["searches"].as_array().unwrap() {
        assert_eq!(
            s, baseline,
            "through brownout (left) differs from direct (right)"
        );
        for (q, b) in s
            .as_array()
            .unwrap()
            .iter()
            .zip(baseline.as_array().unwrap())
        {
            let want: Vec<&Value> = b["ids"].as_array().unwrap().iter().collect();
            let found = q["ids"]
                .as_array()
                .unwrap()
                .iter()
                .filter(|i| want.contains(i))
                .count();
            assert_eq!(found, 10, "recall@10 is 1: {q} vs {b}");
        }
    }

    // A missing collection through brownout: the same in-message error, no retry.
    let err = milvus_check("error", &proxied, "missing", &["--timeout", "3"]).await;
    let e = &err["error"];
    assert_eq!(e["raised"], "MilvusException", "{e:#}");
    assert_eq!(e["code"], 100, "{e:#}");
    assert_eq!(e["attempts"], 1, "{e:#}");
    p.shutdown().await;
}
