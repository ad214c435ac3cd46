// Copyright 2020 The Evcxr Authors.
//
// Licensed under the Apache License, Version 2.0 <LICENSE or
// https://www.apache.org/licenses/LICENSE-2.0> or the MIT license <LICENSE
// or https://opensource.org/licenses/MIT>, at your option. This file may not be
// copied, modified, or distributed except according to those terms.

//! Cargo.lock files kept per Cargo.toml. A session's Cargo.toml changes as `:dep`s are added,
//! starting from one without dependencies, and each change makes cargo resolve the dependencies
//! again from the registry's index (~0.3 s for a handful of crates). The lock file cargo wrote for
//! a Cargo.toml is kept after each successful build and put back whenever the same Cargo.toml is
//! written again (the next session with the same `:dep`s), so cargo finds it resolved. A kept lock
//! pins the versions resolved then, as a project's Cargo.lock does.

use std::fs;
use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};

const DIR: &str = ".evcxr-locks";
/// Lock files kept, the most recently used.
const KEEP: usize = 16;

fn kept(crate_dir: &Path, cargo_toml: &str) -> PathBuf {
    let mut hasher = std::hash::DefaultHasher::new();
    cargo_toml.hash(&mut hasher);
    crate_dir.join(DIR).join(format!("{:016x}.lock", hasher.finish()))
}

/// After `cargo_toml` was written: puts back the lock file kept for it, if any.
pub(crate) fn restore(crate_dir: &Path, cargo_toml: &str) {
    let path = kept(crate_dir, cargo_toml);
    if let Ok(lock) = fs::read(&path) {
        if fs::write(crate_dir.join("Cargo.lock"), lock).is_ok() {
            // Recently used: kept longest.
            let _ = fs::File::open(&path).and_then(|f| f.set_modified(std::time::SystemTime::now()));
        }
    }
}

/// After a successful build: keeps the lock file for the current Cargo.toml.
pub(crate) fn save(crate_dir: &Path) {
    let (Ok(cargo_toml), Ok(lock)) = (
        fs::read_to_string(crate_dir.join("Cargo.toml")),
        fs::read(crate_dir.join("Cargo.lock")),
    ) else {
        return;
    };
    let path = kept(crate_dir, &cargo_toml);
    if fs::read(&path).is_ok_and(|old| old == lock) {
        return;
    }
    if fs::create_dir_all(crate_dir.join(DIR)).is_err() || fs::write(&path, lock).is_err() {
        return;
    }
    prune(&crate_dir.join(DIR));
}

fn prune(dir: &Path) {
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    let mut files: Vec<(std::time::SystemTime, PathBuf)> = entries
        .flatten()
        .filter_map(|e| Some((e.metadata().ok()?.modified().ok()?, e.path())))
        .collect();
    files.sort();
    let excess = files.len().saturating_sub(KEEP);
    for (_, path) in files.into_iter().take(excess) {
        let _ = fs::remove_file(path);
    }
}
