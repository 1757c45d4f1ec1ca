//! The drill's client retries as the official SDKs do: a scripted upstream answers
//! each case's attempts with set statuses and retry headers (`x-should-retry`,
//! `retry-after-ms`, `retry-after` in seconds and as an HTTP date, one over 120 s,
//! 529) and records when every attempt arrives; the real openai and anthropic
//! Python SDKs (from the cached `sdk` environment) and the drill's retry path,
//! following each SDK, then make the same calls, and must agree on the number of
//! attempts, on what the caller ends with, and on the waits between attempts.
//! The rules themselves, waits over 120 s included, are unit tests of
//! `brownout_drill::retry`.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use brownout_drill::client::DrillClient;
use brownout_drill::engine::send_with_retries;
use brownout_drill::retry::Sdk;
use brownout_drill::scenario::ClientSpec;
use brownout_drill::Outcome;
use brownout_integration_tests::{reply, Captured, Upstream};
use bytes::Bytes;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde_json::Value;
use tokio::time::Instant;

/// A header of a scripted answer.
#[derive(Clone, Copy)]
enum Hdr {
    Fixed(&'static str, &'static str),
    /// `retry-after` as the HTTP date this many whole seconds after the next
    /// whole second, so the wait asked for is between it and one second more.
    DateIn(u64),
}

struct Case {
    name: &'static str,
    /// Answers to attempts 0, 1, ...; 200 after them.
    script: Vec<(u16, Vec<Hdr>)>,
    /// Attempts every client makes.
    attempts: usize,
    /// The waits between attempts the SDK rules give, seconds (backoffs at the
    /// middle of their jitter).
    waits: Vec<f64>,
    /// Whether anthropic-python takes part: it waits any wait, so a case that
    /// asks for 121 s is only a unit test for it.
    anthropic: bool,
}

fn cases() -> Vec<Case> {
    use Hdr::*;
    let backoff = |n: i32| 0.5 * 2f64.powi(n) * 0.875;
    vec![
        Case {
            name: "should_retry_false",
            script: vec![(500, vec![Fixed("x-should-retry", "false")])],
            attempts: 1,
            waits: vec![],
            anthropic: true,
        },
        Case {
            name: "should_retry_true",
            script: vec![(
                400,
                vec![
                    Fixed("x-should-retry", "true"),
                    Fixed("retry-after-ms", "300"),
                ],
            )],
            attempts: 2,
            waits: vec![0.3],
            anthropic: true,
        },
        Case {
            name: "retry_after_ms",
            script: vec![
                (
                    429,
                    vec![Fixed("retry-after-ms", "300"), Fixed("retry-after", "5")],
                ),
                (429, vec![Fixed("retry-after-ms", "300")]),
            ],
            attempts: 3,
            waits: vec![0.3, 0.3],
            anthropic: true,
        },
        Case {
            name: "retry_after_s",
            script: vec![(503, vec![Fixed("retry-after", "1")])],
            attempts: 2,
            waits: vec![1.0],
            anthropic: true,
        },
        Case {
            name: "retry_after_date",
            script: vec![(429, vec![DateIn(2)])],
            attempts: 2,
            waits: vec![2.5],
            anthropic: true,
        },
        Case {
            name: "overloaded_529",
            script: vec![(529, vec![]), (529, vec![])],
            attempts: 3,
            waits: vec![backoff(0), backoff(1)],
            anthropic: true,
        },
        Case {
            name: "retries_run_out",
            script: vec![
                (429, vec![Fixed("retry-after-ms", "200")]),
                (500, vec![Fixed("retry-after-ms", "200")]),
                (503, vec![]),
            ],
            attempts: 3,
            waits: vec![0.2, 0.2],
            anthropic: true,
        },
        Case {
            name: "bad_request_400",
            script: vec![(400, vec![])],
            attempts: 1,
            waits: vec![],
            anthropic: true,
        },
        Case {
            name: "retry_after_121",
            script: vec![(429, vec![Fixed("retry-after", "121")])],
            attempts: 1,
            waits: vec![],
            anthropic: false,
        },
        Case {
            name: "retry_after_ms_121000",
            script: vec![(
                429,
                vec![
                    Fixed("retry-after-ms", "121000"),
                    Fixed("x-should-retry", "true"),
                ],
            )],
            attempts: 1,
            waits: vec![],
            anthropic: false,
        },
    ]
}

/// `Wed, 21 Oct 2015 07:28:00 GMT` for Unix time `t`.
fn http_date(t: u64) -> String {
    let days = (t / 86_400) as i64;
    let secs = t % 86_400;
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    let weekday = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"][(days % 7) as usize];
    let months = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    format!(
        "{weekday}, {day:02} {} {year} {:02}:{:02}:{:02} GMT",
        months[(month - 1) as usize],
        secs / 3600,
        secs / 60 % 60,
        secs % 60
    )
}

/// One attempt as the upstream saw it.
#[derive(Clone)]
struct Seen {
    at: Instant,
    headers: http::HeaderMap,
}

type Log = Arc<Mutex<HashMap<(String, String), Vec<Seen>>>>;

