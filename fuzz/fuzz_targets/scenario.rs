//! Arbitrary bytes → drill scenario loader (and the profile cross-check on success)
//! and prompt-file loader: never panic; every error is a diagnostic.
#![no_main]

use brownout_drill::scenario::{check_against_profile, load_prompts, load_scenario, looks_like_scenario};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let src = String::from_utf8_lossy(data);
    let _ = looks_like_scenario(&src);
    match load_scenario(&src, "fuzz.yaml") {
        Ok(s) => {
            let _ = s.all_workloads();
            if let Some(slo) = &s.slo {
                let _ = slo.overall();
                let _ = slo.for_phase("warmup");
            }
            // The same text as a profile: the cross-check must not panic either.
            for d in check_against_profile(&s, &src, "fuzz-profile.yaml", &["warmup".into()]) {
                let _ = d.to_string();
            }
        }
        Err(diags) => {
            assert!(!diags.is_empty(), "an error without a diagnostic");
            for d in &diags {
                let _ = d.to_string();
            }
        }
    }
    match load_prompts(&src, "fuzz.jsonl") {
        Ok(prompts) => assert!(!prompts.is_empty()),
        Err(d) => {
            let _ = d.to_string();
        }
    }
});
