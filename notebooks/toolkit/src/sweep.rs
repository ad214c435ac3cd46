//! Speedup against the number of threads: the same job with 1, 2, … threads, charted beside the
//! ideal line and Amdahl's law; and rayon pools of a chosen size.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use rayon::ThreadPool;

use crate::chart::{fmt_fraction, speedup_chart};
use crate::display::{show_card, table};
use crate::machine::Context;
use crate::measure::{fmt_duration, fmt_percent, time_once, Stats};

/// Amdahl's law: speedup on `n` processors when a fraction `p` of the work runs in parallel,
/// S(n) = 1 / ((1 − p) + p / n).
pub fn amdahl(p: f64, n: f64) -> f64 {
    1.0 / ((1.0 - p) + p / n)
}

/// A rayon pool of `n` threads named `pool{n}-{i}`, started once and reused for that size.
pub fn pool(n: usize) -> Arc<ThreadPool> {
    static POOLS: OnceLock<Mutex<HashMap<usize, Arc<ThreadPool>>>> = OnceLock::new();
    let n = n.max(1);
    let mut pools = POOLS.get_or_init(Default::default).lock().unwrap_or_else(|p| p.into_inner());
    let build = || rayon::ThreadPoolBuilder::new().num_threads(n).thread_name(move |i| format!("pool{n}-{i}")).build();
    let start = || Arc::new(build().unwrap_or_else(|e| panic!("could not start a pool of {n} threads: {e}")));
    pools.entry(n).or_insert_with(start).clone()
}

/// Runs `f` in a rayon pool of `n` threads: `par_iter` inside `f` uses those threads.
pub fn with_pool<R: Send>(n: usize, f: impl FnOnce() -> R + Send) -> R {
    pool(n).install(f)
}

/// `Sweep::new("sum").serial_fraction(0.1).run(|t| with_pool(t, || …))`.
#[derive(Clone, Debug)]
pub struct Sweep {
    title: String,
    threads: Vec<usize>,
    serial_fraction: Option<f64>,
    rounds: usize,
}

impl Sweep {
    /// Thread counts 1..=2×cores, no Amdahl curve, 5 rounds.
    pub fn new(title: &str) -> Sweep {
        Sweep { title: title.to_string(), threads: (1..=2 * crate::cores()).collect(), serial_fraction: None, rounds: 5 }
    }

    /// The thread counts to measure (sorted, 0 dropped).
    pub fn threads(mut self, counts: impl IntoIterator<Item = usize>) -> Sweep {
        let mut t: Vec<usize> = counts.into_iter().filter(|&n| n > 0).collect();
        t.sort_unstable();
        t.dedup();
        self.threads = t;
        self
    }

    /// Draw Amdahl's curve for this serial fraction (e.g. 0.1).
    pub fn serial_fraction(mut self, s: f64) -> Sweep {
        self.serial_fraction = Some(s.clamp(0.0, 1.0));
        self
    }

    /// Number of rounds; each round measures every thread count once.
    pub fn samples(mut self, n: usize) -> Sweep {
        self.rounds = n.max(1);
        self
    }

    /// Measures and shows the chart and table.
    pub fn run(self, f: impl FnMut(usize) -> u64) -> SweepResult {
        let r = self.run_quiet(f);
        r.show();
        r
    }

    /// Calls `f(threads)` for every count, round-robin, after one warm-up call each; `f` returns
    /// a checksum that must not depend on the thread count.
    pub fn run_quiet(self, mut f: impl FnMut(usize) -> u64) -> SweepResult {
        assert!(!self.threads.is_empty(), "Sweep \"{}\" has no thread counts", self.title);
        let context = Context::now();
        let n = self.threads.len();
        let checksums: Vec<u64> = self.threads.iter().map(|&t| std::hint::black_box(f(t))).collect();
        let (mut walls, mut cpus) = (vec![Vec::new(); n], vec![Vec::new(); n]);
        let mut stable = vec![true; n];
        for round in 0..self.rounds {
            for k in 0..n {
                let i = (round + k) % n;
                let t = self.threads[i];
                let mut sum = 0;
                let (w, c) = time_once(&mut || sum = f(t), false);
                walls[i].push(w);
                cpus[i].push(c);
                stable[i] &= sum == checksums[i];
            }
        }
        let points = self
            .threads
            .iter()
            .zip(walls.into_iter().zip(cpus))
            .zip(checksums.iter().zip(stable))
            .map(|((&threads, (w, c)), (&checksum, stable))| {
                let mut stats = Stats::new(format!("{threads} threads"), w, c);
                stats.threads = Some(threads);
                SweepPoint { threads, stats, checksum, stable }
            })
            .collect();
        SweepResult { title: self.title, points, serial_fraction: self.serial_fraction, rounds: self.rounds, context }
    }
}

/// One thread count of a sweep.
#[derive(Clone, Debug)]
pub struct SweepPoint {
    pub threads: usize,
    pub stats: Stats,
    pub(crate) checksum: u64,
    /// False if the checksum changed between calls.
    pub(crate) stable: bool,
}

/// The result of [`Sweep::run`].
#[derive(Clone, Debug)]
pub struct SweepResult {
    pub(crate) title: String,
    /// One point per thread count, ascending.
    pub points: Vec<SweepPoint>,
    pub(crate) serial_fraction: Option<f64>,
    pub(crate) rounds: usize,
    pub context: Context,
}

