//! Hot reload (DESIGN §4 "Hot reload"): the profile's directory is watched, so an
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
