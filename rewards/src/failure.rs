//! Why a reward produced no usable score: the kinds of failure the
//! plugins' counters and the run's failure budget count.

use std::fmt;

use serde::{Deserialize, Serialize};

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
