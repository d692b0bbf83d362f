//! `cogrpo agree`: the same checkpoint on the CPU and on the GPU must give
//! the same logits. The GPU's float32 kernels (fused attention, other
//! reduction orders) differ from the CPU's by rounding only; a relative
//! error above the bound means a kernel or a weight transfer is wrong.

use std::path::{Path, PathBuf};

use burn::prelude::*;
use cogrpo_train::config::ExperimentConfig;
use cogrpo_train::{checkpoint, tasks};
use envs::Task;
use mdm::Denoiser;

/// Largest `max |cpu - gpu| / max |cpu|` accepted, in float32.
pub const BOUND: f64 = 1e-3;

/// Inputs: test prompts with the answer fully masked (even rows) or with
/// its first half revealed (odd rows), the states a sampler sees.
fn inputs(task: &dyn Task, rows: usize, mask_id: u32) -> (Vec<u32>, usize, usize) {
    let examples = &task.test_examples()[..rows.min(task.test_examples().len())];
    let len = task.layout().seq_len();
    let mut tokens = Vec::with_capacity(examples.len() * len);
    for (r, ex) in examples.iter().enumerate() {
        tokens.extend(&ex.prompt);
        let keep = if r % 2 == 1 { ex.answer.len() / 2 } else { 0 };
        tokens.extend(
            ex.answer
                .iter()
                .enumerate()
                .map(|(i, &t)| if i < keep { t } else { mask_id }),
        );
    }
    (tokens, examples.len(), len)
}

fn logits<B: Backend>(
    cfg: &ExperimentConfig,
    task: &dyn Task,
    source: &Path,
    device: &B::Device,
    input: &(Vec<u32>, usize, usize),
) -> anyhow::Result<Vec<f32>> {
    let d = tasks::denoiser_config(cfg, task);
    let model: Denoiser<B> = checkpoint::load_model::<B>(source, &d, device)?;
    let (tokens, batch, len) = input;
    let out = model.forward(Denoiser::input(tokens, *batch, *len, device));
    out.into_data()
        .convert::<f32>()
        .to_vec::<f32>()
        .map_err(|e| anyhow::anyhow!("cannot read logits: {e:?}"))
}

#[cfg(feature = "cuda")]
fn gpu_logits(
    cfg: &ExperimentConfig,
    task: &dyn Task,
    source: &Path,
    input: &(Vec<u32>, usize, usize),
) -> anyhow::Result<Vec<f32>> {
    logits::<burn::backend::Cuda>(
        cfg,
        task,
        source,
        &burn::backend::cuda::CudaDevice::default(),
        input,
    )
}

#[cfg(not(feature = "cuda"))]
fn gpu_logits(
    _: &ExperimentConfig,
    _: &dyn Task,
    _: &Path,
    _: &(Vec<u32>, usize, usize),
) -> anyhow::Result<Vec<f32>> {
    anyhow::bail!(
        "this binary was built without CUDA support; rebuild with `cargo build --release --features cuda`"
    )
}

/// Compares CPU and GPU logits of `source` on `rows` test inputs; an error
/// when they disagree beyond [`BOUND`].
pub fn agree(cfg: &ExperimentConfig, source: PathBuf, rows: usize) -> anyhow::Result<()> {
    let task = tasks::build(cfg)?;
    let mask_id = task.vocab().mask_id();
    let input = inputs(task.as_ref(), rows, mask_id);
    let cpu = logits::<burn::backend::Flex>(
        cfg,
        task.as_ref(),
        &source,
        &burn::backend::flex::FlexDevice,
        &input,
    )?;
    let gpu = gpu_logits(cfg, task.as_ref(), &source, &input)?;
    anyhow::ensure!(
        cpu.len() == gpu.len(),
        "CPU gave {} logits, GPU {}",
        cpu.len(),
        gpu.len()
    );
    let scale = cpu.iter().fold(0.0f64, |m, &x| m.max(f64::from(x).abs()));
    let max_diff = cpu.iter().zip(&gpu).fold(0.0f64, |m, (&a, &b)| {
        m.max((f64::from(a) - f64::from(b)).abs())
    });
    let finite = gpu.iter().all(|x| x.is_finite());
    let rel = max_diff / scale.max(f64::MIN_POSITIVE);
    println!(
        "agree: {} ({} rows x {} positions x {} logits): max |cpu - gpu| = {max_diff:.3e}, max |cpu| = {scale:.3}, relative {rel:.3e} (bound {BOUND:.0e})",
        source.display(),
        input.1,
        input.2,
        cpu.len() / (input.1 * input.2).max(1)
    );
    anyhow::ensure!(finite, "the GPU logits contain NaN or infinity");
    anyhow::ensure!(
        rel < BOUND,
        "CPU and GPU logits disagree: relative error {rel:.3e} >= {BOUND:.0e}"
    );
    println!("agree: OK");
    Ok(())
}
