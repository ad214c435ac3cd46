"""What JupyterLab's and the console's Tab completion take from the kernel's
complete_reply: each match is the text that replaces
code[cursor_start:cursor_end] (offsets in code points), and
metadata._jupyter_types_experimental holds one entry per match with the same
text, start and end, its type and, for functions, the signature (JupyterLab
shows it beside the match). The clients insert the match as it is: a match
`replace(dest, src)` puts placeholder arguments into the learner's code
(test_clients_browser.py and test_clients_console.py show it in the clients).
"""

from __future__ import annotations

import time

import pytest

from conftest import COMPILE_TIMEOUT, execute, request, wait_reply

EARLIER_CELLS = [
    "struct Point { x: i32, y: i32 }",
    "let p: Point = Point { x: 1, y: 2 };",
    "fn my_helper() -> u32 { 7 }",
    "let v: Vec<u64> = vec![1, 2, 3];",
    ':dep rayon = "1"',
]
MULTIBYTE = '// ünïcödé 🦀 комментарий 中文\nlet s = "🦀é"; v.it'



@pytest.fixture(scope="module")
def kernel(rust_kernel):
    km, kc = rust_kernel
    for code in EARLIER_CELLS:
        res = execute(kc, code, timeout=COMPILE_TIMEOUT * 2)
        assert res.status == "ok", res.describe()
    return kc


def complete(kc, code: str, pos: int | None = None, expect: set[str] | None = None) -> dict:
    """One complete_reply; with `expect`, asked again (as a learner presses Tab
    again) until rust-analyzer, still analysing after the `:dep` cell, names them."""
    deadline = time.monotonic() + COMPILE_TIMEOUT
    while True:
        msg_id = kc.complete(code, len(code) if pos is None else pos)
        reply = wait_reply(kc, msg_id, COMPILE_TIMEOUT)["content"]
        if expect is None or expect <= set(reply["matches"]) or time.monotonic() > deadline:
            return reply
        time.sleep(0.5)


def check_reply(reply: dict, code: str, replaced: str, expected: set[str]) -> None:
    """The reply replaces exactly `replaced` (the end of code) and offers `expected` among its matches."""
    assert reply["status"] == "ok", reply
    assert (reply["cursor_start"], reply["cursor_end"]) == (len(code) - len(replaced), len(code)), reply
    matches = reply["matches"]
    assert expected <= set(matches), matches
    for m in matches:
        assert m and all(ch.isalnum() or ch == "_" for ch in m), f"{m!r} is not a name to insert"
    types = reply["metadata"]["_jupyter_types_experimental"]
    assert [t["text"] for t in types] == matches
    for t in types:
        assert (t["start"], t["end"]) == (reply["cursor_start"], reply["cursor_end"]), t
        assert t.get("type"), t
        if t["type"] == "function":
            assert "fn" in t.get("signature", ""), f"a function's match without its signature: {t}"


@pytest.mark.parametrize("code, replaced, expected", [
    pytest.param("std::mem::repla", "repla", {"replace"}, id="std-path"),
    pytest.param("v.it", "it", {"iter", "iter_mut"}, id="method-of-earlier-variable"),
    pytest.param("my_hel", "my_hel", {"my_helper"}, id="function-from-earlier-cell"),
    pytest.param("p.", "", {"x", "y"}, id="fields-and-methods"),
    pytest.param("p.x", "x", {"x"}, id="field-prefix"),
    pytest.param("rayon::prelude::IntoPar", "IntoPar", {"IntoParallelIterator", "IntoParallelRefIterator"},
                 id="crate-from-dep"),
])
def test_completion_matches_are_names_to_insert(kernel, code, replaced, expected):
    check_reply(complete(kernel, code, expect=expected), code, replaced, expected)


def test_completion_offsets_in_a_multibyte_cell_are_code_points(kernel):
    reply = complete(kernel, MULTIBYTE)
    assert reply["status"] == "ok"
    assert (reply["cursor_start"], reply["cursor_end"]) == (len(MULTIBYTE) - 2, len(MULTIBYTE)), reply
    assert reply["matches"], reply


def test_completion_and_inspect_anywhere_in_a_multibyte_cell(kernel):
    """A request at every cursor position (inside comments in other scripts, next
    to emoji) is answered, within the cell, and the kernel keeps working."""
    for pos in range(len(MULTIBYTE) + 1):
        reply = complete(kernel, MULTIBYTE, pos)
        assert reply["status"] == "ok", (pos, reply)
        assert 0 <= reply["cursor_start"] <= reply["cursor_end"] <= len(MULTIBYTE), (pos, reply)
        msg_id = request(kernel, "inspect_request", {"code": MULTIBYTE, "cursor_pos": pos, "detail_level": 0})
        assert wait_reply(kernel, msg_id, COMPILE_TIMEOUT)["content"]["status"] == "ok", pos
    res = execute(kernel, "6 * 7")
    assert res.result_text() == "42", res.describe()


def test_the_first_tab_of_a_new_session_completes_std_paths():
    """Before rust-analyzer has analysed std (a new session, or after it was let go
    when the learner was idle) a path into the standard library is completed from
    the toolchain's sources: the first Tab already offers the item, with the
    signature of a function."""
    from conftest import RUST_KERNEL_NAME, start_kernel, stop_kernel

    km, kc = start_kernel(RUST_KERNEL_NAME, ready_timeout=COMPILE_TIMEOUT)
    try:
        assert execute(kc, "let n: u64 = 1;", timeout=COMPILE_TIMEOUT).status == "ok"
        for code, replaced, expected in [
            ("let old = std::mem::repla", "repla", {"replace"}),
            ("std::sync::atomic::AtomicU6", "AtomicU6", {"AtomicU64"}),
            ("let t:std::thread::sp", "sp", {"spawn"}),
            ("std::sync::Mu", "Mu", {"Mutex", "MutexGuard"}),
        ]:
            reply = complete(kc, code)  # once: no second Tab
            check_reply(reply, code, replaced, expected)
        types = complete(kc, "std::mem::repla")["metadata"]["_jupyter_types_experimental"]
        assert any(t["text"] == "replace" and "fn replace<T>(dest: &mut T, src: T) -> T" in t.get("signature", "")
                   for t in types), types
    finally:
        stop_kernel(km, kc)
