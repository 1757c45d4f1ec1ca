//! The record of one exchange (docs/records.md): one type for the
//! proxy that writes records and the drill that reads them back, so a field or an
//! outcome the proxy adds cannot be misread, or silently mapped to something
//! else, by a report.
//!
//! The proxy fills a [`Record`] on the request path and serializes it off it; the
//! drill deserializes record files into the same type. Names the proxy only ever
//! writes from its own constants (`api`, `endpoint`, fault types, skip reasons,
//! `tokens_source`) are `&'static str` so the request path never allocates for
//! them; reading them back interns each distinct name once ([`intern`]).
//!
//! Records never hold a request's secrets or body. What tells calls and clients
//! apart is keyed hashes ([`FingerprintKey`]): the same request from the same
//! client has the same `fingerprint` and `client` under one key, and nothing about
//! the request can be read from either.

use std::collections::BTreeSet;
use std::fmt;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use ring::hmac;
use serde::de::{self, Deserializer, Visitor};
use serde::{Deserialize, Serialize, Serializer};

/// A wall-clock instant, formatted (off the hot path) as RFC 3339 with milliseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timestamp(pub SystemTime);

impl Timestamp {
    /// Seconds since the Unix epoch (negative before it), for ordering and spans.
    pub fn unix_secs(&self) -> f64 {
        match self.0.duration_since(UNIX_EPOCH) {
            Ok(d) => d.as_secs_f64(),
            Err(e) => -e.duration().as_secs_f64(),
        }
    }
}

impl Serialize for Timestamp {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let t = time::OffsetDateTime::from(self.0);
        let fmt = time::macros::format_description!(
            "[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3]Z"
        );
        match t.format(&fmt) {
            Ok(v) => s.serialize_str(&v),
            Err(e) => Err(serde::ser::Error::custom(e)),
        }
    }
}

impl<'de> Deserialize<'de> for Timestamp {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = Timestamp;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("an RFC 3339 time")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Timestamp, E> {
                time::OffsetDateTime::parse(v, &time::format_description::well_known::Rfc3339)
                    .map(|t| Timestamp(t.into()))
                    .map_err(|e| E::custom(format!("`{v}` is not an RFC 3339 time: {e}")))
            }
        }
        d.deserialize_str(V)
    }
}

/// A name the proxy writes from its own constants. An alias rather than
/// `&'static str` in the fields because serde's derive borrows every field spelled
/// `&str` from the input, and a record read from a file must outlive it: names are
/// interned instead ([`intern`]).
pub type Name = &'static str;

/// How an exchange ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    Ok,
    HttpError,
    InjectedError,
    Truncated,
    Reset,
    Timeout,
    ClientClosed,
    UpstreamError,
    Corrupt,
}

impl Outcome {
    /// Every outcome, in the order reports list them.
    pub const ALL: [Outcome; 9] = [
        Outcome::Ok,
        Outcome::HttpError,
        Outcome::InjectedError,
        Outcome::Truncated,
        Outcome::Reset,
        Outcome::Timeout,
        Outcome::ClientClosed,
        Outcome::UpstreamError,
        Outcome::Corrupt,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Ok => "ok",
            Outcome::HttpError => "http_error",
            Outcome::InjectedError => "injected_error",
            Outcome::Truncated => "truncated",
            Outcome::Reset => "reset",
            Outcome::Timeout => "timeout",
            Outcome::ClientClosed => "client_closed",
            Outcome::UpstreamError => "upstream_error",
            Outcome::Corrupt => "corrupt",
        }
    }
}

/// A fault named in a record: `rule/fault`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FaultRef {
    pub rule: Arc<str>,
    #[serde(deserialize_with = "static_name")]
    pub fault: Name,
    /// Why it was skipped (only in `faults_skipped`).
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "opt_static_name"
    )]
    pub reason: Option<Name>,
}

/// Latency of the upstream leg.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct UpstreamTiming {
    pub status: Option<u16>,
    pub ttfb_ms: Option<f64>,
    pub e2e_ms: Option<f64>,
    /// The request went upstream a second time, on a new connection, because a
    /// reused one was closed by the upstream before it answered.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub retried: bool,
}

