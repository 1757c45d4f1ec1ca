//! The Dockerfile's commands, run without Docker (no engine runs in CI): the
//! container's environment (`ENV`), its `ENTRYPOINT` + `CMD`, and its
//! `HEALTHCHECK` command, read from the Dockerfile itself and run with the binary
//! under test in place of `/usr/local/bin/brownout`. Ports are moved to free ones;
//! addresses stay as the Dockerfile sets them (0.0.0.0 for the proxy).
//!
//! Also the sidecar's admin rule: `BROWNOUT_ADMIN=0.0.0.0:...` without
//! `BROWNOUT_ADMIN_TOKEN` refuses to start; with it, health stays token-free while
//! `ctl status` needs the token.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_brownout");
const IMAGE_BIN: &str = "/usr/local/bin/brownout";

fn dockerfile() -> String {
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("../Dockerfile");
    std::fs::read_to_string(&p).expect("read the Dockerfile")
}

/// The Dockerfile's logical lines (continuations joined), comments dropped.
fn instructions(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    for line in text.lines() {
        let t = line.trim();
        if t.starts_with('#') || (t.is_empty() && cur.is_empty()) {
            continue;
        }
        match t.strip_suffix('\\') {
            Some(part) => {
                cur.push_str(part);
                cur.push(' ');
            }
            None => {
                cur.push_str(t);
                out.push(std::mem::take(&mut cur));
            }
        }
    }
    out
}

/// A JSON-array (exec form) argument list.
fn exec_form(s: &str) -> Vec<String> {
    let v: Vec<String> = serde_json::from_str(s.trim()).expect("exec form: a JSON array");
    v.into_iter()
        .map(|a| if a == IMAGE_BIN { BIN.to_string() } else { a })
        .collect()
}

/// What the runtime stage declares.
struct Image {
    env: Vec<(String, String)>,
    entrypoint: Vec<String>,
    cmd: Vec<String>,
    healthcheck: Vec<String>,
}

