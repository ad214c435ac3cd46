//! The Rust engine: evcxr's `CommandContext` behind the [`Engine`] trait.
//!
//! evcxr compiles each cell into a shared library and runs it in a separate
//! evaluation process (this same binary in runtime mode). This adapter adds
//! what the protocol needs on top, one part per file:
//! - [`capture`]: the evaluation process's output, live, read by the kernel;
//! - [`process`]: the process tree (interrupts stop cargo/rustc or the
//!   evaluation process; CPU time);
//! - [`replay`]: the record of cells that succeeded, and the variables it
//!   rebuilds when the evaluation process is lost;
//! - [`report`]: the errors a learner reads.
//!
//! Timing figures and the `:timing` view are in [`super::timing`] and
//! [`super::cpu_strip`].

pub mod capture;
pub mod process;
pub mod replay;
pub mod report;

use self::capture::{with_plain, Capture};
use self::replay::{CellRecord, Plan, Record, Var};
use self::report::{Loss, Restore};
use super::timing::CellTiming;
use super::{byte_to_char, char_to_byte, Candidate, Cell, Completions, Engine, Executed, Interrupter, Outcome, StdinError, StdinPort};
use crate::iopub::Output;
use crate::messages::{ErrorContent, MimeBundle};
use anyhow::{Context, Result};
use evcxr::{CommandContext, EvalCallbacks, EvalOutputs, EvalStage, Error as EvcxrError};
use serde_json::{json, Value};
use std::cell::RefCell;
use std::process::Child;
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// rust-analyzer's policy: by default it analyses on first use (a completion,
/// an inspection, a variable type the compiler cannot name) and lets go of
/// its analysis — a few hundred MB — after 10 s without use.
/// `THREADBOOK_ANALYZER=eager` analyses ahead (at start and after each
/// `:dep`) and keeps it; `THREADBOOK_ANALYZER_IDLE_SECS=N` sets the idle time.
fn analyzer_policy() -> evcxr::AnalyzerPolicy {
    let eager = std::env::var("THREADBOOK_ANALYZER").is_ok_and(|v| v == "eager");
    let idle = std::env::var("THREADBOOK_ANALYZER_IDLE_SECS")
        .ok()
        .and_then(|v| v.parse::<u64>().ok())
        .unwrap_or(10);
    evcxr::AnalyzerPolicy {
        warm_ahead: eager,
        retire_after: (!eager).then(|| Duration::from_secs(idle)),
    }
}

/// How long a completion may wait for rust-analyzer before it is answered
/// from the session's own names (consoles give up after a few seconds).
const COMPLETION_DEADLINE: Duration = Duration::from_millis(800);

/// After a lost process, variables whose cells ran longer than this are
/// restored only when a later cell uses them: the learner gets the rest back
/// at once, and an experiment that took seconds is not repeated for nothing.
const SLOW_CELL_SECONDS: f64 = 0.5;

/// The shortest run that `:timing` draws a per-core strip for (it samples
/// every 25 ms).
const STRIP_MIN_RUN: Duration = Duration::from_millis(100);

/// What the engine is doing, for the interrupter.
const IDLE: u8 = 0;
/// Preparing, analysing or compiling: an interrupt stops the compiler.
const COMPILING: u8 = 1;
/// The evaluation process runs the cell: an interrupt must stop the process.
const RUNNING: u8 = 2;

/// Stops cells from the control thread.
struct Control {
    child: Arc<Mutex<Child>>,
    stage: AtomicU8,
    interrupted: AtomicBool,
}

impl Control {
    fn child_pid(&self) -> Option<i32> {
        self.child.lock().ok().map(|c| c.id() as i32)
    }

    /// Marks an evaluation as under way until the guard is dropped — also
    /// when the engine panics — so an interrupt that comes while idle stops
    /// nothing.
    fn busy(&self) -> Busy<'_> {
        self.interrupted.store(false, Ordering::SeqCst);
        self.stage.store(COMPILING, Ordering::SeqCst);
        Busy(self)
    }

    /// evcxr's question before each step: go on unless interrupted.
    fn proceed(&self, stage: EvalStage) -> bool {
        if self.interrupted.load(Ordering::SeqCst) {
            return false;
        }
        let next = if stage == EvalStage::Run { RUNNING } else { COMPILING };
        self.stage.store(next, Ordering::SeqCst);
        // An interrupt that came while the stage changed is seen here.
        !self.interrupted.load(Ordering::SeqCst)
    }
}

