//! A trained classifier as a reward: the probability it gives the prompted
//! class (`digit_classifier`, the text-to-image analogue: "does the image
//! show the prompt"), or a fixed class (`digit_realism`: "real").

use std::sync::{Arc, Mutex};

use burn::backend::Flex;
use burn::backend::flex::FlexDevice;
use burn::tensor::activation::softmax;
use envs::digits::{intensities, prompted_class};
use rewards::{BatchScores, BoxFuture, FailureKind, Reward, RewardFailure, RewardItem};

use crate::net::{Classifier, batch};

/// Which class's probability is the reward.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    /// The class the item's prompt names.
    Prompted,
    Fixed(usize),
}

#[derive(Clone)]
pub struct ClassifierReward {
    name: String,
    model: Arc<Mutex<Classifier<Flex>>>,
    levels: usize,
    target: Target,
}

impl ClassifierReward {
    pub fn new(name: &str, model: Classifier<Flex>, levels: usize, target: Target) -> Self {
        Self::shared(name, Arc::new(Mutex::new(model)), levels, target)
    }

    /// A reward over weights another owner updates (the adversarial
    /// discriminator: [`crate::adversarial`]).
    pub fn shared(
        name: &str,
        model: Arc<Mutex<Classifier<Flex>>>,
        levels: usize,
        target: Target,
    ) -> Self {
        Self {
            name: name.into(),
            model,
            levels,
            target,
        }
    }

    /// `p(target class | image)` per item; `None` where the target is the
    /// prompted class and the prompt is not one (a masked prompt).
    pub fn probabilities(&self, items: &[RewardItem]) -> Result<Vec<Option<f32>>, RewardFailure> {
        let classes: Vec<Option<usize>> = items
            .iter()
            .map(|it| match self.target {
                Target::Fixed(c) => Some(c),
                Target::Prompted => prompted_class(&it.prompt_tokens, self.levels),
            })
            .collect();
        let images: Vec<Vec<f32>> = items
            .iter()
            .map(|it| intensities(&it.completion_tokens, self.levels))
            .collect();
        if images.is_empty() {
            return Ok(Vec::new());
        }
        let refs: Vec<&[f32]> = images.iter().map(Vec::as_slice).collect();
        let model = self.model.lock().map_err(|_| {
            RewardFailure::new(FailureKind::Crash, "the classifier's lock is poisoned")
        })?;
        let n_classes = model.classes();
        let probs = softmax(model.logits(batch::<Flex>(&refs, &FlexDevice)), 1)
            .into_data()
            .convert::<f32>()
            .into_vec::<f32>()
            .map_err(|e| RewardFailure::new(FailureKind::Crash, format!("{e:?}")))?;
        Ok(classes
            .iter()
            .enumerate()
            .map(|(i, c)| {
                c.filter(|&c| c < n_classes)
                    .map(|c| probs[i * n_classes + c])
            })
            .collect())
    }
}

impl Reward for ClassifierReward {
    fn name(&self) -> &str {
        &self.name
    }

    fn score<'a>(
        &'a self,
        batch: &'a [RewardItem],
    ) -> BoxFuture<'a, Result<BatchScores, RewardFailure>> {
        Box::pin(async move { Ok(BatchScores::new(self.probabilities(batch)?)) })
    }
}
