"""End-to-end behaviour of the real Rust engine (evcxr) behind threadbook.

Most tests share one kernel (module scope, warmed up); tests that need a
clean kernel (restart, what is available before any :dep) start their own.
Cells compile, so timeouts are generous (COMPILE_TIMEOUT); the time limits
asserted are the ones the kernel promises (interrupts within 1 s).
"""

from __future__ import annotations

import os
import queue
import re
import signal
import time

import pytest

from conftest import (
    plain,
    run_ok,
    COMPILE_TIMEOUT,
    RUST_KERNEL_NAME,
    collect_iopub,
    collect_many,
    drain,
    execute,
    kernel_pid,
    send_interrupt,
    start_kernel,
    stop_kernel,
    wait_reply,
)


HTML_TYPE = """\
pub struct Html(pub String);
impl Html {
    pub fn evcxr_display(&self) {
        println!("EVCXR_BEGIN_CONTENT text/html\\n{}\\nEVCXR_END_CONTENT", self.0);
    }
}"""




def merged_streams(res) -> list[tuple[str, str]]:
    """Stream outputs as (name, text), adjacent chunks of one stream joined."""
    out: list[tuple[str, str]] = []
    for m in res.of_type("stream"):
        name, text = m["content"]["name"], m["content"]["text"]
        if out and out[-1][0] == name:
            out[-1] = (name, out[-1][1] + text)
        else:
            out.append((name, text))
    return out


@pytest.fixture
def fresh_rust_kernel():
    km, kc = start_kernel(RUST_KERNEL_NAME, ready_timeout=COMPILE_TIMEOUT)
    yield km, kc
    stop_kernel(km, kc)


# --- basics ------------------------------------------------------------------------


def test_expression_result_and_streams(rust_kernel):
    km, kc = rust_kernel
    res = run_ok(kc, "6 * 7")
    assert res.result_text() == "42"
    assert res.of_type("execute_result")[0]["content"]["execution_count"] == res.content["execution_count"]
    res = run_ok(kc, 'println!("to stdout"); eprintln!("to stderr");')
    assert res.stream("stdout") == "to stdout\n"
    assert res.stream("stderr") == "to stderr\n"
    assert res.result_text() is None, "a cell ending in ';' has no result"


def test_variables_persist_between_cells(rust_kernel):
    km, kc = rust_kernel
    run_ok(kc, "let numbers = vec![1, 2, 3];")
    assert run_ok(kc, "numbers.iter().sum::<i32>()").result_text() == "6"
    run_ok(kc, "fn double(x: i32) -> i32 { x * 2 }")
    assert run_ok(kc, "double(numbers[2])").result_text() == "6"


def test_stdout_and_stderr_keep_their_interleaving(rust_kernel):
    km, kc = rust_kernel
    # stdout and stderr reach the kernel on two channels and are published in
    # the order they arrive: writes a moment apart keep their order. (Writes
    # microseconds apart on both streams can arrive in either order; within
    # one stream the order is always kept.)
    res = run_ok(
        kc,
        "for i in 0..5 { println!(\"out {i}\"); std::thread::sleep(std::time::Duration::from_millis(3)); "
        "eprintln!(\"err {i}\"); std::thread::sleep(std::time::Duration::from_millis(3)); }",
    )
    expected = []
    for i in range(5):
        expected += [("stdout", f"out {i}\n"), ("stderr", f"err {i}\n")]
    assert merged_streams(res) == expected


def test_each_stream_keeps_its_order_in_a_tight_loop(rust_kernel):
    km, kc = rust_kernel
    res = run_ok(kc, 'for i in 0..2000 { println!("out {i}"); eprintln!("err {i}"); }')
    assert res.stream("stdout") == "".join(f"out {i}\n" for i in range(2000))
    assert res.stream("stderr") == "".join(f"err {i}\n" for i in range(2000))


def test_flushed_partial_stdout_line_belongs_to_its_cell(fresh_rust_kernel):
    km, kc = fresh_rust_kernel
    run_ok(kc, "1")  # warm up
    # Rust's stdout is line-buffered: print! without a newline shows once flushed.
    res = run_ok(kc, 'use std::io::Write; print!("no newline"); std::io::stdout().flush().unwrap();')
    assert res.stream("stdout") == "no newline"
    nxt = run_ok(kc, 'println!("next cell");')
    assert nxt.stream("stdout") == "next cell\n"


