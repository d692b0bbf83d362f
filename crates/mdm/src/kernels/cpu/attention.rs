//! Multi-head attention `o = softmax(q k^T) v` computed block by block:
//! for each (row, head), query blocks of at most [`BLOCK`] rows against the
//! keys they may see, with one small score buffer per block and no
//! `[batch, heads, q, k]` tensor (the memory-efficient / flash-attention
//! scheme of Rabe & Staats 2021 and Dao et al. 2022, blocked along queries:
//! the model's sequences are short enough for a block's scores to fit in
//! cache). Heads are read in place from the `[rows, n_heads * head_dim]`
//! projections, so no split or merge copies are made. Grouped-query
//! attention (Ainslie et al. 2023) reads each key/value head for its group
//! of `n_heads / n_kv_heads` query heads in place too; the backward then
//! runs one task per key/value head, so that the group's `dK`, `dV`
//! accumulate in one thread.
//!
//! The forward saves each query's `lse = log sum_j exp(s_j)`; the backward
//! recomputes `P = exp(S - lse)` from it (Dao et al. 2022, Alg. 4):
//! `dV = P^T dO`, `dP = dO V^T`, `dS = P * (dP - rowsum(dO * O))`,
//! `dQ = dS K`, `dK = dS^T Q`. `q` arrives pre-scaled by `1/sqrt(d_h)`.
//! The block products run on `gemm` (the kernel burn's CPU matmul uses).

use rayon::prelude::*;

use super::exp::exp;
use super::matmul::gemm;
use super::{SendPtr, dot, sum};

/// Query rows per block.
pub const BLOCK: usize = 64;

/// Sizes of one call: `q` is `[batch * q_len, n_heads * head_dim]`, `k` and
/// `v` `[batch * k_len, n_kv_heads * head_dim]`; query head `h` reads
/// key/value head `h / (n_heads / n_kv_heads)`.
#[derive(Debug, Clone, Copy)]
pub struct Dims {
    pub batch: usize,
    pub q_len: usize,
    pub k_len: usize,
    pub n_heads: usize,
    pub n_kv_heads: usize,
    pub head_dim: usize,
}

/// Which keys a query sees.
#[derive(Debug, Clone, Copy)]
pub enum Keys<'a> {
    All,
    /// Query `i` sees keys `0..=k_len - q_len + i`.
    Causal,
    /// Row `b` sees keys `0..lens[b]`.
    UpTo(&'a [usize]),
}

impl Keys<'_> {
    /// How many keys (a prefix) query `i` of row `b` sees.
    fn visible(&self, dims: &Dims, b: usize, i: usize) -> usize {
        match self {
            Keys::All => dims.k_len,
            Keys::Causal => dims.k_len - dims.q_len + i + 1,
            Keys::UpTo(lens) => lens[b].min(dims.k_len),
        }
    }
}

/// Where one (row, head) pair's data starts in the flat buffers.
#[derive(Clone, Copy)]
struct Head {
    b: usize,
    q0: usize,
    k0: usize,
}

impl Dims {
    /// Row width of `q` (and `o`).
    fn width(&self) -> usize {
        self.n_heads * self.head_dim
    }

    /// Row width of `k` and `v`.
    fn kv_width(&self) -> usize {
        self.n_kv_heads * self.head_dim
    }

    /// Query heads per key/value head.
    fn group(&self) -> usize {
        self.n_heads / self.n_kv_heads
    }

    /// Query head `task` (`b * n_heads + h`).
    fn head(&self, task: usize) -> Head {
        let (b, h) = (task / self.n_heads, task % self.n_heads);
        Head {
            b,
            q0: b * self.q_len * self.width() + h * self.head_dim,
            k0: b * self.k_len * self.kv_width() + (h / self.group()) * self.head_dim,
        }
    }

    fn check(&self, q: usize, k: usize, keys: &Keys) {
        let w = self.width();
        assert!(self.q_len <= self.k_len, "more queries than keys");
        assert!(
            self.n_kv_heads > 0 && self.n_heads.is_multiple_of(self.n_kv_heads),
            "key/value heads must divide the query heads"
        );
        assert_eq!(q, self.batch * self.q_len * w, "q's size");
        assert_eq!(
            k,
            self.batch * self.k_len * self.kv_width(),
            "k's and v's size"
        );
        if let Keys::UpTo(lens) = keys {
            assert_eq!(lens.len(), self.batch, "one key length per row");
        }
    }

