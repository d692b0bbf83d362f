//! Countdown verifiers (d1's scoring, on the expression: the completion,
//! or its last `<answer>` block).
//!
//! - [`CountdownReward`]: 1 when the expression uses exactly the given
//!   numbers and is within 1e-5 of the target, 0.1 when it parses but is
//!   wrong (other numbers, other value, division by zero), 0 when it does
//!   not parse.
//! - [`Solved`]: 1 for a correct expression, else 0 (the accuracy d1 reports).

use envs::countdown::parse_expression;

use crate::answer::answer_text;
use crate::item::RewardItem;
use crate::verifier::Verifier;

fn d1_score(item: &RewardItem) -> Option<f64> {
    let target = item.metadata.get("target")?.as_f64()?;
    let mut given: Vec<i128> = item
        .metadata
        .get("numbers")?
        .as_array()?
        .iter()
        .map(|n| n.as_i64().map(i128::from))
        .collect::<Option<_>>()?;
    given.sort_unstable();
    let Ok(parsed) = parse_expression(answer_text(&item.completion).trim()) else {
        return Some(0.0);
    };
    let mut used = parsed.numbers;
    used.sort_unstable();
    let right = used == given
        && parsed
            .value
            .is_some_and(|v| (v.as_f64() - target).abs() < 1e-5);
    Some(if right { 1.0 } else { 0.1 })
}

pub struct CountdownReward;

impl Verifier for CountdownReward {
    fn name(&self) -> &'static str {
        "countdown"
    }

    fn score(&self, item: &RewardItem) -> Option<f64> {
        d1_score(item)
    }
}

pub struct Solved;

impl Verifier for Solved {
    fn name(&self) -> &'static str {
        "solved"
    }

    fn score(&self, item: &RewardItem) -> Option<f64> {
        d1_score(item).map(|s| if s == 1.0 { 1.0 } else { 0.0 })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn item(completion: &str) -> RewardItem {
        RewardItem {
            id: "0/0".into(),
            prompt: "30,100,93=23".into(),
            completion: completion.into(),
            prompt_tokens: vec![],
            completion_tokens: vec![],
            metadata: json!({"numbers": [30, 100, 93], "target": 23}),
        }
    }

    #[test]
    fn scores_like_d1() {
        assert_eq!(CountdownReward.score(&item("93-(100-30)  ")), Some(1.0));
        assert_eq!(CountdownReward.score(&item("(93-100)+30")), Some(1.0)); // another correct expression
        assert_eq!(CountdownReward.score(&item("93-100-30")), Some(0.1)); // wrong value
        assert_eq!(CountdownReward.score(&item("93-(100-31)")), Some(0.1)); // wrong numbers
        assert_eq!(CountdownReward.score(&item("93-(100-30)-0")), Some(0.1)); // extra number
        assert_eq!(CountdownReward.score(&item("93/(30-30)")), Some(0.1));
        assert_eq!(CountdownReward.score(&item("93-(100")), Some(0.0));
        assert_eq!(CountdownReward.score(&item("")), Some(0.0));
        // d1's format, from a released model's completion.
        let tagged = "<reasoning>93-70=23</reasoning>\n<answer> 93-(100-30) </answer>";
        assert_eq!(CountdownReward.score(&item(tagged)), Some(1.0));
        assert_eq!(Solved.score(&item("30-(100-93)")), Some(1.0));
        assert_eq!(Solved.score(&item("93-100-30")), Some(0.0));
        let mut no_meta = item("1");
        no_meta.metadata = json!({});
        assert_eq!(Solved.score(&no_meta), None);
    }
}
