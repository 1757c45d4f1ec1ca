//! Real gRPC peers for the tests (`grpc_real.rs`): Milvus Lite's own gRPC server,
//! grpcio's own server (`grpc_echo_server.py`), the `grpc` Python environment that
//! holds them with pymilvus and grpcio's client, and a raw h2c gRPC unary call for
//! readiness checks and tests that want the frames themselves.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use bytes::{BufMut, Bytes, BytesMut};
use http::{HeaderMap, Request, StatusCode};
use http_body_util::BodyExt;
use tokio::io::AsyncBufReadExt;

use crate::{cached_venv, free_port, full, h2c_client, repo_root, ApiKind, ChildServer};
use crate::{BoxError, ProxyBuilder, TempDir};

/// The python of the `grpc` environment ([`cached_venv`]): grpcio 1.85.4 and
/// grpcio-tools, pymilvus 3.0.2 and milvus-lite 3.2.2 (whose `milvus-lite` server
/// this environment's `bin/` holds).
pub fn grpc_python() -> PathBuf {
    cached_venv("grpc").join("bin/python")
}

impl ChildServer {
    /// Start `program args` and wait (up to `ready_within`) until it prints a line
    /// on stdout containing `ready_line`, for servers that speak no HTTP/1.1 to be
    /// probed with (gRPC servers). The child runs with `PYTHONUNBUFFERED=1`, so a
    /// Python server's line is not held in its buffer; what it prints after that
    /// line goes on to the test's stderr. A child that exits first fails the test
    /// with its status.
    pub async fn start_until_line(
        what: &str,
        program: &Path,
        args: &[&str],
        port: u16,
        ready_line: &str,
        ready_within: Duration,
    ) -> ChildServer {
        let mut child = tokio::process::Command::new(program)
            .args(args)
            .current_dir(repo_root())
            .env("PYTHONUNBUFFERED", "1")
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {what} ({}): {e}", program.display()));
        let stdout = child.stdout.take().expect("the child's stdout");
        let (tx, mut rx) = tokio::sync::oneshot::channel::<()>();
        let marker = ready_line.to_string();
        tokio::spawn(async move {
            let mut lines = tokio::io::BufReader::new(stdout).lines();
            let mut tx = Some(tx);
            while let Ok(Some(line)) = lines.next_line().await {
                if tx.is_some() && line.contains(&marker) {
                    let _ = tx.take().map(|t| t.send(()));
                } else {
                    eprintln!("{line}");
                }
            }
        });
        let mut server = ChildServer {
            child,
            port,
            what: what.to_string(),
        };
        let deadline = tokio::time::Instant::now() + ready_within;
        loop {
            tokio::select! {
                r = &mut rx => {
                    assert!(r.is_ok(), "{what} closed its stdout before printing {ready_line:?}");
                    return server;
                }
                _ = tokio::time::sleep(Duration::from_millis(100)) => {}
            }
            if let Ok(Some(st)) = server.child.try_wait() {
                panic!("{what} exited before it was ready: {st}");
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "{what} did not print {ready_line:?} within {ready_within:?}"
            );
        }
    }
}

/// Wait (up to `within`) until `addr` accepts TCP connections.
async fn wait_accepting(what: &str, addr: SocketAddr, within: Duration) {
    let deadline = tokio::time::Instant::now() + within;
    while tokio::net::TcpStream::connect(addr).await.is_err() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "{what} does not accept connections on {addr}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// One unary gRPC call's answer, as read off the wire.
#[derive(Debug, Clone)]
pub struct GrpcReply {
    pub http_status: StatusCode,
    pub headers: HeaderMap,
    /// The response messages, without their 5-byte length prefixes.
    pub messages: Vec<Bytes>,
    pub trailers: HeaderMap,
}

impl GrpcReply {
    /// `grpc-status`, from the trailers or, for a trailers-only answer, the headers.
    pub fn grpc_status(&self) -> Option<u32> {
        self.trailers
            .get("grpc-status")
            .or_else(|| self.headers.get("grpc-status"))
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse().ok())
    }
}

