"""The chat client against the fake model server over real HTTP: tool calls, usage, Retry-After, provider errors."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import httpx
import pytest

from server.fakemodel import FakeModelServer, ScenarioFile
from server.runtime import llm, outbound

POLICY = outbound.OutboundPolicy(allow=("127.0.0.1",), timeout_seconds=10)
TOOLS = [{"type": "function", "function": {"name": "lookup", "parameters": {"type": "object"}}}]


def ask(model: FakeModelServer, **overrides: Any) -> llm.ChatReply:
    arguments: dict[str, Any] = {
        "base_url": model.base_url,
        "api_key": "sk-test",
        "model": "hyphae-fake",
        "messages": [{"role": "user", "content": "hello"}],
        "idempotency_key": "run-1:0:0",
        "tools": TOOLS,
    }
    arguments.update(overrides)

    async def main() -> llm.ChatReply:
        async with httpx.AsyncClient() as client:
            return await llm.chat(client, POLICY, **arguments)

    return asyncio.run(main())


def test_a_tool_call_reply_carries_the_call_and_the_usage() -> None:
    turn = {"thought": "Looking.", "action": "lookup", "action_input": {"id": 7}}
    with FakeModelServer(ScenarioFile.single(turn)) as model:
        reply = ask(model)
        [request] = model.requests
    [call] = reply.tool_calls
    assert (call.name, json.loads(call.arguments)) == ("lookup", {"id": 7})
    assert reply.prompt_tokens > 0 and reply.completion_tokens > 0
    assert request["body"]["tools"] == TOOLS and request["idempotency_key"] == "run-1:0:0"


def test_a_429_with_retry_after_is_retried_with_the_same_idempotency_key() -> None:
    script = ScenarioFile.single(
        {"error": {"status": 429, "message": "slow down", "retry_after": 0.05}}, {"content": "ok"}
    )
    with FakeModelServer(script) as model:
        reply = ask(model)
        statuses = [(r["status"], r["idempotency_key"]) for r in model.requests]
    assert reply.content == "ok"
    assert statuses == [(429, "run-1:0:0"), (200, "run-1:0:0")]


def test_a_provider_error_names_the_status_and_its_message() -> None:
    script = ScenarioFile.single({"error": {"status": 400, "message": "context too long"}})
    with FakeModelServer(script) as model, pytest.raises(llm.LlmError, match="HTTP 400: context too long"):
        ask(model)


def test_a_missing_key_is_llm_key_missing_without_a_request() -> None:
    with FakeModelServer(ScenarioFile.single({"content": "x"})) as model:
        with pytest.raises(llm.LlmError, match="llm_key_missing"):
            ask(model, api_key="")
        assert model.requests == []
