//! Protocol behaviour: what each request does and answers. Every request is
//! framed by `busy` and `idle` on iopub with the request as parent. Cheap
//! requests are answered on the thread that received them; cells, completion
//! and inspection go to the engine thread in arrival order.

use crate::engine::{Cell, Engine, EngineFactory, Interrupter, Outcome, StdinError, StdinPort};
use crate::history::History;
use crate::iopub::{Output, Publisher};
use crate::messages::{
    execute_reply, CompleteReply, ErrorContent, ExecuteRequest, ExecuteStatus, Header,
    InspectReply, KernelInfoReply, Request,
};
use crate::server::Stop;
use crate::wire::{RawMessage, Signer};
use crossbeam_channel::{Receiver, Sender};
use serde_json::{json, Value};
use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// State shared by the socket threads.
#[derive(Clone)]
pub struct KernelState {
    pub session: String,
    pub signer: Signer,
    pub publisher: Publisher,
    kernel_info: Value,
    history: Arc<Mutex<History>>,
    /// Filled in by the engine thread once the engine exists.
    interrupter: Arc<Mutex<Option<Arc<dyn Interrupter>>>>,
    /// Set by an interrupt; a pending input request gives up when it sees it.
    stdin_abort: Arc<AtomicBool>,
    stop: Sender<Stop>,
    /// A shutdown answered but not yet acted on: the socket thread acts on
    /// it once the reply and `idle` have gone out.
    pending_stop: Arc<Mutex<Option<Stop>>>,
}

impl KernelState {
    pub fn new(
        session: String,
        signer: Signer,
        publisher: Publisher,
        rustc_version: &str,
        stop: Sender<Stop>,
    ) -> KernelState {
        KernelState {
            session,
            signer,
            publisher,
            kernel_info: serde_json::to_value(KernelInfoReply::new(rustc_version))
                .unwrap_or_default(),
            history: Arc::default(),
            interrupter: Arc::default(),
            stdin_abort: Arc::default(),
            stop,
            pending_stop: Arc::default(),
        }
    }

    fn history(&self) -> std::sync::MutexGuard<'_, History> {
        self.history.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A reply to `req`, as frames to send back on the socket it came from.
    pub fn reply(&self, req: &RawMessage, msg_type: &str, content: Value, metadata: Value) -> Vec<Vec<u8>> {
        RawMessage {
            identities: req.identities.clone(),
            header: serde_json::to_value(Header::new(msg_type, &self.session)).unwrap_or_default(),
            parent_header: req.header.clone(),
            metadata,
            content,
            buffers: vec![],
        }
        .encode(&self.signer)
    }

    /// Interrupts the running cell (control channel or SIGINT).
    pub fn interrupt(&self) {
        self.stdin_abort.store(true, Ordering::SeqCst);
        let engine = self.interrupter.lock().unwrap_or_else(|p| p.into_inner()).clone();
        match engine {
            Some(engine) => engine.interrupt(),
            None => log::info!("interrupt: the engine is still starting"),
        }
    }

    pub fn request_stop(&self, stop: Stop) {
        let _ = self.stop.send(stop);
    }

    /// Acts on a shutdown whose reply has been sent (see [`shutdown`]).
    pub fn stop_if_requested(&self) {
        let pending = self.pending_stop.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let Some(stop) = pending {
            self.request_stop(stop);
        }
    }

    pub fn terminate_engine(&self) {
        let engine = self.interrupter.lock().unwrap_or_else(|p| p.into_inner()).clone();
        if let Some(engine) = engine {
            engine.terminate();
        }
    }
}

/// A request for the engine thread.
pub struct Job {
    pub raw: RawMessage,
    pub msg_type: String,
    pub request: Request,
}

pub enum ShellAction {
    Reply(Vec<Vec<Vec<u8>>>),
    Queue(Job),
}

fn bad_request(state: &KernelState, raw: &RawMessage, msg_type: &str, why: String) -> Vec<Vec<u8>> {
    log::warn!("{why}");
    state.reply(
        raw,
        &Request::reply_type(msg_type),
        json!({"status": "error", "ename": "BadRequest", "evalue": why, "traceback": []}),
        json!({}),
    )
}

