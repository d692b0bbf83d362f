//! Training on first use, saving with the settings, loading by name.

use std::path::{Path, PathBuf};

use anyhow::Context;
use burn::backend::flex::FlexDevice;
use burn::backend::{Autodiff, Flex};
use envs::digits::{CLASSES, DigitSplit, Digits, SIDE, STORED_LEVELS, intensities, prompted_class};
use serde::{Deserialize, Serialize};

use super::net::{Architecture, Classifier};
use super::train::{Labeled, TrainSettings, accuracy, train};
use crate::config::ExperimentConfig;

/// What a classifier is for; fixes its name, architecture and data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ModelRole {
    /// `digit_classifier`: the reward model, trained on `train`.
    Reward,
    /// `eval_classifier`: the evaluation model, trained on `heldout`.
    Evaluation,
}

impl ModelRole {
    pub const fn name(self) -> &'static str {
        match self {
            ModelRole::Reward => "digit_classifier",
            ModelRole::Evaluation => "eval_classifier",
        }
    }

    fn trained_on(self) -> DigitSplit {
        match self {
            ModelRole::Reward => DigitSplit::Train,
            ModelRole::Evaluation => DigitSplit::Heldout,
        }
    }

    /// The other splits: the accuracy reported for the model is measured
    /// on images it never saw.
    fn checked_on(self) -> [DigitSplit; 2] {
        match self {
            ModelRole::Reward => [DigitSplit::Validation, DigitSplit::Heldout],
            ModelRole::Evaluation => [DigitSplit::Train, DigitSplit::Validation],
        }
    }

    fn settings(self, data_seed: u64) -> TrainSettings {
        TrainSettings {
            architecture: match self {
                ModelRole::Reward => Architecture::Mlp,
                ModelRole::Evaluation => Architecture::Conv,
            },
            epochs: 40,
            batch_size: 32,
            lr: 2e-3,
            seed: data_seed,
        }
    }
}

/// What is saved next to the weights (`model.json`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelCard {
    pub name: String,
    pub settings: TrainSettings,
    /// The split it learned from, the gray levels and the split seed.
    pub trained_on: String,
    pub levels: usize,
    pub data_seed: u64,
    /// Accuracy on the splits it never saw.
    pub accuracy_unseen: f64,
    /// For a discriminator: the generated images it learned to tell apart.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub generated: Option<GeneratedSet>,
}

/// Generated images a discriminator was trained against.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GeneratedSet {
    pub count: usize,
    /// A hash of their tokens: another generator gives another hash.
    pub fingerprint: u64,
}

/// A loaded classifier with its card.
pub struct TrainedClassifier {
    pub model: Classifier<Flex>,
    pub card: ModelCard,
}

/// The directory of a model of this experiment.
pub fn model_dir(cfg: &ExperimentConfig, role: ModelRole) -> PathBuf {
    cfg.run.out_dir().join("models").join(role.name())
}

/// Loads the model of `role` for the digits task of `cfg`, or trains and
/// saves it when it is missing or was trained under other settings.
pub fn load_or_train(cfg: &ExperimentConfig, role: ModelRole) -> anyhow::Result<TrainedClassifier> {
    let levels = cfg.task.levels.unwrap_or(STORED_LEVELS);
    let task = Digits::load(&cfg.task.data_dir, cfg.task.data_seed, levels)
        .context("loading the digits for the image models")?;
    let settings = role.settings(cfg.task.data_seed);
    let dir = model_dir(cfg, role);
    let wanted = |card: &ModelCard| {
        card.settings == settings
            && card.levels == levels
            && card.data_seed == cfg.task.data_seed
            && card.trained_on == role.trained_on().name()
    };
    let device = FlexDevice;
    if let Some(card) = read_card(&dir)?
        && wanted(&card)
    {
        return load_saved(&dir, card, CLASSES);
    }
    let data = labeled(&task, &[role.trained_on()]);
    eprintln!(
        "training the {} ({}, {} images of `{}`, {} epochs) ...",
        role.name(),
        settings.architecture.name(),
        data.len(),
        role.trained_on().name(),
        settings.epochs
    );
    let model = train::<Autodiff<Flex>>(&settings, SIDE, CLASSES, &data, &device);
    let unseen = labeled(&task, &role.checked_on());
    let card = ModelCard {
        name: role.name().into(),
        settings,
        trained_on: role.trained_on().name().into(),
        levels,
        data_seed: cfg.task.data_seed,
        accuracy_unseen: accuracy(&model, &unseen, &device),
        generated: None,
    };
    save(&dir, &model, &card, unseen.len())?;
    Ok(TrainedClassifier { model, card })
}

/// Loads the weights saved in `dir` under `card`.
pub(super) fn load_saved(
    dir: &Path,
    card: ModelCard,
    classes: usize,
) -> anyhow::Result<TrainedClassifier> {
    let fresh = card
        .settings
        .architecture
        .init::<Flex>(SIDE, classes, 0, &FlexDevice);
    let model = mdm::weights::load(fresh, &dir.join("model.safetensors"))
        .with_context(|| format!("loading {}", card.name))?;
    Ok(TrainedClassifier { model, card })
}

/// Saves weights and card into `dir` (the card last: a card on disk means
/// its weights are complete).
pub(super) fn save(
    dir: &Path,
    model: &Classifier<Flex>,
    card: &ModelCard,
    unseen: usize,
) -> anyhow::Result<()> {
    eprintln!(
        "{}: accuracy {:.3} on {unseen} images it never saw",
        card.name, card.accuracy_unseen
    );
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    mdm::weights::save(model, &dir.join("model.safetensors"))?;
    let json = serde_json::to_string_pretty(card)?;
    mdm::atomic::write(&dir.join("model.json"), json.as_bytes())
        .with_context(|| format!("writing {}", dir.join("model.json").display()))?;
    Ok(())
}

pub(super) fn read_card(dir: &Path) -> anyhow::Result<Option<ModelCard>> {
    let path = dir.join("model.json");
    if !path.is_file() {
        return Ok(None);
    }
    let text =
        std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    // An unreadable card is retrained over, not trusted.
    Ok(serde_json::from_str(&text).ok())
}

/// The images of `splits` with their classes.
pub fn labeled(task: &Digits, splits: &[DigitSplit]) -> Vec<Labeled> {
    splits
        .iter()
        .flat_map(|&s| task.examples(s))
        .filter_map(|e| {
            prompted_class(&e.prompt, task.levels()).map(|class| Labeled {
                pixels: intensities(&e.answer, task.levels()),
                class,
            })
        })
        .collect()
}
