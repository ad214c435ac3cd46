"""Keeping a learner's work through what a concurrency lesson does to a session.

* A lost evaluation process — an interrupt that has to stop it (spinning,
  deadlocked, blocked on a channel, sleeping), or a crash (abort, segfault,
  stack overflow, exit) — costs no variables: the kernel runs the cells they
  came from again, quietly, and says so. A caught panic loses nothing.
* No process the kernel started outlives it: not when its launcher dies, not
  when it is killed, not on shutdown. Checked in the process table.
* An engine that panics fails one request; the kernel goes on.
* Several kernels at once each get their own build folder and all finish.

All through jupyter_client against the installed kernelspec.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from conftest import (
    plain,
    run_ok,
    COMPILE_TIMEOUT,
    REPO,
    RUST_KERNEL_NAME,
    collect_iopub,
    execute,
    kernel_pid,
    request,
    send_interrupt,
    start_kernel,
    stop_kernel,
    wait_reply,
)


# The learner's work: an integer, a Vec<String>, a HashMap and a struct of
# their own, one cell that only prints, and one that changes a `mut` Vec.
STATE = [
    "let kept: u64 = 41;",
    'let mut names: Vec<String> = vec!["ada".to_string()];\nnames.push("grace".to_string());',
    "use std::collections::HashMap;\nlet mut table: HashMap<String, u32> = HashMap::new();\ntable.insert(\"x\".to_string(), 7);",
    "#[derive(Debug, Clone, PartialEq)]\npub struct Point { pub x: i32, pub y: i32 }\nlet point = Point { x: 3, y: -4 };",
    'println!("only prints {kept}");',
    'names.push("linus".to_string());',
]
STATE_VARS = ["kept", "names", "point", "table"]
CHECK = 'println!("{} {:?} {:?} {:?}", kept + 1, names, table.get("x"), point);'
EXPECTED = '42 ["ada", "grace", "linus"] Some(7) Point { x: 3, y: -4 }\n'




def assert_state_kept(kc):
    res = run_ok(kc, CHECK)
    assert res.stream() == EXPECTED, res.describe()


@pytest.fixture(scope="module")
def session():
    """A kernel holding the learner's state; the counts of the state cells."""
    km, kc = start_kernel(RUST_KERNEL_NAME, ready_timeout=COMPILE_TIMEOUT)
    counts = [run_ok(kc, code).content["execution_count"] for code in STATE]
    assert_state_kept(kc)
    yield km, kc, counts
    stop_kernel(km, kc)


def start_running(kc, code: str, marker: str = "RUNNING") -> str:
    """Sends a cell that prints `marker` once it really runs; waits for that."""
    msg_id = kc.execute(code, stop_on_error=False, allow_stdin=False)
    deadline = time.monotonic() + COMPILE_TIMEOUT
    while time.monotonic() < deadline:
        msg = kc.get_iopub_msg(timeout=COMPILE_TIMEOUT)
        if (msg["parent_header"].get("msg_id") == msg_id and msg["msg_type"] == "stream"
                and marker in msg["content"]["text"]):
            return msg_id
        if msg["parent_header"].get("msg_id") == msg_id and msg["msg_type"] == "error":
            raise AssertionError(f"the cell failed before it ran: {msg['content']['evalue']}")
    raise TimeoutError("the cell never started")


def assert_restored(content: dict, counts: list[int]):
    """The error names what happened, what came back and how."""
    evalue = content["evalue"]
    tb = plain("\n".join(content["traceback"]))
    assert "variables restored: " + ", ".join(STATE_VARS) in evalue, evalue
    assert "Restored " + ", ".join(STATE_VARS) in tb, tb
    # The cells that bind or change the variables ran again; the printing one did not.
    needed = [counts[i] for i in (0, 1, 2, 3, 5)]
    assert "by running cells " + ", ".join(f"[{c}]" for c in needed) + " again" in tb, tb
    assert f"[{counts[4]}]" not in tb.split("by running cells", 1)[1].split("again", 1)[0]
    assert re.search(r"Restored .* in \d+\.\d\d s", tb), tb
    assert "// no-replay" in tb, "the learner is told how to opt out"


