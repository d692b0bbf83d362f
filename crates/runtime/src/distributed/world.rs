//! One rank's view of the run: who it is, and the collective operations
//! it shares with the other ranks.

use std::any::TypeId;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use burn::module::{AutodiffModule, ModuleVisitor, Param};
use burn::optim::GradientsParams;
use burn::prelude::*;
use burn::tensor::TensorPrimitive;
use burn::tensor::backend::AutodiffBackend;
use burn_collective::{PeerId, ReduceOperation};
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::launch::Cluster;

/// One rank: its place in the run and its collective operations. With one
/// rank (`World::single`) every operation is the identity and nothing is
/// registered anywhere.
pub struct World {
    /// `node_rank * devices + local device`.
    pub rank: usize,
    /// Ranks in the run.
    pub size: usize,
    peer: PeerId,
    cluster: Option<Arc<Cluster>>,
    /// The backend the rank registered with: every operation must use it.
    backend: Option<TypeId>,
}

impl World {
    /// A run of one rank.
    pub fn single() -> Self {
        Self {
            rank: 0,
            size: 1,
            peer: PeerId::from(0),
            cluster: None,
            backend: None,
        }
    }

    /// Registers local device `local` of `cluster`'s node with burn's
    /// collective on backend `B` (for training, the autodiff backend's
    /// inner backend, on which gradients live). Returns once every rank of
    /// the run has registered.
    pub fn join<B: Backend>(
        cluster: &Arc<Cluster>,
        local: usize,
        device: &B::Device,
    ) -> anyhow::Result<Self> {
        let launch = &cluster.launch;
        let world = Self {
            rank: launch.node_rank * launch.devices + local,
            size: launch.world_size(),
            peer: PeerId::from(local as u32),
            cluster: Some(cluster.clone()),
            backend: Some(TypeId::of::<B>()),
        };
        if world.size > 1 {
            burn_collective::register::<B>(world.peer, device.clone(), cluster.collective())
                .map_err(|e| {
                    anyhow::anyhow!("rank {}: cannot join the collective: {e:?}", world.rank)
                })?;
        }
        Ok(world)
    }

    /// Leaves the collective (after the last operation of the job).
    pub fn finish<B: Backend>(&self) {
        if self.size > 1
            && let Err(e) = burn_collective::finish_collective::<B>(self.peer)
        {
            tracing::warn!("rank {}: leaving the collective: {e:?}", self.rank);
        }
    }

    /// Rank 0 writes checkpoints, logs, dumps and reports; the others only
    /// compute.
    pub fn is_writer(&self) -> bool {
        self.rank == 0
    }

    pub fn is_distributed(&self) -> bool {
        self.size > 1
    }

