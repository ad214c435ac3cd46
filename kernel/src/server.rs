//! Sockets and threads. Each ZeroMQ socket belongs to exactly one thread:
//!
//! | thread | sockets | job |
//! |---|---|---|
//! | heartbeat | hb REP | echoes bytes |
//! | iopub | iopub XPUB | the output router ([`crate::iopub`]): every broadcast, in order |
//! | control | control ROUTER | kernel_info, interrupt, shutdown — answered while a cell runs |
//! | shell | shell ROUTER, replies PULL | receives, verifies and decodes requests, queues them for the executor, sends the replies |
//! | executor | replies PUSH | answers shell requests in arrival order ([`crate::executor`]) |
//! | engine | stdin ROUTER | owns the engine; runs the executor's calls |
//!
//! Every socket has a maximum message size, set before it binds: a peer that
//! announces a bigger frame is disconnected by ZeroMQ before the frame is
//! read into memory, so nothing unauthenticated can make the kernel buffer
//! or hash more than that.

use crate::connection::ConnectionInfo;
use crate::dispatch::{self, Channel, Handler};
use crate::engine::EngineFactory;
use crate::executor::{self, Executor, Job};
use crate::iopub::{self, Publisher};
use crate::pipeline::{survive, Answer, Shared, Then};
pub use crate::pipeline::Stop;
use crate::protocol::{ExecutionState, Incoming, Reply};
use crate::wire::Signer;
use anyhow::{Context, Result};
use crossbeam_channel::{Receiver, Sender, TrySendError};
use std::fmt::Display;
use std::time::Duration;

const REPLY_ENDPOINT: &str = "inproc://threadbook-shell-replies";

/// Largest message a client may send on shell, control and stdin — all its
/// frames together (the vendored libzmq counts a multipart message as a
/// whole). Requests are code cells, completions and input lines
/// (kilobytes); threadbook opens no comms, so no widget uploads arrive.
/// 16 MiB is far above a real cell and bounds what an unauthenticated peer
/// can make the kernel hold.
pub const MAX_REQUEST_BYTES: i64 = 16 << 20;
/// The heartbeat echoes what it gets; jupyter_client sends `b"ping"`.
pub const MAX_HEARTBEAT_BYTES: i64 = 1024;
/// What arrives on iopub: subscriptions (a topic prefix; clients send `""`).
pub const MAX_SUBSCRIPTION_BYTES: i64 = 64 << 10;

/// What a kernel needs to start.
pub struct KernelConfig {
    pub connection: ConnectionInfo,
    pub engine: EngineFactory,
    pub rustc_version: String,
}

/// A running kernel: sockets bound, threads started.
pub struct Kernel {
    shared: Shared,
    stop_rx: Receiver<Stop>,
}

struct Sockets {
    shell: zmq::Socket,
    control: zmq::Socket,
    iopub: zmq::Socket,
    stdin: zmq::Socket,
    hb: zmq::Socket,
}

fn bind(ctx: &zmq::Context, kind: zmq::SocketType, endpoint: &str, max_bytes: i64) -> Result<zmq::Socket> {
    let s = ctx.socket(kind)?;
    s.set_linger(1000)?;
    s.set_maxmsgsize(max_bytes)?;
    if kind == zmq::ROUTER {
        // A reply to a peer that is gone is dropped, not an error.
        s.set_router_mandatory(false)?;
    }
    s.bind(endpoint)
        .with_context(|| format!("cannot bind {endpoint}"))?;
    Ok(s)
}

