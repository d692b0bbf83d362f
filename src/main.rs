//! `cogrpo`: pre-train masked diffusion models, sample from them, evaluate.
//!
//! Every command reads one experiment file (`--config`), takes repeated
//! `--set key=value` overrides, and writes into the run's output directory.

mod agree;
mod allocator;
mod backend;
mod commands;
mod console;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};
use cogrpo_train::config::{ConfigError, DeviceKind};

#[derive(Parser)]
#[command(
    name = "cogrpo",
    version,
    about = "Masked diffusion models: pre-training, exact and fast samplers, Co-GRPO, evaluation",
    after_help = "Examples:
  cogrpo run --config experiments/sudoku4.toml
  cogrpo run --config experiments/sudoku4-cogrpo.toml --seed 1
  cogrpo train --config experiments/sudoku4-cogrpo.toml --arm alternate
  cogrpo pretrain --config experiments/text.toml --set pretrain.steps=500
  cogrpo eval --config experiments/sudoku4.toml --set eval.steps=[1,2,4,8,16]
  cogrpo sample --config experiments/text.toml --prompt 'ROMEO:' -n 3
  cogrpo check --config experiments/smoke/sudoku4.toml"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
    /// Only warnings and errors on stderr (no progress lines or bars).
    #[arg(short, long, global = true, conflicts_with = "verbose")]
    quiet: bool,
    /// More detail on stderr (debug messages).
    #[arg(short, long, global = true)]
    verbose: bool,
}

#[derive(Subcommand)]
enum RewardCommand {
    /// Serve in-process rewards (the task's verifiers, the learned reward
    /// models) as an HTTP reward server (docs/reward-protocol.md), so that
    /// another process or machine scores with them through a `kind = "http"`
    /// term. Runs until interrupted.
    #[command(
        after_help = "Example:\n  cogrpo reward serve --config experiments/digits.toml --name digit_classifier --port 8000\n\n\
        then in the training config:\n  [[rewards.terms]]\n  kind = \"http\"\n  name = \"digit_classifier\"\n  \
        url = \"http://127.0.0.1:8000/\""
    )]
    Serve {
        #[command(flatten)]
        common: Common,
        /// A reward to serve (repeatable; default: the config's built-in rewards).
        #[arg(long = "name")]
        names: Vec<String>,
        #[arg(long, default_value = "127.0.0.1")]
        host: String,
        #[arg(long, default_value_t = 8000)]
        port: u16,
    },
}

