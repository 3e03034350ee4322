"""GET /interrupts: every kind of pause (approval, form, agent) in one paginated, tenant-isolated listing, each with
what it asks and where to answer it."""

from __future__ import annotations

import uuid
from typing import Any

import httpx

from server.fakemodel import FakeModelServer
from tests.conftest import ServerInfo
from tests.server.runs_helpers import Recorder, wait_for
from tests.server.test_agents import TOOLS, model, wait_agent
from tests.server.test_agents import agents as agents

__all__ = ["model"]


def _paused_workflow(api: httpx.Client, name: str, step: dict[str, Any]) -> str:
    created = api.post("/workflows", json={"name": name, "definition": {"actions": [step]}})
    assert created.status_code == 201, created.text
    run_id = str(api.post(f"/workflows/{created.json()['id']}/execute", json={"input": {}}).json()["run_id"])
    assert wait_for(api, run_id, until=("paused", "failed"))["status"] == "paused"
    return run_id


def test_every_kind_of_pause_is_listed_with_how_to_answer_it(
    agents: httpx.Client,
    server: ServerInfo,
    recorder: Recorder,
    model: FakeModelServer,
) -> None:
    approval_run = _paused_workflow(agents, "gate", {"type": "PbotApproval", "properties": {"comment": "Ship it?"}})
    form_run = _paused_workflow(agents, "ask", {"type": "PbotForm", "properties": {"expected_keys": ["email"]}})
    body = {"objective": "Handle this: the customer was charged twice for ORD-12345", "tools": TOOLS}
    agent_run = agents.post("/agents/execute", json=body).json()
    assert agent_run["status"] == "paused", agent_run
    agent_id = agent_run["agent_run_id"]

    listed = agents.get("/interrupts")
    assert listed.status_code == 200, listed.text
    entries = listed.json()["interrupts"]
    assert [(e["run_id"], e["kind"]) for e in entries] == [
        (approval_run, "approval"),
        (form_run, "form"),
        (agent_id, "agent"),
    ]
    approval, form, agent = entries
    assert approval["question"] == "Ship it?" and approval["status"] == "pending"
    assert (approval["answer_method"], approval["answer_path"]) == ("POST", f"/approvals/{approval_run}/0")
    assert form["payload"] == {"expected_keys": ["email"]}
    assert form["answer_path"] == f"/forms/{form_run}/0/submit"
    assert agent["question"] == "Refund the duplicate charge on ORD-12345?"
    assert agent["payload"]["options"] == ["refund", "decline"]
    assert agent["answer_path"] == f"/agents/{agent_id}/resume" and agent["created_at"]

    # filters, and the one pagination helper
    assert [e["run_id"] for e in agents.get("/interrupts?kind=agent").json()["interrupts"]] == [agent_id]
    assert [e["run_id"] for e in agents.get(f"/interrupts?run_id={form_run}").json()["interrupts"]] == [form_run]
    seen, token = [], ""
    while True:
        page = agents.get("/interrupts", params={"page_size": 1, **({"page_token": token} if token else {})}).json()
        seen += [e["run_id"] for e in page["interrupts"]]
        token = page.get("next_page_token", "")
        if not token:
            break
    assert seen == [approval_run, form_run, agent_id]
    assert agents.get("/interrupts?kind=form", params={"page_token": token or "bogus"}).status_code == 400

    # Hyphen's own listings keep their shapes and kinds
    assert [a["run_id"] for a in agents.get("/approvals").json()["approvals"]] == [approval_run]
    assert [f["run_id"] for f in agents.get("/forms/pending").json()["forms"]] == [form_run]

    # another org sees none of them
    with httpx.Client(base_url=server.http_url, headers={"X-Org-Id": f"test-{uuid.uuid4().hex[:12]}"}) as other:
        assert other.get("/interrupts").json().get("interrupts", []) == []

    # answering at the listed path takes the pause off the pending listing; it is listed as answered
    assert agents.request(agent["answer_method"], agent["answer_path"], json={"human_input": "refund"}).is_success
    assert wait_agent(agents, agent_id, ("completed", "failed"))["status"] == "completed"
    pending = [e["run_id"] for e in agents.get("/interrupts").json()["interrupts"]]
    assert pending == [approval_run, form_run]
    answered = agents.get("/interrupts?status=answered").json()["interrupts"]
    assert [(e["run_id"], e["status"]) for e in answered] == [(agent_id, "answered")]
