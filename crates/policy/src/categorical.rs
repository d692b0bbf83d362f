//! Categorical sampling in float64.
//!
//! Zheng et al. (2024) show that Gumbel-max sampling in float32 truncates the
//! Gumbel noise (a float32 uniform never gets closer to 1 than 2^-24, so the
//! noise never exceeds about 16.6): categories far below the top become
//! unreachable and the effective temperature drops. We draw by inverse CDF
//! in float64 on the host, with 53-bit uniforms: every category with
//! probability above ~1e-16 is drawn at its rate, on every backend.

/// A categorical distribution built from one row of logits.
#[derive(Debug, Clone)]
pub struct Categorical {
    /// Unnormalised cumulative weights `sum_{j <= i} exp(z_j - max z)`.
    cumulative: Vec<f64>,
    /// `log sum exp(z - max z)`.
    log_total: f64,
    /// `z - max z`, the shifted tempered logits.
    shifted: Vec<f64>,
}

impl Categorical {
    /// `p_i ∝ exp(logits_i / temperature)`. A temperature of 0 is not a
    /// distribution: use [`argmax`] for greedy decoding.
    pub fn from_logits(logits: &[f32], temperature: f64) -> Self {
        assert!(
            temperature > 0.0,
            "temperature must be positive, got {temperature}"
        );
        assert!(!logits.is_empty(), "empty logits");
        let z: Vec<f64> = logits.iter().map(|&l| l as f64 / temperature).collect();
        let max = z.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        let shifted: Vec<f64> = z.iter().map(|v| v - max).collect();
        let mut acc = 0.0;
        let cumulative: Vec<f64> = shifted
            .iter()
            .map(|s| {
                acc += s.exp();
                acc
            })
            .collect();
        Self {
            log_total: acc.ln(),
            cumulative,
            shifted,
        }
    }

    /// The category whose CDF interval holds `u` in [0, 1).
    pub fn sample(&self, u: f64) -> usize {
        let total = *self.cumulative.last().expect("non-empty");
        let target = u * total;
        // First index whose cumulative weight exceeds the target.
        self.cumulative
            .partition_point(|&c| c <= target)
            .min(self.cumulative.len() - 1)
    }

    pub fn log_prob(&self, i: usize) -> f64 {
        self.shifted[i] - self.log_total
    }

    pub fn len(&self) -> usize {
        self.shifted.len()
    }

    pub fn is_empty(&self) -> bool {
        self.shifted.is_empty()
    }
}

/// Index of the largest logit (the first one on ties).
pub fn argmax(logits: &[f32]) -> usize {
    let mut best = 0;
    for (i, &l) in logits.iter().enumerate() {
        if l > logits[best] {
            best = i;
        }
    }
    best
}

/// `log softmax(logits)[i]` in float64.
pub fn log_softmax_at(logits: &[f32], i: usize) -> f64 {
    let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max) as f64;
    let lse = logits
        .iter()
        .map(|&l| (l as f64 - max).exp())
        .sum::<f64>()
        .ln();
    logits[i] as f64 - max - lse
}

/// A standard Gumbel draw from a 53-bit uniform `u` in [0, 1).
pub fn gumbel(u: f64) -> f64 {
    // Shift by half an ulp so that u is never 0 (whose Gumbel is -inf).
    let u = u + f64::EPSILON / 4.0;
    -(-u.ln()).ln()
}

#[cfg(test)]
mod tests {
    use super::*;
    use envs::seeding::{stream, uniform_f64};
    use rand::Rng;

    /// A category 1e-9 below the top: ln(1e-9) ≈ -20.72.
    const LOG_1E_9: f32 = -20.723_267;

    #[test]
    fn matches_softmax_and_temperature() {
        let c = Categorical::from_logits(&[0.0, 2f32.ln(), 0.0], 1.0);
        assert!((c.log_prob(1) - 0.5f64.ln()).abs() < 1e-7);
        let hot = Categorical::from_logits(&[0.0, 2f32.ln(), 0.0], 2.0);
        let p1 = 2f64.sqrt() / (2.0 + 2f64.sqrt());
        assert!((hot.log_prob(1) - p1.ln()).abs() < 1e-7);
        assert_eq!(c.sample(0.0), 0);
        assert_eq!(c.sample(0.26), 1);
        assert_eq!(c.sample(0.999_999), 2);
        assert_eq!(argmax(&[1.0, 3.0, 3.0]), 1);
        assert!((log_softmax_at(&[0.0, 0.0], 0) - 0.5f64.ln()).abs() < 1e-12);
    }

