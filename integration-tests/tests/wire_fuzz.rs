//! Seeded random wire input against a running proxy: mutated request heads and
//! bodies from clients, mutated answers from an upstream. These reach the HTTP/1.1
//! fast path first, and through it the full path it hands unusual input to.
//!
//! Whatever arrives, nothing may panic or hang, the proxy keeps serving, every
//! request the upstream saw has its record, and no record is dropped.
//!
//! `BROWNOUT_WIRE_CASES` (default 160) sets the cases per test and
//! `BROWNOUT_WIRE_SEED` (default 1) the seed; a long run is, for example,
//! `BROWNOUT_WIRE_CASES=20000 cargo nextest run -p brownout-integration-tests --test wire_fuzz`.
//! A failure prints the seed and the case's bytes.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Once};
use std::time::Duration;

use brownout_faults::duration::DurationStr;
use brownout_integration_tests::*;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::task::JoinSet;

/// Cases in flight at once.
const PARALLEL: usize = 48;
/// How long one case may take, end to end (the proxy's timeouts are set far below).
const CASE_LIMIT: Duration = Duration::from_secs(10);

static PANICS: AtomicUsize = AtomicUsize::new(0);

/// Count every panic in this process (the proxy's tasks included), keeping the
/// default report.
fn count_panics() {
    static HOOK: Once = Once::new();
    HOOK.call_once(|| {
        let default = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            PANICS.fetch_add(1, Ordering::SeqCst);
            default(info);
        }));
    });
}

