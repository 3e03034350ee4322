"""Structural validation of Hyphen workflow definitions (the workflow DSL).

This module is pure: it knows nothing about storage or transport.  It checks a
definition at create/update time (spec sections 4, 4.1, 4.2, 5 and 6) and
exposes the small parsers the interpreter reuses at run time:

* :func:`parse_reference` / :func:`parse_path` -- ``@input.items.0.id`` style paths;
* :func:`split_template` -- ``"Hello {{customer.name}}"`` placeholders;
* :func:`validate_condition` -- the condition grammar of ``definition.condition``
  and step ``filter.condition``.

Conventions settled here (the docs are silent on them):

* a JSON ``null`` for an *optional* field means "absent";
* any string that starts with ``@`` is a reference and must parse, everywhere
  inside properties and conditions (``"ops@acme.com"`` does not start with ``@``);
* numeric options of primitives may also be given as an ``@reference``
  (resolved at run time), except where the docs demand a literal.
"""

from __future__ import annotations

import difflib
import json
import math
import re
from collections.abc import Callable, Collection, Iterable
from typing import NamedTuple
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from server.domain import custom_tables

__all__ = [
    "COMPARISON_OPERATORS",
    "CONDITION_OPERATORS",
    "CUSTOM_TABLE_OPERATIONS",
    "LOGICAL_OPERATORS",
    "LOOP_MODES",
    "MAX_DEPTH",
    "MAX_REGEX_LENGTH",
    "MAX_STEPS",
    "MAX_TIMEZONE_LENGTH",
    "PRIMITIVES",
    "DefinitionError",
    "PathSegment",
    "TemplateField",
    "is_identifier",
    "parse_path",
    "parse_reference",
    "split_template",
    "validate_condition",
    "validate_definition",
]

PathSegment = str | int

PRIMITIVES: frozenset[str] = frozenset({"matcher", "loop", "PbotApproval", "PbotForm", "custom-table"})
_PRIMITIVES_TEXT = "matcher, loop, PbotApproval, PbotForm, custom-table"

COMPARISON_OPERATORS: frozenset[str] = frozenset(
    {"equal", "notEqual", "greaterThan", "lessThan", "greaterOrEqual", "lessOrEqual"}
)
LOGICAL_OPERATORS: frozenset[str] = frozenset({"and", "or", "not"})
CONDITION_OPERATORS: frozenset[str] = COMPARISON_OPERATORS | LOGICAL_OPERATORS | {"hasKey", "in", "matches"}

LOOP_MODES: frozenset[str] = frozenset({"foreach", "react"})
FAILURE_STRATEGIES: frozenset[str] = frozenset({"stop_on_error", "continue_on_error"})
ON_STUCK_ACTIONS: frozenset[str] = frozenset({"fail", "escalate", "retry_with_hint"})
CUSTOM_TABLE_OPERATIONS: frozenset[str] = frozenset(custom_tables.OPERATIONS)
CUSTOM_TABLE_PROPERTIES: tuple[str, ...] = ("table", "operation", "keys", "values", "fields", "limit")

MAX_DEPTH = 32
"""Maximum nesting of JSON containers (objects/arrays) in a definition, the definition itself counting 1."""
MAX_STEPS = 1000
"""Maximum number of steps in a definition, counting ``onFalse`` steps and loop bodies."""

DEFINITION_KEYS: tuple[str, ...] = ("actions", "condition", "schedule", "description", "metadata")
STEP_KEYS: tuple[str, ...] = (
    "type",
    "properties",
    "filter",
    "condition",
    "onFalse",
    "outputKey",
    "name",
    "id",
    "description",
)
SCHEDULE_KEYS: tuple[str, ...] = ("every", "cron", "at", "timezone")
ON_STUCK_KEYS: tuple[str, ...] = ("iterations", "action", "hint")

_IDENTIFIER_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_SEGMENT_RE = re.compile(r"[\w-]+")
_INDEX_RE = re.compile(r"0|[1-9][0-9]{0,17}")  # at most 18 digits: longer runs stay names, never int()
_EVERY_RE = re.compile(r"([0-9]{1,6})(m|h|d)")
_AT_RE = re.compile(r"([01][0-9]|2[0-3]):[0-5][0-9]")
_CRON_FIELD_RE = re.compile(r"[0-9*/,\-]+")
MAX_REGEX_LENGTH = 1000
"""Maximum length of a literal ``matches`` regex (compiling is recursive and super-linear in the pattern)."""
MAX_TIMEZONE_LENGTH = 64
"""Longer ``schedule.timezone`` values are refused before the (recursive) tz database lookup."""


class DefinitionError(ValueError):
    """A workflow definition is structurally invalid.

    ``path`` locates the offending value, rooted at ``definition``
    (e.g. ``definition.actions[1].filter.condition.greaterThan[0].length``).
    """

    def __init__(self, path: str, message: str) -> None:
        super().__init__(path, message)
        self.path = path
        self.message = message

    def __str__(self) -> str:
        return f"{self.path}: {self.message}"


