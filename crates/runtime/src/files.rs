//! Files a run writes: whole or not at all, and what a killed writer left
//! behind removed by the next one.

use std::path::Path;

use anyhow::Context;

/// Writes `bytes` to a temporary file beside `path`, syncs it and renames it
/// over `path`: readers see the old file or the new one, never a mix.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    mdm::atomic::write(path, bytes).with_context(|| format!("cannot write {}", path.display()))
}

/// Removes what a killed writer left in `dir`: `*.partial-<pid>` and
/// `*.old-<pid>` folders, `*.tmp-<pid>` files. Only a run's one writer (it
/// holds the run lock) calls this, so none of them belongs to a live process.
pub fn remove_stale_temporaries(dir: &Path) -> anyhow::Result<()> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Ok(());
    };
    for e in entries.filter_map(|e| e.ok()) {
        let Ok(name) = e.file_name().into_string() else {
            continue;
        };
        let stale = [".partial-", ".old-", ".tmp-"].iter().any(|tag| {
            name.rsplit_once(tag)
                .is_some_and(|(_, pid)| !pid.is_empty() && pid.bytes().all(|b| b.is_ascii_digit()))
        });
        if !stale {
            continue;
        }
        let path = e.path();
        let removed = if path.is_dir() {
            std::fs::remove_dir_all(&path)
        } else {
            std::fs::remove_file(&path)
        };
        removed.with_context(|| format!("cannot remove the stale {}", path.display()))?;
    }
    Ok(())
}
