"""Hyphen template T6 (KYC customer onboarding), the part that needs no agent: every path ends in the onboarding log,
a custom table, written with the applicant's decision. The orchestrator agent (loop mode react with workflow tools)
is left out: the engine does not run agents yet, so its result (`onboarding_decision`, the `{answer, confidence}`
shape the template reads as `@onboarding_decision.answer.decision`) comes in with the input."""

from __future__ import annotations

from typing import Any

import httpx

from tests.server.runs_helpers import wait_for

ONBOARDING_LOG = {
    "name": "onboarding_log",
    "fields": [
        {"name": "applicant_id", "type": "text", "required": True},
        {"name": "applicant_name", "type": "text", "required": True, "maxLength": 200},
        {"name": "decision", "type": "text", "required": True},
        {"name": "risk_level", "type": "text"},
        {"name": "confidence", "type": "numeric"},
        {"name": "auto_approved", "type": "boolean"},
        {"name": "run_id", "type": "text", "required": True},
        {"name": "decided_at", "type": "timestamptz", "required": True},
    ],
}
DEFINITION = {
    "actions": [
        {
            "type": "custom-table",
            "properties": {
                "table": "onboarding_log",
                "operation": "write",
                "keys": ["applicant_id"],
                "values": ["@input.applicant_id"],
                "fields": {
                    "applicant_name": "@input.applicant_name",
                    "decision": "@input.onboarding_decision.answer.decision",
                    "risk_level": "@input.onboarding_decision.answer.risk_level",
                    "confidence": "@input.onboarding_decision.confidence",
                    "run_id": "@__run_id",
                    "decided_at": "@now",
                },
            },
            "outputKey": "log_entry",
        },
        {  # approved applicants are marked as auto-approved (the template's filter on the decision)
            "type": "custom-table",
            "filter": {"condition": {"equal": ["@input.onboarding_decision.answer.decision", "approved"]}},
            "properties": {
                "table": "onboarding_log",
                "operation": "update",
                "keys": ["applicant_id", "run_id"],
                "values": ["@input.applicant_id", "@__run_id"],
                "fields": {"auto_approved": True},
            },
        },
    ]
}


def onboard(api: httpx.Client, workflow_id: str, applicant: str, decision: str, risk: str) -> dict[str, Any]:
    body = {
        "input": {
            "applicant_id": applicant,
            "applicant_name": f"Applicant {applicant}",
            "onboarding_decision": {"answer": {"decision": decision, "risk_level": risk}, "confidence": 0.91},
        }
    }
    return wait_for(api, api.post(f"/workflows/{workflow_id}/execute", json=body).json()["run_id"])


def test_every_decision_lands_in_the_onboarding_log(api: httpx.Client) -> None:
    assert api.post("/custom-tables", json=ONBOARDING_LOG).status_code == 201
    workflow = api.post("/workflows", json={"name": "kyc_customer_onboarding", "definition": DEFINITION})
    assert workflow.status_code == 201, workflow.text
    approved = onboard(api, workflow.json()["id"], "APP-1", "approved", "low")
    denied = onboard(api, workflow.json()["id"], "APP-2", "denied", "high")
    assert approved["status"] == denied["status"] == "completed"
    assert approved["context"]["log_entry"]["decision"] == "approved"

    rows = api.get("/custom-tables/onboarding_log/rows", params={"sort": "applicant_id"}).json()["rows"]
    assert [(r["applicant_id"], r["decision"], r["risk_level"], r["auto_approved"]) for r in rows] == [
        ("APP-1", "approved", "low", True),
        ("APP-2", "denied", "high", None),
    ]
    assert [r["run_id"] for r in rows] == [approved["run_id"], denied["run_id"]]
    assert rows[0]["confidence"] == 0.91
    denied_rows = api.get("/custom-tables/onboarding_log/rows", params={"where": '{"decision": "denied"}'})
    assert [r["applicant_id"] for r in denied_rows.json()["rows"]] == ["APP-2"]
    audit = api.get("/custom-tables/onboarding_log/audit").json()["entries"]
    assert [(e["operation"], e["actor_id"]) for e in audit] == [
        ("insert", denied["run_id"]),
        ("update", approved["run_id"]),
        ("insert", approved["run_id"]),
    ]


def test_a_missing_decision_fails_the_run_and_logs_nothing(api: httpx.Client) -> None:
    assert api.post("/custom-tables", json=ONBOARDING_LOG).status_code == 201
    workflow = api.post("/workflows", json={"name": "kyc_customer_onboarding", "definition": DEFINITION}).json()
    body = {"input": {"applicant_id": "APP-3", "applicant_name": "X", "onboarding_decision": {"answer": {}}}}
    run = wait_for(api, api.post(f"/workflows/{workflow['id']}/execute", json=body).json()["run_id"])
    assert run["status"] == "failed"
    assert api.get("/custom-tables/onboarding_log/rows").json()["total"] == 0
