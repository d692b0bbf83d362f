//! What a reward sees: one completed generation of a task example.

use std::collections::BTreeMap;

use envs::{Example, Vocab};
use serde::{Deserialize, Serialize};

use crate::failure::RewardFailure;

/// One `(prompt, completion, metadata)` item to score. Text and token ids are
/// both present so that a reward can work on whichever is natural for it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RewardItem {
    /// Stable id, unique within a batch (`"<example id>/<rollout>"`).
    pub id: String,
    pub prompt: String,
    pub completion: String,
    pub prompt_tokens: Vec<u32>,
    pub completion_tokens: Vec<u32>,
    /// The task example's metadata (stored solution, target, ...).
    pub metadata: serde_json::Value,
}

impl RewardItem {
    /// The item for `completion` (answer tokens) of `example`, decoded with
    /// the task's vocabulary; nothing after the first end-of-sequence token
    /// reaches a reward ([`Vocab::answer`]).
    pub fn new(example: &Example, rollout: usize, completion: &[u32], vocab: &Vocab) -> Self {
        let completion = vocab.answer(completion);
        Self {
            id: format!("{}/{rollout}", example.id),
            prompt: vocab.decode(&example.prompt),
            completion: vocab.decode(completion),
            prompt_tokens: example.prompt.clone(),
            completion_tokens: completion.to_vec(),
            metadata: example.metadata.clone(),
        }
    }
}

/// What a reward returns for a batch: one score per item (`None` = the
/// reward does not apply to that item) and optional named sub-scores, each
/// with one entry per item, that are logged but not optimized.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct BatchScores {
    pub scores: Vec<Option<f32>>,
    pub parts: BTreeMap<String, Vec<Option<f32>>>,
    /// Item ranges `start..end` that failed while the rest of the batch was
    /// scored (an HTTP chunk that timed out); their scores are ignored.
    pub failed: Vec<(std::ops::Range<usize>, RewardFailure)>,
}

impl BatchScores {
    pub fn new(scores: Vec<Option<f32>>) -> Self {
        Self {
            scores,
            ..Self::default()
        }
    }

    /// The scores of a batch sent in `chunks`, from each chunk's result: a
    /// failed chunk's items go to [`BatchScores::failed`] while the others
    /// keep their scores; the batch fails as a whole only when every chunk
    /// does. Shared by the plugins that split batches (HTTP, subprocess).
    pub fn from_chunks(
        chunks: &[&[RewardItem]],
        results: Vec<Result<BatchScores, RewardFailure>>,
    ) -> Result<BatchScores, RewardFailure> {
        if let Some(Err(first)) = results.iter().find(|r| r.is_err())
            && results.iter().all(Result::is_err)
        {
            return Err(first.clone());
        }
        let mut out = BatchScores::default();
        for (chunk, result) in chunks.iter().zip(results) {
            let (offset, len) = (out.scores.len(), chunk.len());
            let scores = match result {
                Ok(s) => s,
                Err(failure) => {
                    out.failed.push((offset..offset + len, failure));
                    BatchScores::new(vec![None; len])
                }
            };
            for (name, column) in scores.parts {
                let col = out.parts.entry(name).or_insert_with(|| vec![None; offset]);
                col.resize(offset, None);
                col.extend(column);
            }
            for (range, failure) in scores.failed {
                out.failed
                    .push((offset + range.start..offset + range.end, failure));
            }
            out.scores.extend(scores.scores);
            // A chunk's reply of the wrong length was rejected by the parser;
            // keep the offsets right regardless.
            out.scores.resize(offset + len, None);
        }
        for col in out.parts.values_mut() {
            col.resize(out.scores.len(), None);
        }
        Ok(out)
    }
}
