//! Start-up and shutdown: parse → validate → build everything, then bind and serve.
//!
//! Each listener accepts TCP (optionally TLS with ALPN) and serves HTTP/1.1 and
//! HTTP/2 on the same port (h2c is detected from the connection preface): a plain
//! connection to a plain-HTTP upstream goes to the fast loop ([`crate::http1`]),
//! every other to hyper ([`crate::pipeline::serve`]). Shutdown is graceful: readiness fails at once, accepting stops, in-flight exchanges get
//! `shutdown_grace` to finish, the rest are cut, and then every record is flushed.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use hyper_util::rt::{TokioExecutor, TokioTimer};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{watch, Semaphore};
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_rustls::TlsAcceptor;

use crate::config::{parse_addr, relative_to, Cidr, FileConfig, HalfClose};
use crate::conn::{ConnInfo, ConnIo};
use crate::control::shutdown::{Shutdown, StopRx};
use crate::control::state::{ProfileSource, Shared};
use crate::exchange::Listener;
use crate::pipeline::call::ListenerCtx;
use crate::pipeline::serve::{serve_full, ConnSettings};
use crate::record::metrics::{Metrics, Rejection};
use crate::record::Recorder;

/// Why the proxy cannot start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("{0}")]
    Config(String),
    #[error("cannot listen on {addr} ({what}): {source}")]
    Bind {
        what: String,
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("{0}")]
    Io(#[from] std::io::Error),
}

/// What to run.
#[derive(Debug, Clone, Default)]
pub struct StartOptions {
    pub config: FileConfig,
    /// The config file, to resolve relative paths in it.
    pub config_path: Option<PathBuf>,
    /// A profile given as text instead of a file (the demo's built-in one).
    pub builtin_profile: Option<String>,
    /// Admin token (from the env var the config names).
    pub admin_token: Option<String>,
    /// Start without the admin listener (tests, the demo).
    pub no_admin: bool,
    /// Worker threads that serve the listeners, each with its own single-thread
    /// runtime (`0`: serve on the caller's runtime, as tests and the demo do).
    /// A connection stays on the worker that accepted it, with that worker's
    /// upstream pool, as nginx's workers do: nothing is handed between threads.
    pub workers: usize,
}

/// A running proxy.
#[derive(Debug)]
pub struct Running {
    pub listeners: Vec<(String, SocketAddr)>,
    pub admin: Option<SocketAddr>,
    pub shared: Arc<Shared>,
    stop: watch::Sender<Shutdown>,
    conns: Arc<Semaphore>,
    max_conns: usize,
    grace: Duration,
    tasks: Vec<JoinHandle<()>>,
    workers: Vec<std::thread::JoinHandle<()>>,
    _watcher: Option<crate::control::reload::Watcher>,
}

impl Running {
    /// The address of listener `name` (or the first listener).
    pub fn addr(&self, name: Option<&str>) -> Option<SocketAddr> {
        match name {
            Some(n) => self.listeners.iter().find(|(l, _)| l == n).map(|(_, a)| *a),
            None => self.listeners.first().map(|(_, a)| *a),
        }
    }

