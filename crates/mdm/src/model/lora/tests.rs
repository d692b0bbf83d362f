//! Adapters against the base they sit on: a fresh set changes nothing, a
//! merged set computes what the adapters compute, and training moves only
//! the adapters, downhill.

use super::*;
use crate::DenoiserConfig;
use burn::backend::{Autodiff, Flex};
use burn::module::Param;
use burn::module::{AutodiffModule, ModuleVisitor};
use burn::optim::{AdamConfig, GradientsParams, Optimizer};

type B = Flex;

fn config() -> DenoiserConfig {
    let mut cfg = DenoiserConfig::new(7, 16, 2, 4, 32, 8);
    cfg.n_kv_heads = Some(2);
    cfg.qkv_bias = true;
    cfg
}

const TOKENS: [u32; 8] = [7, 1, 2, 7, 0, 7, 3, 7];

fn logits<K: Kernels>(m: &Denoiser<K>) -> Vec<f32> {
    let dev = m.wte.weight.device();
    m.forward(Denoiser::<K>::input(&TOKENS, 2, 4, &dev))
        .into_data()
        .convert::<f32>()
        .to_vec()
        .expect("float logits")
}

/// Every adapter's `B` replaced by N(0, 0.05^2) draws: an adapter that has
/// been trained.
fn trained<K: Kernels>(mut m: Denoiser<K>, seed: u64) -> Denoiser<K> {
    let dev = m.wte.weight.device();
    let mut f = ParamFactory::<K>::new(seed, 0, &dev);
    for block in &mut m.blocks {
        for_each_projection!(block, |_target, _linear, adapter| {
            if let Some(ad) = adapter {
                let fresh = f.normal(ad.b.dims(), 0.05);
                ad.b = Param::initialized(ad.b.id, fresh.val());
            }
        });
    }
    m
}

#[test]
fn fresh_adapters_reproduce_the_base_bit_for_bit() {
    let dev = Default::default();
    let base = config().init::<B>(3, &dev);
    let expected = logits(&base);
    let adapted = base
        .with_lora(&LoraConfig::default(), 11)
        .expect("rank fits");
    assert!(adapted.has_lora());
    assert_eq!(adapted.lora_targets(), LoraTarget::ALL.to_vec());
    assert_eq!(logits(&adapted), expected);
    // ... and once trained, they do change the logits.
    assert_ne!(logits(&trained(adapted, 1)), expected);
}

#[test]
fn merged_weights_compute_what_the_adapters_compute() {
    let dev = Default::default();
    let cfg = LoraConfig {
        rank: 4,
        alpha: 16.0,
        targets: vec![
            LoraTarget::Q,
            LoraTarget::V,
            LoraTarget::O,
            LoraTarget::Down,
        ],
        ..LoraConfig::default()
    };
    let model = trained(config().init::<B>(3, &dev).with_lora(&cfg, 5).unwrap(), 2);
    assert_eq!(model.adapters().len(), 2 * 4, "two blocks, four targets");
    let with_adapters = logits(&model);
    let merged = model.clone().merged();
    assert!(!merged.has_lora());
    let folded = logits(&merged);
    let base = logits(&model.without_lora());
    let (mut err, mut moved, mut scale) = (0f32, 0f32, 0f32);
    for ((a, m), b) in with_adapters.iter().zip(&folded).zip(&base) {
        err = err.max((a - m).abs());
        moved = moved.max((a - b).abs());
        scale = scale.max(a.abs());
    }
    assert!(moved > 1e-3, "the adapters change the logits ({moved})");
    assert!(
        err <= 1e-6 * scale.max(1.0),
        "merged vs adapters: {err} at logit scale {scale}"
    );
}

