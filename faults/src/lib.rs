//! The pure half of brownout: everything that decides *what* harm to do, and none of
//! the sockets that do it.
//!
//! Keeping this crate free of I/O means every timing rule (dists, ramps, phase clocks,
//! queues) can be unit-tested under paused tokio time, and the proxy, the drill and
//! the simulator all share one definition of a profile.
#![warn(unreachable_pub)]
#![forbid(unsafe_code)]
#![deny(clippy::unwrap_used, clippy::expect_used)]

pub mod api;
pub(crate) mod check;
pub mod clock;
pub mod decide;
pub mod dist;
pub mod duration;
pub mod explain;
pub mod fault;
pub mod glob;
pub mod gpu;
pub mod grpc;
pub mod limit;
pub mod matcher;
pub mod presets;
pub mod profile;
pub mod ratelimit;
pub mod record;
pub mod release;
pub mod schedule;
pub mod schema;
pub mod stream;
pub mod validate;
pub mod vector;
pub mod yaml;

pub use api::{ApiKind, Endpoint, RequestFacts};
pub use dist::Dist;
pub use profile::{FaultSpec, Match, Phase, Probability, Profile, Rule, Schedule, SchedulePer};
