//! Training checkpoints.
//!
//! ```text
//! checkpoints/
//!   step-00000500/
//!     model.safetensors   denoiser weights
//!     optimizer.mpk       AdamW moments (burn record, keyed by parameter id)
//!     state.json          step, seed, progress counters, denoiser shape
//!     config.toml         the resolved experiment config
//!   latest                name of the newest complete checkpoint
//! ```
//!
//! A checkpoint is written into `step-N.partial-<pid>` and renamed into place
//! only when complete, then `latest` is replaced atomically; a kill at any
//! moment leaves the previous checkpoint loadable. Parameter ids are fixed
//! at model creation (see `mdm::init`), so the optimizer state matches the
//! model again after a restart.
//!
//! Random state: every draw of training step `s` comes from streams keyed by
//! `(seed, s, ...)`, so the seed and the step are the complete RNG state.

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use burn::module::AutodiffModule;
use burn::optim::Optimizer;
use burn::record::{FullPrecisionSettings, NamedMpkFileRecorder, Recorder};
use burn::tensor::backend::AutodiffBackend;
use mdm::{Denoiser, DenoiserConfig};
use serde::{Deserialize, Serialize};

use crate::run_dir::write_atomic;

/// Bumped when the checkpoint layout changes incompatibly.
pub const FORMAT_VERSION: u32 = 1;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrainState {
    pub format_version: u32,
    /// Optimizer steps completed.
    pub step: usize,
    pub seed: u64,
    pub tokens_seen: u64,
    /// Training wall time so far, over all resumed segments.
    pub wall_s: f64,
    /// Mean loss over the last logging window.
    pub last_loss: f64,
    /// Sum and count of step losses in the open logging window, so that a
    /// resumed run reports the same `last_loss` as an uninterrupted one.
    #[serde(default)]
    pub window_loss: f64,
    #[serde(default)]
    pub window_steps: usize,
    pub denoiser: DenoiserConfig,
}

pub struct CheckpointDir {
    root: PathBuf,
}

fn recorder() -> NamedMpkFileRecorder<FullPrecisionSettings> {
    NamedMpkFileRecorder::<FullPrecisionSettings>::new()
}

