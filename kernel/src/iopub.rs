//! The output router: one thread that owns the iopub (XPUB) socket and all
//! iopub state. Everything that publishes — the pipeline's `busy`/`idle`, the
//! executor's `execute_input`, the engine's streams and displays — sends an
//! [`Event`] down one bounded channel, so broadcast order is sending order and
//! a full channel slows the sender down instead of losing a message.
//!
//! The router knows which request engine output belongs to (the running
//! cell, or between cells the cell that ran last), batches stream text on its
//! own clock (the channel's receive timeout: no timer thread, no lock), keeps
//! stdout and stderr in the order they were written, and caps what one cell
//! may send: stream text, displays and errors, each with a note the learner
//! sees.
//!
//! Handles: [`Publisher`] (pipeline and executor: messages with an explicit
//! parent, cell attach/detach, barriers) and [`Output`] (the engine's).

use crate::protocol::{
    cut_text, parent_json, ClearOutput, DisplayData, ErrorContent, ExecuteResult, ExecutionState, Header,
    IopubContent, IopubWelcome, MimeBundle, Parent, StreamContent, Transient,
};
use crate::wire::{RawMessage, Signer};
use crossbeam_channel::{Receiver, RecvTimeoutError, Sender};
use serde_json::Value;
use std::panic::AssertUnwindSafe;
use std::time::{Duration, Instant};

/// How long stream text may wait before it is sent.
pub const STREAM_FLUSH_INTERVAL: Duration = Duration::from_millis(40);
/// Text kept in one pending stream message before it is sent regardless.
const STREAM_MAX_PENDING: usize = 512 * 1024;
/// Stream text one cell may send; past it, output is dropped (and counted)
/// so a runaway cell cannot bury the notebook or the frontend.
pub const STREAM_LIMIT_PER_CELL: usize = 32 * 1024 * 1024;
/// One display (or execute_result) may hold this much: a plotly figure with
/// its bundled script is ~4 MiB, a base64 4K PNG ~10 MiB. Bigger ones are
/// replaced by a note.
pub const DISPLAY_LIMIT_PER_MESSAGE: usize = 16 * 1024 * 1024;
/// Display data one cell may send in all; past it, displays are dropped.
pub const DISPLAY_LIMIT_PER_CELL: usize = 64 * 1024 * 1024;
/// An error's evalue and traceback together (a compile error with many
/// notes is a few KiB).
pub const ERROR_LIMIT: usize = 1024 * 1024;
/// Events waiting for the router. A sender blocks while it is full, so
/// nothing is lost; with messages capped above, this bounds what waits.
pub const QUEUE_CAPACITY: usize = 1024;
/// How long a sender waits for the router to publish (flush, barrier).
const ACK_TIMEOUT: Duration = Duration::from_secs(5);

/// One thing for the router to do.
#[derive(Debug)]
pub enum Event {
    /// A message with its own parent (status, execute_input, comm_close…).
    Publish { content: IopubContent, parent: Parent },
    /// Engine output from now on belongs to `parent`. A silent request mutes
    /// engine output until the next attach, and leaves the previous parent
    /// in place for output that arrives later. Also ends a suppress.
    Attach { parent: Parent, silent: bool },
    /// Ends a silent request's muting.
    DetachSilent,
    /// While on, engine output for the current cell is dropped.
    Suppress(bool),
    /// Engine stream text.
    Stream { name: &'static str, text: String },
    /// Engine output other than streams: displays, updates, clear_output,
    /// execute_result, error.
    Output(IopubContent),
    /// Publish pending stream text and everything before this, then answer.
    Flush(Sender<()>),
}

/// The pipeline's and executor's handle on the router.
#[derive(Clone)]
pub struct Publisher {
    tx: Sender<Event>,
}

impl Publisher {
    /// A publisher and the receiving end for [`run`].
    pub fn new() -> (Publisher, Receiver<Event>) {
        let (tx, rx) = crossbeam_channel::bounded(QUEUE_CAPACITY);
        (Publisher { tx }, rx)
    }

    fn send(&self, event: Event) {
        // Fails only when the router is gone (the kernel is exiting).
        let _ = self.tx.send(event);
    }

    pub fn publish(&self, content: IopubContent, parent: &Parent) {
        self.send(Event::Publish {
            content,
            parent: parent.clone(),
        });
    }

