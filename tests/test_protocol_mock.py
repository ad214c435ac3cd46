"""Protocol behaviour that jupyter_kernel_test does not cover, against the
scripted mock engine (``threadbook kernel --mock``), so each test takes
milliseconds instead of compiles.

Mock language, one command per line: ``print TEXT``, ``eprint TEXT``,
``flood N``, ``result TEXT``, ``display MIME TEXT``, ``show ID TEXT``,
``update ID TEXT``, ``clear``, ``sleep MS``, ``spin``, ``input PROMPT``,
``password PROMPT``, ``error NAME MESSAGE``, ``panic MESSAGE`` (the engine
itself panics), ``touch PATH``, ``bigdisplay MIB``; a complete or inspect
request whose code contains ``panic!`` panics the engine.

No test here asserts a wall-clock time: an interrupt test first waits for
the cell's own output, which proves the cell was running; "answered while a
cell runs" is shown by the order of replies, not by a stopwatch.
"""

from __future__ import annotations

import datetime
import json
import os
import queue
import signal
import subprocess
import tempfile
import time
import uuid
from typing import Any

import pytest
import zmq
from jupyter_client.session import Session

from conftest import (
    FAST_TIMEOUT,
    MOCK_KERNEL_NAME,
    collect_iopub,
    drain,
    execute,
    kernel_executable,
    kernel_pid,
    request,
    send_interrupt,
    start_kernel,
    stop_kernel,
    wait_reply,
)

T = FAST_TIMEOUT


def statuses(msgs: list[dict[str, Any]]) -> list[str]:
    return [m["content"]["execution_state"] for m in msgs if m["msg_type"] == "status"]


def assert_framed(msgs: list[dict[str, Any]], msg_id: str) -> None:
    """busy first, idle last, exactly one of each, all with the request as parent."""
    assert msgs, "no iopub messages"
    assert all(m["parent_header"]["msg_id"] == msg_id for m in msgs)
    assert msgs[0]["msg_type"] == "status" and msgs[0]["content"]["execution_state"] == "busy", msgs[0]
    assert msgs[-1]["msg_type"] == "status" and msgs[-1]["content"]["execution_state"] == "idle", msgs[-1]
    assert statuses(msgs) == ["busy", "idle"], [m["msg_type"] for m in msgs]


def roundtrip(kc, msg_type: str, content: dict[str, Any], channel: str = "shell", reply: bool = True):
    """Sends a request; returns (reply or None, its iopub messages up to idle)."""
    msg_id = request(kc, msg_type, content, channel=channel)
    rep = wait_reply(kc, msg_id, T, channel=channel) if reply else None
    msgs, _ = collect_iopub(kc, msg_id, T)
    return msg_id, rep, msgs


# --- status framing ----------------------------------------------------------------

SHELL_REQUESTS = [
    ("kernel_info_request", {}),
    ("execute_request", {"code": "print hi", "silent": False, "store_history": True,
                         "user_expressions": {}, "allow_stdin": False, "stop_on_error": True}),
    ("execute_request", {"code": "print hi", "silent": True, "store_history": False,
                         "user_expressions": {}, "allow_stdin": False, "stop_on_error": True}),
    ("complete_request", {"code": "pri", "cursor_pos": 3}),
    ("inspect_request", {"code": "print", "cursor_pos": 5, "detail_level": 0}),
    ("is_complete_request", {"code": "fn f() {"}),
    ("history_request", {"output": False, "raw": True, "hist_access_type": "tail", "n": 10}),
    ("comm_info_request", {}),
    ("comm_info_request", {"target_name": "jupyter.widget"}),
]


@pytest.mark.parametrize("msg_type,content", SHELL_REQUESTS, ids=[f"{t}-{i}" for i, (t, _) in enumerate(SHELL_REQUESTS)])
def test_every_shell_request_is_framed_by_busy_and_idle(mock_kernel, msg_type, content):
    km, kc = mock_kernel
    msg_id, rep, msgs = roundtrip(kc, msg_type, content)
    assert rep["msg_type"] == msg_type.replace("_request", "_reply")
    assert rep["parent_header"]["msg_id"] == msg_id
    expected = "incomplete" if msg_type == "is_complete_request" else "ok"
    assert rep["content"]["status"] == expected, rep["content"]
    assert_framed(msgs, msg_id)


@pytest.mark.parametrize("msg_type", ["kernel_info_request", "interrupt_request"])
def test_control_requests_are_framed_by_busy_and_idle(mock_kernel, msg_type):
    km, kc = mock_kernel
    msg_id, rep, msgs = roundtrip(kc, msg_type, {}, channel="control")
    assert rep["msg_type"] == msg_type.replace("_request", "_reply")
    assert rep["content"]["status"] == "ok"
    assert_framed(msgs, msg_id)


