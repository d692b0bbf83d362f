//! A task over text: prompts and reference answers in JSON Lines, read
//! through a released model's tokenizer (`task.kind = "prompts"`).
//!
//! Each line is `{"prompt": ..., "answer": ..., ...}`; every field but
//! `prompt` goes to the rewards as metadata (so a verifier can read the
//! puzzle, the target, the stored answer). The prompt is wrapped in the
//! model's chat template when asked (`apply_chat_template` with
//! `add_generation_prompt`), tokenized, and left-padded to the longest
//! prompt, as LLaDA's and d1's batch generation pad; the answer is
//! tokenized and padded to `gen_length` with the padding token, which is
//! what LLaDA's supervised fine-tuning trains the model to write after its
//! reply. Completions are decoded (without special tokens) before rewards
//! and verifiers see them.
//!
//! The data is a directory with `train.jsonl` and `test.jsonl` (and,
//! optionally, `validation.jsonl`), or a single file of which a seeded
//! share is held out as the test split.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rand::seq::SliceRandom;
use text::{Message, ModelText};

use crate::error::TaskError;
use crate::jsonl::{data_error, read_objects};
use crate::seeding::{purpose, stream};
use crate::task::{Example, Layout, Task};
use crate::tokenized::TokenizerVocab;
use crate::vocab::Vocab;

/// How a prompt set is read (the `[task]` keys of `kind = "prompts"`).
#[derive(Debug, Clone)]
pub struct PromptsSpec {
    /// A directory of `train/test[/validation].jsonl`, or one JSONL file.
    pub path: PathBuf,
    /// Answer positions generated after each prompt.
    pub gen_length: usize,
    /// Wrap each prompt in the model's chat template.
    pub chat_template: bool,
    /// Prompt positions; unset: the longest prompt.
    pub prompt_len: Option<usize>,
    /// Held-out share when `path` is one file.
    pub holdout_fraction: f64,
    /// Seeds which lines of a single file are held out.
    pub data_seed: u64,
    /// The task whose verifiers score the completions (`sudoku4`,
    /// `countdown`), or `prompts` for none.
    pub verifiers: String,
}

/// One line before tokenization.
struct Record {
    id: u64,
    prompt: String,
    answer: String,
    metadata: serde_json::Value,
    /// File and line, for errors.
    at: (PathBuf, usize),
}

impl Record {
    fn error(&self, message: String) -> TaskError {
        data_error(&self.at.0, self.at.1, message)
    }
}

pub struct PromptsTask {
    verifiers: String,
    encoder: Encoder,
    vocab: Vocab,
    layout: Layout,
    train: Vec<Example>,
    test: Vec<Example>,
    validation: Vec<Example>,
}

impl PromptsTask {
    /// Reads and tokenizes the prompt set for a model with `rows`
    /// embedding rows whose own mask id is `released_mask`.
    pub fn load(
        spec: &PromptsSpec,
        text: Arc<ModelText>,
        rows: usize,
        released_mask: Option<u32>,
    ) -> Result<Self, TaskError> {
        if spec.gen_length == 0 {
            return Err(TaskError::Invalid(
                "task.gen_length must be at least 1".into(),
            ));
        }
        let vocab = TokenizerVocab::new(text, rows, released_mask)?;
        let [train, test, validation] = read_splits(spec)?;
        let mut encoder = Encoder::new(spec, vocab)?;
        let prompts: Vec<Vec<Vec<u32>>> = [&train, &test, &validation]
            .iter()
            .map(|split| {
                split
                    .iter()
                    .map(|r| encoder.prompt(&r.prompt).map_err(|m| r.error(m)))
                    .collect()
            })
            .collect::<Result<_, _>>()?;
        let longest = prompts.iter().flatten().map(Vec::len).max().unwrap_or(0);
        encoder.prompt_len = spec.prompt_len.unwrap_or(longest);
        let examples =
            |split: &[Record], prompts: Vec<Vec<u32>>| -> Result<Vec<Example>, TaskError> {
                split
                    .iter()
                    .zip(prompts)
                    .map(|(r, p)| encoder.example(r, p).map_err(|m| r.error(m)))
                    .collect()
            };
        let mut prompts = prompts.into_iter();
        let mut next = || prompts.next().unwrap_or_default();
        Ok(Self {
            verifiers: spec.verifiers.clone(),
            layout: Layout {
                prompt_len: encoder.prompt_len,
                answer_len: spec.gen_length,
            },
            train: examples(&train, next())?,
            test: examples(&test, next())?,
            validation: examples(&validation, next())?,
            vocab: Vocab::Tokenizer(encoder.vocab.clone()),
            encoder,
        })
    }
}

