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
//! Entries live in `<cache root>/cells/<sha256>/` (`entry.json` and the
//! outputs in `out/`), written to a temporary directory and renamed into
//! place, so several kernels can share the cache. Least recently used entries
//! go when the cache passes `THREADBOOK_CELL_CACHE_MB` (default 256);
//! `THREADBOOK_CELL_CACHE=0` turns it off.
//!
//! An entry is checked before anything of it is used, and replayed only if
//! every check passes: `entry.json` at most [`MAX_ENTRY_JSON`] bytes; each
//! output a plain file name, written only into the `--out-dir` of the compile
//! being replayed (a `dest` recorded elsewhere refuses the entry), with the
//! size and SHA-256 recorded for it (hashed as it is copied, so what is
//! checked is what lands). An entry that fails is removed and the cell
//! compiled and recorded again, with one line in `cells/cache.log` saying
//! why. The cache folder is created 0700 (files 0600) and used only when it
//! belongs to this user and nobody else can write to it. Leftover temporary
//! folders (a compile killed by an interrupt) and entries without an
//! `entry.json` are pruned after each recording.
//!
//! Why a log file: the wrapper runs as a child of cargo, whose stderr evcxr
//! reads as the build's output, and the kernel's own log is not reachable
//! from here. Nothing but rustc's own messages goes to stderr on the success
//! path; when the wrapper itself fails it says so there, as rustc would.

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::ffi::OsString;
use std::fs::{DirBuilder, File, OpenOptions};
use std::io::{Read, Write};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt};
use std::os::unix::process::CommandExt;
use std::path::{Component, Path, PathBuf};
use std::process::Command;
use std::time::{Duration, SystemTime};

/// Set in the kernel's environment (inherited by cargo) to mark wrapper calls.
const WRAPPER_ENV: &str = "THREADBOOK_RUSTC_WRAPPER";
/// evcxr's name for the crate it builds each cell into.
const CELL_CRATE: &str = "ctx";
const DEFAULT_LIMIT_MB: u64 = 256;
/// An entry's record of one compile.
const ENTRY_FILE: &str = "entry.json";
/// The folder in an entry holding the compile's outputs, by their file names.
const OUTPUTS_DIR: &str = "out";
/// One line per entry refused or not recorded, in the cache folder.
const LOG_FILE: &str = "cache.log";
/// Past this the log starts again (the previous one kept as `cache.log.old`).
const MAX_LOG_BYTES: u64 = 1 << 20;
/// The largest `entry.json` read: rustc's messages for one cell are far smaller.
const MAX_ENTRY_JSON: u64 = 16 << 20;
/// A temporary folder this old is left over from a killed compile (recording
/// takes milliseconds).
const TEMP_MAX_AGE: Duration = Duration::from_secs(5 * 60);
const TEMP_PREFIX: &str = ".tmp-";

/// Makes this executable cargo's rustc wrapper for the engine's builds.
/// Call while the process has one thread. Leaves a wrapper the user set alone
/// (the cache is then off), and stays off when the cache folder cannot be
/// made private.
pub fn enable() {
    if std::env::var("THREADBOOK_CELL_CACHE").is_ok_and(|v| v == "0") {
        log::info!("cell build cache off (THREADBOOK_CELL_CACHE=0)");
        return;
    }
    if std::env::var_os("RUSTC_WRAPPER").is_some_and(|v| !v.is_empty()) {
        log::info!("RUSTC_WRAPPER is set: the cell build cache is off");
        return;
    }
    let Some(dir) = cache_dir() else { return };
    if let Err(e) = super::build_dir::private_dir(&dir) {
        log::warn!("cell build cache off: {e:#}");
        return;
    }
    let Ok(exe) = std::env::current_exe() else {
        return;
    };
    log::info!(
        "cell build cache in {} (entries refused: {})",
        dir.display(),
        dir.join(LOG_FILE).display()
    );
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
    let is_cell = args
        .windows(2)
        .any(|w| w[0] == "--crate-name" && w[1] == CELL_CRATE);
    // The engine runs this compile again without cargo while nothing else changes.
    evcxr::record_rustc_invocation();
    let cached = match (is_cell, cache_dir()) {
        (true, Some(dir)) => compile_cell(
            &dir,
            &rustc,
            &args,
            &mut std::io::stdout(),
            &mut std::io::stderr(),
        ),
        _ => Ok(Compiled::Uncached),
    };
    Some(match cached {
        Ok(Compiled::Status(status)) => status,
        Ok(Compiled::Uncached) => exec_rustc(&rustc, &args),
        Err(e) => {
            eprintln!("threadbook cell cache: {e:#}");
            101
        }
    })
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

/// How a cell's compile went through the cache.
enum Compiled {
    /// Replayed or compiled here; rustc's exit status.
    Status(i32),
    /// Not cacheable (or the cache folder is unsafe): run rustc as is.
    Uncached,
}

/// What one compile produced, as recorded in `entry.json`.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Entry {
    status: i32,
    stdout: String,
    stderr: String,
    outputs: Vec<Output>,
    /// Source files named by the dep-info, with their SHA-256.
    sources: Vec<(PathBuf, String)>,
    /// Environment variables named by the dep-info, with their values then.
    env: Vec<(String, Option<String>)>,
}

/// One file rustc wrote.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Output {
    /// Its file name, in the compile's `--out-dir` and in the entry's `out/`.
    name: String,
    /// Where rustc wrote it. Never used as a destination: on replay it must
    /// equal `--out-dir` + `name`.
    dest: PathBuf,
    size: u64,
    sha256: String,
    /// Had an execute bit (a shared library), so it is replayed with one.
    executable: bool,
}