INTERRUPTED = [
    pytest.param('println!("RUNNING");\nloop { std::hint::spin_loop(); }', id="spinning"),
    pytest.param(
        "let lock = std::sync::Mutex::new(0);\n"
        "{\n    let _first = lock.lock().unwrap();\n    println!(\"RUNNING\");\n"
        "    let _second = lock.lock().unwrap(); // the same Mutex again: a deadlock\n}",
        id="deadlocked",
    ),
    pytest.param(
        "let (tx, rx) = std::sync::mpsc::channel::<u32>();\nprintln!(\"RUNNING\");\n"
        "let got = rx.recv(); // tx is alive: waits forever",
        id="channel-blocked",
    ),
    pytest.param('println!("RUNNING");\nstd::thread::sleep(std::time::Duration::from_secs(600));', id="sleeping"),
]


@pytest.mark.parametrize("code", INTERRUPTED)
def test_interrupt_keeps_the_variables(session, code):
    km, kc, counts = session
    cell = start_running(kc, code)
    assert wait_reply(kc, send_interrupt(kc), 10, channel="control")["content"]["status"] == "ok"
    reply = wait_reply(kc, cell, COMPILE_TIMEOUT)["content"]
    msgs, _ = collect_iopub(kc, cell, 30)
    errors = [m["content"] for m in msgs if m["msg_type"] == "error"]
    assert reply["status"] == "error" and reply["ename"] == "Interrupted", reply
    assert len(errors) == 1 and errors[0]["evalue"] == reply["evalue"]
    assert "had to be stopped" in reply["evalue"], reply["evalue"]
    assert_restored(reply, counts)
    assert_state_kept(kc)
    assert run_ok(kc, "6 * 7").result_text() == "42"


CRASHES = [
    pytest.param("std::process::abort();", "SIGABRT", id="abort"),
    pytest.param("unsafe { std::ptr::read_volatile(8 as *const u8) };", "SIGSEGV", id="segfault"),
    pytest.param("fn recurse(n: u64) -> u64 { recurse(n + 1) + 1 }\nrecurse(0);", "overflowed its stack", id="stack-overflow"),
    pytest.param("std::process::exit(3);", "exit status: 3", id="exit"),
]


@pytest.mark.parametrize("code,cause", CRASHES)
def test_crash_keeps_the_variables(session, code, cause):
    km, kc, counts = session
    res = execute(kc, code)
    assert res.status == "error" and res.content["ename"] == "EvaluationProcessDied", res.describe()
    text = res.content["evalue"] + "\n" + plain("\n".join(res.content["traceback"]))
    assert cause in text, text
    assert len(res.errors()) == 1
    assert_restored(res.content, counts)
    assert_state_kept(kc)
    assert run_ok(kc, "6 * 7").result_text() == "42"


@pytest.mark.parametrize("code,ok", [
    pytest.param('panic!("boom");', False, id="panic-in-the-cell"),
    pytest.param('std::thread::spawn(|| panic!("in a thread")).join().is_err()', True, id="joined-thread-panics"),
])
def test_a_caught_panic_loses_nothing(session, code, ok):
    km, kc, counts = session
    res = execute(kc, code)
    assert res.status == ("ok" if ok else "error"), res.describe()
    assert "Restored" not in plain(json.dumps(res.content)), "nothing was lost, nothing to restore"
    assert_state_kept(kc)


