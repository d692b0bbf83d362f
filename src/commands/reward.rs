//! `cogrpo reward serve`: the experiment's in-process rewards behind the
//! HTTP plugin protocol.

use std::collections::BTreeMap;
use std::sync::Arc;

use anyhow::Context;
use cogrpo_train::{reward_models, tasks};
use rewards::Reward;

use crate::RewardCommand;

pub fn run(action: RewardCommand) -> anyhow::Result<()> {
    match action {
        RewardCommand::Serve {
            common,
            names,
            host,
            port,
        } => {
            let cfg = common.load()?;
            let task = tasks::build(&cfg)?;
            let names = if names.is_empty() {
                reward_models::builtin_names(&cfg, task.name())
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
                let reward = registry.builtin(task.name(), name).with_context(|| {
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
