"""T9: standalone agents — Pattern B (document classifier and router) and Pattern C (customer onboarding
orchestrator), with the docs' request bodies, against the fake model server."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from server.fakemodel import FakeModelServer
from tests.server.runs_helpers import Recorder, wait_for

SCENARIOS = Path(__file__).parent / "scenarios" / "agents.json"


@pytest.fixture(scope="module")
def model() -> Iterator[FakeModelServer]:
    with FakeModelServer(SCENARIOS) as fake:
        yield fake


@pytest.fixture
def acme(api: httpx.Client, model: FakeModelServer, recorder: Recorder) -> httpx.Client:
    api.post("/org-config", json={"key": "api:llm_api_key", "value": "sk-acme-test-key"})
    api.post("/org-config", json={"key": "settings:llm_base_url", "value": model.base_url})
    base = recorder.url.removesuffix("/post")
    actions = [
        {
            "action_name": "document_classifier",
            "kind": "llm",
            "description": "Classify a document: invoice, purchase_order, support_ticket or contract",
            "template": "Classify the document type of: {{document_text}}",
        },
        {"action_name": "field_extractor", "kind": "http", "url": base + "/extract/{{kind}}", "http_method": "GET"},
        {"action_name": "gmail_send", "kind": "http", "url": recorder.url, "http_method": "POST"},
        {"action_name": "kyc_check", "kind": "http", "url": base + "/kyc/{{company}}", "http_method": "GET"},
    ]
    for action in actions:
        assert api.post("/actions", json=action).status_code == 201, action
    return api


def test_pattern_b_classifies_routes_without_waiting_and_completes(acme: httpx.Client, recorder: Recorder) -> None:
    review = {"type": "PbotApproval", "properties": {"comment": "review the routed document"}}
    for name in ("invoice_processing", "purchase_order_processing", "support_ticket_handler", "contract_review"):
        assert acme.post("/workflows", json={"name": name, "definition": {"actions": [review]}}).status_code == 201
    body = {
        "objective": "Classify this incoming document and route it to the correct processing workflow.\n\n"
        "Document content:\n{{input.document_text}}\n\nSender: {{input.sender_email}}\n"
        "Received: {{input.received_at}}",
        "tools": [
            {"type": "action", "name": "document_classifier"},
            {"type": "action", "name": "field_extractor"},
            {"type": "workflow", "name": "invoice_processing"},
            {"type": "workflow", "name": "purchase_order_processing"},
            {"type": "workflow", "name": "support_ticket_handler"},
            {"type": "workflow", "name": "contract_review"},
        ],
        "config": {"model": "gpt-4", "max_iterations": 8, "on_stuck": {"iterations": 3, "action": "escalate"}},
        "input": {
            "document_text": "Invoice #77 from Globex, total 4500 EUR",
            "sender_email": "billing@globex.example",
            "received_at": "2026-02-01T10:30:00Z",
        },
    }
    agent = acme.post("/agents/execute", json=body).json()
    assert agent["status"] == "completed", agent
    assert agent["iterations"] == 4
    [routed] = agent["triggered_runs"]
    assert agent["final_answer"] == f"Routed to invoice_processing as run {routed}"
    assert agent["confidence"] == 0.92
    assert "Sender: billing@globex.example" in agent["objective"]
    trace = acme.get(f"/agents/{agent['agent_run_id']}/trace").json()["trace"]
    assert [(e["iteration"], e["action"]) for e in trace] == [
        (1, "document_classifier"),
        (2, "field_extractor"),
        (3, "invoice_processing"),
        (4, "__complete__"),
    ]
    assert trace[0]["observation"] == "invoice"
    assert trace[2]["observation"] == {"run_id": routed, "status": "running"}
    assert wait_for(acme, routed, until=("paused",))["workflow_name"] == "invoice_processing"
    assert [call["path"] for call in recorder.calls] == ["/extract/invoice"]


def test_pattern_c_orchestrates_workflows_escalates_to_a_person_and_completes(
    acme: httpx.Client, recorder: Recorder
) -> None:
    check = {"type": "kyc_check", "properties": {"company": "@input.company"}}
    for name in ("identity_verification", "sanctions_screening", "enhanced_due_diligence", "account_provisioning"):
        assert acme.post("/workflows", json={"name": name, "definition": {"actions": [check]}}).status_code == 201
    body = {
        "objective": "Onboard business customer: {{input.company_name}}\n\nCustomer details:\n"
        "- Company: {{input.company_name}}\n- Country: {{input.country}}\n\nProcess:\n"
        "1. Run identity verification\n2. Run sanctions screening\n3. If any concerns, run enhanced due diligence\n"
        "4. If still uncertain, request human review\n5. If approved, provision the account\n6. Send welcome email",
        "tools": [
            {"type": "workflow", "name": "identity_verification"},
            {"type": "workflow", "name": "sanctions_screening"},
            {"type": "workflow", "name": "enhanced_due_diligence"},
            {"type": "workflow", "name": "account_provisioning"},
            {"type": "action", "name": "gmail_send"},
        ],
        "config": {
            "model": "gpt-4",
            "max_iterations": 20,
            "timeout_ms": 600000,
            "on_stuck": {"iterations": 3, "action": "escalate"},
        },
        "input": {"company_name": "Acme GmbH", "country": "DE"},
    }
    agent = acme.post("/agents/execute", json=body).json()
    assert agent["status"] == "paused", agent
    assert agent["pause"]["question"] == "Sanctions screening found a near match for Acme GmbH. Proceed?"
    assert len(agent["triggered_runs"]) == 2
    for run_id in agent["triggered_runs"]:
        assert acme.get(f"/runs/{run_id}/status").json()["status"] == "completed"

    resumed = acme.post(f"/agents/{agent['agent_run_id']}/resume", json={"human_input": {"decision": "proceed"}})
    assert resumed.status_code == 200, resumed.text
    deadline = time.monotonic() + 30
    while True:
        status = acme.get(f"/agents/{agent['agent_run_id']}/status", params={"include_trace": "true"}).json()
        if status["status"] != "running" or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    assert status["status"] == "completed", status
    assert status["final_answer"] == "Acme GmbH onboarded (provisioning completed)"
    assert len(status["triggered_runs"]) == 3
    assert [e["action"] for e in status["trace"]] == [
        "__log_progress__",
        "identity_verification",
        "sanctions_screening",
        "__pause_for_human__",
        "account_provisioning",
        "__complete__",
    ]
    assert status["trace"][0]["action_input"] == {"message": "Starting onboarding", "milestone": "begin"}
    assert status["trace"][3]["observation"] == {"decision": "proceed"}
    assert [call["path"] for call in recorder.calls] == ["/kyc/acme-gmbh"] * 3
