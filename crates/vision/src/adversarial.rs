//! `digit_realism` that keeps learning (`[cogrpo.adversarial]`): the
//! discriminator trained before RL, updated during RL on the arm's own
//! rollouts against real `train` digits, so that the policy cannot keep
//! exploiting the blind spots of a fixed judge (AdaGen's adversarial
//! reward, Ni et al. 2024; a GAN's discriminator step, without the
//! generator's gradient through it: the generator learns from the reward).
//!
//! Each update (every `update_every` iterations, after the policy's):
//! 1. the iteration's rollouts join a replay of the newest `replay`;
//! 2. the discriminator's balanced accuracy on those fresh rollouts and as
//!    many real images (both unseen by it) is measured; above
//!    `max_accuracy` it does not train (the cap: a judge that wins outright
//!    gives every rollout the same reward, and no gradient);
//! 3. else `steps` Adam steps, each on `batch_size / 2` real and as many
//!    replayed images, drawn from keyed streams (seed, iteration, step), so
//!    an update is a function of its inputs and resumes bit for bit.
//!
//! The reward reads the same weights ([`Discriminator::reward`]); its
//! state (weights, Adam moments, replay) lives in the arm's checkpoint.

use std::collections::VecDeque;
use std::path::Path;
use std::sync::{Arc, Mutex};

use anyhow::Context;
use burn::backend::flex::FlexDevice;
use burn::backend::{Autodiff, Flex};
use burn::module::{AutodiffModule, ModuleMapper, Param};
use burn::nn::loss::CrossEntropyLossConfig;
use burn::optim::adaptor::OptimizerAdaptor;
use burn::optim::{Adam, AdamConfig, GradientsParams, Optimizer};
use burn::prelude::*;
use burn::tensor::activation::softmax;
use cogrpo_config::{AdversarialConfig, ExperimentConfig};
use cogrpo_runtime::checkpoint::{load_record, save_record};
use envs::digits::{DigitSplit, intensities};
use envs::seeding::{purpose, stream};
use rand::Rng;
use serde::{Deserialize, Serialize};

use crate::net::{Classifier, batch};
use crate::realism::{self, REAL};
use crate::reward::{ClassifierReward, Target};
use crate::store::labeled;
use cogrpo_config::tasks::load_digits;

type Train = Autodiff<Flex>;

/// Keys the update's draws apart from every other stream of the run.
const DRAWS: u64 = 0x6164_7665_7273_0001;

/// What one update measured (logged and kept in the arm's history).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct UpdateStats {
    /// Share of the fresh real images it called real, before the update.
    pub accuracy_real: f64,
    /// Share of the iteration's rollouts it called generated, before it.
    pub accuracy_generated: f64,
    /// Mean cross-entropy over the update's steps (None: skipped by the cap).
    pub loss: Option<f64>,
}

impl UpdateStats {
    /// The mean of the two accuracies (chance: 0.5).
    pub fn balanced_accuracy(&self) -> f64 {
        (self.accuracy_real + self.accuracy_generated) / 2.0
    }
}

/// The discriminator in training, with the weights its reward reads.
pub struct Discriminator {
    settings: AdversarialConfig,
    model: Classifier<Train>,
    optim: OptimizerAdaptor<Adam, Classifier<Train>, Train>,
    /// What the reward scores with (a copy of `model`'s weights).
    shared: Arc<Mutex<Classifier<Flex>>>,
    /// The newest generated answers (tokens), oldest first.
    replay: VecDeque<Vec<u32>>,
    /// The real `train` images.
    real: Vec<Vec<f32>>,
    levels: usize,
    seed: u64,
}

/// A checkpoint's files of the discriminator.
const WEIGHTS: &str = "discriminator.safetensors";
const OPTIMIZER: &str = "discriminator_optimizer";
const REPLAY: &str = "discriminator_replay.json";