def test_partial_stderr_line_is_clean(fresh_rust_kernel):
    km, kc = fresh_rust_kernel
    run_ok(kc, "1")  # warm up
    res = run_ok(kc, 'eprint!("no newline");')
    assert res.stream("stderr") == "no newline"


def test_print_without_newlines_on_both_streams(fresh_rust_kernel):
    km, kc = fresh_rust_kernel
    run_ok(kc, "1")  # warm up
    res = run_ok(kc, 'use std::io::Write; print!("a"); std::io::stdout().flush().unwrap(); eprint!("b"); print!("c"); std::io::stdout().flush().unwrap();')
    assert res.stream("stdout") == "ac"
    assert res.stream("stderr") == "b"


# --- errors ----------------------------------------------------------------------------


def test_compile_error_is_one_error_output(rust_kernel):
    km, kc = rust_kernel
    res = execute(kc, 'let x: u32 = "a";')
    assert res.status == "error"
    assert res.content["ename"] == "CompilationError"
    assert [m["msg_type"] for m in res.outputs] == ["error"], res.describe()
    err = res.errors()[0]
    assert err["ename"] == "CompilationError"
    assert (err["evalue"], err["traceback"]) == (res.content["evalue"], res.content["traceback"])
    tb = plain("\n".join(err["traceback"]))
    assert "--> cell:1:14" in tb, "rustc's place: the cell, line 1, column 14"
    assert "mismatched types" in tb
    assert 'let x: u32 = "a";' in tb, "the traceback quotes the cell's own line"


def test_compile_error_points_at_the_right_cell_line(rust_kernel):
    km, kc = rust_kernel
    res = execute(kc, 'let s = String::from("abc");\nlet ok = 1;\nlet n: u32 = s;')
    assert res.content["ename"] == "CompilationError"
    tb = plain("\n".join(res.content["traceback"]))
    assert "--> cell:3:14" in tb
    assert "cell line 3" in res.content["evalue"]


def test_panic_reports_message_and_keeps_earlier_variables(rust_kernel):
    km, kc = rust_kernel
    run_ok(kc, "let kept = 41;")
    res = execute(kc, 'let created_here = 1;\npanic!("boom {}", kept + 1);')
    assert res.status == "error"
    assert res.content["ename"] == "panic"
    assert res.content["evalue"] == "boom 42"
    assert "cell line 2" in plain("\n".join(res.content["traceback"]))
    # the panic is reported once, as the error; nothing else is output
    assert [m["msg_type"] for m in res.outputs] == ["error"], res.describe()
    assert run_ok(kc, "kept + 1").result_text() == "42"


def test_panic_in_a_spawned_thread_does_not_fail_the_cell(rust_kernel):
    km, kc = rust_kernel
    res = execute(kc, '{\n    let r = std::thread::spawn(|| panic!("worker failed")).join();\n'
                      '    println!("joined: {}", r.is_err());\n}')
    assert res.status == "ok", res.describe()
    assert res.stream("stdout") == "joined: true\n"
    assert "worker failed" in res.stream("stderr")


def test_stop_on_error_aborts_queued_cells(rust_kernel):
    km, kc = rust_kernel
    ids = [
        kc.execute('panic!("first fails");', stop_on_error=True, allow_stdin=False),
        kc.execute('println!("SECOND RAN");', stop_on_error=True, allow_stdin=False),
        kc.execute('println!("THIRD RAN");', stop_on_error=True, allow_stdin=False),
    ]
    replies = [wait_reply(kc, mid, COMPILE_TIMEOUT) for mid in ids]
    assert replies[0]["content"]["status"] == "error"
    assert [r["content"]["status"] for r in replies[1:]] == ["aborted", "aborted"]
    iopub = collect_many(kc, ids, 30)
    for mid in ids[1:]:
        assert [m["msg_type"] for m in iopub[mid]] == ["status", "status"], "aborted cells must not run"
    res = run_ok(kc, 'println!("later runs");', stop_on_error=True)
    assert res.stream() == "later runs\n"


# --- interrupts ---------------------------------------------------------------------------


