"""Servers the client tests start, and a client for their kernels.

* ``Server``: a process (JupyterLab, a kernel gateway, JupyterHub) started in
  its own process group on 127.0.0.1, its output in the artefacts folder and
  its kernels' connection files in a runtime folder of its own, so that
  ``stop`` can find and end any kernel the server left behind (by pid).
* ``KernelSocket``: the Jupyter kernels WebSocket API
  (``/api/kernels/<id>/channels``) as JupyterLab speaks it: JSON messages
  with a ``channel`` field; cells come back as conftest's ``Executed``.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any, Callable, TypeVar

import requests
import websocket

from conftest import Executed

REPO = Path(__file__).resolve().parents[2]
NOTEBOOKS = REPO / "notebooks"
VENV_BIN = Path(sys.executable).parent
ARTIFACTS = REPO / "build" / "test-artifacts"

T = TypeVar("T")


def artifacts(name: str) -> Path:
    """An empty folder for one test module's artefacts (kept after the run)."""
    d = ARTIFACTS / name
    shutil.rmtree(d, ignore_errors=True)
    d.mkdir(parents=True)
    return d


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until(check: Callable[[], T | None], timeout: float, what: str, every: float = 0.2) -> T:
    """Polls `check` until it returns something truthy; fails after `timeout` s."""
    deadline = time.monotonic() + timeout
    last_error: Exception | None = None
    while time.monotonic() < deadline:
        try:
            got = check()
        except Exception as e:  # the server is not up yet, a connection refused…
            last_error = e
        else:
            if got:
                return got
            last_error = None
        time.sleep(every)
    raise TimeoutError(f"{what}: not within {timeout} s" + (f" (last error: {last_error})" if last_error else ""))


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def _stat(pid: int) -> list[str] | None:
    """State and the fields after it in /proc/<pid>/stat."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None


def _ppid(pid: int) -> int | None:
    stat = _stat(pid)
    return int(stat[1]) if stat else None


def state(pid: int) -> str | None:
    """The process's state letter (Z: exited, not yet reaped); None once it is gone."""
    stat = _stat(pid)
    return stat[0] if stat else None


def alive(pid: int) -> bool:
    """The process exists and is not a zombie."""
    return state(pid) not in (None, "Z")


def pids_mentioning(text: str, descendants: bool = True) -> list[int]:
    """Processes whose command line contains `text`, and their descendants."""
    pids = [int(p) for p in os.listdir("/proc") if p.isdigit()]
    found = {p for p in pids if p != os.getpid() and alive(p) and text in _cmdline(p)}
    grew = descendants
    while grew:
        kids = {p for p in pids if p not in found and _ppid(p) in found}
        grew = bool(kids)
        found |= kids
    return sorted(found)


def kernel_files(runtime_dir: Path) -> str:
    """What the command line of a kernel whose connection file is in runtime_dir contains."""
    return f"{runtime_dir}/kernel-"


