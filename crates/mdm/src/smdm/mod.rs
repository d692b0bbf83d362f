//! Weight interchange with SMDM (Nie et al. 2024), whose denoiser is lit-gpt's
//! `TransEncoder`: safetensors files with its tensor names and PyTorch's
//! `[out, in]` matrix layout, so that a model trained with SMDM's code loads
//! here and one trained here loads there.
//!
//! | SMDM tensor | shape | here |
//! | --- | --- | --- |
//! | `transformer.wte.weight` | `[V + 1, d]` (mask row last) | `wte` |
//! | `transformer.h.{i}.norm_1.weight` | `[d]` | `blocks[i].norm_1` |
//! | `transformer.h.{i}.attn.attn.weight` | `[3d, d]`, per head `q_h, k_h, v_h` rows | `q`, `k`, `v` |
//! | `transformer.h.{i}.attn.proj.weight` | `[d, d]` | `proj` |
//! | `transformer.h.{i}.norm_2.weight` | `[d]` | `norm_2` |
//! | `transformer.h.{i}.mlp.swiglu.w1.weight`, `w2` | `[ff, d]` | `w1`, `w2` |
//! | `transformer.h.{i}.mlp.swiglu.w3.weight` | `[d, ff]` | `w3` (out = `w3(silu(w1 x) * w2 x)`) |
//! | `transformer.ln_f.weight` | `[d]` | `ln_f` |
//! | `lm_head.weight` | `[V, d]` | `lm_head` |
//!
//! burn's `Linear` stores `[in, out]`, so every matrix but the embedding is
//! transposed on the way. Import reads float32, float16 and bfloat16.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use burn::nn::Linear;
use burn::prelude::*;
use safetensors::tensor::{Dtype, TensorView};

pub mod release;

use crate::host::{Host, floats, param, to_host, transpose};
use crate::weights::WeightsError;
use crate::{Denoiser, DenoiserConfig};

/// Whether `path` is a safetensors file in SMDM's layout (it holds
/// `transformer.wte.weight`), from its header alone. Unreadable files
/// answer false.
pub fn is_smdm_file(path: &Path) -> bool {
    path.is_file()
        && crate::hf::tensor_shapes(path)
            .is_ok_and(|shapes| shapes.contains_key("transformer.wte.weight"))
}

/// What `model` has that SMDM's layout (lit-gpt's `TransEncoder`) cannot
/// hold, in words; empty when it fits.
fn beyond_smdm<B: Backend>(model: &Denoiser<B>) -> Vec<&'static str> {
    let mut beyond = Vec::new();
    if let Some(b) = model.blocks.first() {
        if b.attn.n_kv_heads != b.attn.n_heads {
            beyond.push("grouped-query attention");
        }
        if b.attn.q.bias.is_some() {
            beyond.push("q/k/v biases");
        }
    }
    if model.lm_head.is_none() {
        beyond.push("a tied head");
    }
    if model.logit_shift {
        beyond.push("shifted logits");
    }
    if model.has_lora() {
        beyond.push("LoRA adapters (merge them first: `cogrpo export --merge`)");
    }
    beyond
}

/// The denoiser's tensors under SMDM's names, in PyTorch layout (a model
/// that [`beyond_smdm`] passes).
fn smdm_tensors<B: Backend>(model: &Denoiser<B>) -> BTreeMap<String, Host> {
    let mut out = BTreeMap::new();
    let linear_t = |l: &Linear<B>| transpose(&to_host(l.weight.val()));
    out.insert(
        "transformer.wte.weight".into(),
        to_host(model.wte.weight.val()),
    );
    for (i, b) in model.blocks.iter().enumerate() {
        let p = format!("transformer.h.{i}");
        out.insert(format!("{p}.norm_1.weight"), to_host(b.norm_1.gamma.val()));
        out.insert(format!("{p}.norm_2.weight"), to_host(b.norm_2.gamma.val()));
        let (q, k, v) = (
            linear_t(&b.attn.q),
            linear_t(&b.attn.k),
            linear_t(&b.attn.v),
        );
        let d = q.shape[1];
        let hd = d / b.attn.n_heads;
        let mut fused = Vec::with_capacity(3 * d * d);
        // lit-gpt groups rows per head: q_h, k_h, v_h for h = 0..n_heads.
        for h in 0..b.attn.n_heads {
            for m in [&q, &k, &v] {
                fused.extend_from_slice(&m.values[h * hd * d..(h + 1) * hd * d]);
            }
        }
        out.insert(
            format!("{p}.attn.attn.weight"),
            Host {
                shape: vec![3 * d, d],
                values: fused,
            },
        );
        out.insert(format!("{p}.attn.proj.weight"), linear_t(&b.attn.proj));
        out.insert(format!("{p}.mlp.swiglu.w1.weight"), linear_t(&b.mlp.w1));
        out.insert(format!("{p}.mlp.swiglu.w2.weight"), linear_t(&b.mlp.w2));
        out.insert(format!("{p}.mlp.swiglu.w3.weight"), linear_t(&b.mlp.w3));
    }
    out.insert(
        "transformer.ln_f.weight".into(),
        to_host(model.ln_f.gamma.val()),
    );
    let head = model.lm_head.as_ref().expect("checked by beyond_smdm");
    out.insert("lm_head.weight".into(), linear_t(head));
    out
}

