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
fn demo_is_a_rag_brownout_under_a_minute() {
    let p = load_profile_file(&profiles_dir().join("demo.yaml")).expect("demo validates");
    let phases: Vec<(&str, Duration)> = p
        .phases
        .iter()
        .map(|ph| (ph.name.as_str(), ph.duration.0))
        .collect();
    let s = Duration::from_secs;
    assert_eq!(
        phases,
        [
            ("baseline", s(12)),
            ("brownout", s(20)),
            ("recovery", s(12))
        ]
    );
    assert!(phases.iter().map(|p| p.1).sum::<Duration>() < s(60));
    assert!(p.phases[0].rules.is_empty() && p.phases[2].rules.is_empty());
    // Generation (listener `llm`) and retrieval (listener `vectors`) both degrade.
    let mut kinds: Vec<(&str, &str)> = Vec::new();
    for r in &p.phases[1].rules {
        let listener = r.matches.listener.as_deref().unwrap_or("");
        for f in &r.faults {
            kinds.push((listener, f.kind()));
        }
    }
    for want in [
        ("llm", "error"),
        ("llm", "gpu_saturation"),
        ("vectors", "delay"),
        ("vectors", "drop_results"),
    ] {
        assert!(kinds.contains(&want), "{want:?} in {kinds:?}");
    }
}

/// A newcomer picks a profile from the docs' table: every shipped file has a row.
#[test]
fn every_shipped_profile_is_documented() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let doc = std::fs::read_to_string(root.join("docs/profiles.md")).unwrap();
    let missing: Vec<String> = shipped()
        .iter()
        .filter_map(|p| p.file_name()?.to_str().map(str::to_owned))
        .filter(|name| !doc.contains(&format!("| `{name}` |")))
        .collect();
    assert!(missing.is_empty(), "not in docs/profiles.md: {missing:?}");
}
