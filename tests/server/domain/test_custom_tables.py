"""Values of custom-table rows checked and coerced by declared type; every error names the field."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

import pytest

from server.domain.custom_tables import Field, Schema, coerce
from server.errors import InvalidArgument


@pytest.mark.parametrize(
    ("kind", "value", "expected"),
    [
        ("text", "INV-001", "INV-001"),
        ("integer", 42, 42),
        ("integer", "-5", -5),
        ("integer", 7.0, 7),
        ("integer", Decimal("12.000"), 12),
        ("numeric", "1500.50", Decimal("1500.50")),
        ("numeric", Decimal("0.02"), Decimal("0.02")),
        ("numeric", 0.1, Decimal("0.1")),
        ("numeric", 10, Decimal(10)),
        ("boolean", False, False),
        ("timestamptz", "2025-01-15T10:30:00Z", datetime(2025, 1, 15, 10, 30, tzinfo=UTC)),
        (
            "timestamptz",
            "2025-01-15T10:30:00+02:00",
            datetime(2025, 1, 15, 10, 30, tzinfo=timezone(timedelta(hours=2))),
        ),
        ("timestamptz", "2025-01-15", datetime(2025, 1, 15, tzinfo=UTC)),
        ("text", None, None),
    ],
)
def test_values_are_coerced_by_type(kind: str, value: Any, expected: Any) -> None:
    assert coerce(Field("f", kind), value, "f") == expected


@pytest.mark.parametrize(
    ("field", "value", "words"),
    [
        (Field("f", "integer"), True, "whole number"),
        (Field("f", "integer"), "4.5", "whole number"),
        (Field("f", "integer"), 2**63, "64-bit"),
        (Field("f", "numeric"), "NaN", "number"),
        (Field("f", "numeric"), "Infinity", "number"),
        (Field("f", "numeric"), True, "number"),
        (Field("f", "boolean"), 1, "true or false"),
        (Field("f", "boolean"), "false", "true or false"),
        (Field("f", "text"), 5, "string"),
        (Field("f", "text", max_length=3), "abcd", "maxLength 3"),
        (Field("f", "timestamptz"), 1700000000, "ISO 8601"),
        (Field("f", "timestamptz"), "next tuesday", "ISO 8601"),
        (Field("f", "text", required=True), None, "required"),
    ],
)
def test_bad_values_name_the_field(field: Field, value: Any, words: str) -> None:
    with pytest.raises(InvalidArgument) as raised:
        coerce(field, value, "rows[2].f")
    assert raised.value.message.startswith("rows[2].f: ") and words in raised.value.message


def test_keys_and_values_name_their_position() -> None:
    schema = Schema([Field("run_id", "text"), Field("amount", "numeric")])
    assert schema.keys_values(["run_id", "amount"], ["r", "1.5"], "properties") == {
        "run_id": "r",
        "amount": Decimal("1.5"),
    }
    with pytest.raises(InvalidArgument, match=r"^properties\.keys\[1\]: "):
        schema.keys_values(["run_id", "colour"], ["r", 1], "properties")
    with pytest.raises(InvalidArgument, match=r"^properties\.values\[1\]: "):
        schema.keys_values(["run_id", "amount"], ["r", "many"], "properties")
    with pytest.raises(InvalidArgument, match=r"^properties\.values: "):
        schema.keys_values(["run_id"], [], "properties")
