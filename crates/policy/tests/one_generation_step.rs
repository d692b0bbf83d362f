//! The fixed samplers and the recording rollout run one generation step.
//!
//! For every fixed sampler kind, with T above, at and below the masked
//! count, linear and cosine counts, temperatures and re-mask temperatures
//! above 0, guidance above 0 and Fast-dLLM's confidence threshold, over the
//! whole answer and block-wise (two blocks of two):
//! 1. `Sampler` (what `cogrpo eval` and `sample` run) and `Rollout` without a
//!    policy (what the `base` arm and the `model` arm run) give the same
//!    canvases and the same NFE for the same seed, whatever the threads;
//! 2. the token log-probabilities the rollout records are the model
//!    factor the loss recomputes (`factors::token_log_probs`);
//! 3. a fresh learned ratio policy acting in mode (a residual of zero on
//!    the reference) reproduces the fixed sampler's canvases and token
//!    log-probabilities: the learned path draws in the same order.

use burn::backend::Flex;
use envs::{Canvas, StepRecord};
use mdm::{Denoiser, DenoiserConfig};
use policy::factors::token_log_probs;
use policy::learned::{Component, HeadKind, SchedulePolicyConfig};
use policy::{
    Act, RevealSchedule, Rollout, Sampler, SamplerConfig, SamplerKind, TemperatureOverride,
};

type B = Flex;

/// Vocabulary 5 (mask id 5), length 6: 2 prompt tokens and 4 masked.
fn model() -> Denoiser<B> {
    DenoiserConfig::new(5, 16, 2, 2, 32, 6).init::<B>(21, &Default::default())
}

fn canvas(rows: u64) -> Canvas {
    let mut c = Canvas::new(6, 5);
    for r in 0..rows {
        c.push_row(&[(r % 5) as u32, ((r / 5) % 5) as u32], 300 + r)
            .unwrap();
    }
    c
}

/// Every fixed sampler setting the step has a branch for.
fn settings() -> Vec<SamplerConfig> {
    let mut out = Vec::new();
    for kind in [
        SamplerKind::Ancestral,
        SamplerKind::FirstHitting,
        SamplerKind::Confidence,
    ] {
        // Below, at and above the 4 masked positions.
        for steps in [2, 4, 9] {
            for schedule in [RevealSchedule::Linear, RevealSchedule::Cosine] {
                if kind == SamplerKind::Ancestral && schedule == RevealSchedule::Cosine {
                    continue;
                }
                for (temperature, guidance) in [(1.0, 0.0), (0.7, 1.5), (0.0, 0.0)] {
                    let mut c = SamplerConfig::new(kind, steps);
                    c.schedule = schedule;
                    c.temperature = temperature;
                    c.guidance = guidance;
                    out.push(c.clone());
                    if kind == SamplerKind::Confidence {
                        // The model's probabilities lie near 1/5: some
                        // positions pass 0.22 and some do not.
                        out.push(SamplerConfig {
                            threshold: 0.22,
                            ..c.clone()
                        });
                        c.remask_temperature = 0.8;
                        out.push(c);
                    }
                }
            }
        }
    }
    let block_wise: Vec<SamplerConfig> = out
        .iter()
        .map(|c| SamplerConfig {
            block_length: 2,
            ..c.clone()
        })
        .collect();
    out.extend(block_wise);
    out
}

fn rollout<'a>(m: &'a Denoiser<B>, cfg: &'a SamplerConfig) -> Rollout<'a, B> {
    Rollout {
        model: m,
        policy: None,
        reference: cfg,
        steps: cfg.steps,
        act: Act::Mode,
        temperature: None,
        seed: 77,
        device: Default::default(),
    }
}

fn log_probs(records: &[&StepRecord]) -> Vec<f64> {
    records
        .iter()
        .flat_map(|r| r.token_log_probs.iter().copied())
        .collect()
}

#[test]
fn sampler_and_rollout_without_a_policy_are_one_step() {
    let m = model();
    let dev = Default::default();
    let settings = settings();
    assert_eq!(settings.len(), 2 * (9 + 18 + 54));
    for cfg in &settings {
        let mut sampled = canvas(7);
        let stats = Sampler::new(&m, &dev, 77)
            .generate_threads(&mut sampled, cfg, 2)
            .unwrap();
        let mut rolled = canvas(7);
        let (trajectories, rstats) = rollout(&m, cfg).run(&mut rolled, true).unwrap();
        assert!(sampled.is_complete(), "{cfg:?}");
        assert_eq!(sampled, rolled, "{cfg:?}");
        assert_eq!(stats.nfe, rstats.nfe, "{cfg:?}");
        // A step's NFE: 1, or 2 with guidance, for each step that reveals.
        for (r, t) in trajectories.iter().enumerate() {
            let revealing = t.steps.iter().filter(|s| !s.revealed.is_empty()).count();
            let per = if cfg.guidance != 0.0 { 2 } else { 1 };
            assert_eq!(rstats.nfe[r], (per * revealing) as u32, "{cfg:?}");
            assert_eq!(t.final_tokens, rolled.row(r), "{cfg:?}");
        }
        // The recorded model factor is the one the loss recomputes.
        if cfg.temperature > 0.0 {
            let records: Vec<&StepRecord> = trajectories
                .iter()
                .flat_map(|t| t.steps.iter())
                .filter(|s| !s.revealed.is_empty())
                .collect();
            let (recomputed, _) = token_log_probs(&m, &records, &dev);
            let recomputed: Vec<f64> = recomputed.into_data().convert::<f64>().to_vec().unwrap();
            for (a, b) in log_probs(&records).iter().zip(&recomputed) {
                assert!((a - b).abs() < 1e-4, "{cfg:?}: {a} vs {b}");
            }
        }
    }
}

