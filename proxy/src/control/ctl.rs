//! `brownout ctl`: drive a running proxy through its admin API.
//!
//! Game days need a hand on the wheel from a terminal: status, apply a profile,
//! the kill switch, and phase changes, with the token from `BROWNOUT_ADMIN_TOKEN`.
//! Output is for people by default and JSON with `--json`. `health` exists for
//! container health checks: slim runtime images have no curl, so the binary
//! checks its own `/healthz` (exit 0 when it answers 200).

use bytes::Bytes;
use http::{Method, Request};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;

/// What to ask the admin API.
#[derive(Debug, Clone)]
pub enum CtlCommand {
    /// `GET /healthz` (no token needed): for Docker's HEALTHCHECK and probes.
    Health,
    Status,
    Apply(std::path::PathBuf),
    Faults(bool),
    Phase(String),
    /// `POST /api/v1/phase` with `hold` (and `reset`): hold a phase (`Some(name)`)
    /// with its ramps at their end, or release a hold (`None`); `reset` first drops
    /// every rule's state (schedules, limiters, GPU queues).
    Hold {
        name: Option<String>,
        reset: bool,
    },
}

/// Why a ctl call failed.
#[derive(Debug, thiserror::Error)]
pub enum CtlError {
    #[error("admin address `{0}`: expected http://HOST:PORT")]
    BadAddress(String),
    #[error("cannot read {path}: {source}")]
    Read {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot reach the admin API at {url}: {message} (is `brownout serve` running, and is --admin right?)")]
    Unreachable { url: String, message: String },
    #[error("the admin API answered {status}: {body}")]
    Refused { status: u16, body: String },
}

/// How long one admin call may take before ctl gives up.
const CALL_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// `http://HOST:PORT` for an admin address given with or without a scheme.
pub fn base_url(admin: &str) -> String {
    if admin.starts_with("http://") || admin.starts_with("https://") {
        admin.trim_end_matches('/').to_string()
    } else {
        format!("http://{}", admin.trim_end_matches('/'))
    }
}

/// One admin call: the status, headers and body of its answer.
async fn call(
    base: &str,
    token: Option<&str>,
    method: Method,
    path: &str,
    body: Bytes,
) -> Result<(http::StatusCode, http::HeaderMap, Bytes), CtlError> {
    let url = format!("{base}{path}");
    let mut req = Request::builder().method(method).uri(&url);
    if let Some(t) = token {
        req = req.header(http::header::AUTHORIZATION, format!("Bearer {t}"));
    }
    let req = req
        .body(Full::new(body))
        .map_err(|_| CtlError::BadAddress(base.to_string()))?;
    let client: Client<_, Full<Bytes>> = Client::builder(TokioExecutor::new()).build_http();
    // A health check must answer, not hang: orchestrators count a stuck probe
    // against the container only after their own, longer timeout.
    let resp = tokio::time::timeout(CALL_TIMEOUT, client.request(req))
        .await
        .map_err(|_| CtlError::Unreachable {
            url: url.clone(),
            message: format!("no answer within {CALL_TIMEOUT:?}"),
        })?
        .map_err(|e| CtlError::Unreachable {
            url: url.clone(),
            message: crate::error::chain(&e),
        })?;
    let (parts, body) = resp.into_parts();
    let bytes = body
        .collect()
        .await
        .map_err(|e| CtlError::Unreachable {
            url: url.clone(),
            message: e.to_string(),
        })?
        .to_bytes();
    Ok((parts.status, parts.headers, bytes))
}

/// Records a running proxy wrote after `cursor` (`None`: from now on), as JSON
/// values, with the cursor to ask with next and how many records the proxy no
/// longer held (the copy is then incomplete): a drill against a running proxy
/// counts its faults from these.
pub async fn records_after(
    admin: &str,
    token: Option<&str>,
    cursor: Option<u64>,
) -> Result<(Vec<serde_json::Value>, u64, u64), CtlError> {
    let after = cursor.map_or("now".to_owned(), |c| c.to_string());
    let path = format!("/api/v1/records?after={after}&limit=1000");
    let (status, headers, bytes) =
        call(&base_url(admin), token, Method::GET, &path, Bytes::new()).await?;
    let text = String::from_utf8_lossy(&bytes);
    if !status.is_success() {
        return Err(CtlError::Refused {
            status: status.as_u16(),
            body: pretty_error(&text),
        });
    }
    let number = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok())
    };
    let (Some(next), Some(missed)) = (number("x-brownout-cursor"), number("x-brownout-missed"))
    else {
        return Err(CtlError::Refused {
            status: status.as_u16(),
            body: "the proxy does not page its records (an older brownout?)".into(),
        });
    };
    let recs: Vec<serde_json::Value> =
        serde_json::from_str(&text).map_err(|e| CtlError::Refused {
            status: status.as_u16(),
            body: format!("records are not a JSON array: {e}"),
        })?;
    Ok((recs, next, missed))
}

