//! The Rust engine: evcxr's `CommandContext` behind the [`Engine`] trait.
//!
//! evcxr compiles each cell into a shared library and runs it in a separate
//! evaluation process (this same binary in runtime mode). This adapter adds
//! what the protocol needs on top: output captured live through
//! [`capture`](super::capture), panics and process deaths turned into
//! errors, compile errors rendered against the cell's own lines, interrupts
//! that stop a compile or a running cell, per-cell timing and CPU figures,
//! and a record of the cells that succeeded (for replay after a crash).

use super::capture::{with_plain, IoServer};
use super::{byte_to_char, char_to_byte, Cell, Completions, Engine, Executed, Interrupter, Outcome, StdinError, StdinPort};
use crate::iopub::Output;
use crate::messages::{ErrorContent, MimeBundle};
use anyhow::{Context, Result};
use evcxr::{CommandContext, CompilationError, EvalCallbacks, Error as EvcxrError};
use serde_json::{json, Value};
use std::cell::RefCell;
use std::process::Child;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const RED: &str = "\x1b[31m";
const BOLD_RED: &str = "\x1b[1;31m";
const BLUE: &str = "\x1b[34m";
const CYAN: &str = "\x1b[36m";
const RESET: &str = "\x1b[0m";

/// Stops cells from the control thread.
struct Control {
    child: Arc<Mutex<Child>>,
    running: AtomicBool,
    interrupted: AtomicBool,
}

impl Control {
    fn child_pid(&self) -> Option<i32> {
        self.child.lock().ok().map(|c| c.id() as i32)
    }
}

impl Interrupter for Control {
    fn interrupt(&self) {
        if !self.running.load(Ordering::SeqCst) {
            return;
        }
        self.interrupted.store(true, Ordering::SeqCst);
        let me = std::process::id() as i32;
        let runtime = self.child_pid();
        let builds: Vec<i32> = procs::children(me)
            .into_iter()
            .filter(|&p| Some(p) != runtime)
            .collect();
        if builds.is_empty() {
            // Running: stop the evaluation process and whatever it started.
            if let Some(pid) = runtime {
                procs::kill_tree(pid);
            }
        } else {
            // Compiling: stop cargo and rustc; the evaluation process and its
            // variables are untouched.
            for pid in builds {
                procs::kill_tree(pid);
            }
        }
    }

    fn terminate(&self) {
        for pid in procs::children(std::process::id() as i32) {
            procs::kill_tree(pid);
        }
    }
}

/// Small /proc helpers: children, process trees, CPU time.
mod procs {
    use std::collections::HashMap;

    fn parents() -> HashMap<i32, i32> {
        let mut map = HashMap::new();
        let Ok(dir) = std::fs::read_dir("/proc") else { return map };
        for entry in dir.flatten() {
            let Some(pid) = entry.file_name().to_str().and_then(|s| s.parse::<i32>().ok()) else {
                continue;
            };
            if let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) {
                // The command name may contain spaces: fields start after ')'.
                if let Some(rest) = stat.rsplit_once(')').map(|(_, r)| r) {
                    if let Some(ppid) = rest.split_whitespace().nth(1).and_then(|s| s.parse().ok()) {
                        map.insert(pid, ppid);
                    }
                }
            }
        }
        map
    }

    pub fn children(pid: i32) -> Vec<i32> {
        parents().into_iter().filter(|&(_, pp)| pp == pid).map(|(p, _)| p).collect()
    }

    /// SIGKILL to a process and all its descendants (children first seen, all killed).
    pub fn kill_tree(pid: i32) {
        let map = parents();
        let mut all = vec![pid];
        let mut i = 0;
        while i < all.len() {
            let p = all[i];
            all.extend(map.iter().filter(|&(_, &pp)| pp == p).map(|(&c, _)| c));
            i += 1;
        }
        for p in all {
            // SAFETY: kill has no memory effects.
            unsafe {
                libc::kill(p, libc::SIGKILL);
            }
        }
    }

    /// CPU time (user + system, including waited-for children) of a process.
    pub fn cpu_seconds(pid: i32) -> Option<f64> {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
        let rest = stat.rsplit_once(')')?.1;
        let f: Vec<&str> = rest.split_whitespace().collect();
        // After ')': state(0) ppid(1) … utime(11) stime(12) cutime(13) cstime(14)
        let ticks: f64 = [11, 12, 13, 14]
            .iter()
            .filter_map(|&i| f.get(i)?.parse::<f64>().ok())
            .sum();
        // SAFETY: sysconf is a pure query.
        let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
        Some(ticks / hz.max(1.0))
    }
}

