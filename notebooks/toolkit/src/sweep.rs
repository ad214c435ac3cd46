//! Speedup against the number of threads: run the same job with 1, 2, … threads, chart the
//! measured speedup beside the ideal line and Amdahl's law, and rayon pools of a given size.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use rayon::ThreadPool;

use crate::bench::measure;
use crate::chart::{fmt_fraction, speedup_chart};
use crate::context::Context;
use crate::display::{display, table};
use crate::stats::{fmt_duration, fmt_percent, fmt_speedup, Stats};

/// Amdahl's law: the speedup on `n` processors when a fraction `p` of the work can run in
/// parallel, S(n) = 1 / ((1 − p) + p / n). With p = 0.9: 1.82 on 2 cores, never more than 10.
pub fn amdahl(p: f64, n: f64) -> f64 {
    1.0 / ((1.0 - p) + p / n)
}

/// A rayon thread pool with `n` threads (at least 1), threads named `pool{n}-{i}`.
///
/// Pools are kept and reused per size, so starting the threads is paid once, in the warm-up,
/// not in every measurement. (Idle pool threads sleep and use no CPU; if more than 1024 pool
/// threads would be kept, the kept pools are released first.)
pub fn pool(n: usize) -> Arc<ThreadPool> {
    static POOLS: OnceLock<Mutex<HashMap<usize, Arc<ThreadPool>>>> = OnceLock::new();
    let n = n.max(1);
    let mut pools = POOLS
        .get_or_init(Default::default)
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    if let Some(p) = pools.get(&n) {
        return p.clone();
    }
    if pools.keys().sum::<usize>() + n > 1024 {
        pools.clear();
    }
    let p = Arc::new(
        rayon::ThreadPoolBuilder::new()
            .num_threads(n)
            .thread_name(move |i| format!("pool{n}-{i}"))
            .build()
            .unwrap_or_else(|e| panic!("could not start a rayon pool of {n} threads: {e}")),
    );
    pools.insert(n, p.clone());
    p
}

/// Runs `f` inside a rayon pool of `n` threads: `par_iter` and `rayon::join` in `f` use
/// those `n` threads instead of the global pool.
pub fn with_pool<R: Send>(n: usize, f: impl FnOnce() -> R + Send) -> R {
    pool(n).install(f)
}

/// A sweep being set up: `Sweep::new("sum").serial_fraction(0.1).run(|t| with_pool(t, || …))`.
#[derive(Clone, Debug)]
pub struct Sweep {
    title: String,
    threads: Vec<usize>,
    serial_fraction: Option<f64>,
    warmup: usize,
    min_rounds: usize,
    max_rounds: usize,
    budget: Duration,
    show: bool,
}

impl Sweep {
    /// Defaults: thread counts 1..=2×cores, no Amdahl curve, 1 warm-up per count, rounds until
    /// about 0.5 s per thread count (at least 5, at most 30).
    pub fn new(title: &str) -> Sweep {
        Sweep {
            title: title.to_string(),
            threads: (1..=2 * crate::cores()).collect(),
            serial_fraction: None,
            warmup: 1,
            min_rounds: 5,
            max_rounds: 30,
            budget: Duration::from_millis(500),
            show: true,
        }
    }

    /// The thread counts to measure, e.g. `1..=8` or `vec![1, 2, 4, 8]` (sorted, 0 dropped).
    pub fn threads(mut self, counts: impl IntoIterator<Item = usize>) -> Sweep {
        let mut t: Vec<usize> = counts.into_iter().filter(|&n| n > 0).collect();
        t.sort_unstable();
        t.dedup();
        self.threads = t;
        self
    }

    /// Draw Amdahl's curve for this serial fraction (e.g. `0.1` or `Some(0.1)`; `None` for none).
    pub fn serial_fraction(mut self, s: impl Into<Option<f64>>) -> Sweep {
        self.serial_fraction = s.into().map(|s| s.clamp(0.0, 1.0));
        self
    }

    /// Exactly `n` rounds (each round measures every thread count once).
    pub fn samples(mut self, n: usize) -> Sweep {
        self.min_rounds = n.max(1);
        self.max_rounds = n.max(1);
        self
    }

