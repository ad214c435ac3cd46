//! Where every request is answered. [`Shared::serve`] is the one place that
//! publishes `busy`, runs a handler, sends its reply and publishes `idle`, on
//! whichever thread serves the request (control, shell, or the executor). A
//! handler that panics fails only its own request, with a short error reply;
//! the loops that receive requests survive any panic ([`survive`]).
//!
//! The path of a request: socket ([`crate::server`]) → verify and decode
//! ([`crate::wire`], [`crate::protocol`]) → handler chosen by
//! [`crate::dispatch`] → run now or queued in order ([`crate::executor`]) →
//! answered here.

use crate::engine::Interrupter;
use crate::iopub::Publisher;
use crate::protocol::{
    ErrorContent, ExecutionState, Header, Incoming, IopubContent, KernelInfoReply, Reply, Request,
};
use crate::wire::{DigestHistory, RawMessage, Signer, WireError};
use crossbeam_channel::Sender;
use serde::Serialize;
use serde_json::Value;
use std::any::Any;
use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

/// Why the kernel is stopping.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Stop {
    Shutdown { restart: bool },
    Signal,
}

/// What follows a reply.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Then {
    Continue,
    /// stop_on_error: answer the queued execute requests `aborted`.
    AbortQueue,
    /// Stop the kernel (after the reply and `idle` are out).
    Stop(Stop),
}

/// What a handler answers: a reply (or none, e.g. comm_open), the reply's
/// metadata, and what must follow.
#[derive(Debug)]
pub struct Answer {
    pub reply: Option<Reply>,
    pub metadata: Value,
    pub then: Then,
}

impl Answer {
    pub fn reply(reply: Reply) -> Answer {
        Answer {
            reply: Some(reply),
            metadata: Value::Object(Default::default()),
            then: Then::Continue,
        }
    }

    /// Framed by busy/idle, but no reply.
    pub fn none() -> Answer {
        Answer {
            reply: None,
            metadata: Value::Object(Default::default()),
            then: Then::Continue,
        }
    }

    pub fn with_metadata(mut self, metadata: Value) -> Answer {
        self.metadata = metadata;
        self
    }

    pub fn then(mut self, then: Then) -> Answer {
        self.then = then;
        self
    }
}

/// State every serving thread shares. No lock here is held across a call
/// into a handler or the engine.
#[derive(Clone)]
pub struct Shared {
    pub session: String,
    pub signer: Signer,
    pub publisher: Publisher,
    pub kernel_info: Arc<KernelInfoReply>,
    /// Set once the engine exists.
    interrupter: Arc<OnceLock<Arc<dyn Interrupter>>>,
    /// Set by an interrupt; a pending input request gives up when it sees it.
    pub stdin_abort: Arc<AtomicBool>,
    /// The executor's count, for replies written elsewhere (queue full).
    execution_count: Arc<AtomicU64>,
    stop: Sender<Stop>,
    /// Signatures seen on any channel (replay protection).
    digests: Arc<Mutex<DigestHistory>>,
}

impl Shared {
    pub fn new(signer: Signer, publisher: Publisher, rustc_version: &str, stop: Sender<Stop>) -> Shared {
        Shared {
            session: uuid::Uuid::new_v4().to_string(),
            signer,
            publisher,
            kernel_info: Arc::new(KernelInfoReply::new(rustc_version)),
            interrupter: Arc::default(),
            stdin_abort: Arc::default(),
            execution_count: Arc::default(),
            stop,
            digests: Arc::default(),
        }
    }

    /// Verifies frames (signature, replay) and splits them into a message.
    pub fn verify(&self, frames: Vec<Vec<u8>>) -> Result<RawMessage, WireError> {
        // A panic while holding this lock leaves the history as it was
        // before one insert: still valid, so poisoning is ignored.
        let mut digests = self.digests.lock().unwrap_or_else(|p| p.into_inner());
        RawMessage::decode_once(frames, &self.signer, &mut digests)
    }

