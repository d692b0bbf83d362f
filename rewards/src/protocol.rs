//! The wire protocol of out-of-process reward plugins (`docs/reward-protocol.md`).
//!
//! One request per batch, one reply per request, both single JSON objects:
//! a line each over a subprocess's stdin/stdout, a body each over HTTP. The
//! reply parser treats the plugin as untrusted: anything that is not a
//! well-formed reply for *this* request is an error, never a panic.

use std::collections::BTreeMap;

use serde::Serialize;
use serde_json::Value;

use crate::failure::{FailureKind, RewardFailure};
use crate::item::{BatchScores, RewardItem};

/// The protocol version both sides put in every message.
pub const PROTOCOL: &str = "cogrpo-reward/1";

#[derive(Debug, Serialize)]
pub struct Request<'a> {
    pub protocol: &'static str,
    /// The reward's name in the experiment config.
    pub reward: &'a str,
    /// Increases with every request of a plugin; the reply must echo it.
    pub batch_id: u64,
    pub items: &'a [RewardItem],
}

impl<'a> Request<'a> {
    pub fn new(reward: &'a str, batch_id: u64, items: &'a [RewardItem]) -> Self {
        Self {
            protocol: PROTOCOL,
            reward,
            batch_id,
            items,
        }
    }

    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("a request always serializes")
    }
}

fn malformed(message: impl Into<String>) -> RewardFailure {
    RewardFailure::new(FailureKind::Malformed, message)
}

/// Parses the reply to request `batch_id` of `n` items. Non-finite scores
/// (Python's `json.dumps` writes `NaN` and `Infinity`) come back as NaN
/// entries, to be counted per item; everything else wrong is an error for
/// the whole batch.
pub fn parse_reply(bytes: &[u8], batch_id: u64, n: usize) -> Result<BatchScores, RewardFailure> {
    let text =
        std::str::from_utf8(bytes).map_err(|e| malformed(format!("reply is not UTF-8: {e}")))?;
    let value: Value = serde_json::from_str(&mark_non_finite(text)).map_err(|e| {
        malformed(format!(
            "reply is not JSON: {e}; reply starts {:?}",
            preview(text)
        ))
    })?;
    let Value::Object(obj) = value else {
        return Err(malformed(format!(
            "reply is not a JSON object: {:?}",
            preview(text)
        )));
    };
    match obj.get("protocol") {
        Some(Value::String(p)) if p == PROTOCOL => {}
        Some(other) => {
            return Err(malformed(format!(
                "reply speaks protocol {other}; this cogrpo speaks {PROTOCOL:?}"
            )));
        }
        None => {
            return Err(malformed(format!(
                "reply has no \"protocol\" field (expected {PROTOCOL:?})"
            )));
        }
    }
    // An error reply may carry `batch_id: null` (the plugin could not read
    // the request's id); any other reply must echo the id.
    let error = obj.get("error");
    match obj.get("batch_id").and_then(Value::as_u64) {
        Some(id) if id == batch_id => {}
        Some(id) => {
            return Err(malformed(format!(
                "reply is for batch {id}, expected batch {batch_id}"
            )));
        }
        None if error.is_some() && obj.get("batch_id").is_none_or(Value::is_null) => {}
        None => return Err(malformed("reply has no integer \"batch_id\"")),
    }
    if let Some(err) = error {
        let message = err.as_str().map_or_else(|| err.to_string(), str::to_owned);
        return Err(RewardFailure::new(
            FailureKind::PluginError,
            format!("plugin error: {message}"),
        ));
    }
    let scores = parse_column(obj.get("scores"), n, "scores")?;
    let mut parts = BTreeMap::new();
    match obj.get("parts") {
        None | Some(Value::Null) => {}
        Some(Value::Object(map)) => {
            for (name, column) in map {
                parts.insert(
                    name.clone(),
                    parse_column(Some(column), n, &format!("parts.{name}"))?,
                );
            }
        }
        Some(other) => {
            return Err(malformed(format!(
                "\"parts\" must be an object, got {}",
                kind_of(other)
            )));
        }
    }
    Ok(BatchScores {
        scores,
        parts,
        failed: Vec::new(),
    })
}

