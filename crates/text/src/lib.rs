//! Text in and out of a released model, as its own Python stack handles
//! it: the tokenizer (`tokenizer.json`, read by Hugging Face's `tokenizers`
//! built as pure Rust) and the chat template (`tokenizer_config.json`'s
//! Jinja, rendered by `minijinja` the way `transformers`'
//! `apply_chat_template` renders it).
//!
//! `bench/text_fixtures.py` trains two tokenizers and renders three
//! templates with the Python libraries; `tests/agreement.rs` checks this
//! crate gives the same ids, text and prompts.

pub mod chat;
mod error;
pub mod model_text;
mod special;
pub mod tokenizer;

pub use chat::{ChatTemplate, Message};
pub use error::TextError;
pub use model_text::ModelText;
pub use tokenizer::TextTokenizer;
