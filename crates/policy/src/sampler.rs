//! Fixed samplers (ancestral, first-hitting, confidence): the generation
//! step of [`crate::rollout`] with no learned policy.

use envs::Canvas;
use mdm::Denoiser;

use crate::generation::{Act, GenerationStats, SamplerError};
use crate::rollout::Rollout;
use crate::schedule::SamplerConfig;
use mdm::Kernels;

/// A fixed sampler over a model: [`Rollout`] without a learned policy, so
/// `cogrpo sample`, `cogrpo eval` and the `base` arm of a report run the
/// same generation step.
pub struct Sampler<'a, B: Kernels> {
    model: &'a Denoiser<B>,
    device: B::Device,
    seed: u64,
}

impl<'a, B: Kernels> Sampler<'a, B> {
    pub fn new(model: &'a Denoiser<B>, device: &B::Device, seed: u64) -> Self {
        Self {
            model,
            device: device.clone(),
            seed,
        }
    }

    /// The rollout that follows `cfg` exactly.
    pub fn rollout<'c>(&'c self, cfg: &'c SamplerConfig) -> Rollout<'c, B> {
        Rollout {
            model: self.model,
            policy: None,
            reference: cfg,
            steps: cfg.steps,
            act: Act::Mode,
            temperature: None,
            seed: self.seed,
            device: self.device.clone(),
        }
    }

    /// Fills every mask of `canvas` following the fixed schedule `cfg`.
    pub fn generate(
        &self,
        canvas: &mut Canvas,
        cfg: &SamplerConfig,
    ) -> Result<GenerationStats, SamplerError> {
        self.generate_threads(canvas, cfg, 1)
    }

