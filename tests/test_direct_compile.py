"""Cargo's work that a cell skips.

Cells compiled without cargo: while nothing cargo would look at has changed
since its last run (Cargo.toml, the environment, the dependencies' libraries,
the files of path dependencies), the engine runs the compiler the way cargo
last did, which saves cargo's checks of every dependency on each cell. Any
change sends the compile through cargo again.

Whether cargo ran is read from its fingerprint of the cell crate
(`.fingerprint/ctx-*/` in the build folder), which cargo rewrites each time it
builds the crate; `EVCXR_DIRECT_COMPILE=0` (every cell through cargo) shows
that this reading sees cargo's runs.

`:dep`s validated in an earlier session are not validated again (`cargo
metadata` in the build folder's `validate-dep/`), unless a path dependency's
Cargo.toml changed.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from conftest import (
    COMPILE_TIMEOUT,
    RUST_KERNEL_NAME,
    drain,
    execute,
    send_interrupt,
    session_with_cache,
    start_kernel,
    stop_kernel,
    wait_reply,
)


def write_crate(root: Path, value: int) -> None:
    (root / "src").mkdir(parents=True, exist_ok=True)
    (root / "Cargo.toml").write_text(
        '[package]\nname = "tbdirect"\nversion = "0.1.0"\nedition = "2021"\n'
    )
    (root / "src" / "lib.rs").write_text(f"pub fn value() -> u32 {{ {value} }}\n")


def cargo_stamp(cache_root: Path) -> int:
    """The newest modification time among cargo's fingerprint files of the cell crate."""
    files = list((cache_root / "engine").glob("slot-*/target/*/debug/.fingerprint/ctx-*/*"))
    assert files, "cargo has built the cell crate at least once"
    return max(f.stat().st_mtime_ns for f in files)


@pytest.fixture
def kernel_with_dep(tmp_path: Path, request):
    """A kernel with its own build folder and a path dependency `tbdirect`."""
    crate = tmp_path / "tbdirect"
    write_crate(crate, 1)
    cache_root = tmp_path / "cache"
    env = dict(os.environ, THREADBOOK_CACHE_DIR=str(cache_root), **getattr(request, "param", {}))
    km, kc = start_kernel(RUST_KERNEL_NAME, ready_timeout=COMPILE_TIMEOUT, env=env)
    try:
        res = execute(kc, f':dep tbdirect = {{ path = "{crate}" }}', timeout=COMPILE_TIMEOUT)
        assert res.status == "ok", res.content
        yield kc, crate, cache_root
    finally:
        stop_kernel(km, kc)


def value(kc, expr: str) -> str:
    res = execute(kc, expr, timeout=COMPILE_TIMEOUT)
    assert res.status == "ok", res.content
    return res.result_text()


def test_warm_cells_compile_without_cargo_and_see_a_changed_path_dependency(kernel_with_dep):
    kc, crate, cache_root = kernel_with_dep
    assert value(kc, "tbdirect::value()") == "1"
    stamp = cargo_stamp(cache_root)
    assert value(kc, "tbdirect::value() + 1") == "2"
    assert value(kc, 'let s: String = format!("v{}", tbdirect::value() * 3);') is None
    assert value(kc, "s") == '"v3"'
    assert cargo_stamp(cache_root) == stamp, "cells after the first compiled without cargo"

    write_crate(crate, 5)
    assert value(kc, "tbdirect::value()") == "5", "the changed dependency was rebuilt"
    assert cargo_stamp(cache_root) > stamp, "through cargo"
    stamp = cargo_stamp(cache_root)
    assert value(kc, "tbdirect::value() * 2") == "10"
    assert cargo_stamp(cache_root) == stamp, "and the next cell compiled without it again"

    # A new file in the dependency (its folder changes, not the files cargo saw).
    (crate / "src" / "extra.rs").write_text("pub fn more() -> u32 { 7 }\n")
    (crate / "src" / "lib.rs").write_text("pub mod extra;\npub fn value() -> u32 { 5 }\n")
    assert value(kc, "tbdirect::extra::more()") == "7"
    assert cargo_stamp(cache_root) > stamp


