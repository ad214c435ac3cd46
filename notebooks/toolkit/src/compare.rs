//! Comparing variants of one job (sequential, threads, rayon, child processes): each variant
//! returns a checksum, the variants run alternately after one warm-up call each, and one display
//! shows a table, a bar chart and the context line. Figures that cannot be right are flagged.

use std::time::Duration;

use crate::chart::{time_bars, TimeBar};
use crate::display::{show_card, table};
use crate::machine::Context;
use crate::measure::{fmt_duration, fmt_percent, time_once, Stats};

type Variant<'a> = (String, bool, Box<dyn FnMut() -> u64 + 'a>);

/// `Compare::new("sum").variant("seq", || …).variant("par", || …).run()`.
pub struct Compare<'a> {
    title: String,
    variants: Vec<Variant<'a>>,
    rounds: usize,
}

impl<'a> Compare<'a> {
    /// A comparison with no variants yet; 5 rounds by default.
    pub fn new(title: &str) -> Compare<'a> {
        Compare { title: title.to_string(), variants: Vec::new(), rounds: 5 }
    }

    /// Adds a variant returning a checksum (the same for every variant); the first is the
    /// baseline for speedups. Its CPU time is the whole process's, plus children waited for.
    pub fn variant(mut self, label: &str, f: impl FnMut() -> u64 + 'a) -> Compare<'a> {
        self.variants.push((label.to_string(), false, Box::new(f)));
        self
    }

    /// Adds a variant that runs on the calling thread only: its CPU time is that thread's.
    pub fn single(mut self, label: &str, f: impl FnMut() -> u64 + 'a) -> Compare<'a> {
        self.variants.push((label.to_string(), true, Box::new(f)));
        self
    }

    /// Number of rounds; each round runs every variant once.
    pub fn samples(mut self, n: usize) -> Compare<'a> {
        self.rounds = n.max(1);
        self
    }

    /// Measures every variant and shows the result.
    pub fn run(self) -> Comparison {
        let c = self.run_quiet();
        c.show();
        c
    }

    /// Measures every variant without showing anything.
    pub fn run_quiet(mut self) -> Comparison {
        assert!(!self.variants.is_empty(), "Compare \"{}\" has no variants", self.title);
        let context = Context::now();
        let n = self.variants.len();
        let checksums: Vec<u64> = self.variants.iter_mut().map(|v| std::hint::black_box((v.2)())).collect();
        let (mut walls, mut cpus) = (vec![Vec::new(); n], vec![Vec::new(); n]);
        let mut unstable = vec![false; n];
        for round in 0..self.rounds {
            for k in 0..n {
                let i = (round + k) % n; // rotate who goes first
                let (_, one, f) = &mut self.variants[i];
                let mut sum = 0;
                let (w, c) = time_once(&mut || sum = f(), *one);
                walls[i].push(w);
                cpus[i].push(c);
                unstable[i] |= sum != checksums[i];
            }
        }
        let stats = self
            .variants
            .iter()
            .zip(walls.into_iter().zip(cpus))
            .map(|((label, one, _), (w, c))| {
                let mut s = Stats::new(label.clone(), w, c);
                s.threads = one.then_some(1);
                s
            })
            .collect();
        Comparison { title: self.title, stats, checksums, unstable, rounds: self.rounds, context }
    }
}

/// The result of [`Compare::run`].
#[derive(Clone, Debug)]
pub struct Comparison {
    pub(crate) title: String,
    /// One per variant, in the order they were added.
    pub stats: Vec<Stats>,
    /// The checksum each variant returned in its warm-up call.
    pub checksums: Vec<u64>,
    /// True for a variant whose checksum changed between calls (a race?).
    pub(crate) unstable: Vec<bool>,
    pub rounds: usize,
    pub context: Context,
}

impl Comparison {
    /// The stats of the variant with this label (panics with the labels if unknown).
    pub fn stats(&self, label: &str) -> &Stats {
        self.stats.iter().find(|s| s.label == label).unwrap_or_else(|| {
            let labels: Vec<&str> = self.stats.iter().map(|s| s.label.as_str()).collect();
            panic!("no variant {label:?} in \"{}\"; the variants are {labels:?}", self.title)
        })
    }

    /// Median time of the variant with this label.
    pub fn median(&self, label: &str) -> Duration {
        self.stats(label).median
    }

    /// median(first variant) / median(this one).
    pub fn speedup(&self, label: &str) -> f64 {
        self.stats[0].median.as_secs_f64() / self.median(label).as_secs_f64()
    }

    /// True when every variant returned the first one's checksum, every time.
    pub fn checksums_agree(&self) -> bool {
        self.checksums.iter().all(|c| *c == self.checksums[0]) && !self.unstable.contains(&true)
    }

