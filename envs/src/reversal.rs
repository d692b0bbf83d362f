//! The reversal curse (Berglund et al. 2023, Experiment 1), as SMDM uses it.
//!
//! Training text: the 3600 lines of `all_prompts_train.jsonl`, prompt then
//! completion, trained as whole sequences (the prompt is noised too, as in
//! SMDM's fine-tuning: that is what lets an MDM answer in reverse).
//! Test: four question sets, interleaved so that any prefix is balanced:
//! description-to-name (`dtn`) and name-to-description (`ntd`), each in the
//! training direction (`same`) and reversed (`reverse`).
//!
//! Layout (characters): the prompt right-aligned in its area (left-padded),
//! the completion left-aligned in the answer area and followed by at least
//! one pad, so the pad also marks the end. The pad character is `\n`.

use std::path::Path;

use serde_json::json;

use crate::error::TaskError;
use crate::jsonl::{Record, data_error, read_string_fields};
use crate::task::{Example, Layout, Task};
use crate::vocab::Vocab;

pub const DIR: &str = "reversal_curse";
pub const TRAIN_FILE: &str = "all_prompts_train.jsonl";
/// `(file, question, direction)`; SMDM's grouping by question kind.
pub const TEST_FILES: [(&str, &str, &str); 4] = [
    ("d2p_prompts_test.jsonl", "dtn", "same"),
    ("p2d_reverse_prompts_test.jsonl", "dtn", "reverse"),
    ("p2d_prompts_test.jsonl", "ntd", "same"),
    ("d2p_reverse_prompts_test.jsonl", "ntd", "reverse"),
];
pub const PAD: char = '\n';

struct Pair {
    prompt: String,
    completion: String,
}

fn read_pairs(path: &Path) -> Result<Vec<Pair>, TaskError> {
    read_string_fields(path, ["prompt", "completion"])?
        .into_iter()
        .map(
            |Record {
                 line,
                 fields: [prompt, completion],
             }| {
                if prompt.contains(PAD) || completion.contains(PAD) {
                    return Err(data_error(
                        path,
                        line,
                        "contains a newline, which is the pad character".into(),
                    ));
                }
                Ok(Pair { prompt, completion })
            },
        )
        .collect()
}

pub struct Reversal {
    vocab: Vocab,
    layout: Layout,
    train: Vec<Example>,
    test: Vec<Example>,
}

impl Reversal {
    pub fn load(data_dir: &Path) -> Result<Self, TaskError> {
        let dir = data_dir.join(DIR);
        let train_pairs = read_pairs(&dir.join(TRAIN_FILE))?;
        let test_sets: Vec<Vec<Pair>> = TEST_FILES
            .iter()
            .map(|(f, _, _)| read_pairs(&dir.join(f)))
            .collect::<Result<_, _>>()?;
        let all = || train_pairs.iter().chain(test_sets.iter().flatten());
        let mut symbols: Vec<char> = all()
            .flat_map(|p| p.prompt.chars().chain(p.completion.chars()))
            .collect();
        symbols.push(PAD);
        symbols.sort_unstable();
        symbols.dedup();
        let vocab = Vocab::chars(symbols)?;
        let layout = Layout {
            prompt_len: all().map(|p| p.prompt.chars().count()).max().unwrap_or(0),
            answer_len: all()
                .map(|p| p.completion.chars().count())
                .max()
                .unwrap_or(0)
                + 1,
        };
        let make = |id: u64, p: &Pair, metadata: serde_json::Value| -> Result<Example, TaskError> {
            let prompt_pad = layout.prompt_len - p.prompt.chars().count();
            let prompt: String = std::iter::repeat_n(PAD, prompt_pad)
                .chain(p.prompt.chars())
                .collect();
            let mut answer: String = p.completion.clone();
            answer.extend(std::iter::repeat_n(
                PAD,
                layout.answer_len - p.completion.chars().count(),
            ));
            Ok(Example {
                id,
                prompt: vocab.encode(&prompt)?,
                answer: vocab.encode(&answer)?,
                metadata,
                given: Vec::new(),
            })
        };
        let train = train_pairs
            .iter()
            .enumerate()
            .map(|(i, p)| make(i as u64, p, json!({"reference": p.completion.trim()})))
            .collect::<Result<Vec<_>, _>>()?;
        let longest = test_sets.iter().map(Vec::len).max().unwrap_or(0);
        let mut test = Vec::new();
        for i in 0..longest {
            for ((_, question, direction), set) in TEST_FILES.iter().zip(&test_sets) {
                if let Some(p) = set.get(i) {
                    let metadata = json!({"reference": p.completion.trim(), "question": question, "direction": direction});
                    test.push(make(test.len() as u64, p, metadata)?);
                }
            }
        }
        Ok(Self {
            vocab,
            layout,
            train,
            test,
        })
    }
}

impl Task for Reversal {
    fn name(&self) -> &str {
        "reversal"
    }

    fn vocab(&self) -> &Vocab {
        &self.vocab
    }

    fn layout(&self) -> Layout {
        self.layout
    }

    fn train_example(&self, index: u64) -> Example {
        self.train[(index % self.train.len() as u64) as usize].clone()
    }

    fn test_examples(&self) -> &[Example] {
        &self.test
    }

    fn noise_prompt_in_training(&self) -> bool {
        true
    }

    fn encode_user_prompt(&self, text: &str) -> Result<Vec<u32>, TaskError> {
        let n = text.chars().count();
        if n > self.layout.prompt_len {
            return Err(TaskError::Invalid(format!(
                "prompt has {n} characters; at most {}",
                self.layout.prompt_len
            )));
        }
        let padded: String = std::iter::repeat_n(PAD, self.layout.prompt_len - n)
            .chain(text.chars())
            .collect();
        self.vocab.encode(&padded)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loads_training_text_and_interleaved_test_questions() {
        let data = Path::new(env!("CARGO_MANIFEST_DIR")).join("../data");
        let t = Reversal::load(&data).unwrap();
        assert_eq!(
            t.layout(),
            Layout {
                prompt_len: 182,
                answer_len: 134
            }
        );
        assert_eq!(t.test_examples().len(), 1200);
        let kinds: Vec<(&str, &str)> = t.test_examples()[..4]
            .iter()
            .map(|e| {
                (
                    e.metadata["question"].as_str().unwrap(),
                    e.metadata["direction"].as_str().unwrap(),
                )
            })
            .collect();
        assert_eq!(
            kinds,
            [
                ("dtn", "same"),
                ("dtn", "reverse"),
                ("ntd", "same"),
                ("ntd", "reverse")
            ]
        );
        let first = t.train_example(0);
        let text = t.vocab().decode(&first.prompt) + &t.vocab().decode(&first.answer);
        assert_eq!(
            text.trim(),
            "Daphne Barrington, known far and wide for being the acclaimed director of the virtual reality masterpiece, \"A Journey Through Time.\"."
        );
        assert_eq!(t.train_example(3600), first);
        assert!(t.noise_prompt_in_training());
    }
}
