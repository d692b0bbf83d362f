//! `cogrpo bench`: the framework's throughput table (forward, training
//! step, Co-GRPO update, samplers) on the configured model, and
//! `--scaling`, the first-hitting sampler against ancestral sampling over
//! length and vocabulary. Both are read in docs/performance.md.

use clap::Args;
use cogrpo_bench::{self as bench, BenchOptions};
use cogrpo_config::{ExperimentConfig, tasks};
use cogrpo_runtime::distributed::World;
use mdm::{AutodiffKernels, Kernels};

use super::common::Common;
use crate::backend::{Job, dispatch};

/// Measure training, forward and sampling throughput.
#[derive(Args)]
#[command(after_help = "Example:\n  cogrpo bench --config experiments/sudoku4.toml --batch 64")]
pub struct BenchArgs {
    #[command(flatten)]
    common: Common,
    /// Rows per sampling batch.
    #[arg(long, default_value_t = 64)]
    batch: usize,
    /// Training steps timed (after one warm-up step).
    #[arg(long, default_value_t = 5)]
    train_steps: usize,
    /// Sampler step counts (default: eval.steps, else the answer length).
    #[arg(long, value_delimiter = ',')]
    steps: Vec<usize>,
    /// Batches of the forward-pass rows (default: --batch).
    #[arg(long, value_delimiter = ',')]
    forward_batch: Vec<usize>,
    /// Samplers timed: ancestral, first_hitting, confidence (default: all).
    #[arg(long, value_delimiter = ',')]
    samplers: Vec<String>,
    /// Steps per trajectory of the Co-GRPO update row (0: skip it).
    #[arg(long, default_value_t = 4)]
    grpo_steps: usize,
    /// Only the Co-GRPO update row (LoRA with [cogrpo.lora]), so that the
    /// process's peak memory is the update's.
    #[arg(long)]
    update_only: bool,
    /// One JSON object per row instead of the table.
    #[arg(long)]
    json: bool,
    /// Instead: first-hitting vs ancestral sampling over a grid of
    /// lengths and vocabularies (the config's width, depth and heads).
    #[arg(long)]
    scaling: bool,
    /// Sequence lengths of the --scaling grid.
    #[arg(long, value_delimiter = ',', default_value = "64,256,1024")]
    lengths: Vec<usize>,
    /// Vocabulary sizes of the --scaling grid.
    #[arg(long, value_delimiter = ',', default_value = "64,1024,8192,50257")]
    vocabs: Vec<usize>,
}

impl BenchArgs {
    pub fn run(self) -> anyhow::Result<()> {
        let samplers = parse_samplers(&self.samplers)?;
        let cfg = self.common.load()?;
        anyhow::ensure!(
            self.batch > 0 && self.train_steps > 0,
            "--batch and --train-steps must be at least 1"
        );
        anyhow::ensure!(
            self.steps
                .iter()
                .all(|n| (1..=policy::MAX_STEPS).contains(n)),
            "--steps: each step count must lie in 1..={}",
            policy::MAX_STEPS
        );
        let job = Bench {
            cfg,
            batch: self.batch,
            train_steps: self.train_steps,
            steps: self.steps,
            forward_batch: self.forward_batch,
            samplers,
            grpo_steps: self.grpo_steps,
            update_only: self.update_only,
            json: self.json,
            scaling: self.scaling.then_some((self.lengths, self.vocabs)),
        };
        dispatch(job.cfg.run.device, job)
    }
}

/// `--samplers` names as the config spells them.
fn parse_samplers(names: &[String]) -> anyhow::Result<Vec<policy::SamplerKind>> {
    names
        .iter()
        .map(|s| {
            serde_json::from_value::<policy::SamplerKind>(serde_json::Value::String(s.clone()))
                .map_err(|_| {
                    anyhow::anyhow!(
                        "--samplers {s}: expected ancestral, first_hitting or confidence"
                    )
                })
        })
        .collect()
}

#[derive(Clone)]
struct Bench {
    cfg: ExperimentConfig,
    batch: usize,
    train_steps: usize,
    steps: Vec<usize>,
    forward_batch: Vec<usize>,
    samplers: Vec<policy::SamplerKind>,
    grpo_steps: usize,
    update_only: bool,
    json: bool,
    /// Lengths and vocabularies of the first-hitting scaling grid.
    scaling: Option<(Vec<usize>, Vec<usize>)>,
}

impl Bench {
    fn scaling<B: Kernels>(
        &self,
        arch: &mdm::DenoiserConfig,
        lens: &[usize],
        vocabs: &[usize],
        device: &B::Device,
    ) -> anyhow::Result<()> {
        anyhow::ensure!(
            !lens.is_empty() && !vocabs.is_empty() && lens.iter().chain(vocabs).all(|&n| n > 0),
            "--lengths and --vocabs need positive sizes"
        );
        let title = format!(
            "# first-hitting vs ancestral on {device:?}: d_model {}, {} layers, {} heads, d_ff {}; \
             one sequence of `len` tokens in `len` steps on one sampling thread (burn may split \
             large matmuls across cores); seconds per sequence, `net s` of them in the network; \
             `sampler`: dense / first-hitting outside the network",
            arch.d_model, arch.n_layers, arch.n_heads, arch.d_ff
        );
        if self.json {
            tracing::info!("{title}");
        } else {
            println!("{title}\n{}", bench::scaling::header());
        }
        let json = self.json;
        bench::scaling::scaling::<B>(arch, lens, vocabs, self.cfg.run.seed, device, |r| {
            if json {
                println!("{}", serde_json::to_string(r).unwrap_or_default());
            } else {
                println!("{}", bench::scaling::format_row(r))
            }
        })?;
        Ok(())
    }
}

impl Job for Bench {
    fn run<B: AutodiffKernels>(self, device: B::Device, _world: &World) -> anyhow::Result<()> {
        let task = tasks::build(&self.cfg)?;
        let d = tasks::denoiser_config(&self.cfg, task.as_ref());
        if let Some((lens, vocabs)) = &self.scaling {
            return self.scaling::<B::InnerBackend>(&d, lens, vocabs, &device);
        }
        let title = format!(
            "# {} on {:?}: {} parameters, sequence {} (answer {}), vocabulary {}",
            task.name(),
            device,
            d.num_params(),
            d.max_len,
            task.layout().answer_len,
            d.vocab_size
        );
        let machine = bench::machine::Machine {
            cpu: bench::machine::Cpu::detect(),
            matmul: bench::machine::matmul_rates::<B::InnerBackend>(
                &bench::machine::matmul_shapes(d.d_model, d.d_ff),
                &device,
            ),
        };
        if self.json {
            tracing::info!("{title}");
            println!("{}", serde_json::json!({ "machine": machine }));
        } else {
            println!("{title}\n{}\n{}", machine.header(), bench::header());
        }
        let steps = if self.steps.is_empty() {
            self.cfg.eval.steps.clone()
        } else {
            self.steps
        };
        let opts = BenchOptions {
            train_steps: self.train_steps,
            sample_batch: self.batch,
            sampler_steps: steps,
            forward_batches: self.forward_batch,
            samplers: self.samplers,
            grpo_steps: self.grpo_steps,
            update_only: self.update_only,
        };
        let json = self.json;
        bench::bench::<B>(&self.cfg, task.as_ref(), &device, &opts, |r| {
            if json {
                println!("{}", serde_json::to_string(r).unwrap_or_default());
            } else {
                println!("{}", bench::format_row(r))
            }
        })?;
        Ok(())
    }
}
