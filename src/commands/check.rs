//! `cogrpo check`: a config and its data files validated, and the plan
//! printed, without running anything.

use clap::Args;
use cogrpo_experiment::describe::plan_lines;

use super::common::Common;

/// Validate a config (and its data files) without running anything.
#[derive(Args)]
#[command(
    after_help = "Example:\n  cogrpo check --config experiments/text.toml --set model.n_heads=3"
)]
pub struct CheckArgs {
    #[command(flatten)]
    common: Common,
}

impl CheckArgs {
    pub fn run(self) -> anyhow::Result<()> {
        let (cfg, task, plan) = self.common.load_planned()?;
        println!("{}: OK", self.common.config.display());
        for line in plan_lines(&cfg, task.as_ref(), &plan)? {
            println!("{line}");
        }
        Ok(())
    }
}
