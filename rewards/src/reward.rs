//! The `Reward` trait and how a reward can fail.

use std::fmt;
use std::future::Future;
use std::pin::Pin;

use serde::{Deserialize, Serialize};

use crate::item::{BatchScores, RewardItem};

/// A boxed future, so that `Reward` stays object-safe (rewards live in a
/// registry as `Box<dyn Reward>`).
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// A scorer of batches of completions. Async so that slow rewards (a
/// subprocess, a reward server) overlap with each other.
///
/// A reward may fail for a whole batch (`Err`), or per item by returning a
/// non-finite score; either way the affected items are marked invalid and
/// left out of the advantages, and the failure is counted under its
/// [`FailureKind`]. A wrong number of scores is a failure of the batch.
pub trait Reward: Send + Sync {
    /// The name used in configs, logs and reports.
    fn name(&self) -> &str;

    fn score<'a>(
        &'a self,
        batch: &'a [RewardItem],
    ) -> BoxFuture<'a, Result<BatchScores, RewardFailure>>;

    /// Cumulative recovery counters since start (`restarts` of a plugin
    /// process, `retries` of a request), logged as
    /// `reward/<name>/<counter>`; none for in-process rewards.
    fn counters(&self) -> Vec<(&'static str, u64)> {
        Vec::new()
    }
}

/// Why a reward produced no usable score.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum FailureKind {
    /// No reply within the configured time.
    Timeout,
    /// The plugin process exited, or its pipe or connection broke.
    Crash,
    /// The reply is not valid JSON or does not follow the protocol.
    Malformed,
    /// The reply has a different number of scores than the request had items.
    WrongCount,
    /// A score is NaN or infinite (counted per item).
    NonFinite,
    /// The plugin answered with an error reply.
    PluginError,
    /// The HTTP server answered with an error status.
    HttpStatus,
}

impl FailureKind {
    pub const ALL: [FailureKind; 7] = [
        FailureKind::Timeout,
        FailureKind::Crash,
        FailureKind::Malformed,
        FailureKind::WrongCount,
        FailureKind::NonFinite,
        FailureKind::PluginError,
        FailureKind::HttpStatus,
    ];

    /// The name used in logs (`reward/<name>/failures/<kind>`).
    pub fn as_str(self) -> &'static str {
        match self {
            FailureKind::Timeout => "timeout",
            FailureKind::Crash => "crash",
            FailureKind::Malformed => "malformed",
            FailureKind::WrongCount => "wrong_count",
            FailureKind::NonFinite => "non_finite",
            FailureKind::PluginError => "plugin_error",
            FailureKind::HttpStatus => "http_status",
        }
    }
}

impl fmt::Display for FailureKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A failure of a whole batch, with a message for the user.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RewardFailure {
    pub kind: FailureKind,
    pub message: String,
}

impl RewardFailure {
    pub fn new(kind: FailureKind, message: impl Into<String>) -> Self {
        Self {
            kind,
            message: message.into(),
        }
    }
}

impl fmt::Display for RewardFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.kind, self.message)
    }
}

impl std::error::Error for RewardFailure {}
