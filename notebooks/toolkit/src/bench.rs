//! Timing one piece of code: warm-up, then repeated samples of wall time and CPU time until a
//! time budget or sample count is reached. Results are passed through `black_box` so the
//! compiler cannot delete the work.

use std::time::{Duration, Instant};

use crate::context::Context;
use crate::cpu::{children_cpu_time, cpu_time};
use crate::stats::Stats;

/// Times `f` with the default settings (1 warm-up, then samples until about 0.5 s is spent,
/// at least 5 and at most 30). Call `.show()` on the result to display it.
pub fn bench<T>(label: &str, f: impl FnMut() -> T) -> Stats {
    Bench::new(label).run(f)
}

/// A configurable benchmark: `Bench::new("x").warmup(2).samples(10).run(|| work())`.
#[derive(Clone, Debug)]
pub struct Bench {
    label: String,
    warmup: usize,
    min_samples: usize,
    max_samples: usize,
    budget: Duration,
    batch: u32,
    items: Option<u64>,
}

impl Bench {
    /// Defaults: 1 warm-up call, 5 to 30 samples, 0.5 s budget, 1 call per sample.
    pub fn new(label: &str) -> Bench {
        Bench {
            label: label.to_string(),
            warmup: 1,
            min_samples: 5,
            max_samples: 30,
            budget: Duration::from_millis(500),
            batch: 1,
            items: None,
        }
    }

    /// Number of untimed calls before measuring (thread pools start, pages get touched).
    pub fn warmup(mut self, n: usize) -> Bench {
        self.warmup = n;
        self
    }

    /// Exactly `n` samples (at least 1), whatever the budget.
    pub fn samples(mut self, n: usize) -> Bench {
        self.min_samples = n.max(1);
        self.max_samples = n.max(1);
        self
    }

    /// At least `n` samples even when the budget is spent.
    pub fn min_samples(mut self, n: usize) -> Bench {
        self.min_samples = n.max(1);
        self.max_samples = self.max_samples.max(self.min_samples);
        self
    }

    /// At most `n` samples.
    pub fn max_samples(mut self, n: usize) -> Bench {
        self.max_samples = n.max(1);
        self.min_samples = self.min_samples.min(self.max_samples);
        self
    }

    /// Stop taking samples once this much time has been spent (after the minimum count).
    pub fn budget(mut self, budget: Duration) -> Bench {
        self.budget = budget;
        self
    }

    /// Call `f` `n` times per sample and record the time per call: for code that takes less
    /// than a few microseconds, where one call is below the clock's resolution.
    pub fn batch(mut self, n: u32) -> Bench {
        self.batch = n.max(1);
        self
    }

    /// Each call processes `n` items: the stats then report a throughput.
    pub fn items(mut self, n: u64) -> Bench {
        self.items = Some(n);
        self
    }

    /// Runs the benchmark and returns its [`Stats`] (not displayed: call `.show()`).
    pub fn run<T>(&self, mut f: impl FnMut() -> T) -> Stats {
        let context = Context::now();
        for _ in 0..self.warmup {
            std::hint::black_box(f());
        }
        let mut walls = Vec::new();
        let mut cpus = Vec::new();
        let started = Instant::now();
        while walls.len() < self.max_samples
            && (walls.len() < self.min_samples || started.elapsed() < self.budget)
        {
            let (wall, cpu, _) = measure(&mut f, self.batch);
            walls.push(wall);
            cpus.push(cpu);
        }
        let mut stats = Stats::with_cpu(self.label.clone(), walls, cpus);
        if let Some(n) = self.items {
            stats = stats.items(n);
        }
        stats.context = Some(context);
        stats
    }
}

/// Times `batch` calls of `f`: (wall per call, CPU per call incl. waited-for children, last
/// result). The result goes through `black_box`.
pub(crate) fn measure<T>(f: &mut impl FnMut() -> T, batch: u32) -> (Duration, Duration, T) {
    let batch = batch.max(1);
    let cpu0 = cpu_time() + children_cpu_time();
    let t0 = Instant::now();
    let mut out = std::hint::black_box(f());
    for _ in 1..batch {
        out = std::hint::black_box(f());
    }
    let wall = t0.elapsed();
    let cpu = (cpu_time() + children_cpu_time()).saturating_sub(cpu0);
    (wall / batch, cpu / batch, out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exact_sample_count_and_warmup() {
        let mut calls = 0;
        let s = Bench::new("count").warmup(2).samples(7).run(|| {
            calls += 1;
            calls
        });
        assert_eq!(calls, 9);
        assert_eq!(s.count(), 7);
        assert_eq!(s.cpu_samples.len(), 7);
        assert!(s.context.is_some());
    }

    #[test]
    fn budget_stops_after_minimum() {
        let s = Bench::new("sleep")
            .budget(Duration::from_millis(30))
            .run(|| std::thread::sleep(Duration::from_millis(10)));
        assert!(s.count() >= 5 && s.count() <= 6, "{} samples", s.count());
        assert!(s.min >= Duration::from_millis(10));
        assert!(
            s.cpu_ratio() < 0.5,
            "sleeping is not CPU time: {}",
            s.cpu_ratio()
        );
    }

    #[test]
    fn default_caps_at_thirty_samples() {
        let s = bench("tiny", || std::hint::black_box(1 + 1));
        assert_eq!(s.count(), 30);
    }

    #[test]
    fn batch_divides_time() {
        let s = Bench::new("batched")
            .samples(3)
            .batch(4)
            .run(|| std::thread::sleep(Duration::from_millis(5)));
        assert!(s.min >= Duration::from_millis(5));
        assert!(s.min < Duration::from_millis(20));
    }
}