/// The train, test and validation records of `spec.path`: its files, or
/// one file cut by a seeded shuffle.
fn read_splits(spec: &PromptsSpec) -> Result<[Vec<Record>; 3], TaskError> {
    let path = &spec.path;
    if path.is_dir() {
        let validation = path.join("validation.jsonl");
        let validation = if validation.is_file() {
            read_records(&validation)?
        } else {
            Vec::new()
        };
        return Ok([
            read_records(&path.join("train.jsonl"))?,
            read_records(&path.join("test.jsonl"))?,
            validation,
        ]);
    }
    if !(spec.holdout_fraction > 0.0 && spec.holdout_fraction < 1.0) {
        return Err(TaskError::Invalid(format!(
            "task.holdout_fraction must lie in (0, 1), got {}",
            spec.holdout_fraction
        )));
    }
    let mut all = read_records(path)?;
    let held = ((all.len() as f64) * spec.holdout_fraction).ceil() as usize;
    if held >= all.len() {
        return Err(data_error(
            path,
            1,
            format!(
                "{} records are too few to hold out {} and train on the rest",
                all.len(),
                spec.holdout_fraction
            ),
        ));
    }
    all.shuffle(&mut stream(&[purpose::TASK_DATA, spec.data_seed]));
    let train = all.split_off(held);
    Ok([train, all, Vec::new()])
}

/// The records of one JSONL file; a line without a string `prompt` (or
/// with a non-string `answer`) is an error naming the file and line.
fn read_records(path: &Path) -> Result<Vec<Record>, TaskError> {
    read_objects(path)?
        .into_iter()
        .map(|(line, mut fields)| {
            let err = |m: String| data_error(path, line, m);
            let prompt = match fields.remove("prompt") {
                Some(serde_json::Value::String(p)) => p,
                _ => return Err(err("no string field \"prompt\"".into())),
            };
            let answer = match fields.get("answer") {
                None => String::new(),
                Some(serde_json::Value::String(a)) => a.clone(),
                Some(other) => {
                    return Err(err(format!("\"answer\" must be a string, got {other}")));
                }
            };
            Ok(Record {
                id: line as u64,
                prompt,
                answer,
                metadata: serde_json::Value::Object(fields),
                at: (path.to_path_buf(), line),
            })
        })
        .collect()
}

/// Prompt and answer text to ids, with one tokenizer and template.
struct Encoder {
    vocab: TokenizerVocab,
    chat_template: bool,
    gen_length: usize,
    /// Prompts are left-padded to this many positions.
    prompt_len: usize,
    pad: u32,
}

impl Encoder {
    fn new(spec: &PromptsSpec, vocab: TokenizerVocab) -> Result<Self, TaskError> {
        let text = vocab.text();
        let path = text.tokenizer.path().display();
        if spec.chat_template && text.chat_template.is_none() {
            return Err(TaskError::Invalid(format!(
                "task.chat_template = true, but beside {path} there is no chat template \
                 (tokenizer_config.json's `chat_template` or chat_template.jinja)"
            )));
        }
        let pad = text.pad.ok_or_else(|| {
            TaskError::Invalid(format!(
                "beside {path}, tokenizer_config.json names no `pad_token` or `eos_token` \
                 to pad prompts and answers with"
            ))
        })?;
        Ok(Self {
            chat_template: spec.chat_template,
            gen_length: spec.gen_length,
            prompt_len: 0,
            pad,
            vocab,
        })
    }

