//! Sudoku verifiers.
//!
//! - [`Solved`]: 1 when the answer is a valid grid that keeps every given
//!   (any valid completion counts: 124 of d1's 500 puzzles have several).
//! - [`D1CellAccuracy`]: d1's score, the share of blank cells equal to the
//!   stored solution (a different valid completion loses credit).
//! - [`ValidCells`]: the share of blank cells that agree with *some* valid
//!   completion of the puzzle, given the other answers: a dense reward that
//!   does not depend on which solution was stored.
//!
//! All three read the completion's text ([`cells`]): a cogrpo-trained
//! model's 16 digits, or a released model's last `<answer>` block with
//! anything but digits dropped, as d1's reward reads it.

use envs::sudoku4::{CELLS, Grid, is_valid_grid, keeps_givens, parse_grid, valid_grids};
use std::sync::OnceLock;

use crate::answer::answer_text;
use crate::item::RewardItem;
use crate::verifier::Verifier;

fn puzzle_and_solution(item: &RewardItem) -> Option<(Grid, Grid)> {
    let p = parse_grid(item.metadata.get("puzzle")?.as_str()?).ok()?;
    let s = parse_grid(item.metadata.get("solution")?.as_str()?).ok()?;
    Some((p, s))
}

/// The answer's cells in order: each digit, or `None` for a still-masked
/// position (`_`); other characters (spaces, commas, newlines) are skipped.
pub fn cells(completion: &str) -> Vec<Option<u8>> {
    answer_text(completion)
        .chars()
        .filter_map(|c| match c {
            '_' => Some(None),
            c => c.to_digit(10).map(|d| Some(d as u8)),
        })
        .collect()
}

/// The completion as a grid: exactly 16 cells, each a digit in 0..=4.
fn grid(cells: &[Option<u8>]) -> Option<Grid> {
    if cells.len() != CELLS {
        return None;
    }
    let mut grid = [0u8; CELLS];
    for (g, c) in grid.iter_mut().zip(cells) {
        *g = c.filter(|d| *d <= 4)?;
    }
    Some(grid)
}

pub struct Solved;

impl Verifier for Solved {
    fn name(&self) -> &'static str {
        "solved"
    }

    fn score(&self, item: &RewardItem) -> Option<f64> {
        let (puzzle, _) = puzzle_and_solution(item)?;
        let ok = grid(&cells(&item.completion))
            .is_some_and(|g| is_valid_grid(&g) && keeps_givens(&puzzle, &g));
        Some(if ok { 1.0 } else { 0.0 })
    }
}

pub struct D1CellAccuracy;

impl Verifier for D1CellAccuracy {
    fn name(&self) -> &'static str {
        "d1_cell_accuracy"
    }

    fn score(&self, item: &RewardItem) -> Option<f64> {
        let completion = cells(&item.completion);
        let (puzzle, solution) = puzzle_and_solution(item)?;
        let blanks: Vec<usize> = (0..16).filter(|&c| puzzle[c] == 0).collect();
        if blanks.is_empty() {
            return None;
        }
        let right = blanks
            .iter()
            .filter(|&&c| completion.get(c).is_some_and(|&t| t == Some(solution[c])))
            .count();
        Some(right as f64 / blanks.len() as f64)
    }
}

pub struct ValidCells;

