//! Child processes that run the same [`crate::work`] jobs as threads do: the `tb-worker` binary
//! (built once, cached), one child per call or per part, or a long-lived worker answering
//! requests over its stdin/stdout pipes. [`bin_path`] builds any binary of the toolkit by name
//! (`tb-worker`, and `tb-demo` for [`crate::demo`]'s crash and hang demonstrations).
//!
//! Where a binary NAME comes from, in order:
//! 1. an environment variable naming a ready binary: `$THREADBOOK_WORKER` for `tb-worker`, and
//!    `$THREADBOOK_BIN_<NAME>` for any binary (upper case, `-` as `_`: `THREADBOOK_BIN_TB_DEMO`);
//! 2. `<target>/release/NAME` if it is newer than the toolkit's sources (no cargo call);
//! 3. `cargo build --release --bin NAME` of this toolkit into `<target>`,
//!
//! where `<target>` is `$THREADBOOK_TOOLKIT_TARGET`, else `$THREADBOOK_CACHE_DIR/toolkit-target`
//! (the kernel's cache), else `$XDG_CACHE_HOME/threadbook/toolkit-target`, else
//! `~/.cache/threadbook/toolkit-target`.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, ChildStdout, Command, ExitStatus, Stdio};
use std::sync::{Mutex, OnceLock};
use std::time::SystemTime;

pub use crate::work::split;

/// The toolkit's binaries, each built from `src/bin/NAME.rs`.
pub const BINS: &[&str] = &["tb-worker", "tb-demo"];

/// The toolkit's source directory (where its Cargo.toml is).
pub fn toolkit_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The source of the `tb-worker` binary, to open and read.
pub fn source_path() -> PathBuf {
    bin_source_path("tb-worker")
}

/// The source of the toolkit binary `name` (`src/bin/NAME.rs`), to open and read.
pub fn bin_source_path(name: &str) -> PathBuf {
    toolkit_dir()
        .join("src")
        .join("bin")
        .join(format!("{name}.rs"))
}

/// The cargo target directory the toolkit's binaries are built into.
pub fn target_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("THREADBOOK_TOOLKIT_TARGET") {
        return PathBuf::from(dir);
    }
    if let Some(dir) = std::env::var_os("THREADBOOK_CACHE_DIR") {
        return PathBuf::from(dir).join("toolkit-target");
    }
    let cache = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .filter(|p| p.is_absolute())
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))
        .unwrap_or_else(std::env::temp_dir);
    cache.join("threadbook").join("toolkit-target")
}

/// Path of the `tb-worker` binary, building it the first time if needed (a release build of
/// the toolkit: about a minute once, then cached across notebooks and kernel restarts).
///
/// Panics with cargo's error output if it cannot be built.
pub fn worker_path() -> PathBuf {
    bin_path("tb-worker")
}

/// Like [`worker_path`], but returns the error instead of panicking.
pub fn try_worker_path() -> Result<PathBuf, String> {
    try_bin_path("tb-worker")
}

/// Path of the toolkit binary `name` (one of [`BINS`], e.g. `"tb-demo"`), building it the
/// first time if needed; panics with cargo's error output if it cannot be built.
pub fn bin_path(name: &str) -> PathBuf {
    try_bin_path(name).unwrap_or_else(|e| panic!("{e}"))
}

/// Like [`bin_path`], but returns the error instead of panicking. The answer is kept for the
/// rest of the process (one build at a time; later calls return at once).
pub fn try_bin_path(name: &str) -> Result<PathBuf, String> {
    static PATHS: OnceLock<Mutex<HashMap<String, Result<PathBuf, String>>>> = OnceLock::new();
    let mut paths = PATHS
        .get_or_init(Default::default)
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    if let Some(found) = paths.get(name) {
        return found.clone();
    }
    let found = locate_or_build(name);
    paths.insert(name.to_string(), found.clone());
    found
}

/// The environment variable that may name a ready binary `name`: `THREADBOOK_BIN_TB_DEMO`.
pub fn bin_env_var(name: &str) -> String {
    let upper: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_uppercase()
            } else {
                '_'
            }
        })
        .collect();
    format!("THREADBOOK_BIN_{upper}")
}

