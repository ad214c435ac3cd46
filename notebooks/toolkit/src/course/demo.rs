//! Course scaffolding: crash and hang demonstrations, each run in a child process (`tb-demo`) with a timeout, so
//! the notebook's own process survives: a thread that panics, a thread that aborts, a segfault,
//! a stack overflow, a deadlock… [`run`] reports what happened as a [`DemoOutcome`]: exit code
//! or signal, what the child printed, whether it hung and had to be killed, how long it took.
//!
//! ```text
//! let o = tb::demo::run("abort-in-thread", Duration::from_secs(5));
//! assert_eq!(o.signal_name(), Some("SIGABRT"));
//! o.show();
//! ```
//!
//! The binary is built on first use like `tb-worker` (see [`super::bins`]); its source is
//! `src/bin/tb-demo.rs`, each scenario a few lines.

use std::io::Read;
use std::path::PathBuf;
use std::process::{Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use crate::machine::Context;
use crate::display::{display, escape_html, table};
use crate::measure::fmt_duration;

/// A `Command` for `tb-demo SCENARIO ARGS…` (`scenario` is split on whitespace, e.g.
/// `"exit 3"`), to customise before spawning. Backtraces are switched off
/// (`RUST_BACKTRACE` removed), so a panic shows its message, not pages of frames.
fn command(scenario: &str) -> Command {
    command_at(super::bins::demo_path(), scenario)
}

fn command_at(path: PathBuf, scenario: &str) -> Command {
    let mut c = Command::new(path);
    c.args(scenario.split_whitespace())
        .env_remove("RUST_BACKTRACE")
        .env_remove("RUST_LIB_BACKTRACE");
    c
}

/// The name of a Unix signal number (`6` → `SIGABRT`), if it is a common one.
fn signal_name(signal: i32) -> Option<&'static str> {
    Some(match signal {
        libc::SIGHUP => "SIGHUP",
        libc::SIGINT => "SIGINT",
        libc::SIGQUIT => "SIGQUIT",
        libc::SIGILL => "SIGILL",
        libc::SIGTRAP => "SIGTRAP",
        libc::SIGABRT => "SIGABRT",
        libc::SIGBUS => "SIGBUS",
        libc::SIGFPE => "SIGFPE",
        libc::SIGKILL => "SIGKILL",
        libc::SIGUSR1 => "SIGUSR1",
        libc::SIGSEGV => "SIGSEGV",
        libc::SIGUSR2 => "SIGUSR2",
        libc::SIGPIPE => "SIGPIPE",
        libc::SIGALRM => "SIGALRM",
        libc::SIGTERM => "SIGTERM",
        _ => return None,
    })
}

/// What happened to one demonstration's child process.
#[derive(Clone, Debug, PartialEq)]
pub struct DemoOutcome {
    /// The scenario (or command) that ran, e.g. `"exit 3"`.
    pub scenario: String,
    /// The exit code, if the process exited by itself (`None` if a signal ended it).
    pub exit_code: Option<i32>,
    /// The signal that ended the process, if one did (`SIGKILL` = 9 after a timeout).
    pub signal: Option<i32>,
    /// Everything the child wrote to stdout.
    pub stdout: String,
    /// Everything the child wrote to stderr.
    pub stderr: String,
    /// True when it was still running at the timeout and was killed.
    pub timed_out: bool,
    /// From spawning to reaping the child.
    pub elapsed: Duration,
}

impl DemoOutcome {
    /// The name of [`DemoOutcome::signal`], e.g. `Some("SIGABRT")`.
    pub fn signal_name(&self) -> Option<&'static str> {
        self.signal.and_then(signal_name)
    }

    /// True when the process exited by itself with code 0.
    pub fn success(&self) -> bool {
        self.exit_code == Some(0) && !self.timed_out
    }


    /// One phrase: `exited with code 0`, `killed by signal 6 (SIGABRT)`,
    /// `hung: killed after the 1.00 s timeout (signal 9, SIGKILL)`.
    pub fn verdict(&self) -> String {
        let sig = |s: i32| match signal_name(s) {
            Some(n) => format!("signal {s} ({n})"),
            None => format!("signal {s}"),
        };
        if self.timed_out {
            let how = match (self.signal, self.signal.and_then(signal_name)) {
                (Some(s), Some(n)) => format!("signal {s}, {n}"),
                (Some(s), None) => format!("signal {s}"),
                _ => "killed".into(),
            };
            return format!(
                "hung: killed after the {} timeout ({how})",
                fmt_duration(self.elapsed)
            );
        }
        match (self.exit_code, self.signal) {
            (Some(c), _) => format!("exited with code {c}"),
            (None, Some(s)) => format!("killed by {}", sig(s)),
            (None, None) => "ended (no exit code, no signal)".into(),
        }
    }

    /// The last `n` lines of stdout (or stderr), joined by newlines; earlier lines are
    /// summarised as `… K more lines`.
    fn tail(text: &str, n: usize) -> String {
        let lines: Vec<&str> = text.trim_matches('\n').lines().collect();
        if lines.len() <= n {
            return lines.join("\n");
        }
        let skipped = lines.len() - n;
        format!(
            "… {skipped} line{} before\n{}",
            if skipped == 1 { "" } else { "s" },
            lines[skipped..].join("\n")
        )
    }

    fn row(&self) -> Vec<String> {
        vec![
            self.scenario.clone(),
            self.verdict(),
            self.exit_code
                .map(|c| c.to_string())
                .unwrap_or_else(|| "–".into()),
            match (self.signal, self.signal_name()) {
                (Some(s), Some(n)) => format!("{s} {n}"),
                (Some(s), None) => s.to_string(),
                _ => "–".into(),
            },
            fmt_duration(self.elapsed),
        ]
    }

    /// The display bundle: a table (scenario, outcome, exit code, signal, time) and what the
    /// child printed (the last lines of stdout and stderr), as text and HTML.
    fn render(&self) -> Vec<(&'static str, String)> {
        render_outcomes(std::slice::from_ref(self), 12)
    }

    /// Shows the outcome.
    pub fn show(&self) {
        display(&self.render());
    }

}

