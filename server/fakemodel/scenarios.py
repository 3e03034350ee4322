"""Scenario files for the fake model server: which answers to give to which conversation.

A file (JSON) holds `scenarios`, tried in order; the first whose `match` regex (any of them, `re.search`, case-
insensitive, `.` matches newlines) finds the conversation's system messages plus its first user message answers. The
turn is chosen by how many assistant messages the request already carries, so a resumed or replayed conversation gets
the same answers and the server keeps no conversation state. Past the last turn the scenario's `then` turn answers, or
else the last turn again. No scenario matching: the file's `default` turns, or else HTTP 400 `no_scenario_matched`.

The file may also set `api_key` (then only that Bearer key is accepted; otherwise any non-empty one) and `models`
(listed by GET /v1/models; the first is `hyphae serve --demo`'s default model).

A turn is one of
- `{"content": "text"}`;
- `{"thought", "action", "action_input"}`: a ReAct answer, sent as native tool calls when the request declared a tool of
  that name, else as the JSON text `{"thought", "action", "action_input"}` in `content`;
- `{"tool_calls": [{"name", "arguments"}], "content"?}`: tool calls when the request declared `tools`, else the first
  call as ReAct JSON content (`content` becomes the thought);
- `{"error": {"status", "message", "retry_after"?}, "times"?}`: fails the request `times` times (default 1) per
  conversation (its messages plus its Idempotency-Key header), then the conversation moves on to the next entry; an
  error with no answer after it fails every time.
Every turn may set `delay_ms`. Strings in answers may use `{{last_message}}` (the last non-assistant message),
`{{first_user_message}}`, `{{system}}`, `{{turn}}` (assistant messages so far) and `{{last_json.a.0.b}}` (a path into
the last message parsed as JSON; a string that is only that placeholder takes the JSON value itself). Any other
`{{...}}` is sent as written, so scripted workflow definitions and tool inputs may carry Hyphen templates.
"""

from __future__ import annotations

import hashlib
import json
import re
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

DEMO_SCENARIOS = Path(__file__).with_name("demo_scenarios.json")
PLACEHOLDER = re.compile(r"\{\{\s*([A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z0-9_\-]+)*)\s*\}\}")
TURN_KEYS = {"content", "thought", "action", "action_input", "tool_calls", "error", "times", "delay_ms"}


class ScenarioError(ValueError):
    """The scenario file is malformed; the message starts with the offending field."""


@dataclass(frozen=True)
class ModelError:
    status: int
    message: str
    retry_after: float | None = None
    times: int = 1


@dataclass(frozen=True)
class Turn:
    content: str | None = None
    # ReAct answer: action is set; thought and action_input complete it.
    thought: str = ""
    action: str | None = None
    action_input: Any = None
    tool_calls: tuple[tuple[str, Any], ...] = ()
    delay_ms: int = 0


@dataclass(frozen=True)
class Step:
    """One assistant turn of a scenario, with the errors served before it (per conversation)."""

    errors: tuple[ModelError, ...]
    answer: Turn | None


@dataclass(frozen=True)
class Scenario:
    name: str
    patterns: tuple[re.Pattern[str], ...]
    steps: tuple[Step, ...]
    then: Step | None = None

    def matches(self, text: str) -> bool:
        return any(pattern.search(text) for pattern in self.patterns)


@dataclass(frozen=True)
class ScenarioFile:
    scenarios: tuple[Scenario, ...] = ()
    default: Scenario | None = None
    api_key: str | None = None
    models: tuple[str, ...] = ("hyphae-fake",)

    @classmethod
    def single(cls, *turns: dict[str, Any], match: str = "") -> ScenarioFile:
        """One scenario (matching everything unless `match` is given) answering `turns` in order."""
        return parse({"scenarios": [{"name": "script", "match": match, "turns": list(turns)}]})


@dataclass(frozen=True)
class Answer:
    """What the server sends: an error, or content and/or tool calls."""

    scenario: str | None
    error: ModelError | None = None
    content: str | None = None
    tool_calls: tuple[tuple[str, Any], ...] = ()
    delay_ms: int = 0


