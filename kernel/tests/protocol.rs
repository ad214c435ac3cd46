//! Protocol tests: a kernel with the mock engine, driven over real ZeroMQ
//! sockets on loopback. No Rust is compiled; each test takes milliseconds.

use serde_json::{json, Value};
use std::time::{Duration, Instant};
use threadbook::connection::ConnectionInfo;
use threadbook::engine::{mock::MockEngine, Engine, EngineFactory};
use threadbook::executor::JOB_QUEUE_CAPACITY;
use threadbook::iopub::DISPLAY_LIMIT_PER_MESSAGE;
use threadbook::protocol::Header;
use threadbook::server::{Kernel, KernelConfig};
use threadbook::wire::{RawMessage, Signer, DELIMITER};

const KEY: &str = "a-test-key";

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

struct Client {
    shell: zmq::Socket,
    control: zmq::Socket,
    stdin: zmq::Socket,
    iopub: zmq::Socket,
    hb: zmq::Socket,
    signer: Signer,
    session: String,
}

#[derive(Debug, Clone)]
struct Msg {
    msg_type: String,
    parent_id: String,
    parent: Value,
    content: Value,
}

impl Msg {
    fn from_raw(raw: RawMessage) -> Msg {
        Msg {
            msg_type: raw.header["msg_type"].as_str().unwrap_or_default().to_owned(),
            parent_id: raw.parent_header["msg_id"].as_str().unwrap_or_default().to_owned(),
            parent: raw.parent_header,
            content: raw.content,
        }
    }
}

fn start() -> Client {
    start_with(|| Box::new(|out| Ok(Box::new(MockEngine::new(out)) as Box<dyn Engine>)))
}

/// A kernel on free ports. A port found free can be taken by another test
/// before the kernel binds it (tests run in parallel): then it starts again
/// on other ports, a few times at most.
fn start_with(engine: impl Fn() -> EngineFactory) -> Client {
    let mut attempts = 0;
    let (kernel, conn) = loop {
        let conn: ConnectionInfo = serde_json::from_value(json!({
            "transport": "tcp", "ip": "127.0.0.1", "key": KEY, "signature_scheme": "hmac-sha256",
            "shell_port": free_port(), "iopub_port": free_port(), "stdin_port": free_port(),
            "control_port": free_port(), "hb_port": free_port(),
        }))
        .unwrap();
        attempts += 1;
        match Kernel::start(KernelConfig { connection: conn.clone(), engine: engine(), rustc_version: "1.95.0".into() }) {
            Ok(kernel) => break (kernel, conn),
            Err(e) if attempts < 5 => eprintln!("kernel start on {conn:?} failed ({e}); other ports"),
            Err(e) => panic!("the kernel did not start in {attempts} attempts: {e}"),
        }
    };
    std::mem::forget(kernel);
    let ctx = zmq::Context::new();
    let session = uuid::Uuid::new_v4().to_string();
    let sock = |kind, port| {
        let s = ctx.socket(kind).unwrap();
        s.set_linger(0).unwrap();
        // Like jupyter_client: shell and stdin share one identity, so the
        // kernel can address input requests to the right client.
        if kind == zmq::DEALER {
            s.set_identity(session.as_bytes()).unwrap();
        }
        s.connect(&conn.endpoint(port)).unwrap();
        s
    };
    let client = Client {
        shell: sock(zmq::DEALER, conn.shell_port),
        control: sock(zmq::DEALER, conn.control_port),
        stdin: sock(zmq::DEALER, conn.stdin_port),
        iopub: sock(zmq::SUB, conn.iopub_port),
        hb: sock(zmq::REQ, conn.hb_port),
        signer: Signer::new(KEY),
        session,
    };
    client.iopub.set_subscribe(b"").unwrap();
    // The kernel greets each subscription: after it, nothing is missed.
    // The kernel's "starting" status is published once at start; a client
    // that subscribes fast enough sees it before its welcome (JEP 65 allows
    // messages ahead of the welcome), so it is the one message skipped here.
    let mut first = client.iopub_next(Duration::from_secs(5)).expect("iopub_welcome");
    if first.msg_type == "status" {
        assert_eq!(first.content["execution_state"], "starting", "only the start status may precede the welcome");
        first = client.iopub_next(Duration::from_secs(5)).expect("iopub_welcome");
    }
    assert_eq!(first.msg_type, "iopub_welcome");
    client
}

