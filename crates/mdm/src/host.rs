//! Tensors on the host as row-major float32, for weight interchange with
//! PyTorch's files (SMDM's layout, Hugging Face directories): read from
//! any float dtype, transposed between PyTorch's `[out, in]` and burn's
//! `[in, out]`, made into parameters.

use burn::module::{Param, ParamId};
use burn::prelude::*;
use safetensors::tensor::{Dtype, TensorView};

/// A row-major host tensor.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Host {
    pub shape: Vec<usize>,
    pub values: Vec<f32>,
}

pub(crate) fn to_host<B: Backend, const D: usize>(t: Tensor<B, D>) -> Host {
    let shape = t.dims().to_vec();
    let values = t
        .into_data()
        .convert::<f32>()
        .to_vec()
        .expect("float weights");
    Host { shape, values }
}

/// `[rows, cols]` -> `[cols, rows]`.
pub(crate) fn transpose(m: &Host) -> Host {
    let (r, c) = (m.shape[0], m.shape[1]);
    let mut out = vec![0.0; r * c];
    for i in 0..r {
        for j in 0..c {
            out[j * r + i] = m.values[i * c + j];
        }
    }
    Host {
        shape: vec![c, r],
        values: out,
    }
}

/// A trainable parameter with id `id` holding `h` (whose rank is `D`).
pub(crate) fn param<B: Backend, const D: usize>(
    id: ParamId,
    h: Host,
    device: &B::Device,
) -> Param<Tensor<B, D>> {
    let shape: [usize; D] = h.shape.try_into().expect("rank checked against the model");
    let t = Tensor::<B, D>::from_data(TensorData::new(h.values, shape), device);
    Param::initialized(id, t.require_grad())
}

/// The tensor's values as float32, for the float dtypes (float32, float16,
/// bfloat16); `None` for any other.
pub(crate) fn floats(t: &TensorView) -> Option<Vec<f32>> {
    let b = t.data();
    match t.dtype() {
        Dtype::F32 => Some(
            b.chunks_exact(4)
                .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                .collect(),
        ),
        Dtype::F16 => Some(
            b.chunks_exact(2)
                .map(|c| half::f16::from_le_bytes([c[0], c[1]]).to_f32())
                .collect(),
        ),
        Dtype::BF16 => Some(
            b.chunks_exact(2)
                .map(|c| half::bf16::from_le_bytes([c[0], c[1]]).to_f32())
                .collect(),
        ),
        _ => None,
    }
}
