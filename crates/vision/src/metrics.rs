//! Set-level image metrics (the GenEval / FID analogues): the Frechet
//! distance between two sets of features, and the diversity of samples
//! within a class.

use std::collections::{BTreeMap, HashSet};

use nalgebra::{DMatrix, DVector, SymmetricEigen};

/// Frechet distance between Gaussians fitted to two feature sets (Heusel et
/// al. 2017, the FID formula): `|mu_a - mu_b|^2 + tr(S_a + S_b - 2 (S_a^½
/// S_b S_a^½)^½)`. The trace of the square root is taken through the
/// symmetric `S_a^½ S_b S_a^½`, whose eigenvalues are those of `S_a S_b`.
pub fn frechet(a: &[Vec<f64>], b: &[Vec<f64>]) -> f64 {
    let (mu_a, cov_a) = gaussian(a);
    let (mu_b, cov_b) = gaussian(b);
    let root_a = psd_sqrt(&cov_a);
    let middle = &root_a * &cov_b * &root_a;
    let middle = (&middle + middle.transpose()) * 0.5;
    let trace_root: f64 = SymmetricEigen::new(middle)
        .eigenvalues
        .iter()
        .map(|&l| l.max(0.0).sqrt())
        .sum();
    (mu_a - mu_b).norm_squared() + cov_a.trace() + cov_b.trace() - 2.0 * trace_root
}

/// Mean and unbiased covariance of the rows.
fn gaussian(rows: &[Vec<f64>]) -> (DVector<f64>, DMatrix<f64>) {
    let d = rows.first().map_or(0, Vec::len);
    let n = rows.len();
    let x = DMatrix::from_fn(n, d, |i, j| rows[i][j]);
    let mean = DVector::from_fn(d, |j, _| x.column(j).mean());
    let mut centred = x;
    for mut row in centred.row_iter_mut() {
        row -= mean.transpose();
    }
    let cov = centred.transpose() * &centred / (n.max(2) - 1) as f64;
    (mean, cov)
}

/// The square root of a symmetric positive semi-definite matrix (negative
/// eigenvalues from rounding are taken as 0).
fn psd_sqrt(m: &DMatrix<f64>) -> DMatrix<f64> {
    let e = SymmetricEigen::new(m.clone());
    let roots = e.eigenvalues.map(|l| l.max(0.0).sqrt());
    &e.eigenvectors * DMatrix::from_diagonal(&roots) * e.eigenvectors.transpose()
}

/// Within-class diversity of generated images.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Diversity {
    /// Share of samples equal (token for token) to an earlier sample of
    /// their class.
    pub duplicate_rate: f64,
    /// Mean Euclidean distance between two samples of a class (pixel values
    /// in [0, 1]), averaged over the classes.
    pub mean_pairwise_distance: f64,
}

/// One generated image: its prompted class, tokens and pixel values.
#[derive(Debug, Clone, Copy)]
pub struct Sample<'a> {
    pub class: usize,
    pub tokens: &'a [u32],
    pub pixels: &'a [f32],
}

/// Diversity of generated samples, class by class.
pub fn diversity(samples: &[Sample]) -> Diversity {
    let mut by_class: BTreeMap<usize, Vec<&Sample>> = BTreeMap::new();
    for s in samples {
        by_class.entry(s.class).or_default().push(s);
    }
    let mut duplicates = 0usize;
    let mut distances = Vec::new();
    for members in by_class.values() {
        let mut seen = HashSet::new();
        duplicates += members.iter().filter(|s| !seen.insert(s.tokens)).count();
        let mut sum = 0.0;
        let mut pairs = 0usize;
        for (i, a) in members.iter().enumerate() {
            for b in &members[i + 1..] {
                let d2: f64 = (a.pixels.iter().zip(b.pixels))
                    .map(|(x, y)| ((x - y) as f64).powi(2))
                    .sum();
                sum += d2.sqrt();
                pairs += 1;
            }
        }
        if pairs > 0 {
            distances.push(sum / pairs as f64);
        }
    }
    Diversity {
        duplicate_rate: duplicates as f64 / samples.len().max(1) as f64,
        mean_pairwise_distance: distances.iter().sum::<f64>() / distances.len().max(1) as f64,
    }
}

#[cfg(test)]
mod tests {
    use envs::seeding::stream;
    use rand_distr::{Distribution, Normal};

    use super::*;

    fn normal_rows(n: usize, means: &[f64], stds: &[f64], seed: u64) -> Vec<Vec<f64>> {
        let mut rng = stream(&[seed]);
        (0..n)
            .map(|_| {
                means
                    .iter()
                    .zip(stds)
                    .map(|(&m, &s)| Normal::new(m, s).unwrap().sample(&mut rng))
                    .collect()
            })
            .collect()
    }

    #[test]
    fn frechet_matches_the_closed_form_of_independent_gaussians() {
        // With independent coordinates the distance is
        // sum_j (m_a - m_b)^2 + (s_a - s_b)^2: here 1 + 0.25 + 0 + 1 = 2.25.
        let a = normal_rows(20_000, &[0.0, 1.0], &[1.0, 1.0], 1);
        let b = normal_rows(20_000, &[1.0, 1.0], &[1.5, 2.0], 2);
        let d = frechet(&a, &b);
        // Sampling error of the fitted moments at n = 20000: ~0.03.
        assert!((d - 2.25).abs() < 0.06, "{d}");
        // A set against itself is 0 up to rounding; the distance is symmetric.
        assert!(frechet(&a, &a).abs() < 1e-6);
        assert!((frechet(&b, &a) - d).abs() < 1e-6);
    }

    #[test]
    fn frechet_sees_correlation_that_marginals_miss() {
        // Same marginals, opposite correlation (rho = +-0.9): S_a S_b =
        // (1 - rho^2) I, so tr sqrt = 2 sqrt(1 - rho^2) and the distance is
        // 4 - 4 sqrt(1 - rho^2) = 2.256.
        let base = normal_rows(20_000, &[0.0, 0.0], &[1.0, 1.0], 3);
        let rho: f64 = 0.9;
        let mix = |s: f64| -> Vec<Vec<f64>> {
            base.iter()
                .map(|r| vec![r[0], s * rho * r[0] + (1.0 - rho * rho).sqrt() * r[1]])
                .collect()
        };
        let d = frechet(&mix(1.0), &mix(-1.0));
        assert!(
            (d - (4.0 - 4.0 * (1.0 - rho * rho).sqrt())).abs() < 0.05,
            "{d}"
        );
    }

    #[test]
    fn diversity_counts_duplicates_within_a_class_only() {
        let (t0, t1): (&[u32], &[u32]) = (&[0, 1], &[1, 1]);
        let (p0, p1): (&[f32], &[f32]) = (&[0.0, 1.0], &[1.0, 1.0]);
        let sample = |class, tokens, pixels| Sample {
            class,
            tokens,
            pixels,
        };
        let samples = [
            sample(0, t0, p0),
            sample(0, t0, p0),
            sample(0, t1, p1),
            sample(1, t0, p0),
        ];
        let d = diversity(&samples);
        assert_eq!(d.duplicate_rate, 0.25);
        // Class 0 pairs: 0, 1, 1 -> 2/3; class 1 has no pair.
        assert!((d.mean_pairwise_distance - 2.0 / 3.0).abs() < 1e-12);
    }
}
