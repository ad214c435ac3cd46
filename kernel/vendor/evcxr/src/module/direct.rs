// Copyright 2020 The Evcxr Authors.
//
// Licensed under the Apache License, Version 2.0 <LICENSE or
// https://www.apache.org/licenses/LICENSE-2.0> or the MIT license <LICENSE
// or https://opensource.org/licenses/MIT>, at your option. This file may not be
// copied, modified, or distributed except according to those terms.

//! Compiling a cell without cargo.
//!
//! Between two cells usually nothing changes but the cell crate's source: the
//! same Cargo.toml, the same dependencies, already built. Cargo then only
//! checks every dependency's fingerprint and runs rustc (or its wrapper) for
//! the cell crate with the same arguments as last time; that check is most of
//! a small cell's compile time. So a rustc wrapper records how cargo invoked it
//! for the cell crate ([`record_invocation`], asked for through
//! [`RECORD_ENV`]), and while everything cargo's decisions depended on is
//! unchanged, the next compile runs that invocation directly.
//!
//! "Everything" is: the cargo command (program, arguments, environment,
//! directory), this process's environment, the crate's Cargo.toml, Cargo.lock
//! and `.cargo/config.toml`, cargo's configuration files in every folder above
//! the crate and in `$CARGO_HOME`, the identity (size and modification time)
//! of the compiler and of every library the cell links, and every file of the
//! path dependencies (local crates, which cargo rebuilds when they change):
//! none may be newer than the cargo run that recorded the invocation. Any
//! doubt means cargo runs as before. `EVCXR_DIRECT_COMPILE=0` always runs cargo.

use anyhow::{Context, Result, bail};
use serde::{Deserialize, Serialize};
use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::SystemTime;

/// Set on the cargo command to the file a wrapper records the cell crate's compile in.
pub(crate) const RECORD_ENV: &str = "EVCXR_RECORD_RUSTC_INVOCATION";
/// Jobserver variables: they name file descriptors of the cargo run that no longer exist.
const JOBSERVER_ENV: [&str; 3] = ["CARGO_MAKEFLAGS", "MAKEFLAGS", "MFLAGS"];
/// A path dependency with more files than this is not walked: cargo checks it.
const MAX_PATH_DEP_FILES: usize = 5000;

/// False when `EVCXR_DIRECT_COMPILE=0`: every compile goes through cargo.
pub(crate) fn enabled() -> bool {
    std::env::var_os("EVCXR_DIRECT_COMPILE").is_none_or(|v| v != "0")
}

/// How cargo ran the compiler (through its wrapper) for the cell crate.
#[derive(Serialize, Deserialize)]
pub(crate) struct Invocation {
    program: PathBuf,
    args: Vec<String>,
    cwd: PathBuf,
    env: Vec<(String, String)>,
}

/// When this process is the compiler wrapper for the cell crate `crate_name` and the cargo
/// command asked for a record, writes how it was invoked. Does nothing otherwise; a failure
/// only means the next cell goes through cargo.
pub fn record_invocation(crate_name: &str) {
    let Some(file) = std::env::var_os(RECORD_ENV) else {
        return;
    };
    let args: Vec<String> = match std::env::args_os().skip(1).map(|a| a.into_string()).collect() {
        Ok(args) => args,
        Err(_) => return,
    };
    let is_cell = args
        .windows(2)
        .any(|w| w[0] == "--crate-name" && w[1] == crate_name);
    if !is_cell {
        return;
    }
    let env = std::env::vars_os()
        .filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?)))
        .filter(|(k, _)| !JOBSERVER_ENV.contains(&k.as_str()))
        .collect();
    let (Ok(program), Ok(cwd)) = (std::env::current_exe(), std::env::current_dir()) else {
        return;
    };
    let invocation = Invocation {
        program,
        args,
        cwd,
        env,
    };
    if let Ok(json) = serde_json::to_vec(&invocation) {
        let _ = std::fs::write(file, json);
    }
}

/// A recorded compile of the cell crate and what it depended on.
pub(crate) struct Direct {
    invocation: Invocation,
    inputs: Vec<u8>,
    /// When the cargo run that recorded it started.
    started: SystemTime,
    /// Folders of the path dependencies cargo built or checked.
    path_packages: Vec<PathBuf>,
}

impl Direct {
    /// After a successful cargo run: what the wrapper recorded in `record_file` (removed),
    /// with the inputs as they are now. None when nothing was recorded.
    pub(crate) fn after_cargo(
        command: &Command,
        crate_dir: &Path,
        record_file: &Path,
        started: SystemTime,
        cargo_stdout: &[u8],
    ) -> Option<Direct> {
        let json = std::fs::read(record_file).ok()?;
        let _ = std::fs::remove_file(record_file);
        let invocation: Invocation = serde_json::from_slice(&json).ok()?;
        // The cell crate's own source is what changes; its other inputs are among `inputs`.
        let path_packages = path_packages(cargo_stdout)
            .into_iter()
            .filter(|dir| dir != crate_dir)
            .collect();
        let inputs = inputs(command, crate_dir, &invocation).ok()?;
        Some(Direct {
            invocation,
            inputs,
            started,
            path_packages,
        })
    }