    /// Untimed calls per thread count before measuring.
    pub fn warmup(mut self, n: usize) -> Sweep {
        self.warmup = n;
        self
    }

    /// Time budget per thread count.
    pub fn budget(mut self, per_count: Duration) -> Sweep {
        self.budget = per_count;
        self
    }

    /// Do not display the result.
    pub fn no_show(mut self) -> Sweep {
        self.show = false;
        self
    }

    /// Measures without displaying.
    pub fn run_quiet(self, f: impl FnMut(usize) -> u64) -> SweepResult {
        self.no_show().run(f)
    }

    /// Calls `f(threads)` for every thread count, round-robin, and (unless `no_show`) displays
    /// the chart and table. `f` returns a checksum, which must not depend on the thread count.
    pub fn run(self, mut f: impl FnMut(usize) -> u64) -> SweepResult {
        assert!(
            !self.threads.is_empty(),
            "Sweep \"{}\" has no thread counts",
            self.title
        );
        let context = Context::now();
        let n = self.threads.len();
        let mut checksums = Vec::with_capacity(n);
        for &t in &self.threads {
            let mut sum = std::hint::black_box(f(t));
            for _ in 1..self.warmup {
                sum = std::hint::black_box(f(t));
            }
            checksums.push(sum);
        }
        let mut walls = vec![Vec::new(); n];
        let mut cpus = vec![Vec::new(); n];
        let mut stable = vec![true; n];
        let started = Instant::now();
        let total_budget = self.budget * n as u32;
        let mut round = 0;
        while round < self.max_rounds
            && (round < self.min_rounds || started.elapsed() < total_budget)
        {
            for k in 0..n {
                let i = (round + k) % n;
                let t = self.threads[i];
                let (wall, cpu, sum) = measure(&mut || f(t), 1);
                walls[i].push(wall);
                cpus[i].push(cpu);
                stable[i] &= sum == checksums[i];
            }
            round += 1;
        }
        let points = self
            .threads
            .iter()
            .zip(walls.into_iter().zip(cpus))
            .zip(checksums.iter().zip(stable))
            .map(|((&threads, (w, c)), (&checksum, stable))| {
                let mut stats = Stats::with_cpu(format!("{threads} threads"), w, c);
                stats.context = Some(context.clone());
                SweepPoint {
                    threads,
                    stats,
                    checksum,
                    stable,
                }
            })
            .collect();
        let result = SweepResult {
            title: self.title,
            points,
            serial_fraction: self.serial_fraction,
            rounds: round,
            context,
        };
        if self.show {
            result.show();
        }
        result
    }
}

/// One thread count of a sweep.
#[derive(Clone, Debug)]
pub struct SweepPoint {
    pub threads: usize,
    pub stats: Stats,
    /// Checksum returned in the warm-up call.
    pub checksum: u64,
    /// False if the checksum changed between calls.
    pub stable: bool,
}

/// The result of [`Sweep::run`].
#[derive(Clone, Debug)]
pub struct SweepResult {
    pub title: String,
    /// One point per thread count, ascending.
    pub points: Vec<SweepPoint>,
    pub serial_fraction: Option<f64>,
    /// Rounds measured.
    pub rounds: usize,
    /// The machine, captured before measuring.
    pub context: Context,
}

impl SweepResult {
    /// The point speedups are measured against: 1 thread if measured, else the fewest threads.
    pub fn baseline(&self) -> &SweepPoint {
        self.points
            .iter()
            .find(|p| p.threads == 1)
            .unwrap_or(&self.points[0])
    }

    fn point(&self, threads: usize) -> &SweepPoint {
        self.points
            .iter()
            .find(|p| p.threads == threads)
            .unwrap_or_else(|| {
                let counts: Vec<usize> = self.points.iter().map(|p| p.threads).collect();
                panic!(
                    "{threads} threads were not measured in \"{}\"; measured: {counts:?}",
                    self.title
                )
            })
    }

    /// Median time with this many threads.
    pub fn median(&self, threads: usize) -> Duration {
        self.point(threads).stats.median
    }

