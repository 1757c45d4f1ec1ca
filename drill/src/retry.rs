//! The official SDKs' retry rules, as their sources have them.
//!
//! What a drill measures is only what SDK users feel if the drill retries exactly
//! when, and waits exactly as long as, the SDK would: a client that gave up earlier
//! or waited less would hide (or invent) the load that retries add to a struggling
//! service. The rules here mirror `_should_retry`, `_calculate_retry_timeout` and
//! `_parse_retry_after_header` of openai-python 3.x and anthropic-python 2.x
//! (`_base_client.py`), including their quirks: openai-python refuses a server wait
//! over 120 s before anything else, anthropic-python waits whatever it is told.
//! Every random choice comes from the caller's seeded RNG, so a drill's waits are
//! fixed by its seed.

use std::future::Future;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rand::Rng;
use serde::{Deserialize, Serialize};

/// The SDK whose retry rules the drill's client follows.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Sdk {
    /// openai-python 3.x.
    #[default]
    OpenaiPython,
    /// anthropic-python 2.x.
    AnthropicPython,
}

/// openai-python's `MAX_RETRY_AFTER_DELAY`: a longer server wait means no retry.
pub const MAX_RETRY_AFTER: Duration = Duration::from_secs(120);

/// Both SDKs' `INITIAL_RETRY_DELAY`, seconds.
const INITIAL_RETRY_DELAY: f64 = 0.5;
/// Both SDKs' `MAX_RETRY_DELAY`, seconds.
const MAX_RETRY_DELAY: f64 = 8.0;
/// anthropic-python caps a server wait here because `time.sleep` fails beyond it
/// on some platforms.
const ANTHROPIC_MAX_WAIT_S: f64 = 4_294_967.0;

/// The headers of an error response that its retry depends on, as received: the
/// SDKs parse them differently, so they are kept as text until an SDK reads them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RetryHeaders {
    /// `retry-after-ms`.
    pub retry_after_ms: Option<String>,
    /// `retry-after`.
    pub retry_after: Option<String>,
    /// `x-should-retry`.
    pub should_retry: Option<String>,
}

impl RetryHeaders {
    /// The retry headers of `h`; a header sent several times reads as its values
    /// joined by `, `, as httpx's `Headers.get` gives them to the SDKs.
    pub fn from_headers(h: &http::HeaderMap) -> Self {
        let get = |name: &str| {
            let mut values = h.get_all(name).iter().peekable();
            values.peek()?;
            Some(
                values
                    .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
                    .collect::<Vec<_>>()
                    .join(", "),
            )
        };
        Self {
            retry_after_ms: get("retry-after-ms"),
            retry_after: get("retry-after"),
            should_retry: get("x-should-retry"),
        }
    }
}

/// How an attempt ended, as the SDK's retry loop sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ending {
    /// The SDK hands the response to its caller: a success, or a failure found
    /// only afterwards (a broken stream, an unparsable answer), which it raises
    /// without retrying.
    Delivered,
    /// A non-2xx status, with its retry headers.
    Status(u16, RetryHeaders),
    /// httpx raised a connection error or a timeout: before the response head, or
    /// while reading a body that is not streamed (httpx reads it inside `send`).
    Connection,
}

/// `s` without the single underscores between digits that Python's number
/// parsers allow and Rust's refuse; `None` for an underscore anywhere else.
fn without_underscores(s: &str) -> Option<String> {
    let b = s.as_bytes();
    let ok = b.iter().enumerate().all(|(i, c)| {
        *c != b'_'
            || (i > 0 && b[i - 1].is_ascii_digit() && b.get(i + 1).is_some_and(u8::is_ascii_digit))
    });
    ok.then(|| s.replace('_', ""))
}

/// Python's `float(str)`.
fn py_float(s: &str) -> Option<f64> {
    without_underscores(s.trim())?.parse().ok()
}

/// Python's `int(str)`, for the small numbers of a date.
fn py_int(s: &str) -> Option<i64> {
    without_underscores(s.trim())?.parse().ok()
}