def _start_and_wait_running(kc, code: str, marker: str) -> str:
    """Sends a cell that prints `marker` when it really runs; waits for it."""
    msg_id = kc.execute(code, stop_on_error=False, allow_stdin=False)
    deadline = time.monotonic() + COMPILE_TIMEOUT
    while time.monotonic() < deadline:
        msg = kc.get_iopub_msg(timeout=COMPILE_TIMEOUT)
        if (msg["parent_header"].get("msg_id") == msg_id and msg["msg_type"] == "stream"
                and marker in msg["content"]["text"]):
            return msg_id
    raise TimeoutError("the cell never started")


@pytest.mark.parametrize("body", [
    pytest.param("loop { std::hint::spin_loop(); }", id="busy-loop"),
    pytest.param("std::thread::sleep(std::time::Duration::from_secs(600));", id="long-sleep"),
])
def test_interrupt_request_stops_a_running_cell(rust_kernel, body):
    km, kc = rust_kernel
    cell = _start_and_wait_running(kc, f'println!("RUNNING");\n{body}', "RUNNING")
    irep = wait_reply(kc, send_interrupt(kc), 10, channel="control")
    assert irep["content"]["status"] == "ok"
    rep = wait_reply(kc, cell, 30)
    assert rep["content"]["status"] == "error"
    assert rep["content"]["ename"] == "Interrupted"
    collect_iopub(kc, cell, 10)
    assert run_ok(kc, "40 + 2").result_text() == "42"


def test_plain_loop_is_interrupted(rust_kernel):
    km, kc = rust_kernel
    # The marker proves the loop is running (not still compiling) when the interrupt comes.
    cell = _start_and_wait_running(kc, 'println!("RUNNING");\nloop {}', "RUNNING")
    send_interrupt(kc)
    rep = wait_reply(kc, cell, 30)
    assert rep["content"]["ename"] == "Interrupted"
    assert "had to be stopped" in rep["content"]["evalue"], "the running loop, not a compile, was stopped"
    collect_iopub(kc, cell, 10)
    assert run_ok(kc, "1 + 1").result_text() == "2"


def test_sigint_interrupts_a_running_cell(rust_kernel):
    km, kc = rust_kernel
    cell = _start_and_wait_running(kc, 'println!("RUNNING");\nloop { std::hint::spin_loop(); }', "RUNNING")
    os.kill(kernel_pid(km), signal.SIGINT)
    rep = wait_reply(kc, cell, 30)
    assert rep["content"]["status"] == "error"
    assert rep["content"]["ename"] == "Interrupted"
    collect_iopub(kc, cell, 10)
    assert km.is_alive(), "SIGINT must not kill the kernel"
    assert run_ok(kc, "2 + 2").result_text() == "4"


def test_kernel_info_on_control_while_rust_runs(rust_kernel):
    km, kc = rust_kernel
    cell = _start_and_wait_running(kc, 'println!("RUNNING");\nloop { std::hint::spin_loop(); }', "RUNNING")
    msg = kc.session.msg("kernel_info_request", {})
    kc.control_channel.send(msg)
    rep = wait_reply(kc, msg["header"]["msg_id"], 10, channel="control")
    assert rep["content"]["language_info"]["name"] == "rust"
    with pytest.raises(queue.Empty):
        kc.get_shell_msg(timeout=0.2)  # the cell is still running: answered meanwhile
    send_interrupt(kc)
    wait_reply(kc, cell, 30)
    collect_iopub(kc, cell, 10)


# --- stdin -----------------------------------------------------------------------------------

INPUT_CELL = 'let s = evcxr_input::get_string("name? ");\nprintln!("hi {}", s);'


def test_evcxr_input_is_available_without_dep(fresh_rust_kernel):
    km, kc = fresh_rust_kernel
    res = execute(kc, INPUT_CELL, inputs=["Ada"])
    assert res.status == "ok", res.describe()
    assert res.stream() == "hi Ada\n"


@pytest.fixture(scope="module")
def with_evcxr_input(rust_kernel):
    km, kc = rust_kernel
    run_ok(kc, ':dep evcxr_input = "1"')
    return km, kc


