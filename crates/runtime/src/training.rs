//! The scaffold every training loop shares, pre-training and each Co-GRPO
//! arm alike: how a run starts (fresh, or from its newest checkpoint that
//! verifies), its wall clock across resumed segments, and when it writes a
//! checkpoint.
//!
//! One resume policy ([`Start`]) for both:
//! - `Fresh` (a command without `--resume`): a checkpoint already in the
//!   folder is refused, so nothing is overwritten;
//! - `Resume` (`--resume`): the newest checkpoint whose files verify
//!   continues; none (or none that verifies) is refused;
//! - `Auto` (`cogrpo run`, which picks up where it stopped): `Resume` when
//!   the folder holds a checkpoint, else `Fresh`.
//!
//! A continued checkpoint must have been written under the same config (its
//! [`Scope`]'s keys, unless `run.allow_config_change`), seed and rank count.

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::bail;
use cogrpo_config::ExperimentConfig;
use cogrpo_config::resume::Scope;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::BadInput;
use crate::checkpoint::{CheckpointDir, check_ranks, check_resume, read_state_json, step_of};
use crate::distributed::World;
use crate::files::write_atomic;
use crate::logging::Scalars;

/// How a training run starts (module docs: the resume policy).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Start {
    Fresh,
    Resume,
    Auto,
}

impl Start {
    /// `--resume` given or not.
    pub fn from_flag(resume: bool) -> Self {
        if resume { Start::Resume } else { Start::Fresh }
    }
}

/// What every training run's `state.json` records besides its own
/// counters (flattened into it: the same keys at the top level).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunRecord {
    /// The layout of the state, checked against the build's.
    pub format_version: u32,
    pub seed: u64,
    /// Training wall time so far, over every resumed segment.
    pub wall_s: f64,
    /// Ranks of the run that wrote it (a resume needs as many).
    #[serde(default = "one_rank")]
    pub ranks: usize,
}

/// Checkpoints written before distributed training existed had one rank.
fn one_rank() -> usize {
    1
}

/// A training run's `state.json`.
pub trait RunState: Serialize + DeserializeOwned {
    /// This build's layout; bumped when it changes incompatibly.
    const FORMAT_VERSION: u32;
    /// The state in error messages ("a pre-training state").
    const WHAT: &'static str;
    /// The unit of [`RunState::done`] in messages ("step", "iteration").
    const UNIT: &'static str;
    fn record(&self) -> &RunRecord;
    /// Optimizer steps (pre-training) or iterations (an arm) completed.
    fn done(&self) -> usize;
}

/// A checkpoint folder's state, after verifying the folder's checksums and
/// the state's format.
pub fn read_run_state<S: RunState>(dir: &Path) -> anyhow::Result<S> {
    let state: S = read_state_json(dir, S::WHAT)?;
    if state.record().format_version != S::FORMAT_VERSION {
        return Err(BadInput(format!(
            "{} has checkpoint format {}, this build reads format {}",
            dir.join("state.json").display(),
            state.record().format_version,
            S::FORMAT_VERSION
        ))
        .into());
    }
    Ok(state)
}

/// Refuses a state whose values no run of this config writes, like a
/// damaged file (its checksums can be regenerated): a count other than the
/// folder's `step-N`, or past the run's `total`; a wall time that is not a
/// finite non-negative number; zero ranks.
fn check_state_bounds<S: RunState>(dir: &Path, state: &S, total: usize) -> Result<(), BadInput> {
    let (done, unit, record) = (state.done(), S::UNIT, state.record());
    let problem = if step_of(dir).is_some_and(|n| n != done) {
        Some(format!(
            "records {unit} {done}, but the folder is {}",
            dir.display()
        ))
    } else if done > total {
        Some(format!(
            "records {unit} {done}, past this run's {total} {unit}s (a damaged state, or a \
             shortened run: continue it with at least {done})"
        ))
    } else if !(record.wall_s.is_finite() && record.wall_s >= 0.0) {
        Some(format!("records wall_s = {}", record.wall_s))
    } else if record.ranks == 0 {
        Some("records ranks = 0".into())
    } else {
        None
    };
    match problem {
        Some(p) => Err(BadInput(format!(
            "{} {p}; it cannot be resumed",
            dir.join("state.json").display()
        ))),
        None => Ok(()),
    }
}

