//! The fused kernels on burn's CPU backend (Flex), forward: tensors in and
//! out of [`cpu`](super::cpu)'s slice kernels. The backward passes are in
//! `flex_ad`; `flex_backend` binds both to the [`Kernels`](super::Kernels)
//! trait.

use burn::backend::Flex;
use burn::backend::flex::FlexTensor;
use burn::prelude::*;
use burn::tensor::TensorPrimitive;

use super::cpu::matmul::View;
use super::cpu::{attention as attn, matmul as mm, norm, rope as rotary, swiglu as glu};
use super::{Heads, RopeAt, Visibility};
use crate::rope::Rope;

/// A tensor's storage, contiguous (a copy only if it was not).
pub(super) fn raw<const D: usize>(t: Tensor<Flex, D>) -> FlexTensor {
    t.into_primitive().tensor().to_contiguous()
}

pub(super) fn f32s(t: &FlexTensor) -> &[f32] {
    t.as_slice::<f32>().expect("a contiguous float32 tensor")
}

/// A fresh float32 tensor of `shape` holding `data`.
pub(super) fn tensor(data: Vec<f32>, shape: Vec<usize>) -> FlexTensor {
    FlexTensor::from_data(TensorData::new(data, shape))
}

pub(super) fn wrap<const D: usize>(t: FlexTensor) -> Tensor<Flex, D> {
    Tensor::from_primitive(TensorPrimitive::Float(t))
}

pub(super) fn shape(t: &FlexTensor) -> Vec<usize> {
    t.layout().shape().to_vec()
}

/// A 2-D float32 tensor as a strided view of its storage, in place where
/// its strides are non-negative (a transposed weight is), else a
/// contiguous copy (`hold` keeps it alive).
pub(super) fn view<'a>(t: &'a FlexTensor, hold: &'a mut Option<FlexTensor>) -> View<'a> {
    let (dims, strides) = (t.layout().shape(), t.layout().strides());
    if strides.iter().any(|&s| s < 0) {
        let copy = hold.insert(t.to_contiguous());
        return View::row_major(f32s(copy), dims[0], dims[1]);
    }
    View {
        data: &t.storage::<f32>()[t.layout().start_offset()..],
        rows: dims[0],
        cols: dims[1],
        row_stride: strides[0] as usize,
        col_stride: strides[1] as usize,
    }
}

/// `a @ b` of two matrices, on gemm into an output that is never zeroed
/// (`cpu::matmul`).
pub(super) fn matmul(a: &FlexTensor, b: &FlexTensor) -> FlexTensor {
    let (mut ha, mut hb) = (None, None);
    let (va, vb) = (view(a, &mut ha), view(b, &mut hb));
    let (m, n) = (va.rows, vb.cols);
    tensor(mm::matmul(va, vb), vec![m, n])
}

pub(super) fn rms_norm(x: &FlexTensor, gamma: &FlexTensor, eps: f64) -> FlexTensor {
    let mut out = vec![0.0; x.layout().num_elements()];
    norm::forward(f32s(x), f32s(gamma), eps as f32, &mut out);
    tensor(out, shape(x))
}

pub(super) fn swiglu(a: &FlexTensor, b: &FlexTensor) -> FlexTensor {
    let mut out = vec![0.0; a.layout().num_elements()];
    glu::forward(f32s(a), f32s(b), &mut out);
    tensor(out, shape(a))
}

/// The rotary tables as slices (see `Rope`: a row per position whose first
/// `head_dim / 2` entries are that position's cos / sin).
#[derive(Debug, Clone)]
pub(super) struct RopeTables {
    pub cos: FlexTensor,
    pub sin: FlexTensor,
    pub head_dim: usize,
}

impl RopeTables {
    pub fn of(rope: &Rope<Flex>) -> Self {
        Self {
            cos: raw(rope.cos.clone()),
            sin: raw(rope.sin.clone()),
            head_dim: rope.head_dim(),
        }
    }

    /// Turns `x` (in place when it holds its buffer alone).
    pub fn apply(&self, x: FlexTensor, at: RopeAt, inverse: bool) -> FlexTensor {
        let dims = shape(&x);
        let mut x = x.to_contiguous();
        let width = dims[1];
        let table_width = self.cos.layout().shape()[1];
        let at = rotary::At {
            len: at.len,
            start: at.start,
            head_dim: self.head_dim,
            scale: at.scale as f32,
            inverse,
        };
        let (cos, sin) = (f32s(&self.cos), f32s(&self.sin));
        match x.try_storage_mut::<f32>() {
            Some(data) if data.len() == dims[0] * width => {
                rotary::apply(data, width, cos, sin, table_width, at);
                x
            }
            _ => {
                let mut data = f32s(&x).to_vec();
                rotary::apply(&mut data, width, cos, sin, table_width, at);
                tensor(data, dims)
            }
        }
    }
}

/// The key rule as the slice kernel sees it.
pub(super) fn keys(visibility: &Visibility) -> attn::Keys<'_> {
    match visibility {
        Visibility::All => attn::Keys::All,
        Visibility::Causal => attn::Keys::Causal,
        Visibility::KeysUpTo(lens) => attn::Keys::UpTo(lens),
    }
}

pub(super) fn dims(q: &FlexTensor, k: &FlexTensor, heads: Heads) -> attn::Dims {
    let (qs, ks) = (q.layout().shape(), k.layout().shape());
    attn::Dims {
        batch: heads.batch,
        q_len: qs[0] / heads.batch,
        k_len: ks[0] / heads.batch,
        n_heads: heads.n_heads,
        n_kv_heads: heads.n_kv_heads,
        head_dim: qs[1] / heads.n_heads,
    }
}

/// Output and log-sum-exp (`[batch, n_heads, q_len]`, flat).
pub(super) fn attention_lse(
    q: &FlexTensor,
    k: &FlexTensor,
    v: &FlexTensor,
    heads: Heads,
    visibility: &Visibility,
) -> (FlexTensor, Vec<f32>) {
    let dims = dims(q, k, heads);
    let mut o = vec![0.0; q.layout().num_elements()];
    let mut lse = vec![0.0; dims.batch * dims.n_heads * dims.q_len];
    attn::forward(
        f32s(q),
        f32s(k),
        f32s(v),
        dims,
        keys(visibility),
        &mut o,
        &mut lse,
    );
    (tensor(o, shape(q)), lse)
}
