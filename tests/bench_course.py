"""Where the course's execution time goes, notebook by notebook.

    .venv/bin/python tests/bench_course.py [--runs 2] [notebooks ...]

Runs every course notebook with the installed threadbook kernel through
nbclient (as the export does), `--runs` times in a row, and splits each
notebook's wall time into kernel start, compiling, running and the rest
(the kernel's own overhead, messages, nbclient), from the figures the kernel
puts in each execute_reply's metadata. The last run is the "second run" of
the speed targets: dependencies and the toolkit are already built. Not part
of the test run: it reports figures, it asserts none.
"""

import argparse
import sys
import time
from pathlib import Path

import nbformat
from nbclient import NotebookClient

NOTEBOOKS = Path(__file__).resolve().parent.parent / "notebooks"

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_kernel import context_line  # noqa: E402


def run_notebook(path: Path, timeout: int):
    nb = nbformat.read(path, as_version=4)
    fig = {"compile": 0.0, "run": 0.0, "cells": 0}

    def on_cell_executed(cell, cell_index, execute_reply):
        meta = (execute_reply or {}).get("metadata", {}).get("threadbook", {})
        fig["compile"] += meta.get("compile_seconds", 0.0)
        fig["run"] += meta.get("run_seconds", 0.0)
        fig["cells"] += 1

    client = NotebookClient(
        nb,
        kernel_name="threadbook",
        timeout=timeout,
        resources={"metadata": {"path": str(NOTEBOOKS)}},
        on_cell_executed=on_cell_executed,
    )
    t0 = time.monotonic()
    with client.setup_kernel():
        fig["start"] = time.monotonic() - t0
        for index, cell in enumerate(nb.cells):
            client.execute_cell(cell, index)
    fig["wall"] = time.monotonic() - t0
    fig["other"] = fig["wall"] - fig["start"] - fig["compile"] - fig["run"]
    return fig


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=2, help="whole-course runs in a row (default 2)")
    ap.add_argument("--timeout", type=int, default=600, help="seconds per cell")
    ap.add_argument("notebooks", nargs="*", type=Path, help="default: every course notebook")
    args = ap.parse_args()
    paths = args.notebooks or sorted(
        p for p in NOTEBOOKS.glob("*.ipynb") if not p.name.startswith("_")
    )
    print(context_line())
    cols = ("wall", "start", "compile", "run", "other")
    for run in range(1, args.runs + 1):
        print(f"\nrun {run} of {args.runs} (seconds)")
        print(f"{'notebook':34} {'cells':>5} " + " ".join(f"{c:>8}" for c in cols))
        total = dict.fromkeys(cols, 0.0)
        cells = 0
        for path in paths:
            fig = run_notebook(path, args.timeout)
            cells += fig["cells"]
            for c in cols:
                total[c] += fig[c]
            print(f"{path.stem:34} {fig['cells']:5} " + " ".join(f"{fig[c]:8.2f}" for c in cols), flush=True)
        print(f"{'course':34} {cells:5} " + " ".join(f"{total[c]:8.2f}" for c in cols))


if __name__ == "__main__":
    main()
