//! A reward plugin running as a long-lived child process that speaks JSON
//! lines: one request line on its stdin per chunk of at most `max_batch`
//! items, one reply line on its stdout. Started from an argument list (never
//! through a shell), with a cleared environment, and restarted after any
//! failure; a chunk that failed is sent again (`retries` times) to the
//! restarted process, so one crash costs one chunk at most, not the batch.

use std::path::PathBuf;
use std::process::Stdio;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, ChildStdin, ChildStdout, Command};
use tokio::sync::Mutex;

use crate::failure::{FailureKind, RewardFailure};
use crate::item::{BatchScores, RewardItem};
use crate::protocol::{Request, parse_reply};
use crate::reward::{BoxFuture, Reward};

/// How to start the plugin.
#[derive(Debug, Clone)]
pub struct SubprocessSpec {
    pub name: String,
    /// Program and arguments (`["python3", "plugin.py"]`).
    pub command: Vec<String>,
    /// Working directory; the caller's when `None`.
    pub cwd: Option<PathBuf>,
    /// The child's whole environment besides `PATH`: nothing else leaks in.
    pub env: Vec<(String, String)>,
    pub timeout: Duration,
    /// Longest reply line accepted, in bytes.
    pub max_reply_bytes: usize,
    /// Items per request line.
    pub max_batch: usize,
    /// Extra attempts of a chunk after a failure other than an error reply
    /// (each on a restarted process).
    pub retries: u32,
}

struct Running {
    child: Child,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
}

pub struct SubprocessReward {
    spec: SubprocessSpec,
    /// `None` until the first batch and after a failure (restart on next use).
    process: Mutex<Option<Running>>,
    next_batch: AtomicU64,
    restarts: AtomicU64,
    retried: AtomicU64,
}

impl SubprocessReward {
    pub fn new(spec: SubprocessSpec) -> Self {
        Self {
            spec,
            process: Mutex::new(None),
            next_batch: AtomicU64::new(0),
            restarts: AtomicU64::new(0),
            retried: AtomicU64::new(0),
        }
    }

    /// Times the process was (re)started after the first start.
    pub fn restarts(&self) -> u64 {
        self.restarts.load(Ordering::Relaxed)
    }

    /// Chunks sent again after a failure, since start.
    pub fn retries_used(&self) -> u64 {
        self.retried.load(Ordering::Relaxed)
    }