impl Verifier for ValidCells {
    fn name(&self) -> &'static str {
        "valid_cells"
    }

    /// The largest share of blank cells that any valid completion of the
    /// puzzle agrees with.
    fn score(&self, item: &RewardItem) -> Option<f64> {
        let completion = cells(&item.completion);
        static GRIDS: OnceLock<Vec<Grid>> = OnceLock::new();
        let (puzzle, _) = puzzle_and_solution(item)?;
        let blanks: Vec<usize> = (0..16).filter(|&c| puzzle[c] == 0).collect();
        if blanks.is_empty() {
            return None;
        }
        let best = GRIDS
            .get_or_init(valid_grids)
            .iter()
            .filter(|g| keeps_givens(&puzzle, g))
            .map(|g| {
                blanks
                    .iter()
                    .filter(|&&c| completion.get(c).is_some_and(|&t| t == Some(g[c])))
                    .count()
            })
            .max()?;
        Some(best as f64 / blanks.len() as f64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    struct Ex(serde_json::Value);
    impl Ex {
        /// The score of `completion` in the native task's tokens (digits
        /// 0..=4, mask 5), decoded as the trainer decodes it.
        fn score(&self, v: &dyn Verifier, completion: &[u32]) -> Option<f64> {
            let vocab = envs::Vocab::chars("01234".chars()).unwrap();
            let example = envs::Example {
                id: 0,
                prompt: Vec::new(),
                answer: Vec::new(),
                metadata: self.0.clone(),
                given: Vec::new(),
            };
            v.score(&RewardItem::new(&example, 0, completion, &vocab))
        }

        /// The score of a released model's text completion.
        fn score_text(&self, v: &dyn Verifier, completion: &str) -> Option<f64> {
            let item = RewardItem {
                id: "0/0".into(),
                prompt: String::new(),
                completion: completion.into(),
                prompt_tokens: Vec::new(),
                completion_tokens: Vec::new(),
                metadata: self.0.clone(),
            };
            v.score(&item)
        }
    }

    fn example(puzzle: &str, solution: &str) -> Ex {
        Ex(json!({"puzzle": puzzle, "solution": solution}))
    }

    fn tokens(s: &str) -> Vec<u32> {
        s.bytes().map(|b| u32::from(b - b'0')).collect()
    }

    #[test]
    fn solved_accepts_any_valid_completion() {
        let ex = example("3102200002100320", "3142243142131324");
        assert_eq!(ex.score(&Solved, &tokens("3142243142131324")), Some(1.0));
        assert_eq!(ex.score(&Solved, &tokens("3142243142131323")), Some(0.0));
        assert_eq!(ex.score(&Solved, &tokens("314224314213132")), Some(0.0));
        // A valid grid that drops a given is not a solution.
        let other = "4213132431422431";
        assert!(is_valid_grid(&parse_grid(other).unwrap()));
        assert_eq!(ex.score(&Solved, &tokens(other)), Some(0.0));
    }

    #[test]
    fn d1_counts_blank_cells_equal_to_the_stored_solution() {
        let ex = example("3102200002100320", "3142243142131324");
        assert_eq!(
            ex.score(&D1CellAccuracy, &tokens("3142243142131324")),
            Some(1.0)
        );
        let mut wrong = tokens("3142243142131324");
        wrong[2] = 1; // a blank cell
        wrong[0] = 1; // a given cell: not scored
        assert_eq!(ex.score(&D1CellAccuracy, &wrong), Some(7.0 / 8.0));
    }

    #[test]
    fn valid_cells_credits_a_different_valid_solution_fully() {
        // A puzzle with two solutions: blank the cells where they differ.
        let grids = valid_grids();
        let (a, b) = grids
            .iter()
            .flat_map(|a| grids.iter().map(move |b| (a, b)))
            .find(|(a, b)| a.iter().zip(b.iter()).filter(|(x, y)| x != y).count() == 4)
            .unwrap();
        let puzzle: Grid = std::array::from_fn(|c| if a[c] == b[c] { a[c] } else { 0 });
        let text = |g: &Grid| g.iter().map(|d| char::from(b'0' + d)).collect::<String>();
        let ex = example(&text(&puzzle), &text(a));
        let b_tokens: Vec<u32> = b.iter().map(|&d| u32::from(d)).collect();
        assert_eq!(ex.score(&ValidCells, &b_tokens), Some(1.0));
        assert_eq!(ex.score(&D1CellAccuracy, &b_tokens), Some(0.0));
        assert_eq!(ex.score(&Solved, &b_tokens), Some(1.0));
    }

    #[test]
    fn a_masked_position_is_never_right() {
        let ex = example("3102200002100320", "3142243142131324");
        let mut masked = tokens("3142243142131324");
        masked[2] = 5;
        assert_eq!(ex.score(&Solved, &masked), Some(0.0));
        assert_eq!(ex.score(&D1CellAccuracy, &masked), Some(7.0 / 8.0));
    }

    #[test]
    fn text_answers_are_read_from_the_last_answer_block() {
        let ex = example("3102200002100320", "3142243142131324");
        let d1 = "<reasoning>rows first</reasoning>\n<answer>\n3142\n2431\n4213\n1324\n</answer>";
        assert_eq!(ex.score_text(&Solved, d1), Some(1.0));
        assert_eq!(ex.score_text(&D1CellAccuracy, d1), Some(1.0));
        assert_eq!(ex.score_text(&ValidCells, d1), Some(1.0));
        // Too few digits: not a grid, and the missing cells are wrong.
        let short = "<answer>3142 2431 4213 13</answer>";
        assert_eq!(ex.score_text(&Solved, short), Some(0.0));
        assert_eq!(ex.score_text(&D1CellAccuracy, short), Some(7.0 / 8.0));
        assert_eq!(ex.score_text(&Solved, "no answer"), Some(0.0));
    }

    #[test]
    fn missing_metadata_is_not_applicable() {
        let ex = Ex(json!({}));
        assert_eq!(ex.score(&Solved, &[1; 16]), None);
    }
}
