//! The two non-default matmul products (module doc of `precision`) and the
//! autodiff node that differentiates either with itself.

use burn::backend::Autodiff;
use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::prelude::*;
use burn::tensor::ops::FloatTensor;
use burn::tensor::{FloatDType, TensorPrimitive};

/// A matmul product other than burn's own.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Product {
    /// Float32-accurate from TF32 kernels: four products of split operands.
    Split,
    /// Bfloat16 operands and result, float32 sums. `native`: burn's
    /// bfloat16 matmul (a GPU); otherwise emulated around a float32 one.
    Bf16 { native: bool },
}

impl Product {
    /// `a @ b` with this product, op by op.
    pub fn apply<B: Backend, const D: usize>(
        self,
        a: Tensor<B, D>,
        b: Tensor<B, D>,
    ) -> Tensor<B, D> {
        match self {
            Product::Split => split_matmul(a, b, Tensor::matmul),
            Product::Bf16 { native: true } => a
                .cast(FloatDType::BF16)
                .matmul(b.cast(FloatDType::BF16))
                .cast(FloatDType::F32),
            Product::Bf16 { native: false } => round_bf16(round_bf16(a).matmul(round_bf16(b))),
        }
    }
}

/// `a @ b` as the four products of the split operands, each computed by
/// `product` (burn's matmul; a test passes one that rounds its operands to
/// TF32 first). Smallest terms first.
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

/// `(bf16(x), x - bf16(x))`, both float32.
fn split<B: Backend, const D: usize>(x: Tensor<B, D>) -> (Tensor<B, D>, Tensor<B, D>) {
    let hi = round_bf16(x.clone());
    let lo = x - hi.clone();
    (hi, lo)
}

/// `x` rounded to bfloat16 (to nearest even), kept as float32.
fn round_bf16<B: Backend, const D: usize>(x: Tensor<B, D>) -> Tensor<B, D> {
    x.cast(FloatDType::BF16).cast(FloatDType::F32)
}

/// `a @ b` with `product` as one autodiff node: the forward and both
/// gradients (`dA = dY B^T`, `dB = A^T dY`) use `product` on the inner
/// backend. Operands have equal batch dimensions (`precision::matmul`
/// checks).
pub fn product_ad<B: Backend, C: CheckpointStrategy, const D: usize>(
    a: Tensor<Autodiff<B, C>, D>,
    b: Tensor<Autodiff<B, C>, D>,
    product: Product,
) -> Tensor<Autodiff<B, C>, D> {
    #[derive(Debug)]
    struct ProductBackward<const D: usize>(Product);

    impl<B: Backend, const D: usize> Backward<B, 2> for ProductBackward<D> {
        type State = (FloatTensor<B>, FloatTensor<B>);

        fn backward(self, ops: Ops<Self::State, 2>, grads: &mut Gradients, _: &mut Checkpointer) {
            let [node_a, node_b] = ops.parents;
            let dy = inner::<B, D>(grads.consume::<B>(&ops.node));
            let (a, b) = (inner::<B, D>(ops.state.0), inner::<B, D>(ops.state.1));
            let t = |x: Tensor<B, D>| x.swap_dims(D - 2, D - 1);
            if let Some(node) = node_a {
                let da = self.0.apply(dy.clone(), t(b));
                grads.register::<B>(node.id, da.into_primitive().tensor());
            }
            if let Some(node) = node_b {
                let db = self.0.apply(t(a), dy);
                grads.register::<B>(node.id, db.into_primitive().tensor());
            }
        }
    }

    let (a, b) = (a.into_primitive().tensor(), b.into_primitive().tensor());
    let (ap, bp) = (a.primitive, b.primitive);
    let y = product.apply(inner::<B, D>(ap.clone()), inner(bp.clone()));
    let y = y.into_primitive().tensor();
    let out = match ProductBackward::<D>(product)
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