fn compile_cell(
    dir: &Path,
    rustc: &Path,
    args: &[OsString],
    stdout: &mut dyn Write,
    stderr: &mut dyn Write,
) -> Result<Compiled> {
    // A folder someone else could have written to is not read at all (the
    // kernel warned at start-up). Anything the key can't account for (e.g. a
    // compiler found on PATH, not named by its path) or an output not in an
    // out-dir is compiled as if there were no cache.
    if super::build_dir::private_dir(dir).is_err() {
        return Ok(Compiled::Uncached);
    }
    let (Ok(key), Some(out_dir)) = (cache_key(rustc, args), out_dir(args)) else {
        return Ok(Compiled::Uncached);
    };
    let entry_dir = dir.join(&key);
    let why = match replay(&entry_dir, &out_dir, stdout, stderr) {
        Ok(Replay::Done(status)) => return Ok(Compiled::Status(status)),
        Ok(Replay::Missing) => None,
        Ok(Replay::Stale(why)) => Some(format!("stale ({why})")),
        Err(e) => Some(format!("rejected ({e:#})")),
    };
    if let Some(why) = why {
        // Recompiled below and recorded again under the same key.
        remove_entry(&entry_dir);
        log_line(
            dir,
            &format!("entry {key}: {why}; removed, compiling the cell again"),
        );
    }
    let out = Command::new(rustc)
        .args(args)
        .dies_with_parent()
        .output()
        .context("cannot run rustc")?;
    stdout.write_all(&out.stdout)?;
    stderr.write_all(&out.stderr)?;
    let status = out.status.code().unwrap_or(101);
    // Killed (an interrupt stops the compile): nothing to record. Nor a
    // failure of the linker, which says nothing about the cell's code (a
    // linker killed by an interrupt, a full disk).
    let link_failed = status != 0 && String::from_utf8_lossy(&out.stderr).contains("linking with `");
    if out.status.code().is_some() && !link_failed {
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        if let Err(e) = record(dir, &key, &out_dir, status, stdout, stderr) {
            log_line(dir, &format!("entry {key}: not recorded: {e:#}"));
        }
    }
    Ok(Compiled::Status(status))
}

/// A compiler this wrapper starts dies with it (an interrupt kills cargo,
/// then the wrapper, and must not leave rustc writing into the build folder).
trait DiesWithParent {
    fn dies_with_parent(&mut self) -> &mut Self;
}

impl DiesWithParent for Command {
    fn dies_with_parent(&mut self) -> &mut Self {
        // SAFETY: the closure runs between fork and exec and only makes one
        // async-signal-safe system call (prctl).
        unsafe {
            self.pre_exec(|| {
                rustix::process::set_parent_process_death_signal(Some(rustix::process::Signal::KILL))
                    .map_err(std::io::Error::from)
            })
        }
    }
}

/// The folder rustc writes this compile's outputs into (`--out-dir`), made
/// absolute; None when there is none or `-o` names an output file instead.
fn out_dir(args: &[OsString]) -> Option<PathBuf> {
    let mut dir = None;
    for (i, arg) in args.iter().enumerate() {
        let s = arg.to_string_lossy();
        if s.starts_with("-o") {
            return None;
        }
        if s == "--out-dir" {
            dir = args.get(i + 1).map(PathBuf::from);
        } else if let Some(d) = s.strip_prefix("--out-dir=") {
            dir = Some(PathBuf::from(d));
        }
    }
    let dir = dir.filter(|d| !d.as_os_str().is_empty())?;
    Some(std::env::current_dir().ok()?.join(dir))
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
    let Some(source) = source else {
        bail!("no source file among rustc's arguments")
    };
    field(&std::fs::read(&source).with_context(|| format!("cannot read {}", source.display()))?);
    Ok(format!("{:x}", h.finalize()))
}

/// A file's identity for the key: size and modification time (a rebuilt
/// library gets a new one).
fn identity(path: &Path) -> Result<String> {
    let meta =
        std::fs::metadata(path).with_context(|| format!("cannot stat {}", path.display()))?;
    let mtime = meta
        .modified()?
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default();
    Ok(format!("{}:{}", meta.len(), mtime.as_nanos()))
}

/// SHA-256 of a regular file (a device or FIFO named as a source is no
/// source: None), read in pieces.
fn sha256_file(path: &Path) -> Option<String> {
    // Non-blocking: opening a FIFO would otherwise wait for a writer.
    let mut file = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(path)
        .ok()?;
    if !file.metadata().ok()?.is_file() {
        return None;
    }
    let mut hash = Sha256::new();
    std::io::copy(&mut file, &mut hash).ok()?;
    Some(format!("{:x}", hash.finalize()))
}

/// A writer that hashes what goes through it.
struct Hashing<W> {
    inner: W,
    hash: Sha256,
}

impl<W: Write> Write for Hashing<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hash.update(&buf[..n]);
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

/// Copies at most `limit` bytes of `from` into a new file `to` (created with
/// `mode`, never through a symlink); returns the bytes copied and their SHA-256.
fn copy_hashed(from: &mut impl Read, to: &Path, mode: u32, limit: u64) -> Result<(u64, String)> {
    let file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(to)
        .with_context(|| format!("cannot create {}", to.display()))?;
    let mut out = Hashing {
        inner: file,
        hash: Sha256::new(),
    };
    let n = std::io::copy(&mut from.take(limit), &mut out)
        .with_context(|| format!("cannot write {}", to.display()))?;
    Ok((n, format!("{:x}", out.hash.finalize())))
}

/// Opens a file of an entry for reading: a regular file, not a symlink.
fn open_entry_file(path: &Path) -> Result<(File, std::fs::Metadata)> {
    let file = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(path)
        .with_context(|| format!("cannot open {}", path.display()))?;
    let meta = file.metadata()?;
    if !meta.is_file() {
        bail!("{} is not a regular file", path.display());
    }
    Ok((file, meta))
}

