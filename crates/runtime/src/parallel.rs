//! Data parallelism across CPU threads.
//!
//! A training step on one thread leaves the cores idle between burn's
//! matmuls (the elementwise work runs on one core). We split the batch into
//! shards and let each thread run
//! forward and backward on its own *replica* of the model: a copy of the same
//! parameter tensors (same ids) whose autodiff graph is separate, so the
//! threads never share a graph lock. Gradients are summed in shard order,
//! which keeps a run deterministic for a given thread count. Each thread
//! keeps its matmuls on its own core (`on_one_core`): the threads already
//! fill the cores.

use burn::module::{AutodiffModule, Module, ModuleMapper, ModuleVisitor, Param};
use burn::optim::{GradientsAccumulator, GradientsParams};
use burn::prelude::*;
use mdm::Denoiser;

use mdm::AutodiffKernels;
use mdm::on_one_core;

/// A copy of `model` sharing its weights and parameter ids but building its
/// own autodiff graph. Parameters that do not train in `model` (a LoRA
/// arm's frozen base) do not train in the replica either.
pub fn replica<B: AutodiffKernels>(model: &Denoiser<B>) -> Denoiser<B> {
    struct RequireGrad(Vec<bool>, usize);
    impl<B: AutodiffKernels> ModuleMapper<B> for RequireGrad {
        fn map_float<const D: usize>(&mut self, param: Param<Tensor<B, D>>) -> Param<Tensor<B, D>> {
            let trains = self.0[self.1];
            self.1 += 1;
            param.set_require_grad(trains)
        }
    }
    Denoiser::from_inner(model.valid()).map(&mut RequireGrad(trains(model), 0))
}

/// Whether each float parameter of `module` trains, in visiting order.
pub fn trains<B: AutodiffKernels, M: AutodiffModule<B>>(module: &M) -> Vec<bool> {
    struct Collect(Vec<bool>);
    impl<B: AutodiffKernels> ModuleVisitor<B> for Collect {
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<B, D>>) {
            self.0.push(param.val().is_require_grad());
        }
    }
    let mut c = Collect(Vec::new());
    module.visit(&mut c);
    c.0
}

/// Runs `f(replica, shard)` for every shard, up to `threads` at a time,
/// each on its own thread with its own replica of `model` (a lone shard
/// runs inline), and sums the gradients in shard order; also returns what
/// `f` measured per shard. More shards than threads run in waves, so a
/// shard's size bounds what each thread holds at once (gradient
/// accumulation over micro-batches).
pub fn sharded_gradients<B: AutodiffKernels, S: Sync, R: Send>(
    model: &Denoiser<B>,
    shards: &[S],
    threads: usize,
    f: impl Fn(Denoiser<B>, &S) -> (GradientsParams, R) + Sync,
) -> (GradientsParams, Vec<R>) {
    let mut accum = GradientsAccumulator::<Denoiser<B>>::new();
    let mut measured = Vec::with_capacity(shards.len());
    for wave in shards.chunks(threads.max(1)) {
        let results: Vec<(GradientsParams, R)> = if wave.len() <= 1 {
            wave.iter().map(|s| f(replica(model), s)).collect()
        } else {
            std::thread::scope(|scope| {
                let handles: Vec<_> = wave
                    .iter()
                    .map(|shard| {
                        let r = replica(model);
                        let f = &f;
                        scope.spawn(move || on_one_core(|| f(r, shard)))
                    })
                    .collect();
                handles
                    .into_iter()
                    .map(|h| h.join().expect("a training worker panicked"))
                    .collect()
            })
        };
        for (grads, r) in results {
            accum.accumulate(model, grads);
            measured.push(r);
        }
    }
    (accum.grads(), measured)
}

/// `items` cut into consecutive shards for [`sharded_gradients`] on
/// `threads` threads: each of at most `max_shard` items (0: no bound), a
/// multiple of `threads` of them where the items allow, as even as the
/// bounds allow.
pub fn bounded_shards<T>(items: &[T], threads: usize, max_shard: usize) -> Vec<&[T]> {
    if items.is_empty() {
        return Vec::new();
    }
    let threads = threads.max(1);
    let per_thread = items.len().div_ceil(threads);
    let waves = match max_shard {
        0 => 1,
        m => per_thread.div_ceil(m),
    };
    items
        .chunks(items.len().div_ceil(waves * threads))
        .collect()
}

/// Applies `f` to every item on up to `threads` scoped worker threads (a
/// shared queue, so uneven items balance) and returns the results in order.
/// Used for inference work whose randomness is keyed per example, so the
/// results do not depend on the thread count.
pub fn map_parallel<T: Sync, R: Send>(
    items: &[T],
    threads: usize,
    f: impl Fn(&T) -> anyhow::Result<R> + Sync,
) -> anyhow::Result<Vec<R>> {
    use std::sync::Mutex;
    use std::sync::atomic::{AtomicUsize, Ordering};
    let threads = threads.clamp(1, items.len().max(1));
    if threads == 1 {
        return items.iter().map(&f).collect();
    }
    let next = AtomicUsize::new(0);
    let results: Mutex<Vec<Option<anyhow::Result<R>>>> =
        Mutex::new((0..items.len()).map(|_| None).collect());
    std::thread::scope(|s| {
        for _ in 0..threads {
            s.spawn(|| {
                on_one_core(|| {
                    loop {
                        let i = next.fetch_add(1, Ordering::Relaxed);
                        if i >= items.len() {
                            break;
                        }
                        let r = f(&items[i]);
                        results.lock().expect("no worker panicked holding the lock")[i] = Some(r);
                    }
                })
            });
        }
    });
    results
        .into_inner()
        .expect("no worker panicked holding the lock")
        .into_iter()
        .map(|r| r.expect("every item was processed"))
        .collect()
}

