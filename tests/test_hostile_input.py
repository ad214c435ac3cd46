"""Hostile input through the real kernel binary (``--mock`` engine): what a
peer without the key can do must cost the kernel nothing and run nothing.

- a 1 GB frame and a flood of 100,000 unsigned messages leave the kernel's
  resident memory (VmRSS, and its peak VmHWM) within 50 MiB of where it was,
  and the next valid request is answered;
- the heartbeat refuses a large ping and still echoes a normal one;
- 10,000 random messages on shell and control (random shapes, random bytes,
  near-valid ones, correctly signed garbage) are survived;
- a wrongly signed or replayed ``execute_request`` never runs;
- the log warns at start about an empty key or a non-loopback address;
- ipc socket files are removed at exit.
"""

from __future__ import annotations

import json
import mmap
import os
import random
import signal
import subprocess
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import pytest
import zmq
from jupyter_client.session import Session

from conftest import FAST_TIMEOUT, execute, kernel_executable, kernel_pid

T = FAST_TIMEOUT
MiB = 1 << 20
DELIM = b"<IDS|MSG>"


def memory_kib(pid: int) -> dict[str, int]:
    """VmRSS and VmHWM of a process, in KiB."""
    out = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            out[key] = int(value.split()[0])
    return out


def connect(km, channel: str, kind: int = zmq.DEALER) -> zmq.Socket:
    info = km.get_connection_info(session=False)
    sock = zmq.Context.instance().socket(kind)
    sock.linger = 0
    sock.connect(f"{info['transport']}://{info['ip']}:{info[f'{channel}_port']}")
    return sock


def session_of(km) -> Session:
    info = km.get_connection_info(session=False)
    return Session(key=info["key"], signature_scheme=info["signature_scheme"])


def answered(sock: zmq.Socket, session: Session, msg_type: str = "kernel_info_request") -> dict[str, Any]:
    """Sends a valid request on a raw socket; returns its reply, skipping
    replies to earlier messages."""
    msg = session.msg(msg_type, {})
    sock.send_multipart(session.serialize(msg))
    deadline = time.monotonic() + T
    while time.monotonic() < deadline:
        if not sock.poll(100):
            continue
        _, frames = session.feed_identities(sock.recv_multipart())
        reply = session.deserialize(frames)
        if reply["parent_header"].get("msg_id") == msg["header"]["msg_id"]:
            return reply
    raise TimeoutError(f"no reply to {msg_type}")


def wait_disconnected(monitor: zmq.Socket, timeout: float) -> bool:
    """True once the monitored socket saw its connection dropped."""
    from zmq.utils.monitor import recv_monitor_message

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if monitor.poll(100):
            event = recv_monitor_message(monitor)
            if event["event"] == zmq.EVENT_DISCONNECTED:
                return True
    return False


def test_huge_frame_and_unsigned_flood_cost_no_memory(mock_kernel):
    km, kc = mock_kernel
    pid = kernel_pid(km)
    session = session_of(km)
    assert execute(kc, "print warm", timeout=T).status == "ok"
    before = memory_kib(pid)

    # 1 GB in one frame. The pages are an untouched anonymous mapping, so
    # the test itself does not hold a gigabyte; the kernel must refuse the
    # frame from its size (ZMQ_MAXMSGSIZE), before reading it.
    big = mmap.mmap(-1, 1 << 30)
    sock = connect(km, "shell")
    monitor = sock.get_monitor_socket(zmq.EVENT_DISCONNECTED)
    try:
        sock.send(memoryview(big), copy=False)
        assert wait_disconnected(monitor, 30), "the kernel read the 1 GB frame instead of refusing it"
    finally:
        sock.disable_monitor()
        monitor.close()
        sock.close()
    after_big = memory_kib(pid)

    # 100,000 unsigned messages: delimiter, an empty signature, valid JSON.
    sock = connect(km, "shell")
    try:
        header = json.dumps({"msg_id": "x", "msg_type": "execute_request", "session": "s",
                             "username": "u", "date": "", "version": "5.4"}).encode()
        content = json.dumps({"code": "print FLOOD " + "y" * 500}).encode()
        frames = [DELIM, b"", header, b"{}", b"{}", content]
        for _ in range(100_000):
            sock.send_multipart(frames)
        # Answered only after everything before it on this connection.
        reply = answered(sock, session)
        assert reply["content"]["status"] == "ok"
    finally:
        sock.close()
    after = memory_kib(pid)

    res = execute(kc, "result alive", timeout=T)
    assert res.result_text() == "alive"
    assert res.content["execution_count"] == 2, "nothing from the flood ran"
    grew = {k: (after[k] - before[k]) / 1024 for k in before}
    print(f"\nkernel memory (KiB) before {before}, after the 1 GB frame {after_big}, after the flood {after}")
    assert grew["VmRSS"] < 50, f"resident memory grew {grew['VmRSS']:.1f} MiB"
    assert grew["VmHWM"] < 50, f"peak resident memory grew {grew['VmHWM']:.1f} MiB"


