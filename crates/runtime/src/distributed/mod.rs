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
mod process;
mod world;

pub use launch::{Cluster, Launch};
pub use process::{EXIT_PEER_LOST, fingerprint, is_multi_node, write_guard};
pub use world::World;