    /// True when nothing cargo would look at changed since the recorded run.
    pub(crate) fn still_valid(&self, command: &Command, crate_dir: &Path) -> bool {
        inputs(command, crate_dir, &self.invocation).is_ok_and(|now| now == self.inputs)
            && self
                .path_packages
                .iter()
                .all(|dir| unchanged_since(dir, self.started).unwrap_or(false))
    }

    /// Runs the recorded compile.
    pub(crate) fn run(&self) -> Result<std::process::Output> {
        let inv = &self.invocation;
        Command::new(&inv.program)
            .args(&inv.args)
            .current_dir(&inv.cwd)
            .env_clear()
            .envs(inv.env.iter().map(|(k, v)| (k, v)))
            .output()
            .with_context(|| format!("cannot run {}", inv.program.display()))
    }
}

/// The inputs of cargo's decisions, as bytes to compare.
fn inputs(command: &Command, crate_dir: &Path, inv: &Invocation) -> Result<Vec<u8>> {
    let mut out = Vec::new();
    let mut field = |bytes: &[u8]| {
        out.extend_from_slice(&(bytes.len() as u64).to_le_bytes());
        out.extend_from_slice(bytes);
    };
    field(command.get_program().as_bytes());
    for arg in command.get_args() {
        field(arg.as_bytes());
    }
    for (k, v) in command.get_envs() {
        field(k.as_bytes());
        field(v.unwrap_or(OsStr::new("\0unset")).as_bytes());
    }
    field(
        command
            .get_current_dir()
            .unwrap_or(Path::new(""))
            .as_os_str()
            .as_bytes(),
    );
    let mut env: Vec<_> = std::env::vars_os().collect();
    env.sort();
    for (k, v) in env {
        field(k.as_bytes());
        field(v.as_bytes());
    }
    for name in ["Cargo.toml", "Cargo.lock", ".cargo/config.toml", ".cargo/config"] {
        field(&read_or_none(&crate_dir.join(name)));
    }
    // Cargo's configuration in the folders above (the crate's own was read above) and in its
    // home.
    let mut configs: Vec<PathBuf> = crate_dir.ancestors().skip(1).map(|d| d.join(".cargo")).collect();
    if let Some(home) = std::env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .or_else(|| dirs::home_dir().map(|h| h.join(".cargo")))
    {
        configs.push(home);
    }
    for dir in configs {
        field(&read_or_none(&dir.join("config.toml")));
        field(&read_or_none(&dir.join("config")));
    }
    // The compiler and every library given to it: a rebuilt one has a new identity.
    let mut files = vec![PathBuf::from(inv.args.first().context("no compiler")?)];
    let mut args = inv.args.iter();
    while let Some(arg) = args.next() {
        let spec = match arg.strip_prefix("--extern=") {
            Some(spec) => Some(spec),
            None if arg == "--extern" => args.next().map(String::as_str),
            None => None,
        };
        if let Some((_, path)) = spec.and_then(|s| s.split_once('=')) {
            files.push(PathBuf::from(path));
        }
    }
    for file in files {
        let meta = std::fs::metadata(&file).with_context(|| format!("{}", file.display()))?;
        field(format!("{}:{:?}", meta.len(), meta.modified()?).as_bytes());
    }
    Ok(out)
}

fn read_or_none(path: &Path) -> Vec<u8> {
    std::fs::read(path).unwrap_or_else(|_| b"\0none".to_vec())
}

/// The folders of the local (path) packages in cargo's JSON messages.
fn path_packages(cargo_stdout: &[u8]) -> Vec<PathBuf> {
    let mut dirs = Vec::new();
    for line in String::from_utf8_lossy(cargo_stdout).lines() {
        let Ok(message) = serde_json::from_str::<serde_json::Value>(line) else {
            continue;
        };
        let (Some(id), Some(manifest)) = (
            message["package_id"].as_str(),
            message["manifest_path"].as_str(),
        ) else {
            continue;
        };
        if !id.starts_with("path+") {
            continue;
        }
        if let Some(dir) = Path::new(manifest).parent() {
            if !dirs.iter().any(|d| d == dir) {
                dirs.push(dir.to_owned());
            }
        }
    }
    dirs
}

/// True when no file or folder in `dir` (outside `target` and hidden folders) was modified at
/// or after `since` (a folder's time changes when a file in it is added or removed).
fn unchanged_since(dir: &Path, since: SystemTime) -> Result<bool> {
    let mut pending = vec![dir.to_owned()];
    let mut seen = 0;
    while let Some(dir) = pending.pop() {
        if std::fs::metadata(&dir)?.modified()? >= since {
            return Ok(false);
        }
        for entry in std::fs::read_dir(&dir)? {
            let entry = entry?;
            seen += 1;
            if seen > MAX_PATH_DEP_FILES {
                bail!("too many files under {}", dir.display());
            }
            let name = entry.file_name();
            let kind = entry.file_type()?;
            if kind.is_dir() {
                if name != "target" && !name.as_bytes().starts_with(b".") {
                    pending.push(entry.path());
                }
                continue;
            }
            // A symlink counts with what it points to.
            let meta = std::fs::metadata(entry.path())?;
            if meta.modified()? >= since {
                return Ok(false);
            }
        }
    }
    Ok(true)
}