    /// The prompt's ids, unpadded: through the chat template (which writes
    /// its own BOS) or with the tokenizer's special tokens.
    fn prompt(&self, prompt: &str) -> Result<Vec<u32>, String> {
        match &self.vocab.text().chat_template {
            Some(t) if self.chat_template => {
                let rendered = t
                    .apply(&[Message::user(prompt)], true)
                    .map_err(|e| e.to_string())?;
                self.vocab.encode(&rendered, false)
            }
            _ => self.vocab.encode(prompt, true),
        }
        .map_err(|e| e.to_string())
    }

    /// `prompt` left-padded to the layout's prompt positions.
    fn left_pad(&self, prompt: Vec<u32>) -> Result<Vec<u32>, String> {
        if prompt.len() > self.prompt_len {
            return Err(format!(
                "the prompt is {} tokens, more than the {} prompt positions (task.prompt_len)",
                prompt.len(),
                self.prompt_len
            ));
        }
        let mut padded = vec![self.pad; self.prompt_len - prompt.len()];
        padded.extend(prompt);
        Ok(padded)
    }

    fn example(&self, r: &Record, prompt: Vec<u32>) -> Result<Example, String> {
        let mut answer = self
            .vocab
            .encode(&r.answer, false)
            .map_err(|e| e.to_string())?;
        if answer.len() > self.gen_length {
            return Err(format!(
                "the answer is {} tokens, more than task.gen_length = {}",
                answer.len(),
                self.gen_length
            ));
        }
        answer.resize(self.gen_length, self.pad);
        Ok(Example {
            id: r.id,
            prompt: self.left_pad(prompt)?,
            answer,
            metadata: r.metadata.clone(),
            given: Vec::new(),
        })
    }
}

impl Task for PromptsTask {
    fn name(&self) -> &str {
        "prompts"
    }