/// A cell that ran to completion, for replay after the evaluation process dies.
#[derive(Debug, Clone)]
pub struct Succeeded {
    pub code: String,
    pub defined: Vec<String>,
}

pub struct EvcxrEngine {
    ctx: CommandContext,
    io: IoServer,
    output: Output,
    control: Arc<Control>,
    timing: bool,
    /// evcxr_input has been added as a dependency.
    input_crate: bool,
    cores: usize,
    /// Cells that succeeded since the evaluation process last started.
    pub succeeded: Vec<Succeeded>,
}

impl EvcxrEngine {
    /// Starts the capture server and evcxr (which compiles a first cell to
    /// check the toolchain: seconds, not milliseconds).
    pub fn new(output: Output) -> Result<EvcxrEngine> {
        let io = IoServer::start(output.clone()).context("cannot start output capture")?;
        if std::env::var_os(super::capture::IO_ENV).is_none() {
            log::warn!("{} is not set: evaluation output will not be captured live", super::capture::IO_ENV);
        }
        forward_build_progress(output.clone());
        let started = Instant::now();
        let (ctx, outputs) = CommandContext::new().map_err(|e| anyhow::anyhow!("{e}"))
            .context("the evcxr engine could not start (is cargo on PATH?)")?;
        log::info!("engine ready in {:.2} s", started.elapsed().as_secs_f64());
        // evcxr evaluates `42` to check the toolchain: that value is no cell's.
        io.discard();
        // Anything evcxr still forwards itself (it should be little) is output too.
        for (rx, name) in [(outputs.stdout, "stdout"), (outputs.stderr, "stderr")] {
            let out = output.clone();
            std::thread::Builder::new().name(format!("evcxr-{name}")).spawn(move || {
                for line in rx {
                    out.stream(name, &format!("{line}\n"));
                }
            })?;
        }
        let control = Arc::new(Control {
            child: ctx.process_handle(),
            running: AtomicBool::new(false),
            interrupted: AtomicBool::new(false),
        });
        Ok(EvcxrEngine {
            ctx,
            io,
            output,
            control,
            timing: false,
            input_crate: false,
            cores: std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1),
            succeeded: Vec::new(),
        })
    }

    fn variables(&self) -> Vec<String> {
        let mut v: Vec<String> = self.ctx.variables_and_types().map(|(n, _)| n.to_owned()).collect();
        v.sort();
        v
    }

    /// The cell line that a panic location in the generated source points at.
    fn cell_line_of(&self, generated_line: usize, code: &str) -> Option<usize> {
        let src = self.ctx.last_source().ok()?;
        let text = src.lines().nth(generated_line.checked_sub(1)?)?.trim();
        if text.is_empty() {
            return None;
        }
        code.lines().position(|l| l.trim() == text).map(|i| i + 1)
    }

    fn panic_error(&self, text: Option<String>, code: &str) -> ErrorContent {
        let text = text.unwrap_or_else(|| "thread 'main' panicked at an unknown location:".to_owned());
        let mut lines = text.lines();
        let head = lines.next().unwrap_or_default();
        let message: String = lines.collect::<Vec<_>>().join("\n");
        // "thread '<unnamed>' (4242) panicked at src/lib.rs:12:5:"
        let loc = head
            .split_once(" panicked at ")
            .map(|(_, l)| l.trim_end().trim_end_matches(':'))
            .unwrap_or_default();
        let line_no = loc.split(':').nth(1).and_then(|l| l.parse::<usize>().ok());
        let where_ = match line_no.and_then(|l| self.cell_line_of(l, code)) {
            Some(n) => format!("cell line {n}"),
            None if loc.is_empty() => "an unknown location".to_owned(),
            None => format!("{loc} (in code the cell called)"),
        };
        let message = if message.trim().is_empty() { "explicit panic".to_owned() } else { message };
        ErrorContent {
            ename: "panic".into(),
            evalue: message.clone(),
            traceback: vec![
                format!("{BOLD_RED}panic{RESET} at {where_}:"),
                message,
                format!("{CYAN}Variables defined before this cell are kept; those this cell created are dropped.{RESET}"),
            ],
        }
    }

    fn died_error(&self, message: &str, lost: &[String], interrupted: bool, stderr_tail: &str) -> ErrorContent {
        let status = message
            .rsplit("Subprocess terminated with status: ")
            .next()
            .unwrap_or(message)
            .trim()
            .to_owned();
        let lost_text = if lost.is_empty() {
            "no variables were lost".to_owned()
        } else {
            format!("variables lost: {}", lost.join(", "))
        };
        let (ename, evalue) = if interrupted {
            (
                "Interrupted",
                format!("the cell was interrupted: the evaluation process was stopped ({status}); {lost_text}"),
            )
        } else {
            (
                "EvaluationProcessDied",
                format!("the evaluation process died ({status}); {lost_text}"),
            )
        };
        let mut tb = vec![format!("{BOLD_RED}{ename}{RESET}: {evalue}")];
        let last_words: Vec<&str> = stderr_tail.lines().rev().take(4).collect();
        if !interrupted && !last_words.is_empty() {
            tb.push(format!("last lines on stderr:\n  {}", last_words.into_iter().rev().collect::<Vec<_>>().join("\n  ")));
        }
        tb.push(format!(
            "{CYAN}Functions, types and :dep dependencies are kept. The next cell runs in a fresh evaluation process.{RESET}"
        ));
        ErrorContent { ename: ename.into(), evalue, traceback: tb }
    }

    fn error_from(&self, e: EvcxrError, code: &str, lost: &[String], stderr_tail: &str) -> ErrorContent {
        let interrupted = self.control.interrupted.load(Ordering::SeqCst);
        match e {
            EvcxrError::SubprocessTerminated(msg) => {
                let by_sigint = msg.contains("signal: 2 ") || msg.contains("SIGINT");
                self.died_error(&msg, lost, interrupted || by_sigint, stderr_tail)
            }
            _ if interrupted => ErrorContent {
                ename: "Interrupted".into(),
                evalue: "the cell was interrupted while it compiled; variables are kept".into(),
                traceback: vec![format!("{BOLD_RED}Interrupted{RESET}: compilation stopped; variables are kept")],
            },
            EvcxrError::CompilationErrors(errors) => compile_error(&errors, code),
            EvcxrError::TypeRedefinedVariablesLost(vars) => ErrorContent {
                ename: "VariablesLost".into(),
                evalue: format!("a type was redefined, so these variables were dropped: {}", vars.join(", ")),
                traceback: vec![format!("{BOLD_RED}VariablesLost{RESET}: redefining a type dropped: {}", vars.join(", "))],
            },
            EvcxrError::Message(m) => ErrorContent {
                ename: "Error".into(),
                evalue: m.clone(),
                traceback: vec![format!("{BOLD_RED}Error{RESET}: {m}")],
            },
        }
    }
}

