//! End-to-end drills against the simulated OpenAI upstream over real sockets.

use std::time::Duration;

use brownout_drill::arrival::poisson_schedule;
use brownout_drill::{render_table, run, LoadPlan, NoProgress, PhasePlan};
use brownout_sim::{spawn, SimConfig};

fn plan(target: &str) -> LoadPlan {
    let mut plan = LoadPlan::new(target.parse().unwrap());
    plan.rate_per_sec = 50.0;
    plan.seed = 11;
    plan.max_tokens = 8;
    plan.timeout = Duration::from_secs(5);
    plan.phases = vec![
        PhasePlan::new("baseline", Duration::from_secs(1)),
        PhasePlan::new("second", Duration::from_secs(1)),
    ];
    plan
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streaming_drill_has_no_errors_and_sane_ttft() {
    let sim = spawn("127.0.0.1:0".parse().unwrap(), SimConfig::default())
        .await
        .unwrap();
    let plan = plan(&sim.url());
    let schedule = poisson_schedule(plan.rate_per_sec, plan.seed, plan.total_duration());
    let result = run(plan, NoProgress).await.unwrap();

    assert_eq!(result.phases.len(), 2);
    // The schedule is a pure function of the seed: the counts are exact.
    let first = schedule
        .iter()
        .filter(|t| **t < Duration::from_secs(1))
        .count() as u64;
    assert_eq!(result.phases[0].requests, first);
    assert_eq!(result.total.requests, schedule.len() as u64);
    assert!(
        (70..=130).contains(&result.total.requests),
        "{}",
        result.total.requests
    );

    for p in &result.phases {
        assert_eq!(p.errors, 0, "phase {}: {:?}", p.name, p.errors_by_kind);
        assert_eq!(p.error_rate, 0.0);
        let ttft = p.ttft.as_ref().unwrap();
        // The sim's first token comes at 30 ms; the role chunk at 0 ms must not count.
        assert!(ttft.p50_ms >= 30.0 && ttft.p50_ms < 80.0, "ttft {ttft:?}");
        let e2e = p.e2e.as_ref().unwrap();
        // 30 ms + 7 × 10 ms for 8 tokens.
        assert!(e2e.p50_ms >= 100.0 && e2e.p50_ms < 200.0, "e2e {e2e:?}");
        let tpot = p.tpot.as_ref().unwrap();
        assert!(tpot.p50_ms >= 9.0 && tpot.p50_ms < 20.0, "tpot {tpot:?}");
        assert_eq!(p.tokens_from_usage, p.ok);
        assert_eq!(p.output_tokens, 8 * p.ok);
    }
    let table = render_table(&result, Some("baseline"));
    eprintln!("{table}");
    assert!(table.contains("(baseline)"), "{table}");
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn non_streaming_legacy_completions() {
    let sim = spawn(
        "127.0.0.1:0".parse().unwrap(),
        SimConfig {
            ttft: Duration::from_millis(5),
            itl: Duration::from_millis(1),
            ..SimConfig::default()
        },
    )
    .await
    .unwrap();
    let mut plan = plan(&sim.url());
    plan.stream = false;
    plan.path = "/v1/completions".into();
    plan.phases.truncate(1);
    let result = run(plan, NoProgress).await.unwrap();
    let p = &result.phases[0];
    assert!(p.requests > 20);
    assert_eq!(p.errors, 0, "{:?}", p.errors_by_kind);
    assert!(p.ttft.is_none());
    assert!(p.e2e.as_ref().unwrap().p50_ms >= 12.0);
    assert_eq!(p.output_tokens, 8 * p.ok);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failures_are_outcomes_not_errors() {
    // A slow upstream: every request times out.
    let sim = spawn(
        "127.0.0.1:0".parse().unwrap(),
        SimConfig {
            ttft: Duration::from_secs(30),
            ..SimConfig::default()
        },
    )
    .await
    .unwrap();
    let mut slow = plan(&sim.url());
    slow.timeout = Duration::from_millis(200);
    slow.rate_per_sec = 20.0;
    slow.phases = vec![PhasePlan::new("slow", Duration::from_millis(500))];
    let result = run(slow, NoProgress).await.unwrap();
    let p = &result.phases[0];
    assert!(p.requests > 0);
    assert_eq!(p.errors_by_kind.get("timeout").copied(), Some(p.requests));
    assert!(p.e2e.is_none());

    // Nobody listening: transport errors.
    let addr = sim.addr;
    sim.shutdown().await;
    let mut dead = plan(&format!("http://{addr}"));
    dead.rate_per_sec = 20.0;
    dead.phases = vec![PhasePlan::new("dead", Duration::from_millis(500))];
    let result = run(dead, NoProgress).await.unwrap();
    let p = &result.phases[0];
    assert!(p.requests > 0);
    assert_eq!(
        p.errors_by_kind.get("transport_error").copied(),
        Some(p.requests)
    );
    assert_eq!(p.error_rate, 1.0);

    // HTTP errors: an unknown path on the sim answers 404.
    let sim = spawn("127.0.0.1:0".parse().unwrap(), SimConfig::default())
        .await
        .unwrap();
    let mut wrong = plan(&sim.url());
    wrong.path = "/v1/nope".into();
    wrong.phases = vec![PhasePlan::new("wrong", Duration::from_millis(300))];
    let result = run(wrong, NoProgress).await.unwrap();
    let p = &result.phases[0];
    assert_eq!(p.http_statuses.get(&404).copied(), Some(p.requests));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_request_carries_its_sequence_number() {
    use std::sync::{Arc, Mutex};

    use bytes::Bytes;
    use http_body_util::Full;
    use hyper::service::service_fn;
    use hyper_util::rt::{TokioExecutor, TokioIo};

    let seen = Arc::new(Mutex::new(Vec::<u64>::new()));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server_seen = Arc::clone(&seen);
    let server = tokio::spawn(async move {
        loop {
            let (stream, _) = listener.accept().await.unwrap();
            let seen = Arc::clone(&server_seen);
            tokio::spawn(async move {
                let svc = service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
                    let seq = req.headers()["x-brownout-seq"]
                        .to_str()
                        .unwrap()
                        .parse()
                        .unwrap();
                    seen.lock().unwrap().push(seq);
                    async {
                        Ok::<_, std::convert::Infallible>(hyper::Response::new(Full::new(
                            Bytes::from_static(
                                br#"{"choices":[],"usage":{"completion_tokens":1}}"#,
                            ),
                        )))
                    }
                });
                let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
    let mut plan = plan(&format!("http://{addr}"));
    plan.stream = false;
    plan.phases = vec![PhasePlan::new("only", Duration::from_millis(500))];
    let result = run(plan, NoProgress).await.unwrap();
    server.abort();
    let mut seqs = seen.lock().unwrap().clone();
    seqs.sort_unstable();
    assert_eq!(seqs, (0..result.total.requests).collect::<Vec<_>>());
    assert_eq!(result.total.errors, 0);
}
