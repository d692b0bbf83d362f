//! A real plugin process failing 10% of its requests in ten ways, at the
//! default settings (chunks of 64 items, one retry on a restarted process,
//! the failure budget judged over 10 batches; only the timeout is short, so
//! that hangs cost 1 s): 300 batches of 128 items never stop, and the
//! failure counters, restarts and retries equal what the plugin's own log
//! says it did.

use std::collections::BTreeMap;

use rewards::{
    FailureKind, RewardItem, RewardTerm, RewardsConfig, RolloutCost, SubprocessTerm,
    build_reward_set,
};
use serde_json::json;

const BATCHES: usize = 300;
const ITEMS: usize = 128;

fn batch(b: usize) -> Vec<RewardItem> {
    (0..ITEMS)
        .map(|i| RewardItem {
            id: format!("{b}/{i}"),
            prompt: String::new(),
            completion: String::new(),
            prompt_tokens: Vec::new(),
            completion_tokens: (0..8)
                .map(|k| ((b * 7 + i * 3 + k * k) % 5) as u32)
                .collect(),
            metadata: json!(null),
        })
        .collect()
}

/// The failure kind a fault that kills the process is counted as.
fn killing_kind(mode: &str) -> Option<FailureKind> {
    Some(match mode {
        "crash" | "eof" => FailureKind::Crash,
        "sleep" => FailureKind::Timeout,
        "garbage" | "stale" | "truncated" | "wrong_type" => FailureKind::Malformed,
        "wrong_count" => FailureKind::WrongCount,
        _ => return None,
    })
}

/// Replays the plugin's log through the documented policy (a request that
/// kills the process is retried once; an error reply or a NaN is final):
/// the expected `(failures per kind, restarts, retries)`.
fn expected(log: &[(String, usize)]) -> (BTreeMap<FailureKind, u64>, u64, u64) {
    let mut failures: BTreeMap<FailureKind, u64> = BTreeMap::new();
    let (mut restarts, mut retries) = (0, 0);
    let mut i = 0;
    let mut kills = 0;
    while i < log.len() {
        let (first, n) = &log[i];
        let last = if killing_kind(first).is_some() {
            kills += 1;
            retries += 1;
            i += 1;
            let (retry, _) = &log[i];
            if killing_kind(retry).is_some() {
                kills += 1;
            }
            retry
        } else {
            first
        };
        match (last.as_str(), killing_kind(last)) {
            ("nan", _) => *failures.entry(FailureKind::NonFinite).or_default() += 1,
            ("error", _) => *failures.entry(FailureKind::PluginError).or_default() += *n as u64,
            (_, Some(kind)) => *failures.entry(kind).or_default() += *n as u64,
            _ => {}
        }
        i += 1;
    }
    // Every killed process is started again for the next request.
    let last_killed = log.last().is_some_and(|(m, _)| killing_kind(m).is_some());
    restarts += kills - u64::from(last_killed);
    (failures, restarts, retries)
}

#[test]
fn a_plugin_failing_ten_percent_of_requests_in_ten_ways_never_stops_a_run_and_is_counted_exactly() {
    let tmp = tempfile::tempdir().unwrap();
    let log_path = tmp.path().join("fixture.log");
    let cfg = RewardsConfig {
        terms: vec![RewardTerm::Subprocess(SubprocessTerm {
            name: "flaky".into(),
            weight: 1.0,
            command: vec![env!("CARGO_BIN_EXE_cogrpo-reward-fixture").into()],
            cwd: None,
            env: [
                ("COGRPO_FIXTURE_FAULT_RATE", "0.1"),
                ("COGRPO_FIXTURE_SEED", "7"),
                ("COGRPO_FIXTURE_LOG", log_path.to_str().unwrap()),
            ]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
            timeout_s: 1.0,
            max_reply_bytes: 16 << 20,
            max_batch: 64,
            retries: 1,
        })],
        ..RewardsConfig::default()
    };
    // The defaults this test claims to run at.
    let defaults: RewardsConfig =
        toml::from_str("[[terms]]\nkind = \"subprocess\"\nname = \"x\"\ncommand = [\"x\"]\n")
            .unwrap();
    let RewardTerm::Subprocess(SubprocessTerm {
        max_batch, retries, ..
    }) = &defaults.terms[0]
    else {
        unreachable!()
    };
    assert_eq!((*max_batch, *retries, defaults.failure_window), (64, 1, 10));

    let set = build_reward_set(&cfg, "sudoku4").unwrap();
    let costs = vec![RolloutCost::default(); ITEMS];
    let mut scored_items = 0;
    for b in 0..BATCHES {
        let scored = set
            .score(&batch(b), &costs)
            .unwrap_or_else(|e| panic!("batch {b} stopped the run: {e}"));
        scored_items += (0..ITEMS).filter(|&i| scored.valid(i)).count();
    }
    let log: Vec<(String, usize)> = std::fs::read_to_string(&log_path)
        .unwrap()
        .lines()
        .map(|l| {
            let f: Vec<&str> = l.split(' ').collect();
            (f[1].to_string(), f[2].parse().unwrap())
        })
        .collect();
    let (want, restarts, retries) = expected(&log);
    let faults = log.iter().filter(|(m, _)| m != "ok").count();
    let kinds: std::collections::BTreeSet<&str> = log.iter().map(|(m, _)| m.as_str()).collect();
    assert_eq!(
        kinds.len(),
        11,
        "every fault happened at least once: {kinds:?}"
    );
    assert!(
        (0.07..0.13).contains(&(faults as f64 / log.len() as f64)),
        "{faults} faults in {} requests",
        log.len()
    );
    let got: BTreeMap<FailureKind, u64> = set
        .failure_counts()
        .into_iter()
        .map(|((_, kind), n)| (kind, n))
        .filter(|&(_, n)| n > 0)
        .collect();
    assert_eq!(got, want);
    let counters: BTreeMap<&str, u64> = set
        .recovery_counters()
        .into_iter()
        .map(|(_, c, n)| (c, n))
        .collect();
    assert_eq!(counters["restarts"], restarts);
    assert_eq!(counters["retries"], retries);
    let failed_items: u64 = want.values().sum();
    assert_eq!(scored_items as u64 + failed_items, (BATCHES * ITEMS) as u64);
    eprintln!(
        "{} requests, {faults} faults, {retries} retries, {restarts} restarts, failed items {want:?}",
        log.len()
    );
}
