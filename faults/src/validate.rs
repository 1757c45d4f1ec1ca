//! Parse, then check what serde cannot: ramps only inside phases, probabilities in
//! range, unique rule names, known presets.
//! (stub: to be implemented)

use std::path::Path;

use crate::profile::Profile;
use crate::yaml::Diagnostic;

/// Load and fully validate a profile from text.
pub fn load_profile(src: &str, file: &str) -> Result<Profile, Vec<Diagnostic>> {
    crate::yaml::from_str(src, file).map_err(|d| vec![d])
}

/// Load and fully validate a profile file.
pub fn load_profile_file(path: &Path) -> Result<Profile, Vec<Diagnostic>> {
    let file = path.display().to_string();
    let src = std::fs::read_to_string(path).map_err(|e| {
        vec![Diagnostic { file: file.clone(), line: 0, column: 0, message: format!("cannot read: {e}"), hint: None }]
    })?;
    load_profile(&src, &file)
}
