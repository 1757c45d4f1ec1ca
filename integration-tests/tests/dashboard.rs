//! The live dashboard in a real browser (docs/admin.md, "The dashboard"):
//! headless Chromium (Debian's `chromium` package), driven over the Chrome DevTools
//! Protocol. The page loads without console errors or exceptions (its strict
//! Content-Security-Policy included: uPlot is served by the admin server), its
//! uPlot charts update under traffic, and clicking the kill switch turns faults
//! off, as the admin API confirms.
//!
//! With `BROWNOUT_SCREENSHOT=1` the test runs a longer game day (traffic through
//! three phases) and saves the page as `docs/dashboard.png`.
//!
//! The browser and DevTools client are `brownout_integration_tests::browser`.

use std::sync::Arc;
use std::time::Duration;

use brownout_faults::ApiKind;
use brownout_integration_tests::browser::{launch, Cdp};
use brownout_integration_tests::*;
use serde_json::{json, Value};
use tokio::time::Instant;

const TOKEN: &str = "dashboard-test-token";

const PROFILE: &str = r#"
version: 1
name: game-day
description: baseline, then a storm of slow and failing answers, then recovery
phases:
  - name: baseline
    duration: 10s
  - name: storm
    duration: 20s
    rules:
      - name: slow
        match: {endpoint: chat}
        probability: 0.5
        faults: [{type: delay, duration: 150ms}]
      - name: throttle
        match: {endpoint: chat}
        probability: 0.2
        faults: [{type: error, preset: openai.rate_limit_requests}]
  - name: recovery
    duration: 30s
"#;

// ---------------------------------------------------------------------------
// Traffic
// ---------------------------------------------------------------------------

/// Send chat completions (half of them streamed) until `stop` flips.
fn traffic(proxy: &TestProxy, rps: u32, stop: Arc<std::sync::atomic::AtomicBool>) {
    let url = proxy.url("/v1/chat/completions");
    tokio::spawn(async move {
        let c = http1_client();
        let mut i = 0u64;
        let every = Duration::from_secs_f64(1.0 / rps as f64);
        while !stop.load(std::sync::atomic::Ordering::Relaxed) {
            let (c, url) = (c.clone(), url.clone());
            let stream = i.is_multiple_of(2);
            tokio::spawn(async move {
                let req = post_json(
                    url,
                    &json!({
                        "model": "gpt-4o-mini", "stream": stream, "max_tokens": 12,
                        "messages": [{"role": "user", "content": "status report, please"}],
                    }),
                );
                let _ = send(&c, req).await;
            });
            i += 1;
            tokio::time::sleep(every).await;
        }
    });
}