def test_a_message_of_many_large_frames_costs_no_memory(mock_kernel):
    """The size limit counts a multipart message as a whole: 40 frames of
    8 MiB, each under it, are refused before they are all buffered."""
    km, kc = mock_kernel
    pid = kernel_pid(km)
    assert execute(kc, "print warm", timeout=T).status == "ok"
    before = memory_kib(pid)
    part = mmap.mmap(-1, 8 * MiB)
    sock = connect(km, "shell")
    monitor = sock.get_monitor_socket(zmq.EVENT_DISCONNECTED)
    try:
        sock.send_multipart([memoryview(part)] * 40, copy=False)
        assert wait_disconnected(monitor, 30), "the kernel took a 320 MiB message"
    finally:
        sock.disable_monitor()
        monitor.close()
        sock.close()
    after = memory_kib(pid)
    grew = {k: (after[k] - before[k]) / 1024 for k in before}
    print(f"\nkernel memory (KiB) before {before}, after 40 x 8 MiB frames {after}")
    assert grew["VmHWM"] < 50, f"peak resident memory grew {grew['VmHWM']:.1f} MiB"
    assert execute(kc, "result alive", timeout=T).result_text() == "alive"


def test_heartbeat_refuses_a_large_ping(mock_kernel):
    km, kc = mock_kernel
    sock = connect(km, "hb", zmq.REQ)
    monitor = sock.get_monitor_socket(zmq.EVENT_DISCONNECTED)
    try:
        sock.send(b"x" * MiB)
        assert wait_disconnected(monitor, T), "a 1 MiB ping was accepted"
    finally:
        sock.disable_monitor()
        monitor.close()
        sock.close()
    sock = connect(km, "hb", zmq.REQ)
    try:
        sock.send(b"ping")
        assert sock.poll(T * 1000), "no echo after the large ping"
        assert sock.recv() == b"ping"
    finally:
        sock.close()


# --- fuzzing ----------------------------------------------------------------------------

# Known types with content that does not fit them; shutdown and interrupt
# are left out (correctly signed, they would be obeyed).
MALFORMED = [
    ("execute_request", {"code": 123}),
    ("execute_request", {"silent": "yes"}),
    ("complete_request", {"code": "x", "cursor_pos": "far"}),
    ("inspect_request", {"cursor_pos": -1}),
    ("history_request", {"hist_access_type": None}),
    ("is_complete_request", {}),
    ("comm_open", {"target_name": 5}),
    ("comm_msg", {"comm_id": 5}),
    ("input_reply", {"value": {"nested": True}}),
    ("frobnicate_request", {"x": 1}),
    ("kernel_info_request", "not an object"),
]


def random_message(rng: random.Random, session: Session) -> list[bytes]:
    def junk(n: int = 64) -> bytes:
        return rng.randbytes(rng.randint(0, n))

    kind = rng.randrange(7)
    if kind == 0:  # any shape, any bytes
        return [junk() for _ in range(rng.randint(1, 9))]
    if kind == 1:  # a delimiter somewhere among junk
        frames = [junk() for _ in range(rng.randint(0, 9))]
        frames.insert(rng.randint(0, len(frames)), DELIM)
        return frames
    valid = session.serialize(session.msg(rng.choice(["kernel_info_request", "history_request"]), {}))
    if kind == 2:  # a valid message, one frame changed
        i = rng.randrange(1, len(valid))
        valid[i] = junk() if rng.random() < 0.5 else valid[i][: rng.randint(0, len(valid[i]))]
        return valid
    if kind == 3:  # a valid message, frames dropped or added
        if rng.random() < 0.5:
            return valid[: rng.randint(1, len(valid) - 1)]
        return valid + [junk() for _ in range(rng.randint(1, 3))]
    if kind == 4:  # correctly signed, not JSON
        parts = [junk(), junk(), junk(), junk()]
        return [DELIM, session.sign(parts)] + parts
    if kind == 5:  # correctly signed JSON header with no or odd msg_type
        header = rng.choice([{}, {"msg_type": 7}, {"msg_id": None}, {"msg_type": ""}, []])
        parts = [json.dumps(header).encode(), b"{}", b"{}", b"{}"]
        return [DELIM, session.sign(parts)] + parts
    msg_type, content = rng.choice(MALFORMED)  # correctly signed, malformed content
    return session.serialize(session.msg(msg_type, content))


