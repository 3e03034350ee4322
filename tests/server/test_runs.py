"""Runs end to end over REST: execute, the worker runs the steps, status shows context, steps and output."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from tests.server.runs_helpers import INVOICES, PAYMENTS, Recorder, wait_for
from tests.server.test_tutorial_t1 import CREATE_WORKFLOW, REGISTER_ACTION


def setup_t1(api: httpx.Client, recorder: Recorder) -> str:
    assert api.post("/actions", json={**REGISTER_ACTION, "url": recorder.url}).status_code == 201
    created = api.post("/workflows", json=CREATE_WORKFLOW)
    assert created.status_code == 201, created.text
    return str(created.json()["id"])


def test_t1_execute_matches_and_calls_the_action_once(api: httpx.Client, recorder: Recorder) -> None:
    workflow_id = setup_t1(api, recorder)
    started = api.post(
        f"/workflows/{workflow_id}/execute", json={"input": {"invoices": INVOICES, "payments": PAYMENTS}}
    )
    assert started.status_code == 200, started.text
    assert started.json()["status"] == "running"
    run = wait_for(api, started.json()["run_id"])

    assert run["status"] == "completed", run
    context = run["context"]
    assert [pair["a"]["invoice_id"] for pair in context["matched"]] == ["INV-001", "INV-002"]
    assert [record["invoice_id"] for record in context["unmatched_invoices"]] == ["INV-003"]
    assert context["unmatched_payments"] == []
    assert [step["status"] for step in run["steps"]] == ["completed", "completed"]
    assert [step["type"] for step in run["steps"]] == ["matcher", "update_erp_status"]
    assert len(recorder.calls) == 1
    assert recorder.calls[0]["body"] == {"records": context["matched"], "action": "mark_reconciled"}
    assert recorder.calls[0]["idempotency_key"] == f"{run['run_id']}:1"
    assert context["update_erp_status"]["json"]["action"] == "mark_reconciled"  # passthrough: the response body
    assert run["output"] == context["update_erp_status"]


def test_filter_false_skips_the_action(api: httpx.Client, recorder: Recorder) -> None:
    workflow_id = setup_t1(api, recorder)
    started = api.post(f"/workflows/{workflow_id}/execute", json={"input": {"invoices": INVOICES, "payments": []}})
    run = wait_for(api, started.json()["run_id"])
    assert run["status"] == "completed"
    assert [step["status"] for step in run["steps"]] == ["completed", "skipped"]
    assert recorder.calls == []


def test_top_level_condition_false_runs_nothing(api: httpx.Client) -> None:
    definition = {
        "condition": {"greaterThan": ["@input.order_total", 10000]},
        "actions": [{"type": "matcher", "properties": {"left": "@input.a", "right": "@input.b", "matchOn": ["id"]}}],
    }
    workflow_id = api.post("/workflows", json={"name": "gated", "definition": definition}).json()["id"]
    started = api.post(f"/workflows/{workflow_id}/execute", json={"input": {"order_total": 5}})
    run = wait_for(api, started.json()["run_id"])
    assert run["status"] == "condition_not_met"
    assert run["steps"] == []


def test_failing_http_action_fails_the_run_with_the_step_error(api: httpx.Client, recorder: Recorder) -> None:
    recorder.status = 500
    workflow_id = setup_t1(api, recorder)
    started = api.post(
        f"/workflows/{workflow_id}/execute", json={"input": {"invoices": INVOICES, "payments": PAYMENTS}}
    )
    run = wait_for(api, started.json()["run_id"])
    assert run["status"] == "failed"
    assert "HTTP 500" in run["error"]
    assert run["steps"][1]["status"] == "failed"
    assert len(recorder.calls) == 1  # 500 is not retried (only 429/502/503/504 and network errors are)


def test_blocked_address_fails_the_step_with_the_rule(api: httpx.Client) -> None:
    action = {**REGISTER_ACTION, "url": "http://169.254.169.254/latest/meta-data"}
    assert api.post("/actions", json=action).status_code == 201
    workflow_id = api.post("/workflows", json=CREATE_WORKFLOW).json()["id"]
    started = api.post(
        f"/workflows/{workflow_id}/execute", json={"input": {"invoices": INVOICES, "payments": PAYMENTS}}
    )
    run = wait_for(api, started.json()["run_id"])
    assert run["status"] == "failed"
    assert "169.254.169.254" in run["error"]


def test_missing_reference_fails_with_a_clear_step_error(api: httpx.Client) -> None:
    definition = {
        "actions": [{"type": "matcher", "properties": {"left": "@input.nope", "right": "@input.b", "matchOn": ["id"]}}]
    }
    workflow_id = api.post("/workflows", json={"name": "dangling", "definition": definition}).json()["id"]
    run = wait_for(api, api.post(f"/workflows/{workflow_id}/execute", json={"input": {"b": []}}).json()["run_id"])
    assert run["status"] == "failed"
    assert "left and right must resolve to lists" in run["error"]


@pytest.mark.parametrize("body", [{}, {"input": [1]}, {"input": 5}, {"inputs": {}}, {"input": {}, "extra": 1}])
def test_execute_body_must_be_an_input_object(api: httpx.Client, body: dict[str, Any]) -> None:
    definition = {"actions": [{"type": "PbotApproval", "properties": {"comment": "?"}}]}
    workflow_id = api.post("/workflows", json={"name": "strict", "definition": definition}).json()["id"]
    response = api.post(f"/workflows/{workflow_id}/execute", json=body)
    assert response.status_code == 400
    assert response.json()["error"] == "Bad Request"


def test_runs_are_listed_and_cancellable(api: httpx.Client) -> None:
    definition = {"condition": {"equal": [1, 2]}, "actions": []}
    workflow_id = api.post("/workflows", json={"name": "listed", "definition": definition}).json()["id"]
    run_id = api.post(f"/workflows/{workflow_id}/execute", json={"input": {}}).json()["run_id"]
    wait_for(api, run_id)
    assert [r["run_id"] for r in api.get(f"/workflows/{workflow_id}/runs").json()["runs"]] == [run_id]
    assert [r["run_id"] for r in api.get("/runs", params={"status": "condition_not_met"}).json()["runs"]] == [run_id]
    cancelled = api.post(f"/runs/{run_id}/cancel", json={})
    assert cancelled.status_code == 409
    assert api.get("/runs/run-nope/status").status_code == 404
