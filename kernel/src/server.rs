//! Sockets and threads. Each ZeroMQ socket belongs to exactly one thread:
//!
//! | thread | sockets | job |
//! |---|---|---|
//! | heartbeat | hb REP | echoes bytes |
//! | iopub | iopub XPUB | sends every broadcast, in order; welcomes subscribers |
//! | control | control ROUTER | kernel_info, interrupt, shutdown — answered while a cell runs |
//! | shell | shell ROUTER, reply PULL | decodes requests, answers the cheap ones at once, queues the rest for the engine, sends the engine's replies |
//! | engine | stdin ROUTER, reply PUSH | builds the engine, runs cells, complete/inspect, asks for input |
//!
//! Requests are dispatched by the handlers in [`crate::dispatch`]; this file
//! only moves frames.

use crate::connection::ConnectionInfo;
use crate::dispatch::{self, Job, KernelState};
use crate::engine::EngineFactory;
use crate::iopub::{IopubEvent, Output, Publisher};
use crate::messages::Header;
use crate::wire::{RawMessage, Signer};
use anyhow::{Context, Result};
use crossbeam_channel::{Receiver, Sender};
use serde_json::json;
use std::time::Duration;

const REPLY_ENDPOINT: &str = "inproc://threadbook-shell-replies";

/// What a kernel needs to start.
pub struct KernelConfig {
    pub connection: ConnectionInfo,
    pub engine: EngineFactory,
    pub rustc_version: String,
}

/// Why the kernel is stopping.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Stop {
    Shutdown { restart: bool },
    Signal,
}

/// A running kernel: sockets bound, threads started.
pub struct Kernel {
    state: KernelState,
    stop_rx: Receiver<Stop>,
}

struct Sockets {
    shell: zmq::Socket,
    control: zmq::Socket,
    iopub: zmq::Socket,
    stdin: zmq::Socket,
    hb: zmq::Socket,
}

fn bind(ctx: &zmq::Context, kind: zmq::SocketType, endpoint: &str) -> Result<zmq::Socket> {
    let s = ctx.socket(kind)?;
    s.set_linger(1000)?;
    if kind == zmq::ROUTER {
        // Fail loudly rather than silently dropping a reply to a gone peer.
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
            shell: bind(&ctx, zmq::ROUTER, &conn.endpoint(conn.shell_port))?,
            control: bind(&ctx, zmq::ROUTER, &conn.endpoint(conn.control_port))?,
            iopub: bind(&ctx, zmq::XPUB, &conn.endpoint(conn.iopub_port))?,
            stdin: bind(&ctx, zmq::ROUTER, &conn.endpoint(conn.stdin_port))?,
            hb: bind(&ctx, zmq::REP, &conn.endpoint(conn.hb_port))?,
        };
        let reply_pull = ctx.socket(zmq::PULL)?;
        reply_pull.bind(REPLY_ENDPOINT)?;
        let reply_push = ctx.socket(zmq::PUSH)?;
        reply_push.connect(REPLY_ENDPOINT)?;

        let signer = Signer::new(&conn.key);
        let session = uuid::Uuid::new_v4().to_string();
        let (publisher, iopub_rx) = Publisher::new();
        let (stop_tx, stop_rx) = crossbeam_channel::unbounded();
        let (job_tx, job_rx) = crossbeam_channel::unbounded();
        let state = KernelState::new(
            session.clone(),
            signer.clone(),
            publisher.clone(),
            &config.rustc_version,
            stop_tx,
        );

        spawn("heartbeat", {
            let hb = sockets.hb;
            move || heartbeat(hb)
        })?;
        spawn("iopub", {
            let (sock, signer, session) = (sockets.iopub, signer.clone(), session.clone());
            move || iopub_loop(sock, iopub_rx, signer, session)
        })?;
        publisher.status("starting", &json!({}));
        spawn("control", {
            let (sock, state) = (sockets.control, state.clone());
            move || control_loop(sock, state)
        })?;
        spawn("shell", {
            let (sock, state) = (sockets.shell, state.clone());
            move || shell_loop(sock, reply_pull, job_tx, state)
        })?;
        spawn("engine", {
            let (stdin, state, factory) = (sockets.stdin, state.clone(), config.engine);
            let output = Output::new(publisher);
            move || dispatch::engine_loop(factory, output, job_rx, reply_push, stdin, state)
        })?;
        Ok(Kernel { state, stop_rx })
    }

    /// Serves until a shutdown request or a terminating signal; then stops
    /// the engine and lets the last broadcasts go out.
    pub fn wait(self) -> Stop {
        let stop = self.stop_rx.recv().unwrap_or(Stop::Signal);
        self.state.terminate_engine();
        self.state.publisher.barrier(Duration::from_secs(2));
        // Sent messages sit in ZeroMQ's I/O thread for a moment; the process
        // exits without closing sockets, so give them time to leave.
        std::thread::sleep(Duration::from_millis(50));
        stop
    }

    /// A handle for signal handlers.
    pub fn state(&self) -> KernelState {
        self.state.clone()
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
        match sock.recv_bytes(0) {
            Ok(bytes) => {
                if let Err(e) = sock.send(bytes, 0) {
                    log::warn!("heartbeat send failed: {e}");
                }
            }
            Err(zmq::Error::ETERM) => return,
            Err(e) => log::warn!("heartbeat receive failed: {e}"),
        }
    }
}

