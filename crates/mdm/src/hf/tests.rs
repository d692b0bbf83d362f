//! Model directories written and read back in each layout, and every kind
//! of bad directory refused by name.

use std::path::{Path, PathBuf};

use burn::backend::Flex;
use burn::module::{ModuleMapper, Param};
use burn::prelude::*;
use safetensors::Dtype;
use safetensors::tensor::TensorView;

use super::*;
use crate::DenoiserConfig;
use crate::kernels::cpu::testing::rel_err;

type B = Flex;

fn tmpdir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("mdm-hf-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Gives every vector parameter (norm gains, biases that start at zero)
/// distinct values, so that a bias or gain read into the wrong place
/// changes the logits.
struct Distinct(usize);

impl ModuleMapper<B> for Distinct {
    fn map_float<const D: usize>(&mut self, p: Param<Tensor<B, D>>) -> Param<Tensor<B, D>> {
        let (id, t, mapper) = p.consume();
        let t = if D == 1 {
            self.0 += 1;
            let n = t.dims()[0];
            let v: Vec<f32> = (0..n)
                .map(|i| 1.0 + 0.3 * ((self.0 * 17 + i) as f32).sin())
                .collect();
            Tensor::from_data(TensorData::new(v, t.dims()), &Default::default())
        } else {
            t * 10.0
        };
        Param::from_mapped_value(id, t, mapper)
    }
}

fn llada(tied: bool) -> HfConfig {
    let mut d = DenoiserConfig::new(11, 16, 2, 4, 24, 32);
    d.n_kv_heads = Some(2);
    d.tied_head = tied;
    d.rope_base = 500_000.0;
    HfConfig {
        architecture: Architecture::Llada,
        denoiser: d,
        mask_token_id: 9,
        own_mask: false,
        torch_dtype: None,
    }
}

fn dream(tied: bool) -> HfConfig {
    let mut d = DenoiserConfig::new(13, 16, 2, 4, 24, 32);
    d.n_kv_heads = Some(1);
    d.qkv_bias = true;
    d.logit_shift = true;
    d.tied_head = tied;
    d.norm_eps = 1e-6;
    HfConfig {
        architecture: Architecture::Dream,
        denoiser: d,
        mask_token_id: 12,
        own_mask: false,
        torch_dtype: None,
    }
}

fn logits(m: &Denoiser<B>, tokens: &[u32]) -> Vec<f32> {
    let dev = Default::default();
    m.forward(Denoiser::<B>::input(tokens, 1, tokens.len(), &dev))
        .into_data()
        .to_vec()
        .unwrap()
}

/// Input ids with the denoiser's mask (`vocab_size`) and no released mask
/// token (whose row the file does not keep).
fn tokens(cfg: &HfConfig) -> Vec<u32> {
    let v = cfg.denoiser.vocab_size as u32;
    vec![1, v, 3, 0, v, 7, 2]
}

fn written(cfg: &HfConfig, name: &str, dtype: StoredDtype, shard: usize) -> (Denoiser<B>, PathBuf) {
    let dev = Default::default();
    let model = cfg.denoiser.init::<B>(5, &dev).map(&mut Distinct(0));
    let dir = tmpdir(name);
    write(&model, cfg, None, &dir, dtype, shard).unwrap();
    (model, dir)
}

#[test]
fn each_layout_round_trips_to_identical_logits() {
    for (name, cfg) in [
        ("llada", llada(false)),
        ("llada-tied", llada(true)),
        ("dream", dream(false)),
        ("dream-tied", dream(true)),
    ] {
        let (model, dir) = written(&cfg, name, StoredDtype::F32, usize::MAX);
        assert!(dir.join("model.safetensors").is_file() && !dir.join(shards::INDEX).exists());
        let hf = HfModel::open(&dir).unwrap();
        assert_eq!(hf.config.architecture, cfg.architecture, "{name}");
        assert_eq!(hf.config.denoiser, cfg.denoiser, "{name}");
        assert_eq!(hf.mask_token_id(), cfg.mask_token_id, "{name}");
        let back = hf.load::<B>(None, &Default::default()).unwrap();
        let t = tokens(&cfg);
        let (v, m) = (cfg.denoiser.vocab_size, cfg.mask_token_id as usize);
        // A tied head reads the mask token's logit from its embedding row,
        // which the file gives the denoiser's mask row: that one logit
        // (never a target) changes.
        let keep = |l: Vec<f32>| -> Vec<f32> {
            l.into_iter()
                .enumerate()
                .filter(|(i, _)| !cfg.denoiser.tied_head || i % v != m)
                .map(|(_, x)| x)
                .collect()
        };
        assert_eq!(keep(logits(&model, &t)), keep(logits(&back, &t)), "{name}");
        // The released mask token's id reads the same row as the denoiser's.
        let with = |id: usize| logits(&back, &[1, id as u32, 3]);
        assert_eq!(with(v), with(m), "{name}");
    }
}

/// A model cogrpo trained keeps its own vocabulary: the file gets the mask
/// row last and a zero head row for it, and reads back exactly.
#[test]
fn a_cogrpo_model_round_trips_exactly_with_its_mask_row_last() {
    for (name, mut cfg) in [("own-llada", llada(false)), ("own-dream-tied", dream(true))] {
        cfg = HfConfig::own(cfg.architecture, cfg.denoiser);
        let (model, dir) = written(&cfg, name, StoredDtype::F32, usize::MAX);
        let text = std::fs::read_to_string(dir.join("config.json")).unwrap();
        let v = cfg.denoiser.vocab_size;
        assert!(
            text.contains(&format!("\"cogrpo_vocab_size\": {v}")),
            "{text}"
        );
        assert!(text.contains(&format!("\"mask_token_id\": {v}")), "{text}");
        let hf = HfModel::open(&dir).unwrap();
        let read = HfConfig {
            torch_dtype: None,
            ..hf.config.clone()
        };
        assert_eq!(read, cfg, "{name}");
        let back = hf.load::<B>(None, &Default::default()).unwrap();
        let t = tokens(&cfg);
        assert_eq!(logits(&model, &t), logits(&back, &t), "{name}");
    }
}

#[test]
fn bf16_shards_with_an_index_load_and_write_back_unchanged() {
    let cfg = dream(false);
    // Shards of ~2 KB: several files and an index.
    let (model, dir) = written(&cfg, "bf16", StoredDtype::Bf16, 2048);
    let index = std::fs::read_to_string(dir.join(shards::INDEX)).unwrap();
    assert!(index.contains("model-00002-of-"), "{index}");
    let hf = HfModel::open(&dir).unwrap();
    let a = hf.load::<B>(Some(8), &Default::default()).unwrap();
    // bfloat16 keeps 8 bits of mantissa: logits within a few percent.
    let t = tokens(&cfg);
    let (exact, rounded) = (logits(&model, &t), logits(&a, &t));
    let e = rel_err(&rounded, &exact);
    assert!(e > 0.0 && e < 5e-2, "relative error {e:e}");
    // Values already in bfloat16 survive another round exactly.
    let again = tmpdir("bf16-again");
    write(
        &a,
        &hf.config,
        Some(&hf.raw),
        &again,
        StoredDtype::Bf16,
        2048,
    )
    .unwrap();
    let b = HfModel::open(&again)
        .unwrap()
        .load::<B>(Some(8), &Default::default())
        .unwrap();
    assert_eq!(logits(&a, &t), logits(&b, &t));
    // The context a load was trimmed to stays the model's in config.json.
    let text = std::fs::read_to_string(again.join("config.json")).unwrap();
    assert!(text.contains("\"max_position_embeddings\": 32"), "{text}");
}

fn err(dir: &Path) -> String {
    match HfModel::open(dir).and_then(|hf| hf.load::<B>(None, &Default::default())) {
        Ok(_) => panic!("{} loaded", dir.display()),
        Err(e) => e.to_string(),
    }
}

fn edit_config(dir: &Path, key: &str, value: serde_json::Value) {
    let path = dir.join("config.json");
    let mut json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    json[key] = value;
    std::fs::write(path, json.to_string()).unwrap();
}

#[test]
fn damaged_shards_are_refused_by_file() {
    let cfg = llada(false);
    // A truncated shard.
    let (_, dir) = written(&cfg, "trunc", StoredDtype::Bf16, 2048);
    let shard = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.to_string_lossy().contains("model-00002-of-"))
        .expect("a second shard");
    let shard_name = shard.file_name().unwrap().to_string_lossy().to_string();
    let len = std::fs::metadata(&shard).unwrap().len();
    std::fs::OpenOptions::new()
        .write(true)
        .open(&shard)
        .unwrap()
        .set_len(len - 10)
        .unwrap();
    let e = err(&dir);
    assert!(e.contains(&shard_name) && e.contains("truncated"), "{e}");
    // An index naming a shard that is not there.
    std::fs::remove_file(&shard).unwrap();
    let e = err(&dir);
    assert!(
        e.contains(&format!("names shard `{shard_name}`")) && e.contains("missing"),
        "{e}"
    );
}

