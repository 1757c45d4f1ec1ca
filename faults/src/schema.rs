//! The JSON Schema of the profile format (`docs/profile.schema.json`).
//! (stub: to be implemented)

/// The schema as pretty JSON.
pub fn profile_schema_json() -> String {
    let schema = schemars::schema_for!(crate::profile::Profile);
    serde_json::to_string_pretty(&schema).unwrap_or_default()
}
