"""The Python gRPC client (clients/python/hyphae_client) against the real server: JSON values stay exact across
REST and gRPC, and errors carry the gRPC code and the hyphae-reason trailer."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from typing import Any

import grpc
import httpx
import pytest

from hyphae_client import HyphaeClient, HyphaeError, Workflow, from_json, to_json
from tests.conftest import ServerInfo

BIG = 2**60


def definition() -> dict[str, Any]:
    """A valid definition with ints, a float, an int past 2**53 and keys in a deliberately unsorted order."""
    return {
        "actions": [
            {
                "type": "PbotApproval",
                "properties": {"comment": "ok?", "zeta": 1, "alpha": BIG, "mid": [1.5, 42, [2, 3]]},
            }
        ]
    }


def assert_exact(value: Any, expected: Any) -> None:
    """Equal, with the same types (42 stays int, not 42.0) and the same key order at every level."""
    assert type(value) is type(expected), (value, expected)
    if isinstance(expected, dict):
        assert list(value) == list(expected)
        for key in expected:
            assert_exact(value[key], expected[key])
    elif isinstance(expected, list):
        assert len(value) == len(expected)
        for got, want in zip(value, expected, strict=True):
            assert_exact(got, want)
    else:
        assert value == expected


@pytest.fixture
def client(server: ServerInfo, org: str) -> Iterator[HyphaeClient]:
    with HyphaeClient(server.grpc_target, org_id=org, timeout=30) as c:
        yield c


def test_json_helpers_keep_exactness() -> None:
    value = {"z": 1, "a": [BIG, 1.5, None, True, "é"]}
    message = to_json(value)
    assert message.raw == '{"z":1,"a":[1152921504606846976,1.5,null,true,"é"]}'
    assert_exact(from_json(message), value)
    assert from_json(None) is None
    assert from_json(type(message)()) is None


def test_rest_created_workflow_reads_back_exactly_over_grpc(api: httpx.Client, client: HyphaeClient) -> None:
    name = f"exact-{uuid.uuid4().hex[:8]}"
    body = json.dumps({"name": name, "definition": definition(), "description": "from REST"})
    created = api.post("/workflows", content=body, headers={"Content-Type": "application/json"})
    assert created.status_code == 201, created.text
    workflow_id = created.json()["id"]

    workflows, token = client.list_workflows()
    assert token == ""
    assert [w.id for w in workflows] == [workflow_id]
    listed = workflows[0]
    assert isinstance(listed, Workflow)
    assert (listed.name, listed.description, listed.version) == (name, "from REST", 1)
    assert_exact(listed.definition, definition())
    properties = listed.definition["actions"][0]["properties"]
    assert list(properties) == ["comment", "zeta", "alpha", "mid"]
    assert properties["alpha"] == BIG and type(properties["alpha"]) is int
    assert type(properties["mid"][1]) is int and type(properties["mid"][0]) is float

    got = client.get_workflow(workflow_id)
    assert got == listed
    assert [w.id for w in client.iter_workflows()] == [workflow_id]


def test_client_created_workflow_reads_back_exactly_over_rest(api: httpx.Client, client: HyphaeClient) -> None:
    name = f"grpc-{uuid.uuid4().hex[:8]}"
    created = client.create_workflow(name, definition(), description="from gRPC")
    assert created.id.startswith("wfl-")
    assert (created.name, created.version) == (name, 1)
    assert_exact(created.definition, definition())

    response = api.get(f"/workflows/{created.id}")
    assert response.status_code == 200, response.text
    rest = response.json()
    assert (rest["id"], rest["name"], rest["description"]) == (created.id, name, "from gRPC")
    assert_exact(rest["definition"], definition())

    changed = {"actions": [{"type": "PbotApproval", "properties": {"comment": "again", "b": 2, "a": 1}}]}
    updated = client.update_workflow(created.id, name=name, definition=changed)
    assert updated.version == 2
    assert_exact(api.get(f"/workflows/{created.id}").json()["definition"], changed)

    client.delete_workflow(created.id)
    assert api.get(f"/workflows/{created.id}").status_code == 404


def test_missing_workflow_raises_not_found(client: HyphaeClient) -> None:
    with pytest.raises(HyphaeError) as caught:
        client.get_workflow("wfl-does-not-exist")
    assert caught.value.code == grpc.StatusCode.NOT_FOUND
    assert caught.value.reason == "NOT_FOUND"
    assert caught.value.message


def test_invalid_definition_raises_invalid_argument(client: HyphaeClient) -> None:
    with pytest.raises(HyphaeError) as caught:
        client.create_workflow(f"bad-{uuid.uuid4().hex[:8]}", {"actions": [{"type": "PbotApproval"}]})
    assert caught.value.code == grpc.StatusCode.INVALID_ARGUMENT
    assert "comment" in caught.value.message


def test_actions_org_config_and_health(api: httpx.Client, client: HyphaeClient) -> None:
    assert client.health().status == "ok"

    action = client.create_action(
        {
            "action_name": "notify_ops",
            "kind": "http",
            "url": "https://example.com/hook",
            "http_method": "POST",
            "outputKey": "notified",
            "body": {"z": 1, "a": BIG},
            "headers": {"X-Trace": "1"},
        }
    )
    assert action.id.startswith("act-")
    assert action.output_key == "notified"
    assert_exact(from_json(action.body), {"z": 1, "a": BIG})
    assert [a.id for a in client.list_actions()] == [action.id]
    assert api.get(f"/actions/{action.id}").json()["outputKey"] == "notified"

    limits = {"max": 10, "ratio": 0.5, "big": BIG}
    entry = client.set_org_config("settings:limits", limits)
    assert not entry.redacted
    assert_exact(entry.value, limits)
    secret = client.set_org_config("api:openai_key", "sk-proj-0123456789abcdef")
    assert secret.redacted and secret.value != "sk-proj-0123456789abcdef"
    entries = {e.key: e for e in client.list_org_config()}
    assert set(entries) == {"settings:limits", "api:openai_key"}
    assert_exact(entries["settings:limits"].value, limits)
    assert entries["api:openai_key"].redacted


def test_missing_org_is_an_error_with_reason(server: ServerInfo) -> None:
    with HyphaeClient(server.grpc_target) as anonymous, pytest.raises(HyphaeError) as caught:
        anonymous.list_workflows()
    assert caught.value.code == grpc.StatusCode.UNAUTHENTICATED
    assert caught.value.reason
