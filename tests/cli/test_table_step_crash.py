"""Fault test: a worker SIGKILLed after a loop's custom-table write committed but before the loop step's result did.
Another worker runs the loop again; the write is not repeated (its idempotency key finds the recorded result), so
the table holds one row and the audit log one entry per item."""

from __future__ import annotations

import signal
import subprocess
import time
from pathlib import Path

import httpx

from tests.cli.test_serve import HYPHAE, free_port, shared_database_environment, spawn_worker, start, stop
from tests.cli.test_worker_crash import SlowOnce, endpoint

__all__ = ["endpoint"]


def test_a_retried_loop_does_not_write_its_rows_twice(fresh_database: str, data_dir: Path, endpoint: SlowOnce) -> None:
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
        api = httpx.Client(base_url=f"http://127.0.0.1:{http_port}", headers={"X-Org-Id": "crash-table-org"})
        table = {"name": "ledger", "fields": [{"name": "item", "type": "integer", "required": True}]}
        assert api.post("/custom-tables", json=table).status_code == 201
        notify = {"action_name": "notify", "kind": "http", "url": endpoint.base + "/slow", "http_method": "POST"}
        assert api.post("/actions", json=notify).status_code == 201
        loop = {
            "type": "loop",
            "properties": {
                "mode": "foreach",
                "items_path": "@input.items",
                "item_variable_name": "n",
                "actions_to_execute": [
                    {
                        "type": "custom-table",
                        "properties": {"table": "ledger", "operation": "write", "fields": {"item": "@n"}},
                    },
                    {"type": "notify", "properties": {"item": "@n"}},
                ],
            },
        }
        workflow = api.post("/workflows", json={"name": "ledger_loop", "definition": {"actions": [loop]}}).json()
        run_id = api.post(f"/workflows/{workflow['id']}/execute", json={"input": {"items": [1]}}).json()["run_id"]

        assert endpoint.slow_entered.wait(30), "the first worker never reached the slow call"
        # the row is written and committed, the loop step is not
        assert api.get("/custom-tables/ledger/rows").json()["total"] == 1
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
        assert run["steps"][0]["attempts"] == 2
        rows = api.get("/custom-tables/ledger/rows").json()["rows"]
        assert [r["item"] for r in rows] == [1]
        audit = api.get("/custom-tables/ledger/audit").json()["entries"]
        assert [(e["operation"], e["actor_id"]) for e in audit] == [("insert", run_id)]
    finally:
        for worker in (first_worker, second_worker):
            if worker is not None and worker.poll() is None:
                worker.send_signal(signal.SIGINT)
                worker.wait(30)
        stop(api_server)
