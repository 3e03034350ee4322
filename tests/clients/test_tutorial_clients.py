"""Acceptance: T1 steps 1-2 over REST with a Bearer key, then the same workflow listed over gRPC by the Python
client and by the Node client."""

from __future__ import annotations

import uuid
from pathlib import Path

import httpx

from hyphae_client import HyphaeClient
from tests.clients.test_node_client import list_workflows, node_client
from tests.conftest import ServerInfo
from tests.server.test_tutorial_t1 import CREATE_WORKFLOW, run_tutorial

__all__ = ["node_client"]  # the fixture, imported for this module's tests


def test_tutorial_workflow_is_listed_by_both_grpc_clients(node_client: Path, strict_server: ServerInfo) -> None:
    with httpx.Client(base_url=strict_server.http_url) as anonymous:
        signup = anonymous.post("/gateway/signup", json={"email": f"{uuid.uuid4().hex}@example.com"})
    key = signup.json()["api_key"]["key"]
    with httpx.Client(base_url=strict_server.http_url, headers={"Authorization": f"Bearer {key}"}) as client:
        workflow = run_tutorial(client)

    with HyphaeClient(strict_server.grpc_target, api_key=key) as python_client:
        listed, _ = python_client.list_workflows()
    assert [(w.id, w.name, w.definition) for w in listed] == [
        (workflow["id"], "first_workflow", CREATE_WORKFLOW["definition"])
    ]

    output = list_workflows(node_client, strict_server.grpc_target, HYPHAE_API_KEY=key)
    assert output == {
        "workflows": [{"id": workflow["id"], "name": "first_workflow", "definition": CREATE_WORKFLOW["definition"]}]
    }