    pub fn status(&self, state: ExecutionState, parent: &Parent) {
        self.publish(IopubContent::status(state), parent);
    }

    pub fn attach(&self, parent: &Parent, silent: bool) {
        self.send(Event::Attach {
            parent: parent.clone(),
            silent,
        });
    }

    pub fn detach_silent(&self) {
        self.send(Event::DetachSilent);
    }

    /// Blocks until everything published so far has been handed to the
    /// socket (or `timeout` passed).
    pub fn barrier(&self, timeout: Duration) {
        let (ack, done) = crossbeam_channel::bounded(1);
        if self.tx.send_timeout(Event::Flush(ack), timeout).is_ok() {
            let _ = done.recv_timeout(timeout);
        }
    }

    /// The engine's handle.
    pub fn output(&self) -> Output {
        Output { tx: self.tx.clone() }
    }
}

/// The engine's handle: output for the current cell.
#[derive(Clone)]
pub struct Output {
    tx: Sender<Event>,
}

impl Output {
    fn send(&self, event: Event) {
        let _ = self.tx.send(event);
    }

    pub fn stream(&self, name: &'static str, text: &str) {
        if !text.is_empty() {
            self.send(Event::Stream {
                name,
                text: text.to_owned(),
            });
        }
    }

    pub fn display(&self, data: MimeBundle, metadata: Value, display_id: Option<&str>, update: bool) {
        let display = DisplayData {
            data,
            metadata,
            transient: Transient {
                display_id: display_id.map(str::to_owned),
            },
        };
        let content = if update && display_id.is_some() {
            IopubContent::UpdateDisplayData(display)
        } else {
            IopubContent::DisplayData(display)
        };
        self.send(Event::Output(content));
    }

    pub fn clear_output(&self, wait: bool) {
        self.send(Event::Output(IopubContent::ClearOutput(ClearOutput { wait })));
    }

    pub fn execute_result(&self, execution_count: u64, data: MimeBundle, metadata: Value) {
        self.send(Event::Output(IopubContent::ExecuteResult(ExecuteResult {
            execution_count,
            data,
            metadata,
        })));
    }

    pub fn error(&self, e: &ErrorContent) {
        self.send(Event::Output(IopubContent::Error(e.clone())));
    }

    /// While on, everything published for the current cell is dropped (the
    /// engine replays earlier cells quietly). The next cell starts with it
    /// off.
    pub fn suppress(&self, on: bool) {
        self.send(Event::Suppress(on));
    }

    /// Blocks until pending stream text (and everything sent before) has
    /// been published.
    pub fn flush(&self) {
        let (ack, done) = crossbeam_channel::bounded(1);
        if self.tx.send_timeout(Event::Flush(ack), ACK_TIMEOUT).is_ok() {
            let _ = done.recv_timeout(ACK_TIMEOUT);
        }
    }
}

/// Cuts an error to [`ERROR_LIMIT`] bytes (evalue first, then traceback
/// lines), saying so in its last line. Idempotent, so the reply and the
/// iopub `error` stay identical.
pub fn limit_error(e: &ErrorContent) -> ErrorContent {
    let size = e.evalue.len() + e.traceback.iter().map(String::len).sum::<usize>();
    if size <= ERROR_LIMIT {
        return e.clone();
    }
    let mut left = ERROR_LIMIT / 2;
    let evalue = cut_text(&e.evalue, left);
    left = ERROR_LIMIT - evalue.len() - 200;
    let mut traceback = Vec::new();
    for line in &e.traceback {
        if line.len() > left {
            traceback.push(cut_text(line, left));
            break;
        }
        left -= line.len();
        traceback.push(line.clone());
    }
    traceback.push(format!(
        "[threadbook: this error was {} KiB; it is cut to {} KiB]",
        size >> 10,
        ERROR_LIMIT >> 10
    ));
    ErrorContent {
        ename: cut_text(&e.ename, 200),
        evalue,
        traceback,
    }
}

/// Bytes a bundle and its metadata take as JSON values, near enough.
fn bundle_size(data: &MimeBundle, metadata: &Value) -> usize {
    let value = |v: &Value| match v {
        Value::String(s) => s.len(),
        other => other.to_string().len(),
    };
    data.iter().map(|(k, v)| k.len() + value(v)).sum::<usize>() + value(metadata)
}

fn note_bundle(text: String) -> MimeBundle {
    [("text/plain".to_owned(), Value::String(text))].into()
}

struct Pending {
    name: &'static str,
    text: String,
    since: Instant,
}

/// Where a message goes: the XPUB socket in the kernel, a list in tests.
pub trait Sink {
    fn send(&mut self, content: &IopubContent, parent: &Parent);
    /// Answers new subscriptions (XPUB); nothing elsewhere.
    fn welcome(&mut self) {}
}

/// The XPUB socket, signing each message.
pub struct Socket {
    pub sock: zmq::Socket,
    pub signer: Signer,
    pub session: String,
}

impl Sink for Socket {
    fn send(&mut self, content: &IopubContent, parent: &Parent) {
        let msg_type = content.msg_type();
        let topic = match content {
            IopubContent::IopubWelcome(w) => w.subscription.clone().into_bytes(),
            _ => format!("kernel.{}.{msg_type}", self.session).into_bytes(),
        };
        let body = match content.content() {
            Ok(body) => body,
            Err(e) => {
                log::error!("iopub: cannot encode {msg_type}: {e}");
                return;
            }
        };
        let msg = RawMessage {
            identities: vec![topic],
            header: serde_json::to_value(Header::new(msg_type, &self.session)).unwrap_or_default(),
            parent_header: parent_json(parent),
            metadata: Value::Object(Default::default()),
            content: body,
            buffers: vec![],
        };
        if let Err(e) = self.sock.send_multipart(msg.encode(&self.signer), 0) {
            log::warn!("iopub send of {msg_type} failed: {e}");
        }
    }