def test_execute_message_order(mock_kernel):
    km, kc = mock_kernel
    res = execute(kc, "print one\nresult 1", timeout=T)
    types = [m["msg_type"] for m in res.msgs]
    assert types == ["status", "execute_input", "stream", "execute_result", "status"], types
    assert_framed(res.msgs, res.msg_id)
    ei = res.msgs[1]["content"]
    assert ei == {"code": "print one\nresult 1", "execution_count": 1}
    assert res.content == {"status": "ok", "execution_count": 1, "payload": [], "user_expressions": {}}


def test_headers_are_well_formed(mock_kernel):
    km, kc = mock_kernel
    res = execute(kc, "print x", timeout=T)
    sessions = set()
    for msg in [res.reply] + res.msgs:
        h = msg["header"]
        assert set(h) >= {"msg_id", "session", "username", "date", "msg_type", "version"}
        # jupyter_client turns a valid ISO-8601 date into a datetime; a bad one stays a string
        assert isinstance(h["date"], datetime.datetime), h["date"]
        assert h["date"].tzinfo is not None
        assert h["version"].startswith("5.")
        assert int(h["version"].split(".")[1]) >= 3
        assert msg["parent_header"]["msg_id"] == res.msg_id
        sessions.add(h["session"])
    assert len(sessions) == 1, "one session id per kernel process"
    assert len({m["header"]["msg_id"] for m in [res.reply] + res.msgs}) == len(res.msgs) + 1


def test_kernel_info_reply(mock_kernel):
    km, kc = mock_kernel
    for channel in ("shell", "control"):
        _, rep, _ = roundtrip(kc, "kernel_info_request", {}, channel=channel)
        c = rep["content"]
        assert c["status"] == "ok"
        assert c["protocol_version"] == "5.4"
        assert c["implementation"] == "threadbook"
        assert isinstance(c["implementation_version"], str) and c["implementation_version"]
        assert isinstance(c["banner"], str)
        li = c["language_info"]
        assert li["name"] == "rust"
        assert li["pygments_lexer"] == "rust"
        assert li["codemirror_mode"] == "rust"
        assert li["mimetype"] == "text/rust"
        assert li["file_extension"] == ".rs"
        for link in c.get("help_links", []):
            assert set(link) == {"text", "url"}


# --- outputs ---------------------------------------------------------------------


def test_outputs_arrive_in_order_with_their_kinds(mock_kernel):
    km, kc = mock_kernel
    code = "\n".join([
        "print first",
        "display text/html <b>x</b>",
        "show d1 shown",
        "update d1 updated",
        "clear",
        "eprint warned",
        "print last",
        "result 42",
    ])
    res = execute(kc, code, timeout=T)
    assert res.status == "ok"
    out = res.outputs
    kinds = [m["msg_type"] for m in out]
    assert kinds == ["stream", "display_data", "display_data", "update_display_data",
                     "clear_output", "stream", "stream", "execute_result"], kinds
    assert out[0]["content"] == {"name": "stdout", "text": "first\n"}
    assert out[1]["content"]["data"] == {"text/html": "<b>x</b>", "text/plain": "<b>x</b>"}
    assert out[1]["content"]["metadata"] == {}
    assert out[2]["content"]["data"] == {"text/plain": "shown"}
    assert out[2]["content"]["transient"] == {"display_id": "d1"}
    assert out[3]["content"]["data"] == {"text/plain": "updated"}
    assert out[3]["content"]["transient"] == {"display_id": "d1"}
    assert out[4]["content"] == {"wait": False}
    assert out[5]["content"] == {"name": "stderr", "text": "warned\n"}
    assert out[6]["content"] == {"name": "stdout", "text": "last\n"}
    assert out[7]["content"]["data"] == {"text/plain": "42"}
    assert out[7]["content"]["execution_count"] == res.content["execution_count"] == 1
    assert out[7]["content"]["metadata"] == {}


def test_error_gives_one_error_output_and_error_reply(mock_kernel):
    km, kc = mock_kernel
    res = execute(kc, "print before\nerror Boom it broke\nprint never", timeout=T)
    assert res.status == "error"
    assert res.content["ename"] == "Boom"
    assert res.content["evalue"] == "it broke"
    assert isinstance(res.content["traceback"], list) and res.content["traceback"]
    assert res.content["execution_count"] == 1
    errors = res.of_type("error")
    assert len(errors) == 1
    e = errors[0]["content"]
    assert (e["ename"], e["evalue"], e["traceback"]) == (
        res.content["ename"], res.content["evalue"], res.content["traceback"])
    assert res.stream() == "before\n", "lines after the failing one must not run"


def test_stream_flood_is_batched_complete_and_ordered(mock_kernel):
    km, kc = mock_kernel
    n = 100_000
    res = execute(kc, f"flood {n}", timeout=60)
    streams = res.of_type("stream")
    text = "".join(m["content"]["text"] for m in streams)
    assert text == "".join(f"line {i}\n" for i in range(n))
    print(f"mock flood: {n} lines in {len(streams)} stream messages, {res.seconds:.2f} s")
    assert len(streams) <= 1000


# --- execution counter ------------------------------------------------------------


