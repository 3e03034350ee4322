"""Every binding of the contract parses, none collide, and literal paths win over variables."""

from __future__ import annotations

from typing import Any

import pytest
from google.protobuf import descriptor as d

from gateway.bindings import Binding, Router, TemplateError, bindings_of, collisions, load_services, parse_template


@pytest.fixture(scope="module")
def bindings() -> list[Binding]:
    return bindings_of(load_services())


def test_no_two_bindings_collide(bindings: list[Binding]) -> None:
    assert collisions(bindings) == []


def test_every_binding_routes_to_its_own_method(bindings: list[Binding]) -> None:
    router = Router(bindings)
    for binding in bindings:
        path = "/" + "/".join(s.literal if s.literal is not None else "x1" for s in binding.segments)
        path += f":{binding.verb}" if binding.verb else ""
        match, _ = router.match(binding.http_method, path)
        assert match is not None, binding.template
        assert match.binding.method.full_name == binding.method.full_name, (binding.template, path)


def test_every_path_variable_is_a_scalar_request_field(bindings: list[Binding]) -> None:
    for binding in bindings:
        for variable in binding.variables:
            message: Any = binding.method.input_type
            *parents, leaf = variable.split(".")
            for name in parents:
                message = message.fields_by_name[name].message_type
            field = message.fields_by_name[leaf]
            assert field.type != d.FieldDescriptor.TYPE_MESSAGE, (binding.template, variable)


def test_every_body_field_exists(bindings: list[Binding]) -> None:
    for binding in bindings:
        if binding.body not in ("", "*"):
            assert binding.body in binding.method.input_type.fields_by_name, binding.template
        if binding.response_body:
            assert binding.response_body in binding.method.output_type.fields_by_name, binding.template


def _fake(bindings: list[Binding], templates: list[tuple[str, str]]) -> list[Binding]:
    method = bindings[0].method
    made = []
    for verb, template in templates:
        segments, custom_verb, variables = parse_template(template)
        made.append(Binding(method, verb, template, "", "", segments, custom_verb, variables))
    return sorted(made, key=Binding.specificity)


def test_literal_segment_beats_a_variable(bindings: list[Binding]) -> None:
    fake = _fake(
        bindings,
        [
            ("GET", "/workflows/{id}"),
            ("GET", "/workflows/runs"),
            ("GET", "/forms/{run}/{step}"),
            ("GET", "/forms/pending"),
        ],
    )
    router = Router(fake)
    match, _ = router.match("GET", "/workflows/runs")
    assert match is not None and match.binding.template == "/workflows/runs"
    match, _ = router.match("GET", "/workflows/wfl-1")
    assert match is not None and match.path_params == {"id": "wfl-1"}
    match, _ = router.match("GET", "/forms/pending")
    assert match is not None and match.binding.template == "/forms/pending"


def test_templates_with_patterns_verbs_and_double_wildcards(bindings: list[Binding]) -> None:
    fake = _fake(
        bindings, [("GET", "/files/{name=docs/**}"), ("POST", "/runs/{run_id}:cancel"), ("GET", "/runs/{run_id}")]
    )
    router = Router(fake)
    match, _ = router.match("GET", "/files/docs/a/b%20c.txt")
    assert match is not None and match.path_params == {"name": "docs/a/b c.txt"}
    match, _ = router.match("POST", "/runs/r1:cancel")
    assert match is not None and match.path_params == {"run_id": "r1"}
    assert router.match("POST", "/runs/r1") == (None, True)


def test_same_shape_is_reported_as_a_collision(bindings: list[Binding]) -> None:
    fake = _fake(bindings, [("GET", "/workflows/{id}"), ("GET", "/workflows/{name}")])
    assert len(collisions(fake)) == 1


def test_bad_templates_are_refused() -> None:
    with pytest.raises(TemplateError):
        parse_template("workflows")
    with pytest.raises(TemplateError):
        parse_template("/a/**/b")
