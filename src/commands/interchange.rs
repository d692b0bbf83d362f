//! Weight interchange with PyTorch code: `cogrpo export` writes the
//! denoiser as SMDM-named safetensors or as a Hugging Face directory in
//! LLaDA's or Dream's layout, `cogrpo logits` runs a forward on
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

/// Write a checkpoint's denoiser for PyTorch: SMDM's layout (one
/// safetensors file) or a Hugging Face directory in LLaDA's or Dream's
/// layout, which their own modeling code loads.
#[derive(Args)]
#[command(
    after_help = "Examples:\n  cogrpo export -c experiments/sudoku4.toml --out sudoku4-smdm.safetensors\n  \
    cogrpo export -c experiments/sudoku4.toml --format hf --out sudoku4-llada/   # LLaDA's layout\n  \
    cogrpo export -c experiments/text.toml --init --out random.safetensors   # fresh weights\n  \
    cogrpo export -c experiments/sudoku4-text-lora.toml --checkpoint runs/sudoku4-text-lora/arms/model --format peft --out adapter/\n\n\
    Any command's --checkpoint also reads SMDM files (e.g. a model trained with SMDM's code).\n\
    In a Hugging Face directory the denoiser's [MASK] is the last token of the vocabulary\n\
    (mask_token_id = cogrpo_vocab_size), with a zero head row: PyTorch samplers should\n\
    leave that logit out, as cogrpo never produces it."
)]
pub struct ExportArgs {
    #[command(flatten)]
    common: Common,
    #[command(flatten)]
    model: ModelSource,
    /// Export freshly initialized weights (seeded by run.seed) instead.
    #[arg(long, conflicts_with = "checkpoint")]
    init: bool,
    /// smdm: one safetensors file in SMDM's (lit-gpt's) names; hf: a
    /// Hugging Face directory (config.json, safetensors shards); peft: a
    /// LoRA arm's adapters as PEFT writes them (adapter_model.safetensors,
    /// adapter_config.json), for the base model's PyTorch code.
    #[arg(long, value_enum, default_value = "smdm")]
    format: ExportFormat,
    /// A LoRA arm's adapters folded into the base's weights (W + alpha/r A B)
    /// before writing it as smdm or hf.
    #[arg(long)]
    merge: bool,
    /// With --format hf or peft: the layout (default: the one the model was
    /// loaded from, else dream for a model with shifted logits, else llada).
    #[arg(long, value_enum)]
    architecture: Option<ArchitectureArg>,
    /// With --format hf or peft: the stored dtype.
    #[arg(long, value_enum, default_value = "f32")]
    dtype: DtypeArg,
    /// Output: a .safetensors file (smdm) or a directory (hf).
    #[arg(long)]
    out: PathBuf,
}