    /// Runs `kernel` on `tasks` tasks (each (row, head) pair, or each
    /// (row, key/value head) pair), in parallel when the work is large
    /// enough to pay rayon's hand-off.
    fn for_each_head<K: HeadKernel>(&self, tasks: usize, kernel: &K) {
        let work = self.batch * self.n_heads * self.q_len * self.k_len * self.head_dim;
        let arch = pulp::Arch::new();
        if tasks > 1 && work >= 1 << 17 {
            (0..tasks)
                .into_par_iter()
                .for_each(|t| arch.dispatch(Dispatch(kernel, t)));
        } else {
            (0..tasks).for_each(|t| arch.dispatch(Dispatch(kernel, t)));
        }
    }
}

/// The work on one (row, head) pair; `head` is `#[inline(always)]` for the
/// reason [`RowKernel`](super::RowKernel) gives.
trait HeadKernel: Sync {
    fn head(&self, task: usize);
}

struct Dispatch<'a, K>(&'a K, usize);

impl<K: HeadKernel> pulp::WithSimd for Dispatch<'_, K> {
    type Output = ();

    #[inline(always)]
    fn with_simd<S: pulp::Simd>(self, _: S) {
        self.0.head(self.1)
    }
}

/// `scores[bq x n_keys] = q[block] @ k[..n_keys]^T` for one head.
///
/// SAFETY: `q`, `k` point at the head's first query / key of a buffer laid
/// out as [`Dims`] says, with `bq` queries and `n_keys` keys in bounds.
unsafe fn scores(
    dims: &Dims,
    q: *const f32,
    k: *const f32,
    bq: usize,
    n_keys: usize,
    out: &mut [f32],
) {
    let (w, kw, hd) = (dims.width(), dims.kv_width(), dims.head_dim);
    unsafe {
        gemm(
            (bq, n_keys, hd),
            (out.as_mut_ptr(), n_keys, 1),
            false,
            (q, w, 1),
            (k, 1, kw), // k^T: element (c, j) at k[j * kw + c]
            gemm::Parallelism::None,
        );
    }
}

struct Forward<'a> {
    q: &'a [f32],
    k: &'a [f32],
    v: &'a [f32],
    dims: Dims,
    keys: Keys<'a>,
    o: SendPtr,
    lse: SendPtr,
}

impl HeadKernel for Forward<'_> {
    #[inline(always)]
    fn head(&self, task: usize) {
        let (dims, keys) = (&self.dims, &self.keys);
        let (w, hd) = (dims.width(), dims.head_dim);
        let at = dims.head(task);
        let mut p = vec![0.0f32; BLOCK.min(dims.q_len) * dims.k_len];
        for i0 in (0..dims.q_len).step_by(BLOCK) {
            let bq = BLOCK.min(dims.q_len - i0);
            let n_keys = keys.visible(dims, at.b, i0 + bq - 1);
            let p = &mut p[..bq * n_keys];
            // SAFETY: in bounds by `check`; each task writes its own head's
            // columns of `o` and its own entries of `lse`.
            unsafe {
                let (q, k) = (
                    self.q.as_ptr().add(at.q0 + i0 * w),
                    self.k.as_ptr().add(at.k0),
                );
                scores(dims, q, k, bq, n_keys, p);
                for (ii, row) in p.chunks_exact_mut(n_keys).enumerate() {
                    let seen = keys.visible(dims, at.b, i0 + ii);
                    *self.lse.get().add(task * dims.q_len + i0 + ii) = softmax_in_place(row, seen);
                }
                gemm(
                    (bq, hd, n_keys),
                    (self.o.get().add(at.q0 + i0 * w), w, 1),
                    false,
                    (p.as_ptr(), n_keys, 1),
                    (self.v.as_ptr().add(at.k0), dims.kv_width(), 1),
                    gemm::Parallelism::None,
                );
            }
        }
    }
}

