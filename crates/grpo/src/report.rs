//! `report.json` and `report.md` of a Co-GRPO experiment.
//!
//! `report.json`: `{"task", "budget": {"rollouts"}, "arms": {NAME: {"eval":
//! [{"steps", "metric", "value", "nfe"}], "wall_s", ...}}}` with `base` one of
//! the arms. `report.md`: the same numbers as tables, the schedule each arm
//! followed per step, and the PNG plots beside it.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::path::Path;

use envs::Task;
use envs::image::GrayImage;
use serde_json::json;

use cogrpo_config::{CogrpoConfig, ExperimentConfig};
use cogrpo_runtime::files::write_atomic;
use cogrpo_vision::images::write_grid_png;

use cogrpo_eval::EvalRow;

use crate::arms::ArmOutcome;
use crate::state::IterationLog;
use crate::{frontier, plots};

/// Writes `report.json`, `report.md`, the plots and (image tasks) the
/// sample grids into `dir`. `fixed`: the rows of the fixed samplers
/// evaluated beside the arms (`eval.samplers` on the pre-trained model),
/// reported apart and drawn on the frontier.
pub fn write_report(
    dir: &Path,
    cfg: &ExperimentConfig,
    task: &dyn Task,
    (params, pretrain_wall_s): (usize, f64),
    arms: &[ArmOutcome],
    fixed: &[EvalRow],
) -> anyhow::Result<()> {
    let grids = write_sample_grids(dir, task, arms)?;
    let c = cfg.cogrpo.as_ref().expect("report of a Co-GRPO run");
    let budget = (c.iterations * c.prompts_per_iteration * c.group_size) as u64;
    let mut arms_json = serde_json::Map::new();
    for a in arms {
        let eval: Vec<_> = a
            .eval
            .rows
            .iter()
            .map(|r| json!({"steps": r.steps, "metric": r.metric, "value": r.value, "nfe": r.nfe, "n": r.n}))
            .collect();
        arms_json.insert(
            a.name.clone(),
            json!({
                "eval": eval,
                "wall_s": a.train_wall_s + a.eval_wall_s,
                "train_wall_s": a.train_wall_s,
                "rollouts": a.rollouts,
                "schedule": a.eval.schedule,
            }),
        );
    }
    let fixed_json: Vec<_> = fixed
        .iter()
        .map(|r| json!({"sampler": r.sampler, "steps": r.steps, "metric": r.metric, "value": r.value, "nfe": r.nfe, "n": r.n}))
        .collect();
    let report = json!({
        "task": task.name(),
        "seed": cfg.run.seed,
        "budget": {"rollouts": budget},
        "pretrain_wall_s": pretrain_wall_s,
        "arms": arms_json,
        "fixed_samplers": fixed_json,
    });
    write_atomic(
        &dir.join("report.json"),
        serde_json::to_string_pretty(&report)?.as_bytes(),
    )?;
    let mut pngs = plots::write_plots(dir, arms)?;
    pngs.extend(frontier::frontier_plot(dir, arms, fixed)?);
    pngs.extend(grids);
    write_atomic(
        &dir.join("report.md"),
        markdown(
            cfg,
            task,
            (params, pretrain_wall_s),
            budget,
            (arms, fixed),
            &pngs,
        )
        .as_bytes(),
    )?;
    Ok(())
}

/// One PNG per arm and step count of an image task: a row per prompt (class),
/// its first samples side by side.
fn write_sample_grids(
    dir: &Path,
    task: &dyn Task,
    arms: &[ArmOutcome],
) -> anyhow::Result<Vec<(String, String)>> {
    let mut out = Vec::new();
    for arm in arms {
        for (steps, samples) in &arm.eval.samples {
            let mut rows: BTreeMap<&[u32], Vec<GrayImage>> = BTreeMap::new();
            for shown in samples {
                if let Some(image) = task.answer_image(&shown.answer) {
                    rows.entry(&shown.prompt).or_default().push(image);
                }
            }
            if rows.is_empty() {
                continue;
            }
            let file = format!("samples_{}_T{steps}.png", arm.name);
            let grid: Vec<Vec<GrayImage>> = rows.into_values().collect();
            write_grid_png(&dir.join(&file), &grid, 4)?;
            out.push((
                file,
                format!("{} samples at T = {steps}, a row per prompt", arm.name),
            ));
        }
    }
    Ok(out)
}