/// A gRPC call, as its client names it and as it ended.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct GrpcCall {
    /// `package.Service`, from the request path.
    #[serde(default)]
    pub service: String,
    /// The method name, from the request path.
    #[serde(default)]
    pub method: String,
    /// The call's `grpc-status` (0 = OK), from the trailers or a trailers-only
    /// answer; none when the call ended without one (a reset, a cut stream).
    #[serde(default)]
    pub status: Option<u32>,
    /// The error a response message carried in its own status field (Milvus
    /// `status`, Triton `error_message`) under `grpc-status` 0.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub in_message: Option<String>,
}

/// Inter-token latency summary (filled by the LLM adapters).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ItlSummary {
    pub p50: f64,
    pub p95: f64,
    pub max: f64,
}

/// One exchange, however it ended.
///
/// Reading is lenient about fields older proxies did not write (they take their
/// defaults), strict about what a record must say: a line without `ts` or with an
/// `outcome` this type does not name is not a record.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Record {
    /// Wall-clock time the request arrived (RFC 3339 in files).
    pub ts: Timestamp,
    #[serde(default)]
    pub id: u64,
    #[serde(default)]
    pub listener: Arc<str>,
    #[serde(default, deserialize_with = "static_name")]
    pub api: Name,
    #[serde(default, deserialize_with = "static_name")]
    pub endpoint: Name,
    #[serde(default)]
    pub phase: Option<Arc<str>>,
    #[serde(default)]
    pub method: String,
    #[serde(default)]
    pub path: String,
    #[serde(default)]
    pub model: Option<String>,
    #[serde(default)]
    pub stream: Option<bool>,
    /// Rules whose `match` held, whether or not they fired: the drill's chaos
    /// accounting needs the matched count to tell an idle rule from an unlucky one.
    #[serde(default)]
    pub matched: Vec<Arc<str>>,
    #[serde(default)]
    pub rules: Vec<Arc<str>>,
    #[serde(default)]
    pub faults: Vec<FaultRef>,
    #[serde(default)]
    pub faults_skipped: Vec<FaultRef>,
    #[serde(default)]
    pub attempt: Option<u32>,
    /// The call, as a keyed hash of its method, path and body
    /// ([`FingerprintKey::fingerprint`]): reports count a fresh call that repeats
    /// a failed one as its retry, which clients that retry without a retry count
    /// (LiteLLM, LangChain) leave no other trace of.
    #[serde(default)]
    pub fingerprint: Option<Fingerprint>,
    /// Who sent it, as a keyed hash of its credential or address
    /// ([`FingerprintKey::client`]): groups a client's calls without a secret.
    #[serde(default)]
    pub client: Option<ClientId>,
    #[serde(default)]
    pub status: Option<u16>,
    pub outcome: Outcome,
    #[serde(default)]
    pub ttfb_ms: Option<f64>,
    #[serde(default)]
    pub ttft_ms: Option<f64>,
    #[serde(default)]
    pub e2e_ms: f64,
    #[serde(default)]
    pub itl_ms: Option<ItlSummary>,
    #[serde(default)]
    pub tpot_ms: Option<f64>,
    #[serde(default)]
    pub input_tokens: Option<u64>,
    #[serde(default)]
    pub output_tokens: Option<u64>,
    #[serde(default, deserialize_with = "opt_static_name")]
    pub tokens_source: Option<Name>,
    #[serde(default)]
    pub bytes_in: u64,
    #[serde(default)]
    pub bytes_out: u64,
    #[serde(default)]
    pub upstream: Option<UpstreamTiming>,
    #[serde(default)]
    pub gpu: Option<serde_json::Value>,
    #[serde(default)]
    pub results: Option<serde_json::Value>,
    /// A gRPC call's method and final status (only on gRPC exchanges).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub grpc: Option<Box<GrpcCall>>,
    /// Why brownout itself failed the exchange (`x-brownout-error`), if it did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl Record {
    /// A blank record for a new exchange.
    pub fn new(id: u64, listener: Arc<str>) -> Self {
        Record {
            ts: Timestamp(SystemTime::now()),
            id,
            listener,
            api: "generic",
            endpoint: "other",
            phase: None,
            method: String::new(),
            path: String::new(),
            model: None,
            stream: None,
            matched: Vec::new(),
            rules: Vec::new(),
            faults: Vec::new(),
            faults_skipped: Vec::new(),
            attempt: None,
            fingerprint: None,
            client: None,
            status: None,
            outcome: Outcome::ClientClosed,
            ttfb_ms: None,
            ttft_ms: None,
            e2e_ms: 0.0,
            itl_ms: None,
            tpot_ms: None,
            input_tokens: None,
            output_tokens: None,
            tokens_source: None,
            bytes_in: 0,
            bytes_out: 0,
            upstream: None,
            gpu: None,
            results: None,
            grpc: None,
            error: None,
        }
    }

    /// Make a written record blank again, keeping its buffers' capacity.
    pub fn reset(&mut self, id: u64, listener: Arc<str>) {
        let mut method = std::mem::take(&mut self.method);
        let mut path = std::mem::take(&mut self.path);
        let mut matched = std::mem::take(&mut self.matched);
        let mut rules = std::mem::take(&mut self.rules);
        let mut faults = std::mem::take(&mut self.faults);
        let mut skipped = std::mem::take(&mut self.faults_skipped);
        method.clear();
        path.clear();
        matched.clear();
        rules.clear();
        faults.clear();
        skipped.clear();
        *self = Record::new(id, listener);
        self.method = method;
        self.path = path;
        self.matched = matched;
        self.rules = rules;
        self.faults = faults;
        self.faults_skipped = skipped;
    }
}

