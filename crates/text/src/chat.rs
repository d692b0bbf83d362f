//! A model's chat template, rendered as `transformers`'
//! `apply_chat_template` renders it (`chat_template_utils.py`): Jinja with
//! `trim_blocks` and `lstrip_blocks`, loop controls, `raise_exception`,
//! a `tojson` that is Python's `json.dumps(ensure_ascii=False)`, Python's
//! string methods, and the tokenizer's special tokens as variables.

use std::path::{Path, PathBuf};

use minijinja::value::{Kwargs, Value, ValueKind};
use minijinja::{Environment, Error, ErrorKind, context};
use serde::{Deserialize, Serialize};

use crate::error::TextError;
use crate::special::{TOKENIZER_CONFIG, TokenizerConfig};

/// One message of a conversation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Message {
    pub role: String,
    pub content: String,
}

impl Message {
    pub fn user(content: impl Into<String>) -> Self {
        Self {
            role: "user".into(),
            content: content.into(),
        }
    }
}

/// A Jinja chat template with the special tokens it may name.
#[derive(Debug, Clone)]
pub struct ChatTemplate {
    source: String,
    bos_token: Option<String>,
    eos_token: Option<String>,
    /// Where it was read (for errors).
    path: PathBuf,
}

impl ChatTemplate {
    pub fn new(
        source: impl Into<String>,
        bos_token: Option<String>,
        eos_token: Option<String>,
        path: &Path,
    ) -> Self {
        Self {
            source: source.into(),
            bos_token,
            eos_token,
            path: path.to_path_buf(),
        }
    }

    /// `dir`'s template: `chat_template.jinja` when present, else
    /// `tokenizer_config.json`'s `chat_template` (a string, or a list of
    /// named templates, of which `default`); `None` when there is none.
    pub fn from_dir(dir: &Path) -> Result<Option<Self>, TextError> {
        let path = dir.join(TOKENIZER_CONFIG);
        let bad = |path: &Path, message: String| TextError::File {
            path: path.to_path_buf(),
            message,
        };
        let config = TokenizerConfig::read(dir)?;
        let (bos, eos) = config.as_ref().map_or((None, None), |c| {
            (c.token("bos_token"), c.token("eos_token"))
        });
        let jinja = dir.join("chat_template.jinja");
        if jinja.is_file() {
            let source = std::fs::read_to_string(&jinja).map_err(|e| bad(&jinja, e.to_string()))?;
            return Ok(Some(Self::new(source, bos, eos, &jinja)));
        }
        let Some(template) = config.and_then(|c| c.chat_template) else {
            return Ok(None);
        };
        let source = match &template {
            serde_json::Value::String(s) => s.clone(),
            serde_json::Value::Array(named) => named
                .iter()
                .find(|t| t.get("name").and_then(|n| n.as_str()) == Some("default"))
                .and_then(|t| t.get("template")?.as_str())
                .ok_or_else(|| bad(&path, "`chat_template` lists no `default` template".into()))?
                .to_string(),
            other => {
                return Err(bad(
                    &path,
                    format!("`chat_template` must be a string, got {other}"),
                ));
            }
        };
        Ok(Some(Self::new(source, bos, eos, &path)))
    }

    /// The prompt for `messages`; with `add_generation_prompt`, ending
    /// where the assistant's reply begins.
    pub fn apply(
        &self,
        messages: &[Message],
        add_generation_prompt: bool,
    ) -> Result<String, TextError> {
        let err = |e: Error| TextError::Template {
            path: self.path.clone(),
            message: describe(&e),
        };
        let env = environment();
        let template = env.template_from_str(&self.source).map_err(err)?;
        template
            .render(context! {
                messages => messages,
                add_generation_prompt => add_generation_prompt,
                bos_token => self.bos_token,
                eos_token => self.eos_token,
                tools => Value::from(()),
                documents => Value::from(()),
            })
            .map_err(err)
    }

    pub fn source(&self) -> &str {
        &self.source
    }
}

