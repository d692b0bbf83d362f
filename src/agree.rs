//! `cogrpo agree`: the same checkpoint on the CPU and on the GPU must give
//! the same logits. The GPU's float32 kernels (fused attention, other
//! reduction orders) differ from the CPU's by rounding only; a relative
//! error above the bound means a kernel or a weight transfer is wrong.
//!
//! The bound depends on `run.precision` (`mdm::kernels::precision`): TF32
//! matmuls keep 11 significant bits of each operand, float32-accurate
//! split products about 20.

use std::path::{Path, PathBuf};

use burn::tensor::backend::AutodiffBackend;
use cogrpo_config::{ExperimentConfig, tasks};
use cogrpo_runtime::checkpoint;
use envs::Task;
use mdm::{AutodiffKernels, Denoiser, Kernels};

/// Largest `max |cpu - gpu| / max |cpu|` accepted with float32-accurate
/// matmuls (`--precision f32`).
pub const F32_BOUND: f64 = 1e-4;

/// The same with TF32 matmuls (`--precision tf32`, the default): 2^-11 per
/// product, grown through the layers. On an H200 cogrpo measured 3.4e-3 and
/// PyTorch's TF32 mode 1.2e-3 on the same weights (docs/gpu.md).
pub const TF32_BOUND: f64 = 1e-2;

/// The same with bfloat16 matmuls (`--precision bf16`) on both sides (the
/// CPU emulates them): not yet measured on a GPU. PyTorch's bf16 autocast is
/// 3.5e-2 from float32 on an H200 (docs/gpu.md); two bf16 runs should be
/// closer to each other than that.
pub const BF16_BOUND: f64 = 5e-2;

fn bound() -> f64 {
    match mdm::kernels::precision::matmul_precision() {
        mdm::MatmulPrecision::F32 => F32_BOUND,
        mdm::MatmulPrecision::Tf32 => TF32_BOUND,
        mdm::MatmulPrecision::Bf16 => BF16_BOUND,
    }
}

/// Test rows as a sampler sees them, with their clean tokens.
// Without CUDA only the logits are compared (and the command stops early).
#[cfg_attr(not(feature = "cuda"), allow(dead_code))]
struct Input {
    /// Prompt, then the answer fully masked (even rows) or with its first
    /// half revealed (odd rows).
    tokens: Vec<u32>,
    /// The clean rows.
    targets: Vec<u32>,
    /// 1 at masked positions (the cross-entropy's terms), else 0.
    masked: Vec<f32>,
    batch: usize,
    len: usize,
}

fn inputs(task: &dyn Task, rows: usize, mask_id: u32) -> Input {
    let examples = &task.test_examples()[..rows.min(task.test_examples().len())];
    let len = task.layout().seq_len();
    let mut tokens = Vec::with_capacity(examples.len() * len);
    let mut targets = Vec::with_capacity(examples.len() * len);
    for (r, ex) in examples.iter().enumerate() {
        targets.extend(ex.prompt.iter().chain(&ex.answer));
        tokens.extend(&ex.prompt);
        let keep = if r % 2 == 1 { ex.answer.len() / 2 } else { 0 };
        tokens.extend(
            ex.answer
                .iter()
                .enumerate()
                .map(|(i, &t)| if i < keep { t } else { mask_id }),
        );
    }
    let masked = tokens
        .iter()
        .map(|&t| if t == mask_id { 1.0 } else { 0.0 })
        .collect();
    Input {
        tokens,
        targets,
        masked,
        batch: examples.len(),
        len,
    }
}

/// The checkpoint's model on `device`, and its logits of `input`.
fn forward<B: Kernels>(
    cfg: &ExperimentConfig,
    task: &dyn Task,
    source: &Path,
    device: &B::Device,
    input: &Input,
) -> anyhow::Result<(Denoiser<B>, burn::tensor::Tensor<B, 3>)> {
    let d = tasks::denoiser_config(cfg, task);
    let model: Denoiser<B> = checkpoint::load_model::<B>(source, &d, device)?;
    let tokens = Denoiser::input(&input.tokens, input.batch, input.len, device);
    let logits = model.forward(tokens);
    Ok((model, logits))
}

fn logits<B: Kernels>(
    cfg: &ExperimentConfig,
    task: &dyn Task,
    source: &Path,
    device: &B::Device,
    input: &Input,
) -> anyhow::Result<Vec<f32>> {
    host(forward::<B>(cfg, task, source, device, input)?.1)
}

