"""Fault test: a `hyphae worker` SIGKILLed in the middle of a foreach loop; another worker finishes the loop without
running the items that had finished (the loop's per-item journal), and the interrupted item runs again with the same
idempotency key."""

from __future__ import annotations

import json
import signal
import subprocess
import threading
import time
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import sqlalchemy as sa

from server.store.db import sqlalchemy_url
from tests.cli.test_serve import HYPHAE, free_port, shared_database_environment, spawn_worker, start, stop
from tests.server.runs_helpers import wait_for


class CountingTool:
    """A tool server counting calls per item; the first call for item 2 hangs until released (the worker dies in
    it)."""

    def __init__(self) -> None:
        self.calls: list[tuple[int, str]] = []
        self.release = threading.Event()
        tool = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body: Any = json.loads(self.rfile.read(int(self.headers.get("content-length") or 0)) or b"null")
                item = int(body["n"])
                tool.calls.append((item, str(self.headers.get("idempotency-key"))))
                if item == 2 and sum(1 for n, _ in tool.calls if n == 2) == 1:
                    tool.release.wait(30)
                payload = json.dumps({"n": item}).encode()
                try:
                    self.send_response(200)
                    self.send_header("content-type", "application/json")
                    self.send_header("content-length", str(len(payload)))
                    self.end_headers()
                    self.wfile.write(payload)
                except OSError:  # the worker that sent it is gone
                    pass

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/tool"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


def _recorded_items(database_url: str, run_id: str) -> int:
    engine = sa.create_engine(sqlalchemy_url(database_url), poolclass=sa.pool.NullPool)
    with engine.connect() as connection:
        count = connection.execute(
            sa.text("SELECT count(*) FROM loop_items WHERE run_id = :r"), {"r": run_id}
        ).scalar_one()
    engine.dispose()
    return int(count)


def test_a_worker_killed_mid_loop_is_replaced_and_finished_items_do_not_run_again(
    fresh_database: str, data_dir: Path
) -> None:
    http_port, grpc_port = free_port(), free_port()
    env = shared_database_environment(
        fresh_database,
        data_dir,
        http_port,
        grpc_port,
        HYPHAE_LEASE_SECONDS="2",
    )
    tool = CountingTool()
    api_server = start({**env, "HYPHAE_WORKERS": "0"}, http_port)
    first_worker = spawn_worker(env)
    second_worker: subprocess.Popen[bytes] | None = None
    try:
        api = httpx.Client(base_url=f"http://127.0.0.1:{http_port}", headers={"X-Org-Id": "loop-crash"}, timeout=30)
        action = {"action_name": "count_item", "kind": "http", "url": tool.url, "http_method": "POST"}
        assert api.post("/actions", json=action).status_code == 201
        foreach = {
            "type": "loop",
            "properties": {
                "mode": "foreach",
                "items_path": "@input.items",
                "item_variable_name": "entry",
                "actions_to_execute": [{"type": "count_item", "properties": {"n": "@entry.n"}}],
                "collect_results": True,
                "result_key": "counted",
            },
        }
        created_response = api.post("/workflows", json={"name": "counting", "definition": {"actions": [foreach]}})
        assert created_response.status_code == 201, created_response.text
        created = created_response.json()
        items = [{"n": n} for n in range(4)]
        run_id = api.post(f"/workflows/{created['id']}/execute", json={"input": {"items": items}}).json()["run_id"]

        deadline = time.monotonic() + 30
        while not any(n == 2 for n, _ in tool.calls):
            assert time.monotonic() < deadline, "the first worker never reached item 2"
            time.sleep(0.05)
        assert _recorded_items(fresh_database, run_id) == 2  # items 0 and 1 are journaled
        first_worker.send_signal(signal.SIGKILL)
        first_worker.wait(10)
        tool.release.set()
        second_worker = subprocess.Popen(
            [*HYPHAE, "worker"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )

        run = wait_for(api, run_id, until=("completed", "failed"))
        assert run["status"] == "completed", run
        assert [entry["output"] for entry in run["context"]["counted"]] == [{"status": 200}] * 4
        per_item = Counter(n for n, _ in tool.calls)
        assert per_item == {0: 1, 1: 1, 2: 2, 3: 1}  # only the interrupted item ran again
        keys_of_2 = {key for n, key in tool.calls if n == 2}
        assert keys_of_2 == {f"{run_id}:0:2:0"}  # with the same idempotency key both times
    finally:
        tool.release.set()
        for worker in (first_worker, second_worker):
            if worker is not None and worker.poll() is None:
                worker.send_signal(signal.SIGINT)
                worker.wait(30)
        stop(api_server)
        tool.server.shutdown()
