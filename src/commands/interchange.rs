//! Weight interchange with SMDM's PyTorch code: `cogrpo export` writes the
//! denoiser as SMDM-named safetensors, `cogrpo logits` runs a forward on
//! given token rows; `bench/compare.py` drives both against the PyTorch
//! reference.

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use cogrpo_train::config::ExperimentConfig;
use cogrpo_train::{pretrain, tasks};

use super::{checkpoint_source, load_inference_model};
use crate::backend::Job;
use cogrpo_train::distributed::World;
use mdm::AutodiffKernels;

/// Writes the checkpoint's denoiser (or, with `init`, freshly initialised
/// weights) to `out` in SMDM's layout.
pub(super) fn export(
    cfg: &ExperimentConfig,
    checkpoint: Option<PathBuf>,
    init: bool,
    out: &Path,
) -> anyhow::Result<()> {
    let task = tasks::build(cfg)?;
    let d = tasks::denoiser_config(cfg, task.as_ref());
    anyhow::ensure!(
        d.family != mdm::Family::Ilm,
        "export: SMDM's layout has no place for the ILM's stop head (MDMs and ARMs export)"
    );
    let dev = Default::default();
    let model: mdm::Denoiser<burn::backend::Flex> = if init {
        d.init(pretrain::init_seed(cfg.run.seed), &dev)
    } else {
        let source = checkpoint_source(cfg, checkpoint)?;
        load_inference_model(cfg, task.as_ref(), &source, &dev)?
    };
    mdm::smdm::export(&model, out)?;
    println!(
        "wrote {} ({} parameters, SMDM layout: vocabulary {} + mask, d_model {}, {} layers, {} heads, d_ff {})",
        out.display(),
        d.num_params(),
        d.vocab_size,
        d.d_model,
        d.n_layers,
        d.n_heads,
        d.d_ff
    );
    Ok(())
}

#[derive(Clone)]
pub(super) struct LogitsJob {
    pub(super) cfg: ExperimentConfig,
    pub(super) checkpoint: Option<PathBuf>,
    pub(super) input: PathBuf,
    pub(super) out: PathBuf,
}

impl Job for LogitsJob {
    fn run<B: AutodiffKernels>(self, device: B::Device, _world: &World) -> anyhow::Result<()> {
        let task = tasks::build(&self.cfg)?;
        let source = checkpoint_source(&self.cfg, self.checkpoint)?;
        let model =
            load_inference_model::<B::InnerBackend>(&self.cfg, task.as_ref(), &source, &device)?;
        let text = std::fs::read_to_string(&self.input)
            .with_context(|| format!("cannot read {}", self.input.display()))?;
        let rows: Vec<Vec<u32>> = serde_json::from_str(&text).with_context(|| {
            format!(
                "{}: expected a list of lists of token ids",
                self.input.display()
            )
        })?;
        let len = rows.first().map_or(0, |r| r.len());
        anyhow::ensure!(
            len > 0 && rows.iter().all(|r| r.len() == len),
            "{}: rows must be non-empty and of equal length",
            self.input.display()
        );
        anyhow::ensure!(
            len <= model.max_len(),
            "{}: rows of {len} tokens exceed the model's {} positions",
            self.input.display(),
            model.max_len()
        );
        if let Some(t) = rows.iter().flatten().find(|&&t| t > model.mask_id()) {
            bail!(
                "{}: token {t} is outside the vocabulary (mask id {})",
                self.input.display(),
                model.mask_id()
            );
        }
        let flat: Vec<u32> = rows.iter().flatten().copied().collect();
        let logits: Vec<f32> = model
            .forward(mdm::Denoiser::input(&flat, rows.len(), len, &device))
            .into_data()
            .convert::<f32>()
            .to_vec()
            .map_err(|e| anyhow::anyhow!("{e:?}"))?;
        let json = serde_json::json!({
            "shape": [rows.len(), len, model.vocab_size()],
            "logits": logits,
        });
        std::fs::write(&self.out, serde_json::to_vec(&json)?)
            .with_context(|| format!("cannot write {}", self.out.display()))?;
        Ok(())
    }
}
