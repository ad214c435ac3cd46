//! Everything that publishes goes through here. [`Publisher`] is a cheap,
//! cloneable handle that sends events down one channel to the iopub thread
//! (the only owner of the PUB socket), so broadcast order is sending order.
//!
//! [`Output`] sits on top: it knows which request the current output belongs
//! to (the running cell, or between cells the cell that ran last), batches
//! stream text so a flood of lines costs a few messages, and keeps stdout and
//! stderr in the order they were written.

use crate::messages::{ErrorContent, MimeBundle};
use crossbeam_channel::{Receiver, Sender};
use serde_json::{json, Value};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How long stream text may wait before it is sent.
pub const STREAM_FLUSH_INTERVAL: Duration = Duration::from_millis(40);
/// Text kept in one pending stream message before it is sent regardless.
const STREAM_MAX_PENDING: usize = 512 * 1024;
/// Stream text one cell may send; past it, output is dropped (and counted)
/// so a runaway cell cannot bury the notebook or the frontend.
pub const STREAM_LIMIT_PER_CELL: usize = 32 * 1024 * 1024;

/// One broadcast: content plus the header of the request it belongs to.
#[derive(Debug, Clone)]
pub enum IopubEvent {
    Publish {
        msg_type: String,
        content: Value,
        parent: Value,
        metadata: Value,
    },
    /// Answered once everything sent before it has gone out.
    Barrier(Sender<()>),
}

#[derive(Clone)]
pub struct Publisher {
    tx: Sender<IopubEvent>,
}

impl Publisher {
    pub fn new() -> (Publisher, Receiver<IopubEvent>) {
        let (tx, rx) = crossbeam_channel::unbounded();
        (Publisher { tx }, rx)
    }

    pub fn send(&self, msg_type: &str, content: Value, parent: &Value) {
        let _ = self.tx.send(IopubEvent::Publish {
            msg_type: msg_type.to_owned(),
            content,
            parent: parent.clone(),
            metadata: json!({}),
        });
    }

    pub fn status(&self, state: &str, parent: &Value) {
        self.send("status", json!({ "execution_state": state }), parent);
    }

    /// Blocks until everything published so far has been handed to the socket.
    pub fn barrier(&self, timeout: Duration) {
        let (tx, rx) = crossbeam_channel::bounded(1);
        if self.tx.send(IopubEvent::Barrier(tx)).is_ok() {
            let _ = rx.recv_timeout(timeout);
        }
    }
}

struct Pending {
    name: &'static str,
    text: String,
    since: Instant,
}

struct OutputState {
    parent: Value,
    /// True while a silent request runs: nothing is broadcast.
    muted: bool,
    pending: Option<Pending>,
    /// Stream bytes sent for the current parent, and bytes dropped past the limit.
    sent: usize,
    dropped: usize,
}

/// Output routing and stream batching, shared by the engine and its pumps.
#[derive(Clone)]
pub struct Output {
    publisher: Publisher,
    state: Arc<Mutex<OutputState>>,
}

impl Output {
    pub fn new(publisher: Publisher) -> Output {
        let out = Output {
            publisher,
            state: Arc::new(Mutex::new(OutputState {
                parent: json!({}),
                muted: false,
                pending: None,
                sent: 0,
                dropped: 0,
            })),
        };
        let weak = Arc::downgrade(&out.state);
        let publisher = out.publisher.clone();
        std::thread::Builder::new()
            .name("stream-flush".into())
            .spawn(move || loop {
                std::thread::sleep(STREAM_FLUSH_INTERVAL / 2);
                let Some(state) = weak.upgrade() else { return };
                let mut st = lock(&state);
                if st
                    .pending
                    .as_ref()
                    .is_some_and(|p| p.since.elapsed() >= STREAM_FLUSH_INTERVAL)
                {
                    flush_locked(&mut st, &publisher);
                }
            })
            .expect("spawn stream flusher");
        out
    }

    pub fn publisher(&self) -> &Publisher {
        &self.publisher
    }

