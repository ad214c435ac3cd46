//! Course scaffolding: the helper programs the notebooks start as child processes, built on
//! first use **with the profile the toolkit itself was compiled with** — the kernel compiles
//! cells and their dependencies with one profile (opt-level 2, debug assertions on), so a child
//! process runs code as fast as a thread of the cell does.
//!
//! - `tb-worker` (`src/bin/tb-worker.rs`): one workload per run, or a request loop on stdin/TCP;
//! - `tb-demo` (`src/bin/tb-demo.rs`): crashes, hangs and other scenarios, see [`super::demo`];
//! - `tb-cluster` (`cluster/src/main.rs`): a word count on the timely dataflow engine.
//!
//! Where NAME comes from: `$THREADBOOK_BIN_<NAME>` (upper case, `-` as `_`) if set; else
//! `<target>/<profile>/release/NAME` if newer than its sources; else `cargo build --release`
//! into it, where `<target>` is `$THREADBOOK_TOOLKIT_TARGET`, `$THREADBOOK_CACHE_DIR/toolkit-target`
//! or `~/.cache/threadbook/toolkit-target`.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Mutex, OnceLock};
use std::time::SystemTime;

/// `tb-worker`, built on first use.
pub fn worker_path() -> PathBuf {
    bin_path("tb-worker")
}

/// `tb-demo`, built on first use.
pub fn demo_path() -> PathBuf {
    bin_path("tb-demo")
}

/// `tb-cluster` (timely dataflow), built on first use (a minute or two the first time).
pub fn cluster_path() -> PathBuf {
    bin_path("tb-cluster")
}

/// Runs `tb-worker JOB lo hi` for every part at once, waits for all, returns their answers
/// (for older cells and the kernel's tests: the course writes this code in its cells).
pub fn run_parallel(job: &str, parts: &[(u64, u64)]) -> Vec<u64> {
    let children: Vec<_> = parts
        .iter()
        .map(|(a, b)| {
            Command::new(worker_path())
                .args([job, &a.to_string(), &b.to_string()])
                .stdout(Stdio::piped())
                .spawn()
                .expect("start tb-worker")
        })
        .collect();
    children
        .into_iter()
        .map(|c| {
            let out = c.wait_with_output().expect("wait for tb-worker");
            let text = String::from_utf8_lossy(&out.stdout);
            text.trim().parse().unwrap_or_else(|_| panic!("tb-worker {job} printed {text:?}"))
        })
        .collect()
}

/// The source file of a helper program, to read next to what it does.
pub fn source_path(name: &str) -> PathBuf {
    let toolkit = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    match name {
        "tb-cluster" => toolkit.join("cluster/src/main.rs"),
        _ => toolkit.join("src/bin").join(format!("{name}.rs")),
    }
}

/// Path of helper program `name`, building it if needed (kept for the rest of the process);
/// panics with cargo's error output if it cannot be built.
fn bin_path(name: &str) -> PathBuf {
    static PATHS: OnceLock<Mutex<HashMap<String, Result<PathBuf, String>>>> = OnceLock::new();
    let mut paths = PATHS.get_or_init(Default::default).lock().unwrap_or_else(|p| p.into_inner());
    paths.entry(name.to_string()).or_insert_with(|| locate_or_build(name)).clone().unwrap_or_else(|e| panic!("{e}"))
}

/// (package directory, whether the binary belongs to the toolkit package itself).
fn package_of(name: &str) -> Result<PathBuf, String> {
    let toolkit = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    match name {
        "tb-worker" | "tb-demo" => Ok(toolkit),
        "tb-cluster" => Ok(toolkit.join("cluster")),
        _ => Err(format!("the course has no program {name:?}: tb-worker, tb-demo, tb-cluster")),
    }
}

fn target_dir() -> PathBuf {
    let base = if let Some(d) = std::env::var_os("THREADBOOK_TOOLKIT_TARGET") {
        PathBuf::from(d)
    } else if let Some(d) = std::env::var_os("THREADBOOK_CACHE_DIR") {
        PathBuf::from(d).join("toolkit-target")
    } else {
        let home = std::env::var_os("HOME").map(PathBuf::from).unwrap_or_else(std::env::temp_dir);
        home.join(".cache/threadbook/toolkit-target")
    };
    let da = if cfg!(debug_assertions) { "-da" } else { "" };
    base.join(format!("opt{}{da}", env!("TB_OPT_LEVEL")))
}

fn locate_or_build(name: &str) -> Result<PathBuf, String> {
    let upper: String = name.chars().map(|c| if c.is_ascii_alphanumeric() { c.to_ascii_uppercase() } else { '_' }).collect();
    let var = format!("THREADBOOK_BIN_{upper}");
    if let Some(p) = std::env::var_os(&var) {
        let p = PathBuf::from(p);
        return if p.is_file() { Ok(p) } else { Err(format!("{var}={} is not a file", p.display())) };
    }
    let package = package_of(name)?;
    let target = target_dir();
    let bin = target.join("release").join(name);
    let mut sources = vec![package.join("Cargo.toml"), package.join("src")];
    if name != "tb-cluster" {
        sources.push(package.join("build.rs"));
    }
    if let (Some(built), Some(src)) = (mtime(&bin), sources.iter().filter_map(|p| newest(p)).max()) {
        if built > src {
            return Ok(bin);
        }
    }
    eprintln!("building {name} into {} (once; this can take a minute)…", target.display());
    let da = if cfg!(debug_assertions) { "true" } else { "false" };
    let out = Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()))
        .args(["build", "--release", "--bin", name, "--manifest-path"])
        .arg(package.join("Cargo.toml"))
        .arg("--target-dir")
        .arg(&target)
        .env("CARGO_PROFILE_RELEASE_OPT_LEVEL", env!("TB_OPT_LEVEL"))
        .env("CARGO_PROFILE_RELEASE_DEBUG_ASSERTIONS", da)
        .env("CARGO_PROFILE_RELEASE_OVERFLOW_CHECKS", da)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("could not run cargo to build {name}: {e}"))?;
    if !out.status.success() {
        let err = String::from_utf8_lossy(&out.stderr);
        let tail: Vec<&str> = err.lines().rev().take(30).collect::<Vec<_>>().into_iter().rev().collect();
        return Err(format!("building {name} failed ({}):\n{}", out.status, tail.join("\n")));
    }
    // Cargo may find nothing to do when only another program's source changed: mark it checked.
    if let Ok(f) = std::fs::File::options().append(true).open(&bin) {
        let _ = f.set_modified(SystemTime::now());
    }
    if bin.is_file() { Ok(bin) } else { Err(format!("cargo succeeded but {} does not exist", bin.display())) }
}

fn mtime(p: &Path) -> Option<SystemTime> {
    std::fs::metadata(p).and_then(|m| m.modified()).ok()
}

/// Newest modification time of a file, or of the files under a directory.
fn newest(p: &Path) -> Option<SystemTime> {
    if !p.is_dir() {
        return mtime(p);
    }
    std::fs::read_dir(p).ok()?.flatten().filter_map(|e| newest(&e.path())).max()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sources_exist_and_unknown_names_are_refused() {
        for name in ["tb-worker", "tb-demo", "tb-cluster"] {
            assert!(source_path(name).is_file(), "{name}");
            assert!(package_of(name).unwrap().join("Cargo.toml").is_file());
        }
        assert!(package_of("nope").unwrap_err().contains("tb-worker, tb-demo, tb-cluster"));
        assert!(target_dir().is_absolute());
        assert!(newest(source_path("tb-worker").parent().unwrap()).is_some());
    }
}