    /// Signed frames of a message to the sender of `to`.
    pub fn frames(&self, to: &Incoming, msg_type: &str, content: Value, metadata: Value) -> Vec<Vec<u8>> {
        RawMessage {
            identities: to.identities.clone(),
            header: serde_json::to_value(Header::new(msg_type, &self.session)).unwrap_or_default(),
            parent_header: crate::protocol::parent_json(&to.parent()),
            metadata,
            content,
            buffers: vec![],
        }
        .encode(&self.signer)
    }

    /// Signed frames of a typed message content to the sender of `to`.
    pub fn message<T: Serialize>(&self, to: &Incoming, msg_type: &str, content: &T) -> Option<Vec<Vec<u8>>> {
        match serde_json::to_value(content) {
            Ok(content) => Some(self.frames(to, msg_type, content, Value::Object(Default::default()))),
            Err(e) => {
                log::error!("cannot encode {msg_type}: {e}");
                None
            }
        }
    }

    pub fn execution_count(&self) -> u64 {
        self.execution_count.load(Ordering::SeqCst)
    }

    pub fn set_execution_count(&self, count: u64) {
        self.execution_count.store(count, Ordering::SeqCst);
    }

    pub fn set_interrupter(&self, interrupter: Arc<dyn Interrupter>) {
        let _ = self.interrupter.set(interrupter);
    }

    /// Interrupts the running cell (control channel or SIGINT).
    pub fn interrupt(&self) {
        self.stdin_abort.store(true, Ordering::SeqCst);
        match self.interrupter.get() {
            Some(engine) => engine.interrupt(),
            None => log::info!("interrupt: the engine is still starting"),
        }
    }

    pub fn request_stop(&self, stop: Stop) {
        let _ = self.stop.send(stop);
    }

    pub fn terminate_engine(&self) {
        if let Some(engine) = self.interrupter.get() {
            engine.terminate();
        }
    }

    /// Answers one request: `busy`, the handler, the reply (through `send`),
    /// `idle`. Returns what must follow; the caller acts on it.
    pub fn serve(&self, msg: &Incoming, send: &mut dyn FnMut(Vec<Vec<u8>>), handler: impl FnOnce() -> Answer) -> Then {
        let parent = msg.parent();
        self.publisher.status(ExecutionState::Busy, &parent);
        let answer = match std::panic::catch_unwind(AssertUnwindSafe(handler)) {
            Ok(answer) => answer,
            Err(panic) => {
                let error = internal_error(&format!("answering {}", msg.msg_type()), &panic_message(&*panic));
                if matches!(&msg.request, Request::Execute(r) if !r.silent) {
                    self.publisher.publish(IopubContent::Error(error.clone()), &parent);
                }
                Answer::reply(Reply::failure(msg.msg_type(), self.execution_count(), error))
            }
        };
        if let Some(reply) = &answer.reply {
            match reply.content() {
                Ok(content) => send(self.frames(msg, &reply.msg_type(), content, answer.metadata)),
                Err(e) => log::error!("cannot encode {}: {e}", reply.msg_type()),
            }
        }
        self.publisher.status(ExecutionState::Idle, &parent);
        answer.then
    }
}

/// The error a learner sees when the kernel itself failed at something.
pub fn internal_error(doing: &str, panic: &str) -> ErrorContent {
    ErrorContent::new(
        "KernelError",
        format!("internal error while {doing}: {panic} (the kernel is still running)"),
    )
}

/// A panic's message, on one line.
pub fn panic_message(payload: &(dyn Any + Send)) -> String {
    let text = payload
        .downcast_ref::<String>()
        .map(String::as_str)
        .or_else(|| payload.downcast_ref::<&str>().copied())
        .unwrap_or("a panic without a message");
    let first = text.lines().next().unwrap_or_default();
    let mut line: String = first.chars().take(300).collect();
    if line.len() < text.len() {
        line.push('…');
    }
    line
}

