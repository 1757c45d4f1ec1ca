//! Records when the disk will not take them, and size rotation under load, with
//! the real binary: a 64 KiB tmpfs that fills and empties twice, a file-size limit
//! (RLIMIT_FSIZE) emptied by `copytruncate`, a record directory removed and made
//! again, a file made immutable, and `record.max_size` rotating while requests and
//! SIGUSR1s arrive. In every case traffic keeps flowing, every line in the files
//! is a whole JSON line, every record is either in a file or counted in
//! `brownout_records_dropped_total{reason="write_error"}` (and in status, which
//! agrees), each episode is logged once when it starts and once when it ends, and
//! writing resumes by itself.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use brownout_integration_tests::*;
use tokio::io::AsyncBufReadExt;

/// A running `brownout serve` with its log lines.
struct Serve {
    child: tokio::process::Child,
    port: u16,
    admin: u16,
    logs: Arc<Mutex<Vec<String>>>,
    _upstream: Upstream,
}

/// Start the proxy with `record: {record}` in its config file; `fsize`: a
/// file-size limit in bytes (a multiple of 512), with SIGXFSZ left at its default:
/// brownout must handle it itself, so that the limit shows as EFBIG (a counted
/// write error) rather than killing the process.
async fn serve(dir: &Path, record: &str, fsize: Option<u64>) -> Serve {
    let upstream = Upstream::start(|_req| async { reply(200, "ok") }).await;
    let (port, admin) = (free_port(), free_port());
    let cfg = dir.join("brownout.yaml");
    std::fs::write(
        &cfg,
        format!(
            "listeners: [{{name: default, listen: \"127.0.0.1:{port}\", upstream: \"{}\"}}]\n\
             admin: {{listen: \"127.0.0.1:{admin}\"}}\n\
             record: {record}\n",
            upstream.url()
        ),
    )
    .unwrap();
    let mut cmd = match fsize {
        Some(bytes) => {
            let mut c = tokio::process::Command::new("sh");
            c.arg("-c")
                .arg(format!("ulimit -f {}; exec \"$@\"", bytes / 512))
                .arg("sh")
                .arg(brownout_bin());
            c
        }
        None => tokio::process::Command::new(brownout_bin()),
    };
    let mut child = cmd
        .args(["serve", "--config"])
        .arg(&cfg)
        .env("RUST_LOG", "info")
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("start brownout serve");
    let logs = Arc::new(Mutex::new(Vec::new()));
    let stderr = child.stderr.take().unwrap();
    let sink = logs.clone();
    tokio::spawn(async move {
        let mut lines = tokio::io::BufReader::new(stderr).lines();
        while let Ok(Some(l)) = lines.next_line().await {
            sink.lock().unwrap().push(l);
        }
    });
    let client = http1_client();
    let ready = format!("http://127.0.0.1:{admin}/readyz");
    within(Duration::from_secs(20), "the proxy is ready", async {
        while !send(&client, get(&ready))
            .await
            .is_ok_and(|r| r.status == 200)
        {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await;
    Serve {
        child,
        port,
        admin,
        logs,
        _upstream: upstream,
    }
}

impl Serve {
    /// `n` requests, `conc` at a time; every one must be answered 200.
    async fn hit(&self, n: usize, conc: usize) {
        let url = format!("http://127.0.0.1:{}/v1/x", self.port);
        let mut tasks = Vec::new();
        for t in 0..conc {
            let url = url.clone();
            let share = n / conc + usize::from(t < n % conc);
            tasks.push(tokio::spawn(async move {
                let client = http1_client();
                for _ in 0..share {
                    let r = send(&client, get(&url)).await.expect("an answer");
                    assert_eq!(r.status, 200, "traffic keeps flowing");
                }
            }));
        }
        for t in tasks {
            t.await.unwrap();
        }
    }

    async fn status(&self) -> serde_json::Value {
        let url = format!("http://127.0.0.1:{}/api/v1/status", self.admin);
        send(&http1_client(), get(url)).await.unwrap().json()["records"].clone()
    }

    /// `brownout_records_dropped_total{reason=...}` from `/metrics`.
    async fn metric(&self, reason: &str) -> u64 {
        let url = format!("http://127.0.0.1:{}/metrics", self.admin);
        let body = send(&http1_client(), get(url)).await.unwrap().body;
        let text = String::from_utf8_lossy(&body).into_owned();
        let key = format!("brownout_records_dropped_total{{reason=\"{reason}\"}} ");
        text.lines()
            .find_map(|l| l.strip_prefix(&key))
            .unwrap_or_else(|| panic!("no {key}in {text}"))
            .trim()
            .parse()
            .unwrap()
    }

    /// Wait until the writer has handled `n` records: each is in `files` or lost.
    async fn settle(&self, n: u64, files: &[PathBuf]) -> (Lines, u64) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        loop {
            let s = self.status().await;
            let lost = s["dropped_by_reason"]["write_error"].as_u64().unwrap();
            let written = Lines::whole_records(files).len() as u64;
            if s["submitted"].as_u64() == Some(n) && written + lost == n {
                let lines = Lines::read(files);
                assert_eq!(
                    self.metric("write_error").await,
                    lost,
                    "metric and status agree"
                );
                assert_eq!(self.metric("queue_full").await, 0);
                assert_eq!(s["dropped_by_reason"]["queue_full"], 0);
                assert_eq!(s["dropped"].as_u64(), Some(lost));
                return (lines, lost);
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "{written} records in the files + {lost} lost != {n} exchanges; status {s}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Wait (up to 20 s) until the `records` part of status satisfies `ok`.
    async fn until(&self, what: &str, ok: impl Fn(&serde_json::Value) -> bool) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        loop {
            let s = self.status().await;
            if ok(&s) {
                return;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "timed out: {what}; {s}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    fn logged(&self, what: &str) -> Vec<String> {
        self.logs
            .lock()
            .unwrap()
            .iter()
            .filter(|l| l.contains(what))
            .cloned()
            .collect()
    }

    /// Episodes begun and ended, from the log.
    fn episodes(&self) -> (usize, usize) {
        (
            self.logged("records cannot be written").len(),
            self.logged("records are written again").len(),
        )
    }

    async fn stop(mut self) {
        let pid = self.child.id().unwrap().to_string();
        signal("-TERM", &pid);
        let st = within(Duration::from_secs(20), "exit", self.child.wait())
            .await
            .unwrap();
        assert!(st.success(), "{st}: {:#?}", self.logs.lock().unwrap());
    }
}

fn signal(sig: &str, pid: &str) {
    let st = std::process::Command::new("kill")
        .args([sig, pid])
        .status()
        .expect("run kill");
    assert!(st.success(), "kill {sig} {pid}");
}

/// What record files hold; reading them fails the test on any line that is not
/// whole JSON, and on a file that does not end with a newline.
#[derive(Debug, Default)]
struct Lines {
    ids: Vec<u64>,
    /// Note lines: `(records_dropped, reason)`, in file order.
    notes: Vec<(u64, String)>,
}

impl Lines {
    /// Records written so far, counting whole lines only: the file may be read
    /// while the writer is between the bytes of one `write`, so a poll must not
    /// take a tail in progress for a torn line ([`Lines::read`] checks that, once
    /// the writer is done).
    fn whole_records(files: &[PathBuf]) -> Vec<u64> {
        let mut ids = Vec::new();
        for f in files {
            let Ok(bytes) = std::fs::read(f) else {
                continue;
            };
            let end = bytes.iter().rposition(|b| *b == b'\n').map_or(0, |i| i + 1);
            for l in String::from_utf8_lossy(&bytes[..end]).lines() {
                if let Some(id) = serde_json::from_str::<serde_json::Value>(l)
                    .ok()
                    .and_then(|v| v["id"].as_u64())
                {
                    ids.push(id);
                }
            }
        }
        ids
    }

    fn read(files: &[PathBuf]) -> Lines {
        let mut out = Lines::default();
        for f in files {
            let Ok(bytes) = std::fs::read(f) else {
                continue;
            };
            let text = String::from_utf8(bytes)
                .unwrap_or_else(|e| panic!("{} is not UTF-8 ({e})", f.display()));
            assert!(
                text.is_empty() || text.ends_with('\n'),
                "{} ends in a torn line: {:?}",
                f.display(),
                &text[text.len().saturating_sub(200)..]
            );
            for l in text.lines() {
                let v: serde_json::Value = serde_json::from_str(l)
                    .unwrap_or_else(|e| panic!("{}: not a whole line ({e}): {l:?}", f.display()));
                match v["id"].as_u64() {
                    Some(id) => out.ids.push(id),
                    None => out.notes.push((
                        v["records_dropped"].as_u64().expect("a note's count"),
                        v["reason"].as_str().expect("a note's reason").to_string(),
                    )),
                }
            }
        }
        out
    }

    fn assert_unique(&self) {
        let mut s = self.ids.clone();
        s.sort_unstable();
        s.dedup();
        assert_eq!(s.len(), self.ids.len(), "a record was written twice");
    }

    fn noted(&self, reason: &str) -> u64 {
        self.notes
            .iter()
            .filter(|(_, r)| r == reason)
            .map(|(n, _)| n)
            .sum()
    }
}

/// Unmounts the tmpfs when the test ends, however it ends.
struct Mounted(PathBuf);

impl Mounted {
    /// A tmpfs of `size` at `dir`, or None (with the reason) where this sandbox
    /// cannot mount one (not root, no CAP_SYS_ADMIN).
    fn tmpfs(dir: &Path, size: &str) -> Option<Mounted> {
        std::fs::create_dir_all(dir).unwrap();
        let out = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir)
            .output();
        match out {
            Ok(o) if o.status.success() => Some(Mounted(dir.to_path_buf())),
            Ok(o) => {
                eprintln!(
                    "skipped: cannot mount a tmpfs ({})",
                    String::from_utf8_lossy(&o.stderr).trim()
                );
                None
            }
            Err(e) => {
                eprintln!("skipped: cannot run mount ({e})");
                None
            }
        }
    }
}

impl Drop for Mounted {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg("-l")
            .arg(&self.0)
            .status();
    }
}

/// Fill what is left of the filesystem at `p` (the write fails when it is full).
fn fill(p: &Path) {
    let _ = std::fs::write(p, vec![b'x'; 1 << 20]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_disk_that_fills_and_empties_twice_loses_no_line_and_counts_every_record() {
    let dir = TempDir::new();
    let disk = dir.path().join("disk");
    let Some(_mounted) = Mounted::tmpfs(&disk, "64k") else {
        return;
    };
    let filler = disk.join("filler");
    std::fs::write(&filler, vec![b'x'; 16 * 1024]).unwrap();
    let records = disk.join("records.jsonl");
    let files = [records.clone()];
    let p = serve(
        dir.path(),
        &format!("{{jsonl: \"{}\"}}", records.display()),
        None,
    )
    .await;

    // 1,000 requests on a disk with room for about a hundred records.
    p.hit(1000, 8).await;
    let (lines, lost) = p.settle(1000, &files).await;
    lines.assert_unique();
    assert!(lost > 500, "the disk filled: {lost} lost");
    assert!(lines.ids.len() > 20, "what fitted was written");
    let s = p.status().await;
    assert!(
        s["file_error"]
            .as_str()
            .is_some_and(|e| e.contains("No space left") || e.contains("no room")),
        "status says why: {s}"
    );
    assert_eq!(
        p.episodes(),
        (1, 0),
        "told once: {:#?}",
        p.logs.lock().unwrap()
    );

    // Space returns: writing resumes by itself, with a note of what was lost.
    std::fs::remove_file(&filler).unwrap();
    p.hit(10, 2).await;
    let (after, lost2) = p.settle(1010, &files).await;
    assert_eq!(lost2, lost, "nothing more lost once there is room");
    assert_eq!(after.ids.len(), lines.ids.len() + 10);
    // Notes in the file add up to what was lost (one, or more when a note fitted
    // where a record did not).
    assert_eq!(after.noted("write_error"), lost);
    assert!(!after.notes.is_empty());
    assert_eq!(p.episodes(), (1, 1));
    let end = p.logged("records are written again");
    assert!(
        end[0].contains(&format!("{lost} record(s)")),
        "the end says how many: {end:?}"
    );
    assert!(p.status().await["file_error"].is_null());

    // It fills again, and empties again: a second episode, told once more.
    let filler2 = disk.join("filler2");
    fill(&filler2);
    p.hit(50, 4).await;
    let (_, lost3) = p.settle(1060, &files).await;
    assert!(lost3 > lost, "the second fill lost records too");
    std::fs::remove_file(&filler2).unwrap();
    p.hit(5, 1).await;
    let (last, lost4) = p.settle(1065, &files).await;
    last.assert_unique();
    assert_eq!(lost4, lost3);
    assert_eq!(last.ids.len() as u64 + lost4, 1065);
    assert_eq!(last.noted("write_error"), lost4, "the notes add up");
    assert_eq!(p.episodes(), (2, 2), "{:#?}", p.logs.lock().unwrap());

    // `brownout report` says the file is incomplete, and why.
    let out = std::process::Command::new(brownout_bin())
        .arg("report")
        .arg(&records)
        .arg("--report-dir")
        .arg(dir.path().join("report"))
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        text.contains(&format!(
            "the proxy noted {lost4} record(s) it could not write (write_error: {lost4})"
        )),
        "{text}"
    );
    assert!(text.contains("incomplete"), "{text}");
    p.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_file_size_limit_tears_no_line_and_copytruncate_makes_room_again() {
    let dir = TempDir::new();
    let records = dir.path().join("records.jsonl");
    let copy = dir.path().join("records.jsonl.1");
    let limit = 32 * 1024;
    let p = serve(
        dir.path(),
        &format!("{{jsonl: \"{}\"}}", records.display()),
        Some(limit),
    )
    .await;
    p.hit(300, 4).await;
    let (lines, lost) = p.settle(300, std::slice::from_ref(&records)).await;
    lines.assert_unique();
    assert!(lost > 100, "the limit was reached: {lost} lost");
    let size = std::fs::metadata(&records).unwrap().len();
    assert!(size <= limit, "{size}");
    assert_eq!(p.episodes(), (1, 0));

    // copytruncate, as logrotate does it: copy, then truncate under the writer.
    std::fs::copy(&records, &copy).unwrap();
    std::fs::OpenOptions::new()
        .write(true)
        .open(&records)
        .unwrap()
        .set_len(0)
        .unwrap();
    p.hit(10, 2).await;
    let both = [copy.clone(), records.clone()];
    let (all, lost2) = p.settle(310, &both).await;
    all.assert_unique();
    assert_eq!(lost2, lost);
    let fresh = Lines::read(std::slice::from_ref(&records));
    assert_eq!(fresh.ids.len(), 10, "appended from the new end of the file");
    assert_eq!(all.noted("write_error"), lost, "the notes add up");
    assert!(!std::fs::read(&records).unwrap().contains(&0), "no hole");
    assert_eq!(p.episodes(), (1, 1));
    p.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_record_directory_removed_and_made_again() {
    let dir = TempDir::new();
    let logs = dir.path().join("logs");
    std::fs::create_dir(&logs).unwrap();
    let records = logs.join("records.jsonl");
    let files = [records.clone()];
    let p = serve(
        dir.path(),
        &format!("{{jsonl: \"{}\"}}", records.display()),
        None,
    )
    .await;
    p.hit(20, 2).await;
    p.settle(20, &files).await;
    // Gone with its directory: the 30 records after it are lost, and counted.
    std::fs::remove_dir_all(&logs).unwrap();
    p.hit(30, 3).await;
    p.until("30 records counted lost", |s| {
        s["submitted"] == 50 && s["dropped_by_reason"]["write_error"] == 30
    })
    .await;
    let err = p.status().await["file_error"].clone();
    assert!(
        err.as_str()
            .is_some_and(|e| e.contains("was removed and cannot be created again")),
        "{err}"
    );
    assert_eq!(p.episodes(), (1, 0));
    // The directory is back: a new file, with the note first.
    std::fs::create_dir(&logs).unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    p.hit(10, 2).await;
    p.until("10 records in the new file", |_| {
        Lines::whole_records(&files).len() == 10
    })
    .await;
    let fresh = Lines::read(&files);
    assert_eq!(fresh.notes, vec![(30, "write_error".to_string())]);
    assert_eq!(p.metric("write_error").await, 30);
    assert_eq!(p.episodes(), (1, 1));

    // Removed alone (its directory stays): a new file at once, nothing lost.
    std::fs::remove_file(&records).unwrap();
    p.hit(5, 1).await;
    p.until("5 records in the file made again", |_| {
        Lines::whole_records(&files).len() == 5
    })
    .await;
    assert_eq!(p.metric("write_error").await, 30);
    p.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_record_file_made_immutable_then_writable_again() {
    let dir = TempDir::new();
    let records = dir.path().join("records.jsonl");
    let files = [records.clone()];
    let p = serve(
        dir.path(),
        &format!("{{jsonl: \"{}\"}}", records.display()),
        None,
    )
    .await;
    p.hit(10, 2).await;
    p.settle(10, &files).await;
    // chmod a-w does not stop a process writing through a file it has open (and
    // root ignores it): an immutable file refuses the writes themselves.
    let chattr = |flag: &str| {
        std::process::Command::new("chattr")
            .arg(flag)
            .arg(&records)
            .output()
            .is_ok_and(|o| o.status.success())
    };
    if !chattr("+i") {
        eprintln!("skipped: cannot make the record file immutable here (chattr +i needs root and ext4, xfs, btrfs or tmpfs)");
        p.stop().await;
        return;
    }
    struct Mutable<'a>(&'a dyn Fn(&str) -> bool);
    impl Drop for Mutable<'_> {
        fn drop(&mut self) {
            (self.0)("-i");
        }
    }
    let _undo = Mutable(&chattr);
    p.hit(20, 2).await;
    let (_, lost) = p.settle(30, &files).await;
    assert_eq!(lost, 20);
    assert!(chattr("-i"));
    p.hit(5, 1).await;
    let (lines, lost) = p.settle(35, &files).await;
    assert_eq!(lost, 20);
    assert_eq!(lines.ids.len(), 15);
    assert_eq!(lines.notes, vec![(20, "write_error".to_string())]);
    assert_eq!(p.episodes(), (1, 1));
    p.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn size_rotation_under_load_and_sigusr1_keeps_every_record_exactly_once() {
    let dir = TempDir::new();
    let records = dir.path().join("records.jsonl");
    let max = 32 * 1024u64;
    let p = serve(
        dir.path(),
        &format!(
            "{{jsonl: \"{}\", max_size: 32KiB, keep: 200}}",
            records.display()
        ),
        None,
    )
    .await;
    let pid = p.child.id().unwrap().to_string();
    let storm = {
        let pid = pid.clone();
        tokio::spawn(async move {
            for _ in 0..20 {
                tokio::time::sleep(Duration::from_millis(40)).await;
                signal("-USR1", &pid);
            }
        })
    };
    p.hit(2000, 16).await;
    storm.await.unwrap();
    let numbered = |n: usize| PathBuf::from(format!("{}.{n}", records.display()));
    let files: Vec<PathBuf> = (1..=200)
        .rev()
        .map(numbered)
        .chain([records.clone()])
        .collect();
    let (lines, lost) = p.settle(2000, &files).await;
    assert_eq!(lost, 0);
    lines.assert_unique();
    assert_eq!(lines.ids.len(), 2000);
    assert!(lines.notes.is_empty());
    let rotated = files.iter().filter(|f| f.exists()).count() - 1;
    assert!(rotated >= 10, "several rotations: {rotated}");
    assert!(!numbered(rotated + 1).exists(), "numbered without gaps");
    for f in files.iter().filter(|f| f.exists()) {
        let len = std::fs::metadata(f).unwrap().len();
        assert!(len <= max, "{} is {len} bytes", f.display());
    }
    assert!(p.logged("cannot rotate").is_empty());
    assert_eq!(p.episodes(), (0, 0));
    p.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn size_rotation_keeps_only_the_newest_files() {
    let dir = TempDir::new();
    let records = dir.path().join("records.jsonl");
    let p = serve(
        dir.path(),
        &format!(
            "{{jsonl: \"{}\", max_size: 4KiB, keep: 2}}",
            records.display()
        ),
        None,
    )
    .await;
    p.hit(200, 4).await;
    let numbered = |n: usize| PathBuf::from(format!("{}.{n}", records.display()));
    let files = [numbered(2), numbered(1), records.clone()];
    p.until("200 records submitted", |s| s["submitted"] == 200)
        .await;
    // The newest record (id 199 or 200, whichever the count starts from) is written,
    // and the writer has finished its last batch.
    p.until("the last records written", |_| {
        Lines::whole_records(&files).iter().max() >= Some(&199)
    })
    .await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(numbered(2).exists() && !numbered(3).exists());
    let lines = Lines::read(&files);
    lines.assert_unique();
    assert!(lines.ids.len() < 200, "older files were removed");
    // The newest records are the ones kept.
    let mut ids = lines.ids.clone();
    ids.sort_unstable();
    assert!(ids.last() >= Some(&190), "{ids:?}");
    p.stop().await;
}
