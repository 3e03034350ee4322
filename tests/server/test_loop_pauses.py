"""An agent pausing inside a foreach (T3 Pattern A): the parent run pauses and is listed; answered, only that item's
agent goes on — the loop's other items are not run again — and the run completes with every item's result."""

from __future__ import annotations

from typing import Any

import httpx

from server.fakemodel import FakeModelServer
from tests.server.runs_helpers import Recorder, wait_for
from tests.server.test_agents import agents, model

__all__ = ["agents", "model"]


def _conversations(model: FakeModelServer, objective_start: str) -> int:
    """Model requests whose objective (first user message) starts so."""
    return sum(
        1
        for r in model.requests
        if len(r["body"]["messages"]) > 1 and str(r["body"]["messages"][1]["content"]).startswith(objective_start)
    )


def test_an_agent_pausing_inside_a_foreach_pauses_the_run_and_resumes_only_its_item(
    agents: httpx.Client, recorder: Recorder, model: FakeModelServer
) -> None:
    react = {
        "type": "loop",
        "properties": {
            "mode": "react",
            "objective": "Review invoice {{exception.invoice_id}} for a write-off.",
            "tools": [{"type": "action", "name": "lookup_order"}],
            "max_iterations": 6,
            "result_key": "review",
        },
    }
    foreach: dict[str, Any] = {
        "type": "loop",
        "properties": {
            "mode": "foreach",
            "items_path": "@input.exceptions",
            "item_variable_name": "exception",
            "actions_to_execute": [react],
            "max_concurrency": 2,
            "collect_results": True,
            "result_key": "reviews",
        },
    }
    created = agents.post("/workflows", json={"name": "write_offs", "definition": {"actions": [foreach]}})
    assert created.status_code == 201, created.text
    items = [{"invoice_id": "INV-OK-1"}, {"invoice_id": "INV-HOLD"}, {"invoice_id": "INV-OK-2"}]
    started = agents.post(f"/workflows/{created.json()['id']}/execute", json={"input": {"exceptions": items}})
    run_id = started.json()["run_id"]

    paused = wait_for(agents, run_id, until=("paused", "completed", "failed"))
    assert paused["status"] == "paused", paused
    assert sorted(call["path"] for call in recorder.calls) == [
        "/anything/orders/INV-HOLD",
        "/anything/orders/INV-OK",
        "/anything/orders/INV-OK",
    ]
    [listed] = agents.get("/interrupts", params={"run_id": run_id}).json()["interrupts"]
    assert listed["kind"] == "agent" and listed["step_index"] == 0
    assert listed["question"] == "Write off INV-HOLD?"
    assert listed["answer_path"] == f"/agents/{run_id}/resume"
    ok_conversations = _conversations(model, "Review invoice INV-OK")
    assert ok_conversations == 4  # two items, each a lookup then __complete__

    answered = agents.post(listed["answer_path"], json={"human_input": "write it off"})
    assert answered.status_code == 200, answered.text
    done = wait_for(agents, run_id)
    assert done["status"] == "completed", done
    reviews = done["context"]["reviews"]
    assert [r["status"] for r in reviews] == ["completed"] * 3
    assert [r["output"]["answer"] for r in (reviews[0], reviews[2])] == ["clear", "clear"]
    assert "write it off" in str(reviews[1]["output"]["answer"])
    # nothing ran twice: no tool call and no model call of the finished items after the answer
    assert len(recorder.calls) == 3
    assert _conversations(model, "Review invoice INV-OK") == ok_conversations
    assert agents.post(listed["answer_path"], json={"human_input": "again"}).status_code == 409
    assert agents.get("/interrupts", params={"run_id": run_id}).json().get("interrupts", []) == []
