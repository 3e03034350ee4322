"""Values of custom-table rows checked and coerced by declared type; every error names the field."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

import pytest

from server.domain.custom_tables import CopyEncoder, Field, Schema, check_name, coerce, copy_fields, copy_text
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


ENCODED = Schema(
    [
        Field("name", "text", required=True, max_length=12),
        Field("amount", "numeric"),
        Field("attempts", "integer"),
        Field("matched", "boolean"),
        Field("at", "timestamptz"),
    ]
)


@pytest.mark.parametrize(
    "row",
    [
        {"name": "plain", "amount": Decimal("1.50"), "attempts": 3, "matched": True, "at": "2026-01-01T00:00:00Z"},
        {"name": "t\tn\nl\r\\", "amount": 7, "attempts": None, "matched": False},
        {"name": "\\N", "amount": "0.10", "attempts": "12", "at": "2026-01-01 10:00:00"},
        {"name": "🍄", "amount": 0.5, "attempts": 7.0, "matched": None, "at": "2026-01-01T10:00:00.5+02:00"},
        {"name": "x", "attempts": -(2**63)},
    ],
)
def test_copy_lines_render_what_the_reference_coercion_renders(row: dict[str, Any]) -> None:
    coerced = ENCODED.row(row, "rows[0]")
    expected = "\t".join(copy_text(coerced.get(f.name)) for f in ENCODED.fields)
    assert CopyEncoder(ENCODED).line(row, "rows[0]") == expected
    assert "\n" not in expected and "\r" not in expected


def test_copy_text_escapes_the_copy_specials_and_spells_null() -> None:
    assert copy_text("a\tb\nc\rd\\e") == "a\\tb\\nc\\rd\\\\e"
    assert copy_text("\\N") == "\\\\N"
    assert copy_text(None) == "\\N"
    assert copy_text(True) == "t" and copy_text(Decimal("1E+2")) == "1E+2"


@pytest.mark.parametrize(
    "row",
    [
        {"amount": 1},
        {"name": None},
        {"name": "x" * 13},
        {"name": "nul\x00"},
        {"name": "lone \ud800"},
        {"name": "x", "amount": "lots"},
        {"name": "x", "attempts": 2**63},
        {"name": "x", "matched": "true"},
        {"name": "x", "at": "yesterday"},
        {"name": "x", "colour": "red"},
        {"name": "x", "id": 1},
        ["not", "an", "object"],
    ],
)
def test_copy_lines_refuse_what_a_single_insert_refuses_with_the_same_message(row: Any) -> None:
    with pytest.raises(InvalidArgument) as reference:
        ENCODED.row(row, "rows[3517]")
    with pytest.raises(InvalidArgument) as encoded:
        CopyEncoder(ENCODED).line(row, "rows[3517]")
    assert str(encoded.value) == str(reference.value)
    assert encoded.value.field == reference.value.field and encoded.value.field.startswith("rows[3517]")


@pytest.mark.parametrize("name", ["amount\n", "", "1st", "a-b", "a" * 64])
def test_a_name_that_is_not_a_plain_identifier_is_refused(name: str) -> None:
    with pytest.raises(InvalidArgument):
        check_name(name, "name")


@pytest.mark.parametrize(
    "values",
    [
        ["plain", "1.50", None],
        ["tab\there", "new\nline", "cr\rlf", "back\\slash", "\\N", "\\t literally", ""],
        ["é ✓ 🙂", None, None],
    ],
)
def test_copy_fields_reads_back_what_copy_text_wrote(values: list[str | None]) -> None:
    line = "\t".join(copy_text(value) for value in values)
    assert "\n" not in line
    assert copy_fields(line) == values
