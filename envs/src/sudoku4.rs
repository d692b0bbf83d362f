//! 4x4 Sudoku (d1's benchmark).
//!
//! Sequence layout: 16 prompt cells (the puzzle, `0` = blank) followed by 16
//! answer cells (the whole solved grid, givens included). The test split is
//! d1's 500 puzzles; training puzzles are generated from the 288 valid grids
//! by blanking 8 cells (as in the test set) and never equal a test puzzle;
//! the validation split is 500 more from a stream of their own.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use rand::Rng;
use serde_json::json;

use crate::error::TaskError;
use crate::seeding::{purpose, stream};
use crate::task::{Example, Layout, Task};
use crate::vocab::Vocab;

/// Cells per grid.
pub const CELLS: usize = 16;
/// Blank cells in every generated puzzle (the test set has exactly 8).
pub const BLANKS: usize = 8;
/// The test file, relative to the data directory.
pub const TEST_FILE: &str = "sudoku4/4x4_test_sudoku.csv";

/// A grid, row by row; `0` marks a blank cell.
pub type Grid = [u8; CELLS];

/// The 12 units (4 rows, 4 columns, 4 boxes) whose cells must differ.
pub const UNITS: [[usize; 4]; 12] = [
    [0, 1, 2, 3],
    [4, 5, 6, 7],
    [8, 9, 10, 11],
    [12, 13, 14, 15],
    [0, 4, 8, 12],
    [1, 5, 9, 13],
    [2, 6, 10, 14],
    [3, 7, 11, 15],
    [0, 1, 4, 5],
    [2, 3, 6, 7],
    [8, 9, 12, 13],
    [10, 11, 14, 15],
];

/// True when every cell holds 1..=4 and no unit repeats a digit.
pub fn is_valid_grid(grid: &Grid) -> bool {
    grid.iter().all(|&d| (1..=4).contains(&d))
        && UNITS.iter().all(|u| {
            let mut seen = 0u8;
            u.iter().all(|&c| {
                let bit = 1 << grid[c];
                let fresh = seen & bit == 0;
                seen |= bit;
                fresh
            })
        })
}

/// True when `grid` keeps every given digit of `puzzle`.
pub fn keeps_givens(puzzle: &Grid, grid: &Grid) -> bool {
    puzzle.iter().zip(grid).all(|(&p, &g)| p == 0 || p == g)
}

/// All 288 valid 4x4 grids, in lexicographic order.
pub fn valid_grids() -> Vec<Grid> {
    fn fill(grid: &mut Grid, cell: usize, out: &mut Vec<Grid>) {
        if cell == CELLS {
            out.push(*grid);
            return;
        }
        for d in 1..=4 {
            let clash = UNITS
                .iter()
                .filter(|u| u.contains(&cell))
                .any(|u| u.iter().any(|&c| c < cell && grid[c] == d));
            if !clash {
                grid[cell] = d;
                fill(grid, cell + 1, out);
            }
        }
        grid[cell] = 0;
    }
    let mut out = Vec::with_capacity(288);
    fill(&mut [0; CELLS], 0, &mut out);
    out
}

/// Parses 16 digits `0..=4` into a grid.
pub fn parse_grid(text: &str) -> Result<Grid, String> {
    let bytes = text.as_bytes();
    if bytes.len() != CELLS {
        return Err(format!(
            "expected 16 digits, found {:?} ({} characters)",
            text,
            bytes.len()
        ));
    }
    let mut grid = [0u8; CELLS];
    for (i, &b) in bytes.iter().enumerate() {
        if !(b'0'..=b'4').contains(&b) {
            return Err(format!(
                "{:?}: character {} is not a digit 0-4",
                text,
                i + 1
            ));
        }
        grid[i] = b - b'0';
    }
    Ok(grid)
}

pub fn grid_text(grid: &Grid) -> String {
    grid.iter().map(|d| char::from(b'0' + d)).collect()
}

/// Reads an answer made of vocabulary ids `0..=4` (the task's vocabulary is
/// the digits, so ids are digit values); anything else makes it no grid.
pub fn grid_from_tokens(tokens: &[u32]) -> Option<Grid> {
    if tokens.len() != CELLS {
        return None;
    }
    let mut grid = [0u8; CELLS];
    for (g, &t) in grid.iter_mut().zip(tokens) {
        *g = u8::try_from(t).ok().filter(|d| *d <= 4)?;
    }
    Some(grid)
}

/// Generated puzzles in the validation split.
pub const VALIDATION_PUZZLES: u64 = 500;
/// Separates the validation generator's stream from the training one.
const VALIDATION_STREAM: u64 = 0x7661_6c69_6400;

pub struct Sudoku4 {
    vocab: Vocab,
    grids: Vec<Grid>,
    test: Vec<Example>,
    test_puzzles: HashSet<Grid>,
    validation: Vec<Example>,
    data_seed: u64,
    prefill_givens: bool,
}

