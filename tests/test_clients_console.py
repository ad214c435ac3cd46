"""`jupyter console --kernel threadbook` in a terminal (tmux), typed into as a
learner types: a result, a print, Tab completion and a clean exit. Each
step's screen is kept in build/test-artifacts/console/.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

from clients.servers import ARTIFACTS, VENV_BIN, alive, artifacts, end_processes, kernel_files, pids_mentioning, state, wait_until
from conftest import COMPILE_TIMEOUT, RUST_KERNEL_NAME


class Terminal:
    """A tmux session of the test's own (its own server socket)."""

    def __init__(self, folder: Path):
        self.folder = folder
        self.tmp = Path(tempfile.mkdtemp(prefix="tb-tmux-"))
        self.sock = str(self.tmp / "sock")
        self.shots = 0

    def tmux(self, *args: str) -> str:
        return subprocess.run(["tmux", "-S", self.sock, *args], capture_output=True, text=True,
                              check=True, timeout=30).stdout

    def start(self, command: str, env: dict[str, str]) -> None:
        env_args = [a for k, v in env.items() for a in ("-e", f"{k}={v}")]
        self.tmux("new-session", "-d", "-s", "t", "-x", "150", "-y", "45", *env_args, command)
        self.tmux("set-option", "-t", "t", "remain-on-exit", "on")

    def type(self, text: str, enter: bool = True) -> None:
        # As bytes, so that tmux reads no key names or `;` in the text.
        self.tmux("send-keys", "-t", "t", "-H", *[f"{b:02x}" for b in text.encode()])
        if enter:
            self.keys("Enter")

    def prompt_number(self) -> int:
        """The number of the last `In [n]:` prompt on the screen."""
        return int(re.findall(r"In \[(\d+)\]: ", self.screen())[-1])

    def run(self, code: str) -> int:
        """Types a cell and waits for the next prompt; returns the cell's number."""
        n = self.prompt_number()
        self.type(code)
        self.wait_for(rf"In \[{n + 1}\]: ")
        return n

    def keys(self, *names: str) -> None:
        self.tmux("send-keys", "-t", "t", *names)

    def screen(self) -> str:
        return self.tmux("capture-pane", "-p", "-J", "-S", "-500", "-t", "t")

    def wait_for(self, pattern: str, timeout: float = COMPILE_TIMEOUT) -> re.Match:
        return wait_until(lambda: re.search(pattern, self.screen()), timeout,
                          f"{pattern!r} on the console's screen")

    def shot(self, name: str) -> str:
        self.shots += 1
        text = self.screen()
        (self.folder / f"{self.shots:02d}-{name}.txt").write_text(text)
        return text

    def pane(self, fmt: str) -> str:
        return self.tmux("display-message", "-p", "-t", "t", fmt).strip()

    def close(self) -> None:
        subprocess.run(["tmux", "-S", self.sock, "kill-server"], capture_output=True, timeout=30)
        shutil.rmtree(self.tmp, ignore_errors=True)


@pytest.fixture(scope="module")
def console():
    folder = artifacts("console")
    runtime = folder / "runtime"
    runtime.mkdir()
    term = Terminal(folder)
    term.start(f"{VENV_BIN / 'jupyter'} console --kernel {RUST_KERNEL_NAME}",
               {"JUPYTER_RUNTIME_DIR": str(runtime)})
    try:
        term.wait_for(r"In \[1\]: ", timeout=60)
        term.shot("started")
        yield term, runtime
    finally:
        term.shot("last")
        term.close()
        end_processes(pids_mentioning(kernel_files(runtime)))


def test_console_shows_a_result_and_a_print(console):
    term, _ = console
    n = term.run("40 + 2")
    term.wait_for(rf"Out\[{n}\]: 42\b")
    term.run('println!("hello from the console");')
    screen = term.shot("result-and-print")
    assert re.search(r"^hello from the console$", screen, re.M), screen


def test_console_tab_completion_inserts_the_name(console):
    term, _ = console
    term.run("let mut a: u64 = 1;")
    n = term.prompt_number()
    typed = "let old: u64 = std::mem::repl"
    try:
        term.type(typed, enter=False)
        time.sleep(0.3)

        def completed():
            # The kernel answers within a second; while rust-analyzer still analyses std it
            # has nothing after `::`, and a learner presses Tab again.
            term.keys("Tab")
            time.sleep(1.5)
            m = re.search(rf"In \[{n}\]: ({re.escape(typed)}\S*)", term.screen())
            return m and m.group(1) != typed and m.group(1)

        line = wait_until(completed, 60, "the completion inserted into the console's input line")
        screen = term.shot("completed")
        assert "Unhandled exception" not in screen and "Traceback" not in screen, screen
        assert line == "let old: u64 = std::mem::replace", screen
        term.type("(&mut a, 5);")
        term.wait_for(rf"In \[{n + 1}\]: ")
        term.run("(old, a)")
        term.wait_for(rf"Out\[{n + 1}\]: \(1, 5\)")
        term.shot("completion-used")
    finally:
        # Leave an empty prompt for the next test, whatever happened.
        term.keys("C-c")
        wait_until(lambda: re.fullmatch(r"In \[\d+\]: ", term.screen().rstrip().splitlines()[-1] + " "),
                   30, "an empty prompt")


def test_console_exits_cleanly(console):
    term, runtime = console
    kernel = pids_mentioning(kernel_files(runtime))
    assert kernel, "the console's kernel (its connection file is in the console's runtime folder)"
    console_pid = int(term.pane("#{pane_pid}"))
    term.keys("C-d")
    term.wait_for(r"Do you really want to exit \(\[y\]/n\)\?", timeout=10)
    term.type("y")
    server_pid = int(term.pane("#{pid}"))
    zombie_since: list[float] = []

    # tmux marks the pane dead a moment before it has the exit status (or the signal
    # that ended it: then the status stays empty).
    def ended():
        dead, status, sig = term.pane("#{pane_dead}|#{pane_dead_status}|#{pane_dead_signal}").split("|")
        if not (status or sig) and state(console_pid) == "Z":
            zombie_since.append(time.monotonic())
            if zombie_since[-1] - zombie_since[0] > 2:
                # The console has exited but is not reaped: tmux before 3.5 now and then
                # misses a SIGCHLD (Debian 12 ships 3.3a). One more makes it look again.
                os.kill(server_pid, signal.SIGCHLD)
        return dead == "1" and (status or sig) and (status, sig)

    try:
        status, sig = wait_until(ended, 30, "the console exiting")
    except TimeoutError as e:
        # What was still running: the console, its kernel, their children.
        ps = subprocess.run(["ps", "-eo", "pid,ppid,pgid,stat,etime,wchan:20,args", "--forest"],
                            capture_output=True, text=True).stdout
        ps = "\n".join(line for i, line in enumerate(ps.splitlines())
                       if i == 0 or re.search(r"jupyter|threadbook|tmux|python", line))
        (ARTIFACTS / "console" / "not-exited-ps.txt").write_text(ps)
        raise AssertionError(f"{e}\n--- screen:\n{term.shot('not-exited')}\n--- processes:\n{ps}") from None
    screen = term.shot("exited")
    assert (status, sig) == ("0", ""), f"exit status {status!r}, signal {sig!r}:\n{screen}"
    assert "Traceback" not in screen, screen
    wait_until(lambda: not any(alive(p) for p in kernel), 15, "the console's kernel stopping with it")
