"""The foreach loop: inner steps per item, concurrency, failure strategies, collected results, the item limit."""

from __future__ import annotations

from typing import Any

import httpx

from tests.server.runs_helpers import Recorder, wait_for

CUSTOMERS = [{"name": f"Customer {i}", "email": f"c{i}@example.com"} for i in range(5)]


def loop_workflow(api: httpx.Client, recorder: Recorder, **loop: Any) -> str:
    action = {"action_name": "notify", "kind": "http", "url": "{{target}}", "http_method": "POST", "passthrough": True}
    assert api.post("/actions", json=action).status_code == 201
    step = {
        "type": "notify",
        "properties": {"target": recorder.url, "to": "@customer.email", "subject": "Statement for {{customer.name}}"},
    }
    properties = {
        "mode": "foreach",
        "items_path": "@input.customers",
        "item_variable_name": "customer",
        "actions_to_execute": [step],
        **loop,
    }
    definition = {"actions": [{"type": "loop", "properties": properties}]}
    created = api.post("/workflows", json={"name": "statements", "definition": definition})
    assert created.status_code == 201, created.text
    return str(created.json()["id"])


def test_foreach_runs_the_steps_per_item_and_collects_results(api: httpx.Client, recorder: Recorder) -> None:
    workflow_id = loop_workflow(api, recorder, max_concurrency=3, collect_results=True, result_key="emailResults")
    run_id = api.post(f"/workflows/{workflow_id}/execute", json={"input": {"customers": CUSTOMERS}}).json()["run_id"]
    run = wait_for(api, run_id)
    assert run["status"] == "completed", run
    assert sorted(call["body"]["to"] for call in recorder.calls) == [c["email"] for c in CUSTOMERS]
    assert {call["body"]["subject"] for call in recorder.calls} == {f"Statement for {c['name']}" for c in CUSTOMERS}
    assert len({call["idempotency_key"] for call in recorder.calls}) == 5
    results = run["context"]["emailResults"]
    assert [r["status"] for r in results] == ["completed"] * 5
    assert [r["item"] for r in results] == CUSTOMERS
    assert run["steps"][0]["output"]["completed"] == 5


def test_continue_on_error_keeps_going(api: httpx.Client, recorder: Recorder) -> None:
    workflow_id = loop_workflow(api, recorder, failure_strategy="continue_on_error", collect_results=True)
    customers = [*CUSTOMERS[:2], {"name": "bad", "email": "x"}, *CUSTOMERS[2:]]
    # the bad item aims at the cloud metadata address, which the outbound guard refuses
    workflow = api.get(f"/workflows/{workflow_id}").json()
    inner = workflow["definition"]["actions"][0]["properties"]["actions_to_execute"][0]
    inner["properties"]["target"] = "{{customer.target}}"
    api.put(f"/workflows/{workflow_id}", json={"name": "statements", "definition": workflow["definition"]})
    for customer in customers:
        customer["target"] = "http://169.254.169.254/x" if customer["name"] == "bad" else recorder.url
    run = wait_for(
        api, api.post(f"/workflows/{workflow_id}/execute", json={"input": {"customers": customers}}).json()["run_id"]
    )
    assert run["status"] == "completed", run
    assert [r["status"] for r in run["context"]["loop_results"]] == [
        "completed",
        "completed",
        "failed",
        "completed",
        "completed",
        "completed",
    ]
    assert len(recorder.calls) == 5


def test_stop_on_error_fails_the_run(api: httpx.Client, recorder: Recorder) -> None:
    recorder.status = 500
    workflow_id = loop_workflow(api, recorder)
    run = wait_for(
        api, api.post(f"/workflows/{workflow_id}/execute", json={"input": {"customers": CUSTOMERS}}).json()["run_id"]
    )
    assert run["status"] == "failed"
    assert "item 0 failed" in run["error"]
    assert "HTTP 500" in run["error"]


def test_a_loop_over_too_many_items_fails_clearly(api: httpx.Client, recorder: Recorder) -> None:
    workflow_id = loop_workflow(api, recorder)
    items = [{"name": "n", "email": "e"}] * 10_001
    run = wait_for(
        api, api.post(f"/workflows/{workflow_id}/execute", json={"input": {"customers": items}}).json()["run_id"]
    )
    assert run["status"] == "failed"
    assert "limit of 10000 items" in run["error"]
    assert recorder.calls == []
