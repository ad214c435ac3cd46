"""The cell build cache: a cell compiled before, against the same
dependencies, is replayed in a later session instead of compiled again, and
gives the same outputs; anything it depends on changing makes it compile anew.

Each test uses its own cache root (THREADBOOK_CACHE_DIR), so the sessions it
starts share a cache with each other and with nothing else.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from conftest import COMPILE_TIMEOUT, RUST_KERNEL_NAME, execute, start_kernel, stop_kernel


@pytest.fixture
def cache_root(tmp_path: Path) -> Path:
    return tmp_path / "cache"


def session(cache_root: Path, cells: list[str]) -> list:
    """Runs `cells` in a new kernel using `cache_root`; returns each cell's result."""
    env = dict(os.environ, THREADBOOK_CACHE_DIR=str(cache_root))
    km, kc = start_kernel(RUST_KERNEL_NAME, ready_timeout=COMPILE_TIMEOUT, env=env)
    try:
        return [execute(kc, code, timeout=COMPILE_TIMEOUT) for code in cells]
    finally:
        stop_kernel(km, kc)


def entries(cache_root: Path) -> set[str]:
    cells = cache_root / "cells"
    return {p.name for p in cells.iterdir() if not p.name.startswith(".")} if cells.exists() else set()


def summary(res) -> tuple:
    return (res.status, res.result_text(), res.stream("stdout"), res.content.get("ename"))


CELLS = [
    "let base: u64 = 40;",
    "fn add(a: u64, b: u64) -> u64 { a + b }",
    'println!("sum is {}", add(base, 2));',
    "add(base, 2)",
    "let broken: u64 = base + \"x\";",
]


def test_second_session_replays_every_cell_with_the_same_outputs(cache_root):
    first = session(cache_root, CELLS)
    assert [r.status for r in first] == ["ok", "ok", "ok", "ok", "error"]
    assert first[2].stream("stdout") == "sum is 42\n"
    assert first[3].result_text() == "42"
    recorded = entries(cache_root)
    assert recorded, "the first session records its compiles"

    second = session(cache_root, CELLS)
    assert [summary(r) for r in second] == [summary(r) for r in first]
    assert "cannot add `&str` to `u64`" in "".join(second[4].content["traceback"])
    assert second[4].content["traceback"] == first[4].content["traceback"], "the replayed error reads the same"
    assert entries(cache_root) == recorded, "every compile of the second session was a replay"


def test_a_changed_cell_or_input_file_compiles_anew(cache_root, tmp_path):
    data = tmp_path / "greeting.txt"
    data.write_text("hello")
    cells = [f'include_str!("{data}").to_uppercase()']
    assert session(cache_root, cells)[0].result_text() == '"HELLO"'
    recorded = entries(cache_root)

    data.write_text("goodbye")
    assert session(cache_root, cells)[0].result_text() == '"GOODBYE"', "a file the cell reads is checked on replay"
    assert entries(cache_root) == recorded, "same key: the stale entry was replaced, not added to"
    assert session(cache_root, cells)[0].result_text() == '"GOODBYE"'
    assert entries(cache_root) == recorded, "and the replacement is replayed"

    changed = session(cache_root, [cells[0].replace("to_uppercase", "to_lowercase")])
    assert changed[0].result_text() == '"goodbye"'


def test_cache_off_records_nothing(cache_root):
    env_off = dict(os.environ, THREADBOOK_CACHE_DIR=str(cache_root), THREADBOOK_CELL_CACHE="0")
    km, kc = start_kernel(RUST_KERNEL_NAME, ready_timeout=COMPILE_TIMEOUT, env=env_off)
    try:
        assert execute(kc, "6 * 7", timeout=COMPILE_TIMEOUT).result_text() == "42"
    finally:
        stop_kernel(km, kc)
    assert entries(cache_root) == set()
