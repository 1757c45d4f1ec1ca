//! The `brownout` binary as users run it: `validate` (exit codes, `file:line:column`
//! and hints), `explain`, and `serve` shutting down on SIGTERM without losing a
//! record (README.md "Commands", docs/records.md).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::time::Instant;

const BIN: &str = env!("CARGO_BIN_EXE_brownout");

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace root")
        .to_path_buf()
}

/// A temporary directory removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new() -> TempDir {
        static N: AtomicUsize = AtomicUsize::new(0);
        let p = std::env::temp_dir().join(format!(
            "brownout-cli-{}-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::SeqCst),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos())
        ));
        std::fs::create_dir_all(&p).expect("temp dir");
        TempDir(p)
    }

    fn join(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Run the binary with a clean environment (no `BROWNOUT_*` from the caller).
fn brownout(args: &[&str]) -> Output {
    Command::new(BIN)
        .args(args)
        .env_clear()
        .output()
        .expect("run brownout")
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

#[test]
fn validate_broken_profile_exits_2_with_position_and_hint() {
    let dir = TempDir::new();
    let path = dir.join("broken.yaml");
    std::fs::write(
        &path,
        "version: 1\nname: broken\nrules:\n  - name: r\n    faults:\n      - type: eror\n        status: 500\n",
    )
    .unwrap();
    let p = path.display().to_string();
    let out = brownout(&["validate", &p]);
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "stderr: {err}");
    // file:line:column pointing at line 6, where the bad type is.
    let prefix = format!("{p}:6:");
    let at = err
        .find(&prefix)
        .unwrap_or_else(|| panic!("no `{prefix}COLUMN` in: {err}"));
    let col: String = err[at + prefix.len()..]
        .chars()
        .take_while(|c| c.is_ascii_digit())
        .collect();
    let col: u32 = col
        .parse()
        .unwrap_or_else(|_| panic!("no column after `{prefix}`: {err}"));
    assert!(
        (7..=15).contains(&col),
        "column {col} does not point into `- type: eror`: {err}"
    );
    assert!(err.contains("hint:"), "no hint: {err}");
    assert!(
        err.contains("error"),
        "the hint should suggest `error`: {err}"
    );
    assert!(
        !err.contains("panicked") && !err.contains("RUST_BACKTRACE"),
        "{err}"
    );
    assert!(text(&out.stdout).trim().is_empty() || !text(&out.stdout).contains(": ok"));
}

#[test]
fn validate_reports_every_problem_and_any_bad_file_fails_the_run() {
    let dir = TempDir::new();
    let bad = dir.join("two-problems.yaml");
    std::fs::write(
        &bad,
        "version: 1\nname: two\nrules:\n  - name: a\n    probability: 1.5\n    faults: [{type: delay, duration: 10ms}]\n  - name: b\n    faults: [{type: error, preset: openai.nope}]\n",
    )
    .unwrap();
    let good = dir.join("good.yaml");
    std::fs::write(
        &good,
        "version: 1\nname: fine\nrules:\n  - faults: [{type: delay, duration: 10ms}]\n",
    )
    .unwrap();
    let (b, g) = (bad.display().to_string(), good.display().to_string());
    let out = brownout(&["validate", &g, &b]);
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains(&format!("{b}:5:")),
        "the probability at line 5: {err}"
    );
    assert!(
        err.contains(&format!("{b}:8:")),
        "the unknown preset at line 8: {err}"
    );
    assert!(
        text(&out.stdout).contains(&format!("{g}: ok")),
        "the good file is still reported ok"
    );
}

