"""The one JSON writer: compact, UTF-8 kept, NaN refused."""

from __future__ import annotations

import math
from datetime import UTC, datetime

import pytest

from server import jsonvalue
from server.domain.generation import parse_answer


def test_dumps_is_compact_keeps_utf8_and_refuses_nan() -> None:
    assert jsonvalue.dumps({"a": [1, 2.5], "name": "Zürich ✓"}) == '{"a":[1,2.5],"name":"Zürich ✓"}'
    for bad in (math.nan, math.inf, -math.inf):
        with pytest.raises(ValueError):
            jsonvalue.dumps({"x": bad})
    with pytest.raises(TypeError):
        jsonvalue.dumps({"at": datetime(2024, 1, 2, tzinfo=UTC)})
    assert (
        jsonvalue.dumps({"at": datetime(2024, 1, 2, tzinfo=UTC)}, default=str) == '{"at":"2024-01-02 00:00:00+00:00"}'
    )
    assert jsonvalue.of([1]).raw == "[1]"


def test_a_draft_holding_nan_is_refused_with_a_reason() -> None:
    draft, problems = parse_answer('{"name": "n", "definition": {"actions": [], "x": NaN}}')
    assert draft is None
    assert problems == ["answer: not valid JSON (NaN is not valid JSON)"]
