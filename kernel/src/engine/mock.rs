//! A scripted stand-in for the Rust engine, for protocol tests. Each line of a
//! cell is one command:
//!
//! | line | effect |
//! |---|---|
//! | `print TEXT` / `eprint TEXT` | a line on stdout / stderr |
//! | `flood N` | N numbered lines on stdout |
//! | `result TEXT` | the cell's value (execute_result, text/plain) |
//! | `display MIME TEXT` | a display_data |
//! | `show ID TEXT` / `update ID TEXT` | a display with an id / an update of it |
//! | `clear` | clear_output(wait=false) |
//! | `sleep MS` | waits (interruptible) |
//! | `spin` | runs until interrupted |
//! | `input PROMPT` / `password PROMPT` | asks the frontend, prints what came back |
//! | `error NAME MESSAGE` | the cell fails |
//! | `panic MESSAGE` | the engine itself panics (a bug in the engine) |
//! | `touch PATH` | creates the file PATH (tests that a cell did not run) |
//! | `bigdisplay MIB` | a text/plain display of MIB mebibytes |
//!
//! Anything else fails with `UnknownCommand`. A `complete_request` or
//! `inspect_request` whose code contains `panic!` makes the engine panic.
//!
//! [`start`] builds it, or fails as an engine that cannot start when
//! `THREADBOOK_MOCK_START_ERROR` is set (its value is the reason).

use super::{Candidate, Cell, Completions, Engine, Executed, Interrupter, Outcome, StdinPort};
use crate::iopub::Output;
use crate::messages::{ErrorContent, MimeBundle};
use serde_json::{json, Value};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

const WORDS: &[&str] = &[
    "print", "eprint", "flood", "result", "display", "show", "update", "clear", "sleep", "spin", "input",
    "password", "error", "panic", "touch", "bigdisplay",
];

/// Set to make [`start`] fail, as an engine that cannot start does.
pub const START_ERROR_ENV: &str = "THREADBOOK_MOCK_START_ERROR";

/// The mock engine's factory (see [`START_ERROR_ENV`]).
pub fn start(out: Output) -> anyhow::Result<Box<dyn Engine>> {
    if let Some(why) = std::env::var_os(START_ERROR_ENV) {
        anyhow::bail!("{}", why.to_string_lossy());
    }
    Ok(Box::new(MockEngine::new(out)))
}

#[derive(Default)]
struct Flag(AtomicBool);

impl Interrupter for Flag {
    fn interrupt(&self) {
        self.0.store(true, Ordering::SeqCst);
    }
}

pub struct MockEngine {
    out: Output,
    interrupted: Arc<Flag>,
}

impl MockEngine {
    pub fn new(out: Output) -> MockEngine {
        MockEngine {
            out,
            interrupted: Arc::default(),
        }
    }

    fn wait(&self, dur: Duration) -> Result<(), ErrorContent> {
        let end = Instant::now() + dur;
        while Instant::now() < end {
            if self.interrupted.0.swap(false, Ordering::SeqCst) {
                return Err(interrupted());
            }
            std::thread::sleep(Duration::from_millis(2));
        }
        Ok(())
    }

