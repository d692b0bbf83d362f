//! The Co-GRPO training loop of one arm, top to bottom as data flows:
//! collect groups (roll out, score, advantages), update each factor the
//! phase trains, log, checkpoint now and then.
//!
//! Distributed ([`crate::distributed`]): each rank rolls out and scores its
//! share of the prompts' groups (whole groups, so advantages stay local),
//! the ranks gather the groups so that each holds the iteration a single
//! process would, each computes the model factor's gradient on its share
//! of the samples and the ranks sum them. The schedule factor (a few small
//! matrices) is computed whole on every rank. Only rank 0 writes.

use std::path::Path;
use std::time::Instant;

use anyhow::bail;
use burn::optim::Optimizer;
use envs::Task;
use mdm::Denoiser;
use policy::SamplerConfig;
use policy::learned::SchedulePolicy;
use rewards::{RewardSet, Verifier};

use super::groups::{Groups, Stop};
use super::loss::Clip;
use super::samples::{build_samples, mean, schedule_per_step, std_dev, zero_variance_groups};
use super::state::{ArmTraining, IterationLog, TrainedArm, init_policy};
use super::update::{FactorStats, Partial, Sample, frozen, model_partial, schedule_gradients};
use crate::checkpoint::{self, CheckpointDir};
use crate::config::{CogrpoConfig, ExperimentConfig, UpdateMode};
use crate::distributed::World;
use crate::dumps::{self, DumpKind, DumpRecord, Origin, Scored};
use crate::logging::{Progress, Scalars};
use crate::optim::clip_global_norm;
use crate::tasks::denoiser_config;
use mdm::AutodiffKernels;

