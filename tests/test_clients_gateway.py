"""A kernel gateway (jupyter_kernel_gateway) on loopback with a token: the
threadbook kernel created, used, interrupted and deleted over the gateway's
REST and WebSocket API, as a notebook server with a remote gateway (or any
gateway client) does it.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass

import pytest
import requests

from clients.servers import (
    VENV_BIN,
    KernelSocket,
    Server,
    alive,
    artifacts,
    free_port,
    pids_mentioning,
    wait_until,
)
from conftest import COMPILE_TIMEOUT, RUST_KERNEL_NAME


@dataclass
class Gateway:
    base: str
    token: str
    server: Server

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"token {self.token}"}

    def url(self, path: str) -> str:
        return self.base + path

    def ws_url(self, kernel_id: str) -> str:
        return self.base.replace("http://", "ws://") + f"/api/kernels/{kernel_id}/channels"

    def create_kernel(self) -> str:
        r = requests.post(self.url("/api/kernels"), headers=self.headers, json={"name": RUST_KERNEL_NAME}, timeout=30)
        assert r.status_code == 201, r.text
        assert r.json()["name"] == RUST_KERNEL_NAME
        return r.json()["id"]

    def delete_kernel(self, kernel_id: str) -> int:
        return requests.delete(self.url(f"/api/kernels/{kernel_id}"), headers=self.headers, timeout=30).status_code

    def connect(self, kernel_id: str) -> KernelSocket:
        return KernelSocket(self.ws_url(kernel_id), self.headers)


@pytest.fixture(scope="module")
def gateway():
    folder = artifacts("gateway")
    port, token = free_port(), secrets.token_hex(16)
    server = Server("kernel-gateway", [
        str(VENV_BIN / "jupyter"), "kernelgateway",
        "--KernelGatewayApp.ip=127.0.0.1", f"--KernelGatewayApp.port={port}",
        "--KernelGatewayApp.port_retries=0", f"--KernelGatewayApp.auth_token={token}",
    ], folder).start()
    gw = Gateway(f"http://127.0.0.1:{port}", token, server)
    try:
        server.wait_http(gw.url("/api"), gw.headers)
        yield gw
    finally:
        leftovers = server.stop()
    assert not leftovers, f"kernels left running by the gateway: {leftovers}"


@pytest.fixture(scope="module")
def kernel(gateway):
    """One threadbook kernel on the gateway and a WebSocket to it, warmed up."""
    kid = gateway.create_kernel()
    ks = gateway.connect(kid)
    res = ks.execute("1 + 1", timeout=COMPILE_TIMEOUT)
    assert res.status == "ok" and res.result_text() == "2", res.describe()
    yield gateway, kid, ks
    ks.close()
    gateway.delete_kernel(kid)


def spin_and_interrupt(gateway: Gateway, kid: str, ks: KernelSocket):
    """Runs a cell that spins forever, interrupts it over REST once it runs,
    and returns what the cell did."""
    code = 'println!("spinning");\nloop {}'
    msg_id = ks.start(code)
    ks.wait_for(msg_id, lambda m: m["msg_type"] == "stream" and "spinning" in m["content"]["text"],
                timeout=COMPILE_TIMEOUT)
    r = requests.post(gateway.url(f"/api/kernels/{kid}/interrupt"), headers=gateway.headers, timeout=30)
    assert r.status_code == 204, r.text
    return ks.finish(msg_id, timeout=60)


def test_gateway_asks_for_its_token(gateway):
    assert requests.get(gateway.url("/api/kernelspecs"), timeout=10).status_code in (401, 403)
    r = requests.get(gateway.url("/api/kernelspecs"), headers=gateway.headers, timeout=10)
    assert r.status_code == 200
    spec = r.json()["kernelspecs"][RUST_KERNEL_NAME]["spec"]
    assert spec["language"] == "rust"
    assert spec["interrupt_mode"] == "message"


def test_gateway_runs_cells(kernel):
    _, _, ks = kernel
    res = ks.execute("6 * 7")
    assert res.status == "ok" and res.result_text() == "42", res.describe()

    res = ks.execute('println!("hello through the gateway");')
    assert res.status == "ok", res.describe()
    assert res.stream() == "hello through the gateway\n"
    assert res.result_text() is None

    res = ks.execute(':dep rayon = "1"\nuse rayon::prelude::*;\n'
                     "let total: u64 = (1..=1_000_000u64).into_par_iter().sum();\n"
                     'println!("rayon total = {total}");', timeout=COMPILE_TIMEOUT * 2)
    assert res.status == "ok", res.describe()
    assert res.stream() == "rayon total = 500000500000\n"
    res = ks.execute("total / 2")
    assert res.status == "ok" and res.result_text() == "250000250000", res.describe()


def test_gateway_interrupt_stops_a_running_cell(kernel):
    gateway, kid, ks = kernel
    res = spin_and_interrupt(gateway, kid, ks)
    assert res.status == "error", res.describe()
    assert len(res.errors()) == 1 and res.errors()[0]["ename"] == res.content["ename"]
    assert "interrupt" in res.errors()[0]["evalue"].lower(), res.describe()
    after = ks.execute('println!("still here");\n2 + 2')
    assert after.status == "ok", after.describe()
    assert after.stream() == "still here\n" and after.result_text() == "4"


def test_gateway_variable_survives_interrupt(kernel):
    """The interrupt stops the evaluation process; the kernel restores the
    learner's variables (replay) for the next cell."""
    gateway, kid, ks = kernel
    res = ks.execute("let kept: u64 = 41;")
    assert res.status == "ok", res.describe()
    spin_and_interrupt(gateway, kid, ks)
    res = ks.execute("kept + 1")
    assert res.status == "ok" and res.result_text() == "42", res.describe()


def test_gateway_deletes_the_kernel(gateway):
    kid = gateway.create_kernel()
    ks = gateway.connect(kid)
    res = ks.execute("1 + 2", timeout=COMPILE_TIMEOUT)
    assert res.result_text() == "3", res.describe()
    ks.close()
    pids = pids_mentioning(kid)
    assert pids, "the kernel's process (its connection file names the kernel id)"
    assert gateway.delete_kernel(kid) == 204
    r = requests.get(gateway.url(f"/api/kernels/{kid}"), headers=gateway.headers, timeout=10)
    assert r.status_code == 404
    wait_until(lambda: not any(alive(p) for p in pids), 15, "the deleted kernel's processes exiting")
