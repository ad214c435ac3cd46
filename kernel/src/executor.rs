//! Where requests are executed. Two threads:
//!
//! - the **executor** answers shell requests one at a time, in the order
//!   they arrived (so a `history` or `inspect` sent after an
//!   `execute_request` sees that cell), owns the history and the execution
//!   counter, and after a failed cell with stop_on_error answers the queued
//!   execute requests `aborted`;
//! - the **engine** thread builds the engine and owns it (and the stdin
//!   socket, which an `input_request` needs while a cell runs) for the life of
//!   the kernel; the executor hands it one call at a time ([`EngineHandle`]).
//!   A request that needs no engine (kernel_info, is_complete, history) is
//!   answered while the engine is still starting.
//!
//! A panic in the engine fails only the call it happened in.

use crate::engine::{Cell, Engine, EngineFactory, Executed, Outcome, StdinError, StdinPort};
use crate::history::History;
use crate::iopub::{limit_error, Output};
use crate::pipeline::{internal_error, panic_message, Answer, Shared, Then};
use crate::protocol::{
    ClientHeader, CompleteMetadata, CompleteReply, CompletionType, ErrorContent, ExecuteInput,
    ExecuteReply, Incoming, InputRequest, IopubContent, InspectReply, Reply, Request,
};
use crossbeam_channel::{Receiver, Sender};
use serde_json::{json, Value};
use std::panic::AssertUnwindSafe;
use std::sync::atomic::Ordering;

/// Shell requests waiting for the executor. JupyterLab's "Run All" sends a
/// notebook's cells at once, so this is far above any notebook's length; a
/// request past it is answered at once with [`queue_full`].
pub const JOB_QUEUE_CAPACITY: usize = 1024;

/// A shell request for the executor, with the handler that answers it.
pub struct Job {
    pub msg: Incoming,
    pub handler: fn(&mut Executor, &Incoming) -> Answer,
}

/// The error for a request refused because the queue is full.
pub fn queue_full() -> ErrorContent {
    ErrorContent::new(
        "KernelBusy",
        format!(
            "{JOB_QUEUE_CAPACITY} requests are already waiting for this kernel; this one was refused. \
             Send it again once the queue has drained."
        ),
    )
}

/// Why an engine call did not return.
#[derive(Debug, Clone, PartialEq)]
pub enum EngineFailure {
    /// The engine could not start (the reason).
    Unavailable(String),
    /// The call panicked (its message).
    Panicked(String),
    /// The engine thread is gone (the kernel is stopping).
    Gone,
}

/// What an engine call gets besides the engine.
pub struct EngineIo<'a> {
    pub stdin: &'a zmq::Socket,
    pub shared: &'a Shared,
}

type Call = Box<dyn FnOnce(&mut EngineSlot) + Send>;

struct EngineSlot {
    engine: Result<Box<dyn Engine>, String>,
    stdin: zmq::Socket,
    shared: Shared,
}

/// The executor's way to the engine thread.
pub struct EngineHandle {
    calls: Sender<Call>,
}

impl EngineHandle {
    /// Runs `f` on the engine thread and waits for its result (first for the
    /// engine to exist, if it is still starting).
    pub fn call<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut dyn Engine, EngineIo) -> T + Send + 'static,
    ) -> Result<T, EngineFailure> {
        let (tx, rx) = crossbeam_channel::bounded(1);
        let call: Call = Box::new(move |slot: &mut EngineSlot| {
            let result = match &mut slot.engine {
                Err(why) => Err(EngineFailure::Unavailable(why.clone())),
                Ok(engine) => {
                    let io = EngineIo {
                        stdin: &slot.stdin,
                        shared: &slot.shared,
                    };
                    std::panic::catch_unwind(AssertUnwindSafe(|| f(engine.as_mut(), io)))
                        .map_err(|p| EngineFailure::Panicked(panic_message(&*p)))
                }
            };
            let _ = tx.send(result);
        });
        self.calls.send(call).map_err(|_| EngineFailure::Gone)?;
        rx.recv().map_err(|_| EngineFailure::Gone)?
    }
}

/// Starts the engine thread: it builds the engine, then serves calls.
pub fn start_engine(
    factory: EngineFactory,
    output: Output,
    stdin: zmq::Socket,
    shared: Shared,
) -> std::io::Result<EngineHandle> {
    let (calls, rx) = crossbeam_channel::unbounded::<Call>();
    std::thread::Builder::new().name("engine".into()).spawn(move || {
        let engine = match std::panic::catch_unwind(AssertUnwindSafe(|| factory(output))) {
            Ok(Ok(engine)) => {
                shared.set_interrupter(engine.interrupter());
                Ok(engine)
            }
            Ok(Err(e)) => Err(format!("{e:#}")),
            Err(p) => Err(format!("the engine panicked while starting: {}", panic_message(&*p))),
        };
        if let Err(e) = &engine {
            log::error!("engine failed to start: {e}");
        }
        let mut slot = EngineSlot { engine, stdin, shared };
        // Each call catches its own panics (see `EngineHandle::call`).
        while let Ok(call) = rx.recv() {
            call(&mut slot);
        }
    })?;
    Ok(EngineHandle { calls })
}