/// Runs (or with `resume` continues) one arm's Co-GRPO from the pre-trained
/// checkpoint `init`, writing checkpoints under `arm_dir/checkpoints` and
/// rollout dumps to `dump` ([`crate::dumps`]).
#[allow(clippy::too_many_arguments)]
pub fn train_arm<B: AutodiffKernels>(
    cfg: &ExperimentConfig,
    task: &dyn Task,
    mode: UpdateMode,
    arm_dir: &Path,
    dump: &Path,
    init: &Path,
    device: &B::Device,
    resume: bool,
    log: &mut Scalars,
    world: &World,
) -> anyhow::Result<TrainedArm<B>> {
    let setup = Setup::<B>::new(cfg, task, mode, init, device, world)?;
    let c = setup.c;
    let ckpts = CheckpointDir::new(arm_dir.join("checkpoints"));
    let config_toml = toml::to_string_pretty(cfg)?;
    let mut arm = ArmTraining::<B>::start(cfg, task, mode, &ckpts, init, resume, device)?;
    if arm.state.iteration > 0 {
        checkpoint::check_ranks(ckpts.root(), arm.state.ranks, world.size)?;
    }
    arm.state.ranks = world.size;

    // What an interrupted run dumped past its checkpoint is redone.
    let done = arm.state.iteration;
    if world.is_writer()
        && let Err(e) = dumps::retain(dump, |r| r.kind == DumpKind::Train && r.iteration <= done)
    {
        tracing::warn!("rollout dumps of `{}`: {e:#}", mode.name());
    }
    log.text("config", &format!("```toml\n{config_toml}\n```"), done);
    log.hparams(&toml::Value::try_from(cfg)?);
    let progress = Progress::for_rank(c.iterations as u64, mode.name(), world);
    progress.set_position(arm.state.iteration as u64);
    let segment = Instant::now();
    let wall_before = arm.state.wall_s;
    for it in arm.state.iteration..c.iterations {
        let (train_theta, train_phi) = c.phase(mode, it);

        // 1. G trajectories for each of B prompts, scored; advantages
        //    relative to each prompt's group.
        let groups = match setup.collect_groups(&arm, it) {
            Ok(g) => g,
            Err(Stop::Rewards(e)) => {
                // The stopped iteration's rollouts are not counted: it is
                // redone on resume, and the budget counts completed work.
                arm.state.wall_s = wall_before + segment.elapsed().as_secs_f64();
                let dir = match world.is_writer() {
                    true => arm.save(&ckpts, &config_toml)?,
                    false => ckpts.root().to_path_buf(),
                };
                return Err(anyhow::Error::new(e).context(format!(
                    "iteration {}: stopped; checkpoint {} holds the last completed iteration \
                     (its rollouts not counted). Fix the reward, then continue with `cogrpo \
                     train --arm {} --resume` (same config), or `cogrpo run`, which resumes arms",
                    it + 1,
                    dir.display(),
                    mode.name()
                )));
            }
            Err(Stop::Other(e)) => return Err(e),
        };
        arm.state.rollouts += groups.rollouts;
        if let Some(note) = groups.scored.failure_note() {
            // Failures the run survives are said on the console, with the
            // plugins' recoveries so far (also in TensorBoard).
            let recovered: Vec<String> = setup
                .reward_set
                .recovery_counters()
                .into_iter()
                .map(|(name, counter, n)| format!("{name} {counter} {n}"))
                .collect();
            progress.println(&format!(
                "iteration {}: {note}{}",
                it + 1,
                if recovered.is_empty() {
                    String::new()
                } else {
                    format!(" [{}]", recovered.join(", "))
                }
            ));
        }

        // 2. The clipped surrogate on each factor this phase trains.
        let t1 = Instant::now();
        let update = setup.update(&mut arm, &groups, (train_theta, train_phi), it)?;
        let update_s = t1.elapsed().as_secs_f64();
        arm.state.iteration = it + 1;
        arm.state.wall_s = wall_before + segment.elapsed().as_secs_f64();

        // 3. Log.
        let entry = setup.iteration_log(&arm, &groups, (train_theta, train_phi));
        for (tag, v) in setup.scalars(&groups, &update, &entry, update_s) {
            log.scalar(&format!("cogrpo/{tag}"), v, entry.iteration);
        }
        if c.dump_every > 0 && entry.iteration % c.dump_every == 0 && world.is_writer() {
            let records = setup.dump_records(&arm, &groups, entry.iteration);
            log.text("samples", &dumps::markdown(&records), entry.iteration);
            if let Err(e) = dumps::append(dump, &records) {
                tracing::warn!("rollout dump: {e:#}");
            }
        }
        progress.inc(1);
        if entry.iteration % c.log_every == 0 || entry.iteration == c.iterations {
            progress.println(&describe(mode, c, &entry, &groups, &update, update_s));
        }
        arm.state.history.push(entry);
        let step = arm.state.iteration;
        if c.checkpoint_every > 0
            && step % c.checkpoint_every == 0
            && step < c.iterations
            && world.is_writer()
        {
            arm.save(&ckpts, &config_toml)?;
        }
    }
    progress.finish();
    let checkpoint =
        ckpts.save_final::<B::InnerBackend>(world, device, || arm.save(&ckpts, &config_toml))?;
    Ok(TrainedArm {
        model: arm.model,
        policy: arm.policy,
        state: arm.state,
        checkpoint,
    })
}

/// What stays fixed over an arm's training.
pub(super) struct Setup<'a, B: AutodiffKernels> {
    pub(super) cfg: &'a ExperimentConfig,
    pub(super) c: &'a CogrpoConfig,
    pub(super) task: &'a dyn Task,
    pub(super) mode: UpdateMode,
    pub(super) device: B::Device,
    pub(super) world: &'a World,
    pub(super) reference: SamplerConfig,
    pub(super) reward_set: RewardSet,
    pub(super) verifiers: Vec<Box<dyn Verifier>>,
    pub(super) clip: Clip,
    /// The frozen pre-trained model (KL penalty, `beta > 0`).
    pub(super) reference_model: Option<Denoiser<B::InnerBackend>>,
    /// The frozen initial schedule policy (`beta_schedule > 0`).
    pub(super) reference_policy: Option<SchedulePolicy<B>>,
}

/// The statistics of each factor updated this iteration.
struct Update {
    model: Option<FactorStats>,
    schedule: Option<FactorStats>,
}