/// Checks that an output's recorded name is one plain path component: a
/// file name, no `/`, `..` or absolute path.
fn check_name(name: &str) -> Result<()> {
    let mut parts = Path::new(name).components();
    match (parts.next(), parts.next()) {
        (Some(Component::Normal(n)), None) if n == name && !name.contains('/') => Ok(()),
        _ => bail!("output name {name:?} is not a plain file name"),
    }
}

enum Replay {
    /// Replayed; rustc's exit status.
    Done(i32),
    /// No entry.
    Missing,
    /// An entry whose other inputs (files, environment) have changed since.
    Stale(String),
}

/// Reads `entry.json`, refusing one too large to be a real entry.
fn read_entry(entry_dir: &Path) -> Result<Entry> {
    let json = read_entry_json(entry_dir)?;
    serde_json::from_slice(&json).with_context(|| format!("{ENTRY_FILE} is not a valid entry"))
}

/// The bytes of `entry.json`, at most [`MAX_ENTRY_JSON`] of them.
fn read_entry_json(entry_dir: &Path) -> Result<Vec<u8>> {
    let (file, meta) = open_entry_file(&entry_dir.join(ENTRY_FILE))?;
    if meta.len() > MAX_ENTRY_JSON {
        bail!(
            "{ENTRY_FILE} is {} bytes, more than the {MAX_ENTRY_JSON} an entry may have",
            meta.len()
        );
    }
    let mut json = Vec::new();
    file.take(MAX_ENTRY_JSON + 1).read_to_end(&mut json)?;
    if json.len() as u64 > MAX_ENTRY_JSON {
        bail!("{ENTRY_FILE} grew past {MAX_ENTRY_JSON} bytes while read");
    }
    Ok(json)
}

/// Checks that an entry has a readable `entry.json` and every output it
/// names (a partly deleted one would never replay); reads only the names.
fn check_whole(entry_dir: &Path) -> Result<()> {
    #[derive(Deserialize)]
    struct Names {
        outputs: Vec<Named>,
    }
    #[derive(Deserialize)]
    struct Named {
        name: String,
    }
    let json = read_entry_json(entry_dir)?;
    let names: Names = serde_json::from_slice(&json)
        .with_context(|| format!("{ENTRY_FILE} is not a valid entry"))?;
    for o in &names.outputs {
        check_name(&o.name)?;
        let stored = std::fs::symlink_metadata(entry_dir.join(OUTPUTS_DIR).join(&o.name));
        if !stored.is_ok_and(|m| m.is_file()) {
            bail!("output {:?} is missing", o.name);
        }
    }
    Ok(())
}

/// Replays the entry in `entry_dir` into `out_dir` (the `--out-dir` of the
/// compile asked for) if it is there and valid. An error says why the entry
/// must go.
fn replay(
    entry_dir: &Path,
    out_dir: &Path,
    stdout: &mut dyn Write,
    stderr: &mut dyn Write,
) -> Result<Replay> {
    match std::fs::symlink_metadata(entry_dir) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Replay::Missing),
        Err(e) => return Err(e).context("cannot stat the entry"),
        Ok(m) if !m.is_dir() => bail!("the entry is not a directory"),
        Ok(_) => {}
    }
    let entry = read_entry(entry_dir)?;
    for out in &entry.outputs {
        check_name(&out.name)?;
        let dest = out_dir.join(&out.name);
        if out.dest != dest {
            bail!(
                "output {:?} records destination {}, not {} in this compile's out-dir",
                out.name,
                out.dest.display(),
                dest.display()
            );
        }
        if out.sha256.len() != 64
            || !out
                .sha256
                .bytes()
                .all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
        {
            bail!("output {:?} has no valid SHA-256", out.name);
        }
    }
    if let Some((p, _)) = entry
        .sources
        .iter()
        .find(|(p, sha)| sha256_file(p).as_deref() != Some(sha))
    {
        return Ok(Replay::Stale(format!("{} changed", p.display())));
    }
    if let Some((k, _)) = entry.env.iter().find(|(k, v)| std::env::var(k).ok() != *v) {
        return Ok(Replay::Stale(format!("${k} changed")));
    }
    // Copy every output next to its destination, checked as it is copied;
    // only when all are good do they replace rustc's files.
    let mut staged: Vec<(PathBuf, PathBuf)> = Vec::new();
    let unstage = |staged: &[(PathBuf, PathBuf)]| {
        for (tmp, _) in staged {
            let _ = std::fs::remove_file(tmp);
        }
    };
    for out in &entry.outputs {
        let tmp = out_dir.join(format!(
            ".{}.{}.threadbook-tmp",
            out.name,
            std::process::id()
        ));
        let _ = std::fs::remove_file(&tmp);
        let checked = stage_output(entry_dir, out, &tmp);
        staged.push((tmp, out_dir.join(&out.name)));
        if let Err(e) = checked {
            unstage(&staged);
            return Err(e);
        }
    }
    for (tmp, dest) in &staged {
        if let Err(e) = std::fs::rename(tmp, dest) {
            unstage(&staged);
            return Err(e)
                .with_context(|| format!("cannot move the output into {}", dest.display()));
        }
    }
    // Recently used: pruning goes by this time.
    if let Ok(f) = OpenOptions::new()
        .append(true)
        .custom_flags(libc::O_NOFOLLOW)
        .open(entry_dir.join(ENTRY_FILE))
    {
        let _ = f.set_modified(SystemTime::now());
    }
    stdout.write_all(entry.stdout.as_bytes())?;
    stderr.write_all(entry.stderr.as_bytes())?;
    Ok(Replay::Done(entry.status))
}