    /// Speedup with this many threads: median(baseline) / median(threads).
    pub fn speedup(&self, threads: usize) -> f64 {
        self.baseline().stats.median.as_secs_f64() / self.median(threads).as_secs_f64()
    }

    /// The stats for this many threads.
    pub fn stats(&self, threads: usize) -> &Stats {
        &self.point(threads).stats
    }

    /// (threads, speedup) for every measured count.
    pub fn speedups(&self) -> Vec<(usize, f64)> {
        self.points
            .iter()
            .map(|p| (p.threads, self.speedup(p.threads)))
            .collect()
    }

    /// True when every thread count returned the same checksum, every time.
    pub fn checksums_agree(&self) -> bool {
        let first = self.points[0].checksum;
        self.points.iter().all(|p| p.checksum == first && p.stable)
    }

    /// The chart (SVG): measured speedup, ideal line, Amdahl's curve if a serial fraction is set.
    pub fn chart(&self) -> String {
        speedup_chart(
            &self.title,
            &self.speedups(),
            self.serial_fraction,
            self.context.cores,
        )
    }

    /// The table as `(html, text)`.
    pub fn table(&self) -> (String, String) {
        let base = self.baseline().threads;
        let agree = self.checksums_agree();
        let mut headers = vec!["threads", "median", "min", "speedup", "ideal"];
        if self.serial_fraction.is_some() {
            headers.push("Amdahl");
        }
        headers.extend(["efficiency", "CPU/wall"]);
        if !agree {
            headers.push("checksum");
        }
        let rows: Vec<Vec<String>> = self
            .points
            .iter()
            .map(|p| {
                let s = self.speedup(p.threads);
                let ideal = p.threads as f64 / base as f64;
                let mut row = vec![
                    p.threads.to_string(),
                    fmt_duration(p.stats.median),
                    fmt_duration(p.stats.min),
                    fmt_speedup(s),
                    fmt_speedup(ideal),
                ];
                if let Some(f) = self.serial_fraction {
                    let a = amdahl(1.0 - f, p.threads as f64) / amdahl(1.0 - f, base as f64);
                    row.push(fmt_speedup(a));
                }
                row.push(fmt_percent(s / ideal));
                row.push(fmt_percent(p.stats.cpu_ratio()));
                if !agree {
                    let mut c = p.checksum.to_string();
                    if p.checksum != self.points[0].checksum {
                        c.push_str(" MISMATCH");
                    }
                    if !p.stable {
                        c.push_str(" (varies)");
                    }
                    row.push(c);
                }
                row
            })
            .collect();
        table(&headers, &rows)
    }

    fn note(&self) -> String {
        let mut s = format!(
            "{} rounds, thread counts alternated; speedup = median with {} thread{} / median; \
             efficiency = speedup / ideal.",
            self.rounds,
            self.baseline().threads,
            if self.baseline().threads == 1 {
                ""
            } else {
                "s"
            }
        );
        if let Some(f) = self.serial_fraction {
            s.push_str(&format!(
                " Amdahl: S(N) = 1/((1−p)+p/N) with serial fraction {} (p = {}).",
                fmt_fraction(f),
                crate::stats::sig3(1.0 - f)
            ));
        }
        s
    }

    /// The display bundle (text and HTML with the chart inline).
    pub fn render(&self) -> Vec<(&'static str, String)> {
        let warning = (!self.checksums_agree()).then(|| {
            "CHECKSUMS DIFFER between thread counts: the runs did not compute the same result.".to_owned()
        });
        crate::display::Card {
            class: "tb-sweep",
            title: &self.title,
            warning,
            table: self.table(),
            chart: self.chart(),
            chart_first: true,
            note: self.note(),
            context: &self.context,
        }
        .render()
    }

    /// Displays the sweep.
    pub fn show(&self) {
        display(&self.render());
    }
}

