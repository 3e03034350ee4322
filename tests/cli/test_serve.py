"""`hyphae serve` as a newcomer runs it: embedded Postgres, REST + gRPC, clean Ctrl-C, data kept across starts."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import IO

import httpx

from tests.conftest import TEST_SECRET_KEY

HYPHAE = [sys.executable, "-m", "cli.main"]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def environment(data_dir: Path, http_port: int, grpc_port: int) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("HYPHAE_")}
    env.update(HYPHAE_DATA_DIR=str(data_dir), HYPHAE_HTTP_PORT=str(http_port), HYPHAE_GRPC_PORT=str(grpc_port))
    return env


def shared_database_environment(
    database_url: str, data_dir: Path, http_port: int, grpc_port: int, **settings: str
) -> dict[str, str]:
    """The environment of processes sharing one database (a server, its `hyphae worker`s): trusted org header,
    the tests' secret key, loopback allowed for outbound calls, then `settings` (HYPHAE_... = value)."""
    env = environment(data_dir, http_port, grpc_port)
    env.update(
        HYPHAE_DATABASE_URL=database_url,
        HYPHAE_TRUST_ORG_HEADER="true",
        HYPHAE_SECRET_KEY=TEST_SECRET_KEY,
        HYPHAE_OUTBOUND_ALLOW="127.0.0.1",
        **settings,
    )
    return env


def spawn_worker(env: dict[str, str]) -> subprocess.Popen[bytes]:
    """A `hyphae worker` process (output discarded)."""
    return subprocess.Popen([*HYPHAE, "worker"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


# Output of processes from `launch`, by pid. A file, not a pipe: nobody reads a pipe while the test runs, and a
# server that logs a lot (retries during a database outage) would block on a full pipe and stop answering.
_outputs: dict[int, IO[str]] = {}


def launch(args: list[str], env: dict[str, str] | None = None) -> subprocess.Popen[str]:
    """A `hyphae` process (args after `hyphae`) whose stdout and stderr go to a temporary file; `output` reads it."""
    log = tempfile.TemporaryFile("w+")  # noqa: SIM115 - closed by `stop`
    process = subprocess.Popen([*HYPHAE, *args], env=env, stdout=log, stderr=subprocess.STDOUT, text=True)
    _outputs[process.pid] = log
    return process


def output(process: subprocess.Popen[str]) -> str:
    """All a `launch`ed process has printed so far."""
    log = _outputs[process.pid]
    log.flush()
    log.seek(0)
    return log.read()


def start(env: dict[str, str], http_port: int) -> subprocess.Popen[str]:
    process = launch(["serve"], env)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"hyphae serve exited early:\n{output(process)}")
        try:
            if httpx.get(f"http://127.0.0.1:{http_port}/health", timeout=1).status_code == 200:
                return process
        except httpx.TransportError:
            time.sleep(0.2)
    process.kill()
    raise AssertionError("hyphae serve did not answer /health within 60 s")


def stop(process: subprocess.Popen[str]) -> str:
    """Ctrl-C a `launch`ed process; it must exit 0. Returns its output."""
    process.send_signal(signal.SIGINT)
    process.wait(timeout=30)
    printed = output(process)
    _outputs.pop(process.pid).close()
    assert process.returncode == 0, printed
    return printed


def test_serve_stops_cleanly_and_keeps_data_between_starts(data_dir: Path) -> None:
    http_port, grpc_port = free_port(), free_port()
    env = environment(data_dir, http_port, grpc_port)
    base = f"http://127.0.0.1:{http_port}"
    headers = {"X-Org-Id": "tutorial-org"}
    workflow = {"name": "kept", "definition": {"actions": [{"type": "PbotApproval", "properties": {"comment": "?"}}]}}

    first = start(env, http_port)
    try:
        assert httpx.post(f"{base}/workflows", json=workflow, headers=headers).status_code == 201
    finally:
        output = stop(first)
    assert f"REST http://127.0.0.1:{http_port}" in output
    assert not list(data_dir.glob("pgdata/postmaster.pid")), "the embedded Postgres must stop with the server"

    second = start(env, http_port)
    try:
        names = [w["name"] for w in httpx.get(f"{base}/workflows", headers=headers).json()["workflows"]]
        assert names == ["kept"]
    finally:
        stop(second)


def test_orgs_create_prints_a_working_key(data_dir: Path) -> None:
    http_port, grpc_port = free_port(), free_port()
    env = environment(data_dir, http_port, grpc_port)
    created = subprocess.run(
        [*HYPHAE, "orgs", "create", "Acme", "--id", "acme"], env=env, capture_output=True, text=True, timeout=120
    )
    assert created.returncode == 0, created.stderr
    key = next(line.split()[-1] for line in created.stdout.splitlines() if line.startswith("key:"))
    assert key.startswith("sk-hyp-")
    process = start(env, http_port)
    try:
        listed = httpx.get(f"http://127.0.0.1:{http_port}/workflows", headers={"Authorization": f"Bearer {key}"})
        assert listed.status_code == 200
        assert listed.json() == {"workflows": [], "next_page_token": ""}
    finally:
        stop(process)


def test_gateway_command_fronts_a_running_server(data_dir: Path) -> None:
    http_port, grpc_port, gateway_port = free_port(), free_port(), free_port()
    env = environment(data_dir, http_port, grpc_port)
    server = start(env, http_port)
    gateway = launch(
        ["gateway", "--grpc-target", f"127.0.0.1:{grpc_port}"], {**env, "HYPHAE_HTTP_PORT": str(gateway_port)}
    )
    try:
        base = f"http://127.0.0.1:{gateway_port}"
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                httpx.get(f"{base}/health", timeout=1)
                break
            except httpx.TransportError:
                time.sleep(0.2)
        headers = {"X-Org-Id": "split-org"}
        body = {"name": "via-gateway", "definition": {"actions": []}}
        assert httpx.post(f"{base}/workflows", json=body, headers=headers).status_code == 201
        names = [
            w["name"] for w in httpx.get(f"http://127.0.0.1:{http_port}/workflows", headers=headers).json()["workflows"]
        ]
        assert names == ["via-gateway"]
    finally:
        stop(gateway)
        stop(server)


def test_busy_ports_are_one_clear_error(data_dir: Path) -> None:
    http_port, grpc_port = free_port(), free_port()
    env = environment(data_dir, http_port, grpc_port)
    first = start(env, http_port)
    try:
        for busy in ({"HYPHAE_HTTP_PORT": str(http_port)}, {"HYPHAE_HTTP_PORT": str(free_port())}):
            second = subprocess.run(
                [*HYPHAE, "serve"], env={**env, **busy}, capture_output=True, text=True, timeout=120
            )
            assert second.returncode == 1
            assert "cannot listen for" in second.stderr
            assert "Traceback" not in second.stderr
    finally:
        stop(first)
