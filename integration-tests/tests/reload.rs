//! Hot reload (docs/profiles.md and docs/admin.md, "PUT /api/v1/profile"): the profile's directory is watched, so an
//! in-place write and an editor-style rename both apply within seconds, without
//! dropping open connections; an invalid change is rejected, reported on the admin
//! API, and the last good profile stays in force.

use std::time::Duration;

use brownout_integration_tests::*;
use http::Request;
use tokio::time::Instant;

fn profile(status: u16) -> String {
    format!(
        r#"
version: 1
name: reloadable-{status}
rules:
  - name: answer
    match: {{path: /x}}
    faults: [{{type: error, status: {status}}}]
"#
    )
}

type Conn = hyper::client::conn::http1::SendRequest<Body>;

async fn status_on(conn: &mut Conn) -> u16 {
    conn.ready()
        .await
        .expect("the keep-alive connection is still open");
    let req = Request::get("/x")
        .header("host", "proxy")
        .body(empty())
        .unwrap();
    let r = read_reply(
        conn.send_request(req)
            .await
            .expect("response on the kept-alive connection"),
    )
    .await
    .unwrap();
    r.status.as_u16()
}

async fn wait_for_status(conn: &mut Conn, want: u16, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(8);
    loop {
        let got = status_on(conn).await;
        if got == want {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{what}: still answering {got}, expected {want}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn file_changes_apply_and_bad_ones_are_rejected() {
    let up = Upstream::start(|_req| async { reply(200, "ok") }).await;
    let dir = TempDir::new();
    let path = dir.join("profile.yaml");
    std::fs::write(&path, profile(418)).unwrap();
    let proxy = ProxyBuilder::new(up.url())
        .admin()
        .profile_file(&path)
        .start()
        .await;
    let (mut conn, task) = h1_conn(proxy.addr).await;
    assert_eq!(status_on(&mut conn).await, 418);

    // In-place write.
    std::fs::write(&path, profile(429)).unwrap();
    wait_for_status(&mut conn, 429, "in-place write").await;

    // Editor-style save: write a temporary file, rename it over the profile.
    let tmp = dir.join("profile.yaml.tmp");
    std::fs::write(&tmp, profile(503)).unwrap();
    std::fs::rename(&tmp, &path).unwrap();
    wait_for_status(&mut conn, 503, "rename-style save").await;

    let status = |body: String| serde_json::from_str::<serde_json::Value>(&body).unwrap();
    let (_, s) = proxy.admin_get("/api/v1/status").await;
    let s = status(s);
    assert_eq!(s["profile"], "reloadable-503");
    assert_eq!(s["source"], "file");
    assert!(s["last_reload_error"].is_null(), "{s:#}");

    // An invalid change (a typo in a fault type) is rejected; the last good profile stays.
    let bad = profile(500).replace("type: error", "type: eror");
    let tmp = dir.join("profile.yaml.tmp");
    std::fs::write(&tmp, &bad).unwrap();
    std::fs::rename(&tmp, &path).unwrap();
    let deadline = Instant::now() + Duration::from_secs(8);
    let err = loop {
        let (_, s) = proxy.admin_get("/api/v1/status").await;
        let s = status(s);
        if let Some(e) = s["last_reload_error"].as_str() {
            break e.to_string();
        }
        assert!(
            Instant::now() < deadline,
            "the invalid change was never reported: {s:#}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(
        err.contains("profile.yaml:"),
        "the error names the file: {err}"
    );
    assert!(err.contains("eror"), "the error names the bad value: {err}");
    for _ in 0..5 {
        assert_eq!(
            status_on(&mut conn).await,
            503,
            "the previous profile must stay in force"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let (_, s) = proxy.admin_get("/api/v1/status").await;
    assert_eq!(status(s)["profile"], "reloadable-503");

    // A good change after a bad one applies and clears the error.
    std::fs::write(&path, profile(451)).unwrap();
    wait_for_status(&mut conn, 451, "fix after a bad change").await;
    let (_, s) = proxy.admin_get("/api/v1/status").await;
    assert!(status(s)["last_reload_error"].is_null());

    assert!(
        !task.is_finished(),
        "the client's keep-alive connection was dropped by a reload"
    );
    assert_eq!(up.requests(), 0);
}

fn limited(other_status: u16) -> String {
    format!(
        r#"
version: 1
name: limited-{other_status}
rules:
  - name: one-slot
    match: {{path: "/slow*"}}
    faults: [{{type: concurrency_limit, max: 1}}]
  - name: other
    match: {{path: /x}}
    faults: [{{type: error, status: {other_status}}}]
"#
    )
}

/// docs/profiles.md and docs/admin.md, "PUT /api/v1/profile": rule state carries over by name while that rule's
/// parameters are unchanged, and the last write wins between file and API.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unchanged_rules_keep_their_state_across_reloads() {
    let (gate, gate_rx) = tokio::sync::watch::channel(false);
    let up = Upstream::start(move |req| {
        let mut rx = gate_rx.clone();
        async move {
            if req.uri().path().starts_with("/slow") {
                let _ = rx.wait_for(|open| *open).await;
            }
            reply(200, "ok")
        }
    })
    .await;
    let dir = TempDir::new();
    let path = dir.join("profile.yaml");
    std::fs::write(&path, limited(418)).unwrap();
    let proxy = ProxyBuilder::new(up.url())
        .admin()
        .profile_file(&path)
        .start()
        .await;
    let c = http1_client();
    // A holds the rule's only slot.
    let (ca, url) = (c.clone(), proxy.url("/slow-a"));
    let a = tokio::spawn(async move { send(&ca, get(url)).await });
    let deadline = Instant::now() + Duration::from_secs(5);
    while up.requests() < 1 {
        assert!(Instant::now() < deadline, "A never reached the upstream");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }

    // Reload through the API with only the other rule changed.
    let put = Request::put(proxy.admin_url("/api/v1/profile"))
        .header("content-type", "application/yaml")
        .body(full(limited(429)))
        .unwrap();
    let r = send(&c, put).await.unwrap();
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    assert_eq!(
        send(&c, get(proxy.url("/x"))).await.unwrap().status,
        429,
        "the change applied"
    );
    let (_, s) = proxy.admin_get("/api/v1/status").await;
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&s).unwrap()["source"],
        "api"
    );
    // The limiter is the same one: its slot is still taken by A.
    let r = send(&c, get(proxy.url("/slow-b"))).await.unwrap();
    assert_eq!(r.status, 503, "the unchanged rule lost its state on reload");
    assert_eq!(r.header("x-brownout-limit"), Some("queue_full"));

    // The file wins again when it is written last (the one-slot rule still unchanged).
    std::fs::write(&path, limited(451)).unwrap();
    let deadline = Instant::now() + Duration::from_secs(8);
    while send(&c, get(proxy.url("/x"))).await.unwrap().status != 451 {
        assert!(
            Instant::now() < deadline,
            "the file change never applied after a PUT"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let (_, s) = proxy.admin_get("/api/v1/status").await;
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&s).unwrap()["source"],
        "file"
    );
    assert_eq!(
        send(&c, get(proxy.url("/slow-c"))).await.unwrap().status,
        503
    );

    // Changing the rule itself gives it fresh state.
    std::fs::write(&path, limited(451).replace("max: 1", "max: 2")).unwrap();
    let deadline = Instant::now() + Duration::from_secs(8);
    let (cd, url) = (c.clone(), proxy.url("/slow-d"));
    loop {
        let st = {
            let (cd, url) = (cd.clone(), url.clone());
            let t = tokio::spawn(async move { send(&cd, get(url)).await });
            tokio::time::sleep(Duration::from_millis(100)).await;
            if t.is_finished() {
                t.await.unwrap().unwrap().status.as_u16()
            } else {
                // Admitted: it waits at the gated upstream.
                break;
            }
        };
        assert_eq!(st, 503);
        assert!(
            Instant::now() < deadline,
            "the changed rule never got fresh state"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    gate.send(true).unwrap();
    assert_eq!(
        within(Duration::from_secs(5), "A", a)
            .await
            .unwrap()
            .unwrap()
            .status,
        200
    );
}
