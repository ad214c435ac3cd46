"""JupyterHub on loopback, set up as a teacher would for a class, with two
learners working at the same time.

- The hub: DummyAuthenticator (any password; two allowed learners), the
  local-process spawner (SimpleLocalProcessSpawner: one single-user Jupyter
  server per learner, each with a home of its own) and configurable-http-proxy
  from npm (tests/clients, pinned by its package-lock).
- The "image": the kernelspec installed into a prefix with
  `threadbook install --prefix`, found by the learners' servers through
  JUPYTER_PATH; the Rust toolchain and cargo's registry where the machine has
  them (RUSTUP_HOME, CARGO_HOME), since each learner's HOME is their own.
- The build cache: one THREADBOOK_CACHE_DIR for the class, pre-warmed with the
  course's dependencies (`notebooks/export.py --warm`, once per kernel that
  will run at the same time: each running kernel locks a build slot of its own).
- The course: every learner's server has its root at the course's folder.

Each learner gets a token from the hub's REST API with their password, starts
their server through it, opens a course notebook (a session, as JupyterLab
does) and runs all its code cells over the kernel's WebSocket. Both finish,
each in its own kernel process, under its own home. Logs:
build/test-artifacts/hub/.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from pathlib import Path

import nbformat
import pytest
import requests

from clients.servers import (
    NOTEBOOKS,
    REPO,
    VENV_BIN,
    KernelSocket,
    Server,
    alive,
    artifacts,
    end_processes,
    free_port,
    pids_mentioning,
    wait_until,
)
from conftest import RUST_KERNEL_NAME, kernel_executable

CHP = REPO / "tests" / "clients" / "node_modules" / ".bin" / "configurable-http-proxy"
LEARNERS = ["ada", "grace"]
NOTEBOOK = NOTEBOOKS / "05-parallelism.ipynb"
NOTEBOOK_TIMEOUT = 600

HUB_CONFIG = """\
c.JupyterHub.ip = "127.0.0.1"
c.JupyterHub.port = {port}
c.JupyterHub.hub_ip = "127.0.0.1"
c.JupyterHub.hub_port = {hub_port}
c.JupyterHub.db_url = "sqlite:///{folder}/jupyterhub.sqlite"
c.JupyterHub.cookie_secret_file = "{folder}/jupyterhub_cookie_secret"
c.ConfigurableHTTPProxy.command = ["{chp}"]
c.ConfigurableHTTPProxy.api_url = "http://127.0.0.1:{proxy_api_port}"

c.JupyterHub.authenticator_class = "dummy"
c.Authenticator.allowed_users = {learners!r}

c.JupyterHub.spawner_class = "simple"
c.SimpleLocalProcessSpawner.home_dir_template = "{folder}/homes/{{username}}"
c.Spawner.cmd = ["{singleuser}"]
c.Spawner.args = ["--ServerApp.allow_root=True", "--ServerApp.runtime_dir={runtime}"]
c.Spawner.notebook_dir = "{notebooks}"
c.Spawner.start_timeout = 120
c.Spawner.http_timeout = 120
c.Spawner.environment = {environment!r}
"""


def shared_cache() -> Path:
    """The machine's threadbook cache, as the kernel finds it (the set-up warmed it)."""
    if os.environ.get("THREADBOOK_CACHE_DIR"):
        return Path(os.environ["THREADBOOK_CACHE_DIR"])
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "threadbook"


def toolchain_env() -> dict[str, str]:
    rustup_home = subprocess.run(["rustup", "show", "home"], capture_output=True, text=True, check=True).stdout.strip()
    return {
        "RUSTUP_HOME": rustup_home,
        "CARGO_HOME": os.environ.get("CARGO_HOME") or str(Path.home() / ".cargo"),
    }