/// The text version of the display: title, table, note and context.
impl std::fmt::Display for SweepResult {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let bundle = self.render();
        f.write_str(&bundle[0].1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::chart::tests::{check_xml, series_lines};
    use rayon::prelude::*;

    #[test]
    fn amdahl_values() {
        assert!((amdahl(0.9, 2.0) - 1.0 / 0.55).abs() < 1e-12);
        assert!((amdahl(0.9, 1e12) - 10.0).abs() < 1e-6);
        assert_eq!(amdahl(1.0, 4.0), 4.0);
        assert_eq!(amdahl(0.0, 4.0), 1.0);
    }

    #[test]
    fn with_pool_uses_that_many_threads() {
        assert_eq!(with_pool(3, rayon::current_num_threads), 3);
        let name = with_pool(2, || std::thread::current().name().map(String::from));
        assert!(name.unwrap_or_default().starts_with("pool2-"));
        assert!(Arc::ptr_eq(&pool(3), &pool(3)), "pools are reused");
        let sum: u64 = with_pool(2, || (0..1000u64).into_par_iter().sum());
        assert_eq!(sum, 499_500);
    }

    #[test]
    fn sweep_measures_each_count_and_charts_three_lines() {
        let mut seen = Vec::new();
        let r = Sweep::new("sweep")
            .threads(vec![2, 1, 2, 0])
            .serial_fraction(0.1)
            .samples(2)
            .run_quiet(|t| {
                seen.push(t);
                with_pool(t, || (0..10_000u64).into_par_iter().map(|i| i * i).sum())
            });
        // Warm-ups 1, 2; rounds: 1 2, 2 1.
        assert_eq!(seen, vec![1, 2, 1, 2, 2, 1]);
        assert_eq!(r.points.len(), 2);
        assert!(r.checksums_agree());
        assert_eq!(r.speedup(1), 1.0);
        assert_eq!(r.baseline().threads, 1);
        let svg = r.chart();
        check_xml(&svg).expect("well-formed SVG");
        assert_eq!(series_lines(&svg).len(), 3, "ideal, Amdahl, measured");
        let (_, text) = r.table();
        let header: Vec<&str> = text.lines().next().unwrap().split_whitespace().collect();
        assert_eq!(header[..2], ["threads", "median"], "{text}");
        assert!(text.contains("Amdahl"));
        assert!(text.lines().nth(3).unwrap().contains("1.82x"), "{text}");
        let bundle = r.render();
        assert!(bundle[0].1.contains(&r.context.line()));
        assert!(bundle[1].1.contains("<svg"));
    }

    #[test]
    fn serial_fraction_accepts_plain_and_optional_values() {
        let quiet = |s: Sweep| s.threads([1]).samples(1).run_quiet(|_| 0).serial_fraction;
        assert_eq!(quiet(Sweep::new("a").serial_fraction(0.25)), Some(0.25));
        assert_eq!(quiet(Sweep::new("b").serial_fraction(Some(0.5))), Some(0.5));
        assert_eq!(quiet(Sweep::new("c").serial_fraction(None)), None);
        assert_eq!(
            Sweep::new("d").threads,
            (1..=2 * crate::cores()).collect::<Vec<_>>()
        );
    }

    #[test]
    fn speedups_are_relative_to_the_smallest_count_without_one() {
        let r = Sweep::new("from 2")
            .threads([2, 4])
            .serial_fraction(1.0)
            .samples(1)
            .run_quiet(|_| 7);
        assert_eq!(r.baseline().threads, 2);
        let (_, text) = r.table();
        let first_row = text.lines().nth(2).unwrap();
        assert!(first_row.contains("1.00x  1.00x   1.00x"), "{text}");
        let second_row = text.lines().nth(3).unwrap();
        assert!(
            second_row.contains("2.00x   1.00x"),
            "ideal 2x; all serial, so Amdahl stays 1x: {text}"
        );
    }

    #[test]
    fn sweep_without_fraction_and_mismatch() {
        let r = Sweep::new("bad")
            .threads(1..=2)
            .samples(1)
            .run_quiet(|t| t as u64);
        assert!(!r.checksums_agree());
        assert_eq!(series_lines(&r.chart()).len(), 2, "ideal, measured");
        assert!(r.table().1.contains("2 MISMATCH"));
        assert!(r.render()[0].1.contains("!!! CHECKSUMS DIFFER"));
    }
}