impl Discriminator {
    /// The discriminator as trained before RL (`cogrpo run` trains it
    /// against the pre-trained generator), with a fresh optimizer and an
    /// empty replay.
    pub fn start(cfg: &ExperimentConfig, settings: &AdversarialConfig) -> anyhow::Result<Self> {
        let trained = realism::load(cfg)?;
        let task = load_digits(cfg).context("loading the digits for the discriminator")?;
        let real = labeled(&task, &[DigitSplit::Train])
            .into_iter()
            .map(|l| l.pixels)
            .collect();
        let model = trainable(trained.model.clone());
        Ok(Self {
            settings: settings.clone(),
            model,
            optim: AdamConfig::new().init(),
            shared: Arc::new(Mutex::new(trained.model)),
            replay: VecDeque::new(),
            real,
            levels: cfg.task.digit_levels(),
            seed: cfg.run.seed,
        })
    }

    /// The reward (`P(real | image)`) over the current weights: the same
    /// weights, not a copy, so each update reaches every later scoring.
    pub fn reward(&self) -> ClassifierReward {
        ClassifierReward::shared(
            &self.settings.reward,
            self.shared.clone(),
            self.levels,
            Target::Fixed(REAL),
        )
    }

    /// The current weights.
    pub fn model(&self) -> Classifier<Flex> {
        self.model.valid()
    }

    /// Whether it updates after `iteration` (every `update_every`-th).
    pub fn updates_after(&self, iteration: usize) -> bool {
        self.settings.updates_after(iteration)
    }

    /// How many generated answers the replay holds.
    pub fn replay_len(&self) -> usize {
        self.replay.len()
    }

    /// One update after `iteration` on its rollouts' answers `generated`
    /// (see the module's steps).
    pub fn update(&mut self, generated: &[Vec<u32>], iteration: usize) -> UpdateStats {
        for g in generated {
            if self.replay.len() == self.settings.replay {
                self.replay.pop_front();
            }
            self.replay.push_back(g.clone());
        }
        let it = iteration as u64;
        let fresh_real = self.draw_real(generated.len(), &[it, u64::MAX]);
        let fresh_fake: Vec<Vec<f32>> = generated
            .iter()
            .map(|g| intensities(g, self.levels))
            .collect();
        let judge = self.model.valid();
        let accuracy_real = share(&p_real(&judge, &fresh_real), |p| p >= 0.5);
        let accuracy_generated = share(&p_real(&judge, &fresh_fake), |p| p < 0.5);
        let mut stats = UpdateStats {
            accuracy_real,
            accuracy_generated,
            loss: None,
        };
        if generated.is_empty() || stats.balanced_accuracy() > self.settings.max_accuracy {
            return stats;
        }
        let mut loss_sum = 0.0;
        for step in 0..self.settings.steps {
            loss_sum += self.step(&[it, step as u64]);
        }
        stats.loss = Some(loss_sum / self.settings.steps as f64);
        let updated = self.model.valid();
        match self.shared.lock() {
            Ok(mut m) => *m = updated,
            Err(poisoned) => *poisoned.into_inner() = updated,
        }
        stats
    }

    /// One Adam step on half real, half replayed images; its loss.
    fn step(&mut self, key: &[u64]) -> f64 {
        let half = self.settings.batch_size / 2;
        let mut images = self.draw_real(half, key);
        let mut rng = self.draws(&[key, &[1]].concat());
        for _ in 0..half {
            let g = &self.replay[rng.random_range(0..self.replay.len())];
            images.push(intensities(g, self.levels));
        }
        let classes: Vec<i64> = (0..2 * half)
            .map(|i| {
                if i < half {
                    REAL as i64
                } else {
                    1 - REAL as i64
                }
            })
            .collect();
        let device = FlexDevice;
        let refs: Vec<&[f32]> = images.iter().map(Vec::as_slice).collect();
        let targets =
            Tensor::<Train, 1, Int>::from_data(TensorData::new(classes, [2 * half]), &device);
        let logits = self.model.logits(batch(&refs, &device));
        let loss = CrossEntropyLossConfig::new()
            .init(&device)
            .forward(logits, targets);
        let value = loss.clone().into_scalar().elem::<f64>();
        let grads = GradientsParams::from_grads(loss.backward(), &self.model);
        let model = self.model.clone();
        self.model = self.optim.step(self.settings.lr, model, grads);
        value
    }