#[derive(Subcommand)]
enum Command {
    /// Pre-train the denoiser (diffusion ELBO / conditional loss).
    #[command(
        after_help = "Example:\n  cogrpo pretrain --config experiments/sudoku4.toml\n  \
        cogrpo pretrain --config experiments/sudoku4.toml --resume   # continue a stopped run"
    )]
    Pretrain {
        #[command(flatten)]
        common: Common,
        /// Continue from the newest checkpoint in the run directory.
        #[arg(long)]
        resume: bool,
        #[command(flatten)]
        dist: Distributed,
    },
    /// Evaluate a checkpoint on the held-out split (sampler sweep, ELBO).
    #[command(
        after_help = "Examples:\n  cogrpo eval --config experiments/sudoku4.toml --set eval.max_examples=100\n  \
        cogrpo eval --config experiments/sudoku4-cogrpo.toml --arm runs/sudoku4-cogrpo/arms/schedule"
    )]
    Eval {
        #[command(flatten)]
        common: Common,
        /// A checkpoint directory or .safetensors file (default: the run's newest).
        #[arg(long)]
        checkpoint: Option<PathBuf>,
        /// A trained Co-GRPO arm (runs/<name>/arms/<arm>, or one of its
        /// checkpoints): evaluates its model with its learned schedule at
        /// cogrpo.eval_steps, as the report does.
        #[arg(long, conflicts_with = "checkpoint")]
        arm: Option<PathBuf>,
    },
    /// Print completions of prompts.
    #[command(
        after_help = "Examples:\n  cogrpo sample --config experiments/text.toml --prompt 'ROMEO:' -n 2\n  \
        cogrpo sample --config experiments/sudoku4-cogrpo.toml --arm runs/sudoku4-cogrpo/arms/schedule\n  \
        cogrpo sample --config experiments/sudoku4.toml --prompt 3102200002100320 \\\n    \
        --set sampler.kind=confidence --set sampler.steps=16 --set sampler.temperature=0\n  \
        cogrpo sample --config experiments/digits.toml --prompt 7 -n 8 --png sevens.png\n  \
        cogrpo sample --config experiments/text-ilm.toml --infill 'ROMEO:\n<gap>\nJULIET:' -n 3"
    )]
    Sample {
        #[command(flatten)]
        common: Common,
        #[arg(long)]
        checkpoint: Option<PathBuf>,
        /// A trained Co-GRPO arm (runs/<name>/arms/<arm>, or one of its
        /// checkpoints): its model with its learned schedule in mode, at the
        /// first of cogrpo.eval_steps and token temperature
        /// cogrpo.eval_temperature.
        #[arg(long, conflicts_with = "checkpoint")]
        arm: Option<PathBuf>,
        /// Text fixed at the start of the sequence (repeatable).
        #[arg(long = "prompt")]
        prompts: Vec<String>,
        /// ILM only: text with `<gap>` markers; each gap is filled with as
        /// many tokens as the model inserts, e.g. "ROMEO:\n<gap>\nJULIET:".
        #[arg(long, conflicts_with_all = ["prompts", "arm", "png"])]
        infill: Option<String>,
        /// Samples per prompt (or unconditional samples without prompts).
        #[arg(short = 'n', long, default_value_t = 1)]
        n: usize,
        /// Image tasks (digits): also write the samples as a PNG grid, one
        /// row per prompt.
        #[arg(long)]
        png: Option<PathBuf>,
    },
    /// Co-GRPO from a pre-trained checkpoint: one arm (update mode).
    #[command(
        after_help = "Examples:\n  cogrpo train --config experiments/sudoku4-cogrpo.toml --arm alternate\n  \
        cogrpo train --config experiments/sudoku4-cogrpo.toml --arm model --resume"
    )]
    Train {
        #[command(flatten)]
        common: Common,
        /// model, schedule, joint or alternate (default: the config's first arm).
        #[arg(long)]
        arm: Option<String>,
        /// The pre-trained checkpoint (default: the run's newest).
        #[arg(long)]
        checkpoint: Option<PathBuf>,
        /// Continue the arm from its newest checkpoint.
        #[arg(long)]
        resume: bool,
        #[command(flatten)]
        dist: Distributed,
    },
    /// The whole experiment: pre-train (or reuse), evaluate, and with a
    /// [cogrpo] section train and evaluate every arm, then write report.md.
    #[command(
        after_help = "Examples:\n  cogrpo run --config experiments/sudoku4.toml\n  \
        cogrpo run --config experiments/sudoku4-cogrpo.toml --seed 2\n\n\
        Two machines (docs/distributed.md), the same command on each:\n  \
        cogrpo run -c experiments/sudoku4-cogrpo.toml --nodes 2 --node-rank 0 --coordinator 10.0.0.1:29500\n  \
        cogrpo run -c experiments/sudoku4-cogrpo.toml --nodes 2 --node-rank 1 --coordinator 10.0.0.1:29500"
    )]
    Run {
        #[command(flatten)]
        common: Common,
        #[command(flatten)]
        dist: Distributed,
    },
    /// Reward models: serve them over the HTTP plugin protocol.
    Reward {
        #[command(subcommand)]
        action: RewardCommand,
    },
    /// Validate a config (and its data files) without running anything.
    #[command(
        after_help = "Example:\n  cogrpo check --config experiments/text.toml --set model.n_heads=3"
    )]
    Check {
        #[command(flatten)]
        common: Common,
    },
    /// Check that the CPU and the GPU give the same logits for a checkpoint.
    #[command(
        after_help = "Example:\n  cogrpo agree --config experiments/sudoku4.toml   # needs a --features cuda build"
    )]
    Agree {
        #[command(flatten)]
        common: Common,
        #[arg(long)]
        checkpoint: Option<PathBuf>,
        /// Test examples compared.
        #[arg(long, default_value_t = 64)]
        rows: usize,
    },
    /// Write a checkpoint's denoiser in SMDM's PyTorch layout (safetensors).
    #[command(
        after_help = "Examples:\n  cogrpo export -c experiments/sudoku4.toml --out sudoku4-smdm.safetensors\n  \
        cogrpo export -c experiments/text.toml --init --out random.safetensors   # fresh weights\n\n\
        Any command's --checkpoint also reads SMDM files (e.g. a model trained with SMDM's code)."
    )]
    Export {
        #[command(flatten)]
        common: Common,
        #[arg(long)]
        checkpoint: Option<PathBuf>,
        /// Export freshly initialized weights (seeded by run.seed) instead.
        #[arg(long, conflicts_with = "checkpoint")]
        init: bool,
        /// Output file (.safetensors).
        #[arg(long)]
        out: PathBuf,
    },
    /// Print the logits of token rows (JSON) for a checkpoint: agreement checks.
    #[command(
        after_help = "Example:\n  cogrpo logits -c experiments/text.toml --checkpoint m.safetensors --input rows.json --out logits.json\n\n\
        rows.json is a list of equal-length lists of token ids (the mask id is the vocabulary size)."
    )]
    Logits {
        #[command(flatten)]
        common: Common,
        #[arg(long)]
        checkpoint: Option<PathBuf>,
        #[arg(long)]
        input: PathBuf,
        #[arg(long)]
        out: PathBuf,
    },
    /// Print the rollouts a run dumped (dumps/<arm>.jsonl.gz): prompt,
    /// completion, rewards, advantage, and with --steps every step's writes.
    #[command(after_help = "Examples:\n  cogrpo samples runs/sudoku4-cogrpo\n  \
        cogrpo samples runs/sudoku4-cogrpo --arm alternate --iteration 100 --steps\n  \
        cogrpo samples runs/sudoku4-cogrpo --kind eval -n 4")]
    Samples {
        /// The run directory (run.out_dir).
        run: PathBuf,
        /// One arm (default: every arm with dumps).
        #[arg(long)]
        arm: Option<String>,
        /// The iteration (default: the last one dumped).
        #[arg(long)]
        iteration: Option<usize>,
        /// train or eval (default: both).
        #[arg(long, value_enum)]
        kind: Option<KindArg>,
        /// Show every step's revealed positions and tokens.
        #[arg(long)]
        steps: bool,
        /// Rollouts shown per arm.
        #[arg(short = 'n', long, default_value_t = 8)]
        limit: usize,
    },
    /// Write a run's viewer: one self-contained HTML page (evaluation,
    /// training curves, schedule per step, trajectory replay).
    #[command(
        after_help = "Examples:\n  cogrpo view runs/sudoku4-cogrpo            # writes runs/sudoku4-cogrpo/view.html\n  \
        cogrpo view runs/sudoku4-cogrpo --serve    # and serves it on 127.0.0.1:8080"
    )]
    View {
        /// The run directory (run.out_dir).
        run: PathBuf,
        /// Where to write the page (default: RUN/view.html).
        #[arg(long)]
        out: Option<PathBuf>,
        /// Also serve the page on 127.0.0.1 until interrupted.
        #[arg(long)]
        serve: bool,
        #[arg(long, default_value_t = 8080)]
        port: u16,
    },
    /// Print a shell completion script, e.g. `cogrpo completions bash >
    /// ~/.local/share/bash-completion/completions/cogrpo`.
    Completions {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Measure training, forward and sampling throughput.
    #[command(after_help = "Example:\n  cogrpo bench --config experiments/sudoku4.toml --batch 64")]
    Bench {
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
    },
}

