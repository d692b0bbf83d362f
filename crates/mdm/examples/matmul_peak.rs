//! The machine's float32 matmul throughput through burn, the peak the
//! denoiser's achieved FLOP/s are compared with in docs/performance.md.
//! Square `n x n` products and the shapes of the benchmark models' linear
//! layers (16 x 256 tokens), best of 5 after a warm-up, through the
//! product the model's float32 linear layers use (`weight_matmul`).
//! `cogrpo bench` prints the same measurement for its model's shapes inside
//! the cogrpo process (whose allocator, mimalloc, keeps freed memory; this
//! example runs on the system allocator).
//!
//!   cargo run --release -p mdm --example matmul_peak                 # CPU (Flex)
//!   cargo run --release -p mdm --features cuda --example matmul_peak -- cuda [tf32|f32|bf16]
//!
//! On CUDA, `f32` times the float32-accurate split products
//! (`mdm::kernels::precision`) instead of burn's TF32 matmul, and `bf16`
//! bfloat16 operands.

use std::time::Instant;

use burn::prelude::*;
use burn::tensor::FloatDType;
use mdm::Kernels;
use mdm::kernels::precision::{MatmulPrecision, matmul, set_matmul_precision, weight_matmul};

fn gflops<B: Kernels>(m: usize, k: usize, n: usize, dtype: FloatDType, dev: &B::Device) -> f64 {
    let random = |shape: [usize; 2]| {
        Tensor::<B, 2>::random(shape, burn::tensor::Distribution::Default, dev).cast(dtype)
    };
    let (a, b) = (random([m, k]), random([k, n]));
    // Reading one element waits for the product (GPU work is asynchronous).
    let run = || {
        let c = match dtype {
            FloatDType::F32 => weight_matmul(a.clone(), b.clone(), false),
            _ => matmul(a.clone(), b.clone()),
        };
        let _: f32 = c
            .slice([0..1, 0..1])
            .cast(FloatDType::F32)
            .into_scalar()
            .elem();
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

fn table<B: Kernels>(dev: &B::Device, dtype: FloatDType, squares: &[usize]) {
    println!("{:<30} {:>10}", "shape (m x k) @ (k x n)", "GFLOP/s");
    let row = |m: usize, k: usize, n: usize| {
        let shape = format!("{m} x {k} @ {k} x {n}");
        println!("{shape:<30} {:>10.1}", gflops::<B>(m, k, n, dtype, dev));
    };
    for &n in squares {
        row(n, n, n);
    }
    // d_model, d_ff of the 10M, 50M and 300M benchmark models.
    for (d, ff) in [(288, 1152), (512, 2048), (1024, 4096)] {
        for (k, n) in [(d, d), (d, ff), (ff, d)] {
            row(4096, k, n);
        }
    }
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some("cuda") {
        cuda(args.get(1).map_or("tf32", String::as_str));
    } else {
        println!("CPU (Flex), float32");
        let squares = [256, 512, 1024, 2048];
        table::<burn::backend::Flex>(&Default::default(), FloatDType::F32, &squares);
    }
}

#[cfg(feature = "cuda")]
fn cuda(mode: &str) {
    let (precision, dtype) = match mode {
        "tf32" => (MatmulPrecision::Tf32, FloatDType::F32),
        "f32" => (MatmulPrecision::F32, FloatDType::F32),
        "bf16" => (MatmulPrecision::Tf32, FloatDType::BF16),
        other => {
            eprintln!("unknown mode {other:?}: tf32, f32 or bf16");
            std::process::exit(2);
        }
    };
    set_matmul_precision(precision);
    println!("CUDA, {mode} matmuls");
    let dev = burn::backend::cuda::CudaDevice::default();
    table::<burn::backend::Cuda>(&dev, dtype, &[1024, 4096, 8192]);
}

#[cfg(not(feature = "cuda"))]
fn cuda(_: &str) {
    let _ = (MatmulPrecision::F32, set_matmul_precision);
    eprintln!(
        "built without CUDA: cargo run --release -p mdm --features cuda --example matmul_peak -- cuda"
    );
    std::process::exit(2);
}
