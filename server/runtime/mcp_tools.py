"""MCP tools for agents: an MCP server reached over streamable HTTP or stdio (the `mcp` package's `Client`), its tools
listed for the prompt and called by the ReAct loop. Each listing or call is one short session bounded by a timeout.

Safety: a URL passes the outbound guard (allow-list, no private addresses) before any connection. A stdio server is a
process the worker spawns, so only commands the operator allows run: HYPHAE_MCP_STDIO_ALLOW, comma-separated; an
entry without a space allows that command with any arguments, an entry with spaces allows exactly that command line
(so `python3 /opt/mcp/crm.py` allows one script, not the interpreter). Unset: stdio servers are refused. The process
inherits only the `mcp` package's safe default environment (no secrets of the worker)."""

from __future__ import annotations

import asyncio
import json
import os
import shlex
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from mcp import Client, StdioServerParameters

from server import jsonvalue
from server.runtime import outbound

DEFAULT_TIMEOUT_SECONDS = 30.0
STDIO_ALLOW_ENV = "HYPHAE_MCP_STDIO_ALLOW"
_STDIO = "stdio:"


class McpFailed(Exception):
    """The MCP server could not be reached or answered with a protocol error."""


@dataclass(frozen=True)
class RemoteTool:
    name: str
    description: str
    input_schema: dict[str, Any]


def server_ref(declared: dict[str, Any]) -> str:
    """How a declared mcp tool names its server: its URL, or `stdio:` + the JSON command line."""
    if declared.get("command"):
        return _STDIO + json.dumps([str(declared["command"]), *(str(a) for a in declared.get("args") or [])])
    return str(declared["url"])


def _shown(ref: str) -> str:
    return shlex.join(json.loads(ref.removeprefix(_STDIO))) if ref.startswith(_STDIO) else ref


def stdio_allowed(command_line: list[str]) -> bool:
    entries = [e.strip() for e in os.environ.get(STDIO_ALLOW_ENV, "").split(",") if e.strip()]
    joined = shlex.join(command_line)
    return any(entry == joined or (" " not in entry and entry == command_line[0]) for entry in entries)


async def _server(ref: str, policy: outbound.OutboundPolicy) -> str | StdioServerParameters:
    """What Client connects to, once the URL is guarded or the command allowed."""
    if ref.startswith(_STDIO):
        command_line = [str(part) for part in json.loads(ref.removeprefix(_STDIO))]
        if not stdio_allowed(command_line):
            raise McpFailed(
                f"the stdio MCP server {shlex.join(command_line)!r} is not allowed on this server "
                f"(the operator lists allowed commands in {STDIO_ALLOW_ENV})"
            )
        return StdioServerParameters(command=command_line[0], args=command_line[1:])
    parts = urlsplit(ref)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise McpFailed(f"MCP server URL {ref!r} must be http(s)://host/...")
    port = parts.port or (443 if parts.scheme == "https" else 80)
    try:
        await outbound.checked_addresses(parts.hostname, port, policy)
    except outbound.OutboundError as exc:
        raise McpFailed(str(exc)) from None
    return ref


async def list_tools(ref: str, policy: outbound.OutboundPolicy, timeout: float | None = None) -> list[RemoteTool]:
    """`ref`: server_ref() of the declared tool."""
    server = await _server(ref, policy)
    url = _shown(ref)
    try:
        async with asyncio.timeout(timeout or DEFAULT_TIMEOUT_SECONDS), Client(server) as client:
            listed = await client.list_tools()
    except TimeoutError:
        raise McpFailed(f"MCP server {url} did not list its tools in time") from None
    except Exception as exc:  # the SDK raises transport and protocol errors of many types
        raise McpFailed(f"MCP server {url} could not list its tools: {type(exc).__name__}: {exc}") from None
    return [RemoteTool(t.name, t.description or "", dict(t.input_schema or {"type": "object"})) for t in listed.tools]


def _content(result: Any) -> Any:
    """The call's result: its structured content, else its text content (parsed when it is JSON)."""
    if result.structured_content is not None:
        return result.structured_content
    texts = [block.text for block in result.content if getattr(block, "type", "") == "text"]
    text = "\n".join(texts)
    try:
        return jsonvalue.loads(text)
    except (ValueError, RecursionError):
        return text


async def call_tool(
    ref: str, name: str, arguments: dict[str, Any], policy: outbound.OutboundPolicy, timeout: float | None = None
) -> tuple[Any, bool]:
    """(observation, success): a tool error (`is_error`) is an observation, not an exception."""
    server = await _server(ref, policy)
    url = _shown(ref)
    try:
        async with asyncio.timeout(timeout or DEFAULT_TIMEOUT_SECONDS), Client(server) as client:
            result = await client.call_tool(name, arguments)
    except TimeoutError:
        raise McpFailed(f"MCP tool {name} on {url} did not answer in time") from None
    except Exception as exc:
        raise McpFailed(f"MCP tool {name} on {url} failed: {type(exc).__name__}: {exc}") from None
    observation = _content(result)
    if result.is_error:
        return {"error": observation}, False
    return observation, True