// ---------------------------------------------------------------------------
// Names read back
// ---------------------------------------------------------------------------

/// Bytes of distinct names [`intern`] keeps at most. Real records name a few dozen
/// (API kinds, endpoints, fault types, skip reasons); the cap only stops a hostile
/// file from growing the table without end.
const INTERN_MAX_BYTES: usize = 64 * 1024;

/// Distinct names read back so far, and their bytes.
static INTERNED: Mutex<(BTreeSet<&'static str>, usize)> = Mutex::new((BTreeSet::new(), 0));

/// `name` as a `&'static str`: the fields it fills are static in the proxy (no
/// allocation per request), so reading a record back keeps each distinct name
/// once for the life of the process. `None` once [`INTERN_MAX_BYTES`] are held.
pub fn intern(name: &str) -> Option<&'static str> {
    let mut t = INTERNED.lock().unwrap_or_else(|p| p.into_inner());
    if let Some(s) = t.0.get(name) {
        return Some(s);
    }
    if t.1 + name.len() > INTERN_MAX_BYTES {
        return None;
    }
    let s: &'static str = Box::leak(name.to_owned().into_boxed_str());
    t.0.insert(s);
    t.1 += s.len();
    Some(s)
}

/// A name read from a record, kept by [`intern`].
struct Interned(&'static str);

impl<'de> Deserialize<'de> for Interned {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = Interned;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a name")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Interned, E> {
                intern(v)
                    .map(Interned)
                    .ok_or_else(|| E::custom("too many distinct names in records"))
            }
        }
        d.deserialize_str(V)
    }
}

fn static_name<'de, D: Deserializer<'de>>(d: D) -> Result<&'static str, D::Error> {
    Interned::deserialize(d).map(|n| n.0)
}

fn opt_static_name<'de, D: Deserializer<'de>>(d: D) -> Result<Option<&'static str>, D::Error> {
    Option::<Interned>::deserialize(d).map(|n| n.map(|n| n.0))
}

// ---------------------------------------------------------------------------
// Fingerprints
// ---------------------------------------------------------------------------

/// A keyed digest cut to `N` bytes (at most 32), written as lowercase hex. Fixed
/// size, so a record carries one without an allocation.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Digest<const N: usize>(pub [u8; N]);

