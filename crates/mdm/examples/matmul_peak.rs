//! The machine's float32 matmul throughput on burn's CPU backend (Flex), the
//! peak the denoiser's achieved FLOP/s are compared with in
//! docs/performance.md. Square `n x n` products, best of 5 after a warm-up;
//! also the shapes the denoiser's linear layers have.
//!
//!   cargo run --release -p mdm --example matmul_peak

use std::time::Instant;

use burn::backend::Flex;
use burn::prelude::*;

type B = Flex;

fn gflops(m: usize, k: usize, n: usize) -> f64 {
    let dev = Default::default();
    let a = Tensor::<B, 2>::random([m, k], burn::tensor::Distribution::Default, &dev);
    let b = Tensor::<B, 2>::random([k, n], burn::tensor::Distribution::Default, &dev);
    let run = || {
        let c = a.clone().matmul(b.clone());
        let _: f32 = c.slice([0..1, 0..1]).into_scalar().elem();
    };
    run();
    let mut best = f64::INFINITY;
    for _ in 0..5 {
        let t = Instant::now();
        run();
        best = best.min(t.elapsed().as_secs_f64());
    }
    2.0 * (m * k * n) as f64 / best / 1e9
}

fn main() {
    println!("{:<28} {:>10}", "shape (m x k) @ (k x n)", "GFLOP/s");
    for n in [256, 512, 1024, 2048] {
        println!(
            "{:<28} {:>10.1}",
            format!("{n} x {n} @ {n} x {n}"),
            gflops(n, n, n)
        );
    }
    // Linear layers of the 10M benchmark model (d 288, d_ff 1152) on 16 x 256 tokens.
    for (m, k, n) in [(4096, 288, 288), (4096, 288, 1152), (4096, 1152, 288)] {
        println!(
            "{:<28} {:>10.1}",
            format!("{m} x {k} @ {k} x {n}"),
            gflops(m, k, n)
        );
    }
}