fn recv(sock: &zmq::Socket, signer: &Signer, timeout: Duration) -> Option<Msg> {
    if sock.poll(zmq::POLLIN, timeout.as_millis() as i64).ok()? == 0 {
        return None;
    }
    let frames = sock.recv_multipart(0).ok()?;
    Some(Msg::from_raw(RawMessage::decode(frames, signer).expect("kernel messages verify")))
}

impl Client {
    fn send_on(&self, sock: &zmq::Socket, msg_type: &str, content: Value) -> String {
        let header = Header::new(msg_type, &self.session);
        let id = header.msg_id.clone();
        let raw = RawMessage {
            identities: vec![],
            header: serde_json::to_value(header).unwrap(),
            parent_header: json!({}),
            metadata: json!({}),
            content,
            buffers: vec![],
        };
        sock.send_multipart(raw.encode(&self.signer), 0).unwrap();
        id
    }

    fn shell_send(&self, msg_type: &str, content: Value) -> String {
        self.send_on(&self.shell, msg_type, content)
    }

    fn execute(&self, code: &str, extra: Value) -> String {
        let mut content = json!({"code": code, "silent": false, "store_history": true,
            "user_expressions": {}, "allow_stdin": false, "stop_on_error": true});
        content.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
        self.shell_send("execute_request", content)
    }

    /// Frames of a signed request, to send raw (twice, tampered…).
    fn frames(&self, msg_type: &str, content: Value) -> Vec<Vec<u8>> {
        RawMessage {
            identities: vec![],
            header: serde_json::to_value(Header::new(msg_type, &self.session)).unwrap(),
            parent_header: json!({}),
            metadata: json!({}),
            content,
            buffers: vec![],
        }
        .encode(&self.signer)
    }

    /// Waits until `text` has been printed on stdout by the request `parent`:
    /// proof that the cell is running.
    fn wait_for_output(&self, parent: &str, text: &str) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            let Some(m) = self.iopub_next(Duration::from_millis(100)) else { continue };
            if m.parent_id == parent && m.msg_type == "stream" && m.content["text"].as_str().unwrap_or("").contains(text) {
                return;
            }
        }
        panic!("{parent} never printed {text:?}");
    }

    fn shell_reply(&self) -> Msg {
        recv(&self.shell, &self.signer, Duration::from_secs(5)).expect("a shell reply")
    }

    fn iopub_next(&self, timeout: Duration) -> Option<Msg> {
        recv(&self.iopub, &self.signer, timeout)
    }

    /// Every iopub message for `parent` up to and including its idle.
    fn iopub_until_idle(&self, parent: &str) -> Vec<Msg> {
        let mut out = Vec::new();
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            let Some(m) = self.iopub_next(Duration::from_millis(100)) else { continue };
            if m.parent_id != parent {
                continue;
            }
            let idle = m.msg_type == "status" && m.content["execution_state"] == "idle";
            out.push(m);
            if idle {
                return out;
            }
        }
        panic!("no idle for {parent}; got {out:?}");
    }
}

fn types(msgs: &[Msg]) -> Vec<String> {
    msgs.iter()
        .map(|m| match m.msg_type.as_str() {
            "status" => m.content["execution_state"].as_str().unwrap().to_owned(),
            t => t.to_owned(),
        })
        .collect()
}

