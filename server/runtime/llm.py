"""A minimal OpenAI-compatible Chat Completions client (on the outbound HTTP client: same SSRF guard, retries that
honour Retry-After, and the step's idempotency key). The agents issue grows it; `llm` actions use it today."""

from __future__ import annotations

from typing import Any

import httpx

from server.runtime import outbound


class LlmError(Exception):
    """The model call cannot succeed; the message names the reason (llm_key_missing, the provider's status...)."""


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
    if not api_key:
        raise LlmError(
            "llm_key_missing: set the org config key api:llm_api_key (POST /org-config) or HYPHAE_LLM_API_KEY"
        )
    body = {
        "model": model,
        "messages": [{"role": "user", "content": prompt}],
        "max_tokens": max_tokens,
        "temperature": temperature,
    }
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
        detail = payload.get("error", {}).get("message") if isinstance(payload, dict) else None
        raise LlmError(f"the model provider answered HTTP {response.status}: {detail or str(payload)[:200]}")
    try:
        return str(payload["choices"][0]["message"]["content"])
    except (KeyError, IndexError, TypeError):
        raise LlmError("the model provider's answer has no choices[0].message.content") from None
