//! `cogrpo check`, and the plan `run` says before it starts: task, model,
//! memory against what the machine has free, budgets, metrics, rewards,
//! output folder.

use cogrpo_train::config::{ExperimentConfig, TaskKind};
use cogrpo_train::plan::{Plan, available_memory, gib};
use cogrpo_train::{reward_models, tasks};
use envs::Task;

use crate::Common;

pub(super) fn check(common: &Common) -> anyhow::Result<()> {
    let (cfg, task, plan) = common.load_planned()?;
    println!("{}: OK", common.config.display());
    for line in plan_lines(&cfg, task.as_ref(), &plan)? {
        println!("{line}");
    }
    Ok(())
}

/// What a config will do: task, model, memory, budgets, rewards, output
/// (`check` prints it; `run` says it before starting).
pub(super) fn plan_lines(
    cfg: &ExperimentConfig,
    task: &dyn Task,
    plan: &Plan,
) -> anyhow::Result<Vec<String>> {
    let mut out = Vec::new();
    let d = tasks::denoiser_config(cfg, task);
    let layout = task.layout();
    out.push(format!(
        "  task      {} (vocabulary {}, prompt {} + answer {} tokens, {} test examples)",
        task.name(),
        task.vocab().len(),
        layout.prompt_len,
        layout.answer_len,
        task.test_examples().len()
    ));
    out.push(format!(
        "  model     {} parameters (d_model {}, {} layers, {} heads, d_ff {})",
        d.num_params(),
        d.d_model,
        d.n_layers,
        d.n_heads,
        d.d_ff
    ));
    out.push(format!(
        "  memory    peak about {} (pre-training {}, evaluation {}, Co-GRPO {}); {} free",
        gib(plan.peak().0),
        gib(plan.pretrain_bytes),
        gib(plan.eval_bytes),
        gib(plan.cogrpo_bytes),
        gib(available_memory())
    ));
    let p = &cfg.pretrain;
    out.push(format!(
        "  pretrain  {} steps x {} sequences ({} tokens per step)",
        p.steps,
        p.batch_size * p.grad_accum,
        p.batch_size * p.grad_accum * layout.seq_len()
    ));
    out.push(format!(
        "  eval      {} sampler(s) x steps {:?}{}",
        cfg.eval.samplers.len(),
        cfg.eval.steps,
        if cfg.eval.nll_samples > 0 {
            format!(", ELBO with {} samples", cfg.eval.nll_samples)
        } else {
            String::new()
        }
    ));
    let mut metrics: Vec<&str> = rewards::verifiers_for(task.name())
        .iter()
        .map(|v| v.name())
        .collect();
    if cfg.task.kind == TaskKind::Digits {
        metrics.extend(cogrpo_train::vision::evaluation::METRICS);
    }
    out.push(format!(
        "  metrics   {}",
        if metrics.is_empty() {
            "(none: ELBO only)".to_string()
        } else {
            metrics.join(", ")
        }
    ));
    let learned = reward_models::learned_names(cfg, task.name());
    if !learned.is_empty() {
        // Learned reward models are trained on first use; `check` writes nothing.
        out.push(format!(
            "  rewards   {} (learned; trained on first use into {})",
            learned.join(", "),
            cogrpo_train::vision::store::models_dir(cfg).display()
        ));
    } else {
        // Builds the reward set (names resolved, URLs parsed) without
        // starting any plugin process or sending a request.
        match rewards::build_reward_set(&cfg.rewards, task.name()) {
            Ok(set) => out.push(format!(
                "  rewards   {} ({:?})",
                set.names().join(", "),
                cfg.rewards.aggregation
            )),
            Err(e) if cfg.rewards.terms.is_empty() => {
                out.push(format!("  rewards   none yet: {e}"))
            }
            Err(e) => return Err(anyhow::anyhow!(e)),
        }
    }
    if let Some(c) = &cfg.cogrpo {
        let arms: Vec<&str> = c.arms.iter().map(|a| a.name()).collect();
        out.push(format!(
            "  cogrpo    arms base, {}: {} iterations x {} prompts x {} rollouts, T = {}, \
             reference {}",
            arms.join(", "),
            c.iterations,
            c.prompts_per_iteration,
            c.group_size,
            c.steps,
            c.reference.label()
        ));
        let learned: Vec<&str> = c.schedule.components().iter().map(|x| x.name()).collect();
        out.push(format!(
            "  schedule  {:?} head learning [{}]{}",
            c.schedule.kind,
            learned.join(", "),
            if c.schedule.order {
                ", plus the position order"
            } else {
                ""
            }
        ));
    }
    out.push(format!("  output    {}", cfg.run.out_dir().display()));
    out.push(format!(
        "  watch     tensorboard --logdir {}",
        cfg.run.out_dir().join("tb").display()
    ));
    Ok(out)
}
