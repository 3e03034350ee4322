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
