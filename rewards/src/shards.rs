//! The scores of a batch that was scored in shards.
//!
//! A distributed Co-GRPO run scores each rank's rollouts on that rank (its
//! own plugin processes, its own share of the judge's load) and then puts
//! the shards together, in rank order, so that every rank sees the batch a
//! single process would have scored.

use std::collections::BTreeMap;

use crate::compose::ScoredBatch;

impl ScoredBatch {
    /// The shards as one batch, items in the shards' order. `None` for no
    /// shard. Sub-scores missing from a shard are `None` for its items;
    /// failure counts of the same reward add up (the last shard's last
    /// failure is kept).
    pub fn concat(shards: Vec<ScoredBatch>) -> Option<ScoredBatch> {
        let mut shards = shards.into_iter();
        let mut out = shards.next()?;
        for s in shards {
            let before = out.len();
            for (o, so) in out.outcomes.iter_mut().zip(s.outcomes) {
                o.extend(so);
            }
            for (p, sp) in out.parts.iter_mut().zip(s.parts) {
                let mut sp: BTreeMap<String, Vec<Option<f32>>> = sp;
                for (name, values) in p.iter_mut() {
                    match sp.remove(name) {
                        Some(v) => values.extend(v),
                        None => values.extend(std::iter::repeat_n(None, s.penalty.len())),
                    }
                }
                for (name, v) in sp {
                    let mut values = vec![None; before];
                    values.extend(v);
                    p.insert(name, values);
                }
            }
            out.penalty.extend(s.penalty);
            for (name, failed, last) in s.failures {
                match out.failures.iter_mut().find(|(n, ..)| *n == name) {
                    Some(f) => {
                        f.1 += failed;
                        f.2 = last;
                    }
                    None => out.failures.push((name, failed, last)),
                }
            }
        }
        Some(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::compose::Outcome;
    use crate::config::{Aggregation, CostMode};
    use crate::failure::{FailureKind, RewardFailure};

    fn shard(scores: &[f32], part: Option<(&str, f32)>, failed: usize) -> ScoredBatch {
        let n = scores.len();
        let mut parts = BTreeMap::new();
        if let Some((name, v)) = part {
            parts.insert(name.to_string(), vec![Some(v); n]);
        }
        ScoredBatch {
            names: vec!["r".into()],
            weights: vec![1.0],
            outcomes: vec![scores.iter().map(|&s| Outcome::Score(s)).collect()],
            parts: vec![parts],
            penalty: vec![0.0; n],
            aggregation: Aggregation::SumThenNormalize,
            cost_mode: CostMode::Additive,
            failures: (failed > 0)
                .then(|| {
                    let f = RewardFailure::new(FailureKind::Timeout, format!("{failed}"));
                    ("r".to_string(), failed, f)
                })
                .into_iter()
                .collect(),
        }
    }

    #[test]
    fn shards_concatenate_in_order_with_missing_parts_and_summed_failures() {
        let all = ScoredBatch::concat(vec![
            shard(&[1.0, 2.0], Some(("a", 0.5)), 1),
            shard(&[3.0], None, 0),
            shard(&[4.0, 5.0], Some(("b", 0.25)), 2),
        ])
        .expect("three shards");
        assert_eq!(all.len(), 5);
        let scores: Vec<Option<f32>> = (0..5).map(|i| all.total(i)).collect();
        assert_eq!(scores, [1.0, 2.0, 3.0, 4.0, 5.0].map(Some));
        let parts = &all.parts[0];
        assert_eq!(parts["a"], vec![Some(0.5), Some(0.5), None, None, None]);
        assert_eq!(parts["b"], vec![None, None, None, Some(0.25), Some(0.25)]);
        assert_eq!(all.failures.len(), 1);
        assert_eq!(all.failures[0].1, 3);
        assert_eq!(all.failures[0].2.message, "2");
        assert!(ScoredBatch::concat(Vec::new()).is_none());
    }
}