/// What a training run checkpoints: its state, and the files beside it.
pub trait Checkpointed {
    type State: RunState;
    fn state(&self) -> &Self::State;
    /// Writes the weights and optimizer states into the fresh folder `dir`
    /// (`state.json`, `config.toml` and the checksums are the scaffold's).
    fn write_files(&self, dir: &Path) -> anyhow::Result<()>;
}

/// When a training loop writes a checkpoint.
#[derive(Debug, Clone, Copy)]
pub struct Cadence {
    /// Steps between checkpoints; 0 writes one only at the end.
    pub every: usize,
    /// The run's length: the end always writes one.
    pub total: usize,
    /// Checkpoints kept on disk (the newest).
    pub keep: usize,
}

impl Cadence {
    /// Whether a checkpoint is due after `done` steps (the end's comes from
    /// [`TrainingRun::finish`]).
    pub fn due(&self, done: usize) -> bool {
        self.every > 0 && done > 0 && done.is_multiple_of(self.every) && done < self.total
    }
}

/// One training run's checkpoints, start, clock and cadence, as rank
/// `world.rank` sees them (only rank 0 writes).
pub struct TrainingRun<'a> {
    ckpts: CheckpointDir,
    config_toml: String,
    scope: Scope,
    cadence: Cadence,
    world: &'a World,
    /// The run in messages: "pre-training", "arm `alternate`".
    what: String,
    /// How to continue this run, for the refusal of a fresh start.
    resume_hint: String,
    /// Wall time of the segments before this one.
    wall_before: f64,
    segment: Instant,
}

impl<'a> TrainingRun<'a> {
    pub fn new(
        ckpts: CheckpointDir,
        cfg: &ExperimentConfig,
        scope: Scope,
        cadence: Cadence,
        world: &'a World,
        (what, resume_hint): (String, String),
    ) -> anyhow::Result<Self> {
        Ok(Self {
            ckpts,
            config_toml: toml::to_string_pretty(cfg)?,
            scope,
            cadence,
            world,
            what,
            resume_hint,
            wall_before: 0.0,
            segment: Instant::now(),
        })
    }

    pub fn checkpoints(&self) -> &CheckpointDir {
        &self.ckpts
    }

    /// The resolved config, as every checkpoint records it.
    pub fn config_toml(&self) -> &str {
        &self.config_toml
    }

    /// The run to train: `fresh()` or, by `start`'s policy, the newest
    /// checkpoint that verifies, read by `load` after the checks every
    /// resume makes (config scope, rank count, seed). Starts the clock.
    pub fn start<T: Checkpointed>(
        &mut self,
        cfg: &ExperimentConfig,
        start: Start,
        fresh: impl FnOnce() -> anyhow::Result<T>,
        load: impl FnOnce(&Path, T::State) -> anyhow::Result<T>,
    ) -> anyhow::Result<T> {
        let start = match start {
            Start::Auto if self.ckpts.latest().is_some() => Start::Resume,
            Start::Auto => Start::Fresh,
            s => s,
        };
        let trained = if start == Start::Resume {
            match self.ckpts.resume_point() {
                Some(dir) => self.resume(cfg, &dir, load)?,
                None if self.ckpts.latest().is_some() => bail!(
                    "nothing to resume: no checkpoint in {} verifies (see the warnings above)",
                    self.ckpts.root().display()
                ),
                None => bail!(
                    "nothing to resume: {} holds no checkpoint",
                    self.ckpts.root().display()
                ),
            }
        } else if let Some(dir) = self.ckpts.latest() {
            bail!(
                "{} already holds checkpoint {} (nothing was overwritten); {}, or set another \
                 run.out_dir",
                self.ckpts.root().display(),
                dir.display(),
                self.resume_hint
            )
        } else {
            fresh()?
        };
        self.wall_before = trained.state().record().wall_s;
        self.segment = Instant::now();
        Ok(trained)
    }

    fn resume<T: Checkpointed>(
        &self,
        cfg: &ExperimentConfig,
        dir: &Path,
        load: impl FnOnce(&Path, T::State) -> anyhow::Result<T>,
    ) -> anyhow::Result<T> {
        check_resume(dir, cfg, self.scope)?;
        let state: T::State = read_run_state(dir)?;
        check_state_bounds(dir, &state, self.cadence.total)?;
        let record = state.record();
        check_ranks(dir, record.ranks, self.world.size)?;
        let seed = cfg.run.seed;
        if record.seed != seed {
            bail!(
                "{} was trained with seed {}, the config says {seed}; resume with --seed {}",
                dir.display(),
                record.seed,
                record.seed
            );
        }
        let done = state.done();
        let trained = load(dir, state)?;
        tracing::info!(
            "resuming {} at {} {done} ({})",
            self.what,
            <T::State as RunState>::UNIT,
            dir.display()
        );
        Ok(trained)
    }

