//! The pure half of LLM stream handling: cut a streamed body into events, classify
//! them, measure them, and apply stream and content faults to them.
//!
//! The proxy wires these into its response body as: bytes from the upstream →
//! [`Splitter::push`] → for each raw event, [`inspect`] → [`Shaper::on_event`] →
//! carry out the returned [`Action`]s in order (feeding each emitted event, re-
//! inspected if it was rewritten, to a [`StreamMeter`] at the instant it goes out).
//! At the upstream's end: [`Splitter::finish`] (a last unterminated event), then
//! [`Shaper::on_end`]. Non-streamed answers go through [`rewrite_json`] instead.
//!
//! Nothing here sleeps or touches a socket; every instant is passed in, so timing
//! is exact under paused tokio time.

pub mod content;
pub mod event;
pub mod framing;
mod json;
pub mod measure;
pub mod shape;
mod words;

pub use content::{rewrite_json, Rewrite, Skip};
pub use event::{inspect, EventInfo, EventKind};
pub use framing::{framing_for, Framing, Splitter, DEFAULT_MAX_EVENT};
pub use measure::{GapSummary, StreamMeter, TokensSource};
pub use shape::{Action, Shaper, StreamPlan};
