//! The denoiser's forward pass against a host reference, and each
//! variation of [`DenoiserConfig`] against an equivalent model.

use super::*;
use burn::backend::Flex;
use burn::nn::Linear;

type B = Flex;

#[test]
fn forward_shapes_and_parameter_count() {
    let cfg = DenoiserConfig::new(7, 32, 2, 4, 64, 16);
    let dev = Default::default();
    let model = cfg.init::<B>(0, &dev);
    assert_eq!(model.num_params(), cfg.num_params());
    let tokens = Denoiser::<B>::input(&[7, 1, 2, 7, 0, 7], 2, 3, &dev);
    let logits = model.forward(tokens);
    assert_eq!(logits.dims(), [2, 3, 7]);
}

#[test]
fn logits_at_equals_the_full_forward_at_those_positions() {
    let cfg = DenoiserConfig::new(7, 32, 2, 4, 64, 16);
    let dev = Default::default();
    let model = cfg.init::<B>(1, &dev);
    let ids = [7, 1, 2, 7, 0, 7, 3, 7];
    let full: Vec<f32> = model
        .forward(Denoiser::<B>::input(&ids, 2, 4, &dev))
        .into_data()
        .to_vec()
        .unwrap();
    let at = [6usize, 0, 3, 5];
    let index = Tensor::<B, 1, Int>::from_data(
        TensorData::new(at.iter().map(|&i| i as i32).collect::<Vec<_>>(), [4]),
        &dev,
    );
    let picked = model.logits_at(Denoiser::<B>::input(&ids, 2, 4, &dev), index);
    assert_eq!(picked.dims(), [4, 7]);
    let picked: Vec<f32> = picked.into_data().to_vec().unwrap();
    for (k, &flat) in at.iter().enumerate() {
        for v in 0..7 {
            let (a, b) = (picked[k * 7 + v], full[flat * 7 + v]);
            assert!(
                (a - b).abs() <= 1e-5 * (1.0 + b.abs()),
                "{flat} {v}: {a} vs {b}"
            );
        }
    }
}

#[test]
fn same_seed_same_weights_different_seed_different_weights() {
    let cfg = DenoiserConfig::new(5, 16, 1, 2, 32, 8);
    let dev = Default::default();
    let input = || Denoiser::<B>::input(&[5, 5, 1, 2], 1, 4, &dev);
    let a = cfg.init::<B>(3, &dev).forward(input()).into_data();
    let b = cfg.init::<B>(3, &dev).forward(input()).into_data();
    let c = cfg.init::<B>(4, &dev).forward(input()).into_data();
    assert_eq!(a, b);
    assert_ne!(a, c);
}

fn host2(t: Tensor<B, 2>) -> (Vec<f32>, [usize; 2]) {
    let dims = t.dims();
    (t.into_data().to_vec().unwrap(), dims)
}

/// `x [n, a] @ w [a, b]` on the host.
fn matmul(x: &[f32], n: usize, w: &(Vec<f32>, [usize; 2])) -> Vec<f32> {
    let [a, b] = w.1;
    let mut out = vec![0.0; n * b];
    for i in 0..n {
        for k in 0..a {
            for j in 0..b {
                out[i * b + j] += x[i * a + k] * w.0[k * b + j];
            }
        }
    }
    out
}

fn rms_norm(x: &[f32], d: usize, gamma: &[f32], eps: f32) -> Vec<f32> {
    x.chunks(d)
        .flat_map(|row| {
            let ms = row.iter().map(|v| v * v).sum::<f32>() / d as f32;
            let r = (ms + eps).sqrt();
            row.iter().zip(gamma).map(move |(v, g)| v / r * g)
        })
        .collect()
}

/// Scales the small initial weights up so that every part of the network
/// changes the logits by far more than the tolerance, and gives every
/// vector (norm gains, the biases that start at zero) a distinct offset.
struct Scale(usize);

impl burn::module::ModuleMapper<B> for Scale {
    fn map_float<const D: usize>(
        &mut self,
        p: burn::module::Param<Tensor<B, D>>,
    ) -> burn::module::Param<Tensor<B, D>> {
        let (id, t, mapper) = p.consume();
        let t = if D == 1 {
            let n = t.dims()[0];
            self.0 += 1;
            let offsets: Vec<f32> = (0..n)
                .map(|i| 0.5 * ((self.0 * 31 + i) as f32 * 0.7).sin())
                .collect();
            let shape = t.dims();
            t * 15.0 + Tensor::from_data(TensorData::new(offsets, shape), &Default::default())
        } else {
            t * 15.0
        };
        burn::module::Param::from_mapped_value(id, t, mapper)
    }
}