def test_execution_count_rules(mock_kernel):
    km, kc = mock_kernel
    r1 = execute(kc, "result a", timeout=T)
    assert r1.content["execution_count"] == 1
    assert r1.of_type("execute_result")[0]["content"]["execution_count"] == 1

    # store_history=False: runs and shows output, counter unchanged
    r2 = execute(kc, "print b\nresult b", store_history=False, timeout=T)
    assert r2.status == "ok"
    assert r2.content["execution_count"] == 1
    assert r2.stream() == "b\n"
    assert r2.of_type("execute_input"), "non-silent requests broadcast execute_input"

    r3 = execute(kc, "result c", timeout=T)
    assert r3.content["execution_count"] == 2
    assert r3.of_type("execute_input")[0]["content"]["execution_count"] == 2

    # silent: no execute_input, no outputs at all, counter unchanged
    r4 = execute(kc, "print quiet\neprint quiet\ndisplay text/html <b>q</b>\nresult quiet", silent=True, timeout=T)
    assert r4.status == "ok"
    assert r4.content["execution_count"] == 2
    assert [m["msg_type"] for m in r4.msgs] == ["status", "status"], [m["msg_type"] for m in r4.msgs]

    # silent=True forces store_history off even when it says True
    r5 = execute(kc, "result d", silent=True, store_history=True, timeout=T)
    assert r5.content["execution_count"] == 2

    r6 = execute(kc, "result e", timeout=T)
    assert r6.content["execution_count"] == 3

    # failing cells count too
    r7 = execute(kc, "error E x", timeout=T)
    assert r7.content["execution_count"] == 4
    r8 = execute(kc, "result f", timeout=T)
    assert r8.content["execution_count"] == 5


def test_silent_error_produces_no_error_output(mock_kernel):
    km, kc = mock_kernel
    res = execute(kc, "error Hidden x", silent=True, timeout=T)
    assert res.status == "error"
    assert res.content["ename"] == "Hidden"
    assert [m["msg_type"] for m in res.msgs] == ["status", "status"]


# --- stop_on_error ------------------------------------------------------------------


def _send_exec(kc, code, **kw):
    kw.setdefault("allow_stdin", False)
    return kc.execute(code, **kw)


def test_stop_on_error_aborts_queued_requests(mock_kernel):
    km, kc = mock_kernel
    first = _send_exec(kc, "sleep 300\nerror Boom first failed", stop_on_error=True)
    second = _send_exec(kc, "print SECOND_RAN\nresult 2", stop_on_error=True)
    third = _send_exec(kc, "print THIRD_RAN", stop_on_error=True)
    replies = {mid: wait_reply(kc, mid, T) for mid in (first, second, third)}
    assert replies[first]["content"]["status"] == "error"
    assert replies[first]["content"]["ename"] == "Boom"
    for mid in (second, third):
        assert replies[mid]["content"]["status"] == "aborted", replies[mid]["content"]
    iopub = {mid: collect_iopub(kc, mid, T)[0] for mid in (first, second, third)}
    for mid in (second, third):
        assert_framed(iopub[mid], mid)
        assert [m["msg_type"] for m in iopub[mid]] == ["status", "status"], "aborted cells must not run"
    # nothing ran, counter unchanged: the next request runs as count 2
    after = execute(kc, "print AFTER\nresult after", stop_on_error=True, timeout=T)
    assert after.status == "ok"
    assert after.stream() == "AFTER\n"
    assert after.content["execution_count"] == 2
    hist = wait_reply(kc, kc.history(hist_access_type="tail", n=10, output=False, raw=True), T)
    assert [h[2] for h in hist["content"]["history"]] == [
        "sleep 300\nerror Boom first failed", "print AFTER\nresult after"]


def test_without_stop_on_error_queued_requests_run(mock_kernel):
    km, kc = mock_kernel
    first = _send_exec(kc, "sleep 300\nerror Boom x", stop_on_error=False)
    second = _send_exec(kc, "print SECOND_RAN", stop_on_error=False)
    assert wait_reply(kc, first, T)["content"]["status"] == "error"
    assert wait_reply(kc, second, T)["content"]["status"] == "ok"
    msgs, _ = collect_iopub(kc, second, T)
    assert any(m["msg_type"] == "stream" and m["content"]["text"] == "SECOND_RAN\n" for m in msgs)


def test_requests_arriving_after_the_failure_run(mock_kernel):
    km, kc = mock_kernel
    r1 = execute(kc, "error Boom x", stop_on_error=True, timeout=T)
    assert r1.status == "error"
    r2 = execute(kc, "print fine", stop_on_error=True, timeout=T)
    assert r2.status == "ok" and r2.stream() == "fine\n"


# --- history -------------------------------------------------------------------------


def _history(kc, **kw):
    kw.setdefault("raw", True)
    kw.setdefault("output", False)
    rep = wait_reply(kc, kc.history(**kw), T)
    assert rep["content"]["status"] == "ok"
    return rep["content"]["history"]


