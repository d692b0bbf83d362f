//! The safetensors files of a Hugging Face model directory: one
//! `model.safetensors`, or `model.safetensors.index.json` and the shards its
//! `weight_map` names. Only the headers are read up front (names, dtypes,
//! shapes, byte ranges), and every promise they make is checked against
//! the files, so that a truncated download is refused before any tensor is
//! built; a tensor's bytes are read when the model asks for it.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use safetensors::Dtype;
use safetensors::tensor::TensorView;
use serde::Deserialize;

use super::error::HfError;
use crate::host::{Host, floats};

pub(crate) const SINGLE: &str = "model.safetensors";
pub(crate) const INDEX: &str = "model.safetensors.index.json";

/// Where one tensor lies.
#[derive(Debug, Clone)]
pub(crate) struct Located {
    pub file: PathBuf,
    pub dtype: Dtype,
    pub shape: Vec<usize>,
    /// Absolute byte range in `file`.
    start: u64,
    end: u64,
}

impl Located {
    /// Bytes in the file.
    pub fn bytes(&self) -> u64 {
        self.end - self.start
    }
}

/// One header entry as safetensors writes it.
#[derive(Deserialize)]
struct Entry {
    dtype: Dtype,
    shape: Vec<usize>,
    data_offsets: (u64, u64),
}

/// Every tensor of the directory, by name.
#[derive(Debug)]
pub(crate) struct Shards {
    pub tensors: BTreeMap<String, Located>,
}

fn bad(path: &Path, message: impl Into<String>) -> HfError {
    HfError::File {
        path: path.to_path_buf(),
        message: message.into(),
    }
}

impl Shards {
    pub fn open(dir: &Path) -> Result<Self, HfError> {
        let index = dir.join(INDEX);
        if index.is_file() {
            return Self::from_index(dir, &index);
        }
        let single = dir.join(SINGLE);
        if !single.is_file() {
            return Err(bad(
                dir,
                format!("holds neither {SINGLE} nor {INDEX}: no weights to load"),
            ));
        }
        let mut tensors = BTreeMap::new();
        read_header(&single, &mut tensors)?;
        Ok(Self { tensors })
    }

    fn from_index(dir: &Path, index: &Path) -> Result<Self, HfError> {
        #[derive(Deserialize)]
        struct Index {
            weight_map: BTreeMap<String, String>,
        }
        if !index.is_file() {
            return Err(bad(
                index,
                "not a regular file (a directory, device or FIFO)",
            ));
        }
        let text = std::fs::read_to_string(index).map_err(|e| bad(index, e.to_string()))?;
        let parsed: Index = serde_json::from_str(&text)
            .map_err(|e| bad(index, format!("not a safetensors index ({e})")))?;
        let mut by_file: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
        for (name, file) in &parsed.weight_map {
            by_file.entry(file).or_default().push(name);
        }
        let mut tensors = BTreeMap::new();
        for (file, names) in by_file {
            let path = dir.join(file);
            if Path::new(file).components().count() != 1 || !path.is_file() {
                return Err(bad(
                    index,
                    format!(
                        "names shard `{file}` (for `{}`), which is missing",
                        names[0]
                    ),
                ));
            }
            let mut in_file = BTreeMap::new();
            read_header(&path, &mut in_file)?;
            for name in names {
                let located = in_file.remove(name).ok_or_else(|| {
                    bad(
                        index,
                        format!("places tensor `{name}` in `{file}`, which does not hold it"),
                    )
                })?;
                tensors.insert(name.to_string(), located);
            }
        }
        Ok(Self { tensors })
    }

