//! In-memory history of the cells executed in this session, answering
//! `history_request` (tail, range, search with `*`/`?` globs, unique, n).
//! Bounded: past [`MAX_ENTRIES`] entries or [`MAX_BYTES`] of text the oldest
//! entries are forgotten, so a long session cannot grow the kernel without end.

use crate::protocol::{cut_text, HistoryEntry, HistoryReply, HistoryRequest};
use std::collections::VecDeque;
use wildmatch::WildMatch;

/// Entries kept (a long course session runs a few hundred cells).
pub const MAX_ENTRIES: usize = 10_000;
/// Input and output text kept, in bytes.
pub const MAX_BYTES: usize = 32 << 20;
/// One result's text/plain kept with its cell, in bytes (it is a summary, not
/// the output itself).
const MAX_OUTPUT_BYTES: usize = 64 << 10;

/// Session number used in replies: the current session is always 0 here,
/// as ipykernel reports for an in-memory history.
const SESSION: i64 = 0;

#[derive(Debug, Clone)]
struct Entry {
    line: i64,
    input: String,
    output: Option<String>,
}

impl Entry {
    fn bytes(&self) -> usize {
        self.input.len() + self.output.as_ref().map_or(0, String::len)
    }
}

#[derive(Debug, Default)]
pub struct History {
    entries: VecDeque<Entry>,
    bytes: usize,
}

impl History {
    /// Records a cell stored under `execution_count`.
    pub fn record(&mut self, execution_count: u64, input: &str) {
        let entry = Entry {
            line: execution_count as i64,
            input: cut_text(input, MAX_BYTES),
            output: None,
        };
        self.bytes += entry.bytes();
        self.entries.push_back(entry);
        self.trim();
    }

    /// Attaches the text/plain result to the latest entry with that count.
    pub fn record_output(&mut self, execution_count: u64, text: &str) {
        if let Some(e) = self
            .entries
            .iter_mut()
            .rev()
            .find(|e| e.line == execution_count as i64)
        {
            self.bytes -= e.bytes();
            e.output = Some(cut_text(text, MAX_OUTPUT_BYTES));
            self.bytes += e.bytes();
        }
        self.trim();
    }

    /// Forgets the oldest entries past the bounds (the newest is always kept).
    fn trim(&mut self) {
        while self.entries.len() > 1 && (self.entries.len() > MAX_ENTRIES || self.bytes > MAX_BYTES) {
            if let Some(old) = self.entries.pop_front() {
                self.bytes -= old.bytes();
            }
        }
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    pub fn reply(&self, req: &HistoryRequest) -> HistoryReply {
        let picked: Vec<&Entry> = match req.hist_access_type.as_str() {
            "tail" => {
                let n = req.n.unwrap_or(10);
                let skip = self.entries.len().saturating_sub(n);
                self.entries.iter().skip(skip).collect()
            }
            "range" => {
                let stop = if req.stop <= 0 { i64::MAX } else { req.stop };
                self.entries
                    .iter()
                    .filter(|e| e.line >= req.start && e.line < stop)
                    .collect()
            }
            "search" => {
                let pattern = if req.pattern.is_empty() { "*" } else { &req.pattern };
                let glob = WildMatch::new(pattern);
                let mut found: Vec<&Entry> =
                    self.entries.iter().filter(|e| glob.matches(&e.input)).collect();
                if req.unique {
                    let mut seen = std::collections::HashSet::new();
                    // keep the latest occurrence of each input
                    found = found
                        .into_iter()
                        .rev()
                        .filter(|e| seen.insert(e.input.clone()))
                        .collect::<Vec<_>>()
                        .into_iter()
                        .rev()
                        .collect();
                }
                if let Some(n) = req.n {
                    let skip = found.len().saturating_sub(n);
                    found = found.into_iter().skip(skip).collect();
                }
                found
            }
            _ => Vec::new(),
        };
        let history = picked
            .into_iter()
            .map(|e| {
                if req.output {
                    HistoryEntry::WithOutput(SESSION, e.line, (e.input.clone(), e.output.clone()))
                } else {
                    HistoryEntry::Input(SESSION, e.line, e.input.clone())
                }
            })
            .collect();
        HistoryReply { status: "ok", history }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{json, Value};

    trait Json {
        fn json(self) -> Value;
    }

    impl Json for HistoryReply {
        fn json(self) -> Value {
            serde_json::to_value(self).unwrap()
        }
    }

    fn req(kind: &str, f: impl FnOnce(&mut HistoryRequest)) -> HistoryRequest {
        let mut r = HistoryRequest {
            output: false,
            raw: true,
            hist_access_type: kind.into(),
            session: 0,
            start: 0,
            stop: 0,
            n: None,
            pattern: String::new(),
            unique: false,
        };
        f(&mut r);
        r
    }

    fn sample() -> History {
        let mut h = History::default();
        for (i, code) in ["let a = 1;", "a + 1", "let b = 2;", "a + 1", "println!(\"x\")"].iter().enumerate() {
            h.record(i as u64 + 1, code);
        }
        h.record_output(2, "2");
        h
    }

    #[test]
    fn tail_returns_last_n() {
        let v = sample().reply(&req("tail", |r| r.n = Some(2))).json();
        assert_eq!(v["history"], json!([[0, 4, "a + 1"], [0, 5, "println!(\"x\")"]]));
    }

    #[test]
    fn range_is_half_open() {
        let v = sample().reply(&req("range", |r| {
            r.start = 2;
            r.stop = 4
        })).json();
        assert_eq!(v["history"], json!([[0, 2, "a + 1"], [0, 3, "let b = 2;"]]));
    }

    #[test]
    fn search_globs_unique_and_n() {
        let h = sample();
        let v = h.reply(&req("search", |r| r.pattern = "let *".into())).json();
        assert_eq!(v["history"].as_array().unwrap().len(), 2);
        let v = h.reply(&req("search", |r| {
            r.pattern = "a ? 1".into();
            r.unique = true
        })).json();
        assert_eq!(v["history"], json!([[0, 4, "a + 1"]]));
        let v = h.reply(&req("search", |r| {
            r.pattern = "*".into();
            r.n = Some(1)
        })).json();
        assert_eq!(v["history"], json!([[0, 5, "println!(\"x\")"]]));
    }

    #[test]
    fn output_pairs_inputs_with_results() {
        let v = sample().reply(&req("range", |r| {
            r.start = 2;
            r.stop = 3;
            r.output = true
        })).json();
        assert_eq!(v["history"], json!([[0, 2, ["a + 1", "2"]]]));
    }

    #[test]
    fn history_is_bounded() {
        let mut h = History::default();
        for i in 0..(MAX_ENTRIES as u64 + 10) {
            h.record(i + 1, "x");
        }
        assert_eq!(h.len(), MAX_ENTRIES);
        let big = "y".repeat(MAX_BYTES / 3 + 1);
        for i in 0..4 {
            h.record(100_000 + i, &big);
        }
        assert!(h.bytes <= MAX_BYTES, "{} bytes kept", h.bytes);
        h.record_output(100_003, &"z".repeat(1 << 20));
        assert_eq!(h.entries.back().unwrap().output.as_ref().unwrap().len(), MAX_OUTPUT_BYTES);
        let huge = "w".repeat(MAX_BYTES + 10);
        h.record(200_000, &huge);
        assert_eq!(h.len(), 1, "one oversized cell is cut and kept alone");
        assert!(h.bytes <= MAX_BYTES);
    }
}
