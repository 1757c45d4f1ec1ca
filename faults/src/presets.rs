//! Error presets: each provider's real status, body and headers.
//! (stub: to be implemented)

/// A canned provider error.
#[derive(Debug, Clone, PartialEq)]
pub struct Preset {
    pub name: &'static str,
    pub status: u16,
    /// JSON body text.
    pub body: String,
    pub headers: Vec<(String, String)>,
    /// One line for `brownout profiles --presets` and the docs.
    pub summary: &'static str,
}

/// Look a preset up by name (`openai.rate_limit_requests`).
pub fn lookup(name: &str) -> Option<Preset> {
    let _ = name;
    None
}

/// Every preset name, for hints and docs.
pub fn names() -> Vec<&'static str> {
    Vec::new()
}
