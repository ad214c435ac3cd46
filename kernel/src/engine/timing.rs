//! Per-cell timing: the figures every `execute_reply` carries in its
//! metadata (`threadbook`), and the line (plus per-core strip) that
//! `:timing` shows under a cell.

use serde_json::{json, Value};
use std::time::Duration;

/// What one cell cost.
#[derive(Debug, Clone, Copy, Default)]
pub struct CellTiming {
    /// Everything that is not running the cell: compiling, waiting for the analyzer.
    pub compile: Duration,
    /// Running the cell in the evaluation process.
    pub run: Duration,
    /// CPU time the evaluation process used meanwhile (all its threads and waited-for children).
    pub cpu: Option<f64>,
    pub cores: usize,
    /// Rebuilding variables after a lost evaluation process.
    pub replay: Option<Duration>,
}

impl CellTiming {
    fn cpu_percent(&self) -> Option<f64> {
        let run = self.run.as_secs_f64();
        self.cpu.filter(|_| run > 0.0).map(|c| 100.0 * c / run)
    }

    /// The reply metadata.
    pub fn metadata(&self) -> Value {
        json!({
            "threadbook": {
                "compile_seconds": self.compile.as_secs_f64(),
                "run_seconds": self.run.as_secs_f64(),
                "cpu_seconds": self.cpu,
                "cpu_percent": self.cpu_percent(),
                "cores": self.cores,
                "replay_seconds": self.replay.map(|d| d.as_secs_f64()),
            }
        })
    }

    /// `compiled 0.72 s · ran 0.149 s · CPU 0.29 s (195 %) on 2 cores`
    pub fn line(&self) -> String {
        let mut line = format!("compiled {:.2} s · ran {:.3} s", self.compile.as_secs_f64(), self.run.as_secs_f64());
        if let Some(c) = self.cpu {
            let pct = self.cpu_percent().map(|p| format!(" ({p:.0} %)")).unwrap_or_default();
            line.push_str(&format!(" · CPU {c:.2} s{pct} on {} cores", self.cores));
        }
        line
    }

    /// The `:timing` display: the line, and the per-core strip for cells
    /// that ran long enough for it to show something.
    pub fn html(&self, strip_svg: &str) -> String {
        self.html_line(&self.line(), strip_svg)
    }

    /// The `:timing` display with a line of the caller's.
    pub fn html_line(&self, line: &str, strip_svg: &str) -> String {
        format!("<div style=\"color:#777;font-size:smaller\">{}</div>{strip_svg}", html_escape(line))
    }
}

fn html_escape(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_and_metadata_agree() {
        let t = CellTiming {
            compile: Duration::from_millis(720),
            run: Duration::from_millis(150),
            cpu: Some(0.3),
            cores: 2,
            replay: None,
        };
        assert_eq!(t.line(), "compiled 0.72 s · ran 0.150 s · CPU 0.30 s (200 %) on 2 cores");
        let m = t.metadata();
        assert_eq!(m["threadbook"]["cores"], 2);
        assert!((m["threadbook"]["cpu_percent"].as_f64().unwrap() - 200.0).abs() < 1e-9);
        assert!(m["threadbook"]["replay_seconds"].is_null());
        assert!(t.html("<svg/>").ends_with("<svg/>"));
    }
}