    fn welcome(&mut self) {
        // Subscriptions arrive on the XPUB socket: greet each one so the
        // client knows it will see what follows.
        while let Ok(frame) = self.sock.recv_bytes(zmq::DONTWAIT) {
            if frame.first() == Some(&1) {
                let subscription = String::from_utf8_lossy(&frame[1..]).into_owned();
                self.send(&IopubContent::IopubWelcome(IopubWelcome { subscription }), &None);
            }
        }
    }
}

/// The router's state: who engine output belongs to, and what it has sent.
struct Router<S: Sink> {
    sink: S,
    parent: Parent,
    /// A silent request is running: engine output is dropped.
    muted: bool,
    /// The engine asked for its output to be dropped (quiet replay).
    suppressed: bool,
    pending: Option<(Pending, Parent)>,
    stream_sent: usize,
    stream_dropped: usize,
    display_sent: usize,
    display_dropped: usize,
}

impl<S: Sink> Router<S> {
    fn new(sink: S) -> Self {
        Router {
            sink,
            parent: None,
            muted: false,
            suppressed: false,
            pending: None,
            stream_sent: 0,
            stream_dropped: 0,
            display_sent: 0,
            display_dropped: 0,
        }
    }

    fn quiet(&self) -> bool {
        self.muted || self.suppressed
    }

    fn flush_pending(&mut self) {
        if let Some((p, parent)) = self.pending.take() {
            let content = IopubContent::Stream(StreamContent { name: p.name, text: p.text });
            self.sink.send(&content, &parent);
        }
    }

    /// When pending text must go out, if any.
    fn deadline(&self) -> Option<Instant> {
        self.pending.as_ref().map(|(p, _)| p.since + STREAM_FLUSH_INTERVAL)
    }

    fn handle(&mut self, event: Event) {
        match event {
            Event::Stream { name, text } => self.stream(name, text),
            Event::Publish { content, parent } => {
                self.flush_pending();
                self.sink.send(&content, &parent);
            }
            Event::Attach { parent, silent } => {
                self.flush_pending();
                self.stream_sent = 0;
                self.stream_dropped = 0;
                self.display_sent = 0;
                self.display_dropped = 0;
                self.suppressed = false;
                self.muted = silent;
                if !silent {
                    self.parent = parent;
                }
            }
            Event::DetachSilent => {
                self.flush_pending();
                self.muted = false;
            }
            Event::Suppress(on) => {
                self.flush_pending();
                self.suppressed = on;
            }
            Event::Output(content) => {
                self.flush_pending();
                if let Some(content) = self.limit(content) {
                    if !self.quiet() {
                        let parent = self.parent.clone();
                        self.sink.send(&content, &parent);
                    }
                }
            }
            Event::Flush(ack) => {
                self.flush_pending();
                let _ = ack.send(());
            }
        }
    }

