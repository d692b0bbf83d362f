//! `digit_realism` that keeps learning: an update moves the discriminator
//! (and the reward, which reads the same weights) towards calling the
//! policy's images generated; updates are a function of their inputs;
//! saved and loaded mid-way, it continues bit for bit; the accuracy cap
//! stops it from training once it wins.

mod common;

use std::path::Path;

use burn::backend::Flex;
use burn::module::{Module, ModuleVisitor, Param};
use burn::prelude::*;
use cogrpo_config::{AdversarialConfig, ExperimentConfig};
use cogrpo_vision::ClassifierReward;
use cogrpo_vision::adversarial::Discriminator;
use cogrpo_vision::realism;
use common::{config, scribble};
use envs::Task;
use envs::digits::Digits;
use envs::seeding::stream;
use rewards::RewardItem;

/// `n` images with ink of random gray at a share `ink` of their pixels.
fn scribbles(seed: u64, n: usize, ink: f64) -> Vec<Vec<u32>> {
    let mut rng = stream(&[seed]);
    (0..n).map(|_| scribble(&mut rng, ink)).collect()
}

fn weights(m: &impl Module<Flex>) -> Vec<Vec<f32>> {
    struct Collect(Vec<Vec<f32>>);
    impl ModuleVisitor<Flex> for Collect {
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<Flex, D>>) {
            self.0
                .push(param.val().into_data().to_vec::<f32>().unwrap());
        }
    }
    let mut c = Collect(Vec::new());
    m.visit(&mut c);
    c.0
}

/// The mean reward (P(real)) of `images` under the prompt of a test digit.
fn mean_reward(reward: &ClassifierReward, task: &Digits, images: &[Vec<u32>]) -> f64 {
    let example = task.test_examples()[0].clone();
    let items: Vec<RewardItem> = images
        .iter()
        .enumerate()
        .map(|(i, g)| RewardItem::new(&example, i, g, task.vocab()))
        .collect();
    let p = reward.probabilities(&items).unwrap();
    p.iter().map(|v| v.unwrap() as f64).sum::<f64>() / p.len() as f64
}

/// A discriminator trained before RL against dense noise: the "policy"
/// now draws sparse noise, which it has never seen.
fn setup(out: &Path) -> (ExperimentConfig, Digits) {
    let cfg = config(out);
    realism::load_or_train(&cfg, &scribbles(1, 200, 1.0)).unwrap();
    let task = Digits::load(&cfg.task.data_dir, cfg.task.data_seed, 17).unwrap();
    (cfg, task)
}

fn settings() -> AdversarialConfig {
    AdversarialConfig {
        steps: 4,
        batch_size: 32,
        replay: 96,
        max_accuracy: 1.0,
        ..AdversarialConfig::default()
    }
}

#[test]
fn updates_learn_the_policys_images_deterministically_and_resume_bit_for_bit() {
    let out = tempfile::tempdir().unwrap();
    let (cfg, task) = setup(out.path());
    let s = settings();
    let policy = |it: u64| scribbles(100 + it, 48, 0.15);
    let probe = scribbles(999, 64, 0.15);

    let mut d = Discriminator::start(&cfg, &s).unwrap();
    let reward = d.reward();
    let before = mean_reward(&reward, &task, &probe);
    let mut stats = Vec::new();
    for it in 0..2 {
        stats.push(d.update(&policy(it), it as usize));
    }
    let ckpt = out.path().join("ckpt");
    std::fs::create_dir_all(&ckpt).unwrap();
    d.save(&ckpt).unwrap();
    for it in 2..6 {
        stats.push(d.update(&policy(it), it as usize));
    }
    let after = mean_reward(&reward, &task, &probe);
    // Learning direction: the reward of images like the policy's falls,
    // and the reward handed out before the updates saw it fall (shared
    // weights, not a copy).
    assert!(
        after < before - 0.1,
        "P(real) of the policy's kind of image: {before:.3} -> {after:.3}"
    );
    assert!(stats.iter().all(|s| s.loss.is_some()));
    assert!(
        stats[5].accuracy_generated > stats[0].accuracy_generated,
        "{stats:?}"
    );
    assert_eq!(d.replay_len(), 96, "the replay keeps the newest 96");

    // The same inputs give the same weights, from the start...
    let mut again = Discriminator::start(&cfg, &s).unwrap();
    for it in 0..6 {
        assert_eq!(again.update(&policy(it), it as usize), stats[it as usize]);
    }
    assert_eq!(weights(&again.model()), weights(&d.model()));
    // ... and from the checkpoint after iteration 2.
    let mut resumed = Discriminator::load(&cfg, &s, &ckpt).unwrap();
    assert_eq!(resumed.replay_len(), 96);
    for it in 2..6 {
        assert_eq!(resumed.update(&policy(it), it as usize), stats[it as usize]);
    }
    assert_eq!(weights(&resumed.model()), weights(&d.model()));
    assert_eq!(
        mean_reward(&resumed.reward(), &task, &probe),
        after,
        "the loaded reward scores with the loaded weights"
    );
}

#[test]
fn a_discriminator_that_wins_outright_does_not_train() {
    let out = tempfile::tempdir().unwrap();
    let (cfg, _) = setup(out.path());
    // Dense noise is what it was trained against: it tells it apart.
    let capped = AdversarialConfig {
        max_accuracy: 0.8,
        ..settings()
    };
    let mut d = Discriminator::start(&cfg, &capped).unwrap();
    let w0 = weights(&d.model());
    let st = d.update(&scribbles(7, 48, 1.0), 0);
    assert!(st.balanced_accuracy() > 0.8, "{st:?}");
    assert_eq!(st.loss, None);
    assert_eq!(weights(&d.model()), w0);
    // Without the cap the same update trains.
    let mut free = Discriminator::start(&cfg, &settings()).unwrap();
    assert!(free.update(&scribbles(7, 48, 1.0), 0).loss.is_some());
    assert_ne!(weights(&free.model()), w0);
}
