//! Scores N synthetic completions through an HTTP reward plugin and prints
//! the throughput: how long a reward server takes next to the rollouts.
//!
//! ```sh
//! python3 examples/rewards/http_reward_server.py --port 8000 &
//! cargo run --release -p rewards --example reward_throughput -- \
//!     --url http://127.0.0.1:8000/score --items 10000 --concurrency 8
//! ```

use std::time::{Duration, Instant};

use clap::Parser;
use rewards::http::{HttpReward, HttpSpec};
use rewards::{Aggregation, CostConfig, RewardItem, RewardSet, RolloutCost};

#[derive(Parser)]
struct Args {
    #[arg(long, default_value = "http://127.0.0.1:8000/score")]
    url: String,
    #[arg(long, default_value_t = 10_000)]
    items: usize,
    #[arg(long, default_value_t = 8)]
    concurrency: usize,
    /// Items per HTTP request.
    #[arg(long, default_value_t = 64)]
    max_batch: usize,
    /// Items per `RewardSet::score` call (a training batch).
    #[arg(long, default_value_t = 1024)]
    batch: usize,
}

fn main() -> Result<(), String> {
    let args = Args::parse();
    let lines = [
        "To be, or not to be, that is the question:",
        "Whether tis nobler in the mind to suffer",
        "qzx vlorb fen",
    ];
    let items: Vec<RewardItem> = (0..args.items)
        .map(|i| RewardItem {
            id: format!("{i}/0"),
            prompt: String::new(),
            completion: lines[i % lines.len()].repeat(3),
            prompt_tokens: vec![0; 16],
            completion_tokens: vec![0; 128],
            metadata: serde_json::json!({"index": i}),
        })
        .collect();
    let reward = HttpReward::new(HttpSpec {
        name: "throughput".into(),
        url: args.url.clone(),
        timeout: Duration::from_secs(30),
        concurrency: args.concurrency,
        max_batch: args.max_batch,
        retries: 2,
        backoff: Duration::from_millis(100),
        max_reply_bytes: 64 << 20,
    })?;
    let mut set = RewardSet::new(Aggregation::SumThenNormalize, CostConfig::default(), 0.0);
    set.push(Box::new(reward), 1.0, None);
    let start = Instant::now();
    let mut scored = 0;
    for chunk in items.chunks(args.batch) {
        let costs = vec![RolloutCost::default(); chunk.len()];
        let batch = set.score(chunk, &costs).map_err(|e| e.to_string())?;
        scored += (0..batch.len()).filter(|&i| batch.valid(i)).count();
    }
    let secs = start.elapsed().as_secs_f64();
    println!(
        "{} completions ({} valid) via {} in {secs:.2} s: {:.0} completions/s (concurrency {}, {} items per request)",
        args.items,
        scored,
        args.url,
        args.items as f64 / secs,
        args.concurrency,
        args.max_batch
    );
    Ok(())
}