#[test]
fn kernel_info_is_framed_by_busy_and_idle() {
    let c = start();
    let id = c.shell_send("kernel_info_request", json!({}));
    let reply = c.shell_reply();
    assert_eq!(reply.msg_type, "kernel_info_reply");
    assert_eq!(reply.parent_id, id);
    assert_eq!(reply.content["language_info"]["name"], "rust");
    assert_eq!(types(&c.iopub_until_idle(&id)), ["busy", "idle"]);
}

#[test]
fn execute_sequence_and_counter_rules() {
    let c = start();
    let id = c.execute("print hello\nresult 42", json!({}));
    let reply = c.shell_reply();
    assert_eq!(reply.content["status"], "ok");
    assert_eq!(reply.content["execution_count"], 1);
    let msgs = c.iopub_until_idle(&id);
    assert_eq!(types(&msgs), ["busy", "execute_input", "stream", "execute_result", "idle"]);
    assert_eq!(msgs[1].content["execution_count"], 1);
    assert_eq!(msgs[2].content["text"], "hello\n");
    assert_eq!(msgs[3].content["data"]["text/plain"], "42");

    // silent: nothing broadcast but busy/idle, counter unchanged
    let id = c.execute("print hidden\nresult 1", json!({"silent": true}));
    assert_eq!(c.shell_reply().content["execution_count"], 1);
    assert_eq!(types(&c.iopub_until_idle(&id)), ["busy", "idle"]);

    // store_history false: runs and shows output, counter unchanged
    let id = c.execute("print shown", json!({"store_history": false}));
    assert_eq!(c.shell_reply().content["execution_count"], 1);
    assert_eq!(types(&c.iopub_until_idle(&id)), ["busy", "execute_input", "stream", "idle"]);

    let _ = c.execute("print again", json!({}));
    assert_eq!(c.shell_reply().content["execution_count"], 2);
}

#[test]
fn error_then_queued_requests_are_aborted() {
    let c = start();
    let first = c.execute("sleep 100\nerror Boom it broke", json!({}));
    let second = c.execute("print never", json!({}));
    let third = c.execute("print never", json!({}));
    let r1 = c.shell_reply();
    assert_eq!((r1.parent_id.as_str(), r1.content["status"].as_str()), (first.as_str(), Some("error")));
    assert_eq!(r1.content["ename"], "Boom");
    let r2 = c.shell_reply();
    let r3 = c.shell_reply();
    assert_eq!((r2.parent_id, r2.content["status"].clone()), (second.clone(), json!("aborted")));
    assert_eq!((r3.parent_id, r3.content["status"].clone()), (third.clone(), json!("aborted")));
    let errors: Vec<Msg> = c.iopub_until_idle(&first).into_iter().filter(|m| m.msg_type == "error").collect();
    assert_eq!(errors.len(), 1, "exactly one error output");
    assert_eq!(types(&c.iopub_until_idle(&second)), ["busy", "idle"]);
    // Later requests run normally.
    let later = c.execute("print after", json!({}));
    assert_eq!(c.shell_reply().content["status"], "ok");
    assert!(types(&c.iopub_until_idle(&later)).contains(&"stream".to_owned()));
}

#[test]
fn without_stop_on_error_the_queue_runs() {
    let c = start();
    c.execute("sleep 50\nerror Boom x", json!({"stop_on_error": false}));
    c.execute("print runs", json!({}));
    assert_eq!(c.shell_reply().content["status"], "error");
    assert_eq!(c.shell_reply().content["status"], "ok");
}

