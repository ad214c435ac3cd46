//! Course scaffolding, out of the learner's way: the workloads every notebook shares, the helper
//! programs the notebooks start as child processes, the crash demonstrations, the prediction
//! journal. The cells write the concurrency themselves; these only supply data and programs.

pub mod bins;
pub mod demo;
pub mod journal;
pub mod work;
