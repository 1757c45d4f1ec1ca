//! The admin API (docs/admin.md): health, readiness, metrics, the kill switch, status,
//! per-phase summary, and the live dashboard at `/`.
//!
//! `/healthz`, `/readyz` and `/metrics` stay open for orchestrators and Prometheus;
//! with a token configured every `/api/v1` call and the dashboard need
//! `Authorization: Bearer` or the dashboard's cookie, compared in constant time.
//! Mutating calls reject cross-site `Origin`s so a web page cannot drive a loopback
//! admin. The dashboard's assets are compiled into the binary: a sidecar with no
//! way out to the internet still shows it, and nothing is fetched from elsewhere.

use std::convert::Infallible;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpListener;
use tokio::time::Instant;

use crate::control::state::Shared;
use crate::record::metrics::{Gauges, GpuGauge};

/// Accept admin connections until stopped.
pub(crate) async fn serve(
    listener: TcpListener,
    shared: Arc<Shared>,
    token: Option<String>,
    mut stop: crate::control::shutdown::StopRx,
) {
    let token: Option<Arc<str>> = token.map(Arc::from);
    loop {
        let (stream, _) = tokio::select! {
            r = listener.accept() => match r { Ok(x) => x, Err(_) => continue },
            // Keep answering /readyz (503) during a graceful stop; end only on abort.
            r = stop.changed() => { if r.is_err() || *stop.borrow() == crate::control::shutdown::Shutdown::Abort { return } else { continue } }
        };
        let (shared, token) = (shared.clone(), token.clone());
        tokio::spawn(async move {
            let svc = hyper::service::service_fn(move |req| {
                let (shared, token) = (shared.clone(), token.clone());
                async move { Ok::<_, Infallible>(route(req, &shared, token.as_deref()).await) }
            });
            let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                .serve_connection(TokioIo::new(stream), svc)
                .await;
        });
    }
}

fn text(status: StatusCode, body: impl Into<Bytes>, ctype: &'static str) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(body.into()));
    *r.status_mut() = status;
    r.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static(ctype),
    );
    r
}

fn json(status: StatusCode, v: serde_json::Value) -> Response<Full<Bytes>> {
    text(status, v.to_string(), "application/json")
}

/// Constant-time comparison, so response timing leaks nothing about the token.
pub fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    let mut diff = (a.len() ^ b.len()) as u8;
    for i in 0..a.len().max(b.len()) {
        let x = a.get(i).copied().unwrap_or(0);
        let y = b.get(i).copied().unwrap_or(0xff);
        diff |= x ^ y;
    }
    diff == 0
}

/// The dashboard's session cookie. It holds the token hex-encoded (cookie values
/// cannot carry every byte a token may have); `HttpOnly` keeps it from scripts and
/// `SameSite=Strict` keeps browsers from sending it with cross-site requests.
const COOKIE: &str = "brownout_admin";