fn host1(t: Tensor<B, 1>) -> Vec<f32> {
    t.into_data().to_vec().unwrap()
}

/// Rotary attention of one sequence's projections, each query head
/// reading key/value head `head / group`.
fn host_attention(
    cfg: &DenoiserConfig,
    [proj_q, proj_k, proj_v]: [&[f32]; 3],
    len: usize,
) -> Vec<f32> {
    let (d, h, dh, kv) = (cfg.d_model, cfg.n_heads, cfg.head_dim(), cfg.kv_dim());
    let group = h / cfg.kv_heads();
    let half = dh / 2;
    let rope = |vec: &mut [f32], pos: usize| {
        for i in 0..half {
            let theta = 1.0f32 / (cfg.rope_base as f32).powf((2 * i) as f32 / dh as f32);
            let (c, s) = ((pos as f32 * theta).cos(), (pos as f32 * theta).sin());
            let (a, b) = (vec[i], vec[i + half]);
            vec[i] = a * c - b * s;
            vec[i + half] = b * c + a * s;
        }
    };
    let mut att = vec![0.0f32; len * d];
    for head in 0..h {
        // Query head `head` reads key/value head `head / group`.
        let q_at = |p: usize| proj_q[p * d + head * dh..][..dh].to_vec();
        let kv_at = |src: &[f32], p: usize| src[p * kv + head / group * dh..][..dh].to_vec();
        let rotated = |mut t: Vec<f32>, p: usize| {
            rope(&mut t, p);
            t
        };
        let q: Vec<Vec<f32>> = (0..len).map(|p| rotated(q_at(p), p)).collect();
        let k: Vec<Vec<f32>> = (0..len).map(|p| rotated(kv_at(proj_k, p), p)).collect();
        let vv: Vec<Vec<f32>> = (0..len).map(|p| kv_at(proj_v, p)).collect();
        for i in 0..len {
            let scores: Vec<f32> = (0..len)
                .map(|j| {
                    q[i].iter().zip(&k[j]).map(|(a, b)| a * b).sum::<f32>() / (dh as f32).sqrt()
                })
                .collect();
            let mx = scores.iter().copied().fold(f32::MIN, f32::max);
            let e: Vec<f32> = scores.iter().map(|s| (s - mx).exp()).collect();
            let z: f32 = e.iter().sum();
            for j in 0..len {
                for c in 0..dh {
                    att[i * d + head * dh + c] += e[j] / z * vv[j][c];
                }
            }
        }
    }
    att
}

/// The forward pass of one sequence written out with loops, from SMDM's
/// definition plus the released models' variations (grouped-query
/// attention, q/k/v biases, a tied head, Dream's shifted logits).
fn host_logits(m: &Denoiser<B>, cfg: &DenoiserConfig, tokens: &[u32]) -> Vec<f32> {
    let (v, d, len) = (cfg.vocab_size, cfg.d_model, tokens.len());
    let eps = cfg.norm_eps as f32;
    let emb = host2(m.wte.weight.val());
    let mut x: Vec<f32> = tokens
        .iter()
        .flat_map(|&t| emb.0[t as usize * d..(t as usize + 1) * d].to_vec())
        .collect();
    let project = |xn: &[f32], l: &Linear<B>| {
        let mut y = matmul(xn, len, &host2(l.weight.val()));
        if let Some(bias) = &l.bias {
            let bias = host1(bias.val());
            for row in y.chunks_mut(bias.len()) {
                row.iter_mut().zip(&bias).for_each(|(y, b)| *y += b);
            }
        }
        y
    };
    for blk in &m.blocks {
        let xn = rms_norm(&x, d, &host1(blk.norm_1.gamma.val()), eps);
        let proj_q = project(&xn, &blk.attn.q);
        let proj_k = project(&xn, &blk.attn.k);
        let proj_v = project(&xn, &blk.attn.v);
        let att = host_attention(cfg, [&proj_q, &proj_k, &proj_v], len);
        let proj = matmul(&att, len, &host2(blk.attn.proj.weight.val()));
        x.iter_mut().zip(&proj).for_each(|(a, b)| *a += b);
        let xn = rms_norm(&x, d, &host1(blk.norm_2.gamma.val()), eps);
        let a = matmul(&xn, len, &host2(blk.mlp.w1.weight.val()));
        let b = matmul(&xn, len, &host2(blk.mlp.w2.weight.val()));
        let hdn: Vec<f32> = a
            .iter()
            .zip(&b)
            .map(|(a, b)| a / (1.0 + (-a).exp()) * b)
            .collect();
        let out = matmul(&hdn, len, &host2(blk.mlp.w3.weight.val()));
        x.iter_mut().zip(&out).for_each(|(a, b)| *a += b);
    }
    let xn = rms_norm(&x, d, &host1(m.ln_f.gamma.val()), eps);
    let head = match &m.lm_head {
        Some(l) => host2(l.weight.val()),
        // Tied: the embedding's real-token rows, transposed.
        None => host2(m.wte.weight.val().narrow(0, 0, v).transpose()),
    };
    let logits = matmul(&xn, len, &head);
    if !cfg.logit_shift {
        return logits;
    }
    // Dream: position i reads the output at i - 1, position 0 its own.
    (0..len)
        .flat_map(|i| logits[i.saturating_sub(1) * v..][..v].to_vec())
        .collect()
}

