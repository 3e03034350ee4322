"""The pure parts of the ReAct loop (spec §9): the agent's settings, its prompt, reading the model's decision,
stuck detection. No I/O: the runtime (server/runtime/agent.py) journals and executes."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from server import jsonvalue

if TYPE_CHECKING:  # the reply type only; this module does no I/O
    from server.runtime.llm import ChatReply

COMPLETE = "__complete__"
PAUSE = "__pause_for_human__"
STORE_MEMORY = "__store_memory__"
RETRIEVE_MEMORY = "__retrieve_memory__"
LOG_PROGRESS = "__log_progress__"
RUN_WORKFLOW = "__run_workflow__"
KNOWLEDGE_SEARCH = "knowledge_search"  # issue 6: over the run's org's documents (server/runtime/knowledge_tool.py)

_OBJECT: dict[str, Any] = {"type": "object"}
# Always available (newer docs: "receives these built-in tools automatically"); declaring them by name is tolerated.
BUILTINS: dict[str, tuple[str, dict[str, Any]]] = {
    COMPLETE: (
        "Finish with the final answer",
        {
            "type": "object",
            "properties": {
                "answer": {"description": "the final answer or result (text or an object)"},
                "confidence": {"type": "number", "minimum": 0, "maximum": 1},
                "summary": {"type": "string"},
            },
            "required": ["answer"],
        },
    ),
    PAUSE: (
        "Pause and ask a person; their answer comes back as the observation",
        {
            "type": "object",
            "properties": {
                "question": {"type": "string"},
                "context": {"type": "string"},
                "options": {"type": "array", "items": {"type": "string"}},
            },
            "required": ["question"],
        },
    ),
    STORE_MEMORY: (
        "Save a value under a key for later in this run",
        {"type": "object", "properties": {"key": {"type": "string"}, "value": {}}, "required": ["key", "value"]},
    ),
    RETRIEVE_MEMORY: (
        "Recall the value saved under a key",
        {"type": "object", "properties": {"key": {"type": "string"}}, "required": ["key"]},
    ),
    LOG_PROGRESS: (
        "Record a milestone for observability",
        {"type": "object", "properties": {"message": {"type": "string"}, "milestone": {"type": "string"}}},
    ),
    RUN_WORKFLOW: (
        "Run a workflow by workflow_id or workflow_name with an input (legacy; prefer declared workflow tools)",
        {
            "type": "object",
            "properties": {
                "workflow_id": {"type": "string"},
                "workflow_name": {"type": "string"},
                "input": {"type": "object"},
                "wait": {"type": "boolean"},
            },
        },
    ),
    KNOWLEDGE_SEARCH: (
        "Search the organization's uploaded documents (typos tolerated); returns the best passages with "
        "citations: document_id, name, version, start/end offsets, heading, snippet, text, score",
        {
            "type": "object",
            "properties": {
                "query": {"type": "string", "description": "a question or keywords"},
                "limit": {"type": "integer", "minimum": 1, "maximum": 50, "description": "passages, default 5"},
                "document_ids": {"type": "array", "items": {"type": "string"}, "description": "only these"},
            },
            "required": ["query"],
        },
    ),
}

DEFAULT_MAX_ITERATIONS = 10
DEFAULT_STUCK_ITERATIONS = 3
MAX_OBSERVATION_CHARS = 8000
REPAIR_PROMPT = (
    "Your last reply was not valid. Reply with exactly one JSON object and nothing else: "
    '{"thought": "...", "action": "<one of the tools>", "action_input": {...}}'
)


@dataclass(frozen=True)
class OnStuck:
    iterations: int = DEFAULT_STUCK_ITERATIONS
    action: str = "fail"  # fail, escalate or retry_with_hint
    hint: str = ""


@dataclass(frozen=True)
class Tool:
    name: str
    kind: str  # builtin, action, workflow or mcp
    description: str = ""
    ref: str = ""  # workflow tools: the declared id or name; mcp tools: the server's URL
    parameters: dict[str, Any] = field(default_factory=lambda: dict(_OBJECT))
    remote: str = ""  # mcp tools: the tool's name on its server (exposed as `<prefix>__<remote>`)
    timeout_ms: int | None = None


@dataclass(frozen=True)
class Settings:
    objective: str
    declared: list[Any]
    max_iterations: int = DEFAULT_MAX_ITERATIONS
    timeout_ms: int | None = None
    temperature: float | None = None
    model: str = ""
    result_key: str = ""
    # §9.3: detection is always on; without on_stuck, 3 identical actions (or thoughts, or an A/B/A/B alternation
    # over 6) fail the agent with `stuck`, as the documented defaults (iterations 3, action fail) say.
    on_stuck: OnStuck = field(default_factory=OnStuck)


def settings(properties: dict[str, Any]) -> Settings:
    """The react step's properties (validated by server.domain.dsl at create)."""
    stuck = properties.get("on_stuck")
    on_stuck = OnStuck()
    if isinstance(stuck, dict):
        on_stuck = OnStuck(
            iterations=int(stuck.get("iterations") or DEFAULT_STUCK_ITERATIONS),
            action=str(stuck.get("action") or "fail"),
            hint=str(stuck.get("hint") or ""),
        )
    timeout = properties.get("timeout_ms")
    temperature = properties.get("temperature")
    return Settings(
        objective=str(properties.get("objective") or ""),
        declared=list(properties.get("tools") or []),
        max_iterations=int(properties.get("max_iterations") or DEFAULT_MAX_ITERATIONS),
        timeout_ms=int(timeout) if isinstance(timeout, int | float) and not isinstance(timeout, bool) else None,
        temperature=float(temperature) if isinstance(temperature, int | float) else None,
        model=str(properties.get("model") or ""),
        result_key=str(properties.get("result_key") or ""),
        on_stuck=on_stuck,
    )


