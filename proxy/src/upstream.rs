//! The pooled client each listener forwards through.
//!
//! One keep-alive pool per listener (its upstream, its CA). HTTP/2 is used when an
//! `https` upstream offers it through ALPN; plain `http` upstreams get HTTP/1.1 with
//! reused connections, which is what model servers expect.

use std::path::Path;
use std::time::Duration;

use http::uri::{Authority, Scheme};
use http::{HeaderValue, Uri};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioTimer};

use crate::body::ReqBody;
use crate::tls::{client_config, TlsError};

/// Where a listener forwards, parsed once at start-up.
#[derive(Debug, Clone)]
pub struct Upstream {
    pub scheme: Scheme,
    pub authority: Authority,
    /// Path prefix of the upstream URL (`http://h/prefix`), without trailing `/`.
    pub base_path: String,
    /// The `Host` header sent upstream: always the upstream's, never the client's.
    pub host: HeaderValue,
    pub display: String,
}

/// Why an upstream URL is unusable.
#[derive(Debug, thiserror::Error)]
pub enum UpstreamError {
    #[error("upstream `{0}`: expected http://HOST[:PORT] or https://HOST[:PORT]")]
    BadUrl(String),
    #[error(transparent)]
    Tls(#[from] TlsError),
}

impl Upstream {
    pub fn parse(url: &str) -> Result<Self, UpstreamError> {
        let bad = || UpstreamError::BadUrl(url.to_string());
        let uri: Uri = url.parse().map_err(|_| bad())?;
        let scheme = uri.scheme().cloned().ok_or_else(bad)?;
        if scheme != Scheme::HTTP && scheme != Scheme::HTTPS {
            return Err(bad());
        }
        let authority = uri.authority().cloned().ok_or_else(bad)?;
        let base_path = uri.path().trim_end_matches('/').to_string();
        let host = HeaderValue::from_str(authority.as_str()).map_err(|_| bad())?;
        Ok(Upstream {
            scheme,
            authority,
            base_path,
            host,
            display: url.trim_end_matches('/').to_string(),
        })
    }

    /// The upstream URI for a request: the upstream's scheme and authority, its base
    /// path, then the request's path and query. Without a base path the request's
    /// path is reused as is (no copy, no re-parse).
    pub fn uri_for(&self, request: &Uri) -> Result<Uri, http::Error> {
        let mut parts = http::uri::Parts::default();
        parts.scheme = Some(self.scheme.clone());
        parts.authority = Some(self.authority.clone());
        let pq = request
            .path_and_query()
            .cloned()
            .unwrap_or_else(|| http::uri::PathAndQuery::from_static("/"));
        parts.path_and_query = Some(if self.base_path.is_empty() {
            pq
        } else {
            http::uri::PathAndQuery::try_from(format!("{}{}", self.base_path, pq.as_str()))?
        });
        Ok(Uri::from_parts(parts)?)
    }
}

/// The pooled upstream client type.
pub type UpstreamClient = Client<HttpsConnector<HttpConnector>, ReqBody>;

/// Build a client: TLS with webpki roots (+ `upstream_ca`), keep-alive pool.
pub fn client(extra_ca: Option<&Path>) -> Result<UpstreamClient, UpstreamError> {
    let tls = client_config(extra_ca)?;
    let mut http = HttpConnector::new();
    http.enforce_http(false);
    http.set_nodelay(true);
    http.set_keepalive(Some(Duration::from_secs(60)));
    http.set_connect_timeout(Some(Duration::from_secs(10)));
    let https = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(tls)
        .https_or_http()
        .enable_all_versions()
        .wrap_connector(http);
    Ok(Client::builder(TokioExecutor::new())
        .pool_idle_timeout(Duration::from_secs(90))
        .pool_max_idle_per_host(usize::MAX)
        .pool_timer(TokioTimer::new())
        .timer(TokioTimer::new())
        .build(https))
}
