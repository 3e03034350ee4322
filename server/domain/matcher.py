"""The MATCHER primitive (spec section 6.1, 7.4, T1, T4, T8) as a pure function.

``match(left, right, config)`` pairs records of two datasets one-to-one and returns the matched pairs
``{"a": left_record, "b": right_record}`` plus the unmatched records of each side (the original objects, unchanged).
Resolving ``@paths`` / ``doc:`` inputs and writing the outputs into the run context is the interpreter's job;
:func:`config_from_properties` and :func:`output_keys` read a step's *resolved* properties.

Semantics settled here (the docs are silent or contradictory on them):

* **Exact keys** (``matchOn``): composite, all fields must be equal. Numbers compare by value (``10 == 10.0``),
  strings compare after trimming surrounding whitespace and case-sensitively, a number never equals a string and
  booleans are not numbers. A missing field, ``null`` or a blank string never matches anything.
* **Field lookup**: a top-level key first (even one containing a dot), then a dotted path (``customer.id``,
  ``lines.0.sku``); on a pair record ``{"a": ..., "b": ...}`` produced by a previous matcher a field not found on the
  pair itself is looked up in ``a``, then in ``b`` (T8 chained matchers). ``a.claim_id`` addresses a side explicitly.
* **tolerance** is *relative* (T1 "5% amount tolerance", §7.4 "2% tolerance"):
  ``|l - r| <= tolerance * max(|l|, |r|)`` on the ``amountKey`` field (default ``amount``); ``0`` means exact.
  Amounts may be numbers or numeric strings (``"4480.00"``, ``"1,234.50"``); they are compared as decimals.
* **dateWindowDays**: ``|date_l - date_r| <= N`` days on the ``dateKey`` field (default ``date``); ``0`` means the
  same calendar date. Values are ISO-8601 dates or date-times; a date-time counts as the calendar date written in it
  (no time-zone conversion).
* **fuzzyThreshold** (0-100) on ``descriptionKey`` (default ``description`` when only the threshold is given). The
  score is a *token-sort ratio*: both texts are case-folded, split into alphanumeric tokens, the tokens sorted and
  re-joined, and ``SequenceMatcher(None, right, left, autojunk=False).ratio() * 100`` is taken (texts are cut at
  500 characters; identical texts score 100, an empty text against a non-empty one 0).
* For the amount, date and fuzzy criteria, a field missing on *both* records does not constrain the pair (so a
  dataset without, say, a ``date`` field is matched on its other criteria, as in T8); missing on one side only, or
  not parseable, means no match.
* **One-to-one, greedy, in left order**: each left record takes the best still-unused right record with the same
  exact keys that passes every configured criterion. "Best" = smallest absolute amount difference, then smallest
  date distance, then highest fuzzy score (only configured criteria count); remaining ties go to the earliest right
  record. Unmatched outputs keep their input order.
* ``rules`` (older docs: custom rules for a condition evaluator) is not evaluated.

Work is bounded: more than ``max_records`` records on either side, or more than ``max_comparisons`` candidate
evaluations (many records sharing the same exact keys; with a fuzzy criterion each evaluation counts 8), raise
:class:`MatcherError`. Right records are hashed on their exact keys, so a typical run is O(n + m).
"""

from __future__ import annotations

import difflib
import json
import math
import re
from collections import deque
from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal, InvalidOperation
from typing import Any, Final

__all__ = [
    "DEFAULT_OUTPUT_MATCHED",
    "DEFAULT_OUTPUT_UNMATCHED_LEFT",
    "DEFAULT_OUTPUT_UNMATCHED_RIGHT",
    "MAX_COMPARISONS",
    "MAX_RECORDS",
    "MatchResult",
    "MatcherConfig",
    "MatcherError",
    "config_from_properties",
    "fuzzy_score",
    "match",
    "output_keys",
]

DEFAULT_OUTPUT_MATCHED: Final = "matched"
DEFAULT_OUTPUT_UNMATCHED_LEFT: Final = "unmatchedLeft"
DEFAULT_OUTPUT_UNMATCHED_RIGHT: Final = "unmatchedRight"
DEFAULT_AMOUNT_KEY: Final = "amount"
DEFAULT_DATE_KEY: Final = "date"
DEFAULT_DESCRIPTION_KEY: Final = "description"