# --------------------------------------------------------------------------- paths, references, templates


def is_identifier(value: object) -> bool:
    """True for strings matching ``^[A-Za-z_][A-Za-z0-9_]*$`` (outputKey, result_key, ...)."""
    return isinstance(value, str) and _IDENTIFIER_RE.fullmatch(value) is not None


def parse_path(text: str) -> list[PathSegment]:
    """Parse a dotted context path without ``@`` (``"input.items.0.id"``).

    Segments are runs of word characters or ``-``; canonical decimal segments
    (``0``, ``12``, not ``007``) of at most 18 digits become ``int`` (array indexes).  The first
    segment must be a name.  Raises ``ValueError`` with a reason otherwise.
    """
    if text == "":
        raise ValueError("empty path")
    segments: list[PathSegment] = []
    parts = text.split(".")
    for position, part in enumerate(parts):
        if part == "":
            if position == len(parts) - 1:
                raise ValueError("path ends with '.'")
            if position == 0:
                raise ValueError("path starts with '.'")
            raise ValueError("empty path segment ('..')")
        if _SEGMENT_RE.fullmatch(part) is None:
            raise ValueError(f"invalid path segment {part!r} (letters, digits, '_' and '-' only)")
        segments.append(int(part) if _INDEX_RE.fullmatch(part) else part)
    if isinstance(segments[0], int):
        raise ValueError("a path must start with a name, not an index")
    return segments


def parse_reference(text: str) -> list[PathSegment] | None:
    """``"@input.items.0.id"`` -> ``["input", "items", 0, "id"]``.

    Returns ``None`` when ``text`` is not a reference (does not start with ``@``);
    raises ``ValueError`` when it is a malformed one (``"@"``, ``"@input..x"``,
    ``"@ foo"``, ``"@input."``).
    """
    if not text.startswith("@"):
        return None
    if text == "@":
        raise ValueError("nothing after '@'")
    return parse_path(text[1:])


class TemplateField(NamedTuple):
    """One ``{{ path }}`` placeholder of a template string."""

    source: str
    """The placeholder exactly as written, braces included."""
    path: tuple[PathSegment, ...]


def split_template(text: str) -> list[str | TemplateField]:
    """Split ``text`` into literal chunks and ``{{ path }}`` placeholders.

    ``"Hi {{ customer.name }}!"`` ->
    ``["Hi ", TemplateField("{{ customer.name }}", ("customer", "name")), "!"]``.
    Empty literal chunks are omitted.  A stray ``}}`` is literal text (JSON
    samples in prompts end with ``}}``); an unclosed ``{{``, an empty or
    malformed placeholder, or an ``@`` inside one raises ``ValueError``.
    """
    parts: list[str | TemplateField] = []
    position = 0
    while True:
        start = text.find("{{", position)
        if start < 0:
            if position < len(text):
                parts.append(text[position:])
            return parts
        end = text.find("}}", start + 2)
        if end < 0:
            raise ValueError(f"unbalanced template: '{{{{' at offset {start} has no closing '}}}}'")
        inner = text[start + 2 : end]
        source = text[start : end + 2]
        if "{{" in inner:
            raise ValueError(f"unbalanced template: '{{{{' at offset {start} is not closed before the next '{{{{'")
        stripped = inner.strip()
        if stripped == "":
            raise ValueError(f"empty template placeholder {source!r}")
        if stripped.startswith("@"):
            raise ValueError(f"template placeholder {source!r}: template paths take no '@' (write {{{{input.x}}}})")
        try:
            path = parse_path(stripped)
        except ValueError as exc:
            raise ValueError(f"malformed template placeholder {source!r}: {exc}") from None
        if start > position:
            parts.append(text[position:start])
        parts.append(TemplateField(source, tuple(path)))
        position = end + 2


# --------------------------------------------------------------------------- small helpers


def _child(path: str, key: str) -> str:
    if _IDENTIFIER_RE.fullmatch(key):
        return f"{path}.{key}"
    return f"{path}[{json.dumps(key)}]"