def test_history_tail_range_search(mock_kernel):
    km, kc = mock_kernel
    cells = ["print alpha", "result 10", "print beta", "result 10", "print gamma"]
    for c in cells:
        assert execute(kc, c, timeout=T).status == "ok"
    execute(kc, "print not stored", store_history=False, timeout=T)
    execute(kc, "print silent", silent=True, timeout=T)

    tail = _history(kc, hist_access_type="tail", n=10)
    assert [h[2] for h in tail] == cells, "only stored cells, in order"
    assert [h[1] for h in tail] == [1, 2, 3, 4, 5]
    session = tail[0][0]
    assert all(h[0] == session for h in tail)

    assert [h[2] for h in _history(kc, hist_access_type="tail", n=2)] == cells[-2:]

    rng = _history(kc, hist_access_type="range", session=session, start=2, stop=4)
    assert [(h[1], h[2]) for h in rng] == [(2, "result 10"), (3, "print beta")]

    with_out = _history(kc, hist_access_type="range", session=session, start=2, stop=3, output=True)
    assert with_out == [[session, 2, ["result 10", "10"]]]
    no_result = _history(kc, hist_access_type="range", session=session, start=1, stop=2, output=True)
    assert no_result[0][2][0] == "print alpha"
    assert no_result[0][2][1] in (None, "")

    star = _history(kc, hist_access_type="search", pattern="print *")
    assert [h[2] for h in star] == ["print alpha", "print beta", "print gamma"]
    qmark = _history(kc, hist_access_type="search", pattern="print ?eta")
    assert [h[2] for h in qmark] == ["print beta"]
    dup = _history(kc, hist_access_type="search", pattern="result*")
    assert [h[1] for h in dup] == [2, 4]
    uniq = _history(kc, hist_access_type="search", pattern="result*", unique=True)
    assert [h[2] for h in uniq] == ["result 10"]
    last_two = _history(kc, hist_access_type="search", pattern="print *", n=2)
    assert [h[2] for h in last_two] == ["print beta", "print gamma"]
    assert _history(kc, hist_access_type="search", pattern="nothing*") == []


# --- comms ---------------------------------------------------------------------------


def test_comm_info_is_empty(mock_kernel):
    km, kc = mock_kernel
    for content in ({}, {"target_name": "jupyter.widget"}):
        _, rep, _ = roundtrip(kc, "comm_info_request", content)
        assert rep["content"] == {"status": "ok", "comms": {}}


def test_comm_open_to_unknown_target_is_closed(mock_kernel):
    km, kc = mock_kernel
    comm_id = uuid.uuid4().hex
    msg_id, _, msgs = roundtrip(
        kc, "comm_open", {"comm_id": comm_id, "target_name": "no.such.target", "data": {}}, reply=False)
    assert_framed(msgs, msg_id)
    closes = [m for m in msgs if m["msg_type"] == "comm_close"]
    assert len(closes) == 1
    assert closes[0]["content"]["comm_id"] == comm_id
    # comm_msg / comm_close for unknown comms are ignored, the kernel goes on
    request(kc, "comm_msg", {"comm_id": comm_id, "data": {"x": 1}})
    request(kc, "comm_close", {"comm_id": comm_id, "data": {}})
    assert execute(kc, "print still here", timeout=T).stream() == "still here\n"


# --- control while a cell runs --------------------------------------------------------


def _running(kc, code: str = "print started\nspin") -> tuple[str, list[dict[str, Any]]]:
    """Sends a cell that prints `started` and then spins; returns once that
    line arrived (so the cell is running), with the cell's messages so far."""
    cell = _send_exec(kc, code)
    seen: list[dict[str, Any]] = []
    deadline = time.monotonic() + T
    while time.monotonic() < deadline:
        try:
            msg = kc.get_iopub_msg(timeout=0.1)
        except queue.Empty:
            continue
        if msg["parent_header"].get("msg_id") != cell:
            continue
        seen.append(msg)
        if msg["msg_type"] == "stream" and "started" in msg["content"]["text"]:
            return cell, seen
    raise TimeoutError(f"the cell never printed 'started': {[m['msg_type'] for m in seen]}")


def _no_reply_yet(kc, cell: str) -> None:
    """The cell's execute_reply has not come: it is still running."""
    try:
        msg = kc.get_shell_msg(timeout=0)
    except queue.Empty:
        return
    assert msg["parent_header"].get("msg_id") != cell, "the cell ended on its own"


def test_kernel_info_on_control_while_a_cell_spins(mock_kernel):
    km, kc = mock_kernel
    cell, _ = _running(kc)
    msg_id = request(kc, "kernel_info_request", {}, channel="control")
    rep = wait_reply(kc, msg_id, T, channel="control")
    assert rep["content"]["status"] == "ok"
    assert rep["content"]["language_info"]["name"] == "rust"
    _no_reply_yet(kc, cell)
    send_interrupt(kc)
    assert wait_reply(kc, cell, T)["content"]["status"] == "error"