/// Renders rustc's errors against the cell's own lines.
fn compile_error(errors: &[CompilationError], code: &str) -> ErrorContent {
    let lines: Vec<&str> = code.lines().collect();
    let mut tb = Vec::new();
    for e in errors {
        let level = e.level();
        let code_part = e.code().map(|c| format!("[{c}]")).unwrap_or_default();
        let color = if level == "error" { BOLD_RED } else { "\x1b[1;33m" };
        let mut block = format!("{color}{level}{code_part}{RESET}: {}", e.message());
        for span_msg in e.spanned_messages() {
            let Some(span) = &span_msg.span else {
                if !span_msg.label.is_empty() {
                    block.push_str(&format!("\n   {BLUE}={RESET} {}", span_msg.label));
                }
                continue;
            };
            block.push_str(&format!(
                "\n  {BLUE}-->{RESET} cell line {}, column {}",
                span.start_line, span.start_column
            ));
            if let Some(src) = lines.get(span.start_line.saturating_sub(1)) {
                let width = if span.end_line == span.start_line {
                    span.end_column.saturating_sub(span.start_column).max(1)
                } else {
                    src.chars().count().saturating_sub(span.start_column - 1).max(1)
                };
                let num = span.start_line.to_string();
                let pad = " ".repeat(num.len());
                block.push_str(&format!("\n{BLUE}{pad} |{RESET}\n{BLUE}{num} |{RESET} {src}"));
                block.push_str(&format!(
                    "\n{BLUE}{pad} |{RESET} {}{RED}{}{} {}{RESET}",
                    " ".repeat(span.start_column.saturating_sub(1)),
                    if span_msg.is_primary { "^" } else { "-" }.repeat(width),
                    "",
                    span_msg.label
                ));
            }
        }
        for help in e.help() {
            block.push_str(&format!("\n   {BLUE}={RESET} help: {help}"));
        }
        tb.push(block);
    }
    if tb.is_empty() {
        tb.push(format!("{BOLD_RED}error{RESET}: compilation failed"));
    }
    let first = errors.first();
    ErrorContent {
        ename: "CompilationError".into(),
        evalue: first
            .map(|e| {
                let at = e
                    .primary_spanned_message()
                    .and_then(|m| m.span.as_ref())
                    .map(|s| format!(" (cell line {}, column {})", s.start_line, s.start_column))
                    .unwrap_or_default();
                format!("{}{}", e.message(), at)
            })
            .unwrap_or_else(|| "compilation failed".into()),
        traceback: tb,
    }
}

