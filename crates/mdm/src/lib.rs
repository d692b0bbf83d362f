//! The masked diffusion model (MDM), and the two other families on its
//! backbone ([`Family`]): the autoregressive baseline ([`arm`]) and the
//! insertion language model ([`ilm`]).
//!
//! - [`Denoiser`]: SMDM's time-free bidirectional transformer (RMSNorm,
//!   rotary attention, SwiGLU) predicting clean tokens at masked positions;
//!   [`attention`] holds its attention with the causal and padding masks
//!   and the ARM's KV cache.
//! - [`loss`]: the forward (masking) process and the diffusion loss: the
//!   unconditional ELBO and conditional fine-tuning with a clean prompt.
//! - [`likelihood`]: Monte Carlo ELBO bounds on negative log-likelihood.
//! - [`lora`]: low-rank adapters on a frozen base (the model factor of
//!   RL on a released model).
//! - [`weights`]: weights on disk as safetensors; [`smdm`]: the same in
//!   SMDM's (lit-gpt's) tensor names, to exchange models with PyTorch;
//!   [`hf`]: released models (LLaDA, Dream) in their Hugging Face
//!   directories, read and written.
//!
//! Everything is generic over [`Kernels`]: a burn `Backend` with the
//! denoiser's hot-path operations, fused on the CPU ([`kernels`]); the CLI
//! picks the concrete backend.

pub mod arm;
pub mod atomic;
pub mod attention;
pub mod config;
pub mod hf;
mod host;
pub mod ilm;
pub mod init;
pub mod kernels;
pub mod likelihood;
pub mod lora;
pub mod loss;
pub mod model;
pub mod rope;
pub mod smdm;
pub mod weights;

pub use attention::KvCache;
pub use config::{ConfigError, DenoiserConfig, Family};
pub use kernels::cpu::one_core::on_one_core;
pub use kernels::precision::{MatmulPrecision, set_matmul_precision};
pub use kernels::{AutodiffKernels, Kernels};
pub use lora::{BaseDtype, LoraConfig, LoraTarget};
pub use model::Denoiser;