impl Sudoku4 {
    /// Loads the test split from `data_dir/sudoku4/4x4_test_sudoku.csv`;
    /// `data_seed` fixes the training-puzzle generator.
    pub fn load(data_dir: &Path, data_seed: u64) -> Result<Self, TaskError> {
        let path = data_dir.join(TEST_FILE);
        let text = crate::files::read_regular_to_string(&path).map_err(|source| TaskError::Io {
            path: path.clone(),
            source,
        })?;
        let test = parse_test_csv(&text, &path)?;
        let test_puzzles = test
            .iter()
            .map(|ex| grid_from_tokens(&ex.prompt).expect("parsed puzzles are grids"))
            .collect();
        let mut task = Self {
            vocab: Vocab::chars("01234".chars())?,
            grids: valid_grids(),
            test,
            test_puzzles,
            validation: Vec::new(),
            data_seed,
            prefill_givens: false,
        };
        task.validation = (0..VALIDATION_PUZZLES)
            .map(|i| task.generate(&[VALIDATION_STREAM, data_seed, i], i))
            .collect();
        Ok(task)
    }

    /// With `on`, every example's givens are pre-filled on the canvas
    /// ([`Example::given`]): the answer copies them, so a schedule's reveal
    /// counts should not be spent on them (`task.prefill_givens`).
    pub fn with_prefilled_givens(mut self, on: bool) -> Self {
        self.prefill_givens = on;
        for ex in self.test.iter_mut().chain(self.validation.iter_mut()) {
            ex.given = prefilled(on, &ex.prompt);
        }
        self
    }

    /// A generated puzzle (never a test puzzle) from the stream `key`.
    fn generate(&self, key: &[u64], id: u64) -> Example {
        let mut parts = vec![purpose::TASK_DATA];
        parts.extend_from_slice(key);
        let mut rng = stream(&parts);
        loop {
            let solution = self.grids[rng.random_range(0..self.grids.len())];
            let mut cells: [usize; CELLS] = std::array::from_fn(|i| i);
            // Partial Fisher-Yates: the first BLANKS cells are a uniform subset.
            for i in 0..BLANKS {
                let j = rng.random_range(i..CELLS);
                cells.swap(i, j);
            }
            let mut puzzle = solution;
            for &c in &cells[..BLANKS] {
                puzzle[c] = 0;
            }
            if !self.test_puzzles.contains(&puzzle) {
                let mut ex = Self::example(id, &puzzle, &solution);
                ex.given = prefilled(self.prefill_givens, &ex.prompt);
                return ex;
            }
        }
    }

    fn example(id: u64, puzzle: &Grid, solution: &Grid) -> Example {
        Example {
            id,
            prompt: puzzle.iter().map(|&d| u32::from(d)).collect(),
            answer: solution.iter().map(|&d| u32::from(d)).collect(),
            metadata: json!({"puzzle": grid_text(puzzle), "solution": grid_text(solution)}),
            given: Vec::new(),
        }
    }
}

/// `(cell, digit)` of every given of a puzzle (blank cells are 0) when
/// givens are pre-filled (`on`), else none.
fn prefilled(on: bool, puzzle: &[u32]) -> Vec<(usize, u32)> {
    if !on {
        return Vec::new();
    }
    puzzle
        .iter()
        .enumerate()
        .filter(|&(_, &d)| d != 0)
        .map(|(i, &d)| (i, d))
        .collect()
}

fn parse_test_csv(text: &str, path: &Path) -> Result<Vec<Example>, TaskError> {
    let err = |line: usize, message: String| TaskError::Data {
        path: PathBuf::from(path),
        line,
        message,
    };
    let mut lines = text.lines().enumerate();
    match lines.next() {
        Some((_, "Puzzle,Solution")) => {}
        other => {
            return Err(err(
                1,
                format!(
                    "expected the header `Puzzle,Solution`, found {:?}",
                    other.map(|(_, l)| l).unwrap_or("")
                ),
            ));
        }
    }
    let mut out = Vec::new();
    for (i, line) in lines {
        let n = i + 1;
        if line.trim().is_empty() {
            continue;
        }
        let (p, s) = line
            .split_once(',')
            .ok_or_else(|| err(n, format!("expected `puzzle,solution`, found {line:?}")))?;
        let puzzle = parse_grid(p.trim()).map_err(|m| err(n, format!("puzzle: {m}")))?;
        let solution = parse_grid(s.trim()).map_err(|m| err(n, format!("solution: {m}")))?;
        if !is_valid_grid(&solution) {
            return Err(err(n, format!("solution {} is not a valid grid", s.trim())));
        }
        if !keeps_givens(&puzzle, &solution) {
            return Err(err(n, "solution contradicts the puzzle's givens".into()));
        }
        out.push(Sudoku4::example(n as u64, &puzzle, &solution));
    }
    if out.is_empty() {
        return Err(err(1, "no puzzles".into()));
    }
    Ok(out)
}

impl Task for Sudoku4 {
    fn name(&self) -> &str {
        "sudoku4"
    }

    fn vocab(&self) -> &Vocab {
        &self.vocab
    }

    fn layout(&self) -> Layout {
        Layout {
            prompt_len: CELLS,
            answer_len: CELLS,
        }
    }

    fn train_example(&self, index: u64) -> Example {
        self.generate(&[self.data_seed, index], index)
    }