    fn run_line(
        &self,
        line: &str,
        result: &mut Option<MimeBundle>,
        stdin: &mut dyn StdinPort,
    ) -> Result<(), ErrorContent> {
        let (cmd, rest) = line.split_once(' ').unwrap_or((line, ""));
        let text = |s: &str| -> MimeBundle { [("text/plain".to_owned(), json!(s))].into() };
        match cmd {
            "print" => self.out.stream("stdout", &format!("{rest}\n")),
            "eprint" => self.out.stream("stderr", &format!("{rest}\n")),
            "flood" => {
                let n: u64 = rest.parse().map_err(|_| fail("BadArgument", "flood N"))?;
                for i in 0..n {
                    self.out.stream("stdout", &format!("line {i}\n"));
                }
            }
            "result" => *result = Some(text(rest)),
            "display" => {
                let (mime, body) = rest.split_once(' ').unwrap_or((rest, ""));
                let mut data = text(body);
                data.insert(mime.to_owned(), json!(body));
                self.out.display(data, json!({}), None, false);
            }
            "show" | "update" => {
                let (id, body) = rest.split_once(' ').unwrap_or((rest, ""));
                self.out.display(text(body), json!({}), Some(id), cmd == "update");
            }
            "clear" => self.out.clear_output(false),
            "sleep" => {
                let ms: u64 = rest.parse().map_err(|_| fail("BadArgument", "sleep MS"))?;
                self.wait(Duration::from_millis(ms))?;
            }
            "spin" => self.wait(Duration::from_secs(3600))?,
            "input" | "password" => {
                let got = stdin
                    .request(rest, cmd == "password")
                    .map_err(|e| fail("StdinNotAllowed", &e.to_string()))?;
                self.out.stream("stdout", &format!("got: {got}\n"));
            }
            "error" => {
                let (name, msg) = rest.split_once(' ').unwrap_or((rest, ""));
                return Err(fail(name, msg));
            }
            "panic" => panic!("{rest}"),
            "touch" => {
                std::fs::write(rest, b"").map_err(|e| fail("TouchFailed", &e.to_string()))?;
            }
            "bigdisplay" => {
                let mib: usize = rest.parse().map_err(|_| fail("BadArgument", "bigdisplay MIB"))?;
                self.out.display(text(&"x".repeat(mib << 20)), json!({}), None, false);
            }
            "" => {}
            other => return Err(fail("UnknownCommand", other)),
        }
        Ok(())
    }
}

fn fail(ename: &str, evalue: &str) -> ErrorContent {
    ErrorContent {
        ename: ename.to_owned(),
        evalue: evalue.to_owned(),
        traceback: vec![format!("{ename}: {evalue}")],
    }
}

fn interrupted() -> ErrorContent {
    fail("Interrupted", "the cell was interrupted")
}

impl Engine for MockEngine {
    fn execute(&mut self, cell: &Cell, stdin: &mut dyn StdinPort) -> Executed {
        self.interrupted.0.store(false, Ordering::SeqCst);
        let mut result = None;
        let mut outcome = Outcome::Ok { result: None };
        for line in cell.code.lines() {
            if let Err(e) = self.run_line(line.trim_start(), &mut result, stdin) {
                outcome = Outcome::Error(e);
                break;
            }
        }
        if let Outcome::Ok { result: r } = &mut outcome {
            *r = result;
        }
        Executed {
            outcome,
            metadata: json!({}),
        }
    }

    fn complete(&mut self, code: &str, cursor: usize) -> Completions {
        if code.contains("panic!") {
            panic!("the mock engine panicked while completing");
        }
        let before: String = code.chars().take(cursor).collect();
        let start = before
            .char_indices()
            .rev()
            .find(|(_, c)| !c.is_alphanumeric())
            .map(|(i, _)| before[..=i].chars().count())
            .unwrap_or(0);
        let prefix: String = before.chars().skip(start).collect();
        let candidates = WORDS
            .iter()
            .filter(|w| w.starts_with(&prefix))
            .map(|w| Candidate { text: w.to_string(), kind: "keyword".into(), signature: None })
            .collect();
        Completions { candidates, cursor_start: start, cursor_end: cursor }
    }

    fn inspect(&mut self, code: &str, cursor: usize, _detail: u8) -> Option<MimeBundle> {
        if code.contains("panic!") {
            panic!("the mock engine panicked while inspecting");
        }
        let word: String = code
            .chars()
            .take(cursor)
            .collect::<String>()
            .rsplit(|c: char| !c.is_alphanumeric())
            .next()
            .unwrap_or_default()
            .to_owned();
        WORDS.contains(&word.as_str()).then(|| {
            [("text/plain".to_owned(), Value::from(format!("{word}: a mock command")))].into()
        })
    }

    fn interrupter(&self) -> Arc<dyn Interrupter> {
        self.interrupted.clone()
    }
}