#[test]
fn validate_good_profiles_exit_0() {
    let dir = TempDir::new();
    let path = dir.join("good.yaml");
    std::fs::write(
        &path,
        "version: 1\nname: good\nphases:\n  - name: baseline\n    duration: 10s\n  - name: storm\n    duration: 30s\n    rules:\n      - name: throttle\n        probability: {from: 0.1, to: 0.5}\n        faults: [{type: error, preset: openai.rate_limit_requests, retry_after: 2s}]\n",
    )
    .unwrap();
    let mut args = vec!["validate".to_string(), path.display().to_string()];
    // Every profile shipped in the repository must validate too.
    let shipped = repo_root().join("profiles");
    let mut n = 0;
    for e in std::fs::read_dir(&shipped).expect("profiles/") {
        let p = e.unwrap().path();
        if p.extension().is_some_and(|x| x == "yaml") {
            args.push(p.display().to_string());
            n += 1;
        }
    }
    assert!(n > 0);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let out = brownout(&args);
    assert_eq!(out.status.code(), Some(0), "stderr: {}", text(&out.stderr));
    assert_eq!(
        text(&out.stdout).matches(": ok").count(),
        n + 1,
        "{}",
        text(&out.stdout)
    );
}

#[test]
fn explain_describes_phases_in_plain_words() {
    let dir = TempDir::new();
    let path = dir.join("p.yaml");
    std::fs::write(
        &path,
        "version: 1\nname: explained\nseed: 5\nphases:\n  - name: calm\n    duration: 10s\n  - name: storm\n    duration: 1m\n    rules:\n      - name: throttle\n        probability: 0.25\n        faults: [{type: error, preset: openai.rate_limit_requests}]\n",
    )
    .unwrap();
    let out = brownout(&["explain", &path.display().to_string()]);
    let so = text(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "stderr: {}", text(&out.stderr));
    assert!(so.contains("explained"), "{so}");
    assert!(
        so.contains("calm") && so.contains("storm"),
        "names each phase: {so}"
    );
    assert!(so.contains("throttle"), "names the rule: {so}");
    assert!(
        so.contains("25%") || so.contains("0.25"),
        "says how often: {so}"
    );

    // A built-in profile by name.
    let out = brownout(&["explain", "demo"]);
    assert_eq!(out.status.code(), Some(0), "stderr: {}", text(&out.stderr));
    assert!(!text(&out.stdout).trim().is_empty());

    // A broken one fails like validate does.
    let bad = dir.join("bad.yaml");
    std::fs::write(&bad, "version: 1\nname: x\nrulez: []\n").unwrap();
    let out = brownout(&["explain", &bad.display().to_string()]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains(&format!("{}:3:", bad.display())),
        "{}",
        text(&out.stderr)
    );
}

// ---------------------------------------------------------------------------
// SIGTERM: in-flight requests finish and every exchange is recorded.
// ---------------------------------------------------------------------------

fn free_addr() -> SocketAddr {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    l.local_addr().expect("addr")
}

/// A test upstream: `/slow` answers after 1 s; everything else at once.
async fn slow_upstream(arrived: Arc<AtomicUsize>) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((s, _)) = listener.accept().await else {
                continue;
            };
            let arrived = arrived.clone();
            tokio::spawn(async move {
                let svc =
                    hyper::service::service_fn(move |req: http::Request<hyper::body::Incoming>| {
                        let arrived = arrived.clone();
                        async move {
                            if req.uri().path() == "/slow" {
                                arrived.fetch_add(1, Ordering::SeqCst);
                                tokio::time::sleep(Duration::from_secs(1)).await;
                            }
                            Ok::<_, std::convert::Infallible>(http::Response::new(Full::new(
                                Bytes::from_static(b"done"),
                            )))
                        }
                    });
                let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(s), svc)
                    .await;
            });
        }
    });
    addr
}