async fn admin_status(proxy: &TestProxy) -> Value {
    let r = send(
        &http1_client(),
        http::Request::get(proxy.admin_url("/api/v1/status"))
            .header("authorization", format!("Bearer {TOKEN}"))
            .body(empty())
            .unwrap(),
    )
    .await
    .unwrap();
    assert_eq!(r.status, 200);
    r.json()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dashboard_loads_updates_and_kills_faults_in_chromium() {
    let screenshot = std::env::var("BROWNOUT_SCREENSHOT").is_ok_and(|v| v == "1");
    let browser = launch().await;
    let sim = brownout_sim::spawn(
        "127.0.0.1:0".parse().unwrap(),
        brownout_sim::SimConfig {
            ttft: Duration::from_millis(40),
            itl: Duration::from_millis(8),
            jitter: 0.3,
            ..Default::default()
        },
    )
    .await
    .unwrap();
    let proxy = ProxyBuilder::new(format!("http://{}", sim.addr))
        .api(ApiKind::Openai)
        .admin_token(TOKEN)
        .profile(PROFILE)
        .start()
        .await;

    let cdp = Cdp::connect(&browser.page_ws().await).await;
    cdp.call("Runtime.enable", json!({})).await;
    cdp.call("Log.enable", json!({})).await;
    cdp.call("Page.enable", json!({})).await;
    cdp.call(
        "Emulation.setDeviceMetricsOverride",
        json!({"width": 1440, "height": 1200, "deviceScaleFactor": 1, "mobile": false}),
    )
    .await;

    // Without the token: the sign-in page, not the dashboard.
    cdp.call("Page.navigate", json!({"url": proxy.admin_url("/")}))
        .await;
    cdp.wait_for(
        "document.readyState === 'complete' && !!document.querySelector('input[name=token]')",
        Duration::from_secs(10),
    )
    .await;
    assert_eq!(cdp.eval("typeof window.__brownout").await, "undefined");
    // The 401 of the sign-in page is logged by the browser as a failed load; that
    // one is expected. Start counting problems from the dashboard on.
    cdp.events.lock().unwrap().clear();

    // Sign in through the form, as a person would.
    cdp.eval(&format!(
        "document.querySelector('input[name=token]').value = '{TOKEN}'; \
         document.querySelector('form').submit(); true"
    ))
    .await;
    cdp.wait_for(
        "!!window.__brownout && window.__brownout.polls > 0",
        Duration::from_secs(15),
    )
    .await;
    assert_eq!(
        cdp.eval("location.pathname + location.search").await,
        "/",
        "the token does not stay in the address bar"
    );
    assert_eq!(
        cdp.eval("document.cookie").await,
        "",
        "the session cookie is HttpOnly"
    );
    assert_eq!(
        cdp.eval("document.querySelector('#profile-name').textContent")
            .await,
        "game-day"
    );
    assert_eq!(
        cdp.eval("document.querySelectorAll('#timeline .band').length")
            .await,
        3
    );
    assert_eq!(
        cdp.eval("document.querySelector('#kill-label').textContent")
            .await,
        "KILL SWITCH"
    );

    // Traffic moves the charts.
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    traffic(&proxy, 20, stop.clone());
    let draws_before = cdp.eval("window.__brownout.draws").await.as_u64().unwrap();
    cdp.wait_for(
        "window.__brownout.samples >= 2 && window.__brownout.points.some(p => p.rps > 0 && p.e2e_ms.p50 !== null && p.ttft_ms.p50 !== null)",
        Duration::from_secs(15),
    )
    .await;
    let draws_after = cdp.eval("window.__brownout.draws").await.as_u64().unwrap();
    assert!(draws_after > draws_before, "the charts were not redrawn");
    cdp.wait_for(
        "document.querySelectorAll('#recent tbody tr').length >= 5 && /\\d/.test(document.querySelector('#t-rps').textContent)",
        Duration::from_secs(5),
    )
    .await;
    // The four strip charts are uPlot's (the vendored copy the admin server
    // serves), and each drew pixels on its canvas.
    assert_eq!(cdp.eval("typeof uPlot").await, "function");
    assert_eq!(
        cdp.eval("document.querySelectorAll('.charts .plot > .uplot').length")
            .await,
        4
    );
    for id in ["latency", "ttft", "errors", "rps"] {
        assert_eq!(
            cdp.eval(&format!(
                "(() => {{ const c = document.querySelector('#chart-{id} canvas'); \
                 const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data; \
                 let n = 0; for (let i = 3; i < d.length; i += 4) if (d[i] > 0) n++; return n > 500; }})()"
            ))
            .await,
            true,
            "#chart-{id} drew nothing"
        );
    }
    // The legend names the series, with the latest values.
    let legend = cdp
        .eval("document.querySelector('#chart-latency .u-legend').textContent")
        .await;
    let legend = legend.as_str().unwrap_or_default();
    assert!(
        legend.contains("p50") && legend.contains("p95") && legend.contains("p99"),
        "{legend}"
    );

    if screenshot {
        // A game day in miniature: baseline → storm → recovery, with traffic.
        tokio::time::sleep(Duration::from_secs(8)).await;
        let (st, _) = post_phase(&proxy, "storm").await;
        assert_eq!(st, 200);
        tokio::time::sleep(Duration::from_secs(25)).await;
        let (st, _) = post_phase(&proxy, "recovery").await;
        assert_eq!(st, 200);
        tokio::time::sleep(Duration::from_secs(12)).await;
        let (st, _) = post_phase(&proxy, "storm").await;
        assert_eq!(st, 200);
        tokio::time::sleep(Duration::from_secs(6)).await;
        let png = cdp.screenshot().await;
        let path = repo_root().join("docs/dashboard.png");
        std::fs::write(&path, png).expect("write docs/dashboard.png");
        eprintln!("wrote {}", path.display());
    }

    // The kill switch, clicked as a person would.
    assert_eq!(admin_status(&proxy).await["faults_enabled"], true);
    let t = Instant::now();
    cdp.eval("document.querySelector('#kill').click(); true")
        .await;
    loop {
        if admin_status(&proxy).await["faults_enabled"] == false {
            break;
        }
        assert!(
            t.elapsed() < Duration::from_secs(2),
            "the kill switch did not turn faults off"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(!proxy.shared().release.faults_enabled());
    cdp.wait_for(
        "document.querySelector('#kill-label').textContent === 'FAULTS OFF' && !document.querySelector('#banner').hidden",
        Duration::from_secs(5),
    )
    .await;
    // And on again.
    cdp.eval("document.querySelector('#kill').click(); true")
        .await;
    let t = Instant::now();
    while admin_status(&proxy).await["faults_enabled"] != true {
        assert!(
            t.elapsed() < Duration::from_secs(2),
            "faults did not come back on"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Jump phases from the page.
    cdp.eval("document.querySelector('#next-phase').click(); true")
        .await;
    let t = Instant::now();
    while admin_status(&proxy).await["phase"] == "baseline" {
        assert!(
            t.elapsed() < Duration::from_secs(2),
            "next phase did nothing"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    tokio::time::sleep(Duration::from_millis(1500)).await;

    // Nothing secret on the page, and no errors in the console.
    let html = cdp
        .eval("document.documentElement.outerHTML")
        .await
        .as_str()
        .unwrap()
        .to_string();
    assert!(
        !html.contains(TOKEN),
        "the token must never appear on the page"
    );
    let problems = cdp.problems();
    assert!(
        problems.is_empty(),
        "console errors or exceptions: {problems:#?}"
    );
}

async fn post_phase(proxy: &TestProxy, name: &str) -> (http::StatusCode, String) {
    let r = send(
        &http1_client(),
        http::Request::post(proxy.admin_url("/api/v1/phase"))
            .header("authorization", format!("Bearer {TOKEN}"))
            .body(full(json!({"name": name}).to_string()))
            .unwrap(),
    )
    .await
    .unwrap();
    (r.status, String::from_utf8_lossy(&r.body).into_owned())
}
