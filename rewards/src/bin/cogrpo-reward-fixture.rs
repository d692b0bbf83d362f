//! A JSON-lines reward plugin that misbehaves on request, for testing the
//! failure handling of `SubprocessReward` against a real process (and as a
//! minimal plugin in Rust). The first item's `metadata.fixture` picks the
//! behaviour for the batch:
//!
//! `ok` (default): every item scores `metadata.score` (or 1);
//! `sleep`: replies after 3 s; `crash`: exits with status 3;
//! `garbage`: prints a line that is not JSON; `wrong_count`: one score short;
//! `nan`: item 0 scores NaN; `error`: an error reply; `stale`: the reply
//! carries the previous batch id.

use std::io::{BufRead, Write};

use serde_json::{Value, json};

fn main() {
    let stdin = std::io::stdin();
    let mut stdout = std::io::stdout().lock();
    for line in stdin.lock().lines() {
        let Ok(line) = line else { return };
        let request: Value = match serde_json::from_str(&line) {
            Ok(v) => v,
            Err(e) => {
                eprintln!("fixture: bad request: {e}");
                return;
            }
        };
        let batch_id = request["batch_id"].as_u64().unwrap_or(0);
        let items = request["items"].as_array().cloned().unwrap_or_default();
        let mode = items
            .first()
            .and_then(|i| i["metadata"]["fixture"].as_str())
            .unwrap_or("ok")
            .to_string();
        let scores: Vec<Value> = items
            .iter()
            .map(|i| i["metadata"].get("score").cloned().unwrap_or(json!(1.0)))
            .collect();
        let reply = |scores: &[Value], id: u64| {
            json!({"protocol": "cogrpo-reward/1", "batch_id": id, "scores": scores}).to_string()
        };
        let text = match mode.as_str() {
            "sleep" => {
                std::thread::sleep(std::time::Duration::from_secs(3));
                reply(&scores, batch_id)
            }
            "crash" => std::process::exit(3),
            "garbage" => "this is not json".to_string(),
            "wrong_count" => reply(&scores[..scores.len().saturating_sub(1)], batch_id),
            "nan" => {
                // Python's json.dumps writes float('nan') as a bare NaN.
                let rest: Vec<String> = scores.iter().skip(1).map(Value::to_string).collect();
                let column = std::iter::once("NaN".to_string()).chain(rest).collect::<Vec<_>>().join(",");
                format!(r#"{{"protocol":"cogrpo-reward/1","batch_id":{batch_id},"scores":[{column}]}}"#)
            }
            "error" => json!({"protocol": "cogrpo-reward/1", "batch_id": batch_id, "error": "fixture says no"}).to_string(),
            "stale" => reply(&scores, batch_id.wrapping_sub(1)),
            _ => reply(&scores, batch_id),
        };
        if writeln!(stdout, "{text}")
            .and_then(|()| stdout.flush())
            .is_err()
        {
            return;
        }
    }
}