#[test]
fn badly_signed_and_malformed_messages_are_dropped_and_survived() {
    let c = start();
    // Wrong key: must not run, must not be answered.
    let wrong = Client { signer: Signer::new("not-the-key"), ..start_shell_only(&c) };
    wrong.execute("print SHOULD-NOT-RUN", json!({}));
    // Too few frames, garbage JSON, no msg_type, a known type with bad content.
    c.shell.send_multipart([DELIMITER.to_vec(), b"sig".to_vec()], 0).unwrap();
    let raw = RawMessage {
        identities: vec![],
        header: json!({"msg_id": "x", "session": "s"}),
        parent_header: json!({}),
        metadata: json!({}),
        content: json!({}),
        buffers: vec![],
    };
    c.shell.send_multipart(raw.encode(&c.signer), 0).unwrap();
    let mut frames = raw.encode(&Signer::new(""));
    frames[3] = b"{not json".to_vec();
    c.shell.send_multipart(frames, 0).unwrap();
    assert!(recv(&wrong.shell, &wrong.signer, Duration::from_millis(300)).is_none());
    assert!(recv(&c.shell, &c.signer, Duration::from_millis(100)).is_none());
    let bad = c.shell_send("execute_request", json!({"silent": false}));
    let reply = c.shell_reply();
    assert_eq!(reply.parent_id, bad);
    assert_eq!(reply.content["status"], "error");
    assert_eq!(reply.content["ename"], "BadRequest");
    // Nothing ran: no stream anywhere on iopub.
    while let Some(m) = c.iopub_next(Duration::from_millis(100)) {
        assert_ne!(m.msg_type, "stream", "{m:?}");
    }
    let id = c.execute("print fine", json!({}));
    assert_eq!(c.shell_reply().content["execution_count"], 1, "the dropped request took no count");
    assert!(c.iopub_until_idle(&id).iter().any(|m| m.content["text"] == "fine\n"));
}

/// A second client on the same kernel (shell only), for wrong-key tests.
fn start_shell_only(c: &Client) -> Client {
    let ctx = zmq::Context::new();
    let endpoint = c.shell.get_last_endpoint().unwrap().unwrap();
    let mk = |kind| {
        let s = ctx.socket(kind).unwrap();
        s.set_linger(0).unwrap();
        s
    };
    let shell = mk(zmq::DEALER);
    shell.connect(&endpoint).unwrap();
    Client {
        shell,
        control: mk(zmq::DEALER),
        stdin: mk(zmq::DEALER),
        iopub: mk(zmq::SUB),
        hb: mk(zmq::REQ),
        signer: c.signer.clone(),
        session: "other".into(),
    }
}

#[test]
fn control_answers_while_a_cell_runs_and_interrupt_stops_it() {
    let c = start();
    let spin = c.execute("print started\nspin", json!({}));
    c.wait_for_output(&spin, "started");
    c.send_on(&c.control, "kernel_info_request", json!({}));
    let info = recv(&c.control, &c.signer, Duration::from_secs(5)).expect("kernel_info on control");
    assert_eq!(info.msg_type, "kernel_info_reply");
    // The cell is still running: its reply has not come.
    assert!(recv(&c.shell, &c.signer, Duration::from_millis(0)).is_none());
    c.send_on(&c.control, "interrupt_request", json!({}));
    let ack = recv(&c.control, &c.signer, Duration::from_secs(2)).expect("interrupt_reply");
    assert_eq!(ack.content["status"], "ok");
    let reply = c.shell_reply();
    assert_eq!(reply.parent_id, spin);
    assert_eq!(reply.content["ename"], "Interrupted");
    c.execute("print next", json!({}));
    assert_eq!(c.shell_reply().content["status"], "ok");
}

#[test]
fn stdin_round_trip_and_refusal() {
    let c = start();
    let id = c.execute("input name? ", json!({"allow_stdin": true}));
    let req = recv(&c.stdin, &c.signer, Duration::from_secs(5)).expect("input_request");
    assert_eq!(req.msg_type, "input_request");
    assert_eq!(req.parent_id, id);
    assert_eq!(req.content, json!({"prompt": "name? ", "password": false}));
    c.send_on(&c.stdin, "input_reply", json!({"value": "Ada"}));
    assert_eq!(c.shell_reply().content["status"], "ok");
    assert!(c.iopub_until_idle(&id).iter().any(|m| m.content["text"] == "got: Ada\n"));

    c.execute("input name? ", json!({"allow_stdin": false}));
    let reply = c.shell_reply();
    assert_eq!(reply.content["ename"], "StdinNotAllowed");
    assert!(recv(&c.stdin, &c.signer, Duration::from_millis(100)).is_none());
}

