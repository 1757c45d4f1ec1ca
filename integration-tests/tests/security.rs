//! Security defaults (docs/configuration.md, docs/admin.md "Security"), each with a test:
//!
//! - a wrong or missing token gets 401 on every `/api/v1` call and on the
//!   dashboard, and changes nothing; the dashboard's cookie works only with the
//!   right token; `/healthz`, `/readyz` and `/metrics` stay open;
//! - the admin API binds to loopback by default and refuses to start on a
//!   non-loopback address without a token;
//! - `max_connections` is enforced: the next connection waits for a free slot;
//! - `authorization`, `x-api-key`, `api-key` and cookies never appear in records,
//!   the record file, logs, the admin API's answers or the dashboard.
//!
//! (Cross-site `Origin`, DNS rebinding and the Bearer check on mutating calls are
//! in kill_switch.rs; slow-loris and idle timeouts and the `Host` header in
//! limits.rs; header faults in faults.rs.)

use std::io::Write;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use brownout_integration_tests::*;
use http::{Method, Request, StatusCode};
use serde_json::{json, Value};
use tokio::net::TcpStream;

const TOKEN: &str = "t0ken-with/odd;chars=and more";

const PROFILE: &str = r#"
version: 1
name: guarded
phases:
  - name: calm
    duration: 60s
  - name: storm
    duration: 60s
    rules:
      - name: fail
        faults: [{type: error, preset: openai.server_error}]
"#;

async fn guarded() -> (Upstream, TestProxy) {
    let up = Upstream::start(|_req| async { reply(200, "ok") }).await;
    let proxy = ProxyBuilder::new(up.url())
        .admin_token(TOKEN)
        .profile(PROFILE)
        .start()
        .await;
    (up, proxy)
}

