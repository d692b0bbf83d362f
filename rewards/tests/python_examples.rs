//! The shipped Python plugins (`examples/rewards/`) against the real
//! interpreter on loopback. They need `python3` on PATH (standard library
//! only; `.ci/run` installs it where it is missing) and fail without it: a
//! missing interpreter must not pass as a tested plugin.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use rewards::http::{HttpReward, HttpSpec};
use rewards::subprocess::{SubprocessReward, SubprocessSpec};
use rewards::{FailureKind, Reward, RewardItem};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn python() -> &'static str {
    let ok = Command::new("python3")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    assert!(
        ok,
        "python3 not found on PATH: the shipped Python reward plugins cannot be tested \
         (Debian: apt-get install python3)"
    );
    "python3"
}

fn items() -> Vec<RewardItem> {
    ["To be or not to bex", "", "qqq zzz"]
        .iter()
        .enumerate()
        .map(|(i, c)| RewardItem {
            id: format!("{i}/0"),
            prompt: String::new(),
            completion: (*c).into(),
            prompt_tokens: vec![],
            completion_tokens: vec![],
            metadata: serde_json::json!({}),
        })
        .collect()
}

fn corpus() -> String {
    root()
        .join("data/tinyshakespeare/input.txt")
        .display()
        .to_string()
}

fn check(scores: &rewards::BatchScores) {
    let s: Vec<f32> = scores.scores.iter().map(|s| s.unwrap()).collect();
    assert!((s[0] - 5.0 / 6.0).abs() < 1e-6, "{s:?}");
    assert_eq!(&s[1..], &[0.0, 0.0]);
    assert_eq!(
        scores.parts["num_words"],
        vec![Some(6.0), Some(0.0), Some(2.0)]
    );
}

#[test]
fn json_lines_example_scores_words() {
    let py = python();
    let plugin = SubprocessReward::new(SubprocessSpec {
        name: "words".into(),
        command: vec![
            py.into(),
            root()
                .join("examples/rewards/word_reward.py")
                .display()
                .to_string(),
            corpus(),
        ],
        cwd: None,
        env: Vec::new(),
        timeout: Duration::from_secs(30),
        max_reply_bytes: 1 << 20,
        max_batch: 64,
        retries: 1,
    });
    let rt = tokio::runtime::Runtime::new().unwrap();
    for _ in 0..3 {
        check(&rt.block_on(plugin.score(&items())).unwrap());
    }
    assert_eq!(plugin.restarts(), 0);
}

#[test]
fn http_example_server_scores_words_and_rejects_bad_requests() {
    let py = python();
    let mut server = Command::new(py)
        .arg(root().join("examples/rewards/http_reward_server.py"))
        .args(["--port", "0", &corpus()])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(server.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let url = line
        .trim()
        .strip_prefix("listening on ")
        .expect("the server announces its url")
        .to_string();
    let spec = |url: String| HttpSpec {
        name: "words".into(),
        url,
        timeout: Duration::from_secs(30),
        concurrency: 4,
        max_batch: 2,
        retries: 1,
        backoff: Duration::from_millis(50),
        max_reply_bytes: 1 << 20,
    };
    let rt = tokio::runtime::Runtime::new().unwrap();
    let result = rt.block_on(HttpReward::new(spec(url.clone())).unwrap().score(&items()));
    // A wrong path gets the server's error reply.
    let wrong = rt.block_on(
        HttpReward::new(spec(url.replace("/score", "/nope")))
            .unwrap()
            .score(&items()),
    );
    server.kill().ok();
    server.wait().ok();
    check(&result.unwrap());
    assert_eq!(wrong.unwrap_err().kind, FailureKind::PluginError);
}
