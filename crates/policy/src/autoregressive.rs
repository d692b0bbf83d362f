//! ARM sampling: left to right with a KV cache, one forward pass of one new
//! token per step after the prompt's (SMDM's autoregressive baseline).
//! Tokens are drawn in float64 on the host ([`crate::draw::draw_token`]),
//! greedily at temperature 0, optionally from the `top_k` largest logits.

use std::time::Instant;

use envs::seeding::{purpose, stream};
use mdm::Denoiser;
use rand::rngs::StdRng;

use crate::draw::draw_token;
use crate::generation::{GenerationStats, SamplerError};
use crate::network::logits_to_host;
use mdm::Kernels;

/// How the next token is chosen.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ArmSampling {
    /// 0: greedy.
    pub temperature: f64,
    /// Draw among the `top_k` largest logits only (0: all).
    pub top_k: usize,
}

impl Default for ArmSampling {
    fn default() -> Self {
        Self {
            temperature: 0.0,
            top_k: 0,
        }
    }
}

/// Keeps the `k` largest logits (ties at the boundary kept), the rest at
/// -inf; `k = 0` or `k >= len` keeps all.
pub fn top_k(logits: &mut [f32], k: usize) {
    if k == 0 || k >= logits.len() {
        return;
    }
    let mut sorted = logits.to_vec();
    sorted.sort_unstable_by(|a, b| b.total_cmp(a));
    let floor = sorted[k - 1];
    for l in logits.iter_mut() {
        if *l < floor {
            *l = f32::NEG_INFINITY;
        }
    }
}

/// Completes each prompt (all of one length) with `answer_len` tokens; row
/// `r` draws from its own stream keyed by `keys[r]`, so a row's tokens do
/// not depend on the batch it is in.
pub fn generate<B: Kernels>(
    model: &Denoiser<B>,
    prompts: &[Vec<u32>],
    keys: &[u64],
    answer_len: usize,
    sampling: ArmSampling,
    seed: u64,
    device: &B::Device,
) -> Result<(Vec<Vec<u32>>, GenerationStats), SamplerError> {
    assert_eq!(prompts.len(), keys.len(), "one key per prompt");
    let batch = prompts.len();
    let mut stats = GenerationStats {
        nfe: vec![answer_len as u32; batch],
        ..Default::default()
    };
    if batch == 0 || answer_len == 0 {
        return Ok((vec![Vec::new(); batch], stats));
    }
    let prompt_len = prompts[0].len();
    assert!(
        prompts.iter().all(|p| p.len() == prompt_len),
        "prompts differ in length"
    );
    // <bos> prompt answer[..answer_len - 1] is what the model reads.
    let total = 1 + prompt_len + answer_len - 1;
    if total > model.max_len() {
        return Err(SamplerError::TooLong {
            canvas: total,
            model: model.max_len(),
        });
    }
    let vocab = model.vocab_size();
    let mut rngs: Vec<StdRng> = keys
        .iter()
        .map(|&k| stream(&[purpose::SAMPLER, seed, k]))
        .collect();
    let mut answers = vec![Vec::with_capacity(answer_len); batch];
    let mut cache = model.kv_cache();
    let mut input: Vec<u32> = prompts
        .iter()
        .flat_map(|p| std::iter::once(model.bos_id()).chain(p.iter().copied()))
        .collect();
    let mut chunk = 1 + prompt_len;
    for _ in 0..answer_len {
        let t0 = Instant::now();
        let logits =
            model.forward_cached(Denoiser::input(&input, batch, chunk, device), &mut cache);
        let last = logits_to_host(logits.narrow(1, chunk - 1, 1));
        stats.forwards += 1;
        stats.network_s += t0.elapsed().as_secs_f64();
        input.clear();
        for (r, rng) in rngs.iter_mut().enumerate() {
            let mut z = last[r * vocab..(r + 1) * vocab].to_vec();
            top_k(&mut z, sampling.top_k);
            let (token, _) = draw_token(&z, sampling.temperature, rng);
            answers[r].push(token);
            input.push(token);
        }
        chunk = 1;
    }
    Ok((answers, stats))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::categorical::Categorical;
    use burn::backend::Flex;
    use mdm::{DenoiserConfig, Family};

    type B = Flex;

    #[test]
    fn top_k_keeps_the_largest() {
        let mut z = [0.5, 3.0, -1.0, 2.0];
        top_k(&mut z, 2);
        assert_eq!(z, [f32::NEG_INFINITY, 3.0, f32::NEG_INFINITY, 2.0]);
    }

    /// Greedy decoding with the cache picks, at every step, the argmax of
    /// the full (uncached) forward pass over the sequence so far.
    #[test]
    fn greedy_equals_argmax_of_the_uncached_model() {
        let dev = Default::default();
        let m = DenoiserConfig::new(5, 32, 2, 4, 48, 10)
            .with_family(Family::Arm)
            .init::<B>(8, &dev);
        let prompts = vec![vec![1u32, 2], vec![4, 0]];
        let (answers, stats) =
            generate(&m, &prompts, &[0, 1], 5, ArmSampling::default(), 0, &dev).unwrap();
        assert_eq!(stats.forwards, 5);
        for (p, a) in prompts.iter().zip(&answers) {
            let mut seq = vec![m.bos_id()];
            seq.extend(p);
            for &tok in a {
                let l = logits_to_host(m.forward(Denoiser::input(&seq, 1, seq.len(), &dev)));
                let z = &l[(seq.len() - 1) * 5..];
                assert_eq!(tok as usize, crate::categorical::argmax(z));
                seq.push(tok);
            }
        }
    }

    /// At temperature 1 the first answer token follows the model's
    /// next-token distribution (20000 rows; 5 sigma per category).
    #[test]
    fn draws_follow_the_next_token_distribution() {
        let dev = Default::default();
        let m = DenoiserConfig::new(4, 16, 1, 2, 32, 6)
            .with_family(Family::Arm)
            .init::<B>(9, &dev);
        let n = 20_000;
        let prompts = vec![vec![2u32]; n];
        let keys: Vec<u64> = (0..n as u64).collect();
        let sampling = ArmSampling {
            temperature: 1.0,
            top_k: 0,
        };
        let (answers, _) = generate(&m, &prompts, &keys, 1, sampling, 3, &dev).unwrap();
        let l = logits_to_host(m.forward(Denoiser::input(&[m.bos_id(), 2], 1, 2, &dev)));
        let c = Categorical::from_logits(&l[4..], 1.0);
        for v in 0..4 {
            let p = c.log_prob(v).exp();
            let f = answers.iter().filter(|a| a[0] == v as u32).count() as f64 / n as f64;
            let sd = (p * (1.0 - p) / n as f64).sqrt();
            assert!((f - p).abs() < 5.0 * sd, "token {v}: {f} vs {p}");
        }
    }
}