MAX_RECORDS: Final = 100_000
MAX_COMPARISONS: Final = 2_000_000
MAX_FUZZY_CHARS: Final = 500
_FUZZY_COST: Final = 8  # a candidate evaluation with fuzzy text counts this many times against max_comparisons
_MAX_AMOUNT_EXPONENT: Final = 100
_MAX_DATE_CHARS: Final = 64
_MAX_PAIR_DEPTH: Final = 16  # pairs of pairs: how many chained matchers the {a, b} fallback looks through

_PLAIN_NUMBER = re.compile(r"[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?")
_GROUPED_NUMBER = re.compile(r"[+-]?\d{1,3}(?:,\d{3})+(?:\.\d+)?")
_NON_ALNUM = re.compile(r"[\W_]+")


class MatcherError(ValueError):
    """The matcher's inputs or properties are unusable. ``path`` names the property (``left[3]``, ``matchOn``)."""

    def __init__(self, path: str, message: str) -> None:
        super().__init__(path, message)
        self.path = path
        self.message = message

    def __str__(self) -> str:
        return f"{self.path}: {self.message}"


@dataclass(frozen=True)
class MatcherConfig:
    match_on: tuple[str, ...]
    tolerance: float | None = None
    amount_key: str = DEFAULT_AMOUNT_KEY
    date_window_days: int | None = None
    date_key: str = DEFAULT_DATE_KEY
    fuzzy_threshold: float | None = None
    description_key: str | None = None


@dataclass(frozen=True)
class MatchResult:
    matched: list[dict[str, Any]]
    unmatched_left: list[dict[str, Any]]
    unmatched_right: list[dict[str, Any]]


# --------------------------------------------------------------------------- properties


def _type_name(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, Mapping):
        return "an object"
    if isinstance(value, list | tuple):
        return "an array"
    return type(value).__name__


def _number(properties: Mapping[str, Any], key: str, *, maximum: float | None = None) -> float | None:
    value = properties.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise MatcherError(key, f"{key} must be a number, got {_type_name(value)}")
    if value < 0 or (maximum is not None and value > maximum):
        bound = f"between 0 and {maximum:g}" if maximum is not None else ">= 0"
        raise MatcherError(key, f"{key} must be a number {bound}, got {value!r}")
    return float(value)


def _key_name(properties: Mapping[str, Any], key: str) -> str | None:
    value = properties.get(key)
    if value is None:
        return None
    if not isinstance(value, str) or not value.strip():
        raise MatcherError(key, f"{key} must be a non-empty string, got {_type_name(value)}")
    return value.strip()


def config_from_properties(properties: Mapping[str, Any]) -> MatcherConfig:
    """Read ``matchOn``, ``tolerance``, ``amountKey``, ``dateWindowDays``, ``dateKey``, ``fuzzyThreshold`` and
    ``descriptionKey`` from a matcher step's resolved properties (``null`` = absent; other keys are ignored)."""
    if not isinstance(properties, Mapping):
        raise MatcherError("properties", f"properties must be an object, got {_type_name(properties)}")
    raw = properties.get("matchOn")
    if not isinstance(raw, list | tuple) or not raw:
        raise MatcherError("matchOn", f"matchOn must be a non-empty list of field names, got {_type_name(raw)}")
    fields: list[str] = []
    for index, field in enumerate(raw):
        if not isinstance(field, str) or not field.strip():
            raise MatcherError(
                f"matchOn[{index}]", f"matchOn entries must be non-empty strings, got {_type_name(field)}"
            )
        fields.append(field.strip())

    window = _number(properties, "dateWindowDays")
    if window is not None and not window.is_integer():
        raise MatcherError("dateWindowDays", f"dateWindowDays must be a whole number of days, got {window!r}")
    threshold = _number(properties, "fuzzyThreshold", maximum=100)
    description_key = _key_name(properties, "descriptionKey")
    if threshold is not None and description_key is None:
        description_key = DEFAULT_DESCRIPTION_KEY
    return MatcherConfig(
        match_on=tuple(fields),
        tolerance=_number(properties, "tolerance"),
        amount_key=_key_name(properties, "amountKey") or DEFAULT_AMOUNT_KEY,
        date_window_days=None if window is None else int(window),
        date_key=_key_name(properties, "dateKey") or DEFAULT_DATE_KEY,
        fuzzy_threshold=threshold,
        description_key=description_key,
    )


