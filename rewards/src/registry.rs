//! Config names to rewards: the built-in verifiers of each task, and the
//! construction of a [`RewardSet`] from a `[rewards]` config.

use std::collections::BTreeMap;
use std::time::Duration;

use crate::compose::RewardSet;
use crate::config::{BuiltinTerm, HttpTerm, RewardTerm, RewardsConfig, SubprocessTerm};
use crate::http::{HttpReward, HttpSpec};
use crate::reward::Reward;
use crate::subprocess::{SubprocessReward, SubprocessSpec};
use crate::verifier::{Verifier, VerifierReward};
use crate::{countdown, reversal, star, sudoku};

/// The built-in verifiers of a task, in report order (first = headline
/// metric of `cogrpo eval`).
pub fn verifiers_for(task: &str) -> Vec<Box<dyn Verifier>> {
    match task {
        "sudoku4" => vec![
            Box::new(sudoku::Solved),
            Box::new(sudoku::D1CellAccuracy),
            Box::new(sudoku::ValidCells),
        ],
        "countdown" => vec![
            Box::new(countdown::Solved),
            Box::new(countdown::CountdownReward),
        ],
        "star-tiny" | "star-small" | "star-easy" | "star-medium" | "star-hard" => {
            vec![Box::new(star::ExactMatch), Box::new(star::PrefixCredit)]
        }
        "reversal" => {
            let mut v: Vec<Box<dyn Verifier>> = vec![Box::new(reversal::ContainsReference)];
            v.extend(
                reversal::SPLITS
                    .into_iter()
                    .map(|s| Box::new(s) as Box<dyn Verifier>),
            );
            v
        }
        _ => Vec::new(),
    }
}

/// The verifier used as the training reward when the config names none.
pub fn default_reward(task: &str) -> Option<&'static str> {
    match task {
        // Dense and indifferent to which valid solution was stored.
        "sudoku4" => Some("valid_cells"),
        "countdown" => Some("countdown"),
        "star-tiny" | "star-small" | "star-easy" | "star-medium" | "star-hard" => {
            Some("exact_match")
        }
        "reversal" => Some("contains_reference"),
        // A learned reward model the trainer registers (cogrpo-train's
        // `vision`): the probability of the prompted class.
        "digits" => Some("digit_classifier"),
        _ => None,
    }
}

/// A constructor of an in-process reward registered under a config name.
pub type RewardFactory = Box<dyn Fn() -> Box<dyn Reward> + Send + Sync>;

/// Config names of `kind = "builtin"` terms mapped to rewards: the task's
/// verifiers, plus in-process rewards a Rust user registers.
///
/// ```
/// use rewards::{BatchScores, BoxFuture, Registry, Reward, RewardFailure, RewardItem, RewardsConfig};
///
/// /// Rewards short completions.
/// struct Brevity;
/// impl Reward for Brevity {
///     fn name(&self) -> &str { "brevity" }
///     fn score<'a>(&'a self, batch: &'a [RewardItem]) -> BoxFuture<'a, Result<BatchScores, RewardFailure>> {
///         Box::pin(async move {
///             Ok(BatchScores::new(batch.iter().map(|i| Some(1.0 / (1.0 + i.completion.trim().len() as f32))).collect()))
///         })
///     }
/// }
///
/// let mut registry = Registry::default();
/// registry.register("brevity", || Box::new(Brevity));
/// let cfg: RewardsConfig = toml::from_str(r#"
///     [[terms]]
///     kind = "builtin"
///     name = "brevity"
/// "#).unwrap();
/// let set = registry.build(&cfg, "countdown").unwrap();
/// assert_eq!(set.names(), ["brevity"]);
/// ```
#[derive(Default)]
pub struct Registry {
    custom: BTreeMap<String, RewardFactory>,
}

impl Registry {
    /// Registers `make` under `name`; a name taken by a task verifier is
    /// shadowed by the task's verifier for that task.
    pub fn register(
        &mut self,
        name: &str,
        make: impl Fn() -> Box<dyn Reward> + Send + Sync + 'static,
    ) {
        self.custom.insert(name.to_string(), Box::new(make));
    }

    /// The reward set a `[rewards]` config describes for `task`.
    pub fn build(&self, cfg: &RewardsConfig, task: &str) -> Result<RewardSet, String> {
        build(cfg, task, self)
    }

    /// The in-process reward `name` of `task`: a verifier or a registered one.
    pub fn builtin(&self, task: &str, name: &str) -> Option<Box<dyn Reward>> {
        if let Some(v) = verifiers_for(task).into_iter().find(|v| v.name() == name) {
            return Some(Box::new(VerifierReward(v)));
        }
        self.custom.get(name).map(|make| make())
    }

