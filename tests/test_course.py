"""The course: every notebook's structure, its execution with the installed
kernel, and the HTML exports (full and student editions).

The exports are made once per test session by notebooks/export.py, the same
script `./run.sh` uses, into a temporary folder.
"""

import html
import json
import re
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = ROOT / "notebooks"
COURSE = [
    "00-start-here",
    "01-why-concurrency",
    "02-processors",
    "03-clusters",
    "04-concurrency",
    "05-parallelism",
    "06-concurrency-support-types",
    "07-threads-of-processes",
    "08-processes-vs-threads",
    "09-recall",
]


def source(nb, kind):
    return "\n".join(c.source for c in nb.cells if c.cell_type == kind)


def tags(cell):
    return cell.get("metadata", {}).get("tags", [])


def plain(html_text):
    """The text of an HTML page, tags removed (code is split into spans)."""
    return html.unescape(re.sub(r"<[^>]+>", "", html_text))


def stored(name):
    return nbformat.read(NOTEBOOKS / f"{name}.ipynb", as_version=4)


@pytest.fixture(scope="session")
def exports(tmp_path_factory):
    """Runs the course once: (full edition folder, student edition folder)."""
    out = tmp_path_factory.mktemp("course")
    full, student = out / "html", out / "student"
    subprocess.run(
        [sys.executable, str(NOTEBOOKS / "export.py"), "--out", str(full)],
        check=True,
        cwd=ROOT,
    )
    subprocess.run(
        [sys.executable, str(NOTEBOOKS / "export.py"), "--out", str(student), "--student", "--reuse", str(full)],
        check=True,
        cwd=ROOT,
    )
    timings = json.loads((full / "timings.json").read_text())
    print("\ncourse execution times (s):", json.dumps(timings))
    return full, student


def test_every_section_has_its_notebook():
    present = sorted(p.stem for p in NOTEBOOKS.glob("*.ipynb"))
    assert present == COURSE


@pytest.mark.parametrize("name", COURSE)
def test_notebook_is_stored_without_outputs(name):
    nb = stored(name)
    for cell in nb.cells:
        if cell.cell_type == "code":
            assert cell.outputs == [], f"{name}: a code cell has stored outputs"
            assert cell.execution_count is None
    assert nb.metadata["kernelspec"]["name"] == "threadbook"


@pytest.mark.parametrize("name", COURSE)
def test_notebook_structure(name):
    nb = stored(name)
    code = source(nb, "code")
    md = source(nb, "markdown")
    assert nb.cells[0].cell_type == "markdown" and ">" in nb.cells[0].source, "starts with the notes' words"
    assert re.search(r"std::thread|thread::(spawn|scope)", code), "uses std::thread"
    assert ":dep rayon" in code and re.search(r"par_iter|rayon::", code), "uses rayon"
    assert re.search(r"std::process|Command::new|procs::|tb::demo|demo::run", code), "uses child processes"
    assert "<details>" in md and "<summary>" in md, "has a recall checkpoint"
    assert "todo!(" in code, "has an exercise stub"
    assert any("solution" in tags(c) for c in nb.cells), "has a solution cell"


@pytest.mark.parametrize("name", COURSE)
def test_notebook_runs_with_charts(exports, name):
    full, _ = exports
    nb = nbformat.read(full / f"{name}.ipynb", as_version=4)
    errors_outside_tagged = []
    for cell in nb.cells:
        if cell.cell_type != "code":
            continue
        errors = [o for o in cell.outputs if o.output_type == "error"]
        if "raises-exception" in tags(cell):
            assert errors, f"{name}: a cell tagged raises-exception did not fail:\n{cell.source}"
        elif errors:
            errors_outside_tagged.append(cell.source)
    assert not errors_outside_tagged
    rich = [
        o.get("data", {}).get("text/html", "") + o.get("data", {}).get("image/svg+xml", "")
        for c in nb.cells
        if c.cell_type == "code"
        for o in c.outputs
    ]
    assert any("<svg" in r for r in rich), f"{name}: no chart in the executed notebook"


@pytest.mark.parametrize("name", COURSE)
def test_html_exports(exports, name):
    full, student = exports
    page = (full / f"{name}.html").read_text()
    assert "<svg" in page, "charts inline"
    assert "<details>" in page and "<summary>" in page, "checkpoint answers present"
    nb = nbformat.read(full / f"{name}.ipynb", as_version=4)
    solutions = [c for c in nb.cells if "solution" in tags(c)]
    student_nb = nbformat.read(student / f"{name}.ipynb", as_version=4)
    assert not [c for c in student_nb.cells if "solution" in tags(c)]
    full_text = plain(page)
    student_text = plain((student / f"{name}.html").read_text())
    others = "\n".join(c.source for c in nb.cells if "solution" not in tags(c))
    for cell in solutions:
        # a line only the solution has must be in the full edition, not the student one
        own = [l.strip() for l in cell.source.splitlines() if len(l.strip()) > 12 and l.strip() not in others]
        assert own, f"{name}: the solution cell repeats other cells"
        assert own[0] in full_text
        assert own[0] not in student_text, own[0]
    assert (full / "index.html").exists() and (student / "index.html").exists()