def load(path: str | Path) -> ScenarioFile:
    """Parse a scenario file (JSON)."""
    text = Path(path).read_text(encoding="utf-8")
    try:
        raw = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ScenarioError(f"{path}: not JSON ({exc})") from None
    return parse(raw)


def parse(raw: Any) -> ScenarioFile:
    if not isinstance(raw, dict):
        raise ScenarioError("scenario file: must be an object with a `scenarios` list")
    _no_unknown(raw, {"scenarios", "default", "api_key", "models"}, "scenario file")
    items = raw.get("scenarios", [])
    if not isinstance(items, list):
        raise ScenarioError("scenarios: must be a list")
    scenarios = tuple(_scenario(item, f"scenarios[{i}]") for i, item in enumerate(items))
    default = None
    if raw.get("default") is not None:
        turns = raw["default"] if isinstance(raw["default"], list) else [raw["default"]]
        default = _scenario({"name": "default", "match": "", "turns": turns}, "default")
    api_key = raw.get("api_key")
    if api_key is not None and (not isinstance(api_key, str) or not api_key):
        raise ScenarioError("api_key: must be a non-empty string")
    models = raw.get("models", ["hyphae-fake"])
    if not isinstance(models, list) or not models or not all(isinstance(m, str) and m for m in models):
        raise ScenarioError("models: must be a non-empty list of model names")
    return ScenarioFile(scenarios, default, api_key, tuple(models))


def _no_unknown(raw: dict[str, Any], known: set[str], where: str) -> None:
    unknown = sorted(set(raw) - known)
    if unknown:
        raise ScenarioError(f"{where}: unknown key(s) {', '.join(unknown)} (known: {', '.join(sorted(known))})")


def _scenario(raw: Any, where: str) -> Scenario:
    if not isinstance(raw, dict):
        raise ScenarioError(f"{where}: must be an object with `match` and `turns`")
    _no_unknown(raw, {"name", "match", "turns", "then"}, where)
    match = raw.get("match", "")
    patterns = match if isinstance(match, list) else [match]
    compiled = []
    for i, pattern in enumerate(patterns):
        if not isinstance(pattern, str):
            raise ScenarioError(f"{where}.match: must be a regex string or a list of them")
        try:
            compiled.append(re.compile(pattern, re.IGNORECASE | re.DOTALL))
        except re.error as exc:
            raise ScenarioError(f"{where}.match[{i}]: invalid regex ({exc})") from None
    turns = raw.get("turns")
    if not isinstance(turns, list) or not turns:
        raise ScenarioError(f"{where}.turns: must be a non-empty list")
    steps: list[Step] = []
    errors: list[ModelError] = []
    for i, item in enumerate(turns):
        parsed = _turn(item, f"{where}.turns[{i}]")
        if isinstance(parsed, ModelError):
            errors.append(parsed)
        else:
            steps.append(Step(tuple(errors), parsed))
            errors = []
    if errors:
        steps.append(Step(tuple(errors), None))
    then = None
    if raw.get("then") is not None:
        parsed = _turn(raw["then"], f"{where}.then")
        then = Step((parsed,), None) if isinstance(parsed, ModelError) else Step((), parsed)
    return Scenario(str(raw.get("name") or where), tuple(compiled), tuple(steps), then)


