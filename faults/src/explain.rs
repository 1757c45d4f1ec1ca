//! `brownout explain`: a profile in plain words.
//! (stub: to be implemented)

use crate::profile::Profile;

/// Describe what the profile will do, phase by phase.
pub fn explain(profile: &Profile) -> String {
    format!("profile {}\n", profile.name)
}