impl CheckpointDir {
    pub fn new(root: PathBuf) -> Self {
        Self { root }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Writes a complete pre-training checkpoint and keeps the newest `keep`.
    pub fn save<B, O>(
        &self,
        model: &Denoiser<B>,
        optim: &O,
        state: &TrainState,
        config_toml: &str,
        keep: usize,
    ) -> anyhow::Result<PathBuf>
    where
        B: AutodiffBackend,
        O: Optimizer<Denoiser<B>, B>,
    {
        self.save_with(state.step, keep, |dir| {
            mdm::weights::save(model, &dir.join("model.safetensors"))?;
            save_record(optim.to_record(), &dir.join("optimizer"))?;
            write_atomic(
                &dir.join("state.json"),
                serde_json::to_string_pretty(state)?.as_bytes(),
            )?;
            write_atomic(&dir.join("config.toml"), config_toml.as_bytes())
        })
    }

    /// Writes checkpoint `step-<step>`: `write` fills a fresh folder (it must
    /// write `state.json`, which marks a checkpoint complete), which is then
    /// renamed into place; `latest` is updated and the newest `keep` kept.
    pub fn save_with(
        &self,
        step: usize,
        keep: usize,
        write: impl FnOnce(&Path) -> anyhow::Result<()>,
    ) -> anyhow::Result<PathBuf> {
        std::fs::create_dir_all(&self.root)
            .with_context(|| format!("cannot create {}", self.root.display()))?;
        let name = format!("step-{step:08}");
        let partial = self
            .root
            .join(format!("{name}.partial-{}", std::process::id()));
        if partial.exists() {
            std::fs::remove_dir_all(&partial)?;
        }
        std::fs::create_dir(&partial)
            .with_context(|| format!("cannot create {}", partial.display()))?;
        write(&partial)?;
        let final_dir = self.root.join(&name);
        if final_dir.exists() {
            // Re-writing the same step (e.g. after a resume): swap, then drop the old one.
            let old = self.root.join(format!("{name}.old-{}", std::process::id()));
            std::fs::rename(&final_dir, &old)?;
            std::fs::rename(&partial, &final_dir)?;
            std::fs::remove_dir_all(&old)?;
        } else {
            std::fs::rename(&partial, &final_dir)?;
        }
        write_atomic(&self.root.join("latest"), name.as_bytes())?;
        self.prune(keep)?;
        Ok(final_dir)
    }

    /// Complete checkpoints, oldest first.
    pub fn list(&self) -> Vec<(usize, PathBuf)> {
        let Ok(entries) = std::fs::read_dir(&self.root) else {
            return Vec::new();
        };
        let mut out: Vec<(usize, PathBuf)> = entries
            .filter_map(|e| e.ok())
            .filter_map(|e| {
                let name = e.file_name().into_string().ok()?;
                let step: usize = name.strip_prefix("step-")?.parse().ok()?;
                let path = e.path();
                path.join("state.json").is_file().then_some((step, path))
            })
            .collect();
        out.sort();
        out
    }

    /// The newest complete checkpoint: the one `latest` names, or failing
    /// that (a crash between the rename and the pointer update) the highest step.
    pub fn latest(&self) -> Option<PathBuf> {
        if let Ok(name) = std::fs::read_to_string(self.root.join("latest")) {
            let dir = self.root.join(name.trim());
            if dir.join("state.json").is_file() {
                let newest = self.list().pop().map(|(_, p)| p);
                return Some(newest.filter(|n| n > &dir).unwrap_or(dir));
            }
        }
        self.list().pop().map(|(_, p)| p)
    }

    fn prune(&self, keep: usize) -> anyhow::Result<()> {
        let all = self.list();
        for (_, path) in all.iter().take(all.len().saturating_sub(keep)) {
            std::fs::remove_dir_all(path)
                .with_context(|| format!("cannot remove {}", path.display()))?;
        }
        Ok(())
    }
}

/// Writes a burn record (optimizer state, schedule policy) as named
/// MessagePack at `path` (`.mpk` is appended).
pub fn save_record<R: burn::record::Record<B>, B: burn::prelude::Backend>(
    record: R,
    path: &Path,
) -> anyhow::Result<()> {
    recorder()
        .record(record, path.to_path_buf())
        .map_err(|e| anyhow::anyhow!("cannot write {}: {e}", path.display()))
}

/// Reads a record written by [`save_record`].
pub fn load_record<R: burn::record::Record<B>, B: burn::prelude::Backend>(
    path: &Path,
    device: &B::Device,
) -> anyhow::Result<R> {
    recorder()
        .load(path.to_path_buf(), device)
        .map_err(|e| anyhow::anyhow!("cannot read {}.mpk: {e}", path.display()))
}

/// Reads a checkpoint's `state.json`.
pub fn read_state(dir: &Path) -> anyhow::Result<TrainState> {
    let path = dir.join("state.json");
    let bytes = std::fs::read(&path).with_context(|| format!("cannot read {}", path.display()))?;
    let state: TrainState = serde_json::from_slice(&bytes)
        .with_context(|| format!("{} is not a cogrpo checkpoint state", path.display()))?;
    if state.format_version != FORMAT_VERSION {
        bail!(
            "{} has checkpoint format {}, this build reads format {FORMAT_VERSION}",
            path.display(),
            state.format_version
        );
    }
    Ok(state)
}

/// Loads a checkpoint's weights into a fresh model of its recorded shape.
/// `source` is a checkpoint directory or a `.safetensors` file, in cogrpo's
/// layout or SMDM's (then `expected` gives the shape).
pub fn load_model<B: burn::prelude::Backend>(
    source: &Path,
    expected: &DenoiserConfig,
    device: &B::Device,
) -> anyhow::Result<Denoiser<B>> {
    let (weights, cfg) = if source.is_dir() {
        let state = read_state(source)?;
        if &state.denoiser != expected {
            bail!(
                "checkpoint {} holds a denoiser of shape {:?}, but the config asks for {:?}",
                source.display(),
                state.denoiser,
                expected
            );
        }
        (source.join("model.safetensors"), state.denoiser)
    } else if mdm::smdm::is_smdm_file(source) {
        // A model in SMDM's (PyTorch) layout.
        return Ok(mdm::smdm::import::<B>(expected, source, device)?);
    } else {
        (source.to_path_buf(), expected.clone())
    };
    Ok(mdm::weights::load(cfg.init::<B>(0, device), &weights)?)
}

/// Restores the optimizer state saved beside the weights.
pub fn load_optimizer<B, O>(dir: &Path, optim: O, device: &B::Device) -> anyhow::Result<O>
where
    B: AutodiffBackend,
    O: Optimizer<Denoiser<B>, B>,
    Denoiser<B>: AutodiffModule<B>,
{
    let record = recorder()
        .load(dir.join("optimizer"), device)
        .map_err(|e| {
            anyhow::anyhow!("cannot read the optimizer state in {}: {e}", dir.display())
        })?;
    Ok(optim.load_record(record))
}
