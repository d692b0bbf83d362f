//! Module weights on disk (safetensors): the denoiser's, and any other
//! burn module's (schedule policies, the image classifiers).
//!
//! Writes are atomic: the file is written next to its destination and renamed
//! over it, so a crash leaves either the old file or the new one. Loading
//! checks every tensor: a missing, unexpected or mis-shaped tensor is an error
//! that names it.

use std::path::{Path, PathBuf};

use burn::prelude::*;
use burn_store::{ModuleSnapshot, SafetensorsStore};

#[derive(Debug, thiserror::Error)]
pub enum WeightsError {
    #[error("cannot write weights to {path}: {message}")]
    Write { path: PathBuf, message: String },
    #[error("cannot load weights from {path}: {message}")]
    Read { path: PathBuf, message: String },
    #[error("weights in {path} do not fit the model: {message}")]
    Mismatch { path: PathBuf, message: String },
}

/// Whether a tensor belongs to a LoRA adapter set ([`crate::lora`]):
/// `blocks.{i}.attn.lora_q.a`, ... (`container` is burn's, unused).
fn is_adapter(path: &str, _container: &str) -> bool {
    path.contains(".lora_")
}

/// Which of a module's tensors a file holds.
type Part = Option<fn(&str, &str) -> bool>;

/// Saves the model's parameters to `path` atomically.
pub fn save<B: Backend, M: Module<B>>(model: &M, path: &Path) -> Result<(), WeightsError> {
    save_matching(model, path, None)
}

/// Saves only the denoiser's LoRA adapters (what a LoRA arm trains; the
/// frozen base is named by the checkpoint, not copied into it).
pub fn save_adapters<B: Backend>(
    model: &crate::Denoiser<B>,
    path: &Path,
) -> Result<(), WeightsError> {
    save_matching(model, path, Some(is_adapter))
}

/// Loads adapters saved by [`save_adapters`] into `model`, which must
/// carry the same adapter set (build it with `with_lora` first). Every
/// adapter tensor must be in the file, and nothing else.
pub fn load_adapters<B: Backend>(
    model: crate::Denoiser<B>,
    path: &Path,
) -> Result<crate::Denoiser<B>, WeightsError> {
    load_matching(model, path, Some(is_adapter))
}

fn save_matching<B: Backend, M: Module<B>>(
    model: &M,
    path: &Path,
    only: Part,
) -> Result<(), WeightsError> {
    let write_err = |message: String| WeightsError::Write {
        path: path.to_path_buf(),
        message,
    };
    crate::atomic::replace_with(path, |tmp| {
        let mut store = SafetensorsStore::from_file(tmp).overwrite(true);
        if let Some(part) = only {
            store = store.with_predicate(part);
        }
        model
            .save_into(&mut store)
            .map_err(|e| std::io::Error::other(e.to_string()))
    })
    .map_err(|e| write_err(e.to_string()))
}

/// Loads parameters from `path` into `model`, which must have the same
/// architecture (build it from the checkpoint's config first).
pub fn load<B: Backend, M: Module<B>>(model: M, path: &Path) -> Result<M, WeightsError> {
    load_matching(model, path, None)
}

fn load_matching<B: Backend, M: Module<B>>(
    mut model: M,
    path: &Path,
    only: Part,
) -> Result<M, WeightsError> {
    if !path.is_file() {
        return Err(WeightsError::Read {
            path: path.to_path_buf(),
            message: if path.exists() {
                "not a regular file (a directory, device or FIFO)".into()
            } else {
                "no such file".into()
            },
        });
    }
    check_float32(path)?;
    let mut store = SafetensorsStore::from_file(path)
        .allow_partial(true)
        .validate(false);
    if let Some(part) = only {
        store = store.with_predicate(part);
    }
    let result = model
        .load_from(&mut store)
        .map_err(|e| WeightsError::Read {
            path: path.to_path_buf(),
            message: e.to_string(),
        })?;
    let mut problems = Vec::new();
    for e in &result.errors {
        problems.push(e.to_string());
    }
    // burn reports the tensors the filter left out as missing.
    for (name, _) in result
        .missing
        .iter()
        .filter(|(n, _)| only.is_none_or(|p| p(n, "")))
    {
        problems.push(format!("tensor `{name}` is missing from the file"));
    }
    for name in &result.unused {
        problems.push(format!(
            "tensor `{name}` in the file has no place in the model"
        ));
    }
    if problems.is_empty() {
        Ok(model)
    } else {
        Err(WeightsError::Mismatch {
            path: path.to_path_buf(),
            message: problems.join("; "),
        })
    }
}