#[test]
fn rank_and_reuse_are_checked() {
    let dev = Default::default();
    let too_big = LoraConfig {
        rank: 17,
        ..LoraConfig::default()
    };
    let err = config()
        .init::<B>(0, &dev)
        .with_lora(&too_big, 0)
        .unwrap_err();
    assert!(err.to_string().contains("rank 17"), "{err}");
    let once = config()
        .init::<B>(0, &dev)
        .with_lora(&LoraConfig::default(), 0)
        .unwrap();
    assert!(matches!(
        once.with_lora(&LoraConfig::default(), 0),
        Err(LoraError::AlreadyAdapted)
    ));
}

#[test]
fn config_problems_name_the_key() {
    let bad = LoraConfig {
        rank: 0,
        alpha: f64::NAN,
        targets: vec![LoraTarget::Q, LoraTarget::Q],
        dropout: 0.05,
        base_dtype: BaseDtype::F32,
    };
    let keys: Vec<&str> = bad.problems().iter().map(|(k, _)| *k).collect();
    assert_eq!(keys, ["rank", "alpha", "targets", "dropout"]);
    assert!(LoraConfig::default().problems().is_empty());
}

/// Training through the adapters: only `A` and `B` get gradients, Adam
/// steps lower the denoising loss of a fixed batch, and the base's
/// weights stay bit for bit what they were.
#[test]
fn training_moves_only_the_adapters_and_lowers_the_loss() {
    for base_dtype in [BaseDtype::F32, BaseDtype::Bf16] {
        train_adapters(LoraConfig {
            base_dtype,
            ..LoraConfig::default()
        });
    }
}

fn train_adapters(lora: LoraConfig) {
    type A = Autodiff<B>;
    let dev = Default::default();
    let mut model = config().init::<A>(4, &dev).with_lora(&lora, 6).unwrap();
    let base_logits = logits(&model.valid().without_lora());
    let (input, target) = ([7u32, 1, 7, 3, 7, 0, 7, 2], [2i64, 1, 4, 3, 5, 0, 6, 2]);
    let loss = |m: &Denoiser<A>| {
        let logits = m
            .forward(Denoiser::input(&input, 1, 8, &dev))
            .reshape([8, 7]);
        let target = Tensor::<A, 1, Int>::from_data(TensorData::new(target.to_vec(), [8]), &dev);
        burn::nn::loss::CrossEntropyLossConfig::new()
            .init(&dev)
            .forward(logits, target)
    };
    let first: f32 = loss(&model).into_scalar();
    let mut adam = AdamConfig::new().init();
    for _ in 0..5 {
        let grads = GradientsParams::from_grads(loss(&model).backward(), &model);
        assert_eq!(
            grads.len(),
            2 * 7 * 2,
            "A and B of 7 adapters in 2 blocks, nothing else"
        );
        model = adam.step(1e-2, model, grads);
    }
    let last: f32 = loss(&model).into_scalar();
    assert!(
        last < first - 1e-3,
        "{:?}: {first} -> {last}",
        lora.base_dtype
    );
    assert_eq!(logits(&model.valid().without_lora()), base_logits);

    struct Trainable(usize);
    impl ModuleVisitor<A> for Trainable {
        fn visit_float<const D: usize>(&mut self, p: &Param<Tensor<A, D>>) {
            self.0 += usize::from(p.val().is_require_grad());
        }
    }
    let mut t = Trainable(0);
    model.visit(&mut t);
    assert_eq!(t.0, 28);
}

/// The model of seed 3 (`tied` head or not) with fresh adapters twice: its
/// base stored in bfloat16, and its base's float32 weights rounded to
/// bfloat16 (stored in float32).
fn bf16_and_rounded<K: Kernels>(tied: bool) -> (Denoiser<K>, Denoiser<K>) {
    use burn::tensor::FloatDType;
    let dev = Default::default();
    let mut cfg = config();
    cfg.tied_head = tied;
    let lora = |base_dtype| LoraConfig {
        base_dtype,
        ..LoraConfig::default()
    };
    let stored = cfg.init::<K>(3, &dev).with_lora(&lora(BaseDtype::Bf16), 5);
    let rounded = cfg
        .init::<K>(3, &dev)
        .map_base_weights(|w| w.cast(FloatDType::BF16).cast(FloatDType::F32))
        .with_lora(&lora(BaseDtype::F32), 5);
    (stored.unwrap(), rounded.unwrap())
}

