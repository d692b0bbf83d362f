//! What an iteration reports: the per-iteration log the report's curves
//! come from, its TensorBoard scalars, the console line, and the rollouts
//! it dumps for the viewer.

use std::collections::BTreeMap;

use cogrpo_config::{CogrpoConfig, UpdateMode};
use cogrpo_eval::dumps::{self, DumpKind, DumpRecord, Origin, Scored};
use mdm::AutodiffKernels;

use crate::groups::Groups;
use crate::loss::FactorStats;
use crate::samples::{mean, schedule_per_step, std_dev, zero_variance_groups};
use crate::setup::Setup;
use crate::state::{ArmTraining, IterationLog};

/// The statistics of each factor updated this iteration, by factor name
/// (`model`, `schedule`).
pub(crate) type Update = BTreeMap<&'static str, FactorStats>;

impl<B: AutodiffKernels> Setup<'_, B> {
    /// The first `dump_groups` groups of the iteration, step by step.
    pub(crate) fn dump_records(
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
            arm.phi.module.components()
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
                    self.task(),
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
    pub(crate) fn iteration_log(
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
                    arm.phi.module.components()
                } else {
                    &[]
                },
                self.c.steps,
            ),
            discriminator: None,
            validation: None,
        }
    }

    /// Step 3: the iteration's TensorBoard scalars (tags under `cogrpo/`).
    pub(crate) fn scalars(
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
        let tokens = (groups.trajectories.len() * self.task().layout().answer_len) as f64;
        out.push((
            "rollout_tokens_per_s".into(),
            tokens / groups.rollout_s.max(1e-9),
        ));
        // Only iterations that updated theta processed tokens in the update
        // (a phi-only update is a few small matmuls: tokens over ~0 s).
        if update.contains_key("model") {
            out.push((
                "update_tokens_per_s".into(),
                tokens * self.c.mu as f64 / update_s.max(1e-9),
            ));
        }
        for (name, st) in update {
            out.push((format!("{name}/loss"), st.loss));
            out.push((format!("{name}/clip_fraction"), st.clip_fraction));
            out.push((format!("{name}/kl"), st.kl));
            out.push((format!("{name}/entropy"), st.entropy));
        }
        if let Some(v) = &entry.validation {
            for (key, value) in v.values.iter().filter(|(_, x)| x.is_finite()) {
                out.push((format!("validation/{key}"), *value));
            }
        }
        if let Some(d) = &entry.discriminator {
            out.push(("discriminator/accuracy_real".into(), d.accuracy_real));
            out.push((
                "discriminator/accuracy_generated".into(),
                d.accuracy_generated,
            ));
            out.push((
                "discriminator/updated".into(),
                f64::from(u8::from(d.loss.is_some())),
            ));
            if let Some(loss) = d.loss {
                out.push(("discriminator/loss".into(), loss));
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
pub(crate) fn describe(
    mode: UpdateMode,
    c: &CogrpoConfig,
    entry: &IterationLog,
    groups: &Groups,
    update: &Update,
    update_s: f64,
) -> String {
    let factor = |label: &str, name: &str| {
        update.get(name).map_or(String::new(), |s| {
            format!(
                "  {label}: clip {:.3} kl {:.4} ent {:.3}",
                s.clip_fraction, s.kl, s.entropy
            )
        })
    };
    let judge = entry.discriminator.map_or(String::new(), |d| {
        format!(
            "  disc: real {:.2} gen {:.2} {}",
            d.accuracy_real,
            d.accuracy_generated,
            d.loss.map_or("capped".into(), |l| format!("loss {l:.3}"))
        )
    });
    format!(
        "{} {:>5}/{}  reward {:.4}  solve {}  zero-var {:.2}  {}{}{judge}  {:.1}s+{:.1}s",
        mode.name(),
        entry.iteration,
        c.iterations,
        entry.reward_mean,
        entry.solve_rate.map_or("-".into(), |s| format!("{s:.3}")),
        entry.zero_variance_share,
        factor("theta", "model"),
        factor("phi", "schedule"),
        groups.rollout_s,
        update_s,
    )
}