    /// The tensor `name` as float32 (its dtype was checked by the caller).
    pub fn read(&self, name: &str) -> Result<Host, HfError> {
        let t = &self.tensors[name];
        let mut bytes = vec![0u8; (t.end - t.start) as usize];
        let mut file = File::open(&t.file).map_err(|e| bad(&t.file, e.to_string()))?;
        file.seek(SeekFrom::Start(t.start))
            .and_then(|_| file.read_exact(&mut bytes))
            .map_err(|e| bad(&t.file, format!("reading `{name}`: {e}")))?;
        let view = TensorView::new(t.dtype, t.shape.clone(), &bytes)
            .map_err(|e| bad(&t.file, format!("`{name}`: {e}")))?;
        let values = floats(&view).ok_or_else(|| {
            bad(
                &t.file,
                format!("`{name}` is {:?}, not a float dtype", t.dtype),
            )
        })?;
        // A NaN or infinite weight makes every output NaN: the file is damaged.
        let bad_values = values.iter().filter(|v| !v.is_finite()).count();
        if bad_values > 0 {
            return Err(bad(
                &t.file,
                format!("`{name}` holds {bad_values} NaN or infinite values"),
            ));
        }
        Ok(Host {
            shape: t.shape.clone(),
            values,
        })
    }
}

/// The shape of every tensor in safetensors file `path`, read from its
/// header alone (checked as [`Shards::open`] checks it).
pub fn tensor_shapes(path: &Path) -> Result<BTreeMap<String, Vec<usize>>, HfError> {
    let mut located = BTreeMap::new();
    read_header(path, &mut located)?;
    Ok(located.into_iter().map(|(k, v)| (k, v.shape)).collect())
}

/// Reads `path`'s header into `out`, checking that each tensor's byte range
/// matches its dtype and shape and lies inside the file.
fn read_header(path: &Path, out: &mut BTreeMap<String, Located>) -> Result<(), HfError> {
    if path.exists() && !path.is_file() {
        return Err(bad(
            path,
            "not a regular file (a directory, device or FIFO)",
        ));
    }
    let mut file = File::open(path).map_err(|e| bad(path, e.to_string()))?;
    let file_len = file.metadata().map_err(|e| bad(path, e.to_string()))?.len();
    let mut len = [0u8; 8];
    file.read_exact(&mut len)
        .map_err(|_| bad(path, "is shorter than a safetensors header (truncated?)"))?;
    let header_len = u64::from_le_bytes(len);
    if header_len > 100_000_000 || 8 + header_len > file_len {
        return Err(bad(
            path,
            format!(
                "header of {header_len} bytes does not fit the file's {file_len} (truncated or not safetensors)"
            ),
        ));
    }
    let mut header = vec![0u8; header_len as usize];
    file.read_exact(&mut header)
        .map_err(|e| bad(path, e.to_string()))?;
    let raw: BTreeMap<String, serde_json::Value> = serde_json::from_slice(&header)
        .map_err(|e| bad(path, format!("header is not safetensors JSON ({e})")))?;
    let data_start = 8 + header_len;
    for (name, value) in raw {
        if name == "__metadata__" {
            continue;
        }
        let e: Entry = serde_json::from_value(value)
            .map_err(|e| bad(path, format!("header entry `{name}`: {e}")))?;
        let (a, b) = e.data_offsets;
        let elements: usize = e.shape.iter().product();
        let want = (elements * e.dtype.bitsize()).div_ceil(8) as u64;
        if b < a || b - a != want {
            return Err(bad(
                path,
                format!(
                    "`{name}` claims {} bytes for {:?} {:?} ({want} needed)",
                    b.saturating_sub(a),
                    e.dtype,
                    e.shape
                ),
            ));
        }
        if data_start + b > file_len {
            return Err(bad(
                path,
                format!(
                    "is truncated: `{name}` ends at byte {} of a {file_len}-byte file",
                    data_start + b
                ),
            ));
        }
        out.insert(
            name,
            Located {
                file: path.to_path_buf(),
                dtype: e.dtype,
                shape: e.shape,
                start: data_start + a,
                end: data_start + b,
            },
        );
    }
    Ok(())
}
