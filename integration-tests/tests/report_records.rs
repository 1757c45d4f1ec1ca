//! `brownout report` over the proxy's own records: retries that clients make as
//! fresh calls (LiteLLM, LangChain: no retry count) counted by the records'
//! `fingerprint` and `client`, outcomes counted as the records name them, a header
//! of what the records hold, and no verdict without objectives.

use brownout_faults::record::Record;
use brownout_faults::ApiKind;
use brownout_integration_tests::*;
use http::Request;

/// The model's first three requests are throttled, whoever sends them. Matching on
/// the model makes the proxy read bodies, so bodies count in fingerprints.
const PROFILE: &str = r#"
version: 1
name: litellm-like
rules:
  - name: storm
    match: {model: gpt-4o-mini}
    schedule: {first: 3}
    faults: [{type: error, status: 429}]
"#;

const A: &str = "Bearer sk-A-SECRET-do-not-log";
const B: &str = "Bearer sk-B-SECRET-do-not-log";

fn chat(url: String, key: &str, text: &str) -> Request<Body> {
    Request::builder()
        .method("POST")
        .uri(url)
        .header("authorization", key)
        .header("content-type", "application/json")
        .body(full(format!(
            r#"{{"model":"gpt-4o-mini","messages":[{{"role":"user","content":"{text}"}}]}}"#
        )))
        .unwrap()
}

/// Runs the traffic through a recording proxy and returns the record file's text.
async fn litellm_like_records(dir: &TempDir) -> String {
    let up = Upstream::start(|req| async move {
        let _ = collect(req.into_body()).await;
        let mut r = reply(200, r#"{"id":"c","object":"chat.completion","choices":[]}"#);
        r.headers_mut()
            .insert("content-type", "application/json".parse().unwrap());
        r
    })
    .await;
    let file = dir.join("records.jsonl");
    let proxy = ProxyBuilder::new(up.url())
        .api(ApiKind::Openai)
        .record(&file)
        .profile(PROFILE)
        .start()
        .await;
    let c = http1_client();
    // One call made four times (three 429s, then through), with other calls in
    // between: another body, another client, and the same call once more after
    // its success.
    let plan = [
        (A, "hi", 429),
        (A, "hi", 429),
        (A, "hi", 429),
        (A, "bye", 200),
        (A, "hi", 200),
        (B, "hi", 200),
        (A, "hi", 200),
    ];
    for (key, text, status) in plan {
        let r = send(&c, chat(proxy.url("/v1/chat/completions"), key, text))
            .await
            .unwrap();
        assert_eq!(r.status, status, "{key} {text}");
    }
    // Requests no rule can match take the fast path, which names them too.
    for _ in 0..2 {
        let mut req = get(proxy.url("/v1/models"));
        req.headers_mut()
            .insert("authorization", A.parse().unwrap());
        assert_eq!(send(&c, req).await.unwrap().status, 200);
    }
    proxy.exactly_records(9).await;
    std::fs::read_to_string(&file).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fresh_call_retries_are_counted_from_the_proxys_records() {
    let dir = TempDir::new();
    let text = litellm_like_records(&dir).await;
    assert!(!text.contains("SECRET") && !text.contains("sk-"), "{text}");
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 9, "{text}");
    let recs: Vec<Record> = lines
        .iter()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect();
    let id = |i: usize| (recs[i].fingerprint.unwrap(), recs[i].client.unwrap());
    // The one call, throttled and let through, hashes alike every time.
    assert!([1, 2, 4, 6].iter().all(|&i| id(i) == id(0)));
    assert_ne!(id(3).0, id(0).0, "another body, another call");
    assert_eq!((id(5).0, id(3).1), (id(0).0, id(0).1));
    assert_ne!(id(5).1, id(0).1, "another key, another client");
    // The fast path: method and target only (the body is not read there), and the
    // same client as on the full path.
    assert_eq!(id(7), id(8));
    assert_ne!(id(7).0, id(0).0);
    assert_eq!(id(7).1, id(0).1);
    assert_eq!(recs[0].outcome.as_str(), "injected_error");

    let report = |text: String| {
        brownout_drill::records::report_from_records(&[("records.jsonl".into(), text)], None)
            .unwrap()
    };
    // The LiteLLM call alone: four attempts, one call.
    let call: Vec<&str> = [0, 1, 2, 4].iter().map(|&i| lines[i]).collect();
    let r = report(call.join("\n"));
    assert_eq!(r.result.total.attempts, 4);
    assert_eq!(r.result.total.amplification_text(), "4.00×");
    let md = brownout_drill::gate::render_summary(&r);
    assert!(md.contains("| all | 25.0% | 4.00× |"), "{md}");
    // Everything: 9 attempts of 6 calls (the throttled call; "bye"; B's; A's again
    // after its success; the two GETs, which succeeded).
    let r = report(text.clone());
    assert_eq!(r.result.total.attempts, 9);
    assert!(
        (r.result.total.retry_amplification - 1.5).abs() < 1e-9,
        "{}",
        r.result.total.retry_amplification
    );
    let kinds = &r.result.stats.total.errors_by_kind;
    assert_eq!(kinds.get("injected_error"), Some(&3), "{kinds:?}");
    assert_eq!(kinds.get("http_error"), None, "{kinds:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_report_command_gives_no_verdict_without_objectives() {
    let dir = TempDir::new();
    litellm_like_records(&dir).await;
    let run = |args: Vec<String>| async move {
        let out = tokio::process::Command::new(brownout_bin())
            .args(&args)
            .output();
        within(std::time::Duration::from_secs(60), "brownout report", out)
            .await
            .expect("run brownout report")
    };
    let file = dir.join("records.jsonl").display().to_string();
    let out = run(vec![
        "report".into(),
        file.clone(),
        "--report-dir".into(),
        dir.join("report").display().to_string(),
    ])
    .await;
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert_eq!(out.status.code(), Some(0), "{stdout}");
    assert!(stdout.contains("NO VERDICT"), "{stdout}");
    assert!(
        stdout.contains("No verdict: no objectives (pass --scenario)."),
        "{stdout}"
    );
    assert!(!stdout.contains("PASS"), "{stdout}");
    // What the records hold, not a made-up drill.
    assert!(stdout.contains("9 record(s) from 1 file(s)"), "{stdout}");
    assert!(stdout.contains("req/s observed"), "{stdout}");
    assert!(stdout.contains("listener `test`"), "{stdout}");
    assert!(
        stdout.contains("openai chat (7), openai other (2)"),
        "{stdout}"
    );
    assert!(
        stdout.contains("0% streaming (of 7 with a body read)"),
        "{stdout}"
    );
    assert!(
        !stdout.contains("Poisson") && !stdout.contains("seed"),
        "{stdout}"
    );
    assert!(stdout.contains("injected_error: 3"), "{stdout}");
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("report/report.json")).unwrap())
            .unwrap();
    assert_eq!(json["verdict"], "no verdict");
    assert_eq!(json["records"]["records"], 9);

    // With objectives, a verdict: a third of the attempts failed.
    let scenario = dir.join("s.yaml");
    std::fs::write(dir.join("p.yaml"), PROFILE).unwrap();
    std::fs::write(
        &scenario,
        "version: 1\nname: s\ntarget: {upstream: sim}\nprofile: p.yaml\n\
         workload: {name: w, arrival: {rate: 1/s}}\nslo:\n  error_rate: 0.1\n",
    )
    .unwrap();
    let out = run(vec![
        "report".into(),
        file,
        "--scenario".into(),
        scenario.display().to_string(),
        "--report-dir".into(),
        dir.join("report2").display().to_string(),
    ])
    .await;
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(1), "{stdout}{stderr}");
    assert!(stdout.contains("FAIL"), "{stdout}");
}

