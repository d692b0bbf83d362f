//! The insertion language model (ILM; Patel et al. 2025): the shared
//! bidirectional backbone read as insertion scores.
//!
//! A sequence is `<bos> prompt partial-answer`. The network scores every
//! (gap, token) pair, gap `i` being the space right after position `i`, with
//! one softmax over all the allowed pairs, and a stop logit at `<bos>`.
//! Sampling inserts one token at a time until the stop head says so, so the
//! answer's length is not fixed in advance (`policy::insertion`).
//!
//! Training (the authors' `ILMLossWithMaskedCE`, xlm-core): drop `n ~ U{0..m}`
//! of the answer's `m` tokens, chosen uniformly; for each gap of what is
//! kept, the target is the share of the dropped tokens that belong in it:
//!
//!   target(i, v) = #{dropped tokens v between kept positions i and i+1} / n
//!
//! and the loss is `-sum target * log softmax(logits over allowed pairs)`
//! plus the stop head's binary cross-entropy with label `n == 0`. Gaps
//! inside the prompt are not allowed: conditional generation keeps the
//! prompt fixed.

use burn::prelude::*;
use burn::tensor::activation::{log_sigmoid, log_softmax};
use rand::Rng;

use crate::kernels::Kernels;
use crate::loss::CleanRow;

/// Added to the logit of a disallowed (gap, token) pair: its softmax weight
/// is exactly 0 in float32, and the value stays finite.
pub const NOT_ALLOWED: f32 = -1.0e9;

/// A batch of partial sequences with their insertion targets, row-major.
#[derive(Debug, Clone, PartialEq)]
pub struct InsertionBatch {
    pub batch: usize,
    /// Padded length (every row's `<bos> prompt kept` fits).
    pub len: usize,
    pub vocab: usize,
    /// `<bos>`, the prompt and the kept answer tokens, padded with `<bos>`.
    pub input: Vec<u32>,
    /// Real length of each row (the rest is padding, hidden from attention).
    pub lens: Vec<usize>,
    /// `[batch, len]`: 1 at gaps an insertion may go into (after the last
    /// prompt token, after each kept answer token), 0 elsewhere.
    pub allowed: Vec<f32>,
    /// `[batch, len, vocab]`: share of the row's dropped tokens per pair.
    pub target: Vec<f32>,
    /// 1 where nothing was dropped (the model should stop), else 0.
    pub stop: Vec<f32>,
}

