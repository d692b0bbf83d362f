//! SwiGLU's gate (Shazeer 2020; SMDM's `mlp.swiglu`): `h = silu(a) * b`
//! with `silu(a) = a * sigmoid(a)`, where `a = w1 x` and `b = w2 x`.

use super::exp::exp;
use super::{RowKernel, SendPtr, par_rows};

#[inline(always)]
fn sigmoid(a: f32) -> f32 {
    1.0 / (1.0 + exp(-a))
}

struct Forward<'a> {
    a: &'a [f32],
    b: &'a [f32],
}

impl RowKernel for Forward<'_> {
    #[inline(always)]
    fn rows(&self, start: usize, out: &mut [f32]) {
        let n = out.len();
        let (a, b) = (&self.a[start..][..n], &self.b[start..][..n]);
        for ((h, &a), &b) in out.iter_mut().zip(a).zip(b) {
            *h = a * sigmoid(a) * b;
        }
    }
}

/// `out = silu(a) * b`.
pub fn forward(a: &[f32], b: &[f32], out: &mut [f32]) {
    assert!(a.len() == b.len() && a.len() == out.len());
    par_rows(out, 1, &Forward { a, b });
}

struct Backward<'a> {
    a: &'a [f32],
    b: &'a [f32],
    dh: &'a [f32],
    db: SendPtr,
}

impl RowKernel for Backward<'_> {
    #[inline(always)]
    fn rows(&self, start: usize, da: &mut [f32]) {
        let n = da.len();
        // SAFETY: each task owns elements `start..start + n` of `da` and
        // writes the same range of `db`, which is as long as `da`.
        let db = unsafe { std::slice::from_raw_parts_mut(self.db.get().add(start), n) };
        let (a, b, dh) = (
            &self.a[start..][..n],
            &self.b[start..][..n],
            &self.dh[start..][..n],
        );
        for i in 0..n {
            let s = sigmoid(a[i]);
            da[i] = dh[i] * b[i] * s * (1.0 + a[i] * (1.0 - s));
            db[i] = dh[i] * a[i] * s;
        }
    }
}

/// With `s = sigmoid(a)`: `da = dh * b * s * (1 + a (1 - s))`,
/// `db = dh * a * s`. Written into `da` and `db`.
pub fn backward(a: &[f32], b: &[f32], dh: &[f32], da: &mut [f32], db: &mut [f32]) {
    assert!(a.len() == b.len() && a.len() == dh.len());
    assert!(da.len() == a.len() && db.len() == a.len());
    let db = SendPtr(db.as_mut_ptr());
    par_rows(da, 1, &Backward { a, b, dh, db });
}

#[cfg(test)]
mod tests {
    use super::super::testing::{random, rel_err};
    use super::*;

    #[test]
    fn forward_and_backward_match_float64() {
        let n = 100_003; // several parallel chunks and an odd tail
        let (a, b, dh) = (random(n, 4), random(n, 5), random(n, 6));
        let mut h = vec![0.0; n];
        forward(&a, &b, &mut h);
        let (mut da, mut db) = (vec![0.0; n], vec![0.0; n]);
        backward(&a, &b, &dh, &mut da, &mut db);
        let (mut wh, mut wda, mut wdb) = (vec![0.0; n], vec![0.0; n], vec![0.0; n]);
        for i in 0..n {
            let (a, b, dh) = (a[i] as f64, b[i] as f64, dh[i] as f64);
            let s = 1.0 / (1.0 + (-a).exp());
            wh[i] = (a * s * b) as f32;
            wda[i] = (dh * b * (s + a * s * (1.0 - s))) as f32;
            wdb[i] = (dh * a * s) as f32;
        }
        assert!(rel_err(&h, &wh) < 1e-6);
        assert!(rel_err(&da, &wda) < 1e-6);
        assert!(rel_err(&db, &wdb) < 1e-6);
    }
}
