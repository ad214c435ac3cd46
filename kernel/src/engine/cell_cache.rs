//! A build cache for cells: compiling the same cell against the same
//! dependencies again (Restart & Run All, a notebook exported twice) replays
//! the compiler's earlier result instead of running it.
//!
//! The kernel makes itself cargo's `RUSTC_WRAPPER` for the engine's builds.
//! Invoked as the wrapper, this binary passes every crate through to rustc
//! except the engine's cell crate (`ctx`). For that one it hashes what the
//! compiler's result depends on: the compiler binary, every argument, the
//! cell's source, and the identity (size, modification time) of each
//! `--extern` library. A hit copies the recorded outputs (the cell's shared
//! library, its dep-info) into place and replays rustc's stdout, stderr
//! (its JSON diagnostics, which cargo reads) and exit status; failed
//! compiles are recorded too, since evcxr's first attempt at a cell ending in
//! a plain value fails by design. Source files besides the cell's own and the
//! environment variables the dep-info names are checked on every hit.
//!
//! Entries live in `<cache root>/cells/<sha256>/`, written to a temporary
//! directory and renamed into place, so several kernels can share the cache.
//! Least recently used entries go when the cache passes
//! `THREADBOOK_CELL_CACHE_MB` (default 256); `THREADBOOK_CELL_CACHE=0` turns
//! it off.

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::ffi::OsString;
use std::io::Write;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::SystemTime;

/// Set in the kernel's environment (inherited by cargo) to mark wrapper calls.
const WRAPPER_ENV: &str = "THREADBOOK_RUSTC_WRAPPER";
/// evcxr's name for the crate it builds each cell into.
const CELL_CRATE: &str = "ctx";
const DEFAULT_LIMIT_MB: u64 = 256;

/// Makes this executable cargo's rustc wrapper for the engine's builds.
/// Call while the process has one thread. Leaves a wrapper the user set alone
/// (the cache is then off).
pub fn enable() {
    if std::env::var("THREADBOOK_CELL_CACHE").is_ok_and(|v| v == "0") {
        log::info!("cell build cache off (THREADBOOK_CELL_CACHE=0)");
        return;
    }
    if std::env::var_os("RUSTC_WRAPPER").is_some_and(|v| !v.is_empty()) {
        log::info!("RUSTC_WRAPPER is set: the cell build cache is off");
        return;
    }
    let Ok(exe) = std::env::current_exe() else { return };
    std::env::set_var("RUSTC_WRAPPER", exe);
    std::env::set_var(WRAPPER_ENV, "1");
}

/// Removes the wrapper from this process's environment, so that programs the
/// user's cells start (cargo included) don't see it. Single-threaded callers only.
pub fn disable_for_children() {
    if std::env::var_os(WRAPPER_ENV).is_some() {
        std::env::remove_var("RUSTC_WRAPPER");
        std::env::remove_var(WRAPPER_ENV);
    }
}

/// True when this process runs as cargo's rustc wrapper for the engine.
pub fn is_wrapper() -> bool {
    std::env::var_os(WRAPPER_ENV).is_some()
}

/// When this process is cargo's rustc wrapper, does the compile and returns
/// the exit status; otherwise returns None at once.
pub fn wrapper_main() -> Option<i32> {
    std::env::var_os(WRAPPER_ENV)?;
    let mut args = std::env::args_os().skip(1);
    let rustc = PathBuf::from(args.next()?);
    let args: Vec<OsString> = args.collect();
    let is_cell = args.windows(2).any(|w| w[0] == "--crate-name" && w[1] == CELL_CRATE);
    let dir = cache_dir();
    match (is_cell, dir) {
        (true, Some(dir)) => Some(compile_cell(&dir, &rustc, &args).unwrap_or_else(|e| {
            eprintln!("threadbook cell cache: {e:#}");
            101
        })),
        _ => Some(exec_rustc(&rustc, &args)),
    }
}

/// Becomes rustc (no cache); returns only if that fails, with rustc's usual
/// failure status.
fn exec_rustc(rustc: &Path, args: &[OsString]) -> i32 {
    let err = Command::new(rustc).args(args).exec();
    eprintln!("threadbook: cannot run {}: {err}", rustc.display());
    101
}

fn cache_dir() -> Option<PathBuf> {
    super::build_dir::cache_root().map(|root| root.join("cells"))
}

