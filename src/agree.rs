//! `cogrpo agree`: the same checkpoint on the CPU and on the GPU must give
//! the same logits. The GPU's float32 kernels (fused attention, other
//! reduction orders) differ from the CPU's by rounding only; a relative
//! error above the bound means a kernel or a weight transfer is wrong.
//!
//! The bound depends on `run.precision` (`mdm::kernels::precision`): TF32
//! matmuls keep 11 significant bits of each operand, float32-accurate
//! split products about 20.

use std::path::{Path, PathBuf};

use cogrpo_train::config::ExperimentConfig;
use cogrpo_train::{checkpoint, tasks};
use envs::Task;
use mdm::Denoiser;
use mdm::Kernels;

/// Largest `max |cpu - gpu| / max |cpu|` accepted with float32-accurate
/// matmuls (`--precision f32`).
pub const F32_BOUND: f64 = 1e-4;

/// The same with TF32 matmuls (`--precision tf32`, the default): 2^-11 per
/// product, grown through the layers; 3.1e-3 was measured on an H200
/// (docs/performance.md), PyTorch's own TF32 mode deviates likewise.
pub const TF32_BOUND: f64 = 1e-2;

fn bound() -> f64 {
    match mdm::kernels::precision::matmul_precision() {
        mdm::MatmulPrecision::F32 => F32_BOUND,
        mdm::MatmulPrecision::Tf32 => TF32_BOUND,
    }
}

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

fn logits<B: Kernels>(
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
    let device = burn::backend::cuda::CudaDevice::default();
    // Diagnostics: a plain float32 matmul, and the training path's
    // attention (autodiff backend) next to the fused inference kernel.
    let (a, b) = (random_matrix(256, 1), random_matrix(256, 2));
    let exact = host_matmul(&a, &b, 256);
    let t = |x: &[f32]| {
        burn::tensor::Tensor::<burn::backend::Cuda, 2>::from_data(
            burn::tensor::TensorData::new(x.to_vec(), [256, 256]),
            &device,
        )
    };
    let gpu: Vec<f32> = mdm::kernels::precision::matmul(t(&a), t(&b))
        .into_data()
        .to_vec()
        .map_err(|e| anyhow::anyhow!("{e:?}"))?;
    println!(
        "agree: 256x256x256 float32 matmul on the GPU ({:?}): relative error {:.3e} (TF32 gives ~1e-3)",
        mdm::kernels::precision::matmul_precision(),
        Deviation::of(&exact, &gpu).relative()
    );
    let flex = burn::backend::flex::FlexDevice;
    let cpu_train =
        logits::<burn::backend::Autodiff<burn::backend::Flex>>(cfg, task, source, &flex, input)?;
    let gpu_train =
        logits::<burn::backend::Autodiff<burn::backend::Cuda>>(cfg, task, source, &device, input)?;
    println!(
        "agree: training-path logits (manual attention), CPU vs GPU: relative error {:.3e}",
        Deviation::of(&cpu_train, &gpu_train).relative()
    );
    logits::<burn::backend::Cuda>(cfg, task, source, &device, input)
}

#[cfg(feature = "cuda")]
fn random_matrix(n: usize, seed: u64) -> Vec<f32> {
    use rand::Rng;
    let mut rng = envs::seeding::stream(&[seed]);
    (0..n * n).map(|_| rng.random_range(-1.0f32..1.0)).collect()
}

#[cfg(feature = "cuda")]
fn host_matmul(a: &[f32], b: &[f32], n: usize) -> Vec<f32> {
    let mut out = vec![0.0f32; n * n];
    for i in 0..n {
        for j in 0..n {
            let dot: f64 = (0..n)
                .map(|k| f64::from(a[i * n + k]) * f64::from(b[k * n + j]))
                .sum();
            out[i * n + j] = dot as f32;
        }
    }
    out
}

/// How far `b` is from the reference `a`.
struct Deviation {
    /// `max |a - b|`.
    max_diff: f64,
    /// `max |a|`.
    scale: f64,
}

impl Deviation {
    fn of(a: &[f32], b: &[f32]) -> Self {
        let scale = a.iter().fold(0.0f64, |m, &x| m.max(f64::from(x).abs()));
        let max_diff = a.iter().zip(b).fold(0.0f64, |m, (&x, &y)| {
            m.max((f64::from(x) - f64::from(y)).abs())
        });
        Self { max_diff, scale }
    }

    /// `max |a - b| / max |a|`.
    fn relative(&self) -> f64 {
        self.max_diff / self.scale.max(f64::MIN_POSITIVE)
    }
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
/// when they disagree beyond the bound of the precision in use.
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
    let deviation = Deviation::of(&cpu, &gpu);
    let (max_diff, scale, rel) = (deviation.max_diff, deviation.scale, deviation.relative());
    let finite = gpu.iter().all(|x| x.is_finite());
    let bound = bound();
    println!(
        "agree: {} ({} rows x {} positions x {} logits, {:?} matmuls): max |cpu - gpu| = {max_diff:.3e}, max |cpu| = {scale:.3}, relative {rel:.3e} (bound {bound:.0e})",
        source.display(),
        input.1,
        input.2,
        cpu.len() / (input.1 * input.2).max(1),
        mdm::kernels::precision::matmul_precision(),
    );
    anyhow::ensure!(finite, "the GPU logits contain NaN or infinity");
    anyhow::ensure!(
        rel < bound,
        "CPU and GPU logits disagree: relative error {rel:.3e} >= {bound:.0e}"
    );
    println!("agree: OK");
    Ok(())
}
