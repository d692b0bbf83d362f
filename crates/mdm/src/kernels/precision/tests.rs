use super::*;
use crate::kernels::Kernels;
use burn::backend::Flex;
use burn::tensor::TensorData;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

type B = Flex;

fn random(rows: usize, cols: usize, seed: u64, scale: f32) -> Vec<f32> {
    let mut rng = StdRng::seed_from_u64(seed);
    (0..rows * cols)
        .map(|_| rng.random_range(-1.0f32..1.0) * scale)
        .collect()
}

fn tensor(x: &[f32], rows: usize, cols: usize) -> Tensor<B, 2> {
    Tensor::from_data(
        TensorData::new(x.to_vec(), [rows, cols]),
        &Default::default(),
    )
}

fn host(t: Tensor<B, 2>) -> Vec<f32> {
    t.into_data().to_vec().expect("float32 tensor")
}

/// Rounds to TF32 (10 explicit mantissa bits), to nearest, ties away:
/// what a tensor core sees of a float32 operand.
fn tf32(x: f32) -> f32 {
    f32::from_bits((x.to_bits() + 0x1000) & !0x1fff)
}

/// A matmul whose operands are rounded to TF32 and whose products and
/// sums are exact (f64): a tensor core at its best.
fn tf32_product(a: Tensor<B, 2>, b: Tensor<B, 2>) -> Tensor<B, 2> {
    let ([m, k], [_, n]) = (a.dims(), b.dims());
    let (a, b) = (host(a), host(b));
    let out: Vec<f32> = (0..m * n)
        .map(|ij| {
            let (i, j) = (ij / n, ij % n);
            (0..k)
                .map(|p| f64::from(tf32(a[i * k + p])) * f64::from(tf32(b[p * n + j])))
                .sum::<f64>() as f32
        })
        .collect();
    tensor(&out, m, n)
}

fn exact(a: &[f32], b: &[f32], m: usize, k: usize, n: usize) -> Vec<f64> {
    (0..m * n)
        .map(|ij| {
            let (i, j) = (ij / n, ij % n);
            (0..k)
                .map(|p| f64::from(a[i * k + p]) * f64::from(b[p * n + j]))
                .sum()
        })
        .collect()
}

/// `max |got - exact| / max |exact|`.
fn relative(got: &[f32], exact: &[f64]) -> f64 {
    let scale = exact.iter().fold(0.0f64, |m, x| m.max(x.abs()));
    let diff = got
        .iter()
        .zip(exact)
        .fold(0.0f64, |m, (&g, e)| m.max((f64::from(g) - e).abs()));
    diff / scale
}

#[test]
fn split_products_on_tf32_are_float32_accurate() {
    // Operand scales from 1e-30 to 1e30: bfloat16's range is float32's.
    let (m, k, n) = (24, 96, 16);
    for (seed, scale) in [(1, 1.0f32), (2, 1e-30), (3, 3e30), (4, 0.01)] {
        let a = random(m, k, seed, scale);
        let b = random(k, n, seed + 100, 1.0);
        let want = exact(&a, &b, m, k, n);
        let plain = relative(
            &host(tf32_product(tensor(&a, m, k), tensor(&b, k, n))),
            &want,
        );
        let split = relative(
            &host(split_matmul(
                tensor(&a, m, k),
                tensor(&b, k, n),
                tf32_product,
            )),
            &want,
        );
        // TF32 alone: ~2^-11 per product. Split: the bound is 2^-19 per
        // product (module doc), summed over k = 96 terms of mixed sign
        // against the largest result; 1e-5 leaves room for that sum.
        assert!(
            plain > 1e-4,
            "seed {seed}: TF32 alone is this accurate? {plain:.2e}"
        );
        assert!(split < 1e-5, "seed {seed}: split error {split:.2e}");
        assert!(
            split < plain / 50.0,
            "seed {seed}: {split:.2e} vs {plain:.2e}"
        );
    }
}

#[test]
fn split_of_float32_products_is_the_product() {
    // With exact float32 matmuls (the CPU), the four products add up to
    // the one product up to float32 rounding.
    let (m, k, n) = (8, 40, 12);
    let (a, b) = (random(m, k, 7, 2.0), random(k, n, 8, 0.5));
    let want = exact(&a, &b, m, k, n);
    let got = host(split_matmul(
        tensor(&a, m, k),
        tensor(&b, k, n),
        Tensor::matmul,
    ));
    assert!(relative(&got, &want) < 1e-6);
}

