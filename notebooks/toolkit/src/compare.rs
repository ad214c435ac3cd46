//! Comparing variants of one job (e.g. sequential, threads, rayon, child processes): each
//! variant returns a checksum, variants run alternately (round-robin) after a warm-up each,
//! and one display shows a table, a bar chart and the context line.

use std::time::{Duration, Instant};

use crate::bench::measure;
use crate::chart::{time_bars, TimeBar};
use crate::context::Context;
use crate::display::{display, table};
use crate::stats::{fmt_duration, fmt_percent, fmt_speedup, Stats};

/// A comparison being set up: `Compare::new("sum").variant("seq", || …).variant("par", || …).run()`.
pub struct Compare<'a> {
    title: String,
    variants: Vec<(String, Box<dyn FnMut() -> u64 + 'a>)>,
    warmup: usize,
    min_rounds: usize,
    max_rounds: usize,
    budget: Duration,
    show: bool,
}

impl<'a> Compare<'a> {
    /// A comparison with no variants yet. Defaults: 1 warm-up call per variant, then rounds
    /// until about 0.5 s per variant is spent (at least 5 rounds, at most 30).
    pub fn new(title: &str) -> Compare<'a> {
        Compare {
            title: title.to_string(),
            variants: Vec::new(),
            warmup: 1,
            min_rounds: 5,
            max_rounds: 30,
            budget: Duration::from_millis(500),
            show: true,
        }
    }

    /// Adds a variant. It must return a checksum of its result (the same for every variant),
    /// which also keeps the compiler from deleting the work. The first variant is the baseline
    /// for speedups.
    pub fn variant(mut self, label: &str, f: impl FnMut() -> u64 + 'a) -> Compare<'a> {
        self.variants.push((label.to_string(), Box::new(f)));
        self
    }

    /// Exactly `n` rounds (each round runs every variant once).
    pub fn samples(mut self, n: usize) -> Compare<'a> {
        self.min_rounds = n.max(1);
        self.max_rounds = n.max(1);
        self
    }

    /// Untimed calls of each variant before measuring.
    pub fn warmup(mut self, n: usize) -> Compare<'a> {
        self.warmup = n;
        self
    }

    /// Time budget per variant (rounds stop once it is spent, after the minimum of 5).
    pub fn budget(mut self, per_variant: Duration) -> Compare<'a> {
        self.budget = per_variant;
        self
    }

    /// Do not display the result when it is computed.
    pub fn no_show(mut self) -> Compare<'a> {
        self.show = false;
        self
    }

    /// Measures without displaying (same as `.no_show().run()`).
    pub fn run_quiet(self) -> Comparison {
        self.no_show().run()
    }

    /// Measures all variants and (unless `no_show`) displays the table and chart.
    pub fn run(mut self) -> Comparison {
        assert!(
            !self.variants.is_empty(),
            "Compare \"{}\" has no variants: add some with .variant(label, || checksum)",
            self.title
        );
        let context = Context::now();
        let n = self.variants.len();
        let mut checksums = Vec::with_capacity(n);
        for (_, f) in self.variants.iter_mut() {
            let mut sum = std::hint::black_box(f());
            for _ in 1..self.warmup {
                sum = std::hint::black_box(f());
            }
            checksums.push(sum);
        }
        let mut walls = vec![Vec::new(); n];
        let mut cpus = vec![Vec::new(); n];
        let mut unstable = vec![false; n];
        let total_budget = self.budget * n as u32;
        let started = Instant::now();
        let mut round = 0;
        while round < self.max_rounds
            && (round < self.min_rounds || started.elapsed() < total_budget)
        {
            // Rotate the starting variant each round so none always runs first.
            for k in 0..n {
                let i = (round + k) % n;
                let (wall, cpu, sum) = measure(&mut self.variants[i].1, 1);
                walls[i].push(wall);
                cpus[i].push(cpu);
                if sum != checksums[i] {
                    unstable[i] = true;
                }
            }
            round += 1;
        }
        let stats = self
            .variants
            .iter()
            .zip(walls.into_iter().zip(cpus))
            .map(|((label, _), (w, c))| {
                let mut s = Stats::with_cpu(label.clone(), w, c);
                s.context = Some(context.clone());
                s
            })
            .collect();
        let result = Comparison {
            title: self.title,
            stats,
            checksums,
            unstable,
            rounds: round,
            context,
        };
        if self.show {
            result.show();
        }
        result
    }
}