def output_keys(properties: Mapping[str, Any]) -> tuple[str, str, str]:
    """The context keys for (matched, unmatched left, unmatched right); defaults per §6.1."""
    keys: list[str] = []
    for key, default in (
        ("outputMatched", DEFAULT_OUTPUT_MATCHED),
        ("outputUnmatchedLeft", DEFAULT_OUTPUT_UNMATCHED_LEFT),
        ("outputUnmatchedRight", DEFAULT_OUTPUT_UNMATCHED_RIGHT),
    ):
        value = properties.get(key)
        if value is None:
            keys.append(default)
        elif isinstance(value, str) and value.strip():
            keys.append(value.strip())
        else:
            raise MatcherError(key, f"{key} must be a non-empty string, got {_type_name(value)}")
    return keys[0], keys[1], keys[2]


# --------------------------------------------------------------------------- field access and normalisation


class _Missing:
    """Sentinel: the field is absent (or null / blank)."""


class _Invalid:
    """Sentinel: the field is present but cannot be read as an amount / date."""


MISSING: Final[_Missing] = _Missing()
INVALID: Final[_Invalid] = _Invalid()


def _walk(record: Mapping[str, Any], field: str) -> Any:
    if field in record:
        return record[field]
    if "." in field:
        current: Any = record
        for segment in field.split("."):
            if isinstance(current, Mapping) and segment in current:
                current = current[segment]
            elif isinstance(current, list) and segment.isascii() and segment.isdigit() and int(segment) < len(current):
                current = current[int(segment)]
            else:
                return MISSING
        return current
    return MISSING


def _lookup(record: Mapping[str, Any], field: str, depth: int = 0) -> Any:
    """``record[field]``, a dotted path, or -- on a ``{a, b}`` pair -- the field in ``a`` then ``b``."""
    value = _walk(record, field)
    if value is MISSING and depth < _MAX_PAIR_DEPTH and isinstance(record.get("a"), Mapping) and "b" in record:
        value = _lookup(record["a"], field, depth + 1)
        if value is MISSING and isinstance(record["b"], Mapping):
            value = _lookup(record["b"], field, depth + 1)
    return MISSING if value is None else value


def _key_part(value: Any) -> Hashable | None:
    """Normalised, hashable form of one exact-key value; ``None`` when it can never match."""
    if value is MISSING:
        return None
    if isinstance(value, str):
        text = value.strip()
        return ("s", text) if text else None
    if isinstance(value, bool):
        return ("b", value)
    if isinstance(value, int | float):
        # int and float hash/compare by value, so 10 and 10.0 land in the same bucket.
        return ("n", value) if not (isinstance(value, float) and math.isnan(value)) else None
    return ("j", json.dumps(value, sort_keys=True, separators=(",", ":"), default=str))


def _exact_key(record: Mapping[str, Any], fields: tuple[str, ...]) -> tuple[Hashable, ...] | None:
    parts: list[Hashable] = []
    for field in fields:
        part = _key_part(_lookup(record, field))
        if part is None:
            return None
        parts.append(part)
    return tuple(parts)


def _decimal(value: float) -> Decimal:
    return Decimal(repr(value)) if isinstance(value, float) else Decimal(value)


def _amount(value: Any) -> Decimal | _Missing | _Invalid:
    if isinstance(value, _Missing):
        return value
    if isinstance(value, bool):
        return INVALID
    if isinstance(value, int | float):
        if isinstance(value, float) and not math.isfinite(value):
            return INVALID
        number = _decimal(value)
    elif isinstance(value, str):
        text = value.strip()
        if not text:
            return MISSING
        if _GROUPED_NUMBER.fullmatch(text):
            text = text.replace(",", "")
        elif not _PLAIN_NUMBER.fullmatch(text):
            return INVALID
        try:
            number = Decimal(text)
        except InvalidOperation:  # pragma: no cover - the regexes only admit valid decimals
            return INVALID
    else:
        return INVALID
    if number and abs(number.adjusted()) > _MAX_AMOUNT_EXPONENT:
        return INVALID
    return number


