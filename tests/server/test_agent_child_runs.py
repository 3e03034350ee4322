"""A workflow tool waiting for its child run gives its worker slot back (the run parks on a `child_run` interrupt
and is queued again when the child ends), so agents waiting for children cannot starve them — even with one slot."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from server.fakemodel import FakeModelServer
from tests.conftest import make_settings, run_server
from tests.server.runs_helpers import Recorder, wait_for
from tests.server.test_agents import SCENARIOS


@pytest.fixture
def one_slot(fresh_database: str, tmp_path: Path) -> Iterator[httpx.Client]:
    """A server whose worker runs one run at a time."""
    with (
        run_server(make_settings(tmp_path, workers=1), fresh_database) as info,
        httpx.Client(base_url=info.http_url, headers={"X-Org-Id": "one-slot"}, timeout=60) as client,
    ):
        yield client


def test_agents_waiting_for_child_runs_do_not_deadlock_a_single_worker_slot(
    one_slot: httpx.Client, recorder: Recorder
) -> None:
    api = one_slot
    with FakeModelServer(SCENARIOS) as model:
        api.post("/org-config", json={"key": "api:llm_api_key", "value": "sk-one-slot"})
        api.post("/org-config", json={"key": "settings:llm_base_url", "value": model.base_url})
        base = recorder.url.removesuffix("/post")
        lookup = {"action_name": "lookup_order", "kind": "http", "url": base + "/anything/orders/{{order_id}}"}
        assert api.post("/actions", json={**lookup, "http_method": "GET", "passthrough": True}).status_code == 201
        child = {"type": "lookup_order", "properties": {"order_id": "@input.x"}}
        created = api.post("/workflows", json={"name": "child_flow", "definition": {"actions": [child]}}).json()
        tools = [{"type": "workflow", "id": created["id"]}]

        # a standalone agent, synchronous: it answers once the agent is done, child run included
        agent = api.post("/agents/execute", json={"objective": "Please run the child workflow", "tools": tools}).json()
        assert agent["status"] == "completed", agent
        assert agent["final_answer"] == "completed"
        [child_run] = agent["triggered_runs"]

        # two react steps of a foreach, each starting a child: every run needs the one slot in turn
        react = {
            "type": "loop",
            "properties": {
                "mode": "react",
                "objective": "Please run the child workflow",
                "tools": tools,
                "result_key": "ran",
            },
        }
        foreach = {
            "type": "loop",
            "properties": {
                "mode": "foreach",
                "items_path": "@input.items",
                "item_variable_name": "entry",
                "actions_to_execute": [react],
                "max_concurrency": 2,
                "collect_results": True,
                "result_key": "all",
            },
        }
        parent = api.post("/workflows", json={"name": "parent_flow", "definition": {"actions": [foreach]}}).json()
        run_id = api.post(f"/workflows/{parent['id']}/execute", json={"input": {"items": [1, 2]}}).json()["run_id"]
        run = wait_for(api, run_id)
        assert run["status"] == "completed", run
        assert [entry["output"]["answer"] for entry in run["context"]["all"]] == ["completed", "completed"]

    # the waits were parks (one slot cannot run a parent and its child at once), each answered by its child's end
    parks = api.get("/interrupts", params={"status": "answered", "kind": "child_run"}).json()["interrupts"]
    assert {p["run_id"] for p in parks} == {agent["agent_run_id"], run_id}
    first = next(p for p in parks if p["run_id"] == agent["agent_run_id"])
    assert first["payload"]["child_run_id"] == child_run and first["answer_path"] == ""
    assert len(recorder.calls) == 3  # three children, each run once
