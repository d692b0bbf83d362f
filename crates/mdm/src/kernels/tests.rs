//! The fused CPU path (Flex, `Autodiff<Flex>`) against the generic one
//! (burn's ops, differentiated by burn) on random inputs with odd sizes:
//! outputs and gradients within 1e-4 relative (max |diff| / max |ref|).

use burn::backend::{Autodiff, Flex};
use burn::prelude::*;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use super::precision::{Product, with_product};
use super::{Heads, Kernels, RopeAt, Visibility, generic};
use crate::rope::Rope;

type Ad = Autodiff<Flex>;

/// Uniform in [-2, 2) from a local generator (the backend's is global,
/// and tests run in parallel).
fn random<B: Backend, const D: usize>(shape: [usize; D], seed: u64) -> Tensor<B, D> {
    let mut rng = StdRng::seed_from_u64(seed);
    let n = shape.iter().product();
    let data: Vec<f32> = (0..n).map(|_| rng.random_range(-2.0..2.0)).collect();
    Tensor::from_data(TensorData::new(data, shape), &Default::default())
}

fn host<B: Backend, const D: usize>(t: Tensor<B, D>) -> Vec<f32> {
    t.into_data().to_vec().unwrap()
}

fn assert_close(got: &[f32], want: &[f32], what: &str) {
    assert_eq!(got.len(), want.len(), "{what}: sizes");
    let diff = got
        .iter()
        .zip(want)
        .map(|(a, b)| (a - b).abs())
        .fold(0.0f32, f32::max);
    let scale = want.iter().map(|v| v.abs()).fold(1e-30f32, f32::max);
    assert!(
        diff / scale < 1e-4,
        "{what}: relative error {:e}",
        diff / scale
    );
}

/// Runs `op` on fresh leaves made from `inputs`, backpropagates
/// `sum(out * w)`, returns the output and the inputs' gradients.
fn value_and_grads<const N: usize>(
    inputs: [Tensor<Ad, 2>; N],
    w_seed: u64,
    op: impl Fn([Tensor<Ad, 2>; N]) -> Tensor<Ad, 2>,
) -> (Vec<f32>, Vec<Vec<f32>>) {
    let leaves = inputs.map(|t| t.require_grad());
    let out = op(leaves.clone());
    let w: Tensor<Ad, 2> = random(out.dims(), w_seed);
    let grads = (out.clone() * w).sum().backward();
    let g = leaves
        .iter()
        .map(|l| host(l.grad(&grads).expect("a gradient")))
        .collect();
    (host(out), g)
}

fn check<const N: usize>(
    what: &str,
    shapes: [[usize; 2]; N],
    fused: impl Fn([Tensor<Ad, 2>; N]) -> Tensor<Ad, 2>,
    reference: impl Fn([Tensor<Ad, 2>; N]) -> Tensor<Ad, 2>,
) {
    let mut seed = 0;
    let inputs = shapes.map(|s| {
        seed += 1;
        random::<Ad, 2>(s, seed)
    });
    let (y, g) = value_and_grads(inputs.clone(), 99, fused);
    let (y_ref, g_ref) = value_and_grads(inputs.clone(), 99, reference);
    assert_close(&y, &y_ref, &format!("{what}: output"));
    for (i, (a, b)) in g.iter().zip(&g_ref).enumerate() {
        assert_close(a, b, &format!("{what}: gradient of input {i}"));
    }
}

#[test]
fn rms_norm_matches_the_generic_path() {
    for (n, d) in [(7, 37), (130, 288)] {
        check(
            "rms_norm",
            [[n, d], [1, d]],
            |[x, g]| Ad::rms_norm(x, g.reshape([d]), 1e-5),
            |[x, g]| generic::rms_norm(x, g.reshape([d]), 1e-5),
        );
        let (x, g) = (random::<Flex, 2>([n, d], 5), random::<Flex, 1>([d], 6));
        assert_close(
            &host(Flex::rms_norm(x.clone(), g.clone(), 1e-5)),
            &host(generic::rms_norm(x, g, 1e-5)),
            "rms_norm inference",
        );
    }
}