fn iopub_loop(sock: zmq::Socket, rx: Receiver<IopubEvent>, signer: Signer, session: String) {
    let send = |msg_type: &str, topic: Vec<u8>, content, parent, metadata| {
        let msg = RawMessage {
            identities: vec![topic],
            header: serde_json::to_value(Header::new(msg_type, &session)).unwrap_or_default(),
            parent_header: parent,
            metadata,
            content,
            buffers: vec![],
        };
        if let Err(e) = sock.send_multipart(msg.encode(&signer), 0) {
            log::warn!("iopub send of {msg_type} failed: {e}");
        }
    };
    loop {
        // Subscriptions arrive on the XPUB socket: greet each one so the
        // client knows it will see what follows.
        while let Ok(frame) = sock.recv_bytes(zmq::DONTWAIT) {
            if frame.first() == Some(&1) {
                let topic = frame[1..].to_vec();
                let content = json!({ "subscription": String::from_utf8_lossy(&topic) });
                send("iopub_welcome", topic, content, json!({}), json!({}));
            }
        }
        match rx.recv_timeout(Duration::from_millis(20)) {
            Ok(IopubEvent::Publish { msg_type, content, parent, metadata }) => {
                let topic = format!("kernel.{session}.{msg_type}").into_bytes();
                send(&msg_type, topic, content, parent, metadata);
            }
            Ok(IopubEvent::Barrier(ack)) => {
                let _ = ack.send(());
            }
            Err(crossbeam_channel::RecvTimeoutError::Timeout) => {}
            Err(crossbeam_channel::RecvTimeoutError::Disconnected) => return,
        }
    }
}

/// Receives one request from a ROUTER socket; refused messages are logged
/// and dropped here, so they are never executed or answered.
fn receive(sock: &zmq::Socket, signer: &Signer, channel: &str) -> Option<(RawMessage, String)> {
    let frames = match sock.recv_multipart(0) {
        Ok(f) => f,
        Err(e) => {
            log::warn!("{channel}: receive failed: {e}");
            return None;
        }
    };
    let raw = match RawMessage::decode(frames, signer) {
        Ok(raw) => raw,
        Err(e) => {
            log::warn!("{channel}: dropped a message: {e}");
            return None;
        }
    };
    let Some(msg_type) = raw.header.get("msg_type").and_then(|t| t.as_str()) else {
        log::warn!("{channel}: dropped a message whose header has no msg_type");
        return None;
    };
    let msg_type = msg_type.to_owned();
    Some((raw, msg_type))
}

fn control_loop(sock: zmq::Socket, state: KernelState) {
    loop {
        let Some((raw, msg_type)) = receive(&sock, &state.signer, "control") else {
            continue;
        };
        for frames in dispatch::handle_control(&state, &raw, &msg_type) {
            if let Err(e) = sock.send_multipart(frames, 0) {
                log::warn!("control: reply failed: {e}");
            }
        }
        state.stop_if_requested();
    }
}

fn shell_loop(sock: zmq::Socket, replies: zmq::Socket, jobs: Sender<Job>, state: KernelState) {
    loop {
        let (shell_ready, reply_ready) = {
            let mut items = [sock.as_poll_item(zmq::POLLIN), replies.as_poll_item(zmq::POLLIN)];
            if let Err(e) = zmq::poll(&mut items, -1) {
                log::warn!("shell: poll failed: {e}");
                continue;
            }
            (items[0].is_readable(), items[1].is_readable())
        };
        // Replies first: they answer requests that came earlier.
        if reply_ready {
            while let Ok(frames) = replies.recv_multipart(zmq::DONTWAIT) {
                if let Err(e) = sock.send_multipart(frames, 0) {
                    log::warn!("shell: reply failed: {e}");
                }
            }
        }
        if shell_ready {
            let Some((raw, msg_type)) = receive(&sock, &state.signer, "shell") else {
                continue;
            };
            match dispatch::handle_shell(&state, raw, &msg_type) {
                dispatch::ShellAction::Reply(all) => {
                    for frames in all {
                        if let Err(e) = sock.send_multipart(frames, 0) {
                            log::warn!("shell: reply failed: {e}");
                        }
                    }
                    state.stop_if_requested();
                }
                dispatch::ShellAction::Queue(job) => {
                    if jobs.send(job).is_err() {
                        log::error!("shell: the engine thread is gone");
                    }
                }
            }
        }
    }
}
