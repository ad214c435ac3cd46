//! Live output of the evaluation process.
//!
//! The vendored evcxr hands every evaluation process it starts to
//! [`Capture`] (its `ChildOutput` hook): the kernel, not evcxr, reads the
//! process's stdout and stderr pipes, on one thread per process, for as long
//! as it lives. So output reaches the notebook as it is written, also between
//! cells (threads still printing) and up to the last byte before a crash.
//!
//! On stdout, user text is mixed with evcxr's runtime protocol (execution
//! complete, panic and input notices, content blocks) and the toolkit's
//! display lines. The thread splits them: text and displays are published;
//! protocol lines are passed on to evcxr through a pipe ([`ChildOutput`]'s
//! reader). "Execution complete" is a fence: when it arrives, everything the
//! cell wrote is already in the pipes, so the thread drains stderr, publishes,
//! counts the fence, and only then lets evcxr see the line — a reply never
//! overtakes its cell's output.
//!
//! Nothing here is reachable from outside the kernel: the pipes are the
//! evaluation process's own stdout and stderr, inherited by nobody else.

use crate::iopub::Output;
use crate::messages::MimeBundle;
use serde_json::Value;
use std::io::{Read, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::process::{Child, ChildStderr, ChildStdout};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// A content block not followed by anything else within this time is shown
/// as a display; the last block of a cell may become its result instead.
const HOLD_LAST_CONTENT: Duration = Duration::from_millis(100);
/// Partial lines (`print!` without newline, flushed) are sent after this pause.
const PARTIAL_LINE_DELAY: Duration = Duration::from_millis(50);
/// The longest line kept in memory: a longer one (text without newlines) is
/// published in pieces of this size; a content block or display line longer
/// than this is dropped with a notice.
pub const MAX_LINE: usize = 16 * 1024 * 1024;
/// Recent stderr kept for the report when the process dies.
const STDERR_TAIL: usize = 8 * 1024;


/// What one stdout line means.
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    /// User text (with its newline, if it had one).
    Text(String),
    /// One finished content block (mime, content).
    Block(String, String),
    /// A threadbook display line.
    Display {
        data: MimeBundle,
        metadata: Value,
        display_id: Option<String>,
        update: bool,
    },
    Clear { wait: bool },
    /// The cell's code panicked (evcxr's notice); forwarded to evcxr too.
    Panic(String),
    /// The cell finished; forwarded to evcxr after the fence.
    Complete(String),
    /// Another evcxr protocol line, forwarded as it is.
    Forward(String),
    /// Something was dropped; the learner is told.
    Notice(String),
}

/// Turns stdout lines into actions; keeps the state of an open content block.
#[derive(Default)]
pub struct StdoutParser {
    block: Option<Block>,
}

struct Block {
    mime: String,
    content: String,
    overflowed: bool,
}

impl StdoutParser {
    /// True while a content block is open (its lines are not text).
    pub fn in_block(&self) -> bool {
        self.block.is_some()
    }

    pub fn line(&mut self, line: &str, out: &mut Vec<Action>) {
        if let Some(block) = &mut self.block {
            if line == "EVCXR_END_CONTENT" {
                let block = self.block.take().expect("checked above");
                if block.overflowed {
                    out.push(Action::Notice(format!(
                        "[threadbook: a {} display larger than {} MiB was dropped]\n",
                        block.mime,
                        MAX_LINE >> 20
                    )));
                } else {
                    out.push(Action::Block(block.mime, block.content));
                }
                return;
            }
            if line != "EVCXR_PANIC_NOTIFICATION" {
                if block.content.len() + line.len() + 1 > MAX_LINE {
                    block.overflowed = true;
                    block.content = String::new();
                } else if !block.overflowed {
                    if !block.content.is_empty() {
                        block.content.push('\n');
                    }
                    block.content.push_str(line);
                }
                return;
            }
            self.block = None;
        }
        // A protocol word after partial user text ("abcEVCXR_…"): split it off.
        for word in ["EVCXR_", "THREADBOOK_"] {
            if let Some(pos) = line.find(word).filter(|&p| p > 0) {
                let (text, rest) = line.split_at(pos);
                out.push(Action::Text(text.to_owned()));
                return self.line(rest, out);
            }
        }
        if let Some(mime) = line.strip_prefix("EVCXR_BEGIN_CONTENT ") {
            self.block = Some(Block { mime: mime.trim().to_owned(), content: String::new(), overflowed: false });
        } else if line == "EVCXR_EXECUTION_COMPLETE" {
            out.push(Action::Complete(line.to_owned()));
        } else if line == "EVCXR_PANIC_NOTIFICATION" {
            out.push(Action::Panic(line.to_owned()));
        } else if line.starts_with("EVCXR_") {
            out.push(Action::Forward(line.to_owned()));
        } else if let Some(request) = threadbook_display::Line::parse(line) {
            out.push(match request {
                threadbook_display::Line::Display(d) => Action::Display {
                    data: d.data.into_iter().collect(),
                    metadata: Value::Object(d.metadata),
                    display_id: d.display_id,
                    update: d.update,
                },
                threadbook_display::Line::Clear { wait } => Action::Clear { wait },
                threadbook_display::Line::Invalid(why) => Action::Text(format!("threadbook: {why}\n")),
            });
        } else {
            out.push(Action::Text(format!("{line}\n")));
        }
    }
}

