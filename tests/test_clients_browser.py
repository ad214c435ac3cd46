"""JupyterLab in a real browser: Debian's Chromium (/usr/bin/chromium), headless,
driven by Playwright (never a browser Playwright downloads).

JupyterLab runs on 127.0.0.1 with a token, its root at the course's folder, and
opens a course notebook from there, so `:dep threadbook-toolkit = { path =
"toolkit" }` resolves as it does for a learner. The test runs all cells and
checks what the page shows, then works in new cells as a learner does: Tab
completion, the toolbar's interrupt button, an input box. The notebook is
never saved (autosave off, no save command); the test checks the file is
unchanged. Screenshots of each step: build/test-artifacts/browser/.

Settings JupyterLab gets here (user settings of this server only):
- notebook windowingMode "none": every cell in the DOM, not only those in view;
- autosave off; no update check or news (no network here);
- checkpoints (written when a notebook is opened) in the artefacts folder.
"""

from __future__ import annotations

import hashlib
import json
import re
import time
import secrets
from pathlib import Path

import nbformat
import pytest
import requests

from clients.servers import NOTEBOOKS, VENV_BIN, Server, artifacts, free_port, wait_until
from conftest import COMPILE_TIMEOUT, RUST_KERNEL_NAME

CHROMIUM = Path("/usr/bin/chromium")
# Headless as root in a container; background networking off, or Chromium's
# own connections are refused here many at a time.
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
NOTEBOOK = NOTEBOOKS / "05-parallelism.ipynb"
LAB_SETTINGS = {
    "notebook-extension/tracker": {"windowingMode": "none"},
    "docmanager-extension/plugin": {"autosave": False},
    "apputils-extension/notification": {"checkForUpdates": False, "fetchNews": "false"},
}
RUN_ALL_TIMEOUT = 600

CELLS = ".jp-NotebookPanel .jp-Notebook .jp-Cell"
PROMPT_DONE = re.compile(r"^\[(\d+)\]:$")


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


class Lab:
    def __init__(self, folder: Path):
        self.folder = folder
        self.port, self.token = free_port(), secrets.token_hex(16)
        self.base = f"http://127.0.0.1:{self.port}"
        settings = folder / "lab-settings"
        for name, values in LAB_SETTINGS.items():
            path = settings / "@jupyterlab" / f"{name}.jupyterlab-settings"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps(values))
        self.server = Server("jupyterlab", [
            str(VENV_BIN / "jupyter"), "lab", "--no-browser", "--allow-root",
            "--ServerApp.ip=127.0.0.1", f"--ServerApp.port={self.port}", "--ServerApp.port_retries=0",
            f"--IdentityProvider.token={self.token}", f"--ServerApp.root_dir={NOTEBOOKS}",
            f"--LabApp.user_settings_dir={settings}", f"--LabApp.workspaces_dir={folder / 'lab-workspaces'}",
            # Opening a notebook writes a checkpoint of it; keep those out of the course folder.
            f"--FileCheckpoints.checkpoint_dir={folder / 'checkpoints'}",
            # window.jupyterapp: the page's notebook model, to tell error outputs
            # from stderr (JupyterLab renders both as the same stderr block).
            "--LabApp.expose_app_in_browser=True",
        ], folder)

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"token {self.token}"}

    def api(self, path: str):
        r = requests.get(self.base + path, headers=self.headers, timeout=10)
        r.raise_for_status()
        return r.json()


@pytest.fixture(scope="module")
def lab():
    folder = artifacts("browser")
    checkpoints = NOTEBOOKS / ".ipynb_checkpoints"
    had_checkpoints = checkpoints.exists()
    before = sha256(NOTEBOOK)
    lab = Lab(folder)
    lab.server.start()
    try:
        lab.server.wait_http(lab.base + "/api/status", lab.headers)
        yield lab
    finally:
        for s in requests.get(lab.base + "/api/sessions", headers=lab.headers, timeout=10).json():
            requests.delete(lab.base + f"/api/sessions/{s['id']}", headers=lab.headers, timeout=30)
        leftovers = lab.server.stop()
    assert not leftovers, f"kernels left running by JupyterLab: {leftovers}"
    assert sha256(NOTEBOOK) == before, "the course notebook was saved by the test"
    assert had_checkpoints or not checkpoints.exists(), "JupyterLab wrote checkpoints into notebooks/"
    assert list((folder / "checkpoints").glob("*.ipynb")), "the checkpoint went to the folder set for it"


