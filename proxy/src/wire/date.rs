//! The `date` of brownout's own HTTP/1.1 answers, formatted once a second.
//!
//! hyper's server adds one to every answer without it; the full path's answers on
//! the fast loop's connections get the same, without formatting a date each time.

use std::cell::RefCell;
use std::time::{SystemTime, UNIX_EPOCH};

/// `Sun, 06 Nov 1994 08:49:37 GMT`: always 29 bytes.
const LEN: usize = 29;

thread_local! {
    /// The second last formatted, and its text.
    static NOW: RefCell<(u64, [u8; LEN])> = const { RefCell::new((0, [0; LEN])) };
}

/// Append the current date (RFC 9110's IMF-fixdate) to `out`.
pub(crate) fn extend(out: &mut Vec<u8>) {
    let now = SystemTime::now();
    let secs = now.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    NOW.with(|cell| {
        let mut c = cell.borrow_mut();
        if c.0 != secs || c.1[0] == 0 {
            let text = httpdate::fmt_http_date(now);
            if text.len() == LEN {
                c.1.copy_from_slice(text.as_bytes());
                c.0 = secs;
            } else {
                out.extend_from_slice(text.as_bytes());
                return;
            }
        }
        out.extend_from_slice(&c.1);
    });
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_date_is_an_http_date_of_now() {
        let mut out = Vec::new();
        super::extend(&mut out);
        let text = std::str::from_utf8(&out).unwrap();
        let when = httpdate::parse_http_date(text).unwrap();
        let skew = std::time::SystemTime::now()
            .duration_since(when)
            .unwrap_or_default();
        assert!(skew.as_secs() <= 2, "{text}");
        assert!(text.ends_with(" GMT"));
    }
}
