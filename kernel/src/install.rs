//! Writing and removing the `threadbook` kernelspec.

use anyhow::{Context, Result};
use serde_json::json;
use std::path::{Path, PathBuf};

pub const KERNEL_NAME: &str = "threadbook";
pub const DISPLAY_NAME: &str = "Rust (threadbook)";

/// Where a kernelspec goes.
#[derive(Debug, Clone)]
pub enum Target {
    /// The user's Jupyter data dir (JUPYTER_DATA_DIR, or ~/.local/share/jupyter).
    User,
    /// `{sys.prefix}/share/jupyter` of the Python that runs `jupyter` (a venv).
    SysPrefix,
    /// `{DIR}/share/jupyter`.
    Prefix(PathBuf),
}

fn python_prefix() -> Result<PathBuf> {
    let mut last_err = None;
    for py in ["python3", "python"] {
        match std::process::Command::new(py).args(["-c", "import sys; print(sys.prefix)"]).output() {
            Ok(out) if out.status.success() => {
                return Ok(PathBuf::from(String::from_utf8_lossy(&out.stdout).trim()));
            }
            Ok(out) => last_err = Some(anyhow::anyhow!("{py} failed: {}", String::from_utf8_lossy(&out.stderr))),
            Err(e) => last_err = Some(e.into()),
        }
    }
    Err(last_err.unwrap_or_else(|| anyhow::anyhow!("no python found")))
        .context("--sys-prefix needs the Python that runs Jupyter on PATH")
}

pub fn kernels_dir(target: &Target) -> Result<PathBuf> {
    let data = match target {
        Target::User => match std::env::var_os("JUPYTER_DATA_DIR") {
            Some(d) => PathBuf::from(d),
            None => dirs::data_dir()
                .context("cannot find the user data directory (set JUPYTER_DATA_DIR)")?
                .join("jupyter"),
        },
        Target::SysPrefix => python_prefix()?.join("share").join("jupyter"),
        Target::Prefix(p) => p.join("share").join("jupyter"),
    };
    Ok(data.join("kernels"))
}

pub fn kernel_json(exe: &Path) -> serde_json::Value {
    json!({
        "argv": [exe.to_string_lossy(), "kernel", "--connection-file", "{connection_file}"],
        "display_name": DISPLAY_NAME,
        "language": "rust",
        "interrupt_mode": "message",
        "env": {},
        "metadata": {
            "debugger": false
        }
    })
}

/// Writes (or rewrites) the kernelspec; returns its directory.
pub fn install(target: &Target, exe: &Path) -> Result<PathBuf> {
    let dir = kernels_dir(target)?.join(KERNEL_NAME);
    std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let text = serde_json::to_string_pretty(&kernel_json(exe))?;
    std::fs::write(dir.join("kernel.json"), text + "\n")
        .with_context(|| format!("cannot write {}", dir.join("kernel.json").display()))?;
    std::fs::write(dir.join("logo-svg.svg"), LOGO)?;
    Ok(dir)
}

/// Removes the kernelspec; returns the directory if there was one.
pub fn uninstall(target: &Target) -> Result<Option<PathBuf>> {
    let dir = kernels_dir(target)?.join(KERNEL_NAME);
    if !dir.exists() {
        return Ok(None);
    }
    std::fs::remove_dir_all(&dir).with_context(|| format!("cannot remove {}", dir.display()))?;
    Ok(Some(dir))
}

const LOGO: &str = r##"<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 64 64"><rect width="64" height="64" rx="12" fill="#b7410e"/><path d="M14 20h36M14 32h36M14 44h36" stroke="#fff" stroke-width="5" stroke-linecap="round"/><circle cx="24" cy="20" r="4" fill="#fff"/><circle cx="40" cy="32" r="4" fill="#fff"/><circle cx="30" cy="44" r="4" fill="#fff"/></svg>
"##;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn install_is_idempotent_and_uninstall_removes() {
        let tmp = tempfile::tempdir().unwrap();
        let target = Target::Prefix(tmp.path().to_owned());
        let exe = Path::new("/opt/bin/threadbook");
        let a = install(&target, exe).unwrap();
        let b = install(&target, exe).unwrap();
        assert_eq!(a, b);
        assert!(a.ends_with("share/jupyter/kernels/threadbook"));
        let spec: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(a.join("kernel.json")).unwrap()).unwrap();
        assert_eq!(spec["display_name"], "Rust (threadbook)");
        assert_eq!(spec["language"], "rust");
        assert_eq!(spec["interrupt_mode"], "message");
        assert_eq!(spec["argv"][0], "/opt/bin/threadbook");
        assert_eq!(spec["argv"].as_array().unwrap().last().unwrap(), "{connection_file}");
        assert_eq!(uninstall(&target).unwrap(), Some(a.clone()));
        assert!(!a.exists());
        assert_eq!(uninstall(&target).unwrap(), None);
    }
}