fn locate_or_build(name: &str) -> Result<PathBuf, String> {
    if !BINS.contains(&name) {
        return Err(format!(
            "the toolkit has no binary {name:?}; its binaries are {}",
            BINS.join(", ")
        ));
    }
    let mut vars = vec![bin_env_var(name)];
    if name == "tb-worker" {
        vars.insert(0, "THREADBOOK_WORKER".to_string());
    }
    for var in &vars {
        if let Some(p) = std::env::var_os(var) {
            let p = PathBuf::from(p);
            return if p.is_file() {
                Ok(p)
            } else {
                Err(format!("{var}={} is not a file", p.display()))
            };
        }
    }
    let target = target_dir();
    let bin = target
        .join("release")
        .join(format!("{name}{}", std::env::consts::EXE_SUFFIX));
    let newest_source = newest_mtime(&toolkit_dir());
    if let (Some(built), Some(src)) = (mtime(&bin), newest_source) {
        if built > src {
            return Ok(bin);
        }
    }
    eprintln!(
        "building {name} into {} (once; this can take a minute)…",
        target.display()
    );
    let manifest = toolkit_dir().join("Cargo.toml");
    let output = Command::new(cargo())
        .args(["build", "--release", "--bin", name, "--manifest-path"])
        .arg(&manifest)
        .arg("--target-dir")
        .arg(&target)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("could not run cargo to build {name}: {e}"))?;
    if !output.status.success() {
        let err = String::from_utf8_lossy(&output.stderr);
        let tail: Vec<&str> = err.lines().rev().take(30).collect();
        let tail: Vec<&str> = tail.into_iter().rev().collect();
        return Err(format!(
            "building {name} failed ({}): cargo build --release --bin {name} --manifest-path {}\n{}",
            output.status,
            manifest.display(),
            tail.join("\n")
        ));
    }
    if bin.is_file() {
        // Cargo may find nothing to rebuild when only another binary's source changed; mark
        // the binary as checked so the next session does not call cargo again.
        if let Ok(f) = std::fs::File::options().append(true).open(&bin) {
            let _ = f.set_modified(SystemTime::now());
        }
        Ok(bin)
    } else {
        Err(format!(
            "cargo succeeded but {} does not exist",
            bin.display()
        ))
    }
}

/// The cargo to use: `$CARGO` (set when running under cargo), `cargo` on the PATH, or
/// `~/.cargo/bin/cargo`.
fn cargo() -> PathBuf {
    if let Some(c) = std::env::var_os("CARGO") {
        return PathBuf::from(c);
    }
    let on_path = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).any(|d| d.join("cargo").is_file()))
        .unwrap_or(false);
    if !on_path {
        if let Some(home) = std::env::var_os("HOME") {
            let c = PathBuf::from(home).join(".cargo").join("bin").join("cargo");
            if c.is_file() {
                return c;
            }
        }
    }
    PathBuf::from("cargo")
}

fn mtime(p: &Path) -> Option<SystemTime> {
    std::fs::metadata(p).and_then(|m| m.modified()).ok()
}

/// Newest modification time of the files the binaries are built from: Cargo.toml, build.rs and
/// every file under src/.
fn newest_mtime(toolkit: &Path) -> Option<SystemTime> {
    fn walk(dir: &Path, newest: &mut Option<SystemTime>) {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        for e in entries.flatten() {
            let p = e.path();
            if p.is_dir() {
                walk(&p, newest);
            } else if let Some(t) = mtime(&p) {
                *newest = (*newest).max(Some(t));
            }
        }
    }
    let mut newest = None;
    for f in ["Cargo.toml", "build.rs"] {
        newest = newest.max(mtime(&toolkit.join(f)));
    }
    walk(&toolkit.join("src"), &mut newest);
    newest
}

/// A `Command` for `tb-worker JOB A B`, to customise (e.g. wrap in `taskset`) before spawning.
pub fn command(job: &str, a: u64, b: u64) -> Command {
    let mut c = Command::new(worker_path());
    c.arg(job).arg(a.to_string()).arg(b.to_string());
    c
}