/// The scripted upstream; requests go to `/CLIENT/CASE/...`.
async fn upstream(cases: Arc<Vec<Case>>) -> (Upstream, Log) {
    let log: Log = Arc::default();
    let seen = Arc::clone(&log);
    let up = Upstream::start(move |req| {
        let (cases, seen) = (Arc::clone(&cases), Arc::clone(&seen));
        async move {
            let cap = Captured::read(req).await;
            let at = Instant::now();
            let path = cap.uri.path().to_owned();
            let mut parts = path.trim_start_matches('/').splitn(3, '/');
            let client = parts.next().unwrap_or_default().to_owned();
            let case = parts.next().unwrap_or_default().to_owned();
            let n = {
                let mut log = seen.lock().unwrap();
                let v = log.entry((client, case.clone())).or_default();
                v.push(Seen {
                    at,
                    headers: cap.headers.clone(),
                });
                v.len() - 1
            };
            let messages = path.ends_with("/messages");
            let script = cases
                .iter()
                .find(|c| c.name == case)
                .map(|c| c.script.clone())
                .unwrap_or_else(|| panic!("no case `{case}` ({path})"));
            let mut r = match script.get(n) {
                Some((status, headers)) => {
                    let body = if messages {
                        r#"{"type":"error","error":{"type":"overloaded_error","message":"scripted"}}"#
                    } else {
                        r#"{"error":{"message":"scripted","type":"server_error","param":null,"code":null}}"#
                    };
                    let mut r = reply(*status, body);
                    for h in headers {
                        let (name, value) = match *h {
                            Hdr::Fixed(k, v) => (k, v.to_owned()),
                            Hdr::DateIn(s) => {
                                let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap();
                                ("retry-after", http_date(now.as_secs() + 1 + s))
                            }
                        };
                        r.headers_mut().insert(name, value.parse().unwrap());
                    }
                    r
                }
                None if messages => reply(
                    200,
                    r#"{"id":"msg_1","type":"message","role":"assistant","model":"m","content":[{"type":"text","text":"ok"}],"stop_reason":"end_turn","stop_sequence":null,"usage":{"input_tokens":1,"output_tokens":1}}"#,
                ),
                None => reply(
                    200,
                    r#"{"id":"c1","object":"chat.completion","created":0,"model":"m","choices":[{"index":0,"message":{"role":"assistant","content":"ok"},"finish_reason":"stop"}],"usage":{"prompt_tokens":1,"completion_tokens":1,"total_tokens":2}}"#,
                ),
            };
            r.headers_mut()
                .insert("content-type", "application/json".parse().unwrap());
            r
        }
    })
    .await;
    (up, log)
}

/// What one client's call ended with: `None` for success, else the status.
type End = Option<u64>;

/// The drill's retry path, following `sdk`, for request `seq` of a case.
async fn drill_call(base: String, sdk: Sdk, case: &'static str, seq: u64) -> (End, u32) {
    let (client, path, body) = match sdk {
        Sdk::OpenaiPython => (
            "drill-openai",
            "v1/chat/completions",
            r#"{"model":"gpt-4o-mini","messages":[{"role":"user","content":"hi"}],"max_tokens":1}"#,
        ),
        Sdk::AnthropicPython => (
            "drill-anthropic",
            "v1/messages",
            r#"{"model":"m","messages":[{"role":"user","content":"hi"}],"max_tokens":1}"#,
        ),
    };
    let uri = format!("{base}/{client}/{case}/{path}").parse().unwrap();
    let client = DrillClient::new(uri, false, Duration::from_secs(20)).with_users(None);
    let spec = ClientSpec {
        sdk,
        ..ClientSpec::default()
    };
    let (sample, attempts) = send_with_retries(
        &client,
        &spec,
        seq,
        0,
        Instant::now(),
        Bytes::from_static(body.as_bytes()),
        ChaCha8Rng::seed_from_u64(seq),
    )
    .await;
    let end = match sample.outcome {
        Outcome::Ok => None,
        Outcome::HttpError(s) => Some(u64::from(s)),
        other => panic!("drill call {case} ended {other:?}"),
    };
    (end, attempts)
}

fn gaps(seen: &[Seen]) -> Vec<f64> {
    seen.windows(2)
        .map(|w| (w[1].at - w[0].at).as_secs_f64())
        .collect()
}

