//! The `Reward` trait: what every reward, built in or plugged in, is.

use std::future::Future;
use std::pin::Pin;

use crate::failure::RewardFailure;
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
