//! The reward set of an experiment: the rewards crate's task verifiers and
//! plugins, plus the project's learned reward models, registered by name
//! (`kind = "builtin", name = "digit_classifier"`), so that a config names a
//! learned model exactly as it names a verifier.

use std::collections::BTreeSet;

use envs::digits::STORED_LEVELS;
use rewards::{Registry, RewardSet, RewardTerm};

use crate::config::{ExperimentConfig, TaskKind};
use crate::vision::{ClassifierReward, ModelRole, load_or_train};

/// The built-in reward names a config uses (its default when it names none).
pub fn builtin_names(cfg: &ExperimentConfig, task: &str) -> BTreeSet<String> {
    if cfg.rewards.terms.is_empty() {
        return rewards::default_reward(task)
            .into_iter()
            .map(String::from)
            .collect();
    }
    cfg.rewards
        .terms
        .iter()
        .filter_map(|t| match t {
            RewardTerm::Builtin { name, .. } => Some(name.clone()),
            _ => None,
        })
        .collect()
}

/// The learned reward models `cfg` names.
pub fn learned_names(cfg: &ExperimentConfig, task: &str) -> Vec<&'static str> {
    let role = ModelRole::Reward;
    let wanted =
        cfg.task.kind == TaskKind::Digits && builtin_names(cfg, task).contains(role.name());
    if wanted {
        vec![role.name()]
    } else {
        Vec::new()
    }
}

/// A registry holding the learned reward models `cfg` names (trained on
/// first use).
pub fn registry(cfg: &ExperimentConfig, task: &str) -> anyhow::Result<Registry> {
    let names: Vec<String> = builtin_names(cfg, task).into_iter().collect();
    registry_with(cfg, &names)
}

/// A registry holding the learned reward models among `names` (trained on
/// first use).
pub fn registry_with(cfg: &ExperimentConfig, names: &[String]) -> anyhow::Result<Registry> {
    let mut registry = Registry::default();
    let role = ModelRole::Reward;
    if cfg.task.kind == TaskKind::Digits && names.iter().any(|n| n == role.name()) {
        let trained = load_or_train(cfg, role)?;
        let levels = cfg.task.levels.unwrap_or(STORED_LEVELS);
        let reward = ClassifierReward::new(role.name(), trained.model, levels);
        registry.register(role.name(), move || Box::new(reward.clone()));
    }
    Ok(registry)
}

/// The reward set `cfg`'s `[rewards]` describes for `task`.
pub fn reward_set(cfg: &ExperimentConfig, task: &str) -> anyhow::Result<RewardSet> {
    registry(cfg, task)?
        .build(&cfg.rewards, task)
        .map_err(anyhow::Error::msg)
}