const DAYNAMES: [&str; 7] = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"];
const MONTHNAMES: [&str; 24] = [
    "jan",
    "feb",
    "mar",
    "apr",
    "may",
    "jun",
    "jul",
    "aug",
    "sep",
    "oct",
    "nov",
    "dec",
    "january",
    "february",
    "march",
    "april",
    "may",
    "june",
    "july",
    "august",
    "september",
    "october",
    "november",
    "december",
];
const TIMEZONES: [(&str, i64); 14] = [
    ("UT", 0),
    ("UTC", 0),
    ("GMT", 0),
    ("Z", 0),
    ("AST", -400),
    ("ADT", -300),
    ("EST", -500),
    ("EDT", -400),
    ("CST", -600),
    ("CDT", -500),
    ("MST", -700),
    ("MDT", -600),
    ("PST", -800),
    ("PDT", -700),
];

/// Days from 1970-01-01 to the first of `month` in `year` (proleptic Gregorian).
fn days_to_month(year: i64, month: i64) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// Python's `email.utils.mktime_tz(email.utils.parsedate_tz(s))`, the SDKs' reading
/// of a `retry-after` date, as Unix seconds; `None` where Python returns `None` or
/// raises. A date without a zone is taken as UTC (Python takes local time).
pub fn parse_http_date(s: &str) -> Option<i64> {
    let mut data: Vec<String> = s.split_whitespace().map(str::to_owned).collect();
    let first = data.first()?.clone();
    if first.ends_with(',') || DAYNAMES.contains(&first.to_lowercase().as_str()) {
        data.remove(0);
    } else if let Some(i) = first.rfind(',') {
        data[0] = first[i + 1..].to_owned();
    }
    if data.len() == 3 {
        let stuff: Vec<String> = data[0].split('-').map(str::to_owned).collect();
        if stuff.len() == 3 {
            data = stuff.into_iter().chain(data.drain(1..)).collect();
        }
    }
    if data.len() == 4 {
        let s = data[3].clone();
        let i = s.find('+').or_else(|| s.find('-'));
        match i {
            Some(i) if i > 0 => {
                data.truncate(3);
                data.push(s[..i].to_owned());
                data.push(s[i..].to_owned());
            }
            _ => data.push(String::new()),
        }
    }
    if data.len() < 5 {
        return None;
    }
    data.truncate(5);
    let mut it = data.into_iter();
    let (mut dd, mm, mut yy, mut tm, mut tz) =
        (it.next()?, it.next()?, it.next()?, it.next()?, it.next()?);
    if dd.is_empty() || mm.is_empty() || yy.is_empty() {
        return None;
    }
    let mut mm = mm.to_lowercase();
    if !MONTHNAMES.contains(&mm.as_str()) {
        (dd, mm) = (mm, dd.to_lowercase());
        if !MONTHNAMES.contains(&mm.as_str()) {
            return None;
        }
    }
    let mut month = MONTHNAMES.iter().position(|m| *m == mm)? as i64 + 1;
    if month > 12 {
        month -= 12;
    }
    if dd.ends_with(',') {
        dd.pop();
    }
    if yy.find(':').is_some_and(|i| i > 0) {
        std::mem::swap(&mut yy, &mut tm);
    }
    if yy.ends_with(',') {
        yy.pop();
        if yy.is_empty() {
            return None;
        }
    }
    if !yy.chars().next()?.is_ascii_digit() {
        std::mem::swap(&mut yy, &mut tz);
    }
    if tm.ends_with(',') {
        tm.pop();
    } else if tm.is_empty() {
        return None;
    }
    let mut parts: Vec<&str> = tm.split(':').collect();
    if parts.len() == 1 && tm.contains('.') {
        parts = tm.split('.').collect();
        if !(2..=3).contains(&parts.len()) {
            return None;
        }
    }
    let (thh, tmm, tss) = match parts.as_slice() {
        [h, m] => (*h, *m, "0"),
        [h, m, s] => (*h, *m, *s),
        _ => return None,
    };
    let mut year = py_int(&yy)?;
    let day = py_int(&dd)?;
    let (hour, minute, second) = (py_int(thh)?, py_int(tmm)?, py_int(tss)?);
    if year < 100 {
        year += if year > 68 { 1900 } else { 2000 };
    }
    let tz = tz.to_uppercase();
    let mut offset = match TIMEZONES.iter().find(|(n, _)| *n == tz) {
        Some((_, o)) => Some(*o),
        None => py_int(&tz).filter(|o| !(*o == 0 && tz.starts_with('-'))),
    };
    if let Some(o) = offset.filter(|o| *o != 0) {
        let a = o.checked_abs()?;
        offset = Some(o.signum() * ((a / 100) * 3600 + (a % 100) * 60));
    }
    // `calendar.timegm`: `datetime.date(year, month, 1)` bounds the year; the other
    // fields are only added up, so a day 40 or an hour 30 carry over.
    if !(1..=9999).contains(&year) {
        return None;
    }
    let days = i128::from(days_to_month(year, month)) + i128::from(day) - 1;
    let secs = ((days * 24 + i128::from(hour)) * 60 + i128::from(minute)) * 60 + i128::from(second)
        - i128::from(offset.unwrap_or(0));
    i64::try_from(secs).ok()
}

