//! The masked diffusion model (MDM).
//!
//! - [`Denoiser`]: SMDM's time-free bidirectional transformer (RMSNorm,
//!   rotary attention, SwiGLU) predicting clean tokens at masked positions.
//! - [`loss`]: the forward (masking) process and the diffusion loss: the
//!   unconditional ELBO and conditional fine-tuning with a clean prompt.
//! - [`likelihood`]: Monte Carlo ELBO bounds on negative log-likelihood.
//! - [`weights`]: weights on disk as safetensors; [`smdm`]: the same in
//!   SMDM's (lit-gpt's) tensor names, to exchange models with PyTorch.
//!
//! Everything is generic over burn's `Backend`; the CLI picks the concrete one.

pub mod atomic;
pub mod config;
pub mod init;
pub mod likelihood;
pub mod loss;
pub mod model;
mod rope;
pub mod smdm;
pub mod weights;

pub use config::{ConfigError, DenoiserConfig};
pub use model::Denoiser;
