//! Records and metrics (docs/records.md): one record per exchange however it ends, no
//! secret ever written, and `/metrics` in valid Prometheus text format.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use brownout_integration_tests::*;
use http::Request;

const PROFILE: &str = r#"
version: 1
name: mixed
rules:
  - name: inject
    match: {path: /injected}
    faults: [{type: error, preset: openai.rate_limit_requests}]
  - name: cut
    match: {path: /reset}
    faults: [{type: reset}]
  - name: cut-late
    match: {path: /reset-late}
    faults: [{type: reset, after_bytes: 10}]
  - name: stuck
    match: {path: /hang}
    faults: [{type: hang}]
  - name: slow
    match: {path: /slow}
    faults: [{type: delay, duration: 20ms}]
"#;

const SECRETS: [(&str, &str); 3] = [
    ("authorization", "Bearer sk-proj-SECRET1-do-not-log"),
    ("x-api-key", "sk-ant-SECRET2-do-not-log"),
    ("api-key", "azure-SECRET3-do-not-log"),
];

/// `/die` sends a chunk, then fails its body; `/http-error` answers 500.
async fn mixed_upstream() -> Upstream {
    Upstream::start(|req| async move {
        // Read the request first: a server that answers without reading the body
        // closes the connection afterwards, which races the proxy's pool (see
        // errors.rs, stale_pooled_upstream_connection_is_not_a_502).
        let path = req.uri().path().to_string();
        let _ = collect(req.into_body()).await;
        match path.as_str() {
            "/die" => {
                let (tx, body) = body_channel();
                tokio::spawn(async move {
                    tx.send("partial").await;
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    tx.abort().await;
                });
                http::Response::new(body)
            }
            "/http-error" => reply(500, "upstream says no"),
            _ => reply(200, "a body longer than ten bytes"),
        }
    })
    .await
}

fn with_secrets(method: &str, url: String, body: Body) -> Request<Body> {
    let mut b = Request::builder().method(method).uri(url);
    for (k, v) in SECRETS {
        b = b.header(k, v);
    }
    b.body(body).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_record_per_exchange_however_it_ends_and_no_secrets() {
    let up = mixed_upstream().await;
    let dir = TempDir::new();
    let file = dir.join("records.jsonl");
    let proxy = ProxyBuilder::new(up.url())
        .admin()
        .record(&file)
        .profile(PROFILE)
        .start()
        .await;
    let c1 = http1_client();
    let c2 = h2c_client();
    let mut expected: BTreeMap<&str, usize> = BTreeMap::new();
    let mut sent = 0;

    // Concurrent successful exchanges over both protocols.
    let mut tasks = Vec::new();
    for i in 0..40 {
        let c = if i % 2 == 0 { c1.clone() } else { c2.clone() };
        let path = if i % 4 == 0 { "/slow" } else { "/ok" };
        let req = with_secrets(
            "POST",
            proxy.url(path),
            full("{\"prompt\":\"secret-free\"}"),
        );
        tasks.push(tokio::spawn(async move { send(&c, req).await }));
    }
    for t in tasks {
        let r = t.await.unwrap().unwrap();
        assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    }
    *expected.entry("ok").or_default() += 40;
    sent += 40;

    for (path, outcome) in [
        ("/injected", "injected_error"),
        ("/http-error", "http_error"),
    ] {
        for c in [&c1, &c2] {
            let r = send(c, with_secrets("GET", proxy.url(path), empty()))
                .await
                .unwrap();
            assert!(r.status.as_u16() >= 400);
            *expected.entry(outcome).or_default() += 1;
            sent += 1;
        }
    }
    for path in ["/reset", "/reset-late"] {
        for c in [&c1, &c2] {
            assert!(
                send(c, with_secrets("GET", proxy.url(path), empty()))
                    .await
                    .is_err(),
                "{path}"
            );
            *expected.entry("reset").or_default() += 1;
            sent += 1;
        }
    }
    for c in [&c1, &c2] {
        assert!(send(c, with_secrets("GET", proxy.url("/die"), empty()))
            .await
            .is_err());
        *expected.entry("upstream_error").or_default() += 1;
        sent += 1;
    }
    // The client gives up on a hang: its connection goes away.
    let (mut conn, task) = h1_conn(proxy.addr).await;
    let mut req = with_secrets("GET", "/hang".into(), empty());
    req.headers_mut().insert("host", "proxy".parse().unwrap());
    assert!(
        tokio::time::timeout(Duration::from_millis(200), conn.send_request(req))
            .await
            .is_err()
    );
    task.abort();
    drop(conn);
    *expected.entry("client_closed").or_default() += 1;
    sent += 1;

    let live = proxy.exactly_records(sent).await;
    let admin = proxy.admin_get("/api/v1/records?limit=1000").await.1;
    proxy.shutdown().await;

    let text = std::fs::read_to_string(&file).expect("the record file");
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), sent, "one record line per exchange");
    let mut outcomes: BTreeMap<String, usize> = BTreeMap::new();
    let mut ids = std::collections::HashSet::new();
    for l in &lines {
        let r: serde_json::Value = serde_json::from_str(l).expect("each line is JSON");
        *outcomes
            .entry(r["outcome"].as_str().unwrap().to_string())
            .or_default() += 1;
        assert!(
            ids.insert(r["id"].as_u64().unwrap()),
            "duplicate record id: {l}"
        );
        for field in [
            "ts",
            "listener",
            "api",
            "endpoint",
            "method",
            "path",
            "faults",
            "faults_skipped",
            "e2e_ms",
        ] {
            assert!(r.get(field).is_some(), "record lacks `{field}`: {l}");
        }
    }
    let expected: BTreeMap<String, usize> = expected
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();
    assert_eq!(outcomes, expected);
    assert_eq!(live.len(), sent);
    for (name, secret) in SECRETS {
        assert!(
            !text.contains(secret),
            "the `{name}` value leaked into the record file"
        );
        assert!(
            !admin.contains(secret),
            "the `{name}` value leaked into /api/v1/records"
        );
        let bare = secret.trim_start_matches("Bearer ");
        assert!(
            !text.contains(bare),
            "part of the `{name}` value leaked into the record file"
        );
    }
}

