"""Human in the loop: T1's approval step end to end, rejections, forms (both body shapes, missing keys, TTL) and
the 409s of answering a step that is not waiting, twice, or too late."""

from __future__ import annotations

import time
from typing import Any

import httpx
import psycopg

from tests.conftest import ServerInfo
from tests.server.runs_helpers import INVOICES, PAYMENTS, Recorder, wait_for
from tests.server.test_tutorial_t1 import CREATE_WORKFLOW, REGISTER_ACTION

APPROVAL = {
    "type": "PbotApproval",
    "properties": {
        "comment": "Please review {{matched.length}} matches for ${{input.total}}",
        "request_payload": {"matched": "@matched", "total": "@input.total"},
    },
}


def t1_with_approval(api: httpx.Client, recorder: Recorder) -> str:
    assert api.post("/actions", json={**REGISTER_ACTION, "url": recorder.url}).status_code == 201
    matcher, update = CREATE_WORKFLOW["definition"]["actions"]  # type: ignore[index]
    gated_update = {
        **update,
        "filter": {"condition": {"and": [update["filter"]["condition"], {"equal": ["@__approved", True]}]}},
    }
    definition = {"actions": [matcher, APPROVAL, gated_update]}
    created = api.post("/workflows", json={"name": "first_workflow", "definition": definition})
    assert created.status_code == 201, created.text
    run_id = api.post(
        f"/workflows/{created.json()['id']}/execute",
        json={"input": {"invoices": INVOICES, "payments": PAYMENTS, "total": 14480}},
    ).json()["run_id"]
    return str(run_id)


def test_t1_pause_approve_and_read_the_final_output(api: httpx.Client, recorder: Recorder) -> None:
    run_id = t1_with_approval(api, recorder)
    paused = wait_for(api, run_id, until=("paused",))
    assert [step["status"] for step in paused["steps"]] == ["completed", "paused"]
    assert recorder.calls == []

    pending = api.get("/approvals").json()["approvals"]
    assert [(a["run_id"], a["step_index"], a["kind"], a["status"]) for a in pending] == [
        (run_id, 1, "approval", "pending")
    ]
    assert pending[0]["comment"] == "Please review 2 matches for $14480"
    assert pending[0]["request_payload"]["total"] == 14480
    assert api.get(f"/approvals/{run_id}").json()["approvals"] == pending

    decided = api.post(
        f"/approvals/{run_id}/1", json={"approved": True, "comments": "receipt verified", "data": {"by": "jane"}}
    )
    assert decided.status_code == 200, decided.text
    assert decided.json() == {"run_id": run_id, "step_index": 1, "approved": True, "status": "running"}

    run = wait_for(api, run_id)
    assert run["status"] == "completed", run
    assert run["context"]["__approved"] is True
    assert run["context"]["__comment"] == "receipt verified"
    assert run["context"]["__approval_data"] == {"by": "jane"}
    assert [step["status"] for step in run["steps"]] == ["completed", "completed", "completed"]
    assert len(recorder.calls) == 1
    assert run["output"]["json"]["action"] == "mark_reconciled"
    assert api.get("/approvals").json()["approvals"] == []


def test_answering_twice_or_at_the_wrong_step_is_a_conflict(api: httpx.Client, recorder: Recorder) -> None:
    run_id = t1_with_approval(api, recorder)
    wait_for(api, run_id, until=("paused",))
    wrong = api.post(f"/approvals/{run_id}/0", json={"approved": True})
    assert wrong.status_code == 409
    assert "not waiting for an approval at step 0" in wrong.json()["message"]
    assert api.post(f"/approvals/{run_id}/1", json={"approved": True}).status_code == 200
    again = api.post(f"/approvals/{run_id}/1", json={"approved": True})
    assert again.status_code == 409
    assert "already answered" in again.json()["message"]
    assert api.post("/approvals/run-nope/1", json={"approved": True}).status_code == 404


def test_rejection_resumes_with_approved_false(api: httpx.Client, recorder: Recorder) -> None:
    run_id = t1_with_approval(api, recorder)
    wait_for(api, run_id, until=("paused",))
    assert api.post(f"/approvals/{run_id}/1", json={"approved": False, "comment": "no receipt"}).status_code == 200
    run = wait_for(api, run_id)
    assert run["status"] == "completed"
    assert run["context"]["__approved"] is False
    assert [step["status"] for step in run["steps"]] == ["completed", "completed", "skipped"]
    assert recorder.calls == []


