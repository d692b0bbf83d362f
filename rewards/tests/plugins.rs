//! Reward plugins against real processes and a real HTTP server on
//! loopback: every failure kind is counted, the failed items are excluded,
//! and the next batch is scored again (the run continues).

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use rewards::http::{HttpReward, HttpSpec};
use rewards::subprocess::{SubprocessReward, SubprocessSpec};
use rewards::{
    Aggregation, CostConfig, FailureKind, Outcome, Reward, RewardItem, RewardSet, RolloutCost,
};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn items(mode: &str, n: usize) -> Vec<RewardItem> {
    (0..n)
        .map(|i| RewardItem {
            id: format!("{i}/0"),
            prompt: "p".into(),
            completion: "c".into(),
            prompt_tokens: vec![1],
            completion_tokens: vec![2, 3],
            metadata: json!({"fixture": mode, "score": i as f64}),
        })
        .collect()
}

fn costs(n: usize) -> Vec<RolloutCost> {
    vec![
        RolloutCost {
            nfe: 4.0,
            wall_s: 0.1,
            answer_len: 16
        };
        n
    ]
}

fn fixture(timeout: Duration) -> SubprocessReward {
    SubprocessReward::new(SubprocessSpec {
        name: "fixture".into(),
        command: vec![env!("CARGO_BIN_EXE_cogrpo-reward-fixture").into()],
        cwd: None,
        env: Vec::new(),
        timeout,
        max_reply_bytes: 1 << 20,
        max_batch: 64,
        retries: 0,
    })
}

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

#[test]
fn subprocess_survives_every_failure_kind_and_restarts() {
    let rt = rt();
    let plugin = fixture(Duration::from_millis(1500));
    let score = |mode: &str| rt.block_on(plugin.score(&items(mode, 3)));

    assert_eq!(
        score("ok").unwrap().scores,
        vec![Some(0.0), Some(1.0), Some(2.0)]
    );
    let cases = [
        ("crash", FailureKind::Crash),
        ("garbage", FailureKind::Malformed),
        ("wrong_count", FailureKind::WrongCount),
        ("stale", FailureKind::Malformed),
        ("sleep", FailureKind::Timeout),
    ];
    for (i, (mode, kind)) in cases.into_iter().enumerate() {
        let err = score(mode).unwrap_err();
        assert_eq!(err.kind, kind, "{mode}: {err}");
        // The next batch goes to a fresh process and succeeds.
        assert_eq!(score("ok").unwrap().scores.len(), 3, "after {mode}");
        assert_eq!(plugin.restarts(), i as u64 + 1, "after {mode}");
    }
    // An error reply is a well-formed answer: no restart.
    let err = score("error").unwrap_err();
    assert_eq!(err.kind, FailureKind::PluginError);
    assert!(err.message.contains("fixture says no"), "{err}");
    assert_eq!(score("ok").unwrap().scores.len(), 3);
    assert_eq!(plugin.restarts(), cases.len() as u64);
    // NaN is per item.
    let nan = score("nan").unwrap();
    assert!(nan.scores[0].is_some_and(f32::is_nan) && nan.scores[1] == Some(1.0));
}

#[test]
fn a_missing_program_is_a_crash_naming_the_command() {
    let plugin = SubprocessReward::new(SubprocessSpec {
        name: "missing".into(),
        command: vec!["/nonexistent/cogrpo-plugin".into()],
        cwd: None,
        env: Vec::new(),
        timeout: Duration::from_secs(1),
        max_reply_bytes: 1024,
        max_batch: 64,
        retries: 1,
    });
    let err = rt().block_on(plugin.score(&items("ok", 1))).unwrap_err();
    assert_eq!(err.kind, FailureKind::Crash);
    assert!(err.message.contains("/nonexistent/cogrpo-plugin"), "{err}");
}

