//! Measuring: CPU time (`clock_gettime`, and `getrusage` for children), context switches
//! (`getrusage`), and timing a piece of code.
//!
//! CPU time larger than wall time proves that several cores worked at once. Take the CPU time of
//! the thread (`thread_cpu_time`) for one-thread code: the process's CPU time also counts other
//! threads, e.g. rayon's workers still spinning after the previous job.

use std::time::{Duration, Instant};


fn rusage(who: libc::c_int) -> libc::rusage {
    // SAFETY: getrusage fills the zeroed struct we pass; it fails only for an invalid `who`.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    unsafe { libc::getrusage(who, &mut usage) };
    usage
}

fn cpu_of(u: &libc::rusage) -> Duration {
    let tv = |t: libc::timeval| Duration::new(t.tv_sec as u64, (t.tv_usec as u32) * 1_000);
    tv(u.ru_utime) + tv(u.ru_stime)
}

fn clock(id: libc::clockid_t) -> Duration {
    // SAFETY: clock_gettime fills the timespec we pass; these clocks always exist on Linux.
    let mut t: libc::timespec = unsafe { std::mem::zeroed() };
    unsafe { libc::clock_gettime(id, &mut t) };
    Duration::new(t.tv_sec as u64, t.tv_nsec as u32)
}

/// CPU time used so far by all threads of this process (`CLOCK_PROCESS_CPUTIME_ID`, in ns).
pub fn cpu_time() -> Duration {
    clock(libc::CLOCK_PROCESS_CPUTIME_ID)
}

/// CPU time used by children that have ended *and been waited for*; a running child is not in it.
pub fn children_cpu_time() -> Duration {
    cpu_of(&rusage(libc::RUSAGE_CHILDREN))
}

/// CPU time used so far by the calling thread (`CLOCK_THREAD_CPUTIME_ID`, in ns).
pub fn thread_cpu_time() -> Duration {
    clock(libc::CLOCK_THREAD_CPUTIME_ID)
}

/// Context switches: voluntary (the thread waited: a lock, a sleep, I/O) and involuntary (the
/// scheduler took the core away to run someone else).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Switches {
    pub voluntary: u64,
    pub involuntary: u64,
}

impl std::ops::Sub for Switches {
    type Output = Switches;
    fn sub(self, o: Switches) -> Switches {
        Switches {
            voluntary: self.voluntary.saturating_sub(o.voluntary),
            involuntary: self.involuntary.saturating_sub(o.involuntary),
        }
    }
}

impl std::ops::Add for Switches {
    type Output = Switches;
    fn add(self, o: Switches) -> Switches {
        Switches { voluntary: self.voluntary + o.voluntary, involuntary: self.involuntary + o.involuntary }
    }
}

fn switches_of(u: &libc::rusage) -> Switches {
    Switches { voluntary: u.ru_nvcsw as u64, involuntary: u.ru_nivcsw as u64 }
}

/// Context switches of the calling thread so far.
pub fn thread_context_switches() -> Switches {
    switches_of(&rusage(libc::RUSAGE_THREAD))
}

/// Waits (at most 200 ms) until this process stops using CPU — rayon's workers spin for a while
/// after a job — so the next measurement does not count them. Returns how long it waited.
pub(crate) fn settle() -> Duration {
    let t0 = Instant::now();
    while t0.elapsed() < Duration::from_millis(200) {
        let c0 = cpu_time();
        std::thread::sleep(Duration::from_millis(2));
        if cpu_time() - c0 < Duration::from_micros(400) {
            break;
        }
    }
    t0.elapsed()
}

/// Wall-time samples of one piece of code with the CPU time of each, summarised.
#[derive(Clone, Debug)]
pub struct Stats {
    pub label: String,
    pub median: Duration,
    pub min: Duration,
    /// Median CPU time of a sample (zero if not measured).
    pub cpu: Duration,
    /// Threads the code was declared to use (1 for a `single` variant), if known.
    pub threads: Option<usize>,
}

