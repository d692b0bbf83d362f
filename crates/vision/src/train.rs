//! Supervised training of the image classifiers: Adam on the cross-entropy,
//! shuffled minibatches from a keyed stream, a fixed number of epochs.

use burn::module::AutodiffModule;
use burn::nn::loss::CrossEntropyLossConfig;
use burn::optim::{AdamConfig, GradientsParams, Optimizer};
use burn::prelude::*;
use burn::tensor::backend::AutodiffBackend;
use envs::seeding::{purpose, stream};
use rand::seq::SliceRandom;
use serde::{Deserialize, Serialize};

use crate::net::{Architecture, Classifier, batch};

/// One training image: values in [0, 1] and its class.
#[derive(Debug, Clone)]
pub struct Labeled {
    pub pixels: Vec<f32>,
    pub class: usize,
}

/// How a classifier is trained; saved next to its weights.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrainSettings {
    pub architecture: Architecture,
    pub epochs: usize,
    pub batch_size: usize,
    pub lr: f64,
    pub seed: u64,
}

/// Trains a fresh classifier of `side x side` images on `data`.
pub fn train<B: AutodiffBackend>(
    s: &TrainSettings,
    side: usize,
    classes: usize,
    data: &[Labeled],
    device: &B::Device,
) -> Classifier<B::InnerBackend> {
    let mut model: Classifier<B> = s.architecture.init(side, classes, s.seed, device);
    let mut optim = AdamConfig::new().init();
    let loss_fn = CrossEntropyLossConfig::new().init(device);
    let mut order: Vec<usize> = (0..data.len()).collect();
    for epoch in 0..s.epochs {
        order.shuffle(&mut stream(&[
            purpose::TASK_DATA,
            s.seed,
            0x636c_6173,
            epoch as u64,
        ]));
        for chunk in order.chunks(s.batch_size.max(1)) {
            let images: Vec<&[f32]> = chunk.iter().map(|&i| data[i].pixels.as_slice()).collect();
            let classes: Vec<i64> = chunk.iter().map(|&i| data[i].class as i64).collect();
            let targets =
                Tensor::<B, 1, Int>::from_data(TensorData::new(classes, [chunk.len()]), device);
            let loss = loss_fn.forward(model.logits(batch(&images, device)), targets);
            let grads = GradientsParams::from_grads(loss.backward(), &model);
            model = optim.step(s.lr, model, grads);
        }
    }
    model.valid()
}

/// The predicted class of each image.
pub fn predict<B: Backend>(
    model: &Classifier<B>,
    images: &[&[f32]],
    device: &B::Device,
) -> Vec<usize> {
    if images.is_empty() {
        return Vec::new();
    }
    let argmax = model.logits(batch(images, device)).argmax(1);
    argmax
        .into_data()
        .convert::<i64>()
        .into_vec::<i64>()
        .unwrap_or_default()
        .into_iter()
        .map(|c| c as usize)
        .collect()
}

/// Share of `data` classified correctly.
pub fn accuracy<B: Backend>(model: &Classifier<B>, data: &[Labeled], device: &B::Device) -> f64 {
    let images: Vec<&[f32]> = data.iter().map(|d| d.pixels.as_slice()).collect();
    let predicted = predict(model, &images, device);
    let right = predicted
        .iter()
        .zip(data)
        .filter(|(p, d)| **p == d.class)
        .count();
    right as f64 / data.len().max(1) as f64
}
