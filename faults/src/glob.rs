//! Globs for `match.path`, `match.model` and header values.
//!
//! Profiles name paths and models the way people type them in a shell
//! (`gpt-4o*`, `/collections/*/points/**`), so a glob reads better than a regex
//! and cannot be written to take exponential time. Patterns compile once, at
//! profile load, into a short token list; matching runs per request on the hot
//! path, so it never allocates and backtracks only to the most recent star (the
//! classic two-pointer wildcard algorithm), which keeps it O(pattern × text).
//!
//! Syntax:
//! - `*` any run of characters except `/` (possibly empty);
//! - `**` any run of characters including `/`; written as a whole segment
//!   followed by `/` (`/a/**/b`), it also matches zero segments (`/a/b`);
//! - `?` one character except `/`;
//! - `[abc]`, `[a-z]`, `[!x]` (or `[^x]`) one character from (or not from) a
//!   class; a class never matches `/`, and `]` first in a class is literal;
//! - `\x` the character `x` literally;
//! - anything else matches itself, case-sensitively.
//!
//! ```
//! use brownout_faults::glob::Glob;
//! let g = Glob::new("gpt-4o*").unwrap();
//! assert!(g.matches("gpt-4o-mini"));
//! assert!(!g.matches("gpt-4"));
//! ```

/// One compiled element of a pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Token {
    /// A character that must appear as is.
    Literal(char),
    /// `?`: any one character but `/`.
    One,
    /// `*`: any run without `/`.
    Star,
    /// `**` not followed by `/`: any run at all.
    DeepStar,
    /// `**/` at a segment start: empty, or any run that ends with `/`.
    DeepDir,
    /// `[...]`: one character (never `/`) in (or, negated, not in) the ranges.
    Class {
        negated: bool,
        ranges: Box<[(char, char)]>,
    },
}

impl Token {
    /// Whether a single-character token accepts `c`.
    fn accepts(&self, c: char) -> bool {
        match self {
            Token::Literal(l) => *l == c,
            Token::One => c != '/',
            Token::Class { negated, ranges } => {
                if c == '/' {
                    return false;
                }
                let inside = ranges.iter().any(|&(lo, hi)| lo <= c && c <= hi);
                inside != *negated
            }
            Token::Star | Token::DeepStar | Token::DeepDir => false,
        }
    }
}

/// A compiled glob (see the module docs for the syntax).
///
/// Compiling up front means a bad pattern is a profile error at load time, not a
/// silent non-match at request time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Glob {
    pattern: String,
    tokens: Box<[Token]>,
    /// Set when the pattern has no special characters, so matching is a string
    /// comparison (the common case for exact model names and paths).
    literal: Option<String>,
    /// The literal text before the first wildcard: a text without it cannot
    /// match, which settles most non-matching rules with one comparison.
    prefix: String,
}

impl Glob {
    /// Compile `pattern`; errors name the problem (unclosed class, trailing `\`,
    /// reversed range) so validation can report it with the field's position.
    pub fn new(pattern: &str) -> Result<Self, String> {
        let tokens = compile(pattern)?;
        let literal = if tokens.iter().all(|t| matches!(t, Token::Literal(_))) {
            Some(
                tokens
                    .iter()
                    .filter_map(|t| match t {
                        Token::Literal(c) => Some(*c),
                        _ => None,
                    })
                    .collect(),
            )
        } else {
            None
        };
        let prefix = tokens
            .iter()
            .map_while(|t| match t {
                Token::Literal(c) => Some(*c),
                _ => None,
            })
            .collect();
        Ok(Glob {
            pattern: pattern.to_string(),
            tokens: tokens.into_boxed_slice(),
            literal,
            prefix,
        })
    }

    /// Whether the whole of `text` matches the pattern. Never allocates.
    pub fn matches(&self, text: &str) -> bool {
        if let Some(lit) = &self.literal {
            return lit == text;
        }
        text.starts_with(self.prefix.as_str()) && match_tokens(&self.tokens, text)
    }

    /// The literal text every match starts with (empty when the pattern opens
    /// with a wildcard): what [`crate::matcher::PathIndex`] files a rule under.
    pub fn literal_prefix(&self) -> &str {
        &self.prefix
    }

    /// The pattern as written, for records, `explain` and error messages.
    pub fn as_str(&self) -> &str {
        &self.pattern
    }
}

impl std::fmt::Display for Glob {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.pattern)
    }
}

fn compile(pattern: &str) -> Result<Vec<Token>, String> {
    let chars: Vec<char> = pattern.chars().collect();
    let mut tokens = Vec::with_capacity(chars.len());
    let mut i = 0;
    while i < chars.len() {
        match chars[i] {
            '\\' => {
                let Some(&c) = chars.get(i + 1) else {
                    return Err("ends with a lone `\\`".to_string());
                };
                tokens.push(Token::Literal(c));
                i += 2;
            }
            '?' => {
                tokens.push(Token::One);
                i += 1;
            }
            '*' => {
                let start = i;
                while i < chars.len() && chars[i] == '*' {
                    i += 1;
                }
                if i - start == 1 {
                    // Adjacent single stars add nothing; keep one.
                    if tokens.last() != Some(&Token::Star) {
                        tokens.push(Token::Star);
                    }
                    continue;
                }
                let at_segment_start = start == 0 || chars[start - 1] == '/';
                if at_segment_start && chars.get(i) == Some(&'/') {
                    tokens.push(Token::DeepDir);
                    i += 1; // the `/` is part of DeepDir
                } else {
                    tokens.push(Token::DeepStar);
                }
            }
            '[' => {
                let (token, next) = compile_class(&chars, i)?;
                tokens.push(token);
                i = next;
            }
            c => {
                tokens.push(Token::Literal(c));
                i += 1;
            }
        }
    }
    Ok(tokens)
}

