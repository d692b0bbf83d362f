//! Learned schedule policies `pi_phi(A_t | s_t)`.
//!
//! The Gaussian part decides the continuous schedule components (reveal
//! ratio, temperatures, guidance), each a residual on top of a fixed
//! reference schedule so that a fresh policy reproduces it in the mean:
//! - `per_step`: a learnable mean offset and log-std per step and component;
//! - `network`: a small MLP from state features to the offset and log-std,
//!   which works for any number of steps.
//!
//! The optional `order` part replaces the position-selection rule with a
//! learned Plackett-Luce policy ([`order`]). `fixed` has no parameters.
//! Every part has an exact `log_prob` on recorded actions and an entropy.

pub mod components;
pub mod features;
pub mod gaussian;
pub mod order;

use burn::module::Param;
use burn::nn::Linear;
use burn::prelude::*;
use envs::{Problems, StepRecord, Validate};
use mdm::init::ParamFactory;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

pub use components::Component;
use features::{CANDIDATE_FEATURES, STATE_FEATURES};

/// Parameter ids of schedule policies start here (the denoiser's start at 2^40).
pub const PARAM_ID_BASE: u64 = 1 << 41;
/// Log-std bounds of the Gaussian, so that it can neither collapse nor explode.
const LOG_STD_MIN: f64 = -5.0;
const LOG_STD_MAX: f64 = 2.0;
/// Score added to padded or taken candidates (exp underflows to exactly 0).
const NEG: f32 = -1.0e9;

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum HeadKind {
    /// No learned continuous components: the reference schedule.
    #[default]
    Fixed,
    /// A Gaussian per step and learned component, a residual on the
    /// reference (a fresh policy reproduces it in the mean).
    PerStep,
    /// An MLP from state features (t/T, masked share, confidence, entropy)
    /// to the Gaussian: works for any T.
    Network,
}

/// `[cogrpo.schedule]`: which schedule components are learned, and how.
/// Every key is optional.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct SchedulePolicyConfig {
    /// The Gaussian head of the continuous components.
    pub kind: HeadKind,
    /// Components the Gaussian head decides (the rest follow the reference).
    pub learn: Vec<Component>,
    /// Learn which positions to reveal (Plackett-Luce over masked positions).
    pub order: bool,
    /// Standard deviation of each component's Gaussian at the start, in the
    /// unconstrained space.
    pub init_std: f64,
    /// Hidden width of the network and order MLPs.
    pub hidden: usize,
    /// The order policy starts as confidence selection with Gumbel noise at
    /// this re-mask temperature (scores `log p / t`); 0 starts it uniform.
    pub order_temperature: f64,
    /// Seed of the policy's initial weights.
    pub seed: u64,
}

impl Default for SchedulePolicyConfig {
    fn default() -> Self {
        Self {
            kind: HeadKind::Fixed,
            learn: Vec::new(),
            order: false,
            init_std: 0.5,
            hidden: 32,
            order_temperature: 0.1,
            seed: 0,
        }
    }
}

impl Validate for SchedulePolicyConfig {
    fn check(&self, p: &mut Problems) {
        match (self.kind, self.learn.is_empty()) {
            (HeadKind::Fixed, false) => p.bad(
                "learn",
                "a fixed schedule learns nothing: set kind = \"per_step\" or \"network\"",
            ),
            (HeadKind::PerStep | HeadKind::Network, true) => p.bad(
                "learn",
                "name the components to learn, e.g. [\"ratio\", \"temperature\"]",
            ),
            _ => {}
        }
        p.positive("init_std", self.init_std);
        p.at_least_one("hidden", self.hidden);
        p.non_negative("order_temperature", self.order_temperature);
    }
}

impl SchedulePolicyConfig {
    /// Whether the policy has parameters at all.
    pub fn is_learned(&self) -> bool {
        self.kind != HeadKind::Fixed || self.order
    }

    /// The learned components in action order, without duplicates.
    pub fn components(&self) -> Vec<Component> {
        components::ALL
            .into_iter()
            .filter(|c| self.kind != HeadKind::Fixed && self.learn.contains(c))
            .collect()
    }