#[test]
fn matmul_matches_burns() {
    // Below and above the parallel threshold; a transposed right operand
    // (a tied head's `x @ w^T`) is read in place.
    for (m, k, n) in [(5, 7, 3), (130, 200, 300)] {
        check(
            "matmul",
            [[m, k], [k, n]],
            |[a, b]| Ad::matmul_2d(a, b),
            |[a, b]| a.matmul(b),
        );
        check(
            "matmul by a transpose",
            [[m, k], [n, k]],
            |[a, b]| Ad::matmul_2d(a, b.transpose()),
            |[a, b]| a.matmul(b.transpose()),
        );
        let (a, b) = (random::<Flex, 2>([m, k], 3), random::<Flex, 2>([k, n], 4));
        assert_close(
            &host(Flex::matmul_2d(a.clone(), b.clone())),
            &host(a.matmul(b)),
            "matmul inference",
        );
    }
}

/// A frozen operand (a LoRA base weight) gets no gradient and stops
/// nothing: the other operand's gradient is burn's.
#[test]
fn matmul_with_a_frozen_operand() {
    let (x, w) = (
        random::<Ad, 2>([9, 6], 1).require_grad(),
        random::<Ad, 2>([6, 4], 2),
    );
    let grads = Ad::matmul_2d(x.clone(), w.clone()).sum().backward();
    assert!(w.grad(&grads).is_none());
    let want = x.clone().matmul(w).sum().backward();
    assert_close(
        &host(x.grad(&grads).expect("a gradient")),
        &host(x.grad(&want).expect("a gradient")),
        "gradient beside a frozen operand",
    );
}

#[test]
fn swiglu_matches_the_generic_path() {
    // 300 x 131 is past one parallel chunk and not a multiple of the lanes.
    for shape in [[3, 5], [300, 131]] {
        check(
            "swiglu",
            [shape, shape],
            |[a, b]| Ad::swiglu(a, b),
            |[a, b]| generic::swiglu(a, b),
        );
    }
}

#[test]
fn rope_matches_the_generic_path() {
    let (batch, len, heads, hd, max_len) = (3, 7, 2, 6, 16);
    let at = RopeAt {
        batch,
        start: 4,
        len,
        scale: 0.37,
    };
    let rope_ad = Rope::<Ad>::new(max_len, hd, heads, 10_000.0, &Default::default());
    check(
        "rope",
        [[batch * len, heads * hd]],
        |[x]| Ad::rope(x, &rope_ad, at),
        |[x]| rope_ad.apply(x, at),
    );
    // Grouped-query keys: one head's width against tables for two.
    check(
        "rope on fewer heads",
        [[batch * len, hd]],
        |[x]| Ad::rope(x, &rope_ad, at),
        |[x]| rope_ad.apply(x, at),
    );
    let rope = Rope::<Flex>::new(max_len, hd, heads, 10_000.0, &Default::default());
    let x = random::<Flex, 2>([batch * len, heads * hd], 8);
    assert_close(
        &host(Flex::rope(x.clone(), &rope, at)),
        &host(rope.apply(x, at)),
        "rope inference",
    );
}

#[test]
fn attention_matches_the_generic_path() {
    let cases = [
        // (batch, q_len, k_len, heads, kv heads, head_dim, visibility)
        (2, 70, 70, 3, 3, 5, Visibility::All),
        (2, 9, 9, 2, 2, 8, Visibility::Causal),
        (2, 3, 11, 2, 2, 8, Visibility::Causal), // cached decoding
        (3, 6, 6, 2, 2, 4, Visibility::KeysUpTo(vec![6, 2, 1])),
        // Grouped-query attention (groups of 3, of 2).
        (2, 70, 70, 6, 2, 4, Visibility::All),
        (2, 3, 11, 4, 2, 8, Visibility::Causal),
    ];
    for (batch, q_len, k_len, n_heads, n_kv_heads, hd, vis) in cases {
        let (d, kv) = (n_heads * hd, n_kv_heads * hd);
        let heads = Heads {
            batch,
            n_heads,
            n_kv_heads,
        };
        let what = format!("attention {vis:?} q {q_len} k {k_len} kv heads {n_kv_heads}");
        check(
            &what,
            [[batch * q_len, d], [batch * k_len, kv], [batch * k_len, kv]],
            |[q, k, v]| Ad::attend(q, k, v, heads, &vis),
            |[q, k, v]| generic::attention(q, k, v, heads, &vis),
        );
        // Inference: Flex's fused kernel against burn's attention op.
        let (q, k, v) = (
            random::<Flex, 2>([batch * q_len, d], 11),
            random::<Flex, 2>([batch * k_len, kv], 12),
            random::<Flex, 2>([batch * k_len, kv], 13),
        );
        assert_close(
            &host(Flex::attend(q.clone(), k.clone(), v.clone(), heads, &vis)),
            &host(generic::attention(q, k, v, heads, &vis)),
            &format!("{what} inference"),
        );
    }
}