/// Whether two waits agree: within 40% of the larger, plus 300 ms.
fn close(a: f64, b: f64) -> bool {
    (a - b).abs() <= 0.4 * a.max(b) + 0.3
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drill_client_retries_and_waits_as_the_python_sdks_do() {
    let py = tokio::task::spawn_blocking(brownout_integration_tests::sdk_python)
        .await
        .unwrap();
    let cases = Arc::new(cases());
    let (up, log) = upstream(Arc::clone(&cases)).await;
    let base = up.url();

    // The SDKs' calls and the drill's, all at once: the run lasts as long as the
    // longest case, not their sum.
    let mut items = Vec::new();
    for c in cases.iter() {
        items.push(format!("openai:{}", c.name));
        if c.anthropic {
            items.push(format!("anthropic:{}", c.name));
        }
    }
    let mut args = vec![base.clone()];
    args.extend(items);
    let python = tokio::spawn({
        let py = py.clone();
        async move {
            brownout_integration_tests::run_python_json(&py, "sdk_retry_check.py", &args).await
        }
    });
    let mut drills = tokio::task::JoinSet::new();
    for (i, c) in cases.iter().enumerate() {
        let sdks: &[Sdk] = if c.anthropic {
            &[Sdk::OpenaiPython, Sdk::AnthropicPython]
        } else {
            &[Sdk::OpenaiPython]
        };
        for (j, sdk) in sdks.iter().enumerate() {
            let (base, sdk, name) = (base.clone(), *sdk, c.name);
            let seq = (2 * i + j) as u64 + 100;
            drills.spawn(async move { (sdk, name, seq, drill_call(base, sdk, name, seq).await) });
        }
    }
    let calls = tokio::time::timeout(Duration::from_secs(60), python)
        .await
        .expect("the SDK script timed out")
        .unwrap();
    if let Some(e) = calls.iter().find(|c| c["case"] == "script_error") {
        panic!(
            "the SDK script broke in {} {}:\n{}",
            e["sdk"],
            e["name"],
            e["traceback"].as_str().unwrap_or("")
        );
    }
    let mut drill_ends = HashMap::new();
    while let Some(r) = drills.join_next().await {
        let (sdk, name, seq, (end, attempts)) = r.unwrap();
        drill_ends.insert((sdk, name), (end, attempts, seq));
    }
    let log = log.lock().unwrap().clone();
    up.check();

    let mut failures = Vec::new();
    for c in cases.iter() {
        for (sdk, py_name, drill_name) in [
            (Sdk::OpenaiPython, "openai", "drill-openai"),
            (Sdk::AnthropicPython, "anthropic", "drill-anthropic"),
        ] {
            if sdk == Sdk::AnthropicPython && !c.anthropic {
                continue;
            }
            let key = |client: &str| (client.to_owned(), c.name.to_owned());
            let by_sdk = log.get(&key(py_name)).cloned().unwrap_or_default();
            let by_drill = log.get(&key(drill_name)).cloned().unwrap_or_default();
            let call: &Value = calls
                .iter()
                .find(|v| v["sdk"] == py_name && v["case"] == c.name)
                .unwrap_or_else(|| panic!("no {py_name} call for {}", c.name));
            let sdk_end: End = if call["ok"] == true {
                None
            } else {
                call["status"].as_u64()
            };
            let (drill_end, drill_attempts, seq) = drill_ends[&(sdk, c.name)];
            let what = format!("{py_name} {}", c.name);
            if by_sdk.len() != c.attempts || by_drill.len() != c.attempts {
                failures.push(format!(
                    "{what}: attempts: SDK {}, drill {}, expected {}",
                    by_sdk.len(),
                    by_drill.len(),
                    c.attempts
                ));
                continue;
            }
            assert_eq!(drill_attempts as usize, c.attempts, "{what}");
            if sdk_end != drill_end {
                failures.push(format!(
                    "{what}: the SDK ended {sdk_end:?}, the drill {drill_end:?}"
                ));
            }
            let expected_end = c.script.get(c.attempts - 1).map(|(s, _)| u64::from(*s));
            assert_eq!(drill_end, expected_end, "{what}");
            let (gs, gd) = (gaps(&by_sdk), gaps(&by_drill));
            for (k, want) in c.waits.iter().enumerate() {
                if !(close(gs[k], gd[k]) && close(gs[k], *want) && close(gd[k], *want)) {
                    failures.push(format!(
                        "{what}: wait {k}: SDK {:.3} s, drill {:.3} s, expected about {want} s",
                        gs[k], gd[k]
                    ));
                }
            }
            // Both number their attempts; the drill sends its user's own key.
            for (n, (s, d)) in by_sdk.iter().zip(&by_drill).enumerate() {
                let count = |h: &http::HeaderMap| {
                    h.get("x-stainless-retry-count")
                        .and_then(|v| v.to_str().ok())
                        .map(str::to_owned)
                };
                assert_eq!(count(&s.headers), Some(n.to_string()), "{what}");
                assert_eq!(count(&d.headers), Some(n.to_string()), "{what}");
                let user = seq % 100;
                let (name, want) = match sdk {
                    Sdk::OpenaiPython => {
                        ("authorization", format!("Bearer sk-brownout-user-{user}"))
                    }
                    Sdk::AnthropicPython => ("x-api-key", format!("sk-ant-brownout-user-{user}")),
                };
                assert_eq!(
                    d.headers.get(name).and_then(|v| v.to_str().ok()),
                    Some(want.as_str()),
                    "{what}"
                );
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn http_dates_are_formatted_as_imf_fixdate() {
    assert_eq!(http_date(1_445_412_480), "Wed, 21 Oct 2015 07:28:00 GMT");
    assert_eq!(http_date(0), "Thu, 01 Jan 1970 00:00:00 GMT");
    assert_eq!(http_date(951_782_400), "Tue, 29 Feb 2000 00:00:00 GMT");
}