/// `scenario: verdict (time)`, then stdout and stderr, each indented.
impl std::fmt::Display for DemoOutcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}: {} ({})",
            self.scenario,
            self.verdict(),
            fmt_duration(self.elapsed)
        )?;
        for (name, text) in [("stdout", &self.stdout), ("stderr", &self.stderr)] {
            if !text.trim().is_empty() {
                write!(f, "\n  {name}:")?;
                for line in text.lines() {
                    write!(f, "\n    {line}")?;
                }
            }
        }
        Ok(())
    }
}

const HEADERS: [&str; 5] = ["scenario", "outcome", "exit code", "signal", "time"];

/// The table of several outcomes as `(html, text)`: one row each.
fn outcomes_table(outcomes: &[DemoOutcome]) -> (String, String) {
    let rows: Vec<Vec<String>> = outcomes.iter().map(DemoOutcome::row).collect();
    table(&HEADERS, &rows)
}

/// The display bundle for several outcomes: the table, then each one's last `lines` lines of
/// output, and the context line (the times are wall times of whole child processes).
fn render_outcomes(outcomes: &[DemoOutcome], lines: usize) -> Vec<(&'static str, String)> {
    let (html_table, text_table) = outcomes_table(outcomes);
    let ctx = Context::now();
    let mut text = text_table;
    let mut html = format!("<div class=\"tb-demo\">{html_table}");
    for o in outcomes {
        for (name, out) in [("stdout", &o.stdout), ("stderr", &o.stderr)] {
            if out.trim().is_empty() {
                continue;
            }
            let tail = DemoOutcome::tail(out, lines);
            text.push_str(&format!("\n{} · {name}:", o.scenario));
            for l in tail.lines() {
                text.push_str(&format!("\n  {l}"));
            }
            html.push_str(&format!(
                "<div style=\"margin-top:4px\"><b>{}</b> · {name}:</div>\
                 <pre style=\"margin:0 0 0 1em;{}\">{}</pre>",
                escape_html(&o.scenario),
                if name == "stderr" {
                    "color:#b00020"
                } else {
                    ""
                },
                escape_html(&tail)
            ));
        }
    }
    text.push('\n');
    text.push_str(&ctx.text());
    html.push_str(&ctx.html());
    html.push_str("</div>");
    vec![("text/plain", text), ("text/html", html)]
}

/// Shows several outcomes as one table (a crash matrix), with each one's output beneath.
pub fn show_outcomes(outcomes: &[DemoOutcome]) {
    display(&render_outcomes(outcomes, 6));
}

/// Runs `tb-demo SCENARIO` (e.g. `"exit 3"`) in a child process; kills it (SIGKILL) if it is
/// still running after `timeout`. Panics only if the binary cannot be built or started.
pub fn run(scenario: &str, timeout: Duration) -> DemoOutcome {
    let label = scenario.split_whitespace().collect::<Vec<_>>().join(" ");
    run_command(label, command(scenario), timeout).unwrap_or_else(|e| panic!("{e}"))
}

/// Runs each scenario in turn with the same timeout.
pub fn run_all(scenarios: &[&str], timeout: Duration) -> Vec<DemoOutcome> {
    scenarios.iter().map(|s| run(s, timeout)).collect()
}