/// A gRPC message with its length prefix (uncompressed).
pub fn grpc_frame(message: &[u8]) -> Bytes {
    let mut b = BytesMut::with_capacity(5 + message.len());
    b.put_u8(0);
    b.put_u32(message.len() as u32);
    b.put_slice(message);
    b.freeze()
}

/// The messages in a gRPC body (length-prefixed frames); `Err` on a torn frame.
pub fn grpc_messages(mut body: &[u8]) -> Result<Vec<Bytes>, BoxError> {
    let mut out = Vec::new();
    while !body.is_empty() {
        if body.len() < 5 {
            return Err(format!("a torn gRPC frame prefix: {body:?}").into());
        }
        let len = u32::from_be_bytes([body[1], body[2], body[3], body[4]]) as usize;
        if body.len() < 5 + len {
            return Err(format!("a gRPC frame of {len} bytes with {} left", body.len() - 5).into());
        }
        out.push(Bytes::copy_from_slice(&body[5..5 + len]));
        body = &body[5 + len..];
    }
    Ok(out)
}

/// One unary gRPC call over h2c (prior knowledge) to `base` (`http://host:port`):
/// `path` is `/package.Service/Method`, `message` the serialized request.
pub async fn grpc_unary(
    base: &str,
    path: &str,
    message: &[u8],
    metadata: &[(&str, &str)],
) -> Result<GrpcReply, BoxError> {
    let mut req = Request::post(format!("{base}{path}"))
        .header("content-type", "application/grpc")
        .header("te", "trailers")
        .header("grpc-timeout", "5S");
    for (k, v) in metadata {
        req = req.header(*k, *v);
    }
    let req = req.body(full(grpc_frame(message)))?;
    let resp = tokio::time::timeout(Duration::from_secs(10), async {
        let resp = h2c_client().request(req).await?;
        let (parts, body) = resp.into_parts();
        let collected = body.collect().await?;
        let trailers = collected.trailers().cloned().unwrap_or_default();
        let body = collected.to_bytes();
        Ok::<_, BoxError>(GrpcReply {
            http_status: parts.status,
            headers: parts.headers,
            messages: grpc_messages(&body)?,
            trailers,
        })
    })
    .await
    .map_err(|_| -> BoxError { format!("{path}: no answer within 10 s").into() })??;
    Ok(resp)
}

/// Milvus Lite's own gRPC server (`milvus-lite server`, milvus-lite 3.2.2 of the
/// `grpc` environment) on a free port, its data in a temporary directory; killed
/// and removed when dropped.
pub struct MilvusLite {
    server: ChildServer,
    _data: TempDir,
}

impl MilvusLite {
    /// Start it and wait until it serves: its "listening" line, then a real
    /// `GetVersion` call answered with grpc-status 0.
    pub async fn start() -> MilvusLite {
        let venv = tokio::task::spawn_blocking(|| cached_venv("grpc"))
            .await
            .expect("build the grpc environment");
        let data = TempDir::new();
        let port = free_port();
        let (port_s, dir) = (port.to_string(), data.join("milvus"));
        let server = ChildServer::start_until_line(
            "milvus-lite server",
            &venv.join("bin/milvus-lite"),
            &[
                "server",
                "--data-dir",
                dir.to_str().expect("a UTF-8 temp dir"),
                "--host",
                "127.0.0.1",
                "--port",
                &port_s,
            ],
            port,
            "MilvusLite gRPC server listening on",
            Duration::from_secs(60),
        )
        .await;
        let m = MilvusLite {
            server,
            _data: data,
        };
        wait_accepting("milvus-lite", m.addr(), Duration::from_secs(10)).await;
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        loop {
            match grpc_unary(
                &m.url(),
                "/milvus.proto.milvus.MilvusService/GetVersion",
                &[],
                &[],
            )
            .await
            {
                Ok(r) if r.grpc_status() == Some(0) => return m,
                other => assert!(
                    tokio::time::Instant::now() < deadline,
                    "milvus-lite does not answer GetVersion: {other:?}"
                ),
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.server.port))
    }

