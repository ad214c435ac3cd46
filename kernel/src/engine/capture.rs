//! Output capture between the evaluation process and the kernel.
//!
//! The evaluation process is this binary in evcxr's runtime mode. Before
//! evcxr takes over, [`install_in_evaluation_process`] points its fd 1 and
//! fd 2 at two Unix sockets whose other ends the kernel reads. Everything
//! the process writes therefore reaches the kernel at once — also between
//! cells (threads still printing) and up to the last byte before a crash.
//!
//! evcxr's own protocol travels on the same stdout (execution complete, panic
//! notice, input requests, rich content blocks). The kernel splits it out
//! and forwards the lines evcxr needs into evcxr's original stdout pipe,
//! which it opens through `/proc/<pid>/fd/<n>`. When "execution complete"
//! comes, everything the cell wrote is already in the two sockets: the
//! kernel drains stderr, publishes, records a fence, and only then lets
//! evcxr see the line — so a reply never overtakes its cell's output.
//!
//! [`IoServer`] is the kernel's end: it pairs the two connections of each
//! evaluation process (a new pair after every restart) and serves them on
//! one thread, publishing through [`Output`].

use crate::iopub::Output;
use crate::messages::MimeBundle;
use serde_json::Value;
use std::collections::HashMap;
use std::io::{Read, Write};
use std::os::fd::AsRawFd;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

/// Path of the kernel's capture socket, for the evaluation process.
pub const IO_ENV: &str = "THREADBOOK_IO";
/// A content block that is not followed by anything else within this time is
/// shown as a display; the last block of a cell may become its result.
const HOLD_LAST_CONTENT: Duration = Duration::from_millis(100);
/// Partial lines (print! without newline, flushed) are sent after this pause.
const PARTIAL_LINE_DELAY: Duration = Duration::from_millis(50);

// ---------------------------------------------------------------------------
// The evaluation process's side.

/// Rewires stdout/stderr of the evaluation process. Does nothing unless the
/// kernel asked for it (THREADBOOK_IO set); any failure leaves plain evcxr
/// behaviour in place. Must run before `evcxr::runtime_hook()`, while the
/// process has one thread.
pub fn install_in_evaluation_process() {
    let Some(path) = std::env::var_os(IO_ENV) else {
        return;
    };
    // SAFETY: prctl with PR_SET_PDEATHSIG only sets a flag on this process.
    unsafe {
        libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
        if libc::getppid() == 1 {
            libc::_exit(0);
        }
    }
    // Panics are reported by the kernel as errors; a backtrace of generated
    // code helps nobody. Single-threaded here, so changing env is sound.
    std::env::set_var("RUST_BACKTRACE", "0");
    if let Err(e) = rewire(Path::new(&path)) {
        eprintln!("threadbook: output capture unavailable ({e}); output may arrive late");
    }
}

fn rewire(path: &Path) -> std::io::Result<()> {
    // SAFETY: fcntl/dup2 on fds this process owns; dup2 replaces atomically.
    unsafe {
        // evcxr's stdout pipe, kept (close-on-exec, so cells' child
        // processes don't hold it) for the kernel to open and write into.
        let proto = libc::fcntl(1, libc::F_DUPFD_CLOEXEC, 3);
        if proto < 0 {
            return Err(std::io::Error::last_os_error());
        }
        let mut out = UnixStream::connect(path)?;
        writeln!(out, "stdout {} {proto}", std::process::id())?;
        out.set_read_timeout(Some(Duration::from_secs(5)))?;
        let mut ack = [0u8; 3];
        out.read_exact(&mut ack)?;
        if &ack != b"ok\n" {
            return Err(std::io::Error::other("the kernel did not take evcxr's pipe"));
        }
        let mut err = UnixStream::connect(path)?;
        writeln!(err, "stderr {}", std::process::id())?;
        if libc::dup2(out.as_raw_fd(), 1) < 0 || libc::dup2(err.as_raw_fd(), 2) < 0 {
            return Err(std::io::Error::last_os_error());
        }
    }
    Ok(())
}

// ---------------------------------------------------------------------------
// Reading evcxr's stdout: protocol, content blocks, display lines, text.

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
    /// The cell's code panicked (evcxr's notice); forward it too.
    Panic(String),
    /// The cell finished; forward the line after the fence.
    Complete(String),
    /// Another evcxr protocol line: forward as it is.
    Forward(String),
}

/// Turns stdout lines into actions; keeps the state of an open content block.
#[derive(Default)]
pub struct StdoutParser {
    block: Option<(String, Vec<String>)>,
}