/// Every parameter's gradient in `grads`, flattened, in `module`'s visiting
/// order (an empty vector for a parameter without one): for comparing two
/// computations of the same gradient.
pub fn flat_gradients<B: AutodiffKernels, M: AutodiffModule<B>>(
    module: &M,
    grads: &GradientsParams,
) -> Vec<Vec<f32>> {
    struct Collect<'a>(&'a GradientsParams, Vec<Vec<f32>>);
    impl<B: AutodiffKernels> ModuleVisitor<B> for Collect<'_> {
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<B, D>>) {
            let values = self
                .0
                .get::<B::InnerBackend, D>(param.id)
                .map_or_else(Vec::new, |g| {
                    g.into_data()
                        .convert::<f32>()
                        .to_vec::<f32>()
                        .unwrap_or_default()
                });
            self.1.push(values);
        }
    }
    let mut c = Collect(grads, Vec::new());
    module.visit(&mut c);
    c.1
}

/// The largest difference between two flattened gradients
/// ([`flat_gradients`]) entry by entry, and the largest entry of the
/// first: two computations of one gradient agree when the first is a small
/// share of the second (float summation order is all that differs).
pub fn gradient_difference(a: &[Vec<f32>], b: &[Vec<f32>]) -> (f32, f32) {
    let max_abs = a.iter().flatten().fold(0f32, |m, x| m.max(x.abs()));
    let max_err = a
        .iter()
        .flatten()
        .zip(b.iter().flatten())
        .fold(0f32, |m, (x, y)| m.max((x - y).abs()));
    (max_err, max_abs)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use burn::backend::{Autodiff, Flex};
    use mdm::DenoiserConfig;
    use mdm::loss::{CleanRow, ForwardProcess, NoisedBatch, diffusion_loss};
    use rand::rngs::StdRng;
    use rand::{Rng, SeedableRng};

    pub(crate) type B = Autodiff<Flex>;

    #[test]
    fn bounded_shards_cover_every_item_once_within_the_bounds() {
        let items: Vec<usize> = (0..67).collect();
        for (threads, max_shard) in [(1, 0), (2, 0), (2, 16), (3, 5), (4, 100), (2, 1)] {
            let shards = bounded_shards(&items, threads, max_shard);
            let flat: Vec<usize> = shards.iter().flat_map(|s| s.iter().copied()).collect();
            assert_eq!(flat, items, "threads {threads}, max {max_shard}");
            for s in &shards {
                assert!(!s.is_empty());
                assert!(
                    max_shard == 0 || s.len() <= max_shard,
                    "{} > {max_shard}",
                    s.len()
                );
            }
            if max_shard == 0 {
                assert!(shards.len() <= threads, "no bound: one wave");
            }
        }
        // 67 items, 2 threads, at most 16 each: 3 waves of 2 shards of 12
        // (the last 7).
        let shards = bounded_shards(&items, 2, 16);
        assert_eq!(shards.len(), 6);
        assert_eq!(shards[0].len(), 12);
        assert!(bounded_shards::<usize>(&[], 2, 4).is_empty());
    }

    /// A small denoiser (vocabulary 7, 12 positions) and a noised batch of
    /// `rows` random rows with 4-token prompts, for gradient tests.
    pub(crate) fn tiny_model_and_batch(rows: usize) -> (Denoiser<B>, NoisedBatch) {
        let cfg = DenoiserConfig::new(7, 16, 2, 2, 32, 12);
        let model: Denoiser<B> = cfg.init(5, &Default::default());
        let mut rng = StdRng::seed_from_u64(1);
        let seqs: Vec<Vec<u32>> = (0..rows)
            .map(|_| (0..12).map(|_| rng.random_range(0..7)).collect())
            .collect();
        let rows: Vec<CleanRow> = seqs
            .iter()
            .map(|s| CleanRow {
                tokens: s,
                prompt_len: 4,
            })
            .collect();
        let noised = ForwardProcess::default().corrupt(&rows, cfg.mask_id(), 0.0, &mut rng);
        (model, noised)
    }

    /// The loss of `batch` and its gradients, its shards computed by
    /// `threads` replicas (the pre-training step's path).
    pub(crate) fn loss_and_grads(
        model: &Denoiser<B>,
        batch: &NoisedBatch,
        threads: usize,
    ) -> (f64, GradientsParams) {
        let device = Default::default();
        let shards = batch.split(threads);
        let (grads, values) = sharded_gradients(model, &shards, threads, |replica, shard| {
            let loss = diffusion_loss(&replica, shard, &device);
            let value: f64 = loss.clone().into_scalar().elem();
            (
                GradientsParams::from_grads(loss.backward(), &replica),
                value,
            )
        });
        (values.iter().sum(), grads)
    }

    /// Sharding the batch across threads gives the same loss and the same
    /// summed gradients as one thread (up to float summation order).
    #[test]
    fn sharded_gradients_equal_single_thread_gradients() {
        let (model, batch) = tiny_model_and_batch(7);
        let (loss1, grads1) = loss_and_grads(&model, &batch, 1);
        let (loss3, grads3) = loss_and_grads(&model, &batch, 3);
        assert!(
            (loss1 - loss3).abs() < 1e-5 * loss1.abs().max(1.0),
            "{loss1} vs {loss3}"
        );
        let (a, b) = (
            flat_gradients(&model, &grads1),
            flat_gradients(&model, &grads3),
        );
        let (max_err, max_abs) = gradient_difference(&a, &b);
        assert!(max_abs > 1e-4, "gradients are not trivially zero");
        assert!(max_err <= 1e-4 * max_abs, "{max_err} vs {max_abs}");
    }
}