/// Forward: writes `o` (the layout of `q`) and `lse` (`[batch, n_heads,
/// q_len]`).
pub fn forward(
    q: &[f32],
    k: &[f32],
    v: &[f32],
    dims: Dims,
    keys: Keys,
    o: &mut [f32],
    lse: &mut [f32],
) {
    dims.check(q.len(), k.len(), &keys);
    assert!(v.len() == k.len() && o.len() == q.len());
    assert_eq!(lse.len(), dims.batch * dims.n_heads * dims.q_len);
    let kernel = Forward {
        q,
        k,
        v,
        dims,
        keys,
        o: SendPtr(o.as_mut_ptr()),
        lse: SendPtr(lse.as_mut_ptr()),
    };
    dims.for_each_head(dims.batch * dims.n_heads, &kernel);
}

/// Softmax of `row[..seen]` in place, zeros after; returns log sum exp.
#[inline(always)]
fn softmax_in_place(row: &mut [f32], seen: usize) -> f32 {
    let (vis, hidden) = row.split_at_mut(seen);
    hidden.fill(0.0);
    if vis.is_empty() {
        return f32::NEG_INFINITY;
    }
    // Passes that each vectorise: a running `z += e` in the exp loop would
    // keep that loop scalar (float addition in order).
    let max = vis.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    vis.iter_mut().for_each(|s| *s = exp(*s - max));
    let z = sum(vis);
    let inv = 1.0 / z;
    vis.iter_mut().for_each(|s| *s *= inv);
    max + z.ln()
}

struct Backward<'a> {
    q: &'a [f32],
    k: &'a [f32],
    v: &'a [f32],
    o: &'a [f32],
    lse: &'a [f32],
    d_o: &'a [f32],
    dims: Dims,
    keys: Keys<'a>,
    dq: SendPtr,
    dk: SendPtr,
    dv: SendPtr,
}

impl HeadKernel for Backward<'_> {
    /// Key/value head `task` (`b * n_kv_heads + g`) and the query heads of
    /// its group, one after another: their `dK`, `dV` sum in this thread.
    #[inline(always)]
    fn head(&self, task: usize) {
        let dims = &self.dims;
        let (b, g) = (task / dims.n_kv_heads, task % dims.n_kv_heads);
        let cap = BLOCK.min(dims.q_len) * dims.k_len;
        let (mut p, mut ds) = (vec![0.0f32; cap], vec![0.0f32; cap]);
        for h in g * dims.group()..(g + 1) * dims.group() {
            self.query_head(b * dims.n_heads + h, &mut p, &mut ds);
        }
    }
}

impl Backward<'_> {
    /// One query head's share of the gradients, with `p` and `ds` as
    /// scratch.
    #[inline(always)]
    fn query_head(&self, task: usize, p: &mut [f32], ds: &mut [f32]) {
        let (dims, keys) = (&self.dims, &self.keys);
        let (w, kw, hd) = (dims.width(), dims.kv_width(), dims.head_dim);
        let at = dims.head(task);
        let (q, k, v, d_o) = (
            self.q.as_ptr(),
            self.k.as_ptr(),
            self.v.as_ptr(),
            self.d_o.as_ptr(),
        );
        for i0 in (0..dims.q_len).step_by(BLOCK) {
            let bq = BLOCK.min(dims.q_len - i0);
            let n_keys = keys.visible(dims, at.b, i0 + bq - 1);
            let (p, ds) = (&mut p[..bq * n_keys], &mut ds[..bq * n_keys]);
            // The block's first query row (the same offset in q, o, dO, dQ).
            let qb = at.q0 + i0 * w;
            // SAFETY: in bounds by `check`; each task writes only its own
            // query heads' columns of `dq` and its own key/value head's
            // columns of `dk` and `dv`.
            unsafe {
                scores(dims, q.add(qb), k.add(at.k0), bq, n_keys, p);
                // dP = dO V^T
                gemm(
                    (bq, n_keys, hd),
                    (ds.as_mut_ptr(), n_keys, 1),
                    false,
                    (d_o.add(qb), w, 1),
                    (v.add(at.k0), 1, kw),
                    gemm::Parallelism::None,
                );
                for ii in 0..bq {
                    let seen = keys.visible(dims, at.b, i0 + ii);
                    let l = self.lse[task * dims.q_len + i0 + ii];
                    let row = qb + ii * w;
                    let delta = dot(&self.d_o[row..][..hd], &self.o[row..][..hd]);
                    let p = &mut p[ii * n_keys..][..n_keys];
                    let ds = &mut ds[ii * n_keys..][..n_keys];
                    for j in 0..n_keys {
                        let pj = if j < seen { exp(p[j] - l) } else { 0.0 };
                        p[j] = pj;
                        ds[j] = pj * (ds[j] - delta);
                    }
                }
                // dQ = dS K
                gemm(
                    (bq, hd, n_keys),
                    (self.dq.get().add(qb), w, 1),
                    false,
                    (ds.as_ptr(), n_keys, 1),
                    (k.add(at.k0), kw, 1),
                    gemm::Parallelism::None,
                );
                // dK += dS^T Q, dV += P^T dO
                gemm(
                    (n_keys, hd, bq),
                    (self.dk.get().add(at.k0), kw, 1),
                    true,
                    (ds.as_ptr(), 1, n_keys),
                    (q.add(qb), w, 1),
                    gemm::Parallelism::None,
                );
                gemm(
                    (n_keys, hd, bq),
                    (self.dv.get().add(at.k0), kw, 1),
                    true,
                    (p.as_ptr(), 1, n_keys),
                    (d_o.add(qb), w, 1),
                    gemm::Parallelism::None,
                );
            }
        }
    }
}