/// Copies one recorded output to `tmp`, checking its size and SHA-256.
fn stage_output(entry_dir: &Path, out: &Output, tmp: &Path) -> Result<()> {
    let (mut file, meta) = open_entry_file(&entry_dir.join(OUTPUTS_DIR).join(&out.name))
        .with_context(|| format!("output {:?} is missing", out.name))?;
    if meta.len() != out.size {
        bail!(
            "output {:?} is {} bytes, recorded as {}",
            out.name,
            meta.len(),
            out.size
        );
    }
    let mode = if out.executable { 0o777 } else { 0o666 };
    let (n, sha) = copy_hashed(&mut file, tmp, mode, out.size)?;
    if n != out.size || sha != out.sha256 {
        bail!(
            "output {:?} has SHA-256 {sha}, recorded as {}",
            out.name,
            out.sha256
        );
    }
    Ok(())
}

/// Removes an entry (or whatever stands in its place).
fn remove_entry(path: &Path) {
    if std::fs::remove_dir_all(path).is_err() {
        let _ = std::fs::remove_file(path);
    }
}

/// Appends one line to the cache's log (see the module doc for why a file).
fn log_line(dir: &Path, line: &str) {
    let path = dir.join(LOG_FILE);
    if std::fs::symlink_metadata(&path).is_ok_and(|m| m.len() > MAX_LOG_BYTES) {
        let _ = std::fs::rename(&path, dir.join(format!("{LOG_FILE}.old")));
    }
    let Ok(mut f) = OpenOptions::new()
        .append(true)
        .create(true)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW)
        .open(&path)
    else {
        return;
    };
    let now = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let line = format!(
        "{now} pid {}: {}\n",
        std::process::id(),
        line.replace('\n', " ")
    );
    let _ = f.write_all(line.as_bytes());
}

/// Stores a finished compile under `key`. Every output must be a file
/// directly in `out_dir`.
fn record(
    dir: &Path,
    key: &str,
    out_dir: &Path,
    status: i32,
    stdout: String,
    stderr: String,
) -> Result<()> {
    // rustc announces each file it wrote (cargo passes --json=artifacts).
    let written: Vec<PathBuf> = stderr
        .lines()
        .filter(|l| l.starts_with('{'))
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|v| v["$message_type"] == "artifact")
        .filter_map(|v| v["artifact"].as_str().map(PathBuf::from))
        .collect();
    let mut names = Vec::new();
    for path in &written {
        let name = path
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or_default();
        if path.parent() != Some(out_dir) || check_name(name).is_err() {
            bail!(
                "rustc wrote {}, not a file in its out-dir {}",
                path.display(),
                out_dir.display()
            );
        }
        names.push(name.to_owned());
    }
    let mut sources = Vec::new();
    let mut env = Vec::new();
    for dep_info in written
        .iter()
        .filter(|p| p.extension().is_some_and(|e| e == "d"))
    {
        let text = std::fs::read_to_string(dep_info)
            .with_context(|| format!("cannot read {}", dep_info.display()))?;
        let (files, vars) = parse_dep_info(&text);
        for f in files {
            let sha = sha256_file(&f).with_context(|| format!("cannot read {}", f.display()))?;
            sources.push((f, sha));
        }
        env.extend(vars.into_iter().map(|k| {
            let v = std::env::var(&k).ok();
            (k, v)
        }));
    }
    let tmp = tempdir_in(dir)?;
    let stored = store(
        &tmp,
        &written,
        names,
        Entry {
            status,
            stdout,
            stderr,
            outputs: Vec::new(),
            sources,
            env,
        },
    );
    if let Err(e) = stored {
        remove_entry(&tmp);
        return Err(e);
    }
    if std::fs::rename(&tmp, dir.join(key)).is_err() {
        // Another kernel recorded the same compile first.
        remove_entry(&tmp);
    }
    prune(dir, limit_bytes());
    Ok(())
}

/// Writes an entry into the temporary folder `tmp`: the outputs (hashed as
/// they are copied, so the hash is of the bytes kept) and then `entry.json`.
fn store(tmp: &Path, written: &[PathBuf], names: Vec<String>, mut entry: Entry) -> Result<()> {
    let out = tmp.join(OUTPUTS_DIR);
    DirBuilder::new().mode(0o700).create(&out)?;
    for (path, name) in written.iter().zip(names) {
        let mut file =
            File::open(path).with_context(|| format!("cannot read {}", path.display()))?;
        let executable = file.metadata()?.mode() & 0o111 != 0;
        let (size, sha256) = copy_hashed(&mut file, &out.join(&name), 0o600, u64::MAX)?;
        entry.outputs.push(Output {
            name,
            dest: path.clone(),
            size,
            sha256,
            executable,
        });
    }
    let json = serde_json::to_vec(&entry)?;
    if json.len() as u64 > MAX_ENTRY_JSON {
        bail!(
            "the entry would be {} bytes, more than the {MAX_ENTRY_JSON} read back",
            json.len()
        );
    }
    let mut f = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(tmp.join(ENTRY_FILE))?;
    f.write_all(&json)?;
    Ok(())
}

