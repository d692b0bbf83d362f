//! Float32 matmul precision on backends with tensor cores.
//!
//! burn-cuda 0.21 runs every float32 matmul as TF32 on tensor cores
//! (cubek-matmul converts f32 operands to TF32 whenever it picks a
//! tensor-core kernel, and burn gives a caller no say in the kernel). TF32
//! keeps 11 significant bits of each operand, so a product is off by about
//! 2^-11 relative: CPU and GPU logits of one checkpoint then differ by ~3e-3.
//!
//! [`MatmulPrecision::F32`] gets float32 accuracy out of the same TF32
//! kernels by splitting each operand into a high part that TF32 holds
//! exactly and the remainder (the idea of CUTLASS's "3xTF32" GEMM):
//!
//! ```text
//! a = a_hi + a_lo,  a_hi = bf16(a) (8 significant bits, exact in TF32),
//!                   a_lo = a - a_hi (exact in f32, |a_lo| <= 2^-9 |a|)
//! a b = a_lo b_lo + a_lo b_hi + a_hi b_lo + a_hi b_hi
//! ```
//!
//! `a_hi b_hi` is exact; the TF32 rounding of `a_lo` costs at most
//! 2^-11 |a_lo| <= 2^-20 |a|, so each product is within ~2^-19 (2e-6) of
//! float32's, against TF32's 2^-11 (5e-4), for four matmuls instead of one.
//! Bfloat16 rather than float16 for the high part: it has float32's
//! exponent range, so no operand overflows or flushes.
//!
//! The setting is process-wide (set once from `run.precision`); backends
//! without TF32 ([`Kernels::TF32_MATMUL`] false: the CPU) ignore it.
//! Under autodiff the product is one graph node ([`split_matmul_ad`]) whose
//! backward computes both gradients as split products too, so training is
//! float32-accurate as well, not only forward passes.

use std::sync::atomic::{AtomicU8, Ordering};

use burn::backend::Autodiff;
use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::nn::Linear;
use burn::prelude::*;
use burn::tensor::ops::FloatTensor;
use burn::tensor::{FloatDType, TensorPrimitive};
use serde::{Deserialize, Serialize};

use super::Kernels;

/// How float32 matmuls run on a backend with TF32 tensor cores.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MatmulPrecision {
    /// One TF32 tensor-core product (burn's default; fastest).
    #[default]
    Tf32,
    /// Float32-accurate: four TF32 products of split operands.
    F32,
}

static PRECISION: AtomicU8 = AtomicU8::new(0);

/// Sets the precision of every later matmul in this process.
pub fn set_matmul_precision(precision: MatmulPrecision) {
    PRECISION.store(precision as u8, Ordering::Relaxed);
}

/// The precision [`set_matmul_precision`] set (TF32 by default).
pub fn matmul_precision() -> MatmulPrecision {
    match PRECISION.load(Ordering::Relaxed) {
        0 => MatmulPrecision::Tf32,
        _ => MatmulPrecision::F32,
    }
}

/// Whether `B`'s matmuls take the split path now.
pub fn splits<B: Kernels>() -> bool {
    #[cfg(test)]
    if FORCE_SPLIT.with(std::cell::Cell::get) {
        return true;
    }
    B::TF32_MATMUL && matmul_precision() == MatmulPrecision::F32
}