def test_stdin_input_request_is_answered(with_evcxr_input):
    km, kc = with_evcxr_input
    res = execute(kc, INPUT_CELL, inputs=["Ada"])
    assert res.status == "ok", res.describe()
    assert len(res.input_requests) == 1
    req = res.input_requests[0]
    assert req["content"]["prompt"] == "name? "
    assert req["content"]["password"] is False
    assert req["parent_header"]["msg_id"] == res.msg_id
    assert res.stream() == "hi Ada\n"


def test_stdin_password_request(with_evcxr_input):
    km, kc = with_evcxr_input
    res = execute(kc, 'let p = evcxr_input::get_password("secret: ");\nprintln!("{} chars", p.len());',
                  inputs=["hunter2"])
    assert res.status == "ok", res.describe()
    assert res.input_requests[0]["content"]["password"] is True
    assert res.stream() == "7 chars\n"


def test_stdin_not_allowed(with_evcxr_input):
    km, kc = with_evcxr_input
    res = execute(kc, INPUT_CELL, allow_stdin=False)
    assert res.status == "error"
    assert res.content["ename"] == "StdinNotAllowed"
    assert len(res.errors()) == 1
    assert not res.input_requests
    assert run_ok(kc, "5 + 5").result_text() == "10"


# --- output routing ------------------------------------------------------------------------


def test_thread_output_after_the_cell_goes_to_that_cell(rust_kernel):
    km, kc = rust_kernel
    first = run_ok(kc, """std::thread::spawn(|| {
    for i in 0..5 {
        std::thread::sleep(std::time::Duration::from_millis(200));
        println!("tick {i}");
    }
});""")
    assert "tick 4" not in first.stream(), "the cell must not wait for the thread"
    late: list[dict] = []
    deadline = time.monotonic() + 2.0
    while time.monotonic() < deadline:
        late += drain(kc, wait=0.1)
    second = run_ok(kc, 'println!("second cell");')
    late += second.others
    ticks = [m for m in first.msgs + late if m["msg_type"] == "stream"]
    assert "".join(m["content"]["text"] for m in ticks) == "".join(f"tick {i}\n" for i in range(5))
    for m in ticks:
        assert m["parent_header"]["msg_id"] == first.msg_id
    assert second.stream() == "second cell\n"
    assert not [m for m in second.msgs if "tick" in str(m["content"])]


def test_hundred_thousand_lines(rust_kernel):
    km, kc = rust_kernel
    n = 100_000
    run_ok(kc, "0")  # compile warm
    t0 = time.monotonic()
    res = run_ok(kc, f"for i in 0..{n} {{ println!(\"{{i}}\"); }}")
    seconds = time.monotonic() - t0
    streams = res.of_type("stream")
    print(f"\n100,000 lines: {len(streams)} stream messages in {seconds:.2f} s")
    assert all(m["content"]["name"] == "stdout" for m in streams)
    assert res.stream() == "".join(f"{i}\n" for i in range(n))
    assert len(streams) <= 1000


# --- rich output -----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def with_html(rust_kernel):
    km, kc = rust_kernel
    run_ok(kc, HTML_TYPE)
    return km, kc


def test_several_displays_in_order(with_html):
    km, kc = with_html
    res = run_ok(kc, 'Html("<b>one</b>".into()).evcxr_display();\nprintln!("between");\n'
                     'Html("<i>two</i>".into()).evcxr_display();\nHtml("<u>three</u>".into()).evcxr_display();')
    outs = [(m["msg_type"], m["content"].get("data", {}).get("text/html") or m["content"].get("text"))
            for m in res.outputs]
    assert outs == [("display_data", "<b>one</b>"), ("stream", "between\n"),
                    ("display_data", "<i>two</i>"), ("display_data", "<u>three</u>")]
    for m in res.of_type("display_data"):
        assert "text/plain" in m["content"]["data"]


def test_display_as_final_expression_is_the_result(with_html):
    km, kc = with_html
    res = run_ok(kc, 'Html("<b>last</b>".into())')
    assert [m["msg_type"] for m in res.outputs] == ["execute_result"]
    data = res.outputs[0]["content"]["data"]
    assert data["text/html"] == "<b>last</b>"
    assert "text/plain" in data
    assert res.outputs[0]["content"]["execution_count"] == res.content["execution_count"]


