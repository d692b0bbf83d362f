//! What a rank's process shares with every other thread of it: the
//! checkpoint write guard, how a lost peer ends the process, whether it is
//! a node of a multi-node run, and the fingerprint nodes agree on.

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

pub(super) static MULTI_NODE: std::sync::atomic::AtomicBool =
    std::sync::atomic::AtomicBool::new(false);

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
