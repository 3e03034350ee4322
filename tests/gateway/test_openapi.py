"""The generated OpenAPI document: fresh, complete, consistent with the binding table and the wire codec."""

from __future__ import annotations

import re
from collections.abc import Iterator
from functools import cache
from pathlib import Path
from typing import Any

import pytest
from google.api import annotations_pb2, field_behavior_pb2, http_pb2
from google.protobuf import descriptor as d
from google.protobuf import descriptor_pb2, descriptor_pool
from hyphae.api.v1 import options_pb2

from gateway.bindings import bindings_of, load_services
from gateway.openapi import build_document, openapi_path, render

ROOT = Path(__file__).resolve().parents[2]
DESCRIPTORS = ROOT / "generated" / "descriptors.binpb"
COMMITTED = ROOT / "generated" / "openapi.json"
HTTP_METHODS = {"get", "put", "post", "delete", "options", "head", "patch", "trace"}


@cache
def _document() -> dict[str, Any]:
    return build_document(DESCRIPTORS)


@pytest.fixture
def doc() -> dict[str, Any]:
    return _document()


def _resolve(doc: dict[str, Any], ref: str) -> Any:
    assert ref.startswith("#/"), ref
    node: Any = doc
    for part in ref[2:].split("/"):
        part = part.replace("~1", "/").replace("~0", "~")
        assert isinstance(node, dict) and part in node, f"unresolved $ref {ref}"
        node = node[part]
    return node


def _deref(doc: dict[str, Any], node: Any) -> Any:
    while isinstance(node, dict) and "$ref" in node:
        node = _resolve(doc, node["$ref"])
    return node


def _walk(node: Any) -> Iterator[dict[str, Any]]:
    if isinstance(node, dict):
        yield node
        for value in node.values():
            yield from _walk(value)
    elif isinstance(node, list):
        for item in node:
            yield from _walk(item)


def _operations(doc: dict[str, Any]) -> Iterator[tuple[str, str, dict[str, Any]]]:
    for path, item in doc["paths"].items():
        for method, op in item.items():
            if method in HTTP_METHODS:
                yield path, method, op


