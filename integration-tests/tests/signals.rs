//! What a log rotator and an operator send a running `brownout serve`: SIGUSR1
//! reopens the record file (records before it in the moved file, after it in the
//! new one, none lost or doubled), SIGHUP re-reads the profile, neither stops the
//! proxy, and `--pid-file` says whom to signal. The real binary, real signals.

use std::path::Path;
use std::time::Duration;

use brownout_integration_tests::*;

fn lines(p: &Path) -> usize {
    std::fs::read_to_string(p).map_or(0, |s| s.lines().count())
}

async fn until(what: &str, mut ok: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while !ok() {
        assert!(tokio::time::Instant::now() < deadline, "timed out: {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn kill(sig: &str, pid: &str) {
    let st = std::process::Command::new("kill")
        .args([sig, pid])
        .status()
        .expect("run kill");
    assert!(st.success(), "kill {sig} {pid}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigusr1_reopens_records_and_sighup_rereads_the_profile_without_stopping() {
    let upstream = Upstream::start(|_req| async { reply(200, "ok") }).await;
    let dir = TempDir::new();
    let records = dir.path().join("records.jsonl");
    let pid_file = dir.path().join("brownout.pid");
    let profile = dir.path().join("profile.yaml");
    std::fs::write(&profile, "version: 1\nname: quiet\nrules: []\n").unwrap();
    let port = free_port();
    let admin = free_port();
    let mut child = tokio::process::Command::new(brownout_bin())
        .args(["serve", "--upstream", &upstream.url()])
        .args(["--listen", &format!("127.0.0.1:{port}")])
        .args(["--admin", &format!("127.0.0.1:{admin}")])
        .arg("--record")
        .arg(&records)
        .arg("--pid-file")
        .arg(&pid_file)
        .arg("--profile")
        .arg(&profile)
        .kill_on_drop(true)
        .spawn()
        .expect("start brownout serve");
    let client = http1_client();
    let url = format!("http://127.0.0.1:{port}/");
    until("the proxy answers", || pid_file.exists()).await;
    within(Duration::from_secs(20), "first answer", async {
        while !send(&client, get(&url))
            .await
            .is_ok_and(|r| r.status == 200)
        {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await;
    let pid = std::fs::read_to_string(&pid_file)
        .unwrap()
        .trim()
        .to_string();
    assert_eq!(
        pid,
        child.id().unwrap().to_string(),
        "--pid-file names the process"
    );
    for _ in 0..4 {
        assert_eq!(send(&client, get(&url)).await.unwrap().status, 200);
    }
    until("5 records written", || lines(&records) == 5).await;

    // Rotate as logrotate does: move the file, then SIGUSR1.
    let rotated = dir.path().join("records.jsonl.1");
    std::fs::rename(&records, &rotated).unwrap();
    kill("-USR1", &pid);
    until("the record file is opened again", || records.exists()).await;
    for _ in 0..5 {
        assert_eq!(send(&client, get(&url)).await.unwrap().status, 200);
    }
    until("5 records in the new file", || lines(&records) == 5).await;
    assert_eq!(
        lines(&rotated),
        5,
        "the rotated file keeps the records before the signal"
    );
    let ids = |p: &Path| -> Vec<u64> {
        std::fs::read_to_string(p)
            .unwrap()
            .lines()
            .map(|l| {
                serde_json::from_str::<serde_json::Value>(l).unwrap()["id"]
                    .as_u64()
                    .unwrap()
            })
            .collect()
    };
    let mut all = ids(&rotated);
    all.extend(ids(&records));
    let mut sorted = all.clone();
    sorted.sort();
    sorted.dedup();
    assert_eq!(sorted.len(), 10, "no record lost or doubled: {all:?}");

    // SIGHUP re-reads the profile; an invalid one is refused and reported.
    std::fs::write(
        &profile,
        "version: 1\nname: broken\nrules: [{name: x, faults: [{type: nosuch}]}]\n",
    )
    .unwrap();
    kill("-HUP", &pid);
    let status = format!("http://127.0.0.1:{admin}/api/v1/status");
    within(
        Duration::from_secs(20),
        "the reload error shows in status",
        async {
            loop {
                let r = send(&client, get(&status)).await.unwrap();
                if r.json()["last_reload_error"].is_string() {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        },
    )
    .await;
    assert_eq!(
        send(&client, get(&url)).await.unwrap().status,
        200,
        "still serving"
    );
    assert!(
        child.try_wait().unwrap().is_none(),
        "a signal stopped the proxy"
    );

    kill("-TERM", &pid);
    let st = within(Duration::from_secs(20), "exit", child.wait())
        .await
        .unwrap();
    assert!(st.success(), "{st}");
    assert!(!pid_file.exists(), "the pid file is removed on exit");
}

/// What a rotator and a config-management loop gone wrong send: hundreds of
/// SIGUSR1 and SIGHUP in a burst, with traffic flowing and the record file
/// moved away in the middle. The proxy keeps answering, and every exchange is in
/// exactly one of the two files, whole.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signal_storms_stop_nothing_and_lose_no_record() {
    let upstream = Upstream::start(|_req| async { reply(200, "ok") }).await;
    let dir = TempDir::new();
    let records = dir.path().join("records.jsonl");
    let pid_file = dir.path().join("brownout.pid");
    let profile = dir.path().join("profile.yaml");
    std::fs::write(&profile, "version: 1\nname: quiet\nrules: []\n").unwrap();
    let port = free_port();
    let mut child = tokio::process::Command::new(brownout_bin())
        .args(["serve", "--upstream", &upstream.url()])
        .args(["--listen", &format!("127.0.0.1:{port}")])
        .arg("--record")
        .arg(&records)
        .arg("--pid-file")
        .arg(&pid_file)
        .arg("--profile")
        .arg(&profile)
        // Its own admin port: the default one may be taken on a shared machine.
        .args(["--admin", &format!("127.0.0.1:{}", free_port())])
        .env("RUST_LOG", "warn")
        .kill_on_drop(true)
        .spawn()
        .expect("start brownout serve");
    let url = format!("http://127.0.0.1:{port}/");
    until("the pid file", || pid_file.exists()).await;
    let client = http1_client();
    within(Duration::from_secs(20), "first answer", async {
        while !send(&client, get(&url))
            .await
            .is_ok_and(|r| r.status == 200)
        {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await;
    let pid = std::fs::read_to_string(&pid_file)
        .unwrap()
        .trim()
        .to_string();

    // Traffic on two connections while the storm blows.
    let load = |n: usize| {
        let (client, url) = (http1_client(), url.clone());
        tokio::spawn(async move {
            let mut ok = 0;
            for _ in 0..n {
                if send(&client, get(&url))
                    .await
                    .is_ok_and(|r| r.status == 200)
                {
                    ok += 1;
                }
            }
            ok
        })
    };
    let (a, b) = (load(300), load(300));
    let rotated = dir.path().join("records.jsonl.1");
    for i in 0..200 {
        if i == 100 {
            std::fs::rename(&records, &rotated).unwrap();
        }
        let sig = if i % 2 == 0 { "-USR1" } else { "-HUP" };
        let _ = std::process::Command::new("kill")
            .args([sig, &pid])
            .status();
    }
    let ok = a.await.unwrap() + b.await.unwrap();
    assert_eq!(ok, 600, "every request was answered during the storm");
    assert!(
        child.try_wait().unwrap().is_none(),
        "a signal stopped the proxy"
    );

    // Every exchange (the first one too) in exactly one file, as whole lines.
    let total = 601;
    until("every record written", || {
        lines(&records) + lines(&rotated) >= total
    })
    .await;
    let mut ids = Vec::new();
    for p in [&rotated, &records] {
        let text = std::fs::read_to_string(p).unwrap();
        assert!(
            text.is_empty() || text.ends_with('\n'),
            "a torn line in {}",
            p.display()
        );
        for l in text.lines() {
            let v: serde_json::Value =
                serde_json::from_str(l).unwrap_or_else(|e| panic!("not a record ({e}): {l}"));
            ids.push(v["id"].as_u64().unwrap());
        }
    }
    ids.sort_unstable();
    let n = ids.len();
    ids.dedup();
    assert_eq!(ids.len(), n, "a record written twice");
    assert_eq!(n, total, "records lost");
    kill("-TERM", &pid);
    let st = within(Duration::from_secs(20), "exit", child.wait())
        .await
        .unwrap();
    assert!(st.success(), "{st}");
}
