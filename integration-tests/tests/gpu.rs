//! `gpu_saturation` and `cold_start` through the proxy, in front of the simulated
//! OpenAI upstream: admission queues add to TTFT, tokens are released no sooner than
//! the model produces them, overflow answers the preset, non-streaming answers are
//! held until the model would finish, the kill switch releases everything, and
//! records and metrics say what the model did.

use std::time::Duration;

use brownout_integration_tests::*;
use tokio::time::Instant;

const PROFILE: &str = r#"
version: 1
name: gpu
rules:
  - name: gpu
    match: {endpoint: chat, headers: {x-case: gpu}}
    faults:
      - type: gpu_saturation
        gpu: a100-40gb
        model: llama-3.1-8b
        slots: 1
        queue: 1
        overflow: vllm.queue_full
  - name: cold
    match: {headers: {x-case: cold}}
    faults:
      - {type: cold_start, idle: 1m, duration: 400ms}
"#;

async fn setup() -> (brownout_sim::SimHandle, TestProxy) {
    sim_behind_proxy(Duration::from_millis(1), PROFILE).await
}

fn chat(proxy: &TestProxy, case: &str, stream: bool, max_tokens: u32) -> http::Request<Body> {
    let mut r = post_json(
        proxy.url("/v1/chat/completions"),
        &serde_json::json!({
            "model": "gpt-4o-mini", "stream": stream, "max_tokens": max_tokens,
            "messages": [{"role": "user", "content": "How long does a brownout last?"}],
        }),
    );
    r.headers_mut().insert("x-case", case.parse().unwrap());
    r
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_slot_queues_the_second_request_and_overflows_the_third() {
    let (_sim, proxy) = setup().await;
    let c = http1_client();
    let t0 = Instant::now();
    // ~13 ms per token on the A100 preset: 20 tokens take ~0.26 s of model time.
    let a = tokio::spawn({
        let (c, r) = (c.clone(), chat(&proxy, "gpu", true, 20));
        async move { send(&c, r).await.unwrap() }
    });
    tokio::time::sleep(Duration::from_millis(60)).await;
    let b = tokio::spawn({
        let (c, r) = (c.clone(), chat(&proxy, "gpu", true, 20));
        async move { (send(&c, r).await.unwrap(), Instant::now()) }
    });
    tokio::time::sleep(Duration::from_millis(60)).await;
    // The slot is busy and the queue (1) is full: the preset's 503 at once.
    let over = send(&c, chat(&proxy, "gpu", false, 20)).await.unwrap();
    assert_eq!(over.status, 503);
    assert_eq!(over.header("x-brownout-limit"), Some("gpu_queue_full"));
    assert!(String::from_utf8_lossy(&over.body).contains("error"));
    let a = a.await.unwrap();
    let (b, b_done) = b.await.unwrap();
    assert_eq!(a.status, 200);
    assert_eq!(b.status, 200);
    for r in [&a, &b] {
        let body = String::from_utf8_lossy(&r.body);
        assert_eq!(
            body.matches("\"content\":\"").count(),
            21,
            "role chunk + 20 tokens: {body}"
        );
        assert!(body.contains("[DONE]"));
    }
    // The second waited for the first's whole answer: two answers in series.
    assert!(
        b_done - t0 >= Duration::from_millis(450),
        "{:?}",
        b_done - t0
    );
    let recs = proxy.wait_records(3).await;
    let gpu: Vec<&serde_json::Value> = recs.iter().filter(|r| !r["gpu"].is_null()).collect();
    assert_eq!(gpu.len(), 2, "{recs:?}");
    let queued = gpu
        .iter()
        .map(|r| r["gpu"]["queue_ms"].as_f64().unwrap())
        .fold(0.0, f64::max);
    assert!(
        queued >= 150.0,
        "the second request queued behind the first: {queued}"
    );
    let second = gpu
        .iter()
        .find(|r| r["gpu"]["queue_ms"].as_f64().unwrap() >= 150.0)
        .unwrap();
    assert!(
        second["ttft_ms"].as_f64().unwrap() >= 150.0,
        "queueing adds to TTFT: {second}"
    );
    assert_eq!(second["output_tokens"], 20);
    let (_, metrics) = proxy.admin_get("/metrics").await;
    assert!(
        metrics.contains("brownout_gpu_queue_depth{rule=\"gpu\"} 0"),
        "{metrics}"
    );
    assert!(metrics.contains("brownout_gpu_batch_size{rule=\"gpu\"}"));
    assert!(metrics.contains("brownout_gpu_preemptions_total{rule=\"gpu\"} 0"));
    // Utilisation and energy, as valid Prometheus text: the A100 SXM preset draws
    // 50 W idle and 400 W busy, and the gauges of one scrape agree.
    let samples = brownout_drill::energy::parse_prometheus(&metrics).expect("Prometheus text");
    let value = |name: &str| {
        samples
            .iter()
            .find(|s| s.name == name && s.labels == [("rule".to_owned(), "gpu".to_owned())])
            .unwrap_or_else(|| panic!("no {name}{{rule=\"gpu\"}} in {metrics}"))
            .value
    };
    for (name, kind) in [
        ("brownout_gpu_utilization", "gauge"),
        ("brownout_gpu_busy_seconds_total", "counter"),
        ("brownout_gpu_power_watts", "gauge"),
        ("brownout_gpu_energy_joules_total", "counter"),
    ] {
        assert!(
            metrics.contains(&format!("# TYPE {name} {kind}\n")),
            "{name}"
        );
    }
    let util = value("brownout_gpu_utilization");
    assert!(util > 0.0 && util <= 1.0, "{util}");
    assert!((value("brownout_gpu_power_watts") - (50.0 + 350.0 * util)).abs() < 1.0);
    // Two answers of 20 tokens at about 13 ms a token: over half a second busy.
    let busy = value("brownout_gpu_busy_seconds_total");
    assert!(busy > 0.4, "{busy}");
    // At least the busy span's extra draw, plus idle draw over the replica's life.
    assert!(value("brownout_gpu_energy_joules_total") >= 350.0 * busy + 50.0 * busy);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn non_streaming_answers_are_held_until_the_model_finishes() {
    let (_sim, proxy) = setup().await;
    let c = http1_client();
    let t0 = Instant::now();
    let r = send(&c, chat(&proxy, "gpu", false, 30)).await.unwrap();
    let took = t0.elapsed();
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["usage"]["completion_tokens"], 30);
    // 30 tokens at ~13 ms each; the sim alone answers in ~31 ms.
    assert!(took >= Duration::from_millis(300), "{took:?}");
    let rec = &proxy.wait_records(1).await[0];
    assert_eq!(rec["output_tokens"], 30);
    assert_eq!(rec["tokens_source"], "usage");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_switch_releases_queued_and_paced_requests() {
    let (_sim, proxy) = setup().await;
    let c = http1_client();
    // Hold the slot with a long answer, and queue a second one behind it.
    let long = tokio::spawn({
        let (c, r) = (c.clone(), chat(&proxy, "gpu", true, 2000));
        async move { send(&c, r).await.unwrap() }
    });
    tokio::time::sleep(Duration::from_millis(100)).await;
    let queued = tokio::spawn({
        let (c, r) = (c.clone(), chat(&proxy, "gpu", true, 2000));
        async move { send(&c, r).await.unwrap() }
    });
    tokio::time::sleep(Duration::from_millis(100)).await;
    let t0 = Instant::now();
    assert_eq!(proxy.admin_post("/api/v1/faults/off").await.0, 200);
    let (a, b) = (long.await.unwrap(), queued.await.unwrap());
    // 2000 tokens would take ~26 s on the model; released, they come at the sim's pace.
    assert!(t0.elapsed() < Duration::from_secs(3), "{:?}", t0.elapsed());
    for r in [&a, &b] {
        assert_eq!(r.status, 200);
        assert!(
            String::from_utf8_lossy(&r.body).contains("[DONE]"),
            "completes normally from the upstream"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cold_start_charges_the_first_request_and_those_during_the_load() {
    let (_sim, proxy) = setup().await;
    let c = http1_client();
    let r = || {
        let mut r = get(proxy.url("/v1/models"));
        r.headers_mut().insert("x-case", "cold".parse().unwrap());
        r
    };
    let t0 = Instant::now();
    let first = tokio::spawn({
        let (c, r) = (c.clone(), r());
        async move { (send(&c, r).await.unwrap().status, Instant::now()) }
    });
    tokio::time::sleep(Duration::from_millis(100)).await;
    let during = tokio::spawn({
        let (c, r) = (c.clone(), r());
        async move { (send(&c, r).await.unwrap().status, Instant::now()) }
    });
    let (s1, t1) = first.await.unwrap();
    let (s2, t2) = during.await.unwrap();
    assert_eq!((s1.as_u16(), s2.as_u16()), (200, 200));
    assert!(
        t1 - t0 >= Duration::from_millis(400),
        "the first pays the load"
    );
    assert!(
        t2 - t0 >= Duration::from_millis(400),
        "one arriving during the load waits for it too"
    );
    assert!(
        t2 - t0 < Duration::from_millis(750),
        "...but for the same load, not a second one"
    );
    // Warm now: no delay.
    let t3 = Instant::now();
    assert_eq!(send(&c, r()).await.unwrap().status, 200);
    assert!(t3.elapsed() < Duration::from_millis(300));
    let recs = proxy.wait_records(3).await;
    let cold = recs
        .iter()
        .filter(|r| r["faults"].as_array().is_some_and(|f| !f.is_empty()))
        .count();
    assert_eq!(
        cold, 2,
        "only the requests that waited record the fault: {recs:?}"
    );
}
