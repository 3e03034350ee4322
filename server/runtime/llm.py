"""A minimal OpenAI-compatible Chat Completions client (on the outbound HTTP client: same SSRF guard, timeouts,
retries that honour Retry-After, and one idempotency key per call). `llm` actions use `complete`; agents use `chat`
(messages plus optional OpenAI tool declarations → a structured reply with tool calls and token usage)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import httpx

from server.runtime import outbound

# The org config keys naming the org's model (llm actions, agents, AI generation); unset ones fall back to the
# server's defaults (executor.LlmDefaults).
SETTINGS_KEYS = frozenset({"settings:llm_base_url", "api:llm_api_key"})
KEY_MISSING = "llm_key_missing: set the org config key api:llm_api_key (POST /org-config) or HYPHAE_LLM_API_KEY"


class LlmError(Exception):
    """The model call cannot succeed; the message names the reason (llm_key_missing, the provider's status...)."""


@dataclass(frozen=True)
class ToolCall:
    id: str
    name: str
    arguments: str  # the JSON text the model wrote (parsed by the caller, which decides what a bad one means)


@dataclass(frozen=True)
class ChatReply:
    content: str
    tool_calls: list[ToolCall] = field(default_factory=list)
    finish_reason: str = ""
    prompt_tokens: int = 0
    completion_tokens: int = 0


async def chat(
    client: httpx.AsyncClient,
    policy: outbound.OutboundPolicy,
    *,
    base_url: str,
    api_key: str,
    model: str,
    messages: list[dict[str, Any]],
    idempotency_key: str,
    tools: list[dict[str, Any]] | None = None,
    temperature: float | None = None,
    max_tokens: int | None = None,
) -> ChatReply:
    """One chat completion. Errors: LlmError (key missing, provider 4xx/5xx, malformed answer) or OutboundError
    (network, guard, timeout after the retries)."""
    if not api_key:
        raise LlmError(KEY_MISSING)
    body: dict[str, Any] = {"model": model, "messages": messages}
    if tools:
        body["tools"] = tools
        body["tool_choice"] = "auto"
    if temperature is not None:
        body["temperature"] = temperature
    if max_tokens is not None:
        body["max_tokens"] = max_tokens
    response = await outbound.send(
        client,
        "POST",
        base_url.rstrip("/") + "/chat/completions",
        policy=policy,
        headers={"Authorization": f"Bearer {api_key}"},
        json_body=body,
        idempotency_key=idempotency_key,
    )
    payload: Any = response.json_or_text()
    if not 200 <= response.status < 300:
        detail = None
        if isinstance(payload, dict):
            error = payload.get("error")
            detail = error.get("message") if isinstance(error, dict) else error
        raise LlmError(f"the model provider answered HTTP {response.status}: {detail or str(payload)[:200]}")
    try:
        choice = payload["choices"][0]
        message = choice["message"]
    except (KeyError, IndexError, TypeError):
        raise LlmError("the model provider's answer has no choices[0].message") from None
    calls = []
    for position, call in enumerate(message.get("tool_calls") or []):
        function = call.get("function") if isinstance(call, dict) else None
        if not isinstance(function, dict) or not isinstance(function.get("name"), str):
            raise LlmError(f"the model provider's tool call {position} has no function name")
        arguments = function.get("arguments")
        calls.append(
            ToolCall(
                id=str(call.get("id") or f"call_{position}"),
                name=function["name"],
                arguments=arguments if isinstance(arguments, str) else "{}" if arguments is None else str(arguments),
            )
        )
    usage = payload.get("usage") if isinstance(payload.get("usage"), dict) else {}
    return ChatReply(
        content=message.get("content") if isinstance(message.get("content"), str) else "",
        tool_calls=calls,
        finish_reason=str(choice.get("finish_reason") or ""),
        prompt_tokens=int(usage.get("prompt_tokens") or 0),
        completion_tokens=int(usage.get("completion_tokens") or 0),
    )


async def complete(
    client: httpx.AsyncClient,
    policy: outbound.OutboundPolicy,
    *,
    base_url: str,
    api_key: str,
    model: str,
    prompt: str,
    max_tokens: int,
    temperature: float,
    idempotency_key: str,
) -> str:
    """The assistant's text for one user message."""
    reply = await chat(
        client,
        policy,
        base_url=base_url,
        api_key=api_key,
        model=model,
        messages=[{"role": "user", "content": prompt}],
        max_tokens=max_tokens,
        temperature=temperature,
        idempotency_key=idempotency_key,
    )
    return reply.content