def test_interrupt_stops_a_spinning_cell(mock_kernel):
    km, kc = mock_kernel
    cell, early = _running(kc, "print started\nspin\nprint never")
    _no_reply_yet(kc, cell)
    intr = send_interrupt(kc)
    irep = wait_reply(kc, intr, T, channel="control")
    assert irep["msg_type"] == "interrupt_reply"
    assert irep["content"]["status"] == "ok"
    rep = wait_reply(kc, cell, T)
    assert rep["content"]["status"] == "error"
    assert rep["content"]["ename"] == "Interrupted"
    rest, _ = collect_iopub(kc, cell, T)
    msgs = early + rest
    text = "".join(m["content"]["text"] for m in msgs if m["msg_type"] == "stream")
    assert text == "started\n"
    assert [m["content"]["ename"] for m in msgs if m["msg_type"] == "error"] == ["Interrupted"]
    assert execute(kc, "result ok", timeout=T).result_text() == "ok"


def test_interrupt_while_idle_is_harmless(mock_kernel):
    km, kc = mock_kernel
    rep = wait_reply(kc, send_interrupt(kc), T, channel="control")
    assert rep["content"]["status"] == "ok"
    res = execute(kc, "sleep 50\nresult fine", timeout=T)
    assert res.status == "ok" and res.result_text() == "fine"


def test_sigint_interrupts_and_does_not_kill(mock_kernel):
    km, kc = mock_kernel
    cell, _ = _running(kc)
    _no_reply_yet(kc, cell)
    os.kill(kernel_pid(km), signal.SIGINT)
    rep = wait_reply(kc, cell, T)
    assert rep["content"]["status"] == "error"
    assert rep["content"]["ename"] == "Interrupted"
    assert km.is_alive()
    assert execute(kc, "result alive", timeout=T).result_text() == "alive"


# --- stdin ----------------------------------------------------------------------------


def test_input_request_and_reply(mock_kernel):
    km, kc = mock_kernel
    res = execute(kc, "input name?\nprint done", inputs=["Ada"], timeout=T)
    assert res.status == "ok", res.describe()
    assert len(res.input_requests) == 1
    req = res.input_requests[0]
    assert req["msg_type"] == "input_request"
    assert req["content"]["prompt"] == "name?"
    assert req["content"]["password"] is False
    assert req["parent_header"]["msg_id"] == res.msg_id
    assert res.stream() == "got: Ada\ndone\n"


def test_password_request(mock_kernel):
    km, kc = mock_kernel
    res = execute(kc, "password secret:", inputs=["hunter2"], timeout=T)
    assert res.status == "ok"
    assert res.input_requests[0]["content"] == {"prompt": "secret:", "password": True}
    assert res.stream() == "got: hunter2\n"


def test_two_inputs_in_one_cell(mock_kernel):
    km, kc = mock_kernel
    res = execute(kc, "input a\ninput b", inputs=["1", "2"], timeout=T)
    assert [r["content"]["prompt"] for r in res.input_requests] == ["a", "b"]
    assert res.stream() == "got: 1\ngot: 2\n"


def test_input_not_allowed(mock_kernel):
    km, kc = mock_kernel
    res = execute(kc, "input name?", allow_stdin=False, timeout=T)
    assert res.status == "error"
    assert res.content["ename"] == "StdinNotAllowed"
    assert len(res.errors()) == 1
    with pytest.raises(queue.Empty):
        kc.get_stdin_msg(timeout=0.3)
    assert execute(kc, "result next", timeout=T).result_text() == "next"


def test_interrupt_while_waiting_for_input(mock_kernel):
    km, kc = mock_kernel
    cell = kc.execute("input never answered", allow_stdin=True, stop_on_error=False)
    req = kc.get_stdin_msg(timeout=T)
    assert req["content"]["prompt"] == "never answered"  # proof the cell is running
    send_interrupt(kc)
    rep = wait_reply(kc, cell, T)
    assert rep["content"]["status"] == "error"
    collect_iopub(kc, cell, T)
    # a late answer to the abandoned prompt must not feed the next prompt
    kc.input("stale")
    time.sleep(0.3)  # let the stale answer reach the kernel first
    res = execute(kc, "input fresh", inputs=["new"], timeout=T)
    assert res.stream() == "got: new\n"


# --- the wire: signatures, malformed frames, unknown types ------------------------------


@pytest.fixture
def raw_shell(mock_kernel):
    """A DEALER socket on the kernel's shell port, plus the connection info."""
    km, kc = mock_kernel
    info = km.get_connection_info(session=False)
    ctx = zmq.Context.instance()
    sock = ctx.socket(zmq.DEALER)
    sock.linger = 0
    sock.connect(f"{info['transport']}://{info['ip']}:{info['shell_port']}")
    yield km, kc, sock, info
    sock.close()


def _frames(session: Session, msg_type: str, content: dict[str, Any]) -> tuple[str, list[bytes]]:
    msg = session.msg(msg_type, content)
    return msg["header"]["msg_id"], session.serialize(msg)