#[test]
fn configs_the_denoiser_cannot_follow_are_refused_by_key() {
    // A config that disagrees with the tensors' shapes.
    let (_, dir) = written(&llada(false), "shape", StoredDtype::F32, usize::MAX);
    edit_config(&dir, "mlp_hidden_size", 32.into());
    let e = err(&dir);
    assert!(
        e.contains("`model.transformer.blocks.0.ff_proj.weight`") && e.contains("[32, 16]"),
        "{e}"
    );

    // The mask token outside the vocabulary; an architecture cogrpo lacks;
    // a setting its denoiser does not have.
    edit_config(&dir, "mlp_hidden_size", 24.into());
    edit_config(&dir, "mask_token_id", 11.into());
    let e = err(&dir);
    assert!(
        e.contains("config.json") && e.contains("`mask_token_id` is 11, outside"),
        "{e}"
    );
    edit_config(&dir, "mask_token_id", 9.into());
    edit_config(&dir, "model_type", "gpt2".into());
    edit_config(
        &dir,
        "architectures",
        serde_json::json!(["GPT2LMHeadModel"]),
    );
    let e = err(&dir);
    assert!(
        e.contains("`model_type` is \"gpt2\"") && e.contains("LLaDA"),
        "{e}"
    );
    edit_config(&dir, "model_type", "llada".into());
    edit_config(&dir, "scale_logits", true.into());
    let e = err(&dir);
    assert!(e.contains("`scale_logits` is true"), "{e}");
    edit_config(&dir, "scale_logits", false.into());
    assert!(
        HfModel::open(&dir)
            .unwrap()
            .load::<B>(None, &Default::default())
            .is_ok()
    );
}