    /// Training wall time so far, this segment and the ones it continues.
    pub fn wall_s(&self) -> f64 {
        self.wall_before + self.segment.elapsed().as_secs_f64()
    }

    /// Writes `trained` as the checkpoint of its `done` count (rank 0 only
    /// calls this).
    pub fn save<T: Checkpointed>(&self, trained: &T) -> anyhow::Result<PathBuf> {
        self.save_into(&self.ckpts, self.cadence.keep, trained)
    }

    /// Writes `trained` into `ckpts` as the one checkpoint kept there (the
    /// best so far by a validation metric; rank 0 only calls this).
    pub fn save_best<T: Checkpointed>(
        &self,
        ckpts: &CheckpointDir,
        trained: &T,
    ) -> anyhow::Result<PathBuf> {
        self.save_into(ckpts, 1, trained)
    }

    fn save_into<T: Checkpointed>(
        &self,
        ckpts: &CheckpointDir,
        keep: usize,
        trained: &T,
    ) -> anyhow::Result<PathBuf> {
        let state = trained.state();
        ckpts.save_with(state.done(), keep, |dir| {
            trained.write_files(dir)?;
            write_atomic(
                &dir.join("state.json"),
                serde_json::to_string_pretty(state)?.as_bytes(),
            )?;
            write_atomic(&dir.join("config.toml"), self.config_toml.as_bytes())
        })
    }

    /// Rank 0 writes `trained` as a checkpoint (where it went); the other
    /// ranks write nothing (`None`).
    pub fn save_if_writer<T: Checkpointed>(&self, trained: &T) -> anyhow::Result<Option<PathBuf>> {
        match self.world.is_writer() {
            true => self.save(trained).map(Some),
            false => Ok(None),
        }
    }

    /// A checkpoint when the cadence says one is due (rank 0 writes it),
    /// with `log`'s events flushed first: a checkpoint on disk means its
    /// steps' events are too (what a resumed run relies on).
    pub fn save_if_due<T: Checkpointed>(
        &self,
        trained: &T,
        log: &mut Scalars,
    ) -> anyhow::Result<()> {
        if self.cadence.due(trained.state().done()) && self.world.is_writer() {
            log.flush();
            self.save(trained)?;
        }
        Ok(())
    }

