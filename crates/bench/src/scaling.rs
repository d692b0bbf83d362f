//! `cogrpo bench --scaling`: the first-hitting sampler against ancestral
//! sampling as sequence length and vocabulary grow.
//!
//! Zheng et al. (2024) report about 20x at length 1024 and a 50k vocabulary
//! for the first-hitting sampler over the ancestral sampler of the reference
//! code, which draws a `vocab + 1` categorical at every masked position on
//! every step. Each grid cell generates one unconditional sequence of
//! `len` tokens in `len` steps (one token per step on average) with the
//! configured architecture, its vocabulary and length replaced, and times
//! three samplers on one thread:
//! - `dense`: the reference code's step ([`super::dense_ancestral`]);
//! - `ancestral`: the library's ancestral sampler (same distribution; a
//!   binomial count of positions per step, tokens drawn only there);
//! - `first_hitting`: one token per step, the head run on that position only.

use std::time::Instant;

use burn::prelude::*;
use envs::Canvas;
use mdm::{Denoiser, DenoiserConfig};
use policy::{Sampler, SamplerConfig, SamplerKind, logits_to_host};
use serde::Serialize;

use super::dense_ancestral;
use mdm::Kernels;

#[derive(Debug, Clone, Serialize)]
pub struct ScalingRow {
    pub len: usize,
    pub vocab: usize,
    pub params: usize,
    /// Seconds per sequence, of them the seconds in the network (forward
    /// passes and logits read back), and forward passes of each sampler.
    pub dense_s: f64,
    pub dense_network_s: f64,
    pub dense_forwards: usize,
    pub ancestral_s: f64,
    pub ancestral_network_s: f64,
    pub ancestral_forwards: usize,
    pub first_hitting_s: f64,
    pub first_hitting_network_s: f64,
    pub first_hitting_forwards: usize,
    /// Milliseconds of one all-mask forward pass with the head on every
    /// position, and with the head on one position.
    pub forward_full_ms: f64,
    pub forward_one_ms: f64,
}

impl ScalingRow {
    pub fn dense_over_first_hitting(&self) -> f64 {
        self.dense_s / self.first_hitting_s
    }

    pub fn ancestral_over_first_hitting(&self) -> f64 {
        self.ancestral_s / self.first_hitting_s
    }

    /// The same ratio outside the network: the sampler's own work (draws,
    /// schedule, canvas), which is what the first-hitting sampler changes.
    /// Dense: `masked x (vocab + 1)` draws per step, ~L^2 V / 2 per
    /// sequence; first-hitting: one `vocab` draw per token, ~L V.
    pub fn dense_over_first_hitting_sampler_side(&self) -> f64 {
        (self.dense_s - self.dense_network_s)
            / (self.first_hitting_s - self.first_hitting_network_s)
    }
}

