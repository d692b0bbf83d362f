//! The schedule factor learns in the right direction: a bandit-sized
//! problem whose reward prefers a known number of positions revealed at the
//! first step.
//!
//! Each iteration rolls out groups with a `per_step` policy over a reference
//! (4 masked positions, T = 2), scores every rollout with a reward plugged
//! into a `RewardSet` (`-|k/4 - target|`, k = positions revealed at step 0),
//! turns the scores into group advantages and the samples of the loss as the
//! trainer does, and takes an AdamW step of the clipped surrogate. After a
//! fixed number of iterations (fixed seed) the policy's mean must have moved
//! the right way for a target above and one below:
//! - the reveal ratio over first-hitting (the reference reveals 2, ratio
//!   0.5) moves toward the target;
//! - Fast-dLLM's threshold over confidence sampling (reference 0.22, near
//!   the untrained model's token probabilities of about 1/5, so that some
//!   positions pass it and some do not) moves down when more positions are
//!   rewarded and up when fewer are.
//!
//! And the entropy bonus (`cogrpo.entropy_schedule`) widens the policy
//! where the reward says nothing (every rollout scores alike): with it the
//! Gaussian's standard deviation grows, without it nothing is stepped.

use std::path::Path;

use burn::backend::{Autodiff, Flex};
use burn::module::AutodiffModule;
use cogrpo_config::{ExperimentConfig, load_str};
use cogrpo_grpo::factor::{Factor, Trainable, UpdateRun};
use cogrpo_grpo::loss::Clip;
use cogrpo_grpo::samples::build_samples;
use cogrpo_runtime::distributed::World;
use envs::Canvas;
use mdm::{Denoiser, DenoiserConfig};
use policy::learned::{Component, ScheduleBatch, SchedulePolicy};
use policy::{Act, Rollout};
use rewards::{
    Aggregation, BatchScores, BoxFuture, CostConfig, Reward, RewardFailure, RewardItem, RewardSet,
    RolloutCost,
};

type B = Autodiff<Flex>;

const ITERATIONS: usize = 25;
const PROMPTS: usize = 4;
const GROUP: usize = 8;

/// Prefers revealing `target` of the 4 masked positions at the first step.
struct PreferredRatio {
    target: f32,
}

impl Reward for PreferredRatio {
    fn name(&self) -> &str {
        "preferred_ratio"
    }

    fn score<'a>(
        &'a self,
        batch: &'a [RewardItem],
    ) -> BoxFuture<'a, Result<BatchScores, RewardFailure>> {
        Box::pin(async move {
            let scores = batch
                .iter()
                .map(|it| {
                    let k = it.metadata["revealed_first"].as_f64()? as f32;
                    Some(-(k / 4.0 - self.target).abs())
                })
                .collect();
            Ok(BatchScores::new(scores))
        })
    }
}

/// Scores every rollout alike: no advantage anywhere.
struct Indifferent;

impl Reward for Indifferent {
    fn name(&self) -> &str {
        "indifferent"
    }

    fn score<'a>(
        &'a self,
        batch: &'a [RewardItem],
    ) -> BoxFuture<'a, Result<BatchScores, RewardFailure>> {
        Box::pin(async move { Ok(BatchScores::new(vec![Some(0.5); batch.len()])) })
    }
}

/// A component learned over a reference (TOML inline table), and the
/// reference's value of it.
struct Bandit {
    component: Component,
    reference: &'static str,
    start: f64,
}

const RATIO: Bandit = Bandit {
    component: Component::Ratio,
    reference: r#"{ kind = "first_hitting" }"#,
    start: 0.5,
};

const THRESHOLD: Bandit = Bandit {
    component: Component::Threshold,
    reference: r#"{ kind = "confidence", temperature = 1.0, threshold = 0.22 }"#,
    start: 0.22,
};

