//! Summaries of timing samples (min, median, max, mean, CPU time) and how they are printed:
//! durations with three significant digits, speedups as `1.87x`, CPU/wall as `190 %`.

use std::time::Duration;

use crate::context::Context;
use crate::display::{display, escape_html, table};

/// The samples of one measured piece of code and their summary.
#[derive(Clone, Debug)]
pub struct Stats {
    /// What was measured.
    pub label: String,
    /// Wall time of each sample, in the order measured.
    pub samples: Vec<Duration>,
    /// CPU time (process + waited-for children) of each sample; empty if not measured.
    pub cpu_samples: Vec<Duration>,
    /// Fastest sample.
    pub min: Duration,
    /// Middle sample (mean of the two middle ones for an even count).
    pub median: Duration,
    /// Slowest sample.
    pub max: Duration,
    /// Mean of the samples.
    pub mean: Duration,
    /// Median CPU time per sample, including waited-for child processes.
    pub cpu: Duration,
    /// Items processed per sample, for throughput (set with [`Stats::items`]).
    pub items_per_sample: Option<u64>,
    /// The machine it ran on, captured before measuring.
    pub context: Option<Context>,
}

/// Median of durations: the middle one, or the mean of the two middle ones. Zero if empty.
pub fn median(samples: &[Duration]) -> Duration {
    if samples.is_empty() {
        return Duration::ZERO;
    }
    let mut sorted = samples.to_vec();
    sorted.sort();
    let n = sorted.len();
    if n % 2 == 1 {
        sorted[n / 2]
    } else {
        (sorted[n / 2 - 1] + sorted[n / 2]) / 2
    }
}

impl Stats {
    /// Summarises wall-time samples (no CPU times).
    pub fn from_samples(label: impl Into<String>, samples: Vec<Duration>) -> Stats {
        Stats::with_cpu(label, samples, Vec::new())
    }

    /// Summarises wall-time samples with the CPU time of each sample.
    pub fn with_cpu(
        label: impl Into<String>,
        samples: Vec<Duration>,
        cpu_samples: Vec<Duration>,
    ) -> Stats {
        let n = samples.len();
        let total: Duration = samples.iter().sum();
        Stats {
            label: label.into(),
            min: samples.iter().min().copied().unwrap_or_default(),
            max: samples.iter().max().copied().unwrap_or_default(),
            median: median(&samples),
            mean: if n == 0 {
                Duration::ZERO
            } else {
                total / n as u32
            },
            cpu: median(&cpu_samples),
            samples,
            cpu_samples,
            items_per_sample: None,
            context: None,
        }
    }

    /// Records that each sample processed `n` items, so [`Stats::throughput`] is known.
    pub fn items(mut self, n: u64) -> Stats {
        self.items_per_sample = Some(n);
        self
    }

    /// Items per second at the median time, if [`Stats::items`] was given.
    pub fn throughput(&self) -> Option<f64> {
        let n = self.items_per_sample?;
        let secs = self.median.as_secs_f64();
        (secs > 0.0).then(|| n as f64 / secs)
    }

    /// CPU time / wall time at the median, as a fraction: 1.9 means 190 %, i.e. about two
    /// cores busy on average. 0 if CPU time was not measured.
    pub fn cpu_ratio(&self) -> f64 {
        let wall = self.median.as_secs_f64();
        if wall > 0.0 {
            self.cpu.as_secs_f64() / wall
        } else {
            0.0
        }
    }

    /// Number of samples.
    pub fn count(&self) -> usize {
        self.samples.len()
    }

    /// The table headers and the one row describing these stats.
    pub fn table_parts(&self) -> (Vec<&'static str>, Vec<String>) {
        let mut headers = vec![
            "label", "median", "min", "max", "mean", "samples", "CPU/wall",
        ];
        let mut row = vec![
            self.label.clone(),
            fmt_duration(self.median),
            fmt_duration(self.min),
            fmt_duration(self.max),
            fmt_duration(self.mean),
            self.count().to_string(),
            fmt_percent(self.cpu_ratio()),
        ];
        if let Some(t) = self.throughput() {
            headers.push("throughput");
            row.push(fmt_rate(t));
        }
        (headers, row)
    }

    /// The display bundle: a one-row table and the context line, as HTML and text.
    pub fn render(&self) -> Vec<(&'static str, String)> {
        let (headers, row) = self.table_parts();
        let (html_table, text_table) = table(&headers, &[row]);
        let ctx = self.context.clone().unwrap_or_else(Context::now);
        let text = format!("{}\n{}\n{}", self.label, text_table, ctx.text());
        let html = format!(
            "<div class=\"tb-stats\"><b>{}</b>{}{}</div>",
            escape_html(&self.label),
            html_table,
            ctx.html()
        );
        vec![("text/plain", text), ("text/html", html)]
    }

    /// Shows the stats as a table with the context line beneath it.
    pub fn show(&self) {
        display(&self.render());
    }

    /// evcxr shows the last expression of a cell with this method.
    pub fn evcxr_display(&self) {
        self.show();
    }
}

/// One line: `label: median 12.3 ms (min 11.9 ms, max 13.0 ms, 30 samples, CPU/wall 190 %)`.
impl std::fmt::Display for Stats {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}: median {} (min {}, max {}, {} samples, CPU/wall {}",
            self.label,
            fmt_duration(self.median),
            fmt_duration(self.min),
            fmt_duration(self.max),
            self.count(),
            fmt_percent(self.cpu_ratio())
        )?;
        if let Some(t) = self.throughput() {
            write!(f, ", {}", fmt_rate(t))?;
        }
        write!(f, ")")
    }
}

