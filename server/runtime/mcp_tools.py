"""MCP tools for agents: an MCP server reached over streamable HTTP (the `mcp` package's `Client`), its tools listed
for the prompt and called by the ReAct loop. The URL passes the outbound guard (allow-list, no private addresses)
before any connection; each listing or call is one short session bounded by a timeout."""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from mcp import Client

from server.runtime import outbound

DEFAULT_TIMEOUT_SECONDS = 30.0


class McpFailed(Exception):
    """The MCP server could not be reached or answered with a protocol error."""


@dataclass(frozen=True)
class RemoteTool:
    name: str
    description: str
    input_schema: dict[str, Any]


async def _guard(url: str, policy: outbound.OutboundPolicy) -> None:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise McpFailed(f"MCP server URL {url!r} must be http(s)://host/...")
    port = parts.port or (443 if parts.scheme == "https" else 80)
    try:
        await outbound.checked_addresses(parts.hostname, port, policy)
    except outbound.OutboundError as exc:
        raise McpFailed(str(exc)) from None


async def list_tools(url: str, policy: outbound.OutboundPolicy, timeout: float | None = None) -> list[RemoteTool]:
    await _guard(url, policy)
    try:
        async with asyncio.timeout(timeout or DEFAULT_TIMEOUT_SECONDS), Client(url) as client:
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
        return json.loads(text)
    except ValueError:
        return text


async def call_tool(
    url: str, name: str, arguments: dict[str, Any], policy: outbound.OutboundPolicy, timeout: float | None = None
) -> tuple[Any, bool]:
    """(observation, success): a tool error (`is_error`) is an observation, not an exception."""
    await _guard(url, policy)
    try:
        async with asyncio.timeout(timeout or DEFAULT_TIMEOUT_SECONDS), Client(url) as client:
            result = await client.call_tool(name, arguments)
    except TimeoutError:
        raise McpFailed(f"MCP tool {name} on {url} did not answer in time") from None
    except Exception as exc:
        raise McpFailed(f"MCP tool {name} on {url} failed: {type(exc).__name__}: {exc}") from None
    observation = _content(result)
    if result.is_error:
        return {"error": observation}, False
    return observation, True