/// True for the panic message of the thread that runs cells: the
/// evaluation process's main thread, whose thread id is the process id
/// (`thread '<unnamed>' (4242) panicked at src/lib.rs:3:1:`).
pub fn is_cell_panic(line: &str, pid: u32) -> bool {
    let Some(rest) = line.strip_prefix("thread '") else { return false };
    let Some((_, after_name)) = rest.split_once("' ") else { return false };
    if after_name.starts_with("panicked at ") {
        return rest.starts_with("main'");
    }
    after_name
        .strip_prefix('(')
        .and_then(|r| r.split_once(") panicked at "))
        .is_some_and(|(tid, _)| tid.parse() == Ok(pid))
}

/// Every bundle needs text/plain; derive a short one when a block had none.
pub fn with_plain(mut data: MimeBundle) -> MimeBundle {
    if !data.contains_key("text/plain") {
        let kinds: Vec<&str> = data.keys().map(String::as_str).collect();
        let text = format!("[{}]", kinds.join(", "));
        data.insert("text/plain".into(), Value::String(text));
    }
    data
}

/// What the capture knows about the running cell; shared with the engine.
#[derive(Debug, Default)]
struct CellState {
    /// Fences seen (one per finished cell).
    fences: u64,
    panicked: bool,
    /// The main thread's panic message, kept out of the stderr stream.
    panic_text: Option<String>,
    capturing_panic: bool,
    /// A blank stderr line, held in case a cell panic message follows it.
    held_blank: bool,
    /// The newest content bundle, held back in case it is the cell's value.
    held: Option<(MimeBundle, Instant)>,
    /// The bundle that stood last when the cell finished.
    last_bundle: Option<MimeBundle>,
    /// Evaluation processes whose output is still being read.
    serving: Vec<u32>,
    /// Recent stderr text, for the report when the process dies.
    stderr_tail: String,
}

type Shared = Arc<(Mutex<CellState>, Condvar)>;

fn lock(m: &Mutex<CellState>) -> MutexGuard<'_, CellState> {
    // The state is plain data: a panic elsewhere cannot leave it half-updated
    // in a way that matters more than losing the kernel, so poisoning is ignored.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// The kernel's end of the capture: evcxr's `ChildOutput` hook, and what the
/// engine asks about a cell.
#[derive(Clone)]
pub struct Capture {
    shared: Shared,
    output: Output,
}

/// A cell's view of the capture, taken when it starts.
pub struct Mark {
    fences: u64,
}

/// What the capture saw of one cell.
#[derive(Debug, Default)]
pub struct Finished {
    pub panicked: bool,
    pub panic_text: Option<String>,
    pub last_bundle: Option<MimeBundle>,
    pub stderr_tail: String,
}

impl Capture {
    pub fn new(output: Output) -> Capture {
        Capture { shared: Arc::default(), output }
    }

    /// Forgets output nobody asked for (the engine's own start-up cell).
    pub fn discard(&self) {
        let mut st = lock(&self.shared.0);
        st.held = None;
        st.last_bundle = None;
    }

    /// Call just before a cell starts.
    pub fn mark(&self) -> Mark {
        let mut st = lock(&self.shared.0);
        release_held(&mut st, &self.output);
        st.panicked = false;
        st.panic_text = None;
        st.capturing_panic = false;
        st.last_bundle = None;
        st.stderr_tail.clear();
        Mark { fences: st.fences }
    }