    fn known(&self, task: &str) -> Vec<String> {
        let mut names: Vec<String> = verifiers_for(task)
            .iter()
            .map(|v| v.name().to_string())
            .collect();
        names.extend(self.custom.keys().cloned());
        names
    }
}

/// The reward set a `[rewards]` config describes for `task`, with the
/// task's verifiers as the only built-ins. Errors name the term
/// (`rewards.terms[i]`) and what is wrong.
pub fn build_reward_set(cfg: &RewardsConfig, task: &str) -> Result<RewardSet, String> {
    Registry::default().build(cfg, task)
}

fn build(cfg: &RewardsConfig, task: &str, registry: &Registry) -> Result<RewardSet, String> {
    let mut set = RewardSet::new(cfg.aggregation, cfg.cost.clone(), cfg.max_failure_fraction)
        .with_failure_window(cfg.failure_window);
    let default_terms;
    let terms = if cfg.terms.is_empty() {
        let name = default_reward(task).ok_or_else(|| {
            format!("task `{task}` has no built-in reward: add a [[rewards.terms]] plugin (docs/reward-protocol.md)")
        })?;
        default_terms = vec![RewardTerm::Builtin(BuiltinTerm {
            name: name.into(),
            ..BuiltinTerm::default()
        })];
        &default_terms
    } else {
        &cfg.terms
    };
    for (i, term) in terms.iter().enumerate() {
        let at = |msg: String| format!("rewards.terms[{i}] ({:?}): {msg}", term.name());
        match term {
            RewardTerm::Builtin(BuiltinTerm { name, weight }) => {
                let reward = registry.builtin(task, name).ok_or_else(|| {
                    let known = registry.known(task);
                    at(format!(
                        "task `{task}` has no built-in reward {name:?}; it has {known:?}"
                    ))
                })?;
                set.push(reward, *weight, None);
            }
            RewardTerm::Subprocess(SubprocessTerm {
                name,
                weight,
                command,
                cwd,
                env,
                timeout_s,
                max_reply_bytes,
                max_batch,
                retries,
            }) => {
                let spec = SubprocessSpec {
                    name: name.clone(),
                    command: command.clone(),
                    cwd: cwd.clone(),
                    env: env.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
                    timeout: Duration::from_secs_f64(*timeout_s),
                    max_reply_bytes: *max_reply_bytes,
                    max_batch: *max_batch,
                    retries: *retries,
                };
                set.push(Box::new(SubprocessReward::new(spec)), *weight, None);
            }
            RewardTerm::Http(HttpTerm {
                name,
                weight,
                url,
                timeout_s,
                concurrency,
                max_batch,
                retries,
                backoff_s,
                max_reply_bytes,
            }) => {
                let spec = HttpSpec {
                    name: name.clone(),
                    url: url.clone(),
                    timeout: Duration::from_secs_f64(*timeout_s),
                    concurrency: *concurrency,
                    max_batch: *max_batch,
                    retries: *retries,
                    backoff: Duration::from_secs_f64(*backoff_s),
                    max_reply_bytes: *max_reply_bytes,
                };
                set.push(Box::new(HttpReward::new(spec).map_err(at)?), *weight, None);
            }
        }
    }
    Ok(set)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_default_reward_is_a_verifier_of_its_task() {
        for task in [
            "sudoku4",
            "countdown",
            "star-tiny",
            "star-small",
            "star-easy",
            "star-medium",
            "star-hard",
            "reversal",
        ] {
            let name = default_reward(task).unwrap();
            assert!(
                verifiers_for(task).iter().any(|v| v.name() == name),
                "{task}"
            );
            let set = build_reward_set(&RewardsConfig::default(), task).unwrap();
            assert_eq!(set.names(), vec![name.to_string()]);
        }
        let err = build_reward_set(&RewardsConfig::default(), "text")
            .err()
            .unwrap();
        assert!(err.contains("no built-in reward"), "{err}");
    }

    #[test]
    fn unknown_builtin_names_list_the_known_ones() {
        let cfg = RewardsConfig {
            terms: vec![RewardTerm::Builtin(BuiltinTerm {
                name: "solvd".into(),
                weight: 1.0,
            })],
            ..RewardsConfig::default()
        };
        let err = build_reward_set(&cfg, "sudoku4").err().unwrap();
        assert!(
            err.contains("rewards.terms[0]") && err.contains("\"solved\""),
            "{err}"
        );
    }
}
