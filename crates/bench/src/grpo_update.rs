//! The Co-GRPO model update as a benchmark workload: the trainer's own
//! [`Factor::update`] of the model factor (token log-probabilities
//! recomputed with gradients on every recorded canvas, clipped surrogate,
//! backward on thread replicas, global-norm clipping, AdamW), on recorded
//! steps of a fixed shape ([`cogrpo_grpo::synthetic`]).

use cogrpo_grpo::factor::{Factor, Trainable, UpdateRun};
use cogrpo_grpo::samples::Sample;
use cogrpo_runtime::distributed::World;
use envs::StepRecord;
use mdm::{AutodiffKernels, Denoiser};

/// The model factor of an arm as the trainer builds it: learning rate
/// 1e-5, no weight decay, gradients clipped at norm 1, no KL term.
pub fn model_factor<B: AutodiffKernels>(model: Denoiser<B>) -> Factor<B, Denoiser<B>> {
    Factor::new(model, (1e-5, 0.0, 1.0), None)
}

/// The samples of `records`, sequence-level weighted (each trajectory's
/// tokens sum to 1).
pub fn samples<'a>(records: &'a [StepRecord], advantages: &[f32]) -> Vec<Sample<'a>> {
    let len = records.first().map_or(1, |r| r.canvas.len());
    records
        .iter()
        .zip(advantages)
        .map(|(record, &advantage)| Sample {
            record,
            answer_end: usize::MAX,
            advantage,
            token_weight: 1.0 / len as f32,
            step_weight: 1.0,
        })
        .collect()
}

/// One update of `factor` on `samples`, as the trainer's iteration runs it
/// on one rank (`passes`: threads and canvas tokens per pass;
/// `checkpointing`: `cogrpo.gradient_checkpointing`).
pub fn update<B: AutodiffKernels>(
    factor: &mut Factor<B, Denoiser<B>>,
    samples: &[Sample<'_>],
    (passes, checkpointing): ((usize, usize), bool),
    device: &B::Device,
) -> anyhow::Result<()> {
    let world = World::single();
    let run = UpdateRun {
        checkpointing,
        ..UpdateRun::single(&world, passes, device.clone())
    };
    factor.update(samples, &run)?;
    Ok(())
}