/// What one compile produced, as recorded in `entry.json`.
#[derive(Serialize, Deserialize)]
struct Entry {
    status: i32,
    stdout: String,
    stderr: String,
    /// Output files: where rustc wrote them, and their name in the entry.
    outputs: Vec<(PathBuf, String)>,
    /// Source files named by the dep-info, with their SHA-256.
    sources: Vec<(PathBuf, String)>,
    /// Environment variables named by the dep-info, with their values then.
    env: Vec<(String, Option<String>)>,
}

fn compile_cell(dir: &Path, rustc: &Path, args: &[OsString]) -> Result<i32> {
    // Anything the key can't account for (e.g. a compiler found on PATH, not
    // named by its path) is compiled as if there were no cache.
    let Ok(key) = cache_key(rustc, args) else {
        return Ok(exec_rustc(rustc, args));
    };
    let entry_dir = dir.join(&key);
    match replay(&entry_dir) {
        Ok(Replay::Done(status)) => return Ok(status),
        // Recompiled below and recorded again under the same key.
        Ok(Replay::Stale) => {
            let _ = std::fs::remove_dir_all(&entry_dir);
        }
        Ok(Replay::Missing) | Err(_) => {}
    }
    let out = Command::new(rustc).args(args).output().context("cannot run rustc")?;
    std::io::stdout().write_all(&out.stdout)?;
    std::io::stderr().write_all(&out.stderr)?;
    let status = out.status.code().unwrap_or(101);
    // Killed (an interrupt stops the compile): nothing to record.
    if out.status.code().is_some() {
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        if let Err(e) = record(dir, &key, status, stdout, stderr) {
            log::debug!("cell cache: not recorded: {e:#}");
        }
    }
    Ok(status)
}

/// SHA-256 over everything rustc's result depends on that can be known
/// before it runs.
fn cache_key(rustc: &Path, args: &[OsString]) -> Result<String> {
    let mut h = Sha256::new();
    let mut field = |bytes: &[u8]| {
        h.update((bytes.len() as u64).to_le_bytes());
        h.update(bytes);
    };
    field(b"threadbook cell cache 1");
    if !rustc.is_absolute() {
        bail!("the compiler is not named by an absolute path");
    }
    field(rustc.as_os_str().as_encoded_bytes());
    field(identity(rustc)?.as_bytes());
    field(std::env::current_dir()?.as_os_str().as_encoded_bytes());
    for arg in args {
        field(arg.as_encoded_bytes());
    }
    let mut source = None;
    for (i, arg) in args.iter().enumerate() {
        let s = arg.to_string_lossy();
        if let Some(spec) = s.strip_prefix("--extern=").or(if s == "--extern" {
            args.get(i + 1).and_then(|a| a.to_str())
        } else {
            None
        }) {
            if let Some((_, path)) = spec.split_once('=') {
                field(identity(Path::new(path))?.as_bytes());
            }
        } else if s.ends_with(".rs") && !s.starts_with('-') {
            source = Some(PathBuf::from(arg));
        }
    }
    let Some(source) = source else { bail!("no source file among rustc's arguments") };
    field(&std::fs::read(&source).with_context(|| format!("cannot read {}", source.display()))?);
    Ok(format!("{:x}", h.finalize()))
}

/// A file's identity for the key: size and modification time (a rebuilt
/// library gets a new one).
fn identity(path: &Path) -> Result<String> {
    let meta = std::fs::metadata(path).with_context(|| format!("cannot stat {}", path.display()))?;
    let mtime = meta.modified()?.duration_since(SystemTime::UNIX_EPOCH).unwrap_or_default();
    Ok(format!("{}:{}", meta.len(), mtime.as_nanos()))
}

fn sha256_file(path: &Path) -> Option<String> {
    std::fs::read(path).ok().map(|b| format!("{:x}", Sha256::digest(&b)))
}

enum Replay {
    /// Replayed; rustc's exit status.
    Done(i32),
    /// No usable entry.
    Missing,
    /// An entry whose other inputs (files, environment) have changed since.
    Stale,
}