#[test]
fn displays_updates_and_clear_output() {
    let c = start();
    let id = c.execute("show d1 first\nupdate d1 second\ndisplay text/html <b>x</b>\nclear", json!({}));
    c.shell_reply();
    let msgs: Vec<Msg> = c.iopub_until_idle(&id).into_iter().filter(|m| m.msg_type != "status").collect();
    assert_eq!(types(&msgs), ["execute_input", "display_data", "update_display_data", "display_data", "clear_output"]);
    assert_eq!(msgs[1].content["transient"]["display_id"], "d1");
    assert_eq!(msgs[2].content["data"]["text/plain"], "second");
    assert_eq!(msgs[3].content["data"]["text/html"], "<b>x</b>");
    assert_eq!(msgs[4].content["wait"], false);
}

#[test]
fn streams_are_batched_in_order() {
    let c = start();
    let id = c.execute("flood 20000\neprint done", json!({}));
    c.shell_reply();
    let streams: Vec<Msg> = c.iopub_until_idle(&id).into_iter().filter(|m| m.msg_type == "stream").collect();
    assert!(streams.len() <= 10, "{} stream messages", streams.len());
    let stdout: String = streams.iter().filter(|m| m.content["name"] == "stdout").map(|m| m.content["text"].as_str().unwrap()).collect();
    let expected: String = (0..20000).map(|i| format!("line {i}\n")).collect();
    assert_eq!(stdout, expected);
    assert_eq!(streams.last().unwrap().content, json!({"name": "stderr", "text": "done\n"}));
}

#[test]
fn history_is_complete_comms_and_completion() {
    let c = start();
    for code in ["print a", "print b", "print a"] {
        c.execute(code, json!({}));
        c.shell_reply();
    }
    c.shell_send("history_request", json!({"hist_access_type": "search", "pattern": "print a", "unique": true, "output": false, "raw": true}));
    assert_eq!(c.shell_reply().content["history"], json!([[0, 3, "print a"]]));
    c.shell_send("history_request", json!({"hist_access_type": "tail", "n": 2, "output": false, "raw": true}));
    assert_eq!(c.shell_reply().content["history"], json!([[0, 2, "print b"], [0, 3, "print a"]]));

    c.shell_send("is_complete_request", json!({"code": "fn f() {"}));
    assert_eq!(c.shell_reply().content, json!({"status": "incomplete", "indent": "    "}));

    let id = c.shell_send("comm_open", json!({"comm_id": "c1", "target_name": "nope", "data": {}}));
    let msgs = c.iopub_until_idle(&id);
    assert_eq!(types(&msgs), ["busy", "comm_close", "idle"]);
    assert_eq!(msgs[1].content["comm_id"], "c1");
    c.shell_send("comm_info_request", json!({}));
    assert_eq!(c.shell_reply().content, json!({"status": "ok", "comms": {}}));

    c.shell_send("complete_request", json!({"code": "x = pri", "cursor_pos": 7}));
    let r = c.shell_reply();
    assert_eq!(r.content["matches"], json!(["print"]));
    assert_eq!((r.content["cursor_start"].clone(), r.content["cursor_end"].clone()), (json!(4), json!(7)));
    assert_eq!(r.content["metadata"]["_jupyter_types_experimental"][0]["text"], "print");
}

#[test]
fn heartbeat_echoes_and_unknown_types_are_survived() {
    let c = start();
    c.hb.send(&b"ping-\x00-bytes"[..], 0).unwrap();
    assert_eq!(c.hb.recv_bytes(0).unwrap(), b"ping-\x00-bytes");
    let id = c.shell_send("frobnicate_request", json!({}));
    assert_eq!(types(&c.iopub_until_idle(&id)), ["busy", "idle"]);
    c.shell_send("kernel_info_request", json!({}));
    assert_eq!(c.shell_reply().msg_type, "kernel_info_reply");
}