    /// Output from now on belongs to `parent`. A silent request mutes output
    /// until the next `attach`, and leaves the previous parent in place for
    /// output that arrives later.
    pub fn attach(&self, parent: &Value, silent: bool) {
        let mut st = lock(&self.state);
        flush_locked(&mut st, &self.publisher);
        st.sent = 0;
        st.dropped = 0;
        if silent {
            st.muted = true;
        } else {
            st.parent = parent.clone();
            st.muted = false;
        }
    }

    /// Ends a silent request's muting; later output goes to the last visible cell.
    pub fn detach_silent(&self) {
        let mut st = lock(&self.state);
        flush_locked(&mut st, &self.publisher);
        st.muted = false;
    }

    /// While on, nothing the engine publishes for the current cell goes out
    /// (the engine replays earlier cells quietly after a crash).
    pub fn suppress(&self, on: bool) {
        let mut st = lock(&self.state);
        flush_locked(&mut st, &self.publisher);
        st.muted = on;
    }

    pub fn parent(&self) -> Value {
        lock(&self.state).parent.clone()
    }

    pub fn stream(&self, name: &'static str, text: &str) {
        if text.is_empty() {
            return;
        }
        let mut st = lock(&self.state);
        if st.muted {
            return;
        }
        if st.sent + text.len() > STREAM_LIMIT_PER_CELL {
            if st.dropped == 0 {
                flush_locked(&mut st, &self.publisher);
                let notice = format!(
                    "\n[threadbook: this cell printed more than {} MiB; further output is dropped. The cell keeps running: interrupt it to stop it.]\n",
                    STREAM_LIMIT_PER_CELL >> 20
                );
                self.publisher.send("stream", json!({"name": "stderr", "text": notice}), &st.parent);
            }
            st.dropped += text.len();
            return;
        }
        st.sent += text.len();
        if st.pending.as_ref().is_some_and(|p| p.name != name) {
            flush_locked(&mut st, &self.publisher);
        }
        match &mut st.pending {
            Some(p) => p.text.push_str(text),
            None => {
                st.pending = Some(Pending {
                    name,
                    text: text.to_owned(),
                    since: Instant::now(),
                })
            }
        }
        if st.pending.as_ref().is_some_and(|p| p.text.len() >= STREAM_MAX_PENDING) {
            flush_locked(&mut st, &self.publisher);
        }
    }

    /// Sends any pending stream text now.
    pub fn flush(&self) {
        let mut st = lock(&self.state);
        flush_locked(&mut st, &self.publisher);
    }

    fn publish(&self, msg_type: &str, content: Value) {
        let mut st = lock(&self.state);
        flush_locked(&mut st, &self.publisher);
        if !st.muted {
            self.publisher.send(msg_type, content, &st.parent);
        }
    }

    pub fn display(&self, data: MimeBundle, metadata: Value, display_id: Option<&str>, update: bool) {
        let transient = match display_id {
            Some(id) => json!({ "display_id": id }),
            None => json!({}),
        };
        let msg_type = if update && display_id.is_some() {
            "update_display_data"
        } else {
            "display_data"
        };
        self.publish(
            msg_type,
            json!({ "data": data, "metadata": metadata, "transient": transient }),
        );
    }

    pub fn clear_output(&self, wait: bool) {
        self.publish("clear_output", json!({ "wait": wait }));
    }

    pub fn execute_result(&self, execution_count: u64, data: MimeBundle, metadata: Value) {
        self.publish(
            "execute_result",
            json!({ "execution_count": execution_count, "data": data, "metadata": metadata }),
        );
    }

    pub fn error(&self, e: &ErrorContent) {
        self.publish("error", serde_json::to_value(e).unwrap_or_default());
    }
}

fn lock(state: &Mutex<OutputState>) -> std::sync::MutexGuard<'_, OutputState> {
    // A panic while holding this lock cannot leave it inconsistent in a way
    // that matters more than losing output, so poisoning is ignored.
    state.lock().unwrap_or_else(|p| p.into_inner())
}

