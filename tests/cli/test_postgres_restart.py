"""Fault test: Postgres stopped in the middle of a multi-step run (inside an HTTP step) and started again. The server
process survives the outage, its worker resumes the run from its last committed step, every side effect is observed
once per idempotency key, events stay gapless, and the LISTEN connection comes back (a live stream opened before the
outage delivers the run's completion).

The test owns its Postgres (server/embedded_pg.py on its own data directory and socket): the machine's shared
server is never restarted."""

from __future__ import annotations

import contextlib
import json
import queue
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest

from server.embedded_pg import EmbeddedPostgres
from server.store.db import ensure_database
from tests.cli.test_serve import free_port, shared_database_environment, start, stop


class SlowOnce:
    """Counts calls per path and Idempotency-Key; after `reset`, the first call to /slow hangs until released."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, str]] = []
        self.slow_entered = threading.Event()
        self.release = threading.Event()
        self.armed = False
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                self.rfile.read(int(self.headers.get("content-length") or 0))
                owner.calls.append((self.path, self.headers.get("idempotency-key") or ""))
                if self.path == "/slow" and owner.armed and not owner.slow_entered.is_set():
                    owner.slow_entered.set()
                    owner.release.wait(60)
                body = b'{"ok": true}'
                try:
                    self.send_response(200)
                    self.send_header("content-type", "application/json")
                    self.send_header("content-length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body)
                except OSError:
                    pass

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.base = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def reset(self) -> None:
        """Forget the calls so far; the next /slow call hangs."""
        self.calls.clear()
        self.armed = True


@pytest.fixture
def endpoint() -> Iterator[SlowOnce]:
    server = SlowOnce()
    yield server
    server.release.set()
    server.server.shutdown()


def libpq(url: str) -> str:
    return url.replace("postgresql+psycopg://", "postgresql://", 1)


def completions(server: str, org: str, received: queue.Queue[Any]) -> None:
    """The org's live stream of workflow_run_completed events over SSE, each put on `received`."""
    with (
        contextlib.suppress(httpx.HTTPError),  # the server stops at the end of the test
        httpx.Client(base_url=server, headers={"X-Org-Id": org}, timeout=120) as client,
        client.stream("GET", "/events", params={"types": "workflow_run_completed"}) as response,
    ):
        received.put(response.status_code)
        for line in response.iter_lines():
            if line.startswith("data: "):
                received.put(json.loads(line[6:]))


def wait_final(api: httpx.Client, run_id: str, seconds: float) -> dict[str, Any]:
    deadline = time.monotonic() + seconds
    run: dict[str, Any] = {}
    while time.monotonic() < deadline:
        response = api.get(f"/runs/{run_id}/status")
        if response.status_code == 200:
            run = response.json()
            if run["status"] != "running":
                return run
        time.sleep(0.2)
    raise AssertionError(f"run {run_id} did not finish: {run}")


def test_runs_resume_after_postgres_restarts_mid_run(data_dir: Path, endpoint: SlowOnce) -> None:
    pg = EmbeddedPostgres(data_dir / "pgdata")
    database_url = ensure_database(pg.start(), "hyphae")
    http_port, grpc_port = free_port(), free_port()
    env = shared_database_environment(
        database_url,
        data_dir / "serve",
        http_port,
        grpc_port,
        HYPHAE_WORKERS="2",
        # Longer than the outage: the run must resume because its worker takes it again, not by lease expiry.
        HYPHAE_LEASE_SECONDS="120",
    )
    server = start(env, http_port)
    base = f"http://127.0.0.1:{http_port}"
    org = "restart-org"
    try:
        api = httpx.Client(base_url=base, headers={"X-Org-Id": org}, timeout=10)
        for name, path in (("fast_a", "/a"), ("slow_b", "/slow"), ("fast_c", "/c")):
            action = {"action_name": name, "kind": "http", "url": endpoint.base + path, "http_method": "POST"}
            assert api.post("/actions", json=action).status_code == 201
        steps = [{"type": name, "properties": {"n": i}} for i, name in enumerate(("fast_a", "slow_b", "fast_c"))]
        workflow = api.post("/workflows", json={"name": "restarted", "definition": {"actions": steps}}).json()

        received: queue.Queue[Any] = queue.Queue()
        threading.Thread(target=completions, args=(base, org, received), daemon=True).start()
        warm_up = api.post(f"/workflows/{workflow['id']}/execute", json={"input": {}}).json()["run_id"]
        assert received.get(timeout=30) == 200  # headers arrive with the first event: the warm-up run's
        assert wait_final(api, warm_up, 30)["status"] == "completed"
        assert received.get(timeout=30)["event"]["run_id"] == warm_up
        endpoint.reset()

        run_id = api.post(f"/workflows/{workflow['id']}/execute", json={"input": {}}).json()["run_id"]
        assert endpoint.slow_entered.wait(30), "the worker never reached the slow step"
        pg.stop()  # fast shutdown: every connection of the server is cut
        with pytest.raises(psycopg.OperationalError):
            psycopg.connect(libpq(database_url), connect_timeout=2)

        endpoint.release.set()  # the step's result now cannot be committed
        time.sleep(2)
        assert httpx.get(f"{base}/health", timeout=5).status_code == 200  # alive, not wedged
        assert api.get(f"/runs/{run_id}/status").status_code == 503  # and says the database is away
        assert server.poll() is None

        pg.start()
        run = wait_final(api, run_id, 60)
        assert run["status"] == "completed", run
        assert [step["status"] for step in run["steps"]] == ["completed"] * 3
        assert [step["attempts"] for step in run["steps"]] == [1, 2, 1]  # the interrupted step ran again

        keys = {path: {key for p, key in endpoint.calls if p == path} for path in ("/a", "/slow", "/c")}
        assert keys == {"/a": {f"{run_id}:0"}, "/slow": {f"{run_id}:1"}, "/c": {f"{run_id}:2"}}
        paths = [p for p, _ in endpoint.calls]
        assert paths.count("/a") == 1 and paths.count("/c") == 1  # committed steps never run again

        with psycopg.connect(libpq(database_url)) as connection:
            rows = connection.execute(
                "SELECT sequence, type FROM run_events WHERE run_id = %s ORDER BY sequence", (run_id,)
            ).fetchall()
        assert [sequence for sequence, _ in rows] == list(range(1, len(rows) + 1))
        assert [kind for _, kind in rows].count("workflow_run_completed") == 1

        # The live stream opened before the outage is still there: its LISTEN connection came back.
        deadline = time.monotonic() + 30
        seen: set[str] = set()
        while run_id not in seen and time.monotonic() < deadline:
            item = received.get(timeout=max(deadline - time.monotonic(), 0.1))
            assert "event" in item, item
            seen.add(item["event"]["run_id"])
        assert run_id in seen

        # New runs after the restart are claimed at once (no stale connection left in the worker's pool).
        again = api.post(f"/workflows/{workflow['id']}/execute", json={"input": {}}).json()["run_id"]
        assert wait_final(api, again, 30)["status"] == "completed"
    finally:
        stop(server)
        pg.stop()
