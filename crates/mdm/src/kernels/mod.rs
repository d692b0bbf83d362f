//! The denoiser's hot-path operations (RMSNorm, SwiGLU's gate, rotary
//! embedding, attention), chosen once by backend type.
//!
//! [`Kernels`] gives each operation a generic default built from burn's
//! tensor ops, which every backend runs and burn differentiates op by op
//! (CUDA keeps these). The CPU backend, Flex, overrides them with fused
//! kernels ([`cpu`], adapted in `flex`), and its autodiff wrapper records
//! one graph node per kernel with a hand-written backward (`flex_ad`).
//! The model calls `B::rms_norm(..)` etc.; the CLI's choice of backend type
//! is the only switch.

pub mod cpu;
mod flex;
mod flex_ad;
mod flex_backend;
pub mod generic;
pub mod precision;
mod rotary;
#[cfg(test)]
mod tests;

use burn::backend::Autodiff;
use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
use burn::prelude::*;
use burn::tensor::backend::AutodiffBackend;

use crate::rope::Rope;

/// Which keys each query attends to.
///
/// - MDM: every position sees every position ([`Visibility::All`]).
/// - ARM: a position sees itself and what precedes it ([`Visibility::Causal`]).
/// - ILM: every real position, not the padding that fills a batch of
///   sequences of different lengths ([`Visibility::KeysUpTo`]).
#[derive(Debug, Clone)]
pub enum Visibility {
    All,
    /// Query `i` of `q_len` new ones (after `k_len - q_len` cached keys) sees
    /// keys `0..=k_len - q_len + i`.
    Causal,
    /// Row `b` sees keys `0..lens[b]` (the rest is padding).
    KeysUpTo(Vec<usize>),
}

/// Where the rows a rotary embedding turns sit: `batch * len` rows at
/// positions `start..start + len` of each sequence; the result is scaled by
/// `scale` (attention's `1/sqrt(d_h)` folded into `q`).
#[derive(Debug, Clone, Copy)]
pub struct RopeAt {
    pub batch: usize,
    pub start: usize,
    pub len: usize,
    pub scale: f64,
}

/// The batch and head counts of an attention call; lengths follow from the
/// row counts of `q` (`batch * q_len`) and `k` (`batch * k_len`).
#[derive(Debug, Clone, Copy)]
pub struct Heads {
    pub batch: usize,
    pub n_heads: usize,
    /// Key/value heads: `n_heads` for multi-head attention, fewer (a
    /// divisor) for grouped-query attention.
    pub n_kv_heads: usize,
}

impl Heads {
    /// Multi-head attention: a key/value head per query head.
    pub fn multi(batch: usize, n_heads: usize) -> Self {
        Self {
            batch,
            n_heads,
            n_kv_heads: n_heads,
        }
    }
}

/// A backend that runs the denoiser. Shapes: activations are 2-D,
/// `[rows, width]`; attention's `q` and output are
/// `[batch * len, n_heads * head_dim]` with heads side by side in a row,
/// its `k` and `v` `[batch * len, n_kv_heads * head_dim]`.
pub trait Kernels: Backend {
    /// Whether this backend's tensors live in host memory, so that reading
    /// them on the host costs no transfer. The generation step then draws
    /// tokens on the host; on a device it draws there and brings back three
    /// numbers per position instead of a vocabulary of logits
    /// (`policy::device_draw`).
    const HOST_MEMORY: bool = false;

    /// Whether this backend runs float32 matmuls as TF32 on tensor cores,
    /// so that [`precision::MatmulPrecision::F32`] has to split them.
    const TF32_MATMUL: bool = false;

    /// `x / sqrt(mean(x^2) + eps) * gamma` over each row.
    fn rms_norm(x: Tensor<Self, 2>, gamma: Tensor<Self, 1>, eps: f64) -> Tensor<Self, 2> {
        generic::rms_norm(x, gamma, eps)
    }

    /// SwiGLU's gate `silu(a) * b`.
    fn swiglu(a: Tensor<Self, 2>, b: Tensor<Self, 2>) -> Tensor<Self, 2> {
        generic::swiglu(a, b)
    }

    /// Rotary embedding of a `q` or `k` projection, times `at.scale`.
    fn rope(x: Tensor<Self, 2>, rope: &Rope<Self>, at: RopeAt) -> Tensor<Self, 2> {
        rope.apply(x, at)
    }

    /// `a @ b` of two float32 matrices at full precision (the model's
    /// linear layers): burn's matmul by default; the CPU runs its own
    /// (`cpu::matmul`, no zeroed or re-aligned copy of the output).
    fn matmul_2d(a: Tensor<Self, 2>, b: Tensor<Self, 2>) -> Tensor<Self, 2> {
        a.matmul(b)
    }

    /// `a @ b` with one of [`precision`]'s products (`--precision f32` or
    /// `bf16`).
    fn precise_matmul<const D: usize>(
        a: Tensor<Self, D>,
        b: Tensor<Self, D>,
        product: precision::Product,
    ) -> Tensor<Self, D> {
        product.apply(a, b)
    }

    /// `x @ w` (`x @ w^T` when `transpose`) for a frozen weight stored
    /// narrower than float32, widened for the product (`product`: the
    /// process's, `None` for burn's).
    fn frozen_matmul(
        x: Tensor<Self, 2>,
        w: Tensor<Self, 2>,
        (product, transpose): (Option<precision::Product>, bool),
    ) -> Tensor<Self, 2> {
        precision::product_or_matmul(x, precision::widened_as(w, transpose), product)
    }

