//! What the sim's tests with real Python clients share: the cached `sdk`
//! environment's python, and running a script whose answer is one `RESULT <json>`
//! line.

// Each test binary that includes this module uses a part of it.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;

pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_default()
}

/// The python of the cached `sdk` environment (integration-tests/python/venv.sh,
/// which builds it from the pinned requirements on first use).
pub fn sdk_python() -> PathBuf {
    let out = Command::new("bash")
        .arg(repo_root().join("integration-tests/python/venv.sh"))
        .arg("sdk")
        .current_dir(repo_root())
        .stderr(std::process::Stdio::inherit())
        .output()
        .expect("run integration-tests/python/venv.sh");
    assert!(
        out.status.success(),
        "cannot build the `sdk` Python environment (integration-tests/python/venv.sh sdk)"
    );
    PathBuf::from(String::from_utf8_lossy(&out.stdout).trim()).join("bin/python")
}

/// Run `python args...` (with `envs`, and kept off any proxy configured in the
/// environment) and return its `RESULT` line's JSON, with its stderr; a failing
/// script fails the test with its output.
pub async fn run_result(
    args: Vec<String>,
    envs: Vec<(&'static str, String)>,
) -> (serde_json::Value, String) {
    let output = tokio::task::spawn_blocking(move || {
        let mut cmd = Command::new(sdk_python());
        cmd.args(&args)
            .envs(envs)
            .env("NO_PROXY", "*")
            .env("ANONYMIZED_TELEMETRY", "False");
        for v in [
            "HTTP_PROXY",
            "HTTPS_PROXY",
            "http_proxy",
            "https_proxy",
            "ALL_PROXY",
            "all_proxy",
        ] {
            cmd.env_remove(v);
        }
        cmd.output()
    })
    .await
    .unwrap()
    .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert!(
        output.status.success(),
        "python failed:\n{stdout}\n{stderr}"
    );
    let line = stdout
        .lines()
        .find_map(|l| l.strip_prefix("RESULT "))
        .unwrap_or_else(|| panic!("no result line:\n{stdout}\n{stderr}"));
    // Shown with `--nocapture`, and with any failure after.
    println!("RESULT {line}");
    (serde_json::from_str(line).unwrap(), stderr)
}
