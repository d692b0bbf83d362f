use super::*;
use crate::reward::BoxFuture;

/// A reward that returns fixed scores.
struct Fixed(&'static str, Vec<Option<f32>>);
impl Reward for Fixed {
    fn name(&self) -> &str {
        self.0
    }
    fn score<'a>(
        &'a self,
        _: &'a [RewardItem],
    ) -> BoxFuture<'a, Result<BatchScores, RewardFailure>> {
        Box::pin(async move { Ok(BatchScores::new(self.1.clone())) })
    }
}

fn items(n: usize) -> Vec<RewardItem> {
    (0..n)
        .map(|i| RewardItem {
            id: i.to_string(),
            prompt: String::new(),
            completion: String::new(),
            prompt_tokens: vec![],
            completion_tokens: vec![],
            metadata: serde_json::Value::Null,
        })
        .collect()
}

fn set(aggregation: Aggregation, cost: CostConfig, terms: Vec<(Fixed, f64)>) -> RewardSet {
    let mut s = RewardSet::new(aggregation, cost, 1.0);
    for (r, w) in terms {
        s.push(Box::new(r), w, None);
    }
    s
}

fn close(a: &[Option<f32>], b: &[Option<f32>]) -> bool {
    a.len() == b.len()
        && a.iter().zip(b).all(|(x, y)| match (x, y) {
            (Some(x), Some(y)) => (x - y).abs() < 1e-3,
            (None, None) => true,
            _ => false,
        })
}

#[test]
fn the_two_aggregation_orders_differ_as_documented() {
    // Reward a in {0, 1}, reward b tiny in scale; two groups of two.
    let a = vec![Some(0.0), Some(1.0), Some(1.0), Some(1.0)];
    let b = vec![Some(0.02), Some(0.01), Some(0.0), Some(0.01)];
    let costs = vec![RolloutCost::default(); 4];
    let sum = set(
        Aggregation::SumThenNormalize,
        CostConfig::default(),
        vec![(Fixed("a", a.clone()), 1.0), (Fixed("b", b.clone()), 1.0)],
    )
    .score(&items(4), &costs)
    .unwrap();
    // Group 1 totals (0.02, 1.01): advantages -1, 1. Group 2 (1.0, 1.01):
    // b's 0.01 difference alone is blown up to about -1, 1 (std 0.005
    // against the 1e-4 guard: 0.005 / 0.0051 = 0.980).
    assert!(
        close(
            &sum.advantages(2),
            &[Some(-1.0), Some(1.0), Some(-0.9804), Some(0.9804)]
        ),
        "{:?}",
        sum.advantages(2)
    );
    let per = set(
        Aggregation::NormalizeThenSum,
        CostConfig::default(),
        vec![(Fixed("a", a), 1.0), (Fixed("b", b), 1.0)],
    )
    .score(&items(4), &costs)
    .unwrap();
    // Group 1: a gives (-1, 1), b gives (0.98, -0.98): they nearly
    // cancel; the small-scale reward now weighs as much as the large one.
    assert!(
        close(
            &per.advantages(2),
            &[Some(-0.0194), Some(0.0194), Some(-0.9804), Some(0.9804)]
        ),
        "{:?}",
        per.advantages(2)
    );
}

#[test]
fn centred_advantages_keep_the_reward_scale() {
    // One group of four: rewards 0, 1, 1, 2 (mean 1, population std 0.7071).
    let a = vec![Some(0.0), Some(1.0), Some(1.0), Some(2.0)];
    let s = set(
        Aggregation::SumThenNormalize,
        CostConfig::default(),
        vec![(Fixed("a", a), 0.5)],
    )
    .score(&items(4), &[RolloutCost::default(); 4])
    .unwrap();
    // Weighted totals 0, 0.5, 0.5, 1: centred -0.5, 0, 0, 0.5.
    assert!(close(
        &s.advantages_scaled(4, false),
        &[Some(-0.5), Some(0.0), Some(0.0), Some(0.5)]
    ));
    // Divided by std 0.3536 (+1e-4): -1.4138, 0, 0, 1.4138.
    assert!(close(
        &s.advantages_scaled(4, true),
        &[Some(-1.4138), Some(0.0), Some(0.0), Some(1.4138)]
    ));
}

