//! threadbook toolkit: measurement and display helpers for the concurrency notebooks.
//!
//! Notebook cells load it with
//!
//! ```text
//! :dep threadbook-toolkit = { path = "toolkit" }
//! use tb::*;
//! ```
//!
//! What lives where:
//! - [`display`](mod@display): sending HTML / SVG / text displays to the notebook, tables.
//! - [`context`]: the machine a measurement ran on (cores, load, rustc, opt level).
//! - [`cpu`]: CPU time of this process and of its waited-for children.
//! - [`stats`] and [`bench`](mod@bench): timing one piece of code, summarising samples.
//! - [`compare`]: timing several variants of the same job, alternately, with a bar chart.
//! - [`sweep`]: speedup against thread count, with the ideal line and Amdahl's law.
//! - [`timeline`]: a Gantt chart of which thread ran what, when.
//! - [`chart`]: the SVG charts themselves (plotters, SVG backend).
//! - [`work`]: deterministic CPU-bound workloads shared by threads and child processes.
//! - [`procs`]: running those workloads in `tb-worker` child processes.
//! - [`demo`]: crashes and hangs (panic, abort, segfault, stack overflow, deadlock) run in a
//!   `tb-demo` child process with a timeout, reported as exit code or signal.

pub mod bench;
pub mod chart;
pub mod compare;
pub mod context;
pub mod cpu;
pub mod demo;
pub mod display;
pub mod procs;
pub mod stats;
pub mod sweep;
pub mod timeline;
pub mod work;

pub use std::hint::black_box;

pub use bench::{bench, Bench};
pub use compare::{Compare, Comparison};
pub use context::{show_context, Context};
pub use cpu::{children_cpu_time, cpu_time, thread_cpu_time};
pub use demo::DemoOutcome;
pub use display::{clear_output, display, html, show_table, svg, table, text, DisplayHandle};
pub use stats::{fmt_duration, Stats};
pub use sweep::{amdahl, pool, with_pool, Sweep, SweepPoint, SweepResult};
pub use timeline::{Span, SpanRecord, Timeline};
pub use work::split;

/// Number of CPUs this process may run on (`std::thread::available_parallelism`), 1 if unknown.
///
/// This honours CPU affinity: under `taskset -c 0` it is 1.
pub fn cores() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
}
