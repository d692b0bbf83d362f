//! The diagonal Gaussian of the schedule components, on the host (sampling,
//! float64) and on tensors (log-probabilities for the loss).

use burn::prelude::*;

/// `0.5 * ln(2 pi)`.
const HALF_LN_2PI: f64 = 0.918_938_533_204_672_7;

/// `log N(u; mean, exp(log_std)^2)` in float64.
pub fn log_prob(u: f64, mean: f64, log_std: f64) -> f64 {
    let z = (u - mean) / log_std.exp();
    -0.5 * z * z - log_std - HALF_LN_2PI
}

/// Differential entropy of `N(., exp(log_std)^2)`.
pub fn entropy(log_std: f64) -> f64 {
    log_std + 0.5 + HALF_LN_2PI
}

/// Elementwise `log N(u; mean, exp(log_std)^2)` on tensors.
pub fn log_prob_tensor<B: Backend, const D: usize>(
    u: Tensor<B, D>,
    mean: Tensor<B, D>,
    log_std: Tensor<B, D>,
) -> Tensor<B, D> {
    let z = (u - mean) / log_std.clone().exp();
    z.powi_scalar(2) * (-0.5) - log_std - HALF_LN_2PI
}

/// Elementwise entropy on tensors.
pub fn entropy_tensor<B: Backend, const D: usize>(log_std: Tensor<B, D>) -> Tensor<B, D> {
    log_std + (0.5 + HALF_LN_2PI)
}

/// Elementwise `KL(N(m1, s1^2) || N(m2, s2^2))` (closed form).
pub fn kl_tensor<B: Backend, const D: usize>(
    m1: Tensor<B, D>,
    log_s1: Tensor<B, D>,
    m2: Tensor<B, D>,
    log_s2: Tensor<B, D>,
) -> Tensor<B, D> {
    // ln(s2/s1) + (s1^2 + (m1 - m2)^2) / (2 s2^2) - 1/2
    let var1 = (log_s1.clone() * 2.0).exp();
    let var2 = (log_s2.clone() * 2.0).exp();
    log_s2 - log_s1 + (var1 + (m1 - m2).powi_scalar(2)) / (var2 * 2.0) - 0.5
}

/// A standard normal draw from two 53-bit uniforms (Box-Muller).
pub fn standard_normal(u1: f64, u2: f64) -> f64 {
    let u1 = u1 + f64::EPSILON / 4.0;
    (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
}