    /// A fresh policy for episodes of `steps` steps over `answer_len`
    /// positions, acting over `reference`: its order policy starts as
    /// confidence selection over a `confidence` reference (else uniform, as
    /// first-hitting's random order), and its network reads the block
    /// features of a block-wise one.
    pub fn init<B: Backend>(
        &self,
        steps: usize,
        answer_len: usize,
        reference: &crate::schedule::SamplerConfig,
        device: &B::Device,
    ) -> SchedulePolicy<B> {
        let confidence_start = reference.kind == crate::schedule::SamplerKind::Confidence;
        let width = features::state_feature_count(reference.block_length > 0);
        let c = self.components().len();
        let h = self.hidden;
        let log_std = self.init_std.ln() as f32;
        let mut f = ParamFactory::<B>::new(self.seed, PARAM_ID_BASE, device);
        let linear = |f: &mut ParamFactory<B>, d_in: usize, d_out: usize, zero: bool| Linear {
            weight: if zero {
                f.zeros([d_in, d_out])
            } else {
                f.normal([d_in, d_out], 1.0 / (d_in as f64).sqrt())
            },
            bias: Some(f.zeros([d_out])),
        };
        let per_step = (self.kind == HeadKind::PerStep).then(|| PerStepHead {
            offset: f.zeros([steps.max(1), c]),
            log_std: f.values(vec![log_std; steps.max(1) * c], [steps.max(1), c]),
        });
        let network = (self.kind == HeadKind::Network).then(|| NetworkHead {
            hidden: linear(&mut f, width, h, false),
            // Zero output layer: the fresh policy is the reference schedule.
            out: linear(&mut f, h, 2 * c, true),
            log_std: f.values(vec![log_std; c], [c]),
        });
        let order = self.order.then(|| {
            let scale = if confidence_start && self.order_temperature > 0.0 {
                1.0 / self.order_temperature
            } else {
                0.0
            };
            OrderHead {
                hidden: linear(&mut f, CANDIDATE_FEATURES, h, false),
                out: linear(&mut f, h, 1, true),
                confidence_scale: f.values(vec![scale as f32], [1]),
                position_bias: f.zeros([answer_len.max(1)]),
            }
        });
        SchedulePolicy {
            per_step,
            network,
            order,
            components: self.components(),
            steps: steps.max(1),
        }
    }
}

#[derive(Module, Debug)]
pub struct PerStepHead<B: Backend> {
    /// Mean offset from the reference, `[T, C]`.
    offset: Param<Tensor<B, 2>>,
    log_std: Param<Tensor<B, 2>>,
}

#[derive(Module, Debug)]
pub struct NetworkHead<B: Backend> {
    hidden: Linear<B>,
    out: Linear<B>,
    /// Log-std at a zero output, `[C]`.
    log_std: Param<Tensor<B, 1>>,
}

#[derive(Module, Debug)]
pub struct OrderHead<B: Backend> {
    hidden: Linear<B>,
    out: Linear<B>,
    /// Weight of the log-confidence feature (1 / re-mask temperature).
    confidence_scale: Param<Tensor<B, 1>>,
    /// A learned preference per answer position.
    position_bias: Param<Tensor<B, 1>>,
}

/// The schedule policy phi: any of the heads, or none (fixed).
#[derive(Module, Debug)]
pub struct SchedulePolicy<B: Backend> {
    per_step: Option<PerStepHead<B>>,
    network: Option<NetworkHead<B>>,
    order: Option<OrderHead<B>>,
    #[module(skip)]
    components: Vec<Component>,
    /// The per-step table's length.
    #[module(skip)]
    steps: usize,
}

/// Schedule-side inputs of N states as tensors (see [`ScheduleBatch::new`]).
pub struct ScheduleBatch<B: Backend> {
    pub n: usize,
    /// Row of the per-step table each state reads.
    step_index: Tensor<B, 1, Int>,
    features: Tensor<B, 2>,
    reference: Tensor<B, 2>,
    raw: Tensor<B, 2>,
    acted: Tensor<B, 2>,
    order: Option<OrderBatch<B>>,
}

struct OrderBatch<B: Backend> {
    features: Tensor<B, 2>,
    position: Tensor<B, 1, Int>,
    /// `[N, M]` index into the flat candidate list (padding points at 0).
    pad_index: Tensor<B, 2, Int>,
    pad_mask: Tensor<B, 2>,
    free: Tensor<B, 3>,
    picks: Tensor<B, 2, Int>,
    valid: Tensor<B, 2>,
}

impl<B: Backend> SchedulePolicy<B> {
    pub fn components(&self) -> &[Component] {
        &self.components
    }

    pub fn has_gaussian(&self) -> bool {
        self.per_step.is_some() || self.network.is_some()
    }

    pub fn has_order(&self) -> bool {
        self.order.is_some()
    }

    /// Rows of the per-step table (records are mapped onto it by progress).
    pub fn table_steps(&self) -> usize {
        self.steps
    }