def builtin_tools() -> list[Tool]:
    return [Tool(name, "builtin", text, parameters=schema) for name, (text, schema) in BUILTINS.items()]


def function_specs(tools: list[Tool]) -> list[dict[str, Any]]:
    """OpenAI tool declarations of the agent's tools."""
    return [
        {"type": "function", "function": {"name": t.name, "description": t.description, "parameters": t.parameters}}
        for t in tools
    ]


def system_prompt(objective: str, tools: list[Tool], previous: dict[str, Any] | None = None) -> str:
    lines = ["You are an AI agent. Your objective is:", objective, "You have access to these tools:"]
    lines += [f"- {tool.name}: {tool.description}" if tool.description else f"- {tool.name}" for tool in tools]
    lines += [
        "",
        "Use only these tools. Every reply is one JSON object (or one tool call):",
        '{"thought": "your reasoning", "action": "<tool name>", "action_input": {...}}',
        f"When you are done, call {COMPLETE} with answer, confidence (0-1) and summary.",
    ]
    if previous:
        lines += ["", "Context from a previous run of this agent:", json.dumps(previous, ensure_ascii=False)]
    return "\n".join(lines)


@dataclass(frozen=True)
class Decision:
    thought: str
    action: str
    action_input: dict[str, Any]
    tool_call_id: str = ""  # set when the model answered with a native tool call


class BadReply(ValueError):
    """The model's reply is not a decision; the message says why (shown to the model in the repair prompt)."""


def _json_object(text: str) -> dict[str, Any]:
    stripped = text.strip()
    if stripped.startswith("```"):  # a fenced block: ```json ... ```
        stripped = stripped.strip("`")
        stripped = stripped[4:] if stripped.lower().startswith("json") else stripped
    try:
        value = jsonvalue.loads(stripped)
    except json.JSONDecodeError as exc:
        raise BadReply(f"not JSON ({exc.msg})") from None
    except (ValueError, RecursionError) as exc:  # NaN / Infinity, or nesting too deep
        raise BadReply(f"not JSON ({exc})") from None
    if not isinstance(value, dict):
        raise BadReply("not a JSON object")
    return value