/// A base stored in bfloat16 holds its large weights in bfloat16 (the
/// adapters, norms and biases in float32) and computes exactly what float32
/// weights rounded to bfloat16 compute, since each weight is widened for its
/// product; merged, it is float32 again. Untied and tied heads.
#[test]
fn a_bf16_base_computes_what_its_rounded_weights_compute() {
    use burn::tensor::DType;
    let dev = Default::default();
    for tied in [false, true] {
        let (stored, rounded) = bf16_and_rounded::<B>(tied);
        let (stored, rounded) = (trained(stored, 2), trained(rounded, 2));
        let mut cfg = config();
        cfg.tied_head = tied;
        let exact = trained(
            cfg.init::<B>(3, &dev)
                .with_lora(&LoraConfig::default(), 5)
                .unwrap(),
            2,
        );
        let block = &stored.blocks[0];
        assert_eq!(stored.wte.weight.val().dtype(), DType::BF16);
        assert_eq!(block.mlp.w3.weight.val().dtype(), DType::BF16);
        assert_eq!(
            stored.lm_head.as_ref().map(|h| h.weight.val().dtype()),
            (!tied).then_some(DType::BF16)
        );
        let adapter = block.attn.lora_q.as_ref().expect("an adapter on q");
        assert_eq!(adapter.a.val().dtype(), DType::F32);
        assert_eq!(
            block.attn.q.bias.as_ref().map(|b| b.val().dtype()),
            Some(DType::F32)
        );

        assert_eq!(logits(&stored), logits(&rounded), "tied {tied}");
        let (near, exact) = (logits(&stored), logits(&exact));
        let scale = exact.iter().fold(0f32, |m, x| m.max(x.abs()));
        let off = near
            .iter()
            .zip(&exact)
            .fold(0f32, |m, (a, b)| m.max((a - b).abs()));
        assert!(
            off > 0.0 && off < 2e-2 * scale,
            "tied {tied}: {off} of {scale}"
        );

        let merged = stored.merged();
        assert_eq!(merged.wte.weight.val().dtype(), DType::F32);
        assert_eq!(merged.blocks[0].attn.q.weight.val().dtype(), DType::F32);
        assert_eq!(logits(&merged), logits(&rounded.merged()), "tied {tied}");
    }
}

/// Through the backward pass too: the adapters of a bfloat16 base get
/// exactly the gradients they get over float32 weights rounded to bfloat16
/// (the frozen product keeps the narrow weight and widens it again), with
/// an untied and a tied head.
#[test]
fn a_bf16_base_gives_the_gradients_of_its_rounded_weights() {
    type A = Autodiff<B>;
    let dev = Default::default();
    for tied in [false, true] {
        let (stored, rounded) = bf16_and_rounded::<A>(tied);
        let grads = |m: Denoiser<A>| -> Vec<Vec<f32>> {
            let m = trained(m, 2);
            let logits = m.forward(Denoiser::input(&TOKENS, 2, 4, &dev));
            let weights =
                Tensor::<A, 3>::random(logits.dims(), burn::tensor::Distribution::Default, &dev);
            let g = (logits * weights).sum().backward();
            m.adapters()
                .iter()
                .flat_map(|(_, _, ad)| [ad.a.val(), ad.b.val()])
                .map(|p| {
                    p.grad(&g)
                        .expect("a gradient")
                        .into_data()
                        .to_vec()
                        .unwrap()
                })
                .collect()
        };
        B::seed(&dev, 9);
        let g_stored = grads(stored);
        B::seed(&dev, 9);
        let g_rounded = grads(rounded);
        assert_eq!(g_stored.len(), 2 * 7 * 2);
        assert!(g_stored.iter().flatten().any(|x| *x != 0.0));
        assert_eq!(g_stored, g_rounded, "tied {tied}");
    }
}
