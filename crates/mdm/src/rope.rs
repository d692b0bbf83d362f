//! Rotary position embeddings, rotate-half form (SMDM / lit-gpt / LLaMA).
//!
//! burn's `RotaryEncoding` rotates adjacent pairs instead, which is a
//! different function of the same weights: SMDM checkpoints need this one.

use burn::prelude::*;
use burn::tensor::backend::AutodiffBackend;

use crate::kernels::precision::permute_matmul;
use crate::kernels::{Kernels, RopeAt};

/// Rotary tables for all heads at once: `cos` and `sin` of shape
/// `[max_len, n_heads * head_dim]` (each head's half-table repeated), and the
/// `[head_dim, head_dim]` signed permutation `rotate` with
/// `v @ rotate = rotate_half(v) = (-v2, v1)`.
///
/// Applying RoPE as `x * cos + (x @ rotate) * sin` on the 2-D projection
/// output keeps every tensor contiguous: the broadcasts over the batch take
/// burn's fast paths and the half-swap is a small matmul instead of
/// narrow + cat, which on the CPU backend are strided copies.
#[derive(Module, Debug)]
pub struct Rope<B: Backend> {
    pub(crate) cos: Tensor<B, 2>,
    pub(crate) sin: Tensor<B, 2>,
    rotate: Tensor<B, 2>,
}

impl<B: Backend> Rope<B> {
    pub fn new(
        max_len: usize,
        head_dim: usize,
        n_heads: usize,
        base: f64,
        device: &B::Device,
    ) -> Self {
        let half = head_dim / 2;
        let width = head_dim * n_heads;
        let mut cos = Vec::with_capacity(max_len * width);
        let mut sin = Vec::with_capacity(max_len * width);
        for pos in 0..max_len {
            // theta_i = base^(-2i / head_dim) (lit-gpt build_rope_cache), in float32
            let row: Vec<(f32, f32)> = (0..half)
                .map(|i| {
                    let theta = 1.0f32 / (base as f32).powf((2 * i) as f32 / head_dim as f32);
                    let angle = pos as f32 * theta;
                    (angle.cos(), angle.sin())
                })
                .collect();
            for _ in 0..2 * n_heads {
                cos.extend(row.iter().map(|r| r.0));
                sin.extend(row.iter().map(|r| r.1));
            }
        }
        let mut rotate = vec![0.0f32; head_dim * head_dim];
        for i in 0..half {
            rotate[(i + half) * head_dim + i] = -1.0;
            rotate[i * head_dim + i + half] = 1.0;
        }
        Self {
            cos: Tensor::from_data(TensorData::new(cos, [max_len, width]), device),
            sin: Tensor::from_data(TensorData::new(sin, [max_len, width]), device),
            rotate: Tensor::from_data(TensorData::new(rotate, [head_dim, head_dim]), device),
        }
    }

    pub fn head_dim(&self) -> usize {
        self.rotate.dims()[0]
    }
}

impl<B: Kernels> Rope<B> {
    /// Rotates the projection `x` of shape `[batch * len, n_heads * head_dim]`
    /// (positions `start..start + len` in each sequence) and multiplies it by
    /// `scale`, in burn's generic ops (fused backends: [`Kernels::rope`]).
    pub fn apply(&self, x: Tensor<B, 2>, at: RopeAt) -> Tensor<B, 2> {
        let RopeAt {
            batch,
            start,
            len,
            scale,
        } = at;
        let [n, width] = x.dims();
        let head_dim = self.head_dim();
        // Tables flattened to one row `[1, len * width]` shared by every
        // sequence: the broadcast shape burn's CPU kernels vectorise.
        let row =
            |t: &Tensor<B, 2>| (t.clone().narrow(0, start, len) * scale).reshape([1, len * width]);
        let heads = x.clone().reshape([n * width / head_dim, head_dim]);
        let rotated = permute_matmul(heads, self.rotate.clone()).reshape([batch, len * width]);
        (x.reshape([batch, len * width]) * row(&self.cos) + rotated * row(&self.sin))
            .reshape([n, width])
    }
}

impl<B: AutodiffBackend> Rope<B> {
    /// The same tables on the inner backend (they are constants).
    pub fn inner(&self) -> Rope<B::InnerBackend> {
        Rope {
            cos: self.cos.clone().inner(),
            sin: self.sin.clone().inner(),
            rotate: self.rotate.clone().inner(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::backend::Flex;

    type B = Flex;

    /// The defining property: <rope(q, m), rope(k, n)> depends on m - n only.
    #[test]
    fn scores_depend_only_on_relative_position() {
        let dev = Default::default();
        let (len, dim) = (12, 8);
        let rope = Rope::<B>::new(len, dim, 1, 10_000.0, &dev);
        let q: Vec<f32> = (0..dim).map(|i| (i as f32 * 0.7).sin() + 0.3).collect();
        let k: Vec<f32> = (0..dim).map(|i| (i as f32 * 1.3).cos() - 0.1).collect();
        let at_all = |v: &[f32]| {
            let data: Vec<f32> = (0..len).flat_map(|_| v.iter().copied()).collect();
            let x = Tensor::<B, 2>::from_data(TensorData::new(data, [len, dim]), &dev);
            rope.apply(
                x,
                RopeAt {
                    batch: 1,
                    start: 0,
                    len,
                    scale: 1.0,
                },
            )
            .reshape([1, 1, len, dim])
        };
        let scores: Vec<f32> = at_all(&q)
            .matmul(at_all(&k).swap_dims(2, 3))
            .into_data()
            .to_vec()
            .unwrap();
        let s = |m: usize, n: usize| scores[m * len + n];
        for (m, n) in [(3, 1), (7, 5), (11, 9)] {
            assert!((s(m, n) - s(2, 0)).abs() < 1e-4, "offset 2 at ({m},{n})");
        }
        assert!((s(1, 3) - s(6, 8)).abs() < 1e-4);
        assert!((s(2, 0) - s(0, 2)).abs() > 1e-3, "direction matters");
        assert!((s(1, 0) - s(5, 0)).abs() > 1e-3, "distance matters");
        // Position 0 is the identity rotation.
        let r: Vec<f32> = at_all(&q).narrow(2, 0, 1).into_data().to_vec().unwrap();
        for (a, b) in r.iter().zip(&q) {
            assert!((a - b).abs() < 1e-6);
        }
    }
}
