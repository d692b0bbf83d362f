//! `cogrpo reward serve`: the experiment's in-process rewards behind the
//! HTTP plugin protocol.

use std::collections::BTreeMap;
use std::sync::Arc;

use anyhow::Context;
use clap::{Args, Subcommand};
use cogrpo_config::tasks;
use cogrpo_vision::registry as reward_models;
use rewards::Reward;

use super::common::Common;

/// Reward models: serve them over the HTTP plugin protocol.
#[derive(Args)]
pub struct RewardArgs {
    #[command(subcommand)]
    action: RewardCommand,
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
    Serve(ServeArgs),
}

#[derive(Args)]
struct ServeArgs {
    #[command(flatten)]
    common: Common,
    /// A reward to serve (repeatable; default: the config's built-in rewards).
    #[arg(long = "name")]
    names: Vec<String>,
    #[arg(long, default_value = "127.0.0.1")]
    host: String,
    #[arg(long, default_value_t = 8000)]
    port: u16,
}

impl RewardArgs {
    pub fn run(self) -> anyhow::Result<()> {
        match self.action {
            RewardCommand::Serve(args) => args.run(),
        }
    }
}

impl ServeArgs {
    fn run(self) -> anyhow::Result<()> {
        let ServeArgs {
            common,
            names,
            host,
            port,
        } = self;
        {
            let cfg = common.load()?;
            let task = tasks::build(&cfg)?;
            let names = if names.is_empty() {
                reward_models::builtin_names(&cfg, task.verifiers())
                    .into_iter()
                    .collect()
            } else {
                names
            };
            anyhow::ensure!(
                !names.is_empty(),
                "the config names no built-in reward; pass --name NAME"
            );
            let registry = reward_models::registry_with(&cfg, &names)?;
            let mut served: BTreeMap<String, Box<dyn Reward>> = BTreeMap::new();
            for name in &names {
                let reward = registry.builtin(task.verifiers(), name).with_context(|| {
                    format!("task `{}` has no built-in reward {name:?}", task.name())
                })?;
                served.insert(name.clone(), reward);
            }
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()
                .context("starting the server's runtime")?;
            runtime.block_on(async {
                let listener = tokio::net::TcpListener::bind((host.as_str(), port))
                    .await
                    .with_context(|| format!("binding {host}:{port}"))?;
                let at = listener.local_addr()?;
                tracing::info!(
                    "serving {} on http://{at}/ ({}); Ctrl-C stops",
                    names.join(", "),
                    rewards::protocol::PROTOCOL
                );
                rewards::serve::serve(listener, Arc::new(served), 64 << 20)
                    .await
                    .context("the reward server stopped")
            })
        }
    }
}
