//! The argument groups commands share: the experiment file and its
//! overrides ([`Common`]), where the model comes from ([`ModelSource`]),
//! and the shape of a distributed run ([`Distributed`]).

use std::path::PathBuf;

use clap::Args;
use cogrpo_config::{ConfigError, ExperimentConfig};
use cogrpo_experiment::plan::{Plan, available_memory};
use cogrpo_runtime::BadInput;
use cogrpo_runtime::distributed::Launch;
use envs::Task;

#[derive(Args, Clone)]
pub struct Common {
    /// Experiment file (TOML).
    #[arg(long, short = 'c')]
    pub config: PathBuf,
    /// Override a config key, e.g. `--set pretrain.steps=100` (repeatable).
    #[arg(long = "set", value_name = "KEY=VALUE")]
    pub sets: Vec<String>,
    /// Backend: cpu (default) or cuda (needs a build with `--features cuda`).
    #[arg(long, value_enum)]
    pub device: Option<DeviceArg>,
    /// Matmul precision (sets run.precision): tf32 (a GPU's tensor cores,
    /// ~5e-4 per product; float32 on the CPU), f32 (float32-accurate on a
    /// GPU too, about 4x the matmul time) or bf16 (autocast's bfloat16
    /// matmuls; emulated on the CPU).
    #[arg(long, value_enum)]
    pub precision: Option<PrecisionArg>,
    /// Overrides run.seed.
    #[arg(long)]
    pub seed: Option<u64>,
    /// Run even when the memory estimate (`cogrpo check`) says the plan
    /// does not fit in this machine's free memory.
    #[arg(long)]
    pub force: bool,
    /// Continue a checkpoint even though the config changed a key that
    /// shapes its training (sets run.allow_config_change).
    #[arg(long)]
    pub allow_config_change: bool,
}

#[derive(Clone, Copy, clap::ValueEnum)]
pub enum PrecisionArg {
    Tf32,
    F32,
    Bf16,
}

#[derive(Clone, Copy, clap::ValueEnum)]
pub enum DeviceArg {
    Cpu,
    Cuda,
}

impl Common {
    /// The config with `--set`, `--seed`, `--device` and `--precision`
    /// applied, in that order; sets this process's matmul precision from it.
    pub fn load(&self) -> Result<ExperimentConfig, ConfigError> {
        let mut sets = self.sets.clone();
        if let Some(seed) = self.seed {
            sets.push(format!("run.seed={seed}"));
        }
        if self.allow_config_change {
            sets.push("run.allow_config_change=true".into());
        }
        if let Some(d) = self.device {
            let name = match d {
                DeviceArg::Cpu => "cpu",
                DeviceArg::Cuda => "cuda",
            };
            sets.push(format!("run.device=\"{name}\""));
        }
        if let Some(p) = self.precision {
            let name = match p {
                PrecisionArg::Tf32 => "tf32",
                PrecisionArg::F32 => "f32",
                PrecisionArg::Bf16 => "bf16",
            };
            sets.push(format!("run.precision=\"{name}\""));
        }
        let cfg = cogrpo_config::load(&self.config, &sets)?;
        mdm::set_matmul_precision(cfg.run.precision);
        Ok(cfg)
    }

    /// These arguments with `--model DIR` as `--set model.source=DIR`.
    pub fn with_model(&self, model: &ModelSource) -> Self {
        let mut out = self.clone();
        if let Some(dir) = &model.model {
            let path = toml::Value::String(dir.display().to_string());
            out.sets.push(format!("model.source={path}"));
        }
        out
    }

    /// The config, refused (exit 2) when its plan cannot fit in the
    /// machine's free memory, unless `--force`.
    pub fn load_fitting(&self) -> anyhow::Result<ExperimentConfig> {
        Ok(self.load_planned()?.0)
    }

    /// [`Common::load_fitting`], with the task it built and the memory plan
    /// it checked (for `check` and `run`, which print the plan).
    pub fn load_planned(&self) -> anyhow::Result<(ExperimentConfig, Box<dyn Task>, Plan)> {
        let cfg = self.load()?;
        let task = cogrpo_config::tasks::build(&cfg)?;
        cfg.check_blocks(task.layout().answer_len)
            .map_err(|e| BadInput(format!("{}: {e}", self.config.display())))?;
        let d = cogrpo_config::tasks::denoiser_config(&cfg, task.as_ref());
        let plan = Plan::estimate(&cfg, &d, task.layout().seq_len());
        self.refuse_unfit(&plan)?;
        Ok((cfg, task, plan))
    }

