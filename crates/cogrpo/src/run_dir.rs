//! The output directory of a run and its machine-readable summary.
//!
//! ```text
//! <out_dir>/
//!   config.toml      the resolved config (all defaults filled in)
//!   checkpoints/     step-00001000/ ... and `latest`
//!   tb/              TensorBoard event files
//!   summary.json     what the last commands measured
//!   lock             held by the one process writing here (`run_lock`)
//! ```

use std::path::{Path, PathBuf};

use anyhow::Context;
use serde::{Deserialize, Serialize};

use crate::checkpoint::CheckpointDir;
use crate::config::ExperimentConfig;

pub struct RunDir {
    root: PathBuf,
}

/// `summary.json`. Each command updates its own part and keeps the rest.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Summary {
    /// The command that wrote it last.
    pub command: String,
    pub task: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<ModelSummary>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub train: Option<TrainSummary>,
    #[serde(default)]
    pub eval: Vec<EvalRow>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelSummary {
    pub params: usize,
    pub vocab_size: usize,
    pub seq_len: usize,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrainSummary {
    pub steps: usize,
    pub final_loss: f64,
    /// Wall time of all training, resumed segments included.
    pub wall_s: f64,
    pub tokens_per_s: f64,
    pub device: String,
    pub checkpoint: PathBuf,
}

/// One measured number of an evaluation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EvalRow {
    /// Sampler label (`confidence`, `first_hitting`, ...) or `elbo` for the
    /// likelihood bound.
    pub sampler: String,
    /// Sampling steps, or time samples per sequence for `elbo`.
    pub steps: usize,
    pub metric: String,
    pub value: f64,
    /// Examples scored.
    pub n: usize,
    /// Mean denoiser evaluations per example.
    pub nfe: f64,
    pub wall_s: f64,
}

impl RunDir {
    /// The run directory a command writes: created if needed, and locked
    /// for this process ([`crate::run_lock`]), so a second writer is refused.
    pub fn create(root: &Path) -> anyhow::Result<Self> {
        std::fs::create_dir_all(root)
            .with_context(|| format!("cannot create the run directory {}", root.display()))?;
        crate::run_lock::acquire(root)?;
        // What a killed writer left half-written (`summary.json.tmp-<pid>`).
        crate::checkpoint::remove_stale_temporaries(root)?;
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

    pub fn path(&self) -> &Path {
        &self.root
    }

    pub fn checkpoints(&self) -> CheckpointDir {
        CheckpointDir::new(self.root.join("checkpoints"))
    }

    pub fn tb_dir(&self) -> PathBuf {
        self.root.join("tb")
    }

    pub fn write_config(&self, cfg: &ExperimentConfig) -> anyhow::Result<()> {
        let text = toml::to_string_pretty(cfg).context("cannot serialise the resolved config")?;
        write_atomic(&self.root.join("config.toml"), text.as_bytes())
    }

    pub fn read_summary(&self) -> Summary {
        std::fs::read(self.root.join("summary.json"))
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or_default()
    }

    /// Reads `summary.json` (or starts an empty one), lets `f` change it and
    /// writes it back atomically.
    pub fn update_summary(&self, f: impl FnOnce(&mut Summary)) -> anyhow::Result<Summary> {
        let mut s = self.read_summary();
        f(&mut s);
        let text = serde_json::to_string_pretty(&s)?;
        write_atomic(&self.root.join("summary.json"), text.as_bytes())?;
        Ok(s)
    }
}

/// Writes `bytes` to a temporary file beside `path`, syncs it and renames it
/// over `path`: readers see the old file or the new one, never a mix.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    mdm::atomic::write(path, bytes).with_context(|| format!("cannot write {}", path.display()))
}
