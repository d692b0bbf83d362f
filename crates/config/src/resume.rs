//! What may change between a checkpoint's config and the config that
//! resumes (or reuses) it. A resumed run must be the run it continues, so a
//! change to anything that shapes the training (data, model, optimizer,
//! seed, rewards, the Co-GRPO algorithm) is refused, naming the keys, unless
//! `run.allow_config_change` (`--allow-config-change`) says the user means
//! it. What only says how to watch or evaluate the run, or how to reach a
//! reward plugin, may change freely: fixing a plugin's timeout must not
//! strand the run.

use toml::Value;

use crate::experiment::ExperimentConfig;

/// What the checkpoint holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// A pre-training checkpoint: `[task]`, `[model]`, `[pretrain]` and the seed.
    Pretrain,
    /// A Co-GRPO arm: also `[rewards]` and `[cogrpo]`.
    Arm,
}

/// Keys that may differ in every scope (dotted prefixes).
const FREE: [&str; 12] = [
    "run.name",
    "run.out_dir",
    "run.device",
    "run.threads",
    "run.allow_config_change",
    "sampler",
    "eval",
    "pretrain.log_every",
    "pretrain.checkpoint_every",
    "pretrain.keep_checkpoints",
    "cogrpo.log_every",
    "cogrpo.checkpoint_every",
];

impl Scope {
    /// The sections (dotted prefixes) whose keys shape this checkpoint.
    fn shaping(self) -> &'static [&'static str] {
        match self {
            Scope::Pretrain => &["task", "model", "pretrain", "run.seed"],
            Scope::Arm => &["task", "model", "pretrain", "run.seed", "rewards", "cogrpo"],
        }
    }

    /// Keys inside those sections that may differ besides [`FREE`].
    fn free(self) -> &'static [&'static str] {
        match self {
            Scope::Pretrain => &FREE_FOR_PRETRAINING,
            Scope::Arm => &FREE_FOR_ARMS,
        }
    }
}

/// Keys that may differ for pre-training besides [`FREE`]: training longer
/// (or shorter) is what a resume is for; the learning rate schedule follows
/// the new total.
const FREE_FOR_PRETRAINING: [&str; 1] = ["pretrain.steps"];

/// Keys that may differ for an arm besides [`FREE`]: the number of
/// iterations (nothing else depends on it: training longer is a resume),
/// evaluation, the arm list, the tuned baseline's grid, and how plugins are
/// reached.
const FREE_FOR_ARMS: [&str; 10] = [
    "cogrpo.iterations",
    "cogrpo.eval_every",
    "cogrpo.keep_best",
    "cogrpo.eval_steps",
    "cogrpo.eval_temperature",
    "cogrpo.eval_learned_temperature",
    "cogrpo.arms",
    "cogrpo.tune",
    "rewards.max_failure_fraction",
    "rewards.failure_window",
];

/// Per reward term: transport settings, free for arms.
const FREE_TERM_KEYS: [&str; 6] = [
    "timeout_s",
    "concurrency",
    "max_batch",
    "retries",
    "backoff_s",
    "max_reply_bytes",
];

/// The keys that differ between `prev` (the checkpoint's) and `cfg` and
/// matter for `scope`, as dotted paths in config order.
pub fn conflicts(prev: &ExperimentConfig, cfg: &ExperimentConfig, scope: Scope) -> Vec<String> {
    let (Ok(a), Ok(b)) = (Value::try_from(prev), Value::try_from(cfg)) else {
        return vec!["(the configs cannot be compared)".into()];
    };
    let mut changed = Vec::new();
    diff("", &a, &b, &mut changed);
    changed.retain(|key| matters(key, scope));
    changed
}

fn matters(key: &str, scope: Scope) -> bool {
    let under = |prefix: &&str| key == *prefix || key.starts_with(&format!("{prefix}."));
    // rewards.terms[i].timeout_s and the like: how a plugin is reached.
    let transport = key.starts_with("rewards.terms[")
        && key
            .rsplit_once('.')
            .is_some_and(|(_, leaf)| FREE_TERM_KEYS.contains(&leaf));
    let free = transport || FREE.iter().chain(scope.free()).any(under);
    !free && scope.shaping().iter().any(under)
}

