//! Arbitrary bytes → profile loader and validator: never panics; either a profile
//! or at least one positioned diagnostic.
#![no_main]

use brownout_faults::validate::load_profile;
use brownout_faults::yaml;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let src = String::from_utf8_lossy(data);
    match load_profile(&src, "fuzz.yaml") {
        Ok(profile) => {
            // Every rule has a name once loaded.
            assert!(profile.rules.iter().all(|r| r.name.is_some()));
            let _ = format!("{profile:?}");
        }
        Err(diags) => {
            assert!(!diags.is_empty(), "an error without a diagnostic");
            for d in &diags {
                // Rendering a diagnostic must not panic either.
                let _ = d.to_string();
            }
        }
    }
    // The generic tree reader and deserializer on their own.
    if let Ok(tree) = yaml::parse_tree(&src, "fuzz.yaml") {
        let _ = yaml::from_node::<serde_json::Value>(&tree, "fuzz.yaml");
    }
});
