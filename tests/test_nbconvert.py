"""Headless notebook execution with the tools people actually use:
``jupyter nbconvert --execute`` (a subprocess through the venv) and nbclient.
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

from conftest import COMPILE_TIMEOUT, RUST_KERNEL_NAME

VENV_BIN = Path(sys.executable).parent
JUPYTER = str(VENV_BIN / "jupyter")
CELL_TIMEOUT = 300

SCOPED_THREADS = """\
let data: Vec<u64> = (1..=1000).collect();
let total: u64 = std::thread::scope(|s| {
    let handles: Vec<_> = data.chunks(250).map(|c| s.spawn(move || c.iter().sum::<u64>())).collect();
    handles.into_iter().map(|h| h.join().unwrap()).sum()
});
println!("scoped total = {total}");"""

PAR_ITER = """\
use rayon::prelude::*;
let par: u64 = (1..=1_000_000u64).into_par_iter().sum();
println!("par sum = {par}");"""

ECHO = """\
{
    let out = std::process::Command::new("echo").arg("hello from echo").output().unwrap();
    println!("echo said: {}", String::from_utf8_lossy(&out.stdout).trim());
}"""

RICH = ('println!("{}", r#"THREADBOOK_DISPLAY {"data":{"text/plain":"rich","text/html":"<b>rich-html</b>"},'
        '"metadata":{},"display_id":null,"update":false}"#);')


def notebook(cells) -> nbformat.NotebookNode:
    nb = new_notebook(cells=cells)
    nb.metadata["kernelspec"] = {"name": RUST_KERNEL_NAME, "display_name": "Rust (threadbook)", "language": "rust"}
    return nb


def threads_notebook() -> nbformat.NotebookNode:
    return notebook([
        new_markdown_cell("# Threads and rayon"),
        new_code_cell(':dep rayon = "1"'),
        new_code_cell(SCOPED_THREADS),
        new_code_cell(PAR_ITER),
        new_code_cell(ECHO),
        new_code_cell(RICH),
        new_code_cell("6 * 7"),
    ])


def stream_text(cell) -> str:
    return "".join(o.get("text", "") for o in cell.outputs if o.output_type == "stream")


@pytest.fixture(scope="module")
def executed_html(tmp_path_factory):
    """The threads notebook executed by `jupyter nbconvert --execute --to html`."""
    d = tmp_path_factory.mktemp("nbconvert")
    src = d / "threads.ipynb"
    nbformat.write(threads_notebook(), src)
    t0 = time.monotonic()
    proc = subprocess.run(
        [JUPYTER, "nbconvert", "--execute", "--to", "html",
         f"--ExecutePreprocessor.timeout={CELL_TIMEOUT}",
         f"--ExecutePreprocessor.startup_timeout={COMPILE_TIMEOUT}",
         "--output-dir", str(d), str(src)],
        capture_output=True, text=True, timeout=900,
    )
    print(f"\nnbconvert --execute --to html: {time.monotonic() - t0:.1f} s")
    assert proc.returncode == 0, proc.stderr[-4000:]
    html = (d / "threads.html").read_text()
    return d, html


def test_nbconvert_html_has_all_outputs(executed_html):
    d, html = executed_html
    assert "scoped total = 500500" in html
    assert "par sum = 500000500000" in html
    assert "echo said: hello from echo" in html
    assert "<b>rich-html</b>" in html, "rich display rendered as HTML"
    assert "42" in html
    assert "Threads and rayon" in html


@pytest.fixture(scope="module")
def executed_notebook(tmp_path_factory):
    """The threads notebook executed by `jupyter nbconvert --execute --to notebook`."""
    d = tmp_path_factory.mktemp("executed")
    src = d / "threads.ipynb"
    nbformat.write(threads_notebook(), src)
    proc = subprocess.run(
        [JUPYTER, "nbconvert", "--execute", "--to", "notebook",
         f"--ExecutePreprocessor.timeout={CELL_TIMEOUT}",
         f"--ExecutePreprocessor.startup_timeout={COMPILE_TIMEOUT}",
         "--output", "executed", "--output-dir", str(d), str(src)],
        capture_output=True, text=True, timeout=900,
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    return d / "executed.ipynb"


def test_nbconvert_executed_notebook(executed_notebook):
    nb = nbformat.read(executed_notebook, as_version=4)
    li = nb.metadata["language_info"]
    assert li["name"] == "rust"
    assert li["file_extension"] == ".rs"
    assert li["pygments_lexer"] == "rust"
    assert li["codemirror_mode"] == "rust"
    assert li["mimetype"] == "text/rust"
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert [c.execution_count for c in code] == list(range(1, len(code) + 1))
    for c in code:
        assert not [o for o in c.outputs if o.output_type == "error"], c.outputs
        assert "EVCXR_" not in stream_text(c) and "THREADBOOK_" not in stream_text(c)
    assert stream_text(code[1]) == "scoped total = 500500\n"
    assert stream_text(code[2]) == "par sum = 500000500000\n"
    assert stream_text(code[3]) == "echo said: hello from echo\n"
    rich = [o for o in code[4].outputs if o.output_type == "display_data"]
    assert len(rich) == 1 and rich[0].data["text/html"] == "<b>rich-html</b>"
    res = [o for o in code[5].outputs if o.output_type == "execute_result"]
    assert len(res) == 1 and res[0].data["text/plain"] == "42"


def test_executed_notebook_html_highlights_rust(executed_notebook):
    """nbconvert picks its lexer from the language_info the kernel reported.
    (A notebook without language_info, converted with --execute in one go,
    is highlighted before execution fills it in: an nbconvert limitation.)"""
    out = executed_notebook.parent / "highlight"
    proc = subprocess.run(
        [JUPYTER, "nbconvert", "--to", "html", "--output-dir", str(out), str(executed_notebook)],
        capture_output=True, text=True, timeout=120,
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    html = (out / "executed.html").read_text()
    assert 'class="highlight hl-rust"' in html
    assert '<span class="kd">let</span>' in html, "Rust keywords highlighted by pygments"


def test_executed_notebook_exports_as_rust_script(executed_notebook):
    out = executed_notebook.parent / "script"
    proc = subprocess.run(
        [JUPYTER, "nbconvert", "--to", "script", "--output-dir", str(out), str(executed_notebook)],
        capture_output=True, text=True, timeout=120,
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    script = (out / "executed.rs").read_text()
    assert "into_par_iter" in script


# --- nbclient ---------------------------------------------------------------------------


def _client(nb, **kw) -> NotebookClient:
    return NotebookClient(nb, kernel_name=RUST_KERNEL_NAME, timeout=CELL_TIMEOUT,
                          startup_timeout=COMPILE_TIMEOUT, **kw)


def test_nbclient_raises_exception_tag():
    failing = new_code_cell('let before = 1;\npanic!("expected failure");')
    failing.metadata["tags"] = ["raises-exception"]
    nb = notebook([
        new_code_cell("let kept = 20;"),
        failing,
        new_code_cell("kept + 22"),
    ])
    _client(nb).execute()
    errors = [o for o in nb.cells[1].outputs if o.output_type == "error"]
    assert len(errors) == 1
    assert errors[0].ename == "panic"
    assert errors[0].evalue == "expected failure"
    result = [o for o in nb.cells[2].outputs if o.output_type == "execute_result"]
    assert result and result[0].data["text/plain"] == "42"
    assert [c.execution_count for c in nb.cells] == [1, 2, 3]


def test_nbclient_untagged_error_stops_the_run():
    nb = notebook([
        new_code_cell('println!("first");'),
        new_code_cell('let x: u32 = "not a number";'),
        new_code_cell('println!("never");'),
    ])
    with pytest.raises(CellExecutionError) as info:
        _client(nb).execute()
    assert info.value.ename == "CompilationError"
    assert "cell line 1" in info.value.evalue
    assert stream_text(nb.cells[0]) == "first\n"
    assert nb.cells[2].outputs == [] and nb.cells[2].execution_count is None


def test_nbclient_allow_errors_runs_everything():
    nb = notebook([
        new_code_cell('panic!("one");'),
        new_code_cell('println!("still runs");'),
    ])
    _client(nb, allow_errors=True).execute()
    assert [o.ename for o in nb.cells[0].outputs if o.output_type == "error"] == ["panic"]
    assert stream_text(nb.cells[1]) == "still runs\n"
