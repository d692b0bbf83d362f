//! The fingerprint of a base model: what a LoRA arm's checkpoint records of
//! the frozen model its adapters sit on (it holds the adapters only), and
//! checks before it loads them again. Adapters on another base compute
//! something nobody trained, silently, so a changed base is refused by name.

use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use anyhow::Context;
use sha2::Digest;

use crate::BadInput;

/// The largest safetensors header read (the format's own bound).
const MAX_HEADER: u64 = 100 << 20;
/// Data read per sample of a large file, and samples per file.
const SAMPLE: u64 = 4096;
const SAMPLES: u64 = 1024;

/// SHA-256 over what identifies the model at `source` (a cogrpo checkpoint
/// folder, a Hugging Face model directory or one `.safetensors` file): each
/// weight file's name, size, safetensors header (tensor names, dtypes,
/// shapes and offsets) and data (all of it up to 4 MiB, else 1,024 evenly
/// spaced 4 KiB samples), and a checkpoint's `checksums.sha256`, which
/// covers every byte. So it reads at most ~4 MiB per shard, a second or so
/// for an 8B model, and still tells apart two revisions of one architecture
/// (fine-tuning changes every tensor); a change confined to the bytes
/// between samples of a released shard would go unseen.
pub fn fingerprint(source: &Path) -> anyhow::Result<String> {
    let files = weight_files(source)?;
    let mut hasher = sha2::Sha256::new();
    for path in &files {
        let name = path
            .file_name()
            .map_or_else(String::new, |n| n.to_string_lossy().into());
        let size = envs::files::regular(path)
            .with_context(|| format!("cannot read the base model file {}", path.display()))?
            .len();
        hasher.update(name.as_bytes());
        hasher.update(size.to_le_bytes());
        if name.ends_with(".safetensors") {
            let header = header(path)?;
            hasher.update(&header);
            sample_data(path, header.len() as u64, size, &mut hasher)?;
        } else {
            hasher.update(envs::files::read_regular(path)?);
        }
    }
    Ok(hasher
        .finalize()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect())
}

/// The files [`fingerprint`] reads, in name order.
fn weight_files(source: &Path) -> anyhow::Result<Vec<PathBuf>> {
    if !source.is_dir() {
        return Ok(vec![source.to_path_buf()]);
    }
    let mut out: Vec<PathBuf> = std::fs::read_dir(source)
        .with_context(|| format!("cannot list the base model folder {}", source.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.file_name().is_some_and(|n| {
                let n = n.to_string_lossy();
                n.ends_with(".safetensors") || n == "checksums.sha256"
            })
        })
        .collect();
    out.sort();
    if out.is_empty() {
        return Err(BadInput(format!(
            "the base model folder {} holds no .safetensors file",
            source.display()
        ))
        .into());
    }
    Ok(out)
}

/// A safetensors file's header: its 8-byte length and the JSON after it.
fn header(path: &Path) -> anyhow::Result<Vec<u8>> {
    let bad = |what: String| BadInput(format!("{} is not safetensors: {what}", path.display()));
    let mut file = std::fs::File::open(path)
        .with_context(|| format!("cannot open the base model file {}", path.display()))?;
    let mut len = [0u8; 8];
    file.read_exact(&mut len)
        .map_err(|e| bad(format!("no header length ({e})")))?;
    let n = u64::from_le_bytes(len);
    if n > MAX_HEADER {
        return Err(bad(format!("a header of {n} bytes")).into());
    }
    let mut out = len.to_vec();
    out.resize(8 + n as usize, 0);
    file.read_exact(&mut out[8..])
        .map_err(|e| bad(format!("the header is cut short ({e})")))?;
    Ok(out)
}

/// Hashes the data after the header: whole when small, else [`SAMPLES`]
/// evenly spaced pieces of [`SAMPLE`] bytes.
fn sample_data(
    path: &Path,
    start: u64,
    size: u64,
    hasher: &mut sha2::Sha256,
) -> anyhow::Result<()> {
    let mut file = std::fs::File::open(path)
        .with_context(|| format!("cannot open the base model file {}", path.display()))?;
    let len = size.saturating_sub(start);
    let read = |file: &mut std::fs::File, at: u64, n: u64| -> std::io::Result<Vec<u8>> {
        let mut buf = vec![0u8; n as usize];
        file.seek(SeekFrom::Start(at))?;
        file.read_exact(&mut buf)?;
        Ok(buf)
    };
    let cannot = |e: std::io::Error| BadInput(format!("cannot read {}: {e}", path.display()));
    if len <= SAMPLE * SAMPLES {
        hasher.update(read(&mut file, start, len).map_err(cannot)?);
        return Ok(());
    }
    for k in 0..SAMPLES {
        let at = start + k * (len - SAMPLE) / (SAMPLES - 1);
        hasher.update(read(&mut file, at, SAMPLE).map_err(cannot)?);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tmp(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("cogrpo-fp-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    fn write_tensor(path: &Path, values: &[f32]) {
        use safetensors::tensor::{Dtype, TensorView};
        let bytes: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect();
        let view = TensorView::new(Dtype::F32, vec![values.len()], &bytes).unwrap();
        safetensors::serialize_to_file([("w", view)], None, path).unwrap();
    }

    /// Same files, same fingerprint; a changed value, shape or checksum
    /// manifest changes it.
    #[test]
    fn fingerprint_follows_headers_sizes_and_the_manifest() {
        let dir = tmp("a");
        write_tensor(&dir.join("model.safetensors"), &[1.0, 2.0]);
        let first = fingerprint(&dir).unwrap();
        assert_eq!(fingerprint(&dir).unwrap(), first);
        assert_eq!(first.len(), 64);
        write_tensor(&dir.join("model.safetensors"), &[1.0, 3.0]);
        assert_ne!(fingerprint(&dir).unwrap(), first, "a value changed");
        std::fs::write(dir.join("checksums.sha256"), "x  model.safetensors\n").unwrap();
        let with_manifest = fingerprint(&dir).unwrap();
        assert_ne!(with_manifest, first);
        std::fs::write(dir.join("checksums.sha256"), "y  model.safetensors\n").unwrap();
        assert_ne!(fingerprint(&dir).unwrap(), with_manifest);
        write_tensor(&dir.join("model.safetensors"), &[1.0, 2.0, 3.0]);
        assert_ne!(fingerprint(&dir).unwrap(), with_manifest);
        // A large file is sampled: a change at a sampled offset is seen.
        let big = dir.join("big.safetensors");
        let mut values = vec![0.5f32; 3 << 20];
        write_tensor(&big, &values);
        let before = fingerprint(&big).unwrap();
        values[0] = 0.25;
        write_tensor(&big, &values);
        assert_ne!(fingerprint(&big).unwrap(), before);
        let file = fingerprint(&dir.join("model.safetensors")).unwrap();
        assert_ne!(file, fingerprint(&dir).unwrap());
        let empty = tmp("empty");
        let err = fingerprint(&empty).unwrap_err().to_string();
        assert!(err.contains("no .safetensors"), "{err}");
        std::fs::write(empty.join("bad.safetensors"), [255u8; 8]).unwrap();
        let err = fingerprint(&empty).unwrap_err().to_string();
        assert!(err.contains("bad.safetensors is not safetensors"), "{err}");
    }
}
