//! RMSNorm (Zhang & Sennrich 2019; SMDM's `norm_1`, `norm_2`, `ln_f`):
//! `y = x / sqrt(mean(x^2) + eps) * gamma` over each row of width `d`, one
//! pass forward and one backward.

use super::{RowKernel, dot, par_rows};

/// `1 / sqrt(mean(x^2) + eps)` of one row.
#[inline(always)]
fn inv_rms(x: &[f32], eps: f32) -> f32 {
    1.0 / (dot(x, x) / x.len() as f32 + eps).sqrt()
}

struct Forward<'a> {
    x: &'a [f32],
    gamma: &'a [f32],
    eps: f32,
}

impl RowKernel for Forward<'_> {
    #[inline(always)]
    fn rows(&self, first_row: usize, out: &mut [f32]) {
        let d = self.gamma.len();
        for (i, y) in out.chunks_exact_mut(d).enumerate() {
            let x = &self.x[(first_row + i) * d..][..d];
            let r = inv_rms(x, self.eps);
            for ((y, &x), &g) in y.iter_mut().zip(x).zip(self.gamma) {
                *y = x * r * g;
            }
        }
    }
}

/// `out = rms_norm(x) * gamma` for `x` of rows `gamma.len()` wide.
pub fn forward(x: &[f32], gamma: &[f32], eps: f32, out: &mut [f32]) {
    assert_eq!(x.len(), out.len());
    par_rows(out, gamma.len(), &Forward { x, gamma, eps });
}

/// Each row's `r = 1 / sqrt(mean(x^2) + eps)` (one output per row).
struct InvRms<'a> {
    x: &'a [f32],
    d: usize,
    eps: f32,
}

impl RowKernel for InvRms<'_> {
    #[inline(always)]
    fn rows(&self, first_row: usize, out: &mut [f32]) {
        for (i, r) in out.iter_mut().enumerate() {
            *r = inv_rms(&self.x[(first_row + i) * self.d..][..self.d], self.eps);
        }
    }
}

struct InputGrad<'a> {
    x: &'a [f32],
    gamma: &'a [f32],
    dy: &'a [f32],
    r: &'a [f32],
}

impl RowKernel for InputGrad<'_> {
    #[inline(always)]
    fn rows(&self, first_row: usize, dx: &mut [f32]) {
        let d = self.gamma.len();
        let mut gdy = vec![0.0f32; d];
        for (i, dx) in dx.chunks_exact_mut(d).enumerate() {
            let row = first_row + i;
            let (x, dy, r) = (
                &self.x[row * d..][..d],
                &self.dy[row * d..][..d],
                self.r[row],
            );
            for ((t, &dy), &g) in gdy.iter_mut().zip(dy).zip(self.gamma) {
                *t = dy * g;
            }
            let c = dot(&gdy, x) * r * r * r / d as f32;
            for ((dx, &t), &x) in dx.iter_mut().zip(&gdy).zip(x) {
                *dx = r * t - c * x;
            }
        }
    }
}

/// `dgamma` as one output row: the sum over rows of `dy * x * r`.
struct GammaGrad<'a> {
    x: &'a [f32],
    dy: &'a [f32],
    r: &'a [f32],
}

impl RowKernel for GammaGrad<'_> {
    #[inline(always)]
    fn rows(&self, _: usize, dgamma: &mut [f32]) {
        let d = dgamma.len();
        dgamma.fill(0.0);
        for ((x, dy), &r) in self
            .x
            .chunks_exact(d)
            .zip(self.dy.chunks_exact(d))
            .zip(self.r)
        {
            for ((dg, &x), &dy) in dgamma.iter_mut().zip(x).zip(dy) {
                *dg += dy * x * r;
            }
        }
    }
}

/// Gradients of [`forward`] for the upstream gradient `dy`. With
/// `r = (mean(x^2) + eps)^(-1/2)`:
/// `dx_j = r g_j dy_j - x_j r^3 / d * sum_k dy_k g_k x_k`,
/// `dgamma_j = sum over rows of dy_j x_j r`.
pub fn backward(
    x: &[f32],
    gamma: &[f32],
    eps: f32,
    dy: &[f32],
    dx: &mut [f32],
    dgamma: &mut [f32],
) {
    let d = gamma.len();
    assert!(x.len() == dy.len() && x.len() == dx.len() && dgamma.len() == d);
    let mut r = vec![0.0f32; x.len() / d];
    par_rows(&mut r, 1, &InvRms { x, d, eps });
    par_rows(
        dx,
        d,
        &InputGrad {
            x,
            gamma,
            dy,
            r: &r,
        },
    );
    // One output row: one task (the sum over rows does not split).
    par_rows(dgamma, d, &GammaGrad { x, dy, r: &r });
}

#[cfg(test)]
mod tests {
    use super::super::testing::{random, rel_err};
    use super::*;

    /// Straight from the definition, in float64.
    fn reference(x: &[f32], g: &[f32], eps: f64) -> Vec<f64> {
        x.chunks(g.len())
            .flat_map(|row| {
                let ms = row.iter().map(|&v| v as f64 * v as f64).sum::<f64>() / g.len() as f64;
                let r = 1.0 / (ms + eps).sqrt();
                row.iter()
                    .zip(g)
                    .map(move |(&v, &g)| v as f64 * r * g as f64)
            })
            .collect()
    }

    #[test]
    fn forward_and_backward_match_the_definition_and_finite_differences() {
        // 37 is odd on purpose: rows are not a multiple of the 16 lanes.
        let (n, d, eps) = (5, 37, 1e-5);
        let (x, g, w) = (random(n * d, 1), random(d, 2), random(n * d, 3));
        let mut y = vec![0.0; n * d];
        forward(&x, &g, eps as f32, &mut y);
        let want: Vec<f32> = reference(&x, &g, eps).iter().map(|&v| v as f32).collect();
        assert!(rel_err(&y, &want) < 1e-6);

        // Loss = sum(w * y): dy = w; central differences in float64.
        let loss = |x: &[f32], g: &[f32]| -> f64 {
            reference(x, g, eps)
                .iter()
                .zip(&w)
                .map(|(y, &w)| y * w as f64)
                .sum()
        };
        let (mut dx, mut dg) = (vec![0.0; n * d], vec![0.0; d]);
        backward(&x, &g, eps as f32, &w, &mut dx, &mut dg);
        let h = 1e-3f32;
        let fd = |v: &[f32], i: usize, at: &dyn Fn(&[f32]) -> f64| {
            let (mut p, mut m) = (v.to_vec(), v.to_vec());
            p[i] += h;
            m[i] -= h;
            ((at(&p) - at(&m)) / (2.0 * h as f64)) as f32
        };
        let num_dx: Vec<f32> = (0..n * d).map(|i| fd(&x, i, &|x| loss(x, &g))).collect();
        let num_dg: Vec<f32> = (0..d).map(|i| fd(&g, i, &|g| loss(&x, g))).collect();
        assert!(rel_err(&dx, &num_dx) < 1e-3, "dx {}", rel_err(&dx, &num_dx));
        assert!(
            rel_err(&dg, &num_dg) < 1e-3,
            "dgamma {}",
            rel_err(&dg, &num_dg)
        );
    }
}
