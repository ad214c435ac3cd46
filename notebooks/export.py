"""Execute the course with the threadbook kernel and export it to HTML.

    python notebooks/export.py --out build/html
    python notebooks/export.py --out build/student --student --reuse build/html
    python notebooks/export.py --warm

The first form runs every notebook top to bottom (cells tagged
`raises-exception` may fail; cells tagged `skip-execution` are not run; any
other failure stops the export with the cell's error) and writes the executed
notebook and its HTML. The second writes a student edition from
already-executed notebooks: without the cells tagged `solution`, and without
the outputs an exercise or a prediction would give away — under a checking
cell (tagged `check`, or the first code cell after a removed solution), and
under every cell from a prediction (`let my_…`) to the last cell that uses
it; execution counts are renumbered. Timings per notebook go to
timings.json. The third builds the course's dependencies (rayon, the toolkit
and its helper programs, timely for the cluster notebook) into the caches,
so the first notebook a learner opens is warm.
"""

import argparse
import html
import json
import re
import sys
import time
from pathlib import Path

import nbformat
from nbclient import NotebookClient
from nbconvert import HTMLExporter
from traitlets.config import Config

HERE = Path(__file__).resolve().parent


def course_notebooks():
    return sorted(p for p in HERE.glob("*.ipynb") if not p.name.startswith("_"))


def execute(path: Path, timeout: int) -> nbformat.NotebookNode:
    nb = nbformat.read(path, as_version=4)
    client = NotebookClient(
        nb,
        kernel_name="threadbook",
        timeout=timeout,
        resources={"metadata": {"path": str(HERE)}},
    )
    client.execute()
    return nb


WARM_CELLS = [
    ':dep threadbook-toolkit = { path = "toolkit" }\n:dep rayon = "1"\n:dep libc = "0.2"',
    "use rayon::prelude::*;\n(0..1000u64).into_par_iter().sum::<u64>()",
    # the helper programs the notebooks start (tb-cluster compiles timely: a minute or two once)
    "[tb::course::bins::worker_path(), tb::course::bins::demo_path(), tb::course::bins::cluster_path()]"
    ".iter().all(|p| p.exists())",
]


def warm(timeout: int):
    from jupyter_client.manager import start_new_kernel

    t0 = time.monotonic()
    km, kc = start_new_kernel(kernel_name="threadbook", cwd=str(HERE), startup_timeout=120)
    try:
        for code in WARM_CELLS:
            reply = kc.execute_interactive(code, timeout=timeout, output_hook=lambda m: None)
            if reply["content"]["status"] != "ok":
                raise SystemExit(f"warming failed at {code!r}: {reply['content'].get('evalue')}")
    finally:
        kc.stop_channels()
        km.shutdown_kernel(now=True)
    print(f"build cache warm ({time.monotonic() - t0:.1f} s)")


def tags(cell):
    return cell.get("metadata", {}).get("tags", [])


def student_edition(nb: nbformat.NotebookNode) -> nbformat.NotebookNode:
    """The notebook without solutions and without the outputs that would give answers away."""
    nb = nbformat.from_dict(json.loads(json.dumps(nb)))  # a copy
    cells = nb.cells
    quiet = set()
    # from each prediction to the last cell that reads it: the measurement the learner must predict
    for i, cell in enumerate(cells):
        if cell.cell_type != "code":
            continue
        for var in re.findall(r"\blet\s+(my_\w+)", cell.source):
            uses = [j for j, c in enumerate(cells) if j > i and c.cell_type == "code" and re.search(rf"\b{var}\b", c.source)]
            quiet.update(range(i + 1, max(uses, default=i) + 1))
    kept, after_solution = [], False
    for i, cell in enumerate(cells):
        if "solution" in tags(cell):
            after_solution = True
            continue
        if cell.cell_type == "code":
            if i in quiet or "check" in tags(cell) or after_solution:
                cell.outputs = []
                cell.execution_count = None
            after_solution = False
        kept.append(cell)
    count = 0
    for cell in kept:
        if cell.cell_type == "code" and cell.get("execution_count") is not None:
            count += 1
            cell.execution_count = count
            for out in cell.outputs:
                if "execution_count" in out:
                    out["execution_count"] = count
    nb.cells = kept
    return nb


def to_html(nb) -> str:
    exporter = HTMLExporter(config=Config())
    body, _ = exporter.from_notebook_node(nb)
    return body


def write_index(out: Path, names, title: str):
    items = "\n".join(
        f'<li><a href="{html.escape(n)}.html">{html.escape(n)}</a></li>' for n in names
    )
    (out / "index.html").write_text(
        f"<!doctype html><meta charset='utf-8'><title>{title}</title>"
        f"<h1>{title}</h1><ol>{items}</ol>\n"
    )


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, help="folder for the executed notebooks and HTML")
    ap.add_argument("--warm", action="store_true", help="only build the course's dependencies")
    ap.add_argument("--student", action="store_true", help="drop solutions and the outputs that give answers away")
    ap.add_argument("--reuse", type=Path, help="take executed notebooks from this folder")
    ap.add_argument("--timeout", type=int, default=600, help="seconds per cell")
    ap.add_argument("notebooks", nargs="*", type=Path, help="default: every course notebook")
    args = ap.parse_args()
    if args.warm:
        return warm(args.timeout)
    if not args.out:
        ap.error("--out is required")
    args.out.mkdir(parents=True, exist_ok=True)
    paths = args.notebooks or course_notebooks()
    timings = {}
    for path in paths:
        name = path.stem
        if args.reuse:
            nb = nbformat.read(args.reuse / f"{name}.ipynb", as_version=4)
        else:
            t0 = time.monotonic()
            print(f"running {path.name} ...", flush=True)
            nb = execute(path, args.timeout)
            timings[name] = round(time.monotonic() - t0, 1)
            print(f"  {timings[name]} s", flush=True)
        if args.student:
            nb = student_edition(nb)
        nbformat.write(nb, args.out / f"{name}.ipynb")
        (args.out / f"{name}.html").write_text(to_html(nb))
    title = "threadbook course" + (" (student edition)" if args.student else "")
    write_index(args.out, [p.stem for p in paths], title)
    if timings:
        timings["total"] = round(sum(timings.values()), 1)
        (args.out / "timings.json").write_text(json.dumps(timings, indent=2) + "\n")
        print(f"course executed in {timings['total']} s")


if __name__ == "__main__":
    sys.exit(main())
