//! `hang`: hold the request; with a duration, answer 504 (a gRPC call:
//! DEADLINE_EXCEEDED) afterwards, else hold until the client gives up or the kill
//! switch releases it.

use crate::dist::Dist;
use crate::validate::{join, Cx};
use crate::yaml::PathSeg::{self, Key as K};

use super::Side;

/// Runs before the upstream is called.
pub const SIDE: Side = Side::Request;
/// The upstream is never called after a hang, even one the kill switch ends early.
pub const TERMINAL: bool = true;

/// The duration, when given, is a distribution that can be sampled.
pub(crate) fn validate(cx: &mut Cx<'_>, base: &[PathSeg<'_>], duration: Option<&Dist>) {
    if let Some(d) = duration {
        cx.dist(d, &join(base, &[K("duration")]));
    }
}

pub(crate) fn explain(duration: Option<&Dist>) -> String {
    match duration {
        Some(d) => format!("hold the request for {d}, then answer 504 (DEADLINE_EXCEEDED to a gRPC call, at its grpc-timeout if sooner)"),
        None => "hold the request until the client gives up or faults are turned off".to_string(),
    }
}
