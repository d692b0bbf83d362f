//! The subcommands, each an argument struct that runs itself: they load
//! the config, pick the backend (`backend`) and call the library.

mod bench;
mod check;
mod common;
mod config;
mod evaluate;
mod inspect;
mod interchange;
mod reward;
mod samples;
mod train;
mod view;

use clap::{Parser, Subcommand};

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
  cogrpo check --config experiments/smoke/sudoku4.toml
  cogrpo inspect ~/models/LLaDA-8B-Instruct"
)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
    /// Only warnings and errors on stderr (no progress lines or bars).
    #[arg(short, long, global = true, conflicts_with = "verbose")]
    pub quiet: bool,
    /// More detail on stderr (debug messages).
    #[arg(short, long, global = true)]
    pub verbose: bool,
}

impl Cli {
    pub fn run(self) -> anyhow::Result<()> {
        self.command.run()
    }
}

#[derive(Subcommand)]
enum Command {
    Pretrain(train::PretrainArgs),
    Eval(evaluate::EvalArgs),
    Sample(evaluate::SampleArgs),
    Train(train::TrainArgs),
    Run(train::RunArgs),
    Reward(reward::RewardArgs),
    Check(check::CheckArgs),
    Inspect(inspect::InspectArgs),
    Config(config::ConfigArgs),
    Agree(interchange::AgreeArgs),
    Export(interchange::ExportArgs),
    Logits(interchange::LogitsArgs),
    Samples(samples::SamplesArgs),
    View(view::ViewArgs),
    /// Print a shell completion script, e.g. `cogrpo completions bash >
    /// ~/.local/share/bash-completion/completions/cogrpo`.
    Completions {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    Bench(bench::BenchArgs),
}

impl Command {
    fn run(self) -> anyhow::Result<()> {
        match self {
            Command::Pretrain(a) => a.run(),
            Command::Eval(a) => a.run(),
            Command::Sample(a) => a.run(),
            Command::Train(a) => a.run(),
            Command::Run(a) => a.run(),
            Command::Reward(a) => a.run(),
            Command::Check(a) => a.run(),
            Command::Inspect(a) => a.run(),
            Command::Config(a) => a.run(),
            Command::Agree(a) => a.run(),
            Command::Export(a) => a.run(),
            Command::Logits(a) => a.run(),
            Command::Samples(a) => a.run(),
            Command::View(a) => a.run(),
            Command::Completions { shell } => {
                let mut cli = <Cli as clap::CommandFactory>::command();
                clap_complete::generate(shell, &mut cli, "cogrpo", &mut std::io::stdout());
                Ok(())
            }
            Command::Bench(a) => a.run(),
        }
    }
}