/// Writes `model` as an SMDM safetensors file (float32), atomically.
pub fn export<B: Backend>(model: &Denoiser<B>, path: &Path) -> Result<(), WeightsError> {
    let err = |message: String| WeightsError::Write {
        path: path.to_path_buf(),
        message,
    };
    let beyond = beyond_smdm(model);
    if !beyond.is_empty() {
        return Err(err(format!(
            "SMDM's layout (lit-gpt's TransEncoder) has no {}",
            beyond.join(", ")
        )));
    }
    let tensors = smdm_tensors(model);
    let bytes: Vec<(String, Vec<u8>, Vec<usize>)> = tensors
        .into_iter()
        .map(|(name, h)| {
            let b: Vec<u8> = h.values.iter().flat_map(|x| x.to_le_bytes()).collect();
            (name, b, h.shape)
        })
        .collect();
    let views: Vec<(String, TensorView)> = bytes
        .iter()
        .map(|(n, b, s)| {
            TensorView::new(Dtype::F32, s.clone(), b)
                .map(|v| (n.clone(), v))
                .map_err(|e| err(e.to_string()))
        })
        .collect::<Result<_, _>>()?;
    let mut meta = HashMap::new();
    meta.insert("format".to_string(), "pt".to_string());
    meta.insert(
        "source".to_string(),
        "cogrpo (SMDM TransEncoder layout)".to_string(),
    );
    let data = safetensors::serialize(views, Some(meta)).map_err(|e| err(e.to_string()))?;
    crate::atomic::write(path, &data).map_err(|e| err(e.to_string()))
}

/// Reads an SMDM safetensors file into a denoiser of shape `cfg`. Every
/// missing, mis-shaped, unexpected or non-float tensor is named in the error.
pub fn import<B: Backend>(
    cfg: &DenoiserConfig,
    path: &Path,
    device: &B::Device,
) -> Result<Denoiser<B>, WeightsError> {
    let read_err = |message: String| WeightsError::Read {
        path: path.to_path_buf(),
        message,
    };
    let bytes = read_regular(path).map_err(read_err)?;
    let file =
        safetensors::SafeTensors::deserialize(&bytes).map_err(|e| read_err(e.to_string()))?;
    let mut model = cfg.init::<B>(0, device);
    let beyond = beyond_smdm(&model);
    if !beyond.is_empty() {
        return Err(read_err(format!(
            "SMDM's layout (lit-gpt's TransEncoder) has no {}, which the config asks for",
            beyond.join(", ")
        )));
    }
    let expected = smdm_tensors(&model);
    let loaded = read_expected(&file, &expected).map_err(|message| WeightsError::Mismatch {
        path: path.to_path_buf(),
        message,
    })?;
    let take = |name: &str| loaded.get(name).expect("checked above");
    let set_linear = |l: &mut Linear<B>, m: &Host| {
        let t = transpose(m);
        l.weight = param(l.weight.id, t, device);
    };
    model.wte.weight = param(
        model.wte.weight.id,
        take("transformer.wte.weight").clone(),
        device,
    );
    let d = cfg.d_model;
    let hd = cfg.head_dim();
    for (i, b) in model.blocks.iter_mut().enumerate() {
        let p = format!("transformer.h.{i}");
        b.norm_1.gamma = param(
            b.norm_1.gamma.id,
            take(&format!("{p}.norm_1.weight")).clone(),
            device,
        );
        b.norm_2.gamma = param(
            b.norm_2.gamma.id,
            take(&format!("{p}.norm_2.weight")).clone(),
            device,
        );
        let fused = take(&format!("{p}.attn.attn.weight"));
        let mut qkv = [Vec::new(), Vec::new(), Vec::new()];
        for h in 0..cfg.n_heads {
            for (j, part) in qkv.iter_mut().enumerate() {
                let start = (h * 3 + j) * hd * d;
                part.extend_from_slice(&fused.values[start..start + hd * d]);
            }
        }
        let [q, k, v] = qkv.map(|values| Host {
            shape: vec![d, d],
            values,
        });
        set_linear(&mut b.attn.q, &q);
        set_linear(&mut b.attn.k, &k);
        set_linear(&mut b.attn.v, &v);
        set_linear(&mut b.attn.proj, take(&format!("{p}.attn.proj.weight")));
        set_linear(&mut b.mlp.w1, take(&format!("{p}.mlp.swiglu.w1.weight")));
        set_linear(&mut b.mlp.w2, take(&format!("{p}.mlp.swiglu.w2.weight")));
        set_linear(&mut b.mlp.w3, take(&format!("{p}.mlp.swiglu.w3.weight")));
    }
    model.ln_f.gamma = param(
        model.ln_f.gamma.id,
        take("transformer.ln_f.weight").clone(),
        device,
    );
    if let Some(head) = model.lm_head.as_mut() {
        set_linear(head, take("lm_head.weight"));
    }
    Ok(model)
}

