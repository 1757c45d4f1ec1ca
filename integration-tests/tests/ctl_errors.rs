//! `brownout ctl` mistakes a game-day operator makes at the terminal get answers
//! that say what to do: a phase that does not exist lists the profile's phases,
//! and a broken profile's errors are placed in the file that was sent.

use std::time::Duration;

use brownout_integration_tests::*;

const PROFILE: &str = "\
version: 1
name: phased
phases:
  - {name: calm, duration: 1m}
  - {name: storm, duration: 1m}
";

async fn ctl(admin: &str, args: &[&str]) -> std::process::Output {
    let out = tokio::process::Command::new(brownout_bin())
        .arg("ctl")
        .arg("--admin")
        .arg(admin)
        .args(args)
        .env("BROWNOUT_ADMIN_TOKEN", "ctl-token")
        .output();
    within(Duration::from_secs(20), "brownout ctl", out)
        .await
        .expect("run brownout ctl")
}

#[tokio::test]
async fn ctl_names_the_phases_and_the_file() {
    let (up, _) = Upstream::echo().await;
    let proxy = ProxyBuilder::new(up.url())
        .profile(PROFILE)
        .admin_token("ctl-token")
        .start()
        .await;
    let admin = proxy.admin_url("");

    let out = ctl(&admin, &["phase", "stormy"]).await;
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("no such phase `stormy`"), "{err}");
    assert!(err.contains("phases: calm, storm, or `next`"), "{err}");

    let dir = TempDir::new();
    let bad = dir.join("broken.yaml");
    std::fs::write(
        &bad,
        "version: 1\nname: b\nrules:\n  - faults: [{type: eror}]\n  - faults: [{type: delay, duration: soon}]\n",
    )
    .unwrap();
    let out = ctl(&admin, &["apply", bad.to_str().unwrap()]).await;
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    let at = format!("{}:4:", bad.display());
    assert!(
        err.contains(&at),
        "errors are placed in the file sent: {err}"
    );
    assert!(!err.contains("<profile>"), "{err}");
    assert!(err.contains("did you mean `error`?"), "{err}");
    // The good profile stays in force.
    let out = ctl(&admin, &["phase", "storm"]).await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    proxy.shutdown().await;
}
