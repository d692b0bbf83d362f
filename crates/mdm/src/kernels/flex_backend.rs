//! [`Kernels`] on burn's CPU backend (Flex): its fused forward kernels
//! (`flex`) and, under autodiff, one graph node per kernel (`flex_ad`).
//! Anything but float32 takes the generic path.

use burn::backend::Autodiff;
use burn::backend::Flex;
use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
use burn::prelude::*;
use burn::tensor::DType;

use super::flex::{RopeTables, attention_lse, matmul, raw, rms_norm, swiglu, wrap};
use super::precision::{self, Product};
use super::{Heads, Kernels, RopeAt, Visibility, flex_ad, generic};
use crate::rope::Rope;

/// The kernels are float32 only; other dtypes take the generic path.
/// Whether matmuls take the float32-accurate split now (only forced by
/// tests on the CPU): RoPE's rotation then runs as the GPU's generic form.
fn split<B: Kernels>() -> bool {
    precision::product::<B>() == Some(Product::Split)
}

fn all_f32(dtypes: &[DType]) -> bool {
    dtypes.iter().all(|&d| d == DType::F32)
}

impl Kernels for Flex {
    const HOST_MEMORY: bool = true;

    fn rms_norm(x: Tensor<Self, 2>, gamma: Tensor<Self, 1>, eps: f64) -> Tensor<Self, 2> {
        if !all_f32(&[x.dtype(), gamma.dtype()]) {
            return generic::rms_norm(x, gamma, eps);
        }
        wrap(rms_norm(&raw(x), &raw(gamma), eps))
    }

    fn swiglu(a: Tensor<Self, 2>, b: Tensor<Self, 2>) -> Tensor<Self, 2> {
        if !all_f32(&[a.dtype(), b.dtype()]) {
            return generic::swiglu(a, b);
        }
        wrap(swiglu(&raw(a), &raw(b)))
    }

    fn rope(x: Tensor<Self, 2>, rope: &Rope<Self>, at: RopeAt) -> Tensor<Self, 2> {
        if !all_f32(&[x.dtype()]) || split::<Self>() {
            return rope.apply(x, at);
        }
        wrap(RopeTables::of(rope).apply(raw(x), at, false))
    }

    fn matmul_2d(a: Tensor<Self, 2>, b: Tensor<Self, 2>) -> Tensor<Self, 2> {
        if !all_f32(&[a.dtype(), b.dtype()]) {
            return a.matmul(b);
        }
        wrap(matmul(
            &a.into_primitive().tensor(),
            &b.into_primitive().tensor(),
        ))
    }

    fn attend(
        q: Tensor<Self, 2>,
        k: Tensor<Self, 2>,
        v: Tensor<Self, 2>,
        heads: Heads,
        visibility: &Visibility,
    ) -> Tensor<Self, 2> {
        if !all_f32(&[q.dtype(), k.dtype(), v.dtype()]) || precision::product::<Self>().is_some() {
            return generic::attention(q, k, v, heads, visibility);
        }
        wrap(attention_lse(&raw(q), &raw(k), &raw(v), heads, visibility).0)
    }

    fn rms_norm_ad<C: CheckpointStrategy>(
        x: Tensor<Autodiff<Self, C>, 2>,
        gamma: Tensor<Autodiff<Self, C>, 1>,
        eps: f64,
    ) -> Tensor<Autodiff<Self, C>, 2> {
        if !all_f32(&[x.dtype(), gamma.dtype()]) {
            return generic::rms_norm(x, gamma, eps);
        }
        flex_ad::rms_norm(x, gamma, eps)
    }

    fn swiglu_ad<C: CheckpointStrategy>(
        a: Tensor<Autodiff<Self, C>, 2>,
        b: Tensor<Autodiff<Self, C>, 2>,
    ) -> Tensor<Autodiff<Self, C>, 2> {
        if !all_f32(&[a.dtype(), b.dtype()]) {
            return generic::swiglu(a, b);
        }
        flex_ad::swiglu(a, b)
    }

    fn matmul_2d_ad<C: CheckpointStrategy>(
        a: Tensor<Autodiff<Self, C>, 2>,
        b: Tensor<Autodiff<Self, C>, 2>,
    ) -> Tensor<Autodiff<Self, C>, 2> {
        if !all_f32(&[a.dtype(), b.dtype()]) {
            return a.matmul(b);
        }
        flex_ad::matmul(a, b)
    }

    fn rope_ad<C: CheckpointStrategy>(
        x: Tensor<Autodiff<Self, C>, 2>,
        rope: &Rope<Autodiff<Self, C>>,
        at: RopeAt,
    ) -> Tensor<Autodiff<Self, C>, 2> {
        if !all_f32(&[x.dtype()]) || split::<Self>() {
            return rope.apply(x, at);
        }
        flex_ad::rope(x, RopeTables::of(&rope.inner()), at)
    }

    fn attend_ad<C: CheckpointStrategy>(
        q: Tensor<Autodiff<Self, C>, 2>,
        k: Tensor<Autodiff<Self, C>, 2>,
        v: Tensor<Autodiff<Self, C>, 2>,
        heads: Heads,
        visibility: &Visibility,
    ) -> Tensor<Autodiff<Self, C>, 2> {
        if !all_f32(&[q.dtype(), k.dtype(), v.dtype()]) || precision::product::<Self>().is_some() {
            return generic::attention(q, k, v, heads, visibility);
        }
        flex_ad::attention(q, k, v, heads, visibility)
    }
}
