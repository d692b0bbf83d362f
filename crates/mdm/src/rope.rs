//! Rotary position embeddings, rotate-half form (SMDM / lit-gpt / LLaMA).
//!
//! burn's `RotaryEncoding` rotates adjacent pairs instead, which is a
//! different function of the same weights: SMDM checkpoints need this one.
//! This file holds the tables; applying them is a kernel
//! (`kernels::rotary` in burn's generic ops, fused on the CPU).

use burn::prelude::*;
use burn::tensor::backend::AutodiffBackend;

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
    pub(crate) rotate: Tensor<B, 2>,
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