    fn verifiers(&self) -> &str {
        &self.verifiers
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

    fn validation_examples(&self) -> &[Example] {
        &self.validation
    }

    /// A typed prompt goes through the same template and padding as the
    /// set's prompts.
    fn encode_user_prompt(&self, text: &str) -> Result<Vec<u32>, TaskError> {
        let e = &self.encoder;
        e.prompt(text)
            .and_then(|p| e.left_pad(p))
            .map_err(TaskError::Invalid)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text() -> Arc<ModelText> {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../data/tokenizers/shakespeare-bpe");
        Arc::new(ModelText::from_dir(&dir).unwrap())
    }

    fn spec(path: PathBuf, chat_template: bool) -> PromptsSpec {
        PromptsSpec {
            path,
            gen_length: 12,
            chat_template,
            prompt_len: None,
            holdout_fraction: 0.25,
            data_seed: 3,
            verifiers: "countdown".into(),
        }
    }

    #[test]
    fn prompts_are_left_padded_and_answers_right_padded_with_the_pad_token() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("all.jsonl");
        let lines: Vec<String> = (0..8)
            .map(|i| {
                let prompt = "x ".repeat(i + 1);
                format!(r#"{{"prompt": "{prompt}", "answer": "1+{i}", "target": {i}}}"#)
            })
            .collect();
        std::fs::write(&file, lines.join("\n")).unwrap();
        let task = PromptsTask::load(&spec(file, false), text(), 1000, None).unwrap();
        let pad = text().pad.unwrap();
        assert_eq!(task.verifiers(), "countdown");
        assert_eq!((task.train.len(), task.test.len()), (6, 2));
        let layout = task.layout();
        assert_eq!(layout.answer_len, 12);
        for ex in task.train.iter().chain(&task.test) {
            assert_eq!(ex.prompt.len(), layout.prompt_len);
            assert_eq!(ex.answer.len(), 12);
            // The prompt's text is at the end, the answer's at the start.
            let i = ex.metadata["target"].as_u64().unwrap() as usize;
            let ids = task.vocab.encode(&"x ".repeat(i + 1)).unwrap();
            assert!(
                ex.prompt.ends_with(&ids)
                    && ex.prompt[..layout.prompt_len - ids.len()]
                        .iter()
                        .all(|&t| t == pad)
            );
            assert_eq!(task.vocab.decode(&ex.answer), format!("1+{i}"));
            assert_eq!(*ex.answer.last().unwrap(), pad);
        }
        // The longest prompt fills the prompt positions.
        assert!(
            task.train
                .iter()
                .chain(&task.test)
                .any(|e| e.prompt[0] != pad)
        );
        // A typed prompt is padded the same way; one too long is refused.
        assert_eq!(
            task.encode_user_prompt("x ").unwrap().len(),
            layout.prompt_len
        );
        assert!(task.encode_user_prompt(&"x ".repeat(100)).is_err());
    }

    #[test]
    fn a_reward_reads_the_answer_up_to_the_first_end_of_sequence_or_pad() {
        let t = text();
        let (eos, pad) = (t.eos.unwrap(), t.pad.unwrap());
        let vocab = Vocab::Tokenizer(TokenizerVocab::new(t, 1024, None).unwrap());
        let (answer, after) = (vocab.encode("1+2").unwrap(), vocab.encode("9 9").unwrap());
        for end in [eos, pad] {
            let ids = [answer.clone(), vec![end], after.clone(), vec![end]].concat();
            assert_eq!(vocab.answer(&ids), &answer[..]);
            assert_ne!(
                vocab.decode(&ids),
                "1+2",
                "the text after the end would be scored"
            );
        }
        assert_eq!(vocab.answer(&answer), &answer[..], "no end: all of it");
        let chars = Vocab::chars("0123".chars()).unwrap();
        assert_eq!(chars.answer(&[1, 2, 3]), &[1, 2, 3]);
    }

    #[test]
    fn the_released_mask_token_is_read_as_cogrpo_mask_and_shown_as_underscore() {
        let t = text();
        let released = t.tokenizer.token_to_id("<|mdm_mask|>").unwrap();
        let vocab = TokenizerVocab::new(t.clone(), 1024, Some(released)).unwrap();
        let ids = vocab.encode("ab<|mdm_mask|>c", false).unwrap();
        assert!(ids.contains(&1024) && !ids.contains(&released));
        assert_eq!(vocab.decode(&ids), "ab_c");
        // A tokenizer with more ids than the model has rows is refused.
        assert!(TokenizerVocab::new(t.clone(), 999, None).is_err());
        assert!(TokenizerVocab::new(t, 1000, Some(1001)).is_err());
    }

    #[test]
    fn chat_template_prompts_start_with_the_templates_tokens() {
        let dir = tempfile::tempdir().unwrap();
        for split in ["train", "test"] {
            std::fs::write(
                dir.path().join(format!("{split}.jsonl")),
                r#"{"prompt": "2+2?", "answer": "4"}"#,
            )
            .unwrap();
        }
        let task = PromptsTask::load(&spec(dir.path().into(), true), text(), 1000, None).unwrap();
        let t = text();
        let rendered = t
            .chat_template
            .as_ref()
            .unwrap()
            .apply(&[Message::user("2+2?")], true)
            .unwrap();
        assert_eq!(
            task.test[0].prompt,
            t.tokenizer.encode(&rendered, false).unwrap()
        );
        assert!(
            rendered.ends_with("assistant<|end_header_id|>\n\n"),
            "{rendered}"
        );
    }
}
