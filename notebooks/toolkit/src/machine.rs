//! The machine a measurement ran on: the CPUs this process may use (its affinity mask), the CPU
//! model, caches, load, rustc and how the code was compiled; thread ids.
//! Every timing display ends with [`Context`]'s line, because a busy shared machine shows 1.0x
//! where an idle one shows 1.9x.

use std::sync::OnceLock;

use crate::display::{display, escape_html};

/// The machine and build a measurement ran on. Take it *before* measuring: the load average
/// afterwards includes the measurement itself.
#[derive(Clone, Debug, PartialEq)]
pub struct Context {
    /// CPUs this process may use (`available_parallelism`, honours `taskset`).
    pub cores: usize,
    /// CPUs online in the machine (may be more than `cores` under `taskset`).
    pub online_cpus: usize,
    /// CPU model from `/proc/cpuinfo`, or the architecture if unknown.
    pub cpu_model: String,
    /// Load average over 1 minute (runnable threads, averaged), from `/proc/loadavg`.
    pub load1: f64,
    /// Load average over 5 minutes.
    pub load5: f64,
    /// CPUs busy right now (all programs, over 0.1 s while this one waits, from `/proc/stat`).
    /// Unlike the load average it does not remember this notebook's earlier measurements.
    pub busy_now: Option<f64>,
    /// e.g. `rustc 1.95.0`, or `rustc ?` if it could not be found.
    pub rustc: String,
    /// e.g. `opt-level 2`: the level the toolkit was compiled at; the kernel compiles cells and
    /// their dependencies with one profile, and the course's helper programs are built with it too.
    pub opt_level: String,
    /// Whether debug assertions (and integer overflow checks) are on in this build.
    pub debug_assertions: bool,
}

impl Context {
    /// Reads the context now.
    pub fn now() -> Context {
        let (load1, load5) = load_average().unwrap_or((f64::NAN, f64::NAN));
        let busy_now = cpus_busy_now(std::time::Duration::from_millis(100));
        Context {
            cores: cores(),
            online_cpus: online_cpus(),
            cpu_model: cpu_model(),
            load1,
            load5,
            busy_now,
            rustc: rustc_version().to_string(),
            opt_level: opt_level(),
            debug_assertions: cfg!(debug_assertions),
        }
    }

    /// One line, e.g.
    /// `2 cores · Intel Xeon @ 2.20GHz · load 0.31 / 0.40 · rustc 1.95.0 · opt-level 2 · debug assertions on`.
    pub fn line(&self) -> String {
        let cores = match (self.cores, self.online_cpus) {
            (1, online) if online > 1 => format!("1 core (of {online} online)"),
            (1, _) => "1 core".to_string(),
            (n, online) if online > n => format!("{n} cores (of {online} online)"),
            (n, _) => format!("{n} cores"),
        };
        let mut load = if self.load1.is_nan() { "load ?".to_string() } else { format!("load {:.2} / {:.2}", self.load1, self.load5) };
        if let Some(b) = self.busy_now {
            load.push_str(&format!(" · {b:.1} CPUs busy now"));
        }
        format!(
            "{cores} · {} · {load} · {} · {} · debug assertions {}",
            self.cpu_model,
            self.rustc,
            self.opt_level,
            if self.debug_assertions { "on" } else { "off" }
        )
    }

    /// True when the 1-minute load average is at least the number of cores: other programs
    /// compete for the CPU and parallel speedups will look smaller than on an idle machine.
    fn busy(&self) -> bool {
        self.load1 >= self.cores as f64
    }

    /// A plain warning sentence when the machine is busy: a load average of at least the number
    /// of cores, or — whatever the load average says — other work keeping CPUs busy right now (at
    /// least ¾ of a CPU, and a quarter of those online). If the load average is high but the CPUs
    /// are idle right now, the sentence says the load is probably this notebook's own earlier
    /// measurements instead.
    fn warning(&self) -> Option<String> {
        let (load, cores) = (self.load1, self.cores);
        let s = if cores == 1 { "" } else { "s" };
        match self.busy_now {
            Some(now) if self.busy() && now < 0.5 => Some(format!(
                "Note: the load average is high ({load:.2} on {cores} core{s}) but only {now:.1} \
                 CPUs were busy just before measuring: the load probably comes from this \
                 notebook's own earlier measurements, which have finished."
            )),
            _ if self.busy() => Some(format!(
                "Warning: the machine is busy (load {load:.2} on {cores} core{s}): other programs \
                 compete for the CPU, so these timings are slower and speedups smaller than on an \
                 idle machine. Run the cell again when the load has dropped."
            )),
            Some(now) if now >= 0.75 && now >= 0.25 * self.online_cpus as f64 => Some(format!(
                "Warning: other work kept {now:.1} CPUs busy just before measuring (this process may use \
                 {cores}): these timings are slower and speedups smaller than on an idle machine. Run the \
                 cell again when they are free."
            )),
            _ => None,
        }
    }