/// Median of durations (mean of the two middle ones for an even count); zero if empty.
fn median(samples: &[Duration]) -> Duration {
    let mut s = samples.to_vec();
    s.sort();
    match s.len() {
        0 => Duration::ZERO,
        n if n % 2 == 1 => s[n / 2],
        n => (s[n / 2 - 1] + s[n / 2]) / 2,
    }
}

impl Stats {
    /// Summarises wall-time samples and the CPU time of each.
    pub(crate) fn new(label: impl Into<String>, samples: Vec<Duration>, cpu_samples: Vec<Duration>) -> Stats {
        Stats {
            label: label.into(),
            median: median(&samples),
            min: samples.iter().min().copied().unwrap_or_default(),
            cpu: median(&cpu_samples),
            threads: None,
        }
    }

    /// CPU time / wall time at the median: 1.9 means two cores busy 95 % of the time.
    pub fn cpu_ratio(&self) -> f64 {
        let wall = self.median.as_secs_f64();
        if wall > 0.0 { self.cpu.as_secs_f64() / wall } else { 0.0 }
    }

    /// Why these figures cannot be right, if they cannot: CPU/wall above 100 % per thread used
    /// (or per core), which no measurement of this code alone can give.
    pub(crate) fn impossible(&self, cores: usize) -> Option<String> {
        let limit = self.threads.unwrap_or(cores).min(cores).max(1);
        let ratio = self.cpu_ratio();
        (ratio > limit as f64 * 1.1).then(|| {
            format!(
                "\"{}\": CPU/wall {:.0} % is above {} % ({} {}): something else was counted",
                self.label,
                ratio * 100.0,
                limit * 100,
                limit,
                if self.threads.is_some_and(|t| t <= cores) { "thread(s)" } else { "cores" }
            )
        })
    }
}

/// Times one piece of code: `Bench::new("x").samples(10).run(|| work())` (one warm-up call first).
#[derive(Clone, Debug)]
pub struct Bench {
    label: String,
    samples: usize,
    one_thread: bool,
}

impl Bench {
    /// 10 samples after one warm-up call, CPU time of the whole process.
    pub fn new(label: &str) -> Bench {
        Bench { label: label.to_string(), samples: 10, one_thread: false }
    }

    /// Number of samples (at least 1).
    pub fn samples(mut self, n: usize) -> Bench {
        self.samples = n.max(1);
        self
    }

    /// The code runs on the calling thread only: count that thread's CPU time.
    pub fn one_thread(mut self) -> Bench {
        self.one_thread = true;
        self
    }

    /// Runs the warm-up and the samples and returns the [`Stats`].
    pub fn run<T>(&self, mut f: impl FnMut() -> T) -> Stats {
        black_box_call(&mut f);
        let (mut walls, mut cpus) = (Vec::new(), Vec::new());
        for _ in 0..self.samples {
            let (w, c) = time_once(&mut f, self.one_thread);
            walls.push(w);
            cpus.push(c);
        }
        let mut s = Stats::new(self.label.clone(), walls, cpus);
        if self.one_thread {
            s.threads = Some(1);
        }
        s
    }
}

fn black_box_call<T>(f: &mut impl FnMut() -> T) -> T {
    std::hint::black_box(f())
}

/// One sample after the process has settled: (wall, CPU). CPU is the calling thread's if
/// `one_thread`, else the process's plus that of children waited for meanwhile.
pub(crate) fn time_once<T>(f: &mut impl FnMut() -> T, one_thread: bool) -> (Duration, Duration) {
    settle();
    let cpu = || if one_thread { thread_cpu_time() } else { cpu_time() + children_cpu_time() };
    let c0 = cpu();
    let t0 = Instant::now();
    black_box_call(f);
    let wall = t0.elapsed();
    (wall, cpu().saturating_sub(c0))
}

