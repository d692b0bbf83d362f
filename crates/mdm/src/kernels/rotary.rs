//! Rotary embedding in burn's generic ops: the default of
//! [`Kernels::rope`] on every backend, and the path a fused backend takes
//! for what its kernels do not cover.

use burn::prelude::*;

use super::precision::permute_matmul;
use super::{Kernels, RopeAt};
use crate::rope::Rope;

impl<B: Kernels> Rope<B> {
    /// Rotates the projection `x` of shape `[batch * len, heads * head_dim]`
    /// (positions `start..start + len` in each sequence; `heads` up to the
    /// tables' `n_heads`, fewer for grouped-query keys) and multiplies it by
    /// `scale`, in burn's generic ops (fused backends: [`Kernels::rope`]).
    pub fn apply(&self, x: Tensor<B, 2>, at: RopeAt) -> Tensor<B, 2> {
        let RopeAt {
            batch,
            start,
            len,
            scale,
        } = at;
        let [n, width] = x.dims();
        let head_dim = self.head_dim();
        // Tables flattened to one row `[1, len * width]` shared by every
        // sequence: the broadcast shape burn's CPU kernels vectorise.
        // Every head's columns of a table row are equal, so narrower
        // projections (grouped-query keys) read the first `width` of them.
        let table_width = self.cos.dims()[1];
        let row = |t: &Tensor<B, 2>| {
            let t = t.clone().narrow(0, start, len);
            let t = if width < table_width {
                t.narrow(1, 0, width)
            } else {
                t
            };
            (t * scale).reshape([1, len * width])
        };
        let heads = x.clone().reshape([n * width / head_dim, head_dim]);
        let rotated = permute_matmul(heads, self.rotate.clone()).reshape([batch, len * width]);
        (x.reshape([batch, len * width]) * row(&self.cos) + rotated * row(&self.sin))
            .reshape([n, width])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::backend::Flex;

    type B = Flex;

    /// The defining property: <rope(q, m), rope(k, n)> depends on m - n only.
    #[test]
    fn scores_depend_only_on_relative_position() {
        let dev = Default::default();
        let (len, dim) = (12, 8);
        let rope = Rope::<B>::new(len, dim, 1, 10_000.0, &dev);
        let q: Vec<f32> = (0..dim).map(|i| (i as f32 * 0.7).sin() + 0.3).collect();
        let k: Vec<f32> = (0..dim).map(|i| (i as f32 * 1.3).cos() - 0.1).collect();
        let at_all = |v: &[f32]| {
            let data: Vec<f32> = (0..len).flat_map(|_| v.iter().copied()).collect();
            let x = Tensor::<B, 2>::from_data(TensorData::new(data, [len, dim]), &dev);
            rope.apply(
                x,
                RopeAt {
                    batch: 1,
                    start: 0,
                    len,
                    scale: 1.0,
                },
            )
            .reshape([1, 1, len, dim])
        };
        let scores: Vec<f32> = at_all(&q)
            .matmul(at_all(&k).swap_dims(2, 3))
            .into_data()
            .to_vec()
            .unwrap();
        let s = |m: usize, n: usize| scores[m * len + n];
        for (m, n) in [(3, 1), (7, 5), (11, 9)] {
            assert!((s(m, n) - s(2, 0)).abs() < 1e-4, "offset 2 at ({m},{n})");
        }
        assert!((s(1, 3) - s(6, 8)).abs() < 1e-4);
        assert!((s(2, 0) - s(0, 2)).abs() > 1e-3, "direction matters");
        assert!((s(1, 0) - s(5, 0)).abs() > 1e-3, "distance matters");
        // Position 0 is the identity rotation.
        let r: Vec<f32> = at_all(&q).narrow(2, 0, 1).into_data().to_vec().unwrap();
        for (a, b) in r.iter().zip(&q) {
            assert!((a - b).abs() < 1e-6);
        }
    }
}