def _type_name(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    if isinstance(value, dict):
        return "object"
    return type(value).__name__


def _short(text: str, limit: int = 80) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _suggest(word: str, choices: Iterable[str]) -> str:
    close = difflib.get_close_matches(word, sorted(choices), n=1)
    return f"; did you mean {close[0]!r}?" if close else ""


def _is_number(value: object) -> bool:
    if isinstance(value, bool):
        return False
    if isinstance(value, int):
        return True  # math.isfinite() would raise OverflowError on ints beyond the float range
    return isinstance(value, float) and math.isfinite(value)


def _is_integer(value: object) -> bool:
    if isinstance(value, bool):
        return False
    if isinstance(value, int):
        return True
    return isinstance(value, float) and math.isfinite(value) and value.is_integer()


def _is_reference(value: object) -> bool:
    return isinstance(value, str) and value.startswith("@")


def _check_string(value: str, path: str) -> None:
    """Every ``@`` string must be a well-formed reference; every ``{{`` must close on a valid path."""
    if value.startswith("@"):
        try:
            parse_reference(value)
        except ValueError as exc:
            raise DefinitionError(path, f"malformed reference {_short(value)!r}: {exc}") from None
        return
    if "{{" in value:
        try:
            split_template(value)
        except ValueError as exc:
            raise DefinitionError(path, str(exc)) from None


def _scan(value: object, path: str, skip: Collection[str] = ()) -> None:
    """Check references and templates in every string below ``value`` (depth is bounded beforehand)."""
    if isinstance(value, str):
        _check_string(value, path)
    elif isinstance(value, list):
        for index, item in enumerate(value):
            _scan(item, f"{path}[{index}]")
    elif isinstance(value, dict):
        for key, item in value.items():
            if key not in skip:
                _scan(item, _child(path, key))


def _check_json_tree(root: object, path: str) -> None:
    """Reject non-JSON values and nesting deeper than MAX_DEPTH, without recursion."""
    stack: list[tuple[object, str, int]] = [(root, path, 1)]
    while stack:
        value, where, depth = stack.pop()
        if isinstance(value, dict | list):
            if depth > MAX_DEPTH:
                raise DefinitionError(where, f"nesting too deep: at most {MAX_DEPTH} levels of objects/arrays")
            children: list[tuple[object, str, int]] = []
            if isinstance(value, dict):
                for key, item in value.items():
                    if not isinstance(key, str):
                        raise DefinitionError(where, f"object keys must be strings, got {_type_name(key)}")
                    children.append((item, _child(where, key), depth + 1))
            else:
                children = [(item, f"{where}[{index}]", depth + 1) for index, item in enumerate(value)]
            stack.extend(reversed(children))
        elif isinstance(value, float):
            if not math.isfinite(value):
                raise DefinitionError(where, "numbers must be finite")
        elif not (value is None or isinstance(value, str | bool | int)):
            raise DefinitionError(where, f"not a JSON value ({type(value).__name__})")


def _optional(mapping: dict[str, object], key: str) -> object:
    """The value of an optional key; absent and ``null`` both read as ``None``."""
    return mapping.get(key)


def _check_keys(mapping: dict[str, object], allowed: Collection[str], path: str, what: str) -> None:
    for key in mapping:
        if key not in allowed:
            raise DefinitionError(
                _child(path, key),
                f"unknown {what} key {key!r} (allowed: {', '.join(allowed)}){_suggest(key, allowed)}",
            )


# --------------------------------------------------------------------------- conditions


def validate_condition(condition: object, path: str = "condition") -> None:
    """Validate one condition expression (spec 4.2); raises :class:`DefinitionError`.

    A condition is an object with exactly one operator key:
    ``equal notEqual greaterThan lessThan greaterOrEqual lessOrEqual`` take ``[left, right]``;
    ``hasKey`` takes a path string (``@`` optional); ``in`` takes ``[value, array | @ref]``;
    ``matches`` takes ``[value, regex]``; ``and``/``or`` take a non-empty list of conditions;
    ``not`` takes one condition.  Operands are JSON literals (objects excepted),
    ``@references`` or ``{"length": <operand>}``.
    """
    _check_json_tree(condition, path)
    _condition(condition, path)


def _condition(condition: object, path: str) -> None:
    if not isinstance(condition, dict):
        raise DefinitionError(path, f"a condition must be an object with one operator key, got {_type_name(condition)}")
    if len(condition) != 1:
        if not condition:
            raise DefinitionError(path, "empty condition: expected exactly one operator key")
        keys = ", ".join(repr(key) for key in condition)
        raise DefinitionError(
            path, f"a condition takes exactly one operator key, got {keys} (combine them with 'and'/'or')"
        )
    ((operator, argument),) = condition.items()
    if operator not in CONDITION_OPERATORS:
        expected = ", ".join(sorted(CONDITION_OPERATORS))
        raise DefinitionError(
            path,
            f"unknown operator {operator!r} (expected one of {expected}){_suggest(operator, CONDITION_OPERATORS)}",
        )
    here = _child(path, operator)
    if operator in COMPARISON_OPERATORS:
        operands = _operand_pair(argument, here, operator, "[left, right]")
        for index, operand in enumerate(operands):
            _operand(operand, f"{here}[{index}]")
    elif operator == "hasKey":
        if not isinstance(argument, str):
            raise DefinitionError(here, f"'hasKey' takes a path string, got {_type_name(argument)}")
        try:
            parse_path(argument[1:] if argument.startswith("@") else argument)
        except ValueError as exc:
            raise DefinitionError(here, f"malformed path {_short(argument)!r}: {exc}") from None
    elif operator == "in":
        value, collection = _operand_pair(argument, here, operator, "[value, array]")
        _operand(value, f"{here}[0]")
        if isinstance(collection, list):
            for index, item in enumerate(collection):
                _operand(item, f"{here}[1][{index}]")
        elif _is_reference(collection):
            _operand(collection, f"{here}[1]")
        else:
            raise DefinitionError(
                f"{here}[1]",
                f"the second operand of 'in' must be an array or an @reference, got {_type_name(collection)}",
            )
    elif operator == "matches":
        value, pattern = _operand_pair(argument, here, operator, "[value, regex]")
        _operand(value, f"{here}[0]")
        if not isinstance(pattern, str):
            raise DefinitionError(f"{here}[1]", f"the regex of 'matches' must be a string, got {_type_name(pattern)}")
        if pattern.startswith("@"):
            _check_string(pattern, f"{here}[1]")
        elif len(pattern) > MAX_REGEX_LENGTH:
            raise DefinitionError(
                f"{here}[1]", f"the regex of 'matches' is too long: at most {MAX_REGEX_LENGTH} characters"
            )
        else:
            try:
                re.compile(pattern)
            except (re.error, RecursionError, OverflowError, ValueError) as exc:
                reason = exc if isinstance(exc, re.error) else "too complex (nested too deeply or too large)"
                raise DefinitionError(
                    f"{here}[1]", f"invalid regular expression {_short(pattern)!r}: {reason}"
                ) from None
    elif operator in ("and", "or"):
        if not isinstance(argument, list) or not argument:
            raise DefinitionError(here, f"{operator!r} takes a non-empty list of conditions")
        for index, item in enumerate(argument):
            _condition(item, f"{here}[{index}]")
    else:  # not
        _condition(argument, here)


def _operand_pair(argument: object, path: str, operator: str, shape: str) -> tuple[object, object]:
    if not isinstance(argument, list):
        raise DefinitionError(path, f"{operator!r} takes a list of 2 operands {shape}, got {_type_name(argument)}")
    if len(argument) != 2:
        raise DefinitionError(path, f"{operator!r} takes a list of 2 operands {shape}, got {len(argument)}")
    return argument[0], argument[1]


def _operand(operand: object, path: str) -> None:
    if isinstance(operand, dict):
        if set(operand) != {"length"}:
            keys = ", ".join(repr(key) for key in operand) or "none"
            raise DefinitionError(path, f'an object operand must be {{"length": <operand>}}, got keys {keys}')
        _operand(operand["length"], _child(path, "length"))
    elif isinstance(operand, list):
        for index, item in enumerate(operand):
            if isinstance(item, dict):
                _scan(item, f"{path}[{index}]")
            else:
                _operand(item, f"{path}[{index}]")
    elif isinstance(operand, str):
        _check_string(operand, path)


# --------------------------------------------------------------------------- schedule


def _schedule(schedule: object, path: str) -> None:
    if not isinstance(schedule, dict):
        raise DefinitionError(path, f"schedule must be an object, got {_type_name(schedule)}")
    _check_keys(schedule, SCHEDULE_KEYS, path, "schedule")
    every = _optional(schedule, "every")
    cron = _optional(schedule, "cron")
    if every is None and cron is None:
        raise DefinitionError(path, 'schedule needs \'every\' (e.g. "30m", "6h", "1d") or \'cron\'')
    if every is not None and cron is not None:
        raise DefinitionError(path, "schedule takes either 'every' or 'cron', not both")
    daily = False
    if every is not None:
        where = _child(path, "every")
        match = _EVERY_RE.fullmatch(every) if isinstance(every, str) else None
        if match is None:
            raise DefinitionError(
                where,
                f'\'every\' must look like "30m", "6h" or "1d" (a number of at most 6 digits, then m, h or d), '
                f"got {_short(json.dumps(every))}",
            )
        if int(match.group(1)) == 0:
            raise DefinitionError(where, "'every' must be a positive interval")
        daily = match.group(2) == "d"
    if cron is not None:
        where = _child(path, "cron")
        if not isinstance(cron, str):
            raise DefinitionError(where, f"'cron' must be a string, got {_type_name(cron)}")
        fields = cron.split()
        if len(fields) != 5:
            raise DefinitionError(where, f"'cron' needs 5 fields (minute hour day month weekday), got {len(fields)}")
        for field in fields:
            if _CRON_FIELD_RE.fullmatch(field) is None:
                raise DefinitionError(where, f"invalid cron field {field!r}")
    at = _optional(schedule, "at")
    if at is not None:
        where = _child(path, "at")
        if not isinstance(at, str) or _AT_RE.fullmatch(at) is None:
            raise DefinitionError(where, f"'at' must be a 24h time \"HH:MM\", got {_short(json.dumps(at))}")
        if not daily:
            raise DefinitionError(where, "'at' only applies when 'every' is 1d or longer")
    timezone = _optional(schedule, "timezone")
    if timezone is not None:
        where = _child(path, "timezone")
        if not isinstance(timezone, str):
            raise DefinitionError(where, f"'timezone' must be an IANA name string, got {_type_name(timezone)}")
        try:
            if len(timezone) > MAX_TIMEZONE_LENGTH:
                raise ValueError("too long")
            ZoneInfo(timezone)
        except (ZoneInfoNotFoundError, ValueError, OSError, RecursionError):
            raise DefinitionError(
                where, f'unknown timezone {_short(timezone)!r} (expected an IANA name like "Europe/London")'
            ) from None


# --------------------------------------------------------------------------- steps


class _Validator:
    def __init__(self, is_known: Callable[[str], bool], allow_react: bool) -> None:
        self.is_known = is_known
        self.allow_react = allow_react
        self.steps = 0

    # ---- generic property checks

    def require(self, props: dict[str, object], key: str, path: str, what: str) -> object:
        value = props.get(key)
        if value is None:
            raise DefinitionError(_child(path, key), f"missing required property {key!r} ({what})")
        return value

    def number(
        self,
        props: dict[str, object],
        key: str,
        path: str,
        *,
        integer: bool = False,
        minimum: float | None = None,
        maximum: float | None = None,
        above: float | None = None,
    ) -> None:
        value = props.get(key)
        if value is None:
            return
        where = _child(path, key)
        if _is_reference(value):
            _check_string(str(value), where)
            return
        kind = "an integer" if integer else "a number"
        if not (_is_integer(value) if integer else _is_number(value)):
            raise DefinitionError(where, f"{key!r} must be {kind}, got {_type_name(value)}")
        assert isinstance(value, int | float)
        if minimum is not None and value < minimum:
            bound = f"between {minimum:g} and {maximum:g}" if maximum is not None else f">= {minimum:g}"
            raise DefinitionError(where, f"{key!r} must be {kind} {bound}, got {value!r}")
        if maximum is not None and value > maximum:
            raise DefinitionError(
                where, f"{key!r} must be {kind} between {minimum or 0:g} and {maximum:g}, got {value!r}"
            )
        if above is not None and value <= above:
            raise DefinitionError(where, f"{key!r} must be {kind} > {above:g}, got {value!r}")

    def string(self, props: dict[str, object], key: str, path: str, *, non_empty: bool = False) -> None:
        value = props.get(key)
        if value is None:
            return
        where = _child(path, key)
        if not isinstance(value, str):
            raise DefinitionError(where, f"{key!r} must be a string, got {_type_name(value)}")
        if non_empty and not value.strip():
            raise DefinitionError(where, f"{key!r} must not be empty")
        _check_string(value, where)

    def identifier(self, props: dict[str, object], key: str, path: str) -> None:
        value = props.get(key)
        if value is not None and not is_identifier(value):
            raise DefinitionError(
                _child(path, key),
                f"{key!r} must be an identifier matching ^[A-Za-z_][A-Za-z0-9_]*$, got {_short(json.dumps(value))}",
            )

    def boolean(self, props: dict[str, object], key: str, path: str) -> None:
        value = props.get(key)
        if value is not None and not isinstance(value, bool) and not _is_reference(value):
            raise DefinitionError(_child(path, key), f"{key!r} must be a boolean, got {_type_name(value)}")

    def enum(self, props: dict[str, object], key: str, path: str, choices: Collection[str]) -> None:
        value = props.get(key)
        if value is None:
            return
        if not isinstance(value, str) or value not in choices:
            shown = repr(value) if isinstance(value, str) else _type_name(value)
            options = ", ".join(sorted(choices))
            hint = _suggest(value, choices) if isinstance(value, str) else ""
            raise DefinitionError(_child(path, key), f"{key!r} must be one of {options}, got {shown}{hint}")

    def string_list(self, props: dict[str, object], key: str, path: str, *, required: bool, what: str) -> None:
        value = self.require(props, key, path, what) if required else props.get(key)
        if value is None:
            return
        where = _child(path, key)
        if not isinstance(value, list) or (required and not value):
            raise DefinitionError(where, f"{key!r} must be a non-empty list of strings ({what})")
        for index, item in enumerate(value):
            if not isinstance(item, str) or not item.strip():
                raise DefinitionError(f"{where}[{index}]", f"{key!r} entries must be non-empty strings")

    # ---- steps

    def step(self, step: object, path: str) -> None:
        self.steps += 1
        if self.steps > MAX_STEPS:
            raise DefinitionError(path, f"too many steps: at most {MAX_STEPS} (counting onFalse steps and loop bodies)")
        if not isinstance(step, dict):
            raise DefinitionError(path, f"a step must be an object, got {_type_name(step)}")
        _check_keys(step, STEP_KEYS, path, "step")

        step_type = step.get("type")
        type_path = _child(path, "type")
        if step_type is None:
            raise DefinitionError(type_path, "missing step type")
        if not isinstance(step_type, str) or not step_type.strip():
            raise DefinitionError(type_path, "step type must be a non-empty string")
        if step_type not in PRIMITIVES and not self.is_known(step_type):
            raise DefinitionError(
                type_path,
                f"unknown step type {_short(step_type)!r}: register it with POST /actions "
                f"or use a primitive ({_PRIMITIVES_TEXT})",
            )
        for key in ("name", "id", "description"):
            value = step.get(key)
            if value is not None and not isinstance(value, str):
                raise DefinitionError(_child(path, key), f"{key!r} must be a string, got {_type_name(value)}")
        self.identifier(step, "outputKey", path)

        step_filter = step.get("filter")
        alias = step.get("condition")
        if step_filter is not None and alias is not None:
            raise DefinitionError(
                _child(path, "condition"),
                "give the condition either as 'filter.condition' or as 'condition', not both",
            )
        if step_filter is not None:
            filter_path = _child(path, "filter")
            if not isinstance(step_filter, dict):
                raise DefinitionError(filter_path, f"'filter' must be an object, got {_type_name(step_filter)}")
            _check_keys(step_filter, ("condition",), filter_path, "filter")
            if step_filter.get("condition") is None:
                raise DefinitionError(_child(filter_path, "condition"), "'filter' must contain a 'condition'")
            _condition(step_filter["condition"], _child(filter_path, "condition"))
        elif alias is not None:
            _condition(alias, _child(path, "condition"))

        props = step.get("properties")
        props_path = _child(path, "properties")
        if props is None:
            props = {}
        if not isinstance(props, dict):
            raise DefinitionError(props_path, f"'properties' must be an object, got {_type_name(props)}")
        if step_type == "matcher":
            self.matcher(props, props_path)
        elif step_type == "loop":
            self.loop(props, props_path)
        elif step_type == "PbotApproval":
            self.approval(props, props_path)
        elif step_type == "PbotForm":
            self.form(props, props_path)
        elif step_type == "custom-table":
            self.custom_table(props, props_path)
        else:
            _scan(props, props_path)

        on_false = step.get("onFalse")
        if on_false is not None:
            if step_filter is None and alias is None:
                raise DefinitionError(
                    _child(path, "onFalse"), "'onFalse' needs a 'filter' (it runs when the filter is false)"
                )
            self.step(on_false, _child(path, "onFalse"))

    # ---- primitives

    def matcher(self, props: dict[str, object], path: str) -> None:
        for side in ("left", "right"):
            value = self.require(props, side, path, "an array, an @reference or a 'doc:<id>' string")
            where = _child(path, side)
            if isinstance(value, str):
                if value.startswith("@"):
                    _check_string(value, where)
                    continue
                if value.startswith("doc:") and value[4:].strip():
                    continue
            if not isinstance(value, list):
                raise DefinitionError(
                    where,
                    f"{side!r} must be an array, an @reference or a 'doc:<id>' string, got {_short(json.dumps(value))}",
                )
        self.string_list(props, "matchOn", path, required=True, what="the fields that must match exactly")
        self.number(props, "tolerance", path, minimum=0)
        self.number(props, "dateWindowDays", path, integer=True, minimum=0)
        self.number(props, "fuzzyThreshold", path, minimum=0, maximum=100)
        for key in ("descriptionKey", "dateKey", "amountKey"):
            self.string(props, key, path, non_empty=True)
        rules = props.get("rules")
        if rules is not None and not isinstance(rules, list):
            raise DefinitionError(_child(path, "rules"), f"'rules' must be an array, got {_type_name(rules)}")
        for key in ("outputMatched", "outputUnmatchedLeft", "outputUnmatchedRight"):
            self.identifier(props, key, path)
        _scan(props, path)

    def loop(self, props: dict[str, object], path: str) -> None:
        mode = props.get("mode")
        mode_path = _child(path, "mode")
        if mode is None:
            mode = "foreach"
        if not isinstance(mode, str) or mode not in LOOP_MODES:
            shown = repr(mode) if isinstance(mode, str) else _type_name(mode)
            raise DefinitionError(mode_path, f"unknown loop mode {shown} (expected 'foreach' or 'react')")
        if mode == "react":
            if not self.allow_react:
                raise DefinitionError(mode_path, "loop mode 'react' (agents) is not available yet")
            self.react(props, path)
            return
        items = self.require(props, "items_path", path, "an @reference to the array to iterate")
        if not _is_reference(items):
            raise DefinitionError(
                _child(path, "items_path"),
                f"'items_path' must be an @reference to an array (e.g. \"@input.items\"), "
                f"got {_short(json.dumps(items))}",
            )
        _check_string(str(items), _child(path, "items_path"))
        self.require(props, "item_variable_name", path, 'the name of the loop variable, e.g. "customer"')
        self.identifier(props, "item_variable_name", path)
        body = self.require(props, "actions_to_execute", path, "the steps to run for each item")
        body_path = _child(path, "actions_to_execute")
        if not isinstance(body, list) or not body:
            raise DefinitionError(body_path, "'actions_to_execute' must be a non-empty list of steps")
        self.number(props, "max_concurrency", path, integer=True, minimum=1)
        self.enum(props, "failure_strategy", path, FAILURE_STRATEGIES)
        self.boolean(props, "collect_results", path)
        self.identifier(props, "result_key", path)
        _scan(props, path, skip=("actions_to_execute",))
        for index, item in enumerate(body):
            self.step(item, f"{body_path}[{index}]")

    def react(self, props: dict[str, object], path: str) -> None:
        objective = self.require(props, "objective", path, "what the agent must achieve")
        if not isinstance(objective, str) or not objective.strip():
            raise DefinitionError(_child(path, "objective"), "'objective' must be a non-empty string")
        tools = self.require(props, "tools", path, "the tools the agent may use")
        tools_path = _child(path, "tools")
        if not isinstance(tools, list):
            raise DefinitionError(tools_path, f"'tools' must be a list, got {_type_name(tools)}")
        for index, tool in enumerate(tools):
            self.tool(tool, f"{tools_path}[{index}]")
        self.number(props, "max_iterations", path, integer=True, minimum=1)
        self.number(props, "timeout_ms", path, integer=True, minimum=1)
        self.number(props, "temperature", path, minimum=0)
        self.string(props, "model", path, non_empty=True)
        self.identifier(props, "result_key", path)
        on_stuck = props.get("on_stuck")
        if on_stuck is not None:
            stuck_path = _child(path, "on_stuck")
            if not isinstance(on_stuck, dict):
                raise DefinitionError(stuck_path, f"'on_stuck' must be an object, got {_type_name(on_stuck)}")
            _check_keys(on_stuck, ON_STUCK_KEYS, stuck_path, "on_stuck")
            self.number(on_stuck, "iterations", stuck_path, integer=True, minimum=1)
            self.enum(on_stuck, "action", stuck_path, ON_STUCK_ACTIONS)
            self.string(on_stuck, "hint", stuck_path)
        _scan(props, path)

    def tool(self, tool: object, path: str) -> None:
        if isinstance(tool, str):
            if not tool.strip():
                raise DefinitionError(path, "a tool name must not be empty")
            return
        if not isinstance(tool, dict):
            raise DefinitionError(
                path,
                f'a tool must be an object like {{"type": "action", "name": ...}}, got {_type_name(tool)}',
            )
        tool_type = tool.get("type")
        if tool_type is None or tool_type == "action":
            if not isinstance(tool.get("name"), str) or not str(tool.get("name")).strip():
                raise DefinitionError(_child(path, "name"), "an action tool needs a non-empty 'name'")
        elif tool_type == "workflow":
            if not any(isinstance(tool.get(key), str) and str(tool.get(key)).strip() for key in ("id", "name")):
                raise DefinitionError(path, "a workflow tool needs a non-empty 'id' or 'name'")
        elif tool_type == "mcp":
            url, command = tool.get("url"), tool.get("command")
            if command is not None:  # a stdio server (which commands may run is the server operator's allow-list)
                if url is not None:
                    raise DefinitionError(path, "an mcp tool has either a 'url' or a 'command', not both")
                if not isinstance(command, str) or not command.strip():
                    raise DefinitionError(_child(path, "command"), "must be the stdio MCP server's executable")
                self.string_list(tool, "args", path, required=False, what="the command's arguments")
            elif not isinstance(url, str) or not re.match(r"https?://[^/\s]+", url):
                raise DefinitionError(
                    _child(path, "url"),
                    "an mcp tool needs the server's 'url' (http:// or https://), or a stdio 'command' (with 'args')",
                )
            name = tool.get("name")
            if name is not None and (not isinstance(name, str) or not re.fullmatch(r"[A-Za-z0-9_-]{1,40}", name)):
                raise DefinitionError(
                    _child(path, "name"), "an mcp tool's 'name' (its prefix) must match [A-Za-z0-9_-]{1,40}"
                )
            self.string_list(tool, "allowed_tools", path, required=False, what="the MCP tools the agent may call")
            self.number(tool, "timeout_ms", path, integer=True, minimum=1)
        else:
            shown = repr(tool_type) if isinstance(tool_type, str) else _type_name(tool_type)
            raise DefinitionError(
                _child(path, "type"), f"unknown tool type {shown} (expected 'action', 'workflow' or 'mcp')"
            )

    def approval(self, props: dict[str, object], path: str) -> None:
        comment = self.require(props, "comment", path, "what the reviewer must look at")
        if not isinstance(comment, str):
            raise DefinitionError(_child(path, "comment"), f"'comment' must be a string, got {_type_name(comment)}")
        payload = props.get("request_payload")
        if payload is not None and not isinstance(payload, dict):
            raise DefinitionError(
                _child(path, "request_payload"),
                f"'request_payload' must be an object, got {_type_name(payload)}",
            )
        _scan(props, path)

    def form(self, props: dict[str, object], path: str) -> None:
        self.string_list(props, "expected_keys", path, required=True, what="the fields the form collects")
        self.number(props, "ttl_seconds", path, above=0)
        intervals = props.get("reminder_intervals")
        if intervals is not None:
            where = _child(path, "reminder_intervals")
            if not isinstance(intervals, list):
                raise DefinitionError(
                    where, f"'reminder_intervals' must be a list of seconds, got {_type_name(intervals)}"
                )
            for index, item in enumerate(intervals):
                if not _is_number(item) or not isinstance(item, int | float) or item <= 0:
                    raise DefinitionError(f"{where}[{index}]", "reminder intervals must be positive numbers of seconds")
        _scan(props, path)

    def custom_table(self, props: dict[str, object], path: str) -> None:
        _check_keys(props, CUSTOM_TABLE_PROPERTIES, path, "custom-table property")
        table = self.require(props, "table", path, "the custom table name")
        if not isinstance(table, str) or not table.strip():
            raise DefinitionError(_child(path, "table"), "'table' must be a non-empty string")
        if not _is_reference(table) and "{{" not in table and not custom_tables.NAME.fullmatch(table):
            raise DefinitionError(
                _child(path, "table"), f"'table' {custom_tables.NAME_RULE} (a custom table name), got {_short(table)!r}"
            )
        operation = self.require(props, "operation", path, "one of read, write, update, upsert")
        self.enum(props, "operation", path, CUSTOM_TABLE_OPERATIONS)
        keys = props.get("keys")
        values = props.get("values")
        if keys is not None:
            self.string_list(props, "keys", path, required=False, what="the key columns")
        if values is not None and not isinstance(values, list):
            raise DefinitionError(
                _child(path, "values"), f"'values' must be a list (one per key), got {_type_name(values)}"
            )
        if keys is None and values is not None:
            raise DefinitionError(_child(path, "keys"), "'values' needs matching 'keys'")
        if keys is not None and values is None:
            raise DefinitionError(_child(path, "values"), "'keys' needs matching 'values'")
        if isinstance(keys, list) and isinstance(values, list) and len(keys) != len(values):
            raise DefinitionError(
                _child(path, "values"),
                f"'keys' and 'values' must have the same length ({len(keys)} != {len(values)})",
            )
        if isinstance(keys, list):
            for index, key in enumerate(keys):
                if isinstance(key, str) and not custom_tables.NAME.fullmatch(key):
                    raise DefinitionError(f"{_child(path, 'keys')}[{index}]", f"{key!r} is not a field name")
        fields = props.get("fields")
        if fields is not None and not isinstance(fields, dict):
            raise DefinitionError(_child(path, "fields"), f"'fields' must be an object, got {_type_name(fields)}")
        for name in fields if isinstance(fields, dict) else ():
            where = _child(_child(path, "fields"), name)
            if not custom_tables.NAME.fullmatch(name):
                raise DefinitionError(where, f"{name!r} is not a field name")
            if name in custom_tables.RESERVED:
                raise DefinitionError(where, f"{name!r} is set by the server and cannot be written")
        self.number(props, "limit", path, integer=True, minimum=1, maximum=custom_tables.MAX_READ_ROWS)
        has_keys = isinstance(keys, list) and bool(keys)
        has_fields = isinstance(fields, dict) and bool(fields)
        if operation in ("update", "upsert") and not has_keys:
            raise DefinitionError(
                _child(path, "keys"), f"operation {operation!r} needs 'keys'/'values' to select the row(s)"
            )
        if operation == "update" and not has_fields:
            raise DefinitionError(_child(path, "fields"), "operation 'update' needs non-empty 'fields' to set")
        if operation == "write" and not (has_keys or has_fields):
            raise DefinitionError(path, "operation 'write' needs 'keys'/'values' or 'fields' to insert")
        _scan(props, path)


# --------------------------------------------------------------------------- entry point


def validate_definition(
    definition: object,
    *,
    step_types: Callable[[str], bool] | Collection[str],
    allow_react: bool = False,
) -> None:
    """Structurally validate a workflow ``definition``; raise :class:`DefinitionError` for the first problem.

    ``step_types`` says which non-primitive step types exist (registered action
    names, built-in OAuth tools): a predicate or a collection of names.
    ``allow_react`` enables ``loop`` steps in ``mode: "react"`` (agents).
    """
    root = "definition"
    if not isinstance(definition, dict):
        raise DefinitionError(root, f"the definition must be an object, got {_type_name(definition)}")
    _check_json_tree(definition, root)
    _check_keys(definition, DEFINITION_KEYS, root, "definition")

    is_known: Callable[[str], bool]
    if callable(step_types):
        is_known = step_types
    else:
        names = frozenset([step_types]) if isinstance(step_types, str) else frozenset(step_types)
        is_known = names.__contains__

    actions = definition.get("actions")
    actions_path = _child(root, "actions")
    if actions is None:
        raise DefinitionError(actions_path, "missing required 'actions' (the ordered list of steps)")
    if not isinstance(actions, list):
        raise DefinitionError(actions_path, f"'actions' must be a list of steps, got {_type_name(actions)}")
    condition = definition.get("condition")
    if condition is not None:
        _condition(condition, _child(root, "condition"))
    schedule = definition.get("schedule")
    if schedule is not None:
        _schedule(schedule, _child(root, "schedule"))
    validator = _Validator(is_known, allow_react)
    for index, step in enumerate(actions):
        validator.step(step, f"{actions_path}[{index}]")