    /// Mean and log-std `[N, C]` of the Gaussian head at the batch's states.
    pub fn gaussian(&self, b: &ScheduleBatch<B>) -> Option<(Tensor<B, 2>, Tensor<B, 2>)> {
        let (offset, log_std) = if let Some(h) = &self.per_step {
            (
                h.offset.val().select(0, b.step_index.clone()),
                h.log_std.val().select(0, b.step_index.clone()),
            )
        } else if let Some(h) = &self.network {
            let c = self.components.len();
            let z = h.out.forward(h.hidden.forward(b.features.clone()).tanh());
            let offset = z.clone().narrow(1, 0, c);
            let log_std = z.narrow(1, c, c) + h.log_std.val().reshape([1, c]);
            (offset, log_std)
        } else {
            return None;
        };
        Some((
            b.reference.clone() + offset,
            log_std.clamp(LOG_STD_MIN, LOG_STD_MAX),
        ))
    }

    /// Plackett-Luce scores of candidates with `features [M, P]` at answer
    /// positions `position [M]`.
    pub fn order_scores(
        &self,
        features: Tensor<B, 2>,
        position: Tensor<B, 1, Int>,
    ) -> Tensor<B, 1> {
        let h = self.order.as_ref().expect("an order head");
        let [m, _] = features.dims();
        let conf = features.clone().narrow(1, 0, 1).reshape([m]);
        let mlp = h
            .out
            .forward(h.hidden.forward(features).tanh())
            .reshape([m]);
        conf * h.confidence_scale.val() + mlp + h.position_bias.val().select(0, position)
    }

    /// `log pi_phi(A | s)` of the recorded actions and the policy's entropy
    /// (Gaussian exact; Plackett-Luce estimated along the recorded picks), `[N]`.
    pub fn log_prob(&self, b: &ScheduleBatch<B>) -> (Tensor<B, 1>, Tensor<B, 1>) {
        let device = b.raw.device();
        let mut logp = Tensor::<B, 1>::zeros([b.n], &device);
        let mut entropy = Tensor::<B, 1>::zeros([b.n], &device);
        if let Some((mean, log_std)) = self.gaussian(b) {
            let lp = gaussian::log_prob_tensor(b.raw.clone(), mean, log_std.clone());
            logp = logp + (lp * b.acted.clone()).sum_dim(1).reshape([b.n]);
            let h = gaussian::entropy_tensor(log_std) * b.acted.clone();
            entropy = entropy + h.sum_dim(1).reshape([b.n]);
        }
        if let Some(o) = &b.order {
            let (lp, h) = self.order_log_prob(o);
            logp = logp + lp;
            entropy = entropy + h;
        }
        (logp, entropy)
    }

    fn order_log_prob(&self, o: &OrderBatch<B>) -> (Tensor<B, 1>, Tensor<B, 1>) {
        let scores = self.order_scores(o.features.clone(), o.position.clone());
        let [n, m] = o.pad_index.dims();
        let padded = scores
            .select(0, o.pad_index.clone().reshape([n * m]))
            .reshape([n, m])
            + o.pad_mask.clone();
        order::log_prob_tensor(padded, o.free.clone(), o.picks.clone(), o.valid.clone())
    }

    /// `KL(pi_phi || pi_ref)` per state `[N]`: closed form for the Gaussian
    /// head, the k3 estimator (Schulman) on the recorded picks for the order head.
    pub fn kl_to(&self, reference: &SchedulePolicy<B>, b: &ScheduleBatch<B>) -> Tensor<B, 1> {
        let device = b.raw.device();
        let mut kl = Tensor::<B, 1>::zeros([b.n], &device);
        if let (Some((m1, s1)), Some((m2, s2))) = (self.gaussian(b), reference.gaussian(b)) {
            let k = gaussian::kl_tensor(m1, s1, m2.detach(), s2.detach()) * b.acted.clone();
            kl = kl + k.sum_dim(1).reshape([b.n]);
        }
        if let (Some(o), true) = (&b.order, reference.has_order()) {
            let (new, _) = self.order_log_prob(o);
            let (old, _) = reference.order_log_prob(o);
            kl = kl + k3(old.detach() - new);
        }
        kl
    }
}

/// Schulman's k3 estimator of `KL(p || q)` from `log q - log p` at samples of p:
/// `exp(d) - d - 1` (unbiased, non-negative).
pub fn k3<B: Backend>(log_ratio: Tensor<B, 1>) -> Tensor<B, 1> {
    log_ratio.clone().exp() - log_ratio - 1.0
}

