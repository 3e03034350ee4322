"""The Node gRPC client (clients/node) against the real server: `list-workflows.js` lists what REST created,
with X-Org-Id in direct engine mode and with an sk-hyp key from self-serve signup."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import ServerInfo

NODE_DIR = Path(__file__).resolve().parents[2] / "clients" / "node"
TIMEOUT = 120


def definition() -> dict[str, Any]:
    return {
        "actions": [
            {"type": "PbotApproval", "properties": {"comment": "ok?", "zeta": 1, "alpha": 7, "mid": [1.5, 42, [2, 3]]}}
        ]
    }


@pytest.fixture(scope="session")
def node_client() -> Path:
    """clients/node with its dependencies installed (`npm ci` once, skipped when node_modules is up to date)."""
    node, npm = shutil.which("node"), shutil.which("npm")
    if node is None or npm is None:
        pytest.skip("node and npm are needed for the Node client tests (not on PATH)")
    marker = NODE_DIR / "node_modules" / ".package-lock.json"
    lock = NODE_DIR / "package-lock.json"
    if not marker.exists() or marker.stat().st_mtime < lock.stat().st_mtime:
        result = subprocess.run(
            [npm, "ci", "--no-audit", "--no-fund"],
            cwd=NODE_DIR,
            capture_output=True,
            text=True,
            timeout=TIMEOUT,
            check=False,
        )
        assert result.returncode == 0, f"npm ci failed:\n{result.stdout}\n{result.stderr}"
    return NODE_DIR


def list_workflows(node_dir: Path, grpc_target: str, **env: str) -> dict[str, Any]:
    node = shutil.which("node")
    assert node is not None
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("HYPHAE_")}
    full_env.update(HYPHAE_GRPC_ADDR=grpc_target, **env)
    result = subprocess.run(
        [node, "list-workflows.js"],
        cwd=node_dir,
        env=full_env,
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        check=False,
    )
    lines = result.stdout.strip().splitlines()
    assert len(lines) == 1, f"expected one JSON line, got:\n{result.stdout}\n{result.stderr}"
    output: dict[str, Any] = json.loads(lines[0])
    assert result.returncode == 0, (output, result.stderr)
    return output


def test_node_lists_workflow_with_org_header(
    node_client: Path, server: ServerInfo, api: httpx.Client, org: str
) -> None:
    name = f"node-{uuid.uuid4().hex[:8]}"
    created = api.post("/workflows", json={"name": name, "definition": definition()})
    assert created.status_code == 201, created.text
    workflow_id = created.json()["id"]

    output = list_workflows(node_client, server.grpc_target, HYPHAE_ORG_ID=org)
    assert output == {"workflows": [{"id": workflow_id, "name": name, "definition": definition()}]}
    properties = output["workflows"][0]["definition"]["actions"][0]["properties"]
    assert list(properties) == ["comment", "zeta", "alpha", "mid"]


def test_node_lists_workflow_with_api_key(node_client: Path, server: ServerInfo, anonymous: httpx.Client) -> None:
    signup = anonymous.post("/gateway/signup", json={"email": f"{uuid.uuid4()}@example.com"})
    assert signup.status_code == 201, signup.text
    key = signup.json()["api_key"]["key"]
    assert key.startswith("sk-hyp")

    name = f"node-key-{uuid.uuid4().hex[:8]}"
    created = anonymous.post(
        "/workflows", json={"name": name, "definition": definition()}, headers={"Authorization": f"Bearer {key}"}
    )
    assert created.status_code == 201, created.text
    workflow_id = created.json()["id"]

    output = list_workflows(node_client, server.grpc_target, HYPHAE_API_KEY=key)
    assert output == {"workflows": [{"id": workflow_id, "name": name, "definition": definition()}]}


def test_node_reports_grpc_errors(node_client: Path, server: ServerInfo) -> None:
    node = shutil.which("node")
    assert node is not None
    env = {k: v for k, v in os.environ.items() if not k.startswith("HYPHAE_")}
    env["HYPHAE_GRPC_ADDR"] = server.grpc_target
    env["HYPHAE_API_KEY"] = "sk-hyp-not-a-real-key"
    result = subprocess.run(
        [node, "list-workflows.js"],
        cwd=node_client,
        env=env,
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        check=False,
    )
    assert result.returncode == 1, result.stderr
    error = json.loads(result.stdout.strip())["error"]
    assert error["code"] == 16  # UNAUTHENTICATED