#[cfg(test)]
thread_local! {
    /// Tests run the split path on the CPU, whose matmuls are float32.
    static FORCE_SPLIT: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Runs `f` with every matmul of this thread on the split path (tests: the
/// path a TF32 GPU takes in `f32` mode, on the CPU).
#[cfg(test)]
pub(crate) fn with_split<R>(f: impl FnOnce() -> R) -> R {
    FORCE_SPLIT.with(|s| s.set(true));
    let out = f();
    FORCE_SPLIT.with(|s| s.set(false));
    out
}

/// `a @ b` at the process's precision.
pub fn matmul<B: Kernels, const D: usize>(a: Tensor<B, D>, b: Tensor<B, D>) -> Tensor<B, D> {
    if !splits::<B>() {
        return a.matmul(b);
    }
    // The graph node's backward assumes no broadcast batch dimension (the
    // denoiser's products have none); anything else is split op by op.
    if a.dims()[..D - 2] == b.dims()[..D - 2] {
        B::split_matmul(a, b)
    } else {
        split_matmul(a, b, Tensor::matmul)
    }
}

/// `layer.forward(x)` at the process's precision.
pub fn linear<B: Kernels>(layer: &Linear<B>, x: Tensor<B, 2>) -> Tensor<B, 2> {
    if !splits::<B>() {
        return layer.forward(x);
    }
    let y = matmul(x, layer.weight.val());
    match &layer.bias {
        Some(bias) => y + bias.val().unsqueeze::<2>(),
        None => y,
    }
}

/// `a @ b` as the four products of the split operands (module doc), each
/// computed by `product` (burn's matmul; a test passes one that rounds its
/// operands to TF32 first). Smallest terms first.
pub fn split_matmul<B: Backend, const D: usize>(
    a: Tensor<B, D>,
    b: Tensor<B, D>,
    product: impl Fn(Tensor<B, D>, Tensor<B, D>) -> Tensor<B, D>,
) -> Tensor<B, D> {
    let (a_hi, a_lo) = split(a);
    let (b_hi, b_lo) = split(b);
    product(a_lo.clone(), b_lo.clone())
        + product(a_lo, b_hi.clone())
        + product(a_hi.clone(), b_lo)
        + product(a_hi, b_hi)
}

/// [`split_matmul`] as one autodiff node: the forward and both gradients
/// (`dA = dY B^T`, `dB = A^T dY`) are split products on the inner backend,
/// so gradients are float32-accurate too. Operands have equal batch
/// dimensions ([`matmul`] checks).
pub fn split_matmul_ad<B: Backend, C: CheckpointStrategy, const D: usize>(
    a: Tensor<Autodiff<B, C>, D>,
    b: Tensor<Autodiff<B, C>, D>,
) -> Tensor<Autodiff<B, C>, D> {
    #[derive(Debug)]
    struct SplitMatmulBackward<const D: usize>;

    impl<B: Backend, const D: usize> Backward<B, 2> for SplitMatmulBackward<D> {
        type State = (FloatTensor<B>, FloatTensor<B>);

        fn backward(self, ops: Ops<Self::State, 2>, grads: &mut Gradients, _: &mut Checkpointer) {
            let [node_a, node_b] = ops.parents;
            let dy = inner::<B, D>(grads.consume::<B>(&ops.node));
            let (a, b) = (inner::<B, D>(ops.state.0), inner::<B, D>(ops.state.1));
            let t = |x: Tensor<B, D>| x.swap_dims(D - 2, D - 1);
            if let Some(node) = node_a {
                let da = split_matmul(dy.clone(), t(b), Tensor::matmul);
                grads.register::<B>(node.id, da.into_primitive().tensor());
            }
            if let Some(node) = node_b {
                let db = split_matmul(t(a), dy, Tensor::matmul);
                grads.register::<B>(node.id, db.into_primitive().tensor());
            }
        }
    }

    let (a, b) = (a.into_primitive().tensor(), b.into_primitive().tensor());
    let (ap, bp) = (a.primitive, b.primitive);
    let y = split_matmul(inner::<B, D>(ap.clone()), inner(bp.clone()), Tensor::matmul);
    let y = y.into_primitive().tensor();
    let out = match SplitMatmulBackward::<D>
        .prepare::<C>([a.node, b.node])
        .compute_bound()
        .stateful()
    {
        OpsKind::Tracked(prep) => prep.finish((ap, bp), y),
        OpsKind::UnTracked(prep) => prep.finish(y),
    };
    Tensor::from_primitive(TensorPrimitive::Float(out))
}

fn inner<B: Backend, const D: usize>(t: FloatTensor<B>) -> Tensor<B, D> {
    Tensor::from_primitive(TensorPrimitive::Float(t))
}

/// `(bf16(x), x - bf16(x))`, both float32.
fn split<B: Backend, const D: usize>(x: Tensor<B, D>) -> (Tensor<B, D>, Tensor<B, D>) {
    let hi = x.clone().cast(FloatDType::BF16).cast(FloatDType::F32);
    let lo = x - hi.clone();
    (hi, lo)
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::backend::Flex;
    use burn::tensor::TensorData;
    use rand::rngs::StdRng;
    use rand::{Rng, SeedableRng};

    type B = Flex;

    fn random(rows: usize, cols: usize, seed: u64, scale: f32) -> Vec<f32> {
        let mut rng = StdRng::seed_from_u64(seed);
        (0..rows * cols)
            .map(|_| rng.random_range(-1.0f32..1.0) * scale)
            .collect()
    }

    fn tensor(x: &[f32], rows: usize, cols: usize) -> Tensor<B, 2> {
        Tensor::from_data(
            TensorData::new(x.to_vec(), [rows, cols]),
            &Default::default(),
        )
    }

    fn host(t: Tensor<B, 2>) -> Vec<f32> {
        t.into_data().to_vec().expect("float32 tensor")
    }

    /// Rounds to TF32 (10 explicit mantissa bits), to nearest, ties away:
    /// what a tensor core sees of a float32 operand.
    fn tf32(x: f32) -> f32 {
        f32::from_bits((x.to_bits() + 0x1000) & !0x1fff)
    }

    /// A matmul whose operands are rounded to TF32 and whose products and
    /// sums are exact (f64): a tensor core at its best.
    fn tf32_product(a: Tensor<B, 2>, b: Tensor<B, 2>) -> Tensor<B, 2> {
        let ([m, k], [_, n]) = (a.dims(), b.dims());
        let (a, b) = (host(a), host(b));
        let out: Vec<f32> = (0..m * n)
            .map(|ij| {
                let (i, j) = (ij / n, ij % n);
                (0..k)
                    .map(|p| f64::from(tf32(a[i * k + p])) * f64::from(tf32(b[p * n + j])))
                    .sum::<f64>() as f32
            })
            .collect();
        tensor(&out, m, n)
    }

    fn exact(a: &[f32], b: &[f32], m: usize, k: usize, n: usize) -> Vec<f64> {
        (0..m * n)
            .map(|ij| {
                let (i, j) = (ij / n, ij % n);
                (0..k)
                    .map(|p| f64::from(a[i * k + p]) * f64::from(b[p * n + j]))
                    .sum()
            })
            .collect()
    }

    /// `max |got - exact| / max |exact|`.
    fn relative(got: &[f32], exact: &[f64]) -> f64 {
        let scale = exact.iter().fold(0.0f64, |m, x| m.max(x.abs()));
        let diff = got
            .iter()
            .zip(exact)
            .fold(0.0f64, |m, (&g, e)| m.max((f64::from(g) - e).abs()));
        diff / scale
    }

    #[test]
    fn split_products_on_tf32_are_float32_accurate() {
        // Operand scales from 1e-30 to 1e30: bfloat16's range is float32's.
        let (m, k, n) = (24, 96, 16);
        for (seed, scale) in [(1, 1.0f32), (2, 1e-30), (3, 3e30), (4, 0.01)] {
            let a = random(m, k, seed, scale);
            let b = random(k, n, seed + 100, 1.0);
            let want = exact(&a, &b, m, k, n);
            let plain = relative(
                &host(tf32_product(tensor(&a, m, k), tensor(&b, k, n))),
                &want,
            );
            let split = relative(
                &host(split_matmul(
                    tensor(&a, m, k),
                    tensor(&b, k, n),
                    tf32_product,
                )),
                &want,
            );
            // TF32 alone: ~2^-11 per product. Split: the bound is 2^-19 per
            // product (module doc), summed over k = 96 terms of mixed sign
            // against the largest result; 1e-5 leaves room for that sum.
            assert!(
                plain > 1e-4,
                "seed {seed}: TF32 alone is this accurate? {plain:.2e}"
            );
            assert!(split < 1e-5, "seed {seed}: split error {split:.2e}");
            assert!(
                split < plain / 50.0,
                "seed {seed}: {split:.2e} vs {plain:.2e}"
            );
        }
    }

    #[test]
    fn split_of_float32_products_is_the_product() {
        // With exact float32 matmuls (the CPU), the four products add up to
        // the one product up to float32 rounding.
        let (m, k, n) = (8, 40, 12);
        let (a, b) = (random(m, k, 7, 2.0), random(k, n, 8, 0.5));
        let want = exact(&a, &b, m, k, n);
        let got = host(split_matmul(
            tensor(&a, m, k),
            tensor(&b, k, n),
            Tensor::matmul,
        ));
        assert!(relative(&got, &want) < 1e-6);
    }

    #[test]
    fn the_setting_round_trips_and_the_cpu_ignores_it() {
        const { assert!(!<B as Kernels>::TF32_MATMUL) };
        let (a, b) = (random(4, 4, 9, 1.0), random(4, 4, 10, 1.0));
        let before = host(matmul(tensor(&a, 4, 4), tensor(&b, 4, 4)));
        set_matmul_precision(MatmulPrecision::F32);
        assert_eq!(matmul_precision(), MatmulPrecision::F32);
        assert!(!splits::<B>());
        let after = host(matmul(tensor(&a, 4, 4), tensor(&b, 4, 4)));
        set_matmul_precision(MatmulPrecision::Tf32);
        assert_eq!(matmul_precision(), MatmulPrecision::Tf32);
        assert_eq!(before, after);
    }
}
