"""Hyphen template T7 (contract review), the part that needs no agent: the six action registrations (the llm
templates with escaped quotes and newlines come back exactly from GET /actions/{id}), then extract_contract_terms
(llm, answered by the fake model) and log_contract (custom-table) writing the extracted terms."""

from __future__ import annotations

import json
from typing import Any

import httpx

from tests.server.runs_helpers import Recorder, wait_for
from tests.server.test_llm_actions import FakeModel, model

__all__ = ["model"]

# The documented registration (json.dumps writes the template's quotes and newlines as the doc's \" and \n escapes).
TEMPLATE = (
    "Extract the following key terms from this contract as JSON:\n- parties (array of names)\n- effective_date\n"
    "- termination_date\n- auto_renewal (boolean)\n- renewal_notice_days\n- governing_law\n"
    '- liability_cap (amount or "unlimited")\n- indemnification_scope ("mutual", "one-way", "none")\n'
    "- payment_terms\n- sla_commitments (array)\n- termination_for_convenience (boolean)\n"
    "- change_of_control_clause (boolean)\n- data_handling_provisions (summary)\n"
    '- non_compete_scope (summary or "none")\n\nContract text:\n{{contract_text}}\n\nRespond with valid JSON only.'
)
EXTRACT_CONTRACT_TERMS = json.dumps(
    {
        "action_name": "extract_contract_terms",
        "kind": "llm",
        "template": TEMPLATE,
        "model": "gpt-4",
        "max_tokens": 2000,
    },
    indent=2,
)


def other_actions(base: str) -> list[dict[str, Any]]:
    return [
        {
            "action_name": "lookup_playbook",
            "kind": "http",
            "url": base + "/playbooks/{{contract_type}}",
            "http_method": "GET",
        },
        {
            "action_name": "assess_clause_risk",
            "kind": "llm",
            "template": (
                'Classify the risk of this clause as "low", "medium" or "high":\n\n{{clause}}\n\n'
                "Playbook:\n{{playbook}}"
            ),
            "model": "gpt-4",
            "max_tokens": 500,
        },
        {
            "action_name": "draft_redline",
            "kind": "llm",
            "template": 'Suggest alternative language for:\n{{clause}}\nKeep "tone" neutral.',
        },
        {"action_name": "search_precedent", "kind": "http", "url": base + "/precedents", "http_method": "POST"},
        {
            "action_name": "log_contract",
            "kind": "custom-table",
            "description": "Write extracted terms to contract database",
        },
    ]


CONTRACTS = {
    "name": "contracts",
    "fields": [
        {"name": "contract_id", "type": "text", "required": True},
        {"name": "extracted_terms", "type": "text", "required": True},
        {"name": "review_status", "type": "text", "required": True},
        {"name": "run_id", "type": "text", "required": True},
        {"name": "logged_at", "type": "timestamptz"},
    ],
}
DEFINITION = {
    "actions": [
        {
            "type": "extract_contract_terms",
            "properties": {"contract_text": "@input.contract_text"},
            "outputKey": "terms",
        },
        {
            "type": "log_contract",
            "properties": {
                "table": "contracts",
                "operation": "write",
                "keys": ["contract_id", "run_id"],
                "values": ["@input.contract_id", "@__run_id"],
                "fields": {"extracted_terms": "@terms", "review_status": "extracted", "logged_at": "@now"},
            },
        },
    ]
}


def test_registrations_round_trip_exactly(api: httpx.Client, recorder: Recorder) -> None:
    created = api.post("/actions", content=EXTRACT_CONTRACT_TERMS, headers={"content-type": "application/json"})
    assert created.status_code == 201, created.text
    stored = api.get(f"/actions/{created.json()['id']}")
    assert stored.json() == created.json()
    sent = json.loads(EXTRACT_CONTRACT_TERMS)
    assert {k: stored.json()[k] for k in sent} == sent
    assert r"(\"mutual\", \"one-way\", \"none\")\n- payment_terms" in stored.text
    base = recorder.url.rsplit("/", 1)[0]
    for action in other_actions(base):
        response = api.post("/actions", json=action)
        assert response.status_code == 201, response.text
        again = api.get(f"/actions/{response.json()['id']}").json()
        assert {k: again[k] for k in action} == action
    kinds = {a["action_name"]: a["kind"] for a in api.get("/actions").json()["actions"]}
    assert kinds["log_contract"] == "custom-table" and len(kinds) == 6


def test_extracted_terms_are_logged_to_the_contract_table(api: httpx.Client, model: FakeModel) -> None:
    terms = '{"parties": ["Acme", "Globex"], "liability_cap": "unlimited", "indemnification_scope": "mutual"}'
    model.answer = terms
    api.post("/org-config", json={"key": "api:llm_api_key", "value": "sk-model-key"})
    api.post("/org-config", json={"key": "settings:llm_base_url", "value": model.base_url})
    assert api.post("/actions", content=EXTRACT_CONTRACT_TERMS).status_code == 201
    assert api.post("/actions", json=other_actions("http://127.0.0.1:9")[-1]).status_code == 201
    assert api.post("/custom-tables", json=CONTRACTS).status_code == 201
    workflow = api.post("/workflows", json={"name": "contract_review", "definition": DEFINITION})
    assert workflow.status_code == 201, workflow.text
    body = {"input": {"contract_id": "MSA-2026-01", "contract_text": "This Master Services Agreement ..."}}
    run = wait_for(api, api.post(f"/workflows/{workflow.json()['id']}/execute", json=body).json()["run_id"])
    assert run["status"] == "completed", run
    prompt = model.requests[0]["body"]["messages"][-1]["content"]
    assert prompt.startswith("Extract the following key terms") and 'liability_cap (amount or "unlimited")' in prompt
    assert prompt.endswith("Contract text:\nThis Master Services Agreement ...\n\nRespond with valid JSON only.")
    [row] = api.get("/custom-tables/contracts/rows").json()["rows"]
    assert (row["contract_id"], row["extracted_terms"], row["review_status"]) == ("MSA-2026-01", terms, "extracted")
    [entry] = api.get("/custom-tables/contracts/audit").json()["entries"]
    assert (entry["actor_kind"], entry["actor_id"]) == ("run", run["run_id"])
