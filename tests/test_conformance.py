"""The public Jupyter kernel conformance suite (jupyter_kernel_test) against
the real Rust engine, with every test the suite has switched on.

Not enabled: ``code_page_something``. ``test_pager`` needs a cell whose
execute_reply carries exactly one payload with ``source: "page"`` and a
text/plain bundle; threadbook never sends payloads (``payload`` is always
``[]``), so there is no code that could make it pass.
"""

from __future__ import annotations

import queue
import time

import jupyter_kernel_test as jkt

RUST_KERNEL_NAME = "threadbook"
WARMUP_TIMEOUT = 120

# Threadbook display protocol lines (one println! each); braces are in the
# argument, not the format string.
DISPLAY_HTML = (
    'println!("{}", r#"THREADBOOK_DISPLAY {"data":{"text/plain":"x","text/html":"<b>x</b>"},'
    '"metadata":{},"display_id":"conformance","update":false}"#);'
)
EVCXR_DISPLAY = (
    "pub struct Shown;\n"
    "impl Shown {\n"
    "    pub fn evcxr_display(&self) {\n"
    '        println!("EVCXR_BEGIN_CONTENT text/html\\n<i>shown</i>\\nEVCXR_END_CONTENT");\n'
    "    }\n"
    "}\n"
    "Shown.evcxr_display();"
)
CLEAR_OUTPUT = (
    'println!("before"); println!("{}", r#"THREADBOOK_CLEAR_OUTPUT {"wait":false}"#); '
    'println!("after");'
)


def _wait_shell_reply(kc, msg_id: str, timeout: float) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            msg = kc.get_shell_msg(timeout=1)
        except queue.Empty:
            continue
        if msg["parent_header"].get("msg_id") == msg_id:
            return msg
    raise TimeoutError(f"no reply to {msg_id} in {timeout} s")


class ThreadbookKernelTests(jkt.KernelTests):
    kernel_name = RUST_KERNEL_NAME
    language_name = "rust"
    file_extension = ".rs"

    code_hello_world = 'println!("hello, world");'
    code_stderr = 'eprintln!("something went wrong");'

    completion_samples = [
        {"text": "std::collections::Hash", "matches": {"HashMap", "HashSet"}},
        # schema only
        {"text": "let v: Vec<u8> = Vec::new(); v.le"},
    ]
    complete_code_samples = ["1 + 1", "let x = 1;", "fn f() {}", 'println!("hi");', ':dep rayon = "1"']
    incomplete_code_samples = ["fn f() {", 'let s = "abc', "let v = vec![1,", "struct S {\n    a: u32,"]
    invalid_code_samples = ["let x = );", "}"]

    # code_page_something: not possible, see the module docstring.

    # A runtime error: the cell must produce exactly one output, the error.
    code_generate_error = 'panic!("boom");'

    code_execute_result = [
        {"code": "1 + 1", "result": "2"},
        {"code": "6 * 7", "result": "42"},
        {"code": '"ab".repeat(2)', "result": '"abab"'},
    ]
    code_display_data = [
        {"code": DISPLAY_HTML, "mime": "text/html"},
        {"code": EVCXR_DISPLAY, "mime": "text/html"},
    ]
    code_history_pattern = "6*7"
    supported_history_operations = ("tail", "range", "search")
    code_inspect_sample = "Vec"
    code_clear_output = CLEAR_OUTPUT

    @classmethod
    def setUpClass(cls) -> None:
        super().setUpClass()
        # The suite allows 15 s per message: start the engine, compile a
        # first cell and load the completion engine before any test runs.
        reply = cls.kc.execute_interactive("1 + 1", timeout=WARMUP_TIMEOUT, output_hook=lambda m: None)
        assert reply["content"]["status"] == "ok", reply["content"]
        for send in (lambda: cls.kc.complete("std::collections::Hash"), lambda: cls.kc.inspect("Vec")):
            _wait_shell_reply(cls.kc, send(), WARMUP_TIMEOUT)
        # leave nothing behind for the first test's flush
        for get in (cls.kc.get_iopub_msg, cls.kc.get_shell_msg):
            while True:
                try:
                    get(timeout=0.3)
                except queue.Empty:
                    break


class ThreadbookIopubWelcomeTests(jkt.IopubWelcomeTests):
    kernel_name = RUST_KERNEL_NAME
    support_iopub_welcome = True