fn flush_locked(st: &mut OutputState, publisher: &Publisher) {
    if let Some(p) = st.pending.take() {
        if !st.muted {
            publisher.send("stream", json!({ "name": p.name, "text": p.text }), &st.parent);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn drain(rx: &Receiver<IopubEvent>) -> Vec<(String, Value, Value)> {
        rx.try_iter()
            .filter_map(|e| match e {
                IopubEvent::Publish { msg_type, content, parent, .. } => Some((msg_type, content, parent)),
                IopubEvent::Barrier(_) => None,
            })
            .collect()
    }

    #[test]
    fn lines_are_batched_and_order_kept_across_streams() {
        let (publisher, rx) = Publisher::new();
        let out = Output::new(publisher);
        out.attach(&json!({"msg_id": "cell-1"}), false);
        for i in 0..1000 {
            out.stream("stdout", &format!("{i}\n"));
        }
        out.stream("stderr", "warn\n");
        out.stream("stdout", "after\n");
        out.flush();
        let msgs = drain(&rx);
        assert_eq!(msgs.len(), 3, "{msgs:?}");
        assert_eq!(msgs[0].1["name"], "stdout");
        assert!(msgs[0].1["text"].as_str().unwrap().starts_with("0\n1\n"));
        assert_eq!(msgs[1].1["text"], "warn\n");
        assert_eq!(msgs[2].1["text"], "after\n");
        assert!(msgs.iter().all(|m| m.2["msg_id"] == "cell-1"));
    }

    #[test]
    fn a_flood_is_cut_at_the_limit_with_one_notice() {
        let (publisher, rx) = Publisher::new();
        let out = Output::new(publisher);
        out.attach(&json!({"msg_id": "flood"}), false);
        let chunk = "x".repeat(1 << 20);
        for _ in 0..(STREAM_LIMIT_PER_CELL >> 20) + 5 {
            out.stream("stdout", &chunk);
        }
        out.flush();
        let msgs = drain(&rx);
        let sent: usize = msgs
            .iter()
            .filter(|m| m.1["name"] == "stdout")
            .map(|m| m.1["text"].as_str().unwrap().len())
            .sum();
        assert_eq!(sent, STREAM_LIMIT_PER_CELL);
        let notices: Vec<_> = msgs.iter().filter(|m| m.1["name"] == "stderr").collect();
        assert_eq!(notices.len(), 1);
        assert!(notices[0].1["text"].as_str().unwrap().contains("further output is dropped"));
        // the next cell starts with a fresh allowance
        out.attach(&json!({"msg_id": "next"}), false);
        out.stream("stdout", "ok\n");
        out.flush();
        assert_eq!(drain(&rx)[0].1["text"], "ok\n");
    }

    #[test]
    fn pending_text_is_flushed_by_the_timer() {
        let (publisher, rx) = Publisher::new();
        let out = Output::new(publisher);
        out.stream("stdout", "late\n");
        std::thread::sleep(STREAM_FLUSH_INTERVAL * 3);
        let msgs = drain(&rx);
        assert_eq!(msgs.len(), 1);
        assert_eq!(msgs[0].1["text"], "late\n");
    }

    #[test]
    fn silent_requests_publish_nothing_and_keep_the_old_parent() {
        let (publisher, rx) = Publisher::new();
        let out = Output::new(publisher);
        out.attach(&json!({"msg_id": "visible"}), false);
        out.attach(&json!({"msg_id": "quiet"}), true);
        out.stream("stdout", "hidden\n");
        out.display(MimeBundle::new(), json!({}), None, false);
        out.flush();
        assert!(drain(&rx).is_empty());
        out.detach_silent();
        out.stream("stdout", "thread output\n");
        out.flush();
        let msgs = drain(&rx);
        assert_eq!(msgs[0].2["msg_id"], "visible");
    }

    #[test]
    fn displays_flush_pending_text_first_and_update_needs_an_id() {
        let (publisher, rx) = Publisher::new();
        let out = Output::new(publisher);
        out.stream("stdout", "before\n");
        out.display(MimeBundle::new(), json!({}), Some("d1"), true);
        out.display(MimeBundle::new(), json!({}), None, true);
        let msgs = drain(&rx);
        assert_eq!(msgs[0].0, "stream");
        assert_eq!(msgs[1].0, "update_display_data");
        assert_eq!(msgs[1].1["transient"]["display_id"], "d1");
        assert_eq!(msgs[2].0, "display_data");
    }
}
