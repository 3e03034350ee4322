"""The agents' built-in `knowledge_search` tool over REST with the fake model server (scenarios in
tests/server/scenarios/knowledge_agent.json): cited passages of the agent's own org's documents."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from server.fakemodel import FakeModelServer
from tests.conftest import ServerInfo
from tests.server.test_document_knowledge import REFUNDS, SHIPPING, indexed
from tests.server.test_documents import upload

SCENARIOS = Path(__file__).parent / "scenarios" / "knowledge_agent.json"


@pytest.fixture(scope="module")
def model() -> Iterator[FakeModelServer]:
    with FakeModelServer(SCENARIOS) as fake:
        yield fake


def configure(client: httpx.Client, model: FakeModelServer) -> None:
    assert client.post("/org-config", json={"key": "api:llm_api_key", "value": "sk-knowledge-key"}).status_code < 300
    assert client.post("/org-config", json={"key": "settings:llm_base_url", "value": model.base_url}).status_code < 300


def trace_of(api: httpx.Client, agent_id: str) -> list[dict[str, Any]]:
    status = api.get(f"/agents/{agent_id}/status", params={"include_trace": "true"}).json()
    trace: list[dict[str, Any]] = status["trace"]
    return trace


def test_an_agent_finds_and_cites_its_orgs_document_and_never_another_orgs(
    server: ServerInfo, api: httpx.Client, model: FakeModelServer
) -> None:
    configure(api, model)
    policy = upload(api, REFUNDS, "refund-policy.md").json()["document"]
    shipping = upload(api, SHIPPING, "shipping.txt").json()["document"]
    with httpx.Client(base_url=server.http_url, headers={"X-Org-Id": f"test-{uuid.uuid4().hex[:12]}"}) as other:
        # the other org holds an even better match: it must never reach this org's agent
        foreign = upload(other, REFUNDS + b"\nRefund window for damaged goods: 45 days.", "refunds.md").json()
        indexed(other, foreign["document"]["id"])
    indexed(api, policy["id"])
    indexed(api, shipping["id"])

    response = api.post(
        "/agents/execute", json={"objective": "What is the refund window for damaged goods?", "tools": []}
    )
    assert response.status_code == 200, response.text
    agent = response.json()
    assert agent["status"] == "completed", agent
    assert agent["final_answer"] == policy["id"]

    search, complete = trace_of(api, agent["agent_run_id"])
    assert (search["action"], search["success"], complete["action"]) == ("knowledge_search", True, "__complete__")
    hits = search["observation"]["hits"]
    assert {hit["document_id"] for hit in hits} <= {policy["id"], shipping["id"]}
    best = hits[0]
    assert best["document_id"] == policy["id"]
    assert (best["name"], best["version"], best["heading"]) == (
        "refund-policy.md",
        1,
        "Returns and refunds > Damaged goods",
    )
    assert best["start_offset"] < best["end_offset"]
    assert "45 days" in best["text"] and best["snippet"] and best["score"] > 0
    # the model was offered the tool, described
    offered = next(r["body"] for r in model.requests if "refund window" in r["body"]["messages"][1]["content"])
    assert "knowledge_search" in {tool["function"]["name"] for tool in offered["tools"]}
    assert "- knowledge_search: Search the organization's uploaded documents" in offered["messages"][0]["content"]


def test_a_bad_knowledge_search_input_is_an_observation_for_the_model(
    api: httpx.Client, model: FakeModelServer
) -> None:
    configure(api, model)
    response = api.post("/agents/execute", json={"objective": "Please search without a query", "tools": []})
    agent = response.json()
    assert agent["status"] == "completed", agent
    assert "needs 'query'" in agent["final_answer"]
    assert trace_of(api, agent["agent_run_id"])[0]["success"] is False
