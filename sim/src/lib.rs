//! Simulated AI upstreams for brownout's demo, tests and benchmarks.
//!
//! A real model server is slow to start, costs money, and answers differently each
//! time; a drill needs none of that to show how faults degrade latency. This crate
//! serves an OpenAI-compatible API whose answers are a pure function of
//! (model, prompt) and whose timing is a configurable decode schedule, so that
//! every difference a drill sees comes from the proxy's faults.
//!
//! ```no_run
//! # async fn demo() -> std::io::Result<()> {
//! let sim = brownout_sim::spawn("127.0.0.1:0".parse().unwrap(), Default::default()).await?;
//! println!("simulated OpenAI at {}", sim.url());
//! sim.shutdown().await;
//! # Ok(())
//! # }
//! ```

#![forbid(unsafe_code)]
#![warn(unreachable_pub, missing_docs)]

mod config;
mod openai;
mod pacing;
mod server;
mod text;

pub use config::{SimApi, SimConfig, UnknownApi};
pub use openai::{chat_prompt_text, legacy_prompt_text, MODELS};
pub use pacing::{token_offsets, PacedBody};
pub use server::{serve, spawn, SimHandle};
pub use text::{answer_text, answer_tokens, estimate_tokens, prompt_hash};
