//! What a learner reads when a cell fails: compiler errors against the
//! cell's own lines, panics with their cell line, and a lost evaluation
//! process with what was restored.

use super::replay::{Plan, NO_REPLAY_MARK};
use crate::messages::ErrorContent;
use annotate_snippets::{AnnotationKind, Group, Level, Renderer, Snippet};
use evcxr::CompilationError;
use std::time::Duration;

const BOLD_RED: &str = "\x1b[1;31m";
const CYAN: &str = "\x1b[36m";
const GREEN: &str = "\x1b[32m";
const RESET: &str = "\x1b[0m";
/// Lines of rustc's own rendering shown for an error with no place in the cell.
const MAX_RENDERED_LINES: usize = 30;

fn error(ename: &str, evalue: String, traceback: Vec<String>) -> ErrorContent {
    ErrorContent { ename: ename.into(), evalue, traceback }
}

/// A one-line error: `Name: message`, in red.
pub fn simple(ename: &str, evalue: impl Into<String>) -> ErrorContent {
    let evalue = evalue.into();
    let line = format!("{BOLD_RED}{ename}{RESET}: {evalue}");
    error(ename, evalue, vec![line])
}

/// Byte offset in `code` of a 1-based line and character column.
fn offset(code: &str, line: usize, column: usize) -> usize {
    let mut start = 0;
    for (i, l) in code.split_inclusive('\n').enumerate() {
        if i + 1 == line {
            let col = l.char_indices().nth(column.saturating_sub(1)).map_or(l.trim_end_matches('\n').len(), |(b, _)| b);
            return start + col;
        }
        start += l.len();
    }
    code.len()
}

/// rustc's errors, drawn against the cell's own lines.
pub fn compile_error(errors: &[CompilationError], code: &str) -> ErrorContent {
    let renderer = Renderer::styled();
    let mut traceback = Vec::new();
    for e in errors {
        let level = if e.level() == "error" { Level::ERROR } else { Level::WARNING };
        let message = e.message();
        let mut title = level.primary_title(message.as_str());
        if let Some(code) = e.code() {
            title = title.id(code);
        }
        let mut snippet = Snippet::source(code).path("cell").fold(true);
        let mut notes = Vec::new();
        for m in e.spanned_messages() {
            match &m.span {
                Some(span) => {
                    let start = offset(code, span.start_line, span.start_column);
                    let end = offset(code, span.end_line, span.end_column).max(start);
                    let kind = if m.is_primary { AnnotationKind::Primary } else { AnnotationKind::Context };
                    snippet = snippet.annotation(kind.span(start..end).label(m.label.as_str()));
                }
                None if !m.label.is_empty() => notes.push(m.label.clone()),
                None => {}
            }
        }
        if !e.spanned_messages().iter().any(|m| m.span.is_some()) {
            // Nothing to point at in the cell (a linker error, say): rustc's own
            // rendering holds the detail, e.g. the linker's output.
            let rendered = e.rendered();
            let lines: Vec<&str> = rendered.lines().skip(1).filter(|l| !l.trim().is_empty()).collect();
            let keep = lines.len().saturating_sub(MAX_RENDERED_LINES);
            if !lines.is_empty() {
                notes.push(lines[keep..].join("\n"));
            }
        }
        let mut group = title.element(snippet);
        for note in &notes {
            group = group.element(Level::NOTE.message(note.as_str()));
        }
        let helps = e.help();
        for help in &helps {
            group = group.element(Level::HELP.message(help.as_str()));
        }
        traceback.push(renderer.render(&[group]));
    }
    if traceback.is_empty() {
        traceback.push(renderer.render(&[Group::with_title(Level::ERROR.primary_title("compilation failed"))]));
    }
    let evalue = errors
        .first()
        .map(|e| {
            let at = e
                .primary_spanned_message()
                .and_then(|m| m.span.as_ref())
                .map(|s| format!(" (cell line {}, column {})", s.start_line, s.start_column))
                .unwrap_or_default();
            format!("{}{}", e.message(), at)
        })
        .unwrap_or_else(|| "compilation failed".into());
    error("CompilationError", evalue, traceback)
}

/// A panic of the cell itself. `location` is where it happened (a cell
/// line, or code the cell called), `text` the panic message.
pub fn panic(location: &str, message: &str) -> ErrorContent {
    let message = if message.trim().is_empty() { "explicit panic" } else { message };
    error(
        "panic",
        message.to_owned(),
        vec![
            format!("{BOLD_RED}panic{RESET} at {location}:"),
            message.to_owned(),
            format!("{CYAN}Variables defined before this cell are kept; those this cell created are dropped.{RESET}"),
        ],
    )
}

/// How the evaluation process was lost.
pub enum Loss<'a> {
    /// The cell was interrupted while it ran, so the process was stopped.
    Interrupted { status: &'a str },
    /// The process ended by itself (abort, signal, exit).
    Died { status: &'a str, last_stderr: &'a str },
}

