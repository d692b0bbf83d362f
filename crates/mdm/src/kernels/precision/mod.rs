//! The precision of the denoiser's matmuls: `run.precision`.
//!
//! burn-cuda 0.21 runs every float32 matmul as TF32 on tensor cores
//! (cubek-matmul converts f32 operands to TF32 whenever it picks a
//! tensor-core kernel, and burn gives a caller no say in the kernel). TF32
//! keeps 11 significant bits of each operand, so a product is off by about
//! 2^-11 relative: CPU and GPU logits of one checkpoint then differ by ~3e-3.
//!
//! - [`MatmulPrecision::Tf32`] (default): burn's matmul as it is. On the CPU
//!   that is float32.
//! - [`MatmulPrecision::F32`]: float32-accurate products from the same TF32
//!   kernels, by splitting each operand into a high part that TF32 holds
//!   exactly and the remainder (CUTLASS's "3xTF32" idea; [`Product::Split`]):
//!
//!   ```text
//!   a = a_hi + a_lo,  a_hi = bf16(a) (8 significant bits, exact in TF32),
//!                     a_lo = a - a_hi (exact in f32, |a_lo| <= 2^-9 |a|)
//!   a b = a_lo b_lo + a_lo b_hi + a_hi b_lo + a_hi b_hi
//!   ```
//!
//!   `a_hi b_hi` is exact; the TF32 rounding of `a_lo` costs at most
//!   2^-11 |a_lo| <= 2^-20 |a|, so each product is within ~2^-19 (2e-6) of
//!   float32's, against TF32's 2^-11 (5e-4), for four matmuls instead of
//!   one. Bfloat16 rather than float16 for the high part: it has float32's
//!   exponent range, so no operand overflows or flushes. Backends without
//!   TF32 ([`Kernels::TF32_MATMUL`] false: the CPU) are float32 already and
//!   skip it.
//! - [`MatmulPrecision::Bf16`]: PyTorch autocast's matmul
//!   ([`Product::Bf16`]): operands rounded to bfloat16, products summed in
//!   float32, the result rounded to bfloat16; everything else (norms,
//!   softmax, the loss, the optimizer's master weights) stays float32. On a
//!   GPU it runs as burn's bfloat16 matmul; on the CPU it is emulated with
//!   the same roundings around a float32 matmul, so its numerics (loss
//!   curves) can be studied there.
//!
//! The setting is process-wide (set once from `run.precision`). Under
//! autodiff each product is one graph node ([`product_ad`]) whose backward
//! computes `dA = dY B^T` and `dB = A^T dY` with the same product, so the
//! gradients are float32-accurate in `f32` mode and bfloat16 matmuls in
//! `bf16` mode, as under autocast.

mod frozen;
mod product;
#[cfg(test)]
mod tests;

use std::sync::atomic::{AtomicU8, Ordering};

use burn::nn::Linear;
use burn::prelude::*;
use serde::{Deserialize, Serialize};

pub use frozen::{frozen_matmul_ad, widened};
pub(crate) use frozen::{product_or_matmul, widened_as};
pub use product::{Product, product_ad, split_matmul};

use super::Kernels;

/// How the denoiser's float32 matmuls run (module doc).
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, schemars::JsonSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum MatmulPrecision {
    /// burn's matmul: one TF32 tensor-core product on a GPU (fastest).
    #[default]
    Tf32,
    /// Float32-accurate: four TF32 products of split operands on a GPU.
    F32,
    /// Bfloat16 operands and result, float32 sums (autocast's matmul).
    Bf16,
}

static PRECISION: AtomicU8 = AtomicU8::new(0);

/// Sets the precision of every later matmul in this process.
pub fn set_matmul_precision(precision: MatmulPrecision) {
    PRECISION.store(precision as u8, Ordering::Relaxed);
}

/// The precision [`set_matmul_precision`] set (TF32 by default).
pub fn matmul_precision() -> MatmulPrecision {
    decode(PRECISION.load(Ordering::Relaxed))
}

