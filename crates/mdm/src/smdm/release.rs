//! SMDM's released checkpoints (Nie et al. 2024; `nieshen/SMDM`,
//! `mdm_safetensors/mdm-170M-100e18.safetensors`, ...): lit-gpt safetensors
//! files with no config beside them. The shape is read off the tensors
//! (`transformer.wte.weight` is `[padded vocabulary + 1, d]` with the mask
//! row last, `lm_head.weight` `[padded vocabulary, d]`, one
//! `transformer.h.{i}` per block, `mlp.swiglu.w1` `[d_ff, d]`); the head
//! count, which no shape holds, comes from SMDM's model table
//! (`lit_gpt/config.py`, the `Diff_LLaMA_*` entries), matched on
//! (layers, d_model, d_ff). Every entry has a 2,048-token context, RMSNorm
//! with epsilon 1e-5, full rotary embeddings with base 10,000, no biases,
//! as many key/value heads as query heads, and lit-gpt's vocabulary of
//! 32,000 (TinyLlama's tokenizer) padded to a multiple of 64.

use std::path::Path;

use crate::DenoiserConfig;
use crate::weights::WeightsError;

/// One `Diff_LLaMA_*` entry: name, layers, heads, d_model, d_ff.
struct Entry(&'static str, usize, usize, usize, usize);

/// SMDM's `Diff_LLaMA` table, in its order. The name is the parameter
/// count without the embedding and the head (checked in the tests).
const TABLE: [Entry; 29] = [
    Entry("Diff_LLaMA_6M", 6, 4, 256, 1024),
    Entry("Diff_LLaMA_19M", 8, 6, 384, 1536),
    Entry("Diff_LLaMA_34M", 8, 8, 512, 2048),
    Entry("Diff_LLaMA_48M", 9, 9, 576, 2304),
    Entry("Diff_LLaMA_66M", 10, 10, 640, 2560),
    Entry("Diff_LLaMA_85M", 13, 10, 640, 2560),
    Entry("Diff_LLaMA_75M", 16, 8, 640, 1600),
    Entry("Diff_LLaMA_113M", 12, 12, 768, 3072),
    Entry("Diff_LLaMA_142M", 15, 12, 768, 3072),
    Entry("Diff_LLaMA_170M", 18, 12, 768, 3072),
    Entry("Diff_LLaMA_180M", 14, 14, 896, 3584),
    Entry("Diff_LLaMA_206M", 16, 14, 896, 3584),
    Entry("Diff_LLaMA_231M", 18, 14, 896, 3584),
    Entry("Diff_LLaMA_268M", 16, 16, 1024, 4096),
    Entry("Diff_LLaMA_302M", 18, 16, 1024, 4096),
    Entry("Diff_LLaMA_336M", 20, 16, 1024, 4096),
    Entry("Diff_LLaMA_472M", 18, 10, 1280, 5120),
    Entry("Diff_LLaMA_551M", 21, 10, 1280, 5120),
    Entry("Diff_LLaMA_571M", 18, 11, 1408, 5632),
    Entry("Diff_LLaMA_629M", 24, 10, 1280, 5120),
    Entry("Diff_LLaMA_666M", 21, 11, 1408, 5632),
    Entry("Diff_LLaMA_717M", 19, 12, 1536, 6144),
    Entry("Diff_LLaMA_761M", 24, 11, 1408, 5632),
    Entry("Diff_LLaMA_831M", 22, 12, 1536, 6144),
    Entry("Diff_LLaMA_944M", 25, 12, 1536, 6144),
    Entry("Diff_LLaMA_1028M", 20, 14, 1792, 7168),
    Entry("Diff_LLaMA_1233M", 24, 14, 1792, 7168),
    Entry("Diff_LLaMA_1476M", 22, 16, 2048, 8192),
    Entry("Diff_LLaMA_1678M", 25, 16, 2048, 8192),
];

/// SMDM's context (`block_size`).
pub const BLOCK_SIZE: usize = 2048;
/// lit-gpt's `vocab_size` in every entry (TinyLlama's tokenizer): rows
/// past it, up to the padded vocabulary, are padding.
pub const VOCAB: usize = 32_000;

/// What a released SMDM file is.
#[derive(Debug, Clone, PartialEq)]
pub struct Release {
    /// Its shape (the padded vocabulary as `vocab_size`, rows past 32,000
    /// as padding, the mask last at `vocab_size`).
    pub denoiser: DenoiserConfig,
    /// The table entry it matched; `None` when `n_heads` was given.
    pub name: Option<&'static str>,
}

/// The shape of the SMDM file at `path`, from its header alone; `n_heads`
/// is needed only for a shape the table does not list.
pub fn read(path: &Path, n_heads: Option<usize>) -> Result<Release, WeightsError> {
    let bad = |message: String| WeightsError::Read {
        path: path.to_path_buf(),
        message,
    };
    let shapes = crate::hf::tensor_shapes(path).map_err(|e| bad(e.to_string()))?;
    let shape = |name: &str| {
        shapes
            .get(name)
            .filter(|s| s.len() == 2)
            .map(|s| (s[0], s[1]))
            .ok_or_else(|| bad(format!("no 2-d tensor `{name}`: not an SMDM checkpoint")))
    };
    let (rows, d) = shape("transformer.wte.weight")?;
    let (vocab, head_d) = shape("lm_head.weight")?;
    if head_d != d || rows != vocab + 1 {
        return Err(bad(format!(
            "`transformer.wte.weight` is [{rows}, {d}] and `lm_head.weight` [{vocab}, {head_d}]; \
             SMDM's embedding has the head's rows plus the mask row"
        )));
    }
    let layers = (0..)
        .take_while(|i| shapes.contains_key(&format!("transformer.h.{i}.norm_1.weight")))
        .count();
    let (d_ff, _) = shape("transformer.h.0.mlp.swiglu.w1.weight")?;
    let entry = TABLE.iter().find(|e| (e.1, e.3, e.4) == (layers, d, d_ff));
    let heads = match (entry, n_heads) {
        (Some(e), _) => e.2,
        (None, Some(h)) => h,
        (None, None) => {
            return Err(bad(format!(
                "{layers} layers of d_model {d} and d_ff {d_ff} is not one of SMDM's published \
                 models (Diff_LLaMA_6M .. Diff_LLaMA_1678M), and the head count is in no \
                 tensor's shape: set model.n_heads"
            )));
        }
    };
    let mut denoiser = DenoiserConfig::new(vocab, d, layers, heads, d_ff, BLOCK_SIZE);
    denoiser.live_vocab = (VOCAB < vocab).then_some(VOCAB);
    denoiser
        .validate()
        .map_err(|e| bad(format!("derived shape: {e}")))?;
    Ok(Release {
        denoiser,
        name: entry.map(|e| e.0),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Each entry's name is its parameter count without the embedding and
    /// the head (4 d^2 attention + 3 d d_ff SwiGLU per layer): a check of
    /// the transcription.
    #[test]
    fn every_table_entry_counts_the_parameters_its_name_says() {
        for e in &TABLE {
            let (layers, d, ff) = (e.1 as f64, e.3 as f64, e.4 as f64);
            let millions = layers * (4.0 * d * d + 3.0 * d * ff) / 1e6;
            let named: f64 = e.0["Diff_LLaMA_".len()..e.0.len() - 1].parse().unwrap();
            assert!(
                (millions - named).abs() / named < 0.05,
                "{}: {millions:.1}M",
                e.0
            );
            assert_eq!(e.3 % e.2, 0, "{}: heads divide d_model", e.0);
        }
        let keys: std::collections::HashSet<_> = TABLE.iter().map(|e| (e.1, e.3, e.4)).collect();
        assert_eq!(keys.len(), TABLE.len(), "(layers, d, d_ff) picks one entry");
    }
}