def test_no_replay_cells_and_replay_off(session):
    km, kc, counts = session
    marked = run_ok(kc, "// no-replay\nlet started: u32 = 1;").content["execution_count"]
    run_ok(kc, "let uses_started: u32 = started + 1;")
    res = execute(kc, "std::process::abort();")
    tb = plain("\n".join(res.content["traceback"]))
    assert f"Not restored: started (cell [{marked}] is marked `// no-replay`)" in tb, tb
    assert f"Not restored: uses_started (cell [{marked}] is marked `// no-replay`)" in tb, tb
    assert_state_kept(kc)
    assert execute(kc, "started").status == "error", "a no-replay cell's variable is gone"
    assert ": off (" in run_ok(kc, ":replay off").stream()
    res = execute(kc, "std::process::abort();")
    assert "variables lost: " in res.content["evalue"] and "kept" in res.content["evalue"], res.content["evalue"]
    assert "Restored" not in plain("\n".join(res.content["traceback"]))
    assert ": on (" in run_ok(kc, ":replay on").stream()
    # Put the state back for any test that follows.
    for code in STATE:
        run_ok(kc, code)


def test_a_slow_cell_is_run_again_only_when_its_variable_is_used():
    km, kc = start_kernel(RUST_KERNEL_NAME, ready_timeout=COMPILE_TIMEOUT)
    try:
        run_ok(kc, "let quick: u64 = 2;")
        slow_cell = run_ok(kc, "let slow: u64 = { std::thread::sleep(std::time::Duration::from_millis(800)); 5 };")
        count = slow_cell.content["execution_count"]
        res = execute(kc, "std::process::abort();")
        tb = plain("\n".join(res.content["traceback"]))
        assert "variables restored: quick; restored when first used: slow" in res.content["evalue"], res.content["evalue"]
        assert f"Restored when a cell first uses them: slow (they need cell [{count}]" in tb, tb
        other = run_ok(kc, "quick + 1")
        assert other.result_text() == "3" and "restored" not in other.stream("stderr")
        used = run_ok(kc, "slow * 10")
        assert used.result_text() == "50", used.describe()
        assert f"restored slow for this cell" in used.stream("stderr") and f"[{count}]" in used.stream("stderr")
        again = run_ok(kc, "slow + quick")
        assert again.result_text() == "7" and again.stream("stderr") == ""
    finally:
        stop_kernel(km, kc)


def test_an_interrupt_while_idle_stops_nothing(session):
    km, kc, counts = session
    pid_before = eval_pid(km)
    assert wait_reply(kc, send_interrupt(kc), 10, channel="control")["content"]["status"] == "ok"
    assert_state_kept(kc)
    assert eval_pid(km) == pid_before, "the evaluation process was not restarted"


# --- the engine panics: one request fails, nothing else ---------------------------------


def test_an_engine_panic_fails_one_request(tmp_path):
    env = dict(os.environ, THREADBOOK_FAULT_INJECTION="engine_panic_here")
    km, kc = start_kernel(RUST_KERNEL_NAME, ready_timeout=COMPILE_TIMEOUT, env=env)
    try:
        run_ok(kc, "let kept: u64 = 41;")
        pid_before = eval_pid(km)
        res = execute(kc, "let x = 1; // engine_panic_here")
        assert res.status == "error" and res.content["ename"] == "KernelError", res.describe()
        assert len(res.errors()) == 1
        # The engine did not keep believing a cell runs: an interrupt now stops nothing.
        assert wait_reply(kc, send_interrupt(kc), 10, channel="control")["content"]["status"] == "ok"
        assert run_ok(kc, "kept + 1").result_text() == "42"
        assert eval_pid(km) == pid_before
        assert km.is_alive()
    finally:
        stop_kernel(km, kc)


# --- processes: nothing outlives the kernel -------------------------------------------


def eval_pid(km) -> int:
    """The evaluation process: the kernel's child running in evcxr's runtime mode."""
    kp = kernel_pid(km)
    for pid in children(kp):
        env = environ(pid)
        if env.get("EVCXR_IS_RUNTIME"):
            return pid
    raise AssertionError("no evaluation process")