#[test]
fn shutdown_is_answered_on_control_and_broadcast() {
    let c = start();
    let id = c.send_on(&c.control, "shutdown_request", json!({"restart": true}));
    let r = recv(&c.control, &c.signer, Duration::from_secs(2)).expect("shutdown_reply");
    assert_eq!(r.content, json!({"status": "ok", "restart": true}));
    let msgs = c.iopub_until_idle(&id);
    assert!(msgs.iter().any(|m| m.msg_type == "shutdown_reply"));
}

#[test]
fn shell_requests_are_answered_in_arrival_order() {
    let c = start();
    let cell = c.execute("sleep 200\nprint x\nresult 1", json!({}));
    let hist = c.shell_send("history_request", json!({"hist_access_type": "tail", "n": 5, "output": true, "raw": true}));
    let insp = c.shell_send("inspect_request", json!({"code": "print", "cursor_pos": 5}));
    let info = c.shell_send("kernel_info_request", json!({}));
    let order: Vec<Msg> = (0..4).map(|_| c.shell_reply()).collect();
    let ids: Vec<&str> = order.iter().map(|m| m.parent_id.as_str()).collect();
    assert_eq!(ids, [cell.as_str(), hist.as_str(), insp.as_str(), info.as_str()]);
    assert_eq!(order[1].content["history"], json!([[0, 1, ["sleep 200\nprint x\nresult 1", "1"]]]));
    assert_eq!(order[2].content["found"], true);
}

#[test]
fn interrupt_on_shell_does_not_wait_behind_the_cell() {
    let c = start();
    let spin = c.execute("print started\nspin", json!({}));
    c.wait_for_output(&spin, "started");
    let intr = c.shell_send("interrupt_request", json!({}));
    let first = c.shell_reply();
    assert_eq!((first.parent_id.as_str(), first.msg_type.as_str()), (intr.as_str(), "interrupt_reply"));
    let second = c.shell_reply();
    assert_eq!((second.parent_id.as_str(), second.content["ename"].as_str()), (spin.as_str(), Some("Interrupted")));
}

#[test]
fn an_engine_panic_fails_only_its_request() {
    let c = start();
    let id = c.execute("print before\npanic the engine broke", json!({}));
    let reply = c.shell_reply();
    assert_eq!(reply.content["status"], "error");
    assert_eq!(reply.content["ename"], "KernelError");
    let evalue = reply.content["evalue"].as_str().unwrap();
    assert!(evalue.contains("the engine broke") && evalue.contains("still running"), "{evalue}");
    let msgs = c.iopub_until_idle(&id);
    let errors: Vec<&Msg> = msgs.iter().filter(|m| m.msg_type == "error").collect();
    assert_eq!(errors.len(), 1);
    assert_eq!(errors[0].content["evalue"], reply.content["evalue"]);
    assert!(msgs.iter().any(|m| m.content["text"] == "before\n"));

    for kind in ["complete_request", "inspect_request"] {
        let id = c.shell_send(kind, json!({"code": "panic!()", "cursor_pos": 3}));
        let r = c.shell_reply();
        assert_eq!((r.parent_id.as_str(), r.content["status"].as_str()), (id.as_str(), Some("error")), "{kind}");
        assert_eq!(r.content["ename"], "KernelError");
        assert_eq!(types(&c.iopub_until_idle(&id)), ["busy", "idle"]);
    }
    c.shell_send("complete_request", json!({"code": "pri", "cursor_pos": 3}));
    assert_eq!(c.shell_reply().content["matches"], json!(["print"]));
    c.execute("result 2", json!({}));
    let next = c.shell_reply();
    assert_eq!((next.content["status"].as_str(), next.content["execution_count"].as_u64()), (Some("ok"), Some(2)));
}

