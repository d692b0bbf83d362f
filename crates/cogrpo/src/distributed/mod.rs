//! Data parallelism across devices and machines, on burn's collective.
//!
//! A run has `nodes x devices` *ranks*: one process per node (machine), one
//! thread per local device, each thread a rank with its own replica of the
//! model. Every rank builds the same global batch (the data and the noise
//! are keyed by step, not by rank), computes the loss and gradients of its
//! share of the rows, normalised by the global row count, and the ranks
//! all-reduce the gradients (a sum), so every rank steps the same optimizer
//! state with the same update: the run is the single-process run with the
//! same global batch, up to the order of one float sum.
//!
//! - The data path is [burn-collective](https://crates.io/crates/burn-collective):
//!   `all_reduce` between the devices of a node and, over websockets,
//!   between nodes (node 0 hosts its orchestrator). Everything a rank needs
//!   from the others goes through it: gradients in one flat buffer per step
//!   ([`World::sum_gradients`]), and Co-GRPO's rollouts and statistics as
//!   serialized bytes ([`World::gather`]).
//! - The control plane ([`control`]) is what burn-collective lacks: the
//!   launch handshake (same config, same world shape on every node) and
//!   liveness (a rank that dies ends the run on every rank with its name,
//!   instead of a hang in the next all-reduce).
//! - Only rank 0 writes (checkpoints, TensorBoard, reports, dumps); the
//!   other ranks read the run directory, which must be visible to every
//!   node (a shared filesystem across machines).
//!
//! `docs/distributed.md` is the user's side of this.

pub mod control;
mod launch;
mod world;

pub use launch::{Cluster, Launch};
pub use world::World;

use std::sync::{Mutex, MutexGuard};

/// Exit status of a rank stopped because another rank failed or was lost.
pub const EXIT_PEER_LOST: i32 = 3;

static WRITING: Mutex<()> = Mutex::new(());

/// Held while rank 0 writes a checkpoint: a rank stopped by the control
/// plane waits for it before it exits, so no checkpoint is left
/// half-written (they are also written to a temporary name and renamed).
pub fn write_guard() -> MutexGuard<'static, ()> {
    WRITING.lock().unwrap_or_else(|p| p.into_inner())
}

/// Prints `why` and ends this process with [`EXIT_PEER_LOST`], once any
/// checkpoint being written is complete.
pub(crate) fn stop_process(why: &str) -> ! {
    let _guard = write_guard();
    eprintln!("error: {why}");
    std::process::exit(EXIT_PEER_LOST)
}

static MULTI_NODE: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Whether this process is a node of a multi-node run. Its panic hook then
/// waits a moment before exiting: burn's websocket threads panic when a
/// peer dies, and the control plane should get to name the lost rank.
pub fn is_multi_node() -> bool {
    MULTI_NODE.load(std::sync::atomic::Ordering::SeqCst)
}

/// What every node of a run must agree on: the command, the resolved
/// config and cogrpo's version (16 hex digits of their SHA-256).
pub fn fingerprint(command: &str, config_toml: &str) -> String {
    use sha2::{Digest, Sha256};
    let digest = Sha256::new()
        .chain_update(command)
        .chain_update([0])
        .chain_update(env!("CARGO_PKG_VERSION"))
        .chain_update([0])
        .chain_update(config_toml)
        .finalize();
    digest[..8].iter().map(|b| format!("{b:02x}")).collect()
}
