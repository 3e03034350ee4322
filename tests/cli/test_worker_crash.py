"""Fault test: a worker SIGKILLed inside an HTTP step; another worker finishes the run. Every step's side effect
is observed once per idempotency key (the retried call carries the same key), and events stay in order."""

from __future__ import annotations

import json
import signal
import subprocess
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa

from server.store.db import sqlalchemy_url
from tests.cli.test_serve import HYPHAE, free_port, shared_database_environment, spawn_worker, start, stop


class SlowOnce:
    """Counts calls per path and Idempotency-Key; the first call to /slow hangs until released."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, str]] = []
        self.slow_entered = threading.Event()
        self.release = threading.Event()
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                self.rfile.read(int(self.headers.get("content-length") or 0))
                owner.calls.append((self.path, self.headers.get("idempotency-key") or ""))
                if self.path == "/slow" and not owner.slow_entered.is_set():
                    owner.slow_entered.set()
                    owner.release.wait(30)
                body = b'{"ok": true}'
                try:
                    self.send_response(200)
                    self.send_header("content-type", "application/json")
                    self.send_header("content-length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body)
                except OSError:
                    pass  # the caller died

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.base = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


@pytest.fixture
def endpoint() -> Iterator[SlowOnce]:
    server = SlowOnce()
    yield server
    server.release.set()
    server.server.shutdown()


def test_a_killed_worker_is_replaced_without_repeating_side_effects(
    fresh_database: str,
    data_dir: Path,
    endpoint: SlowOnce,
) -> None:
    http_port, grpc_port = free_port(), free_port()
    env = shared_database_environment(
        fresh_database,
        data_dir,
        http_port,
        grpc_port,
        HYPHAE_LEASE_SECONDS="2",
    )
    api_server = start({**env, "HYPHAE_WORKERS": "0"}, http_port)
    first_worker = spawn_worker(env)
    second_worker: subprocess.Popen[bytes] | None = None
    try:
        api = httpx.Client(base_url=f"http://127.0.0.1:{http_port}", headers={"X-Org-Id": "crash-org"})
        for name, path in (("fast_a", "/a"), ("slow_b", "/slow"), ("fast_c", "/c")):
            action = {"action_name": name, "kind": "http", "url": endpoint.base + path, "http_method": "POST"}
            assert api.post("/actions", json=action).status_code == 201
        steps = [{"type": name, "properties": {"n": i}} for i, name in enumerate(("fast_a", "slow_b", "fast_c"))]
        workflow = api.post("/workflows", json={"name": "crashy", "definition": {"actions": steps}}).json()
        run_id = api.post(f"/workflows/{workflow['id']}/execute", json={"input": {}}).json()["run_id"]

        assert endpoint.slow_entered.wait(30), "the first worker never reached the slow step"
        first_worker.send_signal(signal.SIGKILL)
        first_worker.wait(10)
        endpoint.release.set()
        second_worker = subprocess.Popen(
            [*HYPHAE, "worker"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )

        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            run = api.get(f"/runs/{run_id}/status").json()
            if run["status"] != "running":
                break
            time.sleep(0.2)
        assert run["status"] == "completed", run
        assert [step["attempts"] for step in run["steps"]] == [1, 2, 1]

        keys = {path: {key for p, key in endpoint.calls if p == path} for path in ("/a", "/slow", "/c")}
        assert keys == {"/a": {f"{run_id}:0"}, "/slow": {f"{run_id}:1"}, "/c": {f"{run_id}:2"}}
        assert [p for p, _ in endpoint.calls].count("/a") == 1  # committed steps never run again
        assert [p for p, _ in endpoint.calls].count("/c") == 1

        engine = sa.create_engine(sqlalchemy_url(fresh_database))
        with engine.connect() as connection:
            sequences = [
                row.sequence
                for row in connection.execute(
                    sa.text("SELECT sequence FROM run_events WHERE run_id = :r ORDER BY sequence"), {"r": run_id}
                )
            ]
        engine.dispose()
        assert sequences == list(range(1, len(sequences) + 1))
        assert json.dumps(sequences)  # ordered, gapless, no duplicates (primary key)
    finally:
        for worker in (first_worker, second_worker):
            if worker is not None and worker.poll() is None:
                worker.send_signal(signal.SIGINT)
                worker.wait(30)
        stop(api_server)