    /// This rank's consecutive share of `items` (the shares of ranks
    /// `0..size` cover `items` in order; some are empty when there are
    /// fewer items than ranks). The same cut as `parallel::bounded_shards`
    /// on `size` threads, so a run on N ranks sums what one process on N
    /// threads sums.
    pub fn share<'a, T>(&self, items: &'a [T]) -> &'a [T] {
        let per = items.len().div_ceil(self.size).max(1);
        let start = (self.rank * per).min(items.len());
        &items[start..(start + per).min(items.len())]
    }

    fn check_backend<B: Backend>(&self) -> anyhow::Result<()> {
        match self.backend {
            Some(t) if t != TypeId::of::<B>() => bail!(
                "internal: a collective operation on another backend than rank {} registered with",
                self.rank
            ),
            _ => Ok(()),
        }
    }

    /// The element-wise sum of `x` over the ranks.
    pub fn all_reduce<B: Backend>(&self, x: Tensor<B, 1>) -> anyhow::Result<Tensor<B, 1>> {
        if self.size == 1 {
            return Ok(x);
        }
        self.check_backend::<B>()?;
        let primitive = x.into_primitive().tensor();
        match burn_collective::all_reduce::<B>(self.peer, primitive, ReduceOperation::Sum) {
            Ok(t) => Ok(Tensor::from_primitive(TensorPrimitive::Float(t))),
            Err(e) => Err(self.explain(format!("{e:?}"))),
        }
    }

    /// A failed collective operation: most often another rank was lost,
    /// which the control plane reports (and stops this process for) within
    /// moments; this waits for that before saying what is known.
    fn explain(&self, e: String) -> anyhow::Error {
        if self.cluster.as_ref().is_some_and(|c| c.has_peers()) {
            std::thread::sleep(super::control::SILENCE + Duration::from_secs(5));
        }
        anyhow::anyhow!("a collective operation failed ({e}); another rank has probably stopped")
    }

    /// Waits until every rank gets here.
    pub fn barrier<B: Backend>(&self, device: &B::Device) -> anyhow::Result<()> {
        // A ring all-reduce needs an element per rank at least.
        self.all_reduce::<B>(Tensor::zeros([self.size], device))
            .map(|_| ())
    }

    /// The sum over the ranks of each rank's `grads` of `module`'s
    /// parameters, in one all-reduce of one flat buffer, with each rank's
    /// `scalars` gathered exactly on the way (returned per rank, in rank
    /// order, every rank passing as many). A parameter without a gradient on
    /// every rank stays without one (the optimizer skips it, as one process
    /// would); a frozen parameter is not sent at all.
    pub fn sum_gradients<B: AutodiffBackend, M: AutodiffModule<B>>(
        &self,
        module: &M,
        grads: GradientsParams,
        scalars: &[f64],
        device: &B::Device,
    ) -> anyhow::Result<(GradientsParams, Vec<Vec<f64>>)> {
        if self.size == 1 {
            return Ok((grads, vec![scalars.to_vec()]));
        }
        let mut flat = Flatten::<B> {
            grads: &grads,
            device: device.clone(),
            parts: Vec::new(),
            present: Vec::new(),
        };
        module.visit(&mut flat);
        let (parts, present) = (flat.parts, flat.present);
        let sizes: Vec<usize> = parts.iter().map(|p| p.dims()[0]).collect();
        let n_grads: usize = sizes.iter().sum();
        let mut tail = vec![0.0f32; present.len() + self.size * scalars.len() * F64_FLOATS];
        tail[..present.len()].copy_from_slice(&present);
        let own = present.len() + self.rank * scalars.len() * F64_FLOATS;
        for (i, &v) in scalars.iter().enumerate() {
            let at = own + i * F64_FLOATS;
            tail[at..at + F64_FLOATS].copy_from_slice(&f64_to_floats(v));
        }
        let mut pieces = parts;
        let tail_len = tail.len();
        pieces.push(Tensor::from_data(TensorData::new(tail, [tail_len]), device));
        let summed = self.all_reduce::<B::InnerBackend>(Tensor::cat(pieces, 0))?;
        let tail: Vec<f32> = summed
            .clone()
            .slice(n_grads..n_grads + tail_len)
            .into_data()
            .to_vec()
            .context("the reduced buffer is not float32")?;
        let (present, gathered) = tail.split_at(sizes.len());
        let per_rank: Vec<Vec<f64>> = gathered
            .chunks(scalars.len().max(1) * F64_FLOATS)
            .take(self.size)
            .map(|r| r.chunks(F64_FLOATS).map(floats_to_f64).collect())
            .collect();
        let mut out = GradientsParams::new();
        let mut scatter = Scatter::<B> {
            out: &mut out,
            summed,
            offset: 0,
            index: 0,
            present,
            sizes: &sizes,
        };
        module.visit(&mut scatter);
        let per_rank = if scalars.is_empty() {
            vec![Vec::new(); self.size]
        } else {
            per_rank
        };
        Ok((out, per_rank))
    }

    /// Every rank's `value`, in rank order: serialized (MessagePack, so
    /// floats are exact), packed three bytes to a float32 (integers below
    /// 2^24 are exact), each rank's bytes in its own slot of a buffer the
    /// ranks all-reduce (a sum with zeros elsewhere, so exact), and read
    /// back. Two all-reduces: the lengths, then the bytes.
    pub fn gather<B: Backend, T: Serialize + DeserializeOwned>(
        &self,
        value: T,
        device: &B::Device,
    ) -> anyhow::Result<Vec<T>> {
        if self.size == 1 {
            return Ok(vec![value]);
        }
        let bytes = rmp_serde::to_vec(&value).context("cannot serialize what the ranks share")?;
        let mut lens = vec![0.0f32; self.size * 2];
        lens[self.rank * 2] = (bytes.len() >> 20) as f32;
        lens[self.rank * 2 + 1] = (bytes.len() & 0xF_FFFF) as f32;
        let lens = self.all_reduce::<B>(Tensor::from_data(
            TensorData::new(lens, [self.size * 2]),
            device,
        ))?;
        let lens: Vec<usize> = lens
            .into_data()
            .to_vec::<f32>()
            .context("lengths")?
            .chunks(2)
            .map(|c| ((c[0] as usize) << 20) + c[1] as usize)
            .collect();
        let floats: Vec<usize> = lens.iter().map(|l| l.div_ceil(3)).collect();
        let total: usize = floats.iter().sum();
        let offset: usize = floats[..self.rank].iter().sum();
        let mut buf = vec![0.0f32; total.max(self.size)];
        for (i, c) in bytes.chunks(3).enumerate() {
            let v = c
                .iter()
                .rev()
                .fold(0u32, |acc, &b| (acc << 8) | u32::from(b));
            buf[offset + i] = v as f32;
        }
        let n = buf.len();
        let buf: Vec<f32> = self
            .all_reduce::<B>(Tensor::from_data(TensorData::new(buf, [n]), device))?
            .into_data()
            .to_vec()
            .context("gathered bytes")?;
        let mut out = Vec::with_capacity(self.size);
        let mut at = 0;
        for (r, (&len, &nf)) in lens.iter().zip(&floats).enumerate() {
            let mut b = Vec::with_capacity(nf * 3);
            for &f in &buf[at..at + nf] {
                let v = f as u32;
                b.extend_from_slice(&[v as u8, (v >> 8) as u8, (v >> 16) as u8]);
            }
            b.truncate(len);
            at += nf;
            out.push(
                rmp_serde::from_slice(&b)
                    .with_context(|| format!("what rank {r} shared cannot be read back"))?,
            );
        }
        Ok(out)
    }
}

