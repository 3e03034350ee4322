"""Fault test: a `hyphae worker` SIGKILLed between an agent's tool call and its next model call; another worker
finishes the agent by replaying its journal. The tool's side effect happened exactly once and the trace holds each
iteration once."""

from __future__ import annotations

import signal
import subprocess
import time
from pathlib import Path

import httpx
import sqlalchemy as sa

from server.fakemodel import FakeModelServer
from server.store.db import sqlalchemy_url
from tests.cli.test_serve import HYPHAE, free_port, shared_database_environment, spawn_worker, start, stop
from tests.server.runs_helpers import Recorder

SCENARIOS = Path(__file__).parents[1] / "server" / "scenarios" / "agents.json"


def _tool_answered(database_url: str, run_id: str) -> bool:
    """The tool call's result is committed (and the next model call, delayed by the scenario, is under way)."""
    engine = sa.create_engine(sqlalchemy_url(database_url), poolclass=sa.pool.NullPool)
    with engine.connect() as connection:
        count = connection.execute(
            sa.text("SELECT count(*) FROM agent_steps WHERE run_id = :r AND kind = 'tool' AND response IS NOT NULL"),
            {"r": run_id},
        ).scalar_one()
    engine.dispose()
    return bool(count)


def test_a_killed_worker_is_replaced_and_the_agent_never_repeats_a_tool_call(
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
    recorder = Recorder()
    model = FakeModelServer(SCENARIOS).start()
    api_server = start({**env, "HYPHAE_WORKERS": "0"}, http_port)
    first_worker = spawn_worker(env)
    second_worker: subprocess.Popen[bytes] | None = None
    try:
        api = httpx.Client(base_url=f"http://127.0.0.1:{http_port}", headers={"X-Org-Id": "crash-org"}, timeout=30)
        api.post("/org-config", json={"key": "api:llm_api_key", "value": "sk-crash-test-key"})
        api.post("/org-config", json={"key": "settings:llm_base_url", "value": model.base_url})
        action = {"action_name": "record_call", "kind": "http", "url": recorder.url, "http_method": "POST"}
        assert api.post("/actions", json=action).status_code == 201
        body = {"objective": "crash test", "tools": [{"type": "action", "name": "record_call"}]}
        started = api.post("/agents/execute", params={"async": "true"}, json=body)
        assert started.status_code == 200, started.text
        agent_id = started.json()["agent_run_id"]

        deadline = time.monotonic() + 30
        while not _tool_answered(fresh_database, agent_id):
            assert time.monotonic() < deadline, "the first worker never finished the tool call"
            time.sleep(0.05)
        first_worker.send_signal(signal.SIGKILL)
        first_worker.wait(10)
        assert len(recorder.calls) == 1
        second_worker = subprocess.Popen(
            [*HYPHAE, "worker"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )

        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            agent = api.get(f"/agents/{agent_id}/status", params={"include_trace": "true"}).json()
            if agent["status"] != "running":
                break
            time.sleep(0.2)
        assert agent["status"] == "completed", agent
        assert agent["final_answer"] == "recorded"
        assert [(e["iteration"], e["action"]) for e in agent["trace"]] == [(1, "record_call"), (2, "__complete__")]
        assert len(recorder.calls) == 1
        assert recorder.calls[0]["idempotency_key"] == f"{agent_id}:0:1"
        # the model call cut short by the kill was made again, with the same idempotency key
        model_keys = [r["idempotency_key"] for r in model.requests if r["status"] == 200]
        assert model_keys[0] == f"{agent_id}:0:0"
        assert set(model_keys[1:]) == {f"{agent_id}:0:2"}
    finally:
        for worker in (first_worker, second_worker):
            if worker is not None and worker.poll() is None:
                worker.send_signal(signal.SIGINT)
                worker.wait(30)
        stop(api_server)
        model.stop()
        recorder.server.shutdown()
