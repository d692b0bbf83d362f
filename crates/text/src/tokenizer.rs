//! A model's `tokenizer.json`: encode and decode with its special tokens.

use std::path::{Path, PathBuf};

use tokenizers::Tokenizer;

use crate::error::TextError;

/// A tokenizer read from a `tokenizer.json` (any model Hugging Face's
/// `tokenizers` reads: BPE, Unigram, WordPiece, WordLevel, with their
/// normalizers, pre-tokenizers, post-processors and decoders).
#[derive(Clone)]
pub struct TextTokenizer {
    inner: Tokenizer,
    path: PathBuf,
}

impl std::fmt::Debug for TextTokenizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "TextTokenizer({})", self.path.display())
    }
}

impl TextTokenizer {
    pub fn from_file(path: &Path) -> Result<Self, TextError> {
        if path.exists() && !path.is_file() {
            return Err(TextError::File {
                path: path.to_path_buf(),
                message: "not a regular file (a directory, device or FIFO)".into(),
            });
        }
        let inner = Tokenizer::from_file(path).map_err(|e| TextError::File {
            path: path.to_path_buf(),
            message: format!("not a tokenizer.json this build reads ({e})"),
        })?;
        Ok(Self {
            inner,
            path: path.to_path_buf(),
        })
    }

    fn err(&self, what: &'static str, e: impl std::fmt::Display) -> TextError {
        TextError::Tokenize {
            path: self.path.clone(),
            what,
            message: e.to_string(),
        }
    }

    /// Token ids of `text`. Special tokens written in the text become their
    /// ids; `add_special_tokens` adds what the post-processor adds (a BOS,
    /// for Llama-style tokenizers), as `tokenizer.encode(..)` does.
    pub fn encode(&self, text: &str, add_special_tokens: bool) -> Result<Vec<u32>, TextError> {
        let encoding = self
            .inner
            .encode(text, add_special_tokens)
            .map_err(|e| self.err("encode", e))?;
        Ok(encoding.get_ids().to_vec())
    }

    /// The text of `ids`, leaving out special tokens when asked.
    pub fn decode(&self, ids: &[u32], skip_special_tokens: bool) -> Result<String, TextError> {
        self.inner
            .decode(ids, skip_special_tokens)
            .map_err(|e| self.err("decode", e))
    }

    /// Ids in the vocabulary, added tokens included.
    pub fn vocab_size(&self) -> usize {
        self.inner.get_vocab_size(true)
    }

    /// One past the largest id the tokenizer can produce (added tokens
    /// included): the rows of an embedding it needs.
    pub fn id_bound(&self) -> usize {
        self.inner
            .get_vocab(true)
            .values()
            .max()
            .map_or(0, |&m| m as usize + 1)
    }

    pub fn token_to_id(&self, token: &str) -> Option<u32> {
        self.inner.token_to_id(token)
    }

    pub fn id_to_token(&self, id: u32) -> Option<String> {
        self.inner.id_to_token(id)
    }

    /// The added tokens marked special, with their ids, by id.
    pub fn special_tokens(&self) -> Vec<(String, u32)> {
        let mut out: Vec<(String, u32)> = self
            .inner
            .get_added_tokens_decoder()
            .into_iter()
            .filter(|(_, t)| t.special)
            .map(|(id, t)| (t.content, id))
            .collect();
        out.sort_by_key(|(_, id)| *id);
        out
    }

    /// The model and pre-tokenizer kinds, e.g. `BPE, ByteLevel`.
    pub fn kind(&self) -> String {
        let json = serde_json::to_value(&self.inner).unwrap_or_default();
        let ty = |v: &serde_json::Value| {
            v.get("type")
                .and_then(|t| t.as_str())
                .unwrap_or("none")
                .to_string()
        };
        format!("{}, {}", ty(&json["model"]), ty(&json["pre_tokenizer"]))
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}