/// What the backward reads again of the forward: its inputs `q, k, v` and
/// its outputs `o` and `lse`.
pub struct Saved<'a> {
    pub q: &'a [f32],
    pub k: &'a [f32],
    pub v: &'a [f32],
    pub o: &'a [f32],
    pub lse: &'a [f32],
}

/// The gradients the backward writes (overwritten).
pub struct Grads<'a> {
    pub dq: &'a mut [f32],
    pub dk: &'a mut [f32],
    pub dv: &'a mut [f32],
}

/// Backward: from the forward's inputs and outputs and `d_o`, writes the
/// gradients of `q`, `k` and `v`.
pub fn backward(saved: Saved<'_>, d_o: &[f32], dims: Dims, keys: Keys, grads: Grads<'_>) {
    let Saved { q, k, v, o, lse } = saved;
    let Grads { dq, dk, dv } = grads;
    dims.check(q.len(), k.len(), &keys);
    assert!(v.len() == k.len() && o.len() == q.len() && d_o.len() == q.len());
    assert!(dq.len() == q.len() && dk.len() == k.len() && dv.len() == k.len());
    dk.fill(0.0);
    dv.fill(0.0);
    let kernel = Backward {
        q,
        k,
        v,
        o,
        lse,
        d_o,
        dims,
        keys,
        dq: SendPtr(dq.as_mut_ptr()),
        dk: SendPtr(dk.as_mut_ptr()),
        dv: SendPtr(dv.as_mut_ptr()),
    };
    dims.for_each_head(dims.batch * dims.n_kv_heads, &kernel);
}

#[cfg(test)]
mod tests {
    use super::super::testing::{random, rel_err};
    use super::*;

    /// Attention written out in float64, one query at a time.
    fn reference(q: &[f32], k: &[f32], v: &[f32], dims: Dims, keys: Keys) -> Vec<f64> {
        let (w, kw, hd) = (dims.width(), dims.kv_width(), dims.head_dim);
        let mut o = vec![0.0; q.len()];
        for b in 0..dims.batch {
            for h in 0..dims.n_heads {
                for i in 0..dims.q_len {
                    let seen = keys.visible(&dims, b, i);
                    let qi = (b * dims.q_len + i) * w + h * hd;
                    let s: Vec<f64> = (0..seen)
                        .map(|j| {
                            let kj = (b * dims.k_len + j) * kw + h / dims.group() * hd;
                            (0..hd).map(|c| q[qi + c] as f64 * k[kj + c] as f64).sum()
                        })
                        .collect();
                    let m = s.iter().copied().fold(f64::NEG_INFINITY, f64::max);
                    let z: f64 = s.iter().map(|s| (s - m).exp()).sum();
                    for (j, s) in s.iter().enumerate() {
                        let vj = (b * dims.k_len + j) * kw + h / dims.group() * hd;
                        for c in 0..hd {
                            o[qi + c] += (s - m).exp() / z * v[vj + c] as f64;
                        }
                    }
                }
            }
        }
        o
    }