/// An error with its cause chain (minijinja puts the template's own message
/// in the source).
fn describe(e: &Error) -> String {
    let mut text = e.to_string();
    let mut cause = std::error::Error::source(e);
    while let Some(c) = cause {
        text.push_str(&format!(": {c}"));
        cause = c.source();
    }
    text
}

/// The Jinja environment `transformers` compiles templates in.
fn environment() -> Environment<'static> {
    let mut env = Environment::new();
    env.set_trim_blocks(true);
    env.set_lstrip_blocks(true);
    env.set_unknown_method_callback(minijinja_contrib::pycompat::unknown_method_callback);
    env.add_function(
        "raise_exception",
        |message: String| -> Result<Value, Error> {
            Err(Error::new(ErrorKind::InvalidOperation, message))
        },
    );
    env.add_filter("tojson", tojson);
    env
}

/// Python's `json.dumps(value, ensure_ascii=False, indent=indent)`, which
/// `transformers` installs as `tojson` (Jinja's own escapes HTML).
fn tojson(value: Value, kwargs: Kwargs) -> Result<String, Error> {
    let indent: Option<usize> = kwargs.get("indent")?;
    kwargs.assert_all_used()?;
    let mut out = String::new();
    dump(&value, indent, 0, &mut out)?;
    Ok(out)
}

fn dump(v: &Value, indent: Option<usize>, depth: usize, out: &mut String) -> Result<(), Error> {
    let (open, close, is_map) = match v.kind() {
        ValueKind::Seq | ValueKind::Iterable => ('[', ']', false),
        ValueKind::Map => ('{', '}', true),
        ValueKind::Undefined | ValueKind::None => {
            out.push_str("null");
            return Ok(());
        }
        _ => {
            let json = serde_json::to_string(v)
                .map_err(|e| Error::new(ErrorKind::InvalidOperation, e.to_string()))?;
            out.push_str(&json);
            return Ok(());
        }
    };
    let items: Vec<Value> = v.try_iter()?.collect();
    out.push(open);
    if items.is_empty() {
        out.push(close);
        return Ok(());
    }
    // Python's separators: ", " and ": " without indent, "," and newlines with.
    let newline = |out: &mut String, depth: usize| {
        if let Some(n) = indent {
            out.push('\n');
            out.push_str(&" ".repeat(n * depth));
        }
    };
    for (i, item) in items.iter().enumerate() {
        if i > 0 {
            out.push_str(if indent.is_some() { "," } else { ", " });
        }
        newline(out, depth + 1);
        if is_map {
            dump(item, indent, depth + 1, out)?;
            out.push_str(": ");
            dump(&v.get_item(item)?, indent, depth + 1, out)?;
        } else {
            dump(item, indent, depth + 1, out)?;
        }
    }
    newline(out, depth);
    out.push(close);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tojson_is_pythons_json_dumps() {
        let env = environment();
        let render = |src: &str| env.render_str(src, context! {}).unwrap();
        assert_eq!(
            render(r#"{{ {"b": [1, "é<"], "a": none, "c": {}} | tojson }}"#),
            r#"{"b": [1, "é<"], "a": null, "c": {}}"#
        );
        assert_eq!(
            render(r#"{{ {"k": [1, 2]} | tojson(indent=2) }}"#),
            "{\n  \"k\": [\n    1,\n    2\n  ]\n}"
        );
    }

    #[test]
    fn a_template_that_raises_is_an_error_naming_the_file() {
        let t = ChatTemplate::new(
            "{{ raise_exception('roles must alternate') }}",
            None,
            None,
            Path::new("m/tokenizer_config.json"),
        );
        let e = t
            .apply(&[Message::user("hi")], false)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("m/tokenizer_config.json") && e.contains("roles must alternate"),
            "{e}"
        );
        let broken = ChatTemplate::new("{% for %}", None, None, Path::new("t.jinja"));
        let e = broken.apply(&[], true).unwrap_err().to_string();
        assert!(
            e.contains("t.jinja") && e.contains("fails to render"),
            "{e}"
        );
    }
}
