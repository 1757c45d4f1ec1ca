//! brownout: a chaos and fault-injection reverse proxy for AI services.
//!
//! The crate is a library so that integration tests and the demo can run the proxy
//! in-process; `main.rs` is only the command line around it.
//!
//! The path of a request: [`server`] accepts and speaks HTTP/1.1 and HTTP/2 →
//! [`service`] classifies it, matches the profile's rules and decides faults →
//! [`inject`] turns request-side decisions into behaviour → [`upstream`] forwards →
//! [`body`] wraps the response frame by frame (measuring, and applying body faults) →
//! the [`record`] guard writes one record when the exchange ends, however it ends.
//! An HTTP/1.1 WebSocket upgrade that the upstream accepts becomes a byte tunnel
//! between the two connections ([`tunnel`]), recorded as one exchange.
#![forbid(unsafe_code)]

pub mod admin;
pub mod body;
pub mod config;
pub mod ctl;
pub mod decode;
pub mod error;
pub mod exchange;
pub mod fast;
pub mod grpc;
pub mod h2up;
pub mod inject;
pub mod llm;
pub mod metrics;
pub mod net;
pub mod record;
pub mod reload;
pub mod reuse;
pub mod server;
pub mod service;
pub mod state;
pub mod summary;
pub mod tls;
pub mod tunnel;
pub mod upstream;

pub use server::{start, Running, StartOptions};