#[test]
fn a_fresh_learned_ratio_and_threshold_in_mode_follow_the_reference_exactly() {
    let m = model();
    let dev = Default::default();
    // Steps before the last where the learned threshold revealed more than
    // its one position (over the whole answer).
    let mut threshold_acted = 0;
    for cfg in settings() {
        if cfg.kind == SamplerKind::Ancestral {
            continue; // a learned schedule builds on a deterministic count
        }
        // Over Fast-dLLM's threshold the policy learns it too.
        let learn = if cfg.threshold > 0.0 {
            vec![Component::Ratio, Component::Threshold]
        } else {
            vec![Component::Ratio]
        };
        let policy = SchedulePolicyConfig {
            kind: HeadKind::PerStep,
            learn,
            ..Default::default()
        }
        .init::<B>(cfg.steps, 4, &cfg, &dev);
        let mut fixed = canvas(5);
        let (fixed_t, _) = rollout(&m, &cfg).run(&mut fixed, true).unwrap();
        let mut learned = canvas(5);
        let r = Rollout {
            policy: Some(&policy),
            ..rollout(&m, &cfg)
        };
        let (learned_t, stats) = r.run(&mut learned, true).unwrap();
        assert_eq!(fixed, learned, "{cfg:?}");
        if cfg.threshold > 0.0 && cfg.block_length == 0 {
            threshold_acted += learned_t
                .iter()
                .flat_map(|t| t.steps.iter())
                .filter(|s| s.revealed.len() > 1 && s.step + 1 < s.total_steps)
                .count();
        }
        for (a, b) in fixed_t.iter().zip(&learned_t) {
            for (sa, sb) in a.steps.iter().zip(&b.steps) {
                assert_eq!(sa.revealed, sb.revealed, "{cfg:?}");
                for (x, y) in sa.token_log_probs.iter().zip(&sb.token_log_probs) {
                    assert!((x - y).abs() < 1e-5, "{cfg:?}: {x} vs {y}");
                }
            }
        }
        // A learned policy observes every step a row has masks in.
        for (row, t) in learned_t.iter().enumerate() {
            let per = if cfg.guidance != 0.0 { 2 } else { 1 };
            let revealing = t.steps.iter().filter(|s| !s.revealed.is_empty()).count();
            assert_eq!(
                stats.nfe[row] as usize,
                t.steps.len() + (per - 1) * revealing,
                "{cfg:?}"
            );
        }
    }
    assert!(
        threshold_acted > 0,
        "no threshold case revealed by confidence"
    );
}

/// An evaluation's temperature override replaces a learned temperature only
/// when it says so: kept, the rows decode at the learned temperature (a
/// fresh policy's: the reference's 1); over it, greedily, exactly as the
/// reference does under the same override.
#[test]
fn a_temperature_override_replaces_a_learned_temperature_only_when_asked() {
    let m = model();
    let dev = Default::default();
    let mut cfg = SamplerConfig::new(SamplerKind::Confidence, 4);
    cfg.temperature = 1.0;
    let policy = SchedulePolicyConfig {
        kind: HeadKind::PerStep,
        learn: vec![Component::Temperature],
        ..Default::default()
    }
    .init::<B>(cfg.steps, 4, &cfg, &dev);
    let run = |policy, over_learned| {
        let mut c = canvas(6);
        let r = Rollout {
            policy,
            temperature: Some(TemperatureOverride {
                value: 0.0,
                over_learned,
            }),
            ..rollout(&m, &cfg)
        };
        let (t, _) = r.run(&mut c, true).unwrap();
        let temperatures: Vec<f64> = t
            .iter()
            .flat_map(|t| t.steps.iter())
            .filter(|s| !s.revealed.is_empty())
            .map(|s| s.temperature)
            .collect();
        (c, temperatures)
    };
    let (greedy, _) = run(None, false);
    let (kept, kept_t) = run(Some(&policy), false);
    let (over, over_t) = run(Some(&policy), true);
    assert!(kept_t.iter().all(|t| (t - 1.0).abs() < 1e-9), "{kept_t:?}");
    assert!(over_t.iter().all(|&t| t == 0.0), "{over_t:?}");
    assert_eq!(over, greedy);
    assert_ne!(
        kept, greedy,
        "decoding at temperature 1 drew what greedy picks"
    );
}
