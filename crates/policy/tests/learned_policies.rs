//! The learned schedule policies against their samplers.
//!
//! 1. Log-probabilities recomputed from stored trajectories (both factors,
//!    same weights) equal the ones recorded at sampling.
//! 2. Each policy's `log_prob` is the distribution its sampler draws from:
//!    frequencies of many rollouts from one state against `exp(log_prob)`.

use std::collections::HashMap;

use burn::backend::Flex;
use burn::prelude::*;
use envs::{Canvas, StepRecord};
use mdm::{Denoiser, DenoiserConfig};
use policy::factors::token_log_probs;
use policy::learned::{Component, HeadKind, ScheduleBatch, SchedulePolicy, SchedulePolicyConfig};
use policy::{Act, Rollout, SamplerConfig, SamplerKind};

type B = Flex;

fn model() -> Denoiser<B> {
    DenoiserConfig::new(5, 16, 1, 2, 32, 6).init::<B>(7, &Default::default())
}

fn canvas(rows: usize, prompt: &[u32]) -> Canvas {
    let mut c = Canvas::new(6, 5);
    for r in 0..rows {
        c.push_row(prompt, 1000 + r as u64).unwrap();
    }
    c
}

fn policy_cfg(kind: HeadKind, learn: &[Component], order: bool) -> SchedulePolicyConfig {
    SchedulePolicyConfig {
        kind,
        learn: learn.to_vec(),
        order,
        seed: 3,
        ..Default::default()
    }
}

fn host(t: Tensor<B, 1>) -> Vec<f64> {
    t.into_data().convert::<f64>().to_vec().unwrap()
}

fn rollout<'a>(
    m: &'a Denoiser<B>,
    p: &'a SchedulePolicy<B>,
    reference: &'a SamplerConfig,
    steps: usize,
) -> Rollout<'a, B> {
    Rollout {
        model: m,
        policy: Some(p),
        reference,
        steps,
        act: Act::Sample,
        temperature: None,
        seed: 11,
        device: Default::default(),
    }
}

/// The policies `recomputed_log_probs_equal_recorded_ones` checks: (reference
/// kind, policy, guidance, block length).
fn recomputation_cases() -> Vec<(SamplerKind, SchedulePolicyConfig, f64, usize)> {
    vec![
        (
            SamplerKind::Confidence,
            policy_cfg(
                HeadKind::PerStep,
                &[Component::Ratio, Component::Temperature],
                false,
            ),
            0.0,
            0,
        ),
        (
            SamplerKind::Confidence,
            policy_cfg(
                HeadKind::Network,
                &[
                    Component::Ratio,
                    Component::RemaskTemperature,
                    Component::Guidance,
                ],
                false,
            ),
            0.5,
            0,
        ),
        (
            SamplerKind::FirstHitting,
            policy_cfg(HeadKind::Fixed, &[], true),
            0.0,
            0,
        ),
        (
            SamplerKind::Confidence,
            policy_cfg(
                HeadKind::PerStep,
                &[Component::Ratio, Component::Temperature],
                true,
            ),
            0.0,
            0,
        ),
        // Block-wise: the network reads the block features; an order head
        // picks among the block's positions.
        (
            SamplerKind::Confidence,
            policy_cfg(
                HeadKind::Network,
                &[Component::Ratio, Component::Guidance],
                true,
            ),
            0.5,
            2,
        ),
        // Block-wise with a wide ratio: some rows reveal a whole block at
        // its first step, so its next step has no masked position left
        // (nothing acts there; its record stays finite).
        (
            SamplerKind::Confidence,
            SchedulePolicyConfig {
                init_std: 3.0,
                ..policy_cfg(
                    HeadKind::PerStep,
                    &[Component::Ratio, Component::Temperature],
                    false,
                )
            },
            0.0,
            2,
        ),
    ]
}

#[test]
fn recomputed_log_probs_equal_recorded_ones() {
    let m = model();
    let dev = Default::default();
    let mut emptied_blocks = 0;
    for (kind, cfg, guidance, block_length) in recomputation_cases() {
        let mut reference = SamplerConfig::new(kind, 3);
        reference.guidance = guidance;
        reference.block_length = block_length;
        let p = cfg.init::<B>(3, 4, &reference, &dev);
        let mut c = canvas(6, &[1, 2]);
        let (trajs, _) = rollout(&m, &p, &reference, 3).run(&mut c, true).unwrap();
        assert!(c.is_complete());
        let records: Vec<&StepRecord> = trajs.iter().flat_map(|t| t.steps.iter()).collect();
        assert!(records.len() >= 6, "{cfg:?}");
        for r in records.iter().filter(|r| r.candidates.is_empty()) {
            emptied_blocks += 1;
            assert!(r.acted.iter().all(|a| !a), "{cfg:?}: nothing to decide");
            assert!(r.reference_raw.iter().all(|u| u.is_finite()), "{r:?}");
        }
        if block_length > 0 {
            // Two blocks of two answer positions (2..4, 4..6): each step's
            // candidates lie in one, and the network sees 8 features.
            for r in &records {
                assert_eq!(r.state_features.len(), 8);
                let block = r.candidates.first().map(|p| (p - 2) / 2);
                assert!(r.candidates.iter().all(|p| Some((p - 2) / 2) == block));
            }
        }
        // Model factor.
        let (logp, _) = token_log_probs(&m, &records, &dev);
        let recorded: Vec<f64> = records
            .iter()
            .flat_map(|r| r.token_log_probs.iter().copied())
            .collect();
        let got = host(logp);
        assert_eq!(got.len(), recorded.len());
        for (g, r) in got.iter().zip(&recorded) {
            assert!(
                (g - r).abs() < 1e-4,
                "{cfg:?}: token log-prob {g} vs recorded {r}"
            );
        }
        // Schedule factor.
        let batch = ScheduleBatch::new(
            &records,
            p.components().len(),
            p.table_steps(),
            p.has_order(),
            &dev,
        );
        let (logp, entropy) = p.log_prob(&batch);
        for (g, r) in host(logp).iter().zip(&records) {
            assert!(
                (g - r.schedule_log_prob).abs() < 1e-4,
                "{cfg:?}: schedule log-prob {g} vs recorded {}",
                r.schedule_log_prob
            );
        }
        assert!(host(entropy).iter().all(|h| h.is_finite()));
        // A learned policy's log-probability is not trivially zero.
        assert!(
            records.iter().any(|r| r.schedule_log_prob != 0.0),
            "{cfg:?}"
        );
    }
    assert!(
        emptied_blocks > 0,
        "no block was emptied before its last step"
    );
}