/// evcxr reports dependency builds ("Compiling rayon v1.12.0") on the
/// kernel's stderr. Route that stderr through a pipe: build lines also go to
/// the running cell, everything goes on to the kernel log.
fn forward_build_progress(output: Output) {
    // SAFETY: fd juggling on fds created here; dup2 replaces fd 2 atomically.
    let (reader, log) = unsafe {
        let mut fds = [0; 2];
        let log = libc::dup(2);
        if log < 0 || libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) != 0 || libc::dup2(fds[1], 2) < 0 {
            return;
        }
        libc::close(fds[1]);
        use std::os::fd::FromRawFd;
        (std::fs::File::from_raw_fd(fds[0]), std::fs::File::from_raw_fd(log))
    };
    crate::logging::redirect(log.try_clone().ok());
    let _ = std::thread::Builder::new().name("build-progress".into()).spawn(move || {
        use std::io::{BufRead, Write};
        let mut log = log;
        for line in std::io::BufReader::new(reader).lines().map_while(Result::ok) {
            let t = line.trim_start();
            if t.starts_with("Compiling ") || t.starts_with("Downloaded ") || t.starts_with("Updating ") {
                output.stream("stderr", &format!("{t}\n"));
            }
            let _ = writeln!(log, "{line}");
        }
    });
}

