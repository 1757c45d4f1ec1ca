//! Every shipped profile under `profiles/` loads and passes validation, and reads
//! back sensibly through `explain`.

use std::path::PathBuf;
use std::time::Duration;

use brownout_faults::explain::explain;
use brownout_faults::validate::load_profile_file;

fn profiles_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join("profiles")
}

fn shipped() -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(profiles_dir())
        .expect("profiles/ is readable")
        .map(|e| e.expect("directory entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml" || e == "yml"))
        .collect();
    files.sort();
    files
}

#[test]
fn every_shipped_profile_validates() {
    let files = shipped();
    assert!(
        files.len() >= 5,
        "expected demo plus at least four scenarios, found {files:?}"
    );
    let mut failures = Vec::new();
    for path in &files {
        match load_profile_file(path) {
            Ok(profile) => {
                let text = explain(&profile);
                assert!(text.contains(&profile.name), "{text}");
            }
            Err(diags) => {
                failures.extend(diags.iter().map(ToString::to_string));
            }
        }
    }
    assert!(
        failures.is_empty(),
        "shipped profiles must validate:\n{}",
        failures.join("\n")
    );
}

#[test]
fn every_shipped_profile_explains_itself_in_a_header() {
    for path in shipped() {
        let text = std::fs::read_to_string(&path).expect("readable");
        assert!(
            text.starts_with("# yaml-language-server: $schema=../docs/profile.schema.json"),
            "{} should start with the schema modeline",
            path.display()
        );
        assert!(
            text.contains("What to expect"),
            "{} needs a `What to expect` header",
            path.display()
        );
    }
}

#[test]
fn demo_is_baseline_faults_recovery() {
    let p = load_profile_file(&profiles_dir().join("demo.yaml")).expect("demo validates");
    let phases: Vec<(&str, Duration)> = p
        .phases
        .iter()
        .map(|ph| (ph.name.as_str(), ph.duration.0))
        .collect();
    let ten = Duration::from_secs(10);
    assert_eq!(
        phases,
        [("baseline", ten), ("faults", ten), ("recovery", ten)]
    );
    assert!(p.phases[0].rules.is_empty() && p.phases[2].rules.is_empty());
    let kinds: Vec<&str> = p.phases[1]
        .rules
        .iter()
        .flat_map(|r| r.faults.iter().map(|f| f.kind()))
        .collect();
    assert!(
        kinds.contains(&"delay") && kinds.contains(&"error"),
        "{kinds:?}"
    );
}
