//! Runtime configuration (docs/configuration.md): a YAML file layered with `BROWNOUT_*`
//! environment variables and command-line flags through the `config` crate.
//!
//! Precedence, lowest first: built-in defaults, the file, environment, flags. The
//! simple sidecar form needs only `BROWNOUT_UPSTREAM` (or `--upstream`), which makes
//! one listener on `BROWNOUT_LISTEN` (default 127.0.0.1:8080).

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use brownout_faults::duration::{parse_bytes, DurationStr};
use brownout_faults::ApiKind;
use serde::Deserialize;

/// The whole configuration as written in a file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    #[serde(default)]
    pub listeners: Vec<ListenerConfig>,
    #[serde(default)]
    pub profile: Option<PathBuf>,
    #[serde(default)]
    pub admin: AdminConfig,
    #[serde(default)]
    pub record: RecordConfig,
    #[serde(default)]
    pub limits: LimitsConfig,
    #[serde(default)]
    pub pool: PoolConfig,
    #[serde(default)]
    pub trusted_proxies: Vec<String>,
    #[serde(default = "yes")]
    pub mark_injected: bool,
    #[serde(default)]
    pub allow_header_faults: bool,
    #[serde(default)]
    pub seed: Option<u64>,
    /// Serve plain HTTP/1.1 requests that no fault can touch on the fast path
    /// (on by default; off sends every request through the full HTTP stack).
    #[serde(default = "yes")]
    pub fast_path: bool,
    /// Worker threads serving the listeners (default: one per CPU, or
    /// `TOKIO_WORKER_THREADS`).
    #[serde(default)]
    pub workers: Option<usize>,
}

fn yes() -> bool {
    true
}

impl Default for FileConfig {
    /// The same defaults as an empty config file (injected responses are marked).
    fn default() -> Self {
        FileConfig {
            listeners: Vec::new(),
            profile: None,
            admin: AdminConfig::default(),
            record: RecordConfig::default(),
            limits: LimitsConfig::default(),
            pool: PoolConfig::default(),
            trusted_proxies: Vec::new(),
            mark_injected: true,
            allow_header_faults: false,
            seed: None,
            fast_path: true,
            workers: None,
        }
    }
}

/// One listening port and the one upstream it forwards to.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListenerConfig {
    #[serde(default)]
    pub name: Option<String>,
    pub listen: String,
    pub upstream: String,
    #[serde(default)]
    pub api: Option<ApiKind>,
    #[serde(default)]
    pub tls: Option<TlsConfig>,
    #[serde(default)]
    pub upstream_ca: Option<PathBuf>,
    /// What a client's FIN after its request means (docs/configuration.md, "Half-closed clients").
    #[serde(default)]
    pub half_close: HalfClose,
    /// Which HTTP version requests go upstream in (docs/configuration.md).
    #[serde(default)]
    pub upstream_protocol: UpstreamProtocol,
}

/// The HTTP version requests go upstream in. `auto` sends gRPC over HTTP/2 and
/// everything else over HTTP/1.1 (or what ALPN picks on https), because the model
/// servers most often fronted (uvicorn: vLLM, SGLang, llama-cpp-python) speak no
/// cleartext HTTP/2 and a gRPC server speaks nothing else.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum UpstreamProtocol {
    #[default]
    Auto,
    /// HTTP/1.1 only; a gRPC call is refused with UNAVAILABLE.
    Http1,
    /// Cleartext HTTP/2 with prior knowledge, for every request (`http://` only).
    H2c,
    /// HTTP/2 through ALPN, for every request (`https://` only).
    H2,
}

/// What a client that shuts down its sending side after its request (a FIN, as
/// `printf ... | nc -N` sends) wants. TCP cannot tell that half-close from a client
/// that closed its socket, so a listener says which to assume.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum HalfClose {
    /// It still wants the answer, as nginx gives it: the exchange goes on and is
    /// `client_closed` only when a write to the client fails, or when the FIN
    /// arrives while a fault holds the request (a client giving up on a hang).
    #[default]
    Answer,
    /// It gave up: the exchange ends `client_closed` when the FIN is seen, and the
    /// upstream is not called if it has not been yet.
    Abort,
}

/// Downstream TLS termination.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    pub cert: PathBuf,
    pub key: PathBuf,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AdminConfig {
    #[serde(default = "default_admin")]
    pub listen: String,
    /// Name of the environment variable holding the admin token.
    #[serde(default = "default_token_env")]
    pub token_env: String,
}

impl Default for AdminConfig {
    fn default() -> Self {
        AdminConfig {
            listen: default_admin(),
            token_env: default_token_env(),
        }
    }
}

