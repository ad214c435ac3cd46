//! Course scaffolding: the prediction journal. A cell that asked for a prediction records it
//! next to what was measured, so the recall notebook (09) can show how your predictions compared.
//! One JSON line per entry in `$THREADBOOK_JOURNAL`, else `~/.cache/threadbook/journal.jsonl`.

use std::io::Write;
use std::path::PathBuf;

/// One prediction and what was measured.
#[derive(Clone, Debug, PartialEq)]
pub struct Entry {
    /// e.g. `00 speedup with one thread per core`.
    pub key: String,
    pub prediction: f64,
    pub measured: f64,
}

/// Where the journal is kept.
pub fn path() -> PathBuf {
    if let Some(p) = std::env::var_os("THREADBOOK_JOURNAL") {
        return PathBuf::from(p);
    }
    let home = std::env::var_os("HOME").map(PathBuf::from).unwrap_or_else(std::env::temp_dir);
    home.join(".cache/threadbook/journal.jsonl")
}

/// Appends a prediction and its measurement (a journal that cannot be written is skipped).
pub fn record(key: &str, prediction: f64, measured: f64) {
    let line = serde_json::json!({ "key": key, "prediction": prediction, "measured": measured });
    let p = path();
    if let Some(dir) = p.parent() {
        let _ = std::fs::create_dir_all(dir);
    }
    if let Ok(mut f) = std::fs::File::options().create(true).append(true).open(&p) {
        let _ = writeln!(f, "{line}");
    }
}

/// The latest entry of every key, in the order the keys were first recorded.
pub fn entries() -> Vec<Entry> {
    let text = std::fs::read_to_string(path()).unwrap_or_default();
    let mut out: Vec<Entry> = Vec::new();
    for v in text.lines().filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok()) {
        let (Some(key), Some(prediction), Some(measured)) =
            (v["key"].as_str(), v["prediction"].as_f64(), v["measured"].as_f64())
        else {
            continue;
        };
        let e = Entry { key: key.to_string(), prediction, measured };
        match out.iter_mut().find(|o| o.key == e.key) {
            Some(old) => *old = e,
            None => out.push(e),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_and_keeps_the_latest() {
        let p = std::env::temp_dir().join(format!("tb-journal-{}.jsonl", std::process::id()));
        std::env::set_var("THREADBOOK_JOURNAL", &p);
        let _ = std::fs::remove_file(&p);
        record("a", 1.5, 1.9);
        record("b", 2.0, 3.0);
        record("a", 1.7, 1.8);
        assert_eq!(
            entries(),
            vec![
                Entry { key: "a".into(), prediction: 1.7, measured: 1.8 },
                Entry { key: "b".into(), prediction: 2.0, measured: 3.0 }
            ]
        );
        std::fs::remove_file(&p).unwrap();
    }
}
