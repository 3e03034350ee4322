"""Every binding of the contract parses, none collide, and literal paths win over variables."""

from __future__ import annotations

from typing import Any

import pytest
from google.api import annotations_pb2
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
    assert router.match("POST", "/runs/r1") == (None, ["GET"])


def test_raw_path_segments_are_decoded_exactly_once(bindings: list[Binding]) -> None:
    fake = _fake(
        bindings,
        [
            ("GET", "/workflows/{id}"),
            ("GET", "/files/{name=docs/**}"),
            ("POST", "/runs/{run_id}:cancel"),
            ("GET", "/runs/{run_id}"),
        ],
    )
    router = Router(fake)
    cases = {
        "/workflows/abc%2525": ("/workflows/{id}", {"id": "abc%25"}),  # %25 -> "%": "%2525" binds "%25", not "%"
        "/workflows/abc%25": ("/workflows/{id}", {"id": "abc%"}),
        "/workflows/a%2Fb": ("/workflows/{id}", {"id": "a/b"}),  # an encoded slash stays inside its segment
        "/workflows/caf%C3%A9%20x": ("/workflows/{id}", {"id": "café x"}),
        "/%77orkflows/w1": ("/workflows/{id}", {"id": "w1"}),  # literal segments compare decoded
        "/files/docs/a/b%20c.txt": ("/files/{name=docs/**}", {"name": "docs/a/b c.txt"}),
        "/files/docs/a%2Fb/c%2525": ("/files/{name=docs/**}", {"name": "docs/a/b/c%25"}),
        "/runs/r%2525:cancel": ("/runs/{run_id}:cancel", {"run_id": "r%25"}),
        "/runs/r1%3Acancel": ("/runs/{run_id}", {"run_id": "r1:cancel"}),  # an encoded ":" is no verb separator
    }
    for raw_path, (template, params) in cases.items():
        method = "POST" if template.endswith(":cancel") else "GET"
        match, allowed = router.match(method, raw_path)
        assert match is not None and allowed == [], raw_path
        assert (match.binding.template, match.path_params) == (template, params), raw_path
    assert router.match("GET", "/workflows/a%2Fb/c") == (None, [])  # two raw segments: no such route


def test_allowed_methods_of_a_known_path(bindings: list[Binding]) -> None:
    fake = _fake(
        bindings,
        [
            ("GET", "/workflows/{id}"),
            ("DELETE", "/workflows/{id}"),
            ("PUT", "/workflows/{id}"),
            ("POST", "/workflows"),
            ("GET", "/workflows/runs"),
            ("POST", "/runs/{run_id}:cancel"),
        ],
    )
    router = Router(fake)
    assert router.match("PATCH", "/workflows/w1") == (None, ["DELETE", "GET", "PUT"])
    assert router.match("POST", "/workflows/runs") == (None, ["DELETE", "GET", "PUT"])  # {id} matches "runs" too
    assert router.match("GET", "/workflows") == (None, ["POST"])
    assert router.match("GET", "/workflows/") == (None, ["POST"])
    assert router.match("GET", "/runs/r1:cancel") == (None, ["POST"])
    assert router.match("GET", "/nowhere") == (None, [])
    assert router.match("GET", "/workflows/a/b") == (None, [])
    match, allowed = router.match("DELETE", "/workflows/w1")
    assert match is not None and match.binding.http_method == "DELETE" and allowed == []


def test_binding_index_is_the_position_of_its_rule(bindings: list[Binding]) -> None:
    for binding in bindings:
        main = binding.method.GetOptions().Extensions[annotations_pb2.http]
        rule = [main, *main.additional_bindings][binding.index]
        kind = rule.WhichOneof("pattern")
        assert kind is not None
        template = rule.custom.path if kind == "custom" else getattr(rule, kind)
        assert template == binding.template, binding.method.full_name


def test_same_shape_is_reported_as_a_collision(bindings: list[Binding]) -> None:
    fake = _fake(bindings, [("GET", "/workflows/{id}"), ("GET", "/workflows/{name}")])
    assert len(collisions(fake)) == 1


def test_bad_templates_are_refused() -> None:
    with pytest.raises(TemplateError):
        parse_template("workflows")
    with pytest.raises(TemplateError):
        parse_template("/a/**/b")
