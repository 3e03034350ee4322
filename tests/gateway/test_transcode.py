"""Request building: PATCH derives update_mask from the keys sent; query parameters fill nested and repeated
fields. Uses a throwaway service added to the descriptor pool."""

from __future__ import annotations

import pytest
from google.api import annotations_pb2
from google.protobuf import descriptor_pb2, descriptor_pool
from google.protobuf.descriptor import ServiceDescriptor
from starlette.datastructures import QueryParams

from gateway import codec
from gateway.bindings import Binding, bindings_of
from gateway.transcode import build_request

PACKAGE = "hyphae_transcode_test.v1"
F = descriptor_pb2.FieldDescriptorProto


def service() -> ServiceDescriptor:
    pool = descriptor_pool.Default()
    try:
        return pool.FindServiceByName(f"{PACKAGE}.ThingService")
    except KeyError:
        pass
    file = descriptor_pb2.FileDescriptorProto(
        name="hyphae_transcode_test/v1/things.proto",
        package=PACKAGE,
        syntax="proto3",
        dependency=["google/api/annotations.proto", "google/protobuf/field_mask.proto"],
    )
    thing = file.message_type.add(name="Thing")
    thing.field.add(name="id", number=1, type=F.TYPE_STRING, label=F.LABEL_OPTIONAL)
    thing.field.add(name="title", number=2, type=F.TYPE_STRING, label=F.LABEL_OPTIONAL)
    thing.field.add(name="size_bytes", number=3, type=F.TYPE_INT64, label=F.LABEL_OPTIONAL)
    thing.field.add(name="tags", number=4, type=F.TYPE_STRING, label=F.LABEL_REPEATED)
    request = file.message_type.add(name="UpdateThingRequest")
    request.field.add(
        name="thing", number=1, type=F.TYPE_MESSAGE, type_name=f".{PACKAGE}.Thing", label=F.LABEL_OPTIONAL
    )
    request.field.add(
        name="update_mask",
        number=2,
        type=F.TYPE_MESSAGE,
        type_name=".google.protobuf.FieldMask",
        label=F.LABEL_OPTIONAL,
    )
    listing = file.message_type.add(name="ListThingsRequest")
    listing.field.add(
        name="filter", number=1, type=F.TYPE_MESSAGE, type_name=f".{PACKAGE}.Thing", label=F.LABEL_OPTIONAL
    )
    listing.field.add(name="ids", number=2, type=F.TYPE_STRING, label=F.LABEL_REPEATED)
    listing.field.add(name="page_size", number=3, type=F.TYPE_INT32, label=F.LABEL_OPTIONAL)
    svc = file.service.add(name="ThingService")
    patch = svc.method.add(
        name="UpdateThing", input_type=f".{PACKAGE}.UpdateThingRequest", output_type=f".{PACKAGE}.Thing"
    )
    rule = patch.options.Extensions[annotations_pb2.http]
    rule.patch = "/things/{thing.id}"
    rule.body = "thing"
    listed = svc.method.add(
        name="ListThings", input_type=f".{PACKAGE}.ListThingsRequest", output_type=f".{PACKAGE}.Thing"
    )
    listed.options.Extensions[annotations_pb2.http].get = "/things"
    pool.Add(file)
    return pool.FindServiceByName(f"{PACKAGE}.ThingService")


def binding(method: str) -> Binding:
    return next(b for b in bindings_of([service()]) if b.method.name == method)


def test_patch_derives_the_update_mask_from_the_keys_sent() -> None:
    request = build_request(
        binding("UpdateThing"), {"title": "new", "sizeBytes": 5}, {"thing.id": "t1"}, QueryParams("")
    )
    assert list(request.update_mask.paths) == ["title", "size_bytes"]  # type: ignore[attr-defined]
    assert request.thing.id == "t1"  # type: ignore[attr-defined]


def test_explicit_update_mask_in_the_query_wins() -> None:
    request = build_request(
        binding("UpdateThing"), {"title": "new", "tags": ["a"]}, {"thing.id": "t1"}, QueryParams("update_mask=title")
    )
    assert list(request.update_mask.paths) == ["title"]  # type: ignore[attr-defined]


def test_query_fills_nested_and_repeated_fields() -> None:
    request = build_request(
        binding("ListThings"), None, {}, QueryParams("filter.title=x&filter.sizeBytes=9&ids=a&ids=b&page_size=3")
    )
    assert (request.filter.title, request.filter.size_bytes) == ("x", 9)  # type: ignore[attr-defined]
    assert list(request.ids) == ["a", "b"]  # type: ignore[attr-defined]
    assert request.page_size == 3  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("query", "path", "fragment"),
    [
        ("nope=1", "nope", "unknown query parameter"),
        ("page_size=1&page_size=2", "page_size", "more than once"),
        ("page_size=abc", "page_size", "integer"),
    ],
)
def test_query_errors_name_the_parameter(query: str, path: str, fragment: str) -> None:
    with pytest.raises(codec.WireError) as raised:
        build_request(binding("ListThings"), None, {}, QueryParams(query))
    assert raised.value.path == path
    assert fragment in str(raised.value)