    /// Refuses (exit 2) a plan whose peak exceeds the free memory; with
    /// `--force` warns instead.
    fn refuse_unfit(&self, plan: &Plan) -> anyhow::Result<()> {
        let Err(e) = plan.fits(available_memory()) else {
            return Ok(());
        };
        if !self.force {
            return Err(BadInput(format!("{}: {e}", self.config.display())).into());
        }
        tracing::warn!("{e}; going on (--force)");
        Ok(())
    }
}

/// Where a command's model comes from: the run's newest pre-training
/// checkpoint by default. (Every command that reads a model flattens this
/// group, so a new kind of source is added here once.)
#[derive(Args, Clone, Default)]
pub struct ModelSource {
    /// A checkpoint directory or .safetensors file, in cogrpo's layout or
    /// SMDM's (default: the run's newest checkpoint, else model.source).
    #[arg(long)]
    pub checkpoint: Option<PathBuf>,
    /// A Hugging Face model directory (LLaDA, Dream, or one `export
    /// --format hf` wrote): sets model.source and reads its weights.
    #[arg(long, value_name = "DIR", conflicts_with = "checkpoint")]
    pub model: Option<PathBuf>,
}

impl ModelSource {
    /// The model the command line names, if it names one.
    pub fn explicit(&self) -> Option<PathBuf> {
        self.checkpoint.clone().or_else(|| self.model.clone())
    }
}

/// A checkpoint or a trained Co-GRPO arm (`eval`, `sample`).
#[derive(Args, Clone, Default)]
pub struct ArmSource {
    #[command(flatten)]
    pub model: ModelSource,
    /// A trained Co-GRPO arm (runs/<name>/arms/<arm>, or one of its
    /// checkpoints): its model with its learned schedule in mode, as the
    /// report evaluates it (at cogrpo.eval_steps; tokens at
    /// cogrpo.eval_temperature).
    #[arg(long, conflicts_with = "checkpoint")]
    pub arm: Option<PathBuf>,
}

/// Data-parallel training over several devices and machines
/// (docs/distributed.md): every node runs the same command with its own
/// --node-rank; the global batch is the config's, split across the ranks.
#[derive(Args, Clone)]
#[command(next_help_heading = "Distributed")]
pub struct Distributed {
    /// Machines (processes) in the run.
    #[arg(long, default_value_t = 1)]
    pub nodes: usize,
    /// This node, 0..nodes. Node 0 coordinates and writes every file.
    #[arg(long, default_value_t = 0)]
    pub node_rank: usize,
    /// HOST:PORT of node 0, the same on every node. It uses PORT (control),
    /// PORT+1 (burn's collective orchestrator) and PORT+2+node-rank
    /// (tensors, see --data-port).
    #[arg(long, value_name = "HOST:PORT")]
    pub coordinator: Option<String>,
    /// Devices on each node, one rank each: GPUs 0..N with --device cuda;
    /// on the CPU, N ranks share the cores.
    #[arg(long, default_value_t = 1)]
    pub devices: usize,
    /// Port of this node's tensor service (default: PORT+2+node-rank).
    #[arg(long)]
    pub data_port: Option<u16>,
    /// The address other nodes reach this node at (default: the interface
    /// that routes to the coordinator).
    #[arg(long)]
    pub node_host: Option<String>,
    /// Seconds the nodes wait for each other at the start.
    #[arg(long, default_value_t = 120)]
    pub join_timeout: u64,
}

impl Distributed {
    pub fn launch(&self) -> Launch {
        Launch {
            nodes: self.nodes,
            node_rank: self.node_rank,
            coordinator: self.coordinator.clone(),
            devices: self.devices,
            data_port: self.data_port,
            node_host: self.node_host.clone(),
            join_timeout: std::time::Duration::from_secs(self.join_timeout),
        }
    }
}
