"""Free-form JSON values (`hyphae.api.v1.Json`) on the server side: checked strictly, stored as the exact text."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from hyphae.api.v1 import json_pb2

from server.errors import InvalidArgument


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def loads(text: str) -> Any:
    """Strict JSON: NaN and Infinity (which Python's json accepts) are refused, as every other JSON reader does."""
    return json.loads(text, parse_constant=_reject_constant)


def parse(value: json_pb2.Json, field: str) -> Any:
    """The parsed value, for checks and domain logic; the exact text stays in `value.raw` for storage.

    InvalidArgument naming `field` if it is not strict JSON."""
    try:
        return loads(value.raw)
    except (ValueError, RecursionError) as exc:
        raise InvalidArgument(f"is not valid JSON ({exc})", field=field) from None


def dumps(value: Any, *, default: Callable[[Any], Any] | None = None) -> str:
    """Compact strict JSON text, as stored and sent everywhere: no spaces, UTF-8 kept (no \\u escapes), and NaN or
    Infinity refused (ValueError) rather than written as text no other JSON reader accepts. `default` as json.dumps
    (e.g. str, for values such as datetimes)."""
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False, allow_nan=False, default=default)


def of(value: Any) -> json_pb2.Json:
    return json_pb2.Json(raw=dumps(value))