def _turn(raw: Any, where: str) -> Turn | ModelError:
    if not isinstance(raw, dict):
        raise ScenarioError(f"{where}: must be an object (content, thought/action/action_input, tool_calls or error)")
    _no_unknown(raw, TURN_KEYS, where)
    delay = raw.get("delay_ms", 0)
    if not isinstance(delay, int) or isinstance(delay, bool) or delay < 0:
        raise ScenarioError(f"{where}.delay_ms: must be a non-negative integer")
    kinds = [k for k in ("content", "action", "tool_calls", "error") if k in raw]
    if "error" in raw:
        if len(kinds) > 1:
            raise ScenarioError(f"{where}: an error turn has no content, action or tool_calls")
        error = raw["error"]
        if not isinstance(error, dict):
            raise ScenarioError(f"{where}.error: must be an object {{status, message, retry_after}}")
        _no_unknown(error, {"status", "message", "retry_after"}, f"{where}.error")
        status = error.get("status", 500)
        if not isinstance(status, int) or not 400 <= status <= 599:
            raise ScenarioError(f"{where}.error.status: must be an HTTP error status (400-599)")
        retry_after = error.get("retry_after")
        if retry_after is not None and (not isinstance(retry_after, (int, float)) or retry_after < 0):
            raise ScenarioError(f"{where}.error.retry_after: must be a non-negative number of seconds")
        times = raw.get("times", 1)
        if not isinstance(times, int) or isinstance(times, bool) or times < 1:
            raise ScenarioError(f"{where}.times: must be a positive integer")
        return ModelError(status, str(error.get("message", "scripted error")), retry_after, times)
    if "times" in raw:
        raise ScenarioError(f"{where}.times: only error turns repeat")
    content = raw.get("content")
    if content is not None and not isinstance(content, str):
        raise ScenarioError(f"{where}.content: must be a string")
    if "action" in raw:
        if "tool_calls" in raw or "content" in raw:
            raise ScenarioError(f"{where}: a ReAct turn (action) has no content or tool_calls")
        if not isinstance(raw["action"], str) or not raw["action"]:
            raise ScenarioError(f"{where}.action: must be a tool name")
        thought = raw.get("thought", "")
        if not isinstance(thought, str):
            raise ScenarioError(f"{where}.thought: must be a string")
        action_input = raw.get("action_input", {})
        return Turn(thought=thought, action=raw["action"], action_input=action_input, delay_ms=delay)
    if "thought" in raw or "action_input" in raw:
        raise ScenarioError(f"{where}: thought and action_input need an action")
    calls: list[tuple[str, Any]] = []
    if "tool_calls" in raw:
        items = raw["tool_calls"]
        if not isinstance(items, list) or not items:
            raise ScenarioError(f"{where}.tool_calls: must be a non-empty list of {{name, arguments}}")
        for i, call in enumerate(items):
            if not isinstance(call, dict) or not isinstance(call.get("name"), str) or not call["name"]:
                raise ScenarioError(f"{where}.tool_calls[{i}]: must be an object with a `name`")
            _no_unknown(call, {"name", "arguments"}, f"{where}.tool_calls[{i}]")
            calls.append((call["name"], call.get("arguments", {})))
    elif content is None:
        raise ScenarioError(f"{where}: needs content, action, tool_calls or error")
    return Turn(content=content, tool_calls=tuple(calls), delay_ms=delay)


