//! `cogrpo check`: a config and its data files validated, and the plan
//! printed, without running anything.

use std::path::PathBuf;

use clap::Args;
use cogrpo_experiment::describe::plan_lines;

use super::common::{Common, ModelSource};

/// Validate a config (and its data files) without running anything.
#[derive(Args)]
#[command(
    after_help = "Example:\n  cogrpo check --config experiments/text.toml --set model.n_heads=3"
)]
pub struct CheckArgs {
    #[command(flatten)]
    common: Common,
    /// A Hugging Face model directory (sets model.source): its config.json
    /// alone is enough for the parameter count and the memory plan.
    #[arg(long, value_name = "DIR")]
    model: Option<PathBuf>,
}

impl CheckArgs {
    pub fn run(self) -> anyhow::Result<()> {
        let source = ModelSource {
            checkpoint: None,
            model: self.model.clone(),
        };
        let (cfg, task, plan) = self.common.with_model(&source).load_planned()?;
        crate::backend::available(cfg.run.device)?;
        println!("{}: OK", self.common.config.display());
        for line in plan_lines(&cfg, task.as_ref(), &plan)? {
            println!("{line}");
        }
        Ok(())
    }
}
