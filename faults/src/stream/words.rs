//! Garbling's replacement words: the one piece the body rewrite (`content`) and
//! the stream shaper (`shape`) both use, kept apart so neither imports the other.

use rand::Rng;
use rand_chacha::ChaCha8Rng;

/// Words `garble` puts in place of the model's: plausible English, so the damage
/// reads as a wrong answer rather than as an encoding fault.
const WORDS: &[&str] = &[
    "banana",
    "quietly",
    "seventeen",
    "purple",
    "engine",
    "perhaps",
    "river",
    "window",
    "nonetheless",
    "granite",
    "whisper",
    "ladder",
    "orbit",
    "velvet",
    "harbor",
    "saddle",
    "tomorrow",
    "lantern",
    "crisp",
    "marble",
    "thunder",
    "pocket",
    "meadow",
    "silver",
    "copper",
    "puzzle",
    "island",
    "cactus",
    "violin",
    "glacier",
    "pepper",
    "anchor",
];

/// Walk the whitespace-separated words of `text`, replacing those `pick` chooses
/// with a random word from [`WORDS`]; whitespace is kept as it was. Returns the new
/// text and whether anything changed.
pub(crate) fn map_words(
    text: &str,
    mut pick: impl FnMut(&mut ChaCha8Rng) -> bool,
    rng: &mut ChaCha8Rng,
) -> (String, bool) {
    let mut out = String::with_capacity(text.len() + 8);
    let mut changed = false;
    let mut rest = text;
    while !rest.is_empty() {
        let ws = rest.len() - rest.trim_start().len();
        out.push_str(&rest[..ws]);
        rest = &rest[ws..];
        let word_len = rest.find(char::is_whitespace).unwrap_or(rest.len());
        if word_len == 0 {
            break;
        }
        if pick(rng) {
            out.push_str(WORDS[rng.random_range(0..WORDS.len())]);
            changed = true;
        } else {
            out.push_str(&rest[..word_len]);
        }
        rest = &rest[word_len..];
    }
    (out, changed)
}