/// The split matmuls of `--precision f32` (the GPU's path) on the CPU, where
/// matmuls are exact float32: each operation that uses them gives the plain
/// path's outputs and gradients, so the split is wired in everywhere and
/// differentiates correctly (bf16 casts included).
#[test]
fn the_split_matmul_path_matches_the_plain_one() {
    let (batch, len, n_heads, hd) = (2, 9, 2, 8);
    let d = n_heads * hd;
    let heads = Heads::multi(batch, n_heads);
    for vis in [Visibility::All, Visibility::Causal] {
        check(
            &format!("split attention {vis:?}"),
            [[batch * len, d], [batch * len, d], [batch * len, d]],
            |[q, k, v]| with_product(Product::Split, || generic::attention(q, k, v, heads, &vis)),
            |[q, k, v]| generic::attention(q, k, v, heads, &vis),
        );
        // Inference leaves the fused kernel for the explicit form.
        let qkv = [11, 12, 13].map(|s| random::<Flex, 2>([batch * len, d], s));
        let [q, k, v] = qkv.clone();
        let split = with_product(Product::Split, || generic::attention(q, k, v, heads, &vis));
        let [q, k, v] = qkv;
        assert_close(
            &host(split),
            &host(generic::attention(q, k, v, heads, &vis)),
            "split attention inference",
        );
    }
    let rope = Rope::<Ad>::new(16, hd, n_heads, 10_000.0, &Default::default());
    let at = RopeAt {
        batch,
        start: 3,
        len,
        scale: 0.5,
    };
    check(
        "split rope",
        [[batch * len, d]],
        |[x]| with_product(Product::Split, || rope.apply(x, at)),
        |[x]| rope.apply(x, at),
    );
    let layer = burn::nn::LinearConfig::new(d, 3 * d).init::<Ad>(&Default::default());
    check(
        "split linear",
        [[batch * len, d]],
        |[x]| with_product(Product::Split, || super::precision::linear(&layer, x)),
        |[x]| layer.forward(x),
    );
}

/// A small denoiser's logits (flattened) under `product`, and plain.
fn denoiser_logits(product: Product) -> (Vec<f32>, Vec<f32>) {
    let cfg = crate::DenoiserConfig::new(7, 32, 2, 4, 64, 16);
    let dev = Default::default();
    let model = cfg.init::<Flex>(0, &dev);
    let tokens = || crate::Denoiser::<Flex>::input(&[7, 1, 2, 7, 0, 7, 3, 7], 2, 4, &dev);
    let with = with_product(product, || model.forward(tokens()));
    let plain = model.forward(tokens());
    (
        host(with.flatten::<2>(0, 1)),
        host(plain.flatten::<2>(0, 1)),
    )
}

/// The whole denoiser on the split path gives the plain logits.
#[test]
fn the_denoiser_on_the_split_path_gives_the_same_logits() {
    let (split, plain) = denoiser_logits(Product::Split);
    assert_close(&split, &plain, "denoiser logits");
}

/// The denoiser under autocast's bfloat16 matmuls (emulated on the CPU):
/// logits within bfloat16's error of the float32 ones, and not equal to
/// them (the rounding is really applied).
#[test]
fn the_denoiser_with_bf16_matmuls_stays_within_bfloat16_error() {
    let (bf16, plain) = denoiser_logits(Product::Bf16 { native: false });
    let scale = plain.iter().fold(0.0f32, |m, x| m.max(x.abs()));
    let diff = bf16
        .iter()
        .zip(&plain)
        .fold(0.0f32, |m, (a, b)| m.max((a - b).abs()));
    assert!(
        diff / scale > 1e-4 && diff / scale < 5e-2,
        "relative {:e}",
        diff / scale
    );
}
