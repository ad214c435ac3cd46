"""Shared fixtures and helpers for threadbook's end-to-end tests.

Kernels are started through jupyter_client's KernelManager, exactly as
Jupyter frontends start them:

* ``rust_kernel``: the installed ``threadbook`` kernelspec (the real Rust
  engine), one per test module, warmed up with a ``1 + 1`` cell;
* ``mock_kernel``: a fresh kernel per test running the scripted mock engine
  (``--mock``), from a temporary kernelspec ``threadbook-mock`` that
  JUPYTER_PATH points at for the whole test session.

``execute`` sends one execute_request and collects every iopub message whose
parent is that request, from ``busy`` up to the matching ``idle``; messages
with other parents seen meanwhile are kept apart (``Executed.others``).
"""

from __future__ import annotations

import atexit
import json
import os
import queue
import re
import shutil
import signal
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest
from jupyter_client.blocking.client import BlockingKernelClient
from jupyter_client.kernelspec import KernelSpecManager
from jupyter_client.manager import KernelManager

REPO = Path(__file__).resolve().parents[1]
RUST_KERNEL_NAME = "threadbook"
MOCK_KERNEL_NAME = "threadbook-mock"

# Compiles (first cell, :dep, variables) can be slow on a busy 2-core machine.
COMPILE_TIMEOUT = 120
# Mock cells and cheap requests.
FAST_TIMEOUT = 10


def _installed_spec() -> dict[str, Any]:
    spec = KernelSpecManager().get_kernel_spec(RUST_KERNEL_NAME)
    return {"argv": list(spec.argv), "env": dict(spec.env)}


def kernel_executable() -> str:
    """The threadbook binary: the installed kernelspec's, else the release build."""
    try:
        exe = _installed_spec()["argv"][0]
    except Exception:
        exe = str(REPO / "target" / "release" / "threadbook")
    return exe


# --- the mock kernelspec, visible to every KernelManager in this session -----

_MOCK_ROOT = Path(tempfile.mkdtemp(prefix="threadbook-tests-jupyter-"))


def _write_mock_kernelspec() -> Path:
    kdir = _MOCK_ROOT / "kernels" / MOCK_KERNEL_NAME
    kdir.mkdir(parents=True, exist_ok=True)
    spec = {
        "argv": [kernel_executable(), "kernel", "--mock", "--connection-file", "{connection_file}"],
        "display_name": "threadbook (mock engine)",
        "language": "rust",
        "interrupt_mode": "message",
        "env": {},
        "metadata": {"debugger": False},
    }
    (kdir / "kernel.json").write_text(json.dumps(spec, indent=2))
    return kdir


_write_mock_kernelspec()
_old_path = os.environ.get("JUPYTER_PATH")
os.environ["JUPYTER_PATH"] = os.pathsep.join(
    [str(_MOCK_ROOT)] + ([_old_path] if _old_path else [])
)


atexit.register(shutil.rmtree, _MOCK_ROOT, ignore_errors=True)


# --- starting kernels -----------------------------------------------------------


def start_kernel(
    kernel_name: str, ready_timeout: float = 60, env: dict[str, str] | None = None, **km_kwargs: Any
) -> tuple[KernelManager, BlockingKernelClient]:
    """A started kernel and a ready client; `env` replaces the kernel's environment."""
    km = KernelManager(kernel_name=kernel_name, **km_kwargs)
    km.start_kernel(**({"env": env} if env is not None else {}))
    kc = km.client()
    kc.start_channels()
    try:
        kc.wait_for_ready(timeout=ready_timeout)
    except Exception:
        kc.stop_channels()
        km.shutdown_kernel(now=True)
        raise
    drain(kc)
    return km, kc


def stop_kernel(km: KernelManager, kc: BlockingKernelClient) -> None:
    try:
        kc.stop_channels()
    finally:
        if km.has_kernel:
            km.shutdown_kernel(now=False)


def kernel_pid(km: KernelManager) -> int:
    return km.provisioner.process.pid  # type: ignore[union-attr]


def drain(kc: BlockingKernelClient, wait: float = 0.05) -> list[dict[str, Any]]:
    """Reads everything already waiting on iopub and shell."""
    got = []
    for get in (kc.get_iopub_msg, kc.get_shell_msg):
        while True:
            try:
                got.append(get(timeout=wait))
            except queue.Empty:
                break
    return got


