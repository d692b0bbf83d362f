//! `summary.json`: what the last commands measured in a run directory,
//! each command updating its own part and keeping the rest.

use cogrpo_config::ExperimentConfig;
use cogrpo_config::tasks::denoiser_config;
use cogrpo_eval::EvalRow;
use cogrpo_pretrain::TrainSummary;
use cogrpo_runtime::files::write_atomic;
use cogrpo_runtime::run_dir::RunDir;
use envs::Task;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Summary {
    /// The command that wrote it last.
    pub command: String,
    pub task: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<ModelSummary>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub train: Option<TrainSummary>,
    #[serde(default)]
    pub eval: Vec<EvalRow>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelSummary {
    pub params: usize,
    pub vocab_size: usize,
    pub seq_len: usize,
}

impl Summary {
    /// Records that `command` wrote it last, on `task`'s model.
    pub fn set_header(&mut self, command: &str, task: &dyn Task, cfg: &ExperimentConfig) {
        let d = denoiser_config(cfg, task);
        self.command = command.into();
        self.task = task.name().into();
        self.model = Some(ModelSummary {
            params: d.num_params(),
            vocab_size: d.vocab_size,
            seq_len: d.max_len,
        });
    }
}

/// Reads `run`'s `summary.json` (or an empty one if it is missing or
/// unreadable).
pub fn read(run: &RunDir) -> Summary {
    std::fs::read(run.path().join("summary.json"))
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or_default()
}

/// Reads `summary.json`, lets `f` change it and writes it back atomically.
pub fn update(run: &RunDir, f: impl FnOnce(&mut Summary)) -> anyhow::Result<Summary> {
    let mut s = read(run);
    f(&mut s);
    let text = serde_json::to_string_pretty(&s)?;
    write_atomic(&run.path().join("summary.json"), text.as_bytes())?;
    Ok(s)
}
