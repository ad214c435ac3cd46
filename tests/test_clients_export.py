"""The command-line clients a learner or teacher runs on the course as it is:
`jupyter nbconvert --execute --to html` and `jupyter execute` on a course
notebook in its own folder, and `jupyter run --kernel threadbook` on a `.rs`
file. The notebooks are read, never written (outputs go to a temporary
folder); the HTML is kept in build/test-artifacts/export/.
"""

from __future__ import annotations

import re
import subprocess

import nbformat
import pytest

from clients.servers import NOTEBOOKS, VENV_BIN, artifacts
from conftest import COMPILE_TIMEOUT, RUST_KERNEL_NAME

JUPYTER = str(VENV_BIN / "jupyter")
# A light course notebook: toolkit, rayon, child processes, tables and charts.
COURSE_NOTEBOOK = NOTEBOOKS / "05-parallelism.ipynb"
CELL_TIMEOUT = 300

RS_FILE = """\
let v: Vec<u64> = (1..=10).collect();
println!("sum = {}", v.iter().sum::<u64>());
v.len()
"""


def run(argv: list[str], **kw) -> subprocess.CompletedProcess:
    return subprocess.run(argv, capture_output=True, text=True, timeout=900, **kw)


def tags(cell) -> list[str]:
    return cell.get("metadata", {}).get("tags", [])


@pytest.fixture(scope="module")
def folder():
    return artifacts("export")


def test_nbconvert_execute_to_html(folder):
    proc = run([JUPYTER, "nbconvert", "--execute", "--to", "html",
                f"--ExecutePreprocessor.timeout={CELL_TIMEOUT}",
                f"--ExecutePreprocessor.startup_timeout={COMPILE_TIMEOUT}",
                "--output-dir", str(folder), str(COURSE_NOTEBOOK)])
    # A cell failing without the raises-exception tag fails the command.
    assert proc.returncode == 0, proc.stderr[-4000:]
    html = (folder / f"{COURSE_NOTEBOOK.stem}.html").read_text()
    code_cells = [c for c in nbformat.read(COURSE_NOTEBOOK, as_version=4).cells if c.cell_type == "code"]
    assert html.count('class="highlight hl-rust"') >= len(code_cells), "every code cell highlighted as Rust"
    assert '<span class="kd">let</span>' in html and '<span class="k">fn</span>' in html, "pygments' Rust tokens"
    charts = re.findall(r'data-mime-type="image/svg\+xml"|<svg\b', html)
    assert charts, "the notebook's charts are in the HTML"
    assert "<details>" in html and "<summary>" in html, "the recall checkpoint's answer"


def test_jupyter_execute_runs_the_notebook(folder):
    out = folder / "executed.ipynb"
    proc = run([JUPYTER, "execute", f"--timeout={CELL_TIMEOUT}", f"--startup_timeout={COMPILE_TIMEOUT}",
                f"--kernel_name={RUST_KERNEL_NAME}", f"--output={out}", str(COURSE_NOTEBOOK)])
    assert proc.returncode == 0, proc.stderr[-4000:]
    nb = nbformat.read(out, as_version=4)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert [c.execution_count for c in code] == list(range(1, len(code) + 1))
    for c in code:
        errors = [o for o in c.outputs if o.output_type == "error"]
        assert bool(errors) == ("raises-exception" in tags(c)), (c.source, errors)
    rich = [o.data for c in code for o in c.outputs if o.output_type in ("display_data", "execute_result")]
    assert any("image/svg+xml" in d or "<svg" in d.get("text/html", "") for d in rich), "a chart"


def test_jupyter_run_from_stdin(folder):
    proc = run([JUPYTER, "run", "--kernel", RUST_KERNEL_NAME], input=RS_FILE)
    assert proc.returncode == 0, proc.stderr[-4000:]
    assert proc.stdout.startswith("sum = 55\n"), proc.stdout
    assert proc.stdout.rstrip().endswith("10"), proc.stdout


def test_jupyter_run_a_rs_file(folder):
    src = folder / "sum.rs"
    src.write_text(RS_FILE)
    proc = run([JUPYTER, "run", "--kernel", RUST_KERNEL_NAME, str(src)])
    assert proc.returncode == 0, proc.stderr[-4000:]
    assert proc.stdout.startswith("sum = 55\n"), proc.stdout
