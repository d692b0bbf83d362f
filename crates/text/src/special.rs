//! `tokenizer_config.json`: the special tokens a model names (BOS, EOS,
//! padding) and its chat template, read once for the template and the
//! prompt builder.

use std::path::Path;

use serde::Deserialize;

use crate::error::TextError;

pub const TOKENIZER_CONFIG: &str = "tokenizer_config.json";

/// The keys of `tokenizer_config.json` cogrpo reads; the rest is ignored.
#[derive(Debug, Deserialize)]
pub struct TokenizerConfig {
    pub chat_template: Option<serde_json::Value>,
    bos_token: Option<serde_json::Value>,
    eos_token: Option<serde_json::Value>,
    pad_token: Option<serde_json::Value>,
}

impl TokenizerConfig {
    /// `dir/tokenizer_config.json`, or `None` when the file is absent.
    pub fn read(dir: &Path) -> Result<Option<Self>, TextError> {
        let path = dir.join(TOKENIZER_CONFIG);
        let bad = |message: String| TextError::File {
            path: path.clone(),
            message,
        };
        if path.exists() && !path.is_file() {
            return Err(bad(
                "not a regular file (a directory, device or FIFO)".into()
            ));
        }
        match std::fs::read_to_string(&path) {
            Ok(text) => serde_json::from_str(&text)
                .map(Some)
                .map_err(|e| bad(format!("not a tokenizer config ({e})"))),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(bad(e.to_string())),
        }
    }

    /// The text of special token `key` (`bos_token`, `eos_token`,
    /// `pad_token`), written as a string or as an added token
    /// `{"content": ...}`.
    pub fn token(&self, key: &str) -> Option<String> {
        let v = match key {
            "bos_token" => self.bos_token.as_ref(),
            "eos_token" => self.eos_token.as_ref(),
            "pad_token" => self.pad_token.as_ref(),
            _ => None,
        }?;
        match v {
            serde_json::Value::String(s) => Some(s.clone()),
            other => other.get("content")?.as_str().map(str::to_string),
        }
    }
}