    /// The context line (and warning, if busy) as plain text.
    pub fn text(&self) -> String {
        self.warning().map_or_else(|| self.line(), |w| format!("{}\n{w}", self.line()))
    }

    /// The context line (and warning, if busy) as a small grey HTML block.
    pub fn html(&self) -> String {
        let mut s = format!(
            "<div class=\"tb-context\" style=\"color:#666;font-size:85%;margin-top:4px\">{}</div>",
            escape_html(&self.line())
        );
        if let Some(w) = self.warning() {
            s.push_str(&format!(
                "<div class=\"tb-warning\" style=\"color:#b00020;font-weight:bold\">{}</div>",
                escape_html(&w)
            ));
        }
        s
    }

    /// Shows the context line.
    pub fn show(&self) {
        display(&[("text/plain", self.text()), ("text/html", self.html())]);
    }
}

/// Shows the current context (cores, CPU, load, rustc, opt level).
pub fn show_context() {
    Context::now().show();
}

/// CPUs this process may use (`std::thread::available_parallelism`; 1 under `taskset -c 0`).
pub fn cores() -> usize {
    std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1)
}

/// The CPU numbers in the calling thread's affinity mask (`sched_getaffinity`): where it may run.
pub fn allowed_cpus() -> Vec<usize> {
    // SAFETY: a zeroed cpu_set_t is an empty set; sched_getaffinity(0, …) fills it for this thread.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        if libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut set) != 0 {
            return Vec::new();
        }
        (0..libc::CPU_SETSIZE as usize).filter(|&c| libc::CPU_ISSET(c, &set)).collect()
    }
}

/// Restricts the calling thread (and threads it starts later) to one CPU; false if refused.
pub fn pin_to_cpu(cpu: usize) -> bool {
    // SAFETY: as in allowed_cpus; sched_setaffinity(0, …) applies to the calling thread.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu, &mut set);
        libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set) == 0
    }
}

/// The kernel's id of the calling thread (TID, as in `/proc/self/task`).
pub fn os_tid() -> u64 {
    // SAFETY: gettid takes no arguments and cannot fail.
    unsafe { libc::syscall(libc::SYS_gettid) as u64 }
}

/// One CPU cache, from `/sys/devices/system/cpu/cpuN/cache/index*`.
#[derive(Clone, Debug, PartialEq)]
pub struct Cache {
    /// 1, 2, 3 …
    pub level: u32,
    /// `Data`, `Instruction` or `Unified`.
    pub kind: String,
    pub bytes: u64,
    /// The CPUs sharing it, as the kernel lists them (e.g. `0-1`).
    pub shared_by: String,
}

/// The caches of CPU `cpu`, smallest level first (empty if the system does not say).
pub fn caches(cpu: usize) -> Vec<Cache> {
    let dir = format!("/sys/devices/system/cpu/cpu{cpu}/cache");
    let read = |p: &std::path::Path, f: &str| std::fs::read_to_string(p.join(f)).unwrap_or_default().trim().to_string();
    let entries = std::fs::read_dir(dir).into_iter().flatten().flatten();
    let mut v: Vec<Cache> = entries
        .filter(|e| e.file_name().to_string_lossy().starts_with("index"))
        .filter_map(|e| {
            let p = e.path();
            Some(Cache {
                level: read(&p, "level").parse().ok()?,
                kind: read(&p, "type"),
                bytes: parse_size(&read(&p, "size"))?,
                shared_by: read(&p, "shared_cpu_list"),
            })
        })
        .collect();
    v.sort_by(|a, b| (a.level, &a.kind).cmp(&(b.level, &b.kind)));
    v
}