/// Handles a request that arrived on shell.
pub fn handle_shell(state: &KernelState, raw: RawMessage, msg_type: &str) -> ShellAction {
    let request = match parse_request(msg_type, &raw) {
        Ok(r) => r,
        Err(why) => {
            let parent = raw.header.clone();
            state.publisher.status("busy", &parent);
            let frames = bad_request(state, &raw, msg_type, why);
            state.publisher.status("idle", &parent);
            return ShellAction::Reply(vec![frames]);
        }
    };
    if matches!(request, Request::Execute(_) | Request::Complete(_) | Request::Inspect(_)) {
        return ShellAction::Queue(Job {
            raw,
            msg_type: msg_type.to_owned(),
            request,
        });
    }
    let parent = raw.header.clone();
    state.publisher.status("busy", &parent);
    let reply_type = Request::reply_type(msg_type);
    let frames = match request {
        Request::KernelInfo => vec![state.reply(&raw, &reply_type, state.kernel_info.clone(), json!({}))],
        Request::IsComplete(r) => {
            vec![state.reply(&raw, &reply_type, crate::syntax::is_complete(&r.code).reply(), json!({}))]
        }
        Request::History(r) => vec![state.reply(&raw, &reply_type, state.history().reply(&r), json!({}))],
        Request::CommInfo(_) => {
            vec![state.reply(&raw, &reply_type, json!({"status": "ok", "comms": {}}), json!({}))]
        }
        Request::CommOpen(open) => {
            // No comm targets exist: close the comm right away.
            log::info!("comm_open for unknown target {:?}", open.target_name);
            state.publisher.send(
                "comm_close",
                json!({"comm_id": open.comm_id, "data": {}}),
                &parent,
            );
            vec![]
        }
        Request::Interrupt => interrupt(state, &raw, &reply_type),
        Request::Shutdown(r) => shutdown(state, &raw, &reply_type, r.restart),
        Request::CommOther | Request::InputReply(_) => vec![],
        Request::Debug => vec![state.reply(
            &raw,
            &reply_type,
            json!({"status": "error", "ename": "NotSupported", "evalue": "threadbook has no debugger", "traceback": []}),
            json!({}),
        )],
        Request::Unknown(t) => {
            log::warn!("shell: unknown message type {t:?}, not answered");
            vec![]
        }
        Request::Execute(_) | Request::Complete(_) | Request::Inspect(_) => vec![],
    };
    state.publisher.status("idle", &parent);
    ShellAction::Reply(frames)
}

/// Parses a request's content by its msg_type.
fn parse_request(msg_type: &str, raw: &RawMessage) -> Result<Request, String> {
    Request::parse(msg_type, raw.content.clone()).map_err(|e| format!("bad {msg_type}: {e}"))
}

/// Interrupt, answered the same on control and shell.
fn interrupt(state: &KernelState, raw: &RawMessage, reply_type: &str) -> Vec<Vec<Vec<u8>>> {
    state.interrupt();
    vec![state.reply(raw, reply_type, json!({"status": "ok"}), json!({}))]
}

/// Shutdown, answered the same on control and shell. The kernel stops only
/// after the socket thread has sent this reply and `idle`.
fn shutdown(state: &KernelState, raw: &RawMessage, reply_type: &str, restart: bool) -> Vec<Vec<Vec<u8>>> {
    let content = json!({"status": "ok", "restart": restart});
    state.publisher.send("shutdown_reply", content.clone(), &raw.header);
    *state.pending_stop.lock().unwrap_or_else(|p| p.into_inner()) = Some(Stop::Shutdown { restart });
    vec![state.reply(raw, reply_type, content, json!({}))]
}

/// Handles a request that arrived on control.
pub fn handle_control(state: &KernelState, raw: &RawMessage, msg_type: &str) -> Vec<Vec<Vec<u8>>> {
    let parent = raw.header.clone();
    state.publisher.status("busy", &parent);
    let frames = match parse_request(msg_type, raw) {
        Err(why) => vec![bad_request(state, raw, msg_type, why)],
        Ok(Request::KernelInfo) => vec![state.reply(
            raw,
            &Request::reply_type(msg_type),
            state.kernel_info.clone(),
            json!({}),
        )],
        Ok(Request::Interrupt) => interrupt(state, raw, &Request::reply_type(msg_type)),
        Ok(Request::Shutdown(r)) => shutdown(state, raw, &Request::reply_type(msg_type), r.restart),
        Ok(Request::Debug) => vec![state.reply(
            raw,
            "debug_reply",
            json!({"status": "error", "ename": "NotSupported", "evalue": "threadbook has no debugger", "traceback": []}),
            json!({}),
        )],
        Ok(other) => {
            log::warn!("control: {msg_type} is not a control request ({other:?}); not answered");
            vec![]
        }
    };
    state.publisher.status("idle", &parent);
    frames
}

