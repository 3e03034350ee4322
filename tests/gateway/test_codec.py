"""The wire codec: exact free-form JSON, dialect spelling, enum literals, strict decoding."""

from __future__ import annotations

from decimal import Decimal

import pytest
from hyphae.actions.v1 import action_pb2
from hyphae.workflows.v1 import workflow_pb2

from gateway import codec


def test_free_form_json_round_trips_exactly() -> None:
    text = '{"b":42,"a":1.5,"big":1152921504606846976,"x":[[1,2.50],{"z":null,"y":true}],"e":1E+3,"s":"é\\n"}'
    workflow = workflow_pb2.Workflow()
    codec.from_wire(codec.loads('{"name":"n","definition":' + text + "}"), workflow)
    assert workflow.definition.raw == text.replace('"é\\n"', '"é\\n"')
    assert codec.dumps(codec.to_wire(workflow)).count(text) == 1


def test_loads_keeps_decimal_digits_and_rejects_duplicates_and_nan() -> None:
    assert codec.loads('{"a": 0.10}') == {"a": Decimal("0.10")}
    with pytest.raises(codec.WireError, match="duplicate key"):
        codec.loads('{"a": 1, "a": 2}')
    with pytest.raises(codec.WireError, match="NaN"):
        codec.loads('{"a": NaN}')
    with pytest.raises(codec.WireError, match="not valid JSON"):
        codec.loads("{")


def test_wire_names_and_enum_literals() -> None:
    action = action_pb2.Action(action_name="m", kind=action_pb2.ACTION_KIND_CUSTOM_TABLE, output_key="o")
    action.match_on.append("id")
    wire = codec.to_wire(action)
    assert wire["kind"] == "custom-table"
    assert wire["outputKey"] == "o"
    assert wire["matchOn"] == ["id"]
    assert wire["passthrough"] is False  # no presence: always printed
    assert "url" not in wire  # presence and unset: omitted


def test_input_accepts_proto_camel_and_wire_spellings() -> None:
    for key in ("output_key", "outputKey"):
        action = action_pb2.Action()
        codec.from_wire({"actionName": "a", key: "k", "kind": "HTTP"}, action)
        assert (action.action_name, action.output_key, action.kind) == ("a", "k", action_pb2.ACTION_KIND_HTTP)


@pytest.mark.parametrize(
    ("body", "path", "fragment"),
    [
        ({"nope": 1}, "nope", "unknown field"),
        ({"action_name": 5}, "action_name", "must be a string"),
        ({"kind": "ftp"}, "kind", "expected one of http, llm, db, matcher, custom-table"),
        ({"passthrough": "yes"}, "passthrough", "true or false"),
        ({"timeout_ms": 2**40}, "timeout_ms", "between"),
        ({"timeout_ms": Decimal("1.5")}, "timeout_ms", "integer"),
        ({"headers": {"a": 1}}, "headers.a", "must be a string"),
        ({"match_on": "x"}, "matchOn", "array"),
    ],
)
def test_decoding_errors_name_the_field(body: dict[str, object], path: str, fragment: str) -> None:
    with pytest.raises(codec.WireError) as raised:
        codec.from_wire(body, action_pb2.Action())
    assert raised.value.path == path
    assert fragment in str(raised.value)


def test_output_only_fields_are_ignored_on_input() -> None:
    workflow = workflow_pb2.Workflow()
    codec.from_wire({"id": "wfl-x", "version": 9, "name": "n"}, workflow)
    assert (workflow.id, workflow.version, workflow.name) == ("", 0, "n")


def test_number_spelling_round_trips_byte_for_byte() -> None:
    text = '{"a":0.0000001,"b":1e2,"c":2E-3,"d":-0.0,"e":1.50,"f":12345678901234567890.123456789}'
    assert codec.canonical_json(codec.loads(text)) == text
    assert codec.dumps(codec.loads(text)) == text
    workflow = workflow_pb2.Workflow()
    codec.from_wire(codec.loads('{"name":"n","definition":' + text + "}"), workflow)
    assert workflow.definition.raw == text


def test_integer_spelling_round_trips_too() -> None:
    text = "[-0,0,7,123456789012345678901234567890,-99999999999999999999999]"
    parsed = codec.loads(text)
    assert codec.dumps(parsed) == text
    assert parsed[2] == 7 and type(parsed[2]) is int
    assert parsed[3] == 123456789012345678901234567890  # a JsonNumber: a Decimal, never int(str) on long text