def test_decision_is_required(api: httpx.Client, recorder: Recorder) -> None:
    run_id = t1_with_approval(api, recorder)
    wait_for(api, run_id, until=("paused",))
    response = api.post(f"/approvals/{run_id}/1", json={"comment": "?"})
    assert response.status_code == 400
    assert response.json()["message"].startswith("approved")


def test_cancelled_run_cannot_be_approved(api: httpx.Client, recorder: Recorder) -> None:
    run_id = t1_with_approval(api, recorder)
    wait_for(api, run_id, until=("paused",))
    assert api.post(f"/runs/{run_id}/cancel", json={"reason": "duplicate"}).status_code == 200
    response = api.post(f"/approvals/{run_id}/1", json={"approved": True})
    assert response.status_code == 409
    assert "cancelled" in response.json()["message"]
    assert api.get("/approvals").json()["approvals"] == []


def form_run(api: httpx.Client, properties: dict[str, Any]) -> str:
    definition = {
        "actions": [
            {"type": "PbotForm", "properties": properties},
            {"type": "matcher", "properties": {"left": "@items", "right": "@items", "matchOn": ["id"]}},
        ]
    }
    workflow_id = api.post("/workflows", json={"name": "form", "definition": definition}).json()["id"]
    return str(api.post(f"/workflows/{workflow_id}/execute", json={"input": {}}).json()["run_id"])


def test_form_submission_joins_the_context(api: httpx.Client) -> None:
    run_id = form_run(api, {"expected_keys": ["shipping_address", "items"]})
    wait_for(api, run_id, until=("paused",))
    forms = api.get("/forms/pending").json()["forms"]
    assert [(f["run_id"], f["step_index"], f["expected_keys"]) for f in forms] == [
        (run_id, 0, ["shipping_address", "items"])
    ]

    missing = api.post(f"/forms/{run_id}/0/submit", json={"data": {"shipping_address": "1 Main St"}})
    assert missing.status_code == 400
    assert "items" in missing.json()["message"]

    submitted = api.post(
        f"/forms/{run_id}/0/submit", json={"data": {"shipping_address": "1 Main St", "items": [{"id": 1}]}}
    )
    assert submitted.status_code == 200, submitted.text
    run = wait_for(api, run_id)
    assert run["status"] == "completed"
    assert run["context"]["shipping_address"] == "1 Main St"
    assert len(run["context"]["matched"]) == 1


def test_form_accepts_the_keys_at_the_top_level_too(api: httpx.Client) -> None:
    run_id = form_run(api, {"expected_keys": ["items"]})
    wait_for(api, run_id, until=("paused",))
    assert api.post(f"/forms/{run_id}/0/submit", json={"items": []}).status_code == 200
    assert wait_for(api, run_id)["status"] == "completed"


def test_expired_form_fails_the_run_with_a_timeout(api: httpx.Client) -> None:
    run_id = form_run(api, {"expected_keys": ["items"], "ttl_seconds": 1})
    wait_for(api, run_id, until=("paused",))
    deadline = time.monotonic() + 30
    while api.get(f"/runs/{run_id}/status").json()["status"] == "paused" and time.monotonic() < deadline:
        time.sleep(0.2)
    run = api.get(f"/runs/{run_id}/status").json()
    assert run["status"] == "failed"
    assert "timeout" in run["error"]
    late = api.post(f"/forms/{run_id}/0/submit", json={"items": []})
    assert late.status_code == 409
    assert "expired" in late.json()["message"]


def test_a_form_past_its_deadline_is_refused_before_the_sweeper_sees_it(api: httpx.Client, server: ServerInfo) -> None:
    run_id = form_run(api, {"expected_keys": ["items"], "ttl_seconds": 3600})
    wait_for(api, run_id, until=("paused",))
    with psycopg.connect(
        server.database_url.replace("+psycopg", ""), autocommit=True
    ) as connection:  # the deadline passes now
        connection.execute("UPDATE interrupts SET expires_at = now() - interval '1 second' WHERE run_id = %s", [run_id])
    late = api.post(f"/forms/{run_id}/0/submit", json={"items": []})
    assert late.status_code == 409
    assert "expired" in late.json()["message"]
