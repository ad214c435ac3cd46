//! Output capture between the evaluation process and the kernel.
//!
//! The evaluation process is this binary in evcxr's runtime mode. Before
//! evcxr takes over, [`install_in_evaluation_process`] rewires it:
//!
//! * fd 2 becomes a Unix socket to the kernel, so everything written to
//!   stderr — including the last words of a process that aborts — reaches the
//!   kernel directly and at once;
//! * fd 1 becomes a pipe read by a *splitter* thread. evcxr's protocol lines
//!   (execution complete, panic notice, input requests, …) go on to evcxr on
//!   the original stdout, in order; user output, rich content blocks and
//!   threadbook display lines go to the kernel as JSON events over a second
//!   socket. Both stay open between cells, so output printed by a thread
//!   after its cell ended reaches the kernel while no cell runs.
//!
//! Before passing "execution complete" on, the splitter sends a fence on both
//! channels; the kernel waits for both fences, so a reply never overtakes the
//! output of its cell.
//!
//! [`IoServer`] is the kernel's end: it accepts those connections (a new pair
//! each time the evaluation process restarts) and publishes through
//! [`Output`].

use crate::iopub::Output;
use crate::messages::MimeBundle;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::io::{BufRead, BufReader, Read, Write};
use std::os::fd::{AsRawFd, FromRawFd};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

/// Path of the kernel's capture socket, for the evaluation process.
pub const IO_ENV: &str = "THREADBOOK_IO";
/// Written to stderr, alone on a line, after a cell's output.
const STDERR_FENCE: &str = "\u{0}threadbook-fence\u{0}";
/// A content block that is not followed by anything else within this time is
/// shown as a display; the last block of a cell may become its result.
const HOLD_LAST_CONTENT: Duration = Duration::from_millis(100);
/// Partial lines (print! without newline) are sent after this pause.
const PARTIAL_LINE_DELAY: Duration = Duration::from_millis(50);

/// Events from the splitter to the kernel, one JSON object per line.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(tag = "k", rename_all = "snake_case")]
pub enum Event {
    /// User text on stdout.
    Out { t: String },
    /// One evcxr content bundle (mime → text).
    Content { data: MimeBundle },
    /// A threadbook display line: display_data or update_display_data.
    Display {
        data: MimeBundle,
        #[serde(default)]
        metadata: Value,
        #[serde(default)]
        display_id: Option<String>,
        #[serde(default)]
        update: bool,
    },
    Clear { wait: bool },
    /// The cell's code panicked (evcxr's notice).
    Panic,
    /// Everything the cell printed on stdout is before this.
    Fence,
}

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

fn connect(path: &Path, role: &str) -> std::io::Result<UnixStream> {
    let mut s = UnixStream::connect(path)?;
    writeln!(s, "{role} {}", std::process::id())?;
    Ok(s)
}

fn rewire(path: &Path) -> std::io::Result<()> {
    let events = connect(path, "events")?;
    let errs = connect(path, "stderr")?;
    // SAFETY: plain fd juggling on fds this function owns; fd 1 and 2 are
    // replaced atomically by dup2.
    unsafe {
        let proto = libc::dup(1);
        let mut fds = [0; 2];
        if proto < 0 || libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) != 0 {
            return Err(std::io::Error::last_os_error());
        }
        if libc::dup2(errs.as_raw_fd(), 2) < 0 || libc::dup2(fds[1], 1) < 0 {
            return Err(std::io::Error::last_os_error());
        }
        libc::close(fds[1]);
        let reader = std::fs::File::from_raw_fd(fds[0]);
        let proto = std::fs::File::from_raw_fd(proto);
        std::thread::Builder::new()
            .name("threadbook-splitter".into())
            .spawn(move || Splitter::new(proto, events).run(reader))?;
    }
    Ok(())
}

struct Splitter {
    proto: std::fs::File,
    events: UnixStream,
    /// Content blocks collected into one bundle.
    bundle: MimeBundle,
    /// Inside EVCXR_BEGIN_CONTENT: (mime, lines so far).
    block: Option<(String, Vec<String>)>,
}

impl Splitter {
    fn new(proto: std::fs::File, events: UnixStream) -> Splitter {
        Splitter {
            proto,
            events,
            bundle: MimeBundle::new(),
            block: None,
        }
    }

