//! `cogrpo`: pre-train masked diffusion models, sample from them, evaluate.
//!
//! Every command reads one experiment file (`--config`), takes repeated
//! `--set key=value` overrides, and writes into the run's output directory.

mod agree;
mod allocator;
mod backend;
mod commands;
mod console;

use std::process::ExitCode;

use clap::Parser;
use cogrpo_config::ConfigError;

use crate::commands::Cli;

/// A panic (a bug: every bad input is an error) prints its message and ends
/// the process at once with status 101. Unwinding out of `main` instead can
/// spin for ever at exit: a burn panic with the backend's worker threads
/// alive reproduced it (issue 15), and a CI job or a user's terminal then
/// hangs where it should fail.
fn exit_on_panic() {
    let print = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        print(info);
        if cogrpo_runtime::distributed::is_multi_node() {
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
    match cli.run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            // Bad input: a config, a checkpoint or model file, a data file,
            // a tokenizer or chat template.
            if e.downcast_ref::<ConfigError>().is_some()
                || e.downcast_ref::<cogrpo_runtime::BadInput>().is_some()
                || e.downcast_ref::<envs::TaskError>().is_some()
                || e.downcast_ref::<text::TextError>().is_some()
            {
                ExitCode::from(2)
            } else {
                ExitCode::FAILURE
            }
        }
    }
}