/// Float32s that carry one float64 exactly: 22 + 21 + 21 bits, each an
/// integer a float32 holds exactly.
const F64_FLOATS: usize = 3;

fn f64_to_floats(v: f64) -> [f32; F64_FLOATS] {
    let b = v.to_bits();
    [
        (b >> 42) as f32,
        ((b >> 21) & 0x1F_FFFF) as f32,
        (b & 0x1F_FFFF) as f32,
    ]
}

fn floats_to_f64(f: &[f32]) -> f64 {
    let b = ((f[0] as u64) << 42) | ((f[1] as u64) << 21) | (f[2] as u64);
    f64::from_bits(b)
}

/// Every parameter's gradient flattened (zeros where it has none), in
/// visiting order, and whether it has one.
struct Flatten<'a, B: AutodiffBackend> {
    grads: &'a GradientsParams,
    device: B::Device,
    parts: Vec<Tensor<B::InnerBackend, 1>>,
    present: Vec<f32>,
}

impl<B: AutodiffBackend> ModuleVisitor<B> for Flatten<'_, B> {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<B, D>>) {
        if frozen(param) {
            return;
        }
        let n = param.shape().num_elements();
        match self.grads.get::<B::InnerBackend, D>(param.id) {
            Some(g) => {
                self.parts.push(g.reshape([n]));
                self.present.push(1.0);
            }
            None => {
                self.parts.push(Tensor::zeros([n], &self.device));
                self.present.push(0.0);
            }
        }
    }
}

/// A parameter that never trains (a LoRA arm's frozen base): no rank sends
/// its (absent) gradient, so an 8B base costs the all-reduce nothing.
fn frozen<B: AutodiffBackend, const D: usize>(param: &Param<Tensor<B, D>>) -> bool {
    !param.val().is_require_grad()
}

/// The reduced buffer cut back into gradients, in the same order.
struct Scatter<'a, B: AutodiffBackend> {
    out: &'a mut GradientsParams,
    summed: Tensor<B::InnerBackend, 1>,
    offset: usize,
    index: usize,
    present: &'a [f32],
    sizes: &'a [usize],
}