fn tempdir_in(dir: &Path) -> Result<PathBuf> {
    for n in 0..100u32 {
        let p = dir.join(format!("{TEMP_PREFIX}{}-{n}", std::process::id()));
        if DirBuilder::new().mode(0o700).create(&p).is_ok() {
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

/// Whether `name` is an entry's (a SHA-256 in hex).
fn is_key(name: &str) -> bool {
    name.len() == 64 && name.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// Size of an entry: `entry.json` and its outputs.
fn entry_size(entry_dir: &Path) -> u64 {
    let json = std::fs::symlink_metadata(entry_dir.join(ENTRY_FILE)).map_or(0, |m| m.len());
    let outputs: u64 = std::fs::read_dir(entry_dir.join(OUTPUTS_DIR))
        .map(|r| {
            r.flatten()
                .filter_map(|f| f.metadata().ok())
                .map(|m| m.len())
                .sum()
        })
        .unwrap_or(0);
    json + outputs
}

/// Removes temporary folders left over by killed compiles, entries missing
/// their `entry.json` or an output, and then the least recently used entries until the cache
/// fits in `limit`.
fn prune(dir: &Path, limit: u64) {
    let Ok(read) = std::fs::read_dir(dir) else {
        return;
    };
    let now = SystemTime::now();
    let mut entries: Vec<(SystemTime, u64, PathBuf)> = Vec::new();
    for e in read.flatten() {
        let path = e.path();
        let name = e.file_name().to_string_lossy().into_owned();
        if name.starts_with(TEMP_PREFIX) {
            let age = e
                .metadata()
                .ok()
                .and_then(|m| m.modified().ok())
                .and_then(|t| now.duration_since(t).ok());
            if age.is_some_and(|a| a > TEMP_MAX_AGE) {
                remove_entry(&path);
            }
            continue;
        }
        if !is_key(&name) {
            continue;
        }
        // Partly deleted, unreadable, or not a folder at all: it would never
        // replay. Least recently used goes by entry.json's time.
        let whole = check_whole(&path)
            .and_then(|()| Ok(std::fs::symlink_metadata(path.join(ENTRY_FILE))?.modified()?));
        match whole {
            Ok(used) => entries.push((used, entry_size(&path), path)),
            Err(e) => {
                remove_entry(&path);
                log_line(dir, &format!("entry {name}: pruned ({e:#})"));
            }
        }
    }
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
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn dep_info_names_sources_and_env() {
        let text = "/t/deps/ctx.d: src/lib.rs src/data\\ file.txt\n\n\
                    /t/deps/libctx.so: src/lib.rs src/data\\ file.txt\n\n\
                    src/lib.rs:\nsrc/data\\ file.txt:\n\n\
                    # env-dep:GREETING=hello\n# env-dep:UNSET\n";
        let (files, vars) = parse_dep_info(text);
        assert_eq!(
            files,
            vec![
                PathBuf::from("src/data file.txt"),
                PathBuf::from("src/lib.rs")
            ]
        );
        assert_eq!(vars, vec!["GREETING".to_owned(), "UNSET".to_owned()]);
    }

    #[test]
    fn prune_drops_least_recently_used_first() {
        let dir = tempfile::tempdir().unwrap();
        let now = SystemTime::now();
        let names = ["old", "mid", "new"].map(|n| format!("{:064x}", Sha256::digest(n)));
        for (i, name) in names.iter().enumerate() {
            let e = dir.path().join(name);
            std::fs::create_dir(&e).unwrap();
            std::fs::create_dir(e.join(OUTPUTS_DIR)).unwrap();
            std::fs::write(e.join(OUTPUTS_DIR).join("lib"), vec![0u8; 1000]).unwrap();
            std::fs::write(e.join(ENTRY_FILE), r#"{"outputs": [{"name": "lib"}]}"#).unwrap();
            let f = File::options()
                .append(true)
                .open(e.join(ENTRY_FILE))
                .unwrap();
            f.set_modified(now - std::time::Duration::from_secs(100 - 10 * i as u64))
                .unwrap();
        }
        // Each entry is 1000 bytes of output and ~30 of entry.json: two fit.
        prune(dir.path(), 2100);
        let left: Vec<bool> = names.iter().map(|n| dir.path().join(n).exists()).collect();
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

    /// A cell crate's compile against a stand-in for rustc (`/bin/sh` running
    /// a script), which writes a "library" (the source's bytes) and a dep-info
    /// into `--out-dir`, announces both as rustc does, says "compiled" on
    /// stdout, and counts its runs.
    struct Fixture {
        root: tempfile::TempDir,
        cells: PathBuf,
        out_dir: PathBuf,
        src: PathBuf,
        script: PathBuf,
    }

    const LIB: &str = "libctx-abc.so";
    const SOURCE: &str = "pub fn cell() -> u32 { 42 }\n";
    const FAKE_RUSTC: &str = r#"out=; src=
while [ $# -gt 0 ]; do
  case "$1" in
    --out-dir) out="$2"; shift ;;
    *.rs) src="$1" ;;
  esac
  shift
done
echo run >> "$out/../runs"
cat "$src" > "$out/libctx-abc.so"
chmod 755 "$out/libctx-abc.so"
printf '%s: %s\n\n%s:\n' "$out/ctx-abc.d" "$src" "$src" > "$out/ctx-abc.d"
printf '{"$message_type":"artifact","artifact":"%s","emit":"dep-info"}\n' "$out/ctx-abc.d" >&2
printf '{"$message_type":"artifact","artifact":"%s","emit":"link"}\n' "$out/libctx-abc.so" >&2
echo compiled
"#;

    impl Fixture {
        fn new() -> Fixture {
            let root = tempfile::tempdir().unwrap();
            let out_dir = root.path().join("target").join("deps");
            std::fs::create_dir_all(&out_dir).unwrap();
            let src = root.path().join("lib.rs");
            std::fs::write(&src, SOURCE).unwrap();
            let script = root.path().join("fake-rustc.sh");
            std::fs::write(&script, FAKE_RUSTC).unwrap();
            let cells = root.path().join("cache").join("cells");
            Fixture {
                root,
                cells,
                out_dir,
                src,
                script,
            }
        }

        fn args(&self) -> Vec<OsString> {
            let a = |s: &Path| s.as_os_str().to_owned();
            vec![
                a(&self.script),
                "--crate-name".into(),
                "ctx".into(),
                a(&self.src),
                "--out-dir".into(),
                a(&self.out_dir),
            ]
        }

        /// One compile through the cache: exit status and stdout.
        fn compile(&self) -> (i32, String) {
            let (mut out, mut err) = (Vec::new(), Vec::new());
            match compile_cell(
                &self.cells,
                Path::new("/bin/sh"),
                &self.args(),
                &mut out,
                &mut err,
            )
            .unwrap()
            {
                Compiled::Status(status) => (status, String::from_utf8(out).unwrap()),
                Compiled::Uncached => panic!("not cached"),
            }
        }

        /// How many times the "compiler" ran.
        fn runs(&self) -> usize {
            std::fs::read_to_string(self.out_dir.parent().unwrap().join("runs"))
                .map_or(0, |s| s.lines().count())
        }

        /// The one entry recorded.
        fn entry(&self) -> PathBuf {
            let keys: Vec<PathBuf> = std::fs::read_dir(&self.cells)
                .unwrap()
                .flatten()
                .filter(|e| is_key(&e.file_name().to_string_lossy()))
                .map(|e| e.path())
                .collect();
            assert_eq!(keys.len(), 1, "{keys:?}");
            keys[0].clone()
        }

        fn entry_json(&self) -> serde_json::Value {
            serde_json::from_slice(&std::fs::read(self.entry().join(ENTRY_FILE)).unwrap()).unwrap()
        }

        fn set_entry_json(&self, v: &serde_json::Value) {
            std::fs::write(self.entry().join(ENTRY_FILE), v.to_string()).unwrap();
        }

        /// The recorded output named LIB, to change in place.
        fn edit_lib_output(&self, edit: impl FnOnce(&mut serde_json::Value)) {
            let mut v = self.entry_json();
            let lib = v["outputs"]
                .as_array_mut()
                .unwrap()
                .iter_mut()
                .find(|o| o["name"] == LIB)
                .unwrap();
            edit(lib);
            self.set_entry_json(&v);
        }

        /// Gives the recorded output LIB another name and destination.
        fn rename_lib_output(&self, name: &str, dest: &Path) {
            self.edit_lib_output(|o| {
                o["name"] = name.into();
                o["dest"] = dest.to_str().unwrap().into();
            });
        }

        fn log(&self) -> String {
            std::fs::read_to_string(self.cells.join(LOG_FILE)).unwrap_or_default()
        }

        fn lib(&self) -> Vec<u8> {
            std::fs::read(self.out_dir.join(LIB)).unwrap()
        }
    }

    fn mode(p: &Path) -> u32 {
        std::fs::symlink_metadata(p).unwrap().mode() & 0o7777
    }

    #[test]
    fn a_compile_is_recorded_privately_and_replayed_into_the_out_dir() {
        let f = Fixture::new();
        assert_eq!(f.compile(), (0, "compiled\n".into()));
        assert_eq!(f.runs(), 1);
        let entry = f.entry();
        assert_eq!(mode(&f.cells), 0o700);
        assert_eq!(mode(&entry), 0o700);
        assert_eq!(mode(&entry.join(OUTPUTS_DIR)), 0o700);
        assert_eq!(mode(&entry.join(ENTRY_FILE)), 0o600);
        assert_eq!(mode(&entry.join(OUTPUTS_DIR).join(LIB)), 0o600);
        let recorded = f.entry_json();
        let lib = recorded["outputs"]
            .as_array()
            .unwrap()
            .iter()
            .find(|o| o["name"] == LIB)
            .unwrap();
        assert_eq!(lib["sha256"], format!("{:x}", Sha256::digest(SOURCE)));
        assert_eq!(lib["dest"], f.out_dir.join(LIB).to_str().unwrap());

        std::fs::remove_file(f.out_dir.join(LIB)).unwrap();
        assert_eq!(f.compile(), (0, "compiled\n".into()), "stdout replayed");
        assert_eq!(f.runs(), 1, "replayed, not compiled");
        assert_eq!(f.lib(), SOURCE.as_bytes());
        assert_ne!(
            mode(&f.out_dir.join(LIB)) & 0o100,
            0,
            "a library keeps its execute bit"
        );
        assert_eq!(f.log(), "", "nothing refused");
        let leftovers: Vec<_> = std::fs::read_dir(&f.out_dir)
            .unwrap()
            .flatten()
            .map(|e| e.file_name())
            .collect();
        assert_eq!(leftovers.len(), 2, "no staging files left: {leftovers:?}");
    }

    /// Records a compile, lets `tamper` change its entry, and checks that the
    /// next compile refuses the entry (logging `why`), compiles again, puts
    /// the right library in place, and records an entry that replays.
    fn refused_and_recompiled(tamper: impl FnOnce(&Fixture), why: &str) -> Fixture {
        let f = Fixture::new();
        assert_eq!(f.compile().0, 0);
        tamper(&f);
        std::fs::remove_file(f.out_dir.join(LIB)).unwrap();
        assert_eq!(f.compile(), (0, "compiled\n".into()));
        assert_eq!(f.runs(), 2, "the tampered entry was not replayed");
        assert_eq!(f.lib(), SOURCE.as_bytes());
        let log = f.log();
        assert_eq!(log.lines().count(), 1, "one line says why: {log}");
        assert!(
            log.contains("rejected") && log.contains(why),
            "{log:?} should say {why:?}"
        );
        assert_eq!(f.compile().0, 0);
        assert_eq!(f.runs(), 2, "the entry recorded anew replays");
        assert_eq!(f.log(), log, "and is not refused");
        f
    }

    #[test]
    fn changed_library_bytes_are_refused() {
        refused_and_recompiled(
            |f| {
                let stored = f.entry().join(OUTPUTS_DIR).join(LIB);
                let mut bytes = std::fs::read(&stored).unwrap();
                bytes[0] ^= 0xff;
                std::fs::write(&stored, bytes).unwrap();
            },
            "has SHA-256",
        );
    }

    #[test]
    fn a_library_of_another_size_is_refused() {
        refused_and_recompiled(
            |f| {
                let stored = f.entry().join(OUTPUTS_DIR).join(LIB);
                std::fs::write(&stored, "pub fn cell() -> u32 { 666 } // planted\n").unwrap();
            },
            "bytes, recorded as",
        );
    }

    /// The limit of what the hashes prove, kept in view: an entry changed
    /// consistently (bytes, size and hash together) replays. They catch
    /// damage and partial tampering; against someone who can write the cache
    /// folder at all, the protection is that only its owner can (0700, owner
    /// checked) — and the owner can run code anyway. A key held in the same
    /// folder would add nothing.
    #[test]
    fn a_consistently_changed_entry_replays_the_folder_is_the_boundary() {
        let f = Fixture::new();
        assert_eq!(f.compile().0, 0);
        let planted = b"planted";
        std::fs::write(f.entry().join(OUTPUTS_DIR).join(LIB), planted).unwrap();
        f.edit_lib_output(|o| {
            o["size"] = planted.len().into();
            o["sha256"] = format!("{:x}", Sha256::digest(planted)).into();
        });
        f.compile();
        assert_eq!(f.runs(), 1);
        assert_eq!(f.lib(), planted);
    }

    #[test]
    fn a_destination_outside_the_out_dir_is_refused() {
        let f = refused_and_recompiled(
            |f| {
                let outside = f.root.path().join("outside");
                std::fs::create_dir(&outside).unwrap();
                f.edit_lib_output(|o| o["dest"] = outside.join(LIB).to_str().unwrap().into());
            },
            "records destination",
        );
        assert!(
            !f.root.path().join("outside").join(LIB).exists(),
            "nothing written outside"
        );
    }

    #[test]
    fn a_dot_dot_name_is_refused() {
        let f = refused_and_recompiled(
            |f| {
                // Consistent in every other way: dest follows the name, and
                // the file the name reaches in the entry holds the right bytes.
                let name = format!("../escaped-{LIB}");
                std::fs::copy(
                    f.entry().join(OUTPUTS_DIR).join(LIB),
                    f.entry().join(OUTPUTS_DIR).join(&name),
                )
                .unwrap();
                f.rename_lib_output(&name, &f.out_dir.join(&name));
            },
            "is not a plain file name",
        );
        assert!(
            !f.out_dir
                .parent()
                .unwrap()
                .join(format!("escaped-{LIB}"))
                .exists(),
            "nothing written outside"
        );
    }

    #[test]
    fn an_absolute_name_is_refused() {
        let f = refused_and_recompiled(
            |f| {
                let planted = f.root.path().join("planted");
                std::fs::create_dir(&planted).unwrap();
                // out_dir.join(an absolute path) is that path: only the name check stops it.
                let name = planted.join(LIB);
                f.rename_lib_output(name.to_str().unwrap(), &name);
            },
            "is not a plain file name",
        );
        assert!(
            !f.root.path().join("planted").join(LIB).exists(),
            "nothing written outside"
        );
    }

    #[test]
    fn a_fifo_named_as_a_source_makes_the_entry_stale_without_waiting() {
        let f = Fixture::new();
        assert_eq!(f.compile().0, 0);
        let fifo = f.root.path().join("fifo");
        assert!(Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .unwrap()
            .success());
        let mut v = f.entry_json();
        let sources = v["sources"].as_array_mut().unwrap();
        sources.push(serde_json::json!([fifo, "0".repeat(64)]));
        f.set_entry_json(&v);
        assert_eq!(f.compile().0, 0);
        assert_eq!(f.runs(), 2);
        let log = f.log();
        assert!(
            log.contains("stale") && log.contains("fifo changed"),
            "{log}"
        );
    }

    #[test]
    fn a_symlinked_output_is_refused() {
        refused_and_recompiled(
            |f| {
                let stored = f.entry().join(OUTPUTS_DIR).join(LIB);
                let elsewhere = f.root.path().join("elsewhere.so");
                std::fs::rename(&stored, &elsewhere).unwrap();
                std::os::unix::fs::symlink(&elsewhere, &stored).unwrap();
            },
            "is missing",
        );
    }

    #[test]
    fn a_partly_deleted_entry_is_replaced() {
        refused_and_recompiled(
            |f| std::fs::remove_file(f.entry().join(OUTPUTS_DIR).join(LIB)).unwrap(),
            "is missing",
        );
        refused_and_recompiled(
            |f| std::fs::remove_file(f.entry().join(ENTRY_FILE)).unwrap(),
            ENTRY_FILE,
        );
    }

    #[test]
    fn an_oversized_entry_json_is_refused_unread() {
        refused_and_recompiled(
            |f| {
                // 10 GiB, sparse: reading it would take the machine's memory.
                let file = OpenOptions::new()
                    .write(true)
                    .open(f.entry().join(ENTRY_FILE))
                    .unwrap();
                file.set_len(10 << 30).unwrap();
            },
            "more than the",
        );
    }

    #[test]
    fn an_entry_in_another_format_is_refused() {
        refused_and_recompiled(
            |f| {
                let mut v = f.entry_json();
                v["outputs"] = serde_json::json!([[f.out_dir.join(LIB), "0-libctx-abc.so"]]);
                f.set_entry_json(&v);
            },
            "not a valid entry",
        );
    }

    #[test]
    fn an_output_outside_the_out_dir_is_not_recorded() {
        let f = Fixture::new();
        std::fs::create_dir_all(&f.cells).unwrap();
        let elsewhere = f.root.path().join("libctx-abc.so");
        std::fs::write(&elsewhere, "x").unwrap();
        let stderr = format!(
            "{{\"$message_type\":\"artifact\",\"artifact\":\"{}\",\"emit\":\"link\"}}\n",
            elsewhere.display()
        );
        let err = record(
            &f.cells,
            &"0".repeat(64),
            &f.out_dir,
            0,
            String::new(),
            stderr,
        )
        .unwrap_err();
        assert!(
            format!("{err:#}").contains("not a file in its out-dir"),
            "{err:#}"
        );
        assert_eq!(
            std::fs::read_dir(&f.cells).unwrap().count(),
            0,
            "no entry, no temporary folder left"
        );
    }

    #[test]
    fn output_names_must_be_one_plain_component() {
        for ok in ["libctx-abc.so", "ctx-abc.d", "a..b", ".hidden"] {
            assert!(check_name(ok).is_ok(), "{ok}");
        }
        for bad in [
            "", ".", "..", "../x", "a/b", "a/", "/abs", "/", "./x", "x/..",
        ] {
            assert!(check_name(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn out_dir_comes_from_the_arguments() {
        let cwd = std::env::current_dir().unwrap();
        let args = |a: &[&str]| a.iter().map(OsString::from).collect::<Vec<_>>();
        assert_eq!(
            out_dir(&args(&["--out-dir", "/t/deps", "x.rs"])),
            Some(PathBuf::from("/t/deps"))
        );
        assert_eq!(
            out_dir(&args(&["--out-dir=/t/deps"])),
            Some(PathBuf::from("/t/deps"))
        );
        assert_eq!(out_dir(&args(&["--out-dir", "rel"])), Some(cwd.join("rel")));
        assert_eq!(
            out_dir(&args(&["--out-dir", "/t/deps", "-o", "/t/x.so"])),
            None
        );
        assert_eq!(out_dir(&args(&["x.rs"])), None);
        assert_eq!(out_dir(&args(&["--out-dir"])), None);
    }

    #[test]
    fn prune_removes_leftover_temporary_folders_and_broken_entries() {
        let dir = tempfile::tempdir().unwrap();
        let d = |n: &str| dir.path().join(n);
        for n in [".tmp-1-0", ".tmp-2-0"] {
            std::fs::create_dir(d(n)).unwrap();
        }
        let old = SystemTime::now() - Duration::from_secs(3600);
        File::open(d(".tmp-1-0"))
            .unwrap()
            .set_modified(old)
            .unwrap();
        let [good, no_json, no_output, garbage, junk] =
            ["a", "b", "c", "d", "e"].map(|c| c.repeat(64));
        for n in [&good, &no_json, &no_output, &garbage] {
            std::fs::create_dir_all(d(n).join(OUTPUTS_DIR)).unwrap();
        }
        let names = r#"{"outputs": [{"name": "libctx.so"}, {"name": "ctx.d"}], "status": 0}"#;
        for n in [&good, &no_output] {
            std::fs::write(d(n).join(ENTRY_FILE), names).unwrap();
            std::fs::write(d(n).join(OUTPUTS_DIR).join("libctx.so"), "lib").unwrap();
        }
        std::fs::write(d(&good).join(OUTPUTS_DIR).join("ctx.d"), "dep-info").unwrap();
        std::fs::write(d(&garbage).join(ENTRY_FILE), "{not json").unwrap();
        std::fs::write(d(&junk), "not a folder").unwrap();
        std::fs::write(d(LOG_FILE), "a line\n").unwrap();
        prune(dir.path(), u64::MAX);
        let mut left: Vec<String> = std::fs::read_dir(dir.path())
            .unwrap()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        left.sort();
        assert_eq!(left, vec![".tmp-2-0".to_owned(), good, LOG_FILE.to_owned()]);
        let log = std::fs::read_to_string(d(LOG_FILE)).unwrap();
        for (n, why) in [
            (&no_json, "cannot open"),
            (&no_output, "output \"ctx.d\" is missing"),
            (&garbage, "not a valid entry"),
            (&junk, "cannot open"),
        ] {
            let line = log
                .lines()
                .find(|l| l.contains(&format!("entry {n}: pruned (")));
            assert!(line.is_some_and(|l| l.contains(why)), "{n}: {why}: {log}");
        }
    }

    #[test]
    fn a_loose_cache_folder_is_made_private_and_a_foreign_one_is_not_used() {
        let f = Fixture::new();
        std::fs::create_dir_all(&f.cells).unwrap();
        std::fs::set_permissions(&f.cells, std::fs::Permissions::from_mode(0o755)).unwrap();
        super::super::build_dir::private_dir(&f.cells).unwrap();
        assert_eq!(mode(&f.cells), 0o700);

        let parent = f.cells.parent().unwrap();
        std::fs::set_permissions(parent, std::fs::Permissions::from_mode(0o777)).unwrap();
        assert!(
            super::super::build_dir::private_dir(&f.cells).is_err(),
            "a parent anyone can rename it in"
        );
        std::fs::set_permissions(parent, std::fs::Permissions::from_mode(0o1777)).unwrap();
        super::super::build_dir::private_dir(&f.cells).unwrap();

        // A folder of another user is refused.
        if rustix::process::geteuid().is_root() {
            // Only root can give a folder away; other runs skip this part.
            std::os::unix::fs::chown(&f.cells, Some(65534), Some(65534)).unwrap();
            let err = super::super::build_dir::private_dir(&f.cells).unwrap_err();
            assert!(
                format!("{err:#}").contains("belongs to uid 65534"),
                "{err:#}"
            );
            let (mut out, mut errs) = (Vec::new(), Vec::new());
            let compiled = compile_cell(
                &f.cells,
                Path::new("/bin/sh"),
                &f.args(),
                &mut out,
                &mut errs,
            )
            .unwrap();
            assert!(
                matches!(compiled, Compiled::Uncached),
                "a foreign cache folder is not read"
            );
        }
    }

    #[test]
    fn the_log_starts_again_past_its_limit() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join(LOG_FILE);
        File::create(&log)
            .unwrap()
            .set_len(MAX_LOG_BYTES + 1)
            .unwrap();
        log_line(dir.path(), "entry x: rejected (why)\nsecond line");
        let text = std::fs::read_to_string(&log).unwrap();
        assert!(
            text.ends_with(": entry x: rejected (why) second line\n"),
            "{text:?}"
        );
        assert_eq!(text.lines().count(), 1);
        assert_eq!(mode(&log), 0o600);
        assert_eq!(
            std::fs::metadata(dir.path().join(format!("{LOG_FILE}.old")))
                .unwrap()
                .len(),
            MAX_LOG_BYTES + 1
        );
    }
}
