"""Hyphen tutorial T1 "Your First Workflow", steps 1-2, verbatim: X-Org-Id and then a Bearer key."""

from __future__ import annotations

import uuid
from typing import Any

import httpx
import pytest

from tests.conftest import ServerInfo

REGISTER_ACTION = {
    "action_name": "update_erp_status",
    "kind": "http",
    "description": "Mark a record as reconciled in the ERP",
    "url": "https://httpbin.org/post",
    "http_method": "POST",
    "passthrough": True,
}
CREATE_WORKFLOW = {
    "name": "first_workflow",
    "definition": {
        "actions": [
            {
                "type": "matcher",
                "properties": {
                    "left": "@input.invoices",
                    "right": "@input.payments",
                    "matchOn": ["invoice_id"],
                    "tolerance": 0.05,
                    "outputMatched": "matched",
                    "outputUnmatchedLeft": "unmatched_invoices",
                    "outputUnmatchedRight": "unmatched_payments",
                },
            },
            {
                "type": "update_erp_status",
                "filter": {"condition": {"greaterThan": [{"length": "@matched"}, 0]}},
                "properties": {"records": "@matched", "action": "mark_reconciled"},
            },
        ]
    },
}


def run_tutorial(client: httpx.Client) -> dict[str, Any]:
    registered = client.post("/actions", json=REGISTER_ACTION)
    assert registered.status_code == 201, registered.text
    action = registered.json()
    assert action["id"].startswith("act-")
    assert {k: action[k] for k in REGISTER_ACTION} == REGISTER_ACTION
    listed = client.get("/actions").json()["actions"]
    assert [a["action_name"] for a in listed] == ["update_erp_status"]

    created = client.post("/workflows", json=CREATE_WORKFLOW)
    assert created.status_code == 201, created.text
    workflow: dict[str, Any] = created.json()
    assert workflow["id"].startswith("wfl-")
    assert workflow["name"] == "first_workflow"
    assert workflow["definition"] == CREATE_WORKFLOW["definition"]
    assert workflow["version"] == 1
    assert client.get(f"/workflows/{workflow['id']}").json() == workflow
    return workflow


def test_tutorial_steps_work_with_org_header(server: ServerInfo) -> None:
    with httpx.Client(base_url=server.http_url, headers={"X-Org-Id": f"tutorial-org-{uuid.uuid4().hex[:6]}"}) as c:
        run_tutorial(c)


def test_tutorial_steps_work_with_the_literal_tutorial_org(server: ServerInfo) -> None:
    with httpx.Client(base_url=server.http_url, headers={"X-Org-Id": "tutorial-org"}) as client:
        existing = client.get("/workflows", params={"name": "first_workflow"}).json()["workflows"]
        for workflow in existing:  # a rerun against a kept database
            client.delete(f"/workflows/{workflow['id']}")
        if client.get("/actions").json()["actions"]:
            pytest.skip("tutorial-org already has actions in this database")
        run_tutorial(client)


def test_tutorial_steps_work_with_a_bearer_key(strict_server: ServerInfo) -> None:
    with httpx.Client(base_url=strict_server.http_url) as anonymous:
        signup = anonymous.post(
            "/gateway/signup", json={"email": f"{uuid.uuid4().hex}@example.com", "name": "Acme Ops"}
        )
    assert signup.status_code == 201, signup.text
    key = signup.json()["api_key"]["key"]
    assert key.startswith("sk-hyp-")
    with httpx.Client(base_url=strict_server.http_url, headers={"Authorization": f"Bearer {key}"}) as client:
        run_tutorial(client)