/// A call's fingerprint: 128 bits, so distinct calls do not collide in practice.
pub type Fingerprint = Digest<16>;
/// A client's id: 64 bits, enough to tell a deployment's clients apart.
pub type ClientId = Digest<8>;

impl<const N: usize> Digest<N> {
    const FITS: () = assert!(N <= 32, "an HMAC-SHA256 has 32 bytes");

    fn of(tag: hmac::Tag) -> Self {
        let () = Self::FITS;
        let mut out = [0u8; N];
        out.copy_from_slice(&tag.as_ref()[..N]);
        Digest(out)
    }

    /// Write the hex digits into `buf`, returning them.
    fn hex<'a>(&self, buf: &'a mut [u8; 64]) -> &'a str {
        const DIGITS: &[u8; 16] = b"0123456789abcdef";
        for (i, b) in self.0.iter().enumerate() {
            buf[2 * i] = DIGITS[usize::from(b >> 4)];
            buf[2 * i + 1] = DIGITS[usize::from(b & 15)];
        }
        // Only ASCII hex digits were written.
        std::str::from_utf8(&buf[..2 * N]).unwrap_or_default()
    }
}

impl<const N: usize> fmt::Display for Digest<N> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.hex(&mut [0u8; 64]))
    }
}

impl<const N: usize> fmt::Debug for Digest<N> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl<const N: usize> std::str::FromStr for Digest<N> {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let bad = || format!("`{s}` is not {} hex digits", 2 * N);
        if s.len() != 2 * N {
            return Err(bad());
        }
        let mut out = [0u8; N];
        for (i, pair) in s.as_bytes().chunks_exact(2).enumerate() {
            let digit = |c: u8| (c as char).to_digit(16);
            match (digit(pair[0]), digit(pair[1])) {
                (Some(h), Some(l)) => out[i] = (h * 16 + l) as u8,
                _ => return Err(bad()),
            }
        }
        Ok(Digest(out))
    }
}

impl<const N: usize> Serialize for Digest<N> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.hex(&mut [0u8; 64]))
    }
}

impl<'de, const N: usize> Deserialize<'de> for Digest<N> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V<const N: usize>;
        impl<const N: usize> Visitor<'_> for V<N> {
            type Value = Digest<N>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                write!(f, "{} hex digits", 2 * N)
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Digest<N>, E> {
                v.parse().map_err(E::custom)
            }
        }
        d.deserialize_str(V::<N>)
    }
}

/// The key of records' `fingerprint` and `client` (HMAC-SHA256, config
/// `record.fingerprint_key`). Keyed, so that a fingerprint says nothing about the
/// request to whoever reads the file (a short prompt or an API key could be found
/// by trying candidates against a plain hash); shared between sidecars, so that
/// their records can be merged into one report.
#[derive(Clone)]
pub struct FingerprintKey(hmac::Key);

/// The system's random source failed: a proxy cannot draw its fingerprint key.
#[derive(Debug, thiserror::Error)]
#[error("cannot draw a random record fingerprint key from the system")]
pub struct KeyError;

impl FingerprintKey {
    /// The key from a configured secret.
    pub fn new(secret: &[u8]) -> Self {
        FingerprintKey(hmac::Key::new(hmac::HMAC_SHA256, secret))
    }

    /// A key of this process only (no `record.fingerprint_key`): its records'
    /// fingerprints match each other, not another process's.
    pub fn random() -> Result<Self, KeyError> {
        let rng = ring::rand::SystemRandom::new();
        hmac::Key::generate(hmac::HMAC_SHA256, &rng)
            .map(FingerprintKey)
            .map_err(|_| KeyError)
    }

    /// A call's fingerprint: its method, its request target (path and query) and
    /// its body as far as it was read, `None` when it was not read (then only the
    /// method and target count). Every part is length-prefixed, so no two
    /// different requests hash the same input.
    pub fn fingerprint(&self, method: &str, target: &str, body: Option<&[u8]>) -> Fingerprint {
        let mut c = hmac::Context::with_key(&self.0);
        c.update(b"brownout-fingerprint-1\0");
        part(&mut c, method.as_bytes());
        part(&mut c, target.as_bytes());
        match body {
            None => c.update(&[0]),
            Some(b) => {
                c.update(&[1]);
                part(&mut c, b);
            }
        }
        Digest::of(c.sign())
    }