/// Measures every `(len, vocab)` cell of the grid with `arch`'s width,
/// depth and heads, in increasing cost, reporting each row as it lands.
pub fn scaling<B: Kernels>(
    arch: &DenoiserConfig,
    lens: &[usize],
    vocabs: &[usize],
    seed: u64,
    device: &B::Device,
    mut report: impl FnMut(&ScalingRow),
) -> anyhow::Result<Vec<ScalingRow>> {
    let mut rows = Vec::new();
    for &len in lens {
        for &vocab in vocabs {
            let cfg = DenoiserConfig {
                vocab_size: vocab,
                max_len: len,
                ..arch.clone()
            };
            cfg.validate()
                .map_err(|e| anyhow::anyhow!("model for length {len}, vocabulary {vocab}: {e}"))?;
            let model = cfg.init::<B>(seed, device);
            let (forward_full_ms, forward_one_ms) = forward_costs(&model, len, device);
            let blank = || -> anyhow::Result<Canvas> {
                let mut c = Canvas::new(len, model.mask_id());
                c.push_row(&[], 0)?;
                Ok(c)
            };

            let mut canvas = blank()?;
            let start = Instant::now();
            let dense = dense_ancestral::generate(&model, &mut canvas, len, seed, device);
            let dense_s = start.elapsed().as_secs_f64();

            let library = |kind| -> anyhow::Result<(f64, f64, usize)> {
                let mut canvas = blank()?;
                let start = Instant::now();
                let stats = Sampler::new(&model, device, seed)
                    .generate(&mut canvas, &SamplerConfig::new(kind, len))?;
                Ok((
                    start.elapsed().as_secs_f64(),
                    stats.network_s,
                    stats.forwards,
                ))
            };
            let (ancestral_s, ancestral_network_s, ancestral_forwards) =
                library(SamplerKind::Ancestral)?;
            let (first_hitting_s, first_hitting_network_s, first_hitting_forwards) =
                library(SamplerKind::FirstHitting)?;
            let row = ScalingRow {
                len,
                vocab,
                params: cfg.num_params(),
                dense_s,
                dense_network_s: dense.network_s,
                dense_forwards: dense.forwards,
                ancestral_s,
                ancestral_network_s,
                ancestral_forwards,
                first_hitting_s,
                first_hitting_network_s,
                first_hitting_forwards,
                forward_full_ms,
                forward_one_ms,
            };
            report(&row);
            rows.push(row);
        }
    }
    Ok(rows)
}

/// Median milliseconds (of 3, after a warm-up) of an all-mask forward with
/// logits at every position, and with logits at one position.
fn forward_costs<B: Kernels>(model: &Denoiser<B>, len: usize, device: &B::Device) -> (f64, f64) {
    let tokens = vec![model.mask_id(); len];
    let input = || Denoiser::<B>::input(&tokens, 1, len, device);
    let time = |f: &dyn Fn() -> Vec<f32>| {
        f();
        let mut ms: Vec<f64> = (0..3)
            .map(|_| {
                let start = Instant::now();
                f();
                start.elapsed().as_secs_f64() * 1e3
            })
            .collect();
        ms.sort_by(f64::total_cmp);
        ms[1]
    };
    let full = time(&|| logits_to_host(model.forward(input())));
    let one = time(&|| {
        let at = Tensor::<B, 1, Int>::from_data(TensorData::new(vec![0i32], [1]), device);
        logits_to_host(model.logits_at(input(), at))
    });
    (full, one)
}

pub fn header() -> String {
    format!(
        "{:>5} {:>6} {:>9} | {:>9} {:>9} {:>5} | {:>9} {:>9} {:>5} | {:>9} {:>9} {:>5} | {:>8} {:>8} {:>9} | {:>10} {:>8}",
        "len",
        "vocab",
        "params",
        "dense s",
        "net s",
        "nfe",
        "ancest s",
        "net s",
        "nfe",
        "first-h s",
        "net s",
        "nfe",
        "dense/FH",
        "anc/FH",
        "sampler",
        "fwd all ms",
        "fwd 1 ms"
    )
}

pub fn format_row(r: &ScalingRow) -> String {
    format!(
        "{:>5} {:>6} {:>9} | {:>9.3} {:>9.3} {:>5} | {:>9.3} {:>9.3} {:>5} | {:>9.3} {:>9.3} {:>5} | {:>8.1} {:>8.2} {:>9.1} | {:>10.2} {:>8.2}",
        r.len,
        r.vocab,
        r.params,
        r.dense_s,
        r.dense_network_s,
        r.dense_forwards,
        r.ancestral_s,
        r.ancestral_network_s,
        r.ancestral_forwards,
        r.first_hitting_s,
        r.first_hitting_network_s,
        r.first_hitting_forwards,
        r.dense_over_first_hitting(),
        r.ancestral_over_first_hitting(),
        r.dense_over_first_hitting_sampler_side(),
        r.forward_full_ms,
        r.forward_one_ms
    )
}