class Notebook:
    """The notebook open in the page, seen and worked as a learner does."""

    def __init__(self, page, folder: Path):
        self.page = page
        self.folder = folder
        self.shots = 0

    def shot(self, name: str, element=None) -> None:
        self.shots += 1
        path = self.folder / f"{self.shots:02d}-{name}.png"
        (element or self.page).screenshot(path=str(path))

    def cells(self):
        return self.page.locator(CELLS)

    def code_cells(self):
        return self.page.locator(f"{CELLS}.jp-CodeCell")

    def prompts(self) -> list[str]:
        return [p.strip() for p in self.code_cells().locator(".jp-InputPrompt").all_inner_texts()]

    def model(self) -> list[dict]:
        """Each cell's type, tags and output types, from JupyterLab's notebook model."""
        return self.page.evaluate("""() => {
            const nb = window.jupyterapp.shell.currentWidget.content;
            return nb.widgets.map(c => ({
                type: c.model.type,
                tags: c.model.getMetadata('tags') || [],
                outputs: c.model.type === 'code' ? c.model.outputs.toJSON() : [],
            }));
        }""")

    def new_cell(self, code: str | None = None):
        """A new code cell at the end, in edit mode, with `code` in it."""
        self.cells().last.locator(".jp-InputPrompt").click()
        self.page.keyboard.press("Escape")
        self.page.keyboard.press("b")
        self.page.keyboard.press("Enter")
        if code:
            self.page.keyboard.insert_text(code)
        return self.cells().last

    def run_current(self) -> None:
        self.page.keyboard.press("Control+Enter")

    def wait_done(self, cell, timeout: float = COMPILE_TIMEOUT) -> int:
        """Waits for the cell's execution count; returns it."""
        prompt = cell.locator(".jp-InputPrompt")
        text = wait_until(lambda: PROMPT_DONE.match(prompt.inner_text().strip()), timeout,
                          "the cell's execution count")
        return int(text.group(1))

    def editor_text(self, cell) -> str:
        return cell.locator(".cm-content").inner_text()


def cell_of(locator):
    """The notebook cell an element is in."""
    return locator.evaluate_handle("e => e.closest('.jp-Cell')").as_element()


@pytest.fixture(scope="module")
def notebook(lab):
    assert CHROMIUM.exists(), "Debian's chromium is not installed (./test.sh installs it with apt-get)"
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        console = []
        page.on("console", lambda m: console.append(f"{m.type}: {m.text}"))
        page.set_default_timeout(60_000)
        nb = Notebook(page, lab.folder)
        try:
            page.goto(f"{lab.base}/lab/tree/{NOTEBOOK.name}?token={lab.token}")
            n_cells = len(nbformat.read(NOTEBOOK, as_version=4).cells)
            page.wait_for_function(f"() => document.querySelectorAll('{CELLS}').length === {n_cells}")

            def kernel_idle():
                sessions = lab.api("/api/sessions")
                return (len(sessions) == 1 and sessions[0]["kernel"]["name"] == RUST_KERNEL_NAME
                        and sessions[0]["kernel"]["execution_state"] == "idle")
            wait_until(kernel_idle, COMPILE_TIMEOUT, "the notebook's threadbook kernel ready")
            page.locator(".jp-NotebookPanel-toolbar .jp-KernelName", has_text="Rust (threadbook)").wait_for()
            nb.shot("opened")
            yield nb
        finally:
            nb.shot("last")
            (lab.folder / "browser-console.log").write_text("\n".join(console))
            browser.close()


def test_lab_runs_the_course_notebook(notebook):
    page = notebook.page
    page.get_by_role("menuitem", name="Run", exact=True).click()
    page.get_by_role("menuitem", name="Run All Cells", exact=True).click()
    n_code = notebook.code_cells().count()
    wait_until(lambda: all(PROMPT_DONE.match(p) for p in notebook.prompts()), RUN_ALL_TIMEOUT,
               "every code cell's execution count after Run All", every=1)
    notebook.shot("ran-all")
    assert [int(PROMPT_DONE.match(p).group(1)) for p in notebook.prompts()] == list(range(1, n_code + 1))

    model = notebook.model()
    for i, cell in enumerate(model):
        errors = [o for o in cell["outputs"] if o["output_type"] == "error"]
        if "raises-exception" not in cell["tags"]:
            assert not errors, f"cell {i} failed: {errors}"

    charts = page.locator(".jp-OutputArea-output svg, .jp-OutputArea-output img[src^='data:image/svg+xml']")
    assert charts.count() > 0, "no chart rendered"
    first = charts.first
    first.scroll_into_view_if_needed()
    box = first.bounding_box()
    assert box and box["width"] > 100 and box["height"] > 50, f"the first chart is not drawn: {box}"
    notebook.shot("chart", cell_of(first))


