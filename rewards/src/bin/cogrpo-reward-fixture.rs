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
//!
//! A flaky plugin instead, for any task: with `COGRPO_FIXTURE_FAULT_RATE`
//! set (0.1 = 10% of requests), each request fails with that probability in
//! one of ten ways ([`FAULTS`], uniformly; the draw is seeded by
//! `COGRPO_FIXTURE_SEED` and the batch id, so it is reproducible), and
//! otherwise scores every item by the share of distinct tokens in its
//! completion. With `COGRPO_FIXTURE_LOG=PATH` every request appends
//! `<batch_id> <mode> <items>` to PATH before it is answered, so a test can
//! compute the exact failure counters the run must report.
//! `COGRPO_FIXTURE_DELAY_S` delays every reply (a slow reward model).

use std::io::{BufRead, Write};

use serde_json::{Value, json};

/// The ways a flaky request fails: crash (exit 3), hang (3 s, past the
/// timeout), garbage (not JSON), wrong_count, nan (one item NaN), error (an
/// error reply), stale (previous batch id), truncated (half a reply, then
/// exit), eof (exit 0 without replying), wrong_type (scores are strings).
const FAULTS: [&str; 10] = [
    "crash",
    "sleep",
    "garbage",
    "wrong_count",
    "nan",
    "error",
    "stale",
    "truncated",
    "eof",
    "wrong_type",
];

/// A uniform draw in [0, 1) from `(seed, batch_id, salt)` (SplitMix64).
fn uniform(seed: u64, batch_id: u64, salt: u64) -> f64 {
    let mut z = seed
        .wrapping_add(batch_id.wrapping_mul(0x9e37_79b9_7f4a_7c15))
        .wrapping_add(salt.wrapping_mul(0xbf58_476d_1ce4_e5b9));
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^= z >> 31;
    (z >> 11) as f64 / (1u64 << 53) as f64
}

/// The share of distinct tokens in an item's completion.
fn distinct_share(item: &Value) -> f64 {
    let tokens: Vec<u64> = item["completion_tokens"]
        .as_array()
        .map(|a| a.iter().filter_map(Value::as_u64).collect())
        .unwrap_or_default();
    if tokens.is_empty() {
        return 0.0;
    }
    let mut distinct = tokens.clone();
    distinct.sort_unstable();
    distinct.dedup();
    distinct.len() as f64 / tokens.len() as f64
}

/// The fixture's settings, from its environment.
struct Settings {
    /// With a rate, the fixture picks a fault per batch at this rate and
    /// scores each item by its distinct-token share; without, each batch
    /// does what its first item's `metadata.fixture` says.
    fault_rate: Option<f64>,
    seed: u64,
    delay: Option<f64>,
}

/// What to do with a batch and the scores to reply with.
fn plan(settings: &Settings, batch_id: u64, items: &[Value]) -> (String, Vec<Value>) {
    match settings.fault_rate {
        Some(rate) => {
            let seed = settings.seed;
            let mode = if uniform(seed, batch_id, 0) < rate {
                FAULTS[(uniform(seed, batch_id, 1) * FAULTS.len() as f64) as usize]
            } else {
                "ok"
            };
            let scores = items.iter().map(|i| json!(distinct_share(i))).collect();
            (mode.to_string(), scores)
        }
        None => {
            let mode = items
                .first()
                .and_then(|i| i["metadata"]["fixture"].as_str())
                .unwrap_or("ok")
                .to_string();
            let scores = items
                .iter()
                .map(|i| i["metadata"].get("score").cloned().unwrap_or(json!(1.0)))
                .collect();
            (mode, scores)
        }
    }
}

fn reply(scores: &[Value], id: u64) -> String {
    json!({"protocol": "cogrpo-reward/1", "batch_id": id, "scores": scores}).to_string()
}

/// The reply line of `mode` (or the fault it acts out: an exit, a stall, a
/// half-written line).
fn answer(mode: &str, scores: &[Value], batch_id: u64, stdout: &mut impl Write) -> String {
    match mode {
        "sleep" => {
            std::thread::sleep(std::time::Duration::from_secs(3));
            reply(scores, batch_id)
        }
        "crash" => std::process::exit(3),
        "garbage" => "this is not json".to_string(),
        "wrong_count" => reply(&scores[..scores.len().saturating_sub(1)], batch_id),
        "nan" => {
            // Python's json.dumps writes float('nan') as a bare NaN.
            let rest: Vec<String> = scores.iter().skip(1).map(Value::to_string).collect();
            let column = std::iter::once("NaN".to_string())
                .chain(rest)
                .collect::<Vec<_>>()
                .join(",");
            format!(r#"{{"protocol":"cogrpo-reward/1","batch_id":{batch_id},"scores":[{column}]}}"#)
        }
        "error" => {
            json!({"protocol": "cogrpo-reward/1", "batch_id": batch_id, "error": "fixture says no"})
                .to_string()
        }
        "stale" => reply(scores, batch_id.wrapping_sub(1)),
        "truncated" => {
            let full = reply(scores, batch_id);
            let _ = stdout.write_all(&full.as_bytes()[..full.len() / 2]);
            let _ = stdout.flush();
            std::process::exit(0)
        }
        "eof" => std::process::exit(0),
        "wrong_type" => {
            let strings: Vec<Value> = scores.iter().map(|v| json!(v.to_string())).collect();
            reply(&strings, batch_id)
        }
        _ => reply(scores, batch_id),
    }
}

fn main() {
    let env_f64 = |k: &str| std::env::var(k).ok().and_then(|v| v.parse::<f64>().ok());
    let settings = Settings {
        fault_rate: env_f64("COGRPO_FIXTURE_FAULT_RATE"),
        seed: env_f64("COGRPO_FIXTURE_SEED").map_or(0, |s| s as u64),
        delay: env_f64("COGRPO_FIXTURE_DELAY_S").filter(|d| *d > 0.0),
    };
    let mut log = std::env::var_os("COGRPO_FIXTURE_LOG").and_then(|p| {
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(p)
            .ok()
    });
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
        let (mode, scores) = plan(&settings, batch_id, &items);
        if let Some(f) = &mut log {
            let _ = writeln!(f, "{batch_id} {mode} {}", items.len()).and_then(|()| f.flush());
        }
        if let Some(d) = settings.delay {
            std::thread::sleep(std::time::Duration::from_secs_f64(d));
        }
        let text = answer(&mode, &scores, batch_id, &mut stdout);
        if writeln!(stdout, "{text}")
            .and_then(|()| stdout.flush())
            .is_err()
        {
            return;
        }
    }
}
