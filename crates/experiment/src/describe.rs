//! What a config will do, in a few lines: task, model, memory against what
//! the machine has free, budgets, metrics, rewards, output. `cogrpo check`
//! prints it; `cogrpo run` says it before starting.

use cogrpo_config::tasks::denoiser_config;
use cogrpo_config::{CogrpoConfig, ExperimentConfig, TaskKind};
use cogrpo_vision::{evaluation, registry, store};
use envs::Task;

use crate::plan::{Plan, available_memory, gib};
use crate::work;

/// The plan's lines, each indented and labelled (`  task      ...`).
pub fn plan_lines(
    cfg: &ExperimentConfig,
    task: &dyn Task,
    plan: &Plan,
) -> anyhow::Result<Vec<String>> {
    let mut out = shape_lines(cfg, task, plan);
    out.push(work_line(cfg, task));
    out.push(metrics_line(cfg, task));
    out.push(rewards_line(cfg, task)?);
    if let Some(c) = &cfg.cogrpo {
        out.extend(cogrpo_lines(c));
        out.extend(lora_line(c, &denoiser_config(cfg, task)));
    }
    out.push(format!("  output    {}", cfg.run.out_dir().display()));
    out.push(format!(
        "  watch     tensorboard --logdir {}",
        cfg.run.out_dir().join("tb").display()
    ));
    Ok(out)
}

/// `8.0B`, `170.4M`, `325.2K`: a parameter count as model cards write it.
pub fn short_count(n: usize) -> String {
    match n {
        n if n >= 1_000_000_000 => format!("{:.1}B", n as f64 / 1e9),
        n if n >= 1_000_000 => format!("{:.1}M", n as f64 / 1e6),
        n => format!("{:.1}K", n as f64 / 1e3),
    }
}

/// Task, model, memory and the pre-training and evaluation budgets.
fn shape_lines(cfg: &ExperimentConfig, task: &dyn Task, plan: &Plan) -> Vec<String> {
    let d = denoiser_config(cfg, task);
    let layout = task.layout();
    let p = &cfg.pretrain;
    vec![
        format!(
            "  task      {} (vocabulary {}, prompt {} + answer {} tokens, {} test examples)",
            task.name(),
            task.vocab().len(),
            layout.prompt_len,
            layout.answer_len,
            task.test_examples().len()
        ),
        format!(
            "  model     {} parameters ({}; d_model {}, {} layers, {} heads, d_ff {})",
            short_count(d.num_params()),
            d.num_params(),
            d.d_model,
            d.n_layers,
            d.n_heads,
            d.d_ff
        ),
        format!(
            "  memory    peak about {} (pre-training {}, evaluation {}, Co-GRPO {}); {} free",
            gib(plan.peak().0),
            gib(plan.pretrain_bytes),
            gib(plan.eval_bytes),
            gib(plan.cogrpo_bytes),
            gib(available_memory())
        ),
        match &cfg.model.source {
            Some(dir) if p.steps == 0 => format!(
                "  pretrain  none: the weights of {} as they are",
                dir.display()
            ),
            _ => format!(
                "  pretrain  {} steps x {} sequences ({} tokens per step)",
                p.steps,
                p.batch_size * p.grad_accum,
                p.batch_size * p.grad_accum * layout.seq_len()
            ),
        },
        format!(
            "  eval      {} sampler(s) x steps {:?}{}",
            cfg.eval.samplers.len(),
            cfg.eval.steps,
            if cfg.eval.nll_samples > 0 {
                format!(", ELBO with {} samples", cfg.eval.nll_samples)
            } else {
                String::new()
            }
        ),
    ]
}

/// What the run computes, machine-independent: pre-training and
/// evaluation in sequences, batched forwards and FLOPs.
fn work_line(cfg: &ExperimentConfig, task: &dyn Task) -> String {
    let (p, e) = (work::pretrain(cfg, task), work::eval(cfg, task));
    format!(
        "  work      pre-training {} sequences, {} forward+backward ({}); evaluation {} rows, \
         at most {} batched forwards ({})",
        p.rows,
        p.forwards,
        work::short_flops(p.flops),
        e.rows,
        e.forwards,
        work::short_flops(e.flops)
    )
}