    fn cases() -> Vec<(Dims, Vec<usize>, &'static str)> {
        let d = |batch, q_len, k_len, n_heads, head_dim| Dims {
            batch,
            q_len,
            k_len,
            n_heads,
            n_kv_heads: n_heads,
            head_dim,
        };
        let gqa = |n_kv_heads, dims: Dims| Dims { n_kv_heads, ..dims };
        vec![
            // Several query blocks with a short last one, odd head size.
            (d(2, 70, 70, 3, 5), vec![], "all"),
            (d(2, 70, 70, 2, 8), vec![], "causal"),
            // Cached decoding: 3 new queries after 66 keys.
            (d(2, 3, 69, 2, 8), vec![], "causal"),
            (d(3, 9, 9, 2, 4), vec![9, 4, 1], "upto"),
            // Grouped-query attention: groups of 3 and of 2 query heads.
            (gqa(2, d(2, 70, 70, 6, 4)), vec![], "all"),
            (gqa(1, d(2, 5, 9, 2, 8)), vec![], "causal"),
        ]
    }

    fn keys<'a>(kind: &str, lens: &'a [usize]) -> Keys<'a> {
        match kind {
            "all" => Keys::All,
            "causal" => Keys::Causal,
            _ => Keys::UpTo(lens),
        }
    }

    #[test]
    fn forward_matches_float64_attention() {
        for (dims, lens, kind) in cases() {
            let keys = keys(kind, &lens);
            let (w, kw) = (dims.width(), dims.kv_width());
            let (q, k, v) = (
                random(dims.batch * dims.q_len * w, 1),
                random(dims.batch * dims.k_len * kw, 2),
                random(dims.batch * dims.k_len * kw, 3),
            );
            let mut o = vec![0.0; q.len()];
            let mut lse = vec![0.0; dims.batch * dims.n_heads * dims.q_len];
            forward(&q, &k, &v, dims, keys, &mut o, &mut lse);
            let want: Vec<f32> = reference(&q, &k, &v, dims, keys)
                .iter()
                .map(|&x| x as f32)
                .collect();
            assert!(
                rel_err(&o, &want) < 1e-5,
                "{kind} {dims:?}: {}",
                rel_err(&o, &want)
            );
        }
    }

    #[test]
    fn backward_matches_finite_differences() {
        for (dims, lens, kind) in cases() {
            let keys = keys(kind, &lens);
            let (w, kw) = (dims.width(), dims.kv_width());
            let (q, k, v) = (
                random(dims.batch * dims.q_len * w, 4),
                random(dims.batch * dims.k_len * kw, 5),
                random(dims.batch * dims.k_len * kw, 6),
            );
            let g = random(q.len(), 7);
            let mut o = vec![0.0; q.len()];
            let mut lse = vec![0.0; dims.batch * dims.n_heads * dims.q_len];
            forward(&q, &k, &v, dims, keys, &mut o, &mut lse);
            let (mut dq, mut dk, mut dv) =
                (vec![0.0; q.len()], vec![0.0; k.len()], vec![0.0; k.len()]);
            let saved = Saved {
                q: &q,
                k: &k,
                v: &v,
                o: &o,
                lse: &lse,
            };
            let grads = Grads {
                dq: &mut dq,
                dk: &mut dk,
                dv: &mut dv,
            };
            backward(saved, &g, dims, keys, grads);
            // Loss = sum(g * o), in float64; central differences on a sample
            // of entries of each input.
            let loss = |q: &[f32], k: &[f32], v: &[f32]| -> f64 {
                reference(q, k, v, dims, keys)
                    .iter()
                    .zip(&g)
                    .map(|(o, &g)| o * g as f64)
                    .sum()
            };
            let h = 1e-2f32;
            for (name, which, grad) in [("dq", 0, &dq), ("dk", 1, &dk), ("dv", 2, &dv)] {
                let base = [&q, &k, &v][which];
                let picks: Vec<usize> = (0..base.len()).step_by(base.len() / 40 + 1).collect();
                let (mut got, mut num) = (vec![], vec![]);
                for &i in &picks {
                    let mut args = [q.clone(), k.clone(), v.clone()];
                    args[which][i] += h;
                    let up = loss(&args[0], &args[1], &args[2]);
                    args[which][i] -= 2.0 * h;
                    let down = loss(&args[0], &args[1], &args[2]);
                    num.push(((up - down) / (2.0 * h as f64)) as f32);
                    got.push(grad[i]);
                }
                let e = rel_err(&got, &num);
                assert!(e < 1e-3, "{kind} {dims:?} {name}: {e}");
            }
        }
    }
}
