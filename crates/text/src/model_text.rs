//! Everything a model directory says about text: the tokenizer, the chat
//! template, and which ids end and pad a sequence.

use std::path::Path;

use crate::chat::ChatTemplate;
use crate::error::TextError;
use crate::special::{TOKENIZER_CONFIG, TokenizerConfig};
use crate::tokenizer::TextTokenizer;

/// A directory's `tokenizer.json` with its `tokenizer_config.json` (or
/// `chat_template.jinja`) read beside it.
#[derive(Debug, Clone)]
pub struct ModelText {
    pub tokenizer: TextTokenizer,
    pub chat_template: Option<ChatTemplate>,
    /// `eos_token`'s id, when the config names one the tokenizer knows.
    pub eos: Option<u32>,
    /// `pad_token`'s id, falling back to the end-of-sequence token (as
    /// `transformers` pads generation batches).
    pub pad: Option<u32>,
}

impl ModelText {
    /// Reads `dir/tokenizer.json` and what beside it names special tokens;
    /// a special token the tokenizer does not know is an error naming it.
    pub fn from_dir(dir: &Path) -> Result<Self, TextError> {
        let tokenizer = TextTokenizer::from_file(&dir.join("tokenizer.json"))?;
        let config = TokenizerConfig::read(dir)?;
        let id = |key: &str| -> Result<Option<u32>, TextError> {
            let Some(text) = config.as_ref().and_then(|c| c.token(key)) else {
                return Ok(None);
            };
            tokenizer
                .token_to_id(&text)
                .map(Some)
                .ok_or_else(|| TextError::File {
                    path: dir.join(TOKENIZER_CONFIG),
                    message: format!(
                        "`{key}` is {text:?}, which {} does not know",
                        tokenizer.path().display()
                    ),
                })
        };
        let eos = id("eos_token")?;
        let pad = id("pad_token")?.or(eos);
        Ok(Self {
            chat_template: ChatTemplate::from_dir(dir)?,
            tokenizer,
            eos,
            pad,
        })
    }
}