def decide(reply: ChatReply, tools_offered: bool) -> Decision:
    """The model's decision: its first native tool call when tools were offered and it made one, else the ReAct
    JSON {thought, action, action_input} in its content. BadReply if neither."""
    if tools_offered and reply.tool_calls:
        call = reply.tool_calls[0]
        try:
            arguments = jsonvalue.loads(call.arguments) if call.arguments.strip() else {}
        except json.JSONDecodeError as exc:
            raise BadReply(f"the arguments of tool call {call.name!r} are not JSON ({exc.msg})") from None
        except (ValueError, RecursionError) as exc:
            raise BadReply(f"the arguments of tool call {call.name!r} are not JSON ({exc})") from None
        if not isinstance(arguments, dict):
            raise BadReply(f"the arguments of tool call {call.name!r} are not a JSON object")
        return Decision(reply.content.strip(), call.name, arguments, call.id)
    value = _json_object(reply.content)
    action = value.get("action")
    if not isinstance(action, str) or not action.strip():
        raise BadReply("'action' must be a non-empty string")
    action_input = value.get("action_input", {})
    if action_input is None:
        action_input = {}
    if not isinstance(action_input, dict):
        raise BadReply("'action_input' must be a JSON object")
    thought = value.get("thought")
    return Decision(thought if isinstance(thought, str) else "", action.strip(), action_input)


def assistant_message(reply: ChatReply, decision: Decision | None) -> dict[str, Any]:
    """The model's turn as it goes back into the history (only the tool call that was acted on)."""
    if decision is not None and decision.tool_call_id:
        call = reply.tool_calls[0]
        return {
            "role": "assistant",
            "content": reply.content or None,
            "tool_calls": [
                {"id": call.id, "type": "function", "function": {"name": call.name, "arguments": call.arguments}}
            ],
        }
    return {"role": "assistant", "content": reply.content}


def observation_text(observation: Any) -> str:
    text = observation if isinstance(observation, str) else json.dumps(observation, ensure_ascii=False, default=str)
    if len(text) > MAX_OBSERVATION_CHARS:
        text = text[:MAX_OBSERVATION_CHARS] + f"... (truncated, {len(text)} characters)"
    return text


def observation_message(decision: Decision, observation: Any) -> dict[str, Any]:
    text = observation_text(observation)
    if decision.tool_call_id:
        return {"role": "tool", "tool_call_id": decision.tool_call_id, "content": text}
    return {"role": "user", "content": f"Observation: {text}"}


def signature(decision: Decision) -> str:
    return decision.action + "\x1f" + json.dumps(decision.action_input, sort_keys=True, default=str)


def stuck(history: list[Decision], iterations: int) -> str:
    """Why the agent looks stuck over its last decisions ("" if it does not): the same action with the same input
    `iterations` times in a row, the same thought repeated as often, or alternating between two actions."""
    n = max(iterations, 1)
    if n >= 2 and len(history) >= n:
        last = history[-n:]
        if len({signature(d) for d in last}) == 1:
            return f"the same action {last[0].action!r} with the same input {n} times in a row"
        thoughts = {d.thought for d in last}
        if len(thoughts) == 1 and last[0].thought:
            return f"the same thought {n} times in a row"
    window = 2 * n
    if n >= 2 and len(history) >= window:
        last = history[-window:]
        even, odd = {signature(d) for d in last[0::2]}, {signature(d) for d in last[1::2]}
        if len(even) == 1 and len(odd) == 1 and even != odd:
            return f"alternating between {last[0].action!r} and {last[1].action!r} without progress"
    return ""


def completion(action_input: dict[str, Any]) -> dict[str, Any]:
    """__complete__'s result: {answer, confidence (default 1.0, clamped to 0-1), summary}."""
    confidence = action_input.get("confidence", 1.0)
    if not isinstance(confidence, int | float) or isinstance(confidence, bool):
        try:
            confidence = float(str(confidence))
        except ValueError:
            confidence = 1.0
    summary = action_input.get("summary")
    return {
        "answer": action_input.get("answer"),
        "confidence": min(max(float(confidence), 0.0), 1.0),
        "summary": summary if isinstance(summary, str) else "" if summary is None else json.dumps(summary),
    }