fn env_or(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Bytes that matter to an HTTP/1.1 parser, and some that should never appear.
const ALPHABET: &[u8] = b"\r\n:; \t,=0123456789abcdefABCDEF-/?%\"\x00\x7f\xff\x80GETPOSThtp.1";

/// One to four random edits: replace, insert, delete, duplicate or cut.
fn mutate(rng: &mut ChaCha8Rng, template: &[u8]) -> Vec<u8> {
    let mut b = template.to_vec();
    for _ in 0..rng.random_range(1..=4) {
        let len = b.len();
        let at = rng.random_range(0..=len);
        match rng.random_range(0..6) {
            0 if at < len => b[at] = ALPHABET[rng.random_range(0..ALPHABET.len())],
            1 => {
                let n = rng.random_range(1..=8);
                for _ in 0..n {
                    let c = ALPHABET[rng.random_range(0..ALPHABET.len())];
                    b.insert(at.min(b.len()), c);
                }
            }
            2 if at < len => {
                let end = rng.random_range(at..=len.min(at + 16));
                b.drain(at..end);
            }
            3 if at < len => {
                // Repeat a slice: duplicate headers, doubled lengths, long lines.
                let end = rng.random_range(at..=len.min(at + 40));
                let piece = b[at..end].to_vec();
                let most = if rng.random_bool(0.1) { 400 } else { 3 };
                let times = rng.random_range(1..=most);
                for _ in 0..times {
                    b.splice(end..end, piece.iter().copied());
                }
            }
            4 => b.truncate(at),
            _ => {
                let i = rng.random_range(0..len.max(1));
                if i < b.len() {
                    b[i] = rng.random();
                }
            }
        }
    }
    b
}

fn show(b: &[u8]) -> String {
    String::from_utf8_lossy(&b[..b.len().min(600)])
        .escape_debug()
        .to_string()
}

/// Write `bytes`, close the writing half when `half_close` (a client that leaves,
/// or one that says it has no more to send), read until the proxy closes. `Err`
/// when that takes longer than `CASE_LIMIT`.
async fn client_case(
    addr: std::net::SocketAddr,
    bytes: Vec<u8>,
    half_close: bool,
) -> Result<Vec<u8>, Vec<u8>> {
    let run = async {
        let mut c = TcpStream::connect(addr).await.expect("connect");
        // The proxy may close early (a 400) and reset the rest: fine.
        let _ = c.write_all(&bytes).await;
        if half_close {
            let _ = c.shutdown().await;
        }
        let mut raw = Vec::new();
        let _ = c.read_to_end(&mut raw).await;
        raw
    };
    tokio::time::timeout(CASE_LIMIT, run)
        .await
        .map_err(|_| bytes.clone())
}

/// A finished case: its index and what the client read, or (on a hang) its bytes.
type CaseEnd = Result<(u64, Vec<u8>), Vec<u8>>;

/// Run the cases against `addr`, `PARALLEL` at a time (a sliding window), passing
/// each answer to `check`. Panics, naming the seed and the bytes, on a case that
/// neither answers nor closes within `CASE_LIMIT`.
async fn run_cases(
    addr: std::net::SocketAddr,
    seed: u64,
    cases: impl Iterator<Item = (u64, Vec<u8>, bool)>,
    mut check: impl FnMut(u64, &[u8]),
) {
    let mut set = JoinSet::new();
    let mut settle = |done: Result<CaseEnd, _>| match done.expect("case task") {
        Ok((i, raw)) => check(i, &raw),
        Err(bytes) => panic!(
            "seed {seed}: the proxy neither answered nor closed within {CASE_LIMIT:?} for {}",
            show(&bytes)
        ),
    };
    for (i, bytes, half_close) in cases {
        set.spawn(async move {
            client_case(addr, bytes, half_close)
                .await
                .map(|raw| (i, raw))
        });
        if set.len() >= PARALLEL {
            if let Some(done) = set.join_next().await {
                settle(done);
            }
        }
    }
    while let Some(done) = set.join_next().await {
        settle(done);
    }
}

/// An upstream that counts the request heads it receives and answers each with a
/// short body, closing after it.
async fn counting_upstream() -> (RawUpstream, Arc<AtomicUsize>) {
    let heads = Arc::new(AtomicUsize::new(0));
    let seen = heads.clone();
    let up = RawUpstream::start(move |mut s| {
        let seen = seen.clone();
        async move {
            let mut buf = Vec::new();
            if read_until_head(&mut s, &mut buf).await.is_none() {
                return;
            }
            seen.fetch_add(1, Ordering::SeqCst);
            let _ = s
                .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok")
                .await;
        }
    })
    .await;
    (up, heads)
}

fn quick_limits(l: &mut brownout::config::LimitsConfig) {
    let ms = |n| DurationStr(Duration::from_millis(n));
    l.header_timeout = ms(1000);
    l.idle_timeout = ms(1000);
    l.upstream_timeout = ms(2000);
    l.upstream_idle_timeout = ms(2000);
}

const REQUESTS: &[&[u8]] = &[
    b"GET /a HTTP/1.1\r\nhost: x\r\n\r\n",
    b"POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: 27\r\n\r\n{\"model\":\"m\",\"stream\":true}",
    b"POST /c HTTP/1.1\r\nhost: x\r\ntransfer-encoding: chunked\r\n\r\n5;e=1\r\nhello\r\n0\r\nx-t: 1\r\n\r\n",
    b"GET /p1 HTTP/1.1\r\nhost: x\r\nconnection: keep-alive\r\nx-a: 1\r\n\r\nGET /p2 HTTP/1.1\r\nhost: x\r\n\r\n",
    b"GET /h HTTP/1.1\r\nhost: x\r\nexpect: 100-continue\r\nupgrade: websocket\r\nconnection: upgrade\r\n\r\n",
    b"GET /q?x=%20&y=1 HTTP/1.0\r\nhost: x\r\n\r\n",
];

/// Mutated requests, through a proxy with the fast path on or off: nothing panics
/// or hangs, the proxy still serves, every forwarded request has its record.
async fn mutated_requests(fast_path: bool) {
    count_panics();
    let cases = env_or("BROWNOUT_WIRE_CASES", 160);
    let seed = env_or("BROWNOUT_WIRE_SEED", 1);
    let (up, heads) = counting_upstream().await;
    let proxy = ProxyBuilder::new(up.url())
        .limits(quick_limits)
        .config(|c| c.fast_path = fast_path)
        .start()
        .await;
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut answered = 0usize;
    let inputs = (0..cases).map(|i| {
        let bytes = mutate(&mut rng, REQUESTS[i as usize % REQUESTS.len()]);
        (i, bytes, rng.random_bool(0.3))
    });
    run_cases(proxy.addr, seed, inputs, |_, raw| {
        answered += usize::from(raw.starts_with(b"HTTP/1."));
    })
    .await;
    assert_eq!(
        PANICS.load(Ordering::SeqCst),
        0,
        "seed {seed}: something panicked"
    );
    // Still serving.
    let r = send(&http1_client(), get(proxy.url("/after")))
        .await
        .expect("a clean request");
    assert_eq!(r.status, 200);
    let rec = &proxy.shared().recorder;
    rec.settle(Duration::from_secs(5));
    let forwarded = heads.load(Ordering::SeqCst);
    assert!(
        rec.submitted() as usize >= forwarded,
        "seed {seed}: the upstream saw {forwarded} requests but only {} records were written",
        rec.submitted()
    );
    assert_eq!(rec.dropped(), 0);
    assert!(
        answered > 0 && forwarded > 0,
        "the mutations left nothing valid: {answered} answered, {forwarded} forwarded"
    );
    eprintln!("{cases} mutated requests (seed {seed}, fast path {fast_path}): {answered} answered, {forwarded} forwarded, {} records", rec.submitted());
    up.check();
}

const ANSWERS: &[&[u8]] = &[
    b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 11\r\n\r\n{\"ok\":true}",
    b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n10\r\ndata: {\"a\":1}\n\n\r\n7\r\ndata: [\r\n8\r\nDONE]\n\n\r\n0\r\n\r\n",
    b"HTTP/1.1 103 Early Hints\r\nlink: </a>\r\n\r\nHTTP/1.1 204 No Content\r\nx-a: 1\r\n\r\n",
    b"HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\n\r\nuntil the close",
    b"HTTP/1.1 429 Too Many Requests\r\nretry-after: 1\r\ncontent-length: 4\r\nconnection: keep-alive\r\n\r\nslow",
];

/// Mutated answers, through a proxy with the fast path on or off: nothing panics
/// or hangs, the client gets HTTP/1.1 or a close, one record per request.
async fn mutated_answers(fast_path: bool) {
    count_panics();
    let cases = env_or("BROWNOUT_WIRE_CASES", 160);
    let seed = env_or("BROWNOUT_WIRE_SEED", 1);
    // Each case's answer is chosen from its path, so the upstream needs no state.
    let answers: Arc<Vec<Vec<u8>>> = {
        let mut rng = ChaCha8Rng::seed_from_u64(seed ^ 0xa5a5);
        Arc::new(
            (0..cases)
                .map(|i| mutate(&mut rng, ANSWERS[i as usize % ANSWERS.len()]))
                .collect(),
        )
    };
    let table = answers.clone();
    let up = RawUpstream::start(move |mut s| {
        let table = table.clone();
        async move {
            let mut buf = Vec::new();
            let Some(end) = read_until_head(&mut s, &mut buf).await else {
                return;
            };
            let head = String::from_utf8_lossy(&buf[..end]).into_owned();
            let case: usize = head
                .strip_prefix("GET /case/")
                .and_then(|r| r.split(' ').next())
                .and_then(|n| n.parse().ok())
                .unwrap_or(0);
            if let Some(a) = table.get(case) {
                let _ = s.write_all(a).await;
            }
            // Closing ends a close-delimited answer and cuts any other short.
        }
    })
    .await;
    let dir = TempDir::new();
    let record_file = dir.join("records.jsonl");
    let proxy = ProxyBuilder::new(up.url())
        .record(&record_file)
        .limits(quick_limits)
        .config(|c| c.fast_path = fast_path)
        .start()
        .await;
    let inputs = (0..cases).map(|i| {
        let req =
            format!("GET /case/{i} HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n").into_bytes();
        // Most wait for the answer; one in ten says it has nothing more to send
        // (request and FIN together: hyper may then drop the request unanswered,
        // and the record must still be there).
        (i, req, i % 10 == 9)
    });
    let mut got = std::collections::HashMap::new();
    run_cases(proxy.addr, seed, inputs, |i, raw| {
        got.insert(i, raw.len());
        assert!(
            raw.is_empty() || raw.starts_with(b"HTTP/1.1 "),
            "seed {seed}, case {i}: the client got something that is not HTTP/1.1: {}",
            show(raw)
        )
    })
    .await;
    assert_eq!(
        PANICS.load(Ordering::SeqCst),
        0,
        "seed {seed}: something panicked"
    );
    let rec = &proxy.shared().recorder;
    // One record per request, whatever its answer did.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while rec.submitted() < cases && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    rec.settle(Duration::from_secs(5));
    if rec.submitted() != cases {
        // Name the cases without a record, with the answers they got.
        let written = std::fs::read_to_string(&record_file).unwrap_or_default();
        let seen: std::collections::HashSet<String> = written
            .lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .filter_map(|r| r["path"].as_str().map(str::to_string))
            .collect();
        let missing: Vec<String> = (0..cases as usize)
            .filter(|i| !seen.contains(&format!("/case/{i}")))
            .take(5)
            .map(|i| {
                format!(
                    "case {i}: the client read {:?} bytes; the answer was {}",
                    got.get(&(i as u64)),
                    show(&answers[i])
                )
            })
            .collect();
        panic!(
            "seed {seed}, fast path {fast_path}: {} records for {cases} requests; without one: {missing:#?}",
            rec.submitted()
        );
    }
    assert_eq!(rec.dropped(), 0);
    let outcomes = proxy.records().iter().fold(
        std::collections::BTreeMap::<String, usize>::new(),
        |mut m, r| {
            *m.entry(r["outcome"].as_str().unwrap_or("?").to_string())
                .or_default() += 1;
            m
        },
    );
    eprintln!(
        "{cases} mutated answers (seed {seed}, fast path {fast_path}): outcomes of the last 1000 records {outcomes:?}"
    );
    up.check();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mutated_requests_never_panic_or_hang_and_every_forwarded_one_is_recorded() {
    mutated_requests(true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mutated_requests_through_hyper_alone_are_handled_the_same() {
    mutated_requests(false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mutated_answers_never_panic_or_hang_and_every_request_is_recorded_once() {
    mutated_answers(true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mutated_answers_through_hyper_alone_are_handled_the_same() {
    mutated_answers(false).await;
}
