"""Free-form JSON values (`hyphae.api.v1.Json`) on the server side: checked strictly, stored as the exact text."""

from __future__ import annotations

import json
from collections.abc import Callable
from decimal import Decimal
from typing import Any

from hyphae.api.v1 import json_pb2

from server.errors import InvalidArgument


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


# Built once: json.loads with options builds a new decoder per call (bulk inserts parse 100,000 rows per call).
_STRICT = json.JSONDecoder(parse_constant=_reject_constant)
_STRICT_DECIMALS = json.JSONDecoder(parse_float=Decimal, parse_constant=_reject_constant)


def loads(text: str, *, decimals: bool = False) -> Any:
    """Strict JSON: NaN and Infinity (which Python's json accepts) are refused, as every other JSON reader does.

    `decimals`: numbers with a fraction or exponent become exact `Decimal`s instead of floats (numeric columns
    take them as written)."""
    return (_STRICT_DECIMALS if decimals else _STRICT).decode(text)


def parse(value: json_pb2.Json, field: str, *, decimals: bool = False) -> Any:
    """The parsed value, for checks and domain logic; the exact text stays in `value.raw` for storage.

    InvalidArgument naming `field` if it is not strict JSON; `decimals` as in `loads`."""
    try:
        return (_STRICT_DECIMALS if decimals else _STRICT).decode(value.raw)
    except (ValueError, RecursionError) as exc:
        raise InvalidArgument(f"is not valid JSON ({exc})", field=field) from None


def dumps(value: Any, *, default: Callable[[Any], Any] | None = None) -> str:
    """Compact strict JSON text, as stored and sent everywhere: no spaces, UTF-8 kept (no \\u escapes), and NaN or
    Infinity refused (ValueError) rather than written as text no other JSON reader accepts. `default` as json.dumps
    (e.g. str, for values such as datetimes)."""
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False, allow_nan=False, default=default)


def of(value: Any) -> json_pb2.Json:
    return json_pb2.Json(raw=dumps(value))