/// Runs any command (stdin empty, stdout and stderr captured) with a timeout, e.g. a
/// `tb-demo` scenario under `taskset`; `label` names it in the outcome.
pub fn run_command(
    label: impl Into<String>,
    mut cmd: Command,
    timeout: Duration,
) -> Result<DemoOutcome, String> {
    let label = label.into();
    let start = Instant::now();
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("could not start {label:?}: {e}"))?;
    // Read both pipes in threads, so a child printing a lot never blocks on a full pipe.
    let reader = |pipe: Option<Box<dyn Read + Send>>| {
        std::thread::spawn(move || {
            let mut buf = Vec::new();
            if let Some(mut p) = pipe {
                let _ = p.read_to_end(&mut buf);
            }
            String::from_utf8_lossy(&buf).into_owned()
        })
    };
    let out = reader(
        child
            .stdout
            .take()
            .map(|p| Box::new(p) as Box<dyn Read + Send>),
    );
    let err = reader(
        child
            .stderr
            .take()
            .map(|p| Box::new(p) as Box<dyn Read + Send>),
    );
    let mut timed_out = false;
    let status: ExitStatus = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) => {}
            Err(e) => return Err(format!("waiting for {label:?} failed: {e}")),
        }
        if start.elapsed() >= timeout {
            timed_out = true;
            let _ = child.kill();
            break child
                .wait()
                .map_err(|e| format!("waiting for {label:?} failed: {e}"))?;
        }
        std::thread::sleep(Duration::from_millis(1));
    };
    let elapsed = start.elapsed();
    let stdout = out.join().unwrap_or_default();
    let stderr = err.join().unwrap_or_default();
    use std::os::unix::process::ExitStatusExt;
    Ok(DemoOutcome {
        scenario: label,
        exit_code: status.code(),
        signal: status.signal(),
        stdout,
        stderr,
        timed_out,
        elapsed,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn outcome(exit_code: Option<i32>, signal: Option<i32>, timed_out: bool) -> DemoOutcome {
        DemoOutcome {
            scenario: "x".into(),
            exit_code,
            signal,
            stdout: "a\nb\nc\n".into(),
            stderr: String::new(),
            timed_out,
            elapsed: Duration::from_millis(12),
        }
    }

    #[test]
    fn signal_names() {
        assert_eq!(signal_name(6), Some("SIGABRT"));
        assert_eq!(signal_name(11), Some("SIGSEGV"));
        assert_eq!(signal_name(9), Some("SIGKILL"));
        assert_eq!(signal_name(1000), None);
    }

    #[test]
    fn verdicts() {
        assert_eq!(
            outcome(Some(0), None, false).verdict(),
            "exited with code 0"
        );
        assert!(outcome(Some(0), None, false).success());
        assert_eq!(
            outcome(None, Some(6), false).verdict(),
            "killed by signal 6 (SIGABRT)"
        );
        assert!(!outcome(None, Some(6), false).success());
        assert_eq!(
            outcome(None, Some(9), true).verdict(),
            "hung: killed after the 12.0 ms timeout (signal 9, SIGKILL)"
        );
    }

    #[test]
    fn tail_keeps_the_last_lines() {
        assert_eq!(DemoOutcome::tail("a\nb\nc\n", 5), "a\nb\nc");
        assert_eq!(DemoOutcome::tail("a\nb\nc\n", 2), "… 1 line before\nb\nc");
        assert_eq!(
            DemoOutcome::tail("\nthread 'x' panicked\n", 5),
            "thread 'x' panicked"
        );
    }

    #[test]
    fn rendering_has_a_table_the_output_and_the_context() {
        let o = outcome(None, Some(11), false);
        let bundle = o.render();
        assert_eq!(bundle[0].0, "text/plain");
        let text = &bundle[0].1;
        let header: Vec<&str> = text.lines().next().unwrap().split("  ").collect();
        assert_eq!(header[0], "scenario");
        assert!(text.contains("killed by signal 11 (SIGSEGV)"), "{text}");
        assert!(text.contains("11 SIGSEGV"), "{text}");
        assert!(text.contains("x · stdout:\n  a\n  b\n  c"), "{text}");
        assert!(text.contains("cores"), "the context line: {text}");
        let html = &bundle[1].1;
        assert!(html.contains("<table>") && html.contains("<pre"), "{html}");
        assert!(html.contains("tb-context"));
        let shown = o.to_string();
        assert!(
            shown.starts_with("x: killed by signal 11 (SIGSEGV) (12.0 ms)"),
            "{shown}"
        );
    }

    #[test]
    fn run_command_times_out_and_kills() {
        let mut c = Command::new("sleep");
        c.arg("5");
        let o = run_command("sleep 5", c, Duration::from_millis(100)).unwrap();
        assert!(o.timed_out);
        assert_eq!(o.signal, Some(libc::SIGKILL));
        assert_eq!(o.exit_code, None);
        assert!(o.elapsed < Duration::from_secs(4), "{:?}", o.elapsed);
    }

    #[test]
    fn run_command_reports_exit_code_and_output() {
        let mut c = Command::new("sh");
        c.args(["-c", "echo out; echo err >&2; exit 3"]);
        let o = run_command("sh", c, Duration::from_secs(10)).unwrap();
        assert_eq!(o.exit_code, Some(3));
        assert_eq!(o.signal, None);
        assert_eq!(o.stdout, "out\n");
        assert_eq!(o.stderr, "err\n");
        assert!(!o.timed_out);
    }
}
