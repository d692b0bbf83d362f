//! The fused CPU kernels under autodiff: one graph node per kernel, whose
//! backward runs the matching backward kernel of [`cpu`](super::cpu)
//! (burn's pattern for custom operations: `Backward` + `prepare`).
//! Inputs the backward needs are kept as the node's state; attention keeps
//! its output and log-sum-exp and recomputes the scores block by block.

use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::backend::flex::FlexTensor;
use burn::backend::{Autodiff, Flex};
use burn::prelude::*;
use burn::tensor::TensorPrimitive;
use burn::tensor::ops::FloatTensor;

use super::cpu::{attention as attn, matmul as mm, norm, swiglu as glu};
use super::flex::{self, RopeTables, f32s, shape, tensor, view};
use super::{Heads, RopeAt, Visibility};

type Ad<C> = Autodiff<Flex, C>;

fn out<C: CheckpointStrategy, const D: usize>(t: FloatTensor<Ad<C>>) -> Tensor<Ad<C>, D> {
    Tensor::from_primitive(TensorPrimitive::Float(t))
}

/// `a @ b` of two matrices; the backward's `dA = dC @ b^T` and
/// `dB = a^T @ dC` read the saved operands in place (strided views), and
/// one whose input does not train (a frozen LoRA base) is not computed.
pub(super) fn matmul<C: CheckpointStrategy>(
    a: Tensor<Ad<C>, 2>,
    b: Tensor<Ad<C>, 2>,
) -> Tensor<Ad<C>, 2> {
    #[derive(Debug)]
    struct MatmulBackward;

    impl Backward<Flex, 2> for MatmulBackward {
        type State = (FlexTensor, FlexTensor);

        fn backward(self, ops: Ops<Self::State, 2>, grads: &mut Gradients, _: &mut Checkpointer) {
            let [node_a, node_b] = ops.parents;
            let dc = grads.consume::<Flex>(&ops.node).to_contiguous();
            let (a, b) = ops.state;
            let (mut ha, mut hb, mut hc) = (None, None, None);
            let (va, vb, vc) = (view(&a, &mut ha), view(&b, &mut hb), view(&dc, &mut hc));
            if let Some(node) = node_a {
                grads.register::<Flex>(node.id, tensor(mm::matmul(vc, vb.t()), shape(&a)));
            }
            if let Some(node) = node_b {
                grads.register::<Flex>(node.id, tensor(mm::matmul(va.t(), vc), shape(&b)));
            }
        }
    }

    let (a, b) = (a.into_primitive().tensor(), b.into_primitive().tensor());
    let c = flex::matmul(&a.primitive, &b.primitive);
    out(
        match MatmulBackward
            .prepare::<C>([a.node, b.node])
            .compute_bound()
            .stateful()
        {
            OpsKind::Tracked(prep) => prep.finish((a.primitive, b.primitive), c),
            OpsKind::UnTracked(prep) => prep.finish(c),
        },
    )
}

pub(super) fn rms_norm<C: CheckpointStrategy>(
    x: Tensor<Ad<C>, 2>,
    gamma: Tensor<Ad<C>, 1>,
    eps: f64,
) -> Tensor<Ad<C>, 2> {
    #[derive(Debug)]
    struct RmsNormBackward;

    impl Backward<Flex, 2> for RmsNormBackward {
        type State = (FlexTensor, FlexTensor, f64);

        fn backward(self, ops: Ops<Self::State, 2>, grads: &mut Gradients, _: &mut Checkpointer) {
            let [node_x, node_gamma] = ops.parents;
            let dy = grads.consume::<Flex>(&ops.node).to_contiguous();
            let (x, gamma, eps) = ops.state;
            let (mut dx, mut dgamma) = (
                vec![0.0; x.layout().num_elements()],
                vec![0.0; gamma.layout().num_elements()],
            );
            norm::backward(
                f32s(&x),
                f32s(&gamma),
                eps as f32,
                f32s(&dy),
                &mut dx,
                &mut dgamma,
            );
            if let Some(node) = node_x {
                grads.register::<Flex>(node.id, tensor(dx, shape(&x)));
            }
            if let Some(node) = node_gamma {
                grads.register::<Flex>(node.id, tensor(dgamma, shape(&gamma)));
            }
        }
    }

    let (x, gamma) = (x.into_primitive().tensor(), gamma.into_primitive().tensor());
    let (xp, gp) = (x.primitive.to_contiguous(), gamma.primitive.to_contiguous());
    let y = flex::rms_norm(&xp, &gp, eps);
    out(
        match RmsNormBackward
            .prepare::<C>([x.node, gamma.node])
            .compute_bound()
            .stateful()
        {
            OpsKind::Tracked(prep) => prep.finish((xp, gp, eps), y),
            OpsKind::UnTracked(prep) => prep.finish(y),
        },
    )
}