/// Formats a duration with three significant digits: `85.0 ns`, `450 µs`, `12.3 ms`, `1.23 s`.
pub fn fmt_duration(d: Duration) -> String {
    let ns = d.as_secs_f64() * 1e9;
    let (value, unit) = if ns < 1e3 {
        (ns, "ns")
    } else if ns < 1e6 {
        (ns / 1e3, "µs")
    } else if ns < 1e9 {
        (ns / 1e6, "ms")
    } else {
        (ns / 1e9, "s")
    };
    format!("{} {unit}", sig3(value))
}

/// Three significant digits (no exponent): 1.23, 12.3, 123, 1234.
pub fn sig3(v: f64) -> String {
    let a = v.abs();
    if a >= 100.0 || a == 0.0 {
        format!("{v:.0}")
    } else if a >= 10.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.2}")
    }
}

/// A speedup as `1.87x`.
pub fn fmt_speedup(x: f64) -> String {
    if x.is_finite() {
        format!("{x:.2}x")
    } else {
        "?".to_string()
    }
}

/// A fraction as a percentage: 1.9 → `190 %`.
pub fn fmt_percent(x: f64) -> String {
    if x.is_finite() {
        format!("{:.0} %", x * 100.0)
    } else {
        "?".to_string()
    }
}

/// A rate as items per second with an SI prefix: `12.3 M items/s`.
pub fn fmt_rate(per_sec: f64) -> String {
    let (v, prefix) = if per_sec >= 1e9 {
        (per_sec / 1e9, "G ")
    } else if per_sec >= 1e6 {
        (per_sec / 1e6, "M ")
    } else if per_sec >= 1e3 {
        (per_sec / 1e3, "k ")
    } else {
        (per_sec, "")
    };
    format!("{} {prefix}items/s", sig3(v))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(v: &[u64]) -> Vec<Duration> {
        v.iter().map(|&m| Duration::from_millis(m)).collect()
    }

    #[test]
    fn odd_count() {
        let s = Stats::from_samples("odd", ms(&[5, 1, 9, 3, 7]));
        assert_eq!(s.min, Duration::from_millis(1));
        assert_eq!(s.median, Duration::from_millis(5));
        assert_eq!(s.max, Duration::from_millis(9));
        assert_eq!(s.mean, Duration::from_millis(5));
        assert_eq!(s.samples, ms(&[5, 1, 9, 3, 7]), "samples keep their order");
    }

    #[test]
    fn even_count() {
        let s = Stats::from_samples("even", ms(&[10, 2, 4, 100]));
        assert_eq!(s.min, Duration::from_millis(2));
        assert_eq!(s.median, Duration::from_millis(7));
        assert_eq!(s.max, Duration::from_millis(100));
        assert_eq!(s.mean, Duration::from_millis(29));
    }

    #[test]
    fn empty_is_zero() {
        let s = Stats::from_samples("none", vec![]);
        assert_eq!(s.median, Duration::ZERO);
        assert_eq!(s.mean, Duration::ZERO);
        assert_eq!(s.cpu_ratio(), 0.0);
    }

    #[test]
    fn cpu_ratio_and_throughput() {
        let s = Stats::with_cpu("x", ms(&[10, 10, 10]), ms(&[19, 19, 20])).items(1000);
        assert_eq!(s.cpu, Duration::from_millis(19));
        assert!((s.cpu_ratio() - 1.9).abs() < 1e-9);
        assert!((s.throughput().unwrap() - 100_000.0).abs() < 1e-6);
    }

    #[test]
    fn display_is_one_line() {
        let s = Stats::with_cpu("job", ms(&[2, 4, 6]), ms(&[4, 8, 12]));
        assert_eq!(
            s.to_string(),
            "job: median 4.00 ms (min 2.00 ms, max 6.00 ms, 3 samples, CPU/wall 200 %)"
        );
    }

    #[test]
    fn formatting() {
        assert_eq!(fmt_duration(Duration::from_nanos(85)), "85.0 ns");
        assert_eq!(fmt_duration(Duration::from_micros(450)), "450 µs");
        assert_eq!(fmt_duration(Duration::from_micros(12_345)), "12.3 ms");
        assert_eq!(fmt_duration(Duration::from_millis(1_234)), "1.23 s");
        assert_eq!(fmt_speedup(1.8666), "1.87x");
        assert_eq!(fmt_percent(1.9), "190 %");
        assert_eq!(fmt_rate(12_345_678.0), "12.3 M items/s");
    }

    #[test]
    fn render_has_table_and_context() {
        let mut s = Stats::with_cpu("job", ms(&[2, 4, 6]), ms(&[4, 8, 12]));
        s.context = Some(Context {
            cores: 2,
            online_cpus: 2,
            cpu_model: "CPU".into(),
            load1: 0.5,
            load5: 0.25,
            busy_now: None,
            rustc: "rustc 1.95.0".into(),
            opt_level: "opt-level 2".into(),
            debug_assertions: false,
        });
        let bundle = s.render();
        assert_eq!(
            bundle[0].1,
            "job\n\
             label   median      min      max     mean  samples  CPU/wall\n\
             -----  -------  -------  -------  -------  -------  --------\n\
             job    4.00 ms  2.00 ms  6.00 ms  4.00 ms        3     200 %\n\
             2 cores · CPU · load 0.50 / 0.25 · rustc 1.95.0 · opt-level 2 · debug assertions off"
        );
        assert!(bundle[1].1.contains("<td>4.00 ms</td>"));
        assert!(bundle[1].1.contains("tb-context"));
    }
}
