//! Rotary position embedding, rotate-half form (Su et al. 2021; SMDM /
//! lit-gpt / LLaMA), applied in place on the projected `q` or `k`.
//!
//! For each head and `i < head_dim / 2`, with `(a, b) = (x_i, x_{i+half})`:
//! `(a, b) <- scale * (a cos - b sin, b cos + a sin)` at angle
//! `pos * base^(-2i / head_dim)`. The map is a rotation times `scale`, so
//! its backward is the same kernel at the opposite angle (`inverse`).

use super::{RowKernel, par_rows};

/// Where the rows sit and which way to turn.
#[derive(Debug, Clone, Copy)]
pub struct At {
    /// Rows are `batch * len`; row `r` is at position `start + r % len`.
    pub len: usize,
    pub start: usize,
    pub head_dim: usize,
    pub scale: f32,
    /// Rotate by minus the angle: the transpose, for the backward pass.
    pub inverse: bool,
}

struct Rotate<'a> {
    width: usize,
    cos: &'a [f32],
    sin: &'a [f32],
    table_width: usize,
    at: At,
}

impl RowKernel for Rotate<'_> {
    #[inline(always)]
    fn rows(&self, first_row: usize, x: &mut [f32]) {
        let at = self.at;
        let half = at.head_dim / 2;
        let sign = if at.inverse { -1.0 } else { 1.0 };
        for (i, row) in x.chunks_exact_mut(self.width).enumerate() {
            let pos = at.start + (first_row + i) % at.len;
            let c = &self.cos[pos * self.table_width..][..half];
            let s = &self.sin[pos * self.table_width..][..half];
            for head in row.chunks_exact_mut(at.head_dim) {
                let (lo, hi) = head.split_at_mut(half);
                for j in 0..half {
                    let (a, b, sn) = (lo[j], hi[j], sign * s[j]);
                    lo[j] = at.scale * (a * c[j] - b * sn);
                    hi[j] = at.scale * (b * c[j] + a * sn);
                }
            }
        }
    }
}

/// Rotates `x` (rows of `width = n_heads * head_dim`) in place. `cos` and
/// `sin` are tables with one row of `table_width` per position whose first
/// `head_dim / 2` entries are that position's values.
pub fn apply(x: &mut [f32], width: usize, cos: &[f32], sin: &[f32], table_width: usize, at: At) {
    assert!(
        at.head_dim.is_multiple_of(2)
            && width.is_multiple_of(at.head_dim)
            && x.len().is_multiple_of(width)
    );
    let kernel = Rotate {
        width,
        cos,
        sin,
        table_width,
        at,
    };
    par_rows(x, width, &kernel);
}

#[cfg(test)]
mod tests {
    use super::super::testing::{random, rel_err};
    use super::*;

    #[test]
    fn inverse_undoes_the_rotation_and_matches_the_definition() {
        let (batch, len, heads, hd) = (3, 5, 2, 6);
        let width = heads * hd;
        let x = random(batch * len * width, 7);
        // Tables of width 4 > half = 3, as the module's are wider than half.
        let tw = 4;
        let angle =
            |pos: usize, j: usize| pos as f32 * 10_000f32.powf(-((2 * j) as f32) / hd as f32);
        let (mut cos, mut sin) = (vec![0.0; 9 * tw], vec![0.0; 9 * tw]);
        for pos in 0..9 {
            for j in 0..3 {
                cos[pos * tw + j] = angle(pos, j).cos();
                sin[pos * tw + j] = angle(pos, j).sin();
            }
        }
        let at = At {
            len,
            start: 2,
            head_dim: hd,
            scale: 0.5,
            inverse: false,
        };
        let mut y = x.clone();
        apply(&mut y, width, &cos, &sin, tw, at);
        let (r, h, j) = (7, 1, 2); // row 7: position 2 + 7 % 5 = 4
        let (a, b) = (x[r * width + h * hd + j], x[r * width + h * hd + j + 3]);
        let t = angle(4, j);
        let want = 0.5 * (a * t.cos() - b * t.sin());
        assert!((y[r * width + h * hd + j] - want).abs() < 1e-6);
        // R^T R = scale^2 I: rotating back and dividing by scale^2 restores x.
        apply(
            &mut y,
            width,
            &cos,
            &sin,
            tw,
            At {
                inverse: true,
                ..at
            },
        );
        let back: Vec<f32> = y.iter().map(|v| v / 0.25).collect();
        assert!(rel_err(&back, &x) < 1e-6);
    }
}