impl<B: Backend> ScheduleBatch<B> {
    /// The schedule-side tensors of `records` for a policy with `components`,
    /// whose per-step table has `table_steps` rows. A record of an episode
    /// with another step count reads the row at the same progress `t/T`.
    pub fn new(
        records: &[&StepRecord],
        c: usize,
        table_steps: usize,
        with_order: bool,
        device: &B::Device,
    ) -> Self {
        let n = records.len();
        let step_index: Vec<i32> = records
            .iter()
            .map(|r| table_row(r.step, r.total_steps, table_steps) as i32)
            .collect();
        let features: Vec<f32> = records
            .iter()
            .flat_map(|r| r.state_features.iter().copied())
            .collect();
        // 6 features, or 8 with a block-wise schedule's.
        let width = match n {
            0 => STATE_FEATURES,
            n => features.len() / n,
        };
        let take = |f: &dyn Fn(&StepRecord) -> Vec<f32>| -> Tensor<B, 2> {
            let v: Vec<f32> = records.iter().flat_map(|r| f(r)).collect();
            Tensor::from_data(TensorData::new(v, [n, c]), device)
        };
        let raw = take(&|r| pad(r.schedule_raw.iter().map(|&x| x as f32), c));
        let reference = take(&|r| pad(r.reference_raw.iter().map(|&x| x as f32), c));
        let acted = take(&|r| pad(r.acted.iter().map(|&a| if a { 1.0 } else { 0.0 }), c));
        Self {
            n,
            step_index: Tensor::from_data(TensorData::new(step_index, [n]), device),
            features: Tensor::from_data(TensorData::new(features, [n, width]), device),
            reference,
            raw,
            acted,
            order: with_order.then(|| OrderBatch::new(records, device)),
        }
    }
}

fn pad(values: impl Iterator<Item = f32>, c: usize) -> Vec<f32> {
    let mut v: Vec<f32> = values.take(c).collect();
    v.resize(c, 0.0);
    v
}

/// The per-step table row for step `t` of a `total`-step episode.
pub fn table_row(t: usize, total: usize, table_steps: usize) -> usize {
    (t * table_steps / total.max(1)).min(table_steps.saturating_sub(1))
}

impl<B: Backend> OrderBatch<B> {
    fn new(records: &[&StepRecord], device: &B::Device) -> Self {
        let n = records.len();
        let m = records
            .iter()
            .map(|r| r.candidates.len())
            .max()
            .unwrap_or(0)
            .max(1);
        let k = records
            .iter()
            .map(|r| r.revealed.len())
            .max()
            .unwrap_or(0)
            .max(1);
        let mut features = Vec::new();
        let mut position = Vec::new();
        let mut pad_index = vec![0i32; n * m];
        let mut pad_mask = vec![NEG; n * m];
        let mut free = vec![0f32; n * k * m];
        let mut picks = vec![0i32; n * k];
        let mut valid = vec![0f32; n * k];
        let mut offset = 0usize;
        for (i, r) in records.iter().enumerate() {
            features.extend_from_slice(&r.candidate_features);
            for (j, &p) in r.candidates.iter().enumerate() {
                position.push((p - r.prompt_len) as i32);
                pad_index[i * m + j] = (offset + j) as i32;
                pad_mask[i * m + j] = 0.0;
            }
            let column = |pos: usize| {
                r.candidates
                    .iter()
                    .position(|&c| c == pos)
                    .expect("revealed positions are candidates")
            };
            let cols: Vec<usize> = r.revealed.iter().map(|&p| column(p)).collect();
            for j in 0..k {
                let row = &mut free[(i * k + j) * m..(i * k + j + 1) * m];
                for &taken in &cols[..j.min(cols.len())] {
                    row[taken] = NEG;
                }
                if j < cols.len() {
                    picks[i * k + j] = cols[j] as i32;
                    valid[i * k + j] = 1.0;
                }
            }
            offset += r.candidates.len();
        }
        let total = offset.max(1);
        if features.is_empty() {
            features = vec![0.0; CANDIDATE_FEATURES];
            position = vec![0];
        }
        Self {
            features: Tensor::from_data(
                TensorData::new(features, [total, CANDIDATE_FEATURES]),
                device,
            ),
            position: Tensor::from_data(TensorData::new(position, [total]), device),
            pad_index: Tensor::from_data(TensorData::new(pad_index, [n, m]), device),
            pad_mask: Tensor::from_data(TensorData::new(pad_mask, [n, m]), device),
            free: Tensor::from_data(TensorData::new(free, [n, k, m]), device),
            picks: Tensor::from_data(TensorData::new(picks, [n, k]), device),
            valid: Tensor::from_data(TensorData::new(valid, [n, k]), device),
        }
    }
}