impl Kernel {
    /// Binds every socket and starts every thread; returns once the kernel
    /// answers requests (the engine may still be starting in the background).
    pub fn start(config: KernelConfig) -> Result<Kernel> {
        let conn = &config.connection;
        conn.validate()?;
        let ctx = zmq::Context::new();
        let sockets = Sockets {
            shell: bind(&ctx, zmq::ROUTER, &conn.endpoint(conn.shell_port), MAX_REQUEST_BYTES)?,
            control: bind(&ctx, zmq::ROUTER, &conn.endpoint(conn.control_port), MAX_REQUEST_BYTES)?,
            iopub: bind(&ctx, zmq::XPUB, &conn.endpoint(conn.iopub_port), MAX_SUBSCRIPTION_BYTES)?,
            stdin: bind(&ctx, zmq::ROUTER, &conn.endpoint(conn.stdin_port), MAX_REQUEST_BYTES)?,
            hb: bind(&ctx, zmq::REP, &conn.endpoint(conn.hb_port), MAX_HEARTBEAT_BYTES)?,
        };
        let reply_pull = ctx.socket(zmq::PULL)?;
        reply_pull.bind(REPLY_ENDPOINT)?;
        let reply_push = ctx.socket(zmq::PUSH)?;
        reply_push.connect(REPLY_ENDPOINT)?;

        let signer = Signer::new(&conn.key);
        let (publisher, events) = Publisher::new();
        let (stop_tx, stop_rx) = crossbeam_channel::unbounded();
        let shared = Shared::new(signer.clone(), publisher.clone(), &config.rustc_version, stop_tx);
        let (job_tx, job_rx) = crossbeam_channel::bounded(executor::JOB_QUEUE_CAPACITY);

        spawn("heartbeat", {
            let hb = sockets.hb;
            move || heartbeat(hb)
        })?;
        spawn("iopub", {
            let sink = iopub::Socket {
                sock: sockets.iopub,
                signer,
                session: shared.session.clone(),
            };
            move || iopub::run(sink, events)
        })?;
        publisher.status(ExecutionState::Starting, &None);
        let engine = executor::start_engine(config.engine, publisher.output(), sockets.stdin, shared.clone())
            .context("cannot start the engine thread")?;
        spawn("executor", {
            let executor = Executor::new(shared.clone(), engine);
            move || {
                executor.run(job_rx, |frames| {
                    if let Err(e) = reply_push.send_multipart(frames, 0) {
                        log::error!("executor: cannot hand a reply to the shell thread: {e}");
                    }
                })
            }
        })?;
        spawn("control", {
            let (sock, shared) = (sockets.control, shared.clone());
            move || control_loop(sock, shared)
        })?;
        spawn("shell", {
            let (sock, shared) = (sockets.shell, shared.clone());
            move || shell_loop(sock, reply_pull, job_tx, shared)
        })?;
        Ok(Kernel { shared, stop_rx })
    }

    /// Serves until a shutdown request or a terminating signal; then stops
    /// the engine and lets the last broadcasts go out.
    pub fn wait(self) -> Stop {
        let stop = self.stop_rx.recv().unwrap_or(Stop::Signal);
        self.shared.terminate_engine();
        self.shared.publisher.barrier(Duration::from_secs(2));
        // Sent messages sit in ZeroMQ's I/O thread for a moment; the process
        // exits without closing sockets, so give them time to leave.
        std::thread::sleep(Duration::from_millis(50));
        stop
    }

    /// A handle for signal handlers.
    pub fn state(&self) -> Shared {
        self.shared.clone()
    }
}

fn spawn(name: &str, f: impl FnOnce() + Send + 'static) -> Result<()> {
    std::thread::Builder::new()
        .name(name.to_owned())
        .spawn(f)
        .with_context(|| format!("cannot start the {name} thread"))?;
    Ok(())
}

fn heartbeat(sock: zmq::Socket) {
    loop {
        let mut stop = false;
        survive("heartbeat", || match sock.recv_bytes(0) {
            Ok(bytes) => {
                if let Err(e) = sock.send(bytes, 0) {
                    log::warn!("heartbeat send failed: {e}");
                }
            }
            Err(zmq::Error::ETERM) => stop = true,
            Err(e) => log::warn!("heartbeat receive failed: {e}"),
        });
        if stop {
            return;
        }
    }
}

/// Logs refused messages without letting a flood of them flood the log:
/// the first few, then one line at each power of two.
struct Refusals {
    channel: &'static str,
    count: u64,
}

impl Refusals {
    fn new(channel: &'static str) -> Self {
        Refusals { channel, count: 0 }
    }

    fn note(&mut self, why: impl Display) {
        self.count += 1;
        if self.count <= 10 || self.count.is_power_of_two() {
            log::warn!("{}: dropped a message: {why} ({} dropped so far)", self.channel, self.count);
        }
    }
}