fn config(bandit: &Bandit) -> ExperimentConfig {
    let data = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../data");
    let text = format!(
        r#"
[run]
name = "bandit"
[task]
kind = "sudoku4"
data_dir = "{}"
[model]
d_model = 16
n_layers = 1
n_heads = 2
d_ff = 32
[pretrain]
steps = 1
batch_size = 1
lr = 1e-3
[cogrpo]
iterations = {ITERATIONS}
prompts_per_iteration = {PROMPTS}
group_size = {GROUP}
steps = 2
arms = ["schedule"]
reference = {}
lr_schedule = 5e-2
[cogrpo.schedule]
kind = "per_step"
learn = ["{}"]
seed = 1
"#,
        data.display(),
        bandit.reference,
        bandit.component.name(),
    );
    load_str(&text, "bandit", &[]).expect("a valid config")
}

/// The policy's Gaussian over its one component at step 0: the mean
/// (unmapped) and the log standard deviation.
fn gaussian_at(policy: &SchedulePolicy<Flex>, record: &envs::StepRecord) -> (f64, f64) {
    let batch = ScheduleBatch::new(
        &[record],
        1,
        policy.table_steps(),
        false,
        &Default::default(),
    );
    let (mean, log_std) = policy.gaussian(&batch).expect("a Gaussian head");
    let first = |t: burn::tensor::Tensor<Flex, 2>| t.into_data().to_vec::<f32>().unwrap()[0] as f64;
    (first(mean), first(log_std))
}

/// The policy's mean value of its one component at step 0 (the
/// Gaussian's mean, mapped).
fn mean_value(
    policy: &SchedulePolicy<Flex>,
    record: &envs::StepRecord,
    component: Component,
) -> f64 {
    component.map(gaussian_at(policy, record).0)
}

/// Trains `bandit`'s component with a reward for revealing `target` of the
/// positions first; returns its mean before and after.
fn train_toward(bandit: &Bandit, target: f32) -> (f64, f64) {
    let (policy, record) = train(bandit, Box::new(PreferredRatio { target }), 0.0);
    let after = mean_value(&policy, &record, bandit.component);
    let name = bandit.component.name();
    eprintln!(
        "target {target}: mean {name} {} -> {after:.3} after {ITERATIONS} iterations",
        bandit.start
    );
    (bandit.start, after)
}

/// Trains `bandit`'s component for `ITERATIONS` on `reward` with an
/// entropy bonus of weight `entropy`: the trained policy and the first
/// recorded step (the state the policy is read at).
fn train(
    bandit: &Bandit,
    reward: Box<dyn Reward>,
    entropy: f64,
) -> (SchedulePolicy<Flex>, envs::StepRecord) {
    let cfg = config(bandit);
    let c = cfg.cogrpo.as_ref().unwrap();
    let dev = Default::default();
    let model: Denoiser<Flex> = DenoiserConfig::new(5, 16, 1, 2, 32, 6).init(3, &dev);
    let policy: SchedulePolicy<B> = c.schedule.init(c.steps, 4, &c.reference, &dev);
    // The arm's schedule factor: its own AdamW without weight decay.
    let mut phi = Factor::new(policy, (c.lr_schedule, 0.0, c.grad_clip), None);
    let world = World::single();
    let mut rewards = RewardSet::new(Aggregation::SumThenNormalize, CostConfig::default(), 0.5);
    rewards.push(reward, 1.0, None);
    let reference = c.reference.with_steps(c.steps);
    let clip = Clip {
        low: c.epsilon_low,
        high: c.epsilon_high,
    };
    let mut first = None;
    for it in 0..ITERATIONS {
        let inner = phi.module.valid();
        let mut canvas = Canvas::new(6, 5);
        for row in 0..PROMPTS * GROUP {
            canvas
                .push_row(&[1, (row / GROUP) as u32], (it * 1000 + row) as u64)
                .unwrap();
        }
        let rollout = Rollout {
            model: &model,
            policy: Some(&inner),
            reference: &reference,
            steps: c.steps,
            act: Act::Sample,
            temperature: None,
            seed: it as u64,
            device: dev,
        };
        let (trajectories, stats) = rollout.run(&mut canvas, true).unwrap();
        let items: Vec<RewardItem> = trajectories
            .iter()
            .enumerate()
            .map(|(i, t)| RewardItem {
                id: format!("{i}"),
                prompt: String::new(),
                completion: String::new(),
                prompt_tokens: Vec::new(),
                completion_tokens: t.answer().to_vec(),
                metadata: serde_json::json!({ "revealed_first": t.steps[0].revealed.len() }),
            })
            .collect();
        let costs = vec![RolloutCost::default(); items.len()];
        assert_eq!(stats.nfe.len(), items.len());
        let scored = rewards.score(&items, &costs).unwrap();
        let advantages = scored.advantages_scaled(GROUP, c.scale_advantages);
        let samples = build_samples(c, (&trajectories, &[]), &advantages, 0, it);
        let first_record = first.get_or_insert_with(|| trajectories[0].steps[0].clone());
        if it == 0 {
            let start = mean_value(&inner, first_record, bandit.component);
            assert!((start - bandit.start).abs() < 1e-3, "{start}");
        }
        let run = UpdateRun::<B> {
            clip,
            iteration: it,
            entropy_schedule: entropy,
            ..UpdateRun::single(&world, (1, 0), dev)
        };
        // Samples without advantage carry no gradient unless the entropy
        // bonus does: no step without either.
        let stepped = phi.update(&samples, &run).unwrap();
        if let Some(st) = &stepped {
            assert!(st.loss.is_finite());
        }
        let has_advantage = advantages.iter().any(|a| a.is_some_and(|v| v != 0.0));
        assert_eq!(stepped.is_some(), has_advantage || entropy > 0.0);
    }
    (phi.module.valid(), first.expect("a recorded step"))
}