/// `32K` → 32768, `1024K` → 1 MiB, `32M` → 32 MiB.
fn parse_size(s: &str) -> Option<u64> {
    let (num, mult) = match s.chars().last()? {
        'K' => (&s[..s.len() - 1], 1 << 10),
        'M' => (&s[..s.len() - 1], 1 << 20),
        'G' => (&s[..s.len() - 1], 1 << 30),
        _ => (s, 1),
    };
    num.parse::<u64>().ok().map(|n| n * mult)
}

/// How this code was compiled: `opt-level 2 · debug assertions on`.
pub fn profile() -> String {
    format!("{} · debug assertions {}", opt_level(), if cfg!(debug_assertions) { "on" } else { "off" })
}

fn online_cpus() -> usize {
    // SAFETY: sysconf only reads a system value.
    let n = unsafe { libc::sysconf(libc::_SC_NPROCESSORS_ONLN) };
    if n > 0 {
        n as usize
    } else {
        cores()
    }
}

/// CPUs busy (not idle or waiting for I/O) over `window`, from the `cpu` line of `/proc/stat`.
fn cpus_busy_now(window: std::time::Duration) -> Option<f64> {
    let before = cpu_ticks()?;
    std::thread::sleep(window);
    let after = cpu_ticks()?;
    let busy = after.0.checked_sub(before.0)?;
    let total = after.1.checked_sub(before.1)?;
    (total > 0).then(|| busy as f64 / total as f64 * online_cpus() as f64)
}

/// (busy, total) jiffies of all CPUs.
fn cpu_ticks() -> Option<(u64, u64)> {
    parse_cpu_ticks(&std::fs::read_to_string("/proc/stat").ok()?)
}

fn parse_cpu_ticks(stat: &str) -> Option<(u64, u64)> {
    let line = stat.lines().find(|l| l.starts_with("cpu "))?;
    let v: Vec<u64> = line.split_whitespace().skip(1).filter_map(|x| x.parse().ok()).collect();
    // user nice system idle iowait irq softirq steal (guest time is already in user)
    let get = |i: usize| v.get(i).copied().unwrap_or(0);
    let idle = get(3) + get(4);
    let busy = get(0) + get(1) + get(2) + get(5) + get(6) + get(7);
    Some((busy, busy + idle))
}

fn load_average() -> Option<(f64, f64)> {
    parse_loadavg(&std::fs::read_to_string("/proc/loadavg").ok()?)
}

fn parse_loadavg(s: &str) -> Option<(f64, f64)> {
    let mut it = s.split_whitespace().map(|x| x.parse().ok());
    Some((it.next()??, it.next()??))
}

fn cpu_model() -> String {
    static MODEL: OnceLock<String> = OnceLock::new();
    let read = || std::fs::read_to_string("/proc/cpuinfo").ok().and_then(|s| parse_cpu_model(&s));
    MODEL.get_or_init(|| read().unwrap_or_else(|| format!("{} CPU", std::env::consts::ARCH))).clone()
}

fn parse_cpu_model(cpuinfo: &str) -> Option<String> {
    let line = cpuinfo.lines().find(|l| ["model name", "Model", "Hardware"].iter().any(|k| l.starts_with(k)))?;
    let cleaned = line.split_once(':')?.1.replace("(R)", "").replace("(TM)", "").replace(" CPU ", " ");
    let words: Vec<&str> = cleaned.split_whitespace().collect();
    (!words.is_empty()).then(|| words.join(" "))
}

/// `rustc X.Y.Z` of the compiler that built the toolkit, else of `rustc` on the PATH, else `rustc ?`.
fn rustc_version() -> &'static str {
    static VERSION: OnceLock<String> = OnceLock::new();
    VERSION.get_or_init(|| {
        let built_with = env!("TB_RUSTC_VERSION");
        let on_path = || std::process::Command::new("rustc").arg("--version").output().ok().filter(|o| o.status.success());
        let full = if !built_with.is_empty() {
            built_with.to_string()
        } else {
            on_path().map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string()).unwrap_or_default()
        };
        short_rustc(&full)
    })
}