@pytest.fixture
def mock_kernel() -> Iterator[tuple[KernelManager, BlockingKernelClient]]:
    """A fresh kernel running the mock engine, for one test."""
    km, kc = start_kernel(MOCK_KERNEL_NAME, ready_timeout=30)
    yield km, kc
    stop_kernel(km, kc)


@pytest.fixture
def mock_kernel_factory() -> Iterator[Callable[[], tuple[KernelManager, BlockingKernelClient]]]:
    started: list[tuple[KernelManager, BlockingKernelClient]] = []

    def make() -> tuple[KernelManager, BlockingKernelClient]:
        pair = start_kernel(MOCK_KERNEL_NAME, ready_timeout=30)
        started.append(pair)
        return pair

    yield make
    for km, kc in started:
        stop_kernel(km, kc)


@pytest.fixture(scope="module")
def rust_kernel() -> Iterator[tuple[KernelManager, BlockingKernelClient]]:
    """The real Rust engine, shared by one test module, compiler warmed up."""
    km, kc = start_kernel(RUST_KERNEL_NAME, ready_timeout=COMPILE_TIMEOUT)
    res = execute(kc, "1 + 1", timeout=COMPILE_TIMEOUT)
    assert res.status == "ok", res.describe()
    assert res.result_text() == "2", res.describe()
    yield km, kc
    stop_kernel(km, kc)


# --- running cells --------------------------------------------------------------


@dataclass
class Executed:
    """One execute request: its reply and the iopub messages it caused."""

    msg_id: str
    reply: dict[str, Any]
    msgs: list[dict[str, Any]]
    others: list[dict[str, Any]] = field(default_factory=list)
    seconds: float = 0.0
    input_requests: list[dict[str, Any]] = field(default_factory=list)

    @property
    def content(self) -> dict[str, Any]:
        return self.reply["content"]

    @property
    def status(self) -> str:
        return self.content["status"]

    def of_type(self, *types: str) -> list[dict[str, Any]]:
        return [m for m in self.msgs if m["msg_type"] in types]

    @property
    def outputs(self) -> list[dict[str, Any]]:
        """Output messages, in order (no status / execute_input)."""
        return [m for m in self.msgs if m["msg_type"] not in ("status", "execute_input")]

    def stream(self, name: str = "stdout") -> str:
        return "".join(
            m["content"]["text"] for m in self.of_type("stream") if m["content"]["name"] == name
        )

    def errors(self) -> list[dict[str, Any]]:
        return [m["content"] for m in self.of_type("error")]

    def result_text(self) -> str | None:
        res = self.of_type("execute_result")
        return res[-1]["content"]["data"].get("text/plain") if res else None

    def describe(self) -> str:
        lines = [f"reply: {json.dumps(self.content)[:2000]}"]
        for m in self.msgs:
            lines.append(f"  {m['msg_type']}: {json.dumps(m['content'])[:500]}")
        if self.others:
            lines.append(f"  ({len(self.others)} messages with other parents)")
        return "\n".join(lines)


def wait_reply(
    kc: BlockingKernelClient, msg_id: str, timeout: float, channel: str = "shell"
) -> dict[str, Any]:
    """The reply to msg_id on shell or control; other replies are skipped."""
    get = kc.get_shell_msg if channel == "shell" else kc.get_control_msg
    deadline = time.monotonic() + timeout
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError(f"no {channel} reply to {msg_id} within {timeout} s")
        try:
            msg = get(timeout=left)
        except queue.Empty:
            continue
        if msg["parent_header"].get("msg_id") == msg_id:
            return msg