/// How long `GET /api/v1/records?after=now` waits for records already submitted
/// to reach the writer before it names the cursor.
const NOW_SETTLE: std::time::Duration = std::time::Duration::from_millis(500);

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// The bearer token, or the dashboard cookie, matches the configured token.
fn authorized(req: &Request<Incoming>, token: Option<&str>) -> bool {
    let Some(token) = token else { return true };
    let bearer = req
        .headers()
        .get(http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    if let Some(given) = bearer {
        return ct_eq(given.as_bytes(), token.as_bytes());
    }
    let want = hex(token.as_bytes());
    let mut ok = false;
    for v in req.headers().get_all(http::header::COOKIE) {
        let Ok(v) = v.to_str() else { continue };
        for pair in v.split(';') {
            if let Some(given) = pair
                .trim()
                .strip_prefix(COOKIE)
                .and_then(|r| r.strip_prefix('='))
            {
                // No early exit: every candidate is compared in full.
                ok |= ct_eq(given.as_bytes(), want.as_bytes());
            }
        }
    }
    ok
}

/// Decode `%XX` escapes and `+` (application/x-www-form-urlencoded).
fn percent_decode(s: &str) -> String {
    fn nibble(c: u8) -> Option<u8> {
        (c as char).to_digit(16).map(|d| d as u8)
    }
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < b.len() => match (nibble(b[i + 1]), nibble(b[i + 2])) {
                (Some(h), Some(l)) => {
                    out.push(h << 4 | l);
                    i += 2;
                }
                _ => out.push(b'%'),
            },
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The value of `key` in a query string or form body.
fn form_value(s: &str, key: &str) -> Option<String> {
    s.split('&').find_map(|kv| {
        let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
        (percent_decode(k) == key).then(|| percent_decode(v))
    })
}

/// A mutating call from a browser page on another origin is refused.
fn same_origin(req: &Request<Incoming>) -> bool {
    let Some(origin) = req
        .headers()
        .get(http::header::ORIGIN)
        .and_then(|v| v.to_str().ok())
    else {
        return true;
    };
    let host = req
        .headers()
        .get(http::header::HOST)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    origin
        .strip_prefix("http://")
        .or_else(|| origin.strip_prefix("https://"))
        == Some(host)
}

/// DNS rebinding: a page on another site whose name now resolves to 127.0.0.1 is
/// same-origin for the browser, so only `Host` gives it away. Without a token the
/// admin listens on loopback only, and a mutating call must name a loopback host.
fn loopback_host(req: &Request<Incoming>) -> bool {
    let host = match req.headers().get(http::header::HOST) {
        Some(v) => match v.to_str() {
            Ok(h) => h.to_string(),
            Err(_) => return false,
        },
        None => match req.uri().authority() {
            Some(a) => a.as_str().to_string(),
            // No name at all (HTTP/1.0 tools): nothing a browser would send.
            None => return true,
        },
    };
    let name = match host.strip_prefix('[') {
        Some(rest) => rest.split(']').next().unwrap_or(""),
        None => match host.rsplit_once(':') {
            Some((n, port)) if port.bytes().all(|b| b.is_ascii_digit()) => n,
            _ => host.as_str(),
        },
    };
    name.eq_ignore_ascii_case("localhost")
        || name
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

async fn route(
    req: Request<Incoming>,
    shared: &Arc<Shared>,
    token: Option<&str>,
) -> Response<Full<Bytes>> {
    let path = req.uri().path().to_string();
    let method = req.method().clone();
    match (&method, path.as_str()) {
        (&Method::GET, "/healthz") => return text(StatusCode::OK, "ok\n", "text/plain"),
        (&Method::GET, "/readyz") => {
            return if shared.ready.load(Ordering::Acquire) {
                text(StatusCode::OK, "ready\n", "text/plain")
            } else {
                text(StatusCode::SERVICE_UNAVAILABLE, "not ready\n", "text/plain")
            }
        }
        (&Method::GET, "/metrics") => {
            let profile = shared.profile.load();
            let phase = profile.active(Instant::now()).phase.map(|p| p.name.clone());
            let body = shared.metrics.render(&Gauges {
                faults_enabled: shared.release.faults_enabled(),
                profile: &profile.name,
                phase: phase.as_deref(),
                records_dropped: shared.recorder.dropped_by_reason(),
                gpu: profile
                    .all_rules()
                    .flat_map(|r| {
                        r.state
                            .replicas()
                            .map(move |rep| GpuGauge::of(&r.name, rep))
                    })
                    .collect(),
            });
            return text(
                StatusCode::OK,
                body,
                "text/plain; version=0.0.4; charset=utf-8",
            );
        }
        _ => {}
    }
    if !path.starts_with("/api/v1/") {
        return dashboard(req, token).await;
    }
    if !authorized(&req, token) {
        let mut r = json(
            StatusCode::UNAUTHORIZED,
            serde_json::json!({"error": "missing or wrong admin token"}),
        );
        r.headers_mut().insert(
            http::header::WWW_AUTHENTICATE,
            http::HeaderValue::from_static("Bearer"),
        );
        return r;
    }
    if method != Method::GET && token.is_none() && !loopback_host(&req) {
        return json(
            StatusCode::FORBIDDEN,
            serde_json::json!({"error": "refused: Host is not a loopback name (DNS rebinding protection)"}),
        );
    }
    if method != Method::GET && !same_origin(&req) {
        return json(
            StatusCode::FORBIDDEN,
            serde_json::json!({"error": "cross-origin request refused"}),
        );
    }
    match (&method, path.as_str()) {
        (&Method::POST, "/api/v1/faults/off") => {
            shared.release.turn_off();
            tracing::warn!("kill switch: faults off");
            json(StatusCode::OK, serde_json::json!({"faults": "off"}))
        }
        (&Method::POST, "/api/v1/faults/on") => {
            shared.release.turn_on();
            tracing::info!("faults on");
            json(StatusCode::OK, serde_json::json!({"faults": "on"}))
        }
        (&Method::GET, "/api/v1/status") => json(StatusCode::OK, status(shared)),
        (&Method::GET, "/api/v1/profile") => {
            let current = shared.meta.lock().ok().and_then(|m| m.text.clone());
            match current {
                Some(t) => text(StatusCode::OK, t, "application/yaml"),
                None => json(
                    StatusCode::NOT_FOUND,
                    serde_json::json!({"error": "no profile is active"}),
                ),
            }
        }
        (&Method::PUT, "/api/v1/profile") => put_profile(req, shared).await,
        (&Method::POST, "/api/v1/profile/reload") => match shared.profile_path.clone() {
            None => json(
                StatusCode::CONFLICT,
                serde_json::json!({"error": "no profile file is configured"}),
            ),
            Some(path) => match crate::control::reload::reload_from_file(&path, shared, true) {
                Ok(_) => json(StatusCode::OK, status(shared)),
                Err(e) => json(StatusCode::BAD_REQUEST, serde_json::json!({"error": e})),
            },
        },
        (&Method::POST, "/api/v1/phase") => phase(req, shared).await,
        (&Method::GET, "/api/v1/summary") => {
            let profile = shared.profile.load();
            let order: Vec<Arc<str>> = profile.phases.iter().map(|p| p.name.clone()).collect();
            json(StatusCode::OK, shared.metrics.summary.to_json(&order))
        }
        (&Method::GET, "/api/v1/live") => json(StatusCode::OK, live(&req, shared)),
        (&Method::GET, "/api/v1/records") => {
            let param = |name: &str| {
                req.uri().query().and_then(|q| {
                    q.split('&')
                        .find_map(|kv| kv.strip_prefix(name)?.strip_prefix('='))
                        .map(str::to_owned)
                })
            };
            let limit = param("limit")
                .and_then(|v| v.parse().ok())
                .unwrap_or(100usize);
            // `after=CURSOR` (or `after=now`) reads on from a cursor instead, for a
            // poller that must see every record: the cursor to ask with next and
            // how many records it missed come back as headers.
            let Some(after) = param("after") else {
                let recs = shared.recorder.recent(limit);
                return match serde_json::to_value(&recs) {
                    Ok(v) => json(StatusCode::OK, v),
                    Err(e) => json(
                        StatusCode::INTERNAL_SERVER_ERROR,
                        serde_json::json!({"error": e.to_string()}),
                    ),
                };
            };
            let after = match after.as_str() {
                "now" => {
                    // Records of exchanges that ended before this call may still be
                    // on their way to the writer: let them land first, so that a
                    // cursor taken "now" does not hand them to the poller as new.
                    shared.recorder.caught_up(NOW_SETTLE).await;
                    None
                }
                n => match n.parse() {
                    Ok(n) => Some(n),
                    Err(_) => {
                        return json(
                            StatusCode::BAD_REQUEST,
                            serde_json::json!({"error": format!("after={n}: expected a cursor (a number) or `now`")}),
                        )
                    }
                },
            };
            let (recs, next, missed) = shared.recorder.recent_after(after, limit);
            match serde_json::to_value(&recs) {
                Ok(v) => {
                    let mut resp = json(StatusCode::OK, v);
                    let h = resp.headers_mut();
                    h.insert("x-brownout-cursor", http::HeaderValue::from(next));
                    h.insert("x-brownout-missed", http::HeaderValue::from(missed));
                    resp
                }
                Err(e) => json(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    serde_json::json!({"error": e.to_string()}),
                ),
            }
        }
        _ => json(
            StatusCode::NOT_FOUND,
            serde_json::json!({"error": format!("no such endpoint: {method} {path}")}),
        ),
    }
}

const INDEX_HTML: &str = include_str!("dashboard/index.html");
const LOGIN_HTML: &str = include_str!("dashboard/login.html");
const DASHBOARD_JS: &str = include_str!("dashboard/dashboard.js");
const DASHBOARD_CSS: &str = include_str!("dashboard/dashboard.css");
/// The dashboard's charts use the drill report's vendored uPlot: one copy, one
/// version, for both pages.
const UPLOT_JS: &str = brownout_drill::html::UPLOT_JS;
const UPLOT_CSS: &str = brownout_drill::html::UPLOT_CSS;

/// Headers for every dashboard response: only our own scripts, styles and fetches
/// run (a Content-Security-Policy that forbids inline code), the page cannot be
/// framed (the kill switch cannot be clickjacked), and nothing is cached.
fn page(status: StatusCode, body: &'static str, ctype: &'static str) -> Response<Full<Bytes>> {
    let mut r = text(status, body, ctype);
    let h = r.headers_mut();
    h.insert(
        http::header::CONTENT_SECURITY_POLICY,
        http::HeaderValue::from_static(
            "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self' data:; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
        ),
    );
    h.insert(
        http::header::X_FRAME_OPTIONS,
        http::HeaderValue::from_static("DENY"),
    );
    h.insert(
        http::header::X_CONTENT_TYPE_OPTIONS,
        http::HeaderValue::from_static("nosniff"),
    );
    h.insert(
        http::header::REFERRER_POLICY,
        http::HeaderValue::from_static("same-origin"),
    );
    h.insert(
        http::header::CACHE_CONTROL,
        http::HeaderValue::from_static("no-store"),
    );
    r
}

/// A redirect to the dashboard that sets (or clears) the session cookie.
fn to_dashboard(cookie: Option<String>) -> Response<Full<Bytes>> {
    let mut r = page(StatusCode::SEE_OTHER, "", "text/plain");
    r.headers_mut()
        .insert(http::header::LOCATION, http::HeaderValue::from_static("/"));
    if let Some(c) = cookie.and_then(|c| http::HeaderValue::from_str(&c).ok()) {
        r.headers_mut().insert(http::header::SET_COOKIE, c);
    }
    r
}

fn session_cookie(token: &str) -> String {
    format!(
        "{COOKIE}={}; Path=/; HttpOnly; SameSite=Strict",
        hex(token.as_bytes())
    )
}

/// The dashboard: `GET /` (the page), its script and stylesheet, and the token
/// exchange. With a token configured, `GET /?token=T` or the login form's
/// `POST /login` trades the token for an HttpOnly cookie once, and redirects to
/// `/` so the token does not linger in the address bar or history.
async fn dashboard(req: Request<Incoming>, token: Option<&str>) -> Response<Full<Bytes>> {
    let path = req.uri().path().to_string();
    let method = req.method().clone();
    match (&method, path.as_str()) {
        // The stylesheet holds nothing secret and the login page needs it.
        (&Method::GET, "/dashboard.css") => {
            return page(StatusCode::OK, DASHBOARD_CSS, "text/css; charset=utf-8")
        }
        (&Method::GET, "/uplot.css") => {
            return page(StatusCode::OK, UPLOT_CSS, "text/css; charset=utf-8")
        }
        (&Method::GET, "/") => {
            if let (Some(t), Some(given)) = (
                token,
                req.uri().query().and_then(|q| form_value(q, "token")),
            ) {
                return if ct_eq(given.as_bytes(), t.as_bytes()) {
                    to_dashboard(Some(session_cookie(t)))
                } else {
                    page(
                        StatusCode::UNAUTHORIZED,
                        LOGIN_HTML,
                        "text/html; charset=utf-8",
                    )
                };
            }
            if !authorized(&req, token) {
                return page(
                    StatusCode::UNAUTHORIZED,
                    LOGIN_HTML,
                    "text/html; charset=utf-8",
                );
            }
            return page(StatusCode::OK, INDEX_HTML, "text/html; charset=utf-8");
        }
        (&Method::POST, "/login") => {
            if !same_origin(&req) {
                return json(
                    StatusCode::FORBIDDEN,
                    serde_json::json!({"error": "cross-origin request refused"}),
                );
            }
            let Some(t) = token else {
                return to_dashboard(None);
            };
            let body = match read_body(req).await {
                Ok(b) => b,
                Err(r) => return r,
            };
            let given = form_value(&String::from_utf8_lossy(&body), "token").unwrap_or_default();
            return if ct_eq(given.trim().as_bytes(), t.as_bytes()) {
                to_dashboard(Some(session_cookie(t)))
            } else {
                page(
                    StatusCode::UNAUTHORIZED,
                    LOGIN_HTML,
                    "text/html; charset=utf-8",
                )
            };
        }
        (&Method::POST, "/logout") => {
            if !same_origin(&req) {
                return json(
                    StatusCode::FORBIDDEN,
                    serde_json::json!({"error": "cross-origin request refused"}),
                );
            }
            return to_dashboard(Some(format!(
                "{COOKIE}=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0"
            )));
        }
        _ => {}
    }
    if !authorized(&req, token) {
        return json(
            StatusCode::UNAUTHORIZED,
            serde_json::json!({"error": "missing or wrong admin token"}),
        );
    }
    match (&method, path.as_str()) {
        (&Method::GET, "/dashboard.js") => page(
            StatusCode::OK,
            DASHBOARD_JS,
            "text/javascript; charset=utf-8",
        ),
        (&Method::GET, "/uplot.js") => {
            page(StatusCode::OK, UPLOT_JS, "text/javascript; charset=utf-8")
        }
        _ => json(
            StatusCode::NOT_FOUND,
            serde_json::json!({"error": "not found"}),
        ),
    }
}

/// Bodies of admin calls are small; refuse anything larger.
const MAX_ADMIN_BODY: usize = 4 << 20;

async fn read_body(req: Request<Incoming>) -> Result<Bytes, Response<Full<Bytes>>> {
    use http_body_util::BodyExt;
    let limited = http_body_util::Limited::new(req.into_body(), MAX_ADMIN_BODY);
    match limited.collect().await {
        Ok(c) => Ok(c.to_bytes()),
        Err(e) => Err(json(
            StatusCode::BAD_REQUEST,
            serde_json::json!({"error": format!("cannot read the body: {e}")}),
        )),
    }
}

/// `PUT /api/v1/profile`: YAML or JSON; invalid → 400 with every error, old profile kept.
async fn put_profile(req: Request<Incoming>, shared: &Arc<Shared>) -> Response<Full<Bytes>> {
    let body = match read_body(req).await {
        Ok(b) => b,
        Err(r) => return r,
    };
    let Ok(text) = std::str::from_utf8(&body) else {
        return json(
            StatusCode::BAD_REQUEST,
            serde_json::json!({"error": "the profile is not UTF-8"}),
        );
    };
    match brownout_faults::validate::load_profile(text, "<api>") {
        Err(diags) => json(
            StatusCode::BAD_REQUEST,
            serde_json::json!({
                "error": "invalid profile; the previous one stays in force",
                "errors": diags.iter().map(|d| serde_json::json!({
                    "line": d.line, "column": d.column, "message": d.message, "hint": d.hint,
                })).collect::<Vec<_>>(),
            }),
        ),
        Ok(p) => match shared.apply(
            &p,
            Some(text.to_string()),
            crate::control::state::ProfileSource::Api,
        ) {
            Ok(()) => json(StatusCode::OK, status(shared)),
            Err(e) => json(StatusCode::BAD_REQUEST, serde_json::json!({"error": e})),
        },
    }
}

/// `POST /api/v1/phase`: `{"name": "storm"}` or `{"next": true}`; with `"hold": true`
/// the clock stops in that phase (ramps at their `to` value) until a call with
/// `"hold": false`, `next` or another name; `"reset": true` first drops every
/// rule's state (schedules, limiters, GPU queues: [`Shared::reset_state`]).
/// `{"hold": false}` alone releases a hold where it stands.
async fn phase(req: Request<Incoming>, shared: &Arc<Shared>) -> Response<Full<Bytes>> {
    #[derive(serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Ask {
        name: Option<String>,
        #[serde(default)]
        next: bool,
        #[serde(default)]
        hold: Option<bool>,
        #[serde(default)]
        reset: bool,
    }
    const EXPECTED: &str = "expected {\"name\": \"PHASE\"} or {\"next\": true}, optionally with \"hold\": true|false and \"reset\": true";
    let body = match read_body(req).await {
        Ok(b) => b,
        Err(r) => return r,
    };
    let ask: Ask = match serde_json::from_slice(&body) {
        Ok(a) => a,
        Err(e) => {
            return json(
                StatusCode::BAD_REQUEST,
                serde_json::json!({"error": format!("{EXPECTED}: {e}")}),
            )
        }
    };
    let before = shared.profile.load();
    let now = Instant::now();
    let target = match (&ask.name, ask.next) {
        (Some(n), _) => before.phases.iter().position(|p| *p.name == **n),
        (None, true) => {
            let cur = before.clock.at(now).index;
            Some(cur.map_or(0, |i| (i + 1).min(before.phases.len().saturating_sub(1))))
        }
        (None, false) => None,
    };
    if ask.name.is_none() && !ask.next && ask.hold == Some(false) {
        before.clock.release(now);
        tracing::info!("phase hold released through the admin API");
        return json(StatusCode::OK, status(shared));
    }
    match target {
        Some(i) if i < before.phases.len() => {
            if ask.reset {
                if let Err(e) = shared.reset_state() {
                    return json(StatusCode::BAD_REQUEST, serde_json::json!({"error": e}));
                }
            }
            let profile = shared.profile.load();
            let now = Instant::now();
            if ask.hold == Some(true) {
                profile.clock.hold(i, now);
            } else {
                profile.clock.jump_to(i, now);
            }
            tracing::info!(phase = %profile.phases[i].name, hold = ask.hold == Some(true), reset = ask.reset, "phase changed through the admin API");
            json(StatusCode::OK, status(shared))
        }
        _ => json(
            StatusCode::BAD_REQUEST,
            serde_json::json!({
                "error": match &ask.name {
                    Some(n) => format!("no such phase `{n}`"),
                    None => EXPECTED.to_owned(),
                },
                "phases": before.phases.iter().map(|p| p.name.to_string()).collect::<Vec<_>>(),
            }),
        ),
    }
}

/// `GET /api/v1/status`.
pub fn status(shared: &Shared) -> serde_json::Value {
    let profile = shared.profile.load();
    let now = Instant::now();
    let at = profile.clock.at(now);
    let phase = at
        .index
        .and_then(|i| profile.phases.get(i))
        .map(|p| p.name.to_string());
    let meta = shared.meta.lock().map(|m| m.clone()).ok();
    serde_json::json!({
        "profile": profile.name.as_ref(),
        "source": meta.as_ref().map(|m| m.source),
        "last_reload_error": meta.as_ref().and_then(|m| m.last_reload_error.clone()),
        "phase": phase,
        "time_in_phase_s": at.index.map(|_| at.in_phase.as_secs_f64()),
        "held": profile.clock.held().is_some(),
        "phases": profile.phases.iter().map(|p| serde_json::json!({"name": p.name.as_ref(), "duration_s": p.duration.as_secs_f64()})).collect::<Vec<_>>(),
        "faults_enabled": shared.release.faults_enabled(),
        "seed": profile.seed,
        "uptime_s": shared.started.elapsed().as_secs_f64(),
        "records": {
            "submitted": shared.recorder.submitted(),
            "dropped": shared.recorder.dropped(),
            "dropped_by_reason": shared.recorder.dropped_by_reason(),
            "file_error": shared.recorder.file_error(),
        },
        "listeners": shared.metrics.active_by_listener().into_iter().map(|(l, n)| serde_json::json!({"name": l, "active_requests": n})).collect::<Vec<_>>(),
        "active_rules": profile.active(now).rules.map(|r| serde_json::json!({
            "name": r.name.as_ref(),
            "faults": r.faults.iter().map(|f| f.kind()).collect::<Vec<_>>(),
            "active": r.state.active.load(Ordering::Relaxed),
        })).collect::<Vec<_>>(),
    })
}

/// `GET /api/v1/live?since=UNIX_S&window=S`: the dashboard's strip charts, plus the
/// gauges it shows beside them (in flight, GPU), in one small poll.
fn live(req: &Request<Incoming>, shared: &Shared) -> serde_json::Value {
    let q = req.uri().query().unwrap_or("");
    let since = form_value(q, "since").and_then(|v| v.parse().ok());
    let window = form_value(q, "window")
        .and_then(|v| v.parse().ok())
        .unwrap_or(5);
    let mut v = shared
        .metrics
        .summary
        .live(since, window, std::time::SystemTime::now());
    let profile = shared.profile.load();
    v["faults_enabled"] = serde_json::json!(shared.release.faults_enabled());
    v["active_requests"] = serde_json::json!(shared
        .metrics
        .active_by_listener()
        .iter()
        .map(|(_, n)| n)
        .sum::<i64>());
    v["gpu"] = profile
        .all_rules()
        .flat_map(|r| {
            r.state.replicas().map(move |rep| {
                serde_json::json!({
                    "rule": r.name.as_ref(),
                    "queue_depth": rep.queue_depth(),
                    "batch_size": rep.batch_size(),
                    "preemptions": rep.preemptions(),
                })
            })
        })
        .collect();
    v
}

#[cfg(test)]
mod tests {
    use super::ct_eq;

    #[test]
    fn constant_time_eq() {
        assert!(ct_eq(b"secret", b"secret"));
        assert!(!ct_eq(b"secret", b"secreT"));
        assert!(!ct_eq(b"secret", b"secret1"));
        assert!(!ct_eq(b"", b"x"));
        assert!(ct_eq(b"", b""));
    }
}