enum Auth<'a> {
    None,
    Bearer(&'a str),
    Cookie(&'a str),
}

async fn call(proxy: &TestProxy, method: Method, path: &str, auth: Auth<'_>, body: &str) -> Reply {
    let mut b = Request::builder().method(method).uri(proxy.admin_url(path));
    match auth {
        Auth::None => {}
        Auth::Bearer(t) => b = b.header("authorization", format!("Bearer {t}")),
        Auth::Cookie(c) => b = b.header("cookie", c),
    }
    send(&http1_client(), b.body(full(body.to_string())).unwrap())
        .await
        .expect("admin call")
}

fn hex(s: &str) -> String {
    s.bytes().map(|b| format!("{b:02x}")).collect()
}

/// Every endpoint behind the token: method, path, body.
const GUARDED: &[(&str, &str, &str)] = &[
    ("GET", "/api/v1/status", ""),
    ("GET", "/api/v1/profile", ""),
    ("PUT", "/api/v1/profile", "version: 1\nname: hijacked\n"),
    ("POST", "/api/v1/profile/reload", ""),
    ("POST", "/api/v1/faults/off", ""),
    ("POST", "/api/v1/faults/on", ""),
    ("POST", "/api/v1/phase", r#"{"name": "storm"}"#),
    ("GET", "/api/v1/records?limit=5", ""),
    ("GET", "/api/v1/summary", ""),
    ("GET", "/api/v1/live", ""),
    ("GET", "/api/v1/no-such-endpoint", ""),
    ("GET", "/", ""),
    ("GET", "/dashboard.js", ""),
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_or_missing_token_gets_401_and_changes_nothing() {
    let (_up, proxy) = guarded().await;
    let shared = proxy.shared().clone();
    let snapshot = || {
        let p = shared.profile.load();
        let phase = p
            .clock
            .at(tokio::time::Instant::now())
            .index
            .map(|i| p.phases[i].name.to_string());
        (p.name.to_string(), phase, shared.release.faults_enabled())
    };
    let before = snapshot();
    assert_eq!(before, ("guarded".into(), Some("calm".into()), true));
    // A cookie holding the token itself (not its hex form), a near miss, a
    // longer token, an empty one, the wrong scheme.
    let near = &TOKEN[..TOKEN.len() - 1];
    let longer = format!("{TOKEN}x");
    let wrong_cookie = format!("brownout_admin={}", hex(near));
    let raw_cookie = format!("brownout_admin={TOKEN}");
    let attempts: Vec<Auth<'_>> = vec![
        Auth::None,
        Auth::Bearer("wrong"),
        Auth::Bearer(near),
        Auth::Bearer(&longer),
        Auth::Bearer(""),
        Auth::Cookie(&wrong_cookie),
        Auth::Cookie(&raw_cookie),
        Auth::Cookie("brownout_admin="),
    ];
    for auth in attempts {
        for (m, path, body) in GUARDED {
            let r = call(&proxy, m.parse().unwrap(), path, clone(&auth), body).await;
            assert_eq!(
                r.status,
                StatusCode::UNAUTHORIZED,
                "{m} {path} without the right token"
            );
            let text = String::from_utf8_lossy(&r.body);
            assert!(!text.contains("guarded"), "{m} {path} leaked: {text}");
            assert!(!text.contains("calm"), "{m} {path} leaked: {text}");
            assert!(r.header("set-cookie").is_none());
        }
        assert_eq!(snapshot(), before, "a refused call changed something");
    }
    // `/?token=` with a wrong token: the sign-in page again, no cookie.
    let r = call(&proxy, Method::GET, "/?token=nope", Auth::None, "").await;
    assert_eq!(r.status, 401);
    assert!(r.header("set-cookie").is_none());
    let r = call(&proxy, Method::POST, "/login", Auth::None, "token=nope").await;
    assert_eq!(r.status, 401);
    assert!(r.header("set-cookie").is_none());
    assert_eq!(snapshot(), before);

    // The right token, by header or by the cookie the dashboard gets, works.
    let r = call(
        &proxy,
        Method::GET,
        "/api/v1/status",
        Auth::Bearer(TOKEN),
        "",
    )
    .await;
    assert_eq!(r.status, 200);
    let q = format!(
        "/?token={}",
        TOKEN
            .bytes()
            .map(|b| if b.is_ascii_alphanumeric() {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            })
            .collect::<String>()
    );
    let r = call(&proxy, Method::GET, &q, Auth::None, "").await;
    assert_eq!(r.status, 303, "{}", String::from_utf8_lossy(&r.body));
    assert_eq!(r.header("location"), Some("/"));
    let set = r
        .header("set-cookie")
        .expect("a session cookie")
        .to_string();
    for attr in ["HttpOnly", "SameSite=Strict", "Path=/"] {
        assert!(set.contains(attr), "cookie lacks {attr}: {set}");
    }
    assert!(!set.contains(TOKEN), "the cookie holds the token encoded");
    let cookie = set.split(';').next().unwrap().to_string();
    let r = call(
        &proxy,
        Method::GET,
        "/",
        Auth::Cookie(&format!("other=1; {cookie}")),
        "",
    )
    .await;
    assert_eq!(r.status, 200);
    assert!(String::from_utf8_lossy(&r.body).contains("id=\"kill\""));
    let csp = r.header("content-security-policy").unwrap_or_default();
    assert!(csp.contains("frame-ancestors 'none'"), "{csp}");
    assert_eq!(r.header("x-frame-options"), Some("DENY"));
    let r = call(
        &proxy,
        Method::POST,
        "/api/v1/faults/off",
        Auth::Cookie(&cookie),
        "",
    )
    .await;
    assert_eq!(r.status, 200);
    assert!(!proxy.shared().release.faults_enabled());
    // The form posts the token the same way.
    let r = call(
        &proxy,
        Method::POST,
        "/login",
        Auth::None,
        &format!(
            "token={}",
            TOKEN
                .replace('/', "%2F")
                .replace(';', "%3B")
                .replace('=', "%3D")
                .replace(' ', "+")
        ),
    )
    .await;
    assert_eq!(r.status, 303);
    assert_eq!(
        r.header("set-cookie")
            .map(|c| c.split(';').next().unwrap().to_string()),
        Some(cookie)
    );
}

fn clone<'a>(a: &Auth<'a>) -> Auth<'a> {
    match a {
        Auth::None => Auth::None,
        Auth::Bearer(t) => Auth::Bearer(t),
        Auth::Cookie(c) => Auth::Cookie(c),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_readiness_and_metrics_stay_open_while_the_api_and_dashboard_need_the_token() {
    let (_up, proxy) = guarded().await;
    for path in ["/healthz", "/readyz", "/metrics"] {
        let r = call(&proxy, Method::GET, path, Auth::None, "").await;
        assert_eq!(r.status, 200, "{path} stays open");
    }
    let r = call(&proxy, Method::GET, "/metrics", Auth::None, "").await;
    assert!(String::from_utf8_lossy(&r.body).contains("brownout_faults_enabled 1"));
    for path in ["/", "/api/v1/status", "/api/v1/summary"] {
        let r = call(&proxy, Method::GET, path, Auth::None, "").await;
        assert_eq!(r.status, 401, "{path} needs the token");
    }
    // The sign-in page asks for the token and shows nothing else.
    let r = call(&proxy, Method::GET, "/", Auth::None, "").await;
    let page = String::from_utf8_lossy(&r.body);
    assert!(page.contains("name=\"token\""), "{page}");
    assert!(!page.contains("guarded"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_binds_to_loopback_by_default_and_refuses_open_addresses_without_a_token() {
    assert!(
        brownout::config::FileConfig::default()
            .admin
            .listen
            .starts_with("127.0.0.1:"),
        "the default admin address is loopback"
    );
    let up = Upstream::start(|_req| async { reply(200, "ok") }).await;
    for addr in ["0.0.0.0:0", "[::]:0", "192.0.2.10:9911"] {
        let err = ProxyBuilder::new(up.url())
            .admin()
            .config(|c| c.admin.listen = addr.into())
            .try_start()
            .await
            .expect_err("a non-loopback admin without a token must not start");
        let msg = err.to_string();
        assert!(
            msg.contains("refusing") && msg.contains("token"),
            "{addr}: {msg}"
        );
    }
    // Loopback without a token is fine (v4 and v6).
    for addr in ["127.0.0.1:0", "[::1]:0"] {
        let p = ProxyBuilder::new(up.url())
            .admin()
            .config(|c| c.admin.listen = addr.into())
            .try_start()
            .await;
        if addr.starts_with('[') && p.is_err() {
            continue; // no IPv6 loopback on this machine
        }
        assert!(p.is_ok(), "{addr}: {:?}", p.err());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_connections_is_enforced() {
    let up = Upstream::start(|_req| async { reply(200, "ok") }).await;
    let proxy = ProxyBuilder::new(up.url())
        .limits(|l| {
            l.max_connections = 2;
            l.header_timeout = brownout_faults::duration::DurationStr(Duration::from_secs(30));
        })
        .start()
        .await;
    // Two connections take both slots (they send nothing).
    let a = TcpStream::connect(proxy.addr).await.unwrap();
    let b = TcpStream::connect(proxy.addr).await.unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    // A third is accepted by the kernel but not served while both are held.
    let third = tokio::spawn({
        let url = proxy.url("/third");
        async move { send(&http1_client(), get(url)).await }
    });
    tokio::time::sleep(Duration::from_millis(700)).await;
    assert!(!third.is_finished(), "a third connection was served");
    assert_eq!(up.requests(), 0);
    // One slot frees: the third is served.
    drop(a);
    let r = within(Duration::from_secs(5), "the third request", third)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(r.status, 200);
    drop(b);
}

// ---------------------------------------------------------------------------
// Secrets never leak
// ---------------------------------------------------------------------------

/// Log lines written during this test binary's run (every level, every target).
fn logs() -> Arc<Mutex<Vec<u8>>> {
    static LOGS: OnceLock<Arc<Mutex<Vec<u8>>>> = OnceLock::new();
    LOGS.get_or_init(|| {
        let buf = Arc::new(Mutex::new(Vec::new()));
        #[derive(Clone)]
        struct W(Arc<Mutex<Vec<u8>>>);
        impl Write for W {
            fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
                self.0.lock().unwrap().extend_from_slice(b);
                Ok(b.len())
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
        let w = W(buf.clone());
        let _ = tracing_subscriber::fmt()
            .with_max_level(tracing::Level::TRACE)
            .with_ansi(false)
            .with_writer(move || w.clone())
            .try_init();
        buf
    })
    .clone()
}

const SECRETS: &[(&str, &str)] = &[
    ("authorization", "Bearer sk-proj-LEAK1-must-not-appear"),
    ("x-api-key", "sk-ant-LEAK2-must-not-appear"),
    ("api-key", "azure-LEAK3-must-not-appear"),
    (
        "cookie",
        "session=LEAK4-must-not-appear; other=LEAK5-must-not-appear",
    ),
    ("proxy-authorization", "Basic LEAK6-must-not-appear"),
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secrets_never_reach_records_logs_the_api_or_the_dashboard() {
    let logs = logs();
    let up = Upstream::start(|req| async move {
        let _ = collect(req.into_body()).await;
        let mut r = reply(200, "{\"ok\": true}");
        r.headers_mut().insert(
            "set-cookie",
            "upstream-session=LEAK7-must-not-appear; HttpOnly"
                .parse()
                .unwrap(),
        );
        r
    })
    .await;
    let dir = TempDir::new();
    let file = dir.join("records.jsonl");
    let profile = r#"
version: 1
name: leaky
rules:
  - name: slow
    match: {path: /slow}
    faults: [{type: delay, duration: 10ms}]
  - name: fail
    match: {path: /fail}
    faults: [{type: error, preset: openai.rate_limit_requests}]
"#;
    let proxy = ProxyBuilder::new(up.url())
        .admin_token(TOKEN)
        .profile(profile)
        .record(&file)
        .config(|c| c.allow_header_faults = true)
        .start()
        .await;
    let c = http1_client();
    for (i, path) in [
        "/v1/chat/completions",
        "/slow",
        "/fail",
        "/v1/embeddings?key=LEAK8-must-not-appear",
    ]
    .iter()
    .enumerate()
    {
        let mut b = Request::post(proxy.url(path)).header("content-type", "application/json");
        for (k, v) in SECRETS {
            b = b.header(*k, *v);
        }
        if i == 0 {
            b = b.header("x-brownout-fault", "delay=5ms");
        }
        let r = send(
            &c,
            b.body(full(json!({"model": "m", "input": "x"}).to_string()))
                .unwrap(),
        )
        .await
        .unwrap();
        assert!(r.status == 200 || r.status == 429, "{path}: {}", r.status);
    }
    proxy.exactly_records(4).await;

    let bearer = Auth::Bearer(TOKEN);
    let mut seen = String::new();
    for path in [
        "/api/v1/records?limit=100",
        "/api/v1/summary",
        "/api/v1/live",
        "/api/v1/status",
        "/api/v1/profile",
        "/",
        "/dashboard.js",
        "/dashboard.css",
        "/metrics",
    ] {
        let r = call(&proxy, Method::GET, path, clone(&bearer), "").await;
        assert_eq!(r.status, 200, "{path}");
        seen.push_str(&String::from_utf8_lossy(&r.body));
    }
    let records: Vec<Value> = serde_json::from_str(&String::from_utf8_lossy(
        &call(
            &proxy,
            Method::GET,
            "/api/v1/records?limit=100",
            clone(&bearer),
            "",
        )
        .await
        .body,
    ))
    .unwrap();
    assert_eq!(records.len(), 4, "the records are there to look at");
    proxy.shutdown().await;
    let file_text = std::fs::read_to_string(&file).unwrap();
    assert_eq!(file_text.lines().count(), 4);
    let log_text = String::from_utf8_lossy(&logs.lock().unwrap()).into_owned();
    assert!(!log_text.is_empty(), "the logs were captured");
    for (what, text) in [
        ("API and dashboard", &seen),
        ("record file", &file_text),
        ("logs", &log_text),
    ] {
        for n in 1..=8 {
            let needle = format!("LEAK{n}");
            assert!(!text.contains(&needle), "{needle} appeared in the {what}");
        }
        assert!(
            !text.contains(TOKEN),
            "the admin token appeared in the {what}"
        );
    }
}