/// Replays the entry in `entry_dir` if there is a valid one.
fn replay(entry_dir: &Path) -> Result<Replay> {
    let Ok(json) = std::fs::read_to_string(entry_dir.join("entry.json")) else {
        return Ok(Replay::Missing);
    };
    let Ok(entry) = serde_json::from_str::<Entry>(&json) else {
        return Ok(Replay::Stale);
    };
    let sources_same = entry.sources.iter().all(|(p, sha)| sha256_file(p).as_deref() == Some(sha));
    let env_same = entry.env.iter().all(|(k, v)| std::env::var(k).ok() == *v);
    if !sources_same || !env_same {
        return Ok(Replay::Stale);
    }
    for (dest, name) in &entry.outputs {
        let tmp = dest.with_extension("threadbook-tmp");
        if std::fs::copy(entry_dir.join(name), &tmp).is_err() || std::fs::rename(&tmp, dest).is_err() {
            let _ = std::fs::remove_file(&tmp);
            return Ok(Replay::Missing);
        }
    }
    // Recently used: pruning goes by this time.
    if let Ok(f) = std::fs::File::options().append(true).open(entry_dir.join("entry.json")) {
        let _ = f.set_modified(SystemTime::now());
    }
    std::io::stdout().write_all(entry.stdout.as_bytes())?;
    std::io::stderr().write_all(entry.stderr.as_bytes())?;
    Ok(Replay::Done(entry.status))
}

/// Stores a finished compile under `key`.
fn record(dir: &Path, key: &str, status: i32, stdout: String, stderr: String) -> Result<()> {
    // rustc announces each file it wrote (cargo passes --json=artifacts).
    let written: Vec<PathBuf> = stderr
        .lines()
        .filter(|l| l.starts_with('{'))
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|v| v["$message_type"] == "artifact")
        .filter_map(|v| v["artifact"].as_str().map(PathBuf::from))
        .collect();
    let mut sources = Vec::new();
    let mut env = Vec::new();
    for dep_info in written.iter().filter(|p| p.extension().is_some_and(|e| e == "d")) {
        let (files, vars) = parse_dep_info(&std::fs::read_to_string(dep_info)?);
        for f in files {
            let sha = sha256_file(&f).with_context(|| format!("cannot read {}", f.display()))?;
            sources.push((f, sha));
        }
        env.extend(vars.into_iter().map(|k| {
            let v = std::env::var(&k).ok();
            (k, v)
        }));
    }
    std::fs::create_dir_all(dir)?;
    let tmp = tempdir_in(dir)?;
    let mut outputs = Vec::new();
    for (i, path) in written.iter().enumerate() {
        let name = format!("{i}-{}", path.file_name().and_then(|n| n.to_str()).unwrap_or("out"));
        std::fs::copy(path, tmp.join(&name))?;
        outputs.push((path.clone(), name));
    }
    let entry = Entry { status, stdout, stderr, outputs, sources, env };
    std::fs::write(tmp.join("entry.json"), serde_json::to_vec(&entry)?)?;
    if std::fs::rename(&tmp, dir.join(key)).is_err() {
        // Another kernel recorded the same compile first.
        let _ = std::fs::remove_dir_all(&tmp);
    }
    prune(dir, limit_bytes());
    Ok(())
}

fn tempdir_in(dir: &Path) -> Result<PathBuf> {
    for n in 0..100u32 {
        let p = dir.join(format!(".tmp-{}-{n}", std::process::id()));
        if std::fs::create_dir(&p).is_ok() {
            return Ok(p);
        }
    }
    bail!("cannot create a temporary directory in {}", dir.display())
}

/// Files and `env!` variables a dep-info file (Makefile syntax) names.
fn parse_dep_info(text: &str) -> (Vec<PathBuf>, Vec<String>) {
    let mut files = Vec::new();
    let mut vars = Vec::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# env-dep:") {
            vars.push(rest.split_once('=').map_or(rest, |(k, _)| k).to_owned());
        } else if let Some((target, deps)) = line.split_once(": ") {
            // The outputs' own lines repeat the sources; the sources' lines have no deps.
            if !target.ends_with(".d") {
                continue;
            }
            files.extend(make_words(deps).into_iter().map(PathBuf::from));
        }
    }
    files.sort();
    files.dedup();
    (files, vars)
}