    #[test]
    fn empirical_frequencies_match_probabilities() {
        let logits = [0.3f32, -1.0, 1.2, 0.0];
        let c = Categorical::from_logits(&logits, 0.7);
        let mut rng = stream(&[11]);
        let n = 200_000;
        let mut counts = [0usize; 4];
        for _ in 0..n {
            counts[c.sample(uniform_f64(&mut rng))] += 1;
        }
        // Chi-square with 3 degrees of freedom; 16.27 is the 0.999 quantile.
        let chi2: f64 = (0..4)
            .map(|i| {
                let e = n as f64 * c.log_prob(i).exp();
                (counts[i] as f64 - e).powi(2) / e
            })
            .sum();
        assert!(chi2 < 16.27, "chi2 {chi2} counts {counts:?}");
    }

    /// Why float32 Gumbel-max is wrong: its noise is bounded. The largest
    /// float32 uniform below 1 is 1 - 2^-24 and the smallest positive one
    /// 2^-24, so the noise gap between two categories is at most
    /// g(1 - 2^-24) - g(2^-24) ≈ 16.64 + 2.81 = 19.45 < 20.72: a category of
    /// probability 1e-9 relative to the top can never win, whatever the draw.
    #[test]
    fn float32_gumbel_max_can_never_draw_a_1e_9_category() {
        let g32 = |u: f32| -(-(u.ln())).ln();
        let top_u = 1.0f32 - f32::EPSILON / 2.0; // 1 - 2^-24
        let low_u = 2f32.powi(-24);
        assert!(top_u < 1.0 && (top_u + f32::EPSILON / 2.0) == 1.0);
        let max_gap = g32(top_u) - g32(low_u);
        assert!((max_gap - 19.45).abs() < 0.05, "max gap {max_gap}");
        assert!(max_gap < -LOG_1E_9, "a 1e-9 category would be reachable");
        // Gumbel-max in float32 with the most favourable noise still picks the top.
        let noisy_rare = LOG_1E_9 + g32(top_u);
        let noisy_top = 0.0f32 + g32(low_u);
        assert!(noisy_rare < noisy_top);
        // The float64 noise reaches ~36.7 and makes the category reachable.
        assert!(gumbel(1.0 - f64::EPSILON / 2.0) > -LOG_1E_9 as f64 + 10.0);
    }

    /// Float64 draws 1e-9 categories at their rate; the same inverse-CDF
    /// sampler in float32 never does (1 + 1e-9 == 1 in float32).
    ///
    /// One top category and a million categories of probability 1e-9 each:
    /// 0.1% of the mass is rare. In 200,000 draws we expect 199.8 rare draws
    /// (Poisson sd 14.1); we accept within 5 sd. Float32 gets exactly 0.
    #[test]
    fn float64_draws_1e_9_categories_at_their_rate() {
        let m = 1_000_000;
        let mut logits = vec![LOG_1E_9; m + 1];
        logits[0] = 0.0;
        let p_rare = m as f64 * 1e-9 / (1.0 + m as f64 * 1e-9);
        let n = 200_000;
        let expected = n as f64 * p_rare;

        let c = Categorical::from_logits(&logits, 1.0);
        let mut rng = stream(&[2024]);
        let mut rare = 0usize;
        let mut distinct = std::collections::HashSet::new();
        for _ in 0..n {
            let i = c.sample(uniform_f64(&mut rng));
            if i != 0 {
                rare += 1;
                distinct.insert(i);
            }
        }
        let sd = expected.sqrt();
        assert!(
            (rare as f64 - expected).abs() < 5.0 * sd,
            "rare draws {rare}, expected {expected:.1}"
        );
        // The rare draws spread over many distinct categories, each at ~1e-9.
        assert!(distinct.len() > rare * 9 / 10);

        // The same sampler with float32 arithmetic and a float32 uniform.
        let mut cum = Vec::with_capacity(m + 1);
        let mut acc = 0.0f32;
        for &l in &logits {
            acc += l.exp();
            cum.push(acc);
        }
        let mut rare32 = 0usize;
        for _ in 0..n {
            let u = (rng.random::<u32>() >> 8) as f32 * 2f32.powi(-24);
            let i = cum.partition_point(|&c| c <= u * acc).min(m);
            rare32 += usize::from(i != 0);
        }
        assert_eq!(rare32, 0, "float32 should never reach a 1e-9 category");
    }
}