// ---------------------------------------------------------------------------
// Prometheus text format
// ---------------------------------------------------------------------------

type Labels = Vec<(String, String)>;

#[derive(Debug)]
struct Sample {
    name: String,
    labels: Vec<(String, String)>,
    value: f64,
}

fn valid_metric_name(n: &str) -> bool {
    let mut cs = n.chars();
    matches!(cs.next(), Some(c) if c.is_ascii_alphabetic() || c == '_' || c == ':')
        && cs.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
}

fn valid_label_name(n: &str) -> bool {
    let mut cs = n.chars();
    matches!(cs.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && cs.all(|c| c.is_ascii_alphanumeric() || c == '_')
        && !n.starts_with("__")
}

fn parse_value(v: &str) -> Option<f64> {
    match v {
        "+Inf" => Some(f64::INFINITY),
        "-Inf" => Some(f64::NEG_INFINITY),
        "NaN" => Some(f64::NAN),
        _ => v.parse().ok(),
    }
}

/// Parse one sample line strictly; panics with the line on any error.
fn parse_sample(line: &str) -> Sample {
    let bad = |why: &str| -> ! { panic!("invalid sample line ({why}): {line:?}") };
    let name_end = line.find(['{', ' ']).unwrap_or_else(|| bad("no value"));
    let name = &line[..name_end];
    if !valid_metric_name(name) {
        bad("metric name");
    }
    let mut rest = &line[name_end..];
    let mut labels = Vec::new();
    if let Some(r) = rest.strip_prefix('{') {
        let mut chars = r.char_indices().peekable();
        let consumed: usize;
        loop {
            // label name
            let start = match chars.peek() {
                Some((_, '}')) => {
                    consumed = chars.next().unwrap().0 + 1;
                    break;
                }
                Some((i, _)) => *i,
                None => bad("unterminated labels"),
            };
            let mut eq = None;
            for (i, c) in chars.by_ref() {
                if c == '=' {
                    eq = Some(i);
                    break;
                }
            }
            let eq = eq.unwrap_or_else(|| bad("label without `=`"));
            let lname = &r[start..eq];
            if !valid_label_name(lname) {
                bad("label name");
            }
            if chars.next().map(|(_, c)| c) != Some('"') {
                bad("label value not quoted");
            }
            let mut value = String::new();
            loop {
                match chars.next() {
                    Some((_, '\\')) => match chars.next() {
                        Some((_, 'n')) => value.push('\n'),
                        Some((_, '\\')) => value.push('\\'),
                        Some((_, '"')) => value.push('"'),
                        _ => bad("bad escape"),
                    },
                    Some((_, '"')) => break,
                    Some((_, '\n')) => bad("raw newline in label value"),
                    Some((_, c)) => value.push(c),
                    None => bad("unterminated label value"),
                }
            }
            labels.push((lname.to_string(), value));
            match chars.next() {
                Some((_, ',')) => continue,
                Some((i, '}')) => {
                    consumed = i + 1;
                    break;
                }
                _ => bad("expected `,` or `}` after a label"),
            }
        }
        rest = &r[consumed..];
    }
    let rest = rest
        .strip_prefix(' ')
        .unwrap_or_else(|| bad("no space before the value"));
    let mut parts = rest.split(' ');
    let value = parts
        .next()
        .and_then(parse_value)
        .unwrap_or_else(|| bad("value"));
    if let Some(ts) = parts.next() {
        ts.parse::<i64>().unwrap_or_else(|_| bad("timestamp"));
    }
    if parts.next().is_some() {
        bad("trailing fields");
    }
    let mut seen = std::collections::HashSet::new();
    for (k, _) in &labels {
        if !seen.insert(k) {
            bad("duplicate label");
        }
    }
    Sample {
        name: name.to_string(),
        labels,
        value,
    }
}

/// Check the whole exposition; returns the samples and each family's type.
fn check_exposition(text: &str) -> (Vec<Sample>, HashMap<String, String>) {
    assert!(
        text.ends_with('\n'),
        "the exposition must end with a newline"
    );
    let mut types: HashMap<String, String> = HashMap::new();
    let mut helps: HashMap<String, String> = HashMap::new();
    let mut samples = Vec::new();
    let mut families_seen_samples: Vec<String> = Vec::new();
    for line in text.lines() {
        if line.is_empty() {
            continue;
        }
        if let Some(h) = line.strip_prefix("# HELP ") {
            let (name, help) = h.split_once(' ').unwrap_or((h, ""));
            assert!(valid_metric_name(name), "HELP for an invalid name: {line}");
            assert!(
                helps.insert(name.to_string(), help.to_string()).is_none(),
                "HELP twice for {name}"
            );
            continue;
        }
        if let Some(t) = line.strip_prefix("# TYPE ") {
            let (name, kind) = t
                .split_once(' ')
                .unwrap_or_else(|| panic!("TYPE without a kind: {line}"));
            assert!(valid_metric_name(name), "TYPE for an invalid name: {line}");
            assert!(
                ["counter", "gauge", "histogram", "summary", "untyped"].contains(&kind),
                "unknown metric type: {line}"
            );
            assert!(
                !families_seen_samples.contains(&name.to_string()),
                "TYPE for {name} after its samples: {line}"
            );
            assert!(
                types.insert(name.to_string(), kind.to_string()).is_none(),
                "TYPE twice for {name}"
            );
            continue;
        }
        assert!(
            !line.starts_with('#') || line.starts_with("# "),
            "malformed comment: {line}"
        );
        if line.starts_with('#') {
            continue;
        }
        let s = parse_sample(line);
        assert!(
            s.name.starts_with("brownout_"),
            "metric without the brownout_ prefix: {line}"
        );
        let family = if types.contains_key(&s.name) {
            s.name.clone()
        } else {
            let base = ["_bucket", "_sum", "_count"]
                .iter()
                .find_map(|suf| s.name.strip_suffix(suf))
                .unwrap_or_else(|| panic!("sample of an undeclared metric: {line}"));
            assert_eq!(
                types.get(base).map(String::as_str),
                Some("histogram"),
                "{line}: _bucket/_sum/_count only for histograms"
            );
            base.to_string()
        };
        assert!(
            types.contains_key(&family),
            "sample before its TYPE line: {line}"
        );
        if types[&family] == "counter" {
            assert!(s.value >= 0.0, "negative counter: {line}");
        }
        if !families_seen_samples.contains(&family) {
            families_seen_samples.push(family);
        }
        samples.push(s);
    }
    for name in types.keys() {
        assert!(helps.contains_key(name), "{name} has a TYPE but no HELP");
    }
    (samples, types)
}

/// Histogram buckets: per label set, `le` ascending, counts cumulative, ending
/// with `+Inf` equal to `_count`, and a `_sum`.
fn check_histograms(samples: &[Sample], types: &HashMap<String, String>) -> usize {
    let mut checked = 0;
    for (family, _) in types.iter().filter(|(_, t)| *t == "histogram") {
        let mut series: BTreeMap<Labels, Vec<(f64, f64)>> = BTreeMap::new();
        for s in samples
            .iter()
            .filter(|s| s.name == format!("{family}_bucket"))
        {
            let le = s
                .labels
                .iter()
                .find(|(k, _)| k == "le")
                .unwrap_or_else(|| panic!("bucket without le: {s:?}"));
            let le = parse_value(&le.1).unwrap_or_else(|| panic!("le is not a number: {s:?}"));
            let key: Vec<_> = s
                .labels
                .iter()
                .filter(|(k, _)| k != "le")
                .cloned()
                .collect();
            series.entry(key).or_default().push((le, s.value));
        }
        for (labels, buckets) in series {
            assert!(!buckets.is_empty());
            for w in buckets.windows(2) {
                assert!(
                    w[0].0 < w[1].0,
                    "{family}{labels:?}: le not ascending: {buckets:?}"
                );
                assert!(
                    w[0].1 <= w[1].1,
                    "{family}{labels:?}: buckets not cumulative: {buckets:?}"
                );
            }
            let last = buckets.last().unwrap();
            assert!(
                last.0.is_infinite() && last.0 > 0.0,
                "{family}{labels:?}: last bucket is not +Inf"
            );
            let count = samples
                .iter()
                .find(|s| s.name == format!("{family}_count") && s.labels == labels)
                .unwrap_or_else(|| panic!("{family}{labels:?}: no _count"));
            assert_eq!(
                count.value, last.1,
                "{family}{labels:?}: +Inf bucket != _count"
            );
            let sum = samples
                .iter()
                .find(|s| s.name == format!("{family}_sum") && s.labels == labels)
                .unwrap_or_else(|| panic!("{family}{labels:?}: no _sum"));
            assert!(sum.value >= 0.0);
            checked += 1;
        }
    }
    checked
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_are_valid_prometheus_text() {
    let up = mixed_upstream().await;
    // A rule name with characters that need escaping in label values.
    let profile = PROFILE.replace("name: slow\n", "name: \"slow \\\"quoted\\\" \\\\ rule\"\n");
    let proxy = ProxyBuilder::new(up.url())
        .api(ApiKind::Openai)
        .admin()
        .profile(&profile)
        .start()
        .await;
    let c = http1_client();
    let mut n = 0;
    for path in [
        "/v1/chat/completions",
        "/ok",
        "/slow",
        "/injected",
        "/http-error",
        "/slow",
    ] {
        let _ = send(&c, get(proxy.url(path))).await.unwrap();
        n += 1;
    }
    let _ = send(&c, get(proxy.url("/reset"))).await;
    n += 1;
    proxy.exactly_records(n).await;

    let r = send(&c, get(proxy.admin_url("/metrics"))).await.unwrap();
    assert_eq!(r.status, 200);
    assert!(
        r.header("content-type").unwrap().starts_with("text/plain"),
        "{:?}",
        r.header("content-type")
    );
    let text = String::from_utf8(r.body.to_vec()).expect("UTF-8");
    let (samples, types) = check_exposition(&text);
    for (name, kind) in [
        ("brownout_requests_total", "counter"),
        ("brownout_faults_injected_total", "counter"),
        ("brownout_faults_skipped_total", "counter"),
        ("brownout_request_duration_seconds", "histogram"),
        ("brownout_upstream_duration_seconds", "histogram"),
        ("brownout_time_to_first_token_seconds", "histogram"),
        ("brownout_active_requests", "gauge"),
        ("brownout_records_dropped_total", "counter"),
        ("brownout_faults_enabled", "gauge"),
        ("brownout_phase_info", "gauge"),
    ] {
        assert_eq!(
            types.get(name).map(String::as_str),
            Some(kind),
            "{name} missing or mistyped"
        );
    }
    let total: f64 = samples
        .iter()
        .filter(|s| s.name == "brownout_requests_total")
        .map(|s| s.value)
        .sum();
    assert_eq!(total as usize, n, "requests_total counts every exchange");
    for s in samples
        .iter()
        .filter(|s| s.name == "brownout_requests_total")
    {
        let keys: Vec<&str> = s.labels.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(keys, ["listener", "endpoint", "phase", "outcome"], "{s:?}");
    }
    let injected: Vec<_> = samples
        .iter()
        .filter(|s| s.name == "brownout_faults_injected_total")
        .collect();
    assert!(
        injected.iter().any(|s| s
            .labels
            .contains(&("rule".into(), "slow \"quoted\" \\ rule".into()))
            && s.labels.contains(&("fault".into(), "delay".into()))
            && s.value == 2.0),
        "escaped rule label round-trips: {injected:?}"
    );
    let enabled = samples
        .iter()
        .find(|s| s.name == "brownout_faults_enabled")
        .unwrap();
    assert_eq!(enabled.value, 1.0);
    let phase = samples
        .iter()
        .find(|s| s.name == "brownout_phase_info")
        .unwrap();
    assert!(phase.labels.contains(&("profile".into(), "mixed".into())));
    assert!(
        check_histograms(&samples, &types) >= 2,
        "histograms with data"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bytes_in_and_out_count_what_was_sent() {
    let (up, caps) = Upstream::echo().await;
    let proxy = ProxyBuilder::new(up.url()).profile(PROFILE).start().await;
    let n = 100_000;
    // A content-length body, a chunked one (HTTP/1.1) and one without length (h2).
    let r = send(
        &http1_client(),
        Request::post(proxy.url("/cl"))
            .body(full(vec![1u8; n]))
            .unwrap(),
    )
    .await
    .unwrap();
    assert_eq!(r.body.len(), n);
    for (path, client) in [("/chunked", http1_client()), ("/h2", h2c_client())] {
        let (tx, body) = body_channel();
        let feed = tokio::spawn(async move {
            for _ in 0..10 {
                tx.send(vec![2u8; n / 10]).await;
            }
        });
        let r = send(&client, Request::post(proxy.url(path)).body(body).unwrap())
            .await
            .unwrap();
        feed.await.unwrap();
        assert_eq!(r.body.len(), n);
        assert_eq!(caps.last().body.len(), n);
    }
    // An injected error drains the body (up to inspect_limit) and counts it.
    let (tx, body) = body_channel();
    let feed = tokio::spawn(async move {
        for _ in 0..10 {
            tx.send(vec![3u8; n / 10]).await;
        }
    });
    let r = send(
        &http1_client(),
        Request::post(proxy.url("/injected")).body(body).unwrap(),
    )
    .await
    .unwrap();
    feed.await.unwrap();
    assert_eq!(r.status, 429);
    for path in ["/cl", "/chunked", "/h2", "/injected"] {
        let rec = proxy.record_for(path).await;
        if path != "/injected" {
            assert_eq!(rec["bytes_out"], n, "{path}: {rec:#}");
        }
        assert_eq!(
            rec["bytes_in"], n,
            "{path}: bytes_in must count the request body received: {rec:#}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_leaving_mid_body_is_recorded_and_cancels_the_upstream() {
    let (dropped_tx, mut dropped_rx) = tokio::sync::mpsc::channel::<()>(4);
    let up = Upstream::start(move |_req| {
        let dropped_tx = dropped_tx.clone();
        async move {
            let (tx, body) = body_channel();
            tokio::spawn(async move {
                for i in 0.. {
                    if !tx.try_send(format!("data: {i}\n\n")).await {
                        // The proxy stopped reading: the upstream exchange was cancelled.
                        let _ = dropped_tx.send(()).await;
                        return;
                    }
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            });
            http::Response::new(body)
        }
    })
    .await;
    let proxy = ProxyBuilder::new(up.url()).start().await;
    for (i, client) in [http1_client(), h2c_client()].into_iter().enumerate() {
        let path = format!("/stream{i}");
        let resp = client.request(get(proxy.url(&path))).await.unwrap();
        let mut body = resp.into_body();
        let first = next_chunk(&mut body).await.unwrap().unwrap();
        assert!(first.starts_with(b"data: 0"));
        drop(body);
        drop(client);
        within(
            Duration::from_secs(5),
            "the upstream stream is cancelled",
            dropped_rx.recv(),
        )
        .await;
        let rec = proxy.record_for(&path).await;
        assert_eq!(rec["outcome"], "client_closed", "{rec:#}");
        assert_eq!(rec["status"], 200);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_releases_held_requests_and_flushes_their_records() {
    let up = Upstream::start(|_req| async { reply(200, "ok") }).await;
    let dir = TempDir::new();
    let file = dir.join("records.jsonl");
    let proxy = ProxyBuilder::new(up.url())
        .record(&file)
        .limits(|l| {
            l.shutdown_grace = brownout_faults::duration::DurationStr(Duration::from_millis(300))
        })
        .profile(PROFILE)
        .start()
        .await;
    let c = http1_client();
    let url = proxy.url("/hang");
    let held = tokio::spawn(async move { send(&c, get(url)).await });
    let g = proxy.shared().metrics.active_gauge("test");
    within(Duration::from_secs(5), "the hang is held", async {
        while g.load(std::sync::atomic::Ordering::Relaxed) < 1 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await;
    let t = tokio::time::Instant::now();
    within(Duration::from_secs(5), "shutdown", proxy.shutdown()).await;
    assert!(
        t.elapsed() >= Duration::from_millis(300),
        "shutdown_grace is given to in-flight work"
    );
    let r = within(Duration::from_secs(5), "the held request", held)
        .await
        .unwrap();
    assert_eq!(
        r.expect("released at the end of the grace, not cut").status,
        200
    );
    let text = std::fs::read_to_string(&file).unwrap();
    assert_eq!(text.lines().count(), 1, "{text}");
    let rec: serde_json::Value = serde_json::from_str(text.trim()).unwrap();
    assert_eq!(rec["outcome"], "ok", "{rec:#}");
    assert_eq!(rec["status"], 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_cuts_what_never_finishes_and_still_records_it() {
    // An upstream that never answers: not a fault, so the kill switch cannot help.
    let up = RawUpstream::start(|mut s| async move {
        let _ = read_request_head(&mut s).await;
        tokio::time::sleep(Duration::from_secs(60)).await;
    })
    .await;
    let dir = TempDir::new();
    let file = dir.join("records.jsonl");
    let proxy = ProxyBuilder::new(up.url())
        .record(&file)
        .limits(|l| {
            l.shutdown_grace = brownout_faults::duration::DurationStr(Duration::from_millis(300))
        })
        .start()
        .await;
    let c = http1_client();
    let url = proxy.url("/stuck");
    let held = tokio::spawn(async move { send(&c, get(url)).await });
    within(
        Duration::from_secs(5),
        "the request reaches the upstream",
        async {
            while up.connections() < 1 {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        },
    )
    .await;
    let t = tokio::time::Instant::now();
    within(
        Duration::from_secs(6),
        "shutdown is bounded",
        proxy.shutdown(),
    )
    .await;
    assert!(t.elapsed() >= Duration::from_millis(300));
    let r = within(Duration::from_secs(5), "the cut request", held)
        .await
        .unwrap();
    assert!(r.is_err(), "a cut request must not look complete: {r:?}");
    let text = std::fs::read_to_string(&file).unwrap();
    assert_eq!(
        text.lines().count(),
        1,
        "the cut exchange is still recorded: {text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sdk_retry_attempt_and_fault_decisions_are_recorded() {
    let up = mixed_upstream().await;
    let proxy = ProxyBuilder::new(up.url())
        .api(ApiKind::Openai)
        .profile(PROFILE)
        .start()
        .await;
    let c = http1_client();
    for attempt in 0..3 {
        let req = Request::post(proxy.url("/injected"))
            .header("x-stainless-retry-count", attempt.to_string())
            .body(full("{}"))
            .unwrap();
        assert_eq!(send(&c, req).await.unwrap().status, 429);
    }
    let recs = proxy.exactly_records(3).await;
    for (i, r) in recs.iter().enumerate() {
        assert_eq!(r["attempt"], i, "{r:#}");
        assert_eq!(r["rules"], serde_json::json!(["inject"]));
        assert_eq!(r["faults"][0]["rule"], "inject");
        assert_eq!(r["faults"][0]["fault"], "error");
        assert_eq!(r["status"], 429);
        assert!(r["upstream"].is_null());
        assert_eq!(r["listener"], "test");
        assert_eq!(r["api"], "openai");
        assert_eq!(r["method"], "POST");
    }
}