/// The real LiteLLM Router, retrying a throttled call with fresh SDK calls
/// (`num_retries=3`), through a recording proxy to the simulator: each attempt is a
/// new OpenAI-SDK call, so the records carry no retry count (every `attempt` is 0),
/// and `brownout report` still counts the call's four attempts, 4.00x, from their
/// fingerprints. (`litellm.completion(num_retries=...)` alone hands the retries to
/// the SDK, which numbers them: its records say 0, 1, 2, 3 themselves.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn litellm_fresh_call_retries_show_as_four_attempts_of_one_call() {
    let sim = brownout_sim::spawn("127.0.0.1:0".parse().unwrap(), Default::default())
        .await
        .unwrap();
    let dir = TempDir::new();
    let file = dir.join("records.jsonl");
    let proxy = ProxyBuilder::new(format!("http://{}", sim.addr))
        .api(ApiKind::Openai)
        .record(&file)
        .profile(
            r#"
version: 1
name: litellm-retries
rules:
  - name: first-three
    match: {endpoint: chat}
    schedule: {first: 3}
    faults: [{type: error, preset: openai.rate_limit_requests, retry_after: 100ms}]
"#,
        )
        .start()
        .await;
    let py = tokio::task::spawn_blocking(sdk_python).await.unwrap();
    let out = run_python_json(
        &py,
        "litellm_retries_check.py",
        &[proxy.url("/v1"), "1".into(), "3".into()],
    )
    .await;
    assert_eq!(out.len(), 1, "{out:#?}");
    assert_eq!(
        out[0]["ok"], true,
        "the fourth attempt got through: {out:#?}"
    );
    proxy.exactly_records(4).await;
    let text = std::fs::read_to_string(&file).unwrap();
    let recs: Vec<Record> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect();
    let statuses: Vec<Option<u16>> = recs.iter().map(|r| r.status).collect();
    assert_eq!(statuses, [Some(429), Some(429), Some(429), Some(200)]);
    assert!(
        recs.iter().all(|r| r.attempt.unwrap_or(0) == 0),
        "LiteLLM's retries are fresh calls, no retry count: {text}"
    );
    let r = brownout_drill::records::report_from_records(&[("records.jsonl".into(), text)], None)
        .unwrap();
    assert_eq!(r.result.total.attempts, 4);
    assert_eq!(r.result.total.amplification_text(), "4.00×");
    proxy.shutdown().await;
    sim.shutdown().await;
}