impl Engine for EvcxrEngine {
    fn execute(&mut self, cell: &Cell, stdin: &mut dyn StdinPort) -> Executed {
        for line in cell.code.lines().map(str::trim) {
            if line == ":timing" {
                self.timing = !self.timing;
            }
            if line == ":quit" {
                let evalue = "`:quit` would end the kernel behind Jupyter's back; use Kernel → Shut Down (or Restart) instead".to_owned();
                return Executed {
                    outcome: Outcome::Error(ErrorContent {
                        ename: "NotInJupyter".into(),
                        traceback: vec![format!("{BOLD_RED}NotInJupyter{RESET}: {evalue}")],
                        evalue,
                    }),
                    metadata: json!({}),
                };
            }
        }
        if !self.input_crate && cell.code.contains("evcxr_input") {
            // Cells may call evcxr_input::get_string without a :dep line.
            match self.ctx.execute(":dep evcxr_input = \"1\"") {
                Ok(_) => self.input_crate = true,
                Err(e) => log::warn!("could not add evcxr_input: {e}"),
            }
        }
        let vars_before = self.variables();
        let mark = self.io.mark();
        self.control.interrupted.store(false, Ordering::SeqCst);
        self.control.running.store(true, Ordering::SeqCst);
        let stdin_error: RefCell<Option<(String, StdinError)>> = RefCell::new(None);
        let stdin = RefCell::new(stdin);
        let mut callbacks = EvalCallbacks {
            input_reader: &|req| match stdin.borrow_mut().request(&req.prompt, req.is_password) {
                Ok(s) => s,
                Err(e) => {
                    *stdin_error.borrow_mut() = Some((req.prompt.clone(), e));
                    String::new()
                }
            },
        };
        let pid = self.control.child_pid();
        let sampler = self.timing.then(super::cpu_strip::Sampler::start);
        let cpu0 = pid.and_then(procs::cpu_seconds);
        let t0 = Instant::now();
        let result = self.ctx.execute_with_callbacks(&cell.code, &mut callbacks);
        let wall = t0.elapsed();
        let cpu1 = pid.and_then(procs::cpu_seconds);
        self.control.running.store(false, Ordering::SeqCst);
        let died = matches!(result, Err(EvcxrError::SubprocessTerminated(_)));
        // Fences come only when code ran in the evaluation process: not for
        // compile errors, nor for cells of `:` commands alone.
        let ran = match &result {
            Ok(outputs) => outputs.phases.iter().any(|p| p.name == "Execution"),
            Err(EvcxrError::TypeRedefinedVariablesLost(_)) => true,
            Err(_) => false,
        };
        let fin = if died {
            self.io.finish(&mark, pid.map(|p| p as u32), Duration::from_secs(1))
        } else if ran {
            self.io.finish(&mark, None, Duration::from_secs(5))
        } else {
            self.io.finish(&mark, None, Duration::ZERO)
        };

        let mut metadata = json!({});
        let outcome = match result {
            Ok(outputs) => {
                let run = outputs.phases.iter().filter(|p| p.name == "Execution").map(|p| p.duration).sum::<Duration>();
                let compile = wall.saturating_sub(run);
                let cpu = match (cpu0, cpu1) {
                    (Some(a), Some(b)) => Some((b - a).max(0.0)),
                    _ => None,
                };
                metadata = timing_metadata(compile, run, cpu, self.cores);
                if let Some(sampler) = sampler.filter(|_| self.timing) {
                    let line = timing_line(compile, run, cpu, self.cores);
                    // The strip is worth drawing only for cells that ran a while.
                    let strip = if run >= Duration::from_millis(100) {
                        super::cpu_strip::render_svg(&sampler.finish(run)).unwrap_or_default()
                    } else {
                        String::new()
                    };
                    let html = format!(
                        "<div style=\"color:#777;font-size:smaller\">{}</div>{strip}",
                        html_escape(&line)
                    );
                    self.output.display(
                        [("text/plain".to_owned(), Value::from(line)), ("text/html".to_owned(), Value::from(html))].into(),
                        json!({}),
                        None,
                        false,
                    );
                }
                if fin.panicked {
                    Outcome::Error(self.panic_error(fin.panic_text, &cell.code))
                } else if let Some((prompt, e)) = stdin_error.into_inner() {
                    Outcome::Error(ErrorContent {
                        ename: if e == StdinError::NotAllowed { "StdinNotAllowed" } else { "StdinError" }.into(),
                        evalue: format!("the cell asked for input ({prompt:?}) but {e}; the call returned an empty string"),
                        traceback: vec![format!("{BOLD_RED}StdinNotAllowed{RESET}: input({prompt:?}) failed: {e}")],
                    })
                } else {
                    let mut result: Option<MimeBundle> = None;
                    if !outputs.content_by_mime_type.is_empty() {
                        // Output of `:` commands such as :vars or :help.
                        result = Some(with_plain(
                            outputs.content_by_mime_type.into_iter().map(|(k, v)| (k, Value::from(v))).collect(),
                        ));
                    }
                    // A unit value `()` (a final `println!(…)` without semicolon) is no result.
                    let unit = |b: &MimeBundle| b.len() == 1 && b.get("text/plain").and_then(|v| v.as_str()) == Some("()");
                    if let Some(bundle) = fin.last_bundle.filter(|b| !unit(b)) {
                        if crate::syntax::has_tail_expression(&cell.code) && result.is_none() {
                            result = Some(with_plain(bundle));
                        } else {
                            self.output.display(with_plain(bundle), json!({}), None, false);
                        }
                    }
                    self.succeeded.push(Succeeded {
                        code: cell.code.clone(),
                        defined: self.variables().into_iter().filter(|v| !vars_before.contains(v)).collect(),
                    });
                    Outcome::Ok { result }
                }
            }
            Err(e) => {
                if died {
                    self.succeeded.clear();
                }
                Outcome::Error(self.error_from(e, &cell.code, &vars_before, &fin.stderr_tail))
            }
        };
        release_free_memory();
        Executed { outcome, metadata }
    }