def children(pid: int) -> list[int]:
    out = []
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                stat = (d / "stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                out.append(int(d.name))
    return out


def environ(pid: int) -> dict[str, str]:
    try:
        raw = Path(f"/proc/{pid}/environ").read_bytes()
    except OSError:
        return {}
    return dict(e.decode(errors="replace").split("=", 1) for e in raw.split(b"\0") if b"=" in e)


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def marked_by(kernel: int) -> list[int]:
    """Live processes carrying kernel `kernel`'s token (everything it started)."""
    out = []
    for d in Path("/proc").iterdir():
        if d.name.isdigit() and alive(int(d.name)):
            token = environ(int(d.name)).get("THREADBOOK_KERNEL_TOKEN", "")
            if token.startswith(f"{kernel}:"):
                out.append(int(d.name))
    return out


SPAWN_CELL = textwrap.dedent("""\
    use std::process::Command;
    let plain_child = Command::new("sleep").arg("600").spawn().unwrap().id();
    let escaped_child = Command::new("setsid").args(["sleep", "600"]).spawn().unwrap().id();
    println!("SPAWNED {plain_child} {escaped_child}");
""")


def spawn_children(kc) -> list[int]:
    """Has a cell start two processes (one in a session of its own); their pids."""
    res = run_ok(kc, SPAWN_CELL)
    pids = [int(p) for p in res.stream().split("SPAWNED", 1)[1].split()]
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and not all(alive(p) for p in pids):
        time.sleep(0.05)
    assert all(alive(p) for p in pids)
    return pids


def wait_all_gone(pids: list[int], kernel: int, timeout: float = 15) -> float:
    """Seconds until none of `pids` and nothing with the kernel's token is alive."""
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        left = [p for p in pids if alive(p)] + marked_by(kernel)
        if not left:
            return time.monotonic() - t0
        time.sleep(0.05)
    left = [p for p in pids if alive(p)] + marked_by(kernel)
    cmds = {p: Path(f"/proc/{p}/cmdline").read_bytes().replace(b"\0", b" ").decode() for p in left if alive(p)}
    raise AssertionError(f"left behind after {timeout} s: {cmds}")


def kernel_tree(km, kc) -> tuple[int, list[int]]:
    kp = kernel_pid(km)
    pids = spawn_children(kc) + [eval_pid(km)]
    assert len(marked_by(kp)) >= 3, "the evaluation process, the watchdog and the cell's processes carry the token"
    return kp, pids


def test_shutdown_leaves_nothing_behind():
    km, kc = start_kernel(RUST_KERNEL_NAME, ready_timeout=COMPILE_TIMEOUT)
    kp, pids = kernel_tree(km, kc)
    kc.stop_channels()
    km.shutdown_kernel(now=False)
    print(f"shutdown: all gone after {wait_all_gone(pids + [kp], kp):.2f} s")


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL], ids=["SIGTERM", "SIGKILL"])
def test_a_signalled_kernel_leaves_nothing_behind(sig):
    km, kc = start_kernel(RUST_KERNEL_NAME, ready_timeout=COMPILE_TIMEOUT)
    try:
        kp, pids = kernel_tree(km, kc)
        os.kill(kp, sig)  # the kernel alone, not its process group
        print(f"{sig.name}: all gone after {wait_all_gone(pids + [kp], kp):.2f} s")
    finally:
        kc.stop_channels()
        if km.has_kernel:
            km.shutdown_kernel(now=True)


def test_sigint_then_shutdown_leaves_nothing_behind():
    km, kc = start_kernel(RUST_KERNEL_NAME, ready_timeout=COMPILE_TIMEOUT)
    kp, pids = kernel_tree(km, kc)
    os.kill(kp, signal.SIGINT)
    assert run_ok(kc, "1 + 1").result_text() == "2", "SIGINT while idle does not end the kernel"
    kc.stop_channels()
    km.shutdown_kernel(now=False)
    print(f"SIGINT + shutdown: all gone after {wait_all_gone(pids + [kp], kp):.2f} s")


