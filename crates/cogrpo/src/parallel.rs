//! Data parallelism across CPU threads.
//!
//! burn's CPU kernels mostly run on one core, so a training step leaves the
//! other cores idle. We split the batch into shards and let each thread run
//! forward and backward on its own *replica* of the model: a copy of the same
//! parameter tensors (same ids) whose autodiff graph is separate, so the
//! threads never share a graph lock. Gradients are summed in shard order,
//! which keeps a run deterministic for a given thread count.

use burn::module::{AutodiffModule, Module, ModuleMapper, Param};
use burn::optim::{GradientsAccumulator, GradientsParams};
use burn::prelude::*;
use burn::tensor::backend::AutodiffBackend;
use mdm::Denoiser;
use mdm::loss::{NoisedBatch, diffusion_loss};

/// A copy of `model` sharing its weights and parameter ids but building its
/// own autodiff graph.
pub fn replica<B: AutodiffBackend>(model: &Denoiser<B>) -> Denoiser<B> {
    struct RequireGrad;
    impl<B: AutodiffBackend> ModuleMapper<B> for RequireGrad {
        fn map_float<const D: usize>(&mut self, param: Param<Tensor<B, D>>) -> Param<Tensor<B, D>> {
            param.set_require_grad(true)
        }
    }
    Denoiser::from_inner(model.valid()).map(&mut RequireGrad)
}

/// `scale * loss` of `batch` and its gradients, computed by up to `threads`
/// replicas in parallel. Returns the loss value and the summed gradients.
pub fn loss_and_grads<B: AutodiffBackend>(
    model: &Denoiser<B>,
    batch: &NoisedBatch,
    scale: f64,
    threads: usize,
    device: &B::Device,
) -> (f64, GradientsParams) {
    let shards = batch.split(threads);
    let run = |replica: Denoiser<B>, shard: &NoisedBatch| {
        let loss = diffusion_loss(&replica, shard, device) * scale;
        let value: f64 = loss.clone().into_scalar().elem();
        (value, GradientsParams::from_grads(loss.backward(), &replica))
    };
    let results: Vec<(f64, GradientsParams)> = if shards.len() == 1 {
        vec![run(replica(model), &shards[0])]
    } else {
        std::thread::scope(|s| {
            let handles: Vec<_> = shards
                .iter()
                .map(|shard| {
                    let r = replica(model);
                    s.spawn(move || run(r, shard))
                })
                .collect();
            handles.into_iter().map(|h| h.join().expect("a training worker panicked")).collect()
        })
    };
    let mut accum = GradientsAccumulator::<Denoiser<B>>::new();
    let mut total = 0.0;
    for (value, grads) in results {
        total += value;
        accum.accumulate(model, grads);
    }
    (total, accum.grads())
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
    let results: Mutex<Vec<Option<anyhow::Result<R>>>> = Mutex::new((0..items.len()).map(|_| None).collect());
    std::thread::scope(|s| {
        for _ in 0..threads {
            s.spawn(|| {
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= items.len() {
                        break;
                    }
                    let r = f(&items[i]);
                    results.lock().expect("no worker panicked holding the lock")[i] = Some(r);
                }
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
