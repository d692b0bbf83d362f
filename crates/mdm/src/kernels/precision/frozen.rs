//! Products with a frozen weight stored narrower than float32 (the bfloat16
//! copy of a LoRA base, `cogrpo.lora.base_dtype`).
//!
//! `x @ widen(W)` is what the forward needs; an ordinary autodiff matmul
//! would keep the widened float32 copy of `W` for the backward pass
//! (`dX = dY W^T`), so every layer's weight would sit in the graph twice.
//! This node keeps the narrow `W` instead and widens it again in the
//! backward: the base costs its bfloat16 size during the update too. `W`
//! is frozen, so only `x` gets a gradient.

use burn::backend::Autodiff;
use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::prelude::*;
use burn::tensor::TensorPrimitive;
use burn::tensor::ops::FloatTensor;

use super::product::Product;

/// `t` in float32: a weight stored narrower (the bfloat16 copy of a frozen
/// LoRA base, `cogrpo.lora.base_dtype`) is widened for its product, which
/// then computes exactly what float32 weights rounded to bfloat16 would; a
/// float32 tensor passes unchanged.
pub fn widened<B: Backend, const D: usize>(t: Tensor<B, D>) -> Tensor<B, D> {
    if t.dtype() == burn::tensor::DType::F32 {
        t
    } else {
        t.cast(burn::tensor::FloatDType::F32)
    }
}

/// `a @ b` with `product`, or burn's matmul.
pub(crate) fn product_or_matmul<B: Backend>(
    a: Tensor<B, 2>,
    b: Tensor<B, 2>,
    product: Option<Product>,
) -> Tensor<B, 2> {
    match product {
        Some(p) => p.apply(a, b),
        None => a.matmul(b),
    }
}

/// `widen(w)`, or its transpose: widened before it is transposed, so that
/// the product reads the float32 weight in the order an ordinary float32
/// weight's product does (the same numbers, bit for bit).
pub(crate) fn widened_as<B: Backend>(w: Tensor<B, 2>, transpose: bool) -> Tensor<B, 2> {
    let w = widened(w);
    if transpose { w.transpose() } else { w }
}

/// `x @ widen(w)` (`x @ widen(w)^T` when `transpose`) as one autodiff node
/// that keeps the narrow `w` (module doc); `w` must not train.
pub fn frozen_matmul_ad<B: Backend, C: CheckpointStrategy>(
    x: Tensor<Autodiff<B, C>, 2>,
    w: Tensor<Autodiff<B, C>, 2>,
    (product, transpose): (Option<Product>, bool),
) -> Tensor<Autodiff<B, C>, 2> {
    #[derive(Debug)]
    struct FrozenBackward(Option<Product>, bool);

    impl<B: Backend> Backward<B, 1> for FrozenBackward {
        type State = FloatTensor<B>;

        fn backward(self, ops: Ops<Self::State, 1>, grads: &mut Gradients, _: &mut Checkpointer) {
            let [node_x] = ops.parents;
            let dy = inner::<B>(grads.consume::<B>(&ops.node));
            if let Some(node) = node_x {
                let w = widened_as(inner::<B>(ops.state), !self.1);
                let dx = product_or_matmul(dy, w, self.0);
                grads.register::<B>(node.id, dx.into_primitive().tensor());
            }
        }
    }

    debug_assert!(!w.is_require_grad(), "a frozen weight");
    let w = w.inner().into_primitive().tensor();
    let x = x.into_primitive().tensor();
    let y = product_or_matmul(
        inner::<B>(x.primitive.clone()),
        widened_as(inner::<B>(w.clone()), transpose),
        product,
    );
    let y = y.into_primitive().tensor();
    let out = match FrozenBackward(product, transpose)
        .prepare::<C>([x.node])
        .compute_bound()
        .stateful()
    {
        OpsKind::Tracked(prep) => prep.finish(w, y),
        OpsKind::UnTracked(prep) => prep.finish(y),
    };
    Tensor::from_primitive(TensorPrimitive::Float(out))
}

fn inner<B: Backend>(t: FloatTensor<B>) -> Tensor<B, 2> {
    Tensor::from_primitive(TensorPrimitive::Float(t))
}
