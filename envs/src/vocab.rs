//! Tokenizers: byte-level by default, or a small character vocabulary that a
//! task declares (digits for Sudoku, the 65 characters of Tiny Shakespeare).
//!
//! Token ids are `0..len()`. The denoiser reserves one more id, `len()`, for
//! `[MASK]`; the vocabulary itself never produces it.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};

use crate::error::TaskError;
use crate::tokenized::TokenizerVocab;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Vocab {
    /// One token per byte (256 ids); decodes lossily to UTF-8.
    Bytes,
    /// One token per listed character, in this order.
    Chars { symbols: Vec<char> },
    /// One token per listed word; text is words separated by whitespace
    /// (graph node labels, special tokens like `<pad>`).
    Words { symbols: Vec<String> },
    /// A released model's tokenizer (`tokenizer.json`) over its embedding
    /// rows; never written to a file.
    #[serde(skip)]
    Tokenizer(TokenizerVocab),
}

impl Vocab {
    /// A character vocabulary; duplicates are an error because they would
    /// make decoding ambiguous.
    pub fn chars(symbols: impl IntoIterator<Item = char>) -> Result<Self, TaskError> {
        let symbols: Vec<char> = symbols.into_iter().collect();
        let mut seen = HashMap::new();
        for (i, c) in symbols.iter().enumerate() {
            if let Some(j) = seen.insert(*c, i) {
                return Err(TaskError::Invalid(format!(
                    "vocabulary lists {c:?} twice (positions {j} and {i})"
                )));
            }
        }
        if symbols.is_empty() {
            return Err(TaskError::Invalid("vocabulary is empty".into()));
        }
        Ok(Vocab::Chars { symbols })
    }

    /// A word vocabulary; duplicates and words containing whitespace are
    /// errors.
    pub fn words(symbols: impl IntoIterator<Item = String>) -> Result<Self, TaskError> {
        let symbols: Vec<String> = symbols.into_iter().collect();
        let mut seen = HashMap::new();
        for (i, w) in symbols.iter().enumerate() {
            if w.is_empty() || w.chars().any(char::is_whitespace) {
                return Err(TaskError::Invalid(format!(
                    "vocabulary word {w:?} (position {i}) is empty or has whitespace"
                )));
            }
            if let Some(j) = seen.insert(w.clone(), i) {
                return Err(TaskError::Invalid(format!(
                    "vocabulary lists {w:?} twice (positions {j} and {i})"
                )));
            }
        }
        if symbols.is_empty() {
            return Err(TaskError::Invalid("vocabulary is empty".into()));
        }
        Ok(Vocab::Words { symbols })
    }

    /// The id of `symbol` (a character or a word), if the vocabulary has it.
    pub fn id_of(&self, symbol: &str) -> Option<u32> {
        match self {
            Vocab::Bytes => {
                let b = symbol.as_bytes();
                (b.len() == 1).then(|| u32::from(b[0]))
            }
            Vocab::Chars { symbols } => {
                let mut cs = symbol.chars();
                let c = cs.next()?;
                cs.next().is_none().then_some(())?;
                symbols.iter().position(|s| *s == c).map(|i| i as u32)
            }
            Vocab::Words { symbols } => symbols.iter().position(|s| s == symbol).map(|i| i as u32),
            Vocab::Tokenizer(t) => t.text().tokenizer.token_to_id(symbol),
        }
    }

    /// Number of token ids (without `[MASK]`).
    pub fn len(&self) -> usize {
        match self {
            Vocab::Bytes => 256,
            Vocab::Chars { symbols } => symbols.len(),
            Vocab::Words { symbols } => symbols.len(),
            Vocab::Tokenizer(t) => t.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The id the denoiser uses for `[MASK]`.
    pub fn mask_id(&self) -> u32 {
        self.len() as u32
    }

    /// The answer `ids` as a reward reads it: up to its first
    /// end-of-sequence or padding token (a tokenizer's `eos_token` and
    /// `pad_token`, which fill every position after a released model's
    /// answer); all of `ids` for vocabularies without them.
    pub fn answer<'a>(&self, ids: &'a [u32]) -> &'a [u32] {
        let ends = match self {
            Vocab::Tokenizer(t) => t.answer_ends(),
            _ => [None, None],
        };
        match ids.iter().position(|i| ends.contains(&Some(*i))) {
            Some(end) => &ids[..end],
            None => ids,
        }
    }

