//! `hang`: hold the request; with a duration, answer 504 (a gRPC call:
//! DEADLINE_EXCEEDED) afterwards, else hold until the client gives up or the kill
//! switch releases it.

use schemars::JsonSchema;
use serde::Deserialize;

use crate::check::{join, Cx};
use crate::dist::Dist;
use crate::yaml::PathSeg::{self, Key as K};

use super::{Fault, Side};

/// Hold the request; with `duration`, answer 504 afterwards, else hold until the
/// client gives up or the kill switch releases it.
#[derive(Debug, Clone, PartialEq, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Hang {
    /// How long to hold before answering 504; absent: hold until released.
    #[serde(default)]
    pub duration: Option<Dist>,
}

impl Fault for Hang {
    fn name(&self) -> &'static str {
        "hang"
    }

    /// Runs before the upstream is called.
    fn side(&self) -> Side {
        Side::Request
    }

    /// The upstream is never called after a hang, even one the kill switch ends
    /// early.
    fn is_terminal(&self) -> bool {
        true
    }

    /// The duration, when given, is a distribution that can be sampled.
    fn validate(&self, cx: &mut Cx<'_>, base: &[PathSeg<'_>]) {
        if let Some(d) = &self.duration {
            cx.dist(d, &join(base, &[K("duration")]));
        }
    }

    fn explain(&self) -> String {
        match &self.duration {
            Some(d) => format!("hold the request for {d}, then answer 504 (DEADLINE_EXCEEDED to a gRPC call, at its grpc-timeout if sooner)"),
            None => "hold the request until the client gives up or faults are turned off".to_string(),
        }
    }
}