#[test]
fn reward_set_counts_failures_excludes_items_and_enforces_the_budget() {
    let mut set = RewardSet::new(Aggregation::SumThenNormalize, CostConfig::default(), 0.5)
        .with_failure_window(1);
    set.push(Box::new(fixture(Duration::from_millis(1500))), 1.0, None);

    let ok = set.score(&items("ok", 4), &costs(4)).unwrap();
    assert!((0..4).all(|i| ok.valid(i)));
    let adv = ok.advantages(4);
    assert!(adv.iter().all(Option::is_some));
    assert!(adv[0].unwrap() < 0.0 && adv[3].unwrap() > 0.0);

    // One NaN item of four: under the budget, that item is invalid.
    let nan = set.score(&items("nan", 4), &costs(4)).unwrap();
    assert_eq!(nan.outcomes[0][0], Outcome::Failed(FailureKind::NonFinite));
    assert!(!nan.valid(0) && nan.valid(1));
    let adv = nan.advantages(4);
    assert!(adv[0].is_none() && adv[1..].iter().all(Option::is_some));

    // The whole batch failing exceeds 50%: a clear error naming the plugin.
    let err = set.score(&items("crash", 4), &costs(4)).unwrap_err();
    assert_eq!(err.reward, "fixture");
    assert_eq!((err.failed, err.total), (4, 4));
    assert!(err.to_string().contains("crash"), "{err}");
    let counts = set.failure_counts();
    assert_eq!(counts[&("fixture".to_string(), FailureKind::NonFinite)], 1);
    assert_eq!(counts[&("fixture".to_string(), FailureKind::Crash)], 4);
    let scalars: std::collections::BTreeMap<String, f64> =
        set.failure_scalars().into_iter().collect();
    assert_eq!(scalars["reward/fixture/failures/crash"], 4.0);
    assert_eq!(scalars["reward/fixture/failures/timeout"], 0.0);
    // ... and the set still works afterwards.
    assert!(set.score(&items("ok", 4), &costs(4)).is_ok());
}

/// A minimal HTTP/1.1 reward server on loopback. Behaviour per request, by
/// the first item's `metadata.fixture`: as the subprocess fixture, plus
/// `flaky` (503 on every second request), `bad_request` (400) and `sleep`.
async fn serve(listener: tokio::net::TcpListener, requests: Arc<AtomicUsize>) {
    let flaky = Arc::new(AtomicUsize::new(0));
    loop {
        let Ok((mut sock, _)) = listener.accept().await else {
            return;
        };
        let requests = requests.clone();
        let flaky = flaky.clone();
        tokio::spawn(async move {
            loop {
                let mut buf = Vec::new();
                let mut byte = [0u8; 1];
                while !buf.ends_with(b"\r\n\r\n") {
                    if sock.read(&mut byte).await.unwrap_or(0) == 0 {
                        return;
                    }
                    buf.push(byte[0]);
                }
                let head = String::from_utf8_lossy(&buf).to_lowercase();
                let len: usize = head
                    .lines()
                    .find_map(|l| l.strip_prefix("content-length:"))
                    .and_then(|v| v.trim().parse().ok())
                    .unwrap_or(0);
                let mut body = vec![0u8; len];
                if sock.read_exact(&mut body).await.is_err() {
                    return;
                }
                requests.fetch_add(1, Ordering::SeqCst);
                let req: Value = serde_json::from_slice(&body).unwrap();
                let id = req["batch_id"].as_u64().unwrap();
                let items = req["items"].as_array().unwrap();
                let mode = items[0]["metadata"]["fixture"].as_str().unwrap_or("ok");
                let scores: Vec<Value> = items
                    .iter()
                    .map(|i| i["metadata"]["score"].clone())
                    .collect();
                let ok = json!({"protocol": "cogrpo-reward/1", "batch_id": id, "scores": scores,
                                "parts": {"twice": scores.iter().map(|s| s.as_f64().unwrap() * 2.0).collect::<Vec<_>>()}});
                let (status, text) = match mode {
                    "flaky" if flaky.fetch_add(1, Ordering::SeqCst).is_multiple_of(2) => {
                        (503, "busy".to_string())
                    }
                    "bad_request" => (400, "no".to_string()),
                    "sleep" => {
                        tokio::time::sleep(Duration::from_secs(3)).await;
                        (200, ok.to_string())
                    }
                    "garbage" => (200, "<html>".to_string()),
                    "wrong_count" => (
                        200,
                        json!({"protocol": "cogrpo-reward/1", "batch_id": id, "scores": []})
                            .to_string(),
                    ),
                    "error" | "busy_error" => (
                        if mode == "error" { 500 } else { 503 },
                        json!({"protocol": "cogrpo-reward/1", "batch_id": id, "error": "oom"})
                            .to_string(),
                    ),
                    _ => (200, ok.to_string()),
                };
                let resp = format!(
                    "HTTP/1.1 {status} X\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{text}",
                    text.len()
                );
                if sock.write_all(resp.as_bytes()).await.is_err() {
                    return;
                }
            }
        });
    }
}