/// Whitespace-separated words, where `\ ` is a space inside a word.
fn make_words(text: &str) -> Vec<String> {
    let mut words = Vec::new();
    let mut word = String::new();
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\\' && chars.peek() == Some(&' ') {
            word.push(' ');
            chars.next();
        } else if c.is_whitespace() {
            if !word.is_empty() {
                words.push(std::mem::take(&mut word));
            }
        } else {
            word.push(c);
        }
    }
    if !word.is_empty() {
        words.push(word);
    }
    words
}

fn limit_bytes() -> u64 {
    std::env::var("THREADBOOK_CELL_CACHE_MB")
        .ok()
        .and_then(|v| v.parse::<u64>().ok())
        .unwrap_or(DEFAULT_LIMIT_MB)
        * 1024
        * 1024
}

/// Removes the least recently used entries until the cache fits in `limit`.
fn prune(dir: &Path, limit: u64) {
    let Ok(read) = std::fs::read_dir(dir) else { return };
    let mut entries: Vec<(SystemTime, u64, PathBuf)> = read
        .flatten()
        .filter(|e| !e.file_name().to_string_lossy().starts_with('.'))
        .filter_map(|e| {
            let used = std::fs::metadata(e.path().join("entry.json")).ok()?.modified().ok()?;
            let size = std::fs::read_dir(e.path())
                .ok()?
                .flatten()
                .filter_map(|f| f.metadata().ok())
                .map(|m| m.len())
                .sum();
            Some((used, size, e.path()))
        })
        .collect();
    let mut total: u64 = entries.iter().map(|e| e.1).sum();
    entries.sort();
    for (_, size, path) in entries {
        if total <= limit {
            break;
        }
        if std::fs::remove_dir_all(&path).is_ok() {
            total -= size;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dep_info_names_sources_and_env() {
        let text = "/t/deps/ctx.d: src/lib.rs src/data\\ file.txt\n\n\
                    /t/deps/libctx.so: src/lib.rs src/data\\ file.txt\n\n\
                    src/lib.rs:\nsrc/data\\ file.txt:\n\n\
                    # env-dep:GREETING=hello\n# env-dep:UNSET\n";
        let (files, vars) = parse_dep_info(text);
        assert_eq!(files, vec![PathBuf::from("src/data file.txt"), PathBuf::from("src/lib.rs")]);
        assert_eq!(vars, vec!["GREETING".to_owned(), "UNSET".to_owned()]);
    }

    #[test]
    fn prune_drops_least_recently_used_first() {
        let dir = tempfile::tempdir().unwrap();
        let now = SystemTime::now();
        for (i, name) in ["old", "mid", "new"].iter().enumerate() {
            let e = dir.path().join(name);
            std::fs::create_dir(&e).unwrap();
            std::fs::write(e.join("out"), vec![0u8; 1000]).unwrap();
            let f = std::fs::File::create(e.join("entry.json")).unwrap();
            f.set_modified(now - std::time::Duration::from_secs(100 - 10 * i as u64)).unwrap();
        }
        prune(dir.path(), 2000);
        let left: Vec<bool> = ["old", "mid", "new"].iter().map(|n| dir.path().join(n).exists()).collect();
        assert_eq!(left, vec![false, true, true]);
    }

    #[test]
    fn key_follows_source_arguments_and_libraries() {
        let dir = tempfile::tempdir().unwrap();
        let src = dir.path().join("lib.rs");
        let lib = dir.path().join("libdep.rlib");
        std::fs::write(&src, "fn a() {}").unwrap();
        std::fs::write(&lib, "v1").unwrap();
        let rustc = std::env::current_exe().unwrap();
        let args = |opt: &str| -> Vec<OsString> {
            vec![
                "--crate-name".into(),
                "ctx".into(),
                src.clone().into(),
                "-C".into(),
                opt.into(),
                "--extern".into(),
                format!("dep={}", lib.display()).into(),
            ]
        };
        let k1 = cache_key(&rustc, &args("opt-level=2")).unwrap();
        assert_eq!(k1, cache_key(&rustc, &args("opt-level=2")).unwrap());
        assert_ne!(k1, cache_key(&rustc, &args("opt-level=1")).unwrap());
        std::fs::write(&src, "fn b() {}").unwrap();
        let k2 = cache_key(&rustc, &args("opt-level=2")).unwrap();
        assert_ne!(k1, k2);
        std::fs::write(&lib, "v2, rebuilt").unwrap();
        assert_ne!(k2, cache_key(&rustc, &args("opt-level=2")).unwrap());
    }
}