impl<B: AutodiffBackend> ModuleVisitor<B> for Scatter<'_, B> {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<B, D>>) {
        if frozen(param) {
            return;
        }
        let n = self.sizes[self.index];
        if self.present[self.index] > 0.0 {
            let g = self
                .summed
                .clone()
                .slice(self.offset..self.offset + n)
                .reshape(param.shape());
            self.out.register::<B::InnerBackend, D>(param.id, g);
        }
        self.offset += n;
        self.index += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::super::launch::Launch;
    use super::*;
    use crate::parallel::tests::{loss_and_grads, tiny_model_and_batch};
    use crate::parallel::{flat_gradients, replica};
    use burn::backend::Flex;

    /// Two ranks in one process (two "devices" of the CPU backend, through
    /// burn-collective's local all-reduce): the summed gradients of the two
    /// halves of a batch are bit for bit those of one process on two
    /// threads, and `gather` returns every rank's value exactly; with LoRA
    /// adapters on a frozen base too, where only the adapters' gradients
    /// travel and come back.
    #[test]
    fn two_local_ranks_sum_gradients_and_gather_exactly() {
        let (model, batch) = tiny_model_and_batch(6);
        two_ranks_agree_with_two_threads(&model, &batch, 2 * 9 + 3);
        let lora = mdm::LoraConfig {
            rank: 2,
            ..Default::default()
        };
        let adapted = model.with_lora(&lora, 1).expect("rank fits");
        two_ranks_agree_with_two_threads(&adapted, &batch, 2 * 7 * 2);
    }

    /// See [`two_local_ranks_sum_gradients_and_gather_exactly`]; `trained`
    /// parameters have gradients.
    fn two_ranks_agree_with_two_threads(
        model: &mdm::Denoiser<crate::parallel::tests::B>,
        batch: &mdm::loss::NoisedBatch,
        trained: usize,
    ) {
        let device = Default::default();
        let (model, batch) = (model.clone(), batch.clone());
        let (loss, single) = loss_and_grads(&model, &batch, 2);

        let launch = Launch {
            devices: 2,
            ..Launch::default()
        };
        let cluster = Cluster::start(launch, "test").expect("one node needs no network");
        let shards = batch.split(2);
        type Shared = (usize, Vec<f64>, String);
        let results: Vec<(f64, GradientsParams, Vec<Shared>)> = std::thread::scope(|s| {
            let handles: Vec<_> = (0..2)
                .map(|local| {
                    // Each rank its own replica: threads that share one
                    // autodiff graph can deadlock in burn 0.21.
                    let (cluster, model, shards) = (&cluster, replica(&model), &shards);
                    s.spawn(move || {
                        let world = World::join::<Flex>(cluster, local, &device)?;
                        let mine = (
                            world.rank,
                            vec![world.rank as f64 * 0.1, f64::NAN, -1e-300],
                            "x".repeat(world.rank * 5 + 1),
                        );
                        let gathered = world.gather::<Flex, _>(mine, &device)?;
                        let loss = mdm::loss::diffusion_loss(&model, &shards[local], &device);
                        let value: f64 = loss.clone().into_scalar().elem();
                        let grads = GradientsParams::from_grads(loss.backward(), &model);
                        let (grads, values) =
                            world.sum_gradients(&model, grads, &[value], &device)?;
                        world.barrier::<Flex>(&device)?;
                        world.finish::<Flex>();
                        let total: f64 = values.iter().map(|v| v[0]).sum();
                        anyhow::Ok((total, grads, gathered))
                    })
                })
                .collect();
            handles
                .into_iter()
                .map(|h| h.join().expect("no panic").expect("collective works"))
                .collect()
        });
        let expect = flat_gradients(&model, &single);
        for (total, grads, gathered) in &results {
            assert_eq!(total.to_bits(), loss.to_bits(), "{total} vs {loss}");
            let got = flat_gradients(&model, grads);
            assert_eq!(got.iter().filter(|g| !g.is_empty()).count(), trained);
            let bits = |g: &Vec<Vec<f32>>| -> Vec<u32> {
                g.iter().flatten().map(|x| x.to_bits()).collect()
            };
            assert_eq!(bits(&got), bits(&expect), "bit-identical to two threads");
            assert_eq!(gathered.len(), 2);
            for (r, (rank, v, text)) in gathered.iter().enumerate() {
                assert_eq!(*rank, r);
                assert_eq!(v[0], r as f64 * 0.1);
                assert!(v[1].is_nan());
                assert_eq!(v[2], -1e-300);
                assert_eq!(text.len(), r * 5 + 1);
            }
        }
    }

    #[test]
    fn float64s_survive_their_float32_encoding() {
        for v in [
            0.0,
            -0.0,
            1.0,
            -3.25e-300,
            f64::MAX,
            f64::MIN_POSITIVE,
            f64::NAN,
            f64::INFINITY,
            std::f64::consts::PI,
        ] {
            let back = floats_to_f64(&f64_to_floats(v));
            assert_eq!(back.to_bits(), v.to_bits(), "{v}");
        }
    }

    #[test]
    fn shares_cover_the_items_once_in_order() {
        let items: Vec<usize> = (0..7).collect();
        for size in 1..=9 {
            let mut all = Vec::new();
            for rank in 0..size {
                let w = World {
                    rank,
                    size,
                    ..World::single()
                };
                all.extend_from_slice(w.share(&items));
            }
            assert_eq!(all, items, "size {size}");
        }
    }
}