def collect_iopub(
    kc: BlockingKernelClient, msg_id: str, timeout: float
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """iopub messages whose parent is msg_id, up to and including its idle;
    plus the messages with other parents that arrived meanwhile."""
    deadline = time.monotonic() + timeout
    mine: list[dict[str, Any]] = []
    others: list[dict[str, Any]] = []
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            types = [m["msg_type"] for m in mine]
            raise TimeoutError(f"no idle for {msg_id} within {timeout} s; got {types}")
        try:
            msg = kc.get_iopub_msg(timeout=left)
        except queue.Empty:
            continue
        if msg["parent_header"].get("msg_id") != msg_id:
            others.append(msg)
            continue
        mine.append(msg)
        if msg["msg_type"] == "status" and msg["content"]["execution_state"] == "idle":
            return mine, others


def collect_many(
    kc: BlockingKernelClient, msg_ids: list[str], timeout: float
) -> dict[str, list[dict[str, Any]]]:
    """iopub messages of several requests at once, each up to its idle."""
    deadline = time.monotonic() + timeout
    got: dict[str, list[dict[str, Any]]] = {mid: [] for mid in msg_ids}
    done: set[str] = set()
    while len(done) < len(msg_ids):
        left = deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError(f"no idle for {set(msg_ids) - done} within {timeout} s")
        try:
            msg = kc.get_iopub_msg(timeout=left)
        except queue.Empty:
            continue
        mid = msg["parent_header"].get("msg_id")
        if mid in got:
            got[mid].append(msg)
            if msg["msg_type"] == "status" and msg["content"]["execution_state"] == "idle":
                done.add(mid)
    return got


def execute(
    kc: BlockingKernelClient,
    code: str,
    timeout: float = COMPILE_TIMEOUT,
    inputs: list[str] | None = None,
    **kwargs: Any,
) -> Executed:
    """Runs one cell; returns its reply and all iopub messages up to its idle.

    ``inputs``: answers for input_requests, in order (allow_stdin is then
    True); without it allow_stdin is False unless passed explicitly.
    stop_on_error defaults to False so a failing cell does not abort others.
    """
    kwargs.setdefault("stop_on_error", False)
    kwargs.setdefault("allow_stdin", inputs is not None)
    answers = list(inputs or [])
    t0 = time.monotonic()
    msg_id = kc.execute(code, **kwargs)
    input_requests: list[dict[str, Any]] = []
    deadline = t0 + timeout
    reply = None
    while reply is None:
        if time.monotonic() > deadline:
            raise TimeoutError(f"no execute_reply to {code!r} within {timeout} s")
        if kwargs["allow_stdin"]:
            try:
                req = kc.get_stdin_msg(timeout=0.02)
            except queue.Empty:
                pass
            else:
                input_requests.append(req)
                if answers:
                    kc.input(answers.pop(0))
        try:
            msg = kc.get_shell_msg(timeout=0.05 if kwargs["allow_stdin"] else 0.5)
        except queue.Empty:
            continue
        if msg["parent_header"].get("msg_id") == msg_id:
            reply = msg
    msgs, others = collect_iopub(kc, msg_id, timeout=max(5.0, deadline - time.monotonic()))
    res = Executed(msg_id, reply, msgs, others, time.monotonic() - t0)
    res.input_requests = input_requests
    return res


def request(
    kc: BlockingKernelClient, msg_type: str, content: dict[str, Any], channel: str = "shell"
) -> str:
    """Sends an arbitrary request; returns its msg_id."""
    msg = kc.session.msg(msg_type, content)
    getattr(kc, f"{channel}_channel").send(msg)
    return msg["header"]["msg_id"]


def session_with_cache(cache_root: Path, cells: list[str]) -> list[Executed]:
    """Runs `cells` in a new kernel whose caches and build folders are under
    `cache_root` (THREADBOOK_CACHE_DIR); returns each cell's result."""
    env = dict(os.environ, THREADBOOK_CACHE_DIR=str(cache_root))
    km, kc = start_kernel(RUST_KERNEL_NAME, ready_timeout=COMPILE_TIMEOUT, env=env)
    try:
        return [execute(kc, code, timeout=COMPILE_TIMEOUT) for code in cells]
    finally:
        stop_kernel(km, kc)


def send_interrupt(kc: BlockingKernelClient) -> str:
    """interrupt_request on control."""
    return request(kc, "interrupt_request", {}, channel="control")


def sigint(km: KernelManager) -> None:
    os.kill(kernel_pid(km), signal.SIGINT)


ANSI = re.compile(r"\x1b\[[0-9;]*m")


def plain(text: str) -> str:
    """Text without ANSI colours (tracebacks are coloured)."""
    return ANSI.sub("", text)


def run_ok(kc: BlockingKernelClient, code: str, **kw: Any) -> Executed:
    """Runs a cell that must succeed."""
    res = execute(kc, code, **kw)
    assert res.status == "ok", res.describe()
    return res
