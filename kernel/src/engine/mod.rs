//! The engine boundary: what the protocol layer asks of a language backend.
//!
//! The real backend is [`evcxr::EvcxrEngine`]; [`mock::MockEngine`] is a
//! tiny scripted language that lets the whole protocol layer be tested in
//! milliseconds without compiling Rust.

pub mod build_dir;
pub mod cell_cache;
pub mod cpu_strip;
pub mod evcxr;
pub mod mock;
pub mod std_paths;
pub mod timing;

use crate::iopub::Output;
use crate::messages::{ErrorContent, MimeBundle};
use serde_json::Value;
use std::sync::Arc;

/// One cell to run.
#[derive(Debug, Clone)]
pub struct Cell {
    pub code: String,
    /// The count shown for this cell (In [n]).
    pub execution_count: u64,
}

/// How a cell ended.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// Succeeded; `result` becomes the execute_result when present.
    Ok { result: Option<MimeBundle> },
    Error(ErrorContent),
}

/// What came back from one execution: the outcome and reply metadata
/// (timings and CPU figures the engine measured).
#[derive(Debug, Clone)]
pub struct Executed {
    pub outcome: Outcome,
    pub metadata: Value,
}

/// Asks the frontend for a line of input on the stdin channel.
pub trait StdinPort {
    fn request(&mut self, prompt: &str, password: bool) -> Result<String, StdinError>;
}

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum StdinError {
    #[error("this frontend does not accept input (allow_stdin is false)")]
    NotAllowed,
    #[error("input was interrupted")]
    Interrupted,
    #[error("stdin channel failed: {0}")]
    Channel(String),
}

/// Completion candidates for the text between `cursor_start` and
/// `cursor_end` (Unicode code points into the cell).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Completions {
    pub candidates: Vec<Candidate>,
    pub cursor_start: usize,
    pub cursor_end: usize,
}

/// One completion: the text that replaces the range, what it is, and its
/// signature (shown beside it; never inserted).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Candidate {
    pub text: String,
    pub kind: String,
    pub signature: Option<String>,
}

/// Stops a running execution from another thread (control channel, SIGINT).
pub trait Interrupter: Send + Sync {
    /// Stop what the current cell is doing (compile or run).
    fn interrupt(&self);
    /// Stop everything the engine started, before the kernel exits.
    fn terminate(&self) {
        self.interrupt();
    }
}

/// A language backend. Methods are called from one thread at a time (the
/// engine thread); output goes through the [`Output`] it was given.
pub trait Engine: Send {
    fn execute(&mut self, cell: &Cell, stdin: &mut dyn StdinPort) -> Executed;
    fn complete(&mut self, code: &str, cursor: usize) -> Completions;
    /// Documentation for the item at the cursor, as a mime bundle.
    fn inspect(&mut self, code: &str, cursor: usize, detail_level: u8) -> Option<MimeBundle>;
    fn interrupter(&self) -> Arc<dyn Interrupter>;
}

/// Builds an engine on the engine thread (construction may take seconds).
pub type EngineFactory = Box<dyn FnOnce(Output) -> anyhow::Result<Box<dyn Engine>> + Send>;

/// Converts a byte offset in `s` to a code-point offset.
pub fn byte_to_char(s: &str, byte: usize) -> usize {
    let byte = byte.min(s.len());
    let mut b = byte;
    while !s.is_char_boundary(b) {
        b -= 1;
    }
    s[..b].chars().count()
}

/// Converts a code-point offset in `s` to a byte offset.
pub fn char_to_byte(s: &str, chars: usize) -> usize {
    s.char_indices().nth(chars).map(|(i, _)| i).unwrap_or(s.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offsets_count_code_points() {
        let s = "let é = 1; é";
        assert_eq!(char_to_byte(s, 4), 4);
        assert_eq!(char_to_byte(s, 5), 6);
        assert_eq!(byte_to_char(s, 6), 5);
        assert_eq!(byte_to_char(s, s.len()), s.chars().count());
        assert_eq!(char_to_byte(s, 999), s.len());
        assert_eq!(byte_to_char(s, 5), 4, "inside a char rounds down");
    }
}
