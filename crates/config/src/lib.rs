//! What an experiment is: one TOML file, read, overridden (`--set`),
//! typed and checked into [`ExperimentConfig`], plus the task and the
//! denoiser shape it names ([`tasks`]) and which keys a resumed run may
//! change ([`resume`]). Every other cogrpo crate reads its settings from
//! here; this crate runs nothing.
//!
//! Sections: `[run]` (name, output directory, seed, device), `[task]`,
//! `[model]`, `[pretrain]`, `[sampler]` (the default sampler of `sample`),
//! `[eval]`, `[rewards]` and `[cogrpo]` (with `[cogrpo.schedule]`). Unknown
//! keys are rejected; every error names the key's path.
//! [`load`] reads a file and applies `--set key=value` overrides, then
//! checks ranges and combinations ([`envs::Validate`]: every section checks its
//! own keys, `ExperimentConfig` what spans sections).

mod cogrpo;
mod experiment;
mod load;
pub mod reference;
mod released;
pub mod resume;
mod sections;
pub mod source;
pub mod tasks;

pub use cogrpo::{
    AdversarialConfig, CogrpoConfig, DEFAULT_GPU_MICRO_BATCH_TOKENS, DEFAULT_MICRO_BATCH_TOKENS,
    DISCRIMINATORS, LossAggregation, TuneConfig, UpdateMode, micro_batch_tokens,
};
pub use experiment::ExperimentConfig;
pub use load::{ConfigError, load, load_str, parse_override};
pub use sections::{
    DeviceKind, EvalConfig, ModelConfig, PretrainConfig, RunConfig, TaskConfig, TaskKind,
};