#[test]
fn a_non_finite_weight_is_named() {
    let (_, dir) = written(&llada(false), "nan", StoredDtype::F32, usize::MAX);
    let path = dir.join("model.safetensors");
    let mut bytes = std::fs::read(&path).unwrap();
    // The last four bytes are the last float of the last tensor in the file.
    let n = bytes.len();
    bytes[n - 4..].copy_from_slice(&f32::NAN.to_le_bytes());
    std::fs::write(&path, bytes).unwrap();
    let e = err(&dir);
    assert!(
        e.contains("model.safetensors") && e.contains("1 NaN or infinite"),
        "{e}"
    );
}

#[test]
fn tensors_of_the_wrong_dtype_or_with_no_place_are_named() {
    let (_, dir) = written(&llada(false), "dtype", StoredDtype::F32, usize::MAX);
    // An integer tensor where a weight belongs, and a tensor with no place.
    let path = dir.join("model.safetensors");
    let bytes = std::fs::read(&path).unwrap();
    let file = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let ints = vec![0u8; 16 * 4];
    let mut views: Vec<(String, TensorView)> = file
        .tensors()
        .into_iter()
        .filter(|(n, _)| n != "model.transformer.ln_f.weight")
        .collect();
    views.push((
        "model.transformer.ln_f.weight".into(),
        TensorView::new(Dtype::I32, vec![16], &ints).unwrap(),
    ));
    views.push((
        "model.transformer.extra.weight".into(),
        TensorView::new(Dtype::F32, vec![16], &ints).unwrap(),
    ));
    let data = safetensors::serialize(views, None).unwrap();
    std::fs::write(&path, data).unwrap();
    let e = err(&dir);
    assert!(
        e.contains("`model.transformer.ln_f.weight`") && e.contains("I32"),
        "{e}"
    );
    assert!(
        e.contains("`model.transformer.extra.weight` has no place"),
        "{e}"
    );
}

