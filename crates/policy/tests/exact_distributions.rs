//! Statistical tests of the samplers against exact distributions.
//!
//! A tiny denoiser (vocabulary 3, length 4) has only 4^4 = 256 partial
//! canvases, so the distribution of complete sequences each sampler induces
//! can be computed exactly by recursion over canvases. We compare the
//! samplers' empirical distributions with those exact ones (chi-square,
//! 80 degrees of freedom, fixed seeds), and the ancestral sampler with many
//! steps with the first-hitting sampler (both reveal one position at a time
//! in uniformly random order in that limit).

use std::collections::HashMap;

use burn::backend::Flex;
use burn::module::{Module, ModuleMapper, Param};
use burn::prelude::*;
use envs::Canvas;
use mdm::{Denoiser, DenoiserConfig};
use policy::{Sampler, SamplerConfig, SamplerKind};

type B = Flex;
const V: usize = 3;
const L: usize = 4;
const MASK: u32 = V as u32;
const OUTCOMES: usize = 81; // 3^4

/// Scales every weight so that the random network's conditionals are far
/// from uniform and depend strongly on context (at 5x, revealing all four
/// positions at once is 0.64 in total variation away from revealing them one
/// by one, while 80 of the 81 outcomes keep enough mass to be tested).
struct Scale(f32);
impl ModuleMapper<B> for Scale {
    fn map_float<const D: usize>(&mut self, param: Param<Tensor<B, D>>) -> Param<Tensor<B, D>> {
        let (id, t, mapper) = param.consume();
        Param::from_mapped_value(id, t * self.0, mapper)
    }
}

fn tiny_model() -> Denoiser<B> {
    let cfg = DenoiserConfig::new(V, 16, 2, 2, 32, L);
    cfg.init::<B>(7, &Default::default()).map(&mut Scale(5.0))
}

fn encode(state: &[u32]) -> usize {
    state.iter().fold(0, |acc, &t| acc * (V + 1) + t as usize)
}

fn outcome(seq: &[u32]) -> usize {
    seq.iter().fold(0, |acc, &t| acc * V + t as usize)
}

/// Model conditionals `p(x_i = v | state)` (float64 softmax) for every
/// partial canvas, indexed by `encode(state)`.
struct Conditionals(Vec<[[f64; V]; L]>);

impl Conditionals {
    fn of(model: &Denoiser<B>) -> Self {
        let n = (V + 1).pow(L as u32);
        let states: Vec<u32> = (0..n).flat_map(decode).collect();
        let logits: Vec<f32> = model
            .forward(Denoiser::input(&states, n, L, &Default::default()))
            .into_data()
            .to_vec()
            .unwrap();
        let table = (0..n)
            .map(|s| {
                std::array::from_fn(|i| {
                    let row = &logits[(s * L + i) * V..(s * L + i + 1) * V];
                    let m = row.iter().copied().fold(f32::MIN, f32::max) as f64;
                    let e: Vec<f64> = row.iter().map(|&x| (x as f64 - m).exp()).collect();
                    let z: f64 = e.iter().sum();
                    std::array::from_fn(|v| e[v] / z)
                })
            })
            .collect();
        Conditionals(table)
    }

    fn p(&self, state: &[u32]) -> &[[f64; V]; L] {
        &self.0[encode(state)]
    }
}

fn decode(mut code: usize) -> Vec<u32> {
    let mut s = vec![0u32; L];
    for i in (0..L).rev() {
        s[i] = (code % (V + 1)) as u32;
        code /= V + 1;
    }
    s
}

fn masked(state: &[u32]) -> Vec<usize> {
    (0..L).filter(|&i| state[i] == MASK).collect()
}

/// The law of one step: `(conditionals, state) -> [(position, token, prob)]`.
type StepLaw = dyn Fn(&Conditionals, &[u32]) -> Vec<(usize, u32, f64)>;

/// Exact distribution of one-position-per-step sampling where the position
/// and token are chosen by `step_law`.
fn exact_sequential(
    cond: &Conditionals,
    state: &[u32],
    step_law: &StepLaw,
    memo: &mut HashMap<usize, Vec<f64>>,
) -> Vec<f64> {
    if let Some(d) = memo.get(&encode(state)) {
        return d.clone();
    }
    let mut dist = vec![0.0; OUTCOMES];
    if masked(state).is_empty() {
        dist[outcome(state)] = 1.0;
    } else {
        for (pos, tok, prob) in step_law(cond, state) {
            let mut next = state.to_vec();
            next[pos] = tok;
            let sub = exact_sequential(cond, &next, step_law, memo);
            for (d, s) in dist.iter_mut().zip(sub) {
                *d += prob * s;
            }
        }
    }
    memo.insert(encode(state), dist.clone());
    dist
}

/// First-hitting: uniform position, token from the model.
fn first_hitting_law(cond: &Conditionals, state: &[u32]) -> Vec<(usize, u32, f64)> {
    let m = masked(state);
    let p = cond.p(state);
    let share = 1.0 / m.len() as f64;
    m.iter()
        .flat_map(|&i| (0..V).map(move |v| (i, v as u32, p[i][v] * share)))
        .collect()
}