/// `now` as Python's `time.time()`.
fn unix_now(now: SystemTime) -> f64 {
    match now.duration_since(UNIX_EPOCH) {
        Ok(d) => d.as_secs_f64(),
        Err(e) => -e.duration().as_secs_f64(),
    }
}

/// The backoff before retry `n + 1` when the server asked for no usable wait:
/// `min(0.5 · 2^n, 8)` seconds less up to 25% jitter, the same in both SDKs.
pub fn backoff(n: u32, rng: &mut impl Rng) -> Duration {
    let base = (INITIAL_RETRY_DELAY * 2f64.powi(n.min(1000) as i32)).min(MAX_RETRY_DELAY);
    let jitter = 1.0 - 0.25 * rng.random::<f64>();
    Duration::from_secs_f64((base * jitter).max(0.0))
}

impl Sdk {
    /// `_parse_retry_after_header`: the wait the headers ask for, in seconds, as
    /// the SDK reads it (possibly negative, infinite or NaN; the callers judge).
    pub fn retry_after(self, h: &RetryHeaders, now: SystemTime) -> Option<f64> {
        match self {
            Sdk::OpenaiPython => {
                for (value, divisor) in [(&h.retry_after_ms, 1000.0), (&h.retry_after, 1.0)] {
                    let Some(value) = value else { continue };
                    let Some(delay) = py_float(value) else {
                        continue;
                    };
                    let literal = ["inf", "+inf", "infinity", "+infinity"]
                        .contains(&value.trim().to_lowercase().as_str());
                    if delay == f64::INFINITY && !literal {
                        // An overflowing number is an excessive delay, not a
                        // malformed one: refused, not replaced by a backoff.
                        return Some(MAX_RETRY_AFTER.as_secs_f64() + 1.0);
                    }
                    return Some(delay / divisor);
                }
                let date = parse_http_date(h.retry_after.as_deref()?)?;
                Some(date as f64 - unix_now(now))
            }
            Sdk::AnthropicPython => {
                if let Some(ms) = h.retry_after_ms.as_deref().and_then(py_float) {
                    return Some(ms / 1000.0);
                }
                let header = h.retry_after.as_deref()?;
                if let Some(s) = py_float(header) {
                    return Some(s);
                }
                let date = parse_http_date(header)?;
                Some(date as f64 - unix_now(now))
            }
        }
    }