def end_processes(pids: list[int], grace: float = 5.0) -> None:
    """SIGTERM, then SIGKILL whatever is still there after `grace` s."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        left = [p for p in pids if alive(p)]
        if not left:
            return
        for pid in left:
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                pass
        deadline = time.monotonic() + grace
        while time.monotonic() < deadline and any(alive(p) for p in left):
            time.sleep(0.1)


class Server:
    """A server process of the test's own, in its own process group."""

    def __init__(self, name: str, argv: list[str], folder: Path, env: dict[str, str] | None = None,
                 cwd: Path | None = None):
        self.name = name
        self.argv = argv
        self.folder = folder
        self.runtime_dir = folder / f"{name}-runtime"
        self.log_path = folder / f"{name}.log"
        self.env = dict(os.environ)
        self.env["JUPYTER_RUNTIME_DIR"] = str(self.runtime_dir)
        self.env.update(env or {})
        self.cwd = cwd
        self.proc: subprocess.Popen | None = None

    def start(self) -> "Server":
        self.runtime_dir.mkdir(parents=True, exist_ok=True)
        log = open(self.log_path, "w")
        self.proc = subprocess.Popen(
            self.argv, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
            env=self.env, cwd=self.cwd, start_new_session=True,
        )
        log.close()
        return self

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def check_running(self) -> None:
        assert self.proc is not None and self.proc.poll() is None, (
            f"{self.name} exited ({self.proc and self.proc.returncode}); its log:\n{self.log()[-4000:]}"
        )

    def wait_http(self, url: str, headers: dict[str, str] | None = None, timeout: float = 60) -> None:
        """Waits until `url` answers 200."""
        def up():
            self.check_running()
            return requests.get(url, headers=headers, timeout=5).status_code == 200
        wait_until(up, timeout, f"{self.name} answering {url}")

    def kernel_pids(self) -> list[int]:
        """Processes (and their children) that name this server's runtime folder:
        kernels by their connection file, servers it spawned told to use it."""
        return pids_mentioning(str(self.runtime_dir))

    def stop(self, grace: float = 15.0) -> list[int]:
        """Stops the server's process group; ends the kernels (and servers) it
        left running. Returns the pids that had to be ended here."""
        if self.proc is not None and self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            try:
                self.proc.wait(grace)
            except subprocess.TimeoutExpired:
                try:
                    os.killpg(self.proc.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                self.proc.wait(10)
        leftovers = self.kernel_pids()
        end_processes(leftovers)
        return leftovers


# --- the kernels WebSocket API ---------------------------------------------------------


class KernelSocket:
    """A client of one kernel through a Jupyter server's WebSocket."""

    def __init__(self, url: str, headers: dict[str, str] | None = None):
        self.session = uuid.uuid4().hex
        sep = "&" if "?" in url else "?"
        self.ws = websocket.create_connection(
            f"{url}{sep}session_id={self.session}",
            header=[f"{k}: {v}" for k, v in (headers or {}).items()],
            timeout=1,
        )
        self.others: list[dict[str, Any]] = []
        self.backlog: list[dict[str, Any]] = []

    def close(self) -> None:
        self.ws.close()

    def send(self, msg_type: str, content: dict[str, Any], channel: str = "shell",
             parent: dict[str, Any] | None = None) -> str:
        msg_id = uuid.uuid4().hex
        self.ws.send(json.dumps({
            "header": {"msg_id": msg_id, "msg_type": msg_type, "session": self.session,
                       "username": "test", "version": "5.3", "date": ""},
            "parent_header": parent or {},
            "metadata": {},
            "content": content,
            "channel": channel,
            "buffers": [],
        }))
        return msg_id

    def _recv(self, deadline: float) -> dict[str, Any] | None:
        if self.backlog:
            return self.backlog.pop(0)
        try:
            return json.loads(self.ws.recv())
        except websocket.WebSocketTimeoutException:
            if time.monotonic() > deadline:
                raise TimeoutError("no message from the kernel in time") from None
            return None

    def wait_for(self, msg_id: str, pred: Callable[[dict[str, Any]], bool], timeout: float) -> dict[str, Any]:
        """Reads until a message with parent msg_id satisfies `pred`; the
        messages read stay for `collect`."""
        deadline = time.monotonic() + timeout
        seen: list[dict[str, Any]] = []
        try:
            while True:
                if time.monotonic() > deadline:
                    raise TimeoutError(f"no such message for {msg_id} within {timeout} s; got "
                                       f"{[m['msg_type'] for m in seen]}")
                msg = self._recv(deadline)
                if msg is None:
                    continue
                seen.append(msg)
                if msg.get("parent_header", {}).get("msg_id") == msg_id and pred(msg):
                    return msg
        finally:
            self.backlog[:0] = seen

    def collect(self, msg_id: str, timeout: float, answers: list[str] | None = None) -> tuple[
            dict[str, Any], list[dict[str, Any]], list[dict[str, Any]]]:
        """The reply to msg_id and its iopub messages up to its idle; input
        requests on the way are answered from `answers`, in order."""
        deadline = time.monotonic() + timeout
        answers = list(answers or [])
        reply = None
        iopub: list[dict[str, Any]] = []
        inputs: list[dict[str, Any]] = []
        idle = False
        while reply is None or not idle:
            if time.monotonic() > deadline:
                types = [m["msg_type"] for m in iopub]
                raise TimeoutError(f"no reply and idle for {msg_id} within {timeout} s; got {types}")
            msg = self._recv(deadline)
            if msg is None:
                continue
            if msg.get("parent_header", {}).get("msg_id") != msg_id:
                self.others.append(msg)
                continue
            channel = msg.get("channel")
            if channel == "iopub":
                iopub.append(msg)
                if msg["msg_type"] == "status" and msg["content"]["execution_state"] == "idle":
                    idle = True
            elif channel == "stdin" and msg["msg_type"] == "input_request":
                inputs.append(msg)
                if answers:
                    self.send("input_reply", {"value": answers.pop(0)}, channel="stdin", parent=msg["header"])
            elif channel in ("shell", "control"):
                reply = msg
        return reply, iopub, inputs

    def start(self, code: str, stop_on_error: bool = True, allow_stdin: bool = False) -> str:
        """Sends an execute_request; returns its msg_id."""
        return self.send("execute_request", {
            "code": code, "silent": False, "store_history": True, "user_expressions": {},
            "allow_stdin": allow_stdin, "stop_on_error": stop_on_error,
        })

    def finish(self, msg_id: str, timeout: float = 300, answers: list[str] | None = None) -> Executed:
        reply, iopub, inputs = self.collect(msg_id, timeout, answers)
        return Executed(msg_id, reply, iopub, input_requests=inputs)

    def execute(self, code: str, timeout: float = 300, stop_on_error: bool = True,
                answers: list[str] | None = None) -> Executed:
        msg_id = self.start(code, stop_on_error, allow_stdin=answers is not None)
        return self.finish(msg_id, timeout, answers)

    def request(self, msg_type: str, content: dict[str, Any], timeout: float = 60,
                channel: str = "shell") -> dict[str, Any]:
        """Any other request; returns the reply's content."""
        reply, _, _ = self.collect(self.send(msg_type, content, channel), timeout)
        return reply["content"]