struct Busy<'a>(&'a Control);

impl Drop for Busy<'_> {
    fn drop(&mut self) {
        self.0.stage.store(IDLE, Ordering::SeqCst);
    }
}

impl Interrupter for Control {
    fn interrupt(&self) {
        let stage = self.stage.load(Ordering::SeqCst);
        if stage == IDLE {
            return;
        }
        self.interrupted.store(true, Ordering::SeqCst);
        let runtime = self.child_pid();
        if self.stage.load(Ordering::SeqCst) == RUNNING {
            // Stop the evaluation process and whatever it started.
            if let Some(pid) = runtime {
                process::kill_tree(pid);
            }
            return;
        }
        // Compiling: stop cargo and rustc; the evaluation process and its
        // variables are untouched. (Before or between compiles there is
        // nothing to stop: the next step sees the flag.)
        let me = std::process::id() as i32;
        for pid in process::children(me) {
            if Some(pid) != runtime && !crate::lifecycle::is_watchdog(pid) {
                process::kill_tree(pid);
            }
        }
    }

    fn terminate(&self) {
        crate::lifecycle::kill_descendants();
    }
}

pub struct EvcxrEngine {
    ctx: CommandContext,
    capture: Capture,
    output: Output,
    control: Arc<Control>,
    /// `:timing` is on.
    timing: bool,
    /// evcxr_input has been added as a dependency.
    input_crate: bool,
    cores: usize,
    /// Cells that succeeded since the variables last started from nothing.
    record: Record,
    /// Rebuild variables after a lost evaluation process (`:replay on|off`).
    replay: bool,
    /// Variables of a lost process left to restore until a cell uses them
    /// (they need a slow cell), and how many cells were recorded at the loss.
    deferred: Vec<Var>,
    deferred_end: usize,
}

/// The kernel's own `:` commands in a cell, and the code left for evcxr.
struct Commands {
    code: String,
    /// `:timing` (toggle), `:timing on|off`: the setting from this cell on.
    timing: Option<TimingSetting>,
    /// `:timing cell`: timing for this cell only.
    timing_once: bool,
    quit: bool,
    replay: Option<Option<bool>>,
    /// `:clear` or `:restart`: evcxr starts the variables from nothing.
    fresh: bool,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum TimingSetting {
    Toggle,
    On,
    Off,
    /// Two toggles in one cell.
    Keep,
}

fn commands(code: &str) -> Commands {
    let mut c = Commands {
        code: String::new(),
        timing: None,
        timing_once: false,
        quit: false,
        replay: None,
        fresh: false,
    };
    for line in code.lines() {
        let words: Vec<&str> = line.split_whitespace().collect();
        match words.as_slice() {
            [":replay"] => c.replay = Some(None),
            [":replay", "on"] => c.replay = Some(Some(true)),
            [":replay", "off"] => c.replay = Some(Some(false)),
            [":timing"] => {
                c.timing = Some(match c.timing {
                    Some(TimingSetting::Toggle) => TimingSetting::Keep,
                    _ => TimingSetting::Toggle,
                })
            }
            [":timing", "on"] => c.timing = Some(TimingSetting::On),
            [":timing", "off"] => c.timing = Some(TimingSetting::Off),
            [":timing", "cell"] => c.timing_once = true,
            _ => {
                match words.first().copied() {
                    Some(":quit") => c.quit = true,
                    Some(":clear" | ":restart") => c.fresh = true,
                    _ => {}
                }
                c.code.push_str(line);
                c.code.push('\n');
            }
        }
    }
    c
}

impl EvcxrEngine {
    /// Starts evcxr (which compiles a first cell to check the toolchain:
    /// seconds, not milliseconds), its evaluation process and the capture.
    pub fn new(output: Output) -> Result<EvcxrEngine> {
        super::std_paths::prepare();
        let capture = Capture::new(output.clone());
        {
            // Dependency builds ("Compiling rayon v1.12.0") go to the running cell.
            let output = output.clone();
            evcxr::set_build_progress_handler(move |line| {
                let line = line.trim();
                log::info!("{line}");
                output.stream("stderr", &format!("{line}\n"));
            });
        }
        let started = Instant::now();
        // evcxr's own output channels stay silent: the capture reads the
        // evaluation process, and build progress has its handler.
        let (ctx, _outputs) = CommandContext::with_child_output(Arc::new(capture.clone()), analyzer_policy())
            .map_err(|e| anyhow::anyhow!("{e}"))
            .context("the evcxr engine could not start (is cargo on PATH?)")?;
        log::info!("engine ready in {:.2} s", started.elapsed().as_secs_f64());
        // evcxr evaluates `42` to check the toolchain: that value is no cell's.
        capture.discard();
        let control = Arc::new(Control {
            child: ctx.process_handle(),
            stage: AtomicU8::new(IDLE),
            interrupted: AtomicBool::new(false),
        });
        Ok(EvcxrEngine {
            ctx,
            capture,
            output,
            control,
            timing: false,
            input_crate: false,
            cores: std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1),
            record: Record::default(),
            replay: true,
            deferred: Vec::new(),
            deferred_end: 0,
        })
    }

