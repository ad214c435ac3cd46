//! In-memory history of the cells executed in this session, answering
//! `history_request` (tail, range, search with `*`/`?` globs, unique, n).

use crate::messages::HistoryRequest;
use serde_json::{json, Value};
use wildmatch::WildMatch;

/// Session number used in replies: the current session is always 0 here,
/// as ipykernel reports for an in-memory history.
const SESSION: i64 = 0;

#[derive(Debug, Clone)]
struct Entry {
    line: i64,
    input: String,
    output: Option<String>,
}

#[derive(Debug, Default)]
pub struct History {
    entries: Vec<Entry>,
}

impl History {
    /// Records a cell stored under `execution_count`.
    pub fn record(&mut self, execution_count: u64, input: &str) {
        self.entries.push(Entry {
            line: execution_count as i64,
            input: input.to_owned(),
            output: None,
        });
    }

    /// Attaches the text/plain result to the latest entry with that count.
    pub fn record_output(&mut self, execution_count: u64, text: &str) {
        if let Some(e) = self
            .entries
            .iter_mut()
            .rev()
            .find(|e| e.line == execution_count as i64)
        {
            e.output = Some(text.to_owned());
        }
    }

    pub fn reply(&self, req: &HistoryRequest) -> Value {
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
        let history: Vec<Value> = picked
            .into_iter()
            .map(|e| {
                if req.output {
                    json!([SESSION, e.line, [e.input, e.output]])
                } else {
                    json!([SESSION, e.line, e.input])
                }
            })
            .collect();
        json!({ "status": "ok", "history": history })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
        let v = sample().reply(&req("tail", |r| r.n = Some(2)));
        assert_eq!(v["history"], json!([[0, 4, "a + 1"], [0, 5, "println!(\"x\")"]]));
    }

    #[test]
    fn range_is_half_open() {
        let v = sample().reply(&req("range", |r| {
            r.start = 2;
            r.stop = 4
        }));
        assert_eq!(v["history"], json!([[0, 2, "a + 1"], [0, 3, "let b = 2;"]]));
    }

    #[test]
    fn search_globs_unique_and_n() {
        let h = sample();
        let v = h.reply(&req("search", |r| r.pattern = "let *".into()));
        assert_eq!(v["history"].as_array().unwrap().len(), 2);
        let v = h.reply(&req("search", |r| {
            r.pattern = "a ? 1".into();
            r.unique = true
        }));
        assert_eq!(v["history"], json!([[0, 4, "a + 1"]]));
        let v = h.reply(&req("search", |r| {
            r.pattern = "*".into();
            r.n = Some(1)
        }));
        assert_eq!(v["history"], json!([[0, 5, "println!(\"x\")"]]));
    }

    #[test]
    fn output_pairs_inputs_with_results() {
        let v = sample().reply(&req("range", |r| {
            r.start = 2;
            r.stop = 3;
            r.output = true
        }));
        assert_eq!(v["history"], json!([[0, 2, ["a + 1", "2"]]]));
    }
}