    /// A client's id: of its `credential` (an API key or authorization header
    /// value, the drill's `x-brownout-client`) when it sent one, else of its
    /// address.
    pub fn client(&self, credential: Option<&[u8]>, ip: IpAddr) -> ClientId {
        let mut c = hmac::Context::with_key(&self.0);
        c.update(b"brownout-client-1\0");
        match (credential, ip.to_canonical()) {
            (Some(k), _) => {
                c.update(&[1]);
                part(&mut c, k);
            }
            (None, IpAddr::V4(a)) => {
                c.update(&[4]);
                c.update(&a.octets());
            }
            (None, IpAddr::V6(a)) => {
                c.update(&[6]);
                c.update(&a.octets());
            }
        }
        Digest::of(c.sign())
    }
}

fn part(c: &mut hmac::Context, bytes: &[u8]) {
    c.update(&(bytes.len() as u64).to_le_bytes());
    c.update(bytes);
}

impl fmt::Debug for FingerprintKey {
    /// Never the key: a config may be printed with `{:?}`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("FingerprintKey(..)")
    }
}

impl<'de> Deserialize<'de> for FingerprintKey {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        if s.is_empty() {
            return Err(de::Error::custom(
                "record.fingerprint_key must not be empty (leave it out for a key of this process)",
            ));
        }
        Ok(FingerprintKey::new(s.as_bytes()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn full(outcome: Outcome) -> Record {
        let key = FingerprintKey::new(b"k");
        let mut r = Record::new(7, Arc::from("llm"));
        r.ts = Timestamp(UNIX_EPOCH + Duration::from_millis(1_767_225_600_123));
        r.api = "openai";
        r.endpoint = "chat";
        r.phase = Some(Arc::from("storm"));
        r.method = "POST".into();
        r.path = "/v1/chat/completions".into();
        r.model = Some("gpt-4o-mini".into());
        r.stream = Some(true);
        r.matched = vec![Arc::from("a"), Arc::from("b")];
        r.rules = vec![Arc::from("a")];
        r.faults = vec![FaultRef {
            rule: Arc::from("a"),
            fault: "error",
            reason: None,
        }];
        r.faults_skipped = vec![FaultRef {
            rule: Arc::from("b"),
            fault: "delay",
            reason: Some("max_active"),
        }];
        r.attempt = Some(2);
        r.fingerprint = Some(key.fingerprint("POST", "/v1/chat/completions", Some(b"{}")));
        r.client = Some(key.client(Some(b"Bearer sk"), IpAddr::from([127, 0, 0, 1])));
        r.status = Some(429);
        r.outcome = outcome;
        r.ttfb_ms = Some(1.5);
        r.ttft_ms = Some(12.25);
        r.e2e_ms = 40.125;
        r.itl_ms = Some(ItlSummary {
            p50: 2.5,
            p95: 4.0,
            max: 8.0,
        });
        r.tpot_ms = Some(3.0);
        r.input_tokens = Some(3);
        r.output_tokens = Some(5);
        r.tokens_source = Some("usage");
        r.bytes_in = 96;
        r.bytes_out = 310;
        r.upstream = Some(UpstreamTiming {
            status: Some(200),
            ttfb_ms: Some(1.0),
            e2e_ms: Some(30.5),
            retried: true,
        });
        r.gpu = Some(serde_json::json!({"queue_ms": 4.5}));
        r.results = Some(serde_json::json!({"returned": 3, "dropped": 1}));
        r.grpc = Some(Box::new(GrpcCall {
            service: "milvus.proto.milvus.MilvusService".into(),
            method: "Search".into(),
            status: Some(14),
            in_message: Some("busy".into()),
        }));
        r.error = Some("upstream: refused".into());
        r
    }

    #[test]
    fn every_outcome_reads_back_field_for_field() {
        for o in Outcome::ALL {
            let r = full(o);
            let line = serde_json::to_string(&r).unwrap();
            assert!(line.contains(&format!("\"outcome\":\"{}\"", o.as_str())));
            let back: Record = serde_json::from_str(&line).unwrap();
            assert_eq!(back, r, "{line}");
            // A blank record too (nulls, empty lists, skipped fields).
            let mut b = Record::new(1, Arc::from("l"));
            b.ts = r.ts;
            b.outcome = o;
            let back: Record = serde_json::from_str(&serde_json::to_string(&b).unwrap()).unwrap();
            assert_eq!(back, b);
        }
    }

    #[test]
    fn an_unknown_outcome_or_a_missing_ts_is_not_a_record() {
        let ok = r#"{"ts":"2026-01-01T00:00:00.000Z","outcome":"ok"}"#;
        let r: Record = serde_json::from_str(ok).unwrap();
        assert_eq!((r.outcome, r.api, r.matched.len()), (Outcome::Ok, "", 0));
        assert!(serde_json::from_str::<Record>(
            r#"{"ts":"2026-01-01T00:00:00.000Z","outcome":"exploded"}"#
        )
        .is_err());
        assert!(serde_json::from_str::<Record>(r#"{"outcome":"ok"}"#).is_err());
        assert!(serde_json::from_str::<Record>(r#"{"ts":"yesterday","outcome":"ok"}"#).is_err());
        assert!(serde_json::from_str::<Record>(
            r#"{"ts":"2026-01-01T00:00:00.000Z","outcome":"ok","fingerprint":"zz"}"#
        )
        .is_err());
    }

    #[test]
    fn names_read_back_are_kept_once() {
        let a = intern("a-fault-type").unwrap();
        let b = intern(&String::from("a-fault-type")).unwrap();
        assert!(std::ptr::eq(a, b));
    }

    #[test]
    fn fingerprints_tell_calls_and_clients_apart_under_one_key() {
        let k = FingerprintKey::new(b"shared");
        let fp = |m, t, b| k.fingerprint(m, t, b);
        let one = fp("POST", "/v1/chat/completions", Some(&b"{\"a\":1}"[..]));
        assert_eq!(
            one,
            FingerprintKey::new(b"shared").fingerprint(
                "POST",
                "/v1/chat/completions",
                Some(b"{\"a\":1}")
            )
        );
        assert_ne!(one, fp("POST", "/v1/chat/completions", Some(b"{\"a\":2}")));
        assert_ne!(one, fp("POST", "/v1/chat/completions", None));
        assert_ne!(
            fp("POST", "/v1/chat/completions", None),
            fp("POST", "/v1/chat/completions", Some(b""))
        );
        assert_ne!(fp("GE", "T/x", None), fp("GET", "/x", None));
        assert_ne!(
            one,
            FingerprintKey::new(b"other").fingerprint(
                "POST",
                "/v1/chat/completions",
                Some(b"{\"a\":1}")
            )
        );
        let ip = IpAddr::from([10, 0, 0, 1]);
        let mapped: IpAddr = "::ffff:10.0.0.1".parse().unwrap();
        assert_eq!(k.client(None, ip), k.client(None, mapped));
        assert_ne!(
            k.client(None, ip),
            k.client(None, IpAddr::from([10, 0, 0, 2]))
        );
        assert_eq!(
            k.client(Some(b"Bearer sk-1"), ip),
            k.client(Some(b"Bearer sk-1"), IpAddr::from([10, 0, 0, 2]))
        );
        assert_ne!(
            k.client(Some(b"Bearer sk-1"), ip),
            k.client(Some(b"Bearer sk-2"), ip)
        );
        // Hex, fixed length, and never the input.
        let s = k.client(Some(b"Bearer sk-1"), ip).to_string();
        assert_eq!(s.len(), 16);
        assert!(s.bytes().all(|c| c.is_ascii_hexdigit()));
        assert_eq!(one.to_string().len(), 32);
        assert_eq!(one.to_string().parse::<Fingerprint>(), Ok(one));
        assert!(format!("{k:?}").contains(".."));
        assert!(FingerprintKey::random().is_ok());
    }
}
