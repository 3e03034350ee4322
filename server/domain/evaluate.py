"""Run-time evaluation of workflow values: ``@references``, ``{{ }}`` templates, conditions and org-config secrets.

This module is pure (no I/O) and is called by the interpreter for every step.  It
reuses the parsers of :mod:`server.domain.dsl`, which validated the definition
beforehand; at run time it is therefore lenient about *data* (missing paths,
wrong types) and strict only about things that cannot work (a ``matches`` regex
that does not compile, a malformed condition, an unknown org-config key).

Semantics settled here (spec sections 4.2, 5 and 8; the docs are silent on them):

* The run context is a flat mapping (:func:`new_context`): ``input``, step outputs,
  loop variables, ``__run_id``, ``now``, ``__approved``, ``__comment``...  ``@now``
  reads ``context["now"]`` like any other key.
* A path that does not exist yields :data:`MISSING` from :func:`lookup`; a whole-string
  ``"@path"`` resolves it to ``None`` and a ``{{ path }}`` placeholder to ``""``.
  The segment ``length`` gives the length of a list, string or object (an object's own
  ``"length"`` key wins).  Negative indexes are never allowed.
* Values resolved from ``"@path"`` are *shared* with the context, not copied: treat
  resolved properties as read-only.  The containers built by :func:`resolve`,
  :func:`substitute_secrets` and :func:`redact` are new; their inputs are never mutated.
* Strings that look like references or templates but do not parse (``"@ hello"``,
  an unclosed ``{{``) are left unchanged.
* Conditions: ``equal``/``notEqual`` are strict JSON equality (``1 == 1.0`` but
  ``"1" != 1`` and ``true != 1``); there and in ``in`` a missing operand counts as
  ``null``.  The ordering operators compare numbers only, but a string holding a plain decimal number
  (``"5000.00"``, ``"-3"``, ``"1e3"``, surrounding blanks allowed) is coerced to a number,
  because JSON inputs often carry amounts as strings; any other operand (missing,
  ``null``, booleans, non-numeric strings, arrays, objects) makes them ``False``,
  never an error.  ``in`` needs an array (anything else: ``False``); ``matches`` runs
  ``re.search`` on the value as text (``null``/missing: ``False``) limited to its first
  :data:`MAX_MATCH_TEXT` characters.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import Any, Final

from server.domain.dsl import (
    COMPARISON_OPERATORS,
    MAX_REGEX_LENGTH,
    PathSegment,
    TemplateField,
    parse_path,
    parse_reference,
    split_template,
)

__all__ = [
    "MAX_MATCH_TEXT",
    "MIN_SECRET_LENGTH",
    "MISSING",
    "ORGCONFIG_REFERENCE",
    "REDACTED",
    "EvaluationError",
    "evaluate_condition",
    "lookup",
    "new_context",
    "redact",
    "resolve",
    "secret_keys",
    "stringify",
    "substitute_secrets",
]

MAX_MATCH_TEXT = 100_000
"""``matches`` searches at most this many characters of its value."""
REDACTED = "****"
"""What :func:`redact` puts in place of a secret value."""
MIN_SECRET_LENGTH = 4
"""Shorter secret values are not redacted (they would blank out ordinary words and numbers)."""
_MAX_NUMERIC_STRING = 100
_MAX_INDEX_DIGITS = 18

ORGCONFIG_REFERENCE: Final[re.Pattern[str]] = re.compile(r"orgconfig:([A-Za-z]+):([A-Za-z0-9_.-]+)")
"""``orgconfig:<prefix>:<name>`` inside any string; the org-config key is ``<prefix>:<name>``."""

_NUMERIC_STRING = re.compile(r"\s*[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?\s*")
_INTEGER_STRING = re.compile(r"\s*[+-]?[0-9]+\s*")
_ORDERINGS: dict[str, Callable[[Any, Any], bool]] = {
    "greaterThan": lambda left, right: bool(left > right),
    "lessThan": lambda left, right: bool(left < right),
    "greaterOrEqual": lambda left, right: bool(left >= right),
    "lessOrEqual": lambda left, right: bool(left <= right),
}


class _Missing:
    """Type of :data:`MISSING`: falsy, equal only to itself."""

    _instance: _Missing | None = None

    def __new__(cls) -> _Missing:
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __bool__(self) -> bool:
        return False

    def __repr__(self) -> str:
        return "MISSING"

    def __copy__(self) -> _Missing:
        return self

    def __deepcopy__(self, memo: object) -> _Missing:
        return self


MISSING: Final[Any] = _Missing()
"""What :func:`lookup` returns for a path that does not exist (``None`` is a value: JSON ``null``)."""


class EvaluationError(ValueError):
    """Evaluating a value or condition failed at run time; the step (or the run) fails with it.

    ``path`` locates the offending value (e.g. ``definition.actions[2].filter.condition.matches[1]``).
    """

    def __init__(self, path: str, message: str) -> None:
        super().__init__(path, message)
        self.path = path
        self.message = message

    def __str__(self) -> str:
        return f"{self.path}: {self.message}" if self.path else self.message


# --------------------------------------------------------------------------- context


def new_context(input: Any, *, run_id: str, now: str) -> dict[str, Any]:
    """The initial run context: ``@input...``, ``@__run_id`` and ``@now`` (an ISO timestamp)."""
    return {"input": input, "__run_id": run_id, "now": now}


def _is_list(value: object) -> bool:
    return isinstance(value, list | tuple)


def _index(segment: PathSegment) -> int | None:
    """The list index a segment denotes, or None (negative, non-decimal, bool)."""
    if isinstance(segment, bool):
        return None
    if isinstance(segment, int):
        return segment if segment >= 0 else None
    if segment.isascii() and segment.isdigit() and len(segment) <= _MAX_INDEX_DIGITS:
        return int(segment)
    return None


def lookup(context: Mapping[str, Any], path: Sequence[PathSegment]) -> Any:
    """The value at ``path`` (segments as from :func:`~server.domain.dsl.parse_path`), or :data:`MISSING`.

    Objects are indexed by key (an ``int`` segment reads the key ``"0"``...); lists by
    non-negative ``int`` segments or decimal strings; ``length`` on a list, string or
    object gives its length (an object's own ``"length"`` key takes precedence).
    """
    current: Any = context
    for segment in path:
        if isinstance(segment, bool):
            return MISSING
        if isinstance(current, Mapping):
            key = segment if isinstance(segment, str) else str(segment)
            if key in current:
                current = current[key]
            elif key == "length":
                current = len(current)
            else:
                return MISSING
        elif _is_list(current):
            if segment == "length":
                current = len(current)
                continue
            index = _index(segment)
            if index is None or index >= len(current):
                return MISSING
            current = current[index]
        elif isinstance(current, str) and segment == "length":
            current = len(current)
        else:
            return MISSING
    return current


def _lookup_text(text: str, context: Mapping[str, Any]) -> tuple[bool, Any]:
    """``(True, value)`` when ``text`` is a well-formed ``@reference``; ``(False, None)`` otherwise."""
    try:
        path = parse_reference(text)
    except ValueError:
        return False, None
    if path is None:
        return False, None
    return True, lookup(context, path)


# --------------------------------------------------------------------------- resolution


def stringify(value: Any) -> str:
    """How a value appears inside a template: ``null``/missing -> ``""``, booleans -> ``true``/``false``,
    numbers as Python prints them, objects and arrays as compact JSON, strings unchanged."""
    if value is None or value is MISSING:
        return ""
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return str(value)
    if isinstance(value, Mapping) or _is_list(value):
        return json.dumps(_plain(value), separators=(",", ":"), ensure_ascii=False, default=str)
    return str(value)


def _plain(value: Any) -> Any:
    """Mappings/tuples as dicts/lists so json can encode them (identity for plain JSON)."""
    if isinstance(value, dict | list):
        return value
    return _transform(value, lambda text: text)


def _render(parts: list[str | TemplateField], context: Mapping[str, Any], scopes: Sequence[Mapping[str, Any]]) -> str:
    chunks: list[str] = []
    for part in parts:
        if isinstance(part, str):
            chunks.append(part)
            continue
        value: Any = MISSING
        for scope in (*scopes, context):
            value = lookup(scope, part.path)
            if value is not MISSING:
                break
        try:
            chunks.append(stringify(value))
        except (RecursionError, ValueError):
            raise EvaluationError(part.source, "the value is too large or too deeply nested to render") from None
    return "".join(chunks)


def _resolve_string(text: str, context: Mapping[str, Any], scopes: Sequence[Mapping[str, Any]]) -> Any:
    is_reference, value = _lookup_text(text, context)
    if is_reference:
        return None if value is MISSING else value
    if "{{" in text:
        try:
            parts = split_template(text)
        except ValueError:
            return text
        return _render(parts, context, scopes)
    return text


def resolve(value: Any, context: Mapping[str, Any], *, scopes: Sequence[Mapping[str, Any]] = ()) -> Any:
    """Resolve every string inside ``value`` (recursively through objects and arrays; keys untouched).

    * exactly ``"@path"`` -> the raw value at ``path`` in ``context`` (shared, not copied; missing -> ``None``);
    * ``"... {{ path }} ..."`` -> each placeholder replaced by :func:`stringify` of the value found first in
      ``scopes`` (in order, e.g. the step's resolved properties for an HTTP URL) and then in ``context``;
      text around placeholders (``"$"`` in ``"${{input.amount}}"``) is kept literally;
    * any other string, and every non-string, unchanged.

    Returns new containers; ``value`` is never mutated.
    """
    return _transform(value, lambda text: _resolve_string(text, context, scopes))


def _transform(value: Any, on_string: Callable[[str], Any], on_key: Callable[[str], str] | None = None) -> Any:
    """A copy of ``value`` with ``on_string`` applied to every string (and ``on_key`` to every object key).

    Iterative, so data nested as deeply as JSON parsing allows cannot exhaust the stack.  The result of
    ``on_string`` is not walked again.  Mappings become dicts and tuples lists.
    """
    if isinstance(value, str):
        return on_string(value)
    if not (isinstance(value, Mapping) or _is_list(value)):
        return value
    root: dict[Any, Any] | list[Any] = {} if isinstance(value, Mapping) else []
    stack: list[tuple[Any, dict[Any, Any] | list[Any]]] = [(value, root)]
    while stack:
        source, target = stack.pop()
        items: Iterable[tuple[Any, Any]] = source.items() if isinstance(source, Mapping) else enumerate(source)
        for key, item in items:
            if isinstance(item, str):
                new: Any = on_string(item)
            elif isinstance(item, Mapping):
                new = {}
                stack.append((item, new))
            elif _is_list(item):
                new = []
                stack.append((item, new))
            else:
                new = item
            if isinstance(target, dict):
                target[on_key(key) if on_key is not None and isinstance(key, str) else key] = new
            else:
                target.append(new)
    return root


def _strings(value: Any) -> Iterator[str]:
    """Every string value (not key) inside ``value``, iteratively."""
    stack: list[Any] = [value]
    while stack:
        current = stack.pop()
        if isinstance(current, str):
            yield current
        elif isinstance(current, Mapping):
            stack.extend(current.values())
        elif _is_list(current):
            stack.extend(current)


# --------------------------------------------------------------------------- conditions


def _number(value: Any) -> int | float | None:
    """A number for the ordering operators: JSON numbers and plain decimal strings; None for anything else."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, str) and len(value) <= _MAX_NUMERIC_STRING and _NUMERIC_STRING.fullmatch(value):
        if _INTEGER_STRING.fullmatch(value):
            return int(value)
        number = float(value)
        return number if math.isfinite(number) else None
    return None


def _strict_equal(left: Any, right: Any) -> bool:
    """JSON equality: numbers by value (``1 == 1.0``), no cross-type coercion, missing == ``null``."""
    stack: list[tuple[Any, Any]] = [(left, right)]
    while stack:
        a, b = stack.pop()
        a = None if a is MISSING else a
        b = None if b is MISSING else b
        if isinstance(a, bool) or isinstance(b, bool):
            if not (isinstance(a, bool) and isinstance(b, bool) and a == b):
                return False
        elif isinstance(a, int | float) or isinstance(b, int | float):
            if not (isinstance(a, int | float) and isinstance(b, int | float) and a == b):
                return False
        elif isinstance(a, Mapping) or isinstance(b, Mapping):
            if not (isinstance(a, Mapping) and isinstance(b, Mapping)) or a.keys() != b.keys():
                return False
            stack.extend((a[key], b[key]) for key in a)
        elif isinstance(a, list | tuple) or isinstance(b, list | tuple):
            if not (isinstance(a, list | tuple) and isinstance(b, list | tuple)) or len(a) != len(b):
                return False
            stack.extend(zip(a, b, strict=True))
        elif not (type(a) is type(b) and a == b):
            return False
    return True


def _length(value: Any) -> int:
    if isinstance(value, str | Mapping) or _is_list(value):
        return len(value)
    return 0


def _operand(operand: Any, context: Mapping[str, Any], path: str) -> Any:
    """The value of a condition operand (may be :data:`MISSING`)."""
    if isinstance(operand, str):
        is_reference, value = _lookup_text(operand, context)
        if is_reference:
            return value
        return _resolve_string(operand, context, ())
    if isinstance(operand, Mapping):
        if set(operand) != {"length"}:
            keys = ", ".join(repr(key) for key in operand) or "none"
            raise EvaluationError(path, f'an object operand must be {{"length": <operand>}}, got keys {keys}')
        return _length(_operand(operand["length"], context, f"{path}.length"))
    if _is_list(operand):
        return [
            resolve(item, context) if isinstance(item, Mapping) else _operand(item, context, f"{path}[{index}]")
            for index, item in enumerate(operand)
        ]
    return operand


def _pair(argument: Any, path: str, operator: str, shape: str) -> tuple[Any, Any]:
    if not _is_list(argument) or len(argument) != 2:
        raise EvaluationError(path, f"{operator!r} takes a list of 2 operands {shape}")
    return argument[0], argument[1]


def _matches(argument: Any, context: Mapping[str, Any], path: str) -> bool:
    value_operand, pattern_operand = _pair(argument, path, "matches", "[value, regex]")
    value = _operand(value_operand, context, f"{path}[0]")
    pattern_path = f"{path}[1]"
    if isinstance(pattern_operand, str):
        is_reference, pattern = _lookup_text(pattern_operand, context)
        if not is_reference:
            pattern = pattern_operand
    else:
        pattern = pattern_operand
    if value is None or value is MISSING or pattern is None or pattern is MISSING:
        return False
    if not isinstance(pattern, str):
        raise EvaluationError(pattern_path, "the regex of 'matches' must be a string")
    if len(pattern) > MAX_REGEX_LENGTH:
        raise EvaluationError(
            pattern_path, f"the regex of 'matches' is too long: at most {MAX_REGEX_LENGTH} characters"
        )
    try:
        compiled = re.compile(pattern)
    except (re.error, RecursionError, OverflowError, ValueError) as exc:
        reason = exc if isinstance(exc, re.error) else "too complex (nested too deeply or too large)"
        shown = pattern if len(pattern) <= 80 else pattern[:77] + "..."
        raise EvaluationError(pattern_path, f"invalid regular expression {shown!r}: {reason}") from None
    try:
        text = stringify(value)
    except (RecursionError, ValueError):
        raise EvaluationError(f"{path}[0]", "the value is too large or too deeply nested to match") from None
    return compiled.search(text[:MAX_MATCH_TEXT]) is not None


def evaluate_condition(condition: Mapping[str, Any], context: Mapping[str, Any], path: str = "condition") -> bool:
    """Evaluate a condition (spec 4.2) against the run context.

    Operators: ``equal notEqual greaterThan lessThan greaterOrEqual lessOrEqual hasKey in matches and or
    not``; operands are literals, ``"@references"`` and ``{"length": <operand>}`` (see the module notes for
    the exact semantics).  Data problems (missing paths, wrong types) make a comparison ``False``; a
    malformed condition or a ``matches`` regex that cannot compile raises :class:`EvaluationError`
    naming ``path``.  ``and``/``or`` short-circuit.
    """
    if not isinstance(condition, Mapping) or len(condition) != 1:
        raise EvaluationError(path, "a condition must be an object with exactly one operator key")
    ((operator, argument),) = condition.items()
    here = f"{path}.{operator}"
    if operator in COMPARISON_OPERATORS:
        left_operand, right_operand = _pair(argument, here, operator, "[left, right]")
        left = _operand(left_operand, context, f"{here}[0]")
        right = _operand(right_operand, context, f"{here}[1]")
        if operator == "equal":
            return _strict_equal(left, right)
        if operator == "notEqual":
            return not _strict_equal(left, right)
        left_number, right_number = _number(left), _number(right)
        if left_number is None or right_number is None:
            return False
        return _ORDERINGS[operator](left_number, right_number)
    if operator == "hasKey":
        if not isinstance(argument, str):
            raise EvaluationError(here, "'hasKey' takes a path string")
        try:
            key_path = parse_path(argument[1:] if argument.startswith("@") else argument)
        except ValueError as exc:
            raise EvaluationError(here, f"malformed path {argument[:80]!r}: {exc}") from None
        return lookup(context, key_path) is not MISSING
    if operator == "in":
        value_operand, collection_operand = _pair(argument, here, operator, "[value, array]")
        value = _operand(value_operand, context, f"{here}[0]")
        collection = _operand(collection_operand, context, f"{here}[1]")
        if not _is_list(collection):
            return False
        return any(_strict_equal(value, item) for item in collection)
    if operator == "matches":
        return _matches(argument, context, here)
    if operator in ("and", "or"):
        if not _is_list(argument):
            raise EvaluationError(here, f"{operator!r} takes a list of conditions")
        results = (evaluate_condition(item, context, f"{here}[{index}]") for index, item in enumerate(argument))
        return all(results) if operator == "and" else any(results)
    if operator == "not":
        return not evaluate_condition(argument, context, here)
    raise EvaluationError(path, f"unknown operator {operator!r}")


# --------------------------------------------------------------------------- org-config secrets


def secret_keys(value: Any) -> set[str]:
    """Every org-config key (``"api:openai_key"``) referenced by an ``orgconfig:`` token in a string of ``value``."""
    keys: set[str] = set()
    for text in _strings(value):
        if "orgconfig:" in text:
            keys.update(f"{match[1]}:{match[2]}" for match in ORGCONFIG_REFERENCE.finditer(text))
    return keys


def substitute_secrets(value: Any, secrets: Mapping[str, str], *, path: str = "") -> Any:
    """A copy of ``value`` with each ``orgconfig:<prefix>:<name>`` token in its strings replaced by
    ``secrets["<prefix>:<name>"]`` (single pass: a secret's text is never substituted again).

    Raises :class:`EvaluationError` (at ``path``) for a key that is not in ``secrets``.  Call it last,
    right before execution, and never store its result: store :func:`redact`-ed values instead.
    """

    def replace(match: re.Match[str]) -> str:
        key = f"{match[1]}:{match[2]}"
        if key not in secrets:
            raise EvaluationError(path, f"org config key {key!r} is not set; add it with POST /org-config")
        return secrets[key]

    def on_string(text: str) -> str:
        return ORGCONFIG_REFERENCE.sub(replace, text) if "orgconfig:" in text else text

    return _transform(value, on_string)


def redact(value: Any, secret_values: Iterable[str]) -> Any:
    """A copy of ``value`` where every occurrence of a secret value (of at least 4 characters) inside a
    string -- object keys included -- is replaced by ``"****"``.

    Overlapping or adjacent occurrences (of one secret or of several) become a single ``"****"``, so no
    fragment of any secret survives.
    """
    distinct = sorted(
        {secret for secret in secret_values if isinstance(secret, str) and len(secret) >= MIN_SECRET_LENGTH},
        key=len,
        reverse=True,
    )
    if not distinct:
        return _transform(value, lambda text: text)
    anything = re.compile("|".join(re.escape(secret) for secret in distinct))

    def on_string(text: str) -> str:
        if anything.search(text) is None:
            return text
        spans: list[tuple[int, int]] = []
        for secret in distinct:
            start = text.find(secret)
            while start >= 0:
                spans.append((start, start + len(secret)))
                start = text.find(secret, start + 1)
        spans.sort()
        chunks: list[str] = []
        position = 0
        run_start, run_end = spans[0]
        for start, end in spans[1:]:
            if start <= run_end:
                run_end = max(run_end, end)
                continue
            chunks += [text[position:run_start], REDACTED]
            position = run_end
            run_start, run_end = start, end
        chunks += [text[position:run_start], REDACTED, text[run_end:]]
        return "".join(chunks)

    return _transform(value, on_string, on_string)
