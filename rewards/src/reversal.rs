//! Reversal-curse verifier (SMDM's metric): the lower-cased, stripped
//! reference occurs in the lower-cased, stripped completion. One verifier
//! for all questions, and one per question kind and direction, so that
//! `eval` reports same-direction and reverse-direction accuracy apart.

use crate::item::RewardItem;
use crate::verifier::Verifier;

fn contains_reference(item: &RewardItem) -> Option<f64> {
    let reference = item
        .metadata
        .get("reference")?
        .as_str()?
        .trim()
        .to_lowercase();
    let hit = item.completion.trim().to_lowercase().contains(&reference);
    Some(if hit { 1.0 } else { 0.0 })
}

/// Every question.
pub struct ContainsReference;

impl Verifier for ContainsReference {
    fn name(&self) -> &'static str {
        "contains_reference"
    }

    fn score(&self, item: &RewardItem) -> Option<f64> {
        contains_reference(item)
    }
}

/// Only the questions of one kind (`dtn` / `ntd`) and direction
/// (`same` / `reverse`); not applicable to the others.
pub struct Split {
    pub name: &'static str,
    pub question: &'static str,
    pub direction: &'static str,
}

pub const SPLITS: [Split; 4] = [
    Split {
        name: "dtn_same",
        question: "dtn",
        direction: "same",
    },
    Split {
        name: "dtn_reverse",
        question: "dtn",
        direction: "reverse",
    },
    Split {
        name: "ntd_same",
        question: "ntd",
        direction: "same",
    },
    Split {
        name: "ntd_reverse",
        question: "ntd",
        direction: "reverse",
    },
];

impl Verifier for Split {
    fn name(&self) -> &'static str {
        self.name
    }

    fn score(&self, item: &RewardItem) -> Option<f64> {
        let m = &item.metadata;
        let mine = m.get("question")?.as_str()? == self.question
            && m.get("direction")?.as_str()? == self.direction;
        if mine { contains_reference(item) } else { None }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn case_insensitive_containment_per_split() {
        let item = RewardItem {
            id: "0/0".into(),
            prompt: String::new(),
            completion: " the pianist URIAH Hawthorne\n\n".into(),
            prompt_tokens: vec![],
            completion_tokens: vec![],
            metadata: json!({"reference": "Uriah Hawthorne", "question": "dtn", "direction": "reverse"}),
        };
        assert_eq!(ContainsReference.score(&item), Some(1.0));
        assert_eq!(SPLITS[1].score(&item), Some(1.0));
        assert_eq!(SPLITS[0].score(&item), None);
        let mut miss = item.clone();
        miss.completion = "Uriah Hawthorn".into();
        assert_eq!(SPLITS[1].score(&miss), Some(0.0));
    }
}