    fn stream(&mut self, name: &'static str, text: String) {
        if self.quiet() {
            return;
        }
        if self.stream_sent + text.len() > STREAM_LIMIT_PER_CELL {
            if self.stream_dropped == 0 {
                self.flush_pending();
                let notice = format!(
                    "\n[threadbook: this cell printed more than {} MiB; further output is dropped. The cell keeps running: interrupt it to stop it.]\n",
                    STREAM_LIMIT_PER_CELL >> 20
                );
                let parent = self.parent.clone();
                self.sink.send(&IopubContent::Stream(StreamContent { name: "stderr", text: notice }), &parent);
            }
            self.stream_dropped += text.len();
            return;
        }
        self.stream_sent += text.len();
        // Pending text always has the current parent: attach flushes it.
        let same = matches!(&self.pending, Some((p, _)) if p.name == name);
        if !same {
            self.flush_pending();
        }
        match &mut self.pending {
            Some((p, _)) => p.text.push_str(&text),
            None => {
                let pending = Pending {
                    name,
                    text,
                    since: Instant::now(),
                };
                self.pending = Some((pending, self.parent.clone()));
            }
        }
        if self.pending.as_ref().is_some_and(|(p, _)| p.text.len() >= STREAM_MAX_PENDING) {
            self.flush_pending();
        }
    }

