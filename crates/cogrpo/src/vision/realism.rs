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
use envs::digits::{DigitSplit, Digits, SIDE, STORED_LEVELS, intensities};
use envs::seeding::derive_key;

use super::net::Architecture;
use super::store::{GeneratedSet, ModelCard, TrainedClassifier, load_saved, read_card, save};
use super::train::{Labeled, TrainSettings, accuracy, train};
use crate::config::ExperimentConfig;

pub const NAME: &str = "digit_realism";
/// Class index of real images (generated ones are 0).
pub const REAL: usize = 1;
/// Share of the generated images held out to measure the discriminator.
const HELD_OUT: usize = 5;

fn settings(data_seed: u64) -> TrainSettings {
    TrainSettings {
        architecture: Architecture::Mlp,
        epochs: 40,
        batch_size: 32,
        lr: 2e-3,
        seed: data_seed ^ 0x7265_616c,
    }
}

fn dir(cfg: &ExperimentConfig) -> std::path::PathBuf {
    cfg.run.out_dir().join("models").join(NAME)
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
    let levels = cfg.task.levels.unwrap_or(STORED_LEVELS);
    let s = settings(cfg.task.data_seed);
    let set = GeneratedSet {
        count: generated.len(),
        fingerprint: fingerprint(generated),
    };
    if let Some(card) = read_card(&dir(cfg))?
        && card.settings == s
        && card.levels == levels
        && card.data_seed == cfg.task.data_seed
        && card.generated.as_ref() == Some(&set)
    {
        return load_saved(&dir(cfg), card, 2);
    }
    if generated.len() < 2 * HELD_OUT {
        bail!(
            "{NAME}: {} generated images are too few to train on",
            generated.len()
        );
    }
    let task = Digits::load(&cfg.task.data_dir, cfg.task.data_seed, levels)
        .context("loading the digits for the realism model")?;
    let real = |split: DigitSplit| -> Vec<Labeled> {
        task.examples(split)
            .iter()
            .map(|e| Labeled {
                pixels: intensities(&e.answer, levels),
                class: REAL,
            })
            .collect()
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
    let mut data = real(DigitSplit::Train);
    data.extend(fake(&|i| i % HELD_OUT != 0));
    let mut unseen = real(DigitSplit::Validation);
    unseen.extend(fake(&|i| i % HELD_OUT == 0));
    eprintln!(
        "training {NAME} (mlp, {} real `train` images against {} generated ones, {} epochs) ...",
        task.examples(DigitSplit::Train).len(),
        data.len() - task.examples(DigitSplit::Train).len(),
        s.epochs
    );
    let device = FlexDevice;
    let model = train::<Autodiff<Flex>>(&s, SIDE, 2, &data, &device);
    let card = ModelCard {
        name: NAME.into(),
        settings: s,
        trained_on: "train vs generated".into(),
        levels,
        data_seed: cfg.task.data_seed,
        accuracy_unseen: accuracy(&model, &unseen, &device),
        generated: Some(set),
    };
    save(&dir(cfg), &model, &card, unseen.len())?;
    Ok(TrainedClassifier { model, card })
}

/// The discriminator saved by `cogrpo run` (or `train`) after pre-training.
pub fn load(cfg: &ExperimentConfig) -> anyhow::Result<TrainedClassifier> {
    match read_card(&dir(cfg))? {
        Some(card) => load_saved(&dir(cfg), card, 2),
        None => bail!(
            "{NAME} is trained against the pre-trained generator's samples by `cogrpo run` or \
             `cogrpo train`; none is in {} yet",
            dir(cfg).display()
        ),
    }
}