def prewarm(cache: Path, kernels: int) -> None:
    """The teacher's step: the course's dependencies built into `kernels`
    build slots, by that many warm-ups at once."""
    env = dict(os.environ, THREADBOOK_CACHE_DIR=str(cache))
    procs = [subprocess.Popen([sys.executable, str(NOTEBOOKS / "export.py"), "--warm"], env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
             for _ in range(kernels)]
    for p in procs:
        out, _ = p.communicate(timeout=900)
        assert p.returncode == 0, out[-4000:]


class Hub:
    def __init__(self, folder: Path):
        self.folder = folder
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        image = folder / "image"
        proc = subprocess.run([kernel_executable(), "install", "--prefix", str(image)],
                              capture_output=True, text=True, timeout=60)
        assert proc.returncode == 0, proc.stderr
        self.kernelspec = image / "share" / "jupyter" / "kernels" / RUST_KERNEL_NAME / "kernel.json"
        self.server = Server("jupyterhub", [str(VENV_BIN / "jupyterhub"), "-f", str(folder / "jupyterhub_config.py")],
                             folder, env={"PATH": f"{VENV_BIN}{os.pathsep}{os.environ['PATH']}"}, cwd=folder)
        environment = {
            "JUPYTER_PATH": str(image / "share" / "jupyter"),
            # The kernels' connection files, where Server.stop looks for leftovers.
            "JUPYTER_RUNTIME_DIR": str(self.server.runtime_dir),
            "THREADBOOK_CACHE_DIR": str(shared_cache()),
            **toolchain_env(),
        }
        (folder / "jupyterhub_config.py").write_text(HUB_CONFIG.format(
            port=self.port, hub_port=free_port(), proxy_api_port=free_port(), folder=folder, chp=CHP,
            learners=set(LEARNERS), singleuser=VENV_BIN / "jupyterhub-singleuser",
            runtime=self.server.runtime_dir, notebooks=NOTEBOOKS, environment=environment,
        ))

    def api(self, method: str, path: str, token: str | None = None, **kw) -> requests.Response:
        headers = {"Authorization": f"token {token}"} if token else {}
        return requests.request(method, self.base + path, headers=headers, timeout=60, **kw)


@pytest.fixture(scope="module")
def hub():
    assert CHP.exists(), f"{CHP} is missing: ./test.sh installs it with `npm ci` in tests/clients"
    folder = artifacts("hub")
    prewarm(shared_cache(), len(LEARNERS))
    hub = Hub(folder)
    hub.server.start()
    try:
        hub.server.wait_http(hub.base + "/hub/api/", timeout=120)
        yield hub
    finally:
        leftovers = hub.server.stop(grace=60)
        end_processes(pids_mentioning(str(CHP)))
    assert not leftovers, f"servers or kernels left running by the hub: {leftovers}"


class Learner:
    """A learner working through the hub's REST API and their own server."""

    def __init__(self, hub: Hub, name: str):
        self.hub, self.name = hub, name
        r = hub.api("POST", f"/hub/api/users/{name}/tokens",
                    json={"auth": {"username": name, "password": "any"}, "note": "test"})
        assert r.status_code in (200, 201), r.text
        self.token = r.json()["token"]
        self.kernel_id: str | None = None
        self.results: list = []
        self.error: BaseException | None = None

    def start_server(self) -> None:
        r = self.hub.api("POST", f"/hub/api/users/{self.name}/server", self.token)
        assert r.status_code in (201, 202), r.text

        def ready():
            user = self.hub.api("GET", f"/hub/api/users/{self.name}", self.token).json()
            return user.get("servers", {}).get("", {}).get("ready")
        wait_until(ready, 180, f"{self.name}'s server ready", every=0.5)

    def server_api(self, method: str, path: str, **kw) -> requests.Response:
        return self.hub.api(method, f"/user/{self.name}{path}", self.token, **kw)

    def open_notebook(self, path: str) -> None:
        r = self.server_api("POST", "/api/sessions", json={
            "path": path, "name": path, "type": "notebook", "kernel": {"name": RUST_KERNEL_NAME}})
        assert r.status_code == 201, r.text
        self.kernel_id = r.json()["kernel"]["id"]

    def run_notebook(self, nb) -> None:
        """Runs every code cell in order as JupyterLab's Run All does; keeps the results."""
        try:
            ws = KernelSocket(
                self.hub.base.replace("http://", "ws://") + f"/user/{self.name}/api/kernels/{self.kernel_id}/channels",
                {"Authorization": f"token {self.token}"})
            try:
                for cell in nb.cells:
                    if cell.cell_type == "code":
                        tagged = "raises-exception" in cell.get("metadata", {}).get("tags", [])
                        self.results.append((cell, ws.execute(cell.source, timeout=NOTEBOOK_TIMEOUT,
                                                              stop_on_error=not tagged)))
            finally:
                ws.close()
        except BaseException as e:  # reported by the test's thread
            self.error = e


def environ(pid: int) -> dict[str, str]:
    raw = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    return dict(item.decode(errors="replace").split("=", 1) for item in raw if b"=" in item)


def tags(cell) -> list[str]:
    return cell.get("metadata", {}).get("tags", [])


@pytest.fixture(scope="module")
def classroom(hub):
    """Both learners log in, start their servers, open the notebook and run it at the same time."""
    learners = [Learner(hub, name) for name in LEARNERS]
    for learner in learners:
        learner.start_server()
    for learner in learners:
        learner.open_notebook(NOTEBOOK.name)
    nb = nbformat.read(NOTEBOOK, as_version=4)
    threads = [threading.Thread(target=learner.run_notebook, args=(nb,)) for learner in learners]
    for t in threads:
        t.start()
    for t in threads:
        t.join(NOTEBOOK_TIMEOUT * 2)
    return nb, learners


def kernel_pid(learner: Learner) -> int:
    pids = pids_mentioning(f"kernel-{learner.kernel_id}.json", descendants=False)
    assert len(pids) == 1, f"{learner.name}'s kernel process: {pids}"
    return pids[0]


def test_hub_api_and_servers_ask_for_the_right_token(hub, classroom):
    _, (ada, grace) = classroom
    assert hub.api("GET", "/hub/api/users").status_code == 403, "the hub's API without a token"
    assert grace.server_api("GET", "/api/status").ok
    other = hub.api("GET", f"/user/{grace.name}/api/status", ada.token, allow_redirects=False)
    assert other.status_code in (302, 403), "a learner's token does not open another learner's server"


def test_hub_two_learners_run_a_course_notebook(classroom):
    nb, learners = classroom
    n_code = sum(c.cell_type == "code" for c in nb.cells)
    for learner in learners:
        if learner.error:
            raise learner.error
        assert len(learner.results) == n_code, f"{learner.name} ran {len(learner.results)} of {n_code} cells"
        for i, (cell, res) in enumerate(learner.results):
            assert res.content["execution_count"] == i + 1
            if "raises-exception" not in tags(cell):
                assert res.status == "ok", f"{learner.name}: {res.describe()}"
        charts = [m["content"]["data"] for _, res in learner.results for m in res.of_type("display_data")
                  if "image/svg+xml" in m["content"]["data"] or "<svg" in m["content"]["data"].get("text/html", "")]
        assert charts, f"{learner.name}'s notebook drew no chart"


def test_hub_each_learner_has_a_kernel_of_their_own(hub, classroom):
    _, (ada, grace) = classroom
    assert ada.kernel_id != grace.kernel_id
    pids = {}
    for learner in (ada, grace):
        pid = kernel_pid(learner)
        env = environ(pid)
        assert env["HOME"] == str(hub.folder / "homes" / learner.name)
        assert env["THREADBOOK_CACHE_DIR"] == str(shared_cache())
        pids[learner.name] = pid
    assert pids["ada"] != pids["grace"]


def test_hub_stopping_a_server_stops_its_kernel(hub, classroom):
    """The local-process spawner stops a server with SIGINT and the server exits
    without shutting its kernels down (jupyter_server leaves that to them):
    threadbook exits when its launcher (JPY_PARENT_PID) is gone."""
    _, learners = classroom
    pids = [kernel_pid(learner) for learner in learners]
    for learner in learners:
        r = hub.api("DELETE", f"/hub/api/users/{learner.name}/server", learner.token)
        assert r.status_code in (202, 204), r.text
    wait_until(lambda: not any(alive(p) for p in pids), 15, "the learners' kernels stopping with their servers")