    fn send(&mut self, ev: &Event) {
        if let Ok(mut line) = serde_json::to_string(ev) {
            line.push('\n');
            let _ = self.events.write_all(line.as_bytes());
        }
    }

    fn flush_bundle(&mut self) {
        if !self.bundle.is_empty() {
            let data = std::mem::take(&mut self.bundle);
            self.send(&Event::Content { data });
        }
    }

    fn forward(&mut self, line: &str) {
        let _ = self.proto.write_all(line.as_bytes());
        let _ = self.proto.write_all(b"\n");
        let _ = self.proto.flush();
    }

    fn run(mut self, mut reader: std::fs::File) {
        let mut buf = vec![0u8; 64 * 1024];
        let mut pending: Vec<u8> = Vec::new();
        let mut pending_since = Instant::now();
        loop {
            let mut pfd = libc::pollfd {
                fd: reader.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            };
            let wait_ms = if pending.is_empty() && self.bundle.is_empty() {
                -1
            } else {
                PARTIAL_LINE_DELAY.as_millis() as i32
            };
            // SAFETY: one valid pollfd.
            let ready = unsafe { libc::poll(&mut pfd, 1, wait_ms) };
            if ready == 0 {
                // Quiet: show a partial line, and a bundle nothing followed.
                if self.block.is_none() {
                    self.flush_bundle();
                    if !pending.is_empty() && pending_since.elapsed() >= PARTIAL_LINE_DELAY {
                        let t = String::from_utf8_lossy(&pending).into_owned();
                        pending.clear();
                        self.send(&Event::Out { t });
                    }
                }
                continue;
            }
            let n = match reader.read(&mut buf) {
                Ok(0) => return,
                Ok(n) => n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(_) => return,
            };
            if pending.is_empty() {
                pending_since = Instant::now();
            }
            pending.extend_from_slice(&buf[..n]);
            while let Some(nl) = pending.iter().position(|&b| b == b'\n') {
                let line: Vec<u8> = pending.drain(..=nl).collect();
                let line = String::from_utf8_lossy(&line[..line.len() - 1]).into_owned();
                self.line(&line);
            }
        }
    }