def test_threadbook_display_update_and_clear(rust_kernel):
    km, kc = rust_kernel
    show = run_ok(kc, 'println!("{}", r#"THREADBOOK_DISPLAY {"data":{"text/plain":"x","text/html":"<b>x</b>"},'
                      '"metadata":{"isolated":true},"display_id":"d1","update":false}"#);')
    assert [m["msg_type"] for m in show.outputs] == ["display_data"]
    c = show.outputs[0]["content"]
    assert c["data"] == {"text/plain": "x", "text/html": "<b>x</b>"}
    assert c["metadata"] == {"isolated": True}
    assert c["transient"] == {"display_id": "d1"}

    upd = run_ok(kc, 'println!("{}", r#"THREADBOOK_DISPLAY {"data":{"text/plain":"y"},"metadata":{},'
                     '"display_id":"d1","update":true}"#);')
    assert [m["msg_type"] for m in upd.outputs] == ["update_display_data"]
    assert upd.outputs[0]["content"]["data"] == {"text/plain": "y"}
    assert upd.outputs[0]["content"]["transient"] == {"display_id": "d1"}

    clr = run_ok(kc, 'println!("before");\nprintln!("{}", r#"THREADBOOK_CLEAR_OUTPUT {"wait":false}"#);\n'
                     'println!("after");')
    assert [(m["msg_type"], m["content"].get("text", m["content"].get("wait"))) for m in clr.outputs] == [
        ("stream", "before\n"), ("clear_output", False), ("stream", "after\n")]


# --- dependencies and processes ------------------------------------------------------------


def test_dep_rayon_par_iter(rust_kernel):
    km, kc = rust_kernel
    dep = execute(kc, ':dep rayon = "1"', timeout=300)
    assert dep.status == "ok", dep.describe()
    res = run_ok(kc, "use rayon::prelude::*;\n(1..=1_000_000u64).into_par_iter().sum::<u64>()")
    assert res.result_text() == "500000500000"
    res = run_ok(kc, "rayon::current_num_threads() >= 1")
    assert res.result_text() == "true"


def test_child_process_output_is_captured(rust_kernel):
    km, kc = rust_kernel
    res = run_ok(kc, 'std::process::Command::new("echo").arg("child says hi").status().unwrap();')
    assert res.stream() == "child says hi\n"


# --- completion, inspection, is_complete ----------------------------------------------------


def _shell(kc, msg_id):
    rep = wait_reply(kc, msg_id, COMPILE_TIMEOUT)
    collect_iopub(kc, msg_id, 10)
    return rep["content"]


def test_complete_a_defined_variable(rust_kernel):
    km, kc = rust_kernel
    run_ok(kc, "let my_value = 1;")
    c = _shell(kc, kc.complete("my_v"))
    assert c["status"] == "ok"
    assert "my_value" in c["matches"]
    assert (c["cursor_start"], c["cursor_end"]) == (0, 4)
    types = c["metadata"]["_jupyter_types_experimental"]
    assert [t["text"] for t in types] == c["matches"]
    for t in types:
        assert (t["start"], t["end"]) == (0, 4) and isinstance(t["type"], str)


def _complete_until(kc, code: str, wanted: str) -> dict:
    """A complete_reply naming `wanted`: asked again, as a learner presses Tab
    again, while rust-analyzer finishes its first analysis of std (until then
    the kernel answers at once from the session's names)."""
    deadline = time.monotonic() + COMPILE_TIMEOUT
    while True:
        c = _shell(kc, kc.complete(code))
        if wanted in c["matches"] or f"{wanted}()" in c["matches"] or time.monotonic() > deadline:
            return c
        time.sleep(0.3)


def test_complete_offsets_are_code_points(rust_kernel):
    km, kc = rust_kernel
    code = 'let é = String::new(); é.to_upp'
    c = _complete_until(kc, code, "to_uppercase")
    assert "to_uppercase()" in c["matches"] or "to_uppercase" in c["matches"], c["matches"]
    assert c["cursor_start"] == code.index("to_upp")  # Python indexes code points
    assert c["cursor_end"] == len(code)
    # cursor inside the code, not at its end
    code2 = 'std::collections::Hash; let z = 1;'
    c = _shell(kc, kc.complete(code2, cursor_pos=len("std::collections::Hash")))
    assert {"HashMap", "HashSet"} <= set(c["matches"])
    assert (c["cursor_start"], c["cursor_end"]) == (len("std::collections::"), len("std::collections::Hash"))


