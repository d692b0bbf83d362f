//! One writer per run directory. Two processes writing one run directory
//! corrupt each other (checkpoints pruned under a reader, a `config.toml`
//! that disagrees with the weights, TensorBoard files interleaved), so every
//! command that writes one takes an exclusive lock on `<run>/lock` first
//! and a second one is refused with a message naming the holder.
//!
//! The lock is the operating system's (`flock` on Unix, `LockFileEx` on
//! Windows, through `std::fs::File::try_lock`): it is released when the
//! holder exits, however it exits, so a killed run never leaves a stale
//! lock. The file's text (pid, host, command, start time) only describes the
//! holder for the message; nothing parses it to decide anything.

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions, TryLockError};
use std::io::{Read, Seek, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::Context;

/// The locks this process holds, kept until it exits: a process works on a
/// run directory until it ends, and taking the same lock twice in one
/// process (a `run` that pre-trains, then trains arms) must not refuse
/// itself.
static HELD: Mutex<BTreeMap<PathBuf, File>> = Mutex::new(BTreeMap::new());

/// Takes the exclusive lock of the run directory `root` (which exists), or
/// fails naming the process that holds it.
pub fn acquire(root: &Path) -> anyhow::Result<()> {
    let key = root
        .canonicalize()
        .with_context(|| format!("cannot resolve the run directory {}", root.display()))?;
    let mut held = HELD.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    if held.contains_key(&key) {
        return Ok(());
    }
    let path = key.join("lock");
    let mut file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
        .with_context(|| format!("cannot open the run lock {}", path.display()))?;
    match file.try_lock() {
        Ok(()) => {}
        Err(TryLockError::WouldBlock) => {
            let mut holder = String::new();
            let _ = file.read_to_string(&mut holder);
            anyhow::bail!(
                "{} is in use by another process ({}); wait for it to finish, or give this \
                 command another run.out_dir",
                root.display(),
                describe(holder.trim())
            );
        }
        Err(TryLockError::Error(e)) => {
            return Err(e).with_context(|| format!("cannot lock {}", path.display()));
        }
    }
    // Describe this holder for the next one to be refused.
    let since = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let host = sysinfo::System::host_name().unwrap_or_else(|| "?".into());
    let command: Vec<String> = std::env::args().collect();
    let text = format!(
        "pid {} on {host}, since unix time {since}: {}\n",
        std::process::id(),
        command.join(" ")
    );
    file.set_len(0)
        .and_then(|()| file.rewind())
        .and_then(|()| file.write_all(text.as_bytes()))
        .with_context(|| format!("cannot write {}", path.display()))?;
    held.insert(key, file);
    Ok(())
}

fn describe(holder: &str) -> String {
    if holder.is_empty() {
        "it has not said which yet".into()
    } else {
        holder.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_process_takes_its_own_lock_twice_and_another_open_file_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        acquire(dir.path()).unwrap();
        acquire(dir.path()).unwrap();
        let text = std::fs::read_to_string(dir.path().join("lock")).unwrap();
        assert!(
            text.starts_with(&format!("pid {}", std::process::id())),
            "{text}"
        );
        // Another open file description is what another process holds.
        let other = File::open(dir.path().join("lock")).unwrap();
        assert!(matches!(other.try_lock(), Err(TryLockError::WouldBlock)));
    }
}
