//! The generation MDP's trajectory record.
//!
//! Generation is an MDP: the state `s_t` is the canvas (prompt, revealed
//! tokens, masks) at step `t` of `T`; the action `a_t = (A_t, V_t)` is a
//! schedule action `A_t` (how many positions, which ones, at what sampling
//! temperature and guidance) followed by the tokens `V_t` at the positions
//! it reveals; the transition writes those tokens and is deterministic; the
//! episode ends after `T` steps, the last one revealing every position left.
//!
//! A [`StepRecord`] keeps what is needed to recompute both factors of
//! `pi(a_t | s_t) = pi_phi(A_t | s_t) * prod_i p_theta(V_t^i | s_t, A_t)`
//! later, exactly: the canvas before the step, the positions and tokens, the
//! raw (unconstrained) schedule sample, the features the schedule policy
//! read, and both log-probabilities at sampling time. The record is plain
//! numbers: this crate never sees the network.

use serde::{Deserialize, Serialize};

/// One step of one trajectory.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StepRecord {
    /// `t`, 0-based.
    pub step: usize,
    /// `T`, the episode's step count.
    pub total_steps: usize,
    /// The row's tokens before the step (`s_t`).
    pub canvas: Vec<u32>,
    /// Prompt positions at the start of the row.
    pub prompt_len: usize,
    /// Revealed positions in the order they were chosen (the Plackett-Luce
    /// order for a learned position policy).
    pub revealed: Vec<usize>,
    /// The token written at each revealed position.
    pub tokens: Vec<u32>,
    /// `log p_theta(V^i | s_t, A_t)` at sampling, per revealed token, under
    /// the step's temperature and guidance (0 for greedy decoding).
    pub token_log_probs: Vec<f64>,
    /// Sampling temperature `tau_s` and guidance scale `w` the step used.
    pub temperature: f64,
    pub guidance: f64,
    /// The unconstrained Gaussian sample `u` of each schedule component (in
    /// the policy's component order); meaningful where `acted` is true.
    pub schedule_raw: Vec<f64>,
    /// Whether the component was decided by the policy at this step (the
    /// reveal ratio of the last step is not: it reveals everything left).
    pub acted: Vec<bool>,
    /// The reference (fixed) schedule's unconstrained values at this state:
    /// learned schedules are residuals on top of it.
    pub reference_raw: Vec<f64>,
    /// `log pi_phi(A_t | s_t)` at sampling (0 for a fixed schedule).
    pub schedule_log_prob: f64,
    /// State features the schedule policy read (t/T, masked share, model
    /// confidence and entropy), recorded because they depend on the model.
    pub state_features: Vec<f32>,
    /// Masked positions at the step (the position policy's choice set) and
    /// their features, row-major `[candidates, features]`.
    pub candidates: Vec<usize>,
    pub candidate_features: Vec<f32>,
}

impl StepRecord {
    /// A step of a fixed schedule at temperature 1 without guidance: only
    /// the token factor is recorded (no schedule sample, its log-probability
    /// 0), as a fixed-schedule rollout records it.
    pub fn token_step(
        (step, total_steps): (usize, usize),
        canvas: Vec<u32>,
        prompt_len: usize,
        revealed: Vec<usize>,
        tokens: Vec<u32>,
        token_log_probs: Vec<f64>,
    ) -> Self {
        Self {
            step,
            total_steps,
            canvas,
            prompt_len,
            revealed,
            tokens,
            token_log_probs,
            temperature: 1.0,
            guidance: 0.0,
            schedule_raw: Vec::new(),
            acted: Vec::new(),
            reference_raw: Vec::new(),
            schedule_log_prob: 0.0,
            state_features: Vec::new(),
            candidates: Vec::new(),
            candidate_features: Vec::new(),
        }
    }
}

/// One generation of one canvas row.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Trajectory {
    /// The canvas row's key (all its random draws derive from it).
    pub key: u64,
    pub prompt_len: usize,
    pub steps: Vec<StepRecord>,
    /// The finished row.
    pub final_tokens: Vec<u32>,
}

impl Trajectory {
    /// Tokens revealed over the whole episode.
    pub fn revealed_tokens(&self) -> usize {
        self.steps.iter().map(|s| s.revealed.len()).sum()
    }

    /// The generated answer (tokens after the prompt).
    pub fn answer(&self) -> &[u32] {
        &self.final_tokens[self.prompt_len..]
    }
}
