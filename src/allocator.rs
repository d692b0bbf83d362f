//! The process's memory allocator: mimalloc, told to keep freed memory.
//!
//! burn's CPU backend allocates a fresh buffer for every op's output and
//! frees its inputs. With glibc's allocator, buffers above its mmap
//! threshold are mapped and unmapped every time, and the kernel zeroes each
//! new page: a training step at sequence 1024 spent a third of its time in
//! page faults (12.4M faults, `perf stat`). mimalloc reuses freed memory;
//! with purging off it never hands it back to the OS, so the resident size
//! stays at the run's peak (as PyTorch's caching allocator does on a GPU).
//! Measured in docs/performance.md ("Allocator").

use libmimalloc_sys::{mi_option_set, mi_option_t};

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// `mi_option_purge_delay` in mimalloc v3's `mi_option_e` (libmimalloc-sys
/// 0.1.49 exports no name for it): milliseconds before freed memory is
/// returned to the OS; -1 never. Its default in the bundled source
/// (`v3/src/options.c`), 1000, is checked by a test.
const PURGE_DELAY: mi_option_t = 15;

/// Turns purging off. Call once at the start of `main`.
pub fn keep_freed_memory() {
    // SAFETY: setting a documented mimalloc option; any value is valid.
    unsafe { mi_option_set(PURGE_DELAY, -1) };
}

/// The current purge delay.
#[cfg(test)]
fn purge_delay() -> i64 {
    // SAFETY: reading a mimalloc option has no preconditions.
    unsafe { libmimalloc_sys::mi_option_get(PURGE_DELAY) as i64 }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Option 15 is the purge delay: it starts at the source's default of
    /// 1000 ms, and setting it takes effect.
    #[test]
    fn option_15_is_the_purge_delay() {
        if std::env::var_os("MIMALLOC_PURGE_DELAY").is_none() {
            assert_eq!(purge_delay(), 1000);
        }
        keep_freed_memory();
        assert_eq!(purge_delay(), -1);
    }
}
