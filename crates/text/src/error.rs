//! What can be wrong with a tokenizer or a template, naming the file.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum TextError {
    #[error("{path}: {message}")]
    File { path: PathBuf, message: String },
    #[error("the chat template of {path} fails to render: {message}")]
    Template { path: PathBuf, message: String },
    #[error("{path}: cannot {what}: {message}")]
    Tokenize {
        path: PathBuf,
        what: &'static str,
        message: String,
    },
}