/// A column of `n` scores: numbers, `null` (not applicable) or non-finite.
fn parse_column(
    column: Option<&Value>,
    n: usize,
    what: &str,
) -> Result<Vec<Option<f32>>, RewardFailure> {
    let Some(column) = column else {
        return Err(malformed(format!("reply has no \"{what}\" array")));
    };
    let Value::Array(entries) = column else {
        return Err(malformed(format!(
            "\"{what}\" must be an array, got {}",
            kind_of(column)
        )));
    };
    if entries.len() != n {
        return Err(RewardFailure::new(
            FailureKind::WrongCount,
            format!("\"{what}\" has {} entries for {n} items", entries.len()),
        ));
    }
    entries
        .iter()
        .enumerate()
        .map(|(i, v)| match v {
            Value::Null => Ok(None),
            // An f64 beyond f32's range becomes infinite: counted as non-finite.
            Value::Number(x) => Ok(Some(x.as_f64().map_or(f32::NAN, |x| x as f32))),
            Value::String(s) if s == NON_FINITE => Ok(Some(f32::NAN)),
            other => Err(malformed(format!(
                "\"{what}\"[{i}] must be a number or null, got {}",
                kind_of(other)
            ))),
        })
        .collect()
}

fn kind_of(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

fn preview(text: &str) -> String {
    text.chars().take(80).collect()
}

/// Stands in for the non-JSON literals `NaN`, `Infinity`, `-Infinity`.
const NON_FINITE: &str = "\u{0}non-finite";

/// Replaces the bare literals `NaN`, `Infinity` and `-Infinity` outside
/// strings by a marker string, so that serde_json can parse the rest.
fn mark_non_finite(text: &str) -> String {
    let marker = serde_json::to_string(NON_FINITE).expect("a string serializes");
    let mut out = String::with_capacity(text.len());
    let mut in_string = false;
    let mut escaped = false;
    let mut rest = text;
    while let Some(c) = rest.chars().next() {
        if in_string {
            out.push(c);
            if escaped {
                escaped = false;
            } else if c == '\\' {
                escaped = true;
            } else if c == '"' {
                in_string = false;
            }
            rest = &rest[c.len_utf8()..];
            continue;
        }
        if c == '"' {
            in_string = true;
        } else if let Some(lit) = ["-Infinity", "Infinity", "NaN"]
            .into_iter()
            .find(|l| rest.starts_with(l))
        {
            out.push_str(&marker);
            rest = &rest[lit.len()..];
            continue;
        }
        out.push(c);
        rest = &rest[c.len_utf8()..];
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reply(body: &str) -> String {
        format!(r#"{{"protocol":"{PROTOCOL}","batch_id":3,{body}}}"#)
    }

    #[test]
    fn parses_scores_nulls_and_parts() {
        let r = parse_reply(
            reply(r#""scores":[1.0,null,0.5],"parts":{"format":[1,0,null]}"#).as_bytes(),
            3,
            3,
        )
        .unwrap();
        assert_eq!(r.scores, vec![Some(1.0), None, Some(0.5)]);
        assert_eq!(r.parts["format"], vec![Some(1.0), Some(0.0), None]);
    }

    #[test]
    fn python_non_finite_literals_become_per_item_nan() {
        let r = parse_reply(
            reply(r#""scores":[NaN,Infinity,-Infinity,1e300,2]"#).as_bytes(),
            3,
            5,
        )
        .unwrap();
        assert!(
            r.scores[..4]
                .iter()
                .all(|s| s.is_some_and(|x| !x.is_finite()))
        );
        assert_eq!(r.scores[4], Some(2.0));
        // Inside strings the literals are left alone.
        let r = parse_reply(
            reply(r#""note":"NaN \"Infinity\"","scores":[1]"#).as_bytes(),
            3,
            1,
        )
        .unwrap();
        assert_eq!(r.scores, vec![Some(1.0)]);
    }

    #[test]
    fn every_protocol_violation_is_named() {
        let cases: Vec<(String, FailureKind, &str)> = vec![
            ("not json".into(), FailureKind::Malformed, "not JSON"),
            ("[1,2]".into(), FailureKind::Malformed, "not a JSON object"),
            (
                r#"{"batch_id":3,"scores":[1]}"#.into(),
                FailureKind::Malformed,
                "protocol",
            ),
            (
                r#"{"protocol":"cogrpo-reward/2","batch_id":3,"scores":[1]}"#.into(),
                FailureKind::Malformed,
                "speaks",
            ),
            (
                format!(r#"{{"protocol":"{PROTOCOL}","batch_id":4,"scores":[1]}}"#),
                FailureKind::Malformed,
                "batch 4",
            ),
            (
                reply(r#""scores":[1,2]"#),
                FailureKind::WrongCount,
                "2 entries for 1",
            ),
            (
                reply(r#""scores":["1"]"#),
                FailureKind::Malformed,
                "scores\"[0]",
            ),
            (
                reply(r#""scores":1"#),
                FailureKind::Malformed,
                "must be an array",
            ),
            (
                reply(r#""error":"model not loaded""#),
                FailureKind::PluginError,
                "model not loaded",
            ),
            (
                format!(r#"{{"protocol":"{PROTOCOL}","batch_id":null,"error":"bad request"}}"#),
                FailureKind::PluginError,
                "bad request",
            ),
            (
                format!(r#"{{"protocol":"{PROTOCOL}","batch_id":null,"scores":[1]}}"#),
                FailureKind::Malformed,
                "batch_id",
            ),
            (
                reply(r#""scores":[1],"parts":{"x":[1,2]}"#),
                FailureKind::WrongCount,
                "parts.x",
            ),
            (
                reply(r#""scores":[1],"parts":[1]"#),
                FailureKind::Malformed,
                "parts",
            ),
        ];
        for (text, kind, needle) in cases {
            let err = parse_reply(text.as_bytes(), 3, 1).unwrap_err();
            assert_eq!(err.kind, kind, "{text}: {err}");
            assert!(err.message.contains(needle), "{text}: {err}");
        }
        assert_eq!(
            parse_reply(&[0xff, 0xfe], 3, 1).unwrap_err().kind,
            FailureKind::Malformed
        );
    }

    /// Property test: random bytes and random JSON never panic the parser,
    /// and whatever it accepts has exactly one score per item.
    #[test]
    fn random_replies_never_panic() {
        use rand::rngs::StdRng;
        use rand::{Rng, SeedableRng};
        let mut rng = StdRng::seed_from_u64(7);
        let atoms = [
            "{",
            "}",
            "[",
            "]",
            ",",
            ":",
            "\"scores\"",
            "\"protocol\"",
            "\"cogrpo-reward/1\"",
            "\"batch_id\"",
            "3",
            "null",
            "NaN",
            "-Infinity",
            "1e999",
            "\"parts\"",
            "\"error\"",
            "\"\\u00\"",
            "\"",
            "true",
            "-0",
        ];
        let (mut accepted, mut rejected) = (0, 0);
        for case in 0..20_000 {
            let text: Vec<u8> = if case % 2 == 0 {
                (0..rng.random_range(0..64)).map(|_| rng.random()).collect()
            } else {
                let mut s = String::new();
                for _ in 0..rng.random_range(1..40) {
                    s.push_str(atoms[rng.random_range(0..atoms.len())]);
                }
                s.into_bytes()
            };
            let n = rng.random_range(0..3);
            match parse_reply(&text, 3, n) {
                Ok(r) => {
                    assert_eq!(r.scores.len(), n);
                    accepted += 1;
                }
                Err(e) => {
                    assert!(!e.message.is_empty());
                    rejected += 1;
                }
            }
        }
        assert!(
            rejected > 10_000,
            "{accepted} accepted, {rejected} rejected"
        );
        // Structured random replies: valid ones are accepted.
        for _ in 0..2_000 {
            let n = rng.random_range(0..5);
            let scores: Vec<String> = (0..n)
                .map(|_| match rng.random_range(0..3) {
                    0 => "null".to_string(),
                    1 => "NaN".to_string(),
                    _ => format!("{}", rng.random::<f32>()),
                })
                .collect();
            let text = reply(&format!(r#""scores":[{}]"#, scores.join(",")));
            assert_eq!(parse_reply(text.as_bytes(), 3, n).unwrap().scores.len(), n);
        }
    }
}
