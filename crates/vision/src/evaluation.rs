//! Image metrics of generated digits under the evaluation classifier
//! (trained on `heldout` only, a different architecture from the reward
//! model): the GenEval and FID analogues.

use burn::backend::Flex;
use burn::backend::flex::FlexDevice;
use envs::digits::{CLASSES, DigitSplit, intensities, prompted_class};
use rewards::RewardItem;

use crate::metrics::{Sample, diversity, frechet};
use crate::net::{Classifier, batch};
use crate::store::{ModelRole, labeled, load_or_train};
use crate::train::predict;
use cogrpo_config::ExperimentConfig;
use cogrpo_config::tasks::load_digits;

/// The metrics [`ImageMetrics::score`] reports, in order.
pub const METRICS: [&str; 4] = [
    "class_accuracy",
    "frechet",
    "duplicate_rate",
    "pairwise_distance",
];

pub struct ImageMetrics {
    classifier: Classifier<Flex>,
    levels: usize,
    /// Features of the `heldout` images, the reference of the Frechet distance.
    reference: Vec<Vec<f64>>,
    /// Reference values: two halves of `heldout` against each other (the
    /// floor of the distance at this sample size) and `train` against
    /// `heldout` (what a generator that copied its training data scores).
    pub floors: Vec<(String, f64)>,
}

impl ImageMetrics {
    pub fn load(cfg: &ExperimentConfig) -> anyhow::Result<Self> {
        let trained = load_or_train(cfg, ModelRole::Evaluation)?;
        let levels = cfg.task.digit_levels();
        let task = load_digits(cfg)?;
        let pixels = |split: DigitSplit| -> Vec<Vec<f32>> {
            labeled(&task, &[split])
                .into_iter()
                .map(|l| l.pixels)
                .collect()
        };
        let heldout = features(&trained.model, &pixels(DigitSplit::Heldout));
        let train = features(&trained.model, &pixels(DigitSplit::Train));
        // `heldout` is interleaved by class: alternate rounds keep both
        // halves balanced (alternate items would split even and odd classes).
        let (a, b): (Vec<_>, Vec<_>) = heldout
            .iter()
            .cloned()
            .enumerate()
            .partition(|(i, _)| (i / CLASSES).is_multiple_of(2));
        let strip = |v: Vec<(usize, Vec<f64>)>| v.into_iter().map(|(_, f)| f).collect::<Vec<_>>();
        let floors = vec![
            (
                "frechet_heldout_halves".to_string(),
                frechet(&strip(a), &strip(b)),
            ),
            (
                "frechet_train_images".to_string(),
                frechet(&train, &heldout),
            ),
        ];
        Ok(Self {
            classifier: trained.model,
            levels,
            reference: heldout,
            floors,
        })
    }

    /// `(metric, value, n)` of a set of generated images.
    pub fn score(&self, items: &[RewardItem]) -> Vec<(String, f64, usize)> {
        let images: Vec<Vec<f32>> = items
            .iter()
            .map(|it| intensities(&it.completion_tokens, self.levels))
            .collect();
        let classes: Vec<Option<usize>> = items
            .iter()
            .map(|it| prompted_class(&it.prompt_tokens, self.levels))
            .collect();
        let refs: Vec<&[f32]> = images.iter().map(Vec::as_slice).collect();
        let predicted = predict(&self.classifier, &refs, &FlexDevice);
        let prompted: Vec<(usize, usize)> = classes
            .iter()
            .zip(&predicted)
            .filter_map(|(c, &p)| c.map(|c| (c, p)))
            .collect();
        let right = prompted.iter().filter(|(c, p)| c == p).count();
        let samples: Vec<Sample> = items
            .iter()
            .zip(&classes)
            .zip(&images)
            .filter_map(|((it, c), im)| {
                c.map(|class| Sample {
                    class,
                    tokens: &it.completion_tokens,
                    pixels: im,
                })
            })
            .collect();
        let div = diversity(&samples);
        let n = items.len();
        vec![
            (
                METRICS[0].into(),
                right as f64 / prompted.len().max(1) as f64,
                prompted.len(),
            ),
            (
                METRICS[1].into(),
                frechet(&features(&self.classifier, &images), &self.reference),
                n,
            ),
            (METRICS[2].into(), div.duplicate_rate, samples.len()),
            (METRICS[3].into(), div.mean_pairwise_distance, samples.len()),
        ]
    }
}

/// Penultimate features of `images` in float64.
fn features(model: &Classifier<Flex>, images: &[Vec<f32>]) -> Vec<Vec<f64>> {
    if images.is_empty() {
        return Vec::new();
    }
    let refs: Vec<&[f32]> = images.iter().map(Vec::as_slice).collect();
    let f = model.features(batch::<Flex>(&refs, &FlexDevice));
    let width = f.dims()[1];
    let flat = f
        .into_data()
        .convert::<f64>()
        .into_vec::<f64>()
        .unwrap_or_default();
    flat.chunks(width).map(<[f64]>::to_vec).collect()
}