    fn variables(&self) -> Vec<Var> {
        self.ctx
            .variables()
            .map(|(name, ty, mutable)| Var { name: name.to_owned(), ty: ty.to_owned(), mutable })
            .collect()
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
        let location = match line_no.and_then(|l| self.cell_line_of(l, code)) {
            Some(n) => format!("cell line {n}"),
            None if loc.is_empty() => "an unknown location".to_owned(),
            None => format!("{loc} (in code the cell called)"),
        };
        report::panic(&location, &message)
    }

    /// Runs code in the evaluation process with the interrupter armed;
    /// returns evcxr's result, the wall time, and the process's CPU time.
    fn run(&mut self, code: &str, stdin: &mut dyn StdinPort, stdin_error: &RefCell<Option<(String, StdinError)>>) -> (Result<EvalOutputs, EvcxrError>, Duration, Option<f64>) {
        let stdin = RefCell::new(stdin);
        let control = self.control.clone();
        let mut callbacks = EvalCallbacks {
            input_reader: &|req| match stdin.borrow_mut().request(&req.prompt, req.is_password) {
                Ok(s) => s,
                Err(e) => {
                    *stdin_error.borrow_mut() = Some((req.prompt.clone(), e));
                    String::new()
                }
            },
            proceed: &|stage| control.proceed(stage),
        };
        let pid = self.control.child_pid();
        let cpu0 = pid.and_then(process::cpu_seconds);
        let t0 = Instant::now();
        let result = {
            let _busy = self.control.busy();
            inject_fault(code);
            self.ctx.execute_with_callbacks(code, &mut callbacks)
        };
        let wall = t0.elapsed();
        let cpu = match (cpu0, pid.and_then(process::cpu_seconds)) {
            (Some(a), Some(b)) => Some((b - a).max(0.0)),
            _ => None,
        };
        (result, wall, cpu)
    }

