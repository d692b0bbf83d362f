//! A reward plugin behind an HTTP endpoint (typically a Python server with
//! a neural reward model on a GPU box): a batch is split into chunks of at
//! most `max_batch` items, POSTed concurrently (at most `concurrency` in
//! flight, over pooled connections), each with a timeout and bounded
//! retries with exponential back-off.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use futures::future::join_all;
use tokio::sync::Semaphore;

use crate::failure::{FailureKind, RewardFailure};
use crate::item::{BatchScores, RewardItem};
use crate::protocol::{Request, parse_reply};
use crate::reward::{BoxFuture, Reward};

#[derive(Debug, Clone)]
pub struct HttpSpec {
    pub name: String,
    /// `http://host:port/path` (plain HTTP; put TLS in a proxy in front).
    pub url: String,
    pub timeout: Duration,
    /// Requests in flight at once.
    pub concurrency: usize,
    /// Items per request.
    pub max_batch: usize,
    /// Extra attempts after a timeout, a refused connection, HTTP 429 or 5xx.
    pub retries: u32,
    /// First back-off; doubles per retry.
    pub backoff: Duration,
    pub max_reply_bytes: usize,
}

pub struct HttpReward {
    spec: HttpSpec,
    client: reqwest::Client,
    permits: Semaphore,
    next_batch: AtomicU64,
    retried: AtomicU64,
}

impl HttpReward {
    pub fn new(spec: HttpSpec) -> Result<Self, String> {
        let url = reqwest::Url::parse(&spec.url)
            .map_err(|e| format!("invalid url {:?}: {e}", spec.url))?;
        if url.scheme() != "http" {
            return Err(format!(
                "url {:?}: only http:// is supported (terminate TLS in a proxy in front of the reward server)",
                spec.url
            ));
        }
        let client = reqwest::Client::builder()
            .pool_max_idle_per_host(spec.concurrency)
            .timeout(spec.timeout)
            .user_agent(concat!("cogrpo/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| format!("cannot build the HTTP client: {e}"))?;
        let permits = Semaphore::new(spec.concurrency.max(1));
        Ok(Self {
            spec,
            client,
            permits,
            next_batch: AtomicU64::new(0),
            retried: AtomicU64::new(0),
        })
    }

    /// Requests sent again after a retriable failure, since start.
    pub fn retries_used(&self) -> u64 {
        self.retried.load(Ordering::Relaxed)
    }

    /// One request, retried on transient failures.
    async fn post_chunk(&self, chunk: &[RewardItem]) -> Result<BatchScores, RewardFailure> {
        let batch_id = self.next_batch.fetch_add(1, Ordering::Relaxed);
        let body = Request::new(&self.spec.name, batch_id, chunk).to_json();
        let mut attempt = 0;
        loop {
            let result = {
                let _permit = self
                    .permits
                    .acquire()
                    .await
                    .expect("the semaphore is never closed");
                self.attempt(&body, batch_id, chunk.len()).await
            };
            match result {
                Ok(scores) => return Ok(scores),
                Err((failure, retriable)) if !retriable || attempt >= self.spec.retries => {
                    return Err(failure);
                }
                Err(_) => {
                    let wait = self.spec.backoff.saturating_mul(1 << attempt.min(16));
                    tokio::time::sleep(wait).await;
                    attempt += 1;
                    self.retried.fetch_add(1, Ordering::Relaxed);
                }
            }
        }
    }

    async fn attempt(
        &self,
        body: &str,
        batch_id: u64,
        n: usize,
    ) -> Result<BatchScores, (RewardFailure, bool)> {
        let response = self
            .client
            .post(&self.spec.url)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(body.to_owned())
            .send()
            .await
            .map_err(|e| transport_failure(&self.spec, e))?;
        let status = response.status();
        let bytes = read_limited(response, self.spec.max_reply_bytes)
            .await
            .map_err(|e| transport_failure(&self.spec, e))?;
        let bytes = bytes.ok_or_else(|| {
            let msg = format!("reply is longer than {} bytes", self.spec.max_reply_bytes);
            (RewardFailure::new(FailureKind::Malformed, msg), false)
        })?;
        if !status.is_success() {
            // A protocol error reply may come with a 4xx/5xx status: prefer
            // its message, and never retry it, whatever the status: the
            // plugin answered and said no (docs/reward-protocol.md).
            if let Err(f) = parse_reply(&bytes, batch_id, n)
                && f.kind == FailureKind::PluginError
            {
                return Err((f, false));
            }
            let retriable =
                status.is_server_error() || status == reqwest::StatusCode::TOO_MANY_REQUESTS;
            let text: String = String::from_utf8_lossy(&bytes).chars().take(120).collect();
            return Err((
                RewardFailure::new(
                    FailureKind::HttpStatus,
                    format!("{} answered {status}: {text}", self.spec.url),
                ),
                retriable,
            ));
        }
        parse_reply(&bytes, batch_id, n).map_err(|f| (f, false))
    }
}

/// The body, or `None` when it exceeds `limit` bytes.
async fn read_limited(
    mut response: reqwest::Response,
    limit: usize,
) -> Result<Option<Vec<u8>>, reqwest::Error> {
    let mut out = Vec::new();
    while let Some(chunk) = response.chunk().await? {
        if out.len() + chunk.len() > limit {
            return Ok(None);
        }
        out.extend_from_slice(&chunk);
    }
    Ok(Some(out))
}

fn transport_failure(spec: &HttpSpec, e: reqwest::Error) -> (RewardFailure, bool) {
    if e.is_timeout() {
        let msg = format!(
            "{}: no reply within {:.1} s",
            spec.url,
            spec.timeout.as_secs_f64()
        );
        (RewardFailure::new(FailureKind::Timeout, msg), true)
    } else {
        (
            RewardFailure::new(FailureKind::Crash, format!("{}: {e}", spec.url)),
            true,
        )
    }
}

impl Reward for HttpReward {
    fn name(&self) -> &str {
        &self.spec.name
    }

    fn counters(&self) -> Vec<(&'static str, u64)> {
        vec![("retries", self.retries_used())]
    }

    /// Chunks fail independently: a failed chunk's items are reported in
    /// [`BatchScores::failed`]; the batch fails as a whole only when every
    /// chunk does.
    fn score<'a>(
        &'a self,
        batch: &'a [RewardItem],
    ) -> BoxFuture<'a, Result<BatchScores, RewardFailure>> {
        Box::pin(async move {
            let chunks: Vec<&[RewardItem]> = batch.chunks(self.spec.max_batch.max(1)).collect();
            let results = join_all(chunks.iter().map(|c| self.post_chunk(c))).await;
            BatchScores::from_chunks(&chunks, results)
        })
    }
}