/// The result of [`Compare::run`].
#[derive(Clone, Debug)]
pub struct Comparison {
    pub title: String,
    /// One entry per variant, in the order they were added.
    pub stats: Vec<Stats>,
    /// Checksum each variant returned in its warm-up call.
    pub checksums: Vec<u64>,
    /// True for a variant whose checksum changed between calls (a race?).
    pub unstable: Vec<bool>,
    /// Rounds measured (each variant ran once per round).
    pub rounds: usize,
    /// The machine, captured before measuring.
    pub context: Context,
}

impl Comparison {
    /// True when every variant returned the first variant's checksum, every time.
    pub fn checksums_agree(&self) -> bool {
        self.checksums.iter().all(|c| *c == self.checksums[0]) && !self.unstable.iter().any(|u| *u)
    }

    fn index(&self, label: &str) -> usize {
        self.stats
            .iter()
            .position(|s| s.label == label)
            .unwrap_or_else(|| {
                let labels: Vec<&str> = self.stats.iter().map(|s| s.label.as_str()).collect();
                panic!(
                    "no variant named {label:?} in \"{}\"; the variants are {labels:?}",
                    self.title
                )
            })
    }

    /// The stats of the variant with this label (panics with the list of labels if unknown).
    pub fn stats(&self, label: &str) -> &Stats {
        &self.stats[self.index(label)]
    }

    /// Median time of the variant with this label.
    pub fn median(&self, label: &str) -> Duration {
        self.stats(label).median
    }

    /// Speedup of this variant over the first one: median(first) / median(this).
    pub fn speedup(&self, label: &str) -> f64 {
        self.stats[0].median.as_secs_f64() / self.stats(label).median.as_secs_f64()
    }

    /// The warning shown when checksums differ, if they do.
    pub fn mismatch_warning(&self) -> Option<String> {
        if self.checksums_agree() {
            return None;
        }
        let bad: Vec<&str> = self
            .stats
            .iter()
            .enumerate()
            .filter(|(i, _)| self.checksums[*i] != self.checksums[0] || self.unstable[*i])
            .map(|(_, s)| s.label.as_str())
            .collect();
        Some(format!(
            "CHECKSUMS DIFFER: {} did not compute the same result as \"{}\" (or not the same \
             every time). Their times compare different work.",
            bad.iter()
                .map(|b| format!("\"{b}\""))
                .collect::<Vec<_>>()
                .join(", "),
            self.stats[0].label
        ))
    }

    /// The table as `(html, text)`: variant, median, min, speedup, CPU/wall, checksum.
    pub fn table(&self) -> (String, String) {
        let rows: Vec<Vec<String>> = self
            .stats
            .iter()
            .enumerate()
            .map(|(i, s)| {
                let mut checksum = self.checksums[i].to_string();
                if self.checksums[i] != self.checksums[0] {
                    checksum = format!("{checksum} MISMATCH");
                }
                if self.unstable[i] {
                    checksum = format!("{checksum} (varies)");
                }
                vec![
                    s.label.clone(),
                    fmt_duration(s.median),
                    fmt_duration(s.min),
                    fmt_speedup(self.speedup(&s.label)),
                    fmt_percent(s.cpu_ratio()),
                    checksum,
                ]
            })
            .collect();
        table(
            &[
                "variant", "median", "min", "speedup", "CPU/wall", "checksum",
            ],
            &rows,
        )
    }