    /// Rebuilds `live` (variables held when the first `end` recorded cells
    /// had run) in the evaluation process, quietly; those that need a cell
    /// slower than `slow` seconds are left in the plan's `deferred`.
    fn restore(&mut self, live: &[Var], end: usize, slow: f64) -> (Plan, Duration, Result<(), String>) {
        let plan = self.record.plan(live, end, slow);
        if plan.is_empty() {
            return (plan, Duration::ZERO, Ok(()));
        }
        let code = plan.code();
        log::info!("restoring {} variables by running cells {:?} again", plan.restored.len(), plan.counts);
        log::debug!("replay code:\n{code}");
        self.output.suppress(true);
        let mark = self.capture.mark();
        let t0 = Instant::now();
        let control = self.control.clone();
        let mut callbacks = EvalCallbacks { proceed: &|stage| control.proceed(stage), ..Default::default() };
        let result = {
            let _busy = self.control.busy();
            self.ctx.execute_with_callbacks(&code, &mut callbacks)
        };
        let pid = self.control.child_pid().map(|p| p as u32);
        let died = matches!(result, Err(EvcxrError::SubprocessTerminated(_)));
        let fin = self.capture.finish(&mark, if died { pid } else { None }, Duration::from_secs(if died { 1 } else { 5 }));
        let took = t0.elapsed();
        self.output.suppress(false);
        let outcome = match result {
            _ if self.control.interrupted.load(Ordering::SeqCst) => Err("it was interrupted".to_owned()),
            Ok(_) if fin.panicked => Err(format!(
                "a cell panicked: {}",
                fin.panic_text.unwrap_or_default().lines().nth(1).unwrap_or("").trim()
            )),
            Ok(_) => {
                let now: Vec<String> = self.ctx.variables().map(|(n, _, _)| n.to_owned()).collect();
                let missing: Vec<&str> =
                    plan.restored.iter().map(|v| v.name.as_str()).filter(|n| !now.iter().any(|m| m == n)).collect();
                if missing.is_empty() {
                    Ok(())
                } else {
                    Err(format!("{} did not come back", missing.join(", ")))
                }
            }
            Err(EvcxrError::CompilationErrors(errors)) => Err(format!(
                "the cells no longer compile together: {}",
                errors.first().map(|e| e.message()).unwrap_or_default()
            )),
            Err(e) => Err(e.to_string().lines().next().unwrap_or_default().to_owned()),
        };
        if let Err(why) = &outcome {
            log::warn!("restoring variables failed: {why}");
        }
        (plan, took, outcome)
    }

    /// The error for a cell whose evaluation process was lost, after trying
    /// to restore what it held.
    fn lost_process(&mut self, message: &str, live: &[Var], stderr_tail: &str) -> (ErrorContent, Option<Duration>) {
        let status = message
            .rsplit("Subprocess terminated with status: ")
            .next()
            .unwrap_or(message)
            .trim()
            .to_owned();
        let interrupted = self.control.interrupted.load(Ordering::SeqCst) || message.contains("signal: 2 ") || message.contains("SIGINT");
        let loss = if interrupted {
            Loss::Interrupted { status: &status }
        } else {
            Loss::Died { status: &status, last_stderr: stderr_tail }
        };
        if !self.replay || live.is_empty() {
            let lost: Vec<String> = live.iter().map(|v| v.name.clone()).collect();
            return (report::lost(loss, Restore::Off { lost: &lost }), None);
        }
        let (plan, took, outcome) = self.restore(live, self.record.len(), SLOW_CELL_SECONDS);
        if outcome.is_ok() {
            self.deferred = plan.deferred.clone();
            self.deferred_end = self.record.len();
        }
        let restore = match &outcome {
            Ok(()) => Restore::Ran { plan: &plan, took },
            Err(why) => Restore::Failed { plan: &plan, why, took },
        };
        (report::lost(loss, restore), Some(took))
    }

    /// Before a cell runs: restores the deferred variables it uses, saying so.
    fn restore_deferred_for(&mut self, code: &str) {
        if self.deferred.is_empty() {
            return;
        }
        let used = CellRecord::new(0, code);
        let wanted: Vec<Var> = self.deferred.iter().filter(|v| used.names().contains(&v.name)).cloned().collect();
        if wanted.is_empty() {
            return;
        }
        let names: Vec<&str> = wanted.iter().map(|v| v.name.as_str()).collect();
        let (plan, took, outcome) = self.restore(&wanted, self.deferred_end, f64::INFINITY);
        let cells: Vec<String> = plan.counts.iter().map(|c| format!("[{c}]")).collect();
        let note = match outcome {
            Ok(()) => format!(
                "[threadbook: restored {} for this cell in {:.2} s, by running cells {} again]\n",
                names.join(", "),
                took.as_secs_f64(),
                cells.join(", ")
            ),
            Err(why) => format!("[threadbook: could not restore {}: {why}]\n", names.join(", ")),
        };
        self.output.stream("stderr", &note);
        self.deferred.retain(|v| !names.contains(&v.name.as_str()));
    }
}