/// Asks the frontend for input over the stdin channel, on behalf of the
/// execute request that is running.
struct ZmqStdin<'a> {
    socket: &'a zmq::Socket,
    state: &'a KernelState,
    request: &'a RawMessage,
    allowed: bool,
}

impl StdinPort for ZmqStdin<'_> {
    fn request(&mut self, prompt: &str, password: bool) -> Result<String, StdinError> {
        if !self.allowed {
            return Err(StdinError::NotAllowed);
        }
        // Forget answers to earlier, abandoned prompts.
        while self.socket.recv_multipart(zmq::DONTWAIT).is_ok() {}
        let frames = self.state.reply(
            self.request,
            "input_request",
            json!({"prompt": prompt, "password": password}),
            json!({}),
        );
        self.socket
            .send_multipart(frames, 0)
            .map_err(|e| StdinError::Channel(e.to_string()))?;
        loop {
            if self.state.stdin_abort.load(Ordering::SeqCst) {
                return Err(StdinError::Interrupted);
            }
            match self.socket.poll(zmq::POLLIN, 50) {
                Ok(0) => continue,
                Ok(_) => {}
                Err(e) => return Err(StdinError::Channel(e.to_string())),
            }
            let frames = self
                .socket
                .recv_multipart(0)
                .map_err(|e| StdinError::Channel(e.to_string()))?;
            match RawMessage::decode(frames, &self.state.signer) {
                Ok(msg) if msg.header.get("msg_type").and_then(|t| t.as_str()) == Some("input_reply") => {
                    return Ok(msg
                        .content
                        .get("value")
                        .and_then(|v| v.as_str())
                        .unwrap_or_default()
                        .to_owned());
                }
                Ok(other) => log::warn!("stdin: ignored {:?}", other.header.get("msg_type")),
                Err(e) => log::warn!("stdin: dropped a message: {e}"),
            }
        }
    }
}

struct EngineThread {
    engine: Result<Box<dyn Engine>, String>,
    output: Output,
    replies: zmq::Socket,
    stdin: zmq::Socket,
    state: KernelState,
    execution_count: u64,
}

/// The engine thread: builds the engine, then serves queued requests in order.
pub fn engine_loop(
    factory: EngineFactory,
    output: Output,
    jobs: Receiver<Job>,
    replies: zmq::Socket,
    stdin: zmq::Socket,
    state: KernelState,
) {
    let engine = match std::panic::catch_unwind(AssertUnwindSafe(|| factory(output.clone()))) {
        Ok(Ok(engine)) => {
            *state.interrupter.lock().unwrap_or_else(|p| p.into_inner()) = Some(engine.interrupter());
            Ok(engine)
        }
        Ok(Err(e)) => Err(format!("{e:#}")),
        Err(_) => Err("the engine panicked while starting".to_owned()),
    };
    if let Err(e) = &engine {
        log::error!("engine failed to start: {e}");
    }
    let mut me = EngineThread {
        engine,
        output,
        replies,
        stdin,
        state,
        execution_count: 0,
    };
    while let Ok(job) = jobs.recv() {
        let parent = job.raw.header.clone();
        me.state.publisher.status("busy", &parent);
        let abort_queue = me.handle(&job);
        me.state.publisher.status("idle", &parent);
        if abort_queue {
            // stop_on_error: every execute request already waiting is
            // answered `aborted` without running.
            let waiting: Vec<Job> = jobs.try_iter().collect();
            for job in waiting {
                let parent = job.raw.header.clone();
                me.state.publisher.status("busy", &parent);
                if matches!(job.request, Request::Execute(_)) {
                    let reply = execute_reply(&ExecuteStatus::Aborted, me.execution_count);
                    me.send(me.state.reply(&job.raw, "execute_reply", reply, json!({"status": "aborted"})));
                } else {
                    me.handle(&job);
                }
                me.state.publisher.status("idle", &parent);
            }
        }
    }
}

impl EngineThread {
    fn send(&self, frames: Vec<Vec<u8>>) {
        if let Err(e) = self.replies.send_multipart(frames, 0) {
            log::error!("engine: cannot hand a reply to the shell thread: {e}");
        }
    }

