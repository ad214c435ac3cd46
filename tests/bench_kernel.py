"""Speed and memory of the installed kernel, through jupyter_client.

    .venv/bin/python tests/bench_kernel.py [--runs 3]

Measures each figure of the speed targets as the median of several runs and
prints them with the machine's context. When the evcxr_jupyter kernelspec
(`rust`) is installed too, the same measurements run against it in the same
run and the ratios are printed side by side. Not part of the test run: the
figures depend on the machine and its load, so they are reported, not
asserted.
"""

import argparse
import os
import platform
import statistics
import subprocess
import time

from jupyter_client.kernelspec import KernelSpecManager
from jupyter_client.manager import start_new_kernel

RAYON_CELL = (
    "use rayon::prelude::*;\n"
    "(0..1_000_000u64).into_par_iter().map(|i| i % 7).sum::<u64>()"
)


def median(xs):
    return statistics.median(xs) if xs else float("nan")


def context_line():
    cores = os.cpu_count()
    model = "unknown CPU"
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    load = os.getloadavg()
    rustc = subprocess.run(["rustc", "--version"], capture_output=True, text=True).stdout.strip()
    return f"{cores} cores · {model} · load {load[0]:.2} / {load[1]:.2} · {rustc} · {platform.system()}"


def wait_idle(kc, msg_id, timeout=300):
    """All iopub messages of one request up to its idle."""
    msgs = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        m = kc.get_iopub_msg(timeout=timeout)
        if m["parent_header"].get("msg_id") != msg_id:
            continue
        msgs.append(m)
        if m["msg_type"] == "status" and m["content"]["execution_state"] == "idle":
            return msgs
    raise TimeoutError(f"no idle for {msg_id}")


def run_cell(kc, code, timeout=300):
    t0 = time.monotonic()
    msg_id = kc.execute(code)
    reply = kc.get_shell_msg(timeout=timeout)
    msgs = wait_idle(kc, msg_id, timeout)
    elapsed = time.monotonic() - t0
    if reply["content"]["status"] != "ok":
        raise RuntimeError(f"{code!r} failed: {reply['content'].get('evalue')}")
    return elapsed, msgs