pub(super) fn swiglu<C: CheckpointStrategy>(
    a: Tensor<Ad<C>, 2>,
    b: Tensor<Ad<C>, 2>,
) -> Tensor<Ad<C>, 2> {
    #[derive(Debug)]
    struct SwiGluBackward;

    impl Backward<Flex, 2> for SwiGluBackward {
        type State = (FlexTensor, FlexTensor);

        fn backward(self, ops: Ops<Self::State, 2>, grads: &mut Gradients, _: &mut Checkpointer) {
            let [node_a, node_b] = ops.parents;
            let dh = grads.consume::<Flex>(&ops.node).to_contiguous();
            let (a, b) = ops.state;
            let n = a.layout().num_elements();
            let (mut da, mut db) = (vec![0.0; n], vec![0.0; n]);
            glu::backward(f32s(&a), f32s(&b), f32s(&dh), &mut da, &mut db);
            if let Some(node) = node_a {
                grads.register::<Flex>(node.id, tensor(da, shape(&a)));
            }
            if let Some(node) = node_b {
                grads.register::<Flex>(node.id, tensor(db, shape(&b)));
            }
        }
    }

    let (a, b) = (a.into_primitive().tensor(), b.into_primitive().tensor());
    let (ap, bp) = (a.primitive.to_contiguous(), b.primitive.to_contiguous());
    let h = flex::swiglu(&ap, &bp);
    out(
        match SwiGluBackward
            .prepare::<C>([a.node, b.node])
            .compute_bound()
            .stateful()
        {
            OpsKind::Tracked(prep) => prep.finish((ap, bp), h),
            OpsKind::UnTracked(prep) => prep.finish(h),
        },
    )
}

pub(super) fn rope<C: CheckpointStrategy>(
    x: Tensor<Ad<C>, 2>,
    tables: RopeTables,
    at: RopeAt,
) -> Tensor<Ad<C>, 2> {
    /// The rotation is linear: its backward is the opposite rotation.
    #[derive(Debug)]
    struct RopeBackward;

    impl Backward<Flex, 1> for RopeBackward {
        type State = (RopeTables, RopeAt);

        fn backward(self, ops: Ops<Self::State, 1>, grads: &mut Gradients, _: &mut Checkpointer) {
            let [node_x] = ops.parents;
            let dy = grads.consume::<Flex>(&ops.node);
            let (tables, at) = ops.state;
            if let Some(node) = node_x {
                grads.register::<Flex>(node.id, tables.apply(dy, at, true));
            }
        }
    }

    let x = x.into_primitive().tensor();
    let y = tables.apply(x.primitive, at, false);
    out(
        match RopeBackward
            .prepare::<C>([x.node])
            .compute_bound()
            .stateful()
        {
            OpsKind::Tracked(prep) => prep.finish((tables, at), y),
            OpsKind::UnTracked(prep) => prep.finish(y),
        },
    )
}

/// What attention's backward needs: inputs, output, log-sum-exp.
#[derive(Debug, Clone)]
struct AttentionState {
    q: FlexTensor,
    k: FlexTensor,
    v: FlexTensor,
    o: FlexTensor,
    lse: Vec<f32>,
    heads: Heads,
    visibility: Visibility,
}

pub(super) fn attention<C: CheckpointStrategy>(
    q: Tensor<Ad<C>, 2>,
    k: Tensor<Ad<C>, 2>,
    v: Tensor<Ad<C>, 2>,
    heads: Heads,
    visibility: &Visibility,
) -> Tensor<Ad<C>, 2> {
    #[derive(Debug)]
    struct AttentionBackward;

    impl Backward<Flex, 3> for AttentionBackward {
        type State = AttentionState;

        fn backward(self, ops: Ops<Self::State, 3>, grads: &mut Gradients, _: &mut Checkpointer) {
            let [node_q, node_k, node_v] = ops.parents;
            let d_o = grads.consume::<Flex>(&ops.node).to_contiguous();
            let s = ops.state;
            let dims = flex::dims(&s.q, &s.k, s.heads);
            let (nq, nk) = (s.q.layout().num_elements(), s.k.layout().num_elements());
            let (mut dq, mut dk, mut dv) = (vec![0.0; nq], vec![0.0; nk], vec![0.0; nk]);
            let saved = attn::Saved {
                q: f32s(&s.q),
                k: f32s(&s.k),
                v: f32s(&s.v),
                o: f32s(&s.o),
                lse: &s.lse,
            };
            let written = attn::Grads {
                dq: &mut dq,
                dk: &mut dk,
                dv: &mut dv,
            };
            attn::backward(saved, f32s(&d_o), dims, flex::keys(&s.visibility), written);
            for (node, grad, like) in [(node_q, dq, &s.q), (node_k, dk, &s.k), (node_v, dv, &s.v)] {
                if let Some(node) = node {
                    grads.register::<Flex>(node.id, tensor(grad, shape(like)));
                }
            }
        }
    }

    let (q, k, v) = (
        q.into_primitive().tensor(),
        k.into_primitive().tensor(),
        v.into_primitive().tensor(),
    );
    let (qp, kp, vp) = (
        q.primitive.to_contiguous(),
        k.primitive.to_contiguous(),
        v.primitive.to_contiguous(),
    );
    let (o, lse) = flex::attention_lse(&qp, &kp, &vp, heads, visibility);
    out(
        match AttentionBackward
            .prepare::<C>([q.node, k.node, v.node])
            .compute_bound()
            .stateful()
        {
            OpsKind::Tracked(prep) => {
                let state = AttentionState {
                    q: qp,
                    k: kp,
                    v: vp,
                    o: o.clone(),
                    lse,
                    heads,
                    visibility: visibility.clone(),
                };
                prep.finish(state, o)
            }
            OpsKind::UnTracked(prep) => prep.finish(o),
        },
    )
}