/// LLaDA-8B-Instruct's published `config.json` (its shape keys): cogrpo
/// counts the parameters the release reports, 8.0B.
#[test]
fn llada_8b_config_counts_8_billion_parameters() {
    let dir = tmpdir("llada8b");
    std::fs::write(
        dir.join("config.json"),
        r#"{"architectures": ["LLaDAModelLM"], "model_type": "llada",
            "activation_type": "silu", "alibi": false, "block_type": "llama",
            "d_model": 4096, "embedding_size": 126464, "include_bias": false,
            "include_qkv_bias": false, "layer_norm_type": "rms", "mask_token_id": 126336,
            "max_sequence_length": 4096, "mlp_hidden_size": 12288, "mlp_ratio": 4,
            "multi_query_attention": null, "n_heads": 32, "n_kv_heads": 32, "n_layers": 32,
            "rms_norm_eps": 1e-05, "rope": true, "rope_theta": 500000.0,
            "scale_logits": false, "vocab_size": 126464, "weight_tying": false,
            "torch_dtype": "bfloat16"}"#,
    )
    .unwrap();
    let hf = HfModel::open(&dir).unwrap();
    assert_eq!(hf.config.num_params(), 8_015_581_184);
    assert_eq!(hf.config.denoiser.kv_heads(), 32);
    assert_eq!(hf.config.torch_dtype.as_deref(), Some("bfloat16"));
    // No weights: a clear error, not a panic.
    let e = err(&dir);
    assert!(e.contains("neither model.safetensors nor"), "{e}");
}

/// Dream-v0-7B's `config.json` (Qwen2.5-7B's shape): 7.6B parameters,
/// Qwen2.5-7B's published count, with grouped-query attention, biases and
/// the shift read from the architecture.
#[test]
fn dream_7b_config_counts_qwen_2_5_7b_parameters() {
    let dir = tmpdir("dream7b");
    std::fs::write(
        dir.join("config.json"),
        r#"{"architectures": ["DreamModel"], "model_type": "Dream", "hidden_size": 3584,
            "intermediate_size": 18944, "num_hidden_layers": 28, "num_attention_heads": 28,
            "num_key_value_heads": 4, "vocab_size": 152064, "max_position_embeddings": 131072,
            "rope_theta": 1000000.0, "rms_norm_eps": 1e-06, "tie_word_embeddings": false,
            "mask_token_id": 151666, "hidden_act": "silu", "rope_scaling": null,
            "use_sliding_window": false}"#,
    )
    .unwrap();
    let c = HfModel::open(&dir).unwrap().config;
    assert_eq!(c.num_params(), 7_615_616_512);
    let d = &c.denoiser;
    assert_eq!(
        (d.kv_heads(), d.qkv_bias, d.logit_shift, d.tied_head),
        (4, true, true, false)
    );
}

