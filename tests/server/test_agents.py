"""Agents over REST against the fake model server (scenarios in tests/server/scenarios/agents.json): the ReAct loop,
built-in tools, pauses and resume, stuck detection, max_iterations, react steps inside workflows."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

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
def agents(api: httpx.Client, model: FakeModelServer, recorder: Recorder) -> httpx.Client:
    """The org, set up as in "Your First Agent": an LLM key, the model endpoint and the two tools."""
    assert api.post("/org-config", json={"key": "api:llm_api_key", "value": "sk-agent-test-key"}).status_code < 300
    assert api.post("/org-config", json={"key": "settings:llm_base_url", "value": model.base_url}).status_code < 300
    base = recorder.url.removesuffix("/post")
    lookup = {
        "action_name": "lookup_order",
        "kind": "http",
        "description": "Look up order details by order ID",
        "url": base + "/anything/orders/{{order_id}}",
        "http_method": "GET",
        "passthrough": True,
    }
    draft = {
        "action_name": "draft_response",
        "kind": "llm",
        "description": "Draft a professional customer service response",
        "template": "Draft a professional, empathetic response to this customer issue:\n\nIssue: {{issue}}\n"
        "Order details: {{order_details}}\n\nKeep it under 3 sentences.",
        "model": "gpt-4o-mini",
        "max_tokens": 256,
    }
    for action in (lookup, draft):
        assert api.post("/actions", json=action).status_code == 201, action
    return api


TOOLS = [{"type": "action", "name": "lookup_order"}, {"type": "action", "name": "draft_response"}]


def wait_agent(api: httpx.Client, agent_id: str, until: tuple[str, ...]) -> dict[str, Any]:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        status: dict[str, Any] = api.get(f"/agents/{agent_id}/status").json()
        if status["status"] in until:
            return status
        time.sleep(0.05)
    raise AssertionError(f"agent {agent_id} did not reach {until}: {status}")


def test_your_first_agent_pauses_for_a_human_and_the_parent_workflow_completes(
    agents: httpx.Client, recorder: Recorder, model: FakeModelServer
) -> None:
    step = {
        "type": "loop",
        "properties": {
            "mode": "react",
            "objective": "Handle this customer issue: the customer says they were charged twice for {{input.order}}",
            "tools": TOOLS,
            "max_iterations": 10,
            "result_key": "agentResult",
        },
    }
    created = agents.post("/workflows", json={"name": "customer_issue_agent", "definition": {"actions": [step]}})
    assert created.status_code == 201, created.text
    run_id = agents.post(f"/workflows/{created.json()['id']}/execute", json={"input": {"order": "ORD-12345"}}).json()[
        "run_id"
    ]
    paused = wait_for(agents, run_id, until=("paused", "completed", "failed"))
    assert paused["status"] == "paused", paused

    trace = agents.get(f"/agents/{run_id}/trace").json()
    assert [entry["action"] for entry in trace["trace"]] == ["lookup_order", "draft_response", "__pause_for_human__"]
    assert trace["trace"][0]["observation"]["path"] == "/anything/orders/ORD-12345"
    assert trace["trace"][1]["observation"] == "We are sorry about the double charge; a refund is on its way."
    assert "observation" not in trace["trace"][2] or trace["trace"][2]["observation"] is None
    assert trace["pause"]["question"] == "Refund the duplicate charge on ORD-12345?"
    assert trace["status"] == "paused"
    assert [call["path"] for call in recorder.calls] == ["/anything/orders/ORD-12345"]

    resumed = agents.post(f"/agents/{run_id}/resume", json={"human_input": "refund approved"})
    assert resumed.status_code == 200, resumed.text
    done = wait_for(agents, run_id)
    assert done["status"] == "completed", done
    assert done["context"]["agentResult"] == {
        "answer": "Handled. Human decision: refund approved",
        "confidence": 0.9,
        "summary": "Looked up the order, drafted a reply, asked a human about the refund.",
    }
    assert len(recorder.calls) == 1  # the replay after the resume called no tool again

    again = agents.post(f"/agents/{run_id}/resume", json={"human_input": "twice"})
    assert again.status_code == 409, again.text


def test_a_standalone_agent_runs_synchronously_with_memory_and_an_object_answer(agents: httpx.Client) -> None:
    body = {"objective": "Please remember the ticket for {{input.who}}", "input": {"who": "ada"}, "tools": []}
    response = agents.post("/agents/execute", json=body)
    assert response.status_code == 200, response.text
    agent = response.json()
    assert agent["agent_run_id"].startswith("agent-")
    assert agent["status"] == "completed", agent
    assert agent["final_answer"] == {"recalled": "TK-1"}
    assert agent["confidence"] == 0.5
    assert agent["iterations"] == 4
    assert agent["objective"] == "Please remember the ticket for ada"
    assert agent["usage"]["total_tokens"] > 0
    assert "trace" not in agent or agent["trace"] == []
    status = agents.get(f"/agents/{agent['agent_run_id']}/status", params={"include_trace": "true"}).json()
    assert [entry["action"] for entry in status["trace"]] == [
        "__store_memory__",
        "__log_progress__",
        "__retrieve_memory__",
        "__complete__",
    ]
    assert status["trace"][2]["observation"] == {"key": "ticket", "value": {"id": "TK-1"}}
    assert all(entry["success"] for entry in status["trace"])


def test_async_execute_answers_running_and_the_list_filters_by_status(agents: httpx.Client) -> None:
    body = {"objective": "Please remember the ticket", "tools": []}
    started = agents.post("/agents/execute", params={"async": "true"}, json=body)
    assert started.status_code == 200, started.text
    agent_id = started.json()["agent_run_id"]
    assert wait_agent(agents, agent_id, ("completed", "failed"))["status"] == "completed"
    completed = agents.get("/agents", params={"status": "completed"}).json()["agents"]
    assert agent_id in [a["agent_run_id"] for a in completed]
    assert agents.get("/agents", params={"status": "paused"}).json().get("agents", []) == []


def test_a_reply_that_is_not_json_is_repaired_once_and_an_undeclared_tool_is_an_observation(
    agents: httpx.Client, model: FakeModelServer
) -> None:
    agent = agents.post("/agents/execute", json={"objective": "repair then undeclared", "tools": TOOLS}).json()
    assert agent["status"] == "completed", agent
    assert "unknown tool 'launch_missiles'" in agent["final_answer"]
    trace = agents.get(f"/agents/{agent['agent_run_id']}/trace").json()["trace"]
    assert [(e["action"], e["success"]) for e in trace] == [("launch_missiles", False), ("__complete__", True)]


def test_pause_resume_and_a_second_resume_conflicts(agents: httpx.Client) -> None:
    body = {"objective": "The customer was charged twice for {{input.order}}", "tools": TOOLS}
    agent = agents.post("/agents/execute", json={**body, "input": {"order": "ORD-12345"}}).json()
    assert agent["status"] == "paused", agent
    assert agent["pause"]["options"] == ["refund", "decline"]
    agent_id = agent["agent_run_id"]
    assert agent_id in [a["agent_run_id"] for a in agents.get("/agents", params={"status": "paused"}).json()["agents"]]

    first = agents.post(f"/agents/{agent_id}/resume", json={"response": "decline"})
    assert first.status_code == 200, first.text
    second = agents.post(f"/agents/{agent_id}/resume", json={"response": "refund"})
    assert second.status_code == 409, second.text
    done = wait_agent(agents, agent_id, ("completed", "failed"))
    assert done["final_answer"] == "Handled. Human decision: decline"
    assert done["stop_reason"] == "end_turn"


def test_a_cancelled_agent_cannot_be_resumed(agents: httpx.Client) -> None:
    body = {"objective": "The customer was charged twice", "tools": TOOLS}
    agent_id = agents.post("/agents/execute", json=body).json()["agent_run_id"]
    cancelled = agents.delete(f"/agents/{agent_id}")
    assert cancelled.status_code == 200, cancelled.text
    assert cancelled.json()["status"] == "cancelled"
    assert agents.post(f"/agents/{agent_id}/resume", json={"response": "refund"}).status_code == 409
    assert agents.delete(f"/agents/{agent_id}").status_code == 409


@pytest.mark.parametrize("config_style", ["nested", "flat"])
def test_stuck_with_fail_ends_the_run(agents: httpx.Client, config_style: str) -> None:
    settings = {"max_iterations": 8, "on_stuck": {"iterations": 3, "action": "fail"}}
    # the flat variant also declares its tools the legacy way, as plain names
    tools: list[Any] = TOOLS if config_style == "nested" else ["lookup_order", "draft_response", "__complete__"]
    body: dict[str, Any] = {"objective": "You are stuck on one action", "tools": tools}
    body.update({"config": settings} if config_style == "nested" else settings)
    agent = agents.post("/agents/execute", json=body).json()
    assert agent["status"] == "failed", agent
    assert agent["stop_reason"] == "stuck"
    assert "the same action 'lookup_order' with the same input 3 times in a row" in agent["error"]
    assert agent["iterations"] == 3


def test_stuck_with_retry_with_hint_puts_the_hint_in_the_prompt(agents: httpx.Client) -> None:
    on_stuck = {"iterations": 3, "action": "retry_with_hint", "hint": "Use __complete__ with your best answer."}
    body = {"objective": "You are stuck on one action", "tools": TOOLS, "config": {"on_stuck": on_stuck}}
    agent = agents.post("/agents/execute", json=body).json()
    assert agent["status"] == "completed", agent
    assert "Hint: Use __complete__ with your best answer." in agent["final_answer"]


def test_stuck_with_escalate_pauses_and_the_guidance_reaches_the_agent(agents: httpx.Client) -> None:
    body = {"objective": "You are stuck on one action", "tools": TOOLS, "on_stuck": {"action": "escalate"}}
    agent = agents.post("/agents/execute", json=body).json()
    assert agent["status"] == "paused", agent
    assert agent["pause"]["reason"] == "stuck"
    resumed = agents.post(f"/agents/{agent['agent_run_id']}/resume", json={"guidance": "the order is refunded"})
    assert resumed.status_code == 200, resumed.text
    done = wait_agent(agents, agent["agent_run_id"], ("completed", "failed"))
    assert done["status"] == "completed", done
    assert done["final_answer"] == "Human guidance: the order is refunded"
    trace = agents.get(f"/agents/{agent['agent_run_id']}/trace").json()["trace"]
    assert [e["action"] for e in trace] == ["lookup_order"] * 3 + ["__escalate__", "__complete__"]


def test_an_agent_without_complete_fails_with_max_iterations_reached(agents: httpx.Client) -> None:
    agent = agents.post("/agents/execute", json={"objective": "This never finishes", "max_iterations": 4}).json()
    assert agent["status"] == "failed", agent
    assert "max_iterations_reached" in agent["error"]
    assert agent["stop_reason"] == "max_iterations"
    assert agent["iterations"] == 4


def test_a_missing_llm_key_fails_the_agent_with_llm_key_missing(api: httpx.Client, model: FakeModelServer) -> None:
    api.post("/org-config", json={"key": "settings:llm_base_url", "value": model.base_url})
    agent = api.post("/agents/execute", json={"objective": "Please remember the ticket"}).json()
    assert agent["status"] == "failed", agent
    assert "llm_key_missing" in agent["error"]
    assert agent["stop_reason"] == "llm_error"


def test_invalid_agent_settings_are_rejected_with_the_field(agents: httpx.Client) -> None:
    bad = agents.post("/agents/execute", json={"objective": "x", "config": {"on_stuck": {"action": "panic"}}})
    assert bad.status_code == 400, bad.text
    assert "config.on_stuck.action" in bad.text
    assert agents.post("/agents/execute", json={"objective": ""}).status_code == 400
    assert agents.post("/agents/execute", json={"objective": "x", "tools": [{"type": "robot"}]}).status_code == 400
    assert agents.get("/agents/agent-00000000-0000-0000-0000-000000000000/status").status_code == 404


def test_previous_run_id_gives_the_earlier_answer_as_context(agents: httpx.Client, model: FakeModelServer) -> None:
    first = agents.post("/agents/execute", json={"objective": "Please remember the ticket"}).json()
    body = {"objective": "Please remember the ticket again", "previous_run_id": first["agent_run_id"]}
    second = agents.post("/agents/execute", json=body).json()
    assert second["previous_run_id"] == first["agent_run_id"]
    system = next(
        r["body"]["messages"][0]["content"]
        for r in model.requests
        if len(r["body"]["messages"]) > 1 and r["body"]["messages"][1]["content"] == body["objective"]
    )
    assert first["agent_run_id"] in system and '"recalled":"TK-1"' in system.replace(" ", "")
    unknown = {"objective": "x", "previous_run_id": "agent-00000000-0000-0000-0000-000000000000"}
    assert agents.post("/agents/execute", json=unknown).status_code == 404


def test_pattern_a_a_react_step_inside_a_foreach_stores_its_result(agents: httpx.Client) -> None:
    react = {
        "type": "loop",
        "properties": {
            "mode": "react",
            "objective": "Investigate why invoice {{exception.invoice_id}} has no matching payment.",
            "tools": [{"type": "action", "name": "lookup_order"}],
            "max_iterations": 8,
            "on_stuck": {"iterations": 3, "action": "escalate"},
            "result_key": "investigation",
        },
    }
    foreach = {
        "type": "loop",
        "properties": {
            "mode": "foreach",
            "items_path": "@input.exceptions",
            "item_variable_name": "exception",
            "actions_to_execute": [react],
            "collect_results": True,
            "result_key": "investigations",
        },
    }
    created = agents.post("/workflows", json={"name": "invoice_investigation", "definition": {"actions": [foreach]}})
    assert created.status_code == 201, created.text
    body = {"input": {"exceptions": [{"invoice_id": "INV-003"}, {"invoice_id": "INV-004"}]}}
    run = wait_for(agents, agents.post(f"/workflows/{created.json()['id']}/execute", json=body).json()["run_id"])
    assert run["status"] == "completed", run
    outputs = [item["output"] for item in run["context"]["investigations"]]
    assert outputs == [{"answer": "approve", "confidence": 0.8, "summary": "partial payment found"}] * 2


def test_a_workflow_tool_starts_a_child_run_and_waits_for_it(agents: httpx.Client, recorder: Recorder) -> None:
    child = {"type": "lookup_order", "properties": {"order_id": "@input.x"}}
    created = agents.post("/workflows", json={"name": "child_flow", "definition": {"actions": [child]}}).json()
    body = {"objective": "Please run the child workflow", "tools": [{"type": "workflow", "id": created["id"]}]}
    agent = agents.post("/agents/execute", json=body).json()
    assert agent["status"] == "completed", agent
    assert agent["final_answer"] == "completed"
    [child_run] = agent["triggered_runs"]
    assert agents.get(f"/runs/{child_run}/status").json()["status"] == "completed"
    assert [call["path"] for call in recorder.calls] == ["/anything/orders/41"]


def test_timeout_ms_fails_a_slow_agent_with_timeout(agents: httpx.Client) -> None:
    agent = agents.post("/agents/execute", json={"objective": "A slow thinker", "config": {"timeout_ms": 300}}).json()
    assert agent["status"] == "failed", agent
    assert agent["stop_reason"] == "timeout" and "timeout_ms=300" in agent["error"]


def test_secrets_are_redacted_in_the_trace(agents: httpx.Client, recorder: Recorder) -> None:
    stored = agents.post("/org-config", json={"key": "api:crm_token", "value": "crm-secret-value-42"})
    assert stored.status_code == 200, stored.text
    action = {
        "action_name": "crm_echo",
        "kind": "http",
        "url": recorder.url.removesuffix("/post") + "/crm/orgconfig:api:crm_token",
        "http_method": "GET",
        "passthrough": True,
    }
    assert agents.post("/actions", json=action).status_code == 201
    body = {"objective": "Please echo the secret", "tools": [{"type": "action", "name": "crm_echo"}]}
    agent = agents.post("/agents/execute", json=body).json()
    assert agent["status"] == "completed", agent
    assert [call["path"] for call in recorder.calls] == ["/crm/crm-secret-value-42"]  # the tool got the secret
    trace = agents.get(f"/agents/{agent['agent_run_id']}/trace").text
    assert "crm-secret-value-42" not in trace and "****" in trace


def test_legacy_run_workflow_without_wait_dispatches_and_goes_on(agents: httpx.Client) -> None:
    child = {"type": "PbotApproval", "properties": {"comment": "hold"}}
    assert agents.post("/workflows", json={"name": "child_flow", "definition": {"actions": [child]}}).status_code == 201
    agent = agents.post("/agents/execute", json={"objective": "Please route the document"}).json()
    assert agent["status"] == "completed", agent
    assert agent["final_answer"] == "running"
    [child_run] = agent["triggered_runs"]
    assert wait_for(agents, child_run, until=("paused",))["status"] == "paused"


def test_usage_is_totalled_per_org(agents: httpx.Client) -> None:
    assert agents.get("/agents/usage").json() == {"prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0}
    agent = agents.post("/agents/execute", json={"objective": "Please remember the ticket"}).json()
    usage = agents.get("/agents/usage").json()
    assert usage == agent["usage"] and usage["total_tokens"] > 0


def test_an_idempotent_execute_answers_at_once_and_replays_the_same_run(agents: httpx.Client) -> None:
    body = {"objective": "Please remember the ticket"}
    headers = {"Idempotency-Key": "agent-exec-1"}
    first = agents.post("/agents/execute", json=body, headers=headers)
    assert first.status_code == 200, first.text
    assert first.json()["status"] == "running"
    again = agents.post("/agents/execute", json=body, headers=headers)
    assert again.json()["agent_run_id"] == first.json()["agent_run_id"]
    done = wait_agent(agents, first.json()["agent_run_id"], ("completed", "failed"))
    assert done["final_answer"] == {"recalled": "TK-1"}