/// The executor's state: everything in-order requests read and change.
pub struct Executor {
    pub shared: Shared,
    pub history: History,
    execution_count: u64,
    engine: EngineHandle,
    output: Output,
}

impl Executor {
    pub fn new(shared: Shared, engine: EngineHandle) -> Executor {
        let output = shared.publisher.output();
        Executor {
            shared,
            history: History::default(),
            execution_count: 0,
            engine,
            output,
        }
    }

    /// Serves jobs in order until the queue closes. `send` hands a reply's
    /// frames to the shell socket's thread.
    pub fn run(mut self, jobs: Receiver<Job>, mut send: impl FnMut(Vec<Vec<u8>>)) {
        while let Ok(job) = jobs.recv() {
            let mut then = self.serve(&job, &mut send, false);
            if then == Then::AbortQueue {
                // stop_on_error: every execute request already waiting is
                // answered `aborted` without running; the others as usual.
                let waiting: Vec<Job> = jobs.try_iter().collect();
                for job in waiting {
                    match self.serve(&job, &mut send, true) {
                        Then::Stop(stop) => then = Then::Stop(stop),
                        _ => {}
                    }
                }
            }
            if let Then::Stop(stop) = then {
                self.shared.request_stop(stop);
            }
        }
    }

    fn serve(&mut self, job: &Job, send: &mut dyn FnMut(Vec<Vec<u8>>), aborting: bool) -> Then {
        let shared = self.shared.clone();
        if aborting && matches!(job.msg.request, Request::Execute(_)) {
            let count = self.execution_count;
            return shared.serve(&job.msg, send, || {
                Answer::reply(Reply::Execute(ExecuteReply::Aborted { execution_count: count }))
                    .with_metadata(json!({"status": "aborted"}))
            });
        }
        shared.serve(&job.msg, send, || (job.handler)(self, &job.msg))
    }

    /// execute_request: execute_input, the cell's outputs, its result or
    /// error, then the reply (once every output has been published).
    pub fn execute(&mut self, msg: &Incoming) -> Answer {
        let Request::Execute(req) = &msg.request else {
            return not_for(msg, "execute");
        };
        let started = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Micros, true);
        let store = req.store_history && !req.silent;
        if store {
            self.execution_count += 1;
            self.shared.set_execution_count(self.execution_count);
        }
        let count = self.execution_count;
        let parent = msg.parent();
        self.shared.publisher.attach(&parent, req.silent);
        if !req.silent {
            let input = ExecuteInput {
                code: req.code.clone(),
                execution_count: count,
            };
            self.shared.publisher.publish(IopubContent::ExecuteInput(input), &parent);
        }
        if store {
            self.history.record(count, &req.code);
        }
        self.shared.stdin_abort.store(false, Ordering::SeqCst);
        let cell = Cell {
            code: req.code.clone(),
            execution_count: count,
        };
        let request = (msg.identities.clone(), msg.header.clone(), req.allow_stdin);
        let executed = self.engine.call(move |engine, io| {
            let mut stdin = ZmqStdin {
                io,
                identities: request.0,
                header: request.1,
                allowed: request.2,
            };
            engine.execute(&cell, &mut stdin)
        });
        let Executed { outcome, metadata: extra } = executed.unwrap_or_else(|failure| Executed {
            outcome: Outcome::Error(match failure {
                EngineFailure::Unavailable(why) => ErrorContent {
                    traceback: vec![format!("EngineUnavailable: the Rust engine could not start: {why}")],
                    ename: "EngineUnavailable".into(),
                    evalue: why,
                },
                EngineFailure::Panicked(why) => internal_error("running this cell", &why),
                EngineFailure::Gone => internal_error("running this cell", "the engine thread is gone"),
            }),
            metadata: json!({}),
        });
        let reply = match outcome {
            Outcome::Ok { result } => {
                if let Some(data) = result {
                    if store {
                        if let Some(text) = data.get("text/plain").and_then(Value::as_str) {
                            self.history.record_output(count, text);
                        }
                    }
                    self.output.execute_result(count, data, json!({}));
                }
                ExecuteReply::ok(count)
            }
            Outcome::Error(e) => {
                let error = limit_error(&e);
                self.output.error(&error);
                ExecuteReply::Error {
                    execution_count: count,
                    error,
                }
            }
        };
        // Everything the cell published goes out before its reply.
        self.output.flush();
        if req.silent {
            self.shared.publisher.detach_silent();
        }
        let failed = matches!(reply, ExecuteReply::Error { .. });
        let mut metadata = json!({
            "started": started,
            "status": reply.status(),
            "dependencies_met": true,
        });
        if let (Some(m), Value::Object(extra)) = (metadata.as_object_mut(), extra) {
            m.extend(extra);
        }
        let then = if failed && req.stop_on_error {
            Then::AbortQueue
        } else {
            Then::Continue
        };
        Answer::reply(Reply::Execute(reply)).with_metadata(metadata).then(then)
    }

    /// complete_request. Without an engine: no matches.
    pub fn complete(&mut self, msg: &Incoming) -> Answer {
        let Request::Complete(r) = &msg.request else {
            return not_for(msg, "complete");
        };
        let (code, pos) = (r.code.clone(), r.cursor_pos);
        let c = match self.engine.call(move |engine, _| engine.complete(&code, pos)) {
            Ok(c) => c,
            Err(EngineFailure::Unavailable(_)) => crate::engine::Completions {
                cursor_start: pos,
                cursor_end: pos,
                ..Default::default()
            },
            Err(failure) => return engine_failed(msg, "completing", failure),
        };
        let types = c
            .candidates
            .iter()
            .map(|cand| CompletionType {
                start: c.cursor_start,
                end: c.cursor_end,
                text: cand.text.clone(),
                kind: cand.kind.clone(),
                signature: cand.signature.clone(),
            })
            .collect();
        Answer::reply(Reply::Complete(CompleteReply {
            status: "ok",
            cursor_start: c.cursor_start,
            cursor_end: c.cursor_end,
            matches: c.candidates.into_iter().map(|cand| cand.text).collect(),
            metadata: CompleteMetadata { types },
        }))
    }

    /// inspect_request. Without an engine: nothing found.
    pub fn inspect(&mut self, msg: &Incoming) -> Answer {
        let Request::Inspect(r) = &msg.request else {
            return not_for(msg, "inspect");
        };
        let (code, pos, detail) = (r.code.clone(), r.cursor_pos, r.detail_level);
        let data = match self.engine.call(move |engine, _| engine.inspect(&code, pos, detail)) {
            Ok(data) => data,
            Err(EngineFailure::Unavailable(_)) => None,
            Err(failure) => return engine_failed(msg, "inspecting", failure),
        };
        Answer::reply(Reply::Inspect(InspectReply {
            status: "ok",
            found: data.is_some(),
            data: data.unwrap_or_default(),
            metadata: Default::default(),
        }))
    }

    /// history_request, from this session's cells.
    pub fn history(&mut self, msg: &Incoming) -> Answer {
        let Request::History(r) = &msg.request else {
            return not_for(msg, "history");
        };
        Answer::reply(Reply::History(self.history.reply(r)))
    }
}

