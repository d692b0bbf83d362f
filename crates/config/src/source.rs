//! What a model source (`model.source`) says of the model: a Hugging Face
//! directory's `config.json`, or a released SMDM file's tensor shapes.

use std::path::Path;

use mdm::DenoiserConfig;
use mdm::hf::HfModel;

/// What a model source says of the model.
#[derive(Debug, Clone, PartialEq)]
pub struct SourceModel {
    /// Its shape: `vocab_size` embedding rows (the logits' width), its
    /// context as `max_len`; cogrpo's mask is the extra row `vocab_size`.
    pub denoiser: DenoiserConfig,
    /// The id the model's own text uses for the mask (inside the vocabulary
    /// for LLaDA and Dream; `vocab_size` itself for SMDM and cogrpo's
    /// exports).
    pub mask_token_id: u32,
    /// Where it was read, for errors.
    pub file: std::path::PathBuf,
}

impl SourceModel {
    /// `path`: a Hugging Face directory, or an SMDM safetensors file (whose
    /// head count, if its shape is not in SMDM's table, is `n_heads`).
    pub fn read(path: &Path, n_heads: Option<usize>) -> Result<Self, String> {
        if mdm::hf::is_model_dir(path) {
            let hf = HfModel::open(path).map_err(|e| e.to_string())?;
            return Ok(Self {
                denoiser: hf.config.denoiser,
                mask_token_id: hf.config.mask_token_id,
                file: path.join("config.json"),
            });
        }
        if mdm::smdm::is_smdm_file(path) {
            let r = mdm::smdm::release::read(path, n_heads).map_err(|e| e.to_string())?;
            return Ok(Self {
                mask_token_id: r.denoiser.vocab_size as u32,
                denoiser: r.denoiser,
                file: path.to_path_buf(),
            });
        }
        Err(format!(
            "{} is neither a Hugging Face model directory (config.json) nor an SMDM \
             safetensors file",
            path.display()
        ))
    }
}