    /// Waits until the cell's output is all in (its fence), or until the
    /// output of `died` (the evaluation process that ran the cell, if it
    /// died) has been read to the end, or `timeout`.
    pub fn finish(&self, mark: &Mark, died: Option<u32>, timeout: Duration) -> Finished {
        let (state, cvar) = &*self.shared;
        let deadline = Instant::now() + timeout;
        let mut st = lock(state);
        loop {
            let fenced = st.fences > mark.fences;
            let gone = died.is_some_and(|pid| !st.serving.contains(&pid));
            let now = Instant::now();
            if fenced || gone || now >= deadline {
                break;
            }
            st = cvar
                .wait_timeout(st, deadline - now)
                .map(|(g, _)| g)
                .unwrap_or_else(|p| p.into_inner().0);
        }
        if st.last_bundle.is_none() {
            // The process died or nothing ran: whatever was held is output.
            release_held(&mut st, &self.output);
        }
        Finished {
            panicked: st.panicked,
            panic_text: st.panic_text.take(),
            last_bundle: st.last_bundle.take(),
            stderr_tail: std::mem::take(&mut st.stderr_tail),
        }
    }
}

impl evcxr::ChildOutput for Capture {
    fn attach(&self, child: &mut Child) -> std::io::Result<Box<dyn Read + Send>> {
        let missing = || std::io::Error::other("the evaluation process has no piped stdout/stderr");
        let stdout = child.stdout.take().ok_or_else(missing)?;
        let stderr = child.stderr.take().ok_or_else(missing)?;
        // Reads never block: the thread reads what poll reported, and a
        // stream drained by an earlier step simply has nothing now.
        rustix::io::ioctl_fionbio(&stdout, true)?;
        rustix::io::ioctl_fionbio(&stderr, true)?;
        let pid = child.id();
        // Exit notification: the pipes may stay open after the process is
        // gone, held by processes it started.
        let exit = rustix::process::Pid::from_raw(pid as i32)
            .and_then(|p| rustix::process::pidfd_open(p, rustix::process::PidfdFlags::empty()).ok());
        let (reader, writer) = std::io::pipe()?;
        lock(&self.shared.0).serving.push(pid);
        let serve = Serve {
            pid,
            stdout,
            stderr,
            exit,
            to_evcxr: writer,
            shared: self.shared.clone(),
            output: self.output.clone(),
            parser: StdoutParser::default(),
            out_partial: Vec::new(),
            err_partial: Vec::new(),
            partial_since: Instant::now(),
        };
        std::thread::Builder::new()
            .name(format!("capture-{pid}"))
            .spawn(move || serve.run())?;
        Ok(Box::new(reader))
    }
}

fn release_held(st: &mut CellState, output: &Output) {
    if let Some((data, _)) = st.held.take() {
        output.display(with_plain(data), Value::Object(Default::default()), None, false);
    }
}

/// One evaluation process's output: both streams, on one thread.
struct Serve {
    pid: u32,
    stdout: ChildStdout,
    stderr: ChildStderr,
    exit: Option<OwnedFd>,
    /// Protocol lines for evcxr; dropped (end of file) when the process is gone.
    to_evcxr: std::io::PipeWriter,
    shared: Shared,
    output: Output,
    parser: StdoutParser,
    out_partial: Vec<u8>,
    err_partial: Vec<u8>,
    partial_since: Instant,
}

enum Stream {
    Out,
    Err,
}

