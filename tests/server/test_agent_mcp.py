"""MCP tools: an agent declares a local MCP server (streamable HTTP, the `mcp` package) and calls its tools."""

from __future__ import annotations

import asyncio
import shlex
import socket
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from mcp.server import MCPServer

from server.fakemodel import FakeModelServer

SCENARIOS = Path(__file__).parent / "scenarios" / "agents.json"


class CrmServer:
    """A tiny MCP server on a loopback port: lookup, add, and a tool the agent must not be offered."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, Any]] = []
        server = MCPServer("crm")
        calls = self.calls

        @server.tool()
        def lookup(customer_id: str) -> dict[str, str]:
            """Look up a customer by id"""
            calls.append(("lookup", customer_id))
            return {"id": customer_id, "tier": "gold"}

        @server.tool()
        def add(a: int, b: int) -> int:
            """Add two numbers"""
            calls.append(("add", (a, b)))
            return a + b

        @server.tool()
        def delete_everything() -> str:
            """Never offered to the agent"""
            calls.append(("delete_everything", None))
            return "gone"

        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}/mcp"
        self.server = uvicorn.Server(uvicorn.Config(server.streamable_http_app(), log_level="warning"))
        self.thread = threading.Thread(target=lambda: asyncio.run(self.server.serve(sockets=[self.sock])), daemon=True)
        self.thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started and time.monotonic() < deadline:
            time.sleep(0.02)

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(10)
        self.sock.close()


@pytest.fixture
def crm() -> Iterator[CrmServer]:
    server = CrmServer()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def model() -> Iterator[FakeModelServer]:
    with FakeModelServer(SCENARIOS) as fake:
        yield fake


def test_an_agent_calls_the_tools_of_a_declared_mcp_server(
    api: httpx.Client, model: FakeModelServer, crm: CrmServer
) -> None:
    api.post("/org-config", json={"key": "api:llm_api_key", "value": "sk-mcp-test-key"})
    api.post("/org-config", json={"key": "settings:llm_base_url", "value": model.base_url})
    tool = {"type": "mcp", "name": "crm", "url": crm.url, "allowed_tools": ["lookup", "add"]}
    agent = api.post("/agents/execute", json={"objective": "Please ask the CRM over MCP", "tools": [tool]}).json()
    assert agent["status"] == "completed", agent
    assert agent["final_answer"] == "tier gold"
    trace = api.get(f"/agents/{agent['agent_run_id']}/trace").json()["trace"]
    assert [(e["action"], e["success"]) for e in trace] == [
        ("crm__add", False),
        ("crm__lookup", True),
        ("__complete__", True),
    ]
    assert "validation error" in str(trace[0]["observation"]["error"])
    assert trace[1]["observation"] == {"id": "c-9", "tier": "gold"}
    assert crm.calls == [("lookup", "c-9")]
    offered = {t["function"]["name"] for t in model.requests[-1]["body"]["tools"]}
    assert {"crm__lookup", "crm__add"} <= offered and "crm__delete_everything" not in offered
    lookup = next(t for t in model.requests[-1]["body"]["tools"] if t["function"]["name"] == "crm__lookup")
    assert lookup["function"]["parameters"]["required"] == ["customer_id"]


def test_an_mcp_tool_needs_a_url(api: httpx.Client) -> None:
    bad = api.post("/agents/execute", json={"objective": "x", "tools": [{"type": "mcp", "name": "crm"}]})
    assert bad.status_code == 400 and "tools[0].url" in bad.text


STDIO_SERVER = Path(__file__).parent / "mcp_stdio_server.py"


def test_an_agent_calls_the_tools_of_an_allowed_stdio_mcp_server(
    api: httpx.Client, model: FakeModelServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    api.post("/org-config", json={"key": "api:llm_api_key", "value": "sk-mcp-test-key"})
    api.post("/org-config", json={"key": "settings:llm_base_url", "value": model.base_url})
    log = tmp_path / "calls.log"
    args = [str(STDIO_SERVER), str(log)]
    tool = {"type": "mcp", "name": "notes", "command": sys.executable, "args": args}
    body = {"objective": "Please ask the notes server over stdio", "tools": [tool]}

    refused = api.post("/agents/execute", json=body).json()  # no allow-list: stdio servers are refused
    assert refused["status"] == "failed", refused
    assert "HYPHAE_MCP_STDIO_ALLOW" in refused["error"] and not log.exists()
    monkeypatch.setenv("HYPHAE_MCP_STDIO_ALLOW", f"/usr/bin/true,{shlex.join([sys.executable, str(STDIO_SERVER)])}")
    other_args = api.post("/agents/execute", json=body).json()  # a command line entry allows exactly that line
    assert other_args["status"] == "failed" and "not allowed" in other_args["error"]

    monkeypatch.setenv("HYPHAE_MCP_STDIO_ALLOW", shlex.join([sys.executable, *args]))
    agent = api.post("/agents/execute", json=body).json()
    assert agent["status"] == "completed", agent
    assert agent["final_answer"] == "tier silver"
    trace = api.get(f"/agents/{agent['agent_run_id']}/trace").json()["trace"]
    assert [(e["action"], e["success"]) for e in trace] == [("notes__lookup", True), ("__complete__", True)]
    assert log.read_text() == "lookup c-7\n"


def test_an_mcp_tool_has_a_url_or_a_command_not_both(api: httpx.Client) -> None:
    both = {"type": "mcp", "name": "x", "url": "http://example.com/mcp", "command": "srv"}
    bad = api.post("/agents/execute", json={"objective": "x", "tools": [both]})
    assert bad.status_code == 400 and "not both" in bad.text
    bad_args = {"type": "mcp", "name": "x", "command": "srv", "args": "--flag"}
    bad = api.post("/agents/execute", json={"objective": "x", "tools": [bad_args]})
    assert bad.status_code == 400 and "tools[0].args" in bad.text
