"""One REST request -> one gRPC request message, and back. Follows grpc-gateway's order: body, then path
variables, then query parameters for the fields neither of them bound."""

from __future__ import annotations

from google.protobuf import descriptor as d
from google.protobuf import field_mask_pb2
from google.protobuf.message import Message
from starlette.datastructures import QueryParams

from gateway import codec
from gateway.bindings import Binding


def build_request(binding: Binding, body: object | None, path_params: dict[str, str], query: QueryParams) -> Message:
    message = binding.request_class()
    bound: set[str] = set()
    if binding.body == "*":
        codec.from_wire(body if body is not None else {}, message)
        bound.update(field.name for field in message.DESCRIPTOR.fields)
    elif binding.body:
        field = message.DESCRIPTOR.fields_by_name[binding.body]
        if body is not None:
            codec.set_field(message, field, body, "")
        bound.add(binding.body)
    for name, value in path_params.items():
        target, field = codec.resolve_path(message, name)
        if field.type == d.FieldDescriptor.TYPE_MESSAGE and field.message_type.full_name != codec.JSON_MESSAGE:
            raise codec.WireError(name, "path variables must be scalar fields")
        target.ClearField(field.name)
        codec.set_field(target, field, value, name, from_text=True)
        bound.add(name)
    if query:
        _apply_query(message, query, bound)
    if binding.body not in ("", "*"):
        _derive_update_mask(binding, message, body)  # after the query, where an explicit mask may be given
    return message


def _derive_update_mask(binding: Binding, message: Message, body: object | None) -> None:
    """PATCH with a body field and no explicit update_mask: the mask is the set of keys the client sent."""
    mask_field = message.DESCRIPTOR.fields_by_name.get("update_mask")
    if (
        binding.http_method != "PATCH"
        or mask_field is None
        or mask_field.message_type is None
        or mask_field.message_type.full_name != "google.protobuf.FieldMask"
        or not isinstance(body, dict)
    ):
        return
    mask: field_mask_pb2.FieldMask = getattr(message, mask_field.name)
    if mask.paths:
        return
    target = message.DESCRIPTOR.fields_by_name[binding.body].message_type
    names = codec.input_names(target)
    mask.paths.extend(names[key].name for key in body if key in names)


def _apply_query(message: Message, query: QueryParams, bound: set[str]) -> None:
    accepted: dict[str, tuple[str, codec.Field]] = {}
    for dotted, field in codec.iter_fields(message.DESCRIPTOR):
        if any(dotted == b or dotted.startswith(b + ".") for b in bound):
            continue
        parent = dotted.rsplit(".", 1)[0] + "." if "." in dotted else ""
        for name in {field.name, field.json_name, codec.wire_name(field)}:
            accepted[parent + name] = (dotted, field)
    for key in query:
        if key not in accepted:
            raise codec.WireError(key, "unknown query parameter")
        dotted, field = accepted[key]
        values = query.getlist(key)
        target, leaf = codec.resolve_path(message, dotted)
        repeated = bool(leaf.is_repeated)
        if not repeated and len(values) > 1:
            raise codec.WireError(key, "given more than once")
        value: object = values if repeated else values[0]
        if leaf.message_type is not None and leaf.message_type.full_name == "google.protobuf.FieldMask":
            getattr(target, leaf.name).paths.extend(p.strip() for v in values for p in v.split(",") if p.strip())
            continue
        codec.set_field(target, leaf, value, key, from_text=True)
