"""The cell build cache: a cell compiled before, against the same
dependencies, is replayed in a later session instead of compiled again, and
gives the same outputs; anything it depends on changing makes it compile anew.

Each test uses its own cache root (THREADBOOK_CACHE_DIR), so the sessions it
starts share a cache with each other and with nothing else.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from pathlib import Path
from typing import Callable

import pytest

from conftest import COMPILE_TIMEOUT, RUST_KERNEL_NAME, execute, session_with_cache, start_kernel, stop_kernel


@pytest.fixture
def cache_root(tmp_path: Path) -> Path:
    return tmp_path / "cache"


def entries(cache_root: Path) -> set[str]:
    cells = cache_root / "cells"
    return {p.name for p in cells.iterdir() if p.is_dir() and not p.name.startswith(".")} if cells.exists() else set()


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
    first = session_with_cache(cache_root, CELLS)
    assert [r.status for r in first] == ["ok", "ok", "ok", "ok", "error"]
    assert first[2].stream("stdout") == "sum is 42\n"
    assert first[3].result_text() == "42"
    recorded = entries(cache_root)
    assert recorded, "the first session records its compiles"

    second = session_with_cache(cache_root, CELLS)
    assert [summary(r) for r in second] == [summary(r) for r in first]
    assert "cannot add `&str` to `u64`" in "".join(second[4].content["traceback"])
    assert second[4].content["traceback"] == first[4].content["traceback"], "the replayed error reads the same"
    assert entries(cache_root) == recorded, "every compile of the second session was a replay"


def test_a_changed_cell_or_input_file_compiles_anew(cache_root, tmp_path):
    data = tmp_path / "greeting.txt"
    data.write_text("hello")
    cells = [f'include_str!("{data}").to_uppercase()']
    assert session_with_cache(cache_root, cells)[0].result_text() == '"HELLO"'
    recorded = entries(cache_root)

    data.write_text("goodbye")
    assert session_with_cache(cache_root, cells)[0].result_text() == '"GOODBYE"', "a file the cell reads is checked on replay"
    assert entries(cache_root) == recorded, "same key: the stale entry was replaced, not added to"
    assert session_with_cache(cache_root, cells)[0].result_text() == '"GOODBYE"'
    assert entries(cache_root) == recorded, "and the replacement is replayed"

    changed = session_with_cache(cache_root, [cells[0].replace("to_uppercase", "to_lowercase")])
    assert changed[0].result_text() == '"goodbye"'


def test_cache_off_records_nothing(cache_root):
    env_off = dict(os.environ, THREADBOOK_CACHE_DIR=str(cache_root), THREADBOOK_CELL_CACHE="0")
    km, kc = start_kernel(RUST_KERNEL_NAME, ready_timeout=COMPILE_TIMEOUT, env=env_off)
    try:
        assert execute(kc, "6 * 7", timeout=COMPILE_TIMEOUT).result_text() == "42"
    finally:
        stop_kernel(km, kc)
    assert entries(cache_root) == set()


# --- a tampered cache entry is refused, recompiled and recorded anew ------------

TAMPER_CELLS = ["fn answer() -> u64 { 6 * 7 }", "answer()"]


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def library_entries(cache_root: Path) -> dict[Path, dict]:
    """Entries that recorded a shared library (successful compiles): dir -> its output."""
    found = {}
    for key in entries(cache_root):
        entry = cache_root / "cells" / key
        record = json.loads((entry / "entry.json").read_text())
        libs = [o for o in record["outputs"] if o["name"].endswith(".so")]
        if libs:
            found[entry] = libs[0]
    return found


def edit_output(entry: Path, name: str, change: Callable[[dict], None]) -> None:
    path = entry / "entry.json"
    record = json.loads(path.read_text())
    change(next(o for o in record["outputs"] if o["name"] == name))
    path.write_text(json.dumps(record))


def log_lines(cache_root: Path) -> list[str]:
    log = cache_root / "cells" / "cache.log"
    return log.read_text().splitlines() if log.exists() else []


def assert_recorded_anew(entry: Path) -> None:
    """The entry is a fresh recording: plain names, in the out-dir, hashes that match."""
    record = json.loads((entry / "entry.json").read_text())
    for o in record["outputs"]:
        assert "/" not in o["name"] and o["name"] not in (".", "..")
        assert Path(o["dest"]).name == o["name"]
        assert sha256(entry / "out" / o["name"]) == o["sha256"], o["name"]


def run_tampered(cache_root: Path, tamper: Callable[[Path, dict], None], why: str) -> None:
    """Tampers with every recorded library, then checks that a new session
    still answers right, refusing (and logging) each tampered entry and
    recording it again under the same key. An entry is refused when its cell
    looks it up ("rejected"), or earlier by the sweep after another cell's
    recording ("pruned"), when the flaw shows without knowing the out-dir."""
    libs = library_entries(cache_root)
    assert libs, "the cells recorded their libraries"
    keys = entries(cache_root)
    logged = len(log_lines(cache_root))
    for entry, lib in libs.items():
        tamper(entry, lib)

    res = session_with_cache(cache_root, TAMPER_CELLS)
    assert [r.status for r in res] == ["ok", "ok"], [r.describe() for r in res]
    assert res[1].result_text() == "42"

    new_lines = log_lines(cache_root)[logged:]
    for entry in libs:
        said = [l for l in new_lines if re.search(f"entry {entry.name}: (rejected|pruned) ", l)]
        assert len(said) == 1, f"one line says why {entry.name} was refused: {new_lines}"
        assert why in said[0], said[0]
        assert_recorded_anew(entry)
    assert entries(cache_root) == keys, "recompiled under the same keys"


def test_changed_library_bytes_are_refused_and_recompiled(cache_root):
    first = session_with_cache(cache_root, TAMPER_CELLS)
    assert first[1].result_text() == "42", first[1].describe()

    def corrupt(entry: Path, lib: dict) -> None:
        stored = entry / "out" / lib["name"]
        data = bytearray(stored.read_bytes())
        data[:64] = bytes(64)  # no ELF header left: loading it would fail the cell
        stored.write_bytes(bytes(data))

    run_tampered(cache_root, corrupt, "has SHA-256")


def test_outputs_pointed_outside_the_out_dir_are_refused(cache_root, tmp_path):
    first = session_with_cache(cache_root, TAMPER_CELLS)
    assert first[1].result_text() == "42", first[1].describe()
    outside = tmp_path / "outside"
    outside.mkdir()

    def dest_outside(entry: Path, lib: dict) -> None:
        edit_output(entry, lib["name"], lambda o: o.update(dest=str(outside / lib["name"])))

    run_tampered(cache_root, dest_outside, "records destination")

    def dot_dot_name(entry: Path, lib: dict) -> None:
        # Consistent otherwise: the file the name reaches in the entry holds
        # the right bytes, and dest follows the name.
        name = "../escaped-" + lib["name"]
        (entry / "out" / name).write_bytes((entry / "out" / lib["name"]).read_bytes())
        out_dir = Path(lib["dest"]).parent
        edit_output(entry, lib["name"], lambda o: o.update(name=name, dest=str(out_dir / name)))

    run_tampered(cache_root, dot_dot_name, "is not a plain file name")

    def absolute_name(entry: Path, lib: dict) -> None:
        planted = str(outside / ("planted-" + lib["name"]))
        edit_output(entry, lib["name"], lambda o: o.update(name=planted, dest=planted))

    run_tampered(cache_root, absolute_name, "is not a plain file name")

    assert list(outside.iterdir()) == [], "nothing written outside the out-dir"
    out_dirs = {Path(lib["dest"]).parent for lib in library_entries(cache_root).values()}
    for d in out_dirs:
        assert not list(d.parent.glob("escaped-*")), "nothing written beside the out-dir"