impl StdoutParser {
    /// True while a content block is open (its lines are not text).
    pub fn in_block(&self) -> bool {
        self.block.is_some()
    }

    pub fn line(&mut self, line: &str, out: &mut Vec<Action>) {
        if let Some((mime, lines)) = &mut self.block {
            if line == "EVCXR_END_CONTENT" {
                let (mime, lines) = (mime.clone(), std::mem::take(lines));
                self.block = None;
                out.push(Action::Block(mime, lines.join("\n")));
                return;
            }
            if line != "EVCXR_PANIC_NOTIFICATION" {
                lines.push(line.to_owned());
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
            self.block = Some((mime.trim().to_owned(), Vec::new()));
        } else if line == "EVCXR_EXECUTION_COMPLETE" {
            out.push(Action::Complete(line.to_owned()));
        } else if line == "EVCXR_PANIC_NOTIFICATION" {
            out.push(Action::Panic(line.to_owned()));
        } else if line.starts_with("EVCXR_") {
            out.push(Action::Forward(line.to_owned()));
        } else if let Some(json) = line.strip_prefix("THREADBOOK_DISPLAY ") {
            match serde_json::from_str::<Value>(json) {
                Ok(v) => out.push(Action::Display {
                    data: serde_json::from_value(v["data"].clone()).unwrap_or_default(),
                    metadata: v.get("metadata").cloned().unwrap_or(Value::Object(Default::default())),
                    display_id: v["display_id"].as_str().map(str::to_owned),
                    update: v["update"].as_bool().unwrap_or(false),
                }),
                Err(e) => out.push(Action::Text(format!(
                    "threadbook: a display line was not valid JSON ({e})\n"
                ))),
            }
        } else if let Some(json) = line.strip_prefix("THREADBOOK_CLEAR_OUTPUT") {
            let wait = serde_json::from_str::<Value>(json.trim())
                .ok()
                .and_then(|v| v["wait"].as_bool())
                .unwrap_or(false);
            out.push(Action::Clear { wait });
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

// ---------------------------------------------------------------------------
// The kernel's side.

/// A fresh socket path for this kernel process.
pub fn default_socket_path() -> PathBuf {
    std::env::temp_dir().join(format!(
        "threadbook-{}-{}.sock",
        std::process::id(),
        uuid::Uuid::new_v4().simple()
    ))
}

/// What the kernel learnt about the running cell from the capture.
#[derive(Debug, Default)]
struct CellState {
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
    /// Evaluation processes whose capture is still being served.
    serving: HashMap<u32, ()>,
    /// Recent stderr text, for reports when the process dies.
    stderr_tail: String,
}

type Shared = Arc<(Mutex<CellState>, Condvar)>;

/// The kernel's end of the capture.
pub struct IoServer {
    path: PathBuf,
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

impl IoServer {
    /// Listens at $THREADBOOK_IO (or a fresh path) and serves every
    /// evaluation process that connects.
    pub fn start(output: Output) -> std::io::Result<IoServer> {
        let path = std::env::var_os(IO_ENV)
            .map(PathBuf::from)
            .unwrap_or_else(default_socket_path);
        let _ = std::fs::remove_file(&path);
        let listener = UnixListener::bind(&path)?;
        let shared: Shared = Arc::default();
        let server = IoServer { path, shared: shared.clone(), output: output.clone() };
        std::thread::Builder::new().name("capture-accept".into()).spawn(move || {
            let mut waiting: HashMap<u32, (UnixStream, std::fs::File)> = HashMap::new();
            for conn in listener.incoming().flatten() {
                if let Err(e) = accept(conn, &mut waiting, &shared, &output) {
                    log::warn!("capture: refused a connection: {e}");
                }
            }
        })?;
        std::thread::Builder::new().name("capture-hold".into()).spawn({
            let weak = Arc::downgrade(&server.shared);
            let output = server.output.clone();
            move || loop {
                std::thread::sleep(HOLD_LAST_CONTENT / 2);
                let Some(shared) = weak.upgrade() else { return };
                let mut st = lock(&shared.0);
                if st.held.as_ref().is_some_and(|(_, t)| t.elapsed() >= HOLD_LAST_CONTENT) {
                    release_held(&mut st, &output);
                }
            }
        })?;
        Ok(server)
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
    /// capture of `died` (the evaluation process that ran the cell, if it
    /// died) has been read to the end, or `timeout`.
    pub fn finish(&self, mark: &Mark, died: Option<u32>, timeout: Duration) -> Finished {
        let (lock_, cvar) = &*self.shared;
        let deadline = Instant::now() + timeout;
        let mut st = lock(lock_);
        loop {
            let fenced = st.fences > mark.fences;
            let gone = died.is_some_and(|pid| !st.serving.contains_key(&pid));
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

impl Drop for IoServer {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

fn lock(m: &Mutex<CellState>) -> std::sync::MutexGuard<'_, CellState> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

fn release_held(st: &mut CellState, output: &Output) {
    if let Some((data, _)) = st.held.take() {
        output.display(with_plain(data), Value::Object(Default::default()), None, false);
    }
}

/// Reads the hello line byte by byte, so no output after it is consumed.
fn hello(conn: &mut UnixStream) -> std::io::Result<String> {
    conn.set_read_timeout(Some(Duration::from_secs(5)))?;
    let mut line = Vec::new();
    let mut byte = [0u8; 1];
    while line.len() < 256 {
        conn.read_exact(&mut byte)?;
        if byte[0] == b'\n' {
            conn.set_read_timeout(None)?;
            return Ok(String::from_utf8_lossy(&line).into_owned());
        }
        line.push(byte[0]);
    }
    Err(std::io::Error::other("hello line too long"))
}

fn accept(
    mut conn: UnixStream,
    waiting: &mut HashMap<u32, (UnixStream, std::fs::File)>,
    shared: &Shared,
    output: &Output,
) -> std::io::Result<()> {
    let line = hello(&mut conn)?;
    let mut words = line.split_whitespace();
    let role = words.next().unwrap_or_default();
    let pid: u32 = words.next().and_then(|p| p.parse().ok()).unwrap_or(0);
    match role {
        "stdout" => {
            let fd: i32 = words.next().and_then(|p| p.parse().ok()).unwrap_or(-1);
            // evcxr's stdout pipe, opened through the evaluation process's fd.
            let proto = std::fs::OpenOptions::new()
                .write(true)
                .open(format!("/proc/{pid}/fd/{fd}"))?;
            conn.write_all(b"ok\n")?;
            waiting.insert(pid, (conn, proto));
        }
        "stderr" => {
            let Some((out, proto)) = waiting.remove(&pid) else {
                return Err(std::io::Error::other(format!("stderr of {pid} came before its stdout")));
            };
            lock(&shared.0).serving.insert(pid, ());
            let (shared, output) = (shared.clone(), output.clone());
            std::thread::Builder::new()
                .name(format!("capture-{pid}"))
                .spawn(move || Serve::new(pid, out, conn, proto, shared, output).run())?;
        }
        other => return Err(std::io::Error::other(format!("unknown role {other:?}"))),
    }
    Ok(())
}

/// A handle that becomes readable when a process exits (pidfd), if the
/// system has them.
fn pidfd(pid: u32) -> Option<std::os::fd::OwnedFd> {
    use std::os::fd::FromRawFd;
    // SAFETY: pidfd_open returns a new fd or -1.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid as libc::pid_t, 0) } as i32;
    // SAFETY: fd is a fresh descriptor we own.
    (fd >= 0).then(|| unsafe { std::os::fd::OwnedFd::from_raw_fd(fd) })
}

/// True once `pid` has exited (a zombie counts as exited).
fn exited(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => stat.rsplit_once(')').and_then(|(_, r)| r.split_whitespace().next()) == Some("Z"),
        Err(_) => true,
    }
}

/// One evaluation process's capture: both streams, on one thread.
///
/// evcxr notices a dead evaluation process when its stdout pipe closes; the
/// kernel holds a write end of that pipe, so it must let go as soon as the
/// process exits — its sockets may stay open longer, held by processes it
/// started.
struct Serve {
    pid: u32,
    out: UnixStream,
    err: UnixStream,
    proto: std::fs::File,
    shared: Shared,
    output: Output,
    parser: StdoutParser,
    out_partial: Vec<u8>,
    err_partial: Vec<u8>,
    partial_since: Instant,
    out_open: bool,
    err_open: bool,
}

impl Serve {
    fn new(pid: u32, out: UnixStream, err: UnixStream, proto: std::fs::File, shared: Shared, output: Output) -> Serve {
        Serve {
            pid,
            out,
            err,
            proto,
            shared,
            output,
            parser: StdoutParser::default(),
            out_partial: Vec::new(),
            err_partial: Vec::new(),
            partial_since: Instant::now(),
            out_open: true,
            err_open: true,
        }
    }

    fn run(mut self) {
        let _ = self.out.set_nonblocking(true);
        let _ = self.err.set_nonblocking(true);
        let exit_fd = pidfd(self.pid);
        while self.out_open || self.err_open {
            let fd = |open: bool, s: &UnixStream| if open { s.as_raw_fd() } else { -1 };
            let mut fds = [
                libc::pollfd { fd: fd(self.out_open, &self.out), events: libc::POLLIN, revents: 0 },
                libc::pollfd { fd: fd(self.err_open, &self.err), events: libc::POLLIN, revents: 0 },
                libc::pollfd { fd: exit_fd.as_ref().map_or(-1, |f| f.as_raw_fd()), events: libc::POLLIN, revents: 0 },
            ];
            let partial = !self.out_partial.is_empty() || !self.err_partial.is_empty();
            let wait = match (partial, &exit_fd) {
                (true, _) => PARTIAL_LINE_DELAY.as_millis() as i32,
                (false, Some(_)) => -1,
                (false, None) => 100, // no pidfd: look at /proc now and then
            };
            // SAFETY: three valid pollfds (fd -1 is ignored by poll).
            let n = unsafe { libc::poll(fds.as_mut_ptr(), 3, wait) };
            if n < 0 {
                if std::io::Error::last_os_error().kind() == std::io::ErrorKind::Interrupted {
                    continue;
                }
                break;
            }
            if fds[0].revents != 0 {
                self.read_stdout();
            }
            if fds[1].revents != 0 {
                self.read_stderr();
            }
            if fds[2].revents != 0 || (exit_fd.is_none() && n == 0 && exited(self.pid)) {
                // Dead: take its last words, then stop.
                self.read_stdout();
                self.read_stderr();
                break;
            }
            if n == 0 && self.partial_since.elapsed() >= PARTIAL_LINE_DELAY {
                self.flush_partials();
            }
        }
        self.flush_partials();
        self.output.flush();
        let (m, cvar) = &*self.shared;
        lock(m).serving.remove(&self.pid);
        cvar.notify_all();
    }

    /// Reads what is available; false at end of stream.
    fn read_available(stream: &mut UnixStream, into: &mut Vec<u8>) -> bool {
        let mut buf = [0u8; 64 * 1024];
        loop {
            match stream.read(&mut buf) {
                Ok(0) => return false,
                Ok(n) => into.extend_from_slice(&buf[..n]),
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return true,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(_) => return false,
            }
        }
    }

    /// Reads what a stream has; returns its complete lines (with newline).
    fn read_lines(stream: &mut UnixStream, open: &mut bool, partial: &mut Vec<u8>, since: &mut Instant) -> Vec<String> {
        if !*open {
            return Vec::new();
        }
        if partial.is_empty() {
            *since = Instant::now();
        }
        *open = Self::read_available(stream, partial);
        let mut lines = Vec::new();
        while let Some(nl) = partial.iter().position(|&b| b == b'\n') {
            let line: Vec<u8> = partial.drain(..=nl).collect();
            lines.push(String::from_utf8_lossy(&line).into_owned());
        }
        lines
    }

    fn read_stdout(&mut self) {
        let lines = Self::read_lines(&mut self.out, &mut self.out_open, &mut self.out_partial, &mut self.partial_since);
        for line in lines {
            let mut actions = Vec::new();
            self.parser.line(line.trim_end_matches('\n'), &mut actions);
            for action in actions {
                self.apply(action);
            }
        }
    }

    fn read_stderr(&mut self) {
        let lines = Self::read_lines(&mut self.err, &mut self.err_open, &mut self.err_partial, &mut self.partial_since);
        for line in lines {
            self.stderr_line(&line);
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
        let mut st = lock(&self.shared.0);
        if std::mem::take(&mut st.held_blank) {
            drop(st);
            self.stderr_text("\n");
        }
    }

    fn forward(&mut self, line: &str) {
        let _ = self.proto.write_all(format!("{line}\n").as_bytes());
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
                // The cell is done: all it wrote on stderr is readable now.
                self.read_stderr();
                self.flush_partials();
                self.output.flush();
                {
                    let (m, cvar) = &*self.shared;
                    let mut st = lock(m);
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
                    Action::Display { data, metadata, display_id, update } => {
                        self.output.display(with_plain(data), metadata, display_id.as_deref(), update)
                    }
                    Action::Clear { wait } => self.output.clear_output(wait),
                    _ => {}
                }
            }
        }
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
                    t.push_str(line);
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
        if st.stderr_tail.len() > 16 * 1024 {
            let cut = st.stderr_tail.len() - 8 * 1024;
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
        assert!(matches!(&actions[2], Action::Text(t) if t.contains("not valid JSON")));
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