LAUNCHER = textwrap.dedent("""\
    import sys, time
    sys.path.insert(0, {tests!r})
    from conftest import start_kernel, execute, kernel_pid
    km, kc = start_kernel({name!r}, ready_timeout=120)
    res = execute(kc, {cell!r})
    assert res.status == "ok", res.describe()
    # A compile under way when the launcher dies must not survive either.
    kc.execute("let slow: u64 = (0..200u64).map(|x| x.pow(2)).sum();")
    print("KERNEL", kernel_pid(km), res.stream(), flush=True)
    time.sleep(600)
""")


def test_the_kernel_ends_when_its_launcher_dies(tmp_path):
    script = tmp_path / "launcher.py"
    script.write_text(LAUNCHER.format(tests=str(REPO / "tests"), name=RUST_KERNEL_NAME, cell=SPAWN_CELL))
    launcher = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, text=True)
    try:
        line = launcher.stdout.readline()
        assert line.startswith("KERNEL"), line
        words = line.split()
        kp, spawned = int(words[1]), [int(w) for w in words[3:5]]
        assert alive(kp) and all(alive(p) for p in spawned)
        assert environ(eval_pid_of(kp)).get("JPY_PARENT_PID") == str(launcher.pid)
        launcher.kill()  # SIGKILL: nothing of the launcher gets to clean up
        print(f"launcher killed: all gone after {wait_all_gone(spawned + [kp], kp):.2f} s")
    finally:
        if launcher.poll() is None:
            launcher.kill()
        launcher.wait()


def eval_pid_of(kernel: int) -> int:
    for pid in children(kernel):
        if environ(pid).get("EVCXR_IS_RUNTIME"):
            return pid
    raise AssertionError("no evaluation process")


# --- several kernels at once ---------------------------------------------------------


def slot_of(pid: int) -> str:
    """The build folder a kernel locked (its open `.lock` file)."""
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            target = os.readlink(fd)
        except OSError:
            continue
        if target.endswith("/.lock") and "/engine/slot-" in target:
            return str(Path(target).parent)
    raise AssertionError(f"kernel {pid} holds no build folder")


def test_kernels_started_together_get_their_own_build_folders():
    from jupyter_client.manager import KernelManager

    kms = [KernelManager(kernel_name=RUST_KERNEL_NAME) for _ in range(2)]
    for km in kms:
        km.start_kernel()  # both at once: neither waits for the other to be ready
    try:
        deadline = time.monotonic() + 60
        slots = []
        while time.monotonic() < deadline:
            try:
                slots = [slot_of(kernel_pid(km)) for km in kms]
                break
            except (AssertionError, FileNotFoundError):
                time.sleep(0.05)
        assert len(slots) == 2 and slots[0] != slots[1], slots
    finally:
        for km in kms:
            km.shutdown_kernel(now=True)


def test_four_kernels_run_course_notebooks_at_once(tmp_path):
    notebooks = sorted((REPO / "notebooks").glob("0[1-4]-*.ipynb"))
    assert len(notebooks) == 4
    runs = [
        subprocess.Popen(
            [sys.executable, str(REPO / "notebooks" / "export.py"), "--out", str(tmp_path / nb.stem), str(nb)],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        )
        for nb in notebooks
    ]
    for nb, run in zip(notebooks, runs):
        out, _ = run.communicate(timeout=1200)
        assert run.returncode == 0, f"{nb.name} failed:\n{out[-3000:]}"
        executed = json.loads((tmp_path / nb.stem / f"{nb.stem}.ipynb").read_text())
        code = [
            c for c in executed["cells"]
            if c["cell_type"] == "code" and "skip-execution" not in c.get("metadata", {}).get("tags", [])
        ]
        assert code and all(c.get("execution_count") for c in code), f"{nb.name}: a code cell did not run"