    /// As [`Sampler::generate`], with the rows split across up to `threads`
    /// threads ([`Rollout::run_threads`]); the tokens do not depend on it.
    pub fn generate_threads(
        &self,
        canvas: &mut Canvas,
        cfg: &SamplerConfig,
        threads: usize,
    ) -> Result<GenerationStats, SamplerError> {
        Ok(self.rollout(cfg).run_threads(canvas, false, threads)?.1)
    }
}

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use super::*;
    use crate::categorical::{argmax, log_softmax_at};
    use crate::schedule::SamplerKind;
    use burn::backend::Flex;
    use burn::prelude::*;
    use mdm::DenoiserConfig;

    type B = Flex;

    fn model() -> Denoiser<B> {
        DenoiserConfig::new(5, 16, 1, 2, 32, 6).init::<B>(11, &Default::default())
    }

    fn host(t: Tensor<B, 3>) -> Vec<f32> {
        t.into_data().to_vec().unwrap()
    }

    #[test]
    fn nfe_counts_guided_steps_twice_and_skips_empty_steps() {
        let m = model();
        let dev = Default::default();
        let mut canvas = Canvas::new(6, 5);
        canvas.push_row(&[1, 2], 0).unwrap();
        canvas.push_row(&[3, 4], 1).unwrap();
        let mut cfg = SamplerConfig::new(SamplerKind::Confidence, 4);
        let stats = Sampler::new(&m, &dev, 0)
            .generate(&mut canvas.clone(), &cfg)
            .unwrap();
        assert_eq!(stats.nfe, vec![4, 4]);
        cfg.guidance = 0.5;
        let stats = Sampler::new(&m, &dev, 0)
            .generate(&mut canvas.clone(), &cfg)
            .unwrap();
        assert_eq!(stats.nfe, vec![8, 8]);
        // More steps than masked positions: empty steps cost nothing.
        let cfg = SamplerConfig::new(SamplerKind::FirstHitting, 10);
        let mut c = canvas.clone();
        let stats = Sampler::new(&m, &dev, 0).generate(&mut c, &cfg).unwrap();
        assert_eq!(stats.nfe, vec![4, 4]);
        assert!(c.is_complete());
        assert_eq!(&c.row(0)[..2], &[1, 2], "the prompt is never touched");
    }

    /// A fresh LoRA adapter set (B = 0) rolls out exactly as its base:
    /// same canvases, NFE and recorded log-probabilities, for every sampler
    /// kind, whole and block-wise.
    #[test]
    fn fresh_lora_adapters_roll_out_bit_for_bit_as_the_base() {
        let base = model();
        let adapted = base
            .clone()
            .with_lora(&mdm::LoraConfig::default(), 3)
            .unwrap();
        let dev = Default::default();
        let mut canvas = Canvas::new(6, 5);
        for key in 0..3 {
            canvas.push_row(&[1, 2], key).unwrap();
        }
        for kind in KINDS {
            for block_length in [0, 2] {
                let mut cfg = SamplerConfig::new(kind, 4);
                cfg.block_length = block_length;
                let run = |m: &Denoiser<B>| {
                    let mut c = canvas.clone();
                    let (traj, stats) = Sampler::new(m, &dev, 9)
                        .rollout(&cfg)
                        .run(&mut c, true)
                        .unwrap();
                    (c, traj, stats.nfe)
                };
                assert_eq!(run(&base), run(&adapted), "{kind:?} blocks {block_length}");
            }
        }
    }

    /// Fast-dLLM's threshold: the first greedy step reveals exactly the
    /// positions whose most likely token reaches the threshold (the most
    /// confident one when none does), and a threshold every position
    /// passes fills each block in one step (NFE = the block count).
    #[test]
    fn a_confidence_threshold_reveals_every_position_that_reaches_it() {
        let m = model();
        let dev = Default::default();
        let mut canvas = Canvas::new(6, 5);
        for key in 0..6 {
            canvas.push_row(&[(key % 5) as u32, 2], key).unwrap();
        }
        let logits = host(
            m.forward(Denoiser::<B>::input(
                canvas
                    .tokens_of_rows(&(0..6).collect::<Vec<_>>())
                    .as_slice(),
                6,
                6,
                &dev,
            )),
        );
        // The greedy confidence of each masked position, by row.
        let confidence = |r: usize, p: usize| -> f64 {
            let l = &logits[(r * 6 + p) * 5..(r * 6 + p + 1) * 5];
            log_softmax_at(l, argmax(l)).exp()
        };
        let mut all: Vec<f64> = (0..6)
            .flat_map(|r| (2..6).map(move |p| (r, p)))
            .map(|(r, p)| confidence(r, p))
            .collect();
        all.sort_by(f64::total_cmp);
        let threshold = all[all.len() / 2];
        let mut cfg = SamplerConfig::new(SamplerKind::Confidence, 4);
        (cfg.temperature, cfg.threshold) = (0.0, threshold);
        let (trajs, stats) = Sampler::new(&m, &dev, 0)
            .rollout(&cfg)
            .run(&mut canvas.clone(), true)
            .unwrap();
        let mut several = false;
        for (r, t) in trajs.iter().enumerate() {
            let mut revealed = t.steps[0].revealed.clone();
            revealed.sort_unstable();
            let mut passing: Vec<usize> =
                (2..6).filter(|&p| confidence(r, p) >= threshold).collect();
            if passing.is_empty() {
                let best = (2..6).max_by(|&a, &b| confidence(r, a).total_cmp(&confidence(r, b)));
                passing = best.into_iter().collect();
            }
            several |= passing.len() > 1;
            assert_eq!(revealed, passing, "row {r}");
            assert_eq!(
                stats.nfe[r] as usize,
                t.steps.iter().filter(|s| !s.revealed.is_empty()).count()
            );
        }
        assert!(several, "some step reveals more than one position");
        // Everything passes: each block of two is one step.
        cfg.threshold = 1e-9;
        cfg.block_length = 2;
        let mut c = canvas.clone();
        let stats = Sampler::new(&m, &dev, 0).generate(&mut c, &cfg).unwrap();
        assert!(c.is_complete());
        assert_eq!(stats.nfe, vec![2; 6]);
    }

    #[test]
    fn network_time_is_part_of_the_generation_time() {
        let m = model();
        let dev = Default::default();
        let mut canvas = Canvas::new(6, 5);
        for key in 0..4 {
            canvas.push_row(&[1], key).unwrap();
        }
        let cfg = SamplerConfig::new(SamplerKind::FirstHitting, 5);
        let start = Instant::now();
        let stats = Sampler::new(&m, &dev, 0)
            .generate_threads(&mut canvas, &cfg, 2)
            .unwrap();
        let wall = start.elapsed().as_secs_f64();
        assert_eq!(stats.forwards, 10, "5 forwards on each of 2 threads");
        assert!(stats.network_s > 0.0, "forwards take time");
        // Summed over 2 threads, at most twice the wall time.
        assert!(
            stats.network_s <= 2.0 * wall,
            "network {} s, wall {wall} s",
            stats.network_s
        );
    }

    #[test]
    fn greedy_confidence_reveals_the_most_confident_position_first() {
        let m = model();
        let dev = Default::default();
        let mut canvas = Canvas::new(6, 5);
        canvas.push_row(&[], 0).unwrap();
        let logits = host(m.forward(Denoiser::input(&[5; 6], 1, 6, &dev)));
        let best = (0..6)
            .max_by(|&a, &b| {
                let conf = |p: usize| {
                    let row = &logits[p * 5..(p + 1) * 5];
                    log_softmax_at(row, argmax(row))
                };
                conf(a).total_cmp(&conf(b))
            })
            .unwrap();
        let mut cfg = SamplerConfig::new(SamplerKind::Confidence, 6);
        cfg.temperature = 0.0;
        let sampler = Sampler::new(&m, &dev, 0);
        let (trajectories, _) = sampler.rollout(&cfg).run(&mut canvas, true).unwrap();
        let first = &trajectories[0].steps[0];
        assert_eq!(
            first.revealed,
            vec![best],
            "one position per step, the most confident"
        );
        assert_eq!(
            first.tokens[0] as usize,
            argmax(&logits[best * 5..(best + 1) * 5])
        );
    }

    #[test]
    fn splitting_rows_across_threads_changes_nothing() {
        let m = model();
        let dev = Default::default();
        let mut canvas = Canvas::new(6, 5);
        for r in 0..7u64 {
            canvas.push_row(&[1, (r % 4) as u32], 100 + r).unwrap();
        }
        for kind in KINDS {
            let cfg = SamplerConfig::new(kind, 3);
            let sampler = Sampler::new(&m, &dev, 9);
            let mut one = canvas.clone();
            let a = sampler.generate(&mut one, &cfg).unwrap();
            let mut three = canvas.clone();
            let b = sampler.generate_threads(&mut three, &cfg, 3).unwrap();
            assert!(three.is_complete());
            assert_eq!(one, three, "{kind:?}");
            assert_eq!(a.nfe, b.nfe);
        }
    }

    const KINDS: [SamplerKind; 3] = [
        SamplerKind::Ancestral,
        SamplerKind::FirstHitting,
        SamplerKind::Confidence,
    ];

    /// Two rows (prompts of 1 and 0 tokens) of a 6-position canvas.
    fn two_rows() -> Canvas {
        let mut canvas = Canvas::new(6, 5);
        canvas.push_row(&[1], 0).unwrap();
        canvas.push_row(&[], 1).unwrap();
        canvas
    }

    #[test]
    fn block_wise_decoding_fills_each_block_within_its_steps_left_to_right() {
        let m = model();
        let sampler = Sampler::new(&m, &Default::default(), 4);
        for kind in KINDS {
            // 6 steps over blocks of 2: 3 blocks, 2 steps each.
            let mut cfg = SamplerConfig::new(kind, 6);
            cfg.block_length = 2;
            let mut canvas = two_rows();
            let (trajectories, stats) = sampler.rollout(&cfg).run(&mut canvas, true).unwrap();
            assert!(canvas.is_complete(), "{kind:?}");
            for (r, t) in trajectories.iter().enumerate() {
                let prompt = t.prompt_len;
                let mut filled: Vec<Vec<usize>> = vec![Vec::new(); 3];
                for rec in &t.steps {
                    filled[rec.step / 2].extend(&rec.revealed);
                }
                for (b, mut got) in filled.into_iter().enumerate() {
                    got.sort_unstable();
                    let block: Vec<usize> = (prompt + 2 * b..(prompt + 2 * b + 2).min(6)).collect();
                    assert_eq!(got, block, "{kind:?} row {r}: block {b} in its own steps");
                }
            }
            if kind != SamplerKind::Ancestral {
                // One position per step in the full blocks; row 0's last
                // block has one position, so one of its steps is empty.
                assert_eq!(stats.nfe, vec![5, 6], "{kind:?}");
            }
        }
    }

    #[test]
    fn one_block_as_long_as_the_answer_is_decoding_at_once() {
        let m = model();
        let sampler = Sampler::new(&m, &Default::default(), 4);
        for kind in KINDS {
            let whole = SamplerConfig::new(kind, 3);
            let mut one_block = whole.clone();
            one_block.block_length = 6;
            let (mut a, mut b) = (two_rows(), two_rows());
            sampler.generate(&mut a, &whole).unwrap();
            sampler.generate(&mut b, &one_block).unwrap();
            assert_eq!(a, b, "{kind:?}");
        }
        // Fewer steps than blocks cannot decode every block.
        let mut cfg = SamplerConfig::new(SamplerKind::Confidence, 2);
        cfg.block_length = 2;
        let err = sampler.generate(&mut two_rows(), &cfg).unwrap_err();
        assert!(err.to_string().contains("block_length"), "{err}");
    }

    #[test]
    fn mismatched_canvas_is_an_error() {
        let m = model();
        let mut long = Canvas::new(9, 5);
        long.push_row(&[], 0).unwrap();
        let cfg = SamplerConfig::new(SamplerKind::FirstHitting, 9);
        assert!(matches!(
            Sampler::new(&m, &Default::default(), 0).generate(&mut long, &cfg),
            Err(SamplerError::TooLong { .. })
        ));
        let mut wrong_mask = Canvas::new(6, 7);
        wrong_mask.push_row(&[], 0).unwrap();
        assert!(
            Sampler::new(&m, &Default::default(), 0)
                .generate(&mut wrong_mask, &cfg)
                .is_err()
        );
    }
}