    fn complete(&mut self, code: &str, cursor: usize) -> Completions {
        let byte = char_to_byte(code, cursor);
        let found = self.ctx.completions(code, byte);
        release_free_memory();
        match found {
            Ok(c) => Completions {
                types: c.completions.iter().map(|c| c.kind.to_owned()).collect(),
                matches: c.completions.into_iter().map(|c| c.code).collect(),
                cursor_start: byte_to_char(code, c.start_offset),
                cursor_end: byte_to_char(code, c.end_offset),
            },
            Err(e) => {
                log::info!("completion failed: {e}");
                Completions { cursor_start: cursor, cursor_end: cursor, ..Default::default() }
            }
        }
    }

    fn inspect(&mut self, code: &str, cursor: usize, _detail: u8) -> Option<MimeBundle> {
        let byte = char_to_byte(code, cursor);
        // Hover works on the identifier under or just before the cursor.
        let start = code[..byte]
            .rfind(|c: char| !(c.is_alphanumeric() || c == '_' || c == ':'))
            .map(|i| i + 1)
            .unwrap_or(0);
        let end = code[byte..]
            .find(|c: char| !(c.is_alphanumeric() || c == '_'))
            .map(|i| byte + i)
            .unwrap_or(code.len());
        let word = &code[start..end];
        if word.is_empty() {
            return None;
        }
        // hover_at describes the expression that ends at the position.
        match self.ctx.hover_at(code, end) {
            Ok((text, html)) if !text.is_empty() && text != "No documentation found" => {
                release_free_memory();
                Some(
                    [
                        ("text/plain".to_owned(), Value::from(text)),
                        ("text/html".to_owned(), Value::from(html)),
                    ]
                    .into(),
                )
            }
            Ok(_) => None,
            Err(e) => {
                log::info!("inspect failed: {e}");
                None
            }
        }
    }

    fn interrupter(&self) -> Arc<dyn Interrupter> {
        self.control.clone()
    }
}

/// rust-analyzer's passes free much of what they allocate, but the allocator
/// keeps it; hand it back so the kernel's resident memory stays small.
fn release_free_memory() {
    // SAFETY: malloc_trim only returns unused heap pages to the OS.
    unsafe {
        libc::malloc_trim(0);
    }
}

fn timing_metadata(compile: Duration, run: Duration, cpu: Option<f64>, cores: usize) -> Value {
    let run_s = run.as_secs_f64();
    json!({
        "threadbook": {
            "compile_seconds": compile.as_secs_f64(),
            "run_seconds": run_s,
            "cpu_seconds": cpu,
            "cpu_percent": cpu.filter(|_| run_s > 0.0).map(|c| 100.0 * c / run_s),
            "cores": cores,
        }
    })
}

fn timing_line(compile: Duration, run: Duration, cpu: Option<f64>, cores: usize) -> String {
    let run_s = run.as_secs_f64();
    let mut line = format!("compiled {:.2} s · ran {:.3} s", compile.as_secs_f64(), run_s);
    if let Some(c) = cpu {
        let pct = if run_s > 0.0 { format!(" ({:.0} %)", 100.0 * c / run_s) } else { String::new() };
        line.push_str(&format!(" · CPU {c:.2} s{pct} on {cores} cores"));
    }
    line
}

fn html_escape(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;")
}