/// Run one command; returns the text to print.
pub async fn run(
    admin: &str,
    token: Option<&str>,
    cmd: &CtlCommand,
    as_json: bool,
) -> Result<String, CtlError> {
    let base = base_url(admin);
    let (method, path, body) = match cmd {
        CtlCommand::Health => (Method::GET, "/healthz", Bytes::new()),
        CtlCommand::Status => (Method::GET, "/api/v1/status", Bytes::new()),
        CtlCommand::Apply(file) => {
            let text = std::fs::read(file).map_err(|e| CtlError::Read {
                path: file.display().to_string(),
                source: e,
            })?;
            (Method::PUT, "/api/v1/profile", Bytes::from(text))
        }
        CtlCommand::Faults(on) => (
            Method::POST,
            if *on {
                "/api/v1/faults/on"
            } else {
                "/api/v1/faults/off"
            },
            Bytes::new(),
        ),
        CtlCommand::Phase(name) => {
            let v = if name == "next" {
                serde_json::json!({"next": true})
            } else {
                serde_json::json!({"name": name})
            };
            (Method::POST, "/api/v1/phase", Bytes::from(v.to_string()))
        }
        CtlCommand::Hold { name, reset } => {
            let v = match name {
                Some(n) => serde_json::json!({"name": n, "hold": true, "reset": reset}),
                None => serde_json::json!({"hold": false}),
            };
            (Method::POST, "/api/v1/phase", Bytes::from(v.to_string()))
        }
    };
    let (status, _, bytes) = call(&base, token, method, path, body).await?;
    let text = String::from_utf8_lossy(&bytes).to_string();
    if !status.is_success() {
        let file = match cmd {
            CtlCommand::Apply(f) => f.display().to_string(),
            _ => "<profile>".to_owned(),
        };
        return Err(CtlError::Refused {
            status: status.as_u16(),
            body: pretty_error_in(&text, &file),
        });
    }
    if let CtlCommand::Health = cmd {
        return Ok(if as_json {
            serde_json::json!({"healthy": true}).to_string()
        } else {
            "healthy".into()
        });
    }
    if as_json {
        return Ok(text);
    }
    let v: serde_json::Value =
        serde_json::from_str(&text).unwrap_or(serde_json::Value::String(text));
    Ok(match cmd {
        CtlCommand::Faults(on) => format!(
            "faults {}",
            if *on {
                "on"
            } else {
                "off: every held request released"
            }
        ),
        _ => human_status(&v),
    })
}

/// The admin API's error body for people; profile errors are placed in `file`
/// (the file `ctl apply` sent, else `<profile>`).
fn pretty_error(body: &str) -> String {
    pretty_error_in(body, "<profile>")
}

fn pretty_error_in(body: &str, file: &str) -> String {
    match serde_json::from_str::<serde_json::Value>(body) {
        Ok(v) => {
            let mut s = v["error"].as_str().unwrap_or(body).to_string();
            if let Some(phases) = v["phases"].as_array() {
                let names: Vec<&str> = phases.iter().filter_map(|p| p.as_str()).collect();
                s.push_str(&if names.is_empty() {
                    "; the profile has no phases".to_owned()
                } else {
                    format!("; the profile's phases: {}, or `next`", names.join(", "))
                });
            }
            if let Some(errs) = v["errors"].as_array() {
                for e in errs {
                    s.push_str(&format!(
                        "\n  {file}:{}:{}: {}",
                        e["line"],
                        e["column"],
                        e["message"].as_str().unwrap_or_default()
                    ));
                    if let Some(h) = e["hint"].as_str() {
                        s.push_str(&format!("\n    hint: {h}"));
                    }
                }
            }
            s
        }
        Err(_) => body.to_string(),
    }
}

/// Status in a few readable lines.
pub fn human_status(v: &serde_json::Value) -> String {
    let mut out = String::new();
    let s = |k: &str| {
        v[k].as_str()
            .map(str::to_string)
            .unwrap_or_else(|| "-".into())
    };
    out.push_str(&format!(
        "profile   {} (source: {})\n",
        s("profile"),
        s("source")
    ));
    match v["phase"].as_str() {
        Some(p) if v["held"].as_bool() == Some(true) => {
            out.push_str(&format!("phase     {p} (held, ramps at their end)\n"))
        }
        Some(p) => out.push_str(&format!(
            "phase     {p} ({:.1}s in)\n",
            v["time_in_phase_s"].as_f64().unwrap_or(0.0)
        )),
        None => out.push_str("phase     -\n"),
    }
    if let Some(phases) = v["phases"].as_array() {
        let names: Vec<String> = phases
            .iter()
            .map(|p| {
                format!(
                    "{} ({}s)",
                    p["name"].as_str().unwrap_or("?"),
                    p["duration_s"].as_f64().unwrap_or(0.0)
                )
            })
            .collect();
        if !names.is_empty() {
            out.push_str(&format!("timeline  {}\n", names.join(" → ")));
        }
    }
    let on = v["faults_enabled"].as_bool().unwrap_or(false);
    out.push_str(&format!(
        "faults    {}\n",
        if on { "on" } else { "OFF (kill switch)" }
    ));
    out.push_str(&format!("seed      {}\n", v["seed"]));
    out.push_str(&format!(
        "records   {} written, {} dropped\n",
        v["records"]["submitted"], v["records"]["dropped"]
    ));
    if let Some(e) = v["last_reload_error"].as_str() {
        out.push_str(&format!("last reload error:\n{e}\n"));
    }
    out
}
