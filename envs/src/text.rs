//! Character-level text (Tiny Shakespeare).
//!
//! The vocabulary is the corpus's distinct characters in sorted order. The
//! first 90% (by default) is training text, sampled as random windows; the
//! rest is held out and cut into consecutive, non-overlapping windows for
//! likelihood evaluation. Generation is unconditional (no prompt positions);
//! a user prompt is fixed at the start of the window and the rest is
//! generated around it.

use std::path::Path;

use serde_json::json;

use crate::error::TaskError;
use crate::seeding::{derive_key, purpose};
use crate::task::{Example, Layout, Task};
use crate::vocab::Vocab;

/// The corpus, relative to the data directory.
pub const CORPUS_FILE: &str = "tinyshakespeare/input.txt";

pub struct TextTask {
    vocab: Vocab,
    train: Vec<u32>,
    test: Vec<Example>,
    seq_len: usize,
}

impl TextTask {
    /// Loads `data_dir/tinyshakespeare/input.txt`.
    pub fn load(data_dir: &Path, seq_len: usize, holdout_fraction: f64) -> Result<Self, TaskError> {
        let path = data_dir.join(CORPUS_FILE);
        let text = crate::files::read_regular_to_string(&path).map_err(|source| TaskError::Io {
            path: path.clone(),
            source,
        })?;
        Self::from_text(&text, seq_len, holdout_fraction)
            .map_err(|e| TaskError::Invalid(format!("{}: {e}", path.display())))
    }

    pub fn from_text(text: &str, seq_len: usize, holdout_fraction: f64) -> Result<Self, TaskError> {
        if !(0.0..1.0).contains(&holdout_fraction) || holdout_fraction == 0.0 {
            return Err(TaskError::Invalid(format!(
                "holdout fraction must lie in (0, 1), got {holdout_fraction}"
            )));
        }
        let mut symbols: Vec<char> = text.chars().collect();
        symbols.sort_unstable();
        symbols.dedup();
        let vocab = Vocab::chars(symbols)?;
        let ids = vocab.encode(text)?;
        let split = ((ids.len() as f64) * (1.0 - holdout_fraction)).round() as usize;
        let (train, held_out) = ids.split_at(split);
        if train.len() < seq_len || held_out.len() < seq_len {
            return Err(TaskError::Invalid(format!(
                "corpus of {} characters is too short for windows of {seq_len} with a \
                 {holdout_fraction} hold-out",
                ids.len()
            )));
        }
        let test = held_out
            .chunks_exact(seq_len)
            .enumerate()
            .map(|(i, w)| Example {
                id: i as u64,
                prompt: Vec::new(),
                answer: w.to_vec(),
                metadata: json!({"offset": split + i * seq_len}),
                given: Vec::new(),
            })
            .collect();
        Ok(Self {
            vocab,
            train: train.to_vec(),
            test,
            seq_len,
        })
    }
}

impl Task for TextTask {
    fn name(&self) -> &str {
        "text"
    }

    fn vocab(&self) -> &Vocab {
        &self.vocab
    }

    fn layout(&self) -> Layout {
        Layout {
            prompt_len: 0,
            answer_len: self.seq_len,
        }
    }

    fn train_example(&self, index: u64) -> Example {
        let starts = (self.train.len() - self.seq_len + 1) as u64;
        let offset = (derive_key(&[purpose::TASK_DATA, index]) % starts) as usize;
        Example {
            id: index,
            prompt: Vec::new(),
            answer: self.train[offset..offset + self.seq_len].to_vec(),
            metadata: json!({"offset": offset}),
            given: Vec::new(),
        }
    }

    fn test_examples(&self) -> &[Example] {
        &self.test
    }

    fn encode_user_prompt(&self, text: &str) -> Result<Vec<u32>, TaskError> {
        let ids = self.vocab.encode(text)?;
        if ids.len() >= self.seq_len {
            return Err(TaskError::Invalid(format!(
                "prompt of {} characters leaves nothing to generate in a window of {}",
                ids.len(),
                self.seq_len
            )));
        }
        Ok(ids)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_and_windows() {
        let text: String = (0..1000)
            .map(|i| char::from(b'a' + (i % 7) as u8))
            .collect();
        let t = TextTask::from_text(&text, 32, 0.1).unwrap();
        assert_eq!(t.vocab().len(), 7);
        assert_eq!(t.test_examples().len(), 100 / 32);
        assert_eq!(t.test_examples()[0].metadata["offset"], 900);
        let ex = t.train_example(3);
        assert_eq!(ex, t.train_example(3));
        assert_eq!(ex.answer.len(), 32);
        let off = ex.metadata["offset"].as_u64().unwrap() as usize;
        assert!(off + 32 <= 900);
        assert_eq!(t.vocab().decode(&ex.answer), &text[off..off + 32]);
        assert!(t.encode_user_prompt(&"a".repeat(32)).is_err());
        assert!(TextTask::from_text(&text, 32, 0.0).is_err());
        assert!(TextTask::from_text("abc", 32, 0.1).is_err());
    }

    #[test]
    fn loads_tiny_shakespeare_with_65_characters() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../data");
        let t = TextTask::load(&dir, 256, 0.1).unwrap();
        assert_eq!(t.vocab().len(), 65);
        // 10% of 1,115,394 characters in windows of 256.
        assert_eq!(t.test_examples().len(), 111_539 / 256);
    }
}
