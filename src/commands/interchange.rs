//! Weight interchange with SMDM's PyTorch code: `cogrpo export` writes the
//! denoiser as SMDM-named safetensors, `cogrpo logits` runs a forward on
//! given token rows; `bench/compare.py` drives both against the PyTorch
//! reference.

use std::path::PathBuf;

use anyhow::{Context, bail};
use clap::Args;
use cogrpo_config::{ExperimentConfig, tasks};
use cogrpo_experiment::sources::{checkpoint_source, load_model};
use cogrpo_runtime::distributed::World;
use mdm::AutodiffKernels;

use super::common::{Common, ModelSource};
use crate::backend::{Job, dispatch};

/// Write a checkpoint's denoiser in SMDM's PyTorch layout (safetensors).
#[derive(Args)]
#[command(
    after_help = "Examples:\n  cogrpo export -c experiments/sudoku4.toml --out sudoku4-smdm.safetensors\n  \
    cogrpo export -c experiments/text.toml --init --out random.safetensors   # fresh weights\n\n\
    Any command's --checkpoint also reads SMDM files (e.g. a model trained with SMDM's code)."
)]
pub struct ExportArgs {
    #[command(flatten)]
    common: Common,
    #[command(flatten)]
    model: ModelSource,
    /// Export freshly initialized weights (seeded by run.seed) instead.
    #[arg(long, conflicts_with = "checkpoint")]
    init: bool,
    /// Output file (.safetensors).
    #[arg(long)]
    out: PathBuf,
}

impl ExportArgs {
    /// Writes the checkpoint's denoiser (or, with `--init`, freshly
    /// initialised weights) to `--out` in SMDM's layout.
    pub fn run(self) -> anyhow::Result<()> {
        let (cfg, out) = (self.common.load()?, &self.out);
        let task = tasks::build(&cfg)?;
        let d = tasks::denoiser_config(&cfg, task.as_ref());
        anyhow::ensure!(
            d.family != mdm::Family::Ilm,
            "export: SMDM's layout has no place for the ILM's stop head (MDMs and ARMs export)"
        );
        let dev = Default::default();
        let model: mdm::Denoiser<burn::backend::Flex> = if self.init {
            d.init(cogrpo_pretrain::init_seed(cfg.run.seed), &dev)
        } else {
            let source = checkpoint_source(&cfg, self.model.checkpoint)?;
            load_model(&cfg, task.as_ref(), &source, &dev)?
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
}

/// Print the logits of token rows (JSON) for a checkpoint: agreement checks.
#[derive(Args, Clone)]
#[command(
    after_help = "Example:\n  cogrpo logits -c experiments/text.toml --checkpoint m.safetensors --input rows.json --out logits.json\n\n\
    rows.json is a list of equal-length lists of token ids (the mask id is the vocabulary size)."
)]
pub struct LogitsArgs {
    #[command(flatten)]
    common: Common,
    #[command(flatten)]
    model: ModelSource,
    #[arg(long)]
    input: PathBuf,
    #[arg(long)]
    out: PathBuf,
}

impl LogitsArgs {
    pub fn run(self) -> anyhow::Result<()> {
        let cfg = self.common.load()?;
        dispatch(
            cfg.run.device,
            LogitsJob {
                cfg,
                checkpoint: self.model.checkpoint,
                input: self.input,
                out: self.out,
            },
        )
    }
}

#[derive(Clone)]
struct LogitsJob {
    cfg: ExperimentConfig,
    checkpoint: Option<PathBuf>,
    input: PathBuf,
    out: PathBuf,
}

impl Job for LogitsJob {
    fn run<B: AutodiffKernels>(self, device: B::Device, _world: &World) -> anyhow::Result<()> {
        let task = tasks::build(&self.cfg)?;
        let source = checkpoint_source(&self.cfg, self.checkpoint)?;
        let model = load_model::<B::InnerBackend>(&self.cfg, task.as_ref(), &source, &device)?;
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

/// Check that the CPU and the GPU give the same logits for a checkpoint.
#[derive(Args)]
#[command(
    after_help = "Example:\n  cogrpo agree --config experiments/sudoku4.toml   # needs a --features cuda build"
)]
pub struct AgreeArgs {
    #[command(flatten)]
    common: Common,
    #[command(flatten)]
    model: ModelSource,
    /// Test examples compared.
    #[arg(long, default_value_t = 64)]
    rows: usize,
}

impl AgreeArgs {
    pub fn run(self) -> anyhow::Result<()> {
        let cfg = self.common.load()?;
        let source = checkpoint_source(&cfg, self.model.checkpoint)?;
        crate::agree::agree(&cfg, source, self.rows)
    }
}