def _no_reply(sock, wait: float = 1.0) -> None:
    assert sock.poll(int(wait * 1000)) == 0, f"unexpected reply: {sock.recv_multipart()}"


def _nothing_on_iopub_for(kc, msg_id: str, wait: float = 0.5) -> list[dict[str, Any]]:
    seen = drain(kc, wait=wait)
    mine = [m for m in seen if m.get("parent_header", {}).get("msg_id") == msg_id]
    assert not mine, [m["msg_type"] for m in mine]
    return seen


def _assert_alive_and_untouched(kc, expected_count: int = 1) -> None:
    res = execute(kc, "result alive", timeout=T)
    assert res.status == "ok"
    assert res.content["execution_count"] == expected_count, "a refused message must not have run"
    hist = _history(kc, hist_access_type="tail", n=10)
    assert [h[2] for h in hist] == ["result alive"] * expected_count


def test_correctly_signed_raw_message_is_answered(raw_shell):
    """Control for the tests below: the raw socket itself works."""
    km, kc, sock, info = raw_shell
    session = Session(key=info["key"], signature_scheme=info["signature_scheme"])
    msg_id, frames = _frames(session, "kernel_info_request", {})
    sock.send_multipart(frames)
    assert sock.poll(T * 1000), "no reply to a correctly signed request"
    idents, reply = session.feed_identities(sock.recv_multipart())
    reply = session.deserialize(reply)
    assert reply["parent_header"]["msg_id"] == msg_id
    assert reply["content"]["status"] == "ok"


def test_wrongly_signed_message_is_dropped(raw_shell):
    km, kc, sock, info = raw_shell
    wrong = Session(key=b"not-the-key", signature_scheme="hmac-sha256")
    msg_id, frames = _frames(wrong, "execute_request", {
        "code": "print SHOULD_NOT_RUN", "silent": False, "store_history": True,
        "user_expressions": {}, "allow_stdin": False, "stop_on_error": True})
    sock.send_multipart(frames)
    _no_reply(sock)
    seen = _nothing_on_iopub_for(kc, msg_id)
    assert not any("SHOULD_NOT_RUN" in json.dumps(m.get("content", {})) for m in seen)
    _assert_alive_and_untouched(kc)


def test_unsigned_and_tampered_messages_are_dropped(raw_shell):
    km, kc, sock, info = raw_shell
    session = Session(key=info["key"], signature_scheme=info["signature_scheme"])
    content = {"code": "print SHOULD_NOT_RUN", "silent": False, "store_history": True,
               "user_expressions": {}, "allow_stdin": False, "stop_on_error": True}
    # empty signature
    id1, frames = _frames(session, "execute_request", content)
    frames[1] = b""
    sock.send_multipart(frames)
    # signature of other bytes: content changed after signing
    id2, frames = _frames(session, "execute_request", content)
    frames[5] = frames[5].replace(b"SHOULD_NOT_RUN", b"TAMPERED_RUNS")
    sock.send_multipart(frames)
    # not hex at all
    id3, frames = _frames(session, "execute_request", content)
    frames[1] = b"zz" * 32
    sock.send_multipart(frames)
    _no_reply(sock)
    for mid in (id1, id2, id3):
        _nothing_on_iopub_for(kc, mid, wait=0.2)
    _assert_alive_and_untouched(kc)


def test_malformed_frames_are_survived(raw_shell):
    km, kc, sock, info = raw_shell
    session = Session(key=info["key"], signature_scheme=info["signature_scheme"])
    _, good = _frames(session, "kernel_info_request", {})
    # too few frames after the delimiter
    sock.send_multipart(good[:3])
    sock.send_multipart(good[:5])
    # no delimiter at all
    sock.send_multipart([b"just", b"garbage"])
    sock.send_multipart([b""])
    # correctly signed, but not JSON
    bad = [b"not json", b"{}", b"{}", b"{}"]
    sock.send_multipart([b"<IDS|MSG>", session.sign(bad)] + bad)
    # correctly signed JSON header without msg_type
    hdr = [json.dumps({"msg_id": "x", "session": "y", "username": "u", "date": "", "version": "5.4"}).encode(),
           b"{}", b"{}", b"{}"]
    sock.send_multipart([b"<IDS|MSG>", session.sign(hdr)] + hdr)
    # correctly signed execute_request whose content lacks "code"
    bad_exec_id, frames = _frames(session, "execute_request", {"silent": False})
    sock.send_multipart(frames)
    # the kernel may answer the last one with an error reply, nothing else
    deadline = time.monotonic() + 1.0
    while time.monotonic() < deadline:
        if sock.poll(100):
            _, rep = session.feed_identities(sock.recv_multipart())
            rep = session.deserialize(rep)
            assert rep["parent_header"]["msg_id"] == bad_exec_id
            assert rep["content"]["status"] == "error"
    _assert_alive_and_untouched(kc)
    # and the raw socket still gets answers
    mid, good = _frames(session, "kernel_info_request", {})
    sock.send_multipart(good)
    assert sock.poll(T * 1000)
    _, rep = session.feed_identities(sock.recv_multipart())
    assert session.deserialize(rep)["parent_header"]["msg_id"] == mid