fn default_admin() -> String {
    "127.0.0.1:9911".into()
}
fn default_token_env() -> String {
    "BROWNOUT_ADMIN_TOKEN".into()
}

/// Where records go (docs/configuration.md "Records", docs/records.md) and how the file is kept from growing forever.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RecordConfig {
    #[serde(default)]
    pub jsonl: Option<PathBuf>,
    /// Bounded queue between the hot path and the writer.
    #[serde(default = "default_queue")]
    pub queue: usize,
    /// Rotate by size: when the next record would take the file past this many
    /// bytes, the file becomes `FILE.1` (`.1` becomes `.2` ... up to `keep`) and a
    /// new one is opened, so a sidecar left alone for weeks cannot fill its disk
    /// with one file. None: the file grows until an outside rotator moves it.
    #[serde(default)]
    pub max_size: Option<ByteSize>,
    /// Rotated files kept (`FILE.1` ... `FILE.keep`); the oldest is removed. At
    /// least 1: the file being rotated is always kept as `.1`.
    #[serde(default = "default_keep", deserialize_with = "keep_at_least_one")]
    pub keep: usize,
    /// The secret that keys records' `fingerprint` and `client` (HMAC-SHA256):
    /// sidecars given the same one write fingerprints a report can merge. None: a
    /// key drawn at random when the process starts.
    #[serde(default)]
    pub fingerprint_key: Option<brownout_faults::record::FingerprintKey>,
}

impl Default for RecordConfig {
    fn default() -> Self {
        RecordConfig {
            jsonl: None,
            queue: default_queue(),
            max_size: None,
            keep: default_keep(),
            fingerprint_key: None,
        }
    }
}

fn default_queue() -> usize {
    100_000
}

fn default_keep() -> usize {
    5
}

fn keep_at_least_one<'de, D: serde::Deserializer<'de>>(d: D) -> Result<usize, D::Error> {
    let n = usize::deserialize(d)?;
    if n == 0 {
        return Err(serde::de::Error::custom(
            "record.keep must be at least 1: the file being rotated is kept as FILE.1 (leave max_size out to never rotate)",
        ));
    }
    Ok(n)
}

/// A byte size written "1MiB" or as a number.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ByteSize(pub u64);

impl<'de> Deserialize<'de> for ByteSize {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            N(u64),
            S(String),
        }
        match Raw::deserialize(d)? {
            Raw::N(n) => Ok(ByteSize(n)),
            Raw::S(s) => parse_bytes(&s)
                .map(ByteSize)
                .map_err(serde::de::Error::custom),
        }
    }
}

/// How idle upstream connections are kept. Model servers close idle keep-alive
/// connections themselves (uvicorn, which serves vLLM, SGLang and
/// llama-cpp-python, after 5 s), and a request sent on a connection the server is
/// closing fails for no reason the client asked for: brownout retires its idle
/// connections first.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PoolConfig {
    /// An idle upstream connection is never reused after this long (and sooner
    /// when the upstream announces or shows a shorter keep-alive).
    #[serde(default = "d_4s")]
    pub idle_timeout: DurationStr,
}

impl Default for PoolConfig {
    fn default() -> Self {
        PoolConfig {
            idle_timeout: d_4s(),
        }
    }
}

