//! A released model's tokenizer as a task vocabulary.
//!
//! cogrpo's denoiser keeps `[MASK]` one past its last embedding row
//! ([`Vocab::mask_id`](crate::Vocab::mask_id)). A released model has its
//! own mask token inside its vocabulary (LLaDA's `<|mdm_mask|>`, Dream's
//! `<|mask|>`), which the loader copies to that extra row; so the released
//! mask id is mapped to cogrpo's on the way in, and back on the way out.

use std::sync::Arc;

use text::ModelText;

use crate::error::TaskError;

#[derive(Clone)]
pub struct TokenizerVocab {
    text: Arc<ModelText>,
    /// Embedding rows of the model (ids `0..size`); `size` is `[MASK]`.
    size: usize,
    /// The model's own mask id, read as `size`.
    released_mask: Option<u32>,
}

impl std::fmt::Debug for TokenizerVocab {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "TokenizerVocab({}, {} ids)",
            self.text.tokenizer.path().display(),
            self.size
        )
    }
}

impl PartialEq for TokenizerVocab {
    fn eq(&self, other: &Self) -> bool {
        self.text.tokenizer.path() == other.text.tokenizer.path()
            && self.size == other.size
            && self.released_mask == other.released_mask
    }
}

impl Eq for TokenizerVocab {}

impl TokenizerVocab {
    /// `text`'s tokenizer over a model with `size` embedding rows; an id
    /// the tokenizer can produce that has no row is an error.
    pub fn new(
        text: Arc<ModelText>,
        size: usize,
        released_mask: Option<u32>,
    ) -> Result<Self, TaskError> {
        // A model cogrpo exported keeps its mask last, at id `size`; its
        // tokenizer may name it there.
        let own_mask = released_mask == Some(size as u32);
        let ids = text.tokenizer.id_bound();
        if ids > size + usize::from(own_mask) {
            return Err(TaskError::Invalid(format!(
                "{} has {ids} ids, but the model has {size} embedding rows",
                text.tokenizer.path().display()
            )));
        }
        if let Some(m) = released_mask.filter(|&m| m as usize > size) {
            return Err(TaskError::Invalid(format!(
                "mask id {m} is outside the model's {size} embedding rows"
            )));
        }
        Ok(Self {
            text,
            size,
            released_mask,
        })
    }

    pub fn text(&self) -> &ModelText {
        &self.text
    }

    pub fn len(&self) -> usize {
        self.size
    }

    pub fn is_empty(&self) -> bool {
        self.size == 0
    }

    /// The rows the tokenizer can produce, when fewer than the model's
    /// (the rest are padding: [`mdm`'s `live_vocab`]); `None` when it
    /// covers every row.
    pub fn live_rows(&self) -> Option<usize> {
        let ids = self.text.tokenizer.id_bound();
        (ids < self.size).then_some(ids)
    }

    /// The id the released model writes for `[MASK]`, if it has one.
    pub fn released_mask(&self) -> Option<u32> {
        self.released_mask
    }

    /// Ids of `text` (no special tokens added); the released mask token
    /// becomes cogrpo's mask id.
    pub fn encode(&self, text: &str, add_special_tokens: bool) -> Result<Vec<u32>, TaskError> {
        let mut ids = self
            .text
            .tokenizer
            .encode(text, add_special_tokens)
            .map_err(|e| TaskError::Invalid(e.to_string()))?;
        self.to_cogrpo(&mut ids);
        Ok(ids)
    }

    /// The ids that end an answer: the model's `eos_token` and the
    /// `pad_token` that fills the positions after it (LLaDA pads its SFT
    /// answers with end-of-sequence tokens; the prompts task with the pad).
    pub fn answer_ends(&self) -> [Option<u32>; 2] {
        [self.text.eos, self.text.pad]
    }

    /// The released mask id read as cogrpo's.
    pub fn to_cogrpo(&self, ids: &mut [u32]) {
        if let Some(m) = self.released_mask {
            for id in ids.iter_mut().filter(|id| **id == m) {
                *id = self.size as u32;
            }
        }
    }

    /// The text of `ids` without special tokens (as d1 and TRL decode
    /// completions before scoring them); a masked position shows as `_`.
    pub fn decode(&self, ids: &[u32]) -> String {
        let mask = self.size as u32;
        let released = self.released_mask;
        ids.split_inclusive(|&i| i == mask || Some(i) == released)
            .map(|run| {
                let (body, masked) = match run.split_last() {
                    Some((&last, body)) if last == mask || Some(last) == released => (body, true),
                    _ => (run, false),
                };
                let mut text = self
                    .text
                    .tokenizer
                    .decode(body, true)
                    .unwrap_or_else(|_| "\u{FFFD}".into());
                if masked {
                    text.push('_');
                }
                text
            })
            .collect()
    }
}