/// The whole forward pass against [`host_logits`], for today's denoiser
/// and for each released-model variation.
#[test]
fn forward_matches_a_host_reference() {
    let (v, d, ff, len) = (7usize, 16usize, 24usize, 5usize);
    let base = DenoiserConfig::new(v, d, 2, 2, ff, len);
    let mut dream = DenoiserConfig::new(v, d, 2, 4, ff, len);
    dream.n_kv_heads = Some(2);
    dream.qkv_bias = true;
    dream.logit_shift = true;
    dream.rope_base = 1_000_000.0;
    dream.norm_eps = 1e-6;
    let mut tied = DenoiserConfig::new(v, d, 1, 4, ff, len);
    tied.n_kv_heads = Some(1);
    tied.tied_head = true;
    let dev = Default::default();
    for (name, cfg) in [("base", base), ("dream", dream), ("tied", tied)] {
        let m = cfg.init::<B>(9, &dev).map(&mut Scale(0));
        assert_eq!(m.num_params(), cfg.num_params(), "{name}");
        let tokens = [3u32, 7, 1, 7, 0];
        let got: Vec<f32> = m
            .forward(Denoiser::<B>::input(&tokens, 1, len, &dev))
            .into_data()
            .to_vec()
            .unwrap();
        let want = host_logits(&m, &cfg, &tokens);
        assert_eq!(got.len(), want.len());
        for (i, (a, b)) in got.iter().zip(&want).enumerate() {
            assert!(
                (a - b).abs() < 1e-4 * (1.0 + b.abs()),
                "{name} logit {i}: {a} vs {b}"
            );
        }
        // The samplers' path: logits at chosen flat positions.
        let at = [4usize, 0, 1];
        let index = Tensor::<B, 1, Int>::from_data(
            TensorData::new(at.iter().map(|&i| i as i32).collect::<Vec<_>>(), [3]),
            &dev,
        );
        let picked: Vec<f32> = m
            .logits_at(Denoiser::<B>::input(&tokens, 1, len, &dev), index)
            .into_data()
            .to_vec()
            .unwrap();
        for (k, &flat) in at.iter().enumerate() {
            for t in 0..v {
                let (a, b) = (picked[k * v + t], got[flat * v + t]);
                assert!((a - b).abs() <= 1e-5 * (1.0 + b.abs()), "{name} at {flat}");
            }
        }
    }
}

/// Training (autodiff) and inference take different attention code
/// paths; they must compute the same function.
#[test]
fn training_and_inference_paths_agree() {
    use burn::backend::Autodiff;
    use burn::module::AutodiffModule;
    let mut gqa = DenoiserConfig::new(7, 32, 2, 4, 48, 9);
    gqa.n_kv_heads = Some(2);
    gqa.qkv_bias = true;
    gqa.logit_shift = true;
    for cfg in [DenoiserConfig::new(7, 32, 2, 4, 48, 9), gqa] {
        let dev = Default::default();
        let train = cfg.init::<Autodiff<B>>(4, &dev);
        let infer = train.valid();
        let tokens = [7u32, 1, 2, 7, 7, 3, 0, 7, 5, 1, 1, 7, 7, 7, 2, 6, 4, 7];
        let a: Vec<f32> = train
            .forward(Denoiser::<Autodiff<B>>::input(&tokens, 2, 9, &dev))
            .into_data()
            .to_vec()
            .unwrap();
        let b: Vec<f32> = infer
            .forward(Denoiser::<B>::input(&tokens, 2, 9, &dev))
            .into_data()
            .to_vec()
            .unwrap();
        for (x, y) in a.iter().zip(&b) {
            assert!((x - y).abs() < 1e-5, "{cfg:?}: {x} vs {y}");
        }
    }
}

