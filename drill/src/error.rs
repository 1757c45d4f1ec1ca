//! Why a drill could not run.

/// A drill that cannot start. Failures of individual requests are not errors: they
/// are outcomes, counted in the statistics.
#[derive(Debug, thiserror::Error)]
pub enum DrillError {
    /// The plan has no phases, so there is nothing to run.
    #[error("the load plan has no phases")]
    NoPhases,
    /// A phase lasts zero seconds; its statistics would divide by zero.
    #[error("phase `{0}` has a zero duration")]
    EmptyPhase(String),
    /// Two phases share a name, so reports could not tell them apart.
    #[error("phase name `{0}` is used twice")]
    DuplicatePhase(String),
    /// The arrival rate must be a positive, finite number of requests a second.
    #[error("arrival rate must be positive and finite, got {0}")]
    InvalidRate(f64),
    /// The per-request timeout is zero.
    #[error("the request timeout must be greater than zero")]
    ZeroTimeout,
    /// The target is not a usable `http://host:port` base URL.
    #[error("invalid target `{target}`: {reason}")]
    InvalidTarget {
        /// The target as given.
        target: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// The path and target do not form a valid request URI.
    #[error("invalid request URI `{uri}`")]
    InvalidUri {
        /// The URI that failed to parse.
        uri: String,
        /// The parser's complaint.
        #[source]
        source: http::uri::InvalidUri,
    },
    /// A Chroma collection named in the scenario could not be found.
    #[error("cannot find Chroma collection `{collection}` at {target}: {reason}")]
    Collection {
        /// The collection's name.
        collection: String,
        /// The base URL asked.
        target: String,
        /// What went wrong.
        reason: String,
    },
    /// The drill's own runtime or thread could not be started.
    #[error("cannot start the drill's runtime: {0}")]
    Runtime(#[source] std::io::Error),
    /// The drill's thread ended without a result (it panicked).
    #[error("the drill's thread ended without a result")]
    EngineGone,
    /// A statistics histogram could not be created (a bug: the bounds are constant).
    #[error("could not create a latency histogram")]
    Histogram(#[from] hdrhistogram::CreationError),
}