fn parse_answer(job: &str, out: &std::process::Output) -> Result<u64, String> {
    let stdout = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() {
        return Err(format!(
            "tb-worker {job} failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    stdout
        .trim()
        .parse()
        .map_err(|_| format!("tb-worker {job} printed {:?}, not a number", stdout.trim()))
}

/// Runs `tb-worker JOB A B` in a child process, waits for it and returns its answer.
pub fn try_run(job: &str, a: u64, b: u64) -> Result<u64, String> {
    let out = command(job, a, b)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("could not start tb-worker: {e}"))?;
    parse_answer(job, &out)
}

/// Runs `tb-worker JOB A B` in a child process, waits for it and returns its answer
/// (panics with the worker's error message if it fails).
pub fn run(job: &str, a: u64, b: u64) -> u64 {
    try_run(job, a, b).unwrap_or_else(|e| panic!("{e}"))
}

/// Starts one child per part at once (`tb-worker JOB lo hi`), then reads every answer from its
/// pipe and waits for all of them; answers in part order. Their CPU time then shows in
/// [`crate::children_cpu_time`].
pub fn try_run_parallel(job: &str, parts: &[(u64, u64)]) -> Result<Vec<u64>, String> {
    let mut children: Vec<Child> = Vec::with_capacity(parts.len());
    for &(a, b) in parts {
        let spawned = command(job, a, b)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn();
        match spawned {
            Ok(c) => children.push(c),
            Err(e) => {
                for mut c in children {
                    let _ = c.kill();
                    let _ = c.wait();
                }
                return Err(format!("could not start tb-worker: {e}"));
            }
        }
    }
    // Every child is waited for, even after an error, so none is left behind.
    let outputs: Vec<_> = children.into_iter().map(|c| c.wait_with_output()).collect();
    outputs
        .into_iter()
        .map(|o| {
            let o = o.map_err(|e| format!("waiting for tb-worker failed: {e}"))?;
            parse_answer(job, &o)
        })
        .collect()
}

/// [`try_run_parallel`], panicking with the worker's error message on failure.
pub fn run_parallel(job: &str, parts: &[(u64, u64)]) -> Vec<u64> {
    try_run_parallel(job, parts).unwrap_or_else(|e| panic!("{e}"))
}

/// A long-lived `tb-worker --stdin` child: each [`Worker::call`] sends one line `JOB A B` down
/// its stdin pipe and reads one answer line back (a round trip between processes).
#[derive(Debug)]
pub struct Worker {
    child: Child,
    stdin: Option<ChildStdin>,
    stdout: BufReader<ChildStdout>,
}

impl Worker {
    /// Starts a worker (panics with a clear message if it cannot).
    pub fn spawn() -> Worker {
        Worker::try_spawn().unwrap_or_else(|e| panic!("{e}"))
    }

    /// Starts a worker.
    pub fn try_spawn() -> Result<Worker, String> {
        let mut child = Command::new(try_worker_path()?)
            .arg("--stdin")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .map_err(|e| format!("could not start tb-worker --stdin: {e}"))?;
        let stdin = child.stdin.take();
        let stdout = child.stdout.take().ok_or("tb-worker has no stdout pipe")?;
        Ok(Worker {
            child,
            stdin,
            stdout: BufReader::new(stdout),
        })
    }

    /// The child's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Sends `JOB A B` and waits for the answer.
    pub fn try_call(&mut self, job: &str, a: u64, b: u64) -> Result<u64, String> {
        let stdin = self.stdin.as_mut().ok_or("the worker's stdin is closed")?;
        stdin
            .write_all(format!("{job} {a} {b}\n").as_bytes())
            .and_then(|_| stdin.flush())
            .map_err(|e| format!("writing to tb-worker failed: {e}"))?;
        let mut line = String::new();
        let n = self
            .stdout
            .read_line(&mut line)
            .map_err(|e| format!("reading from tb-worker failed: {e}"))?;
        if n == 0 {
            return Err("tb-worker closed its stdout (did it crash?)".into());
        }
        let line = line.trim();
        line.parse()
            .map_err(|_| format!("tb-worker answered {line:?}"))
    }

    /// Sends `JOB A B` and waits for the answer (panics with the worker's error).
    pub fn call(&mut self, job: &str, a: u64, b: u64) -> u64 {
        self.try_call(job, a, b).unwrap_or_else(|e| panic!("{e}"))
    }

    /// Closes the worker's stdin (it then exits) and waits for it.
    pub fn finish(mut self) -> std::io::Result<ExitStatus> {
        self.stdin.take();
        self.child.wait()
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        self.stdin.take();
        let _ = self.child.wait();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_point_into_the_toolkit() {
        assert!(source_path().is_file(), "{}", source_path().display());
        assert!(toolkit_dir().join("Cargo.toml").is_file());
        assert!(target_dir().is_absolute());
    }

    #[test]
    fn every_bin_has_a_source_and_unknown_names_are_refused() {
        for name in BINS {
            assert!(bin_source_path(name).is_file(), "{name}");
        }
        assert_eq!(source_path(), bin_source_path("tb-worker"));
        assert_eq!(bin_env_var("tb-demo"), "THREADBOOK_BIN_TB_DEMO");
        let err = try_bin_path("no-such-bin").unwrap_err();
        assert!(err.contains("tb-worker, tb-demo"), "{err}");
    }

    #[test]
    fn newest_source_is_at_least_the_worker_source() {
        let newest = newest_mtime(&toolkit_dir()).expect("sources have mtimes");
        assert!(newest >= mtime(&source_path()).unwrap());
        assert!(newest >= mtime(&toolkit_dir().join("Cargo.toml")).unwrap());
    }
}