    /// Applies the display and error caps; None when the message is dropped.
    fn limit(&mut self, content: IopubContent) -> Option<IopubContent> {
        let (data, metadata) = match &content {
            IopubContent::DisplayData(d) | IopubContent::UpdateDisplayData(d) => (&d.data, &d.metadata),
            IopubContent::ExecuteResult(r) => (&r.data, &r.metadata),
            IopubContent::Error(e) => return Some(IopubContent::Error(limit_error(e))),
            _ => return Some(content),
        };
        let size = bundle_size(data, metadata);
        if size > DISPLAY_LIMIT_PER_MESSAGE {
            let note = note_bundle(format!(
                "[threadbook: this output is {:.1} MiB, more than the {} MiB one display may hold; it is not shown.]",
                size as f64 / (1 << 20) as f64,
                DISPLAY_LIMIT_PER_MESSAGE >> 20
            ));
            return Some(match content {
                IopubContent::DisplayData(d) => IopubContent::DisplayData(DisplayData {
                    data: note,
                    metadata: Value::Object(Default::default()),
                    transient: d.transient,
                }),
                IopubContent::UpdateDisplayData(d) => IopubContent::UpdateDisplayData(DisplayData {
                    data: note,
                    metadata: Value::Object(Default::default()),
                    transient: d.transient,
                }),
                IopubContent::ExecuteResult(r) => IopubContent::ExecuteResult(ExecuteResult {
                    execution_count: r.execution_count,
                    data: note,
                    metadata: Value::Object(Default::default()),
                }),
                other => other,
            });
        }
        if self.display_sent + size > DISPLAY_LIMIT_PER_CELL {
            if self.display_dropped == 0 && !self.quiet() {
                let notice = format!(
                    "\n[threadbook: this cell's displays passed {} MiB; further displays are dropped.]\n",
                    DISPLAY_LIMIT_PER_CELL >> 20
                );
                let parent = self.parent.clone();
                self.sink.send(&IopubContent::Stream(StreamContent { name: "stderr", text: notice }), &parent);
            }
            self.display_dropped += 1;
            return None;
        }
        self.display_sent += size;
        Some(content)
    }
}

/// The router thread's body: serves events until every sender is gone.
/// A panic while handling one event loses at most that event.
pub fn run<S: Sink>(sink: S, events: Receiver<Event>) {
    let mut router = Router::new(sink);
    loop {
        router.sink.welcome();
        let wait = match router.deadline() {
            Some(due) => due.saturating_duration_since(Instant::now()).min(Duration::from_millis(20)),
            None => Duration::from_millis(20),
        };
        match events.recv_timeout(wait) {
            Ok(event) => {
                let handled = std::panic::catch_unwind(AssertUnwindSafe(|| router.handle(event)));
                if handled.is_err() {
                    log::error!("iopub: an event was lost to a panic; the router goes on");
                }
            }
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => {
                router.flush_pending();
                return;
            }
        }
        if router.deadline().is_some_and(|due| due <= Instant::now()) {
            router.flush_pending();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::ClientHeader;
    use serde_json::json;
    use std::sync::{Arc, Mutex};

    type Sent = Arc<Mutex<Vec<(String, Value, Value)>>>;

    struct Recorder(Sent);

    impl Sink for Recorder {
        fn send(&mut self, content: &IopubContent, parent: &Parent) {
            self.0.lock().unwrap().push((
                content.msg_type().to_owned(),
                content.content().unwrap(),
                parent_json(parent),
            ));
        }
    }

    /// A router on its own thread, and what it sent.
    fn start() -> (Publisher, Output, Sent) {
        let (publisher, rx) = Publisher::new();
        let sent = Sent::default();
        let sink = Recorder(sent.clone());
        std::thread::spawn(move || run(sink, rx));
        let out = publisher.output();
        (publisher, out, sent)
    }

    fn take(out: &Output, sent: &Sent) -> Vec<(String, Value, Value)> {
        out.flush();
        std::mem::take(&mut *sent.lock().unwrap())
    }

    fn parent(id: &str) -> Parent {
        Some(ClientHeader {
            msg_type: "execute_request".into(),
            msg_id: Some(id.into()),
            rest: Default::default(),
        })
    }

    #[test]
    fn lines_are_batched_and_order_kept_across_streams() {
        let (publisher, out, sent) = start();
        publisher.attach(&parent("cell-1"), false);
        for i in 0..1000 {
            out.stream("stdout", &format!("{i}\n"));
        }
        out.stream("stderr", "warn\n");
        out.stream("stdout", "after\n");
        let msgs = take(&out, &sent);
        assert_eq!(msgs.len(), 3, "{msgs:?}");
        assert_eq!(msgs[0].1["name"], "stdout");
        assert!(msgs[0].1["text"].as_str().unwrap().starts_with("0\n1\n"));
        assert_eq!(msgs[1].1["text"], "warn\n");
        assert_eq!(msgs[2].1["text"], "after\n");
        assert!(msgs.iter().all(|m| m.2["msg_id"] == "cell-1"));
    }

    #[test]
    fn a_flood_is_cut_at_the_limit_with_one_notice() {
        let (publisher, out, sent) = start();
        publisher.attach(&parent("flood"), false);
        let chunk = "x".repeat(1 << 20);
        for _ in 0..(STREAM_LIMIT_PER_CELL >> 20) + 5 {
            out.stream("stdout", &chunk);
        }
        let msgs = take(&out, &sent);
        let stdout: usize = msgs
            .iter()
            .filter(|m| m.1["name"] == "stdout")
            .map(|m| m.1["text"].as_str().unwrap().len())
            .sum();
        assert_eq!(stdout, STREAM_LIMIT_PER_CELL);
        let notices: Vec<_> = msgs.iter().filter(|m| m.1["name"] == "stderr").collect();
        assert_eq!(notices.len(), 1);
        assert!(notices[0].1["text"].as_str().unwrap().contains("further output is dropped"));
        // the next cell starts with a fresh allowance
        publisher.attach(&parent("next"), false);
        out.stream("stdout", "ok\n");
        assert_eq!(take(&out, &sent)[0].1["text"], "ok\n");
    }

    #[test]
    fn pending_text_goes_out_on_the_routers_clock() {
        let (_publisher, out, sent) = start();
        out.stream("stdout", "late\n");
        // No flush: the router sends it by itself once the interval passed.
        for _ in 0..500 {
            if !sent.lock().unwrap().is_empty() {
                break;
            }
            std::thread::sleep(STREAM_FLUSH_INTERVAL / 4);
        }
        let msgs = sent.lock().unwrap().clone();
        assert_eq!(msgs.len(), 1);
        assert_eq!(msgs[0].1["text"], "late\n");
    }

    #[test]
    fn silent_requests_publish_nothing_and_keep_the_old_parent() {
        let (publisher, out, sent) = start();
        publisher.attach(&parent("visible"), false);
        publisher.attach(&parent("quiet"), true);
        out.stream("stdout", "hidden\n");
        out.display(MimeBundle::new(), json!({}), None, false);
        assert!(take(&out, &sent).is_empty());
        publisher.detach_silent();
        out.stream("stdout", "thread output\n");
        let msgs = take(&out, &sent);
        assert_eq!(msgs[0].2["msg_id"], "visible");
    }

    #[test]
    fn suppress_drops_engine_output_until_off_or_the_next_cell() {
        let (publisher, out, sent) = start();
        publisher.attach(&parent("c1"), false);
        out.stream("stdout", "before\n");
        out.suppress(true);
        out.stream("stdout", "replayed\n");
        out.display(MimeBundle::new(), json!({}), None, false);
        out.execute_result(1, MimeBundle::new(), json!({}));
        out.error(&ErrorContent::new("E", "x"));
        // explicit-parent messages (status) are not the engine's: they go out
        publisher.status(ExecutionState::Busy, &parent("c1"));
        out.suppress(false);
        out.stream("stdout", "after\n");
        out.suppress(true);
        publisher.attach(&parent("c2"), false);
        out.stream("stdout", "next cell\n");
        let msgs = take(&out, &sent);
        let kinds: Vec<_> = msgs.iter().map(|m| (m.0.as_str(), m.1["text"].as_str().unwrap_or(""))).collect();
        assert_eq!(
            kinds,
            [("stream", "before\n"), ("status", ""), ("stream", "after\n"), ("stream", "next cell\n")]
        );
    }

    #[test]
    fn displays_flush_pending_text_first_and_update_needs_an_id() {
        let (_publisher, out, sent) = start();
        out.stream("stdout", "before\n");
        out.display(MimeBundle::new(), json!({}), Some("d1"), true);
        out.display(MimeBundle::new(), json!({}), None, true);
        let msgs = take(&out, &sent);
        assert_eq!(msgs[0].0, "stream");
        assert_eq!(msgs[1].0, "update_display_data");
        assert_eq!(msgs[1].1["transient"]["display_id"], "d1");
        assert_eq!(msgs[2].0, "display_data");
    }

    #[test]
    fn displays_are_capped_per_message_and_per_cell() {
        let (publisher, out, sent) = start();
        publisher.attach(&parent("big"), false);
        let huge = note_bundle("x".repeat(DISPLAY_LIMIT_PER_MESSAGE + 1));
        out.display(huge.clone(), json!({}), Some("d"), false);
        out.execute_result(3, huge, json!({}));
        let msgs = take(&out, &sent);
        assert_eq!(msgs[0].1["transient"]["display_id"], "d", "the id survives");
        for m in &msgs {
            let text = m.1["data"]["text/plain"].as_str().unwrap();
            assert!(text.contains("is not shown"), "{text}");
        }
        assert_eq!(msgs[1].1["execution_count"], 3);
        let chunk = note_bundle("y".repeat(DISPLAY_LIMIT_PER_MESSAGE - 100));
        for _ in 0..(DISPLAY_LIMIT_PER_CELL / DISPLAY_LIMIT_PER_MESSAGE) + 3 {
            out.display(chunk.clone(), json!({}), None, false);
        }
        let msgs = take(&out, &sent);
        let shown = msgs.iter().filter(|m| m.0 == "display_data").count();
        assert_eq!(shown, DISPLAY_LIMIT_PER_CELL / DISPLAY_LIMIT_PER_MESSAGE);
        let notes: Vec<_> = msgs.iter().filter(|m| m.0 == "stream").collect();
        assert_eq!(notes.len(), 1);
        assert!(notes[0].1["text"].as_str().unwrap().contains("further displays are dropped"));
    }

    #[test]
    fn errors_are_capped_identically_each_time() {
        let e = ErrorContent {
            ename: "Big".into(),
            evalue: "v".repeat(ERROR_LIMIT),
            traceback: vec!["t".repeat(1000); 2000],
        };
        let once = limit_error(&e);
        let size = once.evalue.len() + once.traceback.iter().map(String::len).sum::<usize>();
        assert!(size <= ERROR_LIMIT, "{size}");
        assert!(once.traceback.last().unwrap().contains("cut to"));
        assert_eq!(limit_error(&once), once);
        let small = ErrorContent::new("E", "x");
        assert_eq!(limit_error(&small), small);
    }
}