fn markdown(
    cfg: &ExperimentConfig,
    task: &dyn Task,
    (params, pretrain_wall_s): (usize, f64),
    budget: u64,
    (arms, fixed): (&[ArmOutcome], &[EvalRow]),
    pngs: &[(String, String)],
) -> String {
    let c = cfg.cogrpo.as_ref().expect("report of a Co-GRPO run");
    let prompt_len = task.layout().prompt_len;
    let task = task.name();
    let mut s = String::new();
    let _ = writeln!(s, "# {}: Co-GRPO report\n", cfg.run.name);
    let _ = writeln!(
        s,
        "Task `{task}`, {params} parameters, seed {}. Pre-training {:.0} s. Each RL arm: \
         {} iterations x {} prompts x {} rollouts = **{budget} rollouts** of {} steps from the \
         same pre-trained weights; reference schedule `{}`. Evaluation: {} token decoding, \
         schedules in mode (Gaussian mean, top-scored positions).\n",
        cfg.run.seed,
        pretrain_wall_s,
        c.iterations,
        c.prompts_per_iteration,
        c.group_size,
        c.steps,
        c.reference.label(),
        match (
            c.eval_temperature_for(prompt_len),
            c.eval_learned_temperature
        ) {
            (0.0, true) => "greedy".to_string(),
            (0.0, false) => "greedy (learned temperatures too)".to_string(),
            (t, true) => format!("temperature {t}"),
            (t, false) => format!("temperature {t} (learned temperatures too)"),
        },
    );
    let _ = writeln!(s, "{}", arms_sentence(c, arms));
    if let Some(tuned) = arms.iter().find(|a| a.name == "tuned") {
        let _ = writeln!(
            s,
            "`tuned` = the pre-trained model under the best fixed schedule of the \
             `[cogrpo.tune]` grid, `{}`, chosen by the training reward on the validation split \
             ({} rollouts; every grid point in `tuned_grid.tsv`).\n",
            tuned.fixed_schedule.as_deref().unwrap_or("?"),
            tuned.rollouts
        );
    }
    evaluation_table(&mut s, arms, fixed);
    schedule_tables(&mut s, c.steps, arms);
    training_curves(&mut s, arms);
    validation_tables(&mut s, c, arms);
    for (file, caption) in pngs {
        let _ = writeln!(s, "![{caption}]({file})\n");
    }
    let _ = writeln!(
        s,
        "## Reading this report\n\n\
         - The RL arms share the budget and the pre-trained start; differences between them \
         are what the update mode did. Compare against the spread between seeds (rerun with \
         `--seed`) before reading much into a gap.\n\
         - `reveal` per step shows the schedule actually followed: a learned ratio that \
         reveals more early and less late (or the reverse) is the schedule's contribution.\n\
         - Per-iteration scalars (KL, clip fractions, entropies, tokens/s) are in TensorBoard: \
         `tensorboard --logdir {}`.\n",
        cfg.run.out_dir().join("tb").display()
    );
    s
}

/// What each arm of this run is (only the arms it has; `tuned` is
/// explained apart, with its chosen schedule).
fn arms_sentence(c: &CogrpoConfig, arms: &[ArmOutcome]) -> String {
    let (theta_iterations, phi_iterations) = c.alternation();
    let meaning = |arm: &str| -> Option<String> {
        Some(match arm {
            "base" => "the pre-trained model, reference schedule".into(),
            "model" => "GRPO on the model only".into(),
            "schedule" => "the schedule only, model frozen".into(),
            "joint" => "both every iteration".into(),
            "alternate" => format!(
                "{theta_iterations} iterations of the model, then {phi_iterations} of the \
                 schedule (Co-GRPO)"
            ),
            _ => return None,
        })
    };
    let described: Vec<String> = arms
        .iter()
        .filter_map(|a| meaning(&a.name).map(|m| format!("`{}` = {m}", a.name)))
        .collect();
    format!("Arms: {}.\n", described.join("; "))
}

