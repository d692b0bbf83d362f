//! Reading configs: TOML file -> table -> `--set` overrides -> typed config
//! (with the failing key's path) -> validation.

use std::path::Path;

use toml::{Table, Value};

use envs::{Problem, Validate};

use crate::experiment::ExperimentConfig;
use crate::reference::missing_keys;

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// (The I/O error is in the message, not a source, so that it is
    /// printed once.)
    #[error("cannot read config {path}: {error}")]
    Read { path: String, error: std::io::Error },
    #[error("{origin}: not valid TOML: {message}")]
    Syntax { origin: String, message: String },
    #[error("--set {arg}: {message}")]
    Override { arg: String, message: String },
    #[error("{origin}: key `{key}`: {message}")]
    Key {
        origin: String,
        key: String,
        message: String,
    },
    #[error("{origin}: invalid config:\n{}", list(.problems))]
    Invalid {
        origin: String,
        problems: Vec<Problem>,
    },
}

fn list(problems: &[Problem]) -> String {
    problems
        .iter()
        .map(|p| format!("  - {p}"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// Loads, overrides and validates a config file.
pub fn load(path: &Path, overrides: &[String]) -> Result<ExperimentConfig, ConfigError> {
    let text = envs::files::read_regular_to_string(path).map_err(|error| ConfigError::Read {
        path: path.display().to_string(),
        error,
    })?;
    load_str(&text, &path.display().to_string(), overrides)
}

/// As [`load`], from text; `origin` names it in errors.
pub fn load_str(
    text: &str,
    origin: &str,
    overrides: &[String],
) -> Result<ExperimentConfig, ConfigError> {
    let mut table: Table = toml::from_str(text).map_err(|e| ConfigError::Syntax {
        origin: origin.into(),
        message: e.to_string(),
    })?;
    for arg in overrides {
        let (key, value) = parse_override(arg)?;
        set_path(&mut table, &key, value).map_err(|message| ConfigError::Override {
            arg: arg.clone(),
            message,
        })?;
    }
    // Serde fills every missing key from its section's `Default`: a key the
    // file must give is checked here, before that.
    let mut missing = missing_keys(&table);
    // A model directory gives the shape, and may be used as it is.
    let has_source = table.get("model").and_then(|m| m.get("source")).is_some();
    if has_source {
        missing.retain(|k| !(k.starts_with("model.") || k.starts_with("pretrain")));
    }
    if !missing.is_empty() {
        return Err(ConfigError::Invalid {
            origin: origin.into(),
            problems: missing
                .into_iter()
                .map(|key| Problem {
                    key,
                    message: "required: the file must give it (docs/config.md)".into(),
                })
                .collect(),
        });
    }
    let mut cfg: ExperimentConfig =
        serde_path_to_error::deserialize(Value::Table(table)).map_err(|e| {
            let key = e.path().to_string();
            ConfigError::Key {
                origin: origin.into(),
                key: if key == "." {
                    "(top level)".into()
                } else {
                    key
                },
                // toml appends "in `section`"; the path already says where.
                message: e
                    .into_inner()
                    .to_string()
                    .lines()
                    .next()
                    .unwrap_or("")
                    .trim()
                    .to_string(),
            }
        })?;
    let mut problems = crate::released::resolve(&mut cfg.model);
    if problems.is_empty() {
        problems = cfg.problems();
    }
    if problems.is_empty() {
        cfg.run.resolve_threads();
        Ok(cfg)
    } else {
        Err(ConfigError::Invalid {
            origin: origin.into(),
            problems,
        })
    }
}

/// Splits `key.path=value`; the value is read as a TOML value (`4`, `1e-3`,
/// `true`, `[1, 2]`, `"x"`), or taken as a bare string when it is not one.
pub fn parse_override(arg: &str) -> Result<(String, Value), ConfigError> {
    let (key, raw) = arg.split_once('=').ok_or_else(|| ConfigError::Override {
        arg: arg.into(),
        message: "expected KEY=VALUE, e.g. pretrain.steps=100".into(),
    })?;
    let key = key.trim();
    if key.is_empty() || key.split('.').any(str::is_empty) {
        return Err(ConfigError::Override {
            arg: arg.into(),
            message: "empty key segment".into(),
        });
    }
    let raw = raw.trim();
    let value = toml::from_str::<Table>(&format!("v = {raw}"))
        .ok()
        .and_then(|mut t| t.remove("v"))
        .unwrap_or_else(|| Value::String(raw.to_string()));
    Ok((key.to_string(), value))
}

/// Sets `a.b.c` (numeric segments index arrays), creating missing tables.
fn set_path(table: &mut Table, key: &str, value: Value) -> Result<(), String> {
    let parts: Vec<&str> = key.split('.').collect();
    let mut cur: &mut Value = table.entry(parts[0].to_string()).or_insert_with(|| {
        if parts.len() == 1 {
            value.clone()
        } else {
            Value::Table(Table::new())
        }
    });
    if parts.len() == 1 {
        *cur = value;
        return Ok(());
    }
    for (i, part) in parts.iter().enumerate().skip(1) {
        let last = i == parts.len() - 1;
        let here = parts[..i].join(".");
        cur = match cur {
            Value::Table(t) => t.entry(part.to_string()).or_insert_with(|| {
                if last {
                    value.clone()
                } else {
                    Value::Table(Table::new())
                }
            }),
            Value::Array(a) => {
                let idx: usize = part.parse().map_err(|_| {
                    format!("`{here}` is a list: index it with a number, not `{part}`")
                })?;
                let n = a.len();
                a.get_mut(idx)
                    .ok_or_else(|| format!("`{here}` has {n} entries, no index {idx}"))?
            }
            _ => return Err(format!("`{here}` is a value, not a table")),
        };
        if last {
            *cur = value;
            return Ok(());
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::experiment::MINIMAL;

    fn err(text: &str, sets: &[&str]) -> String {
        let sets: Vec<String> = sets.iter().map(|s| s.to_string()).collect();
        load_str(text, "x.toml", &sets).unwrap_err().to_string()
    }

    #[test]
    fn minimal_config_loads_with_defaults() {
        let cfg = load_str(MINIMAL, "x.toml", &[]).unwrap();
        assert_eq!(cfg.pretrain.grad_accum, 1);
        assert_eq!(cfg.run.out_dir(), Path::new("runs/t"));
        let reseeded = load_str(MINIMAL, "x.toml", &["run.seed=3".into()]).unwrap();
        assert_eq!(reseeded.run.out_dir(), Path::new("runs/t-seed3"));
        assert_eq!(cfg.eval.samplers[0].temperature, 0.0);
        // The resolved config round-trips.
        let text = toml::to_string(&cfg).unwrap();
        assert_eq!(load_str(&text, "resolved", &[]).unwrap(), cfg);
    }

    #[test]
    fn an_adversarial_reward_must_be_a_named_image_discriminator() {
        let cogrpo = "[cogrpo]\niterations = 1\nsteps = 2\nreference = { kind = \"confidence\", \
                      temperature = 1.0 }\narms = [\"model\"]\n[cogrpo.adversarial]\n";
        let e = err(&format!("{MINIMAL}{cogrpo}"), &[]);
        assert!(
            e.contains(
                "`cogrpo.adversarial.reward`: `digit_realism` is not among [[rewards.terms]]"
            ) && e.contains("`cogrpo.adversarial`: the discriminator rewards judge images"),
            "{e}"
        );
        // Named, on digits: accepted.
        let digits = MINIMAL.replace("kind = \"sudoku4\"", "kind = \"digits\"");
        let terms = "[[rewards.terms]]\nkind = \"builtin\"\nname = \"digit_realism\"\n";
        let text = format!("{digits}{terms}{cogrpo}");
        let cfg = load_str(&text, "x.toml", &[]).unwrap();
        assert!(cfg.cogrpo.unwrap().adversarial.is_some());
    }

    #[test]
    fn unknown_keys_are_named_with_their_path() {
        let e = err(&MINIMAL.replace("d_ff = 64", "d_ff = 64\nd_fff = 3"), &[]);
        assert!(e.contains("key `model.d_fff`: unknown field"), "{e}");
        let e = err(
            &MINIMAL.replace("temperature = 0.0", "temprature = 0.0"),
            &[],
        );
        assert!(
            e.contains("eval.samplers[0]") && e.contains("temprature"),
            "{e}"
        );
    }

    #[test]
    fn wrong_types_and_values_are_named() {
        let e = err(&MINIMAL.replace("steps = 10", "steps = \"ten\""), &[]);
        assert!(e.contains("pretrain.steps"), "{e}");
        let e = err(
            &MINIMAL.replace("kind = \"sudoku4\"", "kind = \"chess\""),
            &[],
        );
        assert!(e.contains("task.kind") && e.contains("chess"), "{e}");
        let e = err(MINIMAL, &["model.n_heads=3"]);
        assert!(
            e.contains("`model.n_heads`") && e.contains("divisible"),
            "{e}"
        );
        let e = err(MINIMAL, &["pretrain.lr=-1", "eval.steps=[0]"]);
        assert!(
            e.contains("`pretrain.lr`") && e.contains("`eval.steps`"),
            "{e}"
        );
        let e = err(MINIMAL, &["eval.steps=[]"]);
        assert!(e.contains("`eval.samplers[0]`: no step count"), "{e}");
        let e = err(MINIMAL, &["eval.samplers.0.guidance=1.0"]);
        assert!(e.contains("prompt_dropout"), "{e}");
        let e = err("[run\nname=1", &[]);
        assert!(e.contains("not valid TOML"), "{e}");
        let e = err(
            &MINIMAL.replace("[pretrain]\nsteps = 10", "[pretrain]"),
            &[],
        );
        assert!(e.contains("pretrain") && e.contains("steps"), "{e}");
    }

    #[test]
    fn overrides_set_nested_keys_lists_and_strings() {
        let sets = [
            "pretrain.steps=3",
            "eval.steps=[4, 8]",
            "run.name=other",
            "eval.samplers.0.kind=ancestral",
            "run.out_dir=/tmp/x y",
        ]
        .map(String::from);
        let cfg = load_str(MINIMAL, "x.toml", &sets).unwrap();
        assert_eq!(cfg.pretrain.steps, 3);
        assert_eq!(cfg.eval.steps, vec![4, 8]);
        assert_eq!(cfg.run.name, "other");
        assert_eq!(cfg.run.out_dir(), Path::new("/tmp/x y"));
        assert_eq!(cfg.eval.samplers[0].kind, policy::SamplerKind::Ancestral);
        let cfg = load_str(MINIMAL, "x.toml", &["eval.samplers.0.steps=3".into()]).unwrap();
        assert_eq!(
            cfg.sweep().iter().map(|s| s.steps).collect::<Vec<_>>(),
            vec![3]
        );
        let cfg = load_str(MINIMAL, "x.toml", &[]).unwrap();
        assert_eq!(
            cfg.sweep().iter().map(|s| s.steps).collect::<Vec<_>>(),
            vec![1, 2]
        );
        let e = err(MINIMAL, &["eval.samplers.5.kind=ancestral"]);
        assert!(e.contains("no index 5"), "{e}");
        let e = err(MINIMAL, &["pretrain.steps.x=1"]);
        assert!(e.contains("not a table"), "{e}");
        let e = err(MINIMAL, &["pretrain.steps"]);
        assert!(e.contains("KEY=VALUE"), "{e}");
    }

    #[test]
    fn block_wise_samplers_need_a_step_per_block_of_the_answer() {
        // MINIMAL sweeps 1 and 2 steps; sudoku4's answer has 16 positions.
        let with = |block: &str| {
            let set = format!("eval.samplers.0.block_length={block}");
            load_str(MINIMAL, "x.toml", &[set]).unwrap()
        };
        assert_eq!(with("0").check_blocks(16), Ok(()));
        assert_eq!(with("16").check_blocks(16), Ok(()), "one block");
        let e = with("8").check_blocks(16).unwrap_err();
        assert!(
            e.contains("`eval.samplers[0].block_length`") && e.contains("2 blocks"),
            "{e}"
        );
        let two_steps = load_str(
            MINIMAL,
            "x.toml",
            &[
                "eval.steps=[2]".into(),
                "eval.samplers.0.block_length=8".into(),
            ],
        )
        .unwrap();
        assert_eq!(two_steps.check_blocks(16), Ok(()), "two blocks, two steps");
        // Co-GRPO's reference: at its training steps and evaluation steps.
        let cogrpo = format!(
            "{MINIMAL}[cogrpo]\niterations = 1\nsteps = 4\neval_steps = [2, 8]\narms = \
             [\"model\"]\nreference = {{ kind = \"confidence\", temperature = 1.0, \
             block_length = 4 }}\n"
        );
        let e = load_str(&cogrpo, "x.toml", &[])
            .unwrap()
            .check_blocks(16)
            .unwrap_err();
        assert!(
            e.contains("`cogrpo.reference.block_length`") && e.contains("its 2 steps"),
            "{e}"
        );
        let fits = load_str(&cogrpo, "x.toml", &["cogrpo.eval_steps=[4, 8]".into()]).unwrap();
        assert_eq!(fits.check_blocks(16), Ok(()));
    }
}
