//! Two small image classifiers of different architecture, so that the
//! reward model and the evaluation model do not share their blind spots
//! (reward hacking then shows as reward up, evaluation accuracy flat):
//!
//! - `mlp`: pixels -> 128 -> 64 -> classes (ReLU); the reward model.
//! - `conv`: 3x3 conv (16) -> 3x3 conv stride 2 (32) -> 64 -> classes; the
//!   evaluation model, whose 64 penultimate features also serve the
//!   Frechet distance (the FID analogue).

use burn::nn::conv::Conv2d;
use burn::nn::{Linear, PaddingConfig2d};
use burn::prelude::*;
use burn::tensor::activation::relu;
use mdm::init::ParamFactory;
use serde::{Deserialize, Serialize};

/// Width of the penultimate features of both architectures.
pub const FEATURES: usize = 64;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Architecture {
    Mlp,
    Conv,
}

#[derive(Module, Debug)]
pub struct MlpNet<B: Backend> {
    hidden: Linear<B>,
    features: Linear<B>,
}

#[derive(Module, Debug)]
pub struct ConvNet<B: Backend> {
    conv1: Conv2d<B>,
    conv2: Conv2d<B>,
    features: Linear<B>,
}

/// A classifier of `side x side` gray images into `classes`.
#[derive(Module, Debug)]
pub struct Classifier<B: Backend> {
    mlp: Option<MlpNet<B>>,
    conv: Option<ConvNet<B>>,
    out: Linear<B>,
    side: usize,
}

/// Parameter ids of the classifiers start here (the denoiser's start at
/// 2^40, the schedule policy's at 2^41).
const PARAM_ID_BASE: u64 = 1 << 42;

impl Architecture {
    pub fn name(self) -> &'static str {
        match self {
            Architecture::Mlp => "mlp",
            Architecture::Conv => "conv",
        }
    }

    /// A fresh classifier, He-initialized from `seed` (identical on every
    /// backend, independent of burn's global generator).
    pub fn init<B: Backend>(
        self,
        side: usize,
        classes: usize,
        seed: u64,
        device: &B::Device,
    ) -> Classifier<B> {
        let mut f = ParamFactory::<B>::new(seed, PARAM_ID_BASE, device);
        let linear = |f: &mut ParamFactory<B>, d_in: usize, d_out: usize| Linear {
            weight: f.normal([d_in, d_out], (2.0 / d_in as f64).sqrt()),
            bias: Some(f.zeros([d_out])),
        };
        let conv = |f: &mut ParamFactory<B>, c_in: usize, c_out: usize, stride: usize| Conv2d {
            weight: f.normal([c_out, c_in, 3, 3], (2.0 / (9 * c_in) as f64).sqrt()),
            bias: Some(f.zeros([c_out])),
            stride: [stride, stride],
            kernel_size: [3, 3],
            dilation: [1, 1],
            groups: 1,
            padding: PaddingConfig2d::Explicit(1, 1, 1, 1),
        };
        let (mlp, conv) = match self {
            Architecture::Mlp => {
                let hidden = linear(&mut f, side * side, 128);
                let features = linear(&mut f, 128, FEATURES);
                (Some(MlpNet { hidden, features }), None)
            }
            Architecture::Conv => {
                let half = side.div_ceil(2);
                let conv1 = conv(&mut f, 1, 16, 1);
                let conv2 = conv(&mut f, 16, 32, 2);
                let features = linear(&mut f, 32 * half * half, FEATURES);
                (
                    None,
                    Some(ConvNet {
                        conv1,
                        conv2,
                        features,
                    }),
                )
            }
        };
        let out = linear(&mut f, FEATURES, classes);
        Classifier {
            mlp,
            conv,
            out,
            side,
        }
    }
}

impl<B: Backend> Classifier<B> {
    /// Penultimate features `[n, FEATURES]` of images `[n, side * side]`
    /// with values in [0, 1].
    pub fn features(&self, images: Tensor<B, 2>) -> Tensor<B, 2> {
        if let Some(m) = &self.mlp {
            return relu(m.features.forward(relu(m.hidden.forward(images))));
        }
        let c = self
            .conv
            .as_ref()
            .expect("a classifier has one of its two bodies");
        let [n, _] = images.dims();
        let x = images.reshape([n, 1, self.side, self.side]);
        let x = relu(c.conv2.forward(relu(c.conv1.forward(x))));
        relu(c.features.forward(x.flatten(1, 3)))
    }

    pub fn classes(&self) -> usize {
        self.out.weight.dims()[1]
    }

    /// Class logits `[n, classes]`.
    pub fn logits(&self, images: Tensor<B, 2>) -> Tensor<B, 2> {
        self.out.forward(self.features(images))
    }
}

/// Images (each `side * side` values) as a tensor `[n, side * side]`.
pub fn batch<B: Backend>(images: &[&[f32]], device: &B::Device) -> Tensor<B, 2> {
    let width = images.first().map_or(0, |im| im.len());
    let flat: Vec<f32> = images.iter().flat_map(|im| im.iter().copied()).collect();
    Tensor::from_data(TensorData::new(flat, [images.len(), width]), device)
}