/// One row per arm, then per fixed sampler of `fixed`, one column per
/// (metric, steps).
fn evaluation_table(s: &mut String, arms: &[ArmOutcome], fixed: &[EvalRow]) {
    let lines = frontier::frontier_curves(arms, fixed);
    let mut columns: Vec<(String, usize)> = Vec::new();
    for r in lines.iter().flat_map(|(_, rows)| rows) {
        let key = (r.metric.clone(), r.steps);
        if !columns.contains(&key) {
            columns.push(key);
        }
    }
    let _ = writeln!(s, "## Evaluation\n");
    if lines.len() > arms.len() {
        let _ = writeln!(
            s,
            "Below the arms: the fixed samplers of `eval.samplers` on the pre-trained model \
             (no RL), judged alike.\n"
        );
    }
    let head: Vec<String> = columns.iter().map(|(m, t)| format!("{m} @{t}")).collect();
    let mut step_counts: Vec<usize> = columns.iter().map(|(_, t)| *t).collect();
    step_counts.sort_unstable();
    step_counts.dedup();
    // One NFE column per step count.
    let at: Vec<String> = step_counts.iter().map(|t| format!("NFE @{t}")).collect();
    let _ = writeln!(
        s,
        "| arm | {} | {} | train s |",
        head.join(" | "),
        at.join(" | ")
    );
    let _ = writeln!(
        s,
        "|---|{}---|",
        "---|".repeat(columns.len() + step_counts.len())
    );
    for (i, (name, rows)) in lines.iter().enumerate() {
        let cells: Vec<String> = columns
            .iter()
            .map(|(m, t)| {
                rows.iter()
                    .find(|r| &r.metric == m && r.steps == *t)
                    .filter(|r| r.value.is_finite())
                    .map_or("-".into(), |r| format!("{:.4}", r.value))
            })
            .collect();
        // Guidance and learned schedules change the cost, so each step
        // count's NFE is shown.
        let nfe: Vec<String> = step_counts
            .iter()
            .map(|t| {
                rows.iter()
                    .find(|r| r.steps == *t)
                    .map_or("-".into(), |r| format!("{:.1}", r.nfe))
            })
            .collect();
        // `frontier_curves` lists the arms first.
        let train_s = arms
            .get(i)
            .map_or("-".into(), |a| format!("{:.0}", a.train_wall_s));
        let _ = writeln!(
            s,
            "| {name} | {} | {} | {train_s} |",
            cells.join(" | "),
            nfe.join(" | "),
        );
    }
}

/// The mean action per step each arm followed at `steps` steps.
fn schedule_tables(s: &mut String, steps: usize, arms: &[ArmOutcome]) {
    let _ = writeln!(s, "\n## Schedule per step (evaluation at T = {steps})\n");
    let _ = writeln!(
        s,
        "Mean action at each step: `reveal` = positions revealed, `position` = where they \
         lie in the answer (0 = first position, 1 = last); learned components as their \
         values (ratio = share of the masked positions).\n"
    );
    for a in arms {
        let Some(per) = a.eval.schedule.get(&steps) else {
            continue;
        };
        let _ = writeln!(s, "**{}**\n", a.name);
        let _ = writeln!(
            s,
            "| step | {} |",
            (0..steps)
                .map(|t| t.to_string())
                .collect::<Vec<_>>()
                .join(" | ")
        );
        let _ = writeln!(s, "|---|{}", "---|".repeat(steps));
        for (name, values) in per {
            let cells: Vec<String> = values.iter().map(|v| fmt(*v)).collect();
            let _ = writeln!(s, "| {name} | {} |", cells.join(" | "));
        }
        let _ = writeln!(s);
    }
}