impl Serve {
    fn run(mut self) {
        let (mut out_open, mut err_open) = (true, true);
        while out_open || err_open {
            let held = lock(&self.shared.0).held.as_ref().map(|(_, since)| *since);
            let partial = !self.out_partial.is_empty() || !self.err_partial.is_empty();
            let mut wait: Option<Duration> = None;
            if partial {
                wait = Some(PARTIAL_LINE_DELAY.saturating_sub(self.partial_since.elapsed()));
            }
            if let Some(since) = held {
                let left = HOLD_LAST_CONTENT.saturating_sub(since.elapsed());
                wait = Some(wait.map_or(left, |w| w.min(left)));
            }
            if self.exit.is_none() {
                // No pidfd: look at /proc now and then.
                wait = Some(wait.map_or(Duration::from_millis(100), |w| w.min(Duration::from_millis(100))));
            }
            let (out_ready, err_ready, exited) = match self.poll(out_open, err_open, wait) {
                Ok(ready) => ready,
                Err(e) => {
                    log::warn!("capture of {}: poll failed: {e}", self.pid);
                    break;
                }
            };
            if out_ready {
                out_open = self.read(Stream::Out);
            }
            if err_ready {
                err_open = self.read(Stream::Err);
            }
            if exited || (self.exit.is_none() && crate::engine::evcxr::process::has_exited(self.pid)) {
                // Gone: take its last words, then stop.
                while out_open && self.has_data(Stream::Out) {
                    out_open = self.read(Stream::Out);
                }
                while err_open && self.has_data(Stream::Err) {
                    err_open = self.read(Stream::Err);
                }
                break;
            }
            if partial && self.partial_since.elapsed() >= PARTIAL_LINE_DELAY {
                self.flush_partials();
            }
            let mut st = lock(&self.shared.0);
            if st.held.as_ref().is_some_and(|(_, t)| t.elapsed() >= HOLD_LAST_CONTENT) {
                release_held(&mut st, &self.output);
            }
        }
        self.flush_partials();
        self.output.flush();
        let (state, cvar) = &*self.shared;
        lock(state).serving.retain(|&p| p != self.pid);
        cvar.notify_all();
        // Dropping `to_evcxr` here is what tells evcxr the process is gone.
    }

    /// Which of stdout, stderr and the exit notification are ready.
    fn poll(&self, out_open: bool, err_open: bool, wait: Option<Duration>) -> std::io::Result<(bool, bool, bool)> {
        use rustix::event::{PollFd, PollFlags};
        let mut fds = Vec::with_capacity(3);
        let mut slots = [None; 3];
        if out_open {
            slots[0] = Some(fds.len());
            fds.push(PollFd::new(&self.stdout, PollFlags::IN));
        }
        if err_open {
            slots[1] = Some(fds.len());
            fds.push(PollFd::new(&self.stderr, PollFlags::IN));
        }
        if let Some(exit) = &self.exit {
            slots[2] = Some(fds.len());
            fds.push(PollFd::from_borrowed_fd(exit.as_fd(), PollFlags::IN));
        }
        let timeout = wait.map(|w| rustix::event::Timespec {
            tv_sec: w.as_secs() as i64,
            tv_nsec: w.subsec_nanos() as i64,
        });
        match rustix::event::poll(&mut fds, timeout.as_ref()) {
            Ok(_) => {}
            Err(rustix::io::Errno::INTR) => return Ok((false, false, false)),
            Err(e) => return Err(e.into()),
        }
        let ready = |slot: Option<usize>| slot.is_some_and(|i| !fds[i].revents().is_empty());
        Ok((ready(slots[0]), ready(slots[1]), ready(slots[2])))
    }