def test_malformed_frames_on_control_are_survived(mock_kernel):
    km, kc = mock_kernel
    info = km.get_connection_info(session=False)
    sock = zmq.Context.instance().socket(zmq.DEALER)
    sock.linger = 0
    sock.connect(f"{info['transport']}://{info['ip']}:{info['control_port']}")
    try:
        session = Session(key=info["key"], signature_scheme=info["signature_scheme"])
        _, good = _frames(session, "kernel_info_request", {})
        sock.send_multipart(good[:4])
        sock.send_multipart([b"x"])
        wrong = Session(key=b"wrong", signature_scheme="hmac-sha256")
        _, frames = _frames(wrong, "shutdown_request", {"restart": False})
        sock.send_multipart(frames)
        _no_reply(sock)
        assert km.is_alive(), "a wrongly signed shutdown_request must be ignored"
        mid, good = _frames(session, "kernel_info_request", {})
        sock.send_multipart(good)
        assert sock.poll(T * 1000)
        _, rep = session.feed_identities(sock.recv_multipart())
        assert session.deserialize(rep)["parent_header"]["msg_id"] == mid
    finally:
        sock.close()


def test_unknown_message_type_is_survived(mock_kernel):
    km, kc = mock_kernel
    mid = request(kc, "frobnicate_request", {"x": 1})
    # ipykernel does not answer unknown types; an error reply would be fine too
    try:
        rep = kc.get_shell_msg(timeout=0.5)
    except queue.Empty:
        pass
    else:
        assert rep["parent_header"]["msg_id"] == mid and rep["content"]["status"] == "error", rep
    request(kc, "frobnicate_request", {}, channel="control")
    assert execute(kc, "result ok", timeout=T).result_text() == "ok"
    rep = wait_reply(kc, request(kc, "kernel_info_request", {}, channel="control"), T, "control")
    assert rep["content"]["status"] == "ok"


def test_heartbeat_echoes_bytes(mock_kernel):
    km, kc = mock_kernel
    info = km.get_connection_info(session=False)
    sock = zmq.Context.instance().socket(zmq.REQ)
    sock.linger = 0
    sock.connect(f"{info['transport']}://{info['ip']}:{info['hb_port']}")
    try:
        for payload in (b"ping", b"\x00\xffbinary\x01", uuid.uuid4().bytes * 10):
            sock.send(payload)
            assert sock.poll(2000), "no heartbeat echo"
            assert sock.recv() == payload
    finally:
        sock.close()
    assert kc.is_alive()


def test_heartbeat_answers_while_a_cell_spins(mock_kernel):
    km, kc = mock_kernel
    cell, _ = _running(kc)
    info = km.get_connection_info(session=False)
    sock = zmq.Context.instance().socket(zmq.REQ)
    sock.linger = 0
    sock.connect(f"{info['transport']}://{info['ip']}:{info['hb_port']}")
    try:
        sock.send(b"beat")
        assert sock.poll(T * 1000)
        assert sock.recv() == b"beat"
        _no_reply_yet(kc, cell)
    finally:
        sock.close()
    send_interrupt(kc)
    assert wait_reply(kc, cell, T)["content"]["ename"] == "Interrupted"


# --- keys, shutdown, restart -------------------------------------------------------------


def test_empty_key_means_no_signing():
    from jupyter_client.manager import KernelManager

    km = KernelManager(kernel_name=MOCK_KERNEL_NAME)
    km.session.key = b""
    km.start_kernel()
    kc = km.client()
    kc.start_channels()
    try:
        kc.wait_for_ready(timeout=30)
        res = execute(kc, "result unsigned", timeout=T)
        assert res.result_text() == "unsigned"
        assert res.reply["content"]["status"] == "ok"
    finally:
        stop_kernel(km, kc)


def test_other_signature_scheme_is_refused():
    with tempfile.TemporaryDirectory() as d:
        conn = os.path.join(d, "conn.json")
        with open(conn, "w") as f:
            json.dump({
                "transport": "tcp", "ip": "127.0.0.1", "shell_port": 0, "iopub_port": 0,
                "stdin_port": 0, "control_port": 0, "hb_port": 0, "key": "abc",
                "signature_scheme": "hmac-md5", "kernel_name": "",
            }, f)
        proc = subprocess.run(
            [kernel_executable(), "kernel", "--mock", "--connection-file", conn],
            capture_output=True, text=True, timeout=30)
    assert proc.returncode != 0
    assert "signature_scheme" in proc.stderr and "hmac-md5" in proc.stderr, proc.stderr