fn http_spec(url: String, retries: u32) -> HttpSpec {
    HttpSpec {
        name: "server".into(),
        url,
        timeout: Duration::from_millis(1000),
        concurrency: 4,
        max_batch: 2,
        retries,
        backoff: Duration::from_millis(10),
        max_reply_bytes: 1 << 20,
    }
}

#[test]
fn http_plugin_batches_retries_and_reports_every_failure_kind() {
    let rt = rt();
    let requests = Arc::new(AtomicUsize::new(0));
    let listener = rt
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .unwrap();
    let url = format!("http://{}/score", listener.local_addr().unwrap());
    rt.spawn(serve(listener, requests.clone()));
    let plugin = HttpReward::new(http_spec(url.clone(), 2)).unwrap();

    // 5 items in chunks of 2: three requests, reassembled in order with parts.
    let before = requests.load(Ordering::SeqCst);
    let r = rt.block_on(plugin.score(&items("ok", 5))).unwrap();
    assert_eq!(r.scores, (0..5).map(|i| Some(i as f32)).collect::<Vec<_>>());
    assert_eq!(r.parts["twice"][4], Some(8.0));
    assert_eq!(requests.load(Ordering::SeqCst) - before, 3);

    // 503 on every other request: retried, then scored.
    let r = rt.block_on(plugin.score(&items("flaky", 2))).unwrap();
    assert_eq!(r.scores.len(), 2);
    assert!(plugin.retries_used() >= 1);

    // An error reply is the plugin's answer, not a transient fault: not
    // retried even under 503, which alone would be (issue 37).
    let (sent, retried) = (requests.load(Ordering::SeqCst), plugin.retries_used());
    let err = rt
        .block_on(plugin.score(&items("busy_error", 1)))
        .unwrap_err();
    assert_eq!(err.kind, FailureKind::PluginError, "{err}");
    assert_eq!(requests.load(Ordering::SeqCst) - sent, 1, "sent once");
    assert_eq!(plugin.retries_used(), retried, "no retry counted");

    let cases = [
        ("bad_request", FailureKind::HttpStatus),
        ("sleep", FailureKind::Timeout),
        ("garbage", FailureKind::Malformed),
        ("wrong_count", FailureKind::WrongCount),
        ("error", FailureKind::PluginError),
    ];
    let no_retry = HttpReward::new(http_spec(url, 0)).unwrap();
    for (mode, kind) in cases {
        let err = rt.block_on(no_retry.score(&items(mode, 2))).unwrap_err();
        assert_eq!(err.kind, kind, "{mode}: {err}");
        assert!(
            rt.block_on(no_retry.score(&items("ok", 2))).is_ok(),
            "after {mode}"
        );
    }

    // Nobody listening: a crash-kind failure after the retries.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let dead_url = format!("http://{}/score", closed.local_addr().unwrap());
    drop(closed);
    let err = rt
        .block_on(
            HttpReward::new(http_spec(dead_url, 1))
                .unwrap()
                .score(&items("ok", 1)),
        )
        .unwrap_err();
    assert_eq!(err.kind, FailureKind::Crash, "{err}");
}

#[test]
fn http_url_must_be_plain_http() {
    let err = HttpReward::new(http_spec("https://example.org/score".into(), 0))
        .err()
        .unwrap();
    assert!(err.contains("only http://"), "{err}");
    assert!(HttpReward::new(http_spec("not a url".into(), 0)).is_err());
}
