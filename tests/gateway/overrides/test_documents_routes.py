"""The hand-written document routes: bound from the contract, described in /openapi.json, safe headers."""

from __future__ import annotations

import json
from pathlib import Path

from google.protobuf import descriptor_pool

from gateway.bindings import bindings_of, load_services
from gateway.overrides import overrides
from gateway.overrides.download import content_disposition

OPENAPI = Path(__file__).resolve().parents[3] / "generated" / "openapi.json"


def test_every_override_belongs_to_a_bound_method() -> None:
    bound = {binding.method.full_name for binding in bindings_of(load_services())}
    for name in overrides():
        descriptor_pool.Default().FindMethodByName(name)
        assert name in bound, name


def test_openapi_describes_multipart_uploads_and_binary_downloads() -> None:
    paths = json.loads(OPENAPI.read_text())["paths"]
    upload = paths["/documents"]["post"]
    schema = upload["requestBody"]["content"]["multipart/form-data"]["schema"]
    assert schema["required"] == ["file"]
    assert set(schema["properties"]) == {"file", "name", "tags", "metadata", "ttl_days"}
    assert schema["properties"]["file"]["format"] == "binary"
    assert {"201", "413", "415"} <= set(upload["responses"])
    bulk = paths["/documents/bulk-upload"]["post"]["requestBody"]["content"]["multipart/form-data"]["schema"]
    assert bulk["properties"]["file"]["type"] == "array"
    version = paths["/documents/{id}/versions"]["post"]["requestBody"]["content"]["multipart/form-data"]["schema"]
    assert set(version["properties"]) == {"file"}
    download = paths["/documents/{id}/download"]["get"]["responses"]["200"]["content"]
    assert download["application/octet-stream"]["schema"]["format"] == "binary"
    assert "415" not in paths["/documents/{id}"]["get"]["responses"]


def test_content_disposition_keeps_the_name_and_cannot_break_the_header() -> None:
    assert content_disposition("q4.csv") == "attachment; filename=\"q4.csv\"; filename*=UTF-8''q4.csv"
    tricky = content_disposition('r\u00e9sum\u00e9 "final"\r\n.pdf')
    assert "\r" not in tricky and "\n" not in tricky
    assert 'filename="r_sum_ _final___.pdf"' in tricky
    assert "filename*=UTF-8''r%C3%A9sum%C3%A9%20%22final%22%0D%0A.pdf" in tricky