    /// `softmax(q k^T + hidden) v` per head, for a pre-scaled `q`.
    fn attend(
        q: Tensor<Self, 2>,
        k: Tensor<Self, 2>,
        v: Tensor<Self, 2>,
        heads: Heads,
        visibility: &Visibility,
    ) -> Tensor<Self, 2> {
        generic::attention(q, k, v, heads, visibility)
    }

    // The same operations on `Autodiff<Self>`: by default burn
    // differentiates the generic ops; a backend with fused kernels records
    // one node per kernel with its own backward.

    fn rms_norm_ad<C: CheckpointStrategy>(
        x: Tensor<Autodiff<Self, C>, 2>,
        gamma: Tensor<Autodiff<Self, C>, 1>,
        eps: f64,
    ) -> Tensor<Autodiff<Self, C>, 2> {
        generic::rms_norm(x, gamma, eps)
    }

    fn swiglu_ad<C: CheckpointStrategy>(
        a: Tensor<Autodiff<Self, C>, 2>,
        b: Tensor<Autodiff<Self, C>, 2>,
    ) -> Tensor<Autodiff<Self, C>, 2> {
        generic::swiglu(a, b)
    }

    fn rope_ad<C: CheckpointStrategy>(
        x: Tensor<Autodiff<Self, C>, 2>,
        rope: &Rope<Autodiff<Self, C>>,
        at: RopeAt,
    ) -> Tensor<Autodiff<Self, C>, 2> {
        rope.apply(x, at)
    }

    fn matmul_2d_ad<C: CheckpointStrategy>(
        a: Tensor<Autodiff<Self, C>, 2>,
        b: Tensor<Autodiff<Self, C>, 2>,
    ) -> Tensor<Autodiff<Self, C>, 2> {
        a.matmul(b)
    }

    fn precise_matmul_ad<C: CheckpointStrategy, const D: usize>(
        a: Tensor<Autodiff<Self, C>, D>,
        b: Tensor<Autodiff<Self, C>, D>,
        product: precision::Product,
    ) -> Tensor<Autodiff<Self, C>, D> {
        precision::product_ad(a, b, product)
    }

    fn frozen_matmul_ad<C: CheckpointStrategy>(
        x: Tensor<Autodiff<Self, C>, 2>,
        w: Tensor<Autodiff<Self, C>, 2>,
        how: (Option<precision::Product>, bool),
    ) -> Tensor<Autodiff<Self, C>, 2> {
        precision::frozen_matmul_ad(x, w, how)
    }

    fn attend_ad<C: CheckpointStrategy>(
        q: Tensor<Autodiff<Self, C>, 2>,
        k: Tensor<Autodiff<Self, C>, 2>,
        v: Tensor<Autodiff<Self, C>, 2>,
        heads: Heads,
        visibility: &Visibility,
    ) -> Tensor<Autodiff<Self, C>, 2> {
        generic::attention(q, k, v, heads, visibility)
    }
}

impl<B: Kernels, C: CheckpointStrategy> Kernels for Autodiff<B, C> {
    const HOST_MEMORY: bool = B::HOST_MEMORY;
    const TF32_MATMUL: bool = B::TF32_MATMUL;

    fn rms_norm(x: Tensor<Self, 2>, gamma: Tensor<Self, 1>, eps: f64) -> Tensor<Self, 2> {
        B::rms_norm_ad(x, gamma, eps)
    }

    fn swiglu(a: Tensor<Self, 2>, b: Tensor<Self, 2>) -> Tensor<Self, 2> {
        B::swiglu_ad(a, b)
    }

    fn rope(x: Tensor<Self, 2>, rope: &Rope<Self>, at: RopeAt) -> Tensor<Self, 2> {
        B::rope_ad(x, rope, at)
    }

    fn matmul_2d(a: Tensor<Self, 2>, b: Tensor<Self, 2>) -> Tensor<Self, 2> {
        B::matmul_2d_ad(a, b)
    }

    fn precise_matmul<const D: usize>(
        a: Tensor<Self, D>,
        b: Tensor<Self, D>,
        product: precision::Product,
    ) -> Tensor<Self, D> {
        B::precise_matmul_ad(a, b, product)
    }

    fn frozen_matmul(
        x: Tensor<Self, 2>,
        w: Tensor<Self, 2>,
        how: (Option<precision::Product>, bool),
    ) -> Tensor<Self, 2> {
        B::frozen_matmul_ad(x, w, how)
    }

    fn attend(
        q: Tensor<Self, 2>,
        k: Tensor<Self, 2>,
        v: Tensor<Self, 2>,
        heads: Heads,
        visibility: &Visibility,
    ) -> Tensor<Self, 2> {
        B::attend_ad(q, k, v, heads, visibility)
    }
}

/// The GPU keeps burn's generic ops (and its fused attention for inference).
/// Its float32 matmuls are TF32 (`precision`).
#[cfg(feature = "cuda")]
impl Kernels for burn::backend::Cuda {
    const TF32_MATMUL: bool = true;
}

/// An autodiff backend whose inner (inference) backend runs the denoiser
/// too: what training code asks for.
pub trait AutodiffKernels: AutodiffBackend<InnerBackend: Kernels> + Kernels {}

impl<B> AutodiffKernels for B
where
    B: AutodiffBackend + Kernels,
    B::InnerBackend: Kernels,
{
}
