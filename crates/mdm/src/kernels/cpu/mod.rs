//! Fused CPU kernels on plain row-major `f32` slices.
//!
//! burn's CPU backend (Flex) runs every elementwise op as its own pass over
//! a fresh buffer; these do RMSNorm, SwiGLU and RoPE in one pass each and
//! attention block by block without a score tensor. Loops are written so
//! that LLVM vectorises them, and [`RowKernel`] runs them compiled for the
//! widest instruction set pulp dispatches to (AVX2 + FMA), chosen at run
//! time.
//! They know nothing of burn: `kernels::flex` adapts them to its tensors.

pub mod attention;
pub mod exp;
pub mod matmul;
pub mod norm;
pub mod one_core;
pub mod rope;
pub mod swiglu;

use rayon::prelude::*;

/// Work over a range of output rows, run by [`par_rows`].
///
/// Implementations mark `rows` `#[inline(always)]`: it is then compiled
/// inside pulp's `#[target_feature]` dispatch (AVX2 + FMA where the CPU has
/// them) and its loops vectorise for that instruction set. A closure would
/// be its own function, compiled for baseline x86-64 (SSE2, no `roundps`,
/// so even `floor` is a libm call).
pub(crate) trait RowKernel: Sync {
    /// Computes rows `first_row..first_row + out.len() / width` into `out`.
    fn rows(&self, first_row: usize, out: &mut [f32]);
}

/// One call of a kernel under pulp's run-time SIMD dispatch.
struct Dispatch<'a, K>(&'a K, usize, &'a mut [f32]);

impl<K: RowKernel> pulp::WithSimd for Dispatch<'_, K> {
    type Output = ();

    #[inline(always)]
    fn with_simd<S: pulp::Simd>(self, _: S) {
        self.0.rows(self.1, self.2)
    }
}

/// Elements per parallel task: below this, one task (rayon's hand-off costs
/// microseconds, a pass over 32k floats about as much).
const GRAIN: usize = 1 << 15;

/// Runs `kernel` over `out`'s rows of `width`, in chunks on rayon's pool
/// when there is enough work to share.
pub(crate) fn par_rows<K: RowKernel>(out: &mut [f32], width: usize, kernel: &K) {
    let width = width.max(1);
    let arch = pulp::Arch::new();
    if out.len() <= GRAIN {
        arch.dispatch(Dispatch(kernel, 0, out));
        return;
    }
    let rows = (GRAIN / width).max(1);
    out.par_chunks_mut(rows * width)
        .enumerate()
        .for_each(|(i, chunk)| arch.dispatch(Dispatch(kernel, i * rows, chunk)));
}

/// Sum of `a[i] * b[i]` in 16 independent lanes, so that it vectorises
/// (a plain `sum()` must keep the sequential order).
#[inline(always)]
pub(crate) fn dot(a: &[f32], b: &[f32]) -> f32 {
    const L: usize = 16;
    let mut acc = [0.0f32; L];
    let (ac, bc) = (a.chunks_exact(L), b.chunks_exact(L));
    let tail: f32 = ac
        .remainder()
        .iter()
        .zip(bc.remainder())
        .map(|(x, y)| x * y)
        .sum();
    for (x, y) in ac.zip(bc) {
        for i in 0..L {
            acc[i] += x[i] * y[i];
        }
    }
    acc.iter().sum::<f32>() + tail
}

/// Sum of `x` in 16 independent lanes, so that it vectorises (as [`dot`]).
#[inline(always)]
pub(crate) fn sum(x: &[f32]) -> f32 {
    const L: usize = 16;
    let mut acc = [0.0f32; L];
    let chunks = x.chunks_exact(L);
    let tail: f32 = chunks.remainder().iter().sum();
    for c in chunks {
        for i in 0..L {
            acc[i] += c[i];
        }
    }
    acc.iter().sum::<f32>() + tail
}

/// A raw pointer that tasks writing disjoint ranges may share.
#[derive(Clone, Copy)]
pub(crate) struct SendPtr(pub *mut f32);
unsafe impl Send for SendPtr {}
unsafe impl Sync for SendPtr {}

impl SendPtr {
    #[inline(always)]
    pub(crate) fn get(self) -> *mut f32 {
        self.0
    }
}

#[cfg(test)]
pub(crate) mod testing {
    use rand::rngs::StdRng;
    use rand::{Rng, SeedableRng};

    pub fn random(n: usize, seed: u64) -> Vec<f32> {
        let mut rng = StdRng::seed_from_u64(seed);
        (0..n).map(|_| rng.random_range(-2.0f32..2.0)).collect()
    }

    /// max |a - b| / max |b|: the relative error the project's agreement
    /// checks use.
    pub fn rel_err(a: &[f32], b: &[f32]) -> f64 {
        assert_eq!(a.len(), b.len());
        let diff = a
            .iter()
            .zip(b)
            .map(|(x, y)| (*x as f64 - *y as f64).abs())
            .fold(0.0, f64::max);
        let scale = b.iter().map(|y| (*y as f64).abs()).fold(1e-30, f64::max);
        diff / scale
    }
}

#[cfg(test)]
mod tests {
    use super::testing::random;
    use super::*;

    #[test]
    fn lane_sum_matches_a_float64_sum() {
        for n in [0, 1, 15, 16, 17, 100, 1027] {
            let x = random(n, n as u64);
            let want: f64 = x.iter().map(|&v| v as f64).sum();
            assert!(
                (sum(&x) as f64 - want).abs() <= 1e-5 * (1.0 + want.abs()),
                "sum of {n}"
            );
        }
    }
}