fn decode(stored: u8) -> MatmulPrecision {
    match stored {
        0 => MatmulPrecision::Tf32,
        1 => MatmulPrecision::F32,
        _ => MatmulPrecision::Bf16,
    }
}

/// The product `B`'s matmuls use now; `None` for burn's own matmul.
pub fn product<B: Kernels>() -> Option<Product> {
    #[cfg(test)]
    if let Some(forced) = FORCED.with(std::cell::Cell::get) {
        return Some(forced);
    }
    product_for(matmul_precision(), B::TF32_MATMUL)
}

/// The product of `precision` on a backend whose float32 matmuls are TF32
/// (`tf32_matmul`) or float32.
fn product_for(precision: MatmulPrecision, tf32_matmul: bool) -> Option<Product> {
    match precision {
        MatmulPrecision::Tf32 => None,
        MatmulPrecision::F32 => tf32_matmul.then_some(Product::Split),
        MatmulPrecision::Bf16 => Some(Product::Bf16 {
            native: tf32_matmul,
        }),
    }
}

#[cfg(test)]
thread_local! {
    /// Tests run a product on the CPU regardless of the setting.
    static FORCED: std::cell::Cell<Option<Product>> = const { std::cell::Cell::new(None) };
}

/// Runs `f` with every matmul of this thread as `product` (tests: the path
/// a GPU takes, on the CPU).
#[cfg(test)]
pub(crate) fn with_product<R>(product: Product, f: impl FnOnce() -> R) -> R {
    FORCED.with(|s| s.set(Some(product)));
    let out = f();
    FORCED.with(|s| s.set(None));
    out
}

/// `a @ b` at the process's precision.
pub fn matmul<B: Kernels, const D: usize>(a: Tensor<B, D>, b: Tensor<B, D>) -> Tensor<B, D> {
    let Some(product) = product::<B>() else {
        return a.matmul(b);
    };
    // The graph node's backward assumes no broadcast batch dimension (the
    // denoiser's products have none); anything else runs op by op.
    if a.dims()[..D - 2] == b.dims()[..D - 2] {
        B::precise_matmul(a, b, product)
    } else {
        product.apply(a, b)
    }
}

/// `a @ b` for a product that only moves values (RoPE's signed
/// permutation): float32-accurate under `f32`, never rounded to bfloat16
/// (autocast rounds matmuls, not element-wise arithmetic).
pub fn permute_matmul<B: Kernels, const D: usize>(
    a: Tensor<B, D>,
    b: Tensor<B, D>,
) -> Tensor<B, D> {
    match product::<B>() {
        Some(Product::Split) => matmul(a, b),
        _ => a.matmul(b),
    }
}

/// `x @ w` (`x @ w^T` when `transpose`) at the process's precision, for
/// a weight `w`: one stored narrower than float32 (a frozen bfloat16 base)
/// is widened inside the product and kept narrow for the backward
/// ([`frozen_matmul_ad`]).
pub fn weight_matmul<B: Kernels>(
    x: Tensor<B, 2>,
    w: Tensor<B, 2>,
    transpose: bool,
) -> Tensor<B, 2> {
    if w.dtype() != burn::tensor::DType::F32 {
        return B::frozen_matmul(x, w, (product::<B>(), transpose));
    }
    let w = if transpose { w.transpose() } else { w };
    match product::<B>() {
        None => B::matmul_2d(x, w),
        Some(_) => matmul(x, w),
    }
}

/// `layer.forward(x)` at the process's precision (a weight stored narrower
/// through [`weight_matmul`]).
pub fn linear<B: Kernels>(layer: &Linear<B>, x: Tensor<B, 2>) -> Tensor<B, 2> {
    let y = weight_matmul(x, layer.weight.val(), false);
    match &layer.bias {
        Some(bias) => y + bias.val().unsqueeze::<2>(),
        None => y,
    }
}
