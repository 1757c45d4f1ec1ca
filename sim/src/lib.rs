//! Simulated AI upstreams for brownout's demo, tests and benchmarks.
//!
//! A real model server is slow to start, costs money, and answers differently each
//! time; a drill needs none of that to show how faults degrade latency. This crate
//! serves an OpenAI-compatible API (chat, completions, embeddings, models) and
//! Anthropic's Messages API on one port, chosen by path, and with `--api qdrant` or
//! `--api chroma` a vector database with exact k-NN search. Answers and vectors are
//! pure functions of (model, input) and the timing is a configurable decode
//! schedule, so that every difference a drill sees comes from the proxy's faults.
//! `docs/sim.md` is the user-facing reference.
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
#![deny(clippy::unwrap_used, clippy::expect_used)]
#![warn(unreachable_pub, missing_docs)]

mod anthropic;
mod config;
mod embeddings;
pub mod gpu_sweep;
mod llm;
mod openai;
mod pacing;
mod server;
mod text;
mod vector;

pub use anthropic::messages_prompt_text;
pub use config::{SimApi, SimConfig, SimGpu, UnknownApi};
pub use embeddings::{
    embedding, embedding_base64, EmbeddingInput, DEFAULT_DIMENSIONS, MAX_DIMENSIONS,
};
pub use openai::{chat_prompt_text, legacy_prompt_text, MODELS};
pub use pacing::{token_offsets, PacedBody};
pub use server::{serve, spawn, SimHandle};
pub use text::{answer_text, answer_tokens, estimate_tokens, prompt_hash, scripted_tokens};
pub use vector::{
    seed_text, seed_top_k, seed_vector, SEED_COLLECTION, SEED_DIMS, SEED_DOCS, SEED_MODEL,
};
