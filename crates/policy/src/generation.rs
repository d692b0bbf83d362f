//! What every generation shares, whatever generates: how a schedule policy
//! acts, the cost record a generation returns, and the errors it can raise.

/// How the schedule policy acts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Act {
    /// Draw from the policy (training rollouts).
    Sample,
    /// The most likely action: the Gaussian's mean, the top-scored positions
    /// (evaluation).
    Mode,
}

/// An evaluation's token temperature, replacing the schedule's.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TemperatureOverride {
    /// The temperature (0: greedy).
    pub value: f64,
    /// Whether it replaces a learned temperature too. By default (`false`)
    /// a learned temperature is part of the schedule being evaluated;
    /// `true` is the ablation that decodes every arm alike.
    pub over_learned: bool,
}

impl TemperatureOverride {
    /// `value` in place of the reference's temperature, never a learned one.
    pub fn reference(value: f64) -> Self {
        Self {
            value,
            over_learned: false,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SamplerError {
    #[error("invalid sampler: {0}")]
    Config(envs::Problem),
    #[error("canvas rows have {canvas} positions but the model holds at most {model}")]
    TooLong { canvas: usize, model: usize },
    #[error("canvas uses mask id {canvas} but the model's mask id is {model}")]
    MaskId { canvas: u32, model: u32 },
}

/// Cost of a generation.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct GenerationStats {
    /// Denoiser evaluations per row (a guided step counts two).
    pub nfe: Vec<u32>,
    /// Batched forward passes run.
    pub forwards: usize,
    /// Wall seconds spent in the denoiser: the forward passes and reading
    /// their logits back (summed over threads). The rest of a generation's
    /// time is the sampler's own work: schedules, draws, canvas updates.
    pub network_s: f64,
}

impl GenerationStats {
    /// Adds the stats of rows generated after these (another batch, another
    /// thread's share).
    pub fn append(&mut self, later: GenerationStats) {
        self.nfe.extend(later.nfe);
        self.forwards += later.forwards;
        self.network_s += later.network_s;
    }

    pub fn mean_nfe(&self) -> f64 {
        if self.nfe.is_empty() {
            return 0.0;
        }
        self.nfe.iter().map(|&n| n as f64).sum::<f64>() / self.nfe.len() as f64
    }
}
