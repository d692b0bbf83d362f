//! Star-graph verifiers, on the answer's words (node ids and `<pad>`).
//!
//! - [`ExactMatch`]: 1 when the answer is exactly the reference path's
//!   edges followed only by padding (ILM's sequence exact match).
//! - [`PrefixCredit`]: the share of the reference's tokens matched before
//!   the first mistake (the longest correct prefix from the source): a dense
//!   reward for learning where to turn at the centre.

use crate::item::RewardItem;
use crate::verifier::Verifier;

const PAD: &str = "<pad>";

fn reference(item: &RewardItem) -> Option<Vec<&str>> {
    Some(
        item.metadata
            .get("answer")?
            .as_str()?
            .split_whitespace()
            .collect(),
    )
}

pub struct ExactMatch;

impl Verifier for ExactMatch {
    fn name(&self) -> &'static str {
        "exact_match"
    }

    fn score(&self, item: &RewardItem) -> Option<f64> {
        let want = reference(item)?;
        let got: Vec<&str> = item.completion.split_whitespace().collect();
        let ok = got.len() >= want.len()
            && got[..want.len()] == want[..]
            && got[want.len()..].iter().all(|w| *w == PAD);
        Some(if ok { 1.0 } else { 0.0 })
    }
}

pub struct PrefixCredit;

impl Verifier for PrefixCredit {
    fn name(&self) -> &'static str {
        "prefix_credit"
    }

    fn score(&self, item: &RewardItem) -> Option<f64> {
        let want = reference(item)?;
        if want.is_empty() {
            return None;
        }
        let matched = item
            .completion
            .split_whitespace()
            .zip(&want)
            .take_while(|(g, w)| g == *w)
            .count();
        Some(matched as f64 / want.len() as f64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn item(completion: &str) -> RewardItem {
        RewardItem {
            id: "0/0".into(),
            prompt: String::new(),
            completion: completion.into(),
            prompt_tokens: vec![],
            completion_tokens: vec![],
            metadata: json!({"answer": "7 12 12 0 0 15 15 3"}),
        }
    }

    #[test]
    fn exact_match_and_prefix_credit() {
        assert_eq!(
            ExactMatch.score(&item("7 12 12 0 0 15 15 3 <pad> <pad>")),
            Some(1.0)
        );
        assert_eq!(
            ExactMatch.score(&item("7 12 12 0 0 15 15 3 3 <pad>")),
            Some(0.0)
        );
        assert_eq!(ExactMatch.score(&item("7 12 12 0 0 15 15")), Some(0.0));
        assert_eq!(
            PrefixCredit.score(&item("7 12 12 0 0 15 15 3 <pad> <pad>")),
            Some(1.0)
        );
        assert_eq!(
            PrefixCredit.score(&item("7 12 12 5 0 15 15 3 <pad> <pad>")),
            Some(3.0 / 8.0)
        );
        assert_eq!(PrefixCredit.score(&item("<pad>")), Some(0.0));
    }
}