def test_ten_thousand_random_messages_are_survived(mock_kernel):
    km, kc = mock_kernel
    session = session_of(km)
    seed = int(os.environ.get("FUZZ_SEED", random.randrange(1 << 30)))
    print(f"\nfuzz seed {seed} (FUZZ_SEED={seed} replays it)")
    rng = random.Random(seed)
    socks = {"shell": connect(km, "shell"), "control": connect(km, "control")}
    try:
        for i in range(10_000):
            sock = socks["shell" if i % 2 == 0 else "control"]
            sock.send_multipart(random_message(rng, session))
            while sock.poll(0):  # error replies to the signed malformed ones
                sock.recv_multipart()
        for name, sock in socks.items():
            assert answered(sock, session)["content"]["status"] == "ok", name
    finally:
        for sock in socks.values():
            sock.close()
    assert km.is_alive()
    res = execute(kc, "print still fine\nresult 1", timeout=T)
    assert res.status == "ok" and res.stream() == "still fine\n"
    assert res.content["execution_count"] == 1, "no fuzzed message ran a cell"


def test_wrongly_signed_and_replayed_executes_never_run(mock_kernel, tmp_path):
    km, kc = mock_kernel
    session = session_of(km)
    sock = connect(km, "shell")

    def touch(path: Path, signer: Session) -> list[bytes]:
        content = {"code": f"touch {path}", "silent": False, "store_history": True,
                   "user_expressions": {}, "allow_stdin": False, "stop_on_error": False}
        return signer.serialize(signer.msg("execute_request", content))

    try:
        wrong = tmp_path / "wrong-key"
        sock.send_multipart(touch(wrong, Session(key=b"not-the-key", signature_scheme="hmac-sha256")))
        unsigned = tmp_path / "unsigned"
        frames = touch(unsigned, session)
        frames[1] = b""
        sock.send_multipart(frames)
        # The same command correctly signed does create its file: the mock's
        # `touch` works, so the two files above are absent because refused.
        control = tmp_path / "signed"
        signed = touch(control, session)
        sock.send_multipart(signed)
        assert sock.poll(T * 1000), "no reply to the signed execute"
        _, reply = session.feed_identities(sock.recv_multipart())
        assert session.deserialize(reply)["content"]["status"] == "ok"
        assert control.exists()
        control.unlink()
        # The identical frames again: a replay, refused.
        sock.send_multipart(signed)
        assert answered(sock, session)["content"]["status"] == "ok"
    finally:
        sock.close()
    assert not wrong.exists(), "a wrongly signed execute_request ran"
    assert not unsigned.exists(), "an unsigned execute_request ran"
    assert not control.exists(), "a replayed execute_request ran"


# --- start-up warnings, ipc files -------------------------------------------------------


def free_ports(n: int) -> list[int]:
    import socket

    socks = [socket.socket() for _ in range(n)]
    for s in socks:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    return ports


def run_until_ready(conn: dict[str, Any], directory: Path) -> tuple[subprocess.Popen, Path]:
    """Starts `threadbook kernel --mock` on `conn`; returns once it logged
    that it is ready, with the file its log goes to."""
    path = directory / "conn.json"
    path.write_text(json.dumps(conn))
    log = directory / "kernel.log"
    proc = subprocess.Popen(
        [kernel_executable(), "kernel", "--mock", "--connection-file", str(path)],
        stdout=subprocess.DEVNULL, stderr=log.open("w"), env=dict(os.environ, THREADBOOK_LOG="info"))
    deadline = time.monotonic() + 30
    while "ready" not in log.read_text():
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            raise AssertionError(f"the kernel did not start:\n{log.read_text()}")
        time.sleep(0.05)
    return proc, log


def stop(proc: subprocess.Popen) -> None:
    proc.send_signal(signal.SIGTERM)
    proc.wait(timeout=T)


def conn_info(**over: Any) -> dict[str, Any]:
    ports = free_ports(5)
    info = {"transport": "tcp", "ip": "127.0.0.1", "key": uuid.uuid4().hex,
            "signature_scheme": "hmac-sha256",
            **dict(zip(["shell_port", "iopub_port", "stdin_port", "control_port", "hb_port"], ports))}
    info.update(over)
    return info


def test_risky_connections_are_warned_about(tmp_path):
    proc, log = run_until_ready(conn_info(), tmp_path)
    stop(proc)
    text = log.read_text()
    assert "key is empty" not in text and "not a loopback" not in text, text

    proc, log = run_until_ready(conn_info(key="", ip="0.0.0.0"), tmp_path)
    stop(proc)
    text = log.read_text()
    assert "key is empty" in text, text
    assert "0.0.0.0, not a loopback address" in text, text


def test_ipc_socket_files_are_removed_at_exit():
    # ipc paths must be short (sun_path), so not pytest's tmp_path.
    with tempfile.TemporaryDirectory(prefix="tb-ipc-") as d:
        base = Path(d) / "k"
        conn = conn_info(transport="ipc", ip=str(base))
        for i, name in enumerate(["shell_port", "iopub_port", "stdin_port", "control_port", "hb_port"]):
            conn[name] = i + 1
        proc, _ = run_until_ready(conn, Path(d))
        files = [Path(f"{base}-{i + 1}") for i in range(5)]
        assert all(f.exists() for f in files), sorted(os.listdir(d))
        stop(proc)
        left = [f.name for f in files if f.exists()]
        assert not left, f"ipc files left behind: {left}"
