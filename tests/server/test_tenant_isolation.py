"""Every resource of this issue, tried with another org's credentials: 404 (never 403), nothing in its lists."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import httpx
import pytest

from tests.conftest import ServerInfo


@pytest.fixture
def owner(server: ServerInfo) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.http_url, headers={"X-Org-Id": f"owner-{uuid.uuid4().hex[:8]}"}) as client:
        yield client


@pytest.fixture
def intruder(server: ServerInfo) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.http_url, headers={"X-Org-Id": f"intruder-{uuid.uuid4().hex[:8]}"}) as client:
        yield client


def test_another_orgs_resources_are_not_found_and_not_listed(owner: httpx.Client, intruder: httpx.Client) -> None:
    workflow = owner.post(
        "/workflows",
        json={"name": "private", "definition": {"actions": [{"type": "PbotApproval", "properties": {"comment": "?"}}]}},
    ).json()
    action = owner.post("/actions", json={"action_name": "private_action", "kind": "custom-table"}).json()
    owner.post("/org-config", json={"key": "api:private", "value": "sk-very-private-value"})
    owner.post("/org-config", json={"key": "settings:private", "value": {"n": 1}})

    attempts = [
        intruder.get(f"/workflows/{workflow['id']}"),
        intruder.put(f"/workflows/{workflow['id']}", json={"name": "stolen", "definition": {"actions": []}}),
        intruder.delete(f"/workflows/{workflow['id']}"),
        intruder.get(f"/actions/{action['id']}"),
        intruder.put(f"/actions/{action['id']}", json={"action_name": "stolen", "kind": "custom-table"}),
        intruder.delete("/org-config/api:private"),
        intruder.delete("/org-config/settings:private"),
    ]
    for response in attempts:
        assert response.status_code == 404, (response.request.method, response.request.url, response.text)
        assert response.json()["error"] == "Not Found"

    assert intruder.get("/workflows").json()["workflows"] == []
    assert intruder.get("/actions").json()["actions"] == []
    assert intruder.get("/org-config").json()["entries"] == []
    assert intruder.get("/workflows", params={"name": "private"}).json()["workflows"] == []

    # and nothing changed for the owner
    assert owner.get(f"/workflows/{workflow['id']}").json() == workflow
    assert owner.get(f"/actions/{action['id']}").json() == action
    assert {e["key"] for e in owner.get("/org-config").json()["entries"]} == {"api:private", "settings:private"}


def test_a_workflow_cannot_use_another_orgs_action(owner: httpx.Client, intruder: httpx.Client) -> None:
    owner.post("/actions", json={"action_name": "owners_tool", "kind": "custom-table"})
    response = intruder.post(
        "/workflows", json={"name": "borrow", "definition": {"actions": [{"type": "owners_tool"}]}}
    )
    assert response.status_code == 400
    assert "definition.actions[0].type" in response.json()["message"]


def test_page_tokens_do_not_cross_orgs(owner: httpx.Client, intruder: httpx.Client) -> None:
    for i in range(3):
        owner.post("/actions", json={"action_name": f"a{i}", "kind": "custom-table"})
    token = owner.get("/actions", params={"page_size": 1}).json()["next_page_token"]
    assert token
    assert intruder.get("/actions", params={"page_size": 1, "page_token": token}).json()["actions"] == []