    /// The bar chart (SVG): one bar per variant, the median, with the minimum marked.
    pub fn chart(&self) -> String {
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
        time_bars(&self.title, &bars)
    }

    fn note(&self) -> String {
        format!(
            "{} rounds, variants alternated; speedup = median of \"{}\" / median of the variant; \
             CPU/wall 200 % = two cores busy.",
            self.rounds, self.stats[0].label
        )
    }

    /// The display bundle (text and HTML with the chart inline).
    pub fn render(&self) -> Vec<(&'static str, String)> {
        crate::display::Card {
            class: "tb-compare",
            title: &self.title,
            warning: self.mismatch_warning(),
            table: self.table(),
            chart: self.chart(),
            chart_first: false,
            note: self.note(),
            context: &self.context,
        }
        .render()
    }

    /// Displays the comparison.
    pub fn show(&self) {
        display(&self.render());
    }
}

/// The text version of the display: title, table, note and context.
impl std::fmt::Display for Comparison {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let bundle = self.render();
        f.write_str(&bundle[0].1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::chart::tests::{attr, check_xml, elements};

    fn spin(n: u64) -> u64 {
        crate::work::spin(n)
    }

    #[test]
    fn runs_alternately_and_reports_speedups() {
        let order = std::cell::RefCell::new(Vec::new());
        let c = Compare::new("order")
            .variant("a", || {
                order.borrow_mut().push('a');
                spin(20_000)
            })
            .variant("b", || {
                order.borrow_mut().push('b');
                spin(20_000)
            })
            .samples(3)
            .run_quiet();
        // Warm-ups a, b; then rounds a b, b a, a b.
        assert_eq!(order.borrow().iter().collect::<String>(), "ababbaab");
        assert!(c.checksums_agree());
        assert_eq!(c.stats.len(), 2);
        assert_eq!(c.stats("b").count(), 3);
        assert_eq!(c.speedup("a"), 1.0);
        let expected = c.median("a").as_secs_f64() / c.median("b").as_secs_f64();
        assert!((c.speedup("b") - expected).abs() < 1e-12);
    }

    #[test]
    fn mismatch_is_loud() {
        let mut calls = 0u64;
        let c = Compare::new("mismatch")
            .variant("right", || 42)
            .variant("wrong", || 41)
            .variant("racy", move || {
                calls += 1;
                42 + calls / 3
            })
            .samples(5)
            .run_quiet();
        assert!(!c.checksums_agree());
        let (_, text) = c.table();
        assert!(text.contains("41 MISMATCH"), "{text}");
        assert!(text.contains("42 (varies)"), "{text}");
        let bundle = c.render();
        assert!(bundle[0]
            .1
            .contains("!!! CHECKSUMS DIFFER: \"wrong\", \"racy\""));
        assert!(bundle[1].1.contains("CHECKSUMS DIFFER"));
    }

    #[test]
    fn chart_has_one_bar_per_variant_and_display_has_context() {
        let c = Compare::new("three")
            .variant("x", || spin(1000))
            .variant("y", || spin(1000))
            .variant("z", || spin(1000))
            .samples(2)
            .run_quiet();
        let svg = c.chart();
        check_xml(&svg).expect("well-formed SVG");
        let bars = elements(&svg, "rect")
            .into_iter()
            .filter(|r| attr(r, "fill").as_deref() == Some("#4E79A7"))
            .count();
        assert_eq!(bars, 3);
        let bundle = c.render();
        assert_eq!(bundle[0].0, "text/plain");
        assert!(bundle[0].1.contains(&c.context.line()));
        assert!(bundle[0].1.contains("variant"));
        assert!(bundle[1].1.contains("<svg"));
        assert!(bundle[1].1.contains("tb-context"));
    }

    #[test]
    #[should_panic(expected = "no variant named \"nope\"")]
    fn unknown_label_panics_clearly() {
        let c = Compare::new("t").variant("a", || 1).samples(1).run_quiet();
        c.speedup("nope");
    }
}