fn short_rustc(full: &str) -> String {
    let mut words = full.split_whitespace();
    match (words.next(), words.next()) {
        (Some("rustc"), Some(v)) => format!("rustc {v}"),
        _ => "rustc ?".to_string(),
    }
}

pub(crate) fn opt_level() -> String {
    match env!("TB_OPT_LEVEL") {
        "" => "opt-level ?".to_string(),
        level => format!("opt-level {level}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_proc_files() {
        assert_eq!(
            parse_loadavg("0.31 0.40 0.52 2/190 12345\n"),
            Some((0.31, 0.40))
        );
        assert_eq!(parse_loadavg(""), None);
        let info = "processor\t: 0\nmodel name\t: Intel(R) Xeon(R) CPU @ 2.20GHz\nflags\t: x\n";
        assert_eq!(
            parse_cpu_model(info).as_deref(),
            Some("Intel Xeon @ 2.20GHz")
        );
        assert_eq!(
            short_rustc("rustc 1.95.0 (59807616e 2026-04-14)"),
            "rustc 1.95.0"
        );
        assert_eq!(short_rustc(""), "rustc ?");
    }

    fn sample(load1: f64) -> Context {
        Context {
            cores: 2,
            online_cpus: 2,
            cpu_model: "Intel Xeon @ 2.20GHz".into(),
            load1,
            load5: 0.4,
            busy_now: None,
            rustc: "rustc 1.95.0".into(),
            opt_level: "opt-level 2".into(),
            debug_assertions: true,
        }
    }

    #[test]
    fn line_and_busy() {
        let idle = sample(0.31);
        assert_eq!(
            idle.line(),
            "2 cores · Intel Xeon @ 2.20GHz · load 0.31 / 0.40 · rustc 1.95.0 · opt-level 2 · debug assertions on"
        );
        assert!(!idle.busy());
        assert!(idle.warning().is_none());
        let busy = sample(2.5);
        assert!(busy.busy());
        assert!(busy
            .text()
            .contains("Warning: the machine is busy (load 2.50 on 2 cores)"));
        let pinned = Context {
            cores: 1,
            ..sample(0.1)
        };
        assert!(pinned.line().starts_with("1 core (of 2 online) · "));
    }

    #[test]
    fn busy_now_changes_the_line_and_the_warning() {
        let quiet_now = Context {
            busy_now: Some(0.1),
            ..sample(2.5)
        };
        assert!(quiet_now
            .line()
            .contains("load 2.50 / 0.40 · 0.1 CPUs busy now · rustc"));
        assert!(quiet_now.busy());
        let w = quiet_now.warning().unwrap();
        assert!(
            w.starts_with("Note: the load average is high (2.50 on 2 cores)"),
            "{w}"
        );
        let busy_now = Context {
            busy_now: Some(1.8),
            ..sample(2.5)
        };
        assert!(busy_now
            .warning()
            .unwrap()
            .starts_with("Warning: the machine is busy"));
        let one_taken = Context { busy_now: Some(1.0), ..sample(1.2) };
        assert!(one_taken.warning().unwrap().starts_with("Warning: other work kept 1.0 CPUs busy"), "low load, a CPU taken now");
        assert!(Context { busy_now: Some(0.3), ..sample(1.2) }.warning().is_none());
        assert_eq!(
            parse_cpu_ticks("cpu  10 1 5 100 4 1 1 0 0 0\ncpu0 1 2 3\n"),
            Some((18, 122))
        );
    }

    #[test]
    fn machine_facts() {
        assert_eq!(parse_size("32K"), Some(32768));
        assert_eq!(parse_size("32M"), Some(32 << 20));
        let cpus = allowed_cpus();
        assert_eq!(cpus.len(), cores());
        assert!(os_tid() > 0);
        let pinned = std::thread::spawn(move || (pin_to_cpu(cpus[0]), allowed_cpus(), cores())).join().unwrap();
        assert_eq!(pinned, (true, vec![allowed_cpus()[0]], 1));
        assert!(profile().starts_with("opt-level "));
    }

    #[test]
    fn now_reads_something() {
        let c = Context::now();
        assert!(c.cores >= 1);
        assert!(c.rustc.starts_with("rustc "));
        assert!(c.opt_level.starts_with("opt-level "));
        assert!(!c.line().contains('\n'));
    }
}