/// The metrics an evaluation reports.
fn metrics_line(cfg: &ExperimentConfig, task: &dyn Task) -> String {
    let mut metrics: Vec<&str> = rewards::verifiers_for(task.verifiers())
        .iter()
        .map(|v| v.name())
        .collect();
    if cfg.task.kind == TaskKind::Digits {
        metrics.extend(evaluation::METRICS);
    }
    format!(
        "  metrics   {}",
        if metrics.is_empty() {
            "(none: ELBO only)".to_string()
        } else {
            metrics.join(", ")
        }
    )
}

/// The rewards Co-GRPO would optimize. Builds the reward set (names
/// resolved, URLs parsed) without starting any plugin or sending a request;
/// learned reward models are trained on first use, so nothing is written.
fn rewards_line(cfg: &ExperimentConfig, task: &dyn Task) -> anyhow::Result<String> {
    let learned = registry::learned_names(cfg, task.verifiers());
    if !learned.is_empty() {
        let adversarial = cfg.cogrpo.as_ref().and_then(|c| c.adversarial.as_ref());
        return Ok(format!(
            "  rewards   {} (learned; trained on first use into {}){}",
            learned.join(", "),
            store::models_dir(cfg).display(),
            adversarial.map_or(String::new(), |a| format!(
                "; {} keeps learning during RL: {} Adam steps every {} iteration(s) against a \
                 replay of {} rollouts, while its accuracy is at most {}",
                a.reward, a.steps, a.update_every, a.replay, a.max_accuracy
            ))
        ));
    }
    match rewards::build_reward_set(&cfg.rewards, task.verifiers()) {
        Ok(set) => Ok(format!(
            "  rewards   {} ({:?})",
            set.names().join(", "),
            cfg.rewards.aggregation
        )),
        Err(e) if cfg.rewards.terms.is_empty() => Ok(format!("  rewards   none yet: {e}")),
        Err(e) => Err(anyhow::anyhow!(e)),
    }
}

/// What a LoRA model factor trains, against the model's size.
fn lora_line(c: &CogrpoConfig, d: &mdm::DenoiserConfig) -> Option<String> {
    let lora = c.lora.as_ref()?;
    let targets: Vec<&str> = lora.targets.iter().map(|t| t.name()).collect();
    let n = crate::plan::lora_params(d, lora) as usize;
    Some(format!(
        "  lora      rank {}, alpha {} on {}: {} adapter parameters train ({:.2}% of the \
         model), the base is frozen ({})",
        lora.rank,
        lora.alpha,
        targets.join(", "),
        short_count(n),
        100.0 * n as f64 / d.num_params().max(1) as f64,
        match lora.base_dtype {
            mdm::BaseDtype::F32 => "float32",
            mdm::BaseDtype::Bf16 => "stored in bfloat16",
        }
    ))
}

/// The arms, their budget and what the schedule learns.
fn cogrpo_lines(c: &CogrpoConfig) -> [String; 2] {
    let arms: Vec<&str> = c.arms.iter().map(|a| a.name()).collect();
    let learned: Vec<&str> = c.schedule.components().iter().map(|x| x.name()).collect();
    [
        format!(
            "  cogrpo    arms base, {}: {} iterations x {} prompts x {} rollouts, T = {}, \
             reference {}",
            arms.join(", "),
            c.iterations,
            c.prompts_per_iteration,
            c.group_size,
            c.steps,
            c.reference.label()
        ),
        format!(
            "  schedule  {:?} head learning [{}]{}",
            c.schedule.kind,
            learned.join(", "),
            if c.schedule.order {
                ", plus the position order"
            } else {
                ""
            }
        ),
    ]
}