#[derive(Args, Clone)]
struct Common {
    /// Experiment file (TOML).
    #[arg(long, short = 'c')]
    config: PathBuf,
    /// Override a config key, e.g. `--set pretrain.steps=100` (repeatable).
    #[arg(long = "set", value_name = "KEY=VALUE")]
    sets: Vec<String>,
    /// Backend: cpu (default) or cuda (needs a build with `--features cuda`).
    #[arg(long, value_enum)]
    device: Option<DeviceArg>,
    /// Matmul precision (sets run.precision): tf32 (a GPU's tensor cores,
    /// ~5e-4 per product; float32 on the CPU), f32 (float32-accurate on a
    /// GPU too, about 4x the matmul time) or bf16 (autocast's bfloat16
    /// matmuls; emulated on the CPU).
    #[arg(long, value_enum)]
    precision: Option<PrecisionArg>,
    /// Overrides run.seed.
    #[arg(long)]
    seed: Option<u64>,
    /// Run even when the memory estimate (`cogrpo check`) says the plan
    /// does not fit in this machine's free memory.
    #[arg(long)]
    force: bool,
    /// Continue a checkpoint even though the config changed a key that
    /// shapes its training (sets run.allow_config_change).
    #[arg(long)]
    allow_config_change: bool,
}

/// Data-parallel training over several devices and machines
/// (docs/distributed.md): every node runs the same command with its own
/// --node-rank; the global batch is the config's, split across the ranks.
#[derive(Args, Clone)]
#[command(next_help_heading = "Distributed")]
struct Distributed {
    /// Machines (processes) in the run.
    #[arg(long, default_value_t = 1)]
    nodes: usize,
    /// This node, 0..nodes. Node 0 coordinates and writes every file.
    #[arg(long, default_value_t = 0)]
    node_rank: usize,
    /// HOST:PORT of node 0, the same on every node. It uses PORT (control),
    /// PORT+1 (burn's collective orchestrator) and PORT+2+node-rank
    /// (tensors, see --data-port).
    #[arg(long, value_name = "HOST:PORT")]
    coordinator: Option<String>,
    /// Devices on each node, one rank each: GPUs 0..N with --device cuda;
    /// on the CPU, N ranks share the cores.
    #[arg(long, default_value_t = 1)]
    devices: usize,
    /// Port of this node's tensor service (default: PORT+2+node-rank).
    #[arg(long)]
    data_port: Option<u16>,
    /// The address other nodes reach this node at (default: the interface
    /// that routes to the coordinator).
    #[arg(long)]
    node_host: Option<String>,
    /// Seconds the nodes wait for each other at the start.
    #[arg(long, default_value_t = 120)]
    join_timeout: u64,
}