/// The ratio component's draws at one state against the density `log_prob`
/// assigns, bin by bin.
#[test]
fn gaussian_log_prob_is_the_density_its_sampler_draws_from() {
    let m = model();
    let dev = Default::default();
    for kind in [HeadKind::PerStep, HeadKind::Network] {
        let cfg = SchedulePolicyConfig {
            init_std: 0.8,
            ..policy_cfg(kind, &[Component::Ratio], false)
        };
        let reference = SamplerConfig::new(SamplerKind::Confidence, 2);
        let p = cfg.init::<B>(2, 4, &reference, &dev);
        let n = 20_000;
        let mut c = canvas(n, &[1, 2]);
        let (trajs, _) = rollout(&m, &p, &reference, 2).run(&mut c, true).unwrap();
        let first: Vec<&StepRecord> = trajs.iter().map(|t| &t.steps[0]).collect();
        let samples: Vec<f64> = first.iter().map(|r| r.schedule_raw[0]).collect();
        // Density on a grid, from log_prob on records that differ only in u.
        let (lo, hi, bins) = (-3.0f64, 3.0f64, 12usize);
        let fine = 40;
        let grid: Vec<StepRecord> = (0..bins * fine)
            .map(|i| {
                let mut r = first[0].clone();
                r.schedule_raw[0] = lo + (i as f64 + 0.5) * (hi - lo) / (bins * fine) as f64;
                r
            })
            .collect();
        let refs: Vec<&StepRecord> = grid.iter().collect();
        let batch = ScheduleBatch::new(&refs, 1, p.table_steps(), false, &dev);
        let density: Vec<f64> = host(p.log_prob(&batch).0).iter().map(|l| l.exp()).collect();
        let width = (hi - lo) / (bins * fine) as f64;
        for b in 0..bins {
            let mass: f64 = density[b * fine..(b + 1) * fine].iter().sum::<f64>() * width;
            let (a, z) = (lo + b as f64 * 0.5, lo + (b + 1) as f64 * 0.5);
            let freq = samples.iter().filter(|&&u| u >= a && u < z).count() as f64 / n as f64;
            let tol = 5.0 * (mass * (1.0 - mass) / n as f64).sqrt() + 1e-3;
            assert!(
                (freq - mass).abs() < tol,
                "{kind:?} bin {b}: {freq} vs {mass}"
            );
        }
    }
}

/// Pick sequences of the order policy at one state against `exp(log_prob)`.
#[test]
fn order_log_prob_is_the_distribution_its_sampler_draws_from() {
    let m = model();
    let dev = Default::default();
    let cfg = SchedulePolicyConfig {
        order_temperature: 0.5,
        ..policy_cfg(HeadKind::Fixed, &[], true)
    };
    let reference = SamplerConfig::new(SamplerKind::Confidence, 2);
    let p = cfg.init::<B>(2, 4, &reference, &dev);
    let n = 20_000;
    let mut c = canvas(n, &[1, 2]);
    let (trajs, _) = rollout(&m, &p, &reference, 2).run(&mut c, true).unwrap();
    let mut counts: HashMap<Vec<usize>, (usize, usize)> = HashMap::new();
    for (i, t) in trajs.iter().enumerate() {
        counts
            .entry(t.steps[0].revealed.clone())
            .or_insert((0, i))
            .0 += 1;
    }
    // 4 masked positions, 2 revealed at step 0: 12 ordered sequences.
    assert!(
        counts.len() > 6,
        "too few distinct sequences: {}",
        counts.len()
    );
    let reps: Vec<&StepRecord> = counts.values().map(|&(_, i)| &trajs[i].steps[0]).collect();
    let batch = ScheduleBatch::new(&reps, 0, p.table_steps(), true, &dev);
    let probs: Vec<f64> = host(p.log_prob(&batch).0).iter().map(|l| l.exp()).collect();
    let mut total = 0.0;
    for (r, prob) in reps.iter().zip(&probs) {
        let f = counts[&r.revealed].0 as f64 / n as f64;
        total += prob;
        let tol = 5.0 * (prob * (1.0 - prob) / n as f64).sqrt() + 1e-3;
        assert!((f - prob).abs() < tol, "{:?}: {f} vs {prob}", r.revealed);
    }
    assert!(
        total <= 1.0 + 1e-5 && total > 0.99,
        "observed sequences hold {total}"
    );
}