    fn spawn(&self) -> Result<Running, RewardFailure> {
        let (program, args) =
            self.spec.command.split_first().ok_or_else(|| {
                RewardFailure::new(FailureKind::Crash, "the plugin command is empty")
            })?;
        let mut cmd = Command::new(program);
        cmd.args(args)
            .env_clear()
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true);
        if let Some(path) = std::env::var_os("PATH") {
            cmd.env("PATH", path);
        }
        cmd.envs(self.spec.env.iter().map(|(k, v)| (k, v)));
        if let Some(dir) = &self.spec.cwd {
            cmd.current_dir(dir);
        }
        let mut child = cmd.spawn().map_err(|e| {
            RewardFailure::new(
                FailureKind::Crash,
                format!("cannot start {:?}: {e}", self.spec.command),
            )
        })?;
        let stdin = child.stdin.take().expect("stdin is piped");
        let stdout = BufReader::new(child.stdout.take().expect("stdout is piped"));
        Ok(Running {
            child,
            stdin,
            stdout,
        })
    }

    async fn exchange(
        &self,
        running: &mut Running,
        request: &str,
        batch_id: u64,
        n: usize,
    ) -> Result<BatchScores, RewardFailure> {
        let crashed = |what: &str, e: std::io::Error| {
            RewardFailure::new(
                FailureKind::Crash,
                format!("{what} the plugin process failed: {e}"),
            )
        };
        running
            .stdin
            .write_all(request.as_bytes())
            .await
            .map_err(|e| crashed("writing to", e))?;
        running
            .stdin
            .write_all(b"\n")
            .await
            .map_err(|e| crashed("writing to", e))?;
        running
            .stdin
            .flush()
            .await
            .map_err(|e| crashed("writing to", e))?;
        let mut line = Vec::new();
        let limit = self.spec.max_reply_bytes as u64 + 1;
        let mut limited = (&mut running.stdout).take(limit);
        let bytes = limited
            .read_until(b'\n', &mut line)
            .await
            .map_err(|e| crashed("reading from", e))?;
        if bytes == 0 {
            let status = running.child.try_wait().ok().flatten();
            let how = status.map_or_else(
                || "closed its stdout".to_string(),
                |s| format!("exited ({s})"),
            );
            return Err(RewardFailure::new(
                FailureKind::Crash,
                format!("the plugin process {how} without replying"),
            ));
        }
        if !line.ends_with(b"\n") && line.len() as u64 >= limit {
            return Err(RewardFailure::new(
                FailureKind::Malformed,
                format!(
                    "reply line is longer than {} bytes",
                    self.spec.max_reply_bytes
                ),
            ));
        }
        parse_reply(&line, batch_id, n)
    }

    /// One chunk, sent again to a restarted process after a failure (not
    /// after an error reply: the plugin said no, and would again).
    async fn score_chunk(&self, chunk: &[RewardItem]) -> Result<BatchScores, RewardFailure> {
        let mut attempt = 0;
        loop {
            match self.exchange_once(chunk).await {
                Err(e) if e.kind != FailureKind::PluginError && attempt < self.spec.retries => {
                    attempt += 1;
                    self.retried.fetch_add(1, Ordering::Relaxed);
                }
                outcome => return outcome,
            }
        }
    }

    /// One request line and its reply, starting the process if needed.
    async fn exchange_once(&self, chunk: &[RewardItem]) -> Result<BatchScores, RewardFailure> {
        let batch_id = self.next_batch.fetch_add(1, Ordering::Relaxed);
        let request = Request::new(&self.spec.name, batch_id, chunk).to_json();
        let mut guard = self.process.lock().await;
        if guard.is_none() {
            if batch_id > 0 {
                self.restarts.fetch_add(1, Ordering::Relaxed);
            }
            *guard = Some(self.spawn()?);
        }
        let running = guard.as_mut().expect("started above");
        let outcome = match tokio::time::timeout(
            self.spec.timeout,
            self.exchange(running, &request, batch_id, chunk.len()),
        )
        .await
        {
            Ok(result) => result,
            Err(_) => Err(RewardFailure::new(
                FailureKind::Timeout,
                format!("no reply within {:.1} s", self.spec.timeout.as_secs_f64()),
            )),
        };
        // After a failure other than a well-formed error reply the process
        // state is unknown (a late reply may still be in the pipe): kill it
        // and start afresh next time.
        if let Err(e) = &outcome
            && e.kind != FailureKind::PluginError
            && let Some(mut dead) = guard.take()
        {
            let _ = dead.child.start_kill();
            let _ = dead.child.wait().await;
        }
        outcome
    }
}

impl Reward for SubprocessReward {
    fn name(&self) -> &str {
        &self.spec.name
    }

    fn counters(&self) -> Vec<(&'static str, u64)> {
        vec![
            ("restarts", self.restarts()),
            ("retries", self.retries_used()),
        ]
    }

    /// Chunks go one after another through the one process and fail
    /// independently ([`BatchScores::from_chunks`]).
    fn score<'a>(
        &'a self,
        batch: &'a [RewardItem],
    ) -> BoxFuture<'a, Result<BatchScores, RewardFailure>> {
        Box::pin(async move {
            let chunks: Vec<&[RewardItem]> = batch.chunks(self.spec.max_batch.max(1)).collect();
            let mut results = Vec::with_capacity(chunks.len());
            for chunk in &chunks {
                results.push(self.score_chunk(chunk).await);
            }
            BatchScores::from_chunks(&chunks, results)
        })
    }
}
