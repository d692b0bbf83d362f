//! `cogrpo bench`: the framework's throughput table (forward, training
//! step, Co-GRPO update, samplers) on the configured model, and
//! `--scaling`, the first-hitting sampler against ancestral sampling over
//! length and vocabulary. Both are read in docs/performance.md.

use cogrpo_train::bench::{self, BenchOptions};
use cogrpo_train::config::ExperimentConfig;
use cogrpo_train::tasks;

use crate::backend::Job;
use cogrpo_train::distributed::World;
use mdm::{AutodiffKernels, Kernels};

/// `--samplers` names as the config spells them.
pub(super) fn parse_samplers(names: &[String]) -> anyhow::Result<Vec<policy::SamplerKind>> {
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
pub(super) struct Bench {
    pub(super) cfg: ExperimentConfig,
    pub(super) batch: usize,
    pub(super) train_steps: usize,
    pub(super) steps: Vec<usize>,
    pub(super) forward_batch: Vec<usize>,
    pub(super) samplers: Vec<policy::SamplerKind>,
    pub(super) grpo_steps: usize,
    pub(super) json: bool,
    /// Lengths and vocabularies of the first-hitting scaling grid.
    pub(super) scaling: Option<(Vec<usize>, Vec<usize>)>,
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
        if self.json {
            tracing::info!("{title}");
        } else {
            println!("{title}\n{}", bench::header());
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