/// Receives one request from a ROUTER socket: verified (signature, replay)
/// and decoded. Refused messages are logged and dropped here, so they are
/// never executed or answered.
fn receive(sock: &zmq::Socket, shared: &Shared, refusals: &mut Refusals) -> Option<Incoming> {
    let frames = match sock.recv_multipart(0) {
        Ok(f) => f,
        Err(e) => {
            log::warn!("{}: receive failed: {e}", refusals.channel);
            return None;
        }
    };
    let raw = match shared.verify(frames) {
        Ok(raw) => raw,
        Err(e) => {
            refusals.note(e);
            return None;
        }
    };
    match Incoming::decode(raw) {
        Ok(msg) => Some(msg),
        Err(e) => {
            refusals.note(e);
            None
        }
    }
}

fn send_on<'a>(sock: &'a zmq::Socket, channel: &str) -> impl FnMut(Vec<Vec<u8>>) + 'a {
    let channel = channel.to_owned();
    move |frames| {
        if let Err(e) = sock.send_multipart(frames, 0) {
            log::warn!("{channel}: reply failed: {e}");
        }
    }
}

fn act(shared: &Shared, then: Then) {
    if let Then::Stop(stop) = then {
        shared.request_stop(stop);
    }
}

fn control_loop(sock: zmq::Socket, shared: Shared) {
    let mut refusals = Refusals::new("control");
    loop {
        survive("control", || {
            let Some(msg) = receive(&sock, &shared, &mut refusals) else { return };
            let then = match dispatch::route(Channel::Control, &msg.request) {
                Handler::Now(handler) => shared.serve(&msg, &mut send_on(&sock, "control"), || handler(&shared, &msg)),
                Handler::InOrder(_) => {
                    log::warn!("control: {} is not a control request", msg.msg_type());
                    Then::Continue
                }
            };
            act(&shared, then);
        });
    }
}

fn shell_loop(sock: zmq::Socket, replies: zmq::Socket, jobs: Sender<Job>, shared: Shared) {
    let mut refusals = Refusals::new("shell");
    loop {
        survive("shell", || shell_turn(&sock, &replies, &jobs, &shared, &mut refusals));
    }
}

fn shell_turn(sock: &zmq::Socket, replies: &zmq::Socket, jobs: &Sender<Job>, shared: &Shared, refusals: &mut Refusals) {
    let (shell_ready, reply_ready) = {
        let mut items = [sock.as_poll_item(zmq::POLLIN), replies.as_poll_item(zmq::POLLIN)];
        if let Err(e) = zmq::poll(&mut items, -1) {
            log::warn!("shell: poll failed: {e}");
            return;
        }
        (items[0].is_readable(), items[1].is_readable())
    };
    // Replies first: they answer requests that came earlier.
    if reply_ready {
        let mut send = send_on(sock, "shell");
        while let Ok(frames) = replies.recv_multipart(zmq::DONTWAIT) {
            send(frames);
        }
    }
    if !shell_ready {
        return;
    }
    let Some(msg) = receive(sock, shared, refusals) else { return };
    let then = match dispatch::route(Channel::Shell, &msg.request) {
        Handler::Now(handler) => shared.serve(&msg, &mut send_on(sock, "shell"), || handler(shared, &msg)),
        Handler::InOrder(handler) => match jobs.try_send(Job { msg, handler }) {
            Ok(()) => Then::Continue,
            Err(TrySendError::Full(job)) => {
                log::warn!("shell: the queue is full; refused a {}", job.msg.msg_type());
                refuse(shared, sock, &job.msg, executor::queue_full())
            }
            Err(TrySendError::Disconnected(job)) => {
                log::error!("shell: the executor is gone");
                let error = crate::pipeline::internal_error("queueing this request", "the executor is gone");
                refuse(shared, sock, &job.msg, error)
            }
        },
    };
    act(shared, then);
}

fn refuse(shared: &Shared, sock: &zmq::Socket, msg: &Incoming, error: crate::protocol::ErrorContent) -> Then {
    shared.serve(msg, &mut send_on(sock, "shell"), || {
        Answer::reply(Reply::failure(msg.msg_type(), shared.execution_count(), error))
    })
}