    /// Encodes text; a character outside the vocabulary is an error that
    /// names it and its position.
    pub fn encode(&self, text: &str) -> Result<Vec<u32>, TaskError> {
        match self {
            Vocab::Bytes => Ok(text.bytes().map(u32::from).collect()),
            Vocab::Chars { symbols } => {
                text.chars()
                    .enumerate()
                    .map(|(pos, c)| {
                        symbols.iter().position(|s| *s == c).map(|i| i as u32).ok_or_else(|| {
                        TaskError::Invalid(format!(
                            "character {c:?} at position {pos} is not in the task's vocabulary \
                             ({} symbols)",
                            symbols.len()
                        ))
                    })
                    })
                    .collect()
            }
            Vocab::Words { symbols } => text
                .split_whitespace()
                .enumerate()
                .map(|(pos, w)| {
                    symbols.iter().position(|s| s == w).map(|i| i as u32).ok_or_else(|| {
                        TaskError::Invalid(format!(
                            "word {w:?} at position {pos} is not in the task's vocabulary ({} words)",
                            symbols.len()
                        ))
                    })
                })
                .collect(),
            Vocab::Tokenizer(t) => t.encode(text, false),
        }
    }

    /// Decodes ids; the mask id shows as `_` and any other out-of-range id as
    /// U+FFFD, so a partially generated canvas can still be printed.
    pub fn decode(&self, ids: &[u32]) -> String {
        let mask = self.mask_id();
        match self {
            Vocab::Bytes => {
                let bytes: Vec<u8> = ids
                    .iter()
                    .map(|&i| {
                        if i == mask {
                            b'_'
                        } else {
                            u8::try_from(i).unwrap_or(b'?')
                        }
                    })
                    .collect();
                String::from_utf8_lossy(&bytes).into_owned()
            }
            Vocab::Chars { symbols } => ids
                .iter()
                .map(|&i| {
                    if i == mask {
                        '_'
                    } else {
                        symbols.get(i as usize).copied().unwrap_or('\u{FFFD}')
                    }
                })
                .collect(),
            Vocab::Words { symbols } => ids
                .iter()
                .map(|&i| {
                    if i == mask {
                        "_"
                    } else {
                        symbols.get(i as usize).map_or("\u{FFFD}", String::as_str)
                    }
                })
                .collect::<Vec<_>>()
                .join(" "),
            Vocab::Tokenizer(t) => t.decode(ids),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chars_round_trip_and_reject_unknown() {
        let v = Vocab::chars("01234".chars()).unwrap();
        assert_eq!(v.len(), 5);
        assert_eq!(v.mask_id(), 5);
        let ids = v.encode("3102").unwrap();
        assert_eq!(ids, vec![3, 1, 0, 2]);
        assert_eq!(v.decode(&ids), "3102");
        assert_eq!(v.decode(&[1, 5, 2]), "1_2");
        let err = v.encode("12x").unwrap_err().to_string();
        assert!(err.contains("'x'") && err.contains("position 2"), "{err}");
        assert!(Vocab::chars("aba".chars()).is_err());
    }

    #[test]
    fn words_round_trip_and_reject_unknown() {
        let v = Vocab::words(["0", "1", "12", "<pad>"].map(String::from)).unwrap();
        let ids = v.encode("12 0  <pad>").unwrap();
        assert_eq!(ids, vec![2, 0, 3]);
        assert_eq!(v.decode(&[2, 4, 1]), "12 _ 1");
        assert_eq!(v.id_of("<pad>"), Some(3));
        let err = v.encode("0 7").unwrap_err().to_string();
        assert!(err.contains("\"7\"") && err.contains("position 1"), "{err}");
        assert!(Vocab::words(["a b".to_string()]).is_err());
        assert!(Vocab::words(["a".to_string(), "a".to_string()]).is_err());
    }

    #[test]
    fn bytes_round_trip() {
        let v = Vocab::Bytes;
        let ids = v.encode("héllo").unwrap();
        assert_eq!(v.decode(&ids), "héllo");
        assert_eq!(v.mask_id(), 256);
    }
}
