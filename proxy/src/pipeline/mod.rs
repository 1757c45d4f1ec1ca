//! The full path. hyper serves a connection ([`serve`]) and each request on it
//! goes down a tower stack ([`stack`]): it is opened as a [`call::Call`] with its
//! record guard ([`crate::exchange`]), its faults are decided ([`decide`]),
//! request-side decisions carried out ([`inject`]), the upstream called
//! ([`forward`]) and its answer wrapped for the client ([`respond`]); gRPC calls
//! are answered in gRPC's own terms ([`grpc`]), and a WebSocket upgrade becomes a
//! tunnel ([`tunnel`]).

pub mod call;
pub mod decide;
pub mod forward;
pub mod grpc;
pub mod inject;
pub mod respond;
pub mod serve;
pub mod stack;
pub mod tunnel;