/// The bytes of `path`, a regular file (not a device, FIFO or folder,
/// whose reads never end).
fn read_regular(path: &Path) -> Result<Vec<u8>, String> {
    if path.exists() && !path.is_file() {
        return Err("not a regular file (a directory, device or FIFO)".into());
    }
    std::fs::read(path).map_err(|e| e.to_string())
}

/// Every tensor of `expected` from `file`, as float32 on the host; every
/// missing, mis-shaped, unexpected or non-float tensor named (sorted, `; `
/// between them).
fn read_expected(
    file: &safetensors::SafeTensors<'_>,
    expected: &BTreeMap<String, Host>,
) -> Result<BTreeMap<String, Host>, String> {
    let mut problems = Vec::new();
    let mut loaded: BTreeMap<String, Host> = BTreeMap::new();
    for (name, want) in expected {
        match file.tensor(name) {
            Err(_) => problems.push(format!("tensor `{name}` {:?} is missing", want.shape)),
            Ok(t) if t.shape() != want.shape.as_slice() => problems.push(format!(
                "tensor `{name}` has shape {:?}, the config needs {:?}",
                t.shape(),
                want.shape
            )),
            Ok(t) => match floats(&t) {
                Some(values) => {
                    loaded.insert(
                        name.clone(),
                        Host {
                            shape: want.shape.clone(),
                            values,
                        },
                    );
                }
                None => problems.push(format!(
                    "tensor `{name}` has dtype {:?}; float32, float16 or bfloat16 expected",
                    t.dtype()
                )),
            },
        }
    }
    for name in file.names() {
        if !expected.contains_key(name) {
            problems.push(format!("tensor `{name}` has no place in the denoiser"));
        }
    }
    if problems.is_empty() {
        return Ok(loaded);
    }
    problems.sort();
    Err(problems.join("; "))
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::backend::Flex;

    type B = Flex;

    fn tmp(name: &str) -> std::path::PathBuf {
        let dir = std::env::temp_dir().join(format!("mdm-smdm-{name}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        dir.join("model.safetensors")
    }

    #[test]
    fn export_then_import_gives_identical_logits() {
        let dev = Default::default();
        let cfg = DenoiserConfig::new(7, 32, 2, 4, 48, 10);
        let a = cfg.init::<B>(3, &dev);
        let path = tmp("rt");
        export(&a, &path).unwrap();
        assert!(is_smdm_file(&path));
        let b = import::<B>(&cfg, &path, &dev).unwrap();
        let x = || Denoiser::<B>::input(&[7, 1, 2, 7, 7, 3, 0, 7, 5, 7], 1, 10, &dev);
        assert_eq!(a.forward(x()).into_data(), b.forward(x()).into_data());
    }

    /// The fused matrix follows lit-gpt's per-head grouping: rows
    /// `[h * 3 hd, h * 3 hd + hd)` are head h's queries, then its keys and values.
    #[test]
    fn fused_attention_rows_are_grouped_per_head() {
        let dev = Default::default();
        let cfg = DenoiserConfig::new(5, 8, 1, 2, 16, 4);
        let m = cfg.init::<B>(1, &dev);
        let t = smdm_tensors(&m);
        let fused = &t["transformer.h.0.attn.attn.weight"];
        assert_eq!(fused.shape, vec![24, 8]);
        // PyTorch row r of k is burn column r of k's [in, out] weight.
        let k = to_host(m.blocks[0].attn.k.weight.val());
        let (hd, d) = (4, 8);
        for h in 0..2 {
            for r in 0..hd {
                for c in 0..d {
                    let got = fused.values[(h * 3 * hd + hd + r) * d + c];
                    assert_eq!(
                        got,
                        k.values[c * d + h * hd + r],
                        "head {h} row {r} col {c}"
                    );
                }
            }
        }
    }

    #[test]
    fn mismatches_name_the_tensor() {
        let dev = Default::default();
        let path = tmp("mm");
        export(
            &DenoiserConfig::new(7, 32, 1, 4, 48, 10).init::<B>(3, &dev),
            &path,
        )
        .unwrap();
        let err = import::<B>(&DenoiserConfig::new(7, 32, 2, 4, 64, 10), &path, &dev)
            .err()
            .unwrap()
            .to_string();
        assert!(
            err.contains("`transformer.h.1.norm_1.weight` [32] is missing"),
            "{err}"
        );
        assert!(
            err.contains("`transformer.h.0.mlp.swiglu.w1.weight` has shape [48, 32], the config needs [64, 32]"),
            "{err}"
        );
        let err = import::<B>(&DenoiserConfig::new(9, 32, 1, 4, 48, 10), &path, &dev)
            .err()
            .unwrap()
            .to_string();
        assert!(
            err.contains("`transformer.wte.weight` has shape [8, 32]"),
            "{err}"
        );
        // A burn-layout file is not an SMDM file.
        let native = tmp("native");
        crate::weights::save(
            &DenoiserConfig::new(7, 32, 1, 4, 48, 10).init::<B>(3, &dev),
            &native,
        )
        .unwrap();
        assert!(!is_smdm_file(&native));
        let err = import::<B>(&DenoiserConfig::new(7, 32, 1, 4, 48, 10), &native, &dev)
            .err()
            .unwrap()
            .to_string();
        assert!(
            err.contains("`transformer.wte.weight` [8, 32] is missing"),
            "{err}"
        );
        assert!(err.contains("`lm_head.weight` has shape [32, 7]"), "{err}");
        assert!(err.contains("has no place in the denoiser"), "{err}");
    }

    #[test]
    fn bfloat16_files_load() {
        let dev = Default::default();
        let cfg = DenoiserConfig::new(5, 8, 1, 2, 16, 4);
        let m = cfg.init::<B>(2, &dev);
        let tensors = smdm_tensors(&m);
        let bytes: Vec<(String, Vec<u8>, Vec<usize>)> = tensors
            .into_iter()
            .map(|(n, h)| {
                let b: Vec<u8> = h
                    .values
                    .iter()
                    .flat_map(|&x| half::bf16::from_f32(x).to_le_bytes())
                    .collect();
                (n, b, h.shape)
            })
            .collect();
        let views: Vec<(String, TensorView)> = bytes
            .iter()
            .map(|(n, b, s)| {
                (
                    n.clone(),
                    TensorView::new(Dtype::BF16, s.clone(), b).unwrap(),
                )
            })
            .collect();
        let path = tmp("bf16");
        std::fs::write(&path, safetensors::serialize(views, None).unwrap()).unwrap();
        let back = import::<B>(&cfg, &path, &dev).unwrap();
        let w0 = to_host(m.lm_head.as_ref().unwrap().weight.val());
        let w1 = to_host(back.lm_head.as_ref().unwrap().weight.val());
        for (a, b) in w0.values.iter().zip(&w1.values) {
            assert!((a - b).abs() <= a.abs() / 128.0 + 1e-6, "{a} vs {b}");
        }
    }
}
