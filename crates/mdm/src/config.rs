//! Denoiser hyper-parameters.

use serde::{Deserialize, Serialize};

#[derive(Debug, thiserror::Error)]
#[error("{field}: {message}")]
pub struct ConfigError {
    pub field: &'static str,
    pub message: String,
}

/// What the backbone is trained to do (one transformer, three objectives).
///
/// - `Mdm`: masked diffusion (SMDM): bidirectional attention, predicts the
///   clean token at every `[MASK]`.
/// - `Arm`: autoregressive: causal attention, predicts the next token
///   ([`crate::arm`]); sampled with a KV cache.
/// - `Ilm`: insertion language model (Patel et al. 2025): bidirectional
///   attention, scores every (gap, token) insertion and has a stop head
///   ([`crate::ilm`]).
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, schemars::JsonSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum Family {
    /// Masked diffusion: bidirectional, the diffusion ELBO, the MDM samplers.
    #[default]
    Mdm,
    /// Insertion: scores every (gap, token) insertion and stops (Patel et
    /// al. 2025).
    Ilm,
    /// Autoregressive: causal, next-token loss, a KV cache.
    Arm,
}

impl Family {
    pub fn name(self) -> &'static str {
        match self {
            Family::Mdm => "mdm",
            Family::Ilm => "ilm",
            Family::Arm => "arm",
        }
    }

    pub fn is_mdm(&self) -> bool {
        *self == Family::Mdm
    }

    /// Causal attention (the ARM) or bidirectional (MDM, ILM).
    pub fn causal(self) -> bool {
        self == Family::Arm
    }
}

impl std::fmt::Display for Family {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// Shape of a [`crate::Denoiser`]. `vocab_size` counts real tokens; the
/// embedding holds one more row whose id is `vocab_size`: `[MASK]` for the
/// MDM, the start token `<bos>` for the ARM and the ILM (which also pads
/// with it, invisible to attention).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DenoiserConfig {
    /// Checkpoints written before families existed hold MDMs.
    #[serde(default, skip_serializing_if = "Family::is_mdm")]
    pub family: Family,
    pub vocab_size: usize,
    pub d_model: usize,
    pub n_layers: usize,
    pub n_heads: usize,
    /// Hidden width of the SwiGLU MLP.
    pub d_ff: usize,
    /// Longest sequence (size of the rotary table).
    pub max_len: usize,
    #[serde(default = "default_norm_eps")]
    pub norm_eps: f64,
    #[serde(default = "default_rope_base")]
    pub rope_base: f64,
}

fn default_norm_eps() -> f64 {
    1e-5
}

fn default_rope_base() -> f64 {
    10_000.0
}

/// Largest `vocab_size`.
pub const MAX_VOCAB: usize = 1 << 24;
/// Largest `d_model`, `d_ff` and `n_heads`.
pub const MAX_WIDTH: usize = 1 << 16;
/// Largest `n_layers`.
pub const MAX_LAYERS: usize = 1 << 10;
/// Largest `max_len`.
pub const MAX_LEN: usize = 1 << 20;

impl DenoiserConfig {
    pub fn new(
        vocab_size: usize,
        d_model: usize,
        n_layers: usize,
        n_heads: usize,
        d_ff: usize,
        max_len: usize,
    ) -> Self {
        Self {
            family: Family::Mdm,
            vocab_size,
            d_model,
            n_layers,
            n_heads,
            d_ff,
            max_len,
            norm_eps: default_norm_eps(),
            rope_base: default_rope_base(),
        }
    }

    pub fn with_family(mut self, family: Family) -> Self {
        self.family = family;
        self
    }

    pub fn mask_id(&self) -> u32 {
        self.vocab_size as u32
    }

    pub fn head_dim(&self) -> usize {
        self.d_model / self.n_heads
    }

    /// Number of trainable parameters.
    pub fn num_params(&self) -> usize {
        let d = self.d_model;
        let embed = (self.vocab_size + 1) * d;
        // norm_1, qkv, proj, norm_2, three SwiGLU matrices
        let block = d + 3 * d * d + d * d + d + 3 * d * self.d_ff;
        let stop_head = if self.family == Family::Ilm { d } else { 0 };
        embed + self.n_layers * block + d + d * self.vocab_size + stop_head
    }

    pub fn validate(&self) -> Result<(), ConfigError> {
        let err = |field, message: String| Err(ConfigError { field, message });
        // Upper bounds far beyond any model this crate can train, low enough
        // that products of them (parameter counts, activation sizes) cannot
        // overflow.
        for (field, v, max) in [
            ("vocab_size", self.vocab_size, MAX_VOCAB),
            ("d_model", self.d_model, MAX_WIDTH),
            ("n_layers", self.n_layers, MAX_LAYERS),
            ("n_heads", self.n_heads, MAX_WIDTH),
            ("d_ff", self.d_ff, MAX_WIDTH),
            ("max_len", self.max_len, MAX_LEN),
        ] {
            if v == 0 {
                return err(field, "must be at least 1".into());
            }
            if v > max {
                return err(field, format!("must be at most {max}, got {v}"));
            }
        }
        if !self.d_model.is_multiple_of(self.n_heads) {
            return err(
                "n_heads",
                format!(
                    "d_model {} is not divisible by n_heads {}",
                    self.d_model, self.n_heads
                ),
            );
        }
        if !self.head_dim().is_multiple_of(2) {
            return err(
                "n_heads",
                format!(
                    "head dimension d_model / n_heads = {} must be even for rotary embeddings",
                    self.head_dim()
                ),
            );
        }
        if self.norm_eps.is_nan() || self.norm_eps <= 0.0 {
            return err(
                "norm_eps",
                format!("must be positive, got {}", self.norm_eps),
            );
        }
        if self.rope_base.is_nan() || self.rope_base <= 1.0 {
            return err(
                "rope_base",
                format!("must exceed 1, got {}", self.rope_base),
            );
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_parameters_from_50k_to_100m() {
        let tiny = DenoiserConfig::new(5, 32, 2, 2, 128, 32);
        assert_eq!(
            tiny.num_params(),
            6 * 32 + 2 * (32 + 4 * 1024 + 32 + 3 * 32 * 128) + 32 + 32 * 5
        );
        assert!(tiny.num_params() > 30_000);
        let big = DenoiserConfig::new(32_000, 768, 14, 12, 2048, 1024);
        assert!(big.num_params() > 100_000_000);
    }

    #[test]
    fn rejects_inconsistent_shapes() {
        let mut c = DenoiserConfig::new(5, 30, 2, 4, 64, 32);
        assert_eq!(c.validate().unwrap_err().field, "n_heads");
        c.n_heads = 5; // head dim 6: fine
        c.validate().unwrap();
        c.n_heads = 6; // head dim 5: odd
        assert!(c.validate().unwrap_err().message.contains("even"));
    }
}