def text_of(content: Any) -> str:
    """A message's text: a string, or the text parts of a multi-part content list."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "\n".join(str(p.get("text", "")) for p in content if isinstance(p, dict) and p.get("type") == "text")
    return ""


@dataclass
class Conversation:
    """What the scenario choice and the templates read from one request."""

    messages: list[dict[str, Any]]
    declared_tools: frozenset[str]
    idempotency_key: str = ""

    @property
    def assistant_turns(self) -> int:
        return sum(1 for m in self.messages if m.get("role") == "assistant")

    @property
    def match_text(self) -> str:
        system = [text_of(m.get("content")) for m in self.messages if m.get("role") in ("system", "developer")]
        first_user = next((text_of(m.get("content")) for m in self.messages if m.get("role") == "user"), "")
        return "\n".join([*system, first_user])

    @property
    def fingerprint(self) -> str:
        raw = json.dumps([self.idempotency_key, self.messages], sort_keys=True, default=str)
        return hashlib.sha256(raw.encode()).hexdigest()

    def variables(self) -> dict[str, Any]:
        last = next((m for m in reversed(self.messages) if m.get("role") != "assistant"), None)
        return {
            "last_message": text_of(last.get("content")) if last else "",
            "first_user_message": next(
                (text_of(m.get("content")) for m in self.messages if m.get("role") == "user"), ""
            ),
            "system": "\n".join(text_of(m.get("content")) for m in self.messages if m.get("role") == "system"),
            "turn": self.assistant_turns,
        }


@dataclass
class Script:
    """A scenario file being served: picks answers. Its one piece of state counts the scripted errors already served
    to each conversation, so a retried request gets past them."""

    file: ScenarioFile
    _served: dict[tuple[str, int, int, str], int] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def answer(self, conversation: Conversation) -> Answer | None:
        """The answer, or None when no scenario matches and the file has no default."""
        text = conversation.match_text
        scenario = next((s for s in self.file.scenarios if s.matches(text)), self.file.default)
        if scenario is None:
            return None
        k = conversation.assistant_turns
        if k < len(scenario.steps):
            step = scenario.steps[k]
        elif scenario.then is not None:
            step = scenario.then
        else:  # past the last turn: the last answer again (its scripted errors were for its own conversation)
            last = scenario.steps[-1]
            step = Step((), last.answer) if last.answer is not None else last
        for i, error in enumerate(step.errors):
            key = (scenario.name, k, i, conversation.fingerprint)
            with self._lock:
                served = self._served.get(key, 0)
                if served < error.times or (step.answer is None and i == len(step.errors) - 1):
                    self._served[key] = served + 1
                    return Answer(scenario.name, error=error)
        assert step.answer is not None  # a step without an answer always returns its last error above
        return render(scenario.name, step.answer, conversation)


def render(scenario: str, turn: Turn, conversation: Conversation) -> Answer:
    variables = conversation.variables()
    last_json = _json_or_none(variables["last_message"])
    fill = _Filler(variables, last_json)
    if turn.action is not None:
        action_input = fill(turn.action_input)
        thought = fill(turn.thought)
        if turn.action in conversation.declared_tools:
            return Answer(
                scenario, content=thought or None, tool_calls=((turn.action, action_input),), delay_ms=turn.delay_ms
            )
        react = {"thought": thought, "action": turn.action, "action_input": action_input}
        return Answer(scenario, content=json.dumps(react, ensure_ascii=False), delay_ms=turn.delay_ms)
    content = fill(turn.content) if turn.content is not None else None
    calls = tuple((name, fill(arguments)) for name, arguments in turn.tool_calls)
    if calls and not conversation.declared_tools:
        name, arguments = calls[0]
        react = {"thought": content or "", "action": name, "action_input": arguments}
        return Answer(scenario, content=json.dumps(react, ensure_ascii=False), delay_ms=turn.delay_ms)
    return Answer(scenario, content=content, tool_calls=calls, delay_ms=turn.delay_ms)


def _json_or_none(text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError:
        return None


class _Filler:
    def __init__(self, variables: dict[str, Any], last_json: Any) -> None:
        self.variables = variables
        self.last_json = last_json

    def known(self, name: str) -> bool:
        return name in self.variables or name.split(".", 1)[0] == "last_json"

    def lookup(self, name: str) -> Any:
        if name in self.variables:
            return self.variables[name]
        value = self.last_json
        for part in name.split(".")[1:]:
            if isinstance(value, dict):
                value = value.get(part)
            elif isinstance(value, list) and part.isascii() and part.isdigit() and int(part) < len(value):
                value = value[int(part)]
            else:
                return None
        return value

    def __call__(self, value: Any) -> Any:
        if isinstance(value, str):
            whole = PLACEHOLDER.fullmatch(value)
            if whole and whole.group(1).startswith("last_json"):
                return self.lookup(whole.group(1))
            return PLACEHOLDER.sub(
                lambda m: _as_text(self.lookup(m.group(1))) if self.known(m.group(1)) else m.group(0), value
            )
        if isinstance(value, dict):
            return {key: self(item) for key, item in value.items()}
        if isinstance(value, list):
            return [self(item) for item in value]
        return value


def _as_text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    return json.dumps(value, ensure_ascii=False)