/// What happened to the variables after the loss.
pub enum Restore<'a> {
    /// `:replay off`.
    Off { lost: &'a [String] },
    /// Restored by running `plan`'s cells again (maybe only some variables).
    Ran { plan: &'a Plan, took: Duration },
    /// Running the cells again failed.
    Failed { plan: &'a Plan, why: &'a str, took: Duration },
}

fn names(v: &[String]) -> String {
    v.join(", ")
}

/// The error for a lost evaluation process, with the restore report.
pub fn lost(loss: Loss<'_>, restore: Restore<'_>) -> ErrorContent {
    let (ename, what) = match &loss {
        Loss::Interrupted { status } => (
            "Interrupted",
            format!("the cell was interrupted; its evaluation process had to be stopped ({status})"),
        ),
        Loss::Died { status, .. } => ("EvaluationProcessDied", format!("the evaluation process died ({status})")),
    };
    let mut tb = vec![format!("{BOLD_RED}{ename}{RESET}: {what}")];
    if let Loss::Died { last_stderr, .. } = &loss {
        let last: Vec<&str> = last_stderr.lines().rev().take(4).collect();
        if !last.is_empty() {
            tb.push(format!(
                "last lines on stderr:\n  {}",
                last.into_iter().rev().collect::<Vec<_>>().join("\n  ")
            ));
        }
    }
    let summary;
    match restore {
        Restore::Off { lost } => {
            summary = if lost.is_empty() {
                "no variables were lost".to_owned()
            } else {
                format!("variables lost: {} (restoring is off: `:replay on`)", names(lost))
            };
            tb.push(format!("{CYAN}{summary}{RESET}"));
        }
        Restore::Ran { plan, took } => {
            let restored: Vec<String> = plan.restored.iter().map(|v| v.name.clone()).collect();
            let cells: Vec<String> = plan.counts.iter().map(|c| format!("[{c}]")).collect();
            let later: Vec<String> = plan.deferred.iter().map(|v| v.name.clone()).collect();
            summary = match (restored.is_empty(), later.is_empty()) {
                (true, true) => "no variables to restore".to_owned(),
                (false, true) => format!("variables restored: {}", names(&restored)),
                (true, false) => format!("variables restored when first used: {}", names(&later)),
                (false, false) => format!(
                    "variables restored: {}; restored when first used: {}",
                    names(&restored),
                    names(&later)
                ),
            };
            if !restored.is_empty() {
                tb.push(format!(
                    "{GREEN}Restored {} in {:.2} s by running cell{} {} again (their output hidden).{RESET}",
                    names(&restored),
                    took.as_secs_f64(),
                    if cells.len() == 1 { "" } else { "s" },
                    cells.join(", ")
                ));
            }
            if !plan.deferred.is_empty() {
                let names: Vec<String> = plan.deferred.iter().map(|v| v.name.clone()).collect();
                let cells: Vec<String> = plan.slow_counts.iter().map(|c| format!("[{c}]")).collect();
                tb.push(format!(
                    "{GREEN}Restored when a cell first uses them: {} (they need cell{} {}, which took a while to run).{RESET}",
                    names.join(", "),
                    if cells.len() == 1 { "" } else { "s" },
                    cells.join(", ")
                ));
            }
            for (name, why) in &plan.lost {
                tb.push(format!("{BOLD_RED}Not restored{RESET}: {name} ({why})"));
            }
        }
        Restore::Failed { plan, why, took } => {
            let lost: Vec<String> = plan.restored.iter().map(|v| v.name.clone()).chain(plan.lost.iter().map(|(n, _)| n.clone())).collect();
            summary = format!("restoring the variables failed; variables lost: {}", names(&lost));
            tb.push(format!(
                "{BOLD_RED}Not restored{RESET}: {} — running the cells that defined them again failed after {:.2} s: {why}",
                names(&lost),
                took.as_secs_f64()
            ));
        }
    }
    tb.push(format!(
        "{CYAN}Functions, types and :dep dependencies are kept. To keep a cell from running again after a lost process, \
         make `{NO_REPLAY_MARK}` its first line; `:replay off` turns restoring off.{RESET}"
    ));
    error(ename, format!("{what}; {summary}"), tb)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offsets_count_characters_and_lines() {
        let code = "let é = 1;\nlet x = é + y;";
        assert_eq!(offset(code, 1, 5), 4);
        assert_eq!(&code[offset(code, 2, 13)..offset(code, 2, 14)], "y");
        assert_eq!(offset(code, 9, 1), code.len());
    }

    #[test]
    fn a_lost_process_report_names_what_was_restored_and_how() {
        let e = lost(Loss::Died { status: "signal: 6 (SIGABRT)", last_stderr: "boom\n" }, Restore::Off { lost: &["a".into()] });
        assert_eq!(e.ename, "EvaluationProcessDied");
        assert!(e.evalue.contains("SIGABRT") && e.evalue.contains("variables lost: a"), "{}", e.evalue);
        assert!(e.traceback.iter().any(|l| l.contains("boom")));
        assert!(e.traceback.last().unwrap().contains(NO_REPLAY_MARK));
    }
}