/// A fixture's `reference.safetensors`: token rows, their shape and the
/// reference code's float32 logits.
fn reference(dir: &Path) -> (Vec<u32>, [usize; 2], Vec<f32>) {
    let bytes = std::fs::read(dir.join("reference.safetensors")).unwrap();
    let file = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let ids = file.tensor("input_ids").unwrap();
    let tokens: Vec<u32> = ids
        .data()
        .chunks_exact(8)
        .map(|b| i64::from_le_bytes(b.try_into().unwrap()) as u32)
        .collect();
    let logits = crate::host::floats(&file.tensor("logits").unwrap()).unwrap();
    (tokens, [ids.shape()[0], ids.shape()[1]], logits)
}

/// `bench/hf_reference.py` also ran SMDM's own `lit_gpt` TransEncoder (its
/// GPU-only imports stood in for by their math) on a tiny model in SMDM's
/// release layout (one bfloat16 file, no config, lit-gpt's vocabulary of
/// 1,000 padded to 1,024, the mask row last): cogrpo, reading the shape off
/// the tensors (the head count given, as the shape is not in SMDM's
/// table), agrees within 1e-5 relative.
#[test]
fn smdm_logits_agree_with_smdms_pytorch_code() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/hf/smdm");
    let file = dir.join("mdm-tiny.safetensors");
    let dev = Default::default();
    let (tokens, [rows, len], want) = reference(&dir);
    let release = crate::smdm::release::read(&file, Some(4)).unwrap();
    assert_eq!(release.name, None);
    let mut shape = release.denoiser.clone();
    assert_eq!(
        (shape.vocab_size, shape.d_model, shape.n_layers, shape.d_ff),
        (1024, 32, 2, 48)
    );
    assert!(
        crate::smdm::release::read(&file, None).is_err(),
        "4 heads is in no shape"
    );
    shape.max_len = len;
    let model = crate::smdm::import::<B>(&shape, &file, &dev).unwrap();
    let got: Vec<f32> = model
        .forward(Denoiser::<B>::input(&tokens, rows, len, &dev))
        .into_data()
        .to_vec()
        .unwrap();
    let e = rel_err(&got, &want);
    println!("smdm: max |cogrpo - PyTorch| / max |logit| = {e:.2e}");
    assert!(e < 1e-5, "relative error {e:e}");
}

/// The releases' own PyTorch code (`bench/hf_models/`, run by
/// `bench/hf_reference.py`) wrote tiny random LLaDA and Dream models in
/// their real layout (two bfloat16 shards and an index) with the float32
/// logits of two token rows (Dream's read shifted, as its sampler reads
/// them): cogrpo's logits agree within 1e-5 relative, grouped-query
/// attention, Dream's biases and the shift included.
#[test]
fn logits_agree_with_the_releases_pytorch_code() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/hf");
    let dev = Default::default();
    for name in ["llada", "dream"] {
        let dir = root.join(name);
        let shards = std::fs::read_dir(&dir)
            .unwrap()
            .filter(|e| {
                e.as_ref()
                    .unwrap()
                    .file_name()
                    .to_string_lossy()
                    .starts_with("model-")
            })
            .count();
        assert!(
            shards >= 2 && dir.join(shards::INDEX).is_file(),
            "{name}: {shards} shards"
        );
        let (tokens, [rows, len], want) = reference(&dir);
        let hf = HfModel::open(&dir).unwrap();
        assert_eq!(hf.config.torch_dtype.as_deref(), Some("bfloat16"), "{name}");
        let model = hf.load::<B>(Some(len), &dev).unwrap();
        let got: Vec<f32> = model
            .forward(Denoiser::<B>::input(&tokens, rows, len, &dev))
            .into_data()
            .to_vec()
            .unwrap();
        assert_eq!(got.len(), want.len(), "{name}");
        let e = rel_err(&got, &want);
        println!("{name}: max |cogrpo - PyTorch| / max |logit| = {e:.2e}");
        assert!(e < 1e-5, "{name}: relative error {e:e}");
    }
}