/// Confidence with Gumbel noise at re-mask temperature `tau`, one position
/// per step, sampling temperature 1: candidates x_j ~ p_j at every masked
/// position, then position i wins with Plackett-Luce probability
/// softmax_j(log p_j(x_j) / tau)_i.
fn confidence_law(tau: f64) -> impl Fn(&Conditionals, &[u32]) -> Vec<(usize, u32, f64)> {
    move |cond, state| {
        let m = masked(state);
        let p = cond.p(state);
        let mut out: HashMap<(usize, u32), f64> = HashMap::new();
        for assign in 0..V.pow(m.len() as u32) {
            let mut a = assign;
            let cand: Vec<usize> = m
                .iter()
                .map(|_| {
                    let v = a % V;
                    a /= V;
                    v
                })
                .collect();
            let joint: f64 = m.iter().zip(&cand).map(|(&i, &v)| p[i][v]).product();
            let w: Vec<f64> = m
                .iter()
                .zip(&cand)
                .map(|(&i, &v)| (p[i][v].ln() / tau).exp())
                .collect();
            let z: f64 = w.iter().sum();
            for (k, (&i, &v)) in m.iter().zip(&cand).enumerate() {
                *out.entry((i, v as u32)).or_default() += joint * w[k] / z;
            }
        }
        out.into_iter().map(|((i, v), q)| (i, v, q)).collect()
    }
}

/// Exact distribution of ancestral sampling with T steps: from t = (T-k)/T
/// to s = (T-k-1)/T every masked position is revealed with probability
/// 1/(T-k), the revealed tokens drawn independently from the current state.
fn exact_ancestral(cond: &Conditionals, steps: usize) -> Vec<f64> {
    let n = (V + 1).pow(L as u32);
    let mut dist = vec![0.0; n];
    dist[encode(&[MASK; L])] = 1.0;
    for k in 0..steps {
        let p = 1.0 / (steps - k) as f64;
        let mut next = vec![0.0; n];
        for (code, &mass) in dist.iter().enumerate() {
            if mass == 0.0 {
                continue;
            }
            let state = decode(code);
            let m = masked(&state);
            let probs = cond.p(&state);
            for subset in 0..(1usize << m.len()) {
                let chosen: Vec<usize> = m
                    .iter()
                    .enumerate()
                    .filter(|(b, _)| subset >> b & 1 == 1)
                    .map(|(_, &i)| i)
                    .collect();
                let q =
                    p.powi(chosen.len() as i32) * (1.0 - p).powi((m.len() - chosen.len()) as i32);
                if q == 0.0 {
                    continue;
                }
                for assign in 0..V.pow(chosen.len() as u32) {
                    let mut a = assign;
                    let mut s = state.clone();
                    let mut pr = q;
                    for &i in &chosen {
                        let v = a % V;
                        a /= V;
                        s[i] = v as u32;
                        pr *= probs[i][v];
                    }
                    next[encode(&s)] += mass * pr;
                }
            }
        }
        dist = next;
    }
    let mut out = vec![0.0; OUTCOMES];
    for (code, &mass) in dist.iter().enumerate() {
        let s = decode(code);
        if masked(&s).is_empty() {
            out[outcome(&s)] += mass;
        } else {
            assert!(mass < 1e-12, "mass left on a partial canvas");
        }
    }
    out
}

fn empirical(model: &Denoiser<B>, cfg: &SamplerConfig, n: usize, seed: u64) -> Vec<f64> {
    let mut canvas = Canvas::new(L, MASK);
    for i in 0..n {
        canvas.push_row(&[], i as u64).unwrap();
    }
    Sampler::new(model, &Default::default(), seed)
        .generate(&mut canvas, cfg)
        .unwrap();
    let mut counts = vec![0.0; OUTCOMES];
    for r in 0..n {
        counts[outcome(canvas.row(r))] += 1.0;
    }
    counts
}

/// Pearson chi-square of counts against probabilities, pooling outcomes with
/// expected count below 5 into one cell; returns (statistic, dof).
fn chi_square(counts: &[f64], probs: &[f64]) -> (f64, usize) {
    let n: f64 = counts.iter().sum();
    let (mut stat, mut cells, mut pool_o, mut pool_e) = (0.0, 0, 0.0, 0.0);
    for (&o, &p) in counts.iter().zip(probs) {
        let e = n * p;
        if e < 5.0 {
            pool_o += o;
            pool_e += e;
        } else {
            stat += (o - e).powi(2) / e;
            cells += 1;
        }
    }
    if pool_e > 0.0 {
        stat += (pool_o - pool_e).powi(2) / pool_e.max(1e-12);
        cells += 1;
    }
    (stat, cells - 1)
}

