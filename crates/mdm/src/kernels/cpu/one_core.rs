//! Keeping a worker's CPU work on its own core.
//!
//! cogrpo splits a batch across worker threads (training replicas,
//! generation and evaluation rows), one per core. burn's CPU matmul (gemm)
//! and the fused kernels also split each call across rayon's global pool,
//! one thread per core; under workers that already fill the cores, that
//! second level only adds synchronisation: every worker's matmul waits on
//! a pool the other worker keeps busy, and the elementwise work between
//! matmuls runs with a core idle. Measured on the 10M benchmark model's
//! forward pass at batch 16 on 2 cores: 7.7-8.4k tokens/s with the two
//! levels, 8.6-9.6k with each worker on its own core (docs/performance.md,
//! "One core per worker").

/// Runs `f` with every rayon call it makes (gemm's matmuls, the fused
/// kernels) on one core: `f` runs on the only thread of a pool of its own,
/// so `rayon::current_num_threads()` is 1 inside, and the calling thread
/// waits for it.
///
/// For a worker thread that is one of several splitting a batch. The pool
/// is built per call (a thread start, tens of microseconds, against the
/// milliseconds of a forward pass); if it cannot be built, `f` runs here as
/// it is. Results do not depend on it: gemm sums each product in the same
/// order on one thread as on many.
pub fn on_one_core<R: Send>(f: impl FnOnce() -> R + Send) -> R {
    match rayon::ThreadPoolBuilder::new()
        .num_threads(1)
        .thread_name(|_| "cogrpo-worker".into())
        .build()
    {
        Ok(pool) => pool.install(f),
        Err(_) => f(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_thread_inside_the_caller_untouched() {
        let global = rayon::current_num_threads();
        assert_eq!(on_one_core(rayon::current_num_threads), 1);
        // The calling thread is left as it was.
        assert_eq!(rayon::current_num_threads(), global);
    }

    /// A product large enough for burn's CPU matmul to split it across the
    /// global pool (above its 192^3 threshold) gives the same bits on one
    /// core, so the generation and training workers' results do not depend
    /// on the thread count.
    #[test]
    fn a_split_matmul_is_bit_identical_on_one_core() {
        use burn::backend::Flex;
        use burn::prelude::*;
        let dev = Default::default();
        let random = |shape: [usize; 2], seed: u64| {
            let mut x = seed;
            let v: Vec<f32> = (0..shape[0] * shape[1])
                .map(|_| {
                    x = x
                        .wrapping_mul(6364136223846793005)
                        .wrapping_add(1442695040888963407);
                    (x >> 40) as f32 / (1u64 << 24) as f32 - 0.5
                })
                .collect();
            Tensor::<Flex, 2>::from_data(TensorData::new(v, shape), &dev)
        };
        let (a, b) = (random([256, 576], 1), random([576, 1152], 2));
        let many: Vec<f32> = a
            .clone()
            .matmul(b.clone())
            .into_data()
            .to_vec()
            .expect("f32");
        let one: Vec<f32> = on_one_core(|| a.matmul(b).into_data().to_vec().expect("f32"));
        assert!(
            many.iter()
                .zip(&one)
                .all(|(x, y)| x.to_bits() == y.to_bits())
        );
    }

    #[test]
    fn nested_inside_a_pool_too() {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(2)
            .build()
            .expect("a pool");
        assert_eq!(pool.install(|| on_one_core(rayon::current_num_threads)), 1);
    }
}