impl<'a, B: AutodiffKernels> Setup<'a, B> {
    fn new(
        cfg: &'a ExperimentConfig,
        task: &'a dyn Task,
        mode: UpdateMode,
        init: &Path,
        device: &B::Device,
        world: &'a World,
    ) -> anyhow::Result<Self> {
        let c = cfg.cogrpo_section()?;
        let dcfg = denoiser_config(cfg, task);
        Ok(Self {
            cfg,
            c,
            task,
            mode,
            device: device.clone(),
            world,
            reference: c.reference_sampler(),
            reward_set: crate::reward_models::reward_set(cfg, task.name())?,
            verifiers: rewards::verifiers_for(task.name()),
            clip: Clip {
                low: c.epsilon_low,
                high: c.epsilon_high,
            },
            reference_model: (c.beta > 0.0)
                .then(|| checkpoint::load_model::<B::InnerBackend>(init, &dcfg, device))
                .transpose()?,
            reference_policy: (c.beta_schedule > 0.0)
                .then(|| frozen(&init_policy::<B>(c, task, device))),
        })
    }

    /// Step 2: `mu` passes of the clipped surrogate on theta and/or phi,
    /// each factor with its own optimizer, gradients clipped by global norm.
    fn update(
        &self,
        arm: &mut ArmTraining<B>,
        groups: &Groups,
        (train_theta, train_phi): (bool, bool),
        it: usize,
    ) -> anyhow::Result<Update> {
        let c = self.c;
        let samples = build_samples(
            c,
            &groups.trajectories,
            &groups.advantages,
            self.cfg.run.seed,
            it,
        );
        // Steps without advantage carry no gradient unless a KL term does.
        let used = |beta: f64| -> Vec<Sample> {
            samples
                .iter()
                .filter(|s| beta > 0.0 || s.advantage != 0.0)
                .copied()
                .collect()
        };
        let mut out = Update {
            model: None,
            schedule: None,
        };
        for _ in 0..c.mu {
            let used_model = used(c.beta);
            if train_theta && !used_model.is_empty() {
                // This rank's share; the ranks' gradients and parts summed.
                let (grads, part) = model_partial(
                    &arm.model,
                    self.reference_model.as_ref().map(|m| (m, c.beta)),
                    self.world.share(&used_model),
                    self.clip,
                    self.cfg.run.threads,
                    c.micro_batch_tokens_on(self.cfg.run.device),
                    &self.device,
                );
                let (mut grads, _) =
                    self.world
                        .sum_gradients(&arm.model, grads, &[], &self.device)?;
                let mut all = Partial::default();
                for p in self
                    .world
                    .gather::<B::InnerBackend, _>(part, &self.device)?
                {
                    all.merge(p);
                }
                let st = all.stats(self.clip);
                check_finite(&st, "model", it)?;
                clip_global_norm::<B, _>(&arm.model, &mut grads, c.grad_clip);
                arm.model = arm.optim_model.step(c.lr_model, arm.model.clone(), grads);
                out.model = Some(st);
            }
            let used_schedule = used(c.beta_schedule);
            if train_phi && !used_schedule.is_empty() {
                let (mut grads, st) = schedule_gradients(
                    &arm.policy,
                    self.reference_policy.as_ref().map(|p| (p, c.beta_schedule)),
                    &used_schedule,
                    self.clip,
                    &self.device,
                );
                check_finite(&st, "schedule", it)?;
                clip_global_norm::<B, _>(&arm.policy, &mut grads, c.grad_clip);
                arm.policy = arm
                    .optim_schedule
                    .step(c.lr_schedule, arm.policy.clone(), grads);
                out.schedule = Some(st);
            }
        }
        Ok(out)
    }

    /// The first `dump_groups` groups of the iteration, step by step.
    fn dump_records(
        &self,
        arm: &ArmTraining<B>,
        groups: &Groups,
        iteration: usize,
    ) -> Vec<DumpRecord> {
        let g = self.c.group_size;
        let origin = Origin {
            kind: DumpKind::Train,
            arm: self.mode.name(),
            iteration,
            steps: self.c.steps,
            group_size: g,
        };
        let comps = if self.mode.uses_schedule() {
            arm.policy.components()
        } else {
            &[]
        };
        let n = (self.c.dump_groups * g).min(groups.trajectories.len());
        (0..n)
            .map(|i| {
                let scored = Scored {
                    reward: groups.totals[i].map(f64::from),
                    rewards: groups.terms[i].clone(),
                    advantage: groups.advantages[i].map(f64::from),
                    nfe: groups.row_nfe[i],
                };
                dumps::record(
                    self.task,
                    &origin,
                    i,
                    &groups.trajectories[i],
                    &groups.items[i],
                    comps,
                    scored,
                )
            })
            .collect()
    }

