//! The canvas: the state `s_t` of a batch of generations.
//!
//! Each row is a fixed-length token sequence: a clean prompt, then answer
//! positions that start as `[MASK]` and are revealed one decision at a time.
//! A revealed token is never changed again (MDM sampling without re-masking).
//! Each row carries a key from which all its random draws are derived, so a
//! row's generation does not depend on which batch it ran in.

use crate::error::TaskError;
use crate::task::Example;

#[derive(Debug, Clone, PartialEq)]
pub struct Canvas {
    len: usize,
    mask_id: u32,
    tokens: Vec<u32>,
    prompt_len: Vec<usize>,
    keys: Vec<u64>,
}

impl Canvas {
    /// An empty canvas whose rows have `len` positions.
    pub fn new(len: usize, mask_id: u32) -> Self {
        Self {
            len,
            mask_id,
            tokens: Vec::new(),
            prompt_len: Vec::new(),
            keys: Vec::new(),
        }
    }

    /// Adds a row: `prompt` fixed at the start, the rest masked.
    pub fn push_row(&mut self, prompt: &[u32], key: u64) -> Result<(), TaskError> {
        if prompt.len() > self.len {
            return Err(TaskError::Invalid(format!(
                "prompt has {} tokens but the sequence holds only {}",
                prompt.len(),
                self.len
            )));
        }
        if let Some(p) = prompt.iter().position(|&t| t >= self.mask_id) {
            return Err(TaskError::Invalid(format!(
                "prompt token {} at position {p} is outside the vocabulary (mask id {})",
                prompt[p], self.mask_id
            )));
        }
        self.tokens.extend_from_slice(prompt);
        self.tokens
            .extend(std::iter::repeat_n(self.mask_id, self.len - prompt.len()));
        self.prompt_len.push(prompt.len());
        self.keys.push(key);
        Ok(())
    }

    /// A canvas holding the prompts of `examples`, each repeated `samples`
    /// times, with their [`Example::given`] answer tokens revealed; row keys
    /// are `key_of(example, sample)`.
    pub fn from_examples(
        examples: &[Example],
        samples: usize,
        len: usize,
        mask_id: u32,
        key_of: impl Fn(&Example, usize) -> u64,
    ) -> Result<Self, TaskError> {
        let mut canvas = Self::new(len, mask_id);
        for ex in examples {
            for s in 0..samples {
                canvas.push_row(&ex.prompt, key_of(ex, s))?;
                let r = canvas.rows() - 1;
                for &(i, token) in &ex.given {
                    let pos = ex.prompt.len() + i;
                    if pos >= len || token >= mask_id {
                        return Err(TaskError::Invalid(format!(
                            "example {}: given token {token} at answer position {i} is outside \
                             the canvas ({len} positions, mask id {mask_id})",
                            ex.id
                        )));
                    }
                    if canvas.is_masked(r, pos) {
                        canvas.reveal(r, pos, token);
                    }
                }
            }
        }
        Ok(canvas)
    }

    pub fn rows(&self) -> usize {
        self.prompt_len.len()
    }

