//! The kernel's processes from start to exit: nothing it started outlives it.
//!
//! - Every process the kernel starts (the evaluation process, cargo, rustc,
//!   whatever a cell runs) inherits a token in its environment
//!   ([`TOKEN_ENV`]), so the kernel's processes can be found even after they
//!   left its process tree or group (`setsid`, a dead parent).
//! - The kernel is a child subreaper: orphans among its descendants become
//!   its children, not init's.
//! - When the process that launched the kernel dies (`JPY_PARENT_PID`, as
//!   ipykernel does) the kernel shuts down; on every way out it kills all
//!   its processes ([`kill_descendants`]).
//! - A watchdog process ([`watchdog_main`]) outlives a kernel killed with
//!   SIGKILL just long enough to kill what that kernel left behind.
//! - The evaluation process dies with the kernel (`PR_SET_PDEATHSIG`).

use procfs::process::{all_processes, Process};
use rustix::process::{Pid, Signal};
use std::collections::BTreeSet;
use std::io::Read;
use std::sync::OnceLock;
use std::time::Duration;

/// Marks every process this kernel started: `<kernel pid>:<uuid>`.
pub const TOKEN_ENV: &str = "THREADBOOK_KERNEL_TOKEN";
/// Set in the watchdog's environment.
const WATCHDOG_ENV: &str = "THREADBOOK_WATCHDOG";
/// Set when the kernel pinned RUSTUP_TOOLCHAIN for its own tools.
const PINNED_ENV: &str = "THREADBOOK_PINNED_TOOLCHAIN";

static WATCHDOG: OnceLock<(u32, std::process::ChildStdin)> = OnceLock::new();

fn token() -> Option<String> {
    std::env::var(TOKEN_ENV).ok()
}

fn kernel_pid_of(token: &str) -> Option<i32> {
    token.split(':').next()?.parse().ok()
}

/// Prepares the kernel process. Call first thing, while it has one thread
/// (it changes the environment every later process inherits).
///
/// - marks the environment with this kernel's token;
/// - makes the kernel a child subreaper;
/// - drops relative entries from PATH (a `.` would let the notebook's folder
///   supply `cargo` or a linker);
/// - pins RUSTUP_TOOLCHAIN to the toolchain active in `trusted_dir`, so a
///   `rust-toolchain.toml` in the notebook's folder cannot choose which
///   compiler the kernel runs;
/// - starts the watchdog.
pub fn prepare(trusted_dir: &std::path::Path) {
    let me = std::process::id();
    std::env::set_var(TOKEN_ENV, format!("{me}:{}", uuid::Uuid::new_v4().simple()));
    if let Err(e) = rustix::process::set_child_subreaper(Some(rustix::process::getpid())) {
        log::warn!("cannot become a child subreaper ({e}); orphaned processes of cells are found by their token only");
    }
    if let Some(path) = std::env::var_os("PATH") {
        let kept: Vec<_> = std::env::split_paths(&path).filter(|p| p.is_absolute()).collect();
        if let Ok(joined) = std::env::join_paths(kept) {
            if joined != path {
                log::warn!("PATH had relative entries; the kernel ignores them");
                std::env::set_var("PATH", joined);
            }
        }
    }
    if std::env::var_os("RUSTUP_TOOLCHAIN").is_none() {
        if let Some(toolchain) = active_toolchain(trusted_dir) {
            std::env::set_var("RUSTUP_TOOLCHAIN", &toolchain);
            std::env::set_var(PINNED_ENV, "1");
            log::info!("toolchain: {toolchain}");
        }
    }
    start_watchdog();
}

/// The toolchain rustup would use in `dir` (None without rustup).
fn active_toolchain(dir: &std::path::Path) -> Option<String> {
    let out = std::process::Command::new("rustup")
        .args(["show", "active-toolchain"])
        .current_dir(dir)
        .stderr(std::process::Stdio::null())
        .output()
        .ok()
        .filter(|o| o.status.success())?;
    let text = String::from_utf8(out.stdout).ok()?;
    text.split_whitespace().next().map(str::to_owned)
}

fn start_watchdog() {
    let Ok(exe) = std::env::current_exe() else { return };
    let spawned = std::process::Command::new(exe)
        .env(WATCHDOG_ENV, "1")
        .stdin(std::process::Stdio::piped())
        // Nothing of the kernel's terminal: a frontend that waits for it to
        // close (a console in tmux) must not wait for the watchdog too.
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn();
    match spawned {
        Ok(mut child) => {
            if let Some(stdin) = child.stdin.take() {
                let _ = WATCHDOG.set((child.id(), stdin));
            }
            // Reaped with every other child at exit; the handle is not needed.
            std::mem::forget(child);
        }
        Err(e) => log::warn!("cannot start the watchdog ({e}): a kernel killed with SIGKILL may leave processes behind"),
    }
}

/// True for the kernel's watchdog process.
pub fn is_watchdog(pid: i32) -> bool {
    watchdog_pid() == Some(pid)
}

/// The kernel's watchdog process, if it started.
pub fn watchdog_pid() -> Option<i32> {
    WATCHDOG.get().map(|(w, _)| *w as i32)
}

/// True when this process was started as a watchdog.
pub fn watchdog_requested() -> bool {
    std::env::var_os(WATCHDOG_ENV).is_some()
}

