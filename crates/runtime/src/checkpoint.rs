//! Training checkpoints.
//!
//! ```text
//! checkpoints/
//!   step-00000500/
//!     model.safetensors   denoiser weights
//!     optimizer.mpk       AdamW moments (burn record, keyed by parameter id)
//!     state.json          step, seed, progress counters, denoiser shape
//!     config.toml         the resolved experiment config
//!     checksums.sha256    SHA-256 of every other file (`sha256sum -c` reads it)
//!   latest                name of the newest complete checkpoint
//! ```
//!
//! A checkpoint is written into `step-N.partial-<pid>` and renamed into place
//! only when complete, then `latest` is replaced atomically; a kill at any
//! moment leaves the previous checkpoint loadable, and the next writer
//! removes what the killed one left half-written. Every load verifies the
//! checksums first (checkpoints from before they existed load unverified):
//! a damaged file is refused by name, naming the previous good checkpoint,
//! and `--resume` falls back to that one with a warning. Parameter ids are fixed
//! at model creation (see `mdm::init`), so the optimizer state matches the
//! model again after a restart.
//!
//! Random state: every draw of training step `s` comes from streams keyed by
//! `(seed, s, ...)`, so the seed and the step are the complete RNG state.

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use burn::module::AutodiffModule;
use burn::optim::Optimizer;
use burn::record::{FullPrecisionSettings, NamedMpkBytesRecorder, NamedMpkFileRecorder, Recorder};
use mdm::{Denoiser, DenoiserConfig};
use serde::Deserialize;

use burn::tensor::backend::AutodiffBackend;
use cogrpo_config::ExperimentConfig;
use cogrpo_config::resume::{Scope, conflicts};

use crate::BadInput;
use crate::files::{remove_stale_temporaries, write_atomic};

/// The checksum manifest of a checkpoint folder.
const CHECKSUMS: &str = "checksums.sha256";

