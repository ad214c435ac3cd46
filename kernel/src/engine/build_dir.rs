//! The engine's build directory. Each kernel claims a slot under
//! `~/.cache/threadbook/engine/` with an exclusive lock and keeps it for its
//! lifetime, so compiled dependencies survive from one session to the next
//! while two running kernels never share a directory. The lock goes with the
//! process, even when it is killed.

use anyhow::{Context, Result};
use std::os::fd::AsRawFd;
use std::path::PathBuf;

/// Slots tried before giving up (one per kernel running at once).
const MAX_SLOTS: usize = 64;

/// The root of threadbook's caches (THREADBOOK_CACHE_DIR, else ~/.cache/threadbook).
pub fn cache_root() -> Option<PathBuf> {
    std::env::var_os("THREADBOOK_CACHE_DIR")
        .map(PathBuf::from)
        .or_else(|| dirs::cache_dir().map(|d| d.join("threadbook")))
}

/// A claimed slot; dropping it releases the lock.
pub struct Slot {
    pub dir: PathBuf,
    _lock: std::fs::File,
}

/// Claims a free slot and points evcxr at it (EVCXR_TMPDIR). Respects an
/// EVCXR_TMPDIR the user set; returns None then. Call while single-threaded.
pub fn claim() -> Result<Option<Slot>> {
    if std::env::var_os("EVCXR_TMPDIR").is_some() {
        return Ok(None);
    }
    let Some(root) = cache_root() else {
        return Ok(None);
    };
    let root = root.join("engine");
    std::fs::create_dir_all(&root).with_context(|| format!("cannot create {}", root.display()))?;
    for i in 0..MAX_SLOTS {
        let dir = root.join(format!("slot-{i}"));
        std::fs::create_dir_all(&dir)?;
        let lock = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(dir.join(".lock"))?;
        // SAFETY: flock on an fd we own.
        if unsafe { libc::flock(lock.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } == 0 {
            std::env::set_var("EVCXR_TMPDIR", &dir);
            log::info!("engine build directory: {}", dir.display());
            return Ok(Some(Slot { dir, _lock: lock }));
        }
    }
    log::warn!("all {MAX_SLOTS} build slots are busy; using a temporary directory");
    Ok(None)
}