/// The watchdog: waits until its kernel is gone (its stdin, a pipe only the
/// kernel holds, reaches end-of-file), then kills every process that carries
/// the kernel's token. It runs in a session of its own, so a signal to the
/// kernel's process group doesn't stop it before it has done that.
pub fn watchdog_main() -> ! {
    let _ = rustix::process::setsid();
    let mut buf = [0u8; 64];
    let mut stdin = std::io::stdin();
    while !matches!(stdin.read(&mut buf), Ok(0) | Err(_)) {}
    if let Some(token) = token() {
        kill_marked(&token, &BTreeSet::new());
    }
    std::process::exit(0);
}

/// Processes carrying `token` in their environment, but not this one.
fn marked(token: &str) -> Vec<i32> {
    let me = std::process::id() as i32;
    let needle = format!("{TOKEN_ENV}={token}");
    let Ok(all) = all_processes() else { return Vec::new() };
    all.flatten()
        .filter(|p| p.pid != me)
        .filter(|p| {
            // /proc/<pid>/environ is NUL-separated KEY=VALUE entries.
            std::fs::read(format!("/proc/{}/environ", p.pid))
                .is_ok_and(|env| env.split(|&b| b == 0).any(|entry| entry == needle.as_bytes()))
        })
        .map(|p| p.pid)
        .collect()
}

/// SIGKILL to every process with the token (and `more`), until none is left.
fn kill_marked(token: &str, more: &BTreeSet<i32>) {
    let mut extra = more.clone();
    for _ in 0..20 {
        let mut targets: BTreeSet<i32> = marked(token).into_iter().collect();
        targets.append(&mut extra);
        // Zombies are dead already; they only wait to be reaped.
        targets.retain(|&p| Process::new(p).and_then(|p| p.stat()).is_ok_and(|s| s.state != 'Z'));
        if targets.is_empty() {
            return;
        }
        for pid in targets {
            if let Some(pid) = Pid::from_raw(pid) {
                let _ = rustix::process::kill_process(pid, Signal::KILL);
            }
        }
        reap();
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Collects exited children (the subreaper adopts orphans, which then
/// become zombies of the kernel).
fn reap() {
    while let Ok(Some(_)) = rustix::process::waitpid(None, rustix::process::WaitOptions::NOHANG) {}
}

/// Kills every process the kernel started: its process tree and anything
/// else with its token. The watchdog goes too (its job is done).
pub fn kill_descendants() {
    let me = std::process::id() as i32;
    let tree: BTreeSet<i32> = crate::engine::evcxr::process::tree(me).into_iter().filter(|&p| p != me).collect();
    match token() {
        Some(token) if kernel_pid_of(&token) == Some(me) => kill_marked(&token, &tree),
        _ => {
            for pid in tree {
                crate::engine::evcxr::process::kill(pid);
            }
            reap();
        }
    }
}

/// Calls `on_death` once the process that launched the kernel is gone.
/// Only when the launcher asked for it with `JPY_PARENT_PID` (as
/// jupyter_client does unless a kernel is started independent).
pub fn watch_parent(on_death: impl FnOnce() + Send + 'static) {
    let Some(parent) = std::env::var("JPY_PARENT_PID").ok().and_then(|p| p.parse::<i32>().ok()).filter(|&p| p > 1)
    else {
        return;
    };
    let spawned = std::thread::Builder::new().name("parent-watch".into()).spawn(move || {
        wait_for_exit(parent);
        log::warn!("the process that launched this kernel ({parent}) is gone: shutting down");
        on_death();
    });
    if let Err(e) = spawned {
        log::warn!("cannot watch the launching process: {e}");
    }
}

/// Blocks until `pid` has exited.
fn wait_for_exit(pid: i32) {
    let Some(p) = Pid::from_raw(pid) else { return };
    match rustix::process::pidfd_open(p, rustix::process::PidfdFlags::empty()) {
        Ok(fd) => {
            use rustix::event::{poll, PollFd, PollFlags};
            loop {
                let mut fds = [PollFd::new(&fd, PollFlags::IN)];
                match poll(&mut fds, None) {
                    Ok(n) if n > 0 => return,
                    Ok(_) | Err(rustix::io::Errno::INTR) => continue,
                    Err(_) => break,
                }
            }
        }
        Err(rustix::io::Errno::SRCH) => return,
        Err(_) => {}
    }
    // No pidfd: look now and then.
    while rustix::process::test_kill_process(p).is_ok() {
        std::thread::sleep(Duration::from_millis(250));
    }
}

/// Set-up of cargo's rustc wrapper (this binary): it dies with cargo, so an
/// interrupt that kills cargo stops its compilers too.
pub fn wrapper_setup() {
    let _ = rustix::process::set_parent_process_death_signal(Some(Signal::KILL));
}

/// Set-up of the evaluation process, before evcxr takes over: it dies with
/// the kernel, and cells run with the user's own toolchain settings.
pub fn evaluation_process_setup() {
    let _ = rustix::process::set_parent_process_death_signal(Some(Signal::KILL));
    // The kernel may have died before the line above: then the parent is not it.
    let kernel = token().as_deref().and_then(kernel_pid_of);
    let parent = rustix::process::getppid().map(|p| p.as_raw_nonzero().get());
    if kernel.is_some() && parent != kernel {
        std::process::exit(0);
    }
    // Single-threaded here, so changing the environment is sound.
    if std::env::var_os(PINNED_ENV).is_some() {
        std::env::remove_var("RUSTUP_TOOLCHAIN");
        std::env::remove_var(PINNED_ENV);
    }
    // Panics are reported by the kernel as errors; a backtrace of generated
    // code helps nobody.
    std::env::set_var("RUST_BACKTRACE", "0");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_token_names_its_kernel() {
        assert_eq!(kernel_pid_of("4242:abc"), Some(4242));
        assert_eq!(kernel_pid_of("nonsense"), None);
    }
}