    fn line(&mut self, line: &str) {
        if let Some((mime, lines)) = &mut self.block {
            if line == "EVCXR_END_CONTENT" {
                let (mime, lines) = (mime.clone(), std::mem::take(lines));
                self.block = None;
                if self.bundle.contains_key(&mime) {
                    self.flush_bundle();
                }
                self.bundle.insert(mime, Value::String(lines.join("\n")));
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
                self.flush_bundle();
                self.send(&Event::Out { t: text.to_owned() });
                return self.line(rest);
            }
        }
        if let Some(mime) = line.strip_prefix("EVCXR_BEGIN_CONTENT ") {
            self.block = Some((mime.trim().to_owned(), Vec::new()));
            return;
        }
        self.flush_bundle();
        if line == "EVCXR_EXECUTION_COMPLETE" {
            self.send(&Event::Fence);
            let mut err = std::io::stderr().lock();
            let _ = writeln!(err, "{STDERR_FENCE}");
            let _ = err.flush();
            drop(err);
            self.forward(line);
        } else if line == "EVCXR_PANIC_NOTIFICATION" {
            self.send(&Event::Panic);
            self.forward(line);
        } else if line.starts_with("EVCXR_") {
            self.forward(line);
        } else if let Some(json) = line.strip_prefix("THREADBOOK_DISPLAY ") {
            match serde_json::from_str::<Value>(json) {
                Ok(v) => {
                    let ev = Event::Display {
                        data: serde_json::from_value(v["data"].clone()).unwrap_or_default(),
                        metadata: v.get("metadata").cloned().unwrap_or(Value::Object(Default::default())),
                        display_id: v["display_id"].as_str().map(str::to_owned),
                        update: v["update"].as_bool().unwrap_or(false),
                    };
                    self.send(&ev);
                }
                Err(e) => self.send(&Event::Out {
                    t: format!("threadbook: a display line was not valid JSON ({e})\n"),
                }),
            }
        } else if let Some(json) = line.strip_prefix("THREADBOOK_CLEAR_OUTPUT") {
            let wait = serde_json::from_str::<Value>(json.trim())
                .ok()
                .and_then(|v| v["wait"].as_bool())
                .unwrap_or(false);
            self.send(&Event::Clear { wait });
        } else {
            self.send(&Event::Out {
                t: format!("{line}\n"),
            });
        }
    }
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

/// What the kernel learnt about the running cell from the capture channels.
#[derive(Debug, Default)]
struct CellState {
    stdout_fences: u64,
    stderr_fences: u64,
    panicked: bool,
    /// The main thread's panic message, kept out of the stderr stream.
    panic_text: Option<String>,
    capturing_panic: bool,
    /// The newest content bundle, held back in case it is the cell's value.
    held: Option<(MimeBundle, Instant)>,
    /// The bundle that stood last when the cell finished.
    last_bundle: Option<MimeBundle>,
    /// Open connections per evaluation process id.
    open_connections: std::collections::HashMap<u32, u32>,
    /// Recent stderr text, for reports when the process dies.
    stderr_tail: String,
}

/// The kernel's end of the capture channels.
pub struct IoServer {
    path: PathBuf,
    shared: Arc<(Mutex<CellState>, Condvar)>,
    output: Output,
}

/// A cell's view of the capture, taken when it starts.
pub struct Mark {
    stdout_fences: u64,
    stderr_fences: u64,
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
    pub fn start(output: Output) -> std::io::Result<IoServer> {
        let path = std::env::var_os(IO_ENV)
            .map(PathBuf::from)
            .unwrap_or_else(default_socket_path);
        let _ = std::fs::remove_file(&path);
        let listener = UnixListener::bind(&path)?;
        let shared: Arc<(Mutex<CellState>, Condvar)> = Arc::default();
        let server = IoServer {
            path,
            shared: shared.clone(),
            output: output.clone(),
        };
        std::thread::Builder::new()
            .name("capture-accept".into())
            .spawn(move || {
                for conn in listener.incoming().flatten() {
                    let (shared, output) = (shared.clone(), output.clone());
                    let _ = std::thread::Builder::new()
                        .name("capture-read".into())
                        .spawn(move || serve(conn, shared, output));
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

    pub fn path(&self) -> &Path {
        &self.path
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
        Mark {
            stdout_fences: st.stdout_fences,
            stderr_fences: st.stderr_fences,
        }
    }

    /// Waits until the cell's output is all in (both fences), or until the
    /// connections of `died` (the evaluation process that ran the cell, if it
    /// died) are closed, or `timeout`.
    pub fn finish(&self, mark: &Mark, died: Option<u32>, timeout: Duration) -> Finished {
        let (lock_, cvar) = &*self.shared;
        let deadline = Instant::now() + timeout;
        let mut st = lock(lock_);
        loop {
            let fenced = st.stdout_fences > mark.stdout_fences && st.stderr_fences > mark.stderr_fences;
            let gone = died.is_some_and(|pid| st.open_connections.get(&pid).copied().unwrap_or(0) == 0);
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
            // The process died or fences timed out: whatever was held is output.
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

/// Every bundle needs text/plain; derive a short one when a block had none.
pub fn with_plain(mut data: MimeBundle) -> MimeBundle {
    if !data.contains_key("text/plain") {
        let kinds: Vec<&str> = data.keys().map(String::as_str).collect();
        let text = format!("[{}]", kinds.join(", "));
        data.insert("text/plain".into(), Value::String(text));
    }
    data
}

fn serve(conn: UnixStream, shared: Arc<(Mutex<CellState>, Condvar)>, output: Output) {
    let mut reader = BufReader::new(conn);
    let mut hello = String::new();
    if reader.read_line(&mut hello).is_err() {
        return;
    }
    let mut words = hello.split_whitespace();
    let role = words.next().unwrap_or_default().to_owned();
    let pid: u32 = words.next().and_then(|p| p.parse().ok()).unwrap_or(0);
    *lock(&shared.0).open_connections.entry(pid).or_default() += 1;
    match role.as_str() {
        "events" => serve_events(reader, &shared, &output),
        "stderr" => serve_stderr(reader, pid, &shared, &output),
        other => log::warn!("capture: unknown connection role {other:?}"),
    }
    output.flush();
    let (m, cvar) = &*shared;
    {
        let mut st = lock(m);
        if let Some(n) = st.open_connections.get_mut(&pid) {
            *n -= 1;
            if *n == 0 {
                st.open_connections.remove(&pid);
            }
        }
    }
    cvar.notify_all();
}

fn serve_events(reader: BufReader<UnixStream>, shared: &Arc<(Mutex<CellState>, Condvar)>, output: &Output) {
    let (m, cvar) = &**shared;
    for line in reader.lines() {
        let Ok(line) = line else { break };
        let ev: Event = match serde_json::from_str(&line) {
            Ok(ev) => ev,
            Err(e) => {
                log::warn!("capture: bad event {e}");
                continue;
            }
        };
        let mut st = lock(m);
        match ev {
            Event::Content { data } => {
                release_held(&mut st, output);
                st.held = Some((data, Instant::now()));
            }
            Event::Fence => {
                st.last_bundle = st.held.take().map(|(d, _)| d);
                output.flush();
                st.stdout_fences += 1;
                cvar.notify_all();
            }
            Event::Panic => st.panicked = true,
            other => {
                release_held(&mut st, output);
                drop(st);
                match other {
                    Event::Out { t } => output.stream("stdout", &t),
                    Event::Display { data, metadata, display_id, update } => {
                        output.display(with_plain(data), metadata, display_id.as_deref(), update)
                    }
                    Event::Clear { wait } => output.clear_output(wait),
                    _ => {}
                }
            }
        }
    }
}

fn serve_stderr(mut reader: BufReader<UnixStream>, pid: u32, shared: &Arc<(Mutex<CellState>, Condvar)>, output: &Output) {
    let (m, cvar) = &**shared;
    let _ = reader.get_ref().set_read_timeout(Some(PARTIAL_LINE_DELAY));
    let mut pending: Vec<u8> = Vec::new();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = match reader.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => {
                // Quiet: a partial line (eprint! without newline) goes out now.
                if !pending.is_empty() {
                    let text = String::from_utf8_lossy(&pending).into_owned();
                    pending.clear();
                    stderr_text(&mut lock(m), output, &text);
                }
                continue;
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(_) => break,
        };
        pending.extend_from_slice(&buf[..n]);
        while let Some(nl) = pending.iter().position(|&b| b == b'\n') {
            let line: Vec<u8> = pending.drain(..=nl).collect();
            let line = String::from_utf8_lossy(&line).into_owned();
            let mut st = lock(m);
            if line.trim_end_matches('\n') == STDERR_FENCE {
                st.capturing_panic = false;
                output.flush();
                st.stderr_fences += 1;
                cvar.notify_all();
            } else {
                stderr_line(&mut st, output, &line, pid);
            }
        }
    }
    if !pending.is_empty() {
        let text = String::from_utf8_lossy(&pending).into_owned();
        stderr_text(&mut lock(m), output, &text);
    }
}

fn stderr_text(st: &mut CellState, output: &Output, text: &str) {
    log::debug!("evaluation stderr: {}", text.trim_end());
    release_held(st, output);
    st.stderr_tail.push_str(text);
    if st.stderr_tail.len() > 16 * 1024 {
        let cut = st.stderr_tail.len() - 8 * 1024;
        let cut = (cut..st.stderr_tail.len()).find(|&i| st.stderr_tail.is_char_boundary(i)).unwrap_or(0);
        st.stderr_tail.drain(..cut);
    }
    output.stream("stderr", text);
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

/// One stderr line: the cell's own panic message is kept for the error
/// report; everything else is published as it comes.
fn stderr_line(st: &mut CellState, output: &Output, line: &str, pid: u32) {
    if is_cell_panic(line, pid) {
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
    stderr_text(st, output, line);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_round_trip_as_one_json_line() {
        let ev = Event::Display {
            data: [("text/html".to_owned(), Value::from("<b>\nx</b>"))].into(),
            metadata: Value::Null,
            display_id: Some("d".into()),
            update: true,
        };
        let line = serde_json::to_string(&ev).unwrap();
        assert!(!line.contains('\n'));
        assert_eq!(serde_json::from_str::<Event>(&line).unwrap(), ev);
        assert_eq!(serde_json::to_string(&Event::Fence).unwrap(), r#"{"k":"fence"}"#);
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