def test_a_changed_dependency_list_goes_through_cargo(kernel_with_dep, tmp_path):
    kc, _, cache_root = kernel_with_dep
    assert value(kc, "tbdirect::value()") == "1"
    stamp = cargo_stamp(cache_root)
    other = tmp_path / "other"
    (other / "src").mkdir(parents=True)
    (other / "Cargo.toml").write_text('[package]\nname = "tbother"\nversion = "0.1.0"\nedition = "2021"\n')
    (other / "src" / "lib.rs").write_text("pub const N: u32 = 40;\n")
    assert execute(kc, f':dep tbother = {{ path = "{other}" }}', timeout=COMPILE_TIMEOUT).status == "ok"
    assert value(kc, "tbother::N + tbdirect::value() + 1") == "42"
    assert cargo_stamp(cache_root) > stamp


# Constant evaluation that keeps the compiler busy for about 20 s (measured on 2 cores).
SLOW_TO_COMPILE = """\
#[allow(long_running_const_eval)]
const SLOW: u64 = {
    let (mut i, mut s) = (0u64, 0u64);
    while i < 1_500_000_000 { s = s.wrapping_mul(31).wrapping_add(i); i += 1; }
    s
};
println!("{}", SLOW);"""


def test_an_interrupt_stops_a_compile_without_cargo(kernel_with_dep):
    kc, _, cache_root = kernel_with_dep
    assert value(kc, "let kept: u32 = tbdirect::value() + 1;") is None
    stamp = cargo_stamp(cache_root)
    drain(kc)
    msg_id = kc.execute(SLOW_TO_COMPILE)
    time.sleep(2)
    t0 = time.monotonic()
    send_interrupt(kc)
    reply = wait_reply(kc, msg_id, COMPILE_TIMEOUT)["content"]
    stopped_after = time.monotonic() - t0
    assert reply["status"] == "error" and reply["ename"] == "Interrupted", reply
    assert "while it compiled" in reply["evalue"], reply
    assert stopped_after < 5, f"the compiler ran on for {stopped_after:.1f} s after the interrupt"
    assert cargo_stamp(cache_root) == stamp, "the stopped compile was one without cargo"
    assert value(kc, "kept") == "2", "and the session goes on with its variables"


@pytest.mark.parametrize("kernel_with_dep", [{"EVCXR_DIRECT_COMPILE": "0"}], indirect=True)
def test_direct_compile_off_runs_cargo_for_every_cell(kernel_with_dep):
    kc, _, cache_root = kernel_with_dep
    assert value(kc, "tbdirect::value()") == "1"
    stamp = cargo_stamp(cache_root)
    assert value(kc, "tbdirect::value() + 1") == "2"
    assert cargo_stamp(cache_root) > stamp, "the fingerprint shows each cargo run"


def dep_session(cache_root: Path, crate: Path) -> tuple[str, str]:
    """Runs `:dep tbdirect` in a new kernel; returns its status and error text."""
    res = session_with_cache(cache_root, [f':dep tbdirect = {{ path = "{crate}" }}'])[0]
    return res.status, " ".join(res.content.get("traceback", []) + [res.content.get("evalue", "")])


def validation_stamp(cache_root: Path) -> int:
    manifests = list((cache_root / "engine").glob("slot-*/validate-dep/Cargo.toml"))
    assert len(manifests) == 1, manifests
    return manifests[0].stat().st_mtime_ns


def test_a_dependency_is_validated_once_until_its_manifest_changes(tmp_path):
    crate = tmp_path / "tbdirect"
    write_crate(crate, 1)
    cache_root = tmp_path / "cache"
    assert dep_session(cache_root, crate)[0] == "ok"
    stamp = validation_stamp(cache_root)
    assert dep_session(cache_root, crate)[0] == "ok"
    assert validation_stamp(cache_root) == stamp, "the second session did not validate it again"

    # The same crate without a library: a changed manifest is validated again, and refused.
    (crate / "Cargo.toml").write_text(
        '[package]\nname = "tbdirect"\nversion = "0.1.0"\nedition = "2021"\nautolib = false\n'
        '[[bin]]\nname = "tbdirect"\npath = "src/lib.rs"\n'
    )
    status, error = dep_session(cache_root, crate)
    assert status == "error"
    assert "missing a lib target" in error, error
    assert validation_stamp(cache_root) > stamp