    fn answer_grid(&self) -> Option<[usize; 2]> {
        Some([4, 4])
    }

    fn test_examples(&self) -> &[Example] {
        &self.test
    }

    /// 500 generated puzzles from their own stream: never test puzzles; a
    /// few may also be drawn in training (the generator's space holds 3.7M
    /// puzzles), which tuning a fixed schedule on them does not exploit.
    fn validation_examples(&self) -> &[Example] {
        &self.validation
    }

    fn encode_user_prompt(&self, text: &str) -> Result<Vec<u32>, TaskError> {
        let grid = parse_grid(text.trim()).map_err(TaskError::Invalid)?;
        Ok(grid.iter().map(|&d| u32::from(d)).collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn data_dir() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../data")
    }

    #[test]
    fn validation_puzzles_are_stable_valid_and_never_test_puzzles() {
        let t = Sudoku4::load(&data_dir(), 0).unwrap();
        let v = t.validation_examples();
        assert_eq!(v.len(), VALIDATION_PUZZLES as usize);
        for e in v {
            let puzzle = grid_from_tokens(&e.prompt).unwrap();
            let solution = grid_from_tokens(&e.answer).unwrap();
            assert!(!t.test_puzzles.contains(&puzzle));
            assert!(is_valid_grid(&solution) && keeps_givens(&puzzle, &solution));
        }
        assert_eq!(
            Sudoku4::load(&data_dir(), 0).unwrap().validation_examples(),
            v
        );
        // Its own stream: not the training puzzles of the same indices.
        assert_ne!(v[0].prompt, t.train_example(0).prompt);
    }

    #[test]
    fn prefilled_givens_are_the_puzzles_digits_in_every_split() {
        let t = Sudoku4::load(&data_dir(), 0).unwrap();
        assert!(t.test_examples()[0].given.is_empty());
        let t = t.with_prefilled_givens(true);
        let train = t.train_example(3);
        let splits = [&t.test_examples()[0], &t.validation_examples()[0], &train];
        for e in splits {
            assert_eq!(e.given.len(), CELLS - BLANKS, "{e:?}");
            for &(i, d) in &e.given {
                assert!(d != 0 && e.prompt[i] == d && e.answer[i] == d, "{e:?}");
            }
        }
        assert!(
            t.with_prefilled_givens(false).test_examples()[0]
                .given
                .is_empty()
        );
    }

    #[test]
    fn there_are_288_valid_grids() {
        let grids = valid_grids();
        assert_eq!(grids.len(), 288);
        assert!(grids.iter().all(is_valid_grid));
        let unique: HashSet<_> = grids.iter().collect();
        assert_eq!(unique.len(), 288);
    }

    #[test]
    fn validity_checks_units() {
        let g = parse_grid("3142243142131324").unwrap();
        assert!(is_valid_grid(&g));
        let mut bad = g;
        bad.swap(0, 1); // row still fine, columns break
        assert!(!is_valid_grid(&bad));
        assert!(!is_valid_grid(&parse_grid("3102200002100320").unwrap()));
        assert!(keeps_givens(&parse_grid("3102200002100320").unwrap(), &g));
    }

    #[test]
    fn loads_d1_test_set() {
        let task = Sudoku4::load(&data_dir(), 0).unwrap();
        let test = task.test_examples();
        assert_eq!(test.len(), 500);
        assert_eq!(
            grid_text(&grid_from_tokens(&test[0].prompt).unwrap()),
            "3102200002100320"
        );
        assert!(
            test.iter()
                .all(|e| e.prompt.iter().filter(|&&t| t == 0).count() == BLANKS)
        );
    }

    #[test]
    fn training_puzzles_are_deterministic_valid_and_disjoint_from_test() {
        let task = Sudoku4::load(&data_dir(), 0).unwrap();
        let test: HashSet<Vec<u32>> = task
            .test_examples()
            .iter()
            .map(|e| e.prompt.clone())
            .collect();
        for i in 0..5000 {
            let ex = task.train_example(i);
            assert_eq!(ex, task.train_example(i));
            assert!(!test.contains(&ex.prompt));
            let puzzle = grid_from_tokens(&ex.prompt).unwrap();
            let solution = grid_from_tokens(&ex.answer).unwrap();
            assert!(is_valid_grid(&solution) && keeps_givens(&puzzle, &solution));
            assert_eq!(puzzle.iter().filter(|&&d| d == 0).count(), BLANKS);
        }
    }

    #[test]
    fn bad_csv_names_the_line() {
        let p = Path::new("x.csv");
        let e = parse_test_csv(
            "Puzzle,Solution\n3102200002100320,3142243142131324\n12,3\n",
            p,
        )
        .unwrap_err()
        .to_string();
        assert!(e.starts_with("x.csv:3:"), "{e}");
        let e = parse_test_csv("P,S\n", p).unwrap_err().to_string();
        assert!(e.contains("header"), "{e}");
        let e = parse_test_csv("Puzzle,Solution\n3102200002100320,1142243142131324\n", p)
            .unwrap_err()
            .to_string();
        assert!(e.contains("not a valid grid"), "{e}");
    }
}