fn d_4s() -> DurationStr {
    DurationStr(Duration::from_secs(4))
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LimitsConfig {
    #[serde(default = "d_inspect")]
    pub inspect_limit: ByteSize,
    #[serde(default = "d_maxconn")]
    pub max_connections: usize,
    #[serde(default = "d_10s")]
    pub header_timeout: DurationStr,
    #[serde(default = "d_120s")]
    pub idle_timeout: DurationStr,
    #[serde(default = "d_10s")]
    pub tls_handshake_timeout: DurationStr,
    #[serde(default = "d_600s")]
    pub upstream_timeout: DurationStr,
    #[serde(default = "d_300s")]
    pub upstream_idle_timeout: DurationStr,
    #[serde(default = "d_10s")]
    pub shutdown_grace: DurationStr,
}

impl Default for LimitsConfig {
    fn default() -> Self {
        LimitsConfig {
            inspect_limit: d_inspect(),
            max_connections: d_maxconn(),
            header_timeout: d_10s(),
            idle_timeout: d_120s(),
            tls_handshake_timeout: d_10s(),
            upstream_timeout: d_600s(),
            upstream_idle_timeout: d_300s(),
            shutdown_grace: d_10s(),
        }
    }
}

fn d_inspect() -> ByteSize {
    ByteSize(1 << 20)
}
fn d_maxconn() -> usize {
    10_000
}
fn d_10s() -> DurationStr {
    DurationStr(Duration::from_secs(10))
}
fn d_120s() -> DurationStr {
    DurationStr(Duration::from_secs(120))
}
fn d_600s() -> DurationStr {
    DurationStr(Duration::from_secs(600))
}
fn d_300s() -> DurationStr {
    DurationStr(Duration::from_secs(300))
}

/// Values given on the command line; each overrides env and file.
#[derive(Debug, Clone, Default)]
pub struct Overrides {
    pub config: Option<PathBuf>,
    pub listen: Option<String>,
    pub upstream: Option<String>,
    pub api: Option<String>,
    pub profile: Option<PathBuf>,
    pub admin: Option<String>,
    pub record: Option<PathBuf>,
    pub seed: Option<u64>,
}

/// Why the configuration cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{0}")]
    Diagnostic(String),
    #[error("configuration: {0}")]
    Layering(#[from] config::ConfigError),
    #[error("no upstream: pass --upstream URL, set BROWNOUT_UPSTREAM, or list listeners in --config FILE")]
    NoListener,
    #[error("listener `{name}`: {message}")]
    Listener { name: String, message: String },
    #[error("invalid {what} `{value}`: {message}")]
    Invalid {
        what: &'static str,
        value: String,
        message: String,
    },
}

/// Read the environment once (tests pass their own map).
pub fn env_overrides(get: impl Fn(&str) -> Option<String>) -> Result<Overrides, ConfigError> {
    let seed = match get("BROWNOUT_SEED") {
        Some(s) => Some(s.trim().parse::<u64>().map_err(|e| ConfigError::Invalid {
            what: "BROWNOUT_SEED",
            value: s.clone(),
            message: e.to_string(),
        })?),
        None => None,
    };
    Ok(Overrides {
        config: None,
        listen: get("BROWNOUT_LISTEN"),
        upstream: get("BROWNOUT_UPSTREAM"),
        api: get("BROWNOUT_API"),
        profile: get("BROWNOUT_PROFILE").map(PathBuf::from),
        admin: get("BROWNOUT_ADMIN"),
        record: get("BROWNOUT_RECORD").map(PathBuf::from),
        seed,
    })
}

/// Layer file < env < flags into one `FileConfig`.
pub fn load(flags: &Overrides, env: &Overrides) -> Result<FileConfig, ConfigError> {
    use config::{Config, File, FileFormat};
    let mut b = Config::builder();
    if let Some(path) = &flags.config {
        // Validate with positions first: the `config` crate keeps none.
        let src = std::fs::read_to_string(path).map_err(|e| {
            ConfigError::Diagnostic(format!("{}: cannot read: {e}", path.display()))
        })?;
        brownout_faults::yaml::from_str::<FileConfig>(&src, &path.display().to_string())
            .map_err(|d| ConfigError::Diagnostic(d.to_string()))?;
        b = b.add_source(File::from_str(&src, FileFormat::Yaml));
    }
    let pick = |f: &Option<String>, e: &Option<String>| f.clone().or_else(|| e.clone());
    let pick_path = |f: &Option<PathBuf>, e: &Option<PathBuf>| {
        f.clone()
            .or_else(|| e.clone())
            .map(|p| p.display().to_string())
    };
    b = b
        .set_override_option("profile", pick_path(&flags.profile, &env.profile))?
        .set_override_option("admin.listen", pick(&flags.admin, &env.admin))?
        .set_override_option("record.jsonl", pick_path(&flags.record, &env.record))?
        .set_override_option("seed", flags.seed.or(env.seed))?;
    let cfg: FileConfig = b.build()?.try_deserialize()?;
    let mut cfg = cfg;
    // The simple form: one listener from --upstream / BROWNOUT_UPSTREAM.
    if let Some(upstream) = pick(&flags.upstream, &env.upstream) {
        let listen = pick(&flags.listen, &env.listen).unwrap_or_else(|| "127.0.0.1:8080".into());
        let api = match pick(&flags.api, &env.api) {
            Some(a) => Some(parse_api(&a)?),
            None => None,
        };
        if cfg.listeners.is_empty() {
            cfg.listeners.push(ListenerConfig {
                name: Some("default".into()),
                listen,
                upstream,
                api,
                ..Default::default()
            });
        } else {
            // Flags refine the first listener of the file.
            let l = &mut cfg.listeners[0];
            l.upstream = upstream;
            if flags.listen.is_some() || env.listen.is_some() {
                l.listen = listen;
            }
            if api.is_some() {
                l.api = api;
            }
        }
    } else if let Some(listen) = pick(&flags.listen, &env.listen) {
        if let Some(l) = cfg.listeners.first_mut() {
            l.listen = listen;
        }
    }
    if cfg.listeners.is_empty() {
        return Err(ConfigError::NoListener);
    }
    Ok(cfg)
}

/// Parse `--api`.
pub fn parse_api(s: &str) -> Result<ApiKind, ConfigError> {
    brownout_faults::yaml::from_str::<ApiKind>(s, "--api").map_err(|_| ConfigError::Invalid {
        what: "api",
        value: s.to_string(),
        message: "expected openai, anthropic, vllm, tgi, ollama, triton, qdrant, chroma, milvus, weaviate, pinecone or generic".into(),
    })
}

/// Parse a listen address, accepting `:8080` as all interfaces.
pub fn parse_addr(what: &'static str, s: &str) -> Result<SocketAddr, ConfigError> {
    let s2 = if s.starts_with(':') {
        format!("0.0.0.0{s}")
    } else {
        s.to_string()
    };
    let s2 = s2.replace("localhost:", "127.0.0.1:");
    s2.parse()
        .map_err(|e: std::net::AddrParseError| ConfigError::Invalid {
            what,
            value: s.to_string(),
            message: format!("{e} (expected HOST:PORT, e.g. 127.0.0.1:8080)"),
        })
}

/// Resolve a relative path in the config file against the file's directory.
pub fn relative_to(base: Option<&Path>, p: &Path) -> PathBuf {
    match base.and_then(|b| b.parent()) {
        Some(dir) if p.is_relative() => dir.join(p),
        _ => p.to_path_buf(),
    }
}

/// An IPv4 or IPv6 network, for `trusted_proxies`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    addr: IpAddr,
    prefix: u8,
}