    /// The final checkpoint (`log` flushed first): rank 0 writes it, every
    /// rank learns where it is.
    pub fn finish<B: burn::prelude::Backend, T: Checkpointed>(
        &self,
        trained: &T,
        log: &mut Scalars,
        device: &B::Device,
    ) -> anyhow::Result<PathBuf> {
        log.flush();
        self.ckpts
            .save_final::<B>(self.world, device, || self.save(trained))
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;

    /// A training run of nothing but a counter, checkpointed like any.
    #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
    struct Counter {
        #[serde(flatten)]
        run: RunRecord,
        done: usize,
    }

    impl RunState for Counter {
        const FORMAT_VERSION: u32 = 7;
        const WHAT: &'static str = "a counter";
        const UNIT: &'static str = "count";
        fn record(&self) -> &RunRecord {
            &self.run
        }
        fn done(&self) -> usize {
            self.done
        }
    }

    struct Run(Counter);

    impl Checkpointed for Run {
        type State = Counter;
        fn state(&self) -> &Counter {
            &self.0
        }
        fn write_files(&self, dir: &Path) -> anyhow::Result<()> {
            write_atomic(&dir.join("weights.bin"), &[self.0.done as u8])
        }
    }

    fn config(seed: u64, lr: f64) -> ExperimentConfig {
        let text = format!(
            "[run]\nname = \"t\"\nseed = {seed}\n[task]\nkind = \"sudoku4\"\n[model]\nd_model = 8\n\
             n_layers = 1\nn_heads = 2\nd_ff = 8\n[pretrain]\nsteps = 4\nbatch_size = 1\nlr = {lr}\n"
        );
        cogrpo_config::load_str(&text, "t.toml", &[]).expect("a valid config")
    }

    fn fresh(seed: u64) -> anyhow::Result<Run> {
        Ok(Run(Counter {
            run: RunRecord {
                format_version: 7,
                seed,
                wall_s: 0.0,
                ranks: 1,
            },
            done: 0,
        }))
    }

    fn training<'a>(root: &Path, cfg: &ExperimentConfig, world: &'a World) -> TrainingRun<'a> {
        let cadence = Cadence {
            every: 2,
            total: 4,
            keep: 5,
        };
        let names = ("the counter".to_string(), "pass --resume".to_string());
        let ckpts = CheckpointDir::new(root.join("checkpoints"));
        TrainingRun::new(ckpts, cfg, Scope::Pretrain, cadence, world, names).unwrap()
    }

    fn start(root: &Path, cfg: &ExperimentConfig, how: Start) -> anyhow::Result<Counter> {
        let world = World::single();
        let mut t = training(root, cfg, &world);
        let seed = cfg.run.seed;
        t.start(cfg, how, || fresh(seed), |_, state| Ok(Run(state)))
            .map(|r| r.0)
    }

    /// A counter trained to `done` and checkpointed there.
    fn checkpoint_at(root: &Path, cfg: &ExperimentConfig, done: usize) {
        let world = World::single();
        let t = training(root, cfg, &world);
        let mut run = fresh(cfg.run.seed).unwrap();
        run.0.done = done;
        t.save(&run).unwrap();
    }

    #[test]
    fn the_resume_policy_decides_every_case() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path();
        let cfg = config(3, 1e-3);
        let err = |how| start(root, &cfg, how).unwrap_err().to_string();
        // Nothing there: fresh and auto start fresh, resume is refused.
        assert_eq!(start(root, &cfg, Start::Fresh).unwrap().done, 0);
        assert_eq!(start(root, &cfg, Start::Auto).unwrap().done, 0);
        assert!(err(Start::Resume).contains("nothing to resume"));
        // A checkpoint: fresh is refused (nothing overwritten), resume and
        // auto continue it.
        checkpoint_at(root, &cfg, 2);
        let e = err(Start::Fresh);
        assert!(
            e.contains("already holds") && e.contains("pass --resume"),
            "{e}"
        );
        assert!(e.contains("nothing was overwritten"), "{e}");
        assert_eq!(start(root, &cfg, Start::Resume).unwrap().done, 2);
        assert_eq!(start(root, &cfg, Start::Auto).unwrap().done, 2);
        // Another seed, a changed training key: refused, naming them.
        let e = start(root, &config(4, 1e-3), Start::Resume)
            .unwrap_err()
            .to_string();
        assert!(e.contains("run.seed changed"), "{e}");
        let e = start(root, &config(3, 2e-3), Start::Auto)
            .unwrap_err()
            .to_string();
        assert!(e.contains("pretrain.lr changed"), "{e}");
        // A damaged newest checkpoint: the one before it continues.
        checkpoint_at(root, &cfg, 4);
        let weights = root.join("checkpoints/step-00000004/weights.bin");
        std::fs::write(&weights, [9]).unwrap();
        assert_eq!(start(root, &cfg, Start::Resume).unwrap().done, 2);
        // None verifies: refused, not started over.
        std::fs::write(root.join("checkpoints/step-00000002/weights.bin"), [9]).unwrap();
        assert!(err(Start::Resume).contains("no checkpoint in"));
        assert!(err(Start::Auto).contains("no checkpoint in"));
    }

    #[test]
    fn another_rank_count_is_refused() {
        let tmp = tempfile::tempdir().unwrap();
        let cfg = config(0, 1e-3);
        let world = World::single();
        let t = training(tmp.path(), &cfg, &world);
        let mut run = fresh(0).unwrap();
        run.0.run.ranks = 2;
        t.save(&run).unwrap();
        let e = start(tmp.path(), &cfg, Start::Resume)
            .unwrap_err()
            .to_string();
        assert!(e.contains("2 rank(s); this one has 1"), "{e}");
    }

    #[test]
    fn checkpoints_are_due_at_the_cadence_before_the_end() {
        let c = Cadence {
            every: 2,
            total: 6,
            keep: 1,
        };
        let due: Vec<usize> = (0..=6).filter(|&d| c.due(d)).collect();
        assert_eq!(due, vec![2, 4], "the end's checkpoint is finish's");
        let never = Cadence { every: 0, ..c };
        assert!((0..=6).all(|d| !never.due(d)));
    }
}