fn host<B: burn::prelude::Backend, const D: usize>(
    t: burn::tensor::Tensor<B, D>,
) -> anyhow::Result<Vec<f32>> {
    t.into_data()
        .convert::<f32>()
        .to_vec::<f32>()
        .map_err(|e| anyhow::anyhow!("cannot read a tensor back: {e:?}"))
}

/// Every parameter's gradient of the masked positions' summed
/// cross-entropy, flattened in visiting order: the training path's numerics.
#[cfg_attr(not(any(feature = "cuda", test)), allow(dead_code))]
fn gradients<B: AutodiffKernels>(
    cfg: &ExperimentConfig,
    task: &dyn Task,
    source: &Path,
    device: &B::Device,
    input: &Input,
) -> anyhow::Result<Vec<f32>> {
    use burn::module::{Module, ModuleVisitor, Param};
    use burn::tensor::{Int, Tensor, TensorData};

    struct Collect<'a, B: AutodiffBackend> {
        grads: &'a B::Gradients,
        out: Vec<f32>,
    }
    impl<B: AutodiffBackend> ModuleVisitor<B> for Collect<'_, B> {
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<B, D>>) {
            if let Some(g) = param.val().grad(self.grads) {
                self.out
                    .extend(g.into_data().convert::<f32>().iter::<f32>());
            }
        }
    }

    let (model, logits) = forward::<B>(cfg, task, source, device, input)?;
    let shape = [input.batch, input.len];
    let ids: Vec<i32> = input.targets.iter().map(|&t| t as i32).collect();
    let targets = Tensor::<B, 2, Int>::from_data(TensorData::new(ids, shape), device);
    let masked = Tensor::<B, 2>::from_data(TensorData::new(input.masked.clone(), shape), device);
    let grads = mdm::loss::weighted_cross_entropy(logits, targets, masked)
        .sum()
        .backward();
    let mut collect = Collect::<B> {
        grads: &grads,
        out: Vec::new(),
    };
    model.visit(&mut collect);
    Ok(collect.out)
}

#[cfg(feature = "cuda")]
fn gpu_logits(
    cfg: &ExperimentConfig,
    task: &dyn Task,
    source: &Path,
    input: &Input,
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
    type CpuAd = burn::backend::Autodiff<burn::backend::Flex>;
    type GpuAd = burn::backend::Autodiff<burn::backend::Cuda>;
    let cpu_grads = gradients::<CpuAd>(cfg, task, source, &flex, input)?;
    let gpu_grads = gradients::<GpuAd>(cfg, task, source, &device, input)?;
    println!(
        "agree: gradients of the masked cross-entropy ({} values), CPU vs GPU: relative error {:.3e} (printed, not checked)",
        cpu_grads.len(),
        Deviation::of(&cpu_grads, &gpu_grads).relative()
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
fn gpu_logits(_: &ExperimentConfig, _: &dyn Task, _: &Path, _: &Input) -> anyhow::Result<Vec<f32>> {
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
        input.batch,
        input.len,
        cpu.len() / (input.batch * input.len).max(1),
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

#[cfg(test)]
mod tests {
    use super::*;

    /// The gradient diagnostic on the CPU: one value per parameter, not all
    /// zero, and the same twice (what `agree` compares with the GPU's).
    #[test]
    fn gradients_cover_every_parameter_and_are_deterministic() {
        let cfg = cogrpo_config::load(
            Path::new(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/experiments/smoke/sudoku4.toml"
            )),
            &[format!(
                "task.data_dir=\"{}/data\"",
                env!("CARGO_MANIFEST_DIR")
            )],
        )
        .unwrap();
        let task = tasks::build(&cfg).unwrap();
        let d = tasks::denoiser_config(&cfg, task.as_ref());
        let tmp = tempfile::tempdir().unwrap();
        let source = tmp.path().join("init.safetensors");
        let dev = burn::backend::flex::FlexDevice;
        let model = d.init::<burn::backend::Flex>(3, &dev);
        mdm::smdm::export(&model, &source).unwrap();
        let input = inputs(task.as_ref(), 8, task.vocab().mask_id());
        type Ad = burn::backend::Autodiff<burn::backend::Flex>;
        let a = gradients::<Ad>(&cfg, task.as_ref(), &source, &dev, &input).unwrap();
        let b = gradients::<Ad>(&cfg, task.as_ref(), &source, &dev, &input).unwrap();
        assert_eq!(a.len(), burn::module::Module::num_params(&model));
        assert!(a.iter().any(|&g| g != 0.0));
        assert_eq!(a, b);
    }
}