#[derive(Clone, Copy, PartialEq, clap::ValueEnum)]
enum ExportFormat {
    Smdm,
    Hf,
    Peft,
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum ArchitectureArg {
    Llada,
    Dream,
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum DtypeArg {
    F32,
    F16,
    Bf16,
}

/// Largest shard of an exported Hugging Face directory.
const SHARD_BYTES: usize = 5 << 30;

impl ExportArgs {
    /// Writes the checkpoint's denoiser (or, with `--init`, freshly
    /// initialised weights) to `--out`.
    pub fn run(self) -> anyhow::Result<()> {
        let (cfg, out) = (self.common.with_model(&self.model).load()?, &self.out);
        let task = tasks::build(&cfg)?;
        let d = tasks::denoiser_config(&cfg, task.as_ref());
        anyhow::ensure!(
            d.family != mdm::Family::Ilm,
            "export: neither SMDM's layout nor LLaDA's or Dream's has a place for the ILM's \
             stop head (MDMs export, and ARMs to SMDM's layout)"
        );
        let dev = Default::default();
        let model: mdm::Denoiser<burn::backend::Flex> = if self.init {
            d.init(cogrpo_pretrain::init_seed(cfg.run.seed), &dev)
        } else {
            let source = checkpoint_source(&cfg, self.model.explicit())?;
            load_model(&cfg, task.as_ref(), &source, &dev)?
        };
        let model = match (model.has_lora(), self.merge, self.format) {
            (true, true, ExportFormat::Peft) => bail!(
                "export: --merge folds the adapters into the weights, and --format peft writes \
                 the adapters alone; choose one"
            ),
            (true, true, _) => model.merged(),
            (true, false, ExportFormat::Peft) | (false, false, _) => model,
            (true, false, _) => bail!(
                "export: this checkpoint holds LoRA adapters on a frozen base; write them with \
                 --format peft, or fold them into the weights with --merge"
            ),
            (false, true, _) => {
                bail!("export: --merge needs a LoRA arm's checkpoint; this model has no adapters")
            }
        };
        if self.format == ExportFormat::Peft {
            return self.write_peft(&cfg, &model);
        }
        let shape = format!(
            "vocabulary {} + mask, d_model {}, {} layers, {} heads, d_ff {}",
            d.vocab_size, d.d_model, d.n_layers, d.n_heads, d.d_ff
        );
        if self.format == ExportFormat::Smdm {
            mdm::smdm::export(&model, out)?;
            println!(
                "wrote {} ({} parameters, SMDM layout: {shape})",
                out.display(),
                d.num_params()
            );
            return Ok(());
        }
        let hf = self.write_hf(&cfg, &model, d.clone(), self.stored_dtype())?;
        println!(
            "wrote {} ({} parameters, {} layout: {shape}; mask token {})",
            out.display(),
            hf.num_params(),
            hf.architecture.name(),
            hf.mask_token_id
        );
        Ok(())
    }

    fn stored_dtype(&self) -> mdm::hf::StoredDtype {
        match self.dtype {
            DtypeArg::F32 => mdm::hf::StoredDtype::F32,
            DtypeArg::F16 => mdm::hf::StoredDtype::F16,
            DtypeArg::Bf16 => mdm::hf::StoredDtype::Bf16,
        }
    }

    /// A LoRA arm's adapters in PEFT's format, for the layout the base was
    /// loaded from (or `--architecture`'s).
    fn write_peft(
        &self,
        cfg: &ExperimentConfig,
        model: &mdm::Denoiser<burn::backend::Flex>,
    ) -> anyhow::Result<()> {
        let released = match &cfg.model.source {
            Some(dir) if mdm::hf::is_model_dir(dir) => Some((dir, mdm::hf::HfModel::open(dir)?)),
            _ => None,
        };
        let architecture = match (&released, self.architecture) {
            (Some((dir, hf)), Some(a)) if a.architecture() != hf.config.architecture => bail!(
                "--architecture: {} is in {}'s layout, and its adapters are named for it",
                dir.display(),
                hf.config.architecture.name()
            ),
            (Some((_, hf)), _) => hf.config.architecture,
            (None, Some(a)) => a.architecture(),
            (None, None) if model.logit_shift() => mdm::hf::Architecture::Dream,
            (None, None) => mdm::hf::Architecture::Llada,
        };
        let base = released.as_ref().map(|(dir, _)| dir.display().to_string());
        let n = mdm::hf::write_peft(
            model,
            architecture,
            base.as_deref(),
            &self.out,
            self.stored_dtype(),
        )
        .map_err(|e| cogrpo_runtime::BadInput(e.to_string()))?;
        println!(
            "wrote {} ({n} adapter parameters on {} projections, PEFT's format for {}'s layout)",
            self.out.display(),
            model
                .lora_targets()
                .iter()
                .map(|t| t.name())
                .collect::<Vec<_>>()
                .join(", "),
            architecture.name()
        );
        Ok(())
    }

    /// The model as a Hugging Face directory: in the layout it was loaded
    /// from (`model.source`, whose `config.json` keys it keeps), or the
    /// one `--architecture` names; with the tokenizer files beside it.
    fn write_hf(
        &self,
        cfg: &ExperimentConfig,
        model: &mdm::Denoiser<burn::backend::Flex>,
        d: mdm::DenoiserConfig,
        dtype: mdm::hf::StoredDtype,
    ) -> anyhow::Result<mdm::hf::HfConfig> {
        use mdm::hf::{Architecture, HfConfig, HfModel};
        let (hf, base) = match &cfg.model.source {
            Some(dir) if mdm::hf::is_model_dir(dir) => {
                let released = HfModel::open(dir)?;
                let mut hf = released.config.clone();
                anyhow::ensure!(
                    self.architecture
                        .is_none_or(|a| a.architecture() == hf.architecture),
                    "--architecture: {} is in {}'s layout, and is written back in it",
                    dir.display(),
                    hf.architecture.name()
                );
                hf.denoiser = d;
                hf.denoiser.max_len = released.config.denoiser.max_len;
                (hf, Some(released.raw))
            }
            _ => {
                let architecture = match self.architecture {
                    Some(a) => a.architecture(),
                    None if d.logit_shift => Architecture::Dream,
                    None => Architecture::Llada,
                };
                (HfConfig::own(architecture, d), None)
            }
        };
        mdm::hf::write(model, &hf, base.as_ref(), &self.out, dtype, SHARD_BYTES)
            .map_err(|e| cogrpo_runtime::BadInput(e.to_string()))?;
        if let Some(from) = tasks::tokenizer_dir(cfg) {
            copy_text_files(&from, &self.out)?;
        }
        Ok(hf)
    }
}

impl ArchitectureArg {
    fn architecture(self) -> mdm::hf::Architecture {
        match self {
            ArchitectureArg::Llada => mdm::hf::Architecture::Llada,
            ArchitectureArg::Dream => mdm::hf::Architecture::Dream,
        }
    }
}

/// The files a model directory's text side is (tokenizer, its config and
/// special tokens, the chat template, generation defaults), copied from
/// `from` to `to` where present, so that `transformers` and cogrpo read
/// the exported model's text as the trained one's.
fn copy_text_files(from: &std::path::Path, to: &std::path::Path) -> anyhow::Result<()> {
    const FILES: [&str; 5] = [
        "tokenizer.json",
        "tokenizer_config.json",
        "special_tokens_map.json",
        "chat_template.jinja",
        "generation_config.json",
    ];
    for name in FILES {
        let src = from.join(name);
        if src.is_file() {
            let bytes =
                std::fs::read(&src).with_context(|| format!("cannot read {}", src.display()))?;
            cogrpo_runtime::files::write_atomic(&to.join(name), &bytes)?;
        }
    }
    Ok(())
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
        let cfg = self.common.with_model(&self.model).load()?;
        dispatch(
            cfg.run.device,
            LogitsJob {
                cfg,
                checkpoint: self.model.explicit(),
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
        let cfg = self.common.with_model(&self.model).load()?;
        let source = checkpoint_source(&cfg, self.model.explicit())?;
        crate::agree::agree(&cfg, source, self.rows)
    }
}