/// Dotted paths where `a` and `b` differ: tables key by key, arrays of
/// tables element by element (`rewards.terms[1].url`), anything else whole.
fn diff(path: &str, a: &Value, b: &Value, out: &mut Vec<String>) {
    match (a, b) {
        (Value::Table(x), Value::Table(y)) => {
            let mut keys: Vec<&String> = x.keys().chain(y.keys()).collect();
            keys.sort();
            keys.dedup();
            for k in keys {
                let sub = if path.is_empty() {
                    k.clone()
                } else {
                    format!("{path}.{k}")
                };
                match (x.get(k), y.get(k)) {
                    (Some(u), Some(v)) => diff(&sub, u, v, out),
                    _ => out.push(sub),
                }
            }
        }
        (Value::Array(x), Value::Array(y))
            if x.len() == y.len() && x.iter().chain(y).all(Value::is_table) =>
        {
            for (i, (u, v)) in x.iter().zip(y).enumerate() {
                diff(&format!("{path}[{i}]"), u, v, out);
            }
        }
        _ if a != b => out.push(path.to_string()),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::load::load;
    use std::path::Path;

    fn with(file: &str, sets: &[&str]) -> ExperimentConfig {
        let path = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../experiments")
            .join(file);
        let sets: Vec<String> = sets.iter().map(|s| s.to_string()).collect();
        load(&path, &sets).unwrap()
    }

    #[test]
    fn training_changes_are_named_and_watching_changes_are_free() {
        let base = with("smoke/sudoku4-cogrpo.toml", &[]);
        let changed = with(
            "smoke/sudoku4-cogrpo.toml",
            &[
                "pretrain.lr=0.5",
                "pretrain.batch_size=4",
                "pretrain.log_every=1",
                "pretrain.steps=40",
                "eval.batch_size=3",
            ],
        );
        assert_eq!(
            conflicts(&base, &changed, Scope::Pretrain),
            vec!["pretrain.batch_size", "pretrain.lr"]
        );
        let arm_only = with(
            "smoke/sudoku4-cogrpo.toml",
            &["cogrpo.lr_model=0.5", "cogrpo.arms=[\"model\"]"],
        );
        assert!(conflicts(&base, &arm_only, Scope::Pretrain).is_empty());
        // Longer pre-training continues the model, but is another arm start.
        let longer = with("smoke/sudoku4-cogrpo.toml", &["pretrain.steps=40"]);
        assert_eq!(
            conflicts(&base, &longer, Scope::Arm),
            vec!["pretrain.steps"]
        );
        assert_eq!(
            conflicts(&base, &arm_only, Scope::Arm),
            vec!["cogrpo.lr_model"]
        );
    }

    #[test]
    fn an_arm_is_reused_when_only_evaluation_tuning_or_transport_settings_change() {
        let base = with("smoke/digits-cogrpo.toml", &[]);
        let same: [&[&str]; 3] = [
            &["cogrpo.eval_steps=[2, 4]"],
            &["cogrpo.tune.guidance=[3.0]"],
            &["cogrpo.arms=[\"model\"]"],
        ];
        for sets in same {
            assert!(
                conflicts(&base, &with("smoke/digits-cogrpo.toml", sets), Scope::Arm).is_empty(),
                "{sets:?}"
            );
        }
        let differs: [(&[&str], &str); 3] = [
            (&["cogrpo.lr_model=0.5"], "cogrpo.lr_model"),
            (&["task.levels=9"], "task.levels"),
            (&["run.seed=4"], "run.seed"),
        ];
        for (sets, key) in differs {
            assert_eq!(
                conflicts(&base, &with("smoke/digits-cogrpo.toml", sets), Scope::Arm),
                vec![key]
            );
        }
    }

    #[test]
    fn a_plugin_timeout_may_change_but_not_its_command_or_weight() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../experiments/smoke/sudoku4-cogrpo.toml");
        let plugin = |timeout: f64, weight: f64, program: &str| {
            let text = std::fs::read_to_string(&path).unwrap()
                + &format!(
                    "\n[[rewards.terms]]\nkind = \"subprocess\"\nname = \"p\"\ncommand = [\"{program}\"]\n\
                     timeout_s = {timeout}\nweight = {weight}\n"
                );
            crate::load::load_str(&text, "test", &[]).unwrap()
        };
        let base = plugin(1.0, 1.0, "a");
        assert!(conflicts(&base, &plugin(30.0, 1.0, "a"), Scope::Arm).is_empty());
        assert_eq!(
            conflicts(&base, &plugin(1.0, 2.0, "a"), Scope::Arm),
            vec!["rewards.terms[0].weight"]
        );
        assert_eq!(
            conflicts(&base, &plugin(1.0, 1.0, "b"), Scope::Arm),
            vec!["rewards.terms[0].command"]
        );
    }
}