def _success_schema(doc: dict[str, Any], op: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    [status] = [code for code in op["responses"] if code.startswith("2")]
    return status, op["responses"][status]["content"]["application/json"]["schema"]


# --- the committed document --------------------------------------------------------------------------------


def test_committed_document_is_fresh() -> None:
    fresh = render(_document())
    assert fresh == render(build_document(DESCRIPTORS)), "output is not deterministic"
    assert COMMITTED.read_text(encoding="utf-8") == fresh, (
        "generated/openapi.json is stale: run `uv run python scripts/gen.py`"
    )


def test_every_binding_is_an_operation(doc: dict[str, Any]) -> None:
    bindings = bindings_of(load_services())
    assert bindings
    seen = set()
    for binding in bindings:
        path, method = openapi_path(binding.template), binding.http_method.lower()
        assert method in doc["paths"].get(path, {}), f"{binding.http_method} {binding.template} missing"
        op = doc["paths"][path][method]
        service = binding.method.containing_service.name
        assert op["operationId"].startswith(f"{service}_{binding.method.name}")
        assert op["tags"] == [service]
        seen.add((path, method))
    assert seen == {(path, method) for path, method, _ in _operations(doc)}


# --- specific shapes ---------------------------------------------------------------------------------------


def test_get_workflow_answers_the_bare_workflow(doc: dict[str, Any]) -> None:
    op = doc["paths"]["/workflows/{id}"]["get"]
    assert op["operationId"] == "WorkflowService_GetWorkflow"
    assert op["summary"] == "Reads one workflow."
    status, schema = _success_schema(doc, op)
    assert status == "200"
    assert schema == {"$ref": "#/components/schemas/hyphae.workflows.v1.Workflow"}
    workflow = _deref(doc, schema)
    definition = workflow["properties"]["definition"]
    assert not {"type", "$ref", "properties", "items"} & definition.keys(), definition  # any JSON value
    assert "Any JSON value, returned exactly as sent" in definition["description"]
    assert workflow["required"] == ["name", "definition"]
    assert workflow["properties"]["id"]["readOnly"] is True
    assert workflow["properties"]["created_at"] == {
        "type": "string",
        "format": "date-time",
        "description": "When the workflow was created.",
        "readOnly": True,
    }
    assert workflow["properties"]["version"]["type"] == "integer"
    [param] = [p for p in op["parameters"] if "$ref" not in p]
    assert param == {
        "name": "id",
        "in": "path",
        "required": True,
        "description": "Workflow id.",
        "schema": {"type": "string"},
    }


def test_action_uses_wire_names_and_enum_literals(doc: dict[str, Any]) -> None:
    action = doc["components"]["schemas"]["hyphae.actions.v1.Action"]
    props = action["properties"]
    assert props["outputKey"]["type"] == "string"
    assert props["matchOn"] == {
        "type": "array",
        "items": {"type": "string"},
        "description": "matcher: fields that must be equal.",
    }
    assert {"output_key", "match_on"}.isdisjoint(props)
    assert "action_name" in props  # snake_case file
    kind = _deref(doc, props["kind"])
    assert kind["type"] == "string"
    assert kind["enum"] == ["http", "llm", "db", "matcher", "custom-table"]
    assert props["headers"]["additionalProperties"] == {"type": "string"}
    assert props["temperature"]["type"] == "number"
    assert action["required"] == ["action_name", "kind"]


def test_create_workflow_answers_201_and_takes_the_workflow(doc: dict[str, Any]) -> None:
    op = doc["paths"]["/workflows"]["post"]
    status, schema = _success_schema(doc, op)
    assert status == "201"
    assert "200" not in op["responses"]
    assert schema == {"$ref": "#/components/schemas/hyphae.workflows.v1.Workflow"}
    assert op["requestBody"]["content"]["application/json"]["schema"] == schema
    assert op["requestBody"]["required"] is True
    assert {"$ref": "#/components/parameters/IdempotencyKey"} in op["parameters"]
    assert op["security"] == [{"bearer": []}, {"orgHeader": []}]


def test_query_parameters_of_a_get_without_body(doc: dict[str, Any]) -> None:
    params = doc["paths"]["/actions"]["get"]["parameters"]
    by_name = {p["name"]: p for p in params if "$ref" not in p}
    assert list(by_name) == ["page_size", "page_token", "limit", "offset", "kind"]
    assert all(p["in"] == "query" for p in by_name.values())
    assert by_name["page_size"]["schema"] == {"type": "integer", "format": "int32"}
    assert _deref(doc, by_name["kind"]["schema"])["enum"][0] == "http"
    assert {"$ref": "#/components/parameters/IdempotencyKey"} not in params
    assert params[-1] == {"$ref": "#/components/parameters/RequestId"}


def test_body_star_leaves_out_path_fields(doc: dict[str, Any]) -> None:
    op = doc["paths"]["/gateway/orgs/{org_id}/keys"]["post"]
    body = op["requestBody"]["content"]["application/json"]["schema"]
    assert list(body["properties"]) == ["label", "permissions", "kind"]
    assert [p["name"] for p in op["parameters"] if "$ref" not in p] == ["org_id"]
    assert _success_schema(doc, op) == ("201", {"$ref": "#/components/schemas/hyphae.gateway.v1.ApiKey"})
    assert op["security"] == [{"bearer": []}]


def test_public_operations_skip_auth(doc: dict[str, Any]) -> None:
    for path, method in [("/health", "get"), ("/gateway/signup", "post")]:
        op = doc["paths"][path][method]
        assert op["security"] == []
        assert {"401", "403"}.isdisjoint(op["responses"])
        assert {"400", "404", "429", "500"} <= op["responses"].keys()
    signup = doc["paths"]["/gateway/signup"]["post"]
    assert signup["requestBody"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/hyphae.gateway.v1.SignupRequest"
    }


def test_errors_security_and_info(doc: dict[str, Any]) -> None:
    error = doc["components"]["schemas"]["Error"]
    assert list(error["properties"]) == ["error", "message", "code"]
    responses = doc["paths"]["/workflows"]["get"]["responses"]
    for code in ("400", "401", "403", "404", "409", "413", "422", "429", "500"):
        assert responses[code]["$ref"].startswith("#/components/responses/")
    schemes = doc["components"]["securitySchemes"]
    assert schemes["bearer"]["type"] == "http" and schemes["bearer"]["scheme"] == "bearer"
    org = schemes["orgHeader"]
    assert (org["type"], org["in"], org["name"]) == ("apiKey", "header", "X-Org-Id")
    assert doc["components"]["parameters"]["IdempotencyKey"]["name"] == "Idempotency-Key"
    assert doc["components"]["parameters"]["RequestId"]["required"] is False
    assert doc["info"]["title"] == "Hyphae API" and doc["info"]["version"] == "0.1.0"
    assert "presence" in doc["info"]["description"]
    assert doc["servers"] == [{"url": "http://localhost:3009"}]


# --- structure ---------------------------------------------------------------------------------------------


def test_document_structure(doc: dict[str, Any]) -> None:
    assert doc["openapi"].startswith("3.1.")
    for node in _walk(doc):
        ref = node.get("$ref")
        if isinstance(ref, str):
            _resolve(doc, ref)  # every $ref resolves
    assert list(doc["paths"]) == sorted(doc["paths"])
    assert list(doc["components"]["schemas"]) == sorted(doc["components"]["schemas"])
    tags = {tag["name"] for tag in doc["tags"]}
    schemes = doc["components"]["securitySchemes"]
    operation_ids = []
    for path, method, op in _operations(doc):
        assert path.startswith("/")
        operation_ids.append(op["operationId"])
        assert set(op["tags"]) <= tags
        params = [_deref(doc, p) for p in op["parameters"]]
        assert len({(p["name"], p["in"]) for p in params}) == len(params)
        for p in params:
            assert p["in"] in {"path", "query", "header", "cookie"} and "schema" in p
        declared = {p["name"] for p in params if p["in"] == "path"}
        assert declared == set(re.findall(r"\{([^}]+)\}", path)), (method, path)
        assert all(p["required"] is True for p in params if p["in"] == "path")
        assert any(code.startswith("2") for code in op["responses"])
        for response in op["responses"].values():
            assert "description" in _deref(doc, response)
        if method in {"get", "delete"}:
            assert "requestBody" not in op
        for requirement in op["security"]:
            assert set(requirement) <= schemes.keys()
    assert len(operation_ids) == len(set(operation_ids))


# --- rules that the current contract does not exercise: a throwaway service in the default pool ----------


def _fake_service() -> d.ServiceDescriptor:
    pool = descriptor_pool.Default()
    name = "hyphae_openapi_test/v1/fake.proto"
    try:
        return pool.FindServiceByName("hyphae_openapi_test.v1.FakeService")
    except KeyError:
        pass
    file = descriptor_pb2.FileDescriptorProto(
        name=name,
        package="hyphae_openapi_test.v1",
        syntax="proto3",
        dependency=["google/api/annotations.proto", "google/api/field_behavior.proto", "hyphae/api/v1/options.proto"],
    )
    f = descriptor_pb2.FieldDescriptorProto
    inner = file.message_type.add(name="Inner")
    inner.field.add(name="id", number=1, type=f.TYPE_STRING, label=f.LABEL_OPTIONAL)
    inner.field.add(name="tag_names", number=2, type=f.TYPE_STRING, label=f.LABEL_REPEATED)
    request = file.message_type.add(name="WatchRequest")
    request.field.add(name="name", number=1, type=f.TYPE_STRING, label=f.LABEL_OPTIONAL)
    request.field.add(
        name="inner", number=2, type=f.TYPE_MESSAGE, label=f.LABEL_OPTIONAL, type_name=".hyphae_openapi_test.v1.Inner"
    )
    after = request.field.add(name="after_sequence", number=3, type=f.TYPE_INT64, label=f.LABEL_OPTIONAL)
    after.options.Extensions[field_behavior_pb2.field_behavior].append(field_behavior_pb2.REQUIRED)
    hidden = request.field.add(name="server_note", number=4, type=f.TYPE_STRING, label=f.LABEL_OPTIONAL)
    hidden.options.Extensions[field_behavior_pb2.field_behavior].append(field_behavior_pb2.OUTPUT_ONLY)
    event = file.message_type.add(name="Event")
    event.field.add(name="sequence", number=1, type=f.TYPE_INT64, label=f.LABEL_OPTIONAL)
    service = file.service.add(name="FakeService")
    method = service.method.add(
        name="Watch",
        input_type=".hyphae_openapi_test.v1.WatchRequest",
        output_type=".hyphae_openapi_test.v1.Event",
        server_streaming=True,
    )
    rule = http_pb2.HttpRule(get="/things/{name=**}:watch")
    rule.additional_bindings.add(get="/inner/{inner.id}/events")
    rule.additional_bindings.add(post="/shelves/{name=shelves/*}/events", body="*")
    method.options.Extensions[annotations_pb2.http].CopyFrom(rule)
    method.options.Extensions[options_pb2.rule].access = options_pb2.ACCESS_EXECUTE
    pool.Add(file)
    return pool.FindServiceByName("hyphae_openapi_test.v1.FakeService")


def test_streaming_multi_segment_dotted_and_additional_bindings() -> None:
    doc = build_document(DESCRIPTORS, [_fake_service()])
    multi = doc["paths"]["/things/{name}:watch"]["get"]
    dotted = doc["paths"]["/inner/{inner.id}/events"]["get"]
    patterned = doc["paths"]["/shelves/{name}/events"]["post"]
    assert multi["operationId"] == "FakeService_Watch"
    assert dotted["operationId"] == "FakeService_Watch_1"
    assert patterned["operationId"] == "FakeService_Watch_2"
    [shelf] = [p for p in patterned["parameters"] if p.get("in") == "path"]
    assert shelf["description"] == "Matches `shelves/*`." and shelf["x-hyphae-multi-segment"] is True
    body = patterned["requestBody"]["content"]["application/json"]["schema"]
    assert list(body["properties"]) == ["inner", "after_sequence", "server_note"]  # `name` is in the path
    assert body["required"] == ["after_sequence"] and patterned["requestBody"]["required"] is True
    assert body["properties"]["server_note"]["readOnly"] is True
    assert {"$ref": "#/components/parameters/IdempotencyKey"} in patterned["parameters"]
    [name] = [p for p in multi["parameters"] if p.get("in") == "path"]
    assert name == {
        "name": "name",
        "in": "path",
        "required": True,
        "schema": {"type": "string"},
        "x-hyphae-multi-segment": True,
    }
    [inner_id] = [p for p in dotted["parameters"] if p.get("in") == "path"]
    assert inner_id["name"] == "inner.id" and "x-hyphae-multi-segment" not in inner_id
    query = {p["name"]: p for p in dotted["parameters"] if p.get("in") == "query"}
    assert list(query) == ["name", "inner.tag_names", "after_sequence"]  # path field and output-only left out
    assert query["inner.tag_names"]["schema"] == {"type": "array", "items": {"type": "string"}}
    assert query["after_sequence"]["required"] is True
    assert query["after_sequence"]["schema"] == {"type": "integer", "format": "int64"}
    success = multi["responses"]["200"]
    assert set(success["content"]) == {"text/event-stream", "application/x-ndjson"}
    ndjson = success["content"]["application/x-ndjson"]["schema"]
    assert ndjson["anyOf"][0] == {"$ref": "#/components/schemas/hyphae_openapi_test.v1.Event"}
    assert multi["security"] == [{"bearer": []}, {"orgHeader": []}]
    for node in _walk(doc):
        if isinstance(node.get("$ref"), str):
            _resolve(doc, node["$ref"])