/// Early and late reward, late solve rate and zero-variance share per arm.
fn training_curves(s: &mut String, arms: &[ArmOutcome]) {
    let _ = writeln!(s, "## Training curves\n");
    let _ = writeln!(
        s,
        "| arm | first 10% reward | last 10% reward | last 10% solve rate | zero-variance groups |"
    );
    let _ = writeln!(s, "|---|---|---|---|---|");
    for a in arms.iter().filter(|a| !a.history.is_empty()) {
        let n = a.history.len();
        let k = (n / 10).max(1);
        let avg = |xs: &[IterationLog], f: &dyn Fn(&IterationLog) -> f64| {
            xs.iter().map(f).sum::<f64>() / xs.len().max(1) as f64
        };
        let first = avg(&a.history[..k], &|h| h.reward_mean);
        let last = avg(&a.history[n - k..], &|h| h.reward_mean);
        let solve = avg(&a.history[n - k..], &|h| h.solve_rate.unwrap_or(f64::NAN));
        let zero = avg(&a.history, &|h| h.zero_variance_share);
        let _ = writeln!(
            s,
            "| {} | {} | {} | {} | {:.1}% |",
            a.name,
            fmt4(first),
            fmt4(last),
            fmt4(solve),
            100.0 * zero
        );
    }
    let _ = writeln!(s);
}

/// With `cogrpo.eval_every`: each arm's validations (the `keep_best`
/// metric, or the reward, at every step count), which checkpoint the
/// evaluation used, and the reward-hacking warnings.
fn validation_tables(s: &mut String, c: &CogrpoConfig, arms: &[ArmOutcome]) {
    let validated: Vec<&ArmOutcome> = arms
        .iter()
        .filter(|a| a.history.iter().any(|h| h.validation.is_some()))
        .collect();
    if validated.is_empty() {
        return;
    }
    let metric = c.keep_best.as_deref().unwrap_or("reward");
    let _ = writeln!(
        s,
        "## Validation during training

`{metric}` on the validation split (never the test \
         prompts) every {} iterations; ± is the gap between two halves of its prompts.\n",
        c.eval_every
    );
    for a in validated {
        let points: Vec<&IterationLog> = a
            .history
            .iter()
            .filter(|h| h.validation.is_some())
            .collect();
        let keys: Vec<String> = points[0]
            .validation
            .iter()
            .flat_map(|v| v.values.keys())
            .filter(|k| k.rsplit_once('@').is_some_and(|(m, _)| m == metric))
            .cloned()
            .collect();
        let _ = writeln!(s, "**{}**\n\n| iteration | {} |", a.name, keys.join(" | "));
        let _ = writeln!(s, "|---|{}", "---|".repeat(keys.len()));
        for h in points {
            let v = h.validation.as_ref().expect("filtered");
            let cells: Vec<String> = keys
                .iter()
                .map(|k| {
                    let x = v.values.get(k).copied().unwrap_or(f64::NAN);
                    let n = v.noise.get(k).copied().unwrap_or(f64::NAN);
                    format!("{} ± {}", fmt4(x), fmt4(n))
                })
                .collect();
            let _ = writeln!(s, "| {} | {} |", h.iteration, cells.join(" | "));
        }
        if let Some(b) = &a.best {
            let _ = writeln!(
                s,
                "\nEvaluated on the test split: the best checkpoint by validation {} = {}, \
                 iteration {} of {}.",
                b.key,
                fmt4(b.value),
                b.iteration,
                a.history.len()
            );
        }
        for w in &a.warnings {
            let _ = writeln!(s, "\n> **Warning**: {w}");
        }
        let _ = writeln!(s);
    }
}

/// Four decimals, or "-" for no value.
fn fmt4(v: f64) -> String {
    if v.is_finite() {
        format!("{v:.4}")
    } else {
        "-".into()
    }
}