@pytest.mark.parametrize("code,must_mention", [
    pytest.param("Vec", "Vec", id="Vec"),
    pytest.param("String::new", "fn new", id="String::new"),
])
def test_inspect_documents_std_items(rust_kernel, code, must_mention):
    km, kc = rust_kernel
    c = _shell(kc, kc.inspect(code))
    assert c["status"] == "ok"
    assert c["found"] is True, c
    text = c["data"]["text/plain"]
    assert must_mention in text, text[:500]


def test_inspect_of_nothing_is_not_found(rust_kernel):
    km, kc = rust_kernel
    c = _shell(kc, kc.inspect("   "))
    assert c == {"status": "ok", "found": False, "data": {}, "metadata": {}}


@pytest.mark.parametrize("code,status,indent", [
    ("fn f() {", "incomplete", "    "),
    ('let s = "abc', "incomplete", None),
    ("let x = );", "invalid", None),
    ("1 + 1", "complete", None),
])
def test_is_complete(rust_kernel, code, status, indent):
    km, kc = rust_kernel
    c = _shell(kc, kc.is_complete(code))
    assert c["status"] == status
    if status == "incomplete":
        assert isinstance(c["indent"], str)
        if indent is not None:
            assert c["indent"] == indent
    else:
        assert "indent" not in c or c["indent"] == ""


# --- restart ---------------------------------------------------------------------------------


def test_restart_gives_a_new_session(fresh_rust_kernel):
    km, kc = fresh_rust_kernel
    run_ok(kc, "let before_restart = 1;")
    s1 = _shell_header(kc)
    pid1 = kernel_pid(km)
    km.restart_kernel(now=False)
    kc.wait_for_ready(timeout=COMPILE_TIMEOUT)
    drain(kc)
    assert kernel_pid(km) != pid1
    rep = wait_reply(kc, kc.kernel_info(), 30)
    assert rep["content"]["status"] == "ok"
    assert rep["content"]["language_info"]["name"] == "rust"
    assert rep["header"]["session"] != s1
    res = run_ok(kc, "1 + 1")
    assert res.content["execution_count"] == 1
    assert res.reply["header"]["session"] == rep["header"]["session"]
    gone = execute(kc, "before_restart")
    assert gone.content["ename"] == "CompilationError", "variables do not survive a restart"


def _shell_header(kc) -> str:
    rep = wait_reply(kc, kc.kernel_info(), 30)
    return rep["header"]["session"]


def test_variables_whose_types_are_not_in_scope_are_kept(fresh_rust_kernel):
    """A new session: rust-analyzer is not ready, so the compiler names the
    types; a type it names that the cell cannot write (not imported) falls
    back to rust-analyzer, and every variable is kept."""
    km, kc = fresh_rust_kernel
    run_ok(kc, 'fn f() -> u64 { 1 }\nlet mut seen = std::collections::BTreeSet::new();\nseen.insert(f());')
    run_ok(kc, "let (tx, rx) = std::sync::mpsc::channel::<u32>();\nlet words = vec![\"a\"];\nlet n = 3;")
    run_ok(kc, "tx.send(7).unwrap();")
    res = run_ok(kc, 'println!("{} {} {:?} {}", seen.len(), rx.recv().unwrap(), words, n);')
    assert res.stream() == '1 7 ["a"] 3\n', res.describe()
    # rustc names a type by its short path (JoinHandle) and leaves a literal's type open
    # ({integer}): the kernel writes the path rustc suggests importing, and i32 / f64.
    run_ok(kc, "let handles = vec![std::thread::spawn(|| 1u32)];\nlet xs = vec![1, 2];\nlet ratio = 0.5;\n"
               "let boxed = Box::new(5u8) as Box<dyn std::any::Any>;")
    listed = run_ok(kc, ":vars").result_text()
    for line in ["handles: Vec<std::thread::JoinHandle<u32>>", "xs: Vec<i32>", "ratio: f64",
                 "boxed: Box<dyn std::any::Any>"]:
        assert line in listed.splitlines(), listed
    res = run_ok(kc, 'println!("{} {:?} {}", handles.into_iter().map(|h| h.join().unwrap()).sum::<u32>(), xs, ratio);')
    assert res.stream() == "1 [1, 2] 0.5\n", res.describe()
