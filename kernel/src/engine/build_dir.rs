//! The engine's build directory. Each kernel claims a slot under
//! `~/.cache/threadbook/engine/` with an exclusive lock and keeps it for its
//! lifetime, so compiled dependencies survive from one session to the next
//! while two running kernels never share a directory. The lock goes with the
//! process, even when it is killed.

use anyhow::{bail, Context, Result};
use std::fs::DirBuilder;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

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
    // The engine loads its dependencies and every cell from here: only this
    // user may write in it.
    if let Err(e) = private_dir(&root) {
        log::warn!("build folders: {e:#}; using a temporary directory");
        return Ok(None);
    }
    for i in 0..MAX_SLOTS {
        let dir = root.join(format!("slot-{i}"));
        private_dir(&dir)?;
        let lock = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(dir.join(".lock"))?;
        if rustix::fs::flock(&lock, rustix::fs::FlockOperation::NonBlockingLockExclusive).is_ok() {
            std::env::set_var("EVCXR_TMPDIR", &dir);
            log::info!("engine build directory: {}", dir.display());
            return Ok(Some(Slot { dir, _lock: lock }));
        }
    }
    log::warn!("all {MAX_SLOTS} build slots are busy; using a temporary directory");
    Ok(None)
}

/// Creates a cache folder (0700) if needed and checks that it is safe to
/// load from: a folder of this user's that no one else can write to, in a
/// parent that no one else can swap it out of.
pub fn private_dir(dir: &Path) -> Result<()> {
    DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .with_context(|| format!("cannot create {}", dir.display()))?;
    let meta = std::fs::metadata(dir).with_context(|| format!("cannot stat {}", dir.display()))?;
    if !meta.is_dir() {
        bail!("{} is not a directory", dir.display());
    }
    let me = rustix::process::geteuid().as_raw();
    if meta.uid() != me {
        bail!(
            "{} belongs to uid {}, not to this user (uid {me})",
            dir.display(),
            meta.uid()
        );
    }
    if meta.mode() & 0o077 != 0 {
        // Made by an older threadbook with the umask's permissions.
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
            .with_context(|| format!("cannot make {} private", dir.display()))?;
    }
    if let Some(parent) = dir.parent() {
        let mode = std::fs::metadata(parent).map(|m| m.mode()).unwrap_or(0);
        if mode & 0o002 != 0 && mode & 0o1000 == 0 {
            bail!(
                "{} is writable by everyone (and not sticky)",
                parent.display()
            );
        }
    }
    Ok(())
}
