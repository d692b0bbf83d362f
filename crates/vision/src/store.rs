//! Training on first use, saving with the settings, loading by name.

use std::path::{Path, PathBuf};

use anyhow::Context;
use burn::backend::flex::FlexDevice;
use burn::backend::{Autodiff, Flex};
use envs::digits::{CLASSES, DigitSplit, Digits, SIDE, intensities, prompted_class};
use serde::{Deserialize, Serialize};

use crate::net::{Architecture, Classifier};
use crate::train::{Labeled, TrainSettings, accuracy, train};
use cogrpo_config::ExperimentConfig;
use cogrpo_config::tasks::load_digits;

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

/// How a model was trained: a saved model is reused only when this is
/// exactly what is wanted now.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Training {
    pub name: String,
    pub settings: TrainSettings,
    /// The split it learned from, the gray levels and the split seed.
    pub trained_on: String,
    pub levels: usize,
    pub data_seed: u64,
    /// For a discriminator: the generated images it learned to tell apart.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub generated: Option<GeneratedSet>,
}

/// What is saved next to the weights (`model.json`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelCard {
    #[serde(flatten)]
    pub training: Training,
    /// Accuracy on the images it never saw.
    pub accuracy_unseen: f64,
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

/// Where this experiment's image models live.
pub fn models_dir(cfg: &ExperimentConfig) -> PathBuf {
    cfg.run.out_dir().join("models")
}

/// The directory of the model `name` of this experiment.
pub fn model_dir(cfg: &ExperimentConfig, name: &str) -> PathBuf {
    models_dir(cfg).join(name)
}

/// Loads the model of `role` for the digits task of `cfg`, or trains and
/// saves it when it is missing or was trained under other settings.
pub fn load_or_train(cfg: &ExperimentConfig, role: ModelRole) -> anyhow::Result<TrainedClassifier> {
    let settings = role.settings(cfg.task.data_seed);
    let training = Training {
        name: role.name().into(),
        settings: settings.clone(),
        trained_on: role.trained_on().name().into(),
        levels: cfg.task.digit_levels(),
        data_seed: cfg.task.data_seed,
        generated: None,
    };
    let dir = model_dir(cfg, role.name());
    if let Some(saved) = load_if_trained_as(&dir, &training, CLASSES)? {
        return Ok(saved);
    }
    let task = load_digits(cfg).context("loading the digits for the image models")?;
    let data = labeled(&task, &[role.trained_on()]);
    tracing::info!(
        "training the {} ({}, {} images of `{}`, {} epochs) ...",
        role.name(),
        settings.architecture.name(),
        data.len(),
        role.trained_on().name(),
        settings.epochs
    );
    let device = FlexDevice;
    let model = train::<Autodiff<Flex>>(&settings, SIDE, CLASSES, &data, &device);
    let unseen = labeled(&task, &role.checked_on());
    let card = ModelCard {
        training,
        accuracy_unseen: accuracy(&model, &unseen, &device),
    };
    save(&dir, &model, &card, unseen.len())?;
    Ok(TrainedClassifier { model, card })
}

/// The model saved in `dir` when it was trained exactly as `training` says.
pub(super) fn load_if_trained_as(
    dir: &Path,
    training: &Training,
    classes: usize,
) -> anyhow::Result<Option<TrainedClassifier>> {
    match read_card(dir)? {
        Some(card) if card.training == *training => Ok(Some(load_saved(dir, card, classes)?)),
        _ => Ok(None),
    }
}

/// Loads the weights saved in `dir` under `card`.
pub(super) fn load_saved(
    dir: &Path,
    card: ModelCard,
    classes: usize,
) -> anyhow::Result<TrainedClassifier> {
    let fresh = card
        .training
        .settings
        .architecture
        .init::<Flex>(SIDE, classes, 0, &FlexDevice);
    let model = mdm::weights::load(fresh, &dir.join("model.safetensors"))
        .with_context(|| format!("loading {}", card.training.name))?;
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
    tracing::info!(
        "{}: accuracy {:.3} on {unseen} images it never saw",
        card.training.name,
        card.accuracy_unseen
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
