//! The display protocol between a cell and the threadbook kernel.
//!
//! A cell shows rich output by printing one line on stdout:
//!
//! ```text
//! THREADBOOK_DISPLAY {"data":{"text/plain":"…","text/html":"…"},"metadata":{},"display_id":"d1","update":false}
//! THREADBOOK_CLEAR_OUTPUT {"wait":true}
//! ```
//!
//! The kernel's capture reads these lines ([`Line::parse`]) and publishes
//! `display_data`, `update_display_data` (an `update` with a `display_id`) or
//! `clear_output`. The toolkit writes them ([`Display::to_line`],
//! [`clear_line`]). Both use this crate, so the format lives in one place.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// Starts a display line.
pub const DISPLAY_PREFIX: &str = "THREADBOOK_DISPLAY ";
/// Starts a clear-output line.
pub const CLEAR_PREFIX: &str = "THREADBOOK_CLEAR_OUTPUT";
/// Set in the environment of cells run by the threadbook kernel.
pub const KERNEL_ENV: &str = "THREADBOOK_KERNEL";

/// One display: a mime bundle (mime type → string, or JSON for
/// `application/*json`), its metadata, and an id when it can be updated.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Display {
    pub data: Map<String, Value>,
    #[serde(default)]
    pub metadata: Map<String, Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub display_id: Option<String>,
    /// Replace the display with this id rather than add a new one.
    #[serde(default)]
    pub update: bool,
}

#[derive(Serialize, Deserialize)]
struct Clear {
    #[serde(default)]
    wait: bool,
}

impl Display {
    /// The line a cell prints (with its newline).
    pub fn to_line(&self) -> String {
        let json = serde_json::to_string(self).expect("a map of JSON values serialises");
        format!("{DISPLAY_PREFIX}{json}\n")
    }
}

/// The line that clears the cell's output (with its newline); `wait`:
/// only when the next output arrives.
pub fn clear_line(wait: bool) -> String {
    let json = serde_json::to_string(&Clear { wait }).expect("a bool serialises");
    format!("{CLEAR_PREFIX} {json}\n")
}

/// A line of a cell's stdout, as the kernel reads it.
#[derive(Debug, Clone, PartialEq)]
pub enum Line {
    Display(Display),
    Clear { wait: bool },
    /// A display or clear line that does not parse: the reason.
    Invalid(String),
}

impl Line {
    /// The display or clear request in `line` (without its newline), or
    /// None when it is not one.
    pub fn parse(line: &str) -> Option<Line> {
        if let Some(json) = line.strip_prefix(DISPLAY_PREFIX) {
            return Some(match serde_json::from_str::<Display>(json) {
                Ok(d) => Line::Display(d),
                Err(e) => Line::Invalid(format!("a display line was not valid ({e})")),
            });
        }
        let json = line.strip_prefix(CLEAR_PREFIX)?.trim();
        let wait = serde_json::from_str::<Clear>(json).map(|c| c.wait).unwrap_or(false);
        Some(Line::Clear { wait })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn bundle(v: Value) -> Map<String, Value> {
        v.as_object().unwrap().clone()
    }

    #[test]
    fn a_display_round_trips_through_its_line() {
        let d = Display {
            data: bundle(json!({"text/plain": "x", "text/html": "<b>x\ny</b>"})),
            metadata: Map::new(),
            display_id: Some("d1".into()),
            update: true,
        };
        let line = d.to_line();
        assert!(line.starts_with(DISPLAY_PREFIX) && line.ends_with('\n'));
        assert_eq!(line.matches('\n').count(), 1, "one line, whatever the content");
        assert_eq!(Line::parse(line.trim_end()), Some(Line::Display(d)));
    }

    #[test]
    fn clear_lines_and_other_lines() {
        assert_eq!(clear_line(true), "THREADBOOK_CLEAR_OUTPUT {\"wait\":true}\n");
        assert_eq!(Line::parse(clear_line(false).trim_end()), Some(Line::Clear { wait: false }));
        assert_eq!(Line::parse("THREADBOOK_CLEAR_OUTPUT"), Some(Line::Clear { wait: false }));
        assert_eq!(Line::parse("hello"), None);
        assert!(matches!(Line::parse("THREADBOOK_DISPLAY {broken"), Some(Line::Invalid(_))));
        let minimal = Line::parse(r#"THREADBOOK_DISPLAY {"data":{"text/plain":"x"}}"#);
        assert!(matches!(minimal, Some(Line::Display(Display { update: false, display_id: None, .. }))));
    }
}