fn engine_failed(msg: &Incoming, doing: &str, failure: EngineFailure) -> Answer {
    let why = match failure {
        EngineFailure::Panicked(why) | EngineFailure::Unavailable(why) => why,
        EngineFailure::Gone => "the engine thread is gone".into(),
    };
    Answer::reply(Reply::failure(msg.msg_type(), 0, internal_error(doing, &why)))
}

/// A dispatch-table mistake: a handler given another kind of request.
fn not_for(msg: &Incoming, handler: &str) -> Answer {
    let why = format!("the {handler} handler was given a {}", msg.msg_type());
    log::error!("{why}");
    Answer::reply(Reply::failure(msg.msg_type(), 0, internal_error("dispatching", &why)))
}

/// Asks the frontend for input over the stdin channel, on behalf of the
/// execute request that is running.
struct ZmqStdin<'a> {
    io: EngineIo<'a>,
    identities: Vec<Vec<u8>>,
    header: ClientHeader,
    allowed: bool,
}

impl StdinPort for ZmqStdin<'_> {
    fn request(&mut self, prompt: &str, password: bool) -> Result<String, StdinError> {
        if !self.allowed {
            return Err(StdinError::NotAllowed);
        }
        let socket = self.io.stdin;
        // Forget answers to earlier, abandoned prompts.
        while socket.recv_multipart(zmq::DONTWAIT).is_ok() {}
        let to = Incoming {
            identities: self.identities.clone(),
            header: self.header.clone(),
            request: Request::Unknown(String::new()),
        };
        let ask = InputRequest {
            prompt: prompt.to_owned(),
            password,
        };
        let frames = self
            .io
            .shared
            .message(&to, "input_request", &ask)
            .ok_or_else(|| StdinError::Channel("cannot encode input_request".into()))?;
        socket
            .send_multipart(frames, 0)
            .map_err(|e| StdinError::Channel(e.to_string()))?;
        loop {
            if self.io.shared.stdin_abort.load(Ordering::SeqCst) {
                return Err(StdinError::Interrupted);
            }
            match socket.poll(zmq::POLLIN, 50) {
                Ok(0) => continue,
                Ok(_) => {}
                Err(e) => return Err(StdinError::Channel(e.to_string())),
            }
            let frames = socket
                .recv_multipart(0)
                .map_err(|e| StdinError::Channel(e.to_string()))?;
            let msg = self.io.shared.verify(frames).map_err(|e| e.to_string()).and_then(|raw| {
                Incoming::decode(raw).map_err(|e| e.to_string())
            });
            match msg {
                Ok(Incoming {
                    request: Request::InputReply(reply),
                    ..
                }) => return Ok(reply.value),
                Ok(other) => log::warn!("stdin: ignored a {}", other.msg_type()),
                Err(e) => log::warn!("stdin: dropped a message: {e}"),
            }
        }
    }
}
