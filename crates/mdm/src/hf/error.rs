//! What can be wrong with a model directory, each naming the file and the
//! key or tensor.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum HfError {
    #[error("{path}: `{key}` {message}")]
    Config {
        path: PathBuf,
        key: String,
        message: String,
    },
    #[error("{path}: {message}")]
    File { path: PathBuf, message: String },
    #[error("weights in {dir} do not fit the config: {message}")]
    Mismatch { dir: PathBuf, message: String },
}
