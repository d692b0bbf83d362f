//! The output directory of a run.
//!
//! ```text
//! <out_dir>/
//!   config.toml      the resolved config (all defaults filled in)
//!   checkpoints/     step-00001000/ ... and `latest`
//!   arms/<arm>/      a Co-GRPO arm's checkpoints
//!   tb/              TensorBoard event files (tb/<arm>/ per arm)
//!   summary.json     what the last commands measured
//!   lock             held by the one process writing here (`run_lock`)
//! ```

use std::path::{Path, PathBuf};

use anyhow::Context;
use cogrpo_config::ExperimentConfig;

use crate::checkpoint::CheckpointDir;
use crate::distributed::World;
use crate::files::{remove_stale_temporaries, write_atomic};

pub struct RunDir {
    root: PathBuf,
}

impl RunDir {
    /// The run directory a command writes: created if needed, and locked
    /// for this process ([`crate::run_lock`]), so a second writer is refused.
    pub fn create(root: &Path) -> anyhow::Result<Self> {
        std::fs::create_dir_all(root)
            .with_context(|| format!("cannot create the run directory {}", root.display()))?;
        crate::run_lock::acquire(root)?;
        // What a killed writer left half-written (`summary.json.tmp-<pid>`).
        remove_stale_temporaries(root)?;
        Ok(Self {
            root: root.to_path_buf(),
        })
    }

    /// An existing run directory (for eval and sample).
    pub fn open(root: &Path) -> anyhow::Result<Self> {
        anyhow::ensure!(
            root.is_dir(),
            "run directory {} does not exist: pre-train first (`cogrpo pretrain`) or pass --checkpoint",
            root.display()
        );
        Ok(Self {
            root: root.to_path_buf(),
        })
    }

    /// The run directory of a (distributed) training run: created and
    /// locked by rank 0, which alone writes it; the other ranks open it once
    /// rank 0 has (across machines it must be on a filesystem every node
    /// mounts).
    pub fn for_rank<B: burn::prelude::Backend>(
        root: &Path,
        world: &World,
        device: &B::Device,
    ) -> anyhow::Result<Self> {
        let created = match world.is_writer() {
            true => Some(Self::create(root)?),
            false => None,
        };
        world.barrier::<B>(device)?;
        match created {
            Some(run) => Ok(run),
            None => Self::open(root).with_context(|| {
                format!(
                    "rank {} cannot see the run directory rank 0 created: run.out_dir must be on \
                     a filesystem every node mounts",
                    world.rank
                )
            }),
        }
    }

    pub fn path(&self) -> &Path {
        &self.root
    }

    /// Pre-training's checkpoints.
    pub fn checkpoints(&self) -> CheckpointDir {
        CheckpointDir::new(self.root.join("checkpoints"))
    }

    /// The folder of Co-GRPO arm `name` (its checkpoints under it).
    pub fn arm(&self, name: &str) -> PathBuf {
        self.root.join("arms").join(name)
    }

    pub fn tb_dir(&self) -> PathBuf {
        self.root.join("tb")
    }

    pub fn write_config(&self, cfg: &ExperimentConfig) -> anyhow::Result<()> {
        let text = toml::to_string_pretty(cfg).context("cannot serialise the resolved config")?;
        write_atomic(&self.root.join("config.toml"), text.as_bytes())
    }
}
