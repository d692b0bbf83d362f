//! The Co-GRPO training loop of one arm: roll out, score, update, log.

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, bail};
use burn::module::{AutodiffModule, Module};
use burn::optim::{AdamWConfig, Optimizer};
use burn::tensor::backend::AutodiffBackend;
use envs::seeding::{derive_key, purpose};
use envs::{Canvas, Example, Task, Trajectory};
use mdm::Denoiser;
use policy::learned::SchedulePolicy;
use policy::{Act, Rollout};
use rewards::{RewardItem, RolloutCost};

use super::loss::Clip;
use super::samples::{build_samples, mean, schedule_per_step, std_dev, zero_variance_groups};
use super::state::{
    ARM_FORMAT_VERSION, ArmState, IterationLog, TrainedArm, init_policy, read_arm_state,
};
use super::update::{FactorStats, Sample, frozen, model_gradients, schedule_gradients};
use crate::checkpoint::{self, CheckpointDir, load_record, save_record};
use crate::config::{ExperimentConfig, UpdateMode};
use crate::logging::{Progress, Scalars};
use crate::optim::clip_global_norm;
use crate::run_dir::write_atomic;
use crate::tasks::denoiser_config;
/// Runs (or with `resume` continues) one arm's Co-GRPO from the pre-trained
/// checkpoint `init`, writing checkpoints under `arm_dir/checkpoints`.
#[allow(clippy::too_many_arguments)]
pub fn train_arm<B: AutodiffBackend>(
    cfg: &ExperimentConfig,
    task: &dyn Task,
    mode: UpdateMode,
    arm_dir: &Path,
    init: &Path,
    device: &B::Device,
    resume: bool,
    log: &mut Scalars,
) -> anyhow::Result<TrainedArm<B>> {
    let c = cfg
        .cogrpo
        .as_ref()
        .context("the config has no [cogrpo] section")?;
    let seed = cfg.run.seed;
    let dcfg = denoiser_config(cfg, task);
    let layout = task.layout();
    let ckpts = CheckpointDir::new(arm_dir.join("checkpoints"));
    let config_toml = toml::to_string_pretty(cfg)?;
    let reference = c.reference_sampler();
    let reward_set =
        rewards::build_reward_set(&cfg.rewards, task.name()).map_err(|e| anyhow::anyhow!(e))?;
    let verifiers = rewards::verifiers_for(task.name());
    let clip = Clip {
        low: c.epsilon_low,
        high: c.epsilon_high,
    };
    let mut optim_model = AdamWConfig::new()
        .with_weight_decay(c.weight_decay as f32)
        .init::<B, Denoiser<B>>();
    let mut optim_schedule = AdamWConfig::new()
        .with_weight_decay(0.0)
        .init::<B, SchedulePolicy<B>>();

    let (mut model, mut policy, mut state) = match (resume, ckpts.latest()) {
        (true, Some(dir)) => {
            let state = read_arm_state(&dir)?;
            if state.seed != seed || state.arm != mode {
                bail!(
                    "{} holds arm `{}` with seed {}, not `{}` with seed {seed}",
                    dir.display(),
                    state.arm.name(),
                    state.seed,
                    mode.name()
                );
            }
            let model = checkpoint::load_model::<B>(&dir.join("model.safetensors"), &dcfg, device)?;
            let policy = init_policy::<B>(c, task, device)
                .load_record(load_record(&dir.join("schedule"), device)?);
            optim_model = optim_model.load_record(load_record(&dir.join("optimizer"), device)?);
            optim_schedule =
                optim_schedule.load_record(load_record(&dir.join("schedule_optimizer"), device)?);
            eprintln!(
                "resuming arm `{}` at iteration {}",
                mode.name(),
                state.iteration
            );
            (model, policy, state)
        }
        (false, Some(dir)) => bail!(
            "{} already holds checkpoint {}; resume it or remove it (nothing was overwritten)",
            arm_dir.display(),
            dir.display()
        ),
        (_, None) => {
            let model = checkpoint::load_model::<B>(init, &dcfg, device)
                .with_context(|| format!("cannot load the pre-trained model {}", init.display()))?;
            let state = ArmState {
                format_version: ARM_FORMAT_VERSION,
                arm: mode,
                iteration: 0,
                seed,
                rollouts: 0,
                wall_s: 0.0,
                init: init.to_path_buf(),
                history: Vec::new(),
            };
            (model, init_policy::<B>(c, task, device), state)
        }
    };
    let reference_model = (c.beta > 0.0)
        .then(|| checkpoint::load_model::<B::InnerBackend>(init, &dcfg, device))
        .transpose()?;
    let reference_policy =
        (c.beta_schedule > 0.0).then(|| frozen(&init_policy::<B>(c, task, device)));

    let save = |model: &Denoiser<B>,
                policy: &SchedulePolicy<B>,
                om: &_,
                os: &_,
                state: &ArmState|
     -> anyhow::Result<PathBuf> {
        ckpts.save_with(state.iteration, 2, |dir| {
            mdm::weights::save(model, &dir.join("model.safetensors"))?;
            save_record::<_, B>(
                Optimizer::<Denoiser<B>, B>::to_record(om),
                &dir.join("optimizer"),
            )?;
            save_record::<_, B>(policy.clone().into_record(), &dir.join("schedule"))?;
            save_record::<_, B>(
                Optimizer::<SchedulePolicy<B>, B>::to_record(os),
                &dir.join("schedule_optimizer"),
            )?;
            write_atomic(
                &dir.join("state.json"),
                serde_json::to_string_pretty(state)?.as_bytes(),
            )?;
            write_atomic(&dir.join("config.toml"), config_toml.as_bytes())
        })
    };

    let (b, g) = (c.prompts_per_iteration, c.group_size);
    let progress = Progress::new(c.iterations as u64, mode.name());
    progress.set_position(state.iteration as u64);
    let segment = Instant::now();
    let wall_before = state.wall_s;
    for it in state.iteration..c.iterations {
        let (train_theta, train_phi) = mode.phase(it, c.alternate_every);

        // 1. Roll out G trajectories for each of B prompts, all rows at once;
        // 2. score them; advantages are relative to each prompt's group.
        let inner_model = model.valid();
        let inner_policy = policy.valid();
        // Round 0 is the iteration's draw; resampling rounds key their own.
        let key = |parts: &[u64], round: u64| {
            let mut k = parts.to_vec();
            if round > 0 {
                k.push(round);
            }
            derive_key(&k)
        };
        let roll_out = |round: u64, slots: &[usize]| -> anyhow::Result<Groups> {
            let t0 = Instant::now();
            let examples: Vec<Example> = slots
                .iter()
                .map(|&i| {
                    task.train_example(key(
                        &[purpose::RL_PROMPTS, seed, it as u64, i as u64],
                        round,
                    ))
                })
                .collect();
            let mut canvas =
                Canvas::from_examples(&examples, g, layout.seq_len(), dcfg.mask_id(), |ex, s| {
                    key(&[purpose::ROLLOUT, seed, it as u64, ex.id, s as u64], round)
                })?;
            let rollout = Rollout {
                model: &inner_model,
                policy: mode.uses_schedule().then_some(&inner_policy),
                reference: &reference,
                steps: c.steps,
                act: Act::Sample,
                temperature: None,
                seed: key(&[purpose::SAMPLER, seed, it as u64], round),
                device: device.clone(),
            };
            let (trajectories, gen_stats) = rollout.run(&mut canvas, true)?;
            let rollout_s = t0.elapsed().as_secs_f64();
            let items: Vec<RewardItem> = trajectories
                .iter()
                .enumerate()
                .map(|(i, t)| RewardItem::new(&examples[i / g], i % g, t.answer(), task.vocab()))
                .collect();
            let costs: Vec<RolloutCost> = gen_stats
                .nfe
                .iter()
                .map(|&nfe| RolloutCost {
                    nfe: nfe as f64,
                    wall_s: rollout_s / trajectories.len().max(1) as f64,
                    answer_len: layout.answer_len,
                })
                .collect();
            let scored = reward_set.score(&items, &costs);
            Ok(Groups {
                trajectories,
                items,
                nfe: gen_stats.mean_nfe(),
                rollout_s,
                scored,
            })
        };
        let first = roll_out(0, &(0..b).collect::<Vec<_>>())?;
        let mut rollout_s = first.rollout_s;
        let nfe = first.nfe;
        let Groups {
            mut trajectories,
            mut items,
            scored,
            ..
        } = first;
        state.rollouts += trajectories.len() as u64;
        let scored = match scored {
            Ok(s) => s,
            Err(e) => {
                state.wall_s = wall_before + segment.elapsed().as_secs_f64();
                let dir = save(&model, &policy, &optim_model, &optim_schedule, &state)?;
                return Err(anyhow::Error::new(e).context(format!(
                    "iteration {}: stopped; checkpoint {} holds the last completed iteration",
                    it + 1,
                    dir.display()
                )));
            }
        };
        let mut advantages = scored.advantages_scaled(g, c.scale_advantages);
        let mut totals: Vec<Option<f32>> = (0..scored.len()).map(|i| scored.total(i)).collect();
        let zero_variance = zero_variance_groups(&totals, g);
        // Optionally replace groups without a learning signal by fresh prompts.
        for round in 1..=c.resample_rounds as u64 {
            let empty: Vec<usize> = (0..b)
                .filter(|&i| zero_variance_groups(&totals[i * g..(i + 1) * g], g) == 1)
                .collect();
            if empty.is_empty() {
                break;
            }
            let extra = roll_out(round, &empty)?;
            state.rollouts += extra.trajectories.len() as u64;
            rollout_s += extra.rollout_s;
            // A reward that fails here keeps the first draw's groups.
            let Ok(extra_scored) = extra.scored else {
                break;
            };
            let extra_adv = extra_scored.advantages_scaled(g, c.scale_advantages);
            let extra_totals: Vec<Option<f32>> = (0..extra_scored.len())
                .map(|i| extra_scored.total(i))
                .collect();
            let mut extra_trajs = extra.trajectories.into_iter();
            let mut extra_items = extra.items.into_iter();
            for (j, &slot) in empty.iter().enumerate() {
                let group: Vec<Trajectory> = extra_trajs.by_ref().take(g).collect();
                let group_items: Vec<RewardItem> = extra_items.by_ref().take(g).collect();
                let range = j * g..(j + 1) * g;
                if zero_variance_groups(&extra_totals[range.clone()], g) == 0 {
                    let dst = slot * g..(slot + 1) * g;
                    trajectories.splice(dst.clone(), group);
                    items.splice(dst.clone(), group_items);
                    advantages.splice(dst.clone(), extra_adv[range.clone()].iter().copied());
                    totals.splice(dst, extra_totals[range].iter().copied());
                }
            }
        }
        let solve_rate = verifiers.first().map(|v| {
            let s: Vec<f64> = items.iter().filter_map(|it| v.score(it)).collect();
            s.iter().sum::<f64>() / s.len().max(1) as f64
        });

        // 3. The clipped surrogate on each factor this phase trains.
        let t1 = Instant::now();
        let samples = build_samples(c, &trajectories, &advantages, seed, it);
        let mut model_stats = None;
        let mut schedule_stats = None;
        for _ in 0..c.mu {
            if train_theta {
                let used: Vec<Sample> = samples
                    .iter()
                    .filter(|s| c.beta > 0.0 || s.advantage != 0.0)
                    .copied()
                    .collect();
                if !used.is_empty() {
                    let (mut grads, st) = model_gradients(
                        &model,
                        reference_model.as_ref().map(|m| (m, c.beta)),
                        &used,
                        clip,
                        cfg.run.threads,
                        c.micro_batch_tokens,
                        device,
                    );
                    check_finite(&st, "model", it)?;
                    clip_global_norm::<B, _>(&model, &mut grads, c.grad_clip);
                    model = optim_model.step(c.lr_model, model, grads);
                    model_stats = Some(st);
                }
            }
            if train_phi {
                let used: Vec<Sample> = samples
                    .iter()
                    .filter(|s| c.beta_schedule > 0.0 || s.advantage != 0.0)
                    .copied()
                    .collect();
                if !used.is_empty() {
                    let (mut grads, st) = schedule_gradients(
                        &policy,
                        reference_policy.as_ref().map(|p| (p, c.beta_schedule)),
                        &used,
                        clip,
                        device,
                    );
                    check_finite(&st, "schedule", it)?;
                    clip_global_norm::<B, _>(&policy, &mut grads, c.grad_clip);
                    policy = optim_schedule.step(c.lr_schedule, policy, grads);
                    schedule_stats = Some(st);
                }
            }
        }
        let update_s = t1.elapsed().as_secs_f64();
        state.iteration = it + 1;
        state.wall_s = wall_before + segment.elapsed().as_secs_f64();

        // 4. Log.
        let step = state.iteration;
        let entry = IterationLog {
            iteration: step,
            reward_mean: mean(totals.iter().flatten().map(|&x| x as f64)),
            solve_rate,
            zero_variance_share: zero_variance as f64 / b as f64,
            zero_variance_after_resampling: zero_variance_groups(&totals, g) as f64 / b as f64,
            nfe,
            updated_model: train_theta,
            updated_schedule: train_phi,
            schedule: schedule_per_step(
                &trajectories,
                if mode.uses_schedule() {
                    inner_policy.components()
                } else {
                    &[]
                },
                c.steps,
            ),
        };
        for (tag, v) in scored.stats() {
            log.scalar(&format!("cogrpo/{tag}"), v, step);
        }
        for (tag, v) in reward_set.failure_scalars() {
            log.scalar(&format!("cogrpo/{tag}"), v, step);
        }
        let adv: Vec<f64> = advantages.iter().flatten().map(|&a| a as f64).collect();
        log.scalar("cogrpo/advantage_std", std_dev(&adv), step);
        log.scalar(
            "cogrpo/zero_variance_share",
            entry.zero_variance_share,
            step,
        );
        if c.resample_rounds > 0 {
            log.scalar(
                "cogrpo/zero_variance_after_resampling",
                entry.zero_variance_after_resampling,
                step,
            );
        }
        log.scalar("cogrpo/nfe", entry.nfe, step);
        if let Some(s) = solve_rate {
            log.scalar("cogrpo/solve_rate", s, step);
        }
        let tokens = (trajectories.len() * layout.answer_len) as f64;
        log.scalar(
            "cogrpo/rollout_tokens_per_s",
            tokens / rollout_s.max(1e-9),
            step,
        );
        log.scalar(
            "cogrpo/update_tokens_per_s",
            tokens * c.mu as f64 / update_s.max(1e-9),
            step,
        );
        for (name, st) in [("model", model_stats), ("schedule", schedule_stats)] {
            if let Some(st) = st {
                log.scalar(&format!("cogrpo/{name}/loss"), st.loss, step);
                log.scalar(
                    &format!("cogrpo/{name}/clip_fraction"),
                    st.clip_fraction,
                    step,
                );
                log.scalar(&format!("cogrpo/{name}/kl"), st.kl, step);
                log.scalar(&format!("cogrpo/{name}/entropy"), st.entropy, step);
            }
        }
        for (name, per_step) in &entry.schedule {
            for (t, v) in per_step.iter().enumerate() {
                log.scalar(&format!("cogrpo/schedule/{name}/step_{t}"), *v, step);
            }
        }
        progress.inc(1);
        if step % c.log_every == 0 || step == c.iterations {
            progress.println(&format!(
                "{} {:>5}/{}  reward {:.4}  solve {}  zero-var {:.2}  {}{}  {:.1}s+{:.1}s",
                mode.name(),
                step,
                c.iterations,
                entry.reward_mean,
                solve_rate.map_or("-".into(), |s| format!("{s:.3}")),
                entry.zero_variance_share,
                describe("theta", model_stats),
                describe("phi", schedule_stats),
                rollout_s,
                update_s,
            ));
        }
        state.history.push(entry);
        if c.checkpoint_every > 0 && step % c.checkpoint_every == 0 && step < c.iterations {
            save(&model, &policy, &optim_model, &optim_schedule, &state)?;
        }
    }
    progress.finish();
    let dir = save(&model, &policy, &optim_model, &optim_schedule, &state)
        .context("cannot write the arm's final checkpoint")?;
    Ok(TrainedArm {
        model,
        policy,
        state,
        checkpoint: dir,
    })
}

fn describe(name: &str, st: Option<FactorStats>) -> String {
    st.map_or(String::new(), |s| {
        format!(
            "  {name}: clip {:.3} kl {:.4} ent {:.3}",
            s.clip_fraction, s.kl, s.entropy
        )
    })
}

fn check_finite(st: &FactorStats, factor: &str, it: usize) -> anyhow::Result<()> {
    if !st.loss.is_finite() {
        bail!(
            "iteration {}: the {factor} loss is {}; stopped without writing a checkpoint (the \
             last one is kept). Lower cogrpo.lr_{factor} or tighten the clip range.",
            it + 1,
            st.loss
        );
    }
    Ok(())
}

/// One draw of groups: trajectories, reward items and their scores.
struct Groups {
    trajectories: Vec<Trajectory>,
    items: Vec<RewardItem>,
    nfe: f64,
    rollout_s: f64,
    scored: Result<rewards::ScoredBatch, rewards::TooManyFailures>,
}