/// A model with every variation learns: one Adam step on the denoising
/// loss of a fixed batch lowers that loss, and every parameter (the
/// biases, the shared key/value heads, the tied embedding) gets a gradient.
#[test]
fn every_variation_gets_gradients_and_descends() {
    use burn::backend::Autodiff;
    use burn::optim::{AdamConfig, GradientsParams, Optimizer};
    let mut cfg = DenoiserConfig::new(6, 16, 1, 4, 32, 6);
    cfg.n_kv_heads = Some(2);
    cfg.qkv_bias = true;
    cfg.tied_head = true;
    cfg.logit_shift = true;
    let dev = Default::default();
    let mut model = cfg.init::<Autodiff<B>>(2, &dev);
    let (input, target) = ([6u32, 1, 6, 3, 6, 0], [2i64, 1, 4, 3, 5, 0]);
    let loss = |m: &Denoiser<Autodiff<B>>| {
        let logits = m
            .forward(Denoiser::input(&input, 1, 6, &dev))
            .reshape([6, 6]);
        let target =
            Tensor::<Autodiff<B>, 1, Int>::from_data(TensorData::new(target.to_vec(), [6]), &dev);
        burn::nn::loss::CrossEntropyLossConfig::new()
            .init(&dev)
            .forward(logits, target)
    };
    let before = loss(&model);
    let grads = GradientsParams::from_grads(before.backward(), &model);
    struct Count(usize);
    impl burn::module::ModuleVisitor<Autodiff<B>> for Count {
        fn visit_float<const D: usize>(&mut self, _: &burn::module::Param<Tensor<Autodiff<B>, D>>) {
            self.0 += 1;
        }
    }
    let mut count = Count(0);
    model.visit(&mut count);
    // q, k, v weights and biases, proj, two norms, three MLP matrices per
    // block; embedding and final norm; no head of its own.
    assert_eq!(count.0, 12 + 2);
    assert_eq!(grads.len(), count.0, "a parameter without a gradient");
    let mut adam = AdamConfig::new().init();
    model = adam.step(1e-2, model, grads);
    let (before, after): (f32, f32) = (before.into_scalar(), loss(&model).into_scalar());
    assert!(after < before, "{before} -> {after}");
}

#[test]
fn attention_is_bidirectional() {
    // Changing the last token must change the first position's logits.
    let cfg = DenoiserConfig::new(5, 16, 1, 2, 32, 8);
    let dev = Default::default();
    let m = cfg.init::<B>(1, &dev);
    let a = m
        .forward(Denoiser::<B>::input(&[5, 5, 5, 1], 1, 4, &dev))
        .narrow(1, 0, 1);
    let b = m
        .forward(Denoiser::<B>::input(&[5, 5, 5, 2], 1, 4, &dev))
        .narrow(1, 0, 1);
    let diff: f32 = (a - b).abs().max().into_scalar();
    assert!(diff > 1e-6, "first position ignores the last token");
}

/// Padding rows (`live_vocab`) read the padding logit everywhere a logit is
/// produced, the token rows read what they read without padding, and a
/// softmax gives the padding no probability.
#[test]
fn padding_rows_past_live_vocab_get_the_padding_logit_and_nothing_else_changes() {
    let dev = Default::default();
    let plain = DenoiserConfig::new(9, 32, 1, 4, 64, 8);
    let padded = DenoiserConfig {
        live_vocab: Some(6),
        ..plain.clone()
    };
    padded.validate().unwrap();
    let (a, b) = (plain.init::<B>(3, &dev), padded.init::<B>(3, &dev));
    let ids = [9, 1, 2, 9, 0, 9, 3, 9];
    let logits = |m: &Denoiser<B>| -> Vec<f32> {
        m.forward(Denoiser::<B>::input(&ids, 2, 4, &dev))
            .into_data()
            .to_vec()
            .unwrap()
    };
    let (la, lb) = (logits(&a), logits(&b));
    for (row_a, row_b) in la.chunks(9).zip(lb.chunks(9)) {
        assert_eq!(&row_a[..6], &row_b[..6]);
        assert!(
            row_b[6..]
                .iter()
                .all(|&x| x == crate::config::PADDING_LOGIT)
        );
    }
    let index = Tensor::<B, 1, Int>::from_data(TensorData::new(vec![3i32, 5], [2]), &dev);
    let at = b.logits_at(Denoiser::<B>::input(&ids, 2, 4, &dev), index);
    let p: Vec<f32> = burn::tensor::activation::softmax(at, 1)
        .into_data()
        .to_vec()
        .unwrap();
    for row in p.chunks(9) {
        assert!(row[6..].iter().all(|&x| x == 0.0), "{row:?}");
        assert!((row.iter().sum::<f32>() - 1.0).abs() < 1e-5);
    }
    let bad = DenoiserConfig {
        live_vocab: Some(10),
        ..plain
    };
    assert_eq!(bad.validate().unwrap_err().field, "live_vocab");
}
