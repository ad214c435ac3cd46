//! The per-core view behind `:timing`: while a cell runs, the kernel samples
//! each core's busy share from `/proc/stat` and draws it as a strip per core
//! (SVG via plotters), so one busy core for a sequential loop and every core
//! busy for `par_iter` can be seen without writing any measuring code.

use plotters::prelude::*;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const PERIOD: Duration = Duration::from_millis(25);

/// Busy and total jiffies per core, at one instant.
#[derive(Debug, Clone, PartialEq)]
pub struct Snapshot {
    pub at: Instant,
    pub cores: Vec<(u64, u64)>,
}

/// Busy and total ticks of each core, from /proc/stat (procfs).
pub fn per_core(stats: &procfs::KernelStats) -> Vec<(u64, u64)> {
    stats
        .cpu_time
        .iter()
        .map(|c| {
            let busy = c.user + c.nice + c.system + c.irq.unwrap_or(0) + c.softirq.unwrap_or(0) + c.steal.unwrap_or(0);
            (busy, busy + c.idle + c.iowait.unwrap_or(0))
        })
        .collect()
}

fn snapshot() -> Option<Snapshot> {
    use procfs::CurrentSI;
    let stats = procfs::KernelStats::current().ok()?;
    Some(Snapshot { at: Instant::now(), cores: per_core(&stats) })
}

/// Samples in the background until stopped.
pub struct Sampler {
    stop: Arc<AtomicBool>,
    samples: Arc<Mutex<Vec<Snapshot>>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Sampler {
    pub fn start() -> Sampler {
        let stop = Arc::new(AtomicBool::new(false));
        let samples: Arc<Mutex<Vec<Snapshot>>> = Arc::default();
        let thread = std::thread::Builder::new()
            .name("cpu-sampler".into())
            .spawn({
                let (stop, samples) = (stop.clone(), samples.clone());
                move || loop {
                    if let Some(s) = snapshot() {
                        samples.lock().unwrap_or_else(|p| p.into_inner()).push(s);
                    }
                    if stop.load(Ordering::SeqCst) {
                        return;
                    }
                    std::thread::sleep(PERIOD);
                }
            })
            .ok();
        Sampler { stop, samples, thread }
    }

    /// Stops and returns the samples taken within the last `window`.
    pub fn finish(mut self, window: Duration) -> Vec<Snapshot> {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        let all = std::mem::take(&mut *self.samples.lock().unwrap_or_else(|p| p.into_inner()));
        let Some(last) = all.last().map(|s| s.at) else { return all };
        let from = last.checked_sub(window + PERIOD).unwrap_or(last);
        all.into_iter().filter(|s| s.at >= from).collect()
    }
}

/// Busy share (0..=1) of each core in each interval between samples, with
/// the interval's start and end in ms from the first sample.
pub fn intervals(samples: &[Snapshot]) -> Vec<(f64, f64, Vec<f64>)> {
    let Some(first) = samples.first() else { return vec![] };
    samples
        .windows(2)
        .map(|w| {
            let shares = w[0]
                .cores
                .iter()
                .zip(&w[1].cores)
                .map(|(&(b0, t0), &(b1, t1))| {
                    let dt = t1.saturating_sub(t0);
                    if dt == 0 { 0.0 } else { (b1.saturating_sub(b0)) as f64 / dt as f64 }
                })
                .collect();
            let ms = |s: &Snapshot| s.at.duration_since(first.at).as_secs_f64() * 1000.0;
            (ms(&w[0]), ms(&w[1]), shares)
        })
        .collect()
}

/// One row per core, one cell per interval, darker = busier.
pub fn render_svg(samples: &[Snapshot]) -> Option<String> {
    let iv = intervals(samples);
    let cores = iv.first()?.2.len();
    let end = iv.last()?.1.max(1.0);
    let mut svg = String::new();
    {
        let height = 48 + 22 * cores as u32;
        let root = SVGBackend::with_string(&mut svg, (520, height)).into_drawing_area();
        root.fill(&WHITE).ok()?;
        let mut chart = ChartBuilder::on(&root)
            .margin(6)
            .x_label_area_size(34)
            .y_label_area_size(58)
            .build_cartesian_2d(0.0..end, 0.0..cores as f64)
            .ok()?;
        chart
            .configure_mesh()
            .disable_mesh()
            .label_style(("sans-serif", 12))
            .axis_desc_style(("sans-serif", 12))
            .x_desc("ms since the cell started running (darker = busier, all processes)")
            .x_labels(6)
            .y_labels(cores)
            .y_label_formatter(&|y| format!("core {}", (*y as usize).min(cores.saturating_sub(1))))
            .draw()
            .ok()?;
        chart
            .draw_series(iv.iter().flat_map(|(a, b, shares)| {
                shares.iter().enumerate().map(move |(core, &share)| {
                    let share = share.clamp(0.0, 1.0);
                    let shade = (235.0 - 200.0 * share) as u8;
                    Rectangle::new(
                        [(*a, core as f64 + 0.1), (*b, core as f64 + 0.9)],
                        RGBColor(shade, shade, 255).filled(),
                    )
                })
            }))
            .ok()?;
        root.present().ok()?;
    }
    Some(svg)
}

#[cfg(test)]
mod tests {
    use super::*;

    const STAT: &str = "cpu  10 0 10 80 0 0 0 0 0 0\ncpu0 5 0 5 40 0 0 0 0 0 0\ncpu1 5 0 5 40 0 0 0 0 0 0\n\
                        intr 1 2 3\nctxt 9\nbtime 1\nprocesses 3\n";

    #[test]
    fn busy_and_total_ticks_per_core() {
        use procfs::FromBufReadSI;
        let si = procfs::ExplicitSystemInfo { boot_time_secs: 1, ticks_per_second: 100, page_size: 4096, is_little_endian: true };
        let stats = procfs::KernelStats::from_buf_read(STAT.as_bytes(), &si).unwrap();
        assert_eq!(per_core(&stats), vec![(10, 50), (10, 50)]);
    }

    #[test]
    fn busy_share_per_interval_and_a_row_per_core() {
        let t0 = Instant::now();
        let s = vec![
            Snapshot { at: t0, cores: vec![(0, 0), (0, 0)] },
            Snapshot { at: t0 + Duration::from_millis(25), cores: vec![(10, 10), (0, 10)] },
            Snapshot { at: t0 + Duration::from_millis(50), cores: vec![(20, 20), (5, 20)] },
        ];
        let iv = intervals(&s);
        assert_eq!(iv.len(), 2);
        assert_eq!(iv[0].2, vec![1.0, 0.0]);
        assert_eq!(iv[1].2, vec![1.0, 0.5]);
        let svg = render_svg(&s).unwrap();
        assert!(svg.starts_with("<svg"));
        assert!(svg.contains("core 0") && svg.contains("core 1"));
        // the fully busy cells are drawn darkest
        assert_eq!(svg.matches("#2323FF").count(), 2, "{svg}");
    }
}