def _date(value: Any) -> date | _Missing | _Invalid:
    if isinstance(value, _Missing):
        return value
    if not isinstance(value, str):
        return INVALID
    text = value.strip()
    if not text:
        return MISSING
    if len(text) > _MAX_DATE_CHARS:
        return INVALID
    try:
        if len(text) <= 10:
            return date.fromisoformat(text)
        return datetime.fromisoformat(text).date()
    except ValueError:
        return INVALID


def _normalise_text(value: Any) -> str | _Missing:
    if isinstance(value, _Missing):
        return value
    text = value if isinstance(value, str) else json.dumps(value, sort_keys=True, default=str)
    tokens = _NON_ALNUM.sub(" ", text[: MAX_FUZZY_CHARS * 2].casefold()).split()
    return " ".join(sorted(tokens))[:MAX_FUZZY_CHARS]


def fuzzy_score(left: str, right: str) -> float:
    """Token-sort similarity 0-100: case-folded alphanumeric tokens, sorted, compared with ``SequenceMatcher``."""
    a, b = _normalise_text(left), _normalise_text(right)
    assert isinstance(a, str) and isinstance(b, str)
    return _ratio(a, b)


def _ratio(left: str, right: str) -> float:
    if left == right:
        return 100.0
    if not left or not right:
        return 0.0
    return difflib.SequenceMatcher(None, right, left, autojunk=False).ratio() * 100.0


# --------------------------------------------------------------------------- matching


@dataclass(frozen=True)
class _Features:
    amount: Decimal | _Missing | _Invalid
    day: date | _Missing | _Invalid
    text: str | _Missing


@dataclass(frozen=True)
class _Criteria:
    use_amount: bool
    use_date: bool
    use_text: bool
    tolerance: Decimal
    window: int
    threshold: float


def _records(value: Sequence[Any], side: str, max_records: int) -> list[Mapping[str, Any]]:
    if isinstance(value, str | bytes | bytearray | Mapping) or not isinstance(value, Sequence):
        raise MatcherError(side, f"{side} must be a list of objects, got {_type_name(value)}")
    if len(value) > max_records:
        raise MatcherError(side, f"{side} has {len(value)} records; the matcher accepts at most {max_records}")
    for index, item in enumerate(value):
        if not isinstance(item, Mapping):
            raise MatcherError(
                f"{side}[{index}]", f"{side} must be a list of objects, item {index} is {_type_name(item)}"
            )
    return list(value)


def _as_dict(record: Mapping[str, Any]) -> dict[str, Any]:
    return record if isinstance(record, dict) else dict(record)