impl InsertionBatch {
    /// Rows with the answer tokens `keep[b][j]` kept (the rest dropped),
    /// padded to `len`.
    pub fn from_kept(
        rows: &[CleanRow<'_>],
        keep: &[Vec<bool>],
        bos: u32,
        vocab: usize,
        len: usize,
    ) -> Self {
        let mut out = Self {
            batch: rows.len(),
            len,
            vocab,
            input: Vec::with_capacity(rows.len() * len),
            lens: Vec::with_capacity(rows.len()),
            allowed: vec![0.0; rows.len() * len],
            target: vec![0.0; rows.len() * len * vocab],
            stop: Vec::with_capacity(rows.len()),
        };
        for (b, (row, keep)) in rows.iter().zip(keep).enumerate() {
            let answer = &row.tokens[row.prompt_len..];
            assert_eq!(answer.len(), keep.len(), "one keep flag per answer token");
            let mut seq = vec![bos];
            seq.extend_from_slice(&row.tokens[..row.prompt_len]);
            // Gap after the last prompt token (or after <bos>).
            let mut gap = seq.len() - 1;
            out.allowed[b * len + gap] = 1.0;
            let mut dropped: Vec<(usize, u32)> = Vec::new();
            for (&tok, &k) in answer.iter().zip(keep) {
                if k {
                    seq.push(tok);
                    gap = seq.len() - 1;
                    out.allowed[b * len + gap] = 1.0;
                } else {
                    dropped.push((gap, tok));
                }
            }
            assert!(seq.len() <= len, "row of {} exceeds {len}", seq.len());
            let share = 1.0 / dropped.len().max(1) as f32;
            for (gap, tok) in &dropped {
                assert!(
                    (*tok as usize) < vocab,
                    "token {tok} outside the vocabulary"
                );
                out.target[(b * len + gap) * vocab + *tok as usize] += share;
            }
            out.stop.push(if dropped.is_empty() { 1.0 } else { 0.0 });
            out.lens.push(seq.len());
            seq.resize(len, bos);
            out.input.extend(seq);
        }
        out
    }

    /// The training corruption: each row drops `n ~ U{0..m}` of its `m`
    /// answer tokens, chosen uniformly.
    pub fn drop_random<R: Rng + ?Sized>(
        rows: &[CleanRow<'_>],
        bos: u32,
        vocab: usize,
        len: usize,
        rng: &mut R,
    ) -> Self {
        let keep: Vec<Vec<bool>> = rows
            .iter()
            .map(|row| {
                let m = row.tokens.len() - row.prompt_len;
                let n = rng.random_range(0..=m);
                // The first n of a uniform permutation are dropped.
                let mut order: Vec<usize> = (0..m).collect();
                for i in 0..n {
                    let j = rng.random_range(i..m);
                    order.swap(i, j);
                }
                let mut keep = vec![true; m];
                for &i in &order[..n] {
                    keep[i] = false;
                }
                keep
            })
            .collect();
        Self::from_kept(rows, &keep, bos, vocab, len)
    }

    /// Splits the rows into `parts` consecutive shards (data-parallel
    /// workers); the loss divides by the whole batch, so shard losses add up.
    pub fn split(&self, parts: usize) -> Vec<InsertionBatch> {
        let parts = parts.clamp(1, self.batch.max(1));
        let (base, extra) = (self.batch / parts, self.batch % parts);
        let (l, lv) = (self.len, self.len * self.vocab);
        let mut start = 0;
        (0..parts)
            .map(|i| {
                let rows = base + usize::from(i < extra);
                let r = start..start + rows;
                start += rows;
                InsertionBatch {
                    batch: rows,
                    len: l,
                    vocab: self.vocab,
                    input: self.input[r.start * l..r.end * l].to_vec(),
                    lens: self.lens[r.clone()].to_vec(),
                    allowed: self.allowed[r.start * l..r.end * l].to_vec(),
                    target: self.target[r.start * lv..r.end * lv].to_vec(),
                    stop: self.stop[r].to_vec(),
                }
            })
            .collect()
    }
}

/// Log-probabilities `[batch, len * vocab]` of every (gap, token) insertion,
/// disallowed pairs at about -1e9: one softmax per row over all pairs.
pub fn insertion_log_probs<B: Kernels>(
    logits: Tensor<B, 3>,
    allowed: Tensor<B, 2>,
) -> Tensor<B, 2> {
    let [batch, len, vocab] = logits.dims();
    let bias = (allowed.ones_like() - allowed) * NOT_ALLOWED;
    let logits = logits + bias.reshape([batch, len, 1]).expand([batch, len, vocab]);
    log_softmax(logits.reshape([batch, len * vocab]), 1)
}

/// The ILM loss from the network's outputs, summed over rows and divided by
/// `rows` (the whole batch's size when this is a shard):
/// `-sum target * log p(gap, token)` + BCE(stop logit, stop label).
pub fn loss_from_logits<B: Kernels>(
    logits: Tensor<B, 3>,
    stop_logits: Tensor<B, 1>,
    batch: &InsertionBatch,
    rows: usize,
    device: &B::Device,
) -> Tensor<B, 1> {
    let (b, l, v) = (batch.batch, batch.len, batch.vocab);
    let allowed = Tensor::<B, 2>::from_data(TensorData::new(batch.allowed.clone(), [b, l]), device);
    let target =
        Tensor::<B, 2>::from_data(TensorData::new(batch.target.clone(), [b, l * v]), device);
    let stop = Tensor::<B, 1>::from_data(TensorData::new(batch.stop.clone(), [b]), device);
    let insertion = (insertion_log_probs(logits, allowed) * target).sum().neg();
    let stop_ce = (log_sigmoid(stop_logits.clone()) * stop.clone()
        + log_sigmoid(stop_logits.neg()) * (stop.ones_like() - stop))
        .sum()
        .neg();
    (insertion + stop_ce) / rows.max(1) as f64
}

/// The ILM loss of a batch (a scalar tensor), divided by `rows`.
pub fn insertion_loss<B: Kernels>(
    model: &crate::Denoiser<B>,
    batch: &InsertionBatch,
    rows: usize,
    device: &B::Device,
) -> Tensor<B, 1> {
    let tokens = crate::Denoiser::input(&batch.input, batch.batch, batch.len, device);
    let (logits, stop) = model.forward_padded(tokens, &batch.lens);
    loss_from_logits(logits, stop, batch, rows, device)
}

/// `log p(answer, order)`: the log-probability that the ILM, from
/// `<bos> prompt`, inserts the answer's tokens in the order `order` (a
/// permutation of answer indices) and then stops:
///
///   sum_k [ log(1 - sigmoid(s_k)) + log p(gap_k, token_k | x_k) ] + log sigmoid(s_n)
///
/// One row per intermediate sequence `x_k`, all in one batch per order.
pub fn order_log_probs<B: Kernels>(
    model: &crate::Denoiser<B>,
    prompt: &[u32],
    answer: &[u32],
    orders: &[Vec<usize>],
    device: &B::Device,
) -> Vec<f64> {
    let (p, n, vocab) = (prompt.len(), answer.len(), model.vocab_size());
    let len = 1 + p + n;
    orders
        .iter()
        .map(|order| {
            assert_eq!(order.len(), n, "an order is a permutation of the answer");
            let mut input = Vec::with_capacity((n + 1) * len);
            let (mut lens, mut allowed) = (Vec::with_capacity(n + 1), vec![0.0f32; (n + 1) * len]);
            let mut actions = Vec::with_capacity(n);
            let mut kept = vec![false; n];
            for k in 0..=n {
                let mut seq = vec![model.bos_id()];
                seq.extend_from_slice(prompt);
                seq.extend((0..n).filter(|&j| kept[j]).map(|j| answer[j]));
                for g in p..seq.len() {
                    allowed[k * len + g] = 1.0;
                }
                if k < n {
                    let j = order[k];
                    let gap = p + (0..j).filter(|&i| kept[i]).count();
                    actions.push((k * len + gap) * vocab + answer[j] as usize);
                    kept[j] = true;
                }
                lens.push(seq.len());
                seq.resize(len, model.bos_id());
                input.extend(seq);
            }
            let tokens = crate::Denoiser::input(&input, n + 1, len, device);
            let (logits, stop) = model.forward_padded(tokens, &lens);
            let allowed = Tensor::from_data(TensorData::new(allowed, [n + 1, len]), device);
            let logp: Vec<f32> = insertion_log_probs(logits, allowed)
                .into_data()
                .convert::<f32>()
                .to_vec()
                .expect("f32 data");
            let stop: Vec<f32> = stop
                .into_data()
                .convert::<f32>()
                .to_vec()
                .expect("f32 data");
            let log_sigmoid = |z: f64| -(1.0 + (-z).exp()).ln();
            let inserts: f64 = actions
                .iter()
                .enumerate()
                .map(|(k, &a)| log_sigmoid(-(stop[k] as f64)) + logp[a] as f64)
                .sum();
            inserts + log_sigmoid(stop[n] as f64)
        })
        .collect()
}

/// An upper bound on `-log p(answer | prompt)` in nats from `orders`
/// (uniformly random permutations): distinct orders are distinct insertion
/// paths, so `p(x) >= sum_orders p(x, order) = n! E_order[p(x, order)]`,
/// and by Jensen `-log p(x) <= -E[log p(x, order)] - log n!`.
pub fn nll_bound<B: Kernels>(
    model: &crate::Denoiser<B>,
    prompt: &[u32],
    answer: &[u32],
    orders: &[Vec<usize>],
    device: &B::Device,
) -> f64 {
    let lp = order_log_probs(model, prompt, answer, orders, device);
    let log_n_factorial: f64 = (1..=answer.len()).map(|i| (i as f64).ln()).sum();
    -lp.iter().sum::<f64>() / lp.len().max(1) as f64 - log_n_factorial
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::backend::Flex;
    use rand::SeedableRng;
    use rand::rngs::StdRng;

    type B = Flex;

    /// Prompt `[3]`, answer `[1, 2, 1]` with only the `2` kept: the input is
    /// `<bos> 3 2`; one dropped `1` belongs after the prompt (gap 1), the
    /// other after the `2` (gap 2).
    fn hand_made() -> InsertionBatch {
        let tokens = [3u32, 1, 2, 1];
        InsertionBatch::from_kept(
            &[CleanRow {
                tokens: &tokens,
                prompt_len: 1,
            }],
            &[vec![false, true, false]],
            4,
            4,
            5,
        )
    }

    #[test]
    fn targets_put_each_dropped_token_in_its_gap() {
        let b = hand_made();
        assert_eq!(b.input, [4, 3, 2, 4, 4]);
        assert_eq!(b.lens, [3]);
        assert_eq!(b.allowed, [0.0, 1.0, 1.0, 0.0, 0.0]);
        let mut want = vec![0.0; 5 * 4];
        want[4 + 1] = 0.5; // gap 1, token 1
        want[2 * 4 + 1] = 0.5; // gap 2, token 1
        assert_eq!(b.target, want);
        assert_eq!(b.stop, [0.0]);
    }

    #[test]
    fn loss_on_hand_made_logits() {
        let dev = Default::default();
        let b = hand_made();
        // Allowed pairs: gaps 1 and 2 x 4 tokens. Logit ln 3 at (gap 1,
        // token 1), 0 elsewhere, and huge at the disallowed gap 0 (which must
        // not count): Z = 3 + 7 = 10, so
        // insertion = -(0.5 ln(3/10) + 0.5 ln(1/10)); stop logit 0 with
        // label 0: ln 2.
        let mut logits = vec![0.0f32; 5 * 4];
        logits[4 + 1] = 3f32.ln();
        logits[2] = 50.0;
        let logits = Tensor::<B, 3>::from_data(TensorData::new(logits, [1, 5, 4]), &dev);
        let stop = Tensor::<B, 1>::from_data(TensorData::new(vec![0.0f32], [1]), &dev);
        let got: f32 = loss_from_logits(logits, stop, &b, 1, &dev).into_scalar();
        let want = -(0.5 * (0.3f64).ln() + 0.5 * (0.1f64).ln()) + 2f64.ln();
        assert!((got as f64 - want).abs() < 1e-5, "{got} vs {want}");

        // Nothing dropped: only the stop term, -log sigmoid(2).
        let tokens = [3u32, 1];
        let full = InsertionBatch::from_kept(
            &[CleanRow {
                tokens: &tokens,
                prompt_len: 1,
            }],
            &[vec![true]],
            4,
            4,
            5,
        );
        assert_eq!(full.stop, [1.0]);
        assert!(full.target.iter().all(|&t| t == 0.0));
        let logits = Tensor::<B, 3>::zeros([1, 5, 4], &dev);
        let stop = Tensor::<B, 1>::from_data(TensorData::new(vec![2.0f32], [1]), &dev);
        let got: f32 = loss_from_logits(logits, stop, &full, 1, &dev).into_scalar();
        let want = (1.0 + (-2f64).exp()).ln();
        assert!((got as f64 - want).abs() < 1e-6, "{got} vs {want}");
    }

    /// Rows of a batch have different lengths: what pads them must not
    /// change the real positions' logits or the stop logit.
    #[test]
    fn padding_is_invisible() {
        let dev = Default::default();
        let m = crate::DenoiserConfig::new(5, 32, 2, 4, 48, 8)
            .with_family(crate::Family::Ilm)
            .init::<B>(5, &dev);
        let run = |ids: &[u32]| {
            let (l, s) =
                m.forward_padded(crate::Denoiser::<B>::input(ids, 1, ids.len(), &dev), &[3]);
            let l: Vec<f32> = l.narrow(1, 0, 3).into_data().to_vec().unwrap();
            (l, s.into_scalar())
        };
        let (a, sa) = run(&[5, 3, 2]);
        let (b, sb) = run(&[5, 3, 2, 1, 4, 0, 5, 5]);
        assert!((sa - sb).abs() < 1e-5);
        for (x, y) in a.iter().zip(&b) {
            assert!((x - y).abs() < 1e-5, "{x} vs {y}");
        }
    }

    /// p(x) by brute force: every insertion path from `<bos> prompt` that
    /// stays a subsequence of `x`, then the stop.
    fn exact_prob(m: &crate::Denoiser<B>, prompt: &[u32], done: &[u32], x: &[u32]) -> f64 {
        let dev = Default::default();
        let mut seq = vec![m.bos_id()];
        seq.extend_from_slice(prompt);
        seq.extend_from_slice(done);
        let len = seq.len();
        let (logits, stop) =
            m.forward_padded(crate::Denoiser::<B>::input(&seq, 1, len, &dev), &[len]);
        let p_stop = 1.0 / (1.0 + (-(stop.into_scalar() as f64)).exp());
        if done == x {
            return p_stop;
        }
        let mut allowed = vec![0.0f32; len];
        allowed[prompt.len()..].iter_mut().for_each(|a| *a = 1.0);
        let allowed = Tensor::<B, 2>::from_data(TensorData::new(allowed, [1, len]), &dev);
        let logp: Vec<f32> = insertion_log_probs(logits, allowed)
            .into_data()
            .to_vec()
            .unwrap();
        let v = m.vocab_size();
        let mut total = 0.0;
        for g in prompt.len()..len {
            for tok in 0..v as u32 {
                let mut next = done.to_vec();
                next.insert(g - prompt.len(), tok);
                let mut it = x.iter();
                if next.len() <= x.len() && next.iter().all(|t| it.any(|y| y == t)) {
                    total +=
                        (logp[g * v + tok as usize] as f64).exp() * exact_prob(m, prompt, &next, x);
                }
            }
        }
        (1.0 - p_stop) * total
    }

    /// Two answer tokens: each insertion path is exactly one order, so the
    /// orders' probabilities add up to p(x) (the brute force above), and the
    /// bound sits above the true NLL.
    #[test]
    fn order_probabilities_add_up_to_the_sequence_probability() {
        let dev = Default::default();
        let m = crate::DenoiserConfig::new(3, 16, 1, 2, 32, 6)
            .with_family(crate::Family::Ilm)
            .init::<B>(6, &dev);
        let orders = [vec![0, 1], vec![1, 0]];
        for x in [[0u32, 2], [1, 1]] {
            let exact = exact_prob(&m, &[2], &[], &x);
            let lp = order_log_probs(&m, &[2], &x, &orders, &dev);
            let sum: f64 = lp.iter().map(|l| l.exp()).sum();
            assert!(
                (sum - exact).abs() < 1e-5 * exact,
                "{x:?}: {sum} vs {exact}"
            );
            let bound = nll_bound(&m, &[2], &x, &orders, &dev);
            assert!(bound >= -exact.ln() - 1e-9, "{bound} < {}", -exact.ln());
        }
        // Three tokens: more paths than orders, still a bound.
        let x = [0u32, 1, 0];
        let exact = exact_prob(&m, &[2], &[], &x);
        let all: Vec<Vec<usize>> = vec![
            vec![0, 1, 2],
            vec![0, 2, 1],
            vec![1, 0, 2],
            vec![1, 2, 0],
            vec![2, 0, 1],
            vec![2, 1, 0],
        ];
        let sum: f64 = order_log_probs(&m, &[2], &x, &all, &dev)
            .iter()
            .map(|l| l.exp())
            .sum();
        assert!(sum <= exact * (1.0 + 1e-5), "{sum} > {exact}");
        assert!(nll_bound(&m, &[2], &x, &all, &dev) >= -exact.ln() - 1e-9);
    }

    #[test]
    fn drop_counts_are_uniform_and_targets_are_distributions() {
        let tokens = [0u32, 1, 2, 3, 1];
        let rows = vec![
            CleanRow {
                tokens: &tokens,
                prompt_len: 1,
            };
            4000
        ];
        let mut rng = StdRng::seed_from_u64(7);
        let b = InsertionBatch::drop_random(&rows, 4, 4, 6, &mut rng);
        let mut counts = [0usize; 5];
        for r in 0..b.batch {
            let kept = b.lens[r] - 2;
            counts[4 - kept] += 1;
            let mass: f32 = b.target[r * 24..(r + 1) * 24].iter().sum();
            let want = if kept == 4 { 0.0 } else { 1.0 };
            assert!((mass - want).abs() < 1e-5);
            assert_eq!(b.stop[r], if kept == 4 { 1.0 } else { 0.0 });
        }
        // Each of the 5 drop counts has probability 1/5: 800 expected, sd 25.
        for c in counts {
            assert!((c as f64 - 800.0).abs() < 100.0, "{counts:?}");
        }
    }
}