impl std::str::FromStr for Cidr {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let (a, p) = match s.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (s, None),
        };
        let addr: IpAddr = a.trim().parse().map_err(|e| format!("`{s}`: {e}"))?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = match p {
            Some(p) => p
                .trim()
                .parse::<u8>()
                .map_err(|e| format!("`{s}`: prefix: {e}"))?,
            None => max,
        };
        if prefix > max {
            return Err(format!("`{s}`: prefix longer than {max}"));
        }
        Ok(Cidr { addr, prefix })
    }
}

impl Cidr {
    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(ip),
            v4 => v4,
        };
        match (self.addr, ip) {
            (IpAddr::V4(n), IpAddr::V4(a)) => {
                let mask = if self.prefix == 0 {
                    0
                } else {
                    u32::MAX << (32 - self.prefix)
                };
                u32::from(n) & mask == u32::from(a) & mask
            }
            (IpAddr::V6(n), IpAddr::V6(a)) => {
                let mask = if self.prefix == 0 {
                    0
                } else {
                    u128::MAX << (128 - self.prefix)
                };
                u128::from(n) & mask == u128::from(a) & mask
            }
            _ => false,
        }
    }
}

#[cfg(test)]
mod half_close_tests {
    use super::*;

    fn listener(extra: &str) -> Result<ListenerConfig, serde_json::Error> {
        serde_json::from_str(&format!(
            r#"{{"listen": "127.0.0.1:0", "upstream": "http://127.0.0.1:1"{extra}}}"#
        ))
    }

    #[test]
    fn half_close_defaults_to_answer_and_takes_abort() {
        assert_eq!(listener("").unwrap().half_close, HalfClose::Answer);
        assert_eq!(
            listener(r#", "half_close": "abort""#).unwrap().half_close,
            HalfClose::Abort
        );
        assert_eq!(
            listener(r#", "half_close": "answer""#).unwrap().half_close,
            HalfClose::Answer
        );
        let e = listener(r#", "half_close": "close""#).unwrap_err();
        assert!(e.to_string().contains("answer"), "{e}");
    }
}

#[cfg(test)]
mod cidr_tests {
    use super::*;

    #[test]
    fn cidr_contains() {
        let c: Cidr = "10.0.0.0/8".parse().unwrap();
        assert!(c.contains("10.1.2.3".parse().unwrap()));
        assert!(!c.contains("11.0.0.1".parse().unwrap()));
        assert!(c.contains("::ffff:10.0.0.1".parse().unwrap()));
        let h: Cidr = "127.0.0.1".parse().unwrap();
        assert!(h.contains("127.0.0.1".parse().unwrap()));
        assert!(!h.contains("127.0.0.2".parse().unwrap()));
        assert!("10.0.0.0/33".parse::<Cidr>().is_err());
    }
}
