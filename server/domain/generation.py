"""AI workflow generation, the pure part: the prompt that asks a model for a workflow definition (the DSL's rules,
the org's actions, the caller's request, and on a retry the previous draft with the validator's errors), and the
parsing of its answer."""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from google.protobuf import json_format
from hyphae.actions.v1 import action_pb2
from hyphae.api.v1 import json_pb2

from server import jsonvalue
from server.domain import actions as action_rules
from server.errors import InvalidArgument

MAX_ATTEMPTS = 3
MAX_PROMPT_CHARS = 20_000
# Marks the prompt so a scripted model (scenario files) can tell generation requests apart, and a retry from a first.
HEADER = "You are the Hyphae workflow generator."
RETRY_MARKER = "The validator rejected your previous draft"

DSL_RULES = """\
A workflow definition is a JSON object {"actions": [step, ...]} with optional "condition" (run only if true) and
"schedule" ({"every": "5m"|"1h"|"1d", "at": "09:00", "timezone": "Europe/Berlin"} or {"cron": "0 9 * * 1-5"}).
Each step is {"type": T, "properties": {...}} with optional "outputKey" (context key of its result),
"filter": {"condition": C} (run the step only when C holds) and "onFalse": step (run instead when C is false).
Types T are the primitives below, the org's registered actions listed later, or actions the draft defines:
- "matcher": properties {"left": "@input.a", "right": "@input.b", "matchOn": ["field", ...], "tolerance": 0.02,
  "outputMatched": "matched", "outputUnmatchedLeft": "unmatched_left", "outputUnmatchedRight": "unmatched_right"}.
- "loop": properties {"mode": "foreach", "items_path": "@list", "item_variable_name": "item",
  "actions_to_execute": [step, ...], "max_concurrency": 5, "failure_strategy": "continue_on_error"}.
- "PbotApproval": a human approves or rejects; properties {"comment": "text with {{templates}}"}; later steps read
  "@__approved" (true/false).
- "PbotForm": a human fills a form; properties {"expected_keys": ["field", ...]}.
Values: "@input.x" reads the run's input, "@key.path" a context key, "{{key.path}}" fills text. Conditions C:
{"equal": [a, b]}, "notEqual", "greaterThan", "lessThan", "greaterOrEqual", "lessOrEqual" (two operands),
{"and": [C, ...]}, {"or": [C, ...]}, {"not": C}, {"hasKey": "@x.key"}, {"in": ["@x", ["a", "b"]]},
{"matches": ["@x", "regex"]}; {"length": "@list"} may be an operand.
Use these primitives and the listed actions. When the request needs an action the org does not have, define it in
"actions" as POST /actions takes it, e.g. {"action_name": "notify_team", "kind": "http", "description": "...",
"url": "https://hooks.example.com/notify", "http_method": "POST"} or {"action_name": "summarize", "kind": "llm",
"template": "Summarize: {{text}}"}; kinds: http (url, http_method), llm (template), db (datasource, query),
matcher (left, right, matchOn). Never redefine a listed action."""

ANSWER_FORMAT = """\
Answer with one JSON object and nothing else:
{"name": "snake_case_workflow_name", "description": "one sentence", "definition": {"actions": [...]},
 "actions": [new actions, if any], "explanation": "how the workflow meets the request, step by step"}"""


@dataclass(frozen=True)
class ActionInfo:
    name: str
    kind: str
    description: str


@dataclass(frozen=True)
class Draft:
    name: str
    description: str
    definition: Any
    explanation: str
    actions: list[Any]

    def as_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "description": self.description,
            "definition": self.definition,
            "actions": self.actions,
            "explanation": self.explanation,
        }


def build_prompt(request: str, actions: Sequence[ActionInfo], previous: Sequence[dict[str, Any]]) -> str:
    """The model prompt; `previous` are the earlier attempts ({"text", "errors"}), the last one rejected."""
    listed = (
        "\n".join(f"- {a.name} ({a.kind}){': ' + a.description if a.description else ''}" for a in actions)
        or "(none: use primitives only)"
    )
    parts = [HEADER, DSL_RULES, f"The org's registered actions:\n{listed}", ANSWER_FORMAT, f"Request:\n{request}"]
    if previous:
        last = previous[-1]
        errors = "\n".join(f"- {error}" for error in last["errors"])
        parts.append(
            f"{RETRY_MARKER} (attempt {len(previous)} of {MAX_ATTEMPTS}):\n{last['text']}\n"
            f"Validator errors:\n{errors}\nAnswer with a corrected JSON object."
        )
    return "\n\n".join(parts)


_FENCE = re.compile(r"```(?:json)?\s*(.*?)```", re.DOTALL)


def parse_answer(text: str) -> tuple[Draft | None, list[str]]:
    """The draft in a model answer (a JSON object, possibly in a ``` fence; a bare definition is accepted), or
    None and why not."""
    fenced = _FENCE.search(text)
    candidate = fenced.group(1) if fenced else text
    start, end = candidate.find("{"), candidate.rfind("}")
    if start < 0 or end <= start:
        return None, ["answer: no JSON object found; answer with one JSON object"]
    try:
        value = jsonvalue.loads(candidate[start : end + 1])  # strict: a NaN draft is refused here, with a reason
    except ValueError as exc:
        return None, [f"answer: not valid JSON ({exc})"]
    if not isinstance(value, dict):
        return None, ["answer: must be a JSON object"]
    if "definition" not in value and "actions" in value:
        value = {"definition": value}
    if "definition" not in value:
        return None, ["answer: missing 'definition' (the workflow definition object)"]
    name = value.get("name")
    description = value.get("description")
    explanation = value.get("explanation")
    actions = value.get("actions")
    if actions is None:
        actions = []
    elif not isinstance(actions, list):
        return None, ["answer.actions: must be a list of actions"]
    return (
        Draft(
            name=name if isinstance(name, str) else "",
            description=description if isinstance(description, str) else "",
            definition=value["definition"],
            explanation=explanation if isinstance(explanation, str) else "",
            actions=actions,
        ),
        [],
    )


KINDS = {name: kind for kind, name in action_rules.KIND_NAMES.items()}


def action_from_json(value: Any, where: str) -> action_pb2.Action:
    """A drafted action (the JSON POST /actions takes) as a validated Action; InvalidArgument naming `where`."""
    if not isinstance(value, dict):
        raise InvalidArgument("must be an object, as POST /actions takes it", field=where)
    data = {k: v for k, v in value.items() if k not in ("id", "created_at", "updated_at", "kind", "body", "params")}
    action = action_pb2.Action()
    try:
        json_format.ParseDict(data, action)  # proto names and the lowerCamel wire names (outputKey, matchOn...)
    except json_format.ParseError as exc:
        raise InvalidArgument(str(exc), field=where) from None
    kind = value.get("kind")
    if kind not in KINDS:
        raise InvalidArgument(f"kind must be one of {', '.join(KINDS)}", field=where)
    action.kind = KINDS[kind]
    for key in ("body", "params"):
        if value.get(key) is not None:
            getattr(action, key).CopyFrom(json_pb2.Json(raw=json.dumps(value[key], ensure_ascii=False)))
    try:
        action_rules.validate(action)
    except InvalidArgument as exc:
        raise InvalidArgument(exc.message.removeprefix("action."), field=where) from None
    return action