    /// What the report keeps of the iteration.
    fn iteration_log(
        &self,
        arm: &ArmTraining<B>,
        groups: &Groups,
        (updated_model, updated_schedule): (bool, bool),
    ) -> IterationLog {
        let (b, g) = (self.c.prompts_per_iteration, self.c.group_size);
        let solve_rate = self.verifiers.first().map(|v| {
            let s: Vec<f64> = groups.items.iter().filter_map(|it| v.score(it)).collect();
            s.iter().sum::<f64>() / s.len().max(1) as f64
        });
        IterationLog {
            iteration: arm.state.iteration,
            reward_mean: mean(groups.totals.iter().flatten().map(|&x| x as f64)),
            solve_rate,
            zero_variance_share: groups.zero_variance as f64 / b as f64,
            zero_variance_after_resampling: zero_variance_groups(&groups.totals, g) as f64
                / b as f64,
            nfe: groups.nfe,
            updated_model,
            updated_schedule,
            schedule: schedule_per_step(
                &groups.trajectories,
                if self.mode.uses_schedule() {
                    arm.policy.components()
                } else {
                    &[]
                },
                self.c.steps,
            ),
        }
    }

    /// Step 3: the iteration's TensorBoard scalars (tags under `cogrpo/`).
    fn scalars(
        &self,
        groups: &Groups,
        update: &Update,
        entry: &IterationLog,
        update_s: f64,
    ) -> Vec<(String, f64)> {
        let mut out: Vec<(String, f64)> = groups.scored.stats();
        out.extend(self.reward_set.failure_scalars());
        let adv: Vec<f64> = groups
            .advantages
            .iter()
            .flatten()
            .map(|&a| a as f64)
            .collect();
        out.push(("advantage_std".into(), std_dev(&adv)));
        out.push(("zero_variance_share".into(), entry.zero_variance_share));
        if self.c.resample_rounds > 0 {
            out.push((
                "zero_variance_after_resampling".into(),
                entry.zero_variance_after_resampling,
            ));
        }
        out.push(("nfe".into(), entry.nfe));
        if let Some(s) = entry.solve_rate {
            out.push(("solve_rate".into(), s));
        }
        let tokens = (groups.trajectories.len() * self.task.layout().answer_len) as f64;
        out.push((
            "rollout_tokens_per_s".into(),
            tokens / groups.rollout_s.max(1e-9),
        ));
        // Only iterations that updated theta processed tokens in the update
        // (a phi-only update is a few small matmuls: tokens over ~0 s).
        if update.model.is_some() {
            out.push((
                "update_tokens_per_s".into(),
                tokens * self.c.mu as f64 / update_s.max(1e-9),
            ));
        }
        for (name, st) in [("model", update.model), ("schedule", update.schedule)] {
            if let Some(st) = st {
                out.push((format!("{name}/loss"), st.loss));
                out.push((format!("{name}/clip_fraction"), st.clip_fraction));
                out.push((format!("{name}/kl"), st.kl));
                out.push((format!("{name}/entropy"), st.entropy));
            }
        }
        for (name, per_step) in &entry.schedule {
            // NaN marks a step where the component did not act (the last
            // step's ratio: it reveals everything left): no point, not NaN.
            for (t, v) in per_step.iter().enumerate().filter(|(_, v)| v.is_finite()) {
                out.push((format!("schedule/{name}/step_{t}"), *v));
            }
        }
        out
    }
}

/// The progress line of an iteration.
fn describe(
    mode: UpdateMode,
    c: &CogrpoConfig,
    entry: &IterationLog,
    groups: &Groups,
    update: &Update,
    update_s: f64,
) -> String {
    let factor = |name: &str, st: Option<FactorStats>| {
        st.map_or(String::new(), |s| {
            format!(
                "  {name}: clip {:.3} kl {:.4} ent {:.3}",
                s.clip_fraction, s.kl, s.entropy
            )
        })
    };
    format!(
        "{} {:>5}/{}  reward {:.4}  solve {}  zero-var {:.2}  {}{}  {:.1}s+{:.1}s",
        mode.name(),
        entry.iteration,
        c.iterations,
        entry.reward_mean,
        entry.solve_rate.map_or("-".into(), |s| format!("{s:.3}")),
        entry.zero_variance_share,
        factor("theta", update.model),
        factor("phi", update.schedule),
        groups.rollout_s,
        update_s,
    )
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