def tree_rss_mib(pid):
    """Resident memory of a process and all its descendants."""
    parents = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = open(f"/proc/{entry}/stat").read()
                parents[int(entry)] = int(stat.rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                pass
    tree, i = [pid], 0
    while i < len(tree):
        tree += [p for p, pp in parents.items() if pp == tree[i]]
        i += 1
    total = 0
    for p in tree:
        try:
            for line in open(f"/proc/{p}/status"):
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
        except OSError:
            pass
    return total / 1024


def rtt(kc, channel, make, n=50):
    times = []
    for _ in range(n):
        t0 = time.perf_counter()
        make()
        getattr(kc, channel)(timeout=30)
        times.append(time.perf_counter() - t0)
    return median(times)


FIRST_LET = "let v: Vec<u64> = (0..1000).collect();"
FIRST_UNTYPED_LET = "let w = vec![1u64; 1000];"
COMPLETE = "std::mem::repla"


def timed_completion(kc, code=COMPLETE):
    """Seconds to the reply of a completion at the end of `code` (by default
    `std::mem::repla`), and its matches."""
    t0 = time.perf_counter()
    msg_id = kc.complete(code, len(code))
    while True:
        reply = kc.get_shell_msg(timeout=60)
        if reply["parent_header"].get("msg_id") == msg_id:
            return time.perf_counter() - t0, reply["content"].get("matches", [])


def fresh_session_figures(kernel, runs):
    """Per new session: its first `let` cell (the type written out, as a learner
    often does), an untyped one next, a completion 2 s later, and the resident
    memory of the kernel's processes 15 s after the cell and after the completion."""
    lets, untyped, completions, answered, rss_cell, rss_complete = [], [], [], [], [], []
    for _ in range(runs):
        km, kc = start_new_kernel(kernel_name=kernel, startup_timeout=120)
        try:
            lets.append(run_cell(kc, FIRST_LET)[0])
            untyped.append(run_cell(kc, FIRST_UNTYPED_LET)[0])
            time.sleep(15)
            rss_cell.append(tree_rss_mib(km.provisioner.process.pid))
            t, matches = timed_completion(kc)
            completions.append(t)
            answered.append("replace" in matches)
            time.sleep(15)
            rss_complete.append(tree_rss_mib(km.provisioner.process.pid))
        finally:
            km.shutdown_kernel(now=True)
    return {
        "a new session's first `let` (typed) (s)": median(lets),
        "  … then an untyped `let` (s)": median(untyped),
        "completion 15 s after those cells (s)": median(completions),
        "  … completions that named `replace`": f"{sum(answered)}/{len(answered)}",
        "resident MiB, 15 s after the cells": median(rss_cell),
        "resident MiB, 15 s after a completion": median(rss_complete),
    }


def analyzer_ready(kernel, runs):
    """How soon a new session completes a method (`v.le` names `len`: only
    rust-analyzer knows), pressing Tab every 0.2 s after its first cell, and how
    long a completion takes once it does."""
    ready, warm = [], []
    for _ in range(runs):
        km, kc = start_new_kernel(kernel_name=kernel, startup_timeout=120)
        try:
            run_cell(kc, "let v: Vec<u64> = Vec::new();")
            t0 = time.monotonic()
            while time.monotonic() - t0 < 60:
                _, matches = timed_completion(kc, "v.le")
                if "len" in matches or "len()" in matches:
                    ready.append(time.monotonic() - t0)
                    break
                time.sleep(0.2)
            warm.append(timed_completion(kc, "v.is_e")[0])
        finally:
            km.shutdown_kernel(now=True)
    return {
        "method completion (`v.le`) answered after (s)": median(ready) if ready else "never",
        "  … a completion once it is (s)": median(warm),
    }


def first_completion(kernel, runs):
    """A completion 2 s after a new session's first cell (rust-analyzer still
    busy with std): its time, and whether it named `replace`."""
    times, named = [], 0
    for _ in range(runs):
        km, kc = start_new_kernel(kernel_name=kernel, startup_timeout=120)
        try:
            run_cell(kc, "1 + 1")
            time.sleep(2)
            t, matches = timed_completion(kc)
            times.append(t)
            named += "replace" in matches
        finally:
            km.shutdown_kernel(now=True)
    return {
        "completion 2 s after a new session's first cell (s)": median(times),
        "  … of which named `replace`": f"{named}/{runs}",
    }


def measure(kernel, runs):
    """Every figure for one kernel; a figure the kernel cannot produce is
    recorded with the reason instead of stopping the run."""
    res = {}

    def figure(name, fn):
        try:
            res[name] = fn()
        except Exception as e:  # report, don't stop: the other figures still count
            res[name] = f"failed: {str(e)[:40]}"

    launches, dep_cells = [], []
    for i in range(runs):
        t0 = time.monotonic()
        km, kc = start_new_kernel(kernel_name=kernel, startup_timeout=120)
        run_cell(kc, "1 + 1")
        launches.append(time.monotonic() - t0)
        # a new session's first :dep rayon + par_iter cell (dependency built before)
        try:
            t_dep, _ = run_cell(kc, ':dep rayon = "1"')
            t_par, _ = run_cell(kc, RAYON_CELL)
            dep_cells.append(t_dep + t_par)
        except Exception as e:
            print(f"{kernel}: rayon cells failed: {e}")
        if i < runs - 1:
            km.shutdown_kernel(now=True)
    res["launch → first `1 + 1` result (s)"] = median(launches)
    if kernel == "threadbook":
        # The same without the cell build cache: the compile a first-ever
        # session (or a changed cell) pays.
        def uncached_launch():
            t0 = time.monotonic()
            env = dict(os.environ, THREADBOOK_CELL_CACHE="0")
            km0, kc0 = start_new_kernel(kernel_name=kernel, startup_timeout=120, env=env)
            try:
                run_cell(kc0, "1 + 1")
                return time.monotonic() - t0
            finally:
                km0.shutdown_kernel(now=True)

        figure(
            "  … with the cell build cache off (s)",
            lambda: median([uncached_launch() for _ in range(runs)]),
        )
    res["first `:dep rayon` + `par_iter` cell (s)"] = median(dep_cells)
    for part in (fresh_session_figures, first_completion, analyzer_ready):
        try:
            res.update(part(kernel, runs))
        except Exception as e:  # report, don't stop
            res[part.__name__] = f"failed: {str(e)[:40]}"
    figure("trivial cell, warm (s)", lambda: median([run_cell(kc, "1 + 1")[0] for _ in range(10)]))
    if kernel == "threadbook":
        # The same with every compile through cargo, as before cells were
        # compiled without it.
        def warm_through_cargo():
            env = dict(os.environ, EVCXR_DIRECT_COMPILE="0")
            km0, kc0 = start_new_kernel(kernel_name=kernel, startup_timeout=120, env=env)
            try:
                run_cell(kc0, "1 + 1")
                return median([run_cell(kc0, "1 + 1")[0] for _ in range(10)])
            finally:
                km0.shutdown_kernel(now=True)

        figure("  … every compile through cargo (s)", warm_through_cargo)
    figure("kernel_info round trip (ms)", lambda: 1000 * rtt(kc, "get_shell_msg", kc.kernel_info))
    figure(
        "is_complete round trip (ms)",
        lambda: 1000 * rtt(kc, "get_shell_msg", lambda: kc.is_complete("fn f() {")),
    )

    def control_during_cell():
        # control answers while a cell runs
        msg_id = kc.execute("std::thread::sleep(std::time::Duration::from_secs(3));")
        time.sleep(0.3)

        def control_info():
            kc.control_channel.send(kc.session.msg("kernel_info_request"))

        try:
            return 1000 * rtt(kc, "get_control_msg", control_info, n=20)
        finally:
            kc.get_shell_msg(timeout=60)
            wait_idle(kc, msg_id)

    figure("kernel_info on control during a cell (ms)", control_during_cell)
    flood = {}

    def flood_seconds():
        t, msgs = run_cell(kc, 'for i in 0..100_000 { println!("{i}"); }')
        flood["messages"] = sum(m["msg_type"] == "stream" for m in msgs)
        return t

    figure("100,000-line cell to idle (s)", flood_seconds)
    res["100,000-line cell: stream messages"] = flood.get("messages", "failed")
    figure("resident MiB at the end (after all the above)", lambda: tree_rss_mib(km.provisioner.process.pid))
    km.shutdown_kernel(now=True)
    print(f"{kernel}: done", flush=True)
    return res


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=3, help="sessions per kernel (default 3)")
    args = ap.parse_args()
    installed = KernelSpecManager().find_kernel_specs()
    kernels = [k for k in ("threadbook", "rust") if k in installed]
    print(context_line())
    print(f"median of {args.runs} sessions (10 warm cells, 50 round trips)\n")
    results = {k: measure(k, args.runs) for k in kernels}
    names = list(results[kernels[0]])
    head = f"{'figure':46} " + " ".join(f"{k:>12}" for k in kernels)
    if len(kernels) == 2:
        head += f" {'rust/threadbook':>8}"
    print(head)
    print("-" * len(head))
    for name in names:
        vals = [results[k].get(name, "—") for k in kernels]
        row = f"{name:46} " + " ".join(f"{v:12.3f}" if isinstance(v, float) else f"{v!s:>12}" for v in vals)
        if len(kernels) == 2 and all(isinstance(v, (int, float)) for v in vals) and vals[0]:
            row += f" {vals[1] / vals[0]:7.1f}x"
        print(row)
    if len(kernels) == 1:
        print("\n(evcxr_jupyter's kernelspec `rust` is not installed: no side-by-side ratios)")


if __name__ == "__main__":
    main()