impl Distributed {
    fn launch(&self) -> cogrpo_train::distributed::Launch {
        cogrpo_train::distributed::Launch {
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

#[derive(Clone, Copy, clap::ValueEnum)]
enum KindArg {
    Train,
    Eval,
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum PrecisionArg {
    Tf32,
    F32,
    Bf16,
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum DeviceArg {
    Cpu,
    Cuda,
}

impl Common {
    /// The config with `--set`, `--seed`, `--device` and `--precision`
    /// applied, in that order; sets this process's matmul precision from it.
    fn load(&self) -> Result<cogrpo_train::config::ExperimentConfig, ConfigError> {
        let mut sets = self.sets.clone();
        if let Some(seed) = self.seed {
            sets.push(format!("run.seed={seed}"));
        }
        if self.allow_config_change {
            sets.push("run.allow_config_change=true".into());
        }
        if let Some(d) = self.device {
            let kind = match d {
                DeviceArg::Cpu => DeviceKind::Cpu,
                DeviceArg::Cuda => DeviceKind::Cuda,
            };
            sets.push(format!(
                "run.device={}",
                if kind == DeviceKind::Cpu {
                    "\"cpu\""
                } else {
                    "\"cuda\""
                }
            ));
        }
        if let Some(p) = self.precision {
            let name = match p {
                PrecisionArg::Tf32 => "tf32",
                PrecisionArg::F32 => "f32",
                PrecisionArg::Bf16 => "bf16",
            };
            sets.push(format!("run.precision=\"{name}\""));
        }
        let cfg = cogrpo_train::config::load(&self.config, &sets)?;
        mdm::set_matmul_precision(cfg.run.precision);
        Ok(cfg)
    }
}

/// A panic (a bug: every bad input is an error) prints its message and ends
/// the process at once with status 101. Unwinding out of `main` instead can
/// spin for ever at exit: a burn panic with the backend's worker threads
/// alive reproduced it (issue 15), and a CI job or a user's terminal then
/// hangs where it should fail.
fn exit_on_panic() {
    let print = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        print(info);
        if cogrpo_train::distributed::is_multi_node() {
            // burn's websocket threads panic when a peer dies: give the
            // control plane a moment to stop the run naming the lost rank.
            std::thread::sleep(std::time::Duration::from_secs(3));
        }
        std::process::exit(101);
    }));
}

fn main() -> ExitCode {
    allocator::keep_freed_memory();
    exit_on_panic();
    let cli = Cli::parse();
    console::init(if cli.quiet {
        tracing::Level::WARN
    } else if cli.verbose {
        tracing::Level::DEBUG
    } else {
        tracing::Level::INFO
    });
    match commands::run(cli.command) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            if e.downcast_ref::<ConfigError>().is_some()
                || e.downcast_ref::<cogrpo_train::BadInput>().is_some()
            {
                ExitCode::from(2)
            } else {
                ExitCode::FAILURE
            }
        }
    }
}
