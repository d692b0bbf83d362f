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

    /// U(-bound, bound) entries.
    pub fn uniform<const D: usize>(
        &mut self,
        shape: [usize; D],
        bound: f64,
    ) -> Param<Tensor<B, D>> {
        let n: usize = shape.iter().product();
        let dist = rand_distr::Uniform::new_inclusive(-bound as f32, bound as f32)
            .expect("bound is finite");
        let values: Vec<f32> = (0..n).map(|_| dist.sample(&mut self.rng)).collect();
        self.values(values, shape)
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

/// Where a module's parameters come from as it is built, in creation
/// order: drawn ([`ParamFactory`]) or read from a file (a released model's
/// tensors, in the same order). Building from a source never makes a
/// tensor twice, which matters at 8B parameters.
pub trait ParamSource<B: Backend> {
    /// A weight initialised as N(0, std^2).
    fn normal<const D: usize>(&mut self, shape: [usize; D], std: f64) -> Param<Tensor<B, D>>;
    /// A gain initialised to one.
    fn ones(&mut self, len: usize) -> Param<Tensor<B, 1>>;
    /// A bias initialised to zero.
    fn zeros<const D: usize>(&mut self, shape: [usize; D]) -> Param<Tensor<B, D>>;
}

impl<B: Backend> ParamSource<B> for ParamFactory<'_, B> {
    fn normal<const D: usize>(&mut self, shape: [usize; D], std: f64) -> Param<Tensor<B, D>> {
        ParamFactory::normal(self, shape, std)
    }

    fn ones(&mut self, len: usize) -> Param<Tensor<B, 1>> {
        ParamFactory::ones(self, len)
    }

    fn zeros<const D: usize>(&mut self, shape: [usize; D]) -> Param<Tensor<B, D>> {
        ParamFactory::zeros(self, shape)
    }
}

/// Parameters read in creation order from host tensors (streamed: a
/// released model is never held twice), with the ids a [`ParamFactory`] at
/// the same base would give.
pub(crate) struct Loaded<'a, B: Backend> {
    tensors: Box<dyn Iterator<Item = crate::host::Host> + 'a>,
    next_id: u64,
    device: &'a B::Device,
}

impl<'a, B: Backend> Loaded<'a, B> {
    pub fn new(
        tensors: impl Iterator<Item = crate::host::Host> + 'a,
        id_base: u64,
        device: &'a B::Device,
    ) -> Self {
        Self {
            tensors: Box::new(tensors),
            next_id: id_base,
            device,
        }
    }

    /// The next tensor, which the caller has checked has `shape`.
    fn next<const D: usize>(&mut self, shape: [usize; D]) -> Param<Tensor<B, D>> {
        let h = self.tensors.next().expect("one tensor per parameter");
        assert_eq!(h.shape, shape, "tensors in the model's creation order");
        self.next_id += 1;
        crate::host::param(ParamId::from(self.next_id), h, self.device)
    }

    /// Whether every tensor was used.
    pub fn is_done(&mut self) -> bool {
        self.tensors.next().is_none()
    }
}

impl<B: Backend> ParamSource<B> for Loaded<'_, B> {
    fn normal<const D: usize>(&mut self, shape: [usize; D], _std: f64) -> Param<Tensor<B, D>> {
        self.next(shape)
    }

    fn ones(&mut self, len: usize) -> Param<Tensor<B, 1>> {
        self.next([len])
    }

    fn zeros<const D: usize>(&mut self, shape: [usize; D]) -> Param<Tensor<B, D>> {
        self.next(shape)
    }
}
