//! The processes around a cell: the evaluation process, the compiler, and
//! whatever a cell starts. Read from /proc (procfs); signals through rustix.

use procfs::process::{all_processes, Process};
use rustix::process::{kill_process, Pid, Signal};
use std::collections::HashMap;

/// Every process's parent, read once.
fn parents() -> HashMap<i32, i32> {
    let Ok(all) = all_processes() else { return HashMap::new() };
    all.flatten()
        .filter_map(|p| p.stat().ok())
        .map(|stat| (stat.pid, stat.ppid))
        .collect()
}

/// The direct children of `pid`.
pub fn children(pid: i32) -> Vec<i32> {
    parents().into_iter().filter(|&(_, pp)| pp == pid).map(|(p, _)| p).collect()
}

/// `pid` and all its descendants, parents before children.
pub fn tree(pid: i32) -> Vec<i32> {
    let map = parents();
    let mut all = vec![pid];
    let mut i = 0;
    while i < all.len() {
        let p = all[i];
        all.extend(map.iter().filter(|&(_, &pp)| pp == p).map(|(&c, _)| c));
        i += 1;
    }
    all
}

/// SIGKILL to a process and all its descendants.
pub fn kill_tree(pid: i32) {
    for p in tree(pid) {
        kill(p);
    }
}

/// Kills the kernel's children other than `keep` (the compiler, after an
/// interrupt) and their descendants, again and again until none is left:
/// a process started while the first round read the process table, or
/// orphaned by it (the kernel adopts orphans), is caught by the next.
pub fn stop_children_except(keep: &[i32]) {
    let me = std::process::id() as i32;
    for _ in 0..200 {
        let left: Vec<i32> = children(me).into_iter().filter(|p| !keep.contains(p) && !has_exited(*p as u32)).collect();
        if left.is_empty() {
            return;
        }
        for pid in left {
            kill_tree(pid);
        }
        reap_children();
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    log::warn!("compiler processes survived the interrupt");
}

/// Collects exited children of the kernel that no `Child` handle waits for
/// (killed compilers' orphans, adopted by the kernel as subreaper).
fn reap_children() {
    use rustix::process::{waitpid, WaitOptions};
    let me = std::process::id() as i32;
    for pid in children(me) {
        if has_exited(pid as u32) {
            if let Some(p) = Pid::from_raw(pid) {
                let _ = waitpid(Some(p), WaitOptions::NOHANG);
            }
        }
    }
}

/// SIGKILL to one process; a process already gone is not an error.
pub fn kill(pid: i32) {
    if let Some(pid) = Pid::from_raw(pid) {
        let _ = kill_process(pid, Signal::KILL);
    }
}

/// CPU time (user + system, including waited-for children) of a process, in seconds.
pub fn cpu_seconds(pid: i32) -> Option<f64> {
    let stat = Process::new(pid).ok()?.stat().ok()?;
    let ticks = stat.utime + stat.stime + stat.cutime.max(0) as u64 + stat.cstime.max(0) as u64;
    Some(ticks as f64 / procfs::ticks_per_second() as f64)
}

/// True once `pid` has exited (a zombie counts as exited).
pub fn has_exited(pid: u32) -> bool {
    match Process::new(pid as i32).and_then(|p| p.stat()) {
        Ok(stat) => stat.state == 'Z',
        Err(_) => true,
    }
}
