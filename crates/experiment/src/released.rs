//! A released model's directory as a whole: the weights' config
//! ([`mdm::hf::HfModel`]), its tokenizer and its chat template, checked
//! against each other before anything uses them.

use std::path::Path;

use cogrpo_runtime::BadInput;
use mdm::hf::HfModel;
use text::{ChatTemplate, TextTokenizer};

/// `config.json`, and `tokenizer.json` / `tokenizer_config.json` where
/// present.
#[derive(Debug)]
pub struct ReleasedModel {
    pub model: HfModel,
    pub tokenizer: Option<TextTokenizer>,
    pub chat_template: Option<ChatTemplate>,
}

impl ReleasedModel {
    /// Reads `dir`. A tokenizer with ids the embedding has no row for, or
    /// a file that cannot be read, is bad input naming the file.
    pub fn open(dir: &Path) -> Result<Self, BadInput> {
        let bad = |e: &dyn std::fmt::Display| BadInput(e.to_string());
        let model = HfModel::open(dir).map_err(|e| bad(&e))?;
        let path = dir.join("tokenizer.json");
        let tokenizer = if path.is_file() {
            Some(TextTokenizer::from_file(&path).map_err(|e| bad(&e))?)
        } else {
            None
        };
        if let Some(t) = &tokenizer {
            let rows = model.config.denoiser.vocab_size;
            if t.vocab_size() > rows {
                return Err(BadInput(format!(
                    "{}: the tokenizer has {} ids, but the embedding in {} has {rows} rows",
                    path.display(),
                    t.vocab_size(),
                    dir.join("config.json").display()
                )));
            }
        }
        let chat_template = ChatTemplate::from_dir(dir).map_err(|e| bad(&e))?;
        Ok(Self {
            model,
            tokenizer,
            chat_template,
        })
    }
}