#[test]
fn not_applicable_adds_nothing_and_a_group_of_one_valid_item_gets_zero() {
    let a = vec![Some(1.0), None, Some(0.0), None];
    let s = set(
        Aggregation::SumThenNormalize,
        CostConfig::default(),
        vec![(Fixed("a", a), 2.0)],
    )
    .score(&items(4), &[RolloutCost::default(); 4])
    .unwrap();
    assert_eq!(s.total(0), Some(2.0));
    assert_eq!(s.total(1), None);
    assert!(close(&s.advantages(2), &[Some(0.0), None, Some(0.0), None]));
    assert!(close(
        &s.advantages(4),
        &[Some(1.0), None, Some(-1.0), None]
    ));
}

#[test]
fn costs_are_additive_or_gate_correct_answers_only() {
    let a = vec![Some(1.0), Some(1.0), Some(0.0), Some(0.0)];
    let costs: Vec<RolloutCost> = [4.0, 16.0, 4.0, 16.0]
        .iter()
        .map(|&nfe| RolloutCost {
            nfe,
            wall_s: 0.0,
            answer_len: 16,
        })
        .collect();
    let cost = |mode| CostConfig {
        nfe: 0.5,
        wall_s: 0.0,
        mode,
    };
    let add = set(
        Aggregation::SumThenNormalize,
        cost(CostMode::Additive),
        vec![(Fixed("a", a.clone()), 1.0)],
    )
    .score(&items(4), &costs)
    .unwrap();
    let totals: Vec<Option<f32>> = (0..4).map(|i| add.total(i)).collect();
    assert!(
        close(&totals, &[Some(0.875), Some(0.5), Some(-0.125), Some(-0.5)]),
        "{totals:?}"
    );
    let gate = set(
        Aggregation::SumThenNormalize,
        cost(CostMode::Gate),
        vec![(Fixed("a", a), 1.0)],
    )
    .score(&items(4), &costs)
    .unwrap();
    let totals: Vec<Option<f32>> = (0..4).map(|i| gate.total(i)).collect();
    // Wrong answers get 0 however fast they were.
    assert!(
        close(&totals, &[Some(0.875), Some(0.5), Some(0.0), Some(0.0)]),
        "{totals:?}"
    );
    let stats: BTreeMap<String, f64> = gate.stats().into_iter().collect();
    assert!(
        (stats["reward/a/mean"] - 0.5).abs() < 1e-9 && (stats["reward/a/std"] - 0.5).abs() < 1e-9
    );
}

/// Rewards of one batch run concurrently: two rewards that each wait
/// for the other at a barrier finish only if they overlap.
#[test]
fn rewards_of_a_batch_overlap() {
    use std::sync::Arc;
    use tokio::sync::Barrier;
    struct Meet(&'static str, Arc<Barrier>);
    impl Reward for Meet {
        fn name(&self) -> &str {
            self.0
        }
        fn score<'a>(
            &'a self,
            b: &'a [RewardItem],
        ) -> BoxFuture<'a, Result<BatchScores, RewardFailure>> {
            Box::pin(async move {
                self.1.wait().await;
                Ok(BatchScores::new(vec![Some(1.0); b.len()]))
            })
        }
    }
    let barrier = Arc::new(Barrier::new(2));
    let mut s = RewardSet::new(Aggregation::SumThenNormalize, CostConfig::default(), 0.5);
    // Without overlap the first reward would wait forever: the deadline
    // turns that into a timeout failure, which the assertion catches.
    s.push(
        Box::new(Meet("a", barrier.clone())),
        1.0,
        Some(Duration::from_secs(10)),
    );
    s.push(
        Box::new(Meet("b", barrier)),
        1.0,
        Some(Duration::from_secs(10)),
    );
    let scored = s.score(&items(2), &[RolloutCost::default(); 2]).unwrap();
    assert_eq!(scored.total(0), Some(2.0));
}