    /// `_should_retry`: whether an error status is retried (when retries remain).
    pub fn should_retry(self, status: u16, h: &RetryHeaders, now: SystemTime) -> bool {
        if self == Sdk::OpenaiPython {
            if let Some(w) = self.retry_after(h, now) {
                if w.is_finite() && w > MAX_RETRY_AFTER.as_secs_f64() {
                    return false;
                }
            }
        }
        match h.should_retry.as_deref() {
            Some("true") => return true,
            Some("false") => return false,
            _ => {}
        }
        matches!(status, 408 | 409 | 429) || status >= 500
    }

    /// `_calculate_retry_timeout` before retry `retries_taken + 1`: the server's
    /// wait when the SDK accepts it, else [`backoff`]. `headers` is `None` after
    /// a connection error or timeout.
    pub fn retry_wait(
        self,
        retries_taken: u32,
        headers: Option<&RetryHeaders>,
        now: SystemTime,
        rng: &mut impl Rng,
    ) -> Duration {
        if let Some(w) = headers.and_then(|h| self.retry_after(h, now)) {
            match self {
                Sdk::OpenaiPython
                    if w.is_finite() && w > 0.0 && w <= MAX_RETRY_AFTER.as_secs_f64() =>
                {
                    return Duration::from_secs_f64(w);
                }
                Sdk::AnthropicPython if w > 0.0 => {
                    return Duration::from_secs_f64(w.min(ANTHROPIC_MAX_WAIT_S));
                }
                _ => {}
            }
        }
        backoff(retries_taken, rng)
    }
}

/// How the drill's client retries: the SDK it follows and its settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Whose rules.
    pub sdk: Sdk,
    /// Retries after the first attempt (the SDKs' `max_retries`).
    pub max_retries: u32,
    /// Whether `retry-after-ms` / `retry-after` are read at all; without them the
    /// SDK's rules run as if the server had sent neither.
    pub honor_retry_after: bool,
}

impl RetryPolicy {
    /// The wait before retrying an attempt that ended so, after `retries_taken`
    /// retries; `None` when the SDK would give up.
    pub fn next_wait(
        &self,
        ending: &Ending,
        retries_taken: u32,
        now: SystemTime,
        rng: &mut impl Rng,
    ) -> Option<Duration> {
        if retries_taken >= self.max_retries {
            return None;
        }
        match ending {
            Ending::Delivered => None,
            Ending::Connection => Some(self.sdk.retry_wait(retries_taken, None, now, rng)),
            Ending::Status(status, h) => {
                let stripped;
                let h = if self.honor_retry_after {
                    h
                } else {
                    stripped = RetryHeaders {
                        should_retry: h.should_retry.clone(),
                        ..RetryHeaders::default()
                    };
                    &stripped
                };
                self.sdk
                    .should_retry(*status, h, now)
                    .then(|| self.sdk.retry_wait(retries_taken, Some(h), now, rng))
            }
        }
    }