impl SweepResult {
    fn point(&self, threads: usize) -> &SweepPoint {
        self.points.iter().find(|p| p.threads == threads).unwrap_or_else(|| {
            let counts: Vec<usize> = self.points.iter().map(|p| p.threads).collect();
            panic!("{threads} threads were not measured in \"{}\"; measured: {counts:?}", self.title)
        })
    }

    /// Median time with this many threads.
    pub fn median(&self, threads: usize) -> Duration {
        self.point(threads).stats.median
    }

    /// median(fewest threads measured) / median(threads).
    pub fn speedup(&self, threads: usize) -> f64 {
        self.points[0].stats.median.as_secs_f64() / self.median(threads).as_secs_f64()
    }

    /// (threads, speedup) for every count.
    pub fn speedups(&self) -> Vec<(usize, f64)> {
        self.points.iter().map(|p| (p.threads, self.speedup(p.threads))).collect()
    }

    /// Checksums differing between counts, CPU/wall or speedups that threads and cores cannot give.
    fn warnings(&self) -> Vec<String> {
        let mut w = Vec::new();
        let first = self.points[0].checksum;
        if !self.points.iter().all(|p| p.checksum == first && p.stable) {
            w.push("CHECKSUMS DIFFER between thread counts: the runs did not compute the same result".into());
        }
        let cores = self.context.cores;
        w.extend(self.points.iter().filter_map(|p| p.stats.impossible(cores)));
        let base = self.points[0].threads as f64;
        for (t, s) in self.speedups() {
            if s > (t.min(cores) as f64 / base) * 1.15 {
                w.push(format!("{t} threads: speedup {s:.2}x is more than {t} thread(s) on {cores} core(s) can give"));
            }
        }
        w
    }

    /// The chart (SVG): measured speedup, ideal line, Amdahl's curve if a serial fraction is set.
    fn chart(&self) -> String {
        speedup_chart(&self.title, &self.speedups(), self.serial_fraction, self.context.cores)
    }

    /// The table as `(html, text)`.
    pub fn table(&self) -> (String, String) {
        let base = self.points[0].threads as f64;
        let mut headers = vec!["threads", "median", "min", "speedup", "ideal"];
        if self.serial_fraction.is_some() {
            headers.push("Amdahl");
        }
        headers.push("CPU/wall");
        let rows: Vec<Vec<String>> = self
            .points
            .iter()
            .map(|p| {
                let (median, min) = (fmt_duration(p.stats.median), fmt_duration(p.stats.min));
                let (speedup, ideal) = (format!("{:.2}x", self.speedup(p.threads)), format!("{:.2}x", p.threads as f64 / base));
                let mut row = vec![p.threads.to_string(), median, min, speedup, ideal];
                if let Some(f) = self.serial_fraction {
                    row.push(format!("{:.2}x", amdahl(1.0 - f, p.threads as f64) / amdahl(1.0 - f, base)));
                }
                row.push(fmt_percent(p.stats.cpu_ratio()));
                row
            })
            .collect();
        table(&headers, &rows)
    }

    /// Shows chart, warnings, table, note and context line.
    pub fn show(&self) {
        let (h, t) = self.table();
        let mut note = format!("{} rounds, thread counts alternated.", self.rounds);
        if let Some(f) = self.serial_fraction {
            note.push_str(&format!(" Amdahl: S(N) = 1/((1−p)+p/N) with serial fraction {}.", fmt_fraction(f)));
        }
        show_card(&self.title, &self.warnings(), (h, t), &self.chart(), &note, &self.context);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rayon::prelude::*;

    #[test]
    fn amdahl_values() {
        assert!((amdahl(0.9, 2.0) - 1.0 / 0.55).abs() < 1e-12);
        assert!((amdahl(0.9, 1e12) - 10.0).abs() < 1e-6);
        assert_eq!(amdahl(1.0, 4.0), 4.0);
    }

    #[test]
    fn pools_have_their_size_and_are_reused() {
        assert_eq!(with_pool(3, rayon::current_num_threads), 3);
        let name = with_pool(2, || std::thread::current().name().map(String::from)).unwrap_or_default();
        assert!(name.starts_with("pool2-"), "{name}");
        assert!(Arc::ptr_eq(&pool(3), &pool(3)));
    }

    #[test]
    fn sweep_measures_every_count() {
        let mut seen = Vec::new();
        let r = Sweep::new("s").threads(vec![2, 1, 2, 0]).serial_fraction(0.1).samples(2).run_quiet(|t| {
            seen.push(t);
            with_pool(t, || (0..10_000u64).into_par_iter().map(|i| i * i).sum())
        });
        assert_eq!(seen, vec![1, 2, 1, 2, 2, 1]);
        assert_eq!(r.speedup(1), 1.0);
        assert_eq!(r.points[1].stats.threads, Some(2));
        let (_, text) = r.table();
        assert!(text.lines().nth(3).unwrap().contains("1.82x"), "{text}");
        assert!(r.chart().contains("<svg"));
        let bad = Sweep::new("bad").threads(1..=2).samples(1).run_quiet(|t| t as u64);
        assert!(bad.warnings()[0].starts_with("CHECKSUMS DIFFER"));
    }
}
