//! `C = A @ B` on gemm, written into a fresh buffer that is never zeroed.
//!
//! burn-flex 0.21 runs the same gemm, but allocates each product's output
//! as a zeroed byte vector and then copies it once more to re-align it
//! (`FlexTensor::empty` through `Bytes::from_bytes_vec`): two extra passes
//! over the output, about a fifth of a 1024 x 288 @ 288 x 1152 product and
//! more at smaller inner sizes (docs/performance.md, CPU run 5). gemm
//! overwrites every output element when it does not read the destination,
//! so the buffer can start uninitialised.
//!
//! Operands are strided views, so the backward's `g @ b^T` and `a^T @ g`
//! read the saved operands in place, without transposed copies.

/// A matrix in a slice: element `(i, j)` at `data[i * row_stride + j * col_stride]`.
#[derive(Debug, Clone, Copy)]
pub struct View<'a> {
    pub data: &'a [f32],
    pub rows: usize,
    pub cols: usize,
    pub row_stride: usize,
    pub col_stride: usize,
}

impl<'a> View<'a> {
    /// A row-major `rows x cols` matrix.
    pub fn row_major(data: &'a [f32], rows: usize, cols: usize) -> Self {
        Self {
            data,
            rows,
            cols,
            row_stride: cols,
            col_stride: 1,
        }
    }

    /// The transpose, in place.
    pub fn t(self) -> Self {
        Self {
            rows: self.cols,
            cols: self.rows,
            row_stride: self.col_stride,
            col_stride: self.row_stride,
            ..self
        }
    }

    /// Whether every element lies inside `data`.
    fn in_bounds(&self) -> bool {
        self.rows == 0
            || self.cols == 0
            || (self.rows - 1) * self.row_stride + (self.cols - 1) * self.col_stride
                < self.data.len()
    }
}

/// Products at least this large (`m * k * n`) are split across rayon's
/// pool (the current one: a worker under `on_one_core` keeps it on its
/// core); burn-flex uses the same threshold.
const PARALLEL_THRESHOLD: usize = 192 * 192 * 192;

/// `dst[m x n] (+)= lhs[m x k] @ rhs[k x n]`; each operand given by its
/// pointer, row stride and column stride. The one call into gemm's raw
/// interface: [`matmul`] and the attention kernel's block products.
///
/// # Safety
/// The three regions must be in bounds for their sizes and strides, and
/// `dst` must not overlap the operands. With `accumulate` false every
/// element of `dst` is written without being read (`k = 0` included: it
/// writes zeros).
#[inline(always)]
pub(crate) unsafe fn gemm(
    (m, n, k): (usize, usize, usize),
    dst: (*mut f32, usize, usize),
    accumulate: bool,
    lhs: (*const f32, usize, usize),
    rhs: (*const f32, usize, usize),
    parallelism: gemm::Parallelism,
) {
    // SAFETY: the caller guarantees the three regions are in bounds.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            dst.0,
            dst.2 as isize,
            dst.1 as isize,
            accumulate,
            lhs.0,
            lhs.2 as isize,
            lhs.1 as isize,
            rhs.0,
            rhs.2 as isize,
            rhs.1 as isize,
            1.0,
            1.0,
            false,
            false,
            false,
            parallelism,
        );
    }
}

/// `a @ b` as a row-major `a.rows x b.cols` vector.
///
/// # Panics
/// If the inner sizes differ or a view reaches outside its slice.
pub fn matmul(a: View, b: View) -> Vec<f32> {
    assert_eq!(a.cols, b.rows, "matmul: inner sizes differ");
    assert!(
        a.in_bounds() && b.in_bounds(),
        "matmul: a view outside its slice"
    );
    let (m, k, n) = (a.rows, a.cols, b.cols);
    let mut out: Vec<f32> = Vec::with_capacity(m * n);
    let parallelism = if m.saturating_mul(k).saturating_mul(n) >= PARALLEL_THRESHOLD {
        gemm::Parallelism::Rayon(0)
    } else {
        gemm::Parallelism::None
    };
    // SAFETY: both views lie inside their slices (checked above) and `out`
    // has room for `m * n` elements in row-major order; without
    // accumulation gemm writes every one of them, so `set_len` exposes
    // initialised values.
    unsafe {
        gemm(
            (m, n, k),
            (out.as_mut_ptr(), n, 1),
            false,
            (a.data.as_ptr(), a.row_stride, a.col_stride),
            (b.data.as_ptr(), b.row_stride, b.col_stride),
            parallelism,
        );
        out.set_len(m * n);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::super::testing::{random, rel_err};
    use super::*;

    fn reference(a: View, b: View) -> Vec<f32> {
        let mut c = vec![0.0; a.rows * b.cols];
        for i in 0..a.rows {
            for j in 0..b.cols {
                let s: f64 = (0..a.cols)
                    .map(|p| {
                        let x = a.data[i * a.row_stride + p * a.col_stride] as f64;
                        x * b.data[p * b.row_stride + j * b.col_stride] as f64
                    })
                    .sum();
                c[i * b.cols + j] = s as f32;
            }
        }
        c
    }

    #[test]
    fn plain_and_transposed_views_match_float64() {
        // Below and above the parallel threshold, odd sizes.
        for (m, k, n) in [(3, 5, 7), (65, 33, 17), (200, 190, 210)] {
            let (x, y) = (random(m * k, 1), random(k * n, 2));
            let (a, b) = (View::row_major(&x, m, k), View::row_major(&y, k, n));
            assert!(rel_err(&matmul(a, b), &reference(a, b)) < 1e-6);
            // a^T @ (a @ b), and (a @ b) @ b^T: the backward's two shapes.
            let c = matmul(a, b);
            let cv = View::row_major(&c, m, n);
            assert!(rel_err(&matmul(a.t(), cv), &reference(a.t(), cv)) < 1e-6);
            assert!(rel_err(&matmul(cv, b.t()), &reference(cv, b.t())) < 1e-6);
        }
    }

    #[test]
    fn an_empty_inner_size_gives_zeros() {
        let (x, y) = (vec![0.0; 0], vec![0.0; 0]);
        let c = matmul(View::row_major(&x, 3, 0), View::row_major(&y, 0, 4));
        assert_eq!(c, vec![0.0; 12]);
    }

    #[test]
    #[should_panic(expected = "outside its slice")]
    fn a_view_past_its_slice_panics() {
        let x = vec![0.0; 5];
        let _ = matmul(View::row_major(&x, 2, 3), View::row_major(&x, 3, 1));
    }
}