def match(
    left: Sequence[Any],
    right: Sequence[Any],
    config: MatcherConfig,
    *,
    max_records: int = MAX_RECORDS,
    max_comparisons: int = MAX_COMPARISONS,
) -> MatchResult:
    """Pair ``left`` and ``right`` records one-to-one (see the module docstring for the exact rules)."""
    lefts = _records(left, "left", max_records)
    rights = _records(right, "right", max_records)
    if not config.match_on:
        raise MatcherError("matchOn", "matchOn must be a non-empty list of field names")

    rules = _Criteria(
        use_amount=config.tolerance is not None,
        use_date=config.date_window_days is not None,
        use_text=config.fuzzy_threshold is not None,
        tolerance=_decimal(config.tolerance) if config.tolerance is not None else Decimal(0),
        window=config.date_window_days or 0,
        threshold=config.fuzzy_threshold or 0.0,
    )
    use_amount, use_date, use_text = rules.use_amount, rules.use_date, rules.use_text
    text_key = config.description_key or DEFAULT_DESCRIPTION_KEY

    def features(record: Mapping[str, Any]) -> _Features:
        return _Features(
            amount=_amount(_lookup(record, config.amount_key)) if use_amount else MISSING,
            day=_date(_lookup(record, config.date_key)) if use_date else MISSING,
            text=_normalise_text(_lookup(record, text_key)) if use_text else MISSING,
        )

    # Hash index: exact key -> unused right indices, in right order.
    buckets: dict[tuple[Hashable, ...], deque[int]] = {}
    for index, record in enumerate(rights):
        key = _exact_key(record, config.match_on)
        if key is not None:
            buckets.setdefault(key, deque()).append(index)
    secondary = use_amount or use_date or use_text
    right_features: dict[int, _Features] = {}
    if secondary:
        for indices in buckets.values():
            for index in indices:
                right_features[index] = features(rights[index])

    cost = _FUZZY_COST if use_text else 1
    matched: list[dict[str, Any]] = []
    unmatched_left: list[dict[str, Any]] = []
    used: set[int] = set()
    comparisons = 0

    for record in lefts:
        key = _exact_key(record, config.match_on)
        bucket = buckets.get(key) if key is not None else None
        if not bucket:
            unmatched_left.append(_as_dict(record))
            continue
        if not secondary:
            chosen = bucket.popleft()
        else:
            mine = features(record)
            text_matcher = None
            if use_text and isinstance(mine.text, str) and mine.text:
                text_matcher = difflib.SequenceMatcher(None, "", mine.text, autojunk=False)
            best_position = -1
            best_rank: tuple[Decimal, int, float] | None = None
            for position, index in enumerate(bucket):
                comparisons += cost
                if comparisons > max_comparisons:
                    raise MatcherError(
                        "matchOn",
                        f"too many candidate comparisons (more than {max_comparisons}): too many records share "
                        "the same matchOn values; add fields to matchOn",
                    )
                theirs = right_features[index]
                rank = _rank(mine, theirs, rules, text_matcher, best_rank)
                if rank is not None and (best_rank is None or rank < best_rank):
                    best_rank, best_position = rank, position
                    if rank == (Decimal(0), 0, -100.0):
                        break
            if best_position < 0:
                unmatched_left.append(_as_dict(record))
                continue
            chosen = bucket[best_position]
            del bucket[best_position]
        used.add(chosen)
        matched.append({"a": _as_dict(record), "b": _as_dict(rights[chosen])})

    unmatched_right = [_as_dict(record) for index, record in enumerate(rights) if index not in used]
    return MatchResult(matched=matched, unmatched_left=unmatched_left, unmatched_right=unmatched_right)


def _rank(
    mine: _Features,
    theirs: _Features,
    rules: _Criteria,
    text_matcher: difflib.SequenceMatcher[str] | None,
    best: tuple[Decimal, int, float] | None,
) -> tuple[Decimal, int, float] | None:
    """``(amount difference, day distance, -fuzzy score)`` when the pair passes every criterion, else ``None``.

    ``text_matcher`` has the left record's text as its (cached) second sequence.
    """
    amount_diff = Decimal(0)
    if rules.use_amount and not (mine.amount is MISSING and theirs.amount is MISSING):
        if not isinstance(mine.amount, Decimal) or not isinstance(theirs.amount, Decimal):
            return None
        amount_diff = abs(mine.amount - theirs.amount)
        if amount_diff > rules.tolerance * max(abs(mine.amount), abs(theirs.amount)):
            return None
    day_diff = 0
    if rules.use_date and not (mine.day is MISSING and theirs.day is MISSING):
        if not isinstance(mine.day, date) or not isinstance(theirs.day, date):
            return None
        day_diff = abs((mine.day - theirs.day).days)
        if day_diff > rules.window:
            return None
    score = 100.0
    if rules.use_text and not (mine.text is MISSING and theirs.text is MISSING):
        a = mine.text if isinstance(mine.text, str) else ""
        b = theirs.text if isinstance(theirs.text, str) else ""
        if a != b:
            if not a or not b or text_matcher is None:
                return None if rules.threshold > 0 else (amount_diff, day_diff, -0.0)
            text_matcher.set_seq1(b)
            # Cheap upper bounds first: skip the full ratio when it cannot pass or cannot beat the best so far.
            floor = rules.threshold
            if best is not None and (amount_diff, day_diff) == (best[0], best[1]):
                floor = max(floor, -best[2])
            if text_matcher.real_quick_ratio() * 100.0 < floor or text_matcher.quick_ratio() * 100.0 < floor:
                return None
            score = text_matcher.ratio() * 100.0
        if score < rules.threshold:
            return None
    return (amount_diff, day_diff, -score)
