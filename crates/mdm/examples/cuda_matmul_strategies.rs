//! Which of cubek's matmul kernels is fastest on this GPU, at the shapes of
//! the benchmark models' linear layers (16 x 256 tokens) and at 4096^3 and
//! 8192^3, float32 operands (TF32 on tensor cores). burn 0.21's autotune
//! picks among some of them per shape; `matmul_peak` measures what it picks.
//! This launches each strategy directly on burn's CUDA tensors (the backend
//! without fusion), so a faster kernel than autotune's choice shows here.
//!
//!   cargo run --release -p mdm --features cuda --example cuda_matmul_strategies
//!
//! Each cell: GFLOP/s, best of 5 after a warm-up; `-` when the kernel cannot
//! run that problem (a setup error, e.g. TMA alignment).

use std::time::Instant;

use burn::prelude::*;
use burn::tensor::{DType, TensorPrimitive};
use burn_cubecl::CubeBackend;
use burn_cubecl::cubecl::cuda::{CudaDevice, CudaRuntime};
use burn_cubecl::kernel::matmul::init_matmul_output;
use burn_cubecl::tensor::CubeTensor;
use cubek::matmul::definition::{MatmulElems, MatmulGlobalElems};
use cubek::matmul::launch::{Strategy, launch_ref};
use cubek::matmul::routines::BlueprintStrategy;
use cubek::std::InputBinding;

type B = CubeBackend<CudaRuntime, f32, i32, u8>;

fn strategies() -> Vec<Strategy> {
    use BlueprintStrategy::Inferred as I;
    vec![
        Strategy::SimpleCyclicCmma(I(Default::default())),
        Strategy::SimpleCyclicMma(I(Default::default())),
        Strategy::DoubleCyclicCmma(I(Default::default())),
        Strategy::DoubleCyclicMma(I(Default::default())),
        Strategy::OrderedDoubleCmma(I(Default::default())),
        Strategy::OrderedDoubleMma(I(Default::default())),
        Strategy::SimpleTmaCmma(I(Default::default())),
        Strategy::SimpleTmaMma(I(Default::default())),
        Strategy::DoubleTmaCmma(I(Default::default())),
        Strategy::DoubleTmaMma(I(Default::default())),
        Strategy::SpecializedTmaCmma(I(Default::default())),
        Strategy::SpecializedTmaMma(I(Default::default())),
        Strategy::SimpleUnit(I(Default::default())),
        Strategy::DoubleUnit(I(Default::default())),
    ]
}

fn primitive(t: Tensor<B, 2>) -> CubeTensor<CudaRuntime> {
    t.into_primitive().tensor()
}

/// GFLOP/s of `strategy` on an `m x k @ k x n` product, or the reason it
/// cannot run.
fn gflops(
    strategy: &Strategy,
    m: usize,
    k: usize,
    n: usize,
    dev: &CudaDevice,
) -> Result<f64, String> {
    let lhs = primitive(Tensor::random(
        [m, k],
        burn::tensor::Distribution::Default,
        dev,
    ));
    let rhs = primitive(Tensor::random(
        [k, n],
        burn::tensor::Distribution::Default,
        dev,
    ));
    let run = || -> Result<(), String> {
        let out = init_matmul_output(&lhs, &rhs, DType::F32);
        let mut dtypes = MatmulElems::from_globals(&MatmulGlobalElems {
            lhs: DType::F32.into(),
            rhs: DType::F32.into(),
            out: DType::F32.into(),
        });
        launch_ref(
            strategy,
            &out.client,
            InputBinding::new(lhs.clone().binding(), DType::F32.into()),
            InputBinding::new(rhs.clone().binding(), DType::F32.into()),
            out.clone().binding(),
            &mut dtypes,
        )
        .map_err(|e| format!("{e:?}"))?;
        // Reading one element waits for the product.
        let out = Tensor::<B, 2>::from_primitive(TensorPrimitive::Float(out));
        let _: f32 = out.slice([0..1, 0..1]).into_scalar().elem();
        Ok(())
    };
    run()?;
    let mut best = f64::INFINITY;
    for _ in 0..5 {
        let t = Instant::now();
        run()?;
        best = best.min(t.elapsed().as_secs_f64());
    }
    Ok(2.0 * (m * k * n) as f64 / best / 1e9)
}

fn main() {
    let dev = CudaDevice::default();
    let mut shapes = vec![(4096, 4096, 4096), (8192, 8192, 8192)];
    for (d, ff) in [(512, 2048), (1024, 4096)] {
        shapes.extend([(4096, d, d), (4096, d, ff), (4096, ff, d)]);
    }
    print!("{:<32}", "strategy \\ m x k x n");
    for (m, k, n) in &shapes {
        print!(" {:>15}", format!("{m}x{k}x{n}"));
    }
    println!();
    for strategy in strategies() {
        print!("{:<32}", strategy.to_string());
        for &(m, k, n) in &shapes {
            // A kernel that panics (an unsupported feature) is reported, not fatal.
            let cell = std::panic::catch_unwind(|| gflops(&strategy, m, k, n, &dev));
            match cell {
                Ok(Ok(g)) => print!(" {g:>15.0}"),
                Ok(Err(_)) | Err(_) => print!(" {:>15}", "-"),
            }
            use std::io::Write;
            let _ = std::io::stdout().flush();
        }
        println!();
    }
}