/// Upper 0.999 quantile of chi-square with `dof` degrees of freedom
/// (Wilson-Hilferty approximation, accurate to ~1% here).
fn chi2_999(dof: usize) -> f64 {
    let k = dof as f64;
    let z = 3.090_232;
    k * (1.0 - 2.0 / (9.0 * k) + z * (2.0 / (9.0 * k)).sqrt()).powi(3)
}

fn tv(a: &[f64], b: &[f64]) -> f64 {
    0.5 * a.iter().zip(b).map(|(x, y)| (x - y).abs()).sum::<f64>()
}

fn normalised(counts: &[f64]) -> Vec<f64> {
    let n: f64 = counts.iter().sum();
    counts.iter().map(|c| c / n).collect()
}

fn assert_matches(name: &str, counts: &[f64], exact: &[f64]) {
    let (stat, dof) = chi_square(counts, exact);
    eprintln!("{name}: chi2 {stat:.1}, dof {dof}");
    assert!(
        stat < chi2_999(dof),
        "{name}: chi2 {stat:.1} with {dof} dof exceeds {:.1}",
        chi2_999(dof)
    );
}

const N: usize = 40_000;

#[test]
fn first_hitting_matches_its_exact_distribution() {
    let model = tiny_model();
    let cond = Conditionals::of(&model);
    let exact = exact_sequential(&cond, &[MASK; L], &first_hitting_law, &mut HashMap::new());
    assert!((exact.iter().sum::<f64>() - 1.0).abs() < 1e-9);
    let counts = empirical(
        &model,
        &SamplerConfig::new(SamplerKind::FirstHitting, L),
        N,
        1,
    );
    assert_matches("first-hitting", &counts, &exact);
}

#[test]
fn ancestral_matches_its_exact_distribution_in_the_parallel_regime() {
    let model = tiny_model();
    let cond = Conditionals::of(&model);
    for steps in [1, 2, 3] {
        let exact = exact_ancestral(&cond, steps);
        let counts = empirical(
            &model,
            &SamplerConfig::new(SamplerKind::Ancestral, steps),
            N,
            2,
        );
        assert_matches(&format!("ancestral T={steps}"), &counts, &exact);
    }
}

#[test]
fn ancestral_with_many_steps_equals_first_hitting() {
    let model = tiny_model();
    let cond = Conditionals::of(&model);
    let fhs = exact_sequential(&cond, &[MASK; L], &first_hitting_law, &mut HashMap::new());
    // The test has power: revealing everything at once (T = 1) is far off.
    let one_step = exact_ancestral(&cond, 1);
    assert!(
        tv(&one_step, &fhs) > 0.1,
        "model too close to factorised: {}",
        tv(&one_step, &fhs)
    );
    // With T = 512 two positions rarely share a step: exact distributions agree.
    let many = exact_ancestral(&cond, 512);
    assert!(
        tv(&many, &fhs) < 0.01,
        "TV(ancestral T=512, first-hitting) = {}",
        tv(&many, &fhs)
    );
    // And the two samplers' outputs agree with each other and with the limit.
    let anc = empirical(
        &model,
        &SamplerConfig::new(SamplerKind::Ancestral, 512),
        N,
        3,
    );
    let fh = empirical(
        &model,
        &SamplerConfig::new(SamplerKind::FirstHitting, L),
        N,
        4,
    );
    assert_matches("ancestral T=512", &anc, &many);
    // TV between two empirical laws on 81 cells from 40k draws each: the
    // sampling noise is ~0.02; a 1-step sampler would sit at > 0.1.
    let d = tv(&normalised(&anc), &normalised(&fh));
    assert!(d < 0.04, "empirical TV {d}");
}

#[test]
fn gumbel_confidence_matches_plackett_luce_law() {
    let model = tiny_model();
    let cond = Conditionals::of(&model);
    for tau in [0.5, 2.0] {
        let law = confidence_law(tau);
        let exact = exact_sequential(&cond, &[MASK; L], &law, &mut HashMap::new());
        let mut cfg = SamplerConfig::new(SamplerKind::Confidence, L);
        cfg.remask_temperature = tau;
        let counts = empirical(&model, &cfg, N, 5);
        assert_matches(&format!("confidence remask={tau}"), &counts, &exact);
    }
}

#[test]
fn rows_are_independent_of_batching_and_reproducible() {
    let model = tiny_model();
    let cfg = SamplerConfig::new(SamplerKind::Ancestral, 3);
    let run = |keys: &[u64]| {
        let mut c = Canvas::new(L, MASK);
        for &k in keys {
            c.push_row(&[], k).unwrap();
        }
        Sampler::new(&model, &Default::default(), 9)
            .generate(&mut c, &cfg)
            .unwrap();
        keys.iter()
            .enumerate()
            .map(|(r, &k)| (k, c.row(r).to_vec()))
            .collect::<HashMap<_, _>>()
    };
    let all = run(&(0..64).collect::<Vec<_>>());
    let part = run(&[40, 3, 17]);
    for k in [40, 3, 17] {
        assert_eq!(all[&k], part[&k]);
    }
    assert_eq!(all, run(&(0..64).collect::<Vec<_>>()));
}