    /// `http://127.0.0.1:PORT`: pymilvus's `uri`, and brownout's `upstream`.
    pub fn url(&self) -> String {
        self.server.url()
    }

    /// A proxy fronting it: `api: milvus`, `upstream_protocol` left at its default
    /// (`auto`, which sends gRPC upstream as h2c).
    pub fn proxy(&self) -> ProxyBuilder {
        ProxyBuilder::new(self.url()).api(ApiKind::Milvus)
    }
}

/// grpcio's own server (`grpc_echo_server.py`, service `brownout.test.Echo`) on a
/// free port; killed when dropped.
pub struct GrpcEcho {
    server: ChildServer,
}

impl GrpcEcho {
    /// Start it and wait until it serves (its "listening" line, printed once
    /// grpcio's server has started, then a TCP connection accepted).
    pub async fn start() -> GrpcEcho {
        let py = tokio::task::spawn_blocking(grpc_python)
            .await
            .expect("build the grpc environment");
        let port = free_port();
        let port_s = port.to_string();
        let server = ChildServer::start_until_line(
            "grpc_echo_server.py",
            &py,
            &[
                "integration-tests/python/grpc_echo_server.py",
                "--port",
                &port_s,
            ],
            port,
            "grpc echo server listening on",
            Duration::from_secs(60),
        )
        .await;
        let e = GrpcEcho { server };
        wait_accepting("grpc_echo_server.py", e.addr(), Duration::from_secs(10)).await;
        e
    }

    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.server.port))
    }

    /// `127.0.0.1:PORT`, a grpcio target.
    pub fn target(&self) -> String {
        self.addr().to_string()
    }

    /// `http://127.0.0.1:PORT`, brownout's `upstream`.
    pub fn url(&self) -> String {
        self.server.url()
    }

    /// A proxy fronting it: `api: generic`, `upstream_protocol` left at its
    /// default (`auto`, which sends gRPC upstream as h2c).
    pub fn proxy(&self) -> ProxyBuilder {
        ProxyBuilder::new(self.url()).api(ApiKind::Generic)
    }
}

/// The names of the gRPC status codes, by number (`grpc.StatusCode` names).
pub const GRPC_CODE_NAMES: [&str; 17] = [
    "OK",
    "CANCELLED",
    "UNKNOWN",
    "INVALID_ARGUMENT",
    "DEADLINE_EXCEEDED",
    "NOT_FOUND",
    "ALREADY_EXISTS",
    "PERMISSION_DENIED",
    "RESOURCE_EXHAUSTED",
    "FAILED_PRECONDITION",
    "ABORTED",
    "OUT_OF_RANGE",
    "UNIMPLEMENTED",
    "INTERNAL",
    "UNAVAILABLE",
    "DATA_LOSS",
    "UNAUTHENTICATED",
];

/// The number of a gRPC status code named as `grpc.StatusCode` names it
/// (`"UNAVAILABLE"` → 14); panics on a name that is none.
pub fn grpc_code_number(name: &str) -> u64 {
    GRPC_CODE_NAMES
        .iter()
        .position(|n| *n == name)
        .unwrap_or_else(|| panic!("not a gRPC status code: {name}")) as u64
}

/// Run a script of `integration-tests/python/` with the `grpc` environment's
/// python ([`grpc_python`]), within `limit`, and return the one JSON document it
/// prints (a script that prints none, or more than one, fails the test).
pub async fn grpc_script(script: &str, args: &[String], limit: Duration) -> serde_json::Value {
    let py = tokio::task::spawn_blocking(grpc_python)
        .await
        .expect("build the grpc environment");
    let mut out = crate::within(limit, script, crate::run_python_json(&py, script, args)).await;
    assert_eq!(out.len(), 1, "{script} prints one JSON document: {out:#?}");
    out.remove(0)
}
