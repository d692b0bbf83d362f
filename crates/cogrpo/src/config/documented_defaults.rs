//! README's config table states the defaults; this test holds it to the
//! code, so that a default changed in one place cannot drift from the other.

use toml::Value;

use super::{ExperimentConfig, MINIMAL};

/// Every key with a default is left out (the sweep's sampler is not read:
/// the table states no per-sampler defaults beyond `[sampler]`'s).
fn required_only() -> String {
    format!(
        "{MINIMAL}\n[sampler]\nkind = \"first_hitting\"\n\
         [cogrpo]\niterations = 1\nsteps = 2\nreference = {{ kind = \"confidence\" }}\n"
    )
}

/// A stated default: the first backticked span, or else the first word.
struct Stated {
    text: String,
    backticked: bool,
}

/// `(section, key, default)` for each "`key` (default ...)" of the table's
/// rows.
fn documented(readme: &str) -> Vec<(String, String, Stated)> {
    let mut out = Vec::new();
    for line in readme.lines() {
        let Some(rest) = line.strip_prefix("| `[") else {
            continue;
        };
        let Some((section, keys)) = rest.split_once("]` |") else {
            continue;
        };
        for piece in keys.split("`, `").flat_map(|p| p.split(", `")) {
            let piece = piece.trim_start_matches('`');
            let Some((key, after)) = piece.split_once("` (") else {
                continue;
            };
            let default = match after.strip_prefix('`') {
                Some(quoted) => Stated {
                    text: quoted.split('`').next().unwrap_or("").to_string(),
                    backticked: true,
                },
                None => Stated {
                    text: after
                        .split([',', ';', ':', ')', ' '])
                        .next()
                        .unwrap_or("")
                        .to_string(),
                    backticked: false,
                },
            };
            out.push((section.to_string(), key.to_string(), default));
        }
    }
    out
}

/// The stated default as a TOML value, when it is one: numbers, booleans,
/// arrays, and backticked lower-case words (enum names, paths); prose such
/// as "(vocabulary and length come from the task)" is not.
fn parse(default: &Stated) -> Option<Value> {
    let text = &default.text;
    if let Ok(t) = toml::from_str::<toml::Table>(&format!("v = {text}")) {
        return t.get("v").cloned();
    }
    let word = !text.is_empty() && text.chars().all(|c| c.is_ascii_lowercase() || c == '_');
    (default.backticked && word).then(|| Value::String(text.clone()))
}

fn same(a: &Value, b: &Value) -> bool {
    match (
        a.as_float().or(a.as_integer().map(|i| i as f64)),
        b.as_float().or(b.as_integer().map(|i| i as f64)),
    ) {
        (Some(x), Some(y)) => x == y,
        _ => a == b,
    }
}

#[test]
fn readme_states_the_defaults_the_code_uses() {
    let readme = include_str!("../../../../README.md");
    let cfg: ExperimentConfig = toml::from_str(&required_only()).expect("the required keys parse");
    let resolved = Value::try_from(&cfg).expect("the config serializes");
    let mut checked = 0;
    let mut wrong = Vec::new();
    for (section, key, default) in documented(readme) {
        let mut at = Some(&resolved);
        for part in section.split('.').chain(key.split('.')) {
            at = at.and_then(|v| v.get(part));
        }
        // Optional keys without a value are not serialized.
        let (Some(actual), Some(stated)) = (at, parse(&default)) else {
            continue;
        };
        checked += 1;
        if !same(actual, &stated) {
            wrong.push(format!(
                "[{section}] {key}: README says {stated}, the code uses {actual}"
            ));
        }
    }
    assert!(
        wrong.is_empty(),
        "README's defaults drifted:\n{}",
        wrong.join("\n")
    );
    // The table has ~50 stated defaults; a parser that silently finds few
    // would make this test vacuous.
    assert!(
        checked >= 40,
        "only {checked} documented defaults were checked"
    );
}