    /// Reads what a stream has and handles its complete lines; false at end of stream.
    fn read(&mut self, which: Stream) -> bool {
        let mut buf = [0u8; 64 * 1024];
        let (open, lines) = {
            let (stream, partial): (&mut dyn Read, &mut Vec<u8>) = match which {
                Stream::Out => (&mut self.stdout, &mut self.out_partial),
                Stream::Err => (&mut self.stderr, &mut self.err_partial),
            };
            if partial.is_empty() {
                self.partial_since = Instant::now();
            }
            // One read: more comes next round.
            let open = loop {
                match stream.read(&mut buf) {
                    Ok(0) => break false,
                    Ok(n) => {
                        partial.extend_from_slice(&buf[..n]);
                        break true;
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break true,
                    Err(_) => break false,
                }
            };
            let mut lines = Vec::new();
            while let Some(nl) = partial.iter().position(|&b| b == b'\n') {
                let line: Vec<u8> = partial.drain(..=nl).collect();
                lines.push(String::from_utf8_lossy(&line).into_owned());
            }
            // A line longer than the limit is passed on in pieces.
            while partial.len() > MAX_LINE {
                let piece: Vec<u8> = partial.drain(..MAX_LINE).collect();
                lines.push(String::from_utf8_lossy(&piece).into_owned());
            }
            (open, lines)
        };
        for line in lines {
            match which {
                Stream::Out => self.stdout_line(&line),
                Stream::Err => self.stderr_line(&line),
            }
        }
        open
    }

    fn stdout_line(&mut self, line: &str) {
        let mut actions = Vec::new();
        self.parser.line(line.strip_suffix('\n').unwrap_or(line), &mut actions);
        for action in actions {
            self.apply(action);
        }
    }

    /// Text without a newline yet goes out after a pause (or at a fence).
    fn flush_partials(&mut self) {
        if !self.out_partial.is_empty() && !self.parser.in_block() {
            let text = String::from_utf8_lossy(&self.out_partial).into_owned();
            self.out_partial.clear();
            self.apply(Action::Text(text));
        }
        if !self.err_partial.is_empty() {
            let text = String::from_utf8_lossy(&self.err_partial).into_owned();
            self.err_partial.clear();
            self.stderr_text(&text);
        }
        let held_blank = std::mem::take(&mut lock(&self.shared.0).held_blank);
        if held_blank {
            self.stderr_text("\n");
        }
    }

    fn forward(&mut self, line: &str) {
        if let Err(e) = self.to_evcxr.write_all(format!("{line}\n").as_bytes()) {
            log::debug!("capture of {}: evcxr stopped listening: {e}", self.pid);
        }
    }

    fn apply(&mut self, action: Action) {
        match action {
            Action::Block(mime, content) => {
                let mut st = lock(&self.shared.0);
                let repeat = st.held.as_ref().is_some_and(|(d, _)| d.contains_key(&mime));
                if repeat {
                    release_held(&mut st, &self.output);
                }
                let held = st.held.get_or_insert_with(|| (MimeBundle::new(), Instant::now()));
                held.0.insert(mime, Value::String(content));
                held.1 = Instant::now();
            }
            Action::Complete(line) => {
                // The cell is done: what it wrote on stderr is readable now.
                while self.has_data(Stream::Err) && self.read(Stream::Err) {}
                self.flush_partials();
                self.output.flush();
                {
                    let (state, cvar) = &*self.shared;
                    let mut st = lock(state);
                    st.last_bundle = st.held.take().map(|(d, _)| d);
                    st.capturing_panic = false;
                    st.fences += 1;
                    cvar.notify_all();
                }
                self.forward(&line);
            }
            Action::Panic(line) => {
                lock(&self.shared.0).panicked = true;
                self.forward(&line);
            }
            Action::Forward(line) => self.forward(&line),
            other => {
                release_held(&mut lock(&self.shared.0), &self.output);
                match other {
                    Action::Text(t) => self.output.stream("stdout", &t),
                    Action::Notice(t) => self.output.stream("stderr", &t),
                    Action::Display { data, metadata, display_id, update } => {
                        self.output.display(with_plain(data), metadata, display_id.as_deref(), update)
                    }
                    Action::Clear { wait } => self.output.clear_output(wait),
                    _ => {}
                }
            }
        }
    }

    /// True when a read of the stream would not block (data, or its end).
    fn has_data(&self, which: Stream) -> bool {
        use rustix::event::{PollFd, PollFlags};
        let fd = match which {
            Stream::Out => self.stdout.as_fd(),
            Stream::Err => self.stderr.as_fd(),
        };
        let mut fds = [PollFd::from_borrowed_fd(fd, PollFlags::IN)];
        let zero = rustix::event::Timespec { tv_sec: 0, tv_nsec: 0 };
        matches!(rustix::event::poll(&mut fds, Some(&zero)), Ok(n) if n > 0)
    }

    /// One stderr line: the cell's own panic message is kept for the error
    /// report; everything else is published as it comes.
    fn stderr_line(&mut self, line: &str) {
        let mut st = lock(&self.shared.0);
        if is_cell_panic(line, self.pid) {
            // The blank line std prints before a panic message goes with it.
            st.held_blank = false;
            st.capturing_panic = true;
            st.panic_text = Some(line.to_owned());
            return;
        }
        if st.capturing_panic {
            if !line.starts_with("note: run with `RUST_BACKTRACE=1`") {
                if let Some(t) = &mut st.panic_text {
                    if t.len() < STDERR_TAIL {
                        t.push_str(line);
                    }
                }
            }
            return;
        }
        if line == "\n" {
            let had = std::mem::replace(&mut st.held_blank, true);
            drop(st);
            if had {
                self.stderr_text("\n");
            }
            return;
        }
        let blank = std::mem::take(&mut st.held_blank);
        drop(st);
        if blank {
            self.stderr_text("\n");
        }
        self.stderr_text(line);
    }

    fn stderr_text(&mut self, text: &str) {
        log::debug!("evaluation stderr: {}", text.trim_end());
        let mut st = lock(&self.shared.0);
        release_held(&mut st, &self.output);
        st.stderr_tail.push_str(text);
        if st.stderr_tail.len() > 2 * STDERR_TAIL {
            let cut = st.stderr_tail.len() - STDERR_TAIL;
            let cut = (cut..st.stderr_tail.len()).find(|&i| st.stderr_tail.is_char_boundary(i)).unwrap_or(0);
            st.stderr_tail.drain(..cut);
        }
        drop(st);
        self.output.stream("stderr", text);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(lines: &[&str]) -> Vec<Action> {
        let mut p = StdoutParser::default();
        let mut out = Vec::new();
        for l in lines {
            p.line(l, &mut out);
        }
        out
    }

    #[test]
    fn text_blocks_and_protocol_lines() {
        let actions = parse(&[
            "hello",
            "EVCXR_BEGIN_CONTENT text/html",
            "<b>",
            "x</b>",
            "EVCXR_END_CONTENT",
            "EVCXR_INPUT_REQUEST:name? ",
            "EVCXR_EXECUTION_COMPLETE",
        ]);
        assert_eq!(
            actions,
            vec![
                Action::Text("hello\n".into()),
                Action::Block("text/html".into(), "<b>\nx</b>".into()),
                Action::Forward("EVCXR_INPUT_REQUEST:name? ".into()),
                Action::Complete("EVCXR_EXECUTION_COMPLETE".into()),
            ]
        );
    }

    #[test]
    fn protocol_after_partial_text_is_split_off() {
        assert_eq!(
            parse(&["no newlineEVCXR_EXECUTION_COMPLETE"]),
            vec![Action::Text("no newline".into()), Action::Complete("EVCXR_EXECUTION_COMPLETE".into())]
        );
    }

    #[test]
    fn a_panic_inside_a_block_ends_it() {
        assert_eq!(
            parse(&["EVCXR_BEGIN_CONTENT text/plain", "half", "EVCXR_PANIC_NOTIFICATION"]),
            vec![Action::Panic("EVCXR_PANIC_NOTIFICATION".into())]
        );
    }

    #[test]
    fn an_oversized_block_is_dropped_with_a_notice() {
        let big = "x".repeat(MAX_LINE / 2 + 1);
        let actions = parse(&["EVCXR_BEGIN_CONTENT text/html", &big, &big, &big, "EVCXR_END_CONTENT", "after"]);
        assert_eq!(actions.len(), 2, "{:?}", actions.iter().map(|a| format!("{a:?}").len()).collect::<Vec<_>>());
        assert!(matches!(&actions[0], Action::Notice(t) if t.contains("text/html") && t.contains("dropped")));
        assert_eq!(actions[1], Action::Text("after\n".into()));
    }

    #[test]
    fn display_and_clear_lines() {
        let actions = parse(&[
            r#"THREADBOOK_DISPLAY {"data":{"text/plain":"x"},"metadata":{},"display_id":"d1","update":true}"#,
            r#"THREADBOOK_CLEAR_OUTPUT {"wait":true}"#,
            "THREADBOOK_DISPLAY {broken",
        ]);
        assert_eq!(
            actions[0],
            Action::Display {
                data: [("text/plain".to_owned(), Value::from("x"))].into(),
                metadata: serde_json::json!({}),
                display_id: Some("d1".into()),
                update: true,
            }
        );
        assert_eq!(actions[1], Action::Clear { wait: true });
        assert!(matches!(&actions[2], Action::Text(t) if t.contains("not valid")));
    }

    #[test]
    fn only_the_cell_thread_panic_is_the_cell_panic() {
        assert!(is_cell_panic("thread '<unnamed>' (4242) panicked at src/lib.rs:3:1:\n", 4242));
        assert!(!is_cell_panic("thread '<unnamed>' (4243) panicked at src/lib.rs:3:1:\n", 4242));
        assert!(!is_cell_panic("thread 'worker' (77) panicked at src/lib.rs:3:1:", 4242));
        assert!(is_cell_panic("thread 'main' panicked at src/lib.rs:3:1:", 1));
        assert!(!is_cell_panic("thread 'x' panicked at src/lib.rs:3:1:", 1));
        assert!(!is_cell_panic("hello", 1));
    }

    #[test]
    fn bundles_without_plain_text_get_one() {
        let b = with_plain([("image/svg+xml".to_owned(), Value::from("<svg/>"))].into());
        assert_eq!(b["text/plain"], "[image/svg+xml]");
        let kept = with_plain([("text/plain".to_owned(), Value::from("42"))].into());
        assert_eq!(kept["text/plain"], "42");
    }
}