def test_lab_details_answer_expands(notebook):
    details = notebook.page.locator(f"{CELLS}.jp-MarkdownCell details").first
    details.scroll_into_view_if_needed()
    answer = details.locator(":scope > :not(summary)").first
    assert not details.evaluate("d => d.open") and not answer.is_visible()
    details.locator("summary").click()
    wait_until(lambda: details.evaluate("d => d.open"), 10, "the <details> answer opening")
    assert answer.is_visible() and answer.inner_text().strip()
    notebook.shot("details-open", cell_of(details))


def test_lab_tab_completion_inserts_the_name(notebook):
    page = notebook.page
    cell = notebook.new_cell("let v: Vec<u64> = vec![1, 2, 3];")
    notebook.run_current()
    notebook.wait_done(cell)

    cell = notebook.new_cell()
    page.keyboard.type("std::mem::repl")
    popup = page.locator(".jp-Completer:not(.lm-mod-hidden)")

    def tab_answered():
        # JupyterLab waits 1 s (its default): while rust-analyzer still analyses (after the
        # notebook's :dep cells) the kernel answers at once with what it has; a learner
        # presses Tab again.
        page.keyboard.press("Tab")
        time.sleep(1.5)
        return popup.is_visible() or notebook.editor_text(cell) != "std::mem::repl"

    # One match is inserted at once; several show the popup.
    wait_until(tab_answered, 60, "completion of std::mem::repl")
    notebook.shot("completion-repl")
    if popup.is_visible():
        assert "replace" in popup.locator(".jp-Completer-match").all_inner_texts()
        page.keyboard.press("Enter")
    assert notebook.editor_text(cell) == "std::mem::replace"

    page.keyboard.press("Control+a")
    page.keyboard.type("v.it")

    def popup_shown():
        page.keyboard.press("Tab")
        time.sleep(1.5)
        return popup.is_visible()

    wait_until(popup_shown, 60, "the completion popup for v.it")
    matches = popup.locator(".jp-Completer-match").all_inner_texts()
    notebook.shot("completion-popup")
    assert {"iter", "iter_mut"} <= set(matches), matches
    match = page.locator(".jp-Completer-match", has_text=re.compile(r"^iter_mut$"))
    popup.locator(".jp-Completer-item").filter(has=match).click()
    assert notebook.editor_text(cell) == "v.iter_mut"


def test_lab_interrupt_button_stops_a_loop(notebook):
    page = notebook.page
    cell = notebook.new_cell('println!("spinning");\nloop {}')
    notebook.run_current()
    cell.locator(".jp-OutputArea-output", has_text="spinning").wait_for(timeout=COMPILE_TIMEOUT * 1000)
    notebook.shot("spinning")
    page.locator('.jp-NotebookPanel-toolbar [data-command="notebook:interrupt-kernel"]').click()
    notebook.wait_done(cell, timeout=60)
    notebook.shot("interrupted")
    errors = [o for o in notebook.model()[-1]["outputs"] if o["output_type"] == "error"]
    assert len(errors) == 1 and "interrupt" in errors[0]["evalue"].lower(), errors

    cell = notebook.new_cell('println!("after the interrupt");\n6 * 7')
    notebook.run_current()
    notebook.wait_done(cell)
    assert "after the interrupt" in cell.locator(".jp-OutputArea").inner_text()
    assert cell.locator(".jp-OutputArea-executeResult").inner_text().strip().endswith("42")
    notebook.shot("next-cell-ran")


def test_lab_input_box(notebook):
    cell = notebook.new_cell('let name = evcxr_input::get_string("name? ");\nprintln!("hello, {name}!");')
    notebook.run_current()
    box = cell.locator(".jp-Stdin-input")
    box.wait_for(timeout=COMPILE_TIMEOUT * 1000)
    assert cell.locator(".jp-Stdin-prompt").inner_text().startswith("name? ")
    box.fill("Ada")
    notebook.shot("input-box")
    box.press("Enter")
    notebook.wait_done(cell)
    cell.locator(".jp-OutputArea-output", has_text="hello, Ada!").wait_for()
    assert "name?  Ada" in cell.locator(".jp-OutputArea").inner_text()
    notebook.shot("input-answered")
