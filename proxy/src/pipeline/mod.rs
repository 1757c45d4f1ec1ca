//! The request pipeline of the full path: classify a request, match the profile's
//! rules and decide faults ([`service`]), carry out request-side decisions
//! ([`inject`]), answer gRPC calls in gRPC's own terms ([`grpc`]), and hold the
//! record guard that writes one record per exchange however it ends ([`exchange`]).

pub mod exchange;
pub mod grpc;
pub mod inject;
pub mod service;