    /// Everything that makes these figures suspect: differing checksums, CPU/wall above what the
    /// threads or cores can give, a speedup over a one-thread baseline above the number of cores.
    fn warnings(&self) -> Vec<String> {
        let mut w = Vec::new();
        if !self.checksums_agree() {
            let bad: Vec<String> = (0..self.stats.len())
                .filter(|&i| self.checksums[i] != self.checksums[0] || self.unstable[i])
                .map(|i| format!("\"{}\"", self.stats[i].label))
                .collect();
            w.push(format!(
                "CHECKSUMS DIFFER: {} did not compute what \"{}\" did (or not the same every time)",
                bad.join(", "),
                self.stats[0].label
            ));
        }
        let cores = self.context.cores;
        w.extend(self.stats.iter().filter_map(|s| s.impossible(cores)));
        // Only against one thread doing the same work is a speedup above the core count impossible.
        let one_thread = self.stats[0].threads == Some(1);
        for s in self.stats.iter().filter(|_| one_thread) {
            let x = self.speedup(&s.label);
            if x > cores as f64 * 1.15 {
                w.push(format!(
                    "\"{}\" is {x:.1}x faster than \"{}\" on {cores} core(s): more than parallelism \
                     can explain — the two do different work, or the baseline spends time waiting",
                    s.label, self.stats[0].label
                ));
            }
        }
        w
    }

    fn rows(&self) -> Vec<Vec<String>> {
        self.stats
            .iter()
            .enumerate()
            .map(|(i, s)| {
                let mut sum = self.checksums[i].to_string();
                if self.checksums[i] != self.checksums[0] {
                    sum.push_str(" MISMATCH");
                }
                if self.unstable[i] {
                    sum.push_str(" (varies)");
                }
                let mark = if s.threads == Some(1) { " ¹" } else { "" };
                vec![
                    s.label.clone(),
                    fmt_duration(s.median),
                    fmt_duration(s.min),
                    format!("{:.2}x", self.speedup(&s.label)),
                    format!("{}{mark}", fmt_percent(s.cpu_ratio())),
                    sum,
                ]
            })
            .collect()
    }

    /// The display: title, warnings, table, bar chart, note and context line.
    pub fn show(&self) {
        let (h, t) = table(&["variant", "median", "min", "speedup", "CPU/wall", "checksum"], &self.rows());
        let bars: Vec<TimeBar> = self
            .stats
            .iter()
            .enumerate()
            .map(|(i, s)| TimeBar {
                label: s.label.clone(),
                median: s.median,
                min: Some(s.min),
                bad: self.checksums[i] != self.checksums[0] || self.unstable[i],
            })
            .collect();
        let mut note = format!(
            "{} rounds, variants alternated; speedup = median of \"{}\" / median; CPU/wall 100 % = one core busy.",
            self.rounds, self.stats[0].label
        );
        if self.stats.iter().any(|s| s.threads == Some(1)) {
            note.push_str(" ¹ one-thread variant: the CPU time of its thread only.");
        }
        show_card(&self.title, &self.warnings(), (h, t), &time_bars(&self.title, &bars), &note, &self.context);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::work::spin;

    #[test]
    fn alternates_and_reports() {
        let order = std::cell::RefCell::new(String::new());
        let c = Compare::new("order")
            .variant("a", || { order.borrow_mut().push('a'); spin(20_000) })
            .single("b", || { order.borrow_mut().push('b'); spin(20_000) })
            .samples(3)
            .run_quiet();
        assert_eq!(*order.borrow(), "ababbaab", "warm-ups, then rounds rotate");
        assert!(c.checksums_agree());
        assert_eq!(c.speedup("a"), 1.0);
        assert_eq!(c.stats("b").threads, Some(1));
    }

    #[test]
    fn mismatches_and_races_are_loud() {
        let mut calls = 0u64;
        let c = Compare::new("m")
            .variant("right", || 42)
            .variant("wrong", || 41)
            .variant("racy", move || { calls += 1; 42 + calls / 3 })
            .samples(5)
            .run_quiet();
        assert!(!c.checksums_agree());
        assert!(c.warnings()[0].starts_with("CHECKSUMS DIFFER: \"wrong\", \"racy\""));
        let rows = c.rows();
        assert_eq!(rows[1][5], "41 MISMATCH");
        assert_eq!(rows[2][5], "42 (varies)");
    }

    #[test]
    fn a_speedup_above_the_cores_is_flagged_against_one_thread_only() {
        let c = Compare::new("s")
            .single("slow", || { std::thread::sleep(Duration::from_millis(40)); 1 })
            .variant("fast", || 1)
            .samples(2)
            .run_quiet();
        assert!(c.warnings().iter().any(|w| w.contains("more than parallelism can explain")), "{:?}", c.warnings());
        let two_ways = Compare::new("s")
            .variant("lock", || { std::thread::sleep(Duration::from_millis(40)); 1 })
            .variant("atomic", || 1)
            .samples(2)
            .run_quiet();
        let speedups: Vec<String> = two_ways.warnings().into_iter().filter(|w| w.contains("more than parallelism")).collect();
        assert!(speedups.is_empty(), "two ways of doing it, no one-thread baseline: {speedups:?}");
    }

    #[test]
    #[should_panic(expected = "no variant \"nope\"")]
    fn unknown_label_panics_clearly() {
        Compare::new("t").variant("a", || 1).samples(1).run_quiet().speedup("nope");
    }
}
