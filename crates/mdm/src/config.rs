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
    /// Key/value heads of grouped-query attention (Ainslie et al. 2023):
    /// each group of `n_heads / n_kv_heads` query heads shares one key and
    /// value head (Dream's Qwen2 layout; LLaDA-8B has as many as query
    /// heads). `None`: one per query head, multi-head attention.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub n_kv_heads: Option<usize>,
    /// Biases on the query, key and value projections (Qwen2 / Dream).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub qkv_bias: bool,
    /// The output head is the embedding's transpose (`logits = h wte^T` over
    /// the real vocabulary) instead of a matrix of its own.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub tied_head: bool,
    /// Dream's shifted reading: the logits for position `i` are the network's
    /// output at `i - 1` (position 0 reads its own), because Dream was
    /// initialised from an autoregressive model (Qwen2.5) and kept its
    /// next-token head. MDM family only.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub logit_shift: bool,
    /// Ids at and past this one are padding rows of the embedding that no
    /// tokenizer produces (LLaDA's 126,464 rows hold 126,349 tokens;
    /// lit-gpt pads to a multiple): their logits get [`PADDING_LOGIT`], so
    /// no sampler draws them and no loss spends probability on them.
    /// `None`: every row is a token.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub live_vocab: Option<usize>,
}

/// The logit of a padding row ([`DenoiserConfig::live_vocab`]): large and
/// finite, so that softmax gives it zero probability and no arithmetic on
/// it overflows, in any precision.
pub const PADDING_LOGIT: f32 = -1.0e4;

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
            n_kv_heads: None,
            qkv_bias: false,
            tied_head: false,
            logit_shift: false,
            live_vocab: None,
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

    /// Key/value heads (`n_heads` unless grouped-query attention).
    pub fn kv_heads(&self) -> usize {
        self.n_kv_heads.unwrap_or(self.n_heads)
    }

    /// Width of the key and value projections.
    pub fn kv_dim(&self) -> usize {
        self.kv_heads() * self.head_dim()
    }

    /// Number of trainable parameters.
    pub fn num_params(&self) -> usize {
        let (d, kv) = (self.d_model, self.kv_dim());
        let embed = (self.vocab_size + 1) * d;
        let qkv = d * d + 2 * d * kv + if self.qkv_bias { d + 2 * kv } else { 0 };
        // norm_1, q/k/v, proj, norm_2, three SwiGLU matrices
        let block = d + qkv + d * d + d + 3 * d * self.d_ff;
        let head = if self.tied_head {
            0
        } else {
            d * self.vocab_size
        };
        let stop_head = if self.family == Family::Ilm { d } else { 0 };
        embed + self.n_layers * block + d + head + stop_head
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
        if let Some(kv) = self.n_kv_heads
            && (kv == 0 || !self.n_heads.is_multiple_of(kv))
        {
            return err(
                "n_kv_heads",
                format!(
                    "must divide n_heads {} (each key/value head serves a group of query heads), got {kv}",
                    self.n_heads
                ),
            );
        }
        if self.logit_shift && self.family != Family::Mdm {
            return err(
                "logit_shift",
                format!(
                    "is Dream's reading of a masked diffusion model; the {} family reads its own positions",
                    self.family
                ),
            );
        }
        if let Some(n) = self.live_vocab
            && (n == 0 || n > self.vocab_size)
        {
            return err(
                "live_vocab",
                format!("must lie in 1..={} (vocab_size), got {n}", self.vocab_size),
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

    #[test]
    fn grouped_query_attention_needs_groups_that_divide_the_heads() {
        let mut c = DenoiserConfig::new(5, 32, 1, 4, 64, 8);
        for (kv, ok) in [
            (Some(1), true),
            (Some(2), true),
            (Some(3), false),
            (Some(0), false),
        ] {
            c.n_kv_heads = kv;
            assert_eq!(c.validate().is_ok(), ok, "{kv:?}");
        }
        c.n_kv_heads = Some(3);
        assert_eq!(c.validate().unwrap_err().field, "n_kv_heads");
    }

    #[test]
    fn knobs_change_the_parameter_count_by_their_tensors() {
        let base = DenoiserConfig::new(10, 32, 2, 4, 64, 8);
        let (d, v, layers) = (32, 10, 2);
        let mut gqa = base.clone();
        gqa.n_kv_heads = Some(1); // k and v shrink from d x d to d x 8
        assert_eq!(
            base.num_params() - gqa.num_params(),
            layers * 2 * d * (d - 8)
        );
        let mut bias = base.clone();
        bias.qkv_bias = true;
        assert_eq!(bias.num_params() - base.num_params(), layers * 3 * d);
        let mut tied = base.clone();
        tied.tied_head = true;
        assert_eq!(base.num_params() - tied.num_params(), d * v);
    }

    #[test]
    fn defaults_serialise_as_before_the_knobs_existed() {
        // Old checkpoints' config.json files read unchanged, and a default
        // model writes the same config.json it wrote before.
        let c = DenoiserConfig::new(5, 32, 1, 4, 64, 8);
        let json = serde_json::to_string(&c).unwrap();
        assert_eq!(
            json,
            r#"{"vocab_size":5,"d_model":32,"n_layers":1,"n_heads":4,"d_ff":64,"max_len":8,"norm_eps":0.00001,"rope_base":10000.0}"#
        );
        let back: DenoiserConfig = serde_json::from_str(&json).unwrap();
        assert_eq!(back, c);
        let mut shifted = c.clone();
        shifted.logit_shift = true;
        shifted.validate().unwrap();
        shifted.family = Family::Arm;
        assert_eq!(shifted.validate().unwrap_err().field, "logit_shift");
    }
}