/// Refuses to resume `dir`, written by a run of `written` ranks, on `now`
/// ranks: the data split, the summation order and so the numbers would
/// differ from the run being continued.
pub fn check_ranks(dir: &Path, written: usize, now: usize) -> anyhow::Result<()> {
    if written != now {
        return Err(BadInput(format!(
            "{} was written by a run of {written} rank(s); this one has {now}. Resume with the \
             same --nodes x --devices ({written} ranks), or start a new run.out_dir",
            dir.display()
        ))
        .into());
    }
    Ok(())
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

    /// Writes checkpoint `step-<step>`: `write` fills a fresh folder (it must
    /// write `state.json`, which marks a checkpoint complete), which is then
    /// renamed into place; `latest` is updated and the newest `keep` kept.
    pub fn save_with(
        &self,
        step: usize,
        keep: usize,
        write: impl FnOnce(&Path) -> anyhow::Result<()>,
    ) -> anyhow::Result<PathBuf> {
        // A rank stopped by the control plane waits for this write.
        let _writing = crate::distributed::write_guard();
        std::fs::create_dir_all(&self.root)
            .with_context(|| format!("cannot create {}", self.root.display()))?;
        remove_stale_temporaries(&self.root)?;
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
        write_checksums(&partial)?;
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

    /// The final checkpoint of a (distributed) training: rank 0 writes it
    /// with `save`, the other ranks wait for that and read where it went,
    /// since what follows (an arm starting from it) loads it on every rank.
    pub fn save_final<B: burn::prelude::Backend>(
        &self,
        world: &crate::distributed::World,
        device: &B::Device,
        save: impl FnOnce() -> anyhow::Result<PathBuf>,
    ) -> anyhow::Result<PathBuf> {
        let saved = match world.is_writer() {
            true => Some(save().context("cannot write the final checkpoint")?),
            false => None,
        };
        world.barrier::<B>(device)?;
        match saved {
            Some(dir) => Ok(dir),
            None => self.latest().with_context(|| {
                format!(
                    "rank {} cannot see rank 0's final checkpoint under {}: run.out_dir must be \
                     on a filesystem every node mounts",
                    world.rank,
                    self.root.display()
                )
            }),
        }
    }

    /// Complete checkpoints, oldest first.
    pub fn list(&self) -> Vec<(usize, PathBuf)> {
        let Ok(entries) = std::fs::read_dir(&self.root) else {
            return Vec::new();
        };
        let mut out: Vec<(usize, PathBuf)> = entries
            .filter_map(|e| e.ok())
            .filter_map(|e| {
                let path = e.path();
                let step = step_of(&path)?;
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

    /// The checkpoint to resume from: the newest one whose files verify.
    /// Newer ones that fail are reported and skipped (they stay on disk for
    /// inspection; the next save at their step replaces them).
    pub fn resume_point(&self) -> Option<PathBuf> {
        self.newest_verified(None, |dir, why| {
            tracing::warn!(
                "checkpoint {} is damaged: {why}; trying the checkpoint before it",
                dir.display()
            )
        })
    }

    /// The newest checkpoint (older than `before`, if given) whose files
    /// verify, or that has no checksums to verify; `skipped` hears each
    /// newer one that fails, and why.
    fn newest_verified(
        &self,
        before: Option<&Path>,
        mut skipped: impl FnMut(&Path, &str),
    ) -> Option<PathBuf> {
        let mut dirs: Vec<PathBuf> = self
            .list()
            .into_iter()
            .map(|(_, p)| p)
            .filter(|p| before.is_none_or(|b| p.as_path() < b))
            .collect();
        while let Some(dir) = dirs.pop() {
            match check_manifest(&dir) {
                Some(Err(why)) => skipped(&dir, &why),
                _ => return Some(dir),
            }
        }
        None
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

/// The step a checkpoint folder's name `step-N` records.
pub fn step_of(dir: &Path) -> Option<usize> {
    dir.file_name()?
        .to_str()?
        .strip_prefix("step-")?
        .parse()
        .ok()
}

/// Writes a burn record (optimizer state, schedule policy) as named
/// MessagePack at `path` (`.mpk` is appended).
pub fn save_record<R: burn::record::Record<B>, B: burn::prelude::Backend>(
    record: R,
    path: &Path,
) -> anyhow::Result<()> {
    // Encoded in memory and written by std, not by burn's file recorder:
    // burn's writer turns an OS error (no space left) into an opaque
    // MessagePack error. The bytes are the file recorder's format.
    let bytes = NamedMpkBytesRecorder::<FullPrecisionSettings>::default()
        .record(record, ())
        .map_err(|e| anyhow::anyhow!("cannot encode {}.mpk: {e}", path.display()))?;
    let file = path.with_extension("mpk");
    std::fs::write(&file, bytes).with_context(|| format!("cannot write {}", file.display()))
}

/// Reads a record written by [`save_record`].
pub fn load_record<R: burn::record::Record<B>, B: burn::prelude::Backend>(
    path: &Path,
    device: &B::Device,
) -> anyhow::Result<R> {
    recorder()
        .load(path.to_path_buf(), device)
        .map_err(|_| unreadable_record(path).into())
}

/// The error for a record file burn cannot decode. burn's own text for a
/// damaged file blames a format change "since 0.14", which misleads; a
/// missing file keeps its reason.
fn unreadable_record(path: &Path) -> BadInput {
    let file = format!("{}.mpk", path.display());
    if !Path::new(&file).is_file() {
        return BadInput(format!("cannot read {file}: no such file"));
    }
    BadInput(format!(
        "cannot read {file}: it is damaged, or holds the state of another model shape or \
         optimizer"
    ))
}

/// SHA-256 of a file, as lowercase hex.
fn sha256_file(path: &Path) -> std::io::Result<String> {
    use sha2::Digest;
    let mut hasher = sha2::Sha256::new();
    // Only a regular file: a FIFO in a checkpoint folder would block.
    envs::files::regular(path)?;
    std::io::copy(&mut std::fs::File::open(path)?, &mut hasher)?;
    Ok(hasher
        .finalize()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect())
}

/// Writes `checksums.sha256` over every file of the finished folder `dir`,
/// in name order, in `sha256sum`'s format.
fn write_checksums(dir: &Path) -> anyhow::Result<()> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .with_context(|| format!("cannot list {}", dir.display()))?
        .filter_map(|e| e.ok())
        .filter(|e| e.file_type().is_ok_and(|t| t.is_file()))
        .filter_map(|e| e.file_name().into_string().ok())
        .filter(|n| n != CHECKSUMS)
        .collect();
    names.sort();
    let mut text = Vec::new();
    for name in names {
        let digest = sha256_file(&dir.join(&name))
            .with_context(|| format!("cannot read {}", dir.join(&name).display()))?;
        writeln!(text, "{digest}  {name}")?;
    }
    write_atomic(&dir.join(CHECKSUMS), &text)
}

/// Checks every file a checkpoint folder's `checksums.sha256` lists. A
/// folder without one (written before checksums existed) passes. On a
/// mismatch the error names the file and the newest older checkpoint beside
/// it that verifies.
pub fn verify(dir: &Path) -> Result<(), BadInput> {
    let Some(Err(what)) = check_manifest(dir) else {
        return Ok(());
    };
    let previous = previous_good(dir).map_or_else(
        || "no older checkpoint beside it verifies".to_string(),
        |p| format!("the previous good checkpoint is {}", p.display()),
    );
    Err(BadInput(format!(
        "checkpoint {} is damaged: {what}; {previous}",
        dir.display()
    )))
}

/// `None` without a manifest; else whether every listed file matches.
fn check_manifest(dir: &Path) -> Option<Result<(), String>> {
    let text = std::fs::read_to_string(dir.join(CHECKSUMS)).ok()?;
    for (i, line) in text.lines().enumerate() {
        let Some((digest, name)) = line.split_once("  ") else {
            return Some(Err(format!(
                "{CHECKSUMS} line {} is not `<sha256>  <file>`",
                i + 1
            )));
        };
        if name.contains(['/', '\\']) || name == ".." {
            return Some(Err(format!(
                "{CHECKSUMS} names {name:?}, outside the folder"
            )));
        }
        match sha256_file(&dir.join(name)) {
            Ok(actual) if actual == digest => {}
            Ok(_) => {
                return Some(Err(format!(
                    "{name} does not match its checksum (changed after it was written: a \
                     flipped bit, a truncated copy, an edit)"
                )));
            }
            Err(e) => return Some(Err(format!("cannot read {name}: {e}"))),
        }
    }
    Some(Ok(()))
}

/// The newest checkpoint older than `dir` in the same folder that verifies:
/// the one `--resume` falls back to.
fn previous_good(dir: &Path) -> Option<PathBuf> {
    CheckpointDir::new(dir.parent()?.to_path_buf()).newest_verified(Some(dir), |_, _| {})
}

/// A checkpoint folder's `state.json` as `T`, after verifying the folder;
/// `what` names the kind of state in the error.
pub fn read_state_json<T: serde::de::DeserializeOwned>(
    dir: &Path,
    what: &str,
) -> Result<T, BadInput> {
    verify(dir)?;
    let path = dir.join("state.json");
    let bytes = envs::files::read_regular(&path)
        .map_err(|e| BadInput(format!("cannot read {}: {e}", path.display())))?;
    serde_json::from_slice(&bytes)
        .map_err(|e| BadInput(format!("{} is not {what}: {e}", path.display())))
}

/// The layout of a pre-training checkpoint that this build reads; bumped
/// when it changes incompatibly.
pub const FORMAT_VERSION: u32 = 1;

/// What [`load_model`] reads of a pre-training checkpoint's `state.json`:
/// its format and the denoiser shape it records.
#[derive(Deserialize)]
struct RecordedShape {
    format_version: u32,
    denoiser: DenoiserConfig,
}

/// Loads a checkpoint's weights into a fresh model of its recorded shape.
/// `source` is a checkpoint directory or a `.safetensors` file, in cogrpo's
/// layout or SMDM's (then `expected` gives the shape).
pub fn load_model<B: burn::prelude::Backend>(
    source: &Path,
    expected: &DenoiserConfig,
    device: &B::Device,
) -> anyhow::Result<Denoiser<B>> {
    // `checkpoints/latest` names the newest checkpoint folder beside it:
    // the one `CheckpointDir::latest` finds.
    let pointed;
    let source = match source.parent() {
        Some(root) if source.file_name().is_some_and(|n| n == "latest") && source.is_file() => {
            pointed = CheckpointDir::new(root.to_path_buf())
                .latest()
                .ok_or_else(|| {
                    BadInput(format!("{} names no complete checkpoint", source.display()))
                })?;
            pointed.as_path()
        }
        _ => source,
    };
    if mdm::hf::is_model_dir(source) {
        return load_model_dir::<B>(source, expected, device);
    }
    let (weights, cfg) = if source.is_dir() {
        let state: RecordedShape = read_state_json(source, "a cogrpo checkpoint state")?;
        if state.format_version != FORMAT_VERSION {
            return Err(BadInput(format!(
                "{} has checkpoint format {}, this build reads format {FORMAT_VERSION}",
                source.join("state.json").display(),
                state.format_version
            ))
            .into());
        }
        if state.denoiser.family != expected.family {
            return Err(BadInput(format!(
                "checkpoint {} holds an {} model, but the config asks for an {} \
                 (model.family = \"{}\"): a checkpoint loads only as its own family",
                source.display(),
                state.denoiser.family.name().to_uppercase(),
                expected.family.name().to_uppercase(),
                expected.family
            ))
            .into());
        }
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
        // A model in SMDM's (PyTorch) layout: its MDMs and ARM baselines.
        if expected.family == mdm::Family::Ilm {
            return Err(BadInput(format!(
                "{} is in SMDM's layout, which has no ILM stop head: it loads as an MDM or an ARM",
                source.display()
            ))
            .into());
        }
        return mdm::smdm::import::<B>(expected, source, device)
            .map_err(|e| BadInput(e.to_string()).into());
    } else {
        (source.to_path_buf(), expected.clone())
    };
    mdm::weights::load(cfg.init::<B>(0, device), &weights)
        .map_err(|e| BadInput(e.to_string()).into())
}

/// A Hugging Face model directory (`model.source`) as the denoiser
/// `expected` describes (its shape, for the task's sequence length).
fn load_model_dir<B: burn::prelude::Backend>(
    dir: &Path,
    expected: &DenoiserConfig,
    device: &B::Device,
) -> anyhow::Result<Denoiser<B>> {
    let hf = mdm::hf::HfModel::open(dir).map_err(|e| BadInput(e.to_string()))?;
    // The task sets how long sequences are and which rows are padding.
    let mut shape = hf.config.denoiser.clone();
    shape.max_len = expected.max_len;
    shape.live_vocab = expected.live_vocab;
    if &shape != expected {
        return Err(BadInput(format!(
            "{} holds a denoiser of shape {shape:?}, but the config asks for {expected:?} \
             (set model.source to this directory instead of giving the shape)",
            dir.join("config.json").display()
        ))
        .into());
    }
    hf.load_as::<B>(expected, device)
        .map_err(|e| BadInput(e.to_string()).into())
}

/// Restores an optimizer state saved as `name.mpk` in `dir` by
/// [`save_record`].
pub fn load_optimizer<B, M, O>(
    dir: &Path,
    name: &str,
    optim: O,
    device: &B::Device,
) -> anyhow::Result<O>
where
    B: AutodiffBackend,
    M: AutodiffModule<B>,
    O: Optimizer<M, B>,
{
    let record = load_record(&dir.join(name), device)?;
    Ok(optim.load_record(record))
}

/// Refuses to continue (or reuse) checkpoint `dir` under `cfg` when its
/// `config.toml` differs in a key that shapes the training
/// ([`cogrpo_config::resume`]), naming the keys; with
/// `run.allow_config_change` it warns instead.
pub fn check_resume(dir: &Path, cfg: &ExperimentConfig, scope: Scope) -> anyhow::Result<()> {
    let path = dir.join("config.toml");
    let text = envs::files::read_regular_to_string(&path)
        .map_err(|e| BadInput(format!("cannot read {}: {e}", path.display())))?;
    let prev: ExperimentConfig = toml::from_str(&text).map_err(|e| {
        BadInput(format!(
            "{} is damaged or not a config this build reads: {}",
            path.display(),
            e.message()
        ))
    })?;
    let keys = conflicts(&prev, cfg, scope);
    if keys.is_empty() {
        return Ok(());
    }
    let keys = keys.join(", ");
    if cfg.run.allow_config_change {
        tracing::warn!(
            "continuing {} with changed {keys} (--allow-config-change)",
            dir.display()
        );
        return Ok(());
    }
    Err(BadInput(format!(
        "{} was written under another config: {keys} changed; undo the change, set another \
         run.out_dir, or pass --allow-config-change to continue under the new values (nothing \
         was overwritten)",
        dir.display()
    ))
    .into())
}
