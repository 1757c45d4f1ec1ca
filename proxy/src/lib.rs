//! brownout: a chaos and fault-injection reverse proxy for AI services.
//!
//! The crate is a library so that integration tests and the demo can run the proxy
//! in-process; `cli/main.rs` is only the command line around it.
//!
//! The crate is laid out by plane, from the top down:
//! - [`server`]: start-up and shutdown, listeners and workers, the accept loop and
//!   TLS handshakes, and which path serves each connection;
//! - [`http1`]: the HTTP/1.1 fast path, taken while no rule could touch a request;
//! - [`layer`]: the full path's stack around an application's own service,
//!   brownout's faults in-process as a `tower::Layer`;
//! - [`pipeline`]: the full path: hyper serving a connection, and what it does with
//!   each request, as a tower stack: classify it, match the profile's rules and
//!   decide faults, carry out request-side decisions, call the upstream, wrap the
//!   answer; WebSocket tunnels;
//! - [`body`]: the response wrapped frame by frame (measuring, and applying body
//!   and stream faults);
//! - [`exchange`]: the record guard of each exchange, both paths' and the body's;
//! - [`conn`]: a client connection as both paths see it: its facts, its socket, the
//!   watch while a fault holds a request;
//! - [`upstream`]: forwarding, connection pools and their keep-alive rules, and the
//!   request body as it goes upstream;
//! - [`control`]: the admin API and dashboard, `ctl`, hot reload, shared state, the
//!   shutdown stage;
//! - [`error`]: brownout's own failures and the answers they become;
//! - [`record`]: records, the per-phase summary and `/metrics`;
//! - `wire`: the HTTP vocabulary both data paths speak (hop-by-hop headers,
//!   HTTP/2's preface, brownout's own headers), written once so that the fast path
//!   and the full path cannot drift apart;
//! - [`tls`] and [`config`]: TLS set-up both ways, and the configuration.
//!
//! Each module imports only the ones listed below it (`docs/architecture.md` has
//! the order and why).
//!
//! A request's path: [`server`] accepts it → [`pipeline::stack`] opens its record →
//! [`pipeline::decide`] decides faults → [`pipeline::inject`] turns request-side
//! decisions into behaviour → [`pipeline::forward`] calls the [`upstream`] →
//! [`pipeline::respond`] wraps the response in a [`body`] → the [`exchange`] guard
//! writes one record when the exchange ends, however it ends. See
//! `docs/architecture.md`.
#![warn(unreachable_pub)]
#![forbid(unsafe_code)]
#![deny(clippy::unwrap_used, clippy::expect_used)]

pub mod body;
pub mod config;
pub mod conn;
pub mod control;
pub mod error;
pub mod exchange;
pub mod http1;
pub mod layer;
pub mod pipeline;
pub mod record;
pub mod reuse;
pub mod server;
pub mod tls;
pub mod upstream;
mod wire;

pub use server::{start, Running, StartOptions};