fn fmt(v: f64) -> String {
    if v.is_nan() {
        "-".into()
    } else if v.abs() >= 100.0 {
        format!("{v:.0}")
    } else {
        format!("{v:.3}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn arm(name: &str, rows: &[(usize, &str, f64, f64)], history: Vec<IterationLog>) -> ArmOutcome {
        ArmOutcome {
            name: name.into(),
            eval: crate::evaluate::ArmEval {
                rows: rows
                    .iter()
                    .map(|&(steps, metric, value, nfe)| EvalRow {
                        sampler: name.into(),
                        steps,
                        metric: metric.into(),
                        value,
                        n: 10,
                        nfe,
                        wall_s: 1.0,
                    })
                    .collect(),
                ..Default::default()
            },
            train_wall_s: 2.0,
            eval_wall_s: 1.0,
            rollouts: 8,
            history,
            fixed_schedule: None,
            best: None,
            warnings: Vec::new(),
        }
    }

    fn log(iteration: usize, reward: f64) -> IterationLog {
        IterationLog {
            iteration,
            reward_mean: reward,
            solve_rate: None,
            zero_variance_share: 0.5,
            zero_variance_after_resampling: 0.5,
            nfe: 2.0,
            updated_model: true,
            updated_schedule: false,
            schedule: Default::default(),
            discriminator: None,
            validation: None,
        }
    }

    #[test]
    fn the_tables_name_only_run_arms_give_each_step_count_its_nfe_and_show_no_nan() {
        let arms = [
            arm(
                "base",
                &[(2, "solved", 0.25, 2.0), (4, "solved", f64::NAN, 4.0)],
                vec![],
            ),
            arm(
                "joint",
                &[(2, "solved", 0.5, 2.5), (4, "solved", 0.75, 4.0)],
                vec![log(1, 0.1), log(2, 0.3)],
            ),
        ];
        let c: CogrpoConfig =
            toml::from_str("iterations = 2\nsteps = 2\nreference = { kind = \"confidence\" }\n")
                .unwrap();
        let sentence = arms_sentence(&c, &arms);
        assert!(
            sentence.contains("`joint` = both") && sentence.contains("`base`"),
            "{sentence}"
        );
        assert!(
            !sentence.contains("`model`") && !sentence.contains("`alternate`"),
            "{sentence}"
        );

        let mut s = String::new();
        let fixed = [EvalRow {
            sampler: "first_hitting".into(),
            steps: 2,
            metric: "solved".into(),
            value: 0.125,
            n: 10,
            nfe: 2.0,
            wall_s: 1.0,
        }];
        evaluation_table(&mut s, &arms, &fixed);
        assert!(
            s.contains("| arm | solved @2 | solved @4 | NFE @2 | NFE @4 | train s |"),
            "{s}"
        );
        assert!(s.contains("| base | 0.2500 | - | 2.0 | 4.0 | 2 |"), "{s}");
        assert!(
            s.contains("| joint | 0.5000 | 0.7500 | 2.5 | 4.0 | 2 |"),
            "{s}"
        );
        // A fixed sampler below the arms, with no training time.
        assert!(
            s.contains("| first_hitting | 0.1250 | - | 2.0 | - | - |"),
            "{s}"
        );
        assert!(s.contains("Below the arms: the fixed samplers"), "{s}");
        training_curves(&mut s, &arms);
        assert!(s.contains("| joint | 0.1000 | 0.3000 | - | 50.0% |"), "{s}");
        assert!(!s.contains("NaN"), "{s}");
    }

    #[test]
    fn validations_the_evaluated_checkpoint_and_warnings_are_reported() {
        let validated = |iteration, value: f64| IterationLog {
            validation: Some(crate::validation::Validation {
                values: [("solved@2".into(), value), ("reward@2".into(), 1.0)].into(),
                noise: [("solved@2".into(), 0.05), ("reward@2".into(), 0.1)].into(),
            }),
            ..log(iteration, 0.1)
        };
        let mut a = arm(
            "joint",
            &[],
            vec![validated(1, 0.5), validated(2, 0.75), validated(3, 0.6)],
        );
        a.best = Some(crate::validation::Best {
            iteration: 2,
            key: "solved@2".into(),
            value: 0.75,
        });
        a.warnings = vec!["possible reward hacking: ...".into()];
        let c: CogrpoConfig = toml::from_str(
            "iterations = 3\nsteps = 2\neval_every = 1\nkeep_best = \"solved\"\nreference = { \
             kind = \"confidence\" }\n",
        )
        .unwrap();
        let mut s = String::new();
        validation_tables(&mut s, &c, &[arm("base", &[], Vec::new()), a]);
        assert!(s.contains("## Validation during training"), "{s}");
        assert!(
            s.contains("| iteration | solved@2 |"),
            "only the kept metric: {s}"
        );
        assert!(s.contains("| 2 | 0.7500 ± 0.0500 |"), "{s}");
        assert!(
            s.contains("validation solved@2 = 0.7500, iteration 2 of 3"),
            "{s}"
        );
        assert!(s.contains("> **Warning**: possible reward hacking"), "{s}");
        assert!(
            !s.contains("**base**"),
            "an arm without validations has no table: {s}"
        );
    }
}
