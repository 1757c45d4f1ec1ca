//! How far a shutdown has gone: the stage [`crate::server::Running::shutdown`]
//! broadcasts, and every task that must stop (the admin listener, the accept loops,
//! each connection and tunnel) watches.

use tokio::sync::watch;

/// How far a shutdown has gone, broadcast to every listener, connection and tunnel.
///
/// Ordered: each stage includes the ones before it, so `stage >= Draining` means
/// "stop taking new work".
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default)]
pub(crate) enum Shutdown {
    /// Serving.
    #[default]
    Running,
    /// Not accepting; connections finish the exchange in flight and close.
    Draining,
    /// The grace period is over: everything still open is cut.
    Abort,
}

/// The receiving side of [`Shutdown`], held by every task that must stop.
pub(crate) type StopRx = watch::Receiver<Shutdown>;