    /// Positions per row.
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.rows() == 0
    }

    pub fn mask_id(&self) -> u32 {
        self.mask_id
    }

    pub fn row(&self, r: usize) -> &[u32] {
        &self.tokens[r * self.len..(r + 1) * self.len]
    }

    pub fn key(&self, r: usize) -> u64 {
        self.keys[r]
    }

    pub fn prompt_len(&self, r: usize) -> usize {
        self.prompt_len[r]
    }

    /// The tokens after the prompt (masks included while generating).
    pub fn answer(&self, r: usize) -> &[u32] {
        &self.row(r)[self.prompt_len[r]..]
    }

    pub fn is_masked(&self, r: usize, pos: usize) -> bool {
        self.row(r)[pos] == self.mask_id
    }

    pub fn masked_positions(&self, r: usize) -> Vec<usize> {
        let mask = self.mask_id;
        self.row(r)
            .iter()
            .enumerate()
            .filter(|(_, t)| **t == mask)
            .map(|(i, _)| i)
            .collect()
    }

    pub fn n_masked(&self, r: usize) -> usize {
        self.row(r).iter().filter(|&&t| t == self.mask_id).count()
    }

    pub fn is_complete(&self) -> bool {
        !self.tokens.contains(&self.mask_id)
    }

    /// Reveals `token` at a masked position. Panics on a revealed position or
    /// a mask token: both are sampler bugs, not user input.
    pub fn reveal(&mut self, r: usize, pos: usize, token: u32) {
        assert!(
            token < self.mask_id,
            "revealing the mask token at row {r} position {pos}"
        );
        let slot = &mut self.tokens[r * self.len + pos];
        assert_eq!(
            *slot, self.mask_id,
            "row {r} position {pos} is already revealed"
        );
        *slot = token;
    }

    /// All tokens, row-major, as the model's integer input.
    pub fn tokens(&self) -> &[u32] {
        &self.tokens
    }

    /// The tokens of the given rows with their prompts replaced by `[MASK]`:
    /// the input of the unconditional branch of classifier-free guidance.
    pub fn tokens_with_prompt_masked(&self, rows: &[usize]) -> Vec<u32> {
        let mut out = Vec::with_capacity(rows.len() * self.len);
        for &r in rows {
            out.extend(prompt_masked(self.row(r), self.prompt_len[r], self.mask_id));
        }
        out
    }

    /// A canvas holding rows `range` of this one (tokens, prompts, keys).
    pub fn sub_canvas(&self, range: std::ops::Range<usize>) -> Self {
        Self {
            len: self.len,
            mask_id: self.mask_id,
            tokens: self.tokens[range.start * self.len..range.end * self.len].to_vec(),
            prompt_len: self.prompt_len[range.clone()].to_vec(),
            keys: self.keys[range].to_vec(),
        }
    }

    /// Writes the rows of `part` back over rows `start..` (the inverse of
    /// [`Canvas::sub_canvas`]); the parts must match in length and keys.
    pub fn write_rows(&mut self, start: usize, part: &Canvas) {
        assert!(
            part.len == self.len && self.keys[start..start + part.rows()] == part.keys[..],
            "the part does not come from these rows"
        );
        self.tokens[start * self.len..(start + part.rows()) * self.len]
            .copy_from_slice(&part.tokens);
    }

    /// The tokens of the given rows.
    pub fn tokens_of_rows(&self, rows: &[usize]) -> Vec<u32> {
        let mut out = Vec::with_capacity(rows.len() * self.len);
        for &r in rows {
            out.extend_from_slice(self.row(r));
        }
        out
    }
}

/// `row` with its first `prompt_len` tokens replaced by `mask_id`: the input
/// of the unconditional branch of SMDM's classifier-free guidance (the same
/// network, the prompt hidden).
pub fn prompt_masked(
    row: &[u32],
    prompt_len: usize,
    mask_id: u32,
) -> impl Iterator<Item = u32> + '_ {
    row.iter()
        .enumerate()
        .map(move |(i, &t)| if i < prompt_len { mask_id } else { t })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_start_masked_after_the_prompt_and_reveal_once() {
        let mut c = Canvas::new(5, 9);
        c.push_row(&[1, 2], 11).unwrap();
        c.push_row(&[], 12).unwrap();
        assert_eq!(c.row(0), &[1, 2, 9, 9, 9]);
        assert_eq!(c.masked_positions(0), vec![2, 3, 4]);
        assert_eq!(c.n_masked(1), 5);
        c.reveal(0, 3, 4);
        assert_eq!(c.answer(0), &[9, 4, 9]);
        assert_eq!(c.tokens_with_prompt_masked(&[0]), vec![9, 9, 9, 4, 9]);
        assert!(!c.is_complete());
        assert!(c.push_row(&[1; 6], 0).is_err());
        assert!(c.push_row(&[9], 0).is_err());
    }

    #[test]
    fn given_answer_tokens_start_revealed() {
        let ex = |given: Vec<(usize, u32)>| Example {
            id: 7,
            prompt: vec![1, 0, 2],
            answer: vec![1, 3, 2],
            metadata: serde_json::Value::Null,
            given,
        };
        let c =
            Canvas::from_examples(&[ex(vec![(0, 1), (2, 2)])], 2, 6, 9, |_, s| s as u64).unwrap();
        assert_eq!(c.row(1), &[1, 0, 2, 1, 9, 2]);
        assert_eq!(c.n_masked(0), 1);
        let err = Canvas::from_examples(&[ex(vec![(3, 1)])], 1, 6, 9, |_, _| 0).unwrap_err();
        assert!(err.to_string().contains("answer position 3"), "{err}");
        let err = Canvas::from_examples(&[ex(vec![(0, 9)])], 1, 6, 9, |_, _| 0).unwrap_err();
        assert!(err.to_string().contains("given token 9"), "{err}");
    }

    #[test]
    #[should_panic(expected = "already revealed")]
    fn revealing_twice_is_a_bug() {
        let mut c = Canvas::new(2, 3);
        c.push_row(&[], 0).unwrap();
        c.reveal(0, 0, 1);
        c.reveal(0, 0, 2);
    }
}