impl Engine for EvcxrEngine {
    fn execute(&mut self, cell: &Cell, stdin: &mut dyn StdinPort) -> Executed {
        let cmds = commands(&cell.code);
        if matches!(cell.code.trim(), "exit" | "quit" | "exit()" | "quit()") {
            return Executed {
                outcome: Outcome::Error(report::simple(
                    "NotInJupyter",
                    "a cell cannot end the session: in jupyter console press Ctrl-D; in JupyterLab use Kernel → Shut Down",
                )),
                metadata: json!({}),
            };
        }
        if cmds.quit {
            return Executed {
                outcome: Outcome::Error(report::simple(
                    "NotInJupyter",
                    "`:quit` would end the kernel behind Jupyter's back; use Kernel → Shut Down (or Restart) instead",
                )),
                metadata: json!({}),
            };
        }
        if let Some(setting) = cmds.replay {
            if let Some(on) = setting {
                self.replay = on;
            }
            let state = if self.replay { "on" } else { "off" };
            self.output.stream(
                "stdout",
                &format!(
                    "Restoring variables after a lost evaluation process: {state} ({} cells recorded).\n",
                    self.record.len()
                ),
            );
        }
        match cmds.timing {
            Some(TimingSetting::Toggle) => self.timing = !self.timing,
            Some(TimingSetting::On) => self.timing = true,
            Some(TimingSetting::Off) => self.timing = false,
            Some(TimingSetting::Keep) | None => {}
        }
        let timed = self.timing || cmds.timing_once;
        if !self.input_crate && cmds.code.contains("evcxr_input") {
            // Cells may call evcxr_input::get_string without a :dep line.
            match self.ctx.execute(":dep evcxr_input = \"1\"") {
                Ok(_) => self.input_crate = true,
                Err(e) => log::warn!("could not add evcxr_input: {e}"),
            }
        }
        if !cmds.fresh {
            self.restore_deferred_for(&cmds.code);
        }
        // What the process holds, and what a loss before restored later.
        let mut live = self.variables();
        for v in &self.deferred {
            if !live.iter().any(|l| l.name == v.name) {
                live.push(v.clone());
            }
        }
        let mark = self.capture.mark();
        let stdin_error: RefCell<Option<(String, StdinError)>> = RefCell::new(None);
        let pid = self.control.child_pid().map(|p| p as u32);
        let sampler = timed.then(super::cpu_strip::Sampler::start);
        let (result, wall, cpu) = self.run(&cmds.code, stdin, &stdin_error);
        let died = matches!(result, Err(EvcxrError::SubprocessTerminated(_)));
        // Fences come only when code ran in the evaluation process: not for
        // compile errors, nor for cells of `:` commands alone.
        let ran = match &result {
            Ok(outputs) => outputs.phases.iter().any(|p| p.name == "Execution"),
            Err(EvcxrError::TypeRedefinedVariablesLost(_)) => true,
            Err(_) => false,
        };
        let fin = if died {
            self.capture.finish(&mark, pid, Duration::from_secs(1))
        } else if ran {
            self.capture.finish(&mark, None, Duration::from_secs(5))
        } else {
            self.capture.finish(&mark, None, Duration::ZERO)
        };

        let mut timing = CellTiming { cores: self.cores, cpu, ..Default::default() };
        let outcome = match result {
            Ok(outputs) => {
                timing.run = outputs.phases.iter().filter(|p| p.name == "Execution").map(|p| p.duration).sum();
                timing.compile = wall.saturating_sub(timing.run);
                if let Some(sampler) = sampler {
                    // The strip is worth drawing only for cells that ran a while.
                    let (strip, line) = if timing.run >= STRIP_MIN_RUN {
                        (super::cpu_strip::render_svg(&sampler.finish(timing.run)).unwrap_or_default(), timing.line())
                    } else {
                        let why = format!(
                            " · no per-core strip: it is drawn for runs of {:.1} s or more",
                            STRIP_MIN_RUN.as_secs_f64()
                        );
                        (String::new(), timing.line() + &why)
                    };
                    self.output.display(
                        [
                            ("text/plain".to_owned(), Value::from(line.clone())),
                            ("text/html".to_owned(), Value::from(timing.html_line(&line, &strip))),
                        ]
                        .into(),
                        json!({}),
                        None,
                        false,
                    );
                }
                if fin.panicked {
                    Outcome::Error(self.panic_error(fin.panic_text, &cell.code))
                } else if let Some((prompt, e)) = stdin_error.into_inner() {
                    let ename = if e == StdinError::NotAllowed { "StdinNotAllowed" } else { "StdinError" };
                    Outcome::Error(report::simple(
                        ename,
                        format!("the cell asked for input ({prompt:?}) but {e}; the call returned an empty string"),
                    ))
                } else {
                    if cmds.fresh {
                        self.record.clear();
                        self.deferred.clear();
                    }
                    let record = CellRecord::new(cell.execution_count, &cmds.code).ran_for(timing.run.as_secs_f64());
                    self.deferred.retain(|v| !record.defines().contains(&v.name));
                    self.record.push(record);
                    Outcome::Ok { result: self.result(outputs, fin.last_bundle, &cell.code) }
                }
            }
            Err(EvcxrError::SubprocessTerminated(message)) => {
                let (error, replay) = self.lost_process(&message, &live, &fin.stderr_tail);
                timing.replay = replay;
                Outcome::Error(error)
            }
            Err(_) if self.control.interrupted.load(Ordering::SeqCst) => {
                // Nothing of the stopped build may go on writing while the next
                // cell compiles, and a compiler killed half-way can leave its
                // incremental cache inconsistent: start it afresh.
                let keep: Vec<i32> = self.control.child_pid().into_iter().chain(crate::lifecycle::watchdog_pid()).collect();
                process::stop_children_except(&keep);
                clear_incremental_cache();
                Outcome::Error(report::simple(
                    "Interrupted",
                    "the cell was interrupted before it ran (while it compiled); variables are kept",
                ))
            }
            Err(EvcxrError::CompilationErrors(errors)) => Outcome::Error(report::compile_error(&errors, &cell.code)),
            Err(EvcxrError::TypeRedefinedVariablesLost(vars)) => Outcome::Error(report::simple(
                "VariablesLost",
                format!("a type was redefined, so these variables were dropped: {}", vars.join(", ")),
            )),
            Err(EvcxrError::Message(m)) => Outcome::Error(report::simple("Error", m)),
        };
        release_free_memory();
        Executed { outcome, metadata: timing.metadata() }
    }