#[test]
fn the_entropy_bonus_widens_the_policy_where_the_reward_is_silent() {
    let start = {
        let cfg = config(&RATIO);
        let c = cfg.cogrpo.as_ref().unwrap();
        let policy: SchedulePolicy<Flex> =
            c.schedule
                .init(c.steps, 4, &c.reference, &Default::default());
        policy
    };
    let (plain, record) = train(&RATIO, Box::new(Indifferent), 0.0);
    let (widened, _) = train(&RATIO, Box::new(Indifferent), 0.1);
    let (mean0, log_std0) = gaussian_at(&start, &record);
    let (mean_plain, log_std_plain) = gaussian_at(&plain, &record);
    let (_, log_std_widened) = gaussian_at(&widened, &record);
    // Without the bonus and without advantages nothing moves.
    assert_eq!((mean_plain, log_std_plain), (mean0, log_std0));
    // With it the standard deviation grows (d H / d log_std = 1 per
    // component: AdamW moves log_std by about lr per step).
    assert!(
        log_std_widened > log_std0 + 0.5,
        "log std {log_std0} -> {log_std_widened} after {ITERATIONS} iterations"
    );
}

#[test]
fn the_mean_reveal_ratio_moves_toward_the_rewarded_one() {
    // Up: reward prefers 3 of 4 positions first (ratio 0.75).
    let (before, after) = train_toward(&RATIO, 0.75);
    assert!(
        after > before + 0.1,
        "toward 0.75: mean ratio {before} -> {after}"
    );
    // Down: reward prefers 1 of 4 (ratio 0.25).
    let (before, after) = train_toward(&RATIO, 0.25);
    assert!(
        after < before - 0.1,
        "toward 0.25: mean ratio {before} -> {after}"
    );
}

#[test]
fn the_mean_threshold_moves_down_for_more_reveals_and_up_for_fewer() {
    // All 4 positions first: a lower threshold lets more pass.
    let (before, after) = train_toward(&THRESHOLD, 1.0);
    assert!(
        after < before - 0.05,
        "toward 4 of 4: threshold {before} -> {after}"
    );
    // 1 of 4 (the fewest a step reveals): a higher threshold.
    let (before, after) = train_toward(&THRESHOLD, 0.25);
    assert!(
        after > before + 0.05,
        "toward 1 of 4: threshold {before} -> {after}"
    );
}
