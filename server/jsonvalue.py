"""Free-form JSON values (`hyphae.api.v1.Json`) on the server side: parsed exactly, stored as text."""

from __future__ import annotations

import json
from typing import Any

from hyphae.api.v1 import json_pb2

from server.errors import InvalidArgument


def parse(value: json_pb2.Json, field: str) -> Any:
    """The parsed value, for checks and domain logic; the exact text stays in `value.raw` for storage.

    InvalidArgument naming `field` if it is not JSON."""
    try:
        return json.loads(value.raw)
    except (ValueError, RecursionError) as exc:
        raise InvalidArgument(f"is not valid JSON ({exc})", field=field) from None


def of(value: Any) -> json_pb2.Json:
    return json_pb2.Json(raw=json.dumps(value, separators=(",", ":"), ensure_ascii=False))