    /// Runs one job; true when the queue must be aborted.
    fn handle(&mut self, job: &Job) -> bool {
        let reply_type = Request::reply_type(&job.msg_type);
        match &job.request {
            Request::Execute(req) => return self.execute(job, req),
            Request::Complete(r) => {
                let c = match &mut self.engine {
                    Ok(engine) => guarded(|| engine.complete(&r.code, r.cursor_pos)).unwrap_or_default(),
                    Err(_) => Default::default(),
                };
                let types: Vec<Value> = c
                    .matches
                    .iter()
                    .zip(c.types.iter().chain(std::iter::repeat(&String::new())))
                    .map(|(text, kind)| {
                        json!({"start": c.cursor_start, "end": c.cursor_end, "text": text, "type": kind})
                    })
                    .collect();
                let reply = CompleteReply {
                    status: "ok",
                    matches: c.matches,
                    cursor_start: c.cursor_start,
                    cursor_end: c.cursor_end,
                    metadata: json!({ "_jupyter_types_experimental": types }),
                };
                let content = serde_json::to_value(reply).unwrap_or_default();
                self.send(self.state.reply(&job.raw, &reply_type, content, json!({})));
            }
            Request::Inspect(r) => {
                let data = match &mut self.engine {
                    Ok(engine) => guarded(|| engine.inspect(&r.code, r.cursor_pos, r.detail_level)).flatten(),
                    Err(_) => None,
                };
                let reply = InspectReply {
                    status: "ok",
                    found: data.is_some(),
                    data: data.unwrap_or_default(),
                    metadata: json!({}),
                };
                let content = serde_json::to_value(reply).unwrap_or_default();
                self.send(self.state.reply(&job.raw, &reply_type, content, json!({})));
            }
            other => log::warn!("engine: unexpected request {other:?}"),
        }
        false
    }

    fn execute(&mut self, job: &Job, req: &ExecuteRequest) -> bool {
        let parent = &job.raw.header;
        let started = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Micros, true);
        let store = req.store_history && !req.silent;
        if store {
            self.execution_count += 1;
        }
        let count = self.execution_count;
        self.output.attach(parent, req.silent);
        if !req.silent {
            self.state.publisher.send(
                "execute_input",
                json!({"code": req.code, "execution_count": count}),
                parent,
            );
        }
        if store {
            self.state.history().record(count, &req.code);
        }
        self.state.stdin_abort.store(false, Ordering::SeqCst);
        let cell = Cell {
            code: req.code.clone(),
            execution_count: count,
        };
        let mut stdin = ZmqStdin {
            socket: &self.stdin,
            state: &self.state,
            request: &job.raw,
            allowed: req.allow_stdin,
        };
        let executed = match &mut self.engine {
            Ok(engine) => guarded(|| engine.execute(&cell, &mut stdin)).unwrap_or_else(|| crate::engine::Executed {
                outcome: Outcome::Error(ErrorContent {
                    ename: "KernelError".into(),
                    evalue: "the kernel hit an internal error running this cell; it is still running".into(),
                    traceback: vec!["KernelError: internal error while running this cell (see the kernel log)".into()],
                }),
                metadata: json!({}),
            }),
            Err(e) => crate::engine::Executed {
                outcome: Outcome::Error(ErrorContent {
                    ename: "EngineUnavailable".into(),
                    evalue: e.clone(),
                    traceback: vec![format!("EngineUnavailable: the Rust engine could not start: {e}")],
                }),
                metadata: json!({}),
            },
        };
        let status = match executed.outcome {
            Outcome::Ok { result } => {
                if let Some(data) = result {
                    if store {
                        if let Some(text) = data.get("text/plain").and_then(|t| t.as_str()) {
                            self.state.history().record_output(count, text);
                        }
                    }
                    self.output.execute_result(count, data, json!({}));
                }
                ExecuteStatus::Ok
            }
            Outcome::Error(e) => {
                self.output.error(&e);
                ExecuteStatus::Error(e)
            }
        };
        self.output.flush();
        if req.silent {
            self.output.detach_silent();
        }
        let failed = matches!(status, ExecuteStatus::Error(_));
        let mut metadata = json!({
            "started": started,
            "status": if failed { "error" } else { "ok" },
            "dependencies_met": true,
        });
        if let (Some(m), Some(extra)) = (metadata.as_object_mut(), executed.metadata.as_object()) {
            m.extend(extra.clone());
        }
        self.state.publisher.barrier(Duration::from_millis(500));
        self.send(self.state.reply(&job.raw, "execute_reply", execute_reply(&status, count), metadata));
        failed && req.stop_on_error
    }
}

/// Runs engine code so that a bug in it cannot take the kernel down.
fn guarded<T>(f: impl FnOnce() -> T) -> Option<T> {
    match std::panic::catch_unwind(AssertUnwindSafe(f)) {
        Ok(v) => Some(v),
        Err(p) => {
            let msg = p
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_default();
            log::error!("engine panicked: {msg}");
            None
        }
    }
}