    /// `n` real images drawn with replacement under `key`.
    fn draw_real(&self, n: usize, key: &[u64]) -> Vec<Vec<f32>> {
        let mut rng = self.draws(&[key, &[0]].concat());
        (0..n)
            .map(|_| self.real[rng.random_range(0..self.real.len())].clone())
            .collect()
    }

    fn draws(&self, key: &[u64]) -> rand::rngs::StdRng {
        stream(&[&[purpose::TASK_DATA, self.seed, DRAWS], key].concat())
    }

    /// Writes weights, Adam's state and the replay into checkpoint `dir`.
    pub fn save(&self, dir: &Path) -> anyhow::Result<()> {
        mdm::weights::save(&self.model.valid(), &dir.join(WEIGHTS))?;
        save_record::<_, Train>(self.optim.to_record(), &dir.join(OPTIMIZER))?;
        let replay: Vec<&Vec<u32>> = self.replay.iter().collect();
        let json = serde_json::to_vec(&replay)?;
        mdm::atomic::write(&dir.join(REPLAY), &json)
            .with_context(|| format!("writing {}", dir.join(REPLAY).display()))
    }

    /// The discriminator as checkpoint `dir` holds it.
    pub fn load(
        cfg: &ExperimentConfig,
        settings: &AdversarialConfig,
        dir: &Path,
    ) -> anyhow::Result<Self> {
        let mut d = Self::start(cfg, settings)?;
        let fresh = d.model.valid();
        let weights = mdm::weights::load(fresh, &dir.join(WEIGHTS))
            .with_context(|| format!("loading the discriminator of {}", dir.display()))?;
        d.model = trainable(weights.clone());
        d.optim = d
            .optim
            .load_record(load_record(&dir.join(OPTIMIZER), &FlexDevice)?);
        let path = dir.join(REPLAY);
        let text = std::fs::read(&path).with_context(|| format!("reading {}", path.display()))?;
        let replay: Vec<Vec<u32>> = serde_json::from_slice(&text)
            .with_context(|| format!("{} is not a list of answers", path.display()))?;
        d.replay = replay.into();
        *d.shared
            .lock()
            .map_err(|_| anyhow::anyhow!("the discriminator's lock is poisoned"))? = weights;
        Ok(d)
    }
}

/// `model` on the autodiff backend with every weight trainable (weights
/// read from a file come without gradients).
fn trainable(model: Classifier<Flex>) -> Classifier<Train> {
    struct RequireGrad;
    impl ModuleMapper<Train> for RequireGrad {
        fn map_float<const D: usize>(
            &mut self,
            param: Param<Tensor<Train, D>>,
        ) -> Param<Tensor<Train, D>> {
            param.set_require_grad(true)
        }
    }
    Classifier::from_inner(model).map(&mut RequireGrad)
}

/// `P(real)` of each image under `model`.
fn p_real(model: &Classifier<Flex>, images: &[Vec<f32>]) -> Vec<f32> {
    if images.is_empty() {
        return Vec::new();
    }
    let refs: Vec<&[f32]> = images.iter().map(Vec::as_slice).collect();
    let probs = softmax(model.logits(batch::<Flex>(&refs, &FlexDevice)), 1)
        .into_data()
        .convert::<f32>()
        .into_vec::<f32>()
        .unwrap_or_default();
    probs.chunks(2).map(|p| p[REAL]).collect()
}

/// Share of `values` that `pass` (0 for none).
fn share(values: &[f32], pass: impl Fn(f32) -> bool) -> f64 {
    let n = values.iter().filter(|&&v| pass(v)).count();
    n as f64 / values.len().max(1) as f64
}
