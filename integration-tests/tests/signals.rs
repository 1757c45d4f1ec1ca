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