    fn complete(&mut self, code: &str, cursor: usize) -> Completions {
        let byte = char_to_byte(code, cursor);
        let found = self.ctx.completions_within(code, byte, COMPLETION_DEADLINE);
        release_free_memory();
        match found {
            Err(e) if e.downcast_ref::<evcxr::NotReady>().is_some() => {
                log::info!("completion: {e}; answering from the session's own names");
                self.names_completions(code, byte)
            }
            Ok(c) => Completions {
                candidates: c
                    .completions
                    .into_iter()
                    .map(|c| Candidate { text: c.code, kind: c.kind.to_owned(), signature: c.signature })
                    .collect(),
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
            .map(|i| i + c_len(code, i))
            .unwrap_or(0);
        let end = code[byte..]
            .find(|c: char| !(c.is_alphanumeric() || c == '_'))
            .map(|i| byte + i)
            .unwrap_or(code.len());
        if start >= end {
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

/// For tests of the kernel's containment of engine failures: with
/// `THREADBOOK_FAULT_INJECTION=<text>` in the kernel's environment, a cell
/// containing `<text>` makes the engine panic while the cell is under way.
fn inject_fault(code: &str) {
    if let Some(marker) = std::env::var("THREADBOOK_FAULT_INJECTION").ok().filter(|m| !m.is_empty()) {
        if code.contains(&marker) {
            panic!("fault injected by THREADBOOK_FAULT_INJECTION");
        }
    }
}

/// Where the identifier that `s` ends with starts (`s.len()` when it ends with none).
fn ident_start(s: &str) -> usize {
    s.char_indices()
        .rev()
        .take_while(|&(_, c)| c.is_alphanumeric() || c == '_')
        .last()
        .map_or(s.len(), |(i, _)| i)
}

/// Length in bytes of the character at byte `i` of `s`.
fn c_len(s: &str, i: usize) -> usize {
    s[i..].chars().next().map_or(1, char::len_utf8)
}

impl EvcxrEngine {
    /// Completions while rust-analyzer is not ready: the session's variables
    /// and items and the cell's own words that start with the identifier
    /// before the cursor; after `std::…::` the module's items, read from the
    /// standard library's sources. After `.` only the analyzer knows: nothing.
    fn names_completions(&self, code: &str, byte: usize) -> Completions {
        let before = &code[..byte];
        let start = ident_start(before);
        let prefix = &code[start..byte];
        let mut completions = Completions {
            candidates: Vec::new(),
            cursor_start: byte_to_char(code, start),
            cursor_end: byte_to_char(code, byte),
        };
        if let Some(module) = before[..start].strip_suffix("::") {
            // A path: into the standard library, from its sources; nothing else is known yet.
            // The trailing run of `ident::ident`: `let v:std::vec` is the path std::vec.
            let mut path: Vec<&str> = Vec::new();
            for segment in module.rsplit("::") {
                let start = ident_start(segment);
                if start < segment.len() {
                    path.push(&segment[start..]);
                }
                if start > 0 || segment.is_empty() {
                    break;
                }
            }
            path.reverse();
            completions.candidates = super::std_paths::complete(&path, prefix);
            return completions;
        }
        if prefix.is_empty() || before[..start].ends_with('.') {
            return completions;
        }
        let mut seen = std::collections::BTreeSet::new();
        let mut add = |text: &str, kind: &str, signature: Option<String>| {
            if text.starts_with(prefix) && text != prefix && seen.insert(text.to_owned()) {
                completions.candidates.push(Candidate { text: text.to_owned(), kind: kind.to_owned(), signature });
            }
        };
        for (name, ty, _) in self.ctx.variables() {
            add(name, "variable", Some(ty.to_owned()));
        }
        for name in self.ctx.defined_item_names() {
            add(name, "item", None);
        }
        for word in code.split(|c: char| !(c.is_alphanumeric() || c == '_')) {
            if !word.is_empty() && !word.starts_with(|c: char| c.is_ascii_digit()) {
                add(word, "text", None);
            }
        }
        completions
    }

    /// The cell's value: output of `:` commands (`:vars`, `:help`), or the
    /// last content block when the cell ends in an expression.
    fn result(&self, outputs: EvalOutputs, last_bundle: Option<MimeBundle>, code: &str) -> Option<MimeBundle> {
        let mut result: Option<MimeBundle> = None;
        if !outputs.content_by_mime_type.is_empty() {
            result = Some(with_plain(
                outputs.content_by_mime_type.into_iter().map(|(k, v)| (k, Value::from(v))).collect(),
            ));
        }
        // A unit value `()` (a final `println!(…)` without semicolon) is no result.
        let unit = |b: &MimeBundle| b.len() == 1 && b.get("text/plain").and_then(|v| v.as_str()) == Some("()");
        if let Some(bundle) = last_bundle.filter(|b| !unit(b)) {
            if crate::syntax::has_tail_expression(code) && result.is_none() {
                result = Some(with_plain(bundle));
            } else {
                self.output.display(with_plain(bundle), json!({}), None, false);
            }
        }
        result
    }
}

/// Removes the incremental compilation cache of the cell crate.
fn clear_incremental_cache() {
    let Some(dir) = std::env::var_os("EVCXR_TMPDIR") else { return };
    let Ok(targets) = std::fs::read_dir(std::path::Path::new(&dir).join("target")) else { return };
    for target in targets.flatten() {
        let Ok(entries) = std::fs::read_dir(target.path().join("debug").join("incremental")) else { continue };
        for entry in entries.flatten() {
            if entry.file_name().to_string_lossy().starts_with("ctx-") {
                if let Err(e) = std::fs::remove_dir_all(entry.path()) {
                    log::warn!("cannot clear {}: {e}", entry.path().display());
                }
            }
        }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kernel_commands_are_taken_out_of_the_cell() {
        let c = commands(":replay off\n:timing\n:dep rayon = \"1\"\nlet a = 1;");
        assert_eq!(c.replay, Some(Some(false)));
        assert_eq!(c.timing, Some(TimingSetting::Toggle));
        assert_eq!(c.code, ":dep rayon = \"1\"\nlet a = 1;\n");
        assert_eq!(commands(":timing\n:timing").timing, Some(TimingSetting::Keep));
        assert_eq!(commands(":timing off").timing, Some(TimingSetting::Off));
        assert!(commands(":timing cell\n1").timing_once);
        assert!(!c.fresh && !c.quit);
        assert!(commands(":restart").fresh);
        assert_eq!(commands(":replay").replay, Some(None));
    }
}