    /// Run `attempt` (called with the number of retries taken so far) until the
    /// SDK would stop, sleeping between attempts as it would; returns the last
    /// attempt's result and the number of attempts.
    pub async fn run<T, F, Fut>(&self, rng: &mut impl Rng, mut attempt: F) -> (T, u32)
    where
        F: FnMut(u32) -> Fut,
        Fut: Future<Output = (T, Ending)>,
    {
        let mut taken = 0;
        loop {
            let (out, ending) = attempt(taken).await;
            match self.next_wait(&ending, taken, SystemTime::now(), rng) {
                Some(wait) => {
                    taken += 1;
                    tokio::time::sleep(wait).await;
                }
                None => return (out, taken + 1),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand_chacha::ChaCha8Rng;
    use tokio::time::Instant;

    const OPENAI: Sdk = Sdk::OpenaiPython;
    const ANTHROPIC: Sdk = Sdk::AnthropicPython;
    const BOTH: [Sdk; 2] = [OPENAI, ANTHROPIC];

    fn headers(pairs: &[(&str, &str)]) -> RetryHeaders {
        let mut h = http::HeaderMap::new();
        for (k, v) in pairs {
            h.append(
                http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                http::HeaderValue::from_str(v).unwrap(),
            );
        }
        RetryHeaders::from_headers(&h)
    }

    fn now() -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(1_445_412_480) // Wed, 21 Oct 2015 07:28:00 GMT
    }

    fn rng() -> ChaCha8Rng {
        ChaCha8Rng::seed_from_u64(9)
    }

    fn wait(sdk: Sdk, n: u32, h: &RetryHeaders) -> Duration {
        sdk.retry_wait(n, Some(h), now(), &mut rng())
    }

    fn is_backoff(d: Duration, n: u32) -> bool {
        let base = (0.5 * 2f64.powi(n as i32)).min(8.0);
        let d = d.as_secs_f64();
        d <= base && d >= base * 0.75
    }

    #[test]
    fn statuses_retried_by_both_sdks() {
        let none = RetryHeaders::default();
        for sdk in BOTH {
            for c in [408, 409, 429, 500, 502, 503, 504, 529] {
                assert!(sdk.should_retry(c, &none, now()), "{sdk:?} {c}");
            }
            for c in [300, 400, 401, 403, 404, 413, 422] {
                assert!(!sdk.should_retry(c, &none, now()), "{sdk:?} {c}");
            }
        }
    }

    #[test]
    fn x_should_retry_decides_over_the_status() {
        for sdk in BOTH {
            let yes = headers(&[("x-should-retry", "true")]);
            let no = headers(&[("x-should-retry", "false")]);
            assert!(sdk.should_retry(400, &yes, now()), "{sdk:?}");
            assert!(!sdk.should_retry(500, &no, now()), "{sdk:?}");
            assert!(!sdk.should_retry(429, &no, now()), "{sdk:?}");
            // Only the exact words count.
            let odd = headers(&[("x-should-retry", "TRUE")]);
            assert!(!sdk.should_retry(400, &odd, now()), "{sdk:?}");
            assert!(sdk.should_retry(500, &odd, now()), "{sdk:?}");
        }
    }

    #[test]
    fn openai_refuses_a_wait_over_120_s_before_anything_else() {
        for h in [
            headers(&[("retry-after", "121")]),
            headers(&[("retry-after-ms", "120001")]),
            headers(&[("retry-after", "121"), ("x-should-retry", "true")]),
            // An overflowing number is excessive, not malformed.
            headers(&[("retry-after", "1e400")]),
            headers(&[("retry-after", "Wed, 21 Oct 2015 07:30:01 GMT")]),
        ] {
            assert!(!OPENAI.should_retry(429, &h, now()), "{h:?}");
            assert!(ANTHROPIC.should_retry(429, &h, now()), "{h:?}");
        }
        // Exactly 120 s, a literal infinity (not finite) and NaN are not refused.
        for v in ["120", "inf", "nan"] {
            let h = headers(&[("retry-after", v)]);
            assert!(OPENAI.should_retry(429, &h, now()), "{v}");
        }
        // retry-after-ms wins over retry-after, for the rule too.
        let h = headers(&[("retry-after-ms", "300"), ("retry-after", "500")]);
        assert!(OPENAI.should_retry(429, &h, now()));
    }

    #[test]
    fn anthropic_waits_any_positive_wait() {
        let h = headers(&[("retry-after", "121")]);
        assert_eq!(wait(ANTHROPIC, 0, &h), Duration::from_secs(121));
        let h = headers(&[("retry-after", "3600")]);
        assert_eq!(wait(ANTHROPIC, 0, &h), Duration::from_secs(3600));
        let h = headers(&[("retry-after-ms", "1e400")]);
        assert_eq!(wait(ANTHROPIC, 0, &h), Duration::from_secs(4_294_967));
        // Not positive: the backoff.
        for v in ["0", "-1", "nan"] {
            let h = headers(&[("retry-after", v)]);
            assert!(is_backoff(wait(ANTHROPIC, 1, &h), 1), "{v}");
        }
    }

    #[test]
    fn openai_waits_what_the_server_says_up_to_120_s() {
        let cases = [
            (vec![("retry-after-ms", "300")], Duration::from_millis(300)),
            (
                vec![("retry-after-ms", "250"), ("retry-after", "7")],
                Duration::from_millis(250),
            ),
            (vec![("retry-after", "2")], Duration::from_secs(2)),
            (vec![("retry-after", "1.5")], Duration::from_millis(1500)),
            // The old client gave up on these, over 60 s.
            (vec![("retry-after", "61")], Duration::from_secs(61)),
            (vec![("retry-after", "90")], Duration::from_secs(90)),
            (vec![("retry-after", "120")], Duration::from_secs(120)),
            (vec![("retry-after-ms", "1_000")], Duration::from_secs(1)),
            // A broken retry-after-ms falls back to retry-after.
            (
                vec![("retry-after-ms", "soon"), ("retry-after", "3")],
                Duration::from_secs(3),
            ),
            (
                vec![("retry-after", "Wed, 21 Oct 2015 07:28:05 GMT")],
                Duration::from_secs(5),
            ),
            (
                vec![("retry-after", "Wed, 21 Oct 2015 09:29:30 +0200")],
                Duration::from_secs(90),
            ),
        ];
        for (h, want) in cases {
            let h = headers(&h);
            for sdk in BOTH {
                assert_eq!(wait(sdk, 0, &h), want, "{sdk:?} {h:?}");
            }
        }
        // Over 120 s, a past date, zero, negative, infinite or unreadable: backoff.
        for v in [
            "121",
            "0",
            "-3",
            "inf",
            "nan",
            "soon",
            "Wed, 21 Oct 2015 07:27:00 GMT",
        ] {
            let h = headers(&[("retry-after", v)]);
            assert!(is_backoff(wait(OPENAI, 2, &h), 2), "{v}");
        }
    }

    #[test]
    fn backoff_is_min_half_times_two_to_the_n_and_8_less_jitter() {
        let mut r = rng();
        let mut seen = Vec::new();
        for (n, base) in [(0, 0.5), (1, 1.0), (2, 2.0), (3, 4.0), (4, 8.0), (9, 8.0)] {
            for _ in 0..50 {
                let d = backoff(n, &mut r);
                assert!(is_backoff(d, n), "{n}: {d:?}");
                seen.push(d.as_secs_f64() / base);
            }
        }
        // The jitter spans its 25%, from the seeded RNG.
        assert!(seen.iter().any(|f| *f < 0.8) && seen.iter().any(|f| *f > 0.95));
        assert_eq!(backoff(0, &mut rng()), backoff(0, &mut rng()));
        assert!(is_backoff(backoff(u32::MAX, &mut rng()), 30));
    }

    #[test]
    fn http_dates_read_as_python_reads_them() {
        let t = 1_445_412_480;
        for s in [
            "Wed, 21 Oct 2015 07:28:00 GMT",
            "Wed,21 Oct 2015 07:28:00 GMT",
            "21 Oct 2015 07:28:00 +0000",
            "Wednesday, 21-Oct-15 07:28:00 GMT",
            "Wed Oct 21 07:28:00 2015",
            "Wed, 21 Oct 2015 03:28:00 EDT",
            "Wed, 21 October 2015 07:28 UTC",
            "21 Oct 2015 08:28:00+0100",
        ] {
            assert_eq!(parse_http_date(s), Some(t), "{s}");
        }
        for s in ["", "soon", "Wed, 21 Foo 2015 07:28:00 GMT", "21 Oct 2015"] {
            assert_eq!(parse_http_date(s), None, "{s}");
        }
    }

    #[test]
    fn python_floats() {
        assert_eq!(py_float(" 1.5 "), Some(1.5));
        assert_eq!(py_float("1_000"), Some(1000.0));
        assert_eq!(py_float("1__0"), None);
        assert_eq!(py_float("_1"), None);
        assert_eq!(py_float("Infinity"), Some(f64::INFINITY));
        assert!(py_float("NaN").is_some_and(f64::is_nan));
        assert_eq!(py_float("0x10"), None);
    }

    #[test]
    fn decision_respects_max_retries_and_honor_retry_after() {
        let mut policy = RetryPolicy {
            sdk: OPENAI,
            max_retries: 2,
            honor_retry_after: true,
        };
        let h = headers(&[("retry-after", "121")]);
        let status = Ending::Status(429, h.clone());
        assert_eq!(policy.next_wait(&status, 0, now(), &mut rng()), None);
        policy.honor_retry_after = false;
        let w = policy.next_wait(&status, 1, now(), &mut rng());
        assert!(w.is_some_and(|w| is_backoff(w, 1)), "{w:?}");
        assert_eq!(policy.next_wait(&status, 2, now(), &mut rng()), None);
        let no = Ending::Status(500, headers(&[("x-should-retry", "false")]));
        assert_eq!(policy.next_wait(&no, 0, now(), &mut rng()), None);
        assert_eq!(
            policy.next_wait(&Ending::Delivered, 0, now(), &mut rng()),
            None
        );
        for sdk in BOTH {
            policy.sdk = sdk;
            let w = policy.next_wait(&Ending::Connection, 0, now(), &mut rng());
            assert!(w.is_some_and(|w| is_backoff(w, 0)), "{w:?}");
        }
    }

    /// Run `script` (one ending per attempt; `Delivered` after it) through the
    /// policy's loop under paused time; the gaps between attempts.
    async fn gaps(sdk: Sdk, max_retries: u32, script: &[Ending]) -> Vec<Duration> {
        let policy = RetryPolicy {
            sdk,
            max_retries,
            honor_retry_after: true,
        };
        let mut at = Vec::new();
        let (last, attempts) = policy
            .run(&mut rng(), |n| {
                at.push(Instant::now());
                let e = script.get(n as usize).cloned().unwrap_or(Ending::Delivered);
                async move { (n, e) }
            })
            .await;
        assert_eq!(last + 1, attempts);
        assert_eq!(at.len(), attempts as usize);
        at.windows(2).map(|w| w[1] - w[0]).collect()
    }

    #[tokio::test(start_paused = true)]
    async fn the_loop_waits_as_the_sdk_would() {
        let st = |c, h: &[(&str, &str)]| Ending::Status(c, headers(h));
        let ms = Duration::from_millis;
        for sdk in BOTH {
            // retry-after-ms, then retry-after seconds, then success.
            let g = gaps(
                sdk,
                2,
                &[
                    st(429, &[("retry-after-ms", "300")]),
                    st(503, &[("retry-after", "2")]),
                ],
            )
            .await;
            assert_eq!(g, [ms(300), ms(2000)], "{sdk:?}");
            // 90 s is waited (the old client backed off instead).
            let g = gaps(sdk, 2, &[st(429, &[("retry-after", "90")])]).await;
            assert_eq!(g, [Duration::from_secs(90)], "{sdk:?}");
            // x-should-retry: false stops at once; 400 is not retried.
            assert!(gaps(sdk, 2, &[st(503, &[("x-should-retry", "false")])])
                .await
                .is_empty());
            assert!(gaps(sdk, 2, &[st(400, &[])]).await.is_empty());
            let g = gaps(sdk, 2, &[st(400, &[("x-should-retry", "true")])]).await;
            assert!(g.len() == 1 && is_backoff(g[0], 0), "{g:?}");
            // 529 and connection errors back off, 0.5 s then 1 s less jitter;
            // the retries run out after two.
            let g = gaps(
                sdk,
                2,
                &[st(529, &[]), Ending::Connection, Ending::Connection],
            )
            .await;
            assert!(
                g.len() == 2 && is_backoff(g[0], 0) && is_backoff(g[1], 1),
                "{g:?}"
            );
        }
        // 121 s: openai gives up at once, anthropic waits it out.
        let over = [st(429, &[("retry-after", "121")])];
        assert!(gaps(OPENAI, 2, &over).await.is_empty());
        assert_eq!(gaps(ANTHROPIC, 2, &over).await, [Duration::from_secs(121)]);
    }
}