/// A duration with three significant digits: `85.0 ns`, `450 µs`, `12.3 ms`, `1.23 s`.
pub fn fmt_duration(d: Duration) -> String {
    let ns = d.as_secs_f64() * 1e9;
    let (v, unit) = match ns {
        x if x < 1e3 => (x, "ns"),
        x if x < 1e6 => (x / 1e3, "µs"),
        x if x < 1e9 => (x / 1e6, "ms"),
        x => (x / 1e9, "s"),
    };
    format!("{} {unit}", sig3(v))
}

/// Three significant digits, no exponent: 1.23, 12.3, 123.
pub(crate) fn sig3(v: f64) -> String {
    match v.abs() {
        a if a >= 100.0 || a == 0.0 => format!("{v:.0}"),
        a if a >= 10.0 => format!("{v:.1}"),
        _ => format!("{v:.2}"),
    }
}

/// 1.9 → `190 %`.
pub(crate) fn fmt_percent(x: f64) -> String {
    if x.is_finite() { format!("{:.0} %", x * 100.0) } else { "?".into() }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(v: &[u64]) -> Vec<Duration> {
        v.iter().map(|&m| Duration::from_millis(m)).collect()
    }

    #[test]
    fn stats_summarise() {
        let s = Stats::new("x", ms(&[5, 1, 9, 3, 7]), ms(&[10, 2, 18, 6, 14]));
        assert_eq!((s.min, s.median), (ms(&[1])[0], ms(&[5])[0]));
        assert!((s.cpu_ratio() - 2.0).abs() < 1e-9);
        assert_eq!(Stats::new("e", ms(&[10, 2, 4, 100]), vec![]).median, Duration::from_millis(7));
        assert_eq!(Stats::new("none", vec![], vec![]).cpu_ratio(), 0.0);
    }

    #[test]
    fn impossible_figures_are_named() {
        let mut one = Stats::new("iter", ms(&[10]), ms(&[21]));
        assert!(one.impossible(2).is_none(), "two cores can give 200 %");
        one.threads = Some(1);
        let why = one.impossible(2).unwrap();
        assert!(why.contains("210 %") && why.contains("above 100 %"), "{why}");
        assert!(Stats::new("p", ms(&[10]), ms(&[35])).impossible(2).is_some());
    }

    #[test]
    fn formatting() {
        assert_eq!(fmt_duration(Duration::from_nanos(85)), "85.0 ns");
        assert_eq!(fmt_duration(Duration::from_micros(450)), "450 µs");
        assert_eq!(fmt_duration(Duration::from_micros(12_345)), "12.3 ms");
        assert_eq!(fmt_duration(Duration::from_millis(1_234)), "1.23 s");
        assert_eq!(fmt_percent(1.9), "190 %");
    }

    #[test]
    fn one_thread_cpu_ignores_other_threads() {
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let spinner = {
            let stop = stop.clone();
            std::thread::spawn(move || {
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    std::hint::spin_loop();
                }
            })
        };
        let s = Bench::new("sleep").samples(3).one_thread().run(|| std::thread::sleep(Duration::from_millis(20)));
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        spinner.join().unwrap();
        assert!(s.cpu_ratio() < 0.5, "the spinning thread is not counted: {}", s.cpu_ratio());
        assert_eq!(s.threads, Some(1));
    }

    #[test]
    fn thread_counters_move() {
        let (c0, s0) = (thread_cpu_time(), thread_context_switches());
        std::thread::sleep(Duration::from_millis(5));
        let t0 = Instant::now();
        while thread_cpu_time() - c0 < Duration::from_millis(20) {
            assert!(t0.elapsed() < Duration::from_secs(20));
            std::hint::black_box(crate::work::spin(10_000));
        }
        assert!((thread_context_switches() - s0).voluntary >= 1, "the sleep is a voluntary switch");
        assert!(cpu_time() >= thread_cpu_time());
    }
}