/// Compile the class starting at `chars[open] == '['`; returns the token and the
/// index after the closing `]`.
fn compile_class(chars: &[char], open: usize) -> Result<(Token, usize), String> {
    let mut i = open + 1;
    let negated = matches!(chars.get(i), Some('!') | Some('^'));
    if negated {
        i += 1;
    }
    let mut ranges = Vec::new();
    let mut first = true;
    loop {
        let Some(&c) = chars.get(i) else {
            return Err("has an unclosed `[`".to_string());
        };
        if c == ']' && !first {
            i += 1;
            break;
        }
        first = false;
        let lo = if c == '\\' {
            i += 1;
            *chars
                .get(i)
                .ok_or_else(|| "ends with a lone `\\`".to_string())?
        } else {
            c
        };
        i += 1;
        // A range `a-z`, unless the `-` is last in the class (`[a-]`).
        if chars.get(i) == Some(&'-') && chars.get(i + 1).is_some_and(|&n| n != ']') {
            let mut hi = chars[i + 1];
            i += 2;
            if hi == '\\' {
                hi = *chars
                    .get(i)
                    .ok_or_else(|| "ends with a lone `\\`".to_string())?;
                i += 1;
            }
            if hi < lo {
                return Err(format!("has a reversed range `{lo}-{hi}`"));
            }
            ranges.push((lo, hi));
        } else {
            ranges.push((lo, lo));
        }
    }
    Ok((
        Token::Class {
            negated,
            ranges: ranges.into_boxed_slice(),
        },
        i,
    ))
}

/// The first character of `text[at..]`, if any.
fn char_at(text: &str, at: usize) -> Option<char> {
    text.get(at..).and_then(|s| s.chars().next())
}

/// Two-pointer wildcard matching with two backtrack points: the latest star of
/// either kind, and the latest `**`. A `*` that would have to swallow a `/` cannot
/// help (everything between it and that `/` is confined to one segment), so the
/// search falls back to the latest `**` instead; without one, there is no match.
/// Each backtrack point only moves forward through the text, which bounds the
/// work by O(pattern × text) per `**` restart.
fn match_tokens(tokens: &[Token], text: &str) -> bool {
    let mut ti = 0; // token index
    let mut si = 0; // byte index into text
                    // Latest `*`: (token index after it, text index it will swallow up to next).
    let mut star: Option<(usize, usize)> = None;
    // Latest `**` / `**/`: (its token index, text index where its run ends).
    let mut deep: Option<(usize, usize)> = None;

    loop {
        if let Some(tok) = tokens.get(ti) {
            match tok {
                Token::Star => {
                    star = Some((ti + 1, si));
                    ti += 1;
                    continue;
                }
                Token::DeepStar | Token::DeepDir => {
                    deep = Some((ti, si));
                    star = None;
                    ti += 1;
                    continue;
                }
                _ => {
                    if let Some(c) = char_at(text, si) {
                        if tok.accepts(c) {
                            ti += 1;
                            si += c.len_utf8();
                            continue;
                        }
                    }
                }
            }
        } else if si == text.len() {
            return true;
        }

        // Mismatch (or tokens exhausted with text left): backtrack.
        if let Some((after, from)) = star {
            if let Some(c) = char_at(text, from) {
                if c != '/' {
                    let next = from + c.len_utf8();
                    star = Some((after, next));
                    ti = after;
                    si = next;
                    continue;
                }
            }
            star = None;
        }
        if let Some((dti, from)) = deep {
            let next = match tokens[dti] {
                // `**/` grows a whole segment at a time: its run must end in `/`.
                Token::DeepDir => text
                    .get(from..)
                    .and_then(|rest| rest.find('/'))
                    .map(|p| from + p + 1),
                _ => char_at(text, from).map(|c| from + c.len_utf8()),
            };
            if let Some(next) = next {
                deep = Some((dti, next));
                ti = dti + 1;
                si = next;
                continue;
            }
        }
        return false;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(p: &str, t: &str) -> bool {
        Glob::new(p).unwrap().matches(t)
    }

    #[test]
    fn literal_fast_path() {
        let g = Glob::new("gpt-4o").unwrap();
        assert!(g.literal.is_some());
        assert!(g.matches("gpt-4o"));
        assert!(!g.matches("gpt-4o-mini"));
        assert!(m(r"a\*b", "a*b"));
        assert!(!m(r"a\*b", "axb"));
    }

    #[test]
    fn deep_dir_collapses() {
        let g = Glob::new("/a/**/b").unwrap();
        assert_eq!(
            &*g.tokens,
            &[
                Token::Literal('/'),
                Token::Literal('a'),
                Token::Literal('/'),
                Token::DeepDir,
                Token::Literal('b')
            ]
        );
    }
}
