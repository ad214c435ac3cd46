"""Nothing runs that the learner did not run.

Jupyter starts a kernel in the notebook's folder. A folder from an untrusted
repository may hold configuration that names programs: evcxr's
`evcxr.toml` (an `sccache` wrapper, a build `tmpdir`), cargo's
`.cargo/config.toml` (a rustc wrapper, a linker), rustup's
`rust-toolchain.toml` (a toolchain of its own), or a `cargo` next to the
notebook for a PATH that contains `.`. Starting the kernel there and running
cells must run none of them. And the kernel's output capture offers nothing
another local process could connect to.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from jupyter_client.manager import KernelManager

from conftest import COMPILE_TIMEOUT, RUST_KERNEL_NAME, execute, kernel_pid, stop_kernel

EVIL = """#!/bin/sh
touch {marker}
exec "$@"
"""


def plant(folder: Path, marker: Path) -> None:
    evil = folder / "evil.sh"
    evil.write_text(EVIL.format(marker=marker))
    evil.chmod(0o755)
    (folder / "evcxr.toml").write_text(
        f'[evcxr]\nsccache = "{evil}"\ntmpdir = "{folder / "build"}"\n'
    )
    (folder / ".cargo").mkdir()
    (folder / ".cargo" / "config.toml").write_text(
        f'[build]\nrustc-wrapper = "{evil}"\n\n'
        f'[target.x86_64-unknown-linux-gnu]\nlinker = "{evil}"\n'
    )
    toolchain = folder / "toolchain" / "bin"
    toolchain.mkdir(parents=True)
    for tool in ("cargo", "rustc"):
        (toolchain / tool).write_text(EVIL.format(marker=marker))
        (toolchain / tool).chmod(0o755)
    (folder / "rust-toolchain.toml").write_text(f'[toolchain]\npath = "{folder / "toolchain"}"\n')
    for tool in ("cargo", "rustc", "mold", "cc"):
        (folder / tool).write_text(EVIL.format(marker=marker))
        (folder / tool).chmod(0o755)


def test_a_folder_cannot_configure_or_replace_the_compiler(tmp_path):
    folder = tmp_path / "untrusted-repo"
    folder.mkdir()
    marker = tmp_path / "MARKER"
    plant(folder, marker)
    env = dict(os.environ, PATH=".:" + os.environ["PATH"])
    km = KernelManager(kernel_name=RUST_KERNEL_NAME)
    km.start_kernel(cwd=str(folder), env=env)
    kc = km.client()
    kc.start_channels()
    try:
        kc.wait_for_ready(timeout=COMPILE_TIMEOUT)
        res = execute(kc, 'let here = std::env::current_dir().unwrap();\nprintln!("{}", here.display());')
        assert res.status == "ok", res.describe()
        assert res.stream().strip() == str(folder), "cells run in the notebook's folder"
        res = execute(kc, "let v: Vec<u64> = (1..=10).collect();\nv.iter().sum::<u64>()")
        assert res.result_text() == "55", res.describe()
        assert not marker.exists(), "a program named by the folder ran"
        assert not (folder / "build").exists(), "evcxr.toml moved the build into the folder"
    finally:
        stop_kernel(km, kc)
    assert not marker.exists()


def unix_socket_paths() -> dict[int, str]:
    """inode -> path of every Unix socket bound to a path on the system."""
    out = {}
    for line in Path("/proc/net/unix").read_text().splitlines()[1:]:
        fields = line.split()
        if len(fields) >= 8:
            out[int(fields[6])] = fields[7]
    return out


def socket_inodes(pid: int) -> set[int]:
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            target = os.readlink(fd)
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(int(target[8:-1]))
    return inodes


def descendants(pid: int) -> list[int]:
    parents = {}
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                parents[int(d.name)] = int((d / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, ValueError):
                pass
    found, i = [pid], 0
    while i < len(found):
        found += [c for c, p in parents.items() if p == found[i]]
        i += 1
    return found


def test_the_output_capture_has_nothing_to_connect_to(rust_kernel, tmp_path):
    km, kc = rust_kernel
    assert execute(kc, 'println!("captured");').stream() == "captured\n"
    named = unix_socket_paths()
    procs = descendants(kernel_pid(km))
    assert len(procs) >= 2, "the kernel and its evaluation process"
    bound = {p: [named[i] for i in socket_inodes(p) if i in named] for p in procs if os.path.exists(f"/proc/{p}")}
    assert not any(bound.values()), f"named Unix sockets a local process could connect to: {bound}"
    # The evaluation process writes its output into pipes only the kernel reads.
    ev = [p for p in procs if b"EVCXR_IS_RUNTIME=" in Path(f"/proc/{p}/environ").read_bytes()]
    assert ev
    for fd in ("1", "2"):
        assert os.readlink(f"/proc/{ev[0]}/fd/{fd}").startswith("pipe:"), fd
        assert stat.S_ISFIFO(os.stat(f"/proc/{ev[0]}/fd/{fd}").st_mode)