struct KillOnDrop(Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        // Only our own child, by its handle.
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

async fn get_status(url: String) -> Result<u16, String> {
    let c: Client<_, Empty<Bytes>> = Client::builder(TokioExecutor::new()).build_http();
    let uri: http::Uri = url.parse().unwrap();
    let resp = c.get(uri).await.map_err(|e| e.to_string())?;
    let st = resp.status().as_u16();
    resp.into_body()
        .collect()
        .await
        .map_err(|e| e.to_string())?;
    Ok(st)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_finishes_in_flight_requests_and_loses_no_record() {
    let arrived = Arc::new(AtomicUsize::new(0));
    let upstream = slow_upstream(arrived.clone()).await;
    let dir = TempDir::new();
    let records = dir.join("records.jsonl");
    let log = dir.join("stderr.log");
    let (listen, admin) = (free_addr(), free_addr());
    let child = Command::new(BIN)
        .env_clear()
        .args(["serve", "--upstream", &format!("http://{upstream}")])
        .args([
            "--listen",
            &listen.to_string(),
            "--admin",
            &admin.to_string(),
        ])
        .arg("--record")
        .arg(&records)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .expect("spawn brownout serve");
    let pid = child.id();
    let mut child = KillOnDrop(child);
    let logs = || std::fs::read_to_string(&log).unwrap_or_default();

    // Ready once every listener is bound.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if get_status(format!("http://{admin}/readyz")).await == Ok(200) {
            break;
        }
        if let Some(st) = child.0.try_wait().unwrap() {
            panic!("brownout serve exited early ({st}): {}", logs());
        }
        assert!(
            Instant::now() < deadline,
            "brownout serve never became ready: {}",
            logs()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // N concurrent requests: some slow, some fast.
    let (slow, fast) = (6, 6);
    let client: Client<_, Empty<Bytes>> = Client::builder(TokioExecutor::new()).build_http();
    let mut tasks = Vec::new();
    for i in 0..slow + fast {
        let c = client.clone();
        let path = if i < slow { "/slow" } else { "/fast" };
        let uri: http::Uri = format!("http://{listen}{path}").parse().unwrap();
        tasks.push(tokio::spawn(async move {
            let resp = c.get(uri).await.map_err(|e| e.to_string())?;
            let st = resp.status().as_u16();
            let body = resp
                .into_body()
                .collect()
                .await
                .map_err(|e| e.to_string())?
                .to_bytes();
            Ok::<_, String>((st, body))
        }));
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    while arrived.load(Ordering::SeqCst) < slow {
        assert!(
            Instant::now() < deadline,
            "slow requests never reached the upstream: {}",
            logs()
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }

    let st = Command::new("kill")
        .arg("-TERM")
        .arg(pid.to_string())
        .status()
        .expect("run kill");
    assert!(st.success());
    let t = Instant::now();

    // Not ready from SIGTERM on.
    let deadline = Instant::now() + Duration::from_secs(2);
    loop {
        match get_status(format!("http://{admin}/readyz")).await {
            Ok(503) => break,
            Ok(200) if Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(10)).await
            }
            other => panic!("readyz after SIGTERM: {other:?}"),
        }
    }

    for (i, t) in tasks.into_iter().enumerate() {
        let (st, body) = t
            .await
            .unwrap()
            .unwrap_or_else(|e| panic!("request {i} failed during shutdown: {e}"));
        assert_eq!(st, 200, "request {i}");
        assert_eq!(body, "done");
    }
    // Exits by itself, well within shutdown_grace (10 s).
    let deadline = Instant::now() + Duration::from_secs(12);
    let status = loop {
        if let Some(st) = child.0.try_wait().unwrap() {
            break st;
        }
        assert!(
            Instant::now() < deadline,
            "brownout serve did not exit after SIGTERM: {}",
            logs()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert!(status.success(), "exit status {status}: {}", logs());
    assert!(
        t.elapsed() < Duration::from_secs(10),
        "shutdown took {:?}",
        t.elapsed()
    );

    let text = std::fs::read_to_string(&records).expect("record file");
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(
        lines.len(),
        slow + fast,
        "one record per exchange, none lost at shutdown: {text}"
    );
    let mut slow_ok = 0;
    for l in lines {
        let r: serde_json::Value = serde_json::from_str(l).expect("JSON line");
        assert_eq!(r["outcome"], "ok", "{l}");
        assert_eq!(r["status"], 200, "{l}");
        if r["path"] == "/slow" {
            slow_ok += 1;
            assert!(r["e2e_ms"].as_f64().unwrap() >= 900.0, "{l}");
        }
    }
    assert_eq!(
        slow_ok, slow,
        "every in-flight slow request completed and was recorded"
    );
}