/// Runs one turn of a loop so that a panic in it ends only that turn.
pub fn survive(what: &str, turn: impl FnOnce()) {
    if std::panic::catch_unwind(AssertUnwindSafe(turn)).is_err() {
        log::error!("{what}: recovered from a panic; carrying on");
    }
}

/// Logs each panic as one error line (thread, place, message), and its
/// backtrace only at debug level (`THREADBOOK_LOG=debug`). Installed in the
/// kernel process only: the evaluation process keeps Rust's own hook, which
/// evcxr reads.
pub fn install_panic_hook() {
    std::panic::set_hook(Box::new(|info| {
        let thread = std::thread::current();
        let at = info
            .location()
            .map(|l| format!(" at {}:{}", l.file(), l.line()))
            .unwrap_or_default();
        log::error!(
            "panic in thread '{}'{at}: {}",
            thread.name().unwrap_or("unnamed"),
            panic_message(info.payload())
        );
        if log::log_enabled!(log::Level::Debug) {
            log::debug!("backtrace:\n{}", std::backtrace::Backtrace::force_capture());
        }
    }));
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::{ClientHeader, ExecuteReply};
    use crate::wire::Signer;
    use serde_json::json;

    fn incoming(msg_type: &str, content: Value) -> Incoming {
        Incoming {
            identities: vec![b"id".to_vec()],
            header: ClientHeader {
                msg_type: msg_type.into(),
                msg_id: Some("m".into()),
                rest: Default::default(),
            },
            request: Request::parse(msg_type, content),
        }
    }

    #[test]
    fn a_panicking_handler_gets_an_error_reply_framed_by_busy_and_idle() {
        let (publisher, events) = Publisher::new();
        let (stop, _) = crossbeam_channel::unbounded();
        let shared = Shared::new(Signer::new(""), publisher, "1", stop);
        let msg = incoming("complete_request", json!({"code": "x", "cursor_pos": 1}));
        let mut sent = vec![];
        let then = shared.serve(&msg, &mut |f| sent.push(f), || panic!("boom\nsecond line"));
        assert_eq!(then, Then::Continue);
        assert_eq!(sent.len(), 1);
        let reply = RawMessage::decode(sent.remove(0), &Signer::new("")).unwrap();
        assert_eq!(reply.header["msg_type"], "complete_reply");
        assert_eq!(reply.content["status"], "error");
        assert_eq!(reply.content["ename"], "KernelError");
        let evalue = reply.content["evalue"].as_str().unwrap();
        assert!(evalue.contains("boom") && !evalue.contains("second line"), "{evalue}");
        let kinds: Vec<String> = events
            .try_iter()
            .map(|e| format!("{e:?}"))
            .collect();
        assert_eq!(kinds.len(), 2);
        assert!(kinds[0].contains("Busy") && kinds[1].contains("Idle"), "{kinds:?}");
    }

    #[test]
    fn a_panicking_execute_also_shows_an_error_output() {
        let (publisher, events) = Publisher::new();
        let (stop, _) = crossbeam_channel::unbounded();
        let shared = Shared::new(Signer::new(""), publisher, "1", stop);
        shared.set_execution_count(7);
        let msg = incoming("execute_request", json!({"code": "x"}));
        let mut sent = vec![];
        shared.serve(&msg, &mut |f| sent.push(f), || panic!("boom"));
        let reply = RawMessage::decode(sent.remove(0), &Signer::new("")).unwrap();
        assert_eq!(reply.content["execution_count"], 7);
        assert_eq!(reply.content["status"], ExecuteReply::ok(0).status().replace("ok", "error"));
        assert_eq!(events.try_iter().count(), 3, "busy, error, idle");
    }

    #[test]
    fn survive_contains_a_panic() {
        let mut after = false;
        survive("test", || panic!("x"));
        survive("test", || after = true);
        assert!(after);
    }
}
