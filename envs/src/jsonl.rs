//! Data files in JSON Lines whose records hold string fields (d1's
//! Countdown set, the reversal-curse files): read once, with every error
//! naming the file and line.

use std::path::{Path, PathBuf};

use serde_json::{Map, Value};

use crate::error::TaskError;

/// One non-blank line: its 1-based number and the requested fields.
pub struct Record<const N: usize> {
    pub line: usize,
    pub fields: [String; N],
}

/// An error about line `line` of `path`.
pub fn data_error(path: &Path, line: usize, message: String) -> TaskError {
    TaskError::Data {
        path: PathBuf::from(path),
        line,
        message,
    }
}

/// One JSON Lines record's fields.
pub type JsonObject = Map<String, Value>;

/// Every non-blank line of `path` as a JSON object, with its 1-based line
/// number; a line that is not an object, or a file without records, is an
/// error naming the file and line.
pub fn read_objects(path: &Path) -> Result<Vec<(usize, JsonObject)>, TaskError> {
    let text = crate::files::read_regular_to_string(path).map_err(|source| TaskError::Io {
        path: path.into(),
        source,
    })?;
    let mut out = Vec::new();
    for (i, text) in text.lines().enumerate() {
        if text.trim().is_empty() {
            continue;
        }
        let line = i + 1;
        match serde_json::from_str(text) {
            Ok(Value::Object(fields)) => out.push((line, fields)),
            Ok(_) => return Err(data_error(path, line, "not a JSON object".into())),
            Err(e) => return Err(data_error(path, line, format!("not JSON: {e}"))),
        }
    }
    if out.is_empty() {
        return Err(data_error(path, 1, "no records".into()));
    }
    Ok(out)
}

/// The string fields `keys` of every record in `path`; blank lines are
/// skipped, and a file without records is an error.
pub fn read_string_fields<const N: usize>(
    path: &Path,
    keys: [&str; N],
) -> Result<Vec<Record<N>>, TaskError> {
    read_objects(path)?
        .into_iter()
        .map(|(line, v)| {
            let mut fields: [String; N] = std::array::from_fn(|_| String::new());
            for (slot, key) in fields.iter_mut().zip(keys) {
                *slot = v
                    .get(key)
                    .and_then(|x| x.as_str())
                    .map(str::to_owned)
                    .ok_or_else(|| data_error(path, line, format!("no string field {key:?}")))?;
            }
            Ok(Record { line, fields })
        })
        .collect()
}
