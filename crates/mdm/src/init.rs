//! Parameter creation with host-side random numbers and fixed ids.
//!
//! Two reasons not to use burn's lazy initialisers: (1) weights drawn from
//! one seeded host stream are identical on every backend and independent of
//! burn's global RNG (which other threads may reseed), so CPU and CUDA runs
//! start from the same model; (2) parameters get ids numbered in creation
//! order, so an optimizer state saved under those ids matches the model again
//! after a restart, and cloning never re-runs an initialiser.

use burn::module::{Param, ParamId};
use burn::prelude::*;
use rand::SeedableRng;
use rand::rngs::StdRng;
use rand_distr::{Distribution, Normal};

pub struct ParamFactory<'a, B: Backend> {
    rng: StdRng,
    next_id: u64,
    device: &'a B::Device,
}

impl<'a, B: Backend> ParamFactory<'a, B> {
    /// `id_base` separates the id ranges of different modules.
    pub fn new(seed: u64, id_base: u64, device: &'a B::Device) -> Self {
        Self {
            rng: StdRng::seed_from_u64(seed),
            next_id: id_base,
            device,
        }
    }

    fn id(&mut self) -> ParamId {
        self.next_id += 1;
        ParamId::from(self.next_id)
    }

    /// N(0, std^2) entries.
    pub fn normal<const D: usize>(&mut self, shape: [usize; D], std: f64) -> Param<Tensor<B, D>> {
        let n: usize = shape.iter().product();
        let dist = Normal::new(0.0f32, std as f32).expect("std is finite and positive");
        let values: Vec<f32> = (0..n).map(|_| dist.sample(&mut self.rng)).collect();
        let tensor = Tensor::<B, D>::from_data(TensorData::new(values, shape), self.device);
        Param::initialized(self.id(), tensor.require_grad())
    }

    pub fn ones(&mut self, len: usize) -> Param<Tensor<B, 1>> {
        let tensor = Tensor::<B, 1>::ones([len], self.device);
        Param::initialized(self.id(), tensor.require_grad())
    }

    /// A parameter holding `values` (row-major) of `shape`.
    pub fn values<const D: usize>(
        &mut self,
        values: Vec<f32>,
        shape: [usize; D],
    ) -> Param<Tensor<B, D>> {
        let tensor = Tensor::<B, D>::from_data(TensorData::new(values, shape), self.device);
        Param::initialized(self.id(), tensor.require_grad())
    }

    pub fn zeros<const D: usize>(&mut self, shape: [usize; D]) -> Param<Tensor<B, D>> {
        self.values(vec![0.0; shape.iter().product()], shape)
    }
}