/// Refuses a file that is not safetensors, or holds a tensor that is not
/// float32, before burn reads it: burn panics on integer tensors and a
/// half-precision one fails later inside a matmul. (SMDM-layout files of
/// any float dtype go through [`crate::smdm::import`], which converts.)
fn check_float32(path: &Path) -> Result<(), WeightsError> {
    let read_err = |message: String| WeightsError::Read {
        path: path.to_path_buf(),
        message,
    };
    let bytes = std::fs::read(path).map_err(|e| read_err(e.to_string()))?;
    let (_, meta) = safetensors::SafeTensors::read_metadata(&bytes)
        .map_err(|e| read_err(format!("not a safetensors file ({e})")))?;
    let mut others: Vec<String> = meta
        .tensors()
        .into_iter()
        .filter(|(_, info)| info.dtype != safetensors::Dtype::F32)
        .map(|(name, info)| format!("`{name}` is {:?}", info.dtype))
        .collect();
    if !others.is_empty() {
        others.sort();
        return Err(read_err(format!(
            "cogrpo's weight files hold float32 tensors only, and {}",
            others.join(", ")
        )));
    }
    // A NaN or infinite weight makes every output NaN (and every metric a
    // silent zero); training never saves one, so the file is damaged.
    let file = safetensors::SafeTensors::deserialize(&bytes)
        .map_err(|e| read_err(format!("not a safetensors file ({e})")))?;
    let mut bad: Vec<String> = file
        .tensors()
        .into_iter()
        .filter_map(|(name, view)| {
            let n = view
                .data()
                .chunks_exact(4)
                .filter(|b| !f32::from_le_bytes([b[0], b[1], b[2], b[3]]).is_finite())
                .count();
            (n > 0).then(|| format!("`{name}` holds {n} NaN or infinite values"))
        })
        .collect();
    if bad.is_empty() {
        return Ok(());
    }
    bad.sort();
    Err(read_err(bad.join(", ")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::DenoiserConfig;
    use burn::backend::Flex;

    use crate::Denoiser;

    type B = Flex;

    fn tmpdir(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("mdm-weights-{name}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn round_trip_gives_identical_logits() {
        let dev = Default::default();
        let cfg = DenoiserConfig::new(6, 16, 2, 2, 32, 8);
        let a = cfg.init::<B>(1, &dev);
        let path = tmpdir("rt").join("model.safetensors");
        save(&a, &path).unwrap();
        let b = load(cfg.init::<B>(2, &dev), &path).unwrap();
        let x = || Denoiser::<B>::input(&[6, 1, 2, 6], 1, 4, &dev);
        assert_eq!(a.forward(x()).into_data(), b.forward(x()).into_data());
    }

    /// An adapter file holds the adapters and nothing of the base; it loads
    /// into a model with the same adapter set and is refused by one without.
    #[test]
    fn adapters_round_trip_alone() {
        let dev = Default::default();
        let cfg = DenoiserConfig::new(6, 16, 2, 2, 32, 8);
        let lora = crate::LoraConfig {
            rank: 2,
            ..Default::default()
        };
        let a = cfg.init::<B>(1, &dev).with_lora(&lora, 7).unwrap();
        let path = tmpdir("lora").join("adapters.safetensors");
        save_adapters(&a, &path).unwrap();
        let names: Vec<String> = super::super::hf::tensor_shapes(&path)
            .unwrap()
            .into_keys()
            .collect();
        assert_eq!(names.len(), 2 * 7 * 2, "{names:?}");
        assert!(names.iter().all(|n| n.contains(".lora_")), "{names:?}");
        let b = load_adapters(cfg.init::<B>(1, &dev).with_lora(&lora, 8).unwrap(), &path).unwrap();
        let first = |m: &Denoiser<B>| m.adapters()[3].2.a.val().into_data();
        assert_eq!(first(&a), first(&b));
        let err = load_adapters(cfg.init::<B>(1, &dev), &path)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("lora_q.a") && err.contains("no place"),
            "{err}"
        );
    }

    #[test]
    fn integer_and_half_tensors_are_refused_by_name_before_burn_reads_them() {
        use safetensors::tensor::{Dtype, TensorView};
        let dev = Default::default();
        let cfg = DenoiserConfig::new(6, 16, 1, 2, 32, 8);
        for (dtype, width) in [(Dtype::I32, 4), (Dtype::U32, 4), (Dtype::F16, 2)] {
            let bytes = vec![0u8; 7 * 16 * width];
            let view = TensorView::new(dtype, vec![7, 16], &bytes).unwrap();
            let path = tmpdir("dtype").join(format!("{dtype:?}.safetensors"));
            safetensors::serialize_to_file([("embed.weight", view)], None, &path).unwrap();
            let err = load(cfg.init::<B>(1, &dev), &path).unwrap_err().to_string();
            assert!(
                err.contains(&format!("`embed.weight` is {dtype:?}")) && err.contains("float32"),
                "{err}"
            );
        }
    }

    #[test]
    fn non_finite_weights_are_refused_by_tensor() {
        use safetensors::tensor::{Dtype, TensorView};
        let dev = Default::default();
        let cfg = DenoiserConfig::new(6, 16, 1, 2, 32, 8);
        let mut values = vec![0.5f32; 7 * 16];
        values[3] = f32::NAN;
        values[9] = f32::INFINITY;
        let bytes: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect();
        let view = TensorView::new(Dtype::F32, vec![7, 16], &bytes).unwrap();
        let path = tmpdir("nan").join("model.safetensors");
        safetensors::serialize_to_file([("embed.weight", view)], None, &path).unwrap();
        let err = load(cfg.init::<B>(1, &dev), &path).unwrap_err().to_string();
        assert!(
            err.contains("`embed.weight` holds 2 NaN or infinite values"),
            "{err}"
        );
    }

    #[test]
    fn mismatched_shapes_are_named() {
        let dev = Default::default();
        let path = tmpdir("mm").join("model.safetensors");
        save(
            &DenoiserConfig::new(6, 16, 1, 2, 32, 8).init::<B>(1, &dev),
            &path,
        )
        .unwrap();
        let err = load(
            DenoiserConfig::new(6, 16, 2, 2, 64, 8).init::<B>(1, &dev),
            &path,
        )
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("blocks.1.") && err.contains("missing"),
            "{err}"
        );
        assert!(err.contains("w1"), "{err}");
        let err = load(
            DenoiserConfig::new(6, 16, 1, 2, 32, 8).init::<B>(1, &dev),
            &path.with_extension("x"),
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("no such file"), "{err}");
        let garbage = path.with_extension("bad");
        std::fs::write(&garbage, b"\x10\x00\x00\x00\x00\x00\x00\x00{not json").unwrap();
        let err = load(
            DenoiserConfig::new(6, 16, 1, 2, 32, 8).init::<B>(1, &dev),
            &garbage,
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("cannot load"), "{err}");
    }
}
