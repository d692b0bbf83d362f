//! `digit_realism`: a discriminator between real `train` digits and the
//! pre-trained generator's samples, the reward P(real | image). A learned
//! quality reward beside the class reward, as AdaGen uses an adversarial
//! reward against reward hacking; unlike a GAN's it is trained once, after
//! pre-training, against that generator, and stays fixed while RL runs (so
//! RL can still learn to fool it: watch the evaluation classifier's
//! `frechet`).

use anyhow::{Context, bail};
use burn::backend::flex::FlexDevice;
use burn::backend::{Autodiff, Flex};
use envs::digits::{DigitSplit, SIDE, intensities};
use envs::seeding::derive_key;

use crate::net::Architecture;
use crate::store::{
    GeneratedSet, ModelCard, TrainedClassifier, Training, labeled, load_if_trained_as, load_saved,
    model_dir, read_card, save,
};
use crate::train::{Labeled, TrainSettings, accuracy, train};
use cogrpo_config::ExperimentConfig;
use cogrpo_config::tasks::load_digits;

pub const NAME: &str = "digit_realism";
/// Class index of real images (generated ones are 0).
pub const REAL: usize = 1;
/// Share of the generated images held out to measure the discriminator.
const HELD_OUT: usize = 5;

fn settings(data_seed: u64) -> TrainSettings {
    TrainSettings {
        architecture: Architecture::Conv,
        epochs: 12,
        batch_size: 32,
        lr: 2e-3,
        seed: data_seed ^ 0x7265_616c,
    }
}

/// A hash of generated answers (their tokens, in order).
pub fn fingerprint(generated: &[Vec<u32>]) -> u64 {
    let per_image: Vec<u64> = generated
        .iter()
        .map(|g| derive_key(&g.iter().map(|&t| t as u64).collect::<Vec<_>>()))
        .collect();
    derive_key(&per_image)
}

/// The discriminator against `generated` (answers of the pre-trained
/// generator to `train` prompts): loaded when one was trained against the
/// same images, else trained and saved.
pub fn load_or_train(
    cfg: &ExperimentConfig,
    generated: &[Vec<u32>],
) -> anyhow::Result<TrainedClassifier> {
    let levels = cfg.task.digit_levels();
    let training = Training {
        name: NAME.into(),
        settings: settings(cfg.task.data_seed),
        trained_on: "train vs generated".into(),
        levels,
        data_seed: cfg.task.data_seed,
        generated: Some(GeneratedSet {
            count: generated.len(),
            fingerprint: fingerprint(generated),
        }),
    };
    let dir = model_dir(cfg, NAME);
    if let Some(saved) = load_if_trained_as(&dir, &training, 2)? {
        return Ok(saved);
    }
    if generated.len() < 2 * HELD_OUT {
        bail!(
            "{NAME}: {} generated images are too few to train on",
            generated.len()
        );
    }
    let task = load_digits(cfg).context("loading the digits for the realism model")?;
    let real = |split: DigitSplit| -> Vec<Labeled> {
        let images = labeled(&task, &[split]).into_iter();
        images.map(|l| Labeled { class: REAL, ..l }).collect()
    };
    let fake = |keep: &dyn Fn(usize) -> bool| -> Vec<Labeled> {
        generated
            .iter()
            .enumerate()
            .filter(|(i, _)| keep(*i))
            .map(|(_, g)| Labeled {
                pixels: intensities(g, levels),
                class: 1 - REAL,
            })
            .collect()
    };
    // The real images repeated to balance the generated ones (several per
    // prompt), so that P(real) starts from even odds.
    let train_real = real(DigitSplit::Train);
    let n_real = train_real.len();
    let generated_seen = fake(&|i| i % HELD_OUT != 0);
    let repeats = generated_seen.len().div_ceil(n_real.max(1)).max(1);
    let mut data: Vec<Labeled> = (0..repeats)
        .flat_map(|_| train_real.iter().cloned())
        .collect();
    data.extend(generated_seen);
    let (unseen_real, unseen_fake) = (real(DigitSplit::Validation), fake(&|i| i % HELD_OUT == 0));
    tracing::info!(
        "training {NAME} (conv, {n_real} real `train` images x{repeats} against {} generated ones, {} epochs) ...",
        data.len() - repeats * n_real,
        training.settings.epochs
    );
    let device = FlexDevice;
    let model = train::<Autodiff<Flex>>(&training.settings, SIDE, 2, &data, &device);
    let card = ModelCard {
        training,
        // Balanced: the mean of the two classes' accuracies.
        accuracy_unseen: (accuracy(&model, &unseen_real, &device)
            + accuracy(&model, &unseen_fake, &device))
            / 2.0,
    };
    save(&dir, &model, &card, unseen_real.len() + unseen_fake.len())?;
    Ok(TrainedClassifier { model, card })
}

/// The discriminator saved by `cogrpo run` (or `train`) after pre-training.
pub fn load(cfg: &ExperimentConfig) -> anyhow::Result<TrainedClassifier> {
    let dir = model_dir(cfg, NAME);
    match read_card(&dir)? {
        Some(card) => load_saved(&dir, card, 2),
        None => bail!(
            "{NAME} is trained against the pre-trained generator's samples by `cogrpo run` or \
             `cogrpo train`; none is in {} yet",
            dir.display()
        ),
    }
}
