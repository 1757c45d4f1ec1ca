//! The JSON Schema of the profile format (`docs/profile.schema.json`).
//!
//! Editors (VS Code with the YAML extension, IntelliJ, Neovim through
//! yaml-language-server) use it to complete and check profiles as they are typed, long
//! before `brownout validate` runs. It is generated from the Rust types so that it can
//! never drift from what the loader accepts; a test compares it with the committed
//! file.
//!
//! Draft-07 is used because every mainstream YAML editor supports it.

use schemars::generate::SchemaSettings;

/// Where the committed schema lives, relative to the workspace root.
pub const SCHEMA_PATH: &str = "docs/profile.schema.json";

/// The profile schema as a JSON value.
pub fn profile_schema() -> serde_json::Value {
    let generator = SchemaSettings::draft07().for_deserialize().into_generator();
    let mut schema = generator.into_root_schema_for::<crate::profile::Profile>();
    schema.insert("title".into(), "brownout profile".into());
    schema.to_value()
}

/// The schema as pretty JSON with a trailing newline, exactly as committed.
pub fn profile_schema_json() -> String {
    // Serializing a `serde_json::Value` cannot fail.
    let mut text = serde_json::to_string_pretty(&profile_schema()).unwrap_or_default();
    text.push('\n');
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    fn committed_path() -> PathBuf {
        PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("..")
            .join(SCHEMA_PATH)
    }

    /// Fails when `docs/profile.schema.json` is stale. Regenerate it with
    /// `BROWNOUT_BLESS=1 cargo test -p brownout-faults schema`.
    #[test]
    fn schema_file_is_up_to_date() {
        let generated = profile_schema_json();
        let path = committed_path();
        if std::env::var_os("BROWNOUT_BLESS").is_some() {
            std::fs::write(&path, &generated).unwrap();
            return;
        }
        let committed = std::fs::read_to_string(&path).unwrap_or_default();
        assert!(
            committed == generated,
            "{} is out of date with the profile types; regenerate it with \
             `BROWNOUT_BLESS=1 cargo test -p brownout-faults schema` and commit the result",
            SCHEMA_PATH
        );
    }

    fn defs(schema: &serde_json::Value) -> &serde_json::Map<String, serde_json::Value> {
        schema["definitions"].as_object().unwrap()
    }

    #[test]
    fn faults_are_discriminated_by_type() {
        let schema = profile_schema();
        let fault = &defs(&schema)["FaultSpec"];
        let variants = fault["oneOf"].as_array().unwrap();
        let mut types: Vec<&str> = variants
            .iter()
            .map(|v| {
                assert_eq!(v["additionalProperties"], false, "{v}");
                assert!(
                    v["required"]
                        .as_array()
                        .unwrap()
                        .iter()
                        .any(|r| r == "type"),
                    "{v}"
                );
                v["properties"]["type"]["const"].as_str().unwrap()
            })
            .collect();
        types.sort_unstable();
        assert_eq!(
            types,
            [
                "bandwidth",
                "cold_start",
                "concurrency_limit",
                "corrupt",
                "delay",
                "drop_results",
                "embedding_noise",
                "embedding_truncate",
                "empty_completion",
                "empty_results",
                "error",
                "finish_reason",
                "first_token_delay",
                "garble",
                "gpu_saturation",
                "hang",
                "limit_results",
                "rate_limit",
                "reset",
                "score_noise",
                "shuffle_results",
                "stale_results",
                "stall",
                "stream_error",
                "token_delay",
                "token_rate",
                "truncate",
            ]
        );
    }

    #[test]
    fn durations_and_dists_are_strings_and_forms() {
        let schema = profile_schema();
        let d = defs(&schema);
        assert_eq!(d["Duration"]["type"], "string");
        assert!(d["Duration"]["pattern"].is_string());
        assert_eq!(d["Dist"]["oneOf"].as_array().unwrap().len(), 5);
        assert_eq!(d["Probability"]["oneOf"].as_array().unwrap().len(), 2);
        let phase = &d["Phase"]["properties"]["duration"];
        let target = phase.get("$ref").unwrap_or(&phase["allOf"][0]["$ref"]);
        assert_eq!(target, "#/definitions/Duration", "{phase}");
    }

    /// The schema accepts every shipped profile (a cheap structural check without a
    /// JSON Schema validator: every fault type used is in the schema).
    #[test]
    fn shipped_profiles_use_known_fault_types() {
        let schema = profile_schema();
        let text = schema.to_string();
        for t in [
            "delay",
            "error",
            "reset",
            "hang",
            "bandwidth",
            "concurrency_limit",
        ] {
            assert!(text.contains(&format!("\"const\":\"{t}\"")), "{t}");
        }
    }
}