def test_shutdown_request_on_control(mock_kernel):
    km, kc = mock_kernel
    proc = km.provisioner.process
    msg_id = request(kc, "shutdown_request", {"restart": False}, channel="control")
    rep = wait_reply(kc, msg_id, T, channel="control")
    assert rep["content"] == {"status": "ok", "restart": False}
    msgs, _ = collect_iopub(kc, msg_id, T)
    assert_framed(msgs, msg_id)
    assert [m["content"] for m in msgs if m["msg_type"] == "shutdown_reply"] == [{"status": "ok", "restart": False}]
    proc.wait(timeout=T)  # raises if the kernel does not exit


def test_restart_gives_a_new_process_and_session(mock_kernel):
    km, kc = mock_kernel
    execute(kc, "result before", timeout=T)
    s1 = wait_reply(kc, kc.kernel_info(), T)["header"]["session"]
    pid1 = kernel_pid(km)
    km.restart_kernel(now=False)
    kc.wait_for_ready(timeout=30)
    drain(kc)
    pid2 = kernel_pid(km)
    assert pid2 != pid1
    rep = wait_reply(kc, kc.kernel_info(), T)
    assert rep["content"]["status"] == "ok"
    assert rep["header"]["session"] != s1
    res = execute(kc, "result after", timeout=T)
    assert res.content["execution_count"] == 1, "a new process starts counting at 1"
    assert [h[1:] for h in _history(kc, hist_access_type="tail", n=10)] == [[1, "result after"]]


# --- order, engine failures ----------------------------------------------------------------


def test_shell_requests_are_answered_in_order(mock_kernel):
    km, kc = mock_kernel
    cell = _send_exec(kc, "sleep 300\nprint x\nresult 1")
    hist = kc.history(hist_access_type="tail", n=5, output=False, raw=True)
    insp = kc.inspect("print", 5)
    info = kc.kernel_info()
    order = [kc.get_shell_msg(timeout=T) for _ in range(4)]
    assert [m["parent_header"]["msg_id"] for m in order] == [cell, hist, insp, info]
    assert [h[2] for h in order[1]["content"]["history"]] == ["sleep 300\nprint x\nresult 1"], \
        "history sent after the cell sees the cell"
    assert order[2]["content"]["found"] is True


def test_an_engine_panic_fails_only_that_cell(mock_kernel):
    km, kc = mock_kernel
    res = execute(kc, "print before\npanic the engine broke", timeout=T)
    assert res.status == "error", res.describe()
    assert res.content["ename"] == "KernelError"
    assert "the engine broke" in res.content["evalue"]
    assert "still running" in res.content["evalue"]
    assert len(res.errors()) == 1
    assert res.stream() == "before\n"
    after = execute(kc, "result fine", timeout=T)
    assert after.status == "ok" and after.result_text() == "fine"
    assert after.content["execution_count"] == 2


@pytest.mark.parametrize("msg_type", ["complete_request", "inspect_request"])
def test_complete_and_inspect_panics_fail_only_that_request(mock_kernel, msg_type):
    km, kc = mock_kernel
    msg_id, rep, msgs = roundtrip(kc, msg_type, {"code": "panic!()", "cursor_pos": 3, "detail_level": 0})
    assert rep["msg_type"] == msg_type.replace("_request", "_reply")
    assert rep["content"]["status"] == "error"
    assert rep["content"]["ename"] == "KernelError"
    assert_framed(msgs, msg_id)
    _, rep, _ = roundtrip(kc, "complete_request", {"code": "pri", "cursor_pos": 3})
    assert rep["content"]["matches"] == ["print"]
    assert execute(kc, "result ok", timeout=T).result_text() == "ok"


def test_an_engine_that_cannot_start():
    """THREADBOOK_MOCK_START_ERROR makes the mock engine fail to start, as a
    missing toolchain would: the protocol keeps working and cells say why."""
    env = dict(os.environ, THREADBOOK_MOCK_START_ERROR="rustc was not found on PATH")
    km, kc = start_kernel(MOCK_KERNEL_NAME, ready_timeout=30, env=env)
    try:
        _, rep, _ = roundtrip(kc, "kernel_info_request", {})
        assert rep["content"]["status"] == "ok"
        res = execute(kc, "print x", timeout=T)
        assert res.status == "error"
        assert res.content["ename"] == "EngineUnavailable"
        assert "rustc was not found on PATH" in res.content["evalue"]
        assert [e["ename"] for e in res.errors()] == ["EngineUnavailable"]
        _, rep, _ = roundtrip(kc, "complete_request", {"code": "pri", "cursor_pos": 3})
        assert rep["content"]["status"] == "ok" and rep["content"]["matches"] == []
        _, rep, _ = roundtrip(kc, "is_complete_request", {"code": "fn f() {"})
        assert rep["content"]["status"] == "incomplete"
        assert _history(kc, hist_access_type="tail", n=5)[0][2] == "print x"
        rep = wait_reply(kc, send_interrupt(kc), T, channel="control")
        assert rep["content"]["status"] == "ok"
        assert km.is_alive()
    finally:
        stop_kernel(km, kc)

