"""Two `hyphae worker` processes on one database run 1,000 queued runs: each exactly once."""

from __future__ import annotations

import signal
import subprocess
import time
from pathlib import Path

import httpx
import sqlalchemy as sa

from server.store.db import sqlalchemy_url
from tests.cli.test_serve import free_port, shared_database_environment, spawn_worker, start, stop

RUNS = 1000


def test_two_workers_run_each_queued_run_exactly_once(fresh_database: str, data_dir: Path) -> None:
    http_port, grpc_port = free_port(), free_port()
    env = shared_database_environment(
        fresh_database,
        data_dir,
        http_port,
        grpc_port,
        HYPHAE_RATE_LIMIT_PER_MINUTE="100000000",
        HYPHAE_WORKERS="8",
    )
    api_server = start({**env, "HYPHAE_WORKERS": "0"}, http_port)
    workers: list[subprocess.Popen[bytes]] = []
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{http_port}", headers={"X-Org-Id": "queue-org"}) as api:
            step = {"type": "matcher", "properties": {"left": "@input.l", "right": "@input.r", "matchOn": ["id"]}}
            workflow = api.post("/workflows", json={"name": "q", "definition": {"actions": [step]}}).json()
            body = {"input": {"l": [{"id": 1}], "r": [{"id": 1}]}}
            run_ids = {
                api.post(f"/workflows/{workflow['id']}/execute", json=body).json()["run_id"] for _ in range(RUNS)
            }
        assert len(run_ids) == RUNS
        workers = [spawn_worker(env) for _ in range(2)]
        engine = sa.create_engine(sqlalchemy_url(fresh_database))
        deadline = time.monotonic() + 240
        with engine.connect() as connection:
            while time.monotonic() < deadline:
                left = connection.execute(sa.text("SELECT count(*) FROM runs WHERE status = 'running'")).scalar_one()
                connection.commit()
                if left == 0:
                    break
                time.sleep(0.5)
            statuses: dict[str, int] = dict(
                connection.execute(sa.text("SELECT status, count(*) FROM runs GROUP BY status")).all()
            )
            attempts = connection.execute(sa.text("SELECT max(attempts), count(*) FROM run_steps")).one()
            completions = connection.execute(
                sa.text("SELECT count(*), count(DISTINCT run_id) FROM run_events WHERE type = 'workflow_run_completed'")
            ).one()
        engine.dispose()
        assert statuses == {"completed": RUNS}
        assert tuple(attempts) == (1, RUNS)  # one step row per run, written once
        assert tuple(completions) == (RUNS, RUNS)  # each run completed exactly once
    finally:
        for worker in workers:
            if worker.poll() is None:
                worker.send_signal(signal.SIGINT)
                worker.wait(30)
        stop(api_server)
