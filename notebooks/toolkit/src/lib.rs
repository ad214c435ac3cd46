//! threadbook toolkit (`tb`): measuring and drawing for the concurrency notebooks.
//!
//! ```text
//! :dep threadbook-toolkit = { path = "toolkit" }
//! use tb::*;
//! ```
//!
//! The threads, pools and child processes of an experiment are written in the cell; the
//! toolkit only measures them and draws the result. What a learner calls, one file each:
//!
//! - [`measure`]: CPU time (process, thread, children), context switches, [`Stats`], [`Bench`].
//! - [`compare`](mod@compare): [`Compare`] runs variants of one job alternately; table + chart.
//! - [`sweep`](mod@sweep): [`Sweep`] measures speedup against thread count, with Amdahl's law.
//! - [`timeline`]: [`Timeline`] records which thread did what, when; a Gantt chart.
//! - [`machine`]: the machine and build a measurement ran on ([`Context`]), the CPUs this
//!   process may use, its caches, thread ids.
//! - [`chart`] and [`display`](mod@display): SVG charts, tables, HTML in the notebook.
//! - [`check`]: [`Meeting`], which an exercise's checking cell uses to see threads alive together.
//!
//! Course scaffolding (demo workloads, the helper programs the notebooks start, the prediction
//! journal) lives apart, in [`course`]: a learner need not read it.

pub mod chart;
pub mod check;
pub mod compare;
pub mod course;
pub mod display;
pub mod machine;
pub mod measure;
pub mod sweep;
pub mod timeline;

pub use std::hint::black_box;

pub use check::Meeting;
pub use compare::{Compare, Comparison};
pub use course::work::{self, split};
pub use display::{clear_output, display, html, show_table, svg, table, DisplayHandle};
pub use machine::{allowed_cpus, cores, os_tid, pin_to_cpu, show_context, Context};
pub use measure::{
    children_cpu_time, cpu_time, fmt_duration, thread_context_switches, thread_cpu_time, Bench, Stats, Switches,
};
pub use sweep::{amdahl, pool, with_pool, Sweep, SweepResult};
pub use timeline::Timeline;

/// Kept for older cells and the kernel's own tests; the course writes its `Command` code in the cells.
pub mod procs {
    pub use crate::course::bins::{run_parallel, worker_path};
    pub use crate::course::work::split;
}
