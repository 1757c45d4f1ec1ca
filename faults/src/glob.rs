//! Globs for `match.path`, `match.model` and header values.
//! (stub: to be implemented)

/// A compiled glob: `*` (not across `/`), `**` (across `/`), `?`, literal text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Glob {
    pattern: String,
}

impl Glob {
    pub fn new(pattern: &str) -> Result<Self, String> {
        Ok(Glob { pattern: pattern.to_string() })
    }
    pub fn matches(&self, text: &str) -> bool {
        self.pattern == text
    }
    pub fn as_str(&self) -> &str {
        &self.pattern
    }
}