def test_json_numbers_are_decimals_and_plain_decimals_still_print() -> None:
    number = codec.loads("1.50")
    assert isinstance(number, codec.JsonNumber) and number.text == "1.50" and number == Decimal("1.5")
    assert codec.dumps([Decimal("1.50") + 1, Decimal("1E+2")]) == "[2.50,1E+2]"


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("9" * 5000, None),  # kept as a JsonNumber: no int() on it
        ("[" + "1" * 5000 + "]", None),
        ("1e9999999999999999999", "number out of range"),
    ],
)
def test_loads_survives_extreme_numbers(text: str, fragment: str | None) -> None:
    if fragment is None:
        codec.loads(text)
    else:
        with pytest.raises(codec.WireError, match=fragment):
            codec.loads(text)


def test_loads_turns_any_value_error_into_a_wire_error(monkeypatch: pytest.MonkeyPatch) -> None:
    def boom(text: str) -> int:
        raise ValueError("Exceeds the limit (4300 digits) for integer string conversion")

    monkeypatch.setattr(codec, "_parse_int", boom)
    with pytest.raises(codec.WireError, match="number too long to parse"):
        codec.loads("[1]")


@pytest.mark.parametrize(
    ("body", "path", "fragment"),
    [
        ('{"timeout_ms": 1e700000}', "timeout_ms", "must be between -2147483648 and 2147483647"),
        ('{"timeout_ms": -1e700000}', "timeout_ms", "must be between"),
        ('{"timeout_ms": ' + "9" * 5000 + "}", "timeout_ms", "must be between"),
        ('{"timeout_ms": "' + "9" * 5000 + '"}', "timeout_ms", "must be between"),
        ('{"timeout_ms": 1e-700000}', "timeout_ms", "must be an integer"),
        ('{"temperature": "sNaN"}', "temperature", "must be a finite number"),
        ('{"temperature": "-nan"}', "temperature", "must be a finite number"),
        ('{"temperature": "Infinity"}', "temperature", "must be a finite number"),
        ('{"temperature": "-inf"}', "temperature", "must be a finite number"),
        ('{"temperature": 1e400}', "temperature", "must be a finite number"),
        ('{"temperature": ' + "9" * 5000 + "}", "temperature", "must be a finite number"),
        ('{"temperature": "1e9999999999999999999"}', "temperature", "must be a number"),
        ('{"temperature": "warm"}', "temperature", "must be a number"),
    ],
)
def test_extreme_numbers_are_wire_errors(body: str, path: str, fragment: str) -> None:
    with pytest.raises(codec.WireError) as raised:
        codec.from_wire(codec.loads(body), action_pb2.Action())
    assert raised.value.path == path
    assert fragment in str(raised.value)


@pytest.mark.parametrize(("value", "expected"), [("0e700000", 0), ("-0", 0), ("1.000", 1), ("12e2", 1200)])
def test_integral_decimals_are_accepted(value: str, expected: int) -> None:
    action = action_pb2.Action()
    codec.from_wire(codec.loads('{"timeout_ms": ' + value + "}"), action)
    assert action.timeout_ms == expected


def test_text_numbers_from_query_strings() -> None:
    action = action_pb2.Action()
    field = action.DESCRIPTOR.fields_by_name
    codec.set_field(action, field["timeout_ms"], " 0000000000000000000000000042 ", "timeout_ms", from_text=True)
    codec.set_field(action, field["temperature"], "0.5", "temperature", from_text=True)
    assert (action.timeout_ms, action.temperature) == (42, 0.5)
    with pytest.raises(codec.WireError, match="must be a finite number"):
        codec.set_field(action, field["temperature"], "NaN", "temperature", from_text=True)


def test_free_form_integers_the_server_cannot_parse_are_refused_by_path() -> None:
    body = '{"name":"n","definition":{"actions":[],"metadata":{"x":[1,' + "9" * 5000 + "]}}}"
    with pytest.raises(codec.WireError) as raised:
        codec.from_wire(codec.loads(body), workflow_pb2.Workflow())
    assert raised.value.path == "definition.metadata.x[1]"
    assert "more than 4300 digits" in str(raised.value)
    workflow = workflow_pb2.Workflow()
    codec.from_wire(codec.loads('{"definition":{"x":' + "9" * 4300 + "}}"), workflow)
    assert workflow.definition.raw == '{"x":' + "9" * 4300 + "}"