    /// Graceful shutdown: not ready, stop accepting, let in-flight work finish within
    /// the grace period, cut the rest, flush records.
    pub async fn shutdown(self) {
        self.shared.ready.store(false, Ordering::Release);
        let _ = self.stop.send(Shutdown::Draining);
        let deadline = Instant::now() + self.grace;
        let all_closed = |s: &Semaphore| s.available_permits() >= self.max_conns;
        while !all_closed(&self.conns) && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        if !all_closed(&self.conns) {
            // Held requests continue unharmed rather than hang to the end: release
            // them and give them the kill switch's second to finish before cutting.
            tracing::warn!("shutdown grace expired; releasing held requests");
            self.shared.release.turn_off();
            let deadline = Instant::now() + Duration::from_secs(1);
            while !all_closed(&self.conns) && Instant::now() < deadline {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
        if !all_closed(&self.conns) {
            tracing::warn!("closing remaining connections");
            let _ = self.stop.send(Shutdown::Abort);
            let deadline = Instant::now() + Duration::from_secs(2);
            while !all_closed(&self.conns) && Instant::now() < deadline {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
        for t in &self.tasks {
            t.abort();
        }
        // Workers end (dropping what is left on them, which records it) before the
        // recorder is closed.
        let _ = self.stop.send(Shutdown::Abort);
        let workers = self.workers;
        let _ = tokio::task::spawn_blocking(move || {
            for w in workers {
                let _ = w.join();
            }
        })
        .await;
        let recorder = self.shared.recorder.clone();
        let _ = tokio::task::spawn_blocking(move || recorder.close()).await;
    }
}

/// Parse, validate and build everything, then bind and serve.
pub async fn start(opts: StartOptions) -> Result<Running, StartError> {
    let cfg = &opts.config;
    let base = opts.config_path.as_deref();
    // Parse and build every listener before binding anything.
    struct Planned {
        name: String,
        addr: SocketAddr,
        ctx_parts: (
            brownout_faults::ApiKind,
            crate::upstream::Upstream,
            crate::upstream::UpstreamClient,
        ),
        protocol: crate::config::UpstreamProtocol,
        h2: Option<crate::upstream::h2::H2Dialer>,
        ca: Option<PathBuf>,
        tls: Option<TlsAcceptor>,
        half_close: HalfClose,
    }
    let mut planned = Vec::new();
    for (i, l) in cfg.listeners.iter().enumerate() {
        let name = l.name.clone().unwrap_or_else(|| {
            if i == 0 {
                "default".into()
            } else {
                format!("listener-{}", i + 1)
            }
        });
        let cerr = |m: String| StartError::Config(format!("listener `{name}`: {m}"));
        let addr = parse_addr("listen", &l.listen).map_err(|e| cerr(e.to_string()))?;
        let upstream =
            crate::upstream::Upstream::parse(&l.upstream).map_err(|e| cerr(e.to_string()))?;
        let ca = l.upstream_ca.as_ref().map(|p| relative_to(base, p));
        let client = crate::upstream::client(&upstream, ca.as_deref(), cfg.pool.idle_timeout.0)
            .map_err(|e| cerr(e.to_string()))?;
        let tls = match &l.tls {
            Some(t) => Some(TlsAcceptor::from(
                crate::tls::server_config(&relative_to(base, &t.cert), &relative_to(base, &t.key))
                    .map_err(|e| cerr(e.to_string()))?,
            )),
            None => None,
        };
        let api = l.api.unwrap_or(brownout_faults::ApiKind::Generic);
        let protocol = l.upstream_protocol;
        let h2 = upstream_h2(protocol, &upstream, ca.as_deref()).map_err(cerr)?;
        planned.push(Planned {
            name,
            addr,
            ctx_parts: (api, upstream, client),
            protocol,
            h2,
            ca,
            tls,
            half_close: l.half_close,
        });
    }
    let trusted = cfg
        .trusted_proxies
        .iter()
        .map(|s| s.parse::<Cidr>())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| StartError::Config(format!("trusted_proxies: {e}")))?;

    // The profile: parse and validate before serving.
    let profile_path = cfg.profile.as_ref().map(|p| relative_to(base, p));
    let (profile, text, source) = match (&opts.builtin_profile, &profile_path) {
        (Some(text), _) => {
            let p = brownout_faults::validate::load_profile(text, "<built-in>").map_err(diag)?;
            (Some(p), Some(text.clone()), ProfileSource::Builtin)
        }
        (None, Some(path)) => {
            let text = std::fs::read_to_string(path).map_err(|e| {
                StartError::Config(format!("cannot read profile {}: {e}", path.display()))
            })?;
            let p = brownout_faults::validate::load_profile(&text, &path.display().to_string())
                .map_err(diag)?;
            (Some(p), Some(text), ProfileSource::File)
        }
        (None, None) => (None, None, ProfileSource::None),
    };

    let admin_addr =
        parse_addr("admin", &cfg.admin.listen).map_err(|e| StartError::Config(e.to_string()))?;
    if !opts.no_admin && !admin_addr.ip().is_loopback() && opts.admin_token.is_none() {
        return Err(StartError::Config(format!(
            "refusing to serve the admin API on non-loopback {admin_addr} without a token: set {} or bind it to 127.0.0.1",
            cfg.admin.token_env
        )));
    }

    let metrics = Arc::new(Metrics::default());
    let record_path = cfg.record.jsonl.as_ref().map(|p| relative_to(base, p));
    let recorder = Recorder::start_with(record_path.as_deref(), &cfg.record, metrics.clone())?;
    let mut shared = Shared::new(recorder, metrics.clone(), &cfg.limits, cfg.seed);
    shared.mark_injected = cfg.mark_injected;
    shared.allow_header_faults = cfg.allow_header_faults;
    shared.trusted_proxies = trusted;
    shared.profile_path = profile_path.clone();
    let shared = Arc::new(shared);
    if let Some(p) = &profile {
        shared.apply(p, text, source).map_err(StartError::Config)?;
    }

    // Bind.
    let (stop_tx, stop_rx) = watch::channel(Shutdown::Running);
    let max_conns = cfg.limits.max_connections.max(1);
    let conns = Arc::new(Semaphore::new(max_conns));
    let waiting = Arc::new(Semaphore::new(WAITING_ROOM));
    // Each connection picks its protocol first (ALPN under TLS, HTTP/2's preface or
    // not in plain text) and is served by that protocol's builder alone, so an
    // HTTP/1.1 connection's task is sized for HTTP/1.1, not for the larger of the two.
    let mut h1 = hyper::server::conn::http1::Builder::new();
    h1.timer(TokioTimer::new())
        // hyper's header timer also runs while a keep-alive connection waits for its
        // next request, so it implements `idle_timeout`; the first request's
        // `header_timeout` is enforced per connection in `drive`.
        .header_read_timeout(cfg.limits.idle_timeout.0.max(cfg.limits.header_timeout.0))
        .keep_alive(true);
    // `half_close: answer`: hyper then keeps serving a request after the client's
    // FIN instead of treating it as the end (its default); holds watch for a FIN
    // themselves (`conn::HoldWatch`). `abort` keeps hyper's default.
    let h1_abort = Arc::new(h1.clone());
    h1.half_close(true);
    let h1_answer = Arc::new(h1);
    let mut h2 = hyper::server::conn::http2::Builder::new(TokioExecutor::new());
    // Limits no tighter than grpc-go's, so a gRPC client that its server would
    // serve is not refused here: header lists up to 16 MiB, no cap on concurrent
    // streams beyond the client's own. No PINGs, no `date` added to answers that
    // pass through.
    h2.timer(TokioTimer::new())
        .keep_alive_interval(None)
        .max_header_list_size(crate::upstream::h2::MAX_HEADER_LIST)
        .max_concurrent_streams(None)
        .auto_date_header(false);
    let h2 = Arc::new(h2);
    let mut tasks = Vec::new();
    let mut bound = Vec::new();
    // Per worker thread: its listeners (a handle on each shared socket) and contexts.
    let mut per_worker: Vec<Vec<WorkerListener>> = (0..opts.workers).map(|_| Vec::new()).collect();
    for p in planned {
        let listener = bind(p.addr).map_err(|e| StartError::Bind {
            what: format!("listener `{}`", p.name),
            addr: p.addr,
            source: e,
        })?;
        let addr = listener.local_addr()?;
        let (api, upstream, client) = p.ctx_parts;
        tracing::info!(listener = %p.name, %addr, upstream = %upstream.display, tls = p.tls.is_some(), "listening");
        let ctx_with = |client| {
            Arc::new(ListenerCtx {
                listener: Arc::new(Listener {
                    active: metrics.active_gauge(&p.name),
                    name: Arc::from(p.name.as_str()),
                    api,
                    shared: shared.clone(),
                }),
                upstream: upstream.clone(),
                client,
                protocol: p.protocol,
                h2: p.h2.clone(),
            })
        };
        bound.push((p.name.clone(), addr));
        let settings = Arc::new(ConnSettings {
            tls: p.tls,
            h1: match p.half_close {
                HalfClose::Answer => h1_answer.clone(),
                HalfClose::Abort => h1_abort.clone(),
            },
            half_close: p.half_close,
            waiting: waiting.clone(),
            h2: h2.clone(),
            handshake_timeout: cfg.limits.tls_handshake_timeout.0,
            header_timeout: cfg.limits.header_timeout.0,
            idle_timeout: cfg.limits.idle_timeout.0,
            // The fast loop speaks HTTP/1.1 upstream only.
            own_h1: p.protocol != crate::config::UpstreamProtocol::H2c,
            fast_path: cfg.fast_path,
        });
        if per_worker.is_empty() {
            tasks.push(tokio::spawn(accept_loop(
                TcpListener::from_std(listener)?,
                ctx_with(client),
                settings,
                conns.clone(),
                stop_rx.clone(),
                None,
            )));
            continue;
        }
        // Every worker accepts on the same socket (whichever is free takes the
        // connection) and forwards through its own upstream pool.
        for (i, w) in per_worker.iter_mut().enumerate() {
            let client = if i == 0 {
                client.clone()
            } else {
                crate::upstream::client(&upstream, p.ca.as_deref(), cfg.pool.idle_timeout.0)
                    .map_err(|e| StartError::Config(format!("listener `{}`: {e}", p.name)))?
            };
            w.push(WorkerListener {
                listener: listener.try_clone()?,
                ctx: ctx_with(client),
                settings: settings.clone(),
            });
        }
    }
    let mut workers = Vec::new();
    let load = Arc::new(WorkerLoad::new(per_worker.len()));
    for (i, listeners) in per_worker.into_iter().enumerate() {
        let share = (load.clone(), i);
        workers.push(spawn_worker(
            share,
            listeners,
            conns.clone(),
            stop_rx.clone(),
        )?);
    }
    let admin = if opts.no_admin {
        None
    } else {
        let listener = TcpListener::bind(admin_addr)
            .await
            .map_err(|e| StartError::Bind {
                what: "admin API".into(),
                addr: admin_addr,
                source: e,
            })?;
        let addr = listener.local_addr()?;
        tracing::info!(%addr, "admin API listening");
        tasks.push(tokio::spawn(crate::control::admin::serve(
            listener,
            shared.clone(),
            opts.admin_token.clone(),
            stop_rx.clone(),
        )));
        Some(addr)
    };
    let watcher = match (&profile_path, &opts.builtin_profile) {
        (Some(path), None) => crate::control::reload::watch(path.clone(), shared.clone()),
        _ => None,
    };
    shared.ready.store(true, Ordering::Release);
    Ok(Running {
        listeners: bound,
        admin,
        shared,
        stop: stop_tx,
        conns,
        max_conns,
        grace: cfg.limits.shutdown_grace.0,
        tasks,
        workers,
        _watcher: watcher,
    })
}

/// Bind a listening socket as tokio would (`SO_REUSEADDR`, backlog 1024), as a
/// std socket that any worker's runtime can take a handle on.
/// The HTTP/2 dialer a listener needs, checking `upstream_protocol` against the
/// upstream's scheme: h2c is cleartext HTTP/2, h2 is HTTP/2 chosen in TLS, and
/// neither can be had from the other scheme.
fn upstream_h2(
    protocol: crate::config::UpstreamProtocol,
    upstream: &crate::upstream::Upstream,
    ca: Option<&std::path::Path>,
) -> Result<Option<crate::upstream::h2::H2Dialer>, String> {
    use crate::config::UpstreamProtocol as P;
    let https = upstream.scheme == http::uri::Scheme::HTTPS;
    match (protocol, https) {
        (P::Http1, _) => return Ok(None),
        (P::H2c, true) => {
            return Err(format!(
                "upstream_protocol h2c is cleartext HTTP/2, but the upstream {} is https (use h2)",
                upstream.display
            ))
        }
        (P::H2, false) => {
            return Err(format!(
                "upstream_protocol h2 is HTTP/2 through TLS, but the upstream {} is http (use h2c)",
                upstream.display
            ))
        }
        _ => {}
    }
    crate::upstream::h2::H2Dialer::new(upstream, ca)
        .map(Some)
        .map_err(|e| e.to_string())
}

fn bind(addr: SocketAddr) -> std::io::Result<std::net::TcpListener> {
    let socket = socket2::Socket::new(
        socket2::Domain::for_address(addr),
        socket2::Type::STREAM,
        Some(socket2::Protocol::TCP),
    )?;
    #[cfg(unix)]
    socket.set_reuse_address(true)?;
    socket.bind(&addr.into())?;
    socket.listen(1024)?;
    socket.set_nonblocking(true)?;
    Ok(socket.into())
}

/// One listener as one worker serves it.
struct WorkerListener {
    listener: std::net::TcpListener,
    ctx: Arc<ListenerCtx>,
    settings: Arc<ConnSettings>,
}

/// A worker thread: a single-thread runtime that accepts on every listener and
/// serves the connections it accepted, until shutdown aborts what is left.
fn spawn_worker(
    (load, i): (Arc<WorkerLoad>, usize),
    listeners: Vec<WorkerListener>,
    conns: Arc<Semaphore>,
    mut stop: StopRx,
) -> Result<std::thread::JoinHandle<()>, StartError> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let handle = std::thread::Builder::new()
        .name(format!("brownout-worker-{i}"))
        .spawn(move || {
            rt.block_on(async move {
                for l in listeners {
                    match TcpListener::from_std(l.listener) {
                        Ok(t) => {
                            tokio::spawn(accept_loop(
                                t,
                                l.ctx,
                                l.settings,
                                conns.clone(),
                                stop.clone(),
                                Some((load.clone(), i)),
                            ));
                        }
                        Err(e) => {
                            tracing::error!(error = %e, worker = i, "cannot accept on a listener")
                        }
                    }
                }
                // Dropping the runtime then drops every connection still open,
                // which writes their records.
                let _ = stop.wait_for(|v| *v == Shutdown::Abort).await;
            });
        })?;
    Ok(handle)
}

fn diag(d: Vec<brownout_faults::yaml::Diagnostic>) -> StartError {
    StartError::Config(
        d.iter()
            .map(|d| d.to_string())
            .collect::<Vec<_>>()
            .join("\n"),
    )
}

/// Open connections per worker, so that the workers share connections evenly.
///
/// Every worker accepts on the same socket and the kernel wakes them all; without
/// this, the first to run takes a whole burst of new connections (a load generator
/// opening 32 at once may leave one worker with 25), and that worker's core then
/// caps the throughput while the other idles. A worker holding more than its share
/// (more than one above the least loaded) lets the others take the next connection,
/// as nginx's `accept_mutex` does.
#[derive(Debug)]
pub(crate) struct WorkerLoad {
    open: Box<[std::sync::atomic::AtomicUsize]>,
}

impl WorkerLoad {
    fn new(workers: usize) -> Self {
        WorkerLoad {
            open: (0..workers)
                .map(|_| std::sync::atomic::AtomicUsize::new(0))
                .collect(),
        }
    }

    fn open_of(&self, w: usize) -> usize {
        self.open.get(w).map_or(0, |n| n.load(Ordering::Relaxed))
    }

    /// Whether worker `w` should take the next connection.
    fn may_accept(&self, w: usize) -> bool {
        let least = (0..self.open.len())
            .map(|i| self.open_of(i))
            .min()
            .unwrap_or(0);
        self.open_of(w) <= least + 1
    }

    fn opened(&self, w: usize) {
        if let Some(n) = self.open.get(w) {
            n.fetch_add(1, Ordering::Relaxed);
        }
    }

    fn closed(&self, w: usize) {
        if let Some(n) = self.open.get(w) {
            n.fetch_sub(1, Ordering::Relaxed);
        }
    }
}

/// One open connection counted against its worker; dropping it (even when the task
/// is aborted or unwinds) gives the count back.
struct OpenConn {
    load: Arc<WorkerLoad>,
    worker: usize,
}

impl OpenConn {
    fn new(load: Arc<WorkerLoad>, worker: usize) -> Self {
        load.opened(worker);
        OpenConn { load, worker }
    }
}

impl Drop for OpenConn {
    fn drop(&mut self) {
        self.load.closed(self.worker);
    }
}

/// How long a worker over its share waits for another to take a connection before
/// taking it itself (the others may be busy, or stopping).
const SHARE_WAIT: Duration = Duration::from_millis(1);
const SHARE_TRIES: u32 = 5;

/// How many connections accepted over `max_connections` may wait for a slot at
/// once, across every listener: as many as the listen backlog brownout asks the
/// kernel for, which is where they waited before they could be counted. Beyond
/// that, a new connection is closed at once.
const WAITING_ROOM: usize = 1024;

async fn accept_loop(
    listener: TcpListener,
    ctx: Arc<ListenerCtx>,
    settings: Arc<ConnSettings>,
    conns: Arc<Semaphore>,
    mut stop: StopRx,
    load: Option<(Arc<WorkerLoad>, usize)>,
) {
    loop {
        if let Some((load, me)) = &load {
            let mut tries = 0;
            while !load.may_accept(*me) && tries < SHARE_TRIES {
                tokio::time::sleep(SHARE_WAIT).await;
                tries += 1;
            }
        }
        let (stream, peer) = tokio::select! {
            r = listener.accept() => match r {
                Ok(x) => x,
                Err(e) => {
                    // EMFILE and friends: back off instead of spinning.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = stop.changed() => return,
        };
        // A connection over `max_connections` waits for a slot (FIFO) within
        // `header_timeout`, the time any new connection has to start a request; one
        // that cannot is closed and counted, where a paused accept would have left
        // it in the kernel's queue, unseen, or dropped its SYN.
        let permit = match conns.clone().try_acquire_owned() {
            Ok(p) => Ok(p),
            Err(tokio::sync::TryAcquireError::Closed) => return,
            Err(tokio::sync::TryAcquireError::NoPermits) => {
                match settings.waiting.clone().try_acquire_owned() {
                    Ok(seat) => Err(seat),
                    Err(_) => {
                        ctx.listener.shared.metrics.rejected(
                            Rejection::MaxConnections,
                            &ctx.listener.name,
                            peer,
                            &"max_connections open and too many already waiting for a slot",
                        );
                        continue;
                    }
                }
            }
        };
        let counted = load.clone().map(|(l, me)| OpenConn::new(l, me));
        let (ctx, settings, mut stop) = (ctx.clone(), settings.clone(), stop.clone());
        match permit {
            Ok(permit) => {
                let guard = SlotGuard {
                    _counted: counted,
                    _permit: permit,
                };
                tokio::spawn(serve_conn(stream, peer, ctx, settings, stop, guard));
            }
            Err(seat) => {
                let conns = conns.clone();
                tokio::spawn(async move {
                    let wait = wait_for_slot(seat, conns, &ctx, &settings, peer, &mut stop);
                    // Boxed: rare, and the connection's future is as large as its
                    // largest state for the rest of its life.
                    let Some(permit) = Box::pin(wait).await else {
                        return;
                    };
                    let guard = SlotGuard {
                        _counted: counted,
                        _permit: permit,
                    };
                    serve_conn(stream, peer, ctx, settings, stop, guard).await
                });
            }
        }
    }
}

/// A connection's place: counted against its worker, and its slot among
/// `max_connections`, both given back (in that order) when it is dropped, even
/// when the task is aborted or unwinds.
struct SlotGuard {
    _counted: Option<OpenConn>,
    _permit: tokio::sync::OwnedSemaphorePermit,
}

/// Wait for a connection slot within `header_timeout`, holding a seat in the
/// waiting room meanwhile; `None`: none came in time (counted), or shutdown.
async fn wait_for_slot(
    seat: tokio::sync::OwnedSemaphorePermit,
    conns: Arc<Semaphore>,
    ctx: &ListenerCtx,
    settings: &ConnSettings,
    peer: SocketAddr,
    stop: &mut StopRx,
) -> Option<tokio::sync::OwnedSemaphorePermit> {
    let wait = settings.header_timeout;
    let p = tokio::select! {
        p = conns.acquire_owned() => p.ok(),
        _ = tokio::time::sleep(wait) => {
            ctx.listener.shared.metrics.rejected(
                Rejection::MaxConnections,
                &ctx.listener.name,
                peer,
                &format_args!("no free slot within header_timeout ({wait:?})"),
            );
            None
        }
        _ = stop.changed() => None,
    };
    drop(seat);
    p
}

/// The future that serves one accepted connection, holding `guard` until it ends.
///
/// The fast path's future is the connection's task itself, as small as it can be
/// (idle keep-alive connections may be many, and each task is as large as its
/// largest state); every other path is boxed, so that it takes only the room it
/// needs on its own connections.
fn serve_conn(
    stream: TcpStream,
    peer: SocketAddr,
    ctx: Arc<ListenerCtx>,
    settings: Arc<ConnSettings>,
    stop: StopRx,
    guard: SlotGuard,
) -> futures_util::future::Either<
    impl std::future::Future<Output = ()> + Send + 'static,
    std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send + 'static>>,
> {
    use futures_util::future::Either;
    if settings.tls.is_none() && settings.own_h1 {
        if let Some(pool) = ctx.client.direct_pool() {
            return Either::Left(crate::http1::serve(
                stream, peer, ctx, pool, settings, stop, guard,
            ));
        }
    }
    Either::Right(Box::pin(async move {
        serve_other(stream, peer, ctx, &settings, stop).await;
        drop(guard);
    }))
}

/// Serve a connection the fast path does not take: TLS, or a plain one when the
/// fast path is off.
async fn serve_other(
    stream: TcpStream,
    peer: SocketAddr,
    ctx: Arc<ListenerCtx>,
    settings: &ConnSettings,
    stop: StopRx,
) {
    let _ = stream.set_nodelay(true);
    let info = ConnInfo::new(peer);
    let reject = |reason, why: &dyn std::fmt::Display| {
        ctx.listener
            .shared
            .metrics
            .rejected(reason, &ctx.listener.name, peer, why)
    };
    match &settings.tls {
        None => {
            let h2 = match tokio::time::timeout(settings.header_timeout, speaks_h2(&stream)).await {
                Ok(Ok(Some(h2))) => h2,
                Err(_) => {
                    let t = settings.header_timeout;
                    return reject(
                        Rejection::HeaderTimeout,
                        &format_args!("no request within header_timeout ({t:?})"),
                    );
                }
                // Closed before sending anything, or failed: nothing to serve.
                Ok(_) => return,
            };
            serve_full(
                h2,
                ConnIo::new(stream, info.clone()),
                ctx,
                info,
                settings,
                stop,
            )
            .await
        }
        Some(acceptor) => {
            let limit = settings.handshake_timeout;
            let started = tokio::time::Instant::now();
            // A client that closes before sending a byte (a TCP health check) did
            // not fail a handshake: it never began one.
            let mut byte = [0u8; 1];
            match tokio::time::timeout(limit, stream.peek(&mut byte)).await {
                Ok(Ok(n)) if n > 0 => {}
                Ok(_) => return,
                Err(_) => {
                    return reject(
                        Rejection::TlsHandshake,
                        &format_args!("no ClientHello within tls_handshake_timeout ({limit:?})"),
                    )
                }
            }
            let io = ConnIo::new(stream, info.clone());
            let left = limit.saturating_sub(started.elapsed());
            let tls_stream = match tokio::time::timeout(left, Box::pin(acceptor.accept(io))).await {
                Ok(Ok(s)) => s,
                Ok(Err(e)) => {
                    return reject(
                        Rejection::TlsHandshake,
                        &format_args!("TLS handshake failed: {e}"),
                    )
                }
                Err(_) => {
                    return reject(
                        Rejection::TlsHandshake,
                        &format_args!("TLS handshake timed out (tls_handshake_timeout {limit:?})"),
                    )
                }
            };
            // HTTP/2 over TLS is chosen through ALPN (RFC 9113 §3.2).
            let h2 = tls_stream.get_ref().1.alpn_protocol() == Some(b"h2".as_slice());
            serve_full(h2, tls_stream, ctx, info, settings, stop).await
        }
    }
}

/// Whether a plain connection opens with HTTP/2's client preface (h2c with prior
/// knowledge), from the first bytes, without consuming them; `None` when it closed
/// before sending any.
async fn speaks_h2(stream: &TcpStream) -> std::io::Result<Option<bool>> {
    let mut buf = [0u8; 24];
    loop {
        let n = stream.peek(&mut buf).await?;
        if n == 0 {
            return Ok(None);
        }
        if let Some(h2) = crate::wire::h2_preface(&buf[..n]) {
            return Ok(Some(h2));
        }
        // Part of the preface so far (rare: it is one small write): peeking again
        // would see the same bytes at once, so wait a moment for the rest.
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_worker_over_its_share_lets_the_others_accept() {
        let load = Arc::new(WorkerLoad::new(2));
        assert!(load.may_accept(0) && load.may_accept(1));
        let a = OpenConn::new(load.clone(), 0);
        let b = OpenConn::new(load.clone(), 0);
        assert!(!load.may_accept(0), "two ahead of the other worker");
        assert!(load.may_accept(1));
        let c = OpenConn::new(load.clone(), 1);
        assert!(load.may_accept(0), "one ahead is within its share");
        drop((a, b));
        assert!(load.may_accept(0));
        drop(c);
        assert_eq!(load.open_of(0), 0);
        // Out of range is harmless (never happens: workers are numbered from 0).
        load.opened(9);
        assert_eq!(load.open_of(9), 0);
    }

    /// The size of what `f` returns, without calling it.
    fn output_size<F, A, B, C, D, E, G, R>(_: &F) -> usize
    where
        F: FnOnce(A, B, C, D, E, G) -> R,
    {
        std::mem::size_of::<R>()
    }

    #[test]
    fn an_idle_fast_path_connection_holds_a_small_task() {
        // The fast path's future is the whole task of most connections, idle ones
        // included. tokio's task cell adds 112 bytes to it and rounds up to 128:
        // up to 528 bytes, each connection's cell is 640. One more byte costs
        // every connection 128 (bench/idle_conns.sh); box what does not belong
        // to an idle connection instead.
        let size = output_size(&serve_conn);
        assert!(size <= 528, "the connection future is {size} bytes");
    }
}
