//! Simulated GPU saturation and cold starts (docs/gpu-model.md).
//!
//! [`Replica`] models one accelerator replica running continuous batching, with
//! parameters from [`GpuConfig`] (presets calibrated against published serving
//! curves, see `docs/gpu-model.md`); [`ColdStart`] models a model load after an idle
//! spell. The calibration sweep (closed-loop clients in virtual time) lives in
//! `brownout-sim`'s `gpu_sweep`, so this crate ships no plotting or paused clock.

mod cold;
mod config;
mod power;
mod replica;

pub use cold::ColdStart;
pub use config::{
    gpu_spec, model_spec, GpuConfig, GpuSpec, ModelSpec, Roofline, StepModel, DEFAULT_GPU,
    DEFAULT_MODEL, GPUS, MODELS,
};
pub use power::{power_names, power_spec, PowerSpec, POWER};
pub use replica::{Admit, Replica, Sequence, UTILISATION_TAU};
