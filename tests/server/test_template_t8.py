"""Hyphen template T8 (insurance claims adjudication), the part that needs no agent: the template's exact chained
matchers (claim to policy, then duplicate detection on the matched pairs), then the adjudication log, a custom table,
written for every claim. The per-claim ReAct agent and the adjudicator's approval are left out (the engine does not
run agents yet): unique claims are logged as pending adjudication."""

from __future__ import annotations

from typing import Any

import httpx

from tests.server.runs_helpers import wait_for

CLAIMS = [
    {"claim_id": "CLM-1", "policy_number": "P-100", "member_id": "M-1", "procedure_code": "99213",
     "service_date": "2026-02-01", "amount": 150.00, "billed_amount": 150.00},
    {"claim_id": "CLM-2", "policy_number": "P-200", "member_id": "M-2", "procedure_code": "99214",
     "service_date": "2026-02-03", "amount": 200.00, "billed_amount": 200.00},
    {"claim_id": "CLM-3", "policy_number": "P-999", "member_id": "M-3", "procedure_code": "99213",
     "service_date": "2026-02-04", "amount": 90.00, "billed_amount": 90.00},
    {"claim_id": "CLM-4", "policy_number": "P-300", "member_id": "M-4", "procedure_code": "99215",
     "service_date": "2026-02-05", "amount": 310.50, "billed_amount": 310.50},
]  # fmt: skip
POLICIES = [
    {"policy_number": "P-100", "member_id": "M-1", "plan": "gold"},
    {"policy_number": "P-200", "member_id": "M-2", "plan": "silver"},
    {"policy_number": "P-300", "member_id": "M-4", "plan": "gold"},
    {"policy_number": "P-400", "member_id": "M-5", "plan": "bronze"},
]
RECENT_CLAIMS = [
    {
        "claim_id": "OLD-7",
        "member_id": "M-1",
        "procedure_code": "99213",
        "service_date": "2026-02-01",
        "amount": 150.00,
    },
    {
        "claim_id": "OLD-8",
        "member_id": "M-4",
        "procedure_code": "99215",
        "service_date": "2026-01-05",
        "amount": 310.50,
    },
]
ADJUDICATION_LOG = {
    "name": "adjudication_log",
    "fields": [
        {"name": "claim_id", "type": "text", "required": True},
        {"name": "policy_number", "type": "text"},
        {"name": "decision", "type": "text", "required": True},
        {"name": "billed_amount", "type": "numeric"},
        {"name": "duplicate_of", "type": "text"},
        {"name": "run_id", "type": "text", "required": True},
        {"name": "logged_at", "type": "timestamptz", "required": True},
    ],
}


def log_each(items: str, variable: str, fields: dict[str, Any]) -> dict[str, Any]:
    return {
        "type": "loop",
        "filter": {"condition": {"greaterThan": [{"length": items}, 0]}},
        "properties": {
            "mode": "foreach",
            "items_path": items,
            "item_variable_name": variable,
            "actions_to_execute": [
                {
                    "type": "custom-table",
                    "properties": {
                        "table": "adjudication_log",
                        "operation": "write",
                        "keys": ["run_id"],
                        "values": ["@__run_id"],
                        "fields": {**fields, "logged_at": "@now"},
                    },
                }
            ],
        },
    }


DEFINITION = {
    "actions": [
        {  # the template's first matcher, verbatim
            "type": "matcher",
            "properties": {
                "left": "@input.claims",
                "right": "@input.policies",
                "matchOn": ["policy_number", "member_id"],
                "dateWindowDays": 0,
                "outputMatched": "claims_with_policy",
                "outputUnmatchedLeft": "no_policy_claims",
                "outputUnmatchedRight": "unused_policies",
            },
        },
        {  # the template's second matcher, verbatim: duplicates among the matched pairs
            "type": "matcher",
            "filter": {"condition": {"greaterThan": [{"length": "@claims_with_policy"}, 0]}},
            "properties": {
                "left": "@claims_with_policy",
                "right": "@input.recent_claims",
                "matchOn": ["member_id", "procedure_code", "service_date"],
                "tolerance": 0,
                "dateWindowDays": 1,
                "outputMatched": "potential_duplicates",
                "outputUnmatchedLeft": "unique_claims",
                "outputUnmatchedRight": "no_dup_match",
            },
        },
        log_each("@no_policy_claims", "claim", {"claim_id": "@claim.claim_id", "decision": "denied_no_policy"}),
        log_each(
            "@potential_duplicates",
            "dup",
            {
                "claim_id": "@dup.a.a.claim_id",
                "policy_number": "@dup.a.b.policy_number",
                "decision": "duplicate_flagged",
                "duplicate_of": "@dup.b.claim_id",
            },
        ),
        log_each(
            "@unique_claims",
            "claim",
            {
                "claim_id": "@claim.a.claim_id",
                "policy_number": "@claim.b.policy_number",
                "billed_amount": "@claim.a.billed_amount",
                "decision": "pending_adjudication",
            },
        ),
    ]
}


def test_chained_matchers_then_the_adjudication_log(api: httpx.Client) -> None:
    assert api.post("/custom-tables", json=ADJUDICATION_LOG).status_code == 201
    workflow = api.post("/workflows", json={"name": "claims_adjudication", "definition": DEFINITION})
    assert workflow.status_code == 201, workflow.text
    body = {"input": {"claims": CLAIMS, "policies": POLICIES, "recent_claims": RECENT_CLAIMS}}
    run = wait_for(api, api.post(f"/workflows/{workflow.json()['id']}/execute", json=body).json()["run_id"])
    assert run["status"] == "completed", run
    context = run["context"]
    assert [p["a"]["claim_id"] for p in context["claims_with_policy"]] == ["CLM-1", "CLM-2", "CLM-4"]
    assert [c["claim_id"] for c in context["no_policy_claims"]] == ["CLM-3"]
    assert [p["policy_number"] for p in context["unused_policies"]] == ["P-400"]
    assert [(d["a"]["a"]["claim_id"], d["b"]["claim_id"]) for d in context["potential_duplicates"]] == [
        ("CLM-1", "OLD-7")
    ]
    assert [p["a"]["claim_id"] for p in context["unique_claims"]] == ["CLM-2", "CLM-4"]

    rows = api.get("/custom-tables/adjudication_log/rows", params={"sort": "claim_id"}).json()["rows"]
    assert [(r["claim_id"], r["decision"], r["policy_number"], r["duplicate_of"]) for r in rows] == [
        ("CLM-1", "duplicate_flagged", "P-100", "OLD-7"),
        ("CLM-2", "pending_adjudication", "P-200", None),
        ("CLM-3", "denied_no_policy", None, None),
        ("CLM-4", "pending_adjudication", "P-300", None),
    ]
    assert rows[3]["billed_amount"] == 310.5
    pending = api.get("/custom-tables/adjudication_log/rows", params={"where": '{"decision": "pending_adjudication"}'})
    assert pending.json()["total"] == 2
    audit = api.get("/custom-tables/adjudication_log/audit").json()["entries"]
    assert len(audit) == 4 and {(e["operation"], e["actor_id"]) for e in audit} == {("insert", run["run_id"])}