#[test]
fn each_precision_maps_to_its_product() {
    use MatmulPrecision::{Bf16, F32, Tf32};
    for p in [Tf32, F32, Bf16] {
        assert_eq!(decode(p as u8), p);
    }
    // A GPU (TF32 matmuls), then the CPU (float32 matmuls).
    assert_eq!(product_for(Tf32, true), None);
    assert_eq!(product_for(F32, true), Some(Product::Split));
    assert_eq!(
        product_for(Bf16, true),
        Some(Product::Bf16 { native: true })
    );
    assert_eq!(product_for(Tf32, false), None);
    assert_eq!(product_for(F32, false), None);
    assert_eq!(
        product_for(Bf16, false),
        Some(Product::Bf16 { native: false })
    );
}

#[test]
fn f32_is_a_no_op_on_the_cpu() {
    // Only F32 is set process-wide here: it changes nothing on the CPU, so
    // the tests running beside this one are unaffected.
    const { assert!(!<B as Kernels>::TF32_MATMUL) };
    let (a, b) = (random(4, 4, 9, 1.0), random(4, 4, 10, 1.0));
    let before = host(matmul(tensor(&a, 4, 4), tensor(&b, 4, 4)));
    set_matmul_precision(MatmulPrecision::F32);
    assert_eq!(matmul_precision(), MatmulPrecision::F32);
    assert_eq!(product::<B>(), None);
    let after = host(matmul(tensor(&a, 4, 4), tensor(&b, 4, 4)));
    set_matmul_precision(MatmulPrecision::Tf32);
    assert_eq!(before, after);
}

/// `x` rounded to bfloat16 on the host (the `half` crate, nearest even).
fn bf16(x: f32) -> f32 {
    half::bf16::from_f32(x).to_f32()
}

#[test]
fn bf16_product_rounds_operands_and_result_and_sums_in_float32() {
    let (m, k, n) = (16, 64, 12);
    let (a, b) = (random(m, k, 21, 3.0), random(k, n, 22, 0.5));
    let got = host(Product::Bf16 { native: false }.apply(tensor(&a, m, k), tensor(&b, k, n)));
    // The reference: operands rounded on the host, exact sums, rounded.
    let (ar, br): (Vec<f32>, Vec<f32>) = (
        a.iter().map(|&x| bf16(x)).collect(),
        b.iter().map(|&x| bf16(x)).collect(),
    );
    let reference: Vec<f64> = exact(&ar, &br, m, k, n)
        .iter()
        .map(|&x| f64::from(bf16(x as f32)))
        .collect();
    let scale = reference.iter().fold(0.0f64, |s, x| s.max(x.abs()));
    for (i, (&g, &r)) in got.iter().zip(&reference).enumerate() {
        assert_eq!(bf16(g), g, "element {i} is not a bfloat16 value");
        // Float32 sums may round the last bit differently: one bf16 ulp.
        assert!(
            (f64::from(g) - r).abs() <= r.abs() / 128.0 + scale * 1e-6,
            "element {i}: {g} vs {r}"
        );
    }
    // Against the unrounded product: bfloat16's error, not float32's.
    let err = relative(&got, &exact(&a, &b, m, k, n));
    assert!(err > 1e-4 && err < 1e-2, "bf16 error {err:.2e}");
}

/// The product's autodiff node: its gradients are the same product of the
/// upstream gradient and the other operand (transposed), as autocast's
/// backward matmuls are.
#[test]
fn the_product_node_differentiates_with_its_own_product() {
    use burn::backend::Autodiff;
    type Ad = Autodiff<B>;
    let (m, k, n) = (5, 7, 3);
    let (a, b, w) = (
        random(m, k, 31, 1.0),
        random(k, n, 32, 1.0),
        random(m, n, 33, 1.0),
    );
    for product in [Product::Split, Product::Bf16 { native: false }] {
        let leaf = |x: &[f32], r, c| {
            Tensor::<Ad, 2>::from_data(TensorData::new(x.to_vec(), [r, c]), &Default::default())
                .require_grad()
        };
        let (la, lb) = (leaf(&a, m, k), leaf(&b, k, n));
        let y = product_ad(la.clone(), lb.clone(), product);
        let grads = (y.clone() * leaf(&w, m, n)).sum().backward();
        let (da, db) = (
            host(la.grad(&grads).unwrap()),
            host(lb.grad(&grads).unwrap()),
        );
        let t = |x: &[f32], r, c| tensor(x, r, c).transpose();
        assert_eq!(
            host(y.inner()),
            host(product.apply(tensor(&a, m, k), tensor(&b, k, n)))
        );
        assert_eq!(
            da,
            host(product.apply(tensor(&w, m, n), t(&b, k, n))),
            "{product:?}: dA"
        );
        assert_eq!(
            db,
            host(product.apply(t(&a, m, k), tensor(&w, m, n))),
            "{product:?}: dB"
        );
    }
}