fn image() -> Image {
    let all = instructions(&dockerfile());
    // The runtime stage: everything after the last FROM.
    let last_from = all
        .iter()
        .rposition(|l| l.starts_with("FROM "))
        .expect("a FROM");
    let mut img = Image {
        env: Vec::new(),
        entrypoint: Vec::new(),
        cmd: Vec::new(),
        healthcheck: Vec::new(),
    };
    for l in &all[last_from..] {
        if let Some(rest) = l.strip_prefix("ENV ") {
            for kv in rest.split_whitespace() {
                let (k, v) = kv.split_once('=').expect("ENV KEY=VALUE");
                img.env.push((k.to_string(), v.to_string()));
            }
        } else if let Some(rest) = l.strip_prefix("ENTRYPOINT ") {
            img.entrypoint = exec_form(rest);
        } else if let Some(rest) = l.strip_prefix("CMD ") {
            img.cmd = exec_form(rest);
        } else if let Some(rest) = l.strip_prefix("HEALTHCHECK ") {
            let at = rest.find("CMD ").expect("HEALTHCHECK ... CMD");
            img.healthcheck = exec_form(&rest[at + 4..]);
        }
    }
    img
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// `host:port` with the port replaced.
fn with_port(addr: &str, port: u16) -> String {
    let host = addr.rsplit_once(':').map_or(addr, |(h, _)| h);
    format!("{host}:{port}")
}

struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn spawn(args: &[String], env: &[(String, String)]) -> Proc {
    Proc(
        Command::new(&args[0])
            .args(&args[1..])
            .env_clear()
            .envs(env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start the binary"),
    )
}

fn run(args: &[String], env: &[(String, String)]) -> Output {
    Command::new(&args[0])
        .args(&args[1..])
        .env_clear()
        .envs(env.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::null())
        .output()
        .expect("run the binary")
}

/// Retry `f` for up to 15 s.
fn eventually(what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(15);
    while !f() {
        assert!(Instant::now() < deadline, "{what}: not within 15 s");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A minimal HTTP/1.1 POST on loopback; returns the status line and body.
fn post(port: u16, path: &str, body: &str) -> Option<(String, String)> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
    write!(
        s,
        "POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .ok()?;
    let mut out = String::new();
    s.read_to_string(&mut out).ok()?;
    let (head, body) = out.split_once("\r\n\r\n")?;
    Some((head.lines().next()?.to_string(), body.to_string()))
}

fn bin_path() -> PathBuf {
    PathBuf::from(BIN)
}

#[test]
fn the_containers_commands_serve_and_pass_their_health_check() {
    let img = image();
    assert_eq!(img.entrypoint, [BIN]);
    assert_eq!(img.cmd, ["serve"]);
    assert_eq!(img.healthcheck, [BIN, "ctl", "health"]);
    assert!(bin_path().exists());

    // The model server: `brownout sim`, as in deploy/docker-compose.yaml.
    let model_port = free_port();
    let _model = spawn(
        &[
            BIN.into(),
            "sim".into(),
            "--api".into(),
            "openai".into(),
            "--listen".into(),
            format!("127.0.0.1:{model_port}"),
        ],
        &[],
    );

    // The container's environment, ports moved to free ones, plus the sidecar's own.
    let (listen_port, admin_port) = (free_port(), free_port());
    let mut env: Vec<(String, String)> = img
        .env
        .iter()
        .map(|(k, v)| match k.as_str() {
            "BROWNOUT_LISTEN" => (k.clone(), with_port(v, listen_port)),
            "BROWNOUT_ADMIN" => (k.clone(), with_port(v, admin_port)),
            _ => (k.clone(), v.clone()),
        })
        .collect();
    let listen = &env.iter().find(|(k, _)| k == "BROWNOUT_LISTEN").unwrap().1;
    assert!(
        listen.starts_with("0.0.0.0:"),
        "inside a container: {listen}"
    );
    env.push((
        "BROWNOUT_UPSTREAM".into(),
        format!("http://127.0.0.1:{model_port}"),
    ));
    env.push(("BROWNOUT_API".into(), "openai".into()));
    let args: Vec<String> = img.entrypoint.iter().chain(&img.cmd).cloned().collect();

    // Before it runs, the health check fails.
    assert!(!run(&img.healthcheck, &env).status.success());
    let _proxy = spawn(&args, &env);
    eventually("the HEALTHCHECK passes", || {
        run(&img.healthcheck, &env).status.success()
    });
    let out = run(&img.healthcheck, &env);
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "healthy");
    // Traffic goes through to the model.
    let body =
        r#"{"model":"gpt-4o-mini","max_tokens":3,"messages":[{"role":"user","content":"hi"}]}"#;
    eventually("a chat completion through the proxy", || {
        post(listen_port, "/v1/chat/completions", body).is_some_and(|(status, body)| {
            status.contains(" 200 ") && body.contains("chat.completion")
        })
    });
}

#[test]
fn an_open_admin_needs_a_token_and_health_stays_token_free() {
    let img = image();
    let up_port = free_port();
    let (listen_port, admin_port) = (free_port(), free_port());
    let base = vec![
        (
            "BROWNOUT_LISTEN".to_string(),
            format!("127.0.0.1:{listen_port}"),
        ),
        (
            "BROWNOUT_UPSTREAM".to_string(),
            format!("http://127.0.0.1:{up_port}"),
        ),
        (
            "BROWNOUT_ADMIN".to_string(),
            format!("0.0.0.0:{admin_port}"),
        ),
    ];
    let args: Vec<String> = img.entrypoint.iter().chain(&img.cmd).cloned().collect();

    // Without a token: refused, exit code 2, a plain sentence that says what to do.
    let out = run(&args, &base);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("refusing") && err.contains("BROWNOUT_ADMIN_TOKEN"),
        "{err}"
    );

    // With one: it serves; health needs no token, status does.
    let mut env = base.clone();
    env.push(("BROWNOUT_ADMIN_TOKEN".into(), "sidecar-secret".into()));
    let _proxy = spawn(&args, &env);
    eventually("the HEALTHCHECK passes", || {
        run(&img.healthcheck, &base).status.success()
    });
    let status = |env: &[(String, String)]| {
        run(
            &[BIN.into(), "ctl".into(), "--json".into(), "status".into()],
            env,
        )
    };
    let out = status(&base);
    assert_eq!(out.status.code(), Some(1), "status without the token");
    assert!(String::from_utf8_lossy(&out.stderr).contains("401"));
    let out = status(&env);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON status");
    assert_eq!(v["faults_enabled"], true);
}