#[test]
fn an_engine_that_cannot_start_leaves_the_protocol_working() {
    let c = start_with(|| Box::new(|_| anyhow::bail!("no toolchain here")));
    c.shell_send("kernel_info_request", json!({}));
    assert_eq!(c.shell_reply().content["status"], "ok");
    let id = c.execute("print x", json!({}));
    let r = c.shell_reply();
    assert_eq!(r.content["ename"], "EngineUnavailable");
    assert!(r.content["evalue"].as_str().unwrap().contains("no toolchain here"));
    assert!(c.iopub_until_idle(&id).iter().any(|m| m.msg_type == "error"));
    c.shell_send("complete_request", json!({"code": "pri", "cursor_pos": 3}));
    let r = c.shell_reply();
    assert_eq!((r.content["status"].as_str(), r.content["matches"].clone()), (Some("ok"), json!([])));
    c.shell_send("is_complete_request", json!({"code": "1"}));
    assert_eq!(c.shell_reply().content["status"], "complete");
    c.send_on(&c.control, "interrupt_request", json!({}));
    assert_eq!(recv(&c.control, &c.signer, Duration::from_secs(5)).unwrap().content["status"], "ok");
}

#[test]
fn a_replayed_message_is_dropped() {
    let c = start();
    let frames = c.frames("execute_request", json!({"code": "print once", "stop_on_error": false}));
    c.shell.send_multipart(frames.clone(), 0).unwrap();
    assert_eq!(c.shell_reply().content["execution_count"], 1);
    c.shell.send_multipart(frames, 0).unwrap();
    assert!(recv(&c.shell, &c.signer, Duration::from_millis(300)).is_none(), "the replay was answered");
    c.execute("print twice", json!({}));
    assert_eq!(c.shell_reply().content["execution_count"], 2, "the replay did not run");
}

#[test]
fn parent_headers_are_echoed_as_sent() {
    let c = start();
    let mut header = serde_json::to_value(Header::new("kernel_info_request", &c.session)).unwrap();
    header["subshell_id"] = json!(null);
    header["x_client_field"] = json!({"nested": [1, 2]});
    let raw = RawMessage {
        identities: vec![],
        header: header.clone(),
        parent_header: json!({}),
        metadata: json!({}),
        content: json!({}),
        buffers: vec![],
    };
    c.shell.send_multipart(raw.encode(&c.signer), 0).unwrap();
    assert_eq!(c.shell_reply().parent, header);
}

#[test]
fn a_full_queue_refuses_clearly() {
    let c = start();
    let spin = c.execute("print started\nspin", json!({}));
    c.wait_for_output(&spin, "started");
    let extra = 20;
    for _ in 0..JOB_QUEUE_CAPACITY + extra {
        c.execute("print queued", json!({}));
    }
    let mut busy = 0;
    for _ in 0..extra {
        let r = c.shell_reply();
        assert_eq!(r.content["ename"], "KernelBusy", "{:?}", r.content);
        busy += 1;
    }
    assert_eq!(busy, extra);
    c.send_on(&c.control, "interrupt_request", json!({}));
    assert_eq!(c.shell_reply().parent_id, spin);
    for _ in 0..JOB_QUEUE_CAPACITY {
        assert_eq!(c.shell_reply().content["status"], "aborted");
    }
    c.execute("print later", json!({}));
    assert_eq!(c.shell_reply().content["status"], "ok");
}

#[test]
fn an_oversized_display_is_replaced_by_a_note() {
    let c = start();
    let mib = (DISPLAY_LIMIT_PER_MESSAGE >> 20) + 1;
    let id = c.execute(&format!("bigdisplay {mib}\nprint after"), json!({}));
    assert_eq!(c.shell_reply().content["status"], "ok");
    let msgs = c.iopub_until_idle(&id);
    let displays: Vec<&Msg> = msgs.iter().filter(|m| m.msg_type == "display_data").collect();
    assert_eq!(displays.len(), 1);
    let note = displays[0].content["data"]["text/plain"].as_str().unwrap();
    assert!(note.contains("is not shown") && note.len() < 1000, "{}", &note[..note.len().min(200)]);
    assert!(msgs.iter().any(|m| m.content["text"] == "after\n"));
}

